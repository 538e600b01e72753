//! Helpers of the contract suite: a fresh database per test (Postgres or
//! SQLite), request contexts, fixtures, and assertions on errors and lists.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use slrgov_domain::filter::InstanceFilter;
use slrgov_domain::model::{
    Account, AccountFields, ExternalId, Instance, InstanceFeatures, InstanceFields, NewAccount,
    NewInstance,
};
use slrgov_domain::names::{AccountSelector, InstanceKey};
use slrgov_domain::types::{
    AccountId, Arn, BucketName, InstanceAlias, InstanceId, LogGroupName, Partition, ProfilesDomain,
    RegionCode, RequestId, VoiceIdDomain,
};
use slrgov_domain::{AccountScope, Caller, Error, Kind, Reason, RequestContext, Result, Role};
use slrgov_store::{Idempotency, PageRequest};

// The store's traits and the workflow types, for every file of the suite.
pub use slrgov_domain::workflow::{
    Phase, WorkflowError, WorkflowKind, WorkflowLog, WorkflowRecord, WorkflowUpdate,
};
pub use slrgov_store::{
    AccountStore, AuditStore, EnsureStart, InstanceStore, LinkedRoleStore, Replay, RequestIdStore,
    RestoredRole, RetireStart, Store, WorkflowStore,
};

// ---------------------------------------------------------------------------
// Fresh databases: the one TestDb of the test support crate (a new Postgres
// database owned by the ordinary role slrgov_app, or an SQLite file).

pub use slrgov_testkit::db::TestDb;

// ---------------------------------------------------------------------------
// Contexts, fixtures, assertions

/// A context for `caller`.
pub fn ctx_of(caller: Caller) -> RequestContext {
    RequestContext::new(caller, "test".into(), tracing::Span::none())
}

/// The local operator: every account, the admin role.
pub fn admin() -> RequestContext {
    ctx_of(Caller::local_operator())
}

/// A caller named `principal` with `role` on `scope`.
pub fn caller(principal: &str, role: Role, scope: AccountScope) -> RequestContext {
    ctx_of(Caller {
        principal: principal.to_owned(),
        role,
        scope,
    })
}

/// A scope of exactly these accounts.
pub fn only(accounts: &[&AccountId]) -> AccountScope {
    AccountScope::Only(
        accounts
            .iter()
            .map(|a| (*a).clone())
            .collect::<BTreeSet<_>>(),
    )
}

/// The account id number `n` (`1111` followed by `n` on 8 digits).
pub fn account_id(n: u32) -> AccountId {
    AccountId::parse(&format!("1111{n:08}")).expect("account id")
}

/// An ARN.
pub fn arn(value: &str) -> Arn {
    Arn::parse(value).unwrap_or_else(|e| panic!("{value}: {e}"))
}

/// A region code.
pub fn region(value: &str) -> RegionCode {
    RegionCode::parse(value).unwrap_or_else(|e| panic!("{value}: {e}"))
}

/// The access role of `account` in `partition`.
pub fn access_role(account: &AccountId, partition: Partition) -> Arn {
    arn(&format!("arn:{partition}:iam::{account}:role/SlrGovernor"))
}

/// A new account `id` in `partition`, with an access role and an external id.
pub fn new_account_in(id: &AccountId, partition: Partition) -> NewAccount {
    NewAccount {
        account_id: id.clone(),
        fields: AccountFields {
            display_name: format!("Account {id}"),
            partition,
            access_role_arn: Some(access_role(id, partition)),
        },
        external_id: Some(ExternalId::new(format!("ext-secret-{id}"))),
    }
}

/// The new account number `n`, in the `aws` partition.
pub fn new_account(n: u32) -> NewAccount {
    new_account_in(&account_id(n), Partition::Aws)
}

/// Creates the account number `n` as the local operator.
pub async fn create_account(store: &Arc<dyn Store>, n: u32) -> Account {
    store
        .account_create(&admin(), new_account(n), None)
        .await
        .unwrap_or_else(|e| panic!("create account {n}: {e:?}"))
}

/// The instance id number `n`: ordered like `n`.
pub fn instance_id(n: u32) -> InstanceId {
    InstanceId::parse(&format!("4a3b2c1d-0000-4000-8000-{n:012x}")).expect("instance id")
}

/// A random instance id.
pub fn random_instance_id() -> InstanceId {
    InstanceId::parse(&uuid::Uuid::new_v4().hyphenated().to_string()).expect("instance id")
}

/// The key of `instance` in `account`.
pub fn key(account: &AccountId, instance: &InstanceId) -> InstanceKey {
    InstanceKey {
        account_id: account.clone(),
        instance_id: instance.clone(),
    }
}

/// A new instance without features.
pub fn new_instance(account: &AccountId, instance: &InstanceId, region_code: &str) -> NewInstance {
    NewInstance {
        key: key(account, instance),
        region: region(region_code),
        fields: InstanceFields {
            instance_alias: Some(InstanceAlias::parse("contact-center").expect("alias")),
            instance_create_time: None,
            features: InstanceFeatures::default(),
        },
    }
}

/// Creates an instance without features as the local operator.
pub async fn create_instance(
    store: &Arc<dyn Store>,
    account: &AccountId,
    instance: &InstanceId,
    region_code: &str,
) -> Instance {
    store
        .instance_create(&admin(), new_instance(account, instance, region_code), None)
        .await
        .unwrap_or_else(|e| panic!("create instance {instance} in {account}: {e:?}"))
}

/// Every feature set, with ARNs in `partition` and `region_code`.
pub fn full_features(
    account: &AccountId,
    partition: Partition,
    region_code: &str,
) -> InstanceFeatures {
    InstanceFeatures {
        call_recordings_bucket: Some(
            BucketName::parse("amazon-connect-recordings").expect("bucket"),
        ),
        exported_reports_bucket: Some(BucketName::parse("my.exported.reports").expect("bucket")),
        customer_profiles_domain: Some(
            ProfilesDomain::parse("amazon-connect-profiles_1").expect("domain"),
        ),
        firehose_delivery_streams: vec![
            arn(&format!(
                "arn:{partition}:firehose:{region_code}:{account}:deliverystream/ctr-stream"
            )),
            arn(&format!(
                "arn:{partition}:firehose:{region_code}:{account}:deliverystream/agent-events"
            )),
        ],
        kinesis_streams: vec![arn(&format!(
            "arn:{partition}:kinesis:{region_code}:{account}:stream/contact-trace"
        ))],
        lex_bots: vec![
            arn(&format!(
                "arn:{partition}:lex:{region_code}:{account}:bot-alias/ABCDEFGHIJ/TSTALIASID"
            )),
            arn(&format!(
                "arn:{partition}:lex:{region_code}:{account}:bot:OrderFlowers"
            )),
        ],
        flow_logs_log_group: Some(
            LogGroupName::parse("/aws/connect/contact-center").expect("log group"),
        ),
        voice_id_domain: Some(VoiceIdDomain::parse("AbCdEfGhIjKlMnOpQrStUv").expect("voice id")),
        outbound_campaigns: true,
    }
}

/// An AIP-155 request id of the method `Test` with a fingerprint.
pub fn idem(request_id: &str, fingerprint: &str) -> Idempotency {
    idem_for("Test", request_id, fingerprint)
}

/// An AIP-155 request id of `method` with a fingerprint.
pub fn idem_for(method: &str, request_id: &str, fingerprint: &str) -> Idempotency {
    Idempotency {
        request_id: RequestId::parse(request_id).expect("request id"),
        method: method.to_owned(),
        fingerprint: fingerprint.as_bytes().to_vec(),
    }
}

/// A page request as the edge would make it.
pub fn page(size: i32, token: &str) -> PageRequest {
    PageRequest::parse(size, token).expect("page request")
}

/// A filter as the edge would parse it.
pub fn filter(text: &str) -> InstanceFilter {
    InstanceFilter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A moment with microsecond precision (what both engines keep).
pub fn time(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("timestamp")
        .with_timezone(&Utc)
}

/// Waits long enough for the store's clock (microseconds) to move on.
pub async fn tick() {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
}

/// Unwraps the error of `result`, checking its kind and reason.
#[track_caller]
pub fn expect_err<T: Debug>(result: Result<T>, kind: Kind, reason: Reason) -> Error {
    match result {
        Ok(value) => panic!("expected {kind:?}/{reason:?}, got Ok({value:?})"),
        Err(error) => {
            assert_eq!(
                (error.kind, error.reason),
                (kind, reason),
                "unexpected error: {error:?}"
            );
            error
        }
    }
}

/// Checks that `error` has a field violation on exactly `field`.
#[track_caller]
pub fn assert_violation(error: &Error, field: &str) {
    assert!(
        error.violations.iter().any(|v| v.field == field),
        "expected a violation on {field}, got {:?}",
        error.violations
    );
}

/// Checks that `result` is INVALID_ARGUMENT on `page_token`.
#[track_caller]
pub fn assert_bad_page_token<T: Debug>(result: Result<T>) {
    let error = expect_err(result, Kind::InvalidArgument, Reason::InvalidField);
    assert_violation(&error, "page_token");
}

/// Lists every visible account, `size` at a time, following the tokens;
/// checks every page's size.
pub async fn list_accounts_all(
    store: &Arc<dyn Store>,
    ctx: &RequestContext,
    size: i32,
) -> Vec<Account> {
    let mut items = Vec::new();
    let mut token = String::new();
    for _ in 0..10_000 {
        let page = store
            .account_list(ctx, &page(size, &token))
            .await
            .expect("account_list");
        assert!(page.items.len() <= size as usize, "page larger than asked");
        if !page.next_page_token.is_empty() {
            assert_eq!(
                page.items.len(),
                size as usize,
                "a short page with a next token"
            );
        }
        items.extend(page.items);
        if page.next_page_token.is_empty() {
            return items;
        }
        token = page.next_page_token;
    }
    panic!("account_list never ended");
}

/// Lists every visible instance under `parent` matching `filter`, `size`
/// at a time, following the tokens; checks every page's size.
pub async fn list_instances_all(
    store: &Arc<dyn Store>,
    ctx: &RequestContext,
    parent: &AccountSelector,
    filter: &InstanceFilter,
    size: i32,
) -> Vec<Instance> {
    let mut items = Vec::new();
    let mut token = String::new();
    for _ in 0..10_000 {
        let page = store
            .instance_list(ctx, parent, filter, &page(size, &token))
            .await
            .expect("instance_list");
        assert!(page.items.len() <= size as usize, "page larger than asked");
        if !page.next_page_token.is_empty() {
            assert_eq!(
                page.items.len(),
                size as usize,
                "a short page with a next token"
            );
        }
        items.extend(page.items);
        if page.next_page_token.is_empty() {
            return items;
        }
        token = page.next_page_token;
    }
    panic!("instance_list never ended");
}

/// The keys of `instances`, in order.
pub fn keys(instances: &[Instance]) -> Vec<InstanceKey> {
    instances.iter().map(Instance::key).collect()
}

/// Checks that `keys` has no duplicates.
#[track_caller]
pub fn assert_unique<T: Ord + Debug + Clone>(keys: &[T]) {
    let set: BTreeSet<T> = keys.iter().cloned().collect();
    assert_eq!(set.len(), keys.len(), "duplicates in {keys:?}");
}

// The fixtures of the linked-role and workflow cases, for every file.
pub use crate::flows::*;
