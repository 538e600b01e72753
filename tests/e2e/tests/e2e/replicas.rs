//! Three server processes over one Postgres and one moto, as a platform
//! team runs them behind a load balancer: concurrent ensures and retires of
//! the same instances at all three. Each instance gets exactly one role,
//! each retirement runs once to the end, and the background work is shared
//! between the replicas (the audit trail says which replica did each step).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use slrgov_proto::google::longrunning as lro;
use slrgov_proto::slrgov::v1 as pb;
use tonic::Code;

use super::support::{Engine, HOME, Moto, TestDb, TestServer, linked_role_name};

const INSTANCES: usize = 12;

#[tokio::test]
async fn three_replicas_share_ensures_retires_and_background_work() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    let replicas = [
        TestServer::start_with_moto(&db, &moto, &[]).await,
        TestServer::start_with_moto(&db, &moto, &[]).await,
        TestServer::start_with_moto(&db, &moto, &[]).await,
    ];
    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(replica.clients().await);
    }
    clients[0].add_account(HOME).await;
    let mut names = Vec::new();
    for n in 0..INSTANCES {
        let id = clients[n % 3]
            .add_legacy_instance(&moto, HOME, None, "us-east-1")
            .await;
        names.push(linked_role_name(HOME, &id));
    }

    // Every instance ensured at all three replicas at once.
    let mut calls = Vec::new();
    for name in &names {
        for c in &clients {
            let mut client = c.linked_roles.clone();
            let name = name.clone();
            calls.push(tokio::spawn(async move {
                client
                    .ensure_linked_role(pb::EnsureLinkedRoleRequest {
                        name,
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner())
            }));
        }
    }
    let mut arns: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for call in calls {
        let role = call.await.expect("join").expect("ensure");
        arns.entry(role.name.clone())
            .or_default()
            .insert(role.role_arn.clone());
    }
    assert_eq!(arns.len(), INSTANCES);
    for (name, set) in &arns {
        assert_eq!(set.len(), 1, "{name} got more than one role: {set:?}");
    }
    let iam = moto.iam(None).await;
    assert_eq!(
        moto.connect_roles(&iam).await.len(),
        INSTANCES,
        "exactly one role per instance in IAM"
    );

    // Every instance retired at all three replicas at once, staggered a
    // little so that the operations fall due at different ticks.
    let mut retires = Vec::new();
    for name in &names {
        for c in &clients {
            let mut client = c.linked_roles.clone();
            let name = name.clone();
            retires.push(tokio::spawn(async move {
                let answer = client
                    .retire_linked_role(pb::RetireLinkedRoleRequest {
                        name: name.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner());
                (name, answer)
            }));
        }
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    let mut operations: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for retire in retires {
        let (name, answer) = retire.await.expect("join");
        match answer {
            Ok(operation) => {
                if !operation.name.is_empty() {
                    operations.entry(name).or_default().insert(operation.name);
                }
            }
            // A retire that lands after the first one finished finds no
            // role to retire; nothing else is acceptable.
            Err(status) => assert!(
                matches!(status.code(), Code::FailedPrecondition | Code::Aborted),
                "{name}: {status:?}"
            ),
        }
    }
    assert_eq!(operations.len(), INSTANCES, "every instance was retired");
    for (name, ops) in &operations {
        assert_eq!(
            ops.len(),
            1,
            "{name}: concurrent retires started more than one operation: {ops:?}"
        );
    }
    for ops in operations.values() {
        let op_name = ops.iter().next().expect("one operation").clone();
        let done = clients[0]
            .wait_operation(&op_name, Duration::from_secs(60))
            .await;
        assert!(done.done, "{op_name} finished");
        assert!(
            matches!(done.result, Some(lro::operation::Result::Response(_))),
            "{done:?}"
        );
    }
    assert!(
        moto.connect_roles(&iam).await.is_empty(),
        "every role is gone from IAM"
    );

    // The audit trail: each operation finished exactly once, and the
    // workers' steps came from more than one replica.
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = clients[1]
            .audit
            .list_audit_events(pb::ListAuditEventsRequest {
                parent: format!("accounts/{HOME}"),
                page_size: 1000,
                page_token,
                filter: "principal = \"service:workflows\"".into(),
            })
            .await
            .expect("audit")
            .into_inner();
        events.extend(page.audit_events);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    for ops in operations.values() {
        let op_name = ops.iter().next().expect("one operation");
        let finished = events
            .iter()
            .filter(|e| e.detail.contains(&format!("{op_name} finished")))
            .count();
        assert_eq!(finished, 1, "{op_name} finished {finished} times");
    }
    // `worker-workflows-{pid}-{instance}-{unit}`: the replica is the part
    // before the unit's id.
    let owners: BTreeSet<String> = events
        .iter()
        .filter_map(|e| {
            let rest = e.request_id.strip_prefix("worker-workflows-")?;
            rest.rsplit_once('-').map(|(owner, _)| owner.to_owned())
        })
        .collect();
    eprintln!(
        "background steps by replica: {:?}",
        owners
            .iter()
            .map(|o| (
                o.clone(),
                events
                    .iter()
                    .filter(|e| e.request_id.contains(o.as_str()))
                    .count()
            ))
            .collect::<Vec<_>>()
    );
    assert!(
        owners.len() >= 2,
        "all background work ran on one replica: {owners:?}"
    );
}
