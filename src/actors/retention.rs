//! Retention (off unless `retention_days` is set): finished tasks older than that are
//! archived, then deleted, a batch at a time. Each batch is appended to the day's archive,
//! `tasks-YYYY-MM-DD.jsonl.gz` (one gzip member per batch, so the file reads as one),
//! and synced before the delete is queued: a crash in between archives the batch again
//! next time rather than losing it. The delete is one write of at most
//! `retention_batch` tasks, so the writer is never held for long. The audit log is never
//! touched.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::Utc;
use flate2::write::GzEncoder;

use super::db_executor::DbExecutor;
use crate::db::{self, retention, ReadPool};
use crate::domain::iso;
use crate::error::HubError;
use crate::metrics::Metrics;
use crate::settings::Settings;

/// What one run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Archived {
    pub tasks: usize,
    pub file: Option<PathBuf>,
}

/// Archives and deletes every task finished more than `retention_days` ago.
pub async fn archive_old_tasks(
    db: DbExecutor,
    reads: ReadPool,
    settings: &Settings,
    metrics: &Metrics,
) -> Result<Archived, HubError> {
    let cutoff = iso(Utc::now() - chrono::Duration::days(settings.retention_days as i64));
    let file = settings
        .archive_dir()
        .join(format!("tasks-{}.jsonl.gz", Utc::now().format("%Y-%m-%d")));
    let (mut after, mut done) = (0, Archived::default());
    loop {
        let (batch_cutoff, limit) = (cutoff.clone(), settings.retention_batch);
        let (ids, lines) = db::read(&reads, move |conn| {
            let ids = retention::next_batch(conn, &batch_cutoff, after, limit)?;
            let lines = retention::archive_lines(conn, &ids)?;
            Ok((ids, lines))
        })
        .await?;
        let Some(&last) = ids.last() else {
            return Ok(done);
        };
        after = last;
        let target = file.clone();
        actix_web::web::block(move || append(&target, &lines))
            .await?
            .map_err(|e| HubError::internal(format!("cannot write the task archive: {e:#}")))?;
        let batch_cutoff = cutoff.clone();
        let deleted = db
            .write(move |conn| Ok(retention::delete(conn, &ids, &batch_cutoff)?))
            .await?;
        metrics.tasks_archived(deleted.len());
        done.tasks += deleted.len();
        done.file = Some(file.clone());
    }
}

/// Appends `lines` to `file` as one gzip member and syncs it.
fn append(file: &Path, lines: &[String]) -> anyhow::Result<()> {
    if let Some(dir) = file.parent() {
        db::files::create_private_dir(dir)?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(file)?;
    let mut gzip = GzEncoder::new(out, flate2::Compression::default());
    for line in lines {
        gzip.write_all(line.as_bytes())?;
        gzip.write_all(b"\n")?;
    }
    gzip.finish()?.sync_all()?;
    Ok(())
}
