//! Telemetry: logs always, and OpenTelemetry traces and metrics over OTLP
//! when an endpoint is configured.
//!
//! - **Logs** go to stderr, human-readable by default, one JSON object per
//!   line with `SLRGOV_LOG_FORMAT=json`; a JSON line written inside a traced
//!   span carries its `trace_id` and `span_id`, so a log search leads to the
//!   trace and back.
//! - **Traces** (when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set): a server span per RPC
//!   ([`TelemetryLayer`]) with the `rpc.*` conventions and the gRPC status,
//!   continuing the caller's W3C `traceparent`; below it a client span per
//!   database transaction (`db <operation>`, in the store) and per IAM/STS
//!   call (`IAM GetRole`, in `slrgov-aws`, with the account, the outcome and
//!   the AWS request id). Only the service's own crates make spans: the
//!   log filter (`SLRGOV_LOG`) does not thin the traces out.
//! - **Metrics** (same endpoint, or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`),
//!   exported every `OTEL_METRIC_EXPORT_INTERVAL` ms (default 60 s):
//!   `rpc.server.call.duration` by service, method and status code;
//!   `slrgov.aws.calls`, `slrgov.aws.throttles`, `slrgov.aws.retries`;
//!   `slrgov.linked_roles` by state; `slrgov.workflows.in_flight` and
//!   `slrgov.workflows.oldest_age` by kind.
//!
//! The resource comes from `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`
//! (`service.name` defaults to `slr-governor`). Only OTLP over gRPC is built
//! in: another `OTEL_EXPORTER_OTLP_PROTOCOL` stops the server at start
//! rather than exporting nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use slrgov_domain::RequestContext;
use tonic::codegen::http;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry};

use crate::config::LogFormat;

/// The name of the server span of an RPC (and of nothing else): the handlers
/// find it by this name and use it as their request's span.
pub const RPC_SPAN: &str = "grpc";

/// The endpoint variables that turn the OTLP export on.
const ENDPOINT_VARS: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
];

/// The crates whose spans are exported (everything else's are not).
const TRACED_CRATES: &[&str] = &[
    "slr_governor",
    "slrgov_store",
    "slrgov_aws",
    "slrgov_domain",
];

/// The providers to flush at exit; empty when the export is off.
#[derive(Debug, Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// True when the OTLP export is configured (and not disabled with
/// `OTEL_SDK_DISABLED=true`).
fn export_enabled() -> bool {
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && ENDPOINT_VARS.iter().any(|name| var(name).is_some())
}

/// The resource every span and metric carries: the SDK reads
/// `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`; without a name of
/// the operator's, the service is `slr-governor`.
fn resource() -> opentelemetry_sdk::Resource {
    let named = var("OTEL_SERVICE_NAME").is_some()
        || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attrs| {
            attrs
                .split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        });
    let builder = opentelemetry_sdk::Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if named {
        builder.build()
    } else {
        builder.with_service_name("slr-governor").build()
    }
}

/// The root sampler: every trace, except one that would start at a
/// database call or at a background worker's lifetime span. The first are
/// the worker's polls and the gauge reads (several a second per replica,
/// with nothing to say); the second would be one span as long as the
/// process. A database call inside an RPC or a unit of background work
/// (which starts its own trace) is under that trace's root and follows its
/// decision.
#[derive(Debug, Clone)]
struct NoLoneDbSpans;

impl opentelemetry_sdk::trace::ShouldSample for NoLoneDbSpans {
    fn should_sample(
        &self,
        _parent: Option<&opentelemetry::Context>,
        _trace_id: opentelemetry::trace::TraceId,
        name: &str,
        _kind: &opentelemetry::trace::SpanKind,
        _attributes: &[KeyValue],
        _links: &[opentelemetry::trace::Link],
    ) -> opentelemetry_sdk::trace::SamplingResult {
        use opentelemetry::trace::TraceState;
        use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult};
        SamplingResult {
            decision: if name.starts_with("db ") || name == "worker" {
                SamplingDecision::Drop
            } else {
                SamplingDecision::RecordAndSample
            },
            attributes: Vec::new(),
            trace_state: TraceState::default(),
        }
    }
}

/// The log filter: `SLRGOV_LOG`, or `info`.
fn log_filter() -> EnvFilter {
    EnvFilter::try_from_env(crate::env::LOG).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The one filter of the subscriber, in front of every layer: the events
/// and spans the log filter takes, and, when exporting, the spans of the
/// service's own crates at INFO and above whatever the log filter says (so
/// `SLRGOV_LOG=warn` quietens the logs, not the traces).
///
/// It is a global filter on purpose. Per-layer filters (`with_filter`) hand
/// their decision from `enabled()` to the layer through a thread-local, and
/// a callsite that skips `enabled()` reads what the last call on that thread
/// left there: sqlx's query logger asks `log_enabled!` after every Postgres
/// query, and the next RPC span then went missing from the trace with its
/// children exported as roots (seen here with
/// `SLRGOV_LOG=info,slr_governor=debug`; tokio-rs/tracing#2704, #3572). The
/// telemetry e2e test runs with that filter and a connection per call.
struct Gate {
    logs: EnvFilter,
    spans: Option<tracing_subscriber::filter::Targets>,
}

impl Gate {
    fn traces(&self, meta: &tracing::Metadata<'_>) -> bool {
        meta.is_span()
            && self
                .spans
                .as_ref()
                .is_some_and(|spans| spans.would_enable(meta.target(), meta.level()))
    }
}

impl<S> tracing_subscriber::Layer<S> for Gate
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if self.traces(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing_subscriber::Layer::<S>::register_callsite(&self.logs, meta)
        }
    }

    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        cx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        self.traces(meta) || tracing_subscriber::Layer::<S>::enabled(&self.logs, meta, cx)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        let logs = tracing_subscriber::Layer::<S>::max_level_hint(&self.logs)?;
        Some(match &self.spans {
            Some(_) => logs.max(tracing::level_filters::LevelFilter::INFO),
            None => logs,
        })
    }

    // The log filter follows spans for its span-scoped directives.
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        cx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.logs.on_new_span(attrs, id, cx);
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        cx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        tracing_subscriber::Layer::<S>::on_record(&self.logs, id, values, cx);
    }

    fn on_enter(&self, id: &tracing::span::Id, cx: tracing_subscriber::layer::Context<'_, S>) {
        tracing_subscriber::Layer::<S>::on_enter(&self.logs, id, cx);
    }

    fn on_exit(&self, id: &tracing::span::Id, cx: tracing_subscriber::layer::Context<'_, S>) {
        tracing_subscriber::Layer::<S>::on_exit(&self.logs, id, cx);
    }

    fn on_close(&self, id: tracing::span::Id, cx: tracing_subscriber::layer::Context<'_, S>) {
        tracing_subscriber::Layer::<S>::on_close(&self.logs, id, cx);
    }
}

/// The OTLP trace and metric pipelines, registered as the global providers.
fn pipelines() -> Result<(SdkTracerProvider, SdkMeterProvider), String> {
    if let Some(protocol) = var("OTEL_EXPORTER_OTLP_PROTOCOL")
        && protocol != "grpc"
    {
        return Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported: this build exports OTLP over gRPC only (unset it, or set it to grpc)"
        ));
    }
    let resource = resource();
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| format!("cannot set up the OTLP trace exporter: {e}"))?;
    let tracer_provider = SdkTracerProvider::builder()
        .with_sampler(opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
            NoLoneDbSpans,
        )))
        .with_batch_exporter(spans)
        .with_resource(resource.clone())
        .build();
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| format!("cannot set up the OTLP metric exporter: {e}"))?;
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(opentelemetry_sdk::metrics::PeriodicReader::builder(metrics).build())
        .with_resource(resource)
        .build();
    opentelemetry::global::set_meter_provider(meter_provider.clone());
    opentelemetry::global::set_tracer_provider(tracer_provider.clone());
    Ok((tracer_provider, meter_provider))
}

impl Telemetry {
    /// Installs the log subscriber and, when configured, the OTLP trace and
    /// metric pipelines. Must run inside the Tokio runtime (the exporters'
    /// gRPC channels live on it). An export configuration that cannot work
    /// is an error, so the server stops at start instead of exporting
    /// nothing.
    pub fn init(format: LogFormat) -> Result<Telemetry, String> {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let pipelines = if export_enabled() {
            Some(pipelines()?)
        } else {
            None
        };
        let gate = Gate {
            logs: log_filter(),
            spans: pipelines.as_ref().map(|_| {
                let mut spans = tracing_subscriber::filter::Targets::new();
                for target in TRACED_CRATES {
                    spans = spans.with_target(*target, tracing::Level::INFO);
                }
                spans
            }),
        };
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        type Gated = tracing_subscriber::layer::Layered<Gate, Registry>;
        let logs: Box<dyn tracing_subscriber::Layer<Gated> + Send + Sync> = match format {
            LogFormat::Text => tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .boxed(),
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .fmt_fields(JsonFields::new())
                .event_format(JsonLine)
                .boxed(),
        };
        let otel = pipelines.as_ref().map(|(tracer, _)| {
            tracing_opentelemetry::layer()
                .with_tracer(tracer.tracer("slr-governor"))
                .with_location(false)
                .with_threads(false)
        });
        tracing_subscriber::registry()
            .with(gate)
            .with(logs)
            .with(otel)
            .init();
        let Some((tracer, meter)) = pipelines else {
            return Ok(Telemetry::default());
        };
        tracing::info!(
            endpoint = var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default(),
            "OpenTelemetry export is on (OTLP over gRPC)"
        );
        Ok(Telemetry {
            tracer: Some(tracer),
            meter: Some(meter),
        })
    }

    /// Exports what is buffered and stops the exporters (at exit).
    pub fn shutdown(self) {
        if let Some(tracer) = self.tracer
            && let Err(error) = tracer.shutdown()
        {
            eprintln!("slr-governor: flushing the traces failed: {error}");
        }
        if let Some(meter) = self.meter
            && let Err(error) = meter.shutdown()
        {
            eprintln!("slr-governor: flushing the metrics failed: {error}");
        }
    }
}

// ---------------------------------------------------------------------------
// JSON log lines with trace and span ids

/// One JSON object per event: time, level, target, the event's fields, the
/// fields of the spans it happened in (`span`, innermost wins) and their
/// names (`spans`), and the OpenTelemetry `trace_id` and `span_id`.
struct JsonLine;

/// Collects an event's fields into a JSON object.
struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use serde_json::Value;
        let mut line = serde_json::Map::new();
        line.insert(
            "timestamp".to_owned(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        let metadata = event.metadata();
        line.insert("level".to_owned(), metadata.level().as_str().into());
        line.insert("target".to_owned(), metadata.target().into());
        // The OpenTelemetry ids first, before any span's extensions are
        // borrowed below (reading them takes the same lock).
        let otel = tracing::Span::current().context();
        let span_context = otel.span().span_context().clone();
        let mut fields = serde_json::Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        line.extend(fields);
        if let Some(scope) = ctx.event_scope() {
            let mut names = Vec::new();
            let mut merged = serde_json::Map::new();
            for span in scope.from_root() {
                names.push(Value::from(span.name()));
                let extensions = span.extensions();
                if let Some(Ok(Value::Object(fields))) = extensions
                    .get::<FormattedFields<N>>()
                    .map(|f| serde_json::from_str::<Value>(f.as_str()))
                {
                    merged.extend(fields);
                }
            }
            if !merged.is_empty() {
                line.insert("span".to_owned(), Value::Object(merged));
            }
            line.insert("spans".to_owned(), Value::Array(names));
        }
        if span_context.is_valid() {
            line.insert(
                "trace_id".to_owned(),
                span_context.trace_id().to_string().into(),
            );
            line.insert(
                "span_id".to_owned(),
                span_context.span_id().to_string().into(),
            );
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

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
    service: String,
    method: String,
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
        rpc_instruments().duration.record(
            self.start.elapsed().as_secs_f64(),
            &[
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", self.service.clone()),
                KeyValue::new("rpc.method", self.method.clone()),
                KeyValue::new("rpc.grpc.status_code", i64::from(code)),
            ],
        );
    }

    fn finish_from(&mut self, headers: &http::HeaderMap) -> bool {
        let Some(code) = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
        else {
            return false;
        };
        let message = headers.get("grpc-message").and_then(|v| v.to_str().ok());
        self.finish(code, message);
        true
    }
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
    !path.starts_with("/grpc.health.v1.") && !path.starts_with("/grpc.reflection.")
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
        // The request id first: the caller's `x-request-id` (if short and
        // printable) or a new one, for the span, the logs, the audit trail
        // and the answer's `x-request-id` header.
        let id = crate::caller::correlation_id(request.headers());
        request
            .extensions_mut()
            .insert(crate::caller::CorrelationId(id.clone()));
        let echo = http::HeaderValue::from_str(&id).ok();
        let path = request.uri().path();
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path, ""));
        let (service, method) = (service.to_owned(), method.to_owned());
        let span = if is_traced(path) {
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
            // Continue the caller's trace (W3C `traceparent`).
            let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
                propagator.extract(&HeaderExtractor(request.headers()))
            });
            if parent.span().span_context().is_valid() {
                let _ = span.set_parent(parent);
            }
            span
        } else {
            tracing::Span::none()
        };
        let mut end = CallEnd {
            span: span.clone(),
            start: Instant::now(),
            service,
            method,
            done: false,
        };
        // The layers and the handler below run in the span: the caller
        // layer records the principal and the request id on it, and the
        // handler uses it as its request's span.
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(async move {
            let mut response = future.instrument(end.span.clone()).await?;
            if let Some(echo) = echo {
                response
                    .headers_mut()
                    .insert(crate::caller::REQUEST_ID_HEADER, echo);
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

// ---------------------------------------------------------------------------
// Gauges read from the database

/// The latest gauge rows, read by the metric callbacks.
type Snapshot = Arc<Mutex<Vec<slrgov_store::GaugeRow>>>;

/// How often the gauges are read from the database: as often as they are
/// exported, within 1 s to 60 s.
fn gauge_period() -> Duration {
    let millis = var("OTEL_METRIC_EXPORT_INTERVAL")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(60_000);
    Duration::from_millis(millis.clamp(1_000, 60_000))
}

/// Registers the gauges (linked roles by state, workflows in flight and the
/// age of the oldest) and keeps them fresh from the database until `stop`
/// changes. With several replicas each reports the same totals (read them
/// with `max`, not `sum`).
pub fn spawn_gauges(
    store: Arc<dyn slrgov_store::Store>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if !export_enabled() {
        return None;
    }
    let snapshot: Snapshot = Arc::default();
    let meter = opentelemetry::global::meter("slr-governor");
    let rows = snapshot.clone();
    let linked_roles = meter
        .u64_observable_gauge("slrgov.linked_roles")
        .with_description("Linked roles the service keeps, by state (every account)")
        .with_unit("{role}")
        .with_callback(move |observer| {
            let Ok(rows) = rows.lock() else { return };
            for row in rows.iter().filter(|r| r.kind == "linked_role") {
                observer.observe(row.count, &[KeyValue::new("state", row.state.clone())]);
            }
        })
        .build();
    // A workflow in flight: an ensure (a linked role still CREATING) or a
    // retirement (a running operation).
    let kind_of = |row: &slrgov_store::GaugeRow| match (row.kind.as_str(), row.state.as_str()) {
        ("linked_role", "CREATING") => Some("ensure"),
        ("operation", _) => Some("retire"),
        _ => None,
    };
    let rows = snapshot.clone();
    let in_flight = meter
        .u64_observable_gauge("slrgov.workflows.in_flight")
        .with_description("Workflows in flight: ensures still creating, retirements running")
        .with_unit("{workflow}")
        .with_callback(move |observer| {
            let Ok(rows) = rows.lock() else { return };
            for kind in ["ensure", "retire"] {
                let count = rows
                    .iter()
                    .filter(|r| kind_of(r) == Some(kind))
                    .map(|r| r.count)
                    .sum();
                observer.observe(count, &[KeyValue::new("kind", kind)]);
            }
        })
        .build();
    let rows = snapshot.clone();
    let oldest = meter
        .f64_observable_gauge("slrgov.workflows.oldest_age")
        .with_description("Age of the oldest workflow in flight (0 when none)")
        .with_unit("s")
        .with_callback(move |observer| {
            let Ok(rows) = rows.lock() else { return };
            let now = chrono::Utc::now();
            for kind in ["ensure", "retire"] {
                let age = rows
                    .iter()
                    .filter(|r| kind_of(r) == Some(kind))
                    .filter_map(|r| r.oldest)
                    .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
                    .fold(0.0, f64::max);
                observer.observe(age, &[KeyValue::new("kind", kind)]);
            }
        })
        .build();
    let ctx = RequestContext::for_worker("telemetry");
    let period = gauge_period();
    Some(tokio::spawn(async move {
        // Keep the instruments (and their callbacks) alive with the task.
        let _instruments = (linked_roles, in_flight, oldest);
        loop {
            match store.gauges(&ctx).await {
                Ok(rows) => {
                    if let Ok(mut snapshot) = snapshot.lock() {
                        *snapshot = rows;
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error.message, "cannot read the telemetry gauges")
                }
            }
            tokio::select! {
                _ = stop.changed() => break,
                () = tokio::time::sleep(period) => {}
            }
        }
    }))
}
