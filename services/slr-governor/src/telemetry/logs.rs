//! JSON log lines that carry the OpenTelemetry trace and span ids of the
//! span they were written in, so a log search leads to the trace and back.

use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
// ---------------------------------------------------------------------------
// JSON log lines with trace and span ids

/// One JSON object per event: time, level, target, the event's fields, the
/// fields of the spans it happened in (`span`, innermost wins) and their
/// names (`spans`), and the OpenTelemetry `trace_id` and `span_id`.
pub(super) struct JsonLine;

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
