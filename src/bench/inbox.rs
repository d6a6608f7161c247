//! Seed 002's inbox pull, against a hub this suite starts as a child process (`m3shd
//! serve` on a fresh database, default durability), so the hub's own memory is read from
//! `/proc`:
//!
//! * delivery latency: an agent's long-poll waits; a task pinned to it is created; timed
//!   from sending the create to the pull answering with the item (the create's own answer
//!   is timed beside it);
//! * memory: `pollers` agents, each with a long-poll waiting at once; the hub's resident
//!   memory with them waiting, less before, per poller.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use awc::Client;
use serde_json::{json, Value};

use super::{report, HubChild, CHILD_TOKEN as TOKEN};

const POST: awc::http::Method = awc::http::Method::POST;
const PUT: awc::http::Method = awc::http::Method::PUT;

const AGENT: &str = "bench-puller";

pub struct InboxPlan {
    pub samples: usize,
    pub pollers: usize,
}

pub fn run(dir: &std::path::Path, plan: InboxPlan) -> anyhow::Result<()> {
    ensure!(
        plan.samples > 0 && plan.pollers > 0,
        "--samples and --agents must be positive"
    );
    let hub = HubChild::start(
        &dir.join("bench-inbox.db"),
        &[
            ("M3SHDUP_INBOX_WAIT_MAX_SECONDS", "300"),
            ("M3SHDUP_HEARTBEAT_TIMEOUT", "3600"),
        ],
    )?;
    let base = hub.base.clone();
    actix_web::rt::System::new().block_on(async move {
        let client = Client::builder()
            .timeout(Duration::from_secs(600))
            .connector(awc::Connector::new().limit(plan.pollers + 16))
            .finish();
        let bench = Bench { client, base };
        bench.latency(plan.samples).await?;
        bench.memory(&hub, plan.pollers).await
    })
}

struct Bench {
    client: Client,
    base: String,
}

impl Bench {
    async fn call(
        &self,
        method: awc::http::Method,
        path: &str,
        token: &str,
        consumer: Option<&str>,
        body: Value,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .insert_header(("Authorization", format!("Bearer {token}")));
        if let Some(consumer) = consumer {
            request = request.insert_header(("X-Consumer-Id", consumer.to_string()));
        }
        super::answer(request, path, &body).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> anyhow::Result<Value> {
        self.call(POST, path, token, None, body).await
    }

    async fn agent_token(&self, agent: &str) -> anyhow::Result<String> {
        let issued = self
            .post(
                "/api/admin/tokens",
                TOKEN,
                json!({ "agent_id": agent, "role": "worker" }),
            )
            .await?;
        Ok(issued["token"].as_str().context("token")?.to_string())
    }

    async fn pull(&self, token: &str, consumer: Option<&str>, wait: u64) -> anyhow::Result<Value> {
        let path = "/api/v1/runtime/inbox/next";
        self.call(POST, path, token, consumer, json!({ "wait": wait }))
            .await
    }

    async fn latency(&self, samples: usize) -> anyhow::Result<()> {
        let token = self.agent_token(AGENT).await?;
        let body = json!({ "name": AGENT, "capabilities": ["research"], "max_concurrent": 256 });
        self.post(&format!("/api/agents/{AGENT}/register"), &token, body)
            .await?;
        let consumer = self.pull(&token, None, 0).await?["consumerId"]
            .as_str()
            .context("consumerId")?
            .to_string();
        let (mut delivered, mut created) = (Vec::new(), Vec::new());
        // A tenth as many again first, untimed: connections and caches warm up.
        for round in 0..samples + samples / 10 {
            let pull = self.pull(&token, Some(&consumer), 30);
            let create = async {
                // The pull is parked before the task is made.
                actix_web::rt::time::sleep(Duration::from_millis(2)).await;
                let sent = Instant::now();
                let body = json!({ "title": format!("delivery {round}"), "prompt": "p", "assign_to": AGENT });
                self.post("/api/tasks", TOKEN, body).await?;
                Ok::<_, anyhow::Error>((sent, sent.elapsed()))
            };
            let answered = async {
                let answer = pull.await?;
                Ok::<_, anyhow::Error>((Instant::now(), answer))
            };
            let (pulled, made) = tokio::join!(answered, create);
            let (sent, create_took) = made?;
            let (answered_at, answer) = pulled?;
            let item = &answer["item"];
            ensure!(
                item["type"] == "task_assigned",
                "the pull answered {answer}"
            );
            if round >= samples / 10 {
                delivered.push(answered_at.duration_since(sent).as_secs_f64() * 1e6);
                created.push(create_took.as_secs_f64() * 1e6);
            }
            let ack = format!("/api/v1/runtime/inbox/{}/ack", item["id"]);
            self.call(POST, &ack, &token, Some(&consumer), json!({}))
                .await?;
            // The agent's slots stay free: it finishes the task once delivered (a cancel
            // would put a task_cancelled item in its inbox).
            let task = format!("/api/tasks/{}", item["taskId"]);
            for status in ["running", "done"] {
                let body = json!({ "status": status, "output": "ok" });
                self.call(PUT, &task, &token, Some(&consumer), body).await?;
            }
        }
        report(
            "delivery (create sent → waiting pull answers with the item)",
            delivered,
        );
        report("the create's own answer", created);
        Ok(())
    }

    async fn waiting(&self) -> anyhow::Result<u64> {
        let mut response = self
            .client
            .get(format!("{}/metrics", self.base))
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("/metrics: {e}"))?;
        let text = response
            .body()
            .await
            .map_err(|e| anyhow::anyhow!("/metrics: {e}"))?;
        String::from_utf8_lossy(&text)
            .lines()
            .find_map(|l| l.strip_prefix("m3shd_inbox_agents_waiting "))
            .and_then(|v| v.trim().parse().ok())
            .context("no m3shd_inbox_agents_waiting in /metrics")
    }

    async fn memory(&self, hub: &HubChild, pollers: usize) -> anyhow::Result<()> {
        let mut tokens = Vec::with_capacity(pollers);
        for i in 0..pollers {
            tokens.push(self.agent_token(&format!("bench-poller-{i}")).await?);
        }
        // Each agent's lease is opened once before the baseline, and connections warm up.
        let mut consumers = Vec::with_capacity(pollers);
        for token in &tokens {
            let opened = self.pull(token, None, 0).await?;
            consumers.push(
                opened["consumerId"]
                    .as_str()
                    .context("consumerId")?
                    .to_string(),
            );
        }
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
        let before = hub.rss_kib()?;
        let waits: Vec<_> = tokens
            .iter()
            .zip(&consumers)
            .map(|(token, consumer)| self.pull(token, Some(consumer), 120))
            .collect();
        let all = futures_util::future::join_all(waits);
        let measured = async {
            let started = Instant::now();
            while self.waiting().await? < pollers as u64 {
                ensure!(
                    started.elapsed() < Duration::from_secs(60),
                    "the pulls never all waited"
                );
                actix_web::rt::time::sleep(Duration::from_millis(100)).await;
            }
            actix_web::rt::time::sleep(Duration::from_millis(500)).await;
            let during = hub.rss_kib()?;
            println!(
                "{pollers} agents long-polling at once: hub RSS {before} KiB before, {during} KiB while they wait: {:.1} KiB per long-poll",
                during.saturating_sub(before) as f64 / pollers as f64
            );
            Ok(())
        };
        // The measurement ends the run: the hub (and the waiting pulls) are stopped after.
        tokio::select! {
            outcome = measured => outcome,
            _ = all => anyhow::bail!("the pulls ended before the measurement"),
        }
    }
}
