//! The gRPC services: each handler validates its request into domain types
//! (`convert`), calls the store with the request context, and turns the
//! result into a response or a status (`status`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use slrgov_domain::{Error, Reason, RequestContext, Violations};
use slrgov_store::Store;
use tonic::{Response, Status};
use tracing::Instrument;

use crate::lifecycle::Lifecycle;
use crate::regions::RegionTable;
use crate::status::to_status;
use slrgov_aws::AwsProvider;

pub mod accounts;
pub mod audit;
pub mod findings;
pub mod instances;
pub mod linked_roles;
pub mod operations;
pub mod regions;
pub mod watch;

/// What every service shares.
pub struct AppState {
    store: OnceLock<Arc<dyn Store>>,
    /// The regions where Amazon Connect is available.
    pub regions: Arc<RegionTable>,
    aws: Arc<dyn AwsProvider>,
    lease: std::time::Duration,
    batch_concurrency: usize,
    /// When IAM last showed each ACTIVE role (shared by every request).
    confirmations: Arc<crate::lifecycle::confirmations::Confirmations>,
    /// The watch streams this process serves.
    pub watchers: watch::Watchers,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store.get().map(|s| s.engine()))
            .field("regions", &self.regions)
            .finish()
    }
}

impl AppState {
    /// State whose store arrives later (when the database is reachable and
    /// migrated); until then RPCs answer UNAVAILABLE. Workflows are held
    /// for `lease`; batches ensure `batch_concurrency` instances at once;
    /// IAM's confirmation of an ACTIVE role stands for `confirmation_max_age`.
    pub fn new(
        regions: RegionTable,
        aws: Arc<dyn AwsProvider>,
        lease: std::time::Duration,
        batch_concurrency: usize,
        confirmation_max_age: std::time::Duration,
        watch: watch::WatchSettings,
    ) -> Arc<Self> {
        Arc::new(AppState {
            store: OnceLock::new(),
            regions: Arc::new(regions),
            aws,
            lease,
            batch_concurrency,
            confirmations: Arc::new(crate::lifecycle::confirmations::Confirmations::new(
                confirmation_max_age,
            )),
            watchers: watch::Watchers::new(watch),
        })
    }

    /// The linked-role lifecycle, once the store is ready.
    pub fn lifecycle(&self) -> Result<Lifecycle, Error> {
        Ok(Lifecycle::new(
            self.store()?.clone(),
            self.aws.clone(),
            self.regions.clone(),
            self.lease,
        )
        .with_batch_concurrency(self.batch_concurrency)
        .with_confirmations(self.confirmations.clone()))
    }

    /// Sets the store once it is open. Returns false if one was set already.
    pub fn set_store(&self, store: Arc<dyn Store>) -> bool {
        self.store.set(store).is_ok()
    }

    /// The store, or UNAVAILABLE while the server is starting.
    pub fn store(&self) -> Result<&Arc<dyn Store>, Error> {
        self.store.get().ok_or_else(|| {
            Error::unavailable(
                Reason::Unavailable,
                "the service is starting: the database is not ready yet",
                Duration::from_secs(1),
            )
        })
    }
}

/// Runs a handler in its request's span with its AWS calls noted in the
/// request's audit trail, and turns its error into a status (logging it
/// once, here, where it is handled).
///
/// The audit trail of a mutation is completed here: a mutation that failed
/// (or was refused) once its target was known to be visible to the caller
/// always gets an event with its status code and every AWS call not yet
/// written,
/// so a failure after an IAM call still leaves that call in the trail; a
/// mutation that succeeded without changing anything (an ensure of a role
/// that is already there, a `validate_only` request) gets an OK event with
/// its calls too. A request refused before its target was known (bad input,
/// an account outside the caller's scope) writes nothing: there is no
/// account whose trail it belongs to, and writing one would leak.
///
/// A mutation cut short before it answered (its deadline passed, or the
/// client went away), whose handler is dropped mid-way, still gets an event:
/// DEADLINE_EXCEEDED or CANCELLED ([`CutShort`]).
pub async fn handle<T, F>(
    state: &AppState,
    ctx: &RequestContext,
    work: F,
) -> Result<Response<T>, Status>
where
    F: std::future::Future<Output = Result<T, Error>>,
{
    let span = ctx.span.clone();
    let mut cut_short = CutShort {
        store: state.store().ok().cloned(),
        ctx,
    };
    // Under the telemetry layer the work already runs in its RPC's span:
    // entering it again on every poll would only cost.
    let work = if span.id().is_some() && span.id() == tracing::Span::current().id() {
        futures::future::Either::Left(work)
    } else {
        futures::future::Either::Right(work.instrument(span.clone()))
    };
    let result = slrgov_aws::audit::recording(ctx.audit.clone(), work).await;
    // From here on the request is answered, whatever is dropped.
    cut_short.store = None;
    let audited = match &result {
        Ok(_) => (!ctx.audit.recorded() || ctx.audit.pending_calls() > 0).then(|| {
            (
                "OK".to_owned(),
                if ctx.audit.recorded() {
                    "made AWS calls after its change was recorded".to_owned()
                } else {
                    "changed nothing".to_owned()
                },
            )
        }),
        // A failure is always recorded, even after an earlier change of the
        // request was (an ensure whose claim was written, then refused).
        Err(error) => Some(crate::status::failure_outcome(error)),
    };
    if let (true, Some((outcome, detail)), Some((account, resource)), Ok(store)) = (
        ctx.is_mutation(),
        audited,
        ctx.audit.target(),
        state.store(),
    ) {
        let event = slrgov_domain::audit::NewAuditEvent {
            account_id: account,
            resource,
            outcome,
            detail,
        };
        if let Err(error) = store.audit_append(ctx, event).await {
            span.in_scope(|| {
                tracing::error!(error = %error.message, "cannot write the audit event of a mutation")
            });
        }
    }
    match result {
        Ok(response) => Ok(Response::new(response)),
        Err(error) => {
            span.in_scope(|| match error.kind {
                slrgov_domain::Kind::Internal | slrgov_domain::Kind::Unavailable => {
                    tracing::warn!(reason = %error.reason, error = %error.message, "rpc failed");
                }
                _ => tracing::debug!(reason = %error.reason, error = %error.message, "rpc refused"),
            });
            Err(to_status(error, &ctx.correlation_id))
        }
    }
}

/// Armed while a handler runs: if it is dropped before the handler has
/// finished (the admission layer's timeout, or the client resetting the
/// stream), the mutation's audit event is written from a task of its own,
/// with the outcome DEADLINE_EXCEEDED when the deadline had passed and
/// CANCELLED otherwise, and the AWS calls not yet written. As for any
/// failure, only once the target is known to be visible to the caller.
struct CutShort<'a> {
    /// `None` once the handler has finished (or when there is no store).
    store: Option<Arc<dyn Store>>,
    ctx: &'a RequestContext,
}

impl Drop for CutShort<'_> {
    fn drop(&mut self) {
        let Some(store) = self.store.take() else {
            return;
        };
        let ctx = self.ctx;
        let (true, Some((account_id, resource)), Ok(runtime)) = (
            ctx.is_mutation(),
            ctx.audit.target(),
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        // The admission layer's timer fires at the deadline; a little slack
        // for the clock read here.
        let expired = ctx.deadline.is_some_and(|deadline| {
            std::time::Instant::now() + Duration::from_millis(20) >= deadline
        });
        let (outcome, by) = if expired {
            ("DEADLINE_EXCEEDED", "its deadline")
        } else {
            (
                "CANCELLED",
                "the client, which stopped waiting for the answer",
            )
        };
        let detail = if ctx.audit.recorded() {
            format!("cut short by {by} after its change was recorded")
        } else {
            format!("cut short by {by}: what it had not committed was rolled back")
        };
        let event = slrgov_domain::audit::NewAuditEvent {
            account_id,
            resource,
            outcome: outcome.to_owned(),
            detail,
        };
        let ctx = ctx.clone();
        let span = ctx.span.clone();
        span.in_scope(|| tracing::info!(outcome, "request cut short before it answered"));
        runtime.spawn(
            async move {
                if let Err(error) = store.audit_append(&ctx, event).await {
                    tracing::error!(
                        error = %error.message,
                        "cannot write the audit event of a request cut short"
                    );
                }
            }
            .instrument(span),
        );
    }
}

/// The value of a field that validation has accepted; a `None` here is a
/// bug in the handler (validation recorded no violation for a missing
/// value), reported as INTERNAL rather than a panic.
pub fn accepted<T>(value: Option<T>) -> Result<T, Error> {
    value.ok_or_else(|| Error::internal("internal error: request validation is inconsistent"))
}

/// The error of a validation that has already found a violation.
pub fn refused(violations: Violations) -> Error {
    violations
        .finish()
        .err()
        .unwrap_or_else(|| Error::internal("internal error: request validation is inconsistent"))
}
