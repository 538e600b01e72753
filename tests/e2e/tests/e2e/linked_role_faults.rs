//! The linked-role lifecycle against moto under IAM's own behaviour, given
//! to moto by the fault layer (`SLRGOV_TEST_IAM_FAULTS`): throttling,
//! eventual consistency, a refused suffix, a refused deletion, a failure at
//! each step; and without credentials, and under the per-account rate
//! limit.

use slrgov_proto::slrgov::v1 as pb;
use tonic::Code;

use super::lifecycle_support::{HOME, ensure, instance, register, server_with_faults, wait};
use super::support::{Engine, Moto, TestDb, TestServer, refused};

#[tokio::test]
async fn a_refused_deletion_reports_what_uses_the_role() {
    use slrgov_proto::google::longrunning::operation::Result as OpResult;
    use tonic_types::StatusExt;
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    let plan = serde_json::json!({
        "deletion_in_progress_polls": 2,
        "deletion_outcome": {"failed": {
            "reason": "The role is in use by an Amazon Connect instance",
            "usage": [{"region": "us-east-1", "resources": ["arn:aws:connect:us-east-1:123456789012:instance/in-use"]}]
        }}
    });
    let server = server_with_faults(&moto, &db, plan).await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let name = instance(&mut c, &moto, HOME, "us-east-1").await;
    c.ensure_role(&name).await;
    let mut operations = Vec::new();
    for _ in 0..2 {
        // A later retire may try again: each attempt is its own operation.
        let started = c.retire_role(&name).await;
        let done = wait(&mut c, &started.name).await;
        let Some(OpResult::Error(status)) = done.result else {
            panic!("expected an error: {done:?}");
        };
        assert_eq!(status.code, Code::FailedPrecondition as i32);
        let status = tonic::Status::with_error_details_vec(
            Code::FailedPrecondition,
            status.message.clone(),
            status
                .details
                .iter()
                .filter_map(|d| match d.type_url.as_str() {
                    "type.googleapis.com/google.rpc.ErrorInfo" => {
                        prost::Message::decode(d.value.as_slice()).ok().map(
                            |i: slrgov_proto::google::rpc::ErrorInfo| {
                                tonic_types::ErrorDetail::ErrorInfo(tonic_types::ErrorInfo::new(
                                    i.reason, i.domain, i.metadata,
                                ))
                            },
                        )
                    }
                    "type.googleapis.com/google.rpc.PreconditionFailure" => {
                        prost::Message::decode(d.value.as_slice()).ok().map(
                            |p: slrgov_proto::google::rpc::PreconditionFailure| {
                                tonic_types::ErrorDetail::PreconditionFailure(
                                    tonic_types::PreconditionFailure::new(
                                        p.violations
                                            .into_iter()
                                            .map(|v| {
                                                tonic_types::PreconditionViolation::new(
                                                    v.r#type,
                                                    v.subject,
                                                    v.description,
                                                )
                                            })
                                            .collect::<Vec<_>>(),
                                    ),
                                )
                            },
                        )
                    }
                    _ => None,
                })
                .collect::<Vec<_>>(),
        );
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "ROLE_IN_USE");
        assert_eq!(info.domain, "slrgov.v1");
        let failure = status
            .get_details_precondition_failure()
            .expect("PreconditionFailure");
        assert_eq!(
            failure.violations[0].subject,
            "arn:aws:connect:us-east-1:123456789012:instance/in-use"
        );
        assert!(status.message().contains("in use"), "{}", status.message());
        operations.push(started.name);
    }
    assert_ne!(operations[0], operations[1]);
    let role = c.linked_role(&name).await;
    assert_eq!(role.state, pb::linked_role::State::DeletionFailed as i32);
    let failure = role.deletion_failure.expect("deletion failure recorded");
    assert_eq!(failure.role_usage[0].region, "us-east-1");
    assert_eq!(
        moto.connect_roles(&moto.iam(None).await).await.len(),
        1,
        "the role is still in IAM"
    );
}

#[tokio::test]
async fn ensure_rides_out_throttling_and_eventual_consistency() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let server = server_with_faults(
        &moto,
        &db,
        serde_json::json!({
            "real_name_taken": true,
            "throttle": {"create_service_linked_role": 2, "get_role": 1},
            "service_failure": {"list_roles": 1},
            "invisible_after_create_ms": 1500
        }),
    )
    .await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let name = instance(&mut c, &moto, HOME, "us-east-1").await;
    let role = c.ensure_role(&name).await;
    assert_eq!(role.state, pb::linked_role::State::Active as i32);
    assert!(!role.adopted);
    let roles = moto.connect_roles(&moto.iam(None).await).await;
    assert_eq!(
        roles.len(),
        1,
        "throttling and invisibility never make a second role: {roles:?}"
    );
    assert_eq!(roles[0].1, role.role_arn);
    // The retries are in the log, as structured fields: the create retried
    // while throttled, the confirmation while IAM did not show the role.
    let retried = server.events_with("workflow step retried");
    for step in ["create", "confirm"] {
        assert!(
            retried.iter().any(|l| l["step"] == step
                && l["kind"] == "ensure"
                && l["attempt"].as_u64() >= Some(1)),
            "{step} retried: {retried:#?}"
        );
    }
}

#[tokio::test]
async fn a_refused_suffix_falls_back_and_never_takes_another_instances_role() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    let server = server_with_faults(&moto, &db, serde_json::json!({"refuse_suffix": true})).await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let first = instance(&mut c, &moto, HOME, "us-east-1").await;
    let role = c.ensure_role(&first).await;
    assert_eq!(role.state, pb::linked_role::State::Active as i32);
    // The only name left without a suffix is the first instance's role.
    let second = instance(&mut c, &moto, HOME, "us-east-1").await;
    let elsewhere = refused(c.linked_roles.ensure_linked_role(ensure(&second)).await);
    assert_eq!(
        (elsewhere.code, elsewhere.reason.as_str()),
        (Code::FailedPrecondition, "ROLE_OWNED_ELSEWHERE")
    );
    let state = c.linked_role(&second).await;
    assert_eq!(
        state.state,
        pb::linked_role::State::Absent as i32,
        "nothing half-written"
    );
    assert_eq!(moto.connect_roles(&moto.iam(None).await).await.len(), 1);
}

#[tokio::test]
async fn a_failure_at_each_iam_step_leaves_a_state_the_background_completes() {
    use slrgov_proto::google::longrunning::operation::Result as OpResult;
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    // CreateServiceLinkedRole fails four times and GetRole is throttled
    // three times: more than a caller who waits 1.5 s sees.
    let server = server_with_faults(
        &moto,
        &db,
        serde_json::json!({
            "service_failure": {
                "create_service_linked_role": 4,
                "delete_service_linked_role": 2,
                "deletion_status": 2
            },
            "throttle": {"get_role": 3}
        }),
    )
    .await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let name = instance(&mut c, &moto, HOME, "us-east-1").await;

    // The caller's deadline comes while the create is still being retried:
    // UNAVAILABLE with RetryInfo, nothing ACTIVE, nothing in IAM yet.
    let mut hurried = tonic::Request::new(ensure(&name));
    hurried.set_timeout(std::time::Duration::from_millis(1500));
    let failed = refused(c.linked_roles.ensure_linked_role(hurried).await);
    assert_eq!(
        (failed.code, failed.reason.as_str()),
        (Code::Unavailable, "IAM_UNAVAILABLE")
    );
    assert!(
        failed.message.contains("continues in the background"),
        "{failed:?}"
    );
    assert!(moto.connect_roles(&moto.iam(None).await).await.is_empty());
    let state = c.linked_role(&name).await;
    assert_eq!(state.state, pb::linked_role::State::Creating as i32);

    // The worker finishes it from the recorded state, with no further call:
    // one role, recorded as the service's own, not adopted.
    let role = c
        .wait_active(&name, std::time::Duration::from_secs(30), "not finished")
        .await;
    assert!(!role.adopted, "the role the workflow made is its own");
    let roles = moto.connect_roles(&moto.iam(None).await).await;
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].1, role.role_arn);
    // An ensure now answers at once with that role.
    let again = c.ensure_role(&name).await;
    assert_eq!(again.role_arn, role.role_arn);

    // Retirement: DeleteServiceLinkedRole and the status poll each fail
    // twice; the worker's next claims complete it.
    let started = c.retire_role(&name).await;
    let done = wait(&mut c, &started.name).await;
    assert!(
        matches!(done.result, Some(OpResult::Response(_))),
        "{done:?}"
    );
    assert!(moto.connect_roles(&moto.iam(None).await).await.is_empty());
}

#[tokio::test]
async fn no_usable_credentials_is_a_precondition_not_an_outage() {
    // The test environment carries no AWS credentials of its own; the
    // server gets no file, no metadata service and no keys.
    assert!(
        std::env::var_os("AWS_ACCESS_KEY_ID").is_none(),
        "run the tests without AWS credentials in the environment"
    );
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let env = [
        ("AWS_ENDPOINT_URL", moto.url.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ("AWS_CONFIG_FILE", "/nonexistent/config"),
    ];
    let server = TestServer::start_with(&db, &env).await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let name = instance(&mut c, &moto, HOME, "us-east-1").await;
    let refusal = refused(c.linked_roles.ensure_linked_role(ensure(&name)).await);
    assert_eq!(
        (refusal.code, refusal.reason.as_str()),
        (Code::FailedPrecondition, "AWS_CREDENTIALS_UNAVAILABLE"),
        "{refusal:?}"
    );
}

/// The per-account IAM rate limit is on the path of every IAM call: at one
/// call a second, concurrent ensures of three instances queue for their
/// account's tokens (the log says so) and all still succeed with one role
/// each; a rate that is not a positive number stops the server at start.
#[tokio::test]
async fn iam_calls_queue_for_the_accounts_rate_limit() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start_with_moto(
        &db,
        &moto,
        &[
            ("SLRGOV_IAM_RATE_PER_ACCOUNT", "1"),
            ("SLRGOV_LOG", "info,slrgov_aws=debug"),
        ],
    )
    .await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(instance(&mut c, &moto, HOME, "us-east-1").await);
    }
    let calls: Vec<_> = names
        .iter()
        .map(|name| {
            let mut client = c.linked_roles.clone();
            let request = ensure(name);
            tokio::spawn(async move { client.ensure_linked_role(request).await })
        })
        .collect();
    for call in calls {
        let role = call.await.expect("join").expect("ensure").into_inner();
        assert_eq!(role.state, pb::linked_role::State::Active as i32);
    }
    assert_eq!(moto.connect_roles(&moto.iam(None).await).await.len(), 3);
    let waited = server
        .events_with("aws call waits for the account's rate limit")
        .into_iter()
        .find(|e| e["service"] == "iam")
        .unwrap_or_else(|| panic!("no IAM call waited at one call a second:\n{}", server.log()));
    assert_eq!(waited["account"], HOME, "{waited}");
    assert!(waited["wait_ms"].as_u64().is_some(), "{waited}");

    let output = TestServer::run_to_exit(&db, &[("SLRGOV_IAM_RATE_PER_ACCOUNT", "0")]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SLRGOV_IAM_RATE_PER_ACCOUNT"), "{stderr}");
}
