//! Database errors to domain errors, in one place (in the manner of
//! quickwit's `metastore/postgres/error.rs`). The cause is logged here, once;
//! the caller gets a message without internals.

use std::time::Duration;

use slrgov_domain::{Error, Reason};

/// Maps a database error that no caller handled specifically.
pub(crate) fn db_error(error: sqlx::Error) -> Error {
    match &error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => {
            tracing::warn!(error = %error, "database unavailable");
            Error::unavailable(
                Reason::Unavailable,
                "the database is unavailable; retry",
                Duration::from_secs(1),
            )
        }
        // The server is shutting down, restarting or out of connections,
        // or the connection broke: another attempt soon may well succeed.
        sqlx::Error::Database(db) if is_connection_lost(db.as_ref()) => {
            tracing::warn!(error = %error, "database unavailable");
            Error::unavailable(
                Reason::Unavailable,
                "the database is unavailable; retry",
                Duration::from_secs(1),
            )
        }
        sqlx::Error::Database(db) if is_busy(db.as_ref()) => {
            tracing::warn!(error = %error, "database busy");
            Error::unavailable(
                Reason::Unavailable,
                "the database is busy; retry",
                Duration::from_millis(200),
            )
        }
        _ => {
            tracing::error!(error = %error, "database error");
            Error::internal("internal database error")
        }
    }
}

/// SQLite's BUSY/LOCKED, Postgres' serialization failure and deadlock: the
/// transaction may succeed if retried.
fn is_busy(error: &dyn sqlx::error::DatabaseError) -> bool {
    matches!(
        error.code().as_deref(),
        Some("5" | "6" | "517" | "40001" | "40P01")
    )
}

/// Postgres' connection exceptions (class 08), operator intervention
/// (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now,
/// 57P05 idle session timeout) and too many connections (53300).
fn is_connection_lost(error: &dyn sqlx::error::DatabaseError) -> bool {
    error.code().as_deref().is_some_and(|code| {
        code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "57P05" | "53300")
    })
}

/// True for a unique-key violation (23505 on Postgres, 2067/1555 on SQLite).
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// True for a foreign-key violation (23503 on Postgres, 787 on SQLite).
pub(crate) fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

/// A stored value that does not parse: the database was changed behind the
/// service's back.
pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    tracing::error!(what, %detail, "stored value does not parse");
    Error::internal("internal error: a stored record is malformed")
}
