//! The inbox bell: wakes an agent's long-polling inbox pulls when an item lands in its
//! inbox. The writer thread rings it after the commit that stored the item (see
//! `db::inbox::deliver`), so a woken pull always finds the item committed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Default)]
pub struct InboxBell {
    /// One `Notify` per agent with a pull waiting; removed with its last listener.
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
}

impl InboxBell {
    /// Starts listening for `agent_id`'s inbox until the returned guard is dropped.
    pub fn listen(self: &Arc<Self>, agent_id: &str) -> Listening {
        let notify = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(agent_id.to_string())
            .or_default()
            .clone();
        Listening {
            bell: self.clone(),
            agent_id: agent_id.to_string(),
            notify,
        }
    }

    /// Wakes every pull waiting on these agents' inboxes.
    pub fn ring(&self, agents: &[String]) {
        if agents.is_empty() {
            return;
        }
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        for agent_id in agents {
            if let Some(notify) = waiting.get(agent_id) {
                notify.notify_waiters();
            }
        }
    }

    /// Agents with a pull waiting (for the metrics and the benchmarks).
    pub fn listened(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A pull listening for its agent's inbox.
pub struct Listening {
    bell: Arc<InboxBell>,
    agent_id: String,
    notify: Arc<Notify>,
}

impl Listening {
    /// The wake-up to wait for: create it before reading the inbox, so an item committed
    /// between the read and the wait still wakes it.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let mut waiting = self.bell.waiting.lock().unwrap_or_else(|e| e.into_inner());
        // Two references are left when this is the last listener: the map's and ours.
        if Arc::strong_count(&self.notify) <= 2 {
            waiting.remove(&self.agent_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ring_wakes_a_listener_enabled_before_it() {
        let bell = Arc::new(InboxBell::default());
        let listening = bell.listen("a");
        {
            let notified = listening.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            bell.ring(&["b".to_string()]);
            bell.ring(&["a".to_string()]);
            tokio::time::timeout(std::time::Duration::from_secs(1), notified)
                .await
                .expect("woken");
        }
        assert_eq!(bell.listened(), 1);
        drop(listening);
        assert_eq!(bell.listened(), 0);
    }
}
