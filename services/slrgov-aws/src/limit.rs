//! A per-account rate limit on IAM calls (and, with a bucket of its own, on
//! Connect calls), so that the service never drives an account into
//! throttling, whoever makes the calls: request handlers and the background
//! worker of this process share one token bucket per account and service.
//!
//! With several replicas, the bucket is shared by all of them when
//! [`SharedBuckets`] are set (the server's Postgres store: one GCRA row per
//! account and service, on the database's clock), so N replicas together
//! stay at the rate. Without them (SQLite, one process; or
//! `SLRGOV_RATE_SHARING=local`) each process has its own bucket, and N
//! replicas make at most N times the rate. When the shared bucket fails or
//! is slow, the limiter falls back to its own bucket for that call (and
//! warns, at most once a minute): a database hiccup never stops AWS calls.
//!
//! A call that finds the bucket empty **waits** for its token (reserved in
//! order, so callers are served first come, first served) rather than
//! failing: the calls are few and the request timeout bounds the wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use slrgov_domain::types::AccountId;
use tokio::time::Instant;

use crate::connect::{ConnectApi, ConnectError, ConnectInstance};
use crate::iam::{DeletionStatus, IamApi, IamError, RoleInfo, RolePolicy};

/// The rate: calls per second, and how many may go at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallRate {
    /// Calls per second per account.
    pub per_second: f64,
    /// Calls an idle account may make at once.
    pub burst: u32,
}

impl CallRate {
    /// `per_second` calls a second, with a burst of the rate rounded up.
    pub fn per_second(per_second: f64) -> Self {
        CallRate {
            per_second,
            burst: Self::default_burst(per_second),
        }
    }

    /// The burst of a rate when none is configured: the rate rounded up
    /// (at least 1, at most 1000).
    pub fn default_burst(per_second: f64) -> u32 {
        per_second.ceil().clamp(1.0, 1000.0) as u32
    }
}

/// Buckets shared by every replica: reserves one call of an account to an
/// AWS service and says how long to wait before making it.
#[async_trait]
pub trait SharedBuckets: Send + Sync {
    /// Reserves one call of `account` to `service` (`iam`, `connect`) at
    /// `rate`; `Ok(None)`: no shared bucket here (the local one decides);
    /// `Err`: the shared bucket failed (the local one decides, with a
    /// warning).
    async fn reserve(
        &self,
        account: &AccountId,
        service: &str,
        rate: CallRate,
    ) -> Result<Option<Duration>, String>;

    /// Gives back one call reserved with [`SharedBuckets::reserve`] that was
    /// never made (its caller gave up while waiting for the slot), so that
    /// abandoned slots do not push every later call back.
    async fn refund(
        &self,
        _account: &AccountId,
        _service: &str,
        _rate: CallRate,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// Which bucket a reservation was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Shared,
    Local,
}

/// How long a reservation in the shared bucket may take before the limiter
/// uses its own bucket for the call.
pub const SHARED_TIMEOUT: Duration = Duration::from_secs(2);

/// The least time between two warnings about the shared bucket.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Bucket {
    /// Tokens available; negative when callers have reserved future ones.
    tokens: f64,
    last: Instant,
}

/// Falls back from the shared bucket, and when it last said so.
#[derive(Debug, Default)]
struct Fallbacks {
    last_warning: Option<Instant>,
    /// Fallbacks since the last warning.
    unreported: u64,
}

/// One token bucket per account, for the calls of one AWS service.
pub struct AccountLimiter {
    rate: CallRate,
    /// `iam` or `connect`, for the log and the shared bucket.
    service: &'static str,
    buckets: Mutex<HashMap<AccountId, Bucket>>,
    shared: Option<Arc<dyn SharedBuckets>>,
    shared_timeout: Duration,
    fallbacks: Mutex<Fallbacks>,
}

impl std::fmt::Debug for AccountLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountLimiter")
            .field("rate", &self.rate)
            .field("service", &self.service)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

impl AccountLimiter {
    /// A limiter of IAM calls at `rate`.
    pub fn new(rate: CallRate) -> Self {
        Self::for_service("iam", rate)
    }

    /// A limiter of `service`'s calls at `rate`.
    pub fn for_service(service: &'static str, rate: CallRate) -> Self {
        AccountLimiter {
            rate,
            service,
            buckets: Mutex::new(HashMap::new()),
            shared: None,
            shared_timeout: SHARED_TIMEOUT,
            fallbacks: Mutex::new(Fallbacks::default()),
        }
    }

    /// Takes the calls' slots from `shared` (every replica's bucket), and
    /// from this limiter's own bucket only when `shared` fails, is slower
    /// than [`SHARED_TIMEOUT`] or has no bucket.
    pub fn with_shared(mut self, shared: Option<Arc<dyn SharedBuckets>>) -> Self {
        self.shared = shared;
        self
    }

    /// The longest a shared reservation may take (tests).
    pub fn with_shared_timeout(mut self, timeout: Duration) -> Self {
        self.shared_timeout = timeout;
        self
    }

    /// The rate.
    pub fn rate(&self) -> CallRate {
        self.rate
    }

    /// The AWS service whose calls this limits.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// Reserves a token of `account`'s own bucket; returns how long to wait
    /// before using it.
    fn reserve_local(&self, account: &AccountId) -> Duration {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let burst = f64::from(self.rate.burst);
        let bucket = buckets.entry(account.clone()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate.per_second).min(burst);
        bucket.last = now;
        bucket.tokens -= 1.0;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / self.rate.per_second)
        }
    }

    /// Gives back a token of `account`'s own bucket.
    fn refund_local(&self, account: &AccountId) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = buckets.get_mut(account) {
            bucket.tokens = (bucket.tokens + 1.0).min(f64::from(self.rate.burst));
        }
    }

    /// Notes a fallback to the own bucket; warns at most once a minute.
    fn fall_back(&self, account: &AccountId, error: &str) {
        let now = Instant::now();
        let mut fallbacks = self.fallbacks.lock().unwrap_or_else(|e| e.into_inner());
        fallbacks.unreported += 1;
        if fallbacks
            .last_warning
            .is_some_and(|at| now.saturating_duration_since(at) < WARN_EVERY)
        {
            return;
        }
        tracing::warn!(
            account = %account,
            service = self.service,
            error,
            fallbacks = fallbacks.unreported,
            "the shared rate bucket failed: calls use this process's own bucket \
             (replicas may together exceed the rate until it answers again)"
        );
        fallbacks.last_warning = Some(now);
        fallbacks.unreported = 0;
    }

    /// Reserves a slot for one call of `account` (in the shared bucket when
    /// there is one, else in this process's own) and returns how long to
    /// wait before making it, without waiting.
    pub async fn reserve(&self, account: &AccountId) -> Duration {
        self.reserve_from(account).await.0
    }

    async fn reserve_from(&self, account: &AccountId) -> (Duration, Source) {
        if let Some(shared) = &self.shared {
            match tokio::time::timeout(
                self.shared_timeout,
                shared.reserve(account, self.service, self.rate),
            )
            .await
            {
                Ok(Ok(Some(wait))) => return (wait, Source::Shared),
                Ok(Ok(None)) => {}
                Ok(Err(error)) => self.fall_back(account, &error),
                Err(_) => self.fall_back(
                    account,
                    &format!("no answer within {:?}", self.shared_timeout),
                ),
            }
        }
        (self.reserve_local(account), Source::Local)
    }

    /// Waits until `account` may make one more call. A caller that gives
    /// up while waiting (its future is dropped: a deadline, a client gone)
    /// gives its slot back, so abandoned slots never queue ahead of the
    /// calls that are still wanted.
    pub async fn acquire(&self, account: &AccountId, operation: &str) {
        let (wait, source) = self.reserve_from(account).await;
        if !wait.is_zero() {
            tracing::debug!(
                account = %account,
                service = self.service,
                operation,
                wait_ms = wait.as_millis() as u64,
                "aws call waits for the account's rate limit"
            );
            let mut unused = Unused {
                limiter: self,
                account,
                source,
                armed: true,
            };
            tokio::time::sleep(wait).await;
            unused.armed = false;
        }
    }
}

/// A reserved slot whose wait is under way: given back if the wait is
/// dropped before it ends.
struct Unused<'a> {
    limiter: &'a AccountLimiter,
    account: &'a AccountId,
    source: Source,
    armed: bool,
}

impl Drop for Unused<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match self.source {
            Source::Local => self.limiter.refund_local(self.account),
            Source::Shared => {
                let (Some(shared), Ok(runtime)) = (
                    self.limiter.shared.clone(),
                    tokio::runtime::Handle::try_current(),
                ) else {
                    return;
                };
                let account = self.account.clone();
                let (service, rate) = (self.limiter.service, self.limiter.rate);
                runtime.spawn(async move {
                    if let Err(error) = shared.refund(&account, service, rate).await {
                        tracing::debug!(%account, service, error = %error, "an unused rate slot was not given back");
                    }
                });
            }
        }
    }
}

/// An IAM client whose every call first takes a token of its account.
#[derive(Debug)]
pub struct RateLimitedIam {
    inner: Arc<dyn IamApi>,
    account: AccountId,
    limiter: Arc<AccountLimiter>,
}

impl RateLimitedIam {
    /// Limits `inner`, a client of `account`, by `limiter`.
    pub fn new(inner: Arc<dyn IamApi>, account: AccountId, limiter: Arc<AccountLimiter>) -> Self {
        RateLimitedIam {
            inner,
            account,
            limiter,
        }
    }
}

#[async_trait]
impl IamApi for RateLimitedIam {
    async fn create_service_linked_role(
        &self,
        service: &str,
        suffix: Option<&str>,
        description: Option<&str>,
    ) -> Result<RoleInfo, IamError> {
        self.limiter
            .acquire(&self.account, "CreateServiceLinkedRole")
            .await;
        self.inner
            .create_service_linked_role(service, suffix, description)
            .await
    }

    async fn get_role(&self, name: &str) -> Result<RoleInfo, IamError> {
        self.limiter.acquire(&self.account, "GetRole").await;
        self.inner.get_role(name).await
    }

    async fn list_roles(&self, path_prefix: &str) -> Result<Vec<RoleInfo>, IamError> {
        self.limiter.acquire(&self.account, "ListRoles").await;
        self.inner.list_roles(path_prefix).await
    }

    async fn update_role_description(
        &self,
        name: &str,
        description: &str,
    ) -> Result<RoleInfo, IamError> {
        self.limiter
            .acquire(&self.account, "UpdateRoleDescription")
            .await;
        self.inner.update_role_description(name, description).await
    }

    async fn delete_service_linked_role(&self, name: &str) -> Result<String, IamError> {
        self.limiter
            .acquire(&self.account, "DeleteServiceLinkedRole")
            .await;
        self.inner.delete_service_linked_role(name).await
    }

    async fn deletion_status(&self, task_id: &str) -> Result<DeletionStatus, IamError> {
        self.limiter
            .acquire(&self.account, "GetServiceLinkedRoleDeletionStatus")
            .await;
        self.inner.deletion_status(task_id).await
    }

    async fn role_policies(&self, name: &str) -> Result<Vec<RolePolicy>, IamError> {
        // Several IAM calls (list inline, get each, list attached, get each
        // version): one token for the listing; the policy reads are few.
        self.limiter
            .acquire(&self.account, "ListRolePolicies")
            .await;
        self.inner.role_policies(name).await
    }
}

/// A Connect client whose every call first takes a token of its account.
#[derive(Debug)]
pub struct RateLimitedConnect {
    inner: Arc<dyn ConnectApi>,
    account: AccountId,
    limiter: Arc<AccountLimiter>,
}

impl RateLimitedConnect {
    /// Limits `inner`, a client of `account`, by `limiter`.
    pub fn new(
        inner: Arc<dyn ConnectApi>,
        account: AccountId,
        limiter: Arc<AccountLimiter>,
    ) -> Self {
        RateLimitedConnect {
            inner,
            account,
            limiter,
        }
    }
}

#[async_trait]
impl ConnectApi for RateLimitedConnect {
    async fn list_instances(&self) -> Result<Vec<ConnectInstance>, ConnectError> {
        // Paged: one token for the listing (a region holds few instances).
        self.limiter.acquire(&self.account, "ListInstances").await;
        self.inner.list_instances().await
    }

    async fn describe_instance(&self, instance_id: &str) -> Result<ConnectInstance, ConnectError> {
        self.limiter
            .acquire(&self.account, "DescribeInstance")
            .await;
        self.inner.describe_instance(instance_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(n: u8) -> AccountId {
        AccountId::parse(&format!("{n:012}")).expect("account")
    }

    #[tokio::test(start_paused = true)]
    async fn calls_beyond_the_burst_wait_their_turn_per_account() {
        let limiter = AccountLimiter::new(CallRate {
            per_second: 2.0,
            burst: 2,
        });
        let a = account(1);
        // The burst goes at once; then one token every 500 ms, in order.
        let waits: Vec<Duration> = (0..5).map(|_| limiter.reserve_local(&a)).collect();
        assert_eq!(
            waits,
            [
                Duration::ZERO,
                Duration::ZERO,
                Duration::from_millis(500),
                Duration::from_millis(1000),
                Duration::from_millis(1500),
            ]
        );
        // Another account has its own bucket.
        assert_eq!(limiter.reserve_local(&account(2)), Duration::ZERO);
        // Time refills the bucket (here: the reservations are paid back
        // after 1.5 s, then the bucket fills up to the burst).
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(limiter.reserve_local(&a), Duration::ZERO);
        assert_eq!(limiter.reserve_local(&a), Duration::ZERO);
        assert_eq!(limiter.reserve_local(&a), Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_sleeps_for_the_reservation() {
        let limiter = AccountLimiter::new(CallRate {
            per_second: 4.0,
            burst: 1,
        });
        let a = account(3);
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire(&a, "GetRole").await;
        }
        // One at once, then four more at 250 ms each (virtual time).
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
    }

    /// Callers that give up while waiting (a deadline, a client gone) give
    /// their slots back, in the process's own bucket and in the shared one:
    /// the next call waits for the slot after the last call made, not
    /// behind the abandoned ones.
    #[tokio::test(start_paused = true)]
    async fn a_caller_that_gives_up_gives_its_slot_back() {
        for shared in [false, true] {
            let rate = CallRate {
                per_second: 1.0,
                burst: 1,
            };
            let fake: Arc<dyn SharedBuckets> = Arc::new(FakeShared::default());
            let limiter = if shared {
                AccountLimiter::new(rate).with_shared(Some(fake))
            } else {
                AccountLimiter::new(rate)
            };
            let a = account(7);
            let start = Instant::now();
            limiter.acquire(&a, "GetRole").await;
            // Two callers give up after 100 ms, long before their slots
            // (1 s and 2 s from the start).
            for _ in 0..2 {
                let gave_up = tokio::time::timeout(
                    Duration::from_millis(100),
                    limiter.acquire(&a, "GetRole"),
                )
                .await;
                assert!(gave_up.is_err(), "shared {shared}: still waiting");
            }
            // The shared bucket's refunds run as tasks.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            limiter.acquire(&a, "GetRole").await;
            let elapsed = start.elapsed();
            assert!(
                elapsed >= Duration::from_millis(990) && elapsed <= Duration::from_millis(1010),
                "shared {shared}: the next call went at {elapsed:?}, not at 3 s"
            );
        }
    }

    /// A shared bucket in memory (GCRA, as the Postgres one), or one that
    /// fails, hangs or has no bucket.
    #[derive(Default)]
    struct FakeShared {
        tat: Mutex<HashMap<(AccountId, String), Instant>>,
        mode: Mutex<&'static str>,
        calls: Mutex<u32>,
    }

    #[async_trait]
    impl SharedBuckets for FakeShared {
        async fn reserve(
            &self,
            account: &AccountId,
            service: &str,
            rate: CallRate,
        ) -> Result<Option<Duration>, String> {
            *self.calls.lock().expect("calls") += 1;
            let mode = *self.mode.lock().expect("mode");
            match mode {
                "fail" => return Err("connection refused".to_owned()),
                "hang" => std::future::pending::<()>().await,
                "none" => return Ok(None),
                _ => {}
            }
            let interval = Duration::from_secs_f64(1.0 / rate.per_second);
            let now = Instant::now();
            let mut tat = self.tat.lock().expect("tat");
            let slot = tat
                .entry((account.clone(), service.to_owned()))
                .or_insert(now);
            *slot = (*slot).max(now) + interval;
            let ahead = slot.saturating_duration_since(now);
            Ok(Some(ahead.saturating_sub(interval * rate.burst)))
        }

        async fn refund(
            &self,
            account: &AccountId,
            service: &str,
            rate: CallRate,
        ) -> Result<(), String> {
            let interval = Duration::from_secs_f64(1.0 / rate.per_second);
            let now = Instant::now();
            let mut tat = self.tat.lock().expect("tat");
            if let Some(slot) = tat.get_mut(&(account.clone(), service.to_owned())) {
                *slot = slot.checked_sub(interval).unwrap_or(now).max(now);
            }
            Ok(())
        }
    }

    fn shared_limiter(shared: &Arc<FakeShared>, rate: CallRate) -> AccountLimiter {
        let shared: Arc<dyn SharedBuckets> = shared.clone();
        AccountLimiter::new(rate).with_shared(Some(shared))
    }

    #[tokio::test(start_paused = true)]
    async fn two_limiters_on_one_shared_bucket_keep_the_rate_together() {
        let shared = Arc::new(FakeShared::default());
        let rate = CallRate {
            per_second: 2.0,
            burst: 1,
        };
        // Two replicas, each with its own limiter, one shared bucket.
        let first = shared_limiter(&shared, rate);
        let second = shared_limiter(&shared, rate);
        let a = account(4);
        let mut waits = Vec::new();
        for _ in 0..5 {
            waits.push(first.reserve(&a).await);
            waits.push(second.reserve(&a).await);
        }
        // One at once, then one every 500 ms across both: ten calls take
        // 4.5 s, where two own buckets would have let them through in 2 s.
        let expected: Vec<Duration> = (0..10).map(|n| Duration::from_millis(500 * n)).collect();
        assert_eq!(waits, expected);
        // The IAM and Connect buckets of an account are apart.
        let connect = AccountLimiter::for_service("connect", rate)
            .with_shared(Some(shared.clone() as Arc<dyn SharedBuckets>));
        assert_eq!(connect.reserve(&a).await, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_shared_bucket_falls_back_to_the_own_bucket_and_warns_once() {
        let shared = Arc::new(FakeShared::default());
        *shared.mode.lock().expect("mode") = "fail";
        let limiter = shared_limiter(
            &shared,
            CallRate {
                per_second: 2.0,
                burst: 2,
            },
        );
        let a = account(5);
        let mut waits = Vec::new();
        for _ in 0..4 {
            waits.push(limiter.reserve(&a).await);
        }
        // The own bucket's answers (burst 2, then 500 ms apart).
        assert_eq!(
            waits,
            [
                Duration::ZERO,
                Duration::ZERO,
                Duration::from_millis(500),
                Duration::from_millis(1000)
            ]
        );
        assert_eq!(*shared.calls.lock().expect("calls"), 4);
        // One warning, then silence for a minute (the others counted).
        {
            let fallbacks = limiter.fallbacks.lock().expect("fallbacks");
            assert!(fallbacks.last_warning.is_some());
            assert_eq!(fallbacks.unreported, 3);
        }
        tokio::time::advance(WARN_EVERY).await;
        limiter.reserve(&a).await;
        assert_eq!(limiter.fallbacks.lock().expect("fallbacks").unreported, 0);
        // No bucket (`None`): the own bucket, without a warning.
        *shared.mode.lock().expect("mode") = "none";
        limiter.reserve(&a).await;
        assert_eq!(limiter.fallbacks.lock().expect("fallbacks").unreported, 0);
        // Back: the shared bucket decides again.
        *shared.mode.lock().expect("mode") = "gcra";
        assert_eq!(limiter.reserve(&account(6)).await, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_shared_bucket_costs_at_most_the_timeout() {
        let shared = Arc::new(FakeShared::default());
        *shared.mode.lock().expect("mode") = "hang";
        let limiter = shared_limiter(&shared, CallRate::per_second(1.0));
        let a = account(7);
        let start = Instant::now();
        limiter.acquire(&a, "GetRole").await;
        assert_eq!(start.elapsed(), SHARED_TIMEOUT);
        // The own bucket took the call; the next also waits the timeout
        // (by then the own bucket has refilled).
        let start = Instant::now();
        limiter.acquire(&a, "GetRole").await;
        assert_eq!(start.elapsed(), SHARED_TIMEOUT);
        assert_eq!(limiter.fallbacks.lock().expect("fallbacks").unreported, 1);
    }
}
