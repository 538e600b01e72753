//! The linked-role lifecycle against IAM: ensure (create, or adopt a role
//! that exists), inspect, edit the description, and retire (the steps the
//! background worker drives).
//!
//! Ensure is a workflow whose progress lives in the `linked_roles` row (the
//! saga's log): the deterministic suffix is planned and written, under a
//! lease, before CreateServiceLinkedRole is called, so an attempt that dies
//! anywhere is resumed by the next one with the same name, and "has been
//! taken" then finds and records the role the dead attempt made instead of
//! making a second. Every step is safe to run twice. Before any STS or IAM
//! call the instance's region is checked against the Connect region table.
//! Retirement is a stored operation advanced one IAM step per claim.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use slrgov_aws::DeletionStatus;
use slrgov_aws::iam::{CONNECT_SERVICE, CONNECT_SLR_PATH};
use slrgov_aws::{AccessError, AccountTarget, AwsAccess, IamApi, IamError, RoleInfo};
use slrgov_domain::model::{
    DeletionFailure, EnsureClaim, Instance, LinkedRole, LinkedRoleState, ObservedRole,
    OperationError, OperationRecord, OperationStep, OperationVerb,
};
use slrgov_domain::names::InstanceKey;
use slrgov_domain::permissions::required_permissions;
use slrgov_domain::policy::{Decision, NamedPolicy, evaluate};
use slrgov_domain::types::Revision;
use slrgov_domain::{Error, Reason, RequestContext, Role};
use slrgov_store::Store;

use crate::regions::RegionTable;

/// How long an ensure may hold its claim before another process may take
/// the workflow over (`SLRGOV_WORKFLOW_LEASE`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// How long an ensure waits for another one of the same instance.
const WAIT_FOR_OTHER: Duration = Duration::from_secs(45);
/// The longest wait for a new role to become visible in IAM.
const CONFIRM_BUDGET: Duration = Duration::from_secs(20);

/// The prefix of every Connect service-linked role (real IAM's spelling;
/// moto spells it `AWSServiceRoleForconnect_`, so names are always read
/// back from IAM, never assumed).
pub const ROLE_NAME_PREFIX: &str = "AWSServiceRoleForAmazonConnect_";

/// The custom suffix of an instance's role: 20 letters and digits derived
/// from the account and instance ids, so that every attempt (and every
/// replica) asks IAM for the same name.
pub fn role_suffix(key: &InstanceKey) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let digest = Sha256::new()
        .chain_update(b"slr-governor/role-suffix/v1\0")
        .chain_update(key.account_id.as_str())
        .chain_update(b"\0")
        .chain_update(key.instance_id.as_str())
        .finalize();
    digest
        .iter()
        .take(20)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// The description a created role gets when the caller gives none.
pub fn default_description(key: &InstanceKey) -> String {
    format!(
        "Service-linked role of Amazon Connect instance {} (managed by slr-governor)",
        key.instance_id
    )
}

fn access_error(error: AccessError) -> Error {
    match error {
        AccessError::Unavailable(message) => Error::unavailable(
            Reason::IamUnavailable,
            format!("sts is unavailable: {message}"),
            Duration::from_secs(2),
        ),
        other => Error::failed_precondition(Reason::AwsCredentialsUnavailable, other.to_string()),
    }
}

fn iam_error(operation: &str, error: IamError) -> Error {
    match error {
        IamError::Throttled(_) | IamError::Unavailable(_) => Error::unavailable(
            Reason::IamUnavailable,
            format!("iam {operation} failed after retries: {error}"),
            Duration::from_secs(2),
        ),
        IamError::AccessDenied(message) => Error::failed_precondition(
            Reason::AwsCredentialsUnavailable,
            format!("the service's credentials may not call iam {operation}: {message}"),
        ),
        other => {
            tracing::error!(operation, error = %other, "unexpected iam error");
            Error::internal(format!("iam {operation} failed: {other}"))
        }
    }
}

/// Runs an IAM call, retrying throttling and service failures with a
/// bounded exponential backoff (the SDK's own retries come first).
///
/// Each retry is counted in `slrgov.aws.retries` under `operation`.
pub async fn with_retries<T, F, Fut>(operation: &'static str, mut call: F) -> Result<T, IamError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, IamError>>,
{
    let mut delay = Duration::from_millis(100);
    for _ in 0..5 {
        match call().await {
            Err(error) if error.is_transient() => {
                tracing::debug!(%error, operation, retry_in_ms = delay.as_millis() as u64, "iam call retried");
                slrgov_aws::telemetry::count_retry("iam", operation);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
    call().await
}

/// True when a trust policy trusts `connect.amazonaws.com` and nothing else.
pub fn trusts_only_connect(document: &str) -> bool {
    let Ok(policy) = serde_json::from_str::<serde_json::Value>(document) else {
        return false;
    };
    let statements = match &policy["Statement"] {
        serde_json::Value::Array(list) => list.clone(),
        object @ serde_json::Value::Object(_) => vec![object.clone()],
        _ => return false,
    };
    let mut principals = Vec::new();
    for statement in &statements {
        if statement["Effect"] != "Allow" {
            continue;
        }
        let principal = &statement["Principal"];
        let Some(map) = principal.as_object() else {
            return false;
        };
        for (kind, value) in map {
            let values = match value {
                serde_json::Value::String(s) => vec![s.clone()],
                serde_json::Value::Array(list) => list
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default().to_owned())
                    .collect(),
                _ => return false,
            };
            for v in values {
                principals.push((kind.clone(), v));
            }
        }
    }
    !principals.is_empty()
        && principals
            .iter()
            .all(|(kind, v)| kind == "Service" && v == CONNECT_SERVICE)
}

fn observed(role: &RoleInfo) -> ObservedRole {
    ObservedRole {
        role_name: role.role_name.clone(),
        role_arn: role.arn.clone(),
        role_id: role.role_id.clone(),
        path: role.path.clone(),
        description: role.description.clone(),
        iam_create_time: role.create_date,
        last_used_time: role.last_used,
        last_used_region: role.last_used_region.clone(),
    }
}

/// Everything the lifecycle needs.
#[derive(Clone)]
pub struct Lifecycle {
    store: Arc<dyn Store>,
    aws: Arc<AwsAccess>,
    regions: Arc<RegionTable>,
    lease: Duration,
}

/// Why an attempt stopped, and whether it may have created a role.
struct Stopped {
    error: Error,
    maybe_created: bool,
}

impl Lifecycle {
    /// A lifecycle over `store`, acting through `aws`.
    pub fn new(
        store: Arc<dyn Store>,
        aws: Arc<AwsAccess>,
        regions: Arc<RegionTable>,
        lease: Duration,
    ) -> Self {
        Lifecycle {
            store,
            aws,
            regions,
            lease,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The region gate, the account's credentials (verified), in that
    /// order: no STS or IAM call for a region without Connect.
    async fn iam_for(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        needed: Role,
        action: &str,
    ) -> Result<(Instance, Arc<dyn IamApi>), Error> {
        let instance = self.store.instance_get(ctx, key).await?;
        // Visible: the request's audit events name the linked role.
        ctx.audit.retarget(&key.account_id, &key.linked_role_name());
        ctx.check_role(needed, action)?;
        self.regions.check_connect(&instance.region)?;
        let access = self.store.account_access(ctx, &key.account_id).await?;
        let target = AccountTarget::new(
            access.account_id,
            access.partition,
            access.access_role_arn,
            access.external_id.as_ref(),
        );
        let iam = self.aws.iam(&target).await.map_err(access_error)?;
        Ok((instance, iam))
    }

    /// EnsureLinkedRole.
    pub async fn ensure(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        description: Option<String>,
        validate_only: bool,
    ) -> Result<LinkedRole, Error> {
        self.ensure_with(ctx, key, description, validate_only, WAIT_FOR_OTHER)
            .await
    }

    /// Resumes an ensure whose process died (the background worker): one
    /// claim, no waiting for another owner.
    pub async fn resume(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
    ) -> Result<LinkedRole, Error> {
        self.ensure_with(ctx, key, None, false, Duration::ZERO)
            .await
    }

    async fn ensure_with(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        description: Option<String>,
        validate_only: bool,
        wait_for_other: Duration,
    ) -> Result<LinkedRole, Error> {
        let (_, iam) = self
            .iam_for(ctx, key, Role::Operator, "EnsureLinkedRole")
            .await?;
        let current = self.store.linked_role_get(ctx, key).await?;
        if current.state == LinkedRoleState::Active {
            return self.confirm_active(&*iam, current).await;
        }
        let suffix = role_suffix(key);
        if validate_only {
            return self.preview(&*iam, current, &suffix).await;
        }
        let owner = format!("ensure-{}", uuid::Uuid::new_v4());
        let deadline = tokio::time::Instant::now() + wait_for_other;
        loop {
            match self
                .store
                .linked_role_claim(ctx, key, &owner, self.lease, &suffix)
                .await?
            {
                EnsureClaim::Active(role) => return self.confirm_active(&*iam, role).await,
                EnsureClaim::Busy => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Error::operation_in_progress(
                            key.linked_role_name(),
                            "another ensure",
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                EnsureClaim::Claimed {
                    suffix, resumed, ..
                } => {
                    let description = description.unwrap_or_else(|| default_description(key));
                    return match self
                        .create_or_adopt(&*iam, &suffix, &description, resumed)
                        .await
                    {
                        Ok((role, adopted)) => {
                            let activated = self
                                .store
                                .linked_role_activate(ctx, key, &owner, observed(&role), adopted)
                                .await;
                            if let Err(error) = &activated {
                                let nothing_created = error.reason == Reason::RoleOwnedElsewhere;
                                self.release(ctx, key, &owner, nothing_created).await;
                            }
                            activated
                        }
                        Err(stopped) => {
                            self.release(ctx, key, &owner, !stopped.maybe_created).await;
                            Err(stopped.error)
                        }
                    };
                }
            }
        }
    }

    async fn release(&self, ctx: &RequestContext, key: &InstanceKey, owner: &str, nothing: bool) {
        if let Err(error) = self
            .store
            .linked_role_release(ctx, key, owner, nothing)
            .await
        {
            // The lease runs out by itself; the next attempt resumes.
            tracing::warn!(%error, "could not release the ensure claim");
        }
    }

    /// An ACTIVE record is returned once IAM confirms the role, with no
    /// mutating call.
    async fn confirm_active(
        &self,
        iam: &dyn IamApi,
        role: LinkedRole,
    ) -> Result<LinkedRole, Error> {
        let Some(name) = role.role_name.clone() else {
            return Err(Error::internal("an ACTIVE linked role has no role name"));
        };
        match with_retries("GetRole", || iam.get_role(&name)).await {
            Ok(found) if Some(&found.arn) == role.role_arn.as_ref() => Ok(role),
            Ok(_) | Err(IamError::NoSuchEntity(_)) => Err(Error::failed_precondition(
                Reason::FailedPrecondition,
                format!(
                    "the recorded role {name} is missing or replaced in IAM: InspectLinkedRole shows the drift"
                ),
            )),
            Err(error) => Err(iam_error("GetRole", error)),
        }
    }

    /// What an ensure would do, changing nothing.
    async fn preview(
        &self,
        iam: &dyn IamApi,
        mut current: LinkedRole,
        suffix: &str,
    ) -> Result<LinkedRole, Error> {
        let existing = with_retries("ListRoles", || iam.list_roles(CONNECT_SLR_PATH))
            .await
            .map_err(|e| iam_error("ListRoles", e))?
            .into_iter()
            .find(|r| r.role_name.ends_with(&format!("_{suffix}")));
        match existing {
            Some(role) => {
                let o = observed(&role);
                current.role_name = Some(o.role_name);
                current.role_arn = Some(o.role_arn);
                current.role_id = Some(o.role_id);
                current.path = Some(o.path);
                current.description = o.description;
                current.adopted = true;
            }
            None => current.role_name = Some(format!("{ROLE_NAME_PREFIX}{suffix}")),
        }
        Ok(current)
    }

    /// Creates the role with the planned suffix, or finds the one that has
    /// the name (made by an earlier attempt, or by someone else: adopted),
    /// then waits until IAM shows it.
    async fn create_or_adopt(
        &self,
        iam: &dyn IamApi,
        suffix: &str,
        description: &str,
        resumed: bool,
    ) -> Result<(RoleInfo, bool), Stopped> {
        let created = with_retries("CreateServiceLinkedRole", || {
            iam.create_service_linked_role(CONNECT_SERVICE, Some(suffix), Some(description))
        })
        .await;
        let (name, adopted) = match created {
            Ok(role) => (role.role_name, false),
            Err(IamError::NameTaken(_)) => {
                let role = self.find_by_suffix(iam, Some(suffix)).await?;
                // Taken by our own earlier attempt (a crash after the call):
                // ours, not adopted.
                (role.role_name, !resumed)
            }
            Err(IamError::SuffixNotAllowed(_)) => {
                match with_retries("CreateServiceLinkedRole", || {
                    iam.create_service_linked_role(CONNECT_SERVICE, None, Some(description))
                })
                .await
                {
                    Ok(role) => (role.role_name, false),
                    Err(IamError::NameTaken(_)) => {
                        (self.find_by_suffix(iam, None).await?.role_name, true)
                    }
                    Err(error) => {
                        return Err(Stopped {
                            maybe_created: error.is_transient(),
                            error: iam_error("CreateServiceLinkedRole", error),
                        });
                    }
                }
            }
            Err(error) => {
                return Err(Stopped {
                    // A timed-out create may have happened.
                    maybe_created: error.is_transient(),
                    error: iam_error("CreateServiceLinkedRole", error),
                });
            }
        };
        let role = self.confirm_visible(iam, &name).await?;
        let is_connect_slr = role.path == CONNECT_SLR_PATH
            && role
                .trust_policy
                .as_deref()
                .is_some_and(trusts_only_connect);
        if !is_connect_slr {
            return Err(Stopped {
                error: Error::failed_precondition(
                    Reason::RoleOwnedElsewhere,
                    format!(
                        "the role {} is not an Amazon Connect service-linked role (path or trust policy)",
                        role.role_name
                    ),
                ),
                maybe_created: false,
            });
        }
        Ok((role, adopted))
    }

    /// The Connect SLR whose name ends with `_suffix` (or, without a
    /// suffix, the oldest one), looked up by ListRoles under the Connect
    /// path, retried while IAM is still catching up.
    async fn find_by_suffix(
        &self,
        iam: &dyn IamApi,
        suffix: Option<&str>,
    ) -> Result<RoleInfo, Stopped> {
        let stop = |error| Stopped {
            error,
            maybe_created: true,
        };
        let mut delay = Duration::from_millis(100);
        let start = tokio::time::Instant::now();
        loop {
            let roles = with_retries("ListRoles", || iam.list_roles(CONNECT_SLR_PATH))
                .await
                .map_err(|e| stop(iam_error("ListRoles", e)))?;
            let mut candidates: Vec<RoleInfo> = roles
                .into_iter()
                .filter(|r| suffix.is_none_or(|s| r.role_name.ends_with(&format!("_{s}"))))
                .collect();
            candidates.sort_by_key(|r| r.create_date);
            if let Some(role) = candidates.into_iter().next() {
                return Ok(role);
            }
            if start.elapsed() > CONFIRM_BUDGET {
                return Err(stop(Error::unavailable(
                    Reason::IamUnavailable,
                    "iam says the role name is taken but does not list the role yet",
                    Duration::from_secs(2),
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// GetRole under a bounded backoff until the role is visible (IAM is
    /// eventually consistent: a new role can be invisible for seconds).
    async fn confirm_visible(&self, iam: &dyn IamApi, name: &str) -> Result<RoleInfo, Stopped> {
        let mut delay = Duration::from_millis(100);
        let start = tokio::time::Instant::now();
        loop {
            match with_retries("GetRole", || iam.get_role(name)).await {
                Ok(role) => return Ok(role),
                Err(IamError::NoSuchEntity(_)) if start.elapsed() < CONFIRM_BUDGET => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(error) => {
                    return Err(Stopped {
                        error: iam_error("GetRole", error),
                        maybe_created: true,
                    });
                }
            }
        }
    }

    /// UpdateLinkedRoleDescription: UpdateRoleDescription in IAM (never
    /// UpdateRole, which on moto clears what it is not given), then the
    /// record, both etag-checked.
    pub async fn set_description(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        expected: Option<Revision>,
        description: &str,
    ) -> Result<LinkedRole, Error> {
        let (_, iam) = self
            .iam_for(ctx, key, Role::Operator, "UpdateLinkedRoleDescription")
            .await?;
        let current = self.store.linked_role_get(ctx, key).await?;
        let name = key.linked_role_name();
        if expected.is_some_and(|expected| expected != current.revision) {
            return Err(Error::etag_mismatch(name));
        }
        let Some(role_name) = current
            .role_name
            .clone()
            .filter(|_| current.state == LinkedRoleState::Active)
        else {
            return Err(Error::failed_precondition(
                Reason::FailedPrecondition,
                format!("{name} is {}: ensure it first", current.state),
            ));
        };
        with_retries("UpdateRoleDescription", || {
            iam.update_role_description(&role_name, description)
        })
        .await
        .map_err(|e| iam_error("UpdateRoleDescription", e))?;
        self.store
            .linked_role_set_description(ctx, key, Some(current.revision), description)
            .await
    }
}

/// What an inspection found wrong or worth knowing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingCode {
    /// No role in IAM.
    RoleMissing,
    /// The trust policy is not `connect.amazonaws.com` alone.
    TrustPolicyMismatch,
    /// Not under the Connect SLR path.
    PathMismatch,
    /// A needed permission is denied.
    PermissionMissing,
    /// A needed permission is allowed only under conditions.
    PermissionConditional,
    /// IAM's description differs from the record.
    DescriptionDrift,
    /// IAM has no record of use.
    RoleUnused,
    /// A pre-2018 instance without a role.
    LegacyInstanceWithoutRole,
    /// IAM's role is not the recorded one.
    RoleMismatch,
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Drift, or a feature may break.
    Warning,
    /// A feature cannot work.
    Error,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What.
    pub code: FindingCode,
    /// How serious.
    pub severity: Severity,
    /// Explanation.
    pub message: String,
    /// The feature concerned.
    pub feature: String,
    /// The action concerned.
    pub action: String,
    /// The resource concerned.
    pub resource: String,
}

impl Finding {
    fn new(code: FindingCode, severity: Severity, message: impl Into<String>) -> Self {
        Finding {
            code,
            severity,
            message: message.into(),
            feature: String::new(),
            action: String::new(),
            resource: String::new(),
        }
    }
}

/// One evaluated permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionCheck {
    /// The feature that needs it.
    pub feature: String,
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// The outcome.
    pub decision: Decision,
    /// The deciding policy.
    pub source_policy: Option<String>,
}

/// The result of InspectLinkedRole.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The role as observed in IAM now (ABSENT when missing).
    pub linked_role: LinkedRole,
    /// The findings.
    pub findings: Vec<Finding>,
    /// Every needed permission, evaluated.
    pub permissions: Vec<PermissionCheck>,
    /// When IAM was read.
    pub inspect_time: DateTime<Utc>,
}

impl Inspection {
    /// True when no finding is an error.
    pub fn healthy(&self) -> bool {
        self.findings.iter().all(|f| f.severity < Severity::Error)
    }
}

impl Lifecycle {
    /// InspectLinkedRole: reads the role live (GetRole, inline and attached
    /// policies) and evaluates every permission the instance's features
    /// need with the service's own policy evaluator.
    pub async fn inspect(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
    ) -> Result<Inspection, Error> {
        let (instance, iam) = self
            .iam_for(ctx, key, Role::Viewer, "InspectLinkedRole")
            .await?;
        let record = self.store.linked_role_get(ctx, key).await?;
        let access = self.store.account_access(ctx, &key.account_id).await?;
        let inspect_time = Utc::now();
        let mut findings = Vec::new();
        let mut observed_role = record.clone();
        let Some(role_name) = record.role_name.clone() else {
            if instance.is_legacy() {
                findings.push(Finding::new(
                    FindingCode::LegacyInstanceWithoutRole,
                    Severity::Error,
                    "the instance was created before 2018-10-01 and has no service-linked role: EnsureLinkedRole creates one",
                ));
            }
            findings.push(Finding::new(
                FindingCode::RoleMissing,
                Severity::Error,
                "no role is recorded for the instance: EnsureLinkedRole creates or adopts one",
            ));
            return Ok(Inspection {
                linked_role: record,
                findings,
                permissions: Vec::new(),
                inspect_time,
            });
        };
        let role = match with_retries("GetRole", || iam.get_role(&role_name)).await {
            Ok(role) => role,
            Err(IamError::NoSuchEntity(_)) => {
                observed_role.state = LinkedRoleState::Absent;
                findings.push(Finding::new(
                    FindingCode::RoleMissing,
                    Severity::Error,
                    format!("the recorded role {role_name} does not exist in IAM"),
                ));
                return Ok(Inspection {
                    linked_role: observed_role,
                    findings,
                    permissions: Vec::new(),
                    inspect_time,
                });
            }
            Err(error) => return Err(iam_error("GetRole", error)),
        };
        let o = observed(&role);
        if record.role_arn.as_deref() != Some(o.role_arn.as_str())
            || record.role_id.as_deref() != Some(o.role_id.as_str())
        {
            findings.push(Finding::new(
                FindingCode::RoleMismatch,
                Severity::Error,
                format!(
                    "IAM's role {} ({}) is not the recorded one",
                    o.role_arn, o.role_id
                ),
            ));
        }
        if o.path != CONNECT_SLR_PATH {
            findings.push(Finding::new(
                FindingCode::PathMismatch,
                Severity::Error,
                format!("the role's path is {}, not {CONNECT_SLR_PATH}", o.path),
            ));
        }
        if !role
            .trust_policy
            .as_deref()
            .is_some_and(trusts_only_connect)
        {
            findings.push(Finding::new(
                FindingCode::TrustPolicyMismatch,
                Severity::Error,
                "the trust policy does not trust connect.amazonaws.com alone",
            ));
        }
        if o.description != record.description {
            findings.push(Finding::new(
                FindingCode::DescriptionDrift,
                Severity::Warning,
                format!(
                    "IAM's description {:?} differs from the recorded {:?}",
                    o.description.as_deref().unwrap_or_default(),
                    record.description.as_deref().unwrap_or_default()
                ),
            ));
        }
        if o.last_used_time.is_none() {
            findings.push(Finding::new(
                FindingCode::RoleUnused,
                Severity::Info,
                "IAM has no record of the role being used in the last 400 days",
            ));
        }
        let policies: Vec<NamedPolicy> = with_retries("ListRolePolicies", || {
            iam.role_policies(&role_name)
        })
        .await
        .map_err(|e| iam_error("ListRolePolicies", e))?
        .into_iter()
        .filter_map(
            |p| match NamedPolicy::parse_url_encoded(p.source.clone(), &p.document) {
                Ok(policy) => Some(policy),
                Err(error) => {
                    tracing::warn!(policy = %p.source, %error, "policy document not understood");
                    None
                }
            },
        )
        .collect();
        let mut permissions = Vec::new();
        for need in required_permissions(
            &instance.features,
            access.partition,
            &key.account_id,
            &instance.region,
        ) {
            let evaluation = evaluate(&policies, &need.action, &need.resource);
            let (code, severity) = match evaluation.decision {
                Decision::Allowed => (None, Severity::Info),
                Decision::Conditional => {
                    (Some(FindingCode::PermissionConditional), Severity::Warning)
                }
                Decision::ImplicitDeny | Decision::ExplicitDeny => {
                    (Some(FindingCode::PermissionMissing), Severity::Error)
                }
            };
            if let Some(code) = code {
                findings.push(Finding {
                    code,
                    severity,
                    message: format!(
                        "{} on {} is {} for feature {}",
                        need.action,
                        need.resource,
                        evaluation.decision.as_str(),
                        need.feature
                    ),
                    feature: need.feature.to_owned(),
                    action: need.action.clone(),
                    resource: need.resource.clone(),
                });
            }
            permissions.push(PermissionCheck {
                feature: need.feature.to_owned(),
                action: need.action,
                resource: need.resource,
                decision: evaluation.decision,
                source_policy: evaluation.source_policy,
            });
        }
        observed_role.role_name = Some(o.role_name);
        observed_role.role_arn = Some(o.role_arn);
        observed_role.role_id = Some(o.role_id);
        observed_role.path = Some(o.path);
        observed_role.description = o.description;
        observed_role.iam_create_time = o.iam_create_time;
        observed_role.last_used_time = o.last_used_time;
        observed_role.last_used_region = o.last_used_region;
        Ok(Inspection {
            linked_role: observed_role,
            findings,
            permissions,
            inspect_time,
        })
    }
}

/// What RetireLinkedRole started (or, with validate_only, would start).
#[derive(Debug, Clone)]
pub enum Retirement {
    /// The operation, running or (if one was running) as it is.
    Started(Box<OperationRecord>),
    /// validate_only: every check passed; the role that would be deleted.
    Preview(Box<LinkedRole>),
}

impl Lifecycle {
    /// RetireLinkedRole (and DeleteInstance of an instance with a role):
    /// checks the region and the credentials, then records a running
    /// operation that the background workers drive to the end.
    pub async fn retire(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        expected: Option<Revision>,
        verb: OperationVerb,
        validate_only: bool,
        request_id: Option<&str>,
    ) -> Result<Retirement, Error> {
        let (_, iam) = self
            .iam_for(ctx, key, Role::Operator, "RetireLinkedRole")
            .await?;
        if validate_only {
            let current = self.store.linked_role_get(ctx, key).await?;
            let name = key.linked_role_name();
            if expected.is_some_and(|e| e != current.revision) {
                return Err(Error::etag_mismatch(name));
            }
            let Some(role_name) = current.role_name.clone().filter(|_| {
                matches!(
                    current.state,
                    LinkedRoleState::Active | LinkedRoleState::DeletionFailed
                )
            }) else {
                return Err(Error::failed_precondition(
                    Reason::FailedPrecondition,
                    format!("{name} has no role to retire (it is {})", current.state),
                ));
            };
            match with_retries("GetRole", || iam.get_role(&role_name)).await {
                Ok(_) => {}
                Err(IamError::NoSuchEntity(_)) => {
                    return Err(Error::failed_precondition(
                        Reason::FailedPrecondition,
                        format!("the recorded role {role_name} is not in IAM: nothing to retire"),
                    ));
                }
                Err(error) => return Err(iam_error("GetRole", error)),
            }
            return Ok(Retirement::Preview(Box::new(current)));
        }
        let operation = self
            .store
            .operation_begin_retire(ctx, key, expected, verb, request_id)
            .await?;
        Ok(Retirement::Started(Box::new(operation)))
    }

    /// One step of a running retirement, for the background worker: what
    /// IAM says now, as the next recorded step. Never retries inside: the
    /// next claim is the retry.
    pub async fn advance(
        &self,
        ctx: &RequestContext,
        operation: &OperationRecord,
    ) -> OperationStep {
        let backoff = Duration::from_millis(200)
            .saturating_mul(1u32 << operation.attempts.clamp(0, 6))
            .min(Duration::from_secs(10));
        let wait = |message: String| OperationStep::Wait {
            retry_in: backoff,
            message,
        };
        let key = operation.key();
        let role = match self.store.linked_role_get(ctx, &key).await {
            Ok(role) => role,
            Err(error) => return wait(format!("cannot read the linked role: {}", error.message)),
        };
        let Some(role_name) = role.role_name.clone() else {
            return OperationStep::Deleted;
        };
        let access = match self.store.account_access(ctx, &key.account_id).await {
            Ok(access) => access,
            Err(error) => return wait(format!("cannot read the account: {}", error.message)),
        };
        let target = AccountTarget::new(
            access.account_id,
            access.partition,
            access.access_role_arn,
            access.external_id.as_ref(),
        );
        let iam = match self.aws.iam(&target).await {
            Ok(iam) => iam,
            Err(AccessError::Unavailable(message)) => return wait(format!("sts: {message}")),
            Err(other) => {
                return OperationStep::Abort(OperationError {
                    reason: Reason::AwsCredentialsUnavailable.as_str().to_owned(),
                    message: other.to_string(),
                    failure: None,
                });
            }
        };
        let submit = |iam: Arc<dyn IamApi>, role_name: String| async move {
            match iam.delete_service_linked_role(&role_name).await {
                Ok(task_id) => OperationStep::TaskStarted {
                    task_id,
                    retry_in: Duration::from_millis(200),
                },
                Err(IamError::NoSuchEntity(_)) => OperationStep::Deleted,
                Err(error) if error.is_transient() => OperationStep::Wait {
                    retry_in: backoff,
                    message: format!("iam DeleteServiceLinkedRole: {error}"),
                },
                Err(error) => OperationStep::Abort(OperationError {
                    reason: Reason::FailedPrecondition.as_str().to_owned(),
                    message: format!("iam refused DeleteServiceLinkedRole: {error}"),
                    failure: None,
                }),
            }
        };
        let Some(task_id) = role.deletion_task_id.clone() else {
            return submit(iam, role_name).await;
        };
        match iam.deletion_status(&task_id).await {
            Ok(DeletionStatus::Succeeded) => OperationStep::Deleted,
            Ok(DeletionStatus::NotStarted | DeletionStatus::InProgress) => {
                wait(format!("iam is deleting the role (task {task_id})"))
            }
            Ok(DeletionStatus::Failed { reason, usage }) => {
                OperationStep::Failed(DeletionFailure {
                    reason,
                    role_usage: usage.into_iter().map(|u| (u.region, u.resources)).collect(),
                })
            }
            // IAM may purge a task record: the role's absence decides.
            Err(IamError::NoSuchEntity(_)) => match iam.get_role(&role_name).await {
                Err(IamError::NoSuchEntity(_)) => OperationStep::Deleted,
                Ok(_) => submit(iam, role_name).await,
                Err(error) => wait(format!("iam GetRole: {error}")),
            },
            Err(error) => wait(format!("iam GetServiceLinkedRoleDeletionStatus: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_deterministic_valid_and_distinct() {
        let key = |a: &str, i: &str| {
            InstanceKey::parse(&format!("accounts/{a}/instances/{i}")).expect("key")
        };
        let one = key("123456789012", "4a3b2c1d-0000-4000-8000-123456789abc");
        let suffix = role_suffix(&one);
        assert_eq!(suffix, role_suffix(&one));
        assert_eq!(suffix.len(), 20);
        assert!(suffix.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(format!("{ROLE_NAME_PREFIX}{suffix}").len() <= 64);
        assert_ne!(
            suffix,
            role_suffix(&key("123456789013", "4a3b2c1d-0000-4000-8000-123456789abc"))
        );
        assert_ne!(
            suffix,
            role_suffix(&key("123456789012", "4a3b2c1d-0000-4000-8000-123456789abd"))
        );
    }

    #[test]
    fn only_a_connect_trust_policy_is_a_connect_slr() {
        let connect = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"connect.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        assert!(trusts_only_connect(connect));
        let object = r#"{"Statement":{"Effect":"Allow","Principal":{"Service":["connect.amazonaws.com"]},"Action":"sts:AssumeRole"}}"#;
        assert!(trusts_only_connect(object));
        let also_ec2 = r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":["connect.amazonaws.com","ec2.amazonaws.com"]},"Action":"sts:AssumeRole"}]}"#;
        assert!(!trusts_only_connect(also_ec2));
        let account = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}"#;
        assert!(!trusts_only_connect(account));
        assert!(!trusts_only_connect("not json"));
        assert!(!trusts_only_connect(r#"{"Statement":[]}"#));
    }
}
