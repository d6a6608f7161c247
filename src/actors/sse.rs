//! SseSubscriber: one per `GET /api/stream` connection. Holds the sending half of the
//! connection's bounded queue, filters events by what its principal may see, sends a
//! `keepalive` event the EventBus sends on a timer (and `: connected` / `: keepalive`
//! comments of its own), and stops as soon as the client goes
//! away, falls `sse_queue_capacity` events behind, or the hub shuts down. Events already
//! in the queue still reach the client before its stream ends.
//!
//! A `Last-Event-ID` replay ([`Replay`]) may be longer than the queue. It is fed into the
//! queue as the client drains it (backpressure), never dropped and never counted as
//! falling behind; live events that arrive meanwhile wait behind it, and the subscriber
//! is cut off only if `sse_queue_capacity` of those pile up.
//!
//! Handles: [`Deliver`], [`Replay`], [`Disconnect`].

use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;
use actix_web_lab::sse;
use bytestring::ByteString;
use tokio::sync::mpsc;

use super::events::Envelope;
use super::registry::{ChildStopped, Registry};
use crate::domain::access::Principal;
use crate::metrics::Metrics;

pub struct SseSubscriber {
    pub id: u64,
    principal: Principal,
    queue: mpsc::Sender<Frame>,
    capacity: usize,
    registry: Addr<Registry>,
    /// Events not yet in the queue, oldest first: the rest of a replay, then live events
    /// that arrived while it was being delivered.
    pending: VecDeque<Arc<Envelope>>,
    /// How many of `pending`, from the front, belong to the replay.
    replay_left: usize,
    /// Whether a wait for room in the queue is under way.
    waiting: bool,
    metrics: Metrics,
    /// How often a `: keepalive` comment goes out (proxies close silent connections).
    comment_every: std::time::Duration,
}

impl SseSubscriber {
    pub fn new(
        id: u64,
        principal: Principal,
        queue: mpsc::Sender<Frame>,
        capacity: usize,
        registry: Addr<Registry>,
        metrics: Metrics,
        comment_every: std::time::Duration,
    ) -> Self {
        Self {
            comment_every,
            id,
            principal,
            queue,
            capacity,
            registry,
            pending: VecDeque::new(),
            replay_left: 0,
            waiting: false,
            metrics,
        }
    }

    fn cut_off(&self, ctx: &mut Context<Self>) {
        // Counted once, though more events may arrive while it stops.
        if ctx.state() == ActorState::Running {
            self.metrics.sse_cut_off();
        }
        tracing::warn!(
            subscriber.id = self.id,
            "SSE subscriber fell behind; disconnecting it"
        );
        ctx.stop();
    }

    /// Queues one live event; a full or closed queue ends this subscriber. Behind a
    /// replay still being delivered, the event waits its turn, up to `capacity` of them.
    fn push(&mut self, envelope: Arc<Envelope>, ctx: &mut Context<Self>) {
        if !self.pending.is_empty() {
            if self.pending.len() - self.replay_left >= self.capacity {
                self.cut_off(ctx);
            } else {
                self.pending.push_back(envelope);
            }
            return;
        }
        match self.queue.try_send(Frame::Event(envelope)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.cut_off(ctx),
            Err(mpsc::error::TrySendError::Closed(_)) => ctx.stop(),
        }
    }

    fn took_front(&mut self) {
        self.replay_left = self.replay_left.saturating_sub(1);
    }

    /// Moves pending events into the queue while it has room, then waits for room for
    /// the next one: the client's reading paces the replay.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.waiting {
            return;
        }
        while let Some(front) = self.pending.front() {
            // Reserve first: an event is serialised only once there is room for it.
            match self.queue.try_reserve() {
                Ok(permit) => permit.send(Frame::Event(front.clone())),
                Err(mpsc::error::TrySendError::Full(())) => break,
                Err(mpsc::error::TrySendError::Closed(())) => {
                    ctx.stop();
                    return;
                }
            }
            self.pending.pop_front();
            self.took_front();
        }
        if self.pending.is_empty() {
            return;
        }
        self.waiting = true;
        let queue = self.queue.clone();
        ctx.spawn(
            async move { queue.reserve_owned().await.ok() }
                .into_actor(self)
                .map(|permit, this, ctx| {
                    this.waiting = false;
                    let Some(permit) = permit else {
                        ctx.stop();
                        return;
                    };
                    if let Some(envelope) = this.pending.pop_front() {
                        permit.send(Frame::Event(envelope));
                        this.took_front();
                    }
                    this.pump(ctx);
                }),
        );
    }
}

impl Actor for SseSubscriber {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.capacity);
        // Comments (seed 001): one when the stream opens, then one every `comment_every`.
        // A comment is never worth cutting a reader off: a full queue simply skips it.
        let _ = self.queue.try_send(Frame::Comment("connected"));
        ctx.run_interval(self.comment_every, |this, _| {
            let _ = this.queue.try_send(Frame::Comment("keepalive"));
        });
        // Stop the moment the HTTP response is dropped (client disconnected).
        let queue = self.queue.clone();
        ctx.spawn(
            async move { queue.closed().await }
                .into_actor(self)
                .map(|_, _, ctx| ctx.stop()),
        );
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.registry.do_send(ChildStopped::Subscriber(self.id));
        Running::Stop
    }
}

/// What a subscriber's queue holds: an event shared with every other subscriber, written
/// out only when the connection takes it, or a comment.
pub enum Frame {
    Event(Arc<Envelope>),
    Comment(&'static str),
}

impl Frame {
    pub fn into_sse(self) -> sse::Event {
        match self {
            Self::Event(envelope) => envelope.to_sse(),
            Self::Comment(text) => sse::Event::Comment(ByteString::from_static(text)),
        }
    }
}

/// The receiving end of a subscriber's queue as the stream of events the response sends.
pub struct Frames(pub mpsc::Receiver<Frame>);

impl futures_util::Stream for Frames {
    type Item = sse::Event;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<sse::Event>> {
        self.0.poll_recv(cx).map(|frame| frame.map(Frame::into_sse))
    }
}

/// Sent by the EventBus for every published event.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Arc<Envelope>);

impl Handler<Deliver> for SseSubscriber {
    type Result = ();

    fn handle(&mut self, Deliver(envelope): Deliver, ctx: &mut Context<Self>) {
        if !envelope.event.visible_to(&self.principal) {
            return;
        }
        self.push(envelope, ctx);
    }
}

/// Sent by the EventBus once, before any [`Deliver`], to a subscriber that resumed with
/// `Last-Event-ID`: the events it missed, oldest first, however many there are.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replay(pub Vec<Arc<Envelope>>);

impl Handler<Replay> for SseSubscriber {
    type Result = ();

    fn handle(&mut self, Replay(backlog): Replay, ctx: &mut Context<Self>) {
        let visible: Vec<_> = backlog
            .into_iter()
            .filter(|e| e.event.visible_to(&self.principal))
            .collect();
        // Ahead of anything already waiting (nothing should be: the replay comes first).
        self.replay_left += visible.len();
        for envelope in visible.into_iter().rev() {
            self.pending.push_front(envelope);
        }
        self.pump(ctx);
    }
}

/// Sent by the EventBus to a subscriber it has cut off, and to every one at shutdown.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect;

impl Handler<Disconnect> for SseSubscriber {
    type Result = ();

    fn handle(&mut self, _: Disconnect, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
