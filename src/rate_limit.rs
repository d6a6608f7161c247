//! Rate limits: requests per key (inbound webhooks per name, seed 004 changes per caller),
//! a keyed GCRA limiter from `governor`; and the sign-in throttle per (user name, client
//! address).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use sha2::{Digest, Sha256};

/// How many checks pass between two sweeps of keys that have been idle long enough to
/// start afresh: the table holds only keys seen lately, however many there were.
const SWEEP_EVERY: u64 = 1024;

/// Requests per key per minute: up to the limit at once, then one more each
/// `60 s / limit` (a keyed GCRA limiter, `governor`).
pub struct RateLimiter {
    keys: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
}

impl RateLimiter {
    pub fn per_minute(limit: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(limit).unwrap_or(NonZeroU32::MIN));
        Self {
            keys: governor::RateLimiter::keyed(quota),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one request for `key`; when the key is over its limit, how many whole seconds
    /// until it may come again.
    pub fn admit(&self, key: &str) -> Result<(), u64> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.keys.retain_recent();
        }
        self.keys.check_key(&key.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// Failed sign-ins per (user name, client address). The first `free` failures cost
/// nothing; after that each attempt must wait a delay that doubles per failure up to
/// `max_delay`: a guesser slows to a crawl, while the same account from another address,
/// and other accounts from the same address, are untouched. An attempt is counted before
/// its password is checked, so a parallel burst cannot slip through together; success
/// clears it. Keys are digests of bounded input, idle keys expire, and the table never
/// holds more than `capacity` keys (the stalest goes first).
pub struct LoginThrottle {
    free: u32,
    base_delay: Duration,
    max_delay: Duration,
    idle: Duration,
    capacity: usize,
    entries: Mutex<HashMap<ThrottleKey, Failures>>,
}

/// The digest a (name, address) pair is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThrottleKey([u8; 16]);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl LoginThrottle {
    pub fn new(free: u32, base_delay: Duration, max_delay: Duration, capacity: usize) -> Self {
        Self {
            free,
            base_delay,
            max_delay,
            idle: Duration::from_secs(15 * 60).max(max_delay),
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt for (`name`, `address`) as a failure until [`Self::succeeded`]
    /// clears it; `Err(wait)` when the pair must wait that long first.
    pub fn begin(&self, name: &str, address: &str) -> Result<ThrottleKey, Duration> {
        self.begin_at(name, address, Instant::now())
    }

    fn begin_at(&self, name: &str, address: &str, now: Instant) -> Result<ThrottleKey, Duration> {
        let key = ThrottleKey::of(name, address);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if !entries.contains_key(&key) && entries.len() >= self.capacity {
            self.make_room(&mut entries, now);
        }
        let entry = entries.entry(key).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(entry.last) >= self.idle {
            entry.count = 0;
        }
        if entry.count >= self.free {
            let wait = self.delay(entry.count - self.free);
            let waited = now.duration_since(entry.last);
            if waited < wait {
                return Err(wait - waited);
            }
        }
        entry.count += 1;
        entry.last = now;
        Ok(key)
    }

    /// A correct password: the pair starts afresh.
    pub fn succeeded(&self, key: ThrottleKey) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }

    /// Keys currently counted (for tests and metrics).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn delay(&self, over: u32) -> Duration {
        self.base_delay
            .saturating_mul(2u32.saturating_pow(over.min(20)))
            .min(self.max_delay)
    }

    /// Drops idle keys, then, if the table is still full, the stalest one.
    fn make_room(&self, entries: &mut HashMap<ThrottleKey, Failures>, now: Instant) {
        entries.retain(|_, f| now.duration_since(f.last) < self.idle);
        if entries.len() >= self.capacity {
            if let Some(stalest) = entries.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| *k) {
                entries.remove(&stalest);
            }
        }
    }
}

impl ThrottleKey {
    fn of(name: &str, address: &str) -> Self {
        let digest = Sha256::new()
            .chain_update(name.as_bytes())
            .chain_update([0])
            .chain_update(address.as_bytes())
            .finalize();
        let mut key = [0; 16];
        key.copy_from_slice(&digest[..16]);
        Self(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(capacity: usize) -> LoginThrottle {
        LoginThrottle::new(
            2,
            Duration::from_secs(60),
            Duration::from_secs(600),
            capacity,
        )
    }

    #[test]
    fn failures_past_the_free_ones_must_wait() {
        let t = throttle(100);
        assert!(t.begin("ada", "10.0.0.1").is_ok());
        assert!(t.begin("ada", "10.0.0.1").is_ok());
        let wait = t.begin("ada", "10.0.0.1").unwrap_err();
        assert!(wait > Duration::from_secs(59), "{wait:?}");
        // The same name from elsewhere, and another name from here, are untouched.
        assert!(t.begin("ada", "10.0.0.2").is_ok());
        assert!(t.begin("bob", "10.0.0.1").is_ok());
    }

    #[test]
    fn a_wait_once_served_allows_one_more_try_and_idle_pairs_start_afresh() {
        let t = throttle(100);
        let start = Instant::now();
        t.begin_at("ada", "a", start).unwrap();
        t.begin_at("ada", "a", start).unwrap();
        assert!(t
            .begin_at("ada", "a", start + Duration::from_secs(59))
            .is_err());
        let later = start + Duration::from_secs(60);
        assert!(
            t.begin_at("ada", "a", later).is_ok(),
            "the minute has passed"
        );
        let wait = t.begin_at("ada", "a", later).unwrap_err();
        assert_eq!(wait, Duration::from_secs(120), "the next wait doubles");
        let idle = later + Duration::from_secs(15 * 60);
        assert!(t.begin_at("ada", "a", idle).is_ok());
        assert!(
            t.begin_at("ada", "a", idle).is_ok(),
            "counting starts afresh"
        );
    }

    #[test]
    fn success_clears_the_count() {
        let t = throttle(100);
        t.begin("ada", "a").unwrap();
        let key = t.begin("ada", "a").unwrap();
        t.succeeded(key);
        assert!(t.begin("ada", "a").is_ok() && t.begin("ada", "a").is_ok());
    }

    #[test]
    fn the_delay_doubles_up_to_its_ceiling() {
        let t = throttle(1);
        assert_eq!(t.delay(0), Duration::from_secs(60));
        assert_eq!(t.delay(1), Duration::from_secs(120));
        assert_eq!(t.delay(40), Duration::from_secs(600));
    }

    #[test]
    fn the_table_never_outgrows_its_capacity() {
        let t = throttle(50);
        for i in 0..1000 {
            let _ = t.begin(&format!("name-{i}"), "10.0.0.9");
        }
        assert_eq!(t.len(), 50);
    }

    #[test]
    fn each_key_gets_its_own_budget() {
        let limiter = RateLimiter::per_minute(2);
        assert!(limiter.admit("a").is_ok() && limiter.admit("a").is_ok());
        let wait = limiter.admit("a").unwrap_err();
        assert!((1..=30).contains(&wait), "{wait}");
        assert!(limiter.admit("b").is_ok());
    }

    #[test]
    fn a_hundred_thousand_keys_do_not_stay() {
        // 60 a minute: a key seen once may be swept two emission intervals (2 s) later.
        let limiter = RateLimiter::per_minute(60);
        for i in 0..100_000 {
            assert!(limiter.admit(&format!("caller-{i}")).is_ok());
        }
        std::thread::sleep(Duration::from_millis(2100));
        for _ in 0..SWEEP_EVERY {
            let _ = limiter.admit("steady");
        }
        let left = limiter.keys.len();
        assert!(left < 100, "{left} keys left");
    }
}
