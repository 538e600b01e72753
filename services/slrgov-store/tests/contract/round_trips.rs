//! Round trips to Postgres per store call, counted from sqlx's own log of
//! every statement it executes (target `sqlx::query`, one event per
//! statement, `BEGIN` and `COMMIT` included), so that a write that goes in
//! one statement cannot quietly grow back to a transaction of six
//! (docs/benchmarks.md, issue 15). Postgres only: there each statement is
//! a round trip to another process; SQLite runs in the process.

use std::future::Future;
use std::sync::{Arc, Mutex};

use slrgov_domain::audit::AuditFilter;
use slrgov_domain::model::{
    AccountPatch, ExternalId, ExternalIdChange, FeatureField, InstanceFeatures, InstancePatch,
};
use slrgov_domain::types::{InstanceAlias, Partition, Revision};
use slrgov_domain::{Kind, Reason};
use tracing::Instrument;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::support::*;

/// The statements sqlx executed inside spans named `measured`.
#[derive(Clone, Default)]
struct Statements(Arc<Mutex<Vec<String>>>);

struct Summary(String);

impl Visit for Summary {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "summary" {
            self.0 = value.to_owned();
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for Statements
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let measured = ctx
            .event_scope(event)
            .is_some_and(|mut scope| scope.any(|span| span.name() == "measured"));
        if measured {
            let mut summary = Summary(String::new());
            event.record(&mut summary);
            self.0.lock().expect("statements").push(summary.0);
        }
    }
}

impl Statements {
    /// Counts for this thread (the test's current-thread runtime runs every
    /// task, sqlx's I/O included, on it).
    fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let statements = Statements::default();
        let subscriber = tracing_subscriber::registry().with(statements.clone());
        (statements, tracing::subscriber::set_default(subscriber))
    }

    /// Runs `call` and returns its output with the statements it executed.
    async fn of<T>(&self, call: impl Future<Output = T>) -> (T, Vec<String>) {
        self.0.lock().expect("statements").clear();
        let out = call.instrument(tracing::info_span!("measured")).await;
        (
            out,
            std::mem::take(&mut *self.0.lock().expect("statements")),
        )
    }
}

#[tokio::test]
async fn common_writes_and_reads_take_one_statement_postgres() {
    let (statements, _guard) = Statements::install();
    let db = TestDb::postgres().await;
    let store = db.open().await;
    let ctx = admin();
    let a = create_account(&store, 1).await.account_id;
    let mut new = new_instance(&a, &instance_id(1), "eu-west-2");
    new.fields.features = full_features(&a, Partition::Aws, "eu-west-2");

    // CreateInstance: the partition check, the insert and its audit event.
    let (created, seen) = statements.of(store.instance_create(&ctx, new, None)).await;
    let created = created.expect("create");
    assert_eq!(seen.len(), 1, "CreateInstance: {seen:#?}");
    let k = created.key();

    // GetInstance: one scoped read.
    let (got, seen) = statements.of(store.instance_get(&ctx, &k)).await;
    assert_eq!(got.expect("get"), created);
    assert_eq!(seen.len(), 1, "GetInstance: {seen:#?}");

    // UpdateInstance with an etag, an alias and a feature with ARNs (so the
    // account's partition is checked too).
    let bot = arn(&format!(
        "arn:aws:lex:eu-west-2:{a}:bot-alias/ZZZZZZZZZZ/PRODALIAS1"
    ));
    let patch = InstancePatch {
        instance_alias: Some(Some(InstanceAlias::parse("beta").expect("alias"))),
        feature_fields: vec![FeatureField::LexBots],
        features: InstanceFeatures {
            lex_bots: vec![bot.clone()],
            ..InstanceFeatures::default()
        },
        ..InstancePatch::default()
    };
    let (updated, seen) = statements
        .of(store.instance_update(&ctx, &k, Some(Revision(1)), patch.clone(), None))
        .await;
    let updated = updated.expect("update");
    assert_eq!(seen.len(), 1, "UpdateInstance: {seen:#?}");
    assert_eq!(updated.revision, Revision(2));
    assert_eq!(updated.features.lex_bots, vec![bot]);
    assert_eq!(
        updated.instance_alias.as_ref().map(InstanceAlias::as_str),
        Some("beta")
    );
    assert_eq!(
        updated.features.kinesis_streams,
        created.features.kinesis_streams
    );
    assert_eq!(store.instance_get(&ctx, &k).await.expect("get"), updated);

    // A stale etag: ABORTED, named by the full transaction, nothing written.
    let (stale, seen) = statements
        .of(store.instance_update(&ctx, &k, Some(Revision(1)), patch, None))
        .await;
    expect_err(stale, Kind::Aborted, Reason::EtagMismatch);
    assert!(seen.len() > 1, "the transaction ran: {seen:#?}");
    assert_eq!(store.instance_get(&ctx, &k).await.expect("get"), updated);

    // Each write left exactly its one audit event, newest first.
    let events = store
        .audit_list(&ctx, &a, &AuditFilter::default(), &page(50, ""))
        .await
        .expect("audit")
        .items;
    let details: Vec<&str> = events
        .iter()
        .filter(|e| e.resource == k.name())
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(details.len(), 2, "{details:#?}");
    assert!(details[0].starts_with("updated the instance: instance_alias, lex_bots"));
    assert!(details[1].starts_with("created the instance in eu-west-2"));
}

#[tokio::test]
async fn a_write_the_statement_cannot_make_falls_back_and_names_why_postgres() {
    let (statements, _guard) = Statements::install();
    let db = TestDb::postgres().await;
    let store = db.open().await;
    let ctx = admin();
    let a = create_account(&store, 1).await.account_id;

    // An instance in another partition's region: nothing inserted, and the
    // transaction names the field.
    let (wrong, seen) = statements
        .of(store.instance_create(&ctx, new_instance(&a, &instance_id(1), "cn-north-1"), None))
        .await;
    let error = expect_err(wrong, Kind::InvalidArgument, Reason::InvalidField);
    assert_violation(&error, "instance.region");
    assert!(seen.len() > 1, "the transaction ran: {seen:#?}");

    // No such account: NOT_FOUND names it.
    let ghost = account_id(9);
    let (missing, _) = statements
        .of(store.instance_create(
            &ctx,
            new_instance(&ghost, &instance_id(1), "us-east-1"),
            None,
        ))
        .await;
    expect_err(missing, Kind::NotFound, Reason::NotFound);

    // A duplicate is ALREADY_EXISTS from the one statement itself.
    let created = store
        .instance_create(&ctx, new_instance(&a, &instance_id(2), "us-east-1"), None)
        .await
        .expect("create");
    let (again, seen) = statements
        .of(store.instance_create(&ctx, new_instance(&a, &instance_id(2), "us-east-1"), None))
        .await;
    expect_err(again, Kind::AlreadyExists, Reason::AlreadyExists);
    assert_eq!(seen.len(), 1, "{seen:#?}");

    // An update bringing an ARN of another partition: INVALID_ARGUMENT,
    // the record unchanged.
    let k = created.key();
    let patch = InstancePatch {
        feature_fields: vec![FeatureField::LexBots],
        features: InstanceFeatures {
            lex_bots: vec![arn(&format!(
                "arn:aws-cn:lex:cn-north-1:{a}:bot-alias/ZZZZZZZZZZ/PRODALIAS1"
            ))],
            ..InstanceFeatures::default()
        },
        ..InstancePatch::default()
    };
    let (cross, _) = statements
        .of(store.instance_update(&ctx, &k, None, patch, None))
        .await;
    let error = expect_err(cross, Kind::InvalidArgument, Reason::InvalidField);
    assert_violation(&error, "instance.features.lex_bots[0]");
    assert_eq!(store.instance_get(&ctx, &k).await.expect("get"), created);
}

/// The audit details of `account`'s updates, newest first.
async fn account_details(
    store: &std::sync::Arc<dyn slrgov_store::Store>,
    account: &slrgov_domain::types::AccountId,
) -> Vec<String> {
    store
        .audit_list(&admin(), account, &AuditFilter::default(), &page(50, ""))
        .await
        .expect("audit")
        .items
        .into_iter()
        .map(|e| e.detail)
        .filter(|detail| detail.starts_with("updated the account"))
        .collect()
}

#[tokio::test]
async fn update_account_takes_one_statement_and_says_what_the_transaction_says_postgres() {
    let (statements, _guard) = Statements::install();
    let db = TestDb::postgres().await;
    let store = db.open().await;
    let ctx = admin();
    let a = create_account(&store, 1).await.account_id;
    let role = access_role(&a, Partition::Aws);
    let full = AccountPatch {
        display_name: Some("Payments \"prod\" \\ eu".to_owned()),
        access_role_arn: Some(Some(role.as_str().to_owned())),
        external_id: ExternalIdChange::Set(ExternalId::new("rotated-secret".into())),
    };

    // An etag, a new name, a role in the account's partition, a new
    // external id: one statement.
    let (updated, seen) = statements
        .of(store.account_update(&ctx, &a, Some(Revision(1)), full.clone()))
        .await;
    let updated = updated.expect("update");
    assert_eq!(seen.len(), 1, "UpdateAccount: {seen:#?}");
    assert_eq!(updated.revision, Revision(2));
    assert_eq!(updated.display_name, "Payments \"prod\" \\ eu");
    assert_eq!(updated.access_role_arn, Some(role.clone()));
    assert!(updated.external_id_set);
    assert_eq!(store.account_get(&ctx, &a).await.expect("get"), updated);
    let access = store.account_access(&ctx, &a).await.expect("access");
    assert_eq!(
        access.external_id.as_ref().map(ExternalId::expose),
        Some("rotated-secret")
    );

    // Clearing the role, the name kept: one statement too.
    let clear = AccountPatch {
        display_name: None,
        access_role_arn: Some(None),
        external_id: ExternalIdChange::Clear,
    };
    let (cleared, seen) = statements
        .of(store.account_update(&ctx, &a, None, clear.clone()))
        .await;
    let cleared = cleared.expect("clear");
    assert_eq!(seen.len(), 1, "UpdateAccount: {seen:#?}");
    assert_eq!(cleared.display_name, updated.display_name);
    assert_eq!(cleared.access_role_arn, None);
    assert!(!cleared.external_id_set);

    // A stale etag: ABORTED, named by the transaction, nothing written.
    let (stale, seen) = statements
        .of(store.account_update(&ctx, &a, Some(Revision(1)), full.clone()))
        .await;
    expect_err(stale, Kind::Aborted, Reason::EtagMismatch);
    assert!(seen.len() > 1, "the transaction ran: {seen:#?}");

    // A role of another partition, or of another account: INVALID_ARGUMENT
    // on the field, from the transaction; nothing written.
    for wrong in [
        access_role(&a, Partition::AwsCn),
        access_role(&account_id(2), Partition::Aws),
    ] {
        let patch = AccountPatch {
            access_role_arn: Some(Some(wrong.as_str().to_owned())),
            ..clear.clone()
        };
        let error = expect_err(
            store.account_update(&ctx, &a, None, patch).await,
            Kind::InvalidArgument,
            Reason::InvalidField,
        );
        assert_violation(&error, "account.access_role_arn");
    }
    assert_eq!(store.account_get(&ctx, &a).await.expect("get"), cleared);

    // The same two updates through SQLite's transaction (it has no direct
    // path) leave the same audit details, word for word.
    let lite_db = TestDb::sqlite();
    let lite = lite_db.open().await;
    create_account(&lite, 1).await;
    lite.account_update(&ctx, &a, Some(Revision(1)), full)
        .await
        .expect("update on SQLite");
    lite.account_update(&ctx, &a, None, clear)
        .await
        .expect("clear on SQLite");
    let name = r#""Payments \"prod\" \\ eu""#;
    let expected = vec![
        format!(
            "updated the account: display_name {name}, access_role_arn unset, external_id cleared"
        ),
        format!(
            "updated the account: display_name {name}, access_role_arn {role}, external_id replaced"
        ),
    ];
    assert_eq!(account_details(&store, &a).await, expected);
    assert_eq!(account_details(&lite, &a).await, expected);
}
