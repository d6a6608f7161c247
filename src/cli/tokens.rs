//! `m3shd tokens issue|ls|revoke`: agent tokens through `/api/admin/tokens` (master only).
//! The hub stores only hashes: the raw token is printed once, by `issue`.

use awc::http::Method;
use clap::Subcommand;
use serde_json::{json, Value};

use super::table::{cell, fields, Table};
use super::{CliError, Hub};

#[derive(Subcommand)]
pub enum Action {
    /// Issue a token for an agent; the raw token is shown this once.
    Issue(IssueArgs),
    /// List active tokens by hash prefix.
    Ls,
    /// Revoke a token by its hash or hash prefix (8+ hex characters); takes effect at once.
    Revoke {
        /// Hash or hash prefix, as `tokens ls` shows it.
        hash: String,
    },
}

#[derive(clap::Args)]
pub struct IssueArgs {
    /// The agent the token acts for.
    #[arg(long)]
    agent_id: String,
    /// Display name (default: the agent id).
    #[arg(long)]
    name: Option<String>,
    /// A role preset (worker when neither this nor --permissions is given).
    #[arg(long, conflicts_with = "permissions")]
    role: Option<String>,
    /// Exact permissions instead of a role, comma-separated (`tasks:read,tasks:create`).
    #[arg(long, value_delimiter = ',')]
    permissions: Option<Vec<String>>,
}

pub async fn run(hub: &Hub, action: Action) -> Result<(), CliError> {
    match action {
        Action::Issue(args) => {
            let body = json!({
                "agent_id": args.agent_id,
                "name": args.name,
                "role": args.role,
                "permissions": args.permissions,
            });
            let token = hub
                .call(Method::POST, "/api/admin/tokens", Some(body))
                .await?;
            hub.show(&token, render_issued)
        }
        Action::Ls => {
            let answer = hub.get("/api/admin/tokens").await?;
            hub.show(&answer, render_list)
        }
        Action::Revoke { hash } => {
            // A hash is hex; anything else could reach another route, so it goes no further.
            if hash.is_empty() || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(CliError::Usage(format!(
                    "{hash:?} is not a token hash (hex characters, as `tokens ls` shows)"
                )));
            }
            let path = format!("/api/admin/tokens/{hash}");
            let token = hub.call(Method::DELETE, &path, None).await?;
            hub.show(&token, |t| {
                format!(
                    "revoked token {} of agent {}\n",
                    cell(&t["hash_prefix"]),
                    cell(&t["agent_id"])
                )
            })
        }
    }
}

fn render_issued(token: &Value) -> String {
    let mut out = fields(&[
        ("token", cell(&token["token"])),
        ("hash", cell(&token["hash"])),
        ("agent", cell(&token["agent_id"])),
        ("name", cell(&token["name"])),
        ("role", role(token)),
        ("permissions", cell(&token["permissions"])),
    ]);
    out.push_str("\nThe raw token is shown only now: the hub keeps its hash alone.\n");
    out
}

fn render_list(answer: &Value) -> String {
    let mut table = Table::new(&[
        "HASH PREFIX",
        "AGENT",
        "NAME",
        "ROLE",
        "PERMISSIONS",
        "CREATED",
        "CREATED BY",
    ]);
    for token in answer["tokens"].as_array().into_iter().flatten() {
        let permissions = token["permissions"].as_array().map_or(0, Vec::len);
        table.row(vec![
            cell(&token["hash_prefix"]),
            cell(&token["agent_id"]),
            cell(&token["name"]),
            role(token),
            permissions.to_string(),
            cell(&token["created_at"]),
            cell(&token["created_by"]),
        ]);
    }
    table.render()
}

/// The role preset, or `custom` for a token made from a permission list.
fn role(token: &Value) -> String {
    match &token["role"] {
        Value::Null => "custom".into(),
        role => cell(role),
    }
}
