//! Wildcards, case rules and policy variables.

use super::*;

#[test]
fn wildcards_in_actions() {
    assert!(action_matches("*", "s3:GetObject"));
    assert!(action_matches("s3:Get*", "s3:GetObject"));
    assert!(action_matches("s3:Get*", "s3:Get"));
    assert!(!action_matches("s3:Get*", "s3:PutObject"));
    assert!(action_matches("connect:*", "connect:DescribeInstance"));
    assert!(!action_matches(
        "connect:*",
        "connect-campaigns:ListCampaigns"
    ));
    assert!(action_matches(
        "connect*",
        "connect-campaigns:ListCampaigns"
    ));
    assert!(action_matches("lex:List?ots", "lex:ListBots"));
    assert!(!action_matches("lex:List?ots", "lex:ListBotAliases"));
    assert!(!action_matches("lex:List?ots", "lex:Listots"));
    assert!(action_matches("lex:*Bot*", "lex:ListBotAliases"));
}

#[test]
fn actions_are_case_insensitive() {
    assert!(action_matches("S3:GETOBJECT", "s3:getobject"));
    assert!(action_matches("s3:getobject", "S3:GetObject"));
    assert!(action_matches("LEX:list?OTS", "lex:ListBots"));
    let policies = [inline(
        "p",
        r#"{"Version": "2012-10-17", "Statement":
            {"Effect": "Allow", "Action": "CloudWatch:putmetricdata", "Resource": "*"}}"#,
    )];
    assert_eq!(
        decision(&policies, "cloudwatch:PutMetricData", "*"),
        Decision::Allowed
    );
}

#[test]
fn resources_are_case_sensitive_and_star_spans_separators() {
    assert!(wildcard_match(
        "arn:aws:s3:::amazon-connect-*/*",
        "arn:aws:s3:::amazon-connect-abc/x/y"
    ));
    assert!(wildcard_match(
        "arn:aws:logs:*:*:log-group:/aws/connect/*:*",
        "arn:aws:logs:us-east-1:123456789012:log-group:/aws/connect/i-1:*"
    ));
    assert!(wildcard_match("arn:*", "arn:aws:s3:::b"));
    assert!(!wildcard_match(
        "arn:aws:s3:::amazon-connect-*/*",
        "arn:aws:s3:::Amazon-Connect-abc/x"
    ));
    assert!(!wildcard_match(
        "arn:aws:s3:::amazon-connect-*/*",
        "arn:aws:s3:::amazon-connect-abc"
    ));
    assert!(wildcard_match("arn:aws:s3:::b?cket", "arn:aws:s3:::bucket"));
    assert!(!wildcard_match("arn:aws:s3:::b?cket", "arn:aws:s3:::bcket"));
    assert!(wildcard_match("", ""));
    assert!(!wildcard_match("", "x"));
    assert!(wildcard_match("*", ""));
    assert!(!wildcard_match("?", ""));
    // A request on `*` is only covered by patterns that cover the text `*`.
    assert!(wildcard_match("*", "*"));
    assert!(!wildcard_match("arn:aws:lex:*", "*"));

    let policies = [inline(
        "p",
        r#"{"Version": "2012-10-17", "Statement":
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::Bucket/*"}}"#,
    )];
    assert_eq!(
        decision(&policies, "s3:GetObject", "arn:aws:s3:::Bucket/k"),
        Decision::Allowed
    );
    assert_eq!(
        decision(&policies, "s3:GetObject", "arn:aws:s3:::bucket/k"),
        Decision::ImplicitDeny
    );
}

#[test]
fn policy_variables_match_conditionally() {
    let text = r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "Own", "Effect": "Allow", "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::home/${aws:username}/*"},
            {"Sid": "Literal", "Effect": "Allow", "Action": "s3:PutObject",
             "Resource": "arn:aws:s3:::weird/${*}${?}${$}"}
        ]}"#;
    let policies = [inline("vars", text)];
    assert_eq!(
        decision(&policies, "s3:GetObject", "arn:aws:s3:::home/alice/x"),
        Decision::Conditional
    );
    assert_eq!(
        decision(&policies, "s3:GetObject", "arn:aws:s3:::other/alice/x"),
        Decision::ImplicitDeny
    );
    assert_eq!(
        decision(&policies, "s3:PutObject", "arn:aws:s3:::weird/*?$"),
        Decision::Allowed
    );
    assert_eq!(
        decision(&policies, "s3:PutObject", "arn:aws:s3:::weird/abc"),
        Decision::ImplicitDeny
    );
    // Version 2008-10-17 has no variables: `${...}` is literal text.
    let old = [inline(
        "old",
        r#"{"Version": "2008-10-17", "Statement": {"Effect": "Allow", "Action": "s3:GetObject",
               "Resource": "arn:aws:s3:::home/${aws:username}/*"}}"#,
    )];
    assert_eq!(
        decision(&old, "s3:GetObject", "arn:aws:s3:::home/alice/x"),
        Decision::ImplicitDeny
    );
    assert_eq!(
        decision(&old, "s3:GetObject", "arn:aws:s3:::home/${aws:username}/x"),
        Decision::Allowed
    );
}
