//! Workflows: the stored step machines. SQL only stores rows and claims
//! them (`FOR UPDATE SKIP LOCKED` on Postgres; SQLite's `BEGIN IMMEDIATE`
//! serializes claims); what a step means is decided in Rust
//! (`slrgov_domain::workflow`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use slrgov_domain::names::InstanceKey;
use slrgov_domain::workflow::{NewWorkflow, Phase, WorkflowLog, WorkflowRecord, WorkflowUpdate};
use slrgov_domain::{Error, RequestContext, Result, Role};
use sqlx::types::Json;
use tracing::Instrument;

use super::rows::{WORKFLOW_COLUMNS, WorkflowRow};
use super::txn::{
    Keyset, Tx, audit_in_txn, begin_scoped, commit_audited, list_page, scope_setting,
};
use super::{EngineStore, FOR_UPDATE, SKIP_LOCKED, scoped_sql};
use crate::engine::{now, to_micros};
use crate::error::db_error;
use crate::page_token::query_digest;
use crate::{Fence, Idempotency, Page, PageRequest, RetireStart, WorkflowStore};

/// The phases of a workflow that still runs, as SQL.
const RUNNING: &str = "('RUNNING', 'UNWINDING')";

fn later(from: DateTime<Utc>, by: std::time::Duration) -> DateTime<Utc> {
    from + chrono::Duration::from_std(by).unwrap_or(chrono::Duration::seconds(60))
}

/// Inserts a new running workflow, held by `owner` until `lease_until`
/// (or not held: due for any worker at once).
pub(crate) async fn workflow_insert_in_txn(
    tx: &mut Tx,
    ctx: &RequestContext,
    new: &NewWorkflow,
    owner: Option<&str>,
    lease_until: Option<DateTime<Utc>>,
) -> Result<WorkflowRecord> {
    insert(tx, ctx, new, Phase::Running, owner, lease_until).await
}

/// Inserts a workflow that finished at once (DeleteInstance of a record
/// that had no role to retire): SUCCEEDED, with no output.
pub(crate) async fn workflow_insert_done_in_txn(
    tx: &mut Tx,
    ctx: &RequestContext,
    new: &NewWorkflow,
) -> Result<WorkflowRecord> {
    insert(tx, ctx, new, Phase::Succeeded, None, None).await
}

async fn insert(
    tx: &mut Tx,
    ctx: &RequestContext,
    new: &NewWorkflow,
    phase: Phase,
    owner: Option<&str>,
    lease_until: Option<DateTime<Utc>>,
) -> Result<WorkflowRecord> {
    let now = now();
    let done = phase.is_done();
    sqlx::query_as::<_, WorkflowRow>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO workflows (workflow_id, kind, account_id, instance_id, target, inputs, state, \
         step, phase, attempt, not_before, output, principal, request_id, status_message, \
         lease_owner, lease_until, create_time, update_time, end_time) \
         VALUES ($1, $2, $3, $4, $17, $5, $6, $7, $8, 0, $9, $10, $11, $12, $13, $14, $15, $9, $9, $16) \
         RETURNING {WORKFLOW_COLUMNS}"
    )))
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(new.kind.as_str())
    .bind(new.target.account_id.as_str())
    .bind(new.target.instance_id.as_ref().map(|id| id.as_str().to_owned()))
    .bind(Json(&new.inputs))
    .bind(Json(&new.state))
    .bind(new.step)
    .bind(phase.as_str())
    .bind(now)
    .bind(done.then_some(Json(serde_json::Value::Null)))
    .bind(&ctx.caller().principal)
    .bind(&new.request_id)
    .bind(if done {
        "done"
    } else {
        new.status_message.as_str()
    })
    .bind(owner)
    .bind(lease_until)
    .bind(done.then_some(now))
    .bind(&new.target.name)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)?
    .into_record()
}

/// A workflow, locked.
pub(crate) async fn workflow_select_in_txn(
    tx: &mut Tx,
    workflow_id: &str,
) -> Result<Option<WorkflowRecord>> {
    sqlx::query_as::<_, WorkflowRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE workflow_id = $1{FOR_UPDATE}"
    )))
    .bind(workflow_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_error)?
    .map(WorkflowRow::into_record)
    .transpose()
}

/// The workflow running on an instance, if any, locked.
pub(crate) async fn workflow_running_in_txn(
    tx: &mut Tx,
    key: &InstanceKey,
) -> Result<Option<WorkflowRecord>> {
    sqlx::query_as::<_, WorkflowRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE account_id = $1 AND instance_id = $2 \
         AND phase IN {RUNNING}{FOR_UPDATE}"
    )))
    .bind(key.account_id.as_str())
    .bind(key.instance_id.as_str())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_error)?
    .map(WorkflowRow::into_record)
    .transpose()
}

/// Hands a running workflow to `owner` until `lease_until`.
pub(crate) async fn workflow_take_in_txn(
    tx: &mut Tx,
    workflow_id: &str,
    owner: &str,
    lease_until: DateTime<Utc>,
) -> Result<WorkflowRecord> {
    sqlx::query_as::<_, WorkflowRow>(sqlx::AssertSqlSafe(format!(
        "UPDATE workflows SET lease_owner = $2, lease_until = $3, update_time = $4 \
         WHERE workflow_id = $1 RETURNING {WORKFLOW_COLUMNS}"
    )))
    .bind(workflow_id)
    .bind(owner)
    .bind(lease_until)
    .bind(now())
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)?
    .into_record()
}

/// True when someone other than `owner` holds `record` now.
pub(crate) fn held_by_other(record: &WorkflowRecord, owner: &str) -> bool {
    record.lease_owner.as_deref().is_some_and(|o| o != owner)
        && record.lease_until.is_some_and(|t| t > now())
}

/// Checks, inside a step's write, that the step's workflow still runs and
/// is held by the step's process: ABORTED / OPERATION_IN_PROGRESS
/// otherwise (another process took it over), so a stale process never
/// writes.
pub(crate) async fn fence_in_txn(
    tx: &mut Tx,
    fence: &Fence,
    key: &InstanceKey,
) -> Result<WorkflowRecord> {
    let record = workflow_select_in_txn(tx, &fence.workflow_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("operations/{}", fence.workflow_id)))?;
    // A fence is for its own instance only.
    if record.target.key().as_ref() != Some(key) {
        return Err(Error::internal(
            "internal error: a workflow step wrote to another instance",
        ));
    }
    if record.done() || record.lease_owner.as_deref() != Some(fence.owner.as_str()) {
        return Err(Error::operation_in_progress(
            record.target.name.clone(),
            "another holder of the workflow",
        ));
    }
    Ok(record)
}

#[async_trait]
impl WorkflowLog for EngineStore {
    async fn workflow_save(
        &self,
        ctx: &RequestContext,
        id: &str,
        owner: &str,
        update: WorkflowUpdate,
    ) -> Result<WorkflowRecord> {
        async move {
            let name = format!("operations/{id}");
            let mut tx = begin_scoped(&self.pool, ctx).await?;
            let current = workflow_select_in_txn(&mut tx, id)
                .await?
                .ok_or_else(|| Error::not_found(name.clone()))?;
            ctx.check_visible(&current.target.account_id, &current.target.name.clone())?;
            ctx.check_role(Role::Operator, "run a workflow step")?;
            // Saved twice, a finished workflow stays as it finished.
            if current.done() {
                return Ok(current);
            }
            if current.lease_owner.as_deref() != Some(owner) {
                return Err(Error::operation_in_progress(
                    current.target.name.clone(),
                    "another holder of the workflow",
                ));
            }
            let now = now();
            let done = update.phase.is_done();
            let record = sqlx::query_as::<_, WorkflowRow>(sqlx::AssertSqlSafe(format!(
                "UPDATE workflows SET state = $2, step = $3, phase = $4, attempt = $5, \
                 not_before = $6, error = $7, output = $8, status_message = $9, \
                 lease_owner = $10, lease_until = $11, update_time = $12, end_time = $13 \
                 WHERE workflow_id = $1 RETURNING {WORKFLOW_COLUMNS}"
            )))
            .bind(id)
            .bind(Json(&update.state))
            .bind(&update.step)
            .bind(update.phase.as_str())
            .bind(i32::try_from(update.attempt).unwrap_or(i32::MAX))
            // Both engines keep microseconds (SQLite's text would keep
            // nanoseconds): what a save returns is what a read returns.
            .bind(to_micros(update.not_before))
            .bind(update.error.as_ref().map(Json))
            .bind(update.output.as_ref().map(Json))
            .bind(&update.status_message)
            .bind(update.lease_until.map(|_| owner))
            .bind(update.lease_until.map(to_micros))
            .bind(now)
            .bind(done.then_some(now))
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?
            .into_record()?;
            // The trail: every AWS call a step made is written with the
            // step that recorded what it found (unless the step's own write
            // did already), and the start of an unwinding and the end.
            let phase_changed = current.phase != record.phase;
            if ctx.audit.pending_calls() > 0 || phase_changed {
                let outcome = match (&record.phase, &record.error) {
                    (Phase::Failed, Some(error)) => error.kind.clone(),
                    _ => "OK".to_owned(),
                };
                let detail = match record.phase {
                    Phase::Succeeded => format!("{name} finished ({})", record.kind),
                    Phase::Failed => {
                        format!("{name} failed ({}): {}", record.kind, record.status_message)
                    }
                    Phase::Running | Phase::Unwinding => {
                        format!("{name} ({}): {}", record.kind, record.status_message)
                    }
                };
                audit_in_txn(
                    &mut tx,
                    ctx,
                    &record.target.account_id,
                    &record.target.name.clone(),
                    &outcome,
                    detail,
                )
                .await?;
            }
            commit_audited(tx, ctx).await?;
            Ok(record)
        }
        .instrument(db_span!("workflow_save"))
        .await
    }

    async fn workflow_renew(
        &self,
        ctx: &RequestContext,
        id: &str,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<WorkflowRecord> {
        async move {
            let name = format!("operations/{id}");
            let mut tx = begin_scoped(&self.pool, ctx).await?;
            let current = workflow_select_in_txn(&mut tx, id)
                .await?
                .ok_or_else(|| Error::not_found(name.clone()))?;
            ctx.check_visible(&current.target.account_id, &current.target.name.clone())?;
            ctx.check_role(Role::Operator, "run a workflow step")?;
            if current.done() {
                return Err(Error::operation_in_progress(
                    current.target.name.clone(),
                    "a finished workflow (nothing to run)",
                ));
            }
            // Past its lease, a holder may still renew as long as no one
            // took the workflow over: then no one else ran it meanwhile.
            if current.lease_owner.as_deref() != Some(owner) {
                return Err(Error::operation_in_progress(
                    current.target.name.clone(),
                    "another holder of the workflow",
                ));
            }
            let record = workflow_take_in_txn(&mut tx, id, owner, lease_from_now(lease)).await?;
            tx.commit().await.map_err(db_error)?;
            Ok(record)
        }
        .instrument(db_span!("workflow_renew"))
        .await
    }
}

#[async_trait]
impl WorkflowStore for EngineStore {
    async fn workflow_get(
        &self,
        ctx: &RequestContext,
        workflow_id: &str,
    ) -> Result<WorkflowRecord> {
        async move {
            let name = format!("operations/{workflow_id}");
            ctx.check_role(Role::Viewer, "GetOperation")?;
            let row: Option<WorkflowRow> = sqlx::query_as(sqlx::AssertSqlSafe(scoped_sql(
                &format!("SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE workflow_id = $1"),
                2,
            )))
            .bind(workflow_id)
            .bind(scope_setting(ctx))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
            let record = row
                .ok_or_else(|| Error::not_found(name.clone()))?
                .into_record()?;
            // Another tenant's workflow is NOT_FOUND, exactly like a missing one.
            ctx.check_visible(&record.target.account_id, &name)?;
            Ok(record)
        }
        .instrument(db_span!("workflow_get"))
        .await
    }

    async fn workflow_list_operations(
        &self,
        ctx: &RequestContext,
        page: &PageRequest,
    ) -> Result<Page<WorkflowRecord>> {
        async move {
            ctx.check_role(Role::Viewer, "ListOperations")?;
            let digest = query_digest(&["ListOperations", &ctx.caller().principal]);
            list_page(
                &self.pool,
                &self.page_tokens,
                ctx,
                page,
                &digest,
                Keyset {
                    select: format!(
                        "SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE kind <> 'ensure'"
                    ),
                    scoped: true,
                    key: &["workflow_id"],
                    descending: false,
                    fixed: 0,
                },
                |_| {},
                WorkflowRow::into_record,
                |last| vec![last.id.clone()],
            )
            .await
        }
        .instrument(db_span!("workflow_list_operations"))
        .await
    }

    async fn workflow_claim_due(
        &self,
        ctx: &RequestContext,
        owner: &str,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<WorkflowRecord>> {
        async move {
            ctx.check_role(Role::Admin, "claim background work")?;
            let now = now();
            let mut tx = begin_scoped(&self.pool, ctx).await?;
            let rows: Vec<WorkflowRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE workflows SET lease_owner = $3, lease_until = $4, update_time = $1 \
                 WHERE workflow_id IN (SELECT workflow_id FROM workflows \
                 WHERE phase IN {RUNNING} AND not_before <= $1 \
                 AND (lease_until IS NULL OR lease_until < $1) \
                 ORDER BY not_before LIMIT $2{SKIP_LOCKED}) \
                 RETURNING {WORKFLOW_COLUMNS}"
            )))
            .bind(now)
            .bind(i64::from(limit))
            .bind(owner)
            .bind(later(now, lease))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            let mut claimed = rows
                .into_iter()
                .map(WorkflowRow::into_record)
                .collect::<Result<Vec<_>>>()?;
            claimed.sort_by_key(|w| w.not_before);
            Ok(claimed)
        }
        .instrument(db_span!("workflow_claim_due"))
        .await
    }

    async fn workflow_release_all(&self, ctx: &RequestContext, owner: &str) -> Result<()> {
        async move {
            ctx.check_role(Role::Admin, "release background work")?;
            let mut tx = begin_scoped(&self.pool, ctx).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE workflows SET lease_owner = NULL, lease_until = NULL \
                 WHERE lease_owner = $1 AND phase IN {RUNNING}"
            )))
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            Ok(())
        }
        .instrument(db_span!("workflow_release_all"))
        .await
    }

    async fn batch_begin(
        &self,
        ctx: &RequestContext,
        start: NewWorkflow,
        idempotency: Option<&Idempotency>,
    ) -> Result<RetireStart> {
        self.batch_begin_impl(ctx, start, idempotency)
            .instrument(db_span!("batch_begin"))
            .await
    }

    async fn workflow_cancel(
        &self,
        ctx: &RequestContext,
        workflow_id: &str,
    ) -> Result<WorkflowRecord> {
        self.workflow_cancel_impl(ctx, workflow_id)
            .instrument(db_span!("workflow_cancel"))
            .await
    }

    async fn workflow_cancel_requested(
        &self,
        ctx: &RequestContext,
        workflow_id: &str,
    ) -> Result<bool> {
        self.workflow_cancel_requested_impl(ctx, workflow_id)
            .instrument(db_span!("workflow_cancel_requested"))
            .await
    }

    async fn workflow_sweep_passes(
        &self,
        ctx: &RequestContext,
        older_than: std::time::Duration,
        limit: u32,
    ) -> Result<u64> {
        async move {
            ctx.check_role(Role::Admin, "sweep reconcile passes")?;
            let before =
                now() - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::days(7));
            let mut tx = begin_scoped(&self.pool, ctx).await?;
            // Finished passes past the retention that a newer finished
            // pass replaces, but never an account's newest successful one
            // (the reconcile lag is read from it): a failed pass goes once
            // a newer one finished, a successful one once a newer one
            // succeeded.
            let removed = sqlx::query(
                "DELETE FROM workflows WHERE workflow_id IN ( \
                 SELECT w.workflow_id FROM workflows w \
                 WHERE w.kind = 'reconcile' AND w.phase IN ('SUCCEEDED', 'FAILED') \
                 AND w.end_time < $1 AND EXISTS ( \
                 SELECT 1 FROM workflows n WHERE n.kind = 'reconcile' \
                 AND n.account_id = w.account_id AND n.create_time > w.create_time \
                 AND (n.phase = 'SUCCEEDED' \
                 OR (n.phase = 'FAILED' AND w.phase = 'FAILED'))) \
                 LIMIT $2)",
            )
            .bind(before)
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
            tx.commit().await.map_err(db_error)?;
            Ok(removed)
        }
        .instrument(db_span!("workflow_sweep_passes"))
        .await
    }
}

/// The lease of `owner` from now.
pub(crate) fn lease_from_now(lease: std::time::Duration) -> DateTime<Utc> {
    later(now(), lease)
}
