//! The ready queue and the agents' slots: pure bookkeeping for the Dispatcher.
//! Tasks wait per capability (or per pinned agent) in [`QueueKey`] order, so finding
//! the best task for a freed agent looks only at the heads of its queues.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::domain::agent::Profile;
use crate::domain::task::QueueKey;

/// A task waiting for an agent.
#[derive(Debug, Clone)]
pub struct Ready {
    pub task_id: i32,
    pub capability: String,
    /// `assign_to`: only this agent may take it.
    pub pin: Option<String>,
    /// The agent that handed it back: offered to anyone else first (until that agent
    /// registers or comes online again).
    pub avoid: Option<String>,
    pub key: QueueKey,
}

#[derive(Debug, Default)]
pub struct ReadyQueue {
    by_capability: HashMap<String, BTreeSet<QueueKey>>,
    by_pin: HashMap<String, BTreeSet<QueueKey>>,
    entries: HashMap<i32, Ready>,
}

impl ReadyQueue {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn push(&mut self, ready: Ready) {
        self.lane(&ready).insert(ready.key.clone());
        self.entries.insert(ready.task_id, ready);
    }

    pub fn remove(&mut self, task_id: i32) -> Option<Ready> {
        let ready = self.entries.remove(&task_id)?;
        self.lane(&ready).remove(&ready.key);
        Some(ready)
    }

    fn lane(&mut self, ready: &Ready) -> &mut BTreeSet<QueueKey> {
        match &ready.pin {
            Some(agent) => self.by_pin.entry(agent.clone()).or_default(),
            None => self
                .by_capability
                .entry(ready.capability.clone())
                .or_default(),
        }
    }

    /// The first task in queue order that `agent_id` with `profile` may take.
    pub fn best_for(&self, agent_id: &str, profile: &Profile) -> Option<i32> {
        let first_for = |lane: &BTreeSet<QueueKey>| -> Option<QueueKey> {
            lane.iter()
                .find(|key| {
                    self.entries
                        .get(&key.task_id())
                        .is_none_or(|r| r.avoid.as_deref() != Some(agent_id))
                })
                .cloned()
        };
        let pinned = self.by_pin.get(agent_id).and_then(first_for);
        let offered = profile
            .capabilities
            .iter()
            .filter(|c| !profile.refuses(c))
            .filter_map(|c| self.by_capability.get(c).and_then(first_for));
        pinned
            .into_iter()
            .chain(offered)
            .min()
            .map(|key| key.task_id())
    }

    /// Tasks waiting per capability, pinned ones included; a capability whose tasks all
    /// left reads 0 (for the metrics, at scrape time: pinned lanes are walked, the rest
    /// are counted by lane).
    pub fn depths(&self) -> Vec<(String, usize)> {
        let mut depths: HashMap<&str, usize> = self
            .by_capability
            .iter()
            .map(|(capability, lane)| (capability.as_str(), lane.len()))
            .collect();
        for key in self.by_pin.values().flatten() {
            if let Some(ready) = self.entries.get(&key.task_id()) {
                *depths.entry(ready.capability.as_str()).or_default() += 1;
            }
        }
        depths
            .into_iter()
            .map(|(capability, depth)| (capability.to_string(), depth))
            .collect()
    }

    /// `agent_id` is back: tasks it handed back may go to it again.
    pub fn forgive(&mut self, agent_id: &str) {
        for ready in self
            .entries
            .values_mut()
            .filter(|r| r.avoid.as_deref() == Some(agent_id))
        {
            ready.avoid = None;
        }
    }
}

/// An agent as the Dispatcher sees it: what it serves and what it holds.
#[derive(Debug)]
pub struct Slot {
    pub profile: Profile,
    pub online: bool,
    pub holding: HashSet<i32>,
    /// Slots reserved for tasks being inserted (their ids are not known yet).
    pub pending: usize,
    /// Dispatch sequence number of the last assignment, for least-recently-used ties.
    pub last_assigned: u64,
    /// Over its daily token cap: no new tasks until the day ends.
    pub resting: bool,
    /// Put on hold by an operator (idle, error or offline): no new tasks until woken.
    pub held: bool,
}

impl Slot {
    pub fn new(profile: Profile, online: bool) -> Self {
        Self {
            profile,
            online,
            holding: HashSet::new(),
            pending: 0,
            last_assigned: 0,
            resting: false,
            held: false,
        }
    }

    pub fn load(&self) -> usize {
        self.holding.len() + self.pending
    }

    /// Online and neither resting nor on hold: it may take new work if it has a free slot.
    pub fn accepting(&self) -> bool {
        self.online && !self.resting && !self.held
    }

    pub fn has_room(&self) -> bool {
        self.accepting() && (self.load() as i64) < i64::from(self.profile.max_concurrent)
    }

    /// Fill ratio in thousandths, for preferring the least loaded agent.
    pub fn fill(&self) -> i64 {
        (self.load() as i64 * 1000) / i64::from(self.profile.max_concurrent.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::task::Urgency;

    fn ready(id: i32, cap: &str, pin: Option<&str>, priority: i32) -> Ready {
        Ready {
            task_id: id,
            capability: cap.into(),
            pin: pin.map(String::from),
            avoid: None,
            key: QueueKey::new(id, priority, Urgency::Normal, None),
        }
    }

    fn profile(caps: &[&str], excluded: &[&str]) -> Profile {
        Profile {
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            excluded: excluded.iter().map(|c| c.to_string()).collect(),
            max_concurrent: 2,
        }
    }

    #[test]
    fn the_best_task_respects_capabilities_exclusions_and_pins() {
        let mut q = ReadyQueue::default();
        q.push(ready(1, "git", None, 0));
        q.push(ready(2, "research", None, 0));
        q.push(ready(3, "deploy", None, 9));
        q.push(ready(4, "research", Some("ada"), 5));
        assert_eq!(
            q.best_for("rex", &profile(&["research", "deploy"], &["deploy"])),
            Some(2)
        );
        assert_eq!(q.best_for("ada", &profile(&["research"], &[])), Some(4));
        assert_eq!(q.best_for("rex", &profile(&["docker"], &[])), None);
        assert_eq!(q.remove(2).map(|r| r.task_id), Some(2));
        assert_eq!(
            q.best_for("rex", &profile(&["research", "git"], &[])),
            Some(1)
        );
        assert_eq!(q.len(), 3);
        let mut depths = q.depths();
        depths.sort();
        assert_eq!(
            depths,
            vec![
                ("deploy".to_string(), 1),
                ("git".to_string(), 1),
                ("research".to_string(), 1)
            ]
        );
        q.remove(3);
        assert!(q.depths().contains(&("deploy".to_string(), 0)));
    }

    #[test]
    fn a_handed_back_task_waits_for_another_agent_until_forgiven() {
        let mut q = ReadyQueue::default();
        q.push(Ready {
            avoid: Some("rex".into()),
            ..ready(1, "research", None, 0)
        });
        assert_eq!(q.best_for("rex", &profile(&["research"], &[])), None);
        assert_eq!(q.best_for("ada", &profile(&["research"], &[])), Some(1));
        q.forgive("rex");
        assert_eq!(q.best_for("rex", &profile(&["research"], &[])), Some(1));
    }

    #[test]
    fn slots_count_pending_reservations() {
        let mut slot = Slot::new(profile(&["x"], &[]), true);
        slot.pending = 1;
        slot.holding.insert(7);
        assert!(!slot.has_room());
        assert_eq!(slot.fill(), 1000);
    }
}
