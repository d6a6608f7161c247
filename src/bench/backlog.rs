//! `m3shd bench --suite backlog`: what a large queue costs. Two hub child processes, one
//! on a fresh database and one on a database holding `tasks` queued tasks pinned to one
//! agent (`backlog-holder`, which runs one at a time), each measured alike:
//!
//! * the restart: from starting the process to listening, then to the first answer of
//!   `GET /api/agents`;
//! * the hub's resident memory once it serves;
//! * heartbeats per second of the agent holding the backlog;
//! * then the whole `hub` suite (creates, heartbeats, claim and unblock latency).

use std::time::Instant;

use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::RunQueryDsl;
use serde_json::json;

use super::hub::{self, BenchPlan};
use super::{aimed_at, client_for, first_answer, generating, HubChild, PROMPT};
use crate::domain::now_iso;

const HOLDER: &str = "backlog-holder";

pub fn run(dir: &std::path::Path, tasks: usize, plan: BenchPlan) -> anyhow::Result<()> {
    let child_settings = [("M3SHDUP_HEARTBEAT_TIMEOUT", "3600")];
    let fresh = dir.join("bench-fresh.db");
    println!("— a fresh database");
    let started = Instant::now();
    measure(
        &HubChild::start(&fresh, &child_settings)?,
        &plan,
        started,
        true,
    )?;

    let backlog = dir.join("bench-backlog.db");
    let generating = Instant::now();
    generate(&backlog, tasks)?;
    println!(
        "— {tasks} queued tasks pinned to {HOLDER} (generated in {:.1} s)",
        generating.elapsed().as_secs_f64()
    );
    let (hub, started) = HubChild::restart(&backlog, &child_settings)?;
    measure(&hub, &plan, started, false)
}

/// The database with the backlog, written with set-based SQL before any hub opens it.
fn generate(database: &std::path::Path, tasks: usize) -> anyhow::Result<()> {
    let (mut conn, vault) = generating(database)?;
    let prompt = vault.seal(PROMPT);
    let now = now_iso();
    conn.batch_execute("BEGIN")?;
    diesel::sql_query(
        "INSERT INTO agents (agent_id, name, capabilities, excluded, max_concurrent, status, role, \
         config, last_heartbeat, registered_at, updated_at) \
         VALUES (?1, ?1, '[\"research\"]', '[]', 1, 'online', 'developer', '{}', ?2, ?2, ?2)",
    )
    .bind::<Text, _>(HOLDER)
    .bind::<Text, _>(&now)
    .execute(&mut conn)?;
    diesel::sql_query(
        "INSERT INTO tasks (title, prompt, required_capability, assign_to, status, created_by, \
         created_at, updated_at) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
         SELECT 'backlog task ' || i, ?2, 'research', ?3, 'queued', 'master', ?4, ?4 FROM n",
    )
    .bind::<BigInt, _>(tasks as i64)
    .bind::<Text, _>(&prompt)
    .bind::<Text, _>(HOLDER)
    .bind::<Text, _>(&now)
    .execute(&mut conn)
    .context("generating the tasks")?;
    conn.batch_execute("COMMIT; ANALYZE;")?;
    Ok(())
}

fn measure(hub: &HubChild, plan: &BenchPlan, started: Instant, fresh: bool) -> anyhow::Result<()> {
    let plan = aimed_at(hub, plan);
    actix_web::rt::System::new().block_on(async {
        let client = client_for(&plan);
        first_answer(&client, &plan, started).await?;
        if fresh {
            let body = json!({ "name": HOLDER, "capabilities": ["research"], "max_concurrent": 1 });
            let path = format!("/api/agents/{HOLDER}/register");
            hub::call(&client, &plan, awc::http::Method::POST, &path, &body).await?;
        }
        hub.print_serving_rss().await?;
        let path = format!("/api/agents/{HOLDER}/heartbeat");
        let rate = hub::saturate(&plan, || async {
            hub::call(&client, &plan, awc::http::Method::POST, &path, &json!({}))
                .await
                .map(drop)
        })
        .await?;
        println!(
            "heartbeats of {HOLDER}: {rate:.0}/s with {} connections over {} s",
            plan.connections, plan.seconds
        );
        hub::run(plan.clone()).await?;
        println!("hub RSS after the hub suite: {} KiB", hub.rss_kib()?);
        anyhow::Ok(())
    })
}
