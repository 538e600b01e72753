//! The sync workflow, step by step, against FakeConnect: each step run
//! twice, a crash before and after saving each step (resumed by a fresh
//! engine), and each step failed for good. Every end is checked the way an
//! operator would: the registry lists every instance Connect has, with the
//! role Connect names, and nothing else changed.

use slr_governor::lifecycle::Resumed;
use slr_governor::lifecycle::sync::SyncWorkflow;
use slrgov_domain::filter::InstanceFilter;
use slrgov_domain::model::ObservedState;
use slrgov_domain::names::AccountSelector;
use slrgov_domain::types::AccountId;
use slrgov_domain::workflow::{Phase, Workflow, WorkflowRecord};
use slrgov_store::{Engine, PageRequest};

use super::script::{Act, At, Script};
use super::world::{ACCOUNT, INSTANCE, LEASE, World, ctx};

/// Two instances Connect made since the harness instance, in two regions.
const SALES: &str = "5b4c3d2e-0000-4000-8000-00000000000a";
const SUPPORT: &str = "6c5d4e3f-0000-4000-8000-00000000000b";
const SALES_ROLE: &str = "AWSServiceRoleForAmazonConnect_SalesRole0000000001";
const SUPPORT_ROLE: &str = "AWSServiceRoleForAmazonConnect_SupportRole000000002";

fn steps() -> &'static [&'static str] {
    SyncWorkflow::steps()
}

/// What an operator checks after a sync: each instance of the account
/// with its observed state and the role Connect names; and how the
/// workflow ended.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SyncEnd {
    instances: Vec<(String, ObservedState, Option<String>)>,
    phase: Phase,
}

async fn world(engine: Engine) -> World {
    let world = World::new(engine).await;
    let created = chrono::DateTime::from_timestamp(1_672_531_200, 0).expect("2023");
    world
        .aws
        .connect(ACCOUNT, "us-east-1")
        .put_instance(SALES, "sales", created, Some(SALES_ROLE));
    world.aws.connect(ACCOUNT, "eu-west-2").put_instance(
        SUPPORT,
        "support",
        created,
        Some(SUPPORT_ROLE),
    );
    world
}

async fn start(world: &World) -> WorkflowRecord {
    let account = AccountId::parse(ACCOUNT).expect("account");
    world
        .lifecycle(None)
        .sync(
            &ctx("slrgov.v1.InstanceService/SyncInstances"),
            &AccountSelector::One(account),
            None,
        )
        .await
        .expect("start the sync")
}

async fn end(world: &World, id: &str) -> SyncEnd {
    let read = ctx("harness/read");
    let page = PageRequest::parse(1000, "").expect("page");
    let listed = world
        .store
        .instance_list(
            &read,
            &AccountSelector::One(AccountId::parse(ACCOUNT).expect("account")),
            &InstanceFilter::default(),
            &page,
        )
        .await
        .expect("list");
    SyncEnd {
        instances: listed
            .items
            .into_iter()
            .map(|i| {
                (
                    i.instance_id.to_string(),
                    i.connect.observed_state,
                    i.connect.service_role_arn,
                )
            })
            .collect(),
        phase: world
            .store
            .workflow_get(&read, id)
            .await
            .expect("the workflow")
            .phase,
    }
}

/// Runs a sync under `rules`; whatever a crash left is finished by a fresh
/// engine once the crashed holder's lease ran out.
async fn scripted(engine: Engine, rules: Vec<(At, Act)>) -> SyncEnd {
    let world = world(engine).await;
    let record = start(&world).await;
    let first = world.lifecycle(Some(Script::new(rules)));
    if world.work(&first, "first", &record.id).await == Resumed::Crashed {
        tokio::time::sleep(LEASE).await;
        let fresh = world.lifecycle(None);
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

/// The end of a sync without a hook: every Connect instance observed with
/// its role, the legacy one without.
async fn clean(engine: Engine) -> SyncEnd {
    let end = scripted(engine, Vec::new()).await;
    let arn = |name: &str| {
        Some(format!(
            "arn:aws:iam::{ACCOUNT}:role/aws-service-role/connect.amazonaws.com/{name}"
        ))
    };
    // Listed by instance id, as these are.
    let want = vec![
        (INSTANCE.to_owned(), ObservedState::Observed, None),
        (SALES.to_owned(), ObservedState::Observed, arn(SALES_ROLE)),
        (
            SUPPORT.to_owned(),
            ObservedState::Observed,
            arn(SUPPORT_ROLE),
        ),
    ];
    assert_eq!(end.instances, want);
    assert_eq!(end.phase, Phase::Succeeded);
    end
}

#[tokio::test]
async fn sync_each_step_twice() {
    let clean = clean(Engine::Sqlite).await;
    for step in steps() {
        let end = scripted(Engine::Sqlite, vec![(at(step), Act::Twice)]).await;
        assert_eq!(end, clean, "{step} run twice");
    }
}

#[tokio::test]
async fn sync_crash_after_each_step() {
    let clean = clean(Engine::Sqlite).await;
    for step in steps() {
        for act in [Act::CrashBeforeSave, Act::CrashAfterSave] {
            let end = scripted(Engine::Sqlite, vec![(at(step), act)]).await;
            assert_eq!(end, clean, "{act:?} at {step}, then resumed");
        }
    }
}

#[tokio::test]
async fn sync_crash_after_each_step_postgres() {
    let clean = clean(Engine::Postgres).await;
    for step in steps() {
        let end = scripted(Engine::Postgres, vec![(at(step), Act::CrashAfterSave)]).await;
        assert_eq!(end, clean, "a crash after {step}, then resumed");
    }
}

/// A sync failed for good at a step ends FAILED: what it recorded before
/// stays true (each look's upsert is Connect's view), and nothing else is
/// touched: the harness instance is never removed, nothing is invented.
#[tokio::test]
async fn sync_fail_each_step() {
    for step in steps() {
        let end = scripted(Engine::Sqlite, vec![(at(step), Act::Fail)]).await;
        assert_eq!(end.phase, Phase::Failed, "{step} failed");
        assert!(
            end.instances.iter().any(|(id, _, _)| id == INSTANCE),
            "{step} failed: the registered instance stays: {end:?}"
        );
        for (id, state, role) in &end.instances {
            assert_ne!(
                *state,
                ObservedState::Vanished,
                "{step} failed: {id} is in Connect"
            );
            if *state == ObservedState::Unobserved {
                assert_eq!(role, &None, "{step} failed: {id} unobserved has no role");
            }
        }
    }
}

/// CancelOperation stops a sync before its next look: it ends FAILED with
/// CANCELLED and Connect is asked nothing more.
#[tokio::test]
async fn a_cancelled_sync_stops_before_its_next_look() {
    let world = world(Engine::Sqlite).await;
    let record = start(&world).await;
    world
        .store
        .workflow_cancel(
            &ctx("google.longrunning.Operations/CancelOperation"),
            &record.id,
        )
        .await
        .expect("cancel");
    let lifecycle = world.lifecycle(None);
    assert_eq!(
        world.work(&lifecycle, "w", &record.id).await,
        Resumed::Finished
    );
    let stored = world
        .store
        .workflow_get(&ctx("harness/read"), &record.id)
        .await
        .expect("the sync");
    assert_eq!(stored.phase, Phase::Failed);
    let error = stored.error.expect("an error");
    assert_eq!(error.kind, "CANCELLED", "{error:?}");
    assert!(error.message.contains("cancelled after 0 of"), "{error:?}");
    for region in ["us-east-1", "eu-west-2"] {
        assert_eq!(
            world.aws.connect(ACCOUNT, region).calls("ListInstances"),
            0,
            "{region}"
        );
    }
}
