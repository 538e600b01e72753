//! The reconciler against moto (Connect through the shape layer, IAM, STS):
//! with nobody calling anything but account registration, every instance
//! is discovered and every problem (a missing role, an orphan role, a
//! vanished instance) becomes a stored finding visible through
//! ListFindings, the fleet summary counts it, a fixed problem is resolved
//! by a later pass, and repair mode restores a missing role under the name
//! Connect holds. Two replicas on one Postgres share the passes: an
//! account's pass runs on one of them at a time.

use std::collections::HashMap;
use std::time::Duration;

use prost::Message;
use slrgov_proto::slrgov::v1 as pb;
use slrgov_proto::slrgov::v1::inspection::finding::{Code, Severity};

use super::lifecycle_support::{TENANT, assume_of, delete_role, orphan_role, register};
use super::support::{Clients, Engine, HOME, Moto, TestDb, TestServer};

async fn findings(c: &mut Clients, parent: &str, filter: &str) -> Vec<pb::Finding> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .findings
            .list_findings(pb::ListFindingsRequest {
                parent: parent.into(),
                filter: filter.into(),
                page_size: 2,
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

fn has(list: &[pb::Finding], code: Code, target: &str) -> bool {
    list.iter()
        .any(|f| f.code == code as i32 && f.target == target)
}

/// Waits up to `secs` for `check` to hold on the findings of `accounts/-`.
async fn wait_for(
    c: &mut Clients,
    filter: &str,
    secs: u64,
    what: &str,
    check: impl Fn(&[pb::Finding]) -> bool,
) -> Vec<pb::Finding> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let list = findings(c, "accounts/-", filter).await;
        if check(&list) {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {secs} s; the findings: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn role_arn(account: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:role/aws-service-role/connect.amazonaws.com/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reconciler_finds_every_problem_with_nobody_calling_and_resolves_what_is_fixed() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Postgres).await;
    let env = [
        ("SLRGOV_RECONCILE_INTERVAL", "3s"),
        ("SLRGOV_WORKFLOW_LEASE", "5s"),
    ];
    let first = TestServer::start_with_moto(&db, &moto, &env).await;
    let second = TestServer::start_with_moto(&db, &moto, &env).await;
    let mut c = first.clients().await;
    let mut c2 = second.clients().await;

    // Connect in moto: a healthy instance, one whose role someone deleted,
    // one that will be deleted from Connect, and a Connect role no
    // instance uses.
    let sales = moto
        .create_connect_instance(None, "us-east-1", "sales")
        .await;
    let support = moto
        .create_connect_instance(None, "eu-west-2", "support")
        .await;
    let gone = moto
        .create_connect_instance(None, "us-east-1", "gone")
        .await;
    let iam = moto.iam(None).await;
    let support_role = support.role_name.clone().expect("support's role");
    delete_role(&iam, &support_role).await;
    let orphan = orphan_role(&iam).await;
    // A tenant account with nothing in Connect: summarised with zeros.
    register(&mut c, HOME, None).await;
    register(&mut c, TENANT, assume_of(TENANT).as_deref()).await;

    // Within one interval (and a pass's time), with no call: discovered
    // and inspected.
    let sales_name = format!("accounts/{HOME}/instances/{}", sales.id);
    let support_name = format!("accounts/{HOME}/instances/{}", support.id);
    let gone_name = format!("accounts/{HOME}/instances/{}", gone.id);
    let open = wait_for(
        &mut c,
        "resolved = false",
        30,
        "the first pass's findings",
        |l| has(l, Code::RoleMissing, &support_name) && has(l, Code::OrphanRole, &orphan),
    )
    .await;
    let missing = open
        .iter()
        .find(|f| f.code == Code::RoleMissing as i32)
        .expect("ROLE_MISSING");
    assert_eq!(missing.severity, Severity::Error as i32);
    assert!(
        missing
            .name
            .starts_with(&format!("accounts/{HOME}/findings/"))
    );
    assert!(missing.message.contains(&support_role), "{missing:?}");
    assert!(missing.resolve_time.is_none());
    // Sales has its role (moto's SLRs carry no policy, so its permission
    // findings are there, but no ROLE_MISSING), and its role is no orphan.
    assert!(!has(&open, Code::RoleMissing, &sales_name), "{open:#?}");
    assert!(
        has(&open, Code::PermissionMissing, &sales_name),
        "moto's role lacks Connect's policy: {open:#?}"
    );
    let sales_role = sales.role_arn.clone().expect("sales' role");
    assert!(!has(&open, Code::OrphanRole, &sales_role), "{open:#?}");
    // Nothing mutated in observe mode: the role stays missing.
    assert!(
        !moto
            .connect_roles(&iam)
            .await
            .iter()
            .any(|(name, _)| *name == support_role)
    );
    // The filters, through the second replica (the store is shared).
    let errors = findings(&mut c2, &format!("accounts/{HOME}"), "severity = ERROR").await;
    assert!(errors.iter().all(|f| f.severity == Severity::Error as i32));
    assert!(has(&errors, Code::RoleMissing, &support_name));
    let orphans = findings(&mut c2, "accounts/-", "code = ORPHAN_ROLE").await;
    assert_eq!(
        orphans
            .iter()
            .map(|f| f.target.as_str())
            .collect::<Vec<_>>(),
        vec![orphan.as_str()],
        "the one role no instance uses"
    );

    // The fleet summary: every account, also the empty one.
    let summary = c
        .findings
        .get_fleet_summary(pb::GetFleetSummaryRequest {
            parent: "accounts/-".into(),
        })
        .await
        .expect("summary")
        .into_inner();
    let per: HashMap<String, pb::FleetCounts> = summary
        .accounts
        .into_iter()
        .map(|a| (a.account, a.counts.expect("counts")))
        .collect();
    let home = &per[&format!("accounts/{HOME}")];
    assert_eq!(home.instances, 3, "{home:?}");
    assert_eq!(home.instances_by_observed_state.get("OBSERVED"), Some(&3));
    assert_eq!(home.instances_by_connect_status.get("ACTIVE"), Some(&3));
    assert!(home.open_findings_by_code.get("ROLE_MISSING") >= Some(&1));
    assert_eq!(home.open_findings_by_code.get("ORPHAN_ROLE"), Some(&1));
    assert_eq!(per[&format!("accounts/{TENANT}")].instances, 0);
    assert_eq!(summary.total.expect("total").instances, 3);

    // Connect deletes `gone`; someone restores support's role and deletes
    // the orphan. The next passes see it: VANISHED_INSTANCE opens,
    // ROLE_MISSING and ORPHAN_ROLE resolve (same names, resolve time set).
    moto.delete_connect_instance(None, "us-east-1", &gone.id)
        .await;
    iam.create_service_linked_role()
        .aws_service_name("connect.amazonaws.com")
        .custom_suffix(support_role.split_once('_').expect("suffixed").1)
        .send()
        .await
        .expect("restore support's role");
    let orphan_name = orphan.rsplit('/').next().expect("name").to_owned();
    iam.delete_service_linked_role()
        .role_name(&orphan_name)
        .send()
        .await
        .expect("delete the orphan");
    let later = wait_for(&mut c, "", 30, "a later pass", |l| {
        let resolved = |code: Code, target: &str| {
            l.iter()
                .any(|f| f.code == code as i32 && f.target == target && f.resolve_time.is_some())
        };
        has(l, Code::VanishedInstance, &gone_name)
            && resolved(Code::RoleMissing, &support_name)
            && resolved(Code::OrphanRole, &orphan)
    })
    .await;
    let resolved_missing = later
        .iter()
        .find(|f| f.code == Code::RoleMissing as i32 && f.target == support_name)
        .expect("ROLE_MISSING");
    assert_eq!(
        resolved_missing.name, missing.name,
        "the same finding, resolved"
    );
    assert_eq!(resolved_missing.first_seen_time, missing.first_seen_time);
    // gone's role is used by no live instance now: an orphan.
    let gone_role = gone.role_arn.clone().expect("gone's role");
    let open = wait_for(
        &mut c,
        "resolved = false",
        30,
        "gone's role as an orphan",
        |l| has(l, Code::OrphanRole, &gone_role),
    )
    .await;
    assert!(
        !has(&open, Code::OrphanRole, &orphan),
        "deleted: no longer open"
    );

    // The passes are operations (verb `reconcile`) of one account each,
    // and never two of one account at once across the replicas.
    let mut passes = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .operations
            .list_operations(slrgov_proto::google::longrunning::ListOperationsRequest {
                name: "operations".into(),
                filter: String::new(),
                page_size: 100,
                page_token: token,
                return_partial_success: false,
            })
            .await
            .expect("operations")
            .into_inner();
        passes.extend(page.operations);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut windows: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for op in &passes {
        let meta =
            pb::OperationMetadata::decode(op.metadata.as_ref().expect("metadata").value.as_slice())
                .expect("metadata");
        if meta.verb != "reconcile" || !op.done {
            continue;
        }
        let at = |t: &Option<prost_types::Timestamp>| {
            let t = (*t).expect("time");
            t.seconds * 1_000_000_000 + i64::from(t.nanos)
        };
        windows
            .entry(meta.target.clone())
            .or_default()
            .push((at(&meta.create_time), at(&meta.end_time)));
    }
    assert!(
        windows.contains_key(&format!("accounts/{HOME}")),
        "{windows:?}"
    );
    assert!(
        windows.contains_key(&format!("accounts/{TENANT}")),
        "{windows:?}"
    );
    for (account, mut spans) in windows {
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "two passes of {account} overlapped: {pair:?}"
            );
        }
    }
    let started = first.events_with("reconcile pass started").len()
        + second.events_with("reconcile pass started").len();
    assert!(
        started >= 4,
        "both accounts passed more than once: {started}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repair_mode_restores_a_missing_role_under_connects_name_and_records_it() {
    let moto = Moto::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start_with_moto(
        &db,
        &moto,
        &[
            ("SLRGOV_RECONCILE_INTERVAL", "2s"),
            ("SLRGOV_RECONCILE_MODE", "repair"),
        ],
    )
    .await;
    let mut c = server.clients().await;
    let support = moto
        .create_connect_instance(None, "eu-west-2", "support")
        .await;
    let iam = moto.iam(None).await;
    let role = support.role_name.clone().expect("support's role");
    iam.delete_service_linked_role()
        .role_name(&role)
        .send()
        .await
        .expect("delete support's role in IAM");
    register(&mut c, HOME, None).await;
    let name = format!("accounts/{HOME}/instances/{}", support.id);
    // The pass finds ROLE_MISSING, restores the role under the same name,
    // inspects again and resolves the finding.
    let list = wait_for(&mut c, "code = ROLE_MISSING", 30, "the repair", |l| {
        l.iter()
            .any(|f| f.target == name && f.resolve_time.is_some())
    })
    .await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let roles = moto.connect_roles(&iam).await;
    assert!(
        roles
            .iter()
            .any(|(n, arn)| *n == role && *arn == role_arn(HOME, &role)),
        "restored under Connect's name: {roles:?}"
    );
    let linked = c
        .linked_roles
        .get_linked_role(pb::GetLinkedRoleRequest {
            name: format!("{name}/linkedRole"),
        })
        .await
        .expect("linked role")
        .into_inner();
    assert_eq!(linked.state, pb::linked_role::State::Active as i32);
    assert!(linked.restored, "{linked:?}");
    assert_eq!(
        server
            .events_with("the reconciler repaired a missing role")
            .len(),
        1
    );
    // The audit trail tells who did it.
    let events = c
        .audit
        .list_audit_events(pb::ListAuditEventsRequest {
            parent: format!("accounts/{HOME}"),
            page_size: 100,
            page_token: String::new(),
            filter: String::new(),
        })
        .await
        .expect("audit")
        .into_inner()
        .audit_events;
    assert!(
        events.iter().any(|e| e.resource.starts_with(&name)
            && e.outcome == "OK"
            && e.principal.starts_with("service:")),
        "{events:#?}"
    );
    // Later passes change nothing more: the same roles, never a second.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(moto.connect_roles(&iam).await, roles);
    assert_eq!(
        server
            .events_with("the reconciler repaired a missing role")
            .len(),
        1
    );
}
