//! RetireLinkedRole (and DeleteInstance of an instance with a role): IAM
//! deletes a service-linked role asynchronously, so the retirement is a
//! workflow the background workers drive, shown as an Operation.
//!
//! | state (what has happened) | step run next | its action | undo of the step that led here |
//! | --- | --- | --- | --- |
//! | `Claimed` | `submit` | Connect asked whether a live instance uses the role (ROLE_IN_USE, zero IAM calls), then DeleteServiceLinkedRole: the deletion task is recorded | the start: the record becomes what IAM says (ACTIVE, DELETION_FAILED with the role's usage, or DELETED) |
//! | `Submitted` | `await` | GetServiceLinkedRoleDeletionStatus until it ends; FAILED fails with ROLE_IN_USE; a purged task with the role still there submits again | nothing (IAM's task cannot be called back) |
//! | `Gone` | `record` | the role recorded DELETED (a `delete` removes the instance) | nothing |

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use slrgov_aws::{DeletionStatus, IamError};
use slrgov_domain::model::{DeletionFailure, LinkedRole, LinkedRoleState};
use slrgov_domain::names::InstanceKey;
use slrgov_domain::types::Revision;
use slrgov_domain::workflow::{
    NewWorkflow, Outcome, Undo, Workflow, WorkflowError, WorkflowKind, WorkflowRecord,
    WorkflowTarget, backoff,
};
use slrgov_domain::{Error, Reason, RequestContext, Role};
use slrgov_store::{Idempotency, Replay, RestoredRole, RetireStart};

use super::connect::role_in_use;
use super::steps::{RETRY_CAP, StepEnv, failed, iam_failed, retry, undo_retry};
use super::{Lifecycle, iam_error, with_retries};

/// How many times `await` polls a deletion that has not ended (about an
/// hour at the capped backoff) before the retirement fails.
const AWAIT_ATTEMPTS: u32 = 360;

/// The inputs a retirement saves when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetireInputs {
    /// The role to delete, as recorded when the retirement started (empty:
    /// there is none, and nothing to delete).
    pub role_name: String,
}

/// What a retirement has done so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RetireState {
    /// Started: the record is DELETING.
    Claimed,
    /// IAM accepted the deletion.
    Submitted {
        /// IAM's deletion task.
        task_id: String,
    },
    /// The role is gone from IAM.
    Gone,
}

/// The retirement workflow's steps (for `retire` and `delete` alike).
pub struct RetireWorkflow<'a> {
    env: StepEnv<'a>,
    kind: WorkflowKind,
}

impl<'a> RetireWorkflow<'a> {
    /// The steps of one retirement of `kind`, acting with `env`.
    pub fn new(env: StepEnv<'a>, kind: WorkflowKind) -> Self {
        RetireWorkflow { env, kind }
    }

    async fn submit(
        &self,
        role_name: &str,
        attempt: u32,
    ) -> Outcome<RetireState, Option<LinkedRole>> {
        if role_name.is_empty() {
            return Outcome::Next(RetireState::Gone);
        }
        // Asked again right before the deletion: an instance Connect still
        // has may have come to use the role since the request.
        match self
            .env
            .lifecycle
            .role_user(self.env.ctx, &self.env.key, role_name)
            .await
        {
            Ok(None) => {}
            Ok(Some(user)) => {
                return Outcome::Fail(WorkflowError::from(role_in_use(role_name, &user)));
            }
            Err(error) => return failed(error, attempt),
        }
        let iam = match self.env.iam().await {
            Ok(iam) => iam,
            Err(error) => return failed(error, attempt),
        };
        match iam.delete_service_linked_role(role_name).await {
            Ok(task_id) => match self
                .env
                .store()
                .linked_role_deletion_started(
                    self.env.ctx,
                    &self.env.fence,
                    &self.env.key,
                    &task_id,
                )
                .await
            {
                Ok(()) => Outcome::Next(RetireState::Submitted { task_id }),
                Err(error) => failed(error, attempt),
            },
            Err(IamError::NoSuchEntity(_)) => Outcome::Next(RetireState::Gone),
            Err(error) if error.is_transient() => {
                retry(attempt, format!("iam DeleteServiceLinkedRole: {error}"))
            }
            Err(IamError::AccessDenied(message)) => {
                Outcome::Fail(WorkflowError::from(Error::failed_precondition(
                    Reason::AwsCredentialsUnavailable,
                    format!("the service's credentials may not delete the role: {message}"),
                )))
            }
            Err(error) => Outcome::Fail(WorkflowError::from(Error::failed_precondition(
                Reason::FailedPrecondition,
                format!("iam refused DeleteServiceLinkedRole: {error}"),
            ))),
        }
    }

    async fn wait(
        &self,
        role_name: &str,
        task_id: &str,
        attempt: u32,
    ) -> Outcome<RetireState, Option<LinkedRole>> {
        let iam = match self.env.iam().await {
            Ok(iam) => iam,
            Err(error) => return failed(error, attempt),
        };
        match iam.deletion_status(task_id).await {
            Ok(DeletionStatus::Succeeded) => Outcome::Next(RetireState::Gone),
            Ok(DeletionStatus::NotStarted | DeletionStatus::InProgress)
                if attempt < AWAIT_ATTEMPTS =>
            {
                Outcome::Retry {
                    after: backoff(attempt, RETRY_CAP),
                    reason: format!("iam is deleting the role (task {task_id})"),
                }
            }
            Ok(DeletionStatus::NotStarted | DeletionStatus::InProgress) => retry(
                attempt,
                format!("iam is still deleting the role (task {task_id})"),
            ),
            Ok(DeletionStatus::Failed { reason, usage }) => {
                let message = format!("iam could not delete the role: {reason}");
                let failure = DeletionFailure {
                    reason,
                    role_usage: usage.into_iter().map(|u| (u.region, u.resources)).collect(),
                };
                Outcome::Fail(
                    WorkflowError::from(Error::failed_precondition(Reason::RoleInUse, message))
                        .with_failure(failure),
                )
            }
            // IAM may purge a task record: the role's absence decides.
            Err(IamError::NoSuchEntity(_)) => match iam.get_role(role_name).await {
                Err(IamError::NoSuchEntity(_)) => Outcome::Next(RetireState::Gone),
                Ok(_) => Outcome::Next(RetireState::Claimed),
                Err(error) if error.is_transient() => polled_again("GetRole", &error, attempt),
                Err(error) => iam_failed("GetRole", error, attempt),
            },
            // IAM accepted the deletion and cannot call it back: a transient
            // failure to read its progress never fails the retirement (the
            // polls before it count towards the hour, not towards giving up).
            Err(error) if error.is_transient() => {
                polled_again("GetServiceLinkedRoleDeletionStatus", &error, attempt)
            }
            Err(error) => iam_failed("GetServiceLinkedRoleDeletionStatus", error, attempt),
        }
    }

    /// Undoes the start: the record becomes what IAM says now.
    async fn restore(
        &self,
        role_name: &str,
        error: &WorkflowError,
        attempt: u32,
    ) -> Undo<RetireState> {
        let refused_before_submit =
            error.reason == Reason::RoleInUse.as_str() && error.failure.is_none();
        let restored = if role_name.is_empty() {
            RestoredRole::Deleted
        } else if refused_before_submit {
            // Connect said the role is in use, so nothing was asked of IAM:
            // the role is as it was (and IAM is not called for it).
            RestoredRole::Active
        } else {
            let iam = match self.env.iam().await {
                Ok(iam) => Some(iam),
                // No way into the account (credentials gone): the role is
                // as it was before, as far as the service can tell.
                Err(e) if e.kind != slrgov_domain::Kind::Unavailable => None,
                Err(e) => return undo_retry(attempt, e.message),
            };
            let read = match iam {
                Some(iam) => Some(iam.get_role(role_name).await),
                None => None,
            };
            match read {
                Some(Err(IamError::NoSuchEntity(_))) => RestoredRole::Deleted,
                Some(Err(e)) if e.is_transient() => {
                    return undo_retry(attempt, format!("iam GetRole: {e}"));
                }
                _ => match &error.failure {
                    Some(failure) => RestoredRole::DeletionFailed(failure.clone()),
                    None => RestoredRole::Active,
                },
            }
        };
        match self
            .env
            .store()
            .linked_role_restore(self.env.ctx, &self.env.fence, &self.env.key, restored)
            .await
        {
            Ok(_) => Undo::Released,
            Err(e) => undo_retry(attempt, e.message),
        }
    }
}

#[async_trait]
impl Workflow for RetireWorkflow<'_> {
    type Inputs = RetireInputs;
    type State = RetireState;
    type Output = Option<LinkedRole>;

    fn kind(&self) -> WorkflowKind {
        self.kind
    }

    fn steps() -> &'static [&'static str] {
        &["submit", "await", "record"]
    }

    fn step_of(state: &RetireState) -> &'static str {
        match state {
            RetireState::Claimed => "submit",
            RetireState::Submitted { .. } => "await",
            RetireState::Gone => "record",
        }
    }

    async fn action(
        &self,
        inputs: &RetireInputs,
        state: &RetireState,
        attempt: u32,
    ) -> Outcome<RetireState, Option<LinkedRole>> {
        match state {
            RetireState::Claimed => self.submit(&inputs.role_name, attempt).await,
            RetireState::Submitted { task_id } => {
                self.wait(&inputs.role_name, task_id, attempt).await
            }
            RetireState::Gone => match self
                .env
                .store()
                .linked_role_retired(self.env.ctx, &self.env.fence, &self.env.key, self.kind)
                .await
            {
                Ok(role) => Outcome::Done(role),
                Err(error) => failed(error, attempt),
            },
        }
    }

    async fn undo(
        &self,
        inputs: &RetireInputs,
        state: &RetireState,
        error: &WorkflowError,
        attempt: u32,
    ) -> Undo<RetireState> {
        match state {
            RetireState::Claimed => self.restore(&inputs.role_name, error, attempt).await,
            RetireState::Submitted { .. } | RetireState::Gone => Undo::Back(RetireState::Claimed),
        }
    }
}

/// Polls a submitted deletion again after a transient failure of
/// `operation`, at the capped backoff.
fn polled_again(
    operation: &str,
    error: &IamError,
    attempt: u32,
) -> Outcome<RetireState, Option<LinkedRole>> {
    slrgov_aws::telemetry::count_retry("iam", operation);
    Outcome::Retry {
        after: backoff(attempt, RETRY_CAP),
        reason: format!("iam {operation}: {error}"),
    }
}

/// What RetireLinkedRole started (or, with validate_only, would start).
#[derive(Debug, Clone)]
pub enum Retirement {
    /// The operation, running or (if one was running) as it is.
    Started(Box<WorkflowRecord>),
    /// validate_only: every check passed; the role that would be deleted.
    Preview(Box<LinkedRole>),
}

impl Lifecycle {
    /// RetireLinkedRole (`kind` retire) and DeleteInstance of an instance
    /// with a role (`kind` delete): checks the region and the credentials,
    /// then records a running workflow that the background workers drive to
    /// the end. A known request id answers with its operation.
    pub async fn retire(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        expected: Option<Revision>,
        kind: WorkflowKind,
        validate_only: bool,
        idempotency: Option<&Idempotency>,
    ) -> Result<Retirement, Error> {
        self.admit(ctx, key, Role::Operator, "RetireLinkedRole")
            .await?;
        let idempotency = idempotency.filter(|_| !validate_only);
        if let Some(idempotency) = idempotency
            && let Some(first) = self
                .store()
                .request_id_lookup(ctx, &key.account_id, idempotency)
                .await?
        {
            return self.replayed(ctx, first).await;
        }
        let current = self.store().linked_role_get(ctx, key).await?;
        let name = key.linked_role_name();
        if expected.is_some_and(|e| e != current.revision) {
            return Err(Error::etag_mismatch(name));
        }
        // A retirement already runs: asked again (a retry without its
        // request id), the caller gets that Operation, or
        // OPERATION_IN_PROGRESS when it is the other kind.
        if current.state == LinkedRoleState::Deleting && !validate_only {
            let role_name = current.role_name.clone().unwrap_or_default();
            return self
                .begin(ctx, key, role_name, expected, kind, idempotency)
                .await;
        }
        let Some(role_name) = current.role_name.clone().filter(|_| {
            matches!(
                current.state,
                LinkedRoleState::Active | LinkedRoleState::DeletionFailed
            )
        }) else {
            return Err(Error::failed_precondition(
                Reason::FailedPrecondition,
                format!("{name} has no role to retire (it is {})", current.state),
            ));
        };
        // Never break a live instance: zero IAM calls when Connect says an
        // instance still uses the role.
        if let Some(user) = self.role_user(ctx, key, &role_name).await? {
            return Err(role_in_use(&role_name, &user));
        }
        let iam = self.iam_client(ctx, key).await?;
        if validate_only {
            return match with_retries("GetRole", || iam.get_role(&role_name)).await {
                Ok(_) => Ok(Retirement::Preview(Box::new(current))),
                Err(IamError::NoSuchEntity(_)) => Err(Error::failed_precondition(
                    Reason::FailedPrecondition,
                    format!("the recorded role {role_name} is not in IAM: nothing to retire"),
                )),
                Err(error) => Err(iam_error("GetRole", error)),
            };
        }
        self.begin(ctx, key, role_name, expected, kind, idempotency)
            .await
    }

    /// Records the retirement's start (or finds the one running).
    async fn begin(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        role_name: String,
        expected: Option<Revision>,
        kind: WorkflowKind,
        idempotency: Option<&Idempotency>,
    ) -> Result<Retirement, Error> {
        let start = NewWorkflow::of::<RetireWorkflow>(
            kind,
            retire_target(kind, key),
            &RetireInputs { role_name },
            &RetireState::Claimed,
            idempotency.map(|i| i.request_id.to_string()),
        )?;
        match self
            .store()
            .linked_role_begin_retire(ctx, start, expected, idempotency)
            .await?
        {
            RetireStart::Started(record) => Ok(Retirement::Started(record)),
            RetireStart::Replayed(first) => self.replayed(ctx, first).await,
        }
    }

    async fn replayed(&self, ctx: &RequestContext, first: Replay) -> Result<Retirement, Error> {
        let id = first.workflow()?;
        let record = self.store().workflow_get(ctx, &id).await?;
        Ok(Retirement::Started(Box::new(record)))
    }

    /// The finished `delete` operation of a DeleteInstance whose record had
    /// no role to retire (recorded with the delete).
    pub fn deleted_at_once(
        key: &InstanceKey,
        request_id: Option<String>,
    ) -> Result<NewWorkflow, Error> {
        NewWorkflow::of::<RetireWorkflow>(
            WorkflowKind::Delete,
            WorkflowTarget::instance(key),
            &RetireInputs {
                role_name: String::new(),
            },
            &RetireState::Gone,
            request_id,
        )
    }
}

/// What a retirement acts on: the linked role, or (DeleteInstance) the
/// instance.
fn retire_target(kind: WorkflowKind, key: &InstanceKey) -> WorkflowTarget {
    match kind {
        WorkflowKind::Delete => WorkflowTarget::instance(key),
        _ => WorkflowTarget::linked_role(key),
    }
}
