//! Who is asking and what they may do: the role presets of seed 000 section 12, custom
//! permission lists, and the visibility rule for tasks (agents see only tasks assigned
//! to them or created by them; the master and signed-in people see them all).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::onboarding::ConsumerFence;
use crate::error::HubError;

/// Every permission string the hub knows.
pub const ALL_PERMISSIONS: &[&str] = &[
    "tasks:read",
    "tasks:create",
    "tasks:update",
    "tasks:execute",
    "tasks:delete",
    "agents:read",
    "agents:register",
    "agents:delete",
    // Not in seed 000: manages agents through seed 004's API (create, update, soul,
    // memory object, wake, sync). The operator and admin presets hold it.
    "agents:manage",
    "messages:read",
    "messages:write",
    "memory:read",
    "memory:write",
    "escalations:create",
    "escalations:read",
    "escalations:resolve",
    "pipelines:create",
    // Not in seed 000: allows or denies a holder's tool call (seed 001's approvals). The
    // operator and admin presets hold it.
    "approvals:decide",
    "admin:templates",
    // Not in seed 000: onboarding (seed 002): registration tokens, approving new agents,
    // their credentials and states. Only the admin preset holds it.
    "admin:agents",
    "admin:audit",
    "admin:kill_switch",
    "admin:users",
    "admin:analytics",
    // Not in seed 000: reads GET /metrics. Only the admin preset holds it (as it holds
    // everything); a scraper gets a token of its own with just this permission.
    "metrics:read",
];

const WORKER: &[&str] = &[
    "tasks:read",
    "tasks:execute",
    "tasks:update",
    "messages:read",
    "messages:write",
    "agents:read",
    "agents:register",
    "memory:read",
    "memory:write",
    "escalations:create",
];
const COMMANDER: &[&str] = &[
    "tasks:read",
    "tasks:create",
    "messages:read",
    "messages:write",
    "agents:read",
    "escalations:read",
    "admin:templates",
    "pipelines:create",
];
// Seed 004's viewer reads agents, their soul, memory, pending work and messages.
const VIEWER: &[&str] = &[
    "tasks:read",
    "agents:read",
    "messages:read",
    "memory:read",
    "escalations:read",
];
// Seed 004's operator also creates, changes, wakes, messages and deletes agents.
const OPERATOR: &[&str] = &[
    "tasks:read",
    "tasks:create",
    "tasks:update",
    "agents:read",
    "agents:register",
    "agents:manage",
    "agents:delete",
    "memory:read",
    "memory:write",
    "approvals:decide",
    "messages:read",
    "messages:write",
    "escalations:read",
    "escalations:resolve",
    "pipelines:create",
    "admin:templates",
];

/// The role presets in the order `GET /api/admin/roles` lists them.
pub const ROLE_NAMES: &[&str] = &[
    "worker",
    "mobile",
    "commander",
    "admin",
    "viewer",
    "operator",
];

/// The permission list of a preset role, or `None` for an unknown name.
pub fn role_permissions(role: &str) -> Option<Vec<String>> {
    let list: Vec<&str> = match role {
        "worker" => WORKER.to_vec(),
        "mobile" => WORKER
            .iter()
            .copied()
            .filter(|p| *p != "escalations:create")
            .collect(),
        "commander" => COMMANDER.to_vec(),
        "admin" => ALL_PERMISSIONS.to_vec(),
        "viewer" => VIEWER.to_vec(),
        "operator" => OPERATOR.to_vec(),
        _ => return None,
    };
    Some(list.into_iter().map(String::from).collect())
}

/// The preset whose permissions are exactly `held`, if any (the first in [`ROLE_NAMES`]
/// order when two presets coincide).
pub fn role_of(held: &[&str]) -> Option<&'static str> {
    let held: BTreeSet<&str> = held.iter().copied().collect();
    ROLE_NAMES.iter().copied().find(|role| {
        role_permissions(role).is_some_and(|list| {
            list.len() == held.len() && list.iter().all(|p| held.contains(p.as_str()))
        })
    })
}

/// Checks a custom permission list: every entry must be a known permission.
pub fn validate_permissions(list: &[String]) -> Result<Vec<String>, HubError> {
    let mut seen = BTreeSet::new();
    for p in list {
        if !ALL_PERMISSIONS.contains(&p.as_str()) {
            return Err(HubError::bad_request(format!("unknown permission {p:?}")));
        }
        seen.insert(p.clone());
    }
    Ok(seen.into_iter().collect())
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The holder of `M3SHDUP_TOKEN`: every endpoint, every agent.
    Master,
    /// An issued token, bound to one agent id, with an explicit permission list; or a
    /// person's session, named by the username and holding the role's permissions.
    Token {
        agent_id: String,
        permissions: Arc<BTreeSet<String>>,
        /// A signed-in person (a dashboard session) rather than an agent: people oversee
        /// the mesh, so they see every task their permissions let them read, while an
        /// agent sees only its own (seed 000).
        person: bool,
    },
}

impl Principal {
    pub fn is_master(&self) -> bool {
        matches!(self, Self::Master)
    }

    pub fn can(&self, permission: &str) -> bool {
        match self {
            Self::Master => true,
            Self::Token { permissions, .. } => permissions.contains(permission),
        }
    }

    /// 403 unless the caller holds `permission`.
    pub fn require(&self, permission: &str) -> Result<(), HubError> {
        if self.can(permission) {
            Ok(())
        } else {
            Err(HubError::forbidden(format!(
                "this token lacks the {permission} permission"
            )))
        }
    }

    /// True for the master token and for a token holding every permission there is (the
    /// admin preset): the callers who may see and manage what others created.
    pub fn is_admin(&self) -> bool {
        ALL_PERMISSIONS.iter().all(|p| self.can(p))
    }

    /// 403 unless the caller holds every permission in `granted`: nobody hands out more
    /// than they hold (the master token holds everything).
    pub fn require_all(&self, granted: &[String]) -> Result<(), HubError> {
        match granted.iter().find(|p| !self.can(p)) {
            None => Ok(()),
            Some(missing) => Err(HubError::forbidden(format!(
                "this token lacks the {missing} permission, so it cannot grant it"
            ))),
        }
    }

    /// 403 unless the caller is the master token.
    pub fn require_master(&self) -> Result<(), HubError> {
        if self.is_master() {
            Ok(())
        } else {
            Err(HubError::forbidden("only the master token may do this"))
        }
    }

    /// True when the caller may register and heartbeat as `agent_id`: the master token,
    /// or a token bound to that agent that holds `agents:register`.
    pub fn acts_for(&self, agent_id: &str) -> bool {
        match self {
            Self::Master => true,
            Self::Token {
                agent_id: own,
                permissions,
                ..
            } => own == agent_id && permissions.contains("agents:register"),
        }
    }

    /// The exchange a MESS executor's key belongs to (seed 003); `None` for every other
    /// credential.
    pub fn exchange_key(&self) -> Option<&str> {
        match self {
            Self::Master => None,
            Self::Token { permissions, .. } => super::exchange::exchange_of_key(permissions.iter()),
        }
    }

    /// The agent id the caller speaks for; `None` for the master token.
    pub fn agent_id(&self) -> Option<&str> {
        match self {
            Self::Master => None,
            Self::Token { agent_id, .. } => Some(agent_id),
        }
    }

    /// The name written into audit rows and `created_by`.
    pub fn label(&self) -> String {
        match self {
            Self::Master => "master".into(),
            Self::Token { agent_id, .. } => agent_id.clone(),
        }
    }

    /// How the caller signed in: `master`, `session` (a person) or `token` (an agent or
    /// a script).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Token { person: true, .. } => "session",
            Self::Token { .. } => "token",
        }
    }

    /// The agent whose own tasks, pipelines and escalations alone this caller sees; `None`
    /// for those who oversee the mesh. The SQL form of [`Principal::sees_task`].
    pub fn confined_to(&self) -> Option<&str> {
        match self {
            Self::Token {
                agent_id,
                person: false,
                ..
            } => Some(agent_id),
            _ => None,
        }
    }

    /// Whether the caller works as one agent (a token that executes tasks, like seed 000's
    /// worker): it sees only its own agent's private state. Everyone else (the master,
    /// people, admins, viewer and operator keys) oversees every agent.
    pub fn is_worker(&self) -> bool {
        self.confined_to().is_some() && self.can("tasks:execute") && !self.is_admin()
    }

    /// Whether the caller may see `agent_id`'s private state: its soul, memory, inbox and
    /// pending work. Another agent's is a 404, like its tasks.
    pub fn sees_agent(&self, agent_id: &str) -> bool {
        !self.is_worker() || self.agent_id() == Some(agent_id)
    }

    /// How a direct message this caller sends `from` a name is recorded: an agent's own
    /// token speaks only as itself (403 otherwise) and is an `agent`; a person is a `user`;
    /// anyone else naming a sender (an operator relaying for an orchestrator) is `system`.
    pub fn sender_type(&self, from: &str) -> Result<&'static str, HubError> {
        if self.is_worker() && self.agent_id() != Some(from) {
            return Err(HubError::forbidden(
                "an agent's token may send messages only as its own agent",
            ));
        }
        Ok(match self {
            Self::Token { person: true, .. } => "user",
            speaker if speaker.agent_id() == Some(from) => "agent",
            _ => "system",
        })
    }

    /// The agent whose own credential this is (a token bound to it that may act for it);
    /// `None` for people, the master and keys that only read or manage.
    pub fn own_agent(&self) -> Option<&str> {
        self.confined_to().filter(|id| self.acts_for(id))
    }

    /// What this caller's write presents to an agent's consumer-lease fence: only an
    /// agent's own credential is fenced (people and the master act beside its consumer).
    pub fn fence(&self, consumer_id: Option<String>) -> Option<ConsumerFence> {
        let agent_id = self.own_agent()?;
        Some(ConsumerFence {
            agent_id: agent_id.to_string(),
            consumer_id,
        })
    }

    /// The task visibility rule: the master and people see every task, agents only the
    /// tasks they hold or made.
    pub fn sees_task(&self, assigned_to: Option<&str>, created_by: &str) -> bool {
        self.confined_to()
            .is_none_or(|me| assigned_to == Some(me) || created_by == me)
    }
}

/// Who an escalation concerns: its task's holder and creator, or, for an escalation
/// without a task, the agent it names and whoever opened it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EscalationScope {
    /// (assigned_to, created_by) of the task, if the escalation has one.
    pub task: Option<(Option<String>, String)>,
    pub agent_id: Option<String>,
    pub opened_by: String,
}

impl Principal {
    /// The task visibility rule carried over to escalations.
    pub fn sees_escalation(&self, scope: &EscalationScope) -> bool {
        match (&scope.task, self.confined_to()) {
            (_, None) => true,
            (Some((assigned_to, created_by)), _) => {
                self.sees_task(assigned_to.as_deref(), created_by)
            }
            (None, Some(me)) => scope.agent_id.as_deref() == Some(me) || scope.opened_by == me,
        }
    }
}

/// A token principal for unit tests.
#[cfg(test)]
pub fn test_token(agent: &str, perms: &[&str]) -> Principal {
    Principal::Token {
        agent_id: agent.into(),
        permissions: Arc::new(perms.iter().map(|p| p.to_string()).collect()),
        person: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use test_token as token;

    #[test]
    fn people_oversee_every_task_and_agents_see_their_own() {
        let person = Principal::Token {
            agent_id: "ada".into(),
            permissions: Arc::new(BTreeSet::from(["tasks:read".to_string()])),
            person: true,
        };
        assert!(person.sees_task(Some("rex"), "master"));
        assert_eq!(person.confined_to(), None);
        let agent = token("ada", &["tasks:read"]);
        assert!(!agent.sees_task(Some("rex"), "master"));
        assert!(agent.sees_task(None, "ada"));
        assert_eq!(agent.confined_to(), Some("ada"));
    }

    #[test]
    fn presets_match_the_reference_lists() {
        assert_eq!(role_permissions("worker").unwrap().len(), 10);
        let mobile = role_permissions("mobile").unwrap();
        assert_eq!(mobile.len(), 9);
        assert!(!mobile.contains(&"escalations:create".to_string()));
        assert_eq!(role_permissions("commander").unwrap().len(), 8);
        assert_eq!(
            role_permissions("admin").unwrap().len(),
            ALL_PERMISSIONS.len()
        );
        assert!(role_permissions("root").is_none());
        // Seed 000's lists stay as documented: only the admin preset (everything) reads
        // the metrics.
        for role in ROLE_NAMES {
            let reads_metrics = role_permissions(role)
                .unwrap()
                .contains(&"metrics:read".to_string());
            assert_eq!(reads_metrics, *role == "admin", "{role}");
        }
    }

    #[test]
    fn every_preset_uses_known_permissions() {
        for role in ROLE_NAMES {
            validate_permissions(&role_permissions(role).unwrap()).unwrap();
        }
        assert!(validate_permissions(&["tasks:fly".into()]).is_err());
    }

    #[test]
    fn an_empty_list_grants_nothing() {
        let p = token("rex", &[]);
        assert!(!p.can("tasks:read"));
        assert!(!p.acts_for("rex"));
        assert!(p.require("tasks:read").is_err());
    }

    #[test]
    fn tokens_see_only_their_own_tasks() {
        let p = token("rex", &["tasks:read", "agents:register"]);
        assert!(p.sees_task(Some("rex"), "master"));
        assert!(p.sees_task(None, "rex"));
        assert!(!p.sees_task(Some("ada"), "master"));
        assert!(Principal::Master.sees_task(Some("ada"), "master"));
        assert!(p.acts_for("rex") && !p.acts_for("ada"));
    }

    #[test]
    fn workers_see_only_their_own_agent_and_overseers_see_every_agent() {
        let worker = token("rex", &role_refs("worker"));
        assert!(worker.sees_agent("rex") && !worker.sees_agent("ada"));
        for role in ["viewer", "operator", "commander", "admin"] {
            assert!(token("ops", &role_refs(role)).sees_agent("ada"), "{role}");
        }
        assert!(Principal::Master.sees_agent("ada"));
    }

    #[test]
    fn a_direct_message_is_from_an_agent_only_when_that_agent_sends_it() {
        let worker = token("rex", &role_refs("worker"));
        assert_eq!(worker.sender_type("rex").unwrap(), "agent");
        assert!(worker.sender_type("ada").is_err());
        assert_eq!(
            token("ops", &role_refs("operator"))
                .sender_type("planner")
                .unwrap(),
            "system"
        );
        assert_eq!(Principal::Master.sender_type("rex").unwrap(), "system");
    }

    fn role_refs(role: &str) -> Vec<&'static str> {
        let list = role_permissions(role).unwrap();
        ALL_PERMISSIONS
            .iter()
            .copied()
            .filter(|p| list.iter().any(|held| held == p))
            .collect()
    }

    #[test]
    fn escalations_follow_their_task() {
        let on_task = EscalationScope {
            task: Some((Some("rex".into()), "master".into())),
            agent_id: Some("rex".into()),
            opened_by: "rex".into(),
        };
        assert!(token("rex", &[]).sees_escalation(&on_task));
        assert!(!token("vic", &["escalations:read"]).sees_escalation(&on_task));
        let loose = EscalationScope {
            task: None,
            agent_id: Some("ada".into()),
            opened_by: "master".into(),
        };
        assert!(token("ada", &[]).sees_escalation(&loose));
        assert!(!token("vic", &[]).sees_escalation(&loose));
        assert!(Principal::Master.sees_escalation(&loose));
    }

    #[test]
    fn nobody_grants_more_than_they_hold() {
        let users_only = token("ops", &["admin:users"]);
        let admin = role_permissions("admin").unwrap();
        assert!(users_only.require_all(&admin).is_err());
        assert!(users_only.require_all(&["admin:users".to_string()]).is_ok());
        assert!(Principal::Master.require_all(&admin).is_ok());
        let full: Vec<&str> = ALL_PERMISSIONS.to_vec();
        assert!(token("root", &full).is_admin() && !users_only.is_admin());
    }
}
