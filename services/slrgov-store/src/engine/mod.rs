//! The two engines. Their code is one file, `shared.rs`, compiled once per
//! engine by `include!` inside `postgres.rs` and `sqlite.rs`, each of which
//! first defines the few things that differ (the `Db` type, how a
//! transaction begins, row locking, the account-scope clause, connecting).
//! Generic sqlx code over `Database` would need a wall of higher-ranked
//! bounds; this keeps one readable copy of every query with concrete types,
//! and the contract tests run against both.

pub(crate) mod postgres;
pub(crate) mod sqlite;

use chrono::{DateTime, Utc};

/// The current time at the precision both engines keep (microseconds), so
/// that what a write returns equals what a later read returns.
pub(crate) fn now() -> DateTime<Utc> {
    to_micros(Utc::now())
}

/// A time cut to microseconds, the precision both engines keep (Postgres
/// `timestamptz`; SQLite would keep nanoseconds in its text form), so that
/// both engines return the same value a write was given.
pub(crate) fn to_micros(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time)
}
