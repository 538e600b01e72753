//! The linked-role lifecycle against moto, with two accounts: the home
//! account of the service's own credentials, and a tenant reached through
//! STS AssumeRole with an external id.

use slrgov_proto::slrgov::v1 as pb;
use tonic::Code;

use super::support::{Clients, Engine, Moto, TestDb, TestServer, instance_id, refused};

const HOME: &str = "123456789012";
const TENANT: &str = "111111111111";

async fn register(c: &mut Clients, account: &str, role: Option<&str>) {
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

async fn instance(c: &mut Clients, account: &str, region: &str) -> String {
    let id = instance_id();
    c.instances
        .create_instance(pb::CreateInstanceRequest {
            parent: format!("accounts/{account}"),
            instance_id: id.clone(),
            instance: Some(pb::Instance {
                region: region.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("instance");
    format!("accounts/{account}/instances/{id}/linkedRole")
}

fn ensure(name: &str) -> pb::EnsureLinkedRoleRequest {
    pb::EnsureLinkedRoleRequest {
        name: name.into(),
        ..Default::default()
    }
}

async fn lifecycle_against_moto(engine: Engine) {
    let moto = Moto::start().await;
    let db = TestDb::new(engine).await;
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(&db, &env).await;
    let mut c = server.clients().await;
    let tenant_role = format!("arn:aws:iam::{TENANT}:role/SlrGovernor");
    register(&mut c, HOME, None).await;
    register(&mut c, TENANT, Some(&tenant_role)).await;
    let home_iam = moto.iam(None).await;
    let tenant_iam = moto.iam(Some(&tenant_role)).await;

    // Ensure creates the role; ensuring again changes nothing.
    let home = instance(&mut c, HOME, "us-east-1").await;
    let first = c
        .linked_roles
        .ensure_linked_role(ensure(&home))
        .await
        .expect("ensure")
        .into_inner();
    assert_eq!(first.state, pb::linked_role::State::Active as i32);
    assert_eq!(first.path, "/aws-service-role/connect.amazonaws.com/");
    assert!(
        first
            .role_arn
            .starts_with(&format!("arn:aws:iam::{HOME}:role/aws-service-role/")),
        "{first:?}"
    );
    assert!(!first.adopted);
    assert!(
        first.description.contains("managed by slr-governor"),
        "{first:?}"
    );
    let second = c
        .linked_roles
        .ensure_linked_role(ensure(&home))
        .await
        .expect("again")
        .into_inner();
    assert_eq!(second, first, "an ACTIVE role is returned unchanged");
    let roles = moto.connect_roles(&home_iam).await;
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!(roles[0].1, first.role_arn, "the database's ARN is IAM's");
    let got = c
        .linked_roles
        .get_linked_role(pb::GetLinkedRoleRequest { name: home.clone() })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got, first);
    let listed = c
        .instances
        .list_instances(pb::ListInstancesRequest {
            parent: format!("accounts/{HOME}"),
            filter: "linked_role_state = ACTIVE".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.instances.len(), 1);

    // The tenant's role is made in the tenant account, through AssumeRole.
    let tenant = instance(&mut c, TENANT, "eu-west-2").await;
    let theirs = c
        .linked_roles
        .ensure_linked_role(ensure(&tenant))
        .await
        .expect("tenant")
        .into_inner();
    assert!(
        theirs.role_arn.contains(&format!(":{TENANT}:")),
        "{theirs:?}"
    );
    assert_eq!(moto.connect_roles(&tenant_iam).await.len(), 1);
    assert_eq!(
        moto.connect_roles(&home_iam).await.len(),
        1,
        "nothing new in the home account"
    );

    // A region without Connect is refused before any call reaches moto.
    let nowhere = instance(&mut c, HOME, "eu-west-1").await;
    let before = moto.requests();
    assert!(
        before > 0,
        "moto's request log is read (the ensures above reached it)"
    );
    let gated = refused(c.linked_roles.ensure_linked_role(ensure(&nowhere)).await);
    assert_eq!(
        (gated.code, gated.reason.as_str()),
        (Code::FailedPrecondition, "REGION_NOT_SUPPORTED")
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        moto.requests(),
        before,
        "no STS or IAM request for an unsupported region"
    );

    // The description is the only edit, etag-checked, and reaches IAM.
    let edited = c
        .linked_roles
        .update_linked_role_description(pb::UpdateLinkedRoleDescriptionRequest {
            name: home.clone(),
            description: "Prod contact centre".into(),
            etag: first.etag.clone(),
            request_id: String::new(),
        })
        .await
        .expect("edit")
        .into_inner();
    assert_eq!(edited.description, "Prod contact centre");
    assert_eq!(edited.role_arn, first.role_arn);
    let in_iam = home_iam
        .get_role()
        .role_name(&first.role_name)
        .send()
        .await
        .expect("get role");
    assert_eq!(
        in_iam.role().and_then(|r| r.description()),
        Some("Prod contact centre")
    );
    let stale = refused(
        c.linked_roles
            .update_linked_role_description(pb::UpdateLinkedRoleDescriptionRequest {
                name: home.clone(),
                description: "late".into(),
                etag: first.etag.clone(),
                request_id: String::new(),
            })
            .await,
    );
    assert_eq!(
        (stale.code, stale.reason.as_str()),
        (Code::Aborted, "ETAG_MISMATCH")
    );

    // A role that already has the instance's name is adopted, not duplicated.
    let adoptee = instance(&mut c, HOME, "ap-southeast-2").await;
    let preview = c
        .linked_roles
        .ensure_linked_role(pb::EnsureLinkedRoleRequest {
            name: adoptee.clone(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .expect("validate only")
        .into_inner();
    assert_eq!(
        preview.state,
        pb::linked_role::State::Absent as i32,
        "validate_only changes nothing"
    );
    let suffix = preview
        .role_name
        .rsplit('_')
        .next()
        .expect("suffix")
        .to_owned();
    assert_eq!(
        moto.connect_roles(&home_iam).await.len(),
        1,
        "validate_only created nothing"
    );
    home_iam
        .create_service_linked_role()
        .aws_service_name("connect.amazonaws.com")
        .custom_suffix(&suffix)
        .send()
        .await
        .expect("made outside the service");
    let adopted = c
        .linked_roles
        .ensure_linked_role(ensure(&adoptee))
        .await
        .expect("adopt")
        .into_inner();
    assert!(adopted.adopted, "{adopted:?}");
    assert!(adopted.role_name.ends_with(&suffix));
    assert_eq!(
        moto.connect_roles(&home_iam).await.len(),
        2,
        "adopted, not a third role"
    );
}

#[tokio::test]
async fn lifecycle_against_moto_sqlite() {
    lifecycle_against_moto(Engine::Sqlite).await;
}

#[tokio::test]
async fn lifecycle_against_moto_postgres() {
    lifecycle_against_moto(Engine::Postgres).await;
}

#[tokio::test]
async fn concurrent_ensures_make_exactly_one_role() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Two server processes over one Postgres.
    let a = TestServer::start_with(&db, &env).await;
    let b = TestServer::start_with(&db, &env).await;
    let mut c = a.clients().await;
    register(&mut c, HOME, None).await;
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(instance(&mut c, HOME, "us-west-2").await);
    }
    let mut calls = Vec::new();
    for name in &names {
        for server in [&a, &b, &a, &b] {
            let mut client = server.clients().await.linked_roles;
            let name = name.clone();
            calls.push(tokio::spawn(async move {
                client
                    .ensure_linked_role(ensure(&name))
                    .await
                    .map(|r| r.into_inner())
            }));
        }
    }
    let mut arns: std::collections::HashMap<String, String> = Default::default();
    for call in calls {
        let role = call.await.expect("join").expect("ensure");
        let name = role.name.clone();
        if let Some(previous) = arns.insert(name.clone(), role.role_arn.clone()) {
            assert_eq!(
                previous, role.role_arn,
                "every ensure of {name} got the same role"
            );
        }
    }
    let roles = moto.connect_roles(&moto.iam(None).await).await;
    assert_eq!(roles.len(), 3, "exactly one role per instance: {roles:?}");
    let mut recorded: Vec<_> = arns.into_values().collect();
    recorded.sort();
    let mut in_iam: Vec<_> = roles.into_iter().map(|(_, arn)| arn).collect();
    in_iam.sort();
    assert_eq!(recorded, in_iam);
}

#[tokio::test]
async fn inspection_evaluates_what_the_features_need() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(&db, &env).await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let bot = format!("arn:aws:lex:us-east-1:{HOME}:bot:Booking");
    let id = instance_id();
    c.instances
        .create_instance(pb::CreateInstanceRequest {
            parent: format!("accounts/{HOME}"),
            instance_id: id.clone(),
            instance: Some(pb::Instance {
                region: "us-east-1".into(),
                features: Some(pb::InstanceFeatures {
                    lex_bots: vec![bot.clone()],
                    call_recordings_bucket: "amazon-connect-recordings-x".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("instance");
    let name = format!("accounts/{HOME}/instances/{id}/linkedRole");
    let role = c
        .linked_roles
        .ensure_linked_role(ensure(&name))
        .await
        .expect("ensure")
        .into_inner();

    // Grant Lex (and nothing for S3) in an inline policy, and drift the
    // description behind the service's back.
    let iam = moto.iam(None).await;
    let document = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["lex:PostContent"], "Resource": bot},
            {"Effect": "Allow", "Action": ["lex:List*"], "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}
        ]
    });
    iam.put_role_policy()
        .role_name(&role.role_name)
        .policy_name("connect-features")
        .policy_document(document.to_string())
        .send()
        .await
        .expect("inline policy");
    iam.update_role_description()
        .role_name(&role.role_name)
        .description("changed by hand")
        .send()
        .await
        .expect("drift");

    let inspection = c
        .linked_roles
        .inspect_linked_role(pb::InspectLinkedRoleRequest { name: name.clone() })
        .await
        .expect("inspect")
        .into_inner();
    use pb::inspection::finding::Code;
    use pb::inspection::permission_check::Decision;
    let decision = |action: &str, resource: &str| {
        inspection
            .permissions
            .iter()
            .find(|p| p.action == action && p.resource == resource)
            .map(|p| (p.decision, p.source_policy.clone()))
            .unwrap_or_else(|| {
                panic!(
                    "{action} on {resource} is checked: {:?}",
                    inspection.permissions
                )
            })
    };
    assert_eq!(
        decision("lex:PostContent", &bot),
        (
            Decision::Allowed as i32,
            "inline:connect-features".to_owned()
        )
    );
    assert_eq!(decision("lex:ListBots", "*").0, Decision::Allowed as i32);
    assert_eq!(
        decision(
            "s3:DeleteObject",
            "arn:aws:s3:::amazon-connect-recordings-x/*"
        )
        .0,
        Decision::ExplicitDeny as i32
    );
    assert_eq!(
        decision("s3:PutObject", "arn:aws:s3:::amazon-connect-recordings-x/*").0,
        Decision::ImplicitDeny as i32
    );
    let codes: Vec<i32> = inspection.findings.iter().map(|f| f.code).collect();
    assert!(
        codes.contains(&(Code::PermissionMissing as i32)),
        "{codes:?}"
    );
    assert!(
        codes.contains(&(Code::DescriptionDrift as i32)),
        "{codes:?}"
    );
    assert!(
        !codes.contains(&(Code::TrustPolicyMismatch as i32)),
        "{codes:?}"
    );
    assert!(!inspection.healthy);
    let observed = inspection.linked_role.expect("observed role");
    assert_eq!(observed.description, "changed by hand");
    assert_eq!(observed.role_arn, role.role_arn);

    // A legacy instance without a role is named as such.
    let legacy = instance_id();
    c.instances
        .create_instance(pb::CreateInstanceRequest {
            parent: format!("accounts/{HOME}"),
            instance_id: legacy.clone(),
            instance: Some(pb::Instance {
                region: "us-east-1".into(),
                instance_create_time: Some(prost_types::Timestamp {
                    seconds: 1_514_764_800, // 2018-01-01
                    nanos: 0,
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("legacy instance");
    let legacy = c
        .linked_roles
        .inspect_linked_role(pb::InspectLinkedRoleRequest {
            name: format!("accounts/{HOME}/instances/{legacy}/linkedRole"),
        })
        .await
        .expect("inspect legacy")
        .into_inner();
    let codes: Vec<i32> = legacy.findings.iter().map(|f| f.code).collect();
    assert!(
        codes.contains(&(Code::LegacyInstanceWithoutRole as i32)),
        "{codes:?}"
    );
    assert!(codes.contains(&(Code::RoleMissing as i32)), "{codes:?}");
    assert!(!legacy.healthy);
}

async fn wait(c: &mut Clients, name: &str) -> slrgov_proto::google::longrunning::Operation {
    let op = c
        .operations
        .wait_operation(slrgov_proto::google::longrunning::WaitOperationRequest {
            name: name.into(),
            timeout: Some(prost_types::Duration {
                seconds: 30,
                nanos: 0,
            }),
        })
        .await
        .expect("wait")
        .into_inner();
    assert!(op.done, "the operation finishes: {op:?}");
    op
}

async fn retirement_and_deletion(engine: Engine) {
    use slrgov_proto::google::longrunning::operation::Result as OpResult;
    let moto = Moto::start().await;
    let db = TestDb::new(engine).await;
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(&db, &env).await;
    let mut c = server.clients().await;
    let tenant_role = format!("arn:aws:iam::{TENANT}:role/SlrGovernor");
    register(&mut c, HOME, None).await;
    register(&mut c, TENANT, Some(&tenant_role)).await;
    let home_iam = moto.iam(None).await;
    let tenant_iam = moto.iam(Some(&tenant_role)).await;

    // Retire: the operation ends with the role DELETED, gone from IAM.
    let home = instance(&mut c, HOME, "us-east-1").await;
    let role = c
        .linked_roles
        .ensure_linked_role(ensure(&home))
        .await
        .expect("ensure")
        .into_inner();
    let preview = c
        .linked_roles
        .retire_linked_role(pb::RetireLinkedRoleRequest {
            name: home.clone(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .expect("validate only")
        .into_inner();
    assert!(preview.done && preview.name.is_empty(), "{preview:?}");
    assert_eq!(
        moto.connect_roles(&home_iam).await.len(),
        1,
        "validate_only deletes nothing"
    );
    let started = c
        .linked_roles
        .retire_linked_role(pb::RetireLinkedRoleRequest {
            name: home.clone(),
            etag: role.etag.clone(),
            ..Default::default()
        })
        .await
        .expect("retire")
        .into_inner();
    assert!(started.name.starts_with("operations/"));
    let done = wait(&mut c, &started.name).await;
    let Some(OpResult::Response(any)) = done.result else {
        panic!("expected a response: {done:?}");
    };
    let retired: pb::LinkedRole = prost::Message::decode(any.value.as_slice()).expect("LinkedRole");
    assert_eq!(retired.state, pb::linked_role::State::Deleted as i32);
    assert!(
        moto.connect_roles(&home_iam).await.is_empty(),
        "the role is gone from IAM"
    );
    let got = c
        .linked_roles
        .get_linked_role(pb::GetLinkedRoleRequest { name: home.clone() })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.state, pb::linked_role::State::Deleted as i32);
    assert!(!got.deletion_task_id.is_empty(), "the task id is kept");
    let again = c
        .operations
        .get_operation(slrgov_proto::google::longrunning::GetOperationRequest {
            name: started.name.clone(),
        })
        .await
        .expect("get operation")
        .into_inner();
    assert!(again.done);
    let listed = c
        .operations
        .list_operations(slrgov_proto::google::longrunning::ListOperationsRequest::default())
        .await
        .expect("list operations")
        .into_inner();
    assert!(listed.operations.iter().any(|o| o.name == started.name));

    // DeleteInstance retires the role, then removes the record.
    let tenant = instance(&mut c, TENANT, "eu-west-2").await;
    c.linked_roles
        .ensure_linked_role(ensure(&tenant))
        .await
        .expect("ensure tenant");
    assert_eq!(moto.connect_roles(&tenant_iam).await.len(), 1);
    let instance_name = tenant.trim_end_matches("/linkedRole").to_owned();
    let deleting = c
        .instances
        .delete_instance(pb::DeleteInstanceRequest {
            name: instance_name.clone(),
            ..Default::default()
        })
        .await
        .expect("delete instance")
        .into_inner();
    let deleted = wait(&mut c, &deleting.name).await;
    assert!(
        matches!(&deleted.result, Some(OpResult::Response(any)) if any.type_url.ends_with("google.protobuf.Empty")),
        "{deleted:?}"
    );
    assert!(moto.connect_roles(&tenant_iam).await.is_empty());
    let gone = refused(
        c.instances
            .get_instance(pb::GetInstanceRequest {
                name: instance_name,
            })
            .await,
    );
    assert_eq!(gone.code, Code::NotFound);
}

#[tokio::test]
async fn retirement_and_deletion_sqlite() {
    retirement_and_deletion(Engine::Sqlite).await;
}

#[tokio::test]
async fn retirement_and_deletion_postgres() {
    retirement_and_deletion(Engine::Postgres).await;
}

#[tokio::test]
async fn a_refused_deletion_reports_what_uses_the_role() {
    use slrgov_proto::google::longrunning::operation::Result as OpResult;
    use tonic_types::StatusExt;
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    let plan = serde_json::json!({
        "deletion_in_progress_polls": 2,
        "deletion_outcome": {"failed": {
            "reason": "The role is in use by an Amazon Connect instance",
            "usage": [{"region": "us-east-1", "resources": ["arn:aws:connect:us-east-1:123456789012:instance/in-use"]}]
        }}
    })
    .to_string();
    let mut env = moto.env();
    env.push(("SLRGOV_TEST_IAM_FAULTS", plan));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(&db, &env).await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let name = instance(&mut c, HOME, "us-east-1").await;
    c.linked_roles
        .ensure_linked_role(ensure(&name))
        .await
        .expect("ensure");
    let mut operations = Vec::new();
    for _ in 0..2 {
        // A later retire may try again: each attempt is its own operation.
        let started = c
            .linked_roles
            .retire_linked_role(pb::RetireLinkedRoleRequest {
                name: name.clone(),
                ..Default::default()
            })
            .await
            .expect("retire")
            .into_inner();
        let done = wait(&mut c, &started.name).await;
        let Some(OpResult::Error(status)) = done.result else {
            panic!("expected an error: {done:?}");
        };
        assert_eq!(status.code, Code::FailedPrecondition as i32);
        let status = tonic::Status::with_error_details_vec(
            Code::FailedPrecondition,
            status.message.clone(),
            status
                .details
                .iter()
                .filter_map(|d| match d.type_url.as_str() {
                    "type.googleapis.com/google.rpc.ErrorInfo" => {
                        prost::Message::decode(d.value.as_slice()).ok().map(
                            |i: slrgov_proto::google::rpc::ErrorInfo| {
                                tonic_types::ErrorDetail::ErrorInfo(tonic_types::ErrorInfo::new(
                                    i.reason, i.domain, i.metadata,
                                ))
                            },
                        )
                    }
                    "type.googleapis.com/google.rpc.PreconditionFailure" => {
                        prost::Message::decode(d.value.as_slice()).ok().map(
                            |p: slrgov_proto::google::rpc::PreconditionFailure| {
                                tonic_types::ErrorDetail::PreconditionFailure(
                                    tonic_types::PreconditionFailure::new(
                                        p.violations
                                            .into_iter()
                                            .map(|v| {
                                                tonic_types::PreconditionViolation::new(
                                                    v.r#type,
                                                    v.subject,
                                                    v.description,
                                                )
                                            })
                                            .collect::<Vec<_>>(),
                                    ),
                                )
                            },
                        )
                    }
                    _ => None,
                })
                .collect::<Vec<_>>(),
        );
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "ROLE_IN_USE");
        assert_eq!(info.domain, "slrgov.v1");
        let failure = status
            .get_details_precondition_failure()
            .expect("PreconditionFailure");
        assert_eq!(
            failure.violations[0].subject,
            "arn:aws:connect:us-east-1:123456789012:instance/in-use"
        );
        assert!(status.message().contains("in use"), "{}", status.message());
        operations.push(started.name);
    }
    assert_ne!(operations[0], operations[1]);
    let role = c
        .linked_roles
        .get_linked_role(pb::GetLinkedRoleRequest { name: name.clone() })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(role.state, pb::linked_role::State::DeletionFailed as i32);
    let failure = role.deletion_failure.expect("deletion failure recorded");
    assert_eq!(failure.role_usage[0].region, "us-east-1");
    assert_eq!(
        moto.connect_roles(&moto.iam(None).await).await.len(),
        1,
        "the role is still in IAM"
    );
}

async fn server_with_faults(moto: &Moto, db: &TestDb, plan: serde_json::Value) -> TestServer {
    let mut env = moto.env();
    env.push(("SLRGOV_TEST_IAM_FAULTS", plan.to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestServer::start_with(db, &env).await
}

#[tokio::test]
async fn ensure_rides_out_throttling_and_eventual_consistency() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let server = server_with_faults(
        &moto,
        &db,
        serde_json::json!({
            "real_name_taken": true,
            "throttle": {"create_service_linked_role": 2, "get_role": 1},
            "service_failure": {"list_roles": 1},
            "invisible_after_create_ms": 1500
        }),
    )
    .await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let name = instance(&mut c, HOME, "us-east-1").await;
    let role = c
        .linked_roles
        .ensure_linked_role(ensure(&name))
        .await
        .expect("ensure")
        .into_inner();
    assert_eq!(role.state, pb::linked_role::State::Active as i32);
    assert!(!role.adopted);
    let roles = moto.connect_roles(&moto.iam(None).await).await;
    assert_eq!(
        roles.len(),
        1,
        "throttling and invisibility never make a second role: {roles:?}"
    );
    assert_eq!(roles[0].1, role.role_arn);
    assert!(
        server.log().contains("iam call retried"),
        "the retries are visible in the log"
    );
}

#[tokio::test]
async fn a_refused_suffix_falls_back_and_never_takes_another_instances_role() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    let server = server_with_faults(&moto, &db, serde_json::json!({"refuse_suffix": true})).await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let first = instance(&mut c, HOME, "us-east-1").await;
    let role = c
        .linked_roles
        .ensure_linked_role(ensure(&first))
        .await
        .expect("ensure")
        .into_inner();
    assert_eq!(role.state, pb::linked_role::State::Active as i32);
    // The only name left without a suffix is the first instance's role.
    let second = instance(&mut c, HOME, "us-east-1").await;
    let elsewhere = refused(c.linked_roles.ensure_linked_role(ensure(&second)).await);
    assert_eq!(
        (elsewhere.code, elsewhere.reason.as_str()),
        (Code::FailedPrecondition, "ROLE_OWNED_ELSEWHERE")
    );
    let state = c
        .linked_roles
        .get_linked_role(pb::GetLinkedRoleRequest { name: second })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        state.state,
        pb::linked_role::State::Absent as i32,
        "nothing half-written"
    );
    assert_eq!(moto.connect_roles(&moto.iam(None).await).await.len(), 1);
}

#[tokio::test]
async fn a_failure_at_each_iam_step_leaves_a_state_the_next_attempt_completes() {
    use slrgov_proto::google::longrunning::operation::Result as OpResult;
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    // Each step fails more often than one attempt retries (6 calls), so the
    // attempt gives up there; the next attempt (or the background worker)
    // must complete from the recorded state.
    let server = server_with_faults(
        &moto,
        &db,
        serde_json::json!({
            "service_failure": {
                "create_service_linked_role": 6,
                "delete_service_linked_role": 2,
                "deletion_status": 2
            },
            "throttle": {"get_role": 6}
        }),
    )
    .await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let name = instance(&mut c, HOME, "us-east-1").await;

    // Step "create" fails: IAM_UNAVAILABLE with RetryInfo, nothing recorded
    // as ACTIVE, nothing made in IAM.
    let failed = refused(c.linked_roles.ensure_linked_role(ensure(&name)).await);
    assert_eq!(
        (failed.code, failed.reason.as_str()),
        (Code::Unavailable, "IAM_UNAVAILABLE")
    );
    assert!(moto.connect_roles(&moto.iam(None).await).await.is_empty());
    // Step "confirm" fails next (GetRole throttled 6 times) after the
    // create succeeded: the role exists, the record is not ACTIVE yet.
    let failed = refused(c.linked_roles.ensure_linked_role(ensure(&name)).await);
    assert_eq!(failed.reason, "IAM_UNAVAILABLE");
    assert_eq!(moto.connect_roles(&moto.iam(None).await).await.len(), 1);
    let state = c
        .linked_roles
        .get_linked_role(pb::GetLinkedRoleRequest { name: name.clone() })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(state.state, pb::linked_role::State::Creating as i32);
    // The next attempt resumes with the same name: the role made by the
    // failed attempt is recorded, not a second one, and not "adopted".
    let role = c
        .linked_roles
        .ensure_linked_role(ensure(&name))
        .await
        .expect("resumed")
        .into_inner();
    assert_eq!(role.state, pb::linked_role::State::Active as i32);
    assert!(!role.adopted, "the role of an earlier attempt is ours");
    let roles = moto.connect_roles(&moto.iam(None).await).await;
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].1, role.role_arn);

    // Retirement: DeleteServiceLinkedRole and the status poll each fail
    // twice; the worker's next claims complete it.
    let started = c
        .linked_roles
        .retire_linked_role(pb::RetireLinkedRoleRequest {
            name: name.clone(),
            ..Default::default()
        })
        .await
        .expect("retire")
        .into_inner();
    let done = wait(&mut c, &started.name).await;
    assert!(
        matches!(done.result, Some(OpResult::Response(_))),
        "{done:?}"
    );
    assert!(moto.connect_roles(&moto.iam(None).await).await.is_empty());
}

#[tokio::test]
async fn no_usable_credentials_is_a_precondition_not_an_outage() {
    // The test environment carries no AWS credentials of its own; the
    // server gets no file, no metadata service and no keys.
    assert!(
        std::env::var_os("AWS_ACCESS_KEY_ID").is_none(),
        "run the tests without AWS credentials in the environment"
    );
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let env = [
        ("AWS_ENDPOINT_URL", moto.url.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ("AWS_CONFIG_FILE", "/nonexistent/config"),
    ];
    let server = TestServer::start_with(&db, &env).await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let name = instance(&mut c, HOME, "us-east-1").await;
    let refusal = refused(c.linked_roles.ensure_linked_role(ensure(&name)).await);
    assert_eq!(
        (refusal.code, refusal.reason.as_str()),
        (Code::FailedPrecondition, "AWS_CREDENTIALS_UNAVAILABLE"),
        "{refusal:?}"
    );
}

/// The per-account IAM rate limit is on the path of every IAM call: at one
/// call a second, concurrent ensures of three instances queue for their
/// account's tokens (the log says so) and all still succeed with one role
/// each; a rate that is not a positive number stops the server at start.
#[tokio::test]
async fn iam_calls_queue_for_the_accounts_rate_limit() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let mut env = moto.env();
    env.push(("SLRGOV_IAM_RATE_PER_ACCOUNT", "1".to_owned()));
    env.push(("SLRGOV_LOG", "info,slrgov_aws=debug".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(&db, &env).await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(instance(&mut c, HOME, "us-east-1").await);
    }
    let calls: Vec<_> = names
        .iter()
        .map(|name| {
            let mut client = c.linked_roles.clone();
            let request = ensure(name);
            tokio::spawn(async move { client.ensure_linked_role(request).await })
        })
        .collect();
    for call in calls {
        let role = call.await.expect("join").expect("ensure").into_inner();
        assert_eq!(role.state, pb::linked_role::State::Active as i32);
    }
    assert_eq!(moto.connect_roles(&moto.iam(None).await).await.len(), 3);
    let log = server.log();
    assert!(
        log.contains("iam call waits for the account's rate limit"),
        "no IAM call waited at one call a second:\n{log}"
    );

    let output = tokio::process::Command::new(super::support::server_bin())
        .env("SLRGOV_LISTEN", "127.0.0.1:0")
        .env("SLRGOV_DATABASE_URL", &db.url)
        .env("SLRGOV_IAM_RATE_PER_ACCOUNT", "0")
        .output()
        .await
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SLRGOV_IAM_RATE_PER_ACCOUNT"), "{stderr}");
}
