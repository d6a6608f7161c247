//! The request extractors: who is calling, from `Authorization: Bearer`, `x-api-key`, the
//! session cookie, or (on streams only) `?token=`, checked against the credential index.

use std::collections::HashMap;
use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};

use super::client;
use crate::actors::agent::Heartbeat;
use crate::domain::access::Principal;
use crate::error::HubError;
use crate::startup::Hub;

/// The cookie that carries a session.
pub const SESSION_COOKIE: &str = "m3shd_session";
/// The same session under the name Mission Control's dashboard uses (seed 004).
const MC_SESSION_COOKIE: &str = "mc-session";

/// The raw credential of a request: `Authorization: Bearer`, then `x-api-key`, then (only
/// where EventSource needs it) the `token` query parameter. The session cookie comes last.
pub(super) fn presented(req: &HttpRequest, allow_query: bool) -> Option<String> {
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

/// The session cookie's value, under the hub's name or Mission Control's.
pub(super) fn session_cookie(req: &HttpRequest) -> Option<String> {
    req.cookie(SESSION_COOKIE)
        .or_else(|| req.cookie(MC_SESSION_COOKIE))
        .map(|cookie| cookie.value().to_string())
}

fn authenticate(req: &HttpRequest, allow_query: bool) -> Result<Option<Principal>, HubError> {
    let hub = req
        .app_data::<web::Data<Hub>>()
        .ok_or_else(|| HubError::internal("hub state missing"))?;
    match presented(req, allow_query) {
        // No header credential: a browser's session cookie, if it carries one.
        None => match session_cookie(req) {
            Some(cookie) => {
                let principal = hub
                    .credentials
                    .session(&cookie)
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
        Some(raw) => {
            let principal = hub
                .credentials
                .authenticate(&raw)
                .ok_or(HubError::Unauthorized)?;
            refuse_by_state(hub, &principal, req.path())?;
            refuse_outside_exchange(&principal, req.path())?;
            // Any call an agent makes with its own token (one that may heartbeat as it) shows
            // it is alive; a viewer's or commander's key bound to the same name does not.
            let own_agent = principal.own_agent().and_then(|id| hub.directory.agent(id));
            if let Some(agent) = own_agent {
                agent.do_send(Heartbeat);
            }
            Ok(Some(principal))
        }
    }
}

/// The path on which seed 002 still hears a suspended agent: it may describe itself.
pub const SELF_DESCRIPTION_PATH: &str = "/api/v1/runtime/me";

/// 403 when the agent a token belongs to is in a state that refuses its credentials here
/// (suspended: everywhere but its self-description; banned: everywhere).
fn refuse_by_state(hub: &Hub, principal: &Principal, path: &str) -> Result<(), HubError> {
    let Some(agent_id) = principal.confined_to() else {
        return Ok(());
    };
    match hub.credentials.refusing_state(agent_id) {
        Some(state) if !state.accepts_credentials(path == SELF_DESCRIPTION_PATH) => {
            Err(HubError::forbidden(format!(
                "agent {agent_id} is {}: its credentials are refused",
                state.as_str()
            )))
        }
        _ => Ok(()),
    }
}

/// A MESS key works under its own exchange's paths only (seed 003).
fn refuse_outside_exchange(principal: &Principal, path: &str) -> Result<(), HubError> {
    let Some(exchange) = principal.exchange_key() else {
        return Ok(());
    };
    let own = format!("/api/v1/exchanges/{exchange}/");
    if path.starts_with(&own) {
        Ok(())
    } else {
        Err(HubError::forbidden(format!(
            "a MESS key of exchange {exchange} works only under {own}"
        )))
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
