//! Amazon Connect as the source of truth, on the fakes: the ensure adopts
//! exactly the role Connect names (no mutating call), refuses an instance
//! Connect does not have and a recent one without a role (no IAM call at
//! all), and a retirement never deletes a role a live instance uses.

use slr_governor::lifecycle::Retirement;
use slrgov_domain::model::LinkedRoleState;
use slrgov_domain::workflow::{Phase, WorkflowKind};
use slrgov_domain::{Kind, Reason};
use slrgov_store::Engine;
use slrgov_testkit::ConnectFault;

use super::world::{ACCOUNT, CONNECT_ROLE, INSTANCE, Source, World, ctx};

/// The IAM calls that change something.
const MUTATING: &[&str] = &[
    "CreateServiceLinkedRole",
    "DeleteServiceLinkedRole",
    "UpdateRoleDescription",
];

fn mutations(world: &World) -> u32 {
    MUTATING.iter().map(|op| world.iam().calls(op)).sum()
}

#[tokio::test]
async fn the_role_connect_names_is_adopted_exactly_with_no_mutation() {
    let world = World::of(Engine::Sqlite, Source::Restore).await;
    // Connect made it; a role with the legacy suffix is there too, and
    // must not be taken instead.
    let connects = world
        .iam()
        .put_role(CONNECT_ROLE, Some("made by Amazon Connect"));
    let decoy_name = slrgov_testkit::fake_iam::connect_role_name(Some(
        &slr_governor::lifecycle::roles::role_suffix(&world.key),
    ));
    world.iam().put_role(&decoy_name, Some("someone's guess"));
    let role = world.ensure(&world.lifecycle(None)).await.expect("ensure");
    assert!(role.adopted, "{role:?}");
    assert!(!role.restored, "{role:?}");
    assert_eq!(role.role_arn.as_deref(), Some(connects.arn.as_str()));
    assert_eq!(role.description.as_deref(), Some("made by Amazon Connect"));
    assert_eq!(mutations(&world), 0, "{:?}", world.iam().all_calls());
    assert_eq!(
        world.iam().calls("ListRoles"),
        0,
        "GetRole by name, not a search"
    );
    assert!(
        world.iam().role(&decoy_name).is_some(),
        "the decoy is left alone"
    );
}

#[tokio::test]
async fn a_deleted_connect_role_is_restored_under_its_own_name() {
    let world = World::of(Engine::Sqlite, Source::Restore).await;
    let role = world.ensure(&world.lifecycle(None)).await.expect("ensure");
    assert!(role.restored && !role.adopted, "{role:?}");
    assert_eq!(role.role_name.as_deref(), Some(CONNECT_ROLE));
    let arn = world
        .aws
        .connect(ACCOUNT, "us-east-1")
        .role_arn(CONNECT_ROLE);
    assert_eq!(
        role.role_arn.as_deref(),
        Some(arn.as_str()),
        "the ARN Connect holds is valid again"
    );
    assert_eq!(world.iam().calls("CreateServiceLinkedRole"), 1);
    world.end_state().await.assert_consistent("restored");
}

#[tokio::test]
async fn an_instance_connect_does_not_have_is_refused_with_no_iam_call() {
    let world = World::new(Engine::Sqlite).await;
    world
        .aws
        .connect(ACCOUNT, "us-east-1")
        .remove_instance(INSTANCE);
    let error = world
        .ensure(&world.lifecycle(None))
        .await
        .expect_err("not in Connect");
    assert_eq!(error.kind, Kind::FailedPrecondition, "{error:?}");
    assert_eq!(error.reason, Reason::InstanceNotInConnect, "{error:?}");
    assert!(
        world.iam().all_calls().is_empty(),
        "{:?}",
        world.iam().all_calls()
    );
    assert_eq!(
        world.record_of(&world.key).await.state,
        LinkedRoleState::Absent
    );
    assert!(world.workflow().await.is_none(), "no workflow was started");
}

#[tokio::test]
async fn connect_access_denied_names_the_missing_action() {
    let world = World::new(Engine::Sqlite).await;
    world.aws.connect(ACCOUNT, "us-east-1").fail(
        "DescribeInstance",
        ConnectFault::AccessDenied,
        None,
    );
    let error = world
        .ensure(&world.lifecycle(None))
        .await
        .expect_err("access denied");
    assert_eq!(error.reason, Reason::ConnectAccessDenied, "{error:?}");
    assert!(
        error
            .metadata
            .iter()
            .any(|(k, v)| k == "action" && v == "connect:DescribeInstance"),
        "{error:?}"
    );
    assert!(world.iam().all_calls().is_empty());
}

#[tokio::test]
async fn a_recent_instance_without_a_role_gets_none() {
    let world = World::new(Engine::Sqlite).await;
    world.aws.connect(ACCOUNT, "us-east-1").put_instance(
        INSTANCE,
        "recent-without-role",
        chrono::DateTime::from_timestamp(1_672_531_200, 0).expect("2023"),
        None,
    );
    let error = world
        .ensure(&world.lifecycle(None))
        .await
        .expect_err("no role to govern");
    assert_eq!(error.kind, Kind::FailedPrecondition, "{error:?}");
    assert!(
        error.message.contains("never creates a role nobody uses"),
        "{error:?}"
    );
    assert!(world.iam().all_calls().is_empty());
}

#[tokio::test]
async fn a_role_a_live_instance_uses_is_never_retired() {
    let world = World::of(Engine::Sqlite, Source::Restore).await;
    world.iam().put_role(CONNECT_ROLE, None);
    world.ensure(&world.lifecycle(None)).await.expect("ensure");
    let before = world.iam().all_calls();
    let ctx = ctx("slrgov.v1.LinkedRoleService/RetireLinkedRole");
    let refused = world
        .lifecycle(None)
        .retire(&ctx, &world.key, None, WorkflowKind::Retire, false, None)
        .await
        .expect_err("the instance uses the role");
    assert_eq!(refused.reason, Reason::RoleInUse, "{refused:?}");
    assert!(refused.message.contains(INSTANCE), "{refused:?}");
    assert_eq!(world.iam().all_calls(), before, "zero IAM calls");
    assert!(world.iam().role(CONNECT_ROLE).is_some());
    assert_eq!(
        world.record_of(&world.key).await.state,
        LinkedRoleState::Active
    );

    // Deleted in Connect: the retirement proceeds.
    world
        .aws
        .connect(ACCOUNT, "us-east-1")
        .remove_instance(INSTANCE);
    let started = world
        .lifecycle(None)
        .retire(&ctx, &world.key, None, WorkflowKind::Retire, false, None)
        .await
        .expect("retire once Connect no longer has the instance");
    assert!(matches!(started, Retirement::Started(_)));
    let end = world.finish_fresh().await;
    assert_eq!(end.phase, Phase::Succeeded, "{end:?}");
    assert!(world.iam().role(CONNECT_ROLE).is_none());
}

#[tokio::test]
async fn a_retirement_asks_connect_again_before_it_deletes() {
    // Started while Connect did not have the instance; by the time the
    // worker submits the deletion, Connect has it again using the role.
    let world = World::of(Engine::Sqlite, Source::Restore).await;
    world.ensure(&world.lifecycle(None)).await.expect("ensure");
    let connect = world.aws.connect(ACCOUNT, "us-east-1");
    connect.remove_instance(INSTANCE);
    let ctx = ctx("slrgov.v1.LinkedRoleService/RetireLinkedRole");
    world
        .lifecycle(None)
        .retire(&ctx, &world.key, None, WorkflowKind::Retire, false, None)
        .await
        .expect("retire");
    connect.put_instance(
        INSTANCE,
        "harness",
        chrono::DateTime::from_timestamp(1_672_531_200, 0).expect("2023"),
        Some(CONNECT_ROLE),
    );
    // The step asks Connect again, refuses, and the record is ACTIVE
    // again, with no IAM call at all (nothing was asked of IAM).
    let before = world.iam().all_calls();
    let end = world.finish_fresh().await;
    assert_eq!(world.iam().all_calls(), before, "zero IAM calls");
    assert_eq!(end.phase, Phase::Failed, "{end:?}");
    assert!(world.iam().role(CONNECT_ROLE).is_some(), "the role is kept");
    assert_eq!(world.iam().calls("DeleteServiceLinkedRole"), 0);
    assert_eq!(
        world.record_of(&world.key).await.state,
        LinkedRoleState::Active
    );
}

#[tokio::test]
async fn inspect_reports_a_governed_role_connect_no_longer_uses() {
    use slr_governor::lifecycle::inspect::FindingCode;
    let world = World::of(Engine::Sqlite, Source::Restore).await;
    world
        .iam()
        .put_role(CONNECT_ROLE, Some("made by Amazon Connect"));
    world.ensure(&world.lifecycle(None)).await.expect("ensure");
    let read = ctx("slrgov.v1.LinkedRoleService/InspectLinkedRole");
    let codes = |inspection: &slr_governor::lifecycle::inspect::Inspection| {
        inspection
            .findings
            .iter()
            .map(|f| f.code)
            .collect::<Vec<_>>()
    };
    let healthy = world
        .lifecycle(None)
        .inspect(&read, &world.key)
        .await
        .expect("inspect");
    assert!(
        !codes(&healthy).contains(&FindingCode::ServiceRoleMismatch),
        "{healthy:?}"
    );
    // Connect now links another role to the instance; a sync records it.
    let other = "AWSServiceRoleForAmazonConnect_AnotherRole000000009";
    world.iam().put_role(other, None);
    world.aws.connect(ACCOUNT, "us-east-1").put_instance(
        INSTANCE,
        "harness",
        chrono::DateTime::from_timestamp(1_672_531_200, 0).expect("2023"),
        Some(other),
    );
    let sync = world
        .lifecycle(None)
        .sync(
            &ctx("slrgov.v1.InstanceService/SyncInstances"),
            &slrgov_domain::names::AccountSelector::One(world.key.account_id.clone()),
            None,
        )
        .await
        .expect("sync");
    world
        .work(&world.lifecycle(None), "sync-worker", &sync.id)
        .await;
    let drifted = world
        .lifecycle(None)
        .inspect(&read, &world.key)
        .await
        .expect("inspect");
    assert!(
        codes(&drifted).contains(&FindingCode::ServiceRoleMismatch),
        "{drifted:?}"
    );
    assert!(!drifted.healthy(), "{drifted:?}");
}

#[tokio::test]
async fn a_connect_role_iam_cannot_make_again_is_never_replaced_by_another() {
    // Connect names a suffixed role that IAM no longer has, and the account
    // refuses custom suffixes: the service must not create (or adopt) the
    // account's unsuffixed role in its place.
    let world = World::of(Engine::Sqlite, Source::Restore).await;
    world.iam().set(|b| b.refuse_suffix = true);
    let error = world
        .ensure(&world.lifecycle(None))
        .await
        .expect_err("cannot restore under Connect's name");
    assert_eq!(error.kind, Kind::FailedPrecondition, "{error:?}");
    assert!(error.message.contains(CONNECT_ROLE), "{error:?}");
    assert!(world.iam().roles().is_empty(), "{:?}", world.iam().roles());
    assert_eq!(
        world.record_of(&world.key).await.state,
        LinkedRoleState::Absent
    );
}
