//! InstanceService, one test per RPC.

use slr_governor::api::instances::Instances;
use slrgov_proto::slrgov::v1::instance_service_server::InstanceService as _;

use crate::checks::Spec;

rpc_test!(
    instance_service_create_instance: Instances::create_instance,
    Spec::writes(
        "InstanceService/CreateInstance",
        &["parent", "instance_id", "instance", "request_id"],
    ),
);

rpc_test!(
    instance_service_get_instance: Instances::get_instance,
    Spec::reads("InstanceService/GetInstance", &["name"]),
);

rpc_test!(
    instance_service_list_instances: Instances::list_instances,
    Spec::reads(
        "InstanceService/ListInstances",
        &["parent", "page_size", "page_token", "filter"],
    ),
);

rpc_test!(
    instance_service_watch_instances: Instances::watch_instances,
    Spec::reads(
        "InstanceService/WatchInstances",
        &["parent", "filter", "resume_token"],
    ),
);

rpc_test!(
    instance_service_update_instance: Instances::update_instance,
    Spec::writes("InstanceService/UpdateInstance", &["instance", "update_mask", "request_id"]),
);

// Does not reach IAM: a role that is ACTIVE would be retired through IAM,
// but the fixture's roles are all ABSENT, so no deletion reaches IAM.
rpc_test!(
    instance_service_delete_instance: Instances::delete_instance,
    Spec::writes("InstanceService/DeleteInstance", &["name", "etag", "request_id"]),
);
