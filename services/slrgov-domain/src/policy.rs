//! IAM identity-policy evaluation, done by the service itself.
//!
//! Real IAM can answer "may this role do X on Y" with
//! `SimulatePrincipalPolicy`, but moto does not implement it, so an
//! inspection evaluates the role's policies here: it parses the documents
//! IAM returns (URL-encoded JSON) and evaluates each required
//! `(action, resource)` pair against all of them.
//!
//! # What is modelled
//!
//! - Documents: `Version` (`2012-10-17` or `2008-10-17`; absent means
//!   `2008-10-17`, as in IAM), `Id`, and `Statement` as one object or an
//!   array. Per statement: `Sid`, `Effect` (`Allow` or `Deny`, spelled as IAM
//!   spells them), `Action` or `NotAction`, `Resource` or `NotResource`,
//!   `Principal` or `NotPrincipal` (parsed so that trust policies parse too;
//!   ignored by [`evaluate`]), and `Condition`. Any other element, a missing
//!   required element, or a value of the wrong type is a [`PolicyError`],
//!   never a panic.
//! - Actions (`service:Action`) match case-insensitively, with `*` (any
//!   run of characters) and `?` (one character).
//! - Resources match case-sensitively with the same wildcards; `*` spans
//!   `:` and `/` (IAM matches the whole ARN string). A request resource of
//!   `*` (an action without resource-level permissions) is only matched by
//!   patterns that match the literal text `*`, such as `*` itself. Likewise a
//!   required resource that itself contains `*` (e.g. `instance/*`) is only
//!   satisfied by a pattern that covers it as written.
//! - Policy variables (`${aws:username}` and the like, version `2012-10-17`
//!   only) cannot be resolved without a request context: a pattern holding
//!   one matches *conditionally* (the variable is treated as `*` and the
//!   match reported as [`StatementMatch::Conditional`]). The escapes `${*}`,
//!   `${?}` and `${$}` stand for the literal characters.
//! - Conditions are not evaluated (there is no request context): a
//!   statement with a non-empty `Condition` applies conditionally. An empty
//!   `Condition` object imposes nothing.
//!
//! # Decision rules ([`evaluate`])
//!
//! Over every statement of every policy that applies to the request:
//!
//! 1. an unconditional `Deny` → [`Decision::ExplicitDeny`];
//! 2. otherwise an unconditional `Allow` → [`Decision::Allowed`], unless a
//!    conditional `Deny` also applies, which could override it: then
//!    [`Decision::Conditional`], reported against that `Deny`;
//! 3. otherwise a conditional `Allow` → [`Decision::Conditional`], reported
//!    against that `Allow`;
//! 4. otherwise [`Decision::ImplicitDeny`] (a conditional `Deny` alone
//!    leaves nothing to deny: still an implicit deny).
//!
//! The statement reported is the first deciding one in policy order, then
//! statement order.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

/// The largest document accepted, in bytes (raw or decoded). IAM's own
/// limits are far lower (10,240 characters for a role's inline policies,
/// 6,144 for a managed policy); anything larger is not an IAM document.
pub const MAX_DOCUMENT_BYTES: usize = 128 * 1024;

/// Why a policy document could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The percent-decoded bytes are not UTF-8.
    #[error("policy document is not valid percent-encoded UTF-8")]
    Encoding,
    /// The document exceeds [`MAX_DOCUMENT_BYTES`].
    #[error("policy document is {size} bytes long; at most {max} are accepted")]
    TooLarge {
        /// The document's size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The text is not JSON.
    #[error("policy document is not valid JSON: {0}")]
    Json(String),
    /// The JSON is not a policy document.
    #[error("policy document is malformed at {path}: {message}")]
    Malformed {
        /// Where, e.g. `Statement[1].Effect` (`$` for the document itself).
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl PolicyError {
    fn malformed(path: &str, message: impl Into<String>) -> Self {
        PolicyError::Malformed {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// The policy language version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyVersion {
    /// `2008-10-17`: no policy variables.
    V2008_10_17,
    /// `2012-10-17`: the current language, with policy variables.
    V2012_10_17,
}

impl PolicyVersion {
    /// The version string.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyVersion::V2008_10_17 => "2008-10-17",
            PolicyVersion::V2012_10_17 => "2012-10-17",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "2008-10-17" => Some(PolicyVersion::V2008_10_17),
            "2012-10-17" => Some(PolicyVersion::V2012_10_17),
            _ => None,
        }
    }
}

/// A statement's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// `Allow`.
    Allow,
    /// `Deny`.
    Deny,
}

/// One token of a compiled wildcard pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// A character that must be present as is.
    Literal(char),
    /// `?`: exactly one character.
    AnyChar,
    /// `*` (or a policy variable): any run of characters, possibly empty.
    AnySequence,
}

/// A compiled `Action` or `Resource` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    tokens: Vec<Token>,
    has_variable: bool,
}

impl Pattern {
    /// An action pattern: compared case-insensitively, no variables.
    fn action(text: &str) -> Self {
        let lowered = text.to_lowercase();
        let tokens = compile(lowered.chars(), false).0;
        Pattern {
            text: text.to_owned(),
            tokens,
            has_variable: false,
        }
    }

    /// A resource pattern: compared case-sensitively; policy variables in
    /// version 2012-10-17 documents.
    fn resource(text: &str, version: PolicyVersion) -> Self {
        let (tokens, has_variable) =
            compile(text.chars(), matches!(version, PolicyVersion::V2012_10_17));
        Pattern {
            text: text.to_owned(),
            tokens,
            has_variable,
        }
    }

    /// The pattern as written in the document.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the pattern holds a policy variable (so it can only match
    /// conditionally).
    pub fn has_variable(&self) -> bool {
        self.has_variable
    }

    fn matches_action(&self, lowered_action: &[char]) -> bool {
        match_tokens(&self.tokens, lowered_action)
    }

    fn matches_resource(&self, resource: &[char]) -> StatementMatch {
        if !match_tokens(&self.tokens, resource) {
            StatementMatch::No
        } else if self.has_variable {
            StatementMatch::Conditional
        } else {
            StatementMatch::Yes
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Compiles a wildcard pattern into tokens. With `variables`, `${...}` is
/// a policy variable (an [`Token::AnySequence`], flagged) except for the
/// escapes `${*}`, `${?}` and `${$}`; an unterminated `${` is literal.
/// Returns the tokens and whether a variable was seen.
fn compile(chars: impl Iterator<Item = char>, variables: bool) -> (Vec<Token>, bool) {
    let chars: Vec<char> = chars.collect();
    let mut tokens = Vec::with_capacity(chars.len());
    let mut has_variable = false;
    let push = |tokens: &mut Vec<Token>, token: Token| {
        // Consecutive stars are one star.
        if !(token == Token::AnySequence && tokens.last() == Some(&Token::AnySequence)) {
            tokens.push(token);
        }
    };
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if variables && c == '$' && chars.get(i + 1) == Some(&'{') {
            let close = chars
                .get(i + 2..)
                .and_then(|rest| rest.iter().position(|&x| x == '}'))
                .map(|offset| i + 2 + offset);
            if let Some(close) = close {
                let inner: String = chars.get(i + 2..close).unwrap_or_default().iter().collect();
                match inner.as_str() {
                    "*" => push(&mut tokens, Token::Literal('*')),
                    "?" => push(&mut tokens, Token::Literal('?')),
                    "$" => push(&mut tokens, Token::Literal('$')),
                    "" => {
                        // `${}` is no variable: keep the text literally.
                        push(&mut tokens, Token::Literal('$'));
                        push(&mut tokens, Token::Literal('{'));
                        push(&mut tokens, Token::Literal('}'));
                    }
                    _ => {
                        has_variable = true;
                        push(&mut tokens, Token::AnySequence);
                    }
                }
                i = close + 1;
                continue;
            }
        }
        let token = match c {
            '*' => Token::AnySequence,
            '?' => Token::AnyChar,
            other => Token::Literal(other),
        };
        push(&mut tokens, token);
        i += 1;
    }
    (tokens, has_variable)
}

/// Matches compiled tokens against text with the classic iterative
/// two-pointer algorithm: on a mismatch, retry from the most recent `*`
/// with it absorbing one more character. Time is O(pattern × text) at
/// worst, memory O(1); there is no recursion and no exponential
/// backtracking.
fn match_tokens(pattern: &[Token], text: &[char]) -> bool {
    let mut p = 0;
    let mut t = 0;
    // The pattern index just after the last `*` seen, and the text index
    // that star's run currently ends at.
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = text.get(t) {
        match pattern.get(p) {
            Some(Token::AnySequence) => {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(Token::AnyChar) => {
                p += 1;
                t += 1;
                continue;
            }
            Some(Token::Literal(expected)) if *expected == c => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((after_star, run_end)) => {
                star = Some((after_star, run_end + 1));
                p = after_star;
                t = run_end + 1;
            }
            None => return false,
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|token| *token == Token::AnySequence))
}

/// Matches `text` against a wildcard `pattern` case-sensitively, IAM
/// resource style: `*` is any run of characters (including `:` and `/`),
/// `?` is one character, everything else is literal (no policy variables).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let tokens = compile(pattern.chars(), false).0;
    let text: Vec<char> = text.chars().collect();
    match_tokens(&tokens, &text)
}

/// Matches an IAM action (`service:Action`) against an action pattern,
/// case-insensitively, with `*` and `?` wildcards.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    let lowered: Vec<char> = action.to_lowercase().chars().collect();
    Pattern::action(pattern).matches_action(&lowered)
}

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

/// Whether a statement applies to a request. Ordered from `No` to `Yes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatementMatch {
    /// It does not.
    No,
    /// It may: a condition or a policy variable decides, which only the
    /// request context can resolve.
    Conditional,
    /// It does, whatever the request context.
    Yes,
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

    fn applies(&self, lowered_action: &[char], resource: &[char]) -> StatementMatch {
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

/// A parsed IAM policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    version: Option<PolicyVersion>,
    id: Option<String>,
    statements: Vec<Statement>,
}

impl PolicyDocument {
    /// Parses a policy document from JSON text.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        check_size(text)?;
        let value: Value =
            serde_json::from_str(text).map_err(|e| PolicyError::Json(e.to_string()))?;
        Self::from_value(&value)
    }

    /// Parses a document as IAM returns it: URL-encoded JSON (RFC 3986
    /// percent-encoding). Text that already starts with `{` is taken as
    /// decoded JSON and parsed as is (so that a decoded document is never
    /// decoded twice). If the decoded text is not JSON and the raw text
    /// holds `+`, it is tried once more with `+` read as a space
    /// (form-encoding), which some encoders produce.
    pub fn parse_url_encoded(text: &str) -> Result<Self, PolicyError> {
        check_size(text)?;
        if text.trim_start().starts_with('{') {
            return Self::parse(text);
        }
        let decoded = percent_decode(text)?;
        match Self::parse(&decoded) {
            Err(PolicyError::Json(message)) if text.contains('+') => {
                let form = percent_decode(&text.replace('+', "%20"))?;
                Self::parse(&form).map_err(|_| PolicyError::Json(message))
            }
            other => other,
        }
    }

    /// The declared version (`None` when absent, which IAM reads as
    /// `2008-10-17`).
    pub fn version(&self) -> Option<PolicyVersion> {
        self.version
    }

    /// The `Id`, if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The statements, in document order.
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    fn from_value(value: &Value) -> Result<Self, PolicyError> {
        let Value::Object(object) = value else {
            return Err(PolicyError::malformed("$", "must be a JSON object"));
        };
        for key in object.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                return Err(PolicyError::malformed(
                    key,
                    "is not a policy element (Version, Id, Statement)",
                ));
            }
        }
        let version = match object.get("Version") {
            None => None,
            Some(Value::String(v)) => Some(PolicyVersion::parse(v).ok_or_else(|| {
                PolicyError::malformed("Version", "must be 2012-10-17 or 2008-10-17")
            })?),
            Some(_) => return Err(PolicyError::malformed("Version", "must be a string")),
        };
        let id = optional_string(object, "Id", "Id")?;
        let effective = version.unwrap_or(PolicyVersion::V2008_10_17);
        let statements = match object.get("Statement") {
            None => return Err(PolicyError::malformed("Statement", "is required")),
            Some(Value::Object(single)) => vec![parse_statement(single, "Statement", effective)?],
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    let path = format!("Statement[{index}]");
                    match item {
                        Value::Object(statement) => parse_statement(statement, &path, effective),
                        _ => Err(PolicyError::malformed(&path, "must be a JSON object")),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(PolicyError::malformed(
                    "Statement",
                    "must be an object or an array of objects",
                ));
            }
        };
        Ok(PolicyDocument {
            version,
            id,
            statements,
        })
    }
}

impl FromStr for PolicyDocument {
    type Err = PolicyError;
    fn from_str(text: &str) -> Result<Self, PolicyError> {
        Self::parse(text)
    }
}

fn check_size(text: &str) -> Result<(), PolicyError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(PolicyError::TooLarge {
            size: text.len(),
            max: MAX_DOCUMENT_BYTES,
        });
    }
    Ok(())
}

fn percent_decode(text: &str) -> Result<String, PolicyError> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| PolicyError::Encoding)
}

fn optional_string(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, PolicyError> {
    match object.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(PolicyError::malformed(path, "must be a string")),
    }
}

/// A string or a non-empty array of strings.
fn string_list(value: &Value, path: &str) -> Result<Vec<String>, PolicyError> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if items.is_empty() => {
            Err(PolicyError::malformed(path, "must not be an empty array"))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err(PolicyError::malformed(
                    &format!("{path}[{index}]"),
                    "must be a string",
                )),
            })
            .collect(),
        _ => Err(PolicyError::malformed(
            path,
            "must be a string or an array of strings",
        )),
    }
}

/// Returns the one present element of an exclusive pair (`Action` and
/// `NotAction`, ...), with its key.
fn exclusive<'a>(
    object: &'a Map<String, Value>,
    path: &str,
    key: &'static str,
    not_key: &'static str,
) -> Result<Option<(&'static str, &'a Value)>, PolicyError> {
    match (object.get(key), object.get(not_key)) {
        (Some(_), Some(_)) => Err(PolicyError::malformed(
            path,
            format!("must not have both {key} and {not_key}"),
        )),
        (Some(value), None) => Ok(Some((key, value))),
        (None, Some(value)) => Ok(Some((not_key, value))),
        (None, None) => Ok(None),
    }
}

fn parse_statement(
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

/// A policy attached to the role, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPolicy {
    /// Where the document came from: a managed policy's ARN, or
    /// `inline:<name>` for an inline policy.
    pub source: String,
    /// The document.
    pub document: PolicyDocument,
}

impl NamedPolicy {
    /// Pairs a document with its source label.
    pub fn new(source: impl Into<String>, document: PolicyDocument) -> Self {
        NamedPolicy {
            source: source.into(),
            document,
        }
    }

    /// Parses a URL-encoded document as IAM returns it and labels it.
    pub fn parse_url_encoded(source: impl Into<String>, text: &str) -> Result<Self, PolicyError> {
        Ok(Self::new(source, PolicyDocument::parse_url_encoded(text)?))
    }
}

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
    fn implicit_deny() -> Self {
        Evaluation {
            decision: Decision::ImplicitDeny,
            source_policy: None,
            statement: None,
        }
    }
}

/// Evaluates `action` on `resource` against a role's policies, with the
/// rules in the [module documentation](self): an unconditional `Deny`
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
        statement: statement.sid.clone(),
    };
    let mut conditional_deny: Option<Evaluation> = None;
    let mut allow: Option<Evaluation> = None;
    let mut conditional_allow: Option<Evaluation> = None;
    for policy in policies {
        for statement in &policy.document.statements {
            let applies = statement.applies(&lowered, &resource);
            match (statement.effect, applies) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the AWS-managed AmazonConnectServiceLinkedRolePolicy
    /// (abridged).
    const MANAGED: &str = r#"{
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

    const MANAGED_ARN: &str =
        "arn:aws:iam::aws:policy/aws-service-role/AmazonConnectServiceLinkedRolePolicy";

    fn doc(text: &str) -> PolicyDocument {
        PolicyDocument::parse(text).expect("valid policy")
    }

    fn managed() -> NamedPolicy {
        NamedPolicy::new(MANAGED_ARN, doc(MANAGED))
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

    #[test]
    fn wildcards_in_actions() {
        assert!(action_matches("*", "s3:GetObject"));
        assert!(action_matches("s3:Get*", "s3:GetObject"));
        assert!(action_matches("s3:Get*", "s3:Get"));
        assert!(!action_matches("s3:Get*", "s3:PutObject"));
        assert!(action_matches("connect:*", "connect:DescribeInstance"));
        assert!(!action_matches(
            "connect:*",
            "connect-campaigns:ListCampaigns"
        ));
        assert!(action_matches(
            "connect*",
            "connect-campaigns:ListCampaigns"
        ));
        assert!(action_matches("lex:List?ots", "lex:ListBots"));
        assert!(!action_matches("lex:List?ots", "lex:ListBotAliases"));
        assert!(!action_matches("lex:List?ots", "lex:Listots"));
        assert!(action_matches("lex:*Bot*", "lex:ListBotAliases"));
    }

    #[test]
    fn actions_are_case_insensitive() {
        assert!(action_matches("S3:GETOBJECT", "s3:getobject"));
        assert!(action_matches("s3:getobject", "S3:GetObject"));
        assert!(action_matches("LEX:list?OTS", "lex:ListBots"));
        let policies = [inline(
            "p",
            r#"{"Version": "2012-10-17", "Statement":
            {"Effect": "Allow", "Action": "CloudWatch:putmetricdata", "Resource": "*"}}"#,
        )];
        assert_eq!(
            decision(&policies, "cloudwatch:PutMetricData", "*"),
            Decision::Allowed
        );
    }

    #[test]
    fn resources_are_case_sensitive_and_star_spans_separators() {
        assert!(wildcard_match(
            "arn:aws:s3:::amazon-connect-*/*",
            "arn:aws:s3:::amazon-connect-abc/x/y"
        ));
        assert!(wildcard_match(
            "arn:aws:logs:*:*:log-group:/aws/connect/*:*",
            "arn:aws:logs:us-east-1:123456789012:log-group:/aws/connect/i-1:*"
        ));
        assert!(wildcard_match("arn:*", "arn:aws:s3:::b"));
        assert!(!wildcard_match(
            "arn:aws:s3:::amazon-connect-*/*",
            "arn:aws:s3:::Amazon-Connect-abc/x"
        ));
        assert!(!wildcard_match(
            "arn:aws:s3:::amazon-connect-*/*",
            "arn:aws:s3:::amazon-connect-abc"
        ));
        assert!(wildcard_match("arn:aws:s3:::b?cket", "arn:aws:s3:::bucket"));
        assert!(!wildcard_match("arn:aws:s3:::b?cket", "arn:aws:s3:::bcket"));
        assert!(wildcard_match("", ""));
        assert!(!wildcard_match("", "x"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("?", ""));
        // A request on `*` is only covered by patterns that cover the text `*`.
        assert!(wildcard_match("*", "*"));
        assert!(!wildcard_match("arn:aws:lex:*", "*"));

        let policies = [inline(
            "p",
            r#"{"Version": "2012-10-17", "Statement":
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::Bucket/*"}}"#,
        )];
        assert_eq!(
            decision(&policies, "s3:GetObject", "arn:aws:s3:::Bucket/k"),
            Decision::Allowed
        );
        assert_eq!(
            decision(&policies, "s3:GetObject", "arn:aws:s3:::bucket/k"),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn the_managed_policy_shape() {
        let policies = [managed()];
        let allowed = [
            (
                "connect:DescribeInstance",
                "arn:aws:connect:us-east-1:123456789012:instance/*",
            ),
            ("connect:ListUsers", "*"),
            (
                "s3:PutObject",
                "arn:aws:s3:::amazon-connect-1a2b3c/connect/x/CallRecordings/a.wav",
            ),
            ("s3:GetBucketAcl", "arn:aws:s3:::amazon-connect-1a2b3c"),
            (
                "logs:PutLogEvents",
                "arn:aws:logs:us-east-1:123456789012:log-group:/aws/connect/my-instance:*",
            ),
            ("lex:ListBots", "*"),
            ("lex:ListBotAliases", "*"),
        ];
        for (action, resource) in allowed {
            let evaluation = evaluate(&policies, action, resource);
            assert_eq!(
                evaluation.decision,
                Decision::Allowed,
                "{action} {resource}"
            );
            assert_eq!(evaluation.source_policy.as_deref(), Some(MANAGED_ARN));
        }
        let evaluation = evaluate(
            &policies,
            "s3:GetBucketLocation",
            "arn:aws:s3:::amazon-connect-x",
        );
        assert_eq!(
            evaluation.statement.as_deref(),
            Some("AllowGetBucketMetadataForConnectBucket")
        );

        let metrics = evaluate(&policies, "cloudwatch:PutMetricData", "*");
        assert_eq!(metrics.decision, Decision::Conditional);
        assert_eq!(metrics.source_policy.as_deref(), Some(MANAGED_ARN));
        assert_eq!(
            metrics.statement.as_deref(),
            Some("AllowPutMetricsForConnectNamespace")
        );

        let denied = [
            ("s3:GetObject", "arn:aws:s3:::my-recordings/x"),
            ("s3:DeleteBucket", "arn:aws:s3:::amazon-connect-1a2b3c"),
            (
                "logs:PutLogEvents",
                "arn:aws:logs:us-east-1:123456789012:log-group:/custom:*",
            ),
            (
                "lex:PostContent",
                "arn:aws:lex:us-east-1:123456789012:bot:Order:prod",
            ),
            ("connect-campaigns:ListCampaigns", "*"),
        ];
        for (action, resource) in denied {
            let evaluation = evaluate(&policies, action, resource);
            assert_eq!(
                evaluation,
                Evaluation::implicit_deny(),
                "{action} {resource}"
            );
        }
    }

    #[test]
    fn explicit_deny_overrides_allow() {
        let policies = [
            managed(),
            inline(
                "guard",
                r#"{"Version": "2012-10-17", "Statement": [
                {"Sid": "NoDeletes", "Effect": "Deny", "Action": "s3:Delete*",
                 "Resource": "arn:aws:s3:::amazon-connect-*/*"}]}"#,
            ),
        ];
        let evaluation = evaluate(
            &policies,
            "s3:DeleteObject",
            "arn:aws:s3:::amazon-connect-a/k",
        );
        assert_eq!(
            evaluation,
            Evaluation {
                decision: Decision::ExplicitDeny,
                source_policy: Some("inline:guard".to_owned()),
                statement: Some("NoDeletes".to_owned()),
            }
        );
        assert_eq!(
            decision(&policies, "s3:GetObject", "arn:aws:s3:::amazon-connect-a/k"),
            Decision::Allowed
        );
        // Policy order does not matter.
        let reversed = [policies[1].clone(), policies[0].clone()];
        assert_eq!(
            decision(
                &reversed,
                "s3:DeleteObject",
                "arn:aws:s3:::amazon-connect-a/k"
            ),
            Decision::ExplicitDeny
        );
    }

    #[test]
    fn conditional_deny_downgrades_allow() {
        let policies = [
            managed(),
            inline(
                "mfa",
                r#"{"Version": "2012-10-17", "Statement": [
                {"Sid": "DenyOutsideVpc", "Effect": "Deny", "Action": "s3:*", "Resource": "*",
                 "Condition": {"StringNotEquals": {"aws:SourceVpc": "vpc-1"}}}]}"#,
            ),
        ];
        let evaluation = evaluate(&policies, "s3:GetObject", "arn:aws:s3:::amazon-connect-a/k");
        assert_eq!(
            evaluation,
            Evaluation {
                decision: Decision::Conditional,
                source_policy: Some("inline:mfa".to_owned()),
                statement: Some("DenyOutsideVpc".to_owned()),
            }
        );
        // Nothing to downgrade: a conditional deny alone is an implicit deny.
        assert_eq!(
            decision(&policies, "s3:GetObject", "arn:aws:s3:::elsewhere/k"),
            Decision::ImplicitDeny
        );
        // Unrelated actions are untouched.
        assert_eq!(decision(&policies, "lex:ListBots", "*"), Decision::Allowed);
    }

    #[test]
    fn unconditional_allow_beats_conditional_allow() {
        let policies = [
            managed(),
            inline(
                "metrics",
                r#"{"Version": "2012-10-17", "Statement":
                {"Sid": "AnyMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"}}"#,
            ),
        ];
        let evaluation = evaluate(&policies, "cloudwatch:PutMetricData", "*");
        assert_eq!(evaluation.decision, Decision::Allowed);
        assert_eq!(evaluation.source_policy.as_deref(), Some("inline:metrics"));
        assert_eq!(evaluation.statement.as_deref(), Some("AnyMetrics"));
        // An empty Condition is no condition.
        let empty = [inline(
            "e",
            r#"{"Version": "2012-10-17", "Statement":
            {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*", "Condition": {}}}"#,
        )];
        assert_eq!(
            decision(&empty, "cloudwatch:PutMetricData", "*"),
            Decision::Allowed
        );
        assert!(!empty[0].document.statements()[0].is_conditional());
    }

    #[test]
    fn not_action_and_not_resource() {
        let policies = [inline(
            "not",
            r#"{"Version": "2012-10-17", "Statement": [
              {"Sid": "AllButIam", "Effect": "Allow", "NotAction": ["iam:*", "sts:*"], "Resource": "*"},
              {"Sid": "NotSecret", "Effect": "Deny", "Action": "s3:GetObject",
               "NotResource": ["arn:aws:s3:::public/*", "arn:aws:s3:::shared-?/*"]}
            ]}"#,
        )];
        assert_eq!(
            decision(&policies, "connect:ListUsers", "*"),
            Decision::Allowed
        );
        assert_eq!(
            decision(&policies, "IAM:DeleteRole", "*"),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decision(&policies, "sts:AssumeRole", "*"),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decision(&policies, "s3:GetObject", "arn:aws:s3:::public/a"),
            Decision::Allowed
        );
        assert_eq!(
            decision(&policies, "s3:GetObject", "arn:aws:s3:::shared-1/a"),
            Decision::Allowed
        );
        let denied = evaluate(&policies, "s3:GetObject", "arn:aws:s3:::secret/a");
        assert_eq!(denied.decision, Decision::ExplicitDeny);
        assert_eq!(denied.statement.as_deref(), Some("NotSecret"));
        // NotResource with NotAction together.
        let both = [inline(
            "both",
            r#"{"Version": "2012-10-17", "Statement":
              {"Effect": "Allow", "NotAction": "s3:*", "NotResource": "arn:aws:kms:*"}}"#,
        )];
        assert_eq!(decision(&both, "lex:ListBots", "*"), Decision::Allowed);
        assert_eq!(
            decision(&both, "kms:Decrypt", "arn:aws:kms:us-east-1:1:key/k"),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decision(&both, "s3:GetObject", "arn:aws:s3:::b/k"),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn policy_variables_match_conditionally() {
        let text = r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "Own", "Effect": "Allow", "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::home/${aws:username}/*"},
            {"Sid": "Literal", "Effect": "Allow", "Action": "s3:PutObject",
             "Resource": "arn:aws:s3:::weird/${*}${?}${$}"}
        ]}"#;
        let policies = [inline("vars", text)];
        assert_eq!(
            decision(&policies, "s3:GetObject", "arn:aws:s3:::home/alice/x"),
            Decision::Conditional
        );
        assert_eq!(
            decision(&policies, "s3:GetObject", "arn:aws:s3:::other/alice/x"),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decision(&policies, "s3:PutObject", "arn:aws:s3:::weird/*?$"),
            Decision::Allowed
        );
        assert_eq!(
            decision(&policies, "s3:PutObject", "arn:aws:s3:::weird/abc"),
            Decision::ImplicitDeny
        );
        // Version 2008-10-17 has no variables: `${...}` is literal text.
        let old = [inline(
            "old",
            r#"{"Version": "2008-10-17", "Statement": {"Effect": "Allow", "Action": "s3:GetObject",
               "Resource": "arn:aws:s3:::home/${aws:username}/*"}}"#,
        )];
        assert_eq!(
            decision(&old, "s3:GetObject", "arn:aws:s3:::home/alice/x"),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decision(&old, "s3:GetObject", "arn:aws:s3:::home/${aws:username}/x"),
            Decision::Allowed
        );
    }

    #[test]
    fn statement_object_or_array() {
        let object = doc(r#"{"Version": "2012-10-17", "Statement":
            {"Sid": "One", "Effect": "Allow", "Action": "lex:ListBots", "Resource": "*"}}"#);
        let array = doc(r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "One", "Effect": "Allow", "Action": ["lex:ListBots"], "Resource": ["*"]}]}"#);
        assert_eq!(object.statements().len(), 1);
        assert_eq!(array.statements().len(), 1);
        assert_eq!(object.statements()[0].sid(), Some("One"));
        assert_eq!(object.version(), Some(PolicyVersion::V2012_10_17));
        for document in [object, array] {
            let policies = [NamedPolicy::new("p", document)];
            assert_eq!(decision(&policies, "lex:ListBots", "*"), Decision::Allowed);
        }
        let empty = doc(r#"{"Version": "2012-10-17", "Statement": []}"#);
        assert!(empty.statements().is_empty());
        assert_eq!(
            decision(&[NamedPolicy::new("p", empty)], "lex:ListBots", "*"),
            Decision::ImplicitDeny
        );
        let no_version =
            doc(r#"{"Id": "x", "Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"}}"#);
        assert_eq!(no_version.version(), None);
        assert_eq!(no_version.id(), Some("x"));
        assert_eq!(no_version.statements()[0].sid(), None);
        let evaluation = evaluate(&[NamedPolicy::new("p", no_version)], "s3:x", "y");
        assert_eq!(evaluation.decision, Decision::ExplicitDeny);
        assert_eq!(evaluation.statement, None);
    }

    #[test]
    fn url_encoded_documents() {
        // As IAM returns them (spaces and punctuation percent-encoded).
        let encoded = "%7B%22Version%22%3A%20%222012-10-17%22%2C%20%22Statement%22%3A%20%5B%7B%22Sid%22%3A%20%22Lex%22%2C%20%22Effect%22%3A%20%22Allow%22%2C%20%22Action%22%3A%20%22lex%3APostContent%22%2C%20%22Resource%22%3A%20%22arn%3Aaws%3Alex%3Aus-east-1%3A123456789012%3Abot%3AOrder%3A%2A%22%7D%5D%7D";
        let policy = NamedPolicy::parse_url_encoded("inline:lex", encoded).expect("decodes");
        let evaluation = evaluate(
            &[policy],
            "lex:PostContent",
            "arn:aws:lex:us-east-1:123456789012:bot:Order:prod",
        );
        assert_eq!(evaluation.decision, Decision::Allowed);
        assert_eq!(evaluation.statement.as_deref(), Some("Lex"));
        // Already-decoded JSON passes through untouched (a `%` stays a `%`).
        let plain = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/100%25"}}"#;
        let parsed = PolicyDocument::parse_url_encoded(plain).expect("plain json");
        let policies = [NamedPolicy::new("p", parsed)];
        assert_eq!(
            decision(&policies, "s3:GetObject", "arn:aws:s3:::b/100%25"),
            Decision::Allowed
        );
        // Form encoding (`+` for spaces) is accepted as a fallback.
        let form = "%7B%22Statement%22%3A+%7B%22Effect%22%3A+%22Allow%22%2C+%22Action%22%3A+%22s3%3A%2A%22%2C+%22Resource%22%3A+%22%2A%22%7D%7D";
        assert!(PolicyDocument::parse_url_encoded(form).is_ok());
        // Invalid UTF-8 after decoding.
        assert_eq!(
            PolicyDocument::parse_url_encoded("%7B%FF%7D"),
            Err(PolicyError::Encoding)
        );
        // Encoded garbage is a JSON error, not a panic.
        assert!(matches!(
            PolicyDocument::parse_url_encoded("%7Bnot%20json"),
            Err(PolicyError::Json(_))
        ));
    }

    #[test]
    fn malformed_documents_are_typed_errors() {
        for text in ["", "{", "not json", "{\"Statement\": [}", "\u{0}"] {
            assert!(
                matches!(PolicyDocument::parse(text), Err(PolicyError::Json(_))),
                "{text:?}"
            );
        }
        let cases = [
            ("[]", "$"),
            ("\"x\"", "$"),
            ("{}", "Statement"),
            (r#"{"Version": "2012-10-17"}"#, "Statement"),
            (r#"{"Version": "2013-01-01", "Statement": []}"#, "Version"),
            (r#"{"Version": 2012, "Statement": []}"#, "Version"),
            (r#"{"Statement": "x"}"#, "Statement"),
            (r#"{"Statement": [1]}"#, "Statement[0]"),
            (r#"{"Statement": [], "Extra": 1}"#, "Extra"),
            (
                r#"{"Statement": {"Action": "s3:*", "Resource": "*"}}"#,
                "Statement.Effect",
            ),
            (
                r#"{"Statement": {"Effect": "allow", "Action": "s3:*", "Resource": "*"}}"#,
                "Statement.Effect",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Resource": "*"}}"#,
                "Statement",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "NotAction": "s3:Get*", "Resource": "*"}}"#,
                "Statement",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "s3:*"}}"#,
                "Statement",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "NotResource": "*"}}"#,
                "Statement",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": [], "Resource": "*"}}"#,
                "Statement.Action",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": 3, "Resource": "*"}}"#,
                "Statement.Action",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": ["s3:*", null], "Resource": "*"}}"#,
                "Statement.Action[1]",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "GetObject", "Resource": "*"}}"#,
                "Statement.Action[0]",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": [""]}}"#,
                "Statement.Resource[0]",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": []}}"#,
                "Statement.Condition",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": true}}}"#,
                "Statement.Condition.Bool",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Sid": 5}]}"#,
                "Statement[1].Sid",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condtion": {}}}"#,
                "Statement.Condtion",
            ),
            (
                r#"{"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": "someone"}}"#,
                "Statement.Principal",
            ),
        ];
        for (text, path) in cases {
            assert_eq!(malformed_path(text), path, "{text}");
        }
        let too_big = format!(
            "{{\"Statement\": [], \"Id\": \"{}\"}}",
            "x".repeat(MAX_DOCUMENT_BYTES)
        );
        assert!(matches!(
            PolicyDocument::parse(&too_big),
            Err(PolicyError::TooLarge { .. })
        ));
        // Error messages name the place.
        let message = PolicyDocument::parse(
            r#"{"Statement": {"Effect": "Maybe", "Action": "s3:*", "Resource": "*"}}"#,
        )
        .expect_err("bad effect")
        .to_string();
        assert!(message.contains("Statement.Effect"), "{message}");
    }

    #[test]
    fn trust_policies_parse_and_never_grant() {
        let trust = doc(
            r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Service": "connect.amazonaws.com"}, "Action": "sts:AssumeRole"}]}"#,
        );
        let statement = &trust.statements()[0];
        assert_eq!(statement.resources(), None);
        let Some(PrincipalSpec::Principal(Principal::Specific(map))) = statement.principals()
        else {
            panic!("principal expected");
        };
        assert_eq!(
            map.get("Service"),
            Some(&vec!["connect.amazonaws.com".to_owned()])
        );
        assert_eq!(
            statement.applies_to("sts:AssumeRole", "*"),
            StatementMatch::No
        );
        assert_eq!(
            decision(&[NamedPolicy::new("trust", trust)], "sts:AssumeRole", "*"),
            Decision::ImplicitDeny
        );
        let any = doc(r#"{"Statement": {"Effect": "Deny", "NotPrincipal": "*", "Action": "*"}}"#);
        assert!(matches!(
            any.statements()[0].principals(),
            Some(PrincipalSpec::NotPrincipal(Principal::Any))
        ));
    }

    #[test]
    fn statement_applies_to() {
        let document = doc(MANAGED);
        let metrics = &document.statements()[5];
        assert_eq!(
            metrics.applies_to("cloudwatch:putmetricdata", "*"),
            StatementMatch::Conditional
        );
        assert!(
            metrics
                .condition()
                .is_some_and(|c| c.contains_key("StringEquals"))
        );
        let connect = &document.statements()[0];
        assert_eq!(connect.effect(), Effect::Allow);
        assert_eq!(
            connect.applies_to("connect:X", "anything"),
            StatementMatch::Yes
        );
        assert_eq!(connect.applies_to("s3:X", "*"), StatementMatch::No);
        let ActionSpec::Action(patterns) = connect.actions() else {
            panic!("Action expected");
        };
        assert_eq!(patterns[0].as_str(), "connect:*");
        assert!(!patterns[0].has_variable());
    }

    /// A small deterministic xorshift generator: no dependency needed.
    struct Rng(u64);

    impl Rng {
        fn step(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.step() % n as u64) as usize
        }
        fn string(&mut self, alphabet: &[char], max_len: usize) -> String {
            let len = self.below(max_len + 1);
            (0..len)
                .map(|_| alphabet[self.below(alphabet.len())])
                .collect()
        }
    }

    /// An obviously correct (but slow) reference matcher: dynamic
    /// programming over prefixes.
    fn reference_match(pattern: &[char], text: &[char]) -> bool {
        let mut table = vec![vec![false; text.len() + 1]; pattern.len() + 1];
        table[0][0] = true;
        for p in 1..=pattern.len() {
            for t in 0..=text.len() {
                table[p][t] = match pattern[p - 1] {
                    '*' => table[p - 1][t] || (t > 0 && table[p][t - 1]),
                    '?' => t > 0 && table[p - 1][t - 1],
                    c => t > 0 && text[t - 1] == c && table[p - 1][t - 1],
                };
            }
        }
        table[pattern.len()][text.len()]
    }

    #[test]
    fn random_inputs_never_panic_and_agree_with_the_reference() {
        let alphabet = [
            'a', 'b', 'A', ':', '/', '*', '?', '$', '{', '}', '-', 'é', '日', '\u{0}',
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let pattern = rng.string(&alphabet, 12);
            let text = rng.string(&alphabet, 16);
            let got = wildcard_match(&pattern, &text);
            let chars: Vec<char> = pattern.chars().collect();
            let expected = reference_match(&chars, &text.chars().collect::<Vec<_>>());
            assert_eq!(got, expected, "pattern {pattern:?} text {text:?}");
            // The other entry points must not panic either.
            let _ = action_matches(&pattern, &text);
            let resource = Pattern::resource(&pattern, PolicyVersion::V2012_10_17);
            let _ = resource.matches_resource(&text.chars().collect::<Vec<_>>());
            // Every text matches itself once wildcards are absent, and `*`
            // matches everything.
            if !pattern.contains(['*', '?']) {
                assert!(wildcard_match(&pattern, &pattern));
            }
            assert!(wildcard_match("*", &text));
        }
    }

    #[test]
    fn random_documents_never_panic() {
        let alphabet = [
            '{', '}', '[', ']', '"', ':', ',', ' ', 'A', 'S', '*', '%', '7', 'B', '2', '+',
        ];
        let fragments = [
            "\"Statement\"",
            "\"Effect\"",
            "\"Allow\"",
            "\"Deny\"",
            "\"Action\"",
            "\"Resource\"",
            "\"NotAction\"",
            "\"Condition\"",
            "\"Version\"",
            "\"2012-10-17\"",
            "\"s3:*\"",
            "\"*\"",
        ];
        let mut rng = Rng(42);
        for _ in 0..5_000 {
            let mut text = String::new();
            for _ in 0..rng.below(24) {
                if rng.below(3) == 0 {
                    text.push_str(fragments[rng.below(fragments.len())]);
                } else {
                    text.push_str(&rng.string(&alphabet, 3));
                }
            }
            let _ = PolicyDocument::parse(&text);
            let _ = PolicyDocument::parse_url_encoded(&text);
        }
    }

    #[test]
    fn pathological_patterns_are_fast() {
        let text = "a".repeat(5_000);
        let pattern = format!("{}b", "a*".repeat(500));
        let start = std::time::Instant::now();
        assert!(!wildcard_match(&pattern, &text));
        assert!(wildcard_match(&"*a".repeat(500), &text));
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn decisions_have_api_names() {
        assert_eq!(Decision::Allowed.as_str(), "ALLOWED");
        assert_eq!(Decision::ImplicitDeny.to_string(), "IMPLICIT_DENY");
        assert_eq!(Decision::ExplicitDeny.as_str(), "EXPLICIT_DENY");
        assert_eq!(Decision::Conditional.as_str(), "CONDITIONAL");
        assert!(Decision::Allowed.is_allowed());
        assert!(!Decision::Conditional.is_allowed());
        assert_eq!(PolicyVersion::V2012_10_17.as_str(), "2012-10-17");
    }
}
