//! Operator-managed agents (seed 004, Mission Control's Agents API): the documented curl
//! examples with an `x-api-key`, naming an agent by number or by name, what each role may
//! see and change, holds and wakes against real dispatch, taskStats, the durable inbox and
//! its heartbeat poll, direct messages (sealed at rest), the memory object, the per-caller
//! change budget, the agents file (sync and write_to_gateway) and the `mc-session` cookie.

use std::time::Duration;

use awc::http::{header::HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use crate::support::process::{serve, HubProcess};
use crate::support::{bytes_at_rest, files_at_rest, send_json, Reply, TestHub, MASTER, SOON};

/// A request with the token in `x-api-key`, as seed 004's curl examples send it; the
/// response headers too.
async fn send_key(
    base: &str,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (Reply, HeaderMap) {
    let headers = [("x-api-key", key)];
    send_json(base, method, path, &headers, body, Duration::from_secs(10)).await
}

async fn key(hub: &TestHub, method: Method, path: &str, key: &str, body: Option<Value>) -> Reply {
    send_key(&hub.base, method, path, key, body).await.0
}

/// Creates an agent as `token` and returns it (`{"agent": ...}` unwrapped).
async fn create(hub: &TestHub, token: &str, body: Value) -> Value {
    hub.post("/api/agents", token, body)
        .await
        .expect(201)
        .get("agent")
        .cloned()
        .expect("an agent object")
}

async fn agent(hub: &TestHub, path: &str, token: &str) -> Value {
    hub.get(&format!("/api/agents/{path}"), token)
        .await
        .expect(200)["agent"]
        .clone()
}

/// The error text of a refusal with this status.
fn error(reply: Reply, status: u16) -> String {
    reply.expect(status)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn contents(list: &Value) -> Vec<String> {
    list["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("expected messages, got {list}"))
        .iter()
        .map(|m| m["content"].as_str().expect("content").to_string())
        .collect()
}

fn ids(list: &Value, field: &str) -> Vec<i64> {
    list[field]
        .as_array()
        .unwrap_or_else(|| panic!("expected {field}, got {list}"))
        .iter()
        .map(|t| t["id"].as_i64().expect("id"))
        .collect()
}

/// The files in `dir` that hold `text` in plain text.
async fn files_holding(dir: &std::path::Path, text: &str) -> Vec<String> {
    files_at_rest(dir)
        .await
        .into_iter()
        .filter(|file| String::from_utf8_lossy(&std::fs::read(file).unwrap()).contains(text))
        .map(|file| file.display().to_string())
        .collect()
}

#[derive(diesel::QueryableByName, Debug)]
struct AuditEntry {
    #[diesel(sql_type = diesel::sql_types::Text)]
    action: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    detail: Option<String>,
}

/// The audit entries of the database at `db` whose detail quotes `text`.
fn audit_quoting(db: &str, text: &str) -> Vec<String> {
    use diesel::RunQueryDsl;
    let mut conn = crate::support::open_database(db);
    let rows: Vec<AuditEntry> = diesel::sql_query("SELECT action, detail FROM audit_log")
        .load(&mut conn)
        .expect("the audit_log table");
    rows.into_iter()
        .filter(|r| r.detail.as_deref().is_some_and(|d| d.contains(text)))
        .map(|r| format!("{} {}", r.action, r.detail.unwrap_or_default()))
        .collect()
}

async fn assigned_to(hub: &TestHub, id: i64, agent: &str) -> bool {
    hub.eventually(SOON, || async {
        hub.task_status(id).await["assigned_to"] == agent
    })
    .await
}

fn task_stats(agent: &Value) -> (i64, i64, i64, i64) {
    let s = &agent["taskStats"];
    (
        s["total"].as_i64().expect("total"),
        s["assigned"].as_i64().expect("assigned"),
        s["in_progress"].as_i64().expect("in_progress"),
        s["completed"].as_i64().expect("completed"),
    )
}

#[actix_web::test]
async fn the_documented_curl_examples_work_with_an_api_key() {
    // Seed 004's examples, sent as written (token in x-api-key), on a fresh hub.
    let hub = TestHub::spawn().await;
    let listed = key(
        &hub,
        Method::GET,
        "/api/agents?status=online&limit=10",
        MASTER,
        None,
    )
    .await
    .expect(200);
    assert_eq!(listed["total"], 0);
    assert_eq!(listed["agents"], json!([]));

    let created = key(
        &hub,
        Method::POST,
        "/api/agents",
        MASTER,
        Some(json!({
            "name": "code-reviewer",
            "role": "qa",
            "config": { "model": "claude-sonnet-4", "tools": ["bash", "read", "edit"] },
            "soul_content": "You are a meticulous code reviewer.",
            "status": "online"
        })),
    )
    .await
    .expect(201);
    let made = &created["agent"];
    assert_eq!(made["id"], 1, "the first agent of a fresh hub is number 1");
    assert_eq!(made["name"], "code-reviewer");
    assert_eq!(made["agent_id"], "code-reviewer");
    assert_eq!(made["role"], "qa");
    assert_eq!(made["status"], "online");
    assert_eq!(
        made["config"],
        json!({ "model": "claude-sonnet-4", "tools": ["bash", "read", "edit"] })
    );
    assert_eq!(made["soul_content"], "You are a meticulous code reviewer.");
    assert!(made["created_at"].is_string() && made["updated_at"].is_string());
    assert_eq!(
        made["taskStats"],
        json!({ "total": 0, "assigned": 0, "in_progress": 0, "completed": 0 })
    );

    let listed = key(
        &hub,
        Method::GET,
        "/api/agents?status=online&limit=10",
        MASTER,
        None,
    )
    .await
    .expect(200);
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["page"], 1);
    assert_eq!(listed["limit"], 10);
    assert_eq!(listed["agents"][0]["name"], "code-reviewer");
    assert_eq!(listed["agents"][0]["id"], 1);
    assert!(listed["agents"][0]["taskStats"].is_object());

    let one = key(&hub, Method::GET, "/api/agents/1", MASTER, None)
        .await
        .expect(200);
    assert_eq!(one["agent"]["name"], "code-reviewer");
    assert_eq!(one["agent"]["role"], "qa");

    let updated = key(
        &hub,
        Method::PUT,
        "/api/agents",
        MASTER,
        Some(json!({
            "name": "code-reviewer",
            "status": "busy",
            "last_activity": "Reviewing pull request #123"
        })),
    )
    .await
    .expect(200);
    assert_eq!(updated["success"], true);
    let one = agent(&hub, "1", MASTER).await;
    assert_eq!(one["status"], "busy");
    assert_eq!(one["last_activity"], "Reviewing pull request #123");

    let sent = key(
        &hub,
        Method::POST,
        "/api/agents/message",
        MASTER,
        Some(json!({
            "from": "task-manager",
            "to": "code-reviewer",
            "content": "Please review PR #123",
            "type": "request"
        })),
    )
    .await
    .expect(201);
    assert_eq!(sent["success"], true);
    assert!(sent["id"].as_i64().is_some());

    let pending = key(&hub, Method::GET, "/api/agents/1/heartbeat", MASTER, None)
        .await
        .expect(200);
    assert_eq!(pending["agent"], "code-reviewer");
    assert_eq!(pending["pending_tasks"], json!([]));
    let message = &pending["messages"][0];
    assert_eq!(message["from"], "task-manager");
    assert_eq!(message["to"], "code-reviewer");
    assert_eq!(message["content"], "Please review PR #123");
    assert_eq!(message["type"], "request");
    assert_eq!(message["id"], sent["id"]);

    let deleted = key(&hub, Method::DELETE, "/api/agents/1", MASTER, None)
        .await
        .expect(200);
    assert_eq!(deleted["success"], true);
    assert_eq!(deleted["deleted"], "code-reviewer");
    key(&hub, Method::GET, "/api/agents/1", MASTER, None)
        .await
        .expect(404);

    // A wrong key is refused, and so is no key at all.
    key(&hub, Method::GET, "/api/agents", "not-a-token", None)
        .await
        .expect(401);
    hub.raw(Method::GET, "/api/agents", None, None)
        .await
        .expect(401);
}

#[actix_web::test]
async fn every_agent_path_takes_the_numeric_id_or_the_name() {
    // Mission Control clients name agents by number; m3shd's workers by agent_id.
    let hub = TestHub::spawn().await;
    create(&hub, MASTER, json!({ "name": "filler", "role": "qa" })).await;
    let rex = create(
        &hub,
        MASTER,
        json!({ "name": "rex", "role": "developer", "soul_content": "first soul", "capabilities": ["research"] }),
    )
    .await;
    let id = rex["id"].as_i64().unwrap();
    assert_eq!(id, 2);
    for path in [id.to_string(), "rex".to_string()] {
        let one = agent(&hub, &path, MASTER).await;
        assert_eq!(
            (one["id"].as_i64(), one["agent_id"].as_str()),
            (Some(id), Some("rex"))
        );
        let soul = hub
            .get(&format!("/api/agents/{path}/soul"), MASTER)
            .await
            .expect(200);
        assert_eq!(soul["agent_id"], "rex");
        let pending = hub
            .get(&format!("/api/agents/{path}/heartbeat"), MASTER)
            .await
            .expect(200);
        assert_eq!(
            (pending["agent"].as_str(), pending["id"].as_i64()),
            (Some("rex"), Some(id))
        );
    }

    // Changes through the number land on the agent the name reads, and the other way round.
    let by_id = hub
        .put(
            &format!("/api/agents/{id}"),
            MASTER,
            json!({ "role": "architect" }),
        )
        .await
        .expect(200);
    assert_eq!(by_id["agent"]["agent_id"], "rex");
    assert_eq!(agent(&hub, "rex", MASTER).await["role"], "architect");
    hub.put(
        &format!("/api/agents/{id}/soul"),
        MASTER,
        json!({ "soul_content": "second soul" }),
    )
    .await
    .expect(200);
    assert_eq!(
        hub.get("/api/agents/rex/soul", MASTER).await.expect(200)["soul_content"],
        "second soul"
    );
    hub.put(
        "/api/agents/rex/soul",
        MASTER,
        json!({ "soul_content": "third soul" }),
    )
    .await
    .expect(200);
    assert_eq!(
        hub.get(&format!("/api/agents/{id}/soul"), MASTER)
            .await
            .expect(200)["soul_content"],
        "third soul"
    );
    hub.put(
        &format!("/api/agents/{id}/memory"),
        MASTER,
        json!({ "memory": { "lang": "rust" } }),
    )
    .await
    .expect(200);
    assert_eq!(
        hub.get("/api/agents/rex/memory", MASTER).await.expect(200)["memory"],
        json!({ "lang": "rust" })
    );
    hub.put(
        "/api/agents/rex/memory",
        MASTER,
        json!({ "memory": { "lang": "go" } }),
    )
    .await
    .expect(200);
    assert_eq!(
        hub.get(&format!("/api/agents/{id}/memory"), MASTER)
            .await
            .expect(200)["memory"],
        json!({ "lang": "go" })
    );
    let woken = hub
        .post(&format!("/api/agents/{id}/wake"), MASTER, json!({}))
        .await
        .expect(200);
    assert_eq!(woken["agent"]["agent_id"], "rex");
    hub.post("/api/agents/rex/wake", MASTER, json!({}))
        .await
        .expect(200);
    let sent = hub
        .post(
            "/api/agents/message",
            MASTER,
            json!({ "from": "ops", "to": id.to_string(), "content": "by number" }),
        )
        .await
        .expect(201);
    assert_eq!(sent["message"]["to"], "rex");
    let beat = hub
        .post(&format!("/api/agents/{id}/heartbeat"), MASTER, json!({}))
        .await
        .expect(200);
    assert_eq!(beat["agent_id"], "rex");
    assert_eq!(beat["success"], true);
    let inbox = hub
        .get("/api/agents/rex/heartbeat", MASTER)
        .await
        .expect(200);
    assert_eq!(
        contents(&inbox).last().map(String::as_str),
        Some("by number"),
        "the message sent to the number reached rex's inbox"
    );

    // Unknown numbers and names are 404 everywhere.
    for path in [
        "/api/agents/999",
        "/api/agents/ghost",
        "/api/agents/999/soul",
        "/api/agents/ghost/heartbeat",
    ] {
        hub.get(path, MASTER).await.expect(404);
    }
    hub.put("/api/agents/999", MASTER, json!({ "role": "x" }))
        .await
        .expect(404);
    hub.post("/api/agents/999/wake", MASTER, json!({}))
        .await
        .expect(404);
    hub.delete("/api/agents/999", MASTER).await.expect(404);

    // Deleting by name and by number both work.
    hub.delete("/api/agents/filler", MASTER).await.expect(200);
    hub.delete(&format!("/api/agents/{id}"), MASTER)
        .await
        .expect(200);
    assert_eq!(hub.get("/api/agents", MASTER).await.expect(200)["total"], 0);
}

#[actix_web::test]
async fn names_that_would_read_as_numbers_or_endpoints_are_refused() {
    // A handle of only digits would collide with the numeric ids; comms, message and sync
    // are endpoints under /api/agents.
    let hub = TestHub::spawn().await;
    for name in ["123", "007", "comms", "message", "sync"] {
        let text = error(
            hub.post("/api/agents", MASTER, json!({ "name": name, "role": "qa" }))
                .await,
            400,
        );
        assert!(text.contains(name), "{name}: {text}");
    }
    for name in ["comms", "sync"] {
        hub.post(
            &format!("/api/agents/{name}/register"),
            MASTER,
            json!({ "name": name, "capabilities": ["research"] }),
        )
        .await
        .expect(400);
    }
    // Registering a new agent whose id is only digits is refused the same way.
    let numeric = hub.token("4242", "worker").await;
    hub.post(
        "/api/agents/4242/register",
        &numeric,
        json!({ "name": "4242", "capabilities": ["research"] }),
    )
    .await
    .expect(400);
    hub.post(
        "/api/agents/4243/register",
        MASTER,
        json!({ "name": "4243", "capabilities": ["research"] }),
    )
    .await
    .expect(400);
    assert_eq!(hub.get("/api/agents", MASTER).await.expect(200)["total"], 0);
}

#[actix_web::test]
async fn creating_checks_every_field_and_refuses_a_taken_name() {
    let hub = TestHub::spawn().await;
    let refusals = [
        (json!({ "role": "qa" }), "name"),
        (json!({ "name": "a1" }), "role"),
        (
            json!({ "name": "a1", "role": "qa", "status": "sleeping" }),
            "status",
        ),
        (
            json!({ "name": "a1", "role": "qa", "config": ["model"] }),
            "config",
        ),
        (
            json!({ "name": "a1", "role": "qa", "config": "claude" }),
            "config",
        ),
        (
            json!({ "name": "a1", "role": "qa", "gateway_config": 5 }),
            "gateway_config",
        ),
        (json!({ "name": "a/1", "role": "qa" }), "a/1"),
    ];
    for (body, named) in refusals {
        let text = error(hub.post("/api/agents", MASTER, body.clone()).await, 400);
        assert!(
            text.contains(named),
            "{body}: expected {named:?} in {text:?}"
        );
    }
    assert_eq!(hub.get("/api/agents", MASTER).await.expect(200)["total"], 0);

    // Every operator status is accepted.
    for status in ["online", "offline", "busy", "idle", "error"] {
        let made = create(
            &hub,
            MASTER,
            json!({ "name": format!("s-{status}"), "role": "qa", "status": status }),
        )
        .await;
        assert_eq!(made["status"], status);
    }

    create(
        &hub,
        MASTER,
        json!({ "name": "code-reviewer", "role": "qa" }),
    )
    .await;
    let text = error(
        hub.post(
            "/api/agents",
            MASTER,
            json!({ "name": "code-reviewer", "role": "dev" }),
        )
        .await,
        409,
    );
    assert!(text.contains("code-reviewer"), "{text}");
    assert_eq!(agent(&hub, "code-reviewer", MASTER).await["role"], "qa");
    // A self-registered worker's name is taken as well.
    hub.agent("rex", &["research"], 1).await;
    hub.post(
        "/api/agents",
        MASTER,
        json!({ "name": "rex", "role": "qa" }),
    )
    .await
    .expect(409);

    // Without agents:manage, or without a credential at all, nothing is created.
    let viewer = hub.token("watcher", "viewer").await;
    hub.post(
        "/api/agents",
        &viewer,
        json!({ "name": "n1", "role": "qa" }),
    )
    .await
    .expect(403);
    hub.raw(
        Method::POST,
        "/api/agents",
        None,
        Some(
            json!({ "name": "n2", "role": "qa" })
                .to_string()
                .into_bytes(),
        ),
    )
    .await
    .expect(401);
    hub.get("/api/agents/n1", MASTER).await.expect(404);
    hub.get("/api/agents/n2", MASTER).await.expect(404);
}

#[actix_web::test]
async fn a_template_fills_what_the_body_leaves_out() {
    // The default config's reviewer template: role qa, capability review, its soul and
    // config; the body's config and gateway_config go over it in that order.
    let hub = TestHub::spawn().await;
    let made = create(
        &hub,
        MASTER,
        json!({
            "name": "rev",
            "template": "reviewer",
            "config": { "tools": ["read", "grep"], "temperature": 0.2 },
            "gateway_config": { "temperature": 0.0, "endpoint": "wss://gw" }
        }),
    )
    .await;
    assert_eq!(made["role"], "qa");
    assert_eq!(made["capabilities"], json!(["review"]));
    assert_eq!(
        made["soul_content"],
        "You are a meticulous code reviewer focused on correctness and security."
    );
    assert_eq!(
        made["config"],
        json!({ "model": "claude-sonnet-4", "tools": ["read", "grep"], "temperature": 0.0, "endpoint": "wss://gw" })
    );
    // What the body says wins over the template.
    let dev = create(
        &hub,
        MASTER,
        json!({ "name": "dev", "template": "developer", "role": "lead", "capabilities": ["git"], "soul_content": "Mine." }),
    )
    .await;
    assert_eq!(dev["role"], "lead");
    assert_eq!(dev["capabilities"], json!(["git"]));
    assert_eq!(dev["soul_content"], "Mine.");
    assert_eq!(dev["config"]["model"], "claude-sonnet-4");
    let text = error(
        hub.post(
            "/api/agents",
            MASTER,
            json!({ "name": "x1", "template": "pirate" }),
        )
        .await,
        404,
    );
    assert!(text.contains("pirate"), "{text}");
}

#[actix_web::test]
async fn updates_by_name_and_by_id_change_what_they_say() {
    let hub = TestHub::spawn().await;
    let made = create(
        &hub,
        MASTER,
        json!({ "name": "scribe", "role": "writer", "config": { "model": "a", "tools": ["read"] } }),
    )
    .await;
    let id = made["id"].as_i64().unwrap();

    let text = error(
        hub.put("/api/agents", MASTER, json!({ "name": "scribe" }))
            .await,
        400,
    );
    assert_eq!(text, "no fields to update");
    hub.put("/api/agents", MASTER, json!({ "status": "busy" }))
        .await
        .expect(400);
    hub.put(
        "/api/agents",
        MASTER,
        json!({ "name": "ghost", "status": "busy" }),
    )
    .await
    .expect(404);
    let text = error(
        hub.put(
            "/api/agents",
            MASTER,
            json!({ "name": "scribe", "status": "asleep" }),
        )
        .await,
        400,
    );
    assert!(text.contains("status"), "{text}");
    let reply = hub
        .put(
            "/api/agents",
            MASTER,
            json!({ "name": "scribe", "role": "editor", "session_key": "sk-1", "soul_content": "Edit." }),
        )
        .await
        .expect(200);
    assert_eq!(reply["success"], true);
    let now = agent(&hub, "scribe", MASTER).await;
    assert_eq!(now["role"], "editor");
    assert_eq!(now["session_key"], "sk-1");
    assert_eq!(now["soul_content"], "Edit.");

    // By id: config replaces, gateway_config merges over what is there.
    let replaced = hub
        .put(
            &format!("/api/agents/{id}"),
            MASTER,
            json!({ "config": { "model": "b" } }),
        )
        .await
        .expect(200);
    assert_eq!(replaced["agent"]["config"], json!({ "model": "b" }));
    let merged = hub
        .put(
            &format!("/api/agents/{id}"),
            MASTER,
            json!({ "gateway_config": { "endpoint": "wss://gw" }, "last_activity": "drafting", "capabilities": ["docs"] }),
        )
        .await
        .expect(200);
    assert_eq!(
        merged["agent"]["config"],
        json!({ "model": "b", "endpoint": "wss://gw" })
    );
    assert_eq!(merged["agent"]["last_activity"], "drafting");
    assert_eq!(merged["agent"]["capabilities"], json!(["docs"]));
    assert_eq!(
        agent(&hub, "scribe", MASTER).await["config"],
        json!({ "model": "b", "endpoint": "wss://gw" })
    );
    // The name is the agent's handle: it cannot be changed by id.
    hub.put(
        &format!("/api/agents/{id}"),
        MASTER,
        json!({ "name": "renamed", "role": "x" }),
    )
    .await
    .expect(409);
    hub.put(
        &format!("/api/agents/{id}"),
        MASTER,
        json!({ "config": [1] }),
    )
    .await
    .expect(400);
    // By id, a change of nothing shows the agent as it is (by name it is a 400, above).
    let unchanged = hub
        .put(&format!("/api/agents/{id}"), MASTER, json!({}))
        .await
        .expect(200);
    assert_eq!(unchanged["agent"]["role"], "editor");
    hub.put("/api/agents/scribe/soul", MASTER, json!({}))
        .await
        .expect(400);
    let after = agent(&hub, "scribe", MASTER).await;
    assert_eq!(after["role"], "editor");
    assert_eq!(after["agent_id"], "scribe");
    hub.get("/api/agents/renamed", MASTER).await.expect(404);
}

#[actix_web::test]
async fn the_soul_is_never_listed_and_the_session_key_is_for_admins_only() {
    let hub = TestHub::spawn().await;
    create(
        &hub,
        MASTER,
        json!({ "name": "rex", "role": "dev", "soul_content": "rex's soul", "session_key": "session-abc123" }),
    )
    .await;
    create(
        &hub,
        MASTER,
        json!({ "name": "ada", "role": "dev", "soul_content": "ada's soul" }),
    )
    .await;
    let admin = hub.token("boss", "admin").await;
    let operator = hub.token("ops", "operator").await;
    let viewer = hub.token("watcher", "viewer").await;
    let rex = hub.token("rex", "worker").await;

    for token in [
        MASTER,
        admin.as_str(),
        operator.as_str(),
        viewer.as_str(),
        rex.as_str(),
    ] {
        let list = hub.get("/api/agents", token).await.expect(200);
        for item in list["agents"].as_array().unwrap() {
            assert!(
                item.get("soul_content").is_none(),
                "a soul in a list: {item}"
            );
        }
    }
    let list = hub.get("/api/agents", &admin).await.expect(200);
    let listed_rex = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == "rex")
        .unwrap();
    assert_eq!(listed_rex["session_key"], "session-abc123");
    assert_eq!(
        agent(&hub, "rex", MASTER).await["session_key"],
        "session-abc123"
    );
    assert_eq!(
        agent(&hub, "rex", &admin).await["session_key"],
        "session-abc123"
    );

    // Overseers and the agent itself read its soul; none of them its session key.
    for token in [operator.as_str(), viewer.as_str(), rex.as_str()] {
        let one = agent(&hub, "rex", token).await;
        assert_eq!(one["soul_content"], "rex's soul");
        assert!(one.get("session_key").is_none(), "session key shown: {one}");
        assert_eq!(
            hub.get("/api/agents/rex/soul", token).await.expect(200)["soul_content"],
            "rex's soul"
        );
        let list = hub.get("/api/agents", token).await.expect(200);
        assert!(list["agents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a.get("session_key").is_none()));
    }
    // Another agent's public side is visible to rex, its soul is not.
    let ada = agent(&hub, "ada", &rex).await;
    assert_eq!(ada["agent_id"], "ada");
    assert!(ada.get("soul_content").is_none(), "{ada}");
    hub.get("/api/agents/ada/soul", &rex).await.expect(404);
    // The wake and create answers follow the same rule.
    let made = hub
        .post(
            "/api/agents",
            &operator,
            json!({ "name": "kit", "role": "qa", "session_key": "sk-kit" }),
        )
        .await
        .expect(201);
    assert!(made["agent"].get("session_key").is_none(), "{made}");
    let woken = hub
        .post("/api/agents/rex/wake", &operator, json!({}))
        .await
        .expect(200);
    assert!(woken["agent"].get("session_key").is_none(), "{woken}");
}

#[actix_web::test]
async fn a_viewer_reads_everything_and_changes_nothing() {
    // An agents file is configured, so a sync that got through would show.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agents.toml");
    std::fs::write(&file, "[[agents]]\nname = \"fromfile\"\nrole = \"qa\"\n").unwrap();
    let hub = hub_with_agents_file(&file).await;
    create(
        &hub,
        MASTER,
        json!({ "name": "rex", "role": "dev", "soul_content": "s" }),
    )
    .await;
    let viewer = hub.token("watcher", "viewer").await;
    for path in [
        "/api/agents",
        "/api/agents/rex",
        "/api/agents/1",
        "/api/agents/rex/soul",
        "/api/agents/rex/memory",
        "/api/agents/rex/heartbeat",
        "/api/agents/comms",
        "/api/agents/comms?agent=rex",
    ] {
        hub.get(path, &viewer).await.expect(200);
    }
    let forbidden = [
        (
            Method::POST,
            "/api/agents",
            json!({ "name": "new1", "role": "qa" }),
        ),
        (
            Method::PUT,
            "/api/agents",
            json!({ "name": "rex", "role": "boss" }),
        ),
        (Method::PUT, "/api/agents/rex", json!({ "role": "boss" })),
        (
            Method::PUT,
            "/api/agents/rex/soul",
            json!({ "soul_content": "mine" }),
        ),
        (
            Method::PUT,
            "/api/agents/rex/memory",
            json!({ "memory": { "k": "v" } }),
        ),
        (Method::POST, "/api/agents/rex/wake", json!({})),
        (
            Method::POST,
            "/api/agents/message",
            json!({ "from": "watcher", "to": "rex", "content": "hi" }),
        ),
        (Method::POST, "/api/agents/sync", json!({})),
        (Method::DELETE, "/api/agents/rex", Value::Null),
    ];
    for (method, path, body) in forbidden {
        let body = (!body.is_null()).then_some(body);
        let status = hub.call(method.clone(), path, &viewer, body).await.status;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    let list = hub.get("/api/agents", MASTER).await.expect(200);
    assert_eq!(list["total"], 1, "nothing was created or synced: {list}");
    let rex = agent(&hub, "rex", MASTER).await;
    assert_eq!(
        (rex["role"].as_str(), rex["soul_content"].as_str()),
        (Some("dev"), Some("s"))
    );
    assert_eq!(
        hub.get("/api/agents/rex/memory", MASTER).await.expect(200)["count"],
        0
    );
    assert_eq!(
        hub.get("/api/agents/comms", MASTER).await.expect(200)["count"],
        0
    );
}

#[actix_web::test]
async fn an_operator_manages_agents_from_creation_to_deletion() {
    let hub = TestHub::spawn().await;
    let ops = hub.token("ops", "operator").await;
    let made = create(
        &hub,
        &ops,
        json!({ "name": "rex", "role": "dev", "status": "idle" }),
    )
    .await;
    assert_eq!(made["status"], "idle");
    hub.put(
        "/api/agents",
        &ops,
        json!({ "name": "rex", "last_activity": "warming up" }),
    )
    .await
    .expect(200);
    hub.put("/api/agents/rex", &ops, json!({ "role": "lead" }))
        .await
        .expect(200);
    hub.put(
        "/api/agents/rex/soul",
        &ops,
        json!({ "soul_content": "Lead well." }),
    )
    .await
    .expect(200);
    hub.put(
        "/api/agents/rex/memory",
        &ops,
        json!({ "memory": { "team": "core" } }),
    )
    .await
    .expect(200);
    let woken = hub
        .post("/api/agents/rex/wake", &ops, json!({ "reason": "standup" }))
        .await
        .expect(200);
    assert_eq!(woken["success"], true);
    assert_eq!(
        woken["agent"]["status"], "offline",
        "woken from idle, never heard from"
    );
    hub.post(
        "/api/agents/message",
        &ops,
        json!({ "from": "ops", "to": "rex", "content": "welcome" }),
    )
    .await
    .expect(201);
    let rex = agent(&hub, "rex", &ops).await;
    assert_eq!(rex["role"], "lead");
    assert_eq!(rex["last_activity"], "warming up");
    assert_eq!(rex["soul_content"], "Lead well.");
    let inbox = hub.get("/api/agents/rex/heartbeat", &ops).await.expect(200);
    assert_eq!(contents(&inbox), vec!["standup", "welcome"]);
    let deleted = hub.delete("/api/agents/rex", &ops).await.expect(200);
    assert_eq!(deleted, json!({ "deleted": "rex", "success": true }));
    hub.get("/api/agents/rex", &ops).await.expect(404);
}

#[actix_web::test]
async fn a_worker_reaches_only_its_own_agents_private_side() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let ada = hub.agent("ada", &["research"], 1).await;
    let ada_id = agent(&hub, "ada", MASTER).await["id"].as_i64().unwrap();
    hub.put(
        "/api/agents/ada/soul",
        MASTER,
        json!({ "soul_content": "ada only" }),
    )
    .await
    .expect(200);
    hub.put(
        "/api/agents/ada/memory",
        MASTER,
        json!({ "memory": { "secret": "ada's" } }),
    )
    .await
    .expect(200);

    // Its own side.
    hub.get("/api/agents/rex/soul", &rex).await.expect(200);
    hub.get("/api/agents/rex/heartbeat", &rex).await.expect(200);
    hub.put(
        "/api/agents/rex/memory",
        &rex,
        json!({ "memory": { "mine": 1 } }),
    )
    .await
    .expect(200);
    assert_eq!(
        hub.get("/api/agents/rex/memory", &rex).await.expect(200)["memory"],
        json!({ "mine": 1 })
    );
    hub.get("/api/agents/comms?agent=rex", &rex)
        .await
        .expect(200);
    // Another agent's, by name or by number, is not there at all.
    for who in ["ada".to_string(), ada_id.to_string()] {
        hub.get(&format!("/api/agents/{who}/soul"), &rex)
            .await
            .expect(404);
        hub.get(&format!("/api/agents/{who}/memory"), &rex)
            .await
            .expect(404);
        hub.put(
            &format!("/api/agents/{who}/memory"),
            &rex,
            json!({ "memory": {} }),
        )
        .await
        .expect(404);
        hub.get(&format!("/api/agents/{who}/heartbeat"), &rex)
            .await
            .expect(404);
    }
    hub.get("/api/agents/comms?agent=ada", &rex)
        .await
        .expect(404);
    assert_eq!(
        hub.get("/api/agents/ada/memory", MASTER).await.expect(200)["memory"],
        json!({ "secret": "ada's" }),
        "ada's memory is untouched"
    );
    // It speaks only as itself, and manages nothing.
    hub.post(
        "/api/agents/message",
        &rex,
        json!({ "from": "ada", "to": "rex", "content": "forged" }),
    )
    .await
    .expect(403);
    let sent = hub
        .post(
            "/api/agents/message",
            &rex,
            json!({ "from": "rex", "to": "ada", "content": "hello ada" }),
        )
        .await
        .expect(201);
    assert_eq!(sent["message"]["from"], "rex");
    for (method, path, body) in [
        (
            Method::POST,
            "/api/agents",
            json!({ "name": "new1", "role": "qa" }),
        ),
        (Method::PUT, "/api/agents/rex", json!({ "role": "boss" })),
        (
            Method::PUT,
            "/api/agents",
            json!({ "name": "rex", "role": "boss" }),
        ),
        (
            Method::PUT,
            "/api/agents/rex/soul",
            json!({ "soul_content": "mine" }),
        ),
        (Method::POST, "/api/agents/rex/wake", json!({})),
        (Method::POST, "/api/agents/sync", json!({})),
    ] {
        let status = hub
            .call(method.clone(), path, &rex, Some(body))
            .await
            .status;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    hub.delete("/api/agents/ada", &rex).await.expect(403);
    // Its comms show its own conversations only.
    hub.post(
        "/api/agents/message",
        MASTER,
        json!({ "from": "ops", "to": "ada", "content": "not for rex" }),
    )
    .await
    .expect(201);
    let comms = hub.get("/api/agents/comms", &rex).await.expect(200);
    assert_eq!(contents(&comms), vec!["hello ada"]);
    let theirs = hub.get("/api/agents/comms", &ada).await.expect(200);
    assert_eq!(contents(&theirs), vec!["not for rex", "hello ada"]);
}

#[actix_web::test]
async fn an_agent_on_hold_gets_no_work_until_it_is_woken() {
    // An operator marked rex idle: it heartbeats, yet a task of its capability waits; a
    // wake lifts the hold and the task goes to rex, with the notice in its inbox.
    let hub = TestHub::spawn().await;
    create(
        &hub,
        MASTER,
        json!({ "name": "rex", "role": "dev", "capabilities": ["research"], "status": "idle" }),
    )
    .await;
    let rex = hub.token("rex", "worker").await;
    hub.post("/api/agents/rex/heartbeat", &rex, json!({}))
        .await
        .expect(200);
    let held = agent(&hub, "rex", MASTER).await;
    assert_eq!(held["status"], "idle");
    assert_eq!(held["presence"], "online");
    let task = hub
        .task(json!({ "title": "t", "prompt": "p", "required_capability": "research" }))
        .await;
    let id = task["id"].as_i64().unwrap();
    assert_eq!(task["status"], "queued");
    for _ in 0..4 {
        hub.post("/api/agents/rex/heartbeat", &rex, json!({}))
            .await
            .expect(200);
        actix_web::rt::time::sleep(Duration::from_millis(75)).await;
    }
    let still = hub.task_status(id).await;
    assert_eq!(still["status"], "queued", "a held agent got work: {still}");
    assert!(still["assigned_to"].is_null());

    let mut rex_stream = hub.stream(&rex).await;
    let woken = hub
        .post(
            "/api/agents/rex/wake",
            MASTER,
            json!({ "reason": "the queue needs you" }),
        )
        .await
        .expect(200);
    assert_eq!(woken["success"], true);
    assert_ne!(woken["agent"]["status"], "idle");
    assert!(assigned_to(&hub, id, "rex").await, "woken rex got the task");
    let notice = rex_stream
        .next_named("agent_wake", SOON)
        .await
        .expect("an agent_wake event on rex's own stream");
    assert_eq!(notice.data["content"], "the queue needs you");
    assert_eq!(notice.data["type"], "wake");
    assert_eq!(notice.data["to"], "rex");
    let updated = rex_stream
        .next_named("agent_updated", SOON)
        .await
        .expect("an agent_updated event");
    assert_eq!(updated.data["agent_id"], "rex");

    let after = agent(&hub, "rex", MASTER).await;
    assert_eq!(after["status"], "busy", "one slot, one task: {after}");
    let inbox = hub.get("/api/agents/rex/heartbeat", &rex).await.expect(200);
    assert_eq!(ids(&inbox, "pending_tasks"), vec![id]);
    let wake = &inbox["messages"][0];
    assert_eq!(
        (wake["type"].as_str(), wake["from"].as_str()),
        (Some("wake"), Some("master"))
    );
    assert_eq!(wake["content"], "the queue needs you");
}

#[actix_web::test]
async fn an_operator_status_of_error_or_offline_holds_and_online_or_busy_releases() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 2).await;
    for hold in ["error", "offline", "idle"] {
        let changed = hub
            .put("/api/agents/rex", MASTER, json!({ "status": hold }))
            .await
            .expect(200);
        assert_eq!(changed["agent"]["status"], hold);
        assert_eq!(changed["agent"]["presence"], "online");
    }
    let task = hub.task(json!({ "title": "t", "prompt": "p" })).await;
    let id = task["id"].as_i64().unwrap();
    hub.post("/api/agents/rex/heartbeat", &rex, json!({}))
        .await
        .expect(200);
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hub.task_status(id).await["status"], "queued");
    // A status of busy (or online) set by the operator ends the hold.
    hub.put(
        "/api/agents",
        MASTER,
        json!({ "name": "rex", "status": "busy" }),
    )
    .await
    .expect(200);
    assert!(assigned_to(&hub, id, "rex").await);
    assert_eq!(agent(&hub, "rex", MASTER).await["status"], "busy");
    hub.put("/api/agents/rex", MASTER, json!({ "status": "idle" }))
        .await
        .expect(200);
    let second = hub.task(json!({ "title": "t2", "prompt": "p" })).await;
    let second = second["id"].as_i64().unwrap();
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hub.task_status(second).await["status"],
        "queued",
        "idle holds again"
    );
    hub.put("/api/agents/rex", MASTER, json!({ "status": "online" }))
        .await
        .expect(200);
    assert!(assigned_to(&hub, second, "rex").await);
}

#[actix_web::test]
async fn a_new_agent_shows_its_declared_status_until_the_hub_hears_from_it() {
    let hub = TestHub::spawn().await;
    let plain = create(&hub, MASTER, json!({ "name": "plain", "role": "qa" })).await;
    assert_eq!(plain["status"], "offline");
    assert!(plain["last_seen"].is_null());
    let declared = create(
        &hub,
        MASTER,
        json!({ "name": "keen", "role": "qa", "status": "online" }),
    )
    .await;
    assert_eq!(declared["status"], "online");
    assert_eq!(declared["presence"], "offline");
    let busy = create(
        &hub,
        MASTER,
        json!({ "name": "bee", "role": "qa", "status": "busy" }),
    )
    .await;
    assert_eq!(busy["status"], "busy");
    let listed = hub
        .get("/api/agents?status=online", MASTER)
        .await
        .expect(200);
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["agents"][0]["agent_id"], "keen");

    // Any call with the agent's own token is contact: liveness shows from then on.
    let plain_token = hub.token("plain", "worker").await;
    hub.get("/api/agents", &plain_token).await.expect(200);
    let bee_token = hub.token("bee", "worker").await;
    hub.get("/api/tasks", &bee_token).await.expect(200);
    assert!(
        hub.eventually(SOON, || async {
            agent(&hub, "plain", MASTER).await["status"] == "online"
        })
        .await,
        "a call with its own token brought plain online"
    );
    let now = agent(&hub, "plain", MASTER).await;
    assert_eq!(now["presence"], "online");
    assert!(now["last_seen"].is_string());
    assert!(
        hub.eventually(SOON, || async {
            agent(&hub, "bee", MASTER).await["presence"] == "online"
        })
        .await
    );
    assert_eq!(
        agent(&hub, "bee", MASTER).await["status"],
        "busy",
        "declared busy while online"
    );
    // An operator's token calling does not make some other agent alive.
    assert_eq!(agent(&hub, "keen", MASTER).await["presence"], "offline");
}

#[actix_web::test]
async fn a_silent_agent_falls_back_to_offline_and_a_call_revives_it() {
    let hub = TestHub::spawn_with(|s| s.heartbeat_timeout = 1).await;
    create(
        &hub,
        MASTER,
        json!({ "name": "rex", "role": "qa", "status": "online" }),
    )
    .await;
    let rex = hub.token("rex", "worker").await;
    hub.get("/api/agents/rex/heartbeat", &rex).await.expect(200);
    assert_eq!(agent(&hub, "rex", MASTER).await["status"], "online");
    assert!(
        hub.eventually(Duration::from_secs(4), || async {
            agent(&hub, "rex", MASTER).await["status"] == "offline"
        })
        .await,
        "once heard from, liveness wins over the declared online"
    );
    hub.get("/api/agents/rex/heartbeat", &rex).await.expect(200);
    assert!(
        hub.eventually(SOON, || async {
            agent(&hub, "rex", MASTER).await["status"] == "online"
        })
        .await
    );
}

#[actix_web::test]
async fn task_stats_count_what_each_agent_holds_by_status() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 3).await;
    hub.agent("ada", &["git"], 1).await;
    let mut tasks = Vec::new();
    for i in 0..3 {
        let task = hub
            .task(json!({ "title": format!("t{i}"), "prompt": "p", "required_capability": "research" }))
            .await;
        tasks.push(task["id"].as_i64().unwrap());
    }
    for id in &tasks {
        assert!(assigned_to(&hub, *id, "rex").await);
    }
    hub.put(
        &format!("/api/tasks/{}", tasks[0]),
        &rex,
        json!({ "status": "running" }),
    )
    .await
    .expect(200);
    hub.put(
        &format!("/api/tasks/{}", tasks[1]),
        &rex,
        json!({ "status": "running" }),
    )
    .await
    .expect(200);
    hub.put(
        &format!("/api/tasks/{}", tasks[1]),
        &rex,
        json!({ "status": "done", "output": "ok" }),
    )
    .await
    .expect(200);

    assert_eq!(task_stats(&agent(&hub, "rex", MASTER).await), (3, 1, 1, 1));
    assert_eq!(task_stats(&agent(&hub, "ada", MASTER).await), (0, 0, 0, 0));
    let list = hub.get("/api/agents", MASTER).await.expect(200);
    let listed: Vec<(String, (i64, i64, i64, i64))> = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["agent_id"].as_str().unwrap().to_string(), task_stats(a)))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("ada".to_string(), (0, 0, 0, 0)),
            ("rex".to_string(), (3, 1, 1, 1))
        ]
    );

    // The pending-work poll: assigned and running, newest first, paged.
    let pending = hub
        .get("/api/agents/rex/heartbeat", MASTER)
        .await
        .expect(200);
    assert_eq!(ids(&pending, "pending_tasks"), vec![tasks[2], tasks[0]]);
    assert_eq!(pending["pending_total"], 2);
    assert_eq!(pending["pending_tasks"][0]["status"], "assigned");
    assert_eq!(pending["pending_tasks"][1]["status"], "running");
    assert_eq!(pending["pending_tasks"][0]["title"], "t2");
    assert_eq!(
        pending["pending_tasks"][0]["required_capability"],
        "research"
    );
    assert!(pending["pending_tasks"][0]["assigned_at"].is_string());
    let first = hub
        .get("/api/agents/rex/heartbeat?limit=1", MASTER)
        .await
        .expect(200);
    assert_eq!(ids(&first, "pending_tasks"), vec![tasks[2]]);
    assert_eq!(first["pending_total"], 2);
    let second = hub
        .get("/api/agents/rex/heartbeat?limit=1&offset=1", MASTER)
        .await
        .expect(200);
    assert_eq!(ids(&second, "pending_tasks"), vec![tasks[0]]);

    // Deleting rex puts its unfinished tasks back; the finished one stays its own.
    hub.delete("/api/agents/rex", MASTER).await.expect(200);
    for id in [tasks[0], tasks[2]] {
        assert!(
            hub.eventually(SOON, || async {
                hub.task_status(id).await["status"] == "queued"
            })
            .await,
            "task {id} went back to the queue"
        );
    }
    assert_eq!(hub.task_status(tasks[1]).await["status"], "done");
}

#[actix_web::test]
async fn direct_messages_reach_the_recipients_inbox_and_stream_only() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let ada = hub.agent("ada", &["research"], 1).await;
    let viewer = hub.token("watcher", "viewer").await;
    let mut rex_stream = hub.stream(&rex).await;
    let mut ada_stream = hub.stream(&ada).await;
    let mut overseer = hub.stream(&viewer).await;

    let sent = hub
        .post(
            "/api/agents/message",
            MASTER,
            json!({ "from": "task-manager", "to": "rex", "content": "for rex", "type": "request" }),
        )
        .await
        .expect(201);
    assert_eq!(sent["success"], true);
    assert_eq!(sent["message"]["content"], "for rex");
    hub.post(
        "/api/agents/message",
        &rex,
        json!({ "from": "rex", "to": "ada", "content": "for ada" }),
    )
    .await
    .expect(201);
    let to_rex = rex_stream
        .next_named("agent_message", SOON)
        .await
        .expect("rex's event");
    assert_eq!(to_rex.data["content"], "for rex");
    assert_eq!(to_rex.data["type"], "request");
    assert_eq!(to_rex.data["from"], "task-manager");
    let to_ada = ada_stream
        .next_named("agent_message", SOON)
        .await
        .expect("ada's event");
    assert_eq!(
        to_ada.data["content"], "for ada",
        "ada never sees rex's message"
    );
    assert_eq!(
        to_ada.data["type"], "message",
        "the type defaults to message"
    );
    let seen = overseer
        .next_named("agent_message", SOON)
        .await
        .expect("the overseer's");
    assert_eq!(seen.data["content"], "for rex");

    // Comms: newest first, filtered by agent, capped at 200; never in channel chat.
    let all = hub.get("/api/agents/comms", MASTER).await.expect(200);
    assert_eq!(contents(&all), vec!["for ada", "for rex"]);
    assert_eq!(all["count"], 2);
    let about_rex = hub
        .get("/api/agents/comms?agent=task-manager", MASTER)
        .await
        .expect(200);
    assert_eq!(contents(&about_rex), vec!["for rex"]);
    let one = hub
        .get("/api/agents/comms?limit=1", MASTER)
        .await
        .expect(200);
    assert_eq!(contents(&one), vec!["for ada"]);
    let chat = hub.get("/api/messages", MASTER).await.expect(200);
    let chat_text = chat.to_string();
    assert!(
        !chat_text.contains("for rex") && !chat_text.contains("for ada"),
        "{chat}"
    );

    // Refusals name the missing field; an unknown recipient is 404.
    for (body, field) in [
        (json!({ "to": "rex", "content": "c" }), "from"),
        (json!({ "from": "a", "content": "c" }), "to"),
        (json!({ "from": "a", "to": "rex" }), "content"),
        (
            json!({ "from": "a", "to": "rex", "content": "  " }),
            "content",
        ),
    ] {
        let text = error(hub.post("/api/agents/message", MASTER, body).await, 400);
        assert!(text.contains(field), "{field}: {text}");
    }
    hub.post(
        "/api/agents/message",
        MASTER,
        json!({ "from": "a", "to": "ghost", "content": "c" }),
    )
    .await
    .expect(404);
    assert_eq!(
        hub.get("/api/agents/comms", MASTER).await.expect(200)["count"],
        2
    );
}

#[actix_web::test]
async fn a_poll_by_the_agent_consumes_its_messages_and_an_overseers_does_not() {
    let hub = TestHub::spawn().await;
    let made = create(&hub, MASTER, json!({ "name": "rex", "role": "dev" })).await;
    let id = made["id"].as_i64().unwrap();
    let rex = hub.token("rex", "worker").await;
    let ops = hub.token("ops", "operator").await;
    for text in ["one", "two"] {
        hub.post(
            "/api/agents/message",
            MASTER,
            json!({ "from": "lead", "to": "rex", "content": text }),
        )
        .await
        .expect(201);
    }
    // Overseers look as often as they like.
    for token in [MASTER, ops.as_str(), MASTER] {
        let look = hub
            .get("/api/agents/rex/heartbeat", token)
            .await
            .expect(200);
        assert_eq!(contents(&look), vec!["one", "two"]);
    }
    // The agent's own poll (by number here) hands them over once, oldest first.
    let polled = hub
        .get(&format!("/api/agents/{id}/heartbeat"), &rex)
        .await
        .expect(200);
    assert_eq!(contents(&polled), vec!["one", "two"]);
    for field in [
        "id",
        "from",
        "to",
        "type",
        "content",
        "created_at",
        "sender",
        "recipient",
        "channel",
    ] {
        assert!(
            polled["messages"][0].get(field).is_some(),
            "{field} missing: {polled}"
        );
    }
    assert_eq!(
        hub.get("/api/agents/rex/heartbeat", &rex).await.expect(200)["messages"],
        json!([])
    );
    assert_eq!(
        hub.get("/api/agents/rex/heartbeat", MASTER)
            .await
            .expect(200)["messages"],
        json!([])
    );
    // A later message is new again; the history keeps them all.
    hub.post(
        "/api/agents/message",
        &ops,
        json!({ "from": "ops", "to": "rex", "content": "three" }),
    )
    .await
    .expect(201);
    assert_eq!(
        contents(&hub.get("/api/agents/rex/heartbeat", &rex).await.expect(200)),
        vec!["three"]
    );
    assert_eq!(
        contents(
            &hub.get("/api/agents/comms?agent=rex", MASTER)
                .await
                .expect(200)
        ),
        vec!["three", "two", "one"]
    );
    // POST on the same path is still seed 000's heartbeat.
    let beat = hub
        .post("/api/agents/rex/heartbeat", &rex, json!({}))
        .await
        .expect(200);
    assert_eq!(
        (beat["ok"].as_bool(), beat["success"].as_bool()),
        (Some(true), Some(true))
    );
}

#[actix_web::test]
async fn messages_souls_and_session_keys_are_sealed_at_rest() {
    let hub = TestHub::spawn().await;
    create(
        &hub,
        MASTER,
        json!({ "name": "rex", "role": "dev", "soul_content": "soul-plaintext-marker", "session_key": "session-plaintext-marker" }),
    )
    .await;
    hub.post(
        "/api/agents/message",
        MASTER,
        json!({ "from": "lead", "to": "rex", "content": "message-plaintext-marker" }),
    )
    .await
    .expect(201);
    hub.post(
        "/api/agents/rex/wake",
        MASTER,
        json!({ "reason": "wake-plaintext-marker" }),
    )
    .await
    .expect(200);
    // Readable through the API…
    let inbox = hub
        .get("/api/agents/rex/heartbeat", MASTER)
        .await
        .expect(200);
    assert_eq!(
        contents(&inbox),
        vec!["message-plaintext-marker", "wake-plaintext-marker"]
    );
    assert_eq!(
        agent(&hub, "rex", MASTER).await["session_key"],
        "session-plaintext-marker"
    );
    // …and nowhere in the files.
    let stored = bytes_at_rest(hub.dir.path()).await;
    assert!(
        stored.contains("agent.create"),
        "the scan did read the database"
    );
    let copy = tempfile::tempdir().unwrap();
    let snapshot = hub.copy_database(&copy.path().join("copy.db"));
    for secret in [
        "message-plaintext-marker",
        "wake-plaintext-marker",
        "soul-plaintext-marker",
        "session-plaintext-marker",
    ] {
        let files = files_holding(hub.dir.path(), secret).await;
        assert!(
            files.is_empty(),
            "{secret:?} is stored in plain text in {files:?}; audit entries quoting it: {:?}",
            audit_quoting(&snapshot, secret)
        );
    }
}

#[actix_web::test]
async fn the_memory_object_round_trips_json_values_and_replaces_the_whole_memory() {
    let hub = TestHub::spawn().await;
    let made = create(&hub, MASTER, json!({ "name": "rex", "role": "dev" })).await;
    let id = made["id"].as_i64().unwrap();
    let memory = json!({
        "model": "claude-sonnet-4",
        "max_tokens": 4096,
        "ratio": 0.25,
        "verbose": true,
        "tools": ["bash", "read"],
        "limits": { "rpm": 500, "burst": [1, 2] },
        "nothing": null
    });
    let stored = hub
        .put(
            "/api/agents/rex/memory",
            MASTER,
            json!({ "memory": memory }),
        )
        .await
        .expect(200);
    assert_eq!(stored["success"], true);
    assert_eq!(stored["memory"], memory);
    let read = hub
        .get(&format!("/api/agents/{id}/memory"), MASTER)
        .await
        .expect(200);
    assert_eq!(read["memory"], memory);
    assert_eq!(read["memory_truncated"], false);
    assert_eq!(read["count"], 7);
    let listed = read["memories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "model")
        .cloned()
        .expect("the model entry in the list form");
    assert_eq!(listed["value"], "claude-sonnet-4");
    // Seed 000's entry form writes into the same memory.
    hub.post(
        "/api/agents/rex/memory",
        MASTER,
        json!({ "key": "note", "value": "plain text" }),
    )
    .await
    .expect(201);
    assert_eq!(
        hub.get("/api/agents/rex/memory", MASTER).await.expect(200)["memory"]["note"],
        "plain text"
    );
    // A PUT replaces everything.
    let replaced = hub
        .put(
            &format!("/api/agents/{id}/memory"),
            MASTER,
            json!({ "memory": { "only": [true] } }),
        )
        .await
        .expect(200);
    assert_eq!(replaced["memory"], json!({ "only": [true] }));
    let read = hub.get("/api/agents/rex/memory", MASTER).await.expect(200);
    assert_eq!(read["memory"], json!({ "only": [true] }));
    assert_eq!(read["count"], 1);
    hub.get("/api/agents/rex/memory/note", MASTER)
        .await
        .expect(404);
    for bad in [
        json!({ "memory": [1, 2] }),
        json!({ "memory": "text" }),
        json!({}),
        json!({ "memory": null }),
    ] {
        hub.put("/api/agents/rex/memory", MASTER, bad.clone())
            .await
            .expect(400);
    }
    assert_eq!(
        hub.get("/api/agents/rex/memory", MASTER).await.expect(200)["memory"],
        json!({ "only": [true] }),
        "a refused PUT changes nothing"
    );
    hub.put("/api/agents/rex/memory", MASTER, json!({ "memory": {} }))
        .await
        .expect(200);
    assert_eq!(
        hub.get("/api/agents/rex/memory", MASTER).await.expect(200)["count"],
        0
    );
    let viewer = hub.token("watcher", "viewer").await;
    hub.put(
        "/api/agents/rex/memory",
        &viewer,
        json!({ "memory": { "a": 1 } }),
    )
    .await
    .expect(403);
}

#[actix_web::test]
async fn changes_are_limited_per_caller_but_never_the_master_or_heartbeats() {
    let hub = TestHub::spawn_with(|s| s.agent_mutations_per_minute = 3).await;
    let ops = hub.token("ops", "operator").await;
    let other = hub.token("ops2", "operator").await;
    for i in 0..3 {
        let (reply, _) = send_key(
            &hub.base,
            Method::POST,
            "/api/agents",
            &ops,
            Some(json!({ "name": format!("a{i}"), "role": "qa" })),
        )
        .await;
        reply.expect(201);
    }
    let (refused, headers) = send_key(
        &hub.base,
        Method::POST,
        "/api/agents",
        &ops,
        Some(json!({ "name": "a3", "role": "qa" })),
    )
    .await;
    refused.expect(429);
    let retry: u64 = headers
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("whole seconds");
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
    hub.get("/api/agents/a3", MASTER).await.expect(404);
    // Every kind of change counts against the same budget.
    for (method, path, body) in [
        (Method::PUT, "/api/agents/a0", json!({ "role": "x" })),
        (
            Method::PUT,
            "/api/agents",
            json!({ "name": "a0", "role": "x" }),
        ),
        (
            Method::PUT,
            "/api/agents/a0/soul",
            json!({ "soul_content": "x" }),
        ),
        (
            Method::PUT,
            "/api/agents/a0/memory",
            json!({ "memory": {} }),
        ),
        (Method::POST, "/api/agents/a0/wake", json!({})),
        (
            Method::POST,
            "/api/agents/message",
            json!({ "from": "ops", "to": "a0", "content": "x" }),
        ),
    ] {
        let status = hub
            .call(method.clone(), path, &ops, Some(body))
            .await
            .status;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{method} {path}");
    }
    hub.delete("/api/agents/a0", &ops).await.expect(429);
    assert_eq!(agent(&hub, "a0", MASTER).await["role"], "qa");
    // Another caller has its own budget; the master has none.
    create(&hub, &other, json!({ "name": "b0", "role": "qa" })).await;
    for i in 0..6 {
        create(
            &hub,
            MASTER,
            json!({ "name": format!("m{i}"), "role": "qa" }),
        )
        .await;
        hub.put("/api/agents/m0", MASTER, json!({ "role": format!("r{i}") }))
            .await
            .expect(200);
    }
    // Heartbeats and polls are not changes.
    let rex = hub.agent("rex", &["research"], 1).await;
    for _ in 0..8 {
        hub.post("/api/agents/rex/heartbeat", &rex, json!({}))
            .await
            .expect(200);
        hub.get("/api/agents/rex/heartbeat", &rex).await.expect(200);
    }
}

/// A hub whose agents file is `file`.
async fn hub_with_agents_file(file: &std::path::Path) -> TestHub {
    let path = file.to_string_lossy().into_owned();
    TestHub::spawn_with(move |s| s.agents_file = path).await
}

#[actix_web::test]
async fn sync_creates_then_updates_agents_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agents.toml");
    std::fs::write(
        &file,
        r#"[[agents]]
name = "code-reviewer"
role = "qa"
capabilities = ["review"]
soul = "You are a meticulous code reviewer."
config = { model = "claude-sonnet-4", tools = ["read"] }

[[agents]]
name = "researcher"
role = "analyst"
capabilities = ["research"]
"#,
    )
    .unwrap();
    let hub = hub_with_agents_file(&file).await;
    let ops = hub.token("ops", "operator").await;
    let first = hub
        .post("/api/agents/sync", &ops, json!({}))
        .await
        .expect(200);
    assert_eq!(first, json!({ "synced": 2, "created": 2, "updated": 0 }));
    let reviewer = agent(&hub, "code-reviewer", MASTER).await;
    assert_eq!(reviewer["role"], "qa");
    assert_eq!(reviewer["capabilities"], json!(["review"]));
    assert_eq!(
        reviewer["soul_content"],
        "You are a meticulous code reviewer."
    );
    assert_eq!(
        reviewer["config"],
        json!({ "model": "claude-sonnet-4", "tools": ["read"] })
    );
    assert_eq!(reviewer["status"], "offline");
    assert_eq!(
        agent(&hub, "researcher", MASTER).await["capabilities"],
        json!(["research"])
    );

    // Unchanged entries are not updates; a changed one is, a new one is created.
    let again = hub
        .post("/api/agents/sync", &ops, json!({}))
        .await
        .expect(200);
    assert_eq!(again, json!({ "synced": 2, "created": 0, "updated": 0 }));
    std::fs::write(
        &file,
        r#"[[agents]]
name = "code-reviewer"
role = "security"
capabilities = ["review"]
soul = "You are a meticulous code reviewer."
config = { model = "claude-sonnet-4", tools = ["read"] }

[[agents]]
name = "researcher"
role = "analyst"
capabilities = ["research"]

[[agents]]
name = "writer"
role = "docs"
"#,
    )
    .unwrap();
    let third = hub
        .post("/api/agents/sync", MASTER, json!({}))
        .await
        .expect(200);
    assert_eq!(third, json!({ "synced": 3, "created": 1, "updated": 1 }));
    assert_eq!(
        agent(&hub, "code-reviewer", MASTER).await["role"],
        "security"
    );
    assert_eq!(agent(&hub, "writer", MASTER).await["role"], "docs");
    assert_eq!(hub.get("/api/agents", MASTER).await.expect(200)["total"], 3);
}

#[actix_web::test]
async fn syncing_an_entry_that_leaves_out_capabilities_keeps_the_agents_own() {
    // An entry gives what it names: leaving out the role, the soul or the config keeps
    // what the agent has, and leaving out capabilities must too, or a working agent would
    // silently stop receiving its tasks.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agents.toml");
    std::fs::write(&file, "[[agents]]\nname = \"rex\"\nrole = \"researcher\"\n").unwrap();
    let hub = hub_with_agents_file(&file).await;
    hub.agent("rex", &["research"], 1).await;
    let synced = hub
        .post("/api/agents/sync", MASTER, json!({}))
        .await
        .expect(200);
    assert_eq!(synced["updated"], 1);
    let rex = agent(&hub, "rex", MASTER).await;
    assert_eq!(rex["role"], "researcher");
    assert_eq!(rex["capabilities"], json!(["research"]), "{rex}");
    let task = hub.task(json!({ "title": "t", "prompt": "p" })).await;
    assert!(assigned_to(&hub, task["id"].as_i64().unwrap(), "rex").await);
}

#[actix_web::test]
async fn a_missing_or_malformed_agents_file_is_a_422_that_changes_nothing() {
    // No file configured at all: the hub is not set up for this (409).
    let hub = TestHub::spawn().await;
    let text = error(hub.post("/api/agents/sync", MASTER, json!({})).await, 409);
    assert!(text.contains("agents_file"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agents.toml");
    let hub = hub_with_agents_file(&file).await;
    let shown = file.display().to_string();
    // Configured, but not there.
    let text = error(hub.post("/api/agents/sync", MASTER, json!({})).await, 422);
    assert!(text.contains(&shown), "{text}");
    // Malformed on line 7: the first entry is fine, yet nothing is created.
    std::fs::write(
        &file,
        "[[agents]]\nname = \"alpha\"\nrole = \"qa\"\n\n[[agents]]\nname = \"beta\"\nrole = \"qa\" \"extra\"\n",
    )
    .unwrap();
    let text = error(hub.post("/api/agents/sync", MASTER, json!({})).await, 422);
    assert!(text.contains(&shown), "{text}");
    assert!(text.contains("line 7"), "{text}");
    // A bad entry (a digits-only name) refuses the whole file too.
    std::fs::write(
        &file,
        "[[agents]]\nname = \"alpha\"\n\n[[agents]]\nname = \"12\"\n",
    )
    .unwrap();
    hub.post("/api/agents/sync", MASTER, json!({}))
        .await
        .expect(422);
    assert_eq!(hub.get("/api/agents", MASTER).await.expect(200)["total"], 0);

    // The JSON form reports its line as well.
    let json_file = dir.path().join("agents.json");
    std::fs::write(
        &json_file,
        "{\"agents\": [\n  {\"name\": \"alpha\"},\n  {\"name\": }\n]}\n",
    )
    .unwrap();
    let hub = hub_with_agents_file(&json_file).await;
    let text = error(hub.post("/api/agents/sync", MASTER, json!({})).await, 422);
    assert!(text.contains("line 3"), "{text}");
    assert!(text.contains(&json_file.display().to_string()), "{text}");
    assert_eq!(hub.get("/api/agents", MASTER).await.expect(200)["total"], 0);
}

#[actix_web::test]
async fn a_name_listed_twice_in_the_agents_file_is_reported_where_it_repeats() {
    // The reported line must point at one of the two `name = "review"` lines, not at the
    // first place the word happens to appear in the file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agents.toml");
    std::fs::write(
        &file,
        "[[agents]]\nname = \"lead\"\ncapabilities = [\"review\"]\n\n[[agents]]\nname = \"review\"\n\n[[agents]]\nname = \"review\"\n",
    )
    .unwrap();
    let hub = hub_with_agents_file(&file).await;
    let text = error(hub.post("/api/agents/sync", MASTER, json!({})).await, 422);
    assert!(text.contains("review"), "{text}");
    assert!(
        text.contains("line 9") || text.contains("line 6"),
        "the duplicate is on lines 6 and 9: {text}"
    );
    assert_eq!(hub.get("/api/agents", MASTER).await.expect(200)["total"], 0);
}

#[actix_web::test]
async fn write_to_gateway_writes_a_file_that_sync_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agents.toml");
    let hub = hub_with_agents_file(&file).await;
    let made = hub
        .post(
            "/api/agents",
            MASTER,
            json!({
                "name": "scribe",
                "role": "writer",
                "capabilities": ["docs"],
                "config": { "model": "claude-sonnet-4" },
                "gateway_config": { "endpoint": "wss://gw" },
                "soul_content": "Write plainly.",
                "write_to_gateway": true
            }),
        )
        .await
        .expect(201);
    assert!(made.get("warning").is_none(), "{made}");
    let written = std::fs::read_to_string(&file).expect("the agents file was written");
    assert!(
        written.contains("scribe") && written.contains("Write plainly."),
        "{written}"
    );
    hub.put(
        "/api/agents/scribe",
        MASTER,
        json!({ "role": "editor", "write_to_gateway": true }),
    )
    .await
    .expect(200);
    assert!(std::fs::read_to_string(&file).unwrap().contains("editor"));

    // Gone from the hub, the file brings it back as it was written.
    hub.delete("/api/agents/scribe", MASTER).await.expect(200);
    let synced = hub
        .post("/api/agents/sync", MASTER, json!({}))
        .await
        .expect(200);
    assert_eq!(synced, json!({ "synced": 1, "created": 1, "updated": 0 }));
    let back = agent(&hub, "scribe", MASTER).await;
    assert_eq!(back["role"], "editor");
    assert_eq!(back["capabilities"], json!(["docs"]));
    assert_eq!(
        back["config"],
        json!({ "model": "claude-sonnet-4", "endpoint": "wss://gw" })
    );
    assert_eq!(back["soul_content"], "Write plainly.");

    // The JSON form too, on a fresh hub.
    let json_file = dir.path().join("agents.json");
    let other = hub_with_agents_file(&json_file).await;
    create(
        &other,
        MASTER,
        json!({ "name": "kit", "role": "qa", "write_to_gateway": true }),
    )
    .await;
    let parsed: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_file).unwrap()).unwrap();
    assert_eq!(parsed["agents"][0]["name"], "kit");
    assert_eq!(parsed["agents"][0]["role"], "qa");

    // A file that cannot be written is a warning beside the created agent.
    let unwritable = dir.path().join("no-such-dir").join("agents.toml");
    let third = hub_with_agents_file(&unwritable).await;
    let made = third
        .post(
            "/api/agents",
            MASTER,
            json!({ "name": "lost", "role": "qa", "write_to_gateway": true }),
        )
        .await
        .expect(201);
    assert!(
        made["warning"].as_str().is_some_and(|w| !w.is_empty()),
        "{made}"
    );
    assert_eq!(made["agent"]["agent_id"], "lost");
    agent(&third, "lost", MASTER).await;
}

#[actix_web::test]
async fn an_mc_session_cookie_signs_in_like_the_hubs_own() {
    let hub = TestHub::spawn().await;
    create(
        &hub,
        MASTER,
        json!({ "name": "rex", "role": "dev", "soul_content": "s" }),
    )
    .await;
    hub.post(
        "/api/admin/users",
        MASTER,
        json!({ "username": "otto", "password": "correct horse", "role": "operator" }),
    )
    .await
    .expect(201);
    let response = awc::Client::new()
        .post(format!("{}/api/login", hub.base))
        .send_json(&json!({ "username": "otto", "password": "correct horse" }))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let set = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_string();
    let value = set
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("m3shd_session="))
        .expect("the m3shd_session cookie")
        .to_string();
    let with = |method: Method, path: &str, cookie: String| {
        awc::Client::new()
            .request(method, format!("{}{path}", hub.base))
            .insert_header(("Cookie", cookie))
    };
    let mut list = with(Method::GET, "/api/agents", format!("mc-session={value}"))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let body: Value = serde_json::from_slice(&list.body().await.unwrap()).unwrap();
    assert_eq!(body["agents"][0]["agent_id"], "rex");
    let mut one = with(Method::GET, "/api/agents/1", format!("mc-session={value}"))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    let body: Value = serde_json::from_slice(&one.body().await.unwrap()).unwrap();
    assert_eq!(body["agent"]["soul_content"], "s");
    // A forged one is refused; a write from another site with it is too.
    let forged = with(Method::GET, "/api/agents", "mc-session=forged".into())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let cross = with(Method::POST, "/api/agents", format!("mc-session={value}"))
        .insert_header(("Origin", "https://evil.example"))
        .send_json(&json!({ "name": "evil", "role": "qa" }))
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    hub.get("/api/agents/evil", MASTER).await.expect(404);
}

#[actix_web::test]
async fn the_list_filters_by_status_and_role_and_pages() {
    let hub = TestHub::spawn().await;
    for (name, role, status) in [
        ("a1", "qa", "idle"),
        ("a2", "qa", "error"),
        ("a3", "dev", "idle"),
        ("a4", "dev", "online"),
        ("a5", "analyst", "offline"),
    ] {
        create(
            &hub,
            MASTER,
            json!({ "name": name, "role": role, "status": status }),
        )
        .await;
    }
    let names = |list: &Value| -> Vec<String> {
        list["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["agent_id"].as_str().unwrap().to_string())
            .collect()
    };
    let qa = hub.get("/api/agents?role=qa", MASTER).await.expect(200);
    assert_eq!(
        (names(&qa), qa["total"].as_i64()),
        (vec!["a1".into(), "a2".into()], Some(2))
    );
    let idle = hub.get("/api/agents?status=idle", MASTER).await.expect(200);
    assert_eq!(names(&idle), vec!["a1", "a3"]);
    let both = hub
        .get("/api/agents?status=idle&role=dev", MASTER)
        .await
        .expect(200);
    assert_eq!(names(&both), vec!["a3"]);
    let page = hub
        .get("/api/agents?limit=2&offset=2", MASTER)
        .await
        .expect(200);
    assert_eq!(names(&page), vec!["a3", "a4"]);
    assert_eq!(
        (
            page["total"].as_i64(),
            page["page"].as_i64(),
            page["limit"].as_i64()
        ),
        (Some(5), Some(2), Some(2))
    );
    let capped = hub.get("/api/agents?limit=500", MASTER).await.expect(200);
    assert_eq!(capped["limit"], 200);
    let default = hub.get("/api/agents", MASTER).await.expect(200);
    assert_eq!(
        (default["limit"].as_i64(), default["page"].as_i64()),
        (Some(50), Some(1))
    );
    hub.get("/api/agents?limit=0", MASTER).await.expect(400);
    hub.get("/api/agents?offset=-1", MASTER).await.expect(400);
}

/// Starts `m3shd serve` on `db` and waits until it answers; dropping it is a SIGKILL.
async fn start_binary(db: &std::path::Path, log: &std::path::Path) -> HubProcess {
    let env = [
        ("M3SHDUP_ENCRYPT_KEY", "managed-agents-test-key"),
        ("M3SHDUP_HEARTBEAT_TIMEOUT", "30"),
    ];
    serve(MASTER, db, log, &env).await
}

#[derive(diesel::QueryableByName, Debug)]
struct InboxItem {
    #[diesel(sql_type = diesel::sql_types::Text)]
    agent_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    kind: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    message_id: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    task_id: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    acked_at: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    deliveries: i32,
}

fn inbox_items(db: &std::path::Path) -> Vec<InboxItem> {
    use diesel::RunQueryDsl;
    let mut conn = crate::support::open_database(&crate::support::database_url_at(db));
    diesel::sql_query(
        "SELECT agent_id, kind, message_id, task_id, acked_at, deliveries FROM inbox_items ORDER BY id",
    )
    .load(&mut conn)
    .expect("the inbox_items table")
}

#[actix_web::test]
async fn the_inbox_survives_a_sigkill_and_is_handed_over_once_after_it() {
    // The real binary: what was addressed to rex (a message, a wake notice, a task) is in
    // its inbox after a crash, and its own poll after the restart receives it once.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let log = dir.path().join("hub.log");
    let hub = start_binary(&db, &log).await;
    let base = hub.base.clone();
    let made = send_key(
        &base,
        Method::POST,
        "/api/agents",
        MASTER,
        Some(
            json!({ "name": "rex", "role": "dev", "capabilities": ["research"], "status": "idle" }),
        ),
    )
    .await
    .0
    .expect(201);
    let id = made["agent"]["id"].as_i64().unwrap();
    let issued = send_key(
        &base,
        Method::POST,
        "/api/admin/tokens",
        MASTER,
        Some(json!({ "agent_id": "rex", "name": "rex", "role": "worker" })),
    )
    .await
    .0
    .expect(201);
    let rex = issued["token"].as_str().unwrap().to_string();
    send_key(
        &base,
        Method::POST,
        "/api/agents/rex/heartbeat",
        &rex,
        Some(json!({})),
    )
    .await
    .0
    .expect(200);
    send_key(
        &base,
        Method::POST,
        "/api/agents/message",
        MASTER,
        Some(json!({ "from": "lead", "to": "rex", "content": "crash-proof message", "type": "request" })),
    )
    .await
    .0
    .expect(201);
    let task = send_key(
        &base,
        Method::POST,
        "/api/tasks",
        MASTER,
        Some(json!({ "title": "after the wake", "prompt": "p" })),
    )
    .await
    .0
    .expect(201);
    let task_id = task["id"].as_i64().unwrap();
    assert_eq!(task["status"], "queued", "rex is on hold");
    send_key(
        &base,
        Method::POST,
        &format!("/api/agents/{id}/wake"),
        MASTER,
        Some(json!({ "reason": "crash-proof wake" })),
    )
    .await
    .0
    .expect(200);
    let mut assigned = false;
    for _ in 0..100 {
        let (reply, _) = send_key(
            &base,
            Method::GET,
            &format!("/api/tasks/{task_id}"),
            MASTER,
            None,
        )
        .await;
        if reply.body["assigned_to"] == "rex" {
            assigned = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(assigned, "the woken agent got the task");
    // ada is put on hold (error) before the crash; the hold must survive it.
    send_key(
        &base,
        Method::POST,
        "/api/agents",
        MASTER,
        Some(json!({ "name": "ada", "role": "dev", "capabilities": ["git"], "status": "error" })),
    )
    .await
    .0
    .expect(201);
    let issued = send_key(
        &base,
        Method::POST,
        "/api/admin/tokens",
        MASTER,
        Some(json!({ "agent_id": "ada", "name": "ada", "role": "worker" })),
    )
    .await
    .0
    .expect(201);
    let ada = issued["token"].as_str().unwrap().to_string();
    send_key(
        &base,
        Method::POST,
        "/api/agents/ada/heartbeat",
        &ada,
        Some(json!({})),
    )
    .await
    .0
    .expect(200);
    drop(hub); // SIGKILL

    let hub = start_binary(&db, &log).await;
    let base = hub.base.clone();
    let look = send_key(
        &base,
        Method::GET,
        "/api/agents/rex/heartbeat",
        MASTER,
        None,
    )
    .await
    .0
    .expect(200);
    assert_eq!(
        look["id"], id,
        "the numeric id is stable across the restart"
    );
    assert_eq!(
        contents(&look),
        vec!["crash-proof message", "crash-proof wake"]
    );
    assert_eq!(look["messages"][1]["type"], "wake");
    assert_eq!(ids(&look, "pending_tasks"), vec![task_id]);
    let polled = send_key(
        &base,
        Method::GET,
        &format!("/api/agents/{id}/heartbeat"),
        &rex,
        None,
    )
    .await
    .0
    .expect(200);
    assert_eq!(
        contents(&polled),
        vec!["crash-proof message", "crash-proof wake"]
    );
    let again = send_key(&base, Method::GET, "/api/agents/rex/heartbeat", &rex, None)
        .await
        .0
        .expect(200);
    assert_eq!(again["messages"], json!([]));

    // ada, still on hold after the restart, heartbeats yet gets no git task.
    send_key(
        &base,
        Method::POST,
        "/api/agents/ada/heartbeat",
        &ada,
        Some(json!({})),
    )
    .await
    .0
    .expect(200);
    let git = send_key(
        &base,
        Method::POST,
        "/api/tasks",
        MASTER,
        Some(json!({ "title": "git work", "prompt": "p", "required_capability": "git" })),
    )
    .await
    .0
    .expect(201);
    let git_id = git["id"].as_i64().unwrap();
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let ada_now = send_key(&base, Method::GET, "/api/agents/ada", MASTER, None)
        .await
        .0
        .expect(200);
    assert_eq!(ada_now["agent"]["status"], "error", "{ada_now}");
    let waiting = send_key(
        &base,
        Method::GET,
        &format!("/api/tasks/{git_id}"),
        MASTER,
        None,
    )
    .await
    .0
    .expect(200);
    assert_eq!(
        waiting["status"], "queued",
        "a held agent got work after a restart: {waiting}"
    );
    drop(hub);

    let items: Vec<InboxItem> = inbox_items(&db)
        .into_iter()
        .filter(|i| i.agent_id == "rex")
        .collect();
    let kinds: Vec<&str> = items.iter().map(|i| i.kind.as_str()).collect();
    assert_eq!(kinds, vec!["message", "wake", "task"], "{items:?}");
    assert!(items[0].message_id.is_some() && items[1].message_id.is_some());
    assert_eq!(items[2].task_id.map(i64::from), Some(task_id));
    for item in &items[..2] {
        assert!(item.acked_at.is_some(), "read by rex: {item:?}");
        assert_eq!(item.deliveries, 1);
    }
    let stored = bytes_at_rest(dir.path()).await;
    assert!(
        stored.contains("agent.create"),
        "the scan did read the database"
    );
    for secret in ["crash-proof message", "crash-proof wake"] {
        let files = files_holding(dir.path(), secret).await;
        assert!(
            files.is_empty(),
            "{secret:?} in plain text in {files:?}; audit entries quoting it: {:?}",
            audit_quoting(&crate::support::database_url_at(&db), secret)
        );
    }
}

#[actix_web::test]
async fn a_deleted_agent_takes_its_inbox_along_and_other_keys_do_not_keep_it_alive() {
    let hub = TestHub::spawn_with(|s| s.heartbeat_timeout = 1).await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let note = json!({ "from": "ops", "to": "rex", "content": "for the old rex" });
    hub.post("/api/agents/message", MASTER, note)
        .await
        .expect(201);
    hub.delete("/api/agents/rex", MASTER).await.expect(200);
    hub.post(
        "/api/agents",
        MASTER,
        json!({ "name": "rex", "role": "dev" }),
    )
    .await
    .expect(201);
    let poll = hub.get("/api/agents/rex/heartbeat", &rex).await.expect(200);
    assert_eq!(poll["messages"], json!([]), "{poll}");

    // A viewer's key bound to the same name is not the agent: its calls are no heartbeat.
    hub.agent("ada", &["research"], 1).await;
    let viewer = hub.token("ada", "viewer").await;
    let offline = hub
        .eventually(Duration::from_secs(5), || async {
            hub.get("/api/tasks", &viewer).await.expect(200);
            hub.get("/api/agents/ada", MASTER).await.expect(200)["agent"]["presence"] == "offline"
        })
        .await;
    assert!(offline, "calls with a viewer's key kept ada online");
}
