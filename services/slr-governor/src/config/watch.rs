//! The settings of the watch streams (WatchInstances, WatchLinkedRoles):
//! how many one process serves, how far a watcher may fall behind, how
//! often an idle stream gets a bookmark, and how long the change log keeps
//! a change (how old a resume token may be).

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use crate::api::watch::WatchSettings;
use crate::env;
use crate::units::parse_duration;

/// The watch settings as flags and environment variables (and, with the
/// same names, as the TOML file's keys).
#[derive(Debug, Clone, Default, Args)]
pub struct WatchFlags {
    /// Watch streams one process serves at once (1000 by default).
    #[arg(long, env = env::WATCH_MAX_STREAMS, global = true)]
    pub watch_max_streams: Option<u32>,

    /// Messages buffered per watch stream (64 by default).
    #[arg(long, env = env::WATCH_BUFFER, global = true)]
    pub watch_buffer: Option<u32>,

    /// How long a watcher's full buffer may wait for it to read before it is
    /// cut off, e.g. `10s`.
    #[arg(long, env = env::WATCH_STALL_TIMEOUT, global = true)]
    pub watch_stall_timeout: Option<String>,

    /// A BOOKMARK after this long without a message, e.g. `30s`.
    #[arg(long, env = env::WATCH_HEARTBEAT, global = true)]
    pub watch_heartbeat: Option<String>,

    /// How long the change log keeps a change, e.g. `24h` (older resume
    /// tokens are OUT_OF_RANGE).
    #[arg(long, env = env::WATCH_RETENTION, global = true)]
    pub watch_retention: Option<String>,
}

impl WatchFlags {
    /// These settings, each taken from `self` or else from `file`.
    fn or(&self, file: WatchFlags) -> WatchFlags {
        WatchFlags {
            watch_max_streams: self.watch_max_streams.or(file.watch_max_streams),
            watch_buffer: self.watch_buffer.or(file.watch_buffer),
            watch_stall_timeout: self
                .watch_stall_timeout
                .clone()
                .or(file.watch_stall_timeout),
            watch_heartbeat: self.watch_heartbeat.clone().or(file.watch_heartbeat),
            watch_retention: self.watch_retention.clone().or(file.watch_retention),
        }
    }
}

/// The longest a watch duration may be (a week): beyond it a deadline
/// computed from it could overflow the clock.
const LONGEST: Duration = Duration::from_secs(7 * 24 * 3600);

/// A positive duration of `name`, at most a week, or `default`.
fn duration(value: Option<String>, default: Duration, name: &str) -> anyhow::Result<Duration> {
    let Some(value) = value else {
        return Ok(default);
    };
    let parsed = parse_duration(&value).with_context(|| name.to_owned())?;
    if parsed.is_zero() || parsed > LONGEST {
        bail!("{name}: must be more than 0 and at most 7 days, got {value}");
    }
    Ok(parsed)
}

/// Resolves the watch settings: `flags` (flags and environment) over
/// `file` over the defaults; an invalid value names its variable.
pub fn resolve(flags: &WatchFlags, file: WatchFlags) -> anyhow::Result<WatchSettings> {
    let values = flags.or(file);
    let defaults = WatchSettings::default();
    let count = |value: Option<u32>, default: usize, max: u32, name: &str| match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => bail!("{name}: expected 1 to {max}, got {n}"),
    };
    let settings = WatchSettings {
        max_watchers: count(
            values.watch_max_streams,
            defaults.max_watchers,
            1_000_000,
            env::WATCH_MAX_STREAMS,
        )?,
        buffer: count(
            values.watch_buffer,
            defaults.buffer,
            10_000,
            env::WATCH_BUFFER,
        )?,
        stall: duration(
            values.watch_stall_timeout,
            defaults.stall,
            env::WATCH_STALL_TIMEOUT,
        )?,
        heartbeat: duration(
            values.watch_heartbeat,
            defaults.heartbeat,
            env::WATCH_HEARTBEAT,
        )?,
        retention: duration(
            values.watch_retention,
            defaults.retention,
            env::WATCH_RETENTION,
        )?,
        ..defaults
    };
    if settings.retention < Duration::from_secs(60) {
        bail!(
            "{}: at least 1m (a resume token must outlive a reconnect)",
            env::WATCH_RETENTION
        );
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_defaults_and_flags_over_the_file() {
        let defaults = resolve(&WatchFlags::default(), WatchFlags::default()).expect("defaults");
        assert_eq!(defaults, WatchSettings::default());
        assert_eq!(defaults.retention, Duration::from_secs(24 * 3600));
        let file = WatchFlags {
            watch_max_streams: Some(10),
            watch_stall_timeout: Some("3s".into()),
            watch_retention: Some("2h".into()),
            ..WatchFlags::default()
        };
        let flags = WatchFlags {
            watch_stall_timeout: Some("1s".into()),
            watch_buffer: Some(8),
            ..WatchFlags::default()
        };
        let settings = resolve(&flags, file).expect("valid");
        assert_eq!(settings.max_watchers, 10);
        assert_eq!(settings.buffer, 8);
        assert_eq!(settings.stall, Duration::from_secs(1));
        assert_eq!(settings.retention, Duration::from_secs(7200));
        assert_eq!(settings.heartbeat, defaults.heartbeat);
    }

    #[test]
    fn invalid_watch_settings_name_their_variable() {
        let cases = [
            (
                WatchFlags {
                    watch_max_streams: Some(0),
                    ..WatchFlags::default()
                },
                env::WATCH_MAX_STREAMS,
            ),
            (
                WatchFlags {
                    watch_buffer: Some(100_000),
                    ..WatchFlags::default()
                },
                env::WATCH_BUFFER,
            ),
            (
                WatchFlags {
                    watch_stall_timeout: Some("0".into()),
                    ..WatchFlags::default()
                },
                env::WATCH_STALL_TIMEOUT,
            ),
            (
                WatchFlags {
                    watch_heartbeat: Some("soon".into()),
                    ..WatchFlags::default()
                },
                env::WATCH_HEARTBEAT,
            ),
            (
                WatchFlags {
                    watch_stall_timeout: Some("18446744073709551615s".into()),
                    ..WatchFlags::default()
                },
                env::WATCH_STALL_TIMEOUT,
            ),
            (
                WatchFlags {
                    watch_heartbeat: Some("200h".into()),
                    ..WatchFlags::default()
                },
                env::WATCH_HEARTBEAT,
            ),
            (
                WatchFlags {
                    watch_retention: Some("10s".into()),
                    ..WatchFlags::default()
                },
                env::WATCH_RETENTION,
            ),
        ];
        for (flags, name) in cases {
            let error = resolve(&flags, WatchFlags::default()).expect_err(name);
            assert!(format!("{error:#}").contains(name), "{name}: {error:#}");
        }
    }
}
