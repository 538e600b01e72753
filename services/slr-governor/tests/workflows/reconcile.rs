//! The reconcile workflow (a pass of the background reconciler over one
//! account), step by step against FakeConnect and FakeIam, in repair mode so
//! that every step runs: each step run twice, a crash before and after
//! saving each step (resumed by a fresh engine), and each step failed for
//! good. Every end is checked the way an operator would: the stored
//! findings (code, target, open or resolved) and the roles in IAM.
//!
//! The account holds:
//! - the harness instance, whose Connect role is missing from IAM (a
//!   ROLE_MISSING that repair mode restores under the same name);
//! - SALES, whose Connect role exists in IAM (no error);
//! - GONE, which Connect listed once and no longer does (VANISHED_INSTANCE);
//! - ORPHAN, a Connect service-linked role in IAM that no instance uses
//!   (ORPHAN_ROLE).

use slr_governor::lifecycle::Resumed;
use slr_governor::lifecycle::reconcile::{
    ReconcileMode, ReconcileReport, ReconcileSettings, ReconcileWorkflow,
};
use slrgov_domain::RequestContext;
use slrgov_domain::finding::{FindingCode, FindingFilter};
use slrgov_domain::names::AccountSelector;
use slrgov_domain::types::AccountId;
use slrgov_domain::workflow::{Phase, Workflow, WorkflowRecord};
use slrgov_store::{Engine, PageRequest};

use super::script::{Act, At, Script};
use super::world::{ACCOUNT, CONNECT_ROLE, INSTANCE, LEASE, Source, World, ctx};

const SALES: &str = "5b4c3d2e-0000-4000-8000-00000000000a";
const GONE: &str = "7d6e5f40-0000-4000-8000-00000000000c";
const SALES_ROLE: &str = "AWSServiceRoleForAmazonConnect_SalesRole0000000001";
const GONE_ROLE: &str = "AWSServiceRoleForAmazonConnect_GoneRole00000000003";
const ORPHAN: &str = "AWSServiceRoleForAmazonConnect_Orphan000000000004";

fn steps() -> &'static [&'static str] {
    ReconcileWorkflow::steps()
}

/// What an operator checks after a pass: each stored finding (code,
/// target, resolved), the Connect roles in IAM, and how the pass ended.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PassEnd {
    findings: Vec<(FindingCode, String, bool)>,
    roles: Vec<String>,
    phase: Phase,
}

fn account() -> AccountId {
    AccountId::parse(ACCOUNT).expect("account")
}

fn arn(role: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/aws-service-role/connect.amazonaws.com/{role}")
}

fn instance(id: &str) -> String {
    format!("accounts/{ACCOUNT}/instances/{id}")
}

/// The world of the module comment, GONE already vanished.
async fn world(engine: Engine) -> World {
    let world = World::of(engine, Source::Restore).await;
    let created = chrono::DateTime::from_timestamp(1_672_531_200, 0).expect("2023");
    let connect = world.aws.connect(ACCOUNT, "us-east-1");
    connect.put_instance(SALES, "sales", created, Some(SALES_ROLE));
    connect.put_instance(GONE, "gone", created, Some(GONE_ROLE));
    world.iam().put_role(SALES_ROLE, None);
    world.iam().put_role(GONE_ROLE, None);
    world.iam().put_role(ORPHAN, None);
    // Connect lists GONE once, then deletes it.
    let lifecycle = world.lifecycle(None);
    let sync = lifecycle
        .sync(
            &ctx("slrgov.v1.InstanceService/SyncInstances"),
            &AccountSelector::One(account()),
            None,
        )
        .await
        .expect("start the first sync");
    assert_eq!(
        world.work(&lifecycle, "setup", &sync.id).await,
        Resumed::Finished
    );
    connect.remove_instance(GONE);
    world
}

fn settings(mode: ReconcileMode) -> ReconcileSettings {
    ReconcileSettings {
        interval: std::time::Duration::from_secs(900),
        mode,
        iam_reads: 600,
    }
}

async fn start(world: &World, mode: ReconcileMode) -> WorkflowRecord {
    world
        .lifecycle(None)
        .start_reconcile(
            &RequestContext::for_worker("reconcile-schedule"),
            &account(),
            settings(mode),
        )
        .await
        .expect("start the pass")
        .expect("a new pass")
}

async fn end(world: &World, id: &str) -> PassEnd {
    let read = ctx("harness/read");
    let page = PageRequest::parse(1000, "").expect("page");
    let mut findings: Vec<(FindingCode, String, bool)> = world
        .store
        .finding_list(
            &read,
            &AccountSelector::One(account()),
            &FindingFilter::default(),
            &page,
        )
        .await
        .expect("list findings")
        .items
        .into_iter()
        .map(|f| (f.code, f.target, f.resolve_time.is_some()))
        .collect();
    findings.sort();
    let mut roles: Vec<String> = world
        .iam()
        .roles()
        .into_iter()
        .map(|r| r.role_name)
        .collect();
    roles.sort();
    PassEnd {
        findings,
        roles,
        phase: world
            .store
            .workflow_get(&read, id)
            .await
            .expect("the pass")
            .phase,
    }
}

/// Runs a pass under `rules`; whatever a crash left is finished by a fresh
/// engine once the crashed holder's lease ran out.
async fn scripted(engine: Engine, mode: ReconcileMode, rules: Vec<(At, Act)>) -> PassEnd {
    let world = world(engine).await;
    let record = start(&world, mode).await;
    let first = world.lifecycle(Some(Script::new(rules)));
    if world.work(&first, "first", &record.id).await == Resumed::Crashed {
        tokio::time::sleep(LEASE).await;
        let fresh = world.lifecycle(None);
        assert_eq!(
            world.work(&fresh, "fresh-engine", &record.id).await,
            Resumed::Finished
        );
    }
    end(&world, &record.id).await
}

fn at(step: &'static str) -> At {
    At {
        step: Some(step),
        undo: false,
    }
}

fn has(end: &PassEnd, code: FindingCode, target: &str, resolved: bool) -> bool {
    end.findings
        .iter()
        .any(|(c, t, r)| *c == code && t == target && *r == resolved)
}

/// A clean pass in repair mode: the harness instance's role was missing and
/// is restored under Connect's name (its ROLE_MISSING resolved by the
/// second look), GONE is VANISHED_INSTANCE, ORPHAN is an ORPHAN_ROLE, and
/// GONE's role, which no live instance uses, is one too.
async fn clean(engine: Engine) -> PassEnd {
    let end = scripted(engine, ReconcileMode::Repair, Vec::new()).await;
    assert_eq!(end.phase, Phase::Succeeded, "{end:?}");
    assert!(
        has(&end, FindingCode::RoleMissing, &instance(INSTANCE), true),
        "the missing role was found, restored and resolved: {end:?}"
    );
    assert!(
        has(&end, FindingCode::VanishedInstance, &instance(GONE), false),
        "{end:?}"
    );
    assert!(
        has(&end, FindingCode::OrphanRole, &arn(ORPHAN), false),
        "{end:?}"
    );
    assert!(
        has(&end, FindingCode::OrphanRole, &arn(GONE_ROLE), false),
        "{end:?}"
    );
    assert!(
        !end.findings
            .iter()
            .any(|(_, t, r)| t == &arn(SALES_ROLE) && !r),
        "SALES uses its role: {end:?}"
    );
    let mut want = vec![
        CONNECT_ROLE.to_owned(),
        GONE_ROLE.to_owned(),
        ORPHAN.to_owned(),
        SALES_ROLE.to_owned(),
    ];
    want.sort();
    assert_eq!(end.roles, want, "the restored role, and nothing else made");
    end
}

#[tokio::test]
async fn reconcile_each_step_twice() {
    let clean = clean(Engine::Sqlite).await;
    for step in steps() {
        let end = scripted(
            Engine::Sqlite,
            ReconcileMode::Repair,
            vec![(at(step), Act::Twice)],
        )
        .await;
        assert_eq!(end, clean, "{step} run twice");
    }
}

#[tokio::test]
async fn reconcile_crash_after_each_step() {
    let clean = clean(Engine::Sqlite).await;
    for step in steps() {
        for act in [Act::CrashBeforeSave, Act::CrashAfterSave] {
            let end = scripted(Engine::Sqlite, ReconcileMode::Repair, vec![(at(step), act)]).await;
            assert_eq!(end, clean, "{act:?} at {step}, then resumed");
        }
    }
}

#[tokio::test]
async fn reconcile_crash_after_each_step_postgres() {
    let clean = clean(Engine::Postgres).await;
    for step in steps() {
        let end = scripted(
            Engine::Postgres,
            ReconcileMode::Repair,
            vec![(at(step), Act::CrashAfterSave)],
        )
        .await;
        assert_eq!(end, clean, "a crash after {step}, then resumed");
    }
}

/// A pass failed for good at a step ends FAILED and unwinds to nothing:
/// the findings stored before stay (they are observations), no role is
/// created unless the repair before it ran, and no role is ever deleted.
#[tokio::test]
async fn reconcile_fail_each_step() {
    for step in steps() {
        let end = scripted(
            Engine::Sqlite,
            ReconcileMode::Repair,
            vec![(at(step), Act::Fail)],
        )
        .await;
        assert_eq!(end.phase, Phase::Failed, "{step} failed");
        for role in [GONE_ROLE, ORPHAN, SALES_ROLE] {
            assert!(
                end.roles.iter().any(|r| r == role),
                "{step} failed: {role} stays"
            );
        }
        assert!(
            !end.roles.iter().any(|r| r == CONNECT_ROLE),
            "{step} failed before any repair: nothing is created: {end:?}"
        );
        let stored_before = match *step {
            "plan" | "look" | "inspect" => 0,
            _ => 1,
        };
        assert!(
            end.findings.len() >= stored_before,
            "{step} failed: what the inspection stored stays: {end:?}"
        );
    }
}

/// Observe mode (the default) never mutates IAM: the missing role stays
/// missing and is an open ROLE_MISSING; a second pass finds the same
/// findings (same names, first seen kept) and resolves what was fixed
/// meanwhile.
#[tokio::test]
async fn observe_mode_never_mutates_and_a_later_pass_resolves_what_was_fixed() {
    let world = world(Engine::Sqlite).await;
    let lifecycle = world.lifecycle(None);
    let first = start(&world, ReconcileMode::Observe).await;
    assert_eq!(
        world.work(&lifecycle, "w", &first.id).await,
        Resumed::Finished
    );
    let after_first = end(&world, &first.id).await;
    assert_eq!(after_first.phase, Phase::Succeeded);
    assert!(has(
        &after_first,
        FindingCode::RoleMissing,
        &instance(INSTANCE),
        false
    ));
    assert!(
        !after_first.roles.iter().any(|r| r == CONNECT_ROLE),
        "observe never creates"
    );
    for mutation in [
        "CreateServiceLinkedRole",
        "DeleteServiceLinkedRole",
        "UpdateRoleDescription",
    ] {
        assert_eq!(world.iam().calls(mutation), 0, "{mutation} in observe mode");
    }
    let report: ReconcileReport = world
        .store
        .workflow_get(&ctx("harness/read"), &first.id)
        .await
        .expect("the pass")
        .output()
        .expect("output")
        .expect("a report");
    assert_eq!(
        report.totals.inspected, 2,
        "the harness instance and SALES: {report:?}"
    );
    assert_eq!(report.totals.vanished, 1);
    assert_eq!(report.totals.orphans, 2, "ORPHAN and GONE's role");
    assert!(report.repairs.is_empty());

    // Someone restores the role and deletes the orphan; the next pass
    // (started past the interval) resolves both, and GONE stays vanished.
    world.iam().put_role(CONNECT_ROLE, None);
    assert!(world.iam().remove_role(ORPHAN));
    let second = world
        .lifecycle(None)
        .start_reconcile(
            &RequestContext::for_worker("reconcile-schedule"),
            &account(),
            ReconcileSettings {
                interval: std::time::Duration::ZERO,
                ..settings(ReconcileMode::Observe)
            },
        )
        .await
        .expect("start")
        .expect("a second pass once the interval passed");
    assert_eq!(
        world.work(&lifecycle, "w", &second.id).await,
        Resumed::Finished
    );
    let after_second = end(&world, &second.id).await;
    assert!(has(
        &after_second,
        FindingCode::RoleMissing,
        &instance(INSTANCE),
        true
    ));
    assert!(has(
        &after_second,
        FindingCode::OrphanRole,
        &arn(ORPHAN),
        true
    ));
    assert!(has(
        &after_second,
        FindingCode::VanishedInstance,
        &instance(GONE),
        false
    ));
    // The first pass's findings are the same findings (one each, not new
    // copies), whatever they became; the restored role brought its own.
    for (code, target, _) in &after_first.findings {
        let count = |end: &PassEnd| {
            end.findings
                .iter()
                .filter(|(c, t, _)| c == code && t == target)
                .count()
        };
        assert_eq!(
            count(&after_first),
            count(&after_second),
            "{code} on {target}: {after_first:?} then {after_second:?}"
        );
    }
    assert!(
        has(
            &after_second,
            FindingCode::PermissionMissing,
            &instance(INSTANCE),
            false
        ),
        "the restored role is inspected now: {after_second:?}"
    );
}

/// The IAM read budget: with room for one inspection, one instance is
/// inspected, the other is counted over budget and keeps no new finding,
/// and the orphan scan does not run.
#[tokio::test]
async fn the_iam_read_budget_bounds_a_pass() {
    let world = world(Engine::Sqlite).await;
    let lifecycle = world.lifecycle(None);
    let before = world.iam().all_calls().values().sum::<u32>();
    let pass = lifecycle
        .start_reconcile(
            &RequestContext::for_worker("reconcile-schedule"),
            &account(),
            ReconcileSettings {
                iam_reads: 3,
                ..settings(ReconcileMode::Observe)
            },
        )
        .await
        .expect("start")
        .expect("a pass");
    assert_eq!(
        world.work(&lifecycle, "w", &pass.id).await,
        Resumed::Finished
    );
    let report: ReconcileReport = world
        .store
        .workflow_get(&ctx("harness/read"), &pass.id)
        .await
        .expect("the pass")
        .output()
        .expect("output")
        .expect("a report");
    assert_eq!(report.totals.inspected, 1, "{report:?}");
    assert_eq!(report.totals.over_budget, 1, "{report:?}");
    assert!(!report.totals.orphan_scan, "{report:?}");
    let reads = world.iam().all_calls().values().sum::<u32>() - before;
    assert!(reads <= 3, "{reads} IAM calls for a budget of 3");
}

async fn report_of(world: &World, id: &str) -> ReconcileReport {
    world
        .store
        .workflow_get(&ctx("harness/read"), id)
        .await
        .expect("the pass")
        .output()
        .expect("output")
        .expect("a report")
}

/// A region that could not be listed may hold instances whose roles look
/// unused: the orphan scan waits for a pass that saw every region, and a
/// role made after the pass started waits for the next pass.
#[tokio::test]
async fn no_orphan_is_called_from_a_partial_look_or_a_role_newer_than_the_pass() {
    // eu-west-2 refuses ListInstances: no orphan scan, none stored.
    let world = world(Engine::Sqlite).await;
    world.aws.connect(ACCOUNT, "eu-west-2").fail(
        "ListInstances",
        slrgov_testkit::ConnectFault::AccessDenied,
        None,
    );
    let lifecycle = world.lifecycle(None);
    let pass = start(&world, ReconcileMode::Observe).await;
    assert_eq!(
        world.work(&lifecycle, "w", &pass.id).await,
        Resumed::Finished
    );
    let report = report_of(&world, &pass.id).await;
    assert!(!report.totals.orphan_scan, "{report:?}");
    let first_end = end(&world, &pass.id).await;
    assert!(
        !first_end
            .findings
            .iter()
            .any(|(code, _, _)| *code == FindingCode::OrphanRole),
        "{first_end:?}"
    );

    // Every region listed, but a Connect role made after the pass started
    // (perhaps for an instance Connect is creating) is not an orphan yet.
    let world = self::world(Engine::Sqlite).await;
    let lifecycle = world.lifecycle(None);
    let pass = start(&world, ReconcileMode::Observe).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    const NEWER: &str = "AWSServiceRoleForAmazonConnect_Newer000000000005";
    world.iam().put_role(NEWER, None);
    assert_eq!(
        world.work(&lifecycle, "w", &pass.id).await,
        Resumed::Finished
    );
    let later = end(&world, &pass.id).await;
    assert!(
        has(&later, FindingCode::OrphanRole, &arn(ORPHAN), false),
        "{later:?}"
    );
    assert!(
        !later
            .findings
            .iter()
            .any(|(_, target, _)| *target == arn(NEWER)),
        "{later:?}"
    );
}

/// Repair reads the instance again before it ensures: one Connect dropped
/// after the inspection is skipped, and no role is made for it.
#[tokio::test]
async fn repair_skips_an_instance_that_no_longer_needs_a_role() {
    let world = world(Engine::Sqlite).await;
    let pass = start(&world, ReconcileMode::Repair).await;
    // The pass inspects (the harness instance's role is missing: queued for
    // repair), then the process dies before the repair.
    let first = world.lifecycle(Some(Script::new(vec![(
        at("orphans"),
        Act::CrashAfterSave,
    )])));
    assert_eq!(
        world.work(&first, "first", &pass.id).await,
        Resumed::Crashed
    );
    // Meanwhile Connect deletes the instance and a sync records it.
    world
        .aws
        .connect(ACCOUNT, "us-east-1")
        .remove_instance(INSTANCE);
    let lifecycle = world.lifecycle(None);
    let sync = lifecycle
        .sync(
            &ctx("slrgov.v1.InstanceService/SyncInstances"),
            &AccountSelector::One(account()),
            None,
        )
        .await
        .expect("sync");
    assert_eq!(
        world.work(&lifecycle, "sync", &sync.id).await,
        Resumed::Finished
    );
    tokio::time::sleep(LEASE).await;
    assert_eq!(
        world.work(&lifecycle, "fresh", &pass.id).await,
        Resumed::Finished
    );
    let report = report_of(&world, &pass.id).await;
    assert_eq!(report.repairs.len(), 1, "{report:?}");
    assert_eq!(report.repairs[0].outcome, "skipped", "{report:?}");
    assert!(
        world.iam().role(CONNECT_ROLE).is_none(),
        "no role for a deleted instance"
    );
    assert_eq!(world.iam().calls("CreateServiceLinkedRole"), 0);
}
