//! The reconciler: a pass over one account that needs no input. The
//! background schedule starts one per account every
//! `SLRGOV_RECONCILE_INTERVAL`; any replica's worker runs it (the workflow
//! row is the per-account lease: one pass of an account runs at a time).
//! Level-based: every pass compares what should be with what is, from
//! scratch, and stores what it sees; it never acts on events.
//!
//! | state (what has happened) | step run next | its action | undo |
//! | --- | --- | --- | --- |
//! | `Claimed` | `plan` | the Connect regions of the account's partition (as a sync plans them) | nothing |
//! | `Looking` | `look` | one region's ListInstances, recorded (the sync's look) | nothing: what Connect said stays recorded |
//! | `Inspecting` | `inspect` | the next page of the account's instances: each one's role inspected (GetRole, its policies; Connect's view is the look's) within the pass's IAM read budget, and its findings stored (those no longer seen resolved); a VANISHED instance gets `VANISHED_INSTANCE` with no AWS call | nothing: findings are observations |
//! | `Orphans` | `orphans` | IAM ListRoles under the Connect SLR path: every role no live instance uses is an `ORPHAN_ROLE` finding (the account's others resolved) | nothing |
//! | `Repairing` | `repair` | (`SLRGOV_RECONCILE_MODE=repair` only) the next instance whose role is missing: EnsureLinkedRole (restores the role Connect names, or gives a legacy instance one), then inspected again | nothing: the ensure is its own workflow and stands |
//!
//! Every step is safe to run twice: a look records the same listing, a page
//! is inspected and recorded again (only the last seen time moves), an
//! ensure of an ACTIVE role changes nothing. A pass never mutates IAM in
//! the default `observe` mode.

use async_trait::async_trait;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use slrgov_domain::filter::InstanceFilter;
use slrgov_domain::finding::{FindingCode, FindingCounts, FindingScope, NewFinding, Severity};
use slrgov_domain::model::{Instance, LinkedRoleState, ObservedState};
use slrgov_domain::names::AccountSelector;
use slrgov_domain::types::AccountId;
use slrgov_domain::workflow::{Outcome, Undo, Workflow, WorkflowError, WorkflowKind};
use slrgov_domain::{Error, RequestContext};
use slrgov_store::PageRequest;

use super::steps::{retry, transient};
use super::sync::{Look, SyncInputs, SyncReport, SyncState, SyncWorkflow};
use super::{Finding, Lifecycle};

mod orphans;
mod repair;
mod schedule;

use repair::repairable;
pub use schedule::{ReconcileSettings, count_pass};

/// The IAM reads one inspection is charged against the budget: GetRole,
/// ListRolePolicies and GetRolePolicy of the one inline policy a Connect
/// SLR has.
pub const READS_PER_INSPECTION: u32 = 3;
/// Instances inspected per step (each step's state is saved).
const PAGE: u32 = 20;

/// Whether a pass may change anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconcileMode {
    /// Inspect and store findings; never mutate (the default).
    #[default]
    Observe,
    /// Also ensure the roles that are missing (restore the role Connect
    /// names; give a legacy instance one), and record what was done.
    Repair,
}

impl ReconcileMode {
    /// Parses `observe` or `repair`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "observe" => Some(ReconcileMode::Observe),
            "repair" => Some(ReconcileMode::Repair),
            _ => None,
        }
    }

    /// The written form.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileMode::Observe => "observe",
            ReconcileMode::Repair => "repair",
        }
    }
}

/// The inputs a pass saves when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileInputs {
    /// The account.
    pub account_id: String,
    /// Observe or repair.
    pub mode: ReconcileMode,
    /// The IAM reads the pass may make.
    pub iam_reads: u32,
    /// When the pass started: a role IAM made after it may belong to an
    /// instance Connect created after the pass looked, so it is not called
    /// an orphan until a later pass.
    #[serde(default)]
    pub started_at: Option<chrono::DateTime<Utc>>,
}

/// What a pass has counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassTotals {
    /// Instances whose role was inspected.
    pub inspected: u32,
    /// Instances left uninspected because the IAM read budget ran out
    /// (their findings are kept as they were).
    pub over_budget: u32,
    /// Instances whose inspection failed (their findings are kept).
    pub failed: u32,
    /// Instances Connect no longer lists.
    pub vanished: u32,
    /// Connect service-linked roles no live instance uses.
    pub orphans: u32,
    /// Whether the orphan scan ran (not when the budget ran out).
    pub orphan_scan: bool,
    /// IAM reads left.
    pub reads_left: u32,
    /// What storing the findings changed.
    pub findings: FindingCounts,
}

impl PassTotals {
    fn add(&mut self, counts: FindingCounts) {
        self.findings.opened += counts.opened;
        self.findings.still_open += counts.still_open;
        self.findings.resolved += counts.resolved;
    }
}

/// What a repair did to one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repair {
    /// The instance's resource name.
    pub instance: String,
    /// `restored`, `created`, `adopted` or `unchanged`; `skipped` when the
    /// instance no longer needed it (the role retired meanwhile, or Connect
    /// dropped the instance); empty when it failed.
    #[serde(default)]
    pub outcome: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WorkflowError>,
}

/// Where a pass is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ReconcileState {
    /// Started.
    Claimed,
    /// Looking at Connect, region by region.
    Looking {
        /// Every look, in order.
        looks: Vec<Look>,
    },
    /// Inspecting the account's instances, a page per step.
    Inspecting {
        /// The looks.
        looks: Vec<Look>,
        /// The page token of the next page (empty: the first).
        cursor: String,
        /// The counts so far.
        totals: PassTotals,
        /// Instances whose role is missing (repair mode's work).
        repair: Vec<String>,
    },
    /// Looking for roles no instance uses.
    Orphans {
        /// The looks.
        looks: Vec<Look>,
        /// The counts so far.
        totals: PassTotals,
        /// Instances whose role is missing.
        repair: Vec<String>,
    },
    /// Ensuring missing roles, one instance per step.
    Repairing {
        /// The looks.
        looks: Vec<Look>,
        /// The counts so far.
        totals: PassTotals,
        /// Instances still to repair.
        repair: Vec<String>,
        /// What was done so far.
        repairs: Vec<Repair>,
    },
}

/// What a finished pass did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcileReport {
    /// The looks at Connect.
    pub looks: Vec<Look>,
    /// The counts.
    pub totals: PassTotals,
    /// What the repairs did (repair mode).
    #[serde(default)]
    pub repairs: Vec<Repair>,
}

/// The reconcile workflow's steps.
pub struct ReconcileWorkflow<'a> {
    lifecycle: &'a Lifecycle,
    ctx: &'a RequestContext,
}

impl<'a> ReconcileWorkflow<'a> {
    /// The steps of one pass, acting with `ctx`.
    pub fn new(lifecycle: &'a Lifecycle, ctx: &'a RequestContext) -> Self {
        ReconcileWorkflow { lifecycle, ctx }
    }

    fn sync(&self) -> SyncWorkflow<'a> {
        SyncWorkflow::new(self.lifecycle, self.ctx)
    }

    fn account(inputs: &ReconcileInputs) -> Result<AccountId, Error> {
        AccountId::parse(&inputs.account_id)
            .map_err(|e| Error::internal(format!("a saved account id is malformed: {e}")))
    }

    fn inspecting(inputs: &ReconcileInputs, looks: Vec<Look>) -> ReconcileState {
        ReconcileState::Inspecting {
            looks,
            cursor: String::new(),
            totals: PassTotals {
                reads_left: inputs.iam_reads,
                ..PassTotals::default()
            },
            repair: Vec::new(),
        }
    }

    async fn plan(
        &self,
        inputs: &ReconcileInputs,
        attempt: u32,
    ) -> Outcome<ReconcileState, ReconcileReport> {
        let sync = SyncInputs {
            accounts: vec![inputs.account_id.clone()],
        };
        Self::after_sync(inputs, self.sync().plan(&sync, attempt).await)
    }

    async fn look(
        &self,
        inputs: &ReconcileInputs,
        looks: Vec<Look>,
        attempt: u32,
    ) -> Outcome<ReconcileState, ReconcileReport> {
        Self::after_sync(inputs, self.sync().look(looks, attempt).await)
    }

    /// The sync's outcome as the pass's: its looks go on as the pass's; a
    /// finished sync (or one with nothing to look at: no Connect region,
    /// the account gone) hands over to the inspection.
    fn after_sync(
        inputs: &ReconcileInputs,
        outcome: Outcome<SyncState, SyncReport>,
    ) -> Outcome<ReconcileState, ReconcileReport> {
        match outcome {
            Outcome::Next(SyncState::Looking { looks }) => {
                Outcome::Next(ReconcileState::Looking { looks })
            }
            Outcome::Next(SyncState::Claimed) => Outcome::Next(ReconcileState::Claimed),
            Outcome::Done(report) => Outcome::Next(Self::inspecting(inputs, report.looks)),
            Outcome::Retry { after, reason } => Outcome::Retry { after, reason },
            Outcome::Fail(error) => Outcome::Fail(error),
        }
    }

    /// Inspects the next page of instances and stores their findings.
    async fn inspect(
        &self,
        inputs: &ReconcileInputs,
        looks: Vec<Look>,
        cursor: &str,
        mut totals: PassTotals,
        mut repair: Vec<String>,
        attempt: u32,
    ) -> Outcome<ReconcileState, ReconcileReport> {
        let account = match Self::account(inputs) {
            Ok(account) => account,
            Err(error) => return Outcome::Fail(WorkflowError::from(error)),
        };
        let store = self.lifecycle.store();
        let page = match store
            .instance_list(
                self.ctx,
                &AccountSelector::One(account.clone()),
                &InstanceFilter::default(),
                &PageRequest {
                    size: PAGE,
                    token: (!cursor.is_empty()).then(|| cursor.to_owned()),
                },
            )
            .await
        {
            Ok(page) => page,
            Err(error) if transient(&error) => return retry(attempt, error.message),
            Err(error) => return Outcome::Fail(WorkflowError::from(error)),
        };
        let at = Utc::now();
        for instance in &page.items {
            let key = instance.key();
            let target = key.name();
            let seen = match self.look_at(instance, &mut totals).await {
                Ok(Some(seen)) => seen,
                // Not looked at (over budget, or the inspection failed):
                // its findings stay as the last pass left them.
                Ok(None) => continue,
                // IAM unavailable even after the client's retries: this
                // instance waits for the next pass (retrying the page would
                // read every instance of it again, into a throttled IAM).
                Err(error) => {
                    totals.failed += 1;
                    tracing::warn!(instance = %target, reason = %error.reason, error = %error.message, "a reconcile inspection failed; the pass goes on");
                    continue;
                }
            };
            if inputs.mode == ReconcileMode::Repair && repairable(instance, &seen) {
                let id = instance.instance_id.to_string();
                if !repair.contains(&id) {
                    repair.push(id);
                }
            }
            match store
                .finding_record(self.ctx, &account, &FindingScope::Target(target), &seen, at)
                .await
            {
                Ok(counts) => totals.add(counts),
                Err(error) if transient(&error) => return retry(attempt, error.message),
                Err(error) => return Outcome::Fail(WorkflowError::from(error)),
            }
        }
        if page.next_page_token.is_empty() {
            return Outcome::Next(ReconcileState::Orphans {
                looks,
                totals,
                repair,
            });
        }
        Outcome::Next(ReconcileState::Inspecting {
            looks,
            cursor: page.next_page_token,
            totals,
            repair,
        })
    }

    /// What the pass sees of one instance: `None` when it does not look
    /// (over budget).
    async fn look_at(
        &self,
        instance: &Instance,
        totals: &mut PassTotals,
    ) -> Result<Option<Vec<NewFinding>>, Error> {
        let target = instance.key().name();
        if instance.connect.observed_state == ObservedState::Vanished {
            totals.vanished += 1;
            let since = instance
                .connect
                .last_seen_time
                .map_or_else(|| "an earlier sync".to_owned(), |t| t.to_rfc3339());
            return Ok(Some(vec![NewFinding {
                code: FindingCode::VanishedInstance,
                severity: Severity::Warning,
                target,
                subject: String::new(),
                message: format!(
                    "Amazon Connect no longer lists the instance (last seen {since}); DeleteInstance retires its role and removes the record"
                ),
            }]));
        }
        // A role being retired, or retired, is not inspected: what it was
        // found to lack no longer matters.
        if matches!(
            instance.linked_role_state,
            LinkedRoleState::Deleting | LinkedRoleState::Deleted
        ) {
            return Ok(Some(Vec::new()));
        }
        if totals.reads_left < READS_PER_INSPECTION {
            totals.over_budget += 1;
            return Ok(None);
        }
        totals.reads_left -= READS_PER_INSPECTION;
        let inspection = self.lifecycle.inspect(self.ctx, &instance.key()).await?;
        totals.inspected += 1;
        Ok(Some(
            inspection
                .findings
                .iter()
                .map(|f| stored(&target, f))
                .collect(),
        ))
    }
}

/// A live finding on `target`, as stored.
fn stored(target: &str, finding: &Finding) -> NewFinding {
    let subject = if finding.action.is_empty() && finding.resource.is_empty() {
        String::new()
    } else {
        format!("{} {}", finding.action, finding.resource)
    };
    NewFinding {
        code: finding.code,
        severity: finding.severity,
        target: target.to_owned(),
        subject,
        message: finding.message.clone(),
    }
}

#[async_trait]
impl Workflow for ReconcileWorkflow<'_> {
    type Inputs = ReconcileInputs;
    type State = ReconcileState;
    type Output = ReconcileReport;

    fn kind(&self) -> WorkflowKind {
        WorkflowKind::Reconcile
    }

    fn steps() -> &'static [&'static str] {
        &["plan", "look", "inspect", "orphans", "repair"]
    }

    fn step_of(state: &ReconcileState) -> &'static str {
        match state {
            ReconcileState::Claimed => "plan",
            ReconcileState::Looking { .. } => "look",
            ReconcileState::Inspecting { .. } => "inspect",
            ReconcileState::Orphans { .. } => "orphans",
            ReconcileState::Repairing { .. } => "repair",
        }
    }

    async fn action(
        &self,
        inputs: &ReconcileInputs,
        state: &ReconcileState,
        attempt: u32,
    ) -> Outcome<ReconcileState, ReconcileReport> {
        match state.clone() {
            ReconcileState::Claimed => self.plan(inputs, attempt).await,
            ReconcileState::Looking { looks } => self.look(inputs, looks, attempt).await,
            ReconcileState::Inspecting {
                looks,
                cursor,
                totals,
                repair,
            } => {
                self.inspect(inputs, looks, &cursor, totals, repair, attempt)
                    .await
            }
            ReconcileState::Orphans {
                looks,
                totals,
                repair,
            } => self.orphans(inputs, looks, totals, repair, attempt).await,
            ReconcileState::Repairing {
                looks,
                totals,
                repair,
                repairs,
            } => {
                self.repair(inputs, looks, totals, repair, repairs, attempt)
                    .await
            }
        }
    }

    async fn undo(
        &self,
        _inputs: &ReconcileInputs,
        _state: &ReconcileState,
        _error: &WorkflowError,
        _attempt: u32,
    ) -> Undo<ReconcileState> {
        // A pass records observations, and a repair is an ensure that
        // stands on its own: there is nothing to take back.
        Undo::Released
    }
}
