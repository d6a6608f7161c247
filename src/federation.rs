//! Federation: hubs that exchange tasks. A peer is registered on both sides with one shared
//! token (stored sealed, compared in constant time). A task no local agent can ever serve
//! may be relayed to a peer (`federation_relay`); the peer runs it and, when it finishes,
//! posts the result back, which completes the original task here. A relayed task carries a
//! hop count and is refused beyond `federation_max_hops` (loop protection).

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::actors::FinishedTasks;
use crate::crypto::tokens::{digests_match, token_digest};
use crate::crypto::Vault;
use crate::db::schema::{peers, relays};
use crate::db::{queries, ReadPool};
use crate::error::HubError;
use crate::metrics::Metrics;

/// The header a peer's shared token travels in.
pub const TOKEN_HEADER: &str = "X-Federation-Token";
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = peers, check_for_backend(diesel::sqlite::Sqlite))]
pub struct PeerRow {
    pub name: String,
    pub url: String,
    /// Fernet token; open it with the Vault.
    pub token: String,
    pub created_by: String,
    pub created_at: String,
    pub last_seen_at: Option<String>,
    pub last_latency_ms: Option<i32>,
}

pub fn all_peers(conn: &mut SqliteConnection) -> QueryResult<Vec<PeerRow>> {
    peers::table
        .select(PeerRow::as_select())
        .order(peers::name)
        .load(conn)
}

/// The peer whose shared token this is, compared in constant time against every peer.
pub fn peer_with_token<'a>(
    peers: &'a [PeerRow],
    vault: &Vault,
    given: &str,
) -> Option<&'a PeerRow> {
    let given = token_digest(given);
    let mut found = None;
    for peer in peers {
        let Some(token) = vault.open(&peer.token) else {
            continue;
        };
        if digests_match(&given, &token_digest(&token.plaintext)) {
            found = Some(peer);
        }
    }
    found
}

/// Calls a peer: `path` on its URL with its token; the JSON answer, or why not.
pub async fn call_peer(
    peer: &PeerRow,
    vault: &Vault,
    method: awc::http::Method,
    path: &str,
    body: Option<&Value>,
    idempotency_key: Option<&str>,
) -> Result<Value, String> {
    let token = vault
        .open(&peer.token)
        .ok_or("the peer's token is unreadable")?
        .plaintext;
    let mut request = awc::Client::builder()
        .timeout(TIMEOUT)
        .finish()
        .request(method, format!("{}{path}", peer.url.trim_end_matches('/')))
        .insert_header((TOKEN_HEADER, token));
    if let Some(key) = idempotency_key {
        request = request.insert_header(("Idempotency-Key", key.to_string()));
    }
    let sent = match body {
        Some(body) => request.send_body(body.to_string()).await,
        None => request.send().await,
    };
    let mut response = sent.map_err(|e| e.to_string())?;
    let bytes = response.body().await.map_err(|e| e.to_string())?;
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if response.status().is_success() {
        Ok(value)
    } else {
        Err(format!(
            "{}: {}",
            response.status(),
            value["error"].as_str().unwrap_or("")
        ))
    }
}

/// Starts, on the current actix system, the sender that reports the results of finished
/// tasks a peer relayed here back to that peer; a TaskActor sends the id of each such task
/// after the commit that finished it. `metrics` counts the ids waiting here.
pub fn report_results(reads: ReadPool, vault: Arc<Vault>, metrics: Metrics) -> FinishedTasks {
    let (queue, mut finished) = mpsc::unbounded_channel();
    actix_web::rt::spawn(async move {
        while let Some(task_id) = finished.recv().await {
            report_result(&reads, &vault, task_id).await;
            metrics.federation_result_sent();
        }
    });
    queue
}

/// Reports one finished task's result to the peer that relayed it here, if one did.
async fn report_result(reads: &ReadPool, vault: &Vault, task_id: i32) {
    let found = crate::db::read(reads, move |conn| {
        let peer: Option<String> = relays::table
            .find((task_id, "inbound"))
            .select(relays::peer)
            .get_result(conn)
            .optional()?;
        let Some(peer) = peer else { return Ok(None) };
        let peer = peers::table
            .find(&peer)
            .select(PeerRow::as_select())
            .get_result(conn)
            .optional()?;
        Ok(peer.zip(queries::task(conn, task_id)?))
    })
    .await;
    let (peer, task) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(task.id = task_id, %error, "cannot read a relayed task's result");
            return;
        }
    };
    let output = task
        .output
        .as_deref()
        .and_then(|o| vault.open(o))
        .map(|o| o.plaintext);
    let body = json!({ "task_id": task_id, "status": task.status, "output": output, "reason": task.reason });
    for attempt in 1..=3u64 {
        match call_peer(
            &peer,
            vault,
            awc::http::Method::POST,
            "/api/federation/results",
            Some(&body),
            None,
        )
        .await
        {
            Ok(_) => break,
            Err(why) => {
                tracing::warn!(task.id = task_id, peer = %peer.name, attempt, error = %why, "cannot report a relayed task's result");
                actix_web::rt::time::sleep(Duration::from_secs(attempt)).await;
            }
        }
    }
}

/// 401 unless `given` is a registered peer's token; the peer otherwise.
pub async fn authenticate(
    reads: &ReadPool,
    vault: &Vault,
    given: Option<&str>,
) -> Result<PeerRow, HubError> {
    let given = given.ok_or(HubError::Unauthorized)?;
    let peers = crate::db::read(reads, |conn| Ok(all_peers(conn)?)).await?;
    peer_with_token(&peers, vault, given)
        .cloned()
        .ok_or(HubError::Unauthorized)
}
