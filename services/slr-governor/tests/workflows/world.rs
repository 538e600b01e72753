//! The world a workflow runs in for the step tests: a fresh database
//! (SQLite file or Postgres), an in-memory IAM with real IAM's semantics
//! (`FakeIam`), one account and one instance in a Connect region, and the
//! lifecycle with the scripted hook. Also the worker's loop and what the
//! tests compare at the end.

use std::sync::Arc;
use std::time::Duration;

use slr_governor::lifecycle::{Lifecycle, Resumed, Retirement};
use slr_governor::regions::RegionTable;
use slrgov_domain::audit::{AuditEvent, AuditFilter};
use slrgov_domain::model::{
    AccountFields, InstanceFeatures, InstanceFields, LinkedRole, LinkedRoleState, NewAccount,
    NewInstance,
};
use slrgov_domain::names::InstanceKey;
use slrgov_domain::types::{AccountId, InstanceId, Partition, RegionCode};
use slrgov_domain::workflow::{Phase, WorkflowKind, WorkflowRecord};
use slrgov_domain::{Caller, Error, RequestContext};
use slrgov_store::{Engine, PageRequest, Store};
use slrgov_testkit::{FakeAws, FakeIam, TestDb};

use super::script::Script;

/// The account the instance is in.
pub const ACCOUNT: &str = "123456789012";
/// The instance (the same in every world, so their ends compare: the
/// role's name is derived from it).
pub const INSTANCE: &str = "4a3b2c1d-0000-4000-8000-123456789abc";
/// How long an engine holds a workflow: short, so a crashed holder's work
/// is taken over quickly.
pub const LEASE: Duration = Duration::from_millis(300);
/// The description the caller gives an ensure.
pub const DESCRIPTION: &str = "Connect role of the harness instance (caller's words)";

/// The role Connect links to the harness instance in [`Source::Restore`].
pub const CONNECT_ROLE: &str = "AWSServiceRoleForAmazonConnect_Hx7Connect0Role00001";

/// What Amazon Connect says of the harness instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Created in 2017: Connect names no role, the service creates the
    /// deterministic legacy one.
    Legacy,
    /// Created in 2023 with its own role, [`CONNECT_ROLE`], which is
    /// missing from IAM: the ensure restores it with the same suffix.
    Restore,
}

/// A fresh world.
pub struct World {
    pub db: TestDb,
    pub store: Arc<dyn Store>,
    pub aws: Arc<FakeAws>,
    pub key: InstanceKey,
}

/// The local operator, for `method`.
pub fn ctx(method: &str) -> RequestContext {
    RequestContext::new(
        Caller::local_operator(),
        format!("harness-{}", uuid::Uuid::new_v4().simple()),
        tracing::Span::none(),
    )
    .with_method(method)
}

impl World {
    /// One account, one instance in us-east-1, IAM empty; deletions stay
    /// NOT_STARTED then IN_PROGRESS for two polls, as IAM's do.
    pub async fn new(engine: Engine) -> World {
        World::of(engine, Source::Legacy).await
    }

    /// A fresh world whose Connect says `source` of the instance.
    pub async fn of(engine: Engine, source: Source) -> World {
        let db = TestDb::new(engine).await;
        let store = db.open().await;
        let account = AccountId::parse(ACCOUNT).expect("account id");
        let admin = ctx("harness/setup");
        store
            .account_create(
                &admin,
                NewAccount {
                    account_id: account.clone(),
                    fields: AccountFields {
                        display_name: "harness".to_owned(),
                        partition: Partition::Aws,
                        access_role_arn: None,
                    },
                    external_id: None,
                },
                None,
            )
            .await
            .expect("create the account");
        let key = InstanceKey {
            account_id: account,
            instance_id: InstanceId::parse(INSTANCE).expect("instance id"),
        };
        store
            .instance_create(
                &admin,
                NewInstance {
                    key: key.clone(),
                    region: RegionCode::parse("us-east-1").expect("region"),
                    fields: InstanceFields {
                        instance_alias: None,
                        instance_create_time: None,
                        features: InstanceFeatures::default(),
                    },
                },
                None,
            )
            .await
            .expect("create the instance");
        let aws = FakeAws::new();
        aws.account(ACCOUNT).set(|b| b.deletion_polls = 2);
        let connect = aws.connect(ACCOUNT, "us-east-1");
        match source {
            Source::Legacy => connect.put_instance(
                INSTANCE,
                "harness-legacy",
                chrono::DateTime::from_timestamp(1_496_275_200, 0).expect("2017"),
                None,
            ),
            Source::Restore => connect.put_instance(
                INSTANCE,
                "harness",
                chrono::DateTime::from_timestamp(1_672_531_200, 0).expect("2023"),
                Some(CONNECT_ROLE),
            ),
        }
        World {
            db,
            store,
            aws,
            key,
        }
    }

    /// Registers another instance of the account, in us-east-1.
    pub async fn add_instance(&self, instance: &str) -> InstanceKey {
        let key = InstanceKey {
            account_id: self.key.account_id.clone(),
            instance_id: InstanceId::parse(instance).expect("instance id"),
        };
        self.store
            .instance_create(
                &ctx("harness/setup"),
                NewInstance {
                    key: key.clone(),
                    region: RegionCode::parse("us-east-1").expect("region"),
                    fields: InstanceFields {
                        instance_alias: None,
                        instance_create_time: None,
                        features: InstanceFeatures::default(),
                    },
                },
                None,
            )
            .await
            .expect("create the instance");
        // A legacy instance too: Connect names no role for it.
        self.aws.connect(ACCOUNT, "us-east-1").put_instance(
            instance,
            "harness-legacy-other",
            chrono::DateTime::from_timestamp(1_496_275_200, 0).expect("2017"),
            None,
        );
        key
    }

    /// The recorded linked role of `key`.
    pub async fn record_of(&self, key: &InstanceKey) -> LinkedRole {
        self.store
            .linked_role_get(&ctx("harness/read"), key)
            .await
            .expect("get the linked role")
    }

    /// The account's IAM.
    pub fn iam(&self) -> Arc<FakeIam> {
        self.aws.account(ACCOUNT)
    }

    /// The lifecycle, with `script` in its engines (a fresh engine: none).
    pub fn lifecycle(&self, script: Option<Script>) -> Lifecycle {
        let lifecycle = Lifecycle::new(
            self.store.clone(),
            self.aws.clone(),
            Arc::new(RegionTable::builtin()),
            LEASE,
        );
        match script {
            Some(script) => lifecycle.with_hook(Arc::new(script)),
            None => lifecycle,
        }
    }

    /// EnsureLinkedRole through `lifecycle`, run inline as a request would.
    pub async fn ensure(&self, lifecycle: &Lifecycle) -> Result<LinkedRole, Error> {
        let ctx = ctx("slrgov.v1.LinkedRoleService/EnsureLinkedRole");
        slrgov_aws::audit::recording(
            ctx.audit.clone(),
            lifecycle.ensure(&ctx, &self.key, Some(DESCRIPTION.to_owned()), false, None),
        )
        .await
    }

    /// EnsureLinkedRole of another instance of the account.
    pub async fn ensure_of(
        &self,
        lifecycle: &Lifecycle,
        key: &InstanceKey,
    ) -> Result<LinkedRole, Error> {
        let ctx = ctx("slrgov.v1.LinkedRoleService/EnsureLinkedRole");
        slrgov_aws::audit::recording(
            ctx.audit.clone(),
            lifecycle.ensure(&ctx, key, Some(DESCRIPTION.to_owned()), false, None),
        )
        .await
    }

    /// RetireLinkedRole (`kind` retire) or DeleteInstance's retirement.
    pub async fn retire(&self, lifecycle: &Lifecycle, kind: WorkflowKind) -> WorkflowRecord {
        let ctx = ctx("slrgov.v1.LinkedRoleService/RetireLinkedRole");
        let started = slrgov_aws::audit::recording(
            ctx.audit.clone(),
            lifecycle.retire(&ctx, &self.key, None, kind, false, None),
        )
        .await
        .expect("start the retirement");
        match started {
            Retirement::Started(record) => *record,
            Retirement::Preview(_) => panic!("a retirement was previewed"),
        }
    }

    /// The newest workflow of the instance.
    pub async fn workflow(&self) -> Option<WorkflowRecord> {
        let id = self
            .db
            .fetch_text(
                "SELECT MAX(workflow_id) FROM workflows WHERE instance_id = $1",
                &[self.key.instance_id.as_str()],
            )
            .await?;
        Some(
            self.store
                .workflow_get(&ctx("harness/read"), &id)
                .await
                .expect("get the workflow"),
        )
    }

    /// Runs the background worker's loop as `owner` until the workflow `id`
    /// finishes, or the engine crashes (a hook): returns whether it did.
    pub async fn work(&self, lifecycle: &Lifecycle, owner: &str, id: &str) -> Resumed {
        let worker = RequestContext::for_worker("harness");
        for _ in 0..2000 {
            let due = self
                .store
                .workflow_claim_due(&worker, owner, LEASE, 8)
                .await
                .expect("claim due workflows");
            for record in due {
                let unit = worker.unit_of_work(record.kind.as_str());
                let resumed = slrgov_aws::audit::recording(
                    unit.audit.clone(),
                    lifecycle.resume(&unit, record, owner),
                )
                .await
                .expect("run the workflow's steps");
                if resumed == Resumed::Crashed {
                    return Resumed::Crashed;
                }
            }
            let record = self
                .store
                .workflow_get(&worker, id)
                .await
                .expect("get the workflow");
            if record.done() {
                return Resumed::Finished;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("workflow {id} did not finish within 20 s")
    }

    /// Finishes the instance's newest workflow in a fresh engine (no hook,
    /// a new owner), once the crashed holder's lease has run out.
    pub async fn finish_fresh(&self) -> WorkflowRecord {
        let record = self.workflow().await.expect("a workflow");
        if !record.done() {
            let fresh = self.lifecycle(None);
            let resumed = self.work(&fresh, "fresh-engine", &record.id).await;
            assert_eq!(resumed, Resumed::Finished);
        }
        self.workflow().await.expect("a workflow")
    }

    /// The audit events of the account, newest first.
    pub async fn audit(&self) -> Vec<AuditEvent> {
        let page = PageRequest::parse(1000, "").expect("page");
        self.store
            .audit_list(
                &ctx("harness/read"),
                &self.key.account_id,
                &AuditFilter::default(),
                &page,
            )
            .await
            .expect("list audit events")
            .items
    }

    /// What a user would check at the end.
    pub async fn end_state(&self) -> EndState {
        let read = ctx("harness/read");
        let instance = self.store.instance_get(&read, &self.key).await.ok();
        let record = match &instance {
            Some(_) => Some(
                self.store
                    .linked_role_get(&read, &self.key)
                    .await
                    .expect("get the linked role"),
            ),
            None => None,
        };
        let workflow = self.workflow().await.expect("a workflow");
        EndState {
            roles: self
                .iam()
                .roles()
                .into_iter()
                .map(|r| (r.arn, r.description))
                .collect(),
            record: record.map(|r| Recorded {
                state: r.state,
                role_arn: r.role_arn,
                description: r.description,
                adopted: r.adopted,
                restored: r.restored,
                role_name: r.role_name,
            }),
            instance_state: instance.map(|i| i.linked_role_state),
            phase: workflow.phase,
            error: workflow.error.map(|e| e.reason),
        }
    }
}

/// The recorded linked role, as a user compares it with IAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub state: LinkedRoleState,
    pub role_arn: Option<String>,
    pub description: Option<String>,
    pub adopted: bool,
    pub restored: bool,
    pub role_name: Option<String>,
}

/// What a user would check once a workflow ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndState {
    /// Every role in IAM: (ARN, description).
    pub roles: Vec<(String, Option<String>)>,
    /// The record (`None` once the instance is removed).
    pub record: Option<Recorded>,
    /// The instance's copy of the role's state (`None`: removed).
    pub instance_state: Option<LinkedRoleState>,
    /// How the workflow ended.
    pub phase: Phase,
    /// Its error's reason, if it failed.
    pub error: Option<String>,
}

impl EndState {
    /// The invariants of every end: at most one role for the instance, the
    /// record equal to IAM (an ACTIVE record names the one role IAM has;
    /// anything else, IAM has none), the instance's copy of the state equal
    /// to the record's, and no orphan.
    #[track_caller]
    pub fn assert_consistent(&self, context: &str) {
        assert!(
            self.roles.len() <= 1,
            "{context}: one role at most: {self:#?}"
        );
        if let (Some(record), Some(state)) = (&self.record, self.instance_state) {
            assert_eq!(record.state, state, "{context}: instance copy: {self:#?}");
        }
        match &self.record {
            Some(record) if record.state == LinkedRoleState::Active => {
                let arn = record
                    .role_arn
                    .clone()
                    .expect("an ACTIVE record has an ARN");
                assert_eq!(
                    self.roles
                        .iter()
                        .map(|(a, _)| a.clone())
                        .collect::<Vec<_>>(),
                    vec![arn],
                    "{context}: the record's role is IAM's only role: {self:#?}"
                );
            }
            Some(record) if record.state == LinkedRoleState::DeletionFailed => {
                assert_eq!(self.roles.len(), 1, "{context}: {self:#?}");
            }
            _ => assert!(
                self.roles.is_empty(),
                "{context}: no role in IAM without an ACTIVE record (no orphan): {self:#?}"
            ),
        }
        assert!(
            self.phase.is_done(),
            "{context}: the workflow ended: {self:#?}"
        );
    }
}
