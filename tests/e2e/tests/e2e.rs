//! End-to-end tests: the real `slr-governor` binary on `127.0.0.1:0` with a
//! fresh database, called through the generated tonic clients and the real
//! grpcurl binary. One test binary, linked once.

mod e2e {
    pub mod admission;
    pub mod audit;
    pub mod auth;
    pub mod auth_support;
    pub mod auth_sweep;
    pub mod auth_sweep_support;
    pub mod auth_tls;
    pub mod bad_input;
    pub mod batch;
    pub mod confirmations;
    pub mod connect_roles;
    pub mod crash;
    pub mod ctl;
    pub mod deploy;
    pub mod discovery;
    pub mod fleet;
    pub mod grpc_web;
    pub mod grpcurl;
    pub mod handover;
    pub mod hardening;
    pub mod idempotency;
    pub mod lifecycle_support;
    pub mod linked_role_faults;
    pub mod linked_roles;
    pub mod operation_scope;
    pub mod portal;
    pub mod postgres_cluster;
    pub mod postgres_restart;
    pub mod postgres_roles;
    pub mod reconciler;
    pub mod registry;
    pub mod replicas;
    pub mod server;
    pub mod support;
    pub mod telemetry;
    pub mod telemetry_sampling;
    pub mod watch;
}
