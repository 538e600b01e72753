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
//!   log filter (`SLRGOV_LOG`) does not thin the traces out; the sampler
//!   ([`sampler`], `OTEL_TRACES_SAMPLER`) does.
//! - **Metrics** (same endpoint, or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`),
//!   exported every `OTEL_METRIC_EXPORT_INTERVAL` ms (default 60 s):
//!   `rpc.server.call.duration` by service, method and status code;
//!   `slrgov.aws.calls`, `slrgov.aws.throttles`, `slrgov.aws.retries`;
//!   `slrgov.linked_roles` by state; `slrgov.workflows.in_flight` and
//!   `slrgov.workflows.oldest_age` by kind.
//!
//! - **Logs over OTLP** (same endpoint, or
//!   `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`; `OTEL_LOGS_EXPORTER=none` keeps them
//!   on stderr only): every event the log filter lets through also goes out
//!   as an OTLP log record ([`otlp_logs`]), with the trace and span ids of
//!   the span it was written in. The same events as stderr, so the same
//!   redaction: nothing that stderr leaves out is exported.
//!
//! The resource comes from `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`
//! (`service.name` defaults to `slr-governor`). Only OTLP over gRPC is built
//! in: another `OTEL_EXPORTER_OTLP_PROTOCOL` stops the server at start
//! rather than exporting nothing.

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry};

use crate::config::LogFormat;

mod gauges;
mod logs;
mod otlp_logs;
mod rpc;
mod sampler;
mod unsampled;

pub use gauges::spawn_gauges;
use logs::JsonLine;
pub use rpc::{TelemetryLayer, TelemetryService, request_span};
pub(crate) use sampler::sample_rpc;
pub use unsampled::UNSAMPLED_TARGET;

/// The name of the server span of an RPC (and of nothing else): the handlers
/// find it by this name and use it as their request's span.
pub const RPC_SPAN: &str = "grpc";

/// The endpoint variables that turn the OTLP export on.
const ENDPOINT_VARS: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
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
    logger: Option<opentelemetry_sdk::logs::SdkLoggerProvider>,
}

pub(crate) fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// True when the OTLP export is configured (and not disabled with
/// `OTEL_SDK_DISABLED=true`).
pub(crate) fn export_enabled() -> bool {
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

/// True for the AWS SDK's TRACE events and spans (targets `aws_*`): they
/// print whole requests and responses as sent and received (`transmitting
/// request`, `received response from service`, `signing request`), and an
/// STS AssumeRole request carries the account's ExternalId in its body. No
/// filter lets them through, `SLRGOV_LOG=trace` included; the SDK's DEBUG
/// events (attempts, retries, timeouts) stay available.
fn is_aws_wire_trace(meta: &tracing::Metadata<'_>) -> bool {
    *meta.level() == tracing::Level::TRACE && meta.target().starts_with("aws_")
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
        if is_aws_wire_trace(meta) {
            tracing::subscriber::Interest::never()
        } else if self.traces(meta) {
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
        !is_aws_wire_trace(meta)
            && (self.traces(meta) || tracing_subscriber::Layer::<S>::enabled(&self.logs, meta, cx))
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

/// The OTLP pipelines: traces and metrics (registered as the global
/// providers), and logs unless `OTEL_LOGS_EXPORTER=none`.
type Pipelines = (
    SdkTracerProvider,
    SdkMeterProvider,
    Option<opentelemetry_sdk::logs::SdkLoggerProvider>,
);

fn pipelines() -> Result<Pipelines, String> {
    if let Some(protocol) = var("OTEL_EXPORTER_OTLP_PROTOCOL")
        && protocol != "grpc"
    {
        return Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported: this build exports OTLP over gRPC only (unset it, or set it to grpc)"
        ));
    }
    let logger_provider = otlp_logs::provider(&resource())?;
    let resource = resource();
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| format!("cannot set up the OTLP trace exporter: {e}"))?;
    let sampler = sampler::Sampler::from_env()?;
    sampler::install(sampler.clone());
    let tracer_provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
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
    Ok((tracer_provider, meter_provider, logger_provider))
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
        let otel = pipelines.as_ref().map(|(tracer, _, _)| {
            unsampled::SampledOnly::new(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer.tracer("slr-governor"))
                    .with_location(false)
                    .with_threads(false),
            )
        });
        // After the trace layer: by the time an event reaches the log
        // bridge, entering its span has made the span's OpenTelemetry
        // context current, and the record takes its trace and span ids.
        let otlp_logs = pipelines
            .as_ref()
            .and_then(|(_, _, logger)| logger.as_ref())
            .map(otlp_logs::OtlpLogs::new);
        tracing_subscriber::registry()
            .with(gate)
            .with(logs)
            .with(otel)
            .with(otlp_logs)
            .init();
        let Some((tracer, meter, logger)) = pipelines else {
            return Ok(Telemetry::default());
        };
        tracing::info!(
            endpoint = var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default(),
            logs = logger.is_some(),
            "OpenTelemetry export is on (OTLP over gRPC)"
        );
        Ok(Telemetry {
            tracer: Some(tracer),
            meter: Some(meter),
            logger,
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
        // Last: the two flushes above may still log.
        if let Some(logger) = self.logger
            && let Err(error) = logger.shutdown()
        {
            eprintln!("slr-governor: flushing the logs failed: {error}");
        }
    }
}
