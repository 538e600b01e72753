//! An `accounts/-` sync or batch is held under its first account, but it
//! acts on every account of its caller: another caller who shares only
//! some of those accounts must not read it (its metadata and response
//! name the other accounts' instances and errors) nor cancel it.

use slrgov_proto::google::longrunning::operations_client::OperationsClient;
use slrgov_proto::google::longrunning::{
    CancelOperationRequest, GetOperationRequest, ListOperationsRequest,
};
use slrgov_proto::slrgov::v1 as pb;
use slrgov_proto::slrgov::v1::account_service_client::AccountServiceClient;
use slrgov_proto::slrgov::v1::instance_service_client::InstanceServiceClient;
use slrgov_proto::slrgov::v1::linked_role_service_client::LinkedRoleServiceClient;

use super::auth_support::{Jwt, with_token};
use super::support::{Engine, Moto, TestDb, TestServer, account_id, env_refs, instance_id};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_every_account_operation_is_hidden_from_a_caller_who_sees_part_of_it() {
    let moto = Moto::start().await;
    let jwt = Jwt::new("eddsa");
    let mut env = jwt.env();
    env.extend(moto.env());
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start_with(&db, &env_refs(&env)).await;
    let channel = server.channel().await;
    let (x, y) = (account_id(201), account_id(202));
    let wide = jwt.token("wide", "admin", &[&x, &y]);
    let narrow = jwt.token("narrow", "operator", &[&x]);
    let mut accounts = AccountServiceClient::new(channel.clone());
    let mut instances = InstanceServiceClient::new(channel.clone());
    for account in [&x, &y] {
        accounts
            .create_account(with_token(
                pb::CreateAccountRequest {
                    account_id: account.clone(),
                    account: Some(pb::Account::default()),
                    request_id: String::new(),
                },
                &wide,
            ))
            .await
            .expect("account");
        instances
            .create_instance(with_token(
                pb::CreateInstanceRequest {
                    parent: format!("accounts/{account}"),
                    instance_id: instance_id(),
                    instance: Some(pb::Instance {
                        region: "us-east-1".into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &wide,
            ))
            .await
            .expect("instance");
    }
    let mut linked_roles = LinkedRoleServiceClient::new(channel.clone());
    let batch = |token: &str| {
        with_token(
            pb::BatchEnsureLinkedRolesRequest {
                parent: "accounts/-".into(),
                validate_only: true,
                ..Default::default()
            },
            token,
        )
    };
    let wide_batch = linked_roles
        .batch_ensure_linked_roles(batch(&wide))
        .await
        .expect("the wide caller's batch")
        .into_inner();
    let wide_sync = instances
        .sync_instances(with_token(
            pb::SyncInstancesRequest {
                parent: "accounts/-".into(),
                request_id: String::new(),
            },
            &wide,
        ))
        .await
        .expect("the wide caller's sync")
        .into_inner();
    let narrow_batch = linked_roles
        .batch_ensure_linked_roles(batch(&narrow))
        .await
        .expect("the narrow caller's batch")
        .into_inner();

    let mut operations = OperationsClient::new(channel.clone());
    for op in [&wide_batch, &wide_sync] {
        let status = operations
            .get_operation(with_token(
                GetOperationRequest {
                    name: op.name.clone(),
                },
                &narrow,
            ))
            .await
            .expect_err("hidden from the narrow caller");
        assert_eq!(
            status.code(),
            tonic::Code::NotFound,
            "{}: {status:?}",
            op.name
        );
        let status = operations
            .cancel_operation(with_token(
                CancelOperationRequest {
                    name: op.name.clone(),
                },
                &narrow,
            ))
            .await
            .expect_err("not cancellable by the narrow caller");
        assert_eq!(
            status.code(),
            tonic::Code::NotFound,
            "{}: {status:?}",
            op.name
        );
        // The wide caller reads its own.
        operations
            .get_operation(with_token(
                GetOperationRequest {
                    name: op.name.clone(),
                },
                &wide,
            ))
            .await
            .expect("the wide caller's operation");
    }
    let listed = |token: String| {
        let mut operations = operations.clone();
        async move {
            operations
                .list_operations(with_token(
                    ListOperationsRequest {
                        name: "operations".into(),
                        page_size: 100,
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .expect("list")
                .into_inner()
                .operations
                .into_iter()
                .map(|op| op.name)
                .collect::<Vec<_>>()
        }
    };
    let seen_by_narrow = listed(narrow.clone()).await;
    assert!(
        seen_by_narrow.contains(&narrow_batch.name),
        "{seen_by_narrow:?}"
    );
    assert!(
        !seen_by_narrow.contains(&wide_batch.name),
        "{seen_by_narrow:?}"
    );
    assert!(
        !seen_by_narrow.contains(&wide_sync.name),
        "{seen_by_narrow:?}"
    );
    // The narrow caller's batch covers X only: the wide caller sees it.
    let seen_by_wide = listed(wide.clone()).await;
    for op in [&wide_batch, &wide_sync, &narrow_batch] {
        assert!(seen_by_wide.contains(&op.name), "{seen_by_wide:?}");
    }
}
