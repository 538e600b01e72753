//! AccountService: the AWS accounts the service acts in.

use std::sync::Arc;

use slrgov_domain::model::{AccountPatch, ExternalIdChange, NewAccount};
use slrgov_domain::names::parse_account_name;
use slrgov_domain::types::{AccountId, Partition, parse_access_role_arn};
use slrgov_domain::{Error, Violations};
use slrgov_proto::slrgov::v1 as pb;
use slrgov_proto::slrgov::v1::account_service_server::AccountService;
use slrgov_store::PageRequest;
use tonic::{Request, Response, Status};

use super::{AppState, accepted, handle};
use crate::caller::context;
use crate::convert;
use crate::mask;

/// The AccountService implementation.
#[derive(Debug, Clone)]
pub struct Accounts {
    state: Arc<AppState>,
}

impl Accounts {
    /// Serves accounts from `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Accounts { state }
    }
}

/// The fields UpdateAccount may change.
const UPDATABLE: &[&str] = &["display_name", "access_role_arn", "external_id"];

#[tonic::async_trait]
impl AccountService for Accounts {
    async fn create_account(
        &self,
        request: Request<pb::CreateAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let ctx = context(&request, "CreateAccount");
        let request = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let idempotency = convert::idempotency(&mut v, "CreateAccount", &request);
            let pb::CreateAccountRequest {
                account_id,
                account,
                request_id: _,
            } = request;
            let account_id = v.check("account_id", AccountId::parse(&account_id));
            let Some(account) = account else {
                v.add("account", "is required");
                return Err(super::refused(v));
            };
            let pb::Account {
                name: _,
                account_id: body_account_id,
                display_name,
                partition,
                access_role_arn,
                external_id,
                external_id_set: _,
                create_time: _,
                update_time: _,
                etag: _,
            } = account;
            if !body_account_id.is_empty()
                && account_id
                    .as_ref()
                    .is_some_and(|id| id.as_str() != body_account_id)
            {
                v.add("account.account_id", "must be empty or equal account_id");
            }
            let fields =
                convert::account_fields(&mut v, &display_name, &partition, &access_role_arn);
            if let (Some(id), Some(arn)) = (&account_id, &fields.access_role_arn) {
                v.check(
                    "account.access_role_arn",
                    parse_access_role_arn(arn.as_str(), fields.partition, id),
                );
            }
            let external_id =
                convert::parse_external_id(&mut v, "account.external_id", &external_id);
            v.finish()?;
            let new = NewAccount {
                account_id: accepted(account_id)?,
                fields,
                external_id,
            };
            let created = self
                .state
                .store()?
                .account_create(&ctx, new, idempotency.as_ref())
                .await?;
            Ok(convert::account(&created))
        })
        .await
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let ctx = context(&request, "GetAccount");
        let pb::GetAccountRequest { name } = request.into_inner();
        handle(&self.state, &ctx, async {
            let account = parse_account_name(&name).map_err(|e| e.on("name"))?;
            let found = self.state.store()?.account_get(&ctx, &account).await?;
            Ok(convert::account(&found))
        })
        .await
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        let ctx = context(&request, "ListAccounts");
        let pb::ListAccountsRequest {
            page_size,
            page_token,
        } = request.into_inner();
        handle(&self.state, &ctx, async {
            let page = PageRequest::parse(page_size, &page_token).map_err(|e| e.on("page_size"))?;
            let page = self.state.store()?.account_list(&ctx, &page).await?;
            Ok(pb::ListAccountsResponse {
                accounts: page.items.iter().map(convert::account).collect(),
                next_page_token: page.next_page_token,
            })
        })
        .await
    }

    async fn update_account(
        &self,
        request: Request<pb::UpdateAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let ctx = context(&request, "UpdateAccount");
        let pb::UpdateAccountRequest {
            account,
            update_mask,
        } = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let Some(account) = account else {
                return Err(Error::invalid_field("account", "is required"));
            };
            let pb::Account {
                name,
                account_id: _,
                display_name,
                partition,
                access_role_arn,
                external_id,
                external_id_set: _,
                create_time: _,
                update_time: _,
                etag,
            } = account;
            let account_id = v.check("account.name", parse_account_name(&name));
            let expected = convert::parse_etag(&mut v, "account.etag", &etag);
            let populated = [
                ("display_name", !display_name.is_empty()),
                ("access_role_arn", !access_role_arn.is_empty()),
                ("external_id", !external_id.is_empty()),
                ("partition", !partition.is_empty()),
            ];
            let mask = mask::parse(
                &mut v,
                update_mask.as_ref(),
                UPDATABLE,
                &populated,
                &[(
                    "partition",
                    "is immutable: an account cannot change partition",
                )],
            );
            let mut patch = AccountPatch {
                display_name: None,
                access_role_arn: None,
                external_id: ExternalIdChange::Keep,
            };
            if mask.has("display_name") {
                patch.display_name = Some(convert::parse_display_name(
                    &mut v,
                    "account.display_name",
                    &display_name,
                ));
            }
            if mask.has("access_role_arn") {
                // The shape of the ARN is checked here, before the account is
                // looked up, so that bad input is INVALID_ARGUMENT whether or
                // not the account exists; the store checks that its partition
                // is the account's.
                if let (false, Some(account)) = (access_role_arn.is_empty(), &account_id) {
                    let partition = access_role_arn
                        .split(':')
                        .nth(1)
                        .and_then(|p| Partition::parse(p).ok())
                        .unwrap_or(Partition::Aws);
                    let _ = v.check(
                        "account.access_role_arn",
                        parse_access_role_arn(&access_role_arn, partition, account),
                    );
                }
                patch.access_role_arn =
                    Some((!access_role_arn.is_empty()).then_some(access_role_arn));
            }
            if mask.has("external_id") {
                patch.external_id = convert::external_id_change(convert::parse_external_id(
                    &mut v,
                    "account.external_id",
                    &external_id,
                ));
            }
            v.finish()?;
            let updated = self
                .state
                .store()?
                .account_update(&ctx, &accepted(account_id)?, expected, patch)
                .await?;
            Ok(convert::account(&updated))
        })
        .await
    }

    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountRequest>,
    ) -> Result<Response<()>, Status> {
        let ctx = context(&request, "DeleteAccount");
        let pb::DeleteAccountRequest { name, etag } = request.into_inner();
        handle(&self.state, &ctx, async {
            let mut v = Violations::new();
            let account = v.check("name", parse_account_name(&name));
            let expected = convert::parse_etag(&mut v, "etag", &etag);
            v.finish()?;
            self.state
                .store()?
                .account_delete(&ctx, &accepted(account)?, expected)
                .await?;
            Ok(())
        })
        .await
    }
}
