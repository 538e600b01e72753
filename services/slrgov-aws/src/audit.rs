//! Notes every AWS call in the audit trail of the request (or unit of
//! background work) that made it: the trail is carried in a task-local set
//! by [`recording`], so the IAM trait and the fault layer need no extra
//! parameter, and a call made outside any request is simply not noted.

use std::future::Future;

use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::operation::RequestId;
use slrgov_domain::audit::{AuditTrail, AwsCall};

tokio::task_local! {
    static TRAIL: AuditTrail;
}

/// Runs `work` with AWS calls noted in `trail`.
pub async fn recording<F: Future>(trail: AuditTrail, work: F) -> F::Output {
    TRAIL.scope(trail, work).await
}

/// Notes a call in the current trail, if any.
pub fn note(call: AwsCall) {
    let _ = TRAIL.try_with(|trail| trail.push_call(call));
}

/// Notes the call `operation` of `service` with its outcome and AWS request
/// id, and hands the result back.
pub fn noted<T, E, R>(
    service: &str,
    operation: &str,
    result: Result<T, SdkError<E, R>>,
) -> Result<T, SdkError<E, R>>
where
    T: RequestId,
    SdkError<E, R>: RequestId,
    E: ProvideErrorMetadata,
{
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
    note(AwsCall {
        service: service.to_owned(),
        operation: operation.to_owned(),
        outcome,
        aws_request_id,
    });
    result
}
