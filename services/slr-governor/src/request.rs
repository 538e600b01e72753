//! What the tower layers attach to a request before a handler sees it (its
//! correlation id, its gRPC method), and the paths that are open to
//! everyone: health checks and reflection. Caller, admission and telemetry
//! layers all read these from here.

use tonic::codegen::http;

/// The header a caller may set to correlate its logs with ours.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// [`REQUEST_ID_HEADER`] as a header name, checked once at compile time
/// (a `&str` key is parsed and hashed again on every lookup).
pub const REQUEST_ID: http::HeaderName = http::HeaderName::from_static(REQUEST_ID_HEADER);

/// The path prefixes of health checks and reflection: served without
/// credentials, not counted by admission, measured but not traced.
const OPEN_PREFIXES: &[&str] = &["/grpc.health.v1.Health/", "/grpc.reflection."];

/// True for health checks and reflection.
pub fn is_open_path(path: &str) -> bool {
    OPEN_PREFIXES.iter().any(|prefix| path.starts_with(prefix))
}

/// True for health checks: open to everyone in every auth mode (load
/// balancers and kubelets probe without credentials).
pub fn is_health_path(path: &str) -> bool {
    path.starts_with(OPEN_PREFIXES[0])
}

/// The host a request is addressed to: its `:authority` (HTTP/2) or
/// `Host` header (HTTP/1.1), without the port; `None` without either, and
/// `Some(Err(raw))` when the header does not parse (its text, for logs).
pub fn request_host<B>(request: &http::Request<B>) -> Option<Result<String, String>> {
    if let Some(authority) = request.uri().authority() {
        return Some(Ok(authority.host().to_owned()));
    }
    let value = request.headers().get(http::header::HOST)?;
    let raw = || String::from_utf8_lossy(value.as_bytes()).into_owned();
    Some(
        value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<http::uri::Authority>().ok())
            .map(|authority| authority.host().to_owned())
            .ok_or_else(raw),
    )
}

/// True when a request's `Host` (HTTP/1.1) or `:authority` (HTTP/2) names
/// this machine: `localhost`, an address in 127.0.0.0/8, or `[::1]`, with
/// any port. A request without either cannot come from a browser and
/// passes.
pub fn addressed_to_loopback<B>(request: &http::Request<B>) -> bool {
    let host = match request_host(request) {
        None => return true,
        Some(Err(_)) => return false,
        Some(Ok(host)) => host,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" {
        return true;
    }
    let address = host.trim_start_matches('[').trim_end_matches(']');
    address
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// A request's correlation id, shared by the layers that log or answer
/// with it (a clone copies no text).
#[derive(Debug, Clone)]
pub struct CorrelationId(pub std::sync::Arc<str>);

/// The gRPC method of a request, from its HTTP path
/// (`slrgov.v1.InstanceService/CreateInstance`), for the audit trail.
#[derive(Debug, Clone)]
pub struct RpcMethod(pub String);

/// A caller-supplied correlation id, if it is short and printable; else a
/// new one.
pub fn correlation_id(headers: &http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authority(uri: &str, host: Option<&str>) -> http::Request<()> {
        let mut builder = http::Request::builder().uri(uri);
        if let Some(host) = host {
            builder = builder.header(http::header::HOST, host);
        }
        builder.body(()).expect("request")
    }

    #[test]
    fn loopback_hosts_are_told_apart_from_others() {
        for uri in [
            "http://localhost:50051/x",
            "http://LOCALHOST./x",
            "http://127.0.0.1:1/x",
            "http://127.8.9.1/x",
            "http://[::1]:50051/x",
        ] {
            assert!(addressed_to_loopback(&with_authority(uri, None)), "{uri}");
        }
        for uri in [
            "http://evil.example:50051/x",
            "http://localhost.evil.example/x",
            "http://127.0.0.1.nip.io/x",
            "http://10.0.0.1/x",
            "http://[::2]/x",
            "http://0.0.0.0/x",
        ] {
            assert!(!addressed_to_loopback(&with_authority(uri, None)), "{uri}");
        }
        // HTTP/1.1: the Host header, when the URI has no authority.
        assert!(addressed_to_loopback(&with_authority(
            "/x",
            Some("127.0.0.1:50051")
        )));
        assert!(!addressed_to_loopback(&with_authority(
            "/x",
            Some("rebound.evil.example:50051")
        )));
        assert!(!addressed_to_loopback(&with_authority("/x", Some("a b"))));
        assert!(addressed_to_loopback(&with_authority("/x", None)));
    }
}
