//! The datastore of slr-governor: one interface ([`Store`], made of one
//! trait per resource), two engines (Postgres for production with many
//! replicas, SQLite as the embedded default) with the same behaviour,
//! proven by one contract test suite.
//!
//! Every method takes the [`RequestContext`] and checks, next to the query,
//! that the caller may see the account (NOT_FOUND otherwise) and has the
//! role for the action (PERMISSION_DENIED). Methods are named resource-first
//! (`account_get`, `instance_list`, `workflow_claim_due`), so grepping a
//! resource's prefix shows every operation on it.

use std::time::Duration;

use async_trait::async_trait;
use slrgov_domain::audit::{AuditEvent, AuditFilter, NewAuditEvent};
use slrgov_domain::filter::InstanceFilter;
use slrgov_domain::model::{
    Account, AccountAccess, AccountPatch, DeletionFailure, Instance, InstancePatch, LinkedRole,
    NewAccount, NewInstance, ObservedRole,
};
use slrgov_domain::names::{AccountSelector, InstanceKey};
use slrgov_domain::types::{AccountId, RequestId, Revision};
use slrgov_domain::workflow::{NewWorkflow, WorkflowKind, WorkflowLog, WorkflowRecord};
use slrgov_domain::{FieldError, RequestContext, Result};

mod changes;
mod discovery;
mod engine;
mod error;
mod findings;
mod open;
pub mod page_token;

pub use changes::{ChangeCursor, ChangePage, ChangeStore, InstanceChange, LinkedRoleChange};
pub use discovery::{DiscoveryStore, Listed, Observation, ObserveCounts, SyncStart};
pub use engine::postgres::PostgresStore;
pub use engine::sqlite::SqliteStore;
pub use findings::FindingStore;
pub use open::{DEFAULT_REQUEST_ID_TTL, Migrations, OpenError, StoreConfig, open, url_for_logs};

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL.
    Postgres,
    /// SQLite (a file, or memory).
    Sqlite,
}

/// The default page size (AIP-158).
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// The largest page size; larger requests are lowered to it.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A page request, validated at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// The page size, between 1 and [`MAX_PAGE_SIZE`].
    pub size: u32,
    /// The token of the previous page, if any.
    pub token: Option<String>,
}

impl PageRequest {
    /// Validates `page_size` (negative is an error, 0 means the default,
    /// above the maximum is clamped) and keeps the token for the store to
    /// check.
    pub fn parse(page_size: i32, page_token: &str) -> Result<Self, FieldError> {
        let size = match page_size {
            n if n < 0 => return Err(FieldError::new("must not be negative")),
            0 => DEFAULT_PAGE_SIZE,
            n => (n as u32).min(MAX_PAGE_SIZE),
        };
        Ok(PageRequest {
            size,
            token: (!page_token.is_empty()).then(|| page_token.to_owned()),
        })
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// The token for the next page; empty on the last page.
    pub next_page_token: String,
}

/// An AIP-155 request id with the method and the fingerprint of the request
/// it came with. One rule for every RPC that takes one: the id is kept per
/// caller (principal) and account, in the same transaction as the change;
/// a replay gets the first answer; the same id with another method or
/// fingerprint is REQUEST_ID_REUSED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The caller's request id.
    pub request_id: RequestId,
    /// The short name of the RPC (`CreateInstance`).
    pub method: String,
    /// A digest of the method and every parameter of the request.
    pub fingerprint: Vec<u8>,
}

/// The first answer of a request id that was used before.
#[derive(Debug, Clone, PartialEq)]
pub enum Replay {
    /// The response the first request got (JSON of the domain value).
    Response(serde_json::Value),
    /// The workflow the first request started (an Operation's id, or an
    /// ensure still running or finished): its current state is the answer.
    Workflow(String),
}

impl Replay {
    /// The stored response, typed.
    pub fn response<T: serde::de::DeserializeOwned>(self) -> Result<T> {
        match self {
            Replay::Response(value) => {
                serde_json::from_value(value).map_err(|e| error::corrupt("request_ids.response", e))
            }
            Replay::Workflow(id) => Err(error::corrupt(
                "request_ids.response",
                format!("a response was expected, the request started workflow {id}"),
            )),
        }
    }

    /// The workflow the first request started.
    pub fn workflow(self) -> Result<String> {
        match self {
            Replay::Workflow(id) => Ok(id),
            Replay::Response(_) => Err(error::corrupt(
                "request_ids.workflow_id",
                "a workflow was expected, the request stored a response",
            )),
        }
    }
}

/// A workflow step's proof that it still holds its workflow: writes a step
/// makes to the records (a role recorded ACTIVE, DELETED, ...) check it in
/// their own transaction, so a process that lost its lease cannot write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The workflow.
    pub workflow_id: String,
    /// Its holder.
    pub owner: String,
}

/// One row of the telemetry gauges: how many linked roles (`kind`
/// `linked_role`) are in a state, how many workflows of a kind (`kind`
/// `workflow`, state = the workflow kind) are running, or how many
/// findings of a code and severity (`kind` `finding`) are open, and since
/// when the oldest has been there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaugeRow {
    /// `linked_role`, `workflow`, `finding` or `reconcile`.
    pub kind: String,
    /// The linked role's state (`ACTIVE`, `CREATING`, …), the workflow
    /// kind (`ensure`, `retire`, `delete`, `sync`, `reconcile`), the
    /// open findings' `{CODE}/{SEVERITY}` (`ROLE_MISSING/ERROR`), or the
    /// account id (`reconcile`: one row per account with a finished pass).
    pub state: String,
    /// How many (1 for a `reconcile` row).
    pub count: u64,
    /// The oldest one's last change (a linked role), start (a workflow),
    /// first seen time (a finding), or the end of the account's newest
    /// successful pass (`reconcile`).
    pub oldest: Option<chrono::DateTime<chrono::Utc>>,
}

/// What starting an ensure found.
#[derive(Debug, Clone, PartialEq)]
pub enum EnsureStart {
    /// The role is recorded ACTIVE: nothing to start (confirm it in IAM).
    Active(Box<LinkedRole>),
    /// The caller holds the instance's ensure workflow now: a new one, or
    /// one whose holder's lease ran out (it runs with its saved inputs).
    Claimed(Box<WorkflowRecord>),
    /// Another process holds the ensure workflow: wait for it.
    Running(Box<WorkflowRecord>),
    /// The request id was used before: its first answer.
    Replayed(Replay),
}

/// What starting a retirement found.
#[derive(Debug, Clone, PartialEq)]
pub enum RetireStart {
    /// The retirement started, or the one already running (retiring again
    /// while IAM deletes returns the same operation).
    Started(Box<WorkflowRecord>),
    /// The request id was used before: its first answer.
    Replayed(Replay),
}

/// How an undone retirement leaves the record: what IAM says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoredRole {
    /// The role is still there: ACTIVE again.
    Active,
    /// IAM refused to delete it: DELETION_FAILED, with why.
    DeletionFailed(DeletionFailure),
    /// The role is gone after all: DELETED.
    Deleted,
}

/// Accounts: where the service acts (admin), and how it reaches them.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Registers an account (admin). ALREADY_EXISTS when it exists;
    /// replays the first response for a known request id.
    async fn account_create(
        &self,
        ctx: &RequestContext,
        new: NewAccount,
        idempotency: Option<&Idempotency>,
    ) -> Result<Account>;

    /// Returns an account (viewer).
    async fn account_get(&self, ctx: &RequestContext, account: &AccountId) -> Result<Account>;

    /// Lists the visible accounts by account id (viewer).
    async fn account_list(&self, ctx: &RequestContext, page: &PageRequest)
    -> Result<Page<Account>>;

    /// Changes an account (admin), if `expected` still matches.
    async fn account_update(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
        expected: Option<Revision>,
        patch: AccountPatch,
    ) -> Result<Account>;

    /// Removes an account (admin) that has no instances, if `expected` still
    /// matches.
    async fn account_delete(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
        expected: Option<Revision>,
    ) -> Result<()>;

    /// How the service reaches an account, with its external id (viewer:
    /// the secret never leaves the service; it goes to STS only).
    async fn account_access(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
    ) -> Result<AccountAccess>;
}

/// Instances: the Connect instances of each account.
#[async_trait]
pub trait InstanceStore: Send + Sync {
    /// Registers an instance (operator).
    async fn instance_create(
        &self,
        ctx: &RequestContext,
        new: NewInstance,
        idempotency: Option<&Idempotency>,
    ) -> Result<Instance>;

    /// Returns an instance (viewer).
    async fn instance_get(&self, ctx: &RequestContext, key: &InstanceKey) -> Result<Instance>;

    /// Lists instances of one account or of every visible account, by
    /// account id then instance id (viewer).
    async fn instance_list(
        &self,
        ctx: &RequestContext,
        parent: &AccountSelector,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<Instance>>;

    /// Changes an instance (operator), if `expected` still matches.
    async fn instance_update(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        expected: Option<Revision>,
        patch: InstancePatch,
        idempotency: Option<&Idempotency>,
    ) -> Result<Instance>;

    /// Removes an instance record (operator) whose linked role is absent or
    /// deleted, if `expected` still matches, and records `done`, the
    /// finished `delete` operation DeleteInstance answers with (and the
    /// request id pointing at it), in the same transaction.
    /// FAILED_PRECONDITION / LINKED_ROLE_NOT_RETIRED while it has a role;
    /// a known request id replays its operation.
    async fn instance_delete(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        expected: Option<Revision>,
        done: NewWorkflow,
        idempotency: Option<&Idempotency>,
    ) -> Result<WorkflowRecord>;
}

/// Linked roles: the record of each instance's role, and the writes the
/// ensure and retire workflows make to it.
#[async_trait]
pub trait LinkedRoleStore: Send + Sync {
    /// The recorded linked role of an instance (viewer); ABSENT when none
    /// was ever recorded.
    async fn linked_role_get(&self, ctx: &RequestContext, key: &InstanceKey) -> Result<LinkedRole>;

    /// Starts (or joins) the ensure workflow of an instance (operator), in
    /// one transaction: an ACTIVE role needs none; a retirement running is
    /// ABORTED / OPERATION_IN_PROGRESS; a running ensure whose holder's
    /// lease ran out is taken over by `owner` (with its saved inputs); one
    /// held by another process is returned to wait for. A new workflow
    /// makes the role CREATING, and the request id points at it.
    async fn linked_role_begin_ensure(
        &self,
        ctx: &RequestContext,
        start: NewWorkflow,
        owner: &str,
        lease: Duration,
        idempotency: Option<&Idempotency>,
    ) -> Result<EnsureStart>;

    /// Records the role an ensure created or adopted as ACTIVE (operator),
    /// `restored` when it made again the role Connect names. Run twice with
    /// the same role, it changes nothing. FAILED_PRECONDITION /
    /// ROLE_OWNED_ELSEWHERE when another instance record holds the role.
    async fn linked_role_activate(
        &self,
        ctx: &RequestContext,
        fence: &Fence,
        key: &InstanceKey,
        observed: ObservedRole,
        adopted: bool,
        restored: bool,
    ) -> Result<LinkedRole>;

    /// The other instance record of `key`'s account (one that is not
    /// DELETED) that holds the role named `role_name`, if any (viewer). An
    /// undone ensure asks before it deletes a role it created: where custom
    /// suffixes are refused, every instance shares the one unsuffixed role,
    /// and another record may have adopted it meanwhile.
    async fn linked_role_held_elsewhere(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        role_name: &str,
    ) -> Result<Option<InstanceKey>>;

    /// Undoes the start of an ensure (operator): a CREATING record goes
    /// back to ABSENT (a record that has a role keeps it).
    async fn linked_role_abandon(
        &self,
        ctx: &RequestContext,
        fence: &Fence,
        key: &InstanceKey,
    ) -> Result<LinkedRole>;

    /// Records a new description of an ACTIVE role (operator), if
    /// `expected` still matches; a known request id replays its answer.
    async fn linked_role_set_description(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        expected: Option<Revision>,
        description: &str,
        idempotency: Option<&Idempotency>,
    ) -> Result<LinkedRole>;

    /// Starts retiring an instance's role (operator), in one transaction:
    /// the linked role goes DELETING, a `retire` or `delete` workflow is
    /// recorded for the workers, and the request id points at it. A
    /// retirement of the same kind already running is returned as it is;
    /// another workflow running is ABORTED / OPERATION_IN_PROGRESS.
    /// FAILED_PRECONDITION unless the role is ACTIVE or DELETION_FAILED.
    async fn linked_role_begin_retire(
        &self,
        ctx: &RequestContext,
        start: NewWorkflow,
        expected: Option<Revision>,
        idempotency: Option<&Idempotency>,
    ) -> Result<RetireStart>;

    /// Records the deletion task IAM started for the role (operator), shown
    /// as the linked role's `deletion_task_id`. Safe to run twice.
    async fn linked_role_deletion_started(
        &self,
        ctx: &RequestContext,
        fence: &Fence,
        key: &InstanceKey,
        task_id: &str,
    ) -> Result<()>;

    /// Records that IAM deleted the role (operator): DELETED; for a
    /// `delete` workflow the instance record goes too (with its linked
    /// role row). Returns the record (`None` once removed). Safe to run
    /// twice.
    async fn linked_role_retired(
        &self,
        ctx: &RequestContext,
        fence: &Fence,
        key: &InstanceKey,
        kind: WorkflowKind,
    ) -> Result<Option<LinkedRole>>;

    /// Undoes the start of a retirement (operator): the record becomes what
    /// IAM says now.
    async fn linked_role_restore(
        &self,
        ctx: &RequestContext,
        fence: &Fence,
        key: &InstanceKey,
        restored: RestoredRole,
    ) -> Result<LinkedRole>;
}

/// Workflows: the stored step machines, shown as Operations for the kinds
/// that are long-running operations. `workflow_save` (the engine's writes)
/// is [`WorkflowLog`].
#[async_trait]
pub trait WorkflowStore: WorkflowLog {
    /// One workflow (viewer); NOT_FOUND outside the caller's accounts.
    async fn workflow_get(&self, ctx: &RequestContext, workflow_id: &str)
    -> Result<WorkflowRecord>;

    /// The caller's operations (the workflows that are operations), by id
    /// (viewer).
    async fn workflow_list_operations(
        &self,
        ctx: &RequestContext,
        page: &PageRequest,
    ) -> Result<Page<WorkflowRecord>>;

    /// Claims up to `limit` due workflows (running or unwinding, not
    /// before now, not held) for `owner` until `lease` runs out (workers;
    /// SKIP LOCKED on Postgres so replicas share the work).
    async fn workflow_claim_due(
        &self,
        ctx: &RequestContext,
        owner: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<WorkflowRecord>>;

    /// Gives up the workflows `owner` holds (graceful shutdown), so another
    /// replica takes them over at once.
    async fn workflow_release_all(&self, ctx: &RequestContext, owner: &str) -> Result<()>;

    /// Starts a batch (operator), in one transaction: a `batch_ensure`
    /// workflow recorded for the workers (its inputs are the instances the
    /// caller listed, checked by the handler), the request id pointing at
    /// it, an audit event. A request id used before replays its operation.
    /// NOT_FOUND for an account the caller cannot see. Batches never join
    /// each other: two batches may run at once (each ensure is idempotent).
    async fn batch_begin(
        &self,
        ctx: &RequestContext,
        start: NewWorkflow,
        idempotency: Option<&Idempotency>,
    ) -> Result<RetireStart>;

    /// Asks a running workflow to stop (operator; CancelOperation): marks
    /// it cancel-requested, audited; its next step sees it and ends the
    /// workflow CANCELLED after the current unit of work. Only `batch_ensure`
    /// and `sync` workflows can be cancelled (FAILED_PRECONDITION otherwise:
    /// IAM cannot call back a deletion it accepted, an ensure is one
    /// instance's); a finished one is returned as it is. NOT_FOUND outside
    /// the caller's accounts.
    async fn workflow_cancel(
        &self,
        ctx: &RequestContext,
        workflow_id: &str,
    ) -> Result<WorkflowRecord>;

    /// Whether someone asked `workflow_id` to stop (workers, between
    /// units of work).
    async fn workflow_cancel_requested(
        &self,
        ctx: &RequestContext,
        workflow_id: &str,
    ) -> Result<bool>;

    /// Removes up to `limit` finished reconcile passes that ended longer
    /// than `older_than` ago (workers) that a newer pass replaces, keeping
    /// each account's newest successful pass (the lag gauge reads it);
    /// returns how many went. Passes run every interval for every account:
    /// without this the table would grow without bound.
    async fn workflow_sweep_passes(
        &self,
        ctx: &RequestContext,
        older_than: Duration,
        limit: u32,
    ) -> Result<u64>;
}

/// Request ids (AIP-155), for the RPCs that must know of a replay before
/// they call AWS, and for answers that changed nothing.
#[async_trait]
pub trait RequestIdStore: Send + Sync {
    /// The first answer of a request id the caller used within the window,
    /// or `None`; REQUEST_ID_REUSED when it came with another request.
    async fn request_id_lookup(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
        idempotency: &Idempotency,
    ) -> Result<Option<Replay>>;

    /// Records `response` as the answer of a request that changed nothing
    /// (an ensure of a role already ACTIVE), or returns the answer a
    /// concurrent request with the same id recorded first.
    async fn request_id_record(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
        idempotency: &Idempotency,
        response: serde_json::Value,
    ) -> Result<Option<Replay>>;

    /// Removes up to `limit` request ids older than the window (workers);
    /// returns how many went.
    async fn request_id_sweep(&self, ctx: &RequestContext, limit: u32) -> Result<u64>;
}

/// The audit trail.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Writes the audit event of a mutation that failed (or was refused)
    /// after its target was known, with the AWS calls not yet written. Any
    /// caller's failures are recorded: no role is needed.
    async fn audit_append(&self, ctx: &RequestContext, event: NewAuditEvent) -> Result<()>;

    /// The audit events of one account, newest first (viewer); NOT_FOUND
    /// outside the caller's accounts. Events outlive the account: a visible
    /// account that was deleted still lists its trail.
    async fn audit_list(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>>;
}

/// The datastore: every resource's methods. Both engines implement it with
/// the same behaviour.
#[async_trait]
pub trait Store:
    AccountStore
    + InstanceStore
    + LinkedRoleStore
    + WorkflowStore
    + RequestIdStore
    + AuditStore
    + DiscoveryStore
    + FindingStore
    + ChangeStore
{
    /// The engine behind this store.
    fn engine(&self) -> Engine;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;

    /// The key that seals page tokens, shared by every replica (for lists
    /// served from memory, such as regions).
    fn page_tokens(&self) -> &page_token::PageTokenKey;

    /// The linked roles by state, the running workflows by kind and the
    /// open findings by code and severity, with the oldest of each, for the
    /// telemetry gauges (workers; every account the context sees). One
    /// statement; the rows are ordered by kind, then state.
    async fn gauges(&self, ctx: &RequestContext) -> Result<Vec<GaugeRow>>;

    /// Reserves one call of `account` to the AWS `service` (`iam`,
    /// `connect`) in the bucket every replica shares, at `per_second` calls
    /// a second with `burst` at once (GCRA, one statement, on the
    /// database's clock), and returns how long the caller must wait before
    /// making it. `None`: this engine serves one process (SQLite), whose
    /// own limiter is already exact. Not tenant data: no context, no scope.
    async fn rate_reserve(
        &self,
        account: &AccountId,
        service: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Option<Duration>>;

    /// Gives back one call reserved with [`Store::rate_reserve`] and never
    /// made (its caller gave up while waiting for its slot): the bucket's
    /// next reservation comes one interval sooner, never before now. A
    /// no-op on SQLite.
    async fn rate_refund(&self, account: &AccountId, service: &str, per_second: f64) -> Result<()>;
}
