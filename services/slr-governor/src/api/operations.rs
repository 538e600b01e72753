//! google.longrunning.Operations: Get, List, Wait and Cancel over the
//! stored operations, scoped to the caller's accounts (another tenant's
//! operation is NOT_FOUND; so is an `accounts/-` sync or batch that reaches
//! an account the caller cannot see). Cancel stops batches and syncs.
//! Delete is not offered (UNIMPLEMENTED).

use std::sync::Arc;

use std::time::Duration;

use slrgov_domain::names::InstanceKey;
use slrgov_domain::types::AccountId;
use slrgov_domain::workflow::{WorkflowKind, WorkflowRecord};
use slrgov_domain::{Error, RequestContext, Violations};
use slrgov_proto::google::longrunning as lro;
use slrgov_proto::google::longrunning::operations_server::Operations as OperationsService;
use slrgov_store::PageRequest;
use tonic::{Request, Response, Status};

use super::{AppState, handle};
use crate::caller::context;
use crate::convert;
use crate::lifecycle::batch::BatchInputs;
use crate::lifecycle::sync::SyncInputs;

/// The Operations implementation.
#[derive(Debug, Clone)]
pub struct Operations {
    state: Arc<AppState>,
}

impl Operations {
    /// Serves operations from `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Operations { state }
    }
}

/// Parses `operations/{id}`.
fn parse_name(name: &str) -> Result<String, Error> {
    name.strip_prefix("operations/")
        .filter(|id| uuid::Uuid::try_parse(id).is_ok() && id.len() == 36)
        .map(str::to_owned)
        .ok_or_else(|| Error::invalid_field("name", "must be operations/{operation_id}"))
}

/// The workflow behind `operations/{id}`, if it is one of the kinds that
/// are operations (an ensure answers its caller directly: NOT_FOUND here,
/// as in ListOperations).
async fn operation_get(
    store: &std::sync::Arc<dyn slrgov_store::Store>,
    ctx: &slrgov_domain::RequestContext,
    id: &str,
) -> Result<slrgov_domain::workflow::WorkflowRecord, Error> {
    let record = store.workflow_get(ctx, id).await?;
    if !record.kind.is_operation() || !covered(ctx, &record) {
        return Err(Error::not_found(format!("operations/{id}")));
    }
    Ok(record)
}

/// The accounts an `accounts/-` operation acts on: every account of its
/// sync, or of its batch's instances. (Its row is held under the first,
/// which is all the store's scope check sees.)
fn accounts_of(record: &WorkflowRecord) -> Vec<AccountId> {
    if record.target.name != "accounts/-" {
        return Vec::new();
    }
    match record.kind {
        WorkflowKind::Sync => record
            .inputs::<SyncInputs>()
            .map(|i| {
                i.accounts
                    .iter()
                    .filter_map(|a| AccountId::parse(a).ok())
                    .collect()
            })
            .unwrap_or_default(),
        WorkflowKind::BatchEnsure => record
            .inputs::<BatchInputs>()
            .map(|i| {
                i.instances
                    .iter()
                    .filter_map(|name| InstanceKey::parse(name).ok())
                    .map(|key| key.account_id)
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// True when the caller may see every account `record` acts on: another
/// caller's `accounts/-` sync or batch that reaches an account this one
/// cannot see is NOT_FOUND to it (its metadata and response name that
/// account's instances and errors), and cannot be cancelled by it.
fn covered(ctx: &RequestContext, record: &WorkflowRecord) -> bool {
    accounts_of(record)
        .iter()
        .all(|account| ctx.scope().allows(account))
}

/// Deleting an operation: operations are kept (finished reconcile passes
/// are swept by the worker).
async fn not_offered<T>() -> Result<T, Error> {
    Err(Error::unimplemented(
        "deleting an operation (operations are kept; finished reconcile passes are swept after a week)",
    ))
}

/// The longest WaitOperation waits.
const WAIT_MAX: Duration = Duration::from_secs(60);
/// How long WaitOperation waits without a timeout.
const WAIT_DEFAULT: Duration = Duration::from_secs(30);

#[tonic::async_trait]
impl OperationsService for Operations {
    async fn list_operations(
        &self,
        request: Request<lro::ListOperationsRequest>,
    ) -> Result<Response<lro::ListOperationsResponse>, Status> {
        let ctx = context(&request, "ListOperations");
        let lro::ListOperationsRequest {
            name,
            filter,
            page_size,
            page_token,
            return_partial_success: _,
        } = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            if !(name.is_empty() || name == "operations") {
                v.add("name", "must be empty or operations");
            }
            if !filter.is_empty() {
                v.add("filter", "is not supported on operations");
            }
            let page = v.check("page_size", PageRequest::parse(page_size, &page_token));
            v.finish()?;
            let page = self
                .state
                .store()?
                .workflow_list_operations(&ctx, &super::accepted(page)?)
                .await?;
            Ok(lro::ListOperationsResponse {
                // A page may hold fewer than asked (AIP-158 allows it).
                operations: page
                    .items
                    .iter()
                    .filter(|record| covered(&ctx, record))
                    .map(convert::operation)
                    .collect(),
                next_page_token: page.next_page_token,
                unreachable: Vec::new(),
            })
        })
        .await
    }

    async fn get_operation(
        &self,
        request: Request<lro::GetOperationRequest>,
    ) -> Result<Response<lro::Operation>, Status> {
        let ctx = context(&request, "GetOperation");
        let lro::GetOperationRequest { name } = request.into_inner();
        handle(&self.state, &ctx, async {
            let id = parse_name(&name)?;
            let operation = operation_get(self.state.store()?, &ctx, &id).await?;
            Ok(convert::operation(&operation))
        })
        .await
    }

    async fn delete_operation(
        &self,
        request: Request<lro::DeleteOperationRequest>,
    ) -> Result<Response<()>, Status> {
        let ctx = context(&request, "DeleteOperation");
        handle(&self.state, &ctx, not_offered()).await
    }

    async fn cancel_operation(
        &self,
        request: Request<lro::CancelOperationRequest>,
    ) -> Result<Response<()>, Status> {
        let ctx = context(&request, "CancelOperation");
        let lro::CancelOperationRequest { name } = request.into_inner();
        handle(&self.state, &ctx, async {
            let id = parse_name(&name)?;
            // An ensure is not an operation: NOT_FOUND, as in GetOperation.
            operation_get(self.state.store()?, &ctx, &id).await?;
            self.state.store()?.workflow_cancel(&ctx, &id).await?;
            Ok(())
        })
        .await
    }

    async fn wait_operation(
        &self,
        request: Request<lro::WaitOperationRequest>,
    ) -> Result<Response<lro::Operation>, Status> {
        let ctx = context(&request, "WaitOperation");
        let lro::WaitOperationRequest { name, timeout } = request.into_inner();
        handle(&self.state, &ctx, async {
            let id = parse_name(&name)?;
            let timeout = match timeout {
                None => WAIT_DEFAULT,
                Some(t) if t.seconds < 0 || t.nanos < 0 => {
                    return Err(Error::invalid_field("timeout", "must not be negative"));
                }
                Some(t) => Duration::new(t.seconds as u64, t.nanos as u32).min(WAIT_MAX),
            };
            let store = self.state.store()?;
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let operation = operation_get(store, &ctx, &id).await?;
                if operation.done() || tokio::time::Instant::now() >= deadline {
                    return Ok(convert::operation(&operation));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
    }
}
