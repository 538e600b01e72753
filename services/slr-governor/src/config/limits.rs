//! The per-account rates of AWS calls: IAM's rate and burst, Connect's
//! rate, and whether the replicas share one bucket per account (the
//! Postgres store) or each keep their own; and how many instances a
//! batch ensures at once.

use anyhow::bail;
use clap::Args;
use slrgov_aws::limit::CallRate;

use crate::env;

/// The default IAM calls per second per account: well under IAM's own
/// limits, so the service never drives an account into throttling.
pub const DEFAULT_IAM_RATE_PER_ACCOUNT: f64 = 10.0;
/// The default Amazon Connect calls per second per account: Connect's
/// ListInstances and DescribeInstance allow 2 per second (burst 5).
pub const DEFAULT_CONNECT_RATE_PER_ACCOUNT: f64 = 2.0;

/// The rate settings as flags and environment variables (and, with the
/// same names, as the TOML file's keys).
#[derive(Debug, Clone, Default, Args)]
pub struct RateFlags {
    /// IAM calls per second per AWS account (all replicas together, unless
    /// --rate-sharing local).
    #[arg(long, env = env::IAM_RATE_PER_ACCOUNT, global = true)]
    pub iam_rate_per_account: Option<f64>,

    /// IAM calls an idle account may make at once (default: the rate
    /// rounded up).
    #[arg(long, env = env::IAM_BURST_PER_ACCOUNT, global = true)]
    pub iam_burst_per_account: Option<u32>,

    /// Amazon Connect calls per second per AWS account.
    #[arg(long, env = env::CONNECT_RATE_PER_ACCOUNT, global = true)]
    pub connect_rate_per_account: Option<f64>,

    /// `auto` (one bucket per account shared by every replica on Postgres;
    /// this process's own on SQLite) or `local` (each process its own).
    #[arg(long, env = env::RATE_SHARING, global = true)]
    pub rate_sharing: Option<String>,

    /// Instances one BatchEnsureLinkedRoles ensures at once (1 to 256);
    /// each account's calls still wait on its IAM rate.
    #[arg(long, env = env::BATCH_CONCURRENCY, global = true)]
    pub batch_concurrency: Option<u32>,
}

impl RateFlags {
    /// These settings, each taken from `self` or else from `file`.
    fn or(&self, file: RateFlags) -> RateFlags {
        RateFlags {
            iam_rate_per_account: self.iam_rate_per_account.or(file.iam_rate_per_account),
            iam_burst_per_account: self.iam_burst_per_account.or(file.iam_burst_per_account),
            connect_rate_per_account: self
                .connect_rate_per_account
                .or(file.connect_rate_per_account),
            rate_sharing: self.rate_sharing.clone().or(file.rate_sharing),
            batch_concurrency: self.batch_concurrency.or(file.batch_concurrency),
        }
    }
}

/// Where the per-account buckets are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateSharing {
    /// Shared by every replica on Postgres; this process's own on SQLite
    /// (one process: its own bucket is already exact).
    Auto,
    /// Each process its own bucket: N replicas make up to N times the rate.
    Local,
}

/// The resolved rate settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSettings {
    /// IAM calls per account: rate and burst.
    pub iam: CallRate,
    /// Connect calls per account (burst: the rate rounded up).
    pub connect: CallRate,
    /// Where the buckets are kept.
    pub sharing: RateSharing,
    /// Instances a batch ensures at once.
    pub batch_concurrency: usize,
}

impl RateSettings {
    /// Whether the replicas share the buckets with `database_url`.
    pub fn shared_on(&self, database_url: &str) -> bool {
        self.sharing == RateSharing::Auto
            && (database_url.starts_with("postgres://")
                || database_url.starts_with("postgresql://"))
    }
}

/// Resolves the rate settings: `flags` (flags and environment) over
/// `file` over the defaults; an invalid value names its variable.
pub fn resolve(flags: &RateFlags, file: RateFlags) -> anyhow::Result<RateSettings> {
    let values = flags.or(file);
    let positive = |value: Option<f64>, default: f64, name: &str| {
        let value = value.unwrap_or(default);
        if !(value.is_finite() && value > 0.0) {
            bail!("{name}: expected a positive number, got {value}");
        }
        Ok(value)
    };
    let iam_rate = positive(
        values.iam_rate_per_account,
        DEFAULT_IAM_RATE_PER_ACCOUNT,
        env::IAM_RATE_PER_ACCOUNT,
    )?;
    let iam_burst = match values.iam_burst_per_account {
        None => CallRate::default_burst(iam_rate),
        Some(burst) if (1..=1000).contains(&burst) => burst,
        Some(burst) => bail!(
            "{}: expected 1 to 1000 calls, got {burst}",
            env::IAM_BURST_PER_ACCOUNT
        ),
    };
    let connect_rate = positive(
        values.connect_rate_per_account,
        DEFAULT_CONNECT_RATE_PER_ACCOUNT,
        env::CONNECT_RATE_PER_ACCOUNT,
    )?;
    let sharing = match values.rate_sharing.as_deref() {
        None | Some("auto") => RateSharing::Auto,
        Some("local") => RateSharing::Local,
        Some(other) => bail!(
            "{}: expected auto or local, got {other:?}",
            env::RATE_SHARING
        ),
    };
    let batch_concurrency = match values.batch_concurrency {
        None => crate::lifecycle::DEFAULT_BATCH_CONCURRENCY,
        Some(n) if (1..=256).contains(&n) => n as usize,
        Some(n) => bail!(
            "{}: expected 1 to 256 instances, got {n}",
            env::BATCH_CONCURRENCY
        ),
    };
    Ok(RateSettings {
        iam: CallRate {
            per_second: iam_rate,
            burst: iam_burst,
        },
        connect: CallRate::per_second(connect_rate),
        sharing,
        batch_concurrency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(
        rate: Option<f64>,
        burst: Option<u32>,
        connect: Option<f64>,
        sharing: Option<&str>,
    ) -> RateFlags {
        RateFlags {
            iam_rate_per_account: rate,
            iam_burst_per_account: burst,
            connect_rate_per_account: connect,
            rate_sharing: sharing.map(str::to_owned),
            batch_concurrency: None,
        }
    }

    #[test]
    fn rate_defaults_are_below_aws_limits_and_shared_on_postgres() {
        let settings = resolve(&RateFlags::default(), RateFlags::default()).expect("defaults");
        assert_eq!(settings.iam, CallRate::per_second(10.0));
        assert_eq!(settings.iam.burst, 10);
        assert_eq!(settings.connect, CallRate::per_second(2.0));
        assert_eq!(settings.sharing, RateSharing::Auto);
        assert_eq!(settings.batch_concurrency, 16);
        assert!(settings.shared_on("postgres://svc@db/slrgov"));
        assert!(settings.shared_on("postgresql://svc@db/slrgov"));
        assert!(!settings.shared_on("sqlite://x.db"));
        // A fractional rate's burst is rounded up; at least 1.
        let slow =
            resolve(&flags(Some(0.5), None, None, None), RateFlags::default()).expect("slow");
        assert_eq!(slow.iam.burst, 1);
    }

    #[test]
    fn rate_flags_beat_the_file_and_local_turns_sharing_off() {
        let file = flags(Some(4.0), Some(8), Some(1.0), Some("local"));
        let from_file = resolve(&RateFlags::default(), file.clone()).expect("file");
        assert_eq!(
            from_file.iam,
            CallRate {
                per_second: 4.0,
                burst: 8
            }
        );
        assert_eq!(from_file.connect.per_second, 1.0);
        assert_eq!(from_file.sharing, RateSharing::Local);
        assert!(!from_file.shared_on("postgres://svc@db/slrgov"));
        let flagged = resolve(&flags(Some(6.0), None, None, Some("auto")), file).expect("flags");
        // The burst of the file stays; the rate and the sharing are the flags'.
        assert_eq!(
            flagged.iam,
            CallRate {
                per_second: 6.0,
                burst: 8
            }
        );
        assert_eq!(flagged.sharing, RateSharing::Auto);
    }

    #[test]
    fn invalid_rate_settings_name_their_variable() {
        let cases = [
            (
                flags(Some(0.0), None, None, None),
                env::IAM_RATE_PER_ACCOUNT,
            ),
            (
                flags(Some(f64::NAN), None, None, None),
                env::IAM_RATE_PER_ACCOUNT,
            ),
            (flags(None, Some(0), None, None), env::IAM_BURST_PER_ACCOUNT),
            (
                flags(None, Some(5000), None, None),
                env::IAM_BURST_PER_ACCOUNT,
            ),
            (
                flags(None, None, Some(-1.0), None),
                env::CONNECT_RATE_PER_ACCOUNT,
            ),
            (flags(None, None, None, Some("global")), env::RATE_SHARING),
            (
                RateFlags {
                    batch_concurrency: Some(0),
                    ..RateFlags::default()
                },
                env::BATCH_CONCURRENCY,
            ),
            (
                RateFlags {
                    batch_concurrency: Some(257),
                    ..RateFlags::default()
                },
                env::BATCH_CONCURRENCY,
            ),
        ];
        for (input, variable) in cases {
            let error = resolve(&input, RateFlags::default()).expect_err("invalid");
            assert!(error.to_string().contains(variable), "{error}");
        }
    }

    #[test]
    fn batch_concurrency_comes_from_the_flags_or_the_file() {
        let file = RateFlags {
            batch_concurrency: Some(64),
            ..RateFlags::default()
        };
        let from_file = resolve(&RateFlags::default(), file.clone()).expect("file");
        assert_eq!(from_file.batch_concurrency, 64);
        let flagged = RateFlags {
            batch_concurrency: Some(1),
            ..RateFlags::default()
        };
        assert_eq!(resolve(&flagged, file).expect("flags").batch_concurrency, 1);
    }
}
