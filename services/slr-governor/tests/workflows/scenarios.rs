//! What real IAM does that the generated cases do not vary: a role that is
//! already there, eventual consistency, throttling, refused suffixes, a
//! deletion IAM refuses, a purged deletion task, two ensures at once, and a
//! resumed ensure keeping the first caller's description.

use std::sync::Arc;

use slr_governor::lifecycle::Resumed;
use slr_governor::lifecycle::roles::role_suffix;
use slrgov_domain::model::LinkedRoleState;
use slrgov_domain::workflow::{Phase, WorkflowKind};
use slrgov_domain::{Kind, Reason};
use slrgov_store::Engine;
use slrgov_testkit::fake_iam::connect_role_name;

use super::script::{Act, At, Script};
use super::world::{DESCRIPTION, World, ctx};

fn at(step: &'static str, act: Act) -> Vec<(At, Act)> {
    vec![(
        At {
            step: Some(step),
            undo: false,
        },
        act,
    )]
}

#[tokio::test]
async fn a_resumed_ensure_creates_the_role_with_the_first_callers_description() {
    let world = World::new(Engine::Sqlite).await;
    // The process dies after planning, before CreateServiceLinkedRole.
    let dying = world.lifecycle(Some(Script::new(at("find", Act::CrashAfterSave))));
    world
        .ensure(&dying)
        .await
        .expect_err("the first process died");
    assert!(world.iam().roles().is_empty(), "nothing created yet");
    // Another caller's ensure, with another description, takes the
    // workflow over once the lease ran out: the saved inputs win.
    tokio::time::sleep(super::world::LEASE).await;
    let other = ctx("slrgov.v1.LinkedRoleService/EnsureLinkedRole");
    let role = slrgov_aws::audit::recording(
        other.audit.clone(),
        world.lifecycle(None).ensure(
            &other,
            &world.key,
            Some("a second caller's words".to_owned()),
            false,
            None,
        ),
    )
    .await
    .expect("the second ensure finishes the first");
    assert_eq!(role.description.as_deref(), Some(DESCRIPTION));
    let roles = world.iam().roles();
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].description.as_deref(), Some(DESCRIPTION));
    assert_eq!(world.iam().calls("CreateServiceLinkedRole"), 1);
}

#[tokio::test]
async fn a_role_with_the_planned_name_is_adopted_with_its_own_description() {
    let world = World::new(Engine::Sqlite).await;
    let name = connect_role_name(Some(&role_suffix(&world.key)));
    let existing = world.iam().put_role(&name, Some("made by someone else"));
    let role = world.ensure(&world.lifecycle(None)).await.expect("ensure");
    assert!(role.adopted);
    assert_eq!(role.role_arn.as_deref(), Some(existing.arn.as_str()));
    assert_eq!(role.description.as_deref(), Some("made by someone else"));
    assert_eq!(world.iam().calls("CreateServiceLinkedRole"), 0);
    world.end_state().await.assert_consistent("adopted");
}

#[tokio::test]
async fn a_new_role_iam_does_not_show_yet_is_waited_for() {
    let world = World::new(Engine::Sqlite).await;
    world.iam().set(|b| b.invisible_reads = 3);
    let role = world.ensure(&world.lifecycle(None)).await.expect("ensure");
    assert_eq!(role.state, LinkedRoleState::Active);
    assert!(!role.adopted);
    assert!(
        world.iam().calls("GetRole") >= 4,
        "{:?}",
        world.iam().all_calls()
    );
    world
        .end_state()
        .await
        .assert_consistent("eventual consistency");
}

#[tokio::test]
async fn throttling_is_retried_by_the_engine_not_surfaced() {
    let world = World::new(Engine::Sqlite).await;
    world.iam().set(|b| {
        b.throttle.insert("CreateServiceLinkedRole".to_owned(), 2);
        b.throttle.insert("ListRoles".to_owned(), 1);
    });
    let role = world.ensure(&world.lifecycle(None)).await.expect("ensure");
    assert_eq!(role.state, LinkedRoleState::Active);
    assert_eq!(world.iam().calls("CreateServiceLinkedRole"), 3);
    world.end_state().await.assert_consistent("throttled");
}

#[tokio::test]
async fn where_suffixes_are_refused_the_one_connect_role_is_created() {
    let world = World::new(Engine::Sqlite).await;
    world.iam().set(|b| b.refuse_suffix = true);
    let role = world.ensure(&world.lifecycle(None)).await.expect("ensure");
    assert_eq!(
        role.role_name.as_deref(),
        Some("AWSServiceRoleForAmazonConnect")
    );
    assert!(!role.adopted);
    world.end_state().await.assert_consistent("refused suffix");
}

#[tokio::test]
async fn a_deletion_iam_refuses_is_deletion_failed_with_what_uses_the_role() {
    let world = World::new(Engine::Sqlite).await;
    let lifecycle = world.lifecycle(None);
    let role = world.ensure(&lifecycle).await.expect("ensure");
    let name = role.role_name.clone().expect("name");
    let flow = "arn:aws:connect:us-east-1:123456789012:instance/x/contact-flow/y";
    world.iam().use_role(&name, "us-east-1", &[flow]);
    let record = world.retire(&lifecycle, WorkflowKind::Retire).await;
    assert_eq!(
        world.work(&lifecycle, "worker", &record.id).await,
        Resumed::Finished
    );
    let done = world.workflow().await.expect("workflow");
    assert_eq!(done.phase, Phase::Failed);
    let error = done.error.expect("an error");
    assert_eq!(error.reason, Reason::RoleInUse.as_str());
    assert_eq!(error.to_error().kind, Kind::FailedPrecondition);
    let failure = error.failure.expect("the usage");
    assert_eq!(
        failure.role_usage,
        vec![("us-east-1".to_owned(), vec![flow.to_owned()])]
    );
    let recorded = world
        .store
        .linked_role_get(&ctx("read"), &world.key)
        .await
        .expect("get");
    assert_eq!(recorded.state, LinkedRoleState::DeletionFailed);
    assert_eq!(recorded.deletion_failure, Some(failure));
    world.end_state().await.assert_consistent("deletion failed");
}

#[tokio::test]
async fn a_purged_deletion_task_is_decided_by_whether_the_role_is_there() {
    let world = World::new(Engine::Sqlite).await;
    world.iam().set(|b| {
        b.deletion_polls = 0;
        b.purge_finished_tasks = true;
    });
    let lifecycle = world.lifecycle(None);
    world.ensure(&lifecycle).await.expect("ensure");
    // The await step runs twice: the second poll finds the task purged.
    let twice = world.lifecycle(Some(Script::new(at("await", Act::Twice))));
    let record = world.retire(&twice, WorkflowKind::Retire).await;
    assert_eq!(
        world.work(&twice, "worker", &record.id).await,
        Resumed::Finished
    );
    let end = world.end_state().await;
    end.assert_consistent("purged task");
    assert_eq!(end.phase, Phase::Succeeded);
    assert!(end.roles.is_empty());
}

#[tokio::test]
async fn two_replicas_ensuring_at_once_make_one_role() {
    let world = Arc::new(World::new(Engine::Sqlite).await);
    world.iam().set(|b| b.invisible_reads = 2);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let world = world.clone();
            tokio::spawn(async move { world.ensure(&world.lifecycle(None)).await })
        })
        .collect();
    let mut arns = Vec::new();
    for task in tasks {
        let role = task.await.expect("task").expect("every ensure answers");
        arns.push(role.role_arn.expect("arn"));
    }
    arns.dedup();
    assert_eq!(arns.len(), 1, "every caller got the one role: {arns:?}");
    assert_eq!(world.iam().roles().len(), 1);
    assert_eq!(world.iam().calls("CreateServiceLinkedRole"), 1);
    world.end_state().await.assert_consistent("four at once");
}
