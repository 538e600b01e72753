//! The reconcile pass's `orphans` step: the Connect service-linked roles in
//! IAM that no live instance uses.

use std::collections::HashSet;

use chrono::Utc;
use slrgov_aws::iam::CONNECT_SLR_PATH;
use slrgov_domain::Error;
use slrgov_domain::filter::InstanceFilter;
use slrgov_domain::finding::{FindingCode, FindingScope, NewFinding, Severity};
use slrgov_domain::model::{LinkedRoleState, ObservedState};
use slrgov_domain::names::AccountSelector;
use slrgov_domain::workflow::Outcome;
use slrgov_store::PageRequest;

use super::super::connect::ServiceRole;
use super::super::steps::{retry, transient};
use super::super::sync::Look;
use super::super::{iam_error, with_retries};
use super::{
    PassTotals, ReconcileInputs, ReconcileMode, ReconcileReport, ReconcileState, ReconcileWorkflow,
};

impl ReconcileWorkflow<'_> {
    /// Stores the Connect SLRs in IAM that no live instance uses.
    pub(super) async fn orphans(
        &self,
        inputs: &ReconcileInputs,
        looks: Vec<Look>,
        mut totals: PassTotals,
        repair: Vec<String>,
        attempt: u32,
    ) -> Outcome<ReconcileState, ReconcileReport> {
        match self.orphans_once(inputs, &looks, &mut totals).await {
            Ok(()) => {}
            Err(error) if transient(&error) => return retry(attempt, error.message),
            Err(error) => {
                tracing::warn!(account = %inputs.account_id, reason = %error.reason, error = %error.message, "the orphan-role scan failed; the pass goes on");
            }
        }
        if inputs.mode == ReconcileMode::Repair && !repair.is_empty() {
            return Outcome::Next(ReconcileState::Repairing {
                looks,
                totals,
                repair,
                repairs: Vec::new(),
            });
        }
        Outcome::Done(ReconcileReport {
            looks,
            totals,
            repairs: Vec::new(),
        })
    }

    async fn orphans_once(
        &self,
        inputs: &ReconcileInputs,
        looks: &[Look],
        totals: &mut PassTotals,
    ) -> Result<(), Error> {
        // A region that could not be listed may hold instances the registry
        // does not know yet, whose roles would look unused: the scan waits
        // for a pass that saw every region (the last scan's findings stay).
        if totals.reads_left == 0 || looks.iter().any(|l| l.error.is_some()) {
            return Ok(());
        }
        let account = Self::account(inputs)?;
        let store = self.lifecycle.store();
        // The roles the live instances use: the one Connect names for each,
        // and the one the service governs for each.
        let mut used = HashSet::new();
        let mut holders = Vec::new();
        let mut token = None;
        loop {
            let page = store
                .instance_list(
                    self.ctx,
                    &AccountSelector::One(account.clone()),
                    &InstanceFilter::default(),
                    &PageRequest {
                        size: slrgov_store::MAX_PAGE_SIZE,
                        token,
                    },
                )
                .await?;
            for instance in page.items {
                if instance.connect.observed_state == ObservedState::Vanished {
                    continue;
                }
                if !matches!(
                    instance.linked_role_state,
                    LinkedRoleState::Absent | LinkedRoleState::Deleted
                ) {
                    holders.push(instance.key());
                }
                if let Some(role) = instance
                    .connect
                    .service_role_arn
                    .as_deref()
                    .and_then(ServiceRole::parse)
                {
                    used.insert(role.name);
                }
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = Some(page.next_page_token);
        }
        let iam = self.lifecycle.iam_for_account(self.ctx, &account).await?;
        totals.reads_left = totals.reads_left.saturating_sub(1);
        let roles = with_retries("ListRoles", || iam.list_roles(CONNECT_SLR_PATH))
            .await
            .map_err(|e| iam_error("ListRoles", e))?;
        let candidates: Vec<_> = roles
            .into_iter()
            .filter(|role| !used.contains(&role.role_name))
            // Made after the pass started: perhaps for an instance Connect
            // created after the look.
            .filter(|role| match (role.create_date, inputs.started_at) {
                (Some(made), Some(started)) => made < started,
                _ => true,
            })
            .collect();
        // The roles the service governs for live instances (every holder:
        // the unsuffixed legacy role is shared by several instances).
        let mut governed = HashSet::new();
        if !candidates.is_empty() {
            for key in &holders {
                let record = store.linked_role_get(self.ctx, key).await?;
                if let Some(name) = record.role_name {
                    governed.insert(name);
                }
            }
        }
        let mut orphans = Vec::new();
        for role in candidates {
            if governed.contains(&role.role_name) {
                continue;
            }
            let made = role
                .create_date
                .map_or_else(String::new, |t| format!(", created {}", t.to_rfc3339()));
            orphans.push(NewFinding {
                code: FindingCode::OrphanRole,
                severity: Severity::Warning,
                target: role.arn.clone(),
                subject: String::new(),
                message: format!(
                    "{} is an Amazon Connect service-linked role that no live instance uses: neither Connect nor the service names it for one{made}",
                    role.role_name
                ),
            });
        }
        totals.orphans = u32::try_from(orphans.len()).unwrap_or(u32::MAX);
        totals.orphan_scan = true;
        let counts = store
            .finding_record(
                self.ctx,
                &account,
                &FindingScope::Code(FindingCode::OrphanRole),
                &orphans,
                Utc::now(),
            )
            .await?;
        totals.add(counts);
        Ok(())
    }
}
