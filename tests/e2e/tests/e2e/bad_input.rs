//! Malformed requests: each is refused with the right code, the ErrorInfo
//! reason (domain `slrgov.v1`) and the violated field, and nothing is
//! written.

use slrgov_proto::slrgov::v1 as pb;
use tonic::Code;

use super::support::{Engine, Refusal, TestDb, TestServer, account_id, instance_id, refused};

#[track_caller]
fn expect(label: &str, got: &Refusal, code: Code, reason: &str, field: Option<&str>) {
    assert_eq!(got.code, code, "{label}: {got:?}");
    assert_eq!(got.reason, reason, "{label}: {got:?}");
    assert_eq!(got.domain, "slrgov.v1", "{label}: {got:?}");
    if let Some(field) = field {
        assert!(
            got.fields.iter().any(|f| f == field),
            "{label}: expected a violation on {field}, got {got:?}"
        );
    }
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

#[tokio::test]
async fn malformed_requests_are_refused_naming_the_field() {
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start(&db).await;
    let mut c = server.clients().await;
    let account = account_id(7);
    let parent = format!("accounts/{account}");
    c.add_account(&account).await;
    let id = instance_id();
    let instance_name = format!("{parent}/instances/{id}");
    let existing = c
        .instances
        .create_instance(pb::CreateInstanceRequest {
            parent: parent.clone(),
            instance_id: id.clone(),
            instance: Some(pb::Instance {
                region: "us-east-1".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("instance")
        .into_inner();

    let create = |instance_id: &str, instance: pb::Instance| pb::CreateInstanceRequest {
        parent: parent.clone(),
        instance_id: instance_id.to_owned(),
        instance: Some(instance),
        request_id: String::new(),
    };
    let region = |r: &str| pb::Instance {
        region: r.into(),
        ..Default::default()
    };
    let with_features = |features: pb::InstanceFeatures| pb::Instance {
        region: "us-east-1".into(),
        features: Some(features),
        ..Default::default()
    };
    let invalid = (Code::InvalidArgument, "INVALID_FIELD");

    let cases: Vec<(&str, pb::CreateInstanceRequest, (Code, &str), &str)> = vec![
        (
            "short account id",
            pb::CreateInstanceRequest {
                parent: "accounts/12345".into(),
                ..create(&instance_id(), region("us-east-1"))
            },
            invalid,
            "parent",
        ),
        (
            "wrong parent shape",
            pb::CreateInstanceRequest {
                parent: format!("{parent}/x"),
                ..create(&instance_id(), region("us-east-1"))
            },
            invalid,
            "parent",
        ),
        (
            "instance id not a uuid",
            create("not-a-uuid", region("us-east-1")),
            invalid,
            "instance_id",
        ),
        (
            "missing region",
            create(&instance_id(), region("")),
            invalid,
            "instance.region",
        ),
        (
            "malformed region",
            create(&instance_id(), region("US_EAST_1")),
            invalid,
            "instance.region",
        ),
        (
            "gov region in a commercial account",
            create(&instance_id(), region("us-gov-west-1")),
            invalid,
            "instance.region",
        ),
        (
            "alias too long",
            create(
                &instance_id(),
                pb::Instance {
                    instance_alias: "a".repeat(63),
                    ..region("us-east-1")
                },
            ),
            invalid,
            "instance.instance_alias",
        ),
        (
            "bad bucket",
            create(
                &instance_id(),
                with_features(pb::InstanceFeatures {
                    call_recordings_bucket: "Not_A_Bucket".into(),
                    ..Default::default()
                }),
            ),
            invalid,
            "instance.features.call_recordings_bucket",
        ),
        (
            "bucket shaped like an ip",
            create(
                &instance_id(),
                with_features(pb::InstanceFeatures {
                    exported_reports_bucket: "192.168.1.1".into(),
                    ..Default::default()
                }),
            ),
            invalid,
            "instance.features.exported_reports_bucket",
        ),
        (
            "lex arn of another service",
            create(
                &instance_id(),
                with_features(pb::InstanceFeatures {
                    lex_bots: vec!["arn:aws:s3:::bucket".into()],
                    ..Default::default()
                }),
            ),
            invalid,
            "instance.features.lex_bots[0]",
        ),
        (
            "lex arn in another partition",
            create(
                &instance_id(),
                with_features(pb::InstanceFeatures {
                    lex_bots: vec![format!("arn:aws-us-gov:lex:us-gov-west-1:{account}:bot:X")],
                    ..Default::default()
                }),
            ),
            invalid,
            "instance.features.lex_bots[0]",
        ),
        (
            "not an arn",
            create(
                &instance_id(),
                with_features(pb::InstanceFeatures {
                    kinesis_streams: vec!["stream/ctr".into()],
                    ..Default::default()
                }),
            ),
            invalid,
            "instance.features.kinesis_streams[0]",
        ),
        (
            "too many firehose streams",
            create(
                &instance_id(),
                with_features(pb::InstanceFeatures {
                    firehose_delivery_streams: (0..17)
                        .map(|n| {
                            format!("arn:aws:firehose:us-east-1:{account}:deliverystream/s{n}")
                        })
                        .collect(),
                    ..Default::default()
                }),
            ),
            invalid,
            "instance.features.firehose_delivery_streams",
        ),
        (
            "bad log group",
            create(
                &instance_id(),
                with_features(pb::InstanceFeatures {
                    flow_logs_log_group: "no spaces allowed".into(),
                    ..Default::default()
                }),
            ),
            invalid,
            "instance.features.flow_logs_log_group",
        ),
        (
            "bad voice id domain",
            create(
                &instance_id(),
                with_features(pb::InstanceFeatures {
                    voice_id_domain: "short".into(),
                    ..Default::default()
                }),
            ),
            invalid,
            "instance.features.voice_id_domain",
        ),
        (
            "timestamp out of range",
            create(
                &instance_id(),
                pb::Instance {
                    instance_create_time: Some(prost_types::Timestamp {
                        seconds: i64::MAX,
                        nanos: 0,
                    }),
                    ..region("us-east-1")
                },
            ),
            invalid,
            "instance.instance_create_time",
        ),
        (
            "bad request id",
            pb::CreateInstanceRequest {
                request_id: "has spaces".into(),
                ..create(&instance_id(), region("us-east-1"))
            },
            invalid,
            "request_id",
        ),
        (
            "body id differs",
            create(
                &instance_id(),
                pb::Instance {
                    instance_id: instance_id(),
                    ..region("us-east-1")
                },
            ),
            invalid,
            "instance.instance_id",
        ),
        (
            "missing instance",
            pb::CreateInstanceRequest {
                instance: None,
                ..create(&instance_id(), region("us-east-1"))
            },
            invalid,
            "instance",
        ),
    ];
    for (label, request, (code, reason), field) in cases {
        let got = refused(c.instances.create_instance(request).await);
        expect(label, &got, code, reason, Some(field));
    }

    // Every bad field of one request is reported at once.
    let many = refused(
        c.instances
            .create_instance(pb::CreateInstanceRequest {
                parent: "accounts/x".into(),
                instance_id: "y".into(),
                instance: Some(region("nowhere")),
                request_id: String::new(),
            })
            .await,
    );
    for field in ["parent", "instance_id", "instance.region"] {
        assert!(
            many.fields.iter().any(|f| f == field),
            "{field} in {many:?}"
        );
    }

    // Accounts.
    let account_cases: Vec<(&str, pb::CreateAccountRequest, &str)> = vec![
        (
            "letters in account id",
            pb::CreateAccountRequest {
                account_id: "12345678901a".into(),
                account: Some(pb::Account::default()),
                request_id: String::new(),
            },
            "account_id",
        ),
        (
            "unknown partition",
            pb::CreateAccountRequest {
                account_id: account_id(8),
                account: Some(pb::Account {
                    partition: "aws-moon".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "account.partition",
        ),
        (
            "role in another account",
            pb::CreateAccountRequest {
                account_id: account_id(8),
                account: Some(pb::Account {
                    access_role_arn: format!("arn:aws:iam::{}:role/R", account_id(9)),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "account.access_role_arn",
        ),
        (
            "role arn of a user",
            pb::CreateAccountRequest {
                account_id: account_id(8),
                account: Some(pb::Account {
                    access_role_arn: format!("arn:aws:iam::{}:user/R", account_id(8)),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "account.access_role_arn",
        ),
        (
            "external id with spaces",
            pb::CreateAccountRequest {
                account_id: account_id(8),
                account: Some(pb::Account {
                    external_id: "has spaces".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "account.external_id",
        ),
        (
            "display name too long",
            pb::CreateAccountRequest {
                account_id: account_id(8),
                account: Some(pb::Account {
                    display_name: "d".repeat(257),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "account.display_name",
        ),
    ];
    for (label, request, field) in account_cases {
        let got = refused(c.accounts.create_account(request).await);
        expect(
            label,
            &got,
            Code::InvalidArgument,
            "INVALID_FIELD",
            Some(field),
        );
        assert!(
            !got.message.contains("has spaces"),
            "{label}: the secret is not echoed"
        );
    }

    // A malformed access role on an account that does not exist: the bad
    // input is reported, not the missing account (and the same for one that
    // exists).
    for account in [account_id(77), account_id(8)] {
        for arn in [
            format!("arn:aws:iam::{}:role/R", account_id(9)),
            format!("arn:aws:iam::{account}:user/R"),
            "not-an-arn".to_owned(),
        ] {
            let got = refused(
                c.accounts
                    .update_account(pb::UpdateAccountRequest {
                        account: Some(pb::Account {
                            name: format!("accounts/{account}"),
                            access_role_arn: arn.clone(),
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["access_role_arn".into()],
                        }),
                    })
                    .await,
            );
            expect(
                &format!("update {account} with {arn}"),
                &got,
                Code::InvalidArgument,
                "INVALID_FIELD",
                Some("account.access_role_arn"),
            );
        }
    }

    // Names, pages, filters, masks, etags.
    let got = refused(
        c.accounts
            .get_account(pb::GetAccountRequest {
                name: "accounts/-".into(),
            })
            .await,
    );
    expect(
        "get with wildcard",
        &got,
        Code::InvalidArgument,
        "INVALID_FIELD",
        Some("name"),
    );
    let got = refused(
        c.instances
            .get_instance(pb::GetInstanceRequest {
                name: format!("{instance_name}/linkedRole"),
            })
            .await,
    );
    expect(
        "instance name with suffix",
        &got,
        Code::InvalidArgument,
        "INVALID_FIELD",
        Some("name"),
    );
    let got = refused(
        c.accounts
            .list_accounts(pb::ListAccountsRequest {
                page_size: -1,
                page_token: String::new(),
            })
            .await,
    );
    expect(
        "negative page size",
        &got,
        Code::InvalidArgument,
        "INVALID_FIELD",
        Some("page_size"),
    );
    let got = refused(
        c.accounts
            .list_accounts(pb::ListAccountsRequest {
                page_size: 1,
                page_token: "bm90LWEtdG9rZW4.AAAA".into(),
            })
            .await,
    );
    expect(
        "forged page token",
        &got,
        Code::InvalidArgument,
        "INVALID_FIELD",
        Some("page_token"),
    );
    for filter in [
        "alias = \"x\"",
        "region = \"us-east-1\" OR region = \"us-west-2\"",
        "linked_role_state = ALIVE",
        "region",
    ] {
        let got = refused(
            c.instances
                .list_instances(pb::ListInstancesRequest {
                    parent: "accounts/-".into(),
                    filter: filter.into(),
                    ..Default::default()
                })
                .await,
        );
        expect(
            filter,
            &got,
            Code::InvalidArgument,
            "INVALID_FIELD",
            Some("filter"),
        );
    }
    let update = |paths: &[&str], etag: &str| pb::UpdateInstanceRequest {
        instance: Some(pb::Instance {
            name: instance_name.clone(),
            etag: etag.into(),
            region: "eu-west-2".into(),
            ..Default::default()
        }),
        update_mask: mask(paths),
        request_id: String::new(),
    };
    let got = refused(c.instances.update_instance(update(&["region"], "")).await);
    expect(
        "region is immutable",
        &got,
        Code::InvalidArgument,
        "INVALID_FIELD",
        Some("update_mask.paths[0]"),
    );
    assert!(got.message.contains("immutable"), "{got:?}");
    let got = refused(
        c.instances
            .update_instance(update(&["instance_alias", "colour"], ""))
            .await,
    );
    expect(
        "unknown mask path",
        &got,
        Code::InvalidArgument,
        "INVALID_FIELD",
        Some("update_mask.paths[1]"),
    );
    let got = refused(
        c.instances
            .update_instance(update(&["instance_alias"], "not-an-etag"))
            .await,
    );
    expect(
        "malformed etag",
        &got,
        Code::InvalidArgument,
        "INVALID_FIELD",
        Some("instance.etag"),
    );
    let got = refused(
        c.instances
            .update_instance(update(&["instance_alias"], "999"))
            .await,
    );
    expect("stale etag", &got, Code::Aborted, "ETAG_MISMATCH", None);
    let got = refused(
        c.instances
            .get_instance(pb::GetInstanceRequest {
                name: format!("{parent}/instances/{}", instance_id()),
            })
            .await,
    );
    expect("missing instance", &got, Code::NotFound, "NOT_FOUND", None);

    // Linked roles: the name of a service-linked role can never change.
    let got = refused(
        c.linked_roles
            .update_linked_role(pb::UpdateLinkedRoleRequest {
                linked_role: Some(pb::LinkedRole {
                    name: format!("{instance_name}/linkedRole"),
                    role_name: "AWSServiceRoleForAmazonConnect_Renamed".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["role_name"]),
                request_id: String::new(),
            })
            .await,
    );
    expect(
        "rename an SLR",
        &got,
        Code::InvalidArgument,
        "SLR_IMMUTABLE",
        Some("linked_role.role_name"),
    );
    assert!(
        got.message.contains("names cannot change") || got.message.contains("cannot be changed"),
        "{got:?}"
    );
    let got = refused(
        c.linked_roles
            .ensure_linked_role(pb::EnsureLinkedRoleRequest {
                name: format!("{instance_name}/linkedRole"),
                description: "d".repeat(1001),
                ..Default::default()
            })
            .await,
    );
    expect(
        "description too long",
        &got,
        Code::InvalidArgument,
        "INVALID_FIELD",
        Some("description"),
    );

    // Nothing was written by any refused request.
    let instances = c
        .instances
        .list_instances(pb::ListInstancesRequest {
            parent: "accounts/-".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .instances;
    assert_eq!(instances, vec![existing]);
    let accounts = c
        .accounts
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .expect("accounts")
        .into_inner()
        .accounts;
    assert_eq!(accounts.len(), 1);
}
