//! InstanceService: the Connect instances of each account.

use std::sync::Arc;

use slrgov_domain::filter::InstanceFilter;
use slrgov_domain::model::{FeatureField, InstanceFields, InstancePatch, NewInstance};
use slrgov_domain::names::{AccountSelector, InstanceKey, parse_account_name};
use slrgov_domain::types::{InstanceId, RegionCode};
use slrgov_domain::workflow::WorkflowKind;
use slrgov_domain::{Error, Kind, Reason, Violations};
use slrgov_proto::google::longrunning::Operation;
use slrgov_proto::slrgov::v1 as pb;
use slrgov_proto::slrgov::v1::instance_service_server::InstanceService;
use slrgov_store::PageRequest;
use tonic::{Request, Response, Status};

use super::{AppState, accepted, handle, refused};
use crate::caller::context;
use crate::convert;
use crate::lifecycle::{Lifecycle, Retirement};
use crate::mask;

/// The InstanceService implementation.
#[derive(Debug, Clone)]
pub struct Instances {
    state: Arc<AppState>,
}

impl Instances {
    /// Serves instances from `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Instances { state }
    }
}

/// The fields UpdateInstance may change: top-level ones and each feature.
fn updatable() -> Vec<&'static str> {
    let mut fields = vec!["instance_alias", "instance_create_time", "features"];
    fields.extend(FeatureField::ALL.iter().map(|f| match f {
        FeatureField::CallRecordingsBucket => "features.call_recordings_bucket",
        FeatureField::ExportedReportsBucket => "features.exported_reports_bucket",
        FeatureField::CustomerProfilesDomain => "features.customer_profiles_domain",
        FeatureField::FirehoseDeliveryStreams => "features.firehose_delivery_streams",
        FeatureField::KinesisStreams => "features.kinesis_streams",
        FeatureField::LexBots => "features.lex_bots",
        FeatureField::FlowLogsLogGroup => "features.flow_logs_log_group",
        FeatureField::VoiceIdDomain => "features.voice_id_domain",
        FeatureField::OutboundCampaigns => "features.outbound_campaigns",
    }));
    fields
}

const IMMUTABLE: &[(&str, &str)] = &[
    (
        "region",
        "is immutable: a Connect instance cannot move to another region",
    ),
    (
        "instance_id",
        "is immutable: it is the Connect instance's id",
    ),
    ("name", "is immutable: it is the instance's name"),
    (
        "linked_role_state",
        "is output only: use the LinkedRoleService",
    ),
    ("connect_arn", CONNECT_OUTPUT),
    ("connect_status", CONNECT_OUTPUT),
    ("service_role_arn", CONNECT_OUTPUT),
    ("identity_management_type", CONNECT_OUTPUT),
    ("observed_state", CONNECT_OUTPUT),
    ("last_seen_time", CONNECT_OUTPUT),
    ("sync_time", CONNECT_OUTPUT),
];

/// Why the fields Amazon Connect fills cannot be updated.
const CONNECT_OUTPUT: &str = "is output only: Amazon Connect says it (SyncInstances reads it)";

#[tonic::async_trait]
impl InstanceService for Instances {
    type WatchInstancesStream = super::watch::WatchStream<pb::WatchInstancesResponse>;

    async fn watch_instances(
        &self,
        request: Request<pb::WatchInstancesRequest>,
    ) -> Result<Response<Self::WatchInstancesStream>, Status> {
        let ctx = context(&request, "WatchInstances");
        let pb::WatchInstancesRequest {
            parent,
            filter,
            resume_token,
        } = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let parent = v.check("parent", AccountSelector::parse(&parent));
            let filter = v.check("filter", InstanceFilter::parse(&filter));
            let tokens = self.state.store()?.page_tokens().clone();
            let from = v.check(
                "resume_token",
                super::watch::parse_resume_token(&tokens, &resume_token),
            );
            v.finish()?;
            let feed = super::watch::InstanceFeed {
                parent: accepted(parent)?,
                filter: accepted(filter)?,
                tokens,
            };
            super::watch::open(
                &self.state.watchers,
                self.state.store()?.clone(),
                ctx.clone(),
                feed,
                accepted(from)?,
            )
            .await
        })
        .await
    }

    async fn create_instance(
        &self,
        request: Request<pb::CreateInstanceRequest>,
    ) -> Result<Response<pb::Instance>, Status> {
        let ctx = context(&request, "CreateInstance");
        let request = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let idempotency = convert::idempotency(&mut v, "CreateInstance", &request);
            let pb::CreateInstanceRequest {
                parent,
                instance_id,
                instance,
                request_id: _,
            } = request;
            let account_id = v.check("parent", parse_account_name(&parent));
            let instance_id = v.check("instance_id", InstanceId::parse(&instance_id));
            let Some(instance) = instance else {
                v.add("instance", "is required");
                return Err(refused(v));
            };
            let pb::Instance {
                name: _,
                instance_id: body_instance_id,
                instance_alias,
                region,
                instance_create_time,
                features,
                linked_role_state: _,
                create_time: _,
                update_time: _,
                etag: _,
                account_id: body_account_id,
                // Output only: what Connect says, filled by discovery.
                connect_arn: _,
                connect_status: _,
                service_role_arn: _,
                identity_management_type: _,
                observed_state: _,
                last_seen_time: _,
                sync_time: _,
            } = instance;
            if !body_instance_id.is_empty()
                && instance_id.as_ref().is_some_and(|id| {
                    InstanceId::parse(&body_instance_id).ok().as_ref() != Some(id)
                })
            {
                v.add("instance.instance_id", "must be empty or equal instance_id");
            }
            if !body_account_id.is_empty()
                && account_id
                    .as_ref()
                    .is_some_and(|id| id.as_str() != body_account_id)
            {
                v.add(
                    "instance.account_id",
                    "must be empty or equal the parent's account id",
                );
            }
            let region = if region.is_empty() {
                v.add("instance.region", "is required");
                None
            } else {
                v.check("instance.region", RegionCode::parse(&region))
            };
            let fields = InstanceFields {
                instance_alias: convert::parse_alias(
                    &mut v,
                    "instance.instance_alias",
                    &instance_alias,
                ),
                instance_create_time: convert::parse_time(
                    &mut v,
                    "instance.instance_create_time",
                    instance_create_time.as_ref(),
                ),
                features: convert::parse_features(
                    &mut v,
                    "instance.features",
                    features.unwrap_or_default(),
                ),
            };
            v.finish()?;
            let new = NewInstance {
                key: InstanceKey {
                    account_id: accepted(account_id)?,
                    instance_id: accepted(instance_id)?,
                },
                region: accepted(region)?,
                fields,
            };
            let created = self
                .state
                .store()?
                .instance_create(&ctx, new, idempotency.as_ref())
                .await?;
            Ok(convert::instance(&created))
        })
        .await
    }

    async fn get_instance(
        &self,
        request: Request<pb::GetInstanceRequest>,
    ) -> Result<Response<pb::Instance>, Status> {
        let ctx = context(&request, "GetInstance");
        let pb::GetInstanceRequest { name } = request.into_inner();
        handle(&self.state, &ctx, async {
            let key = InstanceKey::parse(&name).map_err(|e| e.on("name"))?;
            let found = self.state.store()?.instance_get(&ctx, &key).await?;
            Ok(convert::instance(&found))
        })
        .await
    }

    async fn list_instances(
        &self,
        request: Request<pb::ListInstancesRequest>,
    ) -> Result<Response<pb::ListInstancesResponse>, Status> {
        let ctx = context(&request, "ListInstances");
        let pb::ListInstancesRequest {
            parent,
            page_size,
            page_token,
            filter,
        } = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let parent = v.check("parent", AccountSelector::parse(&parent));
            let page = v.check("page_size", PageRequest::parse(page_size, &page_token));
            let filter = v.check("filter", InstanceFilter::parse(&filter));
            v.finish()?;
            let page = self
                .state
                .store()?
                .instance_list(
                    &ctx,
                    &accepted(parent)?,
                    &accepted(filter)?,
                    &accepted(page)?,
                )
                .await?;
            Ok(pb::ListInstancesResponse {
                instances: page.items.iter().map(convert::instance).collect(),
                next_page_token: page.next_page_token,
            })
        })
        .await
    }

    async fn update_instance(
        &self,
        request: Request<pb::UpdateInstanceRequest>,
    ) -> Result<Response<pb::Instance>, Status> {
        let ctx = context(&request, "UpdateInstance");
        let request = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let idempotency = convert::idempotency(&mut v, "UpdateInstance", &request);
            let pb::UpdateInstanceRequest {
                instance,
                update_mask,
                request_id: _,
            } = request;
            let Some(instance) = instance else {
                v.add("instance", "is required");
                return Err(refused(v));
            };
            let pb::Instance {
                name,
                instance_id: _,
                instance_alias,
                region: _,
                instance_create_time,
                features,
                linked_role_state: _,
                create_time: _,
                update_time: _,
                etag,
                account_id: _,
                connect_arn: _,
                connect_status: _,
                service_role_arn: _,
                identity_management_type: _,
                observed_state: _,
                last_seen_time: _,
                sync_time: _,
            } = instance;
            let key = v.check("instance.name", InstanceKey::parse(&name));
            let expected = convert::parse_etag(&mut v, "instance.etag", &etag);
            let updatable = updatable();
            let populated = [
                ("instance_alias", !instance_alias.is_empty()),
                ("instance_create_time", instance_create_time.is_some()),
                ("features", features.is_some()),
            ];
            let mask = mask::parse(
                &mut v,
                update_mask.as_ref(),
                &updatable,
                &populated,
                IMMUTABLE,
            );
            let mut patch = InstancePatch::default();
            if mask.has("instance_alias") {
                patch.instance_alias = Some(convert::parse_alias(
                    &mut v,
                    "instance.instance_alias",
                    &instance_alias,
                ));
            }
            if mask.has("instance_create_time") {
                patch.instance_create_time = Some(convert::parse_time(
                    &mut v,
                    "instance.instance_create_time",
                    instance_create_time.as_ref(),
                ));
            }
            patch.feature_fields = if mask.has("features") {
                FeatureField::ALL.to_vec()
            } else {
                mask.children("features")
                    .filter_map(FeatureField::parse)
                    .collect()
            };
            if !patch.feature_fields.is_empty() {
                patch.features = convert::parse_features(
                    &mut v,
                    "instance.features",
                    features.unwrap_or_default(),
                );
            }
            v.finish()?;
            let updated = self
                .state
                .store()?
                .instance_update(&ctx, &accepted(key)?, expected, patch, idempotency.as_ref())
                .await?;
            Ok(convert::instance(&updated))
        })
        .await
    }

    async fn delete_instance(
        &self,
        request: Request<pb::DeleteInstanceRequest>,
    ) -> Result<Response<Operation>, Status> {
        let ctx = context(&request, "DeleteInstance");
        let request = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let idempotency = convert::idempotency(&mut v, "DeleteInstance", &request);
            let pb::DeleteInstanceRequest {
                name,
                etag,
                request_id: _,
            } = request;
            let key = v.check("name", InstanceKey::parse(&name));
            let expected = convert::parse_etag(&mut v, "etag", &etag);
            v.finish()?;
            let key = accepted(key)?;
            let request_id = idempotency.as_ref().map(|i| i.request_id.to_string());
            let done = Lifecycle::deleted_at_once(&key, request_id)?;
            let deleted = self
                .state
                .store()?
                .instance_delete(&ctx, &key, expected, done, idempotency.as_ref())
                .await;
            match deleted {
                Ok(operation) => Ok(convert::operation(&operation)),
                // The linked role goes first, as deleting a Connect instance
                // deletes its role: one operation retires it, then removes
                // the record.
                Err(error)
                    if error.kind == Kind::FailedPrecondition
                        && error.reason == Reason::LinkedRoleNotRetired =>
                {
                    match self
                        .state
                        .lifecycle()?
                        .retire(
                            &ctx,
                            &key,
                            None,
                            WorkflowKind::Delete,
                            false,
                            idempotency.as_ref(),
                        )
                        .await?
                    {
                        Retirement::Started(operation) => Ok(convert::operation(&operation)),
                        Retirement::Preview(_) => Err(Error::internal(
                            "internal error: a deletion was previewed instead of started",
                        )),
                    }
                }
                Err(error) => Err(error),
            }
        })
        .await
    }

    async fn sync_instances(
        &self,
        request: Request<pb::SyncInstancesRequest>,
    ) -> Result<Response<Operation>, Status> {
        let ctx = context(&request, "SyncInstances");
        let request = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let idempotency = convert::idempotency(&mut v, "SyncInstances", &request);
            let pb::SyncInstancesRequest {
                parent,
                request_id: _,
            } = request;
            let parent = v.check("parent", AccountSelector::parse(&parent));
            v.finish()?;
            let parent = accepted(parent)?;
            let operation = self
                .state
                .lifecycle()?
                .sync(&ctx, &parent, idempotency.as_ref())
                .await?;
            Ok(convert::operation(&operation))
        })
        .await
    }
}
