//! List filters: the subset of AIP-160 the API promises, `field = value`
//! restrictions joined by `AND` (ListInstances: `region = "us-east-1"` and
//! `linked_role_state = ACTIVE`; ListAuditEvents: see [`crate::audit`]).
//! Anything else is refused with a message naming what is not understood.

use crate::error::FieldError;
use crate::finding::{FindingCode, FindingFilter, Severity};
use crate::model::{ConnectStatus, LinkedRoleState, ObservedState};
use crate::types::RegionCode;

/// A parsed instance filter; `None` fields do not constrain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceFilter {
    /// `region = "..."`.
    pub region: Option<RegionCode>,
    /// `linked_role_state = STATE`.
    pub linked_role_state: Option<LinkedRoleState>,
    /// `connect_status = STATUS`.
    pub connect_status: Option<ConnectStatus>,
    /// `observed_state = STATE`.
    pub observed_state: Option<ObservedState>,
    /// `legacy = true` (created before 2018-10-01) or `legacy = false`.
    pub legacy: Option<bool>,
}

/// The fields ListInstances filters on.
const INSTANCE_FIELDS: &str = "region, linked_role_state, connect_status, observed_state, legacy";

/// The longest filter accepted.
pub const FILTER_MAX: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Str(String),
    Eq,
}

fn tokenize(input: &str, supported: &str) -> Result<Vec<Token>, FieldError> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '=' {
            chars.next();
            tokens.push(Token::Eq);
        } else if c == '"' || c == '\'' {
            chars.next();
            let mut value = String::new();
            let mut closed = false;
            for (_, d) in chars.by_ref() {
                if d == c {
                    closed = true;
                    break;
                }
                value.push(d);
            }
            if !closed {
                return Err(FieldError::new(format!(
                    "has an unterminated string starting at position {at}"
                )));
            }
            tokens.push(Token::Str(value));
        } else if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
            let mut word = String::new();
            while let Some(&(_, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' || d == '-' || d == '.' {
                    word.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(Token::Ident(word));
        } else {
            return Err(FieldError::new(format!(
                "is not understood at position {at}: '{c}' (supported: restrictions field = \"value\" on {supported}, joined by AND)"
            )));
        }
    }
    Ok(tokens)
}

/// Splits a filter into its `field = value` restrictions, joined by `AND`
/// (the subset of AIP-160 the API promises); `supported` names the fields
/// for error messages. The empty string has no restriction.
pub fn restrictions(input: &str, supported: &str) -> Result<Vec<(String, String)>, FieldError> {
    if input.len() > FILTER_MAX {
        return Err(FieldError::new(format!(
            "must be at most {FILTER_MAX} characters"
        )));
    }
    let tokens = tokenize(input, supported)?;
    let mut out = Vec::new();
    let mut rest = tokens.as_slice();
    if rest.is_empty() {
        return Ok(out);
    }
    loop {
        let (field, value, tail) = match rest {
            [Token::Ident(field), Token::Eq, value, tail @ ..] => (field, value, tail),
            [Token::Ident(field), ..] => {
                return Err(FieldError::new(format!(
                    "is not understood after '{field}': expected '= value'"
                )));
            }
            _ => {
                return Err(FieldError::new(format!(
                    "is not understood: expected a restriction such as field = \"value\" (fields: {supported})"
                )));
            }
        };
        let value = match value {
            Token::Str(s) | Token::Ident(s) => s.clone(),
            Token::Eq => {
                return Err(FieldError::new(format!(
                    "is not understood: '{field}' has no value"
                )));
            }
        };
        out.push((field.clone(), value));
        match tail {
            [] => return Ok(out),
            [Token::Ident(and), more @ ..] if and == "AND" && !more.is_empty() => rest = more,
            [Token::Ident(word), ..] => {
                return Err(FieldError::new(format!(
                    "is not understood at '{word}': only AND joins restrictions"
                )));
            }
            _ => {
                return Err(FieldError::new(
                    "is not understood: restrictions must be joined by AND",
                ));
            }
        }
    }
}

impl InstanceFilter {
    /// Parses a filter; the empty string matches everything.
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let mut filter = InstanceFilter::default();
        for (field, value) in restrictions(input, INSTANCE_FIELDS)? {
            let value = value.as_str();
            let twice = || FieldError::new(format!("restricts {field} more than once"));
            match field.as_str() {
                "region" => {
                    if filter.region.is_some() {
                        return Err(twice());
                    }
                    filter.region = Some(RegionCode::parse(value).map_err(|_| {
                        FieldError::new(format!("has a malformed region: '{value}'"))
                    })?);
                }
                "linked_role_state" => {
                    if filter.linked_role_state.is_some() {
                        return Err(twice());
                    }
                    let state = LinkedRoleState::parse(value).ok_or_else(|| {
                        FieldError::new(format!(
                            "has an unknown linked_role_state '{value}' (one of ABSENT, CREATING, ACTIVE, DELETING, DELETED, DELETION_FAILED)"
                        ))
                    })?;
                    filter.linked_role_state = Some(state);
                }
                "connect_status" => {
                    if filter.connect_status.is_some() {
                        return Err(twice());
                    }
                    filter.connect_status = Some(ConnectStatus::parse(value).ok_or_else(|| {
                        FieldError::new(format!(
                            "has an unknown connect_status '{value}' (one of CREATION_IN_PROGRESS, ACTIVE, CREATION_FAILED)"
                        ))
                    })?);
                }
                "observed_state" => {
                    if filter.observed_state.is_some() {
                        return Err(twice());
                    }
                    filter.observed_state = Some(ObservedState::parse(value).ok_or_else(|| {
                        FieldError::new(format!(
                            "has an unknown observed_state '{value}' (one of UNOBSERVED, OBSERVED, VANISHED)"
                        ))
                    })?);
                }
                "legacy" => {
                    if filter.legacy.is_some() {
                        return Err(twice());
                    }
                    filter.legacy = Some(match value {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(FieldError::new(format!(
                                "has a legacy value '{value}' that is not true or false"
                            )));
                        }
                    });
                }
                other => {
                    return Err(FieldError::new(format!(
                        "cannot filter on '{other}' (supported: {INSTANCE_FIELDS})"
                    )));
                }
            }
        }
        Ok(filter)
    }

    /// A canonical text of the filter, for binding page tokens to it.
    pub fn canonical(&self) -> String {
        format!(
            "region={};state={};connect={};observed={};legacy={}",
            self.region.as_ref().map_or("", |r| r.as_str()),
            self.linked_role_state.map_or("", |s| s.as_str()),
            self.connect_status.map_or("", |s| s.as_str()),
            self.observed_state.map_or("", |s| s.as_str()),
            self.legacy.map_or("", |l| if l { "true" } else { "false" })
        )
    }

    /// Whether `instance` passes the filter: the same test as the store's
    /// SQL for ListInstances (WatchInstances filters the changes it reads
    /// with it; a test holds the two together).
    pub fn matches(&self, instance: &crate::model::Instance) -> bool {
        self.region.as_ref().is_none_or(|r| *r == instance.region)
            && self
                .linked_role_state
                .is_none_or(|s| s == instance.linked_role_state)
            && self
                .connect_status
                .is_none_or(|s| Some(s) == instance.connect.connect_status)
            && self
                .observed_state
                .is_none_or(|s| s == instance.connect.observed_state)
            && self.legacy.is_none_or(|l| l == instance.is_legacy())
    }
}

/// The fields ListFindings filters on.
const FINDING_FIELDS: &str = "code, severity, resolved";

impl FindingFilter {
    /// Parses a ListFindings filter (`code = ROLE_MISSING AND severity =
    /// ERROR AND resolved = false`); the empty string matches everything.
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let mut filter = FindingFilter::default();
        for (field, value) in restrictions(input, FINDING_FIELDS)? {
            let value = value.as_str();
            let twice = || FieldError::new(format!("restricts {field} more than once"));
            match field.as_str() {
                "code" => {
                    if filter.code.is_some() {
                        return Err(twice());
                    }
                    filter.code = Some(FindingCode::parse(value).ok_or_else(|| {
                        let known: Vec<&str> =
                            FindingCode::ALL.iter().map(|c| c.as_str()).collect();
                        FieldError::new(format!(
                            "has an unknown code '{value}' (one of {})",
                            known.join(", ")
                        ))
                    })?);
                }
                "severity" => {
                    if filter.severity.is_some() {
                        return Err(twice());
                    }
                    filter.severity = Some(Severity::parse(value).ok_or_else(|| {
                        FieldError::new(format!(
                            "has an unknown severity '{value}' (one of INFO, WARNING, ERROR)"
                        ))
                    })?);
                }
                "resolved" => {
                    if filter.resolved.is_some() {
                        return Err(twice());
                    }
                    filter.resolved = Some(match value {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(FieldError::new(format!(
                                "has a resolved value '{value}' that is not true or false"
                            )));
                        }
                    });
                }
                other => {
                    return Err(FieldError::new(format!(
                        "cannot filter on '{other}' (supported: {FINDING_FIELDS})"
                    )));
                }
            }
        }
        Ok(filter)
    }

    /// A canonical text of the filter, for binding page tokens to it.
    pub fn canonical(&self) -> String {
        format!(
            "code={};severity={};resolved={}",
            self.code.map_or("", |c| c.as_str()),
            self.severity.map_or("", |s| s.as_str()),
            self.resolved
                .map_or("", |r| if r { "true" } else { "false" })
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_filters_parse_and_refuse_with_the_field_named() {
        let f = FindingFilter::parse(
            "code = ROLE_MISSING AND severity = \"ERROR\" AND resolved = false",
        )
        .expect("filter");
        assert_eq!(f.code, Some(FindingCode::RoleMissing));
        assert_eq!(f.severity, Some(Severity::Error));
        assert_eq!(f.resolved, Some(false));
        assert_eq!(
            FindingFilter::parse("").expect("empty"),
            FindingFilter::default()
        );
        let unknown = FindingFilter::parse("code = NOPE").expect_err("an unknown code");
        assert!(unknown.to_string().contains("ORPHAN_ROLE"), "{unknown}");
        let field = FindingFilter::parse("region = \"us-east-1\"").expect_err("an unknown field");
        assert!(
            field.to_string().contains("code, severity, resolved"),
            "{field}"
        );
        assert!(FindingFilter::parse("resolved = maybe").is_err());
        assert!(FindingFilter::parse("code = ROLE_MISSING AND code = ORPHAN_ROLE").is_err());
    }

    #[test]
    fn accepts_the_documented_forms() {
        let f = InstanceFilter::parse(r#"region = "us-east-1" AND linked_role_state = ACTIVE"#)
            .expect("filter");
        assert_eq!(f.region.expect("region").as_str(), "us-east-1");
        assert_eq!(f.linked_role_state, Some(LinkedRoleState::Active));
        assert_eq!(
            InstanceFilter::parse("").expect("empty"),
            InstanceFilter::default()
        );
        let g = InstanceFilter::parse("linked_role_state=DELETION_FAILED").expect("state");
        assert_eq!(g.linked_role_state, Some(LinkedRoleState::DeletionFailed));
        let h = InstanceFilter::parse(
            "legacy = true AND observed_state = VANISHED AND connect_status = CREATION_FAILED",
        )
        .expect("connect fields");
        assert_eq!(h.legacy, Some(true));
        assert_eq!(h.observed_state, Some(ObservedState::Vanished));
        assert_eq!(h.connect_status, Some(ConnectStatus::CreationFailed));
        assert_ne!(h.canonical(), InstanceFilter::default().canonical());
    }

    #[test]
    fn refuses_everything_else_naming_it() {
        for (input, needle) in [
            (r#"alias = "x""#, "alias"),
            (r#"region = "us-east-1" OR region = "eu-west-2""#, "OR"),
            (r#"region = "us-east-1" AND"#, "AND"),
            ("linked_role_state = ALIVE", "ALIVE"),
            ("legacy = maybe", "maybe"),
            ("observed_state = GONE", "GONE"),
            ("connect_status = RUNNING", "RUNNING"),
            ("legacy = true AND legacy = false", "more than once"),
            (r#"region = "nowhere""#, "nowhere"),
            (r#"region = "us-east-1"#, "unterminated"),
            ("region", "region"),
            ("region != x", "!"),
            (
                r#"region = "us-east-1" AND region = "us-west-2""#,
                "more than once",
            ),
        ] {
            let error = InstanceFilter::parse(input).expect_err(input);
            assert!(
                error.description.contains(needle),
                "{input}: {}",
                error.description
            );
        }
    }
}
