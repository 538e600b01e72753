//! AIP-155 request ids, one rule for every RPC that takes one: replays of
//! the first answer, reuse with other parameters or another method, ids per
//! account and per principal, failures that do not burn the id, and
//! concurrent retries. Look-ups, expiry and ensures are in `request_ids.rs`.

use std::sync::Arc;

use serde_json::json;
use slrgov_domain::model::{AccountPatch, ExternalIdChange, Instance, InstancePatch};
use slrgov_domain::names::AccountSelector;
use slrgov_domain::types::{InstanceAlias, Partition, Revision};
use slrgov_domain::{Kind, Reason, Role};

use crate::support::*;

fn alias(value: &str) -> InstancePatch {
    InstancePatch {
        instance_alias: Some(Some(InstanceAlias::parse(value).expect("alias"))),
        ..InstancePatch::default()
    }
}

pub async fn case_request_id_replays_first_response(store: Arc<dyn Store>) {
    let ctx = admin();

    // CreateAccount.
    let a = account_id(1);
    let first = store
        .account_create(&ctx, new_account(1), Some(&idem("create-a", "fp-a")))
        .await
        .expect("create");
    tick().await;
    let changed = store
        .account_update(
            &ctx,
            &a,
            None,
            AccountPatch {
                display_name: Some("changed since".into()),
                access_role_arn: None,
                external_id: ExternalIdChange::Keep,
            },
        )
        .await
        .expect("update");
    assert_eq!(changed.revision, Revision(2));
    let replay = store
        .account_create(&ctx, new_account(1), Some(&idem("create-a", "fp-a")))
        .await
        .expect("a retry of the same request succeeds");
    assert_eq!(replay, first, "the retry returns the first response");
    let error = expect_err(
        store
            .account_create(&ctx, new_account(1), Some(&idem("create-a", "fp-other")))
            .await,
        Kind::InvalidArgument,
        Reason::RequestIdReused,
    );
    assert_violation(&error, "request_id");
    assert_eq!(store.account_get(&ctx, &a).await.expect("get"), changed);

    // CreateInstance.
    let i1 = instance_id(1);
    let created = store
        .instance_create(
            &ctx,
            new_instance(&a, &i1, "us-east-1"),
            Some(&idem("create-i1", "fp-1")),
        )
        .await
        .expect("create instance");
    assert_eq!(created.revision, Revision(1));
    tick().await;
    let updated = store
        .instance_update(&ctx, &created.key(), None, alias("renamed"), None)
        .await
        .expect("update");
    assert_eq!(updated.revision, Revision(2));
    let replay = store
        .instance_create(
            &ctx,
            new_instance(&a, &i1, "us-east-1"),
            Some(&idem("create-i1", "fp-1")),
        )
        .await
        .expect("a retry of the same request succeeds");
    assert_eq!(
        replay, created,
        "the retry returns the first response, times and revision included"
    );
    assert_eq!(
        store.instance_get(&ctx, &created.key()).await.expect("get"),
        updated,
        "the replay changed nothing"
    );
    // Same id, other parameters (another instance): refused, nothing written.
    let i2 = instance_id(2);
    let error = expect_err(
        store
            .instance_create(
                &ctx,
                new_instance(&a, &i2, "us-east-1"),
                Some(&idem("create-i1", "fp-2")),
            )
            .await,
        Kind::InvalidArgument,
        Reason::RequestIdReused,
    );
    assert_violation(&error, "request_id");
    expect_err(
        store.instance_get(&ctx, &key(&a, &i2)).await,
        Kind::NotFound,
        Reason::NotFound,
    );

    // UpdateInstance: applied once.
    let k = created.key();
    let once = store
        .instance_update(
            &ctx,
            &k,
            Some(Revision(2)),
            alias("once"),
            Some(&idem("upd", "fp-u")),
        )
        .await
        .expect("update");
    assert_eq!(once.revision, Revision(3));
    let again = store
        .instance_update(
            &ctx,
            &k,
            Some(Revision(2)),
            alias("once"),
            Some(&idem("upd", "fp-u")),
        )
        .await
        .expect("a retry with the (now stale) etag still replays");
    assert_eq!(again, once);
    assert_eq!(store.instance_get(&ctx, &k).await.expect("get"), once);
    expect_err(
        store
            .instance_update(&ctx, &k, None, alias("other"), Some(&idem("upd", "fp-u2")))
            .await,
        Kind::InvalidArgument,
        Reason::RequestIdReused,
    );

    // DeleteInstance: the retry replays its (finished) operation.
    let del = idem("del", "fp-d");
    let removed = store
        .instance_delete(
            &ctx,
            &k,
            None,
            with_request_id(delete_done(&k), &del),
            Some(&del),
        )
        .await
        .expect("delete");
    assert_eq!(
        (removed.kind, removed.key().ok()),
        (WorkflowKind::Delete, Some(k.clone()))
    );
    let again = store
        .instance_delete(
            &ctx,
            &k,
            None,
            with_request_id(delete_done(&k), &del),
            Some(&del),
        )
        .await
        .expect("a retry of a delete replays it");
    assert_eq!(again, removed);
    expect_err(
        store.instance_get(&ctx, &k).await,
        Kind::NotFound,
        Reason::NotFound,
    );
}

pub async fn case_request_ids_are_per_account(store: Arc<dyn Store>) {
    let ctx = admin();
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let in_a = store
        .instance_create(
            &ctx,
            new_instance(&a, &instance_id(1), "us-east-1"),
            Some(&idem("shared-id", "fp-a")),
        )
        .await
        .expect("create in a");
    let in_b = store
        .instance_create(
            &ctx,
            new_instance(&b, &instance_id(2), "eu-west-2"),
            Some(&idem("shared-id", "fp-b")),
        )
        .await
        .expect("the same id in another account is another request");
    assert_eq!(in_b.account_id, b);
    assert_eq!(in_b.instance_id, instance_id(2));
    assert_eq!(
        store.instance_get(&ctx, &in_b.key()).await.expect("get b"),
        in_b
    );
    // Each account replays its own response.
    let replay_a = store
        .instance_create(
            &ctx,
            new_instance(&a, &instance_id(1), "us-east-1"),
            Some(&idem("shared-id", "fp-a")),
        )
        .await
        .expect("replay a");
    assert_eq!(replay_a, in_a);
    let replay_b = store
        .instance_create(
            &ctx,
            new_instance(&b, &instance_id(2), "eu-west-2"),
            Some(&idem("shared-id", "fp-b")),
        )
        .await
        .expect("replay b");
    assert_eq!(replay_b, in_b);
    // The same id and fingerprint in a third account is new work there too.
    let c = create_account(&store, 3).await.account_id;
    let in_c = store
        .instance_create(
            &ctx,
            new_instance(&c, &instance_id(3), "us-east-1"),
            Some(&idem("shared-id", "fp-a")),
        )
        .await
        .expect("create in c");
    assert_eq!(in_c.account_id, c);
    assert_eq!(
        store.instance_get(&ctx, &in_c.key()).await.expect("get c"),
        in_c
    );

    // Account creation with the same request id for two accounts.
    let d = store
        .account_create(&ctx, new_account(4), Some(&idem("acct", "fp")))
        .await
        .expect("create d");
    let e = store
        .account_create(&ctx, new_account(5), Some(&idem("acct", "fp")))
        .await
        .expect("create e");
    assert_eq!(d.account_id, account_id(4));
    assert_eq!(e.account_id, account_id(5));
    assert_eq!(
        store
            .account_get(&ctx, &account_id(5))
            .await
            .expect("get e"),
        e
    );
}

pub async fn case_failed_request_does_not_burn_id(store: Arc<dyn Store>) {
    let ctx = admin();
    let a = create_account(&store, 1).await.account_id;
    let existing = create_instance(&store, &a, &instance_id(1), "us-east-1").await;

    // ALREADY_EXISTS with a request id: the id stays free.
    for _ in 0..2 {
        expect_err(
            store
                .instance_create(
                    &ctx,
                    new_instance(&a, &instance_id(1), "us-east-1"),
                    Some(&idem("retry-me", "fp-1")),
                )
                .await,
            Kind::AlreadyExists,
            Reason::AlreadyExists,
        );
    }
    let created = store
        .instance_create(
            &ctx,
            new_instance(&a, &instance_id(2), "us-east-1"),
            Some(&idem("retry-me", "fp-2")),
        )
        .await
        .expect("the id of a failed request can be used again");
    assert_eq!(created.instance_id, instance_id(2));
    assert_eq!(
        store.instance_get(&ctx, &created.key()).await.expect("get"),
        created
    );

    // A request refused by validation (partition) does not burn it either.
    let gov = store
        .account_create(
            &ctx,
            new_account_in(&account_id(2), Partition::AwsUsGov),
            None,
        )
        .await
        .expect("gov account")
        .account_id;
    expect_err(
        store
            .instance_create(
                &ctx,
                new_instance(&gov, &instance_id(3), "us-east-1"),
                Some(&idem("gov-req", "fp-bad")),
            )
            .await,
        Kind::InvalidArgument,
        Reason::InvalidField,
    );
    store
        .instance_create(
            &ctx,
            new_instance(&gov, &instance_id(3), "us-gov-west-1"),
            Some(&idem("gov-req", "fp-good")),
        )
        .await
        .expect("after a refused request");

    // A create into a missing account (NOT_FOUND) does not burn it.
    let missing = account_id(9);
    expect_err(
        store
            .instance_create(
                &ctx,
                new_instance(&missing, &instance_id(4), "us-east-1"),
                Some(&idem("early", "fp-1")),
            )
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
    store
        .account_create(&ctx, new_account(9), None)
        .await
        .expect("create the account");
    store
        .instance_create(
            &ctx,
            new_instance(&missing, &instance_id(4), "us-east-1"),
            Some(&idem("early", "fp-2")),
        )
        .await
        .expect("after NOT_FOUND");

    // ABORTED (stale etag) on update does not burn it.
    let k = existing.key();
    expect_err(
        store
            .instance_update(
                &ctx,
                &k,
                Some(Revision(7)),
                alias("x"),
                Some(&idem("upd", "fp-1")),
            )
            .await,
        Kind::Aborted,
        Reason::EtagMismatch,
    );
    let updated = store
        .instance_update(
            &ctx,
            &k,
            Some(Revision(1)),
            alias("y"),
            Some(&idem("upd", "fp-2")),
        )
        .await
        .expect("after ABORTED");
    assert_eq!(updated.revision, Revision(2));

    // CreateAccount: ALREADY_EXISTS twice with one id and two fingerprints,
    // never REQUEST_ID_REUSED nor an internal error.
    for fingerprint in ["fp-1", "fp-1", "fp-2"] {
        expect_err(
            store
                .account_create(&ctx, new_account(1), Some(&idem("acct-req", fingerprint)))
                .await,
            Kind::AlreadyExists,
            Reason::AlreadyExists,
        );
    }
}

pub async fn case_concurrent_retries_create_once(store: Arc<dyn Store>) {
    let ctx = admin();
    let a = create_account(&store, 1).await.account_id;
    let i = instance_id(1);

    // 8 concurrent retries of one request: all succeed with one response.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let ctx = ctx.clone();
            let new = new_instance(&a, &i, "us-east-1");
            tokio::spawn(async move {
                store
                    .instance_create(&ctx, new, Some(&idem("concurrent", "fp")))
                    .await
            })
        })
        .collect();
    let results: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.expect("task"))
        .collect();
    let first = results[0].clone().expect("create");
    for result in &results {
        assert_eq!(result.as_ref().expect("every retry succeeds"), &first);
    }
    let listed = list_instances_all(
        &store,
        &ctx,
        &AccountSelector::One(a.clone()),
        &filter(""),
        50,
    )
    .await;
    assert_eq!(listed, vec![first]);

    // 8 concurrent creates of one instance with distinct request ids:
    // exactly one wins, the others are ALREADY_EXISTS.
    let j = instance_id(2);
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = store.clone();
            let ctx = ctx.clone();
            let new = new_instance(&a, &j, "us-east-1");
            tokio::spawn(async move {
                store
                    .instance_create(&ctx, new, Some(&idem(&format!("distinct-{n}"), "fp")))
                    .await
            })
        })
        .collect();
    let results: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.expect("task"))
        .collect();
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    for result in results.iter().filter(|r| r.is_err()) {
        let error = result.as_ref().expect_err("loser");
        assert_eq!(
            (error.kind, error.reason),
            (Kind::AlreadyExists, Reason::AlreadyExists),
            "{error:?}"
        );
    }
    let listed = list_instances_all(&store, &ctx, &AccountSelector::One(a), &filter(""), 50).await;
    assert_eq!(
        keys(&listed),
        vec![key(&account_id(1), &i), key(&account_id(1), &j)]
    );
}

pub async fn case_request_ids_are_per_principal(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let alice = caller("alice", Role::Operator, only(&[&a]));
    let bob = caller("bob", Role::Operator, only(&[&a]));
    let create = |ctx: &slrgov_domain::RequestContext, n: u32, fingerprint: &'static str| {
        let (store, ctx, a) = (store.clone(), ctx.clone(), a.clone());
        async move {
            let new = new_instance(&a, &instance_id(n), "us-east-1");
            store
                .instance_create(
                    &ctx,
                    new,
                    Some(&idem_for("CreateInstance", "same-id", fingerprint)),
                )
                .await
        }
    };
    // Two callers, one id, one account: two requests.
    let by_alice = create(&alice, 1, "fp-1").await.expect("alice creates");
    let by_bob = create(&bob, 2, "fp-2").await.expect("bob's id is his own");
    assert_eq!(by_bob.instance_id, instance_id(2));
    // Each replays their own answer, and only theirs.
    assert_eq!(create(&alice, 1, "fp-1").await.expect("replay"), by_alice);
    assert_eq!(create(&bob, 2, "fp-2").await.expect("replay"), by_bob);
    expect_err(
        create(&bob, 1, "fp-1").await,
        Kind::InvalidArgument,
        Reason::RequestIdReused,
    );
    let carol = caller("carol", Role::Operator, only(&[&a]));
    let id = idem_for("CreateInstance", "same-id", "fp-1");
    let seen = store
        .request_id_lookup(&carol, &a, &id)
        .await
        .expect("lookup");
    assert_eq!(seen, None, "carol never used it");
    let seen = store
        .request_id_lookup(&alice, &a, &id)
        .await
        .expect("lookup");
    let first: Instance = seen.expect("alice's").response().expect("typed");
    assert_eq!(first, by_alice);
}

pub async fn case_request_id_other_method(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let ctx = admin();
    let created = store
        .instance_create(
            &ctx,
            new_instance(&a, &instance_id(1), "us-east-1"),
            Some(&idem_for("CreateInstance", "x", "fp")),
        )
        .await
        .expect("create");
    let k = created.key();
    let reused = (Kind::InvalidArgument, Reason::RequestIdReused);
    // The same id and fingerprint with another method: never the other
    // method's answer.
    expect_err(
        store
            .instance_update(
                &ctx,
                &k,
                None,
                alias("y"),
                Some(&idem_for("UpdateInstance", "x", "fp")),
            )
            .await,
        reused.0,
        reused.1,
    );
    let del = idem_for("DeleteInstance", "x", "fp");
    expect_err(
        store
            .instance_delete(
                &ctx,
                &k,
                None,
                with_request_id(delete_done(&k), &del),
                Some(&del),
            )
            .await,
        reused.0,
        reused.1,
    );
    let ens = idem_for("EnsureLinkedRole", "x", "fp");
    expect_err(
        store
            .linked_role_begin_ensure(
                &ctx,
                with_request_id(ensure_start(&k, "S"), &ens),
                "w",
                LONG,
                Some(&ens),
            )
            .await,
        reused.0,
        reused.1,
    );
    expect_err(
        store.request_id_lookup(&ctx, &a, &ens).await,
        reused.0,
        reused.1,
    );
    expect_err(
        store.request_id_record(&ctx, &a, &ens, json!({})).await,
        reused.0,
        reused.1,
    );
    assert_eq!(
        store.instance_get(&ctx, &k).await.expect("untouched"),
        created
    );
    assert_eq!(get_role(&store, &k).await.revision, Revision(0));
}
