//! The batch workflow (BatchEnsureLinkedRoles), step by step against
//! FakeConnect and FakeIam: each step run twice, a crash before and after
//! saving each step (resumed by a fresh engine), each step failed for good,
//! and a cancel between two waves. Every end is checked the way an
//! operator would: one role per instance in IAM, each record ACTIVE with
//! it, and the counts the operation reports.
//!
//! The batch covers three instances in waves of two (so one wave is
//! ensured concurrently, and another follows it): the harness instance,
//! whose Connect role is missing from IAM (restored), SALES, whose Connect
//! role exists (adopted), and a legacy instance Connect names no role for
//! (created).

use slr_governor::lifecycle::Resumed;
use slr_governor::lifecycle::batch::{BatchCounts, BatchReport, BatchState, BatchWorkflow};
use slrgov_domain::filter::InstanceFilter;
use slrgov_domain::model::LinkedRoleState;
use slrgov_domain::names::AccountSelector;
use slrgov_domain::types::AccountId;
use slrgov_domain::workflow::{Phase, Workflow, WorkflowRecord};
use slrgov_domain::{Kind, Reason};
use slrgov_store::Engine;

use super::script::{Act, At, Script};
use super::world::{ACCOUNT, CONNECT_ROLE, LEASE, Source, World, ctx};

const SALES: &str = "5b4c3d2e-0000-4000-8000-00000000000a";
const SALES_ROLE: &str = "AWSServiceRoleForAmazonConnect_SalesRole0000000001";
const LEGACY: &str = "8e7f6a51-0000-4000-8000-00000000000d";
/// Instances a wave ensures at once here.
const WAVE: usize = 2;

/// The lifecycle of these tests: waves of [`WAVE`].
fn lifecycle(world: &World, script: Option<Script>) -> slr_governor::lifecycle::Lifecycle {
    world.lifecycle(script).with_batch_concurrency(WAVE)
}

fn steps() -> &'static [&'static str] {
    BatchWorkflow::steps()
}

/// What an operator checks after a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BatchEnd {
    /// Every role in IAM, by name.
    roles: Vec<String>,
    /// Each instance's record: (instance, state, role name).
    records: Vec<(String, LinkedRoleState, Option<String>)>,
    phase: Phase,
    counts: BatchCounts,
}

fn account() -> AccountId {
    AccountId::parse(ACCOUNT).expect("account")
}

async fn world(engine: Engine) -> World {
    let world = World::of(engine, Source::Restore).await;
    let created = chrono::DateTime::from_timestamp(1_672_531_200, 0).expect("2023");
    world
        .aws
        .connect(ACCOUNT, "us-east-1")
        .put_instance(SALES, "sales", created, Some(SALES_ROLE));
    world.iam().put_role(SALES_ROLE, None);
    world.add_instance(LEGACY).await;
    // A sync registers SALES as Connect lists it.
    let lifecycle = world.lifecycle(None);
    let sync = lifecycle
        .sync(
            &ctx("slrgov.v1.InstanceService/SyncInstances"),
            &AccountSelector::One(account()),
            None,
        )
        .await
        .expect("start the sync");
    assert_eq!(
        world.work(&lifecycle, "setup", &sync.id).await,
        Resumed::Finished
    );
    world
}

async fn start(world: &World) -> WorkflowRecord {
    world
        .lifecycle(None)
        .batch_ensure(
            &ctx("slrgov.v1.LinkedRoleService/BatchEnsureLinkedRoles"),
            &AccountSelector::One(account()),
            &InstanceFilter::default(),
            Some("made by the batch".to_owned()),
            false,
            None,
        )
        .await
        .expect("start the batch")
}

fn counts_of(record: &WorkflowRecord) -> BatchCounts {
    if let Ok(Some(report)) = record.output::<BatchReport>() {
        return report.counts;
    }
    match record.state::<BatchState>().expect("state") {
        BatchState::Looking { counts, .. } | BatchState::Ensuring { counts, .. } => counts,
    }
}

async fn end(world: &World, id: &str) -> BatchEnd {
    let read = ctx("harness/read");
    let mut roles: Vec<String> = world
        .iam()
        .roles()
        .into_iter()
        .map(|r| r.role_name)
        .collect();
    roles.sort();
    let mut records = Vec::new();
    for instance in [super::world::INSTANCE, SALES, LEGACY] {
        let key = slrgov_domain::names::InstanceKey {
            account_id: account(),
            instance_id: slrgov_domain::types::InstanceId::parse(instance).expect("id"),
        };
        let role = world.record_of(&key).await;
        records.push((instance.to_owned(), role.state, role.role_name));
    }
    let record = world
        .store
        .workflow_get(&read, id)
        .await
        .expect("the batch");
    BatchEnd {
        roles,
        records,
        phase: record.phase,
        counts: counts_of(&record),
    }
}

async fn scripted(engine: Engine, rules: Vec<(At, Act)>) -> BatchEnd {
    let world = world(engine).await;
    let record = start(&world).await;
    let first = lifecycle(&world, Some(Script::new(rules)));
    if world.work(&first, "first", &record.id).await == Resumed::Crashed {
        tokio::time::sleep(LEASE).await;
        let fresh = lifecycle(&world, None);
        assert_eq!(
            world.work(&fresh, "fresh-engine", &record.id).await,
            Resumed::Finished
        );
    }
    end(&world, &record.id).await
}

fn at(step: &'static str) -> At {
    At {
        step: Some(step),
        undo: false,
    }
}

/// One role per instance, each record ACTIVE with it.
fn assert_one_role_each(end: &BatchEnd, context: &str) {
    for (instance, state, role) in &end.records {
        assert_eq!(
            *state,
            LinkedRoleState::Active,
            "{context}: {instance}: {end:?}"
        );
        let role = role.as_ref().expect("a role name");
        assert!(
            end.roles.contains(role),
            "{context}: {role} in IAM: {end:?}"
        );
    }
    assert_eq!(end.roles.len(), 3, "{context}: no second role: {end:?}");
}

async fn clean(engine: Engine) -> BatchEnd {
    let end = scripted(engine, Vec::new()).await;
    assert_eq!(end.phase, Phase::Succeeded, "{end:?}");
    assert_one_role_each(&end, "clean");
    assert!(
        end.roles.iter().any(|r| r == CONNECT_ROLE),
        "restored: {end:?}"
    );
    let c = &end.counts;
    assert_eq!(
        (
            c.total,
            c.done,
            c.restored,
            c.adopted,
            c.created,
            c.unchanged,
            c.failed
        ),
        (3, 3, 1, 1, 1, 0, 0),
        "{c:?}"
    );
    end
}

#[tokio::test]
async fn batch_each_step_twice() {
    let clean = clean(Engine::Sqlite).await;
    for step in steps() {
        let end = scripted(Engine::Sqlite, vec![(at(step), Act::Twice)]).await;
        assert_eq!(end, clean, "{step} run twice");
    }
}

#[tokio::test]
async fn batch_crash_after_each_step() {
    let clean = clean(Engine::Sqlite).await;
    for step in steps() {
        for act in [Act::CrashBeforeSave, Act::CrashAfterSave] {
            let end = scripted(Engine::Sqlite, vec![(at(step), act)]).await;
            assert_eq!(end, clean, "{act:?} at {step}, then resumed");
        }
    }
}

#[tokio::test]
async fn batch_crash_after_each_step_postgres() {
    let clean = clean(Engine::Postgres).await;
    for step in steps() {
        let end = scripted(Engine::Postgres, vec![(at(step), Act::CrashAfterSave)]).await;
        assert_eq!(end, clean, "a crash after {step}, then resumed");
    }
}

/// A batch failed for good at a step ends FAILED and keeps what it did
/// (each ensure stands, nothing half made): no instance has two roles, no
/// role is left without its record, and the counts say what was done.
#[tokio::test]
async fn batch_fail_each_step() {
    for step in steps() {
        let end = scripted(Engine::Sqlite, vec![(at(step), Act::Fail)]).await;
        assert_eq!(end.phase, Phase::Failed, "{step} failed");
        let active = end
            .records
            .iter()
            .filter(|(_, state, _)| *state == LinkedRoleState::Active)
            .count() as u32;
        let c = &end.counts;
        assert_eq!(
            active,
            c.created + c.adopted + c.restored,
            "{step} failed: the counts say what was done: {end:?}"
        );
        for (instance, state, role) in &end.records {
            if *state == LinkedRoleState::Active {
                assert!(
                    end.roles.contains(role.as_ref().expect("name")),
                    "{instance}"
                );
            } else {
                assert_eq!(*state, LinkedRoleState::Absent, "{step} failed: {instance}");
            }
        }
        // Before the batch: SALES_ROLE only; one more role per ensure.
        assert_eq!(
            end.roles.len() as u32,
            1 + c.created + c.restored,
            "{end:?}"
        );
    }
}

/// A cancel stops the batch before the next wave: it ends FAILED with
/// CANCELLED, the counts say what was done, and the rest is untouched.
#[tokio::test]
async fn a_cancelled_batch_stops_between_waves_and_says_what_it_did() {
    let world = world(Engine::Sqlite).await;
    let record = start(&world).await;
    // The first wave (two instances) ensured, then the process dies.
    let first = lifecycle(
        &world,
        Some(Script::new(vec![(
            At {
                step: Some("ensure"),
                undo: false,
            },
            Act::CrashAfterSave,
        )])),
    );
    assert_eq!(
        world.work(&first, "first", &record.id).await,
        Resumed::Crashed
    );
    let operator = ctx("google.longrunning.Operations/CancelOperation");
    world
        .store
        .workflow_cancel(&operator, &record.id)
        .await
        .expect("cancel");
    tokio::time::sleep(LEASE).await;
    let fresh = lifecycle(&world, None);
    assert_eq!(
        world.work(&fresh, "fresh-engine", &record.id).await,
        Resumed::Finished
    );
    let end = end(&world, &record.id).await;
    assert_eq!(end.phase, Phase::Failed);
    let stored = world
        .store
        .workflow_get(&ctx("harness/read"), &record.id)
        .await
        .expect("the batch");
    let error = stored.error.expect("an error");
    assert_eq!(error.kind, Kind::Cancelled.as_str());
    assert_eq!(error.reason, Reason::Cancelled.as_str());
    assert!(
        error.message.contains("cancelled after 2 of 3"),
        "{error:?}"
    );
    let c = &end.counts;
    assert_eq!(
        (c.done, c.restored, c.adopted, c.created),
        (2, 1, 1, 0),
        "{end:?}"
    );
    let untouched: Vec<_> = end
        .records
        .iter()
        .filter(|(_, state, _)| *state == LinkedRoleState::Absent)
        .collect();
    assert_eq!(untouched.len(), 1, "the legacy instance: {end:?}");
    assert_eq!(
        end.roles.len(),
        2,
        "SALES_ROLE and the restored one: {end:?}"
    );
}
