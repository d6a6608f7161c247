//! The JSON shapes the hub speaks: tasks and agents as responses and as event payloads.
//! Event payloads never carry a prompt or an output; responses open them with the Vault.

use serde::Serialize;
use serde_json::{json, Value};

use crate::crypto::Vault;
use crate::db::models::{MessageRow, TaskRow};
use crate::domain::agent::{AgentStatus, TaskStats};

/// A task as `GET /api/tasks/{id}` returns it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskView {
    pub id: i32,
    pub title: String,
    pub prompt: String,
    pub required_capability: String,
    pub assign_to: Option<String>,
    pub assigned_to: Option<String>,
    pub status: String,
    pub reason: Option<String>,
    pub priority: i32,
    pub urgency: String,
    pub deadline: Option<String>,
    pub model: String,
    pub created_by: String,
    pub output: Option<String>,
    pub depends_on: Vec<i32>,
    pub pipeline_id: Option<i32>,
    pub attempts: i32,
    pub verified: bool,
    pub cost_usd: Option<f64>,
    pub tokens_in: Option<i32>,
    pub tokens_out: Option<i32>,
    pub confidence: Option<f64>,
    pub created_at: String,
    pub updated_at: String,
    pub assigned_at: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub schedule_timeout_seconds: Option<i32>,
    pub fail_on_schedule_timeout: bool,
    pub progress_timeout_seconds: Option<i32>,
    pub max_cost_usd: Option<f64>,
    pub max_tokens: Option<i32>,
    /// The approval its holder waits for (seed 001), shown while it waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub pending_approval: Option<Value>,
}

/// How many characters `compact=true` keeps of a prompt or output.
pub const COMPACT_CHARS: usize = 200;

/// A sealed value's text; one neither key opens is shown as unreadable rather than
/// failing the whole response.
pub fn open_or_unreadable(vault: &Vault, sealed: &str) -> String {
    vault
        .open(sealed)
        .map_or_else(|| "[unreadable: unknown key]".to_string(), |o| o.plaintext)
}

impl TaskView {
    /// Opens the sealed fields. A value neither key opens is shown as unreadable rather
    /// than failing the whole response.
    pub fn new(row: TaskRow, vault: &Vault, depends_on: Vec<i32>, compact: bool) -> Self {
        let open = |sealed: &str| {
            let text = open_or_unreadable(vault, sealed);
            if compact {
                text.chars().take(COMPACT_CHARS).collect()
            } else {
                text
            }
        };
        Self {
            prompt: open(&row.prompt),
            output: row.output.as_deref().map(open),
            id: row.id,
            title: row.title,
            required_capability: row.required_capability,
            assign_to: row.assign_to,
            assigned_to: row.assigned_to,
            status: row.status,
            reason: row.reason,
            priority: row.priority,
            urgency: row.urgency,
            deadline: row.deadline,
            model: row.model,
            created_by: row.created_by,
            depends_on,
            pipeline_id: row.pipeline_id,
            attempts: row.attempts,
            verified: row.verified,
            cost_usd: row.cost_usd,
            tokens_in: row.tokens_in,
            tokens_out: row.tokens_out,
            confidence: row.confidence,
            created_at: row.created_at,
            updated_at: row.updated_at,
            assigned_at: row.assigned_at,
            started_at: row.started_at,
            completed_at: row.completed_at,
            schedule_timeout_seconds: row.schedule_timeout_seconds,
            fail_on_schedule_timeout: row.fail_on_schedule_timeout,
            progress_timeout_seconds: row.progress_timeout_seconds,
            max_cost_usd: row.max_cost_usd,
            max_tokens: row.max_tokens,
            pending_approval: None,
        }
    }
}

/// A task as events describe it: its routing and state, never its prompt or output.
pub fn task_event(row: &TaskRow) -> Value {
    json!({
        "id": row.id,
        "task_id": row.id,
        "title": row.title,
        "status": row.status,
        "reason": row.reason,
        "required_capability": row.required_capability,
        "assigned_to": row.assigned_to,
        "created_by": row.created_by,
        "priority": row.priority,
        "urgency": row.urgency,
        "pipeline_id": row.pipeline_id,
        "attempts": row.attempts,
        "has_output": row.output.is_some(),
        "updated_at": row.updated_at,
    })
}

/// An agent as the live registry knows it: seed 000's fields and seed 004's beside them.
/// The handlers drop `soul_content` and `session_key` for callers who may not see them.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    pub id: i32,
    pub agent_id: String,
    pub name: String,
    pub machine: Option<String>,
    pub capabilities: Vec<String>,
    pub excluded: Vec<String>,
    pub max_concurrent: i32,
    /// An operator's hold, else liveness and load (see `domain::agent::shown_status`).
    pub status: &'static str,
    /// Liveness and load alone, whatever an operator set.
    pub presence: AgentStatus,
    pub load: usize,
    pub role: Option<String>,
    /// The owner's lifecycle state: ACTIVE, PAUSED, SUSPENDED or BANNED (seed 002).
    pub state: &'static str,
    pub config: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soul_content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    pub last_activity: Option<String>,
    pub last_heartbeat: Option<String>,
    pub last_seen: Option<String>,
    pub registered_at: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(rename = "taskStats", skip_serializing_if = "Option::is_none")]
    pub task_stats: Option<TaskStats>,
}

/// A message as responses and events show it: seed 000's fields, with seed 004's `from`,
/// `to` and `type` beside them.
pub fn message_view(row: &MessageRow, vault: &Vault) -> Value {
    let content = if row.sealed {
        open_or_unreadable(vault, &row.content)
    } else {
        row.content.clone()
    };
    json!({
        "id": row.id,
        "sender": row.sender,
        "sender_type": row.sender_type,
        "recipient": row.recipient,
        "channel": row.channel,
        "content": content,
        "created_at": row.created_at,
        "from": row.sender,
        "to": row.recipient,
        "type": row.message_type,
    })
}

/// An approval as events describe it: never its input.
pub fn approval_event(row: &crate::db::approvals::ApprovalRow) -> Value {
    json!({
        "id": row.id,
        "task_id": row.task_id,
        "agent_id": row.agent_id,
        "tool": row.tool,
        "reason": row.reason,
        "status": row.status,
        "decided_by": row.decided_by,
        "note": row.note,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "decided_at": row.decided_at,
    })
}

/// An approval as responses show it: the event's fields and its input, opened.
pub fn approval_view(row: &crate::db::approvals::ApprovalRow, vault: &Vault) -> Value {
    let mut view = approval_event(row);
    view["input"] = json!(row
        .input
        .as_deref()
        .map(|sealed| open_or_unreadable(vault, sealed)));
    view
}
