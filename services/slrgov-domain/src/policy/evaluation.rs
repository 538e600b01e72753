//! The decision for one request against a role's policies.

use std::fmt;

use super::statement::Statement;
use super::{Effect, NamedPolicy, StatementMatch};

/// The outcome of evaluating one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// An unconditional `Allow` applies and no `Deny` can apply.
    Allowed,
    /// No `Allow` applies.
    ImplicitDeny,
    /// An unconditional `Deny` applies.
    ExplicitDeny,
    /// The outcome depends on conditions (or policy variables) that only
    /// the request context resolves: a conditional `Allow` is all there is,
    /// or a conditional `Deny` could override an `Allow`.
    Conditional,
}

impl Decision {
    /// The decision's API name (`ALLOWED`, `IMPLICIT_DENY`, `EXPLICIT_DENY`,
    /// `CONDITIONAL`).
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "ALLOWED",
            Decision::ImplicitDeny => "IMPLICIT_DENY",
            Decision::ExplicitDeny => "EXPLICIT_DENY",
            Decision::Conditional => "CONDITIONAL",
        }
    }

    /// True only for [`Decision::Allowed`].
    pub fn is_allowed(self) -> bool {
        self == Decision::Allowed
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision for one request, and the statement that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The decision.
    pub decision: Decision,
    /// The `source` of the policy whose statement decided it (`None` for an
    /// implicit deny).
    pub source_policy: Option<String>,
    /// That statement's `Sid`, if it has one.
    pub statement: Option<String>,
}

impl Evaluation {
    pub(super) fn implicit_deny() -> Self {
        Evaluation {
            decision: Decision::ImplicitDeny,
            source_policy: None,
            statement: None,
        }
    }
}

/// Evaluates `action` on `resource` against a role's policies, with the
/// rules in the [module documentation](crate::policy): an unconditional `Deny`
/// wins; then an unconditional `Allow` (downgraded to `Conditional` by a
/// conditional `Deny` that could apply); then a conditional `Allow`
/// (`Conditional`); else an implicit deny. Statements without a resource
/// element (trust-policy statements) never apply; principals are ignored.
pub fn evaluate(policies: &[NamedPolicy], action: &str, resource: &str) -> Evaluation {
    let lowered: Vec<char> = action.to_lowercase().chars().collect();
    let resource: Vec<char> = resource.chars().collect();
    let decided = |policy: &NamedPolicy, statement: &Statement, decision| Evaluation {
        decision,
        source_policy: Some(policy.source.clone()),
        statement: statement.sid().map(str::to_owned),
    };
    let mut conditional_deny: Option<Evaluation> = None;
    let mut allow: Option<Evaluation> = None;
    let mut conditional_allow: Option<Evaluation> = None;
    for policy in policies {
        for statement in policy.document.statements() {
            let applies = statement.applies(&lowered, &resource);
            match (statement.effect(), applies) {
                (_, StatementMatch::No) => {}
                (Effect::Deny, StatementMatch::Yes) => {
                    return decided(policy, statement, Decision::ExplicitDeny);
                }
                (Effect::Deny, StatementMatch::Conditional) => {
                    conditional_deny
                        .get_or_insert_with(|| decided(policy, statement, Decision::Conditional));
                }
                (Effect::Allow, StatementMatch::Yes) => {
                    allow.get_or_insert_with(|| decided(policy, statement, Decision::Allowed));
                }
                (Effect::Allow, StatementMatch::Conditional) => {
                    conditional_allow
                        .get_or_insert_with(|| decided(policy, statement, Decision::Conditional));
                }
            }
        }
    }
    match (allow, conditional_deny, conditional_allow) {
        (Some(_), Some(deny), _) => deny,
        (Some(allow), None, _) => allow,
        (None, _, Some(conditional)) => conditional,
        (None, _, None) => Evaluation::implicit_deny(),
    }
}
