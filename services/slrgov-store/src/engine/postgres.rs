//! The Postgres engine: production, many replicas sharing one database.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Pool, QueryBuilder, Transaction};

use crate::{Engine, OpenError, StoreConfig};

pub(crate) type Db = sqlx::Postgres;

/// The engine as OpenTelemetry names it (`db.system.name` of the spans).
pub(crate) const DB_SYSTEM: &str = "postgresql";

pub(crate) const ENGINE: Engine = Engine::Postgres;

/// Locks the rows a read-modify-write transaction reads.
pub(crate) const FOR_UPDATE: &str = " FOR UPDATE";

/// Claims work rows without waiting for rows another replica holds.
pub(crate) const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Begins a transaction whose account scope (`slrgov.scope`, read by the
/// row-level security policies of migration 0005) is set by the same
/// statement: `BEGIN; SELECT set_config(...)` goes as one simple query, so
/// the scope costs no round trip. `scope` is `*` or a comma-separated list
/// of 12-digit account ids ([`scope_setting`] makes it), safe to inline.
pub(crate) async fn begin(pool: &Pool<Db>, scope: &str) -> sqlx::Result<Transaction<'static, Db>> {
    debug_assert!(
        scope
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == '*')
    );
    pool.begin_with(sqlx::AssertSqlSafe(format!(
        "BEGIN; SELECT set_config('slrgov.scope', '{scope}', true)"
    )))
    .await
}

/// Wraps the single-statement read `inner` so that the statement sets its
/// own account scope (bound as `$n`) before it reads: the scope comes from
/// a one-row subquery that the read is LATERAL-joined to (and filtered on,
/// so the planner evaluates `set_config` first, as a one-time filter, before
/// any scan of a tenant table). Outside a transaction block `is_local`
/// confines the setting to this statement. One round trip, no BEGIN.
pub(crate) fn scoped_sql(inner: &str, n: usize) -> String {
    format!(
        "SELECT q.* FROM (SELECT set_config('slrgov.scope', ${n}, true) AS v) AS slrgov_scope \
         CROSS JOIN LATERAL (SELECT * FROM ({inner}) AS o WHERE slrgov_scope.v IS NOT NULL OFFSET 0) AS q"
    )
}

/// The start of a scoped read built with a `QueryBuilder` (see
/// [`scoped_sql`]); [`push_scoped_end`] closes it.
pub(crate) fn push_scoped_start(query: &mut QueryBuilder<Db>, scope: String) {
    query.push("SELECT q.* FROM (SELECT set_config('slrgov.scope', ");
    query.push_bind(scope);
    query.push(", true) AS v) AS slrgov_scope CROSS JOIN LATERAL (SELECT * FROM (");
}

/// The end of a scoped read started by [`push_scoped_start`].
pub(crate) fn push_scoped_end(query: &mut QueryBuilder<Db>) {
    query.push(") AS o WHERE slrgov_scope.v IS NOT NULL OFFSET 0) AS q");
}

/// `(<the text values of a JSON array>)`, a subquery for `column IN ...`.
pub(crate) fn push_json_values(query: &mut QueryBuilder<Db>, json: String) {
    query.push("(SELECT jsonb_array_elements_text(");
    query.push_bind(json);
    query.push("::jsonb))");
}

/// `account_id IN (<the JSON array of scope accounts>)`.
pub(crate) fn push_scope(query: &mut QueryBuilder<Db>, accounts_json: String) {
    query.push("account_id IN ");
    push_json_values(query, accounts_json);
}

pub(crate) async fn connect(config: &StoreConfig) -> Result<Pool<Db>, OpenError> {
    let options: PgConnectOptions = config.url.parse().map_err(OpenError::Connect)?;
    let options = options.application_name("slr-governor");
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .connect_with(options)
        .await
        .map_err(OpenError::Connect)?;
    // Row-level security is the second wall between tenants; a superuser or
    // BYPASSRLS role walks through it. Refuse such a role unless told to.
    let (role, superuser, bypass): (String, bool, bool) = sqlx::query_as(
        "SELECT rolname::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&pool)
    .await
    .map_err(OpenError::Connect)?;
    if superuser || bypass {
        if !config.allow_rls_bypass {
            return Err(OpenError::RlsBypass { role });
        }
        tracing::warn!(
            role,
            "connected to Postgres as a role that bypasses row-level security \
             (SLRGOV_ALLOW_RLS_BYPASS=true): only the service's own scope checks separate tenants"
        );
    }
    // sqlx's Postgres migrator holds pg_advisory_lock for the run, so replicas
    // that start together apply each migration once.
    MIGRATOR.run(&pool).await.map_err(OpenError::Migrate)?;
    Ok(pool)
}

// The store itself: one source for both engines, compiled once here and
// once in the other engine's module (see `engine/mod.rs`).
#[allow(clippy::duplicate_mod)]
#[path = "shared/mod.rs"]
mod shared;

/// The Postgres store.
pub type PostgresStore = shared::EngineStore;
