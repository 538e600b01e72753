//! The ensure workflow's writes under its fence: the role recorded ACTIVE
//! (twice is a no-op; a stale fence is ABORTED; one role per instance
//! record) and the undo of the start (back to ABSENT).

use std::sync::Arc;

use slrgov_domain::model::{LinkedRole, LinkedRoleState};
use slrgov_domain::types::Revision;
use slrgov_domain::{Kind, Reason};

use crate::support::*;

pub async fn case_linked_role_activate(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let k = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let fresh = create_instance(&store, &a, &instance_id(2), "us-east-1")
        .await
        .key();

    let record = claim(&store, &k, "worker-a", "Ab12").await;
    let claimed = get_role(&store, &k).await;
    let observed = observed(&a, "Ab12");
    tick().await;
    let active = store
        .linked_role_activate(&admin(), &held(&record), &k, observed.clone(), true, false)
        .await
        .expect("activate");
    assert_records(&active, &k, &observed, true);
    assert_eq!(
        active.iam_create_time,
        Some(time("2019-03-04T05:06:07.123456Z"))
    );
    assert_eq!(
        active.last_used_time,
        Some(time("2024-11-12T13:14:15.654321Z"))
    );
    assert!(active.revision > claimed.revision, "{active:?}");
    assert!(active.update_time > claimed.update_time, "{active:?}");
    assert_eq!(
        get_role(&store, &k).await,
        active,
        "get returns what activate did"
    );
    assert_eq!(instance_state(&store, &k).await, LinkedRoleState::Active);
    assert_eq!(
        listed_in(&store, LinkedRoleState::Active).await,
        vec![k.clone()]
    );
    assert!(
        listed_in(&store, LinkedRoleState::Creating)
            .await
            .is_empty()
    );

    // Twice with the same role: nothing changes, even once the workflow
    // has finished (a step replayed after a crash).
    let twice = store
        .linked_role_activate(&admin(), &held(&record), &k, observed.clone(), true, false)
        .await;
    assert_eq!(twice.expect("activate twice"), active);
    let done = finish(&store, &record, Phase::Succeeded).await;
    let replayed = store
        .linked_role_activate(&admin(), &held(&record), &k, observed.clone(), true, false)
        .await;
    assert_eq!(replayed.expect("activate after the end"), active);
    // Another role under the finished workflow's fence: ABORTED.
    expect_err(
        store
            .linked_role_activate(
                &admin(),
                &held(&record),
                &k,
                observed_bare(&a, "Zz99"),
                false,
                false,
            )
            .await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );
    assert_eq!(get_role(&store, &k).await, active);
    assert_eq!(get_workflow(&store, &record.id).await, done);

    // Created rather than adopted, with the optional fields empty.
    let record = claim(&store, &fresh, "worker-c", "Cd34").await;
    let bare = observed_bare(&a, "Cd34");
    let created = store
        .linked_role_activate(&admin(), &held(&record), &fresh, bare.clone(), false, false)
        .await
        .expect("activate");
    assert_records(&created, &fresh, &bare, false);
    assert_eq!(get_role(&store, &fresh).await, created);
    assert_eq!(
        instance_state(&store, &fresh).await,
        LinkedRoleState::Active
    );
}

pub async fn case_linked_role_activate_needs_fence(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let k = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let unclaimed = create_instance(&store, &a, &instance_id(2), "us-east-1")
        .await
        .key();

    let record = claim(&store, &k, "worker-a", "Ab12").await;
    let claimed = get_role(&store, &k).await;
    let observed = observed(&a, "Ab12");
    for intruder in ["worker-b", "", "worker-a "] {
        expect_err(
            store
                .linked_role_activate(
                    &admin(),
                    &fence(&record, intruder),
                    &k,
                    observed.clone(),
                    false,
                    false,
                )
                .await,
            Kind::Aborted,
            Reason::OperationInProgress,
        );
    }
    assert_eq!(get_role(&store, &k).await, claimed, "nothing changed");
    assert_eq!(instance_state(&store, &k).await, LinkedRoleState::Creating);
    assert_eq!(get_workflow(&store, &record.id).await, record, "still held");

    // Nothing started at all.
    expect_err(
        store
            .linked_role_activate(
                &admin(),
                &held(&record),
                &unclaimed,
                observed_bare(&a, "Ef56"),
                false,
                false,
            )
            .await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );
    assert_eq!(get_role(&store, &unclaimed).await.revision, Revision(0));
    assert_eq!(
        instance_state(&store, &unclaimed).await,
        LinkedRoleState::Absent
    );
    // A missing instance.
    expect_err(
        store
            .linked_role_activate(
                &admin(),
                &held(&record),
                &key(&a, &instance_id(9)),
                observed_bare(&a, "Ef56"),
                false,
                false,
            )
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );

    // The holder still can.
    store
        .linked_role_activate(&admin(), &held(&record), &k, observed, false, false)
        .await
        .expect("the holder activates");
    assert_eq!(instance_state(&store, &k).await, LinkedRoleState::Active);
}

pub async fn case_linked_role_owned_elsewhere(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let x = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let y = create_instance(&store, &a, &instance_id(2), "eu-west-2")
        .await
        .key();

    let x_active = make_active(&store, &x, "Same").await;
    let shared = observed(&a, "Same");
    let y_record = claim(&store, &y, "worker-y", "Same").await;
    let y_claimed = get_role(&store, &y).await;
    for adopted in [true, false] {
        let error = expect_err(
            store
                .linked_role_activate(
                    &admin(),
                    &held(&y_record),
                    &y,
                    shared.clone(),
                    adopted,
                    false,
                )
                .await,
            Kind::FailedPrecondition,
            Reason::RoleOwnedElsewhere,
        );
        assert!(
            error.message.contains(&shared.role_arn),
            "the error names the role: {error:?}"
        );
    }
    assert_eq!(get_role(&store, &y).await, y_claimed, "Y is unchanged");
    assert_eq!(instance_state(&store, &y).await, LinkedRoleState::Creating);
    assert_eq!(get_role(&store, &x).await, x_active, "X is unchanged");
    assert_eq!(
        listed_in(&store, LinkedRoleState::Active).await,
        vec![x.clone()]
    );

    // Y still holds its workflow: it records a role of its own.
    let own = observed(&a, "Own2");
    let y_active = store
        .linked_role_activate(&admin(), &held(&y_record), &y, own.clone(), false, false)
        .await
        .expect("activate Y with its own role");
    assert_records(&y_active, &y, &own, false);
}

pub async fn case_linked_role_abandon(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let gone = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let kept = create_instance(&store, &a, &instance_id(2), "us-east-1")
        .await
        .key();
    let bare = create_instance(&store, &a, &instance_id(3), "us-east-1").await;

    // CREATING goes back to ABSENT, record and instance; twice, the same.
    let record = claim(&store, &gone, "worker-a", "Gone").await;
    let claimed = get_role(&store, &gone).await;
    let abandoned = store
        .linked_role_abandon(&admin(), &held(&record), &gone)
        .await
        .expect("abandon");
    assert_eq!(abandoned.state, LinkedRoleState::Absent, "{abandoned:?}");
    assert!(abandoned.revision > claimed.revision, "{abandoned:?}");
    assert_no_role_fields(&abandoned);
    assert_eq!(get_role(&store, &gone).await, abandoned);
    assert_eq!(instance_state(&store, &gone).await, LinkedRoleState::Absent);
    let twice = store
        .linked_role_abandon(&admin(), &held(&record), &gone)
        .await;
    assert_eq!(twice.expect("abandon twice"), abandoned);
    // The workflow ends FAILED; the next ensure starts afresh.
    finish(&store, &record, Phase::Failed).await;
    let next = claim(&store, &gone, "worker-b", "Next").await;
    assert_ne!(next.id, record.id);
    assert_eq!(next.inputs["suffix"], "Next");
    // The old fence undoes nothing of the new workflow.
    let creating = get_role(&store, &gone).await;
    expect_err(
        store
            .linked_role_abandon(&admin(), &held(&record), &gone)
            .await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );
    expect_err(
        store
            .linked_role_abandon(&admin(), &fence(&next, "worker-a"), &gone)
            .await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );
    assert_eq!(get_role(&store, &gone).await, creating);

    // A record that has its role keeps it.
    let record = claim(&store, &kept, "worker-c", "Keep").await;
    let role = store
        .linked_role_activate(
            &admin(),
            &held(&record),
            &kept,
            observed(&a, "Keep"),
            false,
            false,
        )
        .await
        .expect("activate");
    let got = store
        .linked_role_abandon(&admin(), &held(&record), &kept)
        .await;
    assert_eq!(got.expect("abandon an ACTIVE role"), role);
    assert_eq!(get_role(&store, &kept).await, role);
    assert_eq!(instance_state(&store, &kept).await, LinkedRoleState::Active);

    // No record at all: ABSENT; a missing instance: NOT_FOUND.
    let got = store
        .linked_role_abandon(&admin(), &held(&next), &bare.key())
        .await;
    assert_eq!(got.expect("abandon nothing"), LinkedRole::absent(&bare));
    expect_err(
        store
            .linked_role_abandon(&admin(), &held(&next), &key(&a, &instance_id(9)))
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
}
