//! Workflows as stored step machines: ensure, retire (and, later, sync and
//! batch) are several AWS calls and database writes that must end in one
//! consistent state whatever dies in between.
//!
//! - **A workflow is data**: one row ([`WorkflowRecord`]) with its kind,
//!   target, the inputs saved when it was started (description, suffix,
//!   request id, principal), its typed state (one JSON column), the step
//!   that runs next, the attempt of that step, when it may run again
//!   (`not_before`) and who holds it (`lease_owner`, `lease_until`).
//! - **Steps are code**: a [`Workflow`] is a named list of steps; each has
//!   an action (`state -> Outcome`) and an undo (`state -> Undo`, which
//!   reverts the step that produced `state`). The transitions are decided
//!   in Rust, in one place per workflow; SQL only stores rows and claims
//!   them.
//! - **One engine** ([`engine::Engine`]) runs the steps, for a request
//!   handler (inline, so a fast ensure answers in one call) and for the
//!   background worker alike, saving the row after each step: a crash
//!   anywhere resumes from the last saved state with the saved inputs.
//!
//! A step fails either for now ([`Outcome::Retry`]: the row waits until
//! `not_before`) or for good ([`Outcome::Fail`]): then the engine unwinds,
//! running the undo of every step that ran, newest first, and the workflow
//! ends `FAILED` with the error.

pub mod engine;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Kind, Reason};
use crate::model::DeletionFailure;
use crate::names::InstanceKey;
use crate::types::{AccountId, InstanceId};

pub use engine::{AfterStep, Engine, Progress, StepHook, StepPoint};

/// What a workflow does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowKind {
    /// EnsureLinkedRole: create or adopt an instance's role.
    Ensure,
    /// RetireLinkedRole: delete the role in IAM.
    Retire,
    /// DeleteInstance: retire the role, then remove the instance record.
    Delete,
    /// SyncInstances: discover an account's instances (or every account's
    /// of a caller) from Amazon Connect.
    Sync,
    /// A reconcile pass of one account (the background reconciler): sync
    /// from Connect, inspect every instance's role within the IAM read
    /// budget, store the findings, and (in repair mode) restore missing
    /// roles.
    Reconcile,
    /// BatchEnsureLinkedRoles: ensure the role of every instance a caller
    /// listed (one at a time, resumable, cancellable).
    BatchEnsure,
}

impl WorkflowKind {
    /// Every kind.
    pub const ALL: [WorkflowKind; 6] = [
        WorkflowKind::Ensure,
        WorkflowKind::Retire,
        WorkflowKind::Delete,
        WorkflowKind::Sync,
        WorkflowKind::Reconcile,
        WorkflowKind::BatchEnsure,
    ];

    /// The kind as stored and shown (the Operation metadata's `verb`).
    pub const fn as_str(self) -> &'static str {
        match self {
            WorkflowKind::Ensure => "ensure",
            WorkflowKind::Retire => "retire",
            WorkflowKind::Delete => "delete",
            WorkflowKind::Sync => "sync",
            WorkflowKind::Reconcile => "reconcile",
            WorkflowKind::BatchEnsure => "batch_ensure",
        }
    }

    /// Parses a stored kind.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == value)
    }

    /// True for the kinds the Operations API shows (the long-running
    /// operations of RetireLinkedRole and DeleteInstance); an ensure answers
    /// its caller with the linked role itself.
    pub fn is_operation(self) -> bool {
        !matches!(self, WorkflowKind::Ensure)
    }
}

impl fmt::Display for WorkflowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a workflow is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Running its steps forward.
    Running,
    /// A step failed for good: undoing the steps that ran, newest first.
    Unwinding,
    /// Finished with its output.
    Succeeded,
    /// Finished with its error, every step undone.
    Failed,
}

impl Phase {
    /// Every phase.
    pub const ALL: [Phase; 4] = [
        Phase::Running,
        Phase::Unwinding,
        Phase::Succeeded,
        Phase::Failed,
    ];

    /// The phase as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "RUNNING",
            Phase::Unwinding => "UNWINDING",
            Phase::Succeeded => "SUCCEEDED",
            Phase::Failed => "FAILED",
        }
    }

    /// Parses a stored phase.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == value)
    }

    /// True once the workflow has finished, either way.
    pub fn is_done(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// How a workflow failed, as stored (and shown in its Operation): enough
/// to give the caller of an inline run the same error it would have got
/// from a direct failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowError {
    /// The kind (`FAILED_PRECONDITION`, `UNAVAILABLE`, ...), which decides
    /// the gRPC code of an inline run's answer.
    #[serde(default = "failed_precondition")]
    pub kind: String,
    /// The ErrorInfo reason, e.g. `ROLE_IN_USE`.
    pub reason: String,
    /// A message for the caller.
    pub message: String,
    /// ErrorInfo metadata.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<(String, String)>,
    /// IAM's refusal to delete a role, for ROLE_IN_USE.
    #[serde(default)]
    pub failure: Option<DeletionFailure>,
}

fn failed_precondition() -> String {
    Kind::FailedPrecondition.as_str().to_owned()
}

impl WorkflowError {
    /// A stored error with an IAM deletion failure attached.
    pub fn with_failure(mut self, failure: DeletionFailure) -> Self {
        self.failure = Some(failure);
        self
    }

    /// The domain error a caller gets (an unknown stored kind or reason
    /// reads as a failed precondition).
    pub fn to_error(&self) -> Error {
        let kind = Kind::parse(&self.kind).unwrap_or(Kind::FailedPrecondition);
        let reason = Reason::parse(&self.reason).unwrap_or(Reason::FailedPrecondition);
        let mut error = Error::failed_precondition(reason, self.message.clone());
        error.kind = kind;
        error.metadata = self.metadata.clone();
        if kind == Kind::Unavailable {
            error.retry_after = Some(Duration::from_secs(2));
        }
        error
    }
}

impl From<&Error> for WorkflowError {
    fn from(error: &Error) -> Self {
        WorkflowError {
            kind: error.kind.as_str().to_owned(),
            reason: error.reason.as_str().to_owned(),
            message: error.message.clone(),
            metadata: error.metadata.clone(),
            failure: None,
        }
    }
}

impl From<Error> for WorkflowError {
    fn from(error: Error) -> Self {
        WorkflowError::from(&error)
    }
}

/// What a workflow acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowTarget {
    /// The account it acts in (for a sync of several accounts, the first:
    /// the row's tenant for row-level security; the inputs list the rest).
    pub account_id: AccountId,
    /// The instance, for the workflows of one instance.
    pub instance_id: Option<InstanceId>,
    /// The resource name it acts on, e.g. the linked role's, the instance's
    /// (DeleteInstance), `accounts/{id}` or `accounts/-`.
    pub name: String,
}

impl WorkflowTarget {
    /// An instance's linked role (ensure, retire).
    pub fn linked_role(key: &InstanceKey) -> Self {
        WorkflowTarget {
            account_id: key.account_id.clone(),
            instance_id: Some(key.instance_id.clone()),
            name: key.linked_role_name(),
        }
    }

    /// An instance itself (DeleteInstance).
    pub fn instance(key: &InstanceKey) -> Self {
        WorkflowTarget {
            account_id: key.account_id.clone(),
            instance_id: Some(key.instance_id.clone()),
            name: key.name(),
        }
    }

    /// An account (SyncInstances of `accounts/{id}`).
    pub fn account(account: &AccountId) -> Self {
        WorkflowTarget {
            account_id: account.clone(),
            instance_id: None,
            name: crate::names::account_name(account),
        }
    }

    /// Every account a caller may change (SyncInstances of `accounts/-`),
    /// held under the first of them.
    pub fn every_account(first: &AccountId) -> Self {
        WorkflowTarget {
            account_id: first.clone(),
            instance_id: None,
            name: "accounts/-".to_owned(),
        }
    }

    /// The instance's key, for the workflows of one instance.
    pub fn key(&self) -> Option<InstanceKey> {
        self.instance_id.as_ref().map(|instance_id| InstanceKey {
            account_id: self.account_id.clone(),
            instance_id: instance_id.clone(),
        })
    }
}

/// A workflow as stored: the row the engine reads and writes, and the
/// Operation the API shows for the kinds that are operations.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRecord {
    /// The id (a UUID v7; `operations/{id}` for operations).
    pub id: String,
    /// What it does.
    pub kind: WorkflowKind,
    /// What it acts on.
    pub target: WorkflowTarget,
    /// The inputs saved when it started (JSON of the workflow's `Inputs`).
    pub inputs: serde_json::Value,
    /// The state between steps (JSON of the workflow's `State` enum).
    pub state: serde_json::Value,
    /// The name of the step that runs next (or ran last, once done).
    pub step: String,
    /// Where it is in its life.
    pub phase: Phase,
    /// Attempts of the current step so far (0 before the first).
    pub attempt: u32,
    /// Not to run again before this time.
    pub not_before: DateTime<Utc>,
    /// The error being unwound, or the final error.
    pub error: Option<WorkflowError>,
    /// The output once it succeeded (JSON of the workflow's `Output`).
    pub output: Option<serde_json::Value>,
    /// Who started it.
    pub principal: String,
    /// The request id it was started with, if any.
    pub request_id: Option<String>,
    /// What is happening, for humans.
    pub status_message: String,
    /// The process holding it.
    pub lease_owner: Option<String>,
    /// Until when it is held.
    pub lease_until: Option<DateTime<Utc>>,
    /// When it started.
    pub create_time: DateTime<Utc>,
    /// When it last changed.
    pub update_time: DateTime<Utc>,
    /// When it finished.
    pub end_time: Option<DateTime<Utc>>,
}

impl WorkflowRecord {
    /// The account it acts in.
    pub fn account_id(&self) -> &AccountId {
        &self.target.account_id
    }

    /// The instance it acts on; INTERNAL for a workflow of no instance.
    pub fn key(&self) -> Result<InstanceKey, Error> {
        self.target.key().ok_or_else(|| {
            tracing::error!(workflow = %self.id, "a workflow of one instance has none");
            Error::internal("internal error: the workflow has no instance")
        })
    }

    /// True once it finished.
    pub fn done(&self) -> bool {
        self.phase.is_done()
    }

    /// The saved inputs, typed.
    pub fn inputs<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_value(self.inputs.clone()).map_err(|e| corrupt(&self.id, "inputs", e))
    }

    /// The saved state, typed.
    pub fn state<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_value(self.state.clone()).map_err(|e| corrupt(&self.id, "state", e))
    }

    /// The saved output, typed (`None` until it succeeded).
    pub fn output<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        self.output
            .clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| corrupt(&self.id, "output", e))
    }
}

fn corrupt(id: &str, what: &str, error: impl fmt::Display) -> Error {
    tracing::error!(workflow = id, what, %error, "a stored workflow cannot be read");
    Error::internal("internal error: a stored workflow cannot be read")
}

/// A new workflow, as its start inserts it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWorkflow {
    /// What it does.
    pub kind: WorkflowKind,
    /// What it acts on.
    pub target: WorkflowTarget,
    /// The inputs (JSON of the workflow's `Inputs`).
    pub inputs: serde_json::Value,
    /// The first state (JSON of the workflow's `State`).
    pub state: serde_json::Value,
    /// The first step's name.
    pub step: &'static str,
    /// The request id it is started with, if any.
    pub request_id: Option<String>,
    /// What is happening, for humans.
    pub status_message: String,
}

impl NewWorkflow {
    /// The start of a workflow `W` of `kind` on `target`, in its first state.
    pub fn of<W: Workflow>(
        kind: WorkflowKind,
        target: WorkflowTarget,
        inputs: &W::Inputs,
        first: &W::State,
        request_id: Option<String>,
    ) -> Result<Self, Error> {
        let to_json = |value: serde_json::Result<serde_json::Value>| {
            value.map_err(|e| Error::internal(format!("internal error: {e}")))
        };
        Ok(NewWorkflow {
            kind,
            target,
            inputs: to_json(serde_json::to_value(inputs))?,
            state: to_json(serde_json::to_value(first))?,
            step: W::step_of(first),
            request_id,
            status_message: format!("{kind}: next: {}", W::step_of(first)),
        })
    }
}

/// What a step's action decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<S, O> {
    /// Go on: the state the next step starts from.
    Next(S),
    /// Run the same step again, not before `after` (IAM throttled or still
    /// catching up, a deletion still running).
    Retry {
        /// How long to wait.
        after: Duration,
        /// What is happening, for humans.
        reason: String,
    },
    /// The workflow finished with this output.
    Done(O),
    /// Give up for good: undo every step that ran, then end with this
    /// error. The failing step itself must have changed nothing.
    Fail(WorkflowError),
}

/// What a step's undo decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Undo<S> {
    /// The step that produced the state is undone: this is the state
    /// before it, whose own undo runs next.
    Back(S),
    /// Undo again, not before `after`.
    Retry {
        /// How long to wait.
        after: Duration,
        /// What is happening, for humans.
        reason: String,
    },
    /// The start itself is undone: the workflow ends FAILED.
    Released,
}

/// A workflow: a named list of steps over a typed state.
///
/// The state enum says what has happened so far; its variant names the
/// step that runs next ([`Workflow::step_of`]). `action(state)` runs that
/// step and moves forward; `undo(state)` reverts the step that produced
/// `state` and moves back. Both must be safe to run twice, and an action
/// that fails for good must have changed nothing.
#[async_trait]
pub trait Workflow: Send + Sync {
    /// What this workflow does (one definition may serve several kinds:
    /// retire and delete share their steps).
    fn kind(&self) -> WorkflowKind;

    /// The inputs saved when it starts.
    type Inputs: Serialize + DeserializeOwned + Send + Sync + fmt::Debug;
    /// The state between steps.
    type State: Serialize + DeserializeOwned + Send + Sync + fmt::Debug + Clone + PartialEq;
    /// What it ends with.
    type Output: Serialize + DeserializeOwned + Send + Sync + fmt::Debug;

    /// Every step's name, in order (the step-replay tests run each).
    fn steps() -> &'static [&'static str];

    /// The step that runs next in `state`.
    fn step_of(state: &Self::State) -> &'static str;

    /// Runs the step `step_of(state)`; `attempt` counts from 1.
    async fn action(
        &self,
        inputs: &Self::Inputs,
        state: &Self::State,
        attempt: u32,
    ) -> Outcome<Self::State, Self::Output>;

    /// Reverts the step that produced `state` (the workflow is unwinding
    /// because of `error`); `attempt` counts from 1.
    async fn undo(
        &self,
        inputs: &Self::Inputs,
        state: &Self::State,
        error: &WorkflowError,
        attempt: u32,
    ) -> Undo<Self::State>;
}

/// What the engine writes after each step.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowUpdate {
    /// The new state (JSON).
    pub state: serde_json::Value,
    /// The step that runs next.
    pub step: String,
    /// The phase.
    pub phase: Phase,
    /// Attempts of the current step.
    pub attempt: u32,
    /// Not to run again before this time.
    pub not_before: DateTime<Utc>,
    /// The error being unwound, or the final one.
    pub error: Option<WorkflowError>,
    /// The output, once succeeded.
    pub output: Option<serde_json::Value>,
    /// What is happening, for humans.
    pub status_message: String,
    /// Keep holding the workflow until this time (`None`: let it go, so
    /// that any replica's worker takes it when it is due).
    pub lease_until: Option<DateTime<Utc>>,
}

/// Where the engine keeps workflows (the store implements it).
#[async_trait]
pub trait WorkflowLog: Send + Sync {
    /// Saves a step's result, if `owner` still holds the workflow (ABORTED /
    /// OPERATION_IN_PROGRESS otherwise: another process took it over). The
    /// AWS calls the step made are written in the audit trail in the same
    /// transaction when the step left any unwritten, and whenever the
    /// workflow starts unwinding or finishes.
    async fn workflow_save(
        &self,
        ctx: &crate::RequestContext,
        id: &str,
        owner: &str,
        update: WorkflowUpdate,
    ) -> crate::Result<WorkflowRecord>;

    /// Extends `owner`'s hold on a running workflow to `lease` from now, if
    /// `owner` still holds it (even past its lease, as long as no one took
    /// it over); ABORTED / OPERATION_IN_PROGRESS otherwise: another process
    /// took it over, or it finished. Called before a step runs, so that a
    /// process whose lease ran out never calls AWS for a workflow that
    /// another process runs now.
    async fn workflow_renew(
        &self,
        ctx: &crate::RequestContext,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> crate::Result<WorkflowRecord>;
}

/// The backoff of a retried step: 200 ms doubling per attempt, at most
/// `cap`.
pub fn backoff(attempt: u32, cap: Duration) -> Duration {
    Duration::from_millis(200)
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(10))
        .min(cap)
}
