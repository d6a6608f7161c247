//! Idempotent creates (issue 17): a create sent with `Idempotency-Key` records its answer
//! (status and body, sealed) in its own transaction. The same caller sending the same key
//! to the same route within `idempotency_retention_hours` gets that answer again, marked
//! `Idempotent-Replayed: true`, and nothing is created; the same key with a different body
//! is a 422 naming the key.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::Value;

use super::extract::IdempotencyKey;
use crate::crypto::Vault;
use crate::db::idempotency::{self, Claim};
use crate::domain::iso;
use crate::error::HubError;
use crate::startup::Hub;

/// The header a replayed answer carries.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";

/// One keyed create: its claim and the oldest record that still counts.
pub struct Idempotent {
    claim: Claim,
    since: String,
}

impl Idempotent {
    /// The keyed create of `caller` (a principal's label, or a peer) on `route`, if the
    /// request carried a key. Keys are the caller's own: another caller's is another key.
    pub fn of(hub: &Hub, caller: &str, route: &str, key: Option<IdempotencyKey>) -> Option<Self> {
        let key = key?;
        let hours = hub.core.settings.idempotency_retention_hours as i64;
        Some(Self {
            claim: Claim {
                scope: format!("{caller} {route}"),
                key: key.key,
                request_hash: key.request_hash,
            },
            since: iso(chrono::Utc::now() - chrono::Duration::hours(hours)),
        })
    }

    /// The key this create's relay to a peer carries: the same for every retry of it, and
    /// no other create's.
    pub fn relay_key(&self) -> String {
        crate::crypto::tokens::hash_bytes(
            format!("{}\n{}", self.claim.scope, self.claim.key).as_bytes(),
        )
    }

    /// The recorded answer when this key was used before with the same body; a 422 when
    /// it was used with another; `None` when it is new.
    pub async fn replay(&self, hub: &Hub) -> Result<Option<HttpResponse>, HubError> {
        let (claim, since) = (self.claim.clone(), self.since.clone());
        let Some(recorded) = crate::db::read(&hub.reads, move |conn| {
            Ok(idempotency::lookup(conn, &claim, &since)?)
        })
        .await?
        else {
            return Ok(None);
        };
        if recorded.request_hash != self.claim.request_hash {
            return Err(HubError::Unprocessable(format!(
                "Idempotency-Key {:?} was already used with a different request body",
                self.claim.key
            )));
        }
        let body = hub.core.vault.open(&recorded.response).ok_or_else(|| {
            HubError::internal("cannot open a recorded answer (key rotated away?)")
        })?;
        let status = StatusCode::from_u16(recorded.status as u16)
            .map_err(|e| HubError::internal(format!("a recorded status: {e}")))?;
        Ok(Some(
            HttpResponse::build(status)
                .insert_header((REPLAYED_HEADER, "true"))
                .content_type("application/json")
                .body(body.plaintext),
        ))
    }

    /// The write that records `answer` (made from what the create wrote) inside the
    /// create's transaction.
    pub fn recorder(
        &self,
        vault: Arc<Vault>,
        status: StatusCode,
    ) -> impl FnOnce(&mut crate::db::DbConnection, &Value) -> Result<(), HubError> + Send + 'static
    {
        let (claim, since) = (self.claim.clone(), self.since.clone());
        move |conn, answer| {
            let sealed = vault.seal(&answer.to_string());
            idempotency::record(conn, &claim, status.as_u16(), sealed, &since)
        }
    }
}

/// A keyed create's answer. A new key costs nothing beyond its record: the answer of one
/// used before is looked up only when the create fails, which it does at the key (or on
/// the way, when what it names changed since): then the recorded answer is given again
/// for the same body, a 422 for another, and the create's own error when the key is new.
pub async fn settle(
    hub: &Hub,
    idempotent: Option<&Idempotent>,
    answer: Result<HttpResponse, HubError>,
) -> Result<HttpResponse, HubError> {
    match (answer, idempotent) {
        (Err(error), Some(keyed)) => match keyed.replay(hub).await? {
            Some(replayed) => Ok(replayed),
            None => Err(error),
        },
        (answer, _) => answer,
    }
}
