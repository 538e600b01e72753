//! The store contract: every case runs against both engines, each time on a
//! fresh database (a new Postgres database per test, a new SQLite file per
//! test), so the two engines are held to one behaviour.
//!
//! Postgres is reached through `DATABASE_URL` (an admin URL; default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates and
//! drops its own `slrgov_test_<hex>` database.

#[path = "contract/support.rs"]
mod support;

#[path = "contract/accounts.rs"]
mod accounts;
#[path = "contract/audit.rs"]
mod audit;
#[path = "contract/concurrency.rs"]
mod concurrency;
#[path = "contract/idempotency.rs"]
mod idempotency;
#[path = "contract/instances.rs"]
mod instances;
#[path = "contract/linked_roles.rs"]
mod linked_roles;
#[path = "contract/pagination.rs"]
mod pagination;
#[path = "contract/restart.rs"]
mod restart;
#[path = "contract/rls.rs"]
mod rls;
#[path = "contract/scoping.rs"]
mod scoping;

/// Instantiates `async fn case(store: Arc<dyn Store>)` once per engine.
macro_rules! contract {
    ($($case:path => $postgres:ident, $sqlite:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $postgres() {
            let db = support::TestDb::postgres().await;
            $case(db.open().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $sqlite() {
            let db = support::TestDb::sqlite();
            $case(db.open().await).await;
        }
    )*};
}

/// Instantiates `async fn case(db: &TestDb)` (cases that open stores
/// themselves) once per engine.
macro_rules! contract_db {
    ($($case:path => $postgres:ident, $sqlite:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $postgres() {
            let db = support::TestDb::postgres().await;
            $case(&db).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $sqlite() {
            let db = support::TestDb::sqlite();
            $case(&db).await;
        }
    )*};
}

contract! {
    accounts::case_account_round_trip => account_round_trip_postgres, account_round_trip_sqlite;
    accounts::case_etags => etags_postgres, etags_sqlite;

    idempotency::case_request_id_replays_first_response
        => request_id_replays_first_response_postgres, request_id_replays_first_response_sqlite;
    idempotency::case_request_ids_are_per_account
        => request_ids_are_per_account_postgres, request_ids_are_per_account_sqlite;
    idempotency::case_failed_request_does_not_burn_id
        => failed_request_does_not_burn_id_postgres, failed_request_does_not_burn_id_sqlite;
    idempotency::case_concurrent_retries_create_once
        => concurrent_retries_create_once_postgres, concurrent_retries_create_once_sqlite;

    pagination::case_account_pages => account_pages_postgres, account_pages_sqlite;
    pagination::case_default_page_size => default_page_size_postgres, default_page_size_sqlite;
    pagination::case_instance_pages => instance_pages_postgres, instance_pages_sqlite;
    pagination::case_pages_stable_under_inserts
        => pages_stable_under_inserts_postgres, pages_stable_under_inserts_sqlite;

    instances::case_instance_filters => instance_filters_postgres, instance_filters_sqlite;
    instances::case_account_delete_refused_with_instances
        => account_delete_refused_with_instances_postgres,
           account_delete_refused_with_instances_sqlite;
    instances::case_partition_checks => partition_checks_postgres, partition_checks_sqlite;
    instances::case_instance_update_mask
        => instance_update_mask_postgres, instance_update_mask_sqlite;
    instances::case_instance_create_time_precision
        => instance_create_time_precision_postgres, instance_create_time_precision_sqlite;
    instances::case_instance_delete => instance_delete_postgres, instance_delete_sqlite;
    instances::case_list_under_missing_account
        => list_under_missing_account_postgres, list_under_missing_account_sqlite;

    scoping::case_scope_hides_other_accounts
        => scope_hides_other_accounts_postgres, scope_hides_other_accounts_sqlite;
    scoping::case_roles => roles_postgres, roles_sqlite;

    concurrency::case_concurrent_updates => concurrent_updates_postgres, concurrent_updates_sqlite;
    concurrency::case_account_delete_races_instance_create
        => account_delete_races_instance_create_postgres,
           account_delete_races_instance_create_sqlite;

    linked_roles::case_linked_role_get_absent
        => linked_role_get_absent_postgres, linked_role_get_absent_sqlite;
    linked_roles::case_linked_role_claim_creates
        => linked_role_claim_creates_postgres, linked_role_claim_creates_sqlite;
    linked_roles::case_linked_role_claim_lease
        => linked_role_claim_lease_postgres, linked_role_claim_lease_sqlite;
    linked_roles::case_linked_role_activate
        => linked_role_activate_postgres, linked_role_activate_sqlite;
    linked_roles::case_linked_role_activate_needs_claim
        => linked_role_activate_needs_claim_postgres, linked_role_activate_needs_claim_sqlite;
    linked_roles::case_linked_role_owned_elsewhere
        => linked_role_owned_elsewhere_postgres, linked_role_owned_elsewhere_sqlite;
    linked_roles::case_linked_role_release
        => linked_role_release_postgres, linked_role_release_sqlite;
    linked_roles::case_linked_role_set_description
        => linked_role_set_description_postgres, linked_role_set_description_sqlite;
    linked_roles::case_account_access
        => linked_role_account_access_postgres, linked_role_account_access_sqlite;
    linked_roles::case_linked_role_roles => linked_role_roles_postgres, linked_role_roles_sqlite;
    linked_roles::case_linked_role_races => linked_role_races_postgres, linked_role_races_sqlite;

    audit::case_audit_event_per_mutation
        => audit_event_per_mutation_postgres, audit_event_per_mutation_sqlite;
    audit::case_audit_scope => audit_scope_postgres, audit_scope_sqlite;
}

contract_db! {
    audit::case_audit_is_append_only => audit_is_append_only_postgres, audit_is_append_only_sqlite;
    accounts::case_external_id_is_stored
        => external_id_is_stored_postgres, external_id_is_stored_sqlite;
    instances::case_linked_role_states => linked_role_states_postgres, linked_role_states_sqlite;
    linked_roles::case_linked_role_instance_delete
        => linked_role_instance_delete_postgres, linked_role_instance_delete_sqlite;
    restart::case_restart_keeps_data => restart_keeps_data_postgres, restart_keeps_data_sqlite;
}

/// Postgres only: replicas starting together on one database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_open_postgres() {
    let db = support::TestDb::postgres().await;
    restart::case_concurrent_open(&db).await;
}
