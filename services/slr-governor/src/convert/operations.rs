//! Workflows as google.longrunning.Operations, and what a sync reports.

use slrgov_domain::model::LinkedRole;
use slrgov_domain::workflow::{Phase, WorkflowError, WorkflowKind, WorkflowRecord};
use slrgov_proto::google::longrunning::{Operation, operation::Result as OpResult};
use slrgov_proto::slrgov::v1 as pb;

use super::{linked_role, timestamp};
use crate::lifecycle::batch::{BatchCounts, BatchInputs, BatchReport, BatchState};
use crate::lifecycle::reconcile::{ReconcileReport, ReconcileState};
use crate::lifecycle::sync::{Look, SyncInputs, SyncReport, SyncState, SyncTotals, totals};

/// A workflow as a google.longrunning.Operation (for the kinds that are
/// operations): its metadata is the row seen through the API, so a
/// watcher, a poller and a restart all see the same thing.
pub fn operation(record: &WorkflowRecord) -> Operation {
    let target = record.target.name.clone();
    let sync = match record.kind {
        WorkflowKind::Sync => Some(sync_looks(record)),
        WorkflowKind::Reconcile => Some((1, reconcile_looks(record))),
        _ => None,
    };
    let metadata = pb::OperationMetadata {
        create_time: Some(timestamp(record.create_time)),
        end_time: record.end_time.map(timestamp),
        target: target.clone(),
        verb: record.kind.as_str().to_owned(),
        status_message: record.status_message.clone(),
        principal: record.principal.clone(),
        request_id: record.request_id.clone().unwrap_or_default(),
        step: record.step.clone(),
        attempt: i32::try_from(record.attempt).unwrap_or(i32::MAX),
        sync_progress: sync
            .as_ref()
            .map(|(accounts, looks)| sync_progress(totals(*accounts, looks))),
        batch_progress: (record.kind == WorkflowKind::BatchEnsure).then(|| batch_progress(record)),
    };
    let result = match (record.phase, &record.error) {
        (Phase::Running | Phase::Unwinding, _) => None,
        (Phase::Failed, Some(error)) => Some(OpResult::Error(crate::status::operation_error(
            error, &target,
        ))),
        (Phase::Failed, None) => Some(OpResult::Error(crate::status::operation_error(
            &WorkflowError::from(slrgov_domain::Error::internal("the operation failed")),
            &target,
        ))),
        (Phase::Succeeded, _) if record.kind == WorkflowKind::BatchEnsure => {
            let report = record.output::<BatchReport>().ok().flatten();
            Some(OpResult::Response(slrgov_proto::to_any(&batch_response(
                report.as_ref(),
                validate_only(record),
            ))))
        }
        (Phase::Succeeded, _) if record.kind == WorkflowKind::Reconcile => {
            let report = record.output::<ReconcileReport>().ok().flatten();
            Some(OpResult::Response(slrgov_proto::to_any(
                &reconcile_response(report.as_ref()),
            )))
        }
        (Phase::Succeeded, _) if sync.is_some() => {
            let (accounts, looks) = sync.unwrap_or_default();
            Some(OpResult::Response(slrgov_proto::to_any(&sync_response(
                accounts, &looks,
            ))))
        }
        (Phase::Succeeded, _) => Some(OpResult::Response(
            match record
                .output::<Option<LinkedRole>>()
                .ok()
                .flatten()
                .flatten()
            {
                Some(role) => slrgov_proto::to_any(&linked_role(&role)),
                None => prost_types::Any {
                    type_url: "type.googleapis.com/google.protobuf.Empty".to_owned(),
                    value: Vec::new(),
                },
            },
        )),
    };
    Operation {
        name: format!("operations/{}", record.id),
        metadata: Some(slrgov_proto::to_any(&metadata)),
        done: record.done(),
        result,
    }
}

/// A sync's accounts and looks so far: from its output once done, else
/// from its state (none before it planned).
fn sync_looks(record: &WorkflowRecord) -> (usize, Vec<Look>) {
    let accounts = record
        .inputs::<SyncInputs>()
        .map(|i| i.accounts.len())
        .unwrap_or_default();
    let looks = match record.output::<SyncReport>().ok().flatten() {
        Some(report) => report.looks,
        None => match record.state::<SyncState>() {
            Ok(SyncState::Looking { looks }) => looks,
            _ => Vec::new(),
        },
    };
    (accounts, looks)
}

fn validate_only(record: &WorkflowRecord) -> bool {
    record
        .inputs::<BatchInputs>()
        .is_ok_and(|inputs| inputs.validate_only)
}

fn batch_counts(counts: &BatchCounts, validate_only: bool) -> pb::BatchProgress {
    pb::BatchProgress {
        total: count(counts.total),
        done: count(counts.done),
        created: count(counts.created),
        adopted: count(counts.adopted),
        restored: count(counts.restored),
        unchanged: count(counts.unchanged),
        failed: count(counts.failed),
        failed_by_reason: counts
            .failed_by_reason
            .iter()
            .map(|(reason, n)| (reason.clone(), count(*n)))
            .collect(),
        validate_only,
    }
}

/// A batch's counts so far: from its output once done, else from its
/// state (a cancelled or failed batch keeps the state it stopped at).
fn batch_progress(record: &WorkflowRecord) -> pb::BatchProgress {
    let counts = match record.output::<BatchReport>().ok().flatten() {
        Some(report) => report.counts,
        None => match record.state::<BatchState>() {
            Ok(BatchState::Looking { counts, .. } | BatchState::Ensuring { counts, .. }) => counts,
            Err(_) => BatchCounts::default(),
        },
    };
    batch_counts(&counts, validate_only(record))
}

/// A finished batch's response.
fn batch_response(
    report: Option<&BatchReport>,
    validate_only: bool,
) -> pb::BatchEnsureLinkedRolesResponse {
    let Some(report) = report else {
        return pb::BatchEnsureLinkedRolesResponse::default();
    };
    pb::BatchEnsureLinkedRolesResponse {
        totals: Some(batch_counts(&report.counts, validate_only)),
        failures: report
            .failures
            .iter()
            .map(|f| pb::batch_ensure_linked_roles_response::Failure {
                instance: f.instance.clone(),
                error: Some(crate::status::operation_error(&f.error, &f.instance)),
            })
            .collect(),
    }
}

/// A reconcile pass's looks so far.
fn reconcile_looks(record: &WorkflowRecord) -> Vec<Look> {
    if let Some(report) = record.output::<ReconcileReport>().ok().flatten() {
        return report.looks;
    }
    match record.state::<ReconcileState>() {
        Ok(
            ReconcileState::Looking { looks }
            | ReconcileState::Inspecting { looks, .. }
            | ReconcileState::Orphans { looks, .. }
            | ReconcileState::Repairing { looks, .. },
        ) => looks,
        _ => Vec::new(),
    }
}

/// A finished reconcile pass's response.
fn reconcile_response(report: Option<&ReconcileReport>) -> pb::ReconcilePassResponse {
    let Some(report) = report else {
        return pb::ReconcilePassResponse::default();
    };
    let t = &report.totals;
    pb::ReconcilePassResponse {
        sync: Some(sync_response(1, &report.looks)),
        instances_inspected: count(t.inspected),
        instances_over_budget: count(t.over_budget),
        instances_failed: count(t.failed),
        instances_vanished: count(t.vanished),
        orphan_roles: count(t.orphans),
        findings_opened: count(t.findings.opened),
        findings_still_open: count(t.findings.still_open),
        findings_resolved: count(t.findings.resolved),
        repairs: report
            .repairs
            .iter()
            .map(|r| pb::reconcile_pass_response::Repair {
                instance: r.instance.clone(),
                outcome: r.outcome.clone(),
                error: r
                    .error
                    .as_ref()
                    .map(|e| crate::status::operation_error(e, &r.instance)),
            })
            .collect(),
    }
}

fn count(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// A sync's totals as the API shows them.
pub fn sync_progress(totals: SyncTotals) -> pb::SyncProgress {
    pb::SyncProgress {
        accounts_total: count(totals.accounts),
        regions_total: count(totals.regions),
        regions_done: count(totals.done),
        regions_failed: count(totals.failed),
        instances_seen: count(totals.counts.seen),
        instances_created: count(totals.counts.created),
        instances_updated: count(totals.counts.updated),
        instances_vanished: count(totals.counts.vanished),
    }
}

/// A finished sync's response: each look and the totals.
pub fn sync_response(accounts: usize, looks: &[Look]) -> pb::SyncInstancesResponse {
    pb::SyncInstancesResponse {
        regions: looks
            .iter()
            .map(|look| pb::sync_instances_response::RegionResult {
                account_id: look.account_id.clone(),
                region: look.region.clone(),
                error: look.error.as_ref().map(|error| {
                    let target = format!("accounts/{}", look.account_id);
                    crate::status::operation_error(error, &target)
                }),
                instances_seen: count(look.counts.seen),
                instances_created: count(look.counts.created),
                instances_updated: count(look.counts.updated),
                instances_vanished: count(look.counts.vanished),
            })
            .collect(),
        totals: Some(sync_progress(totals(accounts, looks))),
    }
}
