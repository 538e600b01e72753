//! The change log (see `crate::changes` and migration 0010): reads after a
//! cursor, each change joined to its resource as it is now (the columns
//! and conversions of GetInstance and GetLinkedRole), the head, the sweep,
//! and the signal watchers wait on.
//!
//! What differs between the engines is defined by each engine's module:
//! how `tx` reads as a cursor, which rows are readable (on Postgres, only
//! those of transactions older than every running one), and how the
//! signal learns of commits (LISTEN on Postgres, a poll on SQLite).

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use slrgov_domain::names::{AccountSelector, InstanceKey};
use slrgov_domain::types::{AccountId, InstanceId};
use slrgov_domain::{Error, Kind, RequestContext, Result, Role};
use sqlx::{FromRow, QueryBuilder, Row};
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use super::super::{CHANGE_READABLE, CHANGE_TX, push_change_tx, watch_changes};
use super::rows::{INSTANCE_COLUMNS, InstanceRow, LINKED_ROLE_COLUMNS, LinkedRoleRow};
use super::txn::{scope_json, scope_setting};
use super::{
    Db, EngineStore, FOR_UPDATE, begin, push_scope, push_scoped_end, push_scoped_start, scoped_sql,
};
use crate::error::{corrupt, db_error};
use crate::{
    ChangeCursor, ChangePage, ChangeStore, InstanceChange, LinkedRoleChange, LinkedRoleStore,
};

/// A row of this engine.
type DbRow = <Db as sqlx::Database>::Row;

/// The store's change signal: the sender watchers subscribe to, and the
/// task that moves it, started by the first `change_signal` call and
/// stopped when the store is dropped (with the `stop` sender).
pub(crate) struct ChangeSignal {
    sender: Arc<watch::Sender<u64>>,
    stop: OnceLock<oneshot::Sender<()>>,
}

impl ChangeSignal {
    /// A signal whose task has not started.
    pub(crate) fn new() -> Self {
        ChangeSignal {
            sender: Arc::new(watch::Sender::new(0)),
            stop: OnceLock::new(),
        }
    }
}

/// Which resource a change is of (the log's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Instance,
    LinkedRole,
}

impl Resource {
    fn as_str(self) -> &'static str {
        match self {
            Resource::Instance => "instance",
            Resource::LinkedRole => "linked_role",
        }
    }
}

/// The log's part of a row: the change's position, time and resource key.
struct Logged {
    cursor: ChangeCursor,
    at: DateTime<Utc>,
    key: InstanceKey,
}

impl Logged {
    fn of(row: &DbRow) -> Result<Self> {
        let get_err = |e: sqlx::Error| corrupt("changes", e);
        let account: String = row.try_get("change_account_id").map_err(get_err)?;
        let instance: String = row.try_get("change_instance_id").map_err(get_err)?;
        Ok(Logged {
            cursor: ChangeCursor {
                tx: row.try_get("change_tx").map_err(get_err)?,
                seq: row.try_get("change_seq").map_err(get_err)?,
            },
            at: row.try_get("change_time").map_err(get_err)?,
            key: InstanceKey {
                account_id: AccountId::parse(&account)
                    .map_err(|e| corrupt("changes.account_id", e))?,
                instance_id: InstanceId::parse(&instance)
                    .map_err(|e| corrupt("changes.instance_id", e))?,
            },
        })
    }
}

/// Whether the row's flag column `column` is set.
fn flag(row: &DbRow, column: &str) -> Result<bool> {
    row.try_get(column).map_err(|e| corrupt("changes", e))
}

/// Where a read after `after` ends: the last change read, or `after`; a
/// short read moves on to `head`, the log's head taken before it.
fn next_of(
    after: ChangeCursor,
    last: Option<ChangeCursor>,
    head: Option<ChangeCursor>,
) -> ChangeCursor {
    let read = last.unwrap_or(after);
    head.map_or(read, |head| read.max(head))
}

impl EngineStore {
    /// The rows of `resource`'s changes after `after` in `parent`, at most
    /// `limit`, in log order, joined to the resource (by column name: the
    /// log's columns are `change_*`, the resource's are its row type's);
    /// RESUME_TOKEN_EXPIRED when the sweep removed some of them, or when
    /// `after` is past the log's head (no token ever handed out is: the
    /// log was restored from a backup, or the token forged). With a short
    /// read (fewer rows than `limit`), also the log's head taken before the
    /// read: every change up to it belongs to a transaction that had ended,
    /// so the read returned every one of them in scope, and the reader may
    /// move on to it (a watcher of a quiet account keeps up with the log
    /// instead of re-reading, and then losing to the sweep, everyone
    /// else's changes).
    async fn change_rows(
        &self,
        ctx: &RequestContext,
        parent: &AccountSelector,
        after: ChangeCursor,
        limit: u32,
        resource: Resource,
    ) -> Result<(Vec<DbRow>, Option<ChangeCursor>)> {
        self.check_list_parent(ctx, parent).await?;
        ctx.check_role(Role::Viewer, "watch changes")?;
        let head = self.change_head(ctx).await?;
        if after > head {
            return Err(Error::resume_token_expired(
                "this resume token is past the change log's newest change (the log was \
                 restored, or the token was not made by this service): list the resources \
                 again and watch from now",
            ));
        }
        let mut query = QueryBuilder::<Db>::new("");
        push_scoped_start(&mut query, scope_setting(ctx));
        query.push("SELECT c.*, ");
        query.push(match resource {
            Resource::Instance => format!(
                "instances.instance_id IS NOT NULL AS change_found, {INSTANCE_COLUMNS} FROM ("
            ),
            Resource::LinkedRole => format!(
                "linked_roles.instance_id IS NOT NULL AS change_found, \
                 i.i_instance_id IS NOT NULL AS change_parent_found, {LINKED_ROLE_COLUMNS} FROM ("
            ),
        });
        query.push(format!(
            "SELECT seq AS change_seq, {CHANGE_TX} AS change_tx, \
             account_id AS change_account_id, instance_id AS change_instance_id, change_time \
             FROM changes WHERE kind = "
        ));
        query.push_bind(resource.as_str());
        query.push(" AND (tx, seq) > (");
        push_change_tx(&mut query, after.tx);
        query.push(", ");
        query.push_bind(after.seq);
        query.push(")");
        query.push(CHANGE_READABLE);
        // The caller's scope bounds every read, whatever the parent says.
        if let Some(scope) = scope_json(ctx) {
            query.push(" AND ");
            push_scope(&mut query, scope);
        }
        if let AccountSelector::One(account) = parent {
            query.push(" AND account_id = ");
            query.push_bind(account.as_str().to_owned());
        }
        query.push(" ORDER BY tx, seq LIMIT ");
        query.push_bind(i64::from(limit));
        query.push(match resource {
            Resource::Instance => {
                ") AS c LEFT JOIN instances ON instances.account_id = c.change_account_id \
                 AND instances.instance_id = c.change_instance_id"
            }
            Resource::LinkedRole => {
                ") AS c LEFT JOIN linked_roles ON linked_roles.account_id = c.change_account_id \
                 AND linked_roles.instance_id = c.change_instance_id \
                 LEFT JOIN (SELECT account_id AS i_account_id, instance_id AS i_instance_id \
                 FROM instances) AS i ON i.i_account_id = c.change_account_id \
                 AND i.i_instance_id = c.change_instance_id"
            }
        });
        push_scoped_end(&mut query);
        query.push(" ORDER BY change_tx, change_seq");
        let rows = query
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        // The floor is read after the changes: a sweep that commits between
        // the two reads makes this read expired rather than leave a gap.
        let (tx, seq): (i64, i64) = sqlx::query_as("SELECT tx, seq FROM change_floor")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        let floor = ChangeCursor { tx, seq };
        if after < floor {
            return Err(Error::resume_token_expired(
                "the change log no longer holds every change after this resume token \
                 (old changes are removed): list the resources again and watch from now",
            ));
        }
        let short = rows.len() < limit as usize;
        Ok((rows, short.then_some(head)))
    }
}

#[async_trait]
impl ChangeStore for EngineStore {
    async fn change_head(&self, ctx: &RequestContext) -> Result<ChangeCursor> {
        async move {
            ctx.check_role(Role::Viewer, "watch changes")?;
            // Every account (a position only, the same for every caller):
            // the newest readable change, or the floor when the log holds
            // none.
            let sql = scoped_sql(
                &format!(
                    "SELECT change_tx, change_seq FROM ( \
                     SELECT tx AS change_tx, seq AS change_seq FROM change_floor \
                     UNION ALL SELECT * FROM ( \
                     SELECT {CHANGE_TX} AS change_tx, seq AS change_seq FROM changes \
                     WHERE 1 = 1{CHANGE_READABLE} ORDER BY tx DESC, seq DESC LIMIT 1) AS newest \
                     ) AS h ORDER BY change_tx DESC, change_seq DESC LIMIT 1"
                ),
                1,
            );
            let (tx, seq): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind("*")
                .fetch_one(&self.pool)
                .await
                .map_err(db_error)?;
            Ok(ChangeCursor { tx, seq })
        }
        .instrument(db_span!("change_head"))
        .await
    }

    async fn instance_changes(
        &self,
        ctx: &RequestContext,
        parent: &AccountSelector,
        after: ChangeCursor,
        limit: u32,
    ) -> Result<ChangePage<InstanceChange>> {
        async move {
            let (rows, head) = self
                .change_rows(ctx, parent, after, limit, Resource::Instance)
                .await?;
            let mut changes = Vec::with_capacity(rows.len());
            for row in rows {
                let logged = Logged::of(&row)?;
                let instance = if flag(&row, "change_found")? {
                    Some(
                        InstanceRow::from_row(&row)
                            .map_err(|e| corrupt("instances", e))?
                            .into_instance()?,
                    )
                } else {
                    None
                };
                changes.push(InstanceChange {
                    cursor: logged.cursor,
                    at: logged.at,
                    key: logged.key,
                    instance,
                });
            }
            let next = next_of(after, changes.last().map(|c| c.cursor), head);
            Ok(ChangePage { changes, next })
        }
        .instrument(db_span!("instance_changes"))
        .await
    }

    async fn linked_role_changes(
        &self,
        ctx: &RequestContext,
        parent: &AccountSelector,
        after: ChangeCursor,
        limit: u32,
    ) -> Result<ChangePage<LinkedRoleChange>> {
        async move {
            let (rows, head) = self
                .change_rows(ctx, parent, after, limit, Resource::LinkedRole)
                .await?;
            let mut changes = Vec::with_capacity(rows.len());
            for row in rows {
                let logged = Logged::of(&row)?;
                let linked_role = if flag(&row, "change_found")? {
                    Some(
                        LinkedRoleRow::from_row(&row)
                            .map_err(|e| corrupt("linked_roles", e))?
                            .into_linked_role()?,
                    )
                } else if flag(&row, "change_parent_found")? {
                    // An instance without a linked-role record: what
                    // GetLinkedRole shows for it (rare, so asked apart).
                    match self.linked_role_get(ctx, &logged.key).await {
                        Ok(role) => Some(role),
                        Err(e) if e.kind == Kind::NotFound => None,
                        Err(e) => return Err(e),
                    }
                } else {
                    None
                };
                changes.push(LinkedRoleChange {
                    cursor: logged.cursor,
                    at: logged.at,
                    key: logged.key,
                    linked_role,
                });
            }
            let next = next_of(after, changes.last().map(|c| c.cursor), head);
            Ok(ChangePage { changes, next })
        }
        .instrument(db_span!("linked_role_changes"))
        .await
    }

    async fn change_sweep(
        &self,
        ctx: &RequestContext,
        older_than: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64> {
        async move {
            ctx.check_role(Role::Admin, "sweep the change log")?;
            // The log and its floor are one for every account: the sweep
            // runs over all of them, whatever the worker's scope.
            let mut tx = begin(&self.pool, "*").await.map_err(db_error)?;
            // Concurrent sweeps take turns (the floor only goes up anyway).
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT tx FROM change_floor{FOR_UPDATE}"
            )))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            // The oldest readable changes, in log order: the sweep removes
            // a prefix of the log (those older than `older_than`), so that
            // every change after the floor is still there.
            let oldest: Vec<(i64, i64, DateTime<Utc>)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {CHANGE_TX} AS change_tx, seq, change_time FROM changes \
                     WHERE 1 = 1{CHANGE_READABLE} ORDER BY tx, seq LIMIT $1"
                )))
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?;
            let Some(last) = oldest
                .iter()
                .take_while(|(_, _, at)| *at < older_than)
                .last()
                .map(|(tx, seq, _)| ChangeCursor { tx: *tx, seq: *seq })
            else {
                return Ok(0);
            };
            let mut delete = QueryBuilder::<Db>::new("DELETE FROM changes WHERE (tx, seq) <= (");
            push_change_tx(&mut delete, last.tx);
            delete.push(", ");
            delete.push_bind(last.seq);
            delete.push(")");
            delete.push(CHANGE_READABLE);
            let removed = delete
                .build()
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected();
            sqlx::query("UPDATE change_floor SET tx = $1, seq = $2 WHERE (tx, seq) < ($1, $2)")
                .bind(last.tx)
                .bind(last.seq)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            Ok(removed)
        }
        .instrument(db_span!("change_sweep"))
        .await
    }

    fn change_signal(&self) -> watch::Receiver<u64> {
        let signal = &self.changes;
        signal.stop.get_or_init(|| {
            let (stop, stopped) = oneshot::channel();
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(watch_changes(
                        self.pool.clone(),
                        Arc::clone(&signal.sender),
                        stopped,
                    ));
                }
                Err(_) => tracing::warn!(
                    "the change signal was asked for outside a Tokio runtime: it will not move"
                ),
            }
            stop
        });
        signal.sender.subscribe()
    }
}
