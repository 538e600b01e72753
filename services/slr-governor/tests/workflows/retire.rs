//! The retirement workflow (RetireLinkedRole, and DeleteInstance's), step
//! by step: every step run twice, a crash before and after saving every
//! step (a fresh engine resumes), and every step failed for good.

use slr_governor::lifecycle::Resumed;
use slr_governor::lifecycle::retire::RetireWorkflow;
use slrgov_domain::model::LinkedRoleState;
use slrgov_domain::workflow::{Phase, Workflow, WorkflowKind};
use slrgov_store::Engine;

use super::script::{Act, At, Script};
use super::world::{EndState, World};

/// Every step of the retirement workflow.
pub fn steps() -> &'static [&'static str] {
    RetireWorkflow::steps()
}

fn at(step: &'static str) -> At {
    At {
        step: Some(step),
        undo: false,
    }
}

/// A world whose instance has an ACTIVE role (ensured without a hook).
async fn with_role(engine: Engine) -> World {
    let world = World::new(engine).await;
    world
        .ensure(&world.lifecycle(None))
        .await
        .expect("ensure the role to retire");
    world
}

/// Retires under `script`; a crash is finished by a fresh engine.
async fn scripted(engine: Engine, kind: WorkflowKind, rules: Vec<(At, Act)>) -> (World, EndState) {
    let world = with_role(engine).await;
    let first = world.lifecycle(Some(Script::new(rules)));
    let record = world.retire(&first, kind).await;
    let resumed = world.work(&first, "first-worker", &record.id).await;
    if resumed == Resumed::Crashed {
        world.finish_fresh().await;
    }
    let end = world.end_state().await;
    (world, end)
}

/// The end of a retirement that ran without a hook.
pub async fn clean(engine: Engine, kind: WorkflowKind) -> EndState {
    let (world, end) = scripted(engine, kind, Vec::new()).await;
    end.assert_consistent("clean run");
    assert_eq!(end.phase, Phase::Succeeded, "{end:#?}");
    assert!(end.roles.is_empty(), "IAM deleted the role: {end:#?}");
    match kind {
        WorkflowKind::Delete => {
            assert_eq!(end.record, None, "the instance record is removed");
        }
        _ => {
            let record = end.record.clone().expect("the record stays");
            assert_eq!(record.state, LinkedRoleState::Deleted);
        }
    }
    let trail = world.audit().await;
    assert!(
        trail.iter().any(|e| e
            .aws_calls
            .iter()
            .any(|c| c.operation == "DeleteServiceLinkedRole" && c.outcome == "OK")),
        "the deletion is in the trail: {trail:#?}"
    );
    assert!(
        trail.iter().any(|e| e
            .aws_calls
            .iter()
            .any(|c| c.operation == "GetServiceLinkedRoleDeletionStatus")),
        "the polls are in the trail: {trail:#?}"
    );
    end
}

/// Each step run twice ends where a clean run ends.
pub async fn each_step_twice(engine: Engine, kind: WorkflowKind) {
    let clean = clean(engine, kind).await;
    for step in steps() {
        let (world, end) = scripted(engine, kind, vec![(at(step), Act::Twice)]).await;
        end.assert_consistent(&format!("{step} twice"));
        assert_eq!(end, clean, "{kind} {step} run twice");
        assert_eq!(
            world.iam().calls("CreateServiceLinkedRole"),
            1,
            "a retirement never creates"
        );
    }
}

/// A crash before or after saving each step, resumed by a fresh engine,
/// ends where a clean run ends.
pub async fn crash_after_each_step(engine: Engine, kind: WorkflowKind) {
    let clean = clean(engine, kind).await;
    for step in steps() {
        for act in [Act::CrashBeforeSave, Act::CrashAfterSave] {
            let (_, end) = scripted(engine, kind, vec![(at(step), act)]).await;
            end.assert_consistent(&format!("{act:?} at {step}"));
            assert_eq!(end, clean, "{kind}: {act:?} at {step}, then resumed");
        }
    }
}

/// Failing each step for good undoes the retirement's start: the record
/// says what IAM says (ACTIVE while the role is there; DELETED once IAM
/// deleted it), and the workflow ended FAILED.
pub async fn fail_each_step(engine: Engine, kind: WorkflowKind) {
    for step in steps() {
        let (_, end) = scripted(
            engine,
            kind,
            vec![
                (at(step), Act::Fail),
                (
                    At {
                        step: None,
                        undo: true,
                    },
                    Act::Twice,
                ),
            ],
        )
        .await;
        let context = format!("{kind}: {step} failed");
        end.assert_consistent(&context);
        assert_eq!(end.phase, Phase::Failed, "{context}");
        assert_eq!(
            end.error.as_deref(),
            Some("FAILED_PRECONDITION"),
            "{context}"
        );
        let record = end.record.clone().expect("the instance stays");
        let expected = if end.roles.is_empty() {
            LinkedRoleState::Deleted
        } else {
            LinkedRoleState::Active
        };
        assert_eq!(record.state, expected, "{context}: {end:#?}");
    }
}
