//! Every environment variable the service reads, named once (in the manner
//! of linkerd's `app/src/env.rs`). Operators and the test suites start the
//! server with these names, so they are part of the interface.

/// The address to listen on (default `127.0.0.1:50051`; port 0 picks one).
pub const LISTEN: &str = "SLRGOV_LISTEN";
/// `postgres://...` or `sqlite://...`; unset means an SQLite file under
/// the data directory.
pub const DATABASE_URL: &str = "SLRGOV_DATABASE_URL";
/// Postgres only: the URL of the role that owns the schema. `migrate`
/// (and `serve`, before it serves) applies the migrations as that role, so
/// `SLRGOV_DATABASE_URL` may name a role with DML grants only
/// (deploy/postgres/roles.sql).
pub const MIGRATION_DATABASE_URL: &str = "SLRGOV_MIGRATION_DATABASE_URL";
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
/// How long a workflow (ensure, retire) is held at a time before another
/// process may take it over, e.g. `60s` (the default).
pub const WORKFLOW_LEASE: &str = "SLRGOV_WORKFLOW_LEASE";
/// How long a request id is remembered (AIP-155), e.g. `24h` (the
/// default): a retry within the window gets the first answer.
pub const REQUEST_ID_TTL: &str = "SLRGOV_REQUEST_ID_TTL";
/// How long IAM's confirmation of an ACTIVE role stands for the next
/// ensures (0: every ensure asks IAM).
pub const ROLE_CONFIRMATION_MAX_AGE: &str = "SLRGOV_ROLE_CONFIRMATION_MAX_AGE";
/// A JWKS file (RFC 7517) of the public keys that sign callers' JWTs
/// (RS256, ES256, EdDSA). Needs `SLRGOV_AUTH_ISSUER` and
/// `SLRGOV_AUTH_AUDIENCE`.
pub const AUTH_JWKS_FILE: &str = "SLRGOV_AUTH_JWKS_FILE";
/// The `iss` every JWT must carry.
pub const AUTH_ISSUER: &str = "SLRGOV_AUTH_ISSUER";
/// The `aud` every JWT must carry.
pub const AUTH_AUDIENCE: &str = "SLRGOV_AUTH_AUDIENCE";
/// A JSON file of static bearer tokens (by SHA-256 digest) and of client
/// certificate SPIFFE ids, each with a role and accounts.
pub const AUTH_TOKENS_FILE: &str = "SLRGOV_AUTH_TOKENS_FILE";
/// The server certificate chain (PEM); with `SLRGOV_TLS_KEY`, turns TLS on.
pub const TLS_CERT: &str = "SLRGOV_TLS_CERT";
/// The server's private key (PEM).
pub const TLS_KEY: &str = "SLRGOV_TLS_KEY";
/// CA certificates (PEM) of client certificates: when set, every client
/// must present a certificate signed by one (mTLS).
pub const TLS_CLIENT_CA: &str = "SLRGOV_TLS_CLIENT_CA";
/// Requests per second per caller (token bucket per principal); unset
/// means no limit.
pub const RATE_LIMIT_PER_SECOND: &str = "SLRGOV_RATE_LIMIT_PER_SECOND";
/// How many requests a caller may send at once (default: the rate, at
/// least 1).
pub const RATE_LIMIT_BURST: &str = "SLRGOV_RATE_LIMIT_BURST";
/// Origins allowed to call from a browser through gRPC-Web (CORS): a
/// comma-separated list such as `https://portal.example.com`, or `*`.
pub const CORS_ORIGINS: &str = "SLRGOV_CORS_ORIGINS";
/// The longest an RPC may run (`90s` by default); a shorter `grpc-timeout`
/// from the client wins. Past it: DEADLINE_EXCEEDED.
pub const REQUEST_TIMEOUT: &str = "SLRGOV_REQUEST_TIMEOUT";
/// How many RPCs are served at once (512 by default); beyond it a request
/// is refused at once with UNAVAILABLE / OVERLOADED and RetryInfo rather
/// than queued. Health and reflection are not counted.
pub const MAX_CONCURRENT_REQUESTS: &str = "SLRGOV_MAX_CONCURRENT_REQUESTS";
/// How many RPCs one principal may have in flight at once (an eighth of
/// `SLRGOV_MAX_CONCURRENT_REQUESTS` by default, at least 1; all of it
/// without an auth mode, where every caller is the local operator); beyond it that
/// caller is refused with RESOURCE_EXHAUSTED / CALLER_CONCURRENCY_LIMITED,
/// and every other caller keeps its share.
pub const MAX_CONCURRENT_REQUESTS_PER_CALLER: &str = "SLRGOV_MAX_CONCURRENT_REQUESTS_PER_CALLER";
/// The longest a request's body may take to arrive (`10s` by default),
/// health and reflection included; past it: DEADLINE_EXCEEDED /
/// REQUEST_BODY_TIMEOUT.
pub const REQUEST_BODY_TIMEOUT: &str = "SLRGOV_REQUEST_BODY_TIMEOUT";
/// HTTP/2 streams one connection may have open at once (100 by default).
pub const MAX_STREAMS_PER_CONNECTION: &str = "SLRGOV_MAX_STREAMS_PER_CONNECTION";
/// Connections one IP address may hold open at once (64 by default; `0`
/// turns the limit off, e.g. behind a proxy that is the only peer).
pub const MAX_CONNECTIONS_PER_PEER: &str = "SLRGOV_MAX_CONNECTIONS_PER_PEER";
/// IAM calls per second per AWS account (10 by default; the burst is the
/// rate rounded up): one token bucket per account, shared by request
/// handlers and background work; a call beyond it waits its turn.
pub const IAM_RATE_PER_ACCOUNT: &str = "SLRGOV_IAM_RATE_PER_ACCOUNT";
/// IAM calls an idle account may make at once (the rate rounded up by
/// default).
pub const IAM_BURST_PER_ACCOUNT: &str = "SLRGOV_IAM_BURST_PER_ACCOUNT";
/// Where the per-account buckets of IAM and Connect calls are kept: `auto`
/// (the default: one bucket per account in Postgres, shared by every
/// replica; this process's own on SQLite) or `local` (each process its own:
/// N replicas make up to N times the rate).
pub const RATE_SHARING: &str = "SLRGOV_RATE_SHARING";
/// Instances one BatchEnsureLinkedRoles ensures at once (16 by default, 1
/// to 256): each account's calls still wait on its IAM rate.
pub const BATCH_CONCURRENCY: &str = "SLRGOV_BATCH_CONCURRENCY";
/// Watch streams (WatchInstances, WatchLinkedRoles) one process serves at
/// once (1000 by default); one more is RESOURCE_EXHAUSTED.
pub const WATCH_MAX_STREAMS: &str = "SLRGOV_WATCH_MAX_STREAMS";
/// Messages buffered per watch stream (64 by default).
pub const WATCH_BUFFER: &str = "SLRGOV_WATCH_BUFFER";
/// How long a watch stream's full buffer waits for its watcher to read
/// before the stream is cut off (`10s` by default).
pub const WATCH_STALL_TIMEOUT: &str = "SLRGOV_WATCH_STALL_TIMEOUT";
/// A BOOKMARK after this long without a message on a watch stream (`30s`).
pub const WATCH_HEARTBEAT: &str = "SLRGOV_WATCH_HEARTBEAT";
/// How long the change log keeps a change (`24h`): an older resume token
/// is OUT_OF_RANGE.
pub const WATCH_RETENTION: &str = "SLRGOV_WATCH_RETENTION";
/// `true` accepts a Postgres role that bypasses row-level security (a
/// superuser or BYPASSRLS role); the server refuses one by default.
pub const ALLOW_RLS_BYPASS: &str = "SLRGOV_ALLOW_RLS_BYPASS";
/// Amazon Connect calls per second per AWS account (2 by default), as for
/// IAM: one token bucket per account, shared by syncs and ensures.
pub const CONNECT_RATE_PER_ACCOUNT: &str = "SLRGOV_CONNECT_RATE_PER_ACCOUNT";
/// How often each account is synced from Amazon Connect in the background
/// (`1h` by default; `0` turns background syncs off). Replicas share the
/// work: an account's sync runs on one of them.
pub const SYNC_INTERVAL: &str = "SLRGOV_SYNC_INTERVAL";
/// How often the reconciler passes over each account (`15m` by default;
/// `0` turns it off): sync from Connect, inspect every instance's role,
/// store the findings. Replicas share the work: an account's pass runs on
/// one of them at a time. A pass syncs, so the background syncs of
/// `SLRGOV_SYNC_INTERVAL` skip accounts a pass covered.
pub const RECONCILE_INTERVAL: &str = "SLRGOV_RECONCILE_INTERVAL";
/// What a reconcile pass may do: `observe` (the default: never mutates) or
/// `repair` (also ensures the roles that are missing, and records it).
pub const RECONCILE_MODE: &str = "SLRGOV_RECONCILE_MODE";
/// The IAM reads one pass of one account may make (`600` by default; an
/// instance's inspection takes 3). Instances over the budget keep their
/// findings until a later pass.
pub const RECONCILE_IAM_READS: &str = "SLRGOV_RECONCILE_IAM_READS";
/// How often the region table is refreshed from the SSM public parameters
/// of AWS global infrastructure (`12h` by default; `0` turns it off). A
/// failed refresh keeps the last good table.
pub const REGIONS_REFRESH: &str = "SLRGOV_REGIONS_REFRESH";

// `slr-governor ctl`, the operators' client (ctl/).
/// ctl: the server to call (`http://` or `https://`).
pub const CTL_SERVER: &str = "SLRGOV_CTL_SERVER";
/// The bearer token (JWT or static token).
pub const CTL_TOKEN: &str = "SLRGOV_CTL_TOKEN";
/// A file holding the bearer token.
pub const CTL_TOKEN_FILE: &str = "SLRGOV_CTL_TOKEN_FILE";
/// The CA that signed the server's certificate (PEM).
pub const CTL_CA: &str = "SLRGOV_CTL_CA";
/// The client certificate for mTLS (PEM).
pub const CTL_CERT: &str = "SLRGOV_CTL_CERT";
/// The client certificate's private key (PEM).
pub const CTL_KEY: &str = "SLRGOV_CTL_KEY";
