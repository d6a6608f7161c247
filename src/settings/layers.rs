//! Where each setting comes from: the compiled-in defaults, the `M3SHDUP_CONFIG` file and
//! the `M3SHDUP_*` variables, laid over one another with the origin of every key kept so a
//! problem can say where the bad value was set.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use super::{
    rules, ConfigError, Problem, Settings, CONFIG_VARIABLE, DEFAULTS, ENV_PREFIX, SECRET_VARIABLES,
};

/// Where a key kept its compiled-in value.
const DEFAULTS_ORIGIN: &str = "config/default.toml";

/// The settings table as the layers so far make it, with what was wrong on the way.
pub struct Layers {
    table: toml::Table,
    /// Key → where its value was last set; keys not here come from the defaults.
    origins: BTreeMap<String, String>,
    problems: Vec<Problem>,
}

impl Layers {
    pub fn defaults() -> Result<Self, ConfigError> {
        let table = DEFAULTS.parse().map_err(|e| {
            ConfigError::Unusable(format!("{DEFAULTS_ORIGIN} is not valid TOML: {e}"))
        })?;
        Ok(Self {
            table,
            origins: BTreeMap::new(),
            problems: Vec::new(),
        })
    }

    /// Lays the TOML file at `path` over the table; a key the defaults lack is a problem.
    pub fn overlay_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let origin = format!("{CONFIG_VARIABLE} file {}", path.display());
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Unusable(format!("cannot read the {origin}: {e}")))?;
        let overlay: toml::Table = text
            .parse()
            .map_err(|e| ConfigError::Unusable(format!("the {origin} is not valid TOML: {e}")))?;
        for (key, value) in overlay {
            if self.table.contains_key(&key) {
                overlay_value(&mut self.table, key.clone(), value);
                self.origins.insert(key, origin.clone());
            } else {
                let suggestion = closest(&key, self.table.keys().map(String::as_str));
                self.problems.push(Problem::Unknown {
                    name: key,
                    origin: format!("in the {origin}"),
                    suggestion,
                });
            }
        }
        Ok(())
    }

    /// Applies every `M3SHDUP_<KEY>` of `vars` whose key is a setting. Any other variable
    /// with the prefix must be a secret, `M3SHDUP_CONFIG` or one of `others` (those the
    /// command line reads); else it is a typo, and a problem.
    pub fn overlay_env(
        &mut self,
        vars: impl IntoIterator<Item = (OsString, OsString)>,
        others: &[String],
    ) {
        for (name, raw) in vars {
            // A name that is not UTF-8 cannot be one of ours.
            let Some(name) = name.to_str() else { continue };
            let Some(key) = name.strip_prefix(ENV_PREFIX).map(str::to_ascii_lowercase) else {
                continue;
            };
            if let Some(value) = self.table.get_mut(&key) {
                match raw.to_str().and_then(|raw| parse_like(value, raw)) {
                    Some(parsed) => {
                        *value = parsed;
                        self.origins.insert(key, name.to_string());
                    }
                    None => self.problems.push(Problem::Rejected {
                        expected: describe(&key),
                        key,
                        found: format!("{raw:?}"),
                        origin: name.to_string(),
                    }),
                }
            } else if !known_variable(name, others) {
                let names = self.variable_names(others);
                self.problems.push(Problem::Unknown {
                    name: name.to_string(),
                    origin: "in the environment".into(),
                    suggestion: closest(name, names.iter().map(String::as_str)),
                });
            }
        }
    }

    /// Checks every value against its rule and, when all pass, makes the settings.
    pub fn settle(self) -> Result<Settings, ConfigError> {
        let mut problems = self.problems;
        for mut problem in rules::check(&self.table) {
            if let Problem::Rejected { key, origin, .. } = &mut problem {
                *origin = self
                    .origins
                    .get(key)
                    .map_or(DEFAULTS_ORIGIN.into(), String::clone);
            }
            problems.push(problem);
        }
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        // Every key has a rule, so this fails only if a rule is looser than its field's type.
        serde_path_to_error::deserialize(toml::Value::Table(self.table))
            .map_err(|e| ConfigError::Unusable(e.to_string()))
    }

    /// Every variable name that means something here, for suggestions.
    fn variable_names(&self, others: &[String]) -> Vec<String> {
        let settings = self
            .table
            .keys()
            .map(|key| format!("{ENV_PREFIX}{}", key.to_ascii_uppercase()));
        let fixed = SECRET_VARIABLES
            .iter()
            .chain([&CONFIG_VARIABLE])
            .map(|s| s.to_string());
        settings
            .chain(fixed)
            .chain(others.iter().cloned())
            .collect()
    }
}

/// A variable the hub or its command line reads that is not a setting.
fn known_variable(name: &str, others: &[String]) -> bool {
    name == CONFIG_VARIABLE || SECRET_VARIABLES.contains(&name) || others.iter().any(|o| o == name)
}

/// What `key` accepts, in words.
fn describe(key: &str) -> String {
    rules::rule(key).map_or("a value like its default".into(), |r| r.describe())
}

/// Lays `value` over `base[key]`: tables are merged key by key, anything else replaced.
fn overlay_value(base: &mut toml::Table, key: String, value: toml::Value) {
    match (base.get_mut(&key), value) {
        (Some(toml::Value::Table(inner)), toml::Value::Table(more)) => {
            for (k, v) in more {
                overlay_value(inner, k, v);
            }
        }
        (_, value) => {
            base.insert(key, value);
        }
    }
}

/// Reads an environment string as the same TOML type as the default it replaces; `None`
/// when it is not one. A table cannot be written in one variable.
pub(super) fn parse_like(default: &toml::Value, raw: &str) -> Option<toml::Value> {
    let raw_trimmed = raw.trim();
    Some(match default {
        toml::Value::Integer(_) => toml::Value::Integer(raw_trimmed.parse().ok()?),
        toml::Value::Float(_) => toml::Value::Float(raw_trimmed.parse().ok()?),
        toml::Value::Boolean(_) => toml::Value::Boolean(parse_flag(raw_trimmed)?),
        // A list is written comma-separated: M3SHDUP_TRUSTED_PROXIES=10.0.0.1,10.0.0.2
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.into()))
                .collect(),
        ),
        toml::Value::Table(_) => return None,
        _ => toml::Value::String(raw.to_string()),
    })
}

/// The usual spellings of yes and no; anything else is not a flag (never silently false).
fn parse_flag(raw: &str) -> Option<bool> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The candidate most like `typo`, if one is close enough to be what was meant.
fn closest<'a>(typo: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    candidates
        .map(|c| (strsim::jaro_winkler(typo, c), c))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn problems(pairs: &[(&str, &str)]) -> String {
        let mut layers = Layers::defaults().unwrap();
        layers.overlay_env(env(pairs), &["M3SHDUP_HUB".into()]);
        layers.settle().unwrap_err().to_string()
    }

    #[test]
    fn environment_values_take_the_type_of_the_default() {
        let mut layers = Layers::defaults().unwrap();
        let vars = env(&[
            ("M3SHDUP_HEARTBEAT_TIMEOUT", " 30 "),
            ("M3SHDUP_DEMO_ENABLED", "yes"),
            ("M3SHDUP_TRUSTED_PROXIES", "10.0.0.1, ::1,"),
            ("M3SHDUP_DAILY_COST_CAP", "7"),
            ("M3SHDUP_HUB", "http://elsewhere"),
            ("PATH", "/bin"),
        ]);
        layers.overlay_env(vars, &["M3SHDUP_HUB".into()]);
        let settings = layers.settle().unwrap();
        assert_eq!(settings.heartbeat_timeout, 30);
        assert!(settings.demo_enabled);
        assert_eq!(settings.trusted_proxies, ["10.0.0.1", "::1"]);
        assert_eq!(settings.daily_cost_cap, 7.0);
    }

    #[test]
    fn a_flag_that_is_not_one_is_refused_not_read_as_false() {
        assert_eq!(parse_flag("OFF"), Some(false));
        assert_eq!(parse_flag("True"), Some(true));
        let message = problems(&[("M3SHDUP_DEMO_ENABLED", "ture")]);
        assert!(
            message.contains(
                r#"demo_enabled = "ture" (from M3SHDUP_DEMO_ENABLED): expected true or false"#
            ),
            "{message}"
        );
    }

    #[test]
    fn bad_variables_are_named_with_what_they_accept() {
        let message = problems(&[
            ("M3SHDUP_HEARTBEAT_TIMEOUT", "-5"),
            ("M3SHDUP_SSE_QUEUE_CAPACITY", "0"),
            ("M3SHDUP_SQLITE_SYNCHRONOUS", "fast"),
            ("M3SHDUP_BIND", "localhost"),
            ("M3SHDUP_MAX_LIST_LIMIT", "lots"),
            ("M3SHDUP_CAPABILITY_TIMEOUTS", "git=5"),
        ]);
        for expected in [
            "heartbeat_timeout = -5 (from M3SHDUP_HEARTBEAT_TIMEOUT): expected a whole number of seconds, at least 1",
            "sse_queue_capacity = 0 (from M3SHDUP_SSE_QUEUE_CAPACITY): expected a whole number of events, at least 1",
            r#"sqlite_synchronous = "fast" (from M3SHDUP_SQLITE_SYNCHRONOUS): expected one of OFF, NORMAL, FULL, EXTRA"#,
            r#"bind = "localhost" (from M3SHDUP_BIND): expected host:port"#,
            r#"max_list_limit = "lots" (from M3SHDUP_MAX_LIST_LIMIT): expected a whole number of items"#,
            "(from M3SHDUP_CAPABILITY_TIMEOUTS): expected a table of capability = seconds",
        ] {
            assert!(message.contains(expected), "{expected:?} not in:\n{message}");
        }
    }

    #[test]
    fn unknown_variables_are_refused_with_a_suggestion() {
        let message = problems(&[("M3SHDUP_HEARTBEAT_TIMOUT", "30"), ("M3SHDUP_HUB", "x")]);
        assert!(
            message.contains(
                r#"unknown setting "M3SHDUP_HEARTBEAT_TIMOUT" in the environment; did you mean "M3SHDUP_HEARTBEAT_TIMEOUT"?"#
            ),
            "{message}"
        );
        assert!(!message.contains("M3SHDUP_HUB"), "{message}");
    }

    #[test]
    fn a_file_overlays_key_by_key_and_its_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hub.toml");
        std::fs::write(
            &file,
            "heartbeat_timeout = 45\nmax_atempts = 2\n[capability_timeouts]\ngit = 60\n",
        )
        .unwrap();
        let mut layers = Layers::defaults().unwrap();
        layers.overlay_file(&file).unwrap();
        let message = layers.settle().unwrap_err().to_string();
        let origin = format!("M3SHDUP_CONFIG file {}", file.display());
        assert!(
            message.contains(&format!(
                r#"unknown setting "max_atempts" in the {origin}; did you mean "max_attempts"?"#
            )),
            "{message}"
        );

        std::fs::write(
            &file,
            "heartbeat_timeout = 45\n[capability_timeouts]\ngit = 60\n",
        )
        .unwrap();
        let mut layers = Layers::defaults().unwrap();
        layers.overlay_file(&file).unwrap();
        let settings = layers.settle().unwrap();
        assert_eq!(settings.heartbeat_timeout, 45);
        assert_eq!(settings.capability_timeouts["git"], 60);
        assert_eq!(settings.capability_timeouts["research"], 1800);
    }

    #[test]
    fn a_wrong_type_in_a_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hub.toml");
        std::fs::write(&file, "heartbeat_timeout = \"90\"\n").unwrap();
        let mut layers = Layers::defaults().unwrap();
        layers.overlay_file(&file).unwrap();
        let message = layers.settle().unwrap_err().to_string();
        assert!(
            message.contains(&format!(
                r#"heartbeat_timeout = "90" (from M3SHDUP_CONFIG file {}): expected a whole number of seconds"#,
                file.display()
            )),
            "{message}"
        );
    }
}
