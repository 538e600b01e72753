//! The crash tests: many concurrent ensures of several instances, the
//! server killed with SIGKILL at random moments and restarted, with IAM
//! slow to show new roles (so kills land between CreateServiceLinkedRole
//! and the record). Afterwards every instance has exactly one role in IAM,
//! the database's ARN is IAM's, and no orphan role exists. The kill
//! timings come from a seed, printed, which `SLRGOV_CRASH_SEED` replays.
//!
//! And the ensure killed before its CreateServiceLinkedRole reached IAM:
//! the next process resumes it with the caller's description, saved when
//! the workflow started.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use slrgov_proto::slrgov::v1 as pb;

use super::support::{Engine, HOME, Moto, TestDb, TestServer, linked_role_name, role_description};

const INSTANCES: usize = 6;
const KILLS: usize = 5;

async fn start(moto: &Moto, db: &TestDb) -> TestServer {
    // New roles stay invisible for a while, as in IAM: the confirm step is
    // long enough for kills to land after the create and before the record.
    start_with_faults(
        moto,
        db,
        serde_json::json!({"invisible_after_create_ms": 700}),
    )
    .await
}

async fn start_with_faults(moto: &Moto, db: &TestDb, plan: serde_json::Value) -> TestServer {
    TestServer::start_with_moto(
        db,
        moto,
        &[
            ("SLRGOV_TEST_IAM_FAULTS", &plan.to_string()),
            ("SLRGOV_WORKFLOW_LEASE", "2s"),
        ],
    )
    .await
}

#[tokio::test]
async fn ensures_survive_sigkill_with_exactly_one_role_each() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    let mut server = start(&moto, &db).await;
    let mut c = server.clients().await;
    c.add_account(HOME).await;
    let seed: u64 = std::env::var("SLRGOV_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("crash test seed {seed}: SLRGOV_CRASH_SEED={seed} replays these kill timings");
    let mut names = Vec::new();
    for _ in 0..INSTANCES {
        let id = c.add_legacy_instance(&moto, HOME, None, "us-east-1").await;
        names.push(linked_role_name(HOME, &id));
    }

    let mut answers: HashMap<String, Vec<String>> = HashMap::new();
    let mut rng = StdRng::seed_from_u64(seed);
    for _round in 0..KILLS {
        let mut calls = Vec::new();
        for (i, name) in names.iter().enumerate() {
            // Two callers per instance, each retrying its own request id in
            // every round (a replay after a crash).
            for request in 0..2 {
                let mut client = server.clients().await.linked_roles;
                let name = name.clone();
                calls.push(tokio::spawn(async move {
                    let result = client
                        .ensure_linked_role(pb::EnsureLinkedRoleRequest {
                            name: name.clone(),
                            request_id: format!("crash-{i}-{request}"),
                            ..Default::default()
                        })
                        .await;
                    (name, result.map(|r| r.into_inner().role_arn))
                }));
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..900))).await;
        server.kill().await;
        for call in calls {
            if let Ok((name, Ok(arn))) = call.await {
                answers.entry(name).or_default().push(arn);
            }
        }
        server = start(&moto, &db).await;
    }

    // Recovery: the restarted process resumes what was in flight (the
    // lease is 2 s); every ensure then answers with the recorded role.
    let recovery = Instant::now();
    let mut c = server.clients().await;
    for (i, name) in names.iter().enumerate() {
        let role = c
            .linked_roles
            .ensure_linked_role(pb::EnsureLinkedRoleRequest {
                name: name.clone(),
                request_id: format!("crash-{i}-0"),
                ..Default::default()
            })
            .await
            .expect("ensure after the crashes")
            .into_inner();
        assert_eq!(role.state, pb::linked_role::State::Active as i32);
        answers.entry(name.clone()).or_default().push(role.role_arn);
    }
    let recovered_in = recovery.elapsed();

    let roles = moto.connect_roles(&moto.iam(None).await).await;
    let in_iam: Vec<String> = roles.iter().map(|(_, arn)| arn.clone()).collect();
    assert_eq!(
        in_iam.len(),
        INSTANCES,
        "exactly one role per instance, no orphan: {roles:?}"
    );
    for name in &names {
        let arns = &answers[name];
        assert!(
            arns.iter().all(|a| a == &arns[0]),
            "every answer for {name} is the same role: {arns:?}"
        );
        let recorded = c.linked_role(name).await;
        assert_eq!(recorded.role_arn, arns[0]);
        assert!(
            in_iam.contains(&recorded.role_arn),
            "the database's ARN is IAM's"
        );
    }
    let answered: usize = answers.values().map(Vec::len).sum();
    println!(
        "crash test (seed {seed}): {INSTANCES} instances, {KILLS} SIGKILLs, {answered} successful answers, recovery {recovered_in:?}"
    );
}

#[tokio::test]
async fn an_ensure_killed_before_its_create_resumes_with_the_callers_description() {
    const WORDS: &str = "kept across a SIGKILL";
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    // CreateServiceLinkedRole is held for 5 s before it reaches moto: the
    // kill lands while the process has planned the role but not made it.
    let server = start_with_faults(
        &moto,
        &db,
        serde_json::json!({"delay_ms": {"create_service_linked_role": 5000}}),
    )
    .await;
    let mut c = server.clients().await;
    let id = c.register_legacy_instance(&moto, HOME, "us-east-1").await;
    let name = linked_role_name(HOME, &id);
    let request = pb::EnsureLinkedRoleRequest {
        name: name.clone(),
        description: WORDS.into(),
        request_id: "killed-ensure".into(),
        validate_only: false,
    };
    let mut client = c.linked_roles.clone();
    let pending = {
        let request = request.clone();
        tokio::spawn(async move { client.ensure_linked_role(request).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill().await;
    assert!(
        pending.await.expect("task").is_err(),
        "the ensure died with its process"
    );
    assert!(
        moto.connect_roles(&moto.iam(None).await).await.is_empty(),
        "the create never reached IAM"
    );

    // The next process's worker resumes the workflow once its lease (2 s)
    // has run out, with the saved inputs.
    let server = start(&moto, &db).await;
    let mut c = server.clients().await;
    let role = c
        .wait_active(&name, Duration::from_secs(30), "not resumed")
        .await;
    assert_eq!(
        role.description, WORDS,
        "the record keeps the caller's words"
    );
    let iam = moto.iam(None).await;
    let roles = moto.connect_roles(&iam).await;
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!(
        role_description(&iam, &roles[0].0).await.as_deref(),
        Some(WORDS),
        "IAM's role has the caller's description, not the default"
    );
    // The caller's retry with the same request id gets the same role.
    let replay = c
        .linked_roles
        .ensure_linked_role(request)
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(replay.role_arn, role.role_arn);
}
