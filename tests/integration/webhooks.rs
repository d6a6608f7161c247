//! Inbound webhooks: custom JSON, Uptime Kuma, GitHub signatures over the raw bytes.

use std::io::Read;

use awc::http::Method;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::{TestHub, MASTER};

/// Sends a raw body with extra headers and no credentials.
async fn deliver(hub: &TestHub, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    let mut request = awc::Client::new().request(Method::POST, format!("{}{path}", hub.base));
    for (name, value) in headers {
        request = request.insert_header((*name, *value));
    }
    let mut response = request.send_body(body.to_vec()).await.expect("hub answers");
    let bytes = response.body().await.unwrap();
    (
        response.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn create(hub: &TestHub, body: Value) -> String {
    let created = hub
        .post("/api/admin/webhooks", MASTER, body)
        .await
        .expect(201);
    created["secret"]
        .as_str()
        .expect("the secret is shown on creation")
        .to_string()
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[actix_web::test]
async fn the_seed_example_works_as_written_and_the_secret_is_shown_once() {
    let hub = TestHub::spawn().await;
    let _ops = hub.agent("ops", &["deploy"], 1).await;
    // curl -d without -H Content-Type sends application/x-www-form-urlencoded: still JSON to us.
    let create_body = br#"{"name": "deploy-alert", "required_capability": "deploy"}"#;
    let (status, created) = {
        let mut response = awc::Client::new()
            .post(format!("{}/api/admin/webhooks", hub.base))
            .insert_header(("Authorization", format!("Bearer {MASTER}")))
            .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
            .send_body(create_body.to_vec())
            .await
            .unwrap();
        let bytes = response.body().await.unwrap();
        (
            response.status().as_u16(),
            serde_json::from_slice::<Value>(&bytes).unwrap(),
        )
    };
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "deploy-alert");
    let secret = created["secret"].as_str().unwrap().to_string();
    let trigger =
        br#"{"title": "Deploy check", "prompt": "Verify the staging deployment is healthy."}"#;
    let headers = [
        ("X-Webhook-Secret", secret.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let (status, task) = deliver(&hub, "/api/webhooks/deploy-alert", &headers, trigger).await;
    assert_eq!(status, 201, "{task}");
    assert_eq!(task["title"], "Deploy check");
    assert_eq!(task["required_capability"], "deploy");
    assert_eq!(task["assigned_to"], "ops");
    assert_eq!(task["created_by"], "webhook:deploy-alert");

    let listed = hub.get("/api/admin/webhooks", MASTER).await.expect(200);
    assert_eq!(listed["count"], 1);
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is never listed again"
    );
    let mut raw = Vec::new();
    for entry in std::fs::read_dir(hub.dir.path()).unwrap() {
        std::fs::File::open(entry.unwrap().path())
            .unwrap()
            .read_to_end(&mut raw)
            .unwrap();
    }
    assert!(
        !String::from_utf8_lossy(&raw).contains(&secret),
        "the secret is sealed at rest"
    );
}

#[actix_web::test]
async fn the_secret_is_checked_and_unknown_names_are_404() {
    let hub = TestHub::spawn().await;
    let secret = create(&hub, json!({ "name": "hook" })).await;
    let body = br#"{"title": "t", "prompt": "p"}"#;
    assert_eq!(deliver(&hub, "/api/webhooks/hook", &[], body).await.0, 401);
    assert_eq!(
        deliver(
            &hub,
            "/api/webhooks/hook",
            &[("X-Webhook-Secret", "nope")],
            body
        )
        .await
        .0,
        401
    );
    assert_eq!(
        deliver(
            &hub,
            &format!("/api/webhooks/hook?secret={secret}"),
            &[],
            body
        )
        .await
        .0,
        201
    );
    assert_eq!(
        deliver(
            &hub,
            "/api/webhooks/ghost",
            &[("X-Webhook-Secret", &secret)],
            body
        )
        .await
        .0,
        404
    );
    let (status, error) = deliver(
        &hub,
        "/api/webhooks/hook",
        &[("X-Webhook-Secret", &secret)],
        b"{not json",
    )
    .await;
    assert_eq!(status, 400, "{error}");
    // Only the master administers webhooks; a deleted one answers 404.
    let worker = hub.token("rex", "admin").await;
    hub.post("/api/admin/webhooks", &worker, json!({ "name": "x" }))
        .await
        .expect(403);
    hub.get("/api/admin/webhooks", &worker).await.expect(403);
    hub.post("/api/admin/webhooks", MASTER, json!({ "name": "hook" }))
        .await
        .expect(409);
    hub.delete("/api/admin/webhooks/hook", MASTER)
        .await
        .expect(200);
    assert_eq!(
        deliver(
            &hub,
            "/api/webhooks/hook",
            &[("X-Webhook-Secret", &secret)],
            body
        )
        .await
        .0,
        404
    );
    hub.delete("/api/admin/webhooks/hook", MASTER)
        .await
        .expect(404);
}

#[actix_web::test]
async fn uptime_kuma_notifications_become_alert_tasks() {
    let hub = TestHub::spawn().await;
    let secret = create(&hub, json!({ "name": "kuma-alert", "priority": 5 })).await;
    let down = json!({ "heartbeat": { "status": 0, "msg": "connection refused" }, "monitor": { "name": "my-service" }, "msg": "down" });
    let (status, task) = deliver(
        &hub,
        "/api/webhooks/kuma-alert",
        &[("X-Webhook-Secret", &secret)],
        down.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(task["title"], "Alert: my-service is DOWN");
    assert!(task["prompt"]
        .as_str()
        .unwrap()
        .starts_with("Uptime Kuma alert — monitor 'my-service' changed to DOWN"));
    assert_eq!(task["priority"], 5);
    let up = json!({ "heartbeat": { "status": 1 }, "monitor": { "name": "my-service" } });
    let (_, task) = deliver(
        &hub,
        "/api/webhooks/kuma-alert",
        &[("X-Webhook-Secret", &secret)],
        up.to_string().as_bytes(),
    )
    .await;
    assert_eq!(task["title"], "Alert: my-service is UP");
}

#[actix_web::test]
async fn github_deliveries_are_verified_over_the_exact_raw_bytes() {
    let hub = TestHub::spawn().await;
    let secret = create(
        &hub,
        json!({ "name": "pr-review", "required_capability": "code_write" }),
    )
    .await;
    // Unusual spacing on purpose: the signature covers these bytes, not a re-serialisation.
    let body = br#"{"action":"opened",  "number": 42, "pull_request": {"title": "Add caching layer", "html_url": "https://example.test/pr/42"}, "repository": {"full_name": "acme/app"}}"#;
    let signature = sign(&secret, body);
    let headers = [
        ("X-GitHub-Event", "pull_request"),
        ("X-Hub-Signature-256", signature.as_str()),
        ("X-GitHub-Delivery", "d-1"),
    ];
    let (status, task) = deliver(&hub, "/api/webhooks/pr-review/github", &headers, body).await;
    assert_eq!(status, 201, "{task}");
    assert_eq!(task["title"], "Review PR #42: Add caching layer");
    assert!(task["prompt"]
        .as_str()
        .unwrap()
        .starts_with("GitHub PR #42 was opened in acme/app: 'Add caching layer'"));
    assert_eq!(task["required_capability"], "code_write");

    // The same delivery again is recognised, and creates nothing.
    let (status, again) = deliver(&hub, "/api/webhooks/pr-review/github", &headers, body).await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(hub.get("/api/tasks", MASTER).await.expect(200)["count"], 1);

    let mut tampered = body.to_vec();
    tampered.push(b' ');
    let (status, _) = deliver(
        &hub,
        "/api/webhooks/pr-review/github",
        &[
            ("X-GitHub-Event", "pull_request"),
            ("X-Hub-Signature-256", &signature),
        ],
        &tampered,
    )
    .await;
    assert_eq!(
        status, 401,
        "a changed body no longer matches its signature"
    );
    let (status, _) = deliver(
        &hub,
        "/api/webhooks/pr-review/github",
        &[("X-GitHub-Event", "pull_request")],
        body,
    )
    .await;
    assert_eq!(status, 401, "an unsigned delivery is refused");

    let ping = br#"{"zen": "Keep it logically awesome."}"#;
    let (status, pong) = deliver(
        &hub,
        "/api/webhooks/pr-review/github",
        &[
            ("X-GitHub-Event", "ping"),
            ("X-Hub-Signature-256", &sign(&secret, ping)),
        ],
        ping,
    )
    .await;
    assert_eq!((status, pong["pong"].clone()), (200, json!(true)));
    let star = br#"{"action": "created"}"#;
    let (status, _) = deliver(
        &hub,
        "/api/webhooks/pr-review/github",
        &[
            ("X-GitHub-Event", "star"),
            ("X-Hub-Signature-256", &sign(&secret, star)),
        ],
        star,
    )
    .await;
    assert_eq!(status, 202, "other events are acknowledged and ignored");
    let issue = br#"{"action": "opened", "issue": {"number": 7, "title": "Crash on start"}}"#;
    let (status, task) = deliver(
        &hub,
        "/api/webhooks/pr-review/github",
        &[
            ("X-GitHub-Event", "issues"),
            ("X-Hub-Signature-256", &sign(&secret, issue)),
        ],
        issue,
    )
    .await;
    assert_eq!(
        (status, task["title"].clone()),
        (201, json!("Triage issue #7: Crash on start"))
    );
    assert_eq!(hub.get("/api/tasks", MASTER).await.expect(200)["count"], 2);
}

#[actix_web::test]
async fn idempotency_keys_rate_limits_the_kill_switch_and_templates() {
    let hub = TestHub::spawn_with(|s| s.webhook_rate_per_minute = 4).await;
    let template = hub
        .post(
            "/api/templates",
            MASTER,
            json!({ "name": "nightly", "title": "Nightly report", "prompt": "Summarise the day" }),
        )
        .await
        .expect(201);
    let secret = create(
        &hub,
        json!({ "name": "cron", "template_id": template["id"] }),
    )
    .await;
    let auth = ("X-Webhook-Secret", secret.as_str());
    let (status, task) = deliver(
        &hub,
        "/api/webhooks/cron",
        &[auth, ("Idempotency-Key", "run-1")],
        b"",
    )
    .await;
    assert_eq!(status, 201, "{task}");
    assert_eq!(
        task["title"], "Nightly report",
        "an empty body dispatches the bound template"
    );
    assert_eq!(task["prompt"], "Summarise the day");
    let (status, _) = deliver(
        &hub,
        "/api/webhooks/cron",
        &[auth, ("Idempotency-Key", "run-1")],
        b"",
    )
    .await;
    assert_eq!(status, 409, "a redelivery creates nothing");
    hub.post(
        "/api/admin/kill-switch",
        MASTER,
        json!({ "reason": "maintenance" }),
    )
    .await
    .expect(200);
    let (status, refused) =
        deliver(&hub, "/api/webhooks/cron", &[auth], br#"{"title": "x"}"#).await;
    assert_eq!(
        (status, refused["error"].clone()),
        (503, json!("kill switch engaged"))
    );
    hub.delete("/api/admin/kill-switch", MASTER)
        .await
        .expect(200);
    let (status, _) = deliver(
        &hub,
        "/api/webhooks/cron",
        &[auth],
        br#"{"title": "override"}"#,
    )
    .await;
    assert_eq!(status, 201);
    let (status, limited) = deliver(&hub, "/api/webhooks/cron", &[auth], b"").await;
    assert_eq!(
        status, 429,
        "the fifth call in a minute is over the limit: {limited}"
    );
    assert_eq!(hub.get("/api/tasks", MASTER).await.expect(200)["count"], 2);
}
