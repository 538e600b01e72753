//! OpenTelemetry from a real run: the server exports over OTLP/gRPC to a
//! small collector (`tests/otlp/receiver.py`, Python's grpcio with the
//! opentelemetry-proto services) that writes what it gets to a file. The
//! test drives an ensure against moto (GetRole throttled once by the fault
//! layer) and a NOT_FOUND, both with a W3C `traceparent`, stops the server
//! (which flushes), and reads the spans, the metrics and the JSON logs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use slrgov_proto::slrgov::v1 as pb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::support::{
    Engine, HOME, Moto, TestDb, TestServer, env_refs, instance_id, refusal, workspace,
};

/// The collector: a child process serving OTLP on a free port.
pub(super) struct Receiver {
    _child: tokio::process::Child,
    pub(super) port: u16,
    out: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    pub(super) async fn start() -> Receiver {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("otlp.jsonl");
        let venv_python = workspace().join("tests/.venv/bin/python");
        let python = if venv_python.exists() {
            venv_python
        } else {
            "python3".into()
        };
        let mut child = Command::new(python)
            .arg(workspace().join("tests/otlp/receiver.py"))
            .args(["--port", "0", "--out"])
            .arg(&out)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the OTLP receiver");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the receiver starts within 30 s")
            .expect("read")
            .expect("the receiver prints its port (is opentelemetry-proto installed?)");
        let port = line
            .strip_prefix("listening on ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected receiver output: {line}"));
        Receiver {
            _child: child,
            port,
            out,
            _dir: dir,
        }
    }

    /// Every export request received so far, by signal.
    pub(super) fn exports(&self, signal: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["signal"] == signal)
            .map(|l| l["request"].clone())
            .collect()
    }
}

/// An OTLP attribute list as a map of strings (ints as their decimal).
fn attributes(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| {
            let value = &kv["value"];
            let text = value["stringValue"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| value["intValue"].as_str().map(str::to_owned))
                .or_else(|| value["intValue"].as_i64().map(|v| v.to_string()))
                .or_else(|| value["boolValue"].as_bool().map(|v| v.to_string()))
                .or_else(|| value["doubleValue"].as_f64().map(|v| v.to_string()))?;
            Some((kv["key"].as_str()?.to_owned(), text))
        })
        .collect()
}

/// One exported span.
#[derive(Debug, Clone)]
pub(super) struct Span {
    pub(super) name: String,
    pub(super) kind: String,
    pub(super) trace_id: String,
    pub(super) span_id: String,
    pub(super) parent: String,
    pub(super) status: String,
    pub(super) attrs: BTreeMap<String, String>,
    pub(super) resource: BTreeMap<String, String>,
}

pub(super) fn spans(receiver: &Receiver) -> Vec<Span> {
    let mut all = Vec::new();
    for request in receiver.exports("traces") {
        for rs in request["resourceSpans"].as_array().into_iter().flatten() {
            let resource = attributes(&rs["resource"]["attributes"]);
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    all.push(Span {
                        name: s["name"].as_str().unwrap_or_default().to_owned(),
                        kind: s["kind"].as_str().unwrap_or_default().to_owned(),
                        trace_id: s["traceId"].as_str().unwrap_or_default().to_owned(),
                        span_id: s["spanId"].as_str().unwrap_or_default().to_owned(),
                        parent: s["parentSpanId"].as_str().unwrap_or_default().to_owned(),
                        status: s["status"]["code"].as_str().unwrap_or_default().to_owned(),
                        attrs: attributes(&s["attributes"]),
                        resource: resource.clone(),
                    });
                }
            }
        }
    }
    all
}

/// One exported log record.
#[derive(Debug, Clone)]
struct Record {
    body: String,
    severity: String,
    scope: String,
    trace_id: String,
    span_id: String,
    attrs: BTreeMap<String, String>,
    resource: BTreeMap<String, String>,
}

fn records(receiver: &Receiver) -> Vec<Record> {
    let mut all = Vec::new();
    for request in receiver.exports("logs") {
        for rl in request["resourceLogs"].as_array().into_iter().flatten() {
            let resource = attributes(&rl["resource"]["attributes"]);
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                let scope = sl["scope"]["name"].as_str().unwrap_or_default();
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    all.push(Record {
                        body: r["body"]["stringValue"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        severity: r["severityText"].as_str().unwrap_or_default().to_owned(),
                        scope: scope.to_owned(),
                        trace_id: r["traceId"].as_str().unwrap_or_default().to_owned(),
                        span_id: r["spanId"].as_str().unwrap_or_default().to_owned(),
                        attrs: attributes(&r["attributes"]),
                        resource: resource.clone(),
                    });
                }
            }
        }
    }
    all
}

/// The latest data points of metric `name` (cumulative: the last export
/// holds the totals), as (attributes, value or histogram count).
pub(super) fn metric(receiver: &Receiver, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut latest = Vec::new();
    for request in receiver.exports("metrics") {
        for rm in request["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    if m["name"] != name {
                        continue;
                    }
                    let points = ["sum", "gauge", "histogram"]
                        .iter()
                        .find_map(|k| m[*k]["dataPoints"].as_array())
                        .cloned()
                        .unwrap_or_default();
                    latest = points
                        .iter()
                        .map(|p| {
                            let number = |v: &Value| {
                                v.as_f64()
                                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                            };
                            let value = number(&p["asInt"])
                                .or_else(|| number(&p["asDouble"]))
                                .or_else(|| number(&p["count"]))
                                .unwrap_or(0.0);
                            (attributes(&p["attributes"]), value)
                        })
                        .collect();
                }
            }
        }
    }
    latest
}

/// The value of the point whose attributes include all of `want`.
pub(super) fn point(
    points: &[(BTreeMap<String, String>, f64)],
    want: &[(&str, &str)],
) -> Option<f64> {
    points
        .iter()
        .find(|(attrs, _)| {
            want.iter()
                .all(|(k, v)| attrs.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| *v)
}

pub(super) fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// A request that continues the trace `trace_id` from the span `parent`.
pub(super) fn traced<T>(message: T, trace_id: &str, parent: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent}-01").parse().expect("ascii"),
    );
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_metrics_and_logs_reach_an_otlp_collector() {
    let receiver = Receiver::start().await;
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let mut env = moto.env();
    env.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_SERVICE_NAME", "slrgov-e2e".to_owned()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=test".to_owned(),
        ),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1000".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
        ("SLRGOV_LOG_FORMAT", "json".to_owned()),
        // GetRole is throttled once: the ensure retries it.
        (
            "SLRGOV_TEST_IAM_FAULTS",
            serde_json::json!({"throttle": {"get_role": 1}}).to_string(),
        ),
    ]);
    let mut server = TestServer::start_with(&db, &env_refs(&env)).await;
    let mut c = server.clients().await;

    let id = c.register_legacy_instance(&moto, HOME, "us-east-1").await;

    // A connection of its own for each call, as grpcurl and most
    // automation make them: the server then serves each on a fresh task.
    let mut c = server.clients().await;
    // The ensure continues the caller's trace.
    let (ensure_trace, ensure_parent) = (random_hex(16), random_hex(8));
    let mut ensure = traced(
        pb::EnsureLinkedRoleRequest {
            name: format!("accounts/{HOME}/instances/{id}/linkedRole"),
            ..Default::default()
        },
        &ensure_trace,
        &ensure_parent,
    );
    ensure.metadata_mut().insert(
        "x-request-id",
        "req-telemetry-ensure".parse().expect("ascii"),
    );
    let answer = c
        .linked_roles
        .ensure_linked_role(ensure)
        .await
        .expect("ensure");
    // The answer echoes the request id.
    assert_eq!(
        answer
            .metadata()
            .get("x-request-id")
            .map(|v| v.to_str().ok()),
        Some(Some("req-telemetry-ensure"))
    );
    let role = answer.into_inner();
    assert!(!role.role_arn.is_empty());
    // A NOT_FOUND: the caller's mistake, not a server error.
    let mut c = server.clients().await;
    let (missing_trace, missing_parent) = (random_hex(16), random_hex(8));
    let missing = c
        .instances
        .get_instance(traced(
            pb::GetInstanceRequest {
                name: format!("accounts/{HOME}/instances/{}", instance_id()),
            },
            &missing_trace,
            &missing_parent,
        ))
        .await
        .expect_err("an unknown instance");
    assert_eq!(refusal(&missing).code, tonic::Code::NotFound);
    // A refusal carries the request id too (here one the server made).
    let missing_id = missing
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("the refusal names its request id")
        .to_owned();

    // Let the gauges be read and exported at least once after the ensure
    // (both every second here), then stop: the exit flushes the rest.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)).await.success());
    let log = server.log();
    // Shown only when the test fails.
    eprintln!("server log:\n{log}");
    eprintln!(
        "received:\n{}",
        std::fs::read_to_string(&receiver.out).unwrap_or_default()
    );

    // --- Traces -----------------------------------------------------------
    let all = spans(&receiver);
    assert!(!all.is_empty(), "no spans were exported");
    let ensure_rpc: Vec<&Span> = all
        .iter()
        .filter(|s| s.name == "slrgov.v1.LinkedRoleService/EnsureLinkedRole")
        .collect();
    assert_eq!(
        ensure_rpc.len(),
        1,
        "one server span per RPC: {:#?}",
        all.iter()
            .map(|s| (&s.name, &s.kind, &s.trace_id))
            .collect::<Vec<_>>()
    );
    let rpc = ensure_rpc[0];
    assert_eq!(rpc.kind, "SPAN_KIND_SERVER");
    assert_eq!(rpc.trace_id, ensure_trace, "the caller's trace continues");
    assert_eq!(rpc.parent, ensure_parent, "the caller's span is the parent");
    for (key, value) in [
        ("rpc.system", "grpc"),
        ("rpc.service", "slrgov.v1.LinkedRoleService"),
        ("rpc.method", "EnsureLinkedRole"),
        ("rpc.grpc.status_code", "0"),
        ("enduser.id", "local-operator"),
    ] {
        assert_eq!(
            rpc.attrs.get(key).map(String::as_str),
            Some(value),
            "{key}: {rpc:#?}"
        );
    }
    assert_eq!(
        rpc.attrs.get("request_id").map(String::as_str),
        Some("req-telemetry-ensure")
    );
    assert_eq!(
        rpc.resource.get("service.name").map(String::as_str),
        Some("slrgov-e2e")
    );
    assert_eq!(
        rpc.resource
            .get("deployment.environment.name")
            .map(String::as_str),
        Some("test")
    );

    // Every span of the ensure's trace hangs under its server span.
    let trace: Vec<&Span> = all.iter().filter(|s| s.trace_id == ensure_trace).collect();
    let by_id: HashMap<&str, &Span> = trace.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    for span in &trace {
        let mut at = *span;
        let mut hops = 0;
        while at.span_id != rpc.span_id {
            at = by_id
                .get(at.parent.as_str())
                .unwrap_or_else(|| panic!("{} is not under the RPC span", span.name));
            hops += 1;
            assert!(hops < 16);
        }
    }
    let names: HashSet<&str> = trace.iter().map(|s| s.name.as_str()).collect();
    // Database transactions, as client spans of the engine.
    let db_spans: Vec<&&Span> = trace.iter().filter(|s| s.name.starts_with("db ")).collect();
    assert!(
        names.contains("db linked_role_begin_ensure")
            && names.contains("db workflow_save")
            && names.contains("db linked_role_activate"),
        "the ensure's transactions: {names:?}"
    );
    for span in &db_spans {
        assert_eq!(span.kind, "SPAN_KIND_CLIENT");
        assert_eq!(
            span.attrs.get("db.system.name").map(String::as_str),
            Some("postgresql")
        );
    }
    // AWS calls, with account, outcome and AWS request id.
    let call = |name: &str, outcome: &str| {
        trace
            .iter()
            .find(|s| {
                s.name == name
                    && s.attrs.get("slrgov.aws.outcome").map(String::as_str) == Some(outcome)
            })
            .unwrap_or_else(|| panic!("no `{name}` span with outcome {outcome}: {names:?}"))
    };
    let create = call("IAM CreateServiceLinkedRole", "OK");
    assert_eq!(create.kind, "SPAN_KIND_CLIENT");
    assert_eq!(
        create.attrs.get("cloud.account.id").map(String::as_str),
        Some(HOME)
    );
    assert_eq!(
        create.attrs.get("rpc.system").map(String::as_str),
        Some("aws-api")
    );
    assert!(
        create
            .attrs
            .get("aws.request_id")
            .is_some_and(|id| !id.is_empty()),
        "moto's request id: {create:#?}"
    );
    let sts = call("STS GetCallerIdentity", "OK");
    assert_eq!(
        sts.attrs.get("cloud.account.id").map(String::as_str),
        Some(HOME)
    );
    let throttled = call("IAM GetRole", "Throttling");
    assert_eq!(throttled.status, "STATUS_CODE_ERROR");
    call("IAM GetRole", "OK");

    // The NOT_FOUND: its code, and not marked as a server error.
    let not_found = all
        .iter()
        .find(|s| s.trace_id == missing_trace && s.kind == "SPAN_KIND_SERVER")
        .expect("the GetInstance server span");
    assert_eq!(not_found.name, "slrgov.v1.InstanceService/GetInstance");
    assert_eq!(not_found.parent, missing_parent);
    assert_eq!(
        not_found
            .attrs
            .get("rpc.grpc.status_code")
            .map(String::as_str),
        Some("5")
    );
    assert_ne!(not_found.status, "STATUS_CODE_ERROR");
    assert_eq!(not_found.attrs.get("request_id"), Some(&missing_id));
    // Health checks are not traced.
    assert!(!all.iter().any(|s| s.name.starts_with("grpc.health")));

    // --- Metrics ----------------------------------------------------------
    let durations = metric(&receiver, "rpc.server.call.duration");
    let ensure_count = point(
        &durations,
        &[
            ("rpc.method", "EnsureLinkedRole"),
            ("rpc.grpc.status_code", "0"),
        ],
    );
    assert_eq!(ensure_count, Some(1.0), "{durations:#?}");
    assert_eq!(
        point(
            &durations,
            &[("rpc.method", "GetInstance"), ("rpc.grpc.status_code", "5")]
        ),
        Some(1.0)
    );
    let calls = metric(&receiver, "slrgov.aws.calls");
    assert_eq!(
        point(
            &calls,
            &[
                ("aws.operation", "CreateServiceLinkedRole"),
                ("outcome", "OK")
            ]
        ),
        Some(1.0),
        "{calls:#?}"
    );
    assert!(
        point(
            &calls,
            &[("aws.operation", "GetRole"), ("outcome", "Throttling")]
        ) >= Some(1.0)
    );
    assert!(
        point(
            &calls,
            &[
                ("aws.service", "sts"),
                ("aws.operation", "GetCallerIdentity")
            ]
        ) >= Some(1.0)
    );
    let throttles = metric(&receiver, "slrgov.aws.throttles");
    assert!(
        point(&throttles, &[("aws.operation", "GetRole")]) >= Some(1.0),
        "{throttles:#?}"
    );
    let retries = metric(&receiver, "slrgov.aws.retries");
    assert!(
        point(&retries, &[("aws.operation", "GetRole")]) >= Some(1.0),
        "{retries:#?}"
    );
    let roles = metric(&receiver, "slrgov.linked_roles");
    assert_eq!(
        point(&roles, &[("state", "ACTIVE")]),
        Some(1.0),
        "{roles:#?}"
    );
    let in_flight = metric(&receiver, "slrgov.workflows.in_flight");
    assert_eq!(
        point(&in_flight, &[("kind", "ensure")]),
        Some(0.0),
        "{in_flight:#?}"
    );
    assert_eq!(point(&in_flight, &[("kind", "retire")]), Some(0.0));
    let age = metric(&receiver, "slrgov.workflows.oldest_age");
    assert_eq!(point(&age, &[("kind", "retire")]), Some(0.0), "{age:#?}");

    // --- Logs -------------------------------------------------------------
    // JSON lines; those written during the ensure carry its trace id and
    // the id of a span of that trace.
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    assert!(lines.len() >= 3, "JSON log lines: {log}");
    let in_trace: Vec<&Value> = lines
        .iter()
        .filter(|l| l["trace_id"] == ensure_trace.as_str())
        .collect();
    assert!(
        !in_trace.is_empty(),
        "no log line carries the ensure's trace id:\n{log}"
    );
    for line in in_trace {
        let span_id = line["span_id"].as_str().unwrap_or_default();
        assert!(
            by_id.contains_key(span_id),
            "span_id {span_id} is not in the trace: {line}"
        );
        assert!(line["level"].is_string() && line["timestamp"].is_string());
        // The logs see the same spans: the RPC's fields are on the line.
        assert_eq!(line["span"]["rpc.method"], "EnsureLinkedRole", "{line}");
        assert_eq!(line["span"]["request_id"], "req-telemetry-ensure", "{line}");
    }

    // --- Logs over OTLP ---------------------------------------------------
    // The same events as stderr, as OTLP log records of the same resource.
    let exported = records(&receiver);
    assert!(!exported.is_empty(), "no log records were exported");
    let printed: HashSet<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    for record in &exported {
        assert!(
            printed.contains(record.body.as_str()),
            "an exported record that stderr does not show (the same filter and redaction for both): {record:#?}"
        );
        assert_eq!(
            record.resource.get("service.name").map(String::as_str),
            Some("slrgov-e2e")
        );
        // The export's own crates are not exported (that would loop).
        assert!(
            !["h2", "tonic", "hyper", "opentelemetry"]
                .iter()
                .any(|c| record.scope.starts_with(c)),
            "a record of the export's own crates: {record:#?}"
        );
    }
    let listening = exported
        .iter()
        .find(|r| r.body.starts_with("listening on"))
        .expect("the start's `listening on` record");
    assert_eq!(listening.severity, "INFO");
    assert_eq!(listening.scope, "slr_governor::server");
    // A record written during the ensure carries the ensure's trace id and
    // the id of one of its spans, like the stderr line.
    let ensure_records: Vec<&Record> = exported
        .iter()
        .filter(|r| r.trace_id == ensure_trace)
        .collect();
    assert!(
        !ensure_records.is_empty(),
        "no log record carries the ensure's trace id: {exported:#?}"
    );
    for record in &ensure_records {
        assert!(
            by_id.contains_key(record.span_id.as_str()),
            "span_id {} is not in the trace: {record:#?}",
            record.span_id
        );
    }
    // Every stderr line of the ensure is a record of the ensure.
    for line in lines
        .iter()
        .filter(|l| l["trace_id"] == ensure_trace.as_str())
    {
        let message = line["message"].as_str().unwrap_or_default();
        assert!(
            ensure_records.iter().any(|r| r.body == message),
            "the stderr line {line} has no record in the ensure's trace"
        );
    }
    // The event's own fields are the record's attributes.
    assert_eq!(
        listening.attrs.get("address").map(String::as_str),
        Some(server.addr.to_string().as_str()),
        "{listening:#?}"
    );
}

/// `OTEL_LOGS_EXPORTER=none` keeps the logs on stderr while traces still go
/// out; an exporter the build does not have stops the server at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_logs_can_be_turned_off_and_a_wrong_exporter_is_refused() {
    let receiver = Receiver::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ("OTEL_LOGS_EXPORTER", "none"),
    ];
    let mut server = TestServer::start_with(&db, &env).await;
    let mut c = server.clients().await;
    c.regions
        .list_regions(pb::ListRegionsRequest::default())
        .await
        .expect("list regions");
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)).await.success());
    assert!(
        spans(&receiver)
            .iter()
            .any(|s| s.name == "slrgov.v1.RegionService/ListRegions"),
        "traces still go out"
    );
    assert!(
        receiver.exports("logs").is_empty(),
        "OTEL_LOGS_EXPORTER=none exported logs"
    );
    assert!(!server.events_with("listening on").is_empty());

    let refused = TestServer::run_to_exit(
        &db,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_LOGS_EXPORTER", "console"),
        ],
    )
    .await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("OTEL_LOGS_EXPORTER=console is not supported"),
        "{stderr}"
    );
}
