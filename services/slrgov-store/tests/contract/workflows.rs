//! Workflows as the engine and the workers use them: the engine's saves
//! (under the lease; a finished workflow stays finished; the trail written
//! when AWS calls are pending or the phase changes), the workers' claims
//! (only due, unheld, running rows, up to the limit, and never one workflow
//! to two claimers) and their release at shutdown. The API's views are in
//! `operations.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use slrgov_domain::audit::{AuditFilter, AwsCall};
use slrgov_domain::names::InstanceKey;
use slrgov_domain::types::AccountId;
use slrgov_domain::{Kind, Reason, RequestContext};

use crate::support::*;

/// How many audit events `account` has.
async fn events(store: &Arc<dyn Store>, account: &AccountId) -> usize {
    let got = store
        .audit_list(&admin(), account, &AuditFilter::default(), &page(1000, ""))
        .await
        .expect("audit_list");
    got.items.len()
}

fn unavailable() -> WorkflowError {
    WorkflowError {
        kind: "UNAVAILABLE".to_owned(),
        reason: "AWS_UNAVAILABLE".to_owned(),
        message: "iam is down".to_owned(),
        metadata: vec![("service".to_owned(), "iam".to_owned())],
        failure: None,
    }
}

/// A time cut to the microseconds both engines keep.
fn micros(t: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    chrono::DateTime::from_timestamp_micros(t.timestamp_micros()).expect("time")
}

/// Saves `update` of `id` as `owner`.
async fn save(
    store: &Arc<dyn Store>,
    ctx: &RequestContext,
    id: &str,
    owner: &str,
    update: WorkflowUpdate,
) -> slrgov_domain::Result<WorkflowRecord> {
    store.workflow_save(ctx, id, owner, update).await
}

/// Starts an ensure of `k` and lets it go (due at once for any worker).
async fn released(store: &Arc<dyn Store>, k: &InstanceKey) -> WorkflowRecord {
    let record = claim(store, k, "starter", "Rel1").await;
    let update = update_of(&record, Phase::Running);
    save(store, &admin(), &record.id, "starter", update)
        .await
        .expect("release")
}

pub async fn case_workflow_save(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let k = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let other = create_instance(&store, &a, &instance_id(2), "us-east-1")
        .await
        .key();
    let record = claim(&store, &k, "worker-a", "Sav1").await;
    let step = WorkflowUpdate {
        state: json!({"state": "planned", "role": null}),
        step: "create".to_owned(),
        phase: Phase::Running,
        attempt: 2,
        // Nanoseconds: the store keeps microseconds, on both engines.
        not_before: time("2031-02-03T04:05:06.123456789Z"),
        error: None,
        output: None,
        status_message: "ensure: next: create".to_owned(),
        lease_until: Some(time("2031-02-03T04:06:06.987654321Z")),
    };

    // Only the holder saves; a missing workflow or another tenant's is
    // NOT_FOUND.
    for owner in ["worker-b", "", "worker-a "] {
        expect_err(
            save(&store, &admin(), &record.id, owner, step.clone()).await,
            Kind::Aborted,
            Reason::OperationInProgress,
        );
    }
    for (ctx, id) in [
        (admin(), "no-such-workflow"),
        (operator(&[&b]), record.id.as_str()),
    ] {
        expect_err(
            save(&store, &ctx, id, "worker-a", step.clone()).await,
            Kind::NotFound,
            Reason::NotFound,
        );
    }
    assert_eq!(get_workflow(&store, &record.id).await, record);

    // What the holder saves is what it reads, without an audit event (no
    // AWS call, no new phase).
    let trail = events(&store, &a).await;
    tick().await;
    let saved = save(&store, &admin(), &record.id, "worker-a", step.clone())
        .await
        .expect("save");
    let want = WorkflowRecord {
        state: step.state.clone(),
        step: step.step.clone(),
        attempt: 2,
        not_before: micros(step.not_before),
        status_message: step.status_message.clone(),
        lease_until: step.lease_until.map(micros),
        update_time: saved.update_time,
        ..record.clone()
    };
    assert_eq!(saved, want);
    assert!(saved.update_time > record.update_time);
    assert_eq!(get_workflow(&store, &record.id).await, saved);
    assert_eq!(events(&store, &a).await, trail);

    // A step that called AWS: its calls are written once, with the save.
    let ctx = admin().with_method("worker/operations/advance");
    let call = AwsCall {
        service: "iam".to_owned(),
        operation: "CreateServiceLinkedRole".to_owned(),
        outcome: "Throttling".to_owned(),
        aws_request_id: Some("req-1".to_owned()),
    };
    ctx.audit.push_call(call.clone());
    let retried = WorkflowUpdate {
        attempt: 3,
        ..step.clone()
    };
    save(&store, &ctx, &record.id, "worker-a", retried)
        .await
        .expect("save");
    assert_eq!(ctx.audit.pending_calls(), 0, "the call was written");
    let listed = store
        .audit_list(&admin(), &a, &AuditFilter::default(), &page(1, ""))
        .await
        .expect("audit_list");
    assert_eq!(listed.items[0].aws_calls, [call]);
    assert_eq!(listed.items[0].resource, k.linked_role_name());
    assert!(
        listed.items[0].detail.contains(&record.id),
        "{:?}",
        listed.items[0]
    );
    assert_eq!(events(&store, &a).await, trail + 1);

    // Unwinding, released: an event for the new phase; the holder let it
    // go, so its next save is refused.
    let unwind = WorkflowUpdate {
        phase: Phase::Unwinding,
        error: Some(unavailable()),
        not_before: Utc::now(),
        lease_until: None,
        ..step.clone()
    };
    let unwinding = save(&store, &admin(), &record.id, "worker-a", unwind.clone())
        .await
        .expect("save");
    assert_eq!(
        (unwinding.phase, unwinding.error.clone()),
        (Phase::Unwinding, Some(unavailable()))
    );
    assert_eq!(
        (unwinding.lease_owner.clone(), unwinding.lease_until),
        (None, None)
    );
    assert_eq!(unwinding.end_time, None);
    assert_eq!(events(&store, &a).await, trail + 2);
    expect_err(
        save(&store, &admin(), &record.id, "worker-a", unwind).await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );

    // A worker takes it and ends it FAILED: end_time set, the event's
    // outcome is the error's kind.
    hold(&store, &record.id, "worker-w").await;
    let before = micros(Utc::now());
    let end = WorkflowUpdate {
        phase: Phase::Failed,
        error: Some(unavailable()),
        lease_until: None,
        ..step.clone()
    };
    let failed = save(&store, &admin(), &record.id, "worker-w", end)
        .await
        .expect("save");
    assert_eq!(failed.phase, Phase::Failed);
    assert!(failed.end_time.is_some_and(|t| t >= before), "{failed:?}");
    assert!(failed.done());
    assert_eq!(events(&store, &a).await, trail + 3);
    let listed = store
        .audit_list(&admin(), &a, &AuditFilter::default(), &page(1, ""))
        .await
        .expect("audit_list");
    assert_eq!(listed.items[0].outcome, "UNAVAILABLE");

    // Finished stays finished: saved again, by anyone, it is unchanged.
    for owner in ["worker-w", "worker-a", "nobody"] {
        let again = save(&store, &admin(), &record.id, owner, step.clone()).await;
        assert_eq!(again.expect("save a finished workflow"), failed);
    }
    assert_eq!(get_workflow(&store, &record.id).await, failed);
    assert_eq!(events(&store, &a).await, trail + 3);

    // SUCCEEDED, with its output.
    let record = claim(&store, &other, "worker-a", "Sav2").await;
    let done = WorkflowUpdate {
        phase: Phase::Succeeded,
        output: Some(json!({"role_name": "x"})),
        lease_until: None,
        ..step
    };
    let succeeded = save(&store, &admin(), &record.id, "worker-a", done)
        .await
        .expect("save");
    assert_eq!(succeeded.output, Some(json!({"role_name": "x"})));
    assert!(succeeded.end_time.is_some());
    assert_eq!(get_workflow(&store, &record.id).await, succeeded);
}

pub async fn case_workflow_claim_due(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    for n in 1..=7 {
        create_instance(&store, &a, &instance_id(n), "us-east-1").await;
    }
    let k = |n| key(&a, &instance_id(n));

    // Due and unheld, in order of not_before: a released ensure, an
    // unwinding one, one whose holder's lease ran out, a new retirement.
    let due_released = released(&store, &k(1)).await;
    tick().await;
    let unwinding = claim(&store, &k(2), "starter", "Unw1").await;
    let update = WorkflowUpdate {
        error: Some(unavailable()),
        ..update_of(&unwinding, Phase::Unwinding)
    };
    let unwinding = save(&store, &admin(), &unwinding.id, "starter", update)
        .await
        .expect("save");
    tick().await;
    let start = ensure_start(&k(3), "Exp1");
    let expired = match store
        .linked_role_begin_ensure(&admin(), start, "dead", Duration::from_millis(20), None)
        .await
        .expect("begin")
    {
        EnsureStart::Claimed(record) => *record,
        other => panic!("expected Claimed, got {other:?}"),
    };
    tick().await;
    make_active(&store, &k(4), "Ret4").await;
    let retirement = retire(&store, &k(4), WorkflowKind::Retire).await;
    // Not claimed: held, not due yet, finished.
    let busy = claim(&store, &k(5), "worker-b", "Bsy1").await;
    let later = claim(&store, &k(6), "starter", "Lat1").await;
    let update = WorkflowUpdate {
        not_before: Utc::now() + chrono::Duration::hours(1),
        ..update_of(&later, Phase::Running)
    };
    let later = save(&store, &admin(), &later.id, "starter", update)
        .await
        .expect("save");
    let finished = claim(&store, &k(7), "starter", "Fin1").await;
    let finished = finish(&store, &finished, Phase::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Only the admin's workers claim.
    for ctx in [operator(&[&a]), viewer(&[&a])] {
        expect_err(
            store.workflow_claim_due(&ctx, "w", LONG, 10).await,
            Kind::PermissionDenied,
            Reason::PermissionDenied,
        );
    }
    let none = store.workflow_claim_due(&admin(), "worker", LONG, 0).await;
    assert!(none.expect("limit 0").is_empty());

    // Up to the limit, the earliest first; then the rest.
    let due = [&due_released, &unwinding, &expired, &retirement];
    let before = Utc::now();
    let first = store
        .workflow_claim_due(&admin(), "worker", LONG, 2)
        .await
        .expect("claim");
    let rest = store
        .workflow_claim_due(&admin(), "worker", LONG, 100)
        .await
        .expect("claim");
    let ids = |records: &[WorkflowRecord]| records.iter().map(|w| w.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&first), [due_released.id.clone(), unwinding.id.clone()]);
    assert_eq!(ids(&rest), [expired.id.clone(), retirement.id.clone()]);
    for (claimed, was) in first.iter().chain(&rest).zip(due) {
        assert_eq!(claimed.lease_owner.as_deref(), Some("worker"));
        assert_about(claimed.lease_until.expect("held"), before, LONG);
        assert_eq!(
            *claimed,
            WorkflowRecord {
                lease_owner: claimed.lease_owner.clone(),
                lease_until: claimed.lease_until,
                update_time: claimed.update_time,
                ..(*was).clone()
            },
            "a claim changes only the lease"
        );
        assert_eq!(get_workflow(&store, &claimed.id).await, *claimed);
    }
    // Now all held: nothing more, for anyone.
    for owner in ["worker", "worker-2"] {
        let got = store.workflow_claim_due(&admin(), owner, LONG, 100).await;
        assert!(got.expect("claim").is_empty());
    }
    assert_eq!(get_workflow(&store, &busy.id).await, busy);
    assert_eq!(get_workflow(&store, &later.id).await, later);
    assert_eq!(get_workflow(&store, &finished.id).await, finished);
    // The holder whose lease ran out lost it.
    expect_err(
        save(
            &store,
            &admin(),
            &expired.id,
            "dead",
            update_of(&expired, Phase::Running),
        )
        .await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );
}

/// Two workers claiming at once never get the same workflow (on Postgres,
/// `FOR UPDATE SKIP LOCKED`), and between them they take every due one.
pub async fn case_workflow_claims_disjoint(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let mut all = BTreeSet::new();
    for n in 1..=20 {
        let k = create_instance(&store, &a, &instance_id(n), "us-east-1")
            .await
            .key();
        all.insert(claim(&store, &k, "starter", "Dis1").await.id);
    }
    store
        .workflow_release_all(&admin(), "starter")
        .await
        .expect("release");
    for round in 0..16 {
        let limit = if round % 2 == 0 { 20 } else { 10 };
        let tasks: Vec<_> = (0..2)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let owner = format!("claimer-{n}-{round}");
                    let got = store
                        .workflow_claim_due(&admin(), &owner, LONG, limit)
                        .await;
                    (owner, got.expect("claim"))
                })
            })
            .collect();
        let mut union = BTreeSet::new();
        let mut owners = Vec::new();
        for task in futures::future::join_all(tasks).await {
            let (owner, claimed) = task.expect("task");
            assert!(
                claimed.len() <= limit as usize,
                "round {round}: over the limit"
            );
            for record in claimed {
                assert_eq!(record.lease_owner.as_deref(), Some(owner.as_str()));
                assert!(
                    union.insert(record.id.clone()),
                    "round {round}: {} twice",
                    record.id
                );
            }
            owners.push(owner);
        }
        assert_eq!(union, all, "round {round}: every due workflow, once");
        for owner in owners {
            store
                .workflow_release_all(&admin(), &owner)
                .await
                .expect("release");
        }
    }
}

pub async fn case_workflow_release_all(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    for n in 1..=4 {
        create_instance(&store, &a, &instance_id(n), "us-east-1").await;
    }
    let k = |n| key(&a, &instance_id(n));
    let mine = [
        claim(&store, &k(1), "worker-a", "Rel1").await,
        claim(&store, &k(2), "worker-a", "Rel2").await,
    ];
    let theirs = claim(&store, &k(3), "worker-b", "Rel3").await;
    let done = claim(&store, &k(4), "worker-a", "Rel4").await;
    let mut update = update_of(&done, Phase::Succeeded);
    update.lease_until = Some(Utc::now() + chrono::Duration::hours(1));
    let done = save(&store, &admin(), &done.id, "worker-a", update)
        .await
        .expect("finish");

    expect_err(
        store
            .workflow_release_all(&operator(&[&a]), "worker-a")
            .await,
        Kind::PermissionDenied,
        Reason::PermissionDenied,
    );
    store
        .workflow_release_all(&admin(), "nobody")
        .await
        .expect("nothing held");
    store
        .workflow_release_all(&admin(), "worker-a")
        .await
        .expect("release");
    for record in &mine {
        let now = get_workflow(&store, &record.id).await;
        assert_eq!((now.lease_owner, now.lease_until), (None, None));
        expect_err(
            save(
                &store,
                &admin(),
                &record.id,
                "worker-a",
                update_of(record, Phase::Running),
            )
            .await,
            Kind::Aborted,
            Reason::OperationInProgress,
        );
    }
    assert_eq!(get_workflow(&store, &theirs.id).await, theirs);
    assert_eq!(
        get_workflow(&store, &done.id).await,
        done,
        "a finished one is left as it is"
    );
    // Another replica takes them over at once (once the refused saves
    // above have rolled back: a claim skips rows still locked).
    let want: BTreeSet<_> = mine.iter().map(|w| w.id.clone()).collect();
    let mut ids = BTreeSet::new();
    for _ in 0..50 {
        let claimed = store
            .workflow_claim_due(&admin(), "worker-c", LONG, 10)
            .await
            .expect("claim");
        ids.extend(claimed.into_iter().map(|w| w.id));
        if ids.len() >= want.len() {
            break;
        }
        settle().await;
    }
    assert_eq!(ids, want);
}

/// A holder renews its lease before a step (even past the lease, while no
/// one took the workflow over); anyone else, a holder that was taken over,
/// and a finished workflow are refused (ABORTED / OPERATION_IN_PROGRESS).
pub async fn case_workflow_renew(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let k = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let short = Duration::from_millis(300);
    let record = match store
        .linked_role_begin_ensure(&admin(), ensure_start(&k, "Ren1"), "worker-a", short, None)
        .await
        .expect("begin")
    {
        EnsureStart::Claimed(record) => *record,
        other => panic!("expected Claimed, got {other:?}"),
    };
    let before = Utc::now();
    let renewed = store
        .workflow_renew(&admin(), &record.id, "worker-a", LONG)
        .await
        .expect("the holder renews");
    assert_eq!(renewed.lease_owner.as_deref(), Some("worker-a"));
    assert_about(renewed.lease_until.expect("held"), before, LONG);
    assert_eq!(
        (renewed.state.clone(), renewed.step.clone(), renewed.attempt),
        (record.state.clone(), record.step.clone(), record.attempt),
        "a renewal changes nothing but the lease"
    );
    expect_err(
        store
            .workflow_renew(&admin(), &record.id, "worker-b", LONG)
            .await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );
    // Past its lease, untaken: the holder may still renew.
    store
        .workflow_renew(&admin(), &record.id, "worker-a", short)
        .await
        .expect("renew short");
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    store
        .workflow_renew(&admin(), &record.id, "worker-a", short)
        .await
        .expect("a lapsed lease no one took is renewed");
    // Taken over by another worker: the old holder is refused.
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    let taken = hold(&store, &record.id, "worker-b").await;
    assert_eq!(taken.lease_owner.as_deref(), Some("worker-b"));
    expect_err(
        store
            .workflow_renew(&admin(), &record.id, "worker-a", LONG)
            .await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );
    assert_eq!(
        get_workflow(&store, &record.id)
            .await
            .lease_owner
            .as_deref(),
        Some("worker-b")
    );
    // Finished: nothing to renew.
    finish(&store, &taken, Phase::Failed).await;
    expect_err(
        store
            .workflow_renew(&admin(), &record.id, "worker-b", LONG)
            .await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );
}
