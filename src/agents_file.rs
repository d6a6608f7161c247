//! The agents file (seed 004's "gateway config"): one table per agent (name, role,
//! capabilities, config, soul), in TOML, or JSON when the file name ends in `.json`.
//! `POST /api/agents/sync` reads it; `write_to_gateway` writes one agent into it, through
//! a temporary file renamed over the old one, so a reader never sees half a file.
//!
//! ```toml
//! [[agents]]
//! name = "code-reviewer"
//! role = "qa"
//! capabilities = ["review"]
//! soul = "You are a meticulous code reviewer."
//! config = { model = "claude-sonnet-4" }
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::HubError;

/// One agent as the file describes it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Left out: an agent's own capabilities stay as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soul: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct AgentsFile {
    #[serde(default)]
    agents: Vec<AgentEntry>,
}

/// Read-modify-write of the file is one at a time within the hub.
static WRITING: Mutex<()> = Mutex::new(());

/// The configured file, or a 409 saying none is (the hub is not set up for this).
pub fn configured(setting: &str) -> Result<PathBuf, HubError> {
    if setting.trim().is_empty() {
        return Err(HubError::conflict(
            "no agents file is configured (set agents_file or M3SHDUP_AGENTS_FILE)",
        ));
    }
    Ok(PathBuf::from(setting))
}

fn is_json(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

/// Every agent in the file. A missing or malformed file is a 422 naming it (and the line).
pub fn read(path: &Path) -> Result<Vec<AgentEntry>, HubError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        HubError::Unprocessable(format!(
            "agents file {}: cannot read it: {error}",
            path.display()
        ))
    })?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<Vec<AgentEntry>, HubError> {
    let malformed = |line: usize, message: String| {
        HubError::Unprocessable(format!(
            "agents file {}: line {line}: {message}",
            path.display()
        ))
    };
    let file: AgentsFile = if is_json(path) {
        serde_json::from_str(text).map_err(|e| malformed(e.line(), e.to_string()))?
    } else {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |span| line_of(text, span.start));
            malformed(line, e.message().to_string())
        })?
    };
    let mut seen = std::collections::HashSet::new();
    for entry in &file.agents {
        if !seen.insert(entry.name.as_str()) {
            // Where the name appears (quoted) the second time.
            let quoted = serde_json::to_string(&entry.name).unwrap_or_default();
            let line = text
                .match_indices(&quoted)
                .nth(1)
                .map_or(1, |(at, _)| line_of(text, at));
            return Err(malformed(
                line,
                format!("agent {:?} appears twice", entry.name),
            ));
        }
    }
    Ok(file.agents)
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

/// Puts `entry` into the file (replacing the agent of the same name), creating the file if
/// it does not exist.
pub fn write(path: &Path, entry: AgentEntry) -> Result<(), HubError> {
    let _one_writer = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let mut agents = if path.exists() {
        read(path)?
    } else {
        Vec::new()
    };
    match agents.iter_mut().find(|a| a.name == entry.name) {
        Some(existing) => *existing = entry,
        None => agents.push(entry),
    }
    let file = AgentsFile { agents };
    let text = if is_json(path) {
        serde_json::to_string_pretty(&file)
            .map(|t| t + "\n")
            .map_err(HubError::internal)?
    } else {
        toml::to_string(&file).map_err(|e| {
            HubError::Unprocessable(format!("the agent cannot be written as TOML: {e}"))
        })?
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let cannot = |error: std::io::Error| {
        HubError::Unprocessable(format!(
            "agents file {}: cannot write it: {error}",
            path.display()
        ))
    };
    let mut temporary = tempfile::NamedTempFile::new_in(dir).map_err(cannot)?;
    temporary.write_all(text.as_bytes()).map_err(cannot)?;
    temporary.as_file().sync_all().map_err(cannot)?;
    temporary.persist(path).map_err(|e| cannot(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_file_names_its_line() {
        let error = parse(Path::new("a.toml"), "[[agents]]\nname = \"x\"\nrole = \n").unwrap_err();
        assert!(error.to_string().contains("a.toml: line 3"), "{error}");
        let error = parse(Path::new("a.json"), "{\"agents\": [\n{\"nme\": 1}]}").unwrap_err();
        assert!(error.to_string().contains("a.json: line 2"), "{error}");
    }

    #[test]
    fn writing_replaces_the_agent_of_the_same_name_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["agents.toml", "agents.json"] {
            let path = dir.path().join(name);
            let entry = |role: &str| AgentEntry {
                name: "rex".into(),
                role: Some(role.into()),
                capabilities: Some(vec!["git".into()]),
                config: Some(
                    serde_json::json!({ "model": "m" })
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
                soul: None,
            };
            write(&path, entry("qa")).unwrap();
            write(
                &path,
                AgentEntry {
                    name: "ada".into(),
                    role: None,
                    capabilities: None,
                    config: None,
                    soul: None,
                },
            )
            .unwrap();
            write(&path, entry("dev")).unwrap();
            let agents = read(&path).unwrap();
            assert_eq!(agents.len(), 2, "{name}");
            assert_eq!(agents[0], entry("dev"), "{name}");
        }
    }
}
