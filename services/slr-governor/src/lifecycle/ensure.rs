//! EnsureLinkedRole: create an instance's role, or adopt the one that is
//! there, and never make two.
//!
//! The workflow's steps, each safe to run twice and each with its undo:
//!
//! | state (what has happened) | step run next | its action | undo of the step that led here |
//! | --- | --- | --- | --- |
//! | `Claimed` | `find` | GetRole of the role Connect names (legacy: ListRoles by the planned suffix): a role already there is adopted | the start: the record goes back to ABSENT |
//! | `Planned` | `create` | CreateServiceLinkedRole with the saved suffix and description; "has been taken" finds the role an earlier attempt made | nothing (find only read) |
//! | `Created` | `confirm` | GetRole until IAM shows the role (eventual consistency); it must be a Connect SLR | a role this workflow created is deleted |
//! | `Confirmed` | `record` | the role recorded ACTIVE (ROLE_OWNED_ELSEWHERE if another record holds it) | nothing (confirm only read) |
//!
//! Before the workflow starts, the request asks Amazon Connect which role it
//! links to the instance (the registry's view when a sync saw it within
//! [`super::connect::FRESH_FOR`], else DescribeInstance): that role's name
//! and suffix are the plan, saved with the inputs. Connect's role in IAM is
//! adopted with no mutating call; missing, it is created again with the
//! same suffix (the ARN Connect holds is valid again, `restored`); an
//! instance older than October 2018 that Connect names no role for gets the
//! deterministic legacy role; any other instance without a role is refused
//! (the service never creates a role nobody uses), as is one Connect does
//! not have (INSTANCE_NOT_IN_CONNECT), with zero IAM calls.
//!
//! The suffix is saved with the inputs before CreateServiceLinkedRole is
//! called, so a workflow resumed after a crash (by another request or any
//! replica's worker) asks IAM for the same name, with the description the
//! first caller gave, and finds the role the dead attempt made instead of
//! making a second.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use slrgov_aws::iam::{CONNECT_SERVICE, CONNECT_SLR_PATH};
use slrgov_aws::{DeletionStatus, IamApi, IamError, RoleInfo};
use slrgov_domain::model::{LinkedRole, ObservedRole};
use slrgov_domain::workflow::{Outcome, Undo, Workflow, WorkflowError, WorkflowKind};
use slrgov_domain::{Error, Reason};

use super::roles::{default_description, has_suffix, is_connect_slr, observed};
use super::steps::{StepEnv, failed, iam_failed, retry, undo_retry};

/// How many times `confirm` looks for a new role IAM does not show yet
/// (about two and a half minutes at the capped backoff): past that, the
/// ensure is undone.
const CONFIRM_ATTEMPTS: u32 = 20;

/// The inputs an ensure saves when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnsureInputs {
    /// The custom suffix to ask IAM for: the one of the role Connect names,
    /// or for a legacy instance 20 letters and digits derived from the
    /// instance (every attempt asks for the same name); `None`: Connect
    /// names the account's unsuffixed role.
    pub suffix: Option<String>,
    /// The role Amazon Connect links to the instance (`None`: a legacy
    /// instance Connect names no role for). Saved by this version on; a
    /// workflow saved before it has none and behaves as legacy.
    #[serde(default)]
    pub connect_role: Option<String>,
    /// The caller's description for a role the service creates (`None`:
    /// the default description).
    pub description: Option<String>,
}

/// What an ensure has done so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EnsureState {
    /// Started: the record is CREATING.
    Claimed,
    /// No role with the planned suffix existed.
    Planned,
    /// The role exists in IAM.
    Created {
        /// Its name, as IAM spells it.
        role_name: String,
        /// True when this workflow created it (false: adopted).
        created_by_us: bool,
    },
    /// IAM shows the role, and it is a Connect service-linked role.
    Confirmed {
        /// The role as IAM shows it.
        role: ObservedRole,
        /// True when this workflow created it.
        created_by_us: bool,
    },
}

/// The ensure workflow's steps.
pub struct EnsureWorkflow<'a> {
    env: StepEnv<'a>,
}

impl<'a> EnsureWorkflow<'a> {
    /// The steps of one ensure, acting with `env`.
    pub fn new(env: StepEnv<'a>) -> Self {
        EnsureWorkflow { env }
    }

    async fn find(&self, inputs: &EnsureInputs, attempt: u32) -> Outcome<EnsureState, LinkedRole> {
        let iam = match self.env.iam().await {
            Ok(iam) => iam,
            Err(error) => return failed(error, attempt),
        };
        if let Some(name) = &inputs.connect_role {
            // Exactly the role Connect names: adopted when IAM has it.
            return match iam.get_role(name).await {
                Ok(role) if is_connect_slr(&role) => Outcome::Next(EnsureState::Created {
                    role_name: role.role_name,
                    created_by_us: false,
                }),
                Ok(role) => Outcome::Fail(not_connect_slr(&role.role_name)),
                Err(IamError::NoSuchEntity(_)) => Outcome::Next(EnsureState::Planned),
                Err(error) => iam_failed("GetRole", error, attempt),
            };
        }
        let Some(suffix) = inputs.suffix.as_deref() else {
            return Outcome::Next(EnsureState::Planned);
        };
        match iam.list_roles(CONNECT_SLR_PATH).await {
            Ok(roles) => match roles.iter().find(|r| has_suffix(&r.role_name, suffix)) {
                // There before this workflow made anything: adopted.
                Some(role) => Outcome::Next(EnsureState::Created {
                    role_name: role.role_name.clone(),
                    created_by_us: false,
                }),
                None => Outcome::Next(EnsureState::Planned),
            },
            Err(error) => iam_failed("ListRoles", error, attempt),
        }
    }

    async fn create(
        &self,
        inputs: &EnsureInputs,
        attempt: u32,
    ) -> Outcome<EnsureState, LinkedRole> {
        let iam = match self.env.iam().await {
            Ok(iam) => iam,
            Err(error) => return failed(error, attempt),
        };
        let description = inputs
            .description
            .clone()
            .unwrap_or_else(|| default_description(&self.env.key));
        let created = |role_name: String, created_by_us: bool| {
            Outcome::Next(EnsureState::Created {
                role_name,
                created_by_us,
            })
        };
        let suffix = inputs.suffix.as_deref();
        if let Some(name) = &inputs.connect_role {
            // Exactly the role Connect names, or nothing: never another
            // role in its place.
            return match iam
                .create_service_linked_role(CONNECT_SERVICE, suffix, Some(&description))
                .await
            {
                Ok(role) => created(role.role_name, true),
                // `find` saw no such role: the one IAM has now is this
                // workflow's own (an attempt that died after the call).
                Err(IamError::NameTaken(_)) => match iam.get_role(name).await {
                    Ok(role) => created(role.role_name, true),
                    Err(IamError::NoSuchEntity(_)) => retry(
                        attempt,
                        format!("iam says {name} is taken but does not show it yet"),
                    ),
                    Err(error) => iam_failed("GetRole", error, attempt),
                },
                Err(IamError::SuffixNotAllowed(message)) => {
                    Outcome::Fail(WorkflowError::from(Error::failed_precondition(
                        Reason::FailedPrecondition,
                        format!(
                            "iam refuses the custom suffix of {name}, the role amazon connect names: it cannot be made again under that name ({message})"
                        ),
                    )))
                }
                Err(error) => iam_failed("CreateServiceLinkedRole", error, attempt),
            };
        }
        match iam
            .create_service_linked_role(CONNECT_SERVICE, suffix, Some(&description))
            .await
        {
            Ok(role) => created(role.role_name, true),
            // `find` saw no role with the suffix: the one IAM has now is
            // this workflow's own (an attempt that died after the call, or
            // whose answer was lost).
            Err(IamError::NameTaken(_)) if suffix.is_some() => match listed(&*iam, suffix).await {
                Ok(Some(role)) => created(role.role_name, true),
                Ok(None) => retry(
                    attempt,
                    "iam says the name is taken but does not list the role yet".into(),
                ),
                Err(error) => iam_failed("ListRoles", error, attempt),
            },
            // The unsuffixed role is the account's, shared: one there now
            // is adopted, never deleted by an undo.
            Err(IamError::NameTaken(_)) => match listed(&*iam, None).await {
                Ok(Some(role)) => created(role.role_name, false),
                Ok(None) => retry(
                    attempt,
                    "iam says the name is taken but lists no role yet".into(),
                ),
                Err(error) => iam_failed("ListRoles", error, attempt),
            },
            // Where custom suffixes are refused, the account has one Connect
            // role: create it, or adopt the one there (the oldest).
            Err(IamError::SuffixNotAllowed(_)) => match iam
                .create_service_linked_role(CONNECT_SERVICE, None, Some(&description))
                .await
            {
                Ok(role) => created(role.role_name, true),
                Err(IamError::NameTaken(_)) => match listed(&*iam, None).await {
                    Ok(Some(role)) => created(role.role_name, false),
                    Ok(None) => retry(
                        attempt,
                        "iam says the name is taken but lists no role yet".into(),
                    ),
                    Err(error) => iam_failed("ListRoles", error, attempt),
                },
                Err(error) => iam_failed("CreateServiceLinkedRole", error, attempt),
            },
            Err(error) => iam_failed("CreateServiceLinkedRole", error, attempt),
        }
    }

    async fn confirm(
        &self,
        inputs: &EnsureInputs,
        role_name: &str,
        created_by_us: bool,
        attempt: u32,
    ) -> Outcome<EnsureState, LinkedRole> {
        if let Some(name) = inputs.connect_role.as_deref().filter(|n| *n != role_name) {
            return Outcome::Fail(WorkflowError::from(Error::failed_precondition(
                Reason::FailedPrecondition,
                format!("the role {role_name} is not {name}, the role amazon connect names"),
            )));
        }
        let iam = match self.env.iam().await {
            Ok(iam) => iam,
            Err(error) => return failed(error, attempt),
        };
        match iam.get_role(role_name).await {
            Ok(role) if is_connect_slr(&role) => Outcome::Next(EnsureState::Confirmed {
                role: observed(&role),
                created_by_us,
            }),
            Ok(role) => Outcome::Fail(not_connect_slr(&role.role_name)),
            // IAM is eventually consistent: a new role can be invisible for
            // seconds.
            Err(IamError::NoSuchEntity(_)) if attempt < CONFIRM_ATTEMPTS => retry(
                attempt,
                format!("iam does not show the role {role_name} yet"),
            ),
            Err(IamError::NoSuchEntity(_)) => {
                Outcome::Fail(WorkflowError::from(Error::unavailable(
                    Reason::IamUnavailable,
                    format!("iam did not show the role {role_name} after {attempt} attempts"),
                    Duration::from_secs(2),
                )))
            }
            Err(error) => iam_failed("GetRole", error, attempt),
        }
    }

    async fn record(
        &self,
        inputs: &EnsureInputs,
        role: &ObservedRole,
        created_by_us: bool,
        attempt: u32,
    ) -> Outcome<EnsureState, LinkedRole> {
        // Made again with the name Connect holds: restored.
        let restored = created_by_us && inputs.connect_role.is_some();
        match self
            .env
            .store()
            .linked_role_activate(
                self.env.ctx,
                &self.env.fence,
                &self.env.key,
                role.clone(),
                !created_by_us,
                restored,
            )
            .await
        {
            Ok(role) => Outcome::Done(role),
            Err(error) => failed(error, attempt),
        }
    }

    /// Deletes the role this workflow created, and waits until IAM has;
    /// unless another instance record holds it now (where custom suffixes
    /// are refused every instance shares the one unsuffixed role, and
    /// another ensure may have adopted and recorded it meanwhile): that
    /// role is left as if this workflow had not created it.
    async fn delete_created(&self, role_name: &str, attempt: u32) -> Undo<EnsureState> {
        match self
            .env
            .store()
            .linked_role_held_elsewhere(self.env.ctx, &self.env.key, role_name)
            .await
        {
            Ok(None) => {}
            Ok(Some(holder)) => {
                tracing::info!(
                    role_name,
                    holder = %holder.linked_role_name(),
                    "an undone ensure keeps the role it created: another record holds it"
                );
                return Undo::Back(EnsureState::Planned);
            }
            Err(error) => return undo_retry(attempt, error.message),
        }
        let iam = match self.env.iam().await {
            Ok(iam) => iam,
            Err(error) => return undo_retry(attempt, error.message),
        };
        // Asked again while it runs, IAM answers with the same task.
        let task = match iam.delete_service_linked_role(role_name).await {
            Ok(task) => task,
            Err(IamError::NoSuchEntity(_)) => return Undo::Back(EnsureState::Planned),
            Err(error) if error.is_transient() => {
                return undo_retry(attempt, format!("iam DeleteServiceLinkedRole: {error}"));
            }
            Err(error) => {
                // The role keeps the instance's suffix: the next ensure
                // finds it and takes it, so it is not left for nobody.
                tracing::warn!(role_name, %error, "could not delete the role an undone ensure created");
                return Undo::Back(EnsureState::Planned);
            }
        };
        match iam.deletion_status(&task).await {
            Ok(DeletionStatus::Succeeded) | Err(IamError::NoSuchEntity(_)) => {
                Undo::Back(EnsureState::Planned)
            }
            Ok(DeletionStatus::NotStarted | DeletionStatus::InProgress) => undo_retry(
                attempt,
                format!("iam is deleting the role {role_name} (task {task})"),
            ),
            Ok(DeletionStatus::Failed { reason, .. }) => {
                tracing::warn!(
                    role_name,
                    reason,
                    "iam could not delete the role an undone ensure created"
                );
                Undo::Back(EnsureState::Planned)
            }
            Err(error) => undo_retry(
                attempt,
                format!("iam GetServiceLinkedRoleDeletionStatus: {error}"),
            ),
        }
    }
}

/// The failure of a role that is not a Connect service-linked role.
fn not_connect_slr(role_name: &str) -> WorkflowError {
    WorkflowError::from(Error::failed_precondition(
        Reason::RoleOwnedElsewhere,
        format!(
            "the role {role_name} is not an Amazon Connect service-linked role (path or trust policy)"
        ),
    ))
}

/// The Connect SLR whose name carries `suffix` (or, without one, the
/// oldest), as ListRoles shows it.
async fn listed(iam: &dyn IamApi, suffix: Option<&str>) -> Result<Option<RoleInfo>, IamError> {
    let mut roles: Vec<RoleInfo> = iam
        .list_roles(CONNECT_SLR_PATH)
        .await?
        .into_iter()
        .filter(|r| suffix.is_none_or(|s| has_suffix(&r.role_name, s)))
        .collect();
    roles.sort_by_key(|r| r.create_date);
    Ok(roles.into_iter().next())
}

#[async_trait]
impl Workflow for EnsureWorkflow<'_> {
    type Inputs = EnsureInputs;
    type State = EnsureState;
    type Output = LinkedRole;

    fn kind(&self) -> WorkflowKind {
        WorkflowKind::Ensure
    }

    fn steps() -> &'static [&'static str] {
        &["find", "create", "confirm", "record"]
    }

    fn step_of(state: &EnsureState) -> &'static str {
        match state {
            EnsureState::Claimed => "find",
            EnsureState::Planned => "create",
            EnsureState::Created { .. } => "confirm",
            EnsureState::Confirmed { .. } => "record",
        }
    }

    async fn action(
        &self,
        inputs: &EnsureInputs,
        state: &EnsureState,
        attempt: u32,
    ) -> Outcome<EnsureState, LinkedRole> {
        match state {
            EnsureState::Claimed => self.find(inputs, attempt).await,
            EnsureState::Planned => self.create(inputs, attempt).await,
            EnsureState::Created {
                role_name,
                created_by_us,
            } => {
                self.confirm(inputs, role_name, *created_by_us, attempt)
                    .await
            }
            EnsureState::Confirmed {
                role,
                created_by_us,
            } => self.record(inputs, role, *created_by_us, attempt).await,
        }
    }

    async fn undo(
        &self,
        _inputs: &EnsureInputs,
        state: &EnsureState,
        error: &WorkflowError,
        attempt: u32,
    ) -> Undo<EnsureState> {
        match state {
            EnsureState::Claimed => match self
                .env
                .store()
                .linked_role_abandon(self.env.ctx, &self.env.fence, &self.env.key)
                .await
            {
                Ok(_) => Undo::Released,
                Err(error) => undo_retry(attempt, error.message),
            },
            EnsureState::Planned => Undo::Back(EnsureState::Claimed),
            EnsureState::Created {
                role_name,
                created_by_us: true,
            } => self.delete_created(role_name, attempt).await,
            EnsureState::Created { .. } => Undo::Back(EnsureState::Planned),
            // `record` refused because another record holds the role: it
            // is that record's now, and the unwinding must not delete it,
            // whoever created it.
            EnsureState::Confirmed {
                role,
                created_by_us,
            } => Undo::Back(EnsureState::Created {
                role_name: role.role_name.clone(),
                created_by_us: *created_by_us
                    && error.reason != Reason::RoleOwnedElsewhere.as_str(),
            }),
        }
    }
}
