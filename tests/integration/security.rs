//! The findings of the security review, one test (or more) each: every one of these
//! failed against the hub before its fix.

use std::time::{Duration, Instant};

use awc::http::Method;
use m3shd::crypto::fallback::{KeyDerivation, KEY_DERIVATION};
use m3shd::crypto::Vault;
use m3shd::domain::access::role_permissions;
use m3shd::settings::{Secret, Secrets};
use serde_json::{json, Value};

use crate::support::{test_settings, TestHub, MASTER, SOON};

/// A token with exactly these permissions, bound to `agent_id`.
async fn custom_token(hub: &TestHub, agent_id: &str, permissions: &[&str]) -> String {
    hub.post(
        "/api/admin/tokens",
        MASTER,
        json!({ "agent_id": agent_id, "name": agent_id, "permissions": permissions }),
    )
    .await
    .expect(201)["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A sign-in request with extra headers; returns status, `Set-Cookie`, `Retry-After`.
async fn login_with(
    hub: &TestHub,
    username: &str,
    password: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Option<String>) {
    let mut request = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
        .post(format!("{}/api/login", hub.base));
    for (name, value) in headers {
        request = request.insert_header((*name, *value));
    }
    let response = request
        .send_json(&json!({ "username": username, "password": password }))
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    (
        response.status().as_u16(),
        header("set-cookie"),
        header("retry-after"),
    )
}

async fn user(hub: &TestHub, username: &str, role: &str) -> i64 {
    hub.post(
        "/api/admin/users",
        MASTER,
        json!({ "username": username, "password": "correct horse", "role": role }),
    )
    .await
    .expect(201)["id"]
        .as_i64()
        .unwrap()
}

/// A request carrying a session cookie (and optional headers); returns the status.
async fn as_cookie(
    hub: &TestHub,
    method: Method,
    path: &str,
    cookie: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> u16 {
    let pair = cookie.split(';').next().unwrap().to_string();
    let mut request = awc::Client::new()
        .request(method, format!("{}{path}", hub.base))
        .insert_header(("Cookie", pair));
    for (name, value) in headers {
        request = request.insert_header((*name, *value));
    }
    match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    }
    .unwrap()
    .status()
    .as_u16()
}

// Finding 1: admin:users alone minted an admin.
#[actix_web::test]
async fn managing_users_never_grants_more_than_the_caller_holds() {
    let hub = TestHub::spawn().await;
    let viewer_perms = role_permissions("viewer").unwrap();
    let mut perms = vec!["admin:users"];
    perms.extend(viewer_perms.iter().map(String::as_str));
    let clerk = custom_token(&hub, "clerk", &perms).await;
    let body = |role: &str| json!({ "username": role, "password": "correct horse", "role": role });
    let refused = hub.post("/api/admin/users", &clerk, body("admin")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    hub.post("/api/admin/users", &clerk, body("operator"))
        .await
        .expect(403);
    let viewer = hub
        .post("/api/admin/users", &clerk, body("viewer"))
        .await
        .expect(201);
    // Not by promotion either, nor by taking over an account above the clerk.
    let path = format!("/api/admin/users/{}", viewer["id"]);
    hub.put(&path, &clerk, json!({ "role": "admin" }))
        .await
        .expect(403);
    let admin = user(&hub, "root2", "admin").await;
    let admin_path = format!("/api/admin/users/{admin}");
    hub.put(&admin_path, &clerk, json!({ "password": "taken over now" }))
        .await
        .expect(403);
    hub.delete(&admin_path, &clerk).await.expect(403);
    let (status, _, _) = login_with(&hub, "root2", "correct horse", &[]).await;
    assert_eq!(status, 200, "the admin's password is unchanged");

    // Nobody changes their own role, even an admin signed in by cookie.
    let (_, cookie, _) = login_with(&hub, "root2", "correct horse", &[]).await;
    let cookie = cookie.unwrap();
    let own = as_cookie(
        &hub,
        Method::PUT,
        &admin_path,
        &cookie,
        &[],
        Some(json!({ "role": "viewer" })),
    )
    .await;
    assert_eq!(own, 403);
    let listed = hub.get("/api/admin/users", MASTER).await.expect(200);
    let roles: Vec<&str> = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["viewer", "admin"]);
}

// Finding 2: one report of 1e300 USD locked everyone, the master too, out until midnight.
#[actix_web::test]
async fn no_report_can_spend_the_days_budget_and_the_master_can_reset_it() {
    let hub = TestHub::spawn_with(|s| {
        s.daily_cost_cap = 1.0;
        s.max_reported_cost_usd = 5.0;
    })
    .await;
    let rex = hub.agent("rex", &["research"], 4).await;
    let id = hub.task(json!({ "title": "t", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/tasks/{id}");
    for absurd in [json!(1e300), json!(5.01), json!(-1)] {
        let refused = hub
            .put(
                &path,
                &rex,
                json!({ "status": "running", "cost_usd": absurd }),
            )
            .await;
        assert_eq!(refused.status, 400, "{absurd}: {}", refused.body);
    }
    hub.put(
        &path,
        &rex,
        json!({ "status": "running", "tokens_in": 2_000_000_000, "tokens_out": 2_000_000_000 }),
    )
    .await
    .expect(400);
    let budget = hub.get("/api/admin/budget", MASTER).await.expect(200);
    assert_eq!(budget["counted_usd"], 0.0, "{budget}");

    // A legitimate report that reaches the cap: others are refused, the master is not.
    hub.put(&path, &rex, json!({ "status": "done", "cost_usd": 1.5 }))
        .await
        .expect(200);
    let commander = hub.token("cmd", "commander").await;
    let new_task = json!({ "title": "n", "prompt": "p" });
    hub.post("/api/tasks", &commander, new_task.clone())
        .await
        .expect(429);
    hub.post("/api/tasks", MASTER, new_task.clone())
        .await
        .expect(201);
    let budget = hub.get("/api/admin/budget", MASTER).await.expect(200);
    assert_eq!(budget["cap_reached"], true);
    assert_eq!(budget["spent_usd"], 1.5);
    hub.get("/api/admin/budget", &commander).await.expect(403);
    hub.post("/api/admin/budget/reset", &commander, json!({}))
        .await
        .expect(403);

    let reset = hub
        .post("/api/admin/budget/reset", MASTER, json!({}))
        .await
        .expect(200);
    assert_eq!(reset["cap_reached"], false, "{reset}");
    assert_eq!(reset["counted_usd"], 0.0);
    hub.post("/api/tasks", &commander, new_task)
        .await
        .expect(201);
    let audit = hub
        .get("/api/admin/audit?action=budget.reset", MASTER)
        .await
        .expect(200);
    assert_eq!(audit["count"], 1);
    assert_eq!(audit["entries"][0]["actor"], "master");
}

// Finding 3: a parallel burst passed the failure check before any failure was counted.
#[actix_web::test]
async fn a_parallel_burst_of_guesses_gets_no_more_tries_than_a_slow_one() {
    let hub = TestHub::spawn_with(|s| {
        s.login_failures_allowed = 5;
        s.login_failure_delay_ms = 50;
    })
    .await;
    user(&hub, "vera", "viewer").await;
    let guesses = (0..40).map(|i| {
        let password = if i == 30 {
            "correct horse".to_string()
        } else {
            format!("guess {i}")
        };
        let hub = &hub;
        async move { login_with(hub, "vera", &password, &[]).await.0 }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s != 429).count();
    assert!(
        checked <= 5,
        "only 5 attempts may reach the password check: {statuses:?}"
    );
    assert!(statuses.iter().all(|s| [200, 401, 429].contains(s)));
}

// Finding 5: five failures locked the name out everywhere and the address for everyone;
// X-Forwarded-For counts only from a trusted proxy.
#[actix_web::test]
async fn the_throttle_is_per_name_and_address_and_believes_only_trusted_proxies() {
    let hub = TestHub::spawn_with(|s| {
        s.login_failures_allowed = 2;
        s.login_failure_delay_ms = 0;
        s.login_slowdown_seconds = 60;
    })
    .await;
    user(&hub, "vera", "viewer").await;
    user(&hub, "walt", "viewer").await;
    let spoofed = [("X-Forwarded-For", "203.0.113.9")];
    for _ in 0..2 {
        assert_eq!(login_with(&hub, "vera", "nope nope", &[]).await.0, 401);
    }
    let (status, _, retry) = login_with(&hub, "vera", "correct horse", &[]).await;
    assert_eq!(status, 429);
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // A forged X-Forwarded-For from an untrusted peer changes nothing.
    assert_eq!(
        login_with(&hub, "vera", "correct horse", &spoofed).await.0,
        429
    );
    // Other names from this address are untouched.
    assert_eq!(login_with(&hub, "walt", "correct horse", &[]).await.0, 200);

    // Behind a trusted proxy, each forwarded client has its own count.
    let proxied = TestHub::spawn_with(|s| {
        s.login_failures_allowed = 2;
        s.login_failure_delay_ms = 0;
        s.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    user(&proxied, "vera", "viewer").await;
    let attacker = [("X-Forwarded-For", "198.51.100.7")];
    for _ in 0..2 {
        login_with(&proxied, "vera", "nope nope", &attacker).await;
    }
    assert_eq!(
        login_with(&proxied, "vera", "correct horse", &attacker)
            .await
            .0,
        429
    );
    let owner = [("X-Forwarded-For", "192.0.2.1, 127.0.0.1")];
    assert_eq!(
        login_with(&proxied, "vera", "correct horse", &owner)
            .await
            .0,
        200,
        "the owner behind the same proxy signs in"
    );
}

// Finding 6: every name was kept forever, up to 256 KB each.
#[actix_web::test]
async fn sign_in_names_are_bounded_before_anything_is_kept() {
    let hub = TestHub::spawn_with(|s| s.login_failure_delay_ms = 0).await;
    let long = "n".repeat(100_000);
    let (status, _, _) = login_with(&hub, &long, "whatever1", &[]).await;
    assert_eq!(status, 400);
    assert!(hub.hub.login_throttle.is_empty(), "nothing was remembered");
    let capped = TestHub::spawn_with(|s| {
        s.login_failure_delay_ms = 0;
        s.login_throttle_capacity = 20;
    })
    .await;
    for i in 0..60 {
        login_with(&capped, &format!("name-{i}"), "whatever1", &[]).await;
    }
    assert_eq!(capped.hub.login_throttle.len(), 20);
}

// Finding 11: an unknown user answered ~25 ms sooner than a wrong password.
#[actix_web::test]
async fn an_unknown_name_costs_as_much_as_a_wrong_password() {
    let hub = TestHub::spawn_with(|s| {
        s.login_failure_delay_ms = 0;
        s.login_failures_allowed = 1000;
    })
    .await;
    user(&hub, "vera", "viewer").await;
    // Warm up (the decoy hash is made on first use).
    login_with(&hub, "ghost", "wrong password", &[]).await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..7 {
        for (name, times) in [("vera", &mut known), ("ghost", &mut unknown)] {
            let started = Instant::now();
            assert_eq!(login_with(&hub, name, "wrong password", &[]).await.0, 401);
            times.push(started.elapsed());
        }
    }
    known.sort();
    unknown.sort();
    let (known, unknown) = (known[3], unknown[3]);
    assert!(
        unknown * 2 >= known,
        "median unknown {unknown:?} vs wrong password {known:?}: the password check was skipped"
    );
}

// Findings 7 and 8: templates listed whole (prompts too, unpaged), read and deleted by
// anyone with a common permission.
#[actix_web::test]
async fn templates_are_paged_and_their_prompts_and_deletion_belong_to_their_owners() {
    let hub = TestHub::spawn_with(|s| s.max_templates_per_creator = 3).await;
    let op = hub.token("op", "operator").await;
    let worker = hub.token("w", "worker").await;
    let body = |n: i32| json!({ "title": format!("t{n}"), "prompt": format!("secret prompt {n}") });
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            hub.post("/api/templates", MASTER, body(n))
                .await
                .expect(201)["id"]
                .clone(),
        );
    }
    hub.post("/api/templates", MASTER, body(9))
        .await
        .expect(409);
    let mine = hub.post("/api/templates", &op, body(4)).await.expect(201);
    assert_eq!(mine["prompt"], "secret prompt 4");

    let page = hub
        .get("/api/templates?limit=2&offset=1", &worker)
        .await
        .expect(200);
    assert_eq!(page["count"], 2);
    assert_eq!(page["total"], 4);
    assert_eq!(page["templates"][0]["id"], ids[2]);
    let listed = hub.get("/api/templates", MASTER).await.expect(200);
    assert!(
        listed["templates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("prompt").is_none()),
        "lists never carry prompts: {listed}"
    );

    let master_template = format!("/api/templates/{}", ids[0]);
    let seen = hub.get(&master_template, &op).await.expect(200);
    assert!(seen.get("prompt").is_none(), "{seen}");
    assert_eq!(
        hub.get(&master_template, MASTER).await.expect(200)["prompt"],
        "secret prompt 0"
    );
    hub.delete(&master_template, &op).await.expect(404);
    hub.get(&master_template, MASTER).await.expect(200);
    let own = format!("/api/templates/{}", mine["id"]);
    assert_eq!(
        hub.get(&own, &op).await.expect(200)["prompt"],
        "secret prompt 4"
    );
    hub.delete(&own, &op).await.expect(200);

    // A template a webhook dispatches is not deleted from under it.
    hub.post(
        "/api/admin/webhooks",
        MASTER,
        json!({ "name": "deploys", "template_id": ids[1] }),
    )
    .await
    .expect(201);
    let bound = hub
        .delete(&format!("/api/templates/{}", ids[1]), MASTER)
        .await;
    assert_eq!(bound.status, 409);
    assert!(
        bound.body["error"].as_str().unwrap().contains("deploys"),
        "{}",
        bound.body
    );
}

// Finding 9: escalations showed the reason and task of a task the caller gets 404 for.
#[actix_web::test]
async fn escalations_of_hidden_tasks_stay_hidden_everywhere() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let op = hub.token("op", "operator").await;
    let mut op_events = hub.stream(&op).await;
    let task = hub.task(json!({ "title": "t", "prompt": "p" })).await;
    let escalation = hub
        .post(
            "/api/escalations",
            &rex,
            json!({ "task_id": task["id"], "reason": "the vault code is 1234" }),
        )
        .await
        .expect(201);
    let listed = hub.get("/api/escalations", &op).await.expect(200);
    assert_eq!(listed["count"], 0, "{listed}");
    let resolve = format!("/api/escalations/{}/resolve", escalation["id"]);
    hub.post(&resolve, &op, json!({})).await.expect(404);
    let visible = hub
        .post(
            "/api/escalations",
            MASTER,
            json!({ "agent_id": "op", "reason": "for op" }),
        )
        .await
        .expect(201);
    let event = op_events
        .next_named("escalation_opened", SOON)
        .await
        .expect("op hears of the escalation that names it");
    assert_eq!(event.data["id"], visible["id"], "and of nothing else");
    hub.post(&resolve, MASTER, json!({})).await.expect(200);
}

// Finding 10: peers and their URLs went to a token without permissions.
#[actix_web::test]
async fn federation_status_shows_peers_only_to_admins() {
    let hub = TestHub::spawn().await;
    hub.post(
        "/api/admin/peers",
        MASTER,
        json!({ "name": "east", "url": "http://127.0.0.1:9", "token": "shared-secret-token" }),
    )
    .await
    .expect(201);
    let nobody = custom_token(&hub, "nobody", &[]).await;
    let status = hub.get("/api/federation/status", &nobody).await.expect(200);
    assert_eq!(status["federation"], true);
    assert_eq!(status["relay"], false);
    assert!(status.get("peers").is_none(), "{status}");
    assert!(!status.to_string().contains("127.0.0.1:9"));
    let admin = hub.token("boss", "admin").await;
    for token in [MASTER, admin.as_str()] {
        let full = hub.get("/api/federation/status", token).await.expect(200);
        assert_eq!(full["peers"][0]["url"], "http://127.0.0.1:9");
    }
}

// Finding 12: without M3SHDUP_ENCRYPT_KEY the key was SHA-256(master token).
#[actix_web::test]
async fn the_fallback_key_is_salted_and_slow_to_guess() {
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(dir.path());
    let database_url = settings.database_url.clone();
    let secrets = Secrets {
        master_token: Secret::new(MASTER),
        encrypt_key: None,
        legacy_encrypt_key: None,
    };
    let app = m3shd::startup::Application::build(settings, secrets.clone())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    let created: Value = awc::Client::new()
        .post(format!("{base}/api/tasks"))
        .insert_header(("Authorization", format!("Bearer {MASTER}")))
        .send_json(&json!({ "title": "t", "prompt": "the plaintext" }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    use diesel::prelude::*;
    let mut conn = crate::support::open_database(&database_url);
    let stored: String = m3shd::db::schema::settings::table
        .find(KEY_DERIVATION)
        .select(m3shd::db::schema::settings::value)
        .get_result(&mut conn)
        .unwrap();
    let derivation: KeyDerivation = serde_json::from_str(&stored).unwrap();
    assert_eq!(derivation.kdf, "argon2id");
    assert_eq!(derivation.salt.len(), 32, "16 random bytes");
    let sealed: String = m3shd::db::schema::tasks::table
        .find(created["id"].as_i64().unwrap() as i32)
        .select(m3shd::db::schema::tasks::prompt)
        .get_result(&mut conn)
        .unwrap();
    // The token alone (the old derivation) opens nothing; token and salt do.
    assert_eq!(Vault::from_secrets(&secrets).open(&sealed), None);
    let derived = Secrets {
        encrypt_key: Some(derivation.derive(&secrets.master_token).unwrap()),
        ..secrets
    };
    assert_eq!(
        Vault::from_secrets(&derived)
            .open(&sealed)
            .unwrap()
            .plaintext,
        "the plaintext"
    );
}

// Findings 13 and 14: health details and streaming needed no permission.
#[actix_web::test]
async fn health_details_and_stream_chunks_need_their_permissions() {
    let hub = TestHub::spawn().await;
    let nobody = custom_token(&hub, "nobody", &[]).await;
    let health = hub.get("/api/health", &nobody).await.expect(200);
    // Signed in: which process answers, and nothing about agents or work.
    assert_eq!(health["role"], "leader");
    assert!(
        health.get("agents").is_none() && health.get("live_tasks").is_none(),
        "{health}"
    );
    let viewer = hub.token("vic", "viewer").await;
    assert!(hub.get("/api/health", &viewer).await.expect(200)["agents"].is_object());

    let rex = hub.agent("rex", &["research"], 1).await;
    let id = hub.task(json!({ "title": "t", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    let stream = format!("/api/tasks/{id}/stream");
    hub.post(&stream, &rex, json!({ "chunk": "one" }))
        .await
        .expect(201);
    // The same holder with its permissions taken away can no longer write.
    let tokens = hub.get("/api/admin/tokens", MASTER).await.expect(200);
    let hash = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["agent_id"] == "rex")
        .unwrap()["hash_prefix"]
        .as_str()
        .unwrap()
        .to_string();
    hub.put(
        &format!("/api/admin/tokens/{hash}/permissions"),
        MASTER,
        json!({ "permissions": ["tasks:read"] }),
    )
    .await
    .expect(200);
    hub.post(&stream, &rex, json!({ "chunk": "two" }))
        .await
        .expect(403);
    hub.put(
        &format!("/api/tasks/{id}"),
        &rex,
        json!({ "status": "done" }),
    )
    .await
    .expect(403);
}

// Finding 15: a peer pinned a relayed task to a local agent with priority 999.
#[actix_web::test]
async fn relayed_tasks_cannot_pin_agents_or_jump_the_queue() {
    let hub = TestHub::spawn_with(|s| s.federation_max_priority = 10).await;
    hub.post(
        "/api/admin/peers",
        MASTER,
        json!({ "name": "west", "url": "http://127.0.0.1:9", "token": "shared-secret-token" }),
    )
    .await
    .expect(201);
    let relay = |body: Value| {
        let base = hub.base.clone();
        async move {
            let mut response = awc::Client::new()
                .post(format!("{base}/api/federation/tasks"))
                .insert_header(("X-Federation-Token", "shared-secret-token"))
                .send_json(&body)
                .await
                .unwrap();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (response.status().as_u16(), body)
        }
    };
    let _rex = hub.agent("rex", &["research"], 1).await;
    let (status, body) =
        relay(json!({ "title": "t", "prompt": "p", "required_capability": "gpu", "assign_to": "rex", "hop_count": 1 })).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["assign_to"].is_null(), "the pin is dropped: {body}");
    assert!(
        body["assigned_to"].is_null(),
        "rex (no gpu) was not made to take it: {body}"
    );
    let (status, body) =
        relay(json!({ "title": "t", "prompt": "p", "priority": 999, "hop_count": 1 })).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["priority"], 10);
}

// Finding 16: 37,000 dependency ids hit SQLite's variable limit (a 500).
#[actix_web::test]
async fn a_long_depends_on_is_a_clear_400() {
    let hub = TestHub::spawn().await;
    let ids: Vec<i64> = (1..=37_000).collect();
    let refused = hub
        .post(
            "/api/tasks",
            MASTER,
            json!({ "title": "t", "prompt": "p", "depends_on": ids }),
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body["error"]
        .as_str()
        .unwrap()
        .contains("at most 50"));
}

// Finding 17: no Secure flag over TLS, and cross-site writes rode on the cookie.
#[actix_web::test]
async fn the_cookie_is_secure_over_tls_and_refuses_cross_site_writes() {
    let hub = TestHub::spawn_with(|s| s.trusted_proxies = vec!["127.0.0.1".into()]).await;
    user(&hub, "opal", "operator").await;
    let (_, plain, _) = login_with(&hub, "opal", "correct horse", &[]).await;
    assert!(!plain.unwrap().to_ascii_lowercase().contains("secure"));
    let tls = [("X-Forwarded-Proto", "https")];
    let (_, cookie, _) = login_with(&hub, "opal", "correct horse", &tls).await;
    let cookie = cookie.unwrap();
    assert!(cookie.to_ascii_lowercase().contains("; secure"), "{cookie}");

    let task = json!({ "title": "t", "prompt": "p" });
    let host = hub.base.trim_start_matches("http://").to_string();
    let own = format!("http://{host}");
    let cases: [(&[(&str, &str)], u16); 4] = [
        (&[("Origin", "https://evil.example")], 403),
        (&[("Sec-Fetch-Site", "cross-site")], 403),
        (&[("Origin", own.as_str())], 201),
        (&[], 201),
    ];
    for (headers, expected) in cases {
        let status = as_cookie(
            &hub,
            Method::POST,
            "/api/tasks",
            &cookie,
            headers,
            Some(task.clone()),
        )
        .await;
        assert_eq!(status, expected, "{headers:?}");
    }
    // Reads are not writes: a cross-site GET still answers (SameSite=Strict keeps the
    // browser from sending the cookie anyway).
    let read = as_cookie(
        &hub,
        Method::GET,
        "/api/tasks",
        &cookie,
        &[("Origin", "https://evil.example")],
        None,
    )
    .await;
    assert_eq!(read, 200);
    // A bearer token is not a cookie: no Origin rule applies to it.
    let created = awc::Client::new()
        .post(format!("{}/api/tasks", hub.base))
        .insert_header(("Authorization", format!("Bearer {MASTER}")))
        .insert_header(("Origin", "https://evil.example"))
        .send_json(&task)
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
}

// A promise the README makes: any change to an account ends its sessions at once.
#[actix_web::test]
async fn a_role_or_password_change_ends_the_users_sessions() {
    let hub = TestHub::spawn().await;
    let id = user(&hub, "vera", "operator").await;
    let path = format!("/api/admin/users/{id}");
    // The password change comes last: the first sign-in of each round uses the old one.
    for change in [
        json!({ "role": "viewer" }),
        json!({ "password": "a brand new one" }),
    ] {
        let (status, cookie, _) = login_with(&hub, "vera", "correct horse", &[]).await;
        assert_eq!(status, 200);
        let cookie = cookie.unwrap();
        assert_eq!(
            as_cookie(&hub, Method::GET, "/api/tasks", &cookie, &[], None).await,
            200
        );
        hub.put(&path, MASTER, change.clone()).await.expect(200);
        assert_eq!(
            as_cookie(&hub, Method::GET, "/api/tasks", &cookie, &[], None).await,
            401,
            "after {change}"
        );
    }
}
