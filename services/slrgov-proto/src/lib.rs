//! The slrgov.v1 gRPC API, generated from `proto/` at build time.
//!
//! - [`slrgov::v1`]: the messages, the `*_server` traits the service
//!   implements and the `*_client` stubs tests and callers use;
//! - [`google::rpc`] and [`google::longrunning`]: the vendored Google types the
//!   API returns (Status, ErrorInfo, Operation);
//! - [`FILE_DESCRIPTOR_SET`]: every file, with comments, for server
//!   reflection and for tests that walk the API (e.g. the unauthorized sweep).

#![allow(clippy::all, missing_docs)]

/// The `slrgov` package.
pub mod slrgov {
    /// Version 1 of the API.
    pub mod v1 {
        tonic::include_proto!("slrgov.v1");
    }
}

/// Vendored Google API types.
pub mod google {
    /// `google.rpc`: Status and the error details.
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
    /// `google.longrunning`: Operation and the Operations service.
    pub mod longrunning {
        tonic::include_proto!("google.longrunning");
    }
}

/// The encoded `FileDescriptorSet` of every proto file the service serves,
/// including imports and source comments.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/slrgov_descriptor.bin"));

/// The fully-qualified names of the slr-governor services (for health and
/// for tests that sweep every RPC).
pub const SERVICE_NAMES: &[&str] = &[
    "slrgov.v1.AccountService",
    "slrgov.v1.InstanceService",
    "slrgov.v1.LinkedRoleService",
    "slrgov.v1.RegionService",
    "slrgov.v1.AuditService",
    "slrgov.v1.FindingService",
    "google.longrunning.Operations",
];

/// Packs a message into a `google.protobuf.Any` with the standard type URL.
pub fn to_any<M: prost::Name>(message: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: M::type_url(),
        value: prost::Message::encode_to_vec(message),
    }
}
