//! The engine: runs a workflow's steps from its stored state, saving the
//! row after each one. The same [`Engine::advance`] serves a request handler
//! (which runs the first steps inline) and the background worker (which
//! claims due rows), so a resumed workflow runs exactly the code a fresh
//! one does, with the inputs saved at its start.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Outcome, Phase, Undo, Workflow, WorkflowError, WorkflowKind, WorkflowLog};
use super::{WorkflowRecord, WorkflowUpdate};
use crate::{Error, RequestContext, Result};

/// The longest wait before a timed-out step runs again.
const TIMED_OUT_CAP: Duration = Duration::from_secs(10);

/// Where a step runs, for a [`StepHook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPoint {
    /// The workflow's kind.
    pub kind: WorkflowKind,
    /// The step.
    pub step: &'static str,
    /// True for a step's undo, false for its action.
    pub undo: bool,
}

/// What the engine does after a step ran, before it saves the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterStep {
    /// Save it (always, outside tests).
    Save,
    /// Run the same step again from the same state, then save the second
    /// outcome (a step must be safe to run twice).
    RunAgain,
    /// Stop as if the process died before saving: the step's effects are
    /// in AWS, the row still says the step has to run.
    CrashBeforeSave,
    /// Stop as if the process died right after saving.
    CrashAfterSave,
}

/// Test instrumentation of the engine (the step-replay harness of omicron's
/// saga tests): fail a step, run it twice, or crash around it. The server
/// runs without one.
pub trait StepHook: Send + Sync {
    /// Before an action runs: `Some(error)` makes it fail for good with
    /// `error` instead of running (undos are never failed).
    fn inject(&self, at: &StepPoint) -> Option<WorkflowError> {
        let _ = at;
        None
    }

    /// After an action or undo ran, before its outcome is saved.
    fn after(&self, at: &StepPoint) -> AfterStep {
        let _ = at;
        AfterStep::Save
    }
}

/// Where a workflow stands after [`Engine::advance`].
#[derive(Debug, Clone, PartialEq)]
pub enum Progress<O> {
    /// It succeeded with this output.
    Done(O),
    /// It failed (every step undone) with this error.
    Failed(WorkflowError),
    /// A step asked to wait until `until`. The row is saved with that
    /// `not_before`; whether the caller still holds it is
    /// [`WorkflowRecord::lease_owner`].
    Waiting {
        /// When the step may run again.
        until: DateTime<Utc>,
        /// Why, for humans.
        reason: String,
    },
    /// A hook stopped the engine as a crash would.
    Crashed,
}

/// Runs workflow steps as `owner`, holding each workflow for `lease` at a
/// time.
#[derive(Clone)]
pub struct Engine {
    log: Arc<dyn WorkflowLog>,
    owner: String,
    lease: Duration,
    hook: Option<Arc<dyn StepHook>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("owner", &self.owner)
            .field("lease", &self.lease)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

/// What one run of a step gave.
enum Ran<S, O> {
    Action(Outcome<S, O>),
    Undo(Undo<S>),
}

impl Engine {
    /// An engine writing to `log` as `owner`.
    pub fn new(log: Arc<dyn WorkflowLog>, owner: impl Into<String>, lease: Duration) -> Self {
        Engine {
            log,
            owner: owner.into(),
            lease,
            hook: None,
        }
    }

    /// The same engine with test instrumentation.
    pub fn with_hook(mut self, hook: Arc<dyn StepHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Who this engine runs as (the lease owner it writes).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// How long it holds a workflow at a time.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn lease_until(&self, from: DateTime<Utc>) -> DateTime<Utc> {
        from + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(60))
    }

    /// The longest a step may run: half the lease. A step that takes longer
    /// is cut short (as a crash would cut it) and retried, so that its
    /// holder saves before the lease it renewed runs out.
    pub fn step_timeout(&self) -> Duration {
        self.lease / 2
    }

    /// How much of its lease the holder must have left to start a step
    /// (else it renews the lease first): more than a step may take.
    fn start_margin(&self) -> Duration {
        self.lease * 3 / 4
    }

    /// Makes sure this engine still holds `record` with enough of its lease
    /// left to run a step: renews it when it has less (the row as the
    /// worker claimed it may have waited behind other work), and fails with
    /// the store's ABORTED / OPERATION_IN_PROGRESS when another process
    /// took it over, so that no step of a lost workflow calls AWS.
    async fn hold(&self, ctx: &RequestContext, record: &mut WorkflowRecord) -> Result<()> {
        let margin = chrono::Duration::from_std(self.start_margin())
            .unwrap_or(chrono::Duration::seconds(45));
        let held = record.lease_owner.as_deref() == Some(self.owner.as_str())
            && record.lease_until.is_some_and(|t| t - Utc::now() > margin);
        if !held {
            *record = self
                .log
                .workflow_renew(ctx, &record.id, &self.owner, self.lease)
                .await?;
        }
        Ok(())
    }

    /// Runs `workflow` from `record` (which this engine must hold) until it
    /// finishes, waits, or a hook crashes it, saving the row after every
    /// step. A step that asks to wait at most `hold_retries` keeps the
    /// workflow held (the caller means to run it again after the wait);
    /// a longer wait lets it go for any worker to take when it is due.
    ///
    /// Errors are the store's (the lease lost, the database unreachable):
    /// the step's outcome is then not saved, and the next holder runs the
    /// step again.
    pub async fn advance<W: Workflow>(
        &self,
        ctx: &RequestContext,
        workflow: &W,
        record: &mut WorkflowRecord,
        hold_retries: Duration,
    ) -> Result<Progress<W::Output>> {
        let inputs: W::Inputs = record.inputs()?;
        loop {
            if let Some(done) = finished::<W>(record)? {
                return Ok(done);
            }
            let state: W::State = record.state()?;
            let step = W::step_of(&state);
            let point = StepPoint {
                kind: workflow.kind(),
                step,
                undo: record.phase == Phase::Unwinding,
            };
            self.hold(ctx, record).await?;
            let attempt = record.attempt.saturating_add(1);
            let mut ran = self
                .run(workflow, &inputs, &state, record, &point, attempt)
                .await;
            let after = self
                .hook
                .as_ref()
                .map_or(AfterStep::Save, |hook| hook.after(&point));
            match after {
                AfterStep::Save | AfterStep::CrashAfterSave => {}
                AfterStep::RunAgain => {
                    ran = self
                        .run(workflow, &inputs, &state, record, &point, attempt)
                        .await;
                }
                AfterStep::CrashBeforeSave => return Ok(Progress::Crashed),
            }
            let (update, waits) = self.update::<W>(record, &point, attempt, ran, hold_retries)?;
            let reason = update.status_message.clone();
            let until = update.not_before;
            *record = self
                .log
                .workflow_save(ctx, &record.id, &self.owner, update)
                .await?;
            if after == AfterStep::CrashAfterSave {
                return Ok(Progress::Crashed);
            }
            if waits {
                tracing::info!(
                    workflow = %record.id,
                    kind = %point.kind,
                    step = point.step,
                    undo = point.undo,
                    attempt = record.attempt,
                    retry_in_ms = (until - Utc::now()).num_milliseconds().max(0),
                    reason = %reason,
                    "workflow step retried"
                );
                return Ok(Progress::Waiting { until, reason });
            }
            tracing::debug!(
                workflow = %record.id,
                kind = %workflow.kind(),
                step = %record.step,
                phase = record.phase.as_str(),
                "workflow step saved"
            );
        }
    }

    /// Runs the step within [`Engine::step_timeout`]: one that takes
    /// longer is retried (it may have acted; every step is safe to run
    /// again, as after a crash).
    async fn run<W: Workflow>(
        &self,
        workflow: &W,
        inputs: &W::Inputs,
        state: &W::State,
        record: &WorkflowRecord,
        point: &StepPoint,
        attempt: u32,
    ) -> Ran<W::State, W::Output> {
        let limit = self.step_timeout();
        match tokio::time::timeout(
            limit,
            self.run_once(workflow, inputs, state, record, point, attempt),
        )
        .await
        {
            Ok(ran) => ran,
            Err(_) => {
                let after = super::backoff(attempt, TIMED_OUT_CAP);
                let reason = format!("the step did not finish within {} ms", limit.as_millis());
                tracing::warn!(
                    workflow = %record.id,
                    kind = %point.kind,
                    step = point.step,
                    undo = point.undo,
                    attempt,
                    "a workflow step timed out: it is retried"
                );
                if point.undo {
                    Ran::Undo(Undo::Retry { after, reason })
                } else {
                    Ran::Action(Outcome::Retry { after, reason })
                }
            }
        }
    }

    async fn run_once<W: Workflow>(
        &self,
        workflow: &W,
        inputs: &W::Inputs,
        state: &W::State,
        record: &WorkflowRecord,
        point: &StepPoint,
        attempt: u32,
    ) -> Ran<W::State, W::Output> {
        if point.undo {
            let error = record.error.clone().unwrap_or_else(|| {
                WorkflowError::from(Error::internal("unwinding without an error"))
            });
            return Ran::Undo(workflow.undo(inputs, state, &error, attempt).await);
        }
        if let Some(error) = self.hook.as_ref().and_then(|hook| hook.inject(point)) {
            return Ran::Action(Outcome::Fail(error));
        }
        Ran::Action(workflow.action(inputs, state, attempt).await)
    }

    /// The row after a step's outcome, and whether the step asked to wait.
    fn update<W: Workflow>(
        &self,
        record: &WorkflowRecord,
        point: &StepPoint,
        attempt: u32,
        ran: Ran<W::State, W::Output>,
        hold_retries: Duration,
    ) -> Result<(WorkflowUpdate, bool)> {
        let now = Utc::now();
        let json = |value: serde_json::Result<serde_json::Value>| {
            value.map_err(|e| Error::internal(format!("internal error: {e}")))
        };
        let mut update = WorkflowUpdate {
            state: record.state.clone(),
            step: record.step.clone(),
            phase: record.phase,
            attempt: 0,
            not_before: now,
            error: record.error.clone(),
            output: None,
            status_message: String::new(),
            lease_until: Some(self.lease_until(now)),
        };
        let moved_to = |update: &mut WorkflowUpdate, state: &W::State| -> Result<()> {
            update.state = json(serde_json::to_value(state))?;
            update.step = W::step_of(state).to_owned();
            Ok(())
        };
        let kind = point.kind;
        let mut waits = false;
        match ran {
            Ran::Action(Outcome::Next(state)) => {
                moved_to(&mut update, &state)?;
                update.status_message =
                    format!("{kind}: {} done; next: {}", point.step, update.step);
            }
            Ran::Action(Outcome::Done(output)) => {
                update.phase = Phase::Succeeded;
                update.output = Some(json(serde_json::to_value(&output))?);
                update.status_message = format!("{kind}: done");
                update.lease_until = None;
            }
            Ran::Action(Outcome::Fail(error)) => {
                update.phase = Phase::Unwinding;
                update.status_message = format!(
                    "{kind}: {} failed ({}): undoing what was done",
                    point.step, error.reason
                );
                update.error = Some(error);
            }
            Ran::Action(Outcome::Retry { after, reason })
            | Ran::Undo(Undo::Retry { after, reason }) => {
                waits = true;
                update.attempt = attempt;
                update.not_before =
                    now + chrono::Duration::from_std(after).unwrap_or(chrono::Duration::seconds(5));
                // Held through the wait only by a caller that will run it
                // again itself; otherwise any worker takes it when it is due.
                update.lease_until =
                    (after <= hold_retries).then(|| self.lease_until(update.not_before));
                update.status_message = format!(
                    "{kind}: {}{} waits (attempt {attempt}): {reason}",
                    if point.undo { "undoing " } else { "" },
                    point.step
                );
            }
            Ran::Undo(Undo::Back(state)) => {
                moved_to(&mut update, &state)?;
                update.status_message = format!("{kind}: undid the step before {}", point.step);
            }
            Ran::Undo(Undo::Released) => {
                update.phase = Phase::Failed;
                update.lease_until = None;
                update.status_message = match &record.error {
                    Some(error) => format!("{kind}: failed ({}): {}", error.reason, error.message),
                    None => format!("{kind}: failed"),
                };
            }
        }
        Ok((update, waits))
    }

    /// Lets a held workflow go, for any worker to take when it is due (an
    /// inline run that will not wait any longer).
    pub async fn release(&self, ctx: &RequestContext, record: &mut WorkflowRecord) -> Result<()> {
        if record.done() || record.lease_owner.as_deref() != Some(self.owner.as_str()) {
            return Ok(());
        }
        let update = WorkflowUpdate {
            state: record.state.clone(),
            step: record.step.clone(),
            phase: record.phase,
            attempt: record.attempt,
            not_before: record.not_before,
            error: record.error.clone(),
            output: record.output.clone(),
            status_message: record.status_message.clone(),
            lease_until: None,
        };
        *record = self
            .log
            .workflow_save(ctx, &record.id, &self.owner, update)
            .await?;
        Ok(())
    }
}

/// The progress of a finished workflow, or `None` while it runs.
pub fn finished<W: Workflow>(record: &WorkflowRecord) -> Result<Option<Progress<W::Output>>> {
    Ok(match record.phase {
        Phase::Succeeded => {
            let output = record.output::<W::Output>()?.ok_or_else(|| {
                Error::internal("internal error: a succeeded workflow has no output")
            })?;
            Some(Progress::Done(output))
        }
        Phase::Failed => Some(Progress::Failed(record.error.clone().unwrap_or_else(
            || {
                WorkflowError::from(Error::internal(
                    "internal error: a failed workflow has no error",
                ))
            },
        ))),
        Phase::Running | Phase::Unwinding => None,
    })
}
