//! Who is calling: one tower layer, in front of every service, that
//! authenticates the request ([`crate::auth`]), applies the per-caller rate
//! limit, and puts the [`Caller`] and a correlation id into the request's
//! extensions, where the handlers read them into a [`RequestContext`]. The
//! caller is stored as an `Arc<Caller>` (shared by every request of a
//! token); a plain `Caller` inserted there is not found, and [`context`]
//! falls back to the anonymous viewer.
//!
//! Health (`grpc.health.v1.Health`) stays open without credentials;
//! reflection (`grpc.reflection.*`) too when no auth mode is configured,
//! and needs credentials like any RPC when one is (the schema is not for
//! anonymous callers to read). Everything else without valid credentials
//! is UNAUTHENTICATED before any handler runs; a caller over its rate limit
//! is RESOURCE_EXHAUSTED / `RATE_LIMITED` with RetryInfo.
//!
//! Without an auth mode configured every caller is the local operator: the
//! server only listens on loopback addresses, and it answers only requests
//! addressed to a loopback name (`Host` / `:authority` of `localhost`,
//! 127.0.0.0/8 or `[::1]`), so that a web page the developer visits cannot
//! reach it through DNS rebinding (PERMISSION_DENIED / `HOST_NOT_LOOPBACK`).

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use slrgov_domain::{Caller, RequestContext};
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use crate::auth::Authenticator;
use crate::auth::rate::RateLimiter;
use crate::request::{
    CorrelationId, RpcMethod, addressed_to_loopback, correlation_id, is_health_path, request_host,
};

/// Authenticates and rate-limits every request, and attaches its caller.
#[derive(Debug, Clone)]
pub struct CallerLayer {
    auth: Authenticator,
    limiter: Option<Arc<RateLimiter>>,
}

impl CallerLayer {
    /// Callers authenticated by `auth`, limited by `limiter`.
    pub fn new(auth: Authenticator, limiter: Option<Arc<RateLimiter>>) -> Self {
        CallerLayer { auth, limiter }
    }
}

impl<S> Layer<S> for CallerLayer {
    type Service = CallerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CallerService {
            inner,
            auth: self.auth.clone(),
            limiter: self.limiter.clone(),
        }
    }
}

/// The service [`CallerLayer`] makes.
#[derive(Debug, Clone)]
pub struct CallerService<S> {
    inner: S,
    auth: Authenticator,
    limiter: Option<Arc<RateLimiter>>,
}

impl<S> CallerService<S> {
    /// The caller of `request`, authenticated and within its rate limit.
    fn admit<B>(&self, request: &http::Request<B>) -> Result<Arc<Caller>, slrgov_domain::Error> {
        let certificates: Option<Vec<Vec<u8>>> = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs)
            .map(|certs| certs.iter().map(|c| c.as_ref().to_vec()).collect());
        let caller = self
            .auth
            .authenticate(request.headers(), certificates.as_deref())?;
        if let Some(limiter) = &self.limiter {
            limiter.check(&caller.principal).inspect_err(|_| {
                tracing::info!(
                    principal = %caller.principal,
                    path = request.uri().path(),
                    "rate limited"
                );
            })?;
        }
        Ok(caller)
    }
}

impl<S, B> Service<http::Request<B>> for CallerService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The telemetry layer gave the request its id (and echoes it in the
        // answer); without that layer, one is made here.
        let id = match request.extensions().get::<CorrelationId>() {
            Some(id) => id.0.clone(),
            None => {
                let id: Arc<str> = correlation_id(request.headers()).into();
                request.extensions_mut().insert(CorrelationId(id.clone()));
                id
            }
        };
        let auth_enabled = self.auth.is_enabled();
        if !auth_enabled && !addressed_to_loopback(&request) {
            let host = match request_host(&request) {
                Some(Ok(host) | Err(host)) => host,
                None => String::new(),
            };
            tracing::warn!(
                path = request.uri().path(),
                request_id = %id,
                host = %host.escape_debug(),
                "request to a non-loopback host refused: no auth mode is configured"
            );
            let response = crate::admission::refusal(
                tonic::Code::PermissionDenied,
                "HOST_NOT_LOOPBACK",
                format!(
                    "without authentication this server answers only requests addressed to \
                     localhost, 127.0.0.1 or [::1], not {:?}",
                    host.chars().take(64).collect::<String>()
                ),
                None,
                &id,
            );
            return Either::Left(ready(Ok(response)));
        }
        // Health is open to everyone; reflection only while no auth mode is.
        let path = request.uri().path();
        let open = is_health_path(path) || (!auth_enabled && crate::request::is_open_path(path));
        if !open {
            match self.admit(&request) {
                Ok(caller) => {
                    // The RPC's server span (the telemetry layer's, current
                    // here) names who called.
                    tracing::Span::current().record("enduser.id", caller.principal.as_str());
                    request.extensions_mut().insert(caller);
                }
                Err(error) => {
                    if error.kind == slrgov_domain::Kind::Unauthenticated {
                        tracing::info!(
                            path = request.uri().path(),
                            request_id = %id,
                            why = %error.message,
                            "unauthenticated request refused"
                        );
                    }
                    let status = crate::status::to_status(error, &id);
                    return Either::Left(ready(Ok(status.into_http())));
                }
            }
        }
        let method = RpcMethod(request.uri().path().trim_start_matches('/').to_owned());
        request.extensions_mut().insert(method);
        Either::Right(self.inner.call(request))
    }
}

/// The request context of a gRPC request: its caller, correlation id and a
/// span for the RPC.
pub fn context<T>(request: &tonic::Request<T>, method: &'static str) -> RequestContext {
    let correlation_id = request
        .extensions()
        .get::<CorrelationId>()
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), |c| c.0.to_string());
    // No caller means the layer is missing: fail closed with an empty scope
    // and the weakest role rather than open.
    let caller = request
        .extensions()
        .get::<Arc<Caller>>()
        .cloned()
        .unwrap_or_else(|| {
            Arc::new(Caller {
                principal: "anonymous".to_owned(),
                role: slrgov_domain::Role::Viewer,
                scope: slrgov_domain::AccountScope::Only(Default::default()),
            })
        });
    let span = crate::telemetry::request_span(method, &caller.principal, &correlation_id);
    // The full method (`slrgov.v1.InstanceService/CreateInstance`) names the
    // request in the audit trail; the layer took it from the HTTP path.
    let full_method = request
        .extensions()
        .get::<RpcMethod>()
        .map_or_else(|| method.to_owned(), |m| m.0.clone());
    let deadline = request
        .extensions()
        .get::<crate::request::Deadline>()
        .map(|d| d.0);
    RequestContext::new(caller, correlation_id, span)
        .with_method(full_method)
        .with_deadline(deadline)
}
