//! The MESS event log (seed 003): every exchange event as JSON Lines under the data
//! directory, partitioned as the seed shows, `events/exchange={id}/YYYY/MM/DD/{uuid}.jsonl`,
//! and each executor's profile in `executors/exchange={id}/{executor}.json` (never a key),
//! so that the seed's DuckDB query reads it as written.
//!
//! The database is the source of truth: an event is a row written in the transaction of
//! the change it records, and this writer copies rows to files after the commit. Each
//! event is one file named by the event's UUID, written to a temporary name, synced and
//! renamed; the row is marked logged only after that. A crash in between rewrites the same
//! file under the same name at the next start: nothing is lost and nothing doubles.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

use crate::actors::db_executor::DbExecutor;
use crate::crypto::Vault;
use crate::db::exchange::{self, EventRow};
use crate::db::ReadPool;
use crate::domain::now_iso;

const BATCH: i64 = 500;
/// Looks for unlogged events this often even when not woken (a missed wake-up costs this).
const IDLE: Duration = Duration::from_secs(5);

/// Starts the writer on the current actix system; `woken` wakes it after each commit with
/// events.
pub fn start(woken: Arc<Notify>, db: DbExecutor, reads: ReadPool, vault: Arc<Vault>, dir: PathBuf) {
    actix_web::rt::spawn(async move {
        loop {
            while let Some(written) = write_batch(&db, &reads, &vault, &dir).await {
                if written < BATCH as usize {
                    break;
                }
            }
            let _ = tokio::time::timeout(IDLE, woken.notified()).await;
        }
    });
}

/// Copies one batch of unlogged events to files; how many, or `None` on a failure (logged;
/// the same events are tried again later).
async fn write_batch(
    db: &DbExecutor,
    reads: &ReadPool,
    vault: &Arc<Vault>,
    dir: &Path,
) -> Option<usize> {
    let events = match crate::db::read(reads, |conn| Ok(exchange::unlogged(conn, BATCH)?)).await {
        Ok(events) => events,
        Err(error) => {
            tracing::warn!(%error, "cannot read the exchange events to log");
            return None;
        }
    };
    if events.is_empty() {
        return Some(0);
    }
    let (dir, vault, batch) = (dir.to_path_buf(), vault.clone(), events.clone());
    let written = tokio::task::spawn_blocking(move || {
        batch
            .iter()
            .try_for_each(|event| write_event(&dir, &vault, event))
    })
    .await;
    if let Err(error) = written
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        tracing::warn!(%error, "cannot write the exchange event log");
        return None;
    }
    let ids: Vec<i32> = events.iter().map(|e| e.id).collect();
    let at = now_iso();
    match db
        .write(move |conn| Ok(exchange::mark_logged(conn, &ids, &at)?))
        .await
    {
        Ok(_) => Some(events.len()),
        Err(error) => {
            tracing::warn!(%error, "cannot mark exchange events as logged");
            None
        }
    }
}

/// Writes one event's file (and an executor's profile, for executor events).
fn write_event(dir: &Path, vault: &Vault, event: &EventRow) -> std::io::Result<()> {
    let mut line: Value = serde_json::from_str(&event.data).unwrap_or_default();
    let profile = line.as_object_mut().and_then(|o| o.remove("profile"));
    if let Some(content) = event.content.as_deref().and_then(|c| vault.open(c)) {
        line["content"] =
            serde_json::from_str(&content.plaintext).unwrap_or(Value::String(content.plaintext));
    }
    let day = event.at.get(..10).unwrap_or("0000-00-00").replace('-', "/");
    let folder = dir
        .join("events")
        .join(format!("exchange={}", event.exchange_id))
        .join(day);
    let mut text = line.to_string();
    text.push('\n');
    replace_file(&folder, &format!("{}.jsonl", event.uuid), text.as_bytes())?;
    if let (Some(profile), Some(executor)) = (profile, line["executor_id"].as_str()) {
        let folder = dir
            .join("executors")
            .join(format!("exchange={}", event.exchange_id));
        replace_file(
            &folder,
            &format!("{executor}.json"),
            profile.to_string().as_bytes(),
        )?;
    }
    Ok(())
}

/// Writes `name` in `folder` whole or not at all: a temporary file, synced, then renamed.
fn replace_file(folder: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(folder)?;
    let temporary = folder.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, folder.join(name))
}
