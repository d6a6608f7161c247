//! The daily budgets: reported cost across the hub (past the cap, new work is refused)
//! and tokens per agent (past the cap, the agent gets no more tasks that day). Both reset
//! at UTC midnight.

use std::collections::HashMap;

use crate::db::usage::today;

#[derive(Debug)]
pub struct Budget {
    day: String,
    spent: f64,
    tokens: HashMap<String, i64>,
    cost_cap: f64,
    token_cap: i64,
}

impl Budget {
    pub fn new(cost_cap: f64, token_cap: i64) -> Self {
        Self {
            day: today(),
            spent: 0.0,
            tokens: HashMap::new(),
            cost_cap,
            token_cap,
        }
    }

    /// Starts a new day if the date changed; true when it did.
    pub fn roll(&mut self) -> bool {
        let now = today();
        if now == self.day {
            return false;
        }
        self.day = now;
        self.spent = 0.0;
        self.tokens.clear();
        true
    }

    /// Counts usage of `agent_id`; returns the agent if this crossed its token cap.
    pub fn add(&mut self, agent_id: &str, cost_usd: f64, tokens: i64) -> Option<String> {
        self.roll();
        self.spent += cost_usd;
        let used = self.tokens.entry(agent_id.to_string()).or_default();
        let before = *used;
        *used += tokens;
        (before < self.token_cap && *used >= self.token_cap).then(|| agent_id.to_string())
    }

    pub fn cost_cap_reached(&mut self) -> bool {
        self.roll();
        self.spent >= self.cost_cap
    }

    /// Agents already over their token cap today (after a restart).
    pub fn resting(&self) -> Vec<String> {
        self.tokens
            .iter()
            .filter(|(_, t)| **t >= self.token_cap)
            .map(|(a, _)| a.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cost_cap_and_token_caps_are_reached_once() {
        let mut budget = Budget::new(1.0, 100);
        assert_eq!(budget.add("rex", 0.6, 60), None);
        assert!(!budget.cost_cap_reached());
        assert_eq!(budget.add("rex", 0.4, 40), Some("rex".to_string()));
        assert!(budget.cost_cap_reached());
        assert_eq!(
            budget.add("rex", 0.0, 10),
            None,
            "reported once, when crossed"
        );
        assert_eq!(budget.resting(), vec!["rex".to_string()]);
        assert!(!budget.roll(), "still the same day");
    }
}
