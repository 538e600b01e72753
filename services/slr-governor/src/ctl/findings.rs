//! `ctl findings <account|accounts/->`: InspectLinkedRole of every
//! instance, a few at a time, as a table of instance, role and finding
//! codes (JSON: a list, one entry per instance). `--stored` lists what the
//! reconciler stored instead (`stored.rs`).

use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};
use slrgov_proto::slrgov::v1 as pb;

use super::client::{Client, retrying};
use super::operation::state_name;
use super::output::{Ui, describe, status_json};
use super::{CtlError, parent};

/// The arguments of `ctl findings`.
#[derive(Debug, Args)]
pub(crate) struct FindingsArgs {
    /// The account (`123456789012` or `accounts/123456789012`), or
    /// `accounts/-` (`-`) for every account the caller may see.
    account: String,

    /// A ListInstances filter, e.g. `linked_role_state = ACTIVE`.
    #[arg(long, default_value = "")]
    filter: String,

    /// How many inspections run at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    concurrency: u16,

    /// List the findings the reconciler stored (ListFindings: open and
    /// resolved, with first and last seen times), with no IAM call,
    /// instead of inspecting every role now.
    #[arg(long, conflicts_with = "filter")]
    stored: bool,

    /// With `--stored`: a ListFindings filter, e.g. `severity = ERROR AND
    /// resolved = false`.
    #[arg(long, requires = "stored", default_value = "")]
    finding_filter: String,
}

/// One instance's inspection, or why there is none.
struct Row {
    instance: pb::Instance,
    inspection: Result<pb::Inspection, tonic::Status>,
}

pub(crate) async fn run(client: &Client, ui: &Ui, args: &FindingsArgs) -> Result<(), CtlError> {
    if args.stored {
        return super::stored::run(client, ui, &args.account, &args.finding_filter).await;
    }
    let parent = parent(&args.account);
    let instances = client.instances_of(&parent, &args.filter).await?;
    let bar = ui.bar("inspect", Some(instances.len() as u64));
    let mut rows: Vec<Row> = Vec::with_capacity(instances.len());
    let mut calls = futures::stream::iter(instances)
        .map(|instance| inspect(client, instance))
        .buffer_unordered(usize::from(args.concurrency));
    while let Some(row) = calls.next().await {
        if let Err(status) = &row.inspection
            && matches!(
                status.code(),
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
            )
        {
            bar.abandon();
            return Err(CtlError::refused(
                format!("inspect {}/linkedRole", row.instance.name),
                status.clone(),
            ));
        }
        bar.inc(1);
        rows.push(row);
    }
    bar.finish_and_clear();
    rows.sort_by(|a, b| a.instance.name.cmp(&b.instance.name));
    if ui.json() {
        ui.print_json(&Value::Array(rows.iter().map(row_json).collect()));
    } else {
        print!("{}", table(&rows));
    }
    let failed = rows.iter().filter(|r| r.inspection.is_err()).count();
    if failed > 0 {
        eprintln!("slr-governor ctl: {failed} inspection(s) failed");
        return Err(CtlError::Failed);
    }
    Ok(())
}

async fn inspect(client: &Client, instance: pb::Instance) -> Row {
    let name = format!("{}/linkedRole", instance.name);
    let inspection = retrying(|| {
        let mut linked_roles = client.linked_roles();
        let request = client.request(pb::InspectLinkedRoleRequest { name: name.clone() });
        async move { linked_roles.inspect_linked_role(request).await }
    })
    .await
    .map(tonic::Response::into_inner);
    Row {
        instance,
        inspection,
    }
}

fn code_name(code: i32) -> &'static str {
    pb::inspection::finding::Code::try_from(code)
        .map(|c| c.as_str_name())
        .unwrap_or("CODE_UNSPECIFIED")
}

fn severity_name(severity: i32) -> &'static str {
    pb::inspection::finding::Severity::try_from(severity)
        .map(|s| s.as_str_name())
        .unwrap_or("SEVERITY_UNSPECIFIED")
}

fn row_json(row: &Row) -> Value {
    let mut item = json!({
        "instance": row.instance.name,
        "instance_alias": row.instance.instance_alias,
        "region": row.instance.region,
    });
    match &row.inspection {
        Ok(inspection) => {
            let role = inspection.linked_role.clone().unwrap_or_default();
            item["role_name"] = json!(role.role_name);
            item["state"] = json!(state_name(role.state));
            item["healthy"] = json!(inspection.healthy);
            item["findings"] = inspection
                .findings
                .iter()
                .map(|f| {
                    json!({
                        "code": code_name(f.code),
                        "severity": severity_name(f.severity),
                        "message": f.message,
                        "feature": f.feature,
                        "action": f.action,
                        "resource": f.resource,
                    })
                })
                .collect();
            item["error"] = Value::Null;
        }
        Err(status) => {
            item["findings"] = json!([]);
            item["error"] = status_json(status);
        }
    }
    item
}

/// The finding codes of an inspection, each once with its count:
/// `ROLE_UNUSED, PERMISSION_MISSING(3)`.
fn codes(inspection: &pb::Inspection) -> String {
    let mut counted: Vec<(&'static str, usize)> = Vec::new();
    for finding in &inspection.findings {
        let code = code_name(finding.code);
        match counted.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => counted.push((code, 1)),
        }
    }
    if counted.is_empty() {
        return "-".into();
    }
    counted
        .iter()
        .map(|(code, n)| {
            if *n > 1 {
                format!("{code}({n})")
            } else {
                (*code).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table: INSTANCE, ROLE, HEALTHY, FINDINGS; a failed inspection shows
/// its error as its findings.
fn table(rows: &[Row]) -> String {
    let mut lines = vec![[
        "INSTANCE".to_owned(),
        "ROLE".to_owned(),
        "HEALTHY".to_owned(),
        "FINDINGS".to_owned(),
    ]];
    for row in rows {
        let instance = row
            .instance
            .name
            .strip_prefix("accounts/")
            .unwrap_or(&row.instance.name)
            .replace("/instances/", "/");
        lines.push(match &row.inspection {
            Ok(inspection) => {
                let role = inspection
                    .linked_role
                    .as_ref()
                    .map(|r| r.role_name.clone())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "-".into());
                let healthy = if inspection.healthy { "yes" } else { "no" };
                [instance, role, healthy.into(), codes(inspection)]
            }
            Err(status) => [
                instance,
                "?".into(),
                "?".into(),
                format!("error: {}", describe(status)),
            ],
        });
    }
    let widths: Vec<usize> = (0..3)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for [a, b, c, d] in &lines {
        out.push_str(&format!(
            "{a:<w0$}  {b:<w1$}  {c:<w2$}  {d}\n",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::inspection::finding::{Code, Severity};

    fn finding(code: Code, severity: Severity) -> pb::inspection::Finding {
        pb::inspection::Finding {
            code: code as i32,
            severity: severity as i32,
            message: "m".into(),
            ..Default::default()
        }
    }

    #[test]
    fn findings_table_and_json() {
        let inspection = pb::Inspection {
            linked_role: Some(pb::LinkedRole {
                role_name: "AWSServiceRoleForconnect_x".into(),
                state: pb::linked_role::State::Active as i32,
                ..Default::default()
            }),
            healthy: false,
            findings: vec![
                finding(Code::RoleUnused, Severity::Info),
                finding(Code::PermissionMissing, Severity::Error),
                finding(Code::PermissionMissing, Severity::Error),
            ],
            ..Default::default()
        };
        let rows = vec![
            Row {
                instance: pb::Instance {
                    name: "accounts/123456789012/instances/aaa".into(),
                    ..Default::default()
                },
                inspection: Ok(inspection),
            },
            Row {
                instance: pb::Instance {
                    name: "accounts/123456789012/instances/bbb".into(),
                    ..Default::default()
                },
                inspection: Err(tonic::Status::unavailable("IAM is down")),
            },
        ];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("INSTANCE"), "{text}");
        assert!(
            lines[1].starts_with("123456789012/aaa  AWSServiceRoleForconnect_x  no "),
            "{text}"
        );
        assert!(
            lines[1].ends_with("ROLE_UNUSED, PERMISSION_MISSING(2)"),
            "{text}"
        );
        assert!(
            lines[2].ends_with("error: UNAVAILABLE: IAM is down"),
            "{text}"
        );
        let value = row_json(&rows[0]);
        assert_eq!(value["findings"][1]["code"], "PERMISSION_MISSING");
        assert_eq!(value["findings"][1]["severity"], "ERROR");
        assert_eq!(value["state"], "ACTIVE");
        assert_eq!(row_json(&rows[1])["error"]["code"], "UNAVAILABLE");
    }
}
