//! Accounts: the CRUD round trip, etags on accounts and instances.

use std::sync::Arc;

use chrono::{Duration, Utc};
use slrgov_domain::model::{AccountPatch, ExternalId, ExternalIdChange, InstancePatch};
use slrgov_domain::names::AccountSelector;
use slrgov_domain::types::{AccountId, InstanceAlias, Partition, Revision};
use slrgov_domain::{Kind, Reason};
use slrgov_store::Store;

use crate::support::*;

fn keep_all() -> AccountPatch {
    AccountPatch {
        display_name: None,
        access_role_arn: None,
        external_id: ExternalIdChange::Keep,
    }
}

pub async fn case_account_round_trip(store: Arc<dyn Store>) {
    let ctx = admin();
    let a = account_id(1);
    let b = account_id(2);

    let before = Utc::now() - Duration::milliseconds(1);
    let created = store
        .account_create(&ctx, new_account(1), None)
        .await
        .expect("create");
    let after = Utc::now() + Duration::milliseconds(1);
    assert_eq!(created.account_id, a);
    assert_eq!(created.display_name, format!("Account {a}"));
    assert_eq!(created.partition, Partition::Aws);
    assert_eq!(
        created.access_role_arn,
        Some(access_role(&a, Partition::Aws))
    );
    assert!(created.external_id_set, "the external id was given");
    assert_eq!(created.revision, Revision(1));
    assert_eq!(created.create_time, created.update_time);
    assert!(
        before <= created.create_time && created.create_time <= after,
        "create_time {} not within [{before}, {after}]",
        created.create_time
    );
    // The secret is never in what the store returns.
    assert!(!format!("{created:?}").contains("ext-secret"));

    // What a read returns equals what the write returned.
    let got = store.account_get(&ctx, &a).await.expect("get");
    assert_eq!(got, created);

    // Without external id nor access role.
    let mut plain = new_account(2);
    plain.fields.access_role_arn = None;
    plain.external_id = None;
    plain.fields.partition = Partition::AwsCn;
    plain.fields.display_name = "Ünïcode name — with spaces".to_owned();
    let created_b = store
        .account_create(&ctx, plain, None)
        .await
        .expect("create b");
    assert!(!created_b.external_id_set);
    assert_eq!(created_b.access_role_arn, None);
    assert_eq!(created_b.partition, Partition::AwsCn);
    assert_eq!(store.account_get(&ctx, &b).await.expect("get b"), created_b);

    let listed = store.account_list(&ctx, &page(0, "")).await.expect("list");
    assert_eq!(listed.items, vec![created.clone(), created_b.clone()]);
    assert_eq!(listed.next_page_token, "");

    // Update: display name and clearing the role; the external id is kept.
    tick().await;
    let updated = store
        .account_update(
            &ctx,
            &a,
            None,
            AccountPatch {
                display_name: Some("Renamed".to_owned()),
                access_role_arn: Some(None),
                external_id: ExternalIdChange::Keep,
            },
        )
        .await
        .expect("update");
    assert_eq!(updated.display_name, "Renamed");
    assert_eq!(updated.access_role_arn, None);
    assert!(updated.external_id_set, "Keep keeps the external id");
    assert_eq!(updated.partition, created.partition);
    assert_eq!(updated.revision, Revision(2));
    assert_eq!(updated.create_time, created.create_time);
    assert!(updated.update_time > created.update_time);
    assert_eq!(store.account_get(&ctx, &a).await.expect("get"), updated);

    // Setting the role again, clearing then setting the external id.
    let role = access_role(&a, Partition::Aws);
    let updated = store
        .account_update(
            &ctx,
            &a,
            None,
            AccountPatch {
                display_name: None,
                access_role_arn: Some(Some(role.as_str().to_owned())),
                external_id: ExternalIdChange::Clear,
            },
        )
        .await
        .expect("update");
    assert_eq!(
        updated.display_name, "Renamed",
        "not in the mask: unchanged"
    );
    assert_eq!(updated.access_role_arn, Some(role));
    assert!(!updated.external_id_set, "Clear removes the external id");
    assert_eq!(updated.revision, Revision(3));
    let updated = store
        .account_update(
            &ctx,
            &a,
            None,
            AccountPatch {
                external_id: ExternalIdChange::Set(ExternalId::new("another-secret".into())),
                ..keep_all()
            },
        )
        .await
        .expect("update");
    assert!(updated.external_id_set);
    assert!(!format!("{updated:?}").contains("another-secret"));
    assert_eq!(updated.revision, Revision(4));
    assert_eq!(store.account_get(&ctx, &a).await.expect("get"), updated);

    // Creating it again: ALREADY_EXISTS, nothing changed.
    let error = expect_err(
        store.account_create(&ctx, new_account(1), None).await,
        Kind::AlreadyExists,
        Reason::AlreadyExists,
    );
    assert!(
        error.message.contains(&format!("accounts/{a}")),
        "{error:?}"
    );
    assert_eq!(store.account_get(&ctx, &a).await.expect("get"), updated);

    // Delete.
    store.account_delete(&ctx, &a, None).await.expect("delete");
    expect_err(
        store.account_get(&ctx, &a).await,
        Kind::NotFound,
        Reason::NotFound,
    );
    let listed = store.account_list(&ctx, &page(0, "")).await.expect("list");
    assert_eq!(listed.items, vec![created_b]);
    expect_err(
        store.account_delete(&ctx, &a, None).await,
        Kind::NotFound,
        Reason::NotFound,
    );
    expect_err(
        store.account_update(&ctx, &a, None, keep_all()).await,
        Kind::NotFound,
        Reason::NotFound,
    );

    // A deleted account can be registered again, from revision 1.
    let again = store
        .account_create(&ctx, new_account(1), None)
        .await
        .expect("create again");
    assert_eq!(again.revision, Revision(1));
    assert_eq!(again.display_name, format!("Account {a}"));
}

pub async fn case_etags(store: Arc<dyn Store>) {
    let ctx = admin();
    let a = account_id(1);
    let created = create_account(&store, 1).await;
    let rename = |name: &str| AccountPatch {
        display_name: Some(name.to_owned()),
        ..keep_all()
    };

    // Account update: stale (or future) revision is ABORTED and changes nothing.
    for stale in [Revision(2), Revision(0), Revision(99)] {
        expect_err(
            store
                .account_update(&ctx, &a, Some(stale), rename("x"))
                .await,
            Kind::Aborted,
            Reason::EtagMismatch,
        );
    }
    assert_eq!(store.account_get(&ctx, &a).await.expect("get"), created);
    let v2 = store
        .account_update(&ctx, &a, Some(Revision(1)), rename("two"))
        .await
        .expect("matching etag");
    assert_eq!(v2.revision, Revision(2));
    expect_err(
        store
            .account_update(&ctx, &a, Some(Revision(1)), rename("x"))
            .await,
        Kind::Aborted,
        Reason::EtagMismatch,
    );
    assert_eq!(store.account_get(&ctx, &a).await.expect("get"), v2);
    let v3 = store
        .account_update(&ctx, &a, None, rename("three"))
        .await
        .expect("unconditional");
    assert_eq!(v3.revision, Revision(3));
    assert_eq!(v3.display_name, "three");

    // Account delete.
    expect_err(
        store.account_delete(&ctx, &a, Some(Revision(2))).await,
        Kind::Aborted,
        Reason::EtagMismatch,
    );
    assert_eq!(store.account_get(&ctx, &a).await.expect("still there"), v3);
    store
        .account_delete(&ctx, &a, Some(Revision(3)))
        .await
        .expect("matching etag");
    expect_err(
        store.account_get(&ctx, &a).await,
        Kind::NotFound,
        Reason::NotFound,
    );
    create_account(&store, 2).await;
    store
        .account_delete(&ctx, &account_id(2), None)
        .await
        .expect("unconditional delete");

    // Instances: the same rules.
    let b = create_account(&store, 3).await.account_id;
    let instance = create_instance(&store, &b, &instance_id(1), "us-east-1").await;
    let k = instance.key();
    let alias = |a: &str| InstancePatch {
        instance_alias: Some(Some(InstanceAlias::parse(a).expect("alias"))),
        ..InstancePatch::default()
    };
    expect_err(
        store
            .instance_update(&ctx, &k, Some(Revision(2)), alias("stale"), None)
            .await,
        Kind::Aborted,
        Reason::EtagMismatch,
    );
    assert_eq!(store.instance_get(&ctx, &k).await.expect("get"), instance);
    let i2 = store
        .instance_update(&ctx, &k, Some(Revision(1)), alias("fresh"), None)
        .await
        .expect("matching etag");
    assert_eq!(i2.revision, Revision(2));
    assert_eq!(
        i2.instance_alias.as_ref().map(InstanceAlias::as_str),
        Some("fresh")
    );
    let i3 = store
        .instance_update(&ctx, &k, None, alias("free"), None)
        .await
        .expect("unconditional");
    assert_eq!(i3.revision, Revision(3));
    expect_err(
        store
            .instance_delete(&ctx, &k, Some(Revision(2)), delete_done(&k), None)
            .await,
        Kind::Aborted,
        Reason::EtagMismatch,
    );
    assert_eq!(store.instance_get(&ctx, &k).await.expect("still there"), i3);
    let removed = store
        .instance_delete(&ctx, &k, Some(Revision(3)), delete_done(&k), None)
        .await
        .expect("matching etag");
    assert_eq!(removed.key().ok(), Some(i3.key()));
    let other = create_instance(&store, &b, &instance_id(2), "us-east-1").await;
    store
        .instance_delete(&ctx, &other.key(), None, delete_done(&other.key()), None)
        .await
        .expect("unconditional delete");
    let left = list_instances_all(&store, &ctx, &AccountSelector::One(b), &filter(""), 10).await;
    assert!(left.is_empty(), "{left:?}");
}

async fn stored_external_id(db: &TestDb, account: &AccountId) -> Option<String> {
    db.fetch_text(
        "SELECT external_id FROM accounts WHERE account_id = $1",
        &[account.as_str()],
    )
    .await
}

/// The external id is write-only through the store, but it is stored: read
/// it from the database itself.
pub async fn case_external_id_is_stored(db: &TestDb) {
    let store = db.open().await;
    let ctx = admin();
    let a = account_id(1);
    store
        .account_create(&ctx, new_account(1), None)
        .await
        .expect("create");
    assert_eq!(
        stored_external_id(db, &a).await,
        Some(format!("ext-secret-{a}"))
    );
    let set = |change| AccountPatch {
        external_id: change,
        ..keep_all()
    };
    store
        .account_update(
            &ctx,
            &a,
            None,
            set(ExternalIdChange::Set(ExternalId::new("rotated-1".into()))),
        )
        .await
        .expect("rotate");
    assert_eq!(
        stored_external_id(db, &a).await.as_deref(),
        Some("rotated-1")
    );
    store
        .account_update(&ctx, &a, None, set(ExternalIdChange::Keep))
        .await
        .expect("keep");
    assert_eq!(
        stored_external_id(db, &a).await.as_deref(),
        Some("rotated-1")
    );
    let cleared = store
        .account_update(&ctx, &a, None, set(ExternalIdChange::Clear))
        .await
        .expect("clear");
    assert!(!cleared.external_id_set);
    assert_eq!(stored_external_id(db, &a).await, None);
    // Still no secret after a restart, and the flag agrees.
    drop(store);
    let store = db.open().await;
    assert!(
        !store
            .account_get(&ctx, &a)
            .await
            .expect("get")
            .external_id_set
    );
}
