//! Linked roles: the record of an instance's role (ABSENT until an ensure
//! starts), its description (with its request id), how the service
//! reaches an account, and who may do what. The ensure workflow's writes
//! are in `ensures.rs` and `activations.rs`, the retirement's in
//! `retirements.rs`.

use std::sync::Arc;

use slrgov_domain::model::{LinkedRole, LinkedRoleState};
use slrgov_domain::names::InstanceKey;
use slrgov_domain::types::{Partition, Revision};
use slrgov_domain::{Kind, Reason};

use crate::support::*;

pub async fn case_linked_role_get_absent(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let a1 = create_instance(&store, &a, &instance_id(1), "us-east-1").await;
    let b1 = create_instance(&store, &b, &instance_id(2), "us-east-1").await;

    let got = get_role(&store, &a1.key()).await;
    assert_eq!(got.state, LinkedRoleState::Absent);
    assert_eq!(got.revision, Revision(0), "no record yet: revision 0");
    assert_no_role_fields(&got);
    assert_eq!(got, LinkedRole::absent(&a1));
    // A viewer of the account reads it too.
    let got_by_viewer = store.linked_role_get(&viewer(&[&a]), &a1.key()).await;
    assert_eq!(got_by_viewer.expect("viewer get"), got);

    // A missing instance, in an existing or a missing account; out of the
    // caller's scope: NOT_FOUND alike.
    for (ctx, k) in [
        (admin(), key(&a, &instance_id(9))),
        (admin(), key(&account_id(7), &instance_id(1))),
        (viewer(&[&a]), b1.key()),
        (operator(&[&a]), b1.key()),
    ] {
        let error = expect_err(
            store.linked_role_get(&ctx, &k).await,
            Kind::NotFound,
            Reason::NotFound,
        );
        assert!(error.message.contains(&k.name()), "{error:?}");
    }
}

pub async fn case_linked_role_set_description(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let k = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let creating = create_instance(&store, &a, &instance_id(2), "us-east-1")
        .await
        .key();
    let absent = create_instance(&store, &a, &instance_id(3), "us-east-1")
        .await
        .key();
    let active = make_active(&store, &k, "Desc").await;
    let describe = |expected: Option<Revision>, text: &'static str, id: Option<(&str, &str)>| {
        let (store, k) = (store.clone(), k.clone());
        let idempotency = id.map(|(id, fp)| idem_for("UpdateLinkedRoleDescription", id, fp));
        async move {
            store
                .linked_role_set_description(&admin(), &k, expected, text, idempotency.as_ref())
                .await
        }
    };

    tick().await;
    let changed = describe(Some(active.revision), "Our contact center", None)
        .await
        .expect("set description");
    assert_eq!(changed.description.as_deref(), Some("Our contact center"));
    assert_eq!(changed.revision, Revision(active.revision.0 + 1));
    assert!(changed.update_time > active.update_time);
    assert_eq!(
        LinkedRole {
            description: active.description.clone(),
            revision: active.revision,
            update_time: active.update_time,
            ..changed.clone()
        },
        active,
        "only the description changed"
    );
    assert_eq!(get_role(&store, &k).await, changed);

    // A stale revision: ABORTED, nothing changed; none: unconditional.
    expect_err(
        describe(Some(active.revision), "stale", None).await,
        Kind::Aborted,
        Reason::EtagMismatch,
    );
    assert_eq!(get_role(&store, &k).await, changed);
    let cleared = describe(None, "", None).await.expect("set description");
    assert_eq!(cleared.revision, Revision(changed.revision.0 + 1));
    assert_eq!(get_role(&store, &k).await, cleared);

    // A request id: a retry replays the first answer, other parameters are
    // REQUEST_ID_REUSED, and a refused request does not use the id up.
    let first = describe(None, "with an id", Some(("d-1", "fp-1")))
        .await
        .expect("first");
    tick().await;
    let later = describe(None, "changed since", None).await.expect("later");
    let replay = describe(None, "with an id", Some(("d-1", "fp-1"))).await;
    assert_eq!(replay.expect("replay"), first);
    assert_eq!(
        get_role(&store, &k).await,
        later,
        "the replay changed nothing"
    );
    expect_err(
        describe(None, "other", Some(("d-1", "fp-2"))).await,
        Kind::InvalidArgument,
        Reason::RequestIdReused,
    );
    expect_err(
        describe(Some(active.revision), "x", Some(("d-2", "fp-x"))).await,
        Kind::Aborted,
        Reason::EtagMismatch,
    );
    let after = describe(None, "y", Some(("d-2", "fp-y")))
        .await
        .expect("after a refusal");
    assert_eq!(after.description.as_deref(), Some("y"));

    // Only an ACTIVE role has a description to change.
    claim(&store, &creating, "worker-b", "Crea").await;
    let claimed = get_role(&store, &creating).await;
    for (target, expected) in [
        (&creating, None),
        (&creating, Some(claimed.revision)),
        (&absent, None),
    ] {
        expect_err(
            store
                .linked_role_set_description(&admin(), target, expected, "x", None)
                .await,
            Kind::FailedPrecondition,
            Reason::FailedPrecondition,
        );
    }
    assert_eq!(get_role(&store, &creating).await, claimed);
    assert_eq!(get_role(&store, &absent).await.revision, Revision(0));
    expect_err(
        store
            .linked_role_set_description(&admin(), &key(&a, &instance_id(9)), None, "x", None)
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
}

pub async fn case_account_access(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let gov = account_id(2);
    store
        .account_create(&admin(), new_account_in(&gov, Partition::AwsUsGov), None)
        .await
        .expect("create the GovCloud account");
    let mut bare = new_account(3);
    bare.fields.access_role_arn = None;
    bare.external_id = None;
    let c = store
        .account_create(&admin(), bare, None)
        .await
        .expect("create")
        .account_id;

    let olga = operator(&[&a, &gov, &c]);
    for (account, partition) in [(&a, Partition::Aws), (&gov, Partition::AwsUsGov)] {
        let access = store.account_access(&olga, account).await.expect("access");
        assert_eq!(&access.account_id, account);
        assert_eq!(access.partition, partition);
        assert_eq!(
            access.access_role_arn,
            Some(access_role(account, partition).to_string())
        );
        assert_eq!(
            access.external_id.as_ref().map(|e| e.expose()),
            Some(format!("ext-secret-{account}").as_str())
        );
        assert!(
            !format!("{access:?}").contains("ext-secret"),
            "the secret stays out of Debug"
        );
    }
    let access = store.account_access(&olga, &c).await.expect("access");
    assert_eq!(access.partition, Partition::Aws);
    assert_eq!(access.access_role_arn, None);
    assert!(access.external_id.is_none());

    // Viewers too (inspections act in the account; the secret still only
    // goes to STS inside the service). Other accounts look missing.
    let seen = store
        .account_access(&viewer(&[&a]), &a)
        .await
        .expect("a viewer");
    assert_eq!(
        seen.external_id.as_ref().map(|e| e.expose()),
        Some(format!("ext-secret-{a}").as_str())
    );
    for (ctx, account) in [
        (operator(&[&gov]), &a),
        (viewer(&[&gov]), &a),
        (admin(), &account_id(9)),
    ] {
        expect_err(
            store.account_access(&ctx, account).await,
            Kind::NotFound,
            Reason::NotFound,
        );
    }
}

pub async fn case_linked_role_roles(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let k = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let active = create_instance(&store, &a, &instance_id(2), "us-east-1")
        .await
        .key();
    let b1 = create_instance(&store, &b, &instance_id(3), "us-east-1")
        .await
        .key();
    let role = make_active(&store, &active, "Act1").await;
    let victor = viewer(&[&a]);
    let denied = |result: Result<(), slrgov_domain::Error>| {
        expect_err(result, Kind::PermissionDenied, Reason::PermissionDenied);
    };
    let not_found = |result: Result<(), slrgov_domain::Error>| {
        expect_err(result, Kind::NotFound, Reason::NotFound);
    };
    let start = |target: &InstanceKey| {
        let (store, ctx, target) = (store.clone(), victor.clone(), target.clone());
        async move {
            store
                .linked_role_begin_ensure(&ctx, ensure_start(&target, "View"), "victor", LONG, None)
                .await
                .map(drop)
        }
    };

    // A viewer starts no ensure, not even of an ACTIVE role.
    denied(start(&k).await);
    denied(start(&active).await);
    assert_eq!(
        get_role(&store, &k).await.revision,
        Revision(0),
        "nothing started"
    );
    assert_eq!(instance_state(&store, &k).await, LinkedRoleState::Absent);

    // A workflow it knows the fence of: a viewer cannot finish or undo it.
    let record = claim(&store, &k, "victor", "Held").await;
    let claimed = get_role(&store, &k).await;
    let fence = held(&record);
    denied(
        store
            .linked_role_activate(&victor, &fence, &k, observed(&a, "Held"), false, false)
            .await
            .map(drop),
    );
    denied(
        store
            .linked_role_abandon(&victor, &fence, &k)
            .await
            .map(drop),
    );
    denied(
        store
            .workflow_save(
                &victor,
                &record.id,
                "victor",
                update_of(&record, Phase::Succeeded),
            )
            .await
            .map(drop),
    );
    assert_eq!(get_role(&store, &k).await, claimed);
    assert_eq!(get_workflow(&store, &record.id).await, record);
    denied(
        store
            .linked_role_set_description(&victor, &active, None, "viewer's", None)
            .await
            .map(drop),
    );
    let retirement = retire_start(WorkflowKind::Retire, &active, &role_name("Act1"));
    denied(
        store
            .linked_role_begin_retire(&victor, retirement, None, None)
            .await
            .map(drop),
    );
    assert_eq!(get_role(&store, &active).await, role);
    // Reading is allowed.
    assert_eq!(
        store.linked_role_get(&victor, &active).await.expect("get"),
        role
    );
    assert_eq!(
        store.workflow_get(&victor, &record.id).await.expect("get"),
        record
    );

    // Outside the scope, NOT_FOUND comes before the role check.
    let theirs = claim(&store, &b1, "worker-b", "Bbbb").await;
    let claimed_b = get_role(&store, &b1).await;
    let fence_b = held(&theirs);
    not_found(start(&b1).await);
    not_found(
        store
            .linked_role_activate(&victor, &fence_b, &b1, observed(&b, "Bbbb"), false, false)
            .await
            .map(drop),
    );
    not_found(
        store
            .linked_role_abandon(&victor, &fence_b, &b1)
            .await
            .map(drop),
    );
    not_found(
        store
            .linked_role_set_description(&victor, &b1, None, "x", None)
            .await
            .map(drop),
    );
    let retirement = retire_start(WorkflowKind::Retire, &b1, &role_name("Bbbb"));
    not_found(
        store
            .linked_role_begin_retire(&victor, retirement, None, None)
            .await
            .map(drop),
    );
    not_found(
        store
            .workflow_save(
                &victor,
                &theirs.id,
                "worker-b",
                update_of(&theirs, Phase::Succeeded),
            )
            .await
            .map(drop),
    );
    not_found(store.workflow_get(&victor, &theirs.id).await.map(drop));
    assert_eq!(get_role(&store, &b1).await, claimed_b);
    assert_eq!(get_workflow(&store, &theirs.id).await, theirs);
}
