//! Bad input: every malformed, mistyped, oversized or unknown request gets a 4xx with a
//! JSON `{"error", "code"}` body a person can act on, and nothing ever answers 500.

use awc::http::Method;
use futures_util::stream;
use serde_json::{json, Value};

use crate::support::{Reply, TestHub, MASTER};

/// Sends raw bytes with the master token and the given extra headers.
async fn send(
    hub: &TestHub,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let mut request = awc::Client::new()
        .request(method, format!("{}{}", hub.base, path))
        .insert_header(("Authorization", format!("Bearer {MASTER}")));
    for header in headers {
        request = request.insert_header(*header);
    }
    let mut response = request
        .send_body(body)
        .await
        .expect("request reaches the hub");
    let bytes = response.body().limit(1 << 20).await.expect("body");
    Reply {
        status: response.status(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

async fn post_raw(hub: &TestHub, path: &str, body: &[u8]) -> Reply {
    hub.raw(Method::POST, path, Some(MASTER), Some(body.to_vec()))
        .await
}

/// Asserts a 400 whose message contains `needle`; returns the message.
fn bad_request(reply: Reply, needle: &str, what: &str) -> String {
    let body = reply.expect(400);
    assert_eq!(body["code"], "bad_request", "{what}: {body}");
    let error = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no error message in {body}"))
        .to_string();
    assert!(
        error.contains(needle),
        "{what}: expected {needle:?} in {error:?}"
    );
    error
}

async fn task_count(hub: &TestHub) -> u64 {
    hub.get("/api/tasks?limit=100", MASTER).await.expect(200)["count"]
        .as_u64()
        .unwrap()
}

#[actix_web::test]
async fn malformed_json_is_a_400_that_says_so() {
    let hub = TestHub::spawn().await;
    let cases: &[&[u8]] = &[
        b"{bad",
        b"{\"title\": \"t\",",
        b"{\"title\": \"t\" \"prompt\": \"p\"}",
        b"{'title': 't'}",
    ];
    for body in cases {
        let what = String::from_utf8_lossy(body).into_owned();
        bad_request(
            post_raw(&hub, "/api/tasks", body).await,
            "malformed JSON",
            &what,
        );
    }
    bad_request(
        post_raw(&hub, "/api/agents/rex/register", b"{\"name\": ").await,
        "malformed JSON",
        "register",
    );
    bad_request(
        post_raw(&hub, "/api/admin/tokens", b"{agent_id: rex}").await,
        "malformed JSON",
        "token",
    );
    let task = hub
        .task(json!({ "title": "t", "prompt": "p", "required_capability": "paint" }))
        .await;
    let path = format!("/api/tasks/{}", task["id"]);
    let reply = hub
        .raw(
            Method::PUT,
            &path,
            Some(MASTER),
            Some(b"{\"status\": cancelled}".to_vec()),
        )
        .await;
    bad_request(reply, "malformed JSON", "update");
    assert_eq!(
        hub.task_status(task["id"].as_i64().unwrap()).await["status"],
        "queued"
    );
    assert_eq!(task_count(&hub).await, 1, "nothing else was created");
}

#[actix_web::test]
async fn text_after_the_json_object_makes_the_body_malformed() {
    let hub = TestHub::spawn().await;
    let cases: &[&[u8]] = &[
        b"{\"title\": \"t\", \"prompt\": \"p\"} trailing",
        b"{\"title\": \"t\", \"prompt\": \"p\"}{\"title\": \"u\", \"prompt\": \"q\"}",
        b"{\"title\": \"t\", \"prompt\": \"p\"}]",
    ];
    let mut accepted = Vec::new();
    for body in cases {
        let reply = post_raw(&hub, "/api/tasks", body).await;
        let error = reply.body["error"].as_str().unwrap_or_default();
        if reply.status.as_u16() != 400 || !error.contains("malformed JSON") {
            let text = String::from_utf8_lossy(body);
            accepted.push(format!("{text} -> {} {}", reply.status, reply.body));
        }
    }
    assert!(
        accepted.is_empty(),
        "bodies with text after the object were not refused as malformed:\n{}",
        accepted.join("\n")
    );
    // Trailing whitespace is fine.
    post_raw(
        &hub,
        "/api/tasks",
        b"{\"title\": \"t\", \"prompt\": \"p\"}\r\n  ",
    )
    .await
    .expect(201);
    assert_eq!(
        task_count(&hub).await,
        1,
        "only the well-formed body created a task"
    );
}

#[actix_web::test]
async fn a_body_that_is_not_a_json_object_is_refused() {
    let hub = TestHub::spawn().await;
    let cases: &[&[u8]] = &[
        b"[1, 2]",
        b"\"title\"",
        b"5",
        b"null",
        b"true",
        b"  [{\"title\": \"t\", \"prompt\": \"p\"}]",
    ];
    for body in cases {
        let what = String::from_utf8_lossy(body).into_owned();
        bad_request(
            post_raw(&hub, "/api/tasks", body).await,
            "must be a JSON object",
            &what,
        );
        bad_request(
            post_raw(&hub, "/api/agents/rex/register", body).await,
            "must be a JSON object",
            &what,
        );
    }
    bad_request(
        post_raw(&hub, "/api/tasks", b"").await,
        "empty",
        "empty body",
    );
    bad_request(
        post_raw(&hub, "/api/tasks", b" \n\t ").await,
        "empty",
        "blank body",
    );
    bad_request(
        hub.raw(Method::POST, "/api/tasks", Some(MASTER), None)
            .await,
        "empty",
        "no body",
    );
    assert_eq!(task_count(&hub).await, 0);
}

#[actix_web::test]
async fn a_field_of_the_wrong_type_is_named_in_the_error() {
    let hub = TestHub::spawn().await;
    let task_cases = [
        ("title", json!({ "title": 5, "prompt": "p" })),
        ("prompt", json!({ "title": "t", "prompt": ["p"] })),
        (
            "priority",
            json!({ "title": "t", "prompt": "p", "priority": "high" }),
        ),
        (
            "priority",
            json!({ "title": "t", "prompt": "p", "priority": 99_999_999_999_i64 }),
        ),
        (
            "priority",
            json!({ "title": "t", "prompt": "p", "priority": 1.5 }),
        ),
        (
            "timeout_seconds",
            json!({ "title": "t", "prompt": "p", "timeout_seconds": "60" }),
        ),
        (
            "assign_to",
            json!({ "title": "t", "prompt": "p", "assign_to": { "id": "rex" } }),
        ),
    ];
    for (field, body) in task_cases {
        bad_request(
            hub.post("/api/tasks", MASTER, body.clone()).await,
            field,
            &body.to_string(),
        );
    }
    let register_cases = [
        (
            "max_concurrent",
            json!({ "name": "rex", "max_concurrent": "two" }),
        ),
        (
            "capabilities",
            json!({ "name": "rex", "capabilities": "research" }),
        ),
        (
            "capabilities",
            json!({ "name": "rex", "capabilities": [1, 2] }),
        ),
        ("name", json!({ "name": false })),
    ];
    for (field, body) in register_cases {
        let reply = hub
            .post("/api/agents/rex/register", MASTER, body.clone())
            .await;
        bad_request(reply, field, &body.to_string());
    }
    bad_request(
        hub.post("/api/admin/tokens", MASTER, json!({ "agent_id": 7 }))
            .await,
        "agent_id",
        "token agent_id",
    );
    bad_request(
        hub.post(
            "/api/admin/tokens",
            MASTER,
            json!({ "agent_id": "rex", "permissions": "tasks:read" }),
        )
        .await,
        "permissions",
        "token permissions",
    );

    let task = hub
        .task(json!({ "title": "t", "prompt": "p", "required_capability": "paint" }))
        .await;
    let path = format!("/api/tasks/{}", task["id"]);
    bad_request(
        hub.put(&path, MASTER, json!({ "status": 3 })).await,
        "status",
        "update status",
    );
    bad_request(
        hub.put(&path, MASTER, json!({ "output": { "text": "x" } }))
            .await,
        "output",
        "update output",
    );
    bad_request(
        hub.put(&path, MASTER, json!({ "confidence": "high" }))
            .await,
        "confidence",
        "update confidence",
    );
    assert_eq!(task_count(&hub).await, 1);
    assert_eq!(hub.get("/api/agents", MASTER).await.expect(200)["total"], 0);
}

#[actix_web::test]
async fn a_task_needs_a_title_and_a_prompt() {
    let hub = TestHub::spawn().await;
    let cases = [
        ("title is required", json!({ "prompt": "p" })),
        ("title is required", json!({ "title": "", "prompt": "p" })),
        (
            "title is required",
            json!({ "title": "   ", "prompt": "p" }),
        ),
        ("title is required", json!({ "title": null, "prompt": "p" })),
        ("title is required", json!({})),
        ("prompt is required", json!({ "title": "t" })),
        ("prompt is required", json!({ "title": "t", "prompt": "" })),
        (
            "prompt is required",
            json!({ "title": "t", "prompt": " \n " }),
        ),
    ];
    for (message, body) in cases {
        let reply = hub.post("/api/tasks", MASTER, body.clone()).await;
        assert_eq!(reply.expect(400)["error"], message, "{body}");
    }
    let long_title = "x".repeat(501);
    bad_request(
        hub.post(
            "/api/tasks",
            MASTER,
            json!({ "title": long_title, "prompt": "p" }),
        )
        .await,
        "title",
        "long title",
    );
    hub.post(
        "/api/tasks",
        MASTER,
        json!({ "title": "x".repeat(500), "prompt": "p" }),
    )
    .await
    .expect(201);
    assert_eq!(task_count(&hub).await, 1);
}

#[actix_web::test]
async fn a_prompt_over_8192_bytes_is_refused() {
    let hub = TestHub::spawn().await;
    let fits = hub
        .post(
            "/api/tasks",
            MASTER,
            json!({ "title": "t", "prompt": "a".repeat(8192) }),
        )
        .await
        .expect(201);
    let stored = hub.task_status(fits["id"].as_i64().unwrap()).await;
    assert_eq!(
        stored["prompt"].as_str().map(str::len),
        Some(8192),
        "the whole prompt is kept"
    );

    bad_request(
        hub.post(
            "/api/tasks",
            MASTER,
            json!({ "title": "t", "prompt": "a".repeat(8193) }),
        )
        .await,
        "8192",
        "8193 bytes",
    );
    // The limit is in bytes, not characters: 4097 two-byte characters are 8194 bytes.
    bad_request(
        hub.post(
            "/api/tasks",
            MASTER,
            json!({ "title": "t", "prompt": "é".repeat(4097) }),
        )
        .await,
        "8192",
        "4097 × é",
    );
    hub.post(
        "/api/tasks",
        MASTER,
        json!({ "title": "t", "prompt": "é".repeat(4096) }),
    )
    .await
    .expect(201);
    assert_eq!(task_count(&hub).await, 2);
}

#[actix_web::test]
async fn a_body_over_the_configured_limit_is_413() {
    let hub = TestHub::spawn_with(|s| s.max_body_bytes = 1024).await;
    let small = json!({ "title": "t", "prompt": "p".repeat(900) });
    assert!(small.to_string().len() <= 1024);
    hub.post("/api/tasks", MASTER, small).await.expect(201);

    let big = json!({ "title": "t", "prompt": "p".repeat(1100) });
    let refused = hub
        .post("/api/tasks", MASTER, big.clone())
        .await
        .expect(413);
    assert_eq!(refused["code"], "payload_too_large");
    assert!(
        refused["error"].as_str().unwrap().contains("1024"),
        "{refused}"
    );
    let register = json!({ "name": "rex", "capabilities": vec!["c".repeat(60); 20] });
    hub.post("/api/agents/rex/register", MASTER, register)
        .await
        .expect(413);

    // Without a Content-Length (chunked), the limit holds while reading.
    let chunks: Vec<Result<actix_web::web::Bytes, std::io::Error>> = big
        .to_string()
        .into_bytes()
        .chunks(300)
        .map(|c| Ok(actix_web::web::Bytes::copy_from_slice(c)))
        .collect();
    let mut response = awc::Client::new()
        .post(format!("{}/api/tasks", hub.base))
        .insert_header(("Authorization", format!("Bearer {MASTER}")))
        .send_stream(stream::iter(chunks))
        .await
        .expect("request reaches the hub");
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.expect("json error body");
    assert_eq!(body["code"], "payload_too_large");
    assert_eq!(task_count(&hub).await, 1);
}

#[actix_web::test]
async fn the_default_body_limit_is_256_kib() {
    let hub = TestHub::spawn().await;
    // 200 KB fits the body limit; it is the prompt limit that refuses it.
    let reply = hub
        .post(
            "/api/tasks",
            MASTER,
            json!({ "title": "t", "prompt": "p".repeat(200_000) }),
        )
        .await;
    bad_request(reply, "8192", "200 KB prompt");
    let reply = hub
        .post(
            "/api/tasks",
            MASTER,
            json!({ "title": "t", "prompt": "p".repeat(262_144) }),
        )
        .await;
    assert_eq!(reply.expect(413)["code"], "payload_too_large");
    assert_eq!(task_count(&hub).await, 0);
}

#[actix_web::test]
async fn unknown_urgency_model_status_and_deadline_are_400() {
    let hub = TestHub::spawn().await;
    let base = |extra: Value| {
        let mut body = json!({ "title": "t", "prompt": "p", "required_capability": "paint" });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let cases = [
        ("urgency", base(json!({ "urgency": "asap" }))),
        ("urgency", base(json!({ "urgency": "HIGH" }))),
        ("model", base(json!({ "model": "gpt-4" }))),
        ("deadline", base(json!({ "deadline": "tomorrow" }))),
        ("timeout_seconds", base(json!({ "timeout_seconds": 0 }))),
        ("assign_to", base(json!({ "assign_to": "not an id!" }))),
        (
            "required_capability",
            base(json!({ "required_capability": "" })),
        ),
    ];
    for (needle, body) in cases {
        bad_request(
            hub.post("/api/tasks", MASTER, body.clone()).await,
            needle,
            &body.to_string(),
        );
    }
    assert_eq!(task_count(&hub).await, 0);

    // The accepted values are accepted.
    let fine =
        base(json!({ "urgency": "critical", "model": "opus", "deadline": "2030-04-20T18:00:00Z" }));
    let task = hub.post("/api/tasks", MASTER, fine).await.expect(201);
    assert_eq!(task["urgency"], "critical");
    assert_eq!(task["model"], "opus");
    let deadline = task["deadline"].as_str().unwrap_or_default();
    assert!(
        deadline.starts_with("2030-04-20T18:00:00") && deadline.ends_with('Z'),
        "{task}"
    );

    let path = format!("/api/tasks/{}", task["id"]);
    bad_request(
        hub.put(&path, MASTER, json!({ "status": "finished" }))
            .await,
        "status",
        "unknown status",
    );
    bad_request(
        hub.put(&path, MASTER, json!({ "status": "DONE" })).await,
        "status",
        "capitalised status",
    );
    bad_request(
        hub.get("/api/tasks?status=finished", MASTER).await,
        "status",
        "list by unknown status",
    );
    assert_eq!(
        hub.task_status(task["id"].as_i64().unwrap()).await["status"],
        "queued"
    );
}

#[actix_web::test]
async fn list_limits_are_checked_and_capped_at_100() {
    let hub = TestHub::spawn().await;
    let creates = (0..105).map(|n| {
        hub.post(
            "/api/tasks",
            MASTER,
            json!({ "title": format!("t{n}"), "prompt": "p" }),
        )
    });
    for reply in futures_util::future::join_all(creates).await {
        reply.expect(201);
    }
    for bad in [
        "limit=0",
        "limit=-1",
        "limit=abc",
        "limit=",
        "offset=-1",
        "offset=x",
        "limit=99999999999999999999",
    ] {
        let reply = hub.get(&format!("/api/tasks?{bad}"), MASTER).await;
        assert_eq!(reply.expect(400)["code"], "bad_request", "{bad}");
    }
    assert_eq!(
        hub.get("/api/tasks", MASTER).await.expect(200)["count"],
        20,
        "default page"
    );
    assert_eq!(
        hub.get("/api/tasks?limit=100", MASTER).await.expect(200)["count"],
        100
    );
    let capped = hub.get("/api/tasks?limit=1000", MASTER).await.expect(200);
    assert_eq!(capped["count"], 100);
    assert_eq!(capped["tasks"].as_array().unwrap().len(), 100);
    let rest = hub
        .get("/api/tasks?limit=1000&offset=100", MASTER)
        .await
        .expect(200);
    assert_eq!(rest["count"], 5);
}

#[actix_web::test]
async fn unknown_ids_and_routes_are_json_404s() {
    let hub = TestHub::spawn().await;
    let task = hub
        .task(json!({ "title": "t", "prompt": "p", "required_capability": "paint" }))
        .await;
    let known = task["id"].as_i64().unwrap();
    let ids = ["99999", "abc", "1.5", "-1", "0", "99999999999999", "%20"].map(String::from);
    for id in ids.into_iter().chain([format!("{known}x")]) {
        let reply = hub.get(&format!("/api/tasks/{id}"), MASTER).await;
        assert_eq!(reply.expect(404)["code"], "not_found", "GET task {id}");
        hub.get(&format!("/api/tasks/{id}/deps"), MASTER)
            .await
            .expect(404);
        hub.put(
            &format!("/api/tasks/{id}"),
            MASTER,
            json!({ "status": "cancelled" }),
        )
        .await
        .expect(404);
        hub.post(
            &format!("/api/tasks/{id}/stream"),
            MASTER,
            json!({ "chunk": "c" }),
        )
        .await
        .expect(404);
    }
    assert_eq!(
        hub.task_status(known).await["status"],
        "queued",
        "the real task is untouched"
    );

    // `/` is the dashboard; every other unknown path is a JSON 404.
    for path in ["/api/nope", "/api/tasks/1/nope", "/nope", "/api"] {
        let reply = hub.get(path, MASTER).await;
        let body = reply.expect(404);
        assert_eq!(body["code"], "not_found", "{path}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {body}"
        );
    }
    hub.post("/api/agents/ghost/heartbeat", MASTER, json!({}))
        .await
        .expect(404);
    hub.delete("/api/agents/ghost", MASTER).await.expect(404);
    hub.post(
        &format!("/api/agents/{}/heartbeat", "a".repeat(65)),
        MASTER,
        json!({}),
    )
    .await
    .expect(404);
}

#[actix_web::test]
async fn missing_or_bad_credentials_are_401_json() {
    let hub = TestHub::spawn().await;
    let rex = hub.token("rex", "worker").await;
    let bogus = format!("{}0", &rex[..rex.len() - 1]);
    let bogus = if bogus == rex {
        format!("{}1", &rex[..rex.len() - 1])
    } else {
        bogus
    };
    for token in [
        None,
        Some("wrong"),
        Some(bogus.as_str()),
        Some(""),
        Some("test-master-tokens"),
    ] {
        for (method, path) in [
            (Method::GET, "/api/tasks"),
            (Method::POST, "/api/tasks"),
            (Method::GET, "/api/agents"),
            (Method::GET, "/api/admin/audit"),
        ] {
            let body = Some(
                json!({ "title": "t", "prompt": "p" })
                    .to_string()
                    .into_bytes(),
            );
            let reply = hub.raw(method.clone(), path, token, body).await;
            assert_eq!(
                reply.expect(401)["code"],
                "unauthorized",
                "{method} {path} with {token:?}"
            );
        }
    }
    // Only a Bearer scheme counts as a token.
    let reply = send(&hub, Method::GET, "/api/tasks", &[], vec![]).await;
    reply.expect(200);
    let mut response = awc::Client::new()
        .get(format!("{}/api/tasks", hub.base))
        .insert_header(("Authorization", format!("Basic {MASTER}")))
        .send()
        .await
        .expect("request reaches the hub");
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.expect("json error body");
    assert_eq!(body["code"], "unauthorized");
    // The anonymous health check stays open, but a bad token there is still refused.
    hub.raw(Method::GET, "/api/health", None, None)
        .await
        .expect(200);
    hub.raw(Method::GET, "/api/health", Some("wrong"), None)
        .await
        .expect(401);
    assert_eq!(task_count(&hub).await, 0);
}

#[actix_web::test]
async fn the_body_is_read_as_json_whatever_the_content_type_says() {
    let hub = TestHub::spawn().await;
    let body = json!({ "title": "typed", "prompt": "p" })
        .to_string()
        .into_bytes();
    for content_type in [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
    ] {
        let reply = send(
            &hub,
            Method::POST,
            "/api/tasks",
            &[("Content-Type", content_type)],
            body.clone(),
        )
        .await;
        assert_eq!(reply.expect(201)["title"], "typed", "{content_type}");
    }
    let reply = send(&hub, Method::POST, "/api/tasks", &[], body.clone()).await;
    reply.expect(201);
    assert_eq!(task_count(&hub).await, 5);
}

#[actix_web::test]
async fn odd_input_never_causes_a_500() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let task = hub.task(json!({ "title": "t", "prompt": "p" })).await;
    let path = format!("/api/tasks/{}", task["id"]);
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let nested = format!("{{\"title\": {deep}, \"prompt\": \"p\"}}");
    let cases: Vec<(Method, String, Option<Vec<u8>>)> = vec![
        (Method::POST, "/api/tasks".into(), Some(nested.into_bytes())),
        (
            Method::POST,
            "/api/tasks".into(),
            Some(b"{\"title\": \"\xff\xfe\", \"prompt\": \"p\"}".to_vec()),
        ),
        (
            Method::POST,
            "/api/tasks".into(),
            Some(b"{\"title\": \"\\ud800\", \"prompt\": \"p\"}".to_vec()),
        ),
        (
            Method::POST,
            "/api/tasks".into(),
            Some(b"{\"title\": \"t\", \"prompt\": \"p\", \"priority\": 1e400}".to_vec()),
        ),
        (
            Method::POST,
            "/api/tasks".into(),
            Some(
                json!({ "title": "t", "prompt": "p", "depends_on": [99999] })
                    .to_string()
                    .into_bytes(),
            ),
        ),
        (
            Method::POST,
            "/api/tasks".into(),
            Some(
                json!({ "title": "t", "prompt": "p", "deadline": "2030-13-45T99:00:00Z" })
                    .to_string()
                    .into_bytes(),
            ),
        ),
        (
            Method::PUT,
            path.clone(),
            Some(json!({ "cost_usd": -1.0 }).to_string().into_bytes()),
        ),
        (
            Method::PUT,
            path.clone(),
            Some(json!({ "confidence": 2.0 }).to_string().into_bytes()),
        ),
        (
            Method::PUT,
            path.clone(),
            Some(
                json!({ "tokens_in": -5, "status": "assigned" })
                    .to_string()
                    .into_bytes(),
            ),
        ),
        (Method::POST, format!("{path}/stream"), Some(b"{}".to_vec())),
        (
            Method::POST,
            "/api/agents/%E2%98%83/register".into(),
            Some(b"{\"name\": \"snow\"}".to_vec()),
        ),
        (
            Method::POST,
            "/api/agents/rex/register".into(),
            Some(
                json!({ "name": "rex", "max_concurrent": 0 })
                    .to_string()
                    .into_bytes(),
            ),
        ),
        (
            Method::POST,
            "/api/agents/rex/register".into(),
            Some(
                json!({ "name": "rex", "max_concurrent": 100000 })
                    .to_string()
                    .into_bytes(),
            ),
        ),
        (
            Method::POST,
            "/api/agents/rex/register".into(),
            Some(
                json!({ "name": "rex", "capabilities": [""] })
                    .to_string()
                    .into_bytes(),
            ),
        ),
        (Method::GET, "/api/tasks?compact=maybe".into(), None),
        (Method::GET, "/api/tasks?status=%00".into(), None),
        (Method::GET, "/api/agents?limit=0".into(), None),
        (Method::GET, "/api/admin/audit?limit=%FF".into(), None),
        (
            Method::PUT,
            "/api/admin/tokens/%2e%2e/permissions".into(),
            Some(b"{\"role\": \"admin\"}".to_vec()),
        ),
        (
            Method::DELETE,
            "/api/admin/tokens/''%20OR%201=1".into(),
            None,
        ),
        (
            Method::POST,
            "/api/admin/kill-switch".into(),
            Some(b"[true]".to_vec()),
        ),
    ];
    for (method, path, body) in cases {
        let what = format!("{method} {path}");
        let reply = hub.raw(method, &path, Some(MASTER), body).await;
        let status = reply.status.as_u16();
        assert!(
            (400..500).contains(&status),
            "{what} answered {status}: {}",
            reply.body
        );
        assert!(
            reply.body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: no JSON error in {}",
            reply.body
        );
    }
    // Unusual but valid values are accepted and read back intact…
    let odd = json!({ "title": "odd ☃", "prompt": "p\u{0}", "priority": i32::MIN, "required_capability": "paint" });
    let created = hub.post("/api/tasks", MASTER, odd).await.expect(201);
    let read = hub.task_status(created["id"].as_i64().unwrap()).await;
    assert_eq!(read["title"], "odd ☃");
    assert_eq!(read["prompt"], "p\u{0}", "a sealed prompt holds any text");
    assert_eq!(read["priority"], i32::MIN);
    // …but a NUL in stored plain text only where the database can hold it: PostgreSQL's
    // text cannot, and says so with a 422.
    let nul = json!({ "title": "nul\u{0}byte", "prompt": "p" });
    if crate::support::postgres_server().is_some() {
        let refused = hub.post("/api/tasks", MASTER, nul).await.expect(422);
        assert!(
            refused["error"].as_str().unwrap().contains("NUL"),
            "{refused}"
        );
    } else {
        let created = hub.post("/api/tasks", MASTER, nul).await.expect(201);
        let read = hub.task_status(created["id"].as_i64().unwrap()).await;
        assert_eq!(read["title"], "nul\u{0}byte");
    }

    // The hub still works, and the task is as it was.
    assert_eq!(
        hub.task_status(task["id"].as_i64().unwrap()).await["status"],
        "assigned"
    );
    hub.put(&path, &rex, json!({ "status": "done", "output": "ok" }))
        .await
        .expect(200);
    assert_eq!(
        hub.get("/api/admin/kill-switch", MASTER).await.expect(200)["active"],
        false
    );
}
