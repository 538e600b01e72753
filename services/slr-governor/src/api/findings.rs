//! FindingService: what the background reconciler stored about the fleet,
//! for viewers. `accounts/-` lists across every account the caller sees; an
//! account outside the caller's scope is NOT_FOUND, exactly as if it did
//! not exist.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use slrgov_domain::Violations;
use slrgov_domain::filter::FILTER_MAX;
use slrgov_domain::finding::{FindingFilter, FleetCounts, StoredFinding};
use slrgov_domain::names::AccountSelector;
use slrgov_proto::slrgov::v1 as pb;
use slrgov_proto::slrgov::v1::finding_service_server::FindingService;
use slrgov_store::PageRequest;
use tonic::{Request, Response, Status};

use super::{AppState, accepted, handle};
use crate::caller::context;
use crate::convert;

/// The FindingService implementation.
#[derive(Debug, Clone)]
pub struct Findings {
    state: Arc<AppState>,
}

impl Findings {
    /// Serves the stored findings from `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Findings { state }
    }
}

/// A stored finding as the API shows it.
pub fn finding(finding: &StoredFinding) -> pb::Finding {
    pb::Finding {
        name: finding.name(),
        code: convert::finding_code(finding.code).into(),
        severity: convert::finding_severity(finding.severity).into(),
        target: finding.target.clone(),
        subject: finding.subject.clone(),
        message: finding.message.clone(),
        first_seen_time: Some(convert::timestamp(finding.first_seen_time)),
        last_seen_time: Some(convert::timestamp(finding.last_seen_time)),
        resolve_time: finding.resolve_time.map(convert::timestamp),
    }
}

fn counts(counts: &FleetCounts) -> pb::FleetCounts {
    let map = |m: &BTreeMap<String, u64>| -> HashMap<String, i64> {
        m.iter()
            .map(|(k, v)| (k.clone(), i64::try_from(*v).unwrap_or(i64::MAX)))
            .collect()
    };
    pb::FleetCounts {
        instances: i64::try_from(counts.instances).unwrap_or(i64::MAX),
        instances_by_connect_status: map(&counts.by_connect_status),
        instances_by_observed_state: map(&counts.by_observed_state),
        instances_by_linked_role_state: map(&counts.by_linked_role_state),
        open_findings_by_code: map(&counts.open_findings_by_code),
        open_findings_by_severity: map(&counts.open_findings_by_severity),
    }
}

#[tonic::async_trait]
impl FindingService for Findings {
    async fn list_findings(
        &self,
        request: Request<pb::ListFindingsRequest>,
    ) -> Result<Response<pb::ListFindingsResponse>, Status> {
        let ctx = context(&request, "ListFindings");
        let pb::ListFindingsRequest {
            parent,
            filter,
            page_size,
            page_token,
        } = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let parent = v.check("parent", AccountSelector::parse(&parent));
            let page = v.check("page_size", PageRequest::parse(page_size, &page_token));
            let filter = if filter.len() > FILTER_MAX {
                v.add("filter", format!("is longer than {FILTER_MAX} characters"));
                None
            } else {
                v.check("filter", FindingFilter::parse(&filter))
            };
            v.finish()?;
            let page = self
                .state
                .store()?
                .finding_list(
                    &ctx,
                    &accepted(parent)?,
                    &accepted(filter)?,
                    &accepted(page)?,
                )
                .await?;
            Ok(pb::ListFindingsResponse {
                findings: page.items.iter().map(finding).collect(),
                next_page_token: page.next_page_token,
            })
        })
        .await
    }

    async fn get_fleet_summary(
        &self,
        request: Request<pb::GetFleetSummaryRequest>,
    ) -> Result<Response<pb::FleetSummary>, Status> {
        let ctx = context(&request, "GetFleetSummary");
        let pb::GetFleetSummaryRequest { parent } = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let parent = v.check("parent", AccountSelector::parse(&parent));
            v.finish()?;
            let summary = self
                .state
                .store()?
                .fleet_summary(&ctx, &accepted(parent)?)
                .await?;
            Ok(pb::FleetSummary {
                accounts: summary
                    .accounts
                    .iter()
                    .map(|(account, c)| pb::AccountFleetCounts {
                        account: format!("accounts/{account}"),
                        counts: Some(counts(c)),
                    })
                    .collect(),
                total: Some(counts(&summary.total)),
            })
        })
        .await
    }
}
