//! Request ids beyond the mutations that claim them: the look-up and record
//! of answers for the RPCs that check before calling AWS, expiry and the
//! sweep, and the id of an ensure whose workflow failed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use slrgov_domain::model::Instance;
use slrgov_domain::{Kind, Reason, Role};
use slrgov_store::{Idempotency, StoreConfig};

use crate::support::*;

pub async fn case_request_id_lookup_record(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let k = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let ctx = admin();
    let id = idem_for("EnsureLinkedRole", "ens-1", "fp");
    let answer = json!({"state": "ACTIVE", "n": 1});

    assert_eq!(
        store
            .request_id_lookup(&ctx, &a, &id)
            .await
            .expect("lookup"),
        None
    );
    let recorded = store.request_id_record(&ctx, &a, &id, answer.clone()).await;
    assert_eq!(recorded.expect("record"), None, "recorded");
    let first = Some(Replay::Response(answer.clone()));
    assert_eq!(
        store
            .request_id_lookup(&ctx, &a, &id)
            .await
            .expect("lookup"),
        first
    );
    // A second answer (a concurrent retry): the first wins.
    let again = store
        .request_id_record(&ctx, &a, &id, json!({"n": 2}))
        .await;
    assert_eq!(again.expect("record"), first);
    assert_eq!(
        store
            .request_id_lookup(&ctx, &a, &id)
            .await
            .expect("lookup"),
        first
    );
    // Other parameters: REQUEST_ID_REUSED. Another account: another id.
    let other = idem_for("EnsureLinkedRole", "ens-1", "fp-2");
    for result in [
        store.request_id_lookup(&ctx, &a, &other).await,
        store.request_id_record(&ctx, &a, &other, json!({})).await,
    ] {
        expect_err(result, Kind::InvalidArgument, Reason::RequestIdReused);
    }
    assert_eq!(
        store
            .request_id_lookup(&ctx, &b, &id)
            .await
            .expect("lookup"),
        None
    );

    // A request that started a workflow: its id names it.
    let del = idem_for("DeleteInstance", "del-1", "fp");
    let operation = store
        .instance_delete(
            &ctx,
            &k,
            None,
            with_request_id(delete_done(&k), &del),
            Some(&del),
        )
        .await
        .expect("delete");
    let replay = store
        .request_id_lookup(&ctx, &a, &del)
        .await
        .expect("lookup");
    assert_eq!(replay, Some(Replay::Workflow(operation.id.clone())));
    let replay = replay.expect("known");
    assert_eq!(replay.clone().workflow().expect("a workflow"), operation.id);
    expect_err(
        replay.response::<Instance>(),
        Kind::Internal,
        Reason::Internal,
    );
    expect_err(
        Replay::Response(answer).workflow(),
        Kind::Internal,
        Reason::Internal,
    );

    // Another tenant's account: NOT_FOUND, nothing recorded.
    let olga = operator(&[&b]);
    let probe = idem_for("EnsureLinkedRole", "probe", "fp");
    for result in [
        store.request_id_lookup(&olga, &a, &id).await,
        store.request_id_record(&olga, &a, &probe, json!({})).await,
    ] {
        expect_err(result, Kind::NotFound, Reason::NotFound);
    }
    assert_eq!(
        store
            .request_id_lookup(&caller("olga", Role::Operator, only(&[&a])), &a, &probe)
            .await
            .expect("lookup"),
        None
    );
}

pub async fn case_request_id_expiry(db: &TestDb) {
    let mut config = StoreConfig::new(db.url.clone());
    config.request_id_ttl = Duration::from_secs(1);
    let store = db.open_with(config).await;
    let ctx = admin();
    let a = create_account(&store, 1).await.account_id;
    let create = |n: u32, fingerprint: &'static str| {
        let (store, ctx, a) = (store.clone(), ctx.clone(), a.clone());
        async move {
            let new = new_instance(&a, &instance_id(n), "us-east-1");
            store
                .instance_create(
                    &ctx,
                    new,
                    Some(&idem_for("CreateInstance", "exp-1", fingerprint)),
                )
                .await
        }
    };
    let rows = || async {
        db.fetch_text("SELECT CAST(COUNT(*) AS TEXT) FROM request_ids", &[])
            .await
    };
    let first = create(1, "fp-1").await.expect("create");
    expect_err(
        create(2, "fp-2").await,
        Kind::InvalidArgument,
        Reason::RequestIdReused,
    );
    let recorded = idem_for("EnsureLinkedRole", "exp-2", "fp");
    store
        .request_id_record(&ctx, &a, &recorded, json!(1))
        .await
        .expect("record");
    assert_eq!(create(1, "fp-1").await.expect("replay"), first);
    expect_err(
        store.request_id_sweep(&operator(&[&a]), 10).await,
        Kind::PermissionDenied,
        Reason::PermissionDenied,
    );
    assert_eq!(
        store.request_id_sweep(&ctx, 10).await.expect("sweep"),
        0,
        "none expired yet"
    );

    // Expired: unknown to a look-up, and a claim of it is a new request.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let old = idem_for("CreateInstance", "exp-1", "fp-1");
    assert_eq!(
        store
            .request_id_lookup(&ctx, &a, &old)
            .await
            .expect("lookup"),
        None
    );
    let second = create(2, "fp-2")
        .await
        .expect("an expired id is claimed anew");
    assert_eq!(second.instance_id, instance_id(2));
    assert_eq!(create(2, "fp-2").await.expect("replay"), second);
    let fresh = idem_for("EnsureLinkedRole", "exp-3", "fp");
    store
        .request_id_record(&ctx, &a, &fresh, json!(3))
        .await
        .expect("record");

    // The sweep removes the expired ids only, and says how many.
    assert_eq!(rows().await.as_deref(), Some("3"));
    assert_eq!(store.request_id_sweep(&ctx, 10).await.expect("sweep"), 1);
    assert_eq!(rows().await.as_deref(), Some("2"));
    let kept = store
        .request_id_lookup(&ctx, &a, &fresh)
        .await
        .expect("lookup");
    assert_eq!(kept, Some(Replay::Response(json!(3))));
    assert_eq!(store.request_id_sweep(&ctx, 10).await.expect("sweep"), 0);
    // Up to its limit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(store.request_id_sweep(&ctx, 1).await.expect("sweep"), 1);
    assert_eq!(store.request_id_sweep(&ctx, 10).await.expect("sweep"), 1);
    assert_eq!(store.request_id_sweep(&ctx, 10).await.expect("sweep"), 0);
    assert_eq!(rows().await.as_deref(), Some("0"));
}

pub async fn case_ensure_id_after_failed_workflow(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let k = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let ctx = admin();
    let id = idem_for("EnsureLinkedRole", "ens-1", "fp");
    let begin = |owner: &'static str, id: Idempotency| {
        let (store, ctx, k) = (store.clone(), ctx.clone(), k.clone());
        async move {
            let start = with_request_id(ensure_start(&k, "Ens1"), &id);
            store
                .linked_role_begin_ensure(&ctx, start, owner, LONG, Some(&id))
                .await
                .expect("begin")
        }
    };
    let EnsureStart::Claimed(first) = begin("worker-a", id.clone()).await else {
        panic!("expected a new workflow");
    };
    assert_eq!(first.request_id.as_deref(), Some("ens-1"));
    // A retry while it runs: its workflow.
    let replay = Replay::Workflow(first.id.clone());
    assert_eq!(
        begin("worker-b", id.clone()).await,
        EnsureStart::Replayed(replay.clone())
    );
    let known = store
        .request_id_lookup(&ctx, &a, &id)
        .await
        .expect("lookup");
    assert_eq!(known, Some(replay));

    // It failed (and was undone): the id was not used up. The same
    // request starts a new workflow, and the id points at it.
    store
        .linked_role_abandon(&ctx, &held(&first), &k)
        .await
        .expect("abandon");
    finish(&store, &first, Phase::Failed).await;
    let EnsureStart::Claimed(second) = begin("worker-b", id.clone()).await else {
        panic!("expected a new workflow after the failed one");
    };
    assert_ne!(second.id, first.id);
    assert_eq!(second.lease_owner.as_deref(), Some("worker-b"));
    let replay = Replay::Workflow(second.id.clone());
    let known = store
        .request_id_lookup(&ctx, &a, &id)
        .await
        .expect("lookup");
    assert_eq!(known, Some(replay.clone()));
    assert_eq!(
        begin("worker-c", id.clone()).await,
        EnsureStart::Replayed(replay.clone())
    );
    expect_err(
        store
            .linked_role_begin_ensure(
                &ctx,
                ensure_start(&k, "X"),
                "w",
                LONG,
                Some(&idem_for("EnsureLinkedRole", "ens-1", "fp-2")),
            )
            .await,
        Kind::InvalidArgument,
        Reason::RequestIdReused,
    );

    // Once it succeeded, the id keeps its workflow.
    let role = store
        .linked_role_activate(&ctx, &held(&second), &k, observed(&a, "Ens1"), false, false)
        .await
        .expect("activate");
    finish(&store, &second, Phase::Succeeded).await;
    assert_eq!(begin("worker-c", id).await, EnsureStart::Replayed(replay));

    // An ACTIVE role starts nothing and does not keep the id; the caller
    // records its answer, which a retry replays.
    let id2 = idem_for("EnsureLinkedRole", "ens-2", "fp");
    assert_eq!(
        begin("worker-d", id2.clone()).await,
        EnsureStart::Active(Box::new(role.clone()))
    );
    assert_eq!(
        store
            .request_id_lookup(&ctx, &a, &id2)
            .await
            .expect("lookup"),
        None
    );
    let answer = serde_json::to_value(&role).expect("json");
    store
        .request_id_record(&ctx, &a, &id2, answer.clone())
        .await
        .expect("record");
    assert_eq!(
        begin("worker-d", id2).await,
        EnsureStart::Replayed(Replay::Response(answer))
    );
}
