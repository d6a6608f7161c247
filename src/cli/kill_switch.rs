//! `m3shd kill-switch on|off|status`: `/api/admin/kill-switch`.

use awc::http::Method;
use clap::Subcommand;
use serde_json::{json, Value};

use super::table::{cell, fields};
use super::{CliError, Hub};

const PATH: &str = "/api/admin/kill-switch";

#[derive(Subcommand)]
pub enum Action {
    /// Stop all new work: creates answer 503 and queued tasks wait; running ones finish.
    On {
        /// Why, for the audit log and whoever looks next.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume: queued tasks are dispatched again.
    Off,
    /// Whether the switch is engaged, by whom, when and why.
    Status,
}

pub async fn run(hub: &Hub, action: Action) -> Result<(), CliError> {
    let state = match action {
        Action::On { reason } => {
            let body = json!({ "active": true, "reason": reason });
            hub.call(Method::POST, PATH, Some(body)).await?
        }
        Action::Off => hub.call(Method::DELETE, PATH, None).await?,
        Action::Status => hub.get(PATH).await?,
    };
    hub.show(&state, render)
}

fn render(state: &Value) -> String {
    let engaged = if state["active"].as_bool() == Some(true) {
        "engaged"
    } else {
        "off"
    };
    fields(&[
        ("kill switch", engaged.to_string()),
        ("reason", cell(&state["reason"])),
        ("by", cell(&state["by"])),
        ("at", cell(&state["at"])),
    ])
}
