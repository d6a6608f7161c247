//! EventBus: numbers every committed state change, keeps a ring of recent events for
//! `Last-Event-ID` resumption, and fans each event out to the live SSE subscribers.
//!
//! With several hub processes on PostgreSQL, the leader's bus also stores each event
//! (sealed) for the others, whose buses relay them under the leader's numbers instead of
//! numbering their own: a stream on any process sees the same events with the same ids,
//! and resumes on any other.
//!
//! Handles: [`Publish`], [`Relay`], [`Lead`], [`Attach`], [`Detach`], [`CloseStreams`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use actix_web_lab::sse;
use bytestring::ByteString;
use serde_json::json;

use super::db_executor::DbExecutor;
use super::sse::{Deliver, Disconnect, Replay, SseSubscriber};
use crate::crypto::Vault;
use crate::db::leadership::{self, StoredEvent};
use crate::domain::event::{Audience, HubEvent};
use crate::domain::now_iso;
use crate::metrics::Metrics;

/// An event with its id, shared by every subscriber that receives it.
#[derive(Debug)]
pub struct Envelope {
    pub id: u64,
    pub event: HubEvent,
    /// The data as written on the wire: serialised by the first subscriber that sends the
    /// event, then shared by the rest (10,000 dashboards, one serialisation).
    wire_data: OnceLock<ByteString>,
}

impl Envelope {
    pub fn new(id: u64, event: HubEvent) -> Self {
        Self {
            id,
            event,
            wire_data: OnceLock::new(),
        }
    }

    /// The event as the leader stores it for the other processes, its data sealed.
    fn stored(&self, vault: &Vault) -> StoredEvent {
        StoredEvent {
            id: self.id as i64,
            name: self.event.name.to_string(),
            audience: serde_json::to_string(&self.event.audience).unwrap_or_default(),
            data: vault.seal(&self.event.data.to_string()),
        }
    }

    /// The event another process stored; `None` if it cannot be read (logged).
    pub fn restored(stored: StoredEvent, vault: &Vault) -> Option<(u64, HubEvent)> {
        let data = vault.open(&stored.data).map(|opened| opened.plaintext);
        let data = data.and_then(|plain| serde_json::from_str(&plain).ok());
        let audience = serde_json::from_str(&stored.audience).ok();
        match (data, audience) {
            (Some(data), Some(audience)) => Some((
                stored.id as u64,
                HubEvent::restored(&stored.name, data, audience),
            )),
            _ => {
                tracing::warn!(id = stored.id, name = %stored.name, "a stored event cannot be read; skipped");
                None
            }
        }
    }

    /// The wire form of the event.
    pub fn to_sse(&self) -> sse::Event {
        let data = self
            .wire_data
            .get_or_init(|| self.event.data.to_string().into())
            .clone();
        sse::Data::new(data)
            .event(self.event.name)
            .id(self.id.to_string())
            .into()
    }
}

/// Where a bus's events come from.
enum Mode {
    /// The only process on its database: it numbers its events and keeps them in memory.
    Alone,
    /// A follower: its events are the leader's, numbered by it ([`Relay`]).
    Following,
    /// The leader of several processes: it numbers its events and stores them.
    Leading(Store),
}

/// The leader's events on their way into the database.
struct Store {
    db: DbExecutor,
    vault: Arc<Vault>,
    /// Numbered, not yet handed to the writer.
    unstored: Vec<Arc<Envelope>>,
    /// A batch is with the writer: the next waits for it, so events are stored in order.
    storing: bool,
    /// Events stored since the table was last trimmed to the ring's span.
    since_trim: usize,
}

pub struct EventBus {
    mode: Mode,
    next_id: u64,
    keepalive: Duration,
    ring: VecDeque<Arc<Envelope>>,
    ring_size: usize,
    /// A client that last saw an event older than this has missed events no longer in the
    /// ring: those evicted from it, or, from the start, everything before this hub began.
    lost_before: u64,
    subscribers: HashMap<u64, Addr<SseSubscriber>>,
    /// Set at shutdown: no stream stays open, not even one that attaches late.
    closing: bool,
    metrics: Metrics,
}

/// `lost_before` of a bus that has seen no event yet: a client resuming from any id has
/// lost what came before.
const NOTHING_KNOWN: u64 = u64::MAX;

/// Ids start from the boot time in microseconds so they keep increasing across restarts.
fn boot_id() -> u64 {
    chrono::Utc::now().timestamp_micros().max(1) as u64
}

impl EventBus {
    /// The bus of the only process on its database.
    pub fn new(ring_size: usize, keepalive: Duration, metrics: Metrics) -> Self {
        let start = boot_id();
        Self {
            mode: Mode::Alone,
            next_id: start,
            keepalive,
            ring: VecDeque::with_capacity(ring_size),
            ring_size: ring_size.max(1),
            lost_before: start,
            subscribers: HashMap::new(),
            closing: false,
            metrics,
        }
    }

    /// The bus of a process sharing its database, which follows until it is told to
    /// [`Lead`]. `stored` are the leader's newest stored events, oldest first: up to one
    /// more than the ring holds, so that the oldest, left out, marks what is lost.
    pub fn following(
        ring_size: usize,
        keepalive: Duration,
        metrics: Metrics,
        mut stored: Vec<(u64, HubEvent)>,
    ) -> Self {
        let mut bus = Self::new(ring_size, keepalive, metrics);
        bus.mode = Mode::Following;
        bus.next_id = stored.last().map_or(1, |(id, _)| id + 1);
        // With nothing stored, nothing is known yet: the first event sets it (`send`).
        bus.lost_before = stored.first().map_or(NOTHING_KNOWN, |(id, _)| *id);
        if stored.len() > bus.ring_size {
            stored.remove(0);
        }
        bus.ring = stored
            .into_iter()
            .map(|(id, event)| Arc::new(Envelope::new(id, event)))
            .collect();
        bus
    }

    /// The id of the newest event this bus holds (0 if none).
    pub fn last_id(&self) -> u64 {
        self.ring.back().map_or(0, |e| e.id)
    }

    /// The id for an event not kept for replay: a keepalive (`reused`) takes the last id
    /// again with several processes, so that a client whose last id is one resumes on any
    /// process without a resync; a resync, and anything alone, takes the next. A
    /// follower's ids are the leader's: it always reuses its last.
    fn unreplayable_id(&mut self, reused: bool) -> u64 {
        let reuse = match self.mode {
            Mode::Following => true,
            Mode::Leading(_) => reused,
            Mode::Alone => false,
        };
        if reuse {
            return self.next_id.saturating_sub(1);
        }
        self.next_id += 1;
        self.next_id - 1
    }

    /// Numbers `event` and sends it to every subscriber; `replayable` keeps it in the ring
    /// (and, on a leader, stores it).
    fn broadcast(&mut self, event: HubEvent, replayable: bool) {
        let id = if replayable {
            self.next_id += 1;
            self.next_id - 1
        } else {
            self.unreplayable_id(true)
        };
        self.send(Arc::new(Envelope::new(id, event)), replayable);
    }

    /// Sends `envelope` to every subscriber; `replayable` keeps it in the ring.
    fn send(&mut self, envelope: Arc<Envelope>, replayable: bool) {
        if replayable {
            if self.lost_before == NOTHING_KNOWN {
                self.lost_before = envelope.id;
            }
            if let Mode::Leading(store) = &mut self.mode {
                store.unstored.push(envelope.clone());
            }
            if self.ring.len() == self.ring_size {
                if let Some(evicted) = self.ring.pop_front() {
                    self.lost_before = evicted.id;
                }
            }
            self.ring.push_back(envelope.clone());
        }
        let metrics = &self.metrics;
        self.subscribers
            .retain(|_, addr| deliver(metrics, addr, envelope.clone()));
    }

    /// The numbered `resync` event for a client that last saw `after`; not kept for replay.
    fn resync(&mut self, after: u64) -> Arc<Envelope> {
        let id = self.unreplayable_id(false);
        Arc::new(Envelope::new(
            id,
            HubEvent::new(
                "resync",
                json!({ "last_event_id": after, "oldest_replayable": self.ring.front().map(|e| e.id) }),
                Audience::Everyone,
            ),
        ))
    }

    /// Hands the events numbered since the last call to the writer, one batch at a time,
    /// in order; the table keeps about what the ring does.
    fn store(&mut self, ctx: &mut Context<Self>) {
        let oldest_kept = self.ring.front().map(|e| e.id as i64);
        let ring_size = self.ring_size;
        let Mode::Leading(store) = &mut self.mode else {
            return;
        };
        if store.storing || store.unstored.is_empty() {
            return;
        }
        store.storing = true;
        let batch = std::mem::take(&mut store.unstored);
        store.since_trim += batch.len();
        let trim_before = (store.since_trim >= ring_size)
            .then_some(oldest_kept)
            .flatten();
        if trim_before.is_some() {
            store.since_trim = 0;
        }
        let (db, vault, kept) = (store.db.clone(), store.vault.clone(), batch.clone());
        let write = async move {
            db.write(move |conn| {
                let rows: Vec<StoredEvent> = kept.iter().map(|e| e.stored(&vault)).collect();
                leadership::append(conn, &rows)?;
                if let Some(before) = trim_before {
                    leadership::forget_before(conn, before)?;
                }
                Ok(())
            })
            .await
        };
        ctx.spawn(write.into_actor(self).map(move |stored, bus, ctx| {
            let Mode::Leading(store) = &mut bus.mode else {
                return;
            };
            store.storing = false;
            match stored {
                Ok(()) => bus.store(ctx),
                Err(error) if store.db.follows() => {
                    // Deposed: the new leader stores its own events from now on.
                    tracing::warn!(%error, events = batch.len(), "events not stored: this process no longer leads");
                    bus.mode = Mode::Following;
                }
                Err(error) => {
                    // Tried again, in order, a moment later: a follower meanwhile lags.
                    tracing::warn!(%error, events = batch.len(), "cannot store events for the other hub processes");
                    store.unstored.splice(0..0, batch);
                    ctx.run_later(Duration::from_millis(200), |bus, ctx| bus.store(ctx));
                }
            }
        }));
    }
}

/// Hands `envelope` to one subscriber; false when the subscriber is to be dropped.
/// try_send: a subscriber whose mailbox is full is too slow; it is cut off rather than
/// allowed to hold up everyone else.
fn deliver(metrics: &Metrics, addr: &Addr<SseSubscriber>, envelope: Arc<Envelope>) -> bool {
    let Err(refused) = addr.try_send(Deliver(envelope)) else {
        return true;
    };
    // A closed mailbox is a subscriber already gone, not one cut off.
    if matches!(refused, SendError::Full(_)) {
        metrics.sse_cut_off();
    }
    addr.do_send(Disconnect);
    false
}

impl Actor for EventBus {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // One numbered `keepalive` for every subscriber; it is not kept for replay.
        ctx.run_interval(self.keepalive, |bus, _| {
            let event = HubEvent::new(
                "keepalive",
                json!({ "time": now_iso() }),
                Audience::Everyone,
            );
            bus.broadcast(event, false);
        });
    }
}

/// Sent by anyone after a commit: number this event and send it to every subscriber.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub HubEvent);

impl Handler<Publish> for EventBus {
    type Result = ();

    fn handle(&mut self, Publish(event): Publish, ctx: &mut Context<Self>) {
        if matches!(self.mode, Mode::Following) {
            // A follower changes nothing, so it has nothing of its own to tell.
            tracing::warn!(event = event.name, "a follower dropped an event of its own");
            return;
        }
        self.broadcast(event, true);
        self.store(ctx);
    }
}

/// Sent on a follower: the leader's events, numbered and stored by it, oldest first. Those
/// already relayed are skipped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Relay(pub Vec<(u64, HubEvent)>);

impl Handler<Relay> for EventBus {
    type Result = ();

    fn handle(&mut self, Relay(events): Relay, _: &mut Context<Self>) {
        if !matches!(self.mode, Mode::Following) {
            return;
        }
        for (id, event) in events {
            if id >= self.next_id {
                self.next_id = id + 1;
                self.send(Arc::new(Envelope::new(id, event)), true);
            }
        }
    }
}

/// Sent when this process becomes the leader, after the last of the old leader's events
/// was relayed: number events from now on, and store them. (The `leader` event that tells
/// every stream follows once the process serves as the leader: see [`leader_event`].)
#[derive(Message)]
#[rtype(result = "()")]
pub struct Lead {
    pub db: DbExecutor,
    pub vault: Arc<Vault>,
}

/// The event that tells every stream a new leader serves (from `epoch` on): clients reload
/// what they show, since the old leader may have committed changes it never announced.
pub fn leader_event(epoch: i64) -> HubEvent {
    HubEvent::new(
        "leader",
        json!({ "epoch": epoch, "since": now_iso() }),
        Audience::Everyone,
    )
}

impl Handler<Lead> for EventBus {
    type Result = ();

    fn handle(&mut self, lead: Lead, _: &mut Context<Self>) {
        self.next_id = self.next_id.max(boot_id());
        self.mode = Mode::Leading(Store {
            db: lead.db,
            vault: lead.vault,
            unstored: Vec::new(),
            storing: false,
            since_trim: 0,
        });
    }
}

/// Sent by the Registry when a subscriber starts: replay the events after
/// `last_event_id` as one [`Replay`], then deliver everything new. When some of those
/// events are no longer in the ring (evicted, or sent before a restart), the replay opens
/// with a `resync` event: the client cannot catch up event by event and must reload the
/// state it shows (what the ring still holds follows, for clients that only need that).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub subscriber_id: u64,
    pub addr: Addr<SseSubscriber>,
    pub last_event_id: Option<u64>,
}

impl Handler<Attach> for EventBus {
    type Result = ();

    fn handle(&mut self, msg: Attach, _: &mut Context<Self>) {
        if self.closing {
            msg.addr.do_send(Disconnect);
            return;
        }
        if let Some(after) = msg.last_event_id {
            // The whole backlog in one message that does not count against the
            // subscriber's mailbox: it may be longer than the queue, and the subscriber
            // feeds it to the client at the client's pace. Sent before the subscriber is
            // listed, so it arrives ahead of every live event.
            // An id this hub never issued (a clock set back since) is as lost as an old one.
            let lost = after < self.lost_before || after >= self.next_id;
            let mut backlog: Vec<_> = lost.then(|| self.resync(after)).into_iter().collect();
            let start = self.ring.partition_point(|e| e.id <= after);
            backlog.extend(self.ring.range(start..).cloned());
            if !backlog.is_empty() {
                msg.addr.do_send(Replay(backlog));
            }
        }
        self.subscribers.insert(msg.subscriber_id, msg.addr);
    }
}

/// Sent by the Registry when a subscriber has stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach {
    pub subscriber_id: u64,
}

impl Handler<Detach> for EventBus {
    type Result = ();

    fn handle(&mut self, msg: Detach, _: &mut Context<Self>) {
        self.subscribers.remove(&msg.subscriber_id);
    }
}

/// Sent at shutdown: end every stream now, and any that attaches later, so that no
/// long-lived stream holds the server's graceful stop for its whole grace period.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseStreams;

impl Handler<CloseStreams> for EventBus {
    type Result = ();

    fn handle(&mut self, _: CloseStreams, _: &mut Context<Self>) {
        self.closing = true;
        for (_, addr) in self.subscribers.drain() {
            addr.do_send(Disconnect);
        }
    }
}
