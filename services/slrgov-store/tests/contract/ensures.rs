//! The start of the ensure workflow: a new workflow (the role CREATING), an
//! ACTIVE role (nothing to start), a retirement running, a workflow held by
//! another process (wait for it), one whose holder's lease ran out (taken
//! over with its saved inputs), and owners racing for it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use slrgov_domain::model::LinkedRoleState;
use slrgov_domain::names::InstanceKey;
use slrgov_domain::types::Revision;
use slrgov_domain::{Kind, Reason};

use crate::support::*;

/// Starts the ensure of `k` as `owner` for `lease`, as the local operator.
async fn begin(
    store: &Arc<dyn Store>,
    k: &InstanceKey,
    owner: &str,
    lease: Duration,
    suffix: &str,
) -> EnsureStart {
    store
        .linked_role_begin_ensure(&admin(), ensure_start(k, suffix), owner, lease, None)
        .await
        .unwrap_or_else(|e| panic!("begin the ensure of {k} as {owner}: {e:?}"))
}

pub async fn case_begin_ensure_new(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let k = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let other = create_instance(&store, &a, &instance_id(2), "us-east-1")
        .await
        .key();
    let b1 = create_instance(&store, &b, &instance_id(3), "us-east-1")
        .await
        .key();

    let before = chrono::Utc::now();
    let record = claim(&store, &k, "worker-a", "Xy12").await;
    assert_eq!(record.kind, WorkflowKind::Ensure);
    assert_eq!(record.key().ok(), Some(k.clone()));
    assert_eq!(
        (record.phase, record.step.as_str()),
        (Phase::Running, "find")
    );
    assert_eq!(record.attempt, 0);
    assert_eq!(
        record.inputs,
        json!({"suffix": "Xy12", "description": null})
    );
    assert_eq!(record.state, json!({"state": "claimed"}));
    assert_eq!(record.principal, "local-operator");
    assert_eq!(record.request_id, None);
    assert_eq!(record.lease_owner.as_deref(), Some("worker-a"));
    assert_about(record.lease_until.expect("held"), before, LONG);
    assert_eq!((record.error.clone(), record.output.clone()), (None, None));
    assert_eq!(record.end_time, None);
    assert!(record.create_time >= before - chrono::Duration::seconds(1));
    assert_eq!(get_workflow(&store, &record.id).await, record);

    // The role is CREATING, record and instance.
    let role = get_role(&store, &k).await;
    assert_eq!(role.state, LinkedRoleState::Creating);
    assert_eq!(
        role.revision,
        Revision(1),
        "the first write makes revision 1"
    );
    assert_no_role_fields(&role);
    assert_eq!(instance_state(&store, &k).await, LinkedRoleState::Creating);
    assert_eq!(
        instance_state(&store, &other).await,
        LinkedRoleState::Absent
    );
    assert_eq!(
        listed_in(&store, LinkedRoleState::Creating).await,
        vec![k.clone()]
    );
    assert_eq!(
        listed_in(&store, LinkedRoleState::Absent).await,
        vec![other.clone(), b1.clone()]
    );

    // Missing, or out of scope: NOT_FOUND, and nothing recorded.
    let olga = operator(&[&a]);
    for (ctx, target) in [
        (admin(), key(&a, &instance_id(9))),
        (olga.clone(), b1.clone()),
    ] {
        expect_err(
            store
                .linked_role_begin_ensure(&ctx, ensure_start(&target, "s"), "w", LONG, None)
                .await,
            Kind::NotFound,
            Reason::NotFound,
        );
    }
    assert_eq!(get_role(&store, &b1).await.revision, Revision(0));
    assert_eq!(instance_state(&store, &b1).await, LinkedRoleState::Absent);

    // An operator in scope starts one; it is the operator's.
    let got = store
        .linked_role_begin_ensure(&olga, ensure_start(&other, "Op01"), "worker-o", LONG, None)
        .await
        .expect("operator begin");
    let EnsureStart::Claimed(mine) = got else {
        panic!("expected Claimed, got {got:?}");
    };
    assert_eq!(mine.principal, "olga");
    assert_ne!(mine.id, record.id);
    assert_eq!(
        instance_state(&store, &other).await,
        LinkedRoleState::Creating
    );
}

pub async fn case_begin_ensure_states(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let instance = |n| key(&a, &instance_id(n));
    for n in 1..=4 {
        create_instance(&store, &a, &instance_id(n), "us-east-1").await;
    }
    let (active, retiring, busy, expiring) = (instance(1), instance(2), instance(3), instance(4));

    // ACTIVE: nothing to start, for anyone; nothing changes.
    let role = make_active(&store, &active, "Act1").await;
    for owner in ["worker-b", "ensurer"] {
        let got = begin(&store, &active, owner, LONG, "Zz99").await;
        assert_eq!(got, EnsureStart::Active(Box::new(role.clone())));
    }
    assert_eq!(get_role(&store, &active).await, role);

    // DELETING (a retirement runs): OPERATION_IN_PROGRESS, nothing changes.
    make_active(&store, &retiring, "Ret1").await;
    let retirement = retire(&store, &retiring, WorkflowKind::Retire).await;
    let deleting = get_role(&store, &retiring).await;
    expect_err(
        store
            .linked_role_begin_ensure(&admin(), ensure_start(&retiring, "R"), "w", LONG, None)
            .await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );
    assert_eq!(get_role(&store, &retiring).await, deleting);
    assert_eq!(get_workflow(&store, &retirement.id).await, retirement);

    // Held by another process: Running, the workflow to wait for, whatever
    // the inputs; nothing changes.
    let first = claim(&store, &busy, "worker-a", "Aaaa").await;
    for suffix in ["Aaaa", "Bbbb"] {
        let got = begin(&store, &busy, "worker-b", LONG, suffix).await;
        assert_eq!(got, EnsureStart::Running(Box::new(first.clone())));
    }
    assert_eq!(get_workflow(&store, &first.id).await, first);
    assert_eq!(get_role(&store, &busy).await.revision, Revision(1));
    // Its holder starting again holds the same workflow.
    let again = claim(&store, &busy, "worker-a", "Cccc").await;
    assert_eq!(
        (again.id.as_str(), again.inputs.clone()),
        (first.id.as_str(), first.inputs)
    );

    // Its holder's lease ran out: taken over by the next owner, with the
    // inputs it was started with, not the new ones.
    let early = match begin(
        &store,
        &expiring,
        "worker-a",
        Duration::from_millis(50),
        "Plan",
    )
    .await
    {
        EnsureStart::Claimed(record) => *record,
        other => panic!("expected Claimed, got {other:?}"),
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let late = claim(&store, &expiring, "worker-b", "Othr").await;
    assert_eq!(late.id, early.id, "the same workflow");
    assert_eq!(late.inputs, json!({"suffix": "Plan", "description": null}));
    assert_eq!((&late.state, &late.step), (&early.state, &early.step));
    assert_eq!(late.lease_owner.as_deref(), Some("worker-b"));
    assert!(late.lease_until > early.lease_until);
    assert_eq!(get_workflow(&store, &late.id).await, late);
    assert_eq!(
        instance_state(&store, &expiring).await,
        LinkedRoleState::Creating
    );

    // worker-a lost it: now it waits, and its fence writes nothing.
    let got = begin(&store, &expiring, "worker-a", LONG, "Plan").await;
    assert_eq!(got, EnsureStart::Running(Box::new(late.clone())));
    let stale = fence(&early, "worker-a");
    let creating = get_role(&store, &expiring).await;
    expect_err(
        store
            .linked_role_activate(
                &admin(),
                &stale,
                &expiring,
                observed_bare(&a, "Plan"),
                false,
                false,
            )
            .await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );
    expect_err(
        store.linked_role_abandon(&admin(), &stale, &expiring).await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );
    assert_eq!(get_role(&store, &expiring).await, creating);
    // worker-b's does.
    let observed = observed_bare(&a, "Plan");
    let active = store
        .linked_role_activate(
            &admin(),
            &held(&late),
            &expiring,
            observed.clone(),
            false,
            false,
        )
        .await
        .expect("the new holder activates");
    assert_records(&active, &expiring, &observed, false);
}

pub async fn case_linked_role_races(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let k = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let x = create_instance(&store, &a, &instance_id(2), "us-east-1")
        .await
        .key();
    let y = create_instance(&store, &a, &instance_id(3), "us-east-1")
        .await
        .key();

    // Owners racing to start one ensure: one holds the one workflow, the
    // others wait for it.
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let (store, k) = (store.clone(), k.clone());
            tokio::spawn(async move {
                let owner = format!("worker-{n}");
                let start = ensure_start(&k, &format!("Sfx{n}"));
                let got = store
                    .linked_role_begin_ensure(&admin(), start, &owner, LONG, None)
                    .await;
                (owner, got)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut waiting = Vec::new();
    for task in futures::future::join_all(tasks).await {
        let (owner, got) = task.expect("task");
        match got.expect("begin") {
            EnsureStart::Claimed(record) => winners.push((owner, *record)),
            EnsureStart::Running(record) => waiting.push(record.id),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "one start wins: {winners:?}");
    let (owner, record) = winners.remove(0);
    assert_eq!(record.lease_owner.as_deref(), Some(owner.as_str()));
    assert_eq!(
        record.inputs["suffix"],
        owner.replace("worker-", "Sfx"),
        "the winner's inputs"
    );
    assert_eq!(
        waiting,
        vec![record.id.clone(); 7],
        "the others wait for it"
    );
    assert_eq!(
        get_role(&store, &k).await.revision,
        Revision(1),
        "one start"
    );
    assert_eq!(get_workflow(&store, &record.id).await, record);

    // Two records activating the same role: exactly one gets it.
    let fences = [
        (
            x.clone(),
            held(&claim(&store, &x, "worker-x", "Same").await),
        ),
        (
            y.clone(),
            held(&claim(&store, &y, "worker-y", "Same").await),
        ),
    ];
    let tasks: Vec<_> = fences
        .into_iter()
        .map(|(k, fence)| {
            let (store, observed) = (store.clone(), observed(&a, "Same"));
            tokio::spawn(async move {
                store
                    .linked_role_activate(&admin(), &fence, &k, observed, false, false)
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
    let lost = results.into_iter().find(|r| r.is_err()).expect("one lost");
    expect_err(lost, Kind::FailedPrecondition, Reason::RoleOwnedElsewhere);
    let mut states = [
        instance_state(&store, &x).await,
        instance_state(&store, &y).await,
    ];
    states.sort_by_key(|s| s.as_str());
    assert_eq!(states, [LinkedRoleState::Active, LinkedRoleState::Creating]);
}

/// A workflow its holder let go to wait (a throttled step's backoff, the
/// inline budget spent) is not taken over before its `not_before`: a new
/// request waits for it (Running), and takes it once the time has come.
pub async fn case_begin_ensure_waits_for_not_before(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    create_instance(&store, &a, &instance_id(1), "us-east-1").await;
    let k = key(&a, &instance_id(1));
    let held = claim(&store, &k, "worker-a", "Wait").await;
    let mut update = crate::flows::update_of(&held, Phase::Running);
    update.not_before = chrono::Utc::now() + chrono::Duration::milliseconds(400);
    let waiting = store
        .workflow_save(&admin(), &held.id, "worker-a", update)
        .await
        .expect("let go until not_before");
    assert_eq!(waiting.lease_owner, None);
    match begin(&store, &k, "worker-b", LONG, "Wait").await {
        EnsureStart::Running(record) => assert_eq!(record.id, held.id),
        other => panic!("before its not_before, the workflow is waited for: {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    match begin(&store, &k, "worker-b", LONG, "Wait").await {
        EnsureStart::Claimed(record) => {
            assert_eq!(record.id, held.id);
            assert_eq!(record.lease_owner.as_deref(), Some("worker-b"));
        }
        other => panic!("once due, the workflow is taken over: {other:?}"),
    }
}
