//! The store, written once for both engines: `postgres.rs` and `sqlite.rs`
//! each define the few things that differ (the `Db` type, how a
//! transaction begins, row locking, the account-scope clause, connecting)
//! and then declare this folder as their module `shared`, so every file
//! here compiles once per engine against concrete sqlx types. Every query
//! is portable SQL: `$N` placeholders (which sqlx-sqlite reads as positions
//! too), `RETURNING`, `ON CONFLICT`, row-value comparisons for keyset
//! pagination.
//!
//! One file per resource, each implementing that resource's trait of the
//! store; `rows.rs` maps rows to domain values, `txn.rs` holds what every
//! transaction shares (scope, revision checks, audit events, pages).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use slrgov_domain::{RequestContext, Result, Role};
use sqlx::{Pool, QueryBuilder};
use tracing::Instrument;

use crate::engine::now;
use crate::error::db_error;
use crate::page_token::PageTokenKey;
use crate::{Engine, GaugeRow, OpenError, Store, StoreConfig};

pub(crate) use super::{
    DB_SYSTEM, DIRECT_WRITES, Db, ENGINE, FOR_UPDATE, SKIP_LOCKED, begin, connect,
    push_json_elements, push_json_values, push_scope, push_scoped_end, push_scoped_start,
    scoped_sql,
};

/// The client span of one store method (`db <operation>`, with the engine
/// as OpenTelemetry names it): every method's body runs in one. (`super`
/// is the engine's module here, and this module's re-export in the files
/// below.)
macro_rules! db_span {
    ($operation:literal) => {
        tracing::info_span!(
            "db",
            otel.name = concat!("db ", $operation),
            otel.kind = "client",
            db.system.name = super::DB_SYSTEM,
            db.operation.name = $operation
        )
    };
}

mod accounts;
mod audit;
mod batches;
mod changes;
mod direct;
mod discovery;
mod findings;
mod instances;
mod linked_roles;
mod request_ids;
mod retirements;
mod rows;
mod txn;
mod workflows;

/// The store on this engine.
pub struct EngineStore {
    pool: Pool<Db>,
    page_tokens: PageTokenKey,
    /// How long request ids are remembered.
    request_id_ttl: chrono::Duration,
    /// The change signal watchers wait on.
    changes: changes::ChangeSignal,
}

impl std::fmt::Debug for EngineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineStore")
            .field("engine", &ENGINE)
            .finish()
    }
}

impl EngineStore {
    /// Connects, migrates, and loads the keys shared by every replica.
    pub async fn open(config: &StoreConfig) -> Result<Self, OpenError> {
        let pool = connect(config).await?;
        let page_tokens = service_key_load(&pool, "page_token")
            .await
            .map_err(OpenError::Keys)?;
        Ok(EngineStore {
            pool,
            page_tokens: PageTokenKey::new(page_tokens),
            request_id_ttl: chrono::Duration::from_std(config.request_id_ttl)
                .unwrap_or(chrono::Duration::hours(24)),
            changes: changes::ChangeSignal::new(),
        })
    }

    /// The connection pool, for tests and maintenance.
    pub fn pool(&self) -> &Pool<Db> {
        &self.pool
    }

    /// The parent of a list or a watch: every visible account, or one the
    /// caller sees and that exists. A visible parent that does not exist is
    /// NOT_FOUND (AIP-132), exactly like one outside the caller's scope.
    pub(crate) async fn check_list_parent(
        &self,
        ctx: &RequestContext,
        parent: &slrgov_domain::names::AccountSelector,
    ) -> Result<()> {
        let slrgov_domain::names::AccountSelector::One(account) = parent else {
            return Ok(());
        };
        let name = slrgov_domain::names::account_name(account);
        ctx.check_visible(account, &name)?;
        let sql = scoped_sql("SELECT 1 AS one FROM accounts WHERE account_id = $1", 2);
        let exists: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(account.as_str())
            .bind(txn::scope_setting(ctx))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        match exists {
            Some(_) => Ok(()),
            None => Err(slrgov_domain::Error::not_found(name)),
        }
    }

    /// Opens a store on `config` as an `Arc<dyn Store>`.
    pub async fn open_dyn(config: &StoreConfig) -> Result<Arc<dyn Store>, OpenError> {
        Ok(Arc::new(Self::open(config).await?))
    }
}

/// A row of the gauges' statement (by column name: the SQLite scope
/// wrapper adds a column of its own).
#[derive(sqlx::FromRow)]
struct GaugeDbRow {
    kind: String,
    state: String,
    n: i64,
    oldest: Option<DateTime<Utc>>,
}

/// Loads the key `name`, creating it on first use. Replicas racing here all
/// end up with the one row that won the insert.
async fn service_key_load(pool: &Pool<Db>, name: &str) -> sqlx::Result<Vec<u8>> {
    let candidate: [u8; 32] = rand::random();
    sqlx::query(
        "INSERT INTO service_keys (name, key, create_time) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(candidate.as_slice())
    .bind(now())
    .execute(pool)
    .await?;
    sqlx::query_scalar("SELECT key FROM service_keys WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
}

#[async_trait]
impl Store for EngineStore {
    fn engine(&self) -> Engine {
        ENGINE
    }

    fn page_tokens(&self) -> &PageTokenKey {
        &self.page_tokens
    }

    async fn rate_reserve(
        &self,
        account: &slrgov_domain::types::AccountId,
        service: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Option<std::time::Duration>> {
        // Engine-specific: the shared bucket exists on Postgres only.
        super::rate_reserve(&self.pool, account, service, per_second, burst)
            .instrument(db_span!("rate_reserve"))
            .await
    }

    async fn rate_refund(
        &self,
        account: &slrgov_domain::types::AccountId,
        service: &str,
        per_second: f64,
    ) -> Result<()> {
        super::rate_refund(&self.pool, account, service, per_second)
            .instrument(db_span!("rate_refund"))
            .await
    }

    async fn ping(&self) -> Result<()> {
        async move {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(db_error)?;
            Ok(())
        }
        .instrument(db_span!("ping"))
        .await
    }

    async fn gauges(&self, ctx: &RequestContext) -> Result<Vec<GaugeRow>> {
        async move {
            ctx.check_role(Role::Admin, "read the telemetry gauges")?;
            // The scope clause as in every list: on SQLite (no row-level
            // security) it is the only one.
            let scope = txn::scope_json(ctx);
            let mut query = QueryBuilder::<Db>::new("");
            push_scoped_start(&mut query, txn::scope_setting(ctx));
            query.push(
                "SELECT kind, state, COUNT(*) AS n, MIN(since) AS oldest FROM ( \
                 SELECT 'linked_role' AS kind, state, update_time AS since FROM linked_roles \
                 WHERE 1 = 1",
            );
            if let Some(scope) = &scope {
                query.push(" AND ");
                push_scope(&mut query, scope.clone());
            }
            query.push(
                " UNION ALL SELECT 'workflow' AS kind, kind AS state, create_time AS since \
                 FROM workflows WHERE phase IN ('RUNNING', 'UNWINDING')",
            );
            if let Some(scope) = &scope {
                query.push(" AND ");
                push_scope(&mut query, scope.clone());
            }
            query.push(
                " UNION ALL SELECT 'finding' AS kind, code || '/' || severity AS state, \
                 first_seen_time AS since FROM findings WHERE resolve_time IS NULL",
            );
            if let Some(scope) = &scope {
                query.push(" AND ");
                push_scope(&mut query, scope.clone());
            }
            // Each account's newest finished reconcile pass (one row per
            // account; the lag gauge). Finished passes are swept after a
            // week, the newest kept.
            query.push(
                " UNION ALL SELECT 'reconcile' AS kind, account_id AS state, \
                 MAX(end_time) AS since FROM workflows \
                 WHERE kind = 'reconcile' AND phase = 'SUCCEEDED'",
            );
            if let Some(scope) = scope {
                query.push(" AND ");
                push_scope(&mut query, scope);
            }
            query.push(" GROUP BY account_id");
            query.push(") AS t GROUP BY kind, state");
            push_scoped_end(&mut query);
            // In a stable order, whatever plan the grouping takes.
            query.push(" ORDER BY kind, state");
            let rows: Vec<GaugeDbRow> = query
                .build_query_as()
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
            Ok(rows
                .into_iter()
                .map(|row| GaugeRow {
                    kind: row.kind,
                    state: row.state,
                    count: u64::try_from(row.n).unwrap_or(0),
                    oldest: row.oldest,
                })
                .collect())
        }
        .instrument(db_span!("gauges"))
        .await
    }
}
