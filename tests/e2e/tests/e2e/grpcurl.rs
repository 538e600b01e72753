//! The real grpcurl binary against the server: what an operator types.

use std::process::Command;

use super::support::{Engine, TestDb, TestServer, account_id, grpcurl, instance_id};

/// Runs `grpcurl -plaintext <data> <server's address> <call...>`: what an
/// operator types, with the body (if any) as `-d`.
fn run(server: &TestServer, data: Option<&str>, call: &[&str]) -> (bool, String) {
    let mut command = Command::new(grpcurl());
    command.arg("-plaintext");
    if let Some(data) = data {
        command.args(["-d", data]);
    }
    let output = command
        .arg(server.addr.to_string())
        .args(call)
        .output()
        .unwrap_or_else(|e| panic!("cannot run grpcurl ({}): {e}", grpcurl().display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn grpcurl_lists_describes_and_creates() {
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start(&db).await;

    let (ok, listed) = run(&server, None, &["list"]);
    assert!(ok, "{listed}");
    for service in [
        "slrgov.v1.AccountService",
        "slrgov.v1.InstanceService",
        "slrgov.v1.LinkedRoleService",
        "slrgov.v1.RegionService",
        "google.longrunning.Operations",
        "grpc.health.v1.Health",
    ] {
        assert!(
            listed.lines().any(|l| l.trim() == service),
            "{service} in {listed}"
        );
    }

    let (ok, described) = run(&server, None, &["describe", "slrgov.v1.InstanceFeatures"]);
    assert!(ok, "{described}");
    assert!(
        described.contains("repeated string lex_bots"),
        "{described}"
    );
    assert!(
        described.contains("ARNs of the Amazon Lex bots"),
        "the proto comments reach grpcurl: {described}"
    );

    let account = account_id(42);
    let body =
        format!(r#"{{"account_id":"{account}","account":{{"display_name":"from grpcurl"}}}}"#);
    let (ok, created) = run(
        &server,
        Some(&body),
        &["slrgov.v1.AccountService/CreateAccount"],
    );
    assert!(ok, "{created}");
    let created: serde_json::Value = serde_json::from_str(&created).expect("json");
    assert_eq!(created["name"], format!("accounts/{account}"));
    assert_eq!(created["displayName"], "from grpcurl");

    let id = instance_id();
    let body = format!(
        r#"{{"parent":"accounts/{account}","instance_id":"{id}","instance":{{"region":"eu-central-1"}}}}"#
    );
    let (ok, instance) = run(
        &server,
        Some(&body),
        &["slrgov.v1.InstanceService/CreateInstance"],
    );
    assert!(ok, "{instance}");
    let body = r#"{"parent":"accounts/-","filter":"region = \"eu-central-1\""}"#;
    let (ok, listed) = run(
        &server,
        Some(body),
        &["slrgov.v1.InstanceService/ListInstances"],
    );
    assert!(ok, "{listed}");
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(listed["instances"][0]["instanceId"], id);
    assert_eq!(listed["instances"][0]["linkedRoleState"], "ABSENT");

    // A refusal shows its details to the operator.
    let (ok, refused) = run(
        &server,
        Some(r#"{"name":"accounts/nope"}"#),
        &["slrgov.v1.AccountService/GetAccount"],
    );
    assert!(!ok);
    assert!(refused.contains("InvalidArgument"), "{refused}");
    assert!(
        refused.contains("INVALID_FIELD") && refused.contains("\"field\":\"name\""),
        "{refused}"
    );

    let (ok, health) = run(&server, None, &["grpc.health.v1.Health/Check"]);
    assert!(ok && health.contains("SERVING"), "{health}");
}
