//! The writes of a retirement (RetireLinkedRole, and DeleteInstance of an
//! instance with a role): its start, the deletion task IAM started, the
//! role recorded DELETED (and the instance removed), and its undo.

use slrgov_domain::model::{LinkedRole, LinkedRoleState};
use slrgov_domain::names::InstanceKey;
use slrgov_domain::types::Revision;
use slrgov_domain::workflow::{NewWorkflow, WorkflowKind};
use slrgov_domain::{Error, Reason, RequestContext, Result, Role};
use sqlx::types::Json;

use super::EngineStore;
use super::linked_roles::{check_sole_owner_in_txn, linked_role_set_state_in_txn};
use super::request_ids::{Answer, Event};
use super::txn::{
    audit_in_txn, begin_scoped, check_revision, commit_audited, instance_lock_in_txn,
    instance_select_in_txn, linked_role_select_in_txn,
};
use super::workflows::{fence_in_txn, workflow_insert_in_txn, workflow_running_in_txn};
use crate::engine::now;
use crate::error::db_error;
use crate::{Fence, Idempotency, RestoredRole, RetireStart};

impl EngineStore {
    pub(crate) async fn retire_begin(
        &self,
        ctx: &RequestContext,
        start: NewWorkflow,
        expected: Option<Revision>,
        idempotency: Option<&Idempotency>,
    ) -> Result<RetireStart> {
        let key = start
            .target
            .key()
            .ok_or_else(|| Error::internal("internal error: a retirement of no instance"))?;
        let name = key.linked_role_name();
        ctx.check_visible(&key.account_id, &name)?;
        ctx.check_role(Role::Operator, "RetireLinkedRole")?;
        let mut tx = begin_scoped(&self.pool, ctx).await?;
        if let Some(first) = self
            .request_id_claim_in_txn(&mut tx, ctx, &key.account_id, idempotency)
            .await?
        {
            return Ok(RetireStart::Replayed(first));
        }
        instance_lock_in_txn(&mut tx, &key).await?;
        if let Some(running) = workflow_running_in_txn(&mut tx, &key).await? {
            if running.kind != start.kind {
                return Err(Error::operation_in_progress(name, running.kind.as_str()));
            }
            // Retiring again while IAM deletes returns the same operation.
            self.request_id_answer_in_txn(
                &mut tx,
                ctx,
                &key.account_id,
                idempotency,
                Answer::Workflow(&running.id),
            )
            .await?;
            tx.commit().await.map_err(db_error)?;
            return Ok(RetireStart::Started(Box::new(running)));
        }
        let row = linked_role_select_in_txn(&mut tx, &key).await?;
        let Some(row) = row.filter(|r| r.state == "ACTIVE" || r.state == "DELETION_FAILED") else {
            return Err(Error::failed_precondition(
                Reason::FailedPrecondition,
                format!("{name} has no role to retire (it is not ACTIVE or DELETION_FAILED)"),
            ));
        };
        check_revision(expected, Revision(row.revision), &name)?;
        // The workflow deletes the role its caller saw: a record that
        // changed since is a stale read.
        let planned = start.inputs.get("role_name").and_then(|n| n.as_str());
        let role = row.into_linked_role()?;
        if planned.is_some_and(|planned| Some(planned) != role.role_name.as_deref()) {
            return Err(Error::etag_mismatch(name));
        }
        // One role serves one instance record: never retire a role another
        // record still holds.
        if let Some(arn) = &role.role_arn {
            check_sole_owner_in_txn(&mut tx, &key, arn, || {
                Error::failed_precondition(
                    Reason::RoleOwnedElsewhere,
                    "another instance record still references this role: retire refused",
                )
            })
            .await?;
        }
        sqlx::query(
            "UPDATE linked_roles SET deletion_task_id = NULL WHERE account_id = $1 AND instance_id = $2",
        )
        .bind(key.account_id.as_str())
        .bind(key.instance_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        linked_role_set_state_in_txn(&mut tx, &key, LinkedRoleState::Deleting).await?;
        let record = workflow_insert_in_txn(&mut tx, ctx, &start, None, None).await?;
        self.commit_change(
            tx,
            ctx,
            idempotency,
            Answer::Workflow(&record.id),
            Event {
                account: &key.account_id,
                resource: &name,
                detail: format!(
                    "started operations/{} ({}): the role goes DELETING",
                    record.id, record.kind
                ),
            },
        )
        .await?;
        Ok(RetireStart::Started(Box::new(record)))
    }

    pub(crate) async fn retire_task(
        &self,
        ctx: &RequestContext,
        fence: &Fence,
        key: &InstanceKey,
        task_id: &str,
    ) -> Result<()> {
        ctx.check_visible(&key.account_id, &key.linked_role_name())?;
        ctx.check_role(Role::Operator, "RetireLinkedRole")?;
        let mut tx = begin_scoped(&self.pool, ctx).await?;
        instance_lock_in_txn(&mut tx, key).await?;
        fence_in_txn(&mut tx, fence, key).await?;
        // A visible field changes: the etag moves (AIP-154).
        sqlx::query(
            "UPDATE linked_roles SET deletion_task_id = $3, revision = revision + 1, \
             update_time = $4 WHERE account_id = $1 AND instance_id = $2 \
             AND (deletion_task_id IS NULL OR deletion_task_id <> $3)",
        )
        .bind(key.account_id.as_str())
        .bind(key.instance_id.as_str())
        .bind(task_id)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        audit_in_txn(
            &mut tx,
            ctx,
            &key.account_id,
            &key.linked_role_name(),
            "OK",
            format!("iam is deleting the role (task {task_id})"),
        )
        .await?;
        commit_audited(tx, ctx).await
    }

    pub(crate) async fn retire_end(
        &self,
        ctx: &RequestContext,
        fence: &Fence,
        key: &InstanceKey,
        kind: WorkflowKind,
    ) -> Result<Option<LinkedRole>> {
        let name = key.linked_role_name();
        ctx.check_visible(&key.account_id, &name)?;
        ctx.check_role(Role::Operator, "RetireLinkedRole")?;
        let mut tx = begin_scoped(&self.pool, ctx).await?;
        // Run twice, the step ends in the same state: a removed record
        // stays removed, a DELETED one stays as it is.
        if instance_select_in_txn(&mut tx, key).await?.is_none() {
            return Ok(None);
        }
        let row = linked_role_select_in_txn(&mut tx, key).await?;
        if let Some(row) = row.filter(|r| r.state == "DELETED")
            && kind == WorkflowKind::Retire
        {
            return row.into_linked_role().map(Some);
        }
        fence_in_txn(&mut tx, fence, key).await?;
        sqlx::query(
            "UPDATE linked_roles SET deletion_failure = NULL WHERE account_id = $1 AND instance_id = $2",
        )
        .bind(key.account_id.as_str())
        .bind(key.instance_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let role = linked_role_set_state_in_txn(&mut tx, key, LinkedRoleState::Deleted).await?;
        let (result, detail) = if kind == WorkflowKind::Delete {
            // The role is gone: the record goes too (with its linked role
            // row, by cascade).
            sqlx::query("DELETE FROM instances WHERE account_id = $1 AND instance_id = $2")
                .bind(key.account_id.as_str())
                .bind(key.instance_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            (None, "the role was deleted and the instance removed")
        } else {
            (Some(role), "the role was deleted")
        };
        audit_in_txn(
            &mut tx,
            ctx,
            &key.account_id,
            &name,
            "OK",
            format!("operations/{}: {detail}", fence.workflow_id),
        )
        .await?;
        commit_audited(tx, ctx).await?;
        Ok(result)
    }

    pub(crate) async fn retire_undo(
        &self,
        ctx: &RequestContext,
        fence: &Fence,
        key: &InstanceKey,
        restored: RestoredRole,
    ) -> Result<LinkedRole> {
        let name = key.linked_role_name();
        ctx.check_visible(&key.account_id, &name)?;
        ctx.check_role(Role::Operator, "RetireLinkedRole")?;
        let mut tx = begin_scoped(&self.pool, ctx).await?;
        let instance = instance_lock_in_txn(&mut tx, key).await?;
        let Some(row) = linked_role_select_in_txn(&mut tx, key).await? else {
            return Ok(LinkedRole::absent(&instance));
        };
        // Run twice, the step ends in the same state.
        if row.state != "DELETING" {
            return row.into_linked_role();
        }
        fence_in_txn(&mut tx, fence, key).await?;
        let (state, failure, detail) = match &restored {
            RestoredRole::Active => (
                LinkedRoleState::Active,
                None,
                "the retirement was undone: the role is still in IAM, ACTIVE again".to_owned(),
            ),
            RestoredRole::DeletionFailed(failure) => (
                LinkedRoleState::DeletionFailed,
                Some(failure),
                format!("iam could not delete the role: {}", failure.reason),
            ),
            RestoredRole::Deleted => (
                LinkedRoleState::Deleted,
                None,
                "the retirement was undone, but IAM has no role any more: DELETED".to_owned(),
            ),
        };
        // A role back to ACTIVE has no deletion under way any more.
        sqlx::query(
            "UPDATE linked_roles SET deletion_failure = $3, update_time = $4, \
             deletion_task_id = CASE WHEN $5 THEN NULL ELSE deletion_task_id END \
             WHERE account_id = $1 AND instance_id = $2",
        )
        .bind(key.account_id.as_str())
        .bind(key.instance_id.as_str())
        .bind(failure.map(Json))
        .bind(now())
        .bind(state == LinkedRoleState::Active)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let role = linked_role_set_state_in_txn(&mut tx, key, state).await?;
        audit_in_txn(
            &mut tx,
            ctx,
            &key.account_id,
            &name,
            if failure.is_some() {
                "FAILED_PRECONDITION"
            } else {
                "OK"
            },
            format!("operations/{}: {detail}", fence.workflow_id),
        )
        .await?;
        commit_audited(tx, ctx).await?;
        Ok(role)
    }
}
