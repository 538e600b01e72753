//! The datastore of slr-governor: one interface ([`Store`]), two engines
//! (Postgres for production with many replicas, SQLite as the embedded
//! default) with the same behaviour, proven by one contract test suite.
//!
//! Every method takes the [`RequestContext`] and checks, next to the query,
//! that the caller may see the account (NOT_FOUND otherwise) and has the
//! role for the action (PERMISSION_DENIED). Methods are named resource-first
//! (`account_get`, `instance_list`), so grepping a resource's prefix shows
//! every operation on it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use slrgov_domain::audit::{AuditEvent, AuditFilter, NewAuditEvent};
use slrgov_domain::filter::InstanceFilter;
use slrgov_domain::model::{
    Account, AccountAccess, AccountPatch, EnsureClaim, Instance, InstancePatch, LinkedRole,
    NewAccount, NewInstance, ObservedRole, OperationRecord, OperationStep, OperationVerb,
};
use slrgov_domain::names::{AccountSelector, InstanceKey};
use slrgov_domain::types::{AccountId, RequestId, Revision};
use slrgov_domain::{FieldError, RequestContext, Result};

mod engine;
mod error;
pub mod page_token;

pub use engine::postgres::PostgresStore;
pub use engine::sqlite::SqliteStore;

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

/// An AIP-155 request id with the fingerprint of the request it came with:
/// the same id with another fingerprint is REQUEST_ID_REUSED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The caller's request id.
    pub request_id: RequestId,
    /// A digest of the method and every parameter of the request.
    pub fingerprint: Vec<u8>,
}

/// One row of the telemetry gauges: how many linked roles (`kind`
/// `linked_role`) are in a state, or how many operations (`kind`
/// `operation`, state `RUNNING`) are running, and since when the oldest has
/// been there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaugeRow {
    /// `linked_role` or `operation`.
    pub kind: String,
    /// The linked role's state (`ACTIVE`, `CREATING`, …), or `RUNNING`.
    pub state: String,
    /// How many.
    pub count: u64,
    /// The oldest one's last change (a linked role) or start (an operation).
    pub oldest: Option<chrono::DateTime<chrono::Utc>>,
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `postgres://...` or `sqlite://...`.
    pub url: String,
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long to wait for a connection before answering UNAVAILABLE.
    pub acquire_timeout: Duration,
    /// Accept a Postgres role that bypasses row-level security (a superuser
    /// or BYPASSRLS role); refused by default.
    pub allow_rls_bypass: bool,
}

impl StoreConfig {
    /// A configuration with the default pool settings.
    pub fn new(url: impl Into<String>) -> Self {
        StoreConfig {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            allow_rls_bypass: false,
        }
    }
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is neither postgres:// nor sqlite://.
    #[error("unsupported database url scheme (expected postgres:// or sqlite://)")]
    UnsupportedUrl,
    /// The database could not be reached.
    #[error("cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    /// A migration failed.
    #[error("cannot migrate the database")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The Postgres role skips row-level security.
    #[error(
        "the Postgres role {role} is a superuser or has BYPASSRLS, which skips row-level security \
         between tenants: connect as an ordinary role (see the README), or set \
         SLRGOV_ALLOW_RLS_BYPASS=true to accept it"
    )]
    RlsBypass {
        /// The role.
        role: String,
    },
    /// The service keys could not be loaded.
    #[error("cannot load the service keys")]
    Keys(#[source] sqlx::Error),
}

impl OpenError {
    /// False for mistakes that waiting will not fix (a malformed or
    /// unsupported URL); true for an unreachable or starting database.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            OpenError::UnsupportedUrl
                | OpenError::RlsBypass { .. }
                | OpenError::Connect(sqlx::Error::Configuration(_))
        )
    }
}

/// Connects to the database named by `config.url`, runs the migrations
/// (on Postgres under sqlx's advisory lock, so replicas starting together do
/// not race) and returns the store.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, OpenError> {
    if config.url.starts_with("postgres://") || config.url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::open(config).await?))
    } else if config.url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(config).await?))
    } else {
        Err(OpenError::UnsupportedUrl)
    }
}

/// The datastore. Both engines implement it with the same behaviour.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The engine behind this store.
    fn engine(&self) -> Engine;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;

    /// The key that seals page tokens, shared by every replica (for lists
    /// served from memory, such as regions).
    fn page_tokens(&self) -> &page_token::PageTokenKey;

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
    /// deleted, if `expected` still matches; returns the removed record.
    async fn instance_delete(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        expected: Option<Revision>,
        idempotency: Option<&Idempotency>,
    ) -> Result<Instance>;

    /// How the service reaches an account, with its external id (viewer:
    /// the secret never leaves the service; it goes to STS only).
    async fn account_access(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
    ) -> Result<AccountAccess>;

    /// The recorded linked role of an instance (viewer); ABSENT when none
    /// was ever recorded.
    async fn linked_role_get(&self, ctx: &RequestContext, key: &InstanceKey) -> Result<LinkedRole>;

    /// Claims the ensure workflow of an instance for `owner` until `lease`
    /// runs out (operator): returns the ACTIVE record, a claim with the
    /// suffix to create (the planned one of an earlier attempt, else
    /// `suffix`), or Busy while another owner's lease runs. ABORTED /
    /// OPERATION_IN_PROGRESS while the role is being deleted.
    async fn linked_role_claim(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        owner: &str,
        lease: Duration,
        suffix: &str,
    ) -> Result<EnsureClaim>;

    /// Records the role `owner` created or adopted as ACTIVE and releases
    /// the claim. FAILED_PRECONDITION / ROLE_OWNED_ELSEWHERE when another
    /// instance record holds the same role; ABORTED when the claim was lost.
    async fn linked_role_activate(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        owner: &str,
        observed: ObservedRole,
        adopted: bool,
    ) -> Result<LinkedRole>;

    /// Gives up `owner`'s claim: back to ABSENT when nothing can have been
    /// created, else left CREATING with the lease expired so that the next
    /// attempt resumes with the same suffix.
    async fn linked_role_release(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        owner: &str,
        nothing_created: bool,
    ) -> Result<()>;

    /// Records a new description of an ACTIVE role (operator), if
    /// `expected` still matches.
    async fn linked_role_set_description(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        expected: Option<Revision>,
        description: &str,
    ) -> Result<LinkedRole>;

    /// Starts retiring an instance's role (operator): the linked role goes
    /// DELETING and a running operation is recorded for the workers. A
    /// retirement already running is returned as it is. FAILED_PRECONDITION
    /// unless the role is ACTIVE or DELETION_FAILED.
    async fn operation_begin_retire(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        expected: Option<Revision>,
        verb: OperationVerb,
        request_id: Option<&str>,
    ) -> Result<OperationRecord>;

    /// Records an operation that finished at once (a DeleteInstance whose
    /// record had no role to retire).
    async fn operation_record_done(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        verb: OperationVerb,
        request_id: Option<&str>,
    ) -> Result<OperationRecord>;

    /// One operation (viewer); NOT_FOUND outside the caller's accounts.
    async fn operation_get(
        &self,
        ctx: &RequestContext,
        operation_id: &str,
    ) -> Result<OperationRecord>;

    /// The caller's operations, by id (viewer).
    async fn operation_list(
        &self,
        ctx: &RequestContext,
        page: &PageRequest,
    ) -> Result<Page<OperationRecord>>;

    /// Claims up to `limit` due operations for `owner` until `lease` runs
    /// out (workers; SKIP LOCKED on Postgres so replicas share the work).
    async fn operation_claim_due(
        &self,
        ctx: &RequestContext,
        owner: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OperationRecord>>;

    /// Records the next step of an operation `owner` holds, with the linked
    /// role (and instance) changes it implies, in one transaction.
    async fn operation_step(
        &self,
        ctx: &RequestContext,
        operation_id: &str,
        owner: &str,
        step: OperationStep,
    ) -> Result<OperationRecord>;

    /// Gives up the leases `owner` holds (graceful shutdown).
    async fn operation_release_all(&self, ctx: &RequestContext, owner: &str) -> Result<()>;

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

    /// Ensure workflows that were in flight when their process died: rows
    /// still CREATING whose lease ran out (workers; every account).
    async fn linked_role_list_stale(
        &self,
        ctx: &RequestContext,
        limit: u32,
    ) -> Result<Vec<InstanceKey>>;

    /// The linked roles by state and the running operations, with the
    /// oldest of each, for the telemetry gauges (workers; every account the
    /// context sees). One statement.
    async fn gauges(&self, ctx: &RequestContext) -> Result<Vec<GaugeRow>>;
}
