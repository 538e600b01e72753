//! Fixtures of the linked-role and workflow cases: the workflows a test
//! starts (built as the server would build them, e.g. [`ensure_start`]),
//! the fences of their holders, the steps of an ensure or a retirement
//! driven through the store, and checks of linked-role records.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use slrgov_domain::model::{LinkedRole, LinkedRoleState, ObservedRole};
use slrgov_domain::names::{AccountSelector, InstanceKey};
use slrgov_domain::types::AccountId;
use slrgov_domain::workflow::{
    NewWorkflow, Phase, WorkflowError, WorkflowKind, WorkflowRecord, WorkflowTarget, WorkflowUpdate,
};
use slrgov_domain::{RequestContext, Role};
use slrgov_store::{EnsureStart, Fence, Idempotency, RetireStart, Store};

use crate::support::{admin, caller, filter, keys, list_instances_all, only, time};

/// A lease that does not run out during a test.
pub const LONG: Duration = Duration::from_secs(600);

/// A viewer of exactly `accounts`.
pub fn viewer(accounts: &[&AccountId]) -> RequestContext {
    caller("victor", Role::Viewer, only(accounts))
}

/// An operator of exactly `accounts`.
pub fn operator(accounts: &[&AccountId]) -> RequestContext {
    caller("olga", Role::Operator, only(accounts))
}

/// The name of the Connect service-linked role with `suffix`.
pub fn role_name(suffix: &str) -> String {
    format!("AWSServiceRoleForAmazonConnect_{suffix}")
}

/// The ARN of the Connect service-linked role with `suffix` in `account`.
pub fn role_arn(account: &AccountId, suffix: &str) -> String {
    format!(
        "arn:aws:iam::{account}:role/aws-service-role/connect.amazonaws.com/{}",
        role_name(suffix)
    )
}

/// A role as IAM would describe it, with every field set. The creation
/// time has nanoseconds (the store keeps microseconds).
pub fn observed(account: &AccountId, suffix: &str) -> ObservedRole {
    ObservedRole {
        role_name: role_name(suffix),
        role_arn: role_arn(account, suffix),
        role_id: format!("AROA{}", suffix.to_uppercase()),
        path: "/aws-service-role/connect.amazonaws.com/".to_owned(),
        description: Some(format!("Connect role {suffix}")),
        iam_create_time: Some(time("2019-03-04T05:06:07.123456789Z")),
        last_used_time: Some(time("2024-11-12T13:14:15.654321Z")),
        last_used_region: Some("eu-west-2".to_owned()),
    }
}

/// A role as IAM would describe a role never used, without a description.
pub fn observed_bare(account: &AccountId, suffix: &str) -> ObservedRole {
    ObservedRole {
        description: None,
        iam_create_time: None,
        last_used_time: None,
        last_used_region: None,
        ..observed(account, suffix)
    }
}

/// The start of an ensure of `k` that plans the role suffix `suffix`.
pub fn ensure_start(k: &InstanceKey, suffix: &str) -> NewWorkflow {
    NewWorkflow {
        kind: WorkflowKind::Ensure,
        target: WorkflowTarget::linked_role(k),
        inputs: json!({"suffix": suffix, "description": null}),
        state: json!({"state": "claimed"}),
        step: "find",
        request_id: None,
        status_message: "ensure: next: find".to_owned(),
    }
}

/// The start of a retirement (`retire` or `delete`) of `k` that deletes
/// the role `role_name`.
pub fn retire_start(kind: WorkflowKind, k: &InstanceKey, role_name: &str) -> NewWorkflow {
    NewWorkflow {
        target: match kind {
            WorkflowKind::Delete => WorkflowTarget::instance(k),
            _ => WorkflowTarget::linked_role(k),
        },
        kind,
        inputs: json!({"role_name": role_name}),
        state: json!({"state": "claimed"}),
        step: "submit",
        request_id: None,
        status_message: format!("{kind}: next: submit"),
    }
}

/// The finished `delete` operation of a DeleteInstance of `k`.
pub fn delete_done(k: &InstanceKey) -> NewWorkflow {
    NewWorkflow {
        kind: WorkflowKind::Delete,
        target: WorkflowTarget::instance(k),
        inputs: json!({"role_name": ""}),
        state: json!({"state": "gone"}),
        step: "record",
        request_id: None,
        status_message: "delete: next: record".to_owned(),
    }
}

/// `new` started with the request id of `idempotency`.
pub fn with_request_id(mut new: NewWorkflow, idempotency: &Idempotency) -> NewWorkflow {
    new.request_id = Some(idempotency.request_id.to_string());
    new
}

/// The fence of `owner` on the workflow `record`.
pub fn fence(record: &WorkflowRecord, owner: &str) -> Fence {
    Fence {
        workflow_id: record.id.clone(),
        owner: owner.to_owned(),
    }
}

/// The fence of the holder of `record`.
#[track_caller]
pub fn held(record: &WorkflowRecord) -> Fence {
    fence(
        record,
        record
            .lease_owner
            .as_deref()
            .unwrap_or_else(|| panic!("{} is not held", record.id)),
    )
}

/// Starts the ensure of `k` as `owner` (local operator, long lease) and
/// expects to hold a new or taken-over workflow.
pub async fn claim(
    store: &Arc<dyn Store>,
    k: &InstanceKey,
    owner: &str,
    suffix: &str,
) -> WorkflowRecord {
    let got = store
        .linked_role_begin_ensure(&admin(), ensure_start(k, suffix), owner, LONG, None)
        .await
        .unwrap_or_else(|e| panic!("begin the ensure of {k} as {owner}: {e:?}"));
    match got {
        EnsureStart::Claimed(record) => *record,
        other => panic!("begin the ensure of {k} as {owner}: expected Claimed, got {other:?}"),
    }
}

/// What the engine saves after a step of `record`: the same state and
/// step, in `phase`, released (`lease_until` None).
pub fn update_of(record: &WorkflowRecord, phase: Phase) -> WorkflowUpdate {
    WorkflowUpdate {
        state: record.state.clone(),
        step: record.step.clone(),
        phase,
        attempt: record.attempt + 1,
        not_before: Utc::now(),
        error: None,
        output: (phase == Phase::Succeeded).then(|| json!({"done": true})),
        status_message: format!("{}: {}", record.kind, phase.as_str()),
        lease_until: None,
    }
}

/// Saves `record` as its holder in `phase` (SUCCEEDED, or FAILED with an
/// error), as the engine does at the end.
pub async fn finish(
    store: &Arc<dyn Store>,
    record: &WorkflowRecord,
    phase: Phase,
) -> WorkflowRecord {
    let mut update = update_of(record, phase);
    if phase == Phase::Failed {
        update.error = Some(WorkflowError {
            kind: "FAILED_PRECONDITION".to_owned(),
            reason: "FAILED_PRECONDITION".to_owned(),
            message: "gave up".to_owned(),
            metadata: Vec::new(),
            failure: None,
        });
    }
    let owner = held(record).owner;
    store
        .workflow_save(&admin(), &record.id, &owner, update)
        .await
        .unwrap_or_else(|e| panic!("finish {}: {e:?}", record.id))
}

/// Makes the role of `k` ACTIVE as an ensure does (started, the role
/// recorded, the workflow finished), with the role of `suffix`.
pub async fn make_active(store: &Arc<dyn Store>, k: &InstanceKey, suffix: &str) -> LinkedRole {
    let record = claim(store, k, "ensurer", suffix).await;
    let role = store
        .linked_role_activate(
            &admin(),
            &held(&record),
            k,
            observed(&k.account_id, suffix),
            false,
            false,
        )
        .await
        .unwrap_or_else(|e| panic!("activate {k}: {e:?}"));
    finish(store, &record, Phase::Succeeded).await;
    role
}

/// Starts a retirement of `kind` of `k`'s recorded role as the local
/// operator and expects it started.
pub async fn retire(store: &Arc<dyn Store>, k: &InstanceKey, kind: WorkflowKind) -> WorkflowRecord {
    let role = get_role(store, k).await;
    let start = retire_start(kind, k, role.role_name.as_deref().unwrap_or_default());
    match store
        .linked_role_begin_retire(&admin(), start, None, None)
        .await
        .unwrap_or_else(|e| panic!("retire {k}: {e:?}"))
    {
        RetireStart::Started(record) => *record,
        other => panic!("retire {k}: expected Started, got {other:?}"),
    }
}

/// Claims every due workflow for `owner` (as a worker does) and returns
/// the one with `id`, now held by `owner`.
pub async fn hold(store: &Arc<dyn Store>, id: &str, owner: &str) -> WorkflowRecord {
    for _ in 0..50 {
        let claimed = store
            .workflow_claim_due(&admin(), owner, LONG, 1000)
            .await
            .expect("workflow_claim_due");
        if let Some(record) = claimed.into_iter().find(|w| w.id == id) {
            return record;
        }
        // A refused write's transaction may still hold the row for a moment
        // (sqlx rolls a dropped transaction back when its connection goes
        // back to the pool), and a claim skips locked rows.
        settle().await;
    }
    panic!("{id} was not due");
}

/// Waits for the transactions of refused writes to be rolled back: sqlx
/// sends the ROLLBACK of a dropped transaction from a task of its own, so
/// its row locks outlive the call by a moment (a claim, which skips locked
/// rows, could miss them).
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// The recorded linked role of `k`, as the local operator.
pub async fn get_role(store: &Arc<dyn Store>, k: &InstanceKey) -> LinkedRole {
    store
        .linked_role_get(&admin(), k)
        .await
        .unwrap_or_else(|e| panic!("get the linked role of {k}: {e:?}"))
}

/// The linked-role state recorded on the instance itself.
pub async fn instance_state(store: &Arc<dyn Store>, k: &InstanceKey) -> LinkedRoleState {
    store
        .instance_get(&admin(), k)
        .await
        .unwrap_or_else(|e| panic!("get {k}: {e:?}"))
        .linked_role_state
}

/// The workflow `id`, as the local operator.
pub async fn get_workflow(store: &Arc<dyn Store>, id: &str) -> WorkflowRecord {
    store
        .workflow_get(&admin(), id)
        .await
        .unwrap_or_else(|e| panic!("get the workflow {id}: {e:?}"))
}

/// Checks that `at` is within `slack` after `from` plus `by`.
#[track_caller]
pub fn assert_about(at: DateTime<Utc>, from: DateTime<Utc>, by: Duration) {
    let want = from + chrono::Duration::from_std(by).expect("duration");
    let slack = chrono::Duration::seconds(30);
    assert!(
        at >= want - chrono::Duration::milliseconds(1) && at <= want + slack,
        "{at} is not about {want}"
    );
}

/// The instances (of every account) whose linked role is in `state`.
pub async fn listed_in(store: &Arc<dyn Store>, state: LinkedRoleState) -> Vec<InstanceKey> {
    let filter = filter(&format!("linked_role_state = {state}"));
    keys(&list_instances_all(store, &admin(), &AccountSelector::All, &filter, 50).await)
}

/// Checks that `role` records no IAM role at all.
#[track_caller]
pub fn assert_no_role_fields(role: &LinkedRole) {
    let bare = LinkedRole {
        account_id: role.account_id.clone(),
        instance_id: role.instance_id.clone(),
        state: role.state,
        revision: role.revision,
        update_time: role.update_time,
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
    };
    assert_eq!(*role, bare);
}

/// Checks that `role` is the ACTIVE record of `observed`, at the precision
/// the store keeps.
#[track_caller]
pub fn assert_records(role: &LinkedRole, k: &InstanceKey, observed: &ObservedRole, adopted: bool) {
    let micros = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| chrono::DateTime::from_timestamp_micros(t.timestamp_micros()).expect("time"))
    };
    let want = LinkedRole {
        account_id: k.account_id.clone(),
        instance_id: k.instance_id.clone(),
        state: LinkedRoleState::Active,
        role_name: Some(observed.role_name.clone()),
        role_arn: Some(observed.role_arn.clone()),
        role_id: Some(observed.role_id.clone()),
        path: Some(observed.path.clone()),
        description: observed.description.clone(),
        iam_create_time: micros(observed.iam_create_time),
        last_used_time: micros(observed.last_used_time),
        last_used_region: observed.last_used_region.clone(),
        adopted,
        restored: false,
        deletion_task_id: None,
        deletion_failure: None,
        update_time: role.update_time,
        revision: role.revision,
    };
    assert_eq!(*role, want);
}
