//! The cross-replica IAM rate benchmark (issue 16, item 4), driven by
//! `tests/bench/iam_rate.sh`: N server replicas on one fresh Postgres
//! database, in front of moto, with an "IAM" that throttles each account
//! above the rate the way IAM does, counting every process's calls together
//! (the fault layer's `throttle_above`, a GCRA per account in a Postgres
//! database of its own). For each case (`SLRGOV_RATE_SHARING=local`, each
//! replica its own bucket; `auto`, one bucket per account shared in
//! Postgres) it:
//!
//! 1. registers `ACCOUNTS` fresh accounts (reached through an access role
//!    and an external id, as tenants are) and `INSTANCES` legacy Amazon
//!    Connect instances over them in moto (Connect names no role for a
//!    legacy instance, so each ensure creates one: GetRole, then
//!    CreateServiceLinkedRole, then GetRole to confirm);
//! 2. ensures every instance's linked role through EnsureLinkedRole, spread
//!    over the replicas: per account `IN_FLIGHT` callers at a time, caller k
//!    on replica k mod N; an ensure that fails is counted (by code, and as
//!    throttling when its message says so) and retried after 1 s, as a
//!    client would; one that answers before the role is ACTIVE is polled
//!    until it is;
//! 3. measures the time from the first ensure to the last ACTIVE role, the
//!    floor the rate sets (per account, the IAM calls IAM let through less
//!    the burst, divided by the rate; the slowest account, since accounts
//!    run in parallel), the calls IAM throttled, and the roles in IAM per
//!    instance (a duplicate: more than one).
//!
//! Prints one line per case to stdout, e.g.
//! `case=auto instances=1000 accounts=10 elapsed_s=61.2 floor_s=59.0
//! ratio=1.04 surfaced_throttling=0 surfaced_errors=0 iam_throttled=0
//! iam_calls=3000 duplicate_roles=0`; progress goes to stderr.
//!
//! Settings (environment): `SLRGOV_BENCH_ACCOUNTS` (10),
//! `SLRGOV_BENCH_INSTANCES` (1000, in all), `SLRGOV_BENCH_RATE` (IAM calls
//! per second per account, the service's and IAM's: 5),
//! `SLRGOV_BENCH_BURST` (the service's burst: the rate), `SLRGOV_BENCH_IAM_BURST`
//! (IAM's burst: the service's + 2, room for the network's jitter between a
//! slot and the call's arrival), `SLRGOV_BENCH_REPLICAS` (3),
//! `SLRGOV_BENCH_IN_FLIGHT` (ensures in flight per account: 6),
//! `SLRGOV_BENCH_CASES` ("local auto"; also "batch": one
//! BatchEnsureLinkedRoles over `accounts/-` instead of the callers),
//! `SLRGOV_BENCH_SETUP_CONCURRENCY` (16), `SLRGOV_BENCH_BATCH_CONCURRENCY`
//! (twice the accounts, at most 256), `SLRGOV_BENCH_RECONCILE_INTERVAL`
//! (0: the reconciler off). The rate may be a fraction. The server binary is `SLRGOV_BIN` or target/<profile>/slr-governor,
//! built with the `test-faults` feature.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slrgov_proto::slrgov::v1 as pb;
use slrgov_testkit::{Moto, TestDb, TestServer, env_refs, linked_role_name};

struct Settings {
    accounts: u32,
    instances: u32,
    rate: f64,
    burst: u32,
    iam_burst: u32,
    replicas: usize,
    in_flight: usize,
    cases: Vec<String>,
    setup_concurrency: usize,
    batch_concurrency: usize,
}

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Settings {
        let rate = var("SLRGOV_BENCH_RATE", 5.0f64).max(0.01);
        let burst = var("SLRGOV_BENCH_BURST", rate.ceil() as u32).max(1);
        Settings {
            accounts: var("SLRGOV_BENCH_ACCOUNTS", 10u32).max(1),
            instances: var("SLRGOV_BENCH_INSTANCES", 1000u32).max(1),
            rate,
            burst,
            iam_burst: var("SLRGOV_BENCH_IAM_BURST", burst + 2),
            replicas: var("SLRGOV_BENCH_REPLICAS", 3usize).max(1),
            in_flight: var("SLRGOV_BENCH_IN_FLIGHT", 6usize).max(1),
            cases: var("SLRGOV_BENCH_CASES", "local auto".to_owned())
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            setup_concurrency: var("SLRGOV_BENCH_SETUP_CONCURRENCY", 16usize).max(1),
            batch_concurrency: var(
                "SLRGOV_BENCH_BATCH_CONCURRENCY",
                (2 * var("SLRGOV_BENCH_ACCOUNTS", 10usize)).clamp(1, 256),
            ),
        }
    }
}

/// The access role the service assumes in `account` (moto maps the
/// credentials to the role's account).
fn access_role(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/SlrGovernor")
}

#[derive(Default)]
struct Errors {
    throttling: u64,
    all: u64,
    by_code: BTreeMap<String, u64>,
    first: Vec<String>,
}

impl Errors {
    fn note(&mut self, status: &tonic::Status) {
        self.all += 1;
        let text = format!("{status:?}");
        if text.contains("hrottl") || text.contains("Rate exceeded") {
            self.throttling += 1;
        }
        *self
            .by_code
            .entry(format!("{:?}", status.code()))
            .or_default() += 1;
        if self.first.len() < 3 {
            self.first.push(text.chars().take(400).collect());
        }
    }
}

/// Ensures `name` on `clients` until its role is ACTIVE; errors are noted
/// and retried after 1 s.
async fn ensure_until_active(
    clients: &mut slrgov_testkit::Clients,
    name: &str,
    errors: &Mutex<Errors>,
) {
    let active = pb::linked_role::State::Active as i32;
    loop {
        match clients
            .linked_roles
            .ensure_linked_role(pb::EnsureLinkedRoleRequest {
                name: name.to_owned(),
                ..Default::default()
            })
            .await
        {
            Ok(answer) if answer.get_ref().state == active => return,
            Ok(_) => loop {
                // Answered within the deadline, finishing in the background.
                tokio::time::sleep(Duration::from_millis(200)).await;
                match clients
                    .linked_roles
                    .get_linked_role(pb::GetLinkedRoleRequest {
                        name: name.to_owned(),
                    })
                    .await
                {
                    Ok(role) if role.get_ref().state == active => return,
                    Ok(_) => {}
                    Err(status) => {
                        errors.lock().expect("errors").note(&status);
                        break;
                    }
                }
            },
            Err(status) => {
                errors.lock().expect("errors").note(&status);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn run_case(settings: &Settings, moto: &Arc<Moto>, case: &str, index: usize) -> String {
    let db = TestDb::postgres().await;
    // The bench's "IAM": its throttle's buckets, in a database of its own.
    let iam_db = TestDb::postgres().await;
    let plan = serde_json::json!({
        "throttle_above": {
            "per_second": settings.rate,
            "burst": settings.iam_burst,
            "database_url": iam_db.url,
        }
    })
    .to_string();
    let rate = settings.rate.to_string();
    let burst = settings.burst.to_string();
    let batch_concurrency = settings.batch_concurrency.to_string();
    let reconcile = var("SLRGOV_BENCH_RECONCILE_INTERVAL", "0".to_owned());
    let moto_env = moto.env();
    let mut env = env_refs(&moto_env);
    env.extend_from_slice(&[
        ("SLRGOV_TEST_IAM_FAULTS", plan.as_str()),
        ("SLRGOV_IAM_RATE_PER_ACCOUNT", rate.as_str()),
        ("SLRGOV_IAM_BURST_PER_ACCOUNT", burst.as_str()),
        // Connect (DescribeInstance of each ensure) must not set the floor.
        ("SLRGOV_CONNECT_RATE_PER_ACCOUNT", "1000"),
        (
            "SLRGOV_RATE_SHARING",
            if case == "local" { "local" } else { "auto" },
        ),
        ("SLRGOV_BATCH_CONCURRENCY", batch_concurrency.as_str()),
        // The reconciler off by default: its reads would share each
        // account's bucket (the floor counts them) and lengthen the run.
        ("SLRGOV_RECONCILE_INTERVAL", reconcile.as_str()),
    ]);
    let mut servers = Vec::new();
    for _ in 0..settings.replicas {
        servers.push(TestServer::start_with(&db, &env).await);
    }
    eprintln!("[{case}] {} replicas serving", servers.len());

    // Fresh accounts per case: their roles in IAM are this case's.
    let accounts: Vec<String> = (0..settings.accounts)
        .map(|n| {
            format!(
                "{:012}",
                200_000_000_000u64 + 1000 * index as u64 + u64::from(n)
            )
        })
        .collect();
    let mut admin = servers[0].clients().await;
    for account in &accounts {
        admin
            .accounts
            .create_account(pb::CreateAccountRequest {
                account_id: account.clone(),
                account: Some(pb::Account {
                    access_role_arn: access_role(account),
                    external_id: "bench-external-id".to_owned(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect("create account");
    }
    // Instances round-robin over the accounts, made concurrently.
    let setup_start = Instant::now();
    let slots: Arc<Mutex<VecDeque<String>>> = Arc::new(Mutex::new(
        (0..settings.instances)
            .map(|n| accounts[(n % settings.accounts) as usize].clone())
            .collect(),
    ));
    let made: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..settings.setup_concurrency {
        let slots = slots.clone();
        let made = made.clone();
        let mut clients = servers[0].clients().await;
        let moto = moto.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(account) = slots.lock().expect("slots").pop_front() else {
                    return;
                };
                let id = clients
                    .add_legacy_instance(&moto, &account, Some(&access_role(&account)), "us-east-1")
                    .await;
                made.lock()
                    .expect("made")
                    .entry(account)
                    .or_default()
                    .push(id);
            }
        }));
    }
    for task in tasks {
        task.await.expect("setup task");
    }
    let instances = made.lock().expect("made").clone();
    eprintln!(
        "[{case}] {} instances over {} accounts made in {:.1}s",
        settings.instances,
        settings.accounts,
        setup_start.elapsed().as_secs_f64()
    );

    // The ensures: per account `in_flight` callers, spread over replicas;
    // or (case `batch`) one BatchEnsureLinkedRoles over every account.
    let errors = Arc::new(Mutex::new(Errors::default()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    if case == "batch" {
        batch_until_done(&mut admin, &errors).await;
    }
    for (account, ids) in instances.iter().filter(|_| case != "batch") {
        let queue: Arc<Mutex<VecDeque<String>>> = Arc::new(Mutex::new(
            ids.iter().map(|id| linked_role_name(account, id)).collect(),
        ));
        for k in 0..settings.in_flight {
            let queue = queue.clone();
            let errors = errors.clone();
            let mut clients = servers[k % servers.len()].clients().await;
            tasks.push(tokio::spawn(async move {
                loop {
                    let Some(name) = queue.lock().expect("queue").pop_front() else {
                        return;
                    };
                    ensure_until_active(&mut clients, &name, &errors).await;
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("ensure task");
    }
    let elapsed = start.elapsed().as_secs_f64();

    // What IAM saw.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&iam_db.admin_url)
        .await
        .expect("iam database");
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT account_id, calls, throttled FROM iam_throttle")
            .fetch_all(&mut conn)
            .await
            .expect("iam_throttle");
    let iam_calls: i64 = rows.iter().map(|r| r.1).sum();
    let iam_throttled: i64 = rows.iter().map(|r| r.2).sum();
    let floor = rows
        .iter()
        .map(|(_, calls, _)| (*calls as f64 - f64::from(settings.burst)).max(0.0) / settings.rate)
        .fold(0.0, f64::max);

    // Roles in IAM per instance: legacy roles are named after the instance
    // (`linked_role_name`'s id), so count the Connect roles of each account.
    let mut duplicates = 0i64;
    let mut missing = 0i64;
    for (account, ids) in &instances {
        let iam = moto.iam(Some(&access_role(account))).await;
        let mut names = Vec::new();
        let mut marker = None;
        loop {
            let page = iam
                .list_roles()
                .path_prefix("/aws-service-role/connect.amazonaws.com/")
                .set_marker(marker.take())
                .send()
                .await
                .expect("list roles");
            names.extend(page.roles().iter().map(|r| r.role_name().to_owned()));
            match page.marker() {
                Some(next) if page.is_truncated() => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        let roles = names.len() as i64;
        let wanted = ids.len() as i64;
        duplicates += (roles - wanted).max(0);
        missing += (wanted - roles).max(0);
    }
    let errors = errors.lock().expect("errors");
    if !errors.first.is_empty() {
        eprintln!(
            "[{case}] errors by code {:?}; first: {:#?}",
            errors.by_code, errors.first
        );
    }
    drop(servers);
    format!(
        "case={case} replicas={} instances={} accounts={} rate={} burst={} iam_burst={} \
         elapsed_s={elapsed:.1} floor_s={floor:.1} ratio={:.2} surfaced_throttling={} \
         surfaced_errors={} iam_throttled={iam_throttled} iam_calls={iam_calls} \
         duplicate_roles={duplicates} missing_roles={missing}",
        settings.replicas,
        settings.instances,
        settings.accounts,
        settings.rate,
        settings.burst,
        settings.iam_burst,
        if floor > 0.0 { elapsed / floor } else { 0.0 },
        errors.throttling,
        errors.all,
    )
}

/// Case `batch`: one BatchEnsureLinkedRoles over `accounts/-`, followed
/// until done; each instance it could not ensure is a surfaced error.
async fn batch_until_done(clients: &mut slrgov_testkit::Clients, errors: &Mutex<Errors>) {
    use prost::Message;
    use slrgov_proto::google::longrunning::GetOperationRequest;
    use slrgov_proto::google::longrunning::operation::Result as OpResult;
    let op = clients
        .linked_roles
        .batch_ensure_linked_roles(pb::BatchEnsureLinkedRolesRequest {
            parent: "accounts/-".into(),
            ..Default::default()
        })
        .await
        .expect("start the batch")
        .into_inner();
    let mut last = 0;
    loop {
        let now = clients
            .operations
            .get_operation(GetOperationRequest {
                name: op.name.clone(),
            })
            .await
            .expect("get the operation")
            .into_inner();
        if now.done {
            match now.result {
                Some(OpResult::Response(any)) => {
                    let answer = pb::BatchEnsureLinkedRolesResponse::decode(any.value.as_slice())
                        .expect("response");
                    let totals = answer.totals.unwrap_or_default();
                    eprintln!("[batch] done: {totals:?}");
                    let mut errors = errors.lock().expect("errors");
                    for failure in answer.failures {
                        let status = failure.error.unwrap_or_default();
                        errors.note(&tonic::Status::new(
                            tonic::Code::from(status.code),
                            status.message,
                        ));
                    }
                    // Failures beyond those kept are counted by reason.
                    let kept = errors.all;
                    errors.all = kept.max(totals.failed as u64);
                }
                other => panic!("the batch ends with a response: {other:?}"),
            }
            return;
        }
        if let Some(meta) = now.metadata.as_ref() {
            let meta = pb::OperationMetadata::decode(meta.value.as_slice()).expect("metadata");
            let done = meta.batch_progress.map(|p| p.done).unwrap_or_default();
            if done / 1000 > last / 1000 {
                eprintln!("[batch] {done} done");
            }
            last = done;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let settings = Settings::from_env();
    let moto = Arc::new(Moto::start().await);
    eprintln!("moto at {}", moto.url);
    for (index, case) in settings.cases.iter().enumerate() {
        let line = run_case(&settings, &moto, case, index).await;
        println!("{line}");
    }
}
