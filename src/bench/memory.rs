//! Memory search latency: 100k entries across 1,000 agents in a fresh SQLite file,
//! searched through the blind index exactly as `GET /api/agents/{id}/memory?q=` does.

use std::time::Instant;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::crypto::blind::BlindIndex;
use crate::crypto::Vault;
use crate::db::{self, memory};
use crate::settings::{Secret, Secrets, Settings};

/// Runs the benchmark in `dir` (a new database is made there).
pub fn run(
    dir: &std::path::Path,
    entries: usize,
    agents: usize,
    searches: usize,
) -> anyhow::Result<()> {
    let mut settings = Settings::defaults()?;
    settings.database_url = dir.join("bench-memory.db").to_string_lossy().into_owned();
    settings.sqlite_synchronous = "NORMAL".into();
    let secrets = Secrets {
        master_token: Secret::new("bench"),
        encrypt_key: Some(Secret::new("bench-key")),
        legacy_encrypt_key: None,
    };
    let vault = Vault::from_secrets(&secrets);
    let blind = BlindIndex::from_secrets(&secrets);
    let vocabulary: Vec<String> = (0..5000)
        .map(|i| format!("w{i:04x}{}", ["alpha", "beta", "gamma", "delta"][i % 4]))
        .collect();
    let mut rng = StdRng::seed_from_u64(7);
    let mut writer = db::open_writer(&settings)?;
    // One word each agent is known to hold, so half the searches find something.
    let mut known: Vec<String> = vec![String::new(); agents];
    let started = Instant::now();
    for chunk in (0..entries).collect::<Vec<_>>().chunks(5000) {
        writer.write_transaction::<_, anyhow::Error, _>(|conn| {
            for &i in chunk {
                let agent = format!("agent-{}", i % agents);
                let words: Vec<&str> = (0..rng.gen_range(8..20))
                    .map(|_| vocabulary[rng.gen_range(0..vocabulary.len())].as_str())
                    .collect();
                known[i % agents] = words[0].to_string();
                let key = format!("note-{i}");
                let value = words.join(" ");
                let entry = memory::Entry {
                    key: &key,
                    value: &value,
                    structured: false,
                    source_task_id: None,
                };
                memory::upsert(conn, &vault, &blind, &agent, entry)?;
            }
            Ok(())
        })?;
    }
    println!(
        "memory: stored {entries} entries for {agents} agents in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut reader = db::read_pool(&settings)?.get().context("read connection")?;
    let mut samples = Vec::with_capacity(searches);
    let mut hits = 0usize;
    for _ in 0..searches {
        let agent_index = rng.gen_range(0..agents);
        let agent = format!("agent-{agent_index}");
        let q = if rng.gen_bool(0.5) {
            known[agent_index].clone()
        } else {
            (0..rng.gen_range(1..3))
                .map(|_| vocabulary[rng.gen_range(0..vocabulary.len())].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let started = Instant::now();
        let expression = blind.query(&agent, &q, true).context("query has words")?;
        hits += memory::search(&mut reader, &expression, 50, 0)?.len();
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    super::report(
        &format!("memory search ({entries} entries, {agents} agents, {hits} hits)"),
        samples,
    );
    Ok(())
}
