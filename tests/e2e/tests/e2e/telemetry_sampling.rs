//! Trace sampling (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`) at a
//! real OTLP receiver: a ratio keeps about that share of the traces the
//! service starts, a caller's sampled `traceparent` is followed when the
//! sampler is parent-based and not otherwise, and the RPC histogram counts
//! every call whatever was sampled.

use std::time::Duration;

use slrgov_proto::slrgov::v1 as pb;

use super::support::{Engine, TestDb, TestServer};
use super::telemetry::{Receiver, metric, point, random_hex, spans, traced};

const LIST_REGIONS: &str = "slrgov.v1.RegionService/ListRegions";

/// Starts a server exporting to a new receiver with `sampler`, makes
/// `plain` ListRegions calls without a trace and `from_callers` with a
/// caller's sampled `traceparent`, stops it, and returns the receiver and
/// the callers' trace ids.
async fn run(
    sampler: &[(&str, &str)],
    plain: usize,
    from_callers: usize,
) -> (Receiver, Vec<String>) {
    let receiver = Receiver::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ("OTEL_LOGS_EXPORTER", "none"),
    ];
    env.extend_from_slice(sampler);
    let mut server = TestServer::start_with(&db, &env).await;
    let mut c = server.clients().await;
    for _ in 0..plain {
        c.regions
            .list_regions(pb::ListRegionsRequest::default())
            .await
            .expect("list regions");
    }
    let mut traces = Vec::new();
    for _ in 0..from_callers {
        let trace = random_hex(16);
        c.regions
            .list_regions(traced(
                pb::ListRegionsRequest::default(),
                &trace,
                &random_hex(8),
            ))
            .await
            .expect("list regions");
        traces.push(trace);
    }
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)).await.success());
    (receiver, traces)
}

/// The RPC histogram's count of successful ListRegions calls.
fn counted(receiver: &Receiver) -> Option<f64> {
    point(
        &metric(receiver, "rpc.server.call.duration"),
        &[("rpc.method", "ListRegions"), ("rpc.grpc.status_code", "0")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ratio_samples_the_service_s_traces_and_the_histogram_counts_every_call() {
    // A quarter of the traces the service starts; a caller's sampled trace
    // is always followed.
    let (receiver, callers) = run(
        &[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ],
        100,
        5,
    )
    .await;
    let exported: Vec<_> = spans(&receiver)
        .into_iter()
        .filter(|s| s.name == LIST_REGIONS)
        .collect();
    for trace in &callers {
        assert!(
            exported.iter().any(|s| &s.trace_id == trace),
            "the caller's sampled trace {trace} is followed"
        );
    }
    let own = exported
        .iter()
        .filter(|s| !callers.contains(&s.trace_id))
        .count();
    // 25 expected of 100; the bounds are about four standard deviations.
    assert!(
        (8..=45).contains(&own),
        "{own} of 100 traces kept at a ratio of 0.25"
    );
    assert_eq!(counted(&receiver), Some(105.0), "every call is counted");

    // Not parent-based, at a ratio of 0: not even a caller's sampled trace
    // is kept, and the calls are still counted.
    let (receiver, _) = run(
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ],
        3,
        3,
    )
    .await;
    assert!(
        !spans(&receiver).iter().any(|s| s.name == LIST_REGIONS),
        "a ratio of 0 keeps no trace"
    );
    assert_eq!(counted(&receiver), Some(6.0), "every call is counted");
}

#[tokio::test]
async fn an_unknown_sampler_or_ratio_stops_the_start() {
    let db = TestDb::new(Engine::Sqlite).await;
    for (sampler, arg, says) in [
        (
            "jaeger_remote",
            "",
            "OTEL_TRACES_SAMPLER=jaeger_remote is not supported",
        ),
        (
            "traceidratio",
            "1.5",
            "OTEL_TRACES_SAMPLER_ARG=1.5: expected a ratio",
        ),
    ] {
        let ran = TestServer::run_to_exit(
            &db,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                ("OTEL_TRACES_SAMPLER", sampler),
                ("OTEL_TRACES_SAMPLER_ARG", arg),
            ],
        )
        .await;
        assert!(!ran.status.success(), "{sampler}: {ran:?}");
        let stderr = String::from_utf8_lossy(&ran.stderr);
        assert!(stderr.contains(says), "{sampler}: {stderr}");
    }
}
