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

/// A second instance of the account.
const OTHER: &str = "4a3b2c1d-0000-4000-8000-123456789abd";

/// What two instances sharing the one unsuffixed role end with, once the
/// first one's ensure unwound: the role the other records ACTIVE is still
/// in IAM (the unwinding deleted nothing), and the first is ABSENT.
async fn assert_shared_role_kept(world: &World, other: &slrgov_domain::names::InstanceKey) {
    let first = world.workflow().await.expect("the first instance's ensure");
    assert_eq!(first.phase, Phase::Failed, "{first:#?}");
    assert_eq!(
        first.error.as_ref().map(|e| e.reason.as_str()),
        Some(Reason::RoleOwnedElsewhere.as_str()),
        "{first:#?}"
    );
    let held = world.record_of(other).await;
    assert_eq!(held.state, LinkedRoleState::Active);
    let roles = world.iam().roles();
    assert_eq!(
        roles
            .iter()
            .map(|r| Some(r.arn.clone()))
            .collect::<Vec<_>>(),
        vec![held.role_arn.clone()],
        "the role the other instance holds is still in IAM"
    );
    assert_eq!(world.iam().calls("DeleteServiceLinkedRole"), 0);
    let undone = world.record_of(&world.key).await;
    assert_eq!(undone.state, LinkedRoleState::Absent, "{undone:#?}");
}

#[tokio::test]
async fn an_ensure_refused_at_record_keeps_the_shared_role_another_instance_holds() {
    let world = World::new(Engine::Sqlite).await;
    world.iam().set(|b| b.refuse_suffix = true);
    let other = world.add_instance(OTHER).await;
    // The first instance's ensure creates the account's one Connect role;
    // its process dies before recording it.
    let dying = world.lifecycle(Some(Script::new(at("confirm", Act::CrashAfterSave))));
    world
        .ensure(&dying)
        .await
        .expect_err("the first process died");
    assert_eq!(world.iam().roles().len(), 1);
    // The other instance adopts that role and records it first.
    let adopted = world
        .ensure_of(&world.lifecycle(None), &other)
        .await
        .expect("the other instance's ensure");
    assert!(adopted.adopted);
    // The first ensure resumes: the role is the other record's
    // (ROLE_OWNED_ELSEWHERE), and its unwinding leaves the role alone.
    world.finish_fresh().await;
    assert_shared_role_kept(&world, &other).await;
}

#[tokio::test]
async fn an_undone_ensure_does_not_delete_a_role_it_created_that_another_record_holds() {
    let world = World::new(Engine::Sqlite).await;
    world.iam().set(|b| b.refuse_suffix = true);
    let other = world.add_instance(OTHER).await;
    // The first instance's ensure creates the role and dies before saving
    // its confirmation: it resumes knowing only that it created the role.
    let dying = world.lifecycle(Some(Script::new(at("confirm", Act::CrashBeforeSave))));
    world
        .ensure(&dying)
        .await
        .expect_err("the first process died");
    let adopted = world
        .ensure_of(&world.lifecycle(None), &other)
        .await
        .expect("the other instance's ensure");
    assert!(adopted.adopted);
    // The resumed ensure fails at confirm: the undo of the create must not
    // delete the role the other record holds now.
    tokio::time::sleep(super::world::LEASE).await;
    let failing = world.lifecycle(Some(Script::new(at("confirm", Act::Fail))));
    let id = world.workflow().await.expect("workflow").id;
    assert_eq!(
        world.work(&failing, "resumer", &id).await,
        Resumed::Finished
    );
    let first = world.workflow().await.expect("workflow");
    assert_eq!(first.phase, Phase::Failed);
    let held = world.record_of(&other).await;
    assert_eq!(held.state, LinkedRoleState::Active);
    assert_eq!(
        world
            .iam()
            .roles()
            .iter()
            .map(|r| Some(r.arn.clone()))
            .collect::<Vec<_>>(),
        vec![held.role_arn.clone()],
        "the role the other instance holds is still in IAM"
    );
    assert_eq!(world.iam().calls("DeleteServiceLinkedRole"), 0);
    assert_eq!(
        world.record_of(&world.key).await.state,
        LinkedRoleState::Absent
    );
}

/// Claims the due workflow `id` as a worker `owner` would (with the
/// harness's lease), waiting for it to become due.
async fn claim_as(world: &World, owner: &str, id: &str) -> slrgov_domain::workflow::WorkflowRecord {
    let worker = slrgov_domain::RequestContext::for_worker("harness");
    for _ in 0..200 {
        let due = world
            .store
            .workflow_claim_due(&worker, owner, super::world::LEASE, 8)
            .await
            .expect("claim due workflows");
        if let Some(record) = due.into_iter().find(|r| r.id == id) {
            return record;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{id} never became due for {owner}");
}

#[tokio::test]
async fn a_worker_whose_claimed_workflow_was_taken_over_makes_no_iam_call() {
    let world = World::new(Engine::Sqlite).await;
    let lifecycle = world.lifecycle(None);
    world.ensure(&lifecycle).await.expect("ensure");
    let record = world.retire(&lifecycle, WorkflowKind::Retire).await;
    // Worker A claims the retirement with others and is held up by them
    // past its lease; worker B claims it meanwhile.
    let stale = claim_as(&world, "worker-a", &record.id).await;
    tokio::time::sleep(super::world::LEASE + std::time::Duration::from_millis(50)).await;
    let taken = claim_as(&world, "worker-b", &record.id).await;
    assert_eq!(taken.lease_owner.as_deref(), Some("worker-b"));
    let before = world.iam().all_calls();
    // A reaches its copy of the row: it must not act on it.
    let worker = slrgov_domain::RequestContext::for_worker("harness");
    let unit = worker.unit_of_work("retire");
    let result = slrgov_aws::audit::recording(
        unit.audit.clone(),
        lifecycle.resume(&unit, stale, "worker-a"),
    )
    .await;
    let error = result.expect_err("the stale holder is refused");
    assert_eq!(error.kind, Kind::Aborted, "{error:?}");
    assert_eq!(
        world.iam().all_calls(),
        before,
        "a holder whose lease was taken over made IAM calls"
    );
    // B, the holder, finishes the retirement.
    assert_eq!(
        world.work(&lifecycle, "worker-b", &record.id).await,
        Resumed::Finished
    );
    let end = world.end_state().await;
    end.assert_consistent("taken over");
    assert_eq!(end.phase, Phase::Succeeded);
    assert_eq!(world.iam().calls("DeleteServiceLinkedRole"), 1);
}

#[tokio::test]
async fn a_second_retirement_while_one_runs_answers_with_the_running_operation() {
    let world = World::new(Engine::Sqlite).await;
    world.ensure(&world.lifecycle(None)).await.expect("ensure");
    let lifecycle = world.lifecycle(None);
    let first = world.retire(&lifecycle, WorkflowKind::Retire).await;
    // Asked again without a request id while the first runs (DELETING).
    let again = world.retire(&lifecycle, WorkflowKind::Retire).await;
    assert_eq!(again.id, first.id, "the same Operation");
    // DeleteInstance meanwhile: the other kind runs.
    let ctx = ctx("slrgov.v1.InstanceService/DeleteInstance");
    let refused = lifecycle
        .retire(&ctx, &world.key, None, WorkflowKind::Delete, false, None)
        .await
        .expect_err("a retirement runs");
    assert_eq!(refused.reason, Reason::OperationInProgress, "{refused:?}");
    let end = world.finish_fresh().await;
    assert_eq!(end.phase, Phase::Succeeded);
    assert_eq!(world.iam().calls("DeleteServiceLinkedRole"), 1);
}

#[tokio::test]
async fn a_caller_whose_own_ensure_runs_elsewhere_is_told_to_retry_not_aborted() {
    use slr_governor::lifecycle::ensure::{EnsureInputs, EnsureState, EnsureWorkflow};
    use slrgov_domain::types::RequestId;
    use slrgov_domain::workflow::{NewWorkflow, WorkflowTarget};
    use slrgov_store::Idempotency;

    let world = World::new(Engine::Sqlite).await;
    let idempotency = Idempotency {
        request_id: RequestId::parse("ensure-the-callers-own").expect("request id"),
        method: "EnsureLinkedRole".to_owned(),
        fingerprint: vec![7; 32],
    };
    // The caller's first try started the workflow; another live process
    // holds it now (for a minute).
    let start = NewWorkflow::of::<EnsureWorkflow>(
        WorkflowKind::Ensure,
        WorkflowTarget::linked_role(&world.key),
        &EnsureInputs {
            suffix: Some(role_suffix(&world.key)),
            connect_role: None,
            description: None,
        },
        &EnsureState::Claimed,
        Some(idempotency.request_id.to_string()),
    )
    .expect("a start");
    world
        .store
        .linked_role_begin_ensure(
            &ctx("harness/setup"),
            start,
            "another-process",
            std::time::Duration::from_secs(60),
            Some(&idempotency),
        )
        .await
        .expect("held elsewhere");
    let soon = || {
        ctx("slrgov.v1.LinkedRoleService/EnsureLinkedRole").with_deadline(Some(
            std::time::Instant::now() + std::time::Duration::from_millis(1500),
        ))
    };
    let lifecycle = world.lifecycle(None);
    // The retry with its request id: its own ensure goes on, come back.
    let own = lifecycle
        .ensure(&soon(), &world.key, None, false, Some(&idempotency))
        .await
        .expect_err("still running elsewhere");
    assert_eq!(
        (own.kind, own.reason),
        (Kind::Unavailable, Reason::Unavailable),
        "{own:?}"
    );
    assert!(own.retry_after.is_some(), "RetryInfo: {own:?}");
    assert!(own.message.contains("same request_id"), "{own:?}");
    // Another caller, without a request id: someone else's ensure is in
    // the way.
    let other = lifecycle
        .ensure(&soon(), &world.key, None, false, None)
        .await
        .expect_err("another ensure runs");
    assert_eq!(
        (other.kind, other.reason),
        (Kind::Aborted, Reason::OperationInProgress),
        "{other:?}"
    );
    assert!(
        world.iam().all_calls().is_empty(),
        "nothing ran in this process"
    );
}
