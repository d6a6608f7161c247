//! `m3shd approve`: one line in an `--exec` script gates a risky step on a person's
//! decision. The worker hands its scripts `M3SHD_HUB`, `M3SHD_TOKEN` and `M3SHD_TASK_ID`;
//! this asks the hub for an approval of the task and waits, long-polling, for the verdict.

use awc::http::Method;
use serde_json::json;

use super::client::{CallError, HubClient};

/// What to ask for, and where.
#[derive(Debug, Clone)]
pub struct Ask {
    pub hub: String,
    pub token: String,
    pub task_id: i64,
    pub tool: String,
    pub input: Option<String>,
    pub reason: Option<String>,
    pub timeout_seconds: Option<u64>,
}

/// The decision.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Denied by a person, or by the hub (`timeout`, `task ended`): the note says which.
    Denied(String),
}

/// Seconds each long poll waits (the client gives up on a request after 30).
const POLL_SECONDS: u64 = 25;

pub async fn ask(ask: Ask) -> Result<Verdict, String> {
    let client = HubClient::new(&ask.hub, &ask.token);
    let body = json!({
        "tool": ask.tool,
        "input": ask.input,
        "reason": ask.reason,
        "timeout_seconds": ask.timeout_seconds,
    });
    let created = client
        .call(
            Method::POST,
            &format!("/api/tasks/{}/approvals", ask.task_id),
            Some(&body),
        )
        .await
        .map_err(explain)?;
    let id = created["id"]
        .as_i64()
        .ok_or("the hub answered no approval id")?;
    loop {
        let path = format!("/api/approvals/{id}?wait={POLL_SECONDS}");
        let approval = client
            .call_until_answered(Method::GET, &path, None, || true)
            .await
            .map_err(explain)?;
        match approval["status"].as_str() {
            Some("allowed") => return Ok(Verdict::Allowed),
            Some("denied") => {
                let note = approval["note"].as_str().unwrap_or("denied").to_string();
                return Ok(Verdict::Denied(note));
            }
            _ => {}
        }
    }
}

fn explain(error: CallError) -> String {
    match error {
        CallError::Refused(status, text) => format!("the hub refused ({status}): {text}"),
        CallError::Unreachable(why) => format!("cannot reach the hub: {why}"),
    }
}
