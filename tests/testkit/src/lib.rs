//! What every slr-governor test shares, in one place:
//!
//! - [`db`]: a fresh database per test (Postgres as the ordinary role the
//!   service runs as, or an SQLite file), with direct statements for what
//!   no API writes;
//! - [`moto`]: moto_server on a free port;
//! - [`connect`]: the Connect shape layer, a proxy in front of moto that
//!   answers Amazon Connect as real Connect does (per-instance service-linked
//!   roles, epoch timestamps, injected faults, counted calls);
//! - [`server`]: the real binary on `127.0.0.1:0` (`spawn_app`), with
//!   clients of every service;
//! - [`grpc`]: what a refusal carried, and the ids tests make;
//! - [`fake_iam`]: an in-memory IAM with real IAM's semantics, and
//!   [`fake_connect`]: an in-memory Amazon Connect with real Connect's
//!   shapes, for the workflow step tests.

pub mod connect;
pub mod db;
pub mod fake_connect;
pub mod fake_iam;
pub mod grpc;
pub mod moto;
pub mod server;

pub use connect::{
    ConnectShape, CreatedInstance, LEGACY_ALIAS_PREFIX, LEGACY_CREATED_EPOCH, connect_role_suffix,
};
pub use db::{APP_ROLE, TestDb, admin_url, ensure_app_role};
pub use fake_connect::{ConnectFault, FakeConnect};
pub use fake_iam::{FakeAws, FakeIam};
pub use grpc::{Refusal, account_id, instance_id, linked_role_name, refusal, refused};
pub use moto::{Moto, aws_env, black_hole, role_description, sdk_config};
pub use server::{Clients, Env, TestServer, env_refs, grpcurl, server_bin, workspace};
pub use slrgov_store::Engine;
