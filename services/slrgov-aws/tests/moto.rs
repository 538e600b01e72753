//! The AWS layer against moto (the IAM/STS emulator), with two accounts
//! reached through STS AssumeRole, and the fault-injecting layer around
//! the real client.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use slrgov_aws::faults::{CallLog, DeletionOutcome, FaultPlan, FaultyIam};
use slrgov_aws::iam::{CONNECT_SERVICE, CONNECT_SLR_PATH};
use slrgov_aws::{
    AccessError, AccountTarget, AwsAccess, DeletionStatus, IamApi, IamError, RoleUsage,
};
use slrgov_domain::types::{AccountId, Partition};

/// moto's default account: the one the base credentials belong to.
const HOME: &str = "123456789012";

struct Moto {
    child: std::process::Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_bin() -> PathBuf {
    if let Ok(path) = std::env::var("SLRGOV_TEST_MOTO") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/.venv/bin/moto_server");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("moto_server")
    }
}

async fn moto() -> Moto {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let child = std::process::Command::new(moto_bin())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start moto_server ({}): {e}; run tests/run.sh",
                moto_bin().display()
            )
        });
    let moto = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return moto;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Dropping `moto` kills and reaps the process.
    panic!("moto_server did not start on {}", moto.url);
}

async fn access(moto: &Moto) -> AwsAccess {
    let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&moto.url)
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    AwsAccess::new(base)
}

fn target(account: &str, role: Option<String>) -> AccountTarget {
    AccountTarget {
        account_id: AccountId::parse(account).expect("account"),
        partition: Partition::Aws,
        access_role_arn: role,
        external_id: Some("ext-id-1".into()),
    }
}

#[tokio::test]
async fn acts_only_in_the_account_the_credentials_belong_to() {
    let moto = moto().await;
    let access = access(&moto).await;
    let home = access.iam(&target(HOME, None)).await.expect("home account");
    let tenant = "111111111111";
    let assumed = access
        .iam(&target(
            tenant,
            Some(format!("arn:aws:iam::{tenant}:role/SlrGovernor")),
        ))
        .await
        .expect("assumed into the tenant account");

    // A role made in the tenant account is not in the home account.
    let role = assumed
        .create_service_linked_role(
            CONNECT_SERVICE,
            Some("tenantsuffix"),
            Some("made by the test"),
        )
        .await
        .expect("create in tenant");
    assert!(role.arn.contains(tenant), "{}", role.arn);
    assert_eq!(role.path, CONNECT_SLR_PATH);
    let home_roles = home.list_roles(CONNECT_SLR_PATH).await.expect("list home");
    assert!(home_roles.iter().all(|r| r.role_name != role.role_name));
    let tenant_roles = assumed
        .list_roles(CONNECT_SLR_PATH)
        .await
        .expect("list tenant");
    assert!(tenant_roles.iter().any(|r| r.role_name == role.role_name));

    // Credentials of one account are refused for another.
    let wrong = access
        .iam(&target("222222222222", None))
        .await
        .expect_err("wrong account");
    assert_eq!(
        wrong,
        AccessError::WrongAccount {
            expected: "222222222222".into(),
            actual: HOME.into()
        }
    );
}

#[tokio::test]
async fn the_calls_of_a_linked_role_lifecycle() {
    let moto = moto().await;
    let access = access(&moto).await;
    let iam = access.iam(&target(HOME, None)).await.expect("iam");

    let role = iam
        .create_service_linked_role(CONNECT_SERVICE, Some("lifecycle1"), Some("first"))
        .await
        .expect("create");
    let trust = role.trust_policy.clone().expect("trust policy");
    assert!(trust.contains(CONNECT_SERVICE), "{trust}");
    let again = iam
        .create_service_linked_role(CONNECT_SERVICE, Some("lifecycle1"), None)
        .await
        .expect_err("taken");
    assert!(matches!(again, IamError::NameTaken(_)), "{again:?}");

    let got = iam.get_role(&role.role_name).await.expect("get");
    assert_eq!(got.arn, role.arn);
    let updated = iam
        .update_role_description(&role.role_name, "second")
        .await
        .expect("update");
    assert_eq!(updated.description.as_deref(), Some("second"));
    assert_eq!(
        iam.get_role(&role.role_name)
            .await
            .expect("get")
            .description
            .as_deref(),
        Some("second")
    );
    let policies = iam.role_policies(&role.role_name).await.expect("policies");
    for policy in &policies {
        assert!(
            policy.document.trim_start().starts_with('{'),
            "decoded JSON: {policy:?}"
        );
    }

    let task = iam
        .delete_service_linked_role(&role.role_name)
        .await
        .expect("delete");
    assert!(!task.is_empty());
    assert_eq!(
        iam.deletion_status(&task).await.expect("status"),
        DeletionStatus::Succeeded
    );
    let gone = iam.get_role(&role.role_name).await.expect_err("gone");
    assert!(matches!(gone, IamError::NoSuchEntity(_)), "{gone:?}");
}

#[tokio::test]
async fn the_fault_layer_behaves_like_real_iam() {
    let moto = moto().await;
    let access = access(&moto).await;
    let real = access.iam(&target(HOME, None)).await.expect("iam");
    let log = CallLog::default();
    let plan = FaultPlan {
        real_name_taken: true,
        throttle: [("get_role".to_owned(), 2)].into(),
        invisible_after_create_ms: 1500,
        deletion_in_progress_polls: 2,
        deletion_outcome: Some(DeletionOutcome::Failed {
            reason: "the role is in use".into(),
            usage: vec![RoleUsage {
                region: "us-east-1".into(),
                resources: vec!["arn:aws:connect:us-east-1:123456789012:instance/abc".into()],
            }],
        }),
        ..FaultPlan::default()
    };
    let iam: Arc<dyn IamApi> = Arc::new(FaultyIam::new(real.clone(), plan, log.clone()));

    let role = iam
        .create_service_linked_role(CONNECT_SERVICE, Some("faulty1"), None)
        .await
        .expect("create");
    // Real IAM's InvalidInput "has been taken" is classified as a taken name.
    let taken = iam
        .create_service_linked_role(CONNECT_SERVICE, Some("faulty1"), None)
        .await
        .expect_err("taken");
    assert!(
        matches!(&taken, IamError::NameTaken(m) if m.contains("has been taken")),
        "{taken:?}"
    );
    // Throttled twice, then invisible until the window passes.
    for _ in 0..2 {
        assert!(matches!(
            iam.get_role(&role.role_name).await,
            Err(IamError::Throttled(_))
        ));
    }
    assert!(matches!(
        iam.get_role(&role.role_name).await,
        Err(IamError::NoSuchEntity(_))
    ));
    tokio::time::sleep(Duration::from_millis(1600)).await;
    iam.get_role(&role.role_name)
        .await
        .expect("visible after the window");

    // Deletion: in progress twice, then FAILED with the usage; the role stays.
    let task = iam
        .delete_service_linked_role(&role.role_name)
        .await
        .expect("delete");
    assert!(
        task.starts_with("task/aws-service-role/connect.amazonaws.com/"),
        "{task}"
    );
    assert_eq!(
        iam.delete_service_linked_role(&role.role_name)
            .await
            .expect("again"),
        task
    );
    assert_eq!(
        iam.deletion_status(&task).await.expect("1"),
        DeletionStatus::InProgress
    );
    assert_eq!(
        iam.deletion_status(&task).await.expect("2"),
        DeletionStatus::InProgress
    );
    match iam.deletion_status(&task).await.expect("3") {
        DeletionStatus::Failed { reason, usage } => {
            assert_eq!(reason, "the role is in use");
            assert_eq!(usage[0].region, "us-east-1");
        }
        other => panic!("expected FAILED, got {other:?}"),
    }
    real.get_role(&role.role_name)
        .await
        .expect("the role is still in moto");
    assert_eq!(log.count("get_role"), 4);
    assert_eq!(log.count("create_service_linked_role"), 2);
}

#[tokio::test]
async fn a_refused_suffix_and_a_successful_slow_deletion() {
    let moto = moto().await;
    let access = access(&moto).await;
    let real = access.iam(&target(HOME, None)).await.expect("iam");
    let plan = FaultPlan {
        refuse_suffix: true,
        deletion_in_progress_polls: 1,
        deletion_outcome: Some(DeletionOutcome::Succeeded),
        service_failure: [("list_roles".to_owned(), 1)].into(),
        ..FaultPlan::default()
    };
    let iam = FaultyIam::new(real.clone(), plan, CallLog::default());
    let refused = iam
        .create_service_linked_role(CONNECT_SERVICE, Some("nope"), None)
        .await
        .expect_err("suffix refused");
    assert!(
        matches!(refused, IamError::SuffixNotAllowed(_)),
        "{refused:?}"
    );
    let role = iam
        .create_service_linked_role(CONNECT_SERVICE, None, None)
        .await
        .expect("no suffix");
    assert!(matches!(
        iam.list_roles(CONNECT_SLR_PATH).await,
        Err(IamError::Unavailable(_))
    ));
    assert!(
        iam.list_roles(CONNECT_SLR_PATH)
            .await
            .expect("list")
            .iter()
            .any(|r| r.arn == role.arn)
    );
    let task = iam
        .delete_service_linked_role(&role.role_name)
        .await
        .expect("delete");
    assert_eq!(
        iam.deletion_status(&task).await.expect("1"),
        DeletionStatus::InProgress
    );
    assert_eq!(
        iam.deletion_status(&task).await.expect("2"),
        DeletionStatus::Succeeded
    );
    assert!(matches!(
        real.get_role(&role.role_name).await,
        Err(IamError::NoSuchEntity(_))
    ));
}
