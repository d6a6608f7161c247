//! Settings: `config/default.toml` (compiled in) overlaid by the file named in
//! `M3SHDUP_CONFIG`, then by `M3SHDUP_*` environment variables, then by command-line
//! flags. Nothing is taken on trust: an unknown key or variable, a value of the wrong type
//! or one that makes no sense stops the start with a message naming the key, where it was
//! set and what it accepts (`settings/rules.rs`). Secrets live in [`Secrets`], read from the
//! environment only, and never appear in `Debug` output or in [`Settings::to_toml`].

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

mod layers;
mod rules;

/// Where the data lives, read from `database_url`: a `postgres://` (or `postgresql://`)
/// URL, or a SQLite file given as a path or a `sqlite://` URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database<'a> {
    Postgres(&'a str),
    Sqlite(&'a str),
}

/// The folder of the file at `path`: `.` for a bare file name.
fn folder_of(path: &str) -> &Path {
    Path::new(path)
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

impl<'a> Database<'a> {
    pub fn of(url: &'a str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Database::Postgres(url)
        } else {
            Database::Sqlite(url.strip_prefix("sqlite://").unwrap_or(url))
        }
    }

    /// The SQLite file, if that is the backend.
    pub fn sqlite_file(self) -> Option<&'a str> {
        match self {
            Database::Sqlite(path) => Some(path),
            Database::Postgres(_) => None,
        }
    }
}

/// The defaults file, embedded so the binary runs from any directory.
pub const DEFAULTS: &str = include_str!("../config/default.toml");
const ENV_PREFIX: &str = "M3SHDUP_";
/// The variable naming a TOML file laid over the defaults.
pub const CONFIG_VARIABLE: &str = "M3SHDUP_CONFIG";
/// The hub's secrets: variables only, never settings, never printed.
pub const SECRET_VARIABLES: [&str; 3] = [
    "M3SHDUP_TOKEN",
    "M3SHDUP_ENCRYPT_KEY",
    "M3SHDUP_LEGACY_ENCRYPT_KEY",
];
/// The values `sqlite_synchronous` accepts (SQLite's own names).
pub const SQLITE_SYNCHRONOUS: [&str; 4] = ["OFF", "NORMAL", "FULL", "EXTRA"];
/// The values `database_tls` accepts: libpq's `sslmode` names.
pub const POSTGRES_TLS_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];
/// The libpq parameters `database_tls` and `database_tls_root_cert` set, which the URL
/// must therefore leave out.
pub const POSTGRES_TLS_PARAMETERS: [&str; 2] = ["sslmode", "sslrootcert"];

/// What an operator-made agent starts from (`agent_templates.<name>`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTemplate {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub soul: Option<String>,
}

/// Every tunable knob of the hub. Unknown keys are rejected so a typo fails loudly.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub bind: String,
    pub database_url: String,
    pub advertise_url: String,
    pub http_workers: usize,
    pub log_filter: String,
    pub heartbeat_timeout: u64,
    pub max_attempts: i32,
    pub reputation_exploration: f64,
    pub default_task_timeout: u64,
    pub capability_timeouts: std::collections::BTreeMap<String, u64>,
    pub default_schedule_timeout: u64,
    pub schedule_timeouts: std::collections::BTreeMap<String, u64>,
    pub default_progress_timeout: u64,
    pub progress_timeouts: std::collections::BTreeMap<String, u64>,
    pub requeue_stuck_tasks: bool,
    pub agent_templates: std::collections::BTreeMap<String, AgentTemplate>,
    pub federation_relay: bool,
    pub federation_max_hops: i32,
    pub federation_max_priority: i32,
    pub federation_retry_max_seconds: u64,
    pub exchange_log_content: bool,
    pub exchange_max_image_bytes: usize,
    pub exchange_notify_allow: Vec<String>,
    pub data_dir: String,
    pub demo_enabled: bool,
    pub alerts_enabled: bool,
    pub ntfy_url: String,
    pub ntfy_topic: String,
    pub alerts_include_detail: bool,
    pub daily_cost_cap: f64,
    pub max_reported_cost_usd: f64,
    pub max_reported_tokens: i64,
    pub agent_daily_token_cap: i64,
    pub session_hours: u64,
    pub login_failure_delay_ms: u64,
    pub login_failures_allowed: u32,
    pub login_slowdown_seconds: u64,
    pub login_slowdown_max_seconds: u64,
    pub login_throttle_capacity: usize,
    pub password_hash_concurrency: usize,
    pub trusted_proxies: Vec<String>,
    pub webhook_rate_per_minute: u32,
    pub agent_mutations_per_minute: u32,
    pub agents_file: String,
    pub max_body_bytes: usize,
    pub max_prompt_bytes: usize,
    pub max_list_limit: i64,
    pub max_templates_per_creator: i64,
    pub sse_queue_capacity: usize,
    pub sse_keepalive_seconds: u64,
    pub sse_comment_seconds: u64,
    pub sse_max_subscribers: usize,
    pub approval_timeout_seconds: u64,
    pub public_url: String,
    pub idempotency_retention_hours: u64,
    pub retention_days: u64,
    pub retention_archive_dir: String,
    pub retention_batch: i64,
    pub retention_interval_seconds: u64,
    pub registration_token_minutes: u64,
    pub preregistration_minutes: u64,
    pub device_poll_seconds: u64,
    pub inbox_wait_max_seconds: u64,
    pub consumer_lease_seconds: u64,
    pub event_ring_size: usize,
    pub sqlite_synchronous: String,
    pub sqlite_busy_timeout_ms: u64,
    pub read_pool_size: u32,
    pub database_timeout_seconds: u64,
    pub database_tls: String,
    pub database_tls_root_cert: String,
    pub write_queue_capacity: usize,
    pub write_batch_max: usize,
    pub shutdown_grace_seconds: u64,
    pub metrics_access: crate::metrics::MetricsAccess,
    pub metrics_max_label_values: usize,
}

impl Settings {
    /// The compiled-in defaults with no environment applied (what tests start from).
    pub fn defaults() -> anyhow::Result<Self> {
        Ok(layers::Layers::defaults()?.settle()?)
    }

    /// Defaults, overlaid by the file named in `M3SHDUP_CONFIG` (if any), then by every
    /// `M3SHDUP_<KEY>` variable, each checked against its rule. Any other `M3SHDUP_*`
    /// variable must be a secret or one of `other_variables` (those the command line
    /// reads), so a misspelt setting is reported rather than ignored. Every problem found
    /// is reported at once.
    pub fn from_env(other_variables: &[String]) -> Result<Self, ConfigError> {
        let mut layers = layers::Layers::defaults()?;
        if let Some(path) = std::env::var_os(CONFIG_VARIABLE) {
            layers.overlay_file(Path::new(&path))?;
        }
        layers.overlay_env(std::env::vars_os(), other_variables);
        // The checks run on the layered table, before it becomes typed settings: a value
        // of the wrong type is then reported with the others, in the same words.
        layers.settle()
    }

    /// Checks settings made or changed in code (command-line flags, tests) against the
    /// same rules as [`Self::from_env`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = rules::check(&self.table()?);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// The settings as a TOML file (one `M3SHDUP_CONFIG` would accept), headed by whether
    /// each secret is set; `is_set` answers for a variable name. Secret values never appear.
    pub fn to_toml(&self, is_set: impl Fn(&str) -> bool) -> Result<String, ConfigError> {
        let mut out = String::from(
            "# The effective configuration: config/default.toml, then the M3SHDUP_CONFIG file,\n\
             # then M3SHDUP_* variables. Secrets come from the environment only:\n",
        );
        for name in SECRET_VARIABLES {
            let state = if is_set(name) { "set" } else { "unset" };
            out.push_str(&format!("#   {name}: {state}\n"));
        }
        out.push('\n');
        let body = toml::to_string(&self.table()?)
            .map_err(|e| ConfigError::Unusable(format!("cannot write the settings: {e}")))?;
        out.push_str(&body);
        Ok(out)
    }

    /// What the hub connects to: `database_url`, and for PostgreSQL with the TLS mode and
    /// root certificate of `database_tls` and `database_tls_root_cert` as libpq
    /// parameters. Every connection the hub opens uses it.
    pub fn connection_url(&self) -> String {
        use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
        // What a URL must escape: all but RFC 3986's unreserved characters. libpq decodes
        // %XX in a URL, but takes `+` as itself, so form encoding would not do.
        const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        if Database::of(&self.database_url).sqlite_file().is_some() {
            return self.database_url.clone();
        }
        let mode = self.database_tls.to_ascii_lowercase();
        let parameters = [
            ("sslmode", mode.as_str()),
            ("sslrootcert", self.database_tls_root_cert.as_str()),
        ];
        let mut url = self.database_url.clone();
        for (name, value) in parameters.into_iter().filter(|(_, v)| !v.is_empty()) {
            let value = utf8_percent_encode(value, ESCAPED);
            let separator = if url.contains('?') { '&' } else { '?' };
            url.push_str(&format!("{separator}{name}={value}"));
        }
        url
    }

    /// Where files other than the database go (the MESS event log): `data_dir`, else the
    /// database file's folder.
    pub fn data_dir(&self) -> std::path::PathBuf {
        if !self.data_dir.is_empty() {
            return self.data_dir.clone().into();
        }
        match Database::of(&self.database_url) {
            Database::Sqlite(file) => folder_of(file).into(),
            Database::Postgres(_) => "data".into(),
        }
    }

    /// Where the generated master token is kept: beside the SQLite file, as ever; with
    /// PostgreSQL, in the data directory.
    pub fn master_token_dir(&self) -> std::path::PathBuf {
        match Database::of(&self.database_url) {
            Database::Sqlite(file) => folder_of(file).into(),
            Database::Postgres(_) => self.data_dir(),
        }
    }

    /// Where retention writes its archives: `retention_archive_dir`, else `archive` in
    /// the data directory.
    pub fn archive_dir(&self) -> std::path::PathBuf {
        match self.retention_archive_dir.as_str() {
            "" => self.data_dir().join("archive"),
            set => set.into(),
        }
    }

    /// How long a running task may take: its own limit, else its capability's, else the default.
    pub fn task_timeout(&self, capability: &str, own: Option<i32>) -> std::time::Duration {
        let seconds = own
            .and_then(|s| u64::try_from(s).ok())
            .or_else(|| self.capability_timeouts.get(capability).copied())
            .unwrap_or(self.default_task_timeout);
        std::time::Duration::from_secs(seconds.max(1))
    }

    /// How long a task may wait unclaimed, or run without progress, before the hub
    /// escalates: its own limit, else its capability's, else the default; zero is off.
    pub fn watchdog_timeout(
        &self,
        watchdog: Watchdog,
        capability: &str,
        own: Option<i32>,
    ) -> Option<std::time::Duration> {
        let (per_capability, default) = match watchdog {
            Watchdog::Unclaimed => (&self.schedule_timeouts, self.default_schedule_timeout),
            Watchdog::Silent => (&self.progress_timeouts, self.default_progress_timeout),
        };
        let seconds = own
            .and_then(|s| u64::try_from(s).ok())
            .or(per_capability.get(capability).copied())
            .unwrap_or(default);
        (seconds > 0).then(|| std::time::Duration::from_secs(seconds))
    }

    /// Event streams the hub holds at once when the process may open `open_files` files:
    /// `sse_max_subscribers`, else what is left after a reserve for the database, the
    /// listener and every other request.
    pub fn sse_subscriber_limit(&self, open_files: u64) -> usize {
        const RESERVED_FILES: u64 = 256;
        match self.sse_max_subscribers {
            0 => usize::try_from(open_files.saturating_sub(RESERVED_FILES).max(1))
                .unwrap_or(usize::MAX),
            set => set,
        }
    }

    fn table(&self) -> Result<toml::Table, ConfigError> {
        toml::Table::try_from(self)
            .map_err(|e| ConfigError::Unusable(format!("cannot represent the settings: {e}")))
    }
}

/// The task watchdogs with a timeout: a ready task nobody claims (`schedule_timeout`),
/// a running task without progress (`progress_timeout`).
#[derive(Debug, Clone, Copy)]
pub enum Watchdog {
    Unclaimed,
    Silent,
}

/// Why the settings cannot be used. Shown to the operator as it reads.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration could not be read at all (a missing file, broken TOML).
    #[error("{0}")]
    Unusable(String),
    /// Values that were read but are not accepted, one line each.
    #[error("invalid configuration (config/default.toml describes every key):{}", lines(.0))]
    Invalid(Vec<Problem>),
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// A key or variable that is no setting. `origin` says where it was (`in …`).
    Unknown {
        name: String,
        origin: String,
        suggestion: Option<String>,
    },
    /// A value its rule refuses. `origin` names the file or variable that set it.
    Rejected {
        key: String,
        found: String,
        expected: String,
        origin: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown {
                name,
                origin,
                suggestion,
            } => {
                write!(f, "unknown setting {name:?} {origin}")?;
                match suggestion {
                    Some(s) => write!(f, "; did you mean {s:?}?"),
                    None => Ok(()),
                }
            }
            Self::Rejected {
                key,
                found,
                expected,
                origin,
            } => {
                write!(f, "{key} = {found}")?;
                if !origin.is_empty() {
                    write!(f, " (from {origin})")?;
                }
                write!(f, ": expected {expected}")
            }
        }
    }
}

fn lines(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

/// A secret string: compared and used, never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The hub's secrets: the master token and the at-rest encryption keys.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub master_token: Secret,
    /// `M3SHDUP_ENCRYPT_KEY`; `None` means the key is derived from the master token.
    pub encrypt_key: Option<Secret>,
    /// `M3SHDUP_LEGACY_ENCRYPT_KEY`: rows under it are re-encrypted when read.
    pub legacy_encrypt_key: Option<Secret>,
}

impl Secrets {
    /// The optional encryption keys from the environment, around a known master token.
    pub fn from_env(master_token: Secret) -> Self {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret::new)
        };
        Self {
            master_token,
            encrypt_key: var("M3SHDUP_ENCRYPT_KEY"),
            legacy_encrypt_key: var("M3SHDUP_LEGACY_ENCRYPT_KEY"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_beside_a_bare_database_file_go_to_the_working_directory() {
        let mut s = Settings::defaults().unwrap();
        s.database_url = "hub.db".into();
        assert_eq!(s.master_token_dir(), Path::new("."));
        assert_eq!(s.data_dir(), Path::new("."));
        s.database_url = "data/hub.db".into();
        assert_eq!(s.master_token_dir(), Path::new("data"));
    }

    #[test]
    fn the_connection_url_adds_the_tls_settings_to_a_postgres_url_only() {
        let mut s = Settings::defaults().unwrap();
        s.database_tls = "Verify-Full".into();
        s.database_tls_root_cert = "/etc/m3shd/db ca+1.pem".into();
        s.database_url = "postgres://hub:pw@db:5432/hub?connect_timeout=5".into();
        assert_eq!(
            s.connection_url(),
            "postgres://hub:pw@db:5432/hub?connect_timeout=5&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fm3shd%2Fdb%20ca%2B1.pem"
        );
        s.database_url = "postgresql://db/hub".into();
        s.database_tls = "prefer".into();
        s.database_tls_root_cert = String::new();
        assert_eq!(s.connection_url(), "postgresql://db/hub?sslmode=prefer");
        s.database_url = "sqlite://data/hub.db".into();
        assert_eq!(s.connection_url(), "sqlite://data/hub.db");
    }

    #[test]
    fn the_database_url_names_the_backend() {
        assert_eq!(
            Database::of("data/m3shd.db"),
            Database::Sqlite("data/m3shd.db")
        );
        assert_eq!(
            Database::of("sqlite:///var/lib/m3shd/hub.db"),
            Database::Sqlite("/var/lib/m3shd/hub.db")
        );
        for url in ["postgres://u@h/db", "postgresql://u@h/db"] {
            assert_eq!(Database::of(url), Database::Postgres(url));
        }
    }

    #[test]
    fn defaults_parse_and_match_the_documented_values() {
        let s = Settings::defaults().unwrap();
        assert_eq!(s.bind, "127.0.0.1:8333");
        assert_eq!(s.database_url, "data/m3shd.db");
        assert_eq!(s.heartbeat_timeout, 90);
        assert_eq!(s.sse_queue_capacity, 500);
        assert_eq!(s.sse_keepalive_seconds, 30);
        assert_eq!(s.max_attempts, 3);
        assert_eq!(s.capability_timeouts["git"], 900);
        // Alerts go nowhere until an operator names a server and a topic.
        assert!(s.ntfy_url.is_empty() && s.ntfy_topic.is_empty());
        assert!(!s.alerts_include_detail);
    }

    #[test]
    fn every_key_has_a_rule_and_every_rule_a_key() {
        let defaults: toml::Table = DEFAULTS.parse().unwrap();
        let keys: Vec<&str> = defaults.keys().map(String::as_str).collect();
        let mut ruled: Vec<&str> = rules::RULES.iter().map(|(k, _)| *k).collect();
        ruled.sort_unstable();
        // A new key in config/default.toml needs its line in settings/rules.rs.
        assert_eq!(keys, ruled);
    }

    #[test]
    fn values_set_in_code_are_checked_by_the_same_rules() {
        let mut s = Settings::defaults().unwrap();
        assert!(s.validate().is_ok());
        s.bind = "nowhere".into();
        s.sqlite_synchronous = "sometimes".into();
        s.login_slowdown_max_seconds = 1;
        let message = s.validate().unwrap_err().to_string();
        for expected in [
            r#"bind = "nowhere": expected host:port"#,
            r#"sqlite_synchronous = "sometimes": expected one of OFF, NORMAL, FULL, EXTRA"#,
            "login_slowdown_max_seconds = 1: expected at least login_slowdown_seconds (2)",
        ] {
            assert!(
                message.contains(expected),
                "{expected:?} not in:\n{message}"
            );
        }
    }

    #[test]
    fn the_printed_configuration_reads_back_and_says_only_whether_secrets_are_set() {
        let mut s = Settings::defaults().unwrap();
        s.heartbeat_timeout = 42;
        let text = s.to_toml(|name| name == "M3SHDUP_TOKEN").unwrap();
        assert!(text.contains("#   M3SHDUP_TOKEN: set\n"), "{text}");
        assert!(text.contains("#   M3SHDUP_ENCRYPT_KEY: unset\n"), "{text}");
        let again: Settings = toml::from_str(&text).unwrap();
        assert_eq!(again.heartbeat_timeout, 42);
        assert_eq!(again.capability_timeouts, s.capability_timeouts);
    }

    #[test]
    fn secrets_never_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
