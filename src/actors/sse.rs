//! SseSubscriber: one per `GET /api/stream` connection. Holds the sending half of the
//! connection's bounded queue, filters events by what its principal may see, sends a
//! `keepalive` event the EventBus sends on a timer, and stops as soon as the client goes away or falls
//! `sse_queue_capacity` events behind.
//!
//! Handles: [`Deliver`], [`Disconnect`].

use std::sync::Arc;

use actix::prelude::*;
use actix_web_lab::sse;
use tokio::sync::mpsc;

use super::events::Envelope;
use super::registry::{ChildStopped, Registry};
use crate::domain::access::Principal;

pub struct SseSubscriber {
    pub id: u64,
    principal: Principal,
    queue: mpsc::Sender<sse::Event>,
    capacity: usize,
    registry: Addr<Registry>,
}

impl SseSubscriber {
    pub fn new(
        id: u64,
        principal: Principal,
        queue: mpsc::Sender<sse::Event>,
        capacity: usize,
        registry: Addr<Registry>,
    ) -> Self {
        Self {
            id,
            principal,
            queue,
            capacity,
            registry,
        }
    }

    /// Queues one event; a full or closed queue ends this subscriber.
    fn push(&mut self, event: sse::Event, ctx: &mut Context<Self>) {
        if let Err(error) = self.queue.try_send(event) {
            if let mpsc::error::TrySendError::Full(_) = error {
                tracing::warn!(
                    subscriber.id = self.id,
                    "SSE subscriber fell behind; disconnecting it"
                );
            }
            ctx.stop();
        }
    }
}

impl Actor for SseSubscriber {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.capacity);
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
        let event = sse::Data::new(envelope.event.data.to_string())
            .event(envelope.event.name)
            .id(envelope.id.to_string());
        self.push(event.into(), ctx);
    }
}

/// Sent by the EventBus to a subscriber it has cut off.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect;

impl Handler<Disconnect> for SseSubscriber {
    type Result = ();

    fn handle(&mut self, _: Disconnect, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
