//! The code the fuzz targets exercise that does not live in a light crate:
//! compiled in from its own source file, unchanged, so that the sanitizer
//! build takes neither sqlx (slrgov-store) nor the AWS SDKs (slr-governor).

/// `services/slrgov-store/src/page_token.rs`.
#[path = "../../services/slrgov-store/src/page_token.rs"]
pub mod page_token;

/// The part of slr-governor's `auth` module that `jwt.rs` reaches through
/// `super::`, and `jwt.rs` itself.
pub mod auth;
