//! The linked-role workflow: the record of an instance's linked role
//! (ABSENT until first claimed), the claim with its lease and planned
//! suffix, activation (one role per instance record), release, the
//! description, and how the service reaches an account.

use std::sync::Arc;
use std::time::Duration;

use slrgov_domain::model::{EnsureClaim, LinkedRole, LinkedRoleState, ObservedRole};
use slrgov_domain::names::{AccountSelector, InstanceKey};
use slrgov_domain::types::{AccountId, Partition, Revision};
use slrgov_domain::{Kind, Reason, RequestContext, Role};
use slrgov_store::Store;

use crate::support::*;

/// A lease that does not run out during a test.
const LONG: Duration = Duration::from_secs(600);

/// The ARN of a Connect service-linked role in `account`.
fn role_arn(account: &AccountId, suffix: &str) -> String {
    format!(
        "arn:aws:iam::{account}:role/aws-service-role/connect.amazonaws.com/\
         AWSServiceRoleForAmazonConnect_{suffix}"
    )
}

/// A role as IAM would describe it, with every field set. The creation
/// time has nanoseconds (the store keeps microseconds).
fn observed(account: &AccountId, suffix: &str) -> ObservedRole {
    ObservedRole {
        role_name: format!("AWSServiceRoleForAmazonConnect_{suffix}"),
        role_arn: role_arn(account, suffix),
        role_id: format!("AROA{}", suffix.to_uppercase()),
        path: "/aws-service-role/connect.amazonaws.com/".to_owned(),
        description: Some(format!("Connect role {suffix}")),
        iam_create_time: Some(time("2019-03-04T05:06:07.123456789Z")),
        last_used_time: Some(time("2024-11-12T13:14:15.654321Z")),
        last_used_region: Some("eu-west-2".to_owned()),
    }
}

/// A role as IAM would describe a role never used, without a description.
fn observed_bare(account: &AccountId, suffix: &str) -> ObservedRole {
    ObservedRole {
        description: None,
        iam_create_time: None,
        last_used_time: None,
        last_used_region: None,
        ..observed(account, suffix)
    }
}

/// Claims as `owner` with a long lease and expects a claim.
async fn claim(
    store: &Arc<dyn Store>,
    k: &InstanceKey,
    owner: &str,
    suffix: &str,
) -> (LinkedRole, String, bool) {
    claim_for(store, k, owner, LONG, suffix).await
}

/// Claims as `owner` for `lease` and expects a claim.
async fn claim_for(
    store: &Arc<dyn Store>,
    k: &InstanceKey,
    owner: &str,
    lease: Duration,
    suffix: &str,
) -> (LinkedRole, String, bool) {
    let got = store
        .linked_role_claim(&admin(), k, owner, lease, suffix)
        .await
        .unwrap_or_else(|e| panic!("claim {k} as {owner}: {e:?}"));
    match got {
        EnsureClaim::Claimed {
            role,
            suffix,
            resumed,
        } => (role, suffix, resumed),
        other => panic!("claim {k} as {owner}: expected Claimed, got {other:?}"),
    }
}

/// The recorded linked role of `k`, as the local operator.
async fn get(store: &Arc<dyn Store>, k: &InstanceKey) -> LinkedRole {
    store
        .linked_role_get(&admin(), k)
        .await
        .unwrap_or_else(|e| panic!("get the linked role of {k}: {e:?}"))
}

/// The linked-role state recorded on the instance itself.
async fn instance_state(store: &Arc<dyn Store>, k: &InstanceKey) -> LinkedRoleState {
    store
        .instance_get(&admin(), k)
        .await
        .unwrap_or_else(|e| panic!("get {k}: {e:?}"))
        .linked_role_state
}

/// The instances (of every account) whose linked role is in `state`.
async fn listed_in(store: &Arc<dyn Store>, state: LinkedRoleState) -> Vec<InstanceKey> {
    let filter = filter(&format!("linked_role_state = {state}"));
    keys(&list_instances_all(store, &admin(), &AccountSelector::All, &filter, 50).await)
}

/// Checks that `role` records no IAM role at all.
#[track_caller]
fn assert_no_role_fields(role: &LinkedRole) {
    assert_eq!(role.role_name, None, "{role:?}");
    assert_eq!(role.role_arn, None, "{role:?}");
    assert_eq!(role.role_id, None, "{role:?}");
    assert_eq!(role.path, None, "{role:?}");
    assert_eq!(role.description, None, "{role:?}");
    assert_eq!(role.iam_create_time, None, "{role:?}");
    assert_eq!(role.last_used_time, None, "{role:?}");
    assert_eq!(role.last_used_region, None, "{role:?}");
    assert!(!role.adopted, "{role:?}");
    assert_eq!(role.deletion_task_id, None, "{role:?}");
    assert_eq!(role.deletion_failure, None, "{role:?}");
}

/// Checks that `role` is the ACTIVE record of `observed`, at the precision
/// the store keeps.
#[track_caller]
fn assert_records(role: &LinkedRole, k: &InstanceKey, observed: &ObservedRole, adopted: bool) {
    assert_eq!(role.key(), *k);
    assert_eq!(role.state, LinkedRoleState::Active);
    assert_eq!(role.role_name.as_deref(), Some(observed.role_name.as_str()));
    assert_eq!(role.role_arn.as_deref(), Some(observed.role_arn.as_str()));
    assert_eq!(role.role_id.as_deref(), Some(observed.role_id.as_str()));
    assert_eq!(role.path.as_deref(), Some(observed.path.as_str()));
    assert_eq!(role.description, observed.description);
    let micros = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| chrono::DateTime::from_timestamp_micros(t.timestamp_micros()).expect("time"))
    };
    assert_eq!(role.iam_create_time, micros(observed.iam_create_time));
    assert_eq!(role.last_used_time, micros(observed.last_used_time));
    assert_eq!(role.last_used_region, observed.last_used_region);
    assert_eq!(role.adopted, adopted);
    assert_eq!(role.deletion_task_id, None);
    assert_eq!(role.deletion_failure, None);
}

/// A viewer of exactly `accounts`.
fn viewer(accounts: &[&AccountId]) -> RequestContext {
    caller("victor", Role::Viewer, only(accounts))
}

/// An operator of exactly `accounts`.
fn operator(accounts: &[&AccountId]) -> RequestContext {
    caller("olga", Role::Operator, only(accounts))
}

// ---------------------------------------------------------------------------

pub async fn case_linked_role_get_absent(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let a1 = create_instance(&store, &a, &instance_id(1), "us-east-1").await;
    let b1 = create_instance(&store, &b, &instance_id(2), "us-east-1").await;

    let got = get(&store, &a1.key()).await;
    assert_eq!(got.key(), a1.key());
    assert_eq!(got.state, LinkedRoleState::Absent);
    assert_eq!(got.revision, Revision(0), "no record yet: revision 0");
    assert_no_role_fields(&got);
    assert_eq!(got, LinkedRole::absent(&a1));

    // A viewer of the account reads it too.
    let victor = viewer(&[&a]);
    assert_eq!(
        store
            .linked_role_get(&victor, &a1.key())
            .await
            .expect("viewer get"),
        got
    );

    // A missing instance, in an existing or a missing account.
    expect_err(
        store
            .linked_role_get(&admin(), &key(&a, &instance_id(9)))
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
    expect_err(
        store
            .linked_role_get(&admin(), &key(&account_id(7), &instance_id(1)))
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
    // Out of the caller's scope: NOT_FOUND, like a missing one.
    expect_err(
        store.linked_role_get(&victor, &b1.key()).await,
        Kind::NotFound,
        Reason::NotFound,
    );
    let olga = operator(&[&a]);
    expect_err(
        store.linked_role_get(&olga, &b1.key()).await,
        Kind::NotFound,
        Reason::NotFound,
    );
}

pub async fn case_linked_role_claim_creates(store: Arc<dyn Store>) {
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

    let (role, suffix, resumed) = claim(&store, &k, "worker-a", "Xy12").await;
    assert_eq!(suffix, "Xy12");
    assert!(!resumed, "a first claim resumes nothing");
    assert_eq!(role.key(), k);
    assert_eq!(role.state, LinkedRoleState::Creating);
    assert_eq!(
        role.revision,
        Revision(1),
        "the first write makes revision 1"
    );
    assert_no_role_fields(&role);

    assert_eq!(
        get(&store, &k).await,
        role,
        "get returns what claim returned"
    );
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
    expect_err(
        store
            .linked_role_claim(&admin(), &key(&a, &instance_id(9)), "w", LONG, "s")
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
    let olga = operator(&[&a]);
    expect_err(
        store
            .linked_role_claim(&olga, &b1, "worker-a", LONG, "s")
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
    assert_eq!(get(&store, &b1).await.revision, Revision(0));
    assert_eq!(instance_state(&store, &b1).await, LinkedRoleState::Absent);

    // An operator in scope may claim.
    let (role, _, _) = match store
        .linked_role_claim(&olga, &other, "worker-o", LONG, "Op01")
        .await
        .expect("operator claim")
    {
        EnsureClaim::Claimed {
            role,
            suffix,
            resumed,
        } => (role, suffix, resumed),
        got => panic!("expected Claimed, got {got:?}"),
    };
    assert_eq!(role.state, LinkedRoleState::Creating);
}

pub async fn case_linked_role_claim_lease(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let held = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let expiring = create_instance(&store, &a, &instance_id(2), "us-east-1")
        .await
        .key();

    // While worker-a's lease runs, another owner is Busy, and the record
    // does not change.
    let (first, _, _) = claim(&store, &held, "worker-a", "Aaaa").await;
    for suffix in ["Aaaa", "Bbbb"] {
        let got = store
            .linked_role_claim(&admin(), &held, "worker-b", LONG, suffix)
            .await
            .expect("claim");
        assert_eq!(got, EnsureClaim::Busy, "claim while another lease runs");
    }
    assert_eq!(
        get(&store, &held).await,
        first,
        "a Busy claim writes nothing"
    );
    // worker-a still holds it.
    let observed = observed(&a, "Aaaa");
    store
        .linked_role_activate(&admin(), &held, "worker-a", observed.clone(), false)
        .await
        .expect("the holder still activates");

    // Once the lease runs out, another owner takes over and resumes with
    // the planned suffix of the earlier attempt, not its own.
    let (early, suffix, resumed) = claim_for(
        &store,
        &expiring,
        "worker-a",
        Duration::from_millis(50),
        "Plan",
    )
    .await;
    assert_eq!((suffix.as_str(), resumed), ("Plan", false));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (late, suffix, resumed) = claim(&store, &expiring, "worker-b", "Othr").await;
    assert_eq!(
        suffix, "Plan",
        "the planned suffix of an earlier attempt wins"
    );
    assert!(resumed, "the earlier attempt may have created the role");
    assert_eq!(late.state, LinkedRoleState::Creating);
    assert!(late.revision > early.revision, "{late:?} after {early:?}");
    assert_eq!(get(&store, &expiring).await, late);
    assert_eq!(
        instance_state(&store, &expiring).await,
        LinkedRoleState::Creating
    );

    // worker-a lost its claim: now it is the one that is Busy, and it can
    // no longer activate.
    let got = store
        .linked_role_claim(&admin(), &expiring, "worker-a", LONG, "Plan")
        .await
        .expect("claim");
    assert_eq!(got, EnsureClaim::Busy);
    expect_err(
        store
            .linked_role_activate(
                &admin(),
                &expiring,
                "worker-a",
                observed_bare(&a, "Plan"),
                false,
            )
            .await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );
    assert_eq!(get(&store, &expiring).await, late);
}

pub async fn case_linked_role_activate(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let k = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let fresh = create_instance(&store, &a, &instance_id(2), "us-east-1")
        .await
        .key();

    let (claimed, suffix, _) = claim(&store, &k, "worker-a", "Ab12").await;
    let observed = observed(&a, &suffix);
    tick().await;
    let active = store
        .linked_role_activate(&admin(), &k, "worker-a", observed.clone(), true)
        .await
        .expect("activate");
    assert_records(&active, &k, &observed, true);
    assert_eq!(
        active.iam_create_time,
        Some(time("2019-03-04T05:06:07.123456Z")),
        "kept to the microsecond"
    );
    assert_eq!(
        active.last_used_time,
        Some(time("2024-11-12T13:14:15.654321Z"))
    );
    assert!(active.revision > claimed.revision, "{active:?}");
    assert!(active.update_time > claimed.update_time, "{active:?}");

    assert_eq!(
        get(&store, &k).await,
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

    // Later claims (by anyone) find it ACTIVE and change nothing.
    for owner in ["worker-b", "worker-a"] {
        let got = store
            .linked_role_claim(&admin(), &k, owner, LONG, "Zz99")
            .await
            .expect("claim");
        assert_eq!(got, EnsureClaim::Active(active.clone()));
    }
    assert_eq!(get(&store, &k).await, active);

    // Created rather than adopted, with the optional fields empty.
    let (_, suffix, _) = claim(&store, &fresh, "worker-c", "Cd34").await;
    let bare = observed_bare(&a, &suffix);
    let created = store
        .linked_role_activate(&admin(), &fresh, "worker-c", bare.clone(), false)
        .await
        .expect("activate");
    assert_records(&created, &fresh, &bare, false);
    assert_eq!(get(&store, &fresh).await, created);
    assert_eq!(
        instance_state(&store, &fresh).await,
        LinkedRoleState::Active
    );
}

pub async fn case_linked_role_activate_needs_claim(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let k = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let unclaimed = create_instance(&store, &a, &instance_id(2), "us-east-1")
        .await
        .key();

    let (claimed, suffix, _) = claim(&store, &k, "worker-a", "Ab12").await;
    let observed = observed(&a, &suffix);
    for intruder in ["worker-b", "", "worker-a "] {
        expect_err(
            store
                .linked_role_activate(&admin(), &k, intruder, observed.clone(), false)
                .await,
            Kind::Aborted,
            Reason::OperationInProgress,
        );
    }
    assert_eq!(get(&store, &k).await, claimed, "nothing changed");
    assert_eq!(instance_state(&store, &k).await, LinkedRoleState::Creating);
    // The claim was not lost: another owner is still Busy.
    let got = store
        .linked_role_claim(&admin(), &k, "worker-b", LONG, "Ab12")
        .await
        .expect("claim");
    assert_eq!(got, EnsureClaim::Busy);

    // Nothing claimed at all.
    expect_err(
        store
            .linked_role_activate(
                &admin(),
                &unclaimed,
                "worker-a",
                observed_bare(&a, "Ef56"),
                false,
            )
            .await,
        Kind::Aborted,
        Reason::OperationInProgress,
    );
    assert_eq!(get(&store, &unclaimed).await.revision, Revision(0));
    assert_eq!(
        instance_state(&store, &unclaimed).await,
        LinkedRoleState::Absent
    );
    // A missing instance.
    expect_err(
        store
            .linked_role_activate(
                &admin(),
                &key(&a, &instance_id(9)),
                "worker-a",
                observed_bare(&a, "Ef56"),
                false,
            )
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );

    // The owner still can.
    store
        .linked_role_activate(&admin(), &k, "worker-a", observed, false)
        .await
        .expect("the owner activates");
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

    claim(&store, &x, "worker-x", "Same").await;
    let shared = observed(&a, "Same");
    let x_active = store
        .linked_role_activate(&admin(), &x, "worker-x", shared.clone(), false)
        .await
        .expect("activate X");

    let (y_claimed, _, _) = claim(&store, &y, "worker-y", "Same").await;
    for adopted in [true, false] {
        let error = expect_err(
            store
                .linked_role_activate(&admin(), &y, "worker-y", shared.clone(), adopted)
                .await,
            Kind::FailedPrecondition,
            Reason::RoleOwnedElsewhere,
        );
        assert!(
            error.message.contains(&shared.role_arn),
            "the error names the role: {error:?}"
        );
    }
    let y_now = get(&store, &y).await;
    assert_eq!(y_now.state, LinkedRoleState::Creating, "{y_now:?}");
    assert_eq!(y_now, y_claimed, "Y is unchanged");
    assert_eq!(instance_state(&store, &y).await, LinkedRoleState::Creating);
    assert_eq!(get(&store, &x).await, x_active, "X is unchanged");
    assert_eq!(instance_state(&store, &x).await, LinkedRoleState::Active);
    assert_eq!(
        listed_in(&store, LinkedRoleState::Active).await,
        vec![x.clone()]
    );

    // Y kept its claim: it can record a role of its own.
    let own = observed(&a, "Own2");
    let y_active = store
        .linked_role_activate(&admin(), &y, "worker-y", own.clone(), false)
        .await
        .expect("activate Y with its own role");
    assert_records(&y_active, &y, &own, false);
}

pub async fn case_linked_role_release(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let gone = create_instance(&store, &a, &instance_id(1), "us-east-1")
        .await
        .key();
    let resume = create_instance(&store, &a, &instance_id(2), "us-east-1")
        .await
        .key();
    let held = create_instance(&store, &a, &instance_id(3), "us-east-1")
        .await
        .key();

    // Nothing created: back to ABSENT, record and instance.
    let (claimed, _, _) = claim(&store, &gone, "worker-a", "Gone").await;
    store
        .linked_role_release(&admin(), &gone, "worker-a", true)
        .await
        .expect("release");
    let released = get(&store, &gone).await;
    assert_eq!(released.state, LinkedRoleState::Absent, "{released:?}");
    assert!(released.revision > claimed.revision, "{released:?}");
    assert_no_role_fields(&released);
    assert_eq!(instance_state(&store, &gone).await, LinkedRoleState::Absent);
    assert_eq!(
        listed_in(&store, LinkedRoleState::Absent).await,
        vec![gone.clone(), resume.clone(), held.clone()]
    );
    // ...and free at once, as a fresh start.
    let (_, _, resumed) = claim(&store, &gone, "worker-b", "Next").await;
    assert!(!resumed, "nothing was created: nothing to resume");

    // Something may have been created: still CREATING, but the lease is
    // given up, so another owner resumes at once with the same suffix.
    let (claimed, _, _) = claim(&store, &resume, "worker-a", "Keep").await;
    store
        .linked_role_release(&admin(), &resume, "worker-a", false)
        .await
        .expect("release");
    let released = get(&store, &resume).await;
    assert_eq!(released.state, LinkedRoleState::Creating, "{released:?}");
    assert!(released.revision > claimed.revision, "{released:?}");
    assert_eq!(
        instance_state(&store, &resume).await,
        LinkedRoleState::Creating
    );
    let got = store
        .linked_role_claim(&admin(), &resume, "worker-b", LONG, "Diff")
        .await
        .expect("claim after release");
    let EnsureClaim::Claimed {
        role,
        suffix,
        resumed,
    } = got
    else {
        panic!("expected Claimed right after the release, got {got:?}");
    };
    assert_eq!(suffix, "Keep", "the same suffix as the released attempt");
    assert!(resumed);
    assert_eq!(role.state, LinkedRoleState::Creating);

    // Released by someone who does not hold it: nothing happens.
    let (claimed, _, _) = claim(&store, &held, "worker-a", "Held").await;
    for nothing_created in [true, false] {
        store
            .linked_role_release(&admin(), &held, "worker-b", nothing_created)
            .await
            .expect("a foreign release is a no-op");
    }
    assert_eq!(
        get(&store, &held).await,
        claimed,
        "a foreign release is a no-op"
    );
    assert_eq!(
        instance_state(&store, &held).await,
        LinkedRoleState::Creating
    );
    let got = store
        .linked_role_claim(&admin(), &held, "worker-b", LONG, "Held")
        .await
        .expect("claim");
    assert_eq!(got, EnsureClaim::Busy, "worker-a still holds it");

    // Releasing an ACTIVE role (no claim held) changes nothing either.
    let active = store
        .linked_role_activate(&admin(), &held, "worker-a", observed(&a, "Held"), false)
        .await
        .expect("activate");
    store
        .linked_role_release(&admin(), &held, "worker-a", true)
        .await
        .expect("release after activate");
    assert_eq!(get(&store, &held).await, active);
    assert_eq!(instance_state(&store, &held).await, LinkedRoleState::Active);
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

    claim(&store, &k, "worker-a", "Desc").await;
    let active = store
        .linked_role_activate(&admin(), &k, "worker-a", observed(&a, "Desc"), true)
        .await
        .expect("activate");

    tick().await;
    let changed = store
        .linked_role_set_description(&admin(), &k, Some(active.revision), "Our contact center")
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
    assert_eq!(get(&store, &k).await, changed);

    // A stale revision: ABORTED, nothing changed.
    expect_err(
        store
            .linked_role_set_description(&admin(), &k, Some(active.revision), "stale")
            .await,
        Kind::Aborted,
        Reason::EtagMismatch,
    );
    assert_eq!(get(&store, &k).await, changed);

    // Without a revision: unconditional.
    let cleared = store
        .linked_role_set_description(&admin(), &k, None, "")
        .await
        .expect("set description");
    assert_eq!(cleared.revision, Revision(changed.revision.0 + 1));
    assert_eq!(get(&store, &k).await, cleared);

    // Only an ACTIVE role has a description to change.
    let (claimed, _, _) = claim(&store, &creating, "worker-b", "Crea").await;
    for expected in [None, Some(claimed.revision)] {
        expect_err(
            store
                .linked_role_set_description(&admin(), &creating, expected, "x")
                .await,
            Kind::FailedPrecondition,
            Reason::FailedPrecondition,
        );
    }
    assert_eq!(get(&store, &creating).await, claimed);
    expect_err(
        store
            .linked_role_set_description(&admin(), &absent, None, "x")
            .await,
        Kind::FailedPrecondition,
        Reason::FailedPrecondition,
    );
    assert_eq!(get(&store, &absent).await.revision, Revision(0));
    expect_err(
        store
            .linked_role_set_description(&admin(), &key(&a, &instance_id(9)), None, "x")
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
    let access = store.account_access(&olga, &a).await.expect("access");
    assert_eq!(access.account_id, a);
    assert_eq!(access.partition, Partition::Aws);
    assert_eq!(
        access.access_role_arn,
        Some(access_role(&a, Partition::Aws).to_string())
    );
    assert_eq!(
        access.external_id.as_ref().map(|e| e.expose()),
        Some(format!("ext-secret-{a}").as_str())
    );
    assert!(
        !format!("{access:?}").contains("ext-secret"),
        "the secret stays out of Debug"
    );

    let access = store.account_access(&olga, &gov).await.expect("access");
    assert_eq!(access.partition, Partition::AwsUsGov);
    assert_eq!(
        access.access_role_arn,
        Some(access_role(&gov, Partition::AwsUsGov).to_string())
    );
    assert_eq!(
        access.external_id.as_ref().map(|e| e.expose()),
        Some(format!("ext-secret-{gov}").as_str())
    );

    let access = store.account_access(&olga, &c).await.expect("access");
    assert_eq!(access.partition, Partition::Aws);
    assert_eq!(access.access_role_arn, None);
    assert!(access.external_id.is_none());

    // Viewers too (since 1484e93 "InspectLinkedRole": inspections act in
    // the account; the secret still only goes to STS inside the service).
    // Other accounts look missing.
    let seen = store
        .account_access(&viewer(&[&a]), &a)
        .await
        .expect("a viewer reaches the account to inspect");
    assert_eq!(
        seen.access_role_arn,
        Some(access_role(&a, Partition::Aws).to_string())
    );
    assert_eq!(
        seen.external_id.as_ref().map(|e| e.expose()),
        Some(format!("ext-secret-{a}").as_str())
    );
    expect_err(
        store.account_access(&operator(&[&gov]), &a).await,
        Kind::NotFound,
        Reason::NotFound,
    );
    expect_err(
        store.account_access(&viewer(&[&gov]), &a).await,
        Kind::NotFound,
        Reason::NotFound,
    );
    expect_err(
        store.account_access(&admin(), &account_id(9)).await,
        Kind::NotFound,
        Reason::NotFound,
    );
}

pub async fn case_linked_role_instance_delete(db: &TestDb) {
    let store = db.open().await;
    let a = create_account(&store, 1).await.account_id;
    let released = create_instance(&store, &a, &instance_id(1), "us-east-1")
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

    // Claimed then released with nothing created: ABSENT, so it can go,
    // and its linked-role record goes with it.
    claim(&store, &released, "worker-a", "Rel1").await;
    store
        .linked_role_release(&admin(), &released, "worker-a", true)
        .await
        .expect("release");
    assert_eq!(rows(released.clone()).await.as_deref(), Some("1"));
    store
        .instance_delete(&admin(), &released, None, None)
        .await
        .expect("delete an instance whose role is ABSENT");
    assert_eq!(rows(released.clone()).await.as_deref(), Some("0"));
    expect_err(
        store.linked_role_get(&admin(), &released).await,
        Kind::NotFound,
        Reason::NotFound,
    );
    // The same id registered again starts from scratch.
    let again = create_instance(&store, &a, &instance_id(1), "us-east-1").await;
    let fresh = get(&store, &released).await;
    assert_eq!(fresh, LinkedRole::absent(&again));
    assert_eq!(fresh.revision, Revision(0));
    let (_, suffix, resumed) = claim(&store, &released, "worker-b", "New2").await;
    assert_eq!((suffix.as_str(), resumed), ("New2", false));

    // ACTIVE (or still CREATING): the role must be retired first.
    claim(&store, &active, "worker-a", "Act1").await;
    let role = store
        .linked_role_activate(&admin(), &active, "worker-a", observed(&a, "Act1"), false)
        .await
        .expect("activate");
    let instance = store.instance_get(&admin(), &active).await.expect("get");
    expect_err(
        store.instance_delete(&admin(), &active, None, None).await,
        Kind::FailedPrecondition,
        Reason::LinkedRoleNotRetired,
    );
    assert_eq!(
        store.instance_get(&admin(), &active).await.expect("get"),
        instance
    );
    assert_eq!(get(&store, &active).await, role);
    assert_eq!(rows(active.clone()).await.as_deref(), Some("1"));

    claim(&store, &creating, "worker-c", "Cre1").await;
    expect_err(
        store.instance_delete(&admin(), &creating, None, None).await,
        Kind::FailedPrecondition,
        Reason::LinkedRoleNotRetired,
    );
    assert_eq!(
        instance_state(&store, &creating).await,
        LinkedRoleState::Creating
    );
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
    claim(&store, &active, "worker-a", "Act1").await;
    let role = store
        .linked_role_activate(&admin(), &active, "worker-a", observed(&a, "Act1"), false)
        .await
        .expect("activate");

    let victor = viewer(&[&a]);
    let denied = (Kind::PermissionDenied, Reason::PermissionDenied);
    expect_err(
        store
            .linked_role_claim(&victor, &k, "victor", LONG, "View")
            .await,
        denied.0,
        denied.1,
    );
    // Not even an ACTIVE role comes back through a claim.
    expect_err(
        store
            .linked_role_claim(&victor, &active, "victor", LONG, "View")
            .await,
        denied.0,
        denied.1,
    );
    assert_eq!(
        get(&store, &k).await.revision,
        Revision(0),
        "nothing claimed"
    );
    assert_eq!(instance_state(&store, &k).await, LinkedRoleState::Absent);

    // A claim held by someone else: a viewer cannot finish or drop it.
    let (claimed, _, _) = claim(&store, &k, "victor", "Held").await;
    expect_err(
        store
            .linked_role_activate(&victor, &k, "victor", observed(&a, "Held"), false)
            .await,
        denied.0,
        denied.1,
    );
    expect_err(
        store.linked_role_release(&victor, &k, "victor", true).await,
        denied.0,
        denied.1,
    );
    assert_eq!(get(&store, &k).await, claimed);
    expect_err(
        store
            .linked_role_set_description(&victor, &active, None, "viewer's")
            .await,
        denied.0,
        denied.1,
    );
    assert_eq!(get(&store, &active).await, role);
    // Reading is allowed.
    assert_eq!(
        store.linked_role_get(&victor, &active).await.expect("get"),
        role
    );

    // Outside the scope, NOT_FOUND comes before the role check.
    expect_err(
        store
            .linked_role_claim(&victor, &b1, "victor", LONG, "View")
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
    expect_err(
        store
            .linked_role_set_description(&victor, &b1, None, "x")
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
    assert_eq!(get(&store, &b1).await.revision, Revision(0));
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

    // Owners racing for one workflow: exactly one holds it.
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let (store, k) = (store.clone(), k.clone());
            tokio::spawn(async move {
                let owner = format!("worker-{n}");
                let got = store
                    .linked_role_claim(&admin(), &k, &owner, LONG, &format!("Sfx{n}"))
                    .await;
                (owner, got)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in futures::future::join_all(tasks).await {
        let (owner, got) = task.expect("task");
        match got.expect("claim") {
            EnsureClaim::Claimed {
                role,
                suffix,
                resumed,
            } => winners.push((owner, role, suffix, resumed)),
            EnsureClaim::Busy => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "one claim wins: {winners:?}");
    let (owner, role, suffix, resumed) = winners.remove(0);
    assert!(!resumed);
    assert_eq!(role.revision, Revision(1));
    assert_eq!(
        owner.replace("worker-", "Sfx"),
        suffix,
        "the winner's suffix"
    );
    assert_eq!(get(&store, &k).await, role);

    // Two records activating the same role: exactly one gets it.
    claim(&store, &x, "worker-x", "Same").await;
    claim(&store, &y, "worker-y", "Same").await;
    let tasks: Vec<_> = [(x.clone(), "worker-x"), (y.clone(), "worker-y")]
        .into_iter()
        .map(|(k, owner)| {
            let (store, observed) = (store.clone(), observed(&a, "Same"));
            tokio::spawn(async move {
                store
                    .linked_role_activate(&admin(), &k, owner, observed, false)
                    .await
            })
        })
        .collect();
    let results: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let won: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(won.len(), 1, "one record holds the role: {results:?}");
    let lost = results
        .into_iter()
        .find(|r| r.is_err())
        .expect("one activation lost");
    expect_err(lost, Kind::FailedPrecondition, Reason::RoleOwnedElsewhere);
    let states = [
        instance_state(&store, &x).await,
        instance_state(&store, &y).await,
    ];
    let mut sorted = states;
    sorted.sort_by_key(|s| s.as_str());
    assert_eq!(
        sorted,
        [LinkedRoleState::Active, LinkedRoleState::Creating],
        "{states:?}"
    );
}
