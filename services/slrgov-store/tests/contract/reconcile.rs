//! Reconcile passes next to syncs: one running pass per account (a second
//! start joins it; a pass and a sync never join each other), and the
//! schedule (`sync_due`): a pass counts as a sync, a sync not as a pass.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use slrgov_domain::types::AccountId;
use slrgov_domain::workflow::{NewWorkflow, WorkflowTarget};
use slrgov_domain::{Kind, Reason};
use slrgov_store::SyncStart;

use crate::support::*;

fn pass(kind: WorkflowKind, account: &AccountId) -> NewWorkflow {
    NewWorkflow {
        kind,
        target: WorkflowTarget::account(account),
        inputs: json!({"accounts": [account.to_string()]}),
        state: json!({"state": "claimed"}),
        step: "plan",
        request_id: None,
        status_message: format!("{kind}: next: plan"),
    }
}

async fn begin(store: &Arc<dyn Store>, kind: WorkflowKind, account: &AccountId) -> SyncStart {
    store
        .sync_begin(&admin(), pass(kind, account), None, None)
        .await
        .unwrap_or_else(|e| panic!("begin a {kind} of {account}: {e:?}"))
}

fn started(start: SyncStart) -> WorkflowRecord {
    match start {
        SyncStart::Started(record) => *record,
        other => panic!("expected a new workflow, got {other:?}"),
    }
}

pub async fn case_reconcile_passes(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let worker = admin();
    let hour = Duration::from_secs(3600);
    let due = |kind: WorkflowKind, interval: Duration| {
        let store = store.clone();
        let worker = worker.clone();
        async move {
            store
                .sync_due(&worker, kind, interval, 10)
                .await
                .expect("due")
        }
    };
    assert_eq!(
        due(WorkflowKind::Sync, hour).await,
        vec![a.clone(), b.clone()]
    );
    assert_eq!(
        due(WorkflowKind::Reconcile, hour).await,
        vec![a.clone(), b.clone()]
    );
    // A running sync of A: A's sync is not due, its reconcile is.
    let sync = started(begin(&store, WorkflowKind::Sync, &a).await);
    assert_eq!(due(WorkflowKind::Sync, hour).await, vec![b.clone()]);
    assert_eq!(
        due(WorkflowKind::Reconcile, hour).await,
        vec![a.clone(), b.clone()]
    );
    // A reconcile of A does not join the running sync; a second one joins
    // the running reconcile.
    let reconcile = started(begin(&store, WorkflowKind::Reconcile, &a).await);
    assert_eq!(reconcile.kind, WorkflowKind::Reconcile);
    assert_eq!(reconcile.target.name, format!("accounts/{a}"));
    assert_ne!(reconcile.id, sync.id);
    match begin(&store, WorkflowKind::Reconcile, &a).await {
        SyncStart::Running(record) => assert_eq!(record.id, reconcile.id),
        other => panic!("expected the running reconcile, got {other:?}"),
    }
    // ... and a sync joins the running sync, not the reconcile.
    match begin(&store, WorkflowKind::Sync, &a).await {
        SyncStart::Running(record) => assert_eq!(record.id, sync.id),
        other => panic!("expected the running sync, got {other:?}"),
    }
    assert_eq!(due(WorkflowKind::Reconcile, hour).await, vec![b.clone()]);
    // A reconcile of B counts as B's sync; a sync of B does not count as
    // its reconcile.
    let of_b = started(begin(&store, WorkflowKind::Reconcile, &b).await);
    assert!(due(WorkflowKind::Sync, hour).await.is_empty());
    let mut claimed = store
        .workflow_claim_due(&worker, "worker-a", LONG, 100)
        .await
        .expect("claim");
    claimed.sort_by(|x, y| x.id.cmp(&y.id));
    let mut want = vec![sync.id.clone(), reconcile.id.clone(), of_b.id.clone()];
    want.sort();
    assert_eq!(
        claimed.iter().map(|w| w.id.clone()).collect::<Vec<_>>(),
        want
    );
    for held in &claimed {
        finish(&store, held, Phase::Succeeded).await;
    }
    assert!(
        due(WorkflowKind::Sync, hour).await.is_empty(),
        "within the hour"
    );
    assert!(due(WorkflowKind::Reconcile, hour).await.is_empty());
    tick().await;
    let short = Duration::from_millis(1);
    assert_eq!(
        due(WorkflowKind::Reconcile, short).await,
        vec![a.clone(), b.clone()]
    );
    started(begin(&store, WorkflowKind::Sync, &b).await);
    assert_eq!(due(WorkflowKind::Sync, short).await, vec![a.clone()]);
    assert_eq!(
        due(WorkflowKind::Reconcile, short).await,
        vec![a.clone(), b.clone()]
    );
    // Other kinds are not scheduled or started here.
    expect_err(
        store
            .sync_due(&worker, WorkflowKind::Ensure, hour, 10)
            .await,
        Kind::Internal,
        Reason::Internal,
    );
    expect_err(
        store
            .sync_begin(&worker, pass(WorkflowKind::Retire, &a), None, None)
            .await,
        Kind::Internal,
        Reason::Internal,
    );
}

/// Finished passes are swept after the retention, never an account's
/// newest one (the lag gauge reads it), never one still running, and never
/// another kind; the gauges give each account's newest finished pass.
pub async fn case_reconcile_sweep_and_lag(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let worker = admin();
    // Three finished passes of A, one of B, and a finished sync of A.
    let mut ended = Vec::new();
    for (kind, account) in [
        (WorkflowKind::Reconcile, &a),
        (WorkflowKind::Reconcile, &a),
        (WorkflowKind::Reconcile, &a),
        (WorkflowKind::Reconcile, &b),
        (WorkflowKind::Sync, &a),
    ] {
        let record = started(begin(&store, kind, account).await);
        let claimed = store
            .workflow_claim_due(&worker, "worker-a", LONG, 10)
            .await
            .expect("claim");
        let held = claimed
            .into_iter()
            .find(|w| w.id == record.id)
            .expect("the new workflow is due");
        ended.push(finish(&store, &held, Phase::Succeeded).await);
        tick().await;
    }
    // And a fourth pass of A, running.
    let running = started(begin(&store, WorkflowKind::Reconcile, &a).await);
    let lag: Vec<(String, Option<chrono::DateTime<chrono::Utc>>)> = store
        .gauges(&worker)
        .await
        .expect("gauges")
        .into_iter()
        .filter(|r| r.kind == "reconcile")
        .map(|r| (r.state, r.oldest))
        .collect();
    assert_eq!(
        lag,
        vec![
            (a.to_string(), ended[2].end_time),
            (b.to_string(), ended[3].end_time)
        ],
        "each account's newest finished pass"
    );
    // Nothing is past a day's retention.
    let day = Duration::from_secs(86_400);
    assert_eq!(
        store
            .workflow_sweep_passes(&worker, day, 100)
            .await
            .expect("sweep"),
        0
    );
    // With no retention, A's two older finished passes go; A's newest
    // finished one, the running one, B's only one and the sync stay.
    assert_eq!(
        store
            .workflow_sweep_passes(&worker, Duration::ZERO, 100)
            .await
            .expect("sweep"),
        2
    );
    let kept = |id: &str| {
        let store = store.clone();
        let worker = worker.clone();
        let id = id.to_owned();
        async move { store.workflow_get(&worker, &id).await.is_ok() }
    };
    assert!(!kept(&ended[0].id).await);
    assert!(!kept(&ended[1].id).await);
    for survivor in [&ended[2].id, &ended[3].id, &ended[4].id, &running.id] {
        assert!(kept(survivor).await, "{survivor} stays");
    }
    // Only a worker (admin) sweeps.
    expect_err(
        store
            .workflow_sweep_passes(&viewer(&[&a]), Duration::ZERO, 100)
            .await,
        Kind::PermissionDenied,
        Reason::PermissionDenied,
    );
}
