//! Authentication: the credential index and the request extractors.
//!
//! The index maps SHA-256 token hashes to grants. It is loaded from the database at boot
//! and changed only after a token write commits, so a revocation takes effect on the very
//! next request and no request ever touches the database to authenticate.

use std::collections::{BTreeSet, HashMap};
use std::future::{ready, Ready};
use std::sync::{Arc, RwLock};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};

use crate::api::client;
use crate::crypto::tokens::{digests_match, token_digest};
use crate::db::models::TokenRow;
use crate::domain::access::Principal;
use crate::error::HubError;
use crate::settings::Secret;
use crate::startup::Hub;

/// What an issued token may do.
#[derive(Debug, Clone)]
pub struct Grant {
    pub agent_id: String,
    /// Shared with every principal built from this grant, so a request copies no list.
    pub permissions: Arc<BTreeSet<String>>,
}

impl Grant {
    pub fn from_row(row: &TokenRow) -> Self {
        let permissions: Vec<String> = serde_json::from_str(&row.permissions).unwrap_or_default();
        Self {
            agent_id: row.agent_id.clone(),
            permissions: Arc::new(permissions.into_iter().collect()),
        }
    }
}

/// A signed-in user's session (its cookie is stored as a SHA-256 hash only).
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: i32,
    pub grant: Grant,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// The cookie that carries a session.
pub const SESSION_COOKIE: &str = "m3shd_session";

pub struct Credentials {
    /// SHA-256 of the master token: each request hashes its credential once and compares
    /// digests in constant time.
    master: [u8; 32],
    tokens: RwLock<HashMap<String, Grant>>,
    sessions: RwLock<HashMap<String, Session>>,
}

impl Credentials {
    /// The index over the active (unrevoked) token rows.
    pub fn new(master: Secret, rows: Vec<TokenRow>, sessions: Vec<(String, Session)>) -> Self {
        let tokens = rows
            .iter()
            .filter(|row| row.revoked_at.is_none())
            .map(|row| (row.hash.clone(), Grant::from_row(row)))
            .collect();
        Self {
            master: token_digest(master.expose()),
            tokens: RwLock::new(tokens),
            sessions: RwLock::new(sessions.into_iter().collect()),
        }
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
            .cloned()?;
        Some(Principal::Token {
            agent_id: grant.agent_id,
            permissions: grant.permissions,
        })
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
        })
    }

    /// Records a committed session, forgetting every expired one on the way.
    pub fn open_session(&self, hash: String, session: Session) {
        let now = chrono::Utc::now();
        let mut sessions = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.expires_at > now);
        sessions.insert(hash, session);
    }

    /// Sessions held in memory (expired ones are dropped as sessions open).
    pub fn session_count(&self) -> usize {
        self.sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
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

/// The raw credential of a request: `Authorization: Bearer`, then `x-api-key`, then (only
/// where EventSource needs it) the `token` query parameter. The session cookie comes last.
fn presented(req: &HttpRequest, allow_query: bool) -> Option<String> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(bearer) = header("authorization").and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    }) {
        return Some(bearer.trim().to_string());
    }
    if let Some(key) = header("x-api-key") {
        return Some(key.to_string());
    }
    if allow_query {
        let query = web::Query::<HashMap<String, String>>::from_query(req.query_string()).ok()?;
        return query.get("token").cloned();
    }
    None
}

fn authenticate(req: &HttpRequest, allow_query: bool) -> Result<Option<Principal>, HubError> {
    let hub = req
        .app_data::<web::Data<Hub>>()
        .ok_or_else(|| HubError::internal("hub state missing"))?;
    match presented(req, allow_query) {
        // No header credential: a browser's session cookie, if it carries one.
        None => match req.cookie(SESSION_COOKIE) {
            Some(cookie) => {
                let principal = hub
                    .credentials
                    .session(cookie.value())
                    .ok_or(HubError::Unauthorized)?;
                // A cookie rides along on any site's request; only the hub's own pages write.
                if !client::same_site_write(req, &hub.core.settings) {
                    return Err(HubError::forbidden(
                        "a write signed in by cookie must come from the hub's own pages (Origin mismatch)",
                    ));
                }
                Ok(Some(principal))
            }
            None => Ok(None),
        },
        Some(raw) => hub
            .credentials
            .authenticate(&raw)
            .map(Some)
            .ok_or(HubError::Unauthorized),
    }
}

/// An authenticated caller; 401 without valid credentials.
pub struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = HubError;
    type Future = Ready<Result<Self, HubError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req, false).and_then(|p| p.map(Caller).ok_or(HubError::Unauthorized)))
    }
}

/// A caller who may be anonymous (the health check); a bad credential is still a 401.
pub struct MaybeCaller(pub Option<Principal>);

impl FromRequest for MaybeCaller {
    type Error = HubError;
    type Future = Ready<Result<Self, HubError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req, false).map(MaybeCaller))
    }
}

/// An authenticated caller of an SSE endpoint, where `?token=` is also accepted.
pub struct StreamCaller(pub Principal);

impl FromRequest for StreamCaller {
    type Error = HubError;
    type Future = Ready<Result<Self, HubError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            authenticate(req, true).and_then(|p| p.map(StreamCaller).ok_or(HubError::Unauthorized)),
        )
    }
}
