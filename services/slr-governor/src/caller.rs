//! Who is calling: a tower layer that puts the [`Caller`] and a correlation
//! id into every request's extensions, where the handlers read them into a
//! [`RequestContext`]. Until authentication is configured the server only
//! listens on loopback addresses and every caller is the local operator.

use std::task::{Context, Poll};

use slrgov_domain::{Caller, RequestContext};
use tonic::codegen::http;
use tower::{Layer, Service};

/// The header a caller may set to correlate its logs with ours.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A request's correlation id.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

/// Attaches the caller to every request.
#[derive(Debug, Clone)]
pub struct CallerLayer {
    caller: Caller,
}

impl CallerLayer {
    /// Every request is made by the local operator (no authentication; the
    /// server refuses non-loopback addresses in this mode).
    pub fn local_operator() -> Self {
        CallerLayer {
            caller: Caller::local_operator(),
        }
    }
}

impl<S> Layer<S> for CallerLayer {
    type Service = CallerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CallerService {
            inner,
            caller: self.caller.clone(),
        }
    }
}

/// The service [`CallerLayer`] makes.
#[derive(Debug, Clone)]
pub struct CallerService<S> {
    inner: S,
    caller: Caller,
}

/// A caller-supplied correlation id, if it is short and printable; else a
/// new one.
fn correlation_id(headers: &http::HeaderMap) -> String {
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

impl<S, B> Service<http::Request<B>> for CallerService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let id = correlation_id(request.headers());
        request.extensions_mut().insert(CorrelationId(id));
        request.extensions_mut().insert(self.caller.clone());
        self.inner.call(request)
    }
}

/// The request context of a gRPC request: its caller, correlation id and a
/// span for the RPC.
pub fn context<T>(request: &tonic::Request<T>, method: &'static str) -> RequestContext {
    let correlation_id = request
        .extensions()
        .get::<CorrelationId>()
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), |c| c.0.clone());
    // No caller means the layer is missing: fail closed with an empty scope
    // and the weakest role rather than open.
    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(|| Caller {
            principal: "anonymous".to_owned(),
            role: slrgov_domain::Role::Viewer,
            scope: slrgov_domain::AccountScope::Only(Default::default()),
        });
    let span = tracing::info_span!(
        "rpc",
        rpc.method = method,
        principal = %caller.principal,
        request_id = %correlation_id,
    );
    RequestContext::new(caller, correlation_id, span)
}
