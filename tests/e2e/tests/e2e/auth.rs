//! Authentication against the real binary: JWTs signed with RS256, ES256
//! and EdDSA (keys made by `slr-governor token`), static tokens, TLS, mTLS
//! with SPIFFE ids, the per-caller rate limit, listen addresses, message
//! size limits, and secrets kept out of the log.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::{Digest, Sha256};
use slrgov_proto::slrgov::v1 as pb;
use slrgov_proto::slrgov::v1::account_service_client::AccountServiceClient;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use tonic_types::StatusExt;

use super::support::{Engine, TestDb, TestServer, account_id, refusal, server_bin};

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

/// Owned environment pairs as the `(&str, &str)` pairs TestServer takes.
pub fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
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

fn account(id: &str) -> pb::CreateAccountRequest {
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

async fn jwt_mode(alg: &str) {
    let jwt = Jwt::new(alg);
    let db = TestDb::new(Engine::Sqlite).await;
    let env = jwt.env();
    let server = TestServer::start_with(&db, &env_refs(&env)).await;
    let mut c = server.clients().await;
    let a = account_id(1);
    let b = account_id(2);

    // No credentials: refused, health stays open (start_with waited on it).
    let status = c
        .accounts
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .expect_err("no token");
    assert_unauthenticated(&status, "");

    // An admin of A registers A; B is outside its scope (NOT_FOUND, as if
    // B did not exist).
    let admin_a = jwt.token("alice", "admin", &[&a]);
    c.accounts
        .create_account(with_token(account(&a), &admin_a))
        .await
        .expect("admin creates its account");
    let r = refusal(
        &c.accounts
            .create_account(with_token(account(&b), &admin_a))
            .await
            .expect_err("outside the scope"),
    );
    assert_eq!(r.code, Code::NotFound, "{r:?}");

    // The token minted by `slr-governor token` (viewer, every account)
    // reads, and may not write.
    let listed = c
        .accounts
        .list_accounts(with_token(pb::ListAccountsRequest::default(), &jwt.minted))
        .await
        .expect("the minted token reads")
        .into_inner();
    assert_eq!(listed.accounts.len(), 1);
    let r = refusal(
        &c.accounts
            .create_account(with_token(account(&b), &jwt.minted))
            .await
            .expect_err("a viewer may not write"),
    );
    assert_eq!(r.code, Code::PermissionDenied, "{r:?}");

    // `slr-governor token` reuses an existing key: same kid, and its token
    // is accepted.
    let again = std::process::Command::new(server_bin())
        .arg("token")
        .arg("--key")
        .arg(&jwt.key)
        .args(["--role", "admin", "--accounts", &a, "--sub", "bob"])
        .args(["--issuer", ISSUER, "--audience", AUDIENCE])
        .output()
        .expect("run slr-governor token");
    assert!(again.status.success(), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains(jwt.kid()));
    let reminted = String::from_utf8(again.stdout).expect("utf-8");
    c.accounts
        .get_account(with_token(
            pb::GetAccountRequest {
                name: format!("accounts/{a}"),
            },
            reminted.trim(),
        ))
        .await
        .expect("a token from the reused key");

    // The principal is the token's sub.
    assert!(server.log().contains("principal=alice") || server.log().contains("alice"));
    assert_not_logged(&server, &admin_a);
    assert_not_logged(&server, &jwt.minted);
}

#[tokio::test]
async fn auth_jwt_eddsa() {
    jwt_mode("eddsa").await;
}

#[tokio::test]
async fn auth_jwt_es256() {
    jwt_mode("es256").await;
}

#[tokio::test]
async fn auth_jwt_rs256() {
    jwt_mode("rs256").await;
}

#[tokio::test]
async fn auth_jwt_refusals() {
    let jwt = Jwt::new("eddsa");
    let other = Jwt::new("eddsa");
    let db = TestDb::new(Engine::Sqlite).await;
    let env = jwt.env();
    let server = TestServer::start_with(&db, &env_refs(&env)).await;
    let mut c = server.clients().await;
    let a = account_id(1);
    let claims = |patch: serde_json::Value| {
        let mut claims = Jwt::claims("mallory", "admin", &["*"]);
        for (k, v) in patch.as_object().expect("object") {
            if v.is_null() {
                claims.as_object_mut().expect("object").remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    };
    let cases: Vec<(&str, String)> = vec![
        ("malformed", "not-a-jwt".to_owned()),
        ("three garbage parts", "aaaa.bbbb.cccc".to_owned()),
        (
            "signed by another key",
            other.sign(&claims(serde_json::json!({}))),
        ),
        (
            "another key under our kid",
            other.sign_with_kid(&claims(serde_json::json!({})), Some(jwt.kid())),
        ),
        (
            "expired",
            jwt.sign(&claims(serde_json::json!({"exp": now() - 300}))),
        ),
        (
            "not yet valid",
            jwt.sign(&claims(serde_json::json!({"nbf": now() + 300}))),
        ),
        (
            "wrong issuer",
            jwt.sign(&claims(serde_json::json!({"iss": "https://evil.test"}))),
        ),
        (
            "wrong audience",
            jwt.sign(&claims(serde_json::json!({"aud": "someone-else"}))),
        ),
        (
            "no exp",
            jwt.sign(&claims(serde_json::json!({"exp": null}))),
        ),
        (
            "no sub",
            jwt.sign(&claims(serde_json::json!({"sub": null}))),
        ),
        (
            "bad role",
            jwt.sign(&claims(serde_json::json!({"slrgov_role": "root"}))),
        ),
        (
            "bad account id",
            jwt.sign(&claims(serde_json::json!({"slrgov_accounts": ["12345"]}))),
        ),
        (
            "star with others",
            jwt.sign(&claims(
                serde_json::json!({"slrgov_accounts": ["*", "111111111111"]}),
            )),
        ),
        (
            "no role",
            jwt.sign(&claims(serde_json::json!({"slrgov_role": null}))),
        ),
        (
            "no kid, no matching key",
            other.sign_with_kid(&claims(serde_json::json!({})), None),
        ),
    ];
    for (case, token) in &cases {
        let status = c
            .accounts
            .create_account(with_token(account(&a), token))
            .await
            .expect_err(case);
        assert_unauthenticated(&status, token);
        println!("{case}: {}", status.message());
    }
    // Not a bearer token at all.
    let mut request = tonic::Request::new(pb::ListAccountsRequest::default());
    request.metadata_mut().insert(
        "authorization",
        "Basic dXNlcjpwYXNz".parse().expect("value"),
    );
    assert_unauthenticated(
        &c.accounts
            .list_accounts(request)
            .await
            .expect_err("basic auth"),
        "dXNlcjpwYXNz",
    );
    // Within the leeway an expired token still works, and a token without
    // kid is matched against every key.
    let late = jwt.sign(&claims(serde_json::json!({"exp": now() - 5})));
    c.accounts
        .list_accounts(with_token(pb::ListAccountsRequest::default(), &late))
        .await
        .expect("within the leeway");
    let no_kid = jwt.sign_with_kid(&claims(serde_json::json!({})), None);
    c.accounts
        .list_accounts(with_token(pb::ListAccountsRequest::default(), &no_kid))
        .await
        .expect("no kid");
    // Nothing was created, and no token reached the log.
    let listed = c
        .accounts
        .list_accounts(with_token(pb::ListAccountsRequest::default(), &no_kid))
        .await
        .expect("list")
        .into_inner();
    assert!(listed.accounts.is_empty());
    for (_, token) in &cases {
        assert_not_logged(&server, token);
    }
    assert!(server.log().contains("unauthenticated request refused"));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A tokens file in `dir` with the entries given.
fn tokens_file(dir: &Path, entries: &serde_json::Value) -> PathBuf {
    let path = dir.join("tokens.json");
    std::fs::write(&path, entries.to_string()).expect("write tokens file");
    path
}

#[tokio::test]
async fn auth_static_tokens_and_grpcurl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = account_id(1);
    let secret = format!("slrgov-static-{}", uuid::Uuid::new_v4().simple());
    let admin_secret = format!("slrgov-static-{}", uuid::Uuid::new_v4().simple());
    let file = tokens_file(
        dir.path(),
        &serde_json::json!([
            {"name": "ci", "sha256": hex(&Sha256::digest(secret.as_bytes())), "role": "operator", "accounts": [a]},
            {"name": "root", "sha256": hex(&Sha256::digest(admin_secret.as_bytes())).to_uppercase(), "role": "admin", "accounts": ["*"]},
        ]),
    );
    let db = TestDb::new(Engine::Sqlite).await;
    let file_env = file.display().to_string();
    let server =
        TestServer::start_with(&db, &[("SLRGOV_AUTH_TOKENS_FILE", file_env.as_str())]).await;
    let mut c = server.clients().await;

    c.accounts
        .create_account(with_token(account(&a), &admin_secret))
        .await
        .expect("admin token");
    let r = refusal(
        &c.accounts
            .create_account(with_token(account(&account_id(2)), &secret))
            .await
            .expect_err("operator"),
    );
    assert_eq!(
        r.code,
        Code::NotFound,
        "outside the operator's scope: {r:?}"
    );
    let r = refusal(
        &c.accounts
            .delete_account(with_token(
                pb::DeleteAccountRequest {
                    name: format!("accounts/{a}"),
                    etag: String::new(),
                },
                &secret,
            ))
            .await
            .expect_err("operator"),
    );
    assert_eq!(r.code, Code::PermissionDenied, "{r:?}");
    let listed = c
        .accounts
        .list_accounts(with_token(pb::ListAccountsRequest::default(), &secret))
        .await
        .expect("operator reads")
        .into_inner();
    assert_eq!(listed.accounts.len(), 1);
    let wrong = format!("{secret}x");
    assert_unauthenticated(
        &c.accounts
            .list_accounts(with_token(pb::ListAccountsRequest::default(), &wrong))
            .await
            .expect_err("unknown token"),
        &wrong,
    );

    // grpcurl: reflection and health need no token; the API does.
    let grpcurl = super::support::grpcurl();
    let addr = server.addr.to_string();
    let list = tokio::process::Command::new(&grpcurl)
        .args(["-plaintext", &addr, "list"])
        .output()
        .await
        .expect("grpcurl list");
    assert!(list.status.success(), "{list:?}");
    assert!(String::from_utf8_lossy(&list.stdout).contains("slrgov.v1.AccountService"));
    let refused = tokio::process::Command::new(&grpcurl)
        .args(["-plaintext", &addr, "slrgov.v1.AccountService/ListAccounts"])
        .output()
        .await
        .expect("grpcurl");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Unauthenticated"));
    let header = format!("authorization: Bearer {secret}");
    let allowed = tokio::process::Command::new(&grpcurl)
        .args(["-plaintext", "-H", &header, &addr])
        .arg("slrgov.v1.AccountService/ListAccounts")
        .output()
        .await
        .expect("grpcurl");
    assert!(allowed.status.success(), "{allowed:?}");
    assert!(String::from_utf8_lossy(&allowed.stdout).contains(&a));

    assert_not_logged(&server, &secret);
    assert_not_logged(&server, &admin_secret);
    assert_not_logged(&server, &wrong);
}

#[tokio::test]
async fn auth_rate_limit_per_caller() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = format!("rl-one-{}", uuid::Uuid::new_v4().simple());
    let two = format!("rl-two-{}", uuid::Uuid::new_v4().simple());
    let file = tokens_file(
        dir.path(),
        &serde_json::json!([
            {"name": "one", "sha256": hex(&Sha256::digest(one.as_bytes())), "role": "viewer", "accounts": ["*"]},
            {"name": "two", "sha256": hex(&Sha256::digest(two.as_bytes())), "role": "viewer", "accounts": ["*"]},
        ]),
    );
    let db = TestDb::new(Engine::Sqlite).await;
    let file_env = file.display().to_string();
    let server = TestServer::start_with(
        &db,
        &[
            ("SLRGOV_AUTH_TOKENS_FILE", file_env.as_str()),
            ("SLRGOV_RATE_LIMIT_PER_SECOND", "0.5"),
            ("SLRGOV_RATE_LIMIT_BURST", "3"),
        ],
    )
    .await;
    let mut c = server.clients().await;
    for _ in 0..3 {
        c.regions
            .list_regions(with_token(pb::ListRegionsRequest::default(), &one))
            .await
            .expect("within the burst");
    }
    let status = c
        .regions
        .list_regions(with_token(pb::ListRegionsRequest::default(), &one))
        .await
        .expect_err("over the limit");
    let r = refusal(&status);
    assert_eq!(r.code, Code::ResourceExhausted, "{r:?}");
    assert_eq!(r.reason, "RATE_LIMITED", "{r:?}");
    assert_eq!(r.domain, "slrgov.v1", "{r:?}");
    let retry = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo");
    assert!(
        retry > std::time::Duration::ZERO && retry <= std::time::Duration::from_secs(2),
        "{retry:?}"
    );
    // Another caller has its own bucket; health is not limited.
    c.regions
        .list_regions(with_token(pb::ListRegionsRequest::default(), &two))
        .await
        .expect("another principal");
    for _ in 0..5 {
        assert!(server.health("").await.is_some());
    }
}

#[tokio::test]
async fn auth_listen_addresses() {
    // Without auth a public address is refused ...
    let db = TestDb::new(Engine::Sqlite).await;
    let output = tokio::process::Command::new(server_bin())
        .env("SLRGOV_LISTEN", "0.0.0.0:0")
        .env("SLRGOV_DATABASE_URL", &db.url)
        .env_remove("SLRGOV_AUTH_JWKS_FILE")
        .env_remove("SLRGOV_AUTH_TOKENS_FILE")
        .output()
        .await
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("refusing to listen"));

    // ... with auth it is served, and without auth on loopback the server
    // warns that it is open.
    let jwt = Jwt::new("eddsa");
    let mut env = jwt.env();
    env.push(("SLRGOV_LISTEN", "0.0.0.0:0".to_owned()));
    let server = TestServer::start_with(&db, &env_refs(&env)).await;
    assert!(server.addr.ip().is_unspecified(), "{}", server.addr);
    let mut c = server.clients().await;
    c.accounts
        .list_accounts(with_token(pb::ListAccountsRequest::default(), &jwt.minted))
        .await
        .expect("served on 0.0.0.0");
    drop(c);
    server.stop().await;
    let open = TestServer::start(&db).await;
    assert!(
        open.log().contains("authentication is off"),
        "{}",
        open.log()
    );
}

#[tokio::test]
async fn auth_bad_files_fail_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new(Engine::Sqlite).await;
    let missing = dir.path().join("missing-jwks.json");
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{not json").expect("write");
    let empty_set = dir.path().join("empty-jwks.json");
    std::fs::write(&empty_set, r#"{"keys": []}"#).expect("write");
    let bad_tokens = dir.path().join("bad-tokens.json");
    std::fs::write(
        &bad_tokens,
        r#"[{"name": "x", "sha256": "00", "role": "viewer", "accounts": ["*"]}]"#,
    )
    .expect("write");
    let with_iss = |file: &Path| {
        vec![
            ("SLRGOV_AUTH_JWKS_FILE", file.display().to_string()),
            ("SLRGOV_AUTH_ISSUER", ISSUER.to_owned()),
            ("SLRGOV_AUTH_AUDIENCE", AUDIENCE.to_owned()),
        ]
    };
    let cases: Vec<(Vec<(&str, String)>, String)> = vec![
        (with_iss(&missing), "missing-jwks.json".into()),
        (with_iss(&garbage), "garbage.json".into()),
        (with_iss(&empty_set), "empty-jwks.json".into()),
        (
            vec![("SLRGOV_AUTH_JWKS_FILE", empty_set.display().to_string())],
            "SLRGOV_AUTH_ISSUER".into(),
        ),
        (
            vec![("SLRGOV_AUTH_TOKENS_FILE", bad_tokens.display().to_string())],
            "bad-tokens.json".into(),
        ),
        (
            vec![
                (
                    "SLRGOV_TLS_CERT",
                    dir.path().join("no-cert.pem").display().to_string(),
                ),
                (
                    "SLRGOV_TLS_KEY",
                    dir.path().join("no-key.pem").display().to_string(),
                ),
            ],
            "no-cert.pem".into(),
        ),
    ];
    for (env, expected) in cases {
        let mut command = tokio::process::Command::new(server_bin());
        command
            .env("SLRGOV_LISTEN", "127.0.0.1:0")
            .env("SLRGOV_DATABASE_URL", &db.url);
        for (k, v) in &env {
            command.env(k, v);
        }
        let output = tokio::time::timeout(std::time::Duration::from_secs(30), command.output())
            .await
            .expect("exits at once")
            .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{expected}: {stderr}");
        assert!(stderr.contains(&expected), "{expected}: {stderr}");
    }
}

/// A CA, and certificates it signs.
struct Pki {
    ca: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
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
    fn issue(&self, sans: Vec<rcgen::SanType>, server: bool) -> (String, String) {
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

    fn server(&self) -> (String, String) {
        self.issue(
            vec![
                rcgen::SanType::DnsName("localhost".try_into().expect("dns")),
                rcgen::SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
            ],
            true,
        )
    }

    fn client(&self, spiffe_id: &str) -> (String, String) {
        self.issue(
            vec![rcgen::SanType::URI(spiffe_id.try_into().expect("uri"))],
            false,
        )
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

#[tokio::test]
async fn auth_tls_with_a_static_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let (cert, key) = pki.server();
    let secret = format!("tls-{}", uuid::Uuid::new_v4().simple());
    let tokens = tokens_file(
        dir.path(),
        &serde_json::json!([{"name": "ci", "sha256": hex(&Sha256::digest(secret.as_bytes())), "role": "viewer", "accounts": ["*"]}]),
    );
    let env = vec![
        ("SLRGOV_TLS_CERT", write(dir.path(), "server.pem", &cert)),
        ("SLRGOV_TLS_KEY", write(dir.path(), "server-key.pem", &key)),
        ("SLRGOV_AUTH_TOKENS_FILE", tokens.display().to_string()),
    ];
    let db = TestDb::new(Engine::Sqlite).await;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.ca_pem()))
        .domain_name("localhost");
    let server = TestServer::start_tls(&db, &env_refs(&env), tls).await;
    assert!(server.log().contains("tls=true"), "{}", server.log());
    let mut c = server.clients().await;
    c.accounts
        .list_accounts(with_token(pb::ListAccountsRequest::default(), &secret))
        .await
        .expect("over TLS with a token");
    assert_unauthenticated(
        &c.accounts
            .list_accounts(pb::ListAccountsRequest::default())
            .await
            .expect_err("no token"),
        "",
    );
    // Plaintext does not get through.
    let plain = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .expect("endpoint")
        .timeout(std::time::Duration::from_secs(5))
        .connect()
        .await;
    if let Ok(channel) = plain {
        let result = AccountServiceClient::new(channel)
            .list_accounts(with_token(pb::ListAccountsRequest::default(), &secret))
            .await;
        assert!(result.is_err(), "plaintext reached a TLS server");
    }
    assert_not_logged(&server, &secret);
}

#[tokio::test]
async fn auth_mtls_spiffe_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let (cert, key) = pki.server();
    let a = account_id(1);
    let tokens = tokens_file(
        dir.path(),
        &serde_json::json!([
            {"name": "ops", "spiffe_id": "spiffe://e2e.test/ns/ops/sa/governor-client", "role": "admin", "accounts": [a]},
        ]),
    );
    let env = vec![
        ("SLRGOV_TLS_CERT", write(dir.path(), "server.pem", &cert)),
        ("SLRGOV_TLS_KEY", write(dir.path(), "server-key.pem", &key)),
        (
            "SLRGOV_TLS_CLIENT_CA",
            write(dir.path(), "ca.pem", &pki.ca_pem()),
        ),
        ("SLRGOV_AUTH_TOKENS_FILE", tokens.display().to_string()),
    ];
    let client_tls = |spiffe: &str| {
        let (cert, key) = pki.client(spiffe);
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pki.ca_pem()))
            .domain_name("localhost")
            .identity(Identity::from_pem(cert, key))
    };
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start_tls(
        &db,
        &env_refs(&env),
        client_tls("spiffe://e2e.test/ns/ops/sa/governor-client"),
    )
    .await;
    assert!(server.log().contains("mtls=true"), "{}", server.log());
    let mut c = server.clients().await;
    c.accounts
        .create_account(account(&a))
        .await
        .expect("the SPIFFE id is an admin of A");
    let r = refusal(
        &c.accounts
            .create_account(account(&account_id(2)))
            .await
            .expect_err("outside its accounts"),
    );
    assert_eq!(r.code, Code::NotFound, "{r:?}");

    // A certificate from the same CA with an unlisted SPIFFE id: the TLS
    // handshake succeeds, health answers, the API refuses.
    let stranger = tonic::transport::Channel::from_shared(format!("https://{}", server.addr))
        .expect("endpoint")
        .tls_config(client_tls("spiffe://e2e.test/ns/other/sa/stranger"))
        .expect("tls")
        .connect()
        .await
        .expect("handshake with a CA-signed certificate");
    let status = AccountServiceClient::new(stranger)
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .expect_err("unknown SPIFFE id");
    assert_unauthenticated(&status, "");
    assert!(status.message().contains("SPIFFE"), "{}", status.message());

    // Without a client certificate there is no connection at all.
    let anonymous = tonic::transport::Channel::from_shared(format!("https://{}", server.addr))
        .expect("endpoint")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(pki.ca_pem()))
                .domain_name("localhost"),
        )
        .expect("tls")
        .timeout(std::time::Duration::from_secs(5))
        .connect()
        .await;
    if let Ok(channel) = anonymous {
        assert!(
            AccountServiceClient::new(channel)
                .list_accounts(pb::ListAccountsRequest::default())
                .await
                .is_err(),
            "a client without a certificate got through"
        );
    }
}

#[tokio::test]
async fn auth_oversized_messages_are_refused() {
    let jwt = Jwt::new("eddsa");
    let db = TestDb::new(Engine::Sqlite).await;
    let env = jwt.env();
    let server = TestServer::start_with(&db, &env_refs(&env)).await;
    let mut c = server.clients().await;
    let admin = jwt.token("admin", "admin", &["*"]);
    let mut big = account(&account_id(1));
    if let Some(account) = big.account.as_mut() {
        account.display_name = "x".repeat(2 * 1024 * 1024);
    }
    let status = c
        .accounts
        .create_account(with_token(big, &admin))
        .await
        .expect_err("2 MiB");
    println!("2 MiB: {:?} {}", status.code(), status.message());
    assert!(
        matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{status:?}"
    );
    // Just under the limit, the request is decoded and validated.
    let mut under = account(&account_id(1));
    if let Some(account) = under.account.as_mut() {
        account.display_name = "x".repeat(1000 * 1024);
    }
    let r = refusal(
        &c.accounts
            .create_account(with_token(under, &admin))
            .await
            .expect_err("too long a display name"),
    );
    assert_eq!(r.code, Code::InvalidArgument, "{r:?}");
    // The server is still healthy.
    c.accounts
        .list_accounts(with_token(pb::ListAccountsRequest::default(), &admin))
        .await
        .expect("still serving");
}
