//! The change log behind WatchInstances and WatchLinkedRoles: every change
//! of an instance record or of a linked-role record (an insert, a change of
//! its revision, a delete) appends a row in the same transaction (database
//! triggers, so no write path can forget it). Watchers read the log after
//! their cursor, joined to the resource as it is now, scoped like List.
//!
//! Order: a cursor is `(tx, seq)`. On Postgres `tx` is the writing
//! transaction's id and a read returns only rows of transactions older
//! than every transaction still running (`pg_snapshot_xmin`), so a row can
//! never appear behind a cursor that has passed it (a `bigserial` alone
//! would: a transaction that took seq 10 may commit after the one that
//! took seq 11). On SQLite, writers are serialized, so `tx` is 0 and `seq`
//! (AUTOINCREMENT) is commit order.

use async_trait::async_trait;
use slrgov_domain::model::{Instance, LinkedRole};
use slrgov_domain::names::{AccountSelector, InstanceKey};
use slrgov_domain::{RequestContext, Result};

/// A position in the change log: the changes after it are the ones a
/// watcher has not seen. `ChangeCursor::default()` is before every change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeCursor {
    /// The writing transaction (Postgres `xid8`), 0 on SQLite.
    pub tx: i64,
    /// The row's sequence number.
    pub seq: i64,
}

/// One change of an instance record.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceChange {
    /// The change's position.
    pub cursor: ChangeCursor,
    /// When the change was committed (the row's time).
    pub at: chrono::DateTime<chrono::Utc>,
    /// The instance that changed.
    pub key: InstanceKey,
    /// The instance as it is now; `None` when it no longer exists (it was
    /// deleted, by this change or a later one).
    pub instance: Option<Instance>,
}

/// One change of a linked-role record.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkedRoleChange {
    /// The change's position.
    pub cursor: ChangeCursor,
    /// When the change was committed (the row's time).
    pub at: chrono::DateTime<chrono::Utc>,
    /// The instance whose linked role changed.
    pub key: InstanceKey,
    /// The linked role as it is now; `None` when its instance record no
    /// longer exists.
    pub linked_role: Option<LinkedRole>,
}

/// What one read of the log returned.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangePage<T> {
    /// The changes after the cursor, in log order, at most the limit.
    pub changes: Vec<T>,
    /// Where the next read starts: the last change returned, or the cursor
    /// read from when there was none; after a short read (fewer changes
    /// than the limit), at least the log's head as it was before the read
    /// (every change up to it in scope was returned), so a reader of a
    /// quiet account keeps up with the log.
    pub next: ChangeCursor,
}

/// The change log (viewer for the reads; workers for the sweep).
#[async_trait]
pub trait ChangeStore: Send + Sync {
    /// The cursor of the newest change a read could return now (every
    /// account, so the head does not depend on the caller): a watch that
    /// starts now reads after it.
    async fn change_head(&self, ctx: &RequestContext) -> Result<ChangeCursor>;

    /// The instance changes after `after` in `parent` (one account, or
    /// every account the caller sees), at most `limit`, in log order,
    /// each joined to the instance as it is now. NOT_FOUND for an account
    /// the caller cannot see. OUT_OF_RANGE `RESUME_TOKEN_EXPIRED` when the
    /// log no longer holds every change after `after`: `after` is below the
    /// floor the sweep left (a cursor at the floor is fine). The floor is
    /// read after the changes, so a sweep that runs meanwhile expires the
    /// read instead of leaving a gap; no change is returned with the error.
    async fn instance_changes(
        &self,
        ctx: &RequestContext,
        parent: &AccountSelector,
        after: ChangeCursor,
        limit: u32,
    ) -> Result<ChangePage<InstanceChange>>;

    /// The linked-role changes after `after`, as [`Self::instance_changes`].
    async fn linked_role_changes(
        &self,
        ctx: &RequestContext,
        parent: &AccountSelector,
        after: ChangeCursor,
        limit: u32,
    ) -> Result<ChangePage<LinkedRoleChange>>;

    /// Removes up to `limit` changes older than `older_than` (workers),
    /// oldest first, and raises the log's floor to the newest one removed
    /// (a resume token below it is expired); returns how many went.
    async fn change_sweep(
        &self,
        ctx: &RequestContext,
        older_than: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<u64>;

    /// A signal that moves after a change may have been committed, by this
    /// process or (Postgres, `LISTEN slrgov_changes`) by any replica:
    /// watchers wait on it instead of polling. It may move without a new
    /// change; a watcher still reads the log now and then in case a
    /// notification was lost (a reconnect of the listener). On SQLite the
    /// store polls the log's sequence every 100 ms instead (no
    /// notifications there). The first call starts the store's listener;
    /// it stops when the store is dropped.
    fn change_signal(&self) -> tokio::sync::watch::Receiver<u64>;
}
