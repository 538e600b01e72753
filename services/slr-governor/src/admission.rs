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
//! - **Per-caller concurrency limit.** One principal runs at most
//!   `SLRGOV_MAX_CONCURRENT_REQUESTS_PER_CALLER` RPCs at once (by default an
//!   eighth of the pool); one more is RESOURCE_EXHAUSTED /
//!   `CALLER_CONCURRENCY_LIMITED` with a RetryInfo, so one greedy or slow
//!   tenant cannot fill the pool and starve the others.
//! - **Request body timeout.** Every request, health and reflection
//!   included, must have sent its whole body within
//!   `SLRGOV_REQUEST_BODY_TIMEOUT` (a reflection stream, the one client
//!   stream, within the request timeout of its start): a caller that
//!   trickles its body is cut off with DEADLINE_EXCEEDED /
//!   `REQUEST_BODY_TIMEOUT` and gives its slot back, rather than holding it
//!   for the whole request timeout.
//!
//! The layer sits inside the caller layer, so unauthenticated and
//! rate-limited requests are refused before they take a slot.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use slrgov_domain::Caller;
use tokio::sync::Semaphore;
use tonic::codegen::http;
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use crate::request::{CorrelationId, Deadline, is_open_path};
use crate::status::ERROR_DOMAIN;

/// How long a refused caller is told to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The limits the admission layer applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// RPCs served at once (health and reflection not counted).
    pub max_concurrent: u32,
    /// RPCs one principal may have in flight at once.
    pub max_per_caller: u32,
    /// The longest an RPC may run.
    pub request_timeout: Duration,
    /// The longest a request's body may take to arrive.
    pub body_timeout: Duration,
}

/// The admission layer.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    permits: Arc<Semaphore>,
    limits: Limits,
    /// RPCs in flight per principal; an entry is removed when it drops to
    /// zero, so the map holds only callers with work in flight.
    in_flight: Arc<Mutex<HashMap<String, u32>>>,
}

impl AdmissionLayer {
    /// The layer applying `limits`.
    pub fn new(limits: Limits) -> Self {
        AdmissionLayer {
            permits: Arc::new(Semaphore::new(limits.max_concurrent as usize)),
            limits,
            in_flight: Arc::default(),
        }
    }

    /// A slot of `principal`'s own allowance, or `None` when it has
    /// `max_per_caller` RPCs in flight already.
    fn caller_slot(&self, principal: &str) -> Option<CallerSlot> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let count = in_flight.entry(principal.to_owned()).or_insert(0);
        if *count >= self.limits.max_per_caller {
            return None;
        }
        *count += 1;
        Some(CallerSlot {
            in_flight: self.in_flight.clone(),
            principal: principal.to_owned(),
        })
    }
}

/// One RPC of a principal in flight; given back when dropped.
struct CallerSlot {
    in_flight: Arc<Mutex<HashMap<String, u32>>>,
    principal: String,
}

impl Drop for CallerSlot {
    fn drop(&mut self) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = in_flight.get_mut(&self.principal) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_flight.remove(&self.principal);
            }
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
    const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");
    let value = headers.get(GRPC_TIMEOUT)?.to_str().ok()?;
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

/// A refusal answered by a layer, with its ErrorInfo reason, an optional
/// RetryInfo and the request's id.
pub(crate) fn refusal(
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

/// The timeout of a request: the layer's, or the client's `grpc-timeout`
/// if that is shorter, answered a little early (a tenth, at most 50 ms) so
/// that the client gets the server's DEADLINE_EXCEEDED with its details
/// rather than its own bare CANCELLED at the deadline itself.
fn request_timeout(headers: &http::HeaderMap, limit: Duration) -> Duration {
    grpc_timeout(headers).map_or(limit, |t| {
        let early = (t / 10).min(Duration::from_millis(50));
        t.saturating_sub(early)
            .max(Duration::from_millis(1))
            .min(limit)
    })
}

impl<S, B> Service<http::Request<B>> for Admission<S>
where
    S: Service<http::Request<TimedBody<B>>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let limits = self.layer.limits;
        // (A `Uri` clone shares its bytes: no copy per request.)
        let uri = request.uri().clone();
        let path = uri.path();
        let correlation_id = request
            .extensions()
            .get::<CorrelationId>()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        // Every request's body must arrive in time, probes' too; a
        // reflection stream (a client stream that grpcurl keeps open while
        // the call it looked up runs) lives at most the request timeout.
        let body_limit = if path.starts_with("/grpc.reflection.") {
            limits.request_timeout
        } else {
            limits.body_timeout
        };
        let mut request =
            request.map(|body| TimedBody::new(body, body_limit, correlation_id.clone()));
        let timeout = request_timeout(request.headers(), limits.request_timeout);
        // Probes and discovery are never shed, and are timed all the same.
        if is_open_path(path) {
            let work = self.inner.call(request);
            return Box::pin(async move {
                match tokio::time::timeout(timeout, work).await {
                    Ok(result) => result,
                    Err(_) => Ok(timed_out(uri.path(), timeout, &correlation_id)),
                }
            });
        }
        // One caller's allowance first: a greedy caller is refused without
        // taking anyone else's slot.
        // (A limit as large as the pool's is no limit of its own.)
        let per_caller = limits.max_per_caller < limits.max_concurrent;
        let principal = per_caller
            .then(|| request.extensions().get::<Arc<Caller>>())
            .flatten()
            .map(|c| c.principal.clone());
        let caller_slot = match principal.as_ref() {
            None => None,
            Some(principal) => match self.layer.caller_slot(principal) {
                Some(slot) => Some(slot),
                None => {
                    tracing::info!(
                        path = %path,
                        principal = %principal,
                        limit = limits.max_per_caller,
                        request_id = %correlation_id,
                        "caller over its concurrency limit: request shed"
                    );
                    let response = refusal(
                        tonic::Code::ResourceExhausted,
                        "CALLER_CONCURRENCY_LIMITED",
                        format!(
                            "this caller already has {} requests in flight, its limit: retry \
                             when one has finished",
                            limits.max_per_caller
                        ),
                        Some(RETRY_AFTER),
                        &correlation_id,
                    );
                    return Box::pin(std::future::ready(Ok(response)));
                }
            },
        };
        let Ok(permit) = self.layer.permits.clone().try_acquire_owned() else {
            tracing::warn!(
                path = %path,
                limit = limits.max_concurrent,
                request_id = %correlation_id,
                "overloaded: request shed"
            );
            let response = refusal(
                tonic::Code::Unavailable,
                "OVERLOADED",
                format!(
                    "the server is serving its limit of {} requests: retry shortly",
                    limits.max_concurrent
                ),
                Some(RETRY_AFTER),
                &correlation_id,
            );
            return Box::pin(std::future::ready(Ok(response)));
        };
        request
            .extensions_mut()
            .insert(Deadline(std::time::Instant::now() + timeout));
        let work = self.inner.call(request);
        Box::pin(async move {
            let _slots = (permit, caller_slot);
            match tokio::time::timeout(timeout, work).await {
                Ok(result) => result,
                Err(_) => Ok(timed_out(uri.path(), timeout, &correlation_id)),
            }
        })
    }
}

/// The answer to a request that ran past its timeout.
fn timed_out(
    path: &str,
    timeout: Duration,
    correlation_id: &str,
) -> http::Response<tonic::body::Body> {
    tracing::warn!(
        path,
        timeout_ms = timeout.as_millis() as u64,
        request_id = %correlation_id,
        "request timed out"
    );
    refusal(
        tonic::Code::DeadlineExceeded,
        "REQUEST_TIMEOUT",
        format!(
            "the request did not finish within {} ms",
            timeout.as_millis()
        ),
        None,
        correlation_id,
    )
}

/// A request body that must end within a time limit: past it, reading it
/// fails with DEADLINE_EXCEEDED / `REQUEST_BODY_TIMEOUT`, which tonic hands
/// to the handler (or the stream) as that status. Once the body has ended
/// the limit no longer applies.
pub struct TimedBody<B> {
    inner: B,
    limit: Duration,
    /// Started at the first poll that finds no data ready.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    deadline: tokio::time::Instant,
    correlation_id: Arc<str>,
    ended: bool,
}

impl<B> TimedBody<B> {
    fn new(inner: B, limit: Duration, correlation_id: Arc<str>) -> Self {
        TimedBody {
            inner,
            limit,
            timer: None,
            deadline: tokio::time::Instant::now() + limit,
            correlation_id,
            ended: false,
        }
    }

    fn expired(&self) -> tonic::Status {
        let mut details = ErrorDetails::new();
        details.set_error_info(
            "REQUEST_BODY_TIMEOUT",
            ERROR_DOMAIN,
            std::collections::HashMap::new(),
        );
        details.set_request_info(self.correlation_id.to_string(), "");
        tonic::Status::with_error_details(
            tonic::Code::DeadlineExceeded,
            format!(
                "the request body did not arrive within {} ms",
                self.limit.as_millis()
            ),
            details,
        )
    }
}

impl<B> http_body::Body for TimedBody<B>
where
    B: http_body::Body + Unpin,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Data = B::Data;
    type Error = tonic::codegen::StdError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.ended = true;
                this.timer = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => {
                if this.inner.is_end_stream() {
                    this.ended = true;
                    this.timer = None;
                }
                Poll::Ready(Some(frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.ended = true;
                        this.timer = None;
                        Poll::Ready(Some(Err(Box::new(this.expired()))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
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
