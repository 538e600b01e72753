//! Batches (BatchEnsureLinkedRoles) and cancellation (CancelOperation):
//! a batch starts as a workflow of its own (replayed by its request id,
//! never joining another batch), operators only, in their accounts; a
//! cancel request marks a running batch or sync (once, audited) and leaves
//! a finished one as it is; the other kinds cannot be cancelled. Also the
//! upgrade: migration 0009 keeps the workflows 0001..0008 left.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use slrgov_domain::audit::AuditFilter;
use slrgov_domain::types::AccountId;
use slrgov_domain::workflow::{NewWorkflow, WorkflowTarget};
use slrgov_domain::{Kind, Reason, RequestContext};
use slrgov_store::{Engine, SyncStart};
use sqlx::Connection;

use crate::support::*;

fn batch_of(target: WorkflowTarget, accounts: &[&AccountId]) -> NewWorkflow {
    NewWorkflow {
        kind: WorkflowKind::BatchEnsure,
        target,
        inputs: json!({
            "instances": accounts
                .iter()
                .map(|a| format!("accounts/{a}/instances/{}", instance_id(1)))
                .collect::<Vec<_>>()
        }),
        state: json!({"state": "planned", "done": 0}),
        step: "next",
        request_id: None,
        status_message: "batch_ensure: next: next".to_owned(),
    }
}

fn batch(account: &AccountId) -> NewWorkflow {
    batch_of(WorkflowTarget::account(account), &[account])
}

fn started(start: RetireStart) -> WorkflowRecord {
    match start {
        RetireStart::Started(record) => *record,
        other => panic!("expected a new batch, got {other:?}"),
    }
}

async fn begin(store: &Arc<dyn Store>, ctx: &RequestContext, new: NewWorkflow) -> WorkflowRecord {
    started(
        store
            .batch_begin(ctx, new, None)
            .await
            .unwrap_or_else(|e| panic!("batch_begin: {e:?}")),
    )
}

/// The details of `account`'s audit events.
async fn details(store: &Arc<dyn Store>, account: &AccountId) -> Vec<String> {
    store
        .audit_list(&admin(), account, &AuditFilter::default(), &page(1000, ""))
        .await
        .expect("audit_list")
        .items
        .into_iter()
        .map(|e| e.detail)
        .collect()
}

async fn requested(store: &Arc<dyn Store>, id: &str) -> bool {
    store
        .workflow_cancel_requested(&admin(), id)
        .await
        .unwrap_or_else(|e| panic!("workflow_cancel_requested {id}: {e:?}"))
}

pub async fn case_batch_begin(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let op = operator(&[&a]);
    let id = idem_for("BatchEnsureLinkedRoles", "batch-1", "fp-a");
    let first = started(
        store
            .batch_begin(&op, batch(&a), Some(&id))
            .await
            .expect("started"),
    );
    assert_eq!(first.kind, WorkflowKind::BatchEnsure);
    assert_eq!(first.phase, Phase::Running);
    assert_eq!(first.target.name, format!("accounts/{a}"));
    assert_eq!(first.target.account_id, a);
    assert_eq!(first.target.instance_id, None);
    assert_eq!(first.principal, "olga");
    assert_eq!(first.step, "next");
    assert_eq!(get_workflow(&store, &first.id).await, first);
    // The same request id replays the batch it started ...
    match store
        .batch_begin(&op, batch(&a), Some(&id))
        .await
        .expect("replayed")
    {
        RetireStart::Replayed(replay) => {
            assert_eq!(replay.workflow().expect("an operation"), first.id)
        }
        other => panic!("expected the replay, got {other:?}"),
    }
    // ... even once it finished ...
    let held = hold(&store, &first.id, "worker-a").await;
    finish(&store, &held, Phase::Succeeded).await;
    match store
        .batch_begin(&op, batch(&a), Some(&id))
        .await
        .expect("replayed")
    {
        RetireStart::Replayed(replay) => {
            assert_eq!(replay.workflow().expect("an operation"), first.id)
        }
        other => panic!("expected the replay, got {other:?}"),
    }
    // ... and is refused with other parameters.
    expect_err(
        store
            .batch_begin(
                &op,
                batch(&a),
                Some(&idem_for("BatchEnsureLinkedRoles", "batch-1", "fp-b")),
            )
            .await,
        Kind::InvalidArgument,
        Reason::RequestIdReused,
    );
    // Two batches of one account both start: batches never join.
    let one = begin(&store, &op, batch(&a)).await;
    let two = begin(&store, &op, batch(&a)).await;
    assert_ne!(one.id, two.id);
    assert_eq!(get_workflow(&store, &one.id).await.phase, Phase::Running);
    assert_eq!(get_workflow(&store, &two.id).await.phase, Phase::Running);
    // Every account: held under the first, as the syncs of `accounts/-`.
    let every = begin(
        &store,
        &admin(),
        batch_of(WorkflowTarget::every_account(&a), &[&a, &b]),
    )
    .await;
    assert_eq!(every.target.name, "accounts/-");
    assert_eq!(every.target.account_id, a);
    // Operations list them.
    let listed = store
        .workflow_list_operations(&admin(), &page(100, ""))
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|w| w.id)
        .collect::<Vec<_>>();
    for want in [&first.id, &one.id, &two.id, &every.id] {
        assert!(listed.contains(want), "{want} not listed in {listed:?}");
    }
    // The trail: one event per start.
    let trail = details(&store, &a).await;
    for record in [&first, &one, &two] {
        let want = format!(
            "started operations/{} (batch ensure of accounts/{a})",
            record.id
        );
        assert_eq!(
            trail.iter().filter(|d| **d == want).count(),
            1,
            "{want} in {trail:?}"
        );
    }
    let want = format!(
        "started operations/{} (batch ensure of accounts/-)",
        every.id
    );
    assert!(trail.contains(&want), "{want} in {trail:?}");
    // Refusals: a viewer, another tenant, a missing account, another kind.
    expect_err(
        store.batch_begin(&viewer(&[&a]), batch(&a), None).await,
        Kind::PermissionDenied,
        Reason::PermissionDenied,
    );
    expect_err(
        store.batch_begin(&operator(&[&b]), batch(&a), None).await,
        Kind::NotFound,
        Reason::NotFound,
    );
    let missing = account_id(99);
    expect_err(
        store.batch_begin(&admin(), batch(&missing), None).await,
        Kind::NotFound,
        Reason::NotFound,
    );
    let mut sync = batch(&a);
    sync.kind = WorkflowKind::Sync;
    expect_err(
        store.batch_begin(&admin(), sync, None).await,
        Kind::Internal,
        Reason::Internal,
    );
    // A refused start uses no request id up.
    let fresh = idem_for("BatchEnsureLinkedRoles", "batch-2", "fp-a");
    expect_err(
        store.batch_begin(&op, batch(&missing), Some(&fresh)).await,
        Kind::NotFound,
        Reason::NotFound,
    );
    started(
        store
            .batch_begin(&op, batch(&a), Some(&fresh))
            .await
            .expect("the id was not used up"),
    );
}

pub async fn case_workflow_cancel(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let op = operator(&[&a]);
    let running = begin(&store, &op, batch(&a)).await;
    assert!(!requested(&store, &running.id).await);
    let name = format!("operations/{}", running.id);
    // Outside the caller's accounts, or unknown: NOT_FOUND; a viewer may
    // not cancel.
    expect_err(
        store.workflow_cancel(&operator(&[&b]), &running.id).await,
        Kind::NotFound,
        Reason::NotFound,
    );
    expect_err(
        store.workflow_cancel(&op, "no-such-workflow").await,
        Kind::NotFound,
        Reason::NotFound,
    );
    expect_err(
        store.workflow_cancel(&viewer(&[&a]), &running.id).await,
        Kind::PermissionDenied,
        Reason::PermissionDenied,
    );
    assert!(
        !requested(&store, &running.id).await,
        "refusals change nothing"
    );
    // A running batch is marked, once, audited once.
    let cancelled = store
        .workflow_cancel(&op, &running.id)
        .await
        .expect("cancel");
    assert_eq!(cancelled.id, running.id);
    assert_eq!(cancelled.phase, Phase::Running);
    assert!(requested(&store, &running.id).await);
    let again = store
        .workflow_cancel(&op, &running.id)
        .await
        .expect("cancel twice");
    assert_eq!(again, cancelled);
    assert_eq!(get_workflow(&store, &running.id).await, cancelled);
    let want = format!("cancel requested for {name}");
    let trail = details(&store, &a).await;
    assert_eq!(
        trail.iter().filter(|d| **d == want).count(),
        1,
        "{want} in {trail:?}"
    );
    // The holder's saves keep the request (it is not the step's state).
    let held = hold(&store, &running.id, "worker-a").await;
    let mut update = update_of(&held, Phase::Running);
    update.lease_until = Some(chrono::Utc::now() + chrono::Duration::minutes(10));
    store
        .workflow_save(&admin(), &held.id, "worker-a", update)
        .await
        .expect("save");
    assert!(requested(&store, &running.id).await);
    // Reading the request is the workers' (admin), in their scope.
    expect_err(
        store.workflow_cancel_requested(&op, &running.id).await,
        Kind::PermissionDenied,
        Reason::PermissionDenied,
    );
    expect_err(
        store
            .workflow_cancel_requested(&admin(), "no-such-workflow")
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
    // A finished batch is returned as it is.
    let other = begin(&store, &op, batch(&a)).await;
    let held = hold(&store, &other.id, "worker-a").await;
    let done = finish(&store, &held, Phase::Succeeded).await;
    let got = store
        .workflow_cancel(&op, &other.id)
        .await
        .expect("cancel a finished batch");
    assert_eq!(got, done);
    assert!(!requested(&store, &other.id).await);
    assert!(
        !details(&store, &a)
            .await
            .contains(&format!("cancel requested for operations/{}", other.id))
    );
    // A sync can be cancelled.
    let sync = match store
        .sync_begin(&op, pass(WorkflowKind::Sync, &a), None, None)
        .await
        .expect("sync")
    {
        SyncStart::Started(record) => *record,
        other => panic!("expected a new sync, got {other:?}"),
    };
    store
        .workflow_cancel(&op, &sync.id)
        .await
        .expect("cancel a sync");
    assert!(requested(&store, &sync.id).await);
    // Retirements, ensures and reconcile passes cannot.
    let k = key(&a, &instance_id(1));
    create_instance(&store, &a, &instance_id(1), "us-east-1").await;
    make_active(&store, &k, "one").await;
    let retirement = retire(&store, &k, WorkflowKind::Retire).await;
    let error = expect_err(
        store.workflow_cancel(&op, &retirement.id).await,
        Kind::FailedPrecondition,
        Reason::FailedPrecondition,
    );
    assert!(error.message.contains("IAM cannot call back"), "{error:?}");
    let k2 = key(&a, &instance_id(2));
    create_instance(&store, &a, &instance_id(2), "us-east-1").await;
    let ensure = claim(&store, &k2, "ensurer", "two").await;
    let error = expect_err(
        store.workflow_cancel(&op, &ensure.id).await,
        Kind::FailedPrecondition,
        Reason::FailedPrecondition,
    );
    assert!(error.message.contains("not an operation"), "{error:?}");
    let reconcile = match store
        .sync_begin(&admin(), pass(WorkflowKind::Reconcile, &a), None, None)
        .await
        .expect("reconcile")
    {
        SyncStart::Started(record) => *record,
        other => panic!("expected a new pass, got {other:?}"),
    };
    let error = expect_err(
        store.workflow_cancel(&op, &reconcile.id).await,
        Kind::FailedPrecondition,
        Reason::FailedPrecondition,
    );
    assert!(
        error.message.contains("SLRGOV_RECONCILE_INTERVAL=0"),
        "{error:?}"
    );
    for id in [&retirement.id, &ensure.id, &reconcile.id] {
        assert!(!requested(&store, id).await);
    }
}

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

/// The workflows 0001..0008 left, as rows written before the upgrade.
const OLD_ROWS: &str = "INSERT INTO workflows (workflow_id, kind, account_id, instance_id, \
     target, inputs, state, step, phase, attempt, not_before, principal, status_message, \
     create_time, update_time, end_time) VALUES \
     ('old-sync', 'sync', '111100000001', NULL, 'accounts/111100000001', \
      '{\"accounts\": [\"111100000001\"]}', '{\"state\": \"claimed\"}', 'plan', 'RUNNING', 0, \
      '2026-01-01T00:00:00Z', 'olga', 'sync: next: plan', '2026-01-01T00:00:00Z', \
      '2026-01-01T00:00:00Z', NULL), \
     ('old-retire', 'retire', '111100000001', 'abcdef01-2345-6789-abcd-ef0123456789', \
      'accounts/111100000001/instances/abcdef01-2345-6789-abcd-ef0123456789/linkedRole', \
      '{\"role_name\": \"r\"}', '{\"state\": \"gone\"}', 'record', 'SUCCEEDED', 2, \
      '2026-01-01T00:00:00Z', 'olga', 'done', '2026-01-01T00:00:00Z', \
      '2026-01-01T00:01:00Z', '2026-01-01T00:01:00Z')";

/// Applies the migrations up to 0008 as the service would have.
async fn migrate_to_0008(db: &TestDb) {
    let dir = match db.engine {
        Engine::Postgres => "postgres",
        Engine::Sqlite => "sqlite",
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../migrations")
        .join(dir);
    let migrator = sqlx::migrate::Migrator::new(path)
        .await
        .expect("the migrations");
    match db.engine {
        Engine::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
            migrator.run_to(8, &mut conn).await.expect("0001..0008");
            let _ = conn.close().await;
        }
        Engine::Sqlite => {
            let options: sqlx::sqlite::SqliteConnectOptions = db.url.parse().expect("a SQLite URL");
            let mut conn = sqlx::SqliteConnection::connect_with(&options.create_if_missing(true))
                .await
                .expect("connect");
            migrator.run_to(8, &mut conn).await.expect("0001..0008");
            let _ = conn.close().await;
        }
    }
}

pub async fn case_migration_keeps_workflows(db: &TestDb) {
    migrate_to_0008(db).await;
    assert_eq!(db.execute(OLD_ROWS, &[]).await, 2);
    let store = db.open().await;
    let sync = get_workflow(&store, "old-sync").await;
    assert_eq!(sync.kind, WorkflowKind::Sync);
    assert_eq!(sync.phase, Phase::Running);
    assert_eq!(sync.target.name, "accounts/111100000001");
    assert_eq!(sync.inputs, json!({"accounts": ["111100000001"]}));
    assert_eq!(sync.principal, "olga");
    let retire = get_workflow(&store, "old-retire").await;
    assert_eq!(retire.kind, WorkflowKind::Retire);
    assert_eq!(retire.phase, Phase::Succeeded);
    assert_eq!(retire.attempt, 2);
    assert_eq!(retire.state, json!({"state": "gone"}));
    assert!(retire.end_time.is_some());
    // Nobody asked them to stop; the running sync can be asked now.
    assert!(!requested(&store, "old-sync").await);
    assert!(!requested(&store, "old-retire").await);
    store
        .workflow_cancel(&admin(), "old-sync")
        .await
        .expect("cancel the old sync");
    assert!(requested(&store, "old-sync").await);
    // The table keeps its guards: row-level security on Postgres, every
    // index on SQLite (rebuilt).
    match db.engine {
        Engine::Postgres => {
            assert_eq!(
                db.fetch_text(
                    "SELECT CASE WHEN relrowsecurity AND relforcerowsecurity THEN 'forced' \
                     ELSE 'off' END FROM pg_class WHERE relname = 'workflows'",
                    &[],
                )
                .await
                .as_deref(),
                Some("forced")
            );
        }
        Engine::Sqlite => {
            assert_eq!(
                db.fetch_text(
                    "SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_master \
                     WHERE type = 'index' AND tbl_name = 'workflows' AND sql IS NOT NULL \
                     ORDER BY name)",
                    &[],
                )
                .await
                .as_deref(),
                Some(
                    "workflows_account_idx,workflows_due_idx,workflows_reconcile_idx,\
                     workflows_running_idx,workflows_running_reconcile_idx,\
                     workflows_running_sync_idx,workflows_sync_idx"
                )
            );
        }
    }
    // The new kind is accepted.
    let a = AccountId::parse("111100000001").expect("account id");
    create_account(&store, 1).await;
    let batch = begin(&store, &admin(), batch(&a)).await;
    assert_eq!(batch.kind, WorkflowKind::BatchEnsure);
}
