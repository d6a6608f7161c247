//! The daily budgets: reported cost across the hub (past the cap, new work is refused)
//! and tokens per agent (past the cap, the agent gets no more tasks that day). Both reset
//! at UTC midnight. The master token may also reset the day's cost early.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::db::usage::today;

/// The settings key of the day's cost forgiven by a reset.
pub const BUDGET_RESET_KEY: &str = "budget_reset";

/// Cost forgiven by resets on one day (stored, so a restart keeps the reset).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Forgiven {
    pub day: String,
    pub cost_usd: f64,
}

/// The day's cost against the cap, as `GET /api/admin/budget` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetView {
    pub day: String,
    pub spent_usd: f64,
    pub forgiven_usd: f64,
    pub counted_usd: f64,
    pub cap_usd: f64,
    pub cap_reached: bool,
}

#[derive(Debug)]
pub struct Budget {
    day: String,
    spent: f64,
    /// Cost reported today that a reset took off the count.
    forgiven: f64,
    tokens: HashMap<String, i64>,
    cost_cap: f64,
    token_cap: i64,
}

impl Budget {
    pub fn new(cost_cap: f64, token_cap: i64) -> Self {
        Self {
            day: today(),
            spent: 0.0,
            forgiven: 0.0,
            tokens: HashMap::new(),
            cost_cap,
            token_cap,
        }
    }

    /// Starts a new day if the date changed; true when it did.
    pub fn roll(&mut self) -> bool {
        self.roll_to(today())
    }

    /// Starts day `now` if it is not the current one.
    fn roll_to(&mut self, now: String) -> bool {
        if now == self.day {
            return false;
        }
        self.day = now;
        self.spent = 0.0;
        self.forgiven = 0.0;
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
        self.spent - self.forgiven >= self.cost_cap
    }

    /// What a reset now would forgive: everything reported today.
    pub fn reset(&mut self) -> Forgiven {
        self.roll();
        self.forgiven = self.spent;
        Forgiven {
            day: self.day.clone(),
            cost_usd: self.forgiven,
        }
    }

    /// A stored reset, if it was made today.
    pub fn restore(&mut self, forgiven: Forgiven) {
        self.roll();
        if forgiven.day == self.day {
            self.forgiven = forgiven.cost_usd;
        }
    }

    pub fn view(&mut self) -> BudgetView {
        let reached = self.cost_cap_reached();
        BudgetView {
            day: self.day.clone(),
            spent_usd: self.spent,
            forgiven_usd: self.forgiven,
            counted_usd: self.spent - self.forgiven,
            cap_usd: self.cost_cap,
            cap_reached: reached,
        }
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

    #[test]
    fn at_midnight_the_cap_lifts_and_resting_agents_work_again() {
        let mut budget = Budget::new(1.0, 100);
        budget.add("rex", 2.0, 150);
        budget.reset();
        budget.add("rex", 1.0, 0);
        assert!(budget.cost_cap_reached() && !budget.resting().is_empty());
        let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
            .format("%Y-%m-%d")
            .to_string();
        assert!(budget.roll_to(tomorrow.clone()));
        // (Fields, not view(): view() rolls to the real today.)
        assert_eq!(budget.day, tomorrow);
        assert_eq!((budget.spent, budget.forgiven), (0.0, 0.0));
        assert!(budget.resting().is_empty());
        assert!(!budget.roll_to(tomorrow), "once a day");
    }

    #[test]
    fn a_reset_forgives_what_was_spent_so_far() {
        let mut budget = Budget::new(1.0, 100);
        budget.add("rex", 1.5, 0);
        assert!(budget.cost_cap_reached());
        let forgiven = budget.reset();
        assert!(!budget.cost_cap_reached());
        budget.add("rex", 0.5, 0);
        assert_eq!(budget.view().counted_usd, 0.5);
        let mut restarted = Budget::new(1.0, 100);
        restarted.add("rex", 2.0, 0);
        restarted.restore(forgiven);
        assert!(!restarted.cost_cap_reached());
        restarted.restore(Forgiven {
            day: "1999-01-01".into(),
            cost_usd: 9.0,
        });
        assert_eq!(
            restarted.view().forgiven_usd,
            1.5,
            "another day's reset is ignored"
        );
    }
}
