//! Every environment variable the service reads, named once (in the manner
//! of linkerd's `app/src/env.rs`). Operators and the test suites start the
//! server with these names, so they are part of the interface.

/// The address to listen on (default `127.0.0.1:50051`; port 0 picks one).
pub const LISTEN: &str = "SLRGOV_LISTEN";
/// `postgres://...` or `sqlite://...`; unset means an SQLite file under
/// the data directory.
pub const DATABASE_URL: &str = "SLRGOV_DATABASE_URL";
/// The most database connections per process (default 16).
pub const DATABASE_MAX_CONNECTIONS: &str = "SLRGOV_DATABASE_MAX_CONNECTIONS";
/// Where the embedded SQLite database lives (default `./.slr-governor/`).
pub const DATA_DIR: &str = "SLRGOV_DATA_DIR";
/// An optional TOML configuration file.
pub const CONFIG: &str = "SLRGOV_CONFIG";
/// `text` (default) or `json`.
pub const LOG_FORMAT: &str = "SLRGOV_LOG_FORMAT";
/// A tracing filter, e.g. `info,slr_governor=debug` (default `info`).
pub const LOG: &str = "SLRGOV_LOG";
/// How long in-flight RPCs may take to finish after SIGTERM (default 20s).
pub const SHUTDOWN_GRACE: &str = "SLRGOV_SHUTDOWN_GRACE";
/// A TOML file of regions that adds to or overrides the built-in table of
/// regions where Amazon Connect is available.
pub const REGIONS_FILE: &str = "SLRGOV_REGIONS_FILE";
/// Tests only: a JSON fault plan (`slrgov_aws::faults::FaultPlan`) that
/// wraps every IAM client in the fault-injecting layer, to reproduce what
/// moto cannot show (throttling, eventual consistency, failing deletions).
/// The server logs a warning when it is set.
pub const TEST_IAM_FAULTS: &str = "SLRGOV_TEST_IAM_FAULTS";
/// How long a workflow (ensure) holds its claim before another process may
/// resume it, e.g. `60s` (the default).
pub const WORKFLOW_LEASE: &str = "SLRGOV_WORKFLOW_LEASE";
