//! Resource names (slrgov-domain `names.rs`): parsing any string never
//! panics, and every name that parses formats back to itself (instance ids
//! up to the case of the UUID, which is kept lower-case).
#![no_main]

use libfuzzer_sys::fuzz_target;
use slrgov_domain::names::{
    AccountSelector, InstanceKey, account_name, parse_account_name, parse_region_name,
};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(account) = parse_account_name(input) {
        assert_eq!(account_name(&account), input);
        assert_eq!(
            AccountSelector::parse(input).ok(),
            Some(AccountSelector::One(account))
        );
    }
    if let Ok(selector) = AccountSelector::parse(input) {
        assert_eq!(selector.to_string(), input);
    }
    if let Ok(key) = InstanceKey::parse(input) {
        let name = key.name();
        assert!(name.eq_ignore_ascii_case(input), "{input} -> {name}");
        assert_eq!(key.to_string(), name);
        assert_eq!(InstanceKey::parse(&name).ok(), Some(key.clone()));
        assert_eq!(
            InstanceKey::parse_linked_role_name(&key.linked_role_name()).ok(),
            Some(key)
        );
    }
    if let Ok(key) = InstanceKey::parse_linked_role_name(input) {
        let name = key.linked_role_name();
        assert!(name.eq_ignore_ascii_case(input), "{input} -> {name}");
        assert_eq!(InstanceKey::parse(&key.name()).ok(), Some(key));
    }
    if let Ok(region) = parse_region_name(input) {
        assert_eq!(format!("regions/{region}"), input);
    }
});
