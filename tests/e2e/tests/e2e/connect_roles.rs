//! The roles Amazon Connect links to its instances, governed end to end
//! against moto behind the shape layer (real Connect's per-instance roles):
//! one SyncInstances, then an ensure of each instance adopts exactly the
//! role Connect names, restores it under the same name when it was
//! deleted, gives a legacy instance its own, refuses an instance Connect
//! does not have; a retirement never breaks a live instance; inspect sees
//! Connect's role missing.

use std::time::Duration;

use slrgov_proto::slrgov::v1 as pb;
use tonic::Code;

use super::lifecycle_support::register;
use super::support::{Clients, Engine, HOME, Moto, TestDb, TestServer, linked_role_name, refused};

async fn roles(moto: &Moto) -> Vec<(String, String)> {
    moto.connect_roles(&moto.iam(None).await).await
}

async fn ensure(c: &mut Clients, name: &str) -> Result<pb::LinkedRole, tonic::Status> {
    c.linked_roles
        .ensure_linked_role(pb::EnsureLinkedRoleRequest {
            name: name.to_owned(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

async fn get(c: &mut Clients, id: &str) -> pb::Instance {
    c.instances
        .get_instance(pb::GetInstanceRequest {
            name: format!("accounts/{HOME}/instances/{id}"),
        })
        .await
        .expect("get")
        .into_inner()
}

async fn connect_roles_governed(engine: Engine) {
    let moto = Moto::start().await;
    let db = TestDb::new(engine).await;
    let server = TestServer::start_with_moto(&db, &moto, &[]).await;
    let mut c = server.clients().await;
    register(&mut c, HOME, None).await;
    // Three instances as Connect makes them (each with its own role in
    // IAM), one from 2017 without a role.
    let sales = moto
        .create_connect_instance(None, "us-east-1", "sales")
        .await;
    let support = moto
        .create_connect_instance(None, "us-east-1", "support")
        .await;
    let legacy = moto
        .create_connect_instance(None, "us-east-1", "legacy-desk")
        .await;

    // One sync shows every instance with the role Connect names.
    let op = c
        .instances
        .sync_instances(pb::SyncInstancesRequest {
            parent: format!("accounts/{HOME}"),
            request_id: String::new(),
        })
        .await
        .expect("sync")
        .into_inner();
    let done = c.wait_operation(&op.name, Duration::from_secs(50)).await;
    assert!(done.done, "{done:?}");
    let seen = get(&mut c, &sales.id).await;
    assert_eq!(Some(&seen.service_role_arn), sales.role_arn.as_ref());
    assert!(get(&mut c, &legacy.id).await.service_role_arn.is_empty());
    let before = roles(&moto).await;
    assert_eq!(before.len(), 2, "{before:?}");

    // Adopt exactly Connect's role: no role made, Connect's ARN recorded.
    let adopted = ensure(&mut c, &linked_role_name(HOME, &sales.id))
        .await
        .expect("ensure sales");
    assert!(adopted.adopted && !adopted.restored, "{adopted:?}");
    assert_eq!(Some(&adopted.role_arn), sales.role_arn.as_ref());
    assert_eq!(roles(&moto).await, before, "zero roles made");

    // Connect's role deleted behind everyone's back: restored under the
    // very name Connect holds.
    let support_role = support.role_name.clone().expect("support's role");
    moto.iam(None)
        .await
        .delete_service_linked_role()
        .role_name(&support_role)
        .send()
        .await
        .expect("delete support's role in moto");
    let restored = ensure(&mut c, &linked_role_name(HOME, &support.id))
        .await
        .expect("ensure support");
    assert!(restored.restored && !restored.adopted, "{restored:?}");
    assert_eq!(restored.role_name, support_role);
    assert_eq!(Some(&restored.role_arn), support.role_arn.as_ref());
    assert_eq!(roles(&moto).await.len(), 2, "one made again, no more");

    // Legacy: the service gives it a role of its own.
    let legacy_role = ensure(&mut c, &linked_role_name(HOME, &legacy.id))
        .await
        .expect("ensure legacy");
    assert!(
        !legacy_role.adopted && !legacy_role.restored,
        "{legacy_role:?}"
    );
    assert_eq!(roles(&moto).await.len(), 3);

    // Not in Connect: refused, nothing made.
    let hand = c.add_instance(HOME, "us-east-1").await;
    let error = refused(
        c.linked_roles
            .ensure_linked_role(pb::EnsureLinkedRoleRequest {
                name: linked_role_name(HOME, &hand),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(
        (error.code, error.reason.as_str()),
        (Code::FailedPrecondition, "INSTANCE_NOT_IN_CONNECT"),
        "{error:?}"
    );
    assert_eq!(roles(&moto).await.len(), 3, "nothing made");

    // Retiring the role of a live instance is refused, and the role stays.
    let sales_name = linked_role_name(HOME, &sales.id);
    let error = refused(
        c.linked_roles
            .retire_linked_role(pb::RetireLinkedRoleRequest {
                name: sales_name.clone(),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(
        (error.code, error.reason.as_str()),
        (Code::FailedPrecondition, "ROLE_IN_USE"),
        "{error:?}"
    );
    assert!(
        error.message.contains(&sales.id),
        "names the instance: {error:?}"
    );
    assert_eq!(roles(&moto).await.len(), 3, "the role stays");

    // Inspect sees Connect's role missing from IAM.
    moto.iam(None)
        .await
        .delete_service_linked_role()
        .role_name(adopted.role_name.clone())
        .send()
        .await
        .expect("delete sales' role in moto");
    let inspection = c
        .linked_roles
        .inspect_linked_role(pb::InspectLinkedRoleRequest {
            name: sales_name.clone(),
        })
        .await
        .expect("inspect")
        .into_inner();
    let codes: Vec<i32> = inspection.findings.iter().map(|f| f.code).collect();
    assert!(
        codes.contains(&(pb::inspection::finding::Code::RoleMissing as i32)),
        "{inspection:?}"
    );

    // Deleted in Connect, the instance frees its role: the retirement of
    // the support instance's role proceeds.
    moto.delete_connect_instance(None, "us-east-1", &support.id)
        .await;
    let op = c
        .linked_roles
        .retire_linked_role(pb::RetireLinkedRoleRequest {
            name: linked_role_name(HOME, &support.id),
            ..Default::default()
        })
        .await
        .expect("retire once Connect no longer has the instance")
        .into_inner();
    let done = c.wait_operation(&op.name, Duration::from_secs(30)).await;
    assert!(done.done, "{done:?}");
    assert!(
        !roles(&moto)
            .await
            .iter()
            .any(|(name, _)| *name == support_role),
        "support's role is gone"
    );
}

#[tokio::test]
async fn connect_roles_governed_sqlite() {
    connect_roles_governed(Engine::Sqlite).await;
}

#[tokio::test]
async fn connect_roles_governed_postgres() {
    connect_roles_governed(Engine::Postgres).await;
}
