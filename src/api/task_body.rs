//! The body that describes a task, shared by `POST /api/tasks`, pipeline members and
//! template dispatch, and its validation into a row ready to insert (prompt sealed).

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::db::models::{NewTaskRow, TaskLimits};
use crate::domain::access::Principal;
use crate::domain::agent::valid_agent_id;
use crate::domain::graph::parse_depends_on;
use crate::domain::parse_time;
use crate::domain::task::{Urgency, MODELS};
use crate::domain::Blank;
use crate::error::HubError;
use crate::startup::Hub;

const MAX_TITLE_CHARS: usize = 500;

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct TaskBody {
    #[schema(required = true, value_type = String, min_length = 1, max_length = 500, pattern = r"\S")]
    pub title: Option<String>,
    #[schema(required = true, value_type = String, min_length = 1, max_length = 8192, pattern = r"\S")]
    pub prompt: Option<String>,
    #[schema(value_type = Option<String>, min_length = 1, max_length = 64, pattern = r"\S")]
    pub required_capability: Option<String>,
    #[schema(value_type = Option<String>, pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub assign_to: Option<String>,
    #[schema(value_type = Option<i32>)]
    pub priority: Option<i32>,
    #[schema(value_type = Option<String>, pattern = "^(low|normal|high|critical)$")]
    pub urgency: Option<String>,
    #[schema(schema_with = super::openapi::deadline)]
    pub deadline: Option<String>,
    #[schema(schema_with = super::openapi::depends_on)]
    pub depends_on: Option<Value>,
    #[schema(value_type = Option<String>, pattern = "^(auto|haiku|sonnet|opus)$")]
    pub model: Option<String>,
    #[schema(value_type = Option<String>)]
    pub created_by: Option<String>,
    #[schema(value_type = Option<i32>, minimum = 1)]
    pub timeout_seconds: Option<i32>,
    /// Seconds the task may wait unclaimed before the hub escalates (default: its
    /// capability's `schedule_timeouts`, else `default_schedule_timeout`; 0 there is off).
    #[schema(value_type = Option<i32>, minimum = 1)]
    pub schedule_timeout_seconds: Option<i32>,
    /// Fail the task (reason `schedule_timeout`) when it waits that long, not only escalate.
    #[schema(value_type = Option<bool>)]
    pub fail_on_schedule_timeout: Option<bool>,
    /// Seconds a running task may go without a stream chunk or report before it is stuck.
    #[schema(value_type = Option<i32>, minimum = 1)]
    pub progress_timeout_seconds: Option<i32>,
    /// The task is cancelled (reason `budget_exceeded`) once its reported cost passes this.
    #[schema(value_type = Option<f64>, exclusive_minimum = 0)]
    pub max_cost_usd: Option<f64>,
    /// The task is cancelled once its reported tokens (in and out) pass this.
    #[schema(value_type = Option<i32>, minimum = 1)]
    pub max_tokens: Option<i32>,
}

impl TaskBody {
    /// Validates the body into a row to insert, the prompt sealed.
    pub fn into_row(
        self,
        principal: &Principal,
        hub: &Hub,
        source: &str,
    ) -> Result<NewTaskRow, HubError> {
        let title = self
            .title
            .map(|t| t.trim_blank().to_string())
            .filter(|t| !t.is_empty());
        let title = title.ok_or_else(|| HubError::bad_request("title is required"))?;
        // Checked here for every body (templates and relays too, which do not use it), so
        // a malformed list is refused wherever it is sent.
        parse_depends_on(self.depends_on.as_ref(), "depends_on")?;
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(HubError::bad_request(format!(
                "title exceeds {MAX_TITLE_CHARS} characters"
            )));
        }
        let prompt = self
            .prompt
            .filter(|p| !p.trim_blank().is_empty())
            .ok_or_else(|| HubError::bad_request("prompt is required"))?;
        let max_prompt = hub.core.settings.max_prompt_bytes;
        if prompt.len() > max_prompt {
            return Err(HubError::bad_request(format!(
                "prompt exceeds {max_prompt} bytes"
            )));
        }
        let capability = self
            .required_capability
            .unwrap_or_else(|| "research".into());
        if capability.trim_blank().is_empty() || capability.chars().count() > 64 {
            return Err(HubError::bad_request(
                "required_capability must be 1 to 64 characters",
            ));
        }
        if let Some(agent) = &self.assign_to {
            if !valid_agent_id(agent) {
                return Err(HubError::bad_request(format!(
                    "assign_to {agent:?} is not a valid agent id"
                )));
            }
        }
        let urgency: Urgency = self.urgency.as_deref().unwrap_or("normal").parse()?;
        // An empty deadline is no deadline.
        let deadline = self
            .deadline
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(parse_deadline)
            .transpose()?;
        let model = self.model.unwrap_or_else(|| "auto".into());
        if !MODELS.contains(&model.as_str()) {
            return Err(HubError::bad_request(format!(
                "unknown model {model:?} (expected auto, haiku, sonnet or opus)"
            )));
        }
        for (name, seconds) in [
            ("timeout_seconds", self.timeout_seconds),
            ("schedule_timeout_seconds", self.schedule_timeout_seconds),
            ("progress_timeout_seconds", self.progress_timeout_seconds),
            ("max_tokens", self.max_tokens),
        ] {
            if seconds.is_some_and(|t| t <= 0) {
                return Err(HubError::bad_request(format!("{name} must be positive")));
            }
        }
        if self
            .max_cost_usd
            .is_some_and(|c| !c.is_finite() || c <= 0.0)
        {
            return Err(HubError::bad_request(
                "max_cost_usd must be a positive number",
            ));
        }
        let limits = TaskLimits {
            schedule_timeout_seconds: self.schedule_timeout_seconds,
            fail_on_schedule_timeout: self.fail_on_schedule_timeout.unwrap_or(false),
            progress_timeout_seconds: self.progress_timeout_seconds,
            max_cost_usd: self.max_cost_usd,
            max_tokens: self.max_tokens,
        };
        // Only the master token may name another creator; a token creates as itself.
        let created_by = match principal {
            Principal::Master => self
                .created_by
                .filter(|c| !c.trim_blank().is_empty())
                .unwrap_or_else(|| "master".into()),
            other => other.label(),
        };
        let prompt = hub.core.vault.seal(&prompt);
        Ok(NewTaskRow {
            assign_to: self.assign_to,
            priority: self.priority.unwrap_or(0),
            urgency: urgency.as_str().into(),
            deadline,
            model,
            timeout_seconds: self.timeout_seconds,
            limits,
            ..NewTaskRow::queued(title, prompt, capability, created_by, source)
        })
    }
}

fn parse_deadline(raw: &str) -> Result<String, HubError> {
    parse_time(raw).ok_or_else(|| {
        HubError::bad_request(format!(
            "deadline {raw:?} is not an ISO 8601 timestamp like 2026-04-20T18:00:00Z"
        ))
    })
}
