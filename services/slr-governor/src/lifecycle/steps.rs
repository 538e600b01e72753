//! What every workflow step acts with ([`StepEnv`]: the request or worker
//! context, the store, the account's IAM client behind the region gate, the
//! workflow's fence), and how failures become step outcomes: transient ones
//! are retried by the engine (with a backoff, up to a bound), the others
//! fail the step for good.

use std::sync::Arc;
use std::time::Duration;

use slrgov_aws::{IamApi, IamError};
use slrgov_domain::names::InstanceKey;
use slrgov_domain::workflow::{Outcome, Undo, WorkflowError, WorkflowRecord, backoff};
use slrgov_domain::{Error, Kind, Reason, RequestContext};
use slrgov_store::{Fence, Store};
use tokio::sync::OnceCell;

use super::{Lifecycle, iam_error};

/// The longest a retried step waits between attempts.
pub const RETRY_CAP: Duration = Duration::from_secs(10);

/// How many times a step is retried for a transient failure (IAM throttled
/// or unreachable) before it fails for good (about eight minutes at the
/// capped backoff): a workflow never holds its instance forever.
pub const MAX_TRANSIENT_ATTEMPTS: u32 = 50;

/// What a workflow's steps act with.
pub struct StepEnv<'a> {
    pub(super) lifecycle: &'a Lifecycle,
    pub(super) ctx: &'a RequestContext,
    pub(super) key: InstanceKey,
    pub(super) fence: Fence,
    iam: OnceCell<Arc<dyn IamApi>>,
}

impl<'a> StepEnv<'a> {
    /// The environment of `record`'s steps, run as `owner`; `iam` is the
    /// client a request already verified, if any. INTERNAL for a workflow
    /// of no instance.
    pub fn new(
        lifecycle: &'a Lifecycle,
        ctx: &'a RequestContext,
        record: &WorkflowRecord,
        owner: &str,
        iam: Option<Arc<dyn IamApi>>,
    ) -> Result<Self, Error> {
        Ok(StepEnv {
            lifecycle,
            ctx,
            key: record.key()?,
            fence: Fence {
                workflow_id: record.id.clone(),
                owner: owner.to_owned(),
            },
            iam: OnceCell::new_with(iam),
        })
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        &**self.lifecycle.store()
    }

    /// The account's IAM client, through the region gate and STS (once per
    /// run): a region without Connect or unusable credentials fail the step
    /// for good, an STS outage retries it.
    pub async fn iam(&self) -> Result<Arc<dyn IamApi>, Error> {
        self.iam
            .get_or_try_init(|| async {
                let instance = self.store().instance_get(self.ctx, &self.key).await?;
                self.lifecycle.regions.check_connect(&instance.region)?;
                self.lifecycle.iam_client(self.ctx, &self.key).await
            })
            .await
            .cloned()
    }
}

/// True for a failure the next attempt may not meet (IAM, Connect or the
/// database unavailable; a conflict that a retry may not meet).
pub fn transient(error: &Error) -> bool {
    matches!(
        error.kind,
        slrgov_domain::Kind::Unavailable | slrgov_domain::Kind::Aborted
    )
}

/// Retry after the backoff of `attempt`, or fail for good once a transient
/// failure has lasted [`MAX_TRANSIENT_ATTEMPTS`] attempts.
pub fn retry<S, O>(attempt: u32, reason: String) -> Outcome<S, O> {
    if attempt >= MAX_TRANSIENT_ATTEMPTS {
        return Outcome::Fail(WorkflowError::from(Error::unavailable(
            Reason::IamUnavailable,
            format!("gave up after {attempt} attempts: {reason}"),
            Duration::from_secs(2),
        )));
    }
    Outcome::Retry {
        after: backoff(attempt, RETRY_CAP),
        reason,
    }
}

/// The outcome of a step whose IAM call failed in a way it does not handle
/// itself: transient failures are retried, the others fail the step.
pub fn iam_failed<S, O>(operation: &str, error: IamError, attempt: u32) -> Outcome<S, O> {
    if error.is_transient() {
        // The call will be made again: counted in `slrgov.aws.retries`.
        slrgov_aws::telemetry::count_retry("iam", operation);
        return retry(attempt, format!("iam {operation}: {error}"));
    }
    Outcome::Fail(WorkflowError::from(iam_error(operation, error)))
}

/// The outcome of a step whose store or gate call failed: an unavailable
/// database or STS, or a lost lease, is retried (the engine's save then
/// tells a process that lost its lease to stop); anything else fails.
pub fn failed<S, O>(error: Error, attempt: u32) -> Outcome<S, O> {
    match error.kind {
        Kind::Unavailable | Kind::Aborted => retry(attempt, error.message),
        _ => Outcome::Fail(WorkflowError::from(error)),
    }
}

/// An undo that cannot go on yet: retried at the capped backoff, without
/// bound (an undo never gives up half-way; what it needs is AWS or the
/// database back).
pub fn undo_retry<S>(attempt: u32, reason: String) -> Undo<S> {
    Undo::Retry {
        after: backoff(attempt, RETRY_CAP),
        reason,
    }
}
