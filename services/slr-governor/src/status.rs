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
        Kind::Cancelled => Code::Cancelled,
        Kind::OutOfRange => Code::OutOfRange,
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

/// The outcome (the gRPC code name) and detail of a failure's audit event,
/// for requests and background work alike.
pub fn failure_outcome(error: &Error) -> (String, String) {
    (
        code_name(code(error.kind)).to_owned(),
        format!("{}: {}", error.reason, error.message),
    )
}

/// The name of a gRPC code as the audit trail writes it (`NOT_FOUND`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The error of a finished operation (google.longrunning.Operation.error):
/// the workflow's stored error with ErrorInfo (reason, domain, the target
/// resource), and, for a role IAM could not delete, a PreconditionFailure
/// naming every resource that still uses it (with the usage in the
/// ErrorInfo metadata too).
pub fn operation_error(
    error: &slrgov_domain::workflow::WorkflowError,
    target: &str,
) -> slrgov_proto::google::rpc::Status {
    use slrgov_proto::google::rpc;
    let mut info_metadata: HashMap<String, String> = error.metadata.iter().cloned().collect();
    info_metadata.insert("resource".to_owned(), target.to_owned());
    let mut details = Vec::new();
    let mut violations = Vec::new();
    if let Some(failure) = &error.failure {
        info_metadata.insert("deletion_failure_reason".to_owned(), failure.reason.clone());
        for (region, resources) in &failure.role_usage {
            info_metadata.insert(format!("role_usage.{region}"), resources.join(","));
            for resource in resources {
                violations.push(rpc::precondition_failure::Violation {
                    r#type: "ROLE_IN_USE".to_owned(),
                    subject: resource.clone(),
                    description: format!("uses the role in {region}"),
                });
            }
        }
    }
    details.push(slrgov_proto::to_any(&rpc::ErrorInfo {
        reason: error.reason.clone(),
        domain: ERROR_DOMAIN.to_owned(),
        metadata: info_metadata,
    }));
    if !violations.is_empty() {
        details.push(slrgov_proto::to_any(&rpc::PreconditionFailure {
            violations,
        }));
    }
    rpc::Status {
        code: code(error.to_error().kind) as i32,
        message: error.message.clone(),
        details,
    }
}
