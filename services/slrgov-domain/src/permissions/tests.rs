//! Tests of the feature -> permission table.

use super::*;
use crate::policy::fixtures::{self, MANAGED_ARN};
use crate::policy::{Decision, NamedPolicy, evaluate};
use crate::types::{Arn, BucketName, LogGroupName, ProfilesDomain, VoiceIdDomain};

fn account() -> AccountId {
    AccountId::parse("123456789012").expect("account")
}

fn region(code: &str) -> RegionCode {
    RegionCode::parse(code).expect("region")
}

fn arn(text: &str) -> Arn {
    Arn::parse(text).expect("arn")
}

const BOT_1: &str = "arn:aws:lex:us-east-1:123456789012:bot:OrderFlowers:prod";
const BOT_2: &str = "arn:aws:lex:us-east-1:123456789012:bot:BookTrip:prod";

fn everything() -> InstanceFeatures {
    InstanceFeatures {
        call_recordings_bucket: Some(BucketName::parse("amazon-connect-rec").expect("bucket")),
        exported_reports_bucket: Some(BucketName::parse("amazon-connect-reports").expect("bucket")),
        customer_profiles_domain: Some(
            ProfilesDomain::parse("amazon-connect-acme").expect("domain"),
        ),
        firehose_delivery_streams: vec![arn(
            "arn:aws:firehose:us-east-1:123456789012:deliverystream/ctr",
        )],
        kinesis_streams: vec![arn("arn:aws:kinesis:us-east-1:123456789012:stream/agents")],
        lex_bots: vec![arn(BOT_1), arn(BOT_2)],
        flow_logs_log_group: Some(LogGroupName::parse("/aws/connect/acme").expect("log group")),
        voice_id_domain: Some(VoiceIdDomain::parse("AbCdEfGhIjKlMnOpQrStUv").expect("voice id")),
        outbound_campaigns: true,
    }
}

fn has(requirements: &[Requirement], feature: &str, action: &str, resource: &str) -> bool {
    requirements
        .iter()
        .any(|r| r.feature == feature && r.action == action && r.resource == resource)
}

#[test]
fn every_feature() {
    let required = required_permissions(
        &everything(),
        Partition::Aws,
        &account(),
        &region("us-east-1"),
    );
    // core 3, recordings 7, reports 3, profiles 10, firehose 3, kinesis 3,
    // lex 2 bots + 2 lists, logs 3, voice id 3 + 2 events, campaigns 12.
    assert_eq!(required.len(), 3 + 7 + 3 + 10 + 3 + 3 + 4 + 3 + 5 + 12);
    let expected = [
        (
            "core",
            "connect:DescribeInstance",
            "arn:aws:connect:us-east-1:123456789012:instance/*",
        ),
        ("core", "cloudwatch:PutMetricData", "*"),
        (
            "call_recordings_bucket",
            "s3:GetBucketAcl",
            "arn:aws:s3:::amazon-connect-rec",
        ),
        (
            "call_recordings_bucket",
            "s3:DeleteObject",
            "arn:aws:s3:::amazon-connect-rec/*",
        ),
        (
            "exported_reports_bucket",
            "s3:GetObjectAcl",
            "arn:aws:s3:::amazon-connect-reports/*",
        ),
        (
            "customer_profiles_domain",
            "profile:GetProfileObjectType",
            "arn:aws:profile:us-east-1:123456789012:domains/amazon-connect-acme",
        ),
        (
            "firehose_delivery_streams",
            "firehose:PutRecordBatch",
            "arn:aws:firehose:us-east-1:123456789012:deliverystream/ctr",
        ),
        (
            "kinesis_streams",
            "kinesis:DescribeStream",
            "arn:aws:kinesis:us-east-1:123456789012:stream/agents",
        ),
        ("lex_bots", "lex:PostContent", BOT_1),
        ("lex_bots", "lex:PostContent", BOT_2),
        ("lex_bots", "lex:ListBotAliases", "*"),
        (
            "flow_logs_log_group",
            "logs:PutLogEvents",
            "arn:aws:logs:us-east-1:123456789012:log-group:/aws/connect/acme:*",
        ),
        (
            "voice_id_domain",
            "voiceid:EvaluateSession",
            "arn:aws:voiceid:us-east-1:123456789012:domain/AbCdEfGhIjKlMnOpQrStUv",
        ),
        (
            "voice_id_domain",
            "events:PutTargets",
            "arn:aws:events:us-east-1:123456789012:rule/AmazonConnect-*",
        ),
        ("outbound_campaigns", "connect-campaigns:StopCampaign", "*"),
    ];
    for (feature, action, resource) in expected {
        assert!(
            has(&required, feature, action, resource),
            "missing {feature} {action} {resource}"
        );
    }
    // Bucket actions are on the bucket, object actions on its objects.
    assert!(!has(
        &required,
        "call_recordings_bucket",
        "s3:GetBucketAcl",
        "arn:aws:s3:::amazon-connect-rec/*"
    ));
    // Every feature name is a field name of InstanceFeatures (or core).
    for requirement in &required {
        assert!(
            requirement.feature == CORE || FeatureField::parse(requirement.feature).is_some(),
            "{}",
            requirement.feature
        );
    }
    // The core comes first.
    assert_eq!(required[0].feature, CORE);
}

#[test]
fn no_duplicates() {
    let mut features = everything();
    // The same bucket for both uses, a bot listed twice.
    features.exported_reports_bucket = features.call_recordings_bucket.clone();
    features.lex_bots.push(arn(BOT_1));
    let required =
        required_permissions(&features, Partition::Aws, &account(), &region("us-east-1"));
    let mut pairs = HashSet::new();
    for requirement in &required {
        assert!(
            pairs.insert((requirement.action.clone(), requirement.resource.clone())),
            "duplicate {requirement:?}"
        );
    }
    // The shared bucket's PutObject is listed once, under recordings;
    // reports still add nothing new (all three are recordings actions).
    assert!(has(
        &required,
        "call_recordings_bucket",
        "s3:PutObject",
        "arn:aws:s3:::amazon-connect-rec/*"
    ));
    assert!(
        !required
            .iter()
            .any(|r| r.feature == "exported_reports_bucket")
    );
    assert_eq!(
        required
            .iter()
            .filter(|r| r.action == "lex:PostContent")
            .count(),
        2
    );
    let all = required_permissions(
        &everything(),
        Partition::Aws,
        &account(),
        &region("us-east-1"),
    );
    assert_eq!(required.len(), all.len() - 3);
}

#[test]
fn gov_partition_arns() {
    let features = InstanceFeatures {
        call_recordings_bucket: Some(BucketName::parse("gov-recordings").expect("bucket")),
        customer_profiles_domain: Some(ProfilesDomain::parse("d").expect("domain")),
        lex_bots: vec![arn(
            "arn:aws-us-gov:lex:us-gov-west-1:123456789012:bot:Order:prod",
        )],
        flow_logs_log_group: Some(LogGroupName::parse("flows").expect("log group")),
        voice_id_domain: Some(VoiceIdDomain::parse("AbCdEfGhIjKlMnOpQrStUv").expect("voice id")),
        ..InstanceFeatures::default()
    };
    let required = required_permissions(
        &features,
        Partition::AwsUsGov,
        &account(),
        &region("us-gov-west-1"),
    );
    for requirement in &required {
        assert!(
            requirement.resource == "*" || requirement.resource.starts_with("arn:aws-us-gov:"),
            "{requirement:?}"
        );
    }
    assert!(has(
        &required,
        "call_recordings_bucket",
        "s3:GetBucketLocation",
        "arn:aws-us-gov:s3:::gov-recordings"
    ));
    assert!(has(
        &required,
        "core",
        "connect:DescribeInstance",
        "arn:aws-us-gov:connect:us-gov-west-1:123456789012:instance/*"
    ));
    assert!(has(
        &required,
        "flow_logs_log_group",
        "logs:CreateLogStream",
        "arn:aws-us-gov:logs:us-gov-west-1:123456789012:log-group:flows:*"
    ));
    assert!(has(
        &required,
        "customer_profiles_domain",
        "profile:SearchProfiles",
        "arn:aws-us-gov:profile:us-gov-west-1:123456789012:domains/d"
    ));
}

#[test]
fn no_features_means_core_only() {
    let required = required_permissions(
        &InstanceFeatures::default(),
        Partition::Aws,
        &account(),
        &region("eu-west-2"),
    );
    assert_eq!(
        required,
        vec![
            Requirement {
                feature: CORE,
                action: "connect:DescribeInstance".to_owned(),
                resource: "arn:aws:connect:eu-west-2:123456789012:instance/*".to_owned(),
            },
            Requirement {
                feature: CORE,
                action: "connect:ListInstanceAttributes".to_owned(),
                resource: "arn:aws:connect:eu-west-2:123456789012:instance/*".to_owned(),
            },
            Requirement {
                feature: CORE,
                action: "cloudwatch:PutMetricData".to_owned(),
                resource: "*".to_owned(),
            },
        ]
    );
    // Campaigns are a flag: on adds exactly its twelve actions on `*`.
    let campaigns = InstanceFeatures {
        outbound_campaigns: true,
        ..InstanceFeatures::default()
    };
    let required =
        required_permissions(&campaigns, Partition::Aws, &account(), &region("eu-west-2"));
    assert_eq!(required.len(), 3 + 12);
    assert!(
        required
            .iter()
            .skip(3)
            .all(|r| r.feature == "outbound_campaigns" && r.resource == "*")
    );
}

/// The inline policy Connect adds when a bot is associated.
const LEX_INLINE: &str = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%5B%22lex%3APostContent%22%5D%2C%22Resource%22%3A%5B%22arn%3Aaws%3Alex%3Aus-east-1%3A123456789012%3Abot%3AOrderFlowers%3Aprod%22%5D%7D%5D%7D";

#[test]
fn a_lex_instance_against_the_managed_and_inline_policies() {
    let features = InstanceFeatures {
        lex_bots: vec![arn(BOT_1)],
        flow_logs_log_group: Some(LogGroupName::parse("/aws/connect/acme").expect("log group")),
        ..InstanceFeatures::default()
    };
    let required =
        required_permissions(&features, Partition::Aws, &account(), &region("us-east-1"));
    assert_eq!(required.len(), 3 + 3 + 3);
    let managed = fixtures::managed();
    let inline = NamedPolicy::parse_url_encoded("inline:connect-lex", LEX_INLINE).expect("inline");

    let policies = [managed.clone(), inline];
    for requirement in &required {
        let evaluation = evaluate(&policies, &requirement.action, &requirement.resource);
        if requirement.action == "cloudwatch:PutMetricData" {
            assert_eq!(evaluation.decision, Decision::Conditional);
            assert_eq!(evaluation.source_policy.as_deref(), Some(MANAGED_ARN));
        } else {
            assert_eq!(evaluation.decision, Decision::Allowed, "{requirement:?}");
        }
        if requirement.action == "lex:PostContent" {
            assert_eq!(
                evaluation.source_policy.as_deref(),
                Some("inline:connect-lex")
            );
        }
    }

    // Without the inline policy the bot cannot be called.
    let policies = [managed];
    for requirement in &required {
        let decision = evaluate(&policies, &requirement.action, &requirement.resource).decision;
        match requirement.action.as_str() {
            "lex:PostContent" => assert_eq!(decision, Decision::ImplicitDeny),
            "cloudwatch:PutMetricData" => assert_eq!(decision, Decision::Conditional),
            _ => assert_eq!(decision, Decision::Allowed, "{requirement:?}"),
        }
    }
}
