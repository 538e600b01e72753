//! What the service's telemetry sees of its AWS calls: a client span per
//! call and the call counters. The instruments come from the global meter
//! provider, which the server sets (or leaves the no-op one) before the
//! first call is made.

use std::sync::LazyLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use slrgov_domain::audit::AwsCall;

/// The instruments of the AWS calls.
struct Instruments {
    calls: Counter<u64>,
    throttles: Counter<u64>,
    retries: Counter<u64>,
}

static INSTRUMENTS: LazyLock<Instruments> = LazyLock::new(|| {
    let meter = opentelemetry::global::meter("slr-governor");
    Instruments {
        calls: meter
            .u64_counter("slrgov.aws.calls")
            .with_description("AWS calls (IAM and STS) by service, operation and outcome")
            .with_unit("{call}")
            .build(),
        throttles: meter
            .u64_counter("slrgov.aws.throttles")
            .with_description("AWS calls that AWS throttled, by service and operation")
            .with_unit("{call}")
            .build(),
        retries: meter
            .u64_counter("slrgov.aws.retries")
            .with_description(
                "AWS calls the service made again after a transient failure, by operation",
            )
            .with_unit("{call}")
            .build(),
    }
});

/// The service's name in span names (`IAM GetRole`).
fn display_service(service: &str) -> &str {
    match service {
        "iam" => "IAM",
        "sts" => "STS",
        other => other,
    }
}

/// The client span of one AWS call: `rpc.system` `aws-api` as the
/// OpenTelemetry conventions name AWS SDK calls, the account it acts in, and
/// (filled by [`end_call_span`]) its outcome and AWS request id.
pub fn call_span(service: &str, operation: &str, account: &str) -> tracing::Span {
    tracing::info_span!(
        "aws.call",
        otel.name = %format_args!("{} {operation}", display_service(service)),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        rpc.system = "aws-api",
        rpc.service = display_service(service),
        rpc.method = operation,
        cloud.account.id = account,
        aws.request_id = tracing::field::Empty,
        slrgov.aws.outcome = tracing::field::Empty,
    )
}

/// Records a call's outcome and AWS request id on its span.
pub fn end_call_span(span: &tracing::Span, outcome: &str, aws_request_id: Option<&str>) {
    span.record("slrgov.aws.outcome", outcome);
    if let Some(id) = aws_request_id {
        span.record("aws.request_id", id);
    }
    if outcome != "OK" {
        span.record("otel.status_code", "ERROR");
    }
}

/// Counts a call by service, operation and outcome, and a throttled one in
/// the throttles.
pub fn count_call(call: &AwsCall) {
    let instruments = &*INSTRUMENTS;
    let service = KeyValue::new("aws.service", call.service.clone());
    let operation = KeyValue::new("aws.operation", call.operation.clone());
    instruments.calls.add(
        1,
        &[
            service.clone(),
            operation.clone(),
            KeyValue::new("outcome", call.outcome.clone()),
        ],
    );
    if crate::codes::is_throttling(&call.outcome) {
        instruments.throttles.add(1, &[service, operation]);
    }
}

/// Counts a call the service makes again after a transient failure (its
/// own bounded retry, on top of the SDK's): `retried_by` `service`.
pub fn count_retry(service: &str, operation: &str) {
    count_retry_by(service, operation, "service");
}

fn count_retry_by(service: &str, operation: &str, by: &'static str) {
    INSTRUMENTS.retries.add(
        1,
        &[
            KeyValue::new("aws.service", service.to_ascii_lowercase()),
            KeyValue::new("aws.operation", operation.to_owned()),
            KeyValue::new("retried_by", by),
        ],
    );
}

/// The SDK's own retries counted so far in this process (for tests and
/// logs; the metric is `slrgov.aws.retries` with `retried_by` `sdk`).
static SDK_RETRIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many attempts the AWS SDK has made again so far in this process.
pub fn sdk_retries() -> u64 {
    SDK_RETRIES.load(std::sync::atomic::Ordering::Relaxed)
}

/// An SDK interceptor that counts the SDK's own retries: its adaptive
/// retry absorbs throttling and transient failures before the service sees
/// an answer, so without this they would not show.
#[derive(Debug, Clone, Copy, Default)]
pub struct SdkRetries;

impl aws_sdk_iam::config::Intercept for SdkRetries {
    fn name(&self) -> &'static str {
        "slrgov-sdk-retries"
    }

    fn read_before_attempt(
        &self,
        _context: &aws_sdk_iam::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &aws_sdk_iam::config::RuntimeComponents,
        cfg: &mut aws_sdk_iam::config::ConfigBag,
    ) -> Result<(), aws_sdk_iam::error::BoxError> {
        use aws_smithy_runtime_api::client::orchestrator::Metadata;
        use aws_smithy_runtime_api::client::retries::RequestAttempts;
        let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        if attempt > 1 {
            let (service, operation) = cfg
                .load::<Metadata>()
                .map_or(("unknown", "unknown"), |m| (m.service(), m.name()));
            SDK_RETRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(service, operation, attempt, "the AWS SDK retries a call");
            count_retry_by(service, operation, "sdk");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{SdkRetries, sdk_retries};

    /// An IAM endpoint that answers every request 503 ServiceUnavailable:
    /// the SDK retries it (3 attempts), and each retry is counted.
    #[tokio::test]
    async fn the_sdks_own_retries_are_counted() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let served = Arc::new(AtomicU32::new(0));
        {
            let served = served.clone();
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    served.fetch_add(1, Ordering::SeqCst);
                    let mut buffer = vec![0u8; 16 * 1024];
                    let _ = socket.read(&mut buffer).await;
                    let body = "<ErrorResponse><Error><Type>Receiver</Type>\
                                <Code>ServiceUnavailable</Code><Message>busy</Message></Error>\
                                <RequestId>stub</RequestId></ErrorResponse>";
                    let answer = format!(
                        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/xml\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                }
            });
        }
        let config = aws_sdk_iam::Config::builder()
            .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
            .region(aws_sdk_iam::config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::Credentials::new(
                "ANOTREAL",
                "notrealrnrELgWzOk3IfjzDKtFBhDby",
                None,
                None,
                "test",
            ))
            .endpoint_url(format!("http://{addr}"))
            .retry_config(
                aws_sdk_iam::config::retry::RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(1)),
            )
            .interceptor(SdkRetries)
            .build();
        let client = aws_sdk_iam::Client::from_conf(config);
        let before = sdk_retries();
        let result = client.get_role().role_name("x").send().await;
        assert!(result.is_err(), "the stub always fails");
        assert_eq!(
            served.load(Ordering::SeqCst),
            3,
            "three attempts reached AWS"
        );
        assert_eq!(sdk_retries() - before, 2, "two of them were retries");
    }
}
