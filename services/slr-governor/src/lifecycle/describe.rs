//! UpdateLinkedRoleDescription: the only edit IAM allows on a
//! service-linked role.

use slrgov_domain::model::{LinkedRole, LinkedRoleState};
use slrgov_domain::names::InstanceKey;
use slrgov_domain::types::Revision;
use slrgov_domain::{Error, Reason, RequestContext, Role};
use slrgov_store::Idempotency;

use super::{Lifecycle, iam_error, with_retries};

impl Lifecycle {
    /// UpdateLinkedRoleDescription: UpdateRoleDescription in IAM (never
    /// UpdateRole, which on moto clears what it is not given), then the
    /// record, both etag-checked. A known request id replays its first
    /// answer before anything is called (so a retry with the same etag is
    /// not refused as stale).
    pub async fn set_description(
        &self,
        ctx: &RequestContext,
        key: &InstanceKey,
        expected: Option<Revision>,
        description: &str,
        idempotency: Option<&Idempotency>,
    ) -> Result<LinkedRole, Error> {
        self.admit(ctx, key, Role::Operator, "UpdateLinkedRoleDescription")
            .await?;
        if let Some(idempotency) = idempotency
            && let Some(first) = self
                .store()
                .request_id_lookup(ctx, &key.account_id, idempotency)
                .await?
        {
            return first.response();
        }
        let iam = self.iam_client(ctx, key).await?;
        let current = self.store().linked_role_get(ctx, key).await?;
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
        self.store()
            .linked_role_set_description(ctx, key, Some(current.revision), description, idempotency)
            .await
    }
}
