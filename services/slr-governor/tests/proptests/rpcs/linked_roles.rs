//! LinkedRoleService, one test per RPC.

use slr_governor::api::linked_roles::LinkedRoles;
use slrgov_proto::slrgov::v1::linked_role_service_server::LinkedRoleService as _;

use crate::checks::Spec;

rpc_test!(
    linked_role_service_ensure_linked_role: LinkedRoles::ensure_linked_role,
    Spec::writes(
        "LinkedRoleService/EnsureLinkedRole",
        &["name", "description", "validate_only", "request_id"],
    )
    .reaching_iam(),
);

rpc_test!(
    linked_role_service_get_linked_role: LinkedRoles::get_linked_role,
    Spec::reads("LinkedRoleService/GetLinkedRole", &["name"]),
);

rpc_test!(
    linked_role_service_inspect_linked_role: LinkedRoles::inspect_linked_role,
    Spec::reads("LinkedRoleService/InspectLinkedRole", &["name"]).reaching_iam(),
);

rpc_test!(
    linked_role_service_update_linked_role_description:
        LinkedRoles::update_linked_role_description,
    Spec::writes(
        "LinkedRoleService/UpdateLinkedRoleDescription",
        &["name", "description", "etag", "request_id"],
    )
    .reaching_iam(),
);

rpc_test!(
    linked_role_service_update_linked_role: LinkedRoles::update_linked_role,
    Spec::writes(
        "LinkedRoleService/UpdateLinkedRole",
        &["linked_role", "update_mask", "request_id"],
    )
    .reaching_iam(),
);

rpc_test!(
    linked_role_service_retire_linked_role: LinkedRoles::retire_linked_role,
    Spec::writes(
        "LinkedRoleService/RetireLinkedRole",
        &["name", "etag", "validate_only", "request_id"],
    )
    .reaching_iam(),
);

rpc_test!(
    linked_role_service_batch_ensure_linked_roles: LinkedRoles::batch_ensure_linked_roles,
    Spec::writes(
        "LinkedRoleService/BatchEnsureLinkedRoles",
        &["parent", "filter", "description", "validate_only", "request_id"],
    ),
);

rpc_test!(
    linked_role_service_watch_linked_roles: LinkedRoles::watch_linked_roles,
    Spec::reads(
        "LinkedRoleService/WatchLinkedRoles",
        &["parent", "resume_token"],
    ),
);
