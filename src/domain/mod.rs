//! Domain rules, free of I/O: task state machine and queue order, roles and permissions,
//! the principal making a request, events and their audiences.

pub mod access;
pub mod agent;
pub mod audit;
pub mod credentials;
pub mod event;
pub mod exchange;
pub mod graph;
pub mod onboarding;
pub mod remember;
pub mod reputation;
pub mod schedule;
pub mod task;
pub mod webhook;

/// The current time as an ISO 8601 UTC string with milliseconds (sorts as it reads).
pub fn now_iso() -> String {
    iso(chrono::Utc::now())
}

/// An ISO 8601 time from a client, in the form the hub stores (UTC, milliseconds); `None`
/// when it is not one.
pub fn parse_time(raw: &str) -> Option<String> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|at| iso(at.with_timezone(&chrono::Utc)))
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

/// Trimming by the OpenAPI document's idea of whitespace: its `\S` patterns are ECMAScript
/// regular expressions, whose `\s` differs from Rust's `char::is_whitespace` (it includes
/// U+FEFF and leaves out U+0085). A value the document calls blank is exactly one the hub
/// refuses as blank.
pub trait Blank {
    fn trim_blank(&self) -> &str;
}

impl Blank for str {
    fn trim_blank(&self) -> &str {
        self.trim_matches(|c: char| {
            matches!(
                c,
                '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
                    ..='\u{200A}'
                        | '\u{2028}'
                        | '\u{2029}'
                        | '\u{202F}'
                        | '\u{205F}'
                        | '\u{3000}'
                        | '\u{FEFF}'
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Blank;

    #[test]
    fn blank_means_what_the_documents_patterns_mean() {
        // ECMAScript's \s: a byte-order mark is blank, a next-line control is not.
        assert_eq!("\u{FEFF} gpu \u{3000}".trim_blank(), "gpu");
        assert_eq!("\u{FEFF}".trim_blank(), "");
        assert_eq!("\u{85}".trim_blank(), "\u{85}");
        assert_eq!("\t\n research \r".trim_blank(), "research");
    }
}
