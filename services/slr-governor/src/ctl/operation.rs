//! `ctl operation <name> [--wait]`, and following any operation to its
//! end (WaitOperation in short steps) with a bar drawn from its metadata.

use std::time::Duration;

use clap::Args;
use indicatif::ProgressBar;
use prost::Message;
use serde_json::{Value, json};
use slrgov_proto::google::longrunning::{
    GetOperationRequest, Operation, WaitOperationRequest, operation::Result as OpResult,
};
use slrgov_proto::slrgov::v1 as pb;

use super::client::{Client, retrying};
use super::output::{Ui, describe_rpc, rpc_status_json, set_length, time};
use super::{CtlError, operation_name, sync};

/// How long one WaitOperation waits before the bar is drawn again.
const STEP: Duration = Duration::from_secs(1);

/// The arguments of `ctl operation`.
#[derive(Debug, Args)]
pub(crate) struct OperationArgs {
    /// `operations/{id}`, or the id alone.
    name: String,

    /// Follow the operation until it is done.
    #[arg(long)]
    wait: bool,
}

pub(crate) async fn run(client: &Client, ui: &Ui, args: &OperationArgs) -> Result<(), CtlError> {
    let name = operation_name(&args.name);
    let mut op = client
        .operations()
        .get_operation(client.request(GetOperationRequest { name: name.clone() }))
        .await
        .map_err(|status| CtlError::refused(format!("get {name}"), status))?
        .into_inner();
    if args.wait {
        op = follow(client, ui, op).await?;
    }
    if ui.json() {
        ui.print_json(&operation_json(&op));
    } else {
        print!("{}", operation_text(&op));
    }
    match op.result {
        Some(OpResult::Error(_)) => Err(CtlError::Failed),
        _ => Ok(()),
    }
}

/// Waits until `op` is done, drawing its progress; returns it done.
pub(crate) async fn follow(
    client: &Client,
    ui: &Ui,
    mut op: Operation,
) -> Result<Operation, CtlError> {
    let meta = metadata(&op);
    let label = meta
        .as_ref()
        .map(|m| format!("{} {}", m.verb, m.target))
        .unwrap_or_else(|| op.name.clone());
    let bar = ui.bar(label.trim(), None);
    loop {
        draw(&bar, &op);
        if op.done {
            bar.finish();
            return Ok(op);
        }
        let name = op.name.clone();
        op = retrying(|| {
            let mut operations = client.operations();
            let request = client.request(WaitOperationRequest {
                name: name.clone(),
                timeout: prost_types::Duration::try_from(STEP).ok(),
            });
            async move { operations.wait_operation(request).await }
        })
        .await
        .map_err(|status| {
            bar.abandon();
            CtlError::refused(format!("wait for {name}"), status)
        })?
        .into_inner();
    }
}

/// Shows `op`'s progress on `bar`: regions done of the total for a sync,
/// instances done for a batch, else the status message.
fn draw(bar: &ProgressBar, op: &Operation) {
    let Some(meta) = metadata(op) else { return };
    match (meta.sync_progress, meta.batch_progress) {
        (Some(p), _) if p.regions_total > 0 => {
            set_length(bar, u64::try_from(p.regions_total).unwrap_or(0));
            bar.set_position(u64::try_from(p.regions_done).unwrap_or(0));
            bar.set_message(sync::progress_line(&p));
        }
        (_, Some(p)) if p.total > 0 => {
            set_length(bar, u64::try_from(p.total).unwrap_or(0));
            bar.set_position(u64::try_from(p.done).unwrap_or(0));
            bar.set_message(super::batch::progress_line(&p));
        }
        _ => bar.set_message(meta.status_message),
    }
}

/// The operation's metadata, when it is slr-governor's.
pub(crate) fn metadata(op: &Operation) -> Option<pb::OperationMetadata> {
    op.metadata
        .as_ref()
        .and_then(|any| pb::OperationMetadata::decode(any.value.as_slice()).ok())
}

/// The operation as one JSON object: its metadata, and its error or its
/// response decoded.
pub(crate) fn operation_json(op: &Operation) -> Value {
    let mut out = json!({"name": op.name, "done": op.done});
    if let Some(m) = metadata(op) {
        out["metadata"] = json!({
            "verb": m.verb,
            "target": m.target,
            "status_message": m.status_message,
            "principal": m.principal,
            "request_id": m.request_id,
            "step": m.step,
            "attempt": m.attempt,
            "create_time": time(m.create_time.as_ref()),
            "end_time": time(m.end_time.as_ref()),
            "sync_progress": m.sync_progress.as_ref().map(sync::progress_json),
        });
    }
    match &op.result {
        Some(OpResult::Error(status)) => out["error"] = rpc_status_json(status),
        Some(OpResult::Response(any)) => out["response"] = response_json(any),
        None => {}
    }
    out
}

fn response_json(any: &prost_types::Any) -> Value {
    let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
    let mut out = match type_name {
        "slrgov.v1.SyncInstancesResponse" => {
            pb::SyncInstancesResponse::decode(any.value.as_slice())
                .map(|r| sync::response_json(&r))
                .unwrap_or_else(|_| json!({}))
        }
        "slrgov.v1.LinkedRole" => pb::LinkedRole::decode(any.value.as_slice())
            .map(|r| linked_role_json(&r))
            .unwrap_or_else(|_| json!({})),
        _ => json!({}),
    };
    out["@type"] = json!(type_name);
    out
}

/// The fields of a linked role a script looks at.
pub(crate) fn linked_role_json(role: &pb::LinkedRole) -> Value {
    json!({
        "name": role.name,
        "state": state_name(role.state),
        "role_name": role.role_name,
        "role_arn": role.role_arn,
        "description": role.description,
        "adopted": role.adopted,
        "restored": role.restored,
        "deletion_task_id": role.deletion_task_id,
        "etag": role.etag,
    })
}

/// `ACTIVE`, `ABSENT`, ... of a linked role state.
pub(crate) fn state_name(state: i32) -> &'static str {
    pb::linked_role::State::try_from(state)
        .map(|s| s.as_str_name())
        .unwrap_or("STATE_UNSPECIFIED")
}

/// The operation for people, one field a line.
pub(crate) fn operation_text(op: &Operation) -> String {
    let mut out = format!("{}\n", op.name);
    let mut field = |key: &str, value: &str| {
        if !value.is_empty() {
            out.push_str(&format!("  {key:<10} {value}\n"));
        }
    };
    if let Some(m) = metadata(op) {
        field("verb", &m.verb);
        field("target", &m.target);
        field("principal", &m.principal);
        field("status", &m.status_message);
        if !m.step.is_empty() {
            field("step", &format!("{} (attempt {})", m.step, m.attempt));
        }
        field(
            "created",
            &m.create_time.map(|t| t.to_string()).unwrap_or_default(),
        );
        field(
            "ended",
            &m.end_time.map(|t| t.to_string()).unwrap_or_default(),
        );
        if let Some(p) = m.sync_progress.filter(|_| !op.done) {
            field(
                "progress",
                &format!(
                    "{}/{} regions, {}",
                    p.regions_done,
                    p.regions_total,
                    sync::progress_line(&p)
                ),
            );
        }
    }
    field("done", if op.done { "yes" } else { "no" });
    match &op.result {
        Some(OpResult::Error(status)) => field("error", &describe_rpc(status)),
        Some(OpResult::Response(any)) => {
            let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
            field("response", type_name);
            if let Ok(r) = pb::LinkedRole::decode(any.value.as_slice())
                && type_name == "slrgov.v1.LinkedRole"
            {
                field("state", state_name(r.state));
                field("role", &r.role_name);
            }
            if type_name == "slrgov.v1.SyncInstancesResponse"
                && let Ok(r) = pb::SyncInstancesResponse::decode(any.value.as_slice())
            {
                out.push_str(&sync::summary_text(&r));
            }
        }
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use slrgov_proto::to_any;

    fn op(done: bool, result: Option<OpResult>) -> Operation {
        Operation {
            name: "operations/0192".into(),
            metadata: Some(to_any(&pb::OperationMetadata {
                verb: "retire".into(),
                target: "accounts/123456789012/instances/x/linkedRole".into(),
                status_message: "retire: done".into(),
                step: "record".into(),
                attempt: 1,
                ..Default::default()
            })),
            done,
            result,
        }
    }

    #[test]
    fn operations_as_json_and_text() {
        let role = pb::LinkedRole {
            state: pb::linked_role::State::Deleted as i32,
            role_name: "AWSServiceRoleForAmazonConnect_x".into(),
            ..Default::default()
        };
        let done = op(true, Some(OpResult::Response(to_any(&role))));
        let value = operation_json(&done);
        assert_eq!(value["done"], true);
        assert_eq!(value["metadata"]["verb"], "retire");
        assert_eq!(value["response"]["@type"], "slrgov.v1.LinkedRole");
        assert_eq!(value["response"]["state"], "DELETED");
        let text = operation_text(&done);
        assert!(text.contains("verb       retire"), "{text}");
        assert!(text.contains("state      DELETED"), "{text}");
        assert!(text.contains("step       record (attempt 1)"), "{text}");

        let failed = op(
            true,
            Some(OpResult::Error(slrgov_proto::google::rpc::Status {
                code: 9,
                message: "in use".into(),
                details: vec![],
            })),
        );
        assert_eq!(
            operation_json(&failed)["error"]["code"],
            "FAILED_PRECONDITION"
        );
        assert!(operation_text(&failed).contains("error      FAILED_PRECONDITION: in use"));
        let running = op(false, None);
        assert!(operation_text(&running).contains("done       no"));
        assert!(operation_json(&running).get("error").is_none());
    }
}
