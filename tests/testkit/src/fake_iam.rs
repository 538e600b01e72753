//! An in-memory IAM with the semantics of `shared/docs/iam-slr-facts.md`,
//! for tests that must run every step of every workflow in milliseconds:
//!
//! - Connect service-linked roles named `AWSServiceRoleForAmazonConnect_<suffix>`
//!   under `/aws-service-role/connect.amazonaws.com/`, trusting
//!   `connect.amazonaws.com` alone;
//! - a taken name answers real IAM's InvalidInput "... has been taken in
//!   this account, please try a different suffix.", and custom suffixes can
//!   be refused (InvalidInput "Custom suffix is not allowed ...");
//! - eventual consistency: a new role can stay invisible to GetRole and
//!   ListRoles for its first reads;
//! - asynchronous deletion: DeleteServiceLinkedRole returns a task
//!   (`task/aws-service-role/connect.amazonaws.com/<role>/<uuid>`; asked
//!   again while it runs, the same task), which is NOT_STARTED, then
//!   IN_PROGRESS for some polls, then SUCCEEDED (the role goes) or FAILED
//!   with a RoleUsageList when the role is in use; a finished task may be
//!   purged (NoSuchEntity);
//! - throttling: the next N calls of an operation answer Throttling.
//!
//! Every answer goes through slr-governor's own IAM error classifier, and
//! every call is noted in the request's audit trail like a real one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;
use slrgov_aws::iam::{CONNECT_SERVICE, CONNECT_SLR_PATH, classify_code};
use slrgov_aws::{
    AccessError, AccountTarget, AwsProvider, DeletionStatus, IamApi, IamError, RoleInfo,
    RolePolicy, RoleUsage,
};

/// The trust policy of every Connect service-linked role.
pub const CONNECT_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"connect.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// The name real IAM gives a Connect role with `suffix`.
pub fn connect_role_name(suffix: Option<&str>) -> String {
    match suffix {
        Some(suffix) => format!("AWSServiceRoleForAmazonConnect_{suffix}"),
        None => "AWSServiceRoleForAmazonConnect".to_owned(),
    }
}

/// How the fake behaves (change it at any time through [`FakeIam::set`]).
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Custom suffixes are refused.
    pub refuse_suffix: bool,
    /// A new role is invisible to its first N reads (GetRole or ListRoles).
    pub invisible_reads: u32,
    /// A deletion stays NOT_STARTED then IN_PROGRESS for N status polls.
    pub deletion_polls: u32,
    /// Finished deletion tasks are forgotten (NoSuchEntity on status).
    pub purge_finished_tasks: bool,
    /// The next N calls of an operation (by IAM's name, e.g.
    /// `CreateServiceLinkedRole`) answer Throttling.
    pub throttle: HashMap<String, u32>,
}

#[derive(Debug, Clone)]
struct Role {
    info: RoleInfo,
    invisible_reads: u32,
    /// Resources that use the role: a deletion FAILS while there are any.
    usage: Vec<RoleUsage>,
}

#[derive(Debug, Clone)]
struct Task {
    role_name: String,
    polls: u32,
    status: Option<DeletionStatus>,
}

#[derive(Debug, Default)]
struct State {
    roles: BTreeMap<String, Role>,
    tasks: HashMap<String, Task>,
    calls: BTreeMap<String, u32>,
    behaviour: Behaviour,
}

/// One account's in-memory IAM.
#[derive(Debug)]
pub struct FakeIam {
    account: String,
    state: Mutex<State>,
}

impl FakeIam {
    /// An empty IAM of `account`.
    pub fn new(account: &str) -> Self {
        FakeIam {
            account: account.to_owned(),
            state: Mutex::new(State::default()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }

    /// Changes how the fake behaves.
    pub fn set(&self, change: impl FnOnce(&mut Behaviour)) {
        self.with(|s| change(&mut s.behaviour));
    }

    /// Every role, as IAM holds it now (visible or not), by name.
    pub fn roles(&self) -> Vec<RoleInfo> {
        self.with(|s| s.roles.values().map(|r| r.info.clone()).collect())
    }

    /// The role named `name`, if IAM holds it.
    pub fn role(&self, name: &str) -> Option<RoleInfo> {
        self.with(|s| s.roles.get(name).map(|r| r.info.clone()))
    }

    /// Puts a Connect role in IAM as if someone else had made it.
    pub fn put_role(&self, name: &str, description: Option<&str>) -> RoleInfo {
        let info = self.role_info(name, description);
        self.with(|s| {
            s.roles.insert(
                name.to_owned(),
                Role {
                    info: info.clone(),
                    invisible_reads: 0,
                    usage: Vec::new(),
                },
            )
        });
        info
    }

    /// Deletes a role at once, as someone acting in IAM directly would.
    pub fn remove_role(&self, name: &str) -> bool {
        self.with(|s| s.roles.remove(name).is_some())
    }

    /// Marks `name` as used by `resources` in `region`: its deletion fails.
    pub fn use_role(&self, name: &str, region: &str, resources: &[&str]) {
        self.with(|s| {
            if let Some(role) = s.roles.get_mut(name) {
                role.usage.push(RoleUsage {
                    region: region.to_owned(),
                    resources: resources.iter().map(|r| (*r).to_owned()).collect(),
                });
            }
        });
    }

    /// Calls of `operation` (IAM's name) so far.
    pub fn calls(&self, operation: &str) -> u32 {
        self.with(|s| s.calls.get(operation).copied().unwrap_or(0))
    }

    /// Calls of every operation so far.
    pub fn all_calls(&self) -> BTreeMap<String, u32> {
        self.with(|s| s.calls.clone())
    }

    fn role_info(&self, name: &str, description: Option<&str>) -> RoleInfo {
        RoleInfo {
            role_name: name.to_owned(),
            role_id: format!("AROA{}", uuid::Uuid::new_v4().simple()).to_uppercase()[..21]
                .to_owned(),
            arn: format!("arn:aws:iam::{}:role{CONNECT_SLR_PATH}{name}", self.account),
            path: CONNECT_SLR_PATH.to_owned(),
            create_date: Some(Utc::now()),
            description: description.map(str::to_owned),
            trust_policy: Some(CONNECT_TRUST.to_owned()),
            last_used: None,
            last_used_region: None,
        }
    }

    /// Counts the call, notes it in the audit trail, and answers Throttling
    /// when the behaviour says so.
    fn enter(&self, operation: &str) -> Result<(), IamError> {
        let throttled = self.with(|s| {
            *s.calls.entry(operation.to_owned()).or_default() += 1;
            match s.behaviour.throttle.get_mut(operation) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            }
        });
        if throttled {
            self.note(operation, "Throttling");
            return Err(classify_code("Throttling", "Rate exceeded".to_owned()));
        }
        Ok(())
    }

    fn note(&self, operation: &str, outcome: &str) {
        slrgov_aws::audit::note(slrgov_domain::audit::AwsCall {
            service: "iam".to_owned(),
            operation: operation.to_owned(),
            outcome: outcome.to_owned(),
            aws_request_id: Some(uuid::Uuid::new_v4().to_string()),
        });
    }

    /// Notes the outcome of a call and returns it.
    fn answer<T>(&self, operation: &str, result: Result<T, IamError>) -> Result<T, IamError> {
        let outcome = match &result {
            Ok(_) => "OK",
            Err(IamError::NoSuchEntity(_)) => "NoSuchEntity",
            Err(IamError::NameTaken(_) | IamError::SuffixNotAllowed(_)) => "InvalidInput",
            Err(IamError::InvalidInput(_)) => "InvalidInput",
            Err(IamError::Throttled(_)) => "Throttling",
            Err(_) => "ServiceFailure",
        };
        self.note(operation, outcome);
        result
    }

    fn no_such_role(name: &str) -> IamError {
        classify_code(
            "NoSuchEntity",
            format!("The role with name {name} cannot be found."),
        )
    }

    /// Reads a role as GetRole or ListRoles sees it: a new role stays
    /// invisible for its first reads.
    fn read(state: &mut State, name: &str) -> Option<RoleInfo> {
        let role = state.roles.get_mut(name)?;
        if role.invisible_reads > 0 {
            role.invisible_reads -= 1;
            return None;
        }
        Some(role.info.clone())
    }
}

#[async_trait]
impl IamApi for FakeIam {
    async fn create_service_linked_role(
        &self,
        service: &str,
        suffix: Option<&str>,
        description: Option<&str>,
    ) -> Result<RoleInfo, IamError> {
        const OP: &str = "CreateServiceLinkedRole";
        self.enter(OP)?;
        let result = self.with(|s| {
            if service != CONNECT_SERVICE {
                return Err(classify_code(
                    "InvalidInput",
                    format!("unknown service {service}"),
                ));
            }
            if suffix.is_some() && s.behaviour.refuse_suffix {
                return Err(classify_code(
                    "InvalidInput",
                    format!("Custom suffix is not allowed for {service}"),
                ));
            }
            if description.is_some_and(|d| d.chars().count() > 1000) {
                return Err(classify_code(
                    "InvalidInput",
                    "the description is longer than 1000 characters".to_owned(),
                ));
            }
            let name = connect_role_name(suffix);
            if s.roles.contains_key(&name) {
                return Err(classify_code(
                    "InvalidInput",
                    format!(
                        "Service role name {name} has been taken in this account, please try a different suffix."
                    ),
                ));
            }
            let info = self.role_info(&name, description);
            let invisible_reads = s.behaviour.invisible_reads;
            s.roles.insert(
                name,
                Role {
                    info: info.clone(),
                    invisible_reads,
                    usage: Vec::new(),
                },
            );
            Ok(info)
        });
        self.answer(OP, result)
    }

    async fn get_role(&self, name: &str) -> Result<RoleInfo, IamError> {
        const OP: &str = "GetRole";
        self.enter(OP)?;
        let result = self.with(|s| Self::read(s, name).ok_or_else(|| Self::no_such_role(name)));
        self.answer(OP, result)
    }

    async fn list_roles(&self, path_prefix: &str) -> Result<Vec<RoleInfo>, IamError> {
        const OP: &str = "ListRoles";
        self.enter(OP)?;
        let roles = self.with(|s| {
            let names: Vec<String> = s
                .roles
                .values()
                .filter(|r| r.info.path.starts_with(path_prefix))
                .map(|r| r.info.role_name.clone())
                .collect();
            names
                .iter()
                .filter_map(|name| Self::read(s, name))
                .collect::<Vec<_>>()
        });
        self.answer(OP, Ok(roles))
    }

    async fn update_role_description(
        &self,
        name: &str,
        description: &str,
    ) -> Result<RoleInfo, IamError> {
        const OP: &str = "UpdateRoleDescription";
        self.enter(OP)?;
        let result = self.with(|s| match s.roles.get_mut(name) {
            Some(role) => {
                role.info.description = Some(description.to_owned());
                Ok(role.info.clone())
            }
            None => Err(Self::no_such_role(name)),
        });
        self.answer(OP, result)
    }

    async fn delete_service_linked_role(&self, name: &str) -> Result<String, IamError> {
        const OP: &str = "DeleteServiceLinkedRole";
        self.enter(OP)?;
        let result = self.with(|s| {
            if !s.roles.contains_key(name) {
                return Err(Self::no_such_role(name));
            }
            // Asked again while it runs: the same task.
            if let Some((id, _)) = s
                .tasks
                .iter()
                .find(|(_, t)| t.role_name == name && t.status.is_none())
            {
                return Ok(id.clone());
            }
            let id = format!(
                "task/aws-service-role/connect.amazonaws.com/{name}/{}",
                uuid::Uuid::new_v4()
            );
            s.tasks.insert(
                id.clone(),
                Task {
                    role_name: name.to_owned(),
                    polls: 0,
                    status: None,
                },
            );
            Ok(id)
        });
        self.answer(OP, result)
    }

    async fn deletion_status(&self, task_id: &str) -> Result<DeletionStatus, IamError> {
        const OP: &str = "GetServiceLinkedRoleDeletionStatus";
        self.enter(OP)?;
        let result = self.with(|s| {
            let polls_needed = s.behaviour.deletion_polls;
            let purge = s.behaviour.purge_finished_tasks;
            let Some(task) = s.tasks.get_mut(task_id) else {
                return Err(classify_code(
                    "NoSuchEntity",
                    format!("Deletion task {task_id} cannot be found."),
                ));
            };
            if let Some(status) = task.status.clone() {
                if purge {
                    s.tasks.remove(task_id);
                    return Err(classify_code(
                        "NoSuchEntity",
                        format!("Deletion task {task_id} cannot be found."),
                    ));
                }
                return Ok(status);
            }
            task.polls += 1;
            if task.polls <= polls_needed {
                return Ok(if task.polls == 1 {
                    DeletionStatus::NotStarted
                } else {
                    DeletionStatus::InProgress
                });
            }
            let role_name = task.role_name.clone();
            let usage = s
                .roles
                .get(&role_name)
                .map(|r| r.usage.clone())
                .unwrap_or_default();
            let status = if usage.is_empty() {
                s.roles.remove(&role_name);
                DeletionStatus::Succeeded
            } else {
                DeletionStatus::Failed {
                    reason: "the role is in use by Amazon Connect resources".to_owned(),
                    usage,
                }
            };
            if let Some(task) = s.tasks.get_mut(task_id) {
                task.status = Some(status.clone());
            }
            Ok(status)
        });
        self.answer(OP, result)
    }

    async fn role_policies(&self, name: &str) -> Result<Vec<RolePolicy>, IamError> {
        const OP: &str = "ListRolePolicies";
        self.enter(OP)?;
        let result = self.with(|s| {
            if s.roles.contains_key(name) {
                Ok(Vec::new())
            } else {
                Err(Self::no_such_role(name))
            }
        });
        self.answer(OP, result)
    }
}

/// Hands out one [`FakeIam`] per account, as [`slrgov_aws::AwsAccess`]
/// hands out verified clients.
#[derive(Debug, Default)]
pub struct FakeAws {
    accounts: Mutex<HashMap<String, Arc<FakeIam>>>,
    connects: Mutex<HashMap<(String, String), Arc<crate::FakeConnect>>>,
}

impl FakeAws {
    /// No account yet.
    pub fn new() -> Arc<Self> {
        Arc::new(FakeAws::default())
    }

    /// The IAM of `account` (made on first use).
    pub fn account(&self, account: &str) -> Arc<FakeIam> {
        self.accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(account.to_owned())
            .or_insert_with(|| Arc::new(FakeIam::new(account)))
            .clone()
    }

    /// The Amazon Connect of `account` in `region` (made on first use).
    pub fn connect(&self, account: &str, region: &str) -> Arc<crate::FakeConnect> {
        self.connects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((account.to_owned(), region.to_owned()))
            .or_insert_with(|| Arc::new(crate::FakeConnect::new(account, region)))
            .clone()
    }
}

#[async_trait]
impl AwsProvider for FakeAws {
    async fn iam(&self, target: &AccountTarget) -> Result<Arc<dyn IamApi>, AccessError> {
        Ok(self.account(target.account_id.as_str()))
    }

    async fn connect(
        &self,
        target: &AccountTarget,
        region: &str,
    ) -> Result<Arc<dyn slrgov_aws::ConnectApi>, AccessError> {
        Ok(FakeAws::connect(self, target.account_id.as_str(), region))
    }
}
