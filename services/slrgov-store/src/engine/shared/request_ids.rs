//! Request ids (AIP-155), one rule for every RPC that takes one: the id is
//! kept per caller (principal) and account, claimed and answered in the
//! same transaction as the change it guards, replayed within the window,
//! and refused with other parameters. A failed request rolls its claim
//! back, so it does not use its id up.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use slrgov_domain::names::account_name;
use slrgov_domain::types::AccountId;
use slrgov_domain::{Error, RequestContext, Result, Role};
use sqlx::types::Json;
use tracing::Instrument;

use super::txn::{Tx, audit_in_txn, begin_scoped, commit_audited, scope_setting};
use super::{EngineStore, scoped_sql};
use crate::engine::now;
use crate::error::{corrupt, db_error};
use crate::{Idempotency, Replay, RequestIdStore};

/// What a claimed request id answers.
pub(crate) enum Answer<'a> {
    /// A response (JSON of the domain value).
    Response(serde_json::Value),
    /// The workflow the request started.
    Workflow(&'a str),
}

/// The oldest `create_time` a request id may have and still be replayed.
fn window_start(store: &EngineStore) -> DateTime<Utc> {
    now() - store.request_id_ttl
}

type StoredRow = (
    String,
    Vec<u8>,
    Option<Json<serde_json::Value>>,
    Option<String>,
);

/// The replay of a stored row, or REQUEST_ID_REUSED when it came with
/// another request. The method is compared too, so that one method's
/// answer is never replayed for another.
fn replay_of(row: StoredRow, idempotency: &Idempotency) -> Result<Replay> {
    let (method, fingerprint, response, workflow_id) = row;
    if method != idempotency.method || fingerprint != idempotency.fingerprint {
        return Err(Error::request_id_reused());
    }
    match (response, workflow_id) {
        (_, Some(id)) => Ok(Replay::Workflow(id)),
        (Some(Json(response)), None) => Ok(Replay::Response(response)),
        // Only possible if a transaction committed a claim without its
        // answer, which no method here does.
        (None, None) => Err(corrupt("request_ids.response", "missing")),
    }
}

impl EngineStore {
    /// Claims `idempotency` for the transaction `tx`: `None` when the id is
    /// new (or its earlier use is older than the window), else the first
    /// answer. On Postgres a concurrent request with the same id waits here
    /// for the first to commit, then replays its answer.
    pub(crate) async fn request_id_claim_in_txn(
        &self,
        tx: &mut Tx,
        ctx: &RequestContext,
        account: &AccountId,
        idempotency: Option<&Idempotency>,
    ) -> Result<Option<Replay>> {
        let Some(idempotency) = idempotency else {
            return Ok(None);
        };
        let claimed = sqlx::query(
            "INSERT INTO request_ids (account_id, principal, request_id, method, fingerprint, \
             response, workflow_id, create_time) VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6) \
             ON CONFLICT (account_id, principal, request_id) DO UPDATE SET method = $4, \
             fingerprint = $5, response = NULL, workflow_id = NULL, create_time = $6 \
             WHERE request_ids.create_time < $7",
        )
        .bind(account.as_str())
        .bind(&ctx.caller().principal)
        .bind(idempotency.request_id.as_str())
        .bind(&idempotency.method)
        .bind(idempotency.fingerprint.as_slice())
        .bind(now())
        .bind(window_start(self))
        .execute(&mut **tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if claimed == 1 {
            return Ok(None);
        }
        let row: StoredRow = sqlx::query_as(
            "SELECT method, fingerprint, response, workflow_id FROM request_ids \
             WHERE account_id = $1 AND principal = $2 AND request_id = $3",
        )
        .bind(account.as_str())
        .bind(&ctx.caller().principal)
        .bind(idempotency.request_id.as_str())
        .fetch_one(&mut **tx)
        .await
        .map_err(db_error)?;
        replay_of(row, idempotency).map(Some)
    }

    /// Records the answer of a request id claimed in `tx`.
    pub(crate) async fn request_id_answer_in_txn(
        &self,
        tx: &mut Tx,
        ctx: &RequestContext,
        account: &AccountId,
        idempotency: Option<&Idempotency>,
        answer: Answer<'_>,
    ) -> Result<()> {
        let Some(idempotency) = idempotency else {
            return Ok(());
        };
        let (response, workflow_id) = match answer {
            Answer::Response(value) => (Some(Json(value)), None),
            Answer::Workflow(id) => (None, Some(id)),
        };
        sqlx::query(
            "UPDATE request_ids SET response = $4, workflow_id = $5 \
             WHERE account_id = $1 AND principal = $2 AND request_id = $3",
        )
        .bind(account.as_str())
        .bind(&ctx.caller().principal)
        .bind(idempotency.request_id.as_str())
        .bind(response)
        .bind(workflow_id)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
        Ok(())
    }
}

/// The audit event a change records with its commit.
pub(crate) struct Event<'a> {
    /// The account whose trail it goes to.
    pub account: &'a AccountId,
    /// The resource the change was made to.
    pub resource: &'a str,
    /// What changed, without secrets.
    pub detail: String,
}

impl EngineStore {
    /// Ends a change: the request id's answer, the change's audit event
    /// (with the AWS calls made so far), the commit.
    pub(crate) async fn commit_change(
        &self,
        mut tx: Tx,
        ctx: &RequestContext,
        idempotency: Option<&Idempotency>,
        answer: Answer<'_>,
        event: Event<'_>,
    ) -> Result<()> {
        self.request_id_answer_in_txn(&mut tx, ctx, event.account, idempotency, answer)
            .await?;
        audit_in_txn(
            &mut tx,
            ctx,
            event.account,
            event.resource,
            "OK",
            event.detail,
        )
        .await?;
        commit_audited(tx, ctx).await
    }
}

/// Serializes a domain value as a stored answer.
pub(crate) fn response_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| corrupt("response", e))
}

#[async_trait]
impl RequestIdStore for EngineStore {
    async fn request_id_lookup(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
        idempotency: &Idempotency,
    ) -> Result<Option<Replay>> {
        async move {
            // Another tenant's account is NOT_FOUND (on SQLite, which has no
            // row-level security, this is the only wall).
            ctx.check_visible(account, &account_name(account))?;
            let sql = scoped_sql(
                "SELECT method, fingerprint, response, workflow_id FROM request_ids \
                 WHERE account_id = $1 AND principal = $2 AND request_id = $3 \
                 AND create_time >= $4",
                5,
            );
            let row: Option<StoredRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(account.as_str())
                .bind(&ctx.caller().principal)
                .bind(idempotency.request_id.as_str())
                .bind(window_start(self))
                .bind(scope_setting(ctx))
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
            row.map(|row| replay_of(row, idempotency)).transpose()
        }
        .instrument(db_span!("request_id_lookup"))
        .await
    }

    async fn request_id_record(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
        idempotency: &Idempotency,
        response: serde_json::Value,
    ) -> Result<Option<Replay>> {
        async move {
            ctx.check_visible(account, &account_name(account))?;
            ctx.check_role(Role::Operator, "record the answer of a request id")?;
            let mut tx = begin_scoped(&self.pool, ctx).await?;
            if let Some(first) = self
                .request_id_claim_in_txn(&mut tx, ctx, account, Some(idempotency))
                .await?
            {
                return Ok(Some(first));
            }
            self.request_id_answer_in_txn(
                &mut tx,
                ctx,
                account,
                Some(idempotency),
                Answer::Response(response),
            )
            .await?;
            tx.commit().await.map_err(db_error)?;
            Ok(None)
        }
        .instrument(db_span!("request_id_record"))
        .await
    }

    async fn request_id_sweep(&self, ctx: &RequestContext, limit: u32) -> Result<u64> {
        async move {
            ctx.check_role(Role::Admin, "sweep request ids")?;
            let mut tx = begin_scoped(&self.pool, ctx).await?;
            let removed = sqlx::query(
                "DELETE FROM request_ids WHERE (account_id, principal, request_id) IN ( \
                 SELECT account_id, principal, request_id FROM request_ids \
                 WHERE create_time < $1 LIMIT $2)",
            )
            .bind(window_start(self))
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
            tx.commit().await.map_err(db_error)?;
            Ok(removed)
        }
        .instrument(db_span!("request_id_sweep"))
        .await
    }
}
