//! Builds the hub: opens the database (running migrations), starts the writer and every
//! long-lived actor, restores live state, then binds the HTTP server. Tests use the same
//! entry point on port 0. Also stops it gracefully ([`Application::run_until`]).

use std::collections::HashMap;
use std::future::Future;
use std::net::TcpListener;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::dev::Server;
use actix_web::middleware::{from_fn, Condition};
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;

use crate::actors::bell::InboxBell;
use crate::actors::db_executor::{DbExecutor, Epoch, FOLLOWING};
use crate::actors::dispatcher::{
    Dispatcher, Forgiven, KillSwitch, BUDGET_RESET_KEY, KILL_SWITCH_KEY,
};
use crate::actors::events::{leader_event, EventBus, Lead};
use crate::actors::registry::{Boot, BootPipeline, BootTask, Directory, Registry};
use crate::actors::scheduler::Scheduler;
use crate::actors::task::LiveTask;
use crate::actors::Core;
use crate::alerts::Alerts;
use crate::cluster::{Cluster, Relayer};
use crate::crypto::blind::BlindIndex;
use crate::crypto::fallback::{KeyDerivation, KEY_DERIVATION};
use crate::crypto::provenance::Notary;
use crate::crypto::Vault;
use crate::db::leadership::Owner;
use crate::db::models::{AgentRow, TokenRow};
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
    /// Whether this process leads the others on its database, and where the leader is.
    pub cluster: Cluster,
}

/// A built hub, bound to its port, not yet serving.
pub struct Application {
    server: Server,
    port: u16,
    hub: web::Data<Hub>,
    drain: stop::Drain,
}

impl Application {
    /// Must run inside an actix system: the actors start on its arbiter. A process that
    /// leads (always, on SQLite) has taken over everything when this returns; one that
    /// follows serves at once and takes over when the leader goes ([`crate::cluster`]).
    pub async fn build(settings: Settings, secrets: Secrets) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let owner = Owner::claim(&settings)?;
        let mut writer = db::open_writer(&settings)?;
        let reads = db::read_pool(&settings)?;
        warn_if_weak(&secrets);
        let shares_database = owner.is_some();
        let follows = owner.as_ref().is_some_and(|owner| !owner.holds);
        let secrets = with_fallback_key(&mut writer, secrets, follows)?;
        let generated_master =
            std::fs::read_to_string(settings.master_token_dir().join("master.token"))
                .ok()
                .is_some_and(|saved| saved.trim() == secrets.master_token.expose());
        let vault = Arc::new(Vault::from_secrets(&secrets));
        let metrics = Metrics::new(&settings);
        let reconnect_settings = settings.clone();
        let bell = Arc::new(InboxBell::default());
        let epoch: Epoch = owner.is_some().then(|| Arc::new(AtomicI64::new(FOLLOWING)));
        let db = DbExecutor::start(
            writer,
            epoch.clone(),
            Box::new(move || db::open_writer(&reconnect_settings)),
            settings.write_queue_capacity,
            settings.write_batch_max,
            metrics.clone(),
            bell.clone(),
        );
        let keepalive = std::time::Duration::from_secs(settings.sse_keepalive_seconds.max(1));
        let (ring_size, bus_metrics) = (settings.event_ring_size, metrics.clone());
        let events = match owner {
            None => EventBus::new(ring_size, keepalive, bus_metrics),
            Some(_) => {
                let vault = vault.clone();
                let stored = db::read(&reads, move |conn| {
                    crate::cluster::stored_events(conn, &vault, ring_size)
                })
                .await?;
                EventBus::following(ring_size, keepalive, bus_metrics, stored)
            }
        };
        let last_stored = events.last_id();
        let events = events.start();
        let finished_tasks = tokio::sync::mpsc::unbounded_channel();
        let core = Core {
            db,
            events,
            decisions: tokio::sync::broadcast::channel(1024).0,
            bell,
            finished_tasks: finished_tasks.0.clone(),
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
        // Runs once this process leads, after the live state: a missed occurrence it
        // dispatches finds every actor ready.
        let scheduler_context = Context::<Scheduler>::new();
        let scheduler = scheduler_context.address();
        let credentials = Credentials::new(secrets.master_token.clone(), vec![], vec![], vec![]);
        let allowed = settings
            .exchange_notify_allow
            .iter()
            .filter_map(|a| a.parse().ok());
        let exchange_notifier = crate::exchange_notify::Notifier::start(
            reads.clone(),
            core.vault.clone(),
            allowed.collect(),
        );
        let listener = TcpListener::bind(&settings.bind)
            .with_context(|| format!("cannot listen on {}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let hub = web::Data::new(Hub {
            core,
            reads,
            credentials,
            registry,
            dispatcher,
            scheduler,
            directory,
            cluster: Cluster::new(epoch, crate::cluster::address(&settings, port)),
            webhook_limiter: RateLimiter::per_minute(settings.webhook_rate_per_minute),
            exchange_log: Default::default(),
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
        let standby = Standby {
            scheduler: scheduler_context,
            finished_tasks,
        };
        match owner {
            Some(owner) if !owner.holds => {
                let relayer = Relayer::start(
                    settings.connection_url(),
                    hub.reads.clone(),
                    hub.core.vault.clone(),
                    hub.core.events.clone(),
                    last_stored,
                );
                keep_credentials_current(hub.clone());
                actix_web::rt::spawn(follow(hub.clone(), standby, owner, relayer));
                tracing::info!(leader = ?hub.cluster.leader(&hub.reads, true).await, "another process leads this database; this one follows");
            }
            owner => take_over(&hub, standby, owner.map(|owner| (owner, None))).await?,
        }
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
                    shares_database,
                    from_fn(crate::api::forward::forward_to_leader),
                ))
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
            server, hub, drain, ..
        } = self;
        let handle = server.handle();
        let events = hub.core.events.clone();
        actix_web::rt::spawn(async move {
            stop.await;
            drain.run(handle, events).await;
        });
        server.await?;
        hub.core.db.close().await.map_err(std::io::Error::other)?;
        hub.cluster.release();
        tracing::info!("m3shd stopped; every queued write is committed");
        Ok(())
    }
}

/// What a process starts only once it leads.
struct Standby {
    scheduler: Context<Scheduler>,
    /// Both ends of `Core::finished_tasks`, for the federation's reports.
    finished_tasks: (
        crate::actors::FinishedTasks,
        tokio::sync::mpsc::UnboundedReceiver<i32>,
    ),
}

/// Makes this process the one that runs everything, as a start on one process always
/// did: on PostgreSQL it moves the epoch on and numbers and stores events from now on;
/// then it finishes what earlier versions left undone, restores the live state into the
/// actors, and starts the schedules and the background writers.
/// `owner` on PostgreSQL, with the relay of a follower that takes over.
async fn take_over(
    hub: &web::Data<Hub>,
    standby: Standby,
    owner: Option<(Owner, Option<Relayer>)>,
) -> anyhow::Result<()> {
    let core = &hub.core;
    let owner = match owner {
        Some((mut owner, relayer)) => {
            let address = hub.cluster.address.clone();
            let (epoch, owner) = tokio::task::spawn_blocking(move || {
                owner.lead(&address).map(|epoch| (epoch, owner))
            })
            .await??;
            hub.cluster.fence(epoch);
            if let Some(relayer) = relayer {
                relayer.finish().await;
            }
            core.events
                .send(Lead {
                    db: core.db.clone(),
                    vault: core.vault.clone(),
                })
                .await?;
            Some((owner, epoch))
        }
        None => None,
    };
    let vault = core.vault.clone();
    let (chained, sealed) = core
        .db
        .write(move |conn| {
            // Audit rows written before the hash chain existed are chained, and messages
            // stored before they were sealed at rest are sealed, before any read.
            Ok((
                db::audit::chain_unhashed(conn)?,
                db::inbox::seal_plain_messages(conn, &vault)?,
            ))
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot prepare the database: {e}"))?;
    if chained > 0 {
        tracing::info!(
            rows = chained,
            "chained audit rows written before the hash chain"
        );
    }
    if sealed > 0 {
        tracing::info!(messages = sealed, "sealed messages stored in plain text");
    }
    let settings = core.settings.clone();
    let LiveState { boot, credentials } =
        db::read(&hub.reads, move |conn| load_live_state(conn, &settings))
            .await
            .map_err(|e| anyhow::anyhow!("cannot read live state: {e}"))?;
    credentials.install(&hub.credentials);
    hub.registry
        .send(boot)
        .await?
        .map_err(|e| anyhow::anyhow!("cannot restore live state: {e}"))?;
    standby.scheduler.run(Scheduler::new(
        core.clone(),
        hub.dispatcher.clone(),
        hub.reads.clone(),
    ));
    crate::exchange_log::start(
        hub.exchange_log.clone(),
        core.db.clone(),
        hub.reads.clone(),
        core.vault.clone(),
        core.settings.data_dir(),
    );
    crate::federation::report_results(
        standby.finished_tasks,
        core.db.clone(),
        hub.reads.clone(),
        core.vault.clone(),
        core.metrics.clone(),
        std::time::Duration::from_secs(core.settings.federation_retry_max_seconds),
    );
    let Some((owner, epoch)) = owner else {
        hub.cluster.took_over(None);
        return Ok(());
    };
    hub.cluster.took_over(Some(owner));
    keep_the_lock(hub.clone());
    // Only now, with the live state restored and the health saying so, are the streams
    // told: a dashboard reloads on this event and must find the new leader serving.
    core.publish(leader_event(epoch));
    tracing::info!(epoch, address = %hub.cluster.address, "this process leads the database");
    Ok(())
}

/// A follower's life: relays the leader's events until it gets the owner lock, then
/// relays the last of them and takes over. A follower that cannot take over ends the
/// process: it holds the lock, and no other could lead while it lived.
async fn follow(hub: web::Data<Hub>, standby: Standby, owner: Owner, relayer: Relayer) {
    let owner = wait_for_lock(&hub, owner).await;
    if let Err(error) = take_over(&hub, standby, Some((owner, Some(relayer)))).await {
        tracing::error!(%error, "this process got the leadership but cannot take over; it stops so another can");
        std::process::exit(1);
    }
}

/// How often the leader checks the connection that holds its lock.
const LOCK_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Watches the leader's lock connection on a thread of its own (see
/// [`Cluster::keep_lock`]) until the process stops or steps down.
fn keep_the_lock(hub: web::Data<Hub>) {
    // Weak: a hub that is gone (an in-process hub of the tests) is not kept alive by this.
    let hub = Arc::downgrade(&hub.into_inner());
    std::thread::Builder::new()
        .name("m3shd-lock".into())
        .spawn(move || {
            while let Some(hub) = hub.upgrade() {
                if !hub.cluster.keep_lock(&hub.core.settings) {
                    return;
                }
                drop(hub);
                std::thread::sleep(LOCK_CHECK);
            }
        })
        .expect("the OS refused to start the leadership watch");
}

/// How often a follower asks for the owner lock: at most this is added to a failover.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Waits until `owner` holds the owner lock, reconnecting when its connection drops.
async fn wait_for_lock(hub: &web::Data<Hub>, mut owner: Owner) -> Owner {
    loop {
        // On a thread of its own, not the blocking pool: a stopping process waits for
        // that pool, and this wait may never end.
        let (answer, waited) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("m3shd-lock".into())
            .spawn(move || {
                let _ = answer.send(owner.wait(LOCK_POLL).map(|()| owner));
            })
            .expect("the OS refused to start the leadership wait");
        match waited.await {
            Ok(Ok(owner)) => return owner,
            Ok(Err(error)) => {
                tracing::warn!(%error, "lost the connection waiting for the leadership")
            }
            Err(error) => tracing::warn!(%error, "the wait for the leadership failed"),
        }
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let settings = hub.core.settings.clone();
            let claimed = tokio::task::spawn_blocking(move || Owner::claim(&settings)).await;
            match claimed
                .map_err(anyhow::Error::from)
                .and_then(|claimed| claimed)
            {
                Ok(Some(claimed)) => {
                    owner = claimed;
                    break;
                }
                Ok(None) => tracing::error!("a follower's database is not PostgreSQL"),
                Err(error) => tracing::warn!(%error, "cannot reconnect to wait for the leadership"),
            }
        }
    }
}

/// How often a follower reads the credential index again (a token revoked on the leader
/// opens no new stream here after this).
const CREDENTIALS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps a follower's credential index as the database has it, until it leads.
fn keep_credentials_current(hub: web::Data<Hub>) {
    actix_web::rt::spawn(async move {
        while !hub.cluster.leads() {
            let rows = db::read(&hub.reads, |conn| {
                let agents = queries::all_agents(conn)?;
                CredentialRows::read(conn, &agents)
            })
            .await;
            if hub.cluster.leads() {
                return;
            }
            match rows {
                Ok(rows) => rows.install(&hub.credentials),
                Err(error) => tracing::warn!(%error, "cannot read the credentials"),
            }
            tokio::time::sleep(CREDENTIALS_EVERY).await;
        }
    });
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
/// A process that `follows` writes nothing: it waits for the leader to store the
/// derivation.
fn with_fallback_key(
    conn: &mut crate::db::DbConnection,
    mut secrets: Secrets,
    follows: bool,
) -> anyhow::Result<Secrets> {
    if secrets.encrypt_key.is_some() {
        return Ok(secrets);
    }
    let stored = loop {
        let stored = queries::setting(conn, KEY_DERIVATION)?
            .map(|row| serde_json::from_str::<KeyDerivation>(&row.value))
            .transpose()
            .context("the stored key derivation is unreadable")?;
        if stored.is_some() || !follows {
            break stored;
        }
        tracing::info!("waiting for the leading process to store the key derivation");
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
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

/// Everything live, read once when a process takes over.
struct LiveState {
    /// Agents, unfinished tasks (with their dependencies' statuses), running pipelines,
    /// reputation, today's usage and the kill switch, for the actors.
    boot: Boot,
    credentials: CredentialRows,
}

/// What the credential index holds: active tokens, unexpired sessions, agents' states.
struct CredentialRows {
    tokens: Vec<TokenRow>,
    sessions: Vec<(String, Session)>,
    states: Vec<(String, AgentState)>,
}

impl CredentialRows {
    fn read(conn: &mut crate::db::DbConnection, agents: &[AgentRow]) -> Result<Self, HubError> {
        let states = agents
            .iter()
            .filter_map(|row| Some((row.agent_id.clone(), AgentState::parse(&row.state)?)))
            .collect();
        Ok(Self {
            tokens: queries::active_tokens(conn)?,
            sessions: queries::live_sessions(conn)?,
            states,
        })
    }

    /// Puts these rows in `credentials`; active tokens only: a revoked one authenticates
    /// nothing.
    fn install(self, credentials: &Credentials) {
        let grants = self
            .tokens
            .iter()
            .filter(|row| row.revoked_at.is_none())
            .map(|row| (row.hash.clone(), row.grant()))
            .collect();
        credentials.replace(grants, self.sessions, self.states);
    }
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
    let credentials = CredentialRows::read(conn, &agents)?;
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
        credentials,
    })
}
