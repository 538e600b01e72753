//! `ctl sync <account|accounts/->`: SyncInstances, followed to its end
//! with a bar of the regions looked at; `--no-wait` prints the operation.

use clap::Args;
use prost::Message;
use serde_json::{Value, json};
use slrgov_proto::google::longrunning::operation::Result as OpResult;
use slrgov_proto::slrgov::v1 as pb;

use super::client::Client;
use super::operation::{follow, operation_json};
use super::output::{Ui, describe_rpc, rpc_status_json};
use super::{CtlError, parent};

/// The arguments of `ctl sync`.
#[derive(Debug, Args)]
pub(crate) struct SyncArgs {
    /// The account (`123456789012` or `accounts/123456789012`), or
    /// `accounts/-` (`-`) for every account the caller may change.
    account: String,

    /// Print the operation's name and return at once (see `ctl operation`).
    #[arg(long)]
    no_wait: bool,

    /// An idempotency key: a repeat with the same key returns the same
    /// operation.
    #[arg(long)]
    request_id: Option<String>,
}

pub(crate) async fn run(client: &Client, ui: &Ui, args: &SyncArgs) -> Result<(), CtlError> {
    let parent = parent(&args.account);
    let op = client
        .instances()
        .sync_instances(client.request(pb::SyncInstancesRequest {
            parent: parent.clone(),
            request_id: args.request_id.clone().unwrap_or_default(),
        }))
        .await
        .map_err(|status| CtlError::refused(format!("sync {parent}"), status))?
        .into_inner();
    if args.no_wait {
        if ui.json() {
            ui.print_json(&operation_json(&op));
        } else {
            println!("{}", op.name);
        }
        return Ok(());
    }
    ui.note(None, &format!("syncing {parent}: {}", op.name));
    let op = follow(client, ui, op).await?;
    let response = match &op.result {
        Some(OpResult::Response(any)) => {
            pb::SyncInstancesResponse::decode(any.value.as_slice()).unwrap_or_default()
        }
        Some(OpResult::Error(status)) => {
            if ui.json() {
                ui.print_json(&json!({"operation": op.name, "error": rpc_status_json(status)}));
            }
            eprintln!(
                "slr-governor ctl: sync {parent} failed ({}): {}",
                op.name,
                describe_rpc(status)
            );
            return Err(CtlError::Failed);
        }
        None => pb::SyncInstancesResponse::default(),
    };
    if ui.json() {
        let mut out = response_json(&response);
        out["operation"] = json!(op.name);
        ui.print_json(&out);
    } else {
        print!("synced {parent} ({})\n{}", op.name, summary_text(&response));
    }
    let failed = response
        .regions
        .iter()
        .filter(|r| r.error.is_some())
        .count();
    if failed > 0 {
        eprintln!("slr-governor ctl: {failed} region(s) could not be synced");
        return Err(CtlError::Failed);
    }
    Ok(())
}

/// What a sync found so far, for the bar: `3 seen, 3 created, ...`.
pub(crate) fn progress_line(p: &pb::SyncProgress) -> String {
    let mut line = format!(
        "{} seen, {} created, {} updated, {} vanished",
        p.instances_seen, p.instances_created, p.instances_updated, p.instances_vanished
    );
    if p.regions_failed > 0 {
        line.push_str(&format!(", {} region(s) failed", p.regions_failed));
    }
    line
}

pub(crate) fn progress_json(p: &pb::SyncProgress) -> Value {
    json!({
        "accounts_total": p.accounts_total,
        "regions_total": p.regions_total,
        "regions_done": p.regions_done,
        "regions_failed": p.regions_failed,
        "instances_seen": p.instances_seen,
        "instances_created": p.instances_created,
        "instances_updated": p.instances_updated,
        "instances_vanished": p.instances_vanished,
    })
}

/// A finished sync as JSON: the totals and every region looked at.
pub(crate) fn response_json(r: &pb::SyncInstancesResponse) -> Value {
    let regions: Vec<Value> = r
        .regions
        .iter()
        .map(|region| {
            json!({
                "account_id": region.account_id,
                "region": region.region,
                "instances_seen": region.instances_seen,
                "instances_created": region.instances_created,
                "instances_updated": region.instances_updated,
                "instances_vanished": region.instances_vanished,
                "error": region.error.as_ref().map(rpc_status_json),
            })
        })
        .collect();
    json!({
        "totals": progress_json(&r.totals.unwrap_or_default()),
        "regions": regions,
    })
}

/// A finished sync for people: the totals, then each failed region.
pub(crate) fn summary_text(r: &pb::SyncInstancesResponse) -> String {
    let t = r.totals.unwrap_or_default();
    let mut out = format!(
        "  accounts   {}\n  regions    {} looked at, {} failed\n  instances  {}\n",
        t.accounts_total,
        t.regions_done,
        t.regions_failed,
        progress_line(&pb::SyncProgress {
            regions_failed: 0,
            ..t
        }),
    );
    for region in &r.regions {
        if let Some(error) = &region.error {
            out.push_str(&format!(
                "  failed     {} {}: {}\n",
                region.account_id,
                region.region,
                describe_rpc(error)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_summaries() {
        let response = pb::SyncInstancesResponse {
            regions: vec![
                pb::sync_instances_response::RegionResult {
                    account_id: "123456789012".into(),
                    region: "us-east-1".into(),
                    instances_seen: 2,
                    instances_created: 2,
                    ..Default::default()
                },
                pb::sync_instances_response::RegionResult {
                    account_id: "123456789012".into(),
                    region: "af-south-1".into(),
                    error: Some(slrgov_proto::google::rpc::Status {
                        code: 7,
                        message: "denied".into(),
                        details: vec![],
                    }),
                    ..Default::default()
                },
            ],
            totals: Some(pb::SyncProgress {
                accounts_total: 1,
                regions_total: 2,
                regions_done: 2,
                regions_failed: 1,
                instances_seen: 2,
                instances_created: 2,
                ..Default::default()
            }),
        };
        let text = summary_text(&response);
        assert!(text.contains("2 looked at, 1 failed"), "{text}");
        assert!(
            text.contains("2 seen, 2 created, 0 updated, 0 vanished\n"),
            "{text}"
        );
        assert!(
            text.contains("af-south-1: PERMISSION_DENIED: denied"),
            "{text}"
        );
        let value = response_json(&response);
        assert_eq!(value["totals"]["instances_created"], 2);
        assert_eq!(value["regions"][1]["error"]["code"], "PERMISSION_DENIED");
        assert_eq!(value["regions"][0]["error"], Value::Null);
        assert_eq!(
            progress_line(&response.totals.unwrap_or_default()),
            "2 seen, 2 created, 0 updated, 0 vanished, 1 region(s) failed"
        );
    }
}
