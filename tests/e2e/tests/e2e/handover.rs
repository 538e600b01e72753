//! Graceful shutdown hands background work over at once: a replica whose
//! retirement step hangs in IAM is stopped with SIGTERM, gives up its lease,
//! and another replica finishes the retirement well before the lease (30 s)
//! would have run out.

use std::time::{Duration, Instant};

use slrgov_proto::google::longrunning as lro;
use sqlx::Connection;

use super::support::{
    Engine, HOME, Moto, TestDb, TestServer, black_hole, env_refs, linked_role_name,
};

/// The lease owner of the instance's running operation, read as the
/// database owner (the service's own role sees nothing without a scope).
async fn lease_owner(admin: &mut sqlx::PgConnection) -> Option<String> {
    sqlx::query_scalar::<_, Option<String>>(
        "SELECT lease_owner FROM workflows WHERE kind = 'retire' \
         AND phase IN ('RUNNING', 'UNWINDING') LIMIT 1",
    )
    .fetch_optional(admin)
    .await
    .expect("read the operation")
    .flatten()
}

#[tokio::test]
async fn a_stopped_replica_hands_its_running_retirement_over_at_once() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    let mut admin = sqlx::PgConnection::connect(&db.postgres_admin_url().expect("postgres"))
        .await
        .expect("admin connection");
    let env = moto.env();
    let moto_env = env_refs(&env);

    // The role, made through a replica that reaches IAM, which then stops.
    let setup = TestServer::start_with(&db, &moto_env).await;
    let mut c = setup.clients().await;
    let id = c.register_legacy_instance(&moto, HOME, "us-east-1").await;
    let name = linked_role_name(HOME, &id);
    let role = c.ensure_role(&name).await;
    assert!(setup.stop().await.success());

    // Replica A reaches STS but its IAM never answers: its worker claims the
    // retirement and hangs in DeleteServiceLinkedRole.
    let (hole, _hole) = black_hole().await;
    let mut a_env = moto_env.clone();
    a_env.push(("AWS_ENDPOINT_URL_IAM", hole.as_str()));
    let mut a = TestServer::start_with(&db, &a_env).await;
    let operation = a.clients().await.retire_role(&name).await;
    let a_pid = a.pid().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if lease_owner(&mut admin)
            .await
            .is_some_and(|owner| owner.starts_with(&format!("{a_pid}-")))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica A never claimed the retirement"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Replica B reaches IAM, but A holds the lease: B waits.
    let b = TestServer::start_with(&db, &moto_env).await;
    let mut b_ops = b.clients().await.operations;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let get = lro::GetOperationRequest {
        name: operation.name.clone(),
    };
    let pending = b_ops
        .get_operation(get.clone())
        .await
        .expect("get")
        .into_inner();
    assert!(!pending.done, "B must not take a leased operation");

    // SIGTERM to A: it cuts its hanging step short, gives up the lease and
    // exits; B takes the retirement over and finishes it.
    let stopped = Instant::now();
    a.terminate();
    assert!(a.wait_exit(Duration::from_secs(30)).await.success());
    let exit_took = stopped.elapsed();
    assert!(
        exit_took < Duration::from_secs(4),
        "A took {exit_took:?} to exit: its worker waited on IAM\n{}",
        a.log()
    );
    a.event("background worker stopped; leases released");
    let done = loop {
        let op = b_ops
            .get_operation(get.clone())
            .await
            .expect("get")
            .into_inner();
        if op.done {
            break op;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(12),
            "B did not finish the retirement soon after A stopped (the lease is 30 s)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        matches!(done.result, Some(lro::operation::Result::Response(_))),
        "the retirement succeeded: {done:?}"
    );
    let iam = moto.iam(None).await;
    let gone = iam.get_role().role_name(&role.role_name).send().await;
    assert!(gone.is_err(), "the role is gone from IAM");
}
