//! Instances: the Connect instances of each account, as registered.

use async_trait::async_trait;
use slrgov_domain::filter::InstanceFilter;
use slrgov_domain::model::{
    ConnectView, Instance, InstancePatch, LinkedRoleState, NewInstance, legacy_cutoff,
};
use slrgov_domain::names::{AccountSelector, InstanceKey, account_name};
use slrgov_domain::types::{InstanceAlias, Revision};
use slrgov_domain::workflow::{NewWorkflow, WorkflowRecord};
use slrgov_domain::{Error, Reason, RequestContext, Result, Role};
use sqlx::types::Json;
use tracing::Instrument;

use super::request_ids::{Answer, Event, response_json};
use super::rows::{INSTANCE_COLUMNS, InstanceRow};
use super::txn::{
    Keyset, account_select_in_txn, begin_scoped, check_revision, instance_lock_in_txn,
    instance_partition_violations, instance_select_in_txn, list_page, scope_setting,
};
use super::workflows::workflow_insert_done_in_txn;
use super::{EngineStore, scoped_sql};
use crate::engine::{now, to_micros};
use crate::error::{db_error, is_foreign_key_violation, is_unique_violation};
use crate::page_token::query_digest;
use crate::{Idempotency, InstanceStore, Page, PageRequest, WorkflowStore};

#[async_trait]
impl InstanceStore for EngineStore {
    async fn instance_create(
        &self,
        ctx: &RequestContext,
        new: NewInstance,
        idempotency: Option<&Idempotency>,
    ) -> Result<Instance> {
        async move {
            let name = new.key.name();
            let parent = account_name(&new.key.account_id);
            ctx.check_visible(&new.key.account_id, &parent)?;
            ctx.check_role(Role::Operator, "CreateInstance")?;

            let now = now();
            let instance = Instance {
                account_id: new.key.account_id.clone(),
                instance_id: new.key.instance_id.clone(),
                instance_alias: new.fields.instance_alias,
                region: new.region,
                instance_create_time: new.fields.instance_create_time.map(to_micros),
                features: new.fields.features,
                linked_role_state: LinkedRoleState::Absent,
                connect: ConnectView::default(),
                create_time: now,
                update_time: now,
                revision: Revision(1),
            };
            let detail = format!(
                "created the instance in {} with features {}",
                instance.region,
                serde_json::to_string(&instance.features).unwrap_or_default()
            );
            if idempotency.is_none()
                && self.instance_create_direct(ctx, &instance, &detail).await?
            {
                return Ok(instance);
            }

            let mut tx = begin_scoped(&self.pool, ctx).await?;
            if let Some(first) = self
                .request_id_claim_in_txn(&mut tx, ctx, &new.key.account_id, idempotency)
                .await?
            {
                return first.response();
            }
            let account = account_select_in_txn(&mut tx, &new.key.account_id, false)
                .await?
                .ok_or_else(|| Error::not_found(parent.clone()))?;
            let violations = instance_partition_violations(&instance, account.partition);
            if !violations.is_empty() {
                return Err(Error::invalid_fields(violations));
            }
            let inserted = sqlx::query(
                "INSERT INTO instances (account_id, instance_id, instance_alias, region, \
                 instance_create_time, features, linked_role_state, revision, create_time, update_time) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8)",
            )
            .bind(instance.account_id.as_str())
            .bind(instance.instance_id.as_str())
            .bind(instance.instance_alias.as_ref().map(InstanceAlias::as_str))
            .bind(instance.region.as_str())
            .bind(instance.instance_create_time)
            .bind(Json(&instance.features))
            .bind(instance.linked_role_state.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Err(Error::already_exists(name)),
                Err(e) if is_foreign_key_violation(&e) => return Err(Error::not_found(parent)),
                Err(e) => return Err(db_error(e)),
            }
            self.commit_change(
                tx,
                ctx,
                idempotency,
                Answer::Response(response_json(&instance)?),
                Event {
                    account: &instance.account_id,
                    resource: &name,
                    detail,
                },
            )
            .await?;
            Ok(instance)
        }
        .instrument(db_span!("instance_create"))
        .await
    }

    async fn instance_get(&self, ctx: &RequestContext, key: &InstanceKey) -> Result<Instance> {
        async move {
            let name = key.name();
            ctx.check_visible(&key.account_id, &name)?;
            ctx.check_role(Role::Viewer, "GetInstance")?;
            let sql = scoped_sql(
                &format!(
                    "SELECT {INSTANCE_COLUMNS} FROM instances WHERE account_id = $1 AND instance_id = $2"
                ),
                3,
            );
            sqlx::query_as::<_, InstanceRow>(sqlx::AssertSqlSafe(sql))
                .bind(key.account_id.as_str())
                .bind(key.instance_id.as_str())
                .bind(scope_setting(ctx))
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?
                .ok_or_else(|| Error::not_found(name))?
                .into_instance()
        }
        .instrument(db_span!("instance_get"))
        .await
    }

    async fn instance_list(
        &self,
        ctx: &RequestContext,
        parent: &AccountSelector,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<Instance>> {
        async move {
            if let AccountSelector::One(account) = parent {
                ctx.check_visible(account, &account_name(account))?;
            }
            ctx.check_role(Role::Viewer, "ListInstances")?;
            let parent_text = parent.to_string();
            let filter_text = filter.canonical();
            let digest = query_digest(&[
                "ListInstances",
                &parent_text,
                &filter_text,
                &ctx.caller().principal,
            ]);
            let page = list_page(
                &self.pool,
                &self.page_tokens,
                ctx,
                page,
                &digest,
                Keyset {
                    select: format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE 1 = 1"),
                    scoped: true,
                    key: &["account_id", "instance_id"],
                    descending: false,
                    fixed: usize::from(matches!(parent, AccountSelector::One(_))),
                },
                |query| {
                    if let AccountSelector::One(account) = parent {
                        query.push(" AND account_id = ");
                        query.push_bind(account.as_str().to_owned());
                    }
                    if let Some(region) = &filter.region {
                        query.push(" AND region = ");
                        query.push_bind(region.as_str().to_owned());
                    }
                    if let Some(state) = filter.linked_role_state {
                        query.push(" AND linked_role_state = ");
                        query.push_bind(state.as_str());
                    }
                    if let Some(status) = filter.connect_status {
                        query.push(" AND connect_status = ");
                        query.push_bind(status.as_str());
                    }
                    if let Some(state) = filter.observed_state {
                        query.push(" AND observed_state = ");
                        query.push_bind(state.as_str());
                    }
                    match filter.legacy {
                        Some(true) => {
                            query.push(" AND instance_create_time < ");
                            query.push_bind(legacy_cutoff());
                        }
                        Some(false) => {
                            query.push(
                                " AND (instance_create_time IS NULL OR instance_create_time >= ",
                            );
                            query.push_bind(legacy_cutoff());
                            query.push(")");
                        }
                        None => {}
                    }
                },
                InstanceRow::into_instance,
                |last| vec![last.account_id.to_string(), last.instance_id.to_string()],
            )
            .await?;
            // A page with instances shows that their account exists: only
            // an empty one asks whether the parent is there at all
            // (NOT_FOUND), a round trip the common page does without.
            if page.items.is_empty() {
                self.check_list_parent(ctx, parent).await?;
            }
            Ok(page)
        }
        .instrument(db_span!("instance_list"))
        .await
    }

    async fn instance_update(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        expected: Option<Revision>,
        patch: InstancePatch,
        idempotency: Option<&Idempotency>,
    ) -> Result<Instance> {
        async move {
            let name = key.name();
            ctx.check_visible(&key.account_id, &name)?;
            ctx.check_role(Role::Operator, "UpdateInstance")?;
            if idempotency.is_none()
                && let Some(updated) = self
                    .instance_update_direct(ctx, key, expected, &patch)
                    .await?
            {
                return Ok(updated);
            }

            let mut tx = begin_scoped(&self.pool, ctx).await?;
            if let Some(first) = self
                .request_id_claim_in_txn(&mut tx, ctx, &key.account_id, idempotency)
                .await?
            {
                return first.response();
            }
            let mut instance = instance_select_in_txn(&mut tx, key)
                .await?
                .ok_or_else(|| Error::not_found(name.clone()))?;
            check_revision(expected, instance.revision, &name)?;
            let account = account_select_in_txn(&mut tx, &key.account_id, false)
                .await?
                .ok_or_else(|| Error::not_found(name.clone()))?;
            let patch_text = patch.describe();
            patch.apply(&mut instance);
            instance.instance_create_time = instance.instance_create_time.map(to_micros);
            let violations = instance_partition_violations(&instance, account.partition);
            if !violations.is_empty() {
                return Err(Error::invalid_fields(violations));
            }
            let row = sqlx::query_as::<_, InstanceRow>(sqlx::AssertSqlSafe(format!(
                "UPDATE instances SET instance_alias = $3, instance_create_time = $4, features = $5, \
                 revision = revision + 1, update_time = $6 \
                 WHERE account_id = $1 AND instance_id = $2 RETURNING {INSTANCE_COLUMNS}"
            )))
            .bind(key.account_id.as_str())
            .bind(key.instance_id.as_str())
            .bind(instance.instance_alias.as_ref().map(InstanceAlias::as_str))
            .bind(instance.instance_create_time)
            .bind(Json(&instance.features))
            .bind(now())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
            let updated = row.into_instance()?;
            self.commit_change(
                tx,
                ctx,
                idempotency,
                Answer::Response(response_json(&updated)?),
                Event {
                    account: &key.account_id,
                    resource: &name,
                    detail: format!("updated the instance: {patch_text}"),
                },
            )
            .await?;
            Ok(updated)
        }
        .instrument(db_span!("instance_update"))
        .await
    }

    async fn instance_delete(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        expected: Option<Revision>,
        done: NewWorkflow,
        idempotency: Option<&Idempotency>,
    ) -> Result<WorkflowRecord> {
        async move {
            let name = key.name();
            ctx.check_visible(&key.account_id, &name)?;
            ctx.check_role(Role::Operator, "DeleteInstance")?;
            let mut tx = begin_scoped(&self.pool, ctx).await?;
            if let Some(first) = self
                .request_id_claim_in_txn(&mut tx, ctx, &key.account_id, idempotency)
                .await?
            {
                let id = first.workflow()?;
                drop(tx);
                return self.workflow_get(ctx, &id).await;
            }
            let instance = instance_lock_in_txn(&mut tx, key).await?;
            check_revision(expected, instance.revision, &name)?;
            if !matches!(
                instance.linked_role_state,
                LinkedRoleState::Absent | LinkedRoleState::Deleted
            ) {
                return Err(Error::failed_precondition(
                    Reason::LinkedRoleNotRetired,
                    format!(
                        "the linked role of {name} is {}: retire it before removing the record",
                        instance.linked_role_state
                    ),
                )
                .with_metadata("resource", name));
            }
            sqlx::query("DELETE FROM instances WHERE account_id = $1 AND instance_id = $2")
                .bind(key.account_id.as_str())
                .bind(key.instance_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            // The operation DeleteInstance answers with, finished at once,
            // in the same transaction as the delete.
            let record = workflow_insert_done_in_txn(&mut tx, ctx, &done).await?;
            self.commit_change(
                tx,
                ctx,
                idempotency,
                Answer::Workflow(&record.id),
                Event {
                    account: &key.account_id,
                    resource: &name,
                    detail: format!("removed the instance record (operations/{})", record.id),
                },
            )
            .await?;
            Ok(record)
        }
        .instrument(db_span!("instance_delete"))
        .await
    }
}
