//! `ctl ensure-roles --batch`: one BatchEnsureLinkedRoles operation, run
//! by the server's workers (it survives this client going away, and goes
//! at each account's shared IAM rate), followed to its end with a bar of
//! instances done; `--no-wait` prints the operation; `--validate-only`
//! says what it would do. The summary has the same counts as the
//! client-side run, with each failure's reason.

use prost::Message;
use serde_json::{Value, json};
use slrgov_proto::google::longrunning::Operation;
use slrgov_proto::google::longrunning::operation::Result as OpResult;
use slrgov_proto::slrgov::v1 as pb;

use super::client::Client;
use super::operation::{follow, metadata, operation_json};
use super::output::{Ui, describe_rpc, rpc_status_json};
use super::{CtlError, parent};

/// What `ensure-roles --batch` asks for.
pub(crate) struct BatchRequest<'a> {
    pub(crate) account: &'a str,
    pub(crate) filter: &'a str,
    pub(crate) description: &'a str,
    pub(crate) validate_only: bool,
    pub(crate) request_id: Option<&'a str>,
    pub(crate) no_wait: bool,
}

/// `12 done of 40: 3 created, ...`.
pub(crate) fn progress_line(p: &pb::BatchProgress) -> String {
    format!(
        "{} done of {}: {} created, {} adopted, {} restored, {} unchanged, {} failed{}",
        p.done,
        p.total,
        p.created,
        p.adopted,
        p.restored,
        p.unchanged,
        p.failed,
        if p.validate_only {
            " (validate only)"
        } else {
            ""
        }
    )
}

fn counts_json(parent: &str, op: &Operation, p: &pb::BatchProgress) -> Value {
    let mut by_reason: Vec<(&String, &i32)> = p.failed_by_reason.iter().collect();
    by_reason.sort();
    json!({
        "parent": parent,
        "operation": op.name,
        "validate_only": p.validate_only,
        "total": p.total,
        "done": p.done,
        "created": p.created,
        "adopted": p.adopted,
        "restored": p.restored,
        "unchanged": p.unchanged,
        "failed": p.failed,
        "failed_by_reason": by_reason.into_iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
    })
}

pub(crate) async fn run(client: &Client, ui: &Ui, args: BatchRequest<'_>) -> Result<(), CtlError> {
    let parent = parent(args.account);
    let op = client
        .linked_roles()
        .batch_ensure_linked_roles(client.request(pb::BatchEnsureLinkedRolesRequest {
            parent: parent.clone(),
            filter: args.filter.to_owned(),
            description: args.description.to_owned(),
            validate_only: args.validate_only,
            request_id: args.request_id.unwrap_or_default().to_owned(),
        }))
        .await
        .map_err(|status| CtlError::refused(format!("batch ensure of {parent}"), status))?
        .into_inner();
    if args.no_wait {
        if ui.json() {
            ui.print_json(&operation_json(&op));
        } else {
            println!("{}", op.name);
        }
        return Ok(());
    }
    ui.note(
        None,
        &format!("ensuring the roles of {parent}: {}", op.name),
    );
    let op = follow(client, ui, op).await?;
    let progress = metadata(&op)
        .and_then(|m| m.batch_progress)
        .unwrap_or_default();
    match &op.result {
        Some(OpResult::Response(any)) => {
            let response = pb::BatchEnsureLinkedRolesResponse::decode(any.value.as_slice())
                .unwrap_or_default();
            let totals = response.totals.unwrap_or(progress);
            if ui.json() {
                let mut out = counts_json(&parent, &op, &totals);
                out["failures"] = response
                    .failures
                    .iter()
                    .map(|f| {
                        json!({
                            "name": f.instance,
                            "error": f.error.as_ref().map(rpc_status_json),
                        })
                    })
                    .collect();
                ui.print_json(&out);
            } else {
                println!(
                    "ensured the roles of {parent} ({}): {}",
                    op.name,
                    progress_line(&totals)
                );
                for failure in &response.failures {
                    let why = failure.error.as_ref().map(describe_rpc).unwrap_or_default();
                    println!("  failed {}: {why}", failure.instance);
                }
            }
            if totals.failed > 0 {
                return Err(CtlError::Failed);
            }
            Ok(())
        }
        Some(OpResult::Error(status)) => {
            // Cancelled (or failed): what was done is in the metadata.
            if ui.json() {
                let mut out = counts_json(&parent, &op, &progress);
                out["error"] = rpc_status_json(status);
                ui.print_json(&out);
            }
            eprintln!(
                "slr-governor ctl: the batch ensure of {parent} ({}) ended: {}; {}",
                op.name,
                describe_rpc(status),
                progress_line(&progress)
            );
            Err(CtlError::Failed)
        }
        None => Err(CtlError::Failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_and_json() {
        let p = pb::BatchProgress {
            total: 5,
            done: 4,
            created: 1,
            adopted: 2,
            restored: 0,
            unchanged: 0,
            failed: 1,
            failed_by_reason: [("REGION_NOT_SUPPORTED".to_owned(), 1)]
                .into_iter()
                .collect(),
            validate_only: true,
        };
        assert_eq!(
            progress_line(&p),
            "4 done of 5: 1 created, 2 adopted, 0 restored, 0 unchanged, 1 failed (validate only)"
        );
        let op = Operation {
            name: "operations/x".into(),
            ..Default::default()
        };
        let value = counts_json("accounts/-", &op, &p);
        assert_eq!(value["failed_by_reason"]["REGION_NOT_SUPPORTED"], 1);
        assert_eq!(value["operation"], "operations/x");
        assert_eq!(value["validate_only"], true);
    }
}
