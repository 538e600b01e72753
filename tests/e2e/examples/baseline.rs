//! A bare tonic + sqlx server of `slrgov.v1.InstanceService`, the baseline of
//! the RPC benchmark (`tests/bench/rpc.sh`, docs/benchmarks.md).
//!
//! It serves GetInstance (one `SELECT` by primary key) and UpdateInstance
//! (one `UPDATE ... RETURNING`) over the schema that `slr-governor migrate`
//! creates, and RegionService.GetRegion from a static table in memory (the
//! no-op pair of the benchmark: the same trivial RPC through the service's
//! whole middleware stack and through bare tonic), and answers UNIMPLEMENTED
//! to everything else. No auth, no
//! telemetry, no tracing, no validation beyond parsing the name, no audit
//! trail, no idempotency records: what any gRPC service over this table would
//! have to pay at the least.
//!
//! ```text
//! cargo run --release -p slrgov-e2e --example baseline -- \
//!     --database-url postgres://slrgov_app:slrgov_app@127.0.0.1:5432/DB \
//!     [--listen 127.0.0.1:0] [--max-connections 16] [--scope '*'] \
//!     [--update-shape single|store|store-no-selects|store-no-audit|tx] \
//!     [--ping-before-use always|never]
//! ```
//!
//! `--update-shape store` makes UpdateInstance send the statements the real
//! store sends, in its transaction (see `Baseline::update_store_shape`): an
//! experiment to tell the cost of that shape from the cost of the service's
//! own code. `store-no-selects` leaves out the two `SELECT`s before the
//! `UPDATE`, `store-no-audit` the audit `INSERT`, and `tx` both (`BEGIN`,
//! `UPDATE`, `COMMIT`).
//!
//! It logs `listening on <addr>` to stderr once it accepts connections.
//!
//! Row-level security: it connects as the role it is given. Connected as the
//! schema's owner (`slrgov_app`, as the real service is), the policies of
//! migration 0005 apply (`FORCE`), so each pooled connection sets
//! `slrgov.scope` once, when it opens (`--scope`, default `*`), with a
//! session-level `SET`: the policy is still evaluated on every row, as for
//! the real service, but the scope costs nothing per request. Connected as a
//! superuser, the policies are skipped and `--scope` changes nothing.

use std::net::SocketAddr;
use std::time::Duration;

use slrgov_proto::google::longrunning::Operation;
use slrgov_proto::slrgov::v1 as pb;
use slrgov_proto::slrgov::v1::instance_service_server::{InstanceService, InstanceServiceServer};
use slrgov_proto::slrgov::v1::region_service_server::{RegionService, RegionServiceServer};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::types::Json;
use sqlx::types::chrono::{DateTime, Utc};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// The columns the real store reads (`INSTANCE_COLUMNS` in
/// services/slrgov-store/src/engine/shared/rows.rs).
const COLUMNS: &str = "account_id, instance_id, instance_alias, region, instance_create_time, \
     features, linked_role_state, connect_arn, connect_status, service_role_arn, \
     identity_management_type, observed_state, last_seen_time, sync_time, revision, \
     create_time, update_time";

#[derive(sqlx::FromRow)]
struct Row {
    account_id: String,
    instance_id: String,
    instance_alias: Option<String>,
    region: String,
    instance_create_time: Option<DateTime<Utc>>,
    features: Json<serde_json::Value>,
    linked_role_state: String,
    connect_arn: Option<String>,
    connect_status: Option<String>,
    service_role_arn: Option<String>,
    identity_management_type: Option<String>,
    observed_state: String,
    last_seen_time: Option<DateTime<Utc>>,
    sync_time: Option<DateTime<Utc>>,
    revision: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// The features JSON as the real store writes it (serde of the domain's
/// `InstanceFeatures`: optional strings are `null` when unset).
fn features_to_proto(json: &serde_json::Value) -> pb::InstanceFeatures {
    let text = |key: &str| {
        json.get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let list = |key: &str| {
        json.get(key)
            .and_then(serde_json::Value::as_array)
            .map(|values| {
                values
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    pb::InstanceFeatures {
        call_recordings_bucket: text("call_recordings_bucket"),
        exported_reports_bucket: text("exported_reports_bucket"),
        customer_profiles_domain: text("customer_profiles_domain"),
        firehose_delivery_streams: list("firehose_delivery_streams"),
        kinesis_streams: list("kinesis_streams"),
        lex_bots: list("lex_bots"),
        flow_logs_log_group: text("flow_logs_log_group"),
        voice_id_domain: text("voice_id_domain"),
        outbound_campaigns: json
            .get("outbound_campaigns")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
    }
}

fn features_to_json(features: &pb::InstanceFeatures) -> serde_json::Value {
    let text = |value: &str| {
        if value.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::String(value.to_owned())
        }
    };
    serde_json::json!({
        "call_recordings_bucket": text(&features.call_recordings_bucket),
        "exported_reports_bucket": text(&features.exported_reports_bucket),
        "customer_profiles_domain": text(&features.customer_profiles_domain),
        "firehose_delivery_streams": features.firehose_delivery_streams,
        "kinesis_streams": features.kinesis_streams,
        "lex_bots": features.lex_bots,
        "flow_logs_log_group": text(&features.flow_logs_log_group),
        "voice_id_domain": text(&features.voice_id_domain),
        "outbound_campaigns": features.outbound_campaigns,
    })
}

impl Row {
    fn into_proto(self) -> pb::Instance {
        pb::Instance {
            name: format!(
                "accounts/{}/instances/{}",
                self.account_id, self.instance_id
            ),
            instance_id: self.instance_id,
            instance_alias: self.instance_alias.unwrap_or_default(),
            region: self.region,
            instance_create_time: self.instance_create_time.map(timestamp),
            features: Some(features_to_proto(&self.features.0)),
            linked_role_state: pb::linked_role::State::from_str_name(&self.linked_role_state)
                .unwrap_or(pb::linked_role::State::Unspecified)
                as i32,
            create_time: Some(timestamp(self.create_time)),
            update_time: Some(timestamp(self.update_time)),
            etag: self.revision.to_string(),
            account_id: self.account_id,
            connect_arn: self.connect_arn.unwrap_or_default(),
            connect_status: self
                .connect_status
                .as_deref()
                .and_then(pb::instance::ConnectStatus::from_str_name)
                .unwrap_or(pb::instance::ConnectStatus::Unspecified)
                as i32,
            service_role_arn: self.service_role_arn.unwrap_or_default(),
            identity_management_type: self.identity_management_type.unwrap_or_default(),
            observed_state: pb::instance::ObservedState::from_str_name(&self.observed_state)
                .unwrap_or(pb::instance::ObservedState::Unspecified)
                as i32,
            last_seen_time: self.last_seen_time.map(timestamp),
            sync_time: self.sync_time.map(timestamp),
        }
    }
}

/// `accounts/{account_id}/instances/{instance_id}` split into its ids.
fn parse_name(name: &str) -> Result<(&str, &str), Status> {
    let mut parts = name.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("accounts"), Some(account), Some("instances"), Some(instance), None)
            if account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && !instance.is_empty() =>
        {
            Ok((account, instance))
        }
        _ => Err(Status::invalid_argument(
            "name must be accounts/{account_id}/instances/{instance_id}",
        )),
    }
}

fn db_status(error: sqlx::Error) -> Status {
    Status::internal(format!("database error: {error}"))
}

struct Baseline {
    pool: PgPool,
    /// `slrgov.scope` for the `store` shape's transactions.
    scope: String,
    /// UpdateInstance as the real store sends it, in a transaction.
    store_shape: Option<StoreShape>,
}

/// Which of the real store's statements `--update-shape store*` sends.
#[derive(Debug, Clone, Copy)]
struct StoreShape {
    /// The `SELECT ... FOR UPDATE` of the instance and the `SELECT` of its
    /// account before the `UPDATE`.
    selects: bool,
    /// The audit event's `INSERT`.
    audit: bool,
}

#[tonic::async_trait]
impl InstanceService for Baseline {
    async fn create_instance(
        &self,
        _request: Request<pb::CreateInstanceRequest>,
    ) -> Result<Response<pb::Instance>, Status> {
        Err(Status::unimplemented(
            "the baseline serves Get and Update only",
        ))
    }

    async fn get_instance(
        &self,
        request: Request<pb::GetInstanceRequest>,
    ) -> Result<Response<pb::Instance>, Status> {
        let name = request.into_inner().name;
        let (account, instance) = parse_name(&name)?;
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM instances WHERE account_id = $1 AND instance_id = $2"
        )))
        .bind(account)
        .bind(instance)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_status)?;
        row.map(|row| Response::new(row.into_proto()))
            .ok_or_else(|| Status::not_found(format!("{name} not found")))
    }

    async fn list_instances(
        &self,
        _request: Request<pb::ListInstancesRequest>,
    ) -> Result<Response<pb::ListInstancesResponse>, Status> {
        Err(Status::unimplemented(
            "the baseline serves Get and Update only",
        ))
    }

    /// One statement: the columns named in the mask (`instance_alias`,
    /// `instance_create_time`, `features`, or `*`), plus `revision` (the
    /// etag) and `update_time`, as the real store's UPDATE writes them.
    async fn update_instance(
        &self,
        request: Request<pb::UpdateInstanceRequest>,
    ) -> Result<Response<pb::Instance>, Status> {
        let request = request.into_inner();
        let instance = request
            .instance
            .ok_or_else(|| Status::invalid_argument("instance is required"))?;
        let (account, instance_id) = parse_name(&instance.name)?;
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let has = |path: &str| paths.iter().any(|p| p == path || p == "*");
        let expected: Option<i64> = if instance.etag.is_empty() {
            None
        } else {
            Some(
                instance
                    .etag
                    .trim_matches('"')
                    .parse()
                    .map_err(|_| Status::invalid_argument("instance.etag is not an etag"))?,
            )
        };
        let alias = (!instance.instance_alias.is_empty()).then_some(instance.instance_alias);
        let create_time = instance
            .instance_create_time
            .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32));
        let features = Json(features_to_json(&instance.features.unwrap_or_default()));
        let now = Utc::now();
        let now = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
        if let Some(shape) = self.store_shape {
            return self
                .update_store_shape(
                    shape,
                    account,
                    instance_id,
                    &instance.name,
                    has("instance_alias").then_some(alias),
                    now,
                )
                .await
                .map(Response::new);
        }
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE instances SET \
               instance_alias = CASE WHEN $3 THEN $4 ELSE instance_alias END, \
               instance_create_time = CASE WHEN $5 THEN $6 ELSE instance_create_time END, \
               features = CASE WHEN $7 THEN $8 ELSE features END, \
               revision = revision + 1, update_time = $9 \
             WHERE account_id = $1 AND instance_id = $2 \
               AND ($10::BIGINT IS NULL OR revision = $10) \
             RETURNING {COLUMNS}"
        )))
        .bind(account)
        .bind(instance_id)
        .bind(has("instance_alias"))
        .bind(alias)
        .bind(has("instance_create_time"))
        .bind(create_time)
        .bind(has("features"))
        .bind(features)
        .bind(now)
        .bind(expected)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_status)?;
        row.map(|row| Response::new(row.into_proto()))
            .ok_or_else(|| {
                Status::not_found(format!(
                    "{} not found (or its etag does not match)",
                    instance.name
                ))
            })
    }

    async fn delete_instance(
        &self,
        _request: Request<pb::DeleteInstanceRequest>,
    ) -> Result<Response<Operation>, Status> {
        Err(Status::unimplemented(
            "the baseline serves Get and Update only",
        ))
    }

    async fn sync_instances(
        &self,
        _request: Request<pb::SyncInstancesRequest>,
    ) -> Result<Response<Operation>, Status> {
        Err(Status::unimplemented(
            "the baseline serves Get and Update only",
        ))
    }

    type WatchInstancesStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<pb::WatchInstancesResponse, Status>> + Send>,
    >;

    async fn watch_instances(
        &self,
        _request: Request<pb::WatchInstancesRequest>,
    ) -> Result<Response<Self::WatchInstancesStream>, Status> {
        Err(Status::unimplemented(
            "the baseline serves Get and Update only",
        ))
    }
}

impl Baseline {
    /// `--update-shape store`: the statements the real store sends for an
    /// UpdateInstance without a request id (services/slrgov-store, shared.rs
    /// `instance_update`), without the service around them: `BEGIN` with
    /// the scope in the same simple query, the instance `FOR UPDATE`, its
    /// account, the `UPDATE ... RETURNING`, the audit event's `INSERT`,
    /// `COMMIT`. Six round trips where the default shape has one. Only
    /// `instance_alias` is honoured: enough for the benchmark.
    async fn update_store_shape(
        &self,
        shape: StoreShape,
        account: &str,
        instance_id: &str,
        name: &str,
        // `Some(value)` when the mask names `instance_alias`.
        alias: Option<Option<String>>,
        now: DateTime<Utc>,
    ) -> Result<pb::Instance, Status> {
        let set_alias = alias.is_some();
        let alias = alias.flatten();
        let mut tx = self
            .pool
            .begin_with(sqlx::AssertSqlSafe(format!(
                "BEGIN; SELECT set_config('slrgov.scope', '{}', true)",
                self.scope
            )))
            .await
            .map_err(db_status)?;
        let (alias, current) = if shape.selects {
            let current: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM instances WHERE account_id = $1 AND instance_id = $2 FOR UPDATE"
            )))
            .bind(account)
            .bind(instance_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_status)?;
            let current = current.ok_or_else(|| Status::not_found(format!("{name} not found")))?;
            sqlx::query(
                "SELECT account_id, display_name, partition, access_role_arn, \
                 external_id IS NOT NULL AS external_id_set, revision, create_time, update_time \
                 FROM accounts WHERE account_id = $1",
            )
            .bind(account)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_status)?
            .ok_or_else(|| Status::not_found(format!("{name} not found")))?;
            let alias = if set_alias {
                alias
            } else {
                current.instance_alias
            };
            (
                alias,
                Some((current.instance_create_time, current.features)),
            )
        } else {
            (alias, None)
        };
        let row: Option<Row> = match current {
            Some((create_time, features)) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE instances SET instance_alias = $3, instance_create_time = $4, features = $5, \
                 revision = revision + 1, update_time = $6 \
                 WHERE account_id = $1 AND instance_id = $2 RETURNING {COLUMNS}"
            )))
            .bind(account)
            .bind(instance_id)
            .bind(alias)
            .bind(create_time)
            .bind(features)
            .bind(now),
            None => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE instances SET instance_alias = CASE WHEN $3 THEN $4 ELSE instance_alias END, \
                 revision = revision + 1, update_time = $5 \
                 WHERE account_id = $1 AND instance_id = $2 RETURNING {COLUMNS}"
            )))
            .bind(account)
            .bind(instance_id)
            .bind(set_alias)
            .bind(alias)
            .bind(now),
        }
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_status)?;
        let row = row.ok_or_else(|| Status::not_found(format!("{name} not found")))?;
        if shape.audit {
            sqlx::query(
            "INSERT INTO audit_events (event_id, account_id, time, principal, method, resource, \
             request_id, outcome, detail, aws_calls) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(account)
        .bind(now)
        .bind("baseline")
        .bind("UpdateInstance")
        .bind(name)
        .bind(uuid::Uuid::new_v4().to_string())
        .bind("OK")
        .bind("updated the instance: instance_alias")
        .bind(Json(serde_json::json!([])))
            .execute(&mut *tx)
            .await
            .map_err(db_status)?;
        }
        tx.commit().await.map_err(db_status)?;
        Ok(row.into_proto())
    }
}

/// The regions the service has built in (`BUILTIN_REGIONS` in
/// services/slr-governor/src/regions.rs), with their partitions.
const REGIONS: &[(&str, &str)] = &[
    ("af-south-1", "aws"),
    ("ap-northeast-1", "aws"),
    ("ap-northeast-2", "aws"),
    ("ap-southeast-1", "aws"),
    ("ap-southeast-2", "aws"),
    ("ca-central-1", "aws"),
    ("eu-central-1", "aws"),
    ("eu-west-2", "aws"),
    ("us-east-1", "aws"),
    ("us-gov-west-1", "aws-us-gov"),
    ("us-west-2", "aws"),
];

/// RegionService.GetRegion with no database work: parse `regions/{code}`,
/// look the code up in [`REGIONS`], answer the entry (or, for a code that
/// is not there, `connect_available = false`), as the service does from
/// its in-memory table when nothing has refreshed it.
struct Regions;

#[tonic::async_trait]
impl RegionService for Regions {
    async fn list_regions(
        &self,
        _request: Request<pb::ListRegionsRequest>,
    ) -> Result<Response<pb::ListRegionsResponse>, Status> {
        Err(Status::unimplemented("the baseline serves GetRegion only"))
    }

    async fn get_region(
        &self,
        request: Request<pb::GetRegionRequest>,
    ) -> Result<Response<pb::Region>, Status> {
        let name = request.into_inner().name;
        let code = name
            .strip_prefix("regions/")
            .filter(|code| {
                !code.is_empty()
                    && code
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
            .ok_or_else(|| Status::invalid_argument("name must be regions/{region_code}"))?;
        let (partition, connect_available) = match REGIONS.iter().find(|(c, _)| *c == code) {
            Some((_, partition)) => (*partition, true),
            None if code.starts_with("us-gov-") => ("aws-us-gov", false),
            None if code.starts_with("cn-") => ("aws-cn", false),
            None => ("aws", false),
        };
        Ok(Response::new(pb::Region {
            name: format!("regions/{code}"),
            region_code: code.to_owned(),
            partition: partition.to_owned(),
            connect_available,
            source: pb::region::Source::Builtin as i32,
            refresh_time: None,
        }))
    }
}

struct Args {
    listen: SocketAddr,
    database_url: String,
    max_connections: u32,
    scope: String,
    store_shape: Option<StoreShape>,
    /// sqlx's default pings every pooled connection before handing it out
    /// (`always`); the service pings only one idle for 5 s, which under
    /// load is `never`.
    ping_before_use: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: baseline --database-url URL [--listen 127.0.0.1:0] [--max-connections 16] \
         [--scope '*'] [--update-shape single|store|store-no-selects|store-no-audit|tx] \
         [--ping-before-use always|never]"
    );
    std::process::exit(2)
}

fn args() -> Args {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        database_url: std::env::var("SLRGOV_DATABASE_URL").unwrap_or_default(),
        max_connections: 16,
        scope: "*".to_owned(),
        store_shape: None,
        ping_before_use: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--listen" => args.listen = value.parse().unwrap_or_else(|_| usage()),
            "--database-url" => args.database_url = value,
            "--max-connections" => args.max_connections = value.parse().unwrap_or_else(|_| usage()),
            "--scope" => args.scope = value,
            "--ping-before-use" => {
                args.ping_before_use = match value.as_str() {
                    "always" => true,
                    "never" => false,
                    _ => usage(),
                }
            }
            "--update-shape" => {
                let shape = |selects, audit| Some(StoreShape { selects, audit });
                args.store_shape = match value.as_str() {
                    "single" => None,
                    "store" => shape(true, true),
                    "store-no-selects" => shape(false, true),
                    "store-no-audit" => shape(true, false),
                    "tx" => shape(false, false),
                    _ => usage(),
                }
            }
            _ => usage(),
        }
    }
    if args.database_url.is_empty()
        || !args
            .scope
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == '*')
    {
        usage();
    }
    args
}

#[tokio::main]
async fn main() {
    let args = args();
    let options: PgConnectOptions = args.database_url.parse().unwrap_or_else(|e| {
        eprintln!("baseline: invalid --database-url: {e}");
        std::process::exit(2)
    });
    let scope = args.scope.clone();
    let pool = PgPoolOptions::new()
        .max_connections(args.max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .test_before_acquire(args.ping_before_use)
        .after_connect(move |conn, _meta| {
            // Validated above: digits, commas and `*` only.
            let set = format!("SET slrgov.scope = '{scope}'");
            Box::pin(async move {
                sqlx::raw_sql(sqlx::AssertSqlSafe(set))
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        })
        .connect_with(options.application_name("slrgov-baseline"))
        .await
        .unwrap_or_else(|e| {
            eprintln!("baseline: cannot connect to Postgres: {e}");
            std::process::exit(1)
        });
    let incoming = TcpIncoming::bind(args.listen)
        .unwrap_or_else(|e| {
            eprintln!("baseline: cannot listen on {}: {e}", args.listen);
            std::process::exit(1)
        })
        .with_nodelay(Some(true));
    let local = incoming.local_addr().unwrap_or(args.listen);
    eprintln!("listening on {local}");
    let served = Server::builder()
        .add_service(InstanceServiceServer::new(Baseline {
            pool,
            scope: args.scope,
            store_shape: args.store_shape,
        }))
        .add_service(RegionServiceServer::new(Regions))
        .serve_with_incoming_shutdown(incoming, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    if let Err(error) = served {
        eprintln!("baseline: server error: {error}");
        std::process::exit(1);
    }
}
