//! Account scopes (NOT_FOUND outside, exactly like a missing resource) and
//! roles (PERMISSION_DENIED on visible resources).

use std::sync::Arc;

use slrgov_domain::model::{AccountPatch, ExternalIdChange, InstancePatch};
use slrgov_domain::names::{AccountSelector, account_name};
use slrgov_domain::types::{InstanceAlias, Revision};
use slrgov_domain::{AccountScope, Error, Kind, Reason, Role};
use slrgov_store::Store;

use crate::support::*;

fn rename() -> AccountPatch {
    AccountPatch {
        display_name: Some("changed".into()),
        access_role_arn: None,
        external_id: ExternalIdChange::Keep,
    }
}

fn realias() -> InstancePatch {
    InstancePatch {
        instance_alias: Some(Some(InstanceAlias::parse("changed").expect("alias"))),
        ..InstancePatch::default()
    }
}

/// Checks that `result` is exactly the NOT_FOUND of a missing `resource`.
#[track_caller]
fn assert_hidden<T: std::fmt::Debug>(result: slrgov_domain::Result<T>, resource: &str) {
    let error = expect_err(result, Kind::NotFound, Reason::NotFound);
    assert_eq!(error, Error::not_found(resource), "not the plain NOT_FOUND");
}

pub async fn case_scope_hides_other_accounts(store: Arc<dyn Store>) {
    let root = admin();
    let account_a = create_account(&store, 1).await;
    let account_b = create_account(&store, 2).await;
    let (a, b) = (account_a.account_id.clone(), account_b.account_id.clone());
    let missing = account_id(3); // in the caller's scope, but never created
    let a1 = create_instance(&store, &a, &instance_id(1), "us-east-1").await;
    let a2 = create_instance(&store, &a, &instance_id(3), "eu-west-2").await;
    let b1 = create_instance(&store, &b, &instance_id(2), "us-east-1").await;
    let b2 = create_instance(&store, &b, &instance_id(4), "us-east-1").await;

    let alice = caller("alice", Role::Admin, only(&[&a, &missing]));

    // Accounts: B looks exactly like an account that does not exist.
    assert_eq!(
        store.account_get(&alice, &a).await.expect("own account"),
        account_a
    );
    assert_hidden(store.account_get(&alice, &b).await, &account_name(&b));
    assert_hidden(
        store.account_get(&alice, &missing).await,
        &account_name(&missing),
    );
    assert_hidden(
        store.account_update(&alice, &b, None, rename()).await,
        &account_name(&b),
    );
    assert_hidden(
        store.account_update(&alice, &missing, None, rename()).await,
        &account_name(&missing),
    );
    assert_hidden(
        store
            .account_update(&alice, &b, Some(Revision(1)), rename())
            .await,
        &account_name(&b),
    );
    assert_hidden(
        store.account_delete(&alice, &b, None).await,
        &account_name(&b),
    );
    assert_hidden(
        store.account_delete(&alice, &missing, None).await,
        &account_name(&missing),
    );
    // Registering an account outside the scope: NOT_FOUND too.
    let outside = account_id(4);
    assert_hidden(
        store.account_create(&alice, new_account(4), None).await,
        &account_name(&outside),
    );
    assert_hidden(
        store.account_get(&root, &outside).await,
        &account_name(&outside),
    );
    assert_eq!(
        store.account_get(&root, &b).await.expect("b untouched"),
        account_b
    );

    // Instances of B, and instances that do not exist.
    let nowhere = key(&a, &instance_id(99));
    for (k, target) in [(b1.key(), b1.key()), (nowhere.clone(), nowhere.clone())] {
        assert_hidden(store.instance_get(&alice, &k).await, &target.name());
        assert_hidden(
            store
                .instance_update(&alice, &k, None, realias(), None)
                .await,
            &target.name(),
        );
        assert_hidden(
            store
                .instance_delete(&alice, &k, None, delete_done(&k), None)
                .await,
            &target.name(),
        );
    }
    assert_hidden(
        store
            .instance_update(&alice, &b1.key(), None, realias(), Some(&idem("r", "f")))
            .await,
        &b1.key().name(),
    );
    assert_hidden(
        store
            .instance_delete(
                &alice,
                &b1.key(),
                Some(Revision(1)),
                delete_done(&b1.key()),
                Some(&idem("r", "f")),
            )
            .await,
        &b1.key().name(),
    );
    let error = expect_err(
        store
            .instance_create(&alice, new_instance(&b, &instance_id(5), "us-east-1"), None)
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
    assert!(error.violations.is_empty());
    assert_eq!(
        store
            .instance_get(&root, &b1.key())
            .await
            .expect("b1 untouched"),
        b1
    );
    assert_eq!(
        store
            .instance_get(&root, &b2.key())
            .await
            .expect("b2 untouched"),
        b2
    );
    expect_err(
        store.instance_get(&root, &key(&b, &instance_id(5))).await,
        Kind::NotFound,
        Reason::NotFound,
    );

    // Lists show only the scope.
    assert_eq!(
        list_accounts_all(&store, &alice, 1).await,
        vec![account_a.clone()]
    );
    assert_eq!(
        store
            .account_list(&alice, &page(0, ""))
            .await
            .expect("list")
            .items,
        vec![account_a.clone()]
    );
    assert_eq!(
        list_instances_all(&store, &alice, &AccountSelector::All, &filter(""), 1).await,
        vec![a1.clone(), a2.clone()]
    );
    assert_eq!(
        list_instances_all(
            &store,
            &alice,
            &AccountSelector::All,
            &filter(r#"region = "us-east-1""#),
            50
        )
        .await,
        vec![a1.clone()]
    );
    assert_eq!(
        list_instances_all(
            &store,
            &alice,
            &AccountSelector::One(a.clone()),
            &filter(""),
            50
        )
        .await,
        vec![a1, a2]
    );
    assert_hidden(
        store
            .instance_list(
                &alice,
                &AccountSelector::One(b.clone()),
                &filter(""),
                &page(0, ""),
            )
            .await,
        &account_name(&b),
    );
    // The unscoped caller sees everything.
    assert_eq!(
        list_instances_all(&store, &root, &AccountSelector::All, &filter(""), 50)
            .await
            .len(),
        4
    );
    assert_eq!(list_accounts_all(&store, &root, 50).await.len(), 2);

    // An empty scope sees nothing.
    let nobody = caller(
        "nobody",
        Role::Admin,
        AccountScope::Only(Default::default()),
    );
    assert!(list_accounts_all(&store, &nobody, 50).await.is_empty());
    assert!(
        list_instances_all(&store, &nobody, &AccountSelector::All, &filter(""), 50)
            .await
            .is_empty()
    );
    // A viewer scoped to A asking to change B: NOT_FOUND, not PERMISSION_DENIED.
    let viewer_a = caller("vera", Role::Viewer, only(&[&a]));
    assert_hidden(
        store.account_update(&viewer_a, &b, None, rename()).await,
        &account_name(&b),
    );
    assert_hidden(
        store
            .instance_update(&viewer_a, &b1.key(), None, realias(), None)
            .await,
        &b1.key().name(),
    );
}

pub async fn case_roles(store: Arc<dyn Store>) {
    let root = admin();
    let account = create_account(&store, 1).await;
    let a = account.account_id.clone();
    let instance = create_instance(&store, &a, &instance_id(1), "us-east-1").await;
    let k = instance.key();

    let denied = |result: slrgov_domain::Result<()>| {
        expect_err(result, Kind::PermissionDenied, Reason::PermissionDenied);
    };

    // A viewer reads, and nothing else.
    for viewer in [
        caller("vic", Role::Viewer, AccountScope::All),
        // (account 2 is in its scope, so the refusal is about the role.)
        caller("val", Role::Viewer, only(&[&a, &account_id(2)])),
    ] {
        assert_eq!(store.account_get(&viewer, &a).await.expect("get"), account);
        assert_eq!(
            store
                .account_list(&viewer, &page(0, ""))
                .await
                .expect("list")
                .items,
            vec![account.clone()]
        );
        assert_eq!(
            store.instance_get(&viewer, &k).await.expect("get"),
            instance
        );
        assert_eq!(
            list_instances_all(&store, &viewer, &AccountSelector::All, &filter(""), 5).await,
            vec![instance.clone()]
        );
        denied(
            store
                .account_create(&viewer, new_account(2), None)
                .await
                .map(drop),
        );
        denied(
            store
                .account_update(&viewer, &a, None, rename())
                .await
                .map(drop),
        );
        denied(store.account_delete(&viewer, &a, None).await);
        denied(
            store
                .instance_create(
                    &viewer,
                    new_instance(&a, &instance_id(2), "us-east-1"),
                    None,
                )
                .await
                .map(drop),
        );
        denied(
            store
                .instance_update(&viewer, &k, None, realias(), None)
                .await
                .map(drop),
        );
        denied(
            store
                .instance_delete(&viewer, &k, None, delete_done(&k), None)
                .await
                .map(drop),
        );
    }
    assert_eq!(
        store.account_get(&root, &a).await.expect("unchanged"),
        account
    );
    assert_eq!(
        store.instance_get(&root, &k).await.expect("unchanged"),
        instance
    );
    expect_err(
        store.account_get(&root, &account_id(2)).await,
        Kind::NotFound,
        Reason::NotFound,
    );
    expect_err(
        store.instance_get(&root, &key(&a, &instance_id(2))).await,
        Kind::NotFound,
        Reason::NotFound,
    );

    // An operator changes instances, not accounts.
    // (account 2 is in its scope, so the refusal is about the role.)
    let operator = caller("olga", Role::Operator, only(&[&a, &account_id(2)]));
    denied(
        store
            .account_create(&operator, new_account(2), None)
            .await
            .map(drop),
    );
    let all_operator = caller("otto", Role::Operator, AccountScope::All);
    denied(
        store
            .account_create(&all_operator, new_account(2), None)
            .await
            .map(drop),
    );
    denied(
        store
            .account_update(&operator, &a, None, rename())
            .await
            .map(drop),
    );
    denied(store.account_delete(&operator, &a, None).await);
    assert_eq!(
        store.account_get(&root, &a).await.expect("unchanged"),
        account
    );
    expect_err(
        store.account_get(&root, &account_id(2)).await,
        Kind::NotFound,
        Reason::NotFound,
    );

    let created = store
        .instance_create(
            &operator,
            new_instance(&a, &instance_id(2), "us-east-1"),
            None,
        )
        .await
        .expect("an operator registers instances");
    let updated = store
        .instance_update(
            &operator,
            &created.key(),
            Some(Revision(1)),
            realias(),
            None,
        )
        .await
        .expect("an operator updates instances");
    assert_eq!(updated.revision, Revision(2));
    let removed = store
        .instance_delete(
            &operator,
            &created.key(),
            None,
            delete_done(&created.key()),
            None,
        )
        .await
        .expect("an operator removes instances");
    assert_eq!(removed.key().ok(), Some(updated.key()));
    assert_eq!(removed.principal, "olga");

    // An admin (scoped) manages accounts in its scope.
    let scoped_admin = caller("ada", Role::Admin, only(&[&a, &account_id(2)]));
    let b = store
        .account_create(&scoped_admin, new_account(2), None)
        .await
        .expect("admin creates");
    store
        .account_delete(&scoped_admin, &b.account_id, None)
        .await
        .expect("admin deletes");
}
