//! `m3shd audit export`: the whole audit log as JSON Lines, read page by page from
//! `GET /api/admin/audit` (newest first, as the hub lists it).

use clap::Subcommand;
use serde::Serialize;
use serde_json::Value;

use super::{print, with_query, CliError, Hub};

/// Entries asked for per page: the most the hub answers at once.
const PAGE: u32 = 500;

#[derive(Subcommand)]
pub enum Action {
    /// Write every entry (or those matching) to standard output, one JSON object a line.
    Export(Filter),
}

#[derive(clap::Args, Serialize)]
pub struct Filter {
    /// Only entries by this actor (`master`, `agent:rex`, `user:fred`).
    #[arg(long)]
    actor: Option<String>,
    /// Only entries of this action (`token.issue`, `task.create`, …).
    #[arg(long)]
    action: Option<String>,
}

#[derive(Serialize)]
struct Page<'a> {
    #[serde(flatten)]
    filter: &'a Filter,
    limit: u32,
    offset: u32,
}

pub async fn run(hub: &Hub, action: Action) -> Result<(), CliError> {
    let Action::Export(filter) = action;
    let mut offset = 0;
    // Entries logged during the export push older ones to later pages, so a page may
    // repeat entries already written: ids fall strictly, so anything not below the
    // last id written is such a repeat.
    let mut last_id = i64::MAX;
    loop {
        let page = Page {
            filter: &filter,
            limit: PAGE,
            offset,
        };
        let answer = hub.get(&with_query("/api/admin/audit", &page)?).await?;
        let entries = answer["entries"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut lines = String::new();
        for entry in entries {
            let id = entry["id"].as_i64().unwrap_or(i64::MIN);
            if id < last_id {
                last_id = id;
                lines.push_str(&format!("{}\n", Value::to_string(entry)));
            }
        }
        print(&lines)?;
        if entries.len() < PAGE as usize {
            return Ok(());
        }
        offset += PAGE;
    }
}
