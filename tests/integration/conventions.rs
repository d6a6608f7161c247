//! Seed 001's operator conventions: the hub says what it is without a login (and nothing
//! an attacker could use), its stream survives proxies (`: connected`, `: keepalive`
//! comments), and scripts sign in for a bearer token that logout ends.

use std::time::Duration;

use awc::http::Method;
use futures_util::StreamExt;
use serde_json::json;

use crate::support::{TestHub, MASTER};

#[actix_web::test]
async fn version_and_status_answer_anyone_and_name_nothing() {
    let hub = TestHub::spawn().await;
    hub.agent("secret-agent-name", &["research"], 1).await;
    hub.task(json!({ "title": "t", "prompt": "p" })).await;
    let version = hub
        .raw(Method::GET, "/api/version", None, None)
        .await
        .expect(200);
    assert_eq!(version, json!({ "version": env!("CARGO_PKG_VERSION") }));
    let status = hub
        .raw(Method::GET, "/api/system/status", None, None)
        .await
        .expect(200);
    let mut keys: Vec<&str> = status
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "at_rest",
            "running",
            "setup_required",
            "uptime_s",
            "version"
        ]
    );
    assert_eq!(status["running"], true);
    assert_eq!(
        status["at_rest"],
        json!({ "enabled": true, "provider": "fernet" })
    );
    assert!(status["uptime_s"].as_u64().is_some());
    assert!(!status.to_string().contains("secret-agent-name"));
    assert_eq!(status["setup_required"], true, "no admin account yet");
    hub.post(
        "/api/admin/users",
        MASTER,
        json!({ "username": "root", "password": "a long enough password", "role": "admin" }),
    )
    .await
    .expect(201);
    let status = hub
        .raw(Method::GET, "/api/system/status", None, None)
        .await
        .expect(200);
    assert_eq!(status["setup_required"], false);
}

#[actix_web::test]
async fn the_stream_opens_with_a_comment_and_keeps_a_proxy_awake_with_more() {
    let hub = TestHub::spawn_with(|s| s.sse_comment_seconds = 1).await;
    let mut response = awc::Client::new()
        .get(format!("{}/api/stream?token={MASTER}", hub.base))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the stream opens");
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(": keepalive\n") && std::time::Instant::now() < deadline {
        let chunk = actix_web::rt::time::timeout(Duration::from_secs(5), response.next())
            .await
            .expect("the stream sends within 5 s")
            .expect("the stream goes on")
            .expect("a chunk");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        seen.starts_with(": connected\n") || seen.contains("\n: connected\n"),
        "{seen}"
    );
    assert!(seen.contains(": keepalive\n"), "{seen}");
    assert!(seen.contains("retry:"), "{seen}");
}

#[actix_web::test]
async fn a_script_signs_in_for_a_bearer_token_that_logout_ends() {
    let hub = TestHub::spawn().await;
    hub.post(
        "/api/admin/users",
        MASTER,
        json!({ "username": "otto", "password": "a long enough password", "role": "operator" }),
    )
    .await
    .expect(201);
    let body = json!({ "username": "otto", "password": "a long enough password" });
    let login = hub
        .raw(
            Method::POST,
            "/api/login",
            None,
            Some(body.to_string().into_bytes()),
        )
        .await
        .expect(200);
    let token = login["token"].as_str().expect("a bearer token").to_string();
    let expires = login["expires_at_ms"].as_i64().expect("expires_at_ms");
    let in_a_day = chrono::Utc::now().timestamp_millis() + 24 * 3600 * 1000;
    assert!(
        (in_a_day - expires).abs() < 60_000,
        "valid for 24 h: {expires}"
    );
    let me = hub.get("/api/me", &token).await.expect(200);
    assert_eq!(me["name"], "user:otto");
    assert_eq!(me["kind"], "session");
    hub.get("/api/tasks", &token).await.expect(200);
    let out = hub
        .raw(Method::POST, "/api/logout", Some(&token), None)
        .await;
    assert_eq!(out.status, 204);
    hub.get("/api/tasks", &token).await.expect(401);
    // Nothing to end is no error either.
    let out = hub.raw(Method::POST, "/api/logout", None, None).await;
    assert_eq!(out.status, 204);
}
