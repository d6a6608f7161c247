//! What an agent offers: capabilities, exclusions and parallel slots; how its status
//! (online / busy / offline) follows from liveness and load, and how an operator's status
//! (seed 004: idle, error, …) sits beside it.

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

/// The status an operator (or the agent's own script) sets through seed 004's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperatorStatus {
    Online,
    Offline,
    Busy,
    Idle,
    Error,
}

impl OperatorStatus {
    pub const NAMES: &'static str = "online, offline, busy, idle or error";

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "online" => Self::Online,
            "offline" => Self::Offline,
            "busy" => Self::Busy,
            "idle" => Self::Idle,
            "error" => Self::Error,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Busy => "busy",
            Self::Idle => "idle",
            Self::Error => "error",
        }
    }

    /// An agent marked idle, in error or offline gets no new work until it is woken.
    pub fn holds(self) -> bool {
        matches!(self, Self::Idle | Self::Error | Self::Offline)
    }
}

/// The status an agent object shows. An operator's hold wins; otherwise liveness does,
/// once the hub has heard from the agent (an operator's "busy" shows while it is online);
/// an agent the hub has never heard from shows what its operator declared.
pub fn shown_status(
    operator: Option<OperatorStatus>,
    contacted: bool,
    live: AgentStatus,
) -> &'static str {
    match (operator, contacted) {
        (Some(set), _) if set.holds() => set.as_str(),
        (_, true) if live == AgentStatus::Online && operator == Some(OperatorStatus::Busy) => {
            "busy"
        }
        (_, true) => live.as_str(),
        (Some(set), false) => set.as_str(),
        (None, false) => AgentStatus::Offline.as_str(),
    }
}

/// What an agent's shown status is made of besides its load. The Registry keeps one per
/// agent, so counting agents by status asks no agent actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub operator_status: Option<OperatorStatus>,
    /// The hub has heard from the agent itself.
    pub contacted: bool,
    pub online: bool,
    pub max_concurrent: i32,
}

impl Standing {
    /// The status responses show and the presence under it, with `load` tasks held.
    pub fn shown(self, load: usize) -> (&'static str, AgentStatus) {
        let presence = AgentStatus::derive(self.online, load, self.max_concurrent);
        let status = shown_status(self.operator_status, self.contacted, presence);
        (status, presence)
    }
}

/// How a path names an agent: its numeric `id`, or its `agent_id` handle. Handles made only
/// of digits are refused when created, so the two never collide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentRef {
    Id(i32),
    Handle(String),
}

impl AgentRef {
    pub fn parse(text: &str) -> Self {
        match text.parse::<i32>() {
            Ok(id) if all_digits(text) => Self::Id(id),
            _ => Self::Handle(text.to_string()),
        }
    }
}

fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Paths under /api/agents that are endpoints, not agents.
const RESERVED_NAMES: &[&str] = &["comms", "message", "sync"];

/// Why a new agent id is refused, if it is: it must be path-safe and not only digits.
pub fn check_new_agent_id(id: &str) -> Result<(), String> {
    if !valid_agent_id(id) {
        return Err(format!(
            "agent name {id:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
        ));
    }
    if all_digits(id) {
        return Err(format!(
            "agent name {id:?} is only digits, which would read as a numeric agent id; add a letter"
        ));
    }
    if RESERVED_NAMES.contains(&id) {
        return Err(format!(
            "agent name {id:?} is reserved (GET /api/agents/{id} is another endpoint)"
        ));
    }
    Ok(())
}

/// The tasks an agent holds, by status (seed 004's `taskStats`), from counters the database
/// keeps with every task write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TaskStats {
    pub total: i32,
    pub assigned: i32,
    pub in_progress: i32,
    pub completed: i32,
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
    fn an_operator_hold_wins_then_liveness_then_the_declared_status() {
        use OperatorStatus::*;
        assert_eq!(shown_status(Some(Idle), true, AgentStatus::Online), "idle");
        assert_eq!(
            shown_status(Some(Online), true, AgentStatus::Offline),
            "offline"
        );
        assert_eq!(shown_status(Some(Busy), true, AgentStatus::Online), "busy");
        assert_eq!(shown_status(None, true, AgentStatus::Busy), "busy");
        assert_eq!(
            shown_status(Some(Online), false, AgentStatus::Offline),
            "online"
        );
        assert_eq!(shown_status(None, false, AgentStatus::Offline), "offline");
        assert!(Error.holds() && Offline.holds() && !Busy.holds());
    }

    #[test]
    fn paths_name_agents_by_number_or_handle_and_new_handles_are_never_numbers() {
        assert_eq!(AgentRef::parse("42"), AgentRef::Id(42));
        assert_eq!(AgentRef::parse("rex"), AgentRef::Handle("rex".into()));
        assert_eq!(AgentRef::parse("+4"), AgentRef::Handle("+4".into()));
        assert_eq!(
            AgentRef::parse("99999999999"),
            AgentRef::Handle("99999999999".into())
        );
        assert!(check_new_agent_id("007").is_err());
        assert!(check_new_agent_id("agent-007").is_ok());
        assert!(check_new_agent_id("a/b").is_err());
    }

    #[test]
    fn agent_ids_are_path_safe() {
        assert!(valid_agent_id("rex-mac.mini_2"));
        assert!(!valid_agent_id(""));
        assert!(!valid_agent_id("a/b"));
        assert!(!valid_agent_id(&"x".repeat(65)));
    }
}
