//! `m3shd bench` (suite `hub`): a load generator against a running hub. It measures durable task
//! creates per second, heartbeats per second, and claim latency (create → the
//! `task_assigned` event on SSE), and prints one line per figure.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context;
use awc::Client;
use futures_util::future::join_all;
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::percentile;

/// What to measure and against which hub.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    pub hub: String,
    pub token: String,
    pub connections: usize,
    pub seconds: u64,
    pub claims: usize,
    /// Two-task pipelines timed for the unblock latency.
    pub chains: usize,
}

pub async fn run(plan: BenchPlan) -> anyhow::Result<()> {
    let connector = awc::Connector::new().limit(plan.connections.max(1) * 2);
    let client = Client::builder()
        .connector(connector)
        .timeout(Duration::from_secs(30))
        .finish();
    let run_id = crate::crypto::tokens::random_hex(4);
    let creates = creates_per_second(&client, &plan, &run_id, false).await?;
    println!(
        "creates: {creates:.0}/s with {} connections over {} s",
        plan.connections, plan.seconds
    );
    // Keyless creates again after the keyed ones: the ratio is to the mean of the runs
    // before and after, so the table's growth during the runs weighs on both sides alike.
    let keyed = creates_per_second(&client, &plan, &run_id, true).await?;
    let again = creates_per_second(&client, &plan, &run_id, false).await?;
    println!(
        "creates with an Idempotency-Key each: {keyed:.0}/s with {} connections over {} s ({:.3} of keyless, {again:.0}/s after it)",
        plan.connections,
        plan.seconds,
        keyed / ((creates + again) / 2.0)
    );
    let heartbeats = heartbeats_per_second(&client, &plan, &run_id).await?;
    println!(
        "heartbeats: {heartbeats:.0}/s with {} connections over {} s",
        plan.connections, plan.seconds
    );
    let (p50, p99) = claim_latency(&client, &plan, &run_id).await?;
    println!("claim latency (create -> task_assigned on SSE): p50 {p50:.2} ms, p99 {p99:.2} ms over {} tasks", plan.claims);
    let (p50, p99) = unblock_latency(&client, &plan, &run_id).await?;
    println!("pipeline unblock latency (dependency done -> dependent's task_assigned on SSE): p50 {p50:.2} ms, p99 {p99:.2} ms over {} chains", plan.chains);
    Ok(())
}

pub(super) fn request(
    client: &Client,
    plan: &BenchPlan,
    method: awc::http::Method,
    path: &str,
) -> awc::ClientRequest {
    client
        .request(method, format!("{}{path}", plan.hub))
        .insert_header(("Authorization", format!("Bearer {}", plan.token)))
}

pub(super) async fn call(
    client: &Client,
    plan: &BenchPlan,
    method: awc::http::Method,
    path: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    super::answer(request(client, plan, method, path), path, body).await
}

/// Runs `connections` loops of `request` for `seconds`; returns completed requests per second.
pub(super) async fn saturate<F, Fut>(plan: &BenchPlan, request: F) -> anyhow::Result<f64>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let done = Rc::new(RefCell::new(0u64));
    let deadline = Instant::now() + Duration::from_secs(plan.seconds);
    let started = Instant::now();
    let loops = (0..plan.connections).map(|_| {
        let done = done.clone();
        let request = &request;
        async move {
            while Instant::now() < deadline {
                request().await?;
                *done.borrow_mut() += 1;
            }
            anyhow::Ok(())
        }
    });
    for outcome in join_all(loops).await {
        outcome?;
    }
    let count = *done.borrow();
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Durable creates per second; `keyed`: each with its own `Idempotency-Key`.
async fn creates_per_second(
    client: &Client,
    plan: &BenchPlan,
    run_id: &str,
    keyed: bool,
) -> anyhow::Result<f64> {
    // No agent has this capability, so every task stays queued: pure durable creates.
    let body = json!({ "title": "bench create", "prompt": "a short benchmark prompt of typical size", "required_capability": format!("bench-none-{run_id}") });
    let sent = std::cell::Cell::new(0u64);
    saturate(plan, || async {
        let mut request = request(client, plan, awc::http::Method::POST, "/api/tasks");
        if keyed {
            sent.set(sent.get() + 1);
            request =
                request.insert_header(("Idempotency-Key", format!("{run_id}-{}", sent.get())));
        }
        super::answer(request, "/api/tasks", &body).await.map(drop)
    })
    .await
}

async fn register(
    client: &Client,
    plan: &BenchPlan,
    agent: &str,
    capability: &str,
    max_concurrent: i32,
) -> anyhow::Result<()> {
    let body =
        json!({ "name": agent, "capabilities": [capability], "max_concurrent": max_concurrent });
    call(
        client,
        plan,
        awc::http::Method::POST,
        &format!("/api/agents/{agent}/register"),
        &body,
    )
    .await
    .map(drop)
}

async fn heartbeats_per_second(
    client: &Client,
    plan: &BenchPlan,
    run_id: &str,
) -> anyhow::Result<f64> {
    let agent = format!("bench-hb-{run_id}");
    register(client, plan, &agent, &format!("bench-hb-{run_id}"), 1).await?;
    let path = format!("/api/agents/{agent}/heartbeat");
    let body = json!({});
    let rate = saturate(plan, || async {
        call(client, plan, awc::http::Method::POST, &path, &body)
            .await
            .map(drop)
    })
    .await;
    call(
        client,
        plan,
        awc::http::Method::DELETE,
        &format!("/api/agents/{agent}"),
        &body,
    )
    .await?;
    rate
}

async fn claim_latency(
    client: &Client,
    plan: &BenchPlan,
    run_id: &str,
) -> anyhow::Result<(f64, f64)> {
    let agent = format!("bench-claim-{run_id}");
    let capability = agent.clone();
    register(client, plan, &agent, &capability, 1).await?;
    let mut stream = open_stream(client, plan).await?;
    let mut buffer = String::new();
    let mut samples = Vec::with_capacity(plan.claims);
    let body = json!({ "title": "bench claim", "prompt": "p", "required_capability": capability });
    for _ in 0..plan.claims {
        let started = Instant::now();
        let task = call(client, plan, awc::http::Method::POST, "/api/tasks", &body).await?;
        let id = task["id"].as_i64().context("created task has an id")?;
        wait_for_assignment(&mut stream, &mut buffer, id).await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        call(
            client,
            plan,
            awc::http::Method::PUT,
            &format!("/api/tasks/{id}"),
            &json!({ "status": "done", "output": "ok" }),
        )
        .await?;
    }
    retire(client, plan, &agent, samples).await
}

async fn open_stream(
    client: &Client,
    plan: &BenchPlan,
) -> anyhow::Result<
    awc::ClientResponse<
        impl futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>,
    >,
> {
    client
        .get(format!("{}/api/stream?token={}", plan.hub, plan.token))
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("stream: {e}"))
}

/// Times, over `chains` two-task pipelines, how long after the first task is reported
/// done the second one is assigned (the PipelineActor releases it, the Dispatcher assigns).
async fn unblock_latency(
    client: &Client,
    plan: &BenchPlan,
    run_id: &str,
) -> anyhow::Result<(f64, f64)> {
    let agent = format!("bench-chain-{run_id}");
    register(client, plan, &agent, &agent, 2).await?;
    let mut stream = open_stream(client, plan).await?;
    let mut buffer = String::new();
    let mut samples = Vec::with_capacity(plan.chains);
    let member = |depends_on: Option<i64>| json!({ "title": "bench chain", "prompt": "p", "required_capability": agent, "depends_on": depends_on });
    let body = json!({ "tasks": [member(None), member(Some(0))] });
    let done = json!({ "status": "done", "output": "ok" });
    for _ in 0..plan.chains {
        let pipeline = call(
            client,
            plan,
            awc::http::Method::POST,
            "/api/pipelines",
            &body,
        )
        .await?;
        let first = pipeline["tasks"][0]["id"]
            .as_i64()
            .context("pipeline member id")?;
        let second = pipeline["tasks"][1]["id"]
            .as_i64()
            .context("pipeline member id")?;
        wait_for_assignment(&mut stream, &mut buffer, first).await?;
        let started = Instant::now();
        call(
            client,
            plan,
            awc::http::Method::PUT,
            &format!("/api/tasks/{first}"),
            &done,
        )
        .await?;
        wait_for_assignment(&mut stream, &mut buffer, second).await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        call(
            client,
            plan,
            awc::http::Method::PUT,
            &format!("/api/tasks/{second}"),
            &done,
        )
        .await?;
    }
    retire(client, plan, &agent, samples).await
}

/// Removes the benchmark's agent and reduces the samples to (p50, p99).
async fn retire(
    client: &Client,
    plan: &BenchPlan,
    agent: &str,
    mut samples: Vec<f64>,
) -> anyhow::Result<(f64, f64)> {
    call(
        client,
        plan,
        awc::http::Method::DELETE,
        &format!("/api/agents/{agent}"),
        &json!({}),
    )
    .await?;
    samples.sort_by(f64::total_cmp);
    Ok((percentile(&samples, 50.0), percentile(&samples, 99.0)))
}

/// Reads the stream until a `task_assigned` event for task `id` arrives.
async fn wait_for_assignment<S, E>(
    stream: &mut S,
    buffer: &mut String,
    id: i64,
) -> anyhow::Result<()>
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let needle = format!("\"id\":{id},");
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if block.contains("event: task_assigned") && block.contains(&needle) {
                return Ok(());
            }
        }
        let chunk = actix_web::rt::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .context("no task_assigned event within 10 s")?
            .context("the stream ended")?
            .map_err(|e| anyhow::anyhow!("stream: {e}"))?;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}
