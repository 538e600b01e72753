//! WatchInstances and WatchLinkedRoles as a portal uses them: a change
//! made through one replica reaches a watcher at another within about a
//! second; a resume token replays what followed it; the streams are scoped
//! like List; bad input is INVALID_ARGUMENT with the field named; a token
//! older than the retained log is OUT_OF_RANGE; a watcher that stops
//! reading is cut off without losing anything it resumes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use slrgov_proto::slrgov::v1 as pb;
use slrgov_proto::slrgov::v1::instance_service_client::InstanceServiceClient;
use tonic::Code;

use pb::watch_instances_response::ChangeType as InstanceChange;
use pb::watch_linked_roles_response::ChangeType as RoleChange;

use super::auth_support::{Jwt, with_token};
use super::support::{
    Engine, HOME, Moto, TestDb, TestServer, account_id, env_refs, linked_role_name, refusal,
};

/// The next message of a stream, within `within`.
pub async fn next<T>(stream: &mut tonic::Streaming<T>, within: Duration) -> T {
    tokio::time::timeout(within, stream.message())
        .await
        .expect("a message arrives in time")
        .expect("the stream goes on")
        .expect("the stream is not over")
}

/// The next instance change (bookmarks skipped).
async fn next_instance(
    stream: &mut tonic::Streaming<pb::WatchInstancesResponse>,
    within: Duration,
) -> pb::WatchInstancesResponse {
    let until = Instant::now() + within;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let message = next(stream, left).await;
        if message.change_type != InstanceChange::Bookmark as i32 {
            return message;
        }
    }
}

/// The next linked-role change (bookmarks skipped).
async fn next_role(
    stream: &mut tonic::Streaming<pb::WatchLinkedRolesResponse>,
    within: Duration,
) -> pb::WatchLinkedRolesResponse {
    let until = Instant::now() + within;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let message = next(stream, left).await;
        if message.change_type != RoleChange::Bookmark as i32 {
            return message;
        }
    }
}

fn watch(parent: &str, filter: &str, token: &str) -> pb::WatchInstancesRequest {
    pb::WatchInstancesRequest {
        parent: parent.into(),
        filter: filter.into(),
        resume_token: token.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_at_one_replica_reaches_a_watcher_at_another_and_a_token_resumes() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    let a = TestServer::start_with_moto(&db, &moto, &[]).await;
    let b = TestServer::start_with_moto(&db, &moto, &[]).await;
    let mut at_a = a.clients().await;
    let mut at_b = b.clients().await;
    at_a.add_account(HOME).await;

    let mut instances = at_b
        .instances
        .watch_instances(watch("accounts/-", "", ""))
        .await
        .expect("watch instances")
        .into_inner();
    let mut roles = at_b
        .linked_roles
        .watch_linked_roles(pb::WatchLinkedRolesRequest {
            parent: format!("accounts/{HOME}"),
            resume_token: String::new(),
        })
        .await
        .expect("watch linked roles")
        .into_inner();
    let start = next(&mut instances, Duration::from_secs(5)).await;
    assert_eq!(start.change_type, InstanceChange::Bookmark as i32);
    assert!(start.instance.is_none());
    assert!(!start.resume_token.is_empty());
    let role_start = next(&mut roles, Duration::from_secs(5)).await;
    assert_eq!(role_start.change_type, RoleChange::Bookmark as i32);

    // A registration at A reaches the watcher at B.
    let asked = Instant::now();
    let id = at_a
        .add_legacy_instance(&moto, HOME, None, "us-east-1")
        .await;
    let created = next_instance(&mut instances, Duration::from_secs(10)).await;
    let latency = asked.elapsed();
    let name = format!("accounts/{HOME}/instances/{id}");
    assert_eq!(created.change_type, InstanceChange::Changed as i32);
    let instance = created.instance.clone().expect("the instance");
    assert_eq!(instance.name, name);
    assert_eq!(instance.region, "us-east-1");
    // About a second (LISTEN/NOTIFY), with room for a loaded test machine.
    assert!(
        latency < Duration::from_secs(3),
        "the change took {latency:?} to reach the other replica's watcher"
    );

    // An ensure at A: the role watcher at B sees the role become ACTIVE,
    // and the instance watcher sees the instance's state move.
    let role_name = linked_role_name(HOME, &id);
    let ensured = at_a.ensure_role(&role_name).await;
    let active = loop {
        let change = next_role(&mut roles, Duration::from_secs(20)).await;
        let role = change.linked_role.expect("the linked role");
        assert_eq!(role.name, role_name);
        if role.state == pb::linked_role::State::Active as i32 {
            break role;
        }
    };
    assert_eq!(active.role_arn, ensured.role_arn);
    loop {
        let change = next_instance(&mut instances, Duration::from_secs(20)).await;
        let seen = change.instance.expect("the instance");
        assert_eq!(seen.name, name);
        if seen.linked_role_state == pb::linked_role::State::Active as i32 {
            break;
        }
    }

    // An update at A: the event carries the instance as GetInstance shows
    // it, etag included.
    let updated = at_a
        .instances
        .update_instance(pb::UpdateInstanceRequest {
            instance: Some(pb::Instance {
                name: name.clone(),
                instance_alias: "watched".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["instance_alias".into()],
            }),
            request_id: String::new(),
        })
        .await
        .expect("update")
        .into_inner();
    let seen = loop {
        let change = next_instance(&mut instances, Duration::from_secs(10)).await;
        let seen = change.instance.expect("the instance");
        if seen.instance_alias == "watched" {
            break seen;
        }
    };
    assert_eq!(seen.name, name);
    assert_eq!(seen.etag, updated.etag);

    // A registered-only instance deleted at A: the watcher sees it go.
    let gone = at_a.add_instance(HOME, "us-west-2").await;
    let gone_name = format!("accounts/{HOME}/instances/{gone}");
    let operation = at_a
        .instances
        .delete_instance(pb::DeleteInstanceRequest {
            name: gone_name.clone(),
            etag: String::new(),
            request_id: String::new(),
        })
        .await
        .expect("delete")
        .into_inner();
    if !operation.done {
        at_a.wait_operation(&operation.name, Duration::from_secs(20))
            .await;
    }
    let deleted = loop {
        let change = next_instance(&mut instances, Duration::from_secs(20)).await;
        if change.change_type == InstanceChange::Deleted as i32 {
            break change;
        }
    };
    let tombstone = deleted.instance.expect("the deleted instance's name");
    assert_eq!(tombstone.name, gone_name);
    assert!(tombstone.region.is_empty(), "only the name: {tombstone:?}");

    // Resumed at A from the first bookmark: everything since, each
    // instance at its latest state, the deletion included.
    let mut resumed = at_a
        .instances
        .watch_instances(watch("accounts/-", "", &start.resume_token))
        .await
        .expect("resume")
        .into_inner();
    let (mut replayed_latest, mut replayed_deletion) = (false, false);
    while !(replayed_latest && replayed_deletion) {
        let change = next_instance(&mut resumed, Duration::from_secs(10)).await;
        let instance = change.instance.expect("the instance");
        // Each replayed change shows the instance as it is now.
        if instance.name == name {
            assert_eq!(instance.instance_alias, "watched");
            replayed_latest = true;
        }
        if instance.name == gone_name {
            assert_eq!(change.change_type, InstanceChange::Deleted as i32);
            replayed_deletion = true;
        }
    }

    // Resumed from the last change: nothing old comes again; the next
    // change does.
    let mut tail = at_b
        .instances
        .watch_instances(watch("accounts/-", "", &deleted.resume_token))
        .await
        .expect("resume at the end")
        .into_inner();
    let fresh = at_a.add_instance(HOME, "eu-west-2").await;
    let fresh_name = format!("accounts/{HOME}/instances/{fresh}");
    loop {
        let change = next_instance(&mut tail, Duration::from_secs(10)).await;
        let instance = change.instance.expect("the instance");
        assert_ne!(instance.name, gone_name, "an old change came again");
        if instance.name == fresh_name {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_is_scoped_like_list_and_refuses_bad_input_by_field() {
    let jwt = Jwt::new("eddsa");
    let env = jwt.env();
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start_with(&db, &env_refs(&env)).await;
    let channel = server.channel().await;
    let (x, y) = (account_id(301), account_id(302));
    let admin = jwt.token("admin", "admin", &[&x, &y]);
    let narrow = jwt.token("narrow", "viewer", &[&x]);
    let mut client = InstanceServiceClient::new(channel.clone());
    let mut accounts =
        slrgov_proto::slrgov::v1::account_service_client::AccountServiceClient::new(channel);
    for account in [&x, &y] {
        accounts
            .create_account(with_token(
                pb::CreateAccountRequest {
                    account_id: account.clone(),
                    account: Some(pb::Account::default()),
                    request_id: String::new(),
                },
                &admin,
            ))
            .await
            .expect("account");
    }

    // Bad input: INVALID_ARGUMENT naming the field; no stream.
    for (request, field) in [
        (watch("accounts/nope", "", ""), "parent"),
        (
            watch(&format!("accounts/{x}"), "colour = RED", ""),
            "filter",
        ),
        (
            watch(&format!("accounts/{x}"), "", "not-a-token"),
            "resume_token",
        ),
    ] {
        let status = client
            .watch_instances(with_token(request, &narrow))
            .await
            .expect_err("refused");
        let refusal = refusal(&status);
        assert_eq!(refusal.code, Code::InvalidArgument);
        assert_eq!(refusal.fields, vec![field.to_owned()]);
    }
    // Another tenant's account does not exist for this caller.
    let status = client
        .watch_instances(with_token(watch(&format!("accounts/{y}"), "", ""), &narrow))
        .await
        .expect_err("not visible");
    assert_eq!(status.code(), Code::NotFound);

    let mut narrow_all = client
        .watch_instances(with_token(watch("accounts/-", "", ""), &narrow))
        .await
        .expect("watch every visible account")
        .into_inner();
    let mut filtered = client
        .watch_instances(with_token(
            watch("accounts/-", "region = \"eu-west-2\"", ""),
            &admin,
        ))
        .await
        .expect("watch with a filter")
        .into_inner();
    let register = |account: String, region: &'static str| {
        let mut client = client.clone();
        let admin = admin.clone();
        async move {
            let id = slrgov_testkit::instance_id();
            client
                .create_instance(with_token(
                    pb::CreateInstanceRequest {
                        parent: format!("accounts/{account}"),
                        instance_id: id.clone(),
                        instance: Some(pb::Instance {
                            region: region.into(),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    },
                    &admin,
                ))
                .await
                .expect("instance");
            format!("accounts/{account}/instances/{id}")
        }
    };
    // In log order: y's (invisible to narrow), x's in us-east-1 (not in
    // the filter), x's in eu-west-2.
    let hidden = register(y.clone(), "eu-west-2").await;
    let east = register(x.clone(), "us-east-1").await;
    let west = register(x.clone(), "eu-west-2").await;

    let seen: Vec<String> = [
        next_instance(&mut narrow_all, Duration::from_secs(10)).await,
        next_instance(&mut narrow_all, Duration::from_secs(10)).await,
    ]
    .into_iter()
    .map(|c| c.instance.expect("instance").name)
    .collect();
    assert_eq!(seen, vec![east, west.clone()], "{hidden} is not shown");

    let first = next_instance(&mut filtered, Duration::from_secs(10)).await;
    assert_eq!(first.instance.expect("instance").name, hidden);
    let second = next_instance(&mut filtered, Duration::from_secs(10)).await;
    assert_eq!(second.instance.expect("instance").name, west);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_older_than_the_retained_log_is_out_of_range() {
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start(&db).await;
    let mut clients = server.clients().await;
    clients.register_instance(HOME, "us-east-1").await;
    let mut stream = clients
        .instances
        .watch_instances(watch("accounts/-", "", ""))
        .await
        .expect("watch")
        .into_inner();
    let start = next(&mut stream, Duration::from_secs(5)).await;
    drop(stream);
    let old = start.resume_token;
    clients.register_instance(HOME, "us-east-1").await;
    // The token still works while the log holds what followed it.
    clients
        .instances
        .watch_instances(watch("accounts/-", "", &old))
        .await
        .expect("a retained token");

    // The worker's sweep (here run directly, as with an elapsed retention)
    // drops every change.
    let store = slrgov_store::open(&slrgov_store::StoreConfig::new(db.url.clone()))
        .await
        .expect("the store");
    let worker = slrgov_domain::RequestContext::for_worker("test-sweep");
    let removed = store
        .change_sweep(
            &worker,
            chrono::Utc::now() + chrono::Duration::seconds(1),
            1000,
        )
        .await
        .expect("sweep");
    assert!(removed >= 2, "the log held the changes: {removed}");

    let status = clients
        .instances
        .watch_instances(watch("accounts/-", "", &old))
        .await
        .expect_err("expired");
    let refusal = refusal(&status);
    assert_eq!(refusal.code, Code::OutOfRange);
    assert_eq!(refusal.reason, "RESUME_TOKEN_EXPIRED");
    // Watching from now still works.
    let mut fresh = clients
        .instances
        .watch_instances(watch("accounts/-", "", ""))
        .await
        .expect("watch from now")
        .into_inner();
    let bookmark = next(&mut fresh, Duration::from_secs(5)).await;
    assert_eq!(bookmark.change_type, InstanceChange::Bookmark as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watcher_that_stops_reading_is_cut_off_and_resumes_without_loss() {
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start_with(
        &db,
        &[
            ("SLRGOV_WATCH_STALL_TIMEOUT", "1s"),
            ("SLRGOV_WATCH_BUFFER", "8"),
        ],
    )
    .await;
    let mut clients = server.clients().await;
    clients.register_instance(HOME, "us-east-1").await;
    // A client with a tiny HTTP/2 window: it holds little unread.
    let channel = tonic::transport::Endpoint::from_shared(server.endpoint())
        .expect("endpoint")
        .initial_stream_window_size(Some(2048))
        .initial_connection_window_size(Some(2048))
        .connect()
        .await
        .expect("connect");
    let mut slow = InstanceServiceClient::new(channel)
        .watch_instances(watch("accounts/-", "", ""))
        .await
        .expect("watch")
        .into_inner();
    let bookmark = next(&mut slow, Duration::from_secs(5)).await;
    let mut created = BTreeSet::new();
    for _ in 0..60 {
        let id = clients.add_instance(HOME, "us-east-1").await;
        created.insert(format!("accounts/{HOME}/instances/{id}"));
    }
    // Not reading for longer than the stall timeout.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let mut seen = BTreeSet::new();
    let mut last_token = bookmark.resume_token;
    let cut = loop {
        match tokio::time::timeout(Duration::from_secs(5), slow.message())
            .await
            .expect("the stream answers")
        {
            Ok(Some(message)) => {
                if let Some(instance) = message.instance {
                    seen.insert(instance.name);
                }
                last_token = message.resume_token;
            }
            Ok(None) => panic!("the stream ended without saying why"),
            Err(status) => break status,
        }
        assert!(seen.len() <= created.len(), "more changes than made");
    };
    let refusal = refusal(&cut);
    assert_eq!(refusal.code, Code::ResourceExhausted);
    assert_eq!(refusal.reason, "WATCHER_TOO_SLOW");
    assert!(
        seen.len() < created.len(),
        "cut off before it read everything: {} of {}",
        seen.len(),
        created.len()
    );

    // Resumed from the last message read: the rest arrives, nothing lost.
    let mut resumed = clients
        .instances
        .watch_instances(watch("accounts/-", "", &last_token))
        .await
        .expect("resume")
        .into_inner();
    while !created.is_subset(&seen) {
        let change = next_instance(&mut resumed, Duration::from_secs(10)).await;
        seen.insert(change.instance.expect("instance").name);
    }
}
