//! The server: binds the listener, serves the API with health and
//! reflection, opens the store in the background (health says NOT_SERVING
//! until the database is reachable and migrated), and shuts down
//! gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use slrgov_proto::google::longrunning::operations_server::OperationsServer;
use slrgov_proto::slrgov::v1::account_service_server::AccountServiceServer;
use slrgov_proto::slrgov::v1::audit_service_server::AuditServiceServer;
use slrgov_proto::slrgov::v1::finding_service_server::FindingServiceServer;
use slrgov_proto::slrgov::v1::instance_service_server::InstanceServiceServer;
use slrgov_proto::slrgov::v1::linked_role_service_server::LinkedRoleServiceServer;
use slrgov_proto::slrgov::v1::region_service_server::RegionServiceServer;
use slrgov_store::StoreConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::api::{self, AppState};
use crate::auth::rate::RateLimiter;
use crate::caller::CallerLayer;
use crate::config::Config;

/// The largest request message any service decodes (1 MiB); a larger one
/// is RESOURCE_EXHAUSTED before any handler runs. Set it on every service
/// added below.
///
/// Compression is set there too: gRPC compresses each message inside its
/// framing (`grpc-encoding`), which is the codec's job, not an HTTP layer's.
/// Every API service accepts gzip requests and answers in gzip a caller
/// that offers it (`grpc-accept-encoding`); others get plain messages.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The largest request message health and reflection decode (a service
/// name, a symbol or file name): 16 KiB.
pub const OPEN_MESSAGE_BYTES: usize = 16 * 1024;

/// The store settings of a configuration.
pub fn store_config(config: &Config) -> StoreConfig {
    let mut store = StoreConfig::new(config.database_url.clone());
    store.max_connections = config.database_max_connections;
    store.allow_rls_bypass = config.allow_rls_bypass;
    store.request_id_ttl = config.request_id_ttl;
    store.migration_url = config.migration_database_url.clone();
    store
}

/// Tests only (the `test-faults` feature): wraps every IAM client in the
/// fault-injecting layer when `SLRGOV_TEST_IAM_FAULTS` holds a plan.
#[cfg(feature = "test-faults")]
fn with_test_faults(aws: slrgov_aws::AwsAccess) -> anyhow::Result<slrgov_aws::AwsAccess> {
    let Ok(plan) = std::env::var(crate::env::TEST_IAM_FAULTS) else {
        return Ok(aws);
    };
    let plan = slrgov_aws::faults::FaultPlan::from_json(&plan)
        .with_context(|| format!("{}: invalid fault plan", crate::env::TEST_IAM_FAULTS))?;
    tracing::warn!(?plan, "IAM fault injection is on: for tests only");
    Ok(aws.with_wrapper(move |inner, target| {
        Arc::new(
            slrgov_aws::faults::FaultyIam::new(
                inner,
                plan.clone(),
                slrgov_aws::faults::CallLog::default(),
            )
            .in_account(target.account_id.as_str()),
        )
    }))
}

/// Opens the store, retrying with backoff until the database answers; a
/// mistake that waiting will not fix (a malformed URL) is returned at once.
async fn open_store_until_ready(
    config: StoreConfig,
    url_for_logs: String,
) -> Result<Arc<dyn slrgov_store::Store>, slrgov_store::OpenError> {
    let mut delay = Duration::from_millis(200);
    loop {
        match slrgov_store::open(&config).await {
            Ok(store) => return Ok(store),
            Err(error) if !error.is_retryable() => return Err(error),
            Err(error) => {
                tracing::warn!(
                    database = %url_for_logs,
                    error = %error,
                    cause = ?std::error::Error::source(&error).map(ToString::to_string),
                    retry_in_ms = delay.as_millis() as u64,
                    "database not ready"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for service in slrgov_proto::SERVICE_NAMES {
        reporter.set_service_status(*service, status).await;
    }
}

/// Resolves when the process is asked to stop (SIGTERM or Ctrl-C), or when
/// `stop` changes (tests).
async fn shutdown_signal(mut stop: watch::Receiver<bool>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
        _ = stop.changed() => {},
    }
}

/// Serves until a shutdown signal, then drains within the grace period.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    // Without authentication every caller is the local operator, so only
    // on loopback.
    if !config.auth.is_enabled() && !config.listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {} without authentication: only loopback addresses \
             (127.0.0.1, [::1]) are allowed until an auth mode is configured ({}, {} or {})",
            config.listen,
            crate::env::AUTH_JWKS_FILE,
            crate::env::AUTH_TOKENS_FILE,
            crate::env::TLS_CLIENT_CA
        );
    }
    config.auth.log_startup();
    let tls = match &config.tls {
        None => None,
        Some(files) => {
            let mut tls =
                ServerTlsConfig::new().identity(Identity::from_pem(&files.cert.0, &files.key.0));
            if let Some((ca, _)) = &files.client_ca {
                tls = tls.client_ca_root(Certificate::from_pem(ca));
            }
            Some(tls)
        }
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local: SocketAddr = listener.local_addr()?;
    tracing::info!(
        address = %local,
        database = %config.database_url_for_logs(),
        tls = config.tls.is_some(),
        mtls = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        "listening on {local}"
    );

    let (reporter, health_service) = tonic_health::server::health_reporter();
    set_health(&reporter, ServingStatus::NotServing).await;

    // The standard AWS configuration (credentials chain, AWS_ENDPOINT_URL_*
    // overrides). The region is given so that loading never waits on the
    // instance metadata service; each account's clients use their
    // partition's IAM region.
    //
    // The SDK's own retry is set explicitly: adaptive mode (which also slows
    // the client down when AWS throttles it), 3 attempts. The lifecycle
    // retries transient failures on top of it, bounded; the per-account
    // limit keeps the service under IAM's limits in the first place.
    let (worker_stop_tx, worker_stop_rx) = watch::channel(false);
    let worker_stop_for_refresh = worker_stop_rx.clone();
    let mut aws = slrgov_aws::AwsAccess::new(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .retry_config(aws_config::retry::RetryConfig::adaptive().with_max_attempts(3))
            .load()
            .await,
    )
    .with_iam_rate(config.rates.iam)
    .with_connect_rate(config.rates.connect);
    // On Postgres the replicas share each account's buckets (the store's
    // `rate_buckets`, once it is open); until then, and on SQLite or with
    // SLRGOV_RATE_SHARING=local, each process keeps its own.
    let shared_buckets = config
        .rates
        .shared_on(&config.database_url)
        .then(crate::rate_buckets::StoreBuckets::new);
    if let Some(buckets) = &shared_buckets {
        aws = aws.with_shared_buckets(buckets.clone());
    }
    tracing::info!(
        iam_rate = config.rates.iam.per_second,
        iam_burst = config.rates.iam.burst,
        connect_rate = config.rates.connect.per_second,
        shared = shared_buckets.is_some(),
        "per-account AWS call rates"
    );
    // Where Connect is available, from AWS itself (SSM), at start and on
    // an interval, with the service's own credentials.
    if let Some(every) = config.regions_refresh {
        tokio::spawn(crate::periodic::run_region_refresh(
            config.regions.clone(),
            aws.base().clone(),
            every,
            worker_stop_for_refresh.clone(),
        ));
    }
    #[cfg(feature = "test-faults")]
    let aws = with_test_faults(aws)?;
    let aws: Arc<dyn slrgov_aws::AwsProvider> = Arc::new(aws);
    let state = AppState::new(
        config.regions.clone(),
        aws,
        config.workflow_lease,
        config.rates.batch_concurrency,
        config.role_confirmation_max_age,
        config.watch,
    );
    let (fatal_tx, fatal_rx) = tokio::sync::oneshot::channel::<slrgov_store::OpenError>();
    let (worker_handle_tx, worker_handle_rx) = tokio::sync::oneshot::channel();
    {
        let state = state.clone();
        let reporter = reporter.clone();
        let store_config = store_config(&config);
        let url_for_logs = config.database_url_for_logs();
        let worker_stop = worker_stop_rx.clone();
        let sync_interval = config.sync_interval;
        let reconcile = config.reconcile;
        let change_retention = config.watch.retention;
        let shared_buckets = shared_buckets.clone();
        tokio::spawn(async move {
            match open_store_until_ready(store_config, url_for_logs).await {
                Ok(store) => {
                    tracing::info!(engine = ?store.engine(), "database ready and migrated");
                    if let Some(buckets) = &shared_buckets {
                        buckets.set_store(store.clone());
                    }
                    // The gauges of linked roles and workflows (when
                    // exporting), read from the database.
                    let _ = crate::telemetry::spawn_gauges(store.clone(), worker_stop.clone());
                    state.set_store(store);
                    if let Ok(lifecycle) = state.lifecycle() {
                        let owner = format!(
                            "{}-{}",
                            std::process::id(),
                            &uuid::Uuid::new_v4().simple().to_string()[..8]
                        );
                        if let Some(every) = sync_interval {
                            tokio::spawn(crate::periodic::run_sync_schedule(
                                lifecycle.clone(),
                                every,
                                worker_stop.clone(),
                            ));
                        }
                        if let Some(settings) = reconcile {
                            tokio::spawn(crate::periodic::run_reconcile_schedule(
                                lifecycle.clone(),
                                settings,
                                worker_stop.clone(),
                            ));
                        }
                        let handle = tokio::spawn(crate::worker::run(
                            lifecycle,
                            owner,
                            change_retention,
                            worker_stop,
                        ));
                        let _ = worker_handle_tx.send(handle);
                    }
                    set_health(&reporter, ServingStatus::Serving).await;
                }
                Err(error) => {
                    let _ = fatal_tx.send(error);
                }
            }
        });
    }

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(slrgov_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building reflection v1")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(slrgov_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building reflection v1alpha")?;

    let (_stop_tx, stop_rx) = watch::channel(false);
    let (draining_tx, mut draining_rx) = watch::channel(false);
    let shutdown = {
        let reporter = reporter.clone();
        let state_for_drain = state.clone();
        async move {
            shutdown_signal(stop_rx).await;
            tracing::info!("shutting down: health is NOT_SERVING, draining in-flight requests");
            set_health(&reporter, ServingStatus::NotServing).await;
            // Watch streams never end by themselves: end them, so the drain
            // waits only for unary RPCs (their clients resume elsewhere).
            state_for_drain.watchers.stop_all();
            let _ = draining_tx.send(true);
        }
    };

    // Streams per connection are bounded here, connections per peer by the
    // listener: together they bound what one host can hold open.
    let mut builder = Server::builder()
        .max_concurrent_streams(config.max_streams_per_connection)
        .http2_keepalive_interval(Some(Duration::from_secs(30)));
    if let Some(tls) = tls {
        let files = config.tls.as_ref().map(|f| (&f.cert.1, &f.key.1));
        builder = builder
            .tls_config(tls)
            .with_context(|| format!("invalid TLS certificate, key or client CA ({files:?})"))?;
    }
    let limiter = config
        .rate_limit
        .map(|limit| Arc::new(RateLimiter::new(limit)));
    // The layers every request passes, outermost first:
    let layers = tower::ServiceBuilder::new()
        // CORS, when browser origins are configured: answers a browser's
        // preflight (OPTIONS) itself and marks responses for the allowed
        // origins; it must see the request before anything turns it away.
        .option_layer(crate::cors::layer(&config.cors))
        // gRPC-Web: turns an HTTP/1.1 `application/grpc-web` request into
        // gRPC and the answer back, so that every layer and service below
        // sees plain gRPC (trailers included) and treats both alike.
        .layer(tonic_web::GrpcWebLayer::new())
        // Telemetry: the server span of the RPC (continuing the caller's
        // `traceparent`) and its duration, around everything that can
        // answer it (auth refusals, shedding and timeouts included), but
        // inside gRPC-Web so it sees every call as gRPC.
        .layer(crate::telemetry::TelemetryLayer)
        // Who is calling (authenticated, within its rate limit), before any
        // service sees the request; health and reflection stay open.
        .layer(CallerLayer::new(config.auth.clone(), limiter))
        // Admission: a bounded number of RPCs at once, in all and per
        // caller (one more is shed with RetryInfo, not queued), a timeout on
        // each and on the arrival of its body; inside the caller layer, so
        // refused callers never take a slot.
        .layer(crate::admission::AdmissionLayer::new(config.admission));
    let router = builder
        // HTTP/1.1 for gRPC-Web; gRPC itself stays HTTP/2.
        .accept_http1(true)
        .layer(layers)
        // Health (open to everyone) and reflection take only small
        // messages: a stream cannot make the server buffer a large one.
        .add_service(health_service.max_decoding_message_size(OPEN_MESSAGE_BYTES))
        .add_service(reflection_v1.max_decoding_message_size(OPEN_MESSAGE_BYTES))
        .add_service(reflection_v1alpha.max_decoding_message_size(OPEN_MESSAGE_BYTES))
        .add_service(
            AccountServiceServer::new(api::accounts::Accounts::new(state.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
        )
        .add_service(
            InstanceServiceServer::new(api::instances::Instances::new(state.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
        )
        .add_service(
            LinkedRoleServiceServer::new(api::linked_roles::LinkedRoles::new(state.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
        )
        .add_service(
            RegionServiceServer::new(api::regions::Regions::new(state.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
        )
        .add_service(
            AuditServiceServer::new(api::audit::Audit::new(state.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
        )
        .add_service(
            FindingServiceServer::new(api::findings::Findings::new(state.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
        )
        .add_service(
            OperationsServer::new(api::operations::Operations::new(state.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
        );

    let incoming = crate::listener::incoming(listener, config.max_connections_per_peer);
    let serving = router.serve_with_incoming_shutdown(incoming, shutdown);
    tokio::pin!(serving);
    tokio::select! {
        result = &mut serving => result.context("server failed")?,
        Ok(error) = fatal_rx => {
            return Err(anyhow::Error::new(error).context(format!(
                "cannot use the database {}",
                config.database_url_for_logs()
            )));
        }
        () = async {
            let _ = draining_rx.wait_for(|draining| *draining).await;
            tokio::time::sleep(config.shutdown_grace).await;
        } => {
            tracing::warn!(grace = ?config.shutdown_grace, "in-flight requests did not finish within the grace period");
        }
    }
    // Stop the background worker and give up its leases, so another
    // replica takes its operations over at once.
    let _ = worker_stop_tx.send(true);
    if let Ok(handle) = worker_handle_rx.await {
        let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Runs the migrations and exits (`slr-governor migrate`).
pub async fn migrate(config: Config) -> anyhow::Result<()> {
    let mut store = store_config(&config);
    store.migrations = slrgov_store::Migrations::Apply;
    let store = slrgov_store::open(&store)
        .await
        .with_context(|| format!("cannot migrate {}", config.database_url_for_logs()))?;
    tracing::info!(engine = ?store.engine(), database = %config.database_url_for_logs(), "migrations applied");
    Ok(())
}
