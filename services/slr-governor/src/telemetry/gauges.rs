//! Gauges read from the database: linked roles by state, workflows in
//! flight by kind and the age of the oldest, open findings by code and
//! severity, and each account's reconcile lag.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use slrgov_domain::RequestContext;
use slrgov_domain::finding::{FindingCode, Severity};
use slrgov_domain::workflow::WorkflowKind;

use super::{export_enabled, var};

/// The workflow kinds, as the gauges label them (bounded).
const WORKFLOW_KINDS: [&str; 6] = [
    WorkflowKind::Ensure.as_str(),
    WorkflowKind::Retire.as_str(),
    WorkflowKind::Delete.as_str(),
    WorkflowKind::Sync.as_str(),
    WorkflowKind::Reconcile.as_str(),
    WorkflowKind::BatchEnsure.as_str(),
];
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
    // A workflow in flight, by kind (running or unwinding).
    fn kind_of(row: &slrgov_store::GaugeRow) -> Option<&str> {
        (row.kind == "workflow").then_some(row.state.as_str())
    }
    let rows = snapshot.clone();
    let in_flight = meter
        .u64_observable_gauge("slrgov.workflows.in_flight")
        .with_description("Workflows in flight (running or unwinding), by kind")
        .with_unit("{workflow}")
        .with_callback(move |observer| {
            let Ok(rows) = rows.lock() else { return };
            for kind in WORKFLOW_KINDS {
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
            for kind in WORKFLOW_KINDS {
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
    let rows = snapshot.clone();
    let findings = meter
        .u64_observable_gauge("slrgov.findings.open")
        .with_description(
            "Open findings the reconciler stored, by code and severity (every account)",
        )
        .with_unit("{finding}")
        .with_callback(move |observer| {
            let Ok(rows) = rows.lock() else { return };
            // Every pair, so a resolved finding shows as 0 (36 series).
            for code in FindingCode::ALL {
                for severity in Severity::ALL {
                    let state = format!("{code}/{severity}");
                    let count = rows
                        .iter()
                        .filter(|r| r.kind == "finding" && r.state == state)
                        .map(|r| r.count)
                        .sum();
                    observer.observe(
                        count,
                        &[
                            KeyValue::new("code", code.as_str()),
                            KeyValue::new("severity", severity.as_str()),
                        ],
                    );
                }
            }
        })
        .build();
    let rows = snapshot.clone();
    let lag = meter
        .f64_observable_gauge("slrgov.reconcile.lag")
        .with_description(
            "Time since each account's last successful reconcile pass (no series until one succeeded)",
        )
        .with_unit("s")
        .with_callback(move |observer| {
            let Ok(rows) = rows.lock() else { return };
            let now = chrono::Utc::now();
            for row in rows.iter().filter(|r| r.kind == "reconcile") {
                if let Some(at) = row.oldest {
                    let age = (now - at).num_milliseconds().max(0) as f64 / 1000.0;
                    observer.observe(age, &[KeyValue::new("account", row.state.clone())]);
                }
            }
        })
        .build();
    let ctx = RequestContext::for_worker("telemetry");
    let period = gauge_period();
    Some(tokio::spawn(async move {
        // Keep the instruments (and their callbacks) alive with the task.
        let _instruments = (linked_roles, in_flight, oldest, findings, lag);
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
