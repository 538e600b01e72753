//! The process: restarts, start-up before the database is ready, the
//! loopback rule, the subcommands.

use std::time::Duration;

use slrgov_proto::slrgov::v1 as pb;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use super::support::{Engine, TestDb, TestServer, account_id, instance_id, refused, server_bin};

async fn data_survives_a_restart(engine: Engine) {
    let db = TestDb::new(engine).await;
    let server = TestServer::start(&db).await;
    let mut c = server.clients().await;
    let account = account_id(3);
    let create = pb::CreateAccountRequest {
        account_id: account.clone(),
        account: Some(pb::Account {
            display_name: "before restart".into(),
            ..Default::default()
        }),
        request_id: "restart-1".into(),
    };
    c.accounts
        .create_account(create.clone())
        .await
        .expect("account");
    let id = instance_id();
    let before = c
        .instances
        .create_instance(pb::CreateInstanceRequest {
            parent: format!("accounts/{account}"),
            instance_id: id.clone(),
            instance: Some(pb::Instance {
                region: "ca-central-1".into(),
                features: Some(pb::InstanceFeatures {
                    voice_id_domain: "AbCdEfGhIjKlMnOpQrStUv".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("instance")
        .into_inner();
    drop(c);
    let status = server.stop().await;
    assert!(status.success(), "a clean exit on SIGTERM: {status:?}");

    let server = TestServer::start(&db).await;
    let mut c = server.clients().await;
    let after = c
        .instances
        .get_instance(pb::GetInstanceRequest {
            name: before.name.clone(),
        })
        .await
        .expect("instance after restart")
        .into_inner();
    assert_eq!(after, before);
    // The request id is remembered across the restart too.
    let replay = c
        .accounts
        .create_account(create)
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(replay.display_name, "before restart");
}

#[tokio::test]
async fn data_survives_a_restart_sqlite() {
    data_survives_a_restart(Engine::Sqlite).await;
}

#[tokio::test]
async fn data_survives_a_restart_postgres() {
    data_survives_a_restart(Engine::Postgres).await;
}

#[tokio::test]
async fn not_serving_until_the_database_is_ready() {
    let db = TestDb::postgres_missing();
    let server = TestServer::spawn(&db, &[]).await;
    // The database does not exist: the server listens, says NOT_SERVING,
    // and answers UNAVAILABLE.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.health("").await, Some(ServingStatus::NotServing));
    assert_eq!(
        server.health("slrgov.v1.InstanceService").await,
        Some(ServingStatus::NotServing)
    );
    let mut c = server.clients().await;
    let unavailable = refused(
        c.accounts
            .list_accounts(pb::ListAccountsRequest::default())
            .await,
    );
    assert_eq!(unavailable.code, Code::Unavailable);
    // Once the database exists, the server migrates it and serves.
    db.create_later().await;
    server.wait_serving(Duration::from_secs(30)).await;
    assert_eq!(
        server.health("slrgov.v1.AccountService").await,
        Some(ServingStatus::Serving)
    );
    c.accounts
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .expect("serving");
}

#[tokio::test]
async fn refuses_a_public_address_without_authentication() {
    let db = TestDb::new(Engine::Sqlite).await;
    let output = TestServer::run_to_exit(&db, &[("SLRGOV_LISTEN", "0.0.0.0:0")]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to listen"), "{stderr}");
}

#[tokio::test]
async fn refuses_a_postgres_role_that_bypasses_row_level_security() {
    let db = TestDb::new(Engine::Postgres).await;
    let superuser = db.postgres_admin_url().expect("a Postgres database");
    let output = tokio::process::Command::new(server_bin())
        .arg("migrate")
        .env("SLRGOV_DATABASE_URL", &superuser)
        .env_remove("SLRGOV_ALLOW_RLS_BYPASS")
        .output()
        .await
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a superuser was accepted: {stderr}"
    );
    assert!(
        stderr.contains("BYPASSRLS") && stderr.contains("SLRGOV_ALLOW_RLS_BYPASS"),
        "the refusal says why and how to override: {stderr}"
    );
    // Told to, it accepts the role (and warns).
    let output = tokio::process::Command::new(server_bin())
        .arg("migrate")
        .env("SLRGOV_DATABASE_URL", &superuser)
        .env("SLRGOV_ALLOW_RLS_BYPASS", "true")
        .output()
        .await
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("bypasses row-level security"), "{stderr}");
}

#[tokio::test]
async fn version_and_migrate_subcommands() {
    let output = tokio::process::Command::new(server_bin())
        .arg("--version")
        .output()
        .await
        .expect("run");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("slr-governor "));

    // Three replicas migrating one fresh Postgres at once: the advisory lock
    // makes them take turns, and all succeed.
    let db = TestDb::new(Engine::Postgres).await;
    let runs = (0..3).map(|_| {
        tokio::process::Command::new(server_bin())
            .arg("migrate")
            .env("SLRGOV_DATABASE_URL", &db.url)
            .output()
    });
    for output in futures::future::join_all(runs).await {
        let output = output.expect("run migrate");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let server = TestServer::start(&db).await;
    let mut c = server.clients().await;
    c.accounts
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .expect("migrated schema serves");

    // On SQLite, `migrate` creates the file.
    let dir = tempfile::tempdir().expect("tempdir");
    let output = tokio::process::Command::new(server_bin())
        .arg("migrate")
        .env("SLRGOV_DATA_DIR", dir.path())
        .env_remove("SLRGOV_DATABASE_URL")
        .output()
        .await
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.path().join("slr-governor.db").exists());
}

#[tokio::test]
async fn unregistered_instances_are_not_found_and_unoffered_rpcs_unimplemented() {
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start(&db).await;
    let mut c = server.clients().await;
    let name = format!(
        "accounts/{}/instances/{}/linkedRole",
        account_id(5),
        instance_id()
    );
    let ensure = refused(
        c.linked_roles
            .ensure_linked_role(pb::EnsureLinkedRoleRequest {
                name: name.clone(),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(
        ensure.code,
        Code::NotFound,
        "ensure of an unregistered instance"
    );
    let got = refused(
        c.linked_roles
            .get_linked_role(pb::GetLinkedRoleRequest { name: name.clone() })
            .await,
    );
    assert_eq!(got.code, Code::NotFound, "GetLinkedRole reads the registry");
    let inspect = refused(
        c.linked_roles
            .inspect_linked_role(pb::InspectLinkedRoleRequest { name: name.clone() })
            .await,
    );
    assert_eq!(
        inspect.code,
        Code::NotFound,
        "inspect of an unregistered instance"
    );
    let retire = refused(
        c.linked_roles
            .retire_linked_role(pb::RetireLinkedRoleRequest {
                name,
                ..Default::default()
            })
            .await,
    );
    assert_eq!(
        retire.code,
        Code::NotFound,
        "retire of an unregistered instance"
    );
    let malformed = refused(
        c.operations
            .get_operation(slrgov_proto::google::longrunning::GetOperationRequest {
                name: "operations/x".into(),
            })
            .await,
    );
    assert_eq!(
        (malformed.code, malformed.fields.clone()),
        (Code::InvalidArgument, vec!["name".to_owned()])
    );
    let missing = refused(
        c.operations
            .get_operation(slrgov_proto::google::longrunning::GetOperationRequest {
                name: format!("operations/{}", instance_id()),
            })
            .await,
    );
    assert_eq!(missing.code, Code::NotFound);
    // Cancelling an operation nobody has is NOT_FOUND; deleting one is
    // not offered.
    let cancel = refused(
        c.operations
            .cancel_operation(slrgov_proto::google::longrunning::CancelOperationRequest {
                name: format!("operations/{}", instance_id()),
            })
            .await,
    );
    assert_eq!(
        (cancel.code, cancel.reason.as_str()),
        (Code::NotFound, "NOT_FOUND")
    );
    let delete = refused(
        c.operations
            .delete_operation(slrgov_proto::google::longrunning::DeleteOperationRequest {
                name: format!("operations/{}", instance_id()),
            })
            .await,
    );
    assert_eq!(
        (delete.code, delete.reason.as_str()),
        (Code::Unimplemented, "NOT_IMPLEMENTED")
    );
}

#[tokio::test]
async fn a_malformed_database_url_fails_fast() {
    // A mistake that waiting will not fix ends the process with the reason,
    // rather than a server that never becomes ready.
    for (url, needle) in [
        ("mysql://db/slrgov", "expected a postgres://"),
        (
            "postgres://postgres@127.0.0.1:5432/test?sslmode=bogus",
            "cannot connect",
        ),
    ] {
        let output = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::process::Command::new(server_bin())
                .env("SLRGOV_LISTEN", "127.0.0.1:0")
                .env("SLRGOV_DATABASE_URL", url)
                .output(),
        )
        .await
        .expect("exits promptly")
        .expect("run");
        assert!(!output.status.success(), "{url}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{url}: {stderr}");
    }
}

/// gRPC compression: a client that sends gzip is understood, and one that
/// accepts gzip is answered in gzip; a client that offers nothing gets
/// plain messages.
#[tokio::test]
async fn gzip_requests_are_accepted_and_answers_compressed_for_clients_that_ask() {
    use slrgov_proto::slrgov::v1::account_service_client::AccountServiceClient;
    use tonic::codec::CompressionEncoding;
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start(&db).await;
    let channel = server.channel().await;
    let mut gzip = AccountServiceClient::new(channel.clone())
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    // A compressible request, sent compressed: a server without gzip would
    // refuse it as UNIMPLEMENTED.
    let long_name = "Contact centre ".repeat(15);
    let created = gzip
        .create_account(pb::CreateAccountRequest {
            account_id: "123456789012".into(),
            account: Some(pb::Account {
                display_name: long_name.trim().to_owned(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("a gzip request is accepted");
    assert_eq!(
        created
            .metadata()
            .get("grpc-encoding")
            .map(|v| v.to_str().ok()),
        Some(Some("gzip")),
        "the answer is compressed for a client that accepts gzip"
    );
    assert_eq!(created.into_inner().display_name, long_name.trim());
    let listed = gzip
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .expect("list");
    assert_eq!(
        listed
            .metadata()
            .get("grpc-encoding")
            .map(|v| v.to_str().ok()),
        Some(Some("gzip"))
    );
    assert_eq!(listed.into_inner().accounts.len(), 1);
    // A client that offers no compression gets plain messages.
    let plain = AccountServiceClient::new(channel)
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .expect("list");
    assert!(plain.metadata().get("grpc-encoding").is_none());
}

/// The database password never reaches the log, at any level, wherever the
/// URL carries it (userinfo or `?password=`): the server logs the URL as
/// user, host, port and database. Postgres here trusts local connections,
/// so the passwords are accepted and ignored.
#[tokio::test]
async fn the_database_password_never_reaches_the_log() {
    let db = TestDb::new(Engine::Postgres).await;
    let (scheme, rest) = db.url.split_once("://").expect("a URL");
    let (userinfo, host) = rest.split_once('@').expect("a user");
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    let url = format!("{scheme}://{user}:Hunter2InUserinfo@{host}?password=Hunter2InQuery");
    let server = TestServer::start_with(
        &db,
        &[("SLRGOV_DATABASE_URL", &url), ("SLRGOV_LOG", "trace")],
    )
    .await;
    let mut c = server.clients().await;
    c.add_account(&account_id(7)).await;
    let log = server.log();
    assert!(log.lines().count() > 100, "a trace-level log");
    for secret in ["Hunter2InUserinfo", "Hunter2InQuery"] {
        let leaks: Vec<&str> = log.lines().filter(|l| l.contains(secret)).take(3).collect();
        assert!(leaks.is_empty(), "{secret} in the log: {leaks:#?}");
    }
    let host_part = host.split('/').next().unwrap_or(host);
    assert!(
        log.contains(&format!("{user}@{host_part}")),
        "the URL is logged without its password"
    );
}
