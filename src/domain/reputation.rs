//! Reputation: per agent and capability, how often the agent's tasks finished `done`,
//! `failed`, and were verified by an operator; scored with UCB1 so that routing both
//! exploits agents that do well and keeps exploring ones it knows little about.
//!
//! reward of a finished task: 1 for done, 0 for failed; each verification adds half a
//! success (capped at a mean of 1). score = mean + c · sqrt(ln N / n), where n is the
//! agent's finished tasks of that capability and N everyone's. An agent with no history
//! scores +∞, so a newcomer is tried first.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub successes: u64,
    pub failures: u64,
    pub verifications: u64,
}

/// What happened to one task of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed,
    Verified,
}

impl Stats {
    pub fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Done => self.successes += 1,
            Outcome::Failed => self.failures += 1,
            Outcome::Verified => self.verifications += 1,
        }
    }

    /// Finished tasks (verifications are not extra tasks).
    pub fn finished(&self) -> u64 {
        self.successes + self.failures
    }

    /// Mean reward in [0, 1]; 0 with no history.
    pub fn mean(&self) -> f64 {
        let n = self.finished();
        if n == 0 {
            return 0.0;
        }
        ((self.successes as f64 + 0.5 * self.verifications as f64) / n as f64).min(1.0)
    }

    /// The UCB1 score given `ln_total` = ln N (N: all finished tasks of the capability).
    pub fn ucb(&self, ln_total: f64, exploration: f64) -> f64 {
        let n = self.finished();
        if n == 0 {
            return f64::INFINITY;
        }
        self.mean() + exploration * (ln_total.max(0.0) / n as f64).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(s: u64, f: u64, v: u64) -> Stats {
        Stats {
            successes: s,
            failures: f,
            verifications: v,
        }
    }

    #[test]
    fn newcomers_are_explored_first() {
        assert_eq!(Stats::default().ucb(5.0, 1.0), f64::INFINITY);
    }

    #[test]
    fn a_failing_agent_scores_below_a_reliable_one_with_the_same_history() {
        let ln = (40f64).ln();
        assert!(stats(18, 2, 0).ucb(ln, 1.0) > stats(2, 18, 0).ucb(ln, 1.0));
    }

    #[test]
    fn verifications_raise_the_mean_but_never_past_one() {
        assert_eq!(stats(1, 1, 0).mean(), 0.5);
        assert_eq!(stats(1, 1, 1).mean(), 0.75);
        assert_eq!(stats(2, 0, 9).mean(), 1.0);
    }

    #[test]
    fn little_history_means_a_larger_bonus() {
        let ln = (100f64).ln();
        assert!(stats(1, 1, 0).ucb(ln, 1.0) > stats(50, 50, 0).ucb(ln, 1.0));
    }
}
