//! JWT bearer tokens: verified against the public keys of a JWKS file
//! (RS256, ES256 on P-256, EdDSA on Ed25519), with the issuer and audience
//! checked, `exp` required and `nbf` honoured (30 s of leeway each way).
//!
//! Claims: `sub` (the principal), `slrgov_role` (`viewer`, `operator`,
//! `admin`) and `slrgov_accounts` (12-digit account ids, or `["*"]`). A
//! token whose role or accounts do not parse is refused, never narrowed.

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use slrgov_domain::Caller;

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 30;
/// The longest `sub` accepted.
const MAX_SUBJECT: usize = 256;

/// One usable key of the JWKS.
struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// The keys, issuer and audience JWTs are checked against.
pub struct JwtVerifier {
    keys: Vec<Key>,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    slrgov_role: String,
    slrgov_accounts: Vec<String>,
}

/// True when `token` has the shape of a compact JWS (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl JwtVerifier {
    /// Loads the JWKS file. Keys for encryption, symmetric keys and curves
    /// other than P-256 and Ed25519 are skipped with a warning; a file with
    /// no usable key is an error.
    pub fn load(path: &Path, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let bytes = super::read(path, "JWKS file")?;
        let set: JwkSet = serde_json::from_slice(&bytes)
            .with_context(|| format!("invalid JWKS file {}", path.display()))?;
        let mut keys = Vec::new();
        for (index, jwk) in set.keys.iter().enumerate() {
            let kid = jwk.common.key_id.clone();
            let label = kid.clone().unwrap_or_else(|| format!("#{index}"));
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                tracing::warn!(key = %label, file = %path.display(), "JWKS key for encryption skipped");
                continue;
            }
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                    Algorithm::EdDSA
                }
                _ => {
                    tracing::warn!(
                        key = %label,
                        file = %path.display(),
                        "JWKS key skipped: only RSA (RS256), EC P-256 (ES256) and OKP Ed25519 \
                         (EdDSA) keys are used"
                    );
                    continue;
                }
            };
            let declared = jwk.common.key_algorithm;
            let consistent = match declared {
                None => true,
                Some(KeyAlgorithm::RS256) => algorithm == Algorithm::RS256,
                Some(KeyAlgorithm::ES256) => algorithm == Algorithm::ES256,
                Some(KeyAlgorithm::EdDSA) => algorithm == Algorithm::EdDSA,
                Some(_) => false,
            };
            if !consistent {
                tracing::warn!(key = %label, file = %path.display(), "JWKS key skipped: its alg is not RS256, ES256 or EdDSA for its key type");
                continue;
            }
            let key = DecodingKey::from_jwk(jwk).with_context(|| {
                format!("invalid key {label} in the JWKS file {}", path.display())
            })?;
            keys.push(Key {
                kid,
                algorithm,
                key,
            });
        }
        if keys.is_empty() {
            bail!(
                "the JWKS file {} has no usable key (RS256, ES256 or EdDSA)",
                path.display()
            );
        }
        tracing::info!(keys = keys.len(), file = %path.display(), "JWKS loaded");
        Ok(JwtVerifier {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// Verifies `token`; the error says why it was refused, without
    /// repeating it.
    pub fn verify(&self, token: &str) -> Result<Caller, &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token")?;
        let candidates: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| k.algorithm == header.alg)
            .filter(|k| match &header.kid {
                Some(kid) => k.kid.as_deref() == Some(kid.as_str()),
                None => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(if header.kid.is_some() {
                "unknown key id, or a key of another algorithm"
            } else {
                "no key for its algorithm"
            });
        }
        let mut last = "the signature does not verify";
        for key in candidates {
            let mut validation = Validation::new(key.algorithm);
            validation.leeway = LEEWAY_SECONDS;
            validation.validate_nbf = true;
            validation.set_issuer(&[&self.issuer]);
            validation.set_audience(&[&self.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => {
                    // jsonwebtoken's JSON reader skips the strings of claims
                    // it does not know without checking them: a claims set
                    // that is not UTF-8 (RFC 7519 §7.2) would pass.
                    if !segments_are_utf8(token) {
                        return Err("malformed token: its header or claims are not UTF-8");
                    }
                    return caller(data.claims);
                }
                Err(error) => {
                    last = match error.kind() {
                        ErrorKind::InvalidSignature => "the signature does not verify",
                        ErrorKind::ExpiredSignature => "expired",
                        ErrorKind::ImmatureSignature => "not valid yet (nbf)",
                        ErrorKind::InvalidIssuer => "wrong issuer",
                        ErrorKind::InvalidAudience => "wrong audience",
                        ErrorKind::MissingRequiredClaim(_) => {
                            "a required claim (exp, iss, aud, sub) is missing"
                        }
                        ErrorKind::Json(_) => {
                            "the claims sub, slrgov_role and slrgov_accounts are required"
                        }
                        _ => "malformed token",
                    };
                    // Only another key can change a signature failure.
                    if !matches!(error.kind(), ErrorKind::InvalidSignature) {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }
}

/// True when the header and the claims of the compact JWS `token` decode
/// to UTF-8 text, as JSON must be. Called only on verified tokens.
fn segments_are_utf8(token: &str) -> bool {
    token.split('.').take(2).all(|segment| {
        URL_SAFE_NO_PAD
            .decode(segment)
            .is_ok_and(|bytes| std::str::from_utf8(&bytes).is_ok())
    })
}

/// Principals that name static tokens, certificates and the service itself:
/// a JWT may not claim one, so that a principal in the audit trail always
/// says how the caller was authenticated.
fn reserved_principal(sub: &str) -> bool {
    // Compared as a reader of the audit trail would read them: without
    // surrounding whitespace, in any case.
    let sub = sub.trim().to_lowercase();
    ["token:", "spiffe://", "service:"]
        .iter()
        .any(|prefix| sub.starts_with(prefix))
        || ["local-operator", "anonymous"].contains(&sub.as_str())
}

/// Characters that print as nothing (Unicode's default-ignorable code
/// points: zero-width spaces and joiners, bidi controls, variation
/// selectors, tags): a `sub` with one would read in the audit trail as
/// another principal, `"\u{200B}local-operator"` as `local-operator`.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
        | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
        | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

fn caller(claims: Claims) -> Result<Caller, &'static str> {
    if claims.sub.is_empty()
        || claims.sub.len() > MAX_SUBJECT
        || claims.sub.chars().any(|c| c.is_control() || invisible(c))
    {
        return Err("sub must be 1-256 printable characters");
    }
    if reserved_principal(&claims.sub) {
        return Err(
            "sub uses a form reserved for other principals (token:, spiffe://, service:, local-operator)",
        );
    }
    let role = super::parse_role(&claims.slrgov_role)
        .ok_or("slrgov_role must be viewer, operator or admin")?;
    let scope = super::parse_accounts(&claims.slrgov_accounts)
        .map_err(|_| "slrgov_accounts must be 12-digit account ids, or [\"*\"]")?;
    Ok(Caller {
        principal: claims.sub,
        role,
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str) -> Claims {
        Claims {
            sub: sub.to_owned(),
            slrgov_role: "viewer".to_owned(),
            slrgov_accounts: vec!["*".to_owned()],
        }
    }

    #[test]
    fn reserved_principals_are_refused() {
        for sub in [
            "token:deploy-bot",
            "spiffe://example.org/ns/x",
            "service:operations",
            "local-operator",
            "anonymous",
        ] {
            assert!(caller(claims(sub)).is_err(), "{sub} was accepted");
        }
        // Not by another spelling either.
        for sub in [
            " Local-Operator",
            "LOCAL-OPERATOR",
            "local-operator\t",
            "\u{2003}local-operator",
            "\u{200B}local-operator",
            "local\u{2060}-operator",
            "\u{FEFF}anonymous",
            "an\u{E0041}onymous",
            "Anonymous ",
            "Token:deploy-bot",
            " SPIFFE://example.org/ns/x",
            "Service:operations",
        ] {
            assert!(caller(claims(sub)).is_err(), "{sub:?} was accepted");
        }
        let ok = caller(claims("alice@example.com")).expect("an ordinary sub");
        assert_eq!(ok.principal, "alice@example.com");
    }

    /// A verifier trusting one new Ed25519 key, and that key.
    fn ed25519_verifier() -> (JwtVerifier, aws_lc_rs::signature::Ed25519KeyPair) {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
        let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&aws_lc_rs::rand::SystemRandom::new())
            .expect("generate a key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("the new key");
        let jwks = serde_json::json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        }]});
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, jwks.to_string()).expect("write the JWKS");
        let verifier = JwtVerifier::load(&path, "issuer", "audience").expect("load the JWKS");
        (verifier, pair)
    }

    /// A compact JWS of `header` and `claims` as they are, bytes and all.
    fn sign_raw(
        pair: &aws_lc_rs::signature::Ed25519KeyPair,
        header: &[u8],
        claims: &[u8],
    ) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = pair.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    /// Found by the `jwt` fuzz target: a signed token whose claims hold a
    /// byte that is not UTF-8, in a claim the service does not read, was
    /// accepted. JSON is UTF-8 (RFC 7519 §7.2, RFC 8259 §8.1).
    #[test]
    fn claims_or_header_that_are_not_utf8_are_refused() {
        let (verifier, pair) = ed25519_verifier();
        let header = br#"{"alg":"EdDSA","typ":"JWT","kid":"k1"}"#;
        let claims = |extra: &[u8]| {
            let mut c = br#"{"sub":"alice@example.com","slrgov_role":"viewer","slrgov_accounts":["*"],"iss":"issuer","aud":"audience","exp":4102444800,"#.to_vec();
            c.extend_from_slice(extra);
            c.push(b'}');
            c
        };
        // The same token with a UTF-8 note verifies: the key and claims are good.
        let good = sign_raw(
            &pair,
            header,
            &claims("\"note\":\"v\u{e9}ewer\"".as_bytes()),
        );
        let ok = verifier.verify(&good).expect("a UTF-8 token verifies");
        assert_eq!(ok.principal, "alice@example.com");

        let bad_claims = sign_raw(&pair, header, &claims(b"\"note\":\"v\x97ewer\""));
        assert_eq!(
            verifier
                .verify(&bad_claims)
                .expect_err("claims that are not UTF-8"),
            "malformed token: its header or claims are not UTF-8"
        );
        let bad_header = sign_raw(
            &pair,
            b"{\"alg\":\"EdDSA\",\"kid\":\"k1\",\"x-note\":\"\xff\"}",
            &claims(br#""note":"viewer""#),
        );
        assert!(
            verifier.verify(&bad_header).is_err(),
            "a header that is not UTF-8 was accepted"
        );
    }
}
