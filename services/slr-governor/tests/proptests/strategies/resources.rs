//! Whole resources (the messages a create or an update carries).

use proptest::collection::vec;
use proptest::prelude::*;
use slrgov_proto::slrgov::v1 as pb;

use super::{
    account_id, account_id_any, arn, arns, bucket, description, enum_value, etag, instance_id,
    instance_id_any, junk, linked_role_name, mutated, optional_field, owned, region_any, text,
    timestamp,
};
use crate::harness::Fixture;

pub fn features(fx: &Fixture) -> BoxedStrategy<Option<pb::InstanceFeatures>> {
    let lex: &'static [&'static str] = &["lex"];
    let lex_resources: &'static [&'static str] = &["bot:", "bot/", "bot-alias/"];
    let features = message!(pb::InstanceFeatures {
        call_recordings_bucket: optional_field(bucket()),
        exported_reports_bucket: optional_field(bucket()),
        customer_profiles_domain: optional_field("[A-Za-z0-9_-]{1,64}".boxed()),
        firehose_delivery_streams: arns(fx, &["firehose"], &["deliverystream/"]),
        kinesis_streams: arns(fx, &["kinesis"], &["stream/"]),
        lex_bots: arns(fx, lex, lex_resources),
        flow_logs_log_group: optional_field("[A-Za-z0-9._/#-]{1,40}".boxed()),
        voice_id_domain: optional_field("[A-Za-z0-9]{22}".boxed()),
        outbound_campaigns: any::<bool>(),
    });
    prop_oneof![1 => Just(None), 3 => features.prop_map(Some)].boxed()
}

pub fn alias() -> BoxedStrategy<String> {
    optional_field(
        prop_oneof![
            4 => "[A-Za-z0-9]([A-Za-z0-9-]{0,60}[A-Za-z0-9])?",
            1 => owned(&["-a", "a-", "a_b", "a b", "ä"]),
            1 => "[a-z]{63,70}",
        ]
        .boxed(),
    )
}

pub fn instance(fx: &Fixture, name: BoxedStrategy<String>) -> BoxedStrategy<pb::Instance> {
    message!(pb::Instance {
        name: name,
        instance_id: prop_oneof![
            6 => Just(String::new()),
            2 => instance_id(fx),
            1 => instance_id_any(fx),
        ],
        instance_alias: alias(),
        region: prop_oneof![1 => Just(String::new()), 8 => region_any()],
        instance_create_time: timestamp(),
        features: features(fx),
        linked_role_state: enum_value(),
        create_time: timestamp(),
        update_time: timestamp(),
        etag: etag(),
        account_id: prop_oneof![6 => Just(String::new()), 2 => account_id(fx), 1 => junk()],
        // Output only (what Amazon Connect says): anything, ignored.
        connect_arn: junk(),
        connect_status: enum_value(),
        service_role_arn: junk(),
        identity_management_type: junk(),
        observed_state: enum_value(),
        last_seen_time: timestamp(),
        sync_time: timestamp(),
    })
}

pub fn account(fx: &Fixture, name: BoxedStrategy<String>) -> BoxedStrategy<pb::Account> {
    let role_arn = (account_id(fx), "[A-Za-z0-9+=,.@_-]{1,64}")
        .prop_map(|(a, r)| format!("arn:aws:iam::{a}:role/{r}"))
        .boxed();
    message!(pb::Account {
        name: name,
        account_id: prop_oneof![
            6 => Just(String::new()),
            2 => account_id(fx),
            1 => account_id_any(fx),
        ],
        display_name: text(slrgov_domain::types::DISPLAY_NAME_MAX),
        partition: prop_oneof![
            6 => Just(String::new()),
            2 => owned(&["aws", "aws-us-gov", "aws-cn"]),
            1 => owned(&["AWS", "aws-iso", "aws ", "*"]),
            1 => junk(),
        ],
        access_role_arn: prop_oneof![
            4 => Just(String::new()),
            3 => role_arn.clone(),
            2 => mutated(role_arn),
            1 => arn(fx, &["iam"], &["role/", "user/", "role/a/b/"]),
        ],
        external_id: prop_oneof![
            3 => Just(String::new()),
            2 => "[A-Za-z0-9_+=,.@:/-]{2,40}",
            1 => (1225usize..1300).prop_map(|n| "x".repeat(n)),
            1 => owned(&["x", "a b", "ä-secret"]),
            1 => junk(),
        ],
        external_id_set: any::<bool>(),
        create_time: timestamp(),
        update_time: timestamp(),
        etag: etag(),
    })
}

pub fn linked_role(fx: &Fixture) -> BoxedStrategy<pb::LinkedRole> {
    let deletion_failure =
        (junk(), vec((junk(), vec(junk(), 0..3)), 0..3)).prop_map(|(reason, usage)| {
            pb::linked_role::DeletionFailure {
                reason,
                role_usage: usage
                    .into_iter()
                    .map(|(region, resources)| pb::linked_role::RoleUsage { region, resources })
                    .collect(),
            }
        });
    message!(pb::LinkedRole {
        name: linked_role_name(fx),
        state: enum_value(),
        role_name: junk(),
        role_arn: junk(),
        role_id: junk(),
        path: junk(),
        description: description(),
        iam_create_time: timestamp(),
        last_used_time: timestamp(),
        last_used_region: junk(),
        adopted: any::<bool>(),
        restored: any::<bool>(),
        deletion_task_id: junk(),
        deletion_failure: proptest::option::of(deletion_failure),
        update_time: timestamp(),
        etag: etag(),
    })
}
