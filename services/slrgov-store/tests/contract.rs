//! The store contract: every case runs against both engines, each time on a
//! fresh database (a new Postgres database per test, a new SQLite file per
//! test), so the two engines are held to one behaviour.
//!
//! Postgres is reached through `DATABASE_URL` (an admin URL; default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates and
//! drops its own `slrgov_test_<hex>` database.

#[path = "contract/flows.rs"]
mod flows;
#[path = "contract/support.rs"]
mod support;

#[path = "contract/accounts.rs"]
mod accounts;
#[path = "contract/activations.rs"]
mod activations;
#[path = "contract/audit.rs"]
mod audit;
#[path = "contract/batches.rs"]
mod batches;
#[path = "contract/changes.rs"]
mod changes;
#[path = "contract/concurrency.rs"]
mod concurrency;
#[path = "contract/discovery.rs"]
mod discovery;
#[path = "contract/ensures.rs"]
mod ensures;
#[path = "contract/findings.rs"]
mod findings;
#[path = "contract/fleet.rs"]
mod fleet;
#[path = "contract/idempotency.rs"]
mod idempotency;
#[path = "contract/instance_deletes.rs"]
mod instance_deletes;
#[path = "contract/instances.rs"]
mod instances;
#[path = "contract/linked_roles.rs"]
mod linked_roles;
#[path = "contract/list_plans.rs"]
mod list_plans;
#[path = "contract/operations.rs"]
mod operations;
#[path = "contract/pagination.rs"]
mod pagination;
#[path = "contract/rate_buckets.rs"]
mod rate_buckets;
#[path = "contract/reconcile.rs"]
mod reconcile;
#[path = "contract/request_ids.rs"]
mod request_ids;
#[path = "contract/restart.rs"]
mod restart;
#[path = "contract/retirements.rs"]
mod retirements;
#[path = "contract/rls.rs"]
mod rls;
#[path = "contract/round_trips.rs"]
mod round_trips;
#[path = "contract/scoping.rs"]
mod scoping;
#[path = "contract/workflows.rs"]
mod workflows;

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

    discovery::case_observe_registers_updates_and_vanishes
        => observe_registers_updates_and_vanishes_postgres,
           observe_registers_updates_and_vanishes_sqlite;
    discovery::case_observe_needs_an_operator_of_the_account
        => observe_needs_an_operator_postgres, observe_needs_an_operator_sqlite;
    discovery::case_discovery_filters => discovery_filters_postgres, discovery_filters_sqlite;
    discovery::case_an_older_listing_vanishes_nothing_a_newer_one_saw
        => an_older_listing_vanishes_nothing_postgres, an_older_listing_vanishes_nothing_sqlite;
    discovery::case_one_sync_per_account => one_sync_per_account_postgres, one_sync_per_account_sqlite;
    discovery::case_sync_request_ids_replay
        => sync_request_ids_replay_postgres, sync_request_ids_replay_sqlite;
    discovery::case_syncs_due => syncs_due_postgres, syncs_due_sqlite;
    accounts::case_etags => etags_postgres, etags_sqlite;

    findings::case_finding_lifecycle => finding_lifecycle_postgres, finding_lifecycle_sqlite;
    findings::case_finding_scopes => finding_scopes_postgres, finding_scopes_sqlite;
    findings::case_finding_tenancy => finding_tenancy_postgres, finding_tenancy_sqlite;
    findings::case_finding_filters_and_pages
        => finding_filters_and_pages_postgres, finding_filters_and_pages_sqlite;
    fleet::case_fleet_summary => fleet_summary_postgres, fleet_summary_sqlite;
    reconcile::case_reconcile_passes => reconcile_passes_postgres, reconcile_passes_sqlite;
    reconcile::case_reconcile_sweep_and_lag => reconcile_sweep_and_lag_postgres, reconcile_sweep_and_lag_sqlite;
    batches::case_batch_begin => batch_begin_postgres, batch_begin_sqlite;
    batches::case_workflow_cancel => workflow_cancel_postgres, workflow_cancel_sqlite;

    scoping::case_scope_hides_other_accounts
        => scope_hides_other_accounts_postgres, scope_hides_other_accounts_sqlite;
    scoping::case_roles => roles_postgres, roles_sqlite;

    concurrency::case_concurrent_updates => concurrent_updates_postgres, concurrent_updates_sqlite;
    concurrency::case_account_delete_races_instance_create
        => account_delete_races_instance_create_postgres,
           account_delete_races_instance_create_sqlite;

    pagination::case_account_pages => account_pages_postgres, account_pages_sqlite;
    pagination::case_default_page_size => default_page_size_postgres, default_page_size_sqlite;
    pagination::case_instance_pages => instance_pages_postgres, instance_pages_sqlite;
    pagination::case_pages_stable_under_inserts
        => pages_stable_under_inserts_postgres, pages_stable_under_inserts_sqlite;

    instances::case_instance_filters => instance_filters_postgres, instance_filters_sqlite;
    instances::case_filter_matches_agrees_with_the_list
        => filter_matches_agrees_postgres, filter_matches_agrees_sqlite;
    instances::case_partition_checks => partition_checks_postgres, partition_checks_sqlite;
    instances::case_instance_update_mask
        => instance_update_mask_postgres, instance_update_mask_sqlite;
    instances::case_instance_create_time_precision
        => instance_create_time_precision_postgres, instance_create_time_precision_sqlite;
    instances::case_list_under_missing_account
        => list_under_missing_account_postgres, list_under_missing_account_sqlite;

    instance_deletes::case_account_delete_refused_with_instances
        => account_delete_refused_with_instances_postgres,
           account_delete_refused_with_instances_sqlite;
    instance_deletes::case_instance_delete => instance_delete_postgres, instance_delete_sqlite;

    idempotency::case_request_id_replays_first_response
        => request_id_replays_first_response_postgres, request_id_replays_first_response_sqlite;
    idempotency::case_request_ids_are_per_account
        => request_ids_are_per_account_postgres, request_ids_are_per_account_sqlite;
    idempotency::case_failed_request_does_not_burn_id
        => failed_request_does_not_burn_id_postgres, failed_request_does_not_burn_id_sqlite;
    idempotency::case_concurrent_retries_create_once
        => concurrent_retries_create_once_postgres, concurrent_retries_create_once_sqlite;
    idempotency::case_request_ids_are_per_principal
        => request_ids_are_per_principal_postgres, request_ids_are_per_principal_sqlite;
    idempotency::case_request_id_other_method
        => request_id_other_method_postgres, request_id_other_method_sqlite;

    request_ids::case_request_id_lookup_record
        => request_id_lookup_record_postgres, request_id_lookup_record_sqlite;
    request_ids::case_ensure_id_after_failed_workflow
        => ensure_id_after_failed_workflow_postgres, ensure_id_after_failed_workflow_sqlite;

    linked_roles::case_linked_role_get_absent
        => linked_role_get_absent_postgres, linked_role_get_absent_sqlite;
    linked_roles::case_linked_role_set_description
        => linked_role_set_description_postgres, linked_role_set_description_sqlite;
    linked_roles::case_account_access
        => linked_role_account_access_postgres, linked_role_account_access_sqlite;
    linked_roles::case_linked_role_roles => linked_role_roles_postgres, linked_role_roles_sqlite;

    ensures::case_begin_ensure_new => begin_ensure_new_postgres, begin_ensure_new_sqlite;
    ensures::case_begin_ensure_states
        => begin_ensure_states_postgres, begin_ensure_states_sqlite;
    ensures::case_linked_role_races => linked_role_races_postgres, linked_role_races_sqlite;
    ensures::case_begin_ensure_waits_for_not_before
        => begin_ensure_waits_for_not_before_postgres, begin_ensure_waits_for_not_before_sqlite;

    activations::case_linked_role_activate
        => linked_role_activate_postgres, linked_role_activate_sqlite;
    activations::case_linked_role_activate_needs_fence
        => linked_role_activate_needs_fence_postgres, linked_role_activate_needs_fence_sqlite;
    activations::case_linked_role_owned_elsewhere
        => linked_role_owned_elsewhere_postgres, linked_role_owned_elsewhere_sqlite;
    activations::case_linked_role_abandon
        => linked_role_abandon_postgres, linked_role_abandon_sqlite;

    retirements::case_begin_retire => begin_retire_postgres, begin_retire_sqlite;
    retirements::case_deletion_started => deletion_started_postgres, deletion_started_sqlite;
    retirements::case_retired => retired_postgres, retired_sqlite;
    retirements::case_restore => restore_postgres, restore_sqlite;
    retirements::case_retirement_roles
        => retirement_roles_postgres, retirement_roles_sqlite;

    workflows::case_workflow_save => workflow_save_postgres, workflow_save_sqlite;
    workflows::case_workflow_renew => workflow_renew_postgres, workflow_renew_sqlite;
    workflows::case_workflow_claim_due => workflow_claim_due_postgres, workflow_claim_due_sqlite;
    workflows::case_workflow_claims_disjoint
        => workflow_claims_disjoint_postgres, workflow_claims_disjoint_sqlite;
    workflows::case_workflow_release_all
        => workflow_release_all_postgres, workflow_release_all_sqlite;

    operations::case_workflow_operations
        => workflow_operations_postgres, workflow_operations_sqlite;
    operations::case_instance_delete_records_workflow
        => instance_delete_records_workflow_postgres, instance_delete_records_workflow_sqlite;
    operations::case_gauges => gauges_postgres, gauges_sqlite;
    rate_buckets::case_rate_reserve => rate_reserve_postgres, rate_reserve_sqlite;
    rate_buckets::case_rate_refund => rate_refund_postgres, rate_refund_sqlite;

    audit::case_audit_event_per_mutation
        => audit_event_per_mutation_postgres, audit_event_per_mutation_sqlite;
    audit::case_audit_scope => audit_scope_postgres, audit_scope_sqlite;

    changes::case_linked_role_changes
        => changes_linked_roles_postgres, changes_linked_roles_sqlite;
    changes::case_linked_role_changes_of_deleted_instances
        => changes_of_deleted_instances_postgres, changes_of_deleted_instances_sqlite;
    changes::case_change_scoping => changes_scoping_postgres, changes_scoping_sqlite;
    changes::case_change_pages => changes_pages_postgres, changes_pages_sqlite;
    changes::case_change_sweep => changes_sweep_postgres, changes_sweep_sqlite;
}

contract_db! {
    audit::case_audit_is_append_only => audit_is_append_only_postgres, audit_is_append_only_sqlite;
    accounts::case_external_id_is_stored
        => external_id_is_stored_postgres, external_id_is_stored_sqlite;
    instance_deletes::case_linked_role_states
        => linked_role_states_postgres, linked_role_states_sqlite;
    instance_deletes::case_linked_role_instance_delete
        => linked_role_instance_delete_postgres, linked_role_instance_delete_sqlite;
    retirements::case_retire_owned_elsewhere
        => retire_owned_elsewhere_postgres, retire_owned_elsewhere_sqlite;
    request_ids::case_request_id_expiry => request_id_expiry_postgres, request_id_expiry_sqlite;
    restart::case_restart_keeps_data => restart_keeps_data_postgres, restart_keeps_data_sqlite;
    batches::case_migration_keeps_workflows
        => migration_keeps_workflows_postgres, migration_keeps_workflows_sqlite;
    changes::case_instance_changes => changes_instances_postgres, changes_instances_sqlite;
    changes::case_change_signal => changes_signal_postgres, changes_signal_sqlite;
}

/// Postgres only: replicas starting together on one database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_open_postgres() {
    let db = support::TestDb::postgres().await;
    restart::case_concurrent_open(&db).await;
}

/// Postgres only: a change waits for the older transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_wait_for_older_transactions_postgres() {
    let db = support::TestDb::postgres().await;
    changes::case_older_transactions_first(&db).await;
}
