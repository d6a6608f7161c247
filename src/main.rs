//! The `m3shd` command: parses arguments, loads settings, starts telemetry and calls
//! into the library.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use m3shd::crypto::tokens::random_hex;
use m3shd::settings::{Secret, Secrets, Settings};

#[derive(Parser)]
#[command(
    name = "m3shd",
    version,
    about = "The Commander hub of a multi-agent AI mesh"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "M3SHDUP_BIND")]
        bind: Option<String>,
        /// SQLite database file.
        #[arg(long, env = "M3SHDUP_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Measure a running hub: creates/s, heartbeats/s and claim latency.
    Bench {
        /// What to measure: `hub` (a running hub over HTTP and SSE), `memory` (memory
        /// search on generated data) or `dispatch` (the choice among many agents).
        #[arg(long, value_enum, default_value_t = Suite::Hub)]
        suite: Suite,
        /// Hub base URL (suite hub).
        #[arg(long, env = "M3SHDUP_HUB", default_value = "http://127.0.0.1:8333")]
        hub: String,
        /// Master token of that hub (suite hub).
        #[arg(long, env = "M3SHDUP_TOKEN")]
        token: Option<String>,
        /// Concurrent connections for the throughput figures.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Seconds each throughput figure runs.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Tasks timed one after another for the claim latency.
        #[arg(long, default_value_t = 1000)]
        claims: usize,
        /// Two-task pipelines timed one after another for the unblock latency.
        #[arg(long, default_value_t = 1000)]
        chains: usize,
        /// Memory entries to generate (suite memory).
        #[arg(long, default_value_t = 100_000)]
        entries: usize,
        /// Agents to generate (default: 1,000 for memory, 10,000 for dispatch).
        #[arg(long)]
        agents: Option<usize>,
        /// Timed searches or decisions.
        #[arg(long, default_value_t = 10_000)]
        samples: usize,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[arg(long, env = "M3SHDUP_DATABASE_URL")]
        database_url: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::from_env()?;
    m3shd::telemetry::init(&settings.log_filter);
    match cli.command {
        Command::Serve { bind, database_url } => {
            settings.bind = bind.unwrap_or(settings.bind);
            settings.database_url = database_url.unwrap_or(settings.database_url);
            let master = master_token(&settings.database_url)?;
            serve(settings, Secrets::from_env(master))
        }
        Command::Bench {
            suite,
            hub,
            token,
            connections,
            seconds,
            claims,
            chains,
            entries,
            agents,
            samples,
        } => match suite {
            Suite::Hub => {
                let token =
                    token.context("--token (or M3SHDUP_TOKEN) is required for the hub suite")?;
                let hub = hub.trim_end_matches('/').to_string();
                let plan = m3shd::bench::hub::BenchPlan {
                    hub,
                    token,
                    connections,
                    seconds,
                    claims,
                    chains,
                };
                actix_web::rt::System::new().block_on(m3shd::bench::hub::run(plan))
            }
            Suite::Memory => {
                let dir = tempfile_dir()?;
                let outcome =
                    m3shd::bench::memory::run(&dir, entries, agents.unwrap_or(1000), samples);
                let _ = std::fs::remove_dir_all(&dir);
                outcome
            }
            Suite::Dispatch => m3shd::bench::dispatch::run(agents.unwrap_or(10_000), samples),
        },
        Command::Migrate { database_url } => {
            settings.database_url = database_url.unwrap_or(settings.database_url);
            let mut conn = m3shd::db::open_writer(&settings)?;
            let applied = m3shd::db::run_migrations(&mut conn)?;
            println!(
                "database {} is up to date ({} migrations applied now)",
                settings.database_url,
                applied.len()
            );
            Ok(())
        }
    }
}

#[actix_web::main]
async fn serve(settings: Settings, secrets: Secrets) -> anyhow::Result<()> {
    let app = m3shd::startup::Application::build(settings, secrets).await?;
    app.run_until_stopped()
        .await
        .context("the HTTP server failed")
}

/// `M3SHDUP_TOKEN`, else the token this data directory generated on its first start.
/// A fresh machine gets a new token, printed once, kept (mode 0600) beside the database.
fn master_token(database_url: &str) -> anyhow::Result<Secret> {
    if let Some(token) = std::env::var("M3SHDUP_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        return Ok(Secret::new(token));
    }
    let dir = Path::new(database_url)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file: PathBuf = dir.join("master.token");
    if let Ok(saved) = std::fs::read_to_string(&file) {
        tracing::info!(path = %file.display(), "using the master token generated on first start (set M3SHDUP_TOKEN to choose your own)");
        return Ok(Secret::new(saved.trim()));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let token = random_hex(24);
    write_private(&file, &token)?;
    println!(
        "No M3SHDUP_TOKEN set: generated a master token (shown once, kept in {}):",
        file.display()
    );
    println!();
    println!("    export M3SHDUP_TOKEN={token}");
    println!();
    Ok(Secret::new(token))
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Suite {
    Hub,
    Memory,
    Dispatch,
}

/// A fresh directory for a benchmark's database, under the system's temporary directory.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("m3shd-bench-{}", random_hex(4)));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

fn write_private(file: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut out = options
        .open(file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    out.write_all(contents.as_bytes())?;
    Ok(())
}
