//! The server span and the duration of each RPC: a tower layer
//! ([`TelemetryLayer`]) that gives every request its id, a server span
//! continuing the caller's W3C `traceparent`, and the
//! `rpc.server.call.duration` metric, ended when the gRPC status goes by.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt;
use tonic::codegen::http;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::RPC_SPAN;
// ---------------------------------------------------------------------------
// The server span and the duration of each RPC

/// The RPC metric instruments.
struct RpcInstruments {
    duration: Histogram<f64>,
}

fn rpc_instruments() -> &'static RpcInstruments {
    static INSTRUMENTS: std::sync::OnceLock<RpcInstruments> = std::sync::OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter("slr-governor");
        RpcInstruments {
            duration: meter
                .f64_histogram("rpc.server.call.duration")
                .with_description(
                    "How long the server took to answer an RPC, by method and gRPC status code",
                )
                .with_unit("s")
                .with_boundaries(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0,
                ])
                .build(),
        }
    })
}

/// Reads the W3C trace context out of the request headers.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

// Header names parsed once, at compile time.
const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: http::HeaderName = http::HeaderName::from_static("grpc-message");
const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// True for gRPC codes that mean the server failed (the OpenTelemetry
/// conventions mark only these server spans as errors; a NOT_FOUND is the
/// caller's business).
fn is_server_error(code: i32) -> bool {
    // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
    // DATA_LOSS.
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// Ends an RPC's span and records its duration, once: when the status
/// arrives (in the headers of a trailers-only answer or in the trailers),
/// or when the answer is dropped unfinished (CANCELLED).
struct CallEnd {
    span: tracing::Span,
    start: Instant,
    labels: &'static MethodLabels,
    done: bool,
}

impl CallEnd {
    fn finish(&mut self, code: i32, message: Option<&str>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.span.record("rpc.grpc.status_code", code);
        if is_server_error(code) {
            self.span.record("otel.status_code", "ERROR");
            if let Some(message) = message {
                self.span.record("otel.status_message", message);
            }
        }
        // Static labels: recording allocates nothing once the series exists.
        rpc_instruments().duration.record(
            self.start.elapsed().as_secs_f64(),
            &[
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", self.labels.service),
                KeyValue::new("rpc.method", self.labels.method),
                KeyValue::new("rpc.grpc.status_code", i64::from(code)),
            ],
        );
    }

    fn finish_from(&mut self, headers: &http::HeaderMap) -> bool {
        let Some(code) = headers
            .get(GRPC_STATUS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
        else {
            return false;
        };
        let message = headers.get(GRPC_MESSAGE).and_then(|v| v.to_str().ok());
        self.finish(code, message);
        true
    }
}

/// The metric labels of one method.
#[derive(Debug, PartialEq)]
struct MethodLabels {
    service: &'static str,
    method: &'static str,
}

/// The labels of every path that is not a method the server serves.
static UNKNOWN: MethodLabels = MethodLabels {
    service: "unknown",
    method: "unknown",
};

/// Every method the server serves, by its path without the leading `/`
/// (`package.Service/Method`): read from the descriptor sets it serves
/// (its own API, health), plus reflection. Built once; the names live as
/// long as the process, so a metric label is a static string.
static KNOWN_METHODS: std::sync::LazyLock<
    std::collections::HashMap<&'static str, &'static MethodLabels>,
> = std::sync::LazyLock::new(|| {
    use prost::Message;
    let mut paths: Vec<String> = vec![
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo".to_owned(),
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo".to_owned(),
    ];
    for set in [
        slrgov_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!(
                        "{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    paths
        .into_iter()
        .map(|path| {
            let path: &'static str = Box::leak(path.into_boxed_str());
            let (service, method) = path.split_once('/').unwrap_or((path, ""));
            let labels: &'static MethodLabels =
                Box::leak(Box::new(MethodLabels { service, method }));
            (path, labels)
        })
        .collect()
});

/// The metric labels of a request to `path` (`/package.Service/Method`):
/// as they are for a method the server serves, `unknown` for any other
/// path, so that callers (authenticated or not) cannot mint unbounded
/// metric series.
fn metric_labels(path: &str) -> &'static MethodLabels {
    KNOWN_METHODS
        .get(path.strip_prefix('/').unwrap_or(path))
        .copied()
        .unwrap_or(&UNKNOWN)
}

impl Drop for CallEnd {
    fn drop(&mut self) {
        // The answer was dropped before its status: the client went away.
        self.finish(1, None);
    }
}

/// The response body of a traced RPC: passes every frame through and ends
/// the call when the trailers (with `grpc-status`) go by.
struct StatusBody {
    inner: tonic::body::Body,
    end: CallEnd,
}

impl http_body::Body for StatusBody {
    type Data = tonic::codegen::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.end.finish_from(trailers);
                }
            }
            Poll::Ready(Some(Err(status))) => {
                this.end
                    .finish(status.code() as i32, Some(status.message()));
            }
            // A body that ended without trailers: gRPC says OK only in
            // trailers, so this is a broken answer.
            Poll::Ready(None) => this
                .end
                .finish(2, Some("the answer ended without a status")),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The server span of every RPC and its duration metric (see the module).
#[derive(Debug, Clone, Copy, Default)]
pub struct TelemetryLayer;

impl<S> Layer<S> for TelemetryLayer {
    type Service = TelemetryService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TelemetryService { inner }
    }
}

/// The service [`TelemetryLayer`] makes.
#[derive(Debug, Clone)]
pub struct TelemetryService<S> {
    inner: S,
}

/// Health checks and reflection are measured but not traced: probes every
/// few seconds would bury the traces that matter.
fn is_traced(path: &str) -> bool {
    !crate::request::is_open_path(path)
}

impl<S, B> Service<http::Request<B>> for TelemetryService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let start = Instant::now();
        // The request id first: the caller's `x-request-id` (if short and
        // printable) or a new one, for the span, the logs, the audit trail
        // and the answer's `x-request-id` header.
        let id = crate::request::correlation_id(request.headers());
        let echo = http::HeaderValue::from_str(&id).ok();
        let path = request.uri().path();
        let labels = metric_labels(path);
        let span = if is_traced(path) {
            let (service, method) = path
                .trim_start_matches('/')
                .split_once('/')
                .unwrap_or((path, ""));
            // The caller's W3C `traceparent`, read only when sent.
            let parent = request
                .headers()
                .contains_key(TRACEPARENT)
                .then(|| {
                    opentelemetry::global::get_text_map_propagator(|propagator| {
                        propagator.extract(&HeaderExtractor(request.headers()))
                    })
                })
                .filter(|parent| parent.span().span_context().is_valid());
            let sampled = match &parent {
                Some(parent) => super::sample_rpc(parent.span().span_context()),
                None => super::sample_rpc(&opentelemetry::trace::SpanContext::NONE),
            };
            if sampled {
                let span = tracing::info_span!(
                    RPC_SPAN,
                    otel.name = %format_args!("{service}/{method}"),
                    otel.kind = "server",
                    otel.status_code = tracing::field::Empty,
                    otel.status_message = tracing::field::Empty,
                    rpc.system = "grpc",
                    rpc.service = %service,
                    rpc.method = %method,
                    rpc.grpc.status_code = tracing::field::Empty,
                    enduser.id = tracing::field::Empty,
                    request_id = %id,
                );
                // Continue the caller's trace.
                if let Some(parent) = parent {
                    let _ = span.set_parent(parent);
                }
                span
            } else {
                // Dropped by the sampler: a span for the logs only, which
                // the trace layer never sees (`super::unsampled`).
                tracing::info_span!(
                    target: super::UNSAMPLED_TARGET,
                    RPC_SPAN,
                    rpc.service = %service,
                    rpc.method = %method,
                    enduser.id = tracing::field::Empty,
                    request_id = %id,
                )
            }
        } else {
            tracing::Span::none()
        };
        request
            .extensions_mut()
            .insert(crate::request::CorrelationId(id.into()));
        let mut end = CallEnd {
            span,
            start,
            labels,
            done: false,
        };
        // The layers and the handler below run in the span: the caller
        // layer records the principal and the request id on it, and the
        // handler uses it as its request's span.
        let future = end.span.in_scope(|| self.inner.call(request));
        Box::pin(async move {
            let mut response = future.instrument(end.span.clone()).await?;
            if let Some(echo) = echo {
                response
                    .headers_mut()
                    .insert(crate::request::REQUEST_ID, echo);
            }
            if end.finish_from(response.headers()) {
                return Ok(response);
            }
            Ok(response.map(|inner| tonic::body::Body::new(StatusBody { inner, end })))
        })
    }
}

/// The span of a request's work: the RPC's server span when the request
/// came through [`TelemetryLayer`], else a new one.
pub fn request_span(method: &'static str, principal: &str, request_id: &str) -> tracing::Span {
    let current = tracing::Span::current();
    if current.metadata().is_some_and(|m| m.name() == RPC_SPAN) {
        return current;
    }
    tracing::info_span!(
        "rpc",
        rpc.method = method,
        principal = %principal,
        request_id = %request_id,
    )
}

#[cfg(test)]
mod tests {
    use super::metric_labels;

    #[test]
    fn unknown_paths_share_one_metric_series() {
        // What the server serves keeps its labels.
        for (service, method) in [
            ("slrgov.v1.InstanceService", "SyncInstances"),
            ("slrgov.v1.LinkedRoleService", "EnsureLinkedRole"),
            ("google.longrunning.Operations", "WaitOperation"),
            ("grpc.health.v1.Health", "Check"),
            (
                "grpc.reflection.v1.ServerReflection",
                "ServerReflectionInfo",
            ),
        ] {
            let labels = metric_labels(&format!("/{service}/{method}"));
            assert_eq!((labels.service, labels.method), (service, method));
        }
        // 10,000 made-up paths, some under a real service: one series.
        let mut series = std::collections::HashSet::new();
        for n in 0..10_000u32 {
            let service = if n % 2 == 0 {
                format!("attacker.Service{n}")
            } else {
                "slrgov.v1.InstanceService".to_owned()
            };
            let labels = metric_labels(&format!("/{service}/Method{n:x}"));
            series.insert((labels.service, labels.method));
        }
        assert_eq!(series, [("unknown", "unknown")].into_iter().collect());
    }
}
