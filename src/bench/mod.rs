//! `m3shd bench`: measurements. `hub` loads a running hub over HTTP and SSE; `memory` and
//! `dispatch` time one component in-process on generated data (no hub needed); `agents`
//! times seed 004's reads against a hub it starts on a generated database; `inbox` times
//! seed 002's long-poll delivery and weighs its waiting pulls on a hub child process;
//! `exchange` times seed 003's request visibility and claim race on a running hub; `sse`
//! fans events out to thousands of streams; `backlog` weighs a million queued tasks;
//! `scale` compares a fresh hub with one holding a million tasks.

pub mod agents;
pub mod backlog;
pub mod dispatch;
pub mod exchange;
pub mod hub;
pub mod inbox;
pub mod memory;
pub mod scale;
pub mod sse;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::db::DbConnection;
use anyhow::Context;

use crate::crypto::Vault;
use crate::settings::{Secret, Secrets, Settings};
use hub::BenchPlan;

/// The master token of every hub a suite starts itself.
pub const CHILD_TOKEN: &str = "bench-master-token-of-at-least-32-characters";

/// About the size of a real prompt, for generated tasks: a paragraph of instructions.
pub const PROMPT: &str = "Read the three attached incident reports from last week, group them by \
    root cause, and write a short summary for the on-call channel: what failed, how it was \
    noticed, how long it took to recover, and the one change that would have prevented \
    each. Keep it under two hundred words and link every claim to the report it came from.";

/// The writer of a database a hub child will open, for generating its data first
/// (`synchronous = NORMAL`: the data is made, not kept), and the vault of the child's key.
pub fn generating(database: &std::path::Path) -> anyhow::Result<(DbConnection, Vault)> {
    let mut settings = Settings::defaults()?;
    settings.database_url = database.to_string_lossy().into_owned();
    settings.sqlite_synchronous = "NORMAL".into();
    let secrets = Secrets {
        master_token: Secret::new(CHILD_TOKEN),
        encrypt_key: Some(Secret::new("bench-key")),
        legacy_encrypt_key: None,
    };
    Ok((
        crate::db::open_writer(&settings)?,
        Vault::from_secrets(&secrets),
    ))
}

/// The hub suite's load aimed at a hub child.
pub fn aimed_at(hub: &HubChild, plan: &BenchPlan) -> BenchPlan {
    BenchPlan {
        hub: hub.base.clone(),
        token: CHILD_TOKEN.into(),
        ..plan.clone()
    }
}

/// A client with room for every load loop of `plan` (call inside an actix system).
pub fn client_for(plan: &BenchPlan) -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().limit(plan.connections.max(1) * 2))
        .timeout(Duration::from_secs(60))
        .finish()
}

/// `GET path` with the plan's token; an error for anything but a success.
pub async fn get(client: &awc::Client, plan: &BenchPlan, path: &str) -> anyhow::Result<()> {
    let request = hub::request(client, plan, awc::http::Method::GET, path);
    answer(request, path, &serde_json::Value::Null)
        .await
        .map(drop)
}

/// Prints how long the first `GET /api/agents` took and how long after `started` (the
/// hub process's start) it answered: when the hub really serves after a restart.
pub async fn first_answer(
    client: &awc::Client,
    plan: &BenchPlan,
    started: Instant,
) -> anyhow::Result<()> {
    let asked = Instant::now();
    get(client, plan, "/api/agents").await?;
    println!(
        "the first GET /api/agents took {:.1} ms, answered {:.2} s after the process started",
        asked.elapsed().as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A hub child process (`m3shd serve`) on its own database, killed when dropped, so that
/// its memory is read apart from the load generator's.
pub struct HubChild {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl HubChild {
    /// Starts the hub on `database` with `settings` (`M3SHDUP_…` variables) and returns
    /// once it listens: the line it prints then names the port it got.
    pub fn start(database: &std::path::Path, settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .arg("--database-url")
            .arg(database)
            .env("M3SHDUP_TOKEN", CHILD_TOKEN)
            .env("M3SHDUP_ENCRYPT_KEY", "bench-key")
            .env("M3SHDUP_LOG_FILTER", "warn")
            .envs(settings.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the hub")?;
        let stdout = child.stdout.take().context("the hub's output")?;
        // The rest of its output is read to the end, so its later lines never meet a
        // closed pipe.
        let (listening, base) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(url) = line.strip_prefix("m3shd listening on ") {
                    let _ = listening.send(url.trim().to_string());
                }
            }
        });
        // Killed on the way out if it never listens.
        let mut hub = Self {
            child,
            base: String::new(),
        };
        hub.base = base
            .recv()
            .map_err(|_| anyhow::anyhow!("the hub stopped before it listened"))?;
        Ok(hub)
    }

    /// Starts the hub on a generated database and says how soon it listened; answers when
    /// the process started.
    pub fn restart(
        database: &std::path::Path,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<(Self, Instant)> {
        let started = Instant::now();
        let hub = Self::start(database, settings)?;
        println!(
            "listening {:.2} s after the process started",
            started.elapsed().as_secs_f64()
        );
        Ok((hub, started))
    }

    /// Prints the hub's resident memory a second after it began serving.
    pub async fn print_serving_rss(&self) -> anyhow::Result<()> {
        actix_web::rt::time::sleep(Duration::from_secs(1)).await;
        println!("hub RSS once serving: {} KiB", self.rss_kib()?);
        Ok(())
    }

    /// CPU time the hub process has used, in seconds.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds(&self.child.id().to_string())
    }

    /// Resident memory of the hub process, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/<hub>/status")
    }
}

/// CPU time (user and system) process `pid` has used, in seconds.
pub fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) end with ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("an unreadable /proc/<pid>/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks = |n: usize| -> anyhow::Result<f64> {
        Ok(fields.get(n).context("a short /proc/<pid>/stat")?.parse()?)
    };
    // utime and stime are the 14th and 15th fields, the 12th and 13th after the name.
    // SAFETY: sysconf only reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks(11)? + ticks(12)?) / per_second)
}

impl Drop for HubChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `request` with `body` as JSON and answers the JSON reply, or an error naming
/// `path` and the status for anything but a success.
pub async fn answer(
    request: awc::ClientRequest,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let mut response = request
        .insert_header(("Content-Type", "application/json"))
        .send_body(body.to_string())
        .await
        .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let bytes = response
        .body()
        .await
        .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "{path} answered {}: {}",
        response.status(),
        String::from_utf8_lossy(&bytes)
    );
    Ok(serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

/// The `p`th percentile of sorted samples (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Prints p50/p99 of `samples` (microseconds) under `label`.
pub fn report(label: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    let p50 = percentile(&samples, 50.0);
    let p99 = percentile(&samples, 99.0);
    println!(
        "{label}: p50 {p50:.1} µs, p99 {p99:.1} µs over {} samples",
        samples.len()
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles_pick_the_ranked_sample() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(super::percentile(&samples, 50.0), 51.0);
        assert_eq!(super::percentile(&samples, 99.0), 99.0);
        assert!(super::percentile(&[], 50.0).is_nan());
    }
}
