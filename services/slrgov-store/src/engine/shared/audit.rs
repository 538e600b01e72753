//! The audit trail: append-only, newest first, outliving its account.

use async_trait::async_trait;
use slrgov_domain::audit::{AuditEvent, AuditFilter, NewAuditEvent};
use slrgov_domain::names::account_name;
use slrgov_domain::types::AccountId;
use slrgov_domain::{RequestContext, Result, Role};
use tracing::Instrument;

use super::EngineStore;
use super::rows::{AUDIT_COLUMNS, AuditRow};
use super::txn::{Keyset, audit_in_txn, begin_scoped, commit_audited, list_page};
use crate::page_token::query_digest;
use crate::{AuditStore, Page, PageRequest};

#[async_trait]
impl AuditStore for EngineStore {
    async fn audit_append(&self, ctx: &RequestContext, event: NewAuditEvent) -> Result<()> {
        async move {
            // Only a target the caller could see is ever recorded (the context
            // sets it in check_visible); check again, so that a failure event
            // can never land in another tenant's trail.
            ctx.check_visible(&event.account_id, &event.resource)?;
            let mut tx = begin_scoped(&self.pool, ctx).await?;
            audit_in_txn(
                &mut tx,
                ctx,
                &event.account_id,
                &event.resource,
                &event.outcome,
                event.detail,
            )
            .await?;
            commit_audited(tx, ctx).await
        }
        .instrument(db_span!("audit_append"))
        .await
    }

    async fn audit_list(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>> {
        async move {
            let parent = account_name(account);
            ctx.check_visible(account, &parent)?;
            ctx.check_role(Role::Viewer, "ListAuditEvents")?;
            let filter_text = filter.canonical();
            let digest = query_digest(&[
                "ListAuditEvents",
                &parent,
                &filter_text,
                &ctx.caller().principal,
            ]);
            list_page(
                &self.pool,
                &self.page_tokens,
                ctx,
                page,
                &digest,
                Keyset {
                    select: format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE 1 = 1"),
                    scoped: false,
                    key: &["event_id"],
                    descending: true,
                    fixed: 0,
                },
                |query| {
                    query.push(" AND account_id = ");
                    query.push_bind(account.as_str().to_owned());
                    if let Some(method) = &filter.method {
                        // The full method, or its short name (`CreateInstance`
                        // matches `slrgov.v1.InstanceService/CreateInstance`);
                        // no LIKE, so the value's `%` and `_` mean themselves.
                        query.push(" AND (method = ");
                        query.push_bind(method.clone());
                        query.push(" OR substr(method, length(method) - ");
                        query.push_bind(i32::try_from(method.chars().count()).unwrap_or(i32::MAX));
                        query.push(") = ");
                        query.push_bind(format!("/{method}"));
                        query.push(")");
                    }
                    for (column, value) in [
                        ("principal", &filter.principal),
                        ("outcome", &filter.outcome),
                        ("resource", &filter.resource),
                    ] {
                        if let Some(value) = value {
                            query.push(format!(" AND {column} = "));
                            query.push_bind(value.clone());
                        }
                    }
                },
                AuditRow::into_event,
                |last| vec![last.event_id.clone()],
            )
            .await
        }
        .instrument(db_span!("audit_list"))
        .await
    }
}
