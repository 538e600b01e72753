//! AWS error codes that mean the same thing in every service: the one list
//! both the IAM error classifier and the telemetry's throttle counter read.

/// The error codes with which AWS says "slow down".
pub const THROTTLING: [&str; 4] = [
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];

/// True for a code with which AWS says "slow down".
pub fn is_throttling(code: &str) -> bool {
    THROTTLING.contains(&code)
}
