//! What an ensure governs, as Amazon Connect says (`Lifecycle::plan`),
//! and what a `validate_only` ensure would do with that plan (`preview`).
//! Both only read: Connect, then IAM for the preview.

use std::time::Duration;

use slrgov_aws::IamApi;
use slrgov_aws::iam::CONNECT_SLR_PATH;
use slrgov_domain::model::{ConnectStatus, LinkedRole};
use slrgov_domain::names::InstanceKey;
use slrgov_domain::{Error, Reason, RequestContext};

use super::connect::{Described, ServiceRole};
use super::ensure::EnsureInputs;
use super::roles::{ROLE_NAME_PREFIX, has_suffix, is_connect_slr, observed, role_suffix};
use super::{Lifecycle, iam_error, with_retries};
use slrgov_aws::IamError;

impl Lifecycle {
    /// What an ensure of `key` governs, as Amazon Connect says (the inputs
    /// without the description): Connect's role, or the deterministic
    /// legacy role of an instance older than October 2018 that Connect names
    /// no role for. Reads Connect only (after the region gate); refuses an
    /// instance Connect does not have, one it is still creating or failed
    /// to create, and a recent one without a role.
    pub(super) async fn plan(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
    ) -> Result<EnsureInputs, Error> {
        let instance = self.store().instance_get(ctx, key).await?;
        self.regions.check_connect(&instance.region)?;
        let name = key.linked_role_name();
        let seen = match self.connect_view(ctx, &instance).await? {
            Described::Found(seen) => seen,
            Described::Missing => {
                return Err(Error::failed_precondition(
                    Reason::InstanceNotInConnect,
                    format!(
                        "amazon connect has no instance {} in {} of account {}: no role is governed for an instance Connect does not have",
                        key.instance_id, instance.region, key.account_id
                    ),
                ));
            }
        };
        match seen.connect.connect_status {
            Some(ConnectStatus::CreationInProgress) => {
                return Err(Error::unavailable(
                    Reason::ConnectUnavailable,
                    format!(
                        "amazon connect is still creating instance {} (and its role): try again shortly",
                        key.instance_id
                    ),
                    Duration::from_secs(10),
                ));
            }
            Some(ConnectStatus::CreationFailed) => {
                return Err(Error::failed_precondition(
                    Reason::FailedPrecondition,
                    format!(
                        "amazon connect failed to create instance {}: it has no role to govern",
                        key.instance_id
                    ),
                ));
            }
            _ => {}
        }
        if let Some(role) = ServiceRole::of(&seen) {
            return Ok(EnsureInputs {
                suffix: role.suffix,
                connect_role: Some(role.name),
                description: None,
            });
        }
        if seen.is_legacy() {
            return Ok(EnsureInputs {
                suffix: Some(role_suffix(key)),
                connect_role: None,
                description: None,
            });
        }
        let named = seen
            .connect
            .service_role_arn
            .as_deref()
            .map(|arn| format!("names {arn}, which is not a Connect service-linked role"))
            .unwrap_or_else(|| "names no service-linked role".to_owned());
        Err(Error::failed_precondition(
            Reason::FailedPrecondition,
            format!(
                "amazon connect {named} for {name}, an instance created {} (after October 2018, when Connect began creating one per instance): the service never creates a role nobody uses",
                seen.instance_create_time
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "at an unknown time".to_owned())
            ),
        ))
    }
}

/// What an ensure would do, changing nothing.
pub(super) async fn preview(
    iam: &dyn IamApi,
    mut current: LinkedRole,
    plan: &EnsureInputs,
) -> Result<LinkedRole, Error> {
    let existing = match (&plan.connect_role, &plan.suffix) {
        (Some(name), _) => match with_retries("GetRole", || iam.get_role(name)).await {
            Ok(role) if !is_connect_slr(&role) => {
                return Err(Error::failed_precondition(
                    Reason::RoleOwnedElsewhere,
                    format!(
                        "the role {name} is not an Amazon Connect service-linked role (path or trust policy)"
                    ),
                ));
            }
            Ok(role) => Some(role),
            Err(IamError::NoSuchEntity(_)) => None,
            Err(error) => return Err(iam_error("GetRole", error)),
        },
        (None, Some(suffix)) => with_retries("ListRoles", || iam.list_roles(CONNECT_SLR_PATH))
            .await
            .map_err(|e| iam_error("ListRoles", e))?
            .into_iter()
            .find(|r| has_suffix(&r.role_name, suffix)),
        (None, None) => None,
    };
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
        None => {
            current.role_name = Some(match (&plan.connect_role, &plan.suffix) {
                (Some(name), _) => {
                    current.restored = true;
                    name.clone()
                }
                (None, Some(suffix)) => format!("{ROLE_NAME_PREFIX}{suffix}"),
                (None, None) => ROLE_NAME_PREFIX.trim_end_matches('_').to_owned(),
            })
        }
    }
    Ok(current)
}
