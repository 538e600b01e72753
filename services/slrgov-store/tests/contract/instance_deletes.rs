//! DeleteInstance and the linked role: an account goes once its instances
//! are gone; an instance record goes once its role is absent or retired
//! (LINKED_ROLE_NOT_RETIRED otherwise), with its linked-role record.

use std::sync::Arc;

use slrgov_domain::model::{InstanceFeatures, InstancePatch, LinkedRole, LinkedRoleState};
use slrgov_domain::names::{AccountSelector, InstanceKey};
use slrgov_domain::types::{Partition, Revision};
use slrgov_domain::{Kind, Reason};

use crate::support::*;

pub async fn case_account_delete_refused_with_instances(store: Arc<dyn Store>) {
    let ctx = admin();
    let account = create_account(&store, 1).await;
    let a = account.account_id.clone();
    let i1 = create_instance(&store, &a, &instance_id(1), "us-east-1").await;
    let i2 = create_instance(&store, &a, &instance_id(2), "us-east-1").await;

    let error = expect_err(
        store.account_delete(&ctx, &a, None).await,
        Kind::FailedPrecondition,
        Reason::AccountHasInstances,
    );
    assert!(
        error.message.contains(&format!("accounts/{a}")),
        "{error:?}"
    );
    // Also with the right etag.
    expect_err(
        store.account_delete(&ctx, &a, Some(Revision(1))).await,
        Kind::FailedPrecondition,
        Reason::AccountHasInstances,
    );
    assert_eq!(
        store.account_get(&ctx, &a).await.expect("still there"),
        account
    );
    assert_eq!(store.instance_get(&ctx, &i1.key()).await.expect("i1"), i1);

    store
        .instance_delete(&ctx, &i1.key(), None, delete_done(&i1.key()), None)
        .await
        .expect("delete i1");
    expect_err(
        store.account_delete(&ctx, &a, None).await,
        Kind::FailedPrecondition,
        Reason::AccountHasInstances,
    );
    store
        .instance_delete(&ctx, &i2.key(), None, delete_done(&i2.key()), None)
        .await
        .expect("delete i2");
    store
        .account_delete(&ctx, &a, Some(Revision(1)))
        .await
        .expect("no instances left");
    expect_err(
        store.account_get(&ctx, &a).await,
        Kind::NotFound,
        Reason::NotFound,
    );
    // Its instances cannot come back without it.
    expect_err(
        store
            .instance_create(&ctx, new_instance(&a, &instance_id(3), "us-east-1"), None)
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
}

pub async fn case_instance_delete(store: Arc<dyn Store>) {
    let ctx = admin();
    let a = create_account(&store, 1).await.account_id;
    let mut new = new_instance(&a, &instance_id(1), "us-west-2");
    new.fields.features = full_features(&a, Partition::Aws, "us-west-2");
    let created = store
        .instance_create(&ctx, new, None)
        .await
        .expect("create");
    let keep = create_instance(&store, &a, &instance_id(2), "us-west-2").await;
    let k = created.key();

    let removed = store
        .instance_delete(&ctx, &k, None, delete_done(&k), None)
        .await
        .expect("delete");
    assert_eq!(
        (removed.kind, removed.key().ok(), removed.phase),
        (WorkflowKind::Delete, Some(k.clone()), Phase::Succeeded),
        "delete returns its finished operation"
    );
    expect_err(
        store.instance_get(&ctx, &k).await,
        Kind::NotFound,
        Reason::NotFound,
    );
    let error = expect_err(
        store
            .instance_delete(&ctx, &k, None, delete_done(&k), None)
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
    assert!(error.message.contains(&k.name()), "{error:?}");
    expect_err(
        store
            .instance_delete(
                &ctx,
                &key(&account_id(7), &instance_id(1)),
                None,
                delete_done(&key(&account_id(7), &instance_id(1))),
                None,
            )
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
    expect_err(
        store
            .instance_get(&ctx, &key(&account_id(7), &instance_id(1)))
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
    let left = list_instances_all(&store, &ctx, &AccountSelector::All, &filter(""), 10).await;
    assert_eq!(left, vec![keep]);
    // The id can be registered again.
    let again = create_instance(&store, &a, &instance_id(1), "us-west-2").await;
    assert_eq!(again.revision, Revision(1));
    assert_eq!(again.features, InstanceFeatures::default());
}

/// Sets the recorded state of a linked role directly in the database (the
/// linked-role workflow has no store method yet).
async fn set_state(db: &TestDb, k: &slrgov_domain::names::InstanceKey, state: LinkedRoleState) {
    let changed = db
        .execute(
            "UPDATE instances SET linked_role_state = $1 WHERE account_id = $2 AND instance_id = $3",
            &[state.as_str(), k.account_id.as_str(), k.instance_id.as_str()],
        )
        .await;
    assert_eq!(changed, 1, "set the state of {k}");
}

pub async fn case_linked_role_states(db: &TestDb) {
    let store = db.open().await;
    let ctx = admin();
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let a1 = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let a2 = create_instance(&store, &a, &instance_id(2), "us-east-1")
        .await
        .key();
    let a3 = create_instance(&store, &a, &instance_id(3), "eu-west-2")
        .await
        .key();
    let b1 = create_instance(&store, &b, &instance_id(4), "us-east-1")
        .await
        .key();
    set_state(db, &a1, LinkedRoleState::Active).await;
    set_state(db, &a3, LinkedRoleState::Active).await;
    set_state(db, &b1, LinkedRoleState::DeletionFailed).await;

    let got = store.instance_get(&ctx, &a1).await.expect("get");
    assert_eq!(got.linked_role_state, LinkedRoleState::Active);

    let list = |parent: AccountSelector, text: &str, size: i32| {
        let store = store.clone();
        let ctx = ctx.clone();
        let filter = filter(text);
        async move { keys(&list_instances_all(&store, &ctx, &parent, &filter, size).await) }
    };
    assert_eq!(
        list(AccountSelector::All, "linked_role_state = ACTIVE", 1).await,
        vec![a1.clone(), a3.clone()]
    );
    assert_eq!(
        list(AccountSelector::All, "linked_role_state = ABSENT", 50).await,
        vec![a2.clone()]
    );
    assert_eq!(
        list(
            AccountSelector::All,
            "linked_role_state = DELETION_FAILED",
            50
        )
        .await,
        vec![b1.clone()]
    );
    assert_eq!(
        list(
            AccountSelector::All,
            r#"region = "us-east-1" AND linked_role_state = ACTIVE"#,
            50
        )
        .await,
        vec![a1.clone()]
    );
    assert_eq!(
        list(
            AccountSelector::All,
            r#"linked_role_state = ACTIVE AND region = "eu-west-2""#,
            50
        )
        .await,
        vec![a3.clone()]
    );
    assert!(
        list(
            AccountSelector::One(b.clone()),
            "linked_role_state = ACTIVE",
            50
        )
        .await
        .is_empty()
    );
    assert!(
        list(AccountSelector::All, "linked_role_state = DELETING", 50)
            .await
            .is_empty()
    );

    // An update keeps the recorded state.
    let updated = store
        .instance_update(
            &ctx,
            &a3,
            None,
            InstancePatch {
                instance_alias: Some(None),
                ..InstancePatch::default()
            },
            None,
        )
        .await
        .expect("update");
    assert_eq!(updated.linked_role_state, LinkedRoleState::Active);

    // The record of an instance whose role is not retired stays.
    for state in [
        LinkedRoleState::Active,
        LinkedRoleState::Creating,
        LinkedRoleState::Deleting,
        LinkedRoleState::DeletionFailed,
    ] {
        set_state(db, &a1, state).await;
        let error = expect_err(
            store
                .instance_delete(&ctx, &a1, None, delete_done(&a1), None)
                .await,
            Kind::FailedPrecondition,
            Reason::LinkedRoleNotRetired,
        );
        assert!(error.message.contains(state.as_str()), "{error:?}");
        assert_eq!(
            store
                .instance_get(&ctx, &a1)
                .await
                .expect("still there")
                .linked_role_state,
            state
        );
    }
    set_state(db, &a1, LinkedRoleState::Deleted).await;
    let removed = store
        .instance_delete(&ctx, &a1, None, delete_done(&a1), None)
        .await
        .expect("a retired role");
    assert_eq!(removed.key().ok(), Some(a1.clone()));
    expect_err(
        store.instance_get(&ctx, &a1).await,
        Kind::NotFound,
        Reason::NotFound,
    );
}

pub async fn case_linked_role_instance_delete(db: &TestDb) {
    let store = db.open().await;
    let a = create_account(&store, 1).await.account_id;
    let undone = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let active = create_instance(&store, &a, &instance_id(2), "us-east-1")
        .await
        .key();
    let creating = create_instance(&store, &a, &instance_id(3), "us-east-1")
        .await
        .key();
    let rows = |k: InstanceKey| async move {
        db.fetch_text(
            "SELECT CAST(COUNT(*) AS TEXT) FROM linked_roles \
             WHERE account_id = $1 AND instance_id = $2",
            &[k.account_id.as_str(), k.instance_id.as_str()],
        )
        .await
    };
    let delete = |k: &InstanceKey| {
        let (store, k) = (store.clone(), k.clone());
        async move {
            store
                .instance_delete(&admin(), &k, None, delete_done(&k), None)
                .await
        }
    };

    // An ensure undone with nothing created: ABSENT, so the instance can
    // go, and its linked-role record goes with it.
    let record = claim(&store, &undone, "worker-a", "Rel1").await;
    store
        .linked_role_abandon(&admin(), &held(&record), &undone)
        .await
        .expect("abandon");
    finish(&store, &record, Phase::Failed).await;
    assert_eq!(rows(undone.clone()).await.as_deref(), Some("1"));
    delete(&undone)
        .await
        .expect("delete an instance whose role is ABSENT");
    assert_eq!(rows(undone.clone()).await.as_deref(), Some("0"));
    expect_err(
        store.linked_role_get(&admin(), &undone).await,
        Kind::NotFound,
        Reason::NotFound,
    );
    // The same id registered again starts from scratch.
    let again = create_instance(&store, &a, &instance_id(1), "us-east-1").await;
    assert_eq!(get_role(&store, &undone).await, LinkedRole::absent(&again));
    let fresh = claim(&store, &undone, "worker-b", "New2").await;
    assert_eq!(fresh.inputs["suffix"], "New2");

    // ACTIVE, or still CREATING: the role must be retired first.
    let role = make_active(&store, &active, "Act1").await;
    claim(&store, &creating, "worker-c", "Cre1").await;
    for (k, state) in [
        (&active, LinkedRoleState::Active),
        (&creating, LinkedRoleState::Creating),
    ] {
        let instance = store.instance_get(&admin(), k).await.expect("get");
        expect_err(
            delete(k).await,
            Kind::FailedPrecondition,
            Reason::LinkedRoleNotRetired,
        );
        assert_eq!(
            store.instance_get(&admin(), k).await.expect("get"),
            instance
        );
        assert_eq!(instance.linked_role_state, state);
        assert_eq!(rows(k.clone()).await.as_deref(), Some("1"));
    }
    assert_eq!(get_role(&store, &active).await, role);
}
