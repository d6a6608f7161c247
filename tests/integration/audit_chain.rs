//! The audit log as a hash chain (seed 001's archived, tamper-evident log): every row
//! chained in its own transaction, the JSON Lines export with the chain (filtered by time
//! and action, `?token=` for a download link), and `m3shd audit verify` catching an edit, a
//! deletion and a reordering, in the database and in an export.

use diesel::RunQueryDsl;
use serde_json::{json, Value};

use crate::support::process::{audit_verify as verify, m3shd};
use crate::support::{TestHub, MASTER};

/// A hub with a dozen audited changes behind it.
async fn busy_hub() -> TestHub {
    let hub = TestHub::spawn().await;
    for n in 0..4 {
        hub.token(&format!("agent-{n}"), "worker").await;
        hub.task(
            json!({ "title": format!("t{n}"), "prompt": "p", "required_capability": "nobody" }),
        )
        .await;
    }
    hub
}

/// A copy of the hub's database to tamper with (the running hub keeps writing its own).
fn copy_of(hub: &TestHub, name: &str) -> String {
    hub.copy_database(&hub.dir.path().join(name))
}

fn tamper(db: &str, sql: &str) {
    let mut conn = crate::support::open_database(db);
    diesel::sql_query(sql)
        .execute(&mut conn)
        .expect("the tampering runs");
}

async fn export(hub: &TestHub, query: &str) -> Vec<Value> {
    let client = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .finish();
    let mut response = client
        .get(format!(
            "{}/api/admin/audit/export?token={MASTER}{query}",
            hub.base
        ))
        .send()
        .await
        .expect("the export answers");
    assert_eq!(response.status(), 200);
    let body = response.body().limit(64 * 1024 * 1024).await.expect("body");
    String::from_utf8(body.to_vec())
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

fn write_lines(hub: &TestHub, name: &str, lines: &[Value]) -> String {
    let path = hub.dir.path().join(name);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).expect("the export is written");
    path.to_string_lossy().into_owned()
}

#[actix_web::test]
async fn the_database_chain_holds_and_an_edit_a_deletion_or_a_reordering_is_caught() {
    let hub = busy_hub().await;
    let clean = copy_of(&hub, "clean.db");
    let (ok, said) = verify(&["--database-url", &clean]).await;
    assert!(ok, "{said}");
    assert!(said.contains("holds"), "{said}");

    let edited = copy_of(&hub, "edited.db");
    tamper(
        &edited,
        "UPDATE audit_log SET actor = 'nobody-did-this' WHERE id = 3",
    );
    let (ok, said) = verify(&["--database-url", &edited]).await;
    assert!(!ok && said.contains("row 3 was changed"), "{said}");

    let deleted = copy_of(&hub, "deleted.db");
    tamper(&deleted, "DELETE FROM audit_log WHERE id = 4");
    let (ok, said) = verify(&["--database-url", &deleted]).await;
    assert!(
        !ok && said.contains("row 5 does not follow row 3"),
        "{said}"
    );

    // Two rows swap places, hashes and all: a row's place (its id) is part of its hash.
    let reordered = copy_of(&hub, "reordered.db");
    tamper(
        &reordered,
        "UPDATE audit_log SET id = CASE id WHEN 5 THEN -6 WHEN 6 THEN -5 END WHERE id IN (5, 6)",
    );
    tamper(&reordered, "UPDATE audit_log SET id = -id WHERE id < 0");
    let (ok, said) = verify(&["--database-url", &reordered]).await;
    assert!(!ok && said.contains("row 5 "), "{said}");

    let (ok, said) = verify(&["--database-url", "/nonexistent/m3shd.db"]).await;
    assert!(!ok && said.contains("no database"), "{said}");
}

#[actix_web::test]
async fn an_export_carries_the_chain_and_tampering_with_it_is_caught() {
    let hub = busy_hub().await;
    let lines = export(&hub, "").await;
    assert!(lines.len() >= 8, "{lines:?}");
    assert_eq!(
        lines[0]["prev_hash"],
        "0".repeat(64),
        "the first row starts the chain"
    );
    assert!(lines.windows(2).all(|w| w[1]["prev_hash"] == w[0]["hash"]));
    assert!(
        lines
            .windows(2)
            .all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64()),
        "oldest first"
    );
    let (ok, said) = verify(&[&write_lines(&hub, "export.jsonl", &lines)]).await;
    assert!(ok, "{said}");

    let mut edited = lines.clone();
    edited[2]["detail"] = json!({ "role": "admin" });
    let (ok, said) = verify(&[&write_lines(&hub, "edited.jsonl", &edited)]).await;
    assert!(
        !ok && said.contains(&format!("row {} was changed", lines[2]["id"])),
        "{said}"
    );

    let mut deleted = lines.clone();
    deleted.remove(3);
    let (ok, said) = verify(&[&write_lines(&hub, "deleted.jsonl", &deleted)]).await;
    assert!(!ok && said.contains("does not follow"), "{said}");

    let mut reordered = lines.clone();
    reordered.swap(4, 5);
    let (ok, said) = verify(&[&write_lines(&hub, "reordered.jsonl", &reordered)]).await;
    assert!(!ok && said.contains("does not follow"), "{said}");
}

#[actix_web::test]
async fn the_export_filters_by_action_and_time_and_refuses_a_bad_time() {
    let hub = busy_hub().await;
    let issued = export(&hub, "&action=token.issue").await;
    assert_eq!(issued.len(), 4);
    assert!(issued.iter().all(|l| l["action"] == "token.issue"));
    let all = export(&hub, "").await;
    let middle = all[all.len() / 2]["at"].as_str().unwrap().to_string();
    let since = export(&hub, &format!("&since={middle}")).await;
    let until = export(&hub, &format!("&until={middle}")).await;
    assert!(since
        .iter()
        .all(|l| l["at"].as_str().unwrap() >= middle.as_str()));
    assert!(until
        .iter()
        .all(|l| l["at"].as_str().unwrap() < middle.as_str()));
    assert_eq!(since.len() + until.len(), all.len());
    let refused = hub
        .get("/api/admin/audit/export?since=yesterday", MASTER)
        .await
        .expect(400);
    assert!(
        refused["error"].as_str().unwrap().contains("since"),
        "{refused}"
    );
    // A download link carries the token in the query; a viewer's holds no admin:audit.
    let viewer = hub.token("vic", "viewer").await;
    let refused = awc::Client::new()
        .get(format!(
            "{}/api/admin/audit/export?token={viewer}",
            hub.base
        ))
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), 403);
}

/// A busy hub's database changed by `sql`, checked before and after a hub restarts on it
/// (and writes one more row): what `m3shd audit verify` says each time.
async fn verified_around_a_restart(sql: &str) -> ((bool, String), (bool, String)) {
    let hub = busy_hub().await;
    let dir = tempfile::tempdir().unwrap();
    hub.snapshot_into(dir.path());
    let db = crate::support::database_url(dir.path());
    tamper(&db, sql);
    let before = verify(&["--database-url", &db]).await;
    let settings = crate::support::test_settings(dir.path());
    let again = TestHub::start(dir, settings, "test-encryption-key", None).await;
    again.token("after-restart", "worker").await;
    let copy = copy_of(&again, "after-restart.db");
    (before, verify(&["--database-url", &copy]).await)
}

#[actix_web::test]
async fn rows_written_before_the_chain_are_chained_when_the_hub_starts() {
    // As an older hub left them: no chain at all.
    let ((ok, said), after) =
        verified_around_a_restart("UPDATE audit_log SET prev_hash = NULL, hash = NULL").await;
    assert!(!ok && said.contains("has no hash"), "{said}");
    assert!(after.0, "{}", after.1);
}

#[actix_web::test]
async fn a_restart_never_blesses_an_edited_row_whose_hash_was_removed() {
    // An edit that also drops the row's hash, hoping the hub will chain it again.
    let (_, (ok, said)) = verified_around_a_restart(
        "UPDATE audit_log SET actor = 'nobody-did-this', prev_hash = NULL, hash = NULL WHERE id = 3",
    )
    .await;
    assert!(!ok && said.contains("row 3 has no hash"), "{said}");
}

/// The hub process's resident memory (VmRSS) in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("a live process");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc")
}

#[actix_web::test]
async fn an_export_of_a_million_rows_streams_in_constant_memory() {
    use futures_util::StreamExt;

    const ROWS: i64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    let migrated = m3shd()
        .args(["migrate", "--database-url", db.to_str().unwrap()])
        .output()
        .expect("m3shd migrate runs");
    assert!(migrated.status.success(), "{migrated:?}");
    // A million rows as the hub writes them (the chain values only need to be present for
    // the export; its correctness is checked elsewhere).
    tamper(
        db.to_str().unwrap(),
        &format!(
            "INSERT INTO audit_log (at, actor, action, target, detail, prev_hash, hash) \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS}) \
             SELECT '2026-11-28T00:00:00.000Z', 'agent-' || (i % 100), 'task.create', 'task:' || i, \
                    '{{\"title\":\"generated\",\"n\":' || i || '}}', printf('%064d', i - 1), printf('%064d', i) FROM n"
        ),
    );
    let mut command = m3shd();
    command
        .arg("serve")
        .env("M3SHDUP_TOKEN", MASTER)
        .env("M3SHDUP_DATABASE_URL", &db)
        .env("M3SHDUP_ALERTS_ENABLED", "false")
        .env("RUST_LOG", "warn");
    let hub = crate::support::process::HubProcess::start(command).await;
    let pid = hub.child.id();
    let before = resident_kib(pid);
    let mut response = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .finish()
        .get(format!(
            "{}/api/admin/audit/export?token={MASTER}",
            hub.base
        ))
        .send()
        .await
        .expect("the export starts");
    assert_eq!(response.status(), 200);
    let (mut lines, mut bytes, mut peak) = (0u64, 0u64, before);
    while let Some(chunk) = response.next().await {
        let chunk = chunk.expect("a chunk");
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        bytes += chunk.len() as u64;
        if lines % 50_000 < 1000 {
            peak = peak.max(resident_kib(pid));
        }
    }
    peak = peak.max(resident_kib(pid));
    assert!(lines >= ROWS as u64, "{lines} lines");
    // Buffering the export would take its whole size (over 200 MB); streaming takes a page.
    let grew_mib = peak.saturating_sub(before) / 1024;
    assert!(
        grew_mib < 64,
        "the hub grew by {grew_mib} MiB while exporting {} MiB",
        bytes / (1024 * 1024)
    );
}
