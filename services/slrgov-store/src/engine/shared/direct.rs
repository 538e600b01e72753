//! Direct writes: the common case of a write as one statement, one round
//! trip, where its full transaction takes four to six (CreateInstance,
//! UpdateInstance and UpdateAccount; issue 15's
//! measurements: each round trip costs about 0.08 ms of this machine's
//! CPU, more than the service's own code).
//!
//! One statement does what the transaction does, with the same guarantees:
//! it sets the caller's scope first (row-level security is forced, and an
//! unset scope shows no rows, so a scope set late fails closed), checks the
//! etag and the account's partition in its `WHERE`, makes the change, and
//! inserts the audit event in a data-modifying CTE: one implicit
//! transaction, all or nothing. When the statement changes no row (no such
//! instance, a stale etag, a cross-partition ARN), nothing was written and
//! the caller runs the full transaction, which names the reason exactly.
//! A request with a request id always takes the full transaction: its claim
//! and stored answer (the response, serialized by the service) are not
//! expressed here. Nor are the linked-role record's updates: each follows
//! an IAM call that takes 100 times a round trip, and most check rules
//! (sole owner, the workflow's step) that need the rows they read.
//!
//! Only where a statement is a round trip ([`DIRECT_WRITES`]: Postgres).

use slrgov_domain::model::{
    Account, AccountPatch, ExternalIdChange, Instance, InstanceFeatures, InstancePatch,
};
use slrgov_domain::names::{InstanceKey, account_name};
use slrgov_domain::types::{
    AccountId, Arn, InstanceAlias, Partition, Revision, parse_access_role_arn,
};
use slrgov_domain::{Error, RequestContext, Result};
use sqlx::types::Json;

use super::rows::{ACCOUNT_COLUMNS, AccountRow, INSTANCE_COLUMNS, InstanceRow};
use super::txn::scope_setting;
use super::{DIRECT_WRITES, EngineStore};
use crate::engine::{now, to_micros};
use crate::error::{db_error, is_foreign_key_violation, is_unique_violation};

/// Binds the audit event's columns a direct write inserts, in the order of
/// its statement's last parameters: the event id, the caller's principal,
/// the method, `resource`, the request id, `detail` and the AWS calls.
macro_rules! bind_audit {
    ($query:expr, $ctx:expr, $resource:expr, $detail:expr, $calls:expr) => {
        $query
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(&$ctx.caller().principal)
            .bind(&$ctx.method)
            .bind($resource)
            .bind(&$ctx.correlation_id)
            .bind($detail)
            .bind(Json($calls))
    };
}

/// The partitions an account may be in for these features to be valid in
/// it, or `None` when any partition will do (no ARN among them).
fn allowed_partitions(features: &InstanceFeatures) -> Option<Vec<&'static str>> {
    let all = [Partition::Aws, Partition::AwsUsGov, Partition::AwsCn];
    let allowed: Vec<&'static str> = all
        .into_iter()
        .filter(|p| features.partition_violations(*p).is_empty())
        .map(Partition::as_str)
        .collect();
    (allowed.len() < all.len()).then_some(allowed)
}

/// The patch's feature fields as a JSON object of just those keys, to be
/// merged over the stored features (`||`: top-level keys replaced, as
/// [`InstanceFeatures::apply`] replaces whole fields).
fn features_json(patch: &InstancePatch) -> Result<serde_json::Value> {
    let all = super::request_ids::response_json(&patch.features)?;
    let mut set = serde_json::Map::new();
    for field in &patch.feature_fields {
        let name = field.as_str();
        set.insert(
            name.to_owned(),
            all.get(name).cloned().unwrap_or(serde_json::Value::Null),
        );
    }
    Ok(serde_json::Value::Object(set))
}

impl EngineStore {
    /// CreateInstance as one statement: `true` when the instance was
    /// inserted (with its audit event), `false` when nothing was written
    /// and the full transaction must run (see the module). A duplicate is
    /// ALREADY_EXISTS here as there.
    pub(crate) async fn instance_create_direct(
        &self,
        ctx: &RequestContext,
        instance: &Instance,
        detail: &str,
    ) -> Result<bool> {
        if !DIRECT_WRITES {
            return Ok(false);
        }
        // The partition rule of the full path: the account must be in the
        // region's partition, and so must every ARN.
        let partition = instance.region.partition();
        if !instance.features.partition_violations(partition).is_empty() {
            return Ok(false);
        }
        let name = instance.key().name();
        let calls = ctx.audit.stage();
        let inserted = bind_audit!(
            sqlx::query_scalar::<_, i64>(
                "WITH inserted AS ( \
               INSERT INTO instances (account_id, instance_id, instance_alias, region, \
                 instance_create_time, features, linked_role_state, revision, create_time, \
                 update_time) \
               SELECT a.account_id, $2, $3, $4, $5, $6, $7, 1, $8, $8 FROM accounts a \
               WHERE (SELECT set_config('slrgov.scope', $9, true)) IS NOT NULL \
                 AND a.account_id = $1 AND a.partition = $10 \
               RETURNING account_id \
             ), audited AS ( \
               INSERT INTO audit_events (event_id, account_id, time, principal, method, resource, \
                 request_id, outcome, detail, aws_calls) \
               SELECT $11, account_id, $8, $12, $13, $14, $15, 'OK', $16, $17 FROM inserted \
             ) \
             SELECT count(*) FROM inserted",
            )
            .bind(instance.account_id.as_str())
            .bind(instance.instance_id.as_str())
            .bind(instance.instance_alias.as_ref().map(InstanceAlias::as_str))
            .bind(instance.region.as_str())
            .bind(instance.instance_create_time)
            .bind(Json(&instance.features))
            .bind(instance.linked_role_state.as_str())
            .bind(instance.create_time)
            .bind(scope_setting(ctx))
            .bind(partition.as_str()),
            ctx,
            &name,
            detail,
            &calls
        )
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(0) => Ok(false),
            Ok(_) => {
                ctx.audit.written();
                Ok(true)
            }
            Err(e) if is_unique_violation(&e) => Err(Error::already_exists(name)),
            Err(e) if is_foreign_key_violation(&e) => {
                Err(Error::not_found(account_name(&instance.account_id)))
            }
            Err(e) => Err(db_error(e)),
        }
    }

    /// UpdateInstance as one statement: `Some` with the updated instance
    /// when it was written (with its audit event), `None` when nothing was
    /// written and the full transaction must run (see the module).
    pub(crate) async fn instance_update_direct(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        expected: Option<Revision>,
        patch: &InstancePatch,
    ) -> Result<Option<Instance>> {
        if !DIRECT_WRITES {
            return Ok(None);
        }
        // The partition rule of the full path, on what the patch brings:
        // the rest of the record was checked when it was written, and
        // neither the region nor the account's partition can change.
        let mut brought = InstanceFeatures::default();
        brought.apply(&patch.features, &patch.feature_fields);
        let partitions = allowed_partitions(&brought);
        if partitions.as_ref().is_some_and(Vec::is_empty) {
            return Ok(None);
        }
        let name = key.name();
        let detail = format!("updated the instance: {}", patch.describe());
        let calls = ctx.audit.stage();
        let now = now();
        // The scope's subquery is uncorrelated: the planner makes it a
        // one-time filter, evaluated before the scan of `instances` (whose
        // policy then reads the scope). The partition's EXISTS is
        // correlated, so it runs per row, after.
        let sql = format!(
            "WITH updated AS ( \
               UPDATE instances SET \
                 instance_alias = CASE WHEN $3 THEN $4 ELSE instance_alias END, \
                 instance_create_time = CASE WHEN $5 THEN $6 ELSE instance_create_time END, \
                 features = features || $7::jsonb, \
                 revision = revision + 1, update_time = $8 \
               WHERE (SELECT set_config('slrgov.scope', $9, true)) IS NOT NULL \
                 AND account_id = $1 AND instance_id = $2 \
                 AND ($10::bigint IS NULL OR revision = $10) \
                 AND ($11::text IS NULL OR EXISTS (SELECT 1 FROM accounts a \
                      WHERE a.account_id = instances.account_id \
                        AND a.partition = ANY (string_to_array($11, ',')))) \
               RETURNING {INSTANCE_COLUMNS} \
             ), audited AS ( \
               INSERT INTO audit_events (event_id, account_id, time, principal, method, resource, \
                 request_id, outcome, detail, aws_calls) \
               SELECT $12, account_id, $8, $13, $14, $15, $16, 'OK', $17, $18 FROM updated \
             ) \
             SELECT {INSTANCE_COLUMNS} FROM updated"
        );
        let row = bind_audit!(
            sqlx::query_as::<_, InstanceRow>(sqlx::AssertSqlSafe(sql))
                .bind(key.account_id.as_str())
                .bind(key.instance_id.as_str())
                .bind(patch.instance_alias.is_some())
                .bind(
                    patch
                        .instance_alias
                        .as_ref()
                        .and_then(|alias| alias.as_ref().map(InstanceAlias::as_str)),
                )
                .bind(patch.instance_create_time.is_some())
                .bind(patch.instance_create_time.flatten().map(to_micros))
                .bind(Json(features_json(patch)?))
                .bind(now)
                .bind(scope_setting(ctx))
                .bind(expected.map(|r| r.0))
                .bind(partitions.map(|p| p.join(","))),
            ctx,
            &name,
            detail,
            &calls
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        ctx.audit.written();
        row.into_instance().map(Some)
    }

    /// UpdateAccount as one statement: `Some` with the updated account when
    /// it was written (with its audit event), `None` when nothing was
    /// written and the full transaction must run (see the module). The
    /// audit detail is the full path's, formatted by Postgres from the row
    /// as updated (`display_name` quoted as JSON by both).
    pub(crate) async fn account_update_direct(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
        expected: Option<Revision>,
        patch: &AccountPatch,
    ) -> Result<Option<Account>> {
        if !DIRECT_WRITES {
            return Ok(None);
        }
        // A new access role must be in the account's partition: the ARN
        // names one, and the statement requires the account to be in it.
        // An ARN that is not a role of this account is the full path's to
        // refuse, by field.
        let (set_arn, arn, partition) = match &patch.access_role_arn {
            None => (false, None, None),
            Some(None) => (true, None, None),
            Some(Some(value)) => {
                let Some(arn) = Arn::parse(value)
                    .ok()
                    .and_then(|arn| parse_access_role_arn(value, arn.partition(), account).ok())
                else {
                    return Ok(None);
                };
                let partition = arn.partition();
                (true, Some(arn), Some(partition))
            }
        };
        let (set_external_id, external_id) = match &patch.external_id {
            ExternalIdChange::Keep => (false, None),
            ExternalIdChange::Set(id) => (true, Some(id.expose())),
            ExternalIdChange::Clear => (true, None),
        };
        let calls = ctx.audit.stage();
        let sql = format!(
            "WITH updated AS ( \
               UPDATE accounts SET \
                 display_name = CASE WHEN $2 THEN $3 ELSE display_name END, \
                 access_role_arn = CASE WHEN $4 THEN $5 ELSE access_role_arn END, \
                 external_id = CASE WHEN $6 THEN $7 ELSE external_id END, \
                 revision = revision + 1, update_time = $8 \
               WHERE (SELECT set_config('slrgov.scope', $9, true)) IS NOT NULL \
                 AND account_id = $1 \
                 AND ($10::bigint IS NULL OR revision = $10) \
                 AND ($11::text IS NULL OR partition = $11) \
               RETURNING {ACCOUNT_COLUMNS} \
             ), audited AS ( \
               INSERT INTO audit_events (event_id, account_id, time, principal, method, resource, \
                 request_id, outcome, detail, aws_calls) \
               SELECT $12, account_id, $8, $13, $14, $15, $16, 'OK', \
                 format('updated the account: display_name %s, access_role_arn %s, external_id %s', \
                   to_json(display_name)::text, coalesce(access_role_arn, 'unset'), $17::text), \
                 $18 FROM updated \
             ) \
             SELECT * FROM updated"
        );
        let row = bind_audit!(
            sqlx::query_as::<_, AccountRow>(sqlx::AssertSqlSafe(sql))
                .bind(account.as_str())
                .bind(patch.display_name.is_some())
                .bind(patch.display_name.as_deref())
                .bind(set_arn)
                .bind(arn.as_ref().map(Arn::as_str))
                .bind(set_external_id)
                .bind(external_id)
                .bind(now())
                .bind(scope_setting(ctx))
                .bind(expected.map(|r| r.0))
                .bind(partition.map(Partition::as_str)),
            ctx,
            account_name(account),
            external_id_word(&patch.external_id),
            &calls
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        ctx.audit.written();
        row.into_account().map(Some)
    }
}

/// What an update did to the external id, in the audit detail.
pub(crate) fn external_id_word(change: &ExternalIdChange) -> &'static str {
    match change {
        ExternalIdChange::Keep => "kept",
        ExternalIdChange::Set(_) => "replaced",
        ExternalIdChange::Clear => "cleared",
    }
}
