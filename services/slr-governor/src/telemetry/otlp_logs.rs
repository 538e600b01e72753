//! Log events as OTLP log records (opentelemetry-appender-tracing), beside
//! the lines on stderr.
//!
//! The bridge sits behind the same global filter ([`super::Gate`]) as the
//! stderr layer, so it sees exactly the events stderr prints: the same
//! level filter (`SLRGOV_LOG`), the AWS SDK's wire-level TRACE events never,
//! and no field that the stderr line would not carry (secrets are masked
//! where they are logged, not by the writer). Each record carries the trace
//! and span ids of the span it was written in: the trace layer makes the
//! span's OpenTelemetry context current when the span is entered.

use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use tracing_subscriber::registry::LookupSpan;

use super::var;

/// The crates the export itself runs on. Their events are not exported:
/// exporting a record makes the gRPC client log, which would make another
/// record, and so on (opentelemetry-rust's own advice for this bridge).
const EXPORT_CRATES: &[&str] = &[
    "opentelemetry",
    "tonic",
    "h2",
    "hyper",
    "hyper_util",
    "tower",
];

/// The log provider, or `None` when `OTEL_LOGS_EXPORTER=none`. Any other
/// value than `otlp` or `none` stops the server at start, as an unsupported
/// protocol does.
pub(super) fn provider(
    resource: &opentelemetry_sdk::Resource,
) -> Result<Option<SdkLoggerProvider>, String> {
    match var("OTEL_LOGS_EXPORTER").as_deref().map(str::trim) {
        None | Some("otlp") => {}
        Some("none") => return Ok(None),
        Some(other) => {
            return Err(format!(
                "OTEL_LOGS_EXPORTER={other} is not supported: use otlp (the default when an OTLP endpoint is set) or none"
            ));
        }
    }
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| format!("cannot set up the OTLP log exporter: {e}"))?;
    Ok(Some(
        SdkLoggerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.clone())
            .build(),
    ))
}

/// The bridge, without the export's own events (see [`EXPORT_CRATES`]).
///
/// A wrapper rather than a per-layer filter: per-layer filters are what the
/// global [`super::Gate`] avoids (tokio-rs/tracing#3572).
pub(super) struct OtlpLogs(OpenTelemetryTracingBridge<SdkLoggerProvider, SdkLogger>);

impl OtlpLogs {
    pub(super) fn new(provider: &SdkLoggerProvider) -> OtlpLogs {
        OtlpLogs(OpenTelemetryTracingBridge::new(provider))
    }
}

/// True for an event of a crate the export runs on.
fn from_the_export(target: &str) -> bool {
    EXPORT_CRATES.iter().any(|krate| {
        target
            .strip_prefix(krate)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::") || rest.starts_with('_'))
    })
}

impl<S> tracing_subscriber::Layer<S> for OtlpLogs
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, cx: tracing_subscriber::layer::Context<'_, S>) {
        if !from_the_export(event.metadata().target()) {
            self.0.on_event(event, cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::from_the_export;

    #[test]
    fn the_export_s_own_crates_are_not_exported() {
        for target in [
            "h2",
            "h2::codec",
            "tonic::transport",
            "hyper_util::client",
            "opentelemetry_sdk",
            "opentelemetry_otlp::exporter",
            "tower::buffer",
        ] {
            assert!(from_the_export(target), "{target}");
        }
        for target in [
            "slr_governor::server",
            "slrgov_store",
            "aws_smithy_runtime",
            "h2o",
            "towering",
        ] {
            assert!(!from_the_export(target), "{target}");
        }
    }
}
