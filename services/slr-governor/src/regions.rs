//! The regions where Amazon Connect is available. The service checks an
//! instance's region here before any IAM or Connect call: a region that is
//! not in the table, or is marked unavailable, is refused without calling
//! AWS. Discovery lists Connect in the available regions only.
//!
//! The table starts from the built-in list and the operator's file, and is
//! refreshed from AWS itself (the SSM public parameters of the global
//! infrastructure, [`RegionTable::apply_ssm`]) at start and on an interval:
//! a failed refresh keeps the last good table. The operator's file wins
//! over both.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

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
    /// The SSM public parameters of AWS global infrastructure.
    Ssm,
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
    /// When the entry was last refreshed from its source (SSM entries).
    pub refresh_time: Option<DateTime<Utc>>,
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

/// The region table, ordered by region code. Clones share one table: a
/// refresh is seen by every holder.
#[derive(Debug, Clone)]
pub struct RegionTable {
    regions: Arc<RwLock<BTreeMap<String, RegionEntry>>>,
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
                        refresh_time: None,
                    },
                )
            })
            .collect();
        RegionTable {
            regions: Arc::new(RwLock::new(regions)),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, RegionEntry>> {
        self.regions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, RegionEntry>> {
        self.regions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies the operator's regions file (`SLRGOV_REGIONS_FILE`): each
    /// entry adds a region or overrides a built-in one (e.g. withdraws it
    /// with `connect_available = false`).
    pub fn with_file(self, path: &Path) -> anyhow::Result<Self> {
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
            self.write().insert(
                code.to_string(),
                RegionEntry {
                    code,
                    partition,
                    connect_available: entry.connect_available,
                    source: RegionSource::Config,
                    refresh_time: None,
                },
            );
        }
        Ok(self)
    }

    /// Applies what SSM says of `partition` (the region codes where Amazon
    /// Connect is available, read at `at`): each becomes available (source
    /// SSM), and a region of the partition it no longer lists becomes
    /// unavailable. The operator's file wins: its entries stay. Returns
    /// the codes whose availability changed. An empty list is refused (a
    /// refresh that found nothing is not a reason to stop everywhere).
    pub fn apply_ssm(
        &self,
        partition: Partition,
        codes: &[String],
        at: DateTime<Utc>,
    ) -> Result<Vec<String>, String> {
        let listed: Vec<RegionCode> = codes
            .iter()
            .filter_map(|code| RegionCode::parse(code).ok())
            .filter(|code| code.partition() == partition)
            .collect();
        if listed.is_empty() {
            return Err(format!("ssm lists no region of partition {partition}"));
        }
        let mut regions = self.write();
        let mut changed = Vec::new();
        for code in &listed {
            let entry = regions
                .entry(code.to_string())
                .or_insert_with(|| RegionEntry {
                    code: code.clone(),
                    partition,
                    connect_available: false,
                    source: RegionSource::Ssm,
                    refresh_time: None,
                });
            if entry.source == RegionSource::Config {
                continue;
            }
            if !entry.connect_available {
                changed.push(code.to_string());
            }
            entry.connect_available = true;
            entry.source = RegionSource::Ssm;
            entry.refresh_time = Some(at);
        }
        for entry in regions.values_mut() {
            if entry.partition != partition
                || entry.source == RegionSource::Config
                || listed.contains(&entry.code)
            {
                continue;
            }
            if entry.connect_available {
                changed.push(entry.code.to_string());
            }
            entry.connect_available = false;
            entry.source = RegionSource::Ssm;
            entry.refresh_time = Some(at);
        }
        Ok(changed)
    }

    /// The regions of `partition` where Amazon Connect is available, in
    /// order: where discovery looks.
    pub fn connect_regions(&self, partition: Partition) -> Vec<RegionCode> {
        self.read()
            .values()
            .filter(|entry| entry.partition == partition && entry.connect_available)
            .map(|entry| entry.code.clone())
            .collect()
    }

    /// The region gate: Ok when Amazon Connect is available in `code`,
    /// else FAILED_PRECONDITION / REGION_NOT_SUPPORTED. Checked before any
    /// STS or IAM call.
    pub fn check_connect(&self, code: &RegionCode) -> Result<RegionEntry, Error> {
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
    pub fn get(&self, code: &RegionCode) -> Option<RegionEntry> {
        self.read().get(code.as_str()).cloned()
    }

    /// At most `limit` entries after `after` (exclusive), in order.
    pub fn after(&self, after: Option<&str>, limit: usize) -> Vec<RegionEntry> {
        self.read()
            .iter()
            .filter(|(code, _)| after.is_none_or(|a| code.as_str() > a))
            .take(limit)
            .map(|(_, entry)| entry.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_table_has_every_documented_region_with_its_partition() {
        let table = RegionTable::builtin();
        assert_eq!(table.after(None, 100).len(), BUILTIN_REGIONS.len());
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

#[cfg(test)]
mod ssm_tests {
    use super::*;

    fn code(value: &str) -> RegionCode {
        RegionCode::parse(value).expect("code")
    }

    #[test]
    fn ssm_adds_new_regions_withdraws_unlisted_ones_and_leaves_other_partitions() {
        let table = RegionTable::builtin();
        let at = Utc::now();
        let listed: Vec<String> = ["us-east-1", "eu-west-2", "ap-south-1", "us-gov-west-1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let changed = table
            .apply_ssm(Partition::Aws, &listed, at)
            .expect("applied");
        // New: ap-south-1. Withdrawn: every built-in aws region not listed.
        assert!(changed.contains(&"ap-south-1".to_owned()));
        assert!(changed.contains(&"us-west-2".to_owned()));
        let added = table.get(&code("ap-south-1")).expect("added");
        assert!(added.connect_available);
        assert_eq!(added.source, RegionSource::Ssm);
        assert_eq!(added.refresh_time, Some(at));
        assert!(table.check_connect(&code("us-west-2")).is_err());
        assert!(table.check_connect(&code("us-east-1")).is_ok());
        // GovCloud is another partition's: untouched, still built in.
        let gov = table.get(&code("us-gov-west-1")).expect("gov");
        assert_eq!(gov.source, RegionSource::Builtin);
        assert!(gov.connect_available);
        assert_eq!(
            table.connect_regions(Partition::Aws),
            vec![code("ap-south-1"), code("eu-west-2"), code("us-east-1")]
        );
    }

    #[test]
    fn an_empty_refresh_is_refused_and_the_operators_file_wins() {
        let table = RegionTable::builtin();
        assert!(table.apply_ssm(Partition::Aws, &[], Utc::now()).is_err());
        assert!(table.check_connect(&code("us-west-2")).is_ok());
        let dir = std::env::temp_dir().join(format!("slrgov-regions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("regions.toml");
        std::fs::write(
            &path,
            "[[region]]\ncode = \"us-west-2\"\nconnect_available = true\n\n[[region]]\ncode = \"eu-west-3\"\nconnect_available = false\n",
        )
        .expect("file");
        let table = table.with_file(&path).expect("file applied");
        table
            .apply_ssm(
                Partition::Aws,
                &["us-east-1".to_owned(), "eu-west-3".to_owned()],
                Utc::now(),
            )
            .expect("applied");
        assert!(
            table.check_connect(&code("us-west-2")).is_ok(),
            "the file keeps it"
        );
        assert!(
            table.check_connect(&code("eu-west-3")).is_err(),
            "the file withdrew it"
        );
    }
}
