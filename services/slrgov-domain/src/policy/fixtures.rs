//! Test fixtures shared by the policy tests and the permission tests.

use super::{NamedPolicy, PolicyDocument};

/// The shape of the AWS-managed AmazonConnectServiceLinkedRolePolicy
/// (abridged), as IAM returns it.
pub(crate) const MANAGED: &str = r#"{
      "Version": "2012-10-17",
      "Statement": [
        {"Sid": "AllowConnectActions", "Effect": "Allow",
         "Action": ["connect:*"], "Resource": "*"},
        {"Sid": "AllowS3ObjectForConnectBucket", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:GetObjectAcl", "s3:PutObject",
                    "s3:PutObjectAcl", "s3:DeleteObject"],
         "Resource": "arn:aws:s3:::amazon-connect-*/*"},
        {"Sid": "AllowGetBucketMetadataForConnectBucket", "Effect": "Allow",
         "Action": ["s3:GetBucketLocation", "s3:GetBucketAcl"],
         "Resource": "arn:aws:s3:::amazon-connect-*"},
        {"Sid": "AllowConnectLogGroupAccess", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
         "Resource": "arn:aws:logs:*:*:log-group:/aws/connect/*:*"},
        {"Sid": "AllowListLexBotAccess", "Effect": "Allow",
         "Action": ["lex:ListBots", "lex:ListBotAliases"], "Resource": "*"},
        {"Sid": "AllowPutMetricsForConnectNamespace", "Effect": "Allow",
         "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": "AWS/Connect"}}}
      ]
    }"#;

/// The managed policy's ARN.
pub(crate) const MANAGED_ARN: &str =
    "arn:aws:iam::aws:policy/aws-service-role/AmazonConnectServiceLinkedRolePolicy";

/// The managed policy, labelled with its ARN.
pub(crate) fn managed() -> NamedPolicy {
    NamedPolicy::new(
        MANAGED_ARN,
        PolicyDocument::parse(MANAGED).expect("valid policy"),
    )
}
