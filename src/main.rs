//! The `m3shd` command: parses arguments, loads settings, starts telemetry and calls
//! into the library. The operator commands, which only talk to a running hub, are in
//! `cli/`.

mod cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use m3shd::crypto::tokens::random_hex;
use m3shd::db::files;
use m3shd::settings::{Secret, Secrets, Settings};

/// glibc's allocator was a fifth of the hub's CPU on durable creates (memory allocated on
/// one thread and freed on another, all the time here); mimalloc handles that pattern well.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// SQLite allocates through mimalloc too. It calls its allocator ~60 times per durable
/// create on the writer thread (its in-memory savepoint journal grows in 1 KiB pieces),
/// and glibc's allocator was most of that cost (BENCHMARKS.md, issue 15). Called first
/// in `main`, before anything opens a database: SQLite takes this only before it starts,
/// and refuses it (changing nothing) after.
fn sqlite_on_mimalloc() {
    use libmimalloc_sys as mi;
    use libsqlite3_sys as sqlite;
    use std::ffi::{c_int, c_void};
    // SAFETY (each function): SQLite passes sizes > 0 and only pointers these functions
    // returned, and mimalloc's functions take any such size or pointer.
    unsafe extern "C" fn malloc(size: c_int) -> *mut c_void {
        mi::mi_malloc(size.max(0) as usize)
    }
    unsafe extern "C" fn free(block: *mut c_void) {
        mi::mi_free(block)
    }
    unsafe extern "C" fn realloc(block: *mut c_void, size: c_int) -> *mut c_void {
        mi::mi_realloc(block, size.max(0) as usize)
    }
    unsafe extern "C" fn size(block: *mut c_void) -> c_int {
        c_int::try_from(mi::mi_usable_size(block)).unwrap_or(c_int::MAX)
    }
    extern "C" fn roundup(size: c_int) -> c_int {
        size.saturating_add(7) & !7
    }
    extern "C" fn init(_: *mut c_void) -> c_int {
        sqlite::SQLITE_OK
    }
    extern "C" fn shutdown(_: *mut c_void) {}
    let methods = sqlite::sqlite3_mem_methods {
        xMalloc: Some(malloc),
        xFree: Some(free),
        xRealloc: Some(realloc),
        xSize: Some(size),
        xRoundup: Some(roundup),
        xInit: Some(init),
        xShutdown: Some(shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: SQLITE_CONFIG_MALLOC reads one pointer to the methods, which SQLite copies;
    // no other thread exists yet to use SQLite meanwhile.
    let status = unsafe { sqlite::sqlite3_config(sqlite::SQLITE_CONFIG_MALLOC, &methods) };
    if status != sqlite::SQLITE_OK {
        eprintln!("warning: SQLite keeps its own allocator (sqlite3_config said {status})");
    }
}

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
    #[command(flatten)]
    Hub(HubCommand),
    #[command(flatten)]
    Operator(cli::Operator),
    /// Ask a person to approve a risky step of the task an `--exec` script runs, and wait:
    /// exit 0 when allowed, 1 when denied or timed out, 2 when the hub cannot be asked.
    Approve(ApproveArgs),
}

/// What `m3shd approve` asks for; where and as whom come from the worker's environment.
#[derive(clap::Args)]
struct ApproveArgs {
    /// The tool about to run.
    #[arg(long)]
    tool: String,
    /// What it would run with.
    #[arg(long)]
    input: Option<String>,
    /// Why it is needed.
    #[arg(long)]
    reason: Option<String>,
    /// Seconds to wait for a decision (at most the hub's approval_timeout_seconds).
    #[arg(long)]
    timeout: Option<u64>,
    /// The hub (set by the worker for its scripts).
    #[arg(long, env = "M3SHD_HUB")]
    hub: String,
    /// The worker's token (set by the worker).
    #[arg(long, env = "M3SHD_TOKEN", hide_env_values = true)]
    token: String,
    /// The task (set by the worker).
    #[arg(long, env = "M3SHD_TASK_ID")]
    task_id: i64,
}

/// Runs `m3shd approve` and turns the verdict into its exit code.
fn approve(args: ApproveArgs) -> ExitCode {
    let ask = m3shd::worker::approve::Ask {
        hub: args.hub,
        token: args.token,
        task_id: args.task_id,
        tool: args.tool,
        input: args.input,
        reason: args.reason,
        timeout_seconds: args.timeout,
    };
    let verdict = actix_web::rt::System::new().block_on(m3shd::worker::approve::ask(ask));
    match verdict {
        Ok(m3shd::worker::approve::Verdict::Allowed) => {
            println!("allowed");
            ExitCode::SUCCESS
        }
        Ok(m3shd::worker::approve::Verdict::Denied(note)) => {
            eprintln!("m3shd: denied ({note})");
            ExitCode::from(1)
        }
        Err(why) => {
            eprintln!("m3shd: {why}");
            ExitCode::from(2)
        }
    }
}

/// The commands that read the hub's settings.
#[derive(Subcommand)]
enum HubCommand {
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
        /// search on generated data), `dispatch` (the choice among many agents) or `agents`
        /// (seed 004's reads on a generated database, served by a hub in this process).
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
        /// Agents to generate (default: 1,000 for memory, 10,000 for dispatch), or agents
        /// long-polling at once (suite inbox, default 1,000).
        #[arg(long)]
        agents: Option<usize>,
        /// Timed searches or decisions (suites memory, dispatch), or timed requests of each
        /// kind (suite agents, default 2,000).
        #[arg(long)]
        samples: Option<usize>,
        /// Tasks to generate (suites agents and backlog).
        #[arg(long, default_value_t = 1_000_000)]
        tasks: usize,
        /// Of those, tasks one agent holds, assigned (suite agents).
        #[arg(long, default_value_t = 10_000)]
        held: usize,
        /// Event streams open at once, one run per count (suite sse).
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        subscribers: Vec<usize>,
    },
    /// Run tasks for a hub: Claude (`--agent-mode` for tools) or any command (`--exec`).
    Worker(WorkerArgs),
    /// Apply pending database migrations and exit.
    Migrate {
        #[arg(long, env = "M3SHDUP_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Print the effective configuration as TOML; secrets are shown only as set or unset.
    Config,
}

fn main() -> ExitCode {
    sqlite_on_mimalloc();
    let outcome = match Cli::parse().command {
        Command::Operator(command) => {
            m3shd::telemetry::init("warn");
            cli::run(command).map_err(anyhow::Error::from)
        }
        Command::Hub(command) => run(command),
        Command::Approve(args) => return approve(args),
    };
    // The message and its causes on one line: a person reads it, and a bad setting or a
    // refused call is no place for a backtrace (which `anyhow` prints under RUST_BACKTRACE).
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("m3shd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: HubCommand) -> anyhow::Result<()> {
    let mut settings = Settings::from_env(&command_line_variables())?;
    m3shd::telemetry::init(&settings.log_filter);
    match command {
        HubCommand::Serve { bind, database_url } => {
            settings.bind = bind.unwrap_or(settings.bind);
            settings.database_url = database_url.unwrap_or(settings.database_url);
            settings.validate()?;
            let master = master_token(&settings.master_token_dir())?;
            serve(settings, Secrets::from_env(master))
        }
        HubCommand::Bench {
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
            tasks,
            held,
            subscribers,
        } => {
            // The load the hub suite makes; suites that start their own hub fill in its
            // address and token.
            let load = |hub: String, token: String| m3shd::bench::hub::BenchPlan {
                hub,
                token,
                connections,
                seconds,
                claims,
                chains,
            };
            match suite {
                Suite::Hub | Suite::Exchange => {
                    let token = token.context(
                        "--token (or M3SHDUP_TOKEN) is required for the hub and exchange suites",
                    )?;
                    let plan = load(hub.trim_end_matches('/').to_string(), token);
                    let system = actix_web::rt::System::new();
                    match suite {
                        Suite::Exchange => system.block_on(m3shd::bench::exchange::run(plan)),
                        _ => system.block_on(m3shd::bench::hub::run(plan)),
                    }
                }
                Suite::Memory => in_temp_dir(|dir| {
                    let samples = samples.unwrap_or(10_000);
                    m3shd::bench::memory::run(dir, entries, agents.unwrap_or(1000), samples)
                }),
                Suite::Dispatch => {
                    m3shd::bench::dispatch::run(agents.unwrap_or(10_000), samples.unwrap_or(10_000))
                }
                Suite::Agents => in_temp_dir(|dir| {
                    let plan = m3shd::bench::agents::AgentsPlan {
                        agents: agents.unwrap_or(1000),
                        tasks,
                        held,
                        samples: samples.unwrap_or(2000),
                    };
                    m3shd::bench::agents::run(dir, plan)
                }),
                Suite::Inbox => in_temp_dir(|dir| {
                    let plan = m3shd::bench::inbox::InboxPlan {
                        samples: samples.unwrap_or(1000),
                        pollers: agents.unwrap_or(1000),
                    };
                    m3shd::bench::inbox::run(dir, plan)
                }),
                Suite::Backlog => in_temp_dir(|dir| {
                    let plan = load(String::new(), String::new());
                    m3shd::bench::backlog::run(dir, tasks, plan)
                }),
                Suite::Scale => in_temp_dir(|dir| {
                    let plan = m3shd::bench::scale::ScalePlan {
                        tasks,
                        agents: agents.unwrap_or(10_000),
                        samples: samples.unwrap_or(500),
                        hub: load(String::new(), String::new()),
                    };
                    m3shd::bench::scale::run(dir, plan)
                }),
                Suite::Sse => in_temp_dir(|dir| {
                    let plan = m3shd::bench::sse::SsePlan {
                        subscribers,
                        events: samples.unwrap_or(200),
                    };
                    m3shd::bench::sse::run(dir, plan)
                }),
            }
        }
        HubCommand::Worker(args) => {
            let config = args.into_config(&settings)?;
            actix_web::rt::System::new().block_on(m3shd::worker::run(config))
        }
        HubCommand::Migrate { database_url } => {
            settings.database_url = database_url.unwrap_or(settings.database_url);
            settings.validate()?;
            let mut conn = m3shd::db::open(&settings)?;
            let applied = m3shd::db::run_migrations(&mut conn)?;
            println!(
                "database {} is up to date ({} migrations applied now)",
                m3shd::db::redacted(&settings.database_url),
                applied.len()
            );
            Ok(())
        }
        HubCommand::Config => {
            let is_set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
            print!("{}", settings.to_toml(is_set)?);
            Ok(())
        }
    }
}

/// Turns transparent huge pages off for the hub process. mimalloc asks the kernel for them
/// on its arenas, and then an idle event stream's few small blocks keep whole huge pages
/// resident: 22.5 KiB of RSS per open stream with them, 15.0 KiB without, and fan-out no
/// slower (BENCHMARKS.md, issue 15). Best effort: a kernel without the flag changes nothing.
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and sets one flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Every variable the command line reads (`M3SHDUP_HUB`, the worker's …): not settings,
/// but not typos either.
fn command_line_variables() -> Vec<String> {
    fn collect(command: &clap::Command, into: &mut Vec<String>) {
        let names = command.get_arguments().filter_map(|a| a.get_env());
        into.extend(names.map(|n| n.to_string_lossy().into_owned()));
        for sub in command.get_subcommands() {
            collect(sub, into);
        }
    }
    let mut names = Vec::new();
    collect(&Cli::command(), &mut names);
    names
}

#[actix_web::main]
async fn serve(settings: Settings, secrets: Secrets) -> anyhow::Result<()> {
    without_transparent_huge_pages();
    let host = bound_host(&settings.bind);
    m3shd::startup::raise_open_file_limit();
    let app = m3shd::startup::Application::build(settings, secrets).await?;
    // Boot read the live tasks a page at a time: give the freed pages back to the system
    // now rather than at mimalloc's next purge (it held a million queued tasks' boot at
    // ~410 MB of RSS until then). A plain FFI call without arguments to uphold.
    unsafe { libmimalloc_sys::mi_collect(true) };
    // Before the hub says it listens: a SIGTERM sent on seeing that line is a graceful stop.
    let stop = m3shd::startup::stop_signal().context("cannot handle SIGTERM and SIGINT")?;
    // One machine-readable line on standard output, after the port is bound: with
    // `--bind 127.0.0.1:0` it is how a caller learns which port the hub got.
    println!("m3shd listening on http://{host}:{}", app.port());
    // An unspecified address is no place a browser can open: offer this machine's name.
    let open_at = match host.as_str() {
        "0.0.0.0" | "[::]" => "localhost",
        other => other,
    };
    println!(
        "the dashboard: http://{open_at}:{}/  (sign in with a user account or an API token)",
        app.port()
    );
    app.run_until(stop).await.context("the HTTP server failed")
}

/// The host part of a bind address (`127.0.0.1:0` → `127.0.0.1`, `[::1]:0` → `[::1]`).
fn bound_host(bind: &str) -> String {
    match bind.parse::<std::net::SocketAddr>() {
        Ok(std::net::SocketAddr::V6(addr)) => format!("[{}]", addr.ip()),
        Ok(addr) => addr.ip().to_string(),
        Err(_) => bind
            .rsplit_once(':')
            .map_or(bind, |(host, _)| host)
            .to_string(),
    }
}

/// `M3SHDUP_TOKEN`, else the token this data directory generated on its first start.
/// A fresh machine gets a new token, printed once, kept (mode 0600) beside the database.
fn master_token(dir: &Path) -> anyhow::Result<Secret> {
    if let Some(token) = std::env::var("M3SHDUP_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        return Ok(Secret::new(token));
    }
    let file: PathBuf = dir.join("master.token");
    if let Ok(saved) = std::fs::read_to_string(&file) {
        files::tighten(&file)?;
        tracing::info!(path = %file.display(), "using the master token generated on first start (set M3SHDUP_TOKEN to choose your own)");
        return Ok(Secret::new(saved.trim()));
    }
    files::create_private_dir(dir)?;
    let token = random_hex(24);
    files::write_private(&file, &token)?;
    println!(
        "No M3SHDUP_TOKEN set: generated a master token (shown once, kept in {}):",
        file.display()
    );
    println!();
    println!("    export M3SHDUP_TOKEN={token}");
    println!();
    Ok(Secret::new(token))
}

/// The flags and environment variables of seed 000's mesh-worker, plus `--exec`.
#[derive(clap::Args)]
struct WorkerArgs {
    /// Hub base URL; several, separated by commas, for hub processes sharing one
    /// PostgreSQL database (the next is tried when one cannot be reached).
    #[arg(long, env = "M3SHDUP_HUB", default_value = "http://localhost:8333")]
    hub: String,
    /// Agent token (M3SHDUP_AGENT_TOKEN, else M3SHDUP_TOKEN).
    #[arg(long, env = "M3SHDUP_AGENT_TOKEN")]
    token: Option<String>,
    /// Agent name, used as its agent_id.
    #[arg(long, env = "M3SHDUP_AGENT_NAME", default_value = "worker")]
    name: String,
    /// Machine label (default: the host name).
    #[arg(long, env = "M3SHDUP_MACHINE")]
    machine: Option<String>,
    /// Tasks run at once.
    #[arg(long, env = "M3SHDUP_MAX_CONCURRENT", default_value_t = 1)]
    max_concurrent: usize,
    /// Capabilities, space- or comma-separated.
    #[arg(long, env = "M3SHDUP_CAPABILITIES", num_args = 1.., default_value = "research")]
    capabilities: Vec<String>,
    /// Capabilities this worker refuses.
    #[arg(long, env = "M3SHDUP_EXCLUDED", num_args = 1..)]
    excluded: Vec<String>,
    /// Seconds per task for every capability (default: the per-capability table).
    #[arg(long, env = "M3SHDUP_CLAUDE_TIMEOUT")]
    claude_timeout: Option<u64>,
    /// Run `claude -p <prompt> --dangerously-skip-permissions` (tool access).
    #[arg(long, env = "M3SHDUP_AGENT_MODE", num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    agent_mode: bool,
    /// Run this shell command instead of Claude: the prompt on standard input, and
    /// M3SHD_TASK_ID, M3SHD_TASK_TITLE, M3SHD_CAPABILITY in the environment.
    #[arg(long, env = "M3SHDUP_EXEC")]
    exec: Option<String>,
    /// Seconds between heartbeats.
    #[arg(long, env = "M3SHDUP_HEARTBEAT_INTERVAL", default_value_t = 30)]
    heartbeat_interval: u64,
    /// Seconds between polls for assigned work (a fallback for a dropped event stream).
    #[arg(long, env = "M3SHDUP_POLL_INTERVAL", default_value_t = 10)]
    poll_interval: u64,
    /// Seconds running tasks may take to finish after SIGTERM before they are handed back.
    #[arg(long, env = "M3SHDUP_GRACE", default_value_t = 30)]
    grace: u64,
    /// Milliseconds before the first retry of a failed run (doubling after).
    #[arg(long, env = "M3SHDUP_RETRY_BACKOFF_MS", default_value_t = 2000)]
    retry_backoff_ms: u64,
    /// Learn of work by pulling the agent's durable inbox (seed 002's long-poll, under a
    /// consumer lease that fences this process's writes) instead of the event stream.
    #[arg(long, env = "M3SHDUP_INBOX", num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    inbox: bool,
}

impl WorkerArgs {
    fn into_config(self, settings: &Settings) -> anyhow::Result<m3shd::worker::WorkerConfig> {
        use std::time::Duration;
        let token = self
            .token
            .or_else(|| std::env::var("M3SHDUP_TOKEN").ok())
            .unwrap_or_default();
        let executor = match self.exec {
            Some(line) => m3shd::worker::Executor::Shell(line),
            None => m3shd::worker::Executor::Claude {
                agent_mode: self.agent_mode,
            },
        };
        let config = m3shd::worker::WorkerConfig {
            hub: self.hub,
            token,
            name: self.name,
            machine: self.machine.unwrap_or_else(host_name),
            max_concurrent: self.max_concurrent,
            capabilities: self
                .capabilities
                .iter()
                .flat_map(|c| m3shd::worker::split_list(c))
                .collect(),
            excluded: self
                .excluded
                .iter()
                .flat_map(|c| m3shd::worker::split_list(c))
                .collect(),
            timeout: self.claude_timeout.map(Duration::from_secs),
            capability_timeouts: settings.capability_timeouts.clone(),
            default_timeout: Duration::from_secs(settings.default_task_timeout),
            executor,
            heartbeat_interval: Duration::from_secs(self.heartbeat_interval.max(1)),
            poll_interval: Duration::from_secs(self.poll_interval.max(1)),
            grace: Duration::from_secs(self.grace),
            retry_backoff: Duration::from_millis(self.retry_backoff_ms),
            tries: 3,
            inbox: self.inbox,
        };
        m3shd::worker::check(&config)?;
        Ok(config)
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Suite {
    Hub,
    Memory,
    Dispatch,
    /// Seed 004's agent list and pending-work poll on 1,000 agents and 1,000,000 tasks.
    Agents,
    /// Seed 002's inbox: delivery to a waiting long-poll, and the hub memory of 1,000
    /// agents long-polling at once (a hub started as a child process).
    Inbox,
    /// Seed 003's exchange on a running hub: request create → visible to a polling
    /// executor, and claims per second with `--connections` executors racing.
    Exchange,
    /// The event stream with `--subscribers` connections at once: publish → last
    /// subscriber, events lost, and hub memory per subscriber (a hub child process).
    Sse,
    /// A fresh hub, then one restarted on `--tasks` queued tasks pinned to one agent:
    /// restart time, memory, that agent's heartbeats and the hub suite, side by side.
    Backlog,
    /// A fresh hub, then one restarted on `--tasks` tasks (nine in ten finished) and
    /// `--agents` agents: restart, reads, analytics, the hub suite, memory, bytes per task.
    Scale,
}

/// Runs `bench` with a fresh directory for its databases under the system's temporary
/// directory, removed afterwards.
fn in_temp_dir(bench: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("m3shd-bench-{}", random_hex(4)));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let outcome = bench(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}
