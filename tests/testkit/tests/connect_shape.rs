//! The Connect shape layer gives moto real Connect's shape: aws-sdk-connect
//! parses ListInstances and DescribeInstance through it, each instance
//! reports its own service-linked role (which exists in moto's IAM), legacy
//! instances have none, and planned faults come as the SDK reads them.

use aws_config::retry::RetryConfig;
use aws_sdk_connect::error::ProvideErrorMetadata;
use aws_sdk_connect::types::InstanceSummary;
use slrgov_testkit::{
    ConnectShape, CreatedInstance, LEGACY_CREATED_EPOCH, Moto, connect_role_suffix, sdk_config,
};

const TENANT: &str = "210987654321";

/// A Connect client of the shape proxy in `region`, the SDK's retries off
/// (everything but Connect, i.e. STS for `assume`, goes to moto directly).
async fn client(
    moto: &Moto,
    shape: &ConnectShape,
    assume: Option<&str>,
    region: &str,
) -> aws_sdk_connect::Client {
    let base = sdk_config(&moto.url, assume, region).await;
    let config = aws_sdk_connect::config::Builder::from(&base)
        .endpoint_url(&shape.url)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_connect::Client::from_conf(config)
}

async fn list(client: &aws_sdk_connect::Client) -> Vec<InstanceSummary> {
    client
        .list_instances()
        .send()
        .await
        .expect("ListInstances through the shape proxy")
        .instance_summary_list()
        .to_vec()
}

fn find<'a>(list: &'a [InstanceSummary], created: &CreatedInstance) -> &'a InstanceSummary {
    list.iter()
        .find(|s| s.id() == Some(created.id.as_str()))
        .unwrap_or_else(|| panic!("{} is not listed", created.id))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

#[tokio::test]
async fn connect_through_the_shape_layer_has_real_connect_s_shape() {
    let moto = Moto::start().await;
    let shape = ConnectShape::start(&moto, None).await;
    let tenant_role = format!("arn:aws:iam::{TENANT}:role/SlrGovernor");

    let normal = moto
        .create_connect_instance(None, "us-east-1", "shape-normal")
        .await;
    let legacy = moto
        .create_connect_instance(None, "us-east-1", "legacy-shape")
        .await;
    let west = moto
        .create_connect_instance(None, "eu-west-2", "shape-west")
        .await;
    let tenant = moto
        .create_connect_instance(Some(&tenant_role), "us-east-1", "shape-tenant")
        .await;

    // The helper made each non-legacy instance's own role, in its account.
    let suffix = connect_role_suffix(&normal.id);
    assert_eq!(
        normal.role_name.as_deref(),
        Some(format!("AWSServiceRoleForconnect_{suffix}").as_str())
    );
    assert_eq!(
        normal.role_arn.as_deref(),
        Some(
            format!(
                "arn:aws:iam::123456789012:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForconnect_{suffix}"
            )
            .as_str()
        )
    );
    assert_eq!(legacy.role_name, None);
    assert_eq!(legacy.role_arn, None);
    assert!(
        tenant
            .role_arn
            .as_deref()
            .is_some_and(|arn| arn.starts_with(&format!("arn:aws:iam::{TENANT}:role/"))),
        "{tenant:?}"
    );
    let home_iam = moto.iam(None).await;
    for created in [&normal, &west] {
        let role = home_iam
            .get_role()
            .role_name(created.role_name.as_deref().expect("a role"))
            .send()
            .await
            .expect("the instance's role exists in moto's IAM");
        assert_eq!(
            role.role().map(|r| r.arn()),
            created.role_arn.as_deref(),
            "{created:?}"
        );
    }
    let tenant_iam = moto.iam(Some(&tenant_role)).await;
    tenant_iam
        .get_role()
        .role_name(tenant.role_name.as_deref().expect("a role"))
        .send()
        .await
        .expect("the tenant instance's role exists in the tenant account");

    // ListInstances parses, with each instance's own role and epoch times.
    let east = client(&moto, &shape, None, "us-east-1").await;
    let listed = list(&east).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let n = find(&listed, &normal);
    assert_eq!(n.arn(), Some(normal.arn.as_str()));
    assert_eq!(n.service_role(), normal.role_arn.as_deref());
    let created = n.created_time().expect("CreatedTime").secs();
    assert!((created - now()).abs() < 600, "created at {created}");
    let l = find(&listed, &legacy);
    assert_eq!(l.service_role(), None);
    assert_eq!(
        l.created_time().map(|t| t.secs()),
        Some(LEGACY_CREATED_EPOCH)
    );
    assert_eq!(l.instance_alias(), Some("legacy-shape"));

    // DescribeInstance agrees.
    for (created, summary) in [(&normal, n), (&legacy, l)] {
        let described = east
            .describe_instance()
            .instance_id(&created.id)
            .send()
            .await
            .expect("DescribeInstance through the shape proxy");
        let instance = described.instance().expect("Instance");
        assert_eq!(instance.id(), Some(created.id.as_str()));
        assert_eq!(instance.arn(), Some(created.arn.as_str()));
        assert_eq!(instance.service_role(), created.role_arn.as_deref());
        assert_eq!(instance.service_role(), summary.service_role());
        assert_eq!(instance.created_time(), summary.created_time());
    }

    // An unknown instance is moto's ResourceNotFoundException, as the SDK
    // models it.
    let missing = east
        .describe_instance()
        .instance_id("00000000-0000-4000-8000-000000000000")
        .send()
        .await
        .expect_err("an unknown instance");
    let missing = missing.into_service_error();
    assert!(missing.is_resource_not_found_exception(), "{missing:?}");
    assert_eq!(missing.code(), Some("ResourceNotFoundException"));

    // Regions and accounts stay apart; the role's account is the instance's.
    let west_list = list(&client(&moto, &shape, None, "eu-west-2").await).await;
    assert_eq!(west_list.len(), 1, "{west_list:?}");
    assert_eq!(
        find(&west_list, &west).service_role(),
        west.role_arn.as_deref()
    );
    let tenant_list = list(&client(&moto, &shape, Some(&tenant_role), "us-east-1").await).await;
    assert_eq!(tenant_list.len(), 1, "{tenant_list:?}");
    assert_eq!(
        find(&tenant_list, &tenant).service_role(),
        tenant.role_arn.as_deref()
    );

    // Every Connect call was counted (the helpers went to moto directly;
    // the tenant's STS call went to moto, and would not be counted anyway).
    assert_eq!(
        shape.calls().await,
        vec![
            ("DescribeInstance".to_owned(), "us-east-1".to_owned(), 3),
            ("ListInstances".to_owned(), "eu-west-2".to_owned(), 1),
            ("ListInstances".to_owned(), "us-east-1".to_owned(), 2),
        ]
    );

    // A deleted instance is gone from Connect; its role stays in IAM.
    moto.delete_connect_instance(None, "eu-west-2", &west.id)
        .await;
    assert!(
        list(&client(&moto, &shape, None, "eu-west-2").await)
            .await
            .is_empty()
    );
    home_iam
        .get_role()
        .role_name(west.role_name.as_deref().expect("a role"))
        .send()
        .await
        .expect("the deleted instance's role is left alone");
}

#[tokio::test]
async fn planned_faults_come_as_real_connect_sends_them() {
    let moto = Moto::start().await;
    moto.create_connect_instance(None, "us-east-1", "faults-normal")
        .await;
    moto.create_connect_instance(None, "us-east-1", "legacy-faults")
        .await;
    moto.create_connect_instance(None, "eu-west-2", "faults-west")
        .await;
    let shape = ConnectShape::start(
        &moto,
        Some(serde_json::json!({
            "throttle": {"ListInstances": 1},
            "access_denied": ["eu-west-2"],
            "not_enabled": ["af-south-1"],
        })),
    )
    .await;

    // The first ListInstances is throttled (retries are off), the second
    // answers.
    let east = client(&moto, &shape, None, "us-east-1").await;
    let throttled = east
        .list_instances()
        .send()
        .await
        .expect_err("the first ListInstances is throttled");
    let throttled = throttled.into_service_error();
    assert_eq!(
        throttled.code(),
        Some("ThrottlingException"),
        "{throttled:?}"
    );
    assert_eq!(throttled.message(), Some("Rate exceeded"));
    assert_eq!(list(&east).await.len(), 2);

    // eu-west-2 is denied; af-south-1 is not enabled.
    let denied = client(&moto, &shape, None, "eu-west-2")
        .await
        .list_instances()
        .send()
        .await
        .expect_err("eu-west-2 is denied")
        .into_service_error();
    assert_eq!(denied.code(), Some("AccessDeniedException"), "{denied:?}");
    assert!(
        denied
            .message()
            .is_some_and(|m| m.contains("is not authorized to perform: connect:ListInstances")),
        "{denied:?}"
    );
    let not_enabled = client(&moto, &shape, None, "af-south-1")
        .await
        .list_instances()
        .send()
        .await
        .expect_err("af-south-1 is not enabled")
        .into_service_error();
    assert_eq!(
        not_enabled.code(),
        Some("UnrecognizedClientException"),
        "{not_enabled:?}"
    );

    // Faulted calls count too; no call went to a region nobody asked about.
    assert_eq!(
        shape.calls().await,
        vec![
            ("ListInstances".to_owned(), "af-south-1".to_owned(), 1),
            ("ListInstances".to_owned(), "eu-west-2".to_owned(), 1),
            ("ListInstances".to_owned(), "us-east-1".to_owned(), 2),
        ]
    );
    assert_eq!(shape.count("ListInstances", "us-east-1").await, 2);
    assert_eq!(shape.count_in("ap-southeast-2").await, 0);
}
