//! How settings and flags write durations: `500ms`, `20s`, `2m`, `1h` (a
//! bare number is seconds). One parser for the configuration and the
//! `token` command.

use std::time::Duration;

use anyhow::{Context, bail};

/// Parses durations such as `500ms`, `20s`, `2m`.
pub fn parse_duration(value: &str) -> anyhow::Result<Duration> {
    let value = value.trim();
    let (number, unit) = value
        .find(|c: char| !c.is_ascii_digit())
        .map_or((value, "s"), |at| value.split_at(at));
    let number: u64 = number
        .parse()
        .with_context(|| format!("invalid duration {value:?}: expected e.g. 500ms, 20s, 2m"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" | "h" => {
            let scale = if unit == "m" { 60 } else { 3600 };
            let secs = number
                .checked_mul(scale)
                .with_context(|| format!("duration {value:?} is too long"))?;
            Duration::from_secs(secs)
        }
        _ => bail!("invalid duration {value:?}: expected e.g. 500ms, 20s, 2m, 1h"),
    })
}
