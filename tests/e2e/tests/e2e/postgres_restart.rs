//! Postgres restarts under load (`pg_ctl stop -m fast`, then start), with
//! the service left running: calls during the outage fail fast with
//! UNAVAILABLE and a RetryInfo (never hang, never INTERNAL), the service
//! recovers by itself once the database is back, and every write that was
//! acknowledged is there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use slrgov_proto::slrgov::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

use super::postgres_cluster::Cluster;
use super::support::{TestDb, TestServer, account_id, instance_id};

/// Concurrent writers.
const WRITERS: usize = 4;
/// Each call's deadline: a failed call must come back well within it.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long the database stays down.
const OUTAGE: Duration = Duration::from_secs(5);
/// How fast a call refused during the outage must come back.
const FAIL_FAST: Duration = Duration::from_secs(5);

/// One write: the instance it created, when it started, how long it took,
/// and how it ended.
struct Write {
    id: String,
    started: Instant,
    took: Duration,
    outcome: Result<(), tonic::Status>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_under_load_fails_fast_recovers_and_keeps_acknowledged_writes() {
    let cluster = Cluster::start();
    // The service's ordinary role owns its database (no superuser: the
    // server refuses one).
    cluster
        .execute(
            "postgres",
            "CREATE ROLE slrgov LOGIN NOSUPERUSER NOBYPASSRLS",
        )
        .await;
    cluster
        .execute("postgres", "CREATE DATABASE slrgov OWNER slrgov")
        .await;
    let url = cluster.url("slrgov", "slrgov");
    let unused = TestDb::sqlite();
    let server = TestServer::start_with(&unused, &[("SLRGOV_DATABASE_URL", url.as_str())]).await;
    let pid = server.pid();
    let mut c = server.clients().await;
    let account = account_id(7);
    c.add_account(&account).await;

    // Writers: CreateInstance after CreateInstance, each with its deadline.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let mut client = c.instances.clone();
        let stop = stop.clone();
        let parent = format!("accounts/{account}");
        writers.push(tokio::spawn(async move {
            let mut writes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let id = instance_id();
                let mut request = tonic::Request::new(pb::CreateInstanceRequest {
                    parent: parent.clone(),
                    instance_id: id.clone(),
                    instance: Some(pb::Instance {
                        region: "us-east-1".to_owned(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                });
                request.set_timeout(DEADLINE);
                let started = Instant::now();
                let outcome = client.create_instance(request).await.map(|_| ());
                let failed = outcome.is_err();
                writes.push(Write {
                    id,
                    started,
                    took: started.elapsed(),
                    outcome,
                });
                if failed {
                    // A client honouring RetryInfo would wait longer; a
                    // short pause keeps the outage busy with calls.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            writes
        }));
    }

    // Load, then the restart in the middle of it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stopping = Instant::now();
    tokio::task::block_in_place(|| cluster.stop("fast"));
    let down = Instant::now();
    // The outage: well beyond the pool's acquire timeout (2 s), so that
    // every writer has calls refused while the database is down.
    tokio::time::sleep(OUTAGE).await;
    tokio::task::block_in_place(|| cluster.restart_after_stop());
    let up = Instant::now();
    // Once the database is back, writes succeed again (without a restart of
    // the service); then a little more load.
    let (recovered, probe) = loop {
        if let Some(done) = first_success_after(&c, &account, up).await {
            break done;
        }
        assert!(
            up.elapsed() < Duration::from_secs(20),
            "the service did not recover within 20 s of the database's restart:\n{}\n\n\
             Postgres log:\n{}",
            server.log(),
            cluster.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut writes = Vec::new();
    for writer in writers {
        writes.extend(writer.await.expect("join"));
    }

    // The same process served throughout.
    assert_eq!(server.pid(), pid, "the server was restarted");
    assert!(
        server.health("").await
            == Some(tonic_health::pb::health_check_response::ServingStatus::Serving),
        "health is SERVING after the restart"
    );

    let ok: Vec<&Write> = writes.iter().filter(|w| w.outcome.is_ok()).collect();
    let failed: Vec<&Write> = writes.iter().filter(|w| w.outcome.is_err()).collect();
    let before = ok.iter().filter(|w| w.started < stopping).count();
    let after = ok.iter().filter(|w| w.started >= up).count();
    assert!(before > 0, "no write succeeded before the restart");
    assert!(after > 0, "no write succeeded after the restart");
    // Refused while the database was down (a call that starts during the
    // outage may also wait for the database to come back, within the pool's
    // acquire timeout, and succeed).
    let during = failed
        .iter()
        .filter(|w| (down..=up).contains(&(w.started + w.took)))
        .count();
    assert!(
        during >= WRITERS,
        "too few calls met the outage ({during} refused while it was down, {} writes in all; \
         stopped after {:?}, up after {:?}); the refused calls (start after the stop began, \
         took, outcome):\n{}",
        writes.len(),
        down - stopping,
        up - stopping,
        timeline(&failed, stopping)
    );

    // Every refused call: UNAVAILABLE with RetryInfo, back well within its
    // deadline.
    let mut wrong = Vec::new();
    for w in &failed {
        let status = w.outcome.as_ref().expect_err("failed");
        let retry = status.get_details_retry_info();
        if status.code() != Code::Unavailable
            || retry.as_ref().and_then(|r| r.retry_delay).is_none()
            || w.took >= FAIL_FAST
        {
            wrong.push(format!(
                "{:?} after {:?} (retry info {:?}): {}",
                status.code(),
                w.took,
                retry,
                status.message()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} failed calls were not a fast UNAVAILABLE with RetryInfo:\n{}\n\nserver log:\n{}",
        wrong.len(),
        failed.len(),
        wrong.join("\n"),
        server.log()
    );

    // Every acknowledged write is there.
    let mut missing = Vec::new();
    for id in ok.iter().map(|w| &w.id).chain([&probe]) {
        let got = c
            .instances
            .get_instance(pb::GetInstanceRequest {
                name: format!("accounts/{account}/instances/{id}"),
            })
            .await;
        if let Err(status) = got {
            missing.push(format!("{id}: {:?}", status.code()));
        }
    }
    assert!(
        missing.is_empty(),
        "acknowledged writes are missing: {missing:?}"
    );
    eprintln!(
        "{} writes: {} acknowledged ({before} before the restart, {after} after), {} refused \
         ({during} during the outage); recovered {:?} after the database was back",
        writes.len(),
        ok.len(),
        failed.len(),
        recovered
    );
    eprintln!("{}", timeline(&failed, stopping));
    let _ = server.stop().await;
    drop(cluster);
}

/// When each call started (relative to `stopping`, negative before it),
/// how long it took and how it ended.
fn timeline(writes: &[&Write], stopping: Instant) -> String {
    writes
        .iter()
        .map(|w| {
            let start = if w.started >= stopping {
                format!("{:?}", w.started - stopping)
            } else {
                format!("-{:?}", stopping - w.started)
            };
            let outcome = match &w.outcome {
                Ok(()) => "OK".to_owned(),
                Err(status) => format!("{:?}: {}", status.code(), status.message()),
            };
            format!("{start} {:?} {outcome}", w.took)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Creates one instance; `Some((elapsed since up, its id))` if it succeeds.
async fn first_success_after(
    c: &slrgov_testkit::Clients,
    account: &str,
    up: Instant,
) -> Option<(Duration, String)> {
    let mut client = c.instances.clone();
    let id = instance_id();
    let mut request = tonic::Request::new(pb::CreateInstanceRequest {
        parent: format!("accounts/{account}"),
        instance_id: id.clone(),
        instance: Some(pb::Instance {
            region: "us-east-1".to_owned(),
            ..Default::default()
        }),
        request_id: String::new(),
    });
    request.set_timeout(DEADLINE);
    client
        .create_instance(request)
        .await
        .ok()
        .map(|_| (up.elapsed(), id))
}
