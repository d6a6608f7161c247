//! The Dispatcher's view of every agent: routing profile, slots, and reputation per
//! capability; and the choice of an agent for a task.
//!
//! Choosing must stay fast with thousands of agents online, so agents live in a vector
//! and every capability keeps the list of agents that serve it (not excluding it), each
//! with its reputation counters beside it, plus a compact array of free slots. A decision
//! then scans only that capability's members and touches no hash map per candidate.
//!
//! The choice: among online members with a free slot, the best UCB1 score wins; ties go
//! to the lower load, then to the agent assigned least recently. A pinned task
//! (`assign_to`) goes to its agent only.

use std::collections::HashMap;

use super::queue::Slot;
use crate::domain::agent::Profile;
use crate::domain::reputation::{Outcome, Stats};

#[derive(Debug, Default)]
pub struct Roster {
    ids: HashMap<String, usize>,
    agents: Vec<Agent>,
    /// Free slots of each agent (0 when offline or removed), indexed like `agents`.
    free: Vec<i64>,
    capabilities: HashMap<String, Members>,
    /// Counters of every (agent, capability) ever seen, members or not.
    history: HashMap<(String, String), Stats>,
    exploration: f64,
    assignments: u64,
}

#[derive(Debug)]
struct Agent {
    id: String,
    slot: Slot,
    removed: bool,
}

#[derive(Debug, Default)]
struct Members {
    /// Finished tasks of this capability, all agents together (N of UCB1).
    finished: u64,
    /// (agent index, counters).
    entries: Vec<(usize, Stats)>,
}

impl Roster {
    pub fn new(exploration: f64) -> Self {
        Self {
            exploration,
            ..Self::default()
        }
    }

    pub fn slot(&self, agent_id: &str) -> Option<&Slot> {
        let &i = self.ids.get(agent_id)?;
        (!self.agents[i].removed).then_some(&self.agents[i].slot)
    }

    /// Changes an agent's slot (load, liveness) through `change`; false if unknown.
    pub fn update(&mut self, agent_id: &str, change: impl FnOnce(&mut Slot)) -> bool {
        let Some(&i) = self.ids.get(agent_id) else {
            return false;
        };
        if self.agents[i].removed {
            return false;
        }
        change(&mut self.agents[i].slot);
        self.refresh(i);
        true
    }

    /// Registers an agent or changes its profile and liveness, keeping its load.
    pub fn upsert(&mut self, agent_id: &str, profile: Profile, online: bool) {
        let i = match self.ids.get(agent_id) {
            Some(&i) => {
                self.leave_capabilities(i);
                let agent = &mut self.agents[i];
                agent.removed = false;
                agent.slot.profile = profile;
                agent.slot.online = online;
                i
            }
            None => {
                self.agents.push(Agent {
                    id: agent_id.to_string(),
                    slot: Slot::new(profile, online),
                    removed: false,
                });
                self.free.push(0);
                self.ids.insert(agent_id.to_string(), self.agents.len() - 1);
                self.agents.len() - 1
            }
        };
        let served: Vec<String> = {
            let profile = &self.agents[i].slot.profile;
            profile
                .capabilities
                .iter()
                .filter(|c| profile.serves(c))
                .cloned()
                .collect()
        };
        for capability in served {
            let stats = self
                .history
                .get(&(agent_id.to_string(), capability.clone()))
                .copied()
                .unwrap_or_default();
            self.capabilities
                .entry(capability)
                .or_default()
                .entries
                .push((i, stats));
        }
        self.refresh(i);
    }

    /// Forgets an agent (deleted). Its index is not reused.
    pub fn remove(&mut self, agent_id: &str) {
        let Some(&i) = self.ids.get(agent_id) else {
            return;
        };
        self.leave_capabilities(i);
        self.agents[i].removed = true;
        self.refresh(i);
    }

    fn leave_capabilities(&mut self, i: usize) {
        for members in self.capabilities.values_mut() {
            members.entries.retain(|(member, _)| *member != i);
        }
    }

    fn refresh(&mut self, i: usize) {
        let agent = &self.agents[i];
        self.free[i] = if agent.removed || !agent.slot.accepting() {
            0
        } else {
            (i64::from(agent.slot.profile.max_concurrent) - agent.slot.load() as i64).max(0)
        };
    }

    /// Whether any registered agent serves `capability` (online or not).
    pub fn serves(&self, capability: &str) -> bool {
        self.capabilities
            .get(capability)
            .is_some_and(|m| !m.entries.is_empty())
    }

    /// Why no agent takes a task of `capability` (pinned to `pin`, if set), in words for
    /// an operator: nobody serves it, or those who do are offline, busy, resting or held.
    pub fn why_unclaimed(&self, capability: &str, pin: Option<&str>) -> String {
        let describe = |slot: &Slot| {
            if !slot.online {
                "offline"
            } else if slot.held {
                "on hold"
            } else if slot.resting {
                "over its daily token cap"
            } else {
                "busy"
            }
        };
        if let Some(exchange) = pin.and_then(|p| p.strip_prefix("exchange:")) {
            return format!("it waits for an executor of exchange {exchange} to claim it");
        }
        if let Some(pin) = pin {
            return match self.slot(pin) {
                None => format!("it is assigned to {pin}, which is not registered"),
                Some(slot) if slot.profile.refuses(capability) => {
                    format!("it is assigned to {pin}, which does not take {capability}")
                }
                Some(slot) => format!("it is assigned to {pin}, which is {}", describe(slot)),
            };
        }
        let members = self
            .capabilities
            .get(capability)
            .map_or(&[][..], |m| &m.entries[..]);
        if members.is_empty() {
            return format!("no agent has the capability {capability}");
        }
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for &(i, _) in members {
            *counts.entry(describe(&self.agents[i].slot)).or_default() += 1;
        }
        let states: Vec<String> = counts
            .into_iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect();
        format!(
            "every agent with the capability {capability} is unavailable ({})",
            states.join(", ")
        )
    }

    /// Ids of every known agent.
    pub fn ids(&self) -> Vec<String> {
        self.agents
            .iter()
            .filter(|a| !a.removed)
            .map(|a| a.id.clone())
            .collect()
    }

    pub fn loads(&self) -> HashMap<String, usize> {
        self.agents
            .iter()
            .filter(|a| !a.removed)
            .map(|a| (a.id.clone(), a.slot.load()))
            .collect()
    }

    /// Marks `agent_id` as the most recently assigned agent.
    pub fn note_assignment(&mut self, agent_id: &str) {
        self.assignments += 1;
        let sequence = self.assignments;
        self.update(agent_id, |slot| slot.last_assigned = sequence);
    }

    /// Sets the counters of one agent and capability (at boot).
    pub fn set_stats(&mut self, agent_id: &str, capability: &str, stats: Stats) {
        let previous = self
            .history
            .insert((agent_id.to_string(), capability.to_string()), stats)
            .unwrap_or_default();
        self.apply_stats(
            agent_id,
            capability,
            stats,
            stats.finished() - previous.finished().min(stats.finished()),
        );
    }

    /// Counts one outcome of `agent_id` on `capability`.
    pub fn record(&mut self, agent_id: &str, capability: &str, outcome: Outcome) {
        let stats = self
            .history
            .entry((agent_id.to_string(), capability.to_string()))
            .or_default();
        stats.record(outcome);
        let stats = *stats;
        self.apply_stats(
            agent_id,
            capability,
            stats,
            u64::from(outcome != Outcome::Verified),
        );
    }

    fn apply_stats(&mut self, agent_id: &str, capability: &str, stats: Stats, newly_finished: u64) {
        let index = self.ids.get(agent_id).copied();
        let members = self.capabilities.entry(capability.to_string()).or_default();
        members.finished += newly_finished;
        if let Some(entry) = members
            .entries
            .iter_mut()
            .find(|(member, _)| Some(*member) == index)
        {
            entry.1 = stats;
        }
    }

    /// The agent that should take a task of `capability` now, if any has room.
    pub fn choose(&self, capability: &str, pin: Option<&str>, avoid: Option<&str>) -> Option<&str> {
        if let Some(pin) = pin {
            let &i = self.ids.get(pin)?;
            let agent = &self.agents[i];
            return (self.free[i] > 0 && !agent.slot.profile.refuses(capability))
                .then_some(agent.id.as_str());
        }
        let members = self.capabilities.get(capability)?;
        let ln_finished = (members.finished.max(1) as f64).ln();
        let mut best: Option<(usize, f64)> = None;
        let avoided = avoid.and_then(|a| self.ids.get(a)).copied();
        for &(i, stats) in &members.entries {
            if self.free[i] <= 0 || Some(i) == avoided {
                continue;
            }
            let score = stats.ucb(ln_finished, self.exploration);
            let better = match best {
                None => true,
                Some((b, best_score)) => score
                    .total_cmp(&best_score)
                    .then_with(|| self.tie_break(b, i))
                    .is_gt(),
            };
            if better {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| self.agents[i].id.as_str())
    }

    /// Between equal scores: `Greater` when `challenger` should win over `holder`.
    fn tie_break(&self, holder: usize, challenger: usize) -> std::cmp::Ordering {
        let (h, c) = (&self.agents[holder], &self.agents[challenger]);
        h.slot
            .fill()
            .cmp(&c.slot.fill())
            .then(h.slot.last_assigned.cmp(&c.slot.last_assigned))
            .then(h.id.cmp(&c.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(caps: &[&str], max: i32) -> Profile {
        Profile {
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            excluded: vec![],
            max_concurrent: max,
        }
    }

    #[test]
    fn the_better_reputation_wins_and_newcomers_are_tried_first() {
        let mut roster = Roster::new(0.5);
        roster.upsert("good", profile(&["x"], 4), true);
        roster.upsert("bad", profile(&["x"], 4), true);
        for _ in 0..10 {
            roster.record("good", "x", Outcome::Done);
            roster.record("bad", "x", Outcome::Failed);
        }
        assert_eq!(roster.choose("x", None, None), Some("good"));
        roster.upsert("new", profile(&["x"], 1), true);
        assert_eq!(roster.choose("x", None, None), Some("new"));
    }

    #[test]
    fn ties_go_to_the_lower_load_then_the_least_recently_assigned() {
        let mut roster = Roster::new(1.0);
        roster.upsert("busy", profile(&["x"], 4), true);
        roster.upsert("idle", profile(&["x"], 4), true);
        roster.update("busy", |s| s.pending = 2);
        assert_eq!(roster.choose("x", None, None), Some("idle"));
        roster.update("busy", |s| s.pending = 0);
        roster.note_assignment("idle");
        assert_eq!(roster.choose("x", None, None), Some("busy"));
    }

    #[test]
    fn pins_exclusions_room_and_liveness_are_respected() {
        let mut roster = Roster::new(1.0);
        roster.upsert("a", profile(&["x"], 1), true);
        roster.upsert("full", profile(&["y"], 1), true);
        roster.update("full", |s| s.pending = 1);
        assert_eq!(roster.choose("y", None, None), None);
        assert_eq!(roster.choose("y", Some("a"), None), Some("a"));
        assert_eq!(roster.choose("x", Some("full"), None), None);
        assert_eq!(roster.choose("x", Some("ghost"), None), None);
        roster.update("a", |s| s.online = false);
        assert_eq!(roster.choose("x", None, None), None);
        let refusing = Profile {
            excluded: vec!["x".into()],
            ..profile(&["x"], 1)
        };
        roster.upsert("a", refusing, true);
        assert_eq!(roster.choose("x", None, None), None);
    }

    #[test]
    fn history_follows_an_agent_through_a_profile_change_and_removal() {
        let mut roster = Roster::new(0.1);
        roster.upsert("a", profile(&["x"], 1), true);
        roster.upsert("b", profile(&["x"], 1), true);
        roster.record("a", "x", Outcome::Failed);
        roster.record("b", "x", Outcome::Done);
        roster.upsert("a", profile(&["x", "z"], 1), true);
        assert_eq!(roster.choose("x", None, None), Some("b"));
        roster.remove("b");
        assert_eq!(roster.choose("x", None, None), Some("a"));
        assert!(roster.slot("b").is_none());
        assert_eq!(roster.ids(), vec!["a".to_string()]);
    }
}
