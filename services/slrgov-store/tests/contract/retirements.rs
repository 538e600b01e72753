//! Retirements (RetireLinkedRole, and DeleteInstance of an instance with a
//! role): the start (etag, state, one role per record, one workflow per
//! instance), the deletion task IAM started, the role recorded DELETED (a
//! `delete` removes the instance too), and the undo to what IAM says now;
//! each step twice, and under a stale fence.

use std::sync::Arc;

use serde_json::json;
use slrgov_domain::model::{DeletionFailure, LinkedRole, LinkedRoleState};
use slrgov_domain::names::InstanceKey;
use slrgov_domain::types::Revision;
use slrgov_domain::{Kind, Reason};

use crate::support::*;

/// Starts a retirement of `kind` of `k` with `role_name` and `expected`.
async fn begin(
    store: &Arc<dyn Store>,
    kind: WorkflowKind,
    k: &InstanceKey,
    role_name: &str,
    expected: Option<Revision>,
) -> slrgov_domain::Result<RetireStart> {
    store
        .linked_role_begin_retire(&admin(), retire_start(kind, k, role_name), expected, None)
        .await
}

/// Makes `k`'s role ACTIVE with `suffix`, starts a retirement of `kind`
/// and hands it to `owner`, as a worker claims it.
async fn retiring(
    store: &Arc<dyn Store>,
    k: &InstanceKey,
    suffix: &str,
    kind: WorkflowKind,
    owner: &str,
) -> WorkflowRecord {
    make_active(store, k, suffix).await;
    let record = retire(store, k, kind).await;
    hold(store, &record.id, owner).await
}

fn in_use() -> DeletionFailure {
    DeletionFailure {
        reason: "the role is used by an instance".to_owned(),
        role_usage: vec![(
            "us-east-1".to_owned(),
            vec!["arn:aws:connect:us-east-1:111100000001:instance/x".to_owned()],
        )],
    }
}

pub async fn case_begin_retire(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    for n in 1..=3 {
        create_instance(&store, &a, &instance_id(n), "us-east-1").await;
    }
    let (r, ensuring, absent) = (
        key(&a, &instance_id(1)),
        key(&a, &instance_id(2)),
        key(&a, &instance_id(3)),
    );
    let role = make_active(&store, &r, "Ret1").await;
    let name = role_name("Ret1");

    // A stale etag, or a role name that is no longer the recorded one:
    // ABORTED / ETAG_MISMATCH, nothing starts.
    let stale = Some(Revision(role.revision.0 - 1));
    let old = role_name("Old1");
    for (planned, expected) in [(name.as_str(), stale), (old.as_str(), None)] {
        expect_err(
            begin(&store, WorkflowKind::Retire, &r, planned, expected).await,
            Kind::Aborted,
            Reason::EtagMismatch,
        );
    }
    assert_eq!(get_role(&store, &r).await, role);

    // Started: the role DELETING, a retire workflow due for the workers.
    let before = chrono::Utc::now();
    let got = begin(&store, WorkflowKind::Retire, &r, &name, Some(role.revision)).await;
    let RetireStart::Started(record) = got.expect("begin") else {
        panic!("expected Started");
    };
    assert_eq!(
        (record.kind, record.key().ok()),
        (WorkflowKind::Retire, Some(r.clone()))
    );
    assert_eq!(
        (record.phase, record.step.as_str()),
        (Phase::Running, "submit")
    );
    assert_eq!(record.inputs, json!({"role_name": name}));
    assert_eq!(record.state, json!({"state": "claimed"}));
    assert_eq!(
        (record.lease_owner.clone(), record.lease_until),
        (None, None)
    );
    assert_eq!(record.principal, "local-operator");
    assert!(
        record.not_before <= chrono::Utc::now()
            && record.not_before >= before - chrono::Duration::seconds(1)
    );
    assert_eq!(record.end_time, None);
    assert_eq!(get_workflow(&store, &record.id).await, *record);
    let deleting = get_role(&store, &r).await;
    assert_eq!(
        deleting,
        LinkedRole {
            state: LinkedRoleState::Deleting,
            revision: Revision(role.revision.0 + 1),
            update_time: deleting.update_time,
            ..role.clone()
        }
    );
    assert_eq!(instance_state(&store, &r).await, LinkedRoleState::Deleting);

    // The same kind again: the running one, nothing new. Another kind:
    // OPERATION_IN_PROGRESS.
    let again = begin(&store, WorkflowKind::Retire, &r, &name, None).await;
    assert_eq!(again.expect("again"), RetireStart::Started(record.clone()));
    expect_err(
        begin(&store, WorkflowKind::Delete, &r, &name, None).await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );
    assert_eq!(get_role(&store, &r).await, deleting);

    // An ensure running: OPERATION_IN_PROGRESS too.
    let ensure = claim(&store, &ensuring, "worker-e", "Ens1").await;
    for kind in [WorkflowKind::Retire, WorkflowKind::Delete] {
        expect_err(
            begin(&store, kind, &ensuring, &role_name("Ens1"), None).await,
            Kind::Aborted,
            Reason::OperationInProgress,
        );
    }
    assert_eq!(get_workflow(&store, &ensure.id).await, ensure);

    // Nothing to retire: ABSENT (never recorded, or its ensure undone),
    // DELETED.
    store
        .linked_role_abandon(&admin(), &held(&ensure), &ensuring)
        .await
        .expect("abandon");
    finish(&store, &ensure, Phase::Failed).await;
    let gone = retire_done(&store, &r, &record).await;
    assert_eq!(gone.state, LinkedRoleState::Deleted);
    for k in [&absent, &ensuring, &r] {
        for kind in [WorkflowKind::Retire, WorkflowKind::Delete] {
            expect_err(
                begin(&store, kind, k, "", None).await,
                Kind::FailedPrecondition,
                Reason::FailedPrecondition,
            );
        }
    }
    assert_eq!(get_role(&store, &r).await, gone);
    assert_eq!(
        get_role(&store, &ensuring).await.state,
        LinkedRoleState::Absent
    );
    assert_eq!(get_role(&store, &absent).await.revision, Revision(0));
    expect_err(
        begin(
            &store,
            WorkflowKind::Retire,
            &key(&a, &instance_id(9)),
            "",
            None,
        )
        .await,
        Kind::NotFound,
        Reason::NotFound,
    );
}

/// Holds `record` and records its role DELETED, then finishes it.
async fn retire_done(
    store: &Arc<dyn Store>,
    k: &InstanceKey,
    record: &WorkflowRecord,
) -> LinkedRole {
    let held_record = hold(store, &record.id, "worker-r").await;
    let role = store
        .linked_role_retired(&admin(), &held(&held_record), k, record.kind)
        .await
        .expect("retired")
        .expect("a retire keeps the record");
    finish(store, &held_record, Phase::Succeeded).await;
    role
}

pub async fn case_retire_owned_elsewhere(db: &TestDb) {
    let store = db.open().await;
    let a = create_account(&store, 1).await.account_id;
    let x = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let y = create_instance(&store, &a, &instance_id(2), "us-east-1")
        .await
        .key();
    let role = make_active(&store, &x, "Same").await;
    make_active(&store, &y, "Ygrk").await;
    // Two records holding one role cannot be made through the store (the
    // unique index refuses the second); data from before that index, or
    // written by hand, can: the retirement still refuses to delete it.
    db.try_execute("DROP INDEX linked_roles_arn_idx")
        .await
        .expect("drop the index");
    let changed = db
        .execute(
            "UPDATE linked_roles SET role_arn = $1 WHERE instance_id = $2",
            &[&role_arn(&a, "Same"), y.instance_id.as_str()],
        )
        .await;
    assert_eq!(changed, 1);

    for kind in [WorkflowKind::Retire, WorkflowKind::Delete] {
        expect_err(
            begin(&store, kind, &x, &role_name("Same"), None).await,
            Kind::FailedPrecondition,
            Reason::RoleOwnedElsewhere,
        );
    }
    assert_eq!(get_role(&store, &x).await, role, "nothing started");
    let page = store
        .workflow_list_operations(&admin(), &page(10, ""))
        .await
        .expect("list");
    assert!(page.items.is_empty(), "{page:?}");
}

pub async fn case_deletion_started(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let k = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    make_active(&store, &k, "Del1").await;
    let record = retire(&store, &k, WorkflowKind::Retire).await;

    // Not held yet: every fence is stale.
    expect_err(
        store
            .linked_role_deletion_started(&admin(), &fence(&record, "worker-a"), &k, "task-1")
            .await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );
    assert_eq!(get_role(&store, &k).await.deletion_task_id, None);

    let record = hold(&store, &record.id, "worker-a").await;
    for _ in 0..2 {
        store
            .linked_role_deletion_started(&admin(), &held(&record), &k, "task-1")
            .await
            .expect("deletion started (twice)");
        let role = get_role(&store, &k).await;
        assert_eq!(role.deletion_task_id.as_deref(), Some("task-1"));
        assert_eq!(role.state, LinkedRoleState::Deleting);
    }
    // Another holder's fence, or a missing instance.
    expect_err(
        store
            .linked_role_deletion_started(&admin(), &fence(&record, "worker-b"), &k, "task-2")
            .await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );
    expect_err(
        store
            .linked_role_deletion_started(&admin(), &held(&record), &key(&a, &instance_id(9)), "t")
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
    assert_eq!(
        get_role(&store, &k).await.deletion_task_id.as_deref(),
        Some("task-1")
    );
    // A new retirement forgets the old task.
    store
        .linked_role_restore(&admin(), &held(&record), &k, RestoredRole::Active)
        .await
        .expect("restore");
    finish(&store, &record, Phase::Failed).await;
    retire(&store, &k, WorkflowKind::Retire).await;
    assert_eq!(get_role(&store, &k).await.deletion_task_id, None);
}

pub async fn case_retired(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let r = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let d = create_instance(&store, &a, &instance_id(2), "us-east-1")
        .await
        .key();

    // retire: DELETED, with the role it had; twice, the same.
    let record = retiring(&store, &r, "Ret1", WorkflowKind::Retire, "worker-a").await;
    let deleting = get_role(&store, &r).await;
    expect_err(
        store
            .linked_role_retired(
                &admin(),
                &fence(&record, "worker-b"),
                &r,
                WorkflowKind::Retire,
            )
            .await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );
    assert_eq!(get_role(&store, &r).await, deleting);
    let retired = store
        .linked_role_retired(&admin(), &held(&record), &r, WorkflowKind::Retire)
        .await
        .expect("retired")
        .expect("a retire keeps the record");
    assert_eq!(
        retired,
        LinkedRole {
            state: LinkedRoleState::Deleted,
            revision: Revision(deleting.revision.0 + 1),
            update_time: retired.update_time,
            ..deleting.clone()
        }
    );
    assert_eq!(get_role(&store, &r).await, retired);
    assert_eq!(instance_state(&store, &r).await, LinkedRoleState::Deleted);
    let done = finish(&store, &record, Phase::Succeeded).await;
    let twice = store
        .linked_role_retired(&admin(), &held(&record), &r, WorkflowKind::Retire)
        .await;
    assert_eq!(twice.expect("retired twice"), Some(retired.clone()));
    assert_eq!(get_workflow(&store, &record.id).await, done);

    // delete: the instance goes, with its linked role; twice, the same.
    let record = retiring(&store, &d, "Del1", WorkflowKind::Delete, "worker-a").await;
    for _ in 0..2 {
        let got = store
            .linked_role_retired(&admin(), &held(&record), &d, WorkflowKind::Delete)
            .await;
        assert_eq!(got.expect("retired"), None, "a delete removes the record");
        for result in [
            store.instance_get(&admin(), &d).await.map(drop),
            store.linked_role_get(&admin(), &d).await.map(drop),
        ] {
            expect_err(result, Kind::NotFound, Reason::NotFound);
        }
    }
    // The operation outlives the instance.
    let done = finish(&store, &record, Phase::Succeeded).await;
    assert_eq!(
        (done.kind, done.phase),
        (WorkflowKind::Delete, Phase::Succeeded)
    );
    assert_eq!(get_workflow(&store, &record.id).await, done);
    // The id registered again starts from scratch.
    let again = create_instance(&store, &a, &instance_id(2), "us-east-1").await;
    assert_eq!(get_role(&store, &d).await, LinkedRole::absent(&again));
}

pub async fn case_restore(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    for n in 1..=4 {
        create_instance(&store, &a, &instance_id(n), "us-east-1").await;
    }
    let k = |n| key(&a, &instance_id(n));
    let cases = [
        (k(1), RestoredRole::Active, LinkedRoleState::Active),
        (
            k(2),
            RestoredRole::DeletionFailed(in_use()),
            LinkedRoleState::DeletionFailed,
        ),
        (k(3), RestoredRole::Deleted, LinkedRoleState::Deleted),
    ];
    for (n, (target, restored, state)) in cases.into_iter().enumerate() {
        let suffix = format!("Rst{n}");
        let record = retiring(&store, &target, &suffix, WorkflowKind::Retire, "worker-a").await;
        let deleting = get_role(&store, &target).await;
        store
            .linked_role_deletion_started(&admin(), &held(&record), &target, "task-r")
            .await
            .expect("deletion started");
        // A stale fence: ABORTED, nothing changes.
        expect_err(
            store
                .linked_role_restore(
                    &admin(),
                    &fence(&record, "worker-b"),
                    &target,
                    restored.clone(),
                )
                .await,
            Kind::Aborted,
            Reason::OperationInProgress,
        );
        assert_eq!(
            get_role(&store, &target).await.state,
            LinkedRoleState::Deleting
        );

        let got = store
            .linked_role_restore(&admin(), &held(&record), &target, restored.clone())
            .await
            .expect("restore");
        let failure = match &restored {
            RestoredRole::DeletionFailed(failure) => Some(failure.clone()),
            _ => None,
        };
        assert_eq!((got.state, got.deletion_failure.clone()), (state, failure));
        assert_eq!(got.role_arn, deleting.role_arn, "the role stays recorded");
        assert!(got.revision > deleting.revision);
        assert_eq!(get_role(&store, &target).await, got);
        assert_eq!(instance_state(&store, &target).await, state);
        // Twice: the same.
        let twice = store
            .linked_role_restore(&admin(), &held(&record), &target, restored)
            .await;
        assert_eq!(twice.expect("restore twice"), got);
        finish(&store, &record, Phase::Failed).await;
    }

    // ACTIVE again: an ensure finds it; DELETION_FAILED: it can be retired
    // again; DELETED: the instance can go.
    let active = get_role(&store, &k(1)).await;
    let got = store
        .linked_role_begin_ensure(&admin(), ensure_start(&k(1), "X"), "w", LONG, None)
        .await;
    assert_eq!(got.expect("ensure"), EnsureStart::Active(Box::new(active)));
    let again = retire(&store, &k(2), WorkflowKind::Retire).await;
    assert_eq!(
        instance_state(&store, &k(2)).await,
        LinkedRoleState::Deleting
    );
    store
        .instance_delete(&admin(), &k(3), None, delete_done(&k(3)), None)
        .await
        .expect("delete the instance of a DELETED role");

    // No record: ABSENT; a missing instance: NOT_FOUND.
    let record = hold(&store, &again.id, "w").await;
    let bare = store.instance_get(&admin(), &k(4)).await.expect("get");
    let got = store
        .linked_role_restore(&admin(), &held(&record), &k(4), RestoredRole::Active)
        .await;
    assert_eq!(got.expect("restore nothing"), LinkedRole::absent(&bare));
    expect_err(
        store
            .linked_role_restore(&admin(), &held(&record), &k(9), RestoredRole::Active)
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
}

/// A viewer cannot drive a retirement; another tenant's is NOT_FOUND first.
pub async fn case_retirement_roles(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let mine = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let theirs = create_instance(&store, &b, &instance_id(2), "us-east-1")
        .await
        .key();
    let victor = viewer(&[&a]);
    for (k, expected) in [
        (&mine, (Kind::PermissionDenied, Reason::PermissionDenied)),
        (&theirs, (Kind::NotFound, Reason::NotFound)),
    ] {
        let record = retiring(&store, k, "Vie1", WorkflowKind::Retire, "victor").await;
        let deleting = get_role(&store, k).await;
        let fence = held(&record);
        let results = [
            store
                .linked_role_deletion_started(&victor, &fence, k, "task")
                .await,
            store
                .linked_role_retired(&victor, &fence, k, WorkflowKind::Retire)
                .await
                .map(drop),
            store
                .linked_role_restore(&victor, &fence, k, RestoredRole::Active)
                .await
                .map(drop),
        ];
        for result in results {
            expect_err(result, expected.0, expected.1);
        }
        assert_eq!(get_role(&store, k).await, deleting);
        assert_eq!(get_workflow(&store, &record.id).await, record);
    }
}
