//! `slr-governor ctl`, the real binary, against a real server on moto:
//! `sync` discovers Connect instances with a progress bar, `ensure-roles`
//! ensures every role (created, adopted, unchanged, failed by reason),
//! `findings` lists what InspectLinkedRole found, `operation` follows an
//! operation; JSON output is one document on stdout; refusals (an unknown
//! account, a viewer ensuring, no token) give the code, the reason and a
//! non-zero exit.

use std::collections::BTreeSet;

use serde_json::Value;

use super::auth_support::{Jwt, Pki, account, tokens_file, with_token, write};
use super::lifecycle_support::{HOME, instance, register, server_with_faults};
use super::support::{Engine, Moto, TestDb, TestServer, account_id, env_refs, server_bin};
use slrgov_proto::slrgov::v1 as pb;

/// What one `ctl` run left.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// stdout as the one JSON document it must be.
    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is one JSON document ({e}): {self:#?}"))
    }
}

/// Runs `slr-governor ctl <args>` against `server` (SLRGOV_CTL_SERVER,
/// which `--server` overrides) with `env`, and none of the caller's own
/// `SLRGOV_CTL_*` settings.
async fn ctl(server: &TestServer, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut command = tokio::process::Command::new(server_bin());
    command
        .arg("ctl")
        .args(args)
        .stdin(std::process::Stdio::null());
    for name in [
        "SLRGOV_CTL_SERVER",
        "SLRGOV_CTL_TOKEN",
        "SLRGOV_CTL_TOKEN_FILE",
        "SLRGOV_CTL_CA",
        "SLRGOV_CTL_CERT",
        "SLRGOV_CTL_KEY",
    ] {
        command.env_remove(name);
    }
    command.env("SLRGOV_CTL_SERVER", server.endpoint());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(180), command.output())
        .await
        .expect("ctl finishes within 3 minutes")
        .expect("run slr-governor ctl");
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[track_caller]
fn ok(ran: &Ran) {
    assert_eq!(ran.code, 0, "ctl succeeds: {ran:#?}");
}

/// IAM slower than `--timeout`: the server, told the deadline, answers
/// UNAVAILABLE with RetryInfo before it passes and goes on in the
/// background; ctl waits as told and asks again with the same request id,
/// and the job ends with the one role, created.
#[tokio::test]
async fn ctl_ensure_rides_out_an_iam_slower_than_its_deadline() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    // CreateServiceLinkedRole fails four times and GetRole is throttled
    // three times: more than one 1.5 s call can wait for.
    let server = server_with_faults(
        &moto,
        &db,
        serde_json::json!({
            "service_failure": {"create_service_linked_role": 4},
            "throttle": {"get_role": 3}
        }),
    )
    .await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let name = instance(&mut c, &moto, HOME, "us-east-1").await;

    let ran = ctl(
        &server,
        &[
            "--timeout",
            "1500ms",
            "--output",
            "json",
            "ensure-roles",
            HOME,
        ],
        &[],
    )
    .await;
    ok(&ran);
    let summary = ran.json();
    assert_eq!(summary["created"], 1, "{summary:#}");
    assert_eq!(summary["failed"], 0, "{summary:#}");
    assert_eq!(summary["results"][0]["name"], name.as_str(), "{summary:#}");
    let roles = moto.connect_roles(&moto.iam(None).await).await;
    assert_eq!(roles.len(), 1, "one role: {roles:?}");
    assert_eq!(
        summary["results"][0]["role_arn"],
        roles[0].1.as_str(),
        "{summary:#}"
    );
    // The first answer was the server's, in time: it went on in the
    // background, and the retry joined it.
    assert!(
        server
            .events()
            .iter()
            .any(|e| e.to_string().contains("continues in the background")),
        "no call was cut short by the server:\n{}",
        server.log()
    );
}

/// `ensure-roles --batch` runs one server-side BatchEnsureLinkedRoles and
/// follows it (`--validate-only` first: nothing changes); `findings
/// --stored` lists what the reconciler stored, with no IAM call.
#[tokio::test]
async fn ctl_batch_ensure_and_stored_findings() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let server =
        TestServer::start_with_moto(&db, &moto, &[("SLRGOV_RECONCILE_INTERVAL", "2s")]).await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    instance(&mut c, &moto, HOME, "us-east-1").await;
    instance(&mut c, &moto, HOME, "eu-west-2").await;

    // --validate-only needs --batch: a usage error.
    let ran = ctl(&server, &["ensure-roles", "--validate-only", HOME], &[]).await;
    assert_eq!(ran.code, 2, "{ran:#?}");

    let ran = ctl(
        &server,
        &[
            "--output",
            "json",
            "ensure-roles",
            "--batch",
            "--validate-only",
            HOME,
        ],
        &[],
    )
    .await;
    ok(&ran);
    let preview = ran.json();
    assert_eq!(
        (
            &preview["validate_only"],
            &preview["created"],
            &preview["total"]
        ),
        (&Value::from(true), &Value::from(2), &Value::from(2)),
        "{preview:#}"
    );
    assert!(moto.connect_roles(&moto.iam(None).await).await.is_empty());

    let ran = ctl(
        &server,
        &["--output", "json", "ensure-roles", "--batch", HOME],
        &[],
    )
    .await;
    ok(&ran);
    let done = ran.json();
    assert_eq!(
        (&done["created"], &done["failed"]),
        (&Value::from(2), &Value::from(0)),
        "{done:#}"
    );
    assert!(
        done["operation"]
            .as_str()
            .expect("operation")
            .starts_with("operations/")
    );
    assert_eq!(moto.connect_roles(&moto.iam(None).await).await.len(), 2);
    let ran = ctl(&server, &["ensure-roles", "--batch", HOME], &[]).await;
    ok(&ran);
    assert!(
        ran.stdout
            .contains("2 done of 2: 0 created, 0 adopted, 0 restored, 2 unchanged, 0 failed"),
        "{ran:#?}"
    );

    // The reconciler's findings (moto's roles carry no policy): stored,
    // listed without inspecting.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let list = loop {
        let ran = ctl(
            &server,
            &[
                "--output",
                "json",
                "findings",
                "--stored",
                "accounts/-",
                "--finding-filter",
                "code = PERMISSION_MISSING AND resolved = false",
            ],
            &[],
        )
        .await;
        ok(&ran);
        let list = ran.json();
        if list.as_array().is_some_and(|l| !l.is_empty()) {
            break list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no stored finding: {ran:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    for entry in list.as_array().expect("a list") {
        assert_eq!(entry["code"], "PERMISSION_MISSING", "{entry:#}");
        assert_eq!(entry["resolve_time"], Value::Null, "{entry:#}");
        assert!(
            entry["name"]
                .as_str()
                .expect("name")
                .starts_with(&format!("accounts/{HOME}/findings/")),
            "{entry:#}"
        );
    }
    let ran = ctl(&server, &["findings", "--stored", HOME], &[]).await;
    ok(&ran);
    assert!(ran.stdout.starts_with("CODE"), "{ran:#?}");
    assert!(ran.stdout.contains("PERMISSION_MISSING"), "{ran:#?}");
}

#[tokio::test]
async fn ctl_sync_ensure_findings_and_operations() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start_with_moto(&db, &moto, &[]).await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    // Two recent instances (Connect made their roles: adopted) and a
    // legacy one (no role: created).
    let sales = moto
        .create_connect_instance(None, "us-east-1", "sales")
        .await;
    let support = moto
        .create_connect_instance(None, "eu-west-2", "support")
        .await;
    let legacy = moto
        .create_connect_instance(None, "us-east-1", "legacy-desk")
        .await;
    let ids: BTreeSet<String> = [&sales, &support, &legacy]
        .iter()
        .map(|i| i.id.clone())
        .collect();

    // sync: the bar counts the regions; the summary the instances.
    let ran = ctl(&server, &["--progress", "always", "sync", HOME], &[]).await;
    ok(&ran);
    assert!(
        ran.stdout
            .starts_with(&format!("synced accounts/{HOME} (operations/")),
        "{ran:#?}"
    );
    assert!(
        ran.stdout
            .contains("3 seen, 3 created, 0 updated, 0 vanished"),
        "{ran:#?}"
    );
    assert!(
        ran.stderr.contains("10/10"),
        "a bar of the 10 regions: {ran:#?}"
    );
    assert!(
        ran.stderr.contains(&format!("sync accounts/{HOME}")),
        "{ran:#?}"
    );

    // ensure-roles, JSON: counts, every role in IAM, the bar on stderr.
    let ran = ctl(
        &server,
        &[
            "--output",
            "json",
            "--progress",
            "always",
            "ensure-roles",
            HOME,
        ],
        &[],
    )
    .await;
    ok(&ran);
    let summary = ran.json();
    assert_eq!(summary["total"], 3, "{summary:#}");
    assert_eq!(
        (
            &summary["created"],
            &summary["adopted"],
            &summary["restored"],
            &summary["failed"]
        ),
        (
            &Value::from(1),
            &Value::from(2),
            &Value::from(0),
            &Value::from(0)
        ),
        "{summary:#}"
    );
    assert!(ran.stderr.contains("3/3"), "the bar: {ran:#?}");
    let results = summary["results"].as_array().expect("results");
    let iam_roles: BTreeSet<String> = moto
        .connect_roles(&moto.iam(None).await)
        .await
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let mut ensured = BTreeSet::new();
    for result in results {
        assert_eq!(result["state"], "ACTIVE", "{result:#}");
        let role = result["role_name"].as_str().expect("role name");
        assert!(iam_roles.contains(role), "{role} is in IAM: {iam_roles:?}");
        let name = result["name"].as_str().expect("name");
        let id = name
            .strip_prefix(&format!("accounts/{HOME}/instances/"))
            .and_then(|rest| rest.strip_suffix("/linkedRole"))
            .expect("a linked role name");
        ensured.insert(id.to_owned());
        let want = if id == legacy.id {
            "created"
        } else {
            "adopted"
        };
        assert_eq!(result["outcome"], want, "{result:#}");
    }
    assert_eq!(ensured, ids);

    // Again, as text without a bar: nothing to do.
    let ran = ctl(&server, &["ensure-roles", &format!("accounts/{HOME}")], &[]).await;
    ok(&ran);
    assert!(
        ran.stdout.contains("ensured 3 linked role(s) of accounts/123456789012: 0 created, 0 adopted, 0 restored, 3 unchanged, 0 failed"),
        "{ran:#?}"
    );
    assert!(
        ran.stderr.is_empty(),
        "no bar when stderr is no terminal: {ran:#?}"
    );

    // findings: a table (moto's roles have no policies), and JSON as a list.
    let ran = ctl(&server, &["findings", HOME], &[]).await;
    ok(&ran);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(lines[0].starts_with("INSTANCE"), "{ran:#?}");
    assert_eq!(lines.len(), 4, "a header and one row each: {ran:#?}");
    for id in &ids {
        let row = lines
            .iter()
            .find(|l| l.contains(id.as_str()))
            .unwrap_or_else(|| panic!("a row of {id}: {ran:#?}"));
        assert!(row.contains("PERMISSION_MISSING"), "{row}");
    }
    let ran = ctl(
        &server,
        &["--output", "json", "findings", "accounts/-"],
        &[],
    )
    .await;
    ok(&ran);
    let list = ran.json();
    let list = list.as_array().expect("a list");
    assert_eq!(list.len(), 3, "{list:#?}");
    for entry in list {
        assert_eq!(entry["error"], Value::Null, "{entry:#}");
        assert_eq!(entry["healthy"], false, "{entry:#}");
        let codes: Vec<&str> = entry["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter_map(|f| f["code"].as_str())
            .collect();
        assert!(codes.contains(&"PERMISSION_MISSING"), "{entry:#}");
    }

    // sync --no-wait prints the operation; operation --wait follows it.
    let ran = ctl(&server, &["sync", "-", "--no-wait"], &[]).await;
    ok(&ran);
    let name = ran.stdout.trim().to_owned();
    assert!(name.starts_with("operations/"), "{ran:#?}");
    let ran = ctl(
        &server,
        &["--output", "json", "operation", &name, "--wait"],
        &[],
    )
    .await;
    ok(&ran);
    let op = ran.json();
    assert_eq!(op["name"], name.as_str());
    assert_eq!(op["done"], true, "{op:#}");
    assert_eq!(op["metadata"]["verb"], "sync", "{op:#}");
    assert_eq!(
        op["response"]["@type"], "slrgov.v1.SyncInstancesResponse",
        "{op:#}"
    );
    assert_eq!(op["response"]["totals"]["instances_seen"], 3, "{op:#}");
    let id = name.trim_start_matches("operations/");
    let ran = ctl(&server, &["operation", id], &[]).await;
    ok(&ran);
    assert!(ran.stdout.contains("verb       sync"), "{ran:#?}");
    assert!(ran.stdout.contains("done       yes"), "{ran:#?}");

    // An instance in a region without Connect: its ensure fails, the others
    // go on; the exit says so, JSON counts it by reason.
    let gated = c.add_instance(HOME, "eu-west-1").await;
    let ran = ctl(&server, &["--output", "json", "ensure-roles", HOME], &[]).await;
    assert_eq!(ran.code, 1, "{ran:#?}");
    let summary = ran.json();
    assert_eq!(summary["total"], 4, "{summary:#}");
    assert_eq!(summary["unchanged"], 3, "{summary:#}");
    assert_eq!(summary["failed"], 1, "{summary:#}");
    assert_eq!(
        summary["failed_by_reason"]["REGION_NOT_SUPPORTED"], 1,
        "{summary:#}"
    );
    let failed: Vec<&Value> = summary["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]["name"]
            .as_str()
            .is_some_and(|n| n.contains(&gated))
    );
    assert_eq!(failed[0]["error"]["code"], "FAILED_PRECONDITION");
    let ran = ctl(&server, &["ensure-roles", HOME], &[]).await;
    assert_eq!(ran.code, 1, "{ran:#?}");
    assert!(
        ran.stdout
            .contains("failed by reason REGION_NOT_SUPPORTED: 1"),
        "{ran:#?}"
    );

    // An unknown account: NOT_FOUND, on stderr and as JSON.
    let ran = ctl(&server, &["ensure-roles", "999999999999"], &[]).await;
    assert_eq!(ran.code, 1, "{ran:#?}");
    assert!(ran.stdout.is_empty(), "{ran:#?}");
    assert!(ran.stderr.contains("NOT_FOUND"), "{ran:#?}");
    assert!(ran.stderr.contains("accounts/999999999999"), "{ran:#?}");
    let ran = ctl(&server, &["--output", "json", "sync", "999999999999"], &[]).await;
    assert_eq!(ran.code, 1, "{ran:#?}");
    assert_eq!(ran.json()["error"]["code"], "NOT_FOUND", "{ran:#?}");
    assert!(ran.stderr.contains("NOT_FOUND"), "{ran:#?}");

    // Usage: no such output; an https server without a CA; nothing listening.
    let ran = ctl(&server, &["--output", "yaml", "sync", HOME], &[]).await;
    assert_eq!(ran.code, 2, "{ran:#?}");
    let ran = ctl(
        &server,
        &["--server", "https://127.0.0.1:1", "sync", HOME],
        &[],
    )
    .await;
    assert_eq!(ran.code, 2, "{ran:#?}");
    assert!(ran.stderr.contains("--ca"), "{ran:#?}");
    let ran = ctl(
        &server,
        &[
            "--output",
            "json",
            "--server",
            "http://127.0.0.1:1",
            "sync",
            HOME,
        ],
        &[],
    )
    .await;
    assert_eq!(ran.code, 2, "{ran:#?}");
    assert!(ran.stderr.contains("cannot connect"), "{ran:#?}");
    assert_eq!(ran.json()["error"]["code"], "USAGE", "{ran:#?}");
}

#[tokio::test]
async fn ctl_with_tokens() {
    let jwt = Jwt::new("eddsa");
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let env = jwt.env();
    let server = TestServer::start_with_moto(&db, &moto, &env_refs(&env)).await;
    let admin = jwt.token("ctl-admin", "admin", &["*"]);
    let operator = jwt.token("ctl-operator", "operator", &[HOME]);
    let viewer = jwt.token("ctl-viewer", "viewer", &[HOME]);
    let mut c = server.clients().await;
    c.accounts
        .create_account(with_token(
            pb::CreateAccountRequest {
                account_id: HOME.into(),
                account: Some(pb::Account::default()),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .expect("account");
    moto.create_connect_instance(None, "us-east-1", "legacy-one")
        .await;
    moto.create_connect_instance(None, "us-east-1", "legacy-two")
        .await;

    // No token: UNAUTHENTICATED, exit 2.
    let ran = ctl(&server, &["sync", HOME], &[]).await;
    assert_eq!(ran.code, 2, "{ran:#?}");
    assert!(ran.stderr.contains("UNAUTHENTICATED"), "{ran:#?}");

    // The operator's token from the environment syncs; from a file ensures.
    let ran = ctl(&server, &["sync", HOME], &[("SLRGOV_CTL_TOKEN", &operator)]).await;
    ok(&ran);
    assert!(ran.stdout.contains("2 seen, 2 created"), "{ran:#?}");
    let dir = tempfile::tempdir().expect("dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{operator}\n")).expect("write");
    let token_file = token_file.display().to_string();
    let ran = ctl(
        &server,
        &[
            "--token-file",
            &token_file,
            "--output",
            "json",
            "ensure-roles",
            HOME,
        ],
        &[],
    )
    .await;
    ok(&ran);
    assert_eq!(ran.json()["created"], 2, "{ran:#?}");
    assert!(!ran.stdout.contains(&operator) && !ran.stderr.contains(&operator));

    // A viewer may inspect but not ensure: PERMISSION_DENIED stops the job.
    let ran = ctl(&server, &["--token", &viewer, "findings", HOME], &[]).await;
    ok(&ran);
    let ran = ctl(&server, &["--token", &viewer, "ensure-roles", HOME], &[]).await;
    assert_eq!(ran.code, 1, "{ran:#?}");
    assert!(ran.stderr.contains("PERMISSION_DENIED"), "{ran:#?}");
    assert!(ran.stdout.is_empty(), "{ran:#?}");
    let ran = ctl(
        &server,
        &["--token", &viewer, "--output", "json", "sync", HOME],
        &[],
    )
    .await;
    assert_eq!(ran.code, 1, "{ran:#?}");
    let error = &ran.json()["error"];
    assert_eq!(error["code"], "PERMISSION_DENIED", "{ran:#?}");
    assert_eq!(error["reason"], "PERMISSION_DENIED", "{ran:#?}");

    // The operator's token does not reach another account: NOT_FOUND.
    let ran = ctl(
        &server,
        &["--token", &operator, "findings", "210987654321"],
        &[],
    )
    .await;
    assert_eq!(ran.code, 1, "{ran:#?}");
    assert!(ran.stderr.contains("NOT_FOUND"), "{ran:#?}");
}

#[tokio::test]
async fn ctl_over_mtls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let (cert, key) = pki.server();
    let a = account_id(7);
    let spiffe = "spiffe://e2e.test/ns/ops/sa/ctl";
    let tokens = tokens_file(
        dir.path(),
        &serde_json::json!([{"name": "ops", "spiffe_id": spiffe, "role": "admin", "accounts": [a]}]),
    );
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem());
    let env = vec![
        ("SLRGOV_TLS_CERT", write(dir.path(), "server.pem", &cert)),
        ("SLRGOV_TLS_KEY", write(dir.path(), "server-key.pem", &key)),
        ("SLRGOV_TLS_CLIENT_CA", ca.clone()),
        ("SLRGOV_AUTH_TOKENS_FILE", tokens.display().to_string()),
    ];
    let (client_cert, client_key) = pki.client(spiffe);
    let client_cert = write(dir.path(), "client.pem", &client_cert);
    let client_key = write(dir.path(), "client-key.pem", &client_key);
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(pki.ca_pem()))
        .domain_name("localhost")
        .identity(tonic::transport::Identity::from_pem(
            std::fs::read(&client_cert).expect("cert"),
            std::fs::read(&client_key).expect("key"),
        ));
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start_tls(&db, &env_refs(&env), tls).await;
    assert!(server.endpoint().starts_with("https://"));
    server
        .clients()
        .await
        .accounts
        .create_account(account(&a))
        .await
        .expect("account");

    // The client certificate is the caller: an account without instances.
    let ran = ctl(
        &server,
        &["--output", "json", "findings", &a],
        &[
            ("SLRGOV_CTL_CA", &ca),
            ("SLRGOV_CTL_CERT", &client_cert),
            ("SLRGOV_CTL_KEY", &client_key),
        ],
    )
    .await;
    ok(&ran);
    assert_eq!(ran.json(), serde_json::json!([]), "{ran:#?}");
    let ran = ctl(
        &server,
        &[
            "--ca",
            &ca,
            "--cert",
            &client_cert,
            "--key",
            &client_key,
            "--tls-server-name",
            "localhost",
            "ensure-roles",
            &a,
        ],
        &[],
    )
    .await;
    ok(&ran);
    assert!(ran.stdout.contains("ensured 0 linked role(s)"), "{ran:#?}");

    // Without a client certificate, or over plaintext: no job.
    let ran = ctl(&server, &["--ca", &ca, "findings", &a], &[]).await;
    assert_ne!(ran.code, 0, "{ran:#?}");
    let plain = format!("http://{}", server.addr);
    let ran = ctl(&server, &["--server", &plain, "findings", &a], &[]).await;
    assert_ne!(ran.code, 0, "{ran:#?}");
    // --cert without --key is a usage error.
    let ran = ctl(
        &server,
        &["--ca", &ca, "--cert", &client_cert, "findings", &a],
        &[],
    )
    .await;
    assert_eq!(ran.code, 2, "{ran:#?}");
    assert!(ran.stderr.contains("--cert and --key"), "{ran:#?}");
}
