//! Tests of the validated newtypes.

use super::*;

#[test]
fn account_ids() {
    assert!(AccountId::parse("123456789012").is_ok());
    for bad in [
        "",
        "12345678901",
        "1234567890123",
        "12345678901a",
        "１２３４５６７８９０１２",
    ] {
        assert!(AccountId::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn instance_ids_are_canonical() {
    let id = InstanceId::parse("4A3B2C1D-0000-4000-8000-123456789ABC").expect("uuid");
    assert_eq!(id.as_str(), "4a3b2c1d-0000-4000-8000-123456789abc");
    for bad in [
        "",
        "4a3b2c1d00004000800012345678abcd",
        "{4a3b2c1d-0000-4000-8000-123456789abc}",
        "4a3b2c1d-0000-4000-8000-123456789abg",
    ] {
        assert!(InstanceId::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn regions_and_partitions() {
    let gov = RegionCode::parse("us-gov-west-1").expect("gov");
    assert_eq!(gov.partition(), Partition::AwsUsGov);
    assert_eq!(
        RegionCode::parse("eu-west-2").expect("eu").partition(),
        Partition::Aws
    );
    for bad in [
        "",
        "us-east",
        "US-EAST-1",
        "us-east-1a",
        "us--1",
        "us-east-123",
    ] {
        assert!(RegionCode::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn arns_are_partition_aware() {
    let account = AccountId::parse("123456789012").expect("account");
    let arn = parse_access_role_arn(
        "arn:aws-us-gov:iam::123456789012:role/ops/Governor",
        Partition::AwsUsGov,
        &account,
    )
    .expect("gov role");
    assert_eq!(arn.partition(), Partition::AwsUsGov);
    assert_eq!(arn.resource(), "role/ops/Governor");
    // wrong partition, other account, not a role, garbage
    for bad in [
        "arn:aws:iam::123456789012:role/Governor",
        "arn:aws-us-gov:iam::210987654321:role/Governor",
        "arn:aws-us-gov:iam::123456789012:user/Governor",
        "arn:aws-us-gov:iam::123456789012",
        "not-an-arn",
        "arn:aws-moon:iam::123456789012:role/x",
    ] {
        assert!(
            parse_access_role_arn(bad, Partition::AwsUsGov, &account).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn bucket_names() {
    for good in ["amazon-connect-abc", "my.bucket.name", "a1b"] {
        assert!(BucketName::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "ab",
        "Upper",
        "-start",
        "end-",
        "a..b",
        "192.168.5.4",
        "xn--bucket",
        "bucket-s3alias",
        "under_score",
    ] {
        assert!(BucketName::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn aliases_descriptions_and_etags() {
    assert!(InstanceAlias::parse("my-contact-center").is_ok());
    assert!(InstanceAlias::parse(&"a".repeat(62)).is_ok());
    assert!(InstanceAlias::parse(&"a".repeat(63)).is_err());
    assert!(InstanceAlias::parse("-x").is_err());
    assert!(check_role_description(&"d".repeat(1000)).is_ok());
    assert!(check_role_description(&"d".repeat(1001)).is_err());
    assert!(check_role_description("emoji \u{1F600}").is_err());
    assert_eq!(Revision::parse_etag("").expect("empty"), None);
    assert_eq!(Revision::parse_etag("7").expect("7"), Some(Revision(7)));
    assert_eq!(Revision::parse_etag("\"7\"").expect("7"), Some(Revision(7)));
    assert!(Revision::parse_etag("abc").is_err());
    assert!(Revision::parse_etag("-1").is_err());
}
