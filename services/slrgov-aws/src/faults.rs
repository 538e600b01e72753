//! A fault-injecting IAM layer that behaves like real AWS where moto does
//! not (iam-slr-facts.md): real IAM's InvalidInput "has been taken",
//! services that refuse custom suffixes, Throttling and ServiceFailure,
//! a role invisible for a while after creation (eventual consistency), and
//! asynchronous deletions that stay IN_PROGRESS and then SUCCEED or FAIL
//! with a RoleUsageList. Every injected error goes through the same
//! classifier as the SDK's, and every call that is not faulted reaches the
//! real client (moto): nothing is skipped.
//!
//! The plan is plain data ([`FaultPlan`], JSON), so the end-to-end tests
//! can hand it to a server process through an environment variable of the
//! test build; the layer also counts calls by operation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::iam::{
    DeletionStatus, IamApi, IamError, RoleInfo, RolePolicy, RoleUsage, classify_code,
};

/// How a faulted deletion ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletionOutcome {
    /// The role is deleted (in the real client) when the task succeeds.
    Succeeded,
    /// IAM refuses: the role stays, the task reports this usage.
    Failed {
        /// The reason IAM gives.
        reason: String,
        /// What uses the role.
        usage: Vec<RoleUsage>,
    },
}

/// What to inject.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultPlan {
    /// Answer a taken name the way real IAM does (InvalidInput "... has
    /// been taken ...") instead of moto's EntityAlreadyExists.
    pub real_name_taken: bool,
    /// Refuse custom suffixes ("Custom suffix is not allowed ...").
    pub refuse_suffix: bool,
    /// Throttle the first N calls of an operation (by trait method name).
    pub throttle: HashMap<String, u32>,
    /// Fail the first N calls of an operation with ServiceFailure.
    pub service_failure: HashMap<String, u32>,
    /// GetRole answers NoSuchEntity for a role this long after its creation.
    pub invisible_after_create_ms: u64,
    /// Deletions stay IN_PROGRESS for this many status polls, then end as
    /// `deletion_outcome` (when set; otherwise the real client deletes).
    pub deletion_in_progress_polls: u32,
    /// How faulted deletions end.
    pub deletion_outcome: Option<DeletionOutcome>,
    /// Hold calls of an operation (by trait method name) this long before
    /// they reach IAM: a process killed meanwhile never made the call.
    pub delay_ms: HashMap<String, u64>,
    /// Throttle an account's calls above a rate, as IAM does: counted
    /// across every process that uses the same plan (a bucket per account
    /// in a Postgres database of its own, the bench's "IAM").
    pub throttle_above: Option<ThrottleAbove>,
}

/// IAM's own rate limit per account, shared by every server process: a
/// call beyond it is answered `Throttling` (and never reaches IAM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleAbove {
    /// Calls per second per account (fractions allowed; at least 0.001).
    pub per_second: f64,
    /// Calls an idle account may make at once.
    pub burst: u32,
    /// The Postgres database that holds the buckets (table
    /// `iam_throttle`, made on first use): one for every process.
    pub database_url: String,
}

/// The table of [`ThrottleAbove`]: per account, the bucket's theoretical
/// arrival time (GCRA), the calls let through and the calls throttled.
pub const THROTTLE_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS iam_throttle ( \
     account_id TEXT PRIMARY KEY, tat TIMESTAMPTZ NOT NULL, \
     calls BIGINT NOT NULL DEFAULT 0, throttled BIGINT NOT NULL DEFAULT 0)";

/// One pool per database for the whole process (every account's layer).
fn throttle_pool(url: &str) -> Result<sqlx::PgPool, sqlx::Error> {
    static POOLS: std::sync::OnceLock<Mutex<HashMap<String, sqlx::PgPool>>> =
        std::sync::OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(pool) = pools.get(url) {
        return Ok(pool.clone());
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_lazy(url)?;
    pools.insert(url.to_owned(), pool.clone());
    Ok(pool)
}

impl ThrottleAbove {
    /// Checks one call of `account` (GCRA, check and reject: a throttled
    /// call takes no slot) and counts it; `true` when it may go.
    pub async fn admit(&self, account: &str) -> Result<bool, sqlx::Error> {
        let pool = throttle_pool(&self.database_url)?;
        let interval = 1.0 / self.per_second.max(0.001);
        let tolerance = interval * f64::from(self.burst.max(1));
        let statement = "INSERT INTO iam_throttle AS b (account_id, tat, calls) \
             VALUES ($1, clock_timestamp() + make_interval(secs => $2), 1) \
             ON CONFLICT (account_id) DO UPDATE \
               SET tat = greatest(b.tat, clock_timestamp()) + make_interval(secs => $2), \
                   calls = b.calls + 1 \
             WHERE greatest(b.tat, clock_timestamp()) + make_interval(secs => $2) \
                   <= clock_timestamp() + make_interval(secs => $3) \
             RETURNING 1";
        let run = || {
            sqlx::query_scalar::<_, i32>(statement)
                .bind(account)
                .bind(interval)
                .bind(tolerance)
                .fetch_optional(&pool)
        };
        let admitted = match run().await {
            Ok(row) => row.is_some(),
            // The table is made on first use (processes may race: IF NOT
            // EXISTS, and one retry).
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => {
                let _ = sqlx::query(THROTTLE_TABLE_SQL).execute(&pool).await;
                run().await?.is_some()
            }
            Err(e) => return Err(e),
        };
        if !admitted {
            sqlx::query("UPDATE iam_throttle SET throttled = throttled + 1 WHERE account_id = $1")
                .bind(account)
                .execute(&pool)
                .await?;
        }
        Ok(admitted)
    }
}

impl FaultPlan {
    /// Reads a plan from JSON.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// True when the plan injects nothing.
    pub fn is_empty(&self) -> bool {
        self == &FaultPlan::default()
    }
}

#[derive(Debug)]
struct Task {
    role_name: String,
    polls: u32,
    finished: bool,
}

#[derive(Debug, Default)]
struct State {
    calls: HashMap<String, u32>,
    created: HashMap<String, Instant>,
    tasks: HashMap<String, Task>,
}

/// Counts of calls by operation, shared with tests.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<HashMap<String, u32>>>);

impl CallLog {
    fn record(&self, operation: &str) {
        if let Ok(mut calls) = self.0.lock() {
            *calls.entry(operation.to_owned()).or_default() += 1;
        }
    }

    /// Calls of `operation` so far.
    pub fn count(&self, operation: &str) -> u32 {
        self.0
            .lock()
            .map(|c| c.get(operation).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Calls of every operation so far.
    pub fn total(&self) -> u32 {
        self.0.lock().map(|c| c.values().sum()).unwrap_or(0)
    }
}

/// The fault-injecting layer around an IAM client.
#[derive(Debug)]
pub struct FaultyIam {
    inner: Arc<dyn IamApi>,
    plan: FaultPlan,
    state: Mutex<State>,
    log: CallLog,
    /// The account of the wrapped client, for the spans of injected answers.
    account: String,
}

impl FaultyIam {
    /// Wraps `inner` with `plan`, counting calls into `log`.
    pub fn new(inner: Arc<dyn IamApi>, plan: FaultPlan, log: CallLog) -> Self {
        FaultyIam {
            inner,
            plan,
            state: Mutex::new(State::default()),
            log,
            account: String::new(),
        }
    }

    /// Names the account the wrapped client acts in (for telemetry).
    pub fn in_account(mut self, account: impl Into<String>) -> Self {
        self.account = account.into();
        self
    }

    /// Records a call and returns the injected transient error, if any.
    async fn enter(&self, operation: &str) -> Result<(), IamError> {
        self.log.record(operation);
        let mut result = self.inject(operation);
        if let (Ok(()), Some(throttle)) = (&result, &self.plan.throttle_above) {
            match throttle.admit(&self.account).await {
                Ok(true) => {}
                Ok(false) => {
                    result = Err(classify_code("Throttling", "Rate exceeded".to_owned()));
                }
                Err(error) => {
                    tracing::warn!(error = %error, "fault layer: the throttle's database failed; call let through");
                }
            }
        }
        if let Err(error) = &result {
            // An injected failure stands for an answer of AWS: it is noted in
            // the audit trail like one (without an AWS request id).
            let operation: String = operation
                .split('_')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
                })
                .collect();
            let outcome = match error {
                IamError::Throttled(_) => "Throttling",
                _ => "ServiceFailure",
            };
            // Its span, like a real call's (it took no time).
            let span = crate::telemetry::call_span("iam", &operation, &self.account);
            crate::telemetry::end_call_span(&span, outcome, None);
            crate::audit::note(slrgov_domain::audit::AwsCall {
                service: "iam".to_owned(),
                operation,
                outcome: outcome.to_owned(),
                aws_request_id: None,
            });
        }
        result
    }

    fn inject(&self, operation: &str) -> Result<(), IamError> {
        let Ok(mut state) = self.state.lock() else {
            return Ok(());
        };
        let n = {
            let calls = state.calls.entry(operation.to_owned()).or_default();
            *calls += 1;
            *calls
        };
        if self
            .plan
            .throttle
            .get(operation)
            .is_some_and(|limit| n <= *limit)
        {
            return Err(classify_code("Throttling", "Rate exceeded".to_owned()));
        }
        if self
            .plan
            .service_failure
            .get(operation)
            .is_some_and(|limit| n <= *limit)
        {
            return Err(classify_code(
                "ServiceFailure",
                "The request processing has failed because of an unknown error.".to_owned(),
            ));
        }
        Ok(())
    }

    /// Holds a call for the plan's delay of `operation`, if any.
    async fn pause(&self, operation: &str) {
        if let Some(ms) = self.plan.delay_ms.get(operation) {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
        }
    }

    fn invisible(&self, name: &str) -> bool {
        let window = Duration::from_millis(self.plan.invisible_after_create_ms);
        self.state
            .lock()
            .ok()
            .and_then(|s| s.created.get(name).copied())
            .is_some_and(|at| at.elapsed() < window)
    }
}

fn deletion_task_id(role_name: &str) -> String {
    format!(
        "task/aws-service-role/connect.amazonaws.com/{role_name}/{}",
        uuid::Uuid::new_v4()
    )
}

#[async_trait]
impl IamApi for FaultyIam {
    async fn create_service_linked_role(
        &self,
        service: &str,
        suffix: Option<&str>,
        description: Option<&str>,
    ) -> Result<RoleInfo, IamError> {
        self.enter("create_service_linked_role").await?;
        self.pause("create_service_linked_role").await;
        if self.plan.refuse_suffix && suffix.is_some() {
            return Err(classify_code(
                "InvalidInput",
                format!("Custom suffix is not allowed for {service}"),
            ));
        }
        match self
            .inner
            .create_service_linked_role(service, suffix, description)
            .await
        {
            Ok(role) => {
                if let Ok(mut state) = self.state.lock() {
                    state.created.insert(role.role_name.clone(), Instant::now());
                }
                Ok(role)
            }
            Err(IamError::NameTaken(_)) if self.plan.real_name_taken => Err(classify_code(
                "InvalidInput",
                format!(
                    "Service role name AWSServiceRoleForAmazonConnect_{} has been taken in this account, please try a different suffix.",
                    suffix.unwrap_or_default()
                ),
            )),
            Err(error) => Err(error),
        }
    }

    async fn get_role(&self, name: &str) -> Result<RoleInfo, IamError> {
        self.enter("get_role").await?;
        self.pause("get_role").await;
        let role = self.inner.get_role(name).await?;
        if self.invisible(name) {
            return Err(classify_code(
                "NoSuchEntity",
                format!("The role with name {name} cannot be found."),
            ));
        }
        Ok(role)
    }

    async fn list_roles(&self, path_prefix: &str) -> Result<Vec<RoleInfo>, IamError> {
        self.enter("list_roles").await?;
        self.pause("list_roles").await;
        let roles = self.inner.list_roles(path_prefix).await?;
        Ok(roles
            .into_iter()
            .filter(|r| !self.invisible(&r.role_name))
            .collect())
    }

    async fn update_role_description(
        &self,
        name: &str,
        description: &str,
    ) -> Result<RoleInfo, IamError> {
        self.enter("update_role_description").await?;
        self.pause("update_role_description").await;
        self.inner.update_role_description(name, description).await
    }

    async fn delete_service_linked_role(&self, name: &str) -> Result<String, IamError> {
        self.enter("delete_service_linked_role").await?;
        self.pause("delete_service_linked_role").await;
        if self.plan.deletion_outcome.is_none() && self.plan.deletion_in_progress_polls == 0 {
            return self.inner.delete_service_linked_role(name).await;
        }
        // The role must exist, as in IAM.
        self.inner.get_role(name).await?;
        let Ok(mut state) = self.state.lock() else {
            return Err(IamError::Unavailable("fault layer poisoned".to_owned()));
        };
        // Calling again while a task runs returns the same task, as in IAM.
        if let Some((id, _)) = state
            .tasks
            .iter()
            .find(|(_, t)| t.role_name == name && !t.finished)
        {
            return Ok(id.clone());
        }
        let id = deletion_task_id(name);
        state.tasks.insert(
            id.clone(),
            Task {
                role_name: name.to_owned(),
                polls: 0,
                finished: false,
            },
        );
        Ok(id)
    }

    async fn deletion_status(&self, task_id: &str) -> Result<DeletionStatus, IamError> {
        self.enter("deletion_status").await?;
        self.pause("deletion_status").await;
        let next = {
            let Ok(mut state) = self.state.lock() else {
                return Err(IamError::Unavailable("fault layer poisoned".to_owned()));
            };
            match state.tasks.get_mut(task_id) {
                None => None,
                Some(task) => {
                    task.polls += 1;
                    if task.polls <= self.plan.deletion_in_progress_polls {
                        return Ok(DeletionStatus::InProgress);
                    }
                    task.finished = true;
                    Some(task.role_name.clone())
                }
            }
        };
        let Some(role_name) = next else {
            return self.inner.deletion_status(task_id).await;
        };
        match &self.plan.deletion_outcome {
            Some(DeletionOutcome::Failed { reason, usage }) => Ok(DeletionStatus::Failed {
                reason: reason.clone(),
                usage: usage.clone(),
            }),
            Some(DeletionOutcome::Succeeded) | None => {
                match self.inner.delete_service_linked_role(&role_name).await {
                    Ok(_) | Err(IamError::NoSuchEntity(_)) => Ok(DeletionStatus::Succeeded),
                    Err(error) => Err(error),
                }
            }
        }
    }

    async fn role_policies(&self, name: &str) -> Result<Vec<RolePolicy>, IamError> {
        self.enter("role_policies").await?;
        self.pause("role_policies").await;
        self.inner.role_policies(name).await
    }
}
