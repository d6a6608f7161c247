//! The task state machine and the order of the dispatch queue.
//!
//! ```text
//! queued ──assign──> assigned ──start──> running ──> done | failed
//!   ▲                  │  │                │
//!   └──requeue/hand back┘  └──> done|failed └──requeue (holder offline)
//! any live state ──cancel──> cancelled
//! ```

use std::cmp::Reverse;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::HubError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Queued,
    Assigned,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        Self::Queued,
        Self::Assigned,
        Self::Running,
        Self::Done,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Assigned => "assigned",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }

    /// Whether a task in this state occupies a slot of its holder.
    pub fn holds_slot(self) -> bool {
        matches!(self, Self::Assigned | Self::Running)
    }

    /// The transition a report (`PUT /api/tasks/{id}`) may make from `self` to `next`.
    /// Assignment is the Dispatcher's alone, so nobody reports `assigned`.
    pub fn check_report(self, next: TaskStatus) -> Result<(), HubError> {
        use TaskStatus::*;
        let legal = matches!(
            (self, next),
            (Queued | Assigned | Running, Cancelled)
                | (Assigned | Running, Running | Done | Failed | Queued)
        );
        if legal {
            Ok(())
        } else {
            Err(HubError::conflict(format!(
                "a {self} task cannot become {next}"
            )))
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = HubError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| HubError::bad_request(format!("unknown status {s:?} (expected queued, assigned, running, done, failed or cancelled)")))
    }
}

/// How pressing a task is, between equal priorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    Low,
    Normal,
    High,
    Critical,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl FromStr for Urgency {
    type Err = HubError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Self::Low),
            "normal" => Ok(Self::Normal),
            "high" => Ok(Self::High),
            "critical" => Ok(Self::Critical),
            _ => Err(HubError::bad_request(format!(
                "unknown urgency {s:?} (expected low, normal, high or critical)"
            ))),
        }
    }
}

/// The models a task may ask for.
pub const MODELS: &[&str] = &["auto", "haiku", "sonnet", "opus"];

/// Position of a ready task in the dispatch queue: higher priority first, then higher
/// urgency, then the earlier deadline (none last), then the older task.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueueKey {
    priority: Reverse<i32>,
    urgency: Reverse<Urgency>,
    /// Milliseconds since the epoch; no deadline is the largest, so it sorts last.
    deadline_ms: i64,
    task_id: i32,
}

impl QueueKey {
    /// `deadline` as stored: an ISO 8601 timestamp (one that does not read as one counts
    /// as no deadline).
    pub fn new(task_id: i32, priority: i32, urgency: Urgency, deadline: Option<&str>) -> Self {
        Self {
            priority: Reverse(priority),
            urgency: Reverse(urgency),
            deadline_ms: deadline
                .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                .map_or(i64::MAX, |at| at.timestamp_millis()),
            task_id,
        }
    }

    pub fn task_id(&self) -> i32 {
        self.task_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskStatus::*;

    #[test]
    fn reports_follow_the_state_machine() {
        assert!(Assigned.check_report(Running).is_ok());
        assert!(Running.check_report(Done).is_ok());
        assert!(Running.check_report(Running).is_ok());
        assert!(Queued.check_report(Cancelled).is_ok());
        assert!(Queued.check_report(Running).is_err());
        assert!(Done.check_report(Running).is_err());
        assert!(Failed.check_report(Done).is_err());
        assert!(Running.check_report(Assigned).is_err());
    }

    #[test]
    fn statuses_parse_and_reject_unknown_names() {
        assert_eq!("running".parse::<TaskStatus>().unwrap(), Running);
        let error = "sleeping".parse::<TaskStatus>().unwrap_err();
        assert!(error.to_string().contains("sleeping"));
    }

    #[test]
    fn the_queue_orders_priority_urgency_deadline_then_age() {
        let mut keys = [
            QueueKey::new(1, 0, Urgency::Normal, None),
            QueueKey::new(2, 0, Urgency::Normal, Some("2026-01-01T00:00:00.000Z")),
            QueueKey::new(3, 0, Urgency::Critical, None),
            QueueKey::new(4, 5, Urgency::Low, None),
            QueueKey::new(5, 0, Urgency::Normal, Some("2025-01-01T00:00:00.000Z")),
            QueueKey::new(6, 0, Urgency::Normal, None),
        ];
        keys.sort();
        let order: Vec<i32> = keys.iter().map(QueueKey::task_id).collect();
        assert_eq!(order, vec![4, 3, 5, 2, 1, 6]);
    }
}
