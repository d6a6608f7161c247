//! Seed 004's reads at scale: a fresh database with `agents` agents and `tasks` tasks (one
//! agent holding `held` of them, assigned; the rest done, spread over the others), then a
//! hub started on it in this process, and `GET /api/agents?limit=200` (also filtered by
//! status) and `GET /api/agents/{id}/heartbeat` timed one request after another over
//! loopback.

use std::time::{Duration, Instant};

use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::RunQueryDsl;

use super::report;
use crate::crypto::Vault;
use crate::db;
use crate::domain::now_iso;
use crate::settings::{Secret, Secrets, Settings};
use crate::startup::Application;

const TOKEN: &str = "bench-master";

/// What to generate and how many requests to time.
pub struct AgentsPlan {
    pub agents: usize,
    pub tasks: usize,
    pub held: usize,
    pub samples: usize,
}

pub fn run(dir: &std::path::Path, plan: AgentsPlan) -> anyhow::Result<()> {
    anyhow::ensure!(plan.agents >= 2, "--agents must be at least 2");
    anyhow::ensure!(plan.held <= plan.tasks, "--held cannot exceed --tasks");
    let mut settings = Settings::defaults()?;
    settings.database_url = dir.join("bench-agents.db").to_string_lossy().into_owned();
    settings.sqlite_synchronous = "NORMAL".into();
    settings.bind = "127.0.0.1:0".into();
    settings.alerts_enabled = false;
    // The holder's tasks stay with it for the whole run.
    settings.heartbeat_timeout = 3600;
    let secrets = Secrets {
        master_token: Secret::new(TOKEN),
        encrypt_key: Some(Secret::new("bench-key")),
        legacy_encrypt_key: None,
    };
    let started = Instant::now();
    seed(&settings, &Vault::from_secrets(&secrets), &plan)?;
    println!(
        "generated {} agents and {} tasks ({} held by agent-1) in {:.1} s",
        plan.agents,
        plan.tasks,
        plan.held,
        started.elapsed().as_secs_f64()
    );
    actix_web::rt::System::new().block_on(measure(settings, secrets, plan.samples))
}

/// Writes the agents and tasks with set-based SQL (the task triggers keep `taskStats`).
fn seed(settings: &Settings, vault: &Vault, plan: &AgentsPlan) -> anyhow::Result<()> {
    let mut conn = db::open_writer(settings)?;
    let now = now_iso();
    let prompt = vault.seal("a generated task");
    conn.batch_execute("BEGIN")?;
    diesel::sql_query(
        "INSERT INTO agents (agent_id, name, capabilities, excluded, max_concurrent, status, role, \
         config, last_heartbeat, registered_at, updated_at) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
         SELECT 'agent-' || i, 'agent-' || i, '[\"research\"]', '[]', \
                CASE WHEN i = 1 THEN 1000000 ELSE 4 END, \
                CASE WHEN i = 1 THEN 'online' ELSE 'offline' END, 'developer', \
                '{\"model\": \"claude-sonnet-4\", \"tools\": [\"bash\", \"read\"]}', ?, ?, ? FROM n",
    )
    .bind::<BigInt, _>(plan.agents as i64)
    .bind::<Text, _>(&now)
    .bind::<Text, _>(&now)
    .bind::<Text, _>(&now)
    .execute(&mut conn)?;
    diesel::sql_query(
        "INSERT INTO tasks (title, prompt, required_capability, assigned_to, status, created_by, \
         created_at, updated_at, assigned_at, completed_at) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
         SELECT 'task ' || i, ?, 'research', \
                CASE WHEN i <= ?3 THEN 'agent-1' ELSE 'agent-' || (2 + i % (?4 - 1)) END, \
                CASE WHEN i <= ?3 THEN 'assigned' ELSE 'done' END, 'master', ?5, ?5, ?5, \
                CASE WHEN i <= ?3 THEN NULL ELSE ?5 END FROM n",
    )
    .bind::<BigInt, _>(plan.tasks as i64)
    .bind::<Text, _>(&prompt)
    .bind::<BigInt, _>(plan.held as i64)
    .bind::<BigInt, _>(plan.agents as i64)
    .bind::<Text, _>(&now)
    .execute(&mut conn)
    .context("generating the tasks")?;
    conn.batch_execute("COMMIT; ANALYZE;")?;
    Ok(())
}

async fn measure(settings: Settings, secrets: Secrets, samples: usize) -> anyhow::Result<()> {
    let booted = Instant::now();
    let app = Application::build(settings, secrets).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    println!(
        "the hub restored its state in {:.1} s",
        booted.elapsed().as_secs_f64()
    );
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    for (label, path) in [
        ("GET /api/agents?limit=200", "/api/agents?limit=200"),
        // A filter needs every agent's status, so every agent is asked.
        (
            "GET /api/agents?status=offline&limit=200",
            "/api/agents?status=offline&limit=200",
        ),
        (
            "GET /api/agents/agent-1/heartbeat",
            "/api/agents/agent-1/heartbeat",
        ),
    ] {
        let url = format!("{base}{path}");
        let mut timings = Vec::with_capacity(samples);
        // A tenth as many again first, untimed: connections and caches warm up.
        for round in 0..samples + samples / 10 {
            let start = Instant::now();
            let mut response = client
                .get(&url)
                .insert_header(("Authorization", format!("Bearer {TOKEN}")))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
            let body = response
                .body()
                .limit(64 * 1024 * 1024)
                .await
                .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
            anyhow::ensure!(
                response.status().is_success(),
                "{path} answered {}",
                response.status()
            );
            if round == 0 {
                println!("{label}: {} bytes", body.len());
            }
            if round >= samples / 10 {
                timings.push(start.elapsed().as_secs_f64() * 1e6);
            }
        }
        report(label, timings);
    }
    Ok(())
}
