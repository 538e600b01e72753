//! EnsureLinkedRole of an ACTIVE role within the confirmation bound
//! (`SLRGOV_ROLE_CONFIRMATION_MAX_AGE`): no IAM call at all, as the audit
//! trail shows; past the bound, IAM is asked again and a role deleted
//! behind the service's back is reported.

use std::time::{Duration, Instant};

use slrgov_proto::slrgov::v1 as pb;
use tonic::Code;

use super::lifecycle_support::{HOME, delete_role, ensure, instance, register};
use super::support::{Clients, Engine, Moto, TestDb, TestServer};

/// The bound the server runs with.
const MAX_AGE: Duration = Duration::from_secs(4);

/// EnsureLinkedRole of `name`, tagged `x-request-id: id`.
async fn ensure_tagged(
    c: &mut Clients,
    name: &str,
    id: &str,
) -> Result<pb::LinkedRole, tonic::Status> {
    let mut request = tonic::Request::new(ensure(name));
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().expect("ascii"));
    c.linked_roles
        .ensure_linked_role(request)
        .await
        .map(tonic::Response::into_inner)
}

/// The IAM operations in the audit events of the request tagged `id` (an
/// ensure that ran its workflow writes one per step).
async fn iam_calls_of(c: &mut Clients, id: &str) -> Vec<(String, String)> {
    let events = c
        .audit
        .list_audit_events(pb::ListAuditEventsRequest {
            parent: format!("accounts/{HOME}"),
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .audit_events;
    let mine: Vec<_> = events.iter().filter(|e| e.request_id == id).collect();
    assert!(!mine.is_empty(), "no audit event for {id}: {events:#?}");
    mine.iter()
        .flat_map(|e| &e.aws_calls)
        .filter(|call| call.service == "iam")
        .map(|call| (call.operation.clone(), call.outcome.clone()))
        .collect()
}

#[tokio::test]
async fn ensures_of_an_active_role_within_the_bound_ask_iam_nothing() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let server =
        TestServer::start_with_moto(&db, &moto, &[("SLRGOV_ROLE_CONFIRMATION_MAX_AGE", "4s")])
            .await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let name = instance(&mut c, &moto, HOME, "us-east-1").await;

    let first = ensure_tagged(&mut c, &name, "create")
        .await
        .expect("create");
    assert_eq!(first.state, pb::linked_role::State::Active as i32);
    let created = iam_calls_of(&mut c, "create").await;
    assert!(
        created.contains(&("CreateServiceLinkedRole".into(), "OK".into())),
        "{created:?}"
    );
    let confirmed_at = Instant::now();

    // Within the bound: the same answer, and not one IAM call.
    for n in 0..3 {
        let id = format!("again-{n}");
        let again = ensure_tagged(&mut c, &name, &id).await.expect("again");
        assert_eq!(again, first, "an ACTIVE role is returned unchanged");
        assert_eq!(iam_calls_of(&mut c, &id).await, vec![], "{id}");
    }

    // What the bound gives up: a role deleted behind the service's back is
    // still answered ACTIVE until the bound runs out...
    let home_iam = moto.iam(None).await;
    let role_name = first.role_name.clone();
    delete_role(&home_iam, &role_name).await;
    if confirmed_at.elapsed() < MAX_AGE - Duration::from_millis(500) {
        let stale = ensure_tagged(&mut c, &name, "stale").await.expect("stale");
        assert_eq!(stale, first);
        assert_eq!(iam_calls_of(&mut c, "stale").await, vec![]);
    }

    // ...then IAM is asked, and the drift is reported.
    tokio::time::sleep(MAX_AGE.saturating_sub(confirmed_at.elapsed())).await;
    let status = ensure_tagged(&mut c, &name, "past")
        .await
        .expect_err("the role is gone");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("missing or replaced"),
        "{status:?}"
    );
    let calls = iam_calls_of(&mut c, "past").await;
    assert!(
        calls.iter().any(|(op, _)| op == "GetRole"),
        "past the bound, IAM is asked: {calls:?}"
    );
}

#[tokio::test]
async fn a_bound_of_zero_asks_iam_every_time() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let server =
        TestServer::start_with_moto(&db, &moto, &[("SLRGOV_ROLE_CONFIRMATION_MAX_AGE", "0s")])
            .await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let name = instance(&mut c, &moto, HOME, "us-east-1").await;
    ensure_tagged(&mut c, &name, "create")
        .await
        .expect("create");
    for n in 0..2 {
        let id = format!("again-{n}");
        ensure_tagged(&mut c, &name, &id).await.expect("again");
        assert_eq!(
            iam_calls_of(&mut c, &id).await,
            vec![("GetRole".to_owned(), "OK".to_owned())],
            "{id}"
        );
    }
}
