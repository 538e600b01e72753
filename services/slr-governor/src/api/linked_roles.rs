//! LinkedRoleService: validates each request, then hands it to the
//! lifecycle (`crate::lifecycle`), which checks the region before any STS
//! or IAM call. GetLinkedRole reads the record only. UpdateLinkedRole takes
//! `description` as its only mask path: anything else (the name above all)
//! is SLR_IMMUTABLE.

use std::sync::Arc;

use slrgov_domain::filter::InstanceFilter;
use slrgov_domain::names::{AccountSelector, InstanceKey};
use slrgov_domain::types::check_role_description;
use slrgov_domain::{Error, Violations};
use slrgov_proto::google::longrunning::Operation;
use slrgov_proto::slrgov::v1 as pb;
use slrgov_proto::slrgov::v1::linked_role_service_server::LinkedRoleService;
use tonic::{Request, Response, Status};

use super::{AppState, handle};
use crate::caller::context;
use crate::convert;
use crate::lifecycle::Retirement;
use slrgov_domain::workflow::WorkflowKind;

/// The LinkedRoleService implementation.
#[derive(Debug, Clone)]
pub struct LinkedRoles {
    state: Arc<AppState>,
}

impl LinkedRoles {
    /// Serves linked roles from `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        LinkedRoles { state }
    }
}

#[tonic::async_trait]
impl LinkedRoleService for LinkedRoles {
    type WatchLinkedRolesStream = super::watch::WatchStream<pb::WatchLinkedRolesResponse>;

    async fn watch_linked_roles(
        &self,
        request: Request<pb::WatchLinkedRolesRequest>,
    ) -> Result<Response<Self::WatchLinkedRolesStream>, Status> {
        let ctx = context(&request, "WatchLinkedRoles");
        let pb::WatchLinkedRolesRequest {
            parent,
            resume_token,
        } = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let parent = v.check("parent", AccountSelector::parse(&parent));
            let tokens = self.state.store()?.page_tokens().clone();
            let from = v.check(
                "resume_token",
                super::watch::parse_resume_token(&tokens, &resume_token),
            );
            v.finish()?;
            let feed = super::watch::LinkedRoleFeed {
                parent: super::accepted(parent)?,
                tokens,
            };
            super::watch::open(
                &self.state.watchers,
                self.state.store()?.clone(),
                ctx.clone(),
                feed,
                super::accepted(from)?,
            )
            .await
        })
        .await
    }

    async fn ensure_linked_role(
        &self,
        request: Request<pb::EnsureLinkedRoleRequest>,
    ) -> Result<Response<pb::LinkedRole>, Status> {
        let ctx = context(&request, "EnsureLinkedRole");
        let request = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let idempotency = convert::idempotency(&mut v, "EnsureLinkedRole", &request);
            let pb::EnsureLinkedRoleRequest {
                name,
                description,
                validate_only,
                request_id: _,
            } = request;
            let key = v.check("name", InstanceKey::parse_linked_role_name(&name));
            v.check("description", check_role_description(&description));
            v.finish()?;
            let key = super::accepted(key)?;
            let description = (!description.is_empty()).then_some(description);
            let role = self
                .state
                .lifecycle()?
                .ensure(&ctx, &key, description, validate_only, idempotency.as_ref())
                .await?;
            Ok(convert::linked_role(&role))
        })
        .await
    }

    async fn get_linked_role(
        &self,
        request: Request<pb::GetLinkedRoleRequest>,
    ) -> Result<Response<pb::LinkedRole>, Status> {
        let ctx = context(&request, "GetLinkedRole");
        let pb::GetLinkedRoleRequest { name } = request.into_inner();
        handle(&self.state, &ctx, async {
            let key = InstanceKey::parse_linked_role_name(&name).map_err(|e| e.on("name"))?;
            let role = self.state.store()?.linked_role_get(&ctx, &key).await?;
            Ok(convert::linked_role(&role))
        })
        .await
    }

    async fn inspect_linked_role(
        &self,
        request: Request<pb::InspectLinkedRoleRequest>,
    ) -> Result<Response<pb::Inspection>, Status> {
        let ctx = context(&request, "InspectLinkedRole");
        let pb::InspectLinkedRoleRequest { name } = request.into_inner();
        handle(&self.state, &ctx, async {
            let key = InstanceKey::parse_linked_role_name(&name).map_err(|e| e.on("name"))?;
            let inspection = self.state.lifecycle()?.inspect(&ctx, &key).await?;
            Ok(convert::inspection(&inspection))
        })
        .await
    }

    async fn update_linked_role_description(
        &self,
        request: Request<pb::UpdateLinkedRoleDescriptionRequest>,
    ) -> Result<Response<pb::LinkedRole>, Status> {
        let ctx = context(&request, "UpdateLinkedRoleDescription");
        let request = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let idempotency = convert::idempotency(&mut v, "UpdateLinkedRoleDescription", &request);
            let pb::UpdateLinkedRoleDescriptionRequest {
                name,
                description,
                etag,
                request_id: _,
            } = request;
            let key = v.check("name", InstanceKey::parse_linked_role_name(&name));
            v.check("description", check_role_description(&description));
            let expected = convert::parse_etag(&mut v, "etag", &etag);
            v.finish()?;
            let role = self
                .state
                .lifecycle()?
                .set_description(
                    &ctx,
                    &super::accepted(key)?,
                    expected,
                    &description,
                    idempotency.as_ref(),
                )
                .await?;
            Ok(convert::linked_role(&role))
        })
        .await
    }

    async fn update_linked_role(
        &self,
        request: Request<pb::UpdateLinkedRoleRequest>,
    ) -> Result<Response<pb::LinkedRole>, Status> {
        let ctx = context(&request, "UpdateLinkedRole");
        let request = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let idempotency = convert::idempotency(&mut v, "UpdateLinkedRole", &request);
            let pb::UpdateLinkedRoleRequest {
                linked_role,
                update_mask,
                request_id: _,
            } = request;
            let role = linked_role.unwrap_or_default();
            let key = v.check(
                "linked_role.name",
                InstanceKey::parse_linked_role_name(&role.name),
            );
            let expected = convert::parse_etag(&mut v, "linked_role.etag", &role.etag);
            let paths = update_mask.map(|m| m.paths).unwrap_or_default();
            if paths.is_empty() {
                v.add(
                    "update_mask",
                    "is required and must be exactly [description]",
                );
            }
            v.finish()?;
            // Everything but the description is fixed by IAM for a
            // service-linked role: the name above all.
            if let Some(other) = paths.iter().find(|p| p.as_str() != "description") {
                // The path is echoed, cut to 64 characters: an error's
                // trailers must stay small whatever the caller sent.
                let shown: String = other.trim().chars().take(64).collect();
                return Err(Error::slr_immutable(format!("linked_role.{shown}")));
            }
            check_role_description(&role.description)
                .map_err(|e| e.on("linked_role.description"))?;
            let updated = self
                .state
                .lifecycle()?
                .set_description(
                    &ctx,
                    &super::accepted(key)?,
                    expected,
                    &role.description,
                    idempotency.as_ref(),
                )
                .await?;
            Ok(convert::linked_role(&updated))
        })
        .await
    }

    async fn retire_linked_role(
        &self,
        request: Request<pb::RetireLinkedRoleRequest>,
    ) -> Result<Response<Operation>, Status> {
        let ctx = context(&request, "RetireLinkedRole");
        let request = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let idempotency = convert::idempotency(&mut v, "RetireLinkedRole", &request);
            let pb::RetireLinkedRoleRequest {
                name,
                etag,
                validate_only,
                request_id: _,
            } = request;
            let key = v.check("name", InstanceKey::parse_linked_role_name(&name));
            let expected = convert::parse_etag(&mut v, "etag", &etag);
            v.finish()?;
            let key = super::accepted(key)?;
            match self
                .state
                .lifecycle()?
                .retire(
                    &ctx,
                    &key,
                    expected,
                    WorkflowKind::Retire,
                    validate_only,
                    idempotency.as_ref(),
                )
                .await?
            {
                Retirement::Started(operation) => Ok(convert::operation(&operation)),
                // validate_only: every check passed; nothing was recorded.
                Retirement::Preview(role) => Ok(Operation {
                    name: String::new(),
                    metadata: None,
                    done: true,
                    result: Some(
                        slrgov_proto::google::longrunning::operation::Result::Response(
                            slrgov_proto::to_any(&convert::linked_role(&role)),
                        ),
                    ),
                }),
            }
        })
        .await
    }

    async fn batch_ensure_linked_roles(
        &self,
        request: Request<pb::BatchEnsureLinkedRolesRequest>,
    ) -> Result<Response<Operation>, Status> {
        let ctx = context(&request, "BatchEnsureLinkedRoles");
        let request = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let idempotency = convert::idempotency(&mut v, "BatchEnsureLinkedRoles", &request);
            let pb::BatchEnsureLinkedRolesRequest {
                parent,
                filter,
                description,
                validate_only,
                request_id: _,
            } = request;
            let parent = v.check("parent", AccountSelector::parse(&parent));
            let filter = v.check("filter", InstanceFilter::parse(&filter));
            v.check("description", check_role_description(&description));
            v.finish()?;
            let description = (!description.is_empty()).then_some(description);
            let operation = self
                .state
                .lifecycle()?
                .batch_ensure(
                    &ctx,
                    &super::accepted(parent)?,
                    &super::accepted(filter)?,
                    description,
                    validate_only,
                    idempotency.as_ref(),
                )
                .await?;
            Ok(convert::operation(&operation))
        })
        .await
    }
}
