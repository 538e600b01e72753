//! InspectLinkedRole: the live role against what the instance's features
//! need, read from IAM and evaluated with the service's own policy
//! evaluator (moto has no SimulatePrincipalPolicy).

use chrono::{DateTime, Utc};
use slrgov_aws::IamError;
use slrgov_aws::iam::CONNECT_SLR_PATH;
use slrgov_domain::model::{Instance, LinkedRole, LinkedRoleState};
use slrgov_domain::names::InstanceKey;
use slrgov_domain::permissions::required_permissions;
use slrgov_domain::policy::{Decision, NamedPolicy, evaluate};
use slrgov_domain::{Error, RequestContext, Role};

pub use slrgov_domain::finding::{FindingCode, Severity};

use super::connect::ServiceRole;
use super::roles::{observed, trusts_only_connect};
use super::{Lifecycle, iam_error, with_retries};

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
        let instance = self
            .admit(ctx, key, Role::Viewer, "InspectLinkedRole")
            .await?;
        let iam = self.iam_client(ctx, key).await?;
        let record = self.store().linked_role_get(ctx, key).await?;
        let access = self.store().account_access(ctx, &key.account_id).await?;
        let inspect_time = Utc::now();
        let mut findings = Vec::new();
        let mut observed_role = record.clone();
        // The role Connect links to the instance: the one to govern.
        let connect_role = self.connect_role_live(ctx, &instance).await?;
        let service_role = connect_role
            .as_ref()
            .and_then(|arn| arn.as_deref())
            .and_then(ServiceRole::parse);
        findings.extend(connect_findings(&instance, &record, connect_role.as_ref()));
        let role_name = match (record.role_name.clone(), &service_role) {
            (Some(name), _) => name,
            // Nothing recorded, but Connect names a role: that is the one
            // to inspect (and to adopt, or restore when it is missing).
            (None, Some(service_role)) => {
                match with_retries("GetRole", || iam.get_role(&service_role.name)).await {
                    Ok(_) => {
                        findings.push(Finding::new(
                            FindingCode::RoleMismatch,
                            Severity::Warning,
                            format!(
                                "the role Amazon Connect uses ({}) is not recorded: EnsureLinkedRole adopts it",
                                service_role.arn
                            ),
                        ));
                        service_role.name.clone()
                    }
                    Err(IamError::NoSuchEntity(_)) => {
                        findings.push(Finding::new(
                            FindingCode::RoleMissing,
                            Severity::Error,
                            format!(
                                "the role Amazon Connect links to the instance ({}) does not exist in IAM: EnsureLinkedRole restores it under the same name",
                                service_role.arn
                            ),
                        ));
                        return Ok(Inspection {
                            linked_role: record,
                            findings,
                            permissions: Vec::new(),
                            inspect_time,
                        });
                    }
                    Err(error) => return Err(iam_error("GetRole", error)),
                }
            }
            (None, None) => {
                findings.push(Finding::new(
                    FindingCode::RoleMissing,
                    Severity::Error,
                    "no role is recorded for the instance and Amazon Connect names none",
                ));
                return Ok(Inspection {
                    linked_role: record,
                    findings,
                    permissions: Vec::new(),
                    inspect_time,
                });
            }
        };
        let role = match with_retries("GetRole", || iam.get_role(&role_name)).await {
            Ok(role) => role,
            Err(IamError::NoSuchEntity(_)) => {
                // The next EnsureLinkedRole asks IAM, not an older
                // confirmation.
                if let Some(arn) = &record.role_arn {
                    self.confirmations.forget(arn);
                }
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
        if record.role_name.is_some()
            && (record.role_arn.as_deref() != Some(o.role_arn.as_str())
                || record.role_id.as_deref() != Some(o.role_id.as_str()))
        {
            if let Some(arn) = &record.role_arn {
                self.confirmations.forget(arn);
            }
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

/// What Amazon Connect's view of the instance says about the governed role
/// (`connect_role`: `None` when Connect does not have the instance, else
/// the role it links, if any).
fn connect_findings(
    instance: &Instance,
    record: &LinkedRole,
    connect_role: Option<&Option<String>>,
) -> Vec<Finding> {
    let Some(linked) = connect_role else {
        // Connect does not have the instance: nothing to compare with (a
        // legacy instance without a role still says so).
        return if instance.is_legacy() && record.role_name.is_none() {
            vec![legacy_finding(record)]
        } else {
            Vec::new()
        };
    };
    match (
        linked.as_deref(),
        linked.as_deref().and_then(ServiceRole::parse),
    ) {
        (_, Some(service_role)) => match record.role_arn.as_deref() {
            Some(governed) if governed != service_role.arn => vec![Finding::new(
                FindingCode::ServiceRoleMismatch,
                Severity::Error,
                format!(
                    "the governed role {governed} is not the role Amazon Connect uses ({})",
                    service_role.arn
                ),
            )],
            _ => Vec::new(),
        },
        // No Connect service-linked role: a legacy instance keeps its
        // finding until Connect reports one.
        _ if instance.is_legacy() => vec![legacy_finding(record)],
        (Some(other), None) => vec![Finding::new(
            FindingCode::ServiceRoleMismatch,
            Severity::Warning,
            format!(
                "Amazon Connect links {other} to the instance, which is not a Connect service-linked role"
            ),
        )],
        (None, None) => vec![Finding::new(
            FindingCode::ServiceRoleMismatch,
            Severity::Warning,
            "Amazon Connect links no service-linked role to the instance",
        )],
    }
}

/// The finding of a legacy instance Connect links no role to: an error
/// while it has no role at all, a warning once the service governs one.
fn legacy_finding(record: &LinkedRole) -> Finding {
    match &record.role_name {
        None => Finding::new(
            FindingCode::LegacyInstanceWithoutRole,
            Severity::Error,
            "the instance was created before 2018-10-01 and has no service-linked role: EnsureLinkedRole creates one",
        ),
        Some(name) => Finding::new(
            FindingCode::LegacyInstanceWithoutRole,
            Severity::Warning,
            format!(
                "the instance was created before 2018-10-01 and Amazon Connect links no service-linked role to it; the service governs {name} for it"
            ),
        ),
    }
}
