//! The credential index: SHA-256 token hashes and session hashes mapped to what they may
//! do. It is loaded from the database at boot and changed only after a token or session
//! write commits, so a revocation takes effect on the very next request and no request
//! ever touches the database to authenticate.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use super::access::Principal;
use super::onboarding::AgentState;
use crate::crypto::tokens::{digests_match, token_digest};
use crate::settings::Secret;

/// What an issued token may do.
#[derive(Debug, Clone)]
pub struct Grant {
    pub agent_id: String,
    /// Shared with every principal built from this grant, so a request copies no list.
    pub permissions: Arc<BTreeSet<String>>,
}

/// A signed-in user's session (its cookie is stored as a SHA-256 hash only).
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: i32,
    pub grant: Grant,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

pub struct Credentials {
    /// SHA-256 of the master token: each request hashes its credential once and compares
    /// digests in constant time.
    master: [u8; 32],
    tokens: RwLock<HashMap<String, Grant>>,
    sessions: RwLock<HashMap<String, Session>>,
    /// Agents whose state refuses their credentials (suspended or banned); every other
    /// agent's are accepted.
    refusing: RwLock<HashMap<String, AgentState>>,
}

impl Credentials {
    /// The index over active tokens (hash → grant), live sessions (hash → session) and
    /// the agents' states.
    pub fn new(
        master: Secret,
        tokens: Vec<(String, Grant)>,
        sessions: Vec<(String, Session)>,
        states: Vec<(String, AgentState)>,
    ) -> Self {
        let credentials = Self {
            master: token_digest(master.expose()),
            tokens: RwLock::default(),
            sessions: RwLock::default(),
            refusing: RwLock::default(),
        };
        credentials.replace(tokens, sessions, states);
        credentials
    }

    /// Replaces the whole index with what the database holds now (a follower's, kept
    /// current this way, and a process that takes over the leadership).
    pub fn replace(
        &self,
        tokens: Vec<(String, Grant)>,
        sessions: Vec<(String, Session)>,
        states: Vec<(String, AgentState)>,
    ) {
        // Built whole first, then swapped: no request sees a half-made index (a suspended
        // agent briefly accepted).
        let refusing = states
            .into_iter()
            .filter(|(_, state)| !state.accepts_credentials(false))
            .collect();
        *self.refusing.write().unwrap_or_else(|e| e.into_inner()) = refusing;
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = tokens.into_iter().collect();
        *self.sessions.write().unwrap_or_else(|e| e.into_inner()) = sessions.into_iter().collect();
    }

    /// Records an agent's committed state.
    pub fn set_state(&self, agent_id: &str, state: AgentState) {
        let mut refusing = self.refusing.write().unwrap_or_else(|e| e.into_inner());
        if state.accepts_credentials(false) {
            refusing.remove(agent_id);
        } else {
            refusing.insert(agent_id.to_string(), state);
        }
    }

    /// The state of `agent_id` when it refuses the agent's credentials on some routes.
    pub fn refusing_state(&self, agent_id: &str) -> Option<AgentState> {
        self.refusing
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(agent_id)
            .copied()
    }

    /// The principal a raw credential stands for, if any.
    pub fn authenticate(&self, raw: &str) -> Option<Principal> {
        let digest = token_digest(raw);
        if digests_match(&digest, &self.master) {
            return Some(Principal::Master);
        }
        let hash = hex::encode(digest);
        let grant = self
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .cloned();
        match grant {
            Some(grant) => Some(Principal::Token {
                agent_id: grant.agent_id,
                permissions: grant.permissions,
                person: false,
            }),
            // A person's bearer token from `POST /api/login` is a session too.
            None => self.session(raw),
        }
    }

    /// Records a committed grant (new token or changed permissions).
    pub fn grant(&self, hash: String, grant: Grant) {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hash, grant);
    }

    /// The principal of a live session cookie, if any. An expired session is forgotten.
    pub fn session(&self, cookie: &str) -> Option<Principal> {
        let hash = hex::encode(token_digest(cookie));
        let session = self
            .sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .cloned()?;
        if session.expires_at <= chrono::Utc::now() {
            self.close_session(&hash);
            return None;
        }
        Some(Principal::Token {
            agent_id: session.grant.agent_id,
            permissions: session.grant.permissions,
            person: true,
        })
    }

    /// Records a committed session, forgetting every expired one on the way.
    pub fn open_session(&self, hash: String, session: Session) {
        let now = chrono::Utc::now();
        let mut sessions = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.expires_at > now);
        sessions.insert(hash, session);
    }

    /// Forgets a session (logout).
    pub fn close_session(&self, hash: &str) {
        self.sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(hash);
    }

    /// Forgets every session of a user (disabled, deleted, new password or role).
    pub fn close_user_sessions(&self, user_id: i32) {
        self.sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, s| s.user_id != user_id);
    }

    /// Forgets a committed revocation.
    pub fn revoke(&self, hash: &str) {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(hash);
    }
}
