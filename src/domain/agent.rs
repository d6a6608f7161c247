//! What an agent offers: capabilities, exclusions and parallel slots; and how its status
//! (online / busy / offline) follows from liveness and load.

use serde::{Deserialize, Serialize};

/// The routing profile an agent registers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub capabilities: Vec<String>,
    pub excluded: Vec<String>,
    pub max_concurrent: i32,
}

impl Profile {
    /// Whether the agent routes tasks of `capability`: it offers it and does not refuse it.
    pub fn serves(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability) && !self.refuses(capability)
    }

    pub fn refuses(&self, capability: &str) -> bool {
        self.excluded.iter().any(|c| c == capability)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    Online,
    Busy,
    Offline,
}

impl AgentStatus {
    /// Busy means online with every slot taken: the agent can accept nothing more now.
    pub fn derive(online: bool, load: usize, max_concurrent: i32) -> Self {
        match (online, load as i64 >= i64::from(max_concurrent)) {
            (false, _) => Self::Offline,
            (true, true) => Self::Busy,
            (true, false) => Self::Online,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Busy => "busy",
            Self::Offline => "offline",
        }
    }
}

/// Checks an agent id from a path: 1-64 characters of letters, digits, `-`, `_`, `.`.
pub fn valid_agent_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_serves_offered_capabilities_it_does_not_refuse() {
        let p = Profile {
            capabilities: vec!["research".into(), "deploy".into()],
            excluded: vec!["deploy".into()],
            max_concurrent: 1,
        };
        assert!(p.serves("research"));
        assert!(!p.serves("deploy"));
        assert!(!p.serves("git"));
    }

    #[test]
    fn status_follows_liveness_and_load() {
        assert_eq!(AgentStatus::derive(true, 0, 2), AgentStatus::Online);
        assert_eq!(AgentStatus::derive(true, 2, 2), AgentStatus::Busy);
        assert_eq!(AgentStatus::derive(false, 0, 2), AgentStatus::Offline);
    }

    #[test]
    fn agent_ids_are_path_safe() {
        assert!(valid_agent_id("rex-mac.mini_2"));
        assert!(!valid_agent_id(""));
        assert!(!valid_agent_id("a/b"));
        assert!(!valid_agent_id(&"x".repeat(65)));
    }
}
