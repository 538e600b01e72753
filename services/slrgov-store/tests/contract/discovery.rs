//! Discovery: what Amazon Connect says, recorded (instances registered,
//! updated, VANISHED, never deleted), the filters it feeds, and the syncs
//! (one running per account, joined; request ids replayed; the schedule).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use slrgov_domain::model::{ConnectStatus, LinkedRoleState, ObservedState, SeenInstance};
use slrgov_domain::names::AccountSelector;
use slrgov_domain::types::{AccountId, InstanceAlias, InstanceId};
use slrgov_domain::workflow::{NewWorkflow, Phase, WorkflowKind, WorkflowTarget};
use slrgov_domain::{Kind, Reason};
use slrgov_store::{Listed, Observation, ObserveCounts, Store, SyncStart};

use crate::flows::{finish, hold, operator, viewer};
use crate::support::*;

fn service_role(account: &AccountId, suffix: &str) -> String {
    format!(
        "arn:aws:iam::{account}:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect_{suffix}"
    )
}

/// An instance as Connect lists it in `region`.
fn seen(
    account: &AccountId,
    id: &InstanceId,
    region: &str,
    alias: &str,
    legacy: bool,
) -> SeenInstance {
    SeenInstance {
        instance_id: id.clone(),
        instance_alias: Some(InstanceAlias::parse(alias).expect("alias")),
        connect_arn: format!("arn:aws:connect:{region}:{account}:instance/{id}"),
        connect_status: Some(ConnectStatus::Active),
        instance_create_time: Some(if legacy {
            time("2017-03-01T10:00:00Z")
        } else {
            time("2021-06-01T10:00:00Z")
        }),
        identity_management_type: Some("CONNECT_MANAGED".to_owned()),
        service_role_arn: (!legacy)
            .then(|| service_role(account, &format!("S{}", &id.as_str()[..8]))),
    }
}

fn look(account: &AccountId, region_code: &str, seen: Vec<SeenInstance>) -> Observation {
    Observation {
        account: account.clone(),
        region: region(region_code),
        seen,
        listed: Listed::Everything,
        asked_at: None,
    }
}

fn counts(seen: u32, created: u32, updated: u32, vanished: u32) -> ObserveCounts {
    ObserveCounts {
        seen,
        created,
        updated,
        vanished,
    }
}

pub async fn case_observe_registers_updates_and_vanishes(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let ctx = operator(&[&a]);
    let (one, two, hand) = (instance_id(1), instance_id(2), instance_id(3));
    // Registered by hand before any sync: stays UNOBSERVED until seen.
    create_instance(&store, &a, &hand, "us-east-1").await;
    let first = look(
        &a,
        "us-east-1",
        vec![
            seen(&a, &one, "us-east-1", "sales", false),
            seen(&a, &two, "us-east-1", "legacy-desk", true),
        ],
    );
    let counted = store
        .instance_observe(&ctx, first.clone())
        .await
        .expect("recorded");
    assert_eq!(counted, counts(2, 2, 0, 0));
    let got = store
        .instance_get(&ctx, &key(&a, &one))
        .await
        .expect("registered");
    assert_eq!(
        got.instance_alias.as_ref().map(|a| a.as_str()),
        Some("sales")
    );
    assert_eq!(got.linked_role_state, LinkedRoleState::Absent);
    assert_eq!(got.connect.observed_state, ObservedState::Observed);
    assert_eq!(got.connect.connect_status, Some(ConnectStatus::Active));
    assert_eq!(got.connect.service_role_arn, first.seen[0].service_role_arn);
    assert_eq!(got.instance_create_time, first.seen[0].instance_create_time);
    assert!(got.connect.last_seen_time.is_some() && got.connect.sync_time.is_some());
    let legacy = store
        .instance_get(&ctx, &key(&a, &two))
        .await
        .expect("registered");
    assert!(legacy.is_legacy());
    assert_eq!(legacy.connect.service_role_arn, None);
    let untouched = store
        .instance_get(&ctx, &key(&a, &hand))
        .await
        .expect("hand");
    assert_eq!(untouched.connect.observed_state, ObservedState::Unobserved);

    // The same listing again: nothing visible changes, the etag holds.
    let again = store
        .instance_observe(&ctx, first.clone())
        .await
        .expect("again");
    assert_eq!(again, counts(2, 0, 0, 0));
    let same = store
        .instance_get(&ctx, &key(&a, &one))
        .await
        .expect("same");
    assert_eq!(same.revision, got.revision);
    assert!(same.connect.sync_time >= got.connect.sync_time);
    let two_last_listed = store
        .instance_get(&ctx, &key(&a, &two))
        .await
        .expect("two")
        .connect
        .last_seen_time;

    // Connect now names another role for `one` and no longer lists `two`.
    let mut changed = seen(&a, &one, "us-east-1", "sales", false);
    changed.service_role_arn = Some(service_role(&a, "Replaced0000000000000"));
    let counted = store
        .instance_observe(&ctx, look(&a, "us-east-1", vec![changed.clone()]))
        .await
        .expect("recorded");
    assert_eq!(counted, counts(1, 0, 1, 1));
    let updated = store
        .instance_get(&ctx, &key(&a, &one))
        .await
        .expect("updated");
    assert_eq!(updated.connect.service_role_arn, changed.service_role_arn);
    assert_ne!(
        updated.revision, got.revision,
        "a visible change moves the etag"
    );
    let vanished = store
        .instance_get(&ctx, &key(&a, &two))
        .await
        .expect("kept");
    assert_eq!(vanished.connect.observed_state, ObservedState::Vanished);
    assert_eq!(
        vanished.connect.last_seen_time, two_last_listed,
        "last seen stays when it was last listed"
    );
    // Never deleted, and a hand-registered one is not VANISHED by a
    // listing that never had it.
    let hand_now = store
        .instance_get(&ctx, &key(&a, &hand))
        .await
        .expect("hand");
    assert_eq!(hand_now.connect.observed_state, ObservedState::Unobserved);

    // A listing of another region vanishes nothing here.
    let elsewhere = store
        .instance_observe(&ctx, look(&a, "eu-west-2", Vec::new()))
        .await
        .expect("recorded");
    assert_eq!(elsewhere, counts(0, 0, 0, 0));
    assert_eq!(
        store
            .instance_get(&ctx, &key(&a, &one))
            .await
            .expect("one")
            .connect
            .observed_state,
        ObservedState::Observed
    );

    // A vanished instance that comes back is OBSERVED again.
    let back = store
        .instance_observe(
            &ctx,
            look(
                &a,
                "us-east-1",
                vec![changed, seen(&a, &two, "us-east-1", "legacy-desk", true)],
            ),
        )
        .await
        .expect("recorded");
    assert_eq!(back, counts(2, 0, 1, 0));
    assert_eq!(
        store
            .instance_get(&ctx, &key(&a, &two))
            .await
            .expect("two")
            .connect
            .observed_state,
        ObservedState::Observed
    );

    // DescribeInstance said not found: that instance alone vanishes.
    let missing = store
        .instance_observe(
            &ctx,
            Observation {
                account: a.clone(),
                region: region("us-east-1"),
                seen: Vec::new(),
                listed: Listed::Missing(vec![two.clone()]),
                asked_at: None,
            },
        )
        .await
        .expect("recorded");
    assert_eq!(missing, counts(0, 0, 0, 1));
    assert_eq!(
        store
            .instance_get(&ctx, &key(&a, &one))
            .await
            .expect("one")
            .connect
            .observed_state,
        ObservedState::Observed
    );
}

pub async fn case_observe_needs_an_operator_of_the_account(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let listing = look(
        &a,
        "us-east-1",
        vec![seen(&a, &instance_id(1), "us-east-1", "x", false)],
    );
    expect_err(
        store
            .instance_observe(&viewer(&[&a]), listing.clone())
            .await,
        Kind::PermissionDenied,
        Reason::PermissionDenied,
    );
    expect_err(
        store.instance_observe(&operator(&[&b]), listing).await,
        Kind::NotFound,
        Reason::NotFound,
    );
    // Nothing was written.
    let listed = list_instances_all(&store, &admin(), &AccountSelector::All, &filter(""), 50).await;
    assert!(listed.is_empty(), "{listed:?}");
}

pub async fn case_discovery_filters(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let ctx = operator(&[&a]);
    let (modern, legacy, gone, hand) = (
        instance_id(1),
        instance_id(2),
        instance_id(3),
        instance_id(4),
    );
    create_instance(&store, &a, &hand, "us-east-1").await;
    store
        .instance_observe(
            &ctx,
            look(
                &a,
                "us-east-1",
                vec![
                    seen(&a, &modern, "us-east-1", "m", false),
                    seen(&a, &legacy, "us-east-1", "l", true),
                    seen(&a, &gone, "us-east-1", "g", false),
                ],
            ),
        )
        .await
        .expect("recorded");
    store
        .instance_observe(
            &ctx,
            look(
                &a,
                "us-east-1",
                vec![
                    seen(&a, &modern, "us-east-1", "m", false),
                    seen(&a, &legacy, "us-east-1", "l", true),
                ],
            ),
        )
        .await
        .expect("recorded");
    let ids = |text: &str| {
        let store = store.clone();
        let filter = filter(text);
        let a = a.clone();
        async move {
            list_instances_all(&store, &admin(), &AccountSelector::One(a), &filter, 50)
                .await
                .into_iter()
                .map(|i| i.instance_id)
                .collect::<Vec<InstanceId>>()
        }
    };
    assert_eq!(ids("legacy = true").await, vec![legacy.clone()]);
    // Not legacy: created since, or the creation time is unknown.
    assert_eq!(
        ids("legacy = false").await,
        vec![modern.clone(), gone.clone(), hand.clone()]
    );
    assert_eq!(ids("observed_state = VANISHED").await, vec![gone.clone()]);
    assert_eq!(ids("observed_state = UNOBSERVED").await, vec![hand.clone()]);
    assert_eq!(
        ids("observed_state = OBSERVED AND legacy = false").await,
        vec![modern.clone()]
    );
    assert_eq!(
        ids("connect_status = ACTIVE").await,
        vec![modern, legacy, gone]
    );
    assert!(ids("connect_status = CREATION_FAILED").await.is_empty());
}

fn sync_start(target: WorkflowTarget, accounts: &[&AccountId]) -> NewWorkflow {
    NewWorkflow {
        kind: WorkflowKind::Sync,
        target,
        inputs: json!({"accounts": accounts.iter().map(|a| a.to_string()).collect::<Vec<_>>()}),
        state: json!({"state": "claimed"}),
        step: "plan",
        request_id: None,
        status_message: "sync: next: plan".to_owned(),
    }
}

fn started(start: SyncStart) -> slrgov_domain::workflow::WorkflowRecord {
    match start {
        SyncStart::Started(record) => *record,
        other => panic!("expected a new sync, got {other:?}"),
    }
}

pub async fn case_one_sync_per_account(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let ctx = operator(&[&a, &b]);
    let first = started(
        store
            .sync_begin(
                &ctx,
                sync_start(WorkflowTarget::account(&a), &[&a]),
                None,
                None,
            )
            .await
            .expect("started"),
    );
    assert_eq!(first.kind, WorkflowKind::Sync);
    assert_eq!(first.target.name, format!("accounts/{a}"));
    assert_eq!(first.target.instance_id, None);
    // A second sync of the account joins the running one.
    match store
        .sync_begin(
            &ctx,
            sync_start(WorkflowTarget::account(&a), &[&a]),
            None,
            None,
        )
        .await
        .expect("joined")
    {
        SyncStart::Running(record) => assert_eq!(record.id, first.id),
        other => panic!("expected the running sync, got {other:?}"),
    }
    // Another account's sync, and a sync of every account, are their own.
    let other = started(
        store
            .sync_begin(
                &ctx,
                sync_start(WorkflowTarget::account(&b), &[&b]),
                None,
                None,
            )
            .await
            .expect("started"),
    );
    assert_ne!(other.id, first.id);
    let fleet = started(
        store
            .sync_begin(
                &ctx,
                sync_start(WorkflowTarget::every_account(&a), &[&a, &b]),
                None,
                None,
            )
            .await
            .expect("started"),
    );
    assert_eq!(fleet.target.name, "accounts/-");
    // A finished sync: a new one starts, unless the schedule asks within
    // its interval.
    let held = hold(&store, &first.id, "worker-a").await;
    finish(&store, &held, Phase::Succeeded).await;
    match store
        .sync_begin(
            &ctx,
            sync_start(WorkflowTarget::account(&a), &[&a]),
            None,
            Some(Duration::from_secs(3600)),
        )
        .await
        .expect("joined")
    {
        SyncStart::Running(record) => assert_eq!(record.id, first.id, "the recent sync"),
        other => panic!("expected the recent sync, got {other:?}"),
    }
    let next = started(
        store
            .sync_begin(
                &ctx,
                sync_start(WorkflowTarget::account(&a), &[&a]),
                None,
                None,
            )
            .await
            .expect("started"),
    );
    assert_ne!(next.id, first.id);
    // A viewer may not sync; an account out of scope is NOT_FOUND.
    expect_err(
        store
            .sync_begin(
                &viewer(&[&a]),
                sync_start(WorkflowTarget::account(&a), &[&a]),
                None,
                None,
            )
            .await,
        Kind::PermissionDenied,
        Reason::PermissionDenied,
    );
    expect_err(
        store
            .sync_begin(
                &operator(&[&b]),
                sync_start(WorkflowTarget::account(&a), &[&a]),
                None,
                None,
            )
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
}

pub async fn case_sync_request_ids_replay(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let ctx = operator(&[&a]);
    let id = idem_for("SyncInstances", "sync-1", "fp-a");
    let first = started(
        store
            .sync_begin(
                &ctx,
                sync_start(WorkflowTarget::account(&a), &[&a]),
                Some(&id),
                None,
            )
            .await
            .expect("started"),
    );
    let held = hold(&store, &first.id, "worker-a").await;
    finish(&store, &held, Phase::Succeeded).await;
    match store
        .sync_begin(
            &ctx,
            sync_start(WorkflowTarget::account(&a), &[&a]),
            Some(&id),
            None,
        )
        .await
        .expect("replayed")
    {
        SyncStart::Replayed(replay) => {
            assert_eq!(replay.workflow().expect("an operation"), first.id)
        }
        other => panic!("expected the replay, got {other:?}"),
    }
    // The same id with other parameters is refused.
    expect_err(
        store
            .sync_begin(
                &ctx,
                sync_start(WorkflowTarget::account(&a), &[&a]),
                Some(&idem_for("SyncInstances", "sync-1", "fp-b")),
                None,
            )
            .await,
        Kind::InvalidArgument,
        Reason::RequestIdReused,
    );
}

pub async fn case_syncs_due(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let worker = admin();
    let hour = Duration::from_secs(3600);
    assert_eq!(
        store
            .sync_due(&worker, WorkflowKind::Sync, hour, 10)
            .await
            .expect("due"),
        vec![a.clone(), b.clone()],
        "never synced: both due"
    );
    let running = started(
        store
            .sync_begin(
                &worker,
                sync_start(WorkflowTarget::account(&a), &[&a]),
                None,
                None,
            )
            .await
            .expect("started"),
    );
    assert_eq!(
        store
            .sync_due(&worker, WorkflowKind::Sync, hour, 10)
            .await
            .expect("due"),
        vec![b.clone()]
    );
    let held = hold(&store, &running.id, "worker-a").await;
    finish(&store, &held, Phase::Succeeded).await;
    assert_eq!(
        store
            .sync_due(&worker, WorkflowKind::Sync, hour, 10)
            .await
            .expect("due"),
        vec![b.clone()],
        "synced within the hour"
    );
    tick().await;
    assert_eq!(
        store
            .sync_due(&worker, WorkflowKind::Sync, Duration::from_millis(1), 10)
            .await
            .expect("due"),
        vec![a.clone(), b.clone()],
        "past a short interval, due again"
    );
    // A fleet sync does not count as an account's own.
    started(
        store
            .sync_begin(
                &worker,
                sync_start(WorkflowTarget::every_account(&a), &[&a, &b]),
                None,
                None,
            )
            .await
            .expect("started"),
    );
    assert_eq!(
        store
            .sync_due(&worker, WorkflowKind::Sync, hour, 1)
            .await
            .expect("due"),
        vec![b]
    );
}

/// Two looks of one region at once (a user's sync and a reconcile pass):
/// the older listing, recorded last, does not mark VANISHED an instance the
/// newer one saw; a listing asked after the instance was last seen does.
pub async fn case_an_older_listing_vanishes_nothing_a_newer_one_saw(store: Arc<dyn Store>) {
    let ctx = admin();
    let a = create_account(&store, 1).await.account_id;
    let id = instance_id(7);
    let older_asked = chrono::Utc::now();
    tick().await;
    // The newer look lists the instance and is recorded first.
    store
        .instance_observe(
            &ctx,
            look(
                &a,
                "us-east-1",
                vec![seen(&a, &id, "us-east-1", "racing", false)],
            ),
        )
        .await
        .expect("the newer look");
    // The older listing (asked before) did not have it yet.
    let older = Observation {
        asked_at: Some(older_asked),
        ..look(&a, "us-east-1", Vec::new())
    };
    let counts = store
        .instance_observe(&ctx, older)
        .await
        .expect("the older look");
    assert_eq!(counts.vanished, 0, "{counts:?}");
    let key = slrgov_domain::names::InstanceKey {
        account_id: a.clone(),
        instance_id: id.clone(),
    };
    assert_eq!(
        store
            .instance_get(&ctx, &key)
            .await
            .expect("get")
            .connect
            .observed_state,
        ObservedState::Observed
    );
    // A listing asked after it was seen, without it: VANISHED.
    tick().await;
    let newer = Observation {
        asked_at: Some(chrono::Utc::now()),
        ..look(&a, "us-east-1", Vec::new())
    };
    let counts = store
        .instance_observe(&ctx, newer)
        .await
        .expect("a later look");
    assert_eq!(counts.vanished, 1, "{counts:?}");
}
