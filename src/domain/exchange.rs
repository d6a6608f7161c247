//! The MESS exchange's rules (seed 003): names, request refs, priorities, the statuses a
//! request goes through (as the task underneath it), and when an executor wants to hear of
//! a request (its minimum priority and quiet hours).

use chrono::{DateTime, NaiveTime, Utc};
use rand::Rng;
use serde::Deserialize;

use super::task::TaskStatus;
use crate::error::HubError;

/// The pin that keeps a request's task from being dispatched: executors pull it.
pub fn pin(exchange_id: &str) -> String {
    format!("exchange:{exchange_id}")
}

/// The m3shd agent an executor is.
pub fn agent_id(exchange_id: &str, executor_id: &str) -> String {
    format!("{exchange_id}.{executor_id}")
}

/// The executor an agent of `exchange_id` is (the inverse of [`agent_id`]); another
/// agent's id as it is.
pub fn executor_id<'a>(exchange_id: &str, agent_id: &'a str) -> &'a str {
    agent_id
        .strip_prefix(exchange_id)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or(agent_id)
}

/// The permission a MESS key carries: its own exchange, nothing else.
pub fn permission(exchange_id: &str) -> String {
    format!("mess:{exchange_id}")
}

/// The exchange a MESS key's permissions name, if they are a MESS key's.
pub fn exchange_of_key<'a>(permissions: impl IntoIterator<Item = &'a String>) -> Option<&'a str> {
    permissions
        .into_iter()
        .find_map(|p| p.strip_prefix("mess:"))
}

/// An exchange id: 1 to 32 lower-case letters, digits, `-` or `_` (it is part of keys,
/// agent ids and log paths).
pub fn check_exchange_id(raw: &str) -> Result<(), HubError> {
    let ok = !raw.is_empty()
        && raw.len() <= 32
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(HubError::bad_request(format!(
            "exchange_id {raw:?} must be 1 to 32 lower-case letters, digits, - or _"
        )))
    }
}

/// An executor id: 1 to 31 letters, digits, `-` or `_` (with its exchange, an agent id).
pub fn check_executor_id(raw: &str) -> Result<(), HubError> {
    let ok = !raw.is_empty()
        && raw.len() <= 31
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(HubError::bad_request(format!(
            "executor_id {raw:?} must be 1 to 31 letters, digits, - or _"
        )))
    }
}

/// A new request ref, `YYYY-MM-DD-XXXX` (the date in UTC, four letters or digits).
pub fn new_ref(now: DateTime<Utc>) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    let tail: String = (0..4)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{}-{tail}", now.format("%Y-%m-%d"))
}

/// A request's priority, and the task priority and urgency it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub fn parse(raw: &str) -> Result<Self, HubError> {
        match raw {
            "low" => Ok(Self::Low),
            "normal" => Ok(Self::Normal),
            "high" => Ok(Self::High),
            "urgent" => Ok(Self::Urgent),
            other => Err(HubError::bad_request(format!(
                "priority {other:?} must be low, normal, high or urgent"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
            Self::Urgent => "urgent",
        }
    }

    /// The task's (priority, urgency).
    pub fn task(self) -> (i32, &'static str) {
        match self {
            Self::Low => (0, "low"),
            Self::Normal => (0, "normal"),
            Self::High => (5, "high"),
            Self::Urgent => (10, "critical"),
        }
    }
}

/// A request's status as MESS names it, from its task's.
pub fn status_of(task: TaskStatus) -> &'static str {
    match task {
        TaskStatus::Queued => "pending",
        TaskStatus::Assigned | TaskStatus::Running => "claimed",
        TaskStatus::Done => "completed",
        TaskStatus::Failed => "failed",
        TaskStatus::Cancelled => "cancelled",
    }
}

/// A change a `PATCH …/requests/{ref}` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    Claim,
    Complete,
    Fail,
    Cancel,
}

impl Update {
    pub fn parse(raw: &str) -> Result<Self, HubError> {
        match raw {
            "claimed" => Ok(Self::Claim),
            "completed" => Ok(Self::Complete),
            "failed" => Ok(Self::Fail),
            "cancelled" => Ok(Self::Cancel),
            other => Err(HubError::bad_request(format!(
                "status {other:?} must be claimed, completed, failed or cancelled"
            ))),
        }
    }

    /// The status code a thread message records.
    pub fn code(self) -> &'static str {
        match self {
            Self::Claim => "claimed",
            Self::Complete => "completed",
            Self::Fail => "failed",
            Self::Cancel => "cancelled",
        }
    }
}

/// When an executor wants to be told of a request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Preferences {
    pub min_priority: Option<Priority>,
    pub quiet_hours: Option<QuietHours>,
}

/// Hours in which only urgent requests are notified, read in `timezone` (default UTC).
#[derive(Debug, Clone, Deserialize)]
pub struct QuietHours {
    #[serde(default)]
    pub enabled: bool,
    pub start: String,
    pub end: String,
    #[serde(default, alias = "time_zone")]
    pub timezone: Option<String>,
}

impl Preferences {
    /// Reads stored or sent preferences, refusing what cannot be honoured.
    pub fn parse(value: &serde_json::Value) -> Result<Self, HubError> {
        let preferences: Self = serde_json::from_value(value.clone()).map_err(|e| {
            HubError::bad_request(format!(
                "preferences: {e} (min_priority low|normal|high|urgent; quiet_hours {{enabled, start: \"22:00\", end: \"07:00\", timezone}})"
            ))
        })?;
        if let Some(quiet) = &preferences.quiet_hours {
            quiet.window()?;
        }
        Ok(preferences)
    }

    /// Whether a request of `priority` is to be notified at `now`.
    pub fn wants(&self, priority: Priority, now: DateTime<Utc>) -> bool {
        if self.min_priority.is_some_and(|min| priority < min) {
            return false;
        }
        match &self.quiet_hours {
            Some(quiet) if quiet.enabled && priority != Priority::Urgent => !quiet.covers(now),
            _ => true,
        }
    }
}

impl QuietHours {
    fn window(&self) -> Result<(NaiveTime, NaiveTime, chrono_tz::Tz), HubError> {
        let time = |raw: &str| {
            NaiveTime::parse_from_str(raw, "%H:%M").map_err(|_| {
                HubError::bad_request(format!("quiet_hours time {raw:?} must be HH:MM"))
            })
        };
        let zone = self.timezone.as_deref().unwrap_or("UTC");
        let zone: chrono_tz::Tz = zone.parse().map_err(|_| {
            HubError::bad_request(format!(
                "quiet_hours timezone {zone:?} is not an IANA time zone"
            ))
        })?;
        Ok((time(&self.start)?, time(&self.end)?, zone))
    }

    /// Whether `now` falls in the quiet hours (a window may run past midnight).
    fn covers(&self, now: DateTime<Utc>) -> bool {
        let Ok((start, end, zone)) = self.window() else {
            return false;
        };
        let local = now.with_timezone(&zone).time();
        if start <= end {
            start <= local && local < end
        } else {
            local >= start || local < end
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_the_date_and_four_characters() {
        let at: DateTime<Utc> = "2026-02-01T22:00:00Z".parse().unwrap();
        let r = new_ref(at);
        assert!(r.starts_with("2026-02-01-") && r.len() == 15, "{r}");
    }

    #[test]
    fn quiet_hours_hold_back_all_but_urgent_requests_across_midnight() {
        let prefs = Preferences::parse(&serde_json::json!({
            "min_priority": "normal",
            "quiet_hours": {"enabled": true, "start": "22:00", "end": "07:00", "timezone": "Europe/Paris"}
        }))
        .unwrap();
        let night: DateTime<Utc> = "2026-02-01T23:30:00Z".parse().unwrap(); // 00:30 in Paris
        let day: DateTime<Utc> = "2026-02-01T12:00:00Z".parse().unwrap();
        assert!(!prefs.wants(Priority::Normal, night));
        assert!(prefs.wants(Priority::Urgent, night));
        assert!(prefs.wants(Priority::Normal, day));
        assert!(!prefs.wants(Priority::Low, day), "below the minimum");
        assert!(Preferences::parse(
            &serde_json::json!({"quiet_hours": {"enabled": true, "start": "25:00", "end": "07:00"}})
        )
        .is_err());
    }
}
