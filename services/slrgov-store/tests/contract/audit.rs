//! The audit trail: an event in the same transaction as every change, with
//! the AWS calls the request made; failures recorded on request; newest
//! first, filtered, paged, scoped like everything else; append-only.

use std::sync::Arc;
use std::time::Duration;

use slrgov_domain::audit::{AuditEvent, AuditFilter, AwsCall, NewAuditEvent};
use slrgov_domain::model::{AccountPatch, ExternalIdChange, InstancePatch, ObservedRole};
use slrgov_domain::names::account_name;
use slrgov_domain::types::{AccountId, InstanceAlias};
use slrgov_domain::{Error, Kind, Reason, RequestContext, Role};

use crate::support::*;

/// The local operator calling `method`.
fn admin_calling(method: &str) -> RequestContext {
    admin().with_method(format!("slrgov.v1.{method}"))
}

fn call(operation: &str, outcome: &str, request_id: &str) -> AwsCall {
    AwsCall {
        service: "iam".to_owned(),
        operation: operation.to_owned(),
        outcome: outcome.to_owned(),
        aws_request_id: Some(request_id.to_owned()),
    }
}

fn audit_filter(text: &str) -> AuditFilter {
    AuditFilter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Every event of `account` visible to `ctx`, newest first, `size` a page.
async fn trail(
    store: &Arc<dyn Store>,
    ctx: &RequestContext,
    account: &AccountId,
    filter: &AuditFilter,
    size: i32,
) -> Vec<AuditEvent> {
    let mut events = Vec::new();
    let mut token = String::new();
    for _ in 0..1000 {
        let got = store
            .audit_list(ctx, account, filter, &page(size, &token))
            .await
            .expect("audit_list");
        assert!(got.items.len() <= size as usize, "page larger than asked");
        events.extend(got.items);
        if got.next_page_token.is_empty() {
            return events;
        }
        token = got.next_page_token;
    }
    panic!("audit_list never ended");
}

fn methods(events: &[AuditEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.method.rsplit('/').next().unwrap_or_default().to_owned())
        .collect()
}

pub async fn case_audit_event_per_mutation(store: Arc<dyn Store>) {
    let a = account_id(1);
    let ctx = admin_calling("AccountService/CreateAccount");
    let account = store
        .account_create(&ctx, new_account(1), None)
        .await
        .expect("create account");
    let events = trail(&store, &admin(), &a, &AuditFilter::default(), 50).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let created = &events[0];
    assert_eq!(created.method, "slrgov.v1.AccountService/CreateAccount");
    assert_eq!(created.principal, "local-operator");
    assert_eq!(created.resource, account_name(&a));
    assert_eq!(created.outcome, "OK");
    assert_eq!(created.request_id, "test");
    assert_eq!(created.account_id, a);
    assert!(
        created
            .name()
            .starts_with(&format!("accounts/{a}/auditEvents/")),
        "{}",
        created.name()
    );
    assert!(
        created.detail.contains(&account.display_name),
        "{created:?}"
    );
    assert!(
        !format!("{created:?}").contains("ext-secret"),
        "the external id leaked into the trail: {created:?}"
    );
    assert!(created.aws_calls.is_empty());

    // The AWS calls a request made are written with its change, then no
    // longer pending.
    let k = key(&a, &instance_id(1));
    let ctx = admin_calling("InstanceService/CreateInstance");
    ctx.audit
        .push_call(call("GetCallerIdentity", "OK", "req-sts-1"));
    store
        .instance_create(&ctx, new_instance(&a, &k.instance_id, "us-east-1"), None)
        .await
        .expect("create instance");
    assert_eq!(ctx.audit.pending_calls(), 0, "the call was written");
    assert!(ctx.audit.recorded());

    // A change that fails writes nothing, and its calls stay pending for
    // the request's failure event.
    let ctx = admin_calling("InstanceService/CreateInstance");
    ctx.audit
        .push_call(call("GetRole", "NoSuchEntity", "req-2"));
    expect_err(
        store
            .instance_create(&ctx, new_instance(&a, &k.instance_id, "us-east-1"), None)
            .await,
        Kind::AlreadyExists,
        Reason::AlreadyExists,
    );
    assert_eq!(ctx.audit.pending_calls(), 1, "a rolled-back call was lost");
    assert!(!ctx.audit.recorded());
    store
        .audit_append(
            &ctx,
            NewAuditEvent {
                account_id: a.clone(),
                resource: k.name(),
                outcome: "ALREADY_EXISTS".to_owned(),
                detail: "ALREADY_EXISTS: it exists".to_owned(),
            },
        )
        .await
        .expect("append the failure");
    assert_eq!(ctx.audit.pending_calls(), 0);

    // Every other mutation.
    let ctx = admin_calling("AccountService/UpdateAccount");
    store
        .account_update(
            &ctx,
            &a,
            None,
            AccountPatch {
                display_name: Some("renamed".into()),
                access_role_arn: None,
                external_id: ExternalIdChange::Set(slrgov_domain::model::ExternalId::new(
                    "ext-secret-new".to_owned(),
                )),
            },
        )
        .await
        .expect("update account");
    let ctx = admin_calling("InstanceService/UpdateInstance");
    let patch = InstancePatch {
        instance_alias: Some(Some(InstanceAlias::parse("renamed").expect("alias"))),
        ..InstancePatch::default()
    };
    store
        .instance_update(&ctx, &k, None, patch, None)
        .await
        .expect("update instance");
    let ctx = admin_calling("LinkedRoleService/EnsureLinkedRole");
    let started = store
        .linked_role_begin_ensure(
            &ctx,
            ensure_start(&k, "abc"),
            "owner-1",
            Duration::from_secs(60),
            None,
        )
        .await
        .expect("begin the ensure");
    let EnsureStart::Claimed(ensure) = started else {
        panic!("expected a new workflow, got {started:?}");
    };
    ctx.audit
        .push_call(call("CreateServiceLinkedRole", "OK", "req-create"));
    ctx.audit.push_call(call("GetRole", "OK", "req-get"));
    let arn = format!(
        "arn:aws:iam::{a}:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect_abc"
    );
    store
        .linked_role_activate(
            &ctx,
            &held(&ensure),
            &k,
            ObservedRole {
                role_name: "AWSServiceRoleForAmazonConnect_abc".to_owned(),
                role_arn: arn.clone(),
                role_id: "AROAABC".to_owned(),
                path: "/aws-service-role/connect.amazonaws.com/".to_owned(),
                description: None,
                iam_create_time: None,
                last_used_time: None,
                last_used_region: None,
            },
            false,
            false,
        )
        .await
        .expect("activate");
    assert_eq!(
        ctx.audit.pending_calls(),
        0,
        "the calls went with the activation"
    );
    // The workflow ends: an event of its own, without the calls again.
    store
        .workflow_save(
            &ctx,
            &ensure.id,
            "owner-1",
            update_of(&ensure, Phase::Succeeded),
        )
        .await
        .expect("finish the ensure");
    let ctx = admin_calling("LinkedRoleService/UpdateLinkedRoleDescription");
    store
        .linked_role_set_description(&ctx, &k, None, "new words", None)
        .await
        .expect("describe");
    let ctx = admin_calling("LinkedRoleService/RetireLinkedRole");
    let start = retire_start(
        WorkflowKind::Retire,
        &k,
        "AWSServiceRoleForAmazonConnect_abc",
    );
    let started = store
        .linked_role_begin_retire(&ctx, start, None, None)
        .await
        .expect("retire");
    let RetireStart::Started(operation) = started else {
        panic!("expected a retirement, got {started:?}");
    };

    let events = trail(&store, &admin(), &a, &AuditFilter::default(), 3).await;
    assert_eq!(
        methods(&events),
        [
            "RetireLinkedRole",
            "UpdateLinkedRoleDescription",
            "EnsureLinkedRole",
            "EnsureLinkedRole",
            "EnsureLinkedRole",
            "UpdateInstance",
            "UpdateAccount",
            "CreateInstance",
            "CreateInstance",
            "CreateAccount",
        ],
        "newest first, one per change (and the appended failure)"
    );
    assert!(
        events.windows(2).all(|w| w[0].time >= w[1].time),
        "not newest first"
    );
    assert!(events[0].detail.contains(&operation.id));
    assert!(events[2].detail.contains(&ensure.id), "{:?}", events[2]);
    assert!(
        events[2].aws_calls.is_empty(),
        "the calls were written once"
    );
    assert!(events[4].detail.contains(&ensure.id), "{:?}", events[4]);
    let activation = &events[3];
    assert!(activation.detail.contains(&arn), "{activation:?}");
    assert_eq!(
        activation
            .aws_calls
            .iter()
            .map(|c| c.aws_request_id.as_deref().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["req-create", "req-get"],
        "the IAM calls go with the change they caused"
    );
    let failure = &events[7];
    assert_eq!(failure.outcome, "ALREADY_EXISTS");
    assert_eq!(
        failure.aws_calls,
        [call("GetRole", "NoSuchEntity", "req-2")]
    );
    assert_eq!(
        events[8].aws_calls,
        [call("GetCallerIdentity", "OK", "req-sts-1")]
    );
    let update = &events[6];
    assert!(update.detail.contains("external_id replaced"), "{update:?}");
    assert!(
        !format!("{events:?}").contains("ext-secret"),
        "a secret leaked into the trail"
    );

    // Filters: the short or the full method, outcome, principal, resource.
    for (text, expected) in [
        ("method = \"CreateInstance\"", 2),
        ("method = \"slrgov.v1.InstanceService/CreateInstance\"", 2),
        ("method = \"Instance\"", 0),
        ("method = \"ServiceCreateInstance\"", 0),
        ("outcome = ALREADY_EXISTS", 1),
        ("outcome = OK", 9),
        ("principal = \"local-operator\" AND outcome = OK", 9),
        ("principal = \"someone-else\"", 0),
        (&format!("resource = \"{}\"", account_name(&a)), 2),
    ] {
        let got = trail(&store, &admin(), &a, &audit_filter(text), 2).await;
        assert_eq!(got.len(), expected, "{text}: {got:?}");
    }

    // A page token belongs to its filter.
    let first = store
        .audit_list(&admin(), &a, &AuditFilter::default(), &page(2, ""))
        .await
        .expect("first page");
    assert!(!first.next_page_token.is_empty());
    assert_bad_page_token(
        store
            .audit_list(
                &admin(),
                &a,
                &audit_filter("outcome = OK"),
                &page(2, &first.next_page_token),
            )
            .await,
    );

    // A step of a workflow the caller does not hold writes nothing.
    let worker = admin_calling("worker/operations/advance");
    worker
        .audit
        .push_call(call("DeleteServiceLinkedRole", "OK", "req-del"));
    expect_err(
        store
            .workflow_save(
                &worker,
                &operation.id,
                "nobody",
                update_of(&operation, Phase::Running),
            )
            .await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );
    assert_eq!(
        worker.audit.pending_calls(),
        1,
        "a refused step's call stays pending"
    );
    let events_after = trail(&store, &admin(), &a, &AuditFilter::default(), 50)
        .await
        .len();
    assert_eq!(events_after, 10, "a refused step wrote nothing");
}

pub async fn case_audit_scope(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    create_instance(&store, &b, &instance_id(1), "us-east-1").await;
    let viewer_a = caller("viewer-a", Role::Viewer, only(&[&a]));
    let admin_b = caller("admin-b", Role::Admin, only(&[&b]));

    // A viewer reads its account's trail; another account is NOT_FOUND,
    // exactly like one that does not exist.
    let mine = trail(&store, &viewer_a, &a, &AuditFilter::default(), 10).await;
    assert_eq!(mine.len(), 1);
    let hidden = store
        .audit_list(&viewer_a, &b, &AuditFilter::default(), &page(10, ""))
        .await
        .expect_err("another tenant's trail");
    assert_eq!(hidden, Error::not_found(account_name(&b)));
    let missing = account_id(9);
    let never = store
        .audit_list(&viewer_a, &missing, &AuditFilter::default(), &page(10, ""))
        .await
        .expect_err("an account outside the scope");
    assert_eq!(never, Error::not_found(account_name(&missing)));

    // A failure event can only land in an account the caller sees.
    let refused = store
        .audit_append(
            &admin_b,
            NewAuditEvent {
                account_id: a.clone(),
                resource: account_name(&a),
                outcome: "NOT_FOUND".to_owned(),
                detail: "probe".to_owned(),
            },
        )
        .await
        .expect_err("another tenant's trail");
    assert_eq!(refused.kind, Kind::NotFound);
    assert_eq!(
        trail(&store, &admin(), &a, &AuditFilter::default(), 10)
            .await
            .len(),
        1,
        "the probe landed in A's trail"
    );

    // A viewer's refused write is recorded by the caller's layer; the store
    // writes no event for it.
    let viewer_b = caller("viewer-b", Role::Viewer, only(&[&b]));
    expect_err(
        store
            .instance_create(
                &viewer_b,
                new_instance(&b, &instance_id(2), "us-east-1"),
                None,
            )
            .await,
        Kind::PermissionDenied,
        Reason::PermissionDenied,
    );
    let b_trail = trail(&store, &admin(), &b, &AuditFilter::default(), 10).await;
    assert_eq!(
        methods(&b_trail).len(),
        2,
        "account and instance creation only: {b_trail:?}"
    );
}

pub async fn case_audit_is_append_only(db: &TestDb) {
    let store = db.open().await;
    let a = create_account(&store, 1).await.account_id;
    assert_eq!(
        trail(&store, &admin(), &a, &AuditFilter::default(), 10)
            .await
            .len(),
        1
    );
    // Not even the database's superuser rewrites history through SQL.
    for sql in [
        "UPDATE audit_events SET outcome = 'OK', detail = 'rewritten'",
        "DELETE FROM audit_events",
    ] {
        let result = db.try_execute(sql).await;
        assert!(result.is_err(), "{sql} was accepted: {result:?}");
        let error = result.expect_err("refused");
        assert!(error.contains("append-only"), "{sql}: {error}");
    }
    let events = trail(&store, &admin(), &a, &AuditFilter::default(), 10).await;
    assert_eq!(events.len(), 1);
    assert_ne!(events[0].detail, "rewritten");
    // Deleting the account keeps its trail.
    store
        .account_delete(&admin_calling("AccountService/DeleteAccount"), &a, None)
        .await
        .expect("delete account");
    let events = trail(&store, &admin(), &a, &AuditFilter::default(), 10).await;
    assert_eq!(methods(&events), ["DeleteAccount", ""]);
}
