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
use slrgov_aws::AwsAccess;

pub mod accounts;
pub mod instances;
pub mod linked_roles;
pub mod operations;
pub mod regions;

/// What every service shares.
pub struct AppState {
    store: OnceLock<Arc<dyn Store>>,
    /// The regions where Amazon Connect is available.
    pub regions: Arc<RegionTable>,
    aws: Arc<AwsAccess>,
    lease: std::time::Duration,
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
    /// migrated); until then RPCs answer UNAVAILABLE.
    pub fn new(regions: RegionTable, aws: Arc<AwsAccess>, lease: std::time::Duration) -> Arc<Self> {
        Arc::new(AppState {
            store: OnceLock::new(),
            regions: Arc::new(regions),
            aws,
            lease,
        })
    }

    /// The linked-role lifecycle, once the store is ready.
    pub fn lifecycle(&self) -> Result<Lifecycle, Error> {
        Ok(Lifecycle::new(
            self.store()?.clone(),
            self.aws.clone(),
            self.regions.clone(),
            self.lease,
        ))
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

/// Runs a handler in its request's span, and turns its error into a status
/// (logging it once, here, where it is handled).
pub async fn handle<T, F>(ctx: &RequestContext, work: F) -> Result<Response<T>, Status>
where
    F: std::future::Future<Output = Result<T, Error>>,
{
    let span = ctx.span.clone();
    match work.instrument(span.clone()).await {
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
