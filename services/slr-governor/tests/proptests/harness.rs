//! The service under test: the real handlers over a real SQLite store in a
//! temporary directory, with the fixture every test starts from.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use slr_governor::api::AppState;
use slr_governor::api::accounts::Accounts;
use slr_governor::api::instances::Instances;
use slr_governor::api::operations::Operations;
use slr_governor::api::regions::Regions;
use slr_governor::regions::RegionTable;
use slr_governor::request::CorrelationId;
use slrgov_domain::filter::InstanceFilter;
use slrgov_domain::names::AccountSelector;
use slrgov_domain::{Caller, RequestContext};
use slrgov_proto::google::longrunning as lro;
use slrgov_proto::google::longrunning::operations_server::Operations as _;
use slrgov_proto::slrgov::v1 as pb;
use slrgov_proto::slrgov::v1::account_service_server::AccountService as _;
use slrgov_proto::slrgov::v1::instance_service_server::InstanceService as _;
use slrgov_proto::slrgov::v1::region_service_server::RegionService as _;
use slrgov_store::{Page, PageRequest, Store, StoreConfig};
use tonic::Request;

/// The correlation id every request carries, checked in RequestInfo.
pub const CORRELATION_ID: &str = "proptest-correlation-id";
/// Where no test's AWS calls go: nothing listens on the discard port.
const NOWHERE: &str = "http://127.0.0.1:9";

/// The fixture's instances: (index of the account, instance id, region).
const FIXTURE_INSTANCES: [(usize, &str, &str); 5] = [
    (0, "4a3b2c1d-0000-4000-8000-123456789abc", "us-east-1"),
    (0, "9e8d7c6b-1111-4222-8333-444455556666", "eu-west-1"),
    (1, "1c2d3e4f-2222-4333-8444-555566667777", "eu-west-2"),
    // Deleted by fixture(), leaving done operations.
    (0, "0f0f0f0f-3333-4444-8555-666677778888", "us-west-2"),
    (1, "abcdefab-4444-4555-8666-777788889999", "eu-west-2"),
];

/// The fixture every test starts from (made through the handlers).
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Account ids: `[0]` and `[1]` have instances, `[2]` has none. `[1]` is
    /// reached through an access role with an external id.
    pub accounts: Vec<String>,
    /// (account id, instance id): `[0]` in us-east-1 (Connect available, so
    /// a valid request reaches for STS), `[1]` in eu-west-1 (not in the
    /// table: REGION_NOT_SUPPORTED), `[2]` in the second account.
    pub instances: Vec<(String, String)>,
    /// Ids of operations that are done (deleted instances).
    pub operations: Vec<String>,
    /// Page tokens issued for other queries (replayed against these).
    pub page_tokens: Vec<String>,
    /// Resume tokens sealed with the store's key: positions before, in and
    /// past the change log.
    pub resume_tokens: Vec<String>,
}

pub struct Harness {
    pub rt: tokio::runtime::Runtime,
    pub state: Arc<AppState>,
    store: Arc<dyn Store>,
    pub fx: Fixture,
    _dir: tempfile::TempDir,
}

/// What the store holds: every account, instance and operation.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    accounts: Vec<pb::Account>,
    instances: Vec<pb::Instance>,
    operations: Vec<lro::Operation>,
}

pub fn request<R>(message: R) -> Request<R> {
    let mut request = Request::new(message);
    request
        .extensions_mut()
        .insert(std::sync::Arc::new(Caller::local_operator()));
    request
        .extensions_mut()
        .insert(CorrelationId(CORRELATION_ID.into()));
    request
}

fn snapshot_ctx() -> RequestContext {
    RequestContext::new(
        Caller::local_operator(),
        "proptest-snapshot".to_owned(),
        tracing::Span::none(),
    )
}

/// Every item of a list, page by page, converted to the API's message.
async fn every<T, U, E: Debug>(
    what: &str,
    list: impl AsyncFn(&PageRequest) -> Result<Page<T>, E>,
    convert: impl Fn(&T) -> U,
) -> Vec<U> {
    let mut all = Vec::new();
    let mut page = PageRequest::parse(1000, "").expect("a page");
    loop {
        let got = list(&page).await.expect(what);
        all.extend(got.items.iter().map(&convert));
        if got.next_page_token.is_empty() {
            return all;
        }
        page.token = Some(got.next_page_token);
    }
}

impl Harness {
    pub fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("proptests.db").display());
        let (state, store) = rt.block_on(async {
            let mut config = StoreConfig::new(url);
            config.max_connections = 4;
            let store = slrgov_store::open(&config)
                .await
                .expect("the SQLite store opens and migrates");
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .empty_test_environment()
                .test_credentials()
                .region(aws_config::Region::new("us-east-1"))
                .endpoint_url(NOWHERE)
                .retry_config(aws_config::retry::RetryConfig::disabled())
                .timeout_config(
                    aws_config::timeout::TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(1))
                        .operation_timeout(Duration::from_secs(5))
                        .build(),
                )
                .load()
                .await;
            let aws: Arc<dyn slrgov_aws::AwsProvider> = Arc::new(slrgov_aws::AwsAccess::new(sdk));
            let state = AppState::new(
                RegionTable::builtin(),
                aws,
                Duration::from_secs(30),
                slr_governor::lifecycle::DEFAULT_BATCH_CONCURRENCY,
                // Every ensure of an ACTIVE role asks the model's IAM.
                Duration::ZERO,
                Default::default(),
            );
            assert!(state.set_store(store.clone()), "the store is set once");
            (state, store)
        });
        let fx = rt.block_on(fixture(&state));
        Harness {
            rt,
            state,
            store,
            fx,
            _dir: dir,
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let ctx = snapshot_ctx();
        let store = &self.store;
        self.rt.block_on(async {
            let accounts = every(
                "list accounts",
                async |page| store.account_list(&ctx, page).await,
                slr_governor::convert::account,
            )
            .await;
            let all = (AccountSelector::All, InstanceFilter::default());
            let instances = every(
                "list instances",
                async |page| store.instance_list(&ctx, &all.0, &all.1, page).await,
                slr_governor::convert::instance,
            )
            .await;
            let operations = every(
                "list operations",
                async |page| store.workflow_list_operations(&ctx, page).await,
                slr_governor::convert::operation,
            )
            .await;
            Snapshot {
                accounts,
                instances,
                operations,
            }
        })
    }
}

/// Registers the fixture through the handlers.
async fn fixture(state: &Arc<AppState>) -> Fixture {
    let accounts_svc = Accounts::new(state.clone());
    let instances_svc = Instances::new(state.clone());
    let accounts = vec![
        "123456789012".to_owned(),
        "210987654321".to_owned(),
        "555555555555".to_owned(),
    ];
    for (index, id) in accounts.iter().enumerate() {
        let account = if index == 1 {
            pb::Account {
                display_name: "tenant".into(),
                access_role_arn: format!("arn:aws:iam::{id}:role/slr-governor"),
                external_id: "a-shared-secret".into(),
                ..Default::default()
            }
        } else {
            pb::Account {
                display_name: format!("account {index}"),
                ..Default::default()
            }
        };
        accounts_svc
            .create_account(request(pb::CreateAccountRequest {
                account_id: id.clone(),
                account: Some(account),
                request_id: String::new(),
            }))
            .await
            .expect("fixture account");
    }
    let instances: Vec<(String, String, &str)> = FIXTURE_INSTANCES
        .iter()
        .map(|&(account, id, region)| (accounts[account].clone(), id.to_owned(), region))
        .collect();
    for (account, id, region) in &instances {
        instances_svc
            .create_instance(request(pb::CreateInstanceRequest {
                parent: format!("accounts/{account}"),
                instance_id: id.clone(),
                instance: Some(pb::Instance {
                    region: (*region).to_owned(),
                    instance_alias: "fixture".into(),
                    features: Some(pb::InstanceFeatures {
                        call_recordings_bucket: "acme-connect-recordings".into(),
                        lex_bots: vec![format!(
                            "arn:aws:lex:{region}:{account}:bot-alias/ABCDEFGHIJ/TSTALIASID"
                        )],
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await
            .expect("fixture instance");
    }
    let mut operations = Vec::new();
    for (account, id, _) in &instances[3..] {
        let operation = instances_svc
            .delete_instance(request(pb::DeleteInstanceRequest {
                name: format!("accounts/{account}/instances/{id}"),
                etag: String::new(),
                request_id: String::new(),
            }))
            .await
            .expect("fixture deletion")
            .into_inner();
        assert!(operation.done, "an instance without a role goes at once");
        let id = operation
            .name
            .strip_prefix("operations/")
            .expect("an operation name");
        operations.push(id.to_owned());
    }
    let mut page_tokens = Vec::new();
    let account_page = accounts_svc
        .list_accounts(request(pb::ListAccountsRequest {
            page_size: 1,
            page_token: String::new(),
        }))
        .await
        .expect("list accounts");
    page_tokens.push(account_page.into_inner().next_page_token);
    for parent in ["accounts/-", "accounts/123456789012"] {
        let page = instances_svc
            .list_instances(request(pb::ListInstancesRequest {
                parent: parent.into(),
                page_size: 1,
                page_token: String::new(),
                filter: String::new(),
            }))
            .await
            .expect("list instances");
        page_tokens.push(page.into_inner().next_page_token);
    }
    let regions = Regions::new(state.clone())
        .list_regions(request(pb::ListRegionsRequest {
            page_size: 2,
            page_token: String::new(),
        }))
        .await
        .expect("list regions");
    page_tokens.push(regions.into_inner().next_page_token);
    let ops = Operations::new(state.clone())
        .list_operations(request(lro::ListOperationsRequest {
            name: String::new(),
            filter: String::new(),
            page_size: 1,
            page_token: String::new(),
            return_partial_success: false,
        }))
        .await
        .expect("list operations");
    page_tokens.push(ops.into_inner().next_page_token);
    assert!(
        page_tokens.iter().all(|t| !t.is_empty()),
        "every fixture list has a second page: {page_tokens:?}"
    );
    let keys = state.store().expect("the store").page_tokens().clone();
    let resume_tokens = [(0, 0), (0, 3), (0, 40), (1, 2), (0, 1_000_000)]
        .into_iter()
        .map(|(tx, seq)| keys.seal_position(tx, seq))
        .collect();
    Fixture {
        resume_tokens,
        accounts,
        instances: instances[..3]
            .iter()
            .map(|(a, i, _)| (a.clone(), i.clone()))
            .collect(),
        operations,
        page_tokens,
    }
}
