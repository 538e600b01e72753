//! The reconcile pass's `repair` step (`SLRGOV_RECONCILE_MODE=repair`):
//! EnsureLinkedRole of each instance whose role is missing, read again
//! just before, then inspected again.

use chrono::Utc;
use slrgov_domain::Error;
use slrgov_domain::finding::{FindingCode, FindingScope, NewFinding, Severity};
use slrgov_domain::model::{Instance, LinkedRoleState, ObservedState};
use slrgov_domain::names::InstanceKey;
use slrgov_domain::workflow::{Outcome, WorkflowError};

use super::super::ensure_request::ensure_outcome;
use super::super::steps::{MAX_TRANSIENT_ATTEMPTS, retry, transient};
use super::super::sync::Look;
use super::{
    PassTotals, READS_PER_INSPECTION, ReconcileInputs, ReconcileReport, ReconcileState,
    ReconcileWorkflow, Repair, stored,
};

impl ReconcileWorkflow<'_> {
    /// Ensures the next missing role, then inspects the instance again.
    pub(super) async fn repair(
        &self,
        inputs: &ReconcileInputs,
        looks: Vec<Look>,
        mut totals: PassTotals,
        mut repair: Vec<String>,
        mut repairs: Vec<Repair>,
        attempt: u32,
    ) -> Outcome<ReconcileState, ReconcileReport> {
        if let Some(next) = repair.first().cloned() {
            let name = format!("accounts/{}/instances/{next}", inputs.account_id);
            match self.repair_one(&name, &mut totals).await {
                Ok(outcome) => repairs.push(Repair {
                    instance: name,
                    outcome,
                    error: None,
                }),
                Err(error) if transient(&error) && attempt < MAX_TRANSIENT_ATTEMPTS => {
                    return retry(attempt, error.message);
                }
                Err(error) => {
                    tracing::warn!(instance = %name, reason = %error.reason, error = %error.message, "a reconcile repair failed; the pass goes on");
                    repairs.push(Repair {
                        instance: name,
                        outcome: String::new(),
                        error: Some(WorkflowError::from(error)),
                    });
                }
            }
            repair.remove(0);
        }
        if repair.is_empty() {
            return Outcome::Done(ReconcileReport {
                looks,
                totals,
                repairs,
            });
        }
        Outcome::Next(ReconcileState::Repairing {
            looks,
            totals,
            repair,
            repairs,
        })
    }

    async fn repair_one(&self, name: &str, totals: &mut PassTotals) -> Result<String, Error> {
        let key = InstanceKey::parse(name)
            .map_err(|e| Error::internal(format!("a saved instance is malformed: {e}")))?;
        let store = self.lifecycle.store();
        // Read again now: a pass's list may be minutes old, and a role the
        // user has retired meanwhile, or an instance Connect dropped, is
        // never given a role by the reconciler.
        let instance = store.instance_get(self.ctx, &key).await?;
        let before = store.linked_role_get(self.ctx, &key).await?;
        // (ACTIVE: this repair's own ensure finished in the background
        // after an earlier attempt of this step; it is confirmed.)
        if instance.connect.observed_state != ObservedState::Observed
            || !matches!(
                before.state,
                LinkedRoleState::Absent | LinkedRoleState::Creating | LinkedRoleState::Active
            )
        {
            return Ok("skipped".to_owned());
        }
        let role = self
            .lifecycle
            .ensure(self.ctx, &key, None, false, None)
            .await?;
        let outcome = ensure_outcome(Some(before.state), &role);
        tracing::info!(instance = %name, outcome, role = role.role_arn.as_deref().unwrap_or_default(), "the reconciler repaired a missing role");
        // Seen again, so the finding it fixed is resolved now, not a pass
        // later (when the budget allows).
        if totals.reads_left >= READS_PER_INSPECTION {
            totals.reads_left -= READS_PER_INSPECTION;
            let inspection = self.lifecycle.inspect(self.ctx, &key).await?;
            let seen: Vec<NewFinding> = inspection
                .findings
                .iter()
                .map(|f| stored(name, f))
                .collect();
            let counts = store
                .finding_record(
                    self.ctx,
                    &key.account_id,
                    &FindingScope::Target(name.to_owned()),
                    &seen,
                    Utc::now(),
                )
                .await?;
            totals.add(counts);
        }
        Ok(outcome.to_owned())
    }
}

/// True when repair mode ensures the instance's role: none is recorded, it
/// is missing in IAM (the role Connect names was deleted, or a legacy
/// instance has none) and the instance is live in Connect.
pub(super) fn repairable(instance: &Instance, seen: &[NewFinding]) -> bool {
    // An ACTIVE record whose role IAM lost is reported, not repaired:
    // EnsureLinkedRole refuses it until RetireLinkedRole clears the record.
    instance.connect.observed_state == ObservedState::Observed
        && instance.linked_role_state == LinkedRoleState::Absent
        && seen.iter().any(|f| {
            f.severity == Severity::Error
                && matches!(
                    f.code,
                    FindingCode::RoleMissing | FindingCode::LegacyInstanceWithoutRole
                )
        })
}
