//! The operator's commands (`m3shd agents|tasks|kill-switch|audit|tokens …`): each calls a
//! running hub's API with a token and prints the answer, as aligned text for people or,
//! with `--json`, as the hub's own JSON for scripts. Any failure exits non-zero with the
//! hub's `error` message on standard error.

mod agents;
mod audit;
mod kill_switch;
mod table;
mod tasks;
mod tokens;

use std::io::Write;

use awc::http::Method;
use clap::{Args, Subcommand};
use m3shd::worker::client::{Answer, HubClient};
use serde::Serialize;
use serde_json::Value;

/// The operator commands, flattened into `m3shd`'s own.
#[derive(Subcommand)]
pub enum Operator {
    /// The agents the hub knows.
    Agents(Group<agents::Action>),
    /// List, show, create and cancel tasks.
    Tasks(Group<tasks::Action>),
    /// Stop all new work, resume it, or see whether it is stopped.
    KillSwitch(Group<kill_switch::Action>),
    /// The audit log.
    Audit(Group<audit::Action>),
    /// Issue, list and revoke agent tokens (master token only).
    Tokens(Group<tokens::Action>),
}

/// One command group: where the hub is, and what to do there.
#[derive(Args)]
pub struct Group<A: Subcommand> {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    action: A,
}

/// Where the hub is and who asks. Global, so they may follow the subcommand.
#[derive(Args)]
struct Remote {
    /// Hub base URL.
    #[arg(
        long,
        global = true,
        env = "M3SHDUP_HUB",
        default_value = "http://127.0.0.1:8333"
    )]
    hub: String,
    /// Token to act with (tokens and audit need the master token).
    #[arg(long, global = true, env = "M3SHDUP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the hub's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

/// Why an operator command failed. Shown on standard error as it reads.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The hub answered with an error status; `message` is its `error` field.
    #[error("{message} (HTTP {status})")]
    Refused { status: u16, message: String },
    #[error("cannot reach the hub at {hub}: {why}")]
    Unreachable { hub: String, why: String },
    #[error("no token: pass --token or set M3SHDUP_TOKEN")]
    NoToken,
    #[error("{0}")]
    Usage(String),
    /// A check found what it was looking for: a broken audit chain.
    #[error("{0}")]
    Broken(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs one operator command to completion.
pub fn run(command: Operator) -> Result<(), CliError> {
    let outcome = actix_web::rt::System::new().block_on(async move {
        match command {
            Operator::Agents(g) => agents::run(&Hub::connect(g.remote)?, g.action).await,
            Operator::Tasks(g) => tasks::run(&Hub::connect(g.remote)?, g.action).await,
            Operator::KillSwitch(g) => kill_switch::run(&Hub::connect(g.remote)?, g.action).await,
            Operator::Audit(g) => audit::run(g.remote, g.action).await,
            Operator::Tokens(g) => tokens::run(&Hub::connect(g.remote)?, g.action).await,
        }
    });
    match outcome {
        // The reader went away (`| head`): it has all it wanted.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// A hub to call, and how its answers are to be printed.
struct Hub {
    base: String,
    client: HubClient,
    json: bool,
}

impl Hub {
    fn connect(remote: Remote) -> Result<Self, CliError> {
        let token = remote
            .token
            .filter(|t| !t.is_empty())
            .ok_or(CliError::NoToken)?;
        Ok(Self {
            client: HubClient::new(&remote.hub, &token),
            base: remote.hub,
            json: remote.json,
        })
    }

    /// One call; a non-2xx answer becomes [`CliError::Refused`] with the hub's message.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let Answer { status, text } = self
            .client
            .send(method, path, body.as_ref())
            .await
            .map_err(|why| CliError::Unreachable {
                hub: self.base.clone(),
                why,
            })?;
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let message = match json["error"].as_str() {
            Some(error) => error.to_string(),
            // Not the hub's JSON (a proxy's page, say): show what came, briefly.
            None => text
                .chars()
                .take(200)
                .collect::<String>()
                .trim()
                .to_string(),
        };
        Err(CliError::Refused {
            status: status.as_u16(),
            message,
        })
    }

    async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::GET, path, None).await
    }

    /// Prints the hub's answer: as it came with `--json`, else as `human` renders it.
    fn show(&self, answer: &Value, human: impl FnOnce(&Value) -> String) -> Result<(), CliError> {
        if self.json {
            print(&format!("{answer:#}\n"))
        } else {
            print(&human(answer))
        }
    }
}

/// `path?query` with the present parameters, encoded.
fn with_query(path: &str, params: &impl Serialize) -> Result<String, CliError> {
    let query = serde_urlencoded::to_string(params).map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    })
}

/// Writes to standard output (a `println!` would panic on a closed pipe).
fn print(text: &str) -> Result<(), CliError> {
    Ok(std::io::stdout().lock().write_all(text.as_bytes())?)
}
