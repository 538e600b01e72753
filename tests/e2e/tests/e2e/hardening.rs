//! Hardening against the real binary: a flood of unauthenticated streams,
//! a tenant that floods with slow request bodies, the loopback-only answer
//! of the no-auth mode, and reflection behind authentication.

use std::time::{Duration, Instant};

use slrgov_proto::slrgov::v1 as pb;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

use super::auth_support::{Jwt, account, with_token};
use super::support::{Engine, TestDb, TestServer, account_id, env_refs};

/// The server's resident set size, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A new connection (each channel made here is one TCP connection).
async fn connection(server: &TestServer) -> Channel {
    Endpoint::from_shared(server.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

/// Starts a call of `path` whose request stream never sends anything (an
/// idle client stream, or a unary call whose body never arrives), with
/// `token` if given; resolves when the server answers the headers.
async fn open_idle_stream(
    channel: Channel,
    path: &'static str,
    token: Option<&str>,
) -> Result<tonic::Streaming<()>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(futures::stream::pending::<()>());
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
    }
    grpc.streaming(
        request,
        PathAndQuery::from_static(path),
        tonic_prost::ProstCodec::<(), ()>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

const REFLECTION: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
const LIST_ACCOUNTS: &str = "/slrgov.v1.AccountService/ListAccounts";

#[tokio::test]
async fn an_unauthenticated_stream_flood_leaves_memory_bounded_and_callers_served() {
    let jwt = Jwt::new("es256");
    let db = TestDb::new(Engine::Sqlite).await;
    let env = jwt.env();
    let server = TestServer::start_with(&db, &env_refs(&env)).await;
    let pid = server.pid();
    let mut c = server.clients().await;
    let a = account_id(1);
    let admin = jwt.token("alice", "admin", &[&a]);
    c.accounts
        .create_account(with_token(account(&a), &admin))
        .await
        .expect("an admin registers its account");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_kib(pid);

    // 1,000 unauthenticated streams at once over 20 connections: idle
    // reflection streams, health watches (open to everyone) and unary
    // calls whose bodies never come; the refused ones are opened again at
    // once, for five seconds.
    let until = Instant::now() + Duration::from_secs(5);
    let mut tasks = Vec::new();
    let mut refused_reflection = Vec::new();
    for _ in 0..20 {
        let channel = connection(&server).await;
        for n in 0..50 {
            let channel = channel.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            if n == 0 {
                refused_reflection.push(rx);
            }
            tasks.push(tokio::spawn(async move {
                let mut tx = Some(tx);
                let mut opened = 0u32;
                while Instant::now() < until {
                    opened += 1;
                    match n % 3 {
                        0 => {
                            let result = open_idle_stream(channel.clone(), REFLECTION, None).await;
                            let held = result.as_ref().is_ok();
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(result.map(|_| ()));
                            }
                            if held {
                                // An idle stream the server accepted: held.
                                tokio::time::sleep_until(until.into()).await;
                            }
                        }
                        1 => {
                            let watch = HealthClient::new(channel.clone())
                                .watch(HealthCheckRequest {
                                    service: String::new(),
                                })
                                .await;
                            if let Ok(stream) = watch {
                                // Held open until the flood ends.
                                tokio::time::sleep_until(until.into()).await;
                                drop(stream);
                            }
                        }
                        _ => {
                            let _ = open_idle_stream(channel.clone(), LIST_ACCOUNTS, None).await;
                        }
                    }
                    tokio::task::yield_now().await;
                }
                opened
            }));
        }
    }

    // Meanwhile an authenticated caller is served, on its own connection.
    let mut served = 0;
    let mut peak = idle;
    let caller = connection(&server).await;
    let mut accounts =
        slrgov_proto::slrgov::v1::account_service_client::AccountServiceClient::new(caller);
    while Instant::now() < until {
        let mut request = with_token(pb::ListAccountsRequest::default(), &admin);
        request.set_timeout(Duration::from_secs(2));
        accounts
            .list_accounts(request)
            .await
            .expect("an authenticated caller is served during the flood");
        served += 1;
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut opened = 0;
    for task in tasks {
        opened += task.await.expect("flood task");
    }
    peak = peak.max(rss_kib(pid));
    assert!(opened >= 1000, "the flood opened {opened} streams");
    assert!(
        served >= 10,
        "{served} authenticated calls during the flood"
    );
    eprintln!("RSS idle {idle} KiB, peak under a flood of {opened} streams {peak} KiB");
    assert!(
        peak < 2 * idle,
        "RSS went from {idle} KiB to {peak} KiB under {opened} unauthenticated streams"
    );
    for rx in refused_reflection {
        let status = rx
            .await
            .expect("a reflection attempt")
            .expect_err("reflection needs credentials when an auth mode is configured");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    // Health still answers without credentials.
    assert!(server.health("").await.is_some());
}

#[tokio::test]
async fn every_path_gets_its_body_in_time_or_is_cut_off() {
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start_with(
        &db,
        &[
            ("SLRGOV_REQUEST_BODY_TIMEOUT", "1s"),
            ("SLRGOV_REQUEST_TIMEOUT", "3s"),
        ],
    )
    .await;
    // A health check and an API call whose bodies never arrive.
    for path in ["/grpc.health.v1.Health/Check", LIST_ACCOUNTS] {
        let started = Instant::now();
        let status = open_idle_stream(connection(&server).await, path, None)
            .await
            .expect_err("a body that never comes");
        let took = started.elapsed();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{path}: {status:?}");
        assert_eq!(
            status.get_details_error_info().map(|i| i.reason),
            Some("REQUEST_BODY_TIMEOUT".to_owned()),
            "{path}: {status:?}"
        );
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
            "{path}: cut off after {took:?}"
        );
    }
    // An idle reflection stream (open without auth) ends by the request
    // timeout, not never.
    let started = Instant::now();
    let mut stream = open_idle_stream(connection(&server).await, REFLECTION, None)
        .await
        .expect("reflection is open without an auth mode");
    let end = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the stream ends");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(6),
        "reflection stream ended after {took:?}"
    );
}

#[tokio::test]
async fn one_tenant_flooding_with_slow_bodies_does_not_starve_another() {
    let jwt = Jwt::new("es256");
    let db = TestDb::new(Engine::Sqlite).await;
    let mut env = jwt.env();
    env.extend([
        ("SLRGOV_MAX_CONCURRENT_REQUESTS", "64".to_owned()),
        ("SLRGOV_REQUEST_BODY_TIMEOUT", "2s".to_owned()),
    ]);
    let server = TestServer::start_with(&db, &env_refs(&env)).await;
    let mut c = server.clients().await;
    let (a, b) = (account_id(1), account_id(2));
    let greedy = jwt.token("greedy", "admin", &[&a]);
    let polite = jwt.token("polite", "admin", &[&b]);
    c.accounts
        .create_account(with_token(account(&b), &polite))
        .await
        .expect("account b");

    // The greedy tenant keeps 200 calls in flight whose bodies trickle
    // (never come), over four connections, for six seconds.
    let until = Instant::now() + Duration::from_secs(6);
    let mut floods = Vec::new();
    for _ in 0..4 {
        let channel = connection(&server).await;
        for _ in 0..50 {
            let channel = channel.clone();
            let greedy = greedy.clone();
            floods.push(tokio::spawn(async move {
                let mut codes = Vec::new();
                while Instant::now() < until {
                    let result =
                        open_idle_stream(channel.clone(), LIST_ACCOUNTS, Some(&greedy)).await;
                    let status = result.expect_err("the greedy calls never complete");
                    codes.push((
                        status.code(),
                        status.get_details_error_info().map(|i| i.reason),
                    ));
                }
                codes
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The other tenant's calls, each with a 1 s deadline, all succeed.
    let mut latencies = Vec::new();
    let mut accounts = c.accounts.clone();
    while Instant::now() + Duration::from_millis(500) < until {
        let mut request = with_token(pb::ListAccountsRequest::default(), &polite);
        request.set_timeout(Duration::from_secs(1));
        let started = Instant::now();
        let listed = accounts
            .list_accounts(request)
            .await
            .expect("the second tenant is served during the flood")
            .into_inner();
        latencies.push(started.elapsed());
        assert_eq!(listed.accounts.len(), 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut codes = Vec::new();
    for flood in floods {
        codes.extend(flood.await.expect("flood task"));
    }
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "second tenant: {} calls, p50 {:?}, p99 {p99:?}; greedy tenant: {} calls refused",
        latencies.len(),
        latencies[latencies.len() / 2],
        codes.len()
    );
    assert!(latencies.len() >= 50, "{} calls", latencies.len());
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
    // The greedy tenant was held to its own share (64 / 8 = 8 at once)
    // and its slow bodies were cut off.
    let limited = codes
        .iter()
        .filter(|(code, reason)| {
            *code == Code::ResourceExhausted
                && reason.as_deref() == Some("CALLER_CONCURRENCY_LIMITED")
        })
        .count();
    let cut = codes
        .iter()
        .filter(|(code, reason)| {
            *code == Code::DeadlineExceeded && reason.as_deref() == Some("REQUEST_BODY_TIMEOUT")
        })
        .count();
    assert!(limited > 0 && cut > 0, "{codes:?}");
    assert_eq!(limited + cut, codes.len(), "{codes:?}");
    assert!(
        !codes
            .iter()
            .any(|(_, r)| r.as_deref() == Some("OVERLOADED")),
        "the pool itself never filled"
    );
}

#[tokio::test]
async fn without_auth_only_loopback_hosts_are_answered() {
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start(&db).await;
    // A browser page that rebound its own name to 127.0.0.1 still sends
    // its own name as the Host.
    let rebound = Endpoint::from_shared(server.endpoint())
        .expect("endpoint")
        .origin(
            "http://rebound.attacker.example:50051"
                .parse()
                .expect("uri"),
        )
        .connect()
        .await
        .expect("connect");
    let mut accounts =
        slrgov_proto::slrgov::v1::account_service_client::AccountServiceClient::new(rebound);
    let status = accounts
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .expect_err("a foreign Host is refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status.get_details_error_info().map(|i| i.reason),
        Some("HOST_NOT_LOOPBACK".to_owned())
    );
    assert!(
        status.message().contains("rebound.attacker.example"),
        "{status:?}"
    );
    let refused = server.event("request to a non-loopback host refused");
    assert_eq!(refused["host"], "rebound.attacker.example");

    // localhost and the loopback addresses are served.
    for origin in ["http://localhost:1", "http://127.0.0.1:1"] {
        let channel = Endpoint::from_shared(server.endpoint())
            .expect("endpoint")
            .origin(origin.parse().expect("uri"))
            .connect()
            .await
            .expect("connect");
        slrgov_proto::slrgov::v1::account_service_client::AccountServiceClient::new(channel)
            .list_accounts(pb::ListAccountsRequest::default())
            .await
            .unwrap_or_else(|s| panic!("{origin}: {s:?}"));
    }

    // Any origin through CORS without auth: the server does not start.
    let out = TestServer::run_to_exit(&db, &[("SLRGOV_CORS_ORIGINS", "*")]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SLRGOV_CORS_ORIGINS") && stderr.contains("auth"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_external_id_never_reaches_the_log_even_at_trace() {
    use super::lifecycle_support::{TENANT, ensure, instance};
    let moto = super::support::Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start_with_moto(&db, &moto, &[("SLRGOV_LOG", "trace")]).await;
    let mut c = server.clients().await;
    let external_id = format!("xid-{}", uuid::Uuid::new_v4().simple());
    c.accounts
        .create_account(pb::CreateAccountRequest {
            account_id: TENANT.into(),
            account: Some(pb::Account {
                access_role_arn: format!("arn:aws:iam::{TENANT}:role/SlrGovernor"),
                external_id: external_id.clone(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("account");
    // An ensure in the tenant account: STS AssumeRole with the external id.
    let name = instance(&mut c, &moto, TENANT, "us-east-1").await;
    c.linked_roles
        .ensure_linked_role(ensure(&name))
        .await
        .expect("ensure");

    let log = server.log();
    assert!(
        !log.contains(&external_id),
        "the external id is in the log:\n{}",
        log.lines()
            .filter(|l| l.contains(&external_id))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The log was at TRACE, and the SDK's own DEBUG events are still there.
    let events = server.events();
    assert!(events.iter().any(|e| e["level"] == "TRACE"));
    assert!(
        events.iter().any(|e| e["level"] == "DEBUG"
            && e["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("aws_smithy_runtime"))),
        "the SDK's debug events are kept"
    );
    assert!(
        !events.iter().any(|e| e["level"] == "TRACE"
            && e["target"].as_str().is_some_and(|t| t.starts_with("aws_"))),
        "no wire-level event of the SDK"
    );
}
