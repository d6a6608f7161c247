//! `GET /metrics`: what a scrape shows after a known workload (exact values and labels, as
//! a person checking a dashboard would read them), who may scrape under each
//! `metrics_access`, and that admin tokens issued before `metrics:read` existed may scrape.
//! Each hub keeps its own registry, so these hubs run beside every other test's.

use std::time::Duration;

use awc::http::StatusCode;
use m3shd::metrics::MetricsAccess;
use serde_json::{json, Value};

use crate::support::{migrations_dir, open_database, test_settings, TestHub, MASTER, SOON};

const PATIENT: Duration = Duration::from_secs(20);

/// `GET /metrics` with an optional bearer token: the status and the body as text.
async fn scrape(hub: &TestHub, token: Option<&str>) -> (StatusCode, String) {
    let mut request = awc::Client::new().get(format!("{}/metrics", hub.base));
    if let Some(token) = token {
        request = request.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let mut response = request.send().await.expect("the hub answers");
    let body = response.body().limit(4 << 20).await.expect("a body");
    (
        response.status(),
        String::from_utf8(body.to_vec()).expect("text"),
    )
}

/// A scrape by the master token (which must succeed), as text.
pub async fn metrics(hub: &TestHub) -> String {
    let (status, text) = scrape(hub, Some(MASTER)).await;
    assert_eq!(status, 200, "{text}");
    text
}

/// The value of the sample written exactly `series` (name and labels), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().expect("a number"))
}

/// Waits until the sample `series` reads `want`; the last scrape if it never does.
async fn settles(hub: &TestHub, series: &str, want: f64) -> String {
    let deadline = std::time::Instant::now() + PATIENT;
    loop {
        let text = metrics(hub).await;
        if sample(&text, series) == Some(want) || std::time::Instant::now() > deadline {
            return text;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

fn id_of(task: &Value) -> i64 {
    task["id"].as_i64().expect("an id")
}

#[actix_web::test]
async fn a_scrape_after_a_known_workload_reads_exact_values() {
    let hub = TestHub::spawn().await;
    let ana = hub.agent("ana", &["research"], 2).await;
    let _bob = hub.agent("bob", &["git"], 1).await;
    let mut tasks = Vec::new();
    for n in 0..3 {
        let task = hub
            .task(json!({ "title": format!("r{n}"), "prompt": "p", "required_capability": "research" }))
            .await;
        tasks.push(id_of(&task));
    }
    hub.task(json!({ "title": "t", "prompt": "p", "required_capability": "translate" }))
        .await;
    let git = hub
        .task(json!({ "title": "g", "prompt": "p", "required_capability": "git" }))
        .await;
    assert_eq!(git["assigned_to"], "bob");

    // ana holds the first two research tasks; the third waits for her.
    let (first, second, third) = (tasks[0], tasks[1], tasks[2]);
    for (id, status) in [(first, "done"), (second, "failed")] {
        hub.put(
            &format!("/api/tasks/{id}"),
            &ana,
            json!({ "status": "running" }),
        )
        .await
        .expect(200);
        hub.put(
            &format!("/api/tasks/{id}"),
            &ana,
            json!({ "status": status, "output": "o" }),
        )
        .await
        .expect(200);
    }
    hub.get(&format!("/api/tasks/{third}"), MASTER)
        .await
        .expect(200);
    hub.get("/api/no-such-thing", MASTER).await.expect(404);

    let text = settles(
        &hub,
        r#"m3shd_tasks_assigned_total{capability="research"}"#,
        3.0,
    )
    .await;
    let expected = [
        (r#"m3shd_tasks_created_total{capability="research"}"#, 3.0),
        (r#"m3shd_tasks_created_total{capability="translate"}"#, 1.0),
        (r#"m3shd_tasks_created_total{capability="git"}"#, 1.0),
        // Two at creation, the third when the first one finished.
        (r#"m3shd_tasks_assigned_total{capability="research"}"#, 3.0),
        (r#"m3shd_tasks_assigned_total{capability="git"}"#, 1.0),
        (
            r#"m3shd_tasks_finished_total{capability="research",status="done"}"#,
            1.0,
        ),
        (
            r#"m3shd_tasks_finished_total{capability="research",status="failed"}"#,
            1.0,
        ),
        (r#"m3shd_tasks_queued{capability="translate"}"#, 1.0),
        (r#"m3shd_tasks_queued{capability="research"}"#, 0.0),
        // bob's only slot is taken; ana has one of two.
        (r#"m3shd_agents{status="busy"}"#, 1.0),
        (r#"m3shd_agents{status="online"}"#, 1.0),
        (r#"m3shd_agents{status="offline"}"#, 0.0),
        (
            r#"m3shd_http_requests_total{method="POST",route="/api/tasks",status="201"}"#,
            5.0,
        ),
        (
            r#"m3shd_http_request_duration_seconds_count{method="POST",route="/api/tasks"}"#,
            5.0,
        ),
        (
            r#"m3shd_http_requests_total{method="PUT",route="/api/tasks/{id}",status="200"}"#,
            4.0,
        ),
        (
            r#"m3shd_http_requests_total{method="GET",route="/api/tasks/{id}",status="200"}"#,
            1.0,
        ),
        (
            r#"m3shd_http_requests_total{method="GET",route="unmatched",status="404"}"#,
            1.0,
        ),
        (
            r#"m3shd_http_requests_total{method="POST",route="/api/agents/{agent_id}/register",status="200"}"#,
            2.0,
        ),
        ("m3shd_sse_subscribers", 0.0),
        ("m3shd_sse_subscribers_cut_off_total", 0.0),
        ("m3shd_alerts_queued", 0.0),
        ("m3shd_federation_results_pending", 0.0),
    ];
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(series, want)| sample(&text, series) != Some(*want))
        .map(|(series, want)| format!("{series}: want {want}, got {:?}", sample(&text, series)))
        .collect();
    assert!(wrong.is_empty(), "{}\n\n{text}", wrong.join("\n"));

    // Raw paths and ids never become labels.
    assert!(!text.contains(&format!("/api/tasks/{third}\"")), "{text}");
    assert!(!text.contains("no-such-thing"), "{text}");
    assert!(text.contains("# TYPE m3shd_http_request_duration_seconds histogram"));
    // Every write above committed in some group; each group counted once.
    let commits = sample(&text, "m3shd_db_commit_duration_seconds_count").unwrap();
    assert!(commits >= 1.0, "{text}");
    assert_eq!(sample(&text, "m3shd_db_commit_writes_count"), Some(commits));
    assert!(sample(&text, "m3shd_db_commit_writes_sum").unwrap() >= commits);
}

#[actix_web::test]
async fn an_open_stream_counts_until_it_closes() {
    // The hub learns a client left when it next writes to it: a keepalive each second.
    let hub = TestHub::spawn_with(|s| s.sse_keepalive_seconds = 1).await;
    let stream = hub.stream(MASTER).await;
    let text = settles(&hub, "m3shd_sse_subscribers", 1.0).await;
    assert_eq!(sample(&text, "m3shd_sse_subscribers"), Some(1.0), "{text}");
    drop(stream);
    let text = settles(&hub, "m3shd_sse_subscribers", 0.0).await;
    assert_eq!(sample(&text, "m3shd_sse_subscribers"), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, "m3shd_sse_subscribers_cut_off_total"),
        Some(0.0),
        "a client that leaves is not cut off"
    );
    assert_eq!(
        sample(
            &text,
            r#"m3shd_http_requests_total{method="GET",route="/api/stream",status="200"}"#
        ),
        Some(1.0),
        "{text}"
    );
}

#[actix_web::test]
async fn a_result_owed_to_an_unreachable_peer_stays_pending_until_it_is_settled() {
    let hub = TestHub::spawn_with(|s| s.federation_retry_max_seconds = 1).await;
    // Nothing listens on port 9: the report is refused at once and tried again every
    // second, never given up, until the peer is removed (which settles what it was owed).
    hub.post(
        "/api/admin/peers",
        MASTER,
        json!({ "name": "gone", "url": "http://127.0.0.1:9", "token": "gone-shared" }),
    )
    .await
    .expect(201);
    let rex = hub.agent("rex", &["research"], 1).await;
    let mut relayed = awc::Client::new()
        .post(format!("{}/api/federation/tasks", hub.base))
        .insert_header(("X-Federation-Token", "gone-shared"))
        .send_body(json!({ "title": "from afar", "prompt": "p", "required_capability": "research", "hop_count": 1 }).to_string())
        .await
        .unwrap();
    assert_eq!(relayed.status(), 201);
    let id = id_of(&relayed.json::<Value>().await.unwrap());
    for status in ["running", "done"] {
        hub.put(
            &format!("/api/tasks/{id}"),
            &rex,
            json!({ "status": status }),
        )
        .await
        .expect(200);
    }
    let pending = "m3shd_federation_results_pending";
    let text = settles(&hub, pending, 1.0).await;
    assert_eq!(sample(&text, pending), Some(1.0), "{text}");
    // Several tries later it is still owed.
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sample(&metrics(&hub).await, pending), Some(1.0));
    hub.delete("/api/admin/peers/gone", MASTER)
        .await
        .expect(200);
    let text = settles(&hub, pending, 0.0).await;
    assert_eq!(sample(&text, pending), Some(0.0), "{text}");
}

#[actix_web::test]
async fn by_default_a_scrape_needs_metrics_read() {
    let hub = TestHub::spawn().await;
    let viewer = hub.token("viewer-1", "viewer").await;
    let admin = hub.token("admin-1", "admin").await;
    let scraper = hub
        .post(
            "/api/admin/tokens",
            MASTER,
            json!({ "agent_id": "prometheus", "permissions": ["metrics:read"] }),
        )
        .await
        .expect(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(scrape(&hub, None).await.0, 401);
    assert_eq!(scrape(&hub, Some("m3shd_ag_never_issued")).await.0, 401);
    assert_eq!(scrape(&hub, Some(&viewer)).await.0, 403);
    for allowed in [MASTER, admin.as_str(), scraper.as_str()] {
        let (status, text) = scrape(&hub, Some(allowed)).await;
        assert_eq!(status, 200, "{text}");
        assert!(
            text.contains("# TYPE m3shd_sse_subscribers gauge"),
            "{text}"
        );
    }
}

#[actix_web::test]
async fn open_metrics_need_no_credential() {
    let hub = TestHub::spawn_with(|s| s.metrics_access = MetricsAccess::Open).await;
    let (status, text) = scrape(&hub, None).await;
    assert_eq!(status, 200);
    assert!(text.contains("m3shd_agents{status=\"online\"} 0"), "{text}");
}

#[actix_web::test]
async fn metrics_that_are_off_are_not_there() {
    let hub = TestHub::spawn_with(|s| s.metrics_access = MetricsAccess::Off).await;
    hub.task(json!({ "title": "t", "prompt": "p" })).await;
    for token in [None, Some(MASTER)] {
        let (status, text) = scrape(&hub, token).await;
        assert_eq!(status, 404, "{text}");
    }
    assert!(!hub.hub.core.metrics.enabled(), "nothing is recorded");
}

#[actix_web::test]
async fn an_admin_token_issued_before_metrics_existed_may_scrape() {
    use diesel::RunQueryDsl;
    use diesel_migrations::{FileBasedMigrations, MigrationHarness};

    // A database as the release before this one left it: every migration but the one
    // that grants metrics:read, and an admin token holding every permission of that time.
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(dir.path());
    {
        let mut conn = open_database(&settings.database_url);
        let source = FileBasedMigrations::from_path(migrations_dir()).unwrap();
        for migration in conn.pending_migrations(source).unwrap() {
            if !migration.name().to_string().contains("metrics_read") {
                conn.run_migration(&migration).unwrap();
            }
        }
        let before: Vec<&str> = m3shd::domain::access::ALL_PERMISSIONS
            .iter()
            .copied()
            .filter(|p| *p != "metrics:read")
            .collect();
        let row = |raw: &str, permissions: &[&str]| {
            format!(
                "INSERT INTO tokens (hash, agent_id, name, role, permissions, created_at, created_by) \
                 VALUES ('{}', '{raw}', '{raw}', NULL, '{}', '2026-11-01T00:00:00Z', 'master')",
                m3shd::crypto::tokens::hash_token(raw),
                json!(permissions)
            )
        };
        diesel::sql_query(row("old-admin", &before))
            .execute(&mut conn)
            .unwrap();
        diesel::sql_query(row("old-viewer", &["tasks:read"]))
            .execute(&mut conn)
            .unwrap();
    }
    let hub = TestHub::start(dir, settings, "test-encryption-key", None).await;
    assert_eq!(scrape(&hub, Some("old-admin")).await.0, 200);
    assert_eq!(scrape(&hub, Some("old-viewer")).await.0, 403);
    // Still an admin everywhere else too: it may hand out the admin preset's permissions.
    hub.post(
        "/api/admin/users",
        "old-admin",
        json!({ "username": "second-admin", "password": "a long enough password", "role": "admin" }),
    )
    .await
    .expect(201);
}

#[actix_web::test]
async fn pending_approvals_are_a_gauge() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let id = hub.task(json!({ "title": "t", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    let assigned = hub
        .eventually(SOON, || async {
            hub.task_status(id).await["assigned_to"] == "rex"
        })
        .await;
    assert!(assigned);
    let path = format!("/api/tasks/{id}");
    hub.put(&path, &rex, json!({ "status": "running" }))
        .await
        .expect(200);
    let asked = hub
        .post(
            &format!("{path}/approvals"),
            &rex,
            json!({ "tool": "deploy" }),
        )
        .await
        .expect(201);
    let pending = |text: &str| sample(text, "m3shd_approvals_pending");
    assert_eq!(pending(&metrics(&hub).await), Some(1.0));
    hub.post(
        &format!("/api/approvals/{}", asked["id"]),
        MASTER,
        json!({ "decision": "deny" }),
    )
    .await
    .expect(200);
    assert_eq!(pending(&metrics(&hub).await), Some(0.0));
}
