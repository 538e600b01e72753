//! Policy documents: decoding and parsing, and the helpers that read
//! their JSON elements.

use std::str::FromStr;

use serde_json::{Map, Value};

use super::statement::{Statement, parse_statement};
use super::{MAX_DOCUMENT_BYTES, PolicyError, PolicyVersion};

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

pub(super) fn optional_string(
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
pub(super) fn string_list(value: &Value, path: &str) -> Result<Vec<String>, PolicyError> {
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
pub(super) fn exclusive<'a>(
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
