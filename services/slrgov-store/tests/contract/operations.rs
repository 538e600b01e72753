//! Workflows as the API shows them: the Operations list and get (ensures
//! are no operations; another tenant's are NOT_FOUND), the finished
//! `delete` operation DeleteInstance records with the delete, and the
//! telemetry gauges.

use std::sync::Arc;

use serde_json::json;
use slrgov_domain::model::LinkedRoleState;
use slrgov_domain::{Error, Kind, Reason, RequestContext};
use slrgov_store::GaugeRow;

use crate::support::*;

pub async fn case_workflow_operations(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let ka = |n| key(&a, &instance_id(n));
    for n in 1..=3 {
        create_instance(&store, &a, &instance_id(n), "us-east-1").await;
    }
    let kb = create_instance(&store, &b, &instance_id(4), "us-east-1")
        .await
        .key();
    // Ensures (running, finished) are no operations; retirements and
    // deletes are.
    let ensure = claim(&store, &ka(1), "w", "Ens1").await;
    make_active(&store, &ka(2), "Ret2").await;
    let retirement = retire(&store, &ka(2), WorkflowKind::Retire).await;
    let deleted = store
        .instance_delete(&admin(), &ka(3), None, delete_done(&ka(3)), None)
        .await
        .expect("delete");
    make_active(&store, &kb, "Ret4").await;
    let theirs = retire(&store, &kb, WorkflowKind::Delete).await;

    let list = |ctx: RequestContext, size: i32| {
        let store = store.clone();
        async move {
            let mut items = Vec::new();
            let mut token = String::new();
            loop {
                let got = store
                    .workflow_list_operations(&ctx, &page(size, &token))
                    .await
                    .expect("list");
                assert!(got.items.len() <= size as usize);
                items.extend(got.items);
                if got.next_page_token.is_empty() {
                    return items;
                }
                token = got.next_page_token;
            }
        }
    };
    let mut want = vec![retirement.clone(), deleted.clone(), theirs.clone()];
    want.sort_by(|x, y| x.id.cmp(&y.id));
    for size in [1, 2, 50] {
        assert_eq!(list(admin(), size).await, want, "page size {size}");
    }
    let viewer_a = viewer(&[&a]);
    assert_eq!(
        list(viewer_a.clone(), 1).await,
        want.iter()
            .filter(|w| *w.account_id() == a)
            .cloned()
            .collect::<Vec<_>>(),
        "another tenant's operations are hidden"
    );
    // A page token is the caller's own.
    let first = store
        .workflow_list_operations(&admin(), &page(1, ""))
        .await
        .expect("list");
    assert_bad_page_token(
        store
            .workflow_list_operations(&viewer_a, &page(1, &first.next_page_token))
            .await,
    );

    // One workflow: the caller's, ensures included; another tenant's is
    // NOT_FOUND, exactly like a missing one.
    assert_eq!(
        store
            .workflow_get(&viewer_a, &ensure.id)
            .await
            .expect("get"),
        ensure
    );
    assert_eq!(
        store
            .workflow_get(&viewer_a, &deleted.id)
            .await
            .expect("get"),
        deleted
    );
    for id in [theirs.id.as_str(), "no-such-workflow"] {
        let error = store.workflow_get(&viewer_a, id).await.expect_err("hidden");
        assert_eq!(error, Error::not_found(format!("operations/{id}")));
    }
}

pub async fn case_instance_delete_records_workflow(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    for n in 1..=3 {
        create_instance(&store, &a, &instance_id(n), "us-east-1").await;
    }
    let k = |n| key(&a, &instance_id(n));
    let delete = |n, fingerprint: &'static str| {
        let (store, target) = (store.clone(), k(n));
        let id = idem_for("DeleteInstance", "del-1", fingerprint);
        async move {
            let done = with_request_id(delete_done(&target), &id);
            store
                .instance_delete(&admin(), &target, None, done, Some(&id))
                .await
        }
    };

    let record = delete(1, "fp-1").await.expect("delete");
    assert_eq!(
        (record.kind, record.key().ok()),
        (WorkflowKind::Delete, Some(k(1)))
    );
    assert_eq!(record.phase, Phase::Succeeded);
    assert_eq!(record.end_time, Some(record.create_time));
    assert_eq!(
        record.output.clone().unwrap_or_default(),
        json!(null),
        "no output"
    );
    assert_eq!(record.request_id.as_deref(), Some("del-1"));
    assert_eq!(
        (record.inputs.clone(), record.state.clone()),
        (json!({"role_name": ""}), json!({"state": "gone"}))
    );
    assert_eq!(
        (record.lease_owner.clone(), record.error.clone()),
        (None, None)
    );
    assert_eq!(record.principal, "local-operator");
    assert_eq!(get_workflow(&store, &record.id).await, record);
    expect_err(
        store.instance_get(&admin(), &k(1)).await,
        Kind::NotFound,
        Reason::NotFound,
    );
    let listed = store
        .workflow_list_operations(&admin(), &page(10, ""))
        .await
        .expect("list");
    assert_eq!(listed.items, std::slice::from_ref(&record));
    // A retry replays the operation; the same id with other parameters or
    // another method is REQUEST_ID_REUSED.
    assert_eq!(delete(1, "fp-1").await.expect("replay"), record);
    expect_err(
        delete(2, "fp-2").await,
        Kind::InvalidArgument,
        Reason::RequestIdReused,
    );
    let other_method = idem_for("UpdateInstance", "del-1", "fp-1");
    expect_err(
        store
            .instance_update(
                &admin(),
                &k(2),
                None,
                Default::default(),
                Some(&other_method),
            )
            .await,
        Kind::InvalidArgument,
        Reason::RequestIdReused,
    );

    // Refused (a role not retired, a stale etag): no operation, and the id
    // stays free.
    make_active(&store, &k(2), "Act2").await;
    let id2 = idem_for("DeleteInstance", "del-2", "fp-a");
    let done = with_request_id(delete_done(&k(2)), &id2);
    expect_err(
        store
            .instance_delete(&admin(), &k(2), None, done, Some(&id2))
            .await,
        Kind::FailedPrecondition,
        Reason::LinkedRoleNotRetired,
    );
    let done = with_request_id(delete_done(&k(3)), &id2);
    expect_err(
        store
            .instance_delete(
                &admin(),
                &k(3),
                Some(slrgov_domain::types::Revision(7)),
                done,
                Some(&id2),
            )
            .await,
        Kind::Aborted,
        Reason::EtagMismatch,
    );
    let listed = store
        .workflow_list_operations(&admin(), &page(10, ""))
        .await
        .expect("list");
    assert_eq!(listed.items, std::slice::from_ref(&record));
    let id3 = idem_for("DeleteInstance", "del-2", "fp-b");
    let done = with_request_id(delete_done(&k(3)), &id3);
    let second = store
        .instance_delete(&admin(), &k(3), None, done, Some(&id3))
        .await
        .expect("the id of a refused request");
    assert_ne!(second.id, record.id);
}

fn sorted(mut rows: Vec<GaugeRow>) -> Vec<(String, String, u64)> {
    rows.sort_by(|x, y| (&x.kind, &x.state).cmp(&(&y.kind, &y.state)));
    rows.into_iter()
        .map(|r| (r.kind, r.state, r.count))
        .collect()
}

pub async fn case_gauges(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    for n in 1..=4 {
        create_instance(&store, &a, &instance_id(n), "us-east-1").await;
    }
    let kb = create_instance(&store, &b, &instance_id(5), "us-east-1")
        .await
        .key();
    let k = |n| key(&a, &instance_id(n));
    make_active(&store, &k(1), "Act1").await;
    let creating = claim(&store, &k(2), "w", "Cre2").await;
    make_active(&store, &k(3), "Ret3").await;
    let retirement = retire(&store, &k(3), WorkflowKind::Retire).await;
    tick().await;
    let theirs = claim(&store, &kb, "w", "Cre5").await;

    let rows = store.gauges(&admin()).await.expect("gauges");
    let row = |kind: &str, state: &str| {
        rows.iter()
            .find(|r| r.kind == kind && r.state == state)
            .unwrap_or_else(|| panic!("no {kind} {state} in {rows:?}"))
            .clone()
    };
    let text = |s: &str| s.to_owned();
    assert_eq!(
        sorted(rows.clone()),
        [
            (text("linked_role"), text("ACTIVE"), 1),
            (text("linked_role"), text("CREATING"), 2),
            (text("linked_role"), text("DELETING"), 1),
            (text("workflow"), text("ensure"), 2),
            (text("workflow"), text("retire"), 1),
        ]
    );
    assert_eq!(row("workflow", "ensure").oldest, Some(creating.create_time));
    assert_eq!(
        row("workflow", "retire").oldest,
        Some(retirement.create_time)
    );
    let creating_role = get_role(&store, &k(2)).await;
    assert_eq!(
        row("linked_role", "CREATING").oldest,
        Some(creating_role.update_time)
    );
    assert!(rows.iter().all(|r| r.oldest.is_some()));
    assert_eq!(get_role(&store, &k(4)).await.state, LinkedRoleState::Absent);

    // Only what the context sees; an admin's only.
    let scoped = caller("ada", slrgov_domain::Role::Admin, only(&[&b]));
    let rows = store.gauges(&scoped).await.expect("gauges");
    assert_eq!(
        sorted(rows.clone()),
        [
            (text("linked_role"), text("CREATING"), 1),
            (text("workflow"), text("ensure"), 1),
        ]
    );
    assert_eq!(
        rows.iter()
            .find(|r| r.kind == "workflow")
            .and_then(|r| r.oldest),
        Some(theirs.create_time)
    );
    expect_err(
        store.gauges(&operator(&[&a, &b])).await,
        Kind::PermissionDenied,
        Reason::PermissionDenied,
    );
}
