// The store, written once for both engines: `include!`d by `postgres.rs` and
// `sqlite.rs` after they define `Db`, `ENGINE`, `FOR_UPDATE`, `begin`,
// `push_scope` and `connect` (see `engine/mod.rs`). Every query here is
// portable SQL: `$N` placeholders (which sqlx-sqlite reads as positions too),
// `RETURNING`, row-value comparisons for keyset pagination.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use slrgov_domain::audit::{AuditEvent, AuditFilter, AwsCall, NewAuditEvent};
use slrgov_domain::filter::InstanceFilter;
use slrgov_domain::model::{
    Account, AccountAccess, AccountPatch, DeletionFailure, EnsureClaim, ExternalId,
    ExternalIdChange, Instance, InstanceFeatures, InstancePatch, LinkedRole, LinkedRoleState,
    NewAccount, NewInstance, ObservedRole, OperationError, OperationRecord, OperationStep,
    OperationVerb,
};
use slrgov_domain::names::{AccountSelector, InstanceKey, account_name};
use slrgov_domain::types::{
    AccountId, Arn, InstanceAlias, InstanceId, Partition, RegionCode, Revision,
    parse_access_role_arn,
};
use slrgov_domain::{Error, FieldViolation, Reason, RequestContext, Result, Role};
use sqlx::types::Json;

use crate::engine::{now, to_micros};
use crate::error::{corrupt, db_error, is_foreign_key_violation, is_unique_violation};
use crate::page_token::{PageTokenKey, query_digest};
use crate::{GaugeRow, Idempotency, Page, PageRequest, Store};

/// The store on this engine.
pub struct EngineStore {
    pool: Pool<Db>,
    page_tokens: PageTokenKey,
}

impl std::fmt::Debug for EngineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineStore")
            .field("engine", &ENGINE)
            .finish()
    }
}

impl EngineStore {
    /// Connects, migrates, and loads the keys shared by every replica.
    pub async fn open(config: &StoreConfig) -> Result<Self, OpenError> {
        let pool = connect(config).await?;
        let page_tokens = service_key_load(&pool, "page_token")
            .await
            .map_err(OpenError::Keys)?;
        Ok(EngineStore {
            pool,
            page_tokens: PageTokenKey::new(page_tokens),
        })
    }

    /// The connection pool, for tests and maintenance.
    pub fn pool(&self) -> &Pool<Db> {
        &self.pool
    }
}

/// Loads the key `name`, creating it on first use. Replicas racing here all
/// end up with the one row that won the insert.
async fn service_key_load(pool: &Pool<Db>, name: &str) -> sqlx::Result<Vec<u8>> {
    let candidate: [u8; 32] = rand::random();
    sqlx::query(
        "INSERT INTO service_keys (name, key, create_time) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(candidate.as_slice())
    .bind(now())
    .execute(pool)
    .await?;
    sqlx::query_scalar("SELECT key FROM service_keys WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
}

// ---------------------------------------------------------------------------
// Rows

const ACCOUNT_COLUMNS: &str = "account_id, display_name, partition, access_role_arn, \
     external_id IS NOT NULL AS external_id_set, revision, create_time, update_time";

#[derive(sqlx::FromRow)]
struct AccountRow {
    account_id: String,
    display_name: String,
    partition: String,
    access_role_arn: Option<String>,
    external_id_set: bool,
    revision: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

impl AccountRow {
    fn into_account(self) -> Result<Account> {
        Ok(Account {
            account_id: AccountId::parse(&self.account_id)
                .map_err(|e| corrupt("accounts.account_id", e))?,
            display_name: self.display_name,
            partition: Partition::parse(&self.partition)
                .map_err(|e| corrupt("accounts.partition", e))?,
            access_role_arn: self
                .access_role_arn
                .map(|arn| Arn::parse(&arn))
                .transpose()
                .map_err(|e| corrupt("accounts.access_role_arn", e))?,
            external_id_set: self.external_id_set,
            create_time: self.create_time,
            update_time: self.update_time,
            revision: Revision(self.revision),
        })
    }
}

const INSTANCE_COLUMNS: &str = "account_id, instance_id, instance_alias, region, \
     instance_create_time, features, linked_role_state, revision, create_time, update_time";

#[derive(sqlx::FromRow)]
struct InstanceRow {
    account_id: String,
    instance_id: String,
    instance_alias: Option<String>,
    region: String,
    instance_create_time: Option<DateTime<Utc>>,
    features: Json<InstanceFeatures>,
    linked_role_state: String,
    revision: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

impl InstanceRow {
    fn into_instance(self) -> Result<Instance> {
        Ok(Instance {
            account_id: AccountId::parse(&self.account_id)
                .map_err(|e| corrupt("instances.account_id", e))?,
            instance_id: InstanceId::parse(&self.instance_id)
                .map_err(|e| corrupt("instances.instance_id", e))?,
            instance_alias: self
                .instance_alias
                .map(|a| InstanceAlias::parse(&a))
                .transpose()
                .map_err(|e| corrupt("instances.instance_alias", e))?,
            region: RegionCode::parse(&self.region).map_err(|e| corrupt("instances.region", e))?,
            instance_create_time: self.instance_create_time,
            features: self.features.0,
            linked_role_state: LinkedRoleState::parse(&self.linked_role_state)
                .ok_or_else(|| corrupt("instances.linked_role_state", &self.linked_role_state))?,
            create_time: self.create_time,
            update_time: self.update_time,
            revision: Revision(self.revision),
        })
    }
}

const LINKED_ROLE_COLUMNS: &str = "account_id, instance_id, state, suffix, role_name, role_arn, \
     role_id, path, description, iam_create_time, last_used_time, last_used_region, adopted, \
     deletion_task_id, deletion_failure, lease_owner, lease_expires, attempts, revision, update_time";

#[derive(sqlx::FromRow)]
struct LinkedRoleRow {
    account_id: String,
    instance_id: String,
    state: String,
    suffix: Option<String>,
    role_name: Option<String>,
    role_arn: Option<String>,
    role_id: Option<String>,
    path: Option<String>,
    description: Option<String>,
    iam_create_time: Option<DateTime<Utc>>,
    last_used_time: Option<DateTime<Utc>>,
    last_used_region: Option<String>,
    adopted: bool,
    deletion_task_id: Option<String>,
    deletion_failure: Option<Json<DeletionFailure>>,
    lease_owner: Option<String>,
    lease_expires: Option<DateTime<Utc>>,
    attempts: i32,
    revision: i64,
    update_time: DateTime<Utc>,
}

impl LinkedRoleRow {
    fn to_linked_role(&self) -> Result<LinkedRole> {
        Ok(LinkedRole {
            account_id: AccountId::parse(&self.account_id)
                .map_err(|e| corrupt("linked_roles.account_id", e))?,
            instance_id: InstanceId::parse(&self.instance_id)
                .map_err(|e| corrupt("linked_roles.instance_id", e))?,
            state: LinkedRoleState::parse(&self.state)
                .ok_or_else(|| corrupt("linked_roles.state", &self.state))?,
            role_name: self.role_name.clone(),
            role_arn: self.role_arn.clone(),
            role_id: self.role_id.clone(),
            path: self.path.clone(),
            description: self.description.clone(),
            iam_create_time: self.iam_create_time,
            last_used_time: self.last_used_time,
            last_used_region: self.last_used_region.clone(),
            adopted: self.adopted,
            deletion_task_id: self.deletion_task_id.clone(),
            deletion_failure: self.deletion_failure.as_ref().map(|f| f.0.clone()),
            update_time: self.update_time,
            revision: Revision(self.revision),
        })
    }
}

async fn linked_role_select_in_txn(
    tx: &mut Transaction<'static, Db>,
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
async fn instance_set_role_state_in_txn(
    tx: &mut Transaction<'static, Db>,
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

const AUDIT_COLUMNS: &str = "event_id, account_id, time, principal, method, resource, \
     request_id, outcome, detail, aws_calls";

#[derive(sqlx::FromRow)]
struct AuditRow {
    event_id: String,
    account_id: String,
    time: DateTime<Utc>,
    principal: String,
    method: String,
    resource: String,
    request_id: String,
    outcome: String,
    detail: String,
    aws_calls: Json<Vec<AwsCall>>,
}

impl AuditRow {
    fn into_event(self) -> Result<AuditEvent> {
        Ok(AuditEvent {
            account_id: AccountId::parse(&self.account_id)
                .map_err(|e| corrupt("audit_events.account_id", e))?,
            event_id: self.event_id,
            time: self.time,
            principal: self.principal,
            method: self.method,
            resource: self.resource,
            request_id: self.request_id,
            outcome: self.outcome,
            detail: self.detail,
            aws_calls: self.aws_calls.0,
        })
    }
}

const OPERATION_COLUMNS: &str = "operation_id, account_id, instance_id, verb, done, error, \
     response, principal, request_id, status_message, attempts, create_time, end_time";

#[derive(sqlx::FromRow)]
struct OperationRow {
    operation_id: String,
    account_id: String,
    instance_id: String,
    verb: String,
    done: bool,
    error: Option<Json<OperationError>>,
    response: Option<Json<LinkedRole>>,
    principal: String,
    request_id: Option<String>,
    status_message: String,
    attempts: i32,
    create_time: DateTime<Utc>,
    end_time: Option<DateTime<Utc>>,
}

impl OperationRow {
    fn into_record(self) -> Result<OperationRecord> {
        Ok(OperationRecord {
            account_id: AccountId::parse(&self.account_id)
                .map_err(|e| corrupt("operations.account_id", e))?,
            instance_id: InstanceId::parse(&self.instance_id)
                .map_err(|e| corrupt("operations.instance_id", e))?,
            verb: OperationVerb::parse(&self.verb)
                .ok_or_else(|| corrupt("operations.verb", &self.verb))?,
            operation_id: self.operation_id,
            done: self.done,
            error: self.error.map(|e| e.0),
            response: self.response.map(|r| r.0),
            principal: self.principal,
            request_id: self.request_id,
            status_message: self.status_message,
            attempts: self.attempts,
            create_time: self.create_time,
            end_time: self.end_time,
        })
    }
}

async fn operation_select_in_txn(
    tx: &mut Transaction<'static, Db>,
    operation_id: &str,
) -> Result<Option<(OperationRecord, Option<String>)>> {
    let sql = format!(
        "SELECT {OPERATION_COLUMNS}, lease_owner FROM operations WHERE operation_id = $1{FOR_UPDATE}"
    );
    let row: Option<(OperationRow, Option<String>)> = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(operation_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?
        .map(|row| {
            use sqlx::{FromRow, Row};
            let owner: Option<String> = row.try_get("lease_owner")?;
            Ok::<_, sqlx::Error>((OperationRow::from_row(&row)?, owner))
        })
        .transpose()
        .map_err(db_error)?;
    row.map(|(r, owner)| Ok((r.into_record()?, owner)))
        .transpose()
}

// ---------------------------------------------------------------------------
// Request ids (AIP-155), written in the same transaction as the work.

/// Claims `idempotency` for this transaction. Returns the first response
/// when the request id is known with the same fingerprint; REQUEST_ID_REUSED
/// with another. On Postgres a concurrent request with the same id waits
/// here for the first to commit, then replays its response.
async fn request_id_claim_in_txn<T: DeserializeOwned>(
    tx: &mut Transaction<'static, Db>,
    account: &AccountId,
    idempotency: Option<&Idempotency>,
    method: &str,
) -> Result<Option<T>> {
    let Some(idempotency) = idempotency else {
        return Ok(None);
    };
    let inserted = sqlx::query(
        "INSERT INTO request_ids (account_id, request_id, method, fingerprint, response, create_time) \
         VALUES ($1, $2, $3, $4, NULL, $5) ON CONFLICT (account_id, request_id) DO NOTHING",
    )
    .bind(account.as_str())
    .bind(idempotency.request_id.as_str())
    .bind(method)
    .bind(idempotency.fingerprint.as_slice())
    .bind(now())
    .execute(&mut **tx)
    .await
    .map_err(db_error)?
    .rows_affected();
    if inserted == 1 {
        return Ok(None);
    }
    let (stored_method, fingerprint, response): (String, Vec<u8>, Option<Json<serde_json::Value>>) = sqlx::query_as(
        "SELECT method, fingerprint, response FROM request_ids WHERE account_id = $1 AND request_id = $2",
    )
    .bind(account.as_str())
    .bind(idempotency.request_id.as_str())
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)?;
    // The method is compared too, so that a caller that forgot to fold it
    // into the fingerprint still cannot replay one method's response for
    // another.
    if stored_method != method || fingerprint != idempotency.fingerprint {
        return Err(Error::request_id_reused());
    }
    let Some(Json(response)) = response else {
        // Only possible if a transaction committed the claim without its
        // response, which the methods below never do.
        return Err(corrupt("request_ids.response", "missing"));
    };
    serde_json::from_value(response)
        .map(Some)
        .map_err(|e| corrupt("request_ids.response", e))
}

/// Records the response of a claimed request id.
async fn request_id_record_in_txn<T: Serialize>(
    tx: &mut Transaction<'static, Db>,
    account: &AccountId,
    idempotency: Option<&Idempotency>,
    response: &T,
) -> Result<()> {
    let Some(idempotency) = idempotency else {
        return Ok(());
    };
    let response = serde_json::to_value(response).map_err(|e| corrupt("response", e))?;
    sqlx::query("UPDATE request_ids SET response = $3 WHERE account_id = $1 AND request_id = $2")
        .bind(account.as_str())
        .bind(idempotency.request_id.as_str())
        .bind(Json(response))
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Helpers

fn check_revision(expected: Option<Revision>, actual: Revision, resource: &str) -> Result<()> {
    match expected {
        Some(expected) if expected != actual => Err(Error::etag_mismatch(resource)),
        _ => Ok(()),
    }
}

async fn account_select_in_txn(
    tx: &mut Transaction<'static, Db>,
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

async fn instance_select_in_txn(
    tx: &mut Transaction<'static, Db>,
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

/// The region's partition must be the account's; so must every ARN.
fn instance_partition_violations(instance: &Instance, partition: Partition) -> Vec<FieldViolation> {
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

fn scope_json(ctx: &RequestContext) -> Option<String> {
    ctx.scope()
        .accounts()
        .map(|accounts| serde_json::Value::from(accounts).to_string())
}

/// The value of `slrgov.scope` for the caller: `*` for every account, else
/// the visible account ids joined by commas (none: the empty string, which
/// shows no rows). Account ids are 12 digits, so the value is safe to
/// inline in a statement.
fn scope_setting(ctx: &RequestContext) -> String {
    match ctx.scope().accounts() {
        None => "*".to_owned(),
        Some(accounts) => accounts
            .into_iter()
            .filter(|a| a.bytes().all(|b| b.is_ascii_digit()))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Writes the audit event of the change `tx` makes, with the AWS calls the
/// request made so far (they stay pending until the commit: see
/// [`commit_audited`]).
async fn audit_in_txn(
    tx: &mut Transaction<'static, Db>,
    ctx: &RequestContext,
    account: &AccountId,
    resource: &str,
    outcome: &str,
    detail: String,
) -> Result<()> {
    audit_write_in_txn(tx, ctx, account, resource, outcome, detail, true).await
}

/// Writes an audit event, with the request's pending AWS calls or (when
/// `with_calls` is false: bookkeeping that precedes the request's real
/// outcome, such as giving up a claim after a failure) without them, so
/// that they stay for the event of that outcome.
async fn audit_write_in_txn(
    tx: &mut Transaction<'static, Db>,
    ctx: &RequestContext,
    account: &AccountId,
    resource: &str,
    outcome: &str,
    detail: String,
    with_calls: bool,
) -> Result<()> {
    let calls = if with_calls {
        ctx.audit.stage()
    } else {
        ctx.audit.stage_none();
        Vec::new()
    };
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
async fn commit_audited(tx: Transaction<'static, Db>, ctx: &RequestContext) -> Result<()> {
    tx.commit().await.map_err(db_error)?;
    ctx.audit.written();
    Ok(())
}

fn open_page_token(
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
fn page_of<T>(
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

// ---------------------------------------------------------------------------

#[async_trait]
impl Store for EngineStore {
    fn engine(&self) -> Engine {
        ENGINE
    }

    fn page_tokens(&self) -> &PageTokenKey {
        &self.page_tokens
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db ping", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "ping"))]
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db account_create", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "account_create"))]
    async fn account_create(
        &self,
        ctx: &RequestContext,
        new: NewAccount,
        idempotency: Option<&Idempotency>,
    ) -> Result<Account> {
        let name = account_name(&new.account_id);
        ctx.check_visible(&new.account_id, &name)?;
        ctx.check_role(Role::Admin, "CreateAccount")?;
        if let Some(arn) = &new.fields.access_role_arn {
            parse_access_role_arn(arn.as_str(), new.fields.partition, &new.account_id)
                .map_err(|e| e.on("account.access_role_arn"))?;
        }

        let mut tx = begin(&self.pool, &scope_setting(ctx))
            .await
            .map_err(db_error)?;
        if let Some(first) =
            request_id_claim_in_txn(&mut tx, &new.account_id, idempotency, "CreateAccount").await?
        {
            return Ok(first);
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
        request_id_record_in_txn(&mut tx, &new.account_id, idempotency, &account).await?;
        audit_in_txn(
            &mut tx,
            ctx,
            &new.account_id,
            &account_name(&new.account_id),
            "OK",
            format!(
                "created the account: display_name {:?}, partition {}, access_role_arn {}, external_id {}",
                account.display_name,
                account.partition,
                account.access_role_arn.as_ref().map_or("unset", Arn::as_str),
                if account.external_id_set { "set" } else { "unset" },
            ),
        )
        .await?;
        commit_audited(tx, ctx).await?;
        Ok(account)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db account_get", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "account_get"))]
    async fn account_get(&self, ctx: &RequestContext, account: &AccountId) -> Result<Account> {
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

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db account_list", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "account_list"))]
    async fn account_list(
        &self,
        ctx: &RequestContext,
        page: &PageRequest,
    ) -> Result<Page<Account>> {
        ctx.check_role(Role::Viewer, "ListAccounts")?;
        let digest = query_digest(&["ListAccounts", &ctx.caller().principal]);
        let after = open_page_token(&self.page_tokens, page, &digest, 1)?;

        let mut query = QueryBuilder::<Db>::new("");
        push_scoped_start(&mut query, scope_setting(ctx));
        query.push(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE 1 = 1"
        ));
        if let Some(scope) = scope_json(ctx) {
            query.push(" AND ");
            push_scope(&mut query, scope);
        }
        if let Some(after) = after {
            query.push(" AND account_id > ");
            query.push_bind(after[0].clone());
        }
        query.push(" ORDER BY account_id LIMIT ");
        query.push_bind(i64::from(page.size) + 1);
        push_scoped_end(&mut query);
        query.push(" ORDER BY account_id");
        let rows: Vec<AccountRow> = query
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;

        let items = rows
            .into_iter()
            .map(AccountRow::into_account)
            .collect::<Result<Vec<_>>>()?;
        Ok(page_of(
            &self.page_tokens,
            &digest,
            page.size,
            items,
            |last| vec![last.account_id.to_string()],
        ))
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db account_update", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "account_update"))]
    async fn account_update(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
        expected: Option<Revision>,
        patch: AccountPatch,
    ) -> Result<Account> {
        let name = account_name(account);
        ctx.check_visible(account, &name)?;
        ctx.check_role(Role::Admin, "UpdateAccount")?;

        let mut tx = begin(&self.pool, &scope_setting(ctx))
            .await
            .map_err(db_error)?;
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
            format!(
                "updated the account: display_name {:?}, access_role_arn {}, external_id {}",
                updated.display_name,
                updated
                    .access_role_arn
                    .as_ref()
                    .map_or("unset", Arn::as_str),
                match patch.external_id {
                    ExternalIdChange::Keep => "kept",
                    ExternalIdChange::Set(_) => "replaced",
                    ExternalIdChange::Clear => "cleared",
                },
            ),
        )
        .await?;
        commit_audited(tx, ctx).await?;
        Ok(updated)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db account_delete", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "account_delete"))]
    async fn account_delete(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
        expected: Option<Revision>,
    ) -> Result<()> {
        let name = account_name(account);
        ctx.check_visible(account, &name)?;
        ctx.check_role(Role::Admin, "DeleteAccount")?;

        let mut tx = begin(&self.pool, &scope_setting(ctx))
            .await
            .map_err(db_error)?;
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

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db instance_create", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "instance_create"))]
    async fn instance_create(
        &self,
        ctx: &RequestContext,
        new: NewInstance,
        idempotency: Option<&Idempotency>,
    ) -> Result<Instance> {
        let name = new.key.name();
        let parent = account_name(&new.key.account_id);
        ctx.check_visible(&new.key.account_id, &parent)?;
        ctx.check_role(Role::Operator, "CreateInstance")?;

        let mut tx = begin(&self.pool, &scope_setting(ctx))
            .await
            .map_err(db_error)?;
        if let Some(first) =
            request_id_claim_in_txn(&mut tx, &new.key.account_id, idempotency, "CreateInstance")
                .await?
        {
            return Ok(first);
        }
        let account = account_select_in_txn(&mut tx, &new.key.account_id, false)
            .await?
            .ok_or_else(|| Error::not_found(parent.clone()))?;
        let now = now();
        let instance = Instance {
            account_id: new.key.account_id.clone(),
            instance_id: new.key.instance_id.clone(),
            instance_alias: new.fields.instance_alias,
            region: new.region,
            instance_create_time: new.fields.instance_create_time.map(to_micros),
            features: new.fields.features,
            linked_role_state: LinkedRoleState::Absent,
            create_time: now,
            update_time: now,
            revision: Revision(1),
        };
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
        request_id_record_in_txn(&mut tx, &instance.account_id, idempotency, &instance).await?;
        audit_in_txn(
            &mut tx,
            ctx,
            &instance.account_id,
            &name,
            "OK",
            format!(
                "created the instance in {} with features {}",
                instance.region,
                serde_json::to_string(&instance.features).unwrap_or_default()
            ),
        )
        .await?;
        commit_audited(tx, ctx).await?;
        Ok(instance)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db instance_get", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "instance_get"))]
    async fn instance_get(&self, ctx: &RequestContext, key: &InstanceKey) -> Result<Instance> {
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

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db instance_list", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "instance_list"))]
    async fn instance_list(
        &self,
        ctx: &RequestContext,
        parent: &AccountSelector,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<Instance>> {
        if let AccountSelector::One(account) = parent {
            let name = account_name(account);
            ctx.check_visible(account, &name)?;
            // A visible parent that does not exist is NOT_FOUND too (AIP-132),
            // exactly like one outside the caller's scope.
            let sql = scoped_sql("SELECT 1 AS one FROM accounts WHERE account_id = $1", 2);
            let exists: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(account.as_str())
                .bind(scope_setting(ctx))
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
            if exists.is_none() {
                return Err(Error::not_found(name));
            }
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
        let after = open_page_token(&self.page_tokens, page, &digest, 2)?;

        let mut query = QueryBuilder::<Db>::new("");
        push_scoped_start(&mut query, scope_setting(ctx));
        query.push(format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE 1 = 1"
        ));
        // The caller's scope bounds every list, whatever the parent says.
        if let Some(scope) = scope_json(ctx) {
            query.push(" AND ");
            push_scope(&mut query, scope);
        }
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
        if let Some(after) = after {
            query.push(" AND (account_id, instance_id) > (");
            query.push_bind(after[0].clone());
            query.push(", ");
            query.push_bind(after[1].clone());
            query.push(")");
        }
        query.push(" ORDER BY account_id, instance_id LIMIT ");
        query.push_bind(i64::from(page.size) + 1);
        push_scoped_end(&mut query);
        query.push(" ORDER BY account_id, instance_id");
        let rows: Vec<InstanceRow> = query
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;

        let items = rows
            .into_iter()
            .map(InstanceRow::into_instance)
            .collect::<Result<Vec<_>>>()?;
        Ok(page_of(
            &self.page_tokens,
            &digest,
            page.size,
            items,
            |last| vec![last.account_id.to_string(), last.instance_id.to_string()],
        ))
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db instance_update", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "instance_update"))]
    async fn instance_update(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        expected: Option<Revision>,
        patch: InstancePatch,
        idempotency: Option<&Idempotency>,
    ) -> Result<Instance> {
        let name = key.name();
        ctx.check_visible(&key.account_id, &name)?;
        ctx.check_role(Role::Operator, "UpdateInstance")?;

        let mut tx = begin(&self.pool, &scope_setting(ctx))
            .await
            .map_err(db_error)?;
        if let Some(first) =
            request_id_claim_in_txn(&mut tx, &key.account_id, idempotency, "UpdateInstance").await?
        {
            return Ok(first);
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
        request_id_record_in_txn(&mut tx, &key.account_id, idempotency, &updated).await?;
        audit_in_txn(
            &mut tx,
            ctx,
            &key.account_id,
            &name,
            "OK",
            format!("updated the instance: {patch_text}"),
        )
        .await?;
        commit_audited(tx, ctx).await?;
        Ok(updated)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db instance_delete", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "instance_delete"))]
    async fn instance_delete(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        expected: Option<Revision>,
        idempotency: Option<&Idempotency>,
    ) -> Result<Instance> {
        let name = key.name();
        ctx.check_visible(&key.account_id, &name)?;
        ctx.check_role(Role::Operator, "DeleteInstance")?;

        let mut tx = begin(&self.pool, &scope_setting(ctx))
            .await
            .map_err(db_error)?;
        if let Some(first) =
            request_id_claim_in_txn(&mut tx, &key.account_id, idempotency, "DeleteInstance").await?
        {
            return Ok(first);
        }
        let instance = instance_select_in_txn(&mut tx, key)
            .await?
            .ok_or_else(|| Error::not_found(name.clone()))?;
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
        request_id_record_in_txn(&mut tx, &key.account_id, idempotency, &instance).await?;
        audit_in_txn(
            &mut tx,
            ctx,
            &key.account_id,
            &name,
            "OK",
            "removed the instance record".to_owned(),
        )
        .await?;
        commit_audited(tx, ctx).await?;
        Ok(instance)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db account_access", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "account_access"))]
    async fn account_access(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
    ) -> Result<AccountAccess> {
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

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db linked_role_get", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "linked_role_get"))]
    async fn linked_role_get(&self, ctx: &RequestContext, key: &InstanceKey) -> Result<LinkedRole> {
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
            Some(row) => row.to_linked_role(),
            None => Ok(LinkedRole::absent(&instance)),
        }
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db linked_role_claim", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "linked_role_claim"))]
    async fn linked_role_claim(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        owner: &str,
        lease: std::time::Duration,
        suffix: &str,
    ) -> Result<EnsureClaim> {
        let name = key.linked_role_name();
        ctx.check_visible(&key.account_id, &name)?;
        ctx.check_role(Role::Operator, "EnsureLinkedRole")?;
        let mut tx = begin(&self.pool, &scope_setting(ctx))
            .await
            .map_err(db_error)?;
        // The instance row is the lock every linked-role change takes first.
        instance_select_in_txn(&mut tx, key)
            .await?
            .ok_or_else(|| Error::not_found(key.name()))?;
        let now = now();
        let lease_expires = now
            + chrono::Duration::from_std(lease).unwrap_or_else(|_| chrono::Duration::seconds(30));
        let row = linked_role_select_in_txn(&mut tx, key).await?;
        let (suffix, resumed, attempts) = match &row {
            Some(row) => {
                let state = LinkedRoleState::parse(&row.state)
                    .ok_or_else(|| corrupt("linked_roles.state", &row.state))?;
                match state {
                    LinkedRoleState::Active => {
                        return Ok(EnsureClaim::Active(row.to_linked_role()?));
                    }
                    LinkedRoleState::Deleting => {
                        return Err(Error::operation_in_progress(name, "a retirement"));
                    }
                    _ => {}
                }
                let held = row.lease_owner.as_deref().is_some_and(|o| o != owner)
                    && row.lease_expires.is_some_and(|t| t > now);
                if held {
                    return Ok(EnsureClaim::Busy);
                }
                let planned = row.suffix.clone();
                let resumed = state == LinkedRoleState::Creating && planned.is_some();
                (
                    planned.unwrap_or_else(|| suffix.to_owned()),
                    resumed,
                    row.attempts + 1,
                )
            }
            None => (suffix.to_owned(), false, 1),
        };
        let role_row = sqlx::query_as::<_, LinkedRoleRow>(sqlx::AssertSqlSafe(format!(
            "INSERT INTO linked_roles (account_id, instance_id, state, suffix, lease_owner, \
             lease_expires, attempts, revision, update_time) \
             VALUES ($1, $2, 'CREATING', $3, $4, $5, $6, 1, $7) \
             ON CONFLICT (account_id, instance_id) DO UPDATE SET state = 'CREATING', \
             suffix = $3, lease_owner = $4, lease_expires = $5, attempts = $6, \
             revision = linked_roles.revision + 1, update_time = $7 \
             RETURNING {LINKED_ROLE_COLUMNS}"
        )))
        .bind(key.account_id.as_str())
        .bind(key.instance_id.as_str())
        .bind(&suffix)
        .bind(owner)
        .bind(lease_expires)
        .bind(attempts)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        instance_set_role_state_in_txn(&mut tx, key, LinkedRoleState::Creating).await?;
        audit_in_txn(
            &mut tx,
            ctx,
            &key.account_id,
            &name,
            "OK",
            format!(
                "{} the ensure workflow (attempt {attempts}, role name suffix {suffix:?})",
                if resumed { "resumed" } else { "started" }
            ),
        )
        .await?;
        commit_audited(tx, ctx).await?;
        Ok(EnsureClaim::Claimed {
            role: role_row.to_linked_role()?,
            suffix,
            resumed,
        })
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db linked_role_activate", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "linked_role_activate"))]
    async fn linked_role_activate(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        owner: &str,
        observed: ObservedRole,
        adopted: bool,
    ) -> Result<LinkedRole> {
        let name = key.linked_role_name();
        ctx.check_visible(&key.account_id, &name)?;
        ctx.check_role(Role::Operator, "EnsureLinkedRole")?;
        let mut tx = begin(&self.pool, &scope_setting(ctx))
            .await
            .map_err(db_error)?;
        instance_select_in_txn(&mut tx, key)
            .await?
            .ok_or_else(|| Error::not_found(key.name()))?;
        let row = linked_role_select_in_txn(&mut tx, key)
            .await?
            .ok_or_else(|| Error::operation_in_progress(name.clone(), "another ensure"))?;
        // Run twice, the step ends in the same state: the role is recorded.
        if row.state == "ACTIVE" && row.role_arn.as_deref() == Some(observed.role_arn.as_str()) {
            return row.to_linked_role();
        }
        if row.lease_owner.as_deref() != Some(owner) {
            return Err(Error::operation_in_progress(name, "another ensure"));
        }
        let elsewhere = || {
            Error::failed_precondition(
                Reason::RoleOwnedElsewhere,
                format!(
                    "the role {} is recorded for another instance: one role serves one instance record",
                    observed.role_arn
                ),
            )
            .with_metadata("role_arn", observed.role_arn.clone())
        };
        let owners: Vec<(String, String)> = sqlx::query_as(
            "SELECT account_id, instance_id FROM linked_roles \
             WHERE role_arn = $1 AND state <> 'DELETED' AND NOT (account_id = $2 AND instance_id = $3)",
        )
        .bind(&observed.role_arn)
        .bind(key.account_id.as_str())
        .bind(key.instance_id.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        if !owners.is_empty() {
            return Err(elsewhere());
        }
        let updated = sqlx::query_as::<_, LinkedRoleRow>(sqlx::AssertSqlSafe(format!(
            "UPDATE linked_roles SET state = 'ACTIVE', role_name = $3, role_arn = $4, role_id = $5, \
             path = $6, description = $7, iam_create_time = $8, last_used_time = $9, \
             last_used_region = $10, adopted = $11, deletion_task_id = NULL, deletion_failure = NULL, \
             lease_owner = NULL, lease_expires = NULL, revision = revision + 1, update_time = $12 \
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
        .fetch_one(&mut *tx)
        .await;
        let updated = match updated {
            Ok(row) => row,
            // The unique index on role_arn: another record took it meanwhile.
            Err(e) if is_unique_violation(&e) => return Err(elsewhere()),
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
        updated.to_linked_role()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db linked_role_release", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "linked_role_release"))]
    async fn linked_role_release(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        owner: &str,
        nothing_created: bool,
    ) -> Result<()> {
        ctx.check_visible(&key.account_id, &key.linked_role_name())?;
        ctx.check_role(Role::Operator, "EnsureLinkedRole")?;
        let mut tx = begin(&self.pool, &scope_setting(ctx))
            .await
            .map_err(db_error)?;
        instance_select_in_txn(&mut tx, key).await?;
        let Some(row) = linked_role_select_in_txn(&mut tx, key).await? else {
            return Ok(());
        };
        if row.lease_owner.as_deref() != Some(owner) {
            return Ok(());
        }
        let now = now();
        if nothing_created {
            sqlx::query(
                "UPDATE linked_roles SET state = 'ABSENT', lease_owner = NULL, lease_expires = NULL, \
                 revision = revision + 1, update_time = $3 WHERE account_id = $1 AND instance_id = $2",
            )
            .bind(key.account_id.as_str())
            .bind(key.instance_id.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            instance_set_role_state_in_txn(&mut tx, key, LinkedRoleState::Absent).await?;
        } else {
            // Free for a caller's ensure at once; the background resume waits
            // a little (lease_expires), so an IAM outage is not hammered.
            sqlx::query(
                "UPDATE linked_roles SET lease_owner = NULL, lease_expires = $4, \
                 revision = revision + 1, update_time = $3 WHERE account_id = $1 AND instance_id = $2",
            )
            .bind(key.account_id.as_str())
            .bind(key.instance_id.as_str())
            .bind(now)
            .bind(now + chrono::Duration::seconds(5))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        audit_write_in_txn(
            &mut tx,
            ctx,
            &key.account_id,
            &key.linked_role_name(),
            "OK",
            if nothing_created {
                "gave up the ensure workflow: nothing was created, back to ABSENT".to_owned()
            } else {
                "gave up the ensure workflow: left CREATING for the next attempt to resume"
                    .to_owned()
            },
            false,
        )
        .await?;
        commit_audited(tx, ctx).await?;
        Ok(())
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db linked_role_set_description", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "linked_role_set_description"))]
    async fn linked_role_set_description(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        expected: Option<Revision>,
        description: &str,
    ) -> Result<LinkedRole> {
        let name = key.linked_role_name();
        ctx.check_visible(&key.account_id, &name)?;
        ctx.check_role(Role::Operator, "UpdateLinkedRoleDescription")?;
        let mut tx = begin(&self.pool, &scope_setting(ctx))
            .await
            .map_err(db_error)?;
        instance_select_in_txn(&mut tx, key)
            .await?
            .ok_or_else(|| Error::not_found(key.name()))?;
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
        .map_err(db_error)?;
        audit_in_txn(
            &mut tx,
            ctx,
            &key.account_id,
            &name,
            "OK",
            format!("recorded the new description {description:?}"),
        )
        .await?;
        commit_audited(tx, ctx).await?;
        updated.to_linked_role()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db operation_begin_retire", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "operation_begin_retire"))]
    async fn operation_begin_retire(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        expected: Option<Revision>,
        verb: OperationVerb,
        request_id: Option<&str>,
    ) -> Result<OperationRecord> {
        let name = key.linked_role_name();
        ctx.check_visible(&key.account_id, &name)?;
        ctx.check_role(Role::Operator, "RetireLinkedRole")?;
        let mut tx = begin(&self.pool, &scope_setting(ctx))
            .await
            .map_err(db_error)?;
        instance_select_in_txn(&mut tx, key)
            .await?
            .ok_or_else(|| Error::not_found(key.name()))?;
        let running: Option<OperationRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {OPERATION_COLUMNS} FROM operations \
             WHERE account_id = $1 AND instance_id = $2 AND done = FALSE"
        )))
        .bind(key.account_id.as_str())
        .bind(key.instance_id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        if let Some(running) = running {
            let running = running.into_record()?;
            if running.verb != verb {
                return Err(Error::operation_in_progress(name, running.verb.as_str()));
            }
            // Retiring again while IAM deletes returns the same operation.
            return Ok(running);
        }
        let row = linked_role_select_in_txn(&mut tx, key).await?;
        let Some(row) = row.filter(|r| r.state == "ACTIVE" || r.state == "DELETION_FAILED") else {
            return Err(Error::failed_precondition(
                Reason::FailedPrecondition,
                format!("{name} has no role to retire (it is not ACTIVE or DELETION_FAILED)"),
            ));
        };
        check_revision(expected, Revision(row.revision), &name)?;
        // One role serves one instance record: never retire a role another
        // record still holds.
        let others: Vec<(String,)> = sqlx::query_as(
            "SELECT instance_id FROM linked_roles WHERE role_arn = $1 AND state <> 'DELETED' \
             AND NOT (account_id = $2 AND instance_id = $3)",
        )
        .bind(&row.role_arn)
        .bind(key.account_id.as_str())
        .bind(key.instance_id.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        if !others.is_empty() {
            return Err(Error::failed_precondition(
                Reason::RoleOwnedElsewhere,
                "another instance record still references this role: retire refused",
            ));
        }
        let now = now();
        sqlx::query(
            "UPDATE linked_roles SET state = 'DELETING', deletion_task_id = NULL, \
             revision = revision + 1, update_time = $3 WHERE account_id = $1 AND instance_id = $2",
        )
        .bind(key.account_id.as_str())
        .bind(key.instance_id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        instance_set_role_state_in_txn(&mut tx, key, LinkedRoleState::Deleting).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let created = sqlx::query_as::<_, OperationRow>(sqlx::AssertSqlSafe(format!(
            "INSERT INTO operations (operation_id, account_id, instance_id, verb, done, principal, \
             request_id, status_message, next_attempt, create_time, update_time) \
             VALUES ($1, $2, $3, $4, FALSE, $5, $6, 'deleting the role in IAM', $7, $7, $7) \
             RETURNING {OPERATION_COLUMNS}"
        )))
        .bind(&id)
        .bind(key.account_id.as_str())
        .bind(key.instance_id.as_str())
        .bind(verb.as_str())
        .bind(&ctx.caller().principal)
        .bind(request_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        audit_in_txn(
            &mut tx,
            ctx,
            &key.account_id,
            &name,
            "OK",
            format!(
                "started operations/{id} ({}): the role goes DELETING",
                verb.as_str()
            ),
        )
        .await?;
        commit_audited(tx, ctx).await?;
        created.into_record()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db operation_record_done", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "operation_record_done"))]
    async fn operation_record_done(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        verb: OperationVerb,
        request_id: Option<&str>,
    ) -> Result<OperationRecord> {
        ctx.check_visible(&key.account_id, &key.name())?;
        ctx.check_role(Role::Operator, "DeleteInstance")?;
        let now = now();
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = begin(&self.pool, &scope_setting(ctx))
            .await
            .map_err(db_error)?;
        let record = sqlx::query_as::<_, OperationRow>(sqlx::AssertSqlSafe(format!(
            "INSERT INTO operations (operation_id, account_id, instance_id, verb, done, principal, \
             request_id, status_message, next_attempt, create_time, end_time, update_time) \
             VALUES ($1, $2, $3, $4, TRUE, $5, $6, 'done', $7, $7, $7, $7) \
             RETURNING {OPERATION_COLUMNS}"
        )))
        .bind(&id)
        .bind(key.account_id.as_str())
        .bind(key.instance_id.as_str())
        .bind(verb.as_str())
        .bind(&ctx.caller().principal)
        .bind(request_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?
        .into_record()?;
        audit_in_txn(
            &mut tx,
            ctx,
            &key.account_id,
            &key.name(),
            "OK",
            format!("recorded operations/{id} ({}) as done", verb.as_str()),
        )
        .await?;
        commit_audited(tx, ctx).await?;
        Ok(record)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db operation_get", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "operation_get"))]
    async fn operation_get(
        &self,
        ctx: &RequestContext,
        operation_id: &str,
    ) -> Result<OperationRecord> {
        let name = format!("operations/{operation_id}");
        ctx.check_role(Role::Viewer, "GetOperation")?;
        let row: Option<OperationRow> = sqlx::query_as(sqlx::AssertSqlSafe(scoped_sql(
            &format!("SELECT {OPERATION_COLUMNS} FROM operations WHERE operation_id = $1"),
            2,
        )))
        .bind(operation_id)
        .bind(scope_setting(ctx))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        let record = row
            .ok_or_else(|| Error::not_found(name.clone()))?
            .into_record()?;
        // Another tenant's operation is NOT_FOUND, exactly like a missing one.
        ctx.check_visible(&record.account_id, &name)?;
        Ok(record)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db operation_list", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "operation_list"))]
    async fn operation_list(
        &self,
        ctx: &RequestContext,
        page: &PageRequest,
    ) -> Result<Page<OperationRecord>> {
        ctx.check_role(Role::Viewer, "ListOperations")?;
        let digest = query_digest(&["ListOperations", &ctx.caller().principal]);
        let after = open_page_token(&self.page_tokens, page, &digest, 1)?;
        let mut query = QueryBuilder::<Db>::new("");
        push_scoped_start(&mut query, scope_setting(ctx));
        query.push(format!(
            "SELECT {OPERATION_COLUMNS} FROM operations WHERE 1 = 1"
        ));
        if let Some(scope) = scope_json(ctx) {
            query.push(" AND ");
            push_scope(&mut query, scope);
        }
        if let Some(after) = after {
            query.push(" AND operation_id > ");
            query.push_bind(after[0].clone());
        }
        query.push(" ORDER BY operation_id LIMIT ");
        query.push_bind(i64::from(page.size) + 1);
        push_scoped_end(&mut query);
        query.push(" ORDER BY operation_id");
        let rows: Vec<OperationRow> = query
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let items = rows
            .into_iter()
            .map(OperationRow::into_record)
            .collect::<Result<Vec<_>>>()?;
        Ok(page_of(
            &self.page_tokens,
            &digest,
            page.size,
            items,
            |last| vec![last.operation_id.clone()],
        ))
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db operation_claim_due", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "operation_claim_due"))]
    async fn operation_claim_due(
        &self,
        ctx: &RequestContext,
        owner: &str,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<OperationRecord>> {
        ctx.check_role(Role::Admin, "claim background work")?;
        let now = now();
        let lease_expires = now
            + chrono::Duration::from_std(lease).unwrap_or_else(|_| chrono::Duration::seconds(30));
        let mut tx = begin(&self.pool, &scope_setting(ctx))
            .await
            .map_err(db_error)?;
        let due: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT operation_id FROM operations WHERE done = FALSE AND next_attempt <= $1 \
             AND (lease_expires IS NULL OR lease_expires < $1) \
             ORDER BY next_attempt LIMIT $2{SKIP_LOCKED}"
        )))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        let mut claimed = Vec::with_capacity(due.len());
        for (id,) in due {
            let row = sqlx::query_as::<_, OperationRow>(sqlx::AssertSqlSafe(format!(
                "UPDATE operations SET lease_owner = $2, lease_expires = $3, attempts = attempts + 1, \
                 update_time = $4 WHERE operation_id = $1 RETURNING {OPERATION_COLUMNS}"
            )))
            .bind(&id)
            .bind(owner)
            .bind(lease_expires)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
            claimed.push(row.into_record()?);
        }
        tx.commit().await.map_err(db_error)?;
        Ok(claimed)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db operation_step", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "operation_step"))]
    async fn operation_step(
        &self,
        ctx: &RequestContext,
        operation_id: &str,
        owner: &str,
        step: OperationStep,
    ) -> Result<OperationRecord> {
        ctx.check_role(Role::Admin, "record background work")?;
        let name = format!("operations/{operation_id}");
        let mut tx = begin(&self.pool, &scope_setting(ctx))
            .await
            .map_err(db_error)?;
        let (operation, holder) = operation_select_in_txn(&mut tx, operation_id)
            .await?
            .ok_or_else(|| Error::not_found(name.clone()))?;
        // A step recorded twice changes nothing: a finished operation stays
        // as it finished.
        if operation.done {
            return Ok(operation);
        }
        if holder.as_deref() != Some(owner) {
            return Err(Error::operation_in_progress(name, "another worker"));
        }
        let key = operation.key();
        let now = now();
        let later = |d: std::time::Duration| {
            now + chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::seconds(5))
        };
        let set_role = |state: &'static str| {
            format!(
                "UPDATE linked_roles SET state = '{state}', revision = revision + 1, update_time = $3 \
                 WHERE account_id = $1 AND instance_id = $2"
            )
        };
        let finish = |error: Option<OperationError>,
                      response: Option<LinkedRole>,
                      message: &str| { (error, response, message.to_owned()) };
        let outcome = match step {
            OperationStep::TaskStarted { task_id, retry_in } => {
                sqlx::query(
                    "UPDATE linked_roles SET deletion_task_id = $3 WHERE account_id = $1 AND instance_id = $2",
                )
                .bind(key.account_id.as_str())
                .bind(key.instance_id.as_str())
                .bind(&task_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                sqlx::query(
                    "UPDATE operations SET status_message = $2, next_attempt = $3, lease_owner = NULL, \
                     lease_expires = NULL, update_time = $4 WHERE operation_id = $1",
                )
                .bind(operation_id)
                .bind(format!("iam is deleting the role (task {task_id})"))
                .bind(later(retry_in))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                None
            }
            OperationStep::Wait { retry_in, message } => {
                sqlx::query(
                    "UPDATE operations SET status_message = $2, next_attempt = $3, lease_owner = NULL, \
                     lease_expires = NULL, update_time = $4 WHERE operation_id = $1",
                )
                .bind(operation_id)
                .bind(message)
                .bind(later(retry_in))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                None
            }
            OperationStep::Deleted => {
                sqlx::query(sqlx::AssertSqlSafe(set_role("DELETED")))
                    .bind(key.account_id.as_str())
                    .bind(key.instance_id.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                sqlx::query(
                    "UPDATE linked_roles SET deletion_failure = NULL WHERE account_id = $1 AND instance_id = $2",
                )
                .bind(key.account_id.as_str())
                .bind(key.instance_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                instance_set_role_state_in_txn(&mut tx, &key, LinkedRoleState::Deleted).await?;
                let role = linked_role_select_in_txn(&mut tx, &key)
                    .await?
                    .map(|r| r.to_linked_role())
                    .transpose()?;
                if operation.verb == OperationVerb::Delete {
                    // The role is gone: the record goes too (with its
                    // linked role row, by cascade).
                    sqlx::query("DELETE FROM instances WHERE account_id = $1 AND instance_id = $2")
                        .bind(key.account_id.as_str())
                        .bind(key.instance_id.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    Some(finish(
                        None,
                        None,
                        "the role was deleted and the instance removed",
                    ))
                } else {
                    Some(finish(None, role, "the role was deleted"))
                }
            }
            OperationStep::Failed(failure) => {
                sqlx::query(sqlx::AssertSqlSafe(set_role("DELETION_FAILED")))
                    .bind(key.account_id.as_str())
                    .bind(key.instance_id.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                sqlx::query(
                    "UPDATE linked_roles SET deletion_failure = $3 WHERE account_id = $1 AND instance_id = $2",
                )
                .bind(key.account_id.as_str())
                .bind(key.instance_id.as_str())
                .bind(Json(&failure))
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                instance_set_role_state_in_txn(&mut tx, &key, LinkedRoleState::DeletionFailed)
                    .await?;
                let message = format!("iam could not delete the role: {}", failure.reason);
                Some(finish(
                    Some(OperationError {
                        reason: Reason::RoleInUse.as_str().to_owned(),
                        message: message.clone(),
                        failure: Some(failure),
                    }),
                    None,
                    &message,
                ))
            }
            OperationStep::Abort(error) => {
                // Nothing was deleted: the role is as it was before.
                sqlx::query(sqlx::AssertSqlSafe(set_role("ACTIVE")))
                    .bind(key.account_id.as_str())
                    .bind(key.instance_id.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                instance_set_role_state_in_txn(&mut tx, &key, LinkedRoleState::Active).await?;
                let message = error.message.clone();
                Some(finish(Some(error), None, &message))
            }
        };
        let step_detail = match &outcome {
            None => "recorded a step of the deletion (still running)".to_owned(),
            Some((Some(error), _, message)) => {
                format!(
                    "operations/{operation_id} finished with {}: {message}",
                    error.reason
                )
            }
            Some((None, _, message)) => format!("operations/{operation_id} finished: {message}"),
        };
        audit_in_txn(
            &mut tx,
            ctx,
            &key.account_id,
            &key.linked_role_name(),
            if matches!(&outcome, Some((Some(_), _, _))) {
                "FAILED_PRECONDITION"
            } else {
                "OK"
            },
            step_detail,
        )
        .await?;
        if let Some((error, response, message)) = outcome {
            sqlx::query(
                "UPDATE operations SET done = TRUE, error = $2, response = $3, status_message = $4, \
                 end_time = $5, lease_owner = NULL, lease_expires = NULL, update_time = $5 \
                 WHERE operation_id = $1",
            )
            .bind(operation_id)
            .bind(error.as_ref().map(Json))
            .bind(response.as_ref().map(Json))
            .bind(message)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        let (record, _) = operation_select_in_txn(&mut tx, operation_id)
            .await?
            .ok_or_else(|| Error::not_found(name))?;
        commit_audited(tx, ctx).await?;
        Ok(record)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db operation_release_all", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "operation_release_all"))]
    async fn operation_release_all(&self, ctx: &RequestContext, owner: &str) -> Result<()> {
        ctx.check_role(Role::Admin, "release background work")?;
        let mut tx = begin(&self.pool, &scope_setting(ctx))
            .await
            .map_err(db_error)?;
        sqlx::query(
            "UPDATE operations SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = $1",
        )
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db audit_append", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "audit_append"))]
    async fn audit_append(&self, ctx: &RequestContext, event: NewAuditEvent) -> Result<()> {
        // Only a target the caller could see is ever recorded (the context
        // sets it in check_visible); check again, so that a failure event
        // can never land in another tenant's trail.
        ctx.check_visible(&event.account_id, &event.resource)?;
        let mut tx = begin(&self.pool, &scope_setting(ctx))
            .await
            .map_err(db_error)?;
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

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db audit_list", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "audit_list"))]
    async fn audit_list(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>> {
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
        let after = open_page_token(&self.page_tokens, page, &digest, 1)?;
        let mut query = QueryBuilder::<Db>::new("");
        push_scoped_start(&mut query, scope_setting(ctx));
        query.push(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE account_id = "
        ));
        query.push_bind(account.as_str().to_owned());
        if let Some(method) = &filter.method {
            // The full method, or its short name (`CreateInstance` matches
            // `slrgov.v1.InstanceService/CreateInstance`); no LIKE, so the
            // value's `%` and `_` mean themselves.
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
        if let Some(after) = after {
            query.push(" AND event_id < ");
            query.push_bind(after[0].clone());
        }
        query.push(" ORDER BY event_id DESC LIMIT ");
        query.push_bind(i64::from(page.size) + 1);
        push_scoped_end(&mut query);
        query.push(" ORDER BY event_id DESC");
        let rows: Vec<AuditRow> = query
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let items = rows
            .into_iter()
            .map(AuditRow::into_event)
            .collect::<Result<Vec<_>>>()?;
        Ok(page_of(
            &self.page_tokens,
            &digest,
            page.size,
            items,
            |last| vec![last.event_id.clone()],
        ))
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db linked_role_list_stale", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "linked_role_list_stale"))]
    async fn linked_role_list_stale(
        &self,
        ctx: &RequestContext,
        limit: u32,
    ) -> Result<Vec<InstanceKey>> {
        ctx.check_role(Role::Admin, "resume workflows")?;
        let rows: Vec<(String, String, Option<DateTime<Utc>>)> =
            sqlx::query_as(sqlx::AssertSqlSafe(scoped_sql(
                "SELECT account_id, instance_id, lease_expires FROM linked_roles \
                 WHERE state = 'CREATING' ORDER BY update_time LIMIT $1",
                2,
            )))
            .bind(i64::from(limit) * 4)
            .bind(scope_setting(ctx))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let now = now();
        rows.into_iter()
            .filter(|(_, _, lease)| lease.is_none_or(|t| t < now))
            .take(limit as usize)
            .map(|(account, instance, _)| {
                Ok(InstanceKey {
                    account_id: AccountId::parse(&account)
                        .map_err(|e| corrupt("linked_roles.account_id", e))?,
                    instance_id: InstanceId::parse(&instance)
                        .map_err(|e| corrupt("linked_roles.instance_id", e))?,
                })
            })
            .collect()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "db gauges", otel.kind = "client", db.system.name = DB_SYSTEM, db.operation.name = "gauges"))]
    async fn gauges(&self, ctx: &RequestContext) -> Result<Vec<GaugeRow>> {
        ctx.check_role(Role::Admin, "read the telemetry gauges")?;
        let rows: Vec<(String, String, i64, Option<DateTime<Utc>>)> =
            sqlx::query_as(sqlx::AssertSqlSafe(scoped_sql(
                "SELECT kind, state, COUNT(*) AS n, MIN(since) AS oldest FROM ( \
                 SELECT 'linked_role' AS kind, state, update_time AS since FROM linked_roles \
                 UNION ALL \
                 SELECT 'operation' AS kind, 'RUNNING' AS state, create_time AS since \
                 FROM operations WHERE NOT done) AS t GROUP BY kind, state",
                1,
            )))
            .bind(scope_setting(ctx))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(kind, state, count, oldest)| GaugeRow {
                kind,
                state,
                count: u64::try_from(count).unwrap_or(0),
                oldest,
            })
            .collect())
    }
}
