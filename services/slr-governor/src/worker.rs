//! The background worker: resumes ensures whose process died, and drives
//! running operations (retirements) to the end. Each replica runs one; they share the work through leases on the
//! operation rows (`FOR UPDATE SKIP LOCKED` on Postgres), and a dead
//! replica's operations are taken over when its leases run out. The
//! worker acts for every account, with an explicit, logged scope.

use std::time::Duration;

use slrgov_domain::RequestContext;
use tokio::sync::watch;
use tracing::Instrument;

use crate::lifecycle::Lifecycle;

/// How long a claimed operation is held before another replica may take it.
const LEASE: Duration = Duration::from_secs(30);
/// How long a resume that failed waits before it is tried again.
const RESUME_BACKOFF: Duration = Duration::from_secs(5);
/// How often the worker looks for due work.
const TICK: Duration = Duration::from_millis(200);

/// Runs until `stop` changes, then gives up its leases so another replica
/// takes the work over at once.
pub async fn run(lifecycle: Lifecycle, owner: String, mut stop: watch::Receiver<bool>) {
    let mut ctx = RequestContext::for_worker("operations");
    // The owner (process and instance) in every correlation id of this
    // worker, so that its audit events and logs say which replica did the
    // work.
    ctx.correlation_id = format!("{}-{owner}", ctx.correlation_id);
    tracing::info!(owner, "background worker started: acting for every account");
    let store = lifecycle.store().clone();
    let mut retry_at: std::collections::HashMap<
        slrgov_domain::names::InstanceKey,
        tokio::time::Instant,
    > = std::collections::HashMap::new();
    'work: loop {
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(TICK) => {}
        }
        // Ensures whose process died: resume them (the claim decides who).
        match store.linked_role_list_stale(&ctx, 8).await {
            Ok(stale) => {
                let now = tokio::time::Instant::now();
                retry_at.retain(|_, at| *at > now);
                for key in stale {
                    if retry_at.contains_key(&key) {
                        continue;
                    }
                    // One unit of work: its own audit trail, its AWS calls
                    // noted in it and written with the change they cause.
                    let unit = ctx.unit_of_work("resume");
                    let Some(result) = unless_stopped(
                        &mut stop,
                        slrgov_aws::audit::recording(
                            unit.audit.clone(),
                            lifecycle.resume(&unit, &key).instrument(unit.span.clone()),
                        ),
                    )
                    .await
                    else {
                        break 'work;
                    };
                    // A resume that keeps failing before it reaches AWS is
                    // logged, not audited every few seconds; one whose AWS
                    // calls no change recorded is audited with them.
                    if let Err(error) = &result
                        && unit.audit.pending_calls() > 0
                    {
                        audit_failure(&*store, &unit, error)
                            .instrument(unit.span.clone())
                            .await;
                    }
                    if result.is_err() {
                        // Failures before the claim (region, STS) leave the
                        // row as it was: wait before trying it again.
                        retry_at.insert(key.clone(), now + RESUME_BACKOFF);
                    }
                    match result {
                        Ok(role) => {
                            tracing::info!(instance = %key, state = %role.state, "resumed an ensure")
                        }
                        Err(error) => {
                            tracing::warn!(instance = %key, error = %error.message, "could not resume an ensure")
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(error = %error.message, "cannot list stale workflows"),
        }
        let due = match store.operation_claim_due(&ctx, &owner, LEASE, 8).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(error = %error.message, "cannot claim background work");
                continue;
            }
        };
        for operation in due {
            let unit = ctx.unit_of_work("advance");
            tracing::debug!(operation = %operation.operation_id, "advancing an operation");
            unit.audit
                .set_target(&operation.account_id, &operation.key().linked_role_name());
            let Some(step) = unless_stopped(
                &mut stop,
                slrgov_aws::audit::recording(
                    unit.audit.clone(),
                    lifecycle
                        .advance(&unit, &operation)
                        .instrument(unit.span.clone()),
                ),
            )
            .await
            else {
                break 'work;
            };
            tracing::debug!(operation = %operation.operation_id, ?step, "operation step");
            if let Err(error) = store
                .operation_step(&unit, &operation.operation_id, &owner, step)
                .instrument(unit.span.clone())
                .await
            {
                tracing::warn!(operation = %operation.operation_id, error = %error.message, "cannot record the step");
                audit_failure(&*store, &unit, &error)
                    .instrument(unit.span.clone())
                    .await;
            }
        }
    }
    if let Err(error) = store.operation_release_all(&ctx, &owner).await {
        tracing::warn!(error = %error.message, "cannot release the leases at shutdown");
    }
    tracing::info!(owner, "background worker stopped; leases released");
}

/// Runs one unit of work unless the worker is told to stop first. A unit
/// cut short at shutdown (an IAM call that hangs, say) ends as if the
/// process had died there, which every step is built for: the next claim
/// repeats it. The worker then gives up its leases at once, so another
/// replica takes the operation over without waiting for the lease to run
/// out. (An ensure's claim on a linked role is not a lease of the worker's:
/// it runs out after `SLRGOV_WORKFLOW_LEASE`, as after a crash.)
async fn unless_stopped<F: std::future::Future>(
    stop: &mut watch::Receiver<bool>,
    work: F,
) -> Option<F::Output> {
    tokio::select! {
        biased;
        _ = stop.changed() => {
            tracing::info!("stopping: a unit of background work is cut short; the next claim repeats it");
            None
        }
        output = work => Some(output),
    }
}

/// Writes the event of a unit of background work that failed once its
/// target was known, with the AWS calls it made that no change recorded.
async fn audit_failure(
    store: &dyn slrgov_store::Store,
    unit: &RequestContext,
    error: &slrgov_domain::Error,
) {
    let Some((account, resource)) = unit.audit.target() else {
        return;
    };
    let (outcome, detail) = crate::api::failure_outcome(error);
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
