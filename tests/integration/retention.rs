//! Retention: finished tasks older than `retention_days` are archived to gzip JSON Lines,
//! then deleted with their rows; live work, recent work and the audit log stay.

use std::io::BufRead;
use std::time::Duration;

use diesel::sql_types::Text;
use diesel::RunQueryDsl;
use serde_json::{json, Value};

use crate::support::{TestHub, MASTER};

const LONG_AGO: &str = "2020-01-01T00:00:00.000Z";

#[derive(diesel::QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

/// Rows read straight from the hub's database, each as the JSON object `select` makes
/// (written with SQLite's `json_object`, PostgreSQL's `json_build_object`).
fn rows(hub: &TestHub, select: &str) -> Vec<Value> {
    let select = match crate::support::postgres_server() {
        None => select.to_string(),
        Some(_) => format!(
            "SELECT line::text AS line FROM ({}) AS q",
            select.replace("json_object(", "json_build_object(")
        ),
    };
    let lines: Vec<Line> = diesel::sql_query(select)
        .load(&mut hub.open_db())
        .expect("the query runs");
    lines
        .iter()
        .map(|l| serde_json::from_str(&l.line).unwrap())
        .collect()
}

/// What a task's rows hold now: the task's stored columns, its chunks and its provenance.
fn stored(hub: &TestHub, id: i64) -> Value {
    let task = rows(
        hub,
        &format!(
            "SELECT json_object('id', id, 'status', status, 'prompt', prompt, 'output', output, \
             'created_by', created_by) AS line FROM tasks WHERE id = {id}"
        ),
    );
    let chunks = rows(
        hub,
        &format!(
            "SELECT json_object('seq', seq, 'chunk', chunk) AS line FROM task_stream_chunks \
             WHERE task_id = {id} ORDER BY seq"
        ),
    );
    let provenance = rows(
        hub,
        &format!(
            "SELECT json_object('seq', seq, 'action', action, 'hash', hash) AS line \
             FROM provenance WHERE task_id = {id} ORDER BY seq"
        ),
    );
    json!({ "task": task.first(), "chunks": chunks, "provenance": provenance })
}

/// The same fields, picked from an archive line.
fn archived(line: &Value) -> Value {
    let pick = |row: &Value, keys: &[&str]| -> Value {
        keys.iter()
            .map(|k| (k.to_string(), row[*k].clone()))
            .collect()
    };
    let task = &line["task"];
    json!({
        "task": pick(task, &["id", "status", "prompt", "output", "created_by"]),
        "chunks": line["chunks"].as_array().unwrap().iter().map(|c| pick(c, &["seq", "chunk"])).collect::<Vec<_>>(),
        "provenance": line["provenance"].as_array().unwrap().iter().map(|p| pick(p, &["seq", "action", "hash"])).collect::<Vec<_>>(),
    })
}

/// Every line of every archive file under `dir`.
fn archive_lines(dir: &std::path::Path) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        assert!(
            path.to_string_lossy().ends_with(".jsonl.gz"),
            "{}",
            path.display()
        );
        let file = std::fs::File::open(&path).unwrap();
        let reader = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(file));
        for line in reader.lines() {
            lines.push(serde_json::from_str(&line.unwrap()).unwrap());
        }
    }
    lines
}

fn count(hub: &TestHub, select: &str) -> i64 {
    rows(hub, &format!("SELECT json_object('n', ({select})) AS line"))[0]["n"]
        .as_i64()
        .unwrap()
}

#[actix_web::test]
async fn old_finished_tasks_are_archived_then_deleted_and_nothing_live_is_touched() {
    let hub = TestHub::spawn_with(|s| {
        s.retention_days = 30;
        s.retention_interval_seconds = 1;
        // Two per write, so the three old tasks take two batches.
        s.retention_batch = 2;
    })
    .await;
    let rex = hub.agent("rex", &["research"], 10).await;
    let finish = |status: &'static str, chunks: usize| {
        let (hub, rex) = (&hub, &rex);
        async move {
            let id = hub
                .task(json!({ "title": status, "prompt": format!("prompt of a {status} task"), "assign_to": "rex" }))
                .await["id"]
                .as_i64()
                .unwrap();
            let path = format!("/api/tasks/{id}");
            hub.put(&path, rex, json!({ "status": "running" }))
                .await
                .expect(200);
            for n in 0..chunks {
                let chunk = json!({ "chunk": format!("part {n}") });
                hub.post(&format!("{path}/stream"), rex, chunk)
                    .await
                    .expect(201);
            }
            hub.put(
                &path,
                rex,
                json!({ "status": status, "output": "the answer" }),
            )
            .await
            .expect(200);
            id
        }
    };
    let old_done = finish("done", 3).await;
    let old_failed = finish("failed", 1).await;
    let old_plain = finish("done", 0).await;
    let recent = finish("done", 2).await;
    let waiting = hub
        .task(json!({ "title": "live", "prompt": "p", "required_capability": "nobody-has-it" }))
        .await["id"]
        .as_i64()
        .unwrap();
    // A pipeline whose first step finished long ago but whose second still waits.
    let pipeline = hub
        .post(
            "/api/pipelines",
            MASTER,
            json!({ "name": "half", "tasks": [
                { "title": "a", "prompt": "p", "assign_to": "rex" },
                { "title": "b", "prompt": "p", "depends_on": [0], "required_capability": "nobody-has-it" }
            ] }),
        )
        .await
        .expect(201);
    let first_step = pipeline["tasks"][0]["id"].as_i64().unwrap();
    let assigned = hub
        .eventually(Duration::from_secs(5), || async {
            hub.task_status(first_step).await["status"] == "assigned"
        })
        .await;
    assert!(assigned, "the pipeline's first step reaches rex");
    let path = format!("/api/tasks/{first_step}");
    hub.put(&path, &rex, json!({ "status": "running" }))
        .await
        .expect(200);
    hub.put(&path, &rex, json!({ "status": "done", "output": "a" }))
        .await
        .expect(200);

    let old = [old_done, old_failed, old_plain];
    let before: Vec<Value> = old.iter().map(|&id| stored(&hub, id)).collect();
    assert_eq!(before[0]["chunks"].as_array().unwrap().len(), 3);
    assert!(!before[0]["provenance"].as_array().unwrap().is_empty());
    let audit_rows = count(&hub, "SELECT COUNT(*) FROM audit_log");
    let backdated = hub.execute_sql(&format!(
        "UPDATE tasks SET created_at = '{LONG_AGO}', updated_at = '{LONG_AGO}', \
         completed_at = CASE WHEN completed_at IS NULL THEN NULL ELSE '{LONG_AGO}' END \
         WHERE id IN ({old_done}, {old_failed}, {old_plain}, {waiting}, {first_step})"
    ));
    assert_eq!(backdated, 5);

    let gone = hub
        .eventually(Duration::from_secs(15), || async {
            count(
                &hub,
                &format!("SELECT COUNT(*) FROM tasks WHERE id IN ({old_done}, {old_failed}, {old_plain})"),
            ) == 0
        })
        .await;
    assert!(gone, "the old finished tasks are deleted");

    let archive = hub.db_path().parent().unwrap().join("archive");
    let lines = archive_lines(&archive);
    let mut ids: Vec<i64> = lines
        .iter()
        .map(|l| l["task"]["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        old.to_vec(),
        "each old task archived once, nothing else"
    );
    for (line, was) in lines.iter().zip(&before) {
        assert_eq!(&archived(line), was, "the archive holds what was deleted");
    }
    assert!(
        lines[0]["task"]["prompt"] != "prompt of a done task",
        "prompts stay sealed in the archive"
    );

    for id in old {
        hub.get(&format!("/api/tasks/{id}"), MASTER)
            .await
            .expect(404);
    }
    let left = count(
        &hub,
        &format!(
            "SELECT (SELECT COUNT(*) FROM task_stream_chunks WHERE task_id IN ({old_done}, {old_failed})) \
             + (SELECT COUNT(*) FROM provenance WHERE task_id IN ({old_done}, {old_failed}, {old_plain}))"
        ),
    );
    assert_eq!(left, 0, "their chunks and provenance went with them");
    for id in [recent, waiting, first_step] {
        hub.get(&format!("/api/tasks/{id}"), MASTER)
            .await
            .expect(200);
    }
    assert_eq!(
        stored(&hub, recent)["chunks"].as_array().unwrap().len(),
        2,
        "recent work keeps its chunks"
    );
    assert!(
        count(&hub, "SELECT COUNT(*) FROM audit_log") >= audit_rows,
        "the audit log is never deleted"
    );
    let first_audit = count(&hub, "SELECT MIN(id) FROM audit_log");
    assert_eq!(first_audit, 1, "the oldest audit row is still there");
    let text = crate::metrics::metrics(&hub).await;
    assert_eq!(
        crate::metrics::sample(&text, "m3shd_tasks_archived_total"),
        Some(3.0)
    );
    // The overview says it too (the dashboard's Retention card).
    let overview = hub.get("/api/overview", MASTER).await.expect(200);
    let retention = &overview["retention"];
    assert_eq!(retention["days"], 30);
    assert_eq!(retention["archived_since_start"], 3, "{overview}");
    assert!(retention["last_run_at"].is_string());
    assert!(retention["last_error"].is_null());
}

#[actix_web::test]
async fn with_retention_off_the_overview_says_every_task_is_kept() {
    let hub = TestHub::spawn().await;
    let overview = hub.get("/api/overview", MASTER).await.expect(200);
    assert!(overview["retention"]["days"].is_null(), "{overview}");
    assert!(overview["retention"]["last_run_at"].is_null());
}
