//! What inbound webhooks mean: Uptime Kuma alerts and GitHub events turned into tasks.

use serde_json::Value;

/// A task a webhook asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub title: String,
    pub prompt: String,
}

/// An Uptime Kuma notification (`heartbeat` and `monitor` objects), if the body is one.
pub fn uptime_kuma(body: &Value) -> Option<Request> {
    let (heartbeat, monitor) = (body.get("heartbeat")?, body.get("monitor")?);
    if !heartbeat.is_object() || !monitor.is_object() {
        return None;
    }
    let name = monitor["name"].as_str().unwrap_or("unknown monitor");
    // Kuma's statuses: 0 down, 1 up, 2 pending, 3 maintenance.
    let state = match heartbeat["status"].as_i64() {
        Some(1) => "UP",
        Some(2) => "PENDING",
        Some(3) => "MAINTENANCE",
        _ => "DOWN",
    };
    let message = heartbeat["msg"]
        .as_str()
        .or_else(|| body["msg"].as_str())
        .unwrap_or("");
    let target = monitor["url"]
        .as_str()
        .or_else(|| monitor["hostname"].as_str())
        .unwrap_or("");
    Some(Request {
        title: format!("Alert: {name} is {state}"),
        prompt: format!(
            "Uptime Kuma alert — monitor '{name}' changed to {state}. Message: {message}. Target: {target}. \
             Investigate the cause and report what you find and what you did."
        ),
    })
}

/// What a GitHub delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GithubEvent {
    Task(Request),
    Ping,
    /// An event (or action) that creates no task, and why.
    Ignored(String),
}

/// Reads a GitHub delivery: `event` is the `X-GitHub-Event` header.
pub fn github(event: &str, body: &Value) -> GithubEvent {
    let repo = body["repository"]["full_name"]
        .as_str()
        .unwrap_or("the repository");
    let action = body["action"].as_str().unwrap_or("");
    match event {
        "ping" => GithubEvent::Ping,
        "pull_request" if matches!(action, "opened" | "reopened" | "synchronize") => {
            let pr = &body["pull_request"];
            let number = body["number"]
                .as_i64()
                .or_else(|| pr["number"].as_i64())
                .unwrap_or(0);
            let title = pr["title"].as_str().unwrap_or("(untitled)");
            let url = pr["html_url"].as_str().unwrap_or("");
            let verb = if action == "synchronize" {
                "updated"
            } else {
                action
            };
            GithubEvent::Task(Request {
                title: format!("Review PR #{number}: {title}"),
                prompt: format!("GitHub PR #{number} was {verb} in {repo}: '{title}'. {url}\nReview the change: correctness, tests, security, and anything a maintainer should know."),
            })
        }
        "issues" if action == "opened" => {
            let issue = &body["issue"];
            let number = issue["number"].as_i64().unwrap_or(0);
            let title = issue["title"].as_str().unwrap_or("(untitled)");
            let url = issue["html_url"].as_str().unwrap_or("");
            GithubEvent::Task(Request {
                title: format!("Triage issue #{number}: {title}"),
                prompt: format!("GitHub issue #{number} was opened in {repo}: '{title}'. {url}\nTriage it: what is asked, how urgent, and a suggested next step."),
            })
        }
        "push" => {
            let branch = body["ref"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches("refs/heads/");
            let commits = body["commits"].as_array().map_or(0, Vec::len);
            let compare = body["compare"].as_str().unwrap_or("");
            GithubEvent::Task(Request {
                title: format!("Review push to {branch}: {commits} commit(s)"),
                prompt: format!("{commits} commit(s) were pushed to {branch} in {repo}. {compare}\nReview what changed and flag anything risky."),
            })
        }
        "pull_request" | "issues" => {
            GithubEvent::Ignored(format!("{event} action {action:?} creates no task"))
        }
        other => GithubEvent::Ignored(format!("{other} events create no task")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kuma_down_and_up_become_alerts() {
        let down = json!({ "heartbeat": { "status": 0, "msg": "timeout" }, "monitor": { "name": "my-service" } });
        let task = uptime_kuma(&down).unwrap();
        assert_eq!(task.title, "Alert: my-service is DOWN");
        assert!(task
            .prompt
            .starts_with("Uptime Kuma alert — monitor 'my-service' changed to DOWN"));
        let up = json!({ "heartbeat": { "status": 1 }, "monitor": { "name": "my-service" } });
        assert_eq!(uptime_kuma(&up).unwrap().title, "Alert: my-service is UP");
        assert!(uptime_kuma(&json!({ "title": "t" })).is_none());
    }

    #[test]
    fn github_events_become_tasks_pings_or_nothing() {
        let pr = json!({ "action": "opened", "number": 42, "pull_request": { "title": "Add caching layer" } });
        match github("pull_request", &pr) {
            GithubEvent::Task(t) => {
                assert_eq!(t.title, "Review PR #42: Add caching layer");
                assert!(t.prompt.starts_with("GitHub PR #42 was opened"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(github("ping", &json!({})), GithubEvent::Ping);
        assert!(matches!(
            github("pull_request", &json!({ "action": "closed" })),
            GithubEvent::Ignored(_)
        ));
        assert!(matches!(
            github("star", &json!({})),
            GithubEvent::Ignored(_)
        ));
        let push = json!({ "ref": "refs/heads/main", "commits": [{}, {}] });
        assert!(
            matches!(github("push", &push), GithubEvent::Task(t) if t.title == "Review push to main: 2 commit(s)")
        );
    }
}
