//! BatchEnsureLinkedRoles against moto (Connect through the shape layer,
//! IAM through the fault layer to slow it down): one operation fixes an
//! account's fleet with its progress visible as it runs, reports each
//! failure by reason, says what it would do under `validate_only`, replays
//! by request id, changes nothing when run again, survives kill -9 (never a
//! second role), and stops when cancelled, saying what it did.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use slrgov_proto::google::longrunning::operation::Result as OpResult;
use slrgov_proto::google::longrunning::{CancelOperationRequest, GetOperationRequest, Operation};
use slrgov_proto::slrgov::v1 as pb;

use super::lifecycle_support::{instance, register, unlisted_instance, wait};
use super::support::{Clients, Engine, HOME, Moto, TestDb, TestServer};

fn progress(op: &Operation) -> pb::BatchProgress {
    pb::OperationMetadata::decode(op.metadata.as_ref().expect("metadata").value.as_slice())
        .expect("metadata")
        .batch_progress
        .expect("batch progress")
}

fn response(op: &Operation) -> pb::BatchEnsureLinkedRolesResponse {
    match &op.result {
        Some(OpResult::Response(any)) => {
            assert_eq!(
                any.type_url,
                "type.googleapis.com/slrgov.v1.BatchEnsureLinkedRolesResponse"
            );
            pb::BatchEnsureLinkedRolesResponse::decode(any.value.as_slice()).expect("response")
        }
        other => panic!("the batch succeeds: {other:?}"),
    }
}

async fn batch(c: &mut Clients, request: pb::BatchEnsureLinkedRolesRequest) -> Operation {
    c.linked_roles
        .batch_ensure_linked_roles(request)
        .await
        .expect("batch")
        .into_inner()
}

async fn get(c: &mut Clients, name: &str) -> Operation {
    c.operations
        .get_operation(GetOperationRequest { name: name.into() })
        .await
        .expect("get operation")
        .into_inner()
}

/// Polls the operation until done (up to `secs`), returning every `done`
/// count seen on the way.
async fn follow(c: &mut Clients, name: &str, secs: u64) -> (Operation, Vec<i32>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    loop {
        let op = get(c, name).await;
        seen.push(progress(&op).done);
        if op.done {
            return (op, seen);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the batch finishes: {op:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connect_roles(moto: &Moto) -> Vec<String> {
    let iam = moto.iam(None).await;
    let mut names: Vec<String> = moto
        .connect_roles(&iam)
        .await
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    names.sort();
    names
}

async fn slow_server(moto: &Moto, db: &TestDb) -> TestServer {
    let plan =
        serde_json::json!({"delay_ms": {"get_role": 150, "create_service_linked_role": 300}});
    TestServer::start_with_moto(
        db,
        moto,
        &[
            ("SLRGOV_TEST_IAM_FAULTS", &plan.to_string()),
            ("SLRGOV_WORKFLOW_LEASE", "2s"),
            // Waves of two: progress shows between waves, and a kill or a
            // cancel lands between them.
            ("SLRGOV_BATCH_CONCURRENCY", "2"),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_fixes_the_fleet_with_progress_and_a_rerun_changes_nothing() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    let server = slow_server(&moto, &db).await;
    let mut c = server.clients().await;
    // Two instances whose roles exist (adopted), one whose role was
    // deleted (restored under Connect's name), a legacy one (created), and
    // one registered by hand that Connect does not have (fails).
    moto.create_connect_instance(None, "us-east-1", "sales")
        .await;
    moto.create_connect_instance(None, "eu-west-2", "support")
        .await;
    let deleted = moto.create_connect_instance(None, "us-east-1", "ops").await;
    let iam = moto.iam(None).await;
    iam.delete_service_linked_role()
        .role_name(deleted.role_name.clone().expect("role"))
        .send()
        .await
        .expect("delete ops' role");
    register(&mut c, HOME, None).await;
    let sync = c
        .instances
        .sync_instances(pb::SyncInstancesRequest {
            parent: format!("accounts/{HOME}"),
            request_id: String::new(),
        })
        .await
        .expect("sync")
        .into_inner();
    wait(&mut c, &sync.name).await;
    instance(&mut c, &moto, HOME, "ap-southeast-2").await;
    let stray = unlisted_instance(&mut c, HOME, "us-west-2").await;
    let before = connect_roles(&moto).await;

    // validate_only: what would happen; nothing changes.
    let preview = batch(
        &mut c,
        pb::BatchEnsureLinkedRolesRequest {
            parent: "accounts/-".into(),
            validate_only: true,
            ..Default::default()
        },
    )
    .await;
    let (preview, _) = follow(&mut c, &preview.name, 60).await;
    let totals = response(&preview).totals.expect("totals");
    assert!(totals.validate_only);
    assert_eq!(
        (
            totals.total,
            totals.done,
            totals.adopted,
            totals.restored,
            totals.created,
            totals.failed
        ),
        (5, 5, 2, 1, 1, 1),
        "{totals:?}"
    );
    assert_eq!(
        connect_roles(&moto).await,
        before,
        "validate_only changes nothing"
    );

    // The batch itself, with a request id: progress moves while it runs.
    let request = pb::BatchEnsureLinkedRolesRequest {
        parent: format!("accounts/{HOME}"),
        filter: "linked_role_state = ABSENT".into(),
        description: "fixed by the batch".into(),
        validate_only: false,
        request_id: "9b2f7c1e-3a4d-4e5f-8a6b-7c8d9e0f1a2b".into(),
    };
    let started = batch(&mut c, request.clone()).await;
    assert!(started.name.starts_with("operations/"));
    let meta = pb::OperationMetadata::decode(
        started
            .metadata
            .as_ref()
            .expect("metadata")
            .value
            .as_slice(),
    )
    .expect("metadata");
    assert_eq!(meta.verb, "batch_ensure");
    assert_eq!(meta.target, format!("accounts/{HOME}"));
    let (done, seen) = follow(&mut c, &started.name, 60).await;
    assert!(
        seen.iter().any(|d| *d > 0 && *d < 5),
        "progress visible between 0 and 5: {seen:?}"
    );
    let answer = response(&done);
    let totals = answer.totals.expect("totals");
    assert!(!totals.validate_only);
    assert_eq!(
        (
            totals.total,
            totals.done,
            totals.adopted,
            totals.restored,
            totals.created,
            totals.failed
        ),
        (5, 5, 2, 1, 1, 1),
        "{totals:?}"
    );
    assert_eq!(
        totals.failed_by_reason,
        [("INSTANCE_NOT_IN_CONNECT".to_owned(), 1)]
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>()
    );
    assert_eq!(answer.failures.len(), 1);
    assert_eq!(format!("{}/linkedRole", answer.failures[0].instance), stray);
    // The request id replays the same operation.
    assert_eq!(batch(&mut c, request).await.name, started.name);
    // Every listed instance now ACTIVE; two new roles in IAM (restored,
    // created); nothing else.
    let after = connect_roles(&moto).await;
    assert_eq!(after.len(), before.len() + 2, "{before:?} -> {after:?}");
    assert!(
        after.contains(&deleted.role_name.clone().expect("role")),
        "restored"
    );

    // Run again: nothing to do.
    let again = batch(
        &mut c,
        pb::BatchEnsureLinkedRolesRequest {
            parent: format!("accounts/{HOME}"),
            ..Default::default()
        },
    )
    .await;
    let (again, _) = follow(&mut c, &again.name, 60).await;
    let totals = response(&again).totals.expect("totals");
    assert_eq!(
        (totals.unchanged, totals.failed, totals.created),
        (4, 1, 0),
        "{totals:?}"
    );
    assert_eq!(connect_roles(&moto).await, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_survives_kill_9_and_a_cancelled_one_says_what_it_did() {
    const N: usize = 8;
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    let server = slow_server(&moto, &db).await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let mut names = Vec::new();
    for _ in 0..N {
        names.push(instance(&mut c, &moto, HOME, "us-east-1").await);
    }
    let op = batch(
        &mut c,
        pb::BatchEnsureLinkedRolesRequest {
            parent: format!("accounts/{HOME}"),
            ..Default::default()
        },
    )
    .await;
    // Killed mid-way.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while progress(&get(&mut c, &op.name).await).done < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the batch starts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill().await;
    let server = slow_server(&moto, &db).await;
    let mut c = server.clients().await;
    let (done, _) = follow(&mut c, &op.name, 90).await;
    let totals = response(&done).totals.expect("totals");
    assert_eq!(totals.done, N as i32);
    assert_eq!(totals.failed, 0, "{totals:?}");
    assert_eq!(
        totals.created + totals.unchanged,
        N as i32,
        "an ensure finished before the kill counts as unchanged on resume: {totals:?}"
    );
    // Exactly one role per instance.
    let roles = connect_roles(&moto).await;
    assert_eq!(roles.len(), N, "{roles:?}");
    for name in &names {
        let role = c
            .linked_roles
            .get_linked_role(pb::GetLinkedRoleRequest { name: name.clone() })
            .await
            .expect("linked role")
            .into_inner();
        assert_eq!(role.state, pb::linked_role::State::Active as i32, "{name}");
        assert!(roles.contains(&role.role_name), "{name}: {role:?}");
    }

    // Cancelled: stops after the current wave; the operation ends
    // CANCELLED and its metadata says what was done.
    let mut more = Vec::new();
    for _ in 0..N {
        more.push(instance(&mut c, &moto, HOME, "eu-west-2").await);
    }
    let op = batch(
        &mut c,
        pb::BatchEnsureLinkedRolesRequest {
            parent: format!("accounts/{HOME}"),
            filter: "linked_role_state = ABSENT".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(progress(&op).total, N as i32);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while progress(&get(&mut c, &op.name).await).done < 1 {
        assert!(tokio::time::Instant::now() < deadline, "the batch starts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.operations
        .cancel_operation(CancelOperationRequest {
            name: op.name.clone(),
        })
        .await
        .expect("cancel");
    let (cancelled, _) = follow(&mut c, &op.name, 30).await;
    match &cancelled.result {
        Some(OpResult::Error(status)) => {
            assert_eq!(status.code, tonic::Code::Cancelled as i32, "{status:?}");
            assert!(status.message.contains("cancelled after"), "{status:?}");
        }
        other => panic!("a cancelled batch ends with an error: {other:?}"),
    }
    let stopped = progress(&cancelled);
    assert!(stopped.done >= 1 && stopped.done < N as i32, "{stopped:?}");
    // Exactly the roles it says it made.
    let mut states: BTreeMap<i32, i32> = BTreeMap::new();
    for name in &more {
        let role = c
            .linked_roles
            .get_linked_role(pb::GetLinkedRoleRequest { name: name.clone() })
            .await
            .expect("linked role")
            .into_inner();
        *states.entry(role.state).or_default() += 1;
    }
    assert_eq!(
        states
            .get(&(pb::linked_role::State::Active as i32))
            .copied()
            .unwrap_or(0),
        stopped.created,
        "{states:?} vs {stopped:?}"
    );
    assert_eq!(
        connect_roles(&moto).await.len(),
        N + stopped.created as usize
    );
    // Cancelling a finished operation changes nothing; a retirement
    // cannot be cancelled.
    c.operations
        .cancel_operation(CancelOperationRequest {
            name: op.name.clone(),
        })
        .await
        .expect("cancel again");
    let retire = c
        .linked_roles
        .retire_linked_role(pb::RetireLinkedRoleRequest {
            name: names[0].clone(),
            ..Default::default()
        })
        .await
        .expect("retire")
        .into_inner();
    let refused = c
        .operations
        .cancel_operation(CancelOperationRequest { name: retire.name })
        .await
        .expect_err("a retirement cannot be cancelled");
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
}
