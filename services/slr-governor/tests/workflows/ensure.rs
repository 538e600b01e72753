//! The ensure workflow, step by step: every step run twice, a crash before
//! and after saving every step (resumed by a fresh engine), and every step
//! failed for good (every undo run twice, and a crash in every undo).

use slr_governor::lifecycle::ensure::EnsureWorkflow;
use slrgov_domain::Kind;
use slrgov_domain::model::LinkedRoleState;
use slrgov_domain::workflow::{Phase, Workflow};
use slrgov_store::Engine;

use super::script::{Act, At, Script};
use super::world::{CONNECT_ROLE, DESCRIPTION, EndState, Source, World};

/// Every step of the ensure workflow.
pub fn steps() -> &'static [&'static str] {
    EnsureWorkflow::steps()
}

fn at(step: &'static str) -> At {
    At {
        step: Some(step),
        undo: false,
    }
}

fn every_undo() -> At {
    At {
        step: None,
        undo: true,
    }
}

/// The end of an ensure that ran without a hook: the legacy role created,
/// or (`Source::Restore`) the role Connect names made again.
pub async fn clean(engine: Engine, source: Source) -> EndState {
    let world = World::of(engine, source).await;
    let role = world
        .ensure(&world.lifecycle(None))
        .await
        .expect("a clean ensure");
    let end = world.end_state().await;
    end.assert_consistent("clean run");
    assert_eq!(role.state, LinkedRoleState::Active);
    assert_eq!(end.phase, Phase::Succeeded);
    assert_eq!(end.roles.len(), 1, "{end:#?}");
    assert_eq!(
        end.roles[0].1.as_deref(),
        Some(DESCRIPTION),
        "the role carries the caller's description"
    );
    let record = end.record.clone().expect("a record");
    assert!(!record.adopted, "the service created it");
    match source {
        Source::Legacy => assert!(!record.restored, "a legacy role is new, not restored"),
        Source::Restore => {
            assert!(record.restored, "Connect's role is restored: {record:?}");
            assert_eq!(
                record.role_name.as_deref(),
                Some(CONNECT_ROLE),
                "exactly the name Connect holds"
            );
        }
    }
    assert_eq!(record.description.as_deref(), Some(DESCRIPTION));
    // The trail tells what happened: the start, the create with its AWS
    // call, the role recorded.
    let trail = world.audit().await;
    assert!(
        trail
            .iter()
            .any(|e| e.detail.contains("started the ensure workflow")),
        "{trail:#?}"
    );
    assert!(
        trail.iter().any(|e| e
            .aws_calls
            .iter()
            .any(|c| c.operation == "CreateServiceLinkedRole" && c.outcome == "OK")),
        "the create is in the trail: {trail:#?}"
    );
    assert!(
        trail
            .iter()
            .any(|e| e.detail.contains("as ACTIVE (created by the service)")),
        "{trail:#?}"
    );
    end
}

/// Runs an ensure under `script`; whatever is left after a crash is
/// finished by a fresh engine.
async fn scripted(engine: Engine, source: Source, rules: Vec<(At, Act)>) -> (World, EndState) {
    let world = World::of(engine, source).await;
    let first = world.lifecycle(Some(Script::new(rules)));
    let _ = world.ensure(&first).await;
    world.finish_fresh().await;
    let end = world.end_state().await;
    (world, end)
}

/// Each step run twice ends where a clean run ends.
pub async fn each_step_twice(engine: Engine, source: Source) {
    let clean = clean(engine, source).await;
    for step in steps() {
        let (_, end) = scripted(engine, source, vec![(at(step), Act::Twice)]).await;
        end.assert_consistent(&format!("{step} twice"));
        assert_eq!(end, clean, "{step} run twice");
    }
    let (_, end) = scripted(
        engine,
        source,
        vec![(
            At {
                step: None,
                undo: false,
            },
            Act::Twice,
        )],
    )
    .await;
    assert_eq!(end, clean, "every step run twice");
}

/// A crash before or after saving each step, resumed by a fresh engine with
/// the saved inputs, ends where a clean run ends: one role, the caller's
/// description, not adopted.
pub async fn crash_after_each_step(engine: Engine, source: Source) {
    let clean = clean(engine, source).await;
    for step in steps() {
        for act in [Act::CrashBeforeSave, Act::CrashAfterSave] {
            let (world, end) = scripted(engine, source, vec![(at(step), act)]).await;
            end.assert_consistent(&format!("{act:?} at {step}"));
            assert_eq!(end, clean, "{act:?} at {step}, then resumed");
            assert!(
                world.iam().calls("CreateServiceLinkedRole") <= 2,
                "{act:?} at {step}: at most one create again"
            );
        }
    }
}

/// Failing each step for good undoes everything before it: no role made by
/// the service is left in IAM, the record is ABSENT again, and the workflow
/// ended FAILED with the step's error. Every undo runs twice.
pub async fn fail_each_step(engine: Engine, source: Source) {
    for step in steps() {
        let (world, end) = scripted(
            engine,
            source,
            vec![(at(step), Act::Fail), (every_undo(), Act::Twice)],
        )
        .await;
        let context = format!("{step} failed");
        end.assert_consistent(&context);
        assert!(end.roles.is_empty(), "{context}: nothing left: {end:#?}");
        let record = end.record.clone().expect("a record");
        assert_eq!(record.state, LinkedRoleState::Absent, "{context}");
        assert_eq!(end.phase, Phase::Failed, "{context}");
        assert_eq!(
            end.error.as_deref(),
            Some("FAILED_PRECONDITION"),
            "{context}"
        );
        let trail = world.audit().await;
        assert!(
            trail
                .iter()
                .any(|e| e.outcome == Kind::FailedPrecondition.as_str()
                    && e.detail.contains("failed")),
            "{context}: the failure is in the trail: {trail:#?}"
        );
    }
}

/// A crash in any undo of a failed ensure is resumed by a fresh engine,
/// which finishes the unwinding.
pub async fn crash_in_each_undo(engine: Engine, source: Source) {
    let last = *steps().last().expect("steps");
    for undone in steps() {
        let (_, end) = scripted(
            engine,
            source,
            vec![
                (at(last), Act::Fail),
                (
                    At {
                        step: Some(undone),
                        undo: true,
                    },
                    Act::CrashBeforeSave,
                ),
            ],
        )
        .await;
        let context = format!("a crash undoing before {undone}");
        end.assert_consistent(&context);
        assert!(end.roles.is_empty(), "{context}: {end:#?}");
        assert_eq!(end.phase, Phase::Failed, "{context}");
    }
}
