//! Findings: what the reconciler's passes saw, stored (`finding_record`),
//! listed (`finding_list`) and counted with the instances
//! (`fleet_summary`).

use async_trait::async_trait;
use slrgov_domain::finding::{
    FindingCounts, FindingFilter, FindingScope, FleetSummary, NewFinding, StoredFinding,
};
use slrgov_domain::names::AccountSelector;
use slrgov_domain::types::AccountId;
use slrgov_domain::{RequestContext, Result};

use crate::{Page, PageRequest};

/// Findings: what the reconciler's passes found, kept with first seen, last
/// seen and resolve times (level-based: each pass states what it sees in
/// the scope it looked at; what it no longer sees is resolved).
#[async_trait]
pub trait FindingStore: Send + Sync {
    /// Records what a pass saw in `scope` of `account` (operator), in one
    /// transaction: each finding of `findings` (all in `scope`) is stored
    /// (a new one opened at `at`; an open one keeps its first seen time and
    /// takes `at` as last seen, its severity and message; a resolved one is
    /// opened again, first seen `at`); every open finding of the scope not
    /// in `findings` is resolved at `at`. Running it twice changes nothing
    /// but the last seen time. NOT_FOUND for an account the caller cannot
    /// see.
    async fn finding_record(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
        scope: &FindingScope,
        findings: &[NewFinding],
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<FindingCounts>;

    /// Lists the findings of one account or of every visible account
    /// (viewer), by account id then finding id, open and resolved unless
    /// the filter says which.
    async fn finding_list(
        &self,
        ctx: &RequestContext,
        parent: &AccountSelector,
        filter: &FindingFilter,
        page: &PageRequest,
    ) -> Result<Page<StoredFinding>>;

    /// The fleet summary of one account or of every visible account
    /// (viewer): instances by Connect status, observed state and
    /// linked-role state, open findings by code and severity, per account
    /// (every visible account, also those with nothing) and in total.
    async fn fleet_summary(
        &self,
        ctx: &RequestContext,
        parent: &AccountSelector,
    ) -> Result<FleetSummary>;
}
