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

/// A JSON number as an integer, if it is one. JSON has one number type, so `3.0` is the
/// integer 3 (as every JSON Schema tool reads it); `3.5` and values past i64 are not.
pub fn json_integer(value: &serde_json::Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
            .map(|f| f as i64)
    })
}
