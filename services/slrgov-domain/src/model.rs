//! The resources the service keeps, as the store returns them.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{FieldViolation, Violations};
use crate::names::InstanceKey;
use crate::types::{
    AccountId, Arn, BucketName, InstanceAlias, LogGroupName, Partition, ProfilesDomain, RegionCode,
    Revision, VoiceIdDomain,
};

/// A registered AWS account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The account id.
    pub account_id: AccountId,
    /// A human-readable name.
    pub display_name: String,
    /// The account's partition.
    pub partition: Partition,
    /// The role the service assumes to act in the account.
    pub access_role_arn: Option<Arn>,
    /// Whether an STS external id is stored (the id itself never leaves the
    /// store except towards STS).
    pub external_id_set: bool,
    /// When it was registered.
    pub create_time: DateTime<Utc>,
    /// When it last changed.
    pub update_time: DateTime<Utc>,
    /// The revision (etag).
    pub revision: Revision,
}

/// An STS external id: a secret, never logged or returned.
#[derive(Clone, PartialEq, Eq)]
pub struct ExternalId(String);

impl ExternalId {
    /// Wraps a value already checked by `types::check_external_id`.
    pub fn new(value: String) -> Self {
        ExternalId(value)
    }
    /// The secret, for STS only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExternalId(<redacted>)")
    }
}

/// The writable fields of an account, as the store applies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFields {
    /// A human-readable name.
    pub display_name: String,
    /// The account's partition (fixed at creation).
    pub partition: Partition,
    /// The role the service assumes.
    pub access_role_arn: Option<Arn>,
}

/// A change to an account's external id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalIdChange {
    /// Leave it as it is.
    Keep,
    /// Store this one.
    Set(ExternalId),
    /// Remove it.
    Clear,
}

/// The state of an instance's linked role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LinkedRoleState {
    /// No role recorded.
    Absent,
    /// Being created or adopted.
    Creating,
    /// Exists and recorded.
    Active,
    /// IAM is deleting it.
    Deleting,
    /// Deleted.
    Deleted,
    /// IAM refused to delete it.
    DeletionFailed,
}

impl LinkedRoleState {
    /// Every state, in declaration order.
    pub const ALL: [LinkedRoleState; 6] = [
        LinkedRoleState::Absent,
        LinkedRoleState::Creating,
        LinkedRoleState::Active,
        LinkedRoleState::Deleting,
        LinkedRoleState::Deleted,
        LinkedRoleState::DeletionFailed,
    ];

    /// The state's name, as in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkedRoleState::Absent => "ABSENT",
            LinkedRoleState::Creating => "CREATING",
            LinkedRoleState::Active => "ACTIVE",
            LinkedRoleState::Deleting => "DELETING",
            LinkedRoleState::Deleted => "DELETED",
            LinkedRoleState::DeletionFailed => "DELETION_FAILED",
        }
    }

    /// Parses a state's name.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

impl fmt::Display for LinkedRoleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The features of an instance that add permissions to its linked role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceFeatures {
    /// Bucket for call recordings.
    pub call_recordings_bucket: Option<BucketName>,
    /// Bucket for exported reports.
    pub exported_reports_bucket: Option<BucketName>,
    /// Customer Profiles domain.
    pub customer_profiles_domain: Option<ProfilesDomain>,
    /// Firehose delivery stream ARNs.
    pub firehose_delivery_streams: Vec<Arn>,
    /// Kinesis stream ARNs.
    pub kinesis_streams: Vec<Arn>,
    /// Lex bot ARNs.
    pub lex_bots: Vec<Arn>,
    /// Flow-logs log group.
    pub flow_logs_log_group: Option<LogGroupName>,
    /// Voice ID domain id.
    pub voice_id_domain: Option<VoiceIdDomain>,
    /// Outbound campaigns enabled.
    pub outbound_campaigns: bool,
}

/// The most Firehose or Kinesis streams an instance may list.
pub const MAX_STREAMS: usize = 16;
/// The most Lex bots an instance may list.
pub const MAX_LEX_BOTS: usize = 64;

impl InstanceFeatures {
    /// Checks that every ARN is in `partition` (Connect has no
    /// cross-partition integrations); violations are named relative to the
    /// features message (`lex_bots[1]`).
    pub fn partition_violations(&self, partition: Partition) -> Vec<FieldViolation> {
        let mut violations = Violations::new();
        let lists = [
            ("firehose_delivery_streams", &self.firehose_delivery_streams),
            ("kinesis_streams", &self.kinesis_streams),
            ("lex_bots", &self.lex_bots),
        ];
        for (field, arns) in lists {
            for (index, arn) in arns.iter().enumerate() {
                if arn.partition() != partition {
                    violations.add(
                        format!("{field}[{index}]"),
                        format!(
                            "is in partition {} but the instance is in {partition}",
                            arn.partition()
                        ),
                    );
                }
            }
        }
        match violations.finish() {
            Ok(()) => Vec::new(),
            Err(error) => error.violations,
        }
    }
}

/// When Amazon Connect began giving every instance a service-linked role
/// (2018-10-01): an instance created before is a legacy instance that may
/// have none.
pub fn legacy_cutoff() -> DateTime<Utc> {
    DateTime::from_timestamp(1_538_352_000, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The status of an Amazon Connect instance, as Connect reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConnectStatus {
    /// Being created.
    CreationInProgress,
    /// Working.
    Active,
    /// Its creation failed.
    CreationFailed,
}

impl ConnectStatus {
    /// Every status.
    pub const ALL: [ConnectStatus; 3] = [
        ConnectStatus::CreationInProgress,
        ConnectStatus::Active,
        ConnectStatus::CreationFailed,
    ];

    /// The status as Connect (and the API and the database) write it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectStatus::CreationInProgress => "CREATION_IN_PROGRESS",
            ConnectStatus::Active => "ACTIVE",
            ConnectStatus::CreationFailed => "CREATION_FAILED",
        }
    }

    /// Parses Connect's spelling.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

impl fmt::Display for ConnectStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether Amazon Connect knows an instance the registry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ObservedState {
    /// Registered by hand, never seen in Connect.
    Unobserved,
    /// Connect listed it at the last look.
    Observed,
    /// Connect listed it once and no longer does (kept, never deleted
    /// silently; `last_seen_time` says when it was last there).
    Vanished,
}

impl ObservedState {
    /// Every state.
    pub const ALL: [ObservedState; 3] = [
        ObservedState::Unobserved,
        ObservedState::Observed,
        ObservedState::Vanished,
    ];

    /// The state as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ObservedState::Unobserved => "UNOBSERVED",
            ObservedState::Observed => "OBSERVED",
            ObservedState::Vanished => "VANISHED",
        }
    }

    /// Parses a state's name.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

impl fmt::Display for ObservedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What Amazon Connect last said about an instance (filled by discovery and
/// by an ensure's look at Connect; all empty for an instance never seen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectView {
    /// The instance's ARN in Connect.
    pub connect_arn: Option<String>,
    /// Its status in Connect.
    pub connect_status: Option<ConnectStatus>,
    /// The ARN of the service-linked role Connect links to the instance
    /// (none for an instance from before October 2018).
    pub service_role_arn: Option<String>,
    /// `CONNECT_MANAGED`, `SAML` or `EXISTING_DIRECTORY`.
    pub identity_management_type: Option<String>,
    /// Whether Connect knows the instance.
    pub observed_state: ObservedState,
    /// When Connect last listed the instance.
    pub last_seen_time: Option<DateTime<Utc>>,
    /// When the service last looked at Connect for the instance.
    pub sync_time: Option<DateTime<Utc>>,
}

impl Default for ConnectView {
    fn default() -> Self {
        ConnectView {
            connect_arn: None,
            connect_status: None,
            service_role_arn: None,
            identity_management_type: None,
            observed_state: ObservedState::Unobserved,
            last_seen_time: None,
            sync_time: None,
        }
    }
}

/// An instance as Connect describes it, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenInstance {
    /// The instance id.
    pub instance_id: crate::types::InstanceId,
    /// Its alias (`None` when Connect has none, or one the registry's rules
    /// refuse).
    pub instance_alias: Option<InstanceAlias>,
    /// Its ARN.
    pub connect_arn: String,
    /// Its status.
    pub connect_status: Option<ConnectStatus>,
    /// When Connect created it.
    pub instance_create_time: Option<DateTime<Utc>>,
    /// Its identity management type.
    pub identity_management_type: Option<String>,
    /// Its service-linked role, as Connect names it.
    pub service_role_arn: Option<String>,
}

/// A registered Amazon Connect instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The owning account.
    pub account_id: AccountId,
    /// The Connect instance id.
    pub instance_id: crate::types::InstanceId,
    /// The instance alias.
    pub instance_alias: Option<InstanceAlias>,
    /// The region (immutable).
    pub region: RegionCode,
    /// When the Connect instance was created in AWS.
    pub instance_create_time: Option<DateTime<Utc>>,
    /// The enabled features.
    pub features: InstanceFeatures,
    /// The recorded state of the linked role.
    pub linked_role_state: LinkedRoleState,
    /// What Amazon Connect last said about it.
    pub connect: ConnectView,
    /// When it was registered.
    pub create_time: DateTime<Utc>,
    /// When it last changed.
    pub update_time: DateTime<Utc>,
    /// The revision (etag).
    pub revision: Revision,
}

impl Instance {
    /// The instance's key.
    pub fn key(&self) -> InstanceKey {
        InstanceKey {
            account_id: self.account_id.clone(),
            instance_id: self.instance_id.clone(),
        }
    }

    /// True for an instance created before service-linked roles existed
    /// (2018-10-01), which may have no role.
    pub fn is_legacy(&self) -> bool {
        self.instance_create_time
            .is_some_and(|t| t < legacy_cutoff())
    }
}

/// The writable fields of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceFields {
    /// The instance alias.
    pub instance_alias: Option<InstanceAlias>,
    /// When the Connect instance was created in AWS.
    pub instance_create_time: Option<DateTime<Utc>>,
    /// The enabled features.
    pub features: InstanceFeatures,
}

/// One field of [`InstanceFeatures`], as named in an update mask
/// (`features.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeatureField {
    /// `call_recordings_bucket`.
    CallRecordingsBucket,
    /// `exported_reports_bucket`.
    ExportedReportsBucket,
    /// `customer_profiles_domain`.
    CustomerProfilesDomain,
    /// `firehose_delivery_streams`.
    FirehoseDeliveryStreams,
    /// `kinesis_streams`.
    KinesisStreams,
    /// `lex_bots`.
    LexBots,
    /// `flow_logs_log_group`.
    FlowLogsLogGroup,
    /// `voice_id_domain`.
    VoiceIdDomain,
    /// `outbound_campaigns`.
    OutboundCampaigns,
}

impl FeatureField {
    /// Every feature field.
    pub const ALL: [FeatureField; 9] = [
        FeatureField::CallRecordingsBucket,
        FeatureField::ExportedReportsBucket,
        FeatureField::CustomerProfilesDomain,
        FeatureField::FirehoseDeliveryStreams,
        FeatureField::KinesisStreams,
        FeatureField::LexBots,
        FeatureField::FlowLogsLogGroup,
        FeatureField::VoiceIdDomain,
        FeatureField::OutboundCampaigns,
    ];

    /// The proto field name.
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureField::CallRecordingsBucket => "call_recordings_bucket",
            FeatureField::ExportedReportsBucket => "exported_reports_bucket",
            FeatureField::CustomerProfilesDomain => "customer_profiles_domain",
            FeatureField::FirehoseDeliveryStreams => "firehose_delivery_streams",
            FeatureField::KinesisStreams => "kinesis_streams",
            FeatureField::LexBots => "lex_bots",
            FeatureField::FlowLogsLogGroup => "flow_logs_log_group",
            FeatureField::VoiceIdDomain => "voice_id_domain",
            FeatureField::OutboundCampaigns => "outbound_campaigns",
        }
    }

    /// Parses a proto field name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

impl InstanceFeatures {
    /// Copies the named fields from `from`.
    pub fn apply(&mut self, from: &InstanceFeatures, fields: &[FeatureField]) {
        for field in fields {
            match field {
                FeatureField::CallRecordingsBucket => {
                    self.call_recordings_bucket = from.call_recordings_bucket.clone();
                }
                FeatureField::ExportedReportsBucket => {
                    self.exported_reports_bucket = from.exported_reports_bucket.clone();
                }
                FeatureField::CustomerProfilesDomain => {
                    self.customer_profiles_domain = from.customer_profiles_domain.clone();
                }
                FeatureField::FirehoseDeliveryStreams => {
                    self.firehose_delivery_streams = from.firehose_delivery_streams.clone();
                }
                FeatureField::KinesisStreams => self.kinesis_streams = from.kinesis_streams.clone(),
                FeatureField::LexBots => self.lex_bots = from.lex_bots.clone(),
                FeatureField::FlowLogsLogGroup => {
                    self.flow_logs_log_group = from.flow_logs_log_group.clone();
                }
                FeatureField::VoiceIdDomain => self.voice_id_domain = from.voice_id_domain.clone(),
                FeatureField::OutboundCampaigns => {
                    self.outbound_campaigns = from.outbound_campaigns
                }
            }
        }
    }
}

/// A change to an instance, from an update mask.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstancePatch {
    /// `instance_alias`, when in the mask.
    pub instance_alias: Option<Option<InstanceAlias>>,
    /// `instance_create_time`, when in the mask.
    pub instance_create_time: Option<Option<DateTime<Utc>>>,
    /// The feature fields in the mask.
    pub feature_fields: Vec<FeatureField>,
    /// The new values of those feature fields.
    pub features: InstanceFeatures,
}

impl InstancePatch {
    /// The fields the patch changes, for the audit trail.
    pub fn describe(&self) -> String {
        let mut fields: Vec<&str> = Vec::new();
        if self.instance_alias.is_some() {
            fields.push("instance_alias");
        }
        if self.instance_create_time.is_some() {
            fields.push("instance_create_time");
        }
        fields.extend(self.feature_fields.iter().map(|f| f.as_str()));
        if fields.is_empty() {
            "nothing".to_owned()
        } else {
            fields.join(", ")
        }
    }

    /// Applies the patch to an instance.
    pub fn apply(&self, instance: &mut Instance) {
        if let Some(alias) = &self.instance_alias {
            instance.instance_alias = alias.clone();
        }
        if let Some(time) = &self.instance_create_time {
            instance.instance_create_time = *time;
        }
        instance
            .features
            .apply(&self.features, &self.feature_fields);
    }
}

/// A change to an account, from an update mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountPatch {
    /// `display_name`, when in the mask.
    pub display_name: Option<String>,
    /// `access_role_arn`, when in the mask (`Some(None)` clears it). Checked
    /// against the account's partition by the store.
    pub access_role_arn: Option<Option<String>>,
    /// `external_id`, when in the mask.
    pub external_id: ExternalIdChange,
}

/// A new account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    /// The account id.
    pub account_id: AccountId,
    /// The writable fields.
    pub fields: AccountFields,
    /// The STS external id, if any.
    pub external_id: Option<ExternalId>,
}

/// A new instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInstance {
    /// The instance's key.
    pub key: InstanceKey,
    /// The region.
    pub region: RegionCode,
    /// The writable fields.
    pub fields: InstanceFields,
}

/// Why IAM could not delete a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionFailure {
    /// IAM's reason.
    pub reason: String,
    /// What still uses the role, by region: (region, resource ARNs).
    pub role_usage: Vec<(String, Vec<String>)>,
}

/// The recorded linked role of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedRole {
    /// The owning account.
    pub account_id: AccountId,
    /// The instance.
    pub instance_id: crate::types::InstanceId,
    /// The lifecycle state.
    pub state: LinkedRoleState,
    /// The IAM role name.
    pub role_name: Option<String>,
    /// The IAM role ARN.
    pub role_arn: Option<String>,
    /// The IAM role id.
    pub role_id: Option<String>,
    /// The IAM path.
    pub path: Option<String>,
    /// The description as last recorded.
    pub description: Option<String>,
    /// When IAM created the role.
    pub iam_create_time: Option<DateTime<Utc>>,
    /// When the role was last used.
    pub last_used_time: Option<DateTime<Utc>>,
    /// Where the role was last used.
    pub last_used_region: Option<String>,
    /// True when an existing role was taken over.
    pub adopted: bool,
    /// True when the role Connect links to the instance was missing from
    /// IAM and the service created it again under the same name.
    #[serde(default)]
    pub restored: bool,
    /// The last deletion task.
    pub deletion_task_id: Option<String>,
    /// Why the last deletion failed.
    pub deletion_failure: Option<DeletionFailure>,
    /// When the record last changed.
    pub update_time: DateTime<Utc>,
    /// The revision (etag).
    pub revision: Revision,
}

impl LinkedRole {
    /// The record of an instance that has no linked role yet.
    pub fn absent(instance: &Instance) -> Self {
        LinkedRole {
            account_id: instance.account_id.clone(),
            instance_id: instance.instance_id.clone(),
            state: LinkedRoleState::Absent,
            role_name: None,
            role_arn: None,
            role_id: None,
            path: None,
            description: None,
            iam_create_time: None,
            last_used_time: None,
            last_used_region: None,
            adopted: false,
            restored: false,
            deletion_task_id: None,
            deletion_failure: None,
            update_time: instance.update_time,
            // Revision 0: no record yet; the first write makes revision 1.
            revision: Revision(0),
        }
    }

    /// The instance's key.
    pub fn key(&self) -> InstanceKey {
        InstanceKey {
            account_id: self.account_id.clone(),
            instance_id: self.instance_id.clone(),
        }
    }
}

/// A role as observed in IAM, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedRole {
    /// The role name.
    pub role_name: String,
    /// The ARN.
    pub role_arn: String,
    /// The role id.
    pub role_id: String,
    /// The path.
    pub path: String,
    /// The description.
    pub description: Option<String>,
    /// When IAM created it.
    pub iam_create_time: Option<DateTime<Utc>>,
    /// When it was last used.
    pub last_used_time: Option<DateTime<Utc>>,
    /// Where it was last used.
    pub last_used_region: Option<String>,
}

/// How the service reaches an account (includes the external id: for STS
/// only, never returned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountAccess {
    /// The account.
    pub account_id: AccountId,
    /// Its partition.
    pub partition: Partition,
    /// The role to assume.
    pub access_role_arn: Option<String>,
    /// The external id.
    pub external_id: Option<ExternalId>,
}
