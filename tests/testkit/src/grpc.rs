//! What a test reads off a gRPC answer: the code, ErrorInfo and BadRequest
//! of a refusal; and the ids tests make.

use tonic_types::StatusExt;

/// What a refused call carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: tonic::Code,
    pub reason: String,
    pub domain: String,
    pub fields: Vec<String>,
    pub message: String,
}

/// Reads the code, ErrorInfo and BadRequest of a status.
pub fn refusal(status: &tonic::Status) -> Refusal {
    let info = status.get_details_error_info();
    Refusal {
        code: status.code(),
        reason: info.as_ref().map(|i| i.reason.clone()).unwrap_or_default(),
        domain: info.map(|i| i.domain).unwrap_or_default(),
        fields: status
            .get_details_bad_request()
            .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
            .unwrap_or_default(),
        message: status.message().to_owned(),
    }
}

/// Expects a call to fail, and returns what it carried.
#[track_caller]
pub fn refused<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> Refusal {
    match result {
        Ok(response) => panic!("expected a refusal, got {:?}", response.into_inner()),
        Err(status) => refusal(&status),
    }
}

/// A 12-digit account id made from `n`.
pub fn account_id(n: u32) -> String {
    format!("{:012}", 100_000_000_000u64 + u64::from(n))
}

/// A random instance id.
pub fn instance_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The resource name of the linked role of instance `id` of `account`.
pub fn linked_role_name(account: &str, id: &str) -> String {
    format!("accounts/{account}/instances/{id}/linkedRole")
}
