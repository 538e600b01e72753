//! The Postgres engine: production, many replicas sharing one database.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Pool, QueryBuilder, Transaction};

use crate::{Engine, OpenError, StoreConfig};

type Db = sqlx::Postgres;

const ENGINE: Engine = Engine::Postgres;

/// Locks the rows a read-modify-write transaction reads.
const FOR_UPDATE: &str = " FOR UPDATE";

/// Claims work rows without waiting for rows another replica holds.
const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

async fn begin(pool: &Pool<Db>) -> sqlx::Result<Transaction<'static, Db>> {
    pool.begin().await
}

/// `account_id IN (<the JSON array of scope accounts>)`.
fn push_scope(query: &mut QueryBuilder<Db>, accounts_json: String) {
    query.push("account_id IN (SELECT jsonb_array_elements_text(");
    query.push_bind(accounts_json);
    query.push("::jsonb))");
}

async fn connect(config: &StoreConfig) -> Result<Pool<Db>, OpenError> {
    let options: PgConnectOptions = config.url.parse().map_err(OpenError::Connect)?;
    let options = options.application_name("slr-governor");
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .connect_with(options)
        .await
        .map_err(OpenError::Connect)?;
    // sqlx's Postgres migrator holds pg_advisory_lock for the run, so replicas
    // that start together apply each migration once.
    MIGRATOR.run(&pool).await.map_err(OpenError::Migrate)?;
    Ok(pool)
}

include!("shared.rs");

/// The Postgres store.
pub type PostgresStore = EngineStore;
