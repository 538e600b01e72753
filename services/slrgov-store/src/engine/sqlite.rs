//! The SQLite engine: the embedded default, one file, nothing to install.

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, QueryBuilder, Transaction};

use crate::{Engine, OpenError, StoreConfig};

type Db = sqlx::Sqlite;

const ENGINE: Engine = Engine::Sqlite;

/// SQLite has no row locks: `BEGIN IMMEDIATE` takes the write lock up front.
const FOR_UPDATE: &str = "";

/// Claims work rows without waiting for rows another replica holds.
const SKIP_LOCKED: &str = "";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Every transaction takes the write lock at BEGIN, so that a transaction
/// that reads then writes never fails to upgrade its lock (SQLITE_BUSY in
/// the middle of work); readers are not blocked in WAL mode.
async fn begin(pool: &Pool<Db>) -> sqlx::Result<Transaction<'static, Db>> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// `account_id IN (<the JSON array of scope accounts>)`.
fn push_scope(query: &mut QueryBuilder<Db>, accounts_json: String) {
    query.push("account_id IN (SELECT value FROM json_each(");
    query.push_bind(accounts_json);
    query.push("))");
}

async fn connect(config: &StoreConfig) -> Result<Pool<Db>, OpenError> {
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

include!("shared.rs");

/// The SQLite store.
pub type SqliteStore = EngineStore;
