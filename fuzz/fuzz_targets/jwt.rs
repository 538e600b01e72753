//! JWT bearer tokens (slr-governor `auth/jwt.rs`): verifying any string as
//! a token never panics, and a token that verifies yields a caller the
//! rules allow (a printable `sub` of 1-256 bytes, never a reserved
//! principal, the role and accounts the claims name).
//!
//! Input: a token, checked against a JWKS with an Ed25519, a P-256 and an
//! RSA key (keys/, made by gen_seeds.py); or, when it is `{header}\n{claims}`,
//! a header and claims that are signed with the Ed25519 key first, as a
//! trusted issuer would, so that the checks behind the signature (the
//! claims, `exp`, `nbf`, issuer, audience, `sub`, role, accounts) are fuzzed
//! too.
#![no_main]

use std::sync::OnceLock;

use aws_lc_rs::signature::Ed25519KeyPair;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use slrgov_domain::{AccountScope, Caller, Role};
use slrgov_fuzz::auth::jwt::{JwtVerifier, looks_like_jwt};

const JWKS: &str = include_str!("../keys/jwks.json");
const ED25519_PKCS8: &[u8] = include_bytes!("../keys/ed25519.pk8.der");
const SEED_EDDSA: &str = include_str!("../seeds/jwt/token-0");
const SEED_ES256: &str = include_str!("../seeds/jwt/token-1");
const SEED_RS256: &str = include_str!("../seeds/jwt/token-3");
const SEED_CLAIMS: &[u8] = include_bytes!("../seeds/jwt/claims-0");

fn verifier() -> &'static JwtVerifier {
    static VERIFIER: OnceLock<JwtVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("slrgov-fuzz-jwks-{}.json", std::process::id()));
        std::fs::write(&path, JWKS).expect("write the JWKS");
        let verifier =
            JwtVerifier::load(&path, "slr-governor-dev", "slr-governor").expect("load the JWKS");
        let _ = std::fs::remove_file(&path);
        // The seeds and keys belong together (gen_seeds.py): seeds that do
        // not verify would leave the fuzzer outside the claims checks.
        for seed in [SEED_EDDSA, SEED_ES256, SEED_RS256] {
            verifier.verify(seed.trim()).expect("a seed token verifies");
        }
        let (header, claims) = split(SEED_CLAIMS).expect("header and claims");
        verifier
            .verify(&signed(header, claims))
            .expect("the seed claims verify once signed");
        verifier
    })
}

/// `{header}\n{claims}`, split.
fn split(data: &[u8]) -> Option<(&[u8], &[u8])> {
    if data.first() != Some(&b'{') {
        return None;
    }
    let at = data.iter().position(|&b| b == b'\n')?;
    Some((&data[..at], &data[at + 1..]))
}

/// A compact JWS of `header` and `claims` as they are, signed with the
/// Ed25519 test key.
fn signed(header: &[u8], claims: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = signer().sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    )
}

fn signer() -> &'static Ed25519KeyPair {
    static SIGNER: OnceLock<Ed25519KeyPair> = OnceLock::new();
    SIGNER.get_or_init(|| {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(ED25519_PKCS8).expect("the Ed25519 test key")
    })
}

fn check_caller(caller: &Caller, claims: Option<&[u8]>) {
    let sub = caller.principal.as_str();
    assert!(!sub.is_empty() && sub.len() <= 256, "{sub:?}");
    assert!(!sub.chars().any(char::is_control), "{sub:?}");
    let folded = sub.trim().to_lowercase();
    assert!(
        !["token:", "spiffe://", "service:"]
            .iter()
            .any(|p| folded.starts_with(p))
            && !["local-operator", "anonymous"].contains(&folded.as_str()),
        "a reserved principal was accepted: {sub:?}"
    );
    if let Some(claims) = claims {
        let claims: serde_json::Value = serde_json::from_slice(claims).expect("verified claims");
        assert_eq!(claims["sub"].as_str(), Some(sub));
        let role = match caller.role {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        };
        assert_eq!(claims["slrgov_role"].as_str(), Some(role));
        let accounts = claims["slrgov_accounts"].as_array().expect("accounts");
        match &caller.scope {
            AccountScope::All => assert_eq!(accounts.len(), 1),
            AccountScope::Only(set) => {
                assert!(set.len() <= accounts.len());
                for account in set {
                    assert!(
                        accounts
                            .iter()
                            .any(|a| a.as_str() == Some(account.as_str()))
                    );
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let verifier = verifier();
    if let Some((header, claims)) = split(data) {
        let token = signed(header, claims);
        assert!(looks_like_jwt(&token));
        if let Ok(caller) = verifier.verify(&token) {
            check_caller(&caller, Some(claims));
        }
        return;
    }
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = looks_like_jwt(token);
    if let Ok(caller) = verifier.verify(token) {
        check_caller(&caller, None);
    }
});
