//! Events: every committed state change becomes one named event with a JSON payload and
//! an audience that decides which subscribers may receive it (the REST visibility rules).

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::access::{EscalationScope, Principal};

/// Who may receive an event. Stored with the event (as JSON) where other hub processes
/// relay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Every subscriber (kill switch, keepalive).
    Everyone,
    /// Holders of `tasks:read` who may see this task.
    Task {
        assigned_to: Option<String>,
        created_by: String,
    },
    /// Holders of `agents:read`, and the agent itself.
    Agent { agent_id: String },
    /// Holders of `messages:read`.
    Messages,
    /// Holders of one permission (owners watching preregistrations hold `admin:agents`).
    Holders(#[serde(deserialize_with = "interned")] Permission),
    /// What lands in one agent's inbox: the agent itself, and holders of `messages:read`
    /// who oversee agents.
    Inbox { agent_id: String },
    /// Holders of `escalations:read` who may see this escalation (its task's rule).
    Escalation(EscalationScope),
}

/// A permission's name. Not spelt `&'static str` in [`Audience`], where serde would take it
/// for text borrowed from the input: it is [`intern`]ed instead.
type Permission = &'static str;

/// One event, before it gets its id from the EventBus.
#[derive(Debug, Clone)]
pub struct HubEvent {
    /// The SSE event name (`task_assigned`, `agent_status`, …).
    pub name: &'static str,
    pub data: Value,
    pub audience: Audience,
}

impl HubEvent {
    pub fn new(name: &'static str, data: Value, audience: Audience) -> Self {
        Self {
            name,
            data,
            audience,
        }
    }

    /// The event as another process stored it: its name is one of the hub's own.
    pub fn restored(name: &str, data: Value, audience: Audience) -> Self {
        Self::new(intern(name), data, audience)
    }

    /// Whether `principal` may receive this event.
    pub fn visible_to(&self, principal: &Principal) -> bool {
        match &self.audience {
            Audience::Everyone => true,
            Audience::Task {
                assigned_to,
                created_by,
            } => {
                principal.can("tasks:read")
                    && principal.sees_task(assigned_to.as_deref(), created_by)
            }
            Audience::Agent { agent_id } => {
                principal.can("agents:read") || principal.agent_id() == Some(agent_id.as_str())
            }
            Audience::Messages => principal.can("messages:read"),
            Audience::Holders(permission) => principal.can(permission),
            Audience::Inbox { agent_id } => {
                principal.agent_id() == Some(agent_id.as_str())
                    || (principal.can("messages:read") && principal.sees_agent(agent_id))
            }
            Audience::Escalation(scope) => {
                principal.can("escalations:read") && principal.sees_escalation(scope)
            }
        }
    }
}

/// The one `'static` copy of `text`. Event names and permissions are a small fixed set, so
/// the copies made for the ones read back from the database stay few.
fn intern(text: &str) -> &'static str {
    static SEEN: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(known) = seen.get(text) {
        return known;
    }
    let kept: &'static str = Box::leak(text.to_owned().into_boxed_str());
    seen.insert(kept);
    kept
}

fn interned<'de, D: Deserializer<'de>>(from: D) -> Result<&'static str, D::Error> {
    let text = std::borrow::Cow::<str>::deserialize(from)?;
    Ok(intern(&text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::test_token as token;
    use serde_json::json;

    #[test]
    fn task_events_follow_task_visibility() {
        let event = HubEvent::new(
            "task_assigned",
            json!({}),
            Audience::Task {
                assigned_to: Some("rex".into()),
                created_by: "master".into(),
            },
        );
        assert!(event.visible_to(&Principal::Master));
        assert!(event.visible_to(&token("rex", &["tasks:read"])));
        assert!(!event.visible_to(&token("ada", &["tasks:read"])));
        assert!(!event.visible_to(&token("rex", &[])));
    }

    #[test]
    fn agent_and_message_events_need_their_permission() {
        let agent = HubEvent::new(
            "agent_status",
            json!({}),
            Audience::Agent {
                agent_id: "rex".into(),
            },
        );
        assert!(agent.visible_to(&token("ada", &["agents:read"])));
        assert!(agent.visible_to(&token("rex", &["tasks:read"])));
        assert!(!agent.visible_to(&token("ada", &["tasks:read"])));
        let message = HubEvent::new("message", json!({}), Audience::Messages);
        assert!(!message.visible_to(&token("ada", &["tasks:read"])));
    }

    #[test]
    fn an_audience_read_back_from_storage_is_the_one_stored() {
        let audiences = [
            Audience::Everyone,
            Audience::Holders("admin:agents"),
            Audience::Task {
                assigned_to: None,
                created_by: "ops".into(),
            },
            Audience::Escalation(EscalationScope {
                task: Some((Some("rex".into()), "ops".into())),
                agent_id: None,
                opened_by: "rex".into(),
            }),
        ];
        for audience in audiences {
            let stored = serde_json::to_string(&audience).unwrap();
            let restored: Audience = serde_json::from_str(&stored).unwrap();
            assert_eq!(restored, audience, "{stored}");
        }
        let event = HubEvent::restored("task_assigned", json!({}), Audience::Everyone);
        assert!(std::ptr::eq(event.name, intern("task_assigned")));
    }
}
