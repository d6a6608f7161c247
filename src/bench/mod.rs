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

use anyhow::Context;

/// The master token of every hub a suite starts itself.
pub const CHILD_TOKEN: &str = "bench-master-token-of-at-least-32-characters";

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
