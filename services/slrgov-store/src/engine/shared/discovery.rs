//! Discovery: what Amazon Connect says about each instance, recorded
//! (registering the instances the registry did not hold, marking the ones
//! Connect no longer knows VANISHED), and the syncs that ask it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use slrgov_domain::model::{ConnectView, ObservedState, SeenInstance};
use slrgov_domain::names::{InstanceKey, account_name};
use slrgov_domain::types::{AccountId, InstanceAlias};
use slrgov_domain::workflow::{NewWorkflow, WorkflowKind, WorkflowRecord};
use slrgov_domain::{Error, RequestContext, Result, Role};
use sqlx::QueryBuilder;
use sqlx::types::Json;
use tracing::Instrument;

use super::request_ids::Answer;
use super::rows::{WORKFLOW_COLUMNS, WorkflowRow};
use super::txn::{
    Tx, account_select_in_txn, audit_in_txn, begin_scoped, commit_audited, instance_select_in_txn,
    scope_setting,
};
use super::workflows::workflow_insert_in_txn;
use super::{Db, EngineStore, FOR_UPDATE, push_json_values, scoped_sql};
use crate::engine::{now, to_micros};
use crate::error::{corrupt, db_error};
use crate::{DiscoveryStore, Idempotency, Listed, Observation, ObserveCounts, SyncStart};

/// The running phases, as SQL.
const RUNNING: &str = "('RUNNING', 'UNWINDING')";

/// Records one instance Connect described; returns whether the registry
/// gained it, and whether a visible field changed.
async fn observe_one_in_txn(
    tx: &mut Tx,
    account: &AccountId,
    region: &slrgov_domain::types::RegionCode,
    seen: &SeenInstance,
    at: DateTime<Utc>,
) -> Result<(bool, bool)> {
    let key = InstanceKey {
        account_id: account.clone(),
        instance_id: seen.instance_id.clone(),
    };
    let created_time = seen.instance_create_time.map(to_micros);
    let Some(current) = instance_select_in_txn(tx, &key).await? else {
        sqlx::query(
            "INSERT INTO instances (account_id, instance_id, instance_alias, region, \
             instance_create_time, features, linked_role_state, connect_arn, connect_status, \
             service_role_arn, identity_management_type, observed_state, last_seen_time, \
             sync_time, revision, create_time, update_time) \
             VALUES ($1, $2, $3, $4, $5, $6, 'ABSENT', $7, $8, $9, $10, 'OBSERVED', $11, $11, 1, $11, $11)",
        )
        .bind(account.as_str())
        .bind(seen.instance_id.as_str())
        .bind(seen.instance_alias.as_ref().map(InstanceAlias::as_str))
        .bind(region.as_str())
        .bind(created_time)
        .bind(Json(slrgov_domain::model::InstanceFeatures::default()))
        .bind(&seen.connect_arn)
        .bind(seen.connect_status.map(|s| s.as_str()))
        .bind(&seen.service_role_arn)
        .bind(&seen.identity_management_type)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
        return Ok((true, false));
    };
    let alias = seen
        .instance_alias
        .clone()
        .or_else(|| current.instance_alias.clone());
    let create_time = created_time.or(current.instance_create_time);
    let connect = ConnectView {
        connect_arn: Some(seen.connect_arn.clone()),
        connect_status: seen.connect_status,
        service_role_arn: seen.service_role_arn.clone(),
        identity_management_type: seen.identity_management_type.clone(),
        observed_state: ObservedState::Observed,
        last_seen_time: current.connect.last_seen_time,
        sync_time: current.connect.sync_time,
    };
    // A visible field changes: the etag moves (AIP-154); the times of the
    // look alone do not.
    let changed = alias != current.instance_alias
        || create_time != current.instance_create_time
        || connect != current.connect;
    sqlx::query(
        "UPDATE instances SET instance_alias = $3, instance_create_time = $4, connect_arn = $5, \
         connect_status = $6, service_role_arn = $7, identity_management_type = $8, \
         observed_state = 'OBSERVED', last_seen_time = $9, sync_time = $9, \
         revision = revision + $10, update_time = CASE WHEN $10 = 1 THEN $9 ELSE update_time END \
         WHERE account_id = $1 AND instance_id = $2",
    )
    .bind(account.as_str())
    .bind(seen.instance_id.as_str())
    .bind(alias.as_ref().map(InstanceAlias::as_str))
    .bind(create_time)
    .bind(&seen.connect_arn)
    .bind(seen.connect_status.map(|s| s.as_str()))
    .bind(&seen.service_role_arn)
    .bind(&seen.identity_management_type)
    .bind(at)
    .bind(i64::from(changed))
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok((false, changed))
}

/// Marks VANISHED the OBSERVED instances of the region that Connect did not
/// list (`Everything`), or the missing ones asked for (`Missing`).
async fn vanish_in_txn(tx: &mut Tx, observation: &Observation, at: DateTime<Utc>) -> Result<u64> {
    let mut query =
        QueryBuilder::<Db>::new("UPDATE instances SET observed_state = 'VANISHED', sync_time = ");
    query.push_bind(at);
    query.push(", revision = revision + 1, update_time = ");
    query.push_bind(at);
    query.push(" WHERE account_id = ");
    query.push_bind(observation.account.as_str().to_owned());
    query.push(" AND region = ");
    query.push_bind(observation.region.as_str().to_owned());
    query.push(" AND observed_state = 'OBSERVED'");
    if let Some(asked_at) = observation.asked_at {
        // Seen by a newer listing, recorded first: not this one's to vanish.
        query.push(" AND (last_seen_time IS NULL OR last_seen_time < ");
        query.push_bind(asked_at);
        query.push(")");
    }
    query.push(" AND instance_id ");
    let ids = |ids: Vec<String>| serde_json::Value::from(ids).to_string();
    match &observation.listed {
        Listed::Seen => return Ok(0),
        Listed::Everything => {
            query.push("NOT IN ");
            push_json_values(
                &mut query,
                ids(observation
                    .seen
                    .iter()
                    .map(|s| s.instance_id.to_string())
                    .collect()),
            );
        }
        Listed::Missing(missing) => {
            query.push("IN ");
            push_json_values(
                &mut query,
                ids(missing.iter().map(ToString::to_string).collect()),
            );
        }
    }
    let vanished = query
        .build()
        .execute(&mut **tx)
        .await
        .map_err(db_error)?
        .rows_affected();
    Ok(vanished)
}

#[async_trait]
impl DiscoveryStore for EngineStore {
    async fn instance_observe(
        &self,
        ctx: &RequestContext,
        observation: Observation,
    ) -> Result<ObserveCounts> {
        async move {
            let parent = account_name(&observation.account);
            ctx.check_visible(&observation.account, &parent)?;
            ctx.check_role(Role::Operator, "record what Amazon Connect says")?;
            let at = now();
            let mut tx = begin_scoped(&self.pool, ctx).await?;
            account_select_in_txn(&mut tx, &observation.account, false)
                .await?
                .ok_or_else(|| Error::not_found(parent.clone()))?;
            let mut counts = ObserveCounts::default();
            let mut changed = Vec::new();
            for seen in &observation.seen {
                counts.seen += 1;
                let (created, updated) = observe_one_in_txn(
                    &mut tx,
                    &observation.account,
                    &observation.region,
                    seen,
                    at,
                )
                .await?;
                if created {
                    counts.created += 1;
                    changed.push(format!("{} registered", seen.instance_id));
                } else if updated {
                    counts.updated += 1;
                    changed.push(format!("{} updated", seen.instance_id));
                }
            }
            counts.vanished =
                u32::try_from(vanish_in_txn(&mut tx, &observation, at).await?).unwrap_or(u32::MAX);
            if counts.created + counts.updated + counts.vanished == 0 {
                // Nothing the registry shows changed: the look's times only.
                tx.commit().await.map_err(db_error)?;
                return Ok(counts);
            }
            audit_in_txn(
                &mut tx,
                ctx,
                &observation.account,
                &parent,
                "OK",
                format!(
                    "amazon connect in {}: {} seen, {} registered, {} updated, {} vanished ({})",
                    observation.region,
                    counts.seen,
                    counts.created,
                    counts.updated,
                    counts.vanished,
                    changed.join(", ")
                ),
            )
            .await?;
            commit_audited(tx, ctx).await?;
            Ok(counts)
        }
        .instrument(db_span!("instance_observe"))
        .await
    }

    async fn sync_begin(
        &self,
        ctx: &RequestContext,
        start: NewWorkflow,
        idempotency: Option<&Idempotency>,
        not_since: Option<std::time::Duration>,
    ) -> Result<SyncStart> {
        async move {
            let account = start.target.account_id.clone();
            let name = start.target.name.clone();
            let kind = start.kind;
            let action = match kind {
                WorkflowKind::Sync => "SyncInstances",
                WorkflowKind::Reconcile => "start a reconcile pass",
                other => {
                    return Err(Error::internal(format!(
                        "sync_begin starts a sync or a reconcile pass, not a {other} workflow"
                    )));
                }
            };
            ctx.check_visible(&account, &name)?;
            ctx.check_role(Role::Operator, action)?;
            let mut tx = begin_scoped(&self.pool, ctx).await?;
            if let Some(first) = self
                .request_id_claim_in_txn(&mut tx, ctx, &account, idempotency)
                .await?
            {
                return Ok(SyncStart::Replayed(first));
            }
            // The account row is the lock every sync (or reconcile) start of
            // the account takes first: two starts never both insert.
            account_select_in_txn(&mut tx, &account, true)
                .await?
                .ok_or_else(|| Error::not_found(account_name(&account)))?;
            let one_account = name != "accounts/-";
            // A recent one counts only for the schedule (`not_since`).
            let since = not_since.map_or(now() + chrono::Duration::days(1), |interval| {
                now() - chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::hours(1))
            });
            // The kind is inlined (one of two literals), so that the partial
            // indexes of the running and recent syncs and passes apply.
            let running: Option<WorkflowRecord> = if one_account {
                sqlx::query_as::<_, WorkflowRow>(sqlx::AssertSqlSafe(format!(
                    "SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE account_id = $1 \
                     AND kind = '{kind}' AND target <> 'accounts/-' \
                     AND (phase IN {RUNNING} OR create_time > $2) \
                     ORDER BY create_time DESC LIMIT 1{FOR_UPDATE}"
                )))
                .bind(account.as_str())
                .bind(since)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?
                .map(WorkflowRow::into_record)
                .transpose()?
            } else {
                None
            };
            let (record, started) = match running {
                Some(running) => (running, false),
                None => (
                    workflow_insert_in_txn(&mut tx, ctx, &start, None, None).await?,
                    true,
                ),
            };
            self.request_id_answer_in_txn(
                &mut tx,
                ctx,
                &account,
                idempotency,
                Answer::Workflow(&record.id),
            )
            .await?;
            if !started {
                tx.commit().await.map_err(db_error)?;
                return Ok(SyncStart::Running(Box::new(record)));
            }
            audit_in_txn(
                &mut tx,
                ctx,
                &account,
                &name,
                "OK",
                format!("started operations/{} ({kind} of {name})", record.id),
            )
            .await?;
            commit_audited(tx, ctx).await?;
            Ok(SyncStart::Started(Box::new(record)))
        }
        .instrument(db_span!("sync_begin"))
        .await
    }

    async fn sync_due(
        &self,
        ctx: &RequestContext,
        kind: WorkflowKind,
        interval: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<AccountId>> {
        async move {
            // A reconcile pass begins with a sync: it counts as one.
            let kinds = match kind {
                WorkflowKind::Sync => "('sync', 'reconcile')",
                WorkflowKind::Reconcile => "('reconcile')",
                other => {
                    return Err(Error::internal(format!(
                        "sync_due schedules syncs or reconcile passes, not {other} workflows"
                    )));
                }
            };
            ctx.check_role(Role::Admin, "schedule syncs")?;
            let since =
                now() - chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::hours(1));
            let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(scoped_sql(
                &format!(
                    "SELECT a.account_id FROM accounts a WHERE NOT EXISTS ( \
                     SELECT 1 FROM workflows w WHERE w.account_id = a.account_id \
                     AND w.kind IN {kinds} AND w.target <> 'accounts/-' \
                     AND (w.create_time > $1 OR w.phase IN {RUNNING})) \
                     ORDER BY a.account_id LIMIT $2"
                ),
                3,
            )))
            .bind(since)
            .bind(i64::from(limit))
            .bind(scope_setting(ctx))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
            rows.into_iter()
                .map(|(account,)| {
                    AccountId::parse(&account).map_err(|e| corrupt("accounts.account_id", e))
                })
                .collect()
        }
        .instrument(db_span!("sync_due"))
        .await
    }
}
