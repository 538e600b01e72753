//! The decision rules of `evaluate`.

use super::*;

#[test]
fn the_managed_policy_shape() {
    let policies = [managed()];
    let allowed = [
        (
            "connect:DescribeInstance",
            "arn:aws:connect:us-east-1:123456789012:instance/*",
        ),
        ("connect:ListUsers", "*"),
        (
            "s3:PutObject",
            "arn:aws:s3:::amazon-connect-1a2b3c/connect/x/CallRecordings/a.wav",
        ),
        ("s3:GetBucketAcl", "arn:aws:s3:::amazon-connect-1a2b3c"),
        (
            "logs:PutLogEvents",
            "arn:aws:logs:us-east-1:123456789012:log-group:/aws/connect/my-instance:*",
        ),
        ("lex:ListBots", "*"),
        ("lex:ListBotAliases", "*"),
    ];
    for (action, resource) in allowed {
        let evaluation = evaluate(&policies, action, resource);
        assert_eq!(
            evaluation.decision,
            Decision::Allowed,
            "{action} {resource}"
        );
        assert_eq!(evaluation.source_policy.as_deref(), Some(MANAGED_ARN));
    }
    let evaluation = evaluate(
        &policies,
        "s3:GetBucketLocation",
        "arn:aws:s3:::amazon-connect-x",
    );
    assert_eq!(
        evaluation.statement.as_deref(),
        Some("AllowGetBucketMetadataForConnectBucket")
    );

    let metrics = evaluate(&policies, "cloudwatch:PutMetricData", "*");
    assert_eq!(metrics.decision, Decision::Conditional);
    assert_eq!(metrics.source_policy.as_deref(), Some(MANAGED_ARN));
    assert_eq!(
        metrics.statement.as_deref(),
        Some("AllowPutMetricsForConnectNamespace")
    );

    let denied = [
        ("s3:GetObject", "arn:aws:s3:::my-recordings/x"),
        ("s3:DeleteBucket", "arn:aws:s3:::amazon-connect-1a2b3c"),
        (
            "logs:PutLogEvents",
            "arn:aws:logs:us-east-1:123456789012:log-group:/custom:*",
        ),
        (
            "lex:PostContent",
            "arn:aws:lex:us-east-1:123456789012:bot:Order:prod",
        ),
        ("connect-campaigns:ListCampaigns", "*"),
    ];
    for (action, resource) in denied {
        let evaluation = evaluate(&policies, action, resource);
        assert_eq!(
            evaluation,
            Evaluation::implicit_deny(),
            "{action} {resource}"
        );
    }
}

#[test]
fn explicit_deny_overrides_allow() {
    let policies = [
        managed(),
        inline(
            "guard",
            r#"{"Version": "2012-10-17", "Statement": [
                {"Sid": "NoDeletes", "Effect": "Deny", "Action": "s3:Delete*",
                 "Resource": "arn:aws:s3:::amazon-connect-*/*"}]}"#,
        ),
    ];
    let evaluation = evaluate(
        &policies,
        "s3:DeleteObject",
        "arn:aws:s3:::amazon-connect-a/k",
    );
    assert_eq!(
        evaluation,
        Evaluation {
            decision: Decision::ExplicitDeny,
            source_policy: Some("inline:guard".to_owned()),
            statement: Some("NoDeletes".to_owned()),
        }
    );
    assert_eq!(
        decision(&policies, "s3:GetObject", "arn:aws:s3:::amazon-connect-a/k"),
        Decision::Allowed
    );
    // Policy order does not matter.
    let reversed = [policies[1].clone(), policies[0].clone()];
    assert_eq!(
        decision(
            &reversed,
            "s3:DeleteObject",
            "arn:aws:s3:::amazon-connect-a/k"
        ),
        Decision::ExplicitDeny
    );
}

#[test]
fn conditional_deny_downgrades_allow() {
    let policies = [
        managed(),
        inline(
            "mfa",
            r#"{"Version": "2012-10-17", "Statement": [
                {"Sid": "DenyOutsideVpc", "Effect": "Deny", "Action": "s3:*", "Resource": "*",
                 "Condition": {"StringNotEquals": {"aws:SourceVpc": "vpc-1"}}}]}"#,
        ),
    ];
    let evaluation = evaluate(&policies, "s3:GetObject", "arn:aws:s3:::amazon-connect-a/k");
    assert_eq!(
        evaluation,
        Evaluation {
            decision: Decision::Conditional,
            source_policy: Some("inline:mfa".to_owned()),
            statement: Some("DenyOutsideVpc".to_owned()),
        }
    );
    // Nothing to downgrade: a conditional deny alone is an implicit deny.
    assert_eq!(
        decision(&policies, "s3:GetObject", "arn:aws:s3:::elsewhere/k"),
        Decision::ImplicitDeny
    );
    // Unrelated actions are untouched.
    assert_eq!(decision(&policies, "lex:ListBots", "*"), Decision::Allowed);
}

#[test]
fn unconditional_allow_beats_conditional_allow() {
    let policies = [
        managed(),
        inline(
            "metrics",
            r#"{"Version": "2012-10-17", "Statement":
                {"Sid": "AnyMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"}}"#,
        ),
    ];
    let evaluation = evaluate(&policies, "cloudwatch:PutMetricData", "*");
    assert_eq!(evaluation.decision, Decision::Allowed);
    assert_eq!(evaluation.source_policy.as_deref(), Some("inline:metrics"));
    assert_eq!(evaluation.statement.as_deref(), Some("AnyMetrics"));
    // An empty Condition is no condition.
    let empty = [inline(
        "e",
        r#"{"Version": "2012-10-17", "Statement":
            {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*", "Condition": {}}}"#,
    )];
    assert_eq!(
        decision(&empty, "cloudwatch:PutMetricData", "*"),
        Decision::Allowed
    );
    assert!(!empty[0].document.statements()[0].is_conditional());
}

#[test]
fn not_action_and_not_resource() {
    let policies = [inline(
        "not",
        r#"{"Version": "2012-10-17", "Statement": [
              {"Sid": "AllButIam", "Effect": "Allow", "NotAction": ["iam:*", "sts:*"], "Resource": "*"},
              {"Sid": "NotSecret", "Effect": "Deny", "Action": "s3:GetObject",
               "NotResource": ["arn:aws:s3:::public/*", "arn:aws:s3:::shared-?/*"]}
            ]}"#,
    )];
    assert_eq!(
        decision(&policies, "connect:ListUsers", "*"),
        Decision::Allowed
    );
    assert_eq!(
        decision(&policies, "IAM:DeleteRole", "*"),
        Decision::ImplicitDeny
    );
    assert_eq!(
        decision(&policies, "sts:AssumeRole", "*"),
        Decision::ImplicitDeny
    );
    assert_eq!(
        decision(&policies, "s3:GetObject", "arn:aws:s3:::public/a"),
        Decision::Allowed
    );
    assert_eq!(
        decision(&policies, "s3:GetObject", "arn:aws:s3:::shared-1/a"),
        Decision::Allowed
    );
    let denied = evaluate(&policies, "s3:GetObject", "arn:aws:s3:::secret/a");
    assert_eq!(denied.decision, Decision::ExplicitDeny);
    assert_eq!(denied.statement.as_deref(), Some("NotSecret"));
    // NotResource with NotAction together.
    let both = [inline(
        "both",
        r#"{"Version": "2012-10-17", "Statement":
              {"Effect": "Allow", "NotAction": "s3:*", "NotResource": "arn:aws:kms:*"}}"#,
    )];
    assert_eq!(decision(&both, "lex:ListBots", "*"), Decision::Allowed);
    assert_eq!(
        decision(&both, "kms:Decrypt", "arn:aws:kms:us-east-1:1:key/k"),
        Decision::ImplicitDeny
    );
    assert_eq!(
        decision(&both, "s3:GetObject", "arn:aws:s3:::b/k"),
        Decision::ImplicitDeny
    );
}

#[test]
fn decisions_have_api_names() {
    assert_eq!(Decision::Allowed.as_str(), "ALLOWED");
    assert_eq!(Decision::ImplicitDeny.to_string(), "IMPLICIT_DENY");
    assert_eq!(Decision::ExplicitDeny.as_str(), "EXPLICIT_DENY");
    assert_eq!(Decision::Conditional.as_str(), "CONDITIONAL");
    assert!(Decision::Allowed.is_allowed());
    assert!(!Decision::Conditional.is_allowed());
    assert_eq!(PolicyVersion::V2012_10_17.as_str(), "2012-10-17");
}
