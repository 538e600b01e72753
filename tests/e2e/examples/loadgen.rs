//! A closed-loop gRPC load generator for `slrgov.v1.InstanceService`
//! GetInstance, UpdateInstance and ListInstances, and RegionService.GetRegion,
//! used by `tests/bench/rpc.sh`.
//!
//! ```text
//! loadgen --addr 127.0.0.1:50051 --method get|update|noop|list --concurrency 16 \
//!     --duration 10 --warmup 2 [--token SECRET] [--channels 1] \
//!     [--page-size 100] [--label service] NAME [NAME...]
//! ```
//!
//! NAME is `accounts/{account_id}/instances/{instance_id}` for `get` and
//! `update`, `regions/{region_code}` for `noop` (GetRegion, which the
//! service answers from memory), and a list parent `accounts/{account_id}`
//! for `list`; requests go to the names in turn. `list` asks ListInstances
//! for `--page-size` instances (default 100) and walks the pages: each task
//! sends the `next_page_token` of its last answer, and starts again from the
//! first page after the last one. `--concurrency` requests are kept in flight, spread
//! over `--channels` HTTP/2 connections (tonic channels), each task sending
//! its next request as soon as the last one answered. `--token` is sent as
//! `authorization: Bearer <token>`. UpdateInstance sets `instance_alias`
//! (mask `instance_alias`, no etag, no request id) to a new value each time.
//!
//! Prints one JSON line to stdout: requests completed in the measured
//! window, rps, p50/p90/p99/max latency in microseconds, and the error count.
//! Every error (a non-OK status, a transport error, a timeout, or an OK
//! response that is not the instance asked for or does not carry the alias
//! just written), in the warm-up too, is counted; the first few are printed
//! to stderr, and any error makes the exit status 1: a run with errors
//! measured something else and is invalid.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use slrgov_proto::slrgov::v1 as pb;
use slrgov_proto::slrgov::v1::instance_service_client::InstanceServiceClient;
use slrgov_proto::slrgov::v1::region_service_client::RegionServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Update,
    Noop,
    List,
}

impl Method {
    fn rpc(self) -> &'static str {
        match self {
            Method::Get => "GetInstance",
            Method::Update => "UpdateInstance",
            Method::Noop => "GetRegion",
            Method::List => "ListInstances",
        }
    }
}

struct Args {
    addr: String,
    method: Method,
    concurrency: usize,
    channels: usize,
    duration: Duration,
    warmup: Duration,
    token: Option<String>,
    page_size: i32,
    label: String,
    names: Vec<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen --addr HOST:PORT --method get|update|noop|list [--concurrency 1] \
         [--duration 10] [--warmup 2] [--token SECRET] [--channels 1] [--page-size 100] \
         [--label TEXT] NAME..."
    );
    std::process::exit(2)
}

fn seconds(value: &str) -> Duration {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or_else(|| usage())
}

fn args() -> Args {
    let mut args = Args {
        addr: String::new(),
        method: Method::Get,
        concurrency: 1,
        channels: 1,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        token: std::env::var("SLRGOV_BENCH_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        page_size: 100,
        label: String::new(),
        names: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--addr" => args.addr = value(),
            "--method" => {
                args.method = match value().as_str() {
                    "get" | "GetInstance" => Method::Get,
                    "update" | "UpdateInstance" => Method::Update,
                    "noop" | "GetRegion" => Method::Noop,
                    "list" | "ListInstances" => Method::List,
                    _ => usage(),
                }
            }
            "--concurrency" => args.concurrency = value().parse().unwrap_or_else(|_| usage()),
            "--channels" => args.channels = value().parse().unwrap_or_else(|_| usage()),
            "--duration" => args.duration = seconds(&value()),
            "--warmup" => args.warmup = seconds(&value()),
            "--token" => args.token = Some(value()).filter(|t| !t.is_empty()),
            "--page-size" => args.page_size = value().parse().unwrap_or_else(|_| usage()),
            "--label" => args.label = value(),
            flag if flag.starts_with("--") => usage(),
            _ => args.names.push(arg),
        }
    }
    if args.addr.is_empty()
        || args.names.is_empty()
        || args.concurrency == 0
        || args.channels == 0
        || args.page_size <= 0
        || args.duration.is_zero()
    {
        usage();
    }
    args
}

/// What the run saw, shared by the tasks.
struct Shared {
    next: AtomicUsize,
    errors: AtomicU64,
    /// Distinct alias values for updates.
    sequence: AtomicU64,
}

const SHOWN_ERRORS: u64 = 5;

fn error(shared: &Shared, what: String) {
    let n = shared.errors.fetch_add(1, Ordering::Relaxed);
    if n < SHOWN_ERRORS {
        eprintln!("loadgen: error: {what}");
    }
}

/// A request with the bearer token (when given) and a 10 s deadline.
fn with_auth<T>(
    auth: Option<&MetadataValue<tonic::metadata::Ascii>>,
    mut request: tonic::Request<T>,
) -> tonic::Request<T> {
    if let Some(auth) = auth {
        request.metadata_mut().insert("authorization", auth.clone());
    }
    request.set_timeout(Duration::from_secs(10));
    request
}

/// Runs one request; Err describes what went wrong.
async fn one(
    clients: &mut Clients,
    method: Method,
    name: &str,
    alias: String,
    auth: Option<&MetadataValue<tonic::metadata::Ascii>>,
) -> Result<(), String> {
    let client = &mut clients.instances;
    match method {
        Method::Get => {
            let request = with_auth(
                auth,
                tonic::Request::new(pb::GetInstanceRequest {
                    name: name.to_owned(),
                }),
            );
            let instance = client
                .get_instance(request)
                .await
                .map_err(|s| format!("GetInstance {name}: {:?}: {}", s.code(), s.message()))?
                .into_inner();
            if instance.name != name {
                return Err(format!("GetInstance {name} answered {}", instance.name));
            }
        }
        Method::Update => {
            let request = with_auth(
                auth,
                tonic::Request::new(pb::UpdateInstanceRequest {
                    instance: Some(pb::Instance {
                        name: name.to_owned(),
                        instance_alias: alias.clone(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["instance_alias".to_owned()],
                    }),
                    request_id: String::new(),
                }),
            );
            let instance = client
                .update_instance(request)
                .await
                .map_err(|s| format!("UpdateInstance {name}: {:?}: {}", s.code(), s.message()))?
                .into_inner();
            if instance.name != name || instance.instance_alias != alias {
                return Err(format!(
                    "UpdateInstance {name} answered {} with alias {:?}, not {alias:?}",
                    instance.name, instance.instance_alias
                ));
            }
        }
        Method::Noop => {
            let request = with_auth(
                auth,
                tonic::Request::new(pb::GetRegionRequest {
                    name: name.to_owned(),
                }),
            );
            let region = clients
                .regions
                .get_region(request)
                .await
                .map_err(|s| format!("GetRegion {name}: {:?}: {}", s.code(), s.message()))?
                .into_inner();
            if region.name != name {
                return Err(format!("GetRegion {name} answered {}", region.name));
            }
        }
        Method::List => {
            let page_token = std::mem::take(&mut clients.page_token);
            let first = page_token.is_empty();
            let request = with_auth(
                auth,
                tonic::Request::new(pb::ListInstancesRequest {
                    parent: name.to_owned(),
                    page_size: clients.page_size,
                    page_token,
                    filter: String::new(),
                }),
            );
            let page = client
                .list_instances(request)
                .await
                .map_err(|s| format!("ListInstances {name}: {:?}: {}", s.code(), s.message()))?
                .into_inner();
            // A page before the last one is full; every instance is the
            // parent's.
            let prefix = format!("{name}/instances/");
            if (!page.next_page_token.is_empty()
                && page.instances.len() != clients.page_size as usize)
                || (first && page.instances.is_empty())
                || page.instances.iter().any(|i| !i.name.starts_with(&prefix))
            {
                return Err(format!(
                    "ListInstances {name} answered {} instances (next page token {:?})",
                    page.instances.len(),
                    !page.next_page_token.is_empty()
                ));
            }
            clients.page_token = page.next_page_token;
        }
    }
    Ok(())
}

/// One task's clients (they share its channel) and its place in a list.
struct Clients {
    instances: InstanceServiceClient<Channel>,
    regions: RegionServiceClient<Channel>,
    page_size: i32,
    /// The next page to ask for (`list`); empty: the first.
    page_token: String,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let args = args();
    let auth = args.token.as_ref().map(|token| {
        MetadataValue::try_from(format!("Bearer {token}")).unwrap_or_else(|_| usage())
    });
    let endpoint = Endpoint::from_shared(format!("http://{}", args.addr))
        .unwrap_or_else(|_| usage())
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut channels = Vec::with_capacity(args.channels);
    for _ in 0..args.channels {
        match endpoint.connect().await {
            Ok(channel) => channels.push(channel),
            Err(e) => {
                eprintln!("loadgen: cannot connect to {}: {e}", args.addr);
                std::process::exit(1);
            }
        }
    }

    let shared = Arc::new(Shared {
        next: AtomicUsize::new(0),
        errors: AtomicU64::new(0),
        sequence: AtomicU64::new(0),
    });
    let names: Arc<Vec<String>> = Arc::new(args.names.clone());
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let mut tasks = Vec::with_capacity(args.concurrency);
    for task in 0..args.concurrency {
        let channel = channels[task % channels.len()].clone();
        let mut clients = Clients {
            instances: InstanceServiceClient::new(channel.clone()),
            regions: RegionServiceClient::new(channel),
            page_size: args.page_size,
            page_token: String::new(),
        };
        let shared = shared.clone();
        let names = names.clone();
        let auth = auth.clone();
        let method = args.method;
        let pid = std::process::id();
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u64> = Vec::with_capacity(1 << 16);
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let name = &names[shared.next.fetch_add(1, Ordering::Relaxed) % names.len()];
                let alias = match method {
                    Method::Get | Method::Noop | Method::List => String::new(),
                    Method::Update => format!(
                        "bench-{pid}-{}",
                        shared.sequence.fetch_add(1, Ordering::Relaxed)
                    ),
                };
                let result = one(&mut clients, method, name, alias, auth.as_ref()).await;
                let done = Instant::now();
                match result {
                    Ok(()) => {
                        // Only requests sent after the warm-up and answered
                        // before the end are measured.
                        if sent >= measure_from && done <= end {
                            latencies.push(done.duration_since(sent).as_nanos() as u64);
                        }
                    }
                    Err(what) => error(&shared, what),
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        match task.await {
            Ok(mut l) => latencies.append(&mut l),
            Err(e) => error(&shared, format!("a task failed: {e}")),
        }
    }
    latencies.sort_unstable();
    let errors = shared.errors.load(Ordering::Relaxed);
    let requests = latencies.len();
    let secs = args.duration.as_secs_f64();
    let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
    let line = serde_json::json!({
        "label": args.label,
        "addr": args.addr,
        "method": args.method.rpc(),
        "concurrency": args.concurrency,
        "channels": args.channels,
        "page_size": (args.method == Method::List).then_some(args.page_size),
        "duration_s": secs,
        "warmup_s": args.warmup.as_secs_f64(),
        "requests": requests,
        "rps": (requests as f64 / secs * 10.0).round() / 10.0,
        "p50_us": us(percentile(&latencies, 50.0)),
        "p90_us": us(percentile(&latencies, 90.0)),
        "p99_us": us(percentile(&latencies, 99.0)),
        "max_us": us(latencies.last().copied().unwrap_or(0)),
        "errors": errors,
    });
    println!("{line}");
    if errors > 0 {
        eprintln!(
            "loadgen: {errors} request(s) failed: the run is invalid (first {} shown above)",
            errors.min(SHOWN_ERRORS)
        );
        std::process::exit(1);
    }
    if requests == 0 {
        eprintln!("loadgen: no request completed in the measured window: the run is invalid");
        std::process::exit(1);
    }
}
