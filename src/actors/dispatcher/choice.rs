//! Choosing the agent for a task: among online agents with a free slot that serve the
//! capability (and do not exclude it), the best UCB reputation score for that capability
//! wins; ties go to the lower load, then to the agent assigned least recently. A pinned
//! task (`assign_to`) goes to its agent only.

use std::collections::HashMap;

use super::queue::Slot;
use crate::domain::reputation::{Outcome, Stats};

/// Outcome counters per capability and agent, as the Dispatcher keeps them in memory.
#[derive(Debug, Default)]
pub struct Board {
    capabilities: HashMap<String, Record>,
    exploration: f64,
}

#[derive(Debug, Default)]
struct Record {
    /// Finished tasks of this capability, all agents together (N of UCB1).
    finished: u64,
    agents: HashMap<String, Stats>,
}

impl Board {
    pub fn new(exploration: f64) -> Self {
        Self {
            capabilities: HashMap::new(),
            exploration,
        }
    }

    /// Sets the counters of one agent and capability (at boot).
    pub fn set(&mut self, agent_id: &str, capability: &str, stats: Stats) {
        let record = self.capabilities.entry(capability.to_string()).or_default();
        let previous = record
            .agents
            .insert(agent_id.to_string(), stats)
            .unwrap_or_default();
        record.finished = record.finished - previous.finished() + stats.finished();
    }

    pub fn record(&mut self, agent_id: &str, capability: &str, outcome: Outcome) {
        let record = self.capabilities.entry(capability.to_string()).or_default();
        record
            .agents
            .entry(agent_id.to_string())
            .or_default()
            .record(outcome);
        if outcome != Outcome::Verified {
            record.finished += 1;
        }
    }
}

/// The agent that should take a task of `capability` now, if any has room.
pub fn choose<'a>(
    slots: &'a HashMap<String, Slot>,
    board: &Board,
    capability: &str,
    pin: Option<&str>,
) -> Option<&'a str> {
    if let Some(pin) = pin {
        let (id, _) = slots.get_key_value(pin)?;
        let slot = &slots[pin];
        return (slot.has_room() && !slot.profile.refuses(capability)).then_some(id.as_str());
    }
    let record = board.capabilities.get(capability);
    let ln_finished = record.map_or(0.0, |r| (r.finished.max(1) as f64).ln());
    let mut best: Option<(&str, f64, &Slot)> = None;
    for (id, slot) in slots {
        if !slot.has_room() || !slot.profile.serves(capability) {
            continue;
        }
        let stats = record
            .and_then(|r| r.agents.get(id))
            .copied()
            .unwrap_or_default();
        let score = stats.ucb(ln_finished, board.exploration);
        let better = match best {
            None => true,
            Some((best_id, best_score, best_slot)) => score
                .total_cmp(&best_score)
                .then(best_slot.fill().cmp(&slot.fill()))
                .then(best_slot.last_assigned.cmp(&slot.last_assigned))
                .then(best_id.cmp(id.as_str()))
                .is_gt(),
        };
        if better {
            best = Some((id, score, slot));
        }
    }
    best.map(|(id, _, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::agent::Profile;

    fn slot(caps: &[&str], max: i32, load: usize) -> Slot {
        let profile = Profile {
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            excluded: vec![],
            max_concurrent: max,
        };
        let mut slot = Slot::new(profile, true);
        slot.pending = load;
        slot
    }

    #[test]
    fn the_better_reputation_wins_and_newcomers_are_tried_first() {
        let mut slots = HashMap::new();
        slots.insert("good".to_string(), slot(&["x"], 4, 0));
        slots.insert("bad".to_string(), slot(&["x"], 4, 0));
        let mut board = Board::new(0.5);
        for _ in 0..10 {
            board.record("good", "x", Outcome::Done);
            board.record("bad", "x", Outcome::Failed);
        }
        assert_eq!(choose(&slots, &board, "x", None), Some("good"));
        slots.insert("new".to_string(), slot(&["x"], 1, 0));
        assert_eq!(choose(&slots, &board, "x", None), Some("new"));
    }

    #[test]
    fn ties_go_to_the_lower_load_then_the_least_recently_assigned() {
        let mut slots = HashMap::new();
        slots.insert("busy".to_string(), slot(&["x"], 4, 2));
        slots.insert("idle".to_string(), slot(&["x"], 4, 0));
        let board = Board::new(1.0);
        assert_eq!(choose(&slots, &board, "x", None), Some("idle"));
        slots.get_mut("busy").unwrap().pending = 0;
        slots.get_mut("idle").unwrap().last_assigned = 7;
        assert_eq!(choose(&slots, &board, "x", None), Some("busy"));
    }

    #[test]
    fn pins_and_capabilities_are_respected() {
        let mut slots = HashMap::new();
        slots.insert("a".to_string(), slot(&["x"], 1, 0));
        slots.insert("full".to_string(), slot(&["y"], 1, 1));
        let board = Board::new(1.0);
        assert_eq!(choose(&slots, &board, "y", None), None);
        assert_eq!(choose(&slots, &board, "y", Some("a")), Some("a"));
        assert_eq!(choose(&slots, &board, "x", Some("full")), None);
        assert_eq!(choose(&slots, &board, "x", Some("ghost")), None);
    }
}
