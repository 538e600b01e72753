//! Instances: filters, the account-delete precondition, partition checks,
//! masked updates, features round trips, deletes.

use std::sync::Arc;

use chrono::{Duration, Utc};
use slrgov_domain::model::{
    AccountPatch, ExternalIdChange, FeatureField, InstanceFeatures, InstancePatch, LinkedRoleState,
};
use slrgov_domain::names::AccountSelector;
use slrgov_domain::types::{BucketName, InstanceAlias, Partition, Revision};
use slrgov_domain::{Kind, Reason};
use slrgov_store::Store;

use crate::support::*;

pub async fn case_instance_filters(store: Arc<dyn Store>) {
    let ctx = admin();
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    // Created out of order, accounts interleaved.
    let specs = [
        (&b, 5, "us-east-1"),
        (&a, 9, "us-east-1"),
        (&b, 1, "ap-southeast-2"),
        (&a, 2, "eu-west-2"),
        (&a, 4, "us-east-1"),
        (&b, 3, "us-east-1"),
        (&a, 7, "us-west-2"),
    ];
    let mut all = Vec::new();
    for (account, n, region_code) in specs {
        all.push(create_instance(&store, account, &instance_id(n), region_code).await);
    }
    all.sort_by_key(|i| i.key());
    let us_east: Vec<_> = all
        .iter()
        .filter(|i| i.region.as_str() == "us-east-1")
        .cloned()
        .collect();
    assert_eq!(us_east.len(), 4);
    assert!(
        all.iter()
            .all(|i| i.linked_role_state == LinkedRoleState::Absent)
    );

    let list = |parent: AccountSelector, text: &str, size: i32| {
        let store = store.clone();
        let ctx = ctx.clone();
        let filter = filter(text);
        async move { list_instances_all(&store, &ctx, &parent, &filter, size).await }
    };

    // No filter, across accounts: ordered by (account_id, instance_id).
    let everything = list(AccountSelector::All, "", 50).await;
    assert_eq!(everything, all);
    assert_eq!(
        keys(&everything),
        vec![
            key(&a, &instance_id(2)),
            key(&a, &instance_id(4)),
            key(&a, &instance_id(7)),
            key(&a, &instance_id(9)),
            key(&b, &instance_id(1)),
            key(&b, &instance_id(3)),
            key(&b, &instance_id(5)),
        ]
    );

    // region.
    for size in [50, 1, 3] {
        assert_eq!(
            list(AccountSelector::All, r#"region = "us-east-1""#, size).await,
            us_east
        );
    }
    assert_eq!(
        list(
            AccountSelector::One(a.clone()),
            r#"region = "us-east-1""#,
            50
        )
        .await,
        us_east
            .iter()
            .filter(|i| i.account_id == a)
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(
        keys(&list(AccountSelector::All, "region = 'ap-southeast-2'", 50).await),
        vec![key(&b, &instance_id(1))]
    );
    assert!(
        list(AccountSelector::All, r#"region = "eu-central-1""#, 50)
            .await
            .is_empty()
    );
    assert!(
        list(
            AccountSelector::One(b.clone()),
            r#"region = "eu-west-2""#,
            50
        )
        .await
        .is_empty()
    );

    // linked_role_state: every instance starts ABSENT.
    assert_eq!(
        list(AccountSelector::All, "linked_role_state = ABSENT", 2).await,
        all
    );
    for state in ["ACTIVE", "CREATING", "DELETED", "DELETION_FAILED"] {
        let text = format!("linked_role_state = {state}");
        assert!(
            list(AccountSelector::All, &text, 50).await.is_empty(),
            "{state}"
        );
    }

    // Both, ANDed.
    assert_eq!(
        list(
            AccountSelector::All,
            r#"region = "us-east-1" AND linked_role_state = ABSENT"#,
            2
        )
        .await,
        us_east
    );
    assert_eq!(
        list(
            AccountSelector::All,
            r#"linked_role_state = ABSENT AND region = "us-east-1""#,
            50
        )
        .await,
        us_east
    );
    assert!(
        list(
            AccountSelector::All,
            r#"region = "us-east-1" AND linked_role_state = ACTIVE"#,
            50
        )
        .await
        .is_empty()
    );
    assert!(
        list(
            AccountSelector::All,
            r#"region = "us-west-2" AND linked_role_state = ACTIVE"#,
            50
        )
        .await
        .is_empty()
    );
}

pub async fn case_partition_checks(store: Arc<dyn Store>) {
    let ctx = admin();
    let g = account_id(1);
    let gov = store
        .account_create(&ctx, new_account_in(&g, Partition::AwsUsGov), None)
        .await
        .expect("gov account");
    assert_eq!(gov.partition, Partition::AwsUsGov);

    // A commercial region in a GovCloud account.
    let i1 = instance_id(1);
    let error = expect_err(
        store
            .instance_create(&ctx, new_instance(&g, &i1, "us-east-1"), None)
            .await,
        Kind::InvalidArgument,
        Reason::InvalidField,
    );
    assert_violation(&error, "instance.region");
    expect_err(
        store.instance_get(&ctx, &key(&g, &i1)).await,
        Kind::NotFound,
        Reason::NotFound,
    );

    // A Lex bot of the wrong partition.
    let mut new = new_instance(&g, &i1, "us-gov-west-1");
    new.fields.features = full_features(&g, Partition::AwsUsGov, "us-gov-west-1");
    new.fields.features.lex_bots[0] = arn(&format!(
        "arn:aws:lex:us-east-1:{g}:bot-alias/ABCDEFGHIJ/TSTALIASID"
    ));
    let error = expect_err(
        store.instance_create(&ctx, new.clone(), None).await,
        Kind::InvalidArgument,
        Reason::InvalidField,
    );
    assert_violation(&error, "instance.features.lex_bots[0]");
    assert_eq!(error.violations.len(), 1, "{error:?}");
    expect_err(
        store.instance_get(&ctx, &key(&g, &i1)).await,
        Kind::NotFound,
        Reason::NotFound,
    );

    // Several at once: every one named.
    let mut new = new_instance(&g, &i1, "eu-west-1");
    new.fields.features.kinesis_streams = vec![
        arn(&format!(
            "arn:aws-us-gov:kinesis:us-gov-west-1:{g}:stream/ok"
        )),
        arn(&format!("arn:aws-cn:kinesis:cn-north-1:{g}:stream/wrong")),
    ];
    new.fields.features.lex_bots = vec![arn(&format!("arn:aws:lex:us-east-1:{g}:bot:Wrong"))];
    let error = expect_err(
        store.instance_create(&ctx, new, None).await,
        Kind::InvalidArgument,
        Reason::InvalidField,
    );
    assert_violation(&error, "instance.region");
    assert_violation(&error, "instance.features.kinesis_streams[1]");
    assert_violation(&error, "instance.features.lex_bots[0]");
    assert_eq!(error.violations.len(), 3, "{error:?}");
    let listed = list_instances_all(&store, &ctx, &AccountSelector::All, &filter(""), 50).await;
    assert!(listed.is_empty(), "nothing written: {listed:?}");

    // The right partition everywhere: accepted.
    let mut new = new_instance(&g, &i1, "us-gov-west-1");
    new.fields.features = full_features(&g, Partition::AwsUsGov, "us-gov-west-1");
    let created = store
        .instance_create(&ctx, new, None)
        .await
        .expect("gov instance");
    // An update that brings in a commercial ARN is refused too.
    let features = InstanceFeatures {
        firehose_delivery_streams: vec![arn(&format!(
            "arn:aws:firehose:us-east-1:{g}:deliverystream/x"
        ))],
        ..InstanceFeatures::default()
    };
    let error = expect_err(
        store
            .instance_update(
                &ctx,
                &created.key(),
                None,
                InstancePatch {
                    feature_fields: vec![FeatureField::FirehoseDeliveryStreams],
                    features,
                    ..InstancePatch::default()
                },
                None,
            )
            .await,
        Kind::InvalidArgument,
        Reason::InvalidField,
    );
    assert_violation(&error, "instance.features.firehose_delivery_streams[0]");
    assert_eq!(
        store
            .instance_get(&ctx, &created.key())
            .await
            .expect("unchanged"),
        created
    );

    // access_role_arn: in another account, or another partition.
    let c = account_id(2);
    for bad in [
        format!("arn:aws:iam::{}:role/SlrGovernor", account_id(3)),
        format!("arn:aws-us-gov:iam::{c}:role/SlrGovernor"),
        format!("arn:aws:iam::{c}:user/SlrGovernor"),
    ] {
        let mut new = new_account(2);
        new.fields.access_role_arn = Some(arn(&bad));
        let error = expect_err(
            store.account_create(&ctx, new, None).await,
            Kind::InvalidArgument,
            Reason::InvalidField,
        );
        assert_violation(&error, "account.access_role_arn");
        expect_err(
            store.account_get(&ctx, &c).await,
            Kind::NotFound,
            Reason::NotFound,
        );
    }
    let error = expect_err(
        store
            .account_update(
                &ctx,
                &g,
                None,
                AccountPatch {
                    display_name: Some("not applied".into()),
                    access_role_arn: Some(Some(format!(
                        "arn:aws-us-gov:iam::{}:role/SlrGovernor",
                        account_id(3)
                    ))),
                    external_id: ExternalIdChange::Clear,
                },
            )
            .await,
        Kind::InvalidArgument,
        Reason::InvalidField,
    );
    assert_violation(&error, "account.access_role_arn");
    assert_eq!(store.account_get(&ctx, &g).await.expect("unchanged"), gov);
}

pub async fn case_instance_update_mask(store: Arc<dyn Store>) {
    let ctx = admin();
    let a = create_account(&store, 1).await.account_id;
    let features = full_features(&a, Partition::Aws, "eu-west-2");
    let created_at = time("2017-06-01T12:34:56.123456Z");
    let mut new = new_instance(&a, &instance_id(1), "eu-west-2");
    new.fields.instance_alias = Some(InstanceAlias::parse("alpha").expect("alias"));
    new.fields.instance_create_time = Some(created_at);
    new.fields.features = features.clone();

    let before = Utc::now() - Duration::milliseconds(1);
    let created = store
        .instance_create(&ctx, new, None)
        .await
        .expect("create");
    assert_eq!(created.account_id, a);
    assert_eq!(created.instance_id, instance_id(1));
    assert_eq!(created.region.as_str(), "eu-west-2");
    assert_eq!(
        created.instance_alias.as_ref().map(InstanceAlias::as_str),
        Some("alpha")
    );
    assert_eq!(created.instance_create_time, Some(created_at));
    assert!(created.is_legacy());
    assert_eq!(
        created.features, features,
        "every feature field round-trips"
    );
    assert_eq!(created.linked_role_state, LinkedRoleState::Absent);
    assert_eq!(created.revision, Revision(1));
    assert_eq!(created.create_time, created.update_time);
    assert!(created.create_time >= before && created.create_time <= Utc::now());
    let k = created.key();
    assert_eq!(store.instance_get(&ctx, &k).await.expect("get"), created);

    // Only the masked fields change.
    tick().await;
    let new_bot = arn(&format!(
        "arn:aws:lex:eu-west-2:{a}:bot-alias/ZZZZZZZZZZ/PRODALIAS1"
    ));
    let patch = InstancePatch {
        instance_alias: Some(Some(InstanceAlias::parse("beta").expect("alias"))),
        instance_create_time: None,
        feature_fields: vec![FeatureField::LexBots, FeatureField::OutboundCampaigns],
        features: InstanceFeatures {
            lex_bots: vec![new_bot.clone()],
            outbound_campaigns: false,
            // Not in the mask: must be ignored.
            call_recordings_bucket: Some(BucketName::parse("ignored-bucket").expect("bucket")),
            ..InstanceFeatures::default()
        },
    };
    let updated = store
        .instance_update(&ctx, &k, Some(Revision(1)), patch, None)
        .await
        .expect("update");
    let mut want_features = features.clone();
    want_features.lex_bots = vec![new_bot];
    want_features.outbound_campaigns = false;
    assert_eq!(updated.features, want_features);
    assert_eq!(
        updated.instance_alias.as_ref().map(InstanceAlias::as_str),
        Some("beta")
    );
    assert_eq!(
        updated.instance_create_time,
        Some(created_at),
        "not in the mask"
    );
    assert_eq!(updated.region, created.region);
    assert_eq!(updated.linked_role_state, created.linked_role_state);
    assert_eq!(updated.create_time, created.create_time);
    assert!(updated.update_time > created.update_time);
    assert_eq!(updated.revision, Revision(2));
    assert_eq!(store.instance_get(&ctx, &k).await.expect("get"), updated);

    // Each feature field alone.
    let other = full_features(&a, Partition::Aws, "eu-west-2");
    let replacement = InstanceFeatures {
        call_recordings_bucket: Some(BucketName::parse("new-recordings").expect("bucket")),
        exported_reports_bucket: None,
        customer_profiles_domain: None,
        firehose_delivery_streams: vec![],
        kinesis_streams: vec![
            other.kinesis_streams[0].clone(),
            arn(&format!("arn:aws:kinesis:eu-west-2:{a}:stream/second")),
        ],
        lex_bots: vec![],
        flow_logs_log_group: None,
        voice_id_domain: None,
        outbound_campaigns: true,
    };
    let mut current = updated;
    for field in FeatureField::ALL {
        let mut want = current.features.clone();
        want.apply(&replacement, &[field]);
        let next = store
            .instance_update(
                &ctx,
                &k,
                Some(current.revision),
                InstancePatch {
                    feature_fields: vec![field],
                    features: replacement.clone(),
                    ..InstancePatch::default()
                },
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("update {field:?}: {e:?}"));
        assert_eq!(next.features, want, "{field:?}");
        assert_eq!(next.instance_alias, current.instance_alias);
        assert_eq!(next.revision, Revision(current.revision.0 + 1));
        assert_eq!(store.instance_get(&ctx, &k).await.expect("get"), next);
        current = next;
    }
    assert_eq!(current.features, replacement);

    // Clearing the alias and the creation time; a new creation time.
    let cleared = store
        .instance_update(
            &ctx,
            &k,
            None,
            InstancePatch {
                instance_alias: Some(None),
                instance_create_time: Some(None),
                ..InstancePatch::default()
            },
            None,
        )
        .await
        .expect("clear");
    assert_eq!(cleared.instance_alias, None);
    assert_eq!(cleared.instance_create_time, None);
    assert_eq!(cleared.features, replacement, "no feature in the mask");
    assert_eq!(store.instance_get(&ctx, &k).await.expect("get"), cleared);
    let later = time("2021-03-04T05:06:07.000001Z");
    let dated = store
        .instance_update(
            &ctx,
            &k,
            None,
            InstancePatch {
                instance_create_time: Some(Some(later)),
                ..InstancePatch::default()
            },
            None,
        )
        .await
        .expect("date");
    assert_eq!(dated.instance_create_time, Some(later));
    assert!(!dated.is_legacy());
    assert_eq!(store.instance_get(&ctx, &k).await.expect("get"), dated);

    // Every feature cleared at once.
    let bare = store
        .instance_update(
            &ctx,
            &k,
            None,
            InstancePatch {
                feature_fields: FeatureField::ALL.to_vec(),
                features: InstanceFeatures::default(),
                ..InstancePatch::default()
            },
            None,
        )
        .await
        .expect("clear features");
    assert_eq!(bare.features, InstanceFeatures::default());
    assert_eq!(store.instance_get(&ctx, &k).await.expect("get"), bare);

    // Updating a missing instance.
    expect_err(
        store
            .instance_update(
                &ctx,
                &key(&a, &instance_id(99)),
                None,
                InstancePatch::default(),
                None,
            )
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
}

/// What instance_create returns is what a later read returns, for any
/// instance_create_time the caller gives (a protobuf Timestamp carries
/// nanoseconds).
pub async fn case_instance_create_time_precision(store: Arc<dyn Store>) {
    let ctx = admin();
    let a = create_account(&store, 1).await.account_id;
    let mut new = new_instance(&a, &instance_id(1), "us-east-1");
    new.fields.instance_create_time = Some(time("2019-01-02T03:04:05.123456789Z"));
    let created = store
        .instance_create(&ctx, new, None)
        .await
        .expect("create");
    let got = store.instance_get(&ctx, &created.key()).await.expect("get");
    assert_eq!(
        got, created,
        "the read differs from what the create returned"
    );
}

/// ListInstances under an account that does not exist (but that the
/// caller may see) is NOT_FOUND (AIP-132), the same answer as for an
/// account outside the caller's scope.
pub async fn case_list_under_missing_account(store: Arc<dyn Store>) {
    let ctx = admin();
    let a = create_account(&store, 1).await.account_id;
    create_instance(&store, &a, &instance_id(1), "us-east-1").await;
    let missing = account_id(2);
    let error = expect_err(
        store
            .instance_list(
                &ctx,
                &AccountSelector::One(missing.clone()),
                &filter(""),
                &page(0, ""),
            )
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
    assert_eq!(
        error,
        slrgov_domain::Error::not_found(slrgov_domain::names::account_name(&missing))
    );
}

/// WatchInstances filters the changes it reads with
/// `InstanceFilter::matches`, in Rust; ListInstances filters in SQL. The
/// two must agree on every term: for each filter, the instances the SQL
/// lists are exactly those `matches` accepts.
pub async fn case_filter_matches_agrees_with_the_list(store: Arc<dyn Store>) {
    let ctx = admin();
    let a = create_account(&store, 1).await.account_id;
    let legacy = Utc::now() - Duration::days(365 * 10);
    let recent = Utc::now() - Duration::days(10);
    let specs = [
        (1, "us-east-1", Some(legacy), true),
        (2, "us-east-1", Some(recent), false),
        (3, "eu-west-2", None, true),
        (4, "eu-west-2", Some(legacy), false),
        (5, "ap-southeast-2", Some(recent), true),
    ];
    for (n, region_code, created, active) in specs {
        let mut instance = new_instance(&a, &instance_id(n), region_code);
        instance.fields.instance_create_time = created;
        store
            .instance_create(&ctx, instance, None)
            .await
            .expect("create instance");
        if active {
            make_active(&store, &key(&a, &instance_id(n)), &format!("s{n}")).await;
        }
    }
    let all = list_instances_all(&store, &ctx, &AccountSelector::All, &filter(""), 50).await;
    assert_eq!(all.len(), specs.len());
    for text in [
        "",
        "region = \"us-east-1\"",
        "region = \"eu-west-2\" AND legacy = true",
        "legacy = true",
        "legacy = false",
        "linked_role_state = ACTIVE",
        "linked_role_state = ABSENT AND region = \"us-east-1\"",
        "observed_state = UNOBSERVED",
        "observed_state = OBSERVED",
        "connect_status = ACTIVE",
    ] {
        let parsed = filter(text);
        let listed =
            keys(&list_instances_all(&store, &ctx, &AccountSelector::All, &parsed, 50).await);
        let matched = keys(
            &all.iter()
                .filter(|i| parsed.matches(i))
                .cloned()
                .collect::<Vec<_>>(),
        );
        assert_eq!(listed, matched, "filter {text:?}");
    }
}
