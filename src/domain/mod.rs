//! Domain rules, free of I/O: task state machine and queue order, roles and permissions,
//! the principal making a request, events and their audiences.

pub mod access;
pub mod agent;
pub mod credentials;
pub mod event;
pub mod graph;
pub mod remember;
pub mod reputation;
pub mod task;
pub mod webhook;

/// The current time as an ISO 8601 UTC string with milliseconds (sorts as it reads).
pub fn now_iso() -> String {
    iso(chrono::Utc::now())
}

pub fn iso(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
