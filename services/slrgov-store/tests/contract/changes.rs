//! The change log behind the watch RPCs: every insert, delete and change
//! of revision of an instance or linked-role record appears once, in
//! commit order, with the resource as it is now; a write that moves no
//! revision (a sync that only stamps its time) appears not at all; reads
//! are scoped like lists; `next` pages; the sweep expires old cursors; the
//! head; the signal. On Postgres a change is readable once every older
//! transaction has ended (`pg_snapshot_xmin`), of any database of the
//! server: other tests' transactions may hold it back for a moment, so the
//! reads below wait for what they expect.

use std::sync::Arc;
use std::time::Duration;

use slrgov_domain::model::{InstancePatch, LinkedRoleState};
use slrgov_domain::names::{AccountSelector, InstanceKey};
use slrgov_domain::types::{AccountId, InstanceAlias};
use slrgov_domain::{Kind, Reason, RequestContext};
use slrgov_store::{ChangeCursor, Engine, InstanceChange, LinkedRoleChange};
use sqlx::Connection;
use tokio::time::{Instant, sleep, timeout};

use crate::support::*;

/// How long a read waits for the changes it expects.
const PATIENCE: Duration = Duration::from_secs(10);

fn one(account: &AccountId) -> AccountSelector {
    AccountSelector::One(account.clone())
}

/// Every instance change after `after`, read `limit` at a time, once
/// there are at least `want` (or the patience ran out).
async fn instance_changes(
    store: &Arc<dyn Store>,
    ctx: &RequestContext,
    parent: &AccountSelector,
    after: ChangeCursor,
    want: usize,
) -> Vec<InstanceChange> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut got = Vec::new();
        let mut cursor = after;
        loop {
            let page = store
                .instance_changes(ctx, parent, cursor, 1000)
                .await
                .expect("instance_changes");
            if page.changes.is_empty() {
                // A short read may move on to the log's head, never back.
                assert!(page.next >= cursor, "an empty read moved the cursor back");
                break;
            }
            cursor = page.next;
            got.extend(page.changes);
        }
        if got.len() >= want || Instant::now() > deadline {
            return got;
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Every linked-role change after `after`, as [`instance_changes`].
async fn linked_role_changes(
    store: &Arc<dyn Store>,
    ctx: &RequestContext,
    parent: &AccountSelector,
    after: ChangeCursor,
    want: usize,
) -> Vec<LinkedRoleChange> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let page = store
            .linked_role_changes(ctx, parent, after, 1000)
            .await
            .expect("linked_role_changes");
        if page.changes.len() >= want || Instant::now() > deadline {
            return page.changes;
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// The head, once it is at least `at_least`.
async fn head_at_least(store: &Arc<dyn Store>, at_least: ChangeCursor) -> ChangeCursor {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let head = store.change_head(&admin()).await.expect("change_head");
        if head >= at_least || Instant::now() > deadline {
            return head;
        }
        sleep(Duration::from_millis(20)).await;
    }
}

fn change_keys(changes: &[InstanceChange]) -> Vec<InstanceKey> {
    changes.iter().map(|c| c.key.clone()).collect()
}

#[track_caller]
fn assert_ordered(cursors: impl IntoIterator<Item = ChangeCursor>) {
    let cursors: Vec<_> = cursors.into_iter().collect();
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "not in log order: {cursors:?}"
    );
}

fn rename(alias: &str) -> InstancePatch {
    InstancePatch {
        instance_alias: Some(Some(InstanceAlias::parse(alias).expect("alias"))),
        ..InstancePatch::default()
    }
}

/// Creates, changes and deletes instances; a write that moves no revision
/// makes no change.
pub async fn case_instance_changes(db: &TestDb) {
    let store = db.open().await;
    let a = create_account(&store, 1).await.account_id;
    let start = store.change_head(&admin()).await.expect("head");
    let (k1, k2) = (key(&a, &instance_id(1)), key(&a, &instance_id(2)));
    create_instance(&store, &a, &k1.instance_id, "us-east-1").await;
    create_instance(&store, &a, &k2.instance_id, "us-east-1").await;
    let renamed = store
        .instance_update(&admin(), &k1, None, rename("renamed"), None)
        .await
        .expect("update");
    let got = instance_changes(&store, &admin(), &one(&a), start, 3).await;
    assert_eq!(change_keys(&got), [k1.clone(), k2.clone(), k1.clone()]);
    assert_ordered(got.iter().map(|c| c.cursor));
    assert!(got.iter().all(|c| c.cursor > start));
    // Each change shows the instance as it is now.
    assert_eq!(got[0].instance.as_ref(), Some(&renamed));
    assert_eq!(got[2].instance.as_ref(), Some(&renamed));
    let k2_now = store.instance_get(&admin(), &k2).await.expect("get");
    assert_eq!(got[1].instance.as_ref(), Some(&k2_now));
    assert!(got[0].at <= got[1].at && got[1].at <= got[2].at);
    let seen = got[2].cursor;

    // A sync that only stamps its time moves no revision: no change. The
    // delete after it is the next change.
    let stamped = db
        .execute(
            "UPDATE instances SET sync_time = update_time WHERE instance_id = $1",
            &[k1.instance_id.as_str()],
        )
        .await;
    assert_eq!(stamped, 1);
    store
        .instance_delete(&admin(), &k2, None, delete_done(&k2), None)
        .await
        .expect("delete");
    let got = instance_changes(&store, &admin(), &one(&a), seen, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].key, k2);
    assert_eq!(got[0].instance, None, "a deleted instance has no resource");
    // The earlier changes of k2 now show it gone too.
    let all = instance_changes(&store, &admin(), &one(&a), start, 4).await;
    assert_eq!(all.len(), 4);
    assert_eq!(all[1].instance, None);
    assert_eq!(all[3].cursor, got[0].cursor);
    assert_eq!(head_at_least(&store, got[0].cursor).await, got[0].cursor);
}

/// A linked role's transitions each make one change (and one of the
/// instance, whose copy of the state changes), with the record as it is now.
pub async fn case_linked_role_changes(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let k = key(&a, &instance_id(1));
    create_instance(&store, &a, &k.instance_id, "us-east-1").await;
    let start = store.change_head(&admin()).await.expect("head");
    // CREATING (the record is made), ACTIVE.
    let active = make_active(&store, &k, "sfx").await;
    let got = linked_role_changes(&store, &admin(), &one(&a), start, 2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|c| c.key == k));
    assert!(got.iter().all(|c| c.linked_role.as_ref() == Some(&active)));
    assert_ordered(got.iter().map(|c| c.cursor));
    // DELETING, then DELETED: a retirement.
    let record = retire(&store, &k, WorkflowKind::Retire).await;
    let record = hold(&store, &record.id, "worker-r").await;
    let deleted = store
        .linked_role_retired(&admin(), &held(&record), &k, WorkflowKind::Retire)
        .await
        .expect("retired")
        .expect("the record stays");
    assert_eq!(deleted.state, LinkedRoleState::Deleted);
    let got = linked_role_changes(&store, &admin(), &one(&a), start, 4).await;
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got.iter().all(|c| c.linked_role.as_ref() == Some(&deleted)));
    // Ensured again: the record is made CREATING again (an upsert): one
    // change.
    let after = got[3].cursor;
    finish(&store, &record, Phase::Succeeded).await;
    claim(&store, &k, "ensurer-2", "sfx2").await;
    let got = linked_role_changes(&store, &admin(), &one(&a), after, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].linked_role.as_ref().map(|r| r.state),
        Some(LinkedRoleState::Creating)
    );
    // The instance: created, then its copy of the state at each step.
    let instance = instance_changes(&store, &admin(), &one(&a), ChangeCursor::default(), 6).await;
    assert_eq!(instance.len(), 6, "{instance:?}");
}

/// A linked-role record removed with its instance: a change with no
/// linked role.
pub async fn case_linked_role_changes_of_deleted_instances(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let k = key(&a, &instance_id(1));
    create_instance(&store, &a, &k.instance_id, "us-east-1").await;
    make_active(&store, &k, "sfx").await;
    let made = linked_role_changes(&store, &admin(), &one(&a), ChangeCursor::default(), 2).await;
    assert_eq!(made.len(), 2, "{made:?}");
    let start = made[1].cursor;
    let record = retire(&store, &k, WorkflowKind::Delete).await;
    let record = hold(&store, &record.id, "worker-d").await;
    let gone = store
        .linked_role_retired(&admin(), &held(&record), &k, WorkflowKind::Delete)
        .await
        .expect("retired");
    assert_eq!(gone, None);
    // DELETING, DELETED, and the record's removal with the instance.
    let got = linked_role_changes(&store, &admin(), &one(&a), start, 3).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|c| c.key == k && c.linked_role.is_none()));
}

/// A caller sees the changes of its accounts only.
pub async fn case_change_scoping(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let ka = key(&a, &instance_id(1));
    let kb = key(&b, &instance_id(2));
    create_instance(&store, &a, &ka.instance_id, "us-east-1").await;
    create_instance(&store, &b, &kb.instance_id, "us-east-1").await;
    make_active(&store, &kb, "sfx").await;
    make_active(&store, &ka, "sfx").await;
    let start = ChangeCursor::default();
    // The local operator sees both.
    let all = instance_changes(&store, &admin(), &AccountSelector::All, start, 6).await;
    assert_eq!(all.len(), 6, "{all:?}");
    // A viewer of A: A's changes only, by account or across accounts.
    let alice = viewer(&[&a]);
    for parent in [one(&a), AccountSelector::All] {
        let got = instance_changes(&store, &alice, &parent, start, 3).await;
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.iter().all(|c| c.key == ka));
        let roles = linked_role_changes(&store, &alice, &parent, start, 2).await;
        assert_eq!(roles.len(), 2, "{roles:?}");
        assert!(roles.iter().all(|c| c.key == ka));
    }
    // B is not found for her, nor is an account that does not exist.
    for parent in [one(&b), one(&account_id(9))] {
        let read = store.instance_changes(&alice, &parent, start, 10).await;
        expect_err(read, Kind::NotFound, Reason::NotFound);
        let read = store.linked_role_changes(&alice, &parent, start, 10).await;
        expect_err(read, Kind::NotFound, Reason::NotFound);
    }
    let read = store
        .instance_changes(&admin(), &one(&account_id(9)), start, 10)
        .await;
    expect_err(read, Kind::NotFound, Reason::NotFound);
    // A caller with no account sees nothing across accounts.
    let nobody = viewer(&[]);
    let page = store
        .instance_changes(&nobody, &AccountSelector::All, start, 10)
        .await
        .expect("read");
    assert!(page.changes.is_empty());
    // The head is the same for everyone: a position, not data.
    let head = head_at_least(&store, all[5].cursor).await;
    assert_eq!(store.change_head(&alice).await.expect("head"), head);
}

/// `limit` bounds a read; `next` continues it.
pub async fn case_change_pages(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let start = store.change_head(&admin()).await.expect("head");
    for n in 1..=5 {
        create_instance(&store, &a, &instance_id(n), "us-east-1").await;
    }
    let all = instance_changes(&store, &admin(), &one(&a), start, 5).await;
    assert_eq!(all.len(), 5);
    let mut cursor = start;
    let mut paged = Vec::new();
    for size in [2, 2, 2] {
        let page = store
            .instance_changes(&admin(), &one(&a), cursor, size)
            .await
            .expect("page");
        assert!(page.changes.len() <= size as usize);
        cursor = page.next;
        paged.extend(page.changes);
    }
    assert_eq!(paged, all);
    assert_eq!(cursor, all[4].cursor);
    let end = store
        .instance_changes(&admin(), &one(&a), cursor, 2)
        .await
        .expect("end");
    assert!(end.changes.is_empty());
    assert!(end.next >= cursor);
    let keys: Vec<_> = (1..=5).map(|n| key(&a, &instance_id(n))).collect();
    assert_eq!(change_keys(&all), keys);

    // A reader of a quiet account keeps up with the log: a short read
    // moves on past other accounts' changes (none of its own lies there),
    // so its position never falls behind to be swept away.
    let b = create_account(&store, 2).await.account_id;
    create_instance(&store, &b, &instance_id(9), "us-east-1").await;
    let elsewhere = instance_changes(&store, &admin(), &one(&b), start, 1).await;
    assert_eq!(elsewhere.len(), 1);
    let head = head_at_least(&store, elsewhere[0].cursor).await;
    assert!(head >= elsewhere[0].cursor);
    let quiet = store
        .instance_changes(&admin(), &one(&a), cursor, 2)
        .await
        .expect("quiet");
    assert!(quiet.changes.is_empty());
    assert!(
        quiet.next >= elsewhere[0].cursor,
        "the quiet read stayed at {:?}, behind {:?}",
        quiet.next,
        elsewhere[0].cursor
    );
    // A position past the log's head was never handed out: expired.
    let ahead = ChangeCursor {
        tx: head.tx,
        seq: head.seq + 1_000_000,
    };
    let read = store.instance_changes(&admin(), &one(&a), ahead, 2).await;
    expect_err(read, Kind::OutOfRange, Reason::ResumeTokenExpired);
}

/// The sweep removes the oldest changes and raises the floor: a cursor
/// below it is expired, one at or after it still reads.
pub async fn case_change_sweep(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let start = store.change_head(&admin()).await.expect("head");
    for n in 1..=3 {
        create_instance(&store, &a, &instance_id(n), "us-east-1").await;
    }
    let all = instance_changes(&store, &admin(), &one(&a), start, 3).await;
    assert_eq!(all.len(), 3);
    // Nothing is old enough: nothing goes.
    let past = time("2000-01-01T00:00:00Z");
    assert_eq!(
        store
            .change_sweep(&admin(), past, 100)
            .await
            .expect("sweep"),
        0
    );
    // Workers only.
    let read = store
        .change_sweep(&viewer(&[&a]), chrono::Utc::now(), 100)
        .await;
    expect_err(read, Kind::PermissionDenied, Reason::PermissionDenied);
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(
        store.change_sweep(&admin(), later, 2).await.expect("sweep"),
        2
    );
    for expired in [start, ChangeCursor::default(), all[0].cursor] {
        let read = store
            .instance_changes(&admin(), &one(&a), expired, 10)
            .await;
        expect_err(read, Kind::OutOfRange, Reason::ResumeTokenExpired);
        let read = store
            .linked_role_changes(&admin(), &AccountSelector::All, expired, 10)
            .await;
        expect_err(read, Kind::OutOfRange, Reason::ResumeTokenExpired);
    }
    // At the floor: the rest.
    let rest = instance_changes(&store, &admin(), &one(&a), all[1].cursor, 1).await;
    assert_eq!(rest, all[2..]);
    let rest = instance_changes(&store, &admin(), &one(&a), all[2].cursor, 0).await;
    assert!(rest.is_empty());
    // Everything goes: the head is the floor, the last change removed.
    assert_eq!(
        store
            .change_sweep(&admin(), later, 100)
            .await
            .expect("sweep"),
        1
    );
    assert_eq!(
        store.change_head(&admin()).await.expect("head"),
        all[2].cursor
    );
    let read = store
        .instance_changes(&admin(), &one(&a), all[1].cursor, 10)
        .await;
    expect_err(read, Kind::OutOfRange, Reason::ResumeTokenExpired);
    // New changes come after it.
    create_instance(&store, &a, &instance_id(4), "us-east-1").await;
    let got = instance_changes(&store, &admin(), &one(&a), all[2].cursor, 1).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].cursor > all[2].cursor);
}

/// The signal moves after a write, of this store or of another one on the
/// same database (another replica).
pub async fn case_change_signal(db: &TestDb) {
    let store = db.open().await;
    let replica = db.open().await;
    let a = create_account(&store, 1).await.account_id;
    let mut here = store.change_signal();
    let mut there = replica.change_signal();
    // The listeners start (and move once when they do).
    sleep(Duration::from_millis(500)).await;
    here.borrow_and_update();
    there.borrow_and_update();
    create_instance(&store, &a, &instance_id(1), "us-east-1").await;
    for (name, signal) in [("this store", &mut here), ("the replica", &mut there)] {
        timeout(Duration::from_secs(5), signal.changed())
            .await
            .unwrap_or_else(|_| panic!("the signal of {name} did not move"))
            .expect("the signal's sender is gone");
    }
}

/// Postgres: a change is not read while an older transaction runs (its
/// own change would come later with a smaller position, behind the
/// cursor); once that one commits, both come, the older first.
pub async fn case_older_transactions_first(db: &TestDb) {
    assert_eq!(db.engine, Engine::Postgres);
    let store = db.open().await;
    let a = create_account(&store, 1).await.account_id;
    let (kx, ky) = (key(&a, &instance_id(1)), key(&a, &instance_id(2)));
    create_instance(&store, &a, &kx.instance_id, "us-east-1").await;
    create_instance(&store, &a, &ky.instance_id, "us-east-1").await;
    let created = instance_changes(&store, &admin(), &one(&a), ChangeCursor::default(), 2).await;
    assert_eq!(created.len(), 2);
    let after = created[1].cursor;

    let mut conn = sqlx::PgConnection::connect(&db.admin_url)
        .await
        .expect("connect");
    let mut older = conn.begin().await.expect("begin");
    sqlx::query(
        "UPDATE instances SET revision = revision + 1, instance_alias = 'older' \
         WHERE account_id = $1 AND instance_id = $2",
    )
    .bind(a.as_str())
    .bind(kx.instance_id.as_str())
    .execute(&mut *older)
    .await
    .expect("update in the older transaction");
    store
        .instance_update(&admin(), &ky, None, rename("newer"), None)
        .await
        .expect("update");
    // Y's change is committed, but X's transaction is older and still
    // running: Y is not readable yet, nor is the head past it.
    sleep(Duration::from_millis(200)).await;
    let page = store
        .instance_changes(&admin(), &one(&a), after, 10)
        .await
        .expect("read");
    assert!(page.changes.is_empty(), "{:?}", page.changes);
    assert!(store.change_head(&admin()).await.expect("head") <= after);
    older.commit().await.expect("commit");
    let got = instance_changes(&store, &admin(), &one(&a), after, 2).await;
    assert_eq!(change_keys(&got), [kx.clone(), ky.clone()]);
    assert_ordered(got.iter().map(|c| c.cursor));
    assert_eq!(
        got[0]
            .instance
            .as_ref()
            .and_then(|i| i.instance_alias.as_ref())
            .map(InstanceAlias::as_str),
        Some("older")
    );
    let _ = conn.close().await;
}
