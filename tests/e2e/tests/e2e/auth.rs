//! Authentication against the real binary: JWTs signed with RS256, ES256
//! and EdDSA (keys made by `slr-governor token`), static tokens, the
//! per-caller rate limit, listen addresses, message size limits, and
//! secrets kept out of the log. TLS and mTLS are in `auth_tls`.

use std::path::Path;

use sha2::{Digest, Sha256};
use slrgov_proto::slrgov::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

use super::auth_support::{
    AUDIENCE, ISSUER, Jwt, account, assert_not_logged, assert_unauthenticated, hex, now,
    tokens_file, with_token,
};
use super::support::{Engine, TestDb, TestServer, account_id, env_refs, refusal, server_bin};

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
    assert!(
        server
            .events()
            .iter()
            .any(|e| e["span"]["enduser.id"] == "alice"),
        "the caller's spans name the principal: {}",
        server.log()
    );
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
    let refusal = server.event("unauthenticated request refused");
    assert!(refusal["path"].as_str().is_some(), "{refusal}");
    assert!(refusal["why"].as_str().is_some(), "{refusal}");
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

    // grpcurl: reflection needs a token once an auth mode is on (health
    // does not); the API does.
    let grpcurl = super::support::grpcurl();
    let addr = server.addr.to_string();
    let header = format!("authorization: Bearer {secret}");
    let anonymous = tokio::process::Command::new(&grpcurl)
        .args(["-plaintext", &addr, "list"])
        .output()
        .await
        .expect("grpcurl list");
    assert!(!anonymous.status.success(), "{anonymous:?}");
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("Unauthenticated"));
    let list = tokio::process::Command::new(&grpcurl)
        .args(["-plaintext", "-H", &header, &addr, "list"])
        .output()
        .await
        .expect("grpcurl list");
    assert!(list.status.success(), "{list:?}");
    assert!(String::from_utf8_lossy(&list.stdout).contains("slrgov.v1.AccountService"));
    // A token for the reflection only: the call itself is refused.
    let refused = tokio::process::Command::new(&grpcurl)
        .args(["-plaintext", "-reflect-header", &header, &addr])
        .arg("slrgov.v1.AccountService/ListAccounts")
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
    assert_eq!(open.event("authentication is off")["level"], "WARN");
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
        let output = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            TestServer::run_to_exit(&db, &env_refs(&env)),
        )
        .await
        .expect("exits at once");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{expected}: {stderr}");
        assert!(stderr.contains(&expected), "{expected}: {stderr}");
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

/// What reading the configuration logs (here: a JWKS key for encryption,
/// skipped) reaches the log, although it is read before logging starts.
#[tokio::test]
async fn configuration_warnings_reach_the_log() {
    let jwt = super::auth_support::Jwt::new("es256");
    let mut set: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&jwt.jwks).expect("read jwks")).expect("jwks");
    let mut enc = set["keys"][0].clone();
    enc["kid"] = serde_json::json!("an-encryption-key");
    enc["use"] = serde_json::json!("enc");
    set["keys"].as_array_mut().expect("keys").push(enc);
    let dir = tempfile::tempdir().expect("dir");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, set.to_string()).expect("write jwks");
    let mut env = jwt.env();
    env[0].1 = jwks.display().to_string();
    let db = super::support::TestDb::new(super::support::Engine::Sqlite).await;
    let server = super::support::TestServer::start_with(&db, &super::support::env_refs(&env)).await;
    let warned = server.events_with("JWKS key for encryption skipped");
    assert_eq!(warned.len(), 1, "{}", server.log());
    assert_eq!(warned[0]["level"], "WARN", "{:?}", warned[0]);
    assert!(
        warned[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("an-encryption-key")),
        "{:?}",
        warned[0]
    );
}
