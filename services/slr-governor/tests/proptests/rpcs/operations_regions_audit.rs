//! RegionService, AuditService, FindingService and
//! google.longrunning.Operations, one test per RPC.

use slr_governor::api::audit::Audit;
use slr_governor::api::findings::Findings;
use slr_governor::api::operations::Operations;
use slr_governor::api::regions::Regions;
use slrgov_proto::google::longrunning::operations_server::Operations as _;
use slrgov_proto::slrgov::v1::audit_service_server::AuditService as _;
use slrgov_proto::slrgov::v1::finding_service_server::FindingService as _;
use slrgov_proto::slrgov::v1::region_service_server::RegionService as _;

use crate::checks::Spec;

rpc_test!(
    region_service_list_regions: Regions::list_regions,
    Spec::reads("RegionService/ListRegions", &["page_size", "page_token"]),
);

rpc_test!(
    region_service_get_region: Regions::get_region,
    Spec::reads("RegionService/GetRegion", &["name"]),
);

rpc_test!(
    audit_service_list_audit_events: Audit::list_audit_events,
    Spec::reads(
        "AuditService/ListAuditEvents",
        &["parent", "page_size", "page_token", "filter"],
    ),
);

rpc_test!(
    finding_service_list_findings: Findings::list_findings,
    Spec::reads(
        "FindingService/ListFindings",
        &["parent", "filter", "page_size", "page_token"],
    ),
);

rpc_test!(
    finding_service_get_fleet_summary: Findings::get_fleet_summary,
    Spec::reads("FindingService/GetFleetSummary", &["parent"]),
);

rpc_test!(
    operations_list_operations: Operations::list_operations,
    Spec::reads(
        "Operations/ListOperations",
        &["name", "filter", "page_size", "page_token", "return_partial_success"],
    ),
);

rpc_test!(
    operations_get_operation: Operations::get_operation,
    Spec::reads("Operations/GetOperation", &["name"]),
);

rpc_test!(
    operations_delete_operation: Operations::delete_operation,
    Spec::writes("Operations/DeleteOperation", &["name"]).unimplemented(),
);

rpc_test!(
    operations_cancel_operation: Operations::cancel_operation,
    Spec::writes("Operations/CancelOperation", &["name"]),
);

rpc_test!(
    operations_wait_operation: Operations::wait_operation,
    Spec::reads("Operations/WaitOperation", &["name", "timeout"]),
);
