//! The harness of the end-to-end tests: everything comes from the one test
//! support crate (`tests/testkit`): a fresh database per test, moto, the
//! real `slr-governor` binary started on `127.0.0.1:0`, and clients for it.
//! What only these tests share is here too; the linked-role tests' helpers
//! are in `lifecycle_support`, the authentication tests' in `auth_support`.

pub use slrgov_testkit::*;

/// moto's own account: the account of the credentials the servers get from
/// [`Moto::env`] (no access role needed).
pub const HOME: &str = "123456789012";
