//! Several hub processes on one PostgreSQL database (ARCHITECTURE.md, "Scale-out"): which
//! one this is, where the leader answers, and how a follower relays the leader's events
//! and waits to take over.
//!
//! A process that finds the owner lock free leads at once. The others follow: they serve
//! event streams (the leader's events, relayed) and their own health, and forward every
//! other request to the leader (`api::forward`). Each waits on the lock; the one that gets
//! it when the leader dies relays the last of the old leader's events, then takes over as
//! a restart would ([`crate::startup`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actix::Addr;
use diesel::{Connection, PgConnection, RunQueryDsl};

use crate::actors::db_executor::{follows, Epoch, FOLLOWING};
use crate::actors::events::{Envelope, EventBus, Relay};
use crate::crypto::Vault;
use crate::db::leadership::{self, Owner, StoredEvent, EVENTS_CHANNEL};
use crate::db::{DbConnection, ReadPool};
use crate::domain::event::HubEvent;
use crate::error::HubError;
use crate::settings::Settings;

/// What this process is to the others on its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// It runs the Registry, the Dispatcher and the writer (always, on SQLite).
    Leader,
    /// It relays the leader's events and forwards the rest to it.
    Follower,
}

pub struct Cluster {
    /// Shared with the writer: [`FOLLOWING`] until this process leads; `None` on SQLite.
    epoch: Epoch,
    /// Set once this process has taken over everything and answers every request.
    leading: AtomicBool,
    /// Where the others reach this process, recorded when it leads.
    pub address: String,
    /// Where the leader answers, as last read from the database.
    leader: RwLock<Option<String>>,
    /// The connection holding the owner lock once this process leads: the lock lasts as
    /// long as it.
    owner: Mutex<Option<Owner>>,
}

impl Cluster {
    pub fn new(epoch: Epoch, address: String) -> Self {
        Self {
            epoch,
            leading: AtomicBool::new(false),
            address,
            leader: RwLock::new(None),
            owner: Mutex::new(None),
        }
    }

    /// Whether this process answers every request itself: it took over, and no other
    /// process has since (a deposed leader forwards like a follower).
    pub fn leads(&self) -> bool {
        self.leading.load(Ordering::Acquire) && !follows(&self.epoch)
    }

    pub fn role(&self) -> Role {
        if self.leads() {
            Role::Leader
        } else {
            Role::Follower
        }
    }

    /// The epoch this process leads under; `None` while it follows, and on SQLite.
    pub fn epoch(&self) -> Option<i64> {
        let epoch = self.epoch.as_ref()?.load(Ordering::Acquire);
        (epoch != FOLLOWING).then_some(epoch)
    }

    /// Lets the writer write under `epoch` (before the takeover's own writes).
    pub fn fence(&self, epoch: i64) {
        if let Some(shared) = &self.epoch {
            shared.store(epoch, Ordering::Release);
        }
    }

    /// This process answers everything from now on; `owner` holds its lock.
    pub fn took_over(&self, owner: Option<Owner>) {
        *self.owner.lock().unwrap_or_else(|e| e.into_inner()) = owner;
        self.leading.store(true, Ordering::Release);
    }

    /// Checks that the lock's connection is still there; when it dropped, takes the lock
    /// again if nobody else led meanwhile, else steps down (as a deposed leader's commit
    /// would, only sooner). False once there is nothing more to watch.
    pub fn keep_lock(&self, settings: &Settings) -> bool {
        let mut owner = self.owner.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(held), Some(epoch)) = (owner.as_mut(), self.epoch()) else {
            return false;
        };
        if held.alive() {
            return true;
        }
        match Owner::reclaim(settings, epoch) {
            Ok(Some(again)) => {
                tracing::warn!(
                    epoch,
                    "the connection holding the leadership dropped; took it again"
                );
                *owner = Some(again);
                true
            }
            Ok(None) => {
                tracing::error!(epoch, "the connection holding the leadership dropped and another process leads now; this one steps down");
                self.fence(FOLLOWING);
                owner.take();
                false
            }
            // The database is away: commits fail meanwhile, and the fence holds.
            Err(error) => {
                tracing::warn!(%error, "the connection holding the leadership dropped; reconnecting");
                true
            }
        }
    }

    /// Gives up the owner lock (at the very end of a stop).
    pub fn release(&self) {
        self.owner.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Where the leader answers: as last read, or read again when `fresh` (the last one
    /// did not answer). `None` while no other process leads.
    pub async fn leader(&self, reads: &ReadPool, fresh: bool) -> Option<String> {
        if !fresh {
            if let Some(known) = self
                .leader
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                return Some(known);
            }
        }
        let read = crate::db::read(reads, |conn| Ok(leadership::leader(conn)?)).await;
        let address = match read {
            Ok((_, address)) if !address.is_empty() && address != self.address => Some(address),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error, "cannot read where the leader answers");
                None
            }
        };
        address.clone_into(&mut self.leader.write().unwrap_or_else(|e| e.into_inner()));
        address
    }
}

/// Where the other processes reach this one: `advertise_url`, else `http://` and the
/// bound address (`127.0.0.1` for an unspecified host).
pub fn address(settings: &Settings, port: u16) -> String {
    if !settings.advertise_url.is_empty() {
        return settings.advertise_url.trim_end_matches('/').to_string();
    }
    let host = settings
        .bind
        .rsplit_once(':')
        .map_or("127.0.0.1", |(host, _)| host);
    let host = match host {
        "0.0.0.0" | "" => "127.0.0.1",
        "[::]" => "[::1]",
        other => other,
    };
    format!("http://{host}:{port}")
}

/// The leader's newest stored events, for a bus that starts ([`EventBus::following`]).
pub fn stored_events(
    conn: &mut DbConnection,
    vault: &Vault,
    count: usize,
) -> Result<Vec<(u64, HubEvent)>, HubError> {
    Ok(restored(leadership::latest(conn, count as i64 + 1)?, vault))
}

/// The events that can be read of those stored (see [`Envelope::restored`]).
fn restored(stored: Vec<StoredEvent>, vault: &Vault) -> Vec<(u64, HubEvent)> {
    stored
        .into_iter()
        .filter_map(|event| Envelope::restored(event, vault))
        .collect()
}

/// How often a follower looks for notifications of new events.
const LISTEN_EVERY: Duration = Duration::from_millis(10);
/// A follower reads the table this often even without a notification (one lost with a
/// dropped connection costs at most this).
const READ_ANYWAY: Duration = Duration::from_secs(1);
/// Events read per query.
const RELAY_BATCH: i64 = 1_000;

/// A follower's relay of the leader's events into its bus, on a thread of its own with a
/// connection that `LISTEN`s for them.
pub struct Relayer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Relayer {
    /// Relays the events stored after `after` from now on.
    pub fn start(
        url: String,
        reads: ReadPool,
        vault: Arc<Vault>,
        bus: Addr<EventBus>,
        after: u64,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let source = Source { reads, vault, bus };
        let thread = std::thread::Builder::new()
            .name("m3shd-relay".into())
            .spawn(move || relay(&url, &source, after as i64, &stopped))
            .expect("the OS refused to start the event relay thread");
        Self { stop, thread }
    }

    /// Relays what the old leader stored last, then stops. Called once the epoch has
    /// moved on, so that nothing it could still store is missed.
    pub async fn finish(self) {
        self.stop.store(true, Ordering::Release);
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}

/// Where a relay reads the leader's events, and where it sends them.
struct Source {
    reads: ReadPool,
    vault: Arc<Vault>,
    bus: Addr<EventBus>,
}

fn relay(url: &str, source: &Source, mut after: i64, stop: &AtomicBool) {
    let mut listening: Option<PgConnection> = None;
    let mut read_at = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let Some(conn) = listening.as_mut() else {
            match listen(url) {
                Ok(conn) => listening = Some(conn),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for the leader's events; trying again");
                    std::thread::sleep(READ_ANYWAY);
                    continue;
                }
            }
            // Whatever was stored while nobody listened.
            read_at = Instant::now() - READ_ANYWAY;
            continue;
        };
        // A broken connection answers every call with an error: stop at the first.
        let mut told = false;
        let mut broken = None;
        for notification in conn.notifications_iter() {
            match notification {
                Ok(_) => told = true,
                Err(error) => {
                    broken = Some(error);
                    break;
                }
            }
        }
        if let Some(error) = broken {
            tracing::warn!(%error, "the connection listening for events broke; reconnecting");
            listening = None;
            std::thread::sleep(LISTEN_EVERY);
            continue;
        }
        if told || read_at.elapsed() >= READ_ANYWAY {
            match catch_up(source, after) {
                Ok(last) => after = last,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the leader's events; reconnecting");
                    listening = None;
                    std::thread::sleep(LISTEN_EVERY);
                    continue;
                }
            }
            read_at = Instant::now();
        }
        std::thread::sleep(LISTEN_EVERY);
    }
    if let Err(error) = catch_up(source, after) {
        tracing::warn!(%error, "cannot read the old leader's last events");
    }
}

fn listen(url: &str) -> diesel::ConnectionResult<PgConnection> {
    let mut conn = PgConnection::establish(url)?;
    diesel::sql_query(format!("LISTEN {EVENTS_CHANNEL}"))
        .execute(&mut conn)
        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    Ok(conn)
}

/// Relays every event stored after `after`; the id of the last one.
fn catch_up(source: &Source, mut after: i64) -> Result<i64, HubError> {
    let mut conn = source.reads.get()?;
    loop {
        let stored = leadership::after(&mut conn, after, RELAY_BATCH)?;
        let Some(last) = stored.last().map(|e| e.id) else {
            return Ok(after);
        };
        let full = stored.len() as i64 == RELAY_BATCH;
        source.bus.do_send(Relay(restored(stored, &source.vault)));
        after = last;
        if !full {
            return Ok(after);
        }
    }
}
