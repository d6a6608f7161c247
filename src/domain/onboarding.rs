//! Seed 002's rules for agents that join by onboarding: the runtime types a preregistration
//! names, the life of a preregistration (pending → approved | denied → activated, or
//! expired), the agent states an owner sets, the bindSecret check, the device-code polling
//! pace (RFC 8628's `slow_down`), and the consumer-lease fence.

use sha2::{Digest, Sha256};

use crate::error::HubError;

/// How the new agent runs.
pub const RUNTIME_TYPES: &[&str] = &["CLI", "DAEMON", "SDK", "MCP"];

/// Seconds the interval grows by each time a device polls too fast (RFC 8628, 3.5).
pub const SLOW_DOWN_STEP_SECONDS: i32 = 5;

/// Where a preregistration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreregistrationStatus {
    Pending,
    Approved,
    Denied,
    /// Finalized: the agent exists and its credentials were handed out.
    Activated,
}

impl PreregistrationStatus {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "activated" => Self::Activated,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Activated => "activated",
        }
    }

    /// What a poll answers: a pending or approved request past its time is `expired`;
    /// an activated one stays `approved` (its device was approved; the finalize is done).
    pub fn polled(self, expired: bool) -> &'static str {
        match self {
            Self::Pending | Self::Approved if expired => "expired",
            Self::Activated => "approved",
            other => other.as_str(),
        }
    }
}

/// An agent's lifecycle state, set by its owner (seed 002).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AgentState {
    #[default]
    Active,
    /// Keeps its credentials and its inbox; gets no new work.
    Paused,
    /// Its credentials are refused everywhere but `/api/v1/runtime/me`.
    Suspended,
    /// Its credentials are refused.
    Banned,
}

impl AgentState {
    pub const NAMES: &'static str = "ACTIVE, PAUSED, SUSPENDED or BANNED";

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "ACTIVE" => Self::Active,
            "PAUSED" => Self::Paused,
            "SUSPENDED" => Self::Suspended,
            "BANNED" => Self::Banned,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Paused => "PAUSED",
            Self::Suspended => "SUSPENDED",
            Self::Banned => "BANNED",
        }
    }

    /// Whether the Dispatcher may give the agent new work.
    pub fn gets_work(self) -> bool {
        self == Self::Active
    }

    /// Whether the agent's credentials are accepted on a route; `describes_self` is
    /// `/api/v1/runtime/me`, which seed 002 leaves open to a suspended agent.
    pub fn accepts_credentials(self, describes_self: bool) -> bool {
        match self {
            Self::Active | Self::Paused => true,
            Self::Suspended => describes_self,
            Self::Banned => false,
        }
    }
}

/// The stored form of a bindSecret: its SHA-256 hex.
pub fn bind_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Seed 002's finalize check, `sent === stored || sha256(sent) === stored`, on a store that
/// keeps only `sha256(stored)`: true when `sent` is the secret given at preregistration or
/// a preimage of it.
pub fn bind_matches(sent: &str, stored_hash: &str) -> bool {
    let once = Sha256::digest(sent.as_bytes());
    let twice = Sha256::digest(hex::encode(once).as_bytes());
    let stored = hex::decode(stored_hash).unwrap_or_default();
    let equal =
        |digest: &[u8]| -> bool { subtle::ConstantTimeEq::ct_eq(digest, &stored[..]).into() };
    equal(&once) | equal(&twice)
}

/// A verification code as the hub stores and looks it up: letters upper-cased, dashes and
/// spaces dropped, so `wdjb-mjht` and `WDJBMJHT` name the same request.
pub fn normalized_code(code: &str) -> String {
    code.chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The device's polling pace (RFC 8628, 3.5): a poll sooner than `interval` seconds after
/// the last one is told to slow down, and the interval grows by five seconds.
pub fn poll_pace(
    last_polled: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
    interval: i32,
) -> Result<(), i32> {
    match last_polled {
        Some(last) if (now - last).num_milliseconds() < i64::from(interval) * 1000 => {
            Err(interval + SLOW_DOWN_STEP_SECONDS)
        }
        _ => Ok(()),
    }
}

/// What an agent's write presents to the consumer-lease fence: whose write it is and the
/// `X-Consumer-Id` it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerFence {
    pub agent_id: String,
    pub consumer_id: Option<String>,
}

/// The consumer-lease fence of an agent's write: the lease the agent holds (its consumer
/// id, and whether it is still live) against the `X-Consumer-Id` the write carries.
pub fn fence(lease: Option<(&str, bool)>, presented: Option<&str>) -> Result<(), HubError> {
    match (lease, presented) {
        (Some((holder, true)), Some(sent)) if holder == sent => Ok(()),
        (_, Some(_)) => Err(HubError::conflict("stale consumer")),
        (Some((_, true)), None) => Err(HubError::conflict(
            "consumer lease required: this agent pulls its inbox under a consumer lease, so its writes carry X-Consumer-Id",
        )),
        (_, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_or_a_preimage_of_it_binds() {
        let stored = bind_hash("opaque-1");
        assert!(bind_matches("opaque-1", &stored));
        assert!(!bind_matches("opaque-2", &stored));
        // A client that registered sha256(x) may finalize with x.
        let hashed = bind_hash("x");
        assert!(bind_matches("x", &bind_hash(&hashed)));
        assert!(!bind_matches("", &stored));
    }

    #[test]
    fn polling_faster_than_the_interval_slows_down() {
        let now = chrono::Utc::now();
        assert_eq!(poll_pace(None, now, 5), Ok(()));
        assert_eq!(
            poll_pace(Some(now - chrono::Duration::seconds(6)), now, 5),
            Ok(())
        );
        assert_eq!(
            poll_pace(Some(now - chrono::Duration::seconds(2)), now, 5),
            Err(10)
        );
    }

    #[test]
    fn the_fence_admits_only_the_live_holder() {
        assert!(fence(None, None).is_ok());
        assert!(fence(Some(("c1", true)), Some("c1")).is_ok());
        assert!(fence(Some(("c1", true)), Some("c0")).is_err());
        assert!(fence(Some(("c1", false)), Some("c1")).is_err());
        assert!(fence(None, Some("c1")).is_err());
        assert!(fence(Some(("c1", true)), None).is_err());
        assert!(fence(Some(("c1", false)), None).is_ok());
    }

    #[test]
    fn states_gate_work_and_credentials() {
        assert!(AgentState::Active.gets_work());
        assert!(!AgentState::Paused.gets_work());
        assert!(AgentState::Paused.accepts_credentials(false));
        assert!(!AgentState::Suspended.accepts_credentials(false));
        assert!(AgentState::Suspended.accepts_credentials(true));
        assert!(!AgentState::Banned.accepts_credentials(true));
        assert_eq!(AgentState::parse("PAUSED"), Some(AgentState::Paused));
        assert_eq!(AgentState::parse("paused"), None);
    }

    #[test]
    fn codes_normalize() {
        assert_eq!(normalized_code("wdjb-mjht"), "WDJBMJHT");
        assert_eq!(PreregistrationStatus::Pending.polled(true), "expired");
        assert_eq!(PreregistrationStatus::Denied.polled(true), "denied");
    }
}
