//! `m3shd bench`: measurements. `hub` loads a running hub over HTTP and SSE; `memory` and
//! `dispatch` time one component in-process on generated data (no hub needed); `agents`
//! times seed 004's reads against a hub it starts on a generated database; `inbox` times
//! seed 002's long-poll delivery and weighs its waiting pulls on a hub child process;
//! `exchange` times seed 003's request visibility and claim race on a running hub.

pub mod agents;
pub mod dispatch;
pub mod exchange;
pub mod hub;
pub mod inbox;
pub mod memory;

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
