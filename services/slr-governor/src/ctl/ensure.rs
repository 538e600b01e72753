//! `ctl ensure-roles <account|accounts/->`: EnsureLinkedRole of every
//! instance ListInstances returns (a filter narrows them), a few at a
//! time, past failures, with a bar and a summary of what each ensure did.
//!
//! Client-side, each instance is one call (its role ARN in the summary),
//! retried with the same request id while the server asks (UNAVAILABLE,
//! RESOURCE_EXHAUSTED). A refusal that every call would get
//! (UNAUTHENTICATED, PERMISSION_DENIED) stops the job. `--batch` runs one
//! server-side BatchEnsureLinkedRoles instead (`batch.rs`).

use std::collections::BTreeMap;

use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};
use slrgov_proto::slrgov::v1 as pb;

use super::client::{Client, retrying};
use super::operation::state_name;
use super::output::{Ui, code_name, reason};
use super::{CtlError, parent};

/// The arguments of `ctl ensure-roles`.
#[derive(Debug, Args)]
pub(crate) struct EnsureArgs {
    /// The account (`123456789012` or `accounts/123456789012`), or
    /// `accounts/-` (`-`) for every account the caller may see.
    account: String,

    /// A ListInstances filter, e.g. `region = "us-east-1" AND
    /// linked_role_state = ABSENT`.
    #[arg(long, default_value = "")]
    filter: String,

    /// The description of each role the service creates (an adopted role
    /// keeps its own).
    #[arg(long, default_value = "")]
    description: String,

    /// How many ensures run at once (client-side runs).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    concurrency: u16,

    /// Run as one server-side BatchEnsureLinkedRoles operation: the
    /// server's workers ensure the instances (it goes on if this client
    /// stops, resumes after a restart, and can be cancelled with
    /// CancelOperation), at each account's IAM rate.
    #[arg(long)]
    batch: bool,

    /// With `--batch`: say what would be done, changing nothing.
    #[arg(long, requires = "batch")]
    validate_only: bool,

    /// With `--batch`: print the operation's name and return at once.
    #[arg(long, requires = "batch")]
    no_wait: bool,

    /// With `--batch`: an idempotency key; a repeat returns the same
    /// operation.
    #[arg(long, requires = "batch")]
    request_id: Option<String>,
}

/// What one ensure did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The service created the role.
    Created,
    /// The role Connect links to the instance existed and was taken over.
    Adopted,
    /// The role Connect links to the instance was gone, and made again.
    Restored,
    /// The role was ACTIVE before the ensure.
    Unchanged,
    /// The call was refused: the gRPC code, its reason, the message.
    Failed {
        code: &'static str,
        reason: String,
        message: String,
    },
}

impl Outcome {
    fn name(&self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Adopted => "adopted",
            Outcome::Restored => "restored",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// What an ensure's answer says it did, given the state before.
fn outcome(before: i32, role: &pb::LinkedRole) -> Outcome {
    if before == pb::linked_role::State::Active as i32 {
        Outcome::Unchanged
    } else if role.restored {
        Outcome::Restored
    } else if role.adopted {
        Outcome::Adopted
    } else {
        Outcome::Created
    }
}

/// One instance's result.
struct Done {
    name: String,
    outcome: Outcome,
    role: Option<pb::LinkedRole>,
}

/// The counts of every outcome, failures by reason.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    created: usize,
    adopted: usize,
    restored: usize,
    unchanged: usize,
    failed: BTreeMap<String, usize>,
}

impl Tally {
    fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Created => self.created += 1,
            Outcome::Adopted => self.adopted += 1,
            Outcome::Restored => self.restored += 1,
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::Failed { reason, .. } => *self.failed.entry(reason.clone()).or_default() += 1,
        }
    }

    fn failed(&self) -> usize {
        self.failed.values().sum()
    }

    fn line(&self) -> String {
        format!(
            "{} created, {} adopted, {} restored, {} unchanged, {} failed",
            self.created,
            self.adopted,
            self.restored,
            self.unchanged,
            self.failed()
        )
    }
}

pub(crate) async fn run(client: &Client, ui: &Ui, args: &EnsureArgs) -> Result<(), CtlError> {
    if args.batch {
        return super::batch::run(
            client,
            ui,
            super::batch::BatchRequest {
                account: &args.account,
                filter: &args.filter,
                description: &args.description,
                validate_only: args.validate_only,
                request_id: args.request_id.as_deref(),
                no_wait: args.no_wait,
            },
        )
        .await;
    }
    let parent = parent(&args.account);
    let instances = client.instances_of(&parent, &args.filter).await?;
    let total = instances.len();
    let bar = ui.bar("ensure", Some(total as u64));
    let mut tally = Tally::default();
    let mut results: Vec<Done> = Vec::with_capacity(total);
    let mut calls = futures::stream::iter(instances)
        .map(|instance| ensure_one(client, instance, &args.description))
        .buffer_unordered(usize::from(args.concurrency));
    while let Some(done) = calls.next().await {
        let done = match done {
            Ok(done) => done,
            Err(status) => {
                bar.abandon();
                return Err(CtlError::refused(
                    format!("ensure the roles of {parent}"),
                    status,
                ));
            }
        };
        tally.add(&done.outcome);
        bar.inc(1);
        bar.set_message(tally.line());
        results.push(done);
    }
    bar.finish();
    results.sort_by(|a, b| a.name.cmp(&b.name));
    if ui.json() {
        ui.print_json(&summary_json(&parent, &tally, &results));
    } else {
        print!("{}", summary_text(&parent, &tally, &results));
    }
    if tally.failed() > 0 {
        return Err(CtlError::Failed);
    }
    Ok(())
}

/// Ensures the role of `instance`; a refusal every call would get is the
/// error that stops the job.
async fn ensure_one(
    client: &Client,
    instance: pb::Instance,
    description: &str,
) -> Result<Done, tonic::Status> {
    let name = format!("{}/linkedRole", instance.name);
    // One request id for every attempt at this instance: an ensure answered
    // UNAVAILABLE goes on in the background, and a repeat with the same id
    // joins it and gets its result (AIP-155), never a second ensure.
    let request_id = uuid::Uuid::new_v4().to_string();
    let answer = retrying(|| {
        let mut linked_roles = client.linked_roles();
        let request = client.request(pb::EnsureLinkedRoleRequest {
            name: name.clone(),
            description: description.to_owned(),
            request_id: request_id.clone(),
            ..Default::default()
        });
        async move { linked_roles.ensure_linked_role(request).await }
    })
    .await;
    match answer {
        Ok(role) => {
            let role = role.into_inner();
            Ok(Done {
                outcome: outcome(instance.linked_role_state, &role),
                name,
                role: Some(role),
            })
        }
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
            ) =>
        {
            Err(status)
        }
        Err(status) => {
            let code = code_name(status.code() as i32);
            Ok(Done {
                name,
                outcome: Outcome::Failed {
                    code,
                    reason: reason(&status).unwrap_or_else(|| code.to_owned()),
                    message: status.message().to_owned(),
                },
                role: None,
            })
        }
    }
}

fn summary_json(parent: &str, tally: &Tally, results: &[Done]) -> Value {
    let results: Vec<Value> = results
        .iter()
        .map(|done| {
            let mut item = json!({"name": done.name, "outcome": done.outcome.name()});
            if let Some(role) = &done.role {
                item["state"] = json!(state_name(role.state));
                item["role_name"] = json!(role.role_name);
                item["role_arn"] = json!(role.role_arn);
            }
            if let Outcome::Failed {
                code,
                reason,
                message,
            } = &done.outcome
            {
                item["error"] = json!({"code": code, "reason": reason, "message": message});
            }
            item
        })
        .collect();
    json!({
        "parent": parent,
        "total": results.len(),
        "created": tally.created,
        "adopted": tally.adopted,
        "restored": tally.restored,
        "unchanged": tally.unchanged,
        "failed": tally.failed(),
        "failed_by_reason": tally.failed,
        "results": results,
    })
}

fn summary_text(parent: &str, tally: &Tally, results: &[Done]) -> String {
    let mut out = format!(
        "ensured {} linked role(s) of {parent}: {}\n",
        results.len(),
        tally.line()
    );
    for done in results {
        if let Outcome::Failed {
            code,
            reason,
            message,
        } = &done.outcome
        {
            out.push_str(&format!(
                "  failed {}: {code} {reason}: {message}\n",
                done.name
            ));
        }
    }
    for (reason, count) in &tally.failed {
        out.push_str(&format!("  failed by reason {reason}: {count}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::linked_role::State;

    fn role(adopted: bool, restored: bool) -> pb::LinkedRole {
        pb::LinkedRole {
            state: State::Active as i32,
            adopted,
            restored,
            ..Default::default()
        }
    }

    #[test]
    fn outcomes_from_the_answer() {
        let absent = State::Absent as i32;
        assert_eq!(outcome(absent, &role(false, false)), Outcome::Created);
        assert_eq!(outcome(absent, &role(true, false)), Outcome::Adopted);
        assert_eq!(outcome(absent, &role(true, true)), Outcome::Restored);
        assert_eq!(
            outcome(State::Deleted as i32, &role(false, false)),
            Outcome::Created
        );
        assert_eq!(
            outcome(State::Active as i32, &role(true, false)),
            Outcome::Unchanged
        );
    }

    #[test]
    fn tallies_and_summaries() {
        let failed = |reason: &str| Outcome::Failed {
            code: "FAILED_PRECONDITION",
            reason: reason.into(),
            message: "no".into(),
        };
        let results = vec![
            Done {
                name: "a".into(),
                outcome: Outcome::Created,
                role: Some(role(false, false)),
            },
            Done {
                name: "b".into(),
                outcome: failed("REGION_NOT_SUPPORTED"),
                role: None,
            },
            Done {
                name: "c".into(),
                outcome: failed("REGION_NOT_SUPPORTED"),
                role: None,
            },
            Done {
                name: "d".into(),
                outcome: Outcome::Adopted,
                role: Some(role(true, false)),
            },
        ];
        let mut tally = Tally::default();
        for done in &results {
            tally.add(&done.outcome);
        }
        assert_eq!(tally.failed(), 2);
        assert_eq!(
            tally.line(),
            "1 created, 1 adopted, 0 restored, 0 unchanged, 2 failed"
        );
        let value = summary_json("accounts/-", &tally, &results);
        assert_eq!(value["total"], 4);
        assert_eq!(value["failed_by_reason"]["REGION_NOT_SUPPORTED"], 2);
        assert_eq!(value["results"][0]["state"], "ACTIVE");
        assert_eq!(
            value["results"][1]["error"]["reason"],
            "REGION_NOT_SUPPORTED"
        );
        let text = summary_text("accounts/-", &tally, &results);
        assert!(
            text.starts_with("ensured 4 linked role(s) of accounts/-: 1 created"),
            "{text}"
        );
        assert!(
            text.contains("  failed b: FAILED_PRECONDITION REGION_NOT_SUPPORTED: no\n"),
            "{text}"
        );
        assert!(
            text.contains("  failed by reason REGION_NOT_SUPPORTED: 2\n"),
            "{text}"
        );
    }
}
