//! Concurrent writers: no lost updates, etags decide one winner, and an
//! account delete racing an instance create never leaves an orphan.

use std::sync::Arc;

use slrgov_domain::model::{AccountPatch, ExternalIdChange, InstancePatch};
use slrgov_domain::names::AccountSelector;
use slrgov_domain::types::{InstanceAlias, Revision};
use slrgov_domain::{Kind, Reason};
use slrgov_store::Store;

use crate::support::*;

fn alias(n: usize) -> InstancePatch {
    InstancePatch {
        instance_alias: Some(Some(
            InstanceAlias::parse(&format!("alias-{n}")).expect("alias"),
        )),
        ..InstancePatch::default()
    }
}

pub async fn case_concurrent_updates(store: Arc<dyn Store>) {
    let ctx = admin();
    let a = create_account(&store, 1).await.account_id;
    let k = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();

    // Unconditional: every update applies, none is lost.
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let (store, ctx, k) = (store.clone(), ctx.clone(), k.clone());
            tokio::spawn(async move { store.instance_update(&ctx, &k, None, alias(n), None).await })
        })
        .collect();
    let mut revisions: Vec<i64> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("update").revision.0)
        .collect();
    revisions.sort_unstable();
    assert_eq!(
        revisions,
        (2..=9).collect::<Vec<_>>(),
        "each update saw the previous one"
    );
    let now = store.instance_get(&ctx, &k).await.expect("get");
    assert_eq!(now.revision, Revision(9));

    // With the current etag: exactly one wins, the others are ABORTED.
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let (store, ctx, k) = (store.clone(), ctx.clone(), k.clone());
            tokio::spawn(async move {
                store
                    .instance_update(&ctx, &k, Some(Revision(9)), alias(100 + n), None)
                    .await
            })
        })
        .collect();
    let results: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for error in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(
            (error.kind, error.reason),
            (Kind::Aborted, Reason::EtagMismatch),
            "{error:?}"
        );
    }
    assert_eq!(
        &store.instance_get(&ctx, &k).await.expect("get"),
        winners[0]
    );

    // Accounts, the same.
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let (store, ctx, a) = (store.clone(), ctx.clone(), a.clone());
            tokio::spawn(async move {
                let patch = AccountPatch {
                    display_name: Some(format!("name {n}")),
                    access_role_arn: None,
                    external_id: ExternalIdChange::Keep,
                };
                store
                    .account_update(&ctx, &a, Some(Revision(1)), patch)
                    .await
            })
        })
        .collect();
    let results: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        store.account_get(&ctx, &a).await.expect("get").revision,
        Revision(2)
    );
}

pub async fn case_account_delete_races_instance_create(store: Arc<dyn Store>) {
    let ctx = admin();
    for round in 1..=6 {
        let account = create_account(&store, round).await;
        let a = account.account_id.clone();
        let create = {
            let (store, ctx, a) = (store.clone(), ctx.clone(), a.clone());
            tokio::spawn(async move {
                store
                    .instance_create(
                        &ctx,
                        new_instance(&a, &instance_id(round), "us-east-1"),
                        None,
                    )
                    .await
            })
        };
        let delete = {
            let (store, ctx, a) = (store.clone(), ctx.clone(), a.clone());
            tokio::spawn(async move { store.account_delete(&ctx, &a, None).await })
        };
        let created = create.await.expect("task");
        let deleted = delete.await.expect("task");
        match (&created, &deleted) {
            (Ok(instance), Err(error)) => {
                assert_eq!(
                    (error.kind, error.reason),
                    (Kind::FailedPrecondition, Reason::AccountHasInstances),
                    "{error:?}"
                );
                assert_eq!(store.account_get(&ctx, &a).await.expect("kept"), account);
                assert_eq!(
                    store
                        .instance_get(&ctx, &instance.key())
                        .await
                        .expect("kept"),
                    *instance
                );
            }
            (Err(error), Ok(())) => {
                assert_eq!(
                    (error.kind, error.reason),
                    (Kind::NotFound, Reason::NotFound),
                    "{error:?}"
                );
                expect_err(
                    store.account_get(&ctx, &a).await,
                    Kind::NotFound,
                    Reason::NotFound,
                );
            }
            other => panic!("inconsistent outcome: {other:?}"),
        }
    }
    // No instance without its account.
    let accounts: Vec<_> = list_accounts_all(&store, &ctx, 50)
        .await
        .into_iter()
        .map(|a| a.account_id)
        .collect();
    for instance in list_instances_all(&store, &ctx, &AccountSelector::All, &filter(""), 50).await {
        assert!(
            accounts.contains(&instance.account_id),
            "orphan {}",
            instance.key()
        );
    }
}
