//! The crash test: many concurrent ensures of several instances, the server
//! killed with SIGKILL at random moments and restarted, with IAM slow to
//! show new roles (so kills land between CreateServiceLinkedRole and the
//! record). Afterwards every instance has exactly one role in IAM, the
//! database's ARN is IAM's, and no orphan role exists.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng;
use slrgov_proto::slrgov::v1 as pb;

use super::support::{Engine, Moto, TestDb, TestServer, instance_id};

const HOME: &str = "123456789012";
const INSTANCES: usize = 6;
const KILLS: usize = 5;

async fn start(moto: &Moto, db: &TestDb) -> TestServer {
    let mut env = moto.env();
    // New roles stay invisible for a while, as in IAM: the confirm step is
    // long enough for kills to land after the create and before the record.
    env.push((
        "SLRGOV_TEST_IAM_FAULTS",
        serde_json::json!({"invisible_after_create_ms": 700}).to_string(),
    ));
    env.push(("SLRGOV_WORKFLOW_LEASE", "2s".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestServer::start_with(db, &env).await
}

#[tokio::test]
async fn ensures_survive_sigkill_with_exactly_one_role_each() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    let mut server = start(&moto, &db).await;
    let mut c = server.clients().await;
    c.accounts
        .create_account(pb::CreateAccountRequest {
            account_id: HOME.into(),
            account: Some(pb::Account::default()),
            request_id: String::new(),
        })
        .await
        .expect("account");
    let mut names = Vec::new();
    for _ in 0..INSTANCES {
        let id = instance_id();
        c.instances
            .create_instance(pb::CreateInstanceRequest {
                parent: format!("accounts/{HOME}"),
                instance_id: id.clone(),
                instance: Some(pb::Instance {
                    region: "us-east-1".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect("instance");
        names.push(format!("accounts/{HOME}/instances/{id}/linkedRole"));
    }

    let mut answers: HashMap<String, Vec<String>> = HashMap::new();
    let mut rng = rand::rng();
    for _round in 0..KILLS {
        let mut calls = Vec::new();
        for name in &names {
            for request in 0..2 {
                let mut client = server.clients().await.linked_roles;
                let name = name.clone();
                calls.push(tokio::spawn(async move {
                    let result = client
                        .ensure_linked_role(pb::EnsureLinkedRoleRequest {
                            name: name.clone(),
                            request_id: format!("crash-{request}"),
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
    for name in &names {
        let role = c
            .linked_roles
            .ensure_linked_role(pb::EnsureLinkedRoleRequest {
                name: name.clone(),
                request_id: "crash-0".into(),
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
        let recorded = c
            .linked_roles
            .get_linked_role(pb::GetLinkedRoleRequest { name: name.clone() })
            .await
            .expect("get")
            .into_inner();
        assert_eq!(recorded.role_arn, arns[0]);
        assert!(
            in_iam.contains(&recorded.role_arn),
            "the database's ARN is IAM's"
        );
    }
    let answered: usize = answers.values().map(Vec::len).sum();
    println!(
        "crash test: {INSTANCES} instances, {KILLS} SIGKILLs, {answered} successful answers, recovery {recovered_in:?}"
    );
}
