//! EnsureLinkedRole's request path: the plan from Connect, then start (or
//! join, or take over) the instance's ensure workflow, run it inline within
//! the caller's deadline, and answer (recorded under the request id). The
//! workflow's steps are in [`super::ensure`].

use std::sync::Arc;
use std::time::Duration;

use slrgov_aws::{IamApi, IamError};
use slrgov_domain::model::{LinkedRole, LinkedRoleState};
use slrgov_domain::names::InstanceKey;
use slrgov_domain::workflow::{
    NewWorkflow, Progress, WorkflowKind, WorkflowRecord, WorkflowTarget,
};
use slrgov_domain::{Error, Reason, RequestContext, Role};
use slrgov_store::{EnsureStart, Idempotency, Replay};

use super::ensure::{EnsureInputs, EnsureState, EnsureWorkflow};
use super::steps::StepEnv;
use super::{Lifecycle, iam_error, with_retries};

/// How long an ensure waits for another one of the same instance.
const WAIT_FOR_OTHER: Duration = Duration::from_secs(45);
/// How long a request runs its ensure before it answers UNAVAILABLE and
/// leaves the rest to the background worker (less, when the request's
/// deadline comes sooner).
const INLINE_BUDGET: Duration = Duration::from_secs(25);
/// What a request keeps of its deadline to answer and record its answer.
const ANSWER_MARGIN: Duration = Duration::from_millis(500);

impl Lifecycle {
    /// EnsureLinkedRole: confirms an ACTIVE role, or starts (or joins) the
    /// instance's ensure workflow and runs it inline for up to
    /// [`INLINE_BUDGET`]; what is left then is the background worker's, and
    /// the caller gets UNAVAILABLE with a retry hint (a retry with the same
    /// request id joins the same workflow).
    pub async fn ensure(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        description: Option<String>,
        validate_only: bool,
        idempotency: Option<&Idempotency>,
    ) -> Result<LinkedRole, Error> {
        self.admit(ctx, key, Role::Operator, "EnsureLinkedRole")
            .await?;
        let idempotency = idempotency.filter(|_| !validate_only);
        if let Some(idempotency) = idempotency
            && let Some(Replay::Response(first)) = self
                .store()
                .request_id_lookup(ctx, &key.account_id, idempotency)
                .await?
        {
            return Replay::Response(first).response();
        }
        let current = self.store().linked_role_get(ctx, key).await?;
        // Connect first, before any IAM call: the plan is what a new
        // workflow is started with. An ACTIVE record whose instance Connect
        // cannot tell about now is confirmed as it is (InspectLinkedRole
        // shows what drifted), and never starts a workflow.
        let plan = match self.plan(ctx, key).await {
            Ok(plan) => plan,
            Err(_) if current.state == LinkedRoleState::Active => {
                let iam = self.iam_client(ctx, key).await?;
                let role = self.confirm_active(&*iam, current).await?;
                return self.answer(ctx, key, idempotency, role).await;
            }
            Err(error) => return Err(error),
        };
        let iam = self.iam_client(ctx, key).await?;
        if validate_only {
            return match current.state {
                LinkedRoleState::Active => self.confirm_active(&*iam, current).await,
                _ => super::plan::preview(&*iam, current, &plan).await,
            };
        }
        let inputs = EnsureInputs {
            description,
            ..plan
        };
        let request_id = idempotency.map(|i| i.request_id.to_string());
        let start = NewWorkflow::of::<EnsureWorkflow>(
            WorkflowKind::Ensure,
            WorkflowTarget::linked_role(key),
            &inputs,
            &EnsureState::Claimed,
            request_id,
        )?;
        let owner = format!("ensure-{}", uuid::Uuid::new_v4());
        let deadline = tokio::time::Instant::now() + ctx.budget(WAIT_FOR_OTHER, ANSWER_MARGIN);
        let joined_by_request_id = idempotency.is_some();
        let mut idempotency = idempotency;
        loop {
            let started = self
                .store()
                .linked_role_begin_ensure(ctx, start.clone(), &owner, self.lease, idempotency)
                .await?;
            let waiting_for = match started {
                EnsureStart::Active(role) => {
                    let role = self.confirm_active(&*iam, *role).await?;
                    return self.answer(ctx, key, idempotency, role).await;
                }
                EnsureStart::Claimed(record) => {
                    return self.run_inline(ctx, *record, iam, &owner).await;
                }
                EnsureStart::Running(record) => record.id,
                EnsureStart::Replayed(Replay::Workflow(id)) => id,
                EnsureStart::Replayed(replay) => return replay.response(),
            };
            // Another process runs it: wait for its result. If that process
            // dies (its lease runs out), take the workflow over: the next
            // start does, with the workflow's own saved inputs.
            match self.wait_for(ctx, &waiting_for, deadline).await {
                Ok(Some(result)) => return result,
                Ok(None) => idempotency = None,
                // The caller's request id names this workflow: it is the
                // caller's own ensure, going on in the background, not
                // someone else's in the way.
                Err(error)
                    if joined_by_request_id && error.reason == Reason::OperationInProgress =>
                {
                    return Err(continues_in_background(
                        Reason::Unavailable,
                        &waiting_for,
                        "another process runs it",
                        Duration::from_secs(2),
                    ));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The answer of an ensure that found the role ACTIVE, recorded under
    /// its request id (or the first answer, if a retry recorded it first).
    async fn answer(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        idempotency: Option<&Idempotency>,
        role: LinkedRole,
    ) -> Result<LinkedRole, Error> {
        let Some(idempotency) = idempotency else {
            return Ok(role);
        };
        let response = serde_json::to_value(&role)
            .map_err(|e| Error::internal(format!("internal error: {e}")))?;
        match self
            .store()
            .request_id_record(ctx, &key.account_id, idempotency, response)
            .await?
        {
            None => Ok(role),
            Some(Replay::Response(first)) => Replay::Response(first).response(),
            Some(Replay::Workflow(id)) => {
                let deadline =
                    tokio::time::Instant::now() + ctx.budget(WAIT_FOR_OTHER, ANSWER_MARGIN);
                self.wait_for(ctx, &id, deadline).await?.unwrap_or_else(|| {
                    Err(Error::operation_in_progress(
                        key.linked_role_name(),
                        "another ensure",
                    ))
                })
            }
        }
    }

    /// Waits for the ensure workflow `id` that another process runs:
    /// `Some(result)` once it finished, `None` once its holder's lease ran
    /// out (take it over), OPERATION_IN_PROGRESS at `deadline`.
    async fn wait_for(
        &self,
        ctx: &RequestContext,
        id: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Result<LinkedRole, Error>>, Error> {
        loop {
            let record = self.store().workflow_get(ctx, id).await?;
            match slrgov_domain::workflow::engine::finished::<EnsureWorkflow>(&record)? {
                Some(Progress::Done(role)) => return Ok(Some(Ok(role))),
                Some(Progress::Failed(error)) => return Ok(Some(Err(error.to_error()))),
                _ => {}
            }
            let held = record.lease_owner.is_some()
                && record.lease_until.is_some_and(|t| t > chrono::Utc::now());
            if !held && record.not_before <= chrono::Utc::now() {
                return Ok(None);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::operation_in_progress(
                    record.target.name.clone(),
                    "another ensure",
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs a claimed ensure workflow in this request, sleeping through the
    /// short waits its steps ask for, within [`INLINE_BUDGET`].
    async fn run_inline(
        &self,
        ctx: &RequestContext,
        mut record: WorkflowRecord,
        iam: Arc<dyn IamApi>,
        owner: &str,
    ) -> Result<LinkedRole, Error> {
        let engine = self.engine(owner);
        let workflow = EnsureWorkflow::new(StepEnv::new(self, ctx, &record, owner, Some(iam))?);
        let deadline = tokio::time::Instant::now() + ctx.budget(INLINE_BUDGET, ANSWER_MARGIN);
        loop {
            let budget = deadline.saturating_duration_since(tokio::time::Instant::now());
            match engine.advance(ctx, &workflow, &mut record, budget).await? {
                Progress::Done(role) => {
                    // Its `confirm` step just saw the role in IAM.
                    if let Some(arn) = &role.role_arn {
                        self.confirmations.confirmed(arn.as_str());
                    }
                    return Ok(role);
                }
                Progress::Failed(error) => return Err(error.to_error()),
                Progress::Waiting { until, reason } => {
                    let wait = (until - chrono::Utc::now()).to_std().unwrap_or_default();
                    let held = record.lease_owner.as_deref() == Some(owner);
                    if held && tokio::time::Instant::now() + wait < deadline {
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    engine.release(ctx, &mut record).await?;
                    // Its steps wait on IAM (throttled, not showing a new
                    // role yet).
                    return Err(continues_in_background(
                        Reason::IamUnavailable,
                        &record.id,
                        &reason,
                        wait.max(Duration::from_secs(1)),
                    ));
                }
                Progress::Crashed => {
                    return Err(Error::internal("internal error: the ensure was stopped"));
                }
            }
        }
    }
}

/// UNAVAILABLE with RetryInfo: the caller's ensure (workflow `id`) goes
/// on in the background, and a retry with the same request id joins it.
fn continues_in_background(reason: Reason, id: &str, why: &str, retry_after: Duration) -> Error {
    Error::unavailable(
        reason,
        format!(
            "the ensure continues in the background (operations/{id}: {why}): call \
             EnsureLinkedRole again, with the same request_id, for its result"
        ),
        retry_after,
    )
}

impl Lifecycle {
    /// An ACTIVE record is returned once IAM confirms the role, with no
    /// mutating call; a confirmation younger than the bound (see
    /// [`super::confirmations`]) stands for IAM's.
    async fn confirm_active(
        &self,
        iam: &dyn IamApi,
        role: LinkedRole,
    ) -> Result<LinkedRole, Error> {
        let Some(name) = role.role_name.clone() else {
            return Err(Error::internal("an ACTIVE linked role has no role name"));
        };
        let arn = role.role_arn.as_ref().map(|arn| arn.as_str().to_owned());
        if let Some(arn) = &arn
            && self.confirmations.is_fresh(arn)
        {
            tracing::debug!(role = %name, "ACTIVE: confirmed by IAM within the bound");
            return Ok(role);
        }
        match with_retries("GetRole", || iam.get_role(&name)).await {
            Ok(found) if Some(&found.arn) == role.role_arn.as_ref() => {
                if let Some(arn) = &arn {
                    self.confirmations.confirmed(arn);
                }
                Ok(role)
            }
            Ok(_) | Err(IamError::NoSuchEntity(_)) => {
                if let Some(arn) = &arn {
                    self.confirmations.forget(arn);
                }
                Err(Error::failed_precondition(
                    Reason::FailedPrecondition,
                    format!(
                        "the recorded role {name} is missing or replaced in IAM: InspectLinkedRole shows the drift"
                    ),
                ))
            }
            Err(error) => Err(iam_error("GetRole", error)),
        }
    }
}

/// What an ensure did, from the record's state before it and the role it
/// answered: `unchanged` (already ACTIVE), `restored` (Connect's role made
/// again under its name), `adopted` (an existing role taken over) or
/// `created`. The reconciler's repairs and the batches count by it.
pub fn ensure_outcome(before: Option<LinkedRoleState>, after: &LinkedRole) -> &'static str {
    if before == Some(LinkedRoleState::Active) {
        "unchanged"
    } else if after.restored {
        "restored"
    } else if after.adopted {
        "adopted"
    } else {
        "created"
    }
}
