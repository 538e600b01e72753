//! Every step of every workflow proven safe, after omicron's saga tests
//! (`actions_succeed_idempotently`, `action_failure_can_unwind`): for each
//! workflow, generated from its list of steps,
//!
//! 1. each step run twice ends where a clean run ends;
//! 2. a crash before and after saving each step, resumed by a fresh engine
//!    (a new owner, after the crashed holder's lease ran out), ends where a
//!    clean run ends;
//! 3. each step failed for good unwinds (every undo run twice, and a crash
//!    in each undo resumed): nothing the service made is left behind.
//!
//! Every end is checked the way a user would: at most one role per
//! instance in IAM, the record equal to IAM, no orphan, the audit trail
//! telling what happened. IAM is `FakeIam` (real IAM's names, "has been
//! taken", asynchronous deletion, eventual consistency, throttling), so
//! each case runs in milliseconds; the kill -9 end-to-end test
//! (`tests/e2e/tests/e2e/crash.rs`) remains the proof against moto.
//!
//! The cases run on SQLite; the clean runs and crashes run on Postgres too.

#[path = "workflows/batch.rs"]
mod batch;
#[path = "workflows/connect.rs"]
mod connect;
#[path = "workflows/ensure.rs"]
mod ensure;
#[path = "workflows/reconcile.rs"]
mod reconcile;
#[path = "workflows/retire.rs"]
mod retire;
#[path = "workflows/scenarios.rs"]
mod scenarios;
#[path = "workflows/script.rs"]
mod script;
#[path = "workflows/sync.rs"]
mod sync;
#[path = "workflows/world.rs"]
mod world;

use slrgov_domain::workflow::WorkflowKind;
use slrgov_store::Engine;
use world::Source;

// The legacy instance (Connect names no role: the service creates one) and
// the instance whose Connect role is missing from IAM (restored under the
// same name) take the same steps with different plans: both are proven.

#[tokio::test]
async fn ensure_each_step_twice() {
    ensure::each_step_twice(Engine::Sqlite, Source::Legacy).await;
}

#[tokio::test]
async fn ensure_restore_each_step_twice() {
    ensure::each_step_twice(Engine::Sqlite, Source::Restore).await;
}

#[tokio::test]
async fn ensure_crash_after_each_step() {
    ensure::crash_after_each_step(Engine::Sqlite, Source::Legacy).await;
}

#[tokio::test]
async fn ensure_restore_crash_after_each_step() {
    ensure::crash_after_each_step(Engine::Sqlite, Source::Restore).await;
}

#[tokio::test]
async fn ensure_crash_after_each_step_postgres() {
    ensure::crash_after_each_step(Engine::Postgres, Source::Restore).await;
}

#[tokio::test]
async fn ensure_fail_each_step() {
    ensure::fail_each_step(Engine::Sqlite, Source::Legacy).await;
}

#[tokio::test]
async fn ensure_restore_fail_each_step() {
    ensure::fail_each_step(Engine::Sqlite, Source::Restore).await;
}

#[tokio::test]
async fn ensure_crash_in_each_undo() {
    ensure::crash_in_each_undo(Engine::Sqlite, Source::Legacy).await;
}

#[tokio::test]
async fn ensure_restore_crash_in_each_undo() {
    ensure::crash_in_each_undo(Engine::Sqlite, Source::Restore).await;
}

#[tokio::test]
async fn retire_each_step_twice() {
    retire::each_step_twice(Engine::Sqlite, WorkflowKind::Retire).await;
}

#[tokio::test]
async fn retire_crash_after_each_step() {
    retire::crash_after_each_step(Engine::Sqlite, WorkflowKind::Retire).await;
}

#[tokio::test]
async fn retire_crash_after_each_step_postgres() {
    retire::crash_after_each_step(Engine::Postgres, WorkflowKind::Retire).await;
}

#[tokio::test]
async fn retire_fail_each_step() {
    retire::fail_each_step(Engine::Sqlite, WorkflowKind::Retire).await;
}

#[tokio::test]
async fn delete_each_step_twice() {
    retire::each_step_twice(Engine::Sqlite, WorkflowKind::Delete).await;
}

#[tokio::test]
async fn delete_crash_after_each_step() {
    retire::crash_after_each_step(Engine::Sqlite, WorkflowKind::Delete).await;
}

#[tokio::test]
async fn delete_fail_each_step() {
    retire::fail_each_step(Engine::Sqlite, WorkflowKind::Delete).await;
}
