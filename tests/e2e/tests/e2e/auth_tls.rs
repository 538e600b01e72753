//! TLS and mTLS against the real binary: a server certificate from a test
//! CA with a static token, and client certificates whose SPIFFE ids are the
//! callers.

use sha2::{Digest, Sha256};
use slrgov_proto::slrgov::v1 as pb;
use slrgov_proto::slrgov::v1::account_service_client::AccountServiceClient;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use super::auth_support::{
    Pki, account, assert_not_logged, assert_unauthenticated, hex, tokens_file, with_token, write,
};
use super::support::{Engine, TestDb, TestServer, account_id, env_refs, refusal};

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
    let listening = server.event("listening on");
    assert_eq!(listening["tls"], true, "{listening}");
    assert_eq!(listening["mtls"], false, "{listening}");
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
    let listening = server.event("listening on");
    assert_eq!(listening["tls"], true, "{listening}");
    assert_eq!(listening["mtls"], true, "{listening}");
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
