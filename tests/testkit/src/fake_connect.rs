//! An in-memory Amazon Connect of one account and region, with real
//! Connect's shapes: each instance created since October 2018 names its own
//! service-linked role (`ServiceRole`, an ARN under
//! `/aws-service-role/connect.amazonaws.com/`), a legacy one names none;
//! DescribeInstance of an unknown id answers ResourceNotFoundException; the
//! next N calls of an operation can answer throttling, access denied or
//! "region not enabled". Every answer goes through slr-governor's own
//! Connect error classifier, and every call is counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use slrgov_aws::connect::classify_code;
use slrgov_aws::{ConnectApi, ConnectError, ConnectInstance, ConnectStatus};

/// What the next calls of an operation answer instead of the truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFault {
    /// `ThrottlingException`.
    Throttle,
    /// `AccessDeniedException`.
    AccessDenied,
    /// `UnrecognizedClientException`: the account has not enabled the
    /// region.
    NotEnabled,
}

#[derive(Debug, Default)]
struct State {
    instances: BTreeMap<String, ConnectInstance>,
    /// Faults by operation (`ListInstances`, `DescribeInstance`): each
    /// answers one call; `None` count means every call.
    faults: HashMap<String, (ConnectFault, Option<u32>)>,
    calls: HashMap<String, u32>,
}

/// The Connect of one account in one region.
#[derive(Debug)]
pub struct FakeConnect {
    account: String,
    region: String,
    state: Mutex<State>,
}

impl FakeConnect {
    /// An empty Connect of `account` in `region`.
    pub fn new(account: &str, region: &str) -> Self {
        FakeConnect {
            account: account.to_owned(),
            region: region.to_owned(),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ARN of the Connect role named `role_name` in this account.
    pub fn role_arn(&self, role_name: &str) -> String {
        format!(
            "arn:aws:iam::{}:role/aws-service-role/connect.amazonaws.com/{role_name}",
            self.account
        )
    }

    /// Adds (or replaces) an instance: `service_role` is the role name
    /// Connect links to it (`None`: a legacy instance with none).
    pub fn put_instance(
        &self,
        id: &str,
        alias: &str,
        created: DateTime<Utc>,
        service_role: Option<&str>,
    ) {
        let instance = ConnectInstance {
            id: id.to_owned(),
            arn: format!(
                "arn:aws:connect:{}:{}:instance/{id}",
                self.region, self.account
            ),
            alias: Some(alias.to_owned()),
            status: Some(ConnectStatus::Active),
            created: Some(created),
            identity_management_type: Some("CONNECT_MANAGED".to_owned()),
            service_role: service_role.map(|name| self.role_arn(name)),
        };
        self.state().instances.insert(id.to_owned(), instance);
    }

    /// Deletes an instance, as DeleteInstance in Connect does.
    pub fn remove_instance(&self, id: &str) {
        self.state().instances.remove(id);
    }

    /// The next `count` calls of `operation` (every call with `None`)
    /// answer `fault`.
    pub fn fail(&self, operation: &str, fault: ConnectFault, count: Option<u32>) {
        self.state()
            .faults
            .insert(operation.to_owned(), (fault, count));
    }

    /// How many calls of `operation` were made.
    pub fn calls(&self, operation: &str) -> u32 {
        self.state().calls.get(operation).copied().unwrap_or(0)
    }

    /// Counts a call, and answers its fault if one is planned.
    fn call(&self, operation: &str) -> Result<(), ConnectError> {
        let mut state = self.state();
        *state.calls.entry(operation.to_owned()).or_default() += 1;
        let Some((fault, count)) = state.faults.get_mut(operation) else {
            return Ok(());
        };
        let fault = fault.clone();
        match count {
            Some(0) => {
                state.faults.remove(operation);
                return Ok(());
            }
            Some(n) => *n -= 1,
            None => {}
        }
        let (code, message) = match fault {
            ConnectFault::Throttle => ("ThrottlingException", "Rate exceeded"),
            ConnectFault::AccessDenied => (
                "AccessDeniedException",
                "User is not authorized to perform this action",
            ),
            ConnectFault::NotEnabled => (
                "UnrecognizedClientException",
                "The security token included in the request is invalid",
            ),
        };
        Err(classify_code(code, message.to_owned()))
    }
}

#[async_trait]
impl ConnectApi for FakeConnect {
    async fn list_instances(&self) -> Result<Vec<ConnectInstance>, ConnectError> {
        self.call("ListInstances")?;
        Ok(self.state().instances.values().cloned().collect())
    }

    async fn describe_instance(&self, instance_id: &str) -> Result<ConnectInstance, ConnectError> {
        self.call("DescribeInstance")?;
        self.state()
            .instances
            .get(instance_id)
            .cloned()
            .ok_or_else(|| {
                classify_code(
                    "ResourceNotFoundException",
                    format!("Instance not found: {instance_id}"),
                )
            })
    }
}
