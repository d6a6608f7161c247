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

use awc::http::Method;

use crate::actors::db_executor::DbExecutor;
use crate::actors::FinishedTasks;
use crate::crypto::tokens::{digests_match, token_digest};
use crate::crypto::Vault;
use crate::db::schema::{peers, relays, tasks};
use crate::db::{queries, DbConnection, ReadPool};
use crate::domain::now_iso;
use crate::error::HubError;
use crate::metrics::Metrics;

/// The header a peer's shared token travels in.
pub const TOKEN_HEADER: &str = "X-Federation-Token";
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = peers, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
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

pub fn all_peers(conn: &mut DbConnection) -> QueryResult<Vec<PeerRow>> {
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

/// Why a call to a peer did not succeed: its refusal (with the status), or no answer.
#[derive(Debug)]
pub struct PeerError {
    /// The peer's status when it answered.
    pub status: Option<u16>,
    pub message: String,
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl PeerError {
    fn unanswered(why: impl ToString) -> Self {
        Self {
            status: None,
            message: why.to_string(),
        }
    }
}

/// Calls a peer: `path` on its URL with its token; the JSON answer, or why not.
pub async fn call_peer(
    peer: &PeerRow,
    vault: &Vault,
    method: awc::http::Method,
    path: &str,
    body: Option<&Value>,
    idempotency_key: Option<&str>,
) -> Result<Value, PeerError> {
    let token = vault
        .open(&peer.token)
        .ok_or_else(|| PeerError::unanswered("the peer's token is unreadable"))?
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
    let mut response = sent.map_err(PeerError::unanswered)?;
    let bytes = response.body().await.map_err(PeerError::unanswered)?;
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let status = response.status();
    if status.is_success() {
        Ok(value)
    } else {
        Err(PeerError {
            status: Some(status.as_u16()),
            message: format!("{status}: {}", value["error"].as_str().unwrap_or("")),
        })
    }
}

/// Starts, on the current actix system, the outbox sender: it reports the result of each
/// finished task a peer relayed here back to that peer. A TaskActor sends the id of each
/// such task after the commit that finished it; results a previous run left unsent are
/// queued at start. A result the peer does not take is tried again after a growing wait
/// (at most `retry_max`), for as long as it takes. `metrics` counts the results waiting.
/// `finished` is the receiving end of [`crate::actors::Core::finished_tasks`], `queue` its
/// sending end (for the retries).
pub fn report_results(
    (queue, mut finished): (FinishedTasks, mpsc::UnboundedReceiver<i32>),
    db: DbExecutor,
    reads: ReadPool,
    vault: Arc<Vault>,
    metrics: Metrics,
    retry_max: Duration,
) {
    let again = queue;
    actix_web::rt::spawn(async move {
        match crate::db::read(&reads, |conn| Ok(unsent_results(conn)?)).await {
            Ok(unsent) => {
                for task_id in unsent {
                    metrics.federation_result_queued();
                    let _ = again.send(task_id);
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read the unsent federation results"),
        }
        while let Some(task_id) = finished.recv().await {
            match report_result(&db, &reads, &vault, task_id).await {
                Some(attempts) => {
                    let wait = Duration::from_secs(1 << attempts.clamp(0, 16)).min(retry_max);
                    let again = again.clone();
                    actix_web::rt::spawn(async move {
                        actix_web::rt::time::sleep(wait).await;
                        let _ = again.send(task_id);
                    });
                }
                None => metrics.federation_result_sent(),
            }
        }
    });
}

/// The tasks whose result is still owed to the peer that relayed them here.
fn unsent_results(conn: &mut DbConnection) -> QueryResult<Vec<i32>> {
    owed()
        .select(relays::task_id)
        .order(relays::task_id)
        .load(conn)
}

/// Per peer, how many results are still owed to it.
pub fn results_waiting(
    conn: &mut DbConnection,
) -> QueryResult<std::collections::HashMap<String, i64>> {
    let counts: Vec<(String, i64)> = owed()
        .group_by(relays::peer)
        .select((relays::peer, diesel::dsl::count_star()))
        .load(conn)?;
    Ok(counts.into_iter().collect())
}

/// Inbound relays whose task finished and whose result is not delivered yet.
#[diesel::dsl::auto_type(no_type_alias)]
fn owed() -> _ {
    let finished: [&'static str; 3] = ["done", "failed", "cancelled"];
    let inbound: &'static str = "inbound";
    relays::table
        .inner_join(tasks::table.on(tasks::id.eq(relays::task_id)))
        .filter(relays::direction.eq(inbound))
        .filter(relays::result_sent_at.is_null())
        .filter(tasks::status.eq_any(finished))
}

/// Reports one finished task's result to the peer that relayed it here, if one did and it
/// is still owed. `None` when nothing more is to be done; the attempts so far when the
/// peer did not take it and it should be tried again.
async fn report_result(
    db: &DbExecutor,
    reads: &ReadPool,
    vault: &Vault,
    task_id: i32,
) -> Option<i32> {
    let found = crate::db::read(reads, move |conn| {
        let owed: Option<(String, i32)> = relays::table
            .find((task_id, "inbound"))
            .filter(relays::result_sent_at.is_null())
            .select((relays::peer, relays::result_attempts))
            .get_result(conn)
            .optional()?;
        let Some((peer, attempts)) = owed else {
            return Ok(None);
        };
        let peer_row = peers::table
            .find(&peer)
            .select(PeerRow::as_select())
            .get_result(conn)
            .optional()?;
        Ok(Some((
            peer,
            attempts,
            peer_row,
            queries::task(conn, task_id)?,
        )))
    })
    .await;
    let (peer, attempts, peer_row, task) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return None,
        Err(error) => {
            tracing::warn!(task.id = task_id, %error, "cannot read a relayed task's result");
            return Some(0);
        }
    };
    let delivery = match (peer_row, task) {
        (Some(peer_row), Some(task)) => {
            let output = task
                .output
                .as_deref()
                .and_then(|o| vault.open(o))
                .map(|o| o.plaintext);
            let body = json!({ "task_id": task_id, "status": task.status, "output": output, "reason": task.reason });
            let path = "/api/federation/results";
            call_peer(&peer_row, vault, Method::POST, path, Some(&body), None).await
        }
        _ => Err(PeerError {
            status: Some(404),
            message: "the peer or the task is gone".into(),
        }),
    };
    // Delivered, or refused for good (the peer no longer knows the task, or already has
    // its result): settled. Anything else is tried again.
    let (settled, error) = match &delivery {
        Ok(_) => (true, None),
        Err(why) if matches!(why.status, Some(404 | 409)) => {
            tracing::warn!(task.id = task_id, %peer, error = %why, "the peer refused a relayed task's result for good");
            (true, Some(why.to_string()))
        }
        Err(why) => {
            tracing::warn!(task.id = task_id, %peer, attempt = attempts + 1, error = %why, "a relayed task's result is not delivered yet; it will be tried again");
            (false, Some(why.to_string()))
        }
    };
    let recorded = db
        .write(move |conn| {
            diesel::update(relays::table.find((task_id, "inbound")))
                .set((
                    relays::result_sent_at.eq(settled.then(now_iso)),
                    relays::result_attempts.eq(relays::result_attempts + 1),
                    relays::result_error.eq(error),
                ))
                .execute(conn)?;
            Ok(())
        })
        .await;
    if let Err(error) = &recorded {
        tracing::warn!(task.id = task_id, %error, "cannot record a result's attempt");
    }
    // A settled result not recorded as such is sent again; the peer refuses the copy.
    (!settled || recorded.is_err()).then_some(attempts + 1)
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
