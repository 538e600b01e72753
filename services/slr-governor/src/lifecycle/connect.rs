//! Amazon Connect as the source of truth: the clients (per account and
//! region, through the same verified credentials as IAM), what a failure
//! means to a caller, and the role Connect links to an instance
//! ([`ServiceRole`]): the role the ensure, inspect and retire of that
//! instance govern.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use slrgov_aws::{AccountTarget, ConnectApi, ConnectError, ConnectInstance};
use slrgov_domain::filter::InstanceFilter;
use slrgov_domain::model::{Instance, ObservedState, SeenInstance};
use slrgov_domain::names::{AccountSelector, InstanceKey};
use slrgov_domain::types::{AccountId, InstanceAlias, InstanceId, RegionCode};
use slrgov_domain::{Error, Reason, RequestContext};
use slrgov_store::{Listed, MAX_PAGE_SIZE, Observation, PageRequest};

use super::{Lifecycle, access_error};

/// How old the registry's view of an instance may be for an ensure or a
/// retirement to trust it without asking Connect again (DescribeInstance).
pub const FRESH_FOR: Duration = Duration::from_secs(300);

/// The path of every Connect service-linked role, in an ARN.
const SLR_ARN_PATH: &str = ":role/aws-service-role/connect.amazonaws.com/";

/// The service-linked role Amazon Connect names for an instance, read from
/// its ARN (`ServiceRole`): the name to govern and the suffix to create it
/// again with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRole {
    /// The role's ARN, as Connect holds it.
    pub arn: String,
    /// The role's name (the ARN's last segment).
    pub name: String,
    /// The custom suffix after the first `_` (`None`: an unsuffixed role,
    /// shared by every instance of an account where suffixes are refused).
    pub suffix: Option<String>,
}

impl ServiceRole {
    /// The role Connect names, when `arn` is a Connect service-linked role
    /// (path `/aws-service-role/connect.amazonaws.com/`, name
    /// `AWSServiceRoleFor…`); `None` for any other role.
    pub fn parse(arn: &str) -> Option<Self> {
        let (_, name) = arn.split_once(SLR_ARN_PATH)?;
        if !arn.starts_with("arn:") || name.contains('/') || !name.starts_with("AWSServiceRoleFor")
        {
            return None;
        }
        let suffix = name
            .split_once('_')
            .map(|(_, suffix)| suffix.to_owned())
            .filter(|s| !s.is_empty());
        Some(ServiceRole {
            arn: arn.to_owned(),
            name: name.to_owned(),
            suffix,
        })
    }

    /// The role Connect links to `instance`, as last recorded.
    pub fn of(instance: &Instance) -> Option<Self> {
        instance
            .connect
            .service_role_arn
            .as_deref()
            .and_then(Self::parse)
    }
}

/// Maps a Connect failure of `action` (e.g. `ListInstances`) in `account`
/// and `region` to the caller's error. NotFound is the caller's to decide.
pub fn connect_error(
    action: &str,
    account: &AccountId,
    region: &str,
    error: ConnectError,
) -> Error {
    match error {
        ConnectError::AccessDenied(message) => Error::failed_precondition(
            Reason::ConnectAccessDenied,
            format!(
                "the service may not call connect:{action} in account {account} ({region}): {message}"
            ),
        )
        .with_metadata("action", format!("connect:{action}"))
        .with_metadata("region", region.to_owned()),
        ConnectError::RegionNotEnabled(message) => Error::failed_precondition(
            Reason::RegionNotSupported,
            format!(
                "account {account} has not enabled {region} (an opt-in region), so Amazon Connect cannot be read there: {message}"
            ),
        )
        .with_metadata("region", region.to_owned()),
        ConnectError::Throttled(_) | ConnectError::Unavailable(_) => Error::unavailable(
            Reason::ConnectUnavailable,
            format!("connect {action} failed after retries in {region}: {error}"),
            Duration::from_secs(2),
        ),
        ConnectError::NotFound(message) => Error::failed_precondition(
            Reason::InstanceNotInConnect,
            format!("amazon connect has no such instance in {region}: {message}"),
        ),
        ConnectError::Other { code, message } => {
            tracing::error!(action, code, message, "unexpected connect error");
            Error::internal(format!("connect {action} failed: {code}: {message}"))
        }
    }
}

/// An instance as Connect describes it, to record; `None` (logged) for an
/// id that is not a Connect instance id.
pub fn seen(instance: &ConnectInstance) -> Option<SeenInstance> {
    let instance_id = match InstanceId::parse(&instance.id) {
        Ok(id) => id,
        Err(error) => {
            tracing::warn!(id = instance.id, %error, "connect listed an instance whose id the registry refuses; skipped");
            return None;
        }
    };
    Some(SeenInstance {
        instance_id,
        // An alias the registry's rules refuse is left out, not fatal.
        instance_alias: instance
            .alias
            .as_deref()
            .and_then(|a| InstanceAlias::parse(a).ok()),
        connect_arn: instance.arn.clone(),
        connect_status: instance.status,
        instance_create_time: instance
            .created
            .and_then(|t| chrono::DateTime::from_timestamp_micros(t.timestamp_micros())),
        identity_management_type: instance.identity_management_type.clone(),
        service_role_arn: instance.service_role.clone().filter(|s| !s.is_empty()),
    })
}

/// What a look at Connect for one instance found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Described {
    /// Connect has the instance (the registry now says so too).
    Found(Box<Instance>),
    /// Connect does not have it (the registry marks it VANISHED if Connect
    /// knew it before).
    Missing,
}

impl Lifecycle {
    /// How the service reaches `account`.
    pub async fn account_target(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
    ) -> Result<AccountTarget, Error> {
        let access = self.store.account_access(ctx, account).await?;
        Ok(AccountTarget::new(
            access.account_id,
            access.partition,
            access.access_role_arn,
            access.external_id.as_ref(),
        ))
    }

    /// A verified Connect client of `account` in `region`, after the
    /// region gate (REGION_NOT_SUPPORTED without any AWS call).
    pub async fn connect_client(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
        region: &RegionCode,
    ) -> Result<Arc<dyn ConnectApi>, Error> {
        self.regions.check_connect(region)?;
        let target = self.account_target(ctx, account).await?;
        self.iam
            .connect(&target, region.as_str())
            .await
            .map_err(access_error)
    }

    /// What Connect says of `instance` now (DescribeInstance), read only:
    /// `None` when Connect does not have it.
    pub async fn describe_live(
        &self,
        ctx: &RequestContext,
        instance: &Instance,
    ) -> Result<Option<ConnectInstance>, Error> {
        let key = instance.key();
        let connect = self
            .connect_client(ctx, &key.account_id, &instance.region)
            .await?;
        match connect
            .describe_instance(instance.instance_id.as_str())
            .await
        {
            Ok(found) => Ok(Some(found)),
            Err(ConnectError::NotFound(_)) => Ok(None),
            Err(error) => {
                if error.is_transient() {
                    slrgov_aws::telemetry::count_retry("connect", "DescribeInstance");
                }
                Err(connect_error(
                    "DescribeInstance",
                    &key.account_id,
                    instance.region.as_str(),
                    error,
                ))
            }
        }
    }

    /// What Connect says of `instance` now (DescribeInstance), recorded in
    /// the registry (an operator's call): the instance with Connect's view,
    /// or `Missing`.
    pub async fn describe(
        &self,
        ctx: &RequestContext,
        instance: &Instance,
    ) -> Result<Described, Error> {
        let key = instance.key();
        let asked_at = Utc::now();
        let found = self.describe_live(ctx, instance).await?;
        let missing = found.is_none();
        let (seen, listed) = match found {
            Some(found) => (seen(&found).into_iter().collect(), Listed::Seen),
            None => (
                Vec::new(),
                Listed::Missing(vec![instance.instance_id.clone()]),
            ),
        };
        self.store
            .instance_observe(
                ctx,
                Observation {
                    account: key.account_id.clone(),
                    region: instance.region.clone(),
                    seen,
                    listed,
                    asked_at: Some(asked_at),
                },
            )
            .await?;
        if missing {
            return Ok(Described::Missing);
        }
        Ok(Described::Found(Box::new(
            self.store.instance_get(ctx, &key).await?,
        )))
    }

    /// The instance as Connect sees it: the registry's view when Connect
    /// was asked within [`FRESH_FOR`] and listed it, else a new
    /// DescribeInstance, recorded.
    pub async fn connect_view(
        &self,
        ctx: &RequestContext,
        instance: &Instance,
    ) -> Result<Described, Error> {
        let fresh = instance.connect.sync_time.is_some_and(|t| {
            Utc::now() - t < chrono::Duration::from_std(FRESH_FOR).unwrap_or_default()
        });
        if fresh && instance.connect.observed_state == ObservedState::Observed {
            return Ok(Described::Found(Box::new(instance.clone())));
        }
        self.describe(ctx, instance).await
    }

    /// The role Connect links to `instance` as the registry last recorded
    /// it when that is fresh, else as DescribeInstance says now (read only,
    /// for viewers): `Ok(None)` when Connect does not have the instance.
    pub async fn connect_role_live(
        &self,
        ctx: &RequestContext,
        instance: &Instance,
    ) -> Result<Option<Option<String>>, Error> {
        let fresh = instance.connect.sync_time.is_some_and(|t| {
            Utc::now() - t < chrono::Duration::from_std(FRESH_FOR).unwrap_or_default()
        });
        if fresh && instance.connect.observed_state == ObservedState::Observed {
            return Ok(Some(instance.connect.service_role_arn.clone()));
        }
        Ok(self
            .describe_live(ctx, instance)
            .await?
            .map(|found| found.service_role.filter(|s| !s.is_empty())))
    }
}

impl Lifecycle {
    /// The instance that Amazon Connect says still uses the role
    /// `role_name` of `key`'s account, if any: `key`'s own instance (asked
    /// now with DescribeInstance), then every other instance
    /// the registry last saw in Connect naming that role (asked again with
    /// DescribeInstance). An instance Connect no longer has, or one marked
    /// VANISHED, uses nothing. A retirement asks before it deletes the role.
    pub async fn role_user(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        role_name: &str,
    ) -> Result<Option<String>, Error> {
        let names_role = |arn: Option<&str>| {
            arn.and_then(ServiceRole::parse)
                .is_some_and(|role| role.name == role_name)
        };
        // The instance itself is asked now, whatever the registry last saw
        // (and what Connect says is recorded): a view that says "not in use"
        // is never trusted from a cache.
        let own = self.store.instance_get(ctx, key).await?;
        if self.regions.check_connect(&own.region).is_ok()
            && let Described::Found(seen) = self.describe(ctx, &own).await?
            && names_role(seen.connect.service_role_arn.as_deref())
        {
            return Ok(Some(key.name()));
        }
        let filter = InstanceFilter {
            observed_state: Some(ObservedState::Observed),
            ..InstanceFilter::default()
        };
        let mut page = PageRequest {
            size: MAX_PAGE_SIZE,
            token: None,
        };
        loop {
            let listed = self
                .store
                .instance_list(
                    ctx,
                    &AccountSelector::One(key.account_id.clone()),
                    &filter,
                    &page,
                )
                .await?;
            for other in &listed.items {
                if other.instance_id == key.instance_id
                    || !names_role(other.connect.service_role_arn.as_deref())
                    || self.regions.check_connect(&other.region).is_err()
                {
                    continue;
                }
                if let Some(found) = self.describe_live(ctx, other).await?
                    && names_role(found.service_role.as_deref())
                {
                    return Ok(Some(other.key().name()));
                }
            }
            if listed.next_page_token.is_empty() {
                return Ok(None);
            }
            page.token = Some(listed.next_page_token);
        }
    }
}

/// ROLE_IN_USE: `role_name` cannot be retired while `user` uses it.
pub fn role_in_use(role_name: &str, user: &str) -> Error {
    Error::failed_precondition(
        Reason::RoleInUse,
        format!(
            "amazon connect still links {user} to the role {role_name}: retiring it would break the instance (delete the instance in Connect first)"
        ),
    )
    .with_metadata("instance", user.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_roles_are_read_from_their_arn() {
        let role = ServiceRole::parse(
            "arn:aws:iam::123456789012:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect_AbCdEfGhIjKlMnOpQrSt",
        )
        .expect("a connect slr");
        assert_eq!(
            role.name,
            "AWSServiceRoleForAmazonConnect_AbCdEfGhIjKlMnOpQrSt"
        );
        assert_eq!(role.suffix.as_deref(), Some("AbCdEfGhIjKlMnOpQrSt"));
        let shared = ServiceRole::parse(
            "arn:aws:iam::123456789012:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect",
        )
        .expect("the unsuffixed role");
        assert_eq!(shared.suffix, None);
        // Not a Connect SLR: another path, another service, a user role.
        for other in [
            "arn:aws:iam::123456789012:role/MyConnectRole",
            "arn:aws:iam::123456789012:role/aws-service-role/lex.amazonaws.com/AWSServiceRoleForLexBots",
            "arn:aws:iam::123456789012:role/aws-service-role/connect.amazonaws.com/Custom",
            "",
        ] {
            assert_eq!(ServiceRole::parse(other), None, "{other}");
        }
    }
}
