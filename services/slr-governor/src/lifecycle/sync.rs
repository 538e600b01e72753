//! SyncInstances: discover each account's instances from Amazon Connect.
//! A sync is a workflow (an Operation) the background workers drive, one
//! look (one account in one region) per step:
//!
//! | state (what has happened) | step run next | its action | undo |
//! | --- | --- | --- | --- |
//! | `Claimed` | `plan` | the (account, region) pairs to look at: every region of each account's partition where the region table says Connect is available (the others are never called) | nothing: the sync is over |
//! | `Looking` | `look` | ListInstances (every page) in the next pair's region, recorded: new instances registered, known ones updated, unlisted ones VANISHED; a failure is the pair's result, not the sync's | nothing: what Connect said stays recorded |
//!
//! CancelOperation stops a sync between two looks: it ends CANCELLED, and
//! what the looks before recorded stays.
//!
//! Each look is safe to run twice (recording the same listing changes
//! nothing the second time). A throttled look is retried at the backoff;
//! one that keeps failing is recorded as failed and the sync goes on.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use slrgov_aws::ConnectError;
use slrgov_domain::names::AccountSelector;
use slrgov_domain::types::{AccountId, RegionCode};
use slrgov_domain::workflow::{
    NewWorkflow, Outcome, Undo, Workflow, WorkflowError, WorkflowKind, WorkflowRecord,
    WorkflowTarget,
};
use slrgov_domain::{Error, Reason, RequestContext, Role};
use slrgov_store::{Idempotency, Listed, Observation, ObserveCounts, PageRequest, SyncStart};

use super::Lifecycle;
use super::connect::{connect_error, seen};
use super::steps::{MAX_TRANSIENT_ATTEMPTS, retry, transient};

/// The inputs a sync saves when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncInputs {
    /// The accounts to look at, in order.
    pub accounts: Vec<String>,
}

/// One look at Connect (one account in one region), and what it found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Look {
    /// The account.
    pub account_id: String,
    /// The region (empty when the account itself could not be read).
    pub region: String,
    /// Whether the look is over (succeeded or failed).
    #[serde(default)]
    pub done: bool,
    /// What recording the listing changed.
    #[serde(default)]
    pub counts: ObserveCounts,
    /// Why the look failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WorkflowError>,
}

/// What a sync has done so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SyncState {
    /// Started.
    Claimed,
    /// The looks are planned; the ones `done` are over.
    Looking {
        /// Every look, in order.
        looks: Vec<Look>,
    },
}

/// What a finished sync found: every look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Every look, in order.
    pub looks: Vec<Look>,
}

/// The totals of a sync's looks so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncTotals {
    /// Accounts covered.
    pub accounts: u32,
    /// Looks planned.
    pub regions: u32,
    /// Looks over.
    pub done: u32,
    /// Looks failed.
    pub failed: u32,
    /// What they found.
    pub counts: ObserveCounts,
}

/// The totals of `looks`, for `accounts` accounts.
pub fn totals(accounts: usize, looks: &[Look]) -> SyncTotals {
    let mut totals = SyncTotals {
        accounts: u32::try_from(accounts).unwrap_or(u32::MAX),
        ..SyncTotals::default()
    };
    for look in looks {
        totals.regions += 1;
        totals.done += u32::from(look.done);
        totals.failed += u32::from(look.error.is_some());
        totals.counts.seen += look.counts.seen;
        totals.counts.created += look.counts.created;
        totals.counts.updated += look.counts.updated;
        totals.counts.vanished += look.counts.vanished;
    }
    totals
}

/// The sync workflow's steps.
pub struct SyncWorkflow<'a> {
    lifecycle: &'a Lifecycle,
    ctx: &'a RequestContext,
    /// The sync's own workflow, whose cancel flag each look checks (`None`:
    /// the looks of a reconcile pass, which is not cancelled this way).
    workflow_id: Option<&'a str>,
}

impl<'a> SyncWorkflow<'a> {
    /// The steps of one sync, acting with `ctx`.
    pub fn new(lifecycle: &'a Lifecycle, ctx: &'a RequestContext) -> Self {
        SyncWorkflow {
            lifecycle,
            ctx,
            workflow_id: None,
        }
    }

    /// The steps of sync `workflow_id`, which CancelOperation may stop
    /// between two looks.
    pub fn cancellable(
        lifecycle: &'a Lifecycle,
        ctx: &'a RequestContext,
        workflow_id: &'a str,
    ) -> Self {
        SyncWorkflow {
            lifecycle,
            ctx,
            workflow_id: Some(workflow_id),
        }
    }

    pub(super) async fn plan(
        &self,
        inputs: &SyncInputs,
        attempt: u32,
    ) -> Outcome<SyncState, SyncReport> {
        let mut looks = Vec::new();
        for account in &inputs.accounts {
            let failed_account = |error: Error| Look {
                account_id: account.clone(),
                region: String::new(),
                done: true,
                counts: ObserveCounts::default(),
                error: Some(WorkflowError::from(error)),
            };
            let id = match AccountId::parse(account) {
                Ok(id) => id,
                Err(error) => {
                    looks.push(failed_account(Error::internal(format!(
                        "a saved account id is malformed: {error}"
                    ))));
                    continue;
                }
            };
            match self.lifecycle.account_target(self.ctx, &id).await {
                Ok(target) => {
                    for region in self.lifecycle.regions.connect_regions(target.partition) {
                        looks.push(Look {
                            account_id: account.clone(),
                            region: region.to_string(),
                            done: false,
                            counts: ObserveCounts::default(),
                            error: None,
                        });
                    }
                }
                Err(error) if transient(&error) => return retry(attempt, error.message),
                // Deleted since the sync started: its result says so.
                Err(error) => looks.push(failed_account(error)),
            }
        }
        if looks.iter().all(|l| l.done) {
            return Outcome::Done(SyncReport { looks });
        }
        Outcome::Next(SyncState::Looking { looks })
    }

    pub(super) async fn look(
        &self,
        mut looks: Vec<Look>,
        attempt: u32,
    ) -> Outcome<SyncState, SyncReport> {
        let Some(index) = looks.iter().position(|l| !l.done) else {
            return Outcome::Done(SyncReport { looks });
        };
        if let Some(id) = self.workflow_id {
            match self
                .lifecycle
                .store()
                .workflow_cancel_requested(self.ctx, id)
                .await
            {
                Ok(true) => {
                    let done = looks.iter().filter(|l| l.done).count();
                    return Outcome::Fail(WorkflowError::from(Error::cancelled(format!(
                        "cancelled after {done} of {} looks at Amazon Connect",
                        looks.len()
                    ))));
                }
                Ok(false) => {}
                Err(error) if transient(&error) => return retry(attempt, error.message),
                Err(error) => return Outcome::Fail(WorkflowError::from(error)),
            }
        }
        let (account, region) = (looks[index].account_id.clone(), looks[index].region.clone());
        match self.look_once(&account, &region).await {
            Ok(counts) => {
                looks[index].counts = counts;
                looks[index].done = true;
            }
            Err(error) if transient(&error) && attempt < MAX_TRANSIENT_ATTEMPTS => {
                return retry(attempt, error.message);
            }
            Err(error) => {
                tracing::warn!(account, region, reason = %error.reason, error = %error.message, "a look at amazon connect failed; the sync goes on");
                // Credentials that do not work in one region work in none:
                // the account's other looks fail with the same error
                // without calling AWS again.
                let whole_account = error.reason == Reason::AwsCredentialsUnavailable;
                for look in looks.iter_mut().filter(|l| {
                    !l.done && l.account_id == account && (whole_account || l.region == region)
                }) {
                    look.done = true;
                    look.error = Some(WorkflowError::from(error.clone()));
                }
            }
        }
        if looks.iter().all(|l| l.done) {
            return Outcome::Done(SyncReport { looks });
        }
        Outcome::Next(SyncState::Looking { looks })
    }

    /// Lists Connect in one account and region, and records it.
    async fn look_once(&self, account: &str, region: &str) -> Result<ObserveCounts, Error> {
        let account = AccountId::parse(account)
            .map_err(|e| Error::internal(format!("a saved account id is malformed: {e}")))?;
        let region = RegionCode::parse(region)
            .map_err(|e| Error::internal(format!("a saved region is malformed: {e}")))?;
        let connect = self
            .lifecycle
            .connect_client(self.ctx, &account, &region)
            .await?;
        let asked_at = chrono::Utc::now();
        let listed = match connect.list_instances().await {
            Ok(listed) => listed,
            Err(error) => {
                if error.is_transient() {
                    slrgov_aws::telemetry::count_retry("connect", "ListInstances");
                }
                return Err(match error {
                    ConnectError::NotFound(message) => Error::internal(format!(
                        "connect ListInstances answered not found: {message}"
                    )),
                    other => connect_error("ListInstances", &account, region.as_str(), other),
                });
            }
        };
        self.lifecycle
            .store()
            .instance_observe(
                self.ctx,
                Observation {
                    account,
                    region,
                    seen: listed.iter().filter_map(seen).collect(),
                    listed: Listed::Everything,
                    asked_at: Some(asked_at),
                },
            )
            .await
    }
}

#[async_trait]
impl Workflow for SyncWorkflow<'_> {
    type Inputs = SyncInputs;
    type State = SyncState;
    type Output = SyncReport;

    fn kind(&self) -> WorkflowKind {
        WorkflowKind::Sync
    }

    fn steps() -> &'static [&'static str] {
        &["plan", "look"]
    }

    fn step_of(state: &SyncState) -> &'static str {
        match state {
            SyncState::Claimed => "plan",
            SyncState::Looking { .. } => "look",
        }
    }

    async fn action(
        &self,
        inputs: &SyncInputs,
        state: &SyncState,
        attempt: u32,
    ) -> Outcome<SyncState, SyncReport> {
        match state {
            SyncState::Claimed => self.plan(inputs, attempt).await,
            SyncState::Looking { looks } => self.look(looks.clone(), attempt).await,
        }
    }

    async fn undo(
        &self,
        _inputs: &SyncInputs,
        _state: &SyncState,
        _error: &WorkflowError,
        _attempt: u32,
    ) -> Undo<SyncState> {
        // A sync changes nothing in AWS, and what Connect said stays
        // recorded: there is nothing to take back.
        Undo::Released
    }
}

impl Lifecycle {
    /// SyncInstances: starts the sync of one account, or of every account
    /// the caller may change (`accounts/-`), or returns the account's sync
    /// already running (or, for a known request id, its first operation).
    pub async fn sync(
        &self,
        ctx: &RequestContext,
        parent: &AccountSelector,
        idempotency: Option<&Idempotency>,
    ) -> Result<WorkflowRecord, Error> {
        let (target, accounts) = match parent {
            AccountSelector::One(account) => {
                // NOT_FOUND outside the caller's scope, before the role.
                self.store.account_get(ctx, account).await?;
                ctx.check_role(Role::Operator, "SyncInstances")?;
                (WorkflowTarget::account(account), vec![account.clone()])
            }
            AccountSelector::All => {
                ctx.check_role(Role::Operator, "SyncInstances")?;
                let accounts = self.visible_accounts(ctx).await?;
                let Some(first) = accounts.first() else {
                    return Err(Error::failed_precondition(
                        Reason::FailedPrecondition,
                        "the caller sees no account to sync",
                    ));
                };
                (WorkflowTarget::every_account(first), accounts)
            }
        };
        let inputs = SyncInputs {
            accounts: accounts.iter().map(ToString::to_string).collect(),
        };
        let start = NewWorkflow::of::<SyncWorkflow>(
            WorkflowKind::Sync,
            target,
            &inputs,
            &SyncState::Claimed,
            idempotency.map(|i| i.request_id.to_string()),
        )?;
        match self.store.sync_begin(ctx, start, idempotency, None).await? {
            SyncStart::Started(record) | SyncStart::Running(record) => Ok(*record),
            SyncStart::Replayed(first) => {
                let id = first.workflow()?;
                self.store.workflow_get(ctx, &id).await
            }
        }
    }

    /// Every account the caller sees, in order.
    pub(super) async fn visible_accounts(
        &self,
        ctx: &RequestContext,
    ) -> Result<Vec<AccountId>, Error> {
        let mut accounts = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .store
                .account_list(
                    ctx,
                    &PageRequest {
                        size: slrgov_store::MAX_PAGE_SIZE,
                        token,
                    },
                )
                .await?;
            accounts.extend(page.items.into_iter().map(|a| a.account_id));
            if page.next_page_token.is_empty() {
                return Ok(accounts);
            }
            token = Some(page.next_page_token);
        }
    }

    /// The background syncs: starts the sync of each account whose last
    /// one started longer than `interval` ago (workers; replicas share the
    /// work: a sync already started by another is joined, not repeated).
    /// Returns how many it started.
    pub async fn start_due_syncs(
        &self,
        ctx: &RequestContext,
        interval: Duration,
        limit: u32,
    ) -> Result<u32, Error> {
        let mut started = 0;
        for account in self
            .store
            .sync_due(ctx, WorkflowKind::Sync, interval, limit)
            .await?
        {
            let inputs = SyncInputs {
                accounts: vec![account.to_string()],
            };
            let start = NewWorkflow::of::<SyncWorkflow>(
                WorkflowKind::Sync,
                WorkflowTarget::account(&account),
                &inputs,
                &SyncState::Claimed,
                None,
            )?;
            match self
                .store
                .sync_begin(ctx, start, None, Some(interval))
                .await
            {
                Ok(SyncStart::Started(record)) => {
                    started += 1;
                    tracing::info!(account = %account, operation = %record.id, "background sync started");
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(account = %account, error = %error.message, "cannot start a background sync");
                }
            }
        }
        Ok(started)
    }
}
