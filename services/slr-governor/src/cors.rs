//! Browser callers (gRPC-Web) from other origins: which origins may call
//! (`SLRGOV_CORS_ORIGINS`, parsed here) and the tower-http CORS layer that
//! answers their preflights.

use std::time::Duration;

use anyhow::bail;

use crate::env;

/// Which browser origins may call through gRPC-Web.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No cross-origin calls (same-origin and non-browser clients still may).
    None,
    /// Any origin (`*`).
    Any,
    /// These origins exactly (`https://portal.example.com`).
    List(Vec<String>),
}

impl CorsOrigins {
    /// Parses `SLRGOV_CORS_ORIGINS`: `*`, or origins separated by commas,
    /// each `http://` or `https://` with a host and no path.
    pub fn parse(value: &str) -> anyhow::Result<Self> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(CorsOrigins::None);
        }
        if value == "*" {
            return Ok(CorsOrigins::Any);
        }
        let mut origins = Vec::new();
        for origin in value.split(',').map(str::trim) {
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            let ok = rest.is_some_and(|host| {
                !host.is_empty()
                    && !host.contains('/')
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            });
            if !ok {
                bail!(
                    "{}: '{origin}' is not an origin (expected scheme://host[:port], or *)",
                    env::CORS_ORIGINS
                );
            }
            origins.push(origin.to_owned());
        }
        Ok(CorsOrigins::List(origins))
    }
}

/// The CORS layer for gRPC-Web callers in browsers, when origins are
/// configured: POST from those origins, the headers a gRPC-Web client sends
/// (with `authorization` and `x-request-id`), and the gRPC status headers
/// exposed so the browser client can read errors.
pub fn layer(origins: &CorsOrigins) -> Option<tower_http::cors::CorsLayer> {
    use tonic::codegen::http::{HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = match origins {
        CorsOrigins::None => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(
            list.iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        ),
    };
    let headers = |names: &[&'static str]| {
        names
            .iter()
            .map(|n| HeaderName::from_static(n))
            .collect::<Vec<_>>()
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::POST])
            .allow_headers(headers(&[
                "content-type",
                "x-grpc-web",
                "x-user-agent",
                "grpc-timeout",
                "authorization",
                "x-request-id",
            ]))
            .expose_headers(headers(&[
                "grpc-status",
                "grpc-message",
                "grpc-status-details-bin",
                "x-request-id",
            ]))
            .max_age(Duration::from_secs(600)),
    )
}
