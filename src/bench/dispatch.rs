//! Dispatch decision time: how long the Dispatcher takes to choose an agent for one task
//! among 10,000 online agents with reputation history (the pure choice, no I/O).

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::actors::dispatcher::roster::Roster;
use crate::domain::agent::Profile;
use crate::domain::reputation::Outcome;

const CAPABILITIES: &[&str] = &[
    "research",
    "web_search",
    "code_write",
    "file_ops",
    "git",
    "docker",
    "deploy",
];

pub fn run(agents: usize, decisions: usize) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(11);
    let mut roster = Roster::new(1.0);
    for i in 0..agents {
        let id = format!("agent-{i}");
        let capabilities: Vec<String> = CAPABILITIES
            .iter()
            .filter(|_| rng.gen_bool(0.5))
            .map(|c| c.to_string())
            .collect();
        let profile = Profile {
            capabilities: capabilities.clone(),
            excluded: vec![],
            max_concurrent: 4,
        };
        roster.upsert(&id, profile, true);
        for capability in &capabilities {
            for _ in 0..rng.gen_range(0..20) {
                let outcome = if rng.gen_bool(0.8) {
                    Outcome::Done
                } else {
                    Outcome::Failed
                };
                roster.record(&id, capability, outcome);
            }
        }
        let load = rng.gen_range(0..5);
        roster.update(&id, |slot| slot.pending = load);
    }
    let mut samples = Vec::with_capacity(decisions);
    let mut chosen = 0usize;
    for _ in 0..decisions {
        let capability = CAPABILITIES[rng.gen_range(0..CAPABILITIES.len())];
        let started = Instant::now();
        chosen += usize::from(roster.choose(capability, None, None).is_some());
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    super::report(
        &format!("dispatch decision ({agents} online agents, {chosen} of {decisions} found one)"),
        samples,
    );
    Ok(())
}
