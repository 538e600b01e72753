//! Rows as the database returns them, and their conversion to domain
//! values: a value that does not parse is a corrupt row, never a panic.

use chrono::{DateTime, Utc};
use slrgov_domain::Result;
use slrgov_domain::audit::{AuditEvent, AwsCall};
use slrgov_domain::finding::{FindingCode, Severity, StoredFinding};
use slrgov_domain::model::{
    Account, ConnectStatus, ConnectView, DeletionFailure, Instance, InstanceFeatures, LinkedRole,
    LinkedRoleState, ObservedState,
};
use slrgov_domain::types::{
    AccountId, Arn, InstanceAlias, InstanceId, Partition, RegionCode, Revision,
};
use slrgov_domain::workflow::{Phase, WorkflowError, WorkflowKind, WorkflowRecord, WorkflowTarget};
use sqlx::types::Json;

use crate::error::corrupt;

pub(crate) const ACCOUNT_COLUMNS: &str = "account_id, display_name, partition, access_role_arn, \
     external_id IS NOT NULL AS external_id_set, revision, create_time, update_time";

#[derive(sqlx::FromRow)]
pub(crate) struct AccountRow {
    account_id: String,
    display_name: String,
    partition: String,
    access_role_arn: Option<String>,
    external_id_set: bool,
    revision: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

impl AccountRow {
    pub(crate) fn into_account(self) -> Result<Account> {
        Ok(Account {
            account_id: AccountId::parse(&self.account_id)
                .map_err(|e| corrupt("accounts.account_id", e))?,
            display_name: self.display_name,
            partition: Partition::parse(&self.partition)
                .map_err(|e| corrupt("accounts.partition", e))?,
            access_role_arn: self
                .access_role_arn
                .map(|arn| Arn::parse(&arn))
                .transpose()
                .map_err(|e| corrupt("accounts.access_role_arn", e))?,
            external_id_set: self.external_id_set,
            create_time: self.create_time,
            update_time: self.update_time,
            revision: Revision(self.revision),
        })
    }
}

pub(crate) const INSTANCE_COLUMNS: &str = "account_id, instance_id, instance_alias, region, \
     instance_create_time, features, linked_role_state, connect_arn, connect_status, \
     service_role_arn, identity_management_type, observed_state, last_seen_time, sync_time, \
     revision, create_time, update_time";

#[derive(sqlx::FromRow)]
pub(crate) struct InstanceRow {
    account_id: String,
    instance_id: String,
    instance_alias: Option<String>,
    region: String,
    instance_create_time: Option<DateTime<Utc>>,
    features: Json<InstanceFeatures>,
    linked_role_state: String,
    connect_arn: Option<String>,
    connect_status: Option<String>,
    service_role_arn: Option<String>,
    identity_management_type: Option<String>,
    observed_state: String,
    last_seen_time: Option<DateTime<Utc>>,
    sync_time: Option<DateTime<Utc>>,
    revision: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

impl InstanceRow {
    pub(crate) fn into_instance(self) -> Result<Instance> {
        Ok(Instance {
            account_id: AccountId::parse(&self.account_id)
                .map_err(|e| corrupt("instances.account_id", e))?,
            instance_id: InstanceId::parse(&self.instance_id)
                .map_err(|e| corrupt("instances.instance_id", e))?,
            instance_alias: self
                .instance_alias
                .map(|a| InstanceAlias::parse(&a))
                .transpose()
                .map_err(|e| corrupt("instances.instance_alias", e))?,
            region: RegionCode::parse(&self.region).map_err(|e| corrupt("instances.region", e))?,
            instance_create_time: self.instance_create_time,
            features: self.features.0,
            linked_role_state: LinkedRoleState::parse(&self.linked_role_state)
                .ok_or_else(|| corrupt("instances.linked_role_state", &self.linked_role_state))?,
            connect: ConnectView {
                connect_arn: self.connect_arn,
                connect_status: self
                    .connect_status
                    .map(|s| {
                        ConnectStatus::parse(&s)
                            .ok_or_else(|| corrupt("instances.connect_status", &s))
                    })
                    .transpose()?,
                service_role_arn: self.service_role_arn,
                identity_management_type: self.identity_management_type,
                observed_state: ObservedState::parse(&self.observed_state)
                    .ok_or_else(|| corrupt("instances.observed_state", &self.observed_state))?,
                last_seen_time: self.last_seen_time,
                sync_time: self.sync_time,
            },
            create_time: self.create_time,
            update_time: self.update_time,
            revision: Revision(self.revision),
        })
    }
}

pub(crate) const LINKED_ROLE_COLUMNS: &str = "account_id, instance_id, state, role_name, \
     role_arn, role_id, path, description, iam_create_time, last_used_time, last_used_region, \
     adopted, restored, deletion_task_id, deletion_failure, revision, update_time";

#[derive(sqlx::FromRow)]
pub(crate) struct LinkedRoleRow {
    account_id: String,
    instance_id: String,
    pub(crate) state: String,
    role_name: Option<String>,
    pub(crate) role_arn: Option<String>,
    role_id: Option<String>,
    path: Option<String>,
    description: Option<String>,
    iam_create_time: Option<DateTime<Utc>>,
    last_used_time: Option<DateTime<Utc>>,
    last_used_region: Option<String>,
    adopted: bool,
    restored: bool,
    deletion_task_id: Option<String>,
    deletion_failure: Option<Json<DeletionFailure>>,
    pub(crate) revision: i64,
    update_time: DateTime<Utc>,
}

impl LinkedRoleRow {
    pub(crate) fn into_linked_role(self) -> Result<LinkedRole> {
        Ok(LinkedRole {
            account_id: AccountId::parse(&self.account_id)
                .map_err(|e| corrupt("linked_roles.account_id", e))?,
            instance_id: InstanceId::parse(&self.instance_id)
                .map_err(|e| corrupt("linked_roles.instance_id", e))?,
            state: LinkedRoleState::parse(&self.state)
                .ok_or_else(|| corrupt("linked_roles.state", &self.state))?,
            role_name: self.role_name,
            role_arn: self.role_arn,
            role_id: self.role_id,
            path: self.path,
            description: self.description,
            iam_create_time: self.iam_create_time,
            last_used_time: self.last_used_time,
            last_used_region: self.last_used_region,
            adopted: self.adopted,
            restored: self.restored,
            deletion_task_id: self.deletion_task_id,
            deletion_failure: self.deletion_failure.map(|f| f.0),
            update_time: self.update_time,
            revision: Revision(self.revision),
        })
    }
}

pub(crate) const AUDIT_COLUMNS: &str = "event_id, account_id, time, principal, method, resource, \
     request_id, outcome, detail, aws_calls";

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    event_id: String,
    account_id: String,
    time: DateTime<Utc>,
    principal: String,
    method: String,
    resource: String,
    request_id: String,
    outcome: String,
    detail: String,
    aws_calls: Json<Vec<AwsCall>>,
}

impl AuditRow {
    pub(crate) fn into_event(self) -> Result<AuditEvent> {
        Ok(AuditEvent {
            account_id: AccountId::parse(&self.account_id)
                .map_err(|e| corrupt("audit_events.account_id", e))?,
            event_id: self.event_id,
            time: self.time,
            principal: self.principal,
            method: self.method,
            resource: self.resource,
            request_id: self.request_id,
            outcome: self.outcome,
            detail: self.detail,
            aws_calls: self.aws_calls.0,
        })
    }
}

pub(crate) const WORKFLOW_COLUMNS: &str = "workflow_id, kind, account_id, instance_id, target, inputs, \
     state, step, phase, attempt, not_before, error, output, principal, request_id, \
     status_message, lease_owner, lease_until, create_time, update_time, end_time";

#[derive(sqlx::FromRow)]
pub(crate) struct WorkflowRow {
    workflow_id: String,
    kind: String,
    account_id: String,
    instance_id: Option<String>,
    target: String,
    inputs: Json<serde_json::Value>,
    state: Json<serde_json::Value>,
    step: String,
    phase: String,
    attempt: i32,
    not_before: DateTime<Utc>,
    error: Option<Json<WorkflowError>>,
    output: Option<Json<serde_json::Value>>,
    principal: String,
    request_id: Option<String>,
    status_message: String,
    lease_owner: Option<String>,
    lease_until: Option<DateTime<Utc>>,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
    end_time: Option<DateTime<Utc>>,
}

impl WorkflowRow {
    pub(crate) fn into_record(self) -> Result<WorkflowRecord> {
        Ok(WorkflowRecord {
            kind: WorkflowKind::parse(&self.kind)
                .ok_or_else(|| corrupt("workflows.kind", &self.kind))?,
            target: WorkflowTarget {
                account_id: AccountId::parse(&self.account_id)
                    .map_err(|e| corrupt("workflows.account_id", e))?,
                instance_id: self
                    .instance_id
                    .map(|id| InstanceId::parse(&id))
                    .transpose()
                    .map_err(|e| corrupt("workflows.instance_id", e))?,
                name: self.target,
            },
            phase: Phase::parse(&self.phase)
                .ok_or_else(|| corrupt("workflows.phase", &self.phase))?,
            id: self.workflow_id,
            inputs: self.inputs.0,
            state: self.state.0,
            step: self.step,
            attempt: u32::try_from(self.attempt).unwrap_or(0),
            not_before: self.not_before,
            error: self.error.map(|e| e.0),
            output: self.output.map(|o| o.0),
            principal: self.principal,
            request_id: self.request_id,
            status_message: self.status_message,
            lease_owner: self.lease_owner,
            lease_until: self.lease_until,
            create_time: self.create_time,
            update_time: self.update_time,
            end_time: self.end_time,
        })
    }
}

pub(crate) const FINDING_COLUMNS: &str = "account_id, finding_id, code, severity, target, \
     subject, message, first_seen_time, last_seen_time, resolve_time";

#[derive(sqlx::FromRow)]
pub(crate) struct FindingRow {
    account_id: String,
    finding_id: String,
    code: String,
    severity: String,
    target: String,
    subject: String,
    message: String,
    first_seen_time: DateTime<Utc>,
    last_seen_time: DateTime<Utc>,
    resolve_time: Option<DateTime<Utc>>,
}

impl FindingRow {
    pub(crate) fn into_finding(self) -> Result<StoredFinding> {
        Ok(StoredFinding {
            account_id: AccountId::parse(&self.account_id)
                .map_err(|e| corrupt("findings.account_id", e))?,
            finding_id: self.finding_id,
            code: FindingCode::parse(&self.code)
                .ok_or_else(|| corrupt("findings.code", &self.code))?,
            severity: Severity::parse(&self.severity)
                .ok_or_else(|| corrupt("findings.severity", &self.severity))?,
            target: self.target,
            subject: self.subject,
            message: self.message,
            first_seen_time: self.first_seen_time,
            last_seen_time: self.last_seen_time,
            resolve_time: self.resolve_time,
        })
    }
}
