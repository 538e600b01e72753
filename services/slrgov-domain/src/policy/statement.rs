//! Statements: their elements, their parsing, and whether one applies to
//! a request.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::document::{exclusive, optional_string, string_list};
use super::pattern::Pattern;
use super::{Effect, PolicyError, PolicyVersion, StatementMatch};

/// A statement's `Action` or `NotAction`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionSpec {
    /// The statement covers the actions matching any of these.
    Action(Vec<Pattern>),
    /// The statement covers every action matching none of these.
    NotAction(Vec<Pattern>),
}

/// A statement's `Resource` or `NotResource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceSpec {
    /// The statement covers the resources matching any of these.
    Resource(Vec<Pattern>),
    /// The statement covers every resource matching none of these.
    NotResource(Vec<Pattern>),
}

/// A `Principal` or `NotPrincipal` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `"*"`: everyone.
    Any,
    /// Principals by type (`AWS`, `Service`, `Federated`, `CanonicalUser`).
    Specific(BTreeMap<String, Vec<String>>),
}

/// A statement's `Principal` or `NotPrincipal` (resource-based and trust
/// policies only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalSpec {
    /// `Principal`.
    Principal(Principal),
    /// `NotPrincipal`.
    NotPrincipal(Principal),
}

/// One statement of a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    sid: Option<String>,
    effect: Effect,
    actions: ActionSpec,
    resources: Option<ResourceSpec>,
    principals: Option<PrincipalSpec>,
    condition: Option<Map<String, Value>>,
}

impl Statement {
    /// The `Sid`, if any.
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }
    /// The effect.
    pub fn effect(&self) -> Effect {
        self.effect
    }
    /// `Action` or `NotAction`.
    pub fn actions(&self) -> &ActionSpec {
        &self.actions
    }
    /// `Resource` or `NotResource` (absent only in statements with a
    /// principal, as in a trust policy).
    pub fn resources(&self) -> Option<&ResourceSpec> {
        self.resources.as_ref()
    }
    /// `Principal` or `NotPrincipal`, if any.
    pub fn principals(&self) -> Option<&PrincipalSpec> {
        self.principals.as_ref()
    }
    /// The `Condition` block, when present and not empty.
    pub fn condition(&self) -> Option<&Map<String, Value>> {
        self.condition.as_ref()
    }
    /// True when a non-empty `Condition` limits the statement.
    pub fn is_conditional(&self) -> bool {
        self.condition.is_some()
    }

    /// Whether the statement applies to `action` on `resource` (its effect
    /// aside). A statement without `Resource`/`NotResource` applies to
    /// nothing.
    pub fn applies_to(&self, action: &str, resource: &str) -> StatementMatch {
        let lowered: Vec<char> = action.to_lowercase().chars().collect();
        let resource: Vec<char> = resource.chars().collect();
        self.applies(&lowered, &resource)
    }

    pub(super) fn applies(&self, lowered_action: &[char], resource: &[char]) -> StatementMatch {
        let action_hit = match &self.actions {
            ActionSpec::Action(patterns) => {
                patterns.iter().any(|p| p.matches_action(lowered_action))
            }
            ActionSpec::NotAction(patterns) => {
                !patterns.iter().any(|p| p.matches_action(lowered_action))
            }
        };
        if !action_hit {
            return StatementMatch::No;
        }
        // The strongest match among the patterns.
        let best = |patterns: &[Pattern]| {
            patterns
                .iter()
                .map(|p| p.matches_resource(resource))
                .max()
                .unwrap_or(StatementMatch::No)
        };
        let resource_hit = match &self.resources {
            None => StatementMatch::No,
            Some(ResourceSpec::Resource(patterns)) => best(patterns),
            Some(ResourceSpec::NotResource(patterns)) => match best(patterns) {
                StatementMatch::Yes => StatementMatch::No,
                StatementMatch::Conditional => StatementMatch::Conditional,
                StatementMatch::No => StatementMatch::Yes,
            },
        };
        match resource_hit {
            StatementMatch::Yes if self.is_conditional() => StatementMatch::Conditional,
            other => other,
        }
    }
}

pub(super) fn parse_statement(
    object: &Map<String, Value>,
    path: &str,
    version: PolicyVersion,
) -> Result<Statement, PolicyError> {
    const ELEMENTS: [&str; 9] = [
        "Sid",
        "Effect",
        "Principal",
        "NotPrincipal",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
    ];
    for key in object.keys() {
        if !ELEMENTS.contains(&key.as_str()) {
            return Err(PolicyError::malformed(
                &format!("{path}.{key}"),
                "is not a statement element",
            ));
        }
    }
    let sid = optional_string(object, "Sid", &format!("{path}.Sid"))?;
    let effect = match object.get("Effect") {
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(_) => {
            return Err(PolicyError::malformed(
                &format!("{path}.Effect"),
                "must be Allow or Deny",
            ));
        }
        None => {
            return Err(PolicyError::malformed(
                &format!("{path}.Effect"),
                "is required",
            ));
        }
    };

    let actions = match exclusive(object, path, "Action", "NotAction")? {
        None => {
            return Err(PolicyError::malformed(
                path,
                "needs an Action or a NotAction",
            ));
        }
        Some((key, value)) => {
            let element = format!("{path}.{key}");
            let list = string_list(value, &element)?;
            for (index, action) in list.iter().enumerate() {
                if action != "*" && !is_action_pattern(action) {
                    return Err(PolicyError::malformed(
                        &format!("{element}[{index}]"),
                        "must be * or service:action",
                    ));
                }
            }
            let patterns = list.iter().map(|a| Pattern::action(a)).collect();
            if key == "Action" {
                ActionSpec::Action(patterns)
            } else {
                ActionSpec::NotAction(patterns)
            }
        }
    };

    let principals = match exclusive(object, path, "Principal", "NotPrincipal")? {
        None => None,
        Some((key, value)) => {
            let principal = parse_principal(value, &format!("{path}.{key}"))?;
            Some(if key == "Principal" {
                PrincipalSpec::Principal(principal)
            } else {
                PrincipalSpec::NotPrincipal(principal)
            })
        }
    };

    let resources = match exclusive(object, path, "Resource", "NotResource")? {
        None if principals.is_some() => None,
        None => {
            return Err(PolicyError::malformed(
                path,
                "needs a Resource or a NotResource",
            ));
        }
        Some((key, value)) => {
            let element = format!("{path}.{key}");
            let list = string_list(value, &element)?;
            if let Some(index) = list.iter().position(String::is_empty) {
                return Err(PolicyError::malformed(
                    &format!("{element}[{index}]"),
                    "must not be empty",
                ));
            }
            let patterns = list.iter().map(|r| Pattern::resource(r, version)).collect();
            Some(if key == "Resource" {
                ResourceSpec::Resource(patterns)
            } else {
                ResourceSpec::NotResource(patterns)
            })
        }
    };

    let condition = match object.get("Condition") {
        None => None,
        Some(Value::Object(operators)) => {
            for (operator, block) in operators {
                if !block.is_object() {
                    return Err(PolicyError::malformed(
                        &format!("{path}.Condition.{operator}"),
                        "must be an object of condition keys",
                    ));
                }
            }
            (!operators.is_empty()).then(|| operators.clone())
        }
        Some(_) => {
            return Err(PolicyError::malformed(
                &format!("{path}.Condition"),
                "must be an object",
            ));
        }
    };

    Ok(Statement {
        sid,
        effect,
        actions,
        resources,
        principals,
        condition,
    })
}

/// `service:pattern` with a non-empty service prefix.
fn is_action_pattern(action: &str) -> bool {
    action
        .split_once(':')
        .is_some_and(|(service, rest)| !service.is_empty() && !rest.is_empty())
}

fn parse_principal(value: &Value, path: &str) -> Result<Principal, PolicyError> {
    match value {
        Value::String(s) if s == "*" => Ok(Principal::Any),
        Value::Object(types) if !types.is_empty() => {
            let mut map = BTreeMap::new();
            for (kind, ids) in types {
                map.insert(kind.clone(), string_list(ids, &format!("{path}.{kind}"))?);
            }
            Ok(Principal::Specific(map))
        }
        _ => Err(PolicyError::malformed(
            path,
            "must be \"*\" or a non-empty object of principals by type",
        )),
    }
}
