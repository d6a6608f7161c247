//! Idempotency keys (issue 17, item 1): a create sent again with the same `Idempotency-Key`
//! and the same body answers the first response (`Idempotent-Replayed: true`) and creates
//! nothing; another body is a 422 naming the key; keys are the caller's own and the
//! route's own; concurrent duplicates create exactly one, here and at a peer a task is
//! relayed to; keys are forgotten after `idempotency_retention_hours`; recorded answers
//! outlive a key rotation; and creates cut by SIGKILL are made exactly once each when
//! retried after the restart, which answers the recorded responses word for word.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use awc::http::Method;
use diesel::prelude::*;
use futures_util::future::join_all;
use m3shd::db::schema::{idempotency_keys, pipelines, tasks};
use serde_json::{json, Value};

use crate::support::process::{audit_verify, serve};
use crate::support::{send_bytes, test_settings, two_hubs, TestHub, MASTER};

const TASKS: &str = "/api/tasks";
const PIPELINES: &str = "/api/pipelines";

/// A create's answer: its status, its JSON body, and whether it came marked
/// `Idempotent-Replayed: true`.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: Value,
    replayed: bool,
}

/// `POST base + path` as `token` with exactly these body bytes and, when given, this
/// `Idempotency-Key`; `Err` when no whole answer came back (the hub was down or died).
async fn try_create(
    base: &str,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: &[u8],
) -> Result<Answer, String> {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    headers.extend(key.map(|key| ("Idempotency-Key", key)));
    let timeout = Duration::from_secs(30);
    let (reply, answered) = send_bytes(
        base,
        Method::POST,
        path,
        &headers,
        Some(body.to_vec()),
        timeout,
    )
    .await?;
    let replayed = answered.get("idempotent-replayed").map(|v| v.to_str());
    assert!(
        matches!(replayed, None | Some(Ok("true"))),
        "Idempotent-Replayed is true when present, not {replayed:?}"
    );
    Ok(Answer {
        status: reply.status.as_u16(),
        body: reply.body,
        replayed: replayed.is_some(),
    })
}

/// `POST base + path` with `body` as JSON and, when given, an `Idempotency-Key`.
async fn create_at(base: &str, path: &str, token: &str, key: Option<&str>, body: &Value) -> Answer {
    try_create(base, path, token, key, body.to_string().as_bytes())
        .await
        .expect("the hub answers")
}

async fn create(hub: &TestHub, path: &str, token: &str, key: Option<&str>, body: &Value) -> Answer {
    create_at(&hub.base, path, token, key, body).await
}

/// The body of a first answer: a 201 that is not a replay.
fn made(answer: Answer) -> Value {
    assert_eq!(answer.status, 201, "a create; body: {}", answer.body);
    assert!(!answer.replayed, "a first create is not marked replayed");
    answer.body
}

/// Asserts that `answer` is the recorded `first` answer again, marked replayed.
fn replays(answer: &Answer, first: &Value) {
    assert_eq!(answer.status, 201, "a replay; body: {}", answer.body);
    assert!(
        answer.replayed,
        "a replay carries Idempotent-Replayed: true"
    );
    assert_eq!(&answer.body, first, "a replay answers the first body");
}

/// Asserts that `answer` is the 422 of `key` sent again with another body.
fn conflicts(answer: &Answer, key: &str) {
    assert_eq!(answer.status, 422, "body: {}", answer.body);
    assert!(!answer.replayed);
    let error = answer.body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(key),
        "the 422 names the key {key:?}: {error}"
    );
}

fn id_of(created: &Value) -> i64 {
    created["id"].as_i64().expect("an id in the answer")
}

/// How many tasks titled `title` the hub's database holds.
fn titled(hub: &TestHub, title: &str) -> i64 {
    tasks::table
        .filter(tasks::title.eq(title))
        .count()
        .get_result(&mut hub.open_db())
        .unwrap()
}

fn task(title: &str) -> Value {
    json!({ "title": title, "prompt": format!("the prompt of {title}") })
}

#[actix_web::test]
async fn a_repeated_key_answers_the_first_response_and_creates_nothing() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let body = task("once");
    let created = made(create(&hub, TASKS, MASTER, Some("k-1"), &body).await);
    assert_eq!(created["status"], "assigned");
    assert_eq!(created["prompt"], "the prompt of once");

    let again = create(&hub, TASKS, MASTER, Some("k-1"), &body).await;
    replays(&again, &created);
    assert_eq!(titled(&hub, "once"), 1);
    let listed = hub.get("/api/tasks?limit=100", MASTER).await.expect(200);
    let shown = listed["tasks"].as_array().unwrap();
    assert_eq!(shown.iter().filter(|t| t["title"] == "once").count(), 1);

    // The task moves on; its key still answers the response of its creation.
    let id = id_of(&created);
    let running = json!({ "status": "running" });
    hub.put(&format!("/api/tasks/{id}"), &rex, running)
        .await
        .expect(200);
    let later = create(&hub, TASKS, MASTER, Some("k-1"), &body).await;
    replays(&later, &created);
    assert_eq!(later.body["status"], "assigned");
    assert_eq!(hub.task_status(id).await["status"], "running");
    assert_eq!(titled(&hub, "once"), 1);
}

#[actix_web::test]
async fn the_same_key_with_another_body_is_a_422_naming_the_key() {
    let hub = TestHub::spawn().await;
    let body = task("first");
    let created = made(create(&hub, TASKS, MASTER, Some("order-7"), &body).await);

    let other = create(&hub, TASKS, MASTER, Some("order-7"), &task("second")).await;
    conflicts(&other, "order-7");
    // The body is compared byte for byte: the same JSON laid out otherwise is another body.
    let pretty = serde_json::to_vec_pretty(&body).unwrap();
    let reformatted = try_create(&hub.base, TASKS, MASTER, Some("order-7"), &pretty)
        .await
        .unwrap();
    conflicts(&reformatted, "order-7");
    assert_eq!(titled(&hub, "second"), 0);
    assert_eq!(titled(&hub, "first"), 1);

    // The first answer still stands.
    replays(
        &create(&hub, TASKS, MASTER, Some("order-7"), &body).await,
        &created,
    );
}

#[actix_web::test]
async fn a_refused_create_does_not_use_up_its_key() {
    let hub = TestHub::spawn().await;
    let missing = json!({ "title": "fixed" });
    let refused = create(&hub, TASKS, MASTER, Some("retry-me"), &missing).await;
    assert_eq!(refused.status, 400, "body: {}", refused.body);
    assert!(!refused.replayed);
    let created = made(create(&hub, TASKS, MASTER, Some("retry-me"), &task("fixed")).await);
    replays(
        &create(&hub, TASKS, MASTER, Some("retry-me"), &task("fixed")).await,
        &created,
    );
    assert_eq!(titled(&hub, "fixed"), 1);
}

#[actix_web::test]
async fn another_callers_same_key_and_another_routes_are_other_keys() {
    let hub = TestHub::spawn().await;
    let cmd = hub.token("cmd", "commander").await;
    let body = task("shared");
    let mine = made(create(&hub, TASKS, MASTER, Some("shared-key"), &body).await);
    let theirs = made(create(&hub, TASKS, &cmd, Some("shared-key"), &body).await);
    assert_ne!(id_of(&mine), id_of(&theirs));
    assert_eq!(theirs["created_by"], "cmd");
    replays(
        &create(&hub, TASKS, MASTER, Some("shared-key"), &body).await,
        &mine,
    );
    replays(
        &create(&hub, TASKS, &cmd, Some("shared-key"), &body).await,
        &theirs,
    );
    // Another caller's key with another body is no conflict with mine.
    made(create(&hub, TASKS, &cmd, Some("mine-only"), &task("theirs")).await);
    made(create(&hub, TASKS, MASTER, Some("mine-only"), &task("mine")).await);

    // The same key on another route is another key.
    let pipeline = json!({ "tasks": [task("member")] });
    made(create(&hub, PIPELINES, MASTER, Some("shared-key"), &pipeline).await);
    assert_eq!(titled(&hub, "shared"), 2);
    assert_eq!(titled(&hub, "member"), 1);
}

#[actix_web::test]
async fn without_a_key_identical_creates_make_two_tasks() {
    let hub = TestHub::spawn().await;
    let body = task("twice");
    let one = made(create(&hub, TASKS, MASTER, None, &body).await);
    let two = made(create(&hub, TASKS, MASTER, None, &body).await);
    assert_ne!(id_of(&one), id_of(&two));
    assert_eq!(titled(&hub, "twice"), 2);
}

/// Holds off the hub's writes for `span` (from another thread): SQLite's write lock, or on
/// PostgreSQL a lock on the tasks table. The creates sent meanwhile all pass their key
/// check and queue at the writer together.
fn hold_writes(hub: &TestHub, span: Duration) -> std::thread::JoinHandle<()> {
    let mut conn = hub.open_db();
    let hold = match conn {
        m3shd::db::DbConnection::Sqlite(_) => "BEGIN IMMEDIATE",
        m3shd::db::DbConnection::Postgres(_) => "BEGIN; LOCK TABLE tasks IN EXCLUSIVE MODE",
    };
    diesel::connection::SimpleConnection::batch_execute(&mut conn, hold).unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(span);
        diesel::sql_query("COMMIT").execute(&mut conn).unwrap();
    })
}

/// Asserts that the audit chain of the hub's database (a consistent copy of it) verifies.
async fn assert_audit_chain_holds(hub: &TestHub) {
    let copy = hub.copy_database(&hub.dir.path().join("audited.db"));
    let (ok, said) = audit_verify(&["--database-url", &copy]).await;
    assert!(ok, "the audit chain verifies: {said}");
}

/// `n` creates with `key` on `hub` at once, the `i`th with `body(i)`, while the writer is
/// held so that they all pass their key check before the first one commits.
async fn race<'a>(
    hub: &TestHub,
    n: usize,
    key: &str,
    body: impl Fn(usize) -> &'a Value,
) -> Vec<Answer> {
    let held = hold_writes(hub, Duration::from_millis(800));
    let answers = join_all((0..n).map(|i| create(hub, TASKS, MASTER, Some(key), body(i)))).await;
    held.join().unwrap();
    answers
}

/// The one create among `answers` (a 201 that is not a replay), after checking that every
/// replay among them answers it.
fn the_one_made(answers: &[Answer]) -> Value {
    let firsts: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status == 201 && !a.replayed)
        .collect();
    assert_eq!(firsts.len(), 1, "exactly one create: {answers:?}");
    let created = firsts[0].body.clone();
    for answer in answers.iter().filter(|a| a.replayed) {
        replays(answer, &created);
    }
    created
}

#[actix_web::test]
async fn concurrent_duplicates_create_exactly_one() {
    let hub = TestHub::spawn().await;
    let body = task("raced");
    let answers = race(&hub, 20, "race", |_| &body).await;
    assert!(answers.iter().all(|a| a.status == 201), "{answers:?}");
    the_one_made(&answers);
    assert_eq!(titled(&hub, "raced"), 1);
    // The losers' rolled-back writes left the audit chain whole.
    assert_audit_chain_holds(&hub).await;
}

#[actix_web::test]
async fn concurrent_uses_of_one_key_with_two_bodies_make_one_and_refuse_the_other() {
    let hub = TestHub::spawn().await;
    let bodies = [task("body a"), task("body b")];
    let answers = race(&hub, 20, "split", |i| &bodies[i % 2]).await;
    let created = the_one_made(&answers);
    for (i, answer) in answers.iter().enumerate() {
        if bodies[i % 2]["title"] == created["title"] {
            assert_eq!(answer.status, 201, "the winner's body: {answer:?}");
        } else {
            conflicts(answer, "split");
        }
    }
    assert_eq!(titled(&hub, "body a") + titled(&hub, "body b"), 1);
    assert_audit_chain_holds(&hub).await;
}

#[actix_web::test]
async fn concurrent_duplicates_of_a_relayed_task_reach_the_peer_once() {
    let (a, b) = two_hubs().await;
    let body = json!({ "title": "relayed", "prompt": "p", "required_capability": "gpu" });
    let answers = race(&a, 10, "relay", |_| &body).await;
    assert!(answers.iter().all(|a| a.status == 201), "{answers:?}");
    let created = the_one_made(&answers);
    assert_eq!(created["assign_to"], "peer:hub-b");
    assert_eq!(titled(&a, "relayed"), 1);
    assert_eq!(
        titled(&b, "relayed"),
        1,
        "the peer got the one task the key made, not one per duplicate"
    );
}

#[actix_web::test]
async fn pipelines_and_template_dispatches_are_idempotent_too() {
    let hub = TestHub::spawn().await;
    let chain = json!({ "name": "chain", "tasks": [
        task("fetch"),
        { "title": "report", "prompt": "p", "depends_on": [0] },
    ]});
    let created = made(create(&hub, PIPELINES, MASTER, Some("p-1"), &chain).await);
    assert_eq!(created["tasks"].as_array().map(Vec::len), Some(2));
    replays(
        &create(&hub, PIPELINES, MASTER, Some("p-1"), &chain).await,
        &created,
    );
    let other = json!({ "name": "other", "tasks": [task("fetch")] });
    conflicts(
        &create(&hub, PIPELINES, MASTER, Some("p-1"), &other).await,
        "p-1",
    );
    let made_pipelines: i64 = pipelines::table
        .count()
        .get_result(&mut hub.open_db())
        .unwrap();
    assert_eq!(made_pipelines, 1);
    assert_eq!((titled(&hub, "fetch"), titled(&hub, "report")), (1, 1));

    let template = json!({ "name": "daily", "title": "from template", "prompt": "p" });
    let template = hub
        .post("/api/templates", MASTER, template)
        .await
        .expect(201);
    let dispatch = format!("/api/templates/{}/dispatch", template["id"]);
    let dispatched = made(create(&hub, &dispatch, MASTER, Some("d-1"), &json!({})).await);
    assert_eq!(dispatched["title"], "from template");
    replays(
        &create(&hub, &dispatch, MASTER, Some("d-1"), &json!({})).await,
        &dispatched,
    );
    let renamed = json!({ "title": "renamed" });
    conflicts(
        &create(&hub, &dispatch, MASTER, Some("d-1"), &renamed).await,
        "d-1",
    );
    // A dispatch without a body is keyed too.
    let bare = made(
        try_create(&hub.base, &dispatch, MASTER, Some("d-bare"), b"")
            .await
            .unwrap(),
    );
    let again = try_create(&hub.base, &dispatch, MASTER, Some("d-bare"), b"")
        .await
        .unwrap();
    replays(&again, &bare);
    assert_eq!(titled(&hub, "from template"), 2);
    assert_eq!(titled(&hub, "renamed"), 0);

    // Another template's dispatch is another route, so the same key is another key.
    let second = json!({ "name": "weekly", "title": "second template", "prompt": "p" });
    let second = hub.post("/api/templates", MASTER, second).await.expect(201);
    let dispatch = format!("/api/templates/{}/dispatch", second["id"]);
    made(create(&hub, &dispatch, MASTER, Some("d-1"), &json!({})).await);
    assert_eq!(titled(&hub, "second template"), 1);
}

#[actix_web::test]
async fn a_key_too_long_or_not_ascii_is_a_400_and_an_empty_one_is_none() {
    let hub = TestHub::spawn().await;
    let body = task("keyed");
    for key in ["x".repeat(256), "x".repeat(300)] {
        let refused = create(&hub, TASKS, MASTER, Some(&key), &body).await;
        assert_eq!(refused.status, 400, "a key of {} characters", key.len());
        let error = refused.body["error"].as_str().unwrap_or_default();
        assert!(error.contains("Idempotency-Key"), "{error}");
    }
    // Bytes past ASCII (obs-text, which HTTP lets through) are refused too.
    let mut response = awc::Client::new()
        .post(format!("{}{TASKS}", hub.base))
        .insert_header(("Authorization", format!("Bearer {MASTER}")))
        .insert_header((
            "Idempotency-Key",
            awc::http::header::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        ))
        .send_body(body.to_string())
        .await
        .expect("the hub answers");
    assert_eq!(response.status(), 400);
    let _ = response.body().await;
    assert_eq!(titled(&hub, "keyed"), 0);

    // An empty header is no key: each such create makes its own task.
    for _ in 0..2 {
        let made = create(&hub, TASKS, MASTER, Some(""), &task("unkeyed")).await;
        assert_eq!(made.status, 201);
    }
    assert_eq!(titled(&hub, "unkeyed"), 2);

    let longest = "x".repeat(255);
    let created = made(create(&hub, TASKS, MASTER, Some(&longest), &body).await);
    replays(
        &create(&hub, TASKS, MASTER, Some(&longest), &body).await,
        &created,
    );
    assert_eq!(titled(&hub, "keyed"), 1);
}

/// Sets the time `key` was recorded at, straight in the database.
fn record_at(hub: &TestHub, key: &str, at: &str) {
    let sql = format!("UPDATE idempotency_keys SET created_at = '{at}' WHERE key = '{key}'");
    assert_eq!(hub.execute_sql(&sql), 1, "{key} was recorded once");
}

fn hours_ago(hours: i64) -> String {
    m3shd::domain::iso(chrono::Utc::now() - chrono::Duration::hours(hours))
}

#[actix_web::test]
async fn a_key_older_than_a_day_is_forgotten() {
    let hub = TestHub::spawn().await;
    let ancient = made(create(&hub, TASKS, MASTER, Some("ancient"), &task("ancient")).await);
    let expired = made(create(&hub, TASKS, MASTER, Some("expired"), &task("expired")).await);
    let recent = made(create(&hub, TASKS, MASTER, Some("recent"), &task("recent")).await);
    record_at(&hub, "ancient", "2000-01-01T00:00:00.000Z");
    record_at(&hub, "expired", &hours_ago(25));
    record_at(&hub, "recent", &hours_ago(23));

    let anew = made(create(&hub, TASKS, MASTER, Some("ancient"), &task("ancient")).await);
    assert_ne!(id_of(&anew), id_of(&ancient));
    assert_eq!(titled(&hub, "ancient"), 2);
    // The key now answers its new create.
    replays(
        &create(&hub, TASKS, MASTER, Some("ancient"), &task("ancient")).await,
        &anew,
    );
    // Past the window another body is no conflict either.
    let other = made(create(&hub, TASKS, MASTER, Some("expired"), &task("later")).await);
    assert_ne!(id_of(&other), id_of(&expired));
    assert_eq!(titled(&hub, "later"), 1);
    // Within the window (24 hours by default) the first answer stands.
    replays(
        &create(&hub, TASKS, MASTER, Some("recent"), &task("recent")).await,
        &recent,
    );
    assert_eq!(titled(&hub, "recent"), 1);
}

#[actix_web::test]
async fn the_sweep_forgets_expired_keys_a_batch_at_a_time_and_keeps_live_ones() {
    let hub = TestHub::spawn().await;
    for key in ["old-1", "old-2", "old-3", "live"] {
        made(create(&hub, TASKS, MASTER, Some(key), &task(key)).await);
    }
    for key in ["old-1", "old-2", "old-3"] {
        record_at(&hub, key, &hours_ago(30));
    }
    let since = hours_ago(24);
    let sweep = |batch: i64| {
        let since = since.clone();
        hub.hub
            .core
            .db
            .write(move |conn| Ok(m3shd::db::idempotency::forget_expired(conn, &since, batch)?))
    };
    assert_eq!(sweep(2).await.unwrap(), 2);
    assert_eq!(sweep(2).await.unwrap(), 1);
    assert_eq!(sweep(2).await.unwrap(), 0);
    let left = hub.execute_sql("UPDATE idempotency_keys SET status = status");
    assert_eq!(left, 1, "only the live key is kept");
    // It still answers its create.
    let again = create(&hub, TASKS, MASTER, Some("live"), &task("live")).await;
    assert_eq!(titled(&hub, "live"), 1, "{again:?}");
}

#[actix_web::test]
async fn the_retention_window_is_a_setting() {
    let hub = TestHub::spawn_with(|s| s.idempotency_retention_hours = 1).await;
    let first = made(create(&hub, TASKS, MASTER, Some("hourly"), &task("hourly")).await);
    record_at(&hub, "hourly", &hours_ago(2));
    let second = made(create(&hub, TASKS, MASTER, Some("hourly"), &task("hourly")).await);
    assert_ne!(id_of(&first), id_of(&second));
    assert_eq!(titled(&hub, "hourly"), 2);
}

#[actix_web::test]
async fn a_recorded_answer_outlives_a_rotation_of_the_encryption_key() {
    let old = TestHub::spawn().await;
    let created = made(create(&old, TASKS, MASTER, Some("rotated"), &task("rotated")).await);
    // The same database (a consistent copy: the old hub still runs) under a new key, the
    // old one kept as legacy.
    let dir = tempfile::tempdir().unwrap();
    old.snapshot_into(dir.path());
    let settings = test_settings(dir.path());
    let rotated = TestHub::start(dir, settings, "another-key", Some("test-encryption-key")).await;
    replays(
        &create(&rotated, TASKS, MASTER, Some("rotated"), &task("rotated")).await,
        &created,
    );
    assert_eq!(titled(&rotated, "rotated"), 1);
}

const KILLED_TOKEN: &str = "idempotency-master";

fn killed_body(i: usize) -> Value {
    task(&format!("killed-k{i}"))
}

/// Every task of the database at `db` as (id, title).
fn tasks_in(db: &std::path::Path) -> HashMap<i64, String> {
    let mut conn = crate::support::open_database(&crate::support::database_url_at(db));
    tasks::table
        .select((tasks::id, tasks::title))
        .load::<(i32, String)>(&mut conn)
        .unwrap()
        .into_iter()
        .map(|(id, title)| (i64::from(id), title))
        .collect()
}

#[actix_web::test]
async fn keyed_creates_cut_by_sigkill_are_made_exactly_once_when_retried() {
    const KEYS: usize = 200;
    const KILL_AFTER: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let log = dir.path().join("hub.log");
    let hub = serve(KILLED_TOKEN, &db, &log, &[]).await;

    // All keys at once; the answer that makes KILL_AFTER kills the hub (SIGKILL) while the
    // others are in flight.
    let pid = hub.child.id() as libc::pid_t;
    let answered: Rc<RefCell<HashMap<usize, Answer>>> = Rc::default();
    let creates: Vec<_> = (0..KEYS)
        .map(|i| {
            let (base, answered) = (hub.base.clone(), answered.clone());
            actix_web::rt::spawn(async move {
                let key = format!("k{i}");
                let body = killed_body(i).to_string();
                let Ok(answer) =
                    try_create(&base, TASKS, KILLED_TOKEN, Some(&key), body.as_bytes()).await
                else {
                    return;
                };
                let mut answered = answered.borrow_mut();
                answered.insert(i, answer);
                if answered.len() == KILL_AFTER {
                    // SAFETY: a signal to our own child process.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            })
        })
        .collect();
    join_all(creates).await;
    drop(hub);
    let before = answered.take();
    assert!(
        (KILL_AFTER..KEYS).contains(&before.len()),
        "the kill cut creates in flight: {} of {KEYS} answered",
        before.len()
    );
    for (i, answer) in &before {
        assert_eq!(answer.status, 201, "k{i} before the kill: {}", answer.body);
    }

    // Every key is sent again, with the same body, to the restarted hub.
    let hub = serve(KILLED_TOKEN, &db, &log, &[]).await;
    let retried = join_all((0..KEYS).map(|i| {
        let key = format!("k{i}");
        let base = hub.base.clone();
        async move { create_at(&base, TASKS, KILLED_TOKEN, Some(&key), &killed_body(i)).await }
    }))
    .await;
    for (i, answer) in retried.iter().enumerate() {
        assert_eq!(
            answer.status, 201,
            "k{i} after the restart: {}",
            answer.body
        );
        if let Some(first) = before.get(&i) {
            // An answer recorded before the crash survives it, word for word.
            replays(answer, &first.body);
        }
    }

    // One task per key, and each key's answer names its own task.
    let stored = tasks_in(&db);
    assert_eq!(stored.len(), KEYS, "one task per key, none duplicated");
    let mut per_title: HashMap<&str, usize> = HashMap::new();
    for title in stored.values() {
        *per_title.entry(title.as_str()).or_default() += 1;
    }
    for (i, answer) in retried.iter().enumerate() {
        let title = format!("killed-k{i}");
        assert_eq!(per_title.get(title.as_str()), Some(&1), "{title}");
        let id = id_of(&answer.body);
        assert_eq!(
            stored.get(&id),
            Some(&title),
            "k{i} answers task {id}, which must exist with its title"
        );
    }
    let mut conn = crate::support::open_database(&crate::support::database_url_at(&db));
    let keys: i64 = idempotency_keys::table
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(keys, KEYS as i64, "one recorded key per key");
    let replayed = retried.iter().filter(|a| a.replayed).count();
    assert!(
        replayed >= before.len(),
        "at least every key answered before the crash is replayed ({replayed})"
    );
}
