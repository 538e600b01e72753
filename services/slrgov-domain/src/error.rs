//! The domain error: what went wrong, in terms callers act on, free of any
//! transport. The server turns it into a `tonic::Status` with ErrorInfo,
//! BadRequest and RetryInfo details in one place (`slr-governor::status`).

use std::fmt;
use std::time::Duration;

/// The stable `google.rpc.ErrorInfo.reason` values of the `slrgov.v1`
/// domain (api.md, "Errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A malformed id, name, ARN, region, mask, page token, or an oversized
    /// field.
    InvalidField,
    /// A `request_id` reused with different parameters.
    RequestIdReused,
    /// The resource is absent, or not visible to this caller.
    NotFound,
    /// A create of something that exists.
    AlreadyExists,
    /// A region without Amazon Connect.
    RegionNotSupported,
    /// An edit of anything but the description of a service-linked role.
    SlrImmutable,
    /// IAM could not delete the role: it is in use.
    RoleInUse,
    /// The role is owned by another instance.
    RoleOwnedElsewhere,
    /// Amazon Connect does not have the instance: nothing is done in IAM.
    InstanceNotInConnect,
    /// The service may not read Amazon Connect in the account (the message
    /// names the action).
    ConnectAccessDenied,
    /// Amazon Connect throttled or was unreachable after retries.
    ConnectUnavailable,
    /// A stale etag.
    EtagMismatch,
    /// Another operation is running on the resource.
    OperationInProgress,
    /// No or bad credentials.
    Unauthenticated,
    /// The caller's role does not allow the action.
    PermissionDenied,
    /// IAM or STS throttled or unreachable after retries.
    IamUnavailable,
    /// The caller is over its rate limit.
    RateLimited,
    /// The service has no usable AWS credentials for the account.
    AwsCredentialsUnavailable,
    /// A precondition on the resource's state does not hold (e.g. an account
    /// that still has instances).
    FailedPrecondition,
    /// An account cannot be deleted while it has instances.
    AccountHasInstances,
    /// The instance's linked role must be retired before the record goes.
    LinkedRoleNotRetired,
    /// The capability is not built yet.
    NotImplemented,
    /// The caller cancelled the operation (CancelOperation).
    Cancelled,
    /// A watch's resume token is older than the retained change log.
    ResumeTokenExpired,
    /// A watcher did not read its stream for too long and was cut off.
    WatcherTooSlow,
    /// The server holds as many watch streams as it serves.
    TooManyWatchers,
    /// The service could not complete the request (database unreachable,
    /// shutting down).
    Unavailable,
    /// A bug or an unexpected failure; details are in the server log.
    Internal,
}

impl Reason {
    /// The reason string sent in ErrorInfo.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidField => "INVALID_FIELD",
            Reason::RequestIdReused => "REQUEST_ID_REUSED",
            Reason::NotFound => "NOT_FOUND",
            Reason::AlreadyExists => "ALREADY_EXISTS",
            Reason::RegionNotSupported => "REGION_NOT_SUPPORTED",
            Reason::SlrImmutable => "SLR_IMMUTABLE",
            Reason::RoleInUse => "ROLE_IN_USE",
            Reason::RoleOwnedElsewhere => "ROLE_OWNED_ELSEWHERE",
            Reason::InstanceNotInConnect => "INSTANCE_NOT_IN_CONNECT",
            Reason::ConnectAccessDenied => "CONNECT_ACCESS_DENIED",
            Reason::ConnectUnavailable => "CONNECT_UNAVAILABLE",
            Reason::EtagMismatch => "ETAG_MISMATCH",
            Reason::OperationInProgress => "OPERATION_IN_PROGRESS",
            Reason::Unauthenticated => "UNAUTHENTICATED",
            Reason::PermissionDenied => "PERMISSION_DENIED",
            Reason::IamUnavailable => "IAM_UNAVAILABLE",
            Reason::RateLimited => "RATE_LIMITED",
            Reason::AwsCredentialsUnavailable => "AWS_CREDENTIALS_UNAVAILABLE",
            Reason::FailedPrecondition => "FAILED_PRECONDITION",
            Reason::AccountHasInstances => "ACCOUNT_HAS_INSTANCES",
            Reason::LinkedRoleNotRetired => "LINKED_ROLE_NOT_RETIRED",
            Reason::NotImplemented => "NOT_IMPLEMENTED",
            Reason::Cancelled => "CANCELLED",
            Reason::ResumeTokenExpired => "RESUME_TOKEN_EXPIRED",
            Reason::WatcherTooSlow => "WATCHER_TOO_SLOW",
            Reason::TooManyWatchers => "TOO_MANY_WATCHERS",
            Reason::Unavailable => "UNAVAILABLE",
            Reason::Internal => "INTERNAL",
        }
    }
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 28] = [
        Reason::InvalidField,
        Reason::RequestIdReused,
        Reason::NotFound,
        Reason::AlreadyExists,
        Reason::RegionNotSupported,
        Reason::SlrImmutable,
        Reason::RoleInUse,
        Reason::RoleOwnedElsewhere,
        Reason::InstanceNotInConnect,
        Reason::ConnectAccessDenied,
        Reason::ConnectUnavailable,
        Reason::EtagMismatch,
        Reason::OperationInProgress,
        Reason::Unauthenticated,
        Reason::PermissionDenied,
        Reason::IamUnavailable,
        Reason::RateLimited,
        Reason::AwsCredentialsUnavailable,
        Reason::FailedPrecondition,
        Reason::AccountHasInstances,
        Reason::LinkedRoleNotRetired,
        Reason::NotImplemented,
        Reason::Cancelled,
        Reason::ResumeTokenExpired,
        Reason::WatcherTooSlow,
        Reason::TooManyWatchers,
        Reason::Unavailable,
        Reason::Internal,
    ];

    /// Parses a reason string (a stored workflow error's).
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == value)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One bad field of a request (`google.rpc.BadRequest.FieldViolation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The path of the field in the request, e.g. `instance.region`.
    pub field: String,
    /// Why it is bad, in lower case, without repeating the field's value
    /// when that could be a secret.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        FieldViolation {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// The kind of failure, which decides the gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// INVALID_ARGUMENT.
    InvalidArgument,
    /// NOT_FOUND.
    NotFound,
    /// ALREADY_EXISTS.
    AlreadyExists,
    /// FAILED_PRECONDITION.
    FailedPrecondition,
    /// ABORTED.
    Aborted,
    /// UNAUTHENTICATED.
    Unauthenticated,
    /// PERMISSION_DENIED.
    PermissionDenied,
    /// RESOURCE_EXHAUSTED.
    ResourceExhausted,
    /// UNAVAILABLE.
    Unavailable,
    /// UNIMPLEMENTED.
    Unimplemented,
    /// INTERNAL.
    Internal,
    /// CANCELLED: the caller cancelled the operation (AIP-151: a cancelled
    /// long-running operation ends with this code).
    Cancelled,
    /// OUT_OF_RANGE: a position past what is kept (a watch's resume token
    /// older than the retained change log).
    OutOfRange,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 13] = [
        Kind::InvalidArgument,
        Kind::NotFound,
        Kind::AlreadyExists,
        Kind::FailedPrecondition,
        Kind::Aborted,
        Kind::Unauthenticated,
        Kind::PermissionDenied,
        Kind::ResourceExhausted,
        Kind::Unavailable,
        Kind::Unimplemented,
        Kind::Internal,
        Kind::Cancelled,
        Kind::OutOfRange,
    ];

    /// The kind's name, as its gRPC code is written (`NOT_FOUND`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::InvalidArgument => "INVALID_ARGUMENT",
            Kind::NotFound => "NOT_FOUND",
            Kind::AlreadyExists => "ALREADY_EXISTS",
            Kind::FailedPrecondition => "FAILED_PRECONDITION",
            Kind::Aborted => "ABORTED",
            Kind::Unauthenticated => "UNAUTHENTICATED",
            Kind::PermissionDenied => "PERMISSION_DENIED",
            Kind::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Kind::Unavailable => "UNAVAILABLE",
            Kind::Unimplemented => "UNIMPLEMENTED",
            Kind::Internal => "INTERNAL",
            Kind::Cancelled => "CANCELLED",
            Kind::OutOfRange => "OUT_OF_RANGE",
        }
    }

    /// Parses a kind's name.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == value)
    }
}

/// An error of any layer, as a caller should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The kind, which decides the gRPC code.
    pub kind: Kind,
    /// The stable ErrorInfo reason.
    pub reason: Reason,
    /// A lower-case message for the caller. For `Internal` it is generic;
    /// the cause is logged where the error is made.
    pub message: String,
    /// Bad fields (BadRequest).
    pub violations: Vec<FieldViolation>,
    /// ErrorInfo metadata, e.g. the resource name.
    pub metadata: Vec<(String, String)>,
    /// How long to wait before retrying (RetryInfo).
    pub retry_after: Option<Duration>,
}

/// The result type of the domain and store layers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn new(kind: Kind, reason: Reason, message: impl Into<String>) -> Self {
        Error {
            kind,
            reason,
            message: message.into(),
            violations: Vec::new(),
            metadata: Vec::new(),
            retry_after: None,
        }
    }

    /// INVALID_ARGUMENT / INVALID_FIELD for one field.
    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::invalid_fields(vec![FieldViolation::new(field, description)])
    }

    /// INVALID_ARGUMENT / INVALID_FIELD for several fields at once.
    pub fn invalid_fields(violations: Vec<FieldViolation>) -> Self {
        let message = match violations.as_slice() {
            [] => "invalid request".to_owned(),
            [one] => format!("invalid {}: {}", one.field, one.description),
            [first, rest @ ..] => format!(
                "invalid {}: {} (and {} more)",
                first.field,
                first.description,
                rest.len()
            ),
        };
        let mut error = Self::new(Kind::InvalidArgument, Reason::InvalidField, message);
        error.violations = violations;
        error
    }

    /// INVALID_ARGUMENT / REQUEST_ID_REUSED.
    pub fn request_id_reused() -> Self {
        let mut error = Self::new(
            Kind::InvalidArgument,
            Reason::RequestIdReused,
            "request_id was already used with different parameters",
        );
        error.violations = vec![FieldViolation::new(
            "request_id",
            "already used with different parameters",
        )];
        error
    }

    /// INVALID_ARGUMENT / SLR_IMMUTABLE on `field`.
    pub fn slr_immutable(field: impl Into<String>) -> Self {
        let field = field.into();
        let mut error = Self::new(
            Kind::InvalidArgument,
            Reason::SlrImmutable,
            format!(
                "{field} cannot be changed: the name and every other attribute of a service-linked role \
                 are fixed by IAM; only its description can be edited"
            ),
        );
        error.violations = vec![FieldViolation::new(
            field,
            "service-linked role names cannot change; only the description is editable",
        )];
        error
    }

    /// NOT_FOUND for `resource` (a resource name). Used alike for absent
    /// resources and for resources the caller may not see.
    pub fn not_found(resource: impl Into<String>) -> Self {
        let resource = resource.into();
        let mut error = Self::new(
            Kind::NotFound,
            Reason::NotFound,
            format!("{resource} not found"),
        );
        error.metadata.push(("resource".to_owned(), resource));
        error
    }

    /// ALREADY_EXISTS for `resource`.
    pub fn already_exists(resource: impl Into<String>) -> Self {
        let resource = resource.into();
        let mut error = Self::new(
            Kind::AlreadyExists,
            Reason::AlreadyExists,
            format!("{resource} already exists"),
        );
        error.metadata.push(("resource".to_owned(), resource));
        error
    }

    /// FAILED_PRECONDITION with `reason`.
    pub fn failed_precondition(reason: Reason, message: impl Into<String>) -> Self {
        Self::new(Kind::FailedPrecondition, reason, message)
    }

    /// ABORTED / ETAG_MISMATCH for `resource`.
    pub fn etag_mismatch(resource: impl Into<String>) -> Self {
        let resource = resource.into();
        let mut error = Self::new(
            Kind::Aborted,
            Reason::EtagMismatch,
            format!("the etag does not match the current state of {resource}: read it again"),
        );
        error.metadata.push(("resource".to_owned(), resource));
        error
    }

    /// ABORTED / OPERATION_IN_PROGRESS for `resource`.
    pub fn operation_in_progress(resource: impl Into<String>, operation: &str) -> Self {
        let resource = resource.into();
        let mut error = Self::new(
            Kind::Aborted,
            Reason::OperationInProgress,
            format!("{operation} is running on {resource}"),
        );
        error.metadata.push(("resource".to_owned(), resource));
        error
            .metadata
            .push(("operation".to_owned(), operation.to_owned()));
        error
    }

    /// UNAVAILABLE with `reason`, retryable after `retry_after`.
    pub fn unavailable(reason: Reason, message: impl Into<String>, retry_after: Duration) -> Self {
        let mut error = Self::new(Kind::Unavailable, reason, message);
        error.retry_after = Some(retry_after);
        error
    }

    /// CANCELLED / CANCELLED: the caller cancelled the operation.
    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::new(Kind::Cancelled, Reason::Cancelled, message)
    }

    /// OUT_OF_RANGE `RESUME_TOKEN_EXPIRED`: the change log no longer holds
    /// what followed the resume token.
    pub fn resume_token_expired(message: impl Into<String>) -> Self {
        Self::new(Kind::OutOfRange, Reason::ResumeTokenExpired, message)
    }

    /// RESOURCE_EXHAUSTED with `reason` (a watch stream's limits), to be
    /// retried after `retry_after`.
    pub fn resource_exhausted(
        reason: Reason,
        message: impl Into<String>,
        retry_after: Duration,
    ) -> Self {
        let mut error = Self::new(Kind::ResourceExhausted, reason, message);
        error.retry_after = Some(retry_after);
        error
    }

    /// UNIMPLEMENTED: a capability that is not built yet.
    pub fn unimplemented(what: &str) -> Self {
        Self::new(
            Kind::Unimplemented,
            Reason::NotImplemented,
            format!("{what} is not implemented yet"),
        )
    }

    /// INTERNAL. `message` is for the caller and must not carry internals;
    /// log the cause where the error is made.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Kind::Internal, Reason::Internal, message)
    }

    /// Adds an ErrorInfo metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Adds a prefix to every field path: turns violations of a nested
    /// message into violations of the request (`region` -> `instance.region`).
    pub fn within(mut self, prefix: &str) -> Self {
        for violation in &mut self.violations {
            violation.field = format!("{prefix}.{}", violation.field);
        }
        if let [one] = self.violations.as_slice() {
            self.message = format!("invalid {}: {}", one.field, one.description);
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.reason)
    }
}

impl std::error::Error for Error {}

/// Collects the violations of a whole request, so that the caller learns
/// every bad field in one round trip.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a violation.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Keeps the value of a check, or records its violations (prefixed with
    /// `field`) and returns `None`.
    pub fn check<T>(&mut self, field: &str, result: Result<T, FieldError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.0.push(FieldViolation::new(
                    error
                        .subfield
                        .map_or_else(|| field.to_owned(), |s| format!("{field}{s}")),
                    error.description,
                ));
                None
            }
        }
    }

    /// Ok when nothing was recorded.
    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid_fields(self.0))
        }
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why one value is malformed, before the caller knows the field's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// A suffix of the path inside the field, e.g. `[2]` for a list element.
    pub subfield: Option<String>,
    /// Why the value is bad.
    pub description: String,
}

impl FieldError {
    /// A malformed value.
    pub fn new(description: impl Into<String>) -> Self {
        FieldError {
            subfield: None,
            description: description.into(),
        }
    }

    /// Places the error at `[index]` of a list.
    pub fn at_index(mut self, index: usize) -> Self {
        self.subfield = Some(format!("[{index}]"));
        self
    }

    /// Turns it into an INVALID_FIELD error on `field`.
    pub fn on(self, field: &str) -> Error {
        let field = self
            .subfield
            .map_or_else(|| field.to_owned(), |s| format!("{field}{s}"));
        Error::invalid_field(field, self.description)
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}
