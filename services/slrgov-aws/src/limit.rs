//! A per-account rate limit on IAM calls (and, with a bucket of its own, on
//! Connect calls), so that the service never drives an account into
//! throttling, whoever makes the calls: request handlers and the background
//! worker of this process share one token bucket per account and service
//! (each replica has its own: with N replicas an account sees at most N
//! times the rate).
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
            burst: per_second.ceil().clamp(1.0, 1000.0) as u32,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    /// Tokens available; negative when callers have reserved future ones.
    tokens: f64,
    last: Instant,
}

/// One token bucket per account, for the calls of one AWS service.
#[derive(Debug)]
pub struct AccountLimiter {
    rate: CallRate,
    /// `iam` or `connect`, for the log.
    service: &'static str,
    buckets: Mutex<HashMap<AccountId, Bucket>>,
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
        }
    }

    /// Reserves a token of `account`'s bucket; returns how long to wait
    /// before using it.
    fn reserve(&self, account: &AccountId) -> Duration {
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

    /// Waits until `account` may make one more call.
    pub async fn acquire(&self, account: &AccountId, operation: &str) {
        let wait = self.reserve(account);
        if !wait.is_zero() {
            tracing::debug!(
                account = %account,
                service = self.service,
                operation,
                wait_ms = wait.as_millis() as u64,
                "aws call waits for the account's rate limit"
            );
            tokio::time::sleep(wait).await;
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
        let waits: Vec<Duration> = (0..5).map(|_| limiter.reserve(&a)).collect();
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
        assert_eq!(limiter.reserve(&account(2)), Duration::ZERO);
        // Time refills the bucket (here: the reservations are paid back
        // after 1.5 s, then the bucket fills up to the burst).
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(limiter.reserve(&a), Duration::ZERO);
        assert_eq!(limiter.reserve(&a), Duration::ZERO);
        assert_eq!(limiter.reserve(&a), Duration::from_millis(500));
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
}
