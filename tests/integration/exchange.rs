//! The MESS exchange (seed 003): the seed's calls as written, its errors, the claim race,
//! notifications (and the request-forgery guard), and the JSON Lines event log.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{receiver, TestHub, MASTER};

const HOME: &str = "/api/v1/exchanges/home";

/// A hub with exchange `home`, open to registration.
async fn home(configure: impl FnOnce(&mut m3shd::settings::Settings)) -> TestHub {
    let hub = TestHub::spawn_with(configure).await;
    hub.post(
        "/api/admin/exchanges",
        MASTER,
        json!({ "exchange_id": "home", "open_registration": true }),
    )
    .await
    .expect(201);
    hub
}

/// Registers `executor` on `home`; its key.
async fn register(hub: &TestHub, executor: &str, extra: Value) -> String {
    let mut body = json!({ "executor_id": executor, "display_name": executor });
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    let made = hub
        .post(&format!("{HOME}/register"), "", body)
        .await
        .expect(201);
    made["api_key"].as_str().unwrap().to_string()
}

async fn ask(hub: &TestHub, key: &str, intent: &str) -> String {
    let made = hub
        .post(
            &format!("{HOME}/requests"),
            key,
            json!({ "intent": intent }),
        )
        .await
        .expect(201);
    made["ref"].as_str().unwrap().to_string()
}

async fn patch(hub: &TestHub, path: &str, key: &str, body: Value) -> crate::support::Reply {
    hub.call(awc::http::Method::PATCH, path, key, Some(body))
        .await
}

#[actix_web::test]
async fn the_seeds_calls_work_as_written() {
    let hub = home(|_| {}).await;
    // Register Executor, as the seed's curl sends it.
    let registered = hub
        .post(
            &format!("{HOME}/register"),
            "",
            json!({
                "executor_id": "my-phone",
                "display_name": "My Phone",
                "capabilities": ["photo:capture", "location:indoor"],
                "notifications": [{"type": "ntfy", "topic": "mess-home"}]
            }),
        )
        .await
        .expect(201);
    assert_eq!(registered["executor_id"], "my-phone");
    assert_eq!(
        registered["message"],
        "Save this API key - it cannot be retrieved again."
    );
    let phone = registered["api_key"].as_str().unwrap().to_string();
    assert!(phone.starts_with("mess_home_"), "{phone}");
    let agent = register(&hub, "claude-agent", json!({})).await;

    // Create Request, as the seed sends it.
    let created = hub
        .post(
            &format!("{HOME}/requests"),
            &agent,
            json!({
                "intent": "Check if the garage door is closed",
                "context": ["Getting ready for bed"],
                "priority": "normal",
                "response_hint": ["image"]
            }),
        )
        .await
        .expect(201);
    assert_eq!(created["status"], "pending");
    let r = created["ref"].as_str().unwrap().to_string();
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(r.starts_with(&today) && r.len() == 15, "{r}");

    // List Requests: the seed's fields.
    let list = hub
        .get(&format!("{HOME}/requests"), &phone)
        .await
        .expect(200);
    let thread = &list["threads"][0];
    assert_eq!(thread["ref"], r.as_str());
    assert_eq!(thread["status"], "pending");
    assert_eq!(thread["intent"], "Check if the garage door is closed");
    assert_eq!(thread["requestor_id"], "claude-agent");
    assert_eq!(thread["executor_id"], Value::Null);
    assert_eq!(thread["priority"], "normal");
    assert!(thread["created_at"].is_string() && thread["updated_at"].is_string());
    let pending = hub
        .get(&format!("{HOME}/requests?status=pending"), &phone)
        .await
        .expect(200);
    assert_eq!(pending["threads"].as_array().unwrap().len(), 1);

    // Claim, then complete with a response.
    let path = format!("{HOME}/requests/{r}");
    patch(&hub, &path, &phone, json!({ "status": "claimed" }))
        .await
        .expect(200);
    let done = json!({
        "status": "completed",
        "mess": [{"response": {"content": ["Door is locked", {"image": "data:image/png;base64,iVBORw0KGgo="}]}}]
    });
    patch(&hub, &path, &phone, done).await.expect(200);

    // Get Request Details: the thread and its messages.
    let got = hub.get(&path, &agent).await.expect(200);
    let thread = &got["thread"];
    assert_eq!(thread["status"], "completed");
    assert_eq!(thread["executor_id"], "my-phone");
    let messages = thread["messages"].as_array().unwrap();
    assert_eq!(messages[0]["from"], "claude-agent");
    assert_eq!(
        messages[0]["mess"][0]["request"]["intent"],
        "Check if the garage door is closed"
    );
    assert_eq!(
        messages[0]["mess"][0]["request"]["context"][0],
        "Getting ready for bed"
    );
    let last = messages.last().unwrap();
    assert_eq!(last["from"], "my-phone");
    assert_eq!(
        last["mess"][0]["status"],
        json!({ "re": r, "code": "completed" })
    );
    assert_eq!(last["mess"][1]["response"]["content"][0], "Door is locked");
    assert!(last["ts"].is_string());

    // List Executors and Update Executor Profile, as the seed shows them.
    let executors = hub
        .get(&format!("{HOME}/executors"), &phone)
        .await
        .expect(200);
    let mine = executors["executors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "my-phone")
        .unwrap()
        .clone();
    assert_eq!(mine["display_name"], "My Phone");
    assert_eq!(
        mine["capabilities"],
        json!(["photo:capture", "location:indoor"])
    );
    assert!(mine["last_seen"].is_string() && mine["created_at"].is_string());
    assert!(mine.get("api_key").is_none() && mine.get("notifications").is_none());
    let profile = json!({
        "display_name": "Teague Phone",
        "capabilities": ["photo:capture", "location:indoor", "location:outdoor"],
        "notifications": [
            {"type": "ntfy", "topic": "mess-alerts"},
            {"type": "slack", "webhook_url": "https://hooks.slack.com/services/T0/B0/x"}
        ],
        "preferences": {"min_priority": "normal", "quiet_hours": {"enabled": true, "start": "22:00", "end": "07:00"}}
    });
    patch(&hub, &format!("{HOME}/executors/my-phone"), &phone, profile)
        .await
        .expect(200);
    let renamed = patch(
        &hub,
        &format!("{HOME}/executors/claude-agent"),
        &phone,
        json!({ "display_name": "x" }),
    )
    .await;
    assert_eq!(renamed.status, 403, "{}", renamed.body);

    // Underneath: a task of the core, and agents.
    let tasks = hub.get("/api/tasks?status=done", MASTER).await.expect(200);
    let task = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["title"] == format!("MESS request {r}"))
        .cloned()
        .unwrap();
    assert_eq!(task["assigned_to"], "home.my-phone");
    let agents = hub.get("/api/agents", MASTER).await.expect(200);
    assert!(agents.to_string().contains("home.my-phone"), "{agents}");
}

#[actix_web::test]
async fn errors_are_the_seeds() {
    let hub = home(|_| {}).await;
    hub.post(
        "/api/admin/exchanges",
        MASTER,
        json!({ "exchange_id": "office" }),
    )
    .await
    .expect(201);
    // Registration: closed, unknown exchange, missing field, taken.
    let closed = hub
        .post(
            "/api/v1/exchanges/office/register",
            "",
            json!({ "executor_id": "x" }),
        )
        .await;
    assert_eq!(closed.status, 403);
    assert!(
        closed.body["error"].as_str().unwrap().contains("closed"),
        "{}",
        closed.body
    );
    assert_eq!(
        hub.post(
            "/api/v1/exchanges/nowhere/register",
            "",
            json!({ "executor_id": "x" })
        )
        .await
        .status,
        404
    );
    assert_eq!(
        hub.post(&format!("{HOME}/register"), "", json!({}))
            .await
            .status,
        400
    );
    let phone = register(&hub, "phone", json!({})).await;
    let again = hub
        .post(
            &format!("{HOME}/register"),
            "",
            json!({ "executor_id": "phone" }),
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    let watch = register(&hub, "watch", json!({})).await;
    let agent = register(&hub, "agent", json!({})).await;

    // Keys: a bad one is 401; another exchange's key or a MESS key elsewhere is 403.
    assert_eq!(
        hub.get(&format!("{HOME}/requests"), "mess_home_nope")
            .await
            .status,
        401
    );
    hub.post("/api/admin/exchanges/office", MASTER, json!({}))
        .await;
    patch(
        &hub,
        "/api/admin/exchanges/office",
        MASTER,
        json!({ "open_registration": true }),
    )
    .await
    .expect(200);
    let office = hub
        .post(
            "/api/v1/exchanges/office/register",
            "",
            json!({ "executor_id": "desk" }),
        )
        .await
        .expect(201);
    let desk = office["api_key"].as_str().unwrap();
    assert_eq!(hub.get(&format!("{HOME}/requests"), desk).await.status, 403);
    for elsewhere in ["/api/tasks", "/api/agents", "/api/me"] {
        assert_eq!(hub.get(elsewhere, &phone).await.status, 403, "{elsewhere}");
    }
    // A plain m3shd worker token is no MESS key.
    let worker = hub.token("plain-worker", "worker").await;
    assert_eq!(
        hub.get(&format!("{HOME}/requests"), &worker).await.status,
        403
    );

    // Requests: missing intent, bad priority, unknown thread.
    assert_eq!(
        hub.post(
            &format!("{HOME}/requests"),
            &agent,
            json!({ "context": ["x"] })
        )
        .await
        .status,
        400
    );
    assert_eq!(
        hub.post(
            &format!("{HOME}/requests"),
            &agent,
            json!({ "intent": "x", "priority": "asap" })
        )
        .await
        .status,
        400
    );
    let missing = hub
        .get(&format!("{HOME}/requests/2026-01-01-ZZZZ"), &agent)
        .await;
    assert_eq!(
        (missing.status.as_u16(), missing.body["error"].clone()),
        (404, json!("Thread not found"))
    );

    // Claims are compare-and-set; only the claimer finishes; only the requestor cancels.
    let r = ask(&hub, &agent, "Water the plants").await;
    let path = format!("{HOME}/requests/{r}");
    assert_eq!(
        patch(&hub, &path, &phone, json!({ "status": "completed" }))
            .await
            .status,
        409,
        "not claimed yet"
    );
    patch(&hub, &path, &phone, json!({ "status": "claimed" }))
        .await
        .expect(200);
    assert_eq!(
        patch(&hub, &path, &watch, json!({ "status": "claimed" }))
            .await
            .status,
        409
    );
    assert_eq!(
        patch(&hub, &path, &watch, json!({ "status": "completed" }))
            .await
            .status,
        403
    );
    assert_eq!(
        patch(&hub, &path, &phone, json!({ "status": "cancelled" }))
            .await
            .status,
        403
    );
    assert_eq!(
        patch(&hub, &path, &phone, json!({ "status": "done" }))
            .await
            .status,
        400
    );
    patch(&hub, &path, &agent, json!({ "status": "cancelled" }))
        .await
        .expect(200);
    assert_eq!(
        patch(&hub, &path, &agent, json!({ "status": "cancelled" }))
            .await
            .status,
        409
    );
    let thread = hub.get(&path, &agent).await.expect(200);
    assert_eq!(thread["thread"]["status"], "cancelled");
}

#[actix_web::test]
async fn of_many_executors_claiming_one_request_exactly_one_wins() {
    let hub = home(|_| {}).await;
    let agent = register(&hub, "asker", json!({})).await;
    let mut keys = Vec::new();
    for n in 0..24 {
        keys.push(register(&hub, &format!("racer-{n}"), json!({})).await);
    }
    let r = ask(&hub, &agent, "Take a photo of the garden").await;
    let path = format!("{HOME}/requests/{r}");
    let claims = keys
        .iter()
        .map(|key| patch(&hub, &path, key, json!({ "status": "claimed" })));
    let answers = futures_util::future::join_all(claims).await;
    let won: Vec<usize> = answers
        .iter()
        .enumerate()
        .filter(|(_, a)| a.status == 200)
        .map(|(i, _)| i)
        .collect();
    let lost = answers.iter().filter(|a| a.status == 409).count();
    assert_eq!(won.len(), 1, "{answers:?}");
    assert_eq!(lost, keys.len() - 1);
    let thread = hub.get(&path, &agent).await.expect(200);
    assert_eq!(thread["thread"]["executor_id"], format!("racer-{}", won[0]));
}

#[actix_web::test]
async fn an_image_past_the_limit_is_a_413() {
    let hub = home(|s| s.exchange_max_image_bytes = 1000).await;
    let agent = register(&hub, "asker", json!({})).await;
    let phone = register(&hub, "phone", json!({})).await;
    let r = ask(&hub, &agent, "Photo of the door").await;
    let path = format!("{HOME}/requests/{r}");
    patch(&hub, &path, &phone, json!({ "status": "claimed" }))
        .await
        .expect(200);
    let image = |bytes: usize| format!("data:image/png;base64,{}", "A".repeat(bytes));
    let big = json!({ "status": "completed", "mess": [{"response": {"content": [{"image": image(2000)}]}}] });
    assert_eq!(patch(&hub, &path, &phone, big).await.status, 413);
    let small = json!({ "status": "completed", "mess": [{"response": {"content": [{"image": image(500)}]}}] });
    patch(&hub, &path, &phone, small).await.expect(200);
}

#[actix_web::test]
async fn executors_are_notified_on_every_channel_as_their_preferences_allow() {
    let (url, received) = receiver();
    let hub = home(|s| s.exchange_notify_allow = vec!["127.0.0.1".into()]).await;
    let channels = json!([
        {"type": "ntfy", "topic": "mess-home", "server": url},
        {"type": "slack", "webhook_url": format!("{url}/slack")},
        {"type": "google_chat", "webhook_url": format!("{url}/chat")},
        {"type": "webhook", "url": format!("{url}/hook")},
        {"type": "webhook", "url": format!("{url}/hang")}
    ]);
    register(&hub, "phone", json!({ "notifications": channels })).await;
    let picky = json!([{"type": "webhook", "url": format!("{url}/picky")}]);
    register(
        &hub,
        "picky",
        json!({ "notifications": picky, "preferences": {"min_priority": "urgent"} }),
    )
    .await;
    let agent = register(&hub, "asker", json!({})).await;

    let started = std::time::Instant::now();
    let r = ask(&hub, &agent, "Is the oven off?").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a hanging receiver slowed the request"
    );
    let arrived = hub
        .eventually(Duration::from_secs(5), || async {
            received.lock().unwrap().len() >= 4
        })
        .await;
    let got = received.lock().unwrap().clone();
    assert!(arrived, "{got:?}");
    let paths: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
    for path in ["/mess-home", "/slack", "/chat", "/hook"] {
        assert!(paths.contains(&path), "{path} in {paths:?}");
    }
    let hook = got.iter().find(|(p, _, _)| p == "/hook").unwrap();
    let hook: Value = serde_json::from_str(&hook.2).unwrap();
    assert_eq!(
        (hook["ref"].as_str(), hook["event"].as_str()),
        (Some(r.as_str()), Some("created"))
    );
    let slack: Value =
        serde_json::from_str(&got.iter().find(|(p, _, _)| p == "/slack").unwrap().2).unwrap();
    assert!(slack["text"].as_str().unwrap().contains(&r));
    assert!(
        !paths.contains(&"/picky"),
        "a normal request is below picky's minimum"
    );

    // An urgent one reaches picky too.
    hub.post(
        &format!("{HOME}/requests"),
        &agent,
        json!({ "intent": "Smoke alarm!", "priority": "urgent" }),
    )
    .await
    .expect(201);
    let picked = hub
        .eventually(Duration::from_secs(5), || async {
            received
                .lock()
                .unwrap()
                .iter()
                .any(|(p, _, _)| p == "/picky")
        })
        .await;
    assert!(picked);
}

#[actix_web::test]
async fn notification_urls_never_reach_local_addresses_unless_allowed() {
    let (url, received) = receiver();
    let hub = home(|_| {}).await;
    register(
        &hub,
        "phone",
        json!({ "notifications": [{"type": "webhook", "url": format!("{url}/hook")}] }),
    )
    .await;
    // Not even through a name that resolves to loopback.
    let port = url.rsplit(':').next().unwrap();
    let named = format!("http://localhost:{port}/named");
    register(
        &hub,
        "named",
        json!({ "notifications": [{"type": "webhook", "url": named}] }),
    )
    .await;
    let agent = register(&hub, "asker", json!({})).await;
    ask(&hub, &agent, "Anything").await;
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    assert!(
        received.lock().unwrap().is_empty(),
        "{:?}",
        received.lock().unwrap()
    );
    // A URL that is no http(s) URL is refused when it is given.
    let refused = hub
        .post(&format!("{HOME}/register"), "", json!({ "executor_id": "bad", "notifications": [{"type": "webhook", "url": "file:///etc/passwd"}] }))
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
}

/// Every line of the event log under `dir`, with its file.
fn log_lines(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Value)> {
    let mut lines = Vec::new();
    let mut stack = vec![dir.join("events")];
    while let Some(folder) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "jsonl") {
                for line in std::fs::read_to_string(&path).unwrap().lines() {
                    lines.push((path.clone(), serde_json::from_str(line).unwrap()));
                }
            }
        }
    }
    lines
}

#[actix_web::test]
async fn the_event_log_is_partitioned_as_the_seed_shows_without_content_or_keys() {
    let hub = home(|_| {}).await;
    let phone = register(&hub, "phone", json!({ "capabilities": ["photo:capture"] })).await;
    let agent = register(&hub, "asker", json!({})).await;
    let r = ask(&hub, &agent, "A secret intent").await;
    let path = format!("{HOME}/requests/{r}");
    patch(&hub, &path, &phone, json!({ "status": "claimed" }))
        .await
        .expect(200);
    patch(
        &hub,
        &path,
        &phone,
        json!({ "status": "completed", "mess": [{"response": {"content": ["a secret answer"]}}] }),
    )
    .await
    .expect(200);
    let dir = hub.dir.path().to_path_buf();
    let settled = hub
        .eventually(Duration::from_secs(10), || async {
            log_lines(&dir).len() >= 5
        })
        .await;
    let lines = log_lines(&dir);
    assert!(settled, "{lines:?}");
    let today = chrono::Utc::now().format("%Y/%m/%d").to_string();
    for (file, line) in &lines {
        let shown = file.to_string_lossy();
        assert!(
            shown.contains(&format!("events/exchange=home/{today}/")),
            "{shown}"
        );
        assert_eq!(line["exchange_id"], "home");
        assert!(line["type"].is_string() && line["ts"].is_string());
        assert!(line.get("thread_ref").is_some());
    }
    let types: Vec<&str> = lines
        .iter()
        .filter(|(_, l)| l["thread_ref"] == r.as_str())
        .map(|(_, l)| l["type"].as_str().unwrap())
        .collect();
    for kind in ["request_created", "request_claimed", "request_completed"] {
        assert_eq!(
            types.iter().filter(|t| **t == kind).count(),
            1,
            "{kind} in {types:?}"
        );
    }
    let everything = lines.iter().map(|(_, l)| l.to_string()).collect::<String>();
    assert!(
        !everything.contains("secret"),
        "content is logged only when enabled"
    );
    let profile = std::fs::read_to_string(dir.join("executors/exchange=home/phone.json")).unwrap();
    assert!(
        profile.contains("photo:capture") && !profile.contains("mess_home_"),
        "{profile}"
    );
}

/// Runs the seed's DuckDB query in `cwd` (whose `data/` is the hub's data directory): the
/// rows it finds. The `duckdb` Python package is installed by `.ci/test`.
fn duckdb_rows(cwd: &std::path::Path) -> i64 {
    let query = "SELECT * FROM read_json_auto('data/events/**/*.jsonl', hive_partitioning=true) \
                 WHERE exchange_id = 'home' AND thread_ref IS NOT NULL;";
    let script = format!("import duckdb; print(len(duckdb.sql(\"{query}\").fetchall()))");
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .current_dir(cwd)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the seed's DuckDB query failed (install duckdb: python3 -m pip install duckdb; .ci/test does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[actix_web::test]
async fn the_event_log_survives_sigkill_whole_and_duckdb_reads_it_with_the_seeds_query() {
    use crate::support::process::serve;
    use crate::support::send_json;
    use awc::http::Method;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (db, log) = (data.join("hub.db"), dir.path().join("hub.log"));
    const TOKEN: &str = "exchange-master";
    let call = |base: String, method: Method, path: String, key: String, body: Value| async move {
        let auth = format!("Bearer {key}");
        let headers = [("Authorization", auth.as_str())];
        send_json(
            &base,
            method,
            &path,
            &headers,
            Some(body),
            Duration::from_secs(10),
        )
        .await
        .0
    };
    let mut hub = serve(TOKEN, &db, &log, &[]).await;
    let base = hub.base.clone();
    call(
        base.clone(),
        Method::POST,
        "/api/admin/exchanges".into(),
        TOKEN.into(),
        json!({ "exchange_id": "home", "open_registration": true }),
    )
    .await
    .expect(201);
    let asker = call(
        base.clone(),
        Method::POST,
        format!("{HOME}/register"),
        String::new(),
        json!({ "executor_id": "asker" }),
    )
    .await
    .expect(201);
    let key = asker["api_key"].as_str().unwrap().to_string();
    let asks = (0..40).map(|n| {
        call(
            base.clone(),
            Method::POST,
            format!("{HOME}/requests"),
            key.clone(),
            json!({ "intent": format!("task {n}") }),
        )
    });
    let made = futures_util::future::join_all(asks).await;
    assert!(made.iter().all(|m| m.status == 201));
    // Killed the moment the last create is answered: some events are committed, not logged.
    hub.child.kill().unwrap();
    hub.child.wait().unwrap();
    let hub = serve(TOKEN, &db, &log, &[]).await;
    let lines = || {
        let mut names = Vec::new();
        let lines = log_lines(&data);
        for (file, _) in &lines {
            names.push(file.file_name().unwrap().to_string_lossy().into_owned());
        }
        (lines, names)
    };
    // 1 registration + 40 requests.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while lines().0.len() < 41 && std::time::Instant::now() < deadline {
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let (found, mut names) = lines();
    assert_eq!(found.len(), 41, "nothing doubled");
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 41);
    let created = found
        .iter()
        .filter(|(_, l)| l["type"] == "request_created")
        .count();
    assert_eq!(created, 40);
    assert_eq!(duckdb_rows(dir.path()), 40);
    drop(hub);
}
