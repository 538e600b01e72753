//! Where Amazon Connect is available, from AWS itself: the SSM public
//! parameters of the global infrastructure
//! (`/aws/service/global-infrastructure/services/connect/regions`, one
//! parameter per region, whose value is the region code), read with the
//! service's own credentials.

use aws_config::SdkConfig;

/// The parameter path that lists the regions of Amazon Connect.
pub const CONNECT_REGIONS_PATH: &str =
    "/aws/service/global-infrastructure/services/connect/regions";

/// Why the regions could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the regions of Amazon Connect from SSM: {0}")]
pub struct RegionsError(pub String);

/// The region codes where Amazon Connect is available, every page of
/// GetParametersByPath (SSM in `us-east-1`: the global infrastructure
/// parameters are the same in every region).
pub async fn connect_regions(base: &SdkConfig) -> Result<Vec<String>, RegionsError> {
    let config = base
        .to_builder()
        .region(aws_config::Region::new("us-east-1"))
        .build();
    let client = aws_sdk_ssm::Client::from_conf(
        aws_sdk_ssm::config::Builder::from(&config)
            .interceptor(crate::telemetry::SdkRetries)
            .build(),
    );
    let mut regions = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let output = crate::audit::noted(
            "ssm",
            "GetParametersByPath",
            "",
            client
                .get_parameters_by_path()
                .path(CONNECT_REGIONS_PATH)
                .set_next_token(token.take())
                .send(),
        )
        .await
        .map_err(|e| {
            use aws_sdk_ssm::error::ProvideErrorMetadata;
            RegionsError(match e.code() {
                Some(code) => format!("{code}: {}", e.message().unwrap_or_default()),
                None => e.to_string(),
            })
        })?;
        regions.extend(
            output
                .parameters()
                .iter()
                .filter_map(|p| p.value())
                .map(str::to_owned),
        );
        match output.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => break,
        }
    }
    regions.sort();
    regions.dedup();
    Ok(regions)
}
