//! The audit trail through the public API, against moto: an event for every
//! mutation of the lifecycle (with the caller's request id and the IAM calls
//! each caused, AWS request ids included), the background worker's steps,
//! and a mutation that fails after its IAM call, whose event still carries
//! that call.

use std::collections::BTreeMap;

use slrgov_proto::slrgov::v1 as pb;
use tonic::Code;

use super::support::{Clients, Engine, Moto, TestDb, TestServer, instance_id, refused};

const HOME: &str = "123456789012";

/// A request carrying `x-request-id: id`.
fn tagged<T>(message: T, id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().expect("ascii"));
    request
}

/// Every event of `account` matching `filter`, newest first.
async fn trail(c: &mut Clients, account: &str, filter: &str) -> Vec<pb::AuditEvent> {
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = c
            .audit
            .list_audit_events(pb::ListAuditEventsRequest {
                parent: format!("accounts/{account}"),
                page_size: 7,
                page_token,
                filter: filter.to_owned(),
            })
            .await
            .expect("list audit events")
            .into_inner();
        assert!(page.audit_events.len() <= 7);
        events.extend(page.audit_events);
        if page.next_page_token.is_empty() {
            return events;
        }
        page_token = page.next_page_token;
    }
}

/// The event written for the request tagged `id` (exactly one).
fn by_request<'a>(events: &'a [pb::AuditEvent], id: &str) -> Vec<&'a pb::AuditEvent> {
    events.iter().filter(|e| e.request_id == id).collect()
}

fn stamp(event: &pb::AuditEvent) -> (i64, i32) {
    let time = event.time.expect("every event has a time");
    (time.seconds, time.nanos)
}

fn operations(event: &pb::AuditEvent) -> Vec<(String, String)> {
    event
        .aws_calls
        .iter()
        .map(|c| (c.operation.clone(), c.outcome.clone()))
        .collect()
}

async fn audit_trail_of_the_lifecycle(engine: Engine) {
    use slrgov_proto::google::longrunning::operation::Result as OpResult;
    let moto = Moto::start().await;
    let db = TestDb::new(engine).await;
    // GetRole is throttled six times: the first ensure creates the role in
    // IAM, then gives up confirming it (IAM_UNAVAILABLE).
    let mut env = moto.env();
    env.push((
        "SLRGOV_TEST_IAM_FAULTS",
        serde_json::json!({"throttle": {"get_role": 6}}).to_string(),
    ));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(&db, &env).await;
    let mut c = server.clients().await;

    c.accounts
        .create_account(tagged(
            pb::CreateAccountRequest {
                account_id: HOME.into(),
                account: Some(pb::Account {
                    display_name: "Home".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "req-create-account",
        ))
        .await
        .expect("account");
    let id = instance_id();
    let instance_name = format!("accounts/{HOME}/instances/{id}");
    let name = format!("{instance_name}/linkedRole");
    c.instances
        .create_instance(tagged(
            pb::CreateInstanceRequest {
                parent: format!("accounts/{HOME}"),
                instance_id: id.clone(),
                instance: Some(pb::Instance {
                    region: "us-east-1".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "req-create-instance",
        ))
        .await
        .expect("instance");
    let instance = c
        .instances
        .update_instance(tagged(
            pb::UpdateInstanceRequest {
                instance: Some(pb::Instance {
                    name: instance_name.clone(),
                    instance_alias: "renamed".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["instance_alias".into()],
                }),
                ..Default::default()
            },
            "req-update-instance",
        ))
        .await
        .expect("update instance")
        .into_inner();
    assert_eq!(instance.instance_alias, "renamed");

    // The failed ensure: the role was made in IAM, the confirmation failed.
    let failed = refused(
        c.linked_roles
            .ensure_linked_role(tagged(
                pb::EnsureLinkedRoleRequest {
                    name: name.clone(),
                    ..Default::default()
                },
                "req-ensure-failed",
            ))
            .await,
    );
    assert_eq!(
        (failed.code, failed.reason.as_str()),
        (Code::Unavailable, "IAM_UNAVAILABLE")
    );
    let roles = moto.connect_roles(&moto.iam(None).await).await;
    assert_eq!(roles.len(), 1, "the create reached IAM");

    let role = c
        .linked_roles
        .ensure_linked_role(tagged(
            pb::EnsureLinkedRoleRequest {
                name: name.clone(),
                ..Default::default()
            },
            "req-ensure",
        ))
        .await
        .expect("ensure")
        .into_inner();
    // Again: nothing to change, still one event.
    c.linked_roles
        .ensure_linked_role(tagged(
            pb::EnsureLinkedRoleRequest {
                name: name.clone(),
                ..Default::default()
            },
            "req-ensure-again",
        ))
        .await
        .expect("ensure again");
    let described = c
        .linked_roles
        .update_linked_role_description(tagged(
            pb::UpdateLinkedRoleDescriptionRequest {
                name: name.clone(),
                description: "Connect role of the audit test".into(),
                etag: role.etag.clone(),
                ..Default::default()
            },
            "req-describe",
        ))
        .await
        .expect("describe")
        .into_inner();
    let deleting = c
        .instances
        .delete_instance(tagged(
            pb::DeleteInstanceRequest {
                name: instance_name.clone(),
                ..Default::default()
            },
            "req-delete-instance",
        ))
        .await
        .expect("delete instance")
        .into_inner();
    let done = c
        .operations
        .wait_operation(slrgov_proto::google::longrunning::WaitOperationRequest {
            name: deleting.name.clone(),
            timeout: Some(prost_types::Duration {
                seconds: 30,
                nanos: 0,
            }),
        })
        .await
        .expect("wait")
        .into_inner();
    assert!(
        matches!(done.result, Some(OpResult::Response(_))),
        "{done:?}"
    );
    c.accounts
        .delete_account(tagged(
            pb::DeleteAccountRequest {
                name: format!("accounts/{HOME}"),
                ..Default::default()
            },
            "req-delete-account",
        ))
        .await
        .expect("delete account");

    // The trail outlives the account.
    let events = trail(&mut c, HOME, "").await;
    assert!(
        events
            .windows(2)
            .all(|w| w[0].name > w[1].name && stamp(&w[0]) >= stamp(&w[1])),
        "newest first"
    );
    for event in &events {
        assert!(
            event
                .name
                .starts_with(&format!("accounts/{HOME}/auditEvents/")),
            "{event:?}"
        );
        assert!(!event.principal.is_empty() && !event.method.is_empty());
    }

    // One event (or one per transaction) per mutation, named by the full
    // method, with the caller's request id.
    let expect = [
        (
            "req-create-account",
            "slrgov.v1.AccountService/CreateAccount",
            1,
        ),
        (
            "req-create-instance",
            "slrgov.v1.InstanceService/CreateInstance",
            1,
        ),
        (
            "req-update-instance",
            "slrgov.v1.InstanceService/UpdateInstance",
            1,
        ),
        // the claim, giving it up, then the failure
        (
            "req-ensure-failed",
            "slrgov.v1.LinkedRoleService/EnsureLinkedRole",
            3,
        ),
        // claim, then the activation
        (
            "req-ensure",
            "slrgov.v1.LinkedRoleService/EnsureLinkedRole",
            2,
        ),
        (
            "req-ensure-again",
            "slrgov.v1.LinkedRoleService/EnsureLinkedRole",
            1,
        ),
        (
            "req-describe",
            "slrgov.v1.LinkedRoleService/UpdateLinkedRoleDescription",
            1,
        ),
        (
            "req-delete-instance",
            "slrgov.v1.InstanceService/DeleteInstance",
            1,
        ),
        (
            "req-delete-account",
            "slrgov.v1.AccountService/DeleteAccount",
            1,
        ),
    ];
    for (request_id, method, count) in expect {
        let mine = by_request(&events, request_id);
        assert_eq!(mine.len(), count, "{request_id}: {mine:#?}");
        for event in &mine {
            assert_eq!(event.method, method, "{request_id}");
            assert_eq!(event.principal, "local-operator");
        }
    }

    // The failed ensure: its failure event carries the create (with IAM's
    // request id, as moto answered it) and the throttled confirmations.
    let failed_events = by_request(&events, "req-ensure-failed");
    let failure = failed_events
        .iter()
        .find(|e| e.outcome == "UNAVAILABLE")
        .unwrap_or_else(|| panic!("no failure event: {failed_events:#?}"));
    assert_eq!(failure.resource, name);
    assert!(failure.detail.contains("IAM_UNAVAILABLE"), "{failure:?}");
    let calls = operations(failure);
    assert!(
        calls.contains(&("CreateServiceLinkedRole".into(), "OK".into())),
        "{calls:?}"
    );
    assert!(
        calls.contains(&("GetRole".into(), "Throttling".into())),
        "{calls:?}"
    );
    let create = failure
        .aws_calls
        .iter()
        .find(|c| c.operation == "CreateServiceLinkedRole")
        .expect("the create");
    assert!(
        !create.aws_request_id.is_empty(),
        "the IAM request id is kept: {create:?}"
    );
    assert!(failure.aws_request_ids.contains(&create.aws_request_id));

    // The successful ensure: the activation carries the confirmation.
    let activation = by_request(&events, "req-ensure")
        .into_iter()
        .find(|e| e.detail.contains("ACTIVE"))
        .expect("the activation");
    assert_eq!(activation.outcome, "OK");
    assert!(activation.detail.contains(&role.role_arn), "{activation:?}");
    assert!(
        operations(activation).contains(&("GetRole".into(), "OK".into())),
        "{activation:?}"
    );
    // The ensure that changed nothing still says what it asked IAM.
    let again = by_request(&events, "req-ensure-again")[0];
    assert!(again.detail.contains("changed nothing"), "{again:?}");
    assert!(
        operations(again).contains(&("GetRole".into(), "OK".into())),
        "{again:?}"
    );
    let describe = by_request(&events, "req-describe")[0];
    assert!(
        operations(describe).contains(&("UpdateRoleDescription".into(), "OK".into())),
        "{describe:?}"
    );
    assert!(describe.detail.contains(&described.description));

    // The background worker's steps: its own principal and method, with the
    // deletion calls.
    let worker: Vec<_> = events
        .iter()
        .filter(|e| e.principal == "service:operations")
        .collect();
    assert!(!worker.is_empty(), "no worker events: {events:#?}");
    assert!(
        worker
            .iter()
            .all(|e| e.method.starts_with("worker/operations"))
    );
    let worker_calls: Vec<String> = worker
        .iter()
        .flat_map(|e| e.aws_calls.iter().map(|c| c.operation.clone()))
        .collect();
    assert!(
        worker_calls.contains(&"DeleteServiceLinkedRole".to_owned()),
        "{worker_calls:?}"
    );
    assert!(
        worker
            .iter()
            .any(|e| e.detail.contains(&deleting.name.replace("operations/", ""))),
        "{worker:#?}"
    );

    // Filters.
    let ensures = trail(&mut c, HOME, "method = \"EnsureLinkedRole\"").await;
    assert_eq!(ensures.len(), 6);
    let failures = trail(&mut c, HOME, "outcome = UNAVAILABLE").await;
    assert_eq!(failures.len(), 1);
    let by_worker = trail(&mut c, HOME, "principal = \"service:operations\"").await;
    assert_eq!(by_worker.len(), worker.len());

    // Bad requests name their field.
    for (request, field) in [
        (
            pb::ListAuditEventsRequest {
                parent: "accounts/12".into(),
                ..Default::default()
            },
            "parent",
        ),
        (
            pb::ListAuditEventsRequest {
                parent: format!("accounts/{HOME}"),
                filter: "time > 3".into(),
                ..Default::default()
            },
            "filter",
        ),
        (
            pb::ListAuditEventsRequest {
                parent: format!("accounts/{HOME}"),
                page_size: -1,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::ListAuditEventsRequest {
                parent: format!("accounts/{HOME}"),
                page_token: "forged".into(),
                ..Default::default()
            },
            "page_token",
        ),
    ] {
        let bad = refused(c.audit.list_audit_events(request).await);
        assert_eq!(bad.code, Code::InvalidArgument);
        assert_eq!(bad.fields, [field], "{bad:?}");
    }

    // Reads write nothing.
    let before = trail(&mut c, HOME, "").await.len();
    c.regions
        .list_regions(pb::ListRegionsRequest::default())
        .await
        .expect("regions");
    let _ = c
        .accounts
        .get_account(pb::GetAccountRequest {
            name: format!("accounts/{HOME}"),
        })
        .await;
    assert_eq!(trail(&mut c, HOME, "").await.len(), before);

    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for event in &events {
        *outcomes.entry(event.outcome.clone()).or_default() += 1;
    }
    eprintln!("audit events by outcome: {outcomes:?}");
}

#[tokio::test]
async fn audit_trail_of_the_lifecycle_postgres() {
    audit_trail_of_the_lifecycle(Engine::Postgres).await;
}

#[tokio::test]
async fn audit_trail_of_the_lifecycle_sqlite() {
    audit_trail_of_the_lifecycle(Engine::Sqlite).await;
}
