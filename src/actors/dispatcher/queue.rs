//! The ready queue and the agents' slots: pure bookkeeping for the Dispatcher.
//! Tasks wait per capability (or per pinned agent) in [`QueueKey`] order, so finding
//! the best task for a freed agent looks only at the heads of its queues.
//!
//! A waiting task costs a few dozen bytes: its key in its lane, and an entry naming its
//! capability and pin with the lane's own shared copy of the name (a million tasks for
//! one agent hold one copy of its name, not a million).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

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

/// What the queue keeps of a waiting task besides its key in its lane.
#[derive(Debug)]
struct Waiting {
    capability: Arc<str>,
    pin: Option<Arc<str>>,
    key: QueueKey,
}

type Lanes = HashMap<Arc<str>, BTreeSet<QueueKey>>;

#[derive(Debug, Default)]
pub struct ReadyQueue {
    by_capability: Lanes,
    by_pin: Lanes,
    entries: HashMap<i32, Waiting>,
    /// Handed-back tasks and the agent each avoids (few, so kept apart).
    avoid: HashMap<i32, String>,
}

impl ReadyQueue {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn push(&mut self, ready: Ready) {
        let capability = shared_name(&mut self.by_capability, &ready.capability);
        let pin = ready
            .pin
            .as_deref()
            .map(|agent| shared_name(&mut self.by_pin, agent));
        let lane = match &pin {
            Some(agent) => self.by_pin.get_mut(agent),
            None => self.by_capability.get_mut(&capability),
        };
        lane.expect("shared_name made the lane")
            .insert(ready.key.clone());
        if let Some(agent) = ready.avoid {
            self.avoid.insert(ready.task_id, agent);
        }
        self.entries.insert(
            ready.task_id,
            Waiting {
                capability,
                pin,
                key: ready.key,
            },
        );
    }

    /// Takes a task out of the queue; whether it was there.
    pub fn remove(&mut self, task_id: i32) -> bool {
        let Some(waiting) = self.entries.remove(&task_id) else {
            return false;
        };
        self.avoid.remove(&task_id);
        let lane = match &waiting.pin {
            Some(agent) => self.by_pin.get_mut(agent),
            None => self.by_capability.get_mut(&waiting.capability),
        };
        if let Some(lane) = lane {
            lane.remove(&waiting.key);
        }
        true
    }

    /// The first task in queue order that `agent_id` with `profile` may take.
    pub fn best_for(&self, agent_id: &str, profile: &Profile) -> Option<i32> {
        let first_for = |lane: &BTreeSet<QueueKey>| -> Option<QueueKey> {
            lane.iter()
                .find(|key| {
                    self.avoid
                        .get(&key.task_id())
                        .is_none_or(|avoid| avoid != agent_id)
                })
                .cloned()
        };
        let pinned = self.by_pin.get(agent_id).and_then(first_for);
        let offered = profile
            .capabilities
            .iter()
            .filter(|c| !profile.refuses(c))
            .filter_map(|c| self.by_capability.get(c.as_str()).and_then(first_for));
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
            .map(|(capability, lane)| (&**capability, lane.len()))
            .collect();
        for key in self.by_pin.values().flatten() {
            if let Some(waiting) = self.entries.get(&key.task_id()) {
                *depths.entry(&*waiting.capability).or_default() += 1;
            }
        }
        depths
            .into_iter()
            .map(|(capability, depth)| (capability.to_string(), depth))
            .collect()
    }

    /// `agent_id` is back: tasks it handed back may go to it again.
    pub fn forgive(&mut self, agent_id: &str) {
        self.avoid.retain(|_, avoid| avoid != agent_id);
    }
}

/// The name of the lane `name` in `lanes`, as the map holds it (created if missing), so
/// that every entry in the lane shares one copy of it.
fn shared_name(lanes: &mut Lanes, name: &str) -> Arc<str> {
    if let Some((shared, _)) = lanes.get_key_value(name) {
        return shared.clone();
    }
    let shared: Arc<str> = Arc::from(name);
    lanes.insert(shared.clone(), BTreeSet::new());
    shared
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
        assert!(q.remove(2));
        assert!(!q.remove(2), "a task leaves the queue once");
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
