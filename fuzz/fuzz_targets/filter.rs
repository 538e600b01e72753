//! ListInstances filters (slrgov-domain `filter.rs`): parsing any string
//! never panics; a parsed filter, written back out in the documented
//! syntax, parses to the same filter with the same canonical text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slrgov_domain::filter::{FILTER_MAX, InstanceFilter, restrictions};

/// The filter in the documented syntax.
fn render(filter: &InstanceFilter) -> String {
    let mut parts = Vec::new();
    if let Some(region) = &filter.region {
        parts.push(format!("region = \"{}\"", region.as_str()));
    }
    if let Some(state) = filter.linked_role_state {
        parts.push(format!("linked_role_state = {}", state.as_str()));
    }
    if let Some(status) = filter.connect_status {
        parts.push(format!("connect_status = {}", status.as_str()));
    }
    if let Some(state) = filter.observed_state {
        parts.push(format!("observed_state = {}", state.as_str()));
    }
    if let Some(legacy) = filter.legacy {
        parts.push(format!("legacy = {legacy}"));
    }
    parts.join(" AND ")
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pairs) = restrictions(input, "fields") {
        assert!(input.len() <= FILTER_MAX);
        for (field, _) in &pairs {
            assert!(!field.is_empty());
            assert!(
                field
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            );
        }
    }
    if let Ok(filter) = InstanceFilter::parse(input) {
        let text = render(&filter);
        let again = InstanceFilter::parse(&text).expect("a rendered filter parses");
        assert_eq!(again, filter, "{text}");
        assert_eq!(again.canonical(), filter.canonical());
        if input.trim().is_empty() {
            assert_eq!(filter, InstanceFilter::default());
        }
    }
});
