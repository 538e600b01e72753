//! Discovery against moto's Connect through the shape layer (real Connect's
//! shapes: per-instance service-linked roles, epoch times): SyncInstances
//! across every Connect region and never a gated one, instances registered,
//! updated and VANISHED, per-region failures reported, throttling ridden
//! out, a sync resumed after kill -9, the background schedule, and the
//! region table refreshed from SSM.

use std::time::Duration;

use prost::Message;
use slrgov_proto::google::longrunning::{Operation, operation::Result as OpResult};
use slrgov_proto::slrgov::v1 as pb;

use super::lifecycle_support::{TENANT, register};
use super::support::{Clients, ConnectShape, Engine, HOME, Moto, TestDb, TestServer, env_refs};

/// The regions of the aws partition in the built-in table: where a sync
/// looks (us-gov-west-1 is another partition's).
const AWS_REGIONS: [&str; 10] = [
    "af-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "eu-central-1",
    "eu-west-2",
    "us-east-1",
    "us-west-2",
];

async fn sync(c: &mut Clients, parent: &str, request_id: &str) -> Operation {
    c.instances
        .sync_instances(pb::SyncInstancesRequest {
            parent: parent.into(),
            request_id: request_id.into(),
        })
        .await
        .expect("sync")
        .into_inner()
}

/// Waits up to a minute for the sync `op` and returns its response.
async fn finished(c: &mut Clients, op: &Operation) -> pb::SyncInstancesResponse {
    // In steps shorter than the clients' own 30 s timeout.
    let mut done = op.clone();
    for _ in 0..3 {
        done = c.wait_operation(&op.name, Duration::from_secs(20)).await;
        if done.done {
            break;
        }
    }
    assert!(done.done, "the sync finishes: {done:?}");
    match done.result {
        Some(OpResult::Response(any)) => {
            assert_eq!(
                any.type_url,
                "type.googleapis.com/slrgov.v1.SyncInstancesResponse"
            );
            pb::SyncInstancesResponse::decode(any.value.as_slice()).expect("response")
        }
        other => panic!("the sync succeeds: {other:?}"),
    }
}

fn metadata(op: &Operation) -> pb::OperationMetadata {
    pb::OperationMetadata::decode(op.metadata.as_ref().expect("metadata").value.as_slice())
        .expect("metadata")
}

async fn get(c: &mut Clients, account: &str, id: &str) -> pb::Instance {
    c.instances
        .get_instance(pb::GetInstanceRequest {
            name: format!("accounts/{account}/instances/{id}"),
        })
        .await
        .expect("get")
        .into_inner()
}

async fn listed(c: &mut Clients, parent: &str, filter: &str) -> Vec<String> {
    let mut ids: Vec<String> = c
        .instances
        .list_instances(pb::ListInstancesRequest {
            parent: parent.into(),
            filter: filter.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .instances
        .into_iter()
        .map(|i| i.instance_id)
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

async fn discovery_across_regions(engine: Engine) {
    let moto = Moto::start().await;
    let db = TestDb::new(engine).await;
    // The operator withdraws ap-southeast-2: the gate holds there too.
    let dir = tempfile::tempdir().expect("dir");
    let regions = dir.path().join("regions.toml");
    std::fs::write(
        &regions,
        "[[region]]\ncode = \"ap-southeast-2\"\nconnect_available = false\n",
    )
    .expect("regions file");
    let regions = regions.display().to_string();
    let server =
        TestServer::start_with_moto(&db, &moto, &[("SLRGOV_REGIONS_FILE", &regions)]).await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let sales = moto
        .create_connect_instance(None, "us-east-1", "sales")
        .await;
    let legacy = moto
        .create_connect_instance(None, "us-east-1", "legacy-desk")
        .await;
    let support = moto
        .create_connect_instance(None, "eu-west-2", "support")
        .await;
    // Where the service may not look: the withdrawn region. (moto serves
    // Connect only where AWS does, so a region without Connect cannot hold
    // an instance here; the counts below show no call outside the table.)
    let withdrawn = moto
        .create_connect_instance(None, "ap-southeast-2", "withdrawn")
        .await;
    // Registered by hand, never in Connect.
    let hand = c.add_instance(HOME, "us-east-1").await;

    let parent = format!("accounts/{HOME}");
    let op = sync(&mut c, &parent, "sync-1").await;
    let meta = metadata(&op);
    assert_eq!(
        (meta.verb.as_str(), meta.target.as_str()),
        ("sync", parent.as_str())
    );
    let response = finished(&mut c, &op).await;
    let looked: Vec<&str> = response.regions.iter().map(|r| r.region.as_str()).collect();
    let want: Vec<&str> = AWS_REGIONS
        .iter()
        .copied()
        .filter(|r| *r != "ap-southeast-2")
        .collect();
    assert_eq!(
        looked, want,
        "every Connect region of the partition, in order"
    );
    assert!(
        response.regions.iter().all(|r| r.error.is_none()),
        "{response:?}"
    );
    let totals = response.totals.expect("totals");
    assert_eq!(
        (
            totals.accounts_total,
            totals.regions_total,
            totals.regions_done,
            totals.regions_failed
        ),
        (1, 9, 9, 0)
    );
    assert_eq!(
        (
            totals.instances_seen,
            totals.instances_created,
            totals.instances_vanished
        ),
        (3, 3, 0)
    );
    // One ListInstances per region looked at; none where Connect is gated.
    let shape = moto.shape();
    for region in &want {
        assert_eq!(shape.count("ListInstances", region).await, 1, "{region}");
    }
    for gated in ["eu-west-1", "ap-southeast-2", "us-gov-west-1"] {
        assert_eq!(shape.count_in(gated).await, 0, "no call in {gated}");
    }

    // The registry now shows each instance as Connect does.
    let got = get(&mut c, HOME, &sales.id).await;
    assert_eq!(got.instance_alias, "sales");
    assert_eq!(got.connect_arn, sales.arn);
    assert_eq!(
        got.service_role_arn,
        sales.role_arn.clone().expect("a role")
    );
    assert_eq!(
        got.connect_status,
        pb::instance::ConnectStatus::Active as i32
    );
    assert_eq!(
        got.observed_state,
        pb::instance::ObservedState::Observed as i32
    );
    assert_eq!(got.identity_management_type, "CONNECT_MANAGED");
    assert_eq!(got.linked_role_state, pb::linked_role::State::Absent as i32);
    assert!(got.last_seen_time.is_some() && got.sync_time.is_some());
    let created = got.instance_create_time.expect("created").seconds;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!((now - created).abs() < 600, "created {created}, now {now}");
    let old = get(&mut c, HOME, &legacy.id).await;
    assert_eq!(old.service_role_arn, "", "a legacy instance has no role");
    assert_eq!(
        old.instance_create_time.expect("created").seconds,
        1_496_275_200
    );
    assert_eq!(get(&mut c, HOME, &support.id).await.region, "eu-west-2");
    let by_hand = get(&mut c, HOME, &hand).await;
    assert_eq!(
        by_hand.observed_state,
        pb::instance::ObservedState::Unobserved as i32
    );
    assert_eq!(
        listed(&mut c, &parent, "").await,
        sorted(vec![
            sales.id.clone(),
            legacy.id.clone(),
            support.id.clone(),
            hand.clone()
        ]),
        "nothing from a gated region"
    );
    let _ = withdrawn;
    assert_eq!(
        listed(&mut c, &parent, "legacy = true").await,
        vec![legacy.id.clone()]
    );

    // Connect deletes an instance: the next sync marks it VANISHED, never
    // deletes it.
    moto.delete_connect_instance(None, "eu-west-2", &support.id)
        .await;
    let op2 = sync(&mut c, &parent, "sync-2").await;
    assert_ne!(op2.name, op.name);
    let again = finished(&mut c, &op2).await;
    let totals = again.totals.expect("totals");
    assert_eq!(
        (
            totals.instances_seen,
            totals.instances_created,
            totals.instances_updated,
            totals.instances_vanished
        ),
        (2, 0, 0, 1)
    );
    let gone = get(&mut c, HOME, &support.id).await;
    assert_eq!(
        gone.observed_state,
        pb::instance::ObservedState::Vanished as i32
    );
    assert!(gone.last_seen_time.is_some());
    assert_eq!(
        listed(&mut c, &parent, "observed_state = VANISHED").await,
        vec![support.id.clone()]
    );
    // A replay of the first request id answers its operation.
    let replayed = sync(&mut c, &parent, "sync-1").await;
    assert_eq!(replayed.name, op.name);
    assert!(replayed.done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn discovery_across_regions_sqlite() {
    discovery_across_regions(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn discovery_across_regions_postgres() {
    discovery_across_regions(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn region_failures_are_reported_and_throttling_ridden_out() {
    let moto = Moto::start().await;
    // More throttles than the SDK's own three attempts: the workflow's
    // backoff retries the look.
    let shape = ConnectShape::start(
        &moto,
        Some(serde_json::json!({
            "throttle": {"ListInstances": 4},
            "access_denied": ["eu-west-2"],
            "not_enabled": ["af-south-1"],
        })),
    )
    .await;
    let db = TestDb::new(Engine::Sqlite).await;
    let shape_env = shape.env();
    let server = TestServer::start_with_moto(&db, &moto, &env_refs(&shape_env)).await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let sales = moto
        .create_connect_instance(None, "us-east-1", "sales")
        .await;
    let op = sync(&mut c, &format!("accounts/{HOME}"), "").await;
    let done = c.wait_operation(&op.name, Duration::from_secs(25)).await;
    assert!(done.done, "{done:?}\n{}", server.log());
    let response = finished(&mut c, &op).await;
    let reason = |region: &str| {
        let result = response
            .regions
            .iter()
            .find(|r| r.region == region)
            .unwrap_or_else(|| panic!("{region} in {response:?}"));
        result.error.as_ref().map(|status| {
            let info = status
                .details
                .iter()
                .find(|d| d.type_url.ends_with("google.rpc.ErrorInfo"))
                .map(|d| {
                    slrgov_proto::google::rpc::ErrorInfo::decode(d.value.as_slice())
                        .expect("ErrorInfo")
                })
                .expect("ErrorInfo");
            (info.reason, status.message.clone())
        })
    };
    let (denied, message) = reason("eu-west-2").expect("eu-west-2 failed");
    assert_eq!(denied, "CONNECT_ACCESS_DENIED");
    assert!(message.contains("connect:ListInstances"), "{message}");
    assert_eq!(
        reason("af-south-1").expect("af-south-1 failed").0,
        "REGION_NOT_SUPPORTED"
    );
    assert_eq!(reason("us-east-1"), None, "throttling is ridden out");
    let totals = response.totals.expect("totals");
    assert_eq!((totals.regions_total, totals.regions_failed), (10, 2));
    assert_eq!(
        get(&mut c, HOME, &sales.id).await.observed_state,
        pb::instance::ObservedState::Observed as i32,
        "the other regions are recorded"
    );
    // af-south-1 is refused before the throttle: the first throttled
    // region is the next one.
    let listed_first = shape.count("ListInstances", "ap-northeast-1").await;
    assert!(
        listed_first >= 5,
        "4 throttled answers, then one that worked: {listed_first}"
    );
    let retried = server.events_with("workflow step retried");
    assert!(
        !retried.is_empty(),
        "the workflow retried the throttled look"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fleet_sync_covers_every_account_through_assume_role() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    let server = TestServer::start_with_moto(&db, &moto, &[]).await;
    let mut c = server.clients().await;
    let tenant_role = format!("arn:aws:iam::{TENANT}:role/SlrGovernor");
    register(&mut c, HOME, None).await;
    register(&mut c, TENANT, Some(&tenant_role)).await;
    let mine = moto
        .create_connect_instance(None, "us-west-2", "mine")
        .await;
    let theirs = moto
        .create_connect_instance(Some(&tenant_role), "us-west-2", "theirs")
        .await;
    let op = sync(&mut c, "accounts/-", "fleet-1").await;
    assert_eq!(metadata(&op).target, "accounts/-");
    let response = finished(&mut c, &op).await;
    let totals = response.totals.expect("totals");
    assert_eq!((totals.accounts_total, totals.regions_total), (2, 20));
    assert_eq!((totals.instances_created, totals.regions_failed), (2, 0));
    // Each instance is in its own account, with its own account's role.
    let got = get(&mut c, TENANT, &theirs.id).await;
    assert_eq!(got.service_role_arn, theirs.role_arn.clone().expect("role"));
    assert!(got.service_role_arn.contains(&format!(":{TENANT}:")));
    assert_eq!(
        listed(&mut c, &format!("accounts/{HOME}"), "").await,
        vec![mine.id]
    );
    assert_eq!(
        listed(&mut c, &format!("accounts/{TENANT}"), "").await,
        vec![theirs.id]
    );
    // A sync of an unknown account is NOT_FOUND; a bad parent names it.
    let missing = c
        .instances
        .sync_instances(pb::SyncInstancesRequest {
            parent: "accounts/999999999999".into(),
            request_id: String::new(),
        })
        .await
        .expect_err("unknown account");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let bad = c
        .instances
        .sync_instances(pb::SyncInstancesRequest {
            parent: "accounts/12".into(),
            request_id: String::new(),
        })
        .await
        .expect_err("bad parent");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("parent"), "{}", bad.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_killed_mid_way_is_finished_by_the_next_process() {
    let moto = Moto::start().await;
    // Every ListInstances is throttled for a while: the sync is caught
    // half-way, waiting on its backoff.
    let shape = ConnectShape::start(
        &moto,
        Some(serde_json::json!({"throttle": {"ListInstances": 12}})),
    )
    .await;
    let db = TestDb::new(Engine::Postgres).await;
    let shape_env = shape.env();
    let mut env = env_refs(&shape_env);
    env.push(("SLRGOV_WORKFLOW_LEASE", "2s"));
    let first = TestServer::start_with_moto(&db, &moto, &env).await;
    let mut c = first.clients().await;
    register(&mut c, HOME, None).await;
    let sales = moto
        .create_connect_instance(None, "us-east-1", "sales")
        .await;
    let op = sync(&mut c, &format!("accounts/{HOME}"), "").await;
    // Wait until the worker has tried (and been throttled) at least once.
    for _ in 0..100 {
        if shape.count("ListInstances", AWS_REGIONS[0]).await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !c.wait_operation(&op.name, Duration::from_millis(10))
            .await
            .done
    );
    first.kill().await;
    // The next process, with Connect healthy, takes it over once the lease
    // runs out and finishes it.
    let second = TestServer::start_with_moto(&db, &moto, &[("SLRGOV_WORKFLOW_LEASE", "2s")]).await;
    let mut c = second.clients().await;
    let response = finished(&mut c, &op).await;
    let totals = response.totals.expect("totals");
    assert_eq!((totals.regions_done, totals.regions_failed), (10, 0));
    assert_eq!(
        get(&mut c, HOME, &sales.id).await.observed_state,
        pb::instance::ObservedState::Observed as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn background_syncs_discover_new_accounts_instances() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start_with_moto(&db, &moto, &[("SLRGOV_SYNC_INTERVAL", "5s")]).await;
    let mut c = server.clients().await;
    let sales = moto
        .create_connect_instance(None, "ca-central-1", "sales")
        .await;
    register(&mut c, HOME, None).await;
    // No call: the schedule finds the new account within its check.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if listed(&mut c, &format!("accounts/{HOME}"), "").await == vec![sales.id.clone()] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the background sync did not run"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // One sync per interval, not one per check.
    assert_eq!(moto.shape().count("ListInstances", "ca-central-1").await, 1);
    assert_eq!(server.events_with("background sync started").len(), 1);
    // And again after the interval.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while moto.shape().count("ListInstances", "ca-central-1").await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no second background sync"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_region_table_is_refreshed_from_ssm() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start_with_moto(&db, &moto, &[("SLRGOV_REGIONS_REFRESH", "1h")]).await;
    let mut c = server.clients().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let region = loop {
        let region = c
            .regions
            .get_region(pb::GetRegionRequest {
                name: "regions/eu-west-2".into(),
            })
            .await
            .expect("region")
            .into_inner();
        if region.source == pb::region::Source::Ssm as i32 {
            break region;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not refreshed: {region:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(region.connect_available);
    assert!(region.refresh_time.is_some());
    // GovCloud is not in the commercial partition's parameters: untouched.
    let gov = c
        .regions
        .get_region(pb::GetRegionRequest {
            name: "regions/us-gov-west-1".into(),
        })
        .await
        .expect("region")
        .into_inner();
    assert_eq!(gov.source, pb::region::Source::Builtin as i32);

    // SSM unreachable: the last good (built-in) table stays, the failure
    // is logged.
    let db = TestDb::new(Engine::Sqlite).await;
    let moto_env = moto.env();
    let mut env = env_refs(&moto_env);
    env.push(("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:9"));
    env.push(("SLRGOV_REGIONS_REFRESH", "1h"));
    let broken = TestServer::start_with(&db, &env).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while broken.events_with("region refresh failed").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no failure logged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut c = broken.clients().await;
    let kept = c
        .regions
        .get_region(pb::GetRegionRequest {
            name: "regions/eu-west-2".into(),
        })
        .await
        .expect("region")
        .into_inner();
    assert!(kept.connect_available);
    assert_eq!(kept.source, pb::region::Source::Builtin as i32);
}
