//! Issue 16's "done when", as one scenario against moto (Connect through
//! the shape layer, IAM behind a throttle that answers Throttling above the
//! rate, counting both replicas' calls together): on a fresh database with
//! two accounts registered and their instances in Connect, and nobody
//! calling anything, every instance is discovered and every problem (a
//! missing role, a legacy instance without one, an orphan role, a vanished
//! instance) becomes a stored finding; one BatchEnsureLinkedRoles over
//! `accounts/-` then fixes the fleet with its progress visible throughout,
//! at the shared IAM rate (IAM throttles nothing), while a watcher at the
//! other replica sees each role become ACTIVE as it happens; the next pass
//! resolves the findings the batch fixed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use slrgov_proto::google::longrunning::operation::Result as OpResult;
use slrgov_proto::google::longrunning::{GetOperationRequest, Operation};
use slrgov_proto::slrgov::v1 as pb;
use slrgov_proto::slrgov::v1::inspection::finding::{Code, Severity};
use tokio::time::Instant;

use super::lifecycle_support::{TENANT, assume_of, delete_role, orphan_role, register};
use super::support::{Clients, Engine, HOME, Moto, TestDb, TestServer};

use pb::watch_linked_roles_response::ChangeType;

/// IAM calls per second per account: the service's rate and IAM's.
const RATE: &str = "4";

async fn findings(c: &mut Clients, filter: &str) -> Vec<pb::Finding> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .findings
            .list_findings(pb::ListFindingsRequest {
                parent: "accounts/-".into(),
                filter: filter.into(),
                page_size: 100,
                page_token: token,
            })
            .await
            .expect("list findings")
            .into_inner();
        all.extend(page.findings);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

/// The (code, target) pairs of `list`.
fn pairs(list: &[pb::Finding]) -> BTreeSet<(i32, String)> {
    list.iter().map(|f| (f.code, f.target.clone())).collect()
}

/// Waits up to `secs` until the findings matching `filter` include every
/// one of `wanted`.
async fn wait_for_findings(
    c: &mut Clients,
    filter: &str,
    wanted: &[(Code, &str)],
    secs: u64,
) -> Vec<pb::Finding> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let list = findings(c, filter).await;
        let have = pairs(&list);
        if wanted
            .iter()
            .all(|(code, target)| have.contains(&(*code as i32, (*target).to_owned())))
        {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "within {secs} s, findings ({filter}) {wanted:?}; have {:#?}",
            list.iter()
                .map(|f| (
                    f.code,
                    f.severity,
                    f.target.as_str(),
                    f.resolve_time.is_some()
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn audit_events(c: &mut Clients, account: &str) -> Vec<pb::AuditEvent> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .audit
            .list_audit_events(pb::ListAuditEventsRequest {
                parent: format!("accounts/{account}"),
                page_size: 100,
                page_token: token,
                filter: String::new(),
            })
            .await
            .expect("list audit events")
            .into_inner();
        all.extend(page.audit_events);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

fn progress(op: &Operation) -> pb::BatchProgress {
    pb::OperationMetadata::decode(op.metadata.as_ref().expect("metadata").value.as_slice())
        .expect("metadata")
        .batch_progress
        .expect("batch progress")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_nobody_calling_the_fleet_is_found_then_one_batch_fixes_it_as_a_watcher_sees() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    // IAM's own throttle, in a database of its own: both replicas' calls
    // count together, as in one AWS account.
    let iam_db = TestDb::postgres().await;
    let plan = serde_json::json!({
        "throttle_above": {"per_second": 4, "burst": 8, "database_url": iam_db.url}
    })
    .to_string();
    let env = [
        ("SLRGOV_RECONCILE_INTERVAL", "3s"),
        ("SLRGOV_WORKFLOW_LEASE", "5s"),
        ("SLRGOV_IAM_RATE_PER_ACCOUNT", RATE),
        ("SLRGOV_TEST_IAM_FAULTS", plan.as_str()),
        // Waves of two: the batch runs both accounts at once, and its
        // progress moves between waves.
        ("SLRGOV_BATCH_CONCURRENCY", "2"),
    ];
    let a = TestServer::start_with_moto(&db, &moto, &env).await;
    let b = TestServer::start_with_moto(&db, &moto, &env).await;
    let mut at_a = a.clients().await;
    let mut at_b = b.clients().await;

    // The fleet in Connect. HOME: a healthy instance, one whose role was
    // deleted, a legacy one, one Connect will delete, and a Connect role no
    // instance uses. TENANT (reached through its access role): one whose
    // role was deleted and a legacy one.
    let tenant = assume_of(TENANT);
    let sales = moto
        .create_connect_instance(None, "us-east-1", "sales")
        .await;
    let ops = moto.create_connect_instance(None, "us-east-1", "ops").await;
    let legacy = moto
        .create_connect_instance(None, "eu-west-2", "legacy-home")
        .await;
    let gone = moto
        .create_connect_instance(None, "us-east-1", "gone")
        .await;
    let support = moto
        .create_connect_instance(tenant.as_deref(), "us-east-1", "support")
        .await;
    let legacy_t = moto
        .create_connect_instance(tenant.as_deref(), "us-east-1", "legacy-tenant")
        .await;
    let home_iam = moto.iam(None).await;
    let tenant_iam = moto.iam(tenant.as_deref()).await;
    for (iam, instance) in [(&home_iam, &ops), (&tenant_iam, &support)] {
        delete_role(iam, instance.role_name.as_deref().expect("a role")).await;
    }
    let orphan = orphan_role(&home_iam).await;

    // A portal watches every role at B from the start.
    let mut stream = at_b
        .linked_roles
        .watch_linked_roles(pb::WatchLinkedRolesRequest {
            parent: "accounts/-".into(),
            resume_token: String::new(),
        })
        .await
        .expect("watch linked roles")
        .into_inner();
    let events: Arc<Mutex<Vec<(Instant, pb::WatchLinkedRolesResponse)>>> = Arc::default();
    let watcher = {
        let events = events.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = stream.message().await {
                events
                    .lock()
                    .expect("events")
                    .push((Instant::now(), message));
            }
        })
    };

    // The only calls: the two accounts' registrations.
    register(&mut at_a, HOME, None).await;
    register(&mut at_a, TENANT, tenant.as_deref()).await;

    let name = |account: &str, id: &str| format!("accounts/{account}/instances/{id}");
    let (ops_name, support_name) = (name(HOME, &ops.id), name(TENANT, &support.id));
    let (legacy_name, legacy_t_name) = (name(HOME, &legacy.id), name(TENANT, &legacy_t.id));
    let gone_name = name(HOME, &gone.id);
    // Within an interval and a pass: every instance discovered, every
    // problem stored (read through either replica).
    wait_for_findings(
        &mut at_b,
        "resolved = false",
        &[
            (Code::RoleMissing, &ops_name),
            (Code::RoleMissing, &support_name),
            (Code::LegacyInstanceWithoutRole, &legacy_name),
            (Code::LegacyInstanceWithoutRole, &legacy_t_name),
            (Code::OrphanRole, &orphan),
        ],
        60,
    )
    .await;
    // Connect deletes `gone`: a later pass sees it vanish.
    moto.delete_connect_instance(None, "us-east-1", &gone.id)
        .await;
    let open = wait_for_findings(
        &mut at_a,
        "resolved = false",
        &[(Code::VanishedInstance, &gone_name)],
        60,
    )
    .await;
    let sales_name = name(HOME, &sales.id);
    assert!(
        !pairs(&open).contains(&(Code::RoleMissing as i32, sales_name.clone())),
        "a healthy instance has no ROLE_MISSING: {open:#?}"
    );

    // One batch over the fleet Connect still lists, at A.
    let op = at_a
        .linked_roles
        .batch_ensure_linked_roles(pb::BatchEnsureLinkedRolesRequest {
            parent: "accounts/-".into(),
            filter: "observed_state = OBSERVED".into(),
            description: "fixed by the fleet batch".into(),
            ..Default::default()
        })
        .await
        .expect("start the batch")
        .into_inner();
    assert_eq!(progress(&op).total, 5, "{op:?}");
    // Followed at B: the progress moves while it runs.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    let (done, done_at) = loop {
        let now = at_b
            .operations
            .get_operation(GetOperationRequest {
                name: op.name.clone(),
            })
            .await
            .expect("get the operation")
            .into_inner();
        seen.push(progress(&now).done);
        if now.done {
            break (now, Instant::now());
        }
        assert!(Instant::now() < deadline, "the batch finishes: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        seen.iter().any(|d| *d > 0 && *d < 5),
        "progress visible between 0 and 5: {seen:?}"
    );
    let totals = match &done.result {
        Some(OpResult::Response(any)) => {
            pb::BatchEnsureLinkedRolesResponse::decode(any.value.as_slice())
                .expect("response")
                .totals
                .expect("totals")
        }
        other => panic!("the batch succeeds: {other:?}"),
    };
    assert_eq!(
        (
            totals.done,
            totals.adopted,
            totals.restored,
            totals.created,
            totals.failed
        ),
        (5, 1, 2, 2, 0),
        "sales adopted, ops and support restored, the legacy two created: {totals:?}"
    );

    // Every role ACTIVE, restored ones under the names Connect holds.
    let fixed = [
        (&sales_name, sales.role_name.clone()),
        (&ops_name, ops.role_name.clone()),
        (&support_name, support.role_name.clone()),
        (&legacy_name, None),
        (&legacy_t_name, None),
    ];
    for (instance, connect_role) in &fixed {
        let role = at_b
            .linked_roles
            .get_linked_role(pb::GetLinkedRoleRequest {
                name: format!("{instance}/linkedRole"),
            })
            .await
            .expect("the linked role")
            .into_inner();
        assert_eq!(
            role.state,
            pb::linked_role::State::Active as i32,
            "{instance}: {role:?}"
        );
        if let Some(connect_role) = connect_role {
            assert_eq!(&role.role_name, connect_role, "{instance}");
        }
    }
    let in_iam = |roles: Vec<(String, String)>| {
        roles
            .into_iter()
            .map(|(name, _)| name)
            .collect::<BTreeSet<_>>()
    };
    let home_roles = in_iam(moto.connect_roles(&home_iam).await);
    assert!(home_roles.contains(ops.role_name.as_deref().expect("ops' role")));
    let tenant_roles = in_iam(moto.connect_roles(&tenant_iam).await);
    assert!(tenant_roles.contains(support.role_name.as_deref().expect("support's role")));
    // HOME: sales, ops, legacy, gone's (left in IAM), the orphan; TENANT:
    // support, legacy: one role per instance, no second one.
    assert_eq!(home_roles.len(), 5, "{home_roles:?}");
    assert_eq!(tenant_roles.len(), 2, "{tenant_roles:?}");

    // The audit trail: the ensures of a wave ran at once, in both accounts,
    // yet each role's events carry its own calls only: one
    // CreateServiceLinkedRole for each role made, none for the adopted one.
    for (instance, _) in &fixed {
        let account = instance
            .split('/')
            .nth(1)
            .expect("accounts/<id>/instances/<id>");
        let creates: usize = audit_events(&mut at_a, account)
            .await
            .iter()
            .filter(|e| e.resource == format!("{instance}/linkedRole"))
            .flat_map(|e| e.aws_calls.iter())
            .filter(|c| c.operation == "CreateServiceLinkedRole" && c.outcome == "OK")
            .count();
        let wanted = usize::from(**instance != sales_name);
        assert_eq!(
            creates, wanted,
            "{instance}: CreateServiceLinkedRole calls audited"
        );
    }

    // The watcher at B saw each role become ACTIVE, the first of them while
    // the batch was still running.
    let deadline = Instant::now() + Duration::from_secs(10);
    let active: BTreeMap<String, Instant> = loop {
        let active: BTreeMap<String, Instant> = events
            .lock()
            .expect("events")
            .iter()
            .filter(|(_, m)| m.change_type == ChangeType::Changed as i32)
            .filter_map(|(at, m)| {
                let role = m.linked_role.as_ref()?;
                (role.state == pb::linked_role::State::Active as i32)
                    .then(|| (role.name.trim_end_matches("/linkedRole").to_owned(), *at))
            })
            .fold(BTreeMap::new(), |mut first, (name, at)| {
                first.entry(name).or_insert(at);
                first
            });
        if fixed.iter().all(|(n, _)| active.contains_key(*n)) || Instant::now() > deadline {
            break active;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (instance, _) in &fixed {
        assert!(
            active.contains_key(*instance),
            "the watcher saw {instance} become ACTIVE: {active:?}"
        );
    }
    let first = active.values().min().expect("an ACTIVE event");
    assert!(
        *first < done_at,
        "a change reached the watcher before the batch was done"
    );
    watcher.abort();

    // At the shared rate: IAM throttled none of the calls of both
    // replicas (the reconciler's and the batch's together).
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&iam_db.admin_url)
        .await
        .expect("the throttle's database");
    let (calls, throttled): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(calls), 0)::bigint, COALESCE(SUM(throttled), 0)::bigint FROM iam_throttle",
    )
    .fetch_one(&mut conn)
    .await
    .expect("iam_throttle");
    assert!(calls > 0, "IAM was called through the throttle");
    assert_eq!(throttled, 0, "IAM throttled {throttled} of {calls} calls");

    // The next pass resolves what the batch fixed: each missing role
    // (ROLE_MISSING is also what a legacy instance had: no role at all).
    // A legacy instance stays LEGACY_INSTANCE_WITHOUT_ROLE (Connect links
    // no role to it), down from ERROR to WARNING now that the service
    // governs one.
    let resolved = wait_for_findings(
        &mut at_a,
        "resolved = true",
        &[
            (Code::RoleMissing, &ops_name),
            (Code::RoleMissing, &support_name),
            (Code::RoleMissing, &legacy_name),
            (Code::RoleMissing, &legacy_t_name),
        ],
        60,
    )
    .await;
    assert!(resolved.iter().all(|f| f.resolve_time.is_some()));
    let open = findings(&mut at_a, "resolved = false").await;
    let open_pairs = pairs(&open);
    assert!(open_pairs.contains(&(Code::VanishedInstance as i32, gone_name)));
    for instance in [&ops_name, &support_name, &legacy_name, &legacy_t_name] {
        assert!(
            !open_pairs.contains(&(Code::RoleMissing as i32, instance.clone())),
            "{instance}: {open:#?}"
        );
    }
    for instance in [&legacy_name, &legacy_t_name] {
        let legacy = open
            .iter()
            .find(|f| f.code == Code::LegacyInstanceWithoutRole as i32 && &f.target == instance)
            .expect("a legacy instance keeps its finding");
        assert_eq!(
            legacy.severity,
            Severity::Warning as i32,
            "{instance}: {legacy:?}"
        );
    }
}
