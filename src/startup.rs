//! Builds the hub: opens the database (running migrations), starts the writer and every
//! long-lived actor, restores live state, then binds the HTTP server. Tests use the same
//! entry point on port 0. Also stops it gracefully ([`Application::run_until`]).

use std::collections::HashMap;
use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::dev::Server;
use actix_web::middleware::{from_fn, Condition};
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;

use crate::actors::bell::InboxBell;
use crate::actors::db_executor::DbExecutor;
use crate::actors::dispatcher::{
    Dispatcher, Forgiven, KillSwitch, BUDGET_RESET_KEY, KILL_SWITCH_KEY,
};
use crate::actors::events::EventBus;
use crate::actors::registry::{Boot, BootPipeline, BootTask, Directory, Registry};
use crate::actors::scheduler::Scheduler;
use crate::actors::task::LiveTask;
use crate::actors::Core;
use crate::alerts::Alerts;
use crate::crypto::blind::BlindIndex;
use crate::crypto::fallback::{KeyDerivation, KEY_DERIVATION};
use crate::crypto::provenance::Notary;
use crate::crypto::Vault;
use crate::db::models::TokenRow;
use crate::db::{self, queries, ReadPool};
use crate::domain::credentials::{Credentials, Session};
use crate::domain::onboarding::AgentState;
use crate::domain::task::TaskStatus;
use crate::error::HubError;
use crate::metrics::Metrics;
use crate::rate_limit::{LoginThrottle, RateLimiter};
use crate::settings::{Secrets, Settings};

mod stop;
pub use stop::stop_signal;

/// Everything a handler can reach, shared through `web::Data`.
pub struct Hub {
    pub core: Core,
    pub reads: ReadPool,
    pub credentials: Credentials,
    pub registry: Addr<Registry>,
    pub dispatcher: Addr<Dispatcher>,
    /// Dispatches templates on their schedules.
    pub scheduler: Addr<Scheduler>,
    pub directory: Directory,
    /// Inbound webhook calls per name.
    pub webhook_limiter: RateLimiter,
    /// Wakes the MESS event log's writer after a commit that recorded events.
    pub exchange_log: Arc<tokio::sync::Notify>,
    /// Tells MESS executors of requests.
    pub exchange_notifier: crate::exchange_notify::Notifier,
    /// When each MESS executor's `last_seen` was last written.
    pub exchange_seen: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Seed 004 agent changes per caller.
    pub agent_mutation_limiter: RateLimiter,
    /// Failed sign-ins per (user name, client address).
    pub login_throttle: LoginThrottle,
    /// Argon2 computations allowed at once.
    pub password_hashing: tokio::sync::Semaphore,
    /// When the hub started (uptime).
    pub started: std::time::Instant,
    /// The master token is the one the hub generated on its first start (`serve` writes it
    /// next to the database): setup is not finished.
    pub generated_master: bool,
}

/// A built hub, bound to its port, not yet serving.
pub struct Application {
    server: Server,
    port: u16,
    hub: web::Data<Hub>,
    drain: stop::Drain,
    /// On PostgreSQL, the connection holding the database's owner lock (see
    /// [`db::claim_database`]), kept until the hub has stopped.
    owner: Option<diesel::PgConnection>,
}

impl Application {
    /// Must run inside an actix system: the actors start on its arbiter.
    pub async fn build(settings: Settings, secrets: Secrets) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let mut owner = db::claim_database(&settings)?;
        let mut writer = db::open_writer(&settings)?;
        let epoch = owner.as_mut().map(db::lead).transpose()?;
        let reads = db::read_pool(&settings)?;
        warn_if_weak(&secrets);
        let secrets = with_fallback_key(&mut writer, secrets)?;
        let generated_master =
            std::fs::read_to_string(settings.master_token_dir().join("master.token"))
                .ok()
                .is_some_and(|saved| saved.trim() == secrets.master_token.expose());
        let vault = Vault::from_secrets(&secrets);
        // Audit rows written before the hash chain existed are chained now.
        let chained = db::audit::chain_unhashed(&mut writer)?;
        if chained > 0 {
            tracing::info!(
                rows = chained,
                "chained audit rows written before the hash chain"
            );
        }
        // Messages stored before they were sealed at rest are sealed now, before any read.
        let sealed = db::inbox::seal_plain_messages(&mut writer, &vault)?;
        if sealed > 0 {
            tracing::info!(messages = sealed, "sealed messages stored in plain text");
        }
        let metrics = Metrics::new(&settings);
        let reconnect_settings = settings.clone();
        let bell = Arc::new(InboxBell::default());
        let db = DbExecutor::start(
            writer,
            epoch,
            Box::new(move || db::open_writer(&reconnect_settings)),
            settings.write_queue_capacity,
            settings.write_batch_max,
            metrics.clone(),
            bell.clone(),
        );
        let keepalive = std::time::Duration::from_secs(settings.sse_keepalive_seconds.max(1));
        let events = EventBus::new(settings.event_ring_size, keepalive, metrics.clone()).start();
        let vault = Arc::new(vault);
        let outbox_writer = db.clone();
        let core = Core {
            db,
            events,
            decisions: tokio::sync::broadcast::channel(1024).0,
            bell,
            finished_tasks: crate::federation::report_results(
                outbox_writer,
                reads.clone(),
                vault.clone(),
                metrics.clone(),
                std::time::Duration::from_secs(settings.federation_retry_max_seconds),
            ),
            metrics,
            vault,
            notary: Arc::new(Notary::from_secrets(&secrets)),
            blind: Arc::new(BlindIndex::from_secrets(&secrets)),
            settings: settings.clone(),
            alerts: Alerts::start(&settings),
        };

        // The Registry and the Dispatcher address each other: create the Registry's
        // context first so the Dispatcher can be given its address.
        let directory = Directory::default();
        let registry_context = Context::<Registry>::new();
        let dispatcher =
            Dispatcher::new(core.clone(), registry_context.address(), directory.clone()).start();
        let open_files = open_file_limit();
        let max_subscribers = settings.sse_subscriber_limit(open_files);
        tracing::info!(
            open_files,
            max_subscribers,
            "event streams: the hub holds at most {max_subscribers} at once"
        );
        core.metrics.sse_subscriber_limit(max_subscribers);
        let registry = registry_context.run(Registry::new(
            core.clone(),
            dispatcher.clone(),
            directory.clone(),
            max_subscribers,
            reads.clone(),
        ));

        let LiveState {
            boot,
            tokens,
            sessions,
        } = db::read(&reads, {
            let settings = settings.clone();
            move |conn| load_live_state(conn, &settings)
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot read live state: {e}"))?;
        let states = boot
            .agents
            .iter()
            .filter_map(|row| Some((row.agent_id.clone(), AgentState::parse(&row.state)?)))
            .collect();
        registry
            .send(boot)
            .await?
            .map_err(|e| anyhow::anyhow!("cannot restore live state: {e}"))?;
        // After the live state: a missed occurrence it dispatches finds every actor ready.
        let scheduler = Scheduler::new(core.clone(), dispatcher.clone(), reads.clone()).start();

        // Active tokens only: a revoked one authenticates nothing.
        let grants = tokens
            .iter()
            .filter(|row| row.revoked_at.is_none())
            .map(|row| (row.hash.clone(), row.grant()))
            .collect();
        let credentials = Credentials::new(secrets.master_token.clone(), grants, sessions, states);
        let exchange_log = crate::exchange_log::start(
            core.db.clone(),
            reads.clone(),
            core.vault.clone(),
            settings.data_dir(),
        );
        let allowed = settings
            .exchange_notify_allow
            .iter()
            .filter_map(|a| a.parse().ok());
        let exchange_notifier = crate::exchange_notify::Notifier::start(
            reads.clone(),
            core.vault.clone(),
            allowed.collect(),
        );
        let hub = web::Data::new(Hub {
            core,
            reads,
            credentials,
            registry,
            dispatcher,
            scheduler,
            directory,
            webhook_limiter: RateLimiter::per_minute(settings.webhook_rate_per_minute),
            exchange_log,
            exchange_notifier,
            exchange_seen: Default::default(),
            agent_mutation_limiter: RateLimiter::per_minute(settings.agent_mutations_per_minute),
            login_throttle: LoginThrottle::new(
                settings.login_failures_allowed,
                std::time::Duration::from_secs(settings.login_slowdown_seconds),
                std::time::Duration::from_secs(settings.login_slowdown_max_seconds),
                settings.login_throttle_capacity,
            ),
            password_hashing: tokio::sync::Semaphore::new(
                settings.password_hash_concurrency.max(1),
            ),
            started: std::time::Instant::now(),
            generated_master,
        });
        let listener = TcpListener::bind(&settings.bind)
            .with_context(|| format!("cannot listen on {}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let drain = stop::Drain {
            listener: listener.try_clone()?,
            connections: Arc::default(),
            grace: std::time::Duration::from_secs(settings.shutdown_grace_seconds),
        };
        let app_hub = hub.clone();
        let app_connections = web::Data::from(drain.connections.clone());
        let record_requests = hub.core.metrics.enabled();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_hub.clone())
                .app_data(app_connections.clone())
                .configure(crate::api::routes)
                .wrap(Condition::new(
                    record_requests,
                    from_fn(crate::api::metrics::record_request),
                ))
                .wrap(from_fn(stop::close_when_stopping))
        })
        .on_connect({
            let connections = drain.connections.clone();
            move |_, extensions| connections.opened(extensions)
        })
        .listen(listener)?
        // `run_until` handles the signals and the stop (see `stop`).
        .disable_signals();
        if settings.http_workers > 0 {
            server = server.workers(settings.http_workers);
        }
        tracing::info!(bind = %settings.bind, port, database = %db::redacted(&settings.database_url), "m3shd is listening");
        Ok(Self {
            server: server.run(),
            port,
            hub,
            drain,
            owner,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn hub(&self) -> web::Data<Hub> {
        self.hub.clone()
    }

    /// Serves with no stop of its own: the in-process hubs of the tests, which end with
    /// their runtime.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(std::future::pending()).await
    }

    /// Serves until `stop` resolves (see [`stop_signal`]), then stops gracefully: the port
    /// closes, requests in flight get `shutdown_grace_seconds` to finish, event streams end
    /// with a `retry:` frame, and every write already queued is committed and answered
    /// before this returns.
    pub async fn run_until(self, stop: impl Future<Output = ()> + 'static) -> std::io::Result<()> {
        let Self {
            server,
            hub,
            drain,
            owner,
            ..
        } = self;
        let handle = server.handle();
        let events = hub.core.events.clone();
        actix_web::rt::spawn(async move {
            stop.await;
            drain.run(handle, events).await;
        });
        server.await?;
        hub.core.db.close().await.map_err(std::io::Error::other)?;
        drop(owner);
        tracing::info!("m3shd stopped; every queued write is committed");
        Ok(())
    }
}

/// Raises this process's soft limit on open files to its hard limit, where the system
/// allows it: each event stream and each connection holds a descriptor, and the usual
/// soft limit of 1,024 would cap a hub far below what it can serve.
pub fn raise_open_file_limit() {
    let Some(limit) = open_file_limits().filter(|l| l.rlim_cur < l.rlim_max) else {
        return;
    };
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct passed to it.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        tracing::warn!(
            soft = limit.rlim_cur,
            hard = limit.rlim_max,
            "cannot raise the open-file limit; event streams are capped by the soft limit"
        );
    }
}

/// This process's soft limit on open files (1,024, the usual one, if unknown).
fn open_file_limit() -> u64 {
    open_file_limits().map_or(1024, |l| l.rlim_cur)
}

fn open_file_limits() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed to it.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

/// Minimum master token length that resists guessing.
const STRONG_TOKEN_CHARS: usize = 32;

fn warn_if_weak(secrets: &Secrets) {
    let chars = secrets.master_token.expose().chars().count();
    if chars < STRONG_TOKEN_CHARS {
        tracing::warn!(
            "the master token is only {chars} characters long: anyone who guesses it owns the hub. \
             Use at least {STRONG_TOKEN_CHARS} random characters, e.g. M3SHDUP_TOKEN=$(openssl rand -hex 32)"
        );
    }
}

/// Without `M3SHDUP_ENCRYPT_KEY`, the at-rest key is derived from the master token by the
/// derivation stored in this database (a new one is made and stored on first use).
fn with_fallback_key(
    conn: &mut crate::db::DbConnection,
    mut secrets: Secrets,
) -> anyhow::Result<Secrets> {
    if secrets.encrypt_key.is_some() {
        return Ok(secrets);
    }
    let stored = queries::setting(conn, KEY_DERIVATION)?
        .map(|row| serde_json::from_str::<KeyDerivation>(&row.value))
        .transpose()
        .context("the stored key derivation is unreadable")?;
    let derivation = match stored {
        Some(derivation) => derivation,
        None => {
            let derivation = if queries::holds_sealed_data(conn)? {
                KeyDerivation::legacy()
            } else {
                KeyDerivation::generate()
            };
            queries::put_setting(conn, KEY_DERIVATION, &serde_json::json!(derivation), "hub")?;
            derivation
        }
    };
    if derivation.is_legacy() {
        tracing::warn!(
            "M3SHDUP_ENCRYPT_KEY is not set and this database predates salted key derivation: its data is encrypted \
             with a key anyone holding the database can test master-token guesses against quickly. Move to a dedicated key: \
             set M3SHDUP_ENCRYPT_KEY=$(openssl rand -hex 32) and M3SHDUP_LEGACY_ENCRYPT_KEY=<the master token>."
        );
    } else {
        tracing::warn!(
            "M3SHDUP_ENCRYPT_KEY is not set: data at rest is encrypted with a key derived from the master token \
             (Argon2id, salted). Set a dedicated M3SHDUP_ENCRYPT_KEY in production (rotate with M3SHDUP_LEGACY_ENCRYPT_KEY)."
        );
    }
    secrets.encrypt_key = Some(derivation.derive(&secrets.master_token)?);
    Ok(secrets)
}

/// Everything live, read once before the HTTP server starts.
struct LiveState {
    /// Agents, unfinished tasks (with their dependencies' statuses), running pipelines,
    /// reputation, today's usage and the kill switch, for the actors.
    boot: Boot,
    /// Active tokens and unexpired sessions, for the credential index.
    tokens: Vec<TokenRow>,
    sessions: Vec<(String, Session)>,
}

/// Live tasks are read this many at a time.
const BOOT_PAGE: i64 = 5_000;

/// A task that may sleep (queued, ready, nothing to watch: [`LiveTask::may_sleep`]) is
/// kept only as its queue entry and costs no further query; live rows are read a page at
/// a time, so a backlog of a million never sits in memory as rows.
fn load_live_state(
    conn: &mut crate::db::DbConnection,
    settings: &Settings,
) -> Result<LiveState, HubError> {
    let agents = queries::all_agents(conn)?;
    let mut dependencies: HashMap<i32, Vec<(i32, TaskStatus)>> = HashMap::new();
    for (task, dependency, status) in queries::live_dependency_statuses(conn)? {
        dependencies
            .entry(task)
            .or_default()
            .push((dependency, status.parse()?));
    }
    let (mut tasks, mut asleep) = (Vec::new(), Vec::new());
    let mut after = 0;
    loop {
        let page = queries::live_tasks_after(conn, after, BOOT_PAGE)?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.id;
        for row in page {
            let dependencies = dependencies.remove(&row.id).unwrap_or_default();
            if dependencies.is_empty() {
                let task = LiveTask::from_row(&row)?;
                if task.may_sleep(settings) {
                    asleep.push(task.ready());
                    continue;
                }
            }
            let next_chunk_seq = queries::next_chunk_seq(conn, row.id)?;
            let pending_approval =
                db::approvals::pending_of(conn, row.id)?.map(|a| (a.id, a.expires_at));
            tasks.push(BootTask {
                row,
                next_chunk_seq,
                pending_approval,
                dependencies,
            });
        }
    }
    let mut pipelines = Vec::new();
    for row in queries::running_pipelines(conn)? {
        let members = queries::pipeline_members(conn, row.id)?;
        let ids: Vec<i32> = members.iter().map(|m| m.id).collect();
        let edges = queries::edges(conn, &ids)?;
        let members = members
            .iter()
            .map(|m| Ok((m.id, m.status.parse()?)))
            .collect::<Result<_, HubError>>()?;
        pipelines.push(BootPipeline {
            row,
            members,
            edges,
        });
    }
    let kill_switch = queries::setting(conn, KILL_SWITCH_KEY)?
        .and_then(|row| serde_json::from_str::<KillSwitch>(&row.value).ok())
        .unwrap_or_default();
    let forgiven = queries::setting(conn, BUDGET_RESET_KEY)?
        .and_then(|row| serde_json::from_str::<Forgiven>(&row.value).ok())
        .unwrap_or_default();
    let tokens = queries::active_tokens(conn)?;
    let reputation = crate::db::reputation::all(conn)?;
    let usage = crate::db::usage::since(conn, &crate::db::usage::today())?
        .into_iter()
        .map(|u| {
            (
                u.agent_id,
                u.cost_usd,
                i64::from(u.tokens_in) + i64::from(u.tokens_out),
            )
        })
        .collect();
    Ok(LiveState {
        boot: Boot {
            agents,
            tasks,
            asleep,
            pipelines,
            reputation,
            usage,
            forgiven,
            kill_switch,
        },
        tokens,
        sessions: queries::live_sessions(conn)?,
    })
}
