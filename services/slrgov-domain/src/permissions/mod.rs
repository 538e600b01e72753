//! What an instance's service-linked role must allow, from the feature ->
//! permission table of the seed page (`mission/connect-slr.md`, section
//! "Service-linked role permissions for Amazon Connect"; the line numbers
//! cited below are that file's).
//!
//! [`required_permissions`] turns an instance's [`InstanceFeatures`] into
//! concrete `(action, resource)` pairs, which an inspection evaluates
//! against the role's policies with [`crate::policy::evaluate`].
//!
//! Conventions:
//! - Every ARN is built in the instance's partition (`aws`, `aws-us-gov`,
//!   `aws-cn`); regional resources use the instance's region and account.
//! - Wildcard grants on the page (`connect:*`, `voiceid:*`) are represented
//!   by a few concrete actions, since a requirement is one action.
//! - A resource that itself ends in `*` (`instance/*`, an object prefix
//!   `bucket/*`, the EventBridge rule prefix) means "all of these": a grant
//!   satisfies it only if its pattern covers the text as written (see the
//!   [`policy`](crate::policy) module).
//! - Requirements are listed in table order; a repeated `(action,
//!   resource)` pair is listed once, under the first feature that needs it
//!   (e.g. one bucket used both for recordings and for reports).

use std::collections::HashSet;

use crate::model::{FeatureField, InstanceFeatures};
use crate::types::{AccountId, Partition, RegionCode};

#[cfg(test)]
mod tests;

/// One permission the role must have.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    /// The feature that needs it: `core` for what every instance needs,
    /// otherwise the [`InstanceFeatures`] field name (`call_recordings_bucket`,
    /// `lex_bots`, ...).
    pub feature: &'static str,
    /// The IAM action, e.g. `s3:PutObject`.
    pub action: String,
    /// The resource ARN, or `*`.
    pub resource: String,
}

/// The feature name of the permissions every instance needs.
pub const CORE: &str = "core";

/// The name prefix of the EventBridge rules Connect manages for Voice ID
/// (publishing contact records to Voice ID). The seed page names no rule,
/// so the requirement is the whole prefix: `rule/AmazonConnect-*`, which
/// the managed policy's grants (or an inline grant on `rule/*`) cover.
pub const VOICE_ID_RULE_PREFIX: &str = "AmazonConnect-";

/// Where a rule's resources come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// `*` (actions without resource-level permissions).
    Everything,
    /// Every Connect instance of the account in the region:
    /// `arn:{p}:connect:{region}:{account}:instance/*`.
    ConnectInstances,
    /// The call-recordings bucket: `arn:{p}:s3:::{bucket}`.
    CallRecordingsBucket,
    /// The call-recordings bucket's objects: `arn:{p}:s3:::{bucket}/*`.
    CallRecordingsObjects,
    /// The exported-reports bucket's objects: `arn:{p}:s3:::{bucket}/*`.
    ExportedReportsObjects,
    /// The Customer Profiles domain:
    /// `arn:{p}:profile:{region}:{account}:domains/{domain}`.
    ProfilesDomain,
    /// Each Firehose delivery stream ARN, as given.
    FirehoseStreams,
    /// Each Kinesis stream ARN, as given.
    KinesisStreams,
    /// Each Lex bot ARN, as given.
    LexBots,
    /// The flow-logs log group's streams:
    /// `arn:{p}:logs:{region}:{account}:log-group:{name}:*`.
    FlowLogsGroup,
    /// The Voice ID domain: `arn:{p}:voiceid:{region}:{account}:domain/{id}`.
    VoiceIdDomain,
    /// The Connect-managed EventBridge rules:
    /// `arn:{p}:events:{region}:{account}:rule/AmazonConnect-*`.
    VoiceIdRules,
}

/// One line of the table: actions a feature needs on a target.
#[derive(Debug, Clone, Copy)]
struct Rule {
    /// The feature (`None`: every instance).
    feature: Option<FeatureField>,
    /// The actions.
    actions: &'static [&'static str],
    /// The resources.
    target: Target,
}

/// Line 21: "all Amazon Connect actions, `connect:*`, on all Amazon Connect
/// resources", represented by instance-level reads on every instance.
const CORE_CONNECT: Rule = Rule {
    feature: None,
    actions: &["connect:DescribeInstance", "connect:ListInstanceAttributes"],
    target: Target::ConnectInstances,
};

/// Line 43: "`cloudwatch:PutMetricData` to publish Amazon Connect usage
/// metrics" (no resource-level permissions, hence `*`).
const CORE_METRICS: Rule = Rule {
    feature: None,
    actions: &["cloudwatch:PutMetricData"],
    target: Target::Everything,
};

/// Line 22: the object actions on the bucket "specified for recorded
/// conversations".
const CALL_RECORDINGS_OBJECTS: Rule = Rule {
    feature: Some(FeatureField::CallRecordingsBucket),
    actions: &[
        "s3:GetObject",
        "s3:GetObjectAcl",
        "s3:PutObject",
        "s3:PutObjectAcl",
        "s3:DeleteObject",
    ],
    target: Target::CallRecordingsObjects,
};

/// Line 22: "`s3:GetBucketLocation`, and `GetBucketAcl`" on the recordings
/// bucket itself.
const CALL_RECORDINGS_BUCKET: Rule = Rule {
    feature: Some(FeatureField::CallRecordingsBucket),
    actions: &["s3:GetBucketLocation", "s3:GetBucketAcl"],
    target: Target::CallRecordingsBucket,
};

/// Line 24: "`s3:PutObject`, `s3:PutObjectAcl`, and `s3:GetObjectAcl` to the
/// bucket specified for exported reports".
const EXPORTED_REPORTS: Rule = Rule {
    feature: Some(FeatureField::ExportedReportsBucket),
    actions: &["s3:PutObject", "s3:PutObjectAcl", "s3:GetObjectAcl"],
    target: Target::ExportedReportsObjects,
};

/// Lines 25-37: the ten Customer Profiles actions, on the instance's
/// domain.
const CUSTOMER_PROFILES: Rule = Rule {
    feature: Some(FeatureField::CustomerProfilesDomain),
    actions: &[
        "profile:SearchProfiles",
        "profile:CreateProfile",
        "profile:UpdateProfile",
        "profile:AddProfileKey",
        "profile:ListProfileObjects",
        "profile:ListAccountIntegrations",
        "profile:ListProfileObjectTypeTemplates",
        "profile:GetProfileObjectTypeTemplate",
        "profile:ListProfileObjectTypes",
        "profile:GetProfileObjectType",
    ],
    target: Target::ProfilesDomain,
};

/// Line 38: Kinesis Data Firehose, "for the delivery stream defined for
/// agent event streams and contact records".
const FIREHOSE: Rule = Rule {
    feature: Some(FeatureField::FirehoseDeliveryStreams),
    actions: &[
        "firehose:DescribeDeliveryStream",
        "firehose:PutRecord",
        "firehose:PutRecordBatch",
    ],
    target: Target::FirehoseStreams,
};

/// Line 39: Kinesis Data Streams, "for the stream specified for agent event
/// streams and contact records".
const KINESIS: Rule = Rule {
    feature: Some(FeatureField::KinesisStreams),
    actions: &[
        "kinesis:PutRecord",
        "kinesis:PutRecords",
        "kinesis:DescribeStream",
    ],
    target: Target::KinesisStreams,
};

/// Line 40: "`lex:PostContent` for the bots added to your instance".
const LEX_BOTS: Rule = Rule {
    feature: Some(FeatureField::LexBots),
    actions: &["lex:PostContent"],
    target: Target::LexBots,
};

/// Line 41: "`lex:ListBots`, `lex:ListBotAliases` for all bots created in
/// the account across all Regions" (checked whenever a bot is present).
const LEX_LIST: Rule = Rule {
    feature: Some(FeatureField::LexBots),
    actions: &["lex:ListBots", "lex:ListBotAliases"],
    target: Target::Everything,
};

/// Line 42: CloudWatch Logs "to the CloudWatch Logs group specified for flow
/// logging".
const FLOW_LOGS: Rule = Rule {
    feature: Some(FeatureField::FlowLogsLogGroup),
    actions: &[
        "logs:CreateLogStream",
        "logs:DescribeLogStreams",
        "logs:PutLogEvents",
    ],
    target: Target::FlowLogsGroup,
};

/// Line 44: "`voiceid:*` for the Voice ID domains associated with your
/// instance", represented by the domain read and the calls a contact makes.
const VOICE_ID: Rule = Rule {
    feature: Some(FeatureField::VoiceIdDomain),
    actions: &[
        "voiceid:DescribeDomain",
        "voiceid:EvaluateSession",
        "voiceid:DescribeSpeaker",
    ],
    target: Target::VoiceIdDomain,
};

/// Line 45: "`events:PutRule` and `events:PutTargets` for the Amazon Connect
/// managed EventBridge rule" of the Voice ID domains (see
/// [`VOICE_ID_RULE_PREFIX`]).
const VOICE_ID_EVENTS: Rule = Rule {
    feature: Some(FeatureField::VoiceIdDomain),
    actions: &["events:PutRule", "events:PutTargets"],
    target: Target::VoiceIdRules,
};

/// Lines 46-58: the twelve outbound-campaigns actions, "for all operations
/// related to outbound campaigns".
const OUTBOUND_CAMPAIGNS: Rule = Rule {
    feature: Some(FeatureField::OutboundCampaigns),
    actions: &[
        "connect-campaigns:CreateCampaign",
        "connect-campaigns:DeleteCampaign",
        "connect-campaigns:DescribeCampaign",
        "connect-campaigns:UpdateCampaignName",
        "connect-campaigns:GetCampaignState",
        "connect-campaigns:GetCampaignStateBatch",
        "connect-campaigns:ListCampaigns",
        "connect-campaigns:UpdateOutboundCallConfig",
        "connect-campaigns:UpdateDialerConfig",
        "connect-campaigns:PauseCampaign",
        "connect-campaigns:ResumeCampaign",
        "connect-campaigns:StopCampaign",
    ],
    target: Target::Everything,
};

/// The table, in output order.
const RULES: &[Rule] = &[
    CORE_CONNECT,
    CORE_METRICS,
    CALL_RECORDINGS_OBJECTS,
    CALL_RECORDINGS_BUCKET,
    EXPORTED_REPORTS,
    CUSTOMER_PROFILES,
    FIREHOSE,
    KINESIS,
    LEX_BOTS,
    LEX_LIST,
    FLOW_LOGS,
    VOICE_ID,
    VOICE_ID_EVENTS,
    OUTBOUND_CAMPAIGNS,
];

/// True when the instance uses the feature.
fn enabled(features: &InstanceFeatures, field: FeatureField) -> bool {
    match field {
        FeatureField::CallRecordingsBucket => features.call_recordings_bucket.is_some(),
        FeatureField::ExportedReportsBucket => features.exported_reports_bucket.is_some(),
        FeatureField::CustomerProfilesDomain => features.customer_profiles_domain.is_some(),
        FeatureField::FirehoseDeliveryStreams => !features.firehose_delivery_streams.is_empty(),
        FeatureField::KinesisStreams => !features.kinesis_streams.is_empty(),
        FeatureField::LexBots => !features.lex_bots.is_empty(),
        FeatureField::FlowLogsLogGroup => features.flow_logs_log_group.is_some(),
        FeatureField::VoiceIdDomain => features.voice_id_domain.is_some(),
        FeatureField::OutboundCampaigns => features.outbound_campaigns,
    }
}

/// The resources of a target for one instance (empty when the feature's
/// value is absent).
fn resources(
    target: Target,
    features: &InstanceFeatures,
    p: Partition,
    account: &AccountId,
    region: &RegionCode,
) -> Vec<String> {
    match target {
        Target::Everything => vec!["*".to_owned()],
        Target::ConnectInstances => vec![format!("arn:{p}:connect:{region}:{account}:instance/*")],
        Target::CallRecordingsBucket => features
            .call_recordings_bucket
            .iter()
            .map(|bucket| format!("arn:{p}:s3:::{bucket}"))
            .collect(),
        Target::CallRecordingsObjects => features
            .call_recordings_bucket
            .iter()
            .map(|bucket| format!("arn:{p}:s3:::{bucket}/*"))
            .collect(),
        Target::ExportedReportsObjects => features
            .exported_reports_bucket
            .iter()
            .map(|bucket| format!("arn:{p}:s3:::{bucket}/*"))
            .collect(),
        Target::ProfilesDomain => features
            .customer_profiles_domain
            .iter()
            .map(|domain| format!("arn:{p}:profile:{region}:{account}:domains/{domain}"))
            .collect(),
        Target::FirehoseStreams => features
            .firehose_delivery_streams
            .iter()
            .map(|arn| arn.as_str().to_owned())
            .collect(),
        Target::KinesisStreams => features
            .kinesis_streams
            .iter()
            .map(|arn| arn.as_str().to_owned())
            .collect(),
        Target::LexBots => features
            .lex_bots
            .iter()
            .map(|arn| arn.as_str().to_owned())
            .collect(),
        Target::FlowLogsGroup => features
            .flow_logs_log_group
            .iter()
            .map(|group| format!("arn:{p}:logs:{region}:{account}:log-group:{group}:*"))
            .collect(),
        Target::VoiceIdDomain => features
            .voice_id_domain
            .iter()
            .map(|domain| format!("arn:{p}:voiceid:{region}:{account}:domain/{domain}"))
            .collect(),
        Target::VoiceIdRules => vec![format!(
            "arn:{p}:events:{region}:{account}:rule/{VOICE_ID_RULE_PREFIX}*"
        )],
    }
}

/// The permissions the service-linked role of an instance with `features`,
/// in `partition`, `account` and `region`, must allow: the core
/// permissions every instance needs, then those of each enabled feature,
/// in the seed page's order (for each table line: each resource, then each
/// action). No `(action, resource)` pair appears twice.
pub fn required_permissions(
    features: &InstanceFeatures,
    partition: Partition,
    account: &AccountId,
    region: &RegionCode,
) -> Vec<Requirement> {
    let mut seen: HashSet<(&'static str, String)> = HashSet::new();
    let mut out = Vec::new();
    for rule in RULES {
        if let Some(field) = rule.feature
            && !enabled(features, field)
        {
            continue;
        }
        let feature = rule.feature.map_or(CORE, FeatureField::as_str);
        for resource in resources(rule.target, features, partition, account, region) {
            for action in rule.actions {
                if seen.insert((*action, resource.clone())) {
                    out.push(Requirement {
                        feature,
                        action: (*action).to_owned(),
                        resource: resource.clone(),
                    });
                }
            }
        }
    }
    out
}
