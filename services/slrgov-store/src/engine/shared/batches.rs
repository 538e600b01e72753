//! Batches (BatchEnsureLinkedRoles) and cancellation (CancelOperation):
//! a batch is one `batch_ensure` workflow whose steps ensure the listed
//! instances one at a time; a cancel request is a flag on the workflow's
//! row (`cancel_requested`, migration 0009) that the holder's next step
//! reads, so the caller who cancels never writes the holder's state.

use slrgov_domain::names::account_name;
use slrgov_domain::workflow::{NewWorkflow, WorkflowKind, WorkflowRecord};
use slrgov_domain::{Error, Reason, RequestContext, Result, Role};

use super::request_ids::{Answer, Event};
use super::rows::{WORKFLOW_COLUMNS, WorkflowRow};
use super::txn::{
    account_select_in_txn, audit_in_txn, begin_scoped, commit_audited, scope_setting,
};
use super::workflows::{workflow_insert_in_txn, workflow_select_in_txn};
use super::{EngineStore, scoped_sql};
use crate::engine::now;
use crate::error::db_error;
use crate::{Idempotency, RetireStart};

/// Why a workflow of `kind` cannot be cancelled (`None`: it can).
fn not_cancellable(kind: WorkflowKind) -> Option<&'static str> {
    match kind {
        WorkflowKind::BatchEnsure | WorkflowKind::Sync => None,
        WorkflowKind::Retire | WorkflowKind::Delete => {
            Some("a retirement cannot be cancelled: IAM cannot call back a deletion it accepted")
        }
        WorkflowKind::Ensure => Some(
            "an ensure is not an operation (one instance's role); cancel the batch that \
             started it, if any",
        ),
        WorkflowKind::Reconcile => Some(
            "a reconcile pass is the reconciler's own and cannot be cancelled; turn the \
             reconciler off with SLRGOV_RECONCILE_INTERVAL=0",
        ),
    }
}

impl EngineStore {
    pub(crate) async fn batch_begin_impl(
        &self,
        ctx: &RequestContext,
        start: NewWorkflow,
        idempotency: Option<&Idempotency>,
    ) -> Result<RetireStart> {
        if start.kind != WorkflowKind::BatchEnsure {
            return Err(Error::internal(format!(
                "internal error: batch_begin starts a batch_ensure workflow, not a {} workflow",
                start.kind
            )));
        }
        // `accounts/{id}`, or `accounts/-` held under the first account the
        // batch acts in (as the syncs of every account are).
        let account = start.target.account_id.clone();
        let name = start.target.name.clone();
        ctx.check_visible(&account, &name)?;
        ctx.check_role(Role::Operator, "BatchEnsureLinkedRoles")?;
        let mut tx = begin_scoped(&self.pool, ctx).await?;
        if let Some(first) = self
            .request_id_claim_in_txn(&mut tx, ctx, &account, idempotency)
            .await?
        {
            return Ok(RetireStart::Replayed(first));
        }
        // The account must still be there (and stays until the commit).
        account_select_in_txn(&mut tx, &account, true)
            .await?
            .ok_or_else(|| Error::not_found(account_name(&account)))?;
        // Batches never join: each start is a workflow of its own.
        let record = workflow_insert_in_txn(&mut tx, ctx, &start, None, None).await?;
        self.commit_change(
            tx,
            ctx,
            idempotency,
            Answer::Workflow(&record.id),
            Event {
                account: &account,
                resource: &name,
                detail: format!("started operations/{} (batch ensure of {name})", record.id),
            },
        )
        .await?;
        Ok(RetireStart::Started(Box::new(record)))
    }

    pub(crate) async fn workflow_cancel_impl(
        &self,
        ctx: &RequestContext,
        workflow_id: &str,
    ) -> Result<WorkflowRecord> {
        let name = format!("operations/{workflow_id}");
        let mut tx = begin_scoped(&self.pool, ctx).await?;
        // Row-level security hides another tenant's row on Postgres; the
        // visibility check below is the wall on SQLite.
        let record = workflow_select_in_txn(&mut tx, workflow_id)
            .await?
            .ok_or_else(|| Error::not_found(name.clone()))?;
        ctx.check_visible(&record.target.account_id, &name)?;
        ctx.check_role(Role::Operator, "CancelOperation")?;
        if let Some(why) = not_cancellable(record.kind) {
            return Err(Error::failed_precondition(
                Reason::FailedPrecondition,
                format!("{name}: {why}"),
            ));
        }
        // A finished workflow stays as it finished.
        if record.done() {
            tx.commit().await.map_err(db_error)?;
            return Ok(record);
        }
        // A second request changes nothing (and writes no second event).
        let updated = sqlx::query_as::<_, WorkflowRow>(sqlx::AssertSqlSafe(format!(
            "UPDATE workflows SET cancel_requested = $2, update_time = $3 \
             WHERE workflow_id = $1 AND cancel_requested = $4 RETURNING {WORKFLOW_COLUMNS}"
        )))
        .bind(workflow_id)
        .bind(true)
        .bind(now())
        .bind(false)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some(updated) = updated else {
            tx.commit().await.map_err(db_error)?;
            return Ok(record);
        };
        let record = updated.into_record()?;
        audit_in_txn(
            &mut tx,
            ctx,
            &record.target.account_id,
            &name,
            "OK",
            format!("cancel requested for {name}"),
        )
        .await?;
        commit_audited(tx, ctx).await?;
        Ok(record)
    }

    pub(crate) async fn workflow_cancel_requested_impl(
        &self,
        ctx: &RequestContext,
        workflow_id: &str,
    ) -> Result<bool> {
        let name = format!("operations/{workflow_id}");
        ctx.check_role(Role::Admin, "read a workflow's cancel request")?;
        let row: Option<(String, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(scoped_sql(
            "SELECT account_id, cancel_requested FROM workflows WHERE workflow_id = $1",
            2,
        )))
        .bind(workflow_id)
        .bind(scope_setting(ctx))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        let (account, requested) = row.ok_or_else(|| Error::not_found(name.clone()))?;
        let account = slrgov_domain::types::AccountId::parse(&account)
            .map_err(|e| crate::error::corrupt("workflows.account_id", e))?;
        ctx.check_visible(&account, &name)?;
        Ok(requested)
    }
}
