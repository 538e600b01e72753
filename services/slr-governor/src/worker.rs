//! The background worker, one per replica. It does one job: claim the
//! workflows that are due (any kind: an ensure whose process died, a
//! retirement waiting on IAM) and run their next steps with the one engine
//! ([`Lifecycle::resume`]). Replicas share the work through leases on the
//! workflow rows (`FOR UPDATE SKIP LOCKED` on Postgres); a dead replica's
//! workflows are taken over when its leases run out, and a stopping one
//! hands them over at once. When a workflow runs again is its row's
//! `not_before`, never memory. Now and then it also sweeps expired request
//! ids. It acts for every account, with an explicit, logged scope.

use std::time::Duration;

use slrgov_domain::RequestContext;
use slrgov_store::Store;
use tokio::sync::watch;
use tracing::Instrument;

use crate::lifecycle::Lifecycle;

/// How often the worker looks for due work.
const TICK: Duration = Duration::from_millis(200);
/// How many workflows one claim takes.
const CLAIM: u32 = 8;
/// How often expired request ids are swept, and how many at a time.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
const SWEEP_BATCH: u32 = 1000;

/// Runs until `stop` changes, then gives up its leases so another replica
/// takes the work over at once.
pub async fn run(
    lifecycle: Lifecycle,
    owner: String,
    change_retention: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ctx = RequestContext::for_worker("workflows");
    // The owner (process and instance) in every correlation id of this
    // worker, so that its audit events and logs say which replica did the
    // work.
    ctx.correlation_id = format!("{}-{owner}", ctx.correlation_id);
    tracing::info!(owner, "background worker started: acting for every account");
    let store = lifecycle.store().clone();
    let mut next_sweep = tokio::time::Instant::now();
    'work: loop {
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(TICK) => {}
        }
        if tokio::time::Instant::now() >= next_sweep {
            next_sweep += SWEEP_EVERY;
            sweep(&*store, &ctx, change_retention).await;
        }
        let due = match store
            .workflow_claim_due(&ctx, &owner, lifecycle.lease(), CLAIM)
            .await
        {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(error = %error.message, "cannot claim background work");
                continue;
            }
        };
        for claimed in due {
            // The rows were claimed together and run one after another: by
            // now a row's lease may have run out and another replica taken
            // it over. Take the lease again (from now) before running it,
            // and leave a row this worker lost (the engine checks again
            // before every step).
            let record = match store
                .workflow_renew(&ctx, &claimed.id, &owner, lifecycle.lease())
                .await
            {
                Ok(record) => record,
                Err(error) if error.kind == slrgov_domain::Kind::Aborted => {
                    tracing::info!(
                        workflow = %claimed.id,
                        error = %error.message,
                        "a claimed workflow is no longer this worker's: skipped"
                    );
                    continue;
                }
                Err(error) => {
                    tracing::warn!(
                        workflow = %claimed.id,
                        error = %error.message,
                        "cannot renew the lease of a claimed workflow: skipped"
                    );
                    continue;
                }
            };
            // One unit of work: its own trace and audit trail, its AWS
            // calls written with the steps that recorded what they found.
            let unit = ctx.unit_of_work(record.kind.as_str());
            unit.audit
                .set_target(record.account_id(), &record.target.name);
            let id = record.id.clone();
            tracing::debug!(workflow = %id, kind = %record.kind, step = %record.step, "running a workflow");
            let Some(result) = unless_stopped(
                &mut stop,
                slrgov_aws::audit::recording(
                    unit.audit.clone(),
                    lifecycle
                        .resume(&unit, record, &owner)
                        .instrument(unit.span.clone()),
                ),
            )
            .await
            else {
                break 'work;
            };
            if let Err(error) = result {
                tracing::warn!(workflow = %id, error = %error.message, "a workflow step could not be saved");
                // A failure after AWS calls that no save recorded is still
                // audited, with the calls.
                if unit.audit.pending_calls() > 0 {
                    audit_failure(&*store, &unit, &error)
                        .instrument(unit.span.clone())
                        .await;
                }
            }
        }
    }
    if let Err(error) = store.workflow_release_all(&ctx, &owner).await {
        tracing::warn!(error = %error.message, "cannot release the leases at shutdown");
    }
    tracing::info!(owner, "background worker stopped; leases released");
}

/// How long finished reconcile passes are kept (each account's newest
/// always is).
const PASS_RETENTION: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// At most this many batches of changes swept per sweep.
const CHANGE_SWEEP_BATCHES: u32 = 20;

/// Removes request ids older than their window, finished reconcile passes
/// older than a week, and changes older than the watch streams' retention
/// (a resume token from before it is then OUT_OF_RANGE).
async fn sweep(store: &dyn Store, ctx: &RequestContext, change_retention: Duration) {
    match store.request_id_sweep(ctx, SWEEP_BATCH).await {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "expired request ids swept"),
        Err(error) => tracing::warn!(error = %error.message, "cannot sweep request ids"),
    }
    match store
        .workflow_sweep_passes(ctx, PASS_RETENTION, SWEEP_BATCH)
        .await
    {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "old reconcile passes swept"),
        Err(error) => tracing::warn!(error = %error.message, "cannot sweep reconcile passes"),
    }
    let Ok(retention) = chrono::Duration::from_std(change_retention) else {
        return;
    };
    // A busy fleet may write more changes per sweep interval than one
    // batch: a few batches per sweep, bounded.
    let mut removed = 0;
    for _ in 0..CHANGE_SWEEP_BATCHES {
        match store
            .change_sweep(ctx, chrono::Utc::now() - retention, SWEEP_BATCH)
            .await
        {
            Ok(n) => {
                removed += n;
                if n < u64::from(SWEEP_BATCH) {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(error = %error.message, "cannot sweep the change log");
                break;
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "old changes swept from the change log");
    }
}

/// Runs one unit of work unless the worker is told to stop first. A unit
/// cut short at shutdown (an IAM call that hangs, say) ends as if the
/// process had died there, which every step is built for: the next holder
/// runs the step again. The worker then gives up its leases at once, so
/// another replica takes the workflow over without waiting for the lease
/// to run out. (A request's inline ensure is not the worker's: its lease
/// runs out after `SLRGOV_WORKFLOW_LEASE`, as after a crash.)
async fn unless_stopped<F: std::future::Future>(
    stop: &mut watch::Receiver<bool>,
    work: F,
) -> Option<F::Output> {
    tokio::select! {
        biased;
        _ = stop.changed() => {
            tracing::info!("stopping: a unit of background work is cut short; the next holder repeats it");
            None
        }
        output = work => Some(output),
    }
}

/// Writes the event of a unit of background work that failed once its
/// target was known, with the AWS calls it made that no change recorded.
pub(crate) async fn audit_failure(
    store: &dyn Store,
    unit: &RequestContext,
    error: &slrgov_domain::Error,
) {
    let Some((account, resource)) = unit.audit.target() else {
        return;
    };
    let (outcome, detail) = crate::status::failure_outcome(error);
    let event = slrgov_domain::audit::NewAuditEvent {
        account_id: account,
        resource,
        outcome,
        detail,
    };
    if let Err(error) = store.audit_append(unit, event).await {
        tracing::error!(error = %error.message, "cannot write the audit event of background work");
    }
}
