//! Authentication: who a request comes from, as a [`Caller`] (principal,
//! role, account scope).
//!
//! Three kinds of credentials, any of which may be configured together:
//!
//! - a JWT bearer token (`authorization: Bearer <jwt>`), verified against
//!   the public keys of `SLRGOV_AUTH_JWKS_FILE` (RS256, ES256, EdDSA), with
//!   its issuer, audience, `exp` and `nbf` checked ([`jwt`]);
//! - a static bearer token whose SHA-256 digest is listed in
//!   `SLRGOV_AUTH_TOKENS_FILE` ([`tokens`]);
//! - a client certificate (mTLS, `SLRGOV_TLS_CLIENT_CA`) whose SPIFFE id is
//!   listed in the same tokens file ([`spiffe`]).
//!
//! A bearer token, when sent, decides alone: a bad one is refused even on a
//! connection with a good client certificate. With nothing configured,
//! every caller is the local operator, and the server only listens on
//! loopback addresses.
//!
//! Refusals are UNAUTHENTICATED with ErrorInfo reason `UNAUTHENTICATED`;
//! their messages say what was wrong, never what was sent.

pub mod jwt;
pub mod mint;
pub mod rate;
pub mod spiffe;
pub mod tokens;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use slrgov_domain::types::AccountId;
use slrgov_domain::{AccountScope, Caller, Error, Kind, Reason, Role};
use tonic::codegen::http;

/// The longest bearer token read; anything longer is refused unread.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// What the operator configured for authentication (paths and values, as
/// given).
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// The JWKS file of the keys that sign JWTs.
    pub jwks_file: Option<PathBuf>,
    /// The `iss` a JWT must carry.
    pub issuer: Option<String>,
    /// The `aud` a JWT must carry.
    pub audience: Option<String>,
    /// The static tokens (and SPIFFE ids) file.
    pub tokens_file: Option<PathBuf>,
    /// True when client certificates are required (`SLRGOV_TLS_CLIENT_CA`).
    pub client_certificates: bool,
}

/// Verifies credentials. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Authenticator {
    jwt: Option<std::sync::Arc<jwt::JwtVerifier>>,
    tokens: std::sync::Arc<tokens::TokenTable>,
    client_certificates: bool,
}

impl Authenticator {
    /// No authentication: every caller is the local operator.
    #[cfg(test)]
    pub fn off() -> Self {
        Authenticator {
            jwt: None,
            tokens: std::sync::Arc::new(tokens::TokenTable::default()),
            client_certificates: false,
        }
    }

    /// Loads the configured files; an unreadable or invalid file is an
    /// error that names it.
    pub fn load(settings: &AuthSettings) -> anyhow::Result<Self> {
        use anyhow::bail;
        let jwt = match &settings.jwks_file {
            None => {
                if settings.issuer.is_some() || settings.audience.is_some() {
                    bail!(
                        "{} and {} need {}",
                        crate::env::AUTH_ISSUER,
                        crate::env::AUTH_AUDIENCE,
                        crate::env::AUTH_JWKS_FILE
                    );
                }
                None
            }
            Some(path) => {
                let (Some(issuer), Some(audience)) = (&settings.issuer, &settings.audience) else {
                    bail!(
                        "{} is set: {} and {} must be set too",
                        crate::env::AUTH_JWKS_FILE,
                        crate::env::AUTH_ISSUER,
                        crate::env::AUTH_AUDIENCE
                    );
                };
                Some(std::sync::Arc::new(jwt::JwtVerifier::load(
                    path, issuer, audience,
                )?))
            }
        };
        let tokens = match &settings.tokens_file {
            None => tokens::TokenTable::default(),
            Some(path) => tokens::TokenTable::load(path)?,
        };
        if settings.client_certificates && jwt.is_none() && tokens.spiffe_ids() == 0 {
            bail!(
                "{} requires client certificates, but nothing maps one to a role: list SPIFFE \
                 ids (\"spiffe_id\" entries) in {}, or set {} for bearer tokens",
                crate::env::TLS_CLIENT_CA,
                crate::env::AUTH_TOKENS_FILE,
                crate::env::AUTH_JWKS_FILE
            );
        }
        Ok(Authenticator {
            jwt,
            tokens: std::sync::Arc::new(tokens),
            client_certificates: settings.client_certificates,
        })
    }

    /// True when callers must present credentials.
    pub fn is_enabled(&self) -> bool {
        self.jwt.is_some() || !self.tokens.is_empty() || self.client_certificates
    }

    /// Logs what is on, and what cannot work, at start (the files are read
    /// before logging starts).
    pub fn log_startup(&self) {
        if !self.is_enabled() {
            tracing::warn!(
                "authentication is off: every caller is the local operator (admin, every \
                 account), so only loopback addresses are allowed; set {}, {} or {} to turn it on",
                crate::env::AUTH_JWKS_FILE,
                crate::env::AUTH_TOKENS_FILE,
                crate::env::TLS_CLIENT_CA
            );
            return;
        }
        tracing::info!(modes = ?self.modes(), "authentication is on");
        if !self.client_certificates && self.tokens.spiffe_ids() > 0 {
            tracing::warn!(
                entries = self.tokens.spiffe_ids(),
                "the tokens file lists SPIFFE ids, but {} is not set: no client certificate \
                 is asked for, so those entries never match",
                crate::env::TLS_CLIENT_CA
            );
        }
    }

    /// The modes that are on, for the startup log.
    pub fn modes(&self) -> Vec<&'static str> {
        let mut modes = Vec::new();
        if self.jwt.is_some() {
            modes.push("jwt");
        }
        if self.tokens.static_tokens() > 0 {
            modes.push("static-tokens");
        }
        if self.client_certificates {
            modes.push("mtls-spiffe");
        }
        modes
    }

    /// Who sent a request with these headers on a connection with these
    /// peer certificates (the end-entity certificate first). A caller of
    /// the tokens file (and the local operator) is shared by its requests,
    /// not copied for each.
    pub fn authenticate(
        &self,
        headers: &http::HeaderMap,
        peer_certificates: Option<&[Vec<u8>]>,
    ) -> Result<Arc<Caller>, Error> {
        if !self.is_enabled() {
            static LOCAL_OPERATOR: std::sync::LazyLock<Arc<Caller>> =
                std::sync::LazyLock::new(|| Arc::new(Caller::local_operator()));
            return Ok(LOCAL_OPERATOR.clone());
        }
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        match (values.next(), values.next()) {
            (Some(_), Some(_)) => Err(unauthenticated(
                "send one authorization header, not several",
            )),
            (Some(value), None) => self.bearer(value),
            (None, _) => match peer_certificates.and_then(|certs| certs.first()) {
                Some(certificate) if self.client_certificates => {
                    let id = spiffe::spiffe_id(certificate).map_err(|why| {
                        unauthenticated(&format!("the client certificate is not usable: {why}"))
                    })?;
                    self.tokens.by_spiffe_id(&id).ok_or_else(|| {
                        tracing::info!(spiffe_id = %id, "client certificate refused: unknown SPIFFE id");
                        unauthenticated("the client certificate's SPIFFE id is not authorized")
                    })
                }
                _ => Err(unauthenticated(if self.client_certificates {
                    "credentials required: a client certificate with an authorized SPIFFE id, \
                     or an authorization: Bearer <token> header"
                } else {
                    "credentials required: send an authorization: Bearer <token> header"
                })),
            },
        }
    }

    fn bearer(&self, value: &http::HeaderValue) -> Result<Arc<Caller>, Error> {
        let bytes = value.as_bytes();
        if bytes.len() > MAX_TOKEN_BYTES {
            return Err(unauthenticated("the authorization header is too long"));
        }
        let Some(token) = std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| {
                let (scheme, rest) = text.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(rest)
            })
            .map(str::trim)
            .filter(|token| !token.is_empty())
        else {
            return Err(unauthenticated(
                "the authorization header must be `Bearer <token>`",
            ));
        };
        if let Some(caller) = self.tokens.by_token(token) {
            return Ok(caller);
        }
        match &self.jwt {
            Some(jwt) if jwt::looks_like_jwt(token) => jwt
                .verify(token)
                .map(Arc::new)
                .map_err(|why| unauthenticated(&format!("the bearer token is not valid: {why}"))),
            _ => Err(unauthenticated("the bearer token is not valid")),
        }
    }
}

/// UNAUTHENTICATED / `UNAUTHENTICATED` with `message` (which must not
/// carry the credentials).
pub fn unauthenticated(message: &str) -> Error {
    Error {
        kind: Kind::Unauthenticated,
        reason: Reason::Unauthenticated,
        message: message.to_owned(),
        violations: Vec::new(),
        metadata: Vec::new(),
        retry_after: None,
    }
}

/// A role as written in tokens and files.
pub fn parse_role(value: &str) -> Option<Role> {
    match value {
        "viewer" => Some(Role::Viewer),
        "operator" => Some(Role::Operator),
        "admin" => Some(Role::Admin),
        _ => None,
    }
}

/// An account list as written in tokens and files: 12-digit ids, or
/// `["*"]` alone for every account.
pub fn parse_accounts(values: &[String]) -> Result<AccountScope, String> {
    if values.iter().any(|v| v == "*") {
        return if values.len() == 1 {
            Ok(AccountScope::All)
        } else {
            Err("\"*\" must be the only entry".to_owned())
        };
    }
    let mut accounts = std::collections::BTreeSet::new();
    for (index, value) in values.iter().enumerate() {
        let account = AccountId::parse(value)
            .map_err(|_| format!("entry {index} is not a 12-digit account id"))?;
        accounts.insert(account);
    }
    Ok(AccountScope::Only(accounts))
}

/// Reads a file for the auth configuration, naming it on failure.
pub fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_parse_strictly() {
        assert_eq!(parse_accounts(&["*".into()]), Ok(AccountScope::All));
        assert!(parse_accounts(&["*".into(), "111111111111".into()]).is_err());
        assert!(parse_accounts(&["11111111111".into()]).is_err());
        let Ok(AccountScope::Only(set)) = parse_accounts(&["111111111111".into()]) else {
            panic!("one account");
        };
        assert_eq!(set.len(), 1);
        assert!(parse_role("root").is_none());
        assert_eq!(parse_role("viewer"), Some(Role::Viewer));
    }

    #[test]
    fn off_is_the_local_operator() {
        let auth = Authenticator::off();
        assert!(!auth.is_enabled());
        let caller = auth
            .authenticate(&http::HeaderMap::new(), None)
            .expect("local operator");
        assert_eq!(*caller, Caller::local_operator());
    }
}
