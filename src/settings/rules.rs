//! What each setting accepts, in one table: [`RULES`] checks a value and says in words
//! what it takes, so a type error and a value out of range read the same way.

use std::net::{IpAddr, SocketAddr};

use super::{Problem, POSTGRES_TLS_MODES, POSTGRES_TLS_PARAMETERS, SQLITE_SYNCHRONOUS};

/// What one key accepts.
#[derive(Debug, Clone, Copy)]
pub enum Accepts {
    /// A whole number from `min` to `max`, in `unit` (may be empty).
    Whole {
        min: i64,
        max: i64,
        unit: &'static str,
    },
    /// A finite number of at least `min`, in `unit`.
    Number {
        min: f64,
        unit: &'static str,
    },
    Flag,
    /// Any text, empty included.
    Text,
    /// A SQLite file (a path or a `sqlite://` URL), or a `postgres://` URL.
    Database,
    /// An address to listen on.
    Address,
    /// Empty, or an http(s) URL.
    Url,
    /// A `tracing` filter.
    LogFilter,
    /// A list of IP addresses.
    Addresses,
    /// A table of capability = seconds.
    SecondsTable,
    /// A table of agent templates, each a table of role, capabilities, config and soul.
    TemplateTable,
    /// One of these words, in any case.
    OneOf(&'static [&'static str]),
}

const LONG: i64 = i64::MAX;
const U32: i64 = u32::MAX as i64;
const I32: i64 = i32::MAX as i64;

const fn whole(min: i64, unit: &'static str) -> Accepts {
    Accepts::Whole {
        min,
        max: LONG,
        unit,
    }
}

const fn whole_to(min: i64, max: i64, unit: &'static str) -> Accepts {
    Accepts::Whole { min, max, unit }
}

/// Every key of `config/default.toml` and what it accepts (a unit test keeps the two in
/// step). Lower bounds are where a smaller value makes no sense: a zero capacity, a
/// limit below 1, a timeout of no time.
pub const RULES: &[(&str, Accepts)] = &[
    ("bind", Accepts::Address),
    ("database_url", Accepts::Database),
    ("advertise_url", Accepts::Url),
    ("http_workers", whole(0, "threads (0: one per CPU core)")),
    ("log_filter", Accepts::LogFilter),
    ("heartbeat_timeout", whole(1, "seconds")),
    ("max_attempts", whole_to(1, I32, "assignments")),
    (
        "reputation_exploration",
        Accepts::Number { min: 0.0, unit: "" },
    ),
    ("default_task_timeout", whole(1, "seconds")),
    ("capability_timeouts", Accepts::SecondsTable),
    ("default_schedule_timeout", whole(0, "seconds (0: off)")),
    ("schedule_timeouts", Accepts::SecondsTable),
    ("default_progress_timeout", whole(0, "seconds (0: off)")),
    ("progress_timeouts", Accepts::SecondsTable),
    ("requeue_stuck_tasks", Accepts::Flag),
    ("agent_templates", Accepts::TemplateTable),
    ("federation_relay", Accepts::Flag),
    ("federation_max_hops", whole_to(1, I32, "hubs")),
    ("federation_max_priority", whole_to(-I32 - 1, I32, "")),
    (
        "federation_retry_max_seconds",
        whole_to(1, 24 * 3600, "seconds"),
    ),
    ("exchange_log_content", Accepts::Flag),
    ("exchange_max_image_bytes", whole(0, "bytes")),
    ("exchange_notify_allow", Accepts::Addresses),
    ("data_dir", Accepts::Text),
    ("demo_enabled", Accepts::Flag),
    ("alerts_enabled", Accepts::Flag),
    ("ntfy_url", Accepts::Url),
    ("ntfy_topic", Accepts::Text),
    ("alerts_include_detail", Accepts::Flag),
    (
        "daily_cost_cap",
        Accepts::Number {
            min: 0.0,
            unit: "US dollars",
        },
    ),
    (
        "max_reported_cost_usd",
        Accepts::Number {
            min: 0.0,
            unit: "US dollars",
        },
    ),
    ("max_reported_tokens", whole(1, "tokens")),
    ("agent_daily_token_cap", whole(1, "tokens")),
    ("session_hours", whole(1, "hours")),
    ("login_failure_delay_ms", whole(0, "milliseconds")),
    ("login_failures_allowed", whole_to(1, U32, "failures")),
    ("login_slowdown_seconds", whole(1, "seconds")),
    ("login_slowdown_max_seconds", whole(1, "seconds")),
    ("login_throttle_capacity", whole(1, "entries")),
    ("password_hash_concurrency", whole(1, "hashes at once")),
    ("trusted_proxies", Accepts::Addresses),
    ("webhook_rate_per_minute", whole_to(1, U32, "calls")),
    ("agent_mutations_per_minute", whole_to(1, U32, "changes")),
    ("agents_file", Accepts::Text),
    ("max_body_bytes", whole(1, "bytes")),
    ("max_prompt_bytes", whole(1, "bytes")),
    ("max_list_limit", whole(1, "items")),
    ("max_templates_per_creator", whole(1, "templates")),
    ("sse_queue_capacity", whole(1, "events")),
    ("sse_keepalive_seconds", whole(1, "seconds")),
    ("sse_comment_seconds", whole(1, "seconds")),
    (
        "sse_max_subscribers",
        whole(0, "streams (0: as many as open files allow)"),
    ),
    (
        "approval_timeout_seconds",
        whole_to(1, 7 * 24 * 3600, "seconds"),
    ),
    ("public_url", Accepts::Text),
    (
        "idempotency_retention_hours",
        whole_to(1, 24 * 365, "hours"),
    ),
    (
        "retention_days",
        whole_to(0, 100 * 365, "days (0: keep every task)"),
    ),
    ("retention_archive_dir", Accepts::Text),
    ("retention_batch", whole_to(1, 10_000, "tasks")),
    ("retention_interval_seconds", whole(1, "seconds")),
    (
        "registration_token_minutes",
        whole_to(1, 7 * 24 * 60, "minutes"),
    ),
    (
        "preregistration_minutes",
        whole_to(1, 7 * 24 * 60, "minutes"),
    ),
    ("device_poll_seconds", whole_to(1, 300, "seconds")),
    ("inbox_wait_max_seconds", whole_to(0, 300, "seconds")),
    ("consumer_lease_seconds", whole_to(1, 24 * 3600, "seconds")),
    ("event_ring_size", whole(1, "events")),
    ("sqlite_synchronous", Accepts::OneOf(&SQLITE_SYNCHRONOUS)),
    ("sqlite_busy_timeout_ms", whole(0, "milliseconds")),
    ("read_pool_size", whole_to(1, U32, "connections")),
    ("database_timeout_seconds", whole(1, "seconds")),
    ("database_tls", Accepts::OneOf(&POSTGRES_TLS_MODES)),
    ("database_tls_root_cert", Accepts::Text),
    ("write_queue_capacity", whole(1, "writes")),
    ("write_batch_max", whole(1, "writes")),
    ("shutdown_grace_seconds", whole(0, "seconds")),
    (
        "metrics_access",
        Accepts::OneOf(&crate::metrics::MetricsAccess::NAMES),
    ),
    ("metrics_max_label_values", whole(1, "values per label")),
];

/// Every value of `table` that its rule refuses, and every pair of values that cannot
/// both hold. The problems name no origin: the caller knows where each key was set.
pub fn check(table: &toml::Table) -> Vec<Problem> {
    let mut problems: Vec<Problem> = RULES
        .iter()
        .filter_map(|(key, accepts)| {
            let value = table.get(*key)?;
            (!accepts.admits(value)).then(|| Problem::Rejected {
                key: key.to_string(),
                found: value.to_string(),
                expected: accepts.describe(),
                origin: String::new(),
            })
        })
        .collect();
    let int = |key: &str| table.get(key).and_then(toml::Value::as_integer);
    if let (Some(first), Some(most)) = (
        int("login_slowdown_seconds"),
        int("login_slowdown_max_seconds"),
    ) {
        if most < first {
            problems.push(Problem::Rejected {
                key: "login_slowdown_max_seconds".into(),
                found: most.to_string(),
                expected: format!("at least login_slowdown_seconds ({first})"),
                origin: String::new(),
            });
        }
    }
    if let Some(url) = table.get("database_url").and_then(toml::Value::as_str) {
        if let Some(parameter) = tls_parameter_in(url) {
            problems.push(Problem::Rejected {
                key: "database_url".into(),
                found: format!("\"…{parameter}=…\""),
                expected: "a URL without sslmode or sslrootcert (TLS is set by database_tls \
                           and database_tls_root_cert)"
                    .into(),
                origin: String::new(),
            });
        }
    }
    problems
}

/// The first libpq TLS parameter a `postgres://` URL sets that a setting owns.
fn tls_parameter_in(url: &str) -> Option<&'static str> {
    let super::Database::Postgres(url) = super::Database::of(url) else {
        return None;
    };
    let url = url::Url::parse(url).ok()?;
    POSTGRES_TLS_PARAMETERS
        .into_iter()
        .find(|owned| url.query_pairs().any(|(name, _)| name == *owned))
}

/// The rule for `key`, if it has one.
pub fn rule(key: &str) -> Option<Accepts> {
    RULES.iter().find(|(k, _)| *k == key).map(|(_, a)| *a)
}

impl Accepts {
    /// What this rule accepts, in words that finish "expected …".
    pub fn describe(&self) -> String {
        match self {
            Self::Whole { min, max, unit } => {
                let of_unit = if unit.is_empty() {
                    String::new()
                } else {
                    format!(" of {unit}")
                };
                let range = if *max == LONG {
                    format!("at least {min}")
                } else {
                    format!("from {min} to {max}")
                };
                format!("a whole number{of_unit}, {range}")
            }
            Self::Number { min, unit: "" } => format!("a number, at least {min}"),
            Self::Number { min, unit } => format!("a number of {unit}, at least {min}"),
            Self::Flag => "true or false".into(),
            Self::Text => "text".into(),
            Self::Database => {
                "a SQLite file path (or sqlite://path), or a postgres://user@host/database URL"
                    .into()
            }
            Self::Address => "host:port, like 127.0.0.1:8333, [::1]:8333 or localhost:8333".into(),
            Self::Url => "nothing (\"\") or an http:// or https:// URL".into(),
            Self::LogFilter => "a tracing filter, like info or m3shd=debug,warn".into(),
            Self::Addresses => "a list of IP addresses".into(),
            Self::SecondsTable => {
                "a table of capability = seconds (each at least 1), set in an M3SHDUP_CONFIG file"
                    .into()
            }
            Self::TemplateTable => {
                "a table of templates, each a table of role (text), capabilities (a list of text), \
                 config (a table) and soul (text), set in an M3SHDUP_CONFIG file"
                    .into()
            }
            Self::OneOf(words) => format!("one of {}", words.join(", ")),
        }
    }

    /// True when `value` is one this rule accepts.
    pub fn admits(&self, value: &toml::Value) -> bool {
        use toml::Value as V;
        match (self, value) {
            (Self::Whole { min, max, .. }, V::Integer(n)) => (min..=max).contains(&n),
            (Self::Number { min, .. }, V::Float(n)) => n.is_finite() && n >= min,
            (Self::Number { min, .. }, V::Integer(n)) => *n as f64 >= *min,
            (Self::Flag, V::Boolean(_)) | (Self::Text, V::String(_)) => true,
            (Self::Database, V::String(s)) => match super::Database::of(s) {
                super::Database::Sqlite(file) => !file.trim().is_empty(),
                super::Database::Postgres(url) => url::Url::parse(url).is_ok(),
            },
            (Self::Address, V::String(s)) => is_address(s),
            (Self::Url, V::String(s)) => {
                s.is_empty()
                    || ["http://", "https://"]
                        .iter()
                        .any(|p| s.len() > p.len() && s.starts_with(p))
            }
            (Self::LogFilter, V::String(s)) => tracing_subscriber::EnvFilter::try_new(s).is_ok(),
            (Self::Addresses, V::Array(items)) => items
                .iter()
                .all(|i| i.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok())),
            (Self::SecondsTable, V::Table(table)) => table.values().all(|v| whole(1, "").admits(v)),
            (Self::TemplateTable, V::Table(table)) => table
                .values()
                .all(|template| template.clone().try_into::<super::AgentTemplate>().is_ok()),
            (Self::OneOf(words), V::String(s)) => words.iter().any(|w| w.eq_ignore_ascii_case(s)),
            _ => false,
        }
    }
}

/// `ip:port`, `[ipv6]:port`, or `name:port` with a plausible host name.
fn is_address(text: &str) -> bool {
    if text.parse::<SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    port.parse::<u16>().is_ok()
        && !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_say_what_they_take() {
        assert_eq!(
            rule("heartbeat_timeout").unwrap().describe(),
            "a whole number of seconds, at least 1"
        );
        assert_eq!(
            rule("read_pool_size").unwrap().describe(),
            "a whole number of connections, from 1 to 4294967295"
        );
        assert_eq!(
            rule("sqlite_synchronous").unwrap().describe(),
            "one of OFF, NORMAL, FULL, EXTRA"
        );
    }

    #[test]
    fn rules_check_types_and_ranges() {
        let seconds = rule("heartbeat_timeout").unwrap();
        assert!(seconds.admits(&toml::Value::Integer(1)));
        assert!(!seconds.admits(&toml::Value::Integer(0)));
        assert!(!seconds.admits(&toml::Value::Integer(-5)));
        assert!(!seconds.admits(&toml::Value::String("90".into())));
        let cost = rule("daily_cost_cap").unwrap();
        assert!(cost.admits(&toml::Value::Integer(5)));
        assert!(!cost.admits(&toml::Value::Float(f64::NAN)));
        assert!(!cost.admits(&toml::Value::Float(-0.5)));
        let sync = rule("sqlite_synchronous").unwrap();
        assert!(sync.admits(&"normal".into()) && sync.admits(&"OFF".into()));
        assert!(!sync.admits(&"FAST".into()));
    }

    #[test]
    fn addresses_and_urls_must_parse() {
        let bind = rule("bind").unwrap();
        for good in ["127.0.0.1:8333", "[::1]:0", "localhost:8333", "0.0.0.0:80"] {
            assert!(bind.admits(&good.into()), "{good}");
        }
        for bad in [
            "127.0.0.1",
            "localhost:http",
            ":8333",
            "my host:1",
            "1.2.3.4:99999",
        ] {
            assert!(!bind.admits(&bad.into()), "{bad}");
        }
        let url = rule("ntfy_url").unwrap();
        assert!(url.admits(&"".into()) && url.admits(&"https://ntfy.sh".into()));
        assert!(!url.admits(&"ntfy.sh".into()) && !url.admits(&"https://".into()));
        let proxies = rule("trusted_proxies").unwrap();
        assert!(proxies.admits(&toml::Value::Array(vec!["10.0.0.1".into(), "::1".into()])));
        assert!(!proxies.admits(&toml::Value::Array(vec!["10.0.0.0/8".into()])));
    }
}
