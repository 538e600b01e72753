//! Admission: how many RPCs run at once, and for how long.
//!
//! - **Concurrency limit with load shedding.** At most
//!   `SLRGOV_MAX_CONCURRENT_REQUESTS` RPCs run at once; one more is refused
//!   at once with UNAVAILABLE / OVERLOADED and a RetryInfo, rather than
//!   queued without bound (a queue only turns overload into timeouts for
//!   everyone, and hides it from the load balancer). Health and reflection
//!   are not counted: a saturated replica must still answer its probes.
//! - **Per-request timeout.** An RPC runs at most `SLRGOV_REQUEST_TIMEOUT`,
//!   or the client's `grpc-timeout` if that is shorter (answered a little
//!   before the client's deadline, so the client reads the reason); past it
//!   the handler
//!   is dropped (its transaction rolls back; an ensure's claim stays and is
//!   resumed like a crashed one) and the answer is DEADLINE_EXCEEDED /
//!   REQUEST_TIMEOUT.
//!
//! The layer sits inside the caller layer, so unauthenticated and
//! rate-limited requests are refused before they take a slot.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tonic::codegen::http;
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use crate::request::{CorrelationId, Deadline, is_open_path};
use crate::status::ERROR_DOMAIN;

/// How long a refused caller is told to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The admission layer.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    permits: Arc<Semaphore>,
    limit: u32,
    timeout: Duration,
}

impl AdmissionLayer {
    /// At most `limit` RPCs at once, each at most `timeout`.
    pub fn new(limit: u32, timeout: Duration) -> Self {
        AdmissionLayer {
            permits: Arc::new(Semaphore::new(limit as usize)),
            limit,
            timeout,
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AdmissionLayer`] makes.
#[derive(Debug, Clone)]
pub struct Admission<S> {
    inner: S,
    layer: AdmissionLayer,
}

/// A `grpc-timeout` header (`<digits><unit>`, units H M S m u n).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

fn refusal(
    code: tonic::Code,
    reason: &str,
    message: String,
    retry: Option<Duration>,
    correlation_id: &str,
) -> http::Response<tonic::body::Body> {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new());
    if let Some(retry) = retry {
        details.set_retry_info(Some(retry));
    }
    details.set_request_info(correlation_id, "");
    tonic::Status::with_error_details(code, message, details).into_http()
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<http::Request<B>> for Admission<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        // Probes and discovery are never limited.
        if is_open_path(path) {
            return Box::pin(self.inner.call(request));
        }
        let correlation_id = request
            .extensions()
            .get::<CorrelationId>()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        let Ok(permit) = self.layer.permits.clone().try_acquire_owned() else {
            tracing::warn!(
                path,
                limit = self.layer.limit,
                request_id = %correlation_id,
                "overloaded: request shed"
            );
            let response = refusal(
                tonic::Code::Unavailable,
                "OVERLOADED",
                format!(
                    "the server is serving its limit of {} requests: retry shortly",
                    self.layer.limit
                ),
                Some(RETRY_AFTER),
                &correlation_id,
            );
            return Box::pin(std::future::ready(Ok(response)));
        };
        // A client's deadline is answered a little early (a tenth, at most
        // 50 ms), so that the client gets this DEADLINE_EXCEEDED with its
        // details rather than tonic's bare CANCELLED at the deadline itself.
        let timeout = grpc_timeout(request.headers()).map_or(self.layer.timeout, |t| {
            let early = (t / 10).min(Duration::from_millis(50));
            t.saturating_sub(early)
                .max(Duration::from_millis(1))
                .min(self.layer.timeout)
        });
        let path = path.to_owned();
        request
            .extensions_mut()
            .insert(Deadline(std::time::Instant::now() + timeout));
        let work = self.inner.call(request);
        Box::pin(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, work).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(
                        path,
                        timeout_ms = timeout.as_millis() as u64,
                        request_id = %correlation_id,
                        "request timed out"
                    );
                    Ok(refusal(
                        tonic::Code::DeadlineExceeded,
                        "REQUEST_TIMEOUT",
                        format!(
                            "the request did not finish within {} ms",
                            timeout.as_millis()
                        ),
                        None,
                        &correlation_id,
                    ))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        let mut headers = http::HeaderMap::new();
        for (value, expected) in [
            ("2S", Some(Duration::from_secs(2))),
            ("1500m", Some(Duration::from_millis(1500))),
            ("1H", Some(Duration::from_secs(3600))),
            ("10n", Some(Duration::from_nanos(10))),
            ("S", None),
            ("12x", None),
            ("1234567890S", None),
            ("-1S", None),
        ] {
            headers.insert("grpc-timeout", value.parse().expect("header"));
            assert_eq!(grpc_timeout(&headers), expected, "{value}");
        }
    }
}
