//! The linked-role lifecycle against IAM: ensure (create, or adopt a role
//! that exists), inspect, edit the description, and retire.
//!
//! Ensure and retire are workflows (`slrgov_domain::workflow`): stored step
//! machines whose steps are defined here ([`ensure::EnsureWorkflow`],
//! [`retire::RetireWorkflow`]) and run by the one engine, inline for a
//! request and in the background worker alike. Before any STS or IAM call
//! the instance's region is checked against the Connect region table (the
//! gate, [`Lifecycle::admit`]).
//!
//! - `ensure.rs`: EnsureLinkedRole, its workflow and its inline runner;
//! - `retire.rs`: RetireLinkedRole (and DeleteInstance's retirement), its
//!   workflow;
//! - `inspect.rs`: InspectLinkedRole and its findings;
//! - `describe.rs`: UpdateLinkedRoleDescription;
//! - `roles.rs`: what a Connect service-linked role is (names, trust);
//! - `connect.rs`: Amazon Connect, the source of truth: its clients, the
//!   role it links to each instance, a fresh look at one instance;
//! - `sync.rs`: SyncInstances, its workflow, and the background syncs;
//! - `confirmations.rs`: when IAM last showed each ACTIVE role, so that
//!   an ensure within the bound asks IAM nothing;
//! - `batch.rs`: BatchEnsureLinkedRoles, its workflow (a wave of
//!   instances per step, ensured concurrently; cancellable);
//! - `reconcile/`: the reconciler's pass over one account (sync,
//!   inspect every role, store the findings, repair in repair mode).

pub mod batch;
pub mod confirmations;
pub mod connect;
pub mod describe;
pub mod ensure;
mod ensure_request;
pub mod inspect;
pub mod plan;
pub mod reconcile;
pub mod retire;
pub mod roles;
mod steps;
pub mod sync;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use slrgov_aws::{AccessError, AccountTarget, AwsProvider, IamApi, IamError};
use slrgov_domain::model::Instance;
use slrgov_domain::names::InstanceKey;
use slrgov_domain::workflow::{Engine, Progress, StepHook, WorkflowKind, WorkflowRecord};
use slrgov_domain::{Error, Reason, RequestContext, Role};
use slrgov_store::Store;

use crate::regions::RegionTable;

pub use inspect::{Finding, FindingCode, Inspection, PermissionCheck, Severity};
pub use retire::Retirement;

/// How long a workflow is held before another process may take it over
/// (`SLRGOV_WORKFLOW_LEASE`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// How many instances a batch ensures at once
/// (`SLRGOV_BATCH_CONCURRENCY`).
pub const DEFAULT_BATCH_CONCURRENCY: usize = 16;

/// Maps a failure to reach an account (STS) to the caller's error.
pub fn access_error(error: AccessError) -> Error {
    match error {
        AccessError::Unavailable(message) => Error::unavailable(
            Reason::IamUnavailable,
            format!("sts is unavailable: {message}"),
            Duration::from_secs(2),
        ),
        other => Error::failed_precondition(Reason::AwsCredentialsUnavailable, other.to_string()),
    }
}

/// Maps an IAM failure that no step handles specifically to the caller's
/// error.
pub fn iam_error(operation: &str, error: IamError) -> Error {
    match error {
        IamError::Throttled(_) | IamError::Unavailable(_) => Error::unavailable(
            Reason::IamUnavailable,
            format!("iam {operation} failed after retries: {error}"),
            Duration::from_secs(2),
        ),
        IamError::AccessDenied(message) => Error::failed_precondition(
            Reason::AwsCredentialsUnavailable,
            format!("the service's credentials may not call iam {operation}: {message}"),
        ),
        other => {
            tracing::error!(operation, error = %other, "unexpected iam error");
            Error::internal(format!("iam {operation} failed: {other}"))
        }
    }
}

/// Runs an IAM read outside a workflow (inspections, confirmations),
/// retrying throttling and service failures with a bounded exponential
/// backoff (the SDK's own retries come first). Workflow steps never retry
/// inside: they ask the engine to run them again later.
///
/// Each retry is counted in `slrgov.aws.retries` under `operation`.
pub async fn with_retries<T, F, Fut>(operation: &'static str, mut call: F) -> Result<T, IamError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, IamError>>,
{
    let mut delay = Duration::from_millis(100);
    for _ in 0..5 {
        match call().await {
            Err(error) if error.is_transient() => {
                tracing::debug!(%error, operation, retry_in_ms = delay.as_millis() as u64, "iam call retried");
                slrgov_aws::telemetry::count_retry("iam", operation);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
    call().await
}

/// Everything the lifecycle needs.
#[derive(Clone)]
pub struct Lifecycle {
    store: Arc<dyn Store>,
    iam: Arc<dyn AwsProvider>,
    regions: Arc<RegionTable>,
    lease: Duration,
    batch_concurrency: usize,
    confirmations: Arc<confirmations::Confirmations>,
    hook: Option<Arc<dyn StepHook>>,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("engine", &self.store.engine())
            .field("lease", &self.lease)
            .field("hook", &self.hook.is_some())
            .finish_non_exhaustive()
    }
}

impl Lifecycle {
    /// A lifecycle over `store`, acting through `iam`.
    pub fn new(
        store: Arc<dyn Store>,
        iam: Arc<dyn AwsProvider>,
        regions: Arc<RegionTable>,
        lease: Duration,
    ) -> Self {
        Lifecycle {
            store,
            iam,
            regions,
            lease,
            batch_concurrency: DEFAULT_BATCH_CONCURRENCY,
            // Off unless the server passes its own: every ensure of an
            // ACTIVE role asks IAM.
            confirmations: Arc::new(confirmations::Confirmations::new(Duration::ZERO)),
            hook: None,
        }
    }

    /// The same lifecycle, answering ensures of ACTIVE roles from
    /// `confirmations` (shared by every request of the process).
    pub fn with_confirmations(mut self, confirmations: Arc<confirmations::Confirmations>) -> Self {
        self.confirmations = confirmations;
        self
    }

    /// The same lifecycle, whose batches ensure up to `n` instances at
    /// once (at least 1).
    pub fn with_batch_concurrency(mut self, n: usize) -> Self {
        self.batch_concurrency = n.max(1);
        self
    }

    /// How many instances a batch ensures at once.
    pub fn batch_concurrency(&self) -> usize {
        self.batch_concurrency
    }

    /// The same lifecycle whose workflow engines carry test
    /// instrumentation (the step-replay harness).
    pub fn with_hook(mut self, hook: Arc<dyn StepHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// How long workflows are held at a time.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The workflow engine, running as `owner`.
    pub fn engine(&self, owner: &str) -> Engine {
        let engine = Engine::new(
            self.store.clone() as Arc<dyn slrgov_domain::workflow::WorkflowLog>,
            owner,
            self.lease,
        );
        match &self.hook {
            Some(hook) => engine.with_hook(hook.clone()),
            None => engine,
        }
    }

    /// The gate before any AWS call: the instance (NOT_FOUND outside the
    /// caller's scope), the caller's role for `action`, and the region
    /// check (REGION_NOT_SUPPORTED for a region without Connect).
    pub async fn admit(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        needed: Role,
        action: &str,
    ) -> Result<Instance, Error> {
        let instance = self.store.instance_get(ctx, key).await?;
        // Visible: the request's audit events name the linked role.
        ctx.audit.retarget(&key.account_id, &key.linked_role_name());
        ctx.check_role(needed, action)?;
        self.regions.check_connect(&instance.region)?;
        Ok(instance)
    }

    /// A verified IAM client of the instance's account (STS AssumeRole and
    /// GetCallerIdentity when it is not cached): call after [`Self::admit`].
    pub async fn iam_client(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
    ) -> Result<Arc<dyn IamApi>, Error> {
        self.iam_for_account(ctx, &key.account_id).await
    }

    /// The IAM client of `account` (STS AssumeRole when the account has an
    /// access role).
    pub async fn iam_for_account(
        &self,
        ctx: &RequestContext,
        account: &slrgov_domain::types::AccountId,
    ) -> Result<Arc<dyn IamApi>, Error> {
        let access = self.store.account_access(ctx, account).await?;
        let target = AccountTarget::new(
            access.account_id,
            access.partition,
            access.access_role_arn,
            access.external_id.as_ref(),
        );
        self.iam.iam(&target).await.map_err(access_error)
    }

    /// Runs a due workflow that `owner` claimed (the background worker):
    /// its steps until it finishes or waits, from its saved state, with its
    /// saved inputs. Waits are never held: the row's `not_before` says when
    /// any replica's worker runs it again.
    pub async fn resume(
        &self,
        ctx: &RequestContext,
        mut record: WorkflowRecord,
        owner: &str,
    ) -> Result<Resumed, Error> {
        let engine = self.engine(owner);
        let resumed = match record.kind {
            WorkflowKind::Ensure => {
                let env = steps::StepEnv::new(self, ctx, &record, owner, None)?;
                let workflow = ensure::EnsureWorkflow::new(env);
                Resumed::of(
                    engine
                        .advance(ctx, &workflow, &mut record, Duration::ZERO)
                        .await?,
                )
            }
            WorkflowKind::Retire | WorkflowKind::Delete => {
                let env = steps::StepEnv::new(self, ctx, &record, owner, None)?;
                let workflow = retire::RetireWorkflow::new(env, record.kind);
                Resumed::of(
                    engine
                        .advance(ctx, &workflow, &mut record, Duration::ZERO)
                        .await?,
                )
            }
            WorkflowKind::BatchEnsure => {
                let id = record.id.clone();
                let workflow = batch::BatchWorkflow::new(self, ctx, &id);
                Resumed::of(
                    engine
                        .advance(ctx, &workflow, &mut record, Duration::ZERO)
                        .await?,
                )
            }
            WorkflowKind::Reconcile => {
                let workflow = reconcile::ReconcileWorkflow::new(self, ctx);
                let resumed = Resumed::of(
                    engine
                        .advance(ctx, &workflow, &mut record, Duration::ZERO)
                        .await?,
                );
                reconcile::count_pass(&record);
                resumed
            }
            WorkflowKind::Sync => {
                let id = record.id.clone();
                let workflow = sync::SyncWorkflow::cancellable(self, ctx, &id);
                Resumed::of(
                    engine
                        .advance(ctx, &workflow, &mut record, Duration::ZERO)
                        .await?,
                )
            }
        };
        tracing::debug!(workflow = %record.id, kind = %record.kind, step = %record.step, ?resumed, "workflow advanced");
        Ok(resumed)
    }
}

/// Where a resumed workflow stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// It finished (succeeded or failed).
    Finished,
    /// A step waits: the row says when it runs again.
    Waiting,
    /// A test hook stopped the engine as a crash would.
    Crashed,
}

impl Resumed {
    fn of<O>(progress: Progress<O>) -> Self {
        match progress {
            Progress::Done(_) | Progress::Failed(_) => Resumed::Finished,
            Progress::Waiting { .. } => Resumed::Waiting,
            Progress::Crashed => Resumed::Crashed,
        }
    }
}
