//! The real binary: acknowledged writes survive SIGKILL, and nothing secret is stored or
//! logged in plain text.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::process::{serve, worker_command, HubProcess};
use crate::support::{bytes_at_rest, TestHub, SOON};

const TOKEN: &str = "durability-master";

/// Starts `m3shd serve` on `db` (on a port it picks itself, logging at debug level to
/// `log`) and waits until it answers. Dropping it is a SIGKILL.
async fn start(db: &std::path::Path, log: &std::path::Path) -> HubProcess {
    let env = [("M3SHDUP_HEARTBEAT_TIMEOUT", "30"), ("RUST_LOG", "debug")];
    serve(TOKEN, db, log, &env).await
}

async fn call(
    base: &str,
    method: awc::http::Method,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut response = awc::Client::new()
        .request(method, format!("{base}{path}"))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send_body(body.to_string())
        .await
        .expect("hub answers");
    let bytes = response.body().await.unwrap();
    (
        response.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or_default(),
    )
}

#[actix_web::test]
async fn nothing_acknowledged_is_lost_to_sigkill_and_queued_work_resumes() {
    use awc::http::Method;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let log = dir.path().join("hub.log");
    let hub = start(&db, &log).await;

    let (status, issued) = call(
        &hub.base,
        Method::POST,
        "/api/admin/tokens",
        TOKEN,
        json!({ "agent_id": "rex", "role": "worker" }),
    )
    .await;
    assert_eq!(status, 201);
    let rex = issued["token"].as_str().unwrap().to_string();
    let register = json!({ "name": "rex", "capabilities": ["research"], "max_concurrent": 1 });
    assert_eq!(
        call(
            &hub.base,
            Method::POST,
            "/api/agents/rex/register",
            &rex,
            register
        )
        .await
        .0,
        200
    );
    let mut ids = Vec::new();
    for i in 0..20 {
        let (status, task) = call(
            &hub.base,
            Method::POST,
            "/api/tasks",
            TOKEN,
            json!({ "title": format!("t{i}"), "prompt": format!("prompt number {i}") }),
        )
        .await;
        assert_eq!(status, 201);
        ids.push(task["id"].as_i64().unwrap());
    }
    let first = ids[0];
    assert_eq!(
        call(
            &hub.base,
            Method::PUT,
            &format!("/api/tasks/{first}"),
            &rex,
            json!({ "status": "done", "output": "finished" })
        )
        .await
        .0,
        200
    );
    drop(hub); // SIGKILL: no shutdown, no flush beyond what was committed

    let hub = start(&db, &log).await;
    // The token, the agent and every acknowledged task survived.
    let (status, agents) = call(&hub.base, Method::GET, "/api/agents", &rex, json!(null)).await;
    assert_eq!(status, 200, "the issued token still works after the crash");
    assert_eq!(agents["agents"][0]["agent_id"], "rex");
    let (_, done) = call(
        &hub.base,
        Method::GET,
        &format!("/api/tasks/{first}"),
        TOKEN,
        json!(null),
    )
    .await;
    assert_eq!(done["status"], "done");
    assert_eq!(done["output"], "finished");
    let (_, all) = call(
        &hub.base,
        Method::GET,
        "/api/tasks?limit=100",
        TOKEN,
        json!(null),
    )
    .await;
    assert_eq!(all["count"], 20);
    // The slot freed by the finished task was given to the next queued task after restart.
    let mut dispatched = false;
    for _ in 0..100 {
        let (_, next) = call(
            &hub.base,
            Method::GET,
            &format!("/api/tasks/{}", ids[1]),
            TOKEN,
            json!(null),
        )
        .await;
        if next["status"] == "assigned" {
            dispatched = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dispatched, "queued work is dispatched after the restart");

    // Neither the database files nor the debug log hold a prompt, an output or a token.
    drop(hub);
    let stored = bytes_at_rest(dir.path()).await;
    assert!(
        stored.contains("agent.register"),
        "the scan did read the database"
    );
    for secret in ["prompt number", "finished", rex.as_str()] {
        assert!(
            !stored.contains(secret),
            "{secret:?} found in plain text at rest or in the log"
        );
    }
}

#[actix_web::test]
async fn prompts_are_encrypted_at_rest_in_process_too() {
    let hub = TestHub::spawn().await;
    hub.task(json!({ "title": "t", "prompt": "the crown jewels" }))
        .await;
    assert!(!bytes_at_rest(hub.dir.path()).await.contains("crown jewels"));
    let listed = hub
        .get("/api/tasks", crate::support::MASTER)
        .await
        .expect(200);
    assert_eq!(listed["tasks"][0]["prompt"], "the crown jewels");
}

#[actix_web::test]
async fn rotating_the_key_reencrypts_old_rows_when_they_are_read() {
    use crate::support::{test_settings, MASTER};
    let old = TestHub::spawn().await;
    let id = old
        .task(json!({ "title": "t", "prompt": "rotate me" }))
        .await["id"]
        .as_i64()
        .unwrap();
    let raw = |hub: &TestHub| {
        let mut conn = hub.open_db();
        use diesel::prelude::*;
        m3shd::db::schema::tasks::table
            .find(id as i32)
            .select(m3shd::db::schema::tasks::prompt)
            .get_result::<String>(&mut conn)
            .unwrap()
    };
    let sealed_before = raw(&old);

    // The same database (a consistent snapshot of it: the old hub still runs), now with
    // a new key and the old one as legacy.
    let dir = tempfile::tempdir().unwrap();
    old.snapshot_into(dir.path());
    let settings = test_settings(dir.path());
    let rotated = TestHub::start(
        dir,
        settings,
        "a-brand-new-key",
        Some("test-encryption-key"),
    )
    .await;
    assert_eq!(rotated.task_status(id).await["prompt"], "rotate me");
    let resealed = rotated
        .eventually(SOON, || async { raw(&rotated) != sealed_before })
        .await;
    assert!(
        resealed,
        "reading the row re-encrypted it under the new key"
    );
    let listed = rotated.get("/api/tasks", MASTER).await.expect(200);
    assert_eq!(listed["tasks"][0]["prompt"], "rotate me");
}

#[actix_web::test]
async fn a_pipeline_killed_half_way_continues_where_it_was() {
    use awc::http::Method;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let log = dir.path().join("hub.log");
    let hub = start(&db, &log).await;
    let (_, issued) = call(
        &hub.base,
        Method::POST,
        "/api/admin/tokens",
        TOKEN,
        json!({ "agent_id": "rex", "role": "worker" }),
    )
    .await;
    let rex = issued["token"].as_str().unwrap().to_string();
    let register = json!({ "name": "rex", "capabilities": ["research"], "max_concurrent": 2 });
    call(
        &hub.base,
        Method::POST,
        "/api/agents/rex/register",
        &rex,
        register,
    )
    .await;
    let chain = json!({ "tasks": [
        { "title": "fetch", "prompt": "p" },
        { "title": "analyse", "prompt": "p", "depends_on": 0 },
        { "title": "report", "prompt": "p", "depends_on": [1] },
    ]});
    let (status, pipeline) = call(&hub.base, Method::POST, "/api/pipelines", TOKEN, chain).await;
    assert_eq!(status, 201, "{pipeline}");
    let ids: Vec<i64> = pipeline["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    let done = json!({ "status": "done", "output": "ok" });
    assert!(
        wait_for(&hub.base, ids[0], "assigned").await,
        "the first step is dispatched at once"
    );
    assert_eq!(
        call(
            &hub.base,
            Method::PUT,
            &format!("/api/tasks/{}", ids[0]),
            &rex,
            done.clone()
        )
        .await
        .0,
        200
    );
    let second_assigned = wait_for(&hub.base, ids[1], "assigned").await;
    assert!(
        second_assigned,
        "the second step was released before the crash"
    );
    drop(hub); // SIGKILL half way through

    let hub = start(&db, &log).await;
    let (_, first) = call(
        &hub.base,
        Method::GET,
        &format!("/api/tasks/{}", ids[0]),
        TOKEN,
        json!(null),
    )
    .await;
    assert_eq!(
        (first["status"].as_str(), first["attempts"].as_i64()),
        (Some("done"), Some(1)),
        "a finished step never runs again"
    );
    let (_, third) = call(
        &hub.base,
        Method::GET,
        &format!("/api/tasks/{}", ids[2]),
        TOKEN,
        json!(null),
    )
    .await;
    assert_eq!(
        third["status"], "queued",
        "the last step still waits for its dependency"
    );
    assert!(third["assigned_to"].is_null());
    // The holder of the second step reports after the restart; the third is released.
    assert_eq!(
        call(
            &hub.base,
            Method::PUT,
            &format!("/api/tasks/{}", ids[1]),
            &rex,
            done.clone()
        )
        .await
        .0,
        200
    );
    assert!(
        wait_for(&hub.base, ids[2], "assigned").await,
        "the pipeline continues after the restart"
    );
    assert_eq!(
        call(
            &hub.base,
            Method::PUT,
            &format!("/api/tasks/{}", ids[2]),
            &rex,
            done
        )
        .await
        .0,
        200
    );
    let pipeline_id = pipeline["pipeline_id"].as_i64().unwrap();
    let mut finished = false;
    for _ in 0..100 {
        let (_, p) = call(
            &hub.base,
            Method::GET,
            &format!("/api/pipelines/{pipeline_id}"),
            TOKEN,
            json!(null),
        )
        .await;
        if p["status"] == "done" {
            finished = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(finished, "the pipeline is recorded done");
}

/// Polls a task until it has `status` (about two seconds at most).
async fn wait_for(base: &str, id: i64, status: &str) -> bool {
    reached(base, id, status, Duration::from_secs(2)).await["status"] == status
}

/// Task `id` as it is once it reached `status`, or as it is after `within`.
async fn reached(base: &str, id: i64, status: &str, within: Duration) -> Value {
    let deadline = std::time::Instant::now() + within;
    loop {
        let (_, task) = call(
            base,
            awc::http::Method::GET,
            &format!("/api/tasks/{id}"),
            TOKEN,
            Value::Null,
        )
        .await;
        if task["status"] == status || std::time::Instant::now() > deadline {
            return task;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn a_worker_keeps_running_through_a_hub_outage_and_reports_when_it_is_back() {
    use awc::http::Method;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let log = dir.path().join("hub.log");
    let mut hub = start(&db, &log).await;
    let port = hub.port().to_string();
    let (status, token) = call(
        &hub.base,
        Method::POST,
        "/api/admin/tokens",
        TOKEN,
        json!({ "agent_id": "steady", "name": "steady", "role": "worker" }),
    )
    .await;
    assert_eq!(status, 201, "{token}");
    let started = dir.path().join("started");
    // The run outlasts the outage: it starts, the hub goes away, it finishes meanwhile.
    let script = format!(
        "cat > /dev/null; touch {}; sleep 3; echo kept through the outage",
        started.display()
    );
    let mut worker = worker_command(
        &hub.base,
        token["token"].as_str().unwrap(),
        "steady",
        &script,
    )
    .spawn()
    .unwrap();
    let (status, task) = call(
        &hub.base,
        Method::POST,
        "/api/tasks",
        TOKEN,
        json!({ "title": "t", "prompt": "p" }),
    )
    .await;
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_i64().unwrap();
    for _ in 0..400 {
        if started.exists() {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(started.exists(), "the worker started the task");
    hub.child.kill().unwrap();
    hub.child.wait().unwrap();
    // Down for longer than the run and than the worker's first retries.
    actix_web::rt::time::sleep(Duration::from_secs(6)).await;
    let bind = format!("127.0.0.1:{port}");
    let env = [
        ("M3SHDUP_HEARTBEAT_TIMEOUT", "30"),
        ("M3SHDUP_BIND", bind.as_str()),
    ];
    let hub = serve(TOKEN, &db, &log, &env).await;
    let reported = reached(&hub.base, id, "done", Duration::from_secs(20)).await;
    assert_eq!(
        reported["output"], "kept through the outage\n",
        "{reported}"
    );
    assert_eq!(reported["attempts"], 1, "not run twice: {reported}");
    let _ = worker.kill();
    let _ = worker.wait();
}

/// `GET /api/federation/status` of the hub at `base`.
async fn federation_status(base: &str) -> Value {
    let path = "/api/federation/status";
    call(base, awc::http::Method::GET, path, TOKEN, Value::Null)
        .await
        .1
}

#[actix_web::test]
async fn a_relayed_result_waits_in_the_outbox_through_an_origin_outage_and_a_restart() {
    use awc::http::Method;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let quick = [("M3SHDUP_FEDERATION_RETRY_MAX_SECONDS", "1")];
    let relaying = [
        ("M3SHDUP_FEDERATION_RELAY", "true"),
        ("M3SHDUP_FEDERATION_RETRY_MAX_SECONDS", "1"),
    ];
    let mut origin = serve(TOKEN, &path("a.db"), &path("a.log"), &relaying).await;
    let mut peer = serve(TOKEN, &path("b.db"), &path("b.log"), &quick).await;
    for (hub, name, other) in [(&origin, "hub-b", &peer), (&peer, "hub-a", &origin)] {
        let body = json!({ "name": name, "url": other.base, "token": "a-shared-secret-of-32-characters!" });
        let (status, answer) = call(&hub.base, Method::POST, "/api/admin/peers", TOKEN, body).await;
        assert_eq!(status, 201, "{answer}");
    }
    let (_, token) = call(
        &peer.base,
        Method::POST,
        "/api/admin/tokens",
        TOKEN,
        json!({ "agent_id": "gpu", "name": "gpu", "role": "worker" }),
    )
    .await;
    let gpu = token["token"].as_str().unwrap().to_string();
    let register = json!({ "name": "gpu", "capabilities": ["gpu"], "max_concurrent": 1 });
    let (status, _) = call(
        &peer.base,
        Method::POST,
        "/api/agents/gpu/register",
        &gpu,
        register,
    )
    .await;
    assert_eq!(status, 200);
    let (status, created) = call(
        &origin.base,
        Method::POST,
        "/api/tasks",
        TOKEN,
        json!({ "title": "Render", "prompt": "p", "required_capability": "gpu" }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["assign_to"], "peer:hub-b");
    let id = created["id"].as_i64().unwrap();
    let (_, remote) = call(&peer.base, Method::GET, "/api/tasks", TOKEN, Value::Null).await;
    let remote_id = remote["tasks"][0]["id"].as_i64().unwrap();

    // The origin goes away; the peer finishes the task meanwhile and cannot report it.
    let origin_port = origin.port();
    origin.child.kill().unwrap();
    origin.child.wait().unwrap();
    let (status, _) = call(
        &peer.base,
        Method::PUT,
        &format!("/api/tasks/{remote_id}"),
        &gpu,
        json!({ "status": "done", "output": "rendered" }),
    )
    .await;
    assert_eq!(status, 200);
    // Longer than the old three tries (1 + 2 + 3 s), with retries every second.
    actix_web::rt::time::sleep(Duration::from_secs(7)).await;
    let status = federation_status(&peer.base).await;
    assert_eq!(status["peers"][0]["results_waiting"], 1, "{status}");
    // The peer is killed too: the owed result is in its database, not only in memory.
    peer.child.kill().unwrap();
    peer.child.wait().unwrap();

    let bind = format!("127.0.0.1:{origin_port}");
    let origin_env = [relaying[0], relaying[1], ("M3SHDUP_BIND", bind.as_str())];
    let origin = serve(TOKEN, &path("a.db"), &path("a.log"), &origin_env).await;
    let peer = serve(TOKEN, &path("b.db"), &path("b.log"), &quick).await;
    let back = reached(&origin.base, id, "done", Duration::from_secs(20)).await;
    assert_eq!(back["output"], "rendered", "{back}");
    // The peer forgets the result once the origin has acknowledged it: in its next
    // group commit, a moment after the origin shows it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = federation_status(&peer.base).await;
        let waiting = &status["peers"][0]["results_waiting"];
        if waiting == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the delivered result is still owed: {status}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}
