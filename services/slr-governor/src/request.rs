//! What the tower layers attach to a request before a handler sees it (its
//! correlation id, its gRPC method), and the paths that are open to
//! everyone: health checks and reflection. Caller, admission and telemetry
//! layers all read these from here.

use tonic::codegen::http;

/// The header a caller may set to correlate its logs with ours.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The path prefixes of health checks and reflection: served without
/// credentials, not counted by admission, measured but not traced.
const OPEN_PREFIXES: &[&str] = &["/grpc.health.v1.Health/", "/grpc.reflection."];

/// True for health checks and reflection.
pub fn is_open_path(path: &str) -> bool {
    OPEN_PREFIXES.iter().any(|prefix| path.starts_with(prefix))
}

/// A request's correlation id.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

/// The gRPC method of a request, from its HTTP path
/// (`slrgov.v1.InstanceService/CreateInstance`), for the audit trail.
#[derive(Debug, Clone)]
pub struct RpcMethod(pub String);

/// A caller-supplied correlation id, if it is short and printable; else a
/// new one.
pub fn correlation_id(headers: &http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// When the admission layer will answer DEADLINE_EXCEEDED for a request:
/// the handler answers before it with what it has.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub std::time::Instant);
