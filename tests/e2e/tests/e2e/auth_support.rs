//! What the authentication tests (`auth`, `auth_tls`, `auth_sweep`) share:
//! signing keys made by `slr-governor token` and the tokens they sign,
//! static tokens files, a small PKI for TLS and mTLS, requests carrying a
//! token, and the checks that a refusal and the log never repeat a secret.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use slrgov_proto::slrgov::v1 as pb;
use tonic::Code;

use super::support::{TestServer, refusal, server_bin};

/// The issuer the test servers expect.
pub const ISSUER: &str = "https://issuer.e2e.test";
/// The audience the test servers expect.
pub const AUDIENCE: &str = "slr-governor-e2e";

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A signing key made by `slr-governor token`, its JWKS, and a way to sign
/// any claims with it.
pub struct Jwt {
    _dir: tempfile::TempDir,
    /// The private key file.
    pub key: PathBuf,
    /// The JWKS file.
    pub jwks: PathBuf,
    /// The token `slr-governor token` printed (viewer, every account).
    pub minted: String,
    kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
}

impl Jwt {
    /// A new key of `alg` (`eddsa`, `es256`, `rs256`).
    pub fn new(alg: &str) -> Jwt {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("key.pem");
        let jwks = dir.path().join("jwks.json");
        let output = std::process::Command::new(server_bin())
            .arg("token")
            .arg("--key")
            .arg(&key)
            .args(["--alg", alg, "--sub", "minted", "--role", "viewer"])
            .args([
                "--accounts",
                "*",
                "--issuer",
                ISSUER,
                "--audience",
                AUDIENCE,
            ])
            .args(["--ttl", "10m"])
            .arg("--jwks-out")
            .arg(&jwks)
            .env_remove("SLRGOV_AUTH_ISSUER")
            .env_remove("SLRGOV_AUTH_AUDIENCE")
            .output()
            .expect("run slr-governor token");
        assert!(
            output.status.success(),
            "slr-governor token failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let minted = String::from_utf8(output.stdout)
            .expect("utf-8")
            .trim()
            .to_owned();
        let set: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&jwks).expect("read jwks")).expect("jwks json");
        let jwk = &set["keys"][0];
        let kid = jwk["kid"].as_str().expect("kid").to_owned();
        let pem = std::fs::read(&key).expect("read key");
        let (algorithm, encoding) = match jwk["alg"].as_str().expect("alg") {
            "EdDSA" => (Algorithm::EdDSA, EncodingKey::from_ed_pem(&pem)),
            "ES256" => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem)),
            "RS256" => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem)),
            other => panic!("unexpected alg {other}"),
        };
        Jwt {
            _dir: dir,
            key,
            jwks,
            minted,
            kid,
            algorithm,
            encoding: encoding.expect("encoding key"),
        }
    }

    /// The server environment that trusts this key.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SLRGOV_AUTH_JWKS_FILE", self.jwks.display().to_string()),
            ("SLRGOV_AUTH_ISSUER", ISSUER.to_owned()),
            ("SLRGOV_AUTH_AUDIENCE", AUDIENCE.to_owned()),
        ]
    }

    /// Signs `claims` with this key; `kid` overrides the key id.
    pub fn sign_with_kid(&self, claims: &serde_json::Value, kid: Option<&str>) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }

    /// Signs `claims` with this key and its key id.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        self.sign_with_kid(claims, Some(&self.kid))
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Valid claims for 10 minutes.
    pub fn claims(sub: &str, role: &str, accounts: &[&str]) -> serde_json::Value {
        serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub,
            "iat": now(), "nbf": now(), "exp": now() + 600,
            "slrgov_role": role, "slrgov_accounts": accounts,
        })
    }

    /// A valid token.
    pub fn token(&self, sub: &str, role: &str, accounts: &[&str]) -> String {
        self.sign(&Self::claims(sub, role, accounts))
    }
}

/// `message` with `authorization: Bearer <token>`.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header value"),
    );
    request
}

/// Asserts an UNAUTHENTICATED refusal with the API's ErrorInfo, whose
/// message does not repeat `secret`.
#[track_caller]
pub fn assert_unauthenticated(status: &tonic::Status, secret: &str) {
    let r = refusal(status);
    assert_eq!(r.code, Code::Unauthenticated, "{r:?}");
    assert_eq!(r.reason, "UNAUTHENTICATED", "{r:?}");
    assert_eq!(r.domain, "slrgov.v1", "{r:?}");
    if !secret.is_empty() {
        assert!(!r.message.contains(secret), "the message echoes the token");
        for part in secret.split('.').filter(|p| p.len() > 8) {
            assert!(!r.message.contains(part), "the message echoes the token");
        }
    }
}

/// Asserts the log does not contain `secret` or any long part of it.
#[track_caller]
pub fn assert_not_logged(server: &TestServer, secret: &str) {
    let log = server.log();
    assert!(!log.is_empty(), "the log was captured");
    assert!(!log.contains(secret), "the server logged a token");
    for part in secret.split('.').filter(|p| p.len() > 8) {
        assert!(!log.contains(part), "the server logged part of a token");
    }
}

/// A CreateAccount request of tenant `id`, with an access role.
pub fn account(id: &str) -> pb::CreateAccountRequest {
    pb::CreateAccountRequest {
        account_id: id.to_owned(),
        account: Some(pb::Account {
            display_name: "tenant".into(),
            access_role_arn: format!("arn:aws:iam::{id}:role/SlrGovernor"),
            external_id: "ext".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

/// Lower-case hex of `bytes` (a static token's SHA-256 in a tokens file).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A tokens file in `dir` with the entries given.
pub fn tokens_file(dir: &Path, entries: &serde_json::Value) -> PathBuf {
    let path = dir.join("tokens.json");
    std::fs::write(&path, entries.to_string()).expect("write tokens file");
    path
}

/// A CA, and certificates it signs.
pub struct Pki {
    ca: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    /// A new CA.
    pub fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "slrgov e2e CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("key");
        let ca = params.self_signed(&key).expect("self-signed CA");
        let issuer = rcgen::Issuer::new(params, key);
        Pki { ca, issuer }
    }

    /// A certificate and its key, PEM.
    pub fn issue(&self, sans: Vec<rcgen::SanType>, server: bool) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![if server {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    /// A server certificate for localhost and 127.0.0.1, and its key.
    pub fn server(&self) -> (String, String) {
        self.issue(
            vec![
                rcgen::SanType::DnsName("localhost".try_into().expect("dns")),
                rcgen::SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
            ],
            true,
        )
    }

    /// A client certificate naming `spiffe_id`, and its key.
    pub fn client(&self, spiffe_id: &str) -> (String, String) {
        self.issue(
            vec![rcgen::SanType::URI(spiffe_id.try_into().expect("uri"))],
            false,
        )
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }
}

/// Writes `text` to the file `name` in `dir` and returns its path.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}
