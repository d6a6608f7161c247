//! Tool-call approvals (seed 001): a running task's holder asks before a risky step, a
//! person (or key) with `approvals:decide` allows or denies it, the hub denies it when its
//! time is up or its task ends, and `m3shd approve` gates an `--exec` script's step on it.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use awc::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::process::{m3shd, wait_exit, worker_command, HubProcess};
use crate::support::{bytes_at_rest, keep_alive, Reply, Sse, TestHub, MASTER, SOON};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A task the master creates, dispatched to `agent` and marked running by it (`token`).
async fn running_task(hub: &TestHub, agent: &str, token: &str) -> i64 {
    let task = hub.task(json!({ "title": "risky", "prompt": "p" })).await;
    assert_eq!(task["assigned_to"], agent, "{task}");
    let id = task["id"].as_i64().unwrap();
    hub.put(
        &format!("/api/tasks/{id}"),
        token,
        json!({ "status": "running" }),
    )
    .await
    .expect(200);
    id
}

/// `POST /api/tasks/{task}/approvals` as `token`.
async fn ask(hub: &TestHub, task: i64, token: &str, body: Value) -> Reply {
    hub.post(&format!("/api/tasks/{task}/approvals"), token, body)
        .await
}

/// A successful ask for `tool` (30 s to decide); returns the new approval.
async fn ask_ok(hub: &TestHub, task: i64, token: &str, tool: &str) -> Value {
    ask(
        hub,
        task,
        token,
        json!({ "tool": tool, "timeout_seconds": 30 }),
    )
    .await
    .expect(201)
}

/// `POST /api/approvals/{id}` as `token`.
async fn decide(hub: &TestHub, approval: &Value, token: &str, body: Value) -> Reply {
    hub.post(&format!("/api/approvals/{}", approval["id"]), token, body)
        .await
}

/// The approval as the master reads it.
async fn approval_now(hub: &TestHub, approval: &Value) -> Value {
    hub.get(&format!("/api/approvals/{}", approval["id"]), MASTER)
        .await
        .expect(200)
}

/// The ids of the approvals in a list reply, in order.
fn ids(list: &Value) -> Vec<i64> {
    list["approvals"]
        .as_array()
        .unwrap_or_else(|| panic!("no approvals in {list}"))
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect()
}

/// The audit entries for `action`, read as the master.
async fn audit(hub: &TestHub, action: &str) -> Vec<Value> {
    let reply = hub
        .get(&format!("/api/admin/audit?action={action}"), MASTER)
        .await
        .expect(200);
    reply["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no entries in {reply}"))
        .clone()
}

/// The next event named `name` about approval `id` (others are skipped).
async fn next_for(stream: &mut Sse, name: &str, id: &Value, within: Duration) -> Option<Value> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let event = stream.next_named(name, left).await?;
        if event.data["id"] == *id {
            return Some(event.data);
        }
    }
}

/// An RFC 3339 time as seconds from now (negative: in the past).
fn seconds_from_now(at: &Value) -> f64 {
    let at = chrono::DateTime::parse_from_rfc3339(at.as_str().unwrap_or_else(|| panic!("{at}")))
        .unwrap_or_else(|e| panic!("{at}: {e}"));
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds() as f64 / 1000.0
}

/// Seconds between two RFC 3339 times.
fn seconds_between(from: &Value, to: &Value) -> f64 {
    let parse = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    (parse(to) - parse(from)).num_milliseconds() as f64 / 1000.0
}

/// A person with `role` signed in; returns the session cookie (`name=value`).
async fn person(hub: &TestHub, username: &str, role: &str) -> String {
    hub.post(
        "/api/admin/users",
        MASTER,
        json!({ "username": username, "password": "correct horse", "role": role }),
    )
    .await
    .expect(201);
    let response = awc::Client::new()
        .post(format!("{}/api/login", hub.base))
        .send_json(&json!({ "username": username, "password": "correct horse" }))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{username} signs in");
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie");
    cookie.split(';').next().unwrap().to_string()
}

/// A request carrying only a session cookie.
async fn with_cookie(
    hub: &TestHub,
    method: Method,
    path: &str,
    cookie: &str,
    body: Option<Value>,
) -> Reply {
    let request = awc::Client::new()
        .request(method, format!("{}{path}", hub.base))
        .insert_header(("Cookie", cookie));
    let mut response = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    }
    .unwrap();
    let bytes = response.body().await.unwrap();
    Reply {
        status: response.status(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct InboxItem {
    #[diesel(sql_type = diesel::sql_types::Text)]
    agent_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    kind: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    task_id: Option<i32>,
}

/// The inbox items of kind `approval`, read from the database file.
fn approval_inbox(hub: &TestHub) -> Vec<InboxItem> {
    use diesel::RunQueryDsl;
    let mut conn = hub.open_db();
    diesel::sql_query(
        "SELECT agent_id, kind, task_id FROM inbox_items WHERE kind = 'approval' ORDER BY id",
    )
    .load(&mut conn)
    .expect("the inbox_items table")
}

/// `m3shd approve …` as an `--exec` script would run it for `task` as `token`.
fn approve_command(hub: &str, token: &str, task: i64, args: &[&str]) -> Command {
    let mut command = m3shd();
    command
        .arg("approve")
        .args(args)
        .env("M3SHD_HUB", hub)
        .env("M3SHD_TOKEN", token)
        .env("M3SHD_TASK_ID", task.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits (without blocking the in-process hub) for `child` to exit; its exit code, stdout
/// and stderr.
async fn finish(mut child: Child, within: Duration) -> (Option<i32>, String, String) {
    let exited = wait_exit(&mut child, within).await;
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("m3shd approve did not exit within {within:?}");
    }
    let code = child.wait().unwrap().code();
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out).unwrap();
    }
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut err).unwrap();
    }
    (code, out, err)
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `m3shd worker` as `name` running `exec`, and waits until it is online.
async fn start_worker(hub: &TestHub, name: &str, exec: &str) -> Killed {
    let token = hub.token(name, "worker").await;
    let child = worker_command(&hub.base, &token, name, exec)
        .spawn()
        .expect("the worker starts");
    let worker = Killed(child);
    let online = hub
        .eventually(Duration::from_secs(10), || async {
            hub.get("/api/health", MASTER).await.body["agents"][name] == "online"
        })
        .await;
    assert!(online, "worker {name} registered");
    worker
}

/// The one pending approval of task `id`, found as an operator would: in the pending list.
async fn pending_of(hub: &TestHub, id: i64, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let list = hub
            .get("/api/approvals?status=pending", MASTER)
            .await
            .expect(200);
        if let Some(approval) = list["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["task_id"] == id)
        {
            return approval.clone();
        }
        assert!(
            Instant::now() < deadline,
            "task {id} asked for no approval within {within:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn finished(hub: &TestHub, id: i64, within: Duration) -> Value {
    hub.eventually(within, || async {
        let status = hub.task_status(id).await["status"].clone();
        status == "done" || status == "failed"
    })
    .await;
    hub.task_status(id).await
}

/// The exec script of the end-to-end tests: the gated step runs only when allowed.
fn gated_script(extra: &str) -> String {
    format!(
        "\"{bin}\" approve --tool deploy --reason 'ship it'{extra} && echo approved-run || echo denied-run",
        bin = env!("CARGO_BIN_EXE_m3shd")
    )
}

// ---------------------------------------------------------------------------------------
// Asking
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn the_holder_asks_and_its_running_task_shows_the_pending_approval() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let ada = hub.agent("ada", &["git"], 1).await;
    let mut events = hub.stream(MASTER).await;
    let mut rex_events = hub.stream(&rex).await;
    let mut ada_events = hub.stream(&ada).await;
    let id = running_task(&hub, "rex", &rex).await;
    let before = hub.task_status(id).await;
    assert!(
        before.get("pending_approval").is_none(),
        "no pending_approval before asking: {before}"
    );

    let body = json!({
        "tool": "deploy",
        "input": "kubectl apply -f prod-secret-manifest.yaml",
        "reason": "ship it",
        "timeout_seconds": 60,
    });
    let approval = ask(&hub, id, &rex, body).await.expect(201);
    assert!(approval["id"].as_i64().is_some(), "{approval}");
    assert_eq!(approval["task_id"], id);
    assert_eq!(approval["agent_id"], "rex");
    assert_eq!(approval["tool"], "deploy");
    assert_eq!(
        approval["input"],
        "kubectl apply -f prod-secret-manifest.yaml"
    );
    assert_eq!(approval["reason"], "ship it");
    assert_eq!(approval["status"], "pending");
    assert!(approval["decided_by"].is_null(), "{approval}");
    assert!(approval["note"].is_null(), "{approval}");
    let left = seconds_from_now(&approval["expires_at"]);
    assert!(
        (55.0..=61.0).contains(&left),
        "expires in about 60 s, not {left} s: {approval}"
    );

    // Whoever sees the task hears about it: the master and the holder.
    let heard = next_for(&mut events, "approval_requested", &approval["id"], SOON)
        .await
        .expect("the master stream hears approval_requested");
    assert_eq!(heard["task_id"], id);
    assert_eq!(heard["tool"], "deploy");
    assert_eq!(heard["status"], "pending");
    next_for(&mut rex_events, "approval_requested", &approval["id"], SOON)
        .await
        .expect("the holder's stream hears approval_requested");
    // Another worker does not: its next event is its own task, with no approval before it.
    let other = hub
        .task(json!({ "title": "g", "prompt": "p", "required_capability": "git" }))
        .await;
    assert_eq!(other["assigned_to"], "ada");
    loop {
        let event = ada_events
            .next(SOON)
            .await
            .expect("ada hears about its own task");
        assert!(
            !event.name.starts_with("approval"),
            "ada heard about rex's approval: {event:?}"
        );
        if event.name == "task_assigned" && event.data["id"] == other["id"] {
            break;
        }
    }

    // The task still runs, held by rex, and shows what it waits for.
    let task = hub.task_status(id).await;
    assert_eq!(task["status"], "running");
    assert_eq!(task["assigned_to"], "rex");
    let pending = &task["pending_approval"];
    assert_eq!(pending["id"], approval["id"], "{task}");
    assert_eq!(pending["tool"], "deploy");
    assert_eq!(pending["status"], "pending");
    let own_view = hub.get(&format!("/api/tasks/{id}"), &rex).await.expect(200);
    assert_eq!(own_view["pending_approval"]["id"], approval["id"]);

    // One at a time.
    let again = ask(&hub, id, &rex, json!({ "tool": "bash" })).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    // A progress report is not the task ending: the approval still waits.
    hub.put(
        &format!("/api/tasks/{id}"),
        &rex,
        json!({ "status": "running" }),
    )
    .await
    .expect(200);
    let still = approval_now(&hub, &approval).await;
    assert_eq!(still["status"], "pending", "{still}");
    assert_eq!(
        hub.task_status(id).await["pending_approval"]["id"],
        approval["id"]
    );

    // The input is sealed at rest.
    let stored = bytes_at_rest(hub.dir.path()).await;
    assert!(
        stored.contains("approval.request"),
        "the scan did read the database"
    );
    assert!(
        !stored.contains("prod-secret-manifest"),
        "an approval's input is stored in plain text"
    );
}

#[actix_web::test]
async fn asking_needs_the_holder_a_running_task_and_a_valid_tool() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 8).await;
    let ada = hub.agent("ada", &["git"], 1).await;
    let viewer = hub.token("val", "viewer").await;

    // Assigned but not running yet.
    let assigned = hub.task(json!({ "title": "t", "prompt": "p" })).await;
    let assigned_id = assigned["id"].as_i64().unwrap();
    assert_eq!(assigned["status"], "assigned");
    ask(&hub, assigned_id, &rex, json!({ "tool": "bash" }))
        .await
        .expect(409);

    let id = running_task(&hub, "rex", &rex).await;
    // Another agent's task does not exist for it; a viewer may not execute.
    ask(&hub, id, &ada, json!({ "tool": "bash" }))
        .await
        .expect(404);
    ask(&hub, id, &viewer, json!({ "tool": "bash" }))
        .await
        .expect(403);
    // An agent that sees the task (it created it) but does not hold it is refused.
    let permissions = ["tasks:read", "tasks:create", "tasks:execute"];
    let issued = hub
        .post(
            "/api/admin/tokens",
            MASTER,
            json!({ "agent_id": "cleo", "name": "cleo", "permissions": permissions }),
        )
        .await
        .expect(201);
    let cleo = issued["token"].as_str().unwrap().to_string();
    let made = hub
        .post("/api/tasks", &cleo, json!({ "title": "c", "prompt": "p" }))
        .await
        .expect(201);
    assert_eq!(made["assigned_to"], "rex");
    let made_id = made["id"].as_i64().unwrap();
    hub.put(
        &format!("/api/tasks/{made_id}"),
        &rex,
        json!({ "status": "running" }),
    )
    .await
    .expect(200);
    hub.get(&format!("/api/tasks/{made_id}"), &cleo)
        .await
        .expect(200);
    ask(&hub, made_id, &cleo, json!({ "tool": "bash" }))
        .await
        .expect(409);

    // The tool is required, not blank, at most 128 characters; a timeout is at least 1 s.
    for body in [
        json!({}),
        json!({ "reason": "no tool" }),
        json!({ "tool": "" }),
        json!({ "tool": "   " }),
        json!({ "tool": "x".repeat(129) }),
        json!({ "tool": "bash", "timeout_seconds": 0 }),
    ] {
        let reply = ask(&hub, id, &rex, body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.body
        );
    }
    let none = hub.get("/api/approvals", MASTER).await.expect(200);
    assert_eq!(none["count"], 0, "refused asks leave nothing: {none}");
    let longest = ask(&hub, id, &rex, json!({ "tool": "y".repeat(128) }))
        .await
        .expect(201);
    assert_eq!(longest["tool"].as_str().unwrap().len(), 128);
    assert!(longest["input"].is_null() && longest["reason"].is_null());

    // The master may ask for a running task; without a timeout it gets the default 300 s.
    let other = running_task(&hub, "rex", &rex).await;
    let by_master = ask(&hub, other, MASTER, json!({ "tool": "bash" }))
        .await
        .expect(201);
    assert_eq!(by_master["status"], "pending");
    let window = seconds_between(&by_master["created_at"], &by_master["expires_at"]);
    assert!(
        (299.0..=301.0).contains(&window),
        "the default timeout is 300 s, not {window}: {by_master}"
    );

    // A finished task asks nothing any more.
    let done = running_task(&hub, "rex", &rex).await;
    hub.put(
        &format!("/api/tasks/{done}"),
        &rex,
        json!({ "status": "done", "output": "x" }),
    )
    .await
    .expect(200);
    ask(&hub, done, &rex, json!({ "tool": "bash" }))
        .await
        .expect(409);
}

// ---------------------------------------------------------------------------------------
// Deciding
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn only_deciders_decide_once_and_the_holder_hears_it_in_its_stream_and_inbox() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let viewer = hub.token("val", "viewer").await;
    let otto = person(&hub, "otto", "operator").await;
    let vera = person(&hub, "vera", "viewer").await;
    let mut rex_events = hub.stream(&rex).await;
    let id = running_task(&hub, "rex", &rex).await;
    let approval = ask_ok(&hub, id, &rex, "deploy").await;
    let path = format!("/api/approvals/{}", approval["id"]);

    // Who may not decide.
    let allow = json!({ "decision": "allow" });
    decide(&hub, &approval, &viewer, allow.clone())
        .await
        .expect(403);
    decide(&hub, &approval, &rex, allow.clone())
        .await
        .expect(403);
    // A viewer (a person) reads approvals of every task, but may not decide.
    let listed = with_cookie(&hub, Method::GET, "/api/approvals", &vera, None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(ids(&listed.body), [approval["id"].as_i64().unwrap()]);
    let read = with_cookie(&hub, Method::GET, &path, &vera, None).await;
    assert_eq!(read.body["status"], "pending", "{}", read.body);
    let by_vera = with_cookie(&hub, Method::POST, &path, &vera, Some(allow.clone())).await;
    assert_eq!(by_vera.status, StatusCode::FORBIDDEN, "{}", by_vera.body);
    // What is not a decision.
    for body in [
        json!({}),
        json!({ "decision": "maybe" }),
        json!({ "decision": "ALLOW" }),
        json!({ "note": "no decision" }),
    ] {
        let reply = decide(&hub, &approval, MASTER, body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.body
        );
    }
    assert_eq!(approval_now(&hub, &approval).await["status"], "pending");
    assert!(approval_inbox(&hub).is_empty(), "nothing decided yet");

    // An operator (a person) allows it.
    let body = json!({ "decision": "allow", "note": "looks fine" });
    let decided = with_cookie(&hub, Method::POST, &path, &otto, Some(body)).await;
    assert_eq!(decided.status, StatusCode::OK, "{}", decided.body);
    let decided = decided.body;
    assert_eq!(decided["id"], approval["id"]);
    assert_eq!(decided["status"], "allowed");
    assert_eq!(decided["decided_by"], "user:otto");
    assert_eq!(decided["note"], "looks fine");
    assert_eq!(decided["tool"], "deploy");

    // Once.
    decide(&hub, &approval, MASTER, json!({ "decision": "deny" }))
        .await
        .expect(409);
    decide(&hub, &approval, MASTER, json!({ "decision": "allow" }))
        .await
        .expect(409);
    let now = hub.get(&path, &rex).await.expect(200);
    assert_eq!(now["status"], "allowed");
    assert_eq!(now["decided_by"], "user:otto");
    assert_eq!(now["note"], "looks fine");

    // The holder hears it, and finds it in its inbox.
    let heard = next_for(&mut rex_events, "approval_decided", &approval["id"], SOON)
        .await
        .expect("the holder's stream hears approval_decided");
    assert_eq!(heard["status"], "allowed");
    assert_eq!(heard["decided_by"], "user:otto");
    assert_eq!(heard["task_id"], id);
    assert_eq!(
        approval_inbox(&hub),
        vec![InboxItem {
            agent_id: "rex".into(),
            kind: "approval".into(),
            task_id: Some(id as i32),
        }],
        "one inbox item for the holder"
    );

    // The task goes on running, no longer waiting.
    let task = hub.task_status(id).await;
    assert_eq!(task["status"], "running");
    assert_eq!(task["assigned_to"], "rex");
    assert!(task.get("pending_approval").is_none(), "{task}");

    // Both ends are in the audit log, with who did them.
    let requested = audit(&hub, "approval.request").await;
    assert_eq!(requested.len(), 1, "{requested:?}");
    assert_eq!(requested[0]["actor"], "rex");
    let allowed = audit(&hub, "approval.allow").await;
    assert_eq!(allowed.len(), 1, "{allowed:?}");
    assert_eq!(allowed[0]["actor"], "user:otto");
    assert!(audit(&hub, "approval.deny").await.is_empty());

    // Decided, the holder may ask again.
    let next = ask_ok(&hub, id, &rex, "bash").await;
    assert_ne!(next["id"], approval["id"]);
}

#[actix_web::test]
async fn an_operator_key_and_the_master_deny_and_the_task_keeps_running() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 2).await;
    let ops = hub.token("ops", "operator").await;
    let mut rex_events = hub.stream(&rex).await;
    // The operator key created this task, so it sees it (and its approval).
    let made = hub
        .post("/api/tasks", &ops, json!({ "title": "t", "prompt": "p" }))
        .await
        .expect(201);
    assert_eq!(made["assigned_to"], "rex");
    let id = made["id"].as_i64().unwrap();
    hub.put(
        &format!("/api/tasks/{id}"),
        &rex,
        json!({ "status": "running" }),
    )
    .await
    .expect(200);
    let approval = ask_ok(&hub, id, &rex, "rm").await;
    let denied = decide(
        &hub,
        &approval,
        &ops,
        json!({ "decision": "deny", "note": "not today" }),
    )
    .await
    .expect(200);
    assert_eq!(denied["status"], "denied");
    assert_eq!(denied["decided_by"], "ops");
    assert_eq!(denied["note"], "not today");
    let heard = next_for(&mut rex_events, "approval_decided", &approval["id"], SOON)
        .await
        .expect("the holder hears the denial");
    assert_eq!(heard["status"], "denied");
    assert_eq!(heard["note"], "not today");

    // The master denies another one, without a note.
    let second = running_task(&hub, "rex", &rex).await;
    let other = ask_ok(&hub, second, &rex, "curl").await;
    let by_master = decide(&hub, &other, MASTER, json!({ "decision": "deny" }))
        .await
        .expect(200);
    assert_eq!(by_master["status"], "denied");
    assert_eq!(by_master["decided_by"], "master");
    assert!(by_master["note"].is_null(), "{by_master}");

    let denials = audit(&hub, "approval.deny").await;
    let mut actors: Vec<&str> = denials
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    actors.sort();
    assert_eq!(actors, ["master", "ops"], "{denials:?}");
    assert_eq!(approval_inbox(&hub).len(), 2);
    // A denial is not the end of the task: it runs on with its holder.
    for task in [id, second] {
        let now = hub.task_status(task).await;
        assert_eq!(now["status"], "running", "{now}");
        assert_eq!(now["assigned_to"], "rex");
        assert!(now.get("pending_approval").is_none(), "{now}");
    }
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn approvals_are_listed_and_read_only_by_those_who_see_their_task() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let ada = hub.agent("ada", &["git"], 1).await;
    let rex_task = running_task(&hub, "rex", &rex).await;
    let git = hub
        .task(json!({ "title": "g", "prompt": "p", "required_capability": "git" }))
        .await;
    assert_eq!(git["assigned_to"], "ada");
    let ada_task = git["id"].as_i64().unwrap();
    hub.put(
        &format!("/api/tasks/{ada_task}"),
        &ada,
        json!({ "status": "running" }),
    )
    .await
    .expect(200);
    let first = ask(
        &hub,
        rex_task,
        &rex,
        json!({ "tool": "deploy", "input": "secret-arg" }),
    )
    .await
    .expect(201);
    let second = ask_ok(&hub, ada_task, &ada, "push").await;
    let (a, b) = (
        first["id"].as_i64().unwrap(),
        second["id"].as_i64().unwrap(),
    );

    // The master sees both, newest first; each worker only its own.
    let all = hub.get("/api/approvals", MASTER).await.expect(200);
    assert_eq!(all["count"], 2, "{all}");
    assert_eq!(ids(&all), [b, a]);
    let mine = hub.get("/api/approvals", &rex).await.expect(200);
    assert_eq!(mine["count"], 1, "{mine}");
    assert_eq!(ids(&mine), [a]);
    assert_eq!(mine["approvals"][0]["input"], "secret-arg");
    let theirs = hub
        .get("/api/approvals?status=pending", &ada)
        .await
        .expect(200);
    assert_eq!(ids(&theirs), [b]);
    // One approval: its task's reader may read it, others get 404.
    let read = hub
        .get(&format!("/api/approvals/{a}"), &rex)
        .await
        .expect(200);
    assert_eq!(read["tool"], "deploy");
    assert_eq!(read["input"], "secret-arg");
    assert_eq!(read["status"], "pending");
    hub.get(&format!("/api/approvals/{a}"), &ada)
        .await
        .expect(404);
    hub.get(&format!("/api/approvals/{b}"), &rex)
        .await
        .expect(404);
    hub.get("/api/approvals/999999", MASTER).await.expect(404);
    hub.get("/api/approvals/not-a-number", MASTER)
        .await
        .expect(404);

    // Filtered by status.
    decide(&hub, &first, MASTER, json!({ "decision": "allow" }))
        .await
        .expect(200);
    let pending = hub
        .get("/api/approvals?status=pending", MASTER)
        .await
        .expect(200);
    assert_eq!(ids(&pending), [b]);
    assert_eq!(pending["count"], 1);
    let allowed = hub
        .get("/api/approvals?status=allowed", MASTER)
        .await
        .expect(200);
    assert_eq!(ids(&allowed), [a]);
    assert_eq!(allowed["approvals"][0]["decided_by"], "master");
    let denied = hub
        .get("/api/approvals?status=denied", MASTER)
        .await
        .expect(200);
    assert_eq!(denied["count"], 0);
    assert!(ids(&denied).is_empty());
    hub.get("/api/approvals?status=maybe", MASTER)
        .await
        .expect(400);
    let none_for_rex = hub
        .get("/api/approvals?status=pending", &rex)
        .await
        .expect(200);
    assert_eq!(none_for_rex["count"], 0, "{none_for_rex}");
}

#[actix_web::test]
async fn a_long_poll_answers_as_soon_as_the_approval_is_decided() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let id = running_task(&hub, "rex", &rex).await;
    let approval = ask_ok(&hub, id, &rex, "deploy").await;
    let path = format!("/api/approvals/{}", approval["id"]);

    // Nobody decides: the poll answers "pending" after the wait.
    let started = Instant::now();
    let waited = hub.get(&format!("{path}?wait=1"), &rex).await.expect(200);
    let took = started.elapsed();
    assert_eq!(waited["status"], "pending");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "?wait=1 answered after {took:?}"
    );

    // A decision 300 ms in ends a 10 s poll at once.
    let started = Instant::now();
    let long_poll = format!("{path}?wait=10");
    let poll = hub.get(&long_poll, &rex);
    let decision = async {
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        decide(&hub, &approval, MASTER, json!({ "decision": "allow" }))
            .await
            .expect(200)
    };
    let (poll, _) = futures_util::future::join(poll, decision).await;
    let took = started.elapsed();
    let poll = poll.expect(200);
    assert_eq!(poll["status"], "allowed", "{poll}");
    assert_eq!(poll["decided_by"], "master");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "the poll answered {took:?} after it started, not right after the decision"
    );

    // Decided already: no waiting.
    let started = Instant::now();
    let again = hub.get(&format!("{path}?wait=10"), &rex).await.expect(200);
    assert_eq!(again["status"], "allowed");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a decided approval is answered at once, not after {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// Decided by the hub
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn an_undecided_approval_is_denied_by_the_hub_when_its_time_is_up() {
    let hub = TestHub::spawn_with(|s| s.approval_timeout_seconds = 1).await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let mut rex_events = hub.stream(&rex).await;
    let id = running_task(&hub, "rex", &rex).await;
    // Asking for longer than the hub allows gets the hub's limit.
    let approval = ask(
        &hub,
        id,
        &rex,
        json!({ "tool": "deploy", "timeout_seconds": 3600 }),
    )
    .await
    .expect(201);
    let window = seconds_between(&approval["created_at"], &approval["expires_at"]);
    assert!(
        window <= 1.5,
        "timeout_seconds is capped at approval_timeout_seconds (1 s), got {window} s: {approval}"
    );

    let heard = next_for(
        &mut rex_events,
        "approval_decided",
        &approval["id"],
        Duration::from_secs(4),
    )
    .await
    .expect("the hub denies it when its time is up");
    assert_eq!(heard["status"], "denied");
    assert_eq!(heard["decided_by"], "hub");
    assert_eq!(heard["note"], "timeout");
    let now = approval_now(&hub, &approval).await;
    assert_eq!(now["status"], "denied");
    assert_eq!(now["decided_by"], "hub");
    assert_eq!(now["note"], "timeout");
    assert!(!now["decided_at"].is_null(), "{now}");
    decide(&hub, &approval, MASTER, json!({ "decision": "allow" }))
        .await
        .expect(409);

    let task = hub.task_status(id).await;
    assert_eq!(task["status"], "running", "{task}");
    assert_eq!(task["assigned_to"], "rex");
    assert!(task.get("pending_approval").is_none(), "{task}");
    let denials = audit(&hub, "approval.deny").await;
    assert_eq!(denials.len(), 1, "{denials:?}");
    assert_eq!(denials[0]["actor"], "hub");
    assert_eq!(approval_inbox(&hub).len(), 1, "the holder's inbox has it");
}

#[actix_web::test]
async fn a_task_that_ends_or_changes_hands_denies_its_pending_approval() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 2).await;
    let mut rex_events = hub.stream(&rex).await;
    let finishing = running_task(&hub, "rex", &rex).await;
    let moving = running_task(&hub, "rex", &rex).await;
    let _ada = hub.agent("ada", &["research"], 1).await;

    // The holder finishes the task while it waits.
    let first = ask_ok(&hub, finishing, &rex, "deploy").await;
    hub.put(
        &format!("/api/tasks/{finishing}"),
        &rex,
        json!({ "status": "done", "output": "x" }),
    )
    .await
    .expect(200);
    let now = approval_now(&hub, &first).await;
    assert_eq!(now["status"], "denied", "{now}");
    assert_eq!(now["decided_by"], "hub");
    assert_eq!(now["note"], "task ended");
    let heard = next_for(&mut rex_events, "approval_decided", &first["id"], SOON)
        .await
        .expect("the holder hears the denial");
    assert_eq!(heard["note"], "task ended");
    decide(&hub, &first, MASTER, json!({ "decision": "allow" }))
        .await
        .expect(409);
    assert_eq!(hub.task_status(finishing).await["status"], "done");

    // The task is handed to another agent while it waits.
    let second = ask_ok(&hub, moving, &rex, "deploy").await;
    hub.post(
        &format!("/api/tasks/{moving}/handoff"),
        MASTER,
        json!({ "to": "ada" }),
    )
    .await
    .expect(200);
    let now = approval_now(&hub, &second).await;
    assert_eq!(now["status"], "denied", "{now}");
    assert_eq!(now["decided_by"], "hub");
    assert_eq!(now["note"], "task ended");
    let moved = hub
        .eventually(SOON, || async {
            hub.task_status(moving).await["assigned_to"] == "ada"
        })
        .await;
    assert!(moved, "{}", hub.task_status(moving).await);
    assert!(hub
        .task_status(moving)
        .await
        .get("pending_approval")
        .is_none());
    let pending = hub
        .get("/api/approvals?status=pending", MASTER)
        .await
        .expect(200);
    assert_eq!(pending["count"], 0, "{pending}");
    // Both denials are audited as the hub's, like a timeout's.
    let audit = hub
        .get("/api/admin/audit?action=approval.deny", MASTER)
        .await
        .expect(200);
    let by_hub = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "hub")
        .count();
    assert_eq!(by_hub, 2, "{audit}");
}

// ---------------------------------------------------------------------------------------
// Waiting keeps the task
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_silent_holder_keeps_its_task_while_it_waits_and_loses_it_after_the_decision() {
    let hub = TestHub::spawn_with(|s| s.heartbeat_timeout = 1).await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let rex_alive = keep_alive(&hub, "rex", &rex);
    let mut events = hub.stream(MASTER).await;
    let id = running_task(&hub, "rex", &rex).await;
    let approval = ask_ok(&hub, id, &rex, "deploy").await;
    let ada = hub.agent("ada", &["research"], 1).await;
    let _ada_alive = keep_alive(&hub, "ada", &ada);

    drop(rex_alive);
    let offline = hub
        .eventually(Duration::from_secs(5), || async {
            hub.get("/api/health", MASTER).await.body["agents"]["rex"] == "offline"
        })
        .await;
    assert!(offline, "rex goes offline once its heartbeats stop");
    // Past its lease, rex still holds the task (ada, online and free, does not get it).
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    let task = hub.task_status(id).await;
    assert_eq!(task["status"], "running", "{task}");
    assert_eq!(task["assigned_to"], "rex");
    assert_eq!(task["attempts"], 1);
    assert_eq!(task["pending_approval"]["id"], approval["id"], "{task}");
    assert_eq!(approval_now(&hub, &approval).await["status"], "pending");

    // Decided: now the task goes back to the queue, and to ada.
    decide(&hub, &approval, MASTER, json!({ "decision": "allow" }))
        .await
        .expect(200);
    let requeued = requeued(&mut events, id).await;
    assert_eq!(requeued["reason"], "agent_offline", "{requeued}");
    let moved = hub
        .eventually(SOON, || async {
            let task = hub.task_status(id).await;
            task["assigned_to"] == "ada" && task["attempts"] == 2
        })
        .await;
    assert!(moved, "{}", hub.task_status(id).await);
}

/// The `task_queued` event of task `id`, which must come within 4 s.
async fn requeued(events: &mut Sse, id: i64) -> Value {
    loop {
        let event = events
            .next_named("task_queued", Duration::from_secs(4))
            .await
            .expect("the task goes back to the queue right after the decision");
        if event.data["id"] == id {
            return event.data;
        }
    }
}

#[actix_web::test]
async fn waiting_for_a_decision_does_not_count_against_the_running_time_limit() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let mut events = hub.stream(MASTER).await;
    let task = hub
        .task(json!({ "title": "slow", "prompt": "p", "timeout_seconds": 1 }))
        .await;
    let id = task["id"].as_i64().unwrap();
    hub.put(
        &format!("/api/tasks/{id}"),
        &rex,
        json!({ "status": "running" }),
    )
    .await
    .expect(200);
    let approval = ask_ok(&hub, id, &rex, "deploy").await;
    // Twice its 1 s limit passes while it waits.
    actix_web::rt::time::sleep(Duration::from_millis(2000)).await;
    let now = hub.task_status(id).await;
    assert_eq!(now["status"], "running", "{now}");
    assert_eq!(now["assigned_to"], "rex");
    assert_eq!(now["attempts"], 1);
    assert_eq!(now["pending_approval"]["id"], approval["id"]);

    // After the decision the limit applies again.
    decide(&hub, &approval, MASTER, json!({ "decision": "allow" }))
        .await
        .expect(200);
    let requeued = requeued(&mut events, id).await;
    assert_eq!(requeued["reason"], "timeout", "{requeued}");
}

// ---------------------------------------------------------------------------------------
// `m3shd approve`
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn m3shd_approve_exits_0_when_allowed_and_1_when_denied() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 2).await;
    let first = running_task(&hub, "rex", &rex).await;
    let second = running_task(&hub, "rex", &rex).await;

    let args = [
        "--tool",
        "deploy",
        "--input",
        "helm upgrade web",
        "--reason",
        "release 7",
    ];
    let child = approve_command(&hub.base, &rex, first, &args)
        .spawn()
        .expect("m3shd approve starts");
    let asked = pending_of(&hub, first, Duration::from_secs(10)).await;
    assert_eq!(asked["tool"], "deploy");
    assert_eq!(asked["input"], "helm upgrade web");
    assert_eq!(asked["reason"], "release 7");
    assert_eq!(asked["agent_id"], "rex");
    decide(&hub, &asked, MASTER, json!({ "decision": "allow" }))
        .await
        .expect(200);
    let (code, out, err) = finish(child, Duration::from_secs(10)).await;
    assert_eq!(code, Some(0), "allowed exits 0; stderr: {err}");
    assert!(out.contains("allowed"), "it says so: {out:?}");

    let child = approve_command(&hub.base, &rex, second, &["--tool", "rm"])
        .spawn()
        .expect("m3shd approve starts");
    let asked = pending_of(&hub, second, Duration::from_secs(10)).await;
    decide(
        &hub,
        &asked,
        MASTER,
        json!({ "decision": "deny", "note": "no" }),
    )
    .await
    .expect(200);
    let (code, out, err) = finish(child, Duration::from_secs(10)).await;
    assert_eq!(
        code,
        Some(1),
        "denied exits 1; stdout {out:?}, stderr {err:?}"
    );
    assert!(!out.contains("allowed"), "{out:?}");
}

#[actix_web::test]
async fn m3shd_approve_exits_1_when_nobody_decides_in_time() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let id = running_task(&hub, "rex", &rex).await;
    let child = approve_command(&hub.base, &rex, id, &["--tool", "deploy", "--timeout", "1"])
        .spawn()
        .expect("m3shd approve starts");
    let (code, out, err) = finish(child, Duration::from_secs(10)).await;
    assert_eq!(
        code,
        Some(1),
        "timed out exits 1; stdout {out:?}, stderr {err:?}"
    );
    let denied = hub
        .get("/api/approvals?status=denied", MASTER)
        .await
        .expect(200);
    assert_eq!(denied["count"], 1, "{denied}");
    assert_eq!(denied["approvals"][0]["decided_by"], "hub");
    assert_eq!(denied["approvals"][0]["note"], "timeout");
}

#[actix_web::test]
async fn m3shd_approve_exits_2_when_the_hub_cannot_be_asked() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let task = hub.task(json!({ "title": "t", "prompt": "p" })).await;
    let id = task["id"].as_i64().unwrap();

    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = approve_command(
        &format!("http://127.0.0.1:{port}"),
        &rex,
        id,
        &["--tool", "x"],
    )
    .spawn()
    .unwrap();
    let (code, _, err) = finish(child, Duration::from_secs(10)).await;
    assert_eq!(code, Some(2), "an unreachable hub exits 2; stderr {err:?}");

    // The hub refuses: the task is assigned, not running.
    let child = approve_command(&hub.base, &rex, id, &["--tool", "x"])
        .spawn()
        .unwrap();
    let (code, out, err) = finish(child, Duration::from_secs(10)).await;
    assert_eq!(
        code,
        Some(2),
        "a refused ask exits 2; stdout {out:?}, stderr {err:?}"
    );
    assert!(!out.contains("allowed"));

    // Outside a worker's script there is no task to ask about.
    let mut command = approve_command(&hub.base, &rex, id, &["--tool", "x"]);
    command.env_remove("M3SHD_TASK_ID");
    let (code, _, err) = finish(command.spawn().unwrap(), Duration::from_secs(10)).await;
    assert_eq!(code, Some(2), "no task id exits 2; stderr {err:?}");

    let none = hub.get("/api/approvals", MASTER).await.expect(200);
    assert_eq!(none["count"], 0, "{none}");
}

/// Runs one task through a real worker whose script gates its step on `m3shd approve
/// {extra}`; `decision`, if any, is made on the approval it asks for. The finished task.
async fn gated_run(extra: &str, decision: Option<Value>) -> (TestHub, i64, Value) {
    let hub = TestHub::spawn().await;
    let _worker = start_worker(&hub, "w1", &gated_script(extra)).await;
    let id = hub.task(json!({ "title": "ship", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    if let Some(decision) = decision {
        let asked = pending_of(&hub, id, Duration::from_secs(10)).await;
        assert_eq!(asked["tool"], "deploy");
        assert_eq!(asked["reason"], "ship it");
        assert_eq!(asked["agent_id"], "w1");
        let waiting = hub.task_status(id).await;
        assert_eq!(waiting["status"], "running", "{waiting}");
        assert_eq!(waiting["pending_approval"]["id"], asked["id"]);
        decide(&hub, &asked, MASTER, decision).await.expect(200);
    }
    let task = finished(&hub, id, Duration::from_secs(10)).await;
    assert_eq!(task["status"], "done", "{task}");
    (hub, id, task)
}

/// Whether the gated step ran (and the other branch did not).
fn ran_gated_step(task: &Value) -> bool {
    let output = task["output"].as_str().unwrap();
    assert_ne!(
        output.contains("approved-run"),
        output.contains("denied-run"),
        "{output:?}"
    );
    output.contains("approved-run")
}

#[actix_web::test]
async fn a_worker_script_runs_its_gated_step_once_it_is_allowed() {
    let (_hub, _, task) = gated_run("", Some(json!({ "decision": "allow" }))).await;
    assert!(ran_gated_step(&task));
}

#[actix_web::test]
async fn a_worker_script_skips_its_gated_step_when_it_is_denied() {
    let decision = json!({ "decision": "deny", "note": "freeze" });
    let (_hub, _, task) = gated_run("", Some(decision)).await;
    assert!(!ran_gated_step(&task));
}

#[actix_web::test]
async fn a_worker_script_skips_its_gated_step_when_nobody_decides_in_time() {
    let (hub, id, task) = gated_run(" --timeout 1", None).await;
    assert!(!ran_gated_step(&task));
    let denied = hub
        .get("/api/approvals?status=denied", MASTER)
        .await
        .expect(200);
    assert_eq!(denied["count"], 1, "{denied}");
    let approval = &denied["approvals"][0];
    assert_eq!(approval["task_id"], id);
    assert_eq!(approval["decided_by"], "hub");
    assert_eq!(approval["note"], "timeout");
}

// ---------------------------------------------------------------------------------------
// Durability (the real binary)
// ---------------------------------------------------------------------------------------

const TOKEN: &str = "approvals-master";

/// `m3shd serve` on `db`; answers before this returns. Dropping it is a SIGKILL.
async fn serve(db: &std::path::Path) -> HubProcess {
    let mut command = m3shd();
    command
        .arg("serve")
        .env("M3SHDUP_TOKEN", TOKEN)
        .envs(crate::support::database_env(db))
        .env("M3SHDUP_HEARTBEAT_TIMEOUT", "30")
        .env("M3SHDUP_ALERTS_ENABLED", "false")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null());
    HubProcess::answering(command).await
}

async fn call(base: &str, method: Method, path: &str, token: &str, body: Value) -> (u16, Value) {
    let request = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish()
        .request(method, format!("{base}{path}"))
        .insert_header(("Authorization", format!("Bearer {token}")));
    let mut response = if body.is_null() {
        request.send().await
    } else {
        request.send_body(body.to_string()).await
    }
    .expect("hub answers");
    let bytes = response.body().await.unwrap();
    (
        response.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or_default(),
    )
}

#[actix_web::test]
async fn approvals_survive_a_sigkill_and_a_pending_one_is_decided_or_times_out_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let hub = serve(&db).await;
    let base = hub.base.clone();

    let (status, issued) = call(
        &base,
        Method::POST,
        "/api/admin/tokens",
        TOKEN,
        json!({ "agent_id": "rex", "role": "worker" }),
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    let rex = issued["token"].as_str().unwrap().to_string();
    let register = json!({ "name": "rex", "capabilities": ["research"], "max_concurrent": 3 });
    let (status, _) = call(
        &base,
        Method::POST,
        "/api/agents/rex/register",
        &rex,
        register,
    )
    .await;
    assert_eq!(status, 200);
    let mut tasks = Vec::new();
    for i in 0..3 {
        let (status, task) = call(
            &base,
            Method::POST,
            "/api/tasks",
            TOKEN,
            json!({ "title": format!("t{i}"), "prompt": "p" }),
        )
        .await;
        assert_eq!(status, 201, "{task}");
        assert_eq!(task["assigned_to"], "rex", "{task}");
        let id = task["id"].as_i64().unwrap();
        let (status, _) = call(
            &base,
            Method::PUT,
            &format!("/api/tasks/{id}"),
            &rex,
            json!({ "status": "running" }),
        )
        .await;
        assert_eq!(status, 200);
        tasks.push(id);
    }
    let mut asked = Vec::new();
    for (task, timeout) in [(tasks[0], 60), (tasks[1], 60), (tasks[2], 4)] {
        let (status, approval) = call(
            &base,
            Method::POST,
            &format!("/api/tasks/{task}/approvals"),
            &rex,
            json!({ "tool": "deploy", "input": "the-input", "timeout_seconds": timeout }),
        )
        .await;
        assert_eq!(status, 201, "{approval}");
        asked.push(approval["id"].as_i64().unwrap());
    }
    let (waiting, decided, timing) = (asked[0], asked[1], asked[2]);
    let (status, before) = call(
        &base,
        Method::POST,
        &format!("/api/approvals/{decided}"),
        TOKEN,
        json!({ "decision": "allow", "note": "before the crash" }),
    )
    .await;
    assert_eq!(status, 200, "{before}");
    let (_, short) = call(
        &base,
        Method::GET,
        &format!("/api/approvals/{timing}"),
        TOKEN,
        Value::Null,
    )
    .await;
    assert_eq!(
        short["status"], "pending",
        "still pending at the kill: {short}"
    );
    drop(hub); // SIGKILL

    let hub = serve(&db).await;
    let base = hub.base.clone();
    // The decision made before the crash is still there.
    let (status, kept) = call(
        &base,
        Method::GET,
        &format!("/api/approvals/{decided}"),
        TOKEN,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{kept}");
    assert_eq!(kept["status"], "allowed");
    assert_eq!(kept["decided_by"], "master");
    assert_eq!(kept["note"], "before the crash");
    // The pending one still waits, with its input, and its task shows it.
    let (_, pending) = call(
        &base,
        Method::GET,
        &format!("/api/approvals/{waiting}"),
        TOKEN,
        Value::Null,
    )
    .await;
    assert_eq!(pending["status"], "pending", "{pending}");
    assert_eq!(pending["input"], "the-input");
    let (_, task) = call(
        &base,
        Method::GET,
        &format!("/api/tasks/{}", tasks[0]),
        TOKEN,
        Value::Null,
    )
    .await;
    assert_eq!(task["status"], "running", "{task}");
    assert_eq!(task["pending_approval"]["id"], waiting, "{task}");
    // It can be decided after the restart.
    let (status, after) = call(
        &base,
        Method::POST,
        &format!("/api/approvals/{waiting}"),
        TOKEN,
        json!({ "decision": "deny", "note": "after the crash" }),
    )
    .await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["status"], "denied");
    assert_eq!(after["decided_by"], "master");
    assert_eq!(after["note"], "after the crash");
    // The short one's timer was re-armed: the hub denies it once its time is up.
    let mut timed_out = Value::Null;
    for _ in 0..200 {
        let (_, now) = call(
            &base,
            Method::GET,
            &format!("/api/approvals/{timing}"),
            TOKEN,
            Value::Null,
        )
        .await;
        if now["status"] != "pending" {
            timed_out = now;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(timed_out["status"], "denied", "{timed_out}");
    assert_eq!(timed_out["decided_by"], "hub");
    assert_eq!(timed_out["note"], "timeout");
    let (_, left) = call(
        &base,
        Method::GET,
        "/api/approvals?status=pending",
        TOKEN,
        Value::Null,
    )
    .await;
    assert_eq!(left["count"], 0, "{left}");
}

#[actix_web::test]
async fn an_agent_may_not_decide_its_own_request() {
    let hub = TestHub::spawn().await;
    // An admin-preset token holds tasks:execute and approvals:decide both.
    let boss = hub.token("boss", "admin").await;
    hub.post(
        "/api/agents/boss/register",
        &boss,
        json!({ "name": "boss", "capabilities": ["research"] }),
    )
    .await
    .expect(200);
    let id = running_task(&hub, "boss", &boss).await;
    let asked = ask_ok(&hub, id, &boss, "deploy").await;
    let refused = decide(&hub, &asked, &boss, json!({ "decision": "allow" }))
        .await
        .expect(403);
    assert!(
        refused["error"].as_str().unwrap().contains("its own"),
        "{refused}"
    );
    assert_eq!(approval_now(&hub, &asked).await["status"], "pending");
    decide(&hub, &asked, MASTER, json!({ "decision": "allow" }))
        .await
        .expect(200);
}
