//! Findings: what an inspection (InspectLinkedRole, live) or the
//! reconciler (stored, with first seen, last seen and resolve times) found
//! wrong or worth knowing about an instance's role or an account's roles.
//!
//! A stored finding is identified by what it is about, not by when it was
//! seen: the account, the target (an instance's resource name, or a role's
//! ARN for an orphan role), the code and the subject (the action and
//! resource of a permission finding, empty otherwise). Its id is a digest
//! of those, so the same problem seen on every pass is one finding whose
//! `last_seen_time` moves, and a problem that comes back after it was
//! resolved reopens the same finding.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::types::AccountId;

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FindingCode {
    /// No role in IAM.
    RoleMissing,
    /// The trust policy is not `connect.amazonaws.com` alone.
    TrustPolicyMismatch,
    /// Not under the Connect SLR path.
    PathMismatch,
    /// A needed permission is denied.
    PermissionMissing,
    /// A needed permission is allowed only under conditions.
    PermissionConditional,
    /// IAM's description differs from the record.
    DescriptionDrift,
    /// IAM has no record of use.
    RoleUnused,
    /// A pre-2018 instance without a role.
    LegacyInstanceWithoutRole,
    /// IAM's role is not the recorded one.
    RoleMismatch,
    /// The governed role is not the one Amazon Connect links to the
    /// instance.
    ServiceRoleMismatch,
    /// A Connect service-linked role in IAM that no instance uses (stored
    /// findings only).
    OrphanRole,
    /// Amazon Connect no longer lists an instance the registry holds
    /// (stored findings only).
    VanishedInstance,
}

impl FindingCode {
    /// Every code.
    pub const ALL: [FindingCode; 12] = [
        FindingCode::RoleMissing,
        FindingCode::TrustPolicyMismatch,
        FindingCode::PathMismatch,
        FindingCode::PermissionMissing,
        FindingCode::PermissionConditional,
        FindingCode::DescriptionDrift,
        FindingCode::RoleUnused,
        FindingCode::LegacyInstanceWithoutRole,
        FindingCode::RoleMismatch,
        FindingCode::ServiceRoleMismatch,
        FindingCode::OrphanRole,
        FindingCode::VanishedInstance,
    ];

    /// The code as the API, the database and the filter write it.
    pub const fn as_str(self) -> &'static str {
        match self {
            FindingCode::RoleMissing => "ROLE_MISSING",
            FindingCode::TrustPolicyMismatch => "TRUST_POLICY_MISMATCH",
            FindingCode::PathMismatch => "PATH_MISMATCH",
            FindingCode::PermissionMissing => "PERMISSION_MISSING",
            FindingCode::PermissionConditional => "PERMISSION_CONDITIONAL",
            FindingCode::DescriptionDrift => "DESCRIPTION_DRIFT",
            FindingCode::RoleUnused => "ROLE_UNUSED",
            FindingCode::LegacyInstanceWithoutRole => "LEGACY_INSTANCE_WITHOUT_ROLE",
            FindingCode::RoleMismatch => "ROLE_MISMATCH",
            FindingCode::ServiceRoleMismatch => "SERVICE_ROLE_MISMATCH",
            FindingCode::OrphanRole => "ORPHAN_ROLE",
            FindingCode::VanishedInstance => "VANISHED_INSTANCE",
        }
    }

    /// Parses the written form.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == value)
    }
}

impl fmt::Display for FindingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Drift, or a feature may break.
    Warning,
    /// A feature cannot work.
    Error,
}

impl Severity {
    /// Every severity, least serious first.
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Error];

    /// The severity as the API, the database and the filter write it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
        }
    }

    /// Parses the written form.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A finding a reconcile pass saw, to be stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFinding {
    /// What.
    pub code: FindingCode,
    /// How serious.
    pub severity: Severity,
    /// What it is about: an instance's resource name
    /// (`accounts/{a}/instances/{i}`) or, for an orphan role, the role's
    /// ARN.
    pub target: String,
    /// What tells two findings of one code on one target apart: `action
    /// resource` for a permission finding, empty otherwise.
    pub subject: String,
    /// Explanation (the newest pass's wording is kept).
    pub message: String,
}

impl NewFinding {
    /// The finding's id within its account: the first 32 hex digits of the
    /// SHA-256 of target, code and subject.
    pub fn id(&self) -> String {
        finding_id(&self.target, self.code, &self.subject)
    }
}

/// The id of the finding of `code` on `target` about `subject`.
pub fn finding_id(target: &str, code: FindingCode, subject: &str) -> String {
    let mut hash = Sha256::new();
    for part in [target, code.as_str(), subject] {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a pass looked at, and so which open findings it may resolve: every
/// open finding in the scope that the pass did not see again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindingScope {
    /// Every finding on one target (an instance's inspection).
    Target(String),
    /// Every finding of one code in the account (the orphan-role scan, the
    /// vanished instances).
    Code(FindingCode),
}

/// A stored finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFinding {
    /// The account.
    pub account_id: AccountId,
    /// The id within the account ([`NewFinding::id`]).
    pub finding_id: String,
    /// What.
    pub code: FindingCode,
    /// How serious (the newest pass's).
    pub severity: Severity,
    /// What it is about.
    pub target: String,
    /// What tells two findings of one code on one target apart.
    pub subject: String,
    /// Explanation (the newest pass's).
    pub message: String,
    /// The first pass that saw it since it was last opened (a resolved
    /// finding seen again is opened again: its first seen time is that
    /// pass's).
    pub first_seen_time: DateTime<Utc>,
    /// The newest pass that saw it.
    pub last_seen_time: DateTime<Utc>,
    /// When a pass that looked no longer saw it; `None` while open.
    pub resolve_time: Option<DateTime<Utc>>,
}

impl StoredFinding {
    /// `accounts/{account_id}/findings/{finding_id}`.
    pub fn name(&self) -> String {
        format!("accounts/{}/findings/{}", self.account_id, self.finding_id)
    }
}

/// What recording a pass's findings changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingCounts {
    /// Findings not open before: new, or resolved before and seen again.
    pub opened: u32,
    /// Findings open before and seen again.
    pub still_open: u32,
    /// Open findings of the scope the pass did not see: resolved now.
    pub resolved: u32,
}

/// A parsed ListFindings filter; `None` fields do not constrain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindingFilter {
    /// `code = ROLE_MISSING`.
    pub code: Option<FindingCode>,
    /// `severity = ERROR`.
    pub severity: Option<Severity>,
    /// `resolved = true` (resolved findings only) or `resolved = false`
    /// (open ones only).
    pub resolved: Option<bool>,
}

/// One account's share of the fleet summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetCounts {
    /// Instances.
    pub instances: u64,
    /// Instances by Connect status (`ACTIVE`, …; `UNKNOWN` when Connect
    /// never described the instance).
    pub by_connect_status: BTreeMap<String, u64>,
    /// Instances by observed state (`UNOBSERVED`, `OBSERVED`, `VANISHED`).
    pub by_observed_state: BTreeMap<String, u64>,
    /// Instances by linked-role state (`ABSENT`, `ACTIVE`, …).
    pub by_linked_role_state: BTreeMap<String, u64>,
    /// Open findings by code.
    pub open_findings_by_code: BTreeMap<String, u64>,
    /// Open findings by severity.
    pub open_findings_by_severity: BTreeMap<String, u64>,
}

impl FleetCounts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &FleetCounts) {
        self.instances += other.instances;
        for (mine, theirs) in [
            (&mut self.by_connect_status, &other.by_connect_status),
            (&mut self.by_observed_state, &other.by_observed_state),
            (&mut self.by_linked_role_state, &other.by_linked_role_state),
            (
                &mut self.open_findings_by_code,
                &other.open_findings_by_code,
            ),
            (
                &mut self.open_findings_by_severity,
                &other.open_findings_by_severity,
            ),
        ] {
            for (key, count) in theirs {
                *mine.entry(key.clone()).or_default() += count;
            }
        }
    }
}

/// The fleet summary of one account or of every visible account: the
/// counts of each account (in account id order) and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSummary {
    /// Each account's counts, by account id.
    pub accounts: Vec<(AccountId, FleetCounts)>,
    /// The sum of every account's counts.
    pub total: FleetCounts,
}
