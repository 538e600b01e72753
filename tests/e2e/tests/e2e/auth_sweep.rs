//! The authorization sweep: every RPC of every `slrgov.*` service and of
//! `google.longrunning.Operations`, found in the descriptor set the server
//! itself serves, so a new RPC joins the sweep (and fails it until it is
//! added to `auth_sweep_support::METHODS` with its role and a valid
//! request).
//!
//! - without valid credentials (none, malformed, another key's signature,
//!   expired, wrong issuer, wrong audience) every method is UNAUTHENTICATED;
//! - a viewer calling a write is PERMISSION_DENIED, and its reads are not;
//! - an operator calling an admin method is PERMISSION_DENIED;
//! - another tenant naming tenant A's resources gets exactly the answer (code,
//!   message, details) it gets for resources of an account nobody has: no
//!   existence leak, and no list shows A's resources;
//! - none of the refused calls reaches AWS (a counting fake endpoint).

use std::collections::BTreeSet;

use prost::Message;
use slrgov_proto::google::longrunning as lro;
use slrgov_proto::slrgov::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

use super::auth_support::{Jwt, assert_not_logged, assert_unauthenticated, now};
use super::auth_sweep_support::{
    FakeAws, METHODS, Need, PENDING, Target, call, discovered_methods, observed, request,
};
use super::support::{Engine, TestDb, TestServer, account_id, aws_env, env_refs, instance_id};

#[tokio::test]
async fn auth_sweep_every_rpc() {
    // The table covers exactly the served methods.
    let discovered = discovered_methods();
    let table: BTreeSet<String> = METHODS.iter().map(|(m, _)| (*m).to_owned()).collect();
    let missing: Vec<_> = discovered.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "methods without a row in METHODS (add their role and a request): {missing:?}"
    );
    let extra: Vec<_> = table
        .difference(&discovered)
        .filter(|m| !PENDING.contains(&m.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "METHODS lists methods the API does not have: {extra:?}"
    );
    let methods: Vec<(&str, Need)> = METHODS
        .iter()
        .copied()
        .filter(|(m, _)| discovered.contains(*m))
        .collect();

    let jwt = Jwt::new("eddsa");
    let stranger_key = Jwt::new("eddsa");
    let aws = FakeAws::start().await;
    let mut env = jwt.env();
    env.extend(aws_env(&aws.url));
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start_with(&db, &env_refs(&env)).await;
    let channel = server.channel().await;

    // 1. No valid credentials: UNAUTHENTICATED, for every method, before
    //    the request is even decoded.
    let claims = |patch: serde_json::Value| {
        let mut claims = Jwt::claims("mallory", "admin", &["*"]);
        for (k, v) in patch.as_object().expect("object") {
            claims[k] = v.clone();
        }
        claims
    };
    let bad_tokens: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("malformed", Some("definitely.not.a-jwt".to_owned())),
        (
            "another key's signature",
            Some(stranger_key.sign_with_kid(&claims(serde_json::json!({})), Some(jwt.kid()))),
        ),
        (
            "expired",
            Some(jwt.sign(&claims(serde_json::json!({"exp": now() - 600})))),
        ),
        (
            "wrong issuer",
            Some(jwt.sign(&claims(
                serde_json::json!({"iss": "https://elsewhere.test"}),
            ))),
        ),
        (
            "wrong audience",
            Some(jwt.sign(&claims(serde_json::json!({"aud": "not-us"})))),
        ),
    ];
    for (method, _) in &methods {
        for (case, token) in &bad_tokens {
            let status = call(&channel, method, Vec::new(), token.as_deref())
                .await
                .expect_err(&format!("{method} with {case}"));
            assert_unauthenticated(&status, token.as_deref().unwrap_or(""));
        }
    }

    // 2. Tenant A: an account, an instance, and an operation (the deletion
    //    of a second instance).
    let a = account_id(101);
    let b = account_id(102);
    let nobody = account_id(103);
    let admin_a = jwt.token("admin-a", "admin", &[&a]);
    let target_a = Target {
        account: a.clone(),
        instance: instance_id(),
        operation: String::new(),
        new_instance: instance_id(),
    };
    call(
        &channel,
        "/slrgov.v1.AccountService/CreateAccount",
        request("/slrgov.v1.AccountService/CreateAccount", &target_a),
        Some(&admin_a),
    )
    .await
    .expect("create A");
    let create_instance = |id: &str| pb::CreateInstanceRequest {
        parent: format!("accounts/{a}"),
        instance_id: id.to_owned(),
        instance: Some(pb::Instance {
            instance_alias: "tenant-a".into(),
            region: "us-east-1".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    };
    call(
        &channel,
        "/slrgov.v1.InstanceService/CreateInstance",
        create_instance(&target_a.instance).encode_to_vec(),
        Some(&admin_a),
    )
    .await
    .expect("create A's instance");
    let doomed = instance_id();
    call(
        &channel,
        "/slrgov.v1.InstanceService/CreateInstance",
        create_instance(&doomed).encode_to_vec(),
        Some(&admin_a),
    )
    .await
    .expect("create A's second instance");
    let operation = lro::Operation::decode(
        call(
            &channel,
            "/slrgov.v1.InstanceService/DeleteInstance",
            pb::DeleteInstanceRequest {
                name: format!("accounts/{a}/instances/{doomed}"),
                ..Default::default()
            }
            .encode_to_vec(),
            Some(&admin_a),
        )
        .await
        .expect("delete A's second instance")
        .as_slice(),
    )
    .expect("an operation");
    let op_id = operation
        .name
        .strip_prefix("operations/")
        .expect("operations/{id}")
        .to_owned();
    let target_a = Target {
        operation: op_id.clone(),
        ..target_a
    };
    let a_before = call(
        &channel,
        "/slrgov.v1.InstanceService/GetInstance",
        request("/slrgov.v1.InstanceService/GetInstance", &target_a),
        Some(&admin_a),
    )
    .await
    .expect("A's instance");

    // 3. Roles: a viewer of every account may read and not write; an
    //    operator may not touch accounts.
    let viewer = jwt.token("viewer", "viewer", &["*"]);
    let operator = jwt.token("operator", "operator", &["*"]);
    let mut reads = Vec::new();
    for (method, need) in &methods {
        let body = request(method, &target_a);
        match need {
            Need::Viewer => reads.push(*method),
            Need::Nobody => {
                let status = call(&channel, method, body, Some(&viewer))
                    .await
                    .expect_err(method);
                assert_eq!(status.code(), Code::Unimplemented, "{method}: {status:?}");
            }
            Need::Operator | Need::Admin => {
                let status = call(&channel, method, body.clone(), Some(&viewer))
                    .await
                    .expect_err(&format!("a viewer called {method}"));
                assert_eq!(
                    status.code(),
                    Code::PermissionDenied,
                    "viewer, {method}: {status:?}"
                );
                println!("viewer, {method}: {}", status.message());
                let info = status.get_details_error_info().expect("ErrorInfo");
                assert_eq!(info.reason, "PERMISSION_DENIED");
                if *need == Need::Admin {
                    let status = call(&channel, method, body, Some(&operator))
                        .await
                        .expect_err(&format!("an operator called {method}"));
                    assert_eq!(
                        status.code(),
                        Code::PermissionDenied,
                        "operator, {method}: {status:?}"
                    );
                }
            }
        }
    }
    assert_eq!(
        aws.count(),
        0,
        "a refused write reached AWS (STS or IAM) before its refusal"
    );

    // 4. Another tenant (an admin of B) naming A's resources learns nothing:
    //    each answer equals the answer about an account nobody has.
    let admin_b = jwt.token("admin-b", "admin", &[&b]);
    let b_target = Target {
        account: b.clone(),
        instance: instance_id(),
        operation: uuid::Uuid::new_v4().to_string(),
        new_instance: instance_id(),
    };
    call(
        &channel,
        "/slrgov.v1.AccountService/CreateAccount",
        request("/slrgov.v1.AccountService/CreateAccount", &b_target),
        Some(&admin_b),
    )
    .await
    .expect("B registers its own account");
    let target_nobody = Target {
        account: nobody.clone(),
        instance: instance_id(),
        operation: uuid::Uuid::new_v4().to_string(),
        new_instance: target_a.new_instance.clone(),
    };
    for (method, _) in &methods {
        let on_a = call(&channel, method, request(method, &target_a), Some(&admin_b)).await;
        let on_nobody = call(
            &channel,
            method,
            request(method, &target_nobody),
            Some(&admin_b),
        )
        .await;
        let seen_a = observed(
            &on_a,
            &[
                (&a, "<account>"),
                (&target_a.instance, "<instance>"),
                (&op_id, "<operation>"),
            ],
        );
        let seen_nobody = observed(
            &on_nobody,
            &[
                (&nobody, "<account>"),
                (&target_nobody.instance, "<instance>"),
                (&target_nobody.operation, "<operation>"),
            ],
        );
        println!("tenant B, {method}: {seen_a}");
        assert_eq!(
            seen_a, seen_nobody,
            "{method}: tenant B can tell A's resources from absent ones"
        );
        if let Ok(bytes) = &on_a {
            let text = String::from_utf8_lossy(bytes);
            for secret in [&a, &target_a.instance, &op_id, &doomed] {
                assert!(
                    !text.contains(secret.as_str()),
                    "{method}: B's answer shows A's {secret}"
                );
            }
        }
        if let Err(status) = &on_a {
            assert!(
                matches!(
                    status.code(),
                    Code::NotFound | Code::Unimplemented | Code::PermissionDenied
                ),
                "{method}: {status:?}"
            );
        }
    }
    assert_eq!(aws.count(), 0, "another tenant's call reached AWS");

    // Nothing of A changed.
    let a_after = call(
        &channel,
        "/slrgov.v1.InstanceService/GetInstance",
        request("/slrgov.v1.InstanceService/GetInstance", &target_a),
        Some(&admin_a),
    )
    .await
    .expect("A's instance is still there");
    assert_eq!(a_before, a_after, "tenant B changed A's instance");

    // 5. The viewer's reads are allowed (the AWS-backed read, Inspect, may
    //    fail on the fake AWS endpoint, but not for lack of a role).
    for method in reads {
        let result = call(&channel, method, request(method, &target_a), Some(&viewer)).await;
        println!("viewer read, {method}: {:?}", result.as_ref().map(Vec::len));
        if let Err(status) = result {
            assert!(
                !matches!(
                    status.code(),
                    Code::PermissionDenied | Code::Unauthenticated | Code::NotFound
                ),
                "a viewer could not read with {method}: {status:?}"
            );
        }
    }
    // The counter works: InspectLinkedRole, allowed, did try AWS.
    assert!(aws.count() > 0, "the fake AWS endpoint saw no call at all");

    // 6. A's audit trail: the viewer's and the operator's refused writes on
    //    A's resources are in it (PERMISSION_DENIED, by principal); nothing
    //    of tenant B's probes is (B could not see A, so nothing landed).
    let trail = call(
        &channel,
        "/slrgov.v1.AuditService/ListAuditEvents",
        pb::ListAuditEventsRequest {
            parent: format!("accounts/{a}"),
            page_size: 1000,
            ..Default::default()
        }
        .encode_to_vec(),
        Some(&admin_a),
    )
    .await
    .expect("A's audit trail");
    let trail = pb::ListAuditEventsResponse::decode(trail.as_slice()).expect("decode");
    let refused_writes = trail
        .audit_events
        .iter()
        .filter(|e| e.principal == "viewer" && e.outcome == "PERMISSION_DENIED")
        .count();
    let writes = methods
        .iter()
        .filter(|(_, need)| matches!(need, Need::Operator | Need::Admin))
        .count();
    assert_eq!(
        refused_writes, writes,
        "every refused write of the viewer is audited: {:#?}",
        trail.audit_events
    );
    assert!(
        trail
            .audit_events
            .iter()
            .any(|e| e.principal == "operator" && e.outcome == "PERMISSION_DENIED")
    );
    assert!(
        trail.audit_events.iter().all(|e| e.principal != "admin-b"),
        "tenant B's probes landed in A's trail"
    );
    for (_, token) in &bad_tokens {
        if let Some(token) = token {
            assert_not_logged(&server, token);
        }
    }
}
