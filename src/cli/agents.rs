//! `m3shd agents ls`: the agents the hub knows (`GET /api/agents`).

use clap::Subcommand;
use serde::Serialize;
use serde_json::Value;

use super::table::{cell, Table};
use super::{with_query, CliError, Hub};

#[derive(Subcommand)]
pub enum Action {
    /// List agents: status, load, capabilities, last heartbeat.
    Ls(ListArgs),
}

#[derive(clap::Args, Serialize)]
pub struct ListArgs {
    /// Only agents with this status.
    #[arg(long, value_parser = ["online", "busy", "offline"])]
    status: Option<String>,
    /// Only agents with this role.
    #[arg(long)]
    role: Option<String>,
    /// Most agents to show (the hub caps it at 200).
    #[arg(long)]
    limit: Option<u32>,
    /// Agents to skip, for the next page.
    #[arg(long)]
    offset: Option<u32>,
}

pub async fn run(hub: &Hub, action: Action) -> Result<(), CliError> {
    match action {
        Action::Ls(args) => {
            let answer = hub.get(&with_query("/api/agents", &args)?).await?;
            hub.show(&answer, render)
        }
    }
}

fn render(answer: &Value) -> String {
    let mut table = Table::new(&[
        "AGENT",
        "STATUS",
        "LOAD",
        "CAPABILITIES",
        "MACHINE",
        "LAST HEARTBEAT",
    ]);
    let agents = answer["agents"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for agent in agents {
        table.row(vec![
            cell(&agent["agent_id"]),
            cell(&agent["status"]),
            format!(
                "{}/{}",
                cell(&agent["load"]),
                cell(&agent["max_concurrent"])
            ),
            cell(&agent["capabilities"]),
            cell(&agent["machine"]),
            cell(&agent["last_heartbeat"]),
        ]);
    }
    let mut out = table.render();
    let total = answer["total"].as_u64().unwrap_or(0);
    if total as usize > agents.len() {
        out.push_str(&format!(
            "({} of {total} agents shown; use --offset for more)\n",
            agents.len()
        ));
    }
    out
}
