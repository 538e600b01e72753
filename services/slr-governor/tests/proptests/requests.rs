//! One request generator per RPC (named after its method), from the
//! fixture: mostly near-valid requests with fields mutated.

use proptest::prelude::*;
use slrgov_proto::google::longrunning as lro;
use slrgov_proto::slrgov::v1 as pb;

use crate::harness::Fixture;
use crate::strategies::{
    account, account_id_any, account_name, audit_filter, collection, description, duration, etag,
    field, filter, finding_filter, instance, instance_id_any, instance_name, junk, linked_role,
    linked_role_name, mask, mutated, operation_name, owned, page_size, page_token, region_any,
    request_id, trailer,
};

// ---------------------------------------------------------------------------
// AccountService

pub fn create_account(fx: &Fixture) -> BoxedStrategy<pb::CreateAccountRequest> {
    message!(pb::CreateAccountRequest {
        account_id: account_id_any(fx),
        account: prop_oneof![1 => Just(None), 8 => account(fx, junk()).prop_map(Some)],
        request_id: request_id(),
    })
}

pub fn get_account(fx: &Fixture) -> BoxedStrategy<pb::GetAccountRequest> {
    message!(pb::GetAccountRequest {
        name: field(account_name(fx)),
    })
}

pub fn list_accounts(fx: &Fixture) -> BoxedStrategy<pb::ListAccountsRequest> {
    message!(pb::ListAccountsRequest {
        page_size: page_size(),
        page_token: page_token(fx),
    })
}

pub fn update_account(fx: &Fixture) -> BoxedStrategy<pb::UpdateAccountRequest> {
    const PATHS: &[&str] = &[
        "display_name",
        "access_role_arn",
        "external_id",
        "partition",
        "name",
        "account_id",
        "etag",
        "create_time",
        "external_id_set",
        "*",
        "",
        " display_name ",
        "display_name.x",
        "Display_Name",
    ];
    message!(pb::UpdateAccountRequest {
        account: prop_oneof![1 => Just(None), 8 => account(fx, account_name(fx)).prop_map(Some)],
        update_mask: mask(PATHS),
    })
}

pub fn delete_account(fx: &Fixture) -> BoxedStrategy<pb::DeleteAccountRequest> {
    message!(pb::DeleteAccountRequest {
        name: field(account_name(fx)),
        etag: etag(),
    })
}

// ---------------------------------------------------------------------------
// InstanceService

pub fn create_instance(fx: &Fixture) -> BoxedStrategy<pb::CreateInstanceRequest> {
    message!(pb::CreateInstanceRequest {
        parent: account_name(fx),
        instance_id: instance_id_any(fx),
        instance: prop_oneof![1 => Just(None), 8 => instance(fx, junk()).prop_map(Some)],
        request_id: request_id(),
    })
}

pub fn get_instance(fx: &Fixture) -> BoxedStrategy<pb::GetInstanceRequest> {
    message!(pb::GetInstanceRequest {
        name: instance_name(fx),
    })
}

pub fn list_instances(fx: &Fixture) -> BoxedStrategy<pb::ListInstancesRequest> {
    message!(pb::ListInstancesRequest {
        parent: prop_oneof![
            2 => Just("accounts/-".to_owned()),
            5 => account_name(fx),
            1 => owned(&["accounts/*", "accounts/--", "accounts/-/", "-", "accounts"]),
        ],
        page_size: page_size(),
        page_token: page_token(fx),
        filter: filter(),
    })
}

pub fn update_instance(fx: &Fixture) -> BoxedStrategy<pb::UpdateInstanceRequest> {
    const PATHS: &[&str] = &[
        "instance_alias",
        "instance_create_time",
        "features",
        "features.call_recordings_bucket",
        "features.exported_reports_bucket",
        "features.customer_profiles_domain",
        "features.firehose_delivery_streams",
        "features.kinesis_streams",
        "features.lex_bots",
        "features.flow_logs_log_group",
        "features.voice_id_domain",
        "features.outbound_campaigns",
        "region",
        "instance_id",
        "name",
        "linked_role_state",
        "*",
        "",
        " instance_alias ",
        "features.",
        "features.nope",
        "features.lex_bots.0",
        "etag",
        "create_time",
        "account_id",
        "Instance_Alias",
    ];
    message!(pb::UpdateInstanceRequest {
        instance: prop_oneof![1 => Just(None), 8 => instance(fx, instance_name(fx)).prop_map(Some)],
        update_mask: mask(PATHS),
        request_id: request_id(),
    })
}

pub fn delete_instance(fx: &Fixture) -> BoxedStrategy<pb::DeleteInstanceRequest> {
    message!(pb::DeleteInstanceRequest {
        name: instance_name(fx),
        etag: etag(),
        request_id: request_id(),
    })
}

// ---------------------------------------------------------------------------
// LinkedRoleService

pub fn ensure_linked_role(fx: &Fixture) -> BoxedStrategy<pb::EnsureLinkedRoleRequest> {
    message!(pb::EnsureLinkedRoleRequest {
        name: linked_role_name(fx),
        description: description(),
        validate_only: any::<bool>(),
        request_id: request_id(),
    })
}

pub fn get_linked_role(fx: &Fixture) -> BoxedStrategy<pb::GetLinkedRoleRequest> {
    message!(pb::GetLinkedRoleRequest {
        name: linked_role_name(fx),
    })
}

pub fn inspect_linked_role(fx: &Fixture) -> BoxedStrategy<pb::InspectLinkedRoleRequest> {
    message!(pb::InspectLinkedRoleRequest {
        name: linked_role_name(fx),
    })
}

pub fn update_linked_role_description(
    fx: &Fixture,
) -> BoxedStrategy<pb::UpdateLinkedRoleDescriptionRequest> {
    message!(pb::UpdateLinkedRoleDescriptionRequest {
        name: linked_role_name(fx),
        description: description(),
        etag: etag(),
        request_id: request_id(),
    })
}

pub fn update_linked_role(fx: &Fixture) -> BoxedStrategy<pb::UpdateLinkedRoleRequest> {
    const PATHS: &[&str] = &[
        "description",
        "description",
        "description",
        "name",
        "role_name",
        "etag",
        "state",
        "*",
        "",
        " description ",
        "description.x",
        "Description",
    ];
    message!(pb::UpdateLinkedRoleRequest {
        linked_role: prop_oneof![1 => Just(None), 8 => linked_role(fx).prop_map(Some)],
        update_mask: mask(PATHS),
        request_id: request_id(),
    })
}

pub fn retire_linked_role(fx: &Fixture) -> BoxedStrategy<pb::RetireLinkedRoleRequest> {
    message!(pb::RetireLinkedRoleRequest {
        name: linked_role_name(fx),
        etag: etag(),
        validate_only: any::<bool>(),
        request_id: request_id(),
    })
}

pub fn batch_ensure_linked_roles(fx: &Fixture) -> BoxedStrategy<pb::BatchEnsureLinkedRolesRequest> {
    message!(pb::BatchEnsureLinkedRolesRequest {
        parent: list_parent(fx),
        filter: filter(),
        description: description(),
        validate_only: any::<bool>(),
        request_id: request_id(),
    })
}

// ---------------------------------------------------------------------------
// RegionService

pub fn list_regions(fx: &Fixture) -> BoxedStrategy<pb::ListRegionsRequest> {
    message!(pb::ListRegionsRequest {
        page_size: page_size(),
        page_token: page_token(fx),
    })
}

pub fn get_region(_: &Fixture) -> BoxedStrategy<pb::GetRegionRequest> {
    message!(pb::GetRegionRequest {
        name: (collection("regions"), region_any(), trailer())
            .prop_map(|(c, code, t)| format!("{c}/{code}{t}")),
    })
}

// ---------------------------------------------------------------------------
// AuditService

pub fn list_audit_events(fx: &Fixture) -> BoxedStrategy<pb::ListAuditEventsRequest> {
    message!(pb::ListAuditEventsRequest {
        parent: field(account_name(fx)),
        page_size: page_size(),
        page_token: page_token(fx),
        filter: audit_filter(),
    })
}

// ---------------------------------------------------------------------------
// FindingService

fn list_parent(fx: &Fixture) -> BoxedStrategy<String> {
    prop_oneof![
        2 => Just("accounts/-".to_owned()),
        5 => account_name(fx),
        1 => owned(&["accounts/*", "accounts/--", "accounts/-/", "-", "accounts"]),
    ]
    .boxed()
}

pub fn list_findings(fx: &Fixture) -> BoxedStrategy<pb::ListFindingsRequest> {
    message!(pb::ListFindingsRequest {
        parent: list_parent(fx),
        filter: finding_filter(),
        page_size: page_size(),
        page_token: page_token(fx),
    })
}

/// A watch's resume token: none (from now), sealed ones (positions
/// before, in or past the log), edited ones, old-format ones and junk.
fn resume_token(fx: &Fixture) -> BoxedStrategy<String> {
    let formed = proptest::sample::select(fx.resume_tokens.clone()).boxed();
    prop_oneof![
        3 => Just(String::new()),
        3 => formed.clone(),
        2 => mutated(formed),
        1 => owned(&["w1", "w1.1.1", "w2.1.1", "w2.", "w1.1.1.1", "w2.ffffffffffffffffff"]),
        1 => junk(),
    ]
    .boxed()
}

pub fn watch_instances(fx: &Fixture) -> BoxedStrategy<pb::WatchInstancesRequest> {
    message!(pb::WatchInstancesRequest {
        parent: list_parent(fx),
        filter: filter(),
        resume_token: resume_token(fx),
    })
}

pub fn watch_linked_roles(fx: &Fixture) -> BoxedStrategy<pb::WatchLinkedRolesRequest> {
    message!(pb::WatchLinkedRolesRequest {
        parent: list_parent(fx),
        resume_token: resume_token(fx),
    })
}

pub fn get_fleet_summary(fx: &Fixture) -> BoxedStrategy<pb::GetFleetSummaryRequest> {
    message!(pb::GetFleetSummaryRequest {
        parent: list_parent(fx),
    })
}

// ---------------------------------------------------------------------------
// google.longrunning.Operations

pub fn list_operations(fx: &Fixture) -> BoxedStrategy<lro::ListOperationsRequest> {
    message!(lro::ListOperationsRequest {
        name: prop_oneof![
            6 => Just(String::new()),
            2 => Just("operations".to_owned()),
            2 => mutated(Just("operations".to_owned()).boxed()),
            1 => junk(),
        ],
        filter: prop_oneof![6 => Just(String::new()), 1 => filter()],
        page_size: page_size(),
        page_token: page_token(fx),
        return_partial_success: any::<bool>(),
    })
}

pub fn get_operation(fx: &Fixture) -> BoxedStrategy<lro::GetOperationRequest> {
    message!(lro::GetOperationRequest {
        name: operation_name(fx),
    })
}

pub fn delete_operation(fx: &Fixture) -> BoxedStrategy<lro::DeleteOperationRequest> {
    message!(lro::DeleteOperationRequest {
        name: operation_name(fx),
    })
}

pub fn cancel_operation(fx: &Fixture) -> BoxedStrategy<lro::CancelOperationRequest> {
    message!(lro::CancelOperationRequest {
        name: operation_name(fx),
    })
}

pub fn wait_operation(fx: &Fixture) -> BoxedStrategy<lro::WaitOperationRequest> {
    message!(lro::WaitOperationRequest {
        name: operation_name(fx),
        timeout: duration(),
    })
}
