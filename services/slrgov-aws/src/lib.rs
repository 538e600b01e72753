//! Acting in AWS accounts for slr-governor: the IAM calls behind one trait,
//! per-account clients reached through STS and verified with
//! GetCallerIdentity, and the fault-injecting IAM layer that reproduces what
//! moto cannot show (throttling, eventual consistency, asynchronous and
//! failing deletions, real IAM's "has been taken").

pub mod access;
pub mod audit;
pub mod codes;
pub mod connect;
#[cfg(feature = "faults")]
pub mod faults;
pub mod iam;
pub mod limit;
pub mod regions;
pub mod telemetry;

pub use access::{AccessError, AccountTarget, AwsAccess, AwsProvider};
pub use connect::{ConnectApi, ConnectError, ConnectInstance, ConnectStatus};
pub use iam::{DeletionStatus, IamApi, IamError, RoleInfo, RolePolicy, RoleUsage};
