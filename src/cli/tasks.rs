//! `m3shd tasks ls|show|create|cancel`: tasks through `/api/tasks`.

use std::io::Read;

use awc::http::Method;
use clap::Subcommand;
use serde::Serialize;
use serde_json::{json, Value};

use super::table::{block, cell, fields, short, Table};
use super::{with_query, CliError, Hub};

/// Characters of a title shown in a listing.
const TITLE_CHARS: usize = 60;

#[derive(Subcommand)]
pub enum Action {
    /// List tasks, newest first.
    Ls(ListArgs),
    /// Show one task with its prompt and output.
    Show {
        /// Task id.
        id: u32,
    },
    /// Create a task; it is assigned at once if an agent can take it.
    Create(CreateArgs),
    /// Cancel a task (its creator or the master token).
    Cancel {
        /// Task id.
        id: u32,
    },
}

#[derive(clap::Args, Serialize)]
pub struct ListArgs {
    /// Only tasks with this status.
    #[arg(long, value_parser = ["queued", "assigned", "running", "done", "failed", "cancelled"])]
    status: Option<String>,
    /// Only tasks held by this agent.
    #[arg(long)]
    assigned_to: Option<String>,
    /// Most tasks to show (default 20; the hub caps it).
    #[arg(long)]
    limit: Option<u32>,
    /// Tasks to skip, for the next page.
    #[arg(long)]
    offset: Option<u32>,
}

#[derive(clap::Args)]
pub struct CreateArgs {
    #[arg(long)]
    title: String,
    /// The prompt, or `-` to read it from standard input.
    #[arg(long)]
    prompt: String,
    /// Capability an agent needs to take it (default: research).
    #[arg(long)]
    capability: Option<String>,
    /// Higher goes first.
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
    /// Only this agent may take it.
    #[arg(long)]
    assign_to: Option<String>,
}

pub async fn run(hub: &Hub, action: Action) -> Result<(), CliError> {
    match action {
        Action::Ls(args) => {
            let answer = hub.get(&with_query("/api/tasks", &args)?).await?;
            hub.show(&answer, render_list)
        }
        Action::Show { id } => {
            let task = hub.get(&format!("/api/tasks/{id}")).await?;
            hub.show(&task, render_task)
        }
        Action::Create(args) => {
            let body = json!({
                "title": args.title,
                "prompt": prompt_text(args.prompt)?,
                "required_capability": args.capability,
                "priority": args.priority,
                "assign_to": args.assign_to,
            });
            let task = hub.call(Method::POST, "/api/tasks", Some(body)).await?;
            hub.show(&task, render_task)
        }
        Action::Cancel { id } => {
            let body = json!({ "status": "cancelled" });
            let path = format!("/api/tasks/{id}");
            let task = hub.call(Method::PUT, &path, Some(body)).await?;
            hub.show(&task, |t| {
                format!("task {} {}\n", cell(&t["id"]), cell(&t["status"]))
            })
        }
    }
}

/// The prompt as given, or standard input for `-` (long prompts, pipes).
fn prompt_text(prompt: String) -> Result<String, CliError> {
    if prompt != "-" {
        return Ok(prompt);
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| CliError::Usage(format!("cannot read the prompt from standard input: {e}")))?;
    Ok(text)
}

fn render_list(answer: &Value) -> String {
    let mut table = Table::new(&[
        "ID",
        "STATUS",
        "PRIORITY",
        "CAPABILITY",
        "ASSIGNED TO",
        "ATTEMPTS",
        "TITLE",
    ]);
    for task in answer["tasks"].as_array().into_iter().flatten() {
        table.row(vec![
            cell(&task["id"]),
            cell(&task["status"]),
            cell(&task["priority"]),
            cell(&task["required_capability"]),
            cell(&task["assigned_to"]),
            cell(&task["attempts"]),
            short(&task["title"], TITLE_CHARS),
        ]);
    }
    table.render()
}

fn render_task(task: &Value) -> String {
    let field = |name: &str| cell(&task[name]);
    let mut out = fields(&[
        ("id", field("id")),
        ("title", field("title")),
        ("status", field("status")),
        ("reason", field("reason")),
        ("capability", field("required_capability")),
        ("priority", field("priority")),
        ("urgency", field("urgency")),
        ("assigned to", field("assigned_to")),
        ("created by", field("created_by")),
        ("attempts", field("attempts")),
        ("depends on", field("depends_on")),
        ("pipeline", field("pipeline_id")),
        ("verified", field("verified")),
        ("cost (USD)", field("cost_usd")),
        ("created", field("created_at")),
        ("updated", field("updated_at")),
    ]);
    out.push_str(&block("prompt", &task["prompt"]));
    out.push_str(&block("output", &task["output"]));
    out
}
