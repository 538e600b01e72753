//! Durability across restarts, idempotent migrations, replicas sharing one
//! database.

use std::sync::Arc;

use slrgov_domain::model::InstanceFeatures;
use slrgov_domain::names::AccountSelector;
use slrgov_domain::types::Partition;
use slrgov_store::{OpenError, Store, StoreConfig};

use crate::support::*;

pub async fn case_restart_keeps_data(db: &TestDb) {
    let ctx = admin();
    let store = db.open().await;
    let mut accounts = Vec::new();
    for n in 1..=5 {
        accounts.push(create_account(&store, n).await);
    }
    let a = accounts[0].account_id.clone();
    let mut new = new_instance(&a, &instance_id(1), "us-east-1");
    new.fields.features = full_features(&a, Partition::Aws, "us-east-1");
    let instance = store
        .instance_create(&ctx, new.clone(), Some(&idem("create", "fp")))
        .await
        .expect("create instance");
    let first_page = store.account_list(&ctx, &page(2, "")).await.expect("page");
    assert!(!first_page.next_page_token.is_empty());
    // The key lists served from memory seal their tokens with.
    let sealed = store
        .page_tokens()
        .seal("ListRegions", vec!["us-east-1".to_owned()]);
    drop(store);

    // Reopen: migrations run again (no-op), everything is there.
    let store = db.open().await;
    store.ping().await.expect("ping");
    assert_eq!(list_accounts_all(&store, &ctx, 50).await, accounts);
    assert_eq!(
        store
            .instance_get(&ctx, &instance.key())
            .await
            .expect("get"),
        instance
    );
    assert_ne!(instance.features, InstanceFeatures::default());
    // Request ids survive too.
    assert_eq!(
        store
            .instance_create(&ctx, new, Some(&idem("create", "fp")))
            .await
            .expect("replay after restart"),
        instance
    );
    // Page tokens of the previous process still work (the key is stored).
    let second_page = store
        .account_list(&ctx, &page(2, &first_page.next_page_token))
        .await
        .expect("a token from before the restart");
    assert_eq!(second_page.items, accounts[2..4]);
    let opened = store.page_tokens().open(&sealed, "ListRegions", 1);
    assert_eq!(opened.expect("the same key"), ["us-east-1"]);
    assert!(store.page_tokens().open(&sealed, "ListOther", 1).is_err());

    // A third open next to a live one.
    let other = db.open().await;
    create_account(&other, 6).await;
    assert_eq!(list_accounts_all(&store, &ctx, 4).await.len(), 6);
    drop(other);
    drop(store);
    let store = db.open().await;
    assert_eq!(list_accounts_all(&store, &ctx, 4).await.len(), 6);
    assert_eq!(
        list_instances_all(&store, &ctx, &AccountSelector::All, &filter(""), 4).await,
        vec![instance]
    );
}

/// Replicas starting together on one fresh Postgres database: the
/// migrations run once under the advisory lock, every replica works and
/// sees the others' writes, and they share the page-token key.
pub async fn case_concurrent_open(db: &TestDb) {
    let ctx = admin();
    let opening: Vec<_> = (0..3)
        .map(|_| {
            let config = StoreConfig::new(db.url.clone());
            tokio::spawn(async move { slrgov_store::open(&config).await })
        })
        .collect();
    let stores: Vec<Arc<dyn Store>> = futures::future::join_all(opening)
        .await
        .into_iter()
        .map(|s| {
            s.expect("task")
                .unwrap_or_else(|e| panic!("concurrent open: {e:?}"))
        })
        .collect();
    for (n, store) in stores.iter().enumerate() {
        create_account(store, n as u32 + 1).await;
    }
    let expected = list_accounts_all(&stores[0], &ctx, 50).await;
    assert_eq!(expected.len(), 3);
    for store in &stores {
        assert_eq!(list_accounts_all(store, &ctx, 50).await, expected);
    }
    // A token from one replica is valid on the others.
    let token = stores[0]
        .account_list(&ctx, &page(1, ""))
        .await
        .expect("page")
        .next_page_token;
    for store in &stores[1..] {
        let next = store
            .account_list(&ctx, &page(1, &token))
            .await
            .expect("a token from another replica");
        assert_eq!(next.items, expected[1..2]);
    }
    // And one more replica after the fact.
    let late = db.open().await;
    assert_eq!(list_accounts_all(&late, &ctx, 2).await, expected);
}

#[tokio::test]
async fn open_refuses_other_urls() {
    for url in ["mysql://localhost/db", "", "http://example.invalid/"] {
        match slrgov_store::open(&StoreConfig::new(url)).await {
            Err(OpenError::UnsupportedUrl) => {}
            Err(other) => panic!("{url}: {other:?}"),
            Ok(_) => panic!("{url}: opened"),
        }
    }
}
