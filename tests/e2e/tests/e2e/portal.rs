//! The example browser portal (`examples/portal`, Connect-ES over gRPC-Web)
//! in a real browser: Debian's Chromium, driven by playwright-core from
//! `examples/portal/tests/portal.test.mjs`, against the real server with
//! JWT authentication and CORS for the page's origin, on moto.
//!
//! This test serves the built page (`examples/portal/dist`) on 127.0.0.1,
//! sets up two tenants, mints tenant A's tokens, and runs the browser script
//! with `node --test`; the script asserts what a person sees. Node, Chromium,
//! `node_modules` and a fresh `dist/` come from `tests/portal/setup.sh`:
//! without them the test fails (it never skips) and names that script.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use slrgov_proto::slrgov::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::auth_support::{Jwt, account, assert_not_logged, with_token};
use super::support::{
    Clients, Engine, HOME, LEGACY_ALIAS_PREFIX, Moto, TestDb, TestServer, env_refs, instance_id,
    linked_role_name, workspace,
};

const SETUP: &str = "tests/portal/setup.sh";

/// Tenant B: an account tenant A's tokens do not name.
const TENANT_B: &str = "111111111111";

fn portal_dir() -> PathBuf {
    workspace().join("examples/portal")
}

/// The browser: `SLRGOV_TEST_CHROMIUM`, or Debian's.
fn chromium() -> PathBuf {
    std::env::var_os("SLRGOV_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Fails the test, naming the setup script.
#[track_caller]
fn missing(what: &str) -> ! {
    panic!("{what}: run {SETUP} (it installs Chromium, runs npm ci and builds the page)")
}

/// The newest modification time of the files under `path` (a file or a
/// directory), leaving out what `skip` names.
fn newest(path: &Path, skip: &[&str]) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let Ok(meta) = std::fs::metadata(path) else {
        return newest;
    };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).expect("read dir").flatten() {
            let name = entry.file_name();
            if skip.iter().any(|s| name == *s) {
                continue;
            }
            newest = newest.max(self::newest(&entry.path(), skip));
        }
    } else if let Ok(modified) = meta.modified() {
        newest = modified;
    }
    newest
}

/// Checks that node, Chromium, the page's node_modules and a build of the
/// page newer than its sources (the protos included) are there.
fn check_setup() {
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        missing("node is not on PATH");
    }
    if !chromium().exists() {
        missing(&format!("{} is missing", chromium().display()));
    }
    let dir = portal_dir();
    if !dir.join("node_modules/playwright-core").is_dir() {
        missing("examples/portal/node_modules is missing");
    }
    let built = dir.join("dist/portal.js");
    let Ok(built_at) = std::fs::metadata(&built).and_then(|m| m.modified()) else {
        missing("examples/portal/dist is not built");
    };
    // The same sources as the setup script's check.
    let mut sources = newest(&workspace().join("proto"), &[]);
    for source in [
        "src",
        "index.html",
        "style.css",
        "package.json",
        "package-lock.json",
        "buf.gen.yaml",
        "tsconfig.json",
    ] {
        sources = sources.max(newest(&dir.join(source), &["gen"]));
    }
    if sources > built_at {
        missing("examples/portal/dist is older than its sources");
    }
}

/// Serves the files of `dir` (flat: the page, its script and style) on
/// 127.0.0.1; returns the origin (`http://127.0.0.1:<port>`).
async fn serve(dir: PathBuf) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let dir = dir.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let path = path.split('?').next().unwrap_or("/");
                let name = match path {
                    "/" => "index.html",
                    other => other.trim_start_matches('/'),
                };
                // Only plain names of files in dist: nothing else is served.
                let safe = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
                    && !name.starts_with('.');
                let file = if safe {
                    tokio::fs::read(dir.join(name)).await.ok()
                } else {
                    None
                };
                let (status, kind, body) = match file {
                    Some(body) => {
                        let kind = match name.rsplit('.').next() {
                            Some("html") => "text/html; charset=utf-8",
                            Some("js") => "text/javascript; charset=utf-8",
                            Some("css") => "text/css; charset=utf-8",
                            _ => "application/octet-stream",
                        };
                        ("200 OK", kind, body)
                    }
                    None => ("404 Not Found", "text/plain", b"not found".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n\
                     cache-control: no-store\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (origin, task)
}

/// Registers a Connect instance (made in moto, a legacy one: the ensure
/// creates its role) of the service's own account and returns its name.
async fn connect_instance(c: &mut Clients, moto: &Moto, token: &str, region: &str) -> String {
    let alias = format!(
        "{LEGACY_ALIAS_PREFIX}portal-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let created = moto.create_connect_instance(None, region, &alias).await;
    register_instance(c, token, HOME, &created.id, region).await
}

/// Registers instance `id` of `account` by hand and returns its name.
async fn register_instance(
    c: &mut Clients,
    token: &str,
    account: &str,
    id: &str,
    region: &str,
) -> String {
    let request = pb::CreateInstanceRequest {
        parent: format!("accounts/{account}"),
        instance_id: id.to_owned(),
        instance: Some(pb::Instance {
            region: region.to_owned(),
            ..Default::default()
        }),
        request_id: String::new(),
    };
    c.instances
        .create_instance(with_token(request, token))
        .await
        .expect("create instance")
        .into_inner()
        .name
}

/// The instance id at the end of an instance's name.
fn id_of(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or_default()
}

#[tokio::test]
async fn portal_in_a_real_browser() {
    check_setup();
    let (origin, page_server) = serve(portal_dir().join("dist")).await;

    let jwt = Jwt::new("eddsa");
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let mut env = jwt.env();
    env.push(("SLRGOV_CORS_ORIGINS", origin.clone()));
    let server = TestServer::start_with_moto(&db, &moto, &env_refs(&env)).await;
    let mut c = server.clients().await;

    // Tenant A: the service's own account (moto's), with a Connect instance
    // the page ensures and retires, and one registered by hand. Tenant B:
    // another account, reached through its access role, with one instance.
    let admin = jwt.token("portal-admin", "admin", &["*"]);
    let mut home = account(HOME);
    home.account = Some(pb::Account::default());
    for request in [home, account(TENANT_B)] {
        c.accounts
            .create_account(with_token(request, &admin))
            .await
            .expect("create account");
    }
    let target = connect_instance(&mut c, &moto, &admin, "eu-west-2").await;
    let by_hand = register_instance(&mut c, &admin, HOME, &instance_id(), "us-east-1").await;
    let hidden = register_instance(&mut c, &admin, TENANT_B, &instance_id(), "eu-west-2").await;

    let operator = jwt.token("alice", "operator", &[HOME]);
    let viewer = jwt.token("victor", "viewer", &[HOME]);
    // A failing step's screenshot; none left from an earlier run.
    let artifacts = workspace().join("target/portal-e2e");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let artifacts = artifacts.canonicalize().expect("artifacts dir");

    let run = tokio::process::Command::new("node")
        .args(["--test", "--test-reporter=spec", "tests/portal.test.mjs"])
        .current_dir(portal_dir())
        .env("PORTAL_URL", format!("{origin}/"))
        .env("SLRGOV_URL", server.endpoint())
        .env("PORTAL_OPERATOR_TOKEN", &operator)
        .env("PORTAL_VIEWER_TOKEN", &viewer)
        .env("PORTAL_INSTANCES", format!("{target},{by_hand}"))
        .env("PORTAL_HIDDEN", &hidden)
        .env("PORTAL_TARGET", &target)
        .env(
            "PORTAL_ARN_PREFIX",
            format!("arn:aws:iam::{HOME}:role/aws-service-role/connect.amazonaws.com/"),
        )
        .env("CHROMIUM", chromium())
        .env("PORTAL_ARTIFACTS", &artifacts)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser test ends within 3 minutes")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "the browser test failed ({}); screenshots in {}\n{stdout}\n{stderr}\nserver log:\n{}",
        output.status,
        artifacts.display(),
        server.log()
    );

    // What the page did, as the service recorded it: the role the operator
    // ensured was retired, in tenant A's account; tenant B's is untouched.
    let role = c
        .linked_roles
        .get_linked_role(with_token(
            pb::GetLinkedRoleRequest {
                name: linked_role_name(HOME, id_of(&target)),
            },
            &admin,
        ))
        .await
        .expect("get linked role")
        .into_inner();
    assert_eq!(role.state(), pb::linked_role::State::Deleted, "{role:?}");
    let other = c
        .linked_roles
        .get_linked_role(with_token(
            pb::GetLinkedRoleRequest {
                name: linked_role_name(TENANT_B, id_of(&hidden)),
            },
            &admin,
        ))
        .await
        .expect("get linked role")
        .into_inner();
    assert_eq!(other.state(), pb::linked_role::State::Absent, "{other:?}");
    assert_not_logged(&server, &operator);
    page_server.abort();
}
