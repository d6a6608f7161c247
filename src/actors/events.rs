//! EventBus: numbers every committed state change, keeps a ring of recent events for
//! `Last-Event-ID` resumption, and fans each event out to the live SSE subscribers.
//!
//! Handles: [`Publish`], [`Attach`], [`Detach`], [`CloseStreams`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use actix_web_lab::sse;
use bytestring::ByteString;
use serde_json::json;

use super::sse::{Deliver, Disconnect, Replay, SseSubscriber};
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

pub struct EventBus {
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

impl EventBus {
    /// Ids start from the boot time in microseconds so they keep increasing across restarts.
    pub fn new(ring_size: usize, keepalive: Duration, metrics: Metrics) -> Self {
        let start = chrono::Utc::now().timestamp_micros().max(1) as u64;
        Self {
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

    /// Numbers `event` and sends it to every subscriber; `replayable` keeps it in the ring.
    fn broadcast(&mut self, event: HubEvent, replayable: bool) {
        let envelope = Arc::new(Envelope::new(self.next_id, event));
        self.next_id += 1;
        if replayable {
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
        let envelope = Arc::new(Envelope::new(
            self.next_id,
            HubEvent::new(
                "resync",
                json!({ "last_event_id": after, "oldest_replayable": self.ring.front().map(|e| e.id) }),
                Audience::Everyone,
            ),
        ));
        self.next_id += 1;
        envelope
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

    fn handle(&mut self, Publish(event): Publish, _: &mut Context<Self>) {
        self.broadcast(event, true);
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
