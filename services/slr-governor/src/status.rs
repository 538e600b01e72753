//! Domain errors to gRPC statuses, in one place (AIP-193): the code from
//! the error's kind (an exhaustive match, no wildcard, so a new kind breaks
//! the build until it is mapped), ErrorInfo with the `slrgov.v1` domain and a
//! stable reason, BadRequest field violations, RetryInfo for retryable
//! failures, and RequestInfo with the correlation id.

use std::collections::HashMap;

use slrgov_domain::{Error, Kind};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The ErrorInfo domain of every error this service returns.
pub const ERROR_DOMAIN: &str = "slrgov.v1";

/// The gRPC code of an error kind.
pub fn code(kind: Kind) -> Code {
    match kind {
        Kind::InvalidArgument => Code::InvalidArgument,
        Kind::NotFound => Code::NotFound,
        Kind::AlreadyExists => Code::AlreadyExists,
        Kind::FailedPrecondition => Code::FailedPrecondition,
        Kind::Aborted => Code::Aborted,
        Kind::Unauthenticated => Code::Unauthenticated,
        Kind::PermissionDenied => Code::PermissionDenied,
        Kind::ResourceExhausted => Code::ResourceExhausted,
        Kind::Unavailable => Code::Unavailable,
        Kind::Unimplemented => Code::Unimplemented,
        Kind::Internal => Code::Internal,
    }
}

/// Builds the status of `error`, tagging it with `correlation_id`.
pub fn to_status(error: Error, correlation_id: &str) -> Status {
    let Error {
        kind,
        reason,
        message,
        violations,
        metadata,
        retry_after,
    } = error;
    let metadata: HashMap<String, String> = metadata.into_iter().collect();
    let mut details = ErrorDetails::new();
    details.set_error_info(reason.as_str(), ERROR_DOMAIN, metadata);
    for violation in violations {
        details.add_bad_request_violation(violation.field, violation.description);
    }
    if retry_after.is_some() {
        details.set_retry_info(retry_after);
    }
    if !correlation_id.is_empty() {
        details.set_request_info(correlation_id, "");
    }
    Status::with_error_details(code(kind), message, details)
}
