//! What every transaction and list shares: the caller's scope, row reads
//! under lock, revision checks, the audit event written with a change, and
//! keyset pages.

use slrgov_domain::model::{Account, Instance, LinkedRoleState};
use slrgov_domain::names::InstanceKey;
use slrgov_domain::types::{AccountId, Partition, Revision};
use slrgov_domain::{Error, FieldViolation, RequestContext, Result};
use sqlx::types::Json;
use sqlx::{Pool, QueryBuilder, Transaction};

use super::rows::{
    ACCOUNT_COLUMNS, AccountRow, INSTANCE_COLUMNS, InstanceRow, LINKED_ROLE_COLUMNS, LinkedRoleRow,
};
use super::{
    Db, ENGINE, FOR_UPDATE, begin, push_json_elements, push_scope, push_scoped_end,
    push_scoped_start,
};
use crate::engine::now;
use crate::error::db_error;
use crate::page_token::PageTokenKey;
use crate::{Page, PageRequest};

/// A transaction of this engine.
pub(crate) type Tx = Transaction<'static, Db>;

/// Begins a transaction in the caller's scope.
pub(crate) async fn begin_scoped(pool: &sqlx::Pool<Db>, ctx: &RequestContext) -> Result<Tx> {
    begin(pool, &scope_setting(ctx)).await.map_err(db_error)
}

/// ABORTED / ETAG_MISMATCH when `expected` is given and is not `actual`.
pub(crate) fn check_revision(
    expected: Option<Revision>,
    actual: Revision,
    resource: &str,
) -> Result<()> {
    match expected {
        Some(expected) if expected != actual => Err(Error::etag_mismatch(resource)),
        _ => Ok(()),
    }
}

/// The visible accounts as a JSON array, or `None` for every account.
pub(crate) fn scope_json(ctx: &RequestContext) -> Option<String> {
    ctx.scope()
        .accounts()
        .map(|accounts| serde_json::Value::from(accounts).to_string())
}

/// The value of `slrgov.scope` for the caller: `*` for every account, else
/// the visible account ids joined by commas (none: the empty string, which
/// shows no rows). Account ids are 12 digits, so the value is safe to
/// inline in a statement.
pub(crate) fn scope_setting(ctx: &RequestContext) -> String {
    match ctx.scope().accounts() {
        None => "*".to_owned(),
        Some(accounts) => accounts
            .into_iter()
            .filter(|a| a.bytes().all(|b| b.is_ascii_digit()))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// The account, locked for update when `lock` is set.
pub(crate) async fn account_select_in_txn(
    tx: &mut Tx,
    account: &AccountId,
    lock: bool,
) -> Result<Option<Account>> {
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = $1{}",
        if lock { FOR_UPDATE } else { "" }
    );
    sqlx::query_as::<_, AccountRow>(sqlx::AssertSqlSafe(sql))
        .bind(account.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?
        .map(AccountRow::into_account)
        .transpose()
}

/// The instance, locked: the lock every change of an instance or its
/// linked role takes first.
pub(crate) async fn instance_select_in_txn(
    tx: &mut Tx,
    key: &InstanceKey,
) -> Result<Option<Instance>> {
    let sql = format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE account_id = $1 AND instance_id = $2{FOR_UPDATE}"
    );
    sqlx::query_as::<_, InstanceRow>(sqlx::AssertSqlSafe(sql))
        .bind(key.account_id.as_str())
        .bind(key.instance_id.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?
        .map(InstanceRow::into_instance)
        .transpose()
}

/// The instance, locked, or NOT_FOUND.
pub(crate) async fn instance_lock_in_txn(tx: &mut Tx, key: &InstanceKey) -> Result<Instance> {
    instance_select_in_txn(tx, key)
        .await?
        .ok_or_else(|| Error::not_found(key.name()))
}

/// The linked role row of an instance, locked.
pub(crate) async fn linked_role_select_in_txn(
    tx: &mut Tx,
    key: &InstanceKey,
) -> Result<Option<LinkedRoleRow>> {
    let sql = format!(
        "SELECT {LINKED_ROLE_COLUMNS} FROM linked_roles WHERE account_id = $1 AND instance_id = $2{FOR_UPDATE}"
    );
    sqlx::query_as::<_, LinkedRoleRow>(sqlx::AssertSqlSafe(sql))
        .bind(key.account_id.as_str())
        .bind(key.instance_id.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)
}

/// Keeps `instances.linked_role_state` (what ListInstances filters on) in
/// step with the linked role, in the same transaction.
pub(crate) async fn instance_set_role_state_in_txn(
    tx: &mut Tx,
    key: &InstanceKey,
    state: LinkedRoleState,
) -> Result<()> {
    // A visible field changes, so the instance's etag changes too (AIP-154).
    sqlx::query(
        "UPDATE instances SET linked_role_state = $3, revision = revision + 1, update_time = $4 \
         WHERE account_id = $1 AND instance_id = $2 AND linked_role_state <> $3",
    )
    .bind(key.account_id.as_str())
    .bind(key.instance_id.as_str())
    .bind(state.as_str())
    .bind(now())
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// The region's partition must be the account's; so must every ARN.
pub(crate) fn instance_partition_violations(
    instance: &Instance,
    partition: Partition,
) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    if instance.region.partition() != partition {
        violations.push(FieldViolation::new(
            "instance.region",
            format!(
                "is in partition {} but the account is in {partition}",
                instance.region.partition()
            ),
        ));
    }
    for mut violation in instance.features.partition_violations(partition) {
        violation.field = format!("instance.features.{}", violation.field);
        violations.push(violation);
    }
    violations
}

/// Writes the audit event of the change `tx` makes, with the AWS calls the
/// request made so far (they stay pending until the commit: see
/// [`commit_audited`]).
pub(crate) async fn audit_in_txn(
    tx: &mut Tx,
    ctx: &RequestContext,
    account: &AccountId,
    resource: &str,
    outcome: &str,
    detail: String,
) -> Result<()> {
    let calls = ctx.audit.stage();
    sqlx::query(
        "INSERT INTO audit_events (event_id, account_id, time, principal, method, resource, \
         request_id, outcome, detail, aws_calls) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(account.as_str())
    .bind(now())
    .bind(&ctx.caller().principal)
    .bind(&ctx.method)
    .bind(resource)
    .bind(&ctx.correlation_id)
    .bind(outcome)
    .bind(detail)
    .bind(Json(&calls))
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Commits a transaction that wrote an audit event, and marks the request's
/// AWS calls written.
pub(crate) async fn commit_audited(tx: Tx, ctx: &RequestContext) -> Result<()> {
    tx.commit().await.map_err(db_error)?;
    ctx.audit.written();
    Ok(())
}

/// The key after which a page starts, from its token (bound to `digest`).
pub(crate) fn open_page_token(
    keys: &PageTokenKey,
    page: &PageRequest,
    digest: &str,
    key_len: usize,
) -> Result<Option<Vec<String>>> {
    page.token
        .as_deref()
        .map(|token| {
            keys.open(token, digest, key_len)
                .map_err(|e| e.on("page_token"))
        })
        .transpose()
}

/// Cuts rows fetched with `LIMIT size + 1` to the page, and seals the token
/// after its last item when there is more.
pub(crate) fn page_of<T>(
    keys: &PageTokenKey,
    digest: &str,
    size: u32,
    mut items: Vec<T>,
    last_key: impl Fn(&T) -> Vec<String>,
) -> Page<T> {
    let mut next_page_token = String::new();
    if items.len() > size as usize {
        items.truncate(size as usize);
        if let Some(last) = items.last() {
            next_page_token = keys.seal(digest, last_key(last));
        }
    }
    Page {
        items,
        next_page_token,
    }
}

/// How one keyset list reads its page.
pub(crate) struct Keyset<'a> {
    /// The query without its keyset part: `SELECT <columns> FROM <table>
    /// WHERE <condition>`; the list's filters are pushed after it.
    pub select: String,
    /// Whether the caller's scope (its accounts) bounds the rows.
    pub scoped: bool,
    /// The key columns, in the list's order.
    pub key: &'a [&'a str],
    /// How many leading key columns the list's filters fix by equality
    /// (`account_id = $1` under one account's parent): the page starts
    /// after the rest of the key alone. A row comparison over a column
    /// that an equality also fixes does not start Postgres's index scan at
    /// the token's key: it walks the index from the first row of the
    /// account, so a page's cost grows with its depth (the measurement is
    /// in docs/benchmarks.md).
    pub fixed: usize,
    /// Newest first (the audit trail) rather than ascending.
    pub descending: bool,
}

/// One page of a keyset list, in one scoped statement: the rows after the
/// page token's key (bound to `digest`), `LIMIT size + 1`, and the token of
/// the next page. `filters` pushes the list's own `AND ...` conditions.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn list_page<R, T>(
    pool: &Pool<Db>,
    keys: &PageTokenKey,
    ctx: &RequestContext,
    page: &PageRequest,
    digest: &str,
    keyset: Keyset<'_>,
    filters: impl FnOnce(&mut QueryBuilder<Db>),
    into: impl Fn(R) -> Result<T>,
    last_key: impl Fn(&T) -> Vec<String>,
) -> Result<Page<T>>
where
    R: for<'r> sqlx::FromRow<'r, <Db as sqlx::Database>::Row> + Send + Unpin,
{
    let after = open_page_token(keys, page, digest, keyset.key.len())?;
    let order = keyset
        .key
        .iter()
        .map(|column| format!("{column}{}", if keyset.descending { " DESC" } else { "" }))
        .collect::<Vec<_>>()
        .join(", ");
    let mut query = QueryBuilder::<Db>::new("");
    push_scoped_start(&mut query, scope_setting(ctx));
    let scope = scope_json(ctx).filter(|_| keyset.scoped);
    let fixed = keyset.fixed.min(keyset.key.len() - 1);
    match scope {
        // A caller of some accounts listing across them (on Postgres):
        // one index range per account of the scope, each cut to the page,
        // merged. `account_id IN (<scope>)` over the whole table would
        // read every row of those accounts and sort them (2.2 s for a page
        // of an account of a million instances), whatever the page size.
        Some(scope)
            if matches!(ENGINE, crate::Engine::Postgres)
                && fixed == 0
                && !keyset.descending
                && keyset.key.len() == 2
                && keyset.key[0] == "account_id" =>
        {
            let column = keyset.key[1];
            let after = after.map(|after| (after[0].clone(), after[1].clone()));
            query.push("SELECT slrgov_page.* FROM (SELECT value AS account FROM ");
            push_json_elements(&mut query, scope);
            if let Some((account, _)) = &after {
                query.push(" WHERE value >= ");
                query.push_bind(account.clone());
            }
            query.push(") AS slrgov_scope_accounts CROSS JOIN LATERAL (");
            query.push(keyset.select);
            query.push(" AND account_id = slrgov_scope_accounts.account");
            filters(&mut query);
            if let Some((account, last)) = after {
                // The token's account resumes after its last key; the
                // accounts after it start at their beginning.
                query.push(format!(
                    " AND {column} > CASE WHEN slrgov_scope_accounts.account = "
                ));
                query.push_bind(account);
                query.push(" THEN ");
                query.push_bind(last);
                query.push(" ELSE '' END");
            }
            query.push(format!(" ORDER BY {order} LIMIT "));
            query.push_bind(i64::from(page.size) + 1);
            query.push(") AS slrgov_page");
        }
        scope => {
            query.push(keyset.select);
            // The caller's scope bounds every list, whatever the parent says.
            if let Some(scope) = scope {
                query.push(" AND ");
                push_scope(&mut query, scope);
            }
            filters(&mut query);
            if let Some(after) = after {
                query.push(format!(" AND ({}) ", keyset.key[fixed..].join(", ")));
                query.push(if keyset.descending { "< (" } else { "> (" });
                let mut values = query.separated(", ");
                for value in after.into_iter().skip(fixed) {
                    values.push_bind(value);
                }
                query.push(")");
            }
        }
    }
    query.push(format!(" ORDER BY {order} LIMIT "));
    query.push_bind(i64::from(page.size) + 1);
    push_scoped_end(&mut query);
    query.push(format!(" ORDER BY {order}"));
    let rows: Vec<R> = query
        .build_query_as()
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    let items = rows.into_iter().map(into).collect::<Result<Vec<_>>>()?;
    Ok(page_of(keys, digest, page.size, items, last_key))
}
