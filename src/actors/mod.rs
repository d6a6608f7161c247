//! The actor runtime (ARCHITECTURE.md): Registry supervises AgentActor, TaskActor and
//! SseSubscriber children; the Dispatcher matches ready tasks to agents; the DbExecutor
//! is the single writer; the EventBus numbers and fans out events after each commit.

pub mod agent;
pub mod bell;
pub mod db_executor;
pub mod dispatcher;
pub mod events;
pub mod pipeline;
pub mod registry;
pub mod retention;
pub mod scheduler;
pub mod sse;
pub mod task;

use std::sync::Arc;

use actix::Addr;

use crate::alerts::Alerts;
use crate::crypto::blind::BlindIndex;
use crate::crypto::provenance::Notary;
use crate::crypto::Vault;
use crate::domain::event::HubEvent;
use crate::metrics::Metrics;
use crate::settings::Settings;
use db_executor::DbExecutor;
use events::{EventBus, Publish};

/// What every actor needs: the writer, the event bus, the vault and the settings.
#[derive(Clone)]
pub struct Core {
    pub db: DbExecutor,
    pub events: Addr<EventBus>,
    pub vault: Arc<Vault>,
    pub notary: Arc<Notary>,
    pub blind: Arc<BlindIndex>,
    pub settings: Arc<Settings>,
    pub alerts: Alerts,
    /// This hub's metrics (empty when they are off): counters recorded at commit points.
    pub metrics: Metrics,
    /// Ids of finished tasks, sent after their commit, so that the federation module can
    /// report the results of tasks a peer relayed here (actors know nothing of peers).
    pub finished_tasks: FinishedTasks,
    /// Ids of approvals just decided, for readers long-polling `GET /api/approvals/{id}`.
    pub decisions: tokio::sync::broadcast::Sender<i32>,
    /// Wakes the inbox pulls of agents whose inbox a commit added to.
    pub bell: Arc<bell::InboxBell>,
}

/// The sending side of the finished-task ids (see `Core::finished_tasks`).
pub type FinishedTasks = tokio::sync::mpsc::UnboundedSender<i32>;

impl Core {
    /// Publishes an event. Call only after the commit it describes.
    pub fn publish(&self, event: HubEvent) {
        self.events.do_send(Publish(event));
    }
}
