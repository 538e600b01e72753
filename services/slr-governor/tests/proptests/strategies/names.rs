//! Ids and resource names: the fixture's, valid ones, near misses.

use proptest::prelude::*;
use proptest::sample::select;
use slr_governor::regions::BUILTIN_REGIONS;

use super::{junk, mutated, owned};
use crate::harness::Fixture;

pub fn account_id(fx: &Fixture) -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(fx.accounts.clone()),
        1 => "[0-9]{12}",
    ]
    .boxed()
}

/// Account ids that are almost right.
pub fn account_id_near_miss() -> BoxedStrategy<String> {
    prop_oneof![
        "[0-9]{0,11}",
        "[0-9]{13,20}",
        "[\u{660}-\u{669}]{12}",
        "[0-9]{11}[a-zA-Z ]",
        " [0-9]{12}",
        "-[0-9]{11}",
        "[0-9]{3}-[0-9]{4}-[0-9]{4}",
    ]
    .boxed()
}

pub fn account_id_any(fx: &Fixture) -> BoxedStrategy<String> {
    prop_oneof![
        6 => account_id(fx),
        2 => account_id_near_miss(),
        2 => mutated(account_id(fx)),
        1 => junk(),
    ]
    .boxed()
}

pub fn uuid_text() -> BoxedStrategy<String> {
    any::<u128>()
        .prop_map(|n| uuid::Uuid::from_u128(n).hyphenated().to_string())
        .boxed()
}

/// UUIDs in the wrong form.
pub fn instance_id_near_miss() -> BoxedStrategy<String> {
    (any::<u128>(), 0..9u8)
        .prop_map(|(n, form)| {
            let id = uuid::Uuid::from_u128(n);
            let text = id.hyphenated().to_string();
            match form {
                0 => id.simple().to_string(),
                1 => id.braced().to_string(),
                2 => id.urn().to_string(),
                3 => text.to_uppercase(),
                4 => text[..35].to_owned(),
                5 => format!("{text}0"),
                6 => format!("g{}", &text[1..]),
                7 => text.replace('-', "_"),
                _ => format!("{}-{}", &text[..7], &text[8..]),
            }
        })
        .boxed()
}

pub fn instance_id(fx: &Fixture) -> BoxedStrategy<String> {
    let known: Vec<String> = fx.instances.iter().map(|(_, i)| i.clone()).collect();
    prop_oneof![
        3 => select(known),
        1 => uuid_text(),
    ]
    .boxed()
}

pub fn instance_id_any(fx: &Fixture) -> BoxedStrategy<String> {
    prop_oneof![
        6 => instance_id(fx),
        2 => instance_id_near_miss(),
        2 => mutated(instance_id(fx)),
        1 => junk(),
    ]
    .boxed()
}

/// A collection id: mostly `valid`, sometimes a wrong one.
pub fn collection(valid: &'static str) -> BoxedStrategy<String> {
    prop_oneof![
        8 => Just(valid.to_owned()),
        2 => owned(&[
            "account", "Accounts", "ACCOUNTS", "instance", "Instances", "instances ", "regions",
            "operations", "linkedRole", "", "accounts%2F", "-", "*",
        ]),
        1 => junk(),
    ]
    .boxed()
}

/// What may trail a name.
pub fn trailer() -> BoxedStrategy<String> {
    prop_oneof![
        12 => Just(String::new()),
        1 => owned(&["/", "//", "/x", "?", "#", "\u{0}", " ", "/instances", "/linkedRole", ".."]),
        1 => junk(),
    ]
    .boxed()
}

pub fn account_name(fx: &Fixture) -> BoxedStrategy<String> {
    prop_oneof![
        6 => account_id(fx).prop_map(|id| format!("accounts/{id}")),
        4 => (collection("accounts"), account_id_any(fx), trailer())
            .prop_map(|(c, id, t)| format!("{c}/{id}{t}")),
        1 => owned(&["accounts/-", "accounts/", "accounts", "/accounts/123456789012", ""]),
        1 => junk(),
    ]
    .boxed()
}

pub fn instance_name(fx: &Fixture) -> BoxedStrategy<String> {
    let known: Vec<String> = fx
        .instances
        .iter()
        .map(|(a, i)| format!("accounts/{a}/instances/{i}"))
        .collect();
    prop_oneof![
        5 => select(known),
        2 => (account_id(fx), instance_id(fx))
            .prop_map(|(a, i)| format!("accounts/{a}/instances/{i}")),
        4 => (
            collection("accounts"),
            account_id_any(fx),
            collection("instances"),
            instance_id_any(fx),
            trailer(),
        )
            .prop_map(|(c, a, d, i, t)| format!("{c}/{a}/{d}/{i}{t}")),
        1 => junk(),
    ]
    .boxed()
}

pub fn linked_role_name(fx: &Fixture) -> BoxedStrategy<String> {
    (
        instance_name(fx),
        prop_oneof![
            10 => Just("/linkedRole".to_owned()),
            2 => owned(&[
                "", "/linkedrole", "/linkedRoles", "/linkedRole/", "/linkedRole/x", "/LinkedRole",
                "linkedRole", "/linked_role",
            ]),
            1 => junk(),
        ],
    )
        .prop_map(|(name, suffix)| name + &suffix)
        .boxed()
}

pub fn region_code() -> BoxedStrategy<String> {
    prop_oneof![
        4 => owned(BUILTIN_REGIONS),
        2 => owned(&["eu-west-1", "cn-north-1", "us-gov-east-1", "me-central-1"]),
        1 => "[a-z]{2}(-[a-z]{1,10}){1,2}-[0-9]{1,2}",
    ]
    .boxed()
}

pub fn region_any() -> BoxedStrategy<String> {
    prop_oneof![
        6 => region_code(),
        2 => owned(&[
            "US-EAST-1", "us-east-", "us_east_1", "us-east-100", "-east-1", "mars-1", "us--1",
            "us-east-1 ", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-b-1", "us-east-١",
        ]),
        2 => mutated(region_code()),
        1 => junk(),
    ]
    .boxed()
}

pub fn operation_name(fx: &Fixture) -> BoxedStrategy<String> {
    let known = select(fx.operations.clone()).boxed();
    prop_oneof![
        4 => known.clone().prop_map(|id| format!("operations/{id}")),
        2 => uuid_text().prop_map(|id| format!("operations/{id}")),
        3 => (collection("operations"), prop_oneof![known.clone(), instance_id_near_miss(), mutated(known)], trailer())
            .prop_map(|(c, id, t)| format!("{c}/{id}{t}")),
        1 => junk(),
    ]
    .boxed()
}
