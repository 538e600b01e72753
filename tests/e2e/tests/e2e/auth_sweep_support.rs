//! The tables and tools of the authorization sweep (`auth_sweep`): every
//! method with the least role it needs, a valid request of each, the
//! methods the server serves, a raw unary call, what a caller learns from
//! an answer, and a fake AWS endpoint that counts what reaches it.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prost::Message;
use prost::bytes::{Buf, BufMut};
use slrgov_proto::google::longrunning as lro;
use slrgov_proto::slrgov::v1 as pb;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use super::auth_support::with_token;

/// The least role a method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Viewer,
    Operator,
    Admin,
    /// Not offered to anyone (UNIMPLEMENTED).
    Nobody,
}

/// Every method, with the least role it needs (the README's table).
pub const METHODS: &[(&str, Need)] = &[
    ("/slrgov.v1.AccountService/CreateAccount", Need::Admin),
    ("/slrgov.v1.AccountService/GetAccount", Need::Viewer),
    ("/slrgov.v1.AccountService/ListAccounts", Need::Viewer),
    ("/slrgov.v1.AccountService/UpdateAccount", Need::Admin),
    ("/slrgov.v1.AccountService/DeleteAccount", Need::Admin),
    ("/slrgov.v1.InstanceService/CreateInstance", Need::Operator),
    ("/slrgov.v1.InstanceService/GetInstance", Need::Viewer),
    ("/slrgov.v1.InstanceService/ListInstances", Need::Viewer),
    ("/slrgov.v1.InstanceService/UpdateInstance", Need::Operator),
    ("/slrgov.v1.InstanceService/DeleteInstance", Need::Operator),
    ("/slrgov.v1.InstanceService/SyncInstances", Need::Operator),
    ("/slrgov.v1.InstanceService/WatchInstances", Need::Viewer),
    (
        "/slrgov.v1.LinkedRoleService/EnsureLinkedRole",
        Need::Operator,
    ),
    ("/slrgov.v1.LinkedRoleService/GetLinkedRole", Need::Viewer),
    (
        "/slrgov.v1.LinkedRoleService/InspectLinkedRole",
        Need::Viewer,
    ),
    (
        "/slrgov.v1.LinkedRoleService/UpdateLinkedRoleDescription",
        Need::Operator,
    ),
    (
        "/slrgov.v1.LinkedRoleService/UpdateLinkedRole",
        Need::Operator,
    ),
    (
        "/slrgov.v1.LinkedRoleService/RetireLinkedRole",
        Need::Operator,
    ),
    (
        "/slrgov.v1.LinkedRoleService/BatchEnsureLinkedRoles",
        Need::Operator,
    ),
    (
        "/slrgov.v1.LinkedRoleService/WatchLinkedRoles",
        Need::Viewer,
    ),
    ("/slrgov.v1.RegionService/ListRegions", Need::Viewer),
    ("/slrgov.v1.RegionService/GetRegion", Need::Viewer),
    ("/slrgov.v1.AuditService/ListAuditEvents", Need::Viewer),
    ("/slrgov.v1.FindingService/ListFindings", Need::Viewer),
    ("/slrgov.v1.FindingService/GetFleetSummary", Need::Viewer),
    (
        "/google.longrunning.Operations/ListOperations",
        Need::Viewer,
    ),
    ("/google.longrunning.Operations/GetOperation", Need::Viewer),
    (
        "/google.longrunning.Operations/DeleteOperation",
        Need::Nobody,
    ),
    (
        "/google.longrunning.Operations/CancelOperation",
        Need::Operator,
    ),
    ("/google.longrunning.Operations/WaitOperation", Need::Viewer),
];

/// Methods of [`METHODS`] that may be missing from the API while they are
/// being added (empty when none is).
pub const PENDING: &[&str] = &[];

/// The resources a request names.
pub struct Target {
    pub account: String,
    pub instance: String,
    pub operation: String,
    /// An instance id to create (the same for every tenant, so that refusals
    /// compare equal).
    pub new_instance: String,
}

impl Target {
    fn instance_name(&self) -> String {
        format!("accounts/{}/instances/{}", self.account, self.instance)
    }
}

fn mask(path: &str) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: vec![path.to_owned()],
    })
}

/// A valid request of `method` naming `t`'s resources.
pub fn request(method: &str, t: &Target) -> Vec<u8> {
    let account = format!("accounts/{}", t.account);
    let instance = t.instance_name();
    let linked_role = format!("{instance}/linkedRole");
    let operation = format!("operations/{}", t.operation);
    match method {
        "/slrgov.v1.AccountService/CreateAccount" => pb::CreateAccountRequest {
            account_id: t.account.clone(),
            account: Some(pb::Account {
                display_name: "sweep".into(),
                access_role_arn: format!("arn:aws:iam::{}:role/SlrGovernor", t.account),
                external_id: "sweep-external-id".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }
        .encode_to_vec(),
        "/slrgov.v1.AccountService/GetAccount" => {
            pb::GetAccountRequest { name: account }.encode_to_vec()
        }
        "/slrgov.v1.AccountService/ListAccounts" => pb::ListAccountsRequest {
            page_size: 50,
            page_token: String::new(),
        }
        .encode_to_vec(),
        "/slrgov.v1.AccountService/UpdateAccount" => pb::UpdateAccountRequest {
            account: Some(pb::Account {
                name: account,
                display_name: "renamed".into(),
                ..Default::default()
            }),
            update_mask: mask("display_name"),
        }
        .encode_to_vec(),
        "/slrgov.v1.AccountService/DeleteAccount" => pb::DeleteAccountRequest {
            name: account,
            etag: String::new(),
        }
        .encode_to_vec(),
        "/slrgov.v1.InstanceService/CreateInstance" => pb::CreateInstanceRequest {
            parent: account,
            instance_id: t.new_instance.clone(),
            instance: Some(pb::Instance {
                instance_alias: "sweep".into(),
                region: "us-east-1".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }
        .encode_to_vec(),
        "/slrgov.v1.InstanceService/GetInstance" => {
            pb::GetInstanceRequest { name: instance }.encode_to_vec()
        }
        "/slrgov.v1.InstanceService/SyncInstances" => pb::SyncInstancesRequest {
            parent: account.clone(),
            request_id: String::new(),
        }
        .encode_to_vec(),
        "/slrgov.v1.InstanceService/ListInstances" => pb::ListInstancesRequest {
            parent: account,
            page_size: 50,
            ..Default::default()
        }
        .encode_to_vec(),
        "/slrgov.v1.InstanceService/UpdateInstance" => pb::UpdateInstanceRequest {
            instance: Some(pb::Instance {
                name: instance,
                instance_alias: "renamed".into(),
                ..Default::default()
            }),
            update_mask: mask("instance_alias"),
            request_id: String::new(),
        }
        .encode_to_vec(),
        "/slrgov.v1.InstanceService/DeleteInstance" => pb::DeleteInstanceRequest {
            name: instance,
            ..Default::default()
        }
        .encode_to_vec(),
        "/slrgov.v1.LinkedRoleService/EnsureLinkedRole" => pb::EnsureLinkedRoleRequest {
            name: linked_role,
            ..Default::default()
        }
        .encode_to_vec(),
        "/slrgov.v1.LinkedRoleService/GetLinkedRole" => {
            pb::GetLinkedRoleRequest { name: linked_role }.encode_to_vec()
        }
        "/slrgov.v1.LinkedRoleService/InspectLinkedRole" => {
            pb::InspectLinkedRoleRequest { name: linked_role }.encode_to_vec()
        }
        "/slrgov.v1.LinkedRoleService/UpdateLinkedRoleDescription" => {
            pb::UpdateLinkedRoleDescriptionRequest {
                name: linked_role,
                description: "sweep".into(),
                ..Default::default()
            }
            .encode_to_vec()
        }
        "/slrgov.v1.LinkedRoleService/UpdateLinkedRole" => pb::UpdateLinkedRoleRequest {
            linked_role: Some(pb::LinkedRole {
                name: linked_role,
                description: "sweep".into(),
                ..Default::default()
            }),
            update_mask: mask("description"),
            request_id: String::new(),
        }
        .encode_to_vec(),
        "/slrgov.v1.LinkedRoleService/RetireLinkedRole" => pb::RetireLinkedRoleRequest {
            name: linked_role,
            ..Default::default()
        }
        .encode_to_vec(),
        "/slrgov.v1.LinkedRoleService/BatchEnsureLinkedRoles" => {
            pb::BatchEnsureLinkedRolesRequest {
                parent: account.clone(),
                ..Default::default()
            }
            .encode_to_vec()
        }
        "/slrgov.v1.InstanceService/WatchInstances" => pb::WatchInstancesRequest {
            parent: account,
            ..Default::default()
        }
        .encode_to_vec(),
        "/slrgov.v1.LinkedRoleService/WatchLinkedRoles" => pb::WatchLinkedRolesRequest {
            parent: account,
            ..Default::default()
        }
        .encode_to_vec(),
        "/slrgov.v1.RegionService/ListRegions" => pb::ListRegionsRequest {
            page_size: 50,
            page_token: String::new(),
        }
        .encode_to_vec(),
        "/slrgov.v1.RegionService/GetRegion" => pb::GetRegionRequest {
            name: "regions/us-east-1".into(),
        }
        .encode_to_vec(),
        "/slrgov.v1.AuditService/ListAuditEvents" => pb::ListAuditEventsRequest {
            parent: account,
            page_size: 50,
            ..Default::default()
        }
        .encode_to_vec(),
        "/slrgov.v1.FindingService/ListFindings" => pb::ListFindingsRequest {
            parent: account,
            page_size: 50,
            ..Default::default()
        }
        .encode_to_vec(),
        "/slrgov.v1.FindingService/GetFleetSummary" => {
            pb::GetFleetSummaryRequest { parent: account }.encode_to_vec()
        }
        "/google.longrunning.Operations/ListOperations" => lro::ListOperationsRequest {
            page_size: 50,
            ..Default::default()
        }
        .encode_to_vec(),
        "/google.longrunning.Operations/GetOperation" => {
            lro::GetOperationRequest { name: operation }.encode_to_vec()
        }
        "/google.longrunning.Operations/DeleteOperation" => {
            lro::DeleteOperationRequest { name: operation }.encode_to_vec()
        }
        "/google.longrunning.Operations/CancelOperation" => {
            lro::CancelOperationRequest { name: operation }.encode_to_vec()
        }
        "/google.longrunning.Operations/WaitOperation" => lro::WaitOperationRequest {
            name: operation,
            timeout: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
        }
        .encode_to_vec(),
        other => panic!("no request builder for {other}: add it to METHODS and request()"),
    }
}

/// The methods the server serves that the sweep must cover.
pub fn discovered_methods() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(slrgov_proto::FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    let mut methods = BTreeSet::new();
    for file in &set.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            if !(full.starts_with("slrgov.") || full == "google.longrunning.Operations") {
                continue;
            }
            for method in &service.method {
                assert!(
                    !method.client_streaming()
                        && method.server_streaming() == method.name().starts_with("Watch"),
                    "{full}/{}: the sweep knows unary calls and Watch server streams",
                    method.name()
                );
                methods.insert(format!("/{full}/{}", method.name()));
            }
        }
    }
    methods
}

/// Passes request and response bytes through untouched.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// Calls `method` with raw request bytes and an optional bearer token; a
/// Watch stream answers with its first message (or its refusal).
pub async fn call(
    channel: &Channel,
    method: &str,
    body: Vec<u8>,
    token: Option<&str>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unknown(format!("not ready: {e}")))?;
    let request = match token {
        Some(token) => with_token(body, token),
        None => tonic::Request::new(body),
    };
    let path = PathAndQuery::from_str(method).expect("path");
    if method.contains("/Watch") {
        let mut stream = grpc
            .server_streaming(request, path, RawCodec)
            .await?
            .into_inner();
        // The first message is a BOOKMARK; then the stream is dropped.
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("no first message"))??;
        return Ok(first.unwrap_or_default());
    }
    grpc.unary(request, path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// Everything a caller learns from an answer, except the correlation id
/// (RequestInfo), with `replace` applied.
pub fn observed(result: &Result<Vec<u8>, tonic::Status>, replace: &[(&str, &str)]) -> String {
    let text = match result {
        Ok(bytes) => format!("OK {}", String::from_utf8_lossy(bytes)),
        Err(status) => {
            let details = status.get_error_details();
            let info = details.error_info().as_ref().map(|i| {
                (
                    i.reason.clone(),
                    i.domain.clone(),
                    i.metadata.iter().collect::<BTreeMap<_, _>>(),
                )
            });
            format!(
                "{:?} {:?} {:?} {:?} {:?} {:?}",
                status.code(),
                status.message(),
                info,
                details.bad_request(),
                details.retry_info(),
                details.precondition_failure(),
            )
        }
    };
    replace
        .iter()
        .fold(text, |text, (from, to)| text.replace(from, to))
}

/// A fake AWS endpoint that counts the connections it is sent.
pub struct FakeAws {
    pub url: String,
    connections: Arc<AtomicUsize>,
}

impl FakeAws {
    pub async fn start() -> FakeAws {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        FakeAws { url, connections }
    }

    /// How many connections it has been sent.
    pub fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}
