//! Settings: `config/default.toml` (compiled in) overlaid by `M3SHDUP_*` environment
//! variables, then by command-line flags. Secrets live in [`Secrets`], read from the
//! environment only, and never appear in `Debug` output.

use std::fmt;

use anyhow::Context;
use serde::Deserialize;

/// The defaults file, embedded so the binary runs from any directory.
pub const DEFAULTS: &str = include_str!("../config/default.toml");
const ENV_PREFIX: &str = "M3SHDUP_";

/// Every tunable knob of the hub. Unknown keys are rejected so a typo fails loudly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub bind: String,
    pub database_url: String,
    pub http_workers: usize,
    pub log_filter: String,
    pub heartbeat_timeout: u64,
    pub max_attempts: i32,
    pub reputation_exploration: f64,
    pub default_task_timeout: u64,
    pub capability_timeouts: std::collections::BTreeMap<String, u64>,
    pub federation_relay: bool,
    pub federation_max_hops: i32,
    pub federation_max_priority: i32,
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
    pub max_body_bytes: usize,
    pub max_prompt_bytes: usize,
    pub max_list_limit: i64,
    pub max_templates_per_creator: i64,
    pub sse_queue_capacity: usize,
    pub sse_keepalive_seconds: u64,
    pub event_ring_size: usize,
    pub sqlite_synchronous: String,
    pub sqlite_busy_timeout_ms: u64,
    pub read_pool_size: u32,
    pub write_queue_capacity: usize,
    pub write_batch_max: usize,
}

impl Settings {
    /// The compiled-in defaults with no environment applied (what tests start from).
    pub fn defaults() -> anyhow::Result<Self> {
        Self::from_table(
            DEFAULTS
                .parse()
                .context("config/default.toml is not valid TOML")?,
        )
    }

    /// Defaults, overlaid by the file named in `M3SHDUP_CONFIG` (if any), then by every
    /// `M3SHDUP_<KEY>` variable whose key exists in the defaults.
    pub fn from_env() -> anyhow::Result<Self> {
        let mut table: toml::Table = DEFAULTS
            .parse()
            .context("config/default.toml is not valid TOML")?;
        if let Some(path) = std::env::var_os("M3SHDUP_CONFIG") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read M3SHDUP_CONFIG file {path:?}"))?;
            let overlay: toml::Table = text
                .parse()
                .with_context(|| format!("{path:?} is not valid TOML"))?;
            overlay_table(&mut table, overlay);
        }
        for (key, value) in table.iter_mut() {
            let var = format!("{ENV_PREFIX}{}", key.to_ascii_uppercase());
            if let Ok(raw) = std::env::var(&var) {
                *value = parse_like(value, &raw)
                    .with_context(|| format!("{var}={raw:?} is not a valid value"))?;
            }
        }
        Self::from_table(table)
    }

    /// How long a running task may take: its own limit, else its capability's, else the default.
    pub fn task_timeout(&self, capability: &str, own: Option<i32>) -> std::time::Duration {
        let seconds = own
            .and_then(|s| u64::try_from(s).ok())
            .or_else(|| self.capability_timeouts.get(capability).copied())
            .unwrap_or(self.default_task_timeout);
        std::time::Duration::from_secs(seconds.max(1))
    }

    fn from_table(table: toml::Table) -> anyhow::Result<Self> {
        Ok(toml::Value::Table(table).try_into()?)
    }
}

/// Lays `overlay` over `base` key by key; tables are merged, everything else replaced.
fn overlay_table(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(more)) => {
                overlay_table(inner, more)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Reads an environment string as the same TOML type as the default it replaces.
fn parse_like(default: &toml::Value, raw: &str) -> anyhow::Result<toml::Value> {
    Ok(match default {
        toml::Value::Integer(_) => toml::Value::Integer(raw.trim().parse()?),
        toml::Value::Float(_) => toml::Value::Float(raw.trim().parse()?),
        toml::Value::Boolean(_) => {
            toml::Value::Boolean(matches!(raw.trim(), "1" | "true" | "TRUE" | "True" | "yes"))
        }
        // A list is written comma-separated: M3SHDUP_TRUSTED_PROXIES=10.0.0.1,10.0.0.2
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.into()))
                .collect(),
        ),
        _ => toml::Value::String(raw.to_string()),
    })
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
    fn environment_values_take_the_type_of_the_default() {
        assert_eq!(
            parse_like(&toml::Value::Integer(1), " 30 ").unwrap(),
            toml::Value::Integer(30)
        );
        assert!(parse_like(&toml::Value::Integer(1), "soon").is_err());
        assert_eq!(
            parse_like(&toml::Value::String(String::new()), "x").unwrap(),
            toml::Value::String("x".into())
        );
        assert_eq!(
            parse_like(&toml::Value::Array(vec![]), "10.0.0.1, ::1,").unwrap(),
            toml::Value::Array(vec!["10.0.0.1".into(), "::1".into()])
        );
    }

    #[test]
    fn overlays_merge_tables_and_replace_values() {
        let mut base: toml::Table = "a = 1\n[t]\nx = 1\ny = 2".parse().unwrap();
        overlay_table(&mut base, "a = 5\n[t]\ny = 9".parse().unwrap());
        assert_eq!(base["a"].as_integer(), Some(5));
        assert_eq!(base["t"]["x"].as_integer(), Some(1));
        assert_eq!(base["t"]["y"].as_integer(), Some(9));
    }

    #[test]
    fn secrets_never_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
