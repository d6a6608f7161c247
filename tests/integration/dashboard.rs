//! The operator dashboard and what it reads: the embedded page and its files, who the
//! caller is, the overview counts, a task's output streamed so far, the audit export, the
//! task list's capability filter, what signed-in people see and may do, and the `resync`
//! a stream client gets when it can no longer catch up event by event.

use std::collections::BTreeSet;
use std::io::Read;

use awc::http::header::HeaderMap;
use awc::http::Method;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use m3shd::domain::access::{role_permissions, ALL_PERMISSIONS};
use serde_json::{json, Value};

use crate::support::{Reply, TestHub, MASTER, SOON};

/// A response as it came over the wire (never decompressed by the client).
struct Raw {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `GET path` with exactly these headers: told not to decompress, awc sends no
/// `Accept-Encoding` of its own and hands back the bytes as sent.
async fn fetch(hub: &TestHub, path: &str, headers: &[(&str, &str)]) -> Raw {
    let mut request = awc::Client::new()
        .get(format!("{}{path}", hub.base))
        .no_decompress();
    for &(name, value) in headers {
        request = request.insert_header((name, value));
    }
    let mut response = request.send().await.expect("the hub answers");
    let body = response
        .body()
        .limit(16 << 20)
        .await
        .expect("a body")
        .to_vec();
    Raw {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body,
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a valid gzip stream");
    out
}

/// Issues a token for `agent` holding exactly `permissions`.
async fn token_with(hub: &TestHub, agent: &str, permissions: &[&str]) -> String {
    let body = json!({ "agent_id": agent, "name": agent, "permissions": permissions });
    hub.post("/api/admin/tokens", MASTER, body)
        .await
        .expect(201)["token"]
        .as_str()
        .expect("a token")
        .to_string()
}

/// Makes an account with this role and signs it in; returns the `name=value` cookie.
async fn sign_in(hub: &TestHub, username: &str, role: &str) -> String {
    let account = json!({ "username": username, "password": "correct horse", "role": role });
    hub.post("/api/admin/users", MASTER, account)
        .await
        .expect(201);
    let response = awc::Client::new()
        .post(format!("{}/api/login", hub.base))
        .send_json(&json!({ "username": username, "password": "correct horse" }))
        .await
        .expect("the hub answers");
    assert_eq!(response.status(), 200, "{username} signs in");
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie");
    cookie.split(';').next().unwrap().to_string()
}

/// A request signed in by the session cookie, sent as a browser on `origin` sends it.
async fn person_from(
    hub: &TestHub,
    method: Method,
    path: &str,
    cookie: &str,
    body: Option<Value>,
    origin: &str,
) -> Reply {
    let request = awc::Client::new()
        .request(method, format!("{}{path}", hub.base))
        .insert_header(("Cookie", cookie))
        .insert_header(("Origin", origin));
    let mut response = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    }
    .expect("the hub answers");
    let bytes = response.body().await.expect("a body");
    Reply {
        status: response.status(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// A request signed in by the session cookie from the hub's own pages.
async fn person(
    hub: &TestHub,
    method: Method,
    path: &str,
    cookie: &str,
    body: Option<Value>,
) -> Reply {
    person_from(hub, method, path, cookie, body, &hub.base).await
}

fn id_of(task: &Value) -> i64 {
    task["id"].as_i64().expect("a task id")
}

fn ids_in(list: &Value) -> BTreeSet<i64> {
    list["tasks"]
        .as_array()
        .expect("a task list")
        .iter()
        .map(id_of)
        .collect()
}

/// Creates a task pinned to `agent` and waits until that agent holds it.
async fn held_by(hub: &TestHub, agent: &str, title: &str) -> i64 {
    let id = id_of(
        &hub.task(json!({ "title": title, "prompt": "p", "assign_to": agent }))
            .await,
    );
    let assigned = hub
        .eventually(SOON, || async {
            hub.task_status(id).await["assigned_to"] == agent
        })
        .await;
    assert!(assigned, "task {id} was never assigned to {agent}");
    id
}

// ---- the page and its files ----

#[actix_web::test]
async fn the_dashboard_page_and_its_files_load_without_credentials_under_a_strict_policy() {
    let hub = TestHub::spawn().await;
    let mut etags = BTreeSet::new();
    for (path, mime) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let file = fetch(&hub, path, &[]).await;
        assert_eq!(file.status, 200, "{path}");
        let content_type = file.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with(mime), "{path}: {content_type}");
        assert!(!file.body.is_empty(), "{path} has content");
        assert_eq!(
            file.header("content-encoding"),
            None,
            "{path} is not compressed for a client that did not ask"
        );
        let etag = file.header("etag").expect("an ETag");
        assert!(
            etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
            "{path}: a strong, quoted ETag, not {etag}"
        );
        etags.insert(etag.to_string());
        assert_eq!(file.header("cache-control"), Some("no-cache"), "{path}");
        assert!(
            file.header("vary")
                .is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")),
            "{path}: {:?}",
            file.header("vary")
        );
        let policy = file
            .header("content-security-policy")
            .expect("a Content-Security-Policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(
                policy.contains(directive),
                "{path}: {directive} in {policy}"
            );
        }
        assert!(!policy.contains("unsafe-"), "{path}: {policy}");
        assert_eq!(file.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            file.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
    assert_eq!(etags.len(), 3, "each file has its own ETag: {etags:?}");

    let page = String::from_utf8(fetch(&hub, "/", &[]).await.body).unwrap();
    for linked in ["/ui/app.js", "/ui/app.css"] {
        assert!(page.contains(linked), "the page loads {linked}");
    }
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page loads nothing from another host: {page}"
    );
}

#[actix_web::test]
async fn a_browser_holding_the_current_file_gets_304_and_one_holding_an_old_file_gets_it_again() {
    let hub = TestHub::spawn().await;
    let first = fetch(&hub, "/ui/app.js", &[]).await;
    let etag = first.header("etag").expect("an ETag").to_string();

    let again = fetch(&hub, "/ui/app.js", &[("If-None-Match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty(), "a 304 carries no body");
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert_eq!(again.header("cache-control"), Some("no-cache"));

    let listed = format!("\"an-old-version\", {etag}");
    let among = fetch(&hub, "/ui/app.js", &[("If-None-Match", &listed)]).await;
    assert_eq!(among.status, 304, "the current ETag in a list matches");

    let old = fetch(
        &hub,
        "/ui/app.js",
        &[("If-None-Match", "\"an-old-version\"")],
    )
    .await;
    assert_eq!(old.status, 200);
    assert_eq!(old.body, first.body, "an old version gets the current file");

    let other = fetch(&hub, "/ui/app.css", &[("If-None-Match", &etag)]).await;
    assert_eq!(other.status, 200, "app.js's ETag does not validate app.css");
}

#[actix_web::test]
async fn a_big_file_is_gzipped_for_clients_that_accept_it_and_unpacks_to_the_same_bytes() {
    let hub = TestHub::spawn().await;
    let plain = fetch(&hub, "/ui/preact-htm.js", &[]).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);

    let packed = fetch(
        &hub,
        "/ui/preact-htm.js",
        &[("Accept-Encoding", "gzip, deflate")],
    )
    .await;
    assert_eq!(packed.status, 200);
    assert_eq!(packed.header("content-encoding"), Some("gzip"));
    assert_eq!(packed.header("content-type"), plain.header("content-type"));
    assert!(packed
        .header("vary")
        .is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")));
    assert!(
        packed.body.len() < plain.body.len(),
        "gzip made it smaller: {} of {} bytes",
        packed.body.len(),
        plain.body.len()
    );
    assert_eq!(gunzip(&packed.body), plain.body);
    assert_ne!(
        packed.header("etag"),
        plain.header("etag"),
        "each encoding is its own representation with its own ETag"
    );

    for refused in ["br", "gzip;q=0", "identity"] {
        let file = fetch(&hub, "/ui/preact-htm.js", &[("Accept-Encoding", refused)]).await;
        assert_eq!(file.header("content-encoding"), None, "{refused}");
        assert_eq!(file.body, plain.body, "{refused}");
    }
}

#[actix_web::test]
async fn a_dashboard_file_that_does_not_exist_is_a_json_404() {
    let hub = TestHub::spawn().await;
    // `mod.rs` sits next to the embedded files in the source tree: only listed files exist.
    for path in ["/ui/nothing-here.js", "/ui/mod.rs", "/ui/"] {
        let missing = fetch(&hub, path, &[]).await;
        assert_eq!(missing.status, 404, "{path}");
        assert!(
            missing
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{path}: {:?}",
            missing.header("content-type")
        );
        let body: Value = serde_json::from_slice(&missing.body).expect("a JSON error");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {body}"
        );
    }
}

// ---- who the caller is ----

#[actix_web::test]
async fn me_says_who_each_caller_is_how_it_signed_in_and_what_it_may_do() {
    let hub = TestHub::spawn().await;
    // Nobody signed in: the dashboard shows its sign-in screen.
    let anonymous = hub
        .raw(Method::GET, "/api/me", None, None)
        .await
        .expect(200);
    assert_eq!(anonymous["kind"], "anonymous");
    assert_eq!(anonymous["permissions"], json!([]));
    assert_eq!(anonymous["sees_all_tasks"], false);
    // A credential the hub never issued is refused, not taken for nobody.
    let forged = "m3shd_ag_0123456789abcdef0123456789abcdef";
    hub.get("/api/me", forged).await.expect(401);

    let master = hub.get("/api/me", MASTER).await.expect(200);
    assert_eq!(master["kind"], "master");
    assert_eq!(master["name"], "master");
    assert_eq!(master["sees_all_tasks"], true);
    assert_eq!(
        master["permissions"].as_array().unwrap().len(),
        ALL_PERMISSIONS.len(),
        "{master}"
    );

    let rex = hub.token("rex", "worker").await;
    let me = hub.get("/api/me", &rex).await.expect(200);
    assert_eq!(me["kind"], "token");
    assert_eq!(me["name"], "rex");
    assert_eq!(me["role"], "worker");
    assert_eq!(me["sees_all_tasks"], false);
    let held: BTreeSet<String> = me["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let worker: BTreeSet<String> = role_permissions("worker").unwrap().into_iter().collect();
    assert_eq!(held, worker);

    let reader = token_with(&hub, "reader", &["tasks:read"]).await;
    let me = hub.get("/api/me", &reader).await.expect(200);
    assert_eq!(me["role"], Value::Null, "no preset has exactly these: {me}");
    assert_eq!(me["permissions"], json!(["tasks:read"]));

    let otto = sign_in(&hub, "otto", "operator").await;
    let me = person(&hub, Method::GET, "/api/me", &otto, None)
        .await
        .expect(200);
    assert_eq!(me["kind"], "session");
    assert_eq!(me["name"], "user:otto");
    assert_eq!(me["role"], "operator");
    assert_eq!(me["sees_all_tasks"], true);
}

// ---- the overview ----

#[actix_web::test]
async fn the_overview_shows_each_part_only_to_callers_who_may_read_it() {
    let hub = TestHub::spawn().await;
    let anonymous = hub.raw(Method::GET, "/api/overview", None, None).await;
    assert_eq!(anonymous.status, 401);
    let chatter = token_with(&hub, "chatter", &["messages:read"]).await;
    hub.get("/api/overview", &chatter).await.expect(403);

    // An agent sees only its own tasks: no counts over everyone's, and no money.
    let tasks_only = token_with(&hub, "tasks-only", &["tasks:read"]).await;
    let view = hub.get("/api/overview", &tasks_only).await.expect(200);
    for part in ["tasks", "cost", "agents"] {
        assert!(view.get(part).is_none(), "no {part}: {view}");
    }
    assert_eq!(view["kill_switch"]["active"], false);

    // A viewer signed in oversees the tasks and escalations, but the cost is for
    // admin:analytics.
    let viewer = sign_in(&hub, "vic", "viewer").await;
    let view = person(&hub, Method::GET, "/api/overview", &viewer, None)
        .await
        .expect(200);
    assert!(view["tasks"]["open_escalations"].is_number(), "{view}");
    assert!(view["agents"].is_object(), "{view}");
    assert!(view.get("cost").is_none(), "{view}");
    let analyst = token_with(&hub, "analyst", &["tasks:read", "admin:analytics"]).await;
    let view = hub.get("/api/overview", &analyst).await.expect(200);
    assert!(view["cost"]["cap_usd"].is_number(), "{view}");

    let agents_only = token_with(&hub, "agents-only", &["agents:read"]).await;
    let view = hub.get("/api/overview", &agents_only).await.expect(200);
    assert!(view["agents"].is_object(), "{view}");
    assert!(
        view.get("tasks").is_none() && view.get("cost").is_none(),
        "{view}"
    );

    let both = hub.get("/api/overview", MASTER).await.expect(200);
    for part in ["kill_switch", "tasks", "cost", "agents"] {
        assert!(both.get(part).is_some(), "master sees {part}: {both}");
    }

    // Everyone who may read the overview sees the kill switch.
    hub.post(
        "/api/admin/kill-switch",
        MASTER,
        json!({ "reason": "maintenance" }),
    )
    .await
    .expect(200);
    let view = hub.get("/api/overview", &agents_only).await.expect(200);
    assert_eq!(view["kill_switch"]["active"], true, "{view}");
    assert_eq!(view["kill_switch"]["reason"], "maintenance");
}

#[actix_web::test]
async fn the_overview_counts_a_scripted_workload() {
    let hub = TestHub::spawn().await;
    let started = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap();
    let mut gpu = Vec::new();
    for n in 0..3 {
        let task =
            json!({ "title": format!("render {n}"), "prompt": "p", "required_capability": "gpu" });
        gpu.push(id_of(&hub.task(task).await));
    }
    for n in 0..2 {
        hub.task(json!({ "title": format!("read {n}"), "prompt": "p" }))
            .await;
    }
    // One slot: rex takes one research task, and the other when the first is done.
    let rex = hub.agent("rex", &["research"], 1).await;
    let held = || async {
        hub.get("/api/tasks?assigned_to=rex", MASTER)
            .await
            .expect(200)["tasks"][0]["id"]
            .as_i64()
    };
    let found = hub
        .eventually(SOON, || async { held().await.is_some() })
        .await;
    assert!(found, "rex picks up a research task");
    let path = format!("/api/tasks/{}", held().await.unwrap());
    hub.put(&path, &rex, json!({ "status": "running" }))
        .await
        .expect(200);
    hub.put(
        &path,
        &rex,
        json!({ "status": "done", "output": "read", "cost_usd": 0.25 }),
    )
    .await
    .expect(200);
    let escalation = json!({ "task_id": gpu[0], "reason": "no agent has a GPU" });
    hub.post("/api/escalations", MASTER, escalation)
        .await
        .expect(201);

    let expected = json!({ "queued": 3, "assigned": 1, "done": 1 });
    let overview = || async { hub.get("/api/overview", MASTER).await.expect(200) };
    let settled = hub
        .eventually(SOON, || async {
            let view = overview().await;
            view["tasks"]["by_status"] == expected && view["agents"]["by_status"]["busy"] == 1
        })
        .await;
    let view = overview().await;
    assert!(settled, "the overview settles on the workload: {view}");
    let tasks = &view["tasks"];
    assert_eq!(tasks["total"], 5);
    assert_eq!(tasks["queue_depth"], 3);
    assert_eq!(tasks["queued_by_capability"], json!({ "gpu": 3 }));
    assert_eq!(tasks["open_escalations"], 1);

    let minutes: Vec<(DateTime<Utc>, i64, i64)> = tasks["per_minute"]
        .as_array()
        .expect("per_minute")
        .iter()
        .map(|m| {
            let at = DateTime::parse_from_rfc3339(m["minute"].as_str().expect("a minute"))
                .expect("an ISO minute")
                .with_timezone(&Utc);
            let count = |k: &str| m[k].as_i64().expect("a count");
            (at, count("created"), count("finished"))
        })
        .collect();
    assert_eq!(minutes.len(), 60, "the last hour, minute by minute");
    for pair in minutes.windows(2) {
        assert_eq!(pair[1].0 - pair[0].0, TimeDelta::minutes(1), "{pair:?}");
    }
    let last = minutes.last().unwrap();
    assert!(
        started <= last.0 && last.0 <= Utc::now(),
        "the series ends at this minute: {last:?}"
    );
    // Everything happened in the last minute or two (a test may straddle a minute).
    let recent = |pick: fn(&(DateTime<Utc>, i64, i64)) -> i64| -> (i64, i64) {
        let all = minutes.iter().map(pick).sum();
        let since = minutes.iter().filter(|m| m.0 >= started).map(pick).sum();
        (all, since)
    };
    assert_eq!(recent(|m| m.1), (5, 5), "tasks created: {minutes:?}");
    assert_eq!(recent(|m| m.2), (1, 1), "tasks finished: {minutes:?}");
    if started == last.0 {
        assert_eq!(last.1, 5, "all five were made this minute");
    }

    let budget = hub.get("/api/admin/budget", MASTER).await.expect(200);
    let cost = &view["cost"];
    assert!(
        (cost["today_usd"].as_f64().unwrap() - 0.25).abs() < 1e-9,
        "{cost}"
    );
    assert_eq!(cost["cap_usd"], budget["cap_usd"]);
    assert_eq!(cost["cap_reached"], false);

    assert_eq!(view["agents"]["total"], 1);
    assert_eq!(
        view["agents"]["by_status"],
        json!({ "online": 0, "busy": 1, "offline": 0 })
    );
}

// ---- a task's output so far ----

#[actix_web::test]
async fn a_console_opened_mid_run_reads_the_output_streamed_so_far_in_order() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let ada = hub.agent("ada", &["git"], 1).await;
    let id = held_by(&hub, "rex", "long job").await;
    let path = format!("/api/tasks/{id}/stream");
    hub.put(
        &format!("/api/tasks/{id}"),
        &rex,
        json!({ "status": "running" }),
    )
    .await
    .expect(200);
    let lines = ["line one", "line two", "line three"];
    let mut seqs = Vec::new();
    for line in lines {
        let sent = hub
            .post(&path, &rex, json!({ "chunk": line }))
            .await
            .expect(201);
        seqs.push(sent["seq"].as_i64().expect("a seq"));
    }

    for reader in [MASTER, rex.as_str()] {
        let read = hub.get(&path, reader).await.expect(200);
        assert_eq!(read["task_id"], id);
        assert_eq!(read["count"], 3);
        let chunks = read["chunks"].as_array().unwrap();
        let texts: Vec<&str> = chunks
            .iter()
            .map(|c| c["chunk"].as_str().unwrap())
            .collect();
        assert_eq!(texts, lines, "the plaintext, in the order sent");
        let read_seqs: Vec<i64> = chunks.iter().map(|c| c["seq"].as_i64().unwrap()).collect();
        assert_eq!(read_seqs, seqs);
        for chunk in chunks {
            assert_eq!(chunk["agent_id"], "rex");
            assert!(chunk["created_at"].as_str().is_some_and(|t| !t.is_empty()));
        }
    }

    let after = hub
        .get(&format!("{path}?after={}", seqs[0]), MASTER)
        .await
        .expect(200);
    assert_eq!(after["count"], 2, "{after}");
    assert_eq!(after["chunks"][0]["chunk"], "line two");
    let first = hub
        .get(&format!("{path}?limit=1"), MASTER)
        .await
        .expect(200);
    assert_eq!(first["count"], 1);
    assert_eq!(first["chunks"][0]["chunk"], "line one");
    // A console opened late reads the tail, still in order.
    let tail = hub
        .get(&format!("{path}?limit=2&latest=true"), MASTER)
        .await
        .expect(200);
    let texts: Vec<&str> = tail["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["chunk"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["line two", "line three"], "{tail}");
    // Every chunk is a provenance link: a console lists only the latest, the verdict
    // still covers the whole chain.
    let whole = hub
        .get(&format!("/api/tasks/{id}/provenance"), MASTER)
        .await
        .expect(200);
    let latest = hub
        .get(&format!("/api/tasks/{id}/provenance?last=2"), MASTER)
        .await
        .expect(200);
    assert_eq!(latest["valid"], true, "{latest}");
    assert_eq!(latest["count"], whole["count"]);
    assert_eq!(latest["chain"].as_array().unwrap().len(), 2);
    let whole_chain = whole["chain"].as_array().unwrap();
    assert_eq!(latest["chain"][1], whole_chain[whole_chain.len() - 1]);
    hub.get(&format!("/api/tasks/{id}/provenance?last=0"), MASTER)
        .await
        .expect(400);
    let none = hub
        .get(&format!("{path}?after={}", seqs[2]), MASTER)
        .await
        .expect(200);
    assert_eq!(none["chunks"], json!([]));

    // Another agent's task does not exist for ada; no tasks:read is a 403.
    hub.get(&path, &ada).await.expect(404);
    let chatter = token_with(&hub, "chatter", &["messages:read"]).await;
    hub.get(&path, &chatter).await.expect(403);
    hub.get("/api/tasks/999999/stream", MASTER)
        .await
        .expect(404);
}

// ---- the audit export ----

/// Every id `GET /api/admin/audit` lists, page by page.
async fn listed_audit_ids(hub: &TestHub) -> BTreeSet<i64> {
    let mut ids = BTreeSet::new();
    loop {
        let page = hub
            .get(
                &format!("/api/admin/audit?limit=500&offset={}", ids.len()),
                MASTER,
            )
            .await
            .expect(200);
        let entries = page["entries"].as_array().unwrap();
        if entries.is_empty() {
            return ids;
        }
        ids.extend(entries.iter().map(|e| e["id"].as_i64().unwrap()));
    }
}

/// The export as parsed lines, with its content type and disposition.
async fn export(hub: &TestHub, token: &str, query: &str) -> (Vec<Value>, String, String) {
    let auth = format!("Bearer {token}");
    let reply = fetch(
        hub,
        &format!("/api/admin/audit/export{query}"),
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(reply.status, 200);
    let text = String::from_utf8(reply.body.clone()).expect("UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "every line ends with a newline"
    );
    let lines = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    let header = |name| reply.header(name).unwrap_or_default().to_string();
    (lines, header("content-type"), header("content-disposition"))
}

#[actix_web::test]
async fn the_audit_export_holds_every_entry_oldest_first_as_json_lines() {
    let hub = TestHub::spawn().await;
    let auditor = token_with(&hub, "auditor", &["admin:audit"]).await;
    let _rex = hub.agent("rex", &["research"], 1).await;
    // More entries than one step of the export reads.
    let mut made = 0;
    for batch in 0..22 {
        let creations = (0..50).map(|n| {
            let task = json!({ "title": format!("audit {batch}-{n}"), "prompt": "p", "required_capability": "gpu" });
            hub.post("/api/tasks", MASTER, task)
        });
        for reply in futures_util::future::join_all(creations).await {
            reply.expect(201);
            made += 1;
        }
    }

    let (lines, content_type, disposition) = export(&hub, &auditor, "").await;
    assert!(
        content_type.starts_with("application/jsonl"),
        "{content_type}"
    );
    assert!(disposition.starts_with("attachment"), "{disposition}");
    let ids: Vec<i64> = lines.iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "oldest first, no repeats"
    );
    assert!(ids.len() > 1000, "{} lines", ids.len());
    let listed = listed_audit_ids(&hub).await;
    assert_eq!(
        ids.iter().copied().collect::<BTreeSet<_>>(),
        listed,
        "the export holds exactly the entries the audit list holds"
    );
    for line in &lines {
        for field in ["at", "actor", "action", "target"] {
            assert!(line[field].is_string(), "{field} in {line}");
        }
    }

    let (created, _, _) = export(&hub, &auditor, "?action=task.create").await;
    assert_eq!(created.len(), made);
    assert!(created.iter().all(|l| l["action"] == "task.create"));
    let (by_rex, _, _) = export(&hub, &auditor, "?actor=rex").await;
    assert!(!by_rex.is_empty() && by_rex.len() < lines.len());
    assert!(by_rex.iter().all(|l| l["actor"] == "rex"), "{by_rex:?}");

    let viewer = hub.token("watcher", "viewer").await;
    hub.get("/api/admin/audit/export", &viewer)
        .await
        .expect(403);
    let anonymous = hub
        .raw(Method::GET, "/api/admin/audit/export", None, None)
        .await;
    assert_eq!(anonymous.status, 401);
}

// ---- the task list ----

#[actix_web::test]
async fn the_task_list_filters_by_required_capability() {
    let hub = TestHub::spawn().await;
    let mut gpu = BTreeSet::new();
    for n in 0..2 {
        let task =
            json!({ "title": format!("render {n}"), "prompt": "p", "required_capability": "gpu" });
        gpu.insert(id_of(&hub.task(task).await));
    }
    let research = id_of(
        &hub.task(json!({ "title": "read", "prompt": "p", "required_capability": "research" }))
            .await,
    );
    let listed = hub
        .get("/api/tasks?capability=gpu", MASTER)
        .await
        .expect(200);
    assert_eq!(ids_in(&listed), gpu);
    let listed = hub
        .get("/api/tasks?capability=research", MASTER)
        .await
        .expect(200);
    assert_eq!(ids_in(&listed), BTreeSet::from([research]));
    let listed = hub
        .get("/api/tasks?capability=deploy", MASTER)
        .await
        .expect(200);
    assert_eq!(listed["count"], 0);
}

// ---- people on the dashboard ----

#[actix_web::test]
async fn a_signed_in_person_sees_every_task_while_an_agent_token_of_the_same_role_sees_only_its_own(
) {
    let hub = TestHub::spawn().await;
    let _rex = hub.agent("rex", &["research"], 1).await;
    let theirs = held_by(&hub, "rex", "rex's job").await;
    let queued = id_of(
        &hub.task(json!({ "title": "waiting", "prompt": "p", "required_capability": "gpu" }))
            .await,
    );
    let vera = sign_in(&hub, "vera", "viewer").await;
    let listed = person(&hub, Method::GET, "/api/tasks", &vera, None)
        .await
        .expect(200);
    assert_eq!(ids_in(&listed), BTreeSet::from([theirs, queued]));
    let task = person(
        &hub,
        Method::GET,
        &format!("/api/tasks/{theirs}"),
        &vera,
        None,
    )
    .await
    .expect(200);
    assert_eq!(task["assigned_to"], "rex");
    let path = format!("/api/tasks/{theirs}/stream");
    person(&hub, Method::GET, &path, &vera, None)
        .await
        .expect(200);

    let bot = hub.token("watch-bot", "viewer").await;
    let listed = hub.get("/api/tasks", &bot).await.expect(200);
    assert_eq!(listed["count"], 0, "{listed}");
    hub.get(&format!("/api/tasks/{theirs}"), &bot)
        .await
        .expect(404);
    hub.get(&path, &bot).await.expect(404);
}

#[actix_web::test]
async fn an_operator_signed_in_may_cancel_or_hand_off_any_unfinished_task_but_another_agent_may_not(
) {
    let hub = TestHub::spawn().await;
    let _rex = hub.agent("rex", &["research"], 2).await;
    let _ada = hub.agent("ada", &["research"], 2).await;
    let bob = hub.agent("bob", &["research"], 2).await;
    let ops_bot = hub.token("ops-bot", "operator").await;
    let to_cancel = held_by(&hub, "rex", "cancel me").await;
    let to_move = held_by(&hub, "rex", "move me").await;
    let cancel = json!({ "status": "cancelled" });
    let hand_to_ada = json!({ "to": "ada", "reason": "rex is overloaded" });
    let cancel_path = format!("/api/tasks/{to_cancel}");
    let move_path = format!("/api/tasks/{to_move}/handoff");

    // Another agent's token: the tasks do not exist for it.
    hub.put(&cancel_path, &bob, cancel.clone())
        .await
        .expect(404);
    hub.post(&move_path, &bob, hand_to_ada.clone())
        .await
        .expect(404);
    hub.put(&cancel_path, &ops_bot, cancel.clone())
        .await
        .expect(404);
    // An agent that made a task but does not hold it may cancel it, not move it.
    let made = json!({ "title": "bot's", "prompt": "p", "assign_to": "rex" });
    let bots = id_of(&hub.post("/api/tasks", &ops_bot, made).await.expect(201));
    hub.post(
        &format!("/api/tasks/{bots}/handoff"),
        &ops_bot,
        hand_to_ada.clone(),
    )
    .await
    .expect(409);

    // A viewer has no tasks:update; a cookie write from another site is refused.
    let vera = sign_in(&hub, "vera", "viewer").await;
    person(&hub, Method::PUT, &cancel_path, &vera, Some(cancel.clone()))
        .await
        .expect(403);
    let otto = sign_in(&hub, "otto", "operator").await;
    person_from(
        &hub,
        Method::PUT,
        &cancel_path,
        &otto,
        Some(cancel.clone()),
        "http://elsewhere.example",
    )
    .await
    .expect(403);
    assert_eq!(hub.task_status(to_cancel).await["status"], "assigned");

    let cancelled = person(&hub, Method::PUT, &cancel_path, &otto, Some(cancel.clone()))
        .await
        .expect(200);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(hub.task_status(to_cancel).await["status"], "cancelled");
    person(&hub, Method::PUT, &cancel_path, &otto, Some(cancel))
        .await
        .expect(409);

    person(&hub, Method::POST, &move_path, &otto, Some(hand_to_ada))
        .await
        .expect(200);
    let moved = hub
        .eventually(SOON, || async {
            hub.task_status(to_move).await["assigned_to"] == "ada"
        })
        .await;
    assert!(
        moved,
        "the task went to ada: {}",
        hub.task_status(to_move).await
    );
}

#[actix_web::test]
async fn a_signed_in_persons_event_stream_carries_every_tasks_events() {
    let hub = TestHub::spawn().await;
    let _rex = hub.agent("rex", &["research"], 1).await;
    let otto = sign_in(&hub, "otto", "operator").await;
    let ops_bot = hub.token("ops-bot", "operator").await;
    let mut people = hub
        .stream_with_headers("/api/stream", &[("Cookie", otto)])
        .await;
    let mut bot = hub.stream(&ops_bot).await;
    assert!(
        hub.eventually(SOON, || async { hub.subscribers().await == 2 })
            .await
    );

    let theirs = id_of(
        &hub.task(json!({ "title": "rex's", "prompt": "p", "assign_to": "rex" }))
            .await,
    );
    let assigned = people
        .next_named("task_assigned", SOON)
        .await
        .expect("the person sees rex's assignment");
    assert_eq!(assigned.data["id"], theirs);
    assert_eq!(assigned.data["assigned_to"], "rex");

    let own = json!({ "title": "bot's own", "prompt": "p", "required_capability": "gpu" });
    let own = id_of(&hub.post("/api/tasks", &ops_bot, own).await.expect(201));
    let queued = bot
        .next_named("task_queued", SOON)
        .await
        .expect("the bot sees its own task");
    assert_eq!(
        queued.data["id"], own,
        "the first task event the bot sees is its own, not rex's {theirs}"
    );
}

// ---- resync ----

/// A tiny-ring hub with six queued tasks seen on a stream; returns their event ids.
async fn six_events(hub: &TestHub) -> Vec<u64> {
    let mut stream = hub.stream(MASTER).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        let task = json!({ "title": format!("t{n}"), "prompt": "p", "required_capability": "gpu" });
        hub.task(task).await;
        let event = stream
            .next_named("task_queued", SOON)
            .await
            .expect("task_queued");
        ids.push(event.id.expect("an id"));
    }
    ids
}

/// The next event on `stream` that is not a keepalive.
async fn next_event(stream: &mut crate::support::Sse) -> crate::support::Event {
    loop {
        let event = stream.next(SOON).await.expect("an event");
        if event.name != "keepalive" {
            return event;
        }
    }
}

#[actix_web::test]
async fn a_client_whose_missed_events_left_the_ring_is_told_to_resync_then_gets_what_the_ring_holds(
) {
    let hub = TestHub::spawn_with(|s| s.event_ring_size = 4).await;
    let ids = six_events(&hub).await;
    let path = format!("/api/stream?token={MASTER}");
    let mut resumed = hub.stream_with(&path, Some(ids[0])).await;
    let first = next_event(&mut resumed).await;
    assert_eq!(first.name, "resync", "{first:?}");
    assert_eq!(first.data["last_event_id"], ids[0]);
    let oldest = first.data["oldest_replayable"]
        .as_u64()
        .expect("the oldest replayable id");
    assert_eq!(oldest, ids[2], "the ring holds the last four: {ids:?}");
    assert!(first.id > Some(ids[5]), "the resync has a fresh id");
    // What the ring still holds follows, for clients that only need that.
    for expected in &ids[2..] {
        let replayed = next_event(&mut resumed).await;
        assert_eq!(replayed.id, Some(*expected), "{replayed:?}");
    }

    // The stream carries on live after it.
    let fresh = hub
        .task(json!({ "title": "after", "prompt": "p", "required_capability": "gpu" }))
        .await;
    let next = next_event(&mut resumed).await;
    assert_eq!(next.name, "task_queued");
    assert_eq!(next.data["id"], fresh["id"]);
}

#[actix_web::test]
async fn a_client_that_missed_only_what_the_ring_still_holds_gets_it_without_a_resync() {
    let hub = TestHub::spawn_with(|s| s.event_ring_size = 4).await;
    let ids = six_events(&hub).await;
    let path = format!("/api/stream?token={MASTER}");

    // The last event evicted was seen: the four after it are all still held.
    let mut resumed = hub.stream_with(&path, Some(ids[1])).await;
    for want in &ids[2..] {
        let event = next_event(&mut resumed).await;
        assert_eq!(
            (event.name.as_str(), event.id),
            ("task_queued", Some(*want))
        );
    }

    // Up to date: nothing is replayed, and the next event is the next live one.
    let mut current = hub.stream_with(&path, Some(ids[5])).await;
    let fresh = hub
        .task(json!({ "title": "after", "prompt": "p", "required_capability": "gpu" }))
        .await;
    let next = next_event(&mut current).await;
    assert_eq!(next.name, "task_queued", "{next:?}");
    assert_eq!(next.data["id"], fresh["id"]);
}

#[actix_web::test]
async fn a_last_event_id_from_before_this_hub_started_gets_a_resync() {
    let hub = TestHub::spawn().await;
    let mut stream = hub.stream(MASTER).await;
    hub.task(json!({ "title": "t", "prompt": "p" })).await;
    let seen = stream
        .next_named("task_queued", SOON)
        .await
        .expect("task_queued");
    drop(stream);
    let path = format!("/api/stream?token={MASTER}");
    let mut resumed = hub.stream_with(&path, Some(1)).await;
    let first = next_event(&mut resumed).await;
    assert_eq!(first.name, "resync", "{first:?}");
    assert_eq!(first.data["last_event_id"], 1);
    assert!(
        first.data["oldest_replayable"]
            .as_u64()
            .is_some_and(|oldest| Some(oldest) <= seen.id),
        "{first:?}"
    );
}

#[actix_web::test]
async fn a_last_event_id_this_hub_never_issued_gets_a_resync() {
    // After a restart with the clock set back, a client may hold an id from the future.
    let hub = TestHub::spawn().await;
    let path = format!("/api/stream?token={MASTER}");
    let mut resumed = hub.stream_with(&path, Some(u64::MAX / 2)).await;
    let first = next_event(&mut resumed).await;
    assert_eq!(first.name, "resync", "{first:?}");
}
