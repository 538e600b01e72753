//! What the linked-role tests against moto (`linked_roles`,
//! `linked_role_faults`) share: the accounts, the requests, the wait for an
//! operation, and servers set up with two accounts or with IAM faults.

use std::time::Duration;

use slrgov_proto::google::longrunning::Operation;
use slrgov_proto::slrgov::v1 as pb;

use super::support::{Clients, Engine, Moto, TestDb, TestServer, linked_role_name};

pub use super::support::HOME;

/// A tenant account, reached through STS AssumeRole with an external id.
pub const TENANT: &str = "111111111111";

/// Registers `account`: with `role`, reached through that access role and
/// an external id; without, with the service's own credentials.
pub async fn register(c: &mut Clients, account: &str, role: Option<&str>) {
    c.accounts
        .create_account(pb::CreateAccountRequest {
            account_id: account.into(),
            account: Some(pb::Account {
                access_role_arn: role.map(str::to_owned).unwrap_or_default(),
                external_id: if role.is_some() {
                    "tenant-external-id".into()
                } else {
                    String::new()
                },
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("account");
}

/// The access role the tests reach `account` through ([`TENANT`]'s), or
/// none (the service's own credentials, [`HOME`]).
pub fn assume_of(account: &str) -> Option<String> {
    (account == TENANT).then(|| format!("arn:aws:iam::{TENANT}:role/SlrGovernor"))
}

/// Creates a legacy Amazon Connect instance of `account` in moto's
/// `region` (Connect names no role for it: an ensure creates the
/// deterministic one), registers it, and returns the name of its linked
/// role.
pub async fn instance(c: &mut Clients, moto: &Moto, account: &str, region: &str) -> String {
    let id = c
        .add_legacy_instance(moto, account, assume_of(account).as_deref(), region)
        .await;
    linked_role_name(account, &id)
}

/// Registers an instance of `account` in `region` by hand, one Amazon
/// Connect does not have (for the region gate, which refuses before any
/// call), and returns the name of its linked role.
pub async fn unlisted_instance(c: &mut Clients, account: &str, region: &str) -> String {
    let id = c.add_instance(account, region).await;
    linked_role_name(account, &id)
}

/// A plain ensure of the linked role `name`.
pub fn ensure(name: &str) -> pb::EnsureLinkedRoleRequest {
    pb::EnsureLinkedRoleRequest {
        name: name.into(),
        ..Default::default()
    }
}

/// Waits up to 30 s for the operation `name`, which must be done by then.
pub async fn wait(c: &mut Clients, name: &str) -> Operation {
    let op = c.wait_operation(name, Duration::from_secs(30)).await;
    assert!(op.done, "the operation finishes: {op:?}");
    op
}

/// A server on moto whose IAM calls go through the fault layer with `plan`
/// (`SLRGOV_TEST_IAM_FAULTS`).
pub async fn server_with_faults(moto: &Moto, db: &TestDb, plan: serde_json::Value) -> TestServer {
    TestServer::start_with_moto(db, moto, &[("SLRGOV_TEST_IAM_FAULTS", &plan.to_string())]).await
}

/// A server on moto with two accounts registered: [`HOME`] (the service's
/// own credentials) and [`TENANT`] (through its access role), and an IAM
/// client of each account.
pub struct TwoAccounts {
    // Dropped in this order: the clients, then the server, the database
    // and moto.
    pub c: Clients,
    pub home_iam: aws_sdk_iam::Client,
    pub tenant_iam: aws_sdk_iam::Client,
    _server: TestServer,
    _db: TestDb,
    pub moto: Moto,
}

impl TwoAccounts {
    pub async fn start(engine: Engine) -> TwoAccounts {
        let moto = Moto::start().await;
        let db = TestDb::new(engine).await;
        let server = TestServer::start_with_moto(&db, &moto, &[]).await;
        let mut c = server.clients().await;
        let tenant_role = format!("arn:aws:iam::{TENANT}:role/SlrGovernor");
        register(&mut c, HOME, None).await;
        register(&mut c, TENANT, Some(&tenant_role)).await;
        let home_iam = moto.iam(None).await;
        let tenant_iam = moto.iam(Some(&tenant_role)).await;
        TwoAccounts {
            c,
            home_iam,
            tenant_iam,
            _server: server,
            _db: db,
            moto,
        }
    }
}

/// Deletes the Connect service-linked role `name` in `iam`'s account, as
/// someone cleaning up by hand would.
pub async fn delete_role(iam: &aws_sdk_iam::Client, name: &str) {
    iam.delete_service_linked_role()
        .role_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("delete {name} in IAM: {e:?}"));
}

/// Makes a Connect service-linked role that no instance uses (suffix
/// `LeftBehind`) in `iam`'s account, and returns its ARN.
pub async fn orphan_role(iam: &aws_sdk_iam::Client) -> String {
    iam.create_service_linked_role()
        .aws_service_name("connect.amazonaws.com")
        .custom_suffix("LeftBehind")
        .send()
        .await
        .expect("an orphan role")
        .role
        .expect("role")
        .arn
}
