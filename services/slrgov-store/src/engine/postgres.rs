//! The Postgres engine: production, many replicas sharing one database.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Pool, QueryBuilder, Transaction};
use tokio::sync::{oneshot, watch};

use crate::{Engine, Migrations, OpenError, StoreConfig};

pub(crate) type Db = sqlx::Postgres;

/// The engine as OpenTelemetry names it (`db.system.name` of the spans).
pub(crate) const DB_SYSTEM: &str = "postgresql";

pub(crate) const ENGINE: Engine = Engine::Postgres;

/// Locks the rows a read-modify-write transaction reads.
pub(crate) const FOR_UPDATE: &str = " FOR UPDATE";

/// Claims work rows without waiting for rows another replica holds.
pub(crate) const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";

/// Whether the common writes go as one statement (data-modifying CTEs:
/// the scope, the checks, the change and its audit event together) before
/// the full transaction, which then runs only to name what stopped them.
/// On Postgres each statement is a round trip to another process.
pub(crate) const DIRECT_WRITES: bool = true;

/// A pooled connection idle this long is pinged before it is used.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(5);

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

/// The text values of a JSON array as a set-returning function (column
/// `value`), for `SELECT value FROM ...`.
pub(crate) fn push_json_elements(query: &mut QueryBuilder<Db>, json: String) {
    query.push("jsonb_array_elements_text(");
    query.push_bind(json);
    query.push("::jsonb)");
}

/// `account_id IN (<the JSON array of scope accounts>)`.
pub(crate) fn push_scope(query: &mut QueryBuilder<Db>, accounts_json: String) {
    query.push("account_id IN ");
    push_json_values(query, accounts_json);
}

pub(crate) async fn connect(config: &StoreConfig) -> Result<Pool<Db>, OpenError> {
    // The split of roles (deploy/postgres/roles.sql): the schema's owner
    // migrates, over a connection of its own that is closed at once; the
    // service then serves as a role with DML grants only.
    let mode = match &config.migration_url {
        Some(url) => {
            migrate_as_owner(url).await?;
            Migrations::Verify
        }
        None => config.migrations,
    };
    let options: PgConnectOptions = config.url.parse().map_err(OpenError::Connect)?;
    let options = options.application_name("slr-governor");
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        // sqlx pings every idle connection it hands out by default: a round
        // trip before every statement, as costly as the statement itself
        // (docs/benchmarks.md). Only a connection idle long enough for the
        // server or the network to have dropped it is pinged first; one in
        // use a moment ago is trusted.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .map_err(OpenError::Connect)?;
    check_rls_bypass(&pool, config.allow_rls_bypass).await?;
    let (role, may_migrate) = migration_rights(&pool).await?;
    if let Some(detail) = schema_lag(&pool).await? {
        if mode == Migrations::Apply || (mode == Migrations::Auto && may_migrate) {
            // sqlx's Postgres migrator holds pg_advisory_lock for the run, so
            // replicas that start together apply each migration once.
            MIGRATOR.run(&pool).await.map_err(OpenError::Migrate)?;
        } else {
            return Err(OpenError::SchemaNotMigrated { role, detail });
        }
    }
    if mode != Migrations::Apply {
        warn_if_owner(&pool).await?;
    }
    Ok(pool)
}

/// Applies the migrations over `url` (the schema owner's), then closes
/// the connection: the owner's rights are not kept in the serving pool.
async fn migrate_as_owner(url: &str) -> Result<(), OpenError> {
    let options: PgConnectOptions = url.parse().map_err(OpenError::Connect)?;
    let options = options.application_name("slr-governor-migrate");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(OpenError::Connect)?;
    let done = MIGRATOR.run(&pool).await.map_err(OpenError::Migrate);
    pool.close().await;
    done
}

/// Row-level security is the second wall between tenants; a superuser or
/// BYPASSRLS role walks through it, and so does any role that is a member
/// of one (neither attribute is inherited, but `SET ROLE` reaches it).
/// Refuses such a role unless told to.
async fn check_rls_bypass(pool: &Pool<Db>, allow: bool) -> Result<(), OpenError> {
    let (role, own, via): (String, bool, Option<String>) = sqlx::query_as(
        "SELECT current_user::text, \
                (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user), \
                (SELECT string_agg(r.rolname::text, ', ' ORDER BY r.rolname) FROM pg_roles r \
                  WHERE (r.rolsuper OR r.rolbypassrls) AND r.rolname <> current_user \
                    AND pg_has_role(current_user, r.oid, 'MEMBER'))",
    )
    .fetch_one(pool)
    .await
    .map_err(OpenError::Connect)?;
    if !own && via.is_none() {
        return Ok(());
    }
    let how = if own {
        "is a superuser or has BYPASSRLS".to_owned()
    } else {
        format!(
            "is a member of the superuser or BYPASSRLS role(s) {} (SET ROLE reaches them)",
            via.unwrap_or_default()
        )
    };
    if !allow {
        return Err(OpenError::RlsBypass { role, how });
    }
    tracing::warn!(
        role,
        how,
        "connected to Postgres as a role that bypasses row-level security \
         (SLRGOV_ALLOW_RLS_BYPASS=true): only the service's own scope checks separate tenants"
    );
    Ok(())
}

/// The role connected, and whether it may migrate: it owns the migrations
/// table (is, or may act as, its owner), or there is none yet and it may
/// create tables in the schema.
async fn migration_rights(pool: &Pool<Db>) -> Result<(String, bool), OpenError> {
    sqlx::query_as(
        "SELECT current_user::text, COALESCE(CASE \
            WHEN to_regclass('_sqlx_migrations') IS NULL \
              THEN has_schema_privilege(current_schema(), 'CREATE') \
            ELSE pg_has_role((SELECT relowner FROM pg_class \
                              WHERE oid = to_regclass('_sqlx_migrations')), 'USAGE') \
          END, false)",
    )
    .fetch_one(pool)
    .await
    .map_err(OpenError::Connect)
}

/// How the schema differs from this version's migrations, or `None` when
/// every migration is applied as it is embedded here.
async fn schema_lag(pool: &Pool<Db>) -> Result<Option<String>, OpenError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(OpenError::Connect)?;
    let applied: Vec<(i64, Vec<u8>, bool)> = if exists {
        sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.code().as_deref() == Some("42501") => {
                    OpenError::MigrationsUnreadable(e)
                }
                _ => OpenError::Connect(e),
            })?
    } else {
        Vec::new()
    };
    let embedded: Vec<_> = MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .collect();
    let mut lag = Vec::new();
    for (version, checksum, success) in &applied {
        match embedded.iter().find(|m| m.version == *version) {
            None => lag.push(format!("{version} is applied but unknown to this version")),
            Some(_) if !success => lag.push(format!("{version} failed partway")),
            Some(m) if m.checksum.as_ref() != checksum.as_slice() => {
                lag.push(format!("{version} changed after it was applied"))
            }
            Some(_) => {}
        }
    }
    let pending: Vec<String> = embedded
        .iter()
        .filter(|m| !applied.iter().any(|(v, _, _)| *v == m.version))
        .map(|m| m.version.to_string())
        .collect();
    if !pending.is_empty() {
        lag.push(format!("pending: {}", pending.join(", ")));
    }
    Ok((!lag.is_empty()).then(|| lag.join("; ")))
}

/// Warns when the serving role owns the tables (or may act as their
/// owner): it could then turn row-level security off (`ALTER TABLE ... NO
/// FORCE ROW LEVEL SECURITY`) or drop the audit trail's triggers. Single-role
/// setups still start.
async fn warn_if_owner(pool: &Pool<Db>) -> Result<(), OpenError> {
    let owners: Option<String> = sqlx::query_scalar(
        "SELECT string_agg(DISTINCT pg_get_userbyid(c.relowner)::text, ', ') FROM pg_class c \
         WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) \
           AND c.relkind IN ('r', 'p') AND c.relname IN \
             ('accounts', 'instances', 'linked_roles', 'request_ids', 'audit_events', 'workflows', 'service_keys', \
             'findings') \
           AND pg_has_role(current_user, c.relowner, 'MEMBER')",
    )
    .fetch_one(pool)
    .await
    .map_err(OpenError::Connect)?;
    if let Some(owners) = owners {
        tracing::warn!(
            owner = owners,
            "the service's Postgres role owns the tables (or may act as their owner {owners}): \
             it could disable row-level security (ALTER TABLE ... NO FORCE ROW LEVEL SECURITY) \
             or drop the audit triggers. Serve as a role with DML grants only and migrate as the \
             owner (`slr-governor migrate`, SLRGOV_MIGRATION_DATABASE_URL; deploy/postgres/roles.sql)"
        );
    }
    Ok(())
}

/// Reserves one call in the bucket of `account` and `service` that every
/// replica shares (migration 0011, GCRA): one statement moves the bucket's
/// theoretical arrival time (`tat`) one interval (`1 / per_second`) past
/// the later of itself and now, on the database's clock, and returns how
/// far the new `tat` is from now. The call may go `burst` intervals before
/// its `tat`: a fresh or idle bucket lets `burst` calls go at once, then
/// one per interval, each caller waiting for its own slot (as the local
/// limiter's reservations).
pub(crate) async fn rate_reserve(
    pool: &Pool<Db>,
    account: &slrgov_domain::types::AccountId,
    service: &str,
    per_second: f64,
    burst: u32,
) -> slrgov_domain::Result<Option<std::time::Duration>> {
    if !(per_second.is_finite() && per_second > 0.0) {
        return Err(slrgov_domain::Error::internal(format!(
            "rate_reserve: the rate must be positive, got {per_second}"
        )));
    }
    let interval = 1.0 / per_second;
    let ahead: f64 = sqlx::query_scalar(
        "INSERT INTO rate_buckets AS b (account_id, service, tat) \
         VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3)) \
         ON CONFLICT (account_id, service) DO UPDATE \
           SET tat = greatest(b.tat, clock_timestamp()) + make_interval(secs => $3) \
         RETURNING extract(epoch FROM b.tat - clock_timestamp())::float8",
    )
    .bind(account.as_str())
    .bind(service)
    .bind(interval)
    .fetch_one(pool)
    .await
    .map_err(crate::error::db_error)?;
    let wait = ahead - f64::from(burst.max(1)) * interval;
    Ok(Some(if wait > 0.0 {
        std::time::Duration::from_secs_f64(wait)
    } else {
        std::time::Duration::ZERO
    }))
}

/// Gives back one reserved call: the bucket's theoretical arrival time
/// moves back one interval, never before now (a slot already past is not
/// given back: the time it stood for is gone).
pub(crate) async fn rate_refund(
    pool: &Pool<Db>,
    account: &slrgov_domain::types::AccountId,
    service: &str,
    per_second: f64,
) -> slrgov_domain::Result<()> {
    if !(per_second.is_finite() && per_second > 0.0) {
        return Err(slrgov_domain::Error::internal(format!(
            "rate_refund: the rate must be positive, got {per_second}"
        )));
    }
    sqlx::query(
        "UPDATE rate_buckets \
         SET tat = greatest(tat - make_interval(secs => $3), clock_timestamp()) \
         WHERE account_id = $1 AND service = $2",
    )
    .bind(account.as_str())
    .bind(service)
    .bind(1.0 / per_second)
    .execute(pool)
    .await
    .map_err(crate::error::db_error)?;
    Ok(())
}

/// The change log's `tx` (an `xid8`) as a cursor reads it: a BIGINT.
pub(crate) const CHANGE_TX: &str = "tx::text::bigint";

/// Only rows of transactions older than every transaction still running:
/// a transaction with a smaller id may still commit rows, and a cursor
/// must never pass a row it has not read (migration 0010).
pub(crate) const CHANGE_READABLE: &str = " AND tx < pg_snapshot_xmin(pg_current_snapshot())";

/// Pushes a cursor's `tx` as the column's type (`xid8`).
pub(crate) fn push_change_tx(query: &mut QueryBuilder<Db>, tx: i64) {
    query.push("CAST(CAST(");
    query.push_bind(tx);
    query.push(" AS TEXT) AS XID8)");
}

/// The channel the change log's triggers notify (migration 0010).
const CHANGE_CHANNEL: &str = "slrgov_changes";

/// Moves the change signal.
fn bump(signal: &watch::Sender<u64>) {
    signal.send_modify(|n| *n = n.wrapping_add(1));
}

/// The change signal of a store, until `stop` fires (the store is
/// dropped): listens on `slrgov_changes` with a connection of the pool and
/// moves `signal` on every notification, and once after every (re)connect,
/// since what was committed while nobody listened is unknown. A lost
/// listener is logged and made again after a pause (1 s, doubling up to
/// 30 s); watchers still read the log now and then meanwhile.
pub(crate) async fn watch_changes(
    pool: Pool<Db>,
    signal: Arc<watch::Sender<u64>>,
    mut stop: oneshot::Receiver<()>,
) {
    const FIRST_PAUSE: Duration = Duration::from_secs(1);
    const LAST_PAUSE: Duration = Duration::from_secs(30);
    let mut pause = FIRST_PAUSE;
    loop {
        let mut listened = false;
        let error = tokio::select! {
            _ = &mut stop => return,
            error = listen_changes(&pool, &signal, &mut listened) => error,
        };
        bump(&signal);
        if matches!(error, sqlx::Error::PoolClosed) {
            return;
        }
        if listened {
            pause = FIRST_PAUSE;
        }
        tracing::warn!(
            error = %error,
            retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
            "lost the Postgres change listener (LISTEN {CHANGE_CHANNEL}): watchers read the log \
             on their own schedule until it is back"
        );
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(LAST_PAUSE);
    }
}

/// Listens until the listener fails; returns why.
async fn listen_changes(
    pool: &Pool<Db>,
    signal: &watch::Sender<u64>,
    listened: &mut bool,
) -> sqlx::Error {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(error) => return error,
    };
    if let Err(error) = listener.listen(CHANGE_CHANNEL).await {
        return error;
    }
    *listened = true;
    bump(signal);
    loop {
        match listener.try_recv().await {
            Ok(Some(_)) => bump(signal),
            // The connection was lost and made again: what was notified
            // meanwhile is lost, so watchers read the log again.
            Ok(None) => bump(signal),
            Err(error) => return error,
        }
    }
}

// The store itself: one source for both engines, compiled once here and
// once in the other engine's module (see `engine/mod.rs`).
#[allow(clippy::duplicate_mod)]
#[path = "shared/mod.rs"]
mod shared;

/// The Postgres store.
pub type PostgresStore = shared::EngineStore;
