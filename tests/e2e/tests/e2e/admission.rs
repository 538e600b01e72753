//! Admission: the per-request timeout and the concurrency limit with load
//! shedding, against an AWS endpoint that accepts connections and never
//! answers (so linked-role RPCs hang until the server gives up on them).

use std::time::Duration;

use slrgov_proto::slrgov::v1 as pb;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

use super::support::{
    Engine, HOME, TestDb, TestServer, aws_env, black_hole, env_refs, linked_role_name, refused,
};

/// A server whose AWS never answers, with `extra` settings, an account and
/// one instance in us-east-1; returns the server, the black hole and the
/// database (both must live as long as the server) and the instance id.
async fn silent_aws_server(
    extra: &[(&str, &str)],
) -> (TestServer, tokio::task::JoinHandle<()>, TestDb, String) {
    let (aws, hole) = black_hole().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let aws_env = aws_env(&aws);
    let mut env = env_refs(&aws_env);
    env.extend_from_slice(extra);
    let server = TestServer::start_with(&db, &env).await;
    let mut c = server.clients().await;
    c.add_account(HOME).await;
    let id = c.add_instance(HOME, "us-east-1").await;
    (server, hole, db, id)
}

#[tokio::test]
async fn slow_rpcs_time_out_and_excess_rpcs_are_shed() {
    let (server, _hole, _db, id) = silent_aws_server(&[
        ("SLRGOV_REQUEST_TIMEOUT", "2s"),
        ("SLRGOV_MAX_CONCURRENT_REQUESTS", "2"),
    ])
    .await;
    let mut c = server.clients().await;
    let instance = format!("accounts/{HOME}/instances/{id}");
    let ensure = pb::EnsureLinkedRoleRequest {
        name: format!("{instance}/linkedRole"),
        ..Default::default()
    };

    // Two ensures hang on AWS and fill both slots.
    let hanging: Vec<_> = (0..2)
        .map(|_| {
            let mut client = c.linked_roles.clone();
            let request = ensure.clone();
            tokio::spawn(async move { client.ensure_linked_role(request).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A third request is shed at once: UNAVAILABLE / OVERLOADED with a
    // RetryInfo, not queued behind the two.
    let shed = c
        .instances
        .get_instance(pb::GetInstanceRequest {
            name: instance.clone(),
        })
        .await
        .expect_err("a request over the limit");
    assert_eq!(shed.code(), Code::Unavailable, "{shed:?}");
    let info = shed.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "OVERLOADED");
    assert!(
        shed.get_details_retry_info()
            .and_then(|r| r.retry_delay)
            .is_some(),
        "a RetryInfo tells the caller when to come back"
    );
    // The probes still answer while the replica is saturated.
    assert_eq!(
        server.health("slrgov.v1.InstanceService").await,
        Some(ServingStatus::Serving)
    );

    // The hanging ensures end at the request timeout: DEADLINE_EXCEEDED.
    for task in hanging {
        let result = task.await.expect("the ensure task");
        let status = result.expect_err("an ensure against a silent AWS");
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "REQUEST_TIMEOUT");
    }

    // The slots are free again.
    c.instances
        .get_instance(pb::GetInstanceRequest {
            name: instance.clone(),
        })
        .await
        .expect("served once the slots are free");

    // A client's shorter grpc-timeout wins over the server's.
    let mut request = tonic::Request::new(ensure.clone());
    request.set_timeout(Duration::from_millis(300));
    let status = c
        .linked_roles
        .ensure_linked_role(request)
        .await
        .expect_err("an ensure with a short deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        status.get_details_error_info().map(|i| i.reason),
        Some("REQUEST_TIMEOUT".to_owned()),
        "{status:?}"
    );
    assert!(
        !status.message().contains("2000 ms"),
        "the server's timeout was applied, not the client's deadline: {status:?}"
    );

    // The timed-out ensure left the workflow to be resumed, not broken:
    // the record is CREATING or ABSENT, never half ACTIVE.
    let role = c
        .linked_roles
        .get_linked_role(pb::GetLinkedRoleRequest {
            name: ensure.name.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert!(
        role.state == pb::linked_role::State::Creating as i32
            || role.state == pb::linked_role::State::Absent as i32,
        "{role:?}"
    );
    let shed = server.event("overloaded: request shed");
    assert_eq!(shed["level"], "WARN");
    assert!(shed["limit"].as_u64().is_some(), "{shed}");
    let timed_out = server.event("request timed out");
    assert!(timed_out["timeout_ms"].as_u64().is_some(), "{timed_out}");
    assert!(
        timed_out["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/slrgov.v1."))
    );

    let bad = refused(
        c.instances
            .get_instance(pb::GetInstanceRequest {
                name: "nope".into(),
            })
            .await,
    );
    assert_eq!(bad.code, Code::InvalidArgument);
}

/// SIGTERM: health turns NOT_SERVING, new connections are refused, and an
/// RPC in flight is still answered (here at its request timeout) before the
/// process exits cleanly, well within the grace period.
#[tokio::test]
async fn sigterm_drains_in_flight_rpcs_and_refuses_new_work() {
    let (server, _hole, _db, id) = silent_aws_server(&[
        ("SLRGOV_REQUEST_TIMEOUT", "3s"),
        ("SLRGOV_SHUTDOWN_GRACE", "20s"),
    ])
    .await;
    let c = server.clients().await;

    // An ensure in flight (hanging on AWS until the request timeout).
    let mut client = c.linked_roles.clone();
    let name = linked_role_name(HOME, &id);
    let in_flight = tokio::spawn(async move {
        client
            .ensure_linked_role(pb::EnsureLinkedRoleRequest {
                name,
                ..Default::default()
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr = server.addr;
    server.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // New work is refused: a new connection does not get served.
    let fresh = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    if let Ok(channel) = fresh {
        let mut other =
            slrgov_proto::slrgov::v1::region_service_client::RegionServiceClient::new(channel);
        let refused_call = other
            .get_region(pb::GetRegionRequest {
                name: "regions/us-east-1".into(),
            })
            .await;
        assert!(refused_call.is_err(), "new work was served after SIGTERM");
    }

    // The RPC in flight is answered, not cut: its own status, not a
    // broken connection.
    let answer = in_flight.await.expect("the in-flight task");
    let status = answer.expect_err("an ensure against a silent AWS");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        status.get_details_error_info().map(|i| i.reason),
        Some("REQUEST_TIMEOUT".to_owned())
    );

    let mut server = server;
    let status = server.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "a clean exit: {status:?}");
    // Give the log reader a moment to take the last lines.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for message in [
        "shutting down: health is NOT_SERVING",
        "background worker stopped; leases released",
        "stopped",
    ] {
        server.event(message);
    }
    assert!(
        server.event("background worker stopped; leases released")["owner"]
            .as_str()
            .is_some(),
        "the worker names its owner"
    );
}

/// The audit events of `account` whose outcome is `outcome`, waiting up to
/// 5 s for one of request `id` (written by a task once the request is cut).
async fn cut_event(
    c: &mut super::support::Clients,
    account: &str,
    outcome: &str,
    id: &str,
) -> pb::AuditEvent {
    let started = std::time::Instant::now();
    loop {
        let events = c
            .audit
            .list_audit_events(pb::ListAuditEventsRequest {
                parent: format!("accounts/{account}"),
                filter: format!("outcome = {outcome}"),
                page_size: 100,
                page_token: String::new(),
            })
            .await
            .expect("list audit events")
            .into_inner()
            .audit_events;
        if let Some(event) = events.into_iter().find(|e| e.request_id == id) {
            return event;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no {outcome} event of request {id}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_request_cut_short_still_leaves_an_audit_event() {
    let (server, _hole, _db, id) = silent_aws_server(&[("SLRGOV_REQUEST_TIMEOUT", "5s")]).await;
    let mut c = server.clients().await;
    let name = linked_role_name(HOME, &id);
    let tagged = |request_id: &str| {
        let mut request = tonic::Request::new(pb::EnsureLinkedRoleRequest {
            name: name.clone(),
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("x-request-id", request_id.parse().expect("ascii"));
        request
    };

    // Cut by its deadline: the client's 500 ms.
    let mut request = tagged("cut-by-deadline");
    request.set_timeout(Duration::from_millis(500));
    let status = c
        .linked_roles
        .ensure_linked_role(request)
        .await
        .expect_err("an ensure against a silent AWS");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    let event = cut_event(&mut c, HOME, "DEADLINE_EXCEEDED", "cut-by-deadline").await;
    assert_eq!(event.method, "slrgov.v1.LinkedRoleService/EnsureLinkedRole");
    assert_eq!(event.resource, name);
    assert!(event.detail.contains("deadline"), "{event:?}");

    // Cut by the client, which stops waiting after 500 ms (its call is
    // dropped: HTTP/2 resets the stream).
    let mut client = c.linked_roles.clone();
    let gone = tokio::time::timeout(
        Duration::from_millis(500),
        client.ensure_linked_role(tagged("cut-by-client")),
    )
    .await;
    assert!(gone.is_err(), "the ensure was still running: {gone:?}");
    let event = cut_event(&mut c, HOME, "CANCELLED", "cut-by-client").await;
    assert_eq!(event.resource, name);
    assert!(event.detail.contains("client"), "{event:?}");
    assert!(
        server
            .events_with("request cut short before it answered")
            .len()
            >= 2
    );
}
