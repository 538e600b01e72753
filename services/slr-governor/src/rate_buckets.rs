//! The per-account buckets of AWS calls shared by every replica: the
//! store's `rate_reserve` (one GCRA row per account and service in
//! Postgres) behind the AWS crate's [`SharedBuckets`]. The store opens in
//! the background, after the AWS clients are made: until it is ready (and
//! on SQLite, which shares nothing) each process uses its own bucket.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use slrgov_aws::limit::{CallRate, SharedBuckets};
use slrgov_domain::types::AccountId;
use slrgov_store::Store;

/// The store's shared buckets, once the store is open.
#[derive(Default)]
pub struct StoreBuckets {
    store: OnceLock<Arc<dyn Store>>,
}

impl StoreBuckets {
    /// Buckets whose store is set later ([`StoreBuckets::set_store`]).
    pub fn new() -> Arc<Self> {
        Arc::new(StoreBuckets::default())
    }

    /// Buckets in `store`.
    pub fn with_store(store: Arc<dyn Store>) -> Arc<Self> {
        let buckets = Self::new();
        buckets.set_store(store);
        buckets
    }

    /// Uses `store` from now on (the first store set stays).
    pub fn set_store(&self, store: Arc<dyn Store>) {
        let _ = self.store.set(store);
    }
}

#[async_trait]
impl SharedBuckets for StoreBuckets {
    async fn reserve(
        &self,
        account: &AccountId,
        service: &str,
        rate: CallRate,
    ) -> Result<Option<Duration>, String> {
        let Some(store) = self.store.get() else {
            return Ok(None);
        };
        store
            .rate_reserve(account, service, rate.per_second, rate.burst)
            .await
            .map_err(|error| error.to_string())
    }

    async fn refund(
        &self,
        account: &AccountId,
        service: &str,
        rate: CallRate,
    ) -> Result<(), String> {
        let Some(store) = self.store.get() else {
            return Ok(());
        };
        store
            .rate_refund(account, service, rate.per_second)
            .await
            .map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use slrgov_aws::limit::{AccountLimiter, CallRate, SharedBuckets};
    use slrgov_domain::types::AccountId;
    use slrgov_testkit::db::TestDb;

    use super::StoreBuckets;

    /// Two replicas (two stores, each with its own pool, on one Postgres
    /// database), each with its own limiter: together they keep the rate.
    /// 2 × 20 calls at 10/s with a burst of 1 are given slots 100 ms apart,
    /// the last 3.9 s after the first; two own buckets would have let them
    /// through twice as fast.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_replicas_share_one_iam_bucket_postgres() {
        let db = TestDb::postgres().await;
        let rate = CallRate {
            per_second: 10.0,
            burst: 1,
        };
        let replica = |store| {
            let shared: std::sync::Arc<dyn SharedBuckets> = StoreBuckets::with_store(store);
            std::sync::Arc::new(AccountLimiter::new(rate).with_shared(Some(shared)))
        };
        let first = replica(db.open().await);
        let second = replica(db.open().await);
        let account = AccountId::parse("123456789012").expect("account");
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for limiter in [first.clone(), second.clone()] {
            let account = account.clone();
            tasks.push(tokio::spawn(async move {
                let mut slots = Vec::new();
                for _ in 0..20 {
                    let asked = start.elapsed();
                    slots.push(asked + limiter.reserve(&account).await);
                }
                slots
            }));
        }
        let mut slots: Vec<Duration> = Vec::new();
        for task in tasks {
            slots.extend(task.await.expect("task"));
        }
        slots.sort();
        // Reservations, not waits: the whole test takes well under a second.
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        let last = slots[39];
        assert!(
            last >= Duration::from_millis(3800),
            "last slot {last:?}: {slots:?}"
        );
        // Never more than the rate in any second (10 slots span >= 0.9 s,
        // less the jitter of a round trip to the database).
        for window in slots.windows(11) {
            let span = window[10] - window[0];
            assert!(span >= Duration::from_millis(900), "{span:?}: {slots:?}");
        }
        // Another account, and Connect's bucket of the same account, are
        // apart: their first call goes at once.
        let other = AccountId::parse("210987654321").expect("account");
        assert_eq!(first.reserve(&other).await, Duration::ZERO);
        let shared: std::sync::Arc<dyn SharedBuckets> = StoreBuckets::with_store(db.open().await);
        let connect = AccountLimiter::for_service("connect", rate).with_shared(Some(shared));
        assert_eq!(connect.reserve(&account).await, Duration::ZERO);
    }

    /// On SQLite there is nothing to share: the store answers `None` and
    /// each limiter uses its own bucket.
    #[tokio::test]
    async fn sqlite_buckets_are_the_process_own() {
        let db = TestDb::sqlite();
        let buckets = StoreBuckets::with_store(db.open().await);
        let account = AccountId::parse("123456789012").expect("account");
        assert_eq!(
            SharedBuckets::reserve(&*buckets, &account, "iam", CallRate::per_second(1.0)).await,
            Ok(None)
        );
        // Before the store is set: no shared bucket either.
        assert_eq!(
            SharedBuckets::reserve(
                &*StoreBuckets::new(),
                &account,
                "iam",
                CallRate::per_second(1.0)
            )
            .await,
            Ok(None)
        );
    }
}
