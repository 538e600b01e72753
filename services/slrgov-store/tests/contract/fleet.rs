//! The fleet summary: each visible account's instances by Connect status,
//! observed state and linked-role state, and its open findings by code and
//! severity (resolved ones not counted), with the total; and the gauges of
//! the open findings.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use slrgov_domain::finding::{FindingCode, FindingScope, Severity};
use slrgov_domain::model::{ConnectStatus, SeenInstance};
use slrgov_domain::names::AccountSelector;
use slrgov_domain::types::{AccountId, InstanceId};
use slrgov_domain::{Kind, Reason};
use slrgov_store::{Listed, Observation};

use crate::findings::{finding, record, target};
use crate::support::*;

fn seen(account: &AccountId, id: &InstanceId, status: Option<ConnectStatus>) -> SeenInstance {
    SeenInstance {
        instance_id: id.clone(),
        instance_alias: None,
        connect_arn: format!("arn:aws:connect:us-east-1:{account}:instance/{id}"),
        connect_status: status,
        instance_create_time: None,
        identity_management_type: None,
        service_role_arn: None,
    }
}

pub async fn case_fleet_summary(store: Arc<dyn Store>) {
    let a = create_account(&store, 1).await.account_id;
    let b = create_account(&store, 2).await.account_id;
    let empty = create_account(&store, 3).await.account_id;
    // A: 1 and 2 ACTIVE in Connect (1's role ACTIVE), 3 CREATION_FAILED
    // then vanished, 4 registered by hand (UNOBSERVED, status unknown).
    for n in 1..=4 {
        create_instance(&store, &a, &instance_id(n), "us-east-1").await;
    }
    let observe = |seen: Vec<SeenInstance>, listed: Listed| Observation {
        account: a.clone(),
        region: region("us-east-1"),
        seen,
        listed,
        asked_at: None,
    };
    store
        .instance_observe(
            &admin(),
            observe(
                vec![
                    seen(&a, &instance_id(1), Some(ConnectStatus::Active)),
                    seen(&a, &instance_id(2), Some(ConnectStatus::Active)),
                    seen(&a, &instance_id(3), Some(ConnectStatus::CreationFailed)),
                ],
                Listed::Seen,
            ),
        )
        .await
        .expect("observe");
    store
        .instance_observe(
            &admin(),
            observe(vec![], Listed::Missing(vec![instance_id(3)])),
        )
        .await
        .expect("vanish");
    make_active(&store, &key(&a, &instance_id(1)), "Fleet1").await;
    create_instance(&store, &b, &instance_id(5), "us-east-1").await;
    // Findings: A two open (one resolved), B one open.
    let at = time("2026-05-01T00:00:00Z");
    let (t1, t2) = (target(&a, 1), target(&a, 2));
    record(
        &store,
        &a,
        FindingScope::Target(t1.clone()),
        &[
            finding(FindingCode::DescriptionDrift, Severity::Warning, &t1, ""),
            finding(FindingCode::RoleUnused, Severity::Info, &t1, ""),
        ],
        at,
    )
    .await;
    record(
        &store,
        &a,
        FindingScope::Target(t2.clone()),
        &[finding(FindingCode::RoleMissing, Severity::Error, &t2, "")],
        at,
    )
    .await;
    record(
        &store,
        &a,
        FindingScope::Target(t1.clone()),
        &[finding(
            FindingCode::DescriptionDrift,
            Severity::Warning,
            &t1,
            "",
        )],
        at,
    )
    .await;
    let tb = target(&b, 5);
    record(
        &store,
        &b,
        FindingScope::Target(tb.clone()),
        &[finding(FindingCode::RoleMissing, Severity::Error, &tb, "")],
        at,
    )
    .await;

    let map = |pairs: &[(&str, u64)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect::<BTreeMap<_, _>>()
    };
    let summary = store
        .fleet_summary(&admin(), &AccountSelector::All)
        .await
        .expect("summary");
    let ids: Vec<AccountId> = summary.accounts.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, vec![a.clone(), b.clone(), empty.clone()]);
    let of_a = &summary.accounts[0].1;
    assert_eq!(of_a.instances, 4);
    assert_eq!(
        of_a.by_connect_status,
        map(&[("ACTIVE", 2), ("CREATION_FAILED", 1), ("UNKNOWN", 1)])
    );
    assert_eq!(
        of_a.by_observed_state,
        map(&[("OBSERVED", 2), ("UNOBSERVED", 1), ("VANISHED", 1)])
    );
    assert_eq!(
        of_a.by_linked_role_state,
        map(&[("ABSENT", 3), ("ACTIVE", 1)])
    );
    assert_eq!(
        of_a.open_findings_by_code,
        map(&[("DESCRIPTION_DRIFT", 1), ("ROLE_MISSING", 1)])
    );
    assert_eq!(
        of_a.open_findings_by_severity,
        map(&[("ERROR", 1), ("WARNING", 1)])
    );
    let of_b = &summary.accounts[1].1;
    assert_eq!(of_b.instances, 1);
    assert_eq!(of_b.by_connect_status, map(&[("UNKNOWN", 1)]));
    assert_eq!(of_b.by_linked_role_state, map(&[("ABSENT", 1)]));
    assert_eq!(
        summary.accounts[2].1,
        Default::default(),
        "an empty account"
    );
    assert_eq!(summary.total.instances, 5);
    assert_eq!(summary.total.open_findings_by_code["ROLE_MISSING"], 2);
    assert_eq!(summary.total.open_findings_by_severity["ERROR"], 2);
    assert_eq!(
        summary.total.by_linked_role_state,
        map(&[("ABSENT", 4), ("ACTIVE", 1)])
    );
    // One account: its counts, and the total is the same.
    let just_a = store
        .fleet_summary(&viewer(&[&a]), &AccountSelector::One(a.clone()))
        .await
        .expect("summary of a");
    assert_eq!(just_a.accounts, vec![(a.clone(), of_a.clone())]);
    assert_eq!(&just_a.total, of_a);
    expect_err(
        store
            .fleet_summary(&admin(), &AccountSelector::One(account_id(9)))
            .await,
        Kind::NotFound,
        Reason::NotFound,
    );
    // The gauges count the open findings by code and severity.
    let gauges = store.gauges(&admin()).await.expect("gauges");
    let finding_rows: Vec<(String, u64, Option<DateTime<Utc>>)> = {
        let mut rows: Vec<_> = gauges
            .into_iter()
            .filter(|g| g.kind == "finding")
            .map(|g| (g.state, g.count, g.oldest))
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(
        finding_rows,
        vec![
            ("DESCRIPTION_DRIFT/WARNING".to_owned(), 1, Some(at)),
            ("ROLE_MISSING/ERROR".to_owned(), 2, Some(at)),
        ]
    );
}
