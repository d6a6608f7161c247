//! Template schedules: a cron expression read in a time zone. Expressions are parsed by
//! `croner` (five fields, or six with seconds first; `@hourly` and the like; `L`, `W`,
//! `#`), zones by `chrono-tz` (IANA names such as `Europe/Paris`), so daylight-saving
//! changes fall where the zone puts them.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

use crate::error::HubError;

/// A parsed schedule: when its occurrences fall.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: Tz,
}

/// At most this many missed occurrences are dispatched (catch-up) or recorded (skipped)
/// after a hub was down; older ones are only counted.
pub const MISSED_KEPT: usize = 100;

impl Schedule {
    /// Reads `cron` in `time_zone`, or says in words what is wrong with either.
    pub fn parse(cron: &str, time_zone: &str) -> Result<Self, HubError> {
        let zone: Tz = time_zone.parse().map_err(|_| {
            HubError::bad_request(format!(
                "time_zone {time_zone:?} is not an IANA time zone name like UTC or Europe/Paris"
            ))
        })?;
        let cron = Cron::new(cron)
            .with_seconds_optional()
            .parse()
            .map_err(|e| {
                HubError::bad_request(format!(
                    "schedule {cron:?} is not a cron expression ({e}); five fields \
                     (minute hour day-of-month month day-of-week) or six with seconds first"
                ))
            })?;
        let schedule = Self { cron, zone };
        // A pattern that never matches (30 February) would never run: refuse it now.
        if schedule.next_after(Utc::now()).is_none() {
            return Err(HubError::bad_request(format!(
                "schedule {:?} never falls on a real date",
                schedule.cron.as_str()
            )));
        }
        Ok(schedule)
    }

    /// The first occurrence strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }

    /// The next `count` occurrences after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut times = Vec::with_capacity(count);
        let mut from = after;
        while times.len() < count {
            match self.next_after(from) {
                Some(next) => {
                    times.push(next);
                    from = next;
                }
                None => break,
            }
        }
        times
    }

    /// The occurrences in (`after`, `until`]: the newest [`MISSED_KEPT`] of them, and how
    /// many older ones there were.
    pub fn between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> (Vec<DateTime<Utc>>, u64) {
        let mut kept = std::collections::VecDeque::with_capacity(MISSED_KEPT);
        let mut older = 0;
        let mut from = after;
        while let Some(next) = self.next_after(from).filter(|n| *n <= until) {
            if kept.len() == MISSED_KEPT {
                kept.pop_front();
                older += 1;
            }
            kept.push_back(next);
            from = next;
        }
        (kept.into(), older)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn occurrences_fall_in_the_schedules_time_zone() {
        // 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
        let schedule = Schedule::parse("0 9 * * *", "Europe/Paris").unwrap();
        assert_eq!(
            schedule.next_after(at("2026-01-10T12:00:00Z")),
            Some(at("2026-01-11T08:00:00Z"))
        );
        assert_eq!(
            schedule.next_after(at("2026-07-10T12:00:00Z")),
            Some(at("2026-07-11T07:00:00Z"))
        );
        let every_second = Schedule::parse("* * * * * *", "UTC").unwrap();
        assert_eq!(
            every_second.upcoming(at("2026-01-01T00:00:00Z"), 2),
            vec![at("2026-01-01T00:00:01Z"), at("2026-01-01T00:00:02Z")]
        );
    }

    #[test]
    fn missed_occurrences_keep_the_newest_and_count_the_rest() {
        let hourly = Schedule::parse("@hourly", "UTC").unwrap();
        let (kept, older) = hourly.between(at("2026-01-01T00:00:00Z"), at("2026-01-11T00:00:00Z"));
        assert_eq!(kept.len(), MISSED_KEPT);
        assert_eq!(older, 240 - MISSED_KEPT as u64);
        assert_eq!(kept.last(), Some(&at("2026-01-11T00:00:00Z")));
    }

    #[test]
    fn bad_expressions_and_zones_are_named() {
        let error = Schedule::parse("61 * * * *", "UTC")
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"61 * * * *\""), "{error}");
        let error = Schedule::parse("0 9 * * *", "Mars/Olympus")
            .unwrap_err()
            .to_string();
        assert!(error.contains("Mars/Olympus"), "{error}");
        let error = Schedule::parse("0 0 30 2 *", "UTC")
            .unwrap_err()
            .to_string();
        assert!(error.contains("never"), "{error}");
    }
}
