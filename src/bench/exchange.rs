//! `m3shd bench --suite exchange`: the MESS exchange of a running hub (seed 003). How soon
//! a new request is visible to an executor polling the pending list (create sent → first
//! poll that lists it, p50/p99), and claims per second with `connections` executors racing
//! for the same pending requests (each request won exactly once).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use awc::http::Method;
use awc::Client;
use futures_util::future::join_all;
use serde_json::{json, Value};

use super::hub::BenchPlan;
use super::{answer, percentile};

/// Requests timed for visibility, and requests raced for.
const VISIBLE: usize = 300;
const RACED: usize = 2000;

pub async fn run(plan: BenchPlan) -> anyhow::Result<()> {
    let client = Client::builder()
        .connector(awc::Connector::new().limit(plan.connections.max(1) * 2))
        .timeout(Duration::from_secs(30))
        .finish();
    let exchange = format!("bench-{}", crate::crypto::tokens::random_hex(4));
    let call = |method: Method, path: String, key: String, body: Value| {
        let request = client
            .request(method, format!("{}{path}", plan.hub))
            .insert_header(("Authorization", format!("Bearer {key}")));
        async move { answer(request, &path, &body).await }
    };
    let body = json!({ "exchange_id": exchange, "open_registration": true });
    call(
        Method::POST,
        "/api/admin/exchanges".into(),
        plan.token.clone(),
        body,
    )
    .await?;
    let base = format!("/api/v1/exchanges/{exchange}");
    let mut keys = Vec::new();
    for n in 0..=plan.connections {
        let made = call(
            Method::POST,
            format!("{base}/register"),
            String::new(),
            json!({ "executor_id": format!("e{n}") }),
        )
        .await?;
        keys.push(made["api_key"].as_str().unwrap_or_default().to_string());
    }
    let asker = keys.pop().unwrap_or_default();

    // Visibility: one executor polls the pending list without pause while requests are made.
    let mut samples = Vec::with_capacity(VISIBLE);
    for n in 0..VISIBLE {
        let sent = Instant::now();
        let made = call(
            Method::POST,
            format!("{base}/requests"),
            asker.clone(),
            json!({ "intent": format!("look {n}") }),
        )
        .await?;
        let wanted = made["ref"].as_str().unwrap_or_default().to_string();
        loop {
            let list = call(
                Method::GET,
                format!("{base}/requests?status=pending&limit=5"),
                keys[0].clone(),
                Value::Null,
            )
            .await?;
            let listed = list["threads"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t["ref"] == wanted.as_str());
            if listed {
                samples.push(sent.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
        // Out of the way of the race below.
        call(
            Method::PATCH,
            format!("{base}/requests/{wanted}"),
            asker.clone(),
            json!({ "status": "cancelled" }),
        )
        .await?;
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "request create -> visible to a polling executor: p50 {:.2} ms, p99 {:.2} ms over {VISIBLE} requests",
        percentile(&samples, 50.0),
        percentile(&samples, 99.0)
    );

    // The race: every executor lists the 64 newest pending requests and claims one (by its
    // own index), as a phone would, until nothing is left; each request is won once.
    for n in 0..RACED {
        call(
            Method::POST,
            format!("{base}/requests"),
            asker.clone(),
            json!({ "intent": format!("race {n}") }),
        )
        .await?;
    }
    let (won, tried) = (Rc::new(RefCell::new(0usize)), Rc::new(RefCell::new(0usize)));
    let started = Instant::now();
    let racers = keys.iter().enumerate().map(|(i, key)| {
        let (won, tried, call, base) = (won.clone(), tried.clone(), &call, &base);
        async move {
            loop {
                let pending = call(
                    Method::GET,
                    format!("{base}/requests?status=pending&limit=64"),
                    key.clone(),
                    Value::Null,
                )
                .await?;
                let refs: Vec<String> = pending["threads"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t["ref"].as_str().map(String::from))
                    .collect();
                let Some(r) = refs.get(i % refs.len().max(1)) else {
                    return anyhow::Ok(());
                };
                *tried.borrow_mut() += 1;
                if call(
                    Method::PATCH,
                    format!("{base}/requests/{r}"),
                    key.clone(),
                    json!({ "status": "claimed" }),
                )
                .await
                .is_ok()
                {
                    *won.borrow_mut() += 1;
                }
            }
        }
    });
    for outcome in join_all(racers).await {
        outcome?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (won, tried) = (*won.borrow(), *tried.borrow());
    anyhow::ensure!(
        won == RACED,
        "{won} claims won for {RACED} requests: a claim was won twice or lost"
    );
    println!(
        "claims: {:.0}/s won ({:.0}/s tried, {} executors listing and racing for {RACED} requests, each won once)",
        won as f64 / elapsed,
        tried as f64 / elapsed,
        plan.connections
    );
    Ok(())
}
