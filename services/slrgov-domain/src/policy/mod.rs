//! IAM identity-policy evaluation, done by the service itself.
//!
//! Real IAM can answer "may this role do X on Y" with
//! `SimulatePrincipalPolicy`, but moto does not implement it, so an
//! inspection evaluates the role's policies here: it parses the documents
//! IAM returns (URL-encoded JSON) and evaluates each required
//! `(action, resource)` pair against all of them.
//!
//! # What is modelled
//!
//! - Documents: `Version` (`2012-10-17` or `2008-10-17`; absent means
//!   `2008-10-17`, as in IAM), `Id`, and `Statement` as one object or an
//!   array. Per statement: `Sid`, `Effect` (`Allow` or `Deny`, spelled as IAM
//!   spells them), `Action` or `NotAction`, `Resource` or `NotResource`,
//!   `Principal` or `NotPrincipal` (parsed so that trust policies parse too;
//!   ignored by [`evaluate`]), and `Condition`. Any other element, a missing
//!   required element, or a value of the wrong type is a [`PolicyError`],
//!   never a panic.
//! - Actions (`service:Action`) match case-insensitively, with `*` (any
//!   run of characters) and `?` (one character).
//! - Resources match case-sensitively with the same wildcards; `*` spans
//!   `:` and `/` (IAM matches the whole ARN string). A request resource of
//!   `*` (an action without resource-level permissions) is only matched by
//!   patterns that match the literal text `*`, such as `*` itself. Likewise a
//!   required resource that itself contains `*` (e.g. `instance/*`) is only
//!   satisfied by a pattern that covers it as written.
//! - Policy variables (`${aws:username}` and the like, version `2012-10-17`
//!   only) cannot be resolved without a request context: a pattern holding
//!   one matches *conditionally* (the variable is treated as `*` and the
//!   match reported as [`StatementMatch::Conditional`]). The escapes `${*}`,
//!   `${?}` and `${$}` stand for the literal characters.
//! - Conditions are not evaluated (there is no request context): a
//!   statement with a non-empty `Condition` applies conditionally. An empty
//!   `Condition` object imposes nothing.
//!
//! # Decision rules ([`evaluate`])
//!
//! Over every statement of every policy that applies to the request:
//!
//! 1. an unconditional `Deny` → [`Decision::ExplicitDeny`];
//! 2. otherwise an unconditional `Allow` → [`Decision::Allowed`], unless a
//!    conditional `Deny` also applies, which could override it: then
//!    [`Decision::Conditional`], reported against that `Deny`;
//! 3. otherwise a conditional `Allow` → [`Decision::Conditional`], reported
//!    against that `Allow`;
//! 4. otherwise [`Decision::ImplicitDeny`] (a conditional `Deny` alone
//!    leaves nothing to deny: still an implicit deny).
//!
//! The statement reported is the first deciding one in policy order, then
//! statement order.

mod document;
mod evaluation;
mod pattern;
mod statement;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;

pub use document::PolicyDocument;
pub use evaluation::{Decision, Evaluation, evaluate};
pub use pattern::{Pattern, action_matches, wildcard_match};
pub use statement::{ActionSpec, Principal, PrincipalSpec, ResourceSpec, Statement};

/// The largest document accepted, in bytes (raw or decoded). IAM's own
/// limits are far lower (10,240 characters for a role's inline policies,
/// 6,144 for a managed policy); anything larger is not an IAM document.
pub const MAX_DOCUMENT_BYTES: usize = 128 * 1024;

/// Why a policy document could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The percent-decoded bytes are not UTF-8.
    #[error("policy document is not valid percent-encoded UTF-8")]
    Encoding,
    /// The document exceeds [`MAX_DOCUMENT_BYTES`].
    #[error("policy document is {size} bytes long; at most {max} are accepted")]
    TooLarge {
        /// The document's size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The text is not JSON.
    #[error("policy document is not valid JSON: {0}")]
    Json(String),
    /// The JSON is not a policy document.
    #[error("policy document is malformed at {path}: {message}")]
    Malformed {
        /// Where, e.g. `Statement[1].Effect` (`$` for the document itself).
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl PolicyError {
    fn malformed(path: &str, message: impl Into<String>) -> Self {
        PolicyError::Malformed {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// The policy language version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyVersion {
    /// `2008-10-17`: no policy variables.
    V2008_10_17,
    /// `2012-10-17`: the current language, with policy variables.
    V2012_10_17,
}

impl PolicyVersion {
    /// The version string.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyVersion::V2008_10_17 => "2008-10-17",
            PolicyVersion::V2012_10_17 => "2012-10-17",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "2008-10-17" => Some(PolicyVersion::V2008_10_17),
            "2012-10-17" => Some(PolicyVersion::V2012_10_17),
            _ => None,
        }
    }
}

/// A statement's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// `Allow`.
    Allow,
    /// `Deny`.
    Deny,
}

/// Whether a statement applies to a request. Ordered from `No` to `Yes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatementMatch {
    /// It does not.
    No,
    /// It may: a condition or a policy variable decides, which only the
    /// request context can resolve.
    Conditional,
    /// It does, whatever the request context.
    Yes,
}

/// A policy attached to the role, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPolicy {
    /// Where the document came from: a managed policy's ARN, or
    /// `inline:<name>` for an inline policy.
    pub source: String,
    /// The document.
    pub document: PolicyDocument,
}

impl NamedPolicy {
    /// Pairs a document with its source label.
    pub fn new(source: impl Into<String>, document: PolicyDocument) -> Self {
        NamedPolicy {
            source: source.into(),
            document,
        }
    }

    /// Parses a URL-encoded document as IAM returns it and labels it.
    pub fn parse_url_encoded(source: impl Into<String>, text: &str) -> Result<Self, PolicyError> {
        Ok(Self::new(source, PolicyDocument::parse_url_encoded(text)?))
    }
}
