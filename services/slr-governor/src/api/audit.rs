//! AuditService: the audit trail of one account, newest first, for its
//! viewers. An account outside the caller's scope is NOT_FOUND, exactly as
//! if it did not exist; a visible account lists its trail even after it was
//! deleted (the trail outlives it).

use std::sync::Arc;

use slrgov_domain::Violations;
use slrgov_domain::audit::{AuditEvent, AuditFilter};
use slrgov_domain::names::parse_account_name;
use slrgov_proto::slrgov::v1 as pb;
use slrgov_proto::slrgov::v1::audit_service_server::AuditService;
use slrgov_store::PageRequest;
use tonic::{Request, Response, Status};

use super::{AppState, accepted, handle};
use crate::caller::context;
use crate::convert;

/// The longest filter accepted.
const MAX_FILTER_LEN: usize = 1024;

/// The AuditService implementation.
#[derive(Debug, Clone)]
pub struct Audit {
    state: Arc<AppState>,
}

impl Audit {
    /// Serves the audit trail from `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Audit { state }
    }
}

/// An event as the API shows it.
pub fn event(event: &AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        name: event.name(),
        time: Some(convert::timestamp(event.time)),
        principal: event.principal.clone(),
        method: event.method.clone(),
        resource: event.resource.clone(),
        request_id: event.request_id.clone(),
        outcome: event.outcome.clone(),
        detail: event.detail.clone(),
        aws_request_ids: event
            .aws_calls
            .iter()
            .filter_map(|call| call.aws_request_id.clone())
            .collect(),
        aws_calls: event
            .aws_calls
            .iter()
            .map(|call| pb::AwsCall {
                service: call.service.clone(),
                operation: call.operation.clone(),
                outcome: call.outcome.clone(),
                aws_request_id: call.aws_request_id.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl AuditService for Audit {
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let ctx = context(&request, "ListAuditEvents");
        let pb::ListAuditEventsRequest {
            parent,
            page_size,
            page_token,
            filter,
        } = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let account = v.check("parent", parse_account_name(&parent));
            let page = v.check("page_size", PageRequest::parse(page_size, &page_token));
            let filter = if filter.len() > MAX_FILTER_LEN {
                v.add(
                    "filter",
                    format!("is longer than {MAX_FILTER_LEN} characters"),
                );
                None
            } else {
                v.check("filter", AuditFilter::parse(&filter))
            };
            v.finish()?;
            let page = self
                .state
                .store()?
                .audit_list(
                    &ctx,
                    &accepted(account)?,
                    &accepted(filter)?,
                    &accepted(page)?,
                )
                .await?;
            Ok(pb::ListAuditEventsResponse {
                audit_events: page.items.iter().map(event).collect(),
                next_page_token: page.next_page_token,
            })
        })
        .await
    }
}
