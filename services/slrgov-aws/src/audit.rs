//! Notes every AWS call in the audit trail of the request (or unit of
//! background work) that made it: the trail is carried in a task-local set
//! by [`recording`], so the IAM trait and the fault layer need no extra
//! parameter, and a call made outside any request is simply not noted.

use std::future::Future;

use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::operation::RequestId;
use slrgov_domain::audit::{AuditTrail, AwsCall};
use tracing::Instrument;

tokio::task_local! {
    static TRAIL: AuditTrail;
}

/// Runs `work` with AWS calls noted in `trail`.
pub async fn recording<F: Future>(trail: AuditTrail, work: F) -> F::Output {
    TRAIL.scope(trail, work).await
}

/// Notes a call in the current trail, if any, and counts it in the
/// service's metrics (`slrgov.aws.calls`, and `slrgov.aws.throttles` when
/// AWS throttled it).
pub fn note(call: AwsCall) {
    crate::telemetry::count_call(&call);
    let _ = TRAIL.try_with(|trail| trail.push_call(call));
}

/// Makes the call `operation` of `service` in `account` inside its own
/// client span (`IAM GetRole`, with the account, the outcome and the AWS
/// request id), notes it with its outcome and AWS request id, and hands the
/// result back.
pub async fn noted<T, E, R, F>(
    service: &'static str,
    operation: &'static str,
    account: &str,
    call: F,
) -> Result<T, SdkError<E, R>>
where
    F: Future<Output = Result<T, SdkError<E, R>>>,
    T: RequestId,
    SdkError<E, R>: RequestId,
    E: ProvideErrorMetadata,
{
    let span = crate::telemetry::call_span(service, operation, account);
    let result = call.instrument(span.clone()).await;
    let (outcome, aws_request_id) = match &result {
        Ok(output) => ("OK".to_owned(), output.request_id().map(str::to_owned)),
        Err(error) => {
            let code = match error {
                SdkError::ServiceError(_) => error.code().unwrap_or("Unknown").to_owned(),
                SdkError::TimeoutError(_) => "Timeout".to_owned(),
                SdkError::DispatchFailure(_) => "DispatchFailure".to_owned(),
                _ => "ResponseError".to_owned(),
            };
            (code, error.request_id().map(str::to_owned))
        }
    };
    crate::telemetry::end_call_span(&span, &outcome, aws_request_id.as_deref());
    note(AwsCall {
        service: service.to_owned(),
        operation: operation.to_owned(),
        outcome,
        aws_request_id,
    });
    result
}
