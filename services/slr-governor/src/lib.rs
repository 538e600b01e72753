//! slr-governor: a gRPC service that governs the IAM service-linked roles
//! of Amazon Connect instances across many AWS accounts. The binary
//! (`main.rs`) parses its arguments and calls [`cli::run`]; the tests reach
//! every layer through this library (the handlers, the lifecycle and its
//! workflows, the worker).
//!
//! The path of a request: [`server`] (the [`listener`]; the tower stack: [`telemetry`],
//! [`caller`], [`admission`]) → [`api`] (validation, [`convert`]) → the
//! store (`slrgov_store`) or the [`lifecycle`] (region gate, STS, IAM,
//! workflows) → [`status`] (errors to gRPC statuses). See
//! docs/architecture.md.

pub mod admission;
pub mod api;
pub mod auth;
pub mod caller;
pub mod cli;
pub mod config;
pub mod convert;
pub mod cors;
pub mod ctl;
pub mod env;
pub mod lifecycle;
pub mod listener;
pub mod mask;
pub mod periodic;
pub mod rate_buckets;
pub mod regions;
pub mod request;
pub mod server;
pub mod status;
pub mod telemetry;
pub mod units;
pub mod worker;
