//! The policy tests, by subject, and the helpers they share.

use super::fixtures::{MANAGED, MANAGED_ARN, managed};
use super::*;

mod evaluation;
mod matching;
mod parsing;
mod robustness;

fn doc(text: &str) -> PolicyDocument {
    PolicyDocument::parse(text).expect("valid policy")
}

fn inline(name: &str, text: &str) -> NamedPolicy {
    NamedPolicy::new(format!("inline:{name}"), doc(text))
}

fn decision(policies: &[NamedPolicy], action: &str, resource: &str) -> Decision {
    evaluate(policies, action, resource).decision
}

fn malformed_path(text: &str) -> String {
    match PolicyDocument::parse(text) {
        Err(PolicyError::Malformed { path, .. }) => path,
        other => panic!("expected Malformed for {text}, got {other:?}"),
    }
}
