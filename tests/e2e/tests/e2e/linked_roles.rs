//! The linked-role lifecycle against moto, with two accounts: the home
//! account of the service's own credentials, and a tenant reached through
//! STS AssumeRole with an external id: ensure, the region gate, the
//! description, adoption, concurrent ensures, inspection, retirement and
//! deletion. The same lifecycle under IAM faults is in `linked_role_faults`.

use slrgov_proto::slrgov::v1 as pb;
use tonic::Code;

use super::lifecycle_support::{
    HOME, TENANT, TwoAccounts, ensure, instance, register, unlisted_instance, wait,
};
use super::support::{
    Engine, Moto, TestDb, TestServer, instance_id, linked_role_name, refused, role_description,
};

async fn lifecycle_against_moto(engine: Engine) {
    let mut two = TwoAccounts::start(engine).await;
    let (c, moto) = (&mut two.c, &two.moto);
    let (home_iam, tenant_iam) = (&two.home_iam, &two.tenant_iam);

    // Ensure creates the role; ensuring again changes nothing.
    let home = instance(c, moto, HOME, "us-east-1").await;
    let first = c.ensure_role(&home).await;
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
    let roles = moto.connect_roles(home_iam).await;
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!(roles[0].1, first.role_arn, "the database's ARN is IAM's");
    let got = c.linked_role(&home).await;
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
    let tenant = instance(c, moto, TENANT, "eu-west-2").await;
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
    assert_eq!(moto.connect_roles(tenant_iam).await.len(), 1);
    assert_eq!(
        moto.connect_roles(home_iam).await.len(),
        1,
        "nothing new in the home account"
    );

    // A region without Connect is refused before any call reaches moto.
    let nowhere = unlisted_instance(c, HOME, "eu-west-1").await;
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
    assert_eq!(
        role_description(home_iam, &first.role_name)
            .await
            .as_deref(),
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
    let adoptee = instance(c, moto, HOME, "ap-southeast-2").await;
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
        moto.connect_roles(home_iam).await.len(),
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
        moto.connect_roles(home_iam).await.len(),
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
    // Two server processes over one Postgres.
    let a = TestServer::start_with_moto(&db, &moto, &[]).await;
    let b = TestServer::start_with_moto(&db, &moto, &[]).await;
    let mut c = a.clients().await;
    register(&mut c, HOME, None).await;
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(instance(&mut c, &moto, HOME, "us-west-2").await);
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
    let server = TestServer::start_with_moto(&db, &moto, &[]).await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    let bot = format!("arn:aws:lex:us-east-1:{HOME}:bot:Booking");
    // A legacy Connect instance: the service creates its role.
    let id = moto
        .create_connect_instance(None, "us-east-1", "legacy-inspected")
        .await
        .id;
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
    let name = linked_role_name(HOME, &id);
    let role = c.ensure_role(&name).await;

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

async fn retirement_and_deletion(engine: Engine) {
    use slrgov_proto::google::longrunning::operation::Result as OpResult;
    let mut two = TwoAccounts::start(engine).await;
    let (c, moto) = (&mut two.c, &two.moto);
    let (home_iam, tenant_iam) = (&two.home_iam, &two.tenant_iam);

    // Retire: the operation ends with the role DELETED, gone from IAM.
    let home = instance(c, moto, HOME, "us-east-1").await;
    let role = c.ensure_role(&home).await;
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
        moto.connect_roles(home_iam).await.len(),
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
    let done = wait(c, &started.name).await;
    let Some(OpResult::Response(any)) = done.result else {
        panic!("expected a response: {done:?}");
    };
    let retired: pb::LinkedRole = prost::Message::decode(any.value.as_slice()).expect("LinkedRole");
    assert_eq!(retired.state, pb::linked_role::State::Deleted as i32);
    assert!(
        moto.connect_roles(home_iam).await.is_empty(),
        "the role is gone from IAM"
    );
    let got = c.linked_role(&home).await;
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
    let tenant = instance(c, moto, TENANT, "eu-west-2").await;
    c.linked_roles
        .ensure_linked_role(ensure(&tenant))
        .await
        .expect("ensure tenant");
    assert_eq!(moto.connect_roles(tenant_iam).await.len(), 1);
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
    let deleted = wait(c, &deleting.name).await;
    assert!(
        matches!(&deleted.result, Some(OpResult::Response(any)) if any.type_url.ends_with("google.protobuf.Empty")),
        "{deleted:?}"
    );
    assert!(moto.connect_roles(tenant_iam).await.is_empty());
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
