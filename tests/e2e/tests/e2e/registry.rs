//! The account and instance registry through the public API, on both
//! engines.

use slrgov_proto::google::longrunning::operation;
use slrgov_proto::slrgov::v1 as pb;
use tonic::Code;

use super::support::{Engine, TestDb, TestServer, account_id, instance_id, refused};

fn lex_bot(account: &str, name: &str) -> String {
    format!("arn:aws:lex:us-east-1:{account}:bot:{name}")
}

async fn registry_round_trip(engine: Engine) {
    let db = TestDb::new(engine).await;
    let server = TestServer::start(&db).await;
    let mut c = server.clients().await;
    let account = account_id(1);

    // Create and read back an account.
    let created = c
        .accounts
        .create_account(pb::CreateAccountRequest {
            account_id: account.clone(),
            account: Some(pb::Account {
                display_name: "Contact centre prod".into(),
                access_role_arn: format!("arn:aws:iam::{account}:role/SlrGovernor"),
                external_id: "s3cret-external-id".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create account")
        .into_inner();
    assert_eq!(created.name, format!("accounts/{account}"));
    assert_eq!(created.partition, "aws");
    assert!(
        created.external_id.is_empty(),
        "the external id is write-only"
    );
    assert!(created.external_id_set);
    let got = c
        .accounts
        .get_account(pb::GetAccountRequest {
            name: created.name.clone(),
        })
        .await
        .expect("get account")
        .into_inner();
    assert_eq!(got, created);

    // Register two instances, one with features.
    let first = instance_id();
    let second = instance_id();
    let features = pb::InstanceFeatures {
        call_recordings_bucket: "amazon-connect-recordings-1".into(),
        lex_bots: vec![lex_bot(&account, "Booking")],
        kinesis_streams: vec![format!("arn:aws:kinesis:us-east-1:{account}:stream/ctr")],
        flow_logs_log_group: "/aws/connect/prod".into(),
        outbound_campaigns: true,
        ..Default::default()
    };
    let one = c
        .instances
        .create_instance(pb::CreateInstanceRequest {
            parent: created.name.clone(),
            instance_id: first.clone(),
            instance: Some(pb::Instance {
                instance_alias: "prod-east".into(),
                region: "us-east-1".into(),
                features: Some(features.clone()),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create instance")
        .into_inner();
    assert_eq!(one.name, format!("accounts/{account}/instances/{first}"));
    assert_eq!(one.features.as_ref(), Some(&features));
    assert_eq!(one.linked_role_state, pb::linked_role::State::Absent as i32);
    c.instances
        .create_instance(pb::CreateInstanceRequest {
            parent: created.name.clone(),
            instance_id: second.clone(),
            instance: Some(pb::Instance {
                region: "eu-west-2".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create second instance");
    let again = refused(
        c.instances
            .create_instance(pb::CreateInstanceRequest {
                parent: created.name.clone(),
                instance_id: first.clone(),
                instance: Some(pb::Instance {
                    region: "us-east-1".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await,
    );
    assert_eq!(
        (again.code, again.reason.as_str()),
        (Code::AlreadyExists, "ALREADY_EXISTS")
    );

    // Filters and the cross-account parent.
    let east = c
        .instances
        .list_instances(pb::ListInstancesRequest {
            parent: "accounts/-".into(),
            filter: r#"region = "us-east-1" AND linked_role_state = ABSENT"#.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        east.instances
            .iter()
            .map(|i| i.instance_id.clone())
            .collect::<Vec<_>>(),
        vec![first.clone()]
    );
    let all = c
        .instances
        .list_instances(pb::ListInstancesRequest {
            parent: created.name.clone(),
            ..Default::default()
        })
        .await
        .expect("list all")
        .into_inner();
    assert_eq!(all.instances.len(), 2);
    assert!(all.next_page_token.is_empty());

    // Update with a mask: only the masked feature changes; a stale etag is refused.
    let updated = c
        .instances
        .update_instance(pb::UpdateInstanceRequest {
            instance: Some(pb::Instance {
                name: one.name.clone(),
                etag: one.etag.clone(),
                instance_alias: "ignored-not-in-mask".into(),
                features: Some(pb::InstanceFeatures {
                    lex_bots: vec![lex_bot(&account, "Booking"), lex_bot(&account, "Billing")],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["features.lex_bots".into()],
            }),
            request_id: String::new(),
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.instance_alias, "prod-east");
    let updated_features = updated.features.clone().expect("features");
    assert_eq!(updated_features.lex_bots.len(), 2);
    assert_eq!(
        updated_features.call_recordings_bucket,
        "amazon-connect-recordings-1"
    );
    assert_ne!(updated.etag, one.etag);
    let stale = refused(
        c.instances
            .update_instance(pb::UpdateInstanceRequest {
                instance: Some(pb::Instance {
                    name: one.name.clone(),
                    etag: one.etag.clone(),
                    instance_alias: "late".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["instance_alias".into()],
                }),
                request_id: String::new(),
            })
            .await,
    );
    assert_eq!(
        (stale.code, stale.reason.as_str()),
        (Code::Aborted, "ETAG_MISMATCH")
    );
    let unchanged = c
        .instances
        .get_instance(pb::GetInstanceRequest {
            name: one.name.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(unchanged, updated, "a refused update changes nothing");

    // The account cannot go while it has instances.
    let busy = refused(
        c.accounts
            .delete_account(pb::DeleteAccountRequest {
                name: created.name.clone(),
                etag: String::new(),
            })
            .await,
    );
    assert_eq!(
        (busy.code, busy.reason.as_str()),
        (Code::FailedPrecondition, "ACCOUNT_HAS_INSTANCES")
    );

    // Deleting instances without a role completes at once.
    for name in [
        one.name.clone(),
        format!("accounts/{account}/instances/{second}"),
    ] {
        let op = c
            .instances
            .delete_instance(pb::DeleteInstanceRequest {
                name: name.clone(),
                etag: String::new(),
                request_id: String::new(),
            })
            .await
            .expect("delete instance")
            .into_inner();
        assert!(op.done);
        assert!(op.name.starts_with("operations/"));
        match op.result {
            Some(operation::Result::Response(any)) => {
                assert_eq!(any.type_url, "type.googleapis.com/google.protobuf.Empty");
            }
            other => panic!("expected an Empty response, got {other:?}"),
        }
        let gone = refused(
            c.instances
                .get_instance(pb::GetInstanceRequest { name })
                .await,
        );
        assert_eq!(gone.code, Code::NotFound);
    }
    c.accounts
        .delete_account(pb::DeleteAccountRequest {
            name: created.name.clone(),
            etag: created.etag.clone(),
        })
        .await
        .expect("delete account");
    let listed = c
        .accounts
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .expect("list accounts")
        .into_inner();
    assert!(listed.accounts.is_empty());
}

#[tokio::test]
async fn registry_round_trip_sqlite() {
    registry_round_trip(Engine::Sqlite).await;
}

#[tokio::test]
async fn registry_round_trip_postgres() {
    registry_round_trip(Engine::Postgres).await;
}

async fn request_ids_replay_the_first_response(engine: Engine) {
    let db = TestDb::new(engine).await;
    let server = TestServer::start(&db).await;
    let mut c = server.clients().await;
    let account = account_id(2);
    c.add_account(&account).await;
    let id = instance_id();
    let request = pb::CreateInstanceRequest {
        parent: format!("accounts/{account}"),
        instance_id: id.clone(),
        instance: Some(pb::Instance {
            region: "ap-southeast-2".into(),
            ..Default::default()
        }),
        request_id: "b3c1f7a2-retry-key".into(),
    };
    let first = c
        .instances
        .create_instance(request.clone())
        .await
        .expect("first")
        .into_inner();
    // Change the instance, then retry: the first response comes back.
    c.instances
        .update_instance(pb::UpdateInstanceRequest {
            instance: Some(pb::Instance {
                name: first.name.clone(),
                instance_alias: "renamed".into(),
                ..Default::default()
            }),
            update_mask: None,
            request_id: String::new(),
        })
        .await
        .expect("update");
    let replay = c
        .instances
        .create_instance(request.clone())
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(replay, first);

    let mut different = request.clone();
    different.instance_id = instance_id();
    let reused = refused(c.instances.create_instance(different).await);
    assert_eq!(
        (reused.code, reused.reason.as_str(), reused.fields.clone()),
        (
            Code::InvalidArgument,
            "REQUEST_ID_REUSED",
            vec!["request_id".to_owned()]
        )
    );
}

#[tokio::test]
async fn request_ids_replay_the_first_response_sqlite() {
    request_ids_replay_the_first_response(Engine::Sqlite).await;
}

#[tokio::test]
async fn request_ids_replay_the_first_response_postgres() {
    request_ids_replay_the_first_response(Engine::Postgres).await;
}

#[tokio::test]
async fn pages_cover_every_instance_once() {
    let db = TestDb::new(Engine::Postgres).await;
    let server = TestServer::start(&db).await;
    let mut c = server.clients().await;
    let mut expected = Vec::new();
    for n in 0..3 {
        let account = account_id(10 + n);
        c.add_account(&account).await;
        for _ in 0..4 {
            let id = c.add_instance(&account, "us-west-2").await;
            expected.push(format!("accounts/{account}/instances/{id}"));
        }
    }
    expected.sort();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .instances
            .list_instances(pb::ListInstancesRequest {
                parent: "accounts/-".into(),
                page_size: 5,
                page_token: token.clone(),
                filter: String::new(),
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.instances.len() <= 5);
        seen.extend(page.instances.into_iter().map(|i| i.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn regions_list_the_connect_table() {
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start(&db).await;
    let mut c = server.clients().await;
    let mut codes = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .regions
            .list_regions(pb::ListRegionsRequest {
                page_size: 4,
                page_token: token.clone(),
            })
            .await
            .expect("regions")
            .into_inner();
        codes.extend(
            page.regions
                .iter()
                .map(|r| (r.region_code.clone(), r.partition.clone())),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(codes.len(), 11);
    assert!(codes.contains(&("us-gov-west-1".to_owned(), "aws-us-gov".to_owned())));
    assert!(codes.contains(&("eu-west-2".to_owned(), "aws".to_owned())));
    let missing = c
        .regions
        .get_region(pb::GetRegionRequest {
            name: "regions/eu-west-1".into(),
        })
        .await
        .expect("get region")
        .into_inner();
    assert!(!missing.connect_available);
}
