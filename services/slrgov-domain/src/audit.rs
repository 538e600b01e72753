//! The audit trail: what a request changed and every AWS call it made on
//! the way, collected in the request context and written by the store in
//! the same transaction as the change it records.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::types::AccountId;

/// One call to AWS (IAM or STS) made on behalf of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsCall {
    /// `iam` or `sts`.
    pub service: String,
    /// The API operation, e.g. `CreateServiceLinkedRole`.
    pub operation: String,
    /// `OK`, or the AWS error code (`NoSuchEntity`, `Throttling`, ...).
    pub outcome: String,
    /// The AWS request id, when AWS answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_request_id: Option<String>,
}

#[derive(Debug, Default)]
struct TrailState {
    /// AWS calls made and not yet written.
    pending: Vec<AwsCall>,
    /// The account and resource the request acts on, once it is known to
    /// be visible to the caller.
    target: Option<(AccountId, String)>,
    /// How many of `pending` a transaction in flight is writing.
    staged: usize,
    /// True once an event of this request has been written.
    recorded: bool,
}

/// The audit state of one request (or one unit of background work). Cheap
/// to clone; clones share the state.
#[derive(Debug, Clone, Default)]
pub struct AuditTrail(Arc<Mutex<TrailState>>);

impl AuditTrail {
    fn with<T>(&self, f: impl FnOnce(&mut TrailState) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-push: the
        // data is still a list of calls.
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }

    /// Notes an AWS call.
    pub fn push_call(&self, call: AwsCall) {
        self.with(|s| s.pending.push(call));
    }

    /// Takes the calls not yet written (the store writes them with the
    /// event of the change they caused).
    pub fn take_calls(&self) -> Vec<AwsCall> {
        self.with(|s| std::mem::take(&mut s.pending))
    }

    /// Puts calls back after the transaction that was to write them rolled
    /// back, so that the request's failure event still carries them.
    pub fn restore_calls(&self, mut calls: Vec<AwsCall>) {
        self.with(|s| {
            calls.append(&mut s.pending);
            s.pending = calls;
        });
    }

    /// The calls a transaction is about to write: they stay pending until
    /// [`AuditTrail::written`] says the transaction committed, so that a
    /// rollback loses none.
    pub fn stage(&self) -> Vec<AwsCall> {
        self.with(|s| {
            s.staged = s.pending.len();
            s.pending.clone()
        })
    }

    /// A transaction is about to write an event without the pending calls
    /// (they belong to a later event): nothing is staged.
    pub fn stage_none(&self) {
        self.with(|s| s.staged = 0);
    }

    /// The transaction that wrote the staged calls committed.
    pub fn written(&self) {
        self.with(|s| {
            let staged = std::mem::take(&mut s.staged).min(s.pending.len());
            s.pending.drain(..staged);
            s.recorded = true;
        });
    }

    /// The number of calls not yet written.
    pub fn pending_calls(&self) -> usize {
        self.with(|s| s.pending.len())
    }

    /// Records the (visible) account and resource the request acts on.
    pub fn set_target(&self, account: &AccountId, resource: &str) {
        self.with(|s| {
            if s.target.is_none() {
                s.target = Some((account.clone(), resource.to_owned()));
            }
        });
    }

    /// Names the resource the request acts on more precisely, once it is
    /// known to be visible (a linked role, after its instance was read).
    pub fn retarget(&self, account: &AccountId, resource: &str) {
        self.with(|s| s.target = Some((account.clone(), resource.to_owned())));
    }

    /// The account and resource the request acts on, if known.
    pub fn target(&self) -> Option<(AccountId, String)> {
        self.with(|s| s.target.clone())
    }

    /// Notes that an event of this request was written.
    pub fn mark_recorded(&self) {
        self.with(|s| s.recorded = true);
    }

    /// True once an event of this request was written.
    pub fn recorded(&self) -> bool {
        self.with(|s| s.recorded)
    }
}

/// An event as written: the store adds the name and the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    /// The account the event belongs to.
    pub account_id: AccountId,
    /// The resource acted on (a resource name).
    pub resource: String,
    /// The outcome: `OK` or the gRPC code name (`FAILED_PRECONDITION`).
    pub outcome: String,
    /// What happened, for humans (never a secret).
    pub detail: String,
}

/// An audit event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// The event id (`accounts/{a}/auditEvents/{id}`), time-ordered.
    pub event_id: String,
    /// The account.
    pub account_id: AccountId,
    /// When it was written.
    pub time: DateTime<Utc>,
    /// Who caused it.
    pub principal: String,
    /// The gRPC method (or background work) that caused it.
    pub method: String,
    /// The resource acted on.
    pub resource: String,
    /// The request's correlation id (`x-request-id`).
    pub request_id: String,
    /// `OK` or the gRPC code name.
    pub outcome: String,
    /// What happened.
    pub detail: String,
    /// The AWS calls it made.
    pub aws_calls: Vec<AwsCall>,
}

impl AuditEvent {
    /// The event's resource name.
    pub fn name(&self) -> String {
        format!("accounts/{}/auditEvents/{}", self.account_id, self.event_id)
    }
}

/// The ListAuditEvents filter: `method`, `principal`, `outcome` and
/// `resource` compared with `=`, joined by `AND`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// `method = "..."`: the full method (`slrgov.v1.InstanceService/CreateInstance`)
    /// or its short name (`CreateInstance`).
    pub method: Option<String>,
    /// `principal = "..."`.
    pub principal: Option<String>,
    /// `outcome = OK` (a gRPC code name).
    pub outcome: Option<String>,
    /// `resource = "accounts/.../instances/..."`.
    pub resource: Option<String>,
}

/// The gRPC code names an outcome may have.
pub const OUTCOMES: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

impl AuditFilter {
    /// Parses a filter; the empty string matches everything.
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let mut filter = AuditFilter::default();
        for (field, value) in
            crate::filter::restrictions(input, "method, principal, outcome, resource")?
        {
            let slot = match field.as_str() {
                "method" => &mut filter.method,
                "principal" => &mut filter.principal,
                "resource" => &mut filter.resource,
                "outcome" => {
                    if !OUTCOMES.contains(&value.as_str()) {
                        return Err(FieldError::new(format!(
                            "has an unknown outcome '{value}' (a gRPC code name such as OK or PERMISSION_DENIED)"
                        )));
                    }
                    &mut filter.outcome
                }
                other => {
                    return Err(FieldError::new(format!(
                        "cannot filter on '{other}' (supported: method, principal, outcome, resource)"
                    )));
                }
            };
            if slot.is_some() {
                return Err(FieldError::new(format!("restricts {field} more than once")));
            }
            if value.is_empty() || value.len() > 256 {
                return Err(FieldError::new(format!(
                    "has a {field} value that is empty or longer than 256 characters"
                )));
            }
            *slot = Some(value);
        }
        Ok(filter)
    }

    /// A canonical text of the filter, for binding page tokens to it.
    pub fn canonical(&self) -> String {
        format!(
            "method={};principal={};outcome={};resource={}",
            self.method.as_deref().unwrap_or(""),
            self.principal.as_deref().unwrap_or(""),
            self.outcome.as_deref().unwrap_or(""),
            self.resource.as_deref().unwrap_or(""),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let f =
            AuditFilter::parse(r#"method = "CreateInstance" AND outcome = OK"#).expect("filter");
        assert_eq!(f.method.as_deref(), Some("CreateInstance"));
        assert_eq!(f.outcome.as_deref(), Some("OK"));
        assert_eq!(
            AuditFilter::parse("").expect("empty"),
            AuditFilter::default()
        );
        for (input, needle) in [
            ("outcome = FINE", "FINE"),
            ("time = 3", "time"),
            ("method = a AND method = b", "more than once"),
            ("principal = \"\"", "empty"),
        ] {
            let error = AuditFilter::parse(input).expect_err(input);
            assert!(
                error.description.contains(needle),
                "{input}: {}",
                error.description
            );
        }
    }

    #[test]
    fn staged_calls_stay_until_written() {
        let trail = AuditTrail::default();
        let call = |op: &str| AwsCall {
            service: "iam".into(),
            operation: op.into(),
            outcome: "OK".into(),
            aws_request_id: None,
        };
        trail.push_call(call("A"));
        assert_eq!(trail.stage().len(), 1);
        // Rolled back: staged again by the next transaction.
        trail.push_call(call("B"));
        assert_eq!(trail.stage().len(), 2);
        trail.push_call(call("C"));
        trail.written();
        assert!(trail.recorded());
        let left: Vec<_> = trail
            .take_calls()
            .into_iter()
            .map(|c| c.operation)
            .collect();
        assert_eq!(left, ["C"]);
    }

    #[test]
    fn restored_calls_come_first() {
        let trail = AuditTrail::default();
        let call = |op: &str| AwsCall {
            service: "iam".into(),
            operation: op.into(),
            outcome: "OK".into(),
            aws_request_id: None,
        };
        trail.push_call(call("A"));
        let taken = trail.take_calls();
        trail.push_call(call("B"));
        trail.restore_calls(taken);
        let ops: Vec<_> = trail
            .take_calls()
            .into_iter()
            .map(|c| c.operation)
            .collect();
        assert_eq!(ops, ["A", "B"]);
    }
}
