//! The audit trail through the public API, against moto: an event for every
//! mutation of the lifecycle (with the caller's request id and the IAM calls
//! each caused, AWS request ids included), every workflow step that called
//! AWS, the background worker's steps, and a mutation that fails after its
//! IAM call, whose events still carry that call.

use std::collections::BTreeMap;

use slrgov_proto::slrgov::v1 as pb;
use tonic::Code;

use super::support::{Clients, Engine, HOME, Moto, TestDb, TestServer, refused};

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
    // GetRole is throttled six times: the first ensure (which the caller
    // waits 3 s for) creates the role in IAM, then runs out of time while
    // the confirmation is retried (UNAVAILABLE; the workflow goes on).
    let server = TestServer::start_with_moto(
        &db,
        &moto,
        &[
            (
                "SLRGOV_TEST_IAM_FAULTS",
                &serde_json::json!({"throttle": {"get_role": 6}}).to_string(),
            ),
            // Every ensure asks IAM, so that the one that changes nothing
            // shows its GetRole (the bound is tested in `confirmations`).
            ("SLRGOV_ROLE_CONFIRMATION_MAX_AGE", "0s"),
        ],
    )
    .await;
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
    // A legacy Connect instance: the service creates its role.
    let id = moto
        .create_connect_instance(None, "us-east-1", "legacy-audited")
        .await
        .id;
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

    // The failed ensure: the role was made in IAM, the confirmation did not
    // come within the caller's deadline.
    let mut waited = tagged(
        pb::EnsureLinkedRoleRequest {
            name: name.clone(),
            ..Default::default()
        },
        "req-ensure-failed",
    );
    waited.set_timeout(std::time::Duration::from_secs(3));
    let failed = refused(c.linked_roles.ensure_linked_role(waited).await);
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
        .wait_operation(&deleting.name, std::time::Duration::from_secs(30))
        .await;
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

    // One event per change (the ensures: the start, each workflow step that
    // called AWS, the end), named by the full method, with the caller's
    // request id.
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
    for request_id in ["req-ensure-failed", "req-ensure"] {
        let mine = by_request(&events, request_id);
        assert!(!mine.is_empty(), "{request_id}: {mine:#?}");
        for event in &mine {
            assert_eq!(event.method, "slrgov.v1.LinkedRoleService/EnsureLinkedRole");
            assert_eq!(event.principal, "local-operator");
            // The role's events, and what Connect said of the instance
            // when the ensure asked (recorded on the account).
            if event.resource != name {
                assert_eq!(event.resource, format!("accounts/{HOME}"), "{event:#?}");
                assert!(
                    event.detail.starts_with("amazon connect in us-east-1"),
                    "{event:#?}"
                );
            }
        }
        assert!(
            mine.iter().any(|e| e.resource == name),
            "{request_id}: {mine:#?}"
        );
    }
    // The first ensure asked Connect which role the instance uses: the
    // call is in its trail, like the IAM calls.
    assert!(
        by_request(&events, "req-ensure-failed")
            .iter()
            .any(|e| operations(e).contains(&("DescribeInstance".to_owned(), "OK".to_owned()))),
        "DescribeInstance in the trail: {:#?}",
        by_request(&events, "req-ensure-failed")
    );

    // The failed ensure: its events carry the create (with IAM's request
    // id, as moto answered it) and the throttled confirmations, and one of
    // them is the failure the caller got.
    let failed_events = by_request(&events, "req-ensure-failed");
    assert!(
        failed_events
            .iter()
            .any(|e| e.detail.contains("started the ensure workflow")),
        "{failed_events:#?}"
    );
    let failure = failed_events
        .iter()
        .find(|e| e.outcome == "UNAVAILABLE")
        .unwrap_or_else(|| panic!("no failure event: {failed_events:#?}"));
    assert!(failure.detail.contains("IAM_UNAVAILABLE"), "{failure:?}");
    assert!(
        failure.detail.contains("continues in the background"),
        "{failure:?}"
    );
    let calls: Vec<(String, String)> = failed_events.iter().flat_map(|e| operations(e)).collect();
    assert!(
        calls.contains(&("CreateServiceLinkedRole".into(), "OK".into())),
        "{calls:?}"
    );
    assert!(
        calls.contains(&("GetRole".into(), "Throttling".into())),
        "{calls:?}"
    );
    let (with_create, create) = failed_events
        .iter()
        .find_map(|e| {
            e.aws_calls
                .iter()
                .find(|c| c.operation == "CreateServiceLinkedRole")
                .map(|c| (e, c))
        })
        .expect("the create");
    assert!(
        !create.aws_request_id.is_empty(),
        "the IAM request id is kept: {create:?}"
    );
    assert!(with_create.aws_request_ids.contains(&create.aws_request_id));
    // Each call is written once: no call of the failed request appears in
    // two events.
    let mut ids: Vec<&String> = failed_events
        .iter()
        .flat_map(|e| e.aws_calls.iter().map(|c| &c.aws_request_id))
        .filter(|id| !id.is_empty())
        .collect();
    let all = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all, "{failed_events:#?}");

    // The workflow let go by the first ensure is finished once it is due,
    // by whoever claims it first: the successful ensure (taking it over)
    // or a background worker. Either way the trail has its confirmation
    // (GetRole OK) and the role recorded ACTIVE.
    let succeeded: Vec<&pb::AuditEvent> = events
        .iter()
        .filter(|e| {
            e.resource == name
                && (e.request_id == "req-ensure" || e.request_id.starts_with("worker-"))
        })
        .collect();
    assert!(
        succeeded
            .iter()
            .any(|e| e.detail.contains("took over the ensure workflow")
                || e.request_id.starts_with("worker-")),
        "{succeeded:#?}"
    );

    let activation = succeeded
        .iter()
        .find(|e| e.detail.contains("ACTIVE"))
        .expect("the activation");
    assert_eq!(activation.outcome, "OK");
    assert!(activation.detail.contains(&role.role_arn), "{activation:?}");
    assert!(
        succeeded
            .iter()
            .flat_map(|e| operations(e))
            .any(|call| call == ("GetRole".into(), "OK".into())),
        "{succeeded:#?}"
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
        .filter(|e| e.principal == "service:workflows")
        .collect();
    assert!(!worker.is_empty(), "no worker events: {events:#?}");
    assert!(
        worker
            .iter()
            .all(|e| e.method.starts_with("worker/workflows"))
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
    assert_eq!(
        ensures.len(),
        events
            .iter()
            .filter(|e| e.method.ends_with("/EnsureLinkedRole"))
            .count()
    );
    assert!(ensures.len() >= 5, "{ensures:#?}");
    let failures = trail(&mut c, HOME, "outcome = UNAVAILABLE").await;
    assert_eq!(failures.len(), 1);
    let by_worker = trail(&mut c, HOME, "principal = \"service:workflows\"").await;
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
    // (The account is gone: a read of it is NOT_FOUND, and writes nothing.)
    let gone = refused(
        c.accounts
            .get_account(pb::GetAccountRequest {
                name: format!("accounts/{HOME}"),
            })
            .await,
    );
    assert_eq!(gone.code, Code::NotFound);
    assert_eq!(trail(&mut c, HOME, "").await.len(), before);

    // Every event is OK but the one failure the caller saw.
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for event in &events {
        *outcomes.entry(event.outcome.clone()).or_default() += 1;
    }
    assert_eq!(
        outcomes.keys().map(String::as_str).collect::<Vec<_>>(),
        ["OK", "UNAVAILABLE"],
        "{outcomes:?}"
    );
    assert_eq!(outcomes["UNAVAILABLE"], 1, "{outcomes:?}");
}

#[tokio::test]
async fn audit_trail_of_the_lifecycle_postgres() {
    audit_trail_of_the_lifecycle(Engine::Postgres).await;
}

#[tokio::test]
async fn audit_trail_of_the_lifecycle_sqlite() {
    audit_trail_of_the_lifecycle(Engine::Sqlite).await;
}
