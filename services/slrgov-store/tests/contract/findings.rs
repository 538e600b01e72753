//! Findings: what reconcile passes found, level-based (opened, still open
//! with its first seen time kept, resolved when a pass no longer sees it,
//! reopened under the same id), scoped by target or code, kept per tenant,
//! listed with filters and pages. The fleet summary is in `fleet.rs`, the
//! passes' schedule in `reconcile.rs`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use slrgov_domain::finding::{
    FindingCode, FindingCounts, FindingFilter, FindingScope, NewFinding, Severity, StoredFinding,
};
use slrgov_domain::names::AccountSelector;
use slrgov_domain::types::AccountId;
use slrgov_domain::{Kind, Reason, RequestContext};

use crate::support::*;

pub fn target(account: &AccountId, n: u32) -> String {
    format!("accounts/{account}/instances/{}", instance_id(n))
}

pub fn finding(code: FindingCode, severity: Severity, target: &str, subject: &str) -> NewFinding {
    NewFinding {
        code,
        severity,
        target: target.to_owned(),
        subject: subject.to_owned(),
        message: format!("{code} on {target} {subject}"),
    }
}

pub fn counts(opened: u32, still_open: u32, resolved: u32) -> FindingCounts {
    FindingCounts {
        opened,
        still_open,
        resolved,
    }
}

pub fn all_findings() -> FindingFilter {
    FindingFilter::default()
}

pub fn ffilter(text: &str) -> FindingFilter {
    FindingFilter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

pub async fn record(
    store: &Arc<dyn Store>,
    account: &AccountId,
    scope: FindingScope,
    findings: &[NewFinding],
    at: DateTime<Utc>,
) -> FindingCounts {
    store
        .finding_record(&admin(), account, &scope, findings, at)
        .await
        .unwrap_or_else(|e| panic!("record {scope:?}: {e:?}"))
}

/// Every finding under `parent` matching `filter`, `size` at a time.
pub async fn list_all(
    store: &Arc<dyn Store>,
    ctx: &RequestContext,
    parent: &AccountSelector,
    filter: &FindingFilter,
    size: i32,
) -> Vec<StoredFinding> {
    let mut items = Vec::new();
    let mut token = String::new();
    for _ in 0..1000 {
        let got = store
            .finding_list(ctx, parent, filter, &page(size, &token))
            .await
            .expect("finding_list");
        assert!(got.items.len() <= size as usize, "page larger than asked");
        items.extend(got.items);
        if got.next_page_token.is_empty() {
            return items;
        }
        token = got.next_page_token;
    }
    panic!("finding_list never ended");
}

/// The finding of `code` in `findings`.
#[track_caller]
fn of_code(findings: &[StoredFinding], code: FindingCode) -> &StoredFinding {
    findings
        .iter()
        .find(|f| f.code == code)
        .unwrap_or_else(|| panic!("no {code} in {findings:?}"))
}

async fn one(store: &Arc<dyn Store>, account: &AccountId) -> Vec<StoredFinding> {
    list_all(
        store,
        &admin(),
        &AccountSelector::One(account.clone()),
        &all_findings(),
        50,
    )
    .await
}

pub async fn case_finding_lifecycle(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let t = target(&a, 1);
    let scope = || FindingScope::Target(t.clone());
    let missing = finding(FindingCode::RoleMissing, Severity::Error, &t, "");
    let perm = finding(
        FindingCode::PermissionMissing,
        Severity::Warning,
        &t,
        "s3:GetObject arn:aws:s3:::bucket/*",
    );
    let (t1, t2, t3, t4) = (
        time("2026-01-01T00:00:00Z"),
        time("2026-01-01T01:00:00Z"),
        time("2026-01-01T02:00:00Z"),
        time("2026-01-01T03:00:00.123456Z"),
    );
    // Opened.
    let both = [missing.clone(), perm.clone()];
    assert_eq!(
        record(&store, &a, scope(), &both, t1).await,
        counts(2, 0, 0)
    );
    let first = one(&store, &a).await;
    assert_eq!(first.len(), 2);
    let stored = of_code(&first, FindingCode::RoleMissing);
    assert_eq!(stored.finding_id, missing.id());
    assert_eq!(
        stored.name(),
        format!("accounts/{a}/findings/{}", missing.id())
    );
    assert_eq!((stored.first_seen_time, stored.last_seen_time), (t1, t1));
    assert_eq!(stored.resolve_time, None);
    assert_eq!(stored.target, t);
    assert_eq!(stored.severity, Severity::Error);
    // Still open: first seen kept, last seen moved, the newest wording and
    // severity kept.
    let mut reworded = missing.clone();
    reworded.message = "still no role".to_owned();
    reworded.severity = Severity::Warning;
    let both = [reworded.clone(), perm.clone()];
    assert_eq!(
        record(&store, &a, scope(), &both, t2).await,
        counts(0, 2, 0)
    );
    let second = one(&store, &a).await;
    let stored = of_code(&second, FindingCode::RoleMissing);
    assert_eq!((stored.first_seen_time, stored.last_seen_time), (t1, t2));
    assert_eq!(stored.message, "still no role");
    assert_eq!(stored.severity, Severity::Warning);
    // Recorded twice: the same counts, nothing else changes.
    assert_eq!(
        record(&store, &a, scope(), &both, t2).await,
        counts(0, 2, 0)
    );
    assert_eq!(one(&store, &a).await, second);
    // A pass that no longer sees the permission finding resolves it.
    let alone = [reworded.clone()];
    assert_eq!(
        record(&store, &a, scope(), &alone, t3).await,
        counts(0, 1, 1)
    );
    let third = one(&store, &a).await;
    let resolved = of_code(&third, FindingCode::PermissionMissing);
    assert_eq!(resolved.resolve_time, Some(t3));
    assert_eq!(
        (resolved.first_seen_time, resolved.last_seen_time),
        (t1, t2)
    );
    // Recorded again: a resolved finding stays resolved, its time kept.
    assert_eq!(
        record(&store, &a, scope(), &alone, t3).await,
        counts(0, 1, 0)
    );
    assert_eq!(one(&store, &a).await, third);
    // Seen again: reopened under the same id, first seen now.
    assert_eq!(
        record(&store, &a, scope(), &both, t4).await,
        counts(1, 1, 0)
    );
    let fourth = one(&store, &a).await;
    let reopened = of_code(&fourth, FindingCode::PermissionMissing);
    assert_eq!(reopened.finding_id, perm.id());
    assert_eq!(reopened.name(), resolved.name());
    assert_eq!(
        (reopened.first_seen_time, reopened.last_seen_time),
        (t4, t4)
    );
    assert_eq!(reopened.resolve_time, None);
    // A pass that sees nothing resolves everything of its scope; the same
    // finding given twice counts once.
    assert_eq!(record(&store, &a, scope(), &[], t4).await, counts(0, 0, 2));
    let twice = [missing.clone(), missing.clone()];
    assert_eq!(
        record(&store, &a, scope(), &twice, t4).await,
        counts(1, 0, 0)
    );
}

pub async fn case_finding_scopes(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let (t1, t2) = (target(&a, 1), target(&a, 2));
    let orphan = format!(
        "arn:aws:iam::{a}:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect_X"
    );
    let at = time("2026-02-01T00:00:00Z");
    let later = time("2026-02-01T01:00:00Z");
    let on = |t: &str, code| finding(code, Severity::Warning, t, "");
    record(
        &store,
        &a,
        FindingScope::Target(t1.clone()),
        &[
            on(&t1, FindingCode::RoleMissing),
            on(&t1, FindingCode::DescriptionDrift),
        ],
        at,
    )
    .await;
    record(
        &store,
        &a,
        FindingScope::Target(t2.clone()),
        &[on(&t2, FindingCode::RoleMissing)],
        at,
    )
    .await;
    record(
        &store,
        &a,
        FindingScope::Code(FindingCode::OrphanRole),
        &[on(&orphan, FindingCode::OrphanRole)],
        at,
    )
    .await;
    let tb = target(&b, 1);
    record(
        &store,
        &b,
        FindingScope::Target(tb.clone()),
        &[on(&tb, FindingCode::RoleMissing)],
        at,
    )
    .await;
    let open = |store: Arc<dyn Store>, account: AccountId| async move {
        let mut got: Vec<(String, FindingCode)> = list_all(
            &store,
            &admin(),
            &AccountSelector::One(account),
            &ffilter("resolved = false"),
            50,
        )
        .await
        .into_iter()
        .map(|f| (f.target, f.code))
        .collect();
        got.sort();
        got
    };
    // A Target scope resolves only that target's findings (of any code).
    assert_eq!(
        record(&store, &a, FindingScope::Target(t1.clone()), &[], later).await,
        counts(0, 0, 2)
    );
    let mut want = vec![
        (t2.clone(), FindingCode::RoleMissing),
        (orphan.clone(), FindingCode::OrphanRole),
    ];
    want.sort();
    assert_eq!(open(store.clone(), a.clone()).await, want);
    // A Code scope only that code's, on any target.
    assert_eq!(
        record(
            &store,
            &a,
            FindingScope::Code(FindingCode::OrphanRole),
            &[],
            later
        )
        .await,
        counts(0, 0, 1)
    );
    assert_eq!(
        open(store.clone(), a.clone()).await,
        vec![(t2.clone(), FindingCode::RoleMissing)]
    );
    assert_eq!(
        record(
            &store,
            &a,
            FindingScope::Code(FindingCode::VanishedInstance),
            &[],
            later
        )
        .await,
        counts(0, 0, 0)
    );
    // The other account's finding on the same code is untouched.
    assert_eq!(open(store.clone(), b.clone()).await.len(), 1);
    // A finding outside the scope is refused, and nothing is written.
    for (scope, outside) in [
        (
            FindingScope::Target(t1.clone()),
            on(&t2, FindingCode::RoleMissing),
        ),
        (
            FindingScope::Code(FindingCode::OrphanRole),
            on(&t2, FindingCode::RoleMissing),
        ),
        (
            FindingScope::Target(tb.clone()),
            on(&tb, FindingCode::RoleMissing),
        ),
    ] {
        expect_err(
            store
                .finding_record(&admin(), &a, &scope, &[outside], later)
                .await,
            Kind::Internal,
            Reason::Internal,
        );
    }
    assert_eq!(
        open(store.clone(), a.clone()).await,
        vec![(t2.clone(), FindingCode::RoleMissing)]
    );
    // An account that does not exist is NOT_FOUND, with or without findings.
    let gone = account_id(9);
    let tg = target(&gone, 1);
    for findings in [vec![], vec![on(&tg, FindingCode::RoleMissing)]] {
        expect_err(
            store
                .finding_record(
                    &admin(),
                    &gone,
                    &FindingScope::Target(tg.clone()),
                    &findings,
                    at,
                )
                .await,
            Kind::NotFound,
            Reason::NotFound,
        );
    }
}

pub async fn case_finding_tenancy(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let (ta, tb) = (target(&a, 1), target(&b, 1));
    let at = time("2026-03-01T00:00:00Z");
    let fa = finding(FindingCode::RoleMissing, Severity::Error, &ta, "");
    let fb = finding(FindingCode::RoleMissing, Severity::Error, &tb, "");
    record(
        &store,
        &a,
        FindingScope::Target(ta.clone()),
        std::slice::from_ref(&fa),
        at,
    )
    .await;
    record(
        &store,
        &b,
        FindingScope::Target(tb.clone()),
        std::slice::from_ref(&fb),
        at,
    )
    .await;
    // B's viewer sees B's finding only.
    let theirs = viewer(&[&b]);
    let listed = list_all(&store, &theirs, &AccountSelector::All, &all_findings(), 50).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].account_id, b);
    expect_err(
        store
            .finding_list(
                &theirs,
                &AccountSelector::One(a.clone()),
                &all_findings(),
                &page(10, ""),
            )
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
    let summary = store
        .fleet_summary(&theirs, &AccountSelector::All)
        .await
        .expect("summary");
    assert_eq!(
        summary
            .accounts
            .iter()
            .map(|(id, _)| id.clone())
            .collect::<Vec<_>>(),
        vec![b.clone()]
    );
    assert_eq!(
        summary.total.open_findings_by_code.get("ROLE_MISSING"),
        Some(&1)
    );
    expect_err(
        store
            .fleet_summary(&theirs, &AccountSelector::One(a.clone()))
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
    // A viewer may not record; an operator of B may not record in A.
    expect_err(
        store
            .finding_record(
                &viewer(&[&a]),
                &a,
                &FindingScope::Target(ta.clone()),
                &[],
                at,
            )
            .await,
        Kind::PermissionDenied,
        Reason::PermissionDenied,
    );
    expect_err(
        store
            .finding_record(
                &operator(&[&b]),
                &a,
                &FindingScope::Target(ta.clone()),
                &[],
                at,
            )
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
    // A's finding is still open; an operator of A may record.
    assert_eq!(
        store
            .finding_record(
                &operator(&[&a]),
                &a,
                &FindingScope::Target(ta.clone()),
                &[fa],
                at
            )
            .await
            .expect("record"),
        counts(0, 1, 0)
    );
    // Deleting the account takes its findings along.
    store
        .account_delete(&admin(), &a, None)
        .await
        .expect("delete account");
    create_account(&store, 1).await;
    assert!(
        one(&store, &a).await.is_empty(),
        "findings outlived their account"
    );
    assert_eq!(one(&store, &b).await.len(), 1);
}

pub async fn case_finding_filters_and_pages(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let at = time("2026-04-01T00:00:00Z");
    let later = time("2026-04-02T00:00:00Z");
    // 30 targets in A and 5 in B, each with an ERROR ROLE_MISSING and a
    // WARNING DESCRIPTION_DRIFT; the drift of the even targets of A is
    // then resolved.
    for (account, count) in [(&a, 30), (&b, 5)] {
        for n in 1..=count {
            let t = target(account, n);
            let found = [
                finding(FindingCode::RoleMissing, Severity::Error, &t, ""),
                finding(FindingCode::DescriptionDrift, Severity::Warning, &t, ""),
            ];
            record(&store, account, FindingScope::Target(t.clone()), &found, at).await;
            if *account == a && n % 2 == 0 {
                record(&store, account, FindingScope::Target(t), &found[..1], later).await;
            }
        }
    }
    let all_a = AccountSelector::One(a.clone());
    let sizes = |text: &str| {
        let store = store.clone();
        let all_a = all_a.clone();
        let filter = ffilter(text);
        async move {
            let mut lens = Vec::new();
            for (parent, size) in [(&all_a, 7), (&AccountSelector::All, 4)] {
                let got = list_all(&store, &admin(), parent, &filter, size).await;
                let mut keys: Vec<(AccountId, String)> = got
                    .iter()
                    .map(|f| (f.account_id.clone(), f.finding_id.clone()))
                    .collect();
                let listed = keys.clone();
                keys.sort();
                assert_eq!(listed, keys, "not in (account_id, finding_id) order");
                assert_unique(&keys);
                lens.push(got.len());
            }
            lens
        }
    };
    assert_eq!(sizes("").await, vec![60, 70]);
    assert_eq!(sizes("code = ROLE_MISSING").await, vec![30, 35]);
    assert_eq!(sizes("severity = WARNING").await, vec![30, 35]);
    assert_eq!(sizes("resolved = true").await, vec![15, 15]);
    assert_eq!(sizes("resolved = false").await, vec![45, 55]);
    assert_eq!(
        sizes("code = DESCRIPTION_DRIFT AND resolved = false").await,
        vec![15, 20]
    );
    assert_eq!(
        sizes("code = DESCRIPTION_DRIFT AND severity = ERROR").await,
        vec![0, 0]
    );
    let resolved = list_all(&store, &admin(), &all_a, &ffilter("resolved = true"), 50).await;
    assert!(
        resolved
            .iter()
            .all(|f| f.resolve_time == Some(later) && f.code == FindingCode::DescriptionDrift)
    );
    // A token is bound to its filter and parent.
    let first = store
        .finding_list(
            &admin(),
            &all_a,
            &ffilter("code = ROLE_MISSING"),
            &page(5, ""),
        )
        .await
        .expect("page");
    assert!(!first.next_page_token.is_empty());
    assert_bad_page_token(
        store
            .finding_list(
                &admin(),
                &all_a,
                &ffilter("code = DESCRIPTION_DRIFT"),
                &page(5, &first.next_page_token),
            )
            .await,
    );
    assert_bad_page_token(
        store
            .finding_list(
                &admin(),
                &AccountSelector::All,
                &ffilter("code = ROLE_MISSING"),
                &page(5, &first.next_page_token),
            )
            .await,
    );
    // A parent that does not exist is NOT_FOUND.
    expect_err(
        store
            .finding_list(
                &admin(),
                &AccountSelector::One(account_id(9)),
                &all_findings(),
                &page(5, ""),
            )
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
}
