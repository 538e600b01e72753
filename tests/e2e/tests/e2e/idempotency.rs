//! One rule for every `request_id` (AIP-155), through the real binary and
//! moto: a retry with the same id replays the first answer (even when its
//! etag is stale by then, or the world has moved on), the same id with
//! other parameters is INVALID_ARGUMENT / REQUEST_ID_REUSED and changes
//! nothing, and a retirement's retry gets the same Operation.

use slrgov_proto::slrgov::v1 as pb;
use tonic::Code;

use super::support::{
    Clients, Engine, HOME, Moto, TestDb, TestServer, linked_role_name, refused, role_description,
};

async fn start(moto: &Moto, db: &TestDb) -> TestServer {
    TestServer::start_with_moto(db, moto, &[]).await
}

/// An ensure of the linked role `name` under `request_id`.
fn ensure(name: &str, request_id: &str) -> pb::EnsureLinkedRoleRequest {
    pb::EnsureLinkedRoleRequest {
        name: name.to_owned(),
        request_id: request_id.to_owned(),
        ..Default::default()
    }
}

async fn ensured(c: &mut Clients, moto: &Moto) -> (String, pb::LinkedRole) {
    let id = c.register_legacy_instance(moto, HOME, "us-east-1").await;
    let name = linked_role_name(HOME, &id);
    let role = c
        .linked_roles
        .ensure_linked_role(ensure(&name, &format!("ensure-{id}")))
        .await
        .expect("ensure")
        .into_inner();
    (name, role)
}

#[tokio::test]
async fn a_retried_description_edit_replays_instead_of_etag_mismatch() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    let server = start(&moto, &db).await;
    let mut c = server.clients().await;
    let (name, role) = ensured(&mut c, &moto).await;
    let edit = pb::UpdateLinkedRoleDescriptionRequest {
        name: name.clone(),
        description: "first words".into(),
        etag: role.etag.clone(),
        request_id: "describe-1".into(),
    };
    let first = c
        .linked_roles
        .update_linked_role_description(edit.clone())
        .await
        .expect("edit")
        .into_inner();
    assert_eq!(first.description, "first words");
    assert_ne!(first.etag, role.etag, "the edit moved the etag");

    // The retry carries the old etag: it replays the first answer.
    let replay = c
        .linked_roles
        .update_linked_role_description(edit.clone())
        .await
        .expect("the retry replays")
        .into_inner();
    assert_eq!(replay, first);

    // The same id with other words is refused, and IAM keeps the first.
    let reused = refused(
        c.linked_roles
            .update_linked_role_description(pb::UpdateLinkedRoleDescriptionRequest {
                description: "other words".into(),
                ..edit
            })
            .await,
    );
    assert_eq!(reused.code, Code::InvalidArgument);
    assert_eq!(reused.reason, "REQUEST_ID_REUSED");
    assert_eq!(reused.fields, vec!["request_id".to_owned()]);
    let iam = moto.iam(None).await;
    assert_eq!(
        role_description(&iam, &first.role_name).await.as_deref(),
        Some("first words")
    );
}

#[tokio::test]
async fn a_retried_retirement_returns_the_same_operation() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let server = start(&moto, &db).await;
    let mut c = server.clients().await;
    let (name, role) = ensured(&mut c, &moto).await;
    let retire = pb::RetireLinkedRoleRequest {
        name: name.clone(),
        etag: role.etag.clone(),
        request_id: "retire-1".into(),
        validate_only: false,
    };
    let first = c
        .linked_roles
        .retire_linked_role(retire.clone())
        .await
        .expect("retire")
        .into_inner();
    assert!(first.name.starts_with("operations/"), "{first:?}");
    let replay = c
        .linked_roles
        .retire_linked_role(retire.clone())
        .await
        .expect("the retry replays")
        .into_inner();
    assert_eq!(replay.name, first.name, "the same operation");
    // Wait for it, then retry again: still the same operation, now done.
    let done = c
        .wait_operation(&first.name, std::time::Duration::from_secs(30))
        .await;
    assert!(done.done, "{done:?}");
    let after = c
        .linked_roles
        .retire_linked_role(retire.clone())
        .await
        .expect("a retry after the end replays too")
        .into_inner();
    assert_eq!(after.name, first.name);
    assert!(after.done);
    assert!(
        moto.connect_roles(&moto.iam(None).await).await.is_empty(),
        "the role was deleted once"
    );
    // Another request under the same id is refused.
    let reused = refused(
        c.linked_roles
            .retire_linked_role(pb::RetireLinkedRoleRequest {
                etag: "999".into(),
                ..retire
            })
            .await,
    );
    assert_eq!(reused.reason, "REQUEST_ID_REUSED");
}

#[tokio::test]
async fn a_replayed_ensure_answers_as_the_first_time_and_creates_nothing() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let server = start(&moto, &db).await;
    let mut c = server.clients().await;
    let (name, role) = ensured(&mut c, &moto).await;
    let id = name
        .split('/')
        .nth(3)
        .expect("the instance id in the name")
        .to_owned();
    // The role is retired; the caller's retry of its old ensure replays
    // the first answer rather than making a new role.
    let operation = c.retire_role(&name).await;
    c.operations
        .wait_operation(slrgov_proto::google::longrunning::WaitOperationRequest {
            name: operation.name,
            timeout: None,
        })
        .await
        .expect("wait");
    let replay = c
        .linked_roles
        .ensure_linked_role(ensure(&name, &format!("ensure-{id}")))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(replay.role_arn, role.role_arn);
    assert!(
        moto.connect_roles(&moto.iam(None).await).await.is_empty(),
        "no new role"
    );
    // A new id ensures again.
    let again = c
        .linked_roles
        .ensure_linked_role(ensure(&name, "ensure-again"))
        .await
        .expect("ensure")
        .into_inner();
    assert_eq!(again.state, pb::linked_role::State::Active as i32);
    assert_eq!(moto.connect_roles(&moto.iam(None).await).await.len(), 1);
}

#[tokio::test]
async fn a_retried_instance_deletion_returns_its_operation() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    let server = start(&moto, &db).await;
    let mut c = server.clients().await;
    let id = c.register_instance(HOME, "us-east-1").await;
    let delete = pb::DeleteInstanceRequest {
        name: format!("accounts/{HOME}/instances/{id}"),
        etag: String::new(),
        request_id: "delete-1".into(),
    };
    let first = c
        .instances
        .delete_instance(delete.clone())
        .await
        .expect("delete")
        .into_inner();
    assert!(first.done, "no role: done at once: {first:?}");
    let replay = c
        .instances
        .delete_instance(delete)
        .await
        .expect("the retry replays rather than NOT_FOUND")
        .into_inner();
    assert_eq!(replay.name, first.name);
    let got = c
        .operations
        .get_operation(slrgov_proto::google::longrunning::GetOperationRequest {
            name: first.name.clone(),
        })
        .await
        .expect("the operation was recorded with the delete")
        .into_inner();
    assert!(got.done);
}
