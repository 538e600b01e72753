//! The SQLite engine: the embedded default, one file, nothing to install.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, QueryBuilder, Transaction};
use tokio::sync::{oneshot, watch};

use crate::{Engine, OpenError, StoreConfig};

pub(crate) type Db = sqlx::Sqlite;

/// The engine as OpenTelemetry names it (`db.system.name` of the spans).
pub(crate) const DB_SYSTEM: &str = "sqlite";

pub(crate) const ENGINE: Engine = Engine::Sqlite;

/// SQLite has no row locks: `BEGIN IMMEDIATE` takes the write lock up front.
pub(crate) const FOR_UPDATE: &str = "";

/// Claims work rows without waiting for rows another replica holds.
pub(crate) const SKIP_LOCKED: &str = "";

/// SQLite runs in the process (a statement costs no round trip) and has no
/// data-modifying CTEs: every write is its full transaction.
pub(crate) const DIRECT_WRITES: bool = false;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Every transaction takes the write lock at BEGIN, so that a transaction
/// that reads then writes never fails to upgrade its lock (SQLITE_BUSY in
/// the middle of work); readers are not blocked in WAL mode.
///
/// SQLite has no row-level security: the scope is the service's own checks
/// (and the scope clause of every list).
pub(crate) async fn begin(pool: &Pool<Db>, _scope: &str) -> sqlx::Result<Transaction<'static, Db>> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// The single-statement read `inner`, taking the scope as `$n` like the
/// Postgres engine's (which sets it for row-level security); here it only
/// keeps the parameter positions the same.
pub(crate) fn scoped_sql(inner: &str, n: usize) -> String {
    format!("SELECT * FROM ({inner}) WHERE ${n} IS NOT NULL")
}

/// The start of a scoped read built with a `QueryBuilder`.
pub(crate) fn push_scoped_start(query: &mut QueryBuilder<Db>, scope: String) {
    query.push("SELECT * FROM (SELECT ");
    query.push_bind(scope);
    query.push(" AS slrgov_scope_v) AS slrgov_scope CROSS JOIN (");
}

/// The end of a scoped read started by [`push_scoped_start`].
pub(crate) fn push_scoped_end(query: &mut QueryBuilder<Db>) {
    query.push(") AS q");
}

/// `(<the text values of a JSON array>)`, a subquery for `column IN ...`.
pub(crate) fn push_json_values(query: &mut QueryBuilder<Db>, json: String) {
    query.push("(SELECT value FROM json_each(");
    query.push_bind(json);
    query.push("))");
}

/// The values of a JSON array as a table-valued function (column
/// `value`), for `SELECT value FROM ...`.
pub(crate) fn push_json_elements(query: &mut QueryBuilder<Db>, json: String) {
    query.push("json_each(");
    query.push_bind(json);
    query.push(")");
}

/// `account_id IN (<the JSON array of scope accounts>)`.
pub(crate) fn push_scope(query: &mut QueryBuilder<Db>, accounts_json: String) {
    query.push("account_id IN ");
    push_json_values(query, accounts_json);
}

pub(crate) async fn connect(config: &StoreConfig) -> Result<Pool<Db>, OpenError> {
    let options = SqliteConnectOptions::from_str(&config.url)
        .map_err(OpenError::Connect)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(std::time::Duration::from_secs(5));
    let mut pool_options = SqlitePoolOptions::new()
        .max_connections(config.max_connections.clamp(1, 8))
        .acquire_timeout(config.acquire_timeout);
    if config.url.contains(":memory:") || config.url.contains("mode=memory") {
        // An in-memory database lives only while a connection is open: keep
        // one open for the life of the pool.
        pool_options = pool_options
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
    }
    let pool = pool_options
        .connect_with(options)
        .await
        .map_err(OpenError::Connect)?;
    MIGRATOR.run(&pool).await.map_err(OpenError::Migrate)?;
    Ok(pool)
}

/// SQLite serves one process, whose own limiter is already exact: there
/// is no shared bucket (see the Postgres engine's `rate_reserve`).
pub(crate) async fn rate_reserve(
    _pool: &Pool<Db>,
    _account: &slrgov_domain::types::AccountId,
    _service: &str,
    _per_second: f64,
    _burst: u32,
) -> slrgov_domain::Result<Option<std::time::Duration>> {
    Ok(None)
}

/// Nothing was reserved here: nothing to give back.
pub(crate) async fn rate_refund(
    _pool: &Pool<Db>,
    _account: &slrgov_domain::types::AccountId,
    _service: &str,
    _per_second: f64,
) -> slrgov_domain::Result<()> {
    Ok(())
}

/// The change log's `tx` as a cursor reads it (always 0 here).
pub(crate) const CHANGE_TX: &str = "tx";

/// Writers are serialized: every committed row is readable.
pub(crate) const CHANGE_READABLE: &str = "";

/// Pushes a cursor's `tx`.
pub(crate) fn push_change_tx(query: &mut QueryBuilder<Db>, tx: i64) {
    query.push_bind(tx);
}

/// How often the change signal looks at the log.
const CHANGE_POLL: Duration = Duration::from_millis(100);

/// Moves the change signal.
fn bump(signal: &watch::Sender<u64>) {
    signal.send_modify(|n| *n = n.wrapping_add(1));
}

/// The change signal of a store, until `stop` fires (the store is
/// dropped): SQLite has no notifications and the store's writes commit in
/// many places, so this polls the log's sequence (`sqlite_sequence`, which
/// never goes back, not even when the sweep empties the log) every 100 ms
/// and moves `signal` when it moved, and once at the start. It also sees
/// the writes of another process on the same file.
pub(crate) async fn watch_changes(
    pool: Pool<Db>,
    signal: Arc<watch::Sender<u64>>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut seen: Option<i64> = None;
    let mut failing = false;
    let mut ticks = tokio::time::interval(CHANGE_POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticks.tick() => {}
        }
        let newest = sqlx::query_scalar::<_, i64>(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)",
        )
        .fetch_one(&pool)
        .await;
        match newest {
            Ok(newest) => {
                failing = false;
                if seen != Some(newest) {
                    seen = Some(newest);
                    bump(&signal);
                }
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(error) => {
                if !failing {
                    tracing::warn!(error = %error, "cannot read the change log's sequence");
                }
                failing = true;
            }
        }
    }
}

// The store itself: one source for both engines, compiled once here and
// once in the other engine's module (see `engine/mod.rs`).
#[allow(clippy::duplicate_mod)]
#[path = "shared/mod.rs"]
mod shared;

/// The SQLite store.
pub type SqliteStore = shared::EngineStore;
