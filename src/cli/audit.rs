//! `m3shd audit export`: the whole audit log as JSON Lines, read page by page from
//! `GET /api/admin/audit` (newest first, as the hub lists it). `m3shd audit verify`: checks
//! the log's hash chain offline, in the database file (the hub may be stopped) or in an
//! export, and names the first row that breaks it.

use std::io::BufRead;
use std::path::PathBuf;

use clap::Subcommand;
use m3shd::db::{connect, redacted};
use m3shd::domain::audit::{AuditEntry, Break, ChainCheck};
use m3shd::settings::Database;
use serde::Serialize;
use serde_json::Value;

use super::{print, with_query, CliError, Hub, Remote};

/// Entries asked for per page: the most the hub answers at once.
const PAGE: u32 = 500;

#[derive(Subcommand)]
pub enum Action {
    /// Write every entry (or those matching) to standard output, one JSON object a line.
    Export(Filter),
    /// Check the hash chain of the log in a database file, or of an export (JSON Lines from
    /// GET /api/admin/audit/export, unfiltered); exit 1 at the first broken row.
    Verify(Verify),
}

#[derive(clap::Args)]
pub struct Verify {
    /// An export to check instead of a database.
    file: Option<PathBuf>,
    /// The database file to check (read only; the hub may be running or stopped).
    #[arg(long, env = "M3SHDUP_DATABASE_URL", default_value = "data/m3shd.db")]
    database_url: String,
}

#[derive(clap::Args, Serialize)]
pub struct Filter {
    /// Only entries by this actor (`master`, `agent:rex`, `user:fred`).
    #[arg(long)]
    actor: Option<String>,
    /// Only entries of this action (`token.issue`, `task.create`, …).
    #[arg(long)]
    action: Option<String>,
}

#[derive(Serialize)]
struct Page<'a> {
    #[serde(flatten)]
    filter: &'a Filter,
    limit: u32,
    offset: u32,
}

pub async fn run(remote: Remote, action: Action) -> Result<(), CliError> {
    match action {
        Action::Export(filter) => export(&Hub::connect(remote)?, filter).await,
        Action::Verify(verify) => {
            let outcome = match &verify.file {
                Some(file) => verify_export(file)?,
                None => verify_database(&verify.database_url)?,
            };
            match outcome {
                Ok(rows) => print(&format!("the audit chain holds: {rows} rows checked\n")),
                Err(broken) => Err(CliError::Broken(format!(
                    "the audit chain is broken: {broken}"
                ))),
            }
        }
    }
}

fn verify_database(url: &str) -> Result<Result<u64, Break>, CliError> {
    let database = Database::of(url);
    // Opening a missing file would create an empty database and "verify" it.
    if let Some(file) = database.sqlite_file() {
        if !std::path::Path::new(file).exists() {
            return Err(CliError::Usage(format!("no database at {file}")));
        }
    }
    let mut conn = connect(database)
        .map_err(|e| CliError::Usage(format!("cannot open {}: {e}", redacted(url))))?;
    m3shd::db::audit::verify(&mut conn)
        .map_err(|e| CliError::Usage(format!("cannot read {url}: {e}")))
}

fn verify_export(file: &std::path::Path) -> Result<Result<u64, Break>, CliError> {
    let reader = std::fs::File::open(file)
        .map(std::io::BufReader::new)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
    let mut check = ChainCheck::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: AuditEntry = serde_json::from_str(&line).map_err(|e| {
            CliError::Broken(format!("line {} is not an audit entry: {e}", number + 1))
        })?;
        if let Err(broken) = check.push(&entry) {
            return Ok(Err(broken));
        }
    }
    Ok(Ok(check.checked))
}

async fn export(hub: &Hub, filter: Filter) -> Result<(), CliError> {
    let mut offset = 0;
    // Entries logged during the export push older ones to later pages, so a page may
    // repeat entries already written: ids fall strictly, so anything not below the
    // last id written is such a repeat.
    let mut last_id = i64::MAX;
    loop {
        let page = Page {
            filter: &filter,
            limit: PAGE,
            offset,
        };
        let answer = hub.get(&with_query("/api/admin/audit", &page)?).await?;
        let entries = answer["entries"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut lines = String::new();
        for entry in entries {
            let id = entry["id"].as_i64().unwrap_or(i64::MIN);
            if id < last_id {
                last_id = id;
                lines.push_str(&format!("{}\n", Value::to_string(entry)));
            }
        }
        print(&lines)?;
        if entries.len() < PAGE as usize {
            return Ok(());
        }
        offset += PAGE;
    }
}
