//! AccountService, one test per RPC.

use slr_governor::api::accounts::Accounts;
use slrgov_proto::slrgov::v1::account_service_server::AccountService as _;

use crate::checks::Spec;

rpc_test!(
    account_service_create_account: Accounts::create_account,
    Spec::writes("AccountService/CreateAccount", &["account_id", "account", "request_id"]),
);

rpc_test!(
    account_service_get_account: Accounts::get_account,
    Spec::reads("AccountService/GetAccount", &["name"]),
);

rpc_test!(
    account_service_list_accounts: Accounts::list_accounts,
    Spec::reads("AccountService/ListAccounts", &["page_size", "page_token"]),
);

rpc_test!(
    account_service_update_account: Accounts::update_account,
    Spec::writes("AccountService/UpdateAccount", &["account", "update_mask"]),
);

rpc_test!(
    account_service_delete_account: Accounts::delete_account,
    Spec::writes("AccountService/DeleteAccount", &["name", "etag"]),
);
