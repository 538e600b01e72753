//! The reconciler's schedule (start a pass of each account that is due),
//! its settings and its pass-duration metric.

use std::sync::OnceLock;

use chrono::Utc;
use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use slrgov_domain::types::AccountId;
use slrgov_domain::workflow::{NewWorkflow, WorkflowKind, WorkflowRecord, WorkflowTarget};
use slrgov_domain::{Error, RequestContext};
use slrgov_store::SyncStart;

use super::super::Lifecycle;
use super::{ReconcileInputs, ReconcileMode, ReconcileState, ReconcileWorkflow};

/// Records a finished pass in `slrgov.reconcile.duration` (seconds from
/// start to end, by outcome and mode).
pub fn count_pass(record: &WorkflowRecord) {
    static HISTOGRAM: OnceLock<Histogram<f64>> = OnceLock::new();
    let (Some(end), true) = (record.end_time, record.done()) else {
        return;
    };
    let histogram = HISTOGRAM.get_or_init(|| {
        opentelemetry::global::meter("slr-governor")
            .f64_histogram("slrgov.reconcile.duration")
            .with_description("How long a reconcile pass of one account took, start to end")
            .with_unit("s")
            .build()
    });
    let seconds = (end - record.create_time).num_milliseconds().max(0) as f64 / 1000.0;
    let mode = record
        .inputs::<ReconcileInputs>()
        .map_or("observe", |i| i.mode.as_str());
    histogram.record(
        seconds,
        &[
            KeyValue::new("outcome", record.phase.as_str()),
            KeyValue::new("mode", mode),
        ],
    );
}

/// How the background reconciler runs (`SLRGOV_RECONCILE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// How often each account gets a pass.
    pub interval: std::time::Duration,
    /// Observe or repair.
    pub mode: ReconcileMode,
    /// The IAM reads one pass of one account may make.
    pub iam_reads: u32,
}

impl Lifecycle {
    /// The reconciler's schedule: starts a pass of each account whose last
    /// one started longer than the interval ago (workers; replicas share
    /// the work: a pass already running, or started by another replica
    /// within the interval, is not repeated). Returns how many it started.
    pub async fn start_due_reconciles(
        &self,
        ctx: &RequestContext,
        settings: ReconcileSettings,
        limit: u32,
    ) -> Result<u32, Error> {
        let mut started = 0;
        for account in self
            .store()
            .sync_due(ctx, WorkflowKind::Reconcile, settings.interval, limit)
            .await?
        {
            match self.start_reconcile(ctx, &account, settings).await {
                Ok(Some(record)) => {
                    started += 1;
                    tracing::info!(account = %account, operation = %record.id, mode = settings.mode.as_str(), "reconcile pass started");
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(account = %account, error = %error.message, "cannot start a reconcile pass");
                }
            }
        }
        Ok(started)
    }

    /// Starts a pass of one account; `None` when one is running or started
    /// within the interval.
    pub async fn start_reconcile(
        &self,
        ctx: &RequestContext,
        account: &AccountId,
        settings: ReconcileSettings,
    ) -> Result<Option<WorkflowRecord>, Error> {
        let inputs = ReconcileInputs {
            account_id: account.to_string(),
            mode: settings.mode,
            iam_reads: settings.iam_reads,
            started_at: Some(Utc::now()),
        };
        let start = NewWorkflow::of::<ReconcileWorkflow>(
            WorkflowKind::Reconcile,
            WorkflowTarget::account(account),
            &inputs,
            &ReconcileState::Claimed,
            None,
        )?;
        match self
            .store()
            .sync_begin(ctx, start, None, Some(settings.interval))
            .await?
        {
            SyncStart::Started(record) => Ok(Some(*record)),
            SyncStart::Running(_) | SyncStart::Replayed(_) => Ok(None),
        }
    }
}
