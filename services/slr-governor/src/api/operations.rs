//! google.longrunning.Operations. Durable operations (retirement polled in
//! the background) arrive with the linked-role lifecycle; until then the
//! service answers UNIMPLEMENTED, and the only operations it returns are
//! already done when returned.

use std::sync::Arc;

use slrgov_domain::{Error, RequestContext};
use slrgov_proto::google::longrunning as lro;
use slrgov_proto::google::longrunning::operations_server::Operations as OperationsService;
use slrgov_proto::slrgov::v1 as pb;
use tonic::{Request, Response, Status};

use super::{AppState, handle};
use crate::caller::context;
use crate::convert::timestamp;

/// The Operations implementation.
#[derive(Debug, Clone)]
pub struct Operations {
    #[allow(dead_code)]
    state: Arc<AppState>,
}

impl Operations {
    /// Serves operations from `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Operations { state }
    }
}

/// The namespace of operation ids derived from request ids.
const OPERATION_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6c1f_9a4e_2b7d_4e0a_9c51_3f0e_8d2a_7b64);

/// An operation that finished with `google.protobuf.Empty`. With a request
/// id its name is derived from it, so a replayed request returns the same
/// operation name.
pub fn done_empty(
    ctx: &RequestContext,
    target: &str,
    verb: &str,
    request_id: &str,
) -> lro::Operation {
    let id = if request_id.is_empty() {
        uuid::Uuid::new_v4()
    } else {
        uuid::Uuid::new_v5(
            &OPERATION_NAMESPACE,
            format!("{target}\0{verb}\0{request_id}").as_bytes(),
        )
    };
    let now = timestamp(chrono::Utc::now());
    let metadata = pb::OperationMetadata {
        create_time: Some(now),
        end_time: Some(now),
        target: target.to_owned(),
        verb: verb.to_owned(),
        status_message: "done".to_owned(),
        principal: ctx.caller().principal.clone(),
        request_id: request_id.to_owned(),
    };
    lro::Operation {
        name: format!("operations/{id}"),
        metadata: Some(slrgov_proto::to_any(&metadata)),
        done: true,
        result: Some(lro::operation::Result::Response(prost_types::Any {
            type_url: "type.googleapis.com/google.protobuf.Empty".to_owned(),
            value: Vec::new(),
        })),
    }
}

fn unimplemented<T>(ctx: &RequestContext) -> impl std::future::Future<Output = Result<T, Error>> {
    let _ = ctx;
    std::future::ready(Err(Error::unimplemented(
        "the Operations service (durable long-running operations)",
    )))
}

#[tonic::async_trait]
impl OperationsService for Operations {
    async fn list_operations(
        &self,
        request: Request<lro::ListOperationsRequest>,
    ) -> Result<Response<lro::ListOperationsResponse>, Status> {
        let ctx = context(&request, "ListOperations");
        handle(&ctx, unimplemented(&ctx)).await
    }

    async fn get_operation(
        &self,
        request: Request<lro::GetOperationRequest>,
    ) -> Result<Response<lro::Operation>, Status> {
        let ctx = context(&request, "GetOperation");
        handle(&ctx, unimplemented(&ctx)).await
    }

    async fn delete_operation(
        &self,
        request: Request<lro::DeleteOperationRequest>,
    ) -> Result<Response<()>, Status> {
        let ctx = context(&request, "DeleteOperation");
        handle(&ctx, unimplemented(&ctx)).await
    }

    async fn cancel_operation(
        &self,
        request: Request<lro::CancelOperationRequest>,
    ) -> Result<Response<()>, Status> {
        let ctx = context(&request, "CancelOperation");
        handle(&ctx, unimplemented(&ctx)).await
    }

    async fn wait_operation(
        &self,
        request: Request<lro::WaitOperationRequest>,
    ) -> Result<Response<lro::Operation>, Status> {
        let ctx = context(&request, "WaitOperation");
        handle(&ctx, unimplemented(&ctx)).await
    }
}
