//! Budgets (daily cost cap, per-agent token cap) and the analytics endpoints.

use std::collections::BTreeMap;

use awc::http::Method;
use serde_json::json;

use crate::support::{TestHub, MASTER, SOON};

/// Runs one task on `agent` to `status`, reporting usage along the way.
async fn run(
    hub: &TestHub,
    agent: &str,
    token: &str,
    status: &str,
    usage: serde_json::Value,
) -> i64 {
    let id = hub
        .task(json!({ "title": "t", "prompt": "p", "assign_to": agent }))
        .await["id"]
        .as_i64()
        .unwrap();
    assert!(
        hub.eventually(SOON, || async {
            hub.task_status(id).await["assigned_to"] == agent
        })
        .await
    );
    let mut report = usage;
    report["status"] = json!(status);
    hub.put(&format!("/api/tasks/{id}"), token, report)
        .await
        .expect(200);
    id
}

#[actix_web::test]
async fn once_the_days_cost_reaches_the_cap_new_work_is_refused_with_429() {
    let hub = TestHub::spawn_with(|s| s.daily_cost_cap = 1.0).await;
    let rex = hub.agent("rex", &["research"], 2).await;
    let id = run(&hub, "rex", &rex, "running", json!({ "cost_usd": 0.6 })).await;
    // Reports carry the task's running total: 0.6 then 1.2 is 1.2 spent, not 1.8.
    hub.put(
        &format!("/api/tasks/{id}"),
        &rex,
        json!({ "status": "done", "cost_usd": 1.2, "model": "sonnet" }),
    )
    .await
    .expect(200);
    let summary = hub
        .get("/api/admin/analytics/summary", MASTER)
        .await
        .expect(200);
    assert!(
        (summary["cost_today_usd"].as_f64().unwrap() - 1.2).abs() < 1e-9,
        "{summary}"
    );
    assert_eq!(summary["cost_cap_reached"], true);

    let commander = hub.token("cmd", "commander").await;
    let refused = hub
        .post(
            "/api/tasks",
            &commander,
            json!({ "title": "t", "prompt": "p" }),
        )
        .await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body["error"], "daily cost cap reached");
    let pipeline = json!({ "tasks": [{ "title": "a", "prompt": "p" }] });
    hub.post("/api/pipelines", &commander, pipeline.clone())
        .await
        .expect(429);
    let template = hub
        .post(
            "/api/templates",
            &commander,
            json!({ "title": "t", "prompt": "p" }),
        )
        .await
        .expect(201);
    let dispatch = format!("/api/templates/{}/dispatch", template["id"]);
    hub.post(&dispatch, &commander, json!({})).await.expect(429);
    // The cap never locks out the operator: the master token still creates work.
    hub.post("/api/pipelines", MASTER, pipeline)
        .await
        .expect(201);
    hub.post(&dispatch, MASTER, json!({})).await.expect(201);
    // Workers can still report on what they hold.
    assert_eq!(hub.task_status(id).await["status"], "done");
}

#[actix_web::test]
async fn an_agent_past_its_daily_token_cap_gets_no_more_tasks() {
    let hub = TestHub::spawn_with(|s| s.agent_daily_token_cap = 100).await;
    let rex = hub.agent("rex", &["research"], 4).await;
    run(
        &hub,
        "rex",
        &rex,
        "done",
        json!({ "tokens_in": 80, "tokens_out": 30 }),
    )
    .await;
    let waiting = hub.task(json!({ "title": "next", "prompt": "p" })).await;
    assert_eq!(
        waiting["status"], "queued",
        "rex has room but has used its tokens for today"
    );
    let _ada = hub.agent("ada", &["research"], 1).await;
    let id = waiting["id"].as_i64().unwrap();
    assert!(
        hub.eventually(SOON, || async {
            hub.task_status(id).await["assigned_to"] == "ada"
        })
        .await
    );
}

#[actix_web::test]
async fn analytics_report_volume_costs_agents_and_confidence() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let ada = hub.agent("ada", &["research"], 1).await;
    run(&hub, "rex", &rex, "done", json!({ "cost_usd": 0.25, "tokens_in": 10, "tokens_out": 5, "model": "sonnet", "confidence": 0.92 })).await;
    run(
        &hub,
        "rex",
        &rex,
        "failed",
        json!({ "cost_usd": 0.05, "model": "haiku", "confidence": 0.31 }),
    )
    .await;
    run(
        &hub,
        "ada",
        &ada,
        "done",
        json!({ "cost_usd": 0.10, "model": "sonnet", "confidence": 0.95 }),
    )
    .await;
    hub.task(json!({ "title": "waiting", "prompt": "p", "required_capability": "nobody" }))
        .await;

    let tasks = hub
        .get("/api/admin/analytics/tasks?days=7", MASTER)
        .await
        .expect(200);
    let today = &tasks["days"][0];
    assert_eq!(
        (
            today["created"].as_i64(),
            today["done"].as_i64(),
            today["failed"].as_i64()
        ),
        (Some(4), Some(2), Some(1))
    );
    assert_eq!(today["completion_rate"], 0.5);

    let costs = hub
        .get("/api/admin/analytics/costs", MASTER)
        .await
        .expect(200);
    assert!(
        (costs["total_usd"].as_f64().unwrap() - 0.40).abs() < 1e-9,
        "{costs}"
    );
    let sonnet = costs["costs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == "sonnet")
        .unwrap();
    assert!((sonnet["cost_usd"].as_f64().unwrap() - 0.35).abs() < 1e-9);
    assert_eq!(sonnet["tokens_in"], 10);

    let agents = hub
        .get("/api/admin/analytics/agents", MASTER)
        .await
        .expect(200);
    let rex_row = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == "rex")
        .unwrap();
    assert_eq!(
        (rex_row["done"].as_i64(), rex_row["failed"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(rex_row["success_rate"], 0.5);

    let meta = hub
        .get("/api/admin/analytics/metacognition", MASTER)
        .await
        .expect(200);
    assert_eq!(meta["count"], 3);
    assert_eq!(meta["distribution"][9]["count"], 2);
    assert_eq!(meta["distribution"][3]["count"], 1);
    assert!((meta["mean_when_done"].as_f64().unwrap() - 0.935).abs() < 1e-9);

    let summary = hub
        .get("/api/admin/analytics/summary", MASTER)
        .await
        .expect(200);
    assert_eq!(summary["tasks"]["total"], 4);
    assert_eq!(summary["tasks"]["by_status"]["queued"], 1);
    assert_eq!(summary["agents"]["total"], 2);

    let admin = hub.token("boss", "admin").await;
    hub.get("/api/admin/analytics/summary", &admin)
        .await
        .expect(200);
    hub.call(Method::GET, "/api/admin/analytics/tasks", &rex, None)
        .await
        .expect(403);
    hub.get("/api/admin/analytics/tasks?days=0", MASTER)
        .await
        .expect(400);
}

#[actix_web::test]
async fn demo_endpoints_exist_only_in_demo_mode_and_touch_nothing() {
    let off = TestHub::spawn().await;
    let reply = off.raw(Method::GET, "/api/demo/agents", None, None).await;
    assert_eq!(reply.status, 404);
    let on = TestHub::spawn_with(|s| s.demo_enabled = true).await;
    let agents = on
        .raw(Method::GET, "/api/demo/agents", None, None)
        .await
        .expect(200);
    assert_eq!(agents["total"], 4);
    let tasks = on
        .raw(Method::GET, "/api/demo/tasks", None, None)
        .await
        .expect(200);
    assert!(tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["demo"] == true));
    let health = on
        .raw(Method::GET, "/api/demo/health", None, None)
        .await
        .expect(200);
    assert_eq!(health["agents"]["crucible"], "busy");
    assert_eq!(
        on.get("/api/tasks", MASTER).await.expect(200)["count"],
        0,
        "no real task was made"
    );
    let demo_write = on
        .raw(Method::POST, "/api/demo/tasks", None, Some(b"{}".to_vec()))
        .await;
    assert_eq!(demo_write.status, 405, "read-only: GET is the only method");
}

/// The task table as a scan reads it: (created_at, status, assigned_to, cost_usd,
/// confidence) of every task.
type ScannedTask = (String, String, Option<String>, Option<f64>, Option<f64>);

fn scan(hub: &TestHub) -> Vec<ScannedTask> {
    use diesel::prelude::*;
    use m3shd::db::schema::tasks;
    tasks::table
        .select((
            tasks::created_at,
            tasks::status,
            tasks::assigned_to,
            tasks::cost_usd,
            tasks::confidence,
        ))
        .load(&mut hub.open_db())
        .expect("the scan runs")
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let all: Vec<f64> = values.collect();
    all.iter().sum::<f64>() / all.len() as f64
}

// The analytics read counts kept by triggers; after reassignments, reports with cost and
// confidence, failures, hand-backs, cancels and deletes they still say what a scan of the
// task table says.
#[actix_web::test]
async fn analytics_counts_agree_with_a_scan_of_the_tasks_after_every_kind_of_change() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 3).await;
    let ada = hub.agent("ada", &["research"], 3).await;
    run(
        &hub,
        "rex",
        &rex,
        "done",
        json!({ "cost_usd": 0.25, "confidence": 0.92 }),
    )
    .await;
    run(
        &hub,
        "ada",
        &ada,
        "failed",
        json!({ "cost_usd": 0.05, "confidence": 0.31 }),
    )
    .await;
    let changed = run(
        &hub,
        "rex",
        &rex,
        "running",
        json!({ "cost_usd": 0.1, "confidence": 0.5 }),
    )
    .await;
    // The same task reports a new cost and confidence, then finishes.
    hub.put(
        &format!("/api/tasks/{changed}"),
        &rex,
        json!({ "status": "done", "cost_usd": 0.4, "confidence": 0.99 }),
    )
    .await
    .expect(200);
    // Handed back by rex: pinned to rex, it waits again, held by nobody.
    let moved = run(&hub, "rex", &rex, "running", json!({ "cost_usd": 0.2 })).await;
    hub.put(
        &format!("/api/tasks/{moved}"),
        &rex,
        json!({ "status": "queued" }),
    )
    .await
    .expect(200);
    let queued = hub
        .task(json!({ "title": "t", "prompt": "p", "required_capability": "none" }))
        .await["id"]
        .as_i64()
        .unwrap();
    hub.put(
        &format!("/api/tasks/{queued}"),
        MASTER,
        json!({ "status": "cancelled" }),
    )
    .await
    .expect(200);
    hub.task(json!({ "title": "t", "prompt": "p", "required_capability": "none" }))
        .await;
    // One more, then deleted straight from the table (as retention does).
    let old = run(
        &hub,
        "ada",
        &ada,
        "done",
        json!({ "cost_usd": 1.0, "confidence": 0.7 }),
    )
    .await;
    hub.execute_sql(&format!("DELETE FROM inbox_items WHERE task_id = {old}"));
    hub.execute_sql(&format!("DELETE FROM tasks WHERE id = {old}"));

    let days = hub
        .get("/api/admin/analytics/tasks", MASTER)
        .await
        .expect(200);
    let table = scan(&hub);
    let mut by_day: BTreeMap<&str, [i64; 3]> = BTreeMap::new();
    for (created_at, status, ..) in &table {
        let day = by_day.entry(&created_at[..10]).or_default();
        day[0] += 1;
        day[1] += i64::from(status == "done");
        day[2] += i64::from(status == "failed");
    }
    let scanned: Vec<serde_json::Value> = by_day
        .iter()
        .map(|(day, [n, d, f])| json!({ "day": day, "created": n, "done": d, "failed": f }))
        .collect();
    let served: Vec<serde_json::Value> = days["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| json!({ "day": d["day"], "created": d["created"], "done": d["done"], "failed": d["failed"] }))
        .collect();
    assert_eq!(served, scanned);

    let agents = hub
        .get("/api/admin/analytics/agents", MASTER)
        .await
        .expect(200);
    let mut by_agent: BTreeMap<&str, (i64, i64, i64, f64)> = BTreeMap::new();
    for (_, status, assigned_to, cost, _) in &table {
        let Some(agent) = assigned_to else { continue };
        let counts = by_agent.entry(agent).or_default();
        counts.0 += 1;
        counts.1 += i64::from(status == "done");
        counts.2 += i64::from(status == "failed");
        counts.3 += cost.unwrap_or(0.0);
    }
    let scanned: Vec<serde_json::Value> = by_agent
        .iter()
        .map(|(a, (n, d, f, c))| json!({ "agent_id": a, "tasks": n, "done": d, "failed": f, "cost": c }))
        .collect();
    let served = agents["agents"].as_array().unwrap();
    assert_eq!(served.len(), scanned.len(), "{agents} vs {scanned:?}");
    for (served, scanned) in served.iter().zip(&scanned) {
        for key in ["agent_id", "tasks", "done", "failed"] {
            assert_eq!(served[key], scanned[key], "{key}: {served} vs {scanned}");
        }
        let cost = served["cost_usd"].as_f64().unwrap() - scanned["cost"].as_f64().unwrap();
        assert!(cost.abs() < 1e-9, "{served} vs {scanned}");
    }

    let meta = hub
        .get("/api/admin/analytics/metacognition", MASTER)
        .await
        .expect(200);
    let confident: Vec<(&str, f64)> = table
        .iter()
        .filter_map(|(_, status, _, _, confidence)| Some((status.as_str(), (*confidence)?)))
        .collect();
    let scanned = json!({
        "count": confident.len(),
        "mean": mean(confident.iter().map(|(_, c)| *c)),
        "done": mean(confident.iter().filter(|(s, _)| *s == "done").map(|(_, c)| *c)),
        "nines": confident.iter().filter(|(_, c)| *c >= 0.9).count(),
    });
    assert_eq!(meta["count"], scanned["count"]);
    assert_eq!(meta["distribution"][9]["count"], scanned["nines"]);
    for (served, key) in [("mean", "mean"), ("mean_when_done", "done")] {
        let gap = meta[served].as_f64().unwrap() - scanned[key].as_f64().unwrap();
        assert!(gap.abs() < 1e-9, "{served}: {meta} vs {scanned}");
    }

    let summary = hub
        .get("/api/admin/analytics/summary", MASTER)
        .await
        .expect(200);
    let mut by_status: BTreeMap<&str, i64> = BTreeMap::new();
    for (_, status, ..) in &table {
        *by_status.entry(status).or_default() += 1;
    }
    assert_eq!(summary["tasks"]["by_status"], json!(by_status));
}
