//! The request context passed through every layer (in the manner of
//! omicron's `OpContext`): who is calling, which accounts they may see, the
//! request's correlation id and its tracing span.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::audit::AuditTrail;
use crate::error::{Error, Result};
use crate::types::AccountId;

/// What a caller may do, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads.
    Viewer,
    /// Reads, and changes instances and linked roles.
    Operator,
    /// Everything, including accounts (which decide where the service acts).
    Admin,
}

impl Role {
    /// The role's name as written in tokens and files.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// The accounts a caller may see and touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountScope {
    /// Every account (`["*"]`, or the local operator of an unauthenticated
    /// loopback server).
    All,
    /// Only these accounts.
    Only(BTreeSet<AccountId>),
}

impl AccountScope {
    /// True when `account` is in scope.
    pub fn allows(&self, account: &AccountId) -> bool {
        match self {
            AccountScope::All => true,
            AccountScope::Only(accounts) => accounts.contains(account),
        }
    }

    /// The listed accounts, or `None` for every account: what store queries
    /// bind as their scope filter.
    pub fn accounts(&self) -> Option<Vec<String>> {
        match self {
            AccountScope::All => None,
            AccountScope::Only(accounts) => {
                Some(accounts.iter().map(|a| a.as_str().to_owned()).collect())
            }
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The principal, e.g. a JWT `sub`, a static token's name, or
    /// `local-operator`.
    pub principal: String,
    /// What the caller may do.
    pub role: Role,
    /// Which accounts it may see.
    pub scope: AccountScope,
}

impl Caller {
    /// The caller of an unauthenticated server on a loopback address: the
    /// local operator, with every account and every permission.
    pub fn local_operator() -> Self {
        Caller {
            principal: "local-operator".to_owned(),
            role: Role::Admin,
            scope: AccountScope::All,
        }
    }

    /// A background worker acting for the service itself, across every
    /// account (logged where it is made).
    pub fn service_worker(name: &str) -> Self {
        Caller {
            principal: format!("service:{name}"),
            role: Role::Admin,
            scope: AccountScope::All,
        }
    }
}

/// The context of one request (or one unit of background work).
#[derive(Debug, Clone)]
pub struct RequestContext {
    caller: Arc<Caller>,
    /// The correlation id of this request (from `x-request-id`, or made up),
    /// for logs and error details. Not the AIP-155 idempotency key.
    pub correlation_id: String,
    /// The span the request's work is recorded in.
    pub span: tracing::Span,
    /// The gRPC method (`slrgov.v1.InstanceService/CreateInstance`) or the
    /// background work (`worker/...`) this context serves.
    pub method: String,
    /// What the request changed and the AWS calls it made, for the audit
    /// trail.
    pub audit: AuditTrail,
    /// When the caller stops waiting for the answer (the request timeout or
    /// the client's `grpc-timeout`), if it is known: work that can go on in
    /// the background answers before it.
    pub deadline: Option<std::time::Instant>,
}

impl RequestContext {
    /// A context for `caller` (owned, or shared with the request that
    /// authenticated it: no copy of its scope per request).
    pub fn new(
        caller: impl Into<Arc<Caller>>,
        correlation_id: String,
        span: tracing::Span,
    ) -> Self {
        RequestContext {
            caller: caller.into(),
            correlation_id,
            span,
            method: String::new(),
            audit: AuditTrail::default(),
            deadline: None,
        }
    }

    /// The same context, answered by `deadline`.
    pub fn with_deadline(mut self, deadline: Option<std::time::Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// How long work may take, at most `budget`, and no longer than the
    /// time left before the deadline less `margin` (to answer and record).
    pub fn budget(
        &self,
        budget: std::time::Duration,
        margin: std::time::Duration,
    ) -> std::time::Duration {
        match self.deadline {
            None => budget,
            Some(deadline) => deadline
                .saturating_duration_since(std::time::Instant::now())
                .saturating_sub(margin)
                .min(budget),
        }
    }

    /// The same context for the gRPC method `method`.
    pub fn with_method(mut self, method: impl Into<String>) -> Self {
        self.method = method.into();
        self
    }

    /// A context for background work of the service itself: every account,
    /// which is logged here.
    pub fn for_worker(name: &str) -> Self {
        let span = tracing::info_span!("worker", worker = name);
        span.in_scope(|| {
            tracing::info!(
                worker = name,
                "background work acts with an all-accounts scope"
            )
        });
        RequestContext::new(Caller::service_worker(name), format!("worker-{name}"), span)
            .with_method(format!("worker/{name}"))
    }

    /// A context for one unit of `work` of this context's caller: the same
    /// caller, a fresh audit trail, a new correlation id, and a span of its
    /// own that starts a trace (`worker/operations/advance`), so each unit
    /// of background work is one trace with its database and AWS calls.
    pub fn unit_of_work(&self, work: &str) -> Self {
        let correlation_id = format!("{}-{}", self.correlation_id, uuid::Uuid::new_v4().simple());
        let method = format!("{}/{work}", self.method);
        let span = tracing::info_span!(
            parent: None,
            "unit_of_work",
            otel.name = %method,
            otel.kind = "internal",
            request_id = %correlation_id,
        );
        span.follows_from(&self.span);
        RequestContext {
            caller: self.caller.clone(),
            correlation_id,
            span,
            method,
            audit: AuditTrail::default(),
            deadline: None,
        }
    }

    /// True when the method changes something (everything but reads): its
    /// failures are audited too.
    pub fn is_mutation(&self) -> bool {
        let short = self.method.rsplit('/').next().unwrap_or_default();
        !["Get", "List", "Inspect", "Wait", "Check", "Watch"]
            .iter()
            .any(|read| short.starts_with(read))
    }

    /// The caller.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The accounts the caller may see.
    pub fn scope(&self) -> &AccountScope {
        &self.caller.scope
    }

    /// Checks that `account` is visible to the caller; a resource outside
    /// the scope is NOT_FOUND, exactly as if it did not exist.
    pub fn check_visible(&self, account: &AccountId, resource: &str) -> Result<()> {
        if self.caller.scope.allows(account) {
            self.audit.set_target(account, resource);
            Ok(())
        } else {
            Err(Error::not_found(resource))
        }
    }

    /// Checks that the caller's role is at least `needed` for `action` on a
    /// visible resource.
    pub fn check_role(&self, needed: Role, action: &str) -> Result<()> {
        if self.caller.role >= needed {
            Ok(())
        } else {
            Err(Error {
                kind: crate::error::Kind::PermissionDenied,
                reason: crate::error::Reason::PermissionDenied,
                message: format!(
                    "{action} needs the {} role; the caller has {}",
                    needed.as_str(),
                    self.caller.role.as_str()
                ),
                violations: Vec::new(),
                metadata: Vec::new(),
                retry_after: None,
            })
        }
    }
}
