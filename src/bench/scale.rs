//! `m3shd bench --suite scale`: whether cost stays flat as the database grows. Two hub
//! child processes, one on a fresh database and one on a database filled with `tasks`
//! tasks (nine in ten finished, with sealed prompts and outputs, cost and confidence,
//! created over the last 30 days; the rest queued) and `agents` agents, each measured
//! alike:
//!
//! * the restart: process start → listening → first `GET /api/agents` answered;
//! * p50/p99 of the reads people and dashboards make most, one request after another:
//!   task pages by status and by agent, one task, and the five analytics endpoints;
//! * the whole `hub` suite (durable creates, heartbeats, claim and unblock latency);
//! * the hub's resident memory and the database's bytes per task.

use std::time::Instant;

use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::RunQueryDsl;
use serde_json::json;

use super::hub::{self, BenchPlan};
use super::{aimed_at, client_for, first_answer, generating, get, percentile, HubChild, PROMPT};
use crate::db;

pub struct ScalePlan {
    pub tasks: usize,
    pub agents: usize,
    /// Timed requests of each kind.
    pub samples: usize,
    pub hub: BenchPlan,
}

const OUTPUT: &str = "Two of the three incidents share a root cause: the nightly export job \
    held a write lock on the orders table for 40 minutes while the API retried writes \
    without backoff, which filled the connection pool (reports 1 and 3; noticed by the p99 \
    latency alert after 6 and 11 minutes; recovered in 52 and 38 minutes). Moving the \
    export to a read replica would have prevented both. The third (report 2) was an expired \
    TLS certificate on the internal metrics endpoint, noticed by a customer after 3 hours; \
    recovered in 20 minutes. Certificate expiry monitoring would have prevented it.";

pub fn run(dir: &std::path::Path, plan: ScalePlan) -> anyhow::Result<()> {
    anyhow::ensure!(
        plan.agents >= 1 && plan.samples >= 1,
        "--agents and --samples must be positive"
    );
    let child_settings = [("M3SHDUP_HEARTBEAT_TIMEOUT", "3600")];
    println!("— a fresh database");
    let fresh = dir.join("bench-fresh.db");
    let started = Instant::now();
    measure(
        &HubChild::start(&fresh, &child_settings)?,
        &fresh,
        &plan,
        started,
        0,
    )?;

    let full = dir.join("bench-scale.db");
    let generating = Instant::now();
    generate(&full, &plan)?;
    println!(
        "— {} tasks ({} finished) and {} agents (generated in {:.1} s)",
        plan.tasks,
        plan.tasks - plan.tasks / 10,
        plan.agents,
        generating.elapsed().as_secs_f64()
    );
    let (hub, started) = HubChild::restart(&full, &child_settings)?;
    measure(&hub, &full, &plan, started, plan.tasks)
}

/// The filled database, written with set-based SQL before any hub opens it.
fn generate(database: &std::path::Path, plan: &ScalePlan) -> anyhow::Result<()> {
    let (mut conn, vault) = generating(database)?;
    let (prompt, output) = (vault.seal(PROMPT), vault.seal(OUTPUT));
    let now = chrono::Utc::now().timestamp();
    conn.batch_execute("BEGIN")?;
    diesel::sql_query(
        "INSERT INTO agents (agent_id, name, capabilities, excluded, max_concurrent, status, role, \
         config, last_heartbeat, registered_at, updated_at) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1), \
              at(t) AS (SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ?2, 'unixepoch')) \
         SELECT 'agent-' || i, 'agent-' || i, '[\"research\"]', '[]', 4, 'offline', 'developer', \
                '{\"model\": \"claude-sonnet-4\"}', t, t, t FROM n, at",
    )
    .bind::<BigInt, _>(plan.agents as i64)
    .bind::<BigInt, _>(now)
    .execute(&mut conn)?;
    // Task i was created (N - i) / N of 30 days ago; one in ten, spread through, is queued.
    diesel::sql_query(
        "INSERT INTO tasks (title, prompt, output, required_capability, assigned_to, status, \
         created_by, created_at, updated_at, assigned_at, started_at, completed_at, cost_usd, \
         tokens_in, tokens_out, confidence, model) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1), \
              at(i, t, live) AS (SELECT i, strftime('%Y-%m-%dT%H:%M:%fZ', \
                  ?2 - (?1 - i) * 2592000 / ?1, 'unixepoch'), i % 10 = 0 FROM n) \
         SELECT 'generated task ' || i, ?3, CASE WHEN live THEN NULL ELSE ?4 END, 'research', \
                CASE WHEN live THEN NULL ELSE 'agent-' || (1 + i % ?5) END, \
                CASE WHEN live THEN 'queued' WHEN i % 20 = 1 THEN 'failed' ELSE 'done' END, \
                'master', t, t, \
                CASE WHEN live THEN NULL ELSE t END, CASE WHEN live THEN NULL ELSE t END, \
                CASE WHEN live THEN NULL ELSE t END, \
                CASE WHEN live THEN NULL ELSE 0.002 + (i % 50) / 1000.0 END, \
                CASE WHEN live THEN NULL ELSE 1200 + i % 800 END, \
                CASE WHEN live THEN NULL ELSE 300 + i % 400 END, \
                CASE WHEN live THEN NULL ELSE (i % 10) / 10.0 + 0.05 END, 'sonnet' \
         FROM at",
    )
    .bind::<BigInt, _>(plan.tasks as i64)
    .bind::<BigInt, _>(now)
    .bind::<Text, _>(&prompt)
    .bind::<Text, _>(&output)
    .bind::<BigInt, _>(plan.agents as i64)
    .execute(&mut conn)
    .context("generating the tasks")?;
    conn.batch_execute("COMMIT; ANALYZE;")?;
    Ok(())
}

fn measure(
    hub: &HubChild,
    database: &std::path::Path,
    plan: &ScalePlan,
    started: Instant,
    tasks: usize,
) -> anyhow::Result<()> {
    let bench = aimed_at(hub, &plan.hub);
    actix_web::rt::System::new().block_on(async {
        let client = client_for(&bench);
        first_answer(&client, &bench, started).await?;
        hub.print_serving_rss().await?;
        // A task in the middle of the generated ones; on the fresh hub, one made now.
        let some_task = match tasks {
            0 => {
                let body = json!({ "title": "one task", "prompt": PROMPT });
                let made = hub::call(
                    &client,
                    &bench,
                    awc::http::Method::POST,
                    "/api/tasks",
                    &body,
                )
                .await?;
                made["id"].as_i64().context("the created task's id")?
            }
            _ => (tasks / 2) as i64,
        };
        let reads = [
            "/api/tasks?status=done&limit=50".to_string(),
            "/api/tasks?status=done&limit=50&offset=1000".to_string(),
            "/api/tasks?status=queued&limit=50".to_string(),
            "/api/tasks?assigned_to=agent-7&limit=50".to_string(),
            format!("/api/tasks/{some_task}"),
            "/api/admin/analytics/tasks".to_string(),
            "/api/admin/analytics/costs".to_string(),
            "/api/admin/analytics/agents".to_string(),
            "/api/admin/analytics/metacognition".to_string(),
            "/api/admin/analytics/summary".to_string(),
        ];
        for path in &reads {
            timed(&client, &bench, path, plan.samples).await?;
        }
        hub::run(bench.clone()).await?;
        println!("hub RSS after the hub suite: {} KiB", hub.rss_kib()?);
        anyhow::Ok(())
    })?;
    if tasks > 0 {
        let bytes: u64 = db::files::database_files(&database.to_string_lossy())
            .iter()
            .filter_map(|file| std::fs::metadata(file).ok())
            .map(|meta| meta.len())
            .sum();
        println!(
            "database: {bytes} bytes with the hub suite's tasks, {:.0} bytes per generated task",
            bytes as f64 / tasks as f64
        );
    }
    Ok(())
}

/// `samples` requests one after another (a tenth more first, untimed); prints p50/p99.
async fn timed(
    client: &awc::Client,
    bench: &BenchPlan,
    path: &str,
    samples: usize,
) -> anyhow::Result<()> {
    let mut took = Vec::with_capacity(samples);
    for round in 0..samples + samples / 10 {
        let start = Instant::now();
        get(client, bench, path).await?;
        if round >= samples / 10 {
            took.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    took.sort_by(f64::total_cmp);
    println!(
        "GET {path}: p50 {:.2} ms, p99 {:.2} ms",
        percentile(&took, 50.0),
        percentile(&took, 99.0)
    );
    Ok(())
}
