//! Proto to domain and back. Requests are destructured field by field
//! (`let pb::X { a, b, .. }` is avoided on purpose): a field added to the
//! proto breaks the build here until someone decides what it means, in the
//! manner of qdrant's `conversions.rs`. Every malformed field becomes a
//! violation naming its path in the request.

use chrono::{DateTime, Utc};
use prost::Message;
use sha2::{Digest, Sha256};
use slrgov_domain::model::{
    Account, AccountFields, ConnectStatus, ExternalId, ExternalIdChange, Instance,
    InstanceFeatures, LinkedRoleState, ObservedState,
};
use slrgov_domain::model::{MAX_LEX_BOTS, MAX_STREAMS};
use slrgov_domain::names::account_name;
use slrgov_domain::types::{
    Arn, BucketName, DISPLAY_NAME_MAX, InstanceAlias, LogGroupName, Partition, ProfilesDomain,
    Revision, VoiceIdDomain, check_external_id, check_text,
};
use slrgov_domain::{FieldError, Violations};
use slrgov_proto::slrgov::v1 as pb;
use slrgov_store::Idempotency;

mod operations;
pub use operations::operation;

// ---------------------------------------------------------------------------
// Domain to proto

/// A chrono time as a protobuf Timestamp.
pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// A protobuf Timestamp as a chrono time, at microsecond precision (what
/// the databases keep), or a description of why it is out of range.
pub fn from_timestamp(value: &prost_types::Timestamp) -> Result<DateTime<Utc>, FieldError> {
    // 0001-01-01 to 9999-12-31, nanos in range (the Timestamp contract).
    const MIN: i64 = -62_135_596_800;
    const MAX: i64 = 253_402_300_799;
    if !(MIN..=MAX).contains(&value.seconds) || !(0..1_000_000_000).contains(&value.nanos) {
        return Err(FieldError::new(
            "must be a valid timestamp between years 1 and 9999",
        ));
    }
    let micros = value.seconds * 1_000_000 + i64::from(value.nanos) / 1000;
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| FieldError::new("must be a valid timestamp between years 1 and 9999"))
}

/// The API enum value of a linked-role state.
pub fn linked_role_state(state: LinkedRoleState) -> pb::linked_role::State {
    use pb::linked_role::State;
    match state {
        LinkedRoleState::Absent => State::Absent,
        LinkedRoleState::Creating => State::Creating,
        LinkedRoleState::Active => State::Active,
        LinkedRoleState::Deleting => State::Deleting,
        LinkedRoleState::Deleted => State::Deleted,
        LinkedRoleState::DeletionFailed => State::DeletionFailed,
    }
}

/// A linked role as the API returns it.
pub fn linked_role(role: &slrgov_domain::model::LinkedRole) -> pb::LinkedRole {
    pb::LinkedRole {
        name: role.key().linked_role_name(),
        state: linked_role_state(role.state) as i32,
        role_name: role.role_name.clone().unwrap_or_default(),
        role_arn: role.role_arn.clone().unwrap_or_default(),
        role_id: role.role_id.clone().unwrap_or_default(),
        path: role.path.clone().unwrap_or_default(),
        description: role.description.clone().unwrap_or_default(),
        iam_create_time: role.iam_create_time.map(timestamp),
        last_used_time: role.last_used_time.map(timestamp),
        last_used_region: role.last_used_region.clone().unwrap_or_default(),
        adopted: role.adopted,
        restored: role.restored,
        deletion_task_id: role.deletion_task_id.clone().unwrap_or_default(),
        deletion_failure: role.deletion_failure.as_ref().map(|f| {
            pb::linked_role::DeletionFailure {
                reason: f.reason.clone(),
                role_usage: f
                    .role_usage
                    .iter()
                    .map(|(region, resources)| pb::linked_role::RoleUsage {
                        region: region.clone(),
                        resources: resources.clone(),
                    })
                    .collect(),
            }
        }),
        update_time: Some(timestamp(role.update_time)),
        etag: if role.revision.0 > 0 {
            role.revision.etag()
        } else {
            String::new()
        },
    }
}

/// A finding code as the API writes it.
pub fn finding_code(code: slrgov_domain::finding::FindingCode) -> pb::inspection::finding::Code {
    use pb::inspection::finding::Code;
    use slrgov_domain::finding::FindingCode;
    match code {
        FindingCode::RoleMissing => Code::RoleMissing,
        FindingCode::TrustPolicyMismatch => Code::TrustPolicyMismatch,
        FindingCode::PathMismatch => Code::PathMismatch,
        FindingCode::PermissionMissing => Code::PermissionMissing,
        FindingCode::PermissionConditional => Code::PermissionConditional,
        FindingCode::DescriptionDrift => Code::DescriptionDrift,
        FindingCode::RoleUnused => Code::RoleUnused,
        FindingCode::LegacyInstanceWithoutRole => Code::LegacyInstanceWithoutRole,
        FindingCode::RoleMismatch => Code::RoleMismatch,
        FindingCode::ServiceRoleMismatch => Code::ServiceRoleMismatch,
        FindingCode::OrphanRole => Code::OrphanRole,
        FindingCode::VanishedInstance => Code::VanishedInstance,
    }
}

/// A severity as the API writes it.
pub fn finding_severity(
    severity: slrgov_domain::finding::Severity,
) -> pb::inspection::finding::Severity {
    use pb::inspection::finding::Severity as S;
    use slrgov_domain::finding::Severity;
    match severity {
        Severity::Info => S::Info,
        Severity::Warning => S::Warning,
        Severity::Error => S::Error,
    }
}

/// An inspection as the API returns it.
pub fn inspection(inspection: &crate::lifecycle::Inspection) -> pb::Inspection {
    use pb::inspection::permission_check::Decision as PbDecision;
    use slrgov_domain::policy::Decision;
    pb::Inspection {
        linked_role: Some(linked_role(&inspection.linked_role)),
        healthy: inspection.healthy(),
        findings: inspection
            .findings
            .iter()
            .map(|f| pb::inspection::Finding {
                code: finding_code(f.code) as i32,
                severity: finding_severity(f.severity) as i32,
                message: f.message.clone(),
                feature: f.feature.clone(),
                action: f.action.clone(),
                resource: f.resource.clone(),
            })
            .collect(),
        permissions: inspection
            .permissions
            .iter()
            .map(|p| pb::inspection::PermissionCheck {
                feature: p.feature.clone(),
                action: p.action.clone(),
                resource: p.resource.clone(),
                decision: match p.decision {
                    Decision::Allowed => PbDecision::Allowed,
                    Decision::ImplicitDeny => PbDecision::ImplicitDeny,
                    Decision::ExplicitDeny => PbDecision::ExplicitDeny,
                    Decision::Conditional => PbDecision::Conditional,
                } as i32,
                source_policy: p.source_policy.clone().unwrap_or_default(),
            })
            .collect(),
        inspect_time: Some(timestamp(inspection.inspect_time)),
    }
}

/// An account as the API returns it (never with the external id).
pub fn account(account: &Account) -> pb::Account {
    pb::Account {
        name: account_name(&account.account_id),
        account_id: account.account_id.to_string(),
        display_name: account.display_name.clone(),
        partition: account.partition.to_string(),
        access_role_arn: account
            .access_role_arn
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        external_id: String::new(),
        external_id_set: account.external_id_set,
        create_time: Some(timestamp(account.create_time)),
        update_time: Some(timestamp(account.update_time)),
        etag: account.revision.etag(),
    }
}

fn opt_string<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map(ToString::to_string).unwrap_or_default()
}

fn strings(values: &[Arn]) -> Vec<String> {
    values.iter().map(ToString::to_string).collect()
}

/// Instance features as the API returns them.
pub fn features(features: &InstanceFeatures) -> pb::InstanceFeatures {
    pb::InstanceFeatures {
        call_recordings_bucket: opt_string(&features.call_recordings_bucket),
        exported_reports_bucket: opt_string(&features.exported_reports_bucket),
        customer_profiles_domain: opt_string(&features.customer_profiles_domain),
        firehose_delivery_streams: strings(&features.firehose_delivery_streams),
        kinesis_streams: strings(&features.kinesis_streams),
        lex_bots: strings(&features.lex_bots),
        flow_logs_log_group: opt_string(&features.flow_logs_log_group),
        voice_id_domain: opt_string(&features.voice_id_domain),
        outbound_campaigns: features.outbound_campaigns,
    }
}

/// An instance as the API returns it.
pub fn instance(instance: &Instance) -> pb::Instance {
    pb::Instance {
        name: instance.key().name(),
        instance_id: instance.instance_id.to_string(),
        instance_alias: opt_string(&instance.instance_alias),
        region: instance.region.to_string(),
        instance_create_time: instance.instance_create_time.map(timestamp),
        features: Some(features(&instance.features)),
        linked_role_state: linked_role_state(instance.linked_role_state) as i32,
        create_time: Some(timestamp(instance.create_time)),
        update_time: Some(timestamp(instance.update_time)),
        etag: instance.revision.etag(),
        account_id: instance.account_id.to_string(),
        connect_arn: instance.connect.connect_arn.clone().unwrap_or_default(),
        connect_status: connect_status(instance.connect.connect_status) as i32,
        service_role_arn: instance
            .connect
            .service_role_arn
            .clone()
            .unwrap_or_default(),
        identity_management_type: instance
            .connect
            .identity_management_type
            .clone()
            .unwrap_or_default(),
        observed_state: observed_state(instance.connect.observed_state) as i32,
        last_seen_time: instance.connect.last_seen_time.map(timestamp),
        sync_time: instance.connect.sync_time.map(timestamp),
    }
}

/// The API enum value of a Connect status.
pub fn connect_status(status: Option<ConnectStatus>) -> pb::instance::ConnectStatus {
    use pb::instance::ConnectStatus as Pb;
    match status {
        None => Pb::Unspecified,
        Some(ConnectStatus::CreationInProgress) => Pb::CreationInProgress,
        Some(ConnectStatus::Active) => Pb::Active,
        Some(ConnectStatus::CreationFailed) => Pb::CreationFailed,
    }
}

/// The API enum value of an observed state.
pub fn observed_state(state: ObservedState) -> pb::instance::ObservedState {
    use pb::instance::ObservedState as Pb;
    match state {
        ObservedState::Unobserved => Pb::Unobserved,
        ObservedState::Observed => Pb::Observed,
        ObservedState::Vanished => Pb::Vanished,
    }
}

// ---------------------------------------------------------------------------
// Proto to domain

/// Parses an optional value: empty means none.
fn optional<T>(
    violations: &mut Violations,
    field: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, FieldError>,
) -> Option<T> {
    if value.is_empty() {
        None
    } else {
        violations.check(field, parse(value))
    }
}

/// Parses the ARN of a feature's resource (its partition is checked
/// against the account's by the store).
fn feature_arns(
    violations: &mut Violations,
    field: &str,
    values: &[String],
    max: usize,
    service: &str,
    prefixes: &[&str],
    what: &str,
) -> Vec<Arn> {
    if values.len() > max {
        violations.add(field, format!("must list at most {max} ARNs"));
        return Vec::new();
    }
    let mut arns = Vec::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        let parsed = Arn::parse(value).and_then(|arn| {
            if arn.service() == service && prefixes.iter().any(|p| arn.resource().starts_with(p)) {
                Ok(arn)
            } else {
                Err(FieldError::new(format!("must be the ARN of {what}")))
            }
        });
        if let Some(arn) = violations.check(field, parsed.map_err(|e| e.at_index(index))) {
            if arns.contains(&arn) {
                violations.add(format!("{field}[{index}]"), "is listed twice");
            } else {
                arns.push(arn);
            }
        }
    }
    arns
}

/// Parses instance features; violations are named under `prefix`.
pub fn parse_features(
    violations: &mut Violations,
    prefix: &str,
    features: pb::InstanceFeatures,
) -> InstanceFeatures {
    let pb::InstanceFeatures {
        call_recordings_bucket,
        exported_reports_bucket,
        customer_profiles_domain,
        firehose_delivery_streams,
        kinesis_streams,
        lex_bots,
        flow_logs_log_group,
        voice_id_domain,
        outbound_campaigns,
    } = features;
    let f = |name: &str| format!("{prefix}.{name}");
    InstanceFeatures {
        call_recordings_bucket: optional(
            violations,
            &f("call_recordings_bucket"),
            &call_recordings_bucket,
            BucketName::parse,
        ),
        exported_reports_bucket: optional(
            violations,
            &f("exported_reports_bucket"),
            &exported_reports_bucket,
            BucketName::parse,
        ),
        customer_profiles_domain: optional(
            violations,
            &f("customer_profiles_domain"),
            &customer_profiles_domain,
            ProfilesDomain::parse,
        ),
        firehose_delivery_streams: feature_arns(
            violations,
            &f("firehose_delivery_streams"),
            &firehose_delivery_streams,
            MAX_STREAMS,
            "firehose",
            &["deliverystream/"],
            "a Firehose delivery stream",
        ),
        kinesis_streams: feature_arns(
            violations,
            &f("kinesis_streams"),
            &kinesis_streams,
            MAX_STREAMS,
            "kinesis",
            &["stream/"],
            "a Kinesis data stream",
        ),
        lex_bots: feature_arns(
            violations,
            &f("lex_bots"),
            &lex_bots,
            MAX_LEX_BOTS,
            "lex",
            &["bot:", "bot/", "bot-alias/"],
            "a Lex bot or bot alias",
        ),
        flow_logs_log_group: optional(
            violations,
            &f("flow_logs_log_group"),
            &flow_logs_log_group,
            LogGroupName::parse,
        ),
        voice_id_domain: optional(
            violations,
            &f("voice_id_domain"),
            &voice_id_domain,
            VoiceIdDomain::parse,
        ),
        outbound_campaigns,
    }
}

/// Parses an instance alias field.
pub fn parse_alias(violations: &mut Violations, field: &str, value: &str) -> Option<InstanceAlias> {
    optional(violations, field, value, InstanceAlias::parse)
}

/// Parses an optional timestamp field.
pub fn parse_time(
    violations: &mut Violations,
    field: &str,
    value: Option<&prost_types::Timestamp>,
) -> Option<DateTime<Utc>> {
    value.and_then(|t| violations.check(field, from_timestamp(t)))
}

/// Parses a display name field.
pub fn parse_display_name(violations: &mut Violations, field: &str, value: &str) -> String {
    violations.check(field, check_text(value, DISPLAY_NAME_MAX));
    value.to_owned()
}

/// Parses an external id field (empty means none).
pub fn parse_external_id(
    violations: &mut Violations,
    field: &str,
    value: &str,
) -> Option<ExternalId> {
    if value.is_empty() {
        return None;
    }
    violations
        .check(field, check_external_id(value))
        .map(|()| ExternalId::new(value.to_owned()))
}

/// The external-id change an update asks for.
pub fn external_id_change(id: Option<ExternalId>) -> ExternalIdChange {
    match id {
        Some(id) => ExternalIdChange::Set(id),
        None => ExternalIdChange::Clear,
    }
}

/// Parses a partition field (empty means `aws`).
pub fn parse_partition(violations: &mut Violations, field: &str, value: &str) -> Partition {
    if value.is_empty() {
        return Partition::Aws;
    }
    violations
        .check(field, Partition::parse(value))
        .unwrap_or_default()
}

/// Parses an etag field.
pub fn parse_etag(violations: &mut Violations, field: &str, value: &str) -> Option<Revision> {
    violations
        .check(field, Revision::parse_etag(value))
        .flatten()
}

/// The writable account fields of a create request.
pub fn account_fields(
    violations: &mut Violations,
    display_name: &str,
    partition: &str,
    access_role_arn: &str,
) -> AccountFields {
    let partition = parse_partition(violations, "account.partition", partition);
    AccountFields {
        display_name: parse_display_name(violations, "account.display_name", display_name),
        partition,
        access_role_arn: optional(
            violations,
            "account.access_role_arn",
            access_role_arn,
            Arn::parse,
        ),
    }
}

// ---------------------------------------------------------------------------
// Request ids

/// A request that carries an AIP-155 `request_id`.
pub trait WithRequestId: Message + Clone {
    /// Its request id (empty: none).
    fn request_id(&self) -> &str;
    /// The same request without its request id (what its fingerprint is
    /// made of).
    fn without_request_id(&self) -> Self;
}

macro_rules! with_request_id {
    ($($request:ty),* $(,)?) => {$(
        impl WithRequestId for $request {
            fn request_id(&self) -> &str {
                &self.request_id
            }

            fn without_request_id(&self) -> Self {
                let mut copy = self.clone();
                copy.request_id.clear();
                copy
            }
        }
    )*};
}

with_request_id!(
    pb::CreateAccountRequest,
    pb::CreateInstanceRequest,
    pb::UpdateInstanceRequest,
    pb::DeleteInstanceRequest,
    pb::EnsureLinkedRoleRequest,
    pb::UpdateLinkedRoleDescriptionRequest,
    pb::UpdateLinkedRoleRequest,
    pb::RetireLinkedRoleRequest,
    pb::SyncInstancesRequest,
    pb::BatchEnsureLinkedRolesRequest,
);

/// Makes the idempotency key of a request: its request id (validated, a
/// bad one recorded in `violations`) and a digest of the method and every
/// other parameter.
pub fn idempotency<M: WithRequestId>(
    violations: &mut Violations,
    method: &str,
    request: &M,
) -> Option<Idempotency> {
    let request_id = violations
        .check(
            "request_id",
            slrgov_domain::types::RequestId::parse_optional(request.request_id()),
        )
        .flatten()?;
    let copy = request.without_request_id();
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update([0]);
    hasher.update(copy.encode_to_vec());
    Some(Idempotency {
        request_id,
        method: method.to_owned(),
        fingerprint: hasher.finalize().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_at_microseconds_and_refuse_out_of_range() {
        let t = prost_types::Timestamp {
            seconds: 1_500_000_000,
            nanos: 123_456_789,
        };
        let parsed = from_timestamp(&t).expect("valid");
        assert_eq!(timestamp(parsed).nanos, 123_456_000);
        for bad in [
            prost_types::Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            },
            prost_types::Timestamp {
                seconds: 0,
                nanos: -1,
            },
            prost_types::Timestamp {
                seconds: 0,
                nanos: 1_000_000_000,
            },
        ] {
            assert!(from_timestamp(&bad).is_err());
        }
    }

    #[test]
    fn features_name_every_bad_field() {
        let mut violations = Violations::new();
        parse_features(
            &mut violations,
            "instance.features",
            pb::InstanceFeatures {
                call_recordings_bucket: "Bad_Bucket".into(),
                lex_bots: vec![
                    "arn:aws:lex:us-east-1:123456789012:bot:Ok".into(),
                    "arn:aws:s3:::not-a-bot".into(),
                ],
                ..Default::default()
            },
        );
        let error = violations.finish().expect_err("violations");
        let fields: Vec<_> = error.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "instance.features.call_recordings_bucket",
                "instance.features.lex_bots[1]"
            ]
        );
    }
}
