//! Field values: etags, request ids, paging, filters, masks, times, ARNs.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use prost_types::{Duration, FieldMask, Timestamp};

use super::{account_id, account_id_near_miss, junk, mutated, owned, region_any, uuid_text};
use crate::harness::Fixture;

pub fn etag() -> BoxedStrategy<String> {
    prop_oneof![
        4 => Just(String::new()),
        2 => "[1-9][0-9]{0,2}",
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => "\"[0-9]{1,3}\"",
        1 => "[0-9]{19,25}",
        1 => owned(&["0", "-1", "\"\"", "\"", "W/\"1\"", "+1", " 1", "1.0", "0x1", "١"]),
        1 => junk(),
    ]
    .boxed()
}

pub fn request_id() -> BoxedStrategy<String> {
    prop_oneof![
        4 => Just(String::new()),
        3 => uuid_text(),
        // A few fixed ids, so that some are reused with other parameters.
        2 => owned(&["proptest-request-1", "proptest-request-2"]),
        1 => "[A-Za-z0-9._~-]{1,140}",
        1 => junk(),
    ]
    .boxed()
}

pub fn page_size() -> BoxedStrategy<i32> {
    prop_oneof![
        3 => -3..60i32,
        1 => any::<i32>(),
        1 => select(vec![i32::MIN, i32::MAX, 1000, 1001, 0, -1]),
    ]
    .boxed()
}

pub fn page_token(fx: &Fixture) -> BoxedStrategy<String> {
    let issued = select(fx.page_tokens.clone()).boxed();
    prop_oneof![
        4 => Just(String::new()),
        2 => issued.clone(),
        2 => mutated(issued),
        1 => "[A-Za-z0-9_-]{0,120}\\.[A-Za-z0-9_-]{0,30}",
        1 => junk(),
    ]
    .boxed()
}

/// A filter of the ListInstances grammar (AIP-160 subset).
pub fn filter() -> BoxedStrategy<String> {
    filter_of(
        &[
            "region",
            "linked_role_state",
            "=",
            "==",
            "!=",
            "AND",
            "and",
            "OR",
            "NOT",
            "(",
            ")",
            "\"us-east-1\"",
            "'eu-west-2'",
            "\"mars-1\"",
            "ACTIVE",
            "ABSENT",
            "DELETION_FAILED",
            "active",
            "\"",
            "'",
            ":",
            "*",
            "-",
            "instance_alias",
            "1",
            "region.x",
        ],
        &[
            "region = \"us-east-1\"",
            "linked_role_state = ABSENT",
            "region = \"eu-west-2\" AND linked_role_state = ABSENT",
            "linked_role_state=ACTIVE",
        ],
        &[" ", "", "  ", "\t"],
        "[ -~]{500,600}",
    )
}

/// A filter of the ListAuditEvents grammar.
pub fn audit_filter() -> BoxedStrategy<String> {
    filter_of(
        &[
            "method",
            "principal",
            "outcome",
            "resource",
            "=",
            "AND",
            "OR",
            "\"CreateInstance\"",
            "OK",
            "NOT_FOUND",
            "fine",
            "\"local-operator\"",
            "\"",
            "'",
            "(",
            ")",
            "time",
        ],
        &[
            "method = \"CreateInstance\"",
            "outcome = OK",
            "principal = \"local-operator\" AND outcome = PERMISSION_DENIED",
            "method = \"slrgov.v1.AccountService/CreateAccount\"",
        ],
        &[" ", "", "  "],
        "[ -~]{1000,1100}",
    )
}

/// A filter of the ListFindings grammar.
pub fn finding_filter() -> BoxedStrategy<String> {
    filter_of(
        &[
            "code",
            "severity",
            "resolved",
            "=",
            "AND",
            "OR",
            "ROLE_MISSING",
            "ORPHAN_ROLE",
            "ERROR",
            "INFO",
            "true",
            "false",
            "maybe",
            "\"",
            "'",
            "(",
            ")",
            "target",
        ],
        &[
            "code = ROLE_MISSING",
            "severity = ERROR AND resolved = false",
            "code = \"ORPHAN_ROLE\" AND severity = WARNING AND resolved = true",
            "resolved=true",
        ],
        &[" ", "", "  "],
        "[ -~]{500,600}",
    )
}

/// Empty, one of `valid`, `words` (or any) joined by one of `separators`,
/// printable text matching `long`, or anything.
fn filter_of(
    words: &'static [&'static str],
    valid: &'static [&'static str],
    separators: &'static [&'static str],
    long: &'static str,
) -> BoxedStrategy<String> {
    let word = prop_oneof![
        6 => owned(words),
        1 => "[a-z_]{1,8}",
        1 => any::<char>().prop_map(String::from),
    ];
    prop_oneof![
        3 => Just(String::new()),
        2 => owned(valid),
        4 => (vec(word, 1..8), owned(separators))
            .prop_map(|(words, sep)| words.join(&sep)),
        1 => long,
        1 => junk(),
    ]
    .boxed()
}

pub fn mask(paths: &'static [&'static str]) -> BoxedStrategy<Option<FieldMask>> {
    let path = prop_oneof![9 => owned(paths), 1 => junk()];
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(FieldMask { paths: Vec::new() })),
        5 => vec(path, 1..5).prop_map(|paths| Some(FieldMask { paths })),
        1 => vec(owned(paths), 60..70).prop_map(|paths| Some(FieldMask { paths })),
    ]
    .boxed()
}

/// The seconds of a Timestamp's range (years 1 to 9999).
const TS_MIN: i64 = -62_135_596_800;
const TS_MAX: i64 = 253_402_300_799;

pub fn timestamp() -> BoxedStrategy<Option<Timestamp>> {
    let some = |(seconds, nanos): (i64, i32)| Some(Timestamp { seconds, nanos });
    prop_oneof![
        3 => Just(None),
        2 => (TS_MIN..=TS_MAX, 0..1_000_000_000i32).prop_map(some),
        1 => (any::<i64>(), any::<i32>()).prop_map(some),
        2 => (
            select(vec![TS_MIN - 1, TS_MIN, 0, TS_MAX, TS_MAX + 1, i64::MIN, i64::MAX]),
            select(vec![-1, 0, 999_999_999, 1_000_000_000, i32::MIN, i32::MAX]),
        )
            .prop_map(some),
    ]
    .boxed()
}

pub fn enum_value() -> BoxedStrategy<i32> {
    prop_oneof![3 => 0..7i32, 1 => any::<i32>()].boxed()
}

pub fn duration() -> BoxedStrategy<Option<Duration>> {
    let some = |(seconds, nanos): (i64, i32)| Some(Duration { seconds, nanos });
    prop_oneof![
        2 => Just(None),
        2 => (0..3i64, 0..1_000_000_000i32).prop_map(some),
        1 => (any::<i64>(), any::<i32>()).prop_map(some),
        1 => (
            select(vec![i64::MIN, -1, 0, 60, 61, 315_576_000_000, i64::MAX]),
            select(vec![i32::MIN, -1, 0, 999_999_999, 1_000_000_000, i32::MAX]),
        )
            .prop_map(some),
    ]
    .boxed()
}

pub fn bucket() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-z0-9][a-z0-9-]{1,20}[a-z0-9]",
        1 => owned(&[
            "192.168.1.1", "xn--bucket", "my..bucket", "a", "Bucket", "sthree-x", "x-s3alias",
            "bucket-", "b.-c", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ]),
    ]
    .boxed()
}

/// ARNs, mostly of `service` with one of `resources` in front.
pub fn arn(
    fx: &Fixture,
    services: &'static [&'static str],
    resources: &'static [&'static str],
) -> BoxedStrategy<String> {
    (
        prop_oneof![9 => Just("arn".to_owned()), 1 => owned(&["ARN", "arn ", "", "urn"])],
        prop_oneof![
            8 => Just("aws".to_owned()),
            2 => owned(&["aws-us-gov", "aws-cn", "AWS", "aws-iso", ""]),
        ],
        prop_oneof![8 => owned(services), 2 => owned(&["s3", "iam", "Lex", "lex ", "", "connect"])],
        prop_oneof![
            6 => owned(&["us-east-1", "eu-west-2"]),
            1 => Just(String::new()),
            1 => region_any(),
        ],
        prop_oneof![
            6 => account_id(fx),
            1 => Just(String::new()),
            1 => Just("aws".to_owned()),
            1 => account_id_near_miss(),
        ],
        prop_oneof![
            7 => (owned(resources), "[A-Za-z0-9_/-]{1,20}").prop_map(|(p, r)| p + &r),
            1 => Just(String::new()),
            1 => "[ -~]{0,20}",
            1 => junk(),
        ],
    )
        .prop_map(|(a, p, s, r, acct, res)| format!("{a}:{p}:{s}:{r}:{acct}:{res}"))
        .boxed()
}

pub fn arns(
    fx: &Fixture,
    services: &'static [&'static str],
    resources: &'static [&'static str],
) -> BoxedStrategy<Vec<String>> {
    let one = arn(fx, services, resources);
    let plain = (owned(services), owned(resources), "[a-z0-9]{1,8}")
        .prop_map(|(s, p, r)| format!("arn:aws:{s}:us-east-1:123456789012:{p}{r}"));
    prop_oneof![
        6 => Just(Vec::new()),
        3 => vec(one.clone(), 1..4),
        1 => vec(one, 1..3).prop_map(|arns| [arns.clone(), arns].concat()),
        1 => vec(plain, 15..70),
    ]
    .boxed()
}
