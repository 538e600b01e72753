//! The periodic jobs of a replica, next to the workflow worker:
//!
//! - the region table refreshed from AWS (the SSM public parameters of the
//!   global infrastructure) at start and every `SLRGOV_REGIONS_REFRESH`; a
//!   failed refresh keeps the last good table, is logged and counted
//!   (`slrgov.regions.refresh_failures`);
//! - the background syncs: every account is synced from Amazon Connect
//!   every `SLRGOV_SYNC_INTERVAL`. This job only starts the syncs (one per
//!   account, never two at once: the store joins a running or recent one);
//!   any replica's worker runs them, like every workflow;
//! - the reconciler: a pass over every account every
//!   `SLRGOV_RECONCILE_INTERVAL` (sync, inspect, store findings; repair in
//!   repair mode). This job only starts the passes; the workflow row of a
//!   running pass is the account's lease, and any replica's worker runs it.

use std::sync::OnceLock;
use std::time::Duration;

use aws_config::SdkConfig;
use opentelemetry::metrics::Counter;
use slrgov_domain::RequestContext;
use slrgov_domain::types::Partition;
use tokio::sync::watch;

use crate::lifecycle::Lifecycle;
use crate::lifecycle::reconcile::ReconcileSettings;
use crate::regions::RegionTable;

/// How often the schedule looks for accounts due a sync (at most: a
/// shorter interval looks as often as the interval).
const SYNC_CHECK: Duration = Duration::from_secs(30);
/// How many syncs one look starts at most.
const SYNC_BATCH: u32 = 50;

fn refresh_failures() -> &'static Counter<u64> {
    static COUNTER: OnceLock<Counter<u64>> = OnceLock::new();
    COUNTER.get_or_init(|| {
        opentelemetry::global::meter("slr-governor")
            .u64_counter("slrgov.regions.refresh_failures")
            .with_description(
                "Region table refreshes from SSM that failed (the last good table is kept)",
            )
            .build()
    })
}

/// Refreshes `table` from SSM once; the outcome is logged (and a failure
/// counted). Returns whether it succeeded.
pub async fn refresh_regions(table: &RegionTable, base: &SdkConfig) -> bool {
    match slrgov_aws::regions::connect_regions(base).await {
        Ok(codes) => match table.apply_ssm(Partition::Aws, &codes, chrono::Utc::now()) {
            Ok(changed) => {
                tracing::info!(
                    regions = codes.len(),
                    changed = ?changed,
                    "region table refreshed from ssm"
                );
                true
            }
            Err(error) => {
                refresh_failures().add(1, &[]);
                tracing::warn!(%error, "region refresh refused; the last good table is kept");
                false
            }
        },
        Err(error) => {
            refresh_failures().add(1, &[]);
            tracing::warn!(%error, "region refresh failed; the last good table is kept");
            false
        }
    }
}

/// Refreshes the region table at start and every `every`, until `stop`.
pub async fn run_region_refresh(
    table: RegionTable,
    base: SdkConfig,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = refresh_regions(&table, &base) => {}
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Starts the background syncs every account is due, until `stop`.
pub async fn run_sync_schedule(
    lifecycle: Lifecycle,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ctx = RequestContext::for_worker("sync-schedule");
    ctx.correlation_id = format!("{}-schedule", ctx.correlation_id);
    tracing::info!(
        interval_s = every.as_secs(),
        "background syncs scheduled for every account"
    );
    let check = every.min(SYNC_CHECK);
    loop {
        match lifecycle.start_due_syncs(&ctx, every, SYNC_BATCH).await {
            Ok(0) => {}
            Ok(started) => tracing::debug!(started, "background syncs started"),
            Err(error) => {
                tracing::warn!(error = %error.message, "cannot look for accounts due a sync");
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(check) => {}
        }
    }
}

/// Starts the reconcile pass of every account that is due, until `stop`.
pub async fn run_reconcile_schedule(
    lifecycle: Lifecycle,
    settings: ReconcileSettings,
    mut stop: watch::Receiver<bool>,
) {
    let mut ctx = RequestContext::for_worker("reconcile-schedule");
    ctx.correlation_id = format!("{}-schedule", ctx.correlation_id);
    tracing::info!(
        interval_s = settings.interval.as_secs(),
        mode = settings.mode.as_str(),
        iam_reads = settings.iam_reads,
        "reconciler scheduled for every account"
    );
    let check = settings.interval.min(SYNC_CHECK);
    loop {
        match lifecycle
            .start_due_reconciles(&ctx, settings, SYNC_BATCH)
            .await
        {
            Ok(0) => {}
            Ok(started) => tracing::debug!(started, "reconcile passes started"),
            Err(error) => {
                tracing::warn!(error = %error.message, "cannot look for accounts due a reconcile pass");
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(check) => {}
        }
    }
}
