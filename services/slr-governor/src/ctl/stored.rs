//! `ctl findings --stored`: the findings the reconciler stored
//! (FindingService.ListFindings, every page), with no IAM call: a table of
//! code, severity, open or resolved, target and last seen time (JSON: a
//! list of findings as the API returns them).

use serde_json::{Value, json};
use slrgov_proto::slrgov::v1 as pb;

use super::client::{Client, retrying};
use super::output::{Ui, time};
use super::{CtlError, parent};

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

pub(crate) async fn run(
    client: &Client,
    ui: &Ui,
    account: &str,
    filter: &str,
) -> Result<(), CtlError> {
    let parent = parent(account);
    let mut findings = Vec::new();
    let mut token = String::new();
    loop {
        let page = retrying(|| {
            let mut service = client.findings();
            let request = client.request(pb::ListFindingsRequest {
                parent: parent.clone(),
                filter: filter.to_owned(),
                page_size: 1000,
                page_token: token.clone(),
            });
            async move { service.list_findings(request).await }
        })
        .await
        .map_err(|status| CtlError::refused(format!("list the findings of {parent}"), status))?
        .into_inner();
        findings.extend(page.findings);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    if ui.json() {
        ui.print_json(&Value::Array(findings.iter().map(finding_json).collect()));
    } else {
        print!("{}", table(&findings));
    }
    Ok(())
}

fn finding_json(f: &pb::Finding) -> Value {
    json!({
        "name": f.name,
        "code": code_name(f.code),
        "severity": severity_name(f.severity),
        "target": f.target,
        "subject": f.subject,
        "message": f.message,
        "first_seen_time": time(f.first_seen_time.as_ref()),
        "last_seen_time": time(f.last_seen_time.as_ref()),
        "resolve_time": time(f.resolve_time.as_ref()),
    })
}

/// CODE, SEVERITY, STATE (open / resolved), TARGET, LAST SEEN.
fn table(findings: &[pb::Finding]) -> String {
    let mut lines = vec![[
        "CODE".to_owned(),
        "SEVERITY".to_owned(),
        "STATE".to_owned(),
        "TARGET".to_owned(),
        "LAST SEEN".to_owned(),
    ]];
    for f in findings {
        lines.push([
            code_name(f.code).to_owned(),
            severity_name(f.severity).to_owned(),
            if f.resolve_time.is_some() {
                "resolved"
            } else {
                "open"
            }
            .to_owned(),
            f.target.clone(),
            f.last_seen_time
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string),
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for [a, b, c, d, e] in &lines {
        out.push_str(&format!(
            "{a:<w0$}  {b:<w1$}  {c:<w2$}  {d:<w3$}  {e}\n",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::inspection::finding::{Code, Severity};

    #[test]
    fn stored_findings_as_a_table_and_json() {
        let f = pb::Finding {
            name: "accounts/123456789012/findings/ab".into(),
            code: Code::OrphanRole as i32,
            severity: Severity::Warning as i32,
            target: "arn:aws:iam::123456789012:role/x".into(),
            resolve_time: Some(prost_types::Timestamp {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        };
        let text = table(std::slice::from_ref(&f));
        assert!(text.starts_with("CODE "), "{text}");
        assert!(text.contains("ORPHAN_ROLE  WARNING   resolved"), "{text}");
        let value = finding_json(&f);
        assert_eq!(value["code"], "ORPHAN_ROLE");
        assert_eq!(value["resolve_time"], "1970-01-01T00:00:01Z");
    }
}
