//! Compiles `proto/` with protox (a pure-Rust protobuf compiler, so no
//! `protoc` is needed) and generates the prost messages and tonic services.
//! The encoded descriptor set, with comments, is kept for server reflection
//! so that `grpcurl describe` shows the API documentation.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "slrgov/v1/resources.proto",
    "slrgov/v1/account_service.proto",
    "slrgov/v1/instance_service.proto",
    "slrgov/v1/linked_role_service.proto",
    "slrgov/v1/region_service.proto",
    "slrgov/v1/audit_service.proto",
    "slrgov/v1/finding_service.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
    "google/longrunning/operations.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed={}", root.display());
    for file in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }

    let fds = protox::compile(PROTOS, [&root])?;
    std::fs::write(out_dir.join("slrgov_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .compile_fds_with_config(fds, {
            let mut config = prost_build::Config::new();
            // `prost::Name` on every message: type URLs for google.protobuf.Any
            // (operation metadata and responses, error details).
            config.enable_type_names();
            config.type_name_domain(["."], "type.googleapis.com");
            config
        })?;
    Ok(())
}
