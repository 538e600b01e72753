//! The vocabulary of slr-governor, shared by every layer: validated types,
//! resource names, the resources themselves, the request context and the
//! transport-free error.

pub mod audit;
pub mod context;
pub mod error;
pub mod filter;
pub mod finding;
pub mod model;
pub mod names;
pub mod permissions;
pub mod policy;
pub mod types;
pub mod workflow;

pub use context::{AccountScope, Caller, RequestContext, Role};
pub use error::{Error, FieldError, FieldViolation, Kind, Reason, Result, Violations};
