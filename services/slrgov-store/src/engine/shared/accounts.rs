//! Accounts: where the service acts, and how it reaches them (STS role
//! and external id, which never leaves the service except towards STS).

use async_trait::async_trait;
use slrgov_domain::model::{
    Account, AccountAccess, AccountPatch, ExternalId, ExternalIdChange, NewAccount,
};
use slrgov_domain::names::account_name;
use slrgov_domain::types::{AccountId, Arn, Partition, Revision, parse_access_role_arn};
use slrgov_domain::{Error, Reason, RequestContext, Result, Role};
use tracing::Instrument;

use super::direct::external_id_word;
use super::request_ids::{Answer, Event, response_json};
use super::rows::{ACCOUNT_COLUMNS, AccountRow};
use super::txn::{
    Keyset, account_select_in_txn, audit_in_txn, begin_scoped, check_revision, commit_audited,
    list_page, scope_setting,
};
use super::{EngineStore, scoped_sql};
use crate::engine::now;
use crate::error::{corrupt, db_error, is_foreign_key_violation, is_unique_violation};
use crate::page_token::query_digest;
use crate::{AccountStore, Idempotency, Page, PageRequest};

#[async_trait]
impl AccountStore for EngineStore {
    async fn account_create(
        &self,
        ctx: &RequestContext,
        new: NewAccount,
        idempotency: Option<&Idempotency>,
    ) -> Result<Account> {
        async move {
            let name = account_name(&new.account_id);
            ctx.check_visible(&new.account_id, &name)?;
            ctx.check_role(Role::Admin, "CreateAccount")?;
            if let Some(arn) = &new.fields.access_role_arn {
                parse_access_role_arn(arn.as_str(), new.fields.partition, &new.account_id)
                    .map_err(|e| e.on("account.access_role_arn"))?;
            }

            let mut tx = begin_scoped(&self.pool, ctx).await?;
            if let Some(first) = self
                .request_id_claim_in_txn(&mut tx, ctx, &new.account_id, idempotency)
                .await?
            {
                return first.response();
            }
            let now = now();
            let inserted = sqlx::query(
                "INSERT INTO accounts (account_id, display_name, partition, access_role_arn, \
                 external_id, revision, create_time, update_time) \
                 VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
            )
            .bind(new.account_id.as_str())
            .bind(&new.fields.display_name)
            .bind(new.fields.partition.as_str())
            .bind(new.fields.access_role_arn.as_ref().map(Arn::as_str))
            .bind(new.external_id.as_ref().map(|e| e.expose()))
            .bind(now)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Err(Error::already_exists(name)),
                Err(e) => return Err(db_error(e)),
            }
            let account = Account {
                account_id: new.account_id.clone(),
                display_name: new.fields.display_name,
                partition: new.fields.partition,
                access_role_arn: new.fields.access_role_arn,
                external_id_set: new.external_id.is_some(),
                create_time: now,
                update_time: now,
                revision: Revision(1),
            };
            self.commit_change(
                tx,
                ctx,
                idempotency,
                Answer::Response(response_json(&account)?),
                Event {
                    account: &new.account_id,
                    resource: &account_name(&new.account_id),
                    detail: format!(
                        "created the account: display_name {:?}, partition {}, access_role_arn {}, external_id {}",
                        account.display_name,
                        account.partition,
                        account.access_role_arn.as_ref().map_or("unset", Arn::as_str),
                        if account.external_id_set { "set" } else { "unset" },
                    ),
                },
            )
            .await?;
            Ok(account)
        }
        .instrument(db_span!("account_create"))
        .await
    }

    async fn account_get(&self, ctx: &RequestContext, account: &AccountId) -> Result<Account> {
        async move {
            let name = account_name(account);
            ctx.check_visible(account, &name)?;
            ctx.check_role(Role::Viewer, "GetAccount")?;
            let sql = scoped_sql(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = $1"),
                2,
            );
            sqlx::query_as::<_, AccountRow>(sqlx::AssertSqlSafe(sql))
                .bind(account.as_str())
                .bind(scope_setting(ctx))
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?
                .ok_or_else(|| Error::not_found(name))?
                .into_account()
        }
        .instrument(db_span!("account_get"))
        .await
    }

    async fn account_list(
        &self,
        ctx: &RequestContext,
        page: &PageRequest,
    ) -> Result<Page<Account>> {
        async move {
            ctx.check_role(Role::Viewer, "ListAccounts")?;
            let digest = query_digest(&["ListAccounts", &ctx.caller().principal]);
            list_page(
                &self.pool,
                &self.page_tokens,
                ctx,
                page,
                &digest,
                Keyset {
                    select: format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE 1 = 1"),
                    scoped: true,
                    key: &["account_id"],
                    descending: false,
                    fixed: 0,
                },
                |_| {},
                AccountRow::into_account,
                |last| vec![last.account_id.to_string()],
            )
            .await
        }
        .instrument(db_span!("account_list"))
        .await
    }

    async fn account_update(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
        expected: Option<Revision>,
        patch: AccountPatch,
    ) -> Result<Account> {
        async move {
            let name = account_name(account);
            ctx.check_visible(account, &name)?;
            ctx.check_role(Role::Admin, "UpdateAccount")?;
            if let Some(updated) = self
                .account_update_direct(ctx, account, expected, &patch)
                .await?
            {
                return Ok(updated);
            }

            let mut tx = begin_scoped(&self.pool, ctx).await?;
            let mut current = account_select_in_txn(&mut tx, account, true)
                .await?
                .ok_or_else(|| Error::not_found(name.clone()))?;
            check_revision(expected, current.revision, &name)?;

            if let Some(display_name) = patch.display_name {
                current.display_name = display_name;
            }
            if let Some(arn) = patch.access_role_arn {
                current.access_role_arn = arn
                    .map(|arn| parse_access_role_arn(&arn, current.partition, account))
                    .transpose()
                    .map_err(|e| e.on("account.access_role_arn"))?;
            }
            let (set_external_id, external_id) = match &patch.external_id {
                ExternalIdChange::Keep => (false, None),
                ExternalIdChange::Set(id) => (true, Some(id.expose())),
                ExternalIdChange::Clear => (true, None),
            };
            let now = now();
            let row = sqlx::query_as::<_, AccountRow>(sqlx::AssertSqlSafe(format!(
                "UPDATE accounts SET display_name = $2, access_role_arn = $3, \
                 external_id = CASE WHEN $4 THEN $5 ELSE external_id END, \
                 revision = revision + 1, update_time = $6 \
                 WHERE account_id = $1 RETURNING {ACCOUNT_COLUMNS}"
            )))
            .bind(account.as_str())
            .bind(&current.display_name)
            .bind(current.access_role_arn.as_ref().map(Arn::as_str))
            .bind(set_external_id)
            .bind(external_id)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
            let updated = row.into_account()?;
            audit_in_txn(
                &mut tx,
                ctx,
                account,
                &name,
                "OK",
                // The direct path's words (`to_json` there).
                format!(
                    "updated the account: display_name {}, access_role_arn {}, external_id {}",
                    serde_json::Value::from(updated.display_name.as_str()),
                    updated
                        .access_role_arn
                        .as_ref()
                        .map_or("unset", Arn::as_str),
                    external_id_word(&patch.external_id),
                ),
            )
            .await?;
            commit_audited(tx, ctx).await?;
            Ok(updated)
        }
        .instrument(db_span!("account_update"))
        .await
    }

    async fn account_delete(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
        expected: Option<Revision>,
    ) -> Result<()> {
        async move {
            let name = account_name(account);
            ctx.check_visible(account, &name)?;
            ctx.check_role(Role::Admin, "DeleteAccount")?;

            let mut tx = begin_scoped(&self.pool, ctx).await?;
            let current = account_select_in_txn(&mut tx, account, true)
                .await?
                .ok_or_else(|| Error::not_found(name.clone()))?;
            check_revision(expected, current.revision, &name)?;
            let instances: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM instances WHERE account_id = $1")
                    .bind(account.as_str())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_error)?;
            let has_instances = || {
                Error::failed_precondition(
                    Reason::AccountHasInstances,
                    format!("{name} still has instances: delete them first"),
                )
                .with_metadata("resource", name.clone())
            };
            if instances > 0 {
                return Err(has_instances().with_metadata("instances", instances.to_string()));
            }
            sqlx::query("DELETE FROM request_ids WHERE account_id = $1")
                .bind(account.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            match sqlx::query("DELETE FROM accounts WHERE account_id = $1")
                .bind(account.as_str())
                .execute(&mut *tx)
                .await
            {
                Ok(_) => {}
                // An instance inserted concurrently: the foreign key is the backstop.
                Err(e) if is_foreign_key_violation(&e) => return Err(has_instances()),
                Err(e) => return Err(db_error(e)),
            }
            // The trail outlives the account: its events stay.
            audit_in_txn(
                &mut tx,
                ctx,
                account,
                &name,
                "OK",
                "deleted the account".to_owned(),
            )
            .await?;
            tx.commit().await.map_err(|e| {
                if is_foreign_key_violation(&e) {
                    has_instances()
                } else {
                    db_error(e)
                }
            })?;
            ctx.audit.written();
            Ok(())
        }
        .instrument(db_span!("account_delete"))
        .await
    }

    async fn account_access(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
    ) -> Result<AccountAccess> {
        async move {
            let name = account_name(account);
            ctx.check_visible(account, &name)?;
            // Reads (inspections) act in the account too; the external id never
            // leaves the service (it goes to STS only).
            ctx.check_role(Role::Viewer, "act in the account")?;
            let sql = scoped_sql(
                "SELECT partition, access_role_arn, external_id FROM accounts WHERE account_id = $1",
                2,
            );
            let row: Option<(String, Option<String>, Option<String>)> =
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(account.as_str())
                    .bind(scope_setting(ctx))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_error)?;
            let (partition, access_role_arn, external_id) =
                row.ok_or_else(|| Error::not_found(name))?;
            Ok(AccountAccess {
                account_id: account.clone(),
                partition: Partition::parse(&partition)
                    .map_err(|e| corrupt("accounts.partition", e))?,
                access_role_arn,
                external_id: external_id.map(ExternalId::new),
            })
        }
        .instrument(db_span!("account_access"))
        .await
    }
}
