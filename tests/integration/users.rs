//! People: accounts, password login into a session cookie, logout, throttling.

use std::time::{Duration, Instant};

use awc::http::Method;
use serde_json::{json, Value};

use crate::support::{bytes_at_rest, TestHub, MASTER};

/// Logs in; returns the status, the `Set-Cookie` header and the body.
async fn login(hub: &TestHub, username: &str, password: &str) -> (u16, Option<String>, Value) {
    let mut response = awc::Client::new()
        .post(format!("{}/api/login", hub.base))
        .send_json(&json!({ "username": username, "password": password }))
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = serde_json::from_slice(&response.body().await.unwrap()).unwrap_or(Value::Null);
    (response.status().as_u16(), cookie, body)
}

/// A request carrying only the session cookie.
async fn with_cookie(
    hub: &TestHub,
    method: Method,
    path: &str,
    cookie: &str,
    body: Option<Value>,
) -> u16 {
    let pair = cookie.split(';').next().unwrap().to_string();
    let request = awc::Client::new()
        .request(method, format!("{}{path}", hub.base))
        .insert_header(("Cookie", pair));
    let response = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    };
    response.unwrap().status().as_u16()
}

async fn create_user(hub: &TestHub, username: &str, role: &str) -> i64 {
    let user = hub
        .post(
            "/api/admin/users",
            MASTER,
            json!({ "username": username, "password": "correct horse", "role": role }),
        )
        .await
        .expect(201);
    assert!(user.get("password_hash").is_none() && user.get("password").is_none());
    user["id"].as_i64().unwrap()
}

#[actix_web::test]
async fn a_login_sets_a_strict_http_only_cookie_that_acts_with_the_users_role() {
    let hub = TestHub::spawn().await;
    create_user(&hub, "vera", "viewer").await;
    create_user(&hub, "otto", "operator").await;
    let (status, cookie, body) = login(&hub, "vera", "correct horse").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["username"], "vera");
    let cookie = cookie.expect("a session cookie");
    assert!(cookie.starts_with("m3shd_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    // A viewer reads but does not create.
    assert_eq!(
        with_cookie(&hub, Method::GET, "/api/tasks", &cookie, None).await,
        200
    );
    assert_eq!(
        with_cookie(&hub, Method::GET, "/api/agents", &cookie, None).await,
        200
    );
    let task = json!({ "title": "t", "prompt": "p" });
    assert_eq!(
        with_cookie(
            &hub,
            Method::POST,
            "/api/tasks",
            &cookie,
            Some(task.clone())
        )
        .await,
        403
    );
    let (_, operator, _) = login(&hub, "otto", "correct horse").await;
    assert_eq!(
        with_cookie(
            &hub,
            Method::POST,
            "/api/tasks",
            &operator.unwrap(),
            Some(task)
        )
        .await,
        201
    );
    let created = hub.get("/api/tasks", MASTER).await.expect(200);
    assert_eq!(created["tasks"][0]["created_by"], "user:otto");
    assert_eq!(
        with_cookie(
            &hub,
            Method::GET,
            "/api/tasks",
            "m3shd_session=forged",
            None
        )
        .await,
        401
    );
}

#[actix_web::test]
async fn a_wrong_password_waits_then_401_and_repeated_failures_are_throttled() {
    let hub = TestHub::spawn_with(|s| {
        s.login_failure_delay_ms = 300;
        s.login_failures_allowed = 3;
    })
    .await;
    create_user(&hub, "vera", "viewer").await;
    let started = Instant::now();
    let (status, cookie, body) = login(&hub, "vera", "wrong password").await;
    assert_eq!(status, 401, "{body}");
    assert!(cookie.is_none());
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "a failure is answered after the delay"
    );
    assert_eq!(
        login(&hub, "nobody", "whatever1").await.0,
        401,
        "an unknown user looks the same"
    );
    assert_eq!(login(&hub, "vera", "wrong again").await.0, 401);
    assert_eq!(login(&hub, "vera", "wrong thrice").await.0, 401);
    // Three failures for vera from this address: now even the right password must wait
    // (slowed down, not locked: Retry-After says for how long).
    assert_eq!(login(&hub, "vera", "correct horse").await.0, 429);
    // Another name from the same address is untouched (the unknown one failed only once).
    create_user(&hub, "walt", "viewer").await;
    assert_eq!(login(&hub, "walt", "correct horse").await.0, 200);
}

#[actix_web::test]
async fn logout_disable_and_password_changes_end_sessions_on_the_next_request() {
    let hub = TestHub::spawn().await;
    let id = create_user(&hub, "vera", "viewer").await;
    let (_, first, _) = login(&hub, "vera", "correct horse").await;
    let first = first.unwrap();
    assert_eq!(
        with_cookie(&hub, Method::POST, "/api/logout", &first, None).await,
        204
    );
    assert_eq!(
        with_cookie(&hub, Method::GET, "/api/tasks", &first, None).await,
        401
    );

    let (_, second, _) = login(&hub, "vera", "correct horse").await;
    let second = second.unwrap();
    hub.put(
        &format!("/api/admin/users/{id}"),
        MASTER,
        json!({ "enabled": false }),
    )
    .await
    .expect(200);
    assert_eq!(
        with_cookie(&hub, Method::GET, "/api/tasks", &second, None).await,
        401
    );
    assert_eq!(
        login(&hub, "vera", "correct horse").await.0,
        401,
        "a disabled user cannot log in"
    );

    hub.put(
        &format!("/api/admin/users/{id}"),
        MASTER,
        json!({ "enabled": true, "password": "battery staple" }),
    )
    .await
    .expect(200);
    assert_eq!(login(&hub, "vera", "correct horse").await.0, 401);
    let (status, third, _) = login(&hub, "vera", "battery staple").await;
    assert_eq!(status, 200);
    hub.delete(&format!("/api/admin/users/{id}"), MASTER)
        .await
        .expect(200);
    assert_eq!(
        with_cookie(&hub, Method::GET, "/api/tasks", &third.unwrap(), None).await,
        401
    );
    hub.delete(&format!("/api/admin/users/{id}"), MASTER)
        .await
        .expect(404);
}

#[actix_web::test]
async fn accounts_need_admin_users_and_valid_input_and_hashes_stay_secret() {
    let hub = TestHub::spawn().await;
    let commander = hub.token("cmd", "commander").await;
    hub.post(
        "/api/admin/users",
        &commander,
        json!({ "username": "x", "password": "long enough" }),
    )
    .await
    .expect(403);
    let admin = hub.token("boss", "admin").await;
    hub.post(
        "/api/admin/users",
        &admin,
        json!({ "username": "ann", "password": "short" }),
    )
    .await
    .expect(400);
    hub.post(
        "/api/admin/users",
        &admin,
        json!({ "username": "ann", "password": "long enough", "role": "root" }),
    )
    .await
    .expect(400);
    hub.post(
        "/api/admin/users",
        &admin,
        json!({ "username": "ann", "password": "long enough", "role": "admin" }),
    )
    .await
    .expect(201);
    hub.post(
        "/api/admin/users",
        &admin,
        json!({ "username": "ann", "password": "long enough" }),
    )
    .await
    .expect(409);
    let list = hub.get("/api/admin/users", &admin).await.expect(200);
    assert_eq!(list["count"], 1);
    assert!(!list.to_string().contains("argon2"));
    hub.put("/api/admin/users/999", &admin, json!({ "role": "viewer" }))
        .await
        .expect(404);
    let raw = bytes_at_rest(hub.dir.path()).await;
    assert!(
        raw.contains("$argon2id$"),
        "the password is stored as an Argon2id hash"
    );
    assert!(!raw.contains("long enough"));
}
