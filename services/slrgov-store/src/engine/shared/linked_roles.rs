//! Linked roles: the record of each instance's role, and the writes the
//! ensure workflow makes to it (its start, the role recorded ACTIVE, its
//! undo). The retirement's writes are in `retirements.rs`.

use async_trait::async_trait;
use slrgov_domain::model::{LinkedRole, LinkedRoleState, ObservedRole};
use slrgov_domain::names::InstanceKey;
use slrgov_domain::types::{InstanceId, Revision};
use slrgov_domain::workflow::{NewWorkflow, Phase, WorkflowKind};
use slrgov_domain::{Error, Reason, RequestContext, Result, Role};
use tracing::Instrument;

use super::request_ids::{Answer, Event, response_json};
use super::rows::{LINKED_ROLE_COLUMNS, LinkedRoleRow};
use super::txn::{
    Tx, audit_in_txn, begin_scoped, check_revision, commit_audited, instance_lock_in_txn,
    instance_set_role_state_in_txn, linked_role_select_in_txn, scope_setting,
};
use super::workflows::{
    fence_in_txn, held_by_other, lease_from_now, workflow_insert_in_txn, workflow_running_in_txn,
    workflow_select_in_txn, workflow_take_in_txn,
};
use super::{EngineStore, scoped_sql};
use crate::engine::{now, to_micros};
use crate::error::{db_error, is_unique_violation};
use crate::{
    EnsureStart, Fence, Idempotency, InstanceStore, LinkedRoleStore, Replay, RestoredRole,
    RetireStart,
};

/// Sets a linked role's state (and the instance's copy of it), bumping its
/// revision, and returns the record.
pub(crate) async fn linked_role_set_state_in_txn(
    tx: &mut Tx,
    key: &InstanceKey,
    state: LinkedRoleState,
) -> Result<LinkedRole> {
    let row = sqlx::query_as::<_, LinkedRoleRow>(sqlx::AssertSqlSafe(format!(
        "UPDATE linked_roles SET state = $3, revision = revision + 1, update_time = $4 \
         WHERE account_id = $1 AND instance_id = $2 RETURNING {LINKED_ROLE_COLUMNS}"
    )))
    .bind(key.account_id.as_str())
    .bind(key.instance_id.as_str())
    .bind(state.as_str())
    .bind(now())
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)?;
    instance_set_role_state_in_txn(tx, key, state).await?;
    row.into_linked_role()
}

/// ROLE_OWNED_ELSEWHERE unless no other record that is not DELETED holds
/// `role_arn`: one role serves one instance record.
pub(crate) async fn check_sole_owner_in_txn(
    tx: &mut Tx,
    key: &InstanceKey,
    role_arn: &str,
    refused: impl FnOnce() -> Error,
) -> Result<()> {
    let others: Vec<(String,)> = sqlx::query_as(
        "SELECT instance_id FROM linked_roles WHERE role_arn = $1 AND state <> 'DELETED' \
         AND NOT (account_id = $2 AND instance_id = $3)",
    )
    .bind(role_arn)
    .bind(key.account_id.as_str())
    .bind(key.instance_id.as_str())
    .fetch_all(&mut **tx)
    .await
    .map_err(db_error)?;
    if others.is_empty() {
        Ok(())
    } else {
        Err(refused())
    }
}

fn owned_elsewhere(role_arn: &str) -> Error {
    Error::failed_precondition(
        Reason::RoleOwnedElsewhere,
        format!(
            "the role {role_arn} is recorded for another instance: one role serves one instance record"
        ),
    )
    .with_metadata("role_arn", role_arn.to_owned())
}

#[async_trait]
impl LinkedRoleStore for EngineStore {
    async fn linked_role_get(&self, ctx: &RequestContext, key: &InstanceKey) -> Result<LinkedRole> {
        async move {
            let instance = self.instance_get(ctx, key).await?;
            let sql = scoped_sql(
                &format!(
                    "SELECT {LINKED_ROLE_COLUMNS} FROM linked_roles WHERE account_id = $1 AND instance_id = $2"
                ),
                3,
            );
            let row = sqlx::query_as::<_, LinkedRoleRow>(sqlx::AssertSqlSafe(sql))
                .bind(key.account_id.as_str())
                .bind(key.instance_id.as_str())
                .bind(scope_setting(ctx))
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
            match row {
                Some(row) => row.into_linked_role(),
                None => Ok(LinkedRole::absent(&instance)),
            }
        }
        .instrument(db_span!("linked_role_get"))
        .await
    }

    async fn linked_role_begin_ensure(
        &self,
        ctx: &RequestContext,
        start: NewWorkflow,
        owner: &str,
        lease: std::time::Duration,
        idempotency: Option<&Idempotency>,
    ) -> Result<EnsureStart> {
        async move {
            let key = start.target.key().ok_or_else(|| {
            Error::internal("internal error: a retirement of no instance")
        })?;
            let name = key.linked_role_name();
            ctx.check_visible(&key.account_id, &name)?;
            ctx.check_role(Role::Operator, "EnsureLinkedRole")?;
            let mut tx = begin_scoped(&self.pool, ctx).await?;
            if let Some(first) = self
                .request_id_claim_in_txn(&mut tx, ctx, &key.account_id, idempotency)
                .await?
            {
                // A request whose ensure failed (and was undone) did not
                // use its id up: it starts again, pointing the id at the
                // new workflow.
                let failed = match &first {
                    Replay::Workflow(id) => workflow_select_in_txn(&mut tx, id)
                        .await?
                        .is_some_and(|w| w.phase == Phase::Failed),
                    Replay::Response(_) => false,
                };
                if !failed {
                    return Ok(EnsureStart::Replayed(first));
                }
            }
            instance_lock_in_txn(&mut tx, &key).await?;
            let row = linked_role_select_in_txn(&mut tx, &key).await?;
            let state = row
                .as_ref()
                .map(|r| LinkedRoleState::parse(&r.state))
                .unwrap_or(Some(LinkedRoleState::Absent));
            match (state, row) {
                (Some(LinkedRoleState::Active), Some(row)) => {
                    // Nothing to start; the caller confirms the role in IAM
                    // and records its answer (this claim rolls back).
                    return Ok(EnsureStart::Active(Box::new(row.into_linked_role()?)));
                }
                (Some(LinkedRoleState::Deleting), _) => {
                    return Err(Error::operation_in_progress(name, "a retirement"));
                }
                _ => {}
            }
            let (record, started) = match workflow_running_in_txn(&mut tx, &key).await? {
                Some(running) if running.kind != WorkflowKind::Ensure => {
                    return Err(Error::operation_in_progress(name, running.kind.as_str()));
                }
                // Held by another process, or let go by its holder until a
                // time (a step's backoff): waited for, not run early.
                Some(running)
                    if held_by_other(&running, owner)
                        || (running.lease_owner.as_deref() != Some(owner)
                            && running.not_before > now()) =>
                {
                    self.request_id_answer_in_txn(
                        &mut tx,
                        ctx,
                        &key.account_id,
                        idempotency,
                        Answer::Workflow(&running.id),
                    )
                    .await?;
                    tx.commit().await.map_err(db_error)?;
                    return Ok(EnsureStart::Running(Box::new(running)));
                }
                // Its holder's lease ran out (the process died): take it
                // over, with the inputs it was started with.
                Some(running) => (
                    workflow_take_in_txn(&mut tx, &running.id, owner, lease_from_now(lease))
                        .await?,
                    false,
                ),
                None => {
                    // A role that was DELETED (or never there) is history: the
                    // new ensure starts from a clean record, so the old ARN does
                    // not come back into the one-record-per-role index.
                    sqlx::query(
                        "INSERT INTO linked_roles (account_id, instance_id, state, revision, update_time) \
                         VALUES ($1, $2, 'CREATING', 1, $3) \
                         ON CONFLICT (account_id, instance_id) DO UPDATE SET state = 'CREATING', \
                         role_name = CASE WHEN linked_roles.state IN ('DELETED', 'ABSENT') THEN NULL ELSE linked_roles.role_name END, \
                         role_arn = CASE WHEN linked_roles.state IN ('DELETED', 'ABSENT') THEN NULL ELSE linked_roles.role_arn END, \
                         role_id = CASE WHEN linked_roles.state IN ('DELETED', 'ABSENT') THEN NULL ELSE linked_roles.role_id END, \
                         revision = linked_roles.revision + 1, update_time = $3",
                    )
                    .bind(key.account_id.as_str())
                    .bind(key.instance_id.as_str())
                    .bind(now())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    instance_set_role_state_in_txn(&mut tx, &key, LinkedRoleState::Creating)
                        .await?;
                    let record = workflow_insert_in_txn(
                        &mut tx,
                        ctx,
                        &start,
                        Some(owner),
                        Some(lease_from_now(lease)),
                    )
                    .await?;
                    (record, true)
                }
            };
            self.commit_change(
                tx,
                ctx,
                idempotency,
                Answer::Workflow(&record.id),
                Event {
                    account: &key.account_id,
                    resource: &name,
                    detail: format!(
                        "{} the ensure workflow operations/{} at step {} (inputs {})",
                        if started { "started" } else { "took over" },
                        record.id,
                        record.step,
                        record.inputs
                    ),
                },
            )
            .await?;
            Ok(EnsureStart::Claimed(Box::new(record)))
        }
        .instrument(db_span!("linked_role_begin_ensure"))
        .await
    }

    async fn linked_role_activate(
        &self,
        ctx: &RequestContext,
        fence: &Fence,
        key: &InstanceKey,
        observed: ObservedRole,
        adopted: bool,
        restored: bool,
    ) -> Result<LinkedRole> {
        async move {
            let name = key.linked_role_name();
            ctx.check_visible(&key.account_id, &name)?;
            ctx.check_role(Role::Operator, "EnsureLinkedRole")?;
            let mut tx = begin_scoped(&self.pool, ctx).await?;
            instance_lock_in_txn(&mut tx, key).await?;
            let row = linked_role_select_in_txn(&mut tx, key)
                .await?
                .ok_or_else(|| Error::operation_in_progress(name.clone(), "another ensure"))?;
            // Run twice, the step ends in the same state: the role is recorded.
            if row.state == "ACTIVE" && row.role_arn.as_deref() == Some(observed.role_arn.as_str())
            {
                return row.into_linked_role();
            }
            fence_in_txn(&mut tx, fence, key).await?;
            check_sole_owner_in_txn(&mut tx, key, &observed.role_arn, || {
                owned_elsewhere(&observed.role_arn)
            })
            .await?;
            let updated = sqlx::query_as::<_, LinkedRoleRow>(sqlx::AssertSqlSafe(format!(
                "UPDATE linked_roles SET state = 'ACTIVE', role_name = $3, role_arn = $4, role_id = $5, \
                 path = $6, description = $7, iam_create_time = $8, last_used_time = $9, \
                 last_used_region = $10, adopted = $11, deletion_task_id = NULL, deletion_failure = NULL, \
                 revision = revision + 1, update_time = $12, restored = $13 \
                 WHERE account_id = $1 AND instance_id = $2 RETURNING {LINKED_ROLE_COLUMNS}"
            )))
            .bind(key.account_id.as_str())
            .bind(key.instance_id.as_str())
            .bind(&observed.role_name)
            .bind(&observed.role_arn)
            .bind(&observed.role_id)
            .bind(&observed.path)
            .bind(&observed.description)
            .bind(observed.iam_create_time.map(to_micros))
            .bind(observed.last_used_time.map(to_micros))
            .bind(&observed.last_used_region)
            .bind(adopted)
            .bind(now())
            .bind(restored)
            .fetch_one(&mut *tx)
            .await;
            let updated = match updated {
                Ok(row) => row,
                // The unique index on role_arn: another record took it meanwhile.
                Err(e) if is_unique_violation(&e) => return Err(owned_elsewhere(&observed.role_arn)),
                Err(e) => return Err(db_error(e)),
            };
            instance_set_role_state_in_txn(&mut tx, key, LinkedRoleState::Active).await?;
            audit_in_txn(
                &mut tx,
                ctx,
                &key.account_id,
                &name,
                "OK",
                format!(
                    "recorded the role {} as ACTIVE ({})",
                    observed.role_arn,
                    if adopted {
                        "adopted: it existed in IAM"
                    } else {
                        "created by the service"
                    }
                ),
            )
            .await?;
            commit_audited(tx, ctx).await?;
            updated.into_linked_role()
        }
        .instrument(db_span!("linked_role_activate"))
        .await
    }

    async fn linked_role_held_elsewhere(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        role_name: &str,
    ) -> Result<Option<InstanceKey>> {
        async move {
            ctx.check_visible(&key.account_id, &key.linked_role_name())?;
            ctx.check_role(Role::Viewer, "GetLinkedRole")?;
            let sql = scoped_sql(
                "SELECT instance_id FROM linked_roles WHERE account_id = $1 AND role_name = $2 \
                 AND state <> 'DELETED' AND instance_id <> $3",
                4,
            );
            let holder: Option<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(key.account_id.as_str())
                .bind(role_name)
                .bind(key.instance_id.as_str())
                .bind(scope_setting(ctx))
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
            holder
                .map(|(instance,)| {
                    InstanceId::parse(&instance)
                        .map(|instance_id| InstanceKey {
                            account_id: key.account_id.clone(),
                            instance_id,
                        })
                        .map_err(|e| crate::error::corrupt("linked_roles.instance_id", e))
                })
                .transpose()
        }
        .instrument(db_span!("linked_role_held_elsewhere"))
        .await
    }

    async fn linked_role_abandon(
        &self,
        ctx: &RequestContext,
        fence: &Fence,
        key: &InstanceKey,
    ) -> Result<LinkedRole> {
        async move {
            let name = key.linked_role_name();
            ctx.check_visible(&key.account_id, &name)?;
            ctx.check_role(Role::Operator, "EnsureLinkedRole")?;
            let mut tx = begin_scoped(&self.pool, ctx).await?;
            let instance = instance_lock_in_txn(&mut tx, key).await?;
            let Some(row) = linked_role_select_in_txn(&mut tx, key).await? else {
                return Ok(LinkedRole::absent(&instance));
            };
            // Run twice, the step ends in the same state.
            if row.state != "CREATING" {
                return row.into_linked_role();
            }
            fence_in_txn(&mut tx, fence, key).await?;
            let role = linked_role_set_state_in_txn(&mut tx, key, LinkedRoleState::Absent).await?;
            audit_in_txn(
                &mut tx,
                ctx,
                &key.account_id,
                &name,
                "OK",
                "undid the start of the ensure workflow: back to ABSENT".to_owned(),
            )
            .await?;
            commit_audited(tx, ctx).await?;
            Ok(role)
        }
        .instrument(db_span!("linked_role_abandon"))
        .await
    }

    async fn linked_role_set_description(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        expected: Option<Revision>,
        description: &str,
        idempotency: Option<&Idempotency>,
    ) -> Result<LinkedRole> {
        async move {
            let name = key.linked_role_name();
            ctx.check_visible(&key.account_id, &name)?;
            ctx.check_role(Role::Operator, "UpdateLinkedRoleDescription")?;
            let mut tx = begin_scoped(&self.pool, ctx).await?;
            if let Some(first) = self
                .request_id_claim_in_txn(&mut tx, ctx, &key.account_id, idempotency)
                .await?
            {
                return first.response();
            }
            instance_lock_in_txn(&mut tx, key).await?;
            let row = linked_role_select_in_txn(&mut tx, key).await?;
            let Some(row) = row.filter(|r| r.state == "ACTIVE") else {
                return Err(Error::failed_precondition(
                    Reason::FailedPrecondition,
                    format!("{name} is not ACTIVE: ensure it first"),
                ));
            };
            check_revision(expected, Revision(row.revision), &name)?;
            let updated = sqlx::query_as::<_, LinkedRoleRow>(sqlx::AssertSqlSafe(format!(
                "UPDATE linked_roles SET description = $3, revision = revision + 1, update_time = $4 \
                 WHERE account_id = $1 AND instance_id = $2 RETURNING {LINKED_ROLE_COLUMNS}"
            )))
            .bind(key.account_id.as_str())
            .bind(key.instance_id.as_str())
            .bind(description)
            .bind(now())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?
            .into_linked_role()?;
            self.commit_change(
                tx,
                ctx,
                idempotency,
                Answer::Response(response_json(&updated)?),
                Event {
                    account: &key.account_id,
                    resource: &name,
                    detail: format!("recorded the new description {description:?}"),
                },
            )
            .await?;
            Ok(updated)
        }
        .instrument(db_span!("linked_role_set_description"))
        .await
    }

    async fn linked_role_begin_retire(
        &self,
        ctx: &RequestContext,
        start: NewWorkflow,
        expected: Option<Revision>,
        idempotency: Option<&Idempotency>,
    ) -> Result<RetireStart> {
        self.retire_begin(ctx, start, expected, idempotency)
            .instrument(db_span!("linked_role_begin_retire"))
            .await
    }

    async fn linked_role_deletion_started(
        &self,
        ctx: &RequestContext,
        fence: &Fence,
        key: &InstanceKey,
        task_id: &str,
    ) -> Result<()> {
        self.retire_task(ctx, fence, key, task_id)
            .instrument(db_span!("linked_role_deletion_started"))
            .await
    }

    async fn linked_role_retired(
        &self,
        ctx: &RequestContext,
        fence: &Fence,
        key: &InstanceKey,
        kind: WorkflowKind,
    ) -> Result<Option<LinkedRole>> {
        self.retire_end(ctx, fence, key, kind)
            .instrument(db_span!("linked_role_retired"))
            .await
    }

    async fn linked_role_restore(
        &self,
        ctx: &RequestContext,
        fence: &Fence,
        key: &InstanceKey,
        restored: RestoredRole,
    ) -> Result<LinkedRole> {
        self.retire_undo(ctx, fence, key, restored)
            .instrument(db_span!("linked_role_restore"))
            .await
    }
}
