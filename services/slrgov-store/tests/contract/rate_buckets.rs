//! The per-account rate buckets every replica shares (`rate_reserve`,
//! `rate_refund`): on Postgres a GCRA row per account and service, on the
//! database's clock; SQLite serves one process and shares nothing (`None`).

use std::time::Duration;

use slrgov_store::Engine;

use crate::support::*;

pub async fn case_rate_reserve(store: std::sync::Arc<dyn Store>) {
    let a = account_id(1);
    let waits = |n: usize, service: &'static str, account: slrgov_domain::types::AccountId| {
        let store = store.clone();
        async move {
            let mut waits = Vec::new();
            for _ in 0..n {
                waits.push(
                    store
                        .rate_reserve(&account, service, 2.0, 2)
                        .await
                        .expect("reserve"),
                );
            }
            waits
        }
    };
    let first = waits(5, "iam", a.clone()).await;
    if store.engine() == Engine::Sqlite {
        assert!(first.iter().all(Option::is_none), "{first:?}");
        return;
    }
    // At 2/s with a burst of 2: two at once, then one every 500 ms (less
    // the time the statements took).
    let first: Vec<Duration> = first.into_iter().map(|w| w.expect("shared")).collect();
    assert_eq!(first[..2], [Duration::ZERO, Duration::ZERO], "{first:?}");
    for (n, wait) in first[2..].iter().enumerate() {
        let expected = Duration::from_millis(500 * (n as u64 + 1));
        assert!(
            *wait <= expected && *wait + Duration::from_millis(250) >= expected,
            "call {}: {wait:?}, expected about {expected:?} ({first:?})",
            n + 2
        );
    }
    // Another service and another account have buckets of their own.
    assert_eq!(waits(1, "connect", a.clone()).await, [Some(Duration::ZERO)]);
    assert_eq!(waits(1, "iam", account_id(2)).await, [Some(Duration::ZERO)]);
    // A reservation in the past is paid back: after the waits, the bucket
    // refills up to its burst.
    tokio::time::sleep(first[4] + Duration::from_millis(1100)).await;
    let refilled = waits(3, "iam", a).await;
    assert_eq!(refilled[..2], [Some(Duration::ZERO), Some(Duration::ZERO)]);
    assert!(
        refilled[2].expect("shared") > Duration::from_millis(300),
        "{refilled:?}"
    );
}

/// A slot given back (its caller gave up waiting) moves the next
/// reservation one interval sooner, never before now.
pub async fn case_rate_refund(store: std::sync::Arc<dyn Store>) {
    let a = account_id(3);
    let reserve = || store.rate_reserve(&a, "iam", 1.0, 1);
    let at_once = reserve().await.expect("reserve");
    if store.engine() == Engine::Sqlite {
        assert_eq!(at_once, None);
        store.rate_refund(&a, "iam", 1.0).await.expect("a no-op");
        return;
    }
    // At 1/s with a burst of 1: 0, then about 1 s and 2 s.
    let second = reserve().await.expect("reserve").expect("shared");
    let third = reserve().await.expect("reserve").expect("shared");
    assert!(third > Duration::from_millis(1700), "{second:?} {third:?}");
    // Both callers give up: the next call takes the second's slot.
    store.rate_refund(&a, "iam", 1.0).await.expect("refund");
    store.rate_refund(&a, "iam", 1.0).await.expect("refund");
    let next = reserve().await.expect("reserve").expect("shared");
    assert!(
        next <= Duration::from_secs(1) && next > Duration::from_millis(700),
        "the next slot is the second's (about 1 s), not a fourth (3 s): {next:?}"
    );
    // More refunds than reservations never move the bucket into the past:
    // the bucket is then as if idle, one call at once, the next 1 s later.
    for _ in 0..5 {
        store.rate_refund(&a, "iam", 1.0).await.expect("refund");
    }
    assert_eq!(reserve().await.expect("reserve"), Some(Duration::ZERO));
    let after = reserve().await.expect("reserve").expect("shared");
    assert!(after > Duration::from_millis(700), "{after:?}");
    // An account with no bucket yet: nothing to give back, no error.
    store
        .rate_refund(&account_id(4), "iam", 1.0)
        .await
        .expect("no row");
}
