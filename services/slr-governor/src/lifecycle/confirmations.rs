//! Recent confirmations of ACTIVE roles: when IAM last showed each role (by
//! ARN) as recorded. EnsureLinkedRole of an ACTIVE role answers from a
//! confirmation younger than the bound (`SLRGOV_ROLE_CONFIRMATION_MAX_AGE`,
//! default 30 s; 0 turns it off) instead of calling GetRole again, so a
//! portal or a pipeline that ensures the same roles over and over costs
//! IAM nothing in between. What it gives up: a role deleted outside the
//! service within the bound is still answered ACTIVE until the bound runs
//! out (InspectLinkedRole and the reconciler always ask IAM).
//!
//! Per process and bounded: at most [`MAX_ENTRIES`] roles are remembered;
//! when full, the stale ones go, and if none is stale, all of them (the
//! next ensures just ask IAM again).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most roles remembered at once (about 100 bytes each).
pub const MAX_ENTRIES: usize = 100_000;

/// The default bound (`SLRGOV_ROLE_CONFIRMATION_MAX_AGE`).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30);

/// See the module documentation.
#[derive(Debug)]
pub struct Confirmations {
    max_age: Duration,
    seen: Mutex<HashMap<String, Instant>>,
}

impl Default for Confirmations {
    fn default() -> Self {
        Confirmations::new(DEFAULT_MAX_AGE)
    }
}

impl Confirmations {
    /// Confirmations younger than `max_age` are trusted (zero: none is).
    pub fn new(max_age: Duration) -> Self {
        Confirmations {
            max_age,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The bound.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// Whether IAM showed the role `arn` less than the bound ago.
    pub fn is_fresh(&self, arn: &str) -> bool {
        if self.max_age.is_zero() {
            return false;
        }
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(arn).is_some_and(|at| at.elapsed() < self.max_age)
    }

    /// IAM showed the role `arn` just now.
    pub fn confirmed(&self, arn: &str) {
        if self.max_age.is_zero() {
            return;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_ENTRIES && !seen.contains_key(arn) {
            let max_age = self.max_age;
            seen.retain(|_, at| at.elapsed() < max_age);
            if seen.len() >= MAX_ENTRIES {
                seen.clear();
            }
        }
        seen.insert(arn.to_owned(), Instant::now());
    }

    /// The role `arn` is not as recorded (missing, replaced, retired):
    /// the next ensure asks IAM.
    pub fn forget(&self, arn: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.remove(arn);
    }

    /// How many roles are remembered.
    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:iam::111111111111:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect_abc";

    #[test]
    fn a_confirmation_is_trusted_until_the_bound() {
        let confirmations = Confirmations::new(Duration::from_millis(50));
        assert!(!confirmations.is_fresh(ARN), "never confirmed");
        confirmations.confirmed(ARN);
        assert!(confirmations.is_fresh(ARN));
        assert!(!confirmations.is_fresh(&format!("{ARN}x")), "another role");
        std::thread::sleep(Duration::from_millis(60));
        assert!(!confirmations.is_fresh(ARN), "older than the bound");
        confirmations.confirmed(ARN);
        confirmations.forget(ARN);
        assert!(!confirmations.is_fresh(ARN), "forgotten");
    }

    #[test]
    fn zero_trusts_nothing_and_keeps_nothing() {
        let confirmations = Confirmations::new(Duration::ZERO);
        confirmations.confirmed(ARN);
        assert!(!confirmations.is_fresh(ARN));
        assert!(confirmations.is_empty());
    }

    #[test]
    fn memory_is_bounded() {
        let confirmations = Confirmations::new(Duration::from_secs(60));
        for n in 0..MAX_ENTRIES + 10 {
            confirmations.confirmed(&format!("{ARN}{n}"));
            assert!(confirmations.len() <= MAX_ENTRIES);
        }
        // Full of fresh ones: they were dropped, the newest is kept.
        assert!(confirmations.is_fresh(&format!("{ARN}{}", MAX_ENTRIES + 9)));
    }
}
