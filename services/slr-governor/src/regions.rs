//! The regions where Amazon Connect is available. The service checks an
//! instance's region here before any IAM call: a region that is not in the
//! table, or is marked unavailable, is refused without calling AWS.

use std::collections::BTreeMap;

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use slrgov_domain::types::{Partition, RegionCode};
use slrgov_domain::{Error, Reason};

/// Where a region entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionSource {
    /// Built into the service.
    Builtin,
    /// The operator's regions file.
    Config,
}

/// One region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionEntry {
    /// The region code.
    pub code: RegionCode,
    /// Its partition.
    pub partition: Partition,
    /// Whether Amazon Connect is available there.
    pub connect_available: bool,
    /// Where the entry comes from.
    pub source: RegionSource,
}

/// The regions of Amazon Connect as of November 2026 (iam-slr-facts.md).
pub const BUILTIN_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "eu-central-1",
    "eu-west-2",
    "us-east-1",
    "us-gov-west-1",
    "us-west-2",
];

/// The region table, ordered by region code.
#[derive(Debug, Clone)]
pub struct RegionTable {
    regions: BTreeMap<String, RegionEntry>,
}

impl Default for RegionTable {
    fn default() -> Self {
        Self::builtin()
    }
}

impl RegionTable {
    /// The built-in table.
    pub fn builtin() -> Self {
        let regions = BUILTIN_REGIONS
            .iter()
            .filter_map(|code| RegionCode::parse(code).ok())
            .map(|code| {
                (
                    code.to_string(),
                    RegionEntry {
                        partition: code.partition(),
                        code,
                        connect_available: true,
                        source: RegionSource::Builtin,
                    },
                )
            })
            .collect();
        RegionTable { regions }
    }

    /// Applies the operator's regions file (`SLRGOV_REGIONS_FILE`): each
    /// entry adds a region or overrides a built-in one (e.g. withdraws it
    /// with `connect_available = false`).
    pub fn with_file(mut self, path: &Path) -> anyhow::Result<Self> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            region: Vec<Entry>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Entry {
            code: String,
            partition: Option<String>,
            connect_available: bool,
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the regions file {}", path.display()))?;
        let file: File = toml::from_str(&text)
            .with_context(|| format!("invalid regions file {}", path.display()))?;
        for entry in file.region {
            let code = RegionCode::parse(&entry.code)
                .map_err(|e| anyhow::anyhow!("regions file: {:?} {e}", entry.code))?;
            let partition = match entry.partition.as_deref() {
                None => code.partition(),
                Some(p) => Partition::parse(p)
                    .map_err(|e| anyhow::anyhow!("regions file: partition {p:?} {e}"))?,
            };
            if partition != code.partition() {
                bail!(
                    "regions file: {code} is in partition {}, not {partition}",
                    code.partition()
                );
            }
            self.regions.insert(
                code.to_string(),
                RegionEntry {
                    code,
                    partition,
                    connect_available: entry.connect_available,
                    source: RegionSource::Config,
                },
            );
        }
        Ok(self)
    }

    /// The region gate: Ok when Amazon Connect is available in `code`,
    /// else FAILED_PRECONDITION / REGION_NOT_SUPPORTED. Checked before any
    /// STS or IAM call.
    pub fn check_connect(&self, code: &RegionCode) -> Result<&RegionEntry, Error> {
        match self.get(code) {
            Some(entry) if entry.connect_available => Ok(entry),
            _ => Err(Error::failed_precondition(
                Reason::RegionNotSupported,
                format!("Amazon Connect is not available in {code}: no IAM call was made"),
            )
            .with_metadata("region", code.to_string())),
        }
    }

    /// The entry of `code`, if the table has one.
    pub fn get(&self, code: &RegionCode) -> Option<&RegionEntry> {
        self.regions.get(code.as_str())
    }

    /// The entries after `after` (exclusive), in order.
    pub fn after<'a>(
        &'a self,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = &'a RegionEntry> + 'a {
        self.regions
            .iter()
            .filter(move |(code, _)| after.is_none_or(|a| code.as_str() > a))
            .map(|(_, entry)| entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_table_has_every_documented_region_with_its_partition() {
        let table = RegionTable::builtin();
        assert_eq!(table.after(None).count(), BUILTIN_REGIONS.len());
        let gov = RegionCode::parse("us-gov-west-1").expect("code");
        assert_eq!(table.get(&gov).expect("gov").partition, Partition::AwsUsGov);
        assert!(
            table
                .get(&RegionCode::parse("eu-west-2").expect("code"))
                .is_some_and(|r| r.connect_available)
        );
        assert!(
            table
                .get(&RegionCode::parse("eu-west-1").expect("code"))
                .is_none()
        );
    }
}
