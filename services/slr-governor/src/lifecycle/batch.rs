//! BatchEnsureLinkedRoles: the role of every instance a caller chose, one
//! long-running operation. The instances are listed when the request
//! arrives, with the caller's context (so within its accounts, and only
//! those it may change), and saved in the workflow's inputs: the workers
//! act on exactly those, never on an account the caller could not reach.
//! They are saved interleaved by account (the first instance of each
//! account, then the second of each, ...), so that a wave of consecutive
//! instances spans as many accounts as it can.
//!
//! The batch goes in waves of up to `batch_concurrency` instances
//! (`SLRGOV_BATCH_CONCURRENCY`), ensured concurrently: each account's IAM
//! calls still wait on that account's token bucket (shared by every
//! replica on Postgres), so a wave over many accounts runs at the sum of
//! their rates instead of one instance's latency at a time.
//!
//! | state (what has happened) | step run next | its action | undo |
//! | --- | --- | --- | --- |
//! | `looking {next, counts, failures}` | `look` | unless a cancel was asked for (then the batch ends CANCELLED, its state saying what was done), the recorded state of the roles of the wave starting at instance `next`, kept to count the outcomes by | nothing |
//! | `ensuring {next, wave, counts, failures}` | `ensure` | EnsureLinkedRole of each instance of the wave, concurrently (or, `validate_only`, its preview), each counted by outcome against its state in `wave`; a failure is the instance's, counted by reason, and the batch goes on; IAM unavailable for any of them retries the wave at the backoff | nothing: each ensure stands on its own |
//!
//! Each step is safe to run twice: a look reads again; an ensure of a role
//! made a moment ago finds it ACTIVE and is counted by the state saved
//! before it, so a crash between the ensures and the save resumes at the
//! same wave, counts it the same, and never makes a second role. A cancel
//! takes effect between two waves.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use slrgov_domain::filter::InstanceFilter;
use slrgov_domain::model::{LinkedRole, LinkedRoleState};
use slrgov_domain::names::{AccountSelector, InstanceKey};
use slrgov_domain::workflow::{
    NewWorkflow, Outcome, Undo, Workflow, WorkflowError, WorkflowKind, WorkflowRecord,
    WorkflowTarget,
};
use slrgov_domain::{Error, Kind, Reason, RequestContext, Role};
use slrgov_store::{Idempotency, PageRequest, RetireStart};

use super::Lifecycle;
use super::ensure_request::ensure_outcome;
use super::steps::{MAX_TRANSIENT_ATTEMPTS, retry, transient};

/// The most instances one batch takes: its inputs hold every name.
pub const MAX_BATCH: usize = 10_000;
/// The most failures a batch keeps with their errors (the state is saved
/// at every step); the counts by reason cover every one.
pub const MAX_FAILURES_KEPT: usize = 100;

/// The inputs a batch saves when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchInputs {
    /// The instances, by resource name, in order.
    pub instances: Vec<String>,
    /// The description of the roles it creates.
    #[serde(default)]
    pub description: Option<String>,
    /// Check only, change nothing.
    #[serde(default)]
    pub validate_only: bool,
}

/// What a batch has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCounts {
    /// Instances in the batch.
    pub total: u32,
    /// Instances done.
    pub done: u32,
    /// Roles created.
    pub created: u32,
    /// Roles adopted.
    pub adopted: u32,
    /// Roles restored under Connect's name.
    pub restored: u32,
    /// Roles already ACTIVE.
    pub unchanged: u32,
    /// Instances that failed.
    pub failed: u32,
    /// Failures by ErrorInfo reason.
    pub failed_by_reason: BTreeMap<String, u32>,
}

/// One instance the batch could not ensure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchFailure {
    /// The instance's resource name.
    pub instance: String,
    /// Why.
    pub error: WorkflowError,
}

/// Where a batch is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BatchState {
    /// About to look at instance `next` (its index in the inputs).
    Looking {
        /// The next instance's index.
        next: usize,
        /// The counts so far.
        counts: BatchCounts,
        /// The failures so far.
        failures: Vec<BatchFailure>,
    },
    /// About to ensure the wave of instances `next..next + wave.len()`,
    /// whose roles were in the states `wave`.
    Ensuring {
        /// The wave's first instance's index.
        next: usize,
        /// A one-instance wave's role state, as batches saved it before
        /// waves (read when `wave` is empty, so that a batch saved by an
        /// older replica resumes); never written now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<LinkedRoleState>,
        /// Each instance's role's recorded state before the ensure, in
        /// order (`None`: the record could not be read; the ensure says
        /// why).
        #[serde(default)]
        wave: Vec<Option<LinkedRoleState>>,
        /// The counts so far.
        counts: BatchCounts,
        /// The failures so far.
        failures: Vec<BatchFailure>,
    },
}

/// What a finished batch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchReport {
    /// The counts.
    pub counts: BatchCounts,
    /// The failures, in order.
    pub failures: Vec<BatchFailure>,
}

/// The batch workflow's step.
pub struct BatchWorkflow<'a> {
    lifecycle: &'a Lifecycle,
    ctx: &'a RequestContext,
    workflow_id: &'a str,
}

impl<'a> BatchWorkflow<'a> {
    /// The step of batch `workflow_id`, acting with `ctx`.
    pub fn new(lifecycle: &'a Lifecycle, ctx: &'a RequestContext, workflow_id: &'a str) -> Self {
        BatchWorkflow {
            lifecycle,
            ctx,
            workflow_id,
        }
    }

    /// Checks for a cancel, then reads the roles of the wave of instances
    /// starting at `next`.
    async fn look(
        &self,
        inputs: &BatchInputs,
        next: usize,
        counts: BatchCounts,
        failures: Vec<BatchFailure>,
        attempt: u32,
    ) -> Outcome<BatchState, BatchReport> {
        match self
            .lifecycle
            .store()
            .workflow_cancel_requested(self.ctx, self.workflow_id)
            .await
        {
            Ok(true) => {
                return Outcome::Fail(WorkflowError::from(Error::cancelled(format!(
                    "cancelled after {} of {} instances ({} created, {} adopted, {} restored, {} unchanged, {} failed)",
                    counts.done,
                    counts.total,
                    counts.created,
                    counts.adopted,
                    counts.restored,
                    counts.unchanged,
                    counts.failed
                ))));
            }
            Ok(false) => {}
            Err(error) if transient(&error) => return retry(attempt, error.message),
            Err(error) => return Outcome::Fail(WorkflowError::from(error)),
        }
        let end = next
            .saturating_add(self.lifecycle.batch_concurrency())
            .min(inputs.instances.len());
        if next >= end {
            return Outcome::Done(BatchReport { counts, failures });
        }
        let reads = inputs.instances[next..end]
            .iter()
            .map(|name| self.recorded_state(name));
        let mut wave = Vec::with_capacity(end - next);
        for read in futures::future::join_all(reads).await {
            match read {
                Ok(state) => wave.push(state),
                Err(error) => return retry(attempt, error.message),
            }
        }
        Outcome::Next(BatchState::Ensuring {
            next,
            before: None,
            wave,
            counts,
            failures,
        })
    }

    /// The recorded state of instance `name`'s role: `None` when there is
    /// no record (gone since the batch started: the ensure says so); a
    /// transient failure to read it is an error.
    async fn recorded_state(&self, name: &str) -> Result<Option<LinkedRoleState>, Error> {
        let Ok(key) = InstanceKey::parse(name) else {
            return Ok(None);
        };
        match self.lifecycle.store().linked_role_get(self.ctx, &key).await {
            Ok(role) => Ok(Some(role.state)),
            Err(error) if transient(&error) => Err(error),
            Err(_) => Ok(None),
        }
    }

    /// Ensures the wave of instances starting at `next`, concurrently, and
    /// counts each outcome against its state before.
    async fn ensure(
        &self,
        inputs: &BatchInputs,
        next: usize,
        wave: Vec<Option<LinkedRoleState>>,
        mut counts: BatchCounts,
        mut failures: Vec<BatchFailure>,
        attempt: u32,
    ) -> Outcome<BatchState, BatchReport> {
        let end = next.saturating_add(wave.len()).min(inputs.instances.len());
        if next >= end {
            return Outcome::Done(BatchReport { counts, failures });
        }
        let names = &inputs.instances[next..end];
        let results =
            futures::future::join_all(names.iter().map(|name| self.ensure_audited(inputs, name)))
                .await;
        // IAM unavailable for any: the whole wave again at the backoff
        // (the ensures that went through count the same the second time).
        if attempt < MAX_TRANSIENT_ATTEMPTS
            && let Some(error) = results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .find(|e| e.kind == Kind::Unavailable)
        {
            return retry(attempt, error.message.clone());
        }
        for ((name, before), result) in names.iter().zip(wave).zip(results) {
            match result {
                Ok(role) => match ensure_outcome(before, &role) {
                    "unchanged" => counts.unchanged += 1,
                    "restored" => counts.restored += 1,
                    "adopted" => counts.adopted += 1,
                    _ => counts.created += 1,
                },
                Err(error) => {
                    counts.failed += 1;
                    *counts
                        .failed_by_reason
                        .entry(error.reason.as_str().to_owned())
                        .or_default() += 1;
                    if failures.len() < MAX_FAILURES_KEPT {
                        failures.push(BatchFailure {
                            instance: name.clone(),
                            error: WorkflowError::from(error),
                        });
                    }
                }
            }
            counts.done += 1;
        }
        if end >= inputs.instances.len() {
            return Outcome::Done(BatchReport { counts, failures });
        }
        Outcome::Next(BatchState::Looking {
            next: end,
            counts,
            failures,
        })
    }

    /// EnsureLinkedRole of one instance of a wave as a unit of work of its
    /// own: its own audit trail (the ensures of a wave run at once, often
    /// in different accounts, and each event must carry only its own
    /// instance's AWS calls), its own trace. Calls that no saved step
    /// recorded are written with a failure event, as the worker does.
    async fn ensure_audited(&self, inputs: &BatchInputs, name: &str) -> Result<LinkedRole, Error> {
        let unit = self.ctx.unit_of_work("ensure");
        let result = slrgov_aws::audit::recording(
            unit.audit.clone(),
            tracing::Instrument::instrument(
                self.ensure_one(&unit, inputs, name),
                unit.span.clone(),
            ),
        )
        .await;
        if let Err(error) = &result
            && unit.audit.pending_calls() > 0
        {
            crate::worker::audit_failure(&**self.lifecycle.store(), &unit, error).await;
        }
        result
    }

    /// EnsureLinkedRole of one instance (its preview, `validate_only`).
    async fn ensure_one(
        &self,
        ctx: &RequestContext,
        inputs: &BatchInputs,
        name: &str,
    ) -> Result<LinkedRole, Error> {
        let key = InstanceKey::parse(name)
            .map_err(|e| Error::internal(format!("a saved instance is malformed: {e}")))?;
        self.lifecycle
            .ensure(
                ctx,
                &key,
                inputs.description.clone(),
                inputs.validate_only,
                None,
            )
            .await
    }
}

#[async_trait]
impl Workflow for BatchWorkflow<'_> {
    type Inputs = BatchInputs;
    type State = BatchState;
    type Output = BatchReport;

    fn kind(&self) -> WorkflowKind {
        WorkflowKind::BatchEnsure
    }

    fn steps() -> &'static [&'static str] {
        &["look", "ensure"]
    }

    fn step_of(state: &BatchState) -> &'static str {
        match state {
            BatchState::Looking { .. } => "look",
            BatchState::Ensuring { .. } => "ensure",
        }
    }

    async fn action(
        &self,
        inputs: &BatchInputs,
        state: &BatchState,
        attempt: u32,
    ) -> Outcome<BatchState, BatchReport> {
        match state.clone() {
            BatchState::Looking {
                next,
                counts,
                failures,
            } => self.look(inputs, next, counts, failures, attempt).await,
            BatchState::Ensuring {
                next,
                before,
                wave,
                counts,
                failures,
            } => {
                // A batch saved before waves: a wave of one.
                let wave = if wave.is_empty() { vec![before] } else { wave };
                self.ensure(inputs, next, wave, counts, failures, attempt)
                    .await
            }
        }
    }

    async fn undo(
        &self,
        _inputs: &BatchInputs,
        _state: &BatchState,
        _error: &WorkflowError,
        _attempt: u32,
    ) -> Undo<BatchState> {
        // Each ensure the batch made stands on its own (the role is the
        // instance's, recorded ACTIVE): a cancelled or failed batch keeps
        // what it did, and its metadata says what that was.
        Undo::Released
    }
}

impl Lifecycle {
    /// BatchEnsureLinkedRoles: lists the instances of `parent` matching
    /// `filter` that the caller may change, and starts a batch over them
    /// (or, for a known request id, returns its first operation).
    pub async fn batch_ensure(
        &self,
        ctx: &RequestContext,
        parent: &AccountSelector,
        filter: &InstanceFilter,
        description: Option<String>,
        validate_only: bool,
        idempotency: Option<&Idempotency>,
    ) -> Result<WorkflowRecord, Error> {
        if let AccountSelector::One(account) = parent {
            // NOT_FOUND outside the caller's scope, before the role.
            self.store.account_get(ctx, account).await?;
        }
        ctx.check_role(Role::Operator, "BatchEnsureLinkedRoles")?;
        let mut by_account = ByAccount::default();
        let mut first_account = None;
        let mut token = None;
        loop {
            let page = self
                .store
                .instance_list(
                    ctx,
                    parent,
                    filter,
                    &PageRequest {
                        size: slrgov_store::MAX_PAGE_SIZE,
                        token,
                    },
                )
                .await?;
            for instance in page.items {
                first_account.get_or_insert_with(|| instance.account_id.clone());
                by_account.push(instance.account_id.as_str(), instance.key().name());
            }
            if by_account.len > MAX_BATCH {
                return Err(Error::failed_precondition(
                    Reason::FailedPrecondition,
                    format!(
                        "the filter matches more than {MAX_BATCH} instances: narrow it (by region, linked_role_state, ...) or batch per account"
                    ),
                ));
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = Some(page.next_page_token);
        }
        let target = match parent {
            AccountSelector::One(account) => WorkflowTarget::account(account),
            AccountSelector::All => {
                let first = match first_account {
                    Some(account) => account,
                    None => match self.visible_accounts(ctx).await?.into_iter().next() {
                        Some(account) => account,
                        None => {
                            return Err(Error::failed_precondition(
                                Reason::FailedPrecondition,
                                "the caller sees no account to ensure roles in",
                            ));
                        }
                    },
                };
                WorkflowTarget::every_account(&first)
            }
        };
        let instances = by_account.interleaved();
        let total = u32::try_from(instances.len()).unwrap_or(u32::MAX);
        let inputs = BatchInputs {
            instances,
            description,
            validate_only,
        };
        let start = NewWorkflow::of::<BatchWorkflow>(
            WorkflowKind::BatchEnsure,
            target,
            &inputs,
            &BatchState::Looking {
                next: 0,
                counts: BatchCounts {
                    total,
                    ..BatchCounts::default()
                },
                failures: Vec::new(),
            },
            idempotency.map(|i| i.request_id.to_string()),
        )?;
        match self.store.batch_begin(ctx, start, idempotency).await? {
            RetireStart::Started(record) => Ok(*record),
            RetireStart::Replayed(first) => {
                let id = first.workflow()?;
                self.store.workflow_get(ctx, &id).await
            }
        }
    }
}

/// A batch's instances grouped by account, in the order they were listed.
#[derive(Debug, Default)]
struct ByAccount {
    groups: Vec<Vec<String>>,
    index: std::collections::HashMap<String, usize>,
    len: usize,
}

impl ByAccount {
    fn push(&mut self, account: &str, name: String) {
        let next = self.groups.len();
        let group = *self.index.entry(account.to_owned()).or_insert(next);
        if group == next {
            self.groups.push(Vec::new());
        }
        self.groups[group].push(name);
        self.len += 1;
    }

    /// The first instance of each account, then the second of each, ...:
    /// a wave of consecutive instances spans as many accounts as it can.
    fn interleaved(self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.len);
        let mut groups: Vec<std::vec::IntoIter<String>> =
            self.groups.into_iter().map(Vec::into_iter).collect();
        while out.len() < self.len {
            for group in &mut groups {
                if let Some(name) = group.next() {
                    out.push(name);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_are_interleaved_by_account_in_listed_order() {
        let mut by = ByAccount::default();
        for (account, name) in [
            ("a", "a1"),
            ("a", "a2"),
            ("a", "a3"),
            ("b", "b1"),
            ("c", "c1"),
            ("c", "c2"),
        ] {
            by.push(account, name.to_owned());
        }
        assert_eq!(by.len, 6);
        assert_eq!(
            by.interleaved(),
            ["a1", "b1", "c1", "a2", "c2", "a3"].map(str::to_owned)
        );
        assert!(ByAccount::default().interleaved().is_empty());
    }

    #[test]
    fn a_batch_saved_before_waves_resumes_as_a_wave_of_one() {
        let old = r#"{"state":"ensuring","next":2,"before":"ABSENT","counts":{"total":3,"done":2,"created":0,"adopted":0,"restored":0,"unchanged":2,"failed":0,"failed_by_reason":{}},"failures":[]}"#;
        let state: BatchState = serde_json::from_str(old).expect("an old state");
        match state {
            BatchState::Ensuring {
                next, before, wave, ..
            } => {
                assert_eq!(
                    (next, before, wave.len()),
                    (2, Some(LinkedRoleState::Absent), 0)
                );
            }
            other => panic!("{other:?}"),
        }
        // New states carry the wave, not `before`.
        let new = BatchState::Ensuring {
            next: 0,
            before: None,
            wave: vec![Some(LinkedRoleState::Active), None],
            counts: BatchCounts::default(),
            failures: Vec::new(),
        };
        let json = serde_json::to_string(&new).expect("json");
        assert!(!json.contains("before"), "{json}");
        assert_eq!(
            serde_json::from_str::<BatchState>(&json).expect("back"),
            new
        );
    }
}
