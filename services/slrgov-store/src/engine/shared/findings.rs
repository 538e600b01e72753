//! Findings: what the reconciler's passes found, level-based (each pass
//! states what it sees in the scope it looked at; what it no longer sees is
//! resolved), and the fleet summary that counts them with the instances.
//!
//! Recording a pass is not audited: it is the service's own observation,
//! not a change a caller made to a resource. It still runs in the caller's
//! scope (row-level security on Postgres).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use slrgov_domain::finding::{
    FindingCounts, FindingFilter, FindingScope, FleetCounts, FleetSummary, NewFinding,
    StoredFinding,
};
use slrgov_domain::names::{AccountSelector, account_name};
use slrgov_domain::types::AccountId;
use slrgov_domain::{Error, RequestContext, Result, Role};
use sqlx::QueryBuilder;
use tracing::Instrument;

use super::rows::{FINDING_COLUMNS, FindingRow};
use super::txn::{
    Keyset, Tx, account_select_in_txn, begin_scoped, list_page, scope_json, scope_setting,
};
use super::{Db, EngineStore, push_json_values, push_scope, push_scoped_end, push_scoped_start};
use crate::engine::to_micros;
use crate::error::{corrupt, db_error, is_foreign_key_violation};
use crate::page_token::query_digest;
use crate::{FindingStore, Page, PageRequest};

/// Findings upserted per statement: 9 parameters each stays far below
/// both engines' limits (SQLite 32766, Postgres 65535).
const UPSERT_CHUNK: usize = 1000;

/// Refuses a finding outside the pass's scope (a pass may resolve only
/// what it looked at), or about an instance of another account.
fn check_in_scope(account: &AccountId, scope: &FindingScope, finding: &NewFinding) -> Result<()> {
    let in_scope = match scope {
        FindingScope::Target(target) => finding.target == *target,
        FindingScope::Code(code) => finding.code == *code,
    };
    if !in_scope {
        return Err(Error::internal(format!(
            "finding {} on {} is outside the pass's scope {scope:?}",
            finding.code, finding.target
        )));
    }
    if finding.target.starts_with("accounts/")
        && !finding
            .target
            .starts_with(&format!("{}/", account_name(account)))
    {
        return Err(Error::internal(format!(
            "finding {} on {} is not about account {account}",
            finding.code, finding.target
        )));
    }
    Ok(())
}

/// `AND <the scope's condition>` on `findings`.
fn push_scope_condition(query: &mut QueryBuilder<Db>, scope: &FindingScope) {
    match scope {
        FindingScope::Target(target) => {
            query.push(" AND target = ");
            query.push_bind(target.clone());
        }
        FindingScope::Code(code) => {
            query.push(" AND code = ");
            query.push_bind(code.as_str());
        }
    }
}

/// Resolves the open findings of the scope that are not in `seen` (their
/// ids), in one statement; returns how many open ones were seen again and
/// how many were resolved.
async fn resolve_in_txn(
    tx: &mut Tx,
    account: &AccountId,
    scope: &FindingScope,
    seen: &[&str],
    at: DateTime<Utc>,
) -> Result<(u32, u32)> {
    // Every open finding of the scope is touched: those seen stay open (and
    // are counted as still open), the others are resolved.
    let mut query =
        QueryBuilder::<Db>::new("UPDATE findings SET resolve_time = CASE WHEN finding_id IN ");
    push_json_values(
        &mut query,
        serde_json::Value::from(seen.to_vec()).to_string(),
    );
    query.push(" THEN NULL ELSE ");
    query.push_bind(at);
    query.push(" END WHERE account_id = ");
    query.push_bind(account.as_str().to_owned());
    query.push(" AND resolve_time IS NULL");
    push_scope_condition(&mut query, scope);
    query.push(" RETURNING resolve_time IS NULL AS kept");
    let kept: Vec<bool> = query
        .build_query_scalar()
        .fetch_all(&mut **tx)
        .await
        .map_err(db_error)?;
    let still_open = kept.iter().filter(|k| **k).count();
    let resolved = kept.len() - still_open;
    Ok((
        u32::try_from(still_open).unwrap_or(u32::MAX),
        u32::try_from(resolved).unwrap_or(u32::MAX),
    ))
}

/// Stores `findings` (one statement per [`UPSERT_CHUNK`]): a new one is
/// opened at `at`; an open one keeps its first seen time; a resolved one
/// is opened again, first seen `at`; every one takes `at` as last seen and
/// the pass's severity and message.
async fn upsert_in_txn(
    tx: &mut Tx,
    account: &AccountId,
    findings: &[(&str, &NewFinding)],
    at: DateTime<Utc>,
) -> Result<()> {
    for chunk in findings.chunks(UPSERT_CHUNK) {
        let mut query = QueryBuilder::<Db>::new(
            "INSERT INTO findings (account_id, finding_id, code, severity, target, subject, \
             message, first_seen_time, last_seen_time, resolve_time) ",
        );
        query.push_values(chunk, |mut row, (id, finding)| {
            row.push_bind(account.as_str().to_owned())
                .push_bind((*id).to_owned())
                .push_bind(finding.code.as_str())
                .push_bind(finding.severity.as_str())
                .push_bind(finding.target.clone())
                .push_bind(finding.subject.clone())
                .push_bind(finding.message.clone())
                .push_bind(at)
                .push_bind(at)
                .push("NULL");
        });
        query.push(
            " ON CONFLICT (account_id, finding_id) DO UPDATE SET \
             severity = excluded.severity, message = excluded.message, \
             last_seen_time = excluded.last_seen_time, \
             first_seen_time = CASE WHEN findings.resolve_time IS NULL \
                 THEN findings.first_seen_time ELSE excluded.first_seen_time END, \
             resolve_time = NULL",
        );
        match query.build().execute(&mut **tx).await {
            Ok(_) => {}
            Err(e) if is_foreign_key_violation(&e) => {
                return Err(Error::not_found(account_name(account)));
            }
            Err(e) => return Err(db_error(e)),
        }
    }
    Ok(())
}

/// `account_id = <account>`, or the caller's scope (every account it sees).
fn push_parent(query: &mut QueryBuilder<Db>, ctx: &RequestContext, parent: &AccountSelector) {
    match parent {
        AccountSelector::One(account) => {
            query.push("account_id = ");
            query.push_bind(account.as_str().to_owned());
        }
        AccountSelector::All => match scope_json(ctx) {
            Some(scope) => push_scope(query, scope),
            None => {
                query.push("1 = 1");
            }
        },
    }
}

/// A row of the fleet summary's statement: an account (`src` `account`),
/// a group of its instances (`a`, `b`, `c`: Connect status, observed
/// state, linked-role state) or of its open findings (`a`, `b`: code,
/// severity).
#[derive(sqlx::FromRow)]
struct SummaryRow {
    account_id: String,
    src: String,
    a: String,
    b: String,
    c: String,
    n: i64,
}

#[async_trait]
impl FindingStore for EngineStore {
    async fn finding_record(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
        scope: &FindingScope,
        findings: &[NewFinding],
        at: DateTime<Utc>,
    ) -> Result<FindingCounts> {
        async move {
            let parent = account_name(account);
            ctx.check_visible(account, &parent)?;
            ctx.check_role(Role::Operator, "record findings")?;
            // One row per id (the last one given wins), in id order: the
            // upsert may not touch a row twice.
            let mut by_id = BTreeMap::new();
            for finding in findings {
                check_in_scope(account, scope, finding)?;
                by_id.insert(finding.id(), finding);
            }
            let at = to_micros(at);
            let ids: Vec<&str> = by_id.keys().map(String::as_str).collect();
            let mut tx = begin_scoped(&self.pool, ctx).await?;
            if by_id.is_empty() {
                // Nothing to insert, whose foreign key would say the account
                // is gone: ask.
                account_select_in_txn(&mut tx, account, false)
                    .await?
                    .ok_or_else(|| Error::not_found(parent.clone()))?;
            }
            let (still_open, resolved) = resolve_in_txn(&mut tx, account, scope, &ids, at).await?;
            let rows: Vec<(&str, &NewFinding)> =
                by_id.iter().map(|(id, f)| (id.as_str(), *f)).collect();
            upsert_in_txn(&mut tx, account, &rows, at).await?;
            tx.commit().await.map_err(db_error)?;
            let seen = u32::try_from(rows.len()).unwrap_or(u32::MAX);
            Ok(FindingCounts {
                opened: seen.saturating_sub(still_open),
                still_open,
                resolved,
            })
        }
        .instrument(db_span!("finding_record"))
        .await
    }

    async fn finding_list(
        &self,
        ctx: &RequestContext,
        parent: &AccountSelector,
        filter: &FindingFilter,
        page: &PageRequest,
    ) -> Result<Page<StoredFinding>> {
        async move {
            self.check_list_parent(ctx, parent).await?;
            ctx.check_role(Role::Viewer, "ListFindings")?;
            let parent_text = parent.to_string();
            let filter_text = filter.canonical();
            let digest = query_digest(&[
                "ListFindings",
                &parent_text,
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
                    select: format!("SELECT {FINDING_COLUMNS} FROM findings WHERE 1 = 1"),
                    scoped: true,
                    key: &["account_id", "finding_id"],
                    descending: false,
                    fixed: usize::from(matches!(parent, AccountSelector::One(_))),
                },
                |query| {
                    if let AccountSelector::One(account) = parent {
                        query.push(" AND account_id = ");
                        query.push_bind(account.as_str().to_owned());
                    }
                    if let Some(code) = filter.code {
                        query.push(" AND code = ");
                        query.push_bind(code.as_str());
                    }
                    if let Some(severity) = filter.severity {
                        query.push(" AND severity = ");
                        query.push_bind(severity.as_str());
                    }
                    match filter.resolved {
                        Some(true) => {
                            query.push(" AND resolve_time IS NOT NULL");
                        }
                        Some(false) => {
                            query.push(" AND resolve_time IS NULL");
                        }
                        None => {}
                    }
                },
                FindingRow::into_finding,
                |last| vec![last.account_id.to_string(), last.finding_id.clone()],
            )
            .await
        }
        .instrument(db_span!("finding_list"))
        .await
    }

    async fn fleet_summary(
        &self,
        ctx: &RequestContext,
        parent: &AccountSelector,
    ) -> Result<FleetSummary> {
        async move {
            if let AccountSelector::One(account) = parent {
                ctx.check_visible(account, &account_name(account))?;
            }
            ctx.check_role(Role::Viewer, "read the fleet summary")?;
            // One statement: the accounts, their instances grouped by the
            // three states (one scan), their open findings by code and
            // severity (one scan of the open ones).
            let mut query = QueryBuilder::<Db>::new("");
            push_scoped_start(&mut query, scope_setting(ctx));
            query.push(
                "SELECT account_id, 'account' AS src, '' AS a, '' AS b, '' AS c, \
                 CAST(0 AS BIGINT) AS n FROM accounts WHERE ",
            );
            push_parent(&mut query, ctx, parent);
            query.push(
                " UNION ALL SELECT account_id, 'instance', COALESCE(connect_status, 'UNKNOWN'), \
                 observed_state, linked_role_state, COUNT(*) FROM instances WHERE ",
            );
            push_parent(&mut query, ctx, parent);
            query.push(
                " GROUP BY account_id, COALESCE(connect_status, 'UNKNOWN'), observed_state, \
                 linked_role_state \
                 UNION ALL SELECT account_id, 'finding', code, severity, '', COUNT(*) \
                 FROM findings WHERE resolve_time IS NULL AND ",
            );
            push_parent(&mut query, ctx, parent);
            query.push(" GROUP BY account_id, code, severity");
            push_scoped_end(&mut query);
            let rows: Vec<SummaryRow> = query
                .build_query_as()
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
            let mut accounts: BTreeMap<String, FleetCounts> = BTreeMap::new();
            for row in &rows {
                if row.src == "account" {
                    accounts.entry(row.account_id.clone()).or_default();
                }
            }
            for row in rows {
                // Every row's account is listed by the same statement.
                let Some(counts) = accounts.get_mut(&row.account_id) else {
                    continue;
                };
                let n = u64::try_from(row.n).unwrap_or(0);
                match row.src.as_str() {
                    "instance" => {
                        counts.instances += n;
                        *counts.by_connect_status.entry(row.a).or_default() += n;
                        *counts.by_observed_state.entry(row.b).or_default() += n;
                        *counts.by_linked_role_state.entry(row.c).or_default() += n;
                    }
                    "finding" => {
                        *counts.open_findings_by_code.entry(row.a).or_default() += n;
                        *counts.open_findings_by_severity.entry(row.b).or_default() += n;
                    }
                    _ => {}
                }
            }
            if let AccountSelector::One(account) = parent
                && accounts.is_empty()
            {
                return Err(Error::not_found(account_name(account)));
            }
            let mut summary = FleetSummary::default();
            for (account, counts) in accounts {
                let account =
                    AccountId::parse(&account).map_err(|e| corrupt("accounts.account_id", e))?;
                summary.total.add(&counts);
                summary.accounts.push((account, counts));
            }
            Ok(summary)
        }
        .instrument(db_span!("fleet_summary"))
        .await
    }
}
