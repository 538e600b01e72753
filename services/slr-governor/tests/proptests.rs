//! Bad input at scale (issue 4): property tests over request decoding and
//! validation, for every RPC of AccountService, InstanceService,
//! LinkedRoleService, RegionService, AuditService, FindingService and
//! google.longrunning.Operations.
//!
//! Each RPC gets two generators, each run through the real handler over a
//! real SQLite store in a temporary directory:
//!
//! - arbitrary bytes (and encoded near-valid requests with bytes flipped or
//!   cut) decoded with prost: a decode error is fine, a decoded message goes
//!   through the handler;
//! - near-valid requests with fields mutated: wrong collection ids, wrong
//!   digit counts, unicode, control characters, strings up to ~100 KB,
//!   negative and huge page sizes, forged and replayed page tokens, random
//!   filter syntax, masks with unknown and duplicate paths, garbage etags and
//!   request ids, bad ARNs and bucket names, timestamps and durations out of
//!   range, enum values out of range.
//!
//! The properties: the handler returns without panicking; an error has one
//! of the codes a client mistake may get (never INTERNAL, UNKNOWN,
//! DATA_LOSS, nor UNAVAILABLE unless the RPC reached for IAM with a request
//! that passed validation); every error carries ErrorInfo (domain
//! `slrgov.v1`) and the request's correlation id; every INVALID_ARGUMENT
//! carries a BadRequest naming at least one field of the request; and after
//! an INVALID_ARGUMENT from an RPC that writes, the store holds exactly what
//! it held before ("bad input loses nothing").
//!
//! No test reaches AWS: the SDK points at `http://127.0.0.1:9` with fake
//! static credentials and no retries, so an IAM-touching RPC given valid
//! input fails fast with IAM_UNAVAILABLE or AWS_CREDENTIALS_UNAVAILABLE.
//!
//! Each test prints how many cases it ran (`--nocapture`, or nextest's
//! `--no-capture`) and the seed; `PROPTEST_RNG_SEED=<seed>` replays a run,
//! `PROPTEST_CASES=<n>` changes the number of cases per generator, and
//! `SLRGOV_PROPTEST_REPORT=<file>` appends one line per RPC to a file.
//! Failures are not persisted to files: the seed and the minimized input
//! are printed instead.
//!
//! The parts, under `proptests/`: `harness.rs` (the service over SQLite and
//! its fixture), `checks.rs` (the properties and the runner, and the
//! `rpc_test!` macro), `wire.rs` (the bytes generators), `strategies/` (the
//! field and resource generators, and the `message!` macro), `requests.rs`
//! (one request generator per RPC) and `rpcs/` (the tests, one per RPC,
//! grouped by service).

#[path = "proptests/harness.rs"]
mod harness;

#[macro_use]
#[path = "proptests/checks.rs"]
mod checks;

#[path = "proptests/wire.rs"]
mod wire;

#[macro_use]
#[path = "proptests/strategies/mod.rs"]
mod strategies;

#[path = "proptests/requests.rs"]
mod requests;

#[path = "proptests/rpcs/accounts.rs"]
mod accounts;
#[path = "proptests/rpcs/instances.rs"]
mod instances;
#[path = "proptests/rpcs/linked_roles.rs"]
mod linked_roles;
#[path = "proptests/rpcs/operations_regions_audit.rs"]
mod operations_regions_audit;
