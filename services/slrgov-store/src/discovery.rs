//! Discovery: what Amazon Connect says about each account's instances,
//! recorded (`instance_observe`), and the syncs and reconcile passes that
//! ask it (`sync_begin`, `sync_due`).

use std::time::Duration;

use async_trait::async_trait;
use slrgov_domain::model::SeenInstance;
use slrgov_domain::types::{AccountId, InstanceId, RegionCode};
use slrgov_domain::workflow::{NewWorkflow, WorkflowKind, WorkflowRecord};
use slrgov_domain::{RequestContext, Result};

use crate::{Idempotency, Replay};

/// What Amazon Connect said about the instances of one account in one
/// region, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The account.
    pub account: AccountId,
    /// The region Connect was asked in.
    pub region: RegionCode,
    /// The instances Connect described.
    pub seen: Vec<SeenInstance>,
    /// What the look covered, and so which missing instances vanished.
    pub listed: Listed,
    /// When Connect was asked. An instance the registry saw after that
    /// (another look, recorded first, of a newer listing) is not marked
    /// VANISHED by this older one: two looks of one region may run at once
    /// (a user's sync and a reconcile pass), and a falsely vanished
    /// instance would stop counting as a user of its role. `None`: no
    /// such guard.
    pub asked_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a look at Connect covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    /// Every instance of the region (ListInstances, every page): an
    /// instance Connect knew before and does not list now has vanished.
    Everything,
    /// These instances, of which Connect knows none (DescribeInstance said
    /// not found): each has vanished if Connect knew it before.
    Missing(Vec<InstanceId>),
    /// Only the instances seen (DescribeInstance found them).
    Seen,
}

/// What recording an observation changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObserveCounts {
    /// Instances Connect described.
    pub seen: u32,
    /// Instances the registry did not hold: registered now.
    pub created: u32,
    /// Instances whose record changed.
    pub updated: u32,
    /// Instances Connect no longer knows: marked VANISHED.
    pub vanished: u32,
}

/// What starting a sync found.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncStart {
    /// A new sync.
    Started(Box<WorkflowRecord>),
    /// The account's sync already running (a second sync joins it).
    Running(Box<WorkflowRecord>),
    /// The request id was used before: its first answer.
    Replayed(Replay),
}

/// Discovery: what Amazon Connect says about the instances, recorded, and
/// the syncs that ask it.
#[async_trait]
pub trait DiscoveryStore: Send + Sync {
    /// Records what Connect said (operator), in one transaction: an instance
    /// the registry does not hold is registered (its linked role ABSENT); a
    /// known one takes Connect's alias, ARN, status, creation time, identity
    /// management type and service role, becomes OBSERVED and is last seen
    /// now; one Connect knew before and no longer does becomes VANISHED
    /// (never deleted); one registered by hand and never seen stays
    /// UNOBSERVED. Visible changes move the instance's etag.
    async fn instance_observe(
        &self,
        ctx: &RequestContext,
        observation: Observation,
    ) -> Result<ObserveCounts>;

    /// Starts a sync (operator), in one transaction: a sync of one account
    /// that is already running is returned to join, and so is (with
    /// `not_since`, the background schedule's interval) one that started
    /// within `not_since`; a request id used before replays its operation.
    /// NOT_FOUND for an account the caller cannot see (every account of
    /// `start`'s inputs is the handler's to check). `start.kind` is `sync`
    /// or `reconcile` (a reconcile pass of one account: one running per
    /// account, joined like a sync; syncs and passes do not join each
    /// other).
    async fn sync_begin(
        &self,
        ctx: &RequestContext,
        start: NewWorkflow,
        idempotency: Option<&Idempotency>,
        not_since: Option<Duration>,
    ) -> Result<SyncStart>;

    /// Accounts whose last workflow of `kind` (`sync` or `reconcile`)
    /// started longer than `interval` ago (or never), with none running
    /// (workers; every account the context sees), at most `limit`. For
    /// `sync`, a reconcile pass counts as a sync (it begins with one).
    async fn sync_due(
        &self,
        ctx: &RequestContext,
        kind: WorkflowKind,
        interval: Duration,
        limit: u32,
    ) -> Result<Vec<AccountId>>;
}
