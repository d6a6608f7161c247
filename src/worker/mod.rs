//! `m3shd worker`: a drop-in for seed 000's mesh-worker. It registers, heartbeats, learns
//! of assigned tasks from the event stream (polling as a fallback) or, with `--inbox`, by
//! pulling its durable inbox under a consumer lease (seed 002), runs each with Claude
//! or any shell command (at most `max_concurrent` at once), streams output as it comes,
//! retries a failing run, and reports the result. On SIGTERM or SIGINT it takes no new
//! work, lets running tasks finish within a grace period, then kills the rest and hands
//! them back so the hub requeues them.

pub mod approve;
pub mod client;
mod executor;
mod usage;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context};
use awc::http::Method;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Notify};

use client::{CallError, HubClient};
pub use executor::Executor;
use executor::{Ending, Job};
use usage::UsageReader;

/// Everything `m3shd worker` is told.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub hub: String,
    pub token: String,
    pub name: String,
    pub machine: String,
    pub max_concurrent: usize,
    pub capabilities: Vec<String>,
    pub excluded: Vec<String>,
    /// Overrides the per-capability time limits for every task when set.
    pub timeout: Option<Duration>,
    pub capability_timeouts: BTreeMap<String, u64>,
    pub default_timeout: Duration,
    pub executor: Executor,
    pub heartbeat_interval: Duration,
    pub poll_interval: Duration,
    pub grace: Duration,
    pub retry_backoff: Duration,
    pub tries: u32,
    /// Learn of work by pulling the inbox (long-polling) instead of the event stream.
    pub inbox: bool,
}

impl WorkerConfig {
    /// A task's time limit: the worker's override, else the task's own, else its capability's.
    fn limit_for(&self, capability: &str, task_limit: Option<u64>) -> Duration {
        self.timeout
            .or(task_limit.map(Duration::from_secs))
            .or_else(|| {
                self.capability_timeouts
                    .get(capability)
                    .map(|s| Duration::from_secs(*s))
            })
            .unwrap_or(self.default_timeout)
    }
}

/// Splits a capability list given as `research code_write` or `research,code_write`.
pub fn split_list(raw: &str) -> Vec<String> {
    raw.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

struct Worker {
    config: WorkerConfig,
    hub: HubClient,
    /// The tasks being run, each with the switch that stops its process.
    running: RefCell<HashMap<i64, watch::Sender<bool>>>,
    /// Tasks the hub cancelled while they ran: stopped, never reported.
    cancelled: RefCell<HashSet<i64>>,
    stopping: Cell<bool>,
    wake: Notify,
}

/// Runs the worker until SIGTERM or SIGINT.
pub async fn run(config: WorkerConfig) -> anyhow::Result<()> {
    if matches!(config.executor, Executor::Claude { agent_mode: true })
        && unsafe { libc::geteuid() } == 0
    {
        tracing::warn!("agent mode runs Claude with --dangerously-skip-permissions as root; run the worker as an unprivileged user");
    }
    // A worker that cannot run anything must not take tasks only to fail them.
    config.executor.check().map_err(anyhow::Error::msg)?;
    let worker = Rc::new(Worker {
        hub: HubClient::new(&config.hub, &config.token),
        config,
        running: RefCell::new(HashMap::new()),
        cancelled: RefCell::new(HashSet::new()),
        stopping: Cell::new(false),
        wake: Notify::new(),
    });
    worker.register().await?;
    let shutdown = crate::startup::stop_signal()?;
    tokio::pin!(shutdown);
    // Pulling counts as contact: the inbox mode needs no heartbeats and no stream.
    let mut pulls = if worker.config.inbox {
        // The lease first: every write from now on carries it.
        worker.pull(0).await?;
        actix_web::rt::spawn(worker.clone().pull_inbox())
    } else {
        actix_web::rt::spawn(worker.clone().heartbeats());
        actix_web::rt::spawn(worker.clone().listen());
        let polls = worker.clone().poll();
        actix_web::rt::spawn(async move {
            polls.await;
            Ok(())
        })
    };
    let outcome = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            _ = worker.wake.notified() => worker.clone().pick_up().await,
            // Only the inbox loop ends by itself: another consumer took its lease.
            ended = &mut pulls => break ended.map_err(anyhow::Error::from).and_then(|r| r),
        }
    };
    worker.shut_down().await;
    outcome
}

impl Worker {
    fn agent_path(&self, what: &str) -> String {
        format!("/api/agents/{}/{what}", self.config.name)
    }

    async fn register(&self) -> anyhow::Result<()> {
        let body = json!({
            "name": self.config.name,
            "machine": self.config.machine,
            "max_concurrent": self.config.max_concurrent,
            "capabilities": self.config.capabilities,
            "excluded": self.config.excluded,
        });
        match self
            .hub
            .call_until_answered(
                Method::POST,
                &self.agent_path("register"),
                Some(&body),
                || true,
            )
            .await
        {
            Ok(_) => {
                tracing::info!(agent.id = %self.config.name, hub = %self.config.hub, "registered");
                self.wake.notify_one();
                Ok(())
            }
            Err(error) => bail!("the hub refused the registration: {error}"),
        }
    }

    async fn heartbeats(self: Rc<Self>) {
        loop {
            actix_web::rt::time::sleep(self.config.heartbeat_interval).await;
            match self
                .hub
                .call(Method::POST, &self.agent_path("heartbeat"), None)
                .await
            {
                Ok(_) => {}
                // The hub forgot us (restored from an older database, or deleted): register again.
                Err(CallError::Refused(404, _)) => {
                    let _ = self.register().await;
                }
                Err(error) => tracing::warn!(%error, "heartbeat failed"),
            }
        }
    }

    /// Follows the event stream and wakes the pick-up loop on every assignment to us.
    async fn listen(self: Rc<Self>) {
        let mut wait = Duration::from_millis(500);
        loop {
            let request = self
                .hub
                .raw()
                .get(self.hub.stream_url())
                .timeout(Duration::from_secs(24 * 3600));
            match request.send().await {
                Ok(stream) if stream.status().is_success() => {
                    wait = Duration::from_millis(500);
                    // Anything might have been assigned while the stream was down.
                    self.wake.notify_one();
                    let mut events = std::pin::pin!(stream.eventsource());
                    while let Some(Ok(event)) = events.next().await {
                        if event.event == "task_assigned" && self.assigned_to_me(&event.data) {
                            self.wake.notify_one();
                        }
                        if event.event == "task_updated" {
                            if let Some(task) = cancelled_task(&event.data) {
                                self.cancel(task);
                            }
                        }
                    }
                    tracing::warn!("the event stream ended; reconnecting");
                }
                Ok(response) => {
                    tracing::warn!(status = %response.status(), "the event stream was refused")
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot open the event stream");
                    self.hub.move_on();
                }
            }
            actix_web::rt::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    /// Pulls the inbox item by item: a task item starts whatever is assigned to this worker
    /// (the task's REST state is the truth, the item only the trigger), and every item is
    /// acknowledged once handled, so one that arrived just before a crash comes again. Ends
    /// with an error when another consumer took the lease: this process is then a zombie
    /// whose writes the hub refuses, and it must not take the lease back.
    async fn pull_inbox(self: Rc<Self>) -> anyhow::Result<()> {
        const WAIT_SECONDS: u64 = 25;
        loop {
            let answer = match self.pull(WAIT_SECONDS).await {
                Ok(answer) => answer,
                Err(PullError::Fenced(why)) => return Err(why),
                Err(PullError::Failed(error)) => {
                    tracing::warn!(%error, "the inbox pull failed");
                    actix_web::rt::time::sleep(self.config.poll_interval).await;
                    continue;
                }
            };
            let item = &answer["item"];
            let Some(id) = item["id"].as_i64() else {
                continue;
            };
            if item["type"] == "task_assigned" {
                self.clone().pick_up().await;
            } else if item["type"] == "task_cancelled" {
                if let Some(task) = item["taskId"].as_i64() {
                    self.cancel(task);
                }
            } else {
                tracing::info!(item.id = id, item.kind = %item["type"], "inbox item");
            }
            let ack = format!("/api/v1/runtime/inbox/{id}/ack");
            if let Err(error) = self.hub.call(Method::POST, &ack, None).await {
                tracing::warn!(item.id = id, %error, "could not acknowledge an inbox item");
            }
        }
    }

    /// One pull of the inbox, waiting up to `wait` seconds for an item; takes on the
    /// consumer lease it answers.
    async fn pull(&self, wait: u64) -> Result<Value, PullError> {
        let body = json!({ "wait": wait });
        let answer = self
            .hub
            .call_until_answered(
                Method::POST,
                "/api/v1/runtime/inbox/next",
                Some(&body),
                || !self.stopping.get(),
            )
            .await
            .map_err(|error| match error {
                CallError::Refused(409, why) => PullError::Fenced(anyhow::anyhow!(
                    "another consumer took this agent's inbox lease ({why}); stopping"
                )),
                other => PullError::Failed(other),
            })?;
        if let Some(consumer) = answer["consumerId"].as_str() {
            if self.hub.consumer().as_deref() != Some(consumer) {
                tracing::info!(consumer, "pulling the inbox under a consumer lease");
                self.hub.hold_lease(consumer);
            }
        }
        Ok(answer)
    }

    /// Whether a `task_assigned` event's data names this worker as the holder.
    fn assigned_to_me(&self, data: &str) -> bool {
        serde_json::from_str::<Value>(data)
            .is_ok_and(|task| task["assigned_to"].as_str() == Some(self.config.name.as_str()))
    }

    /// The fallback for a dropped stream: look for assigned work now and then.
    async fn poll(self: Rc<Self>) {
        loop {
            actix_web::rt::time::sleep(self.config.poll_interval).await;
            self.wake.notify_one();
        }
    }

    /// Starts every task assigned to us that is not running yet, up to `max_concurrent`.
    async fn pick_up(self: Rc<Self>) {
        if self.stopping.get() || self.running.borrow().len() >= self.config.max_concurrent {
            return;
        }
        let Some(tasks) = self.assigned_tasks().await else {
            return;
        };
        // Oldest first, as the hub assigned them.
        for task in tasks.iter().rev() {
            let Some(job) = job_from(task, &self.config) else {
                continue;
            };
            let mut running = self.running.borrow_mut();
            if self.stopping.get() || running.len() >= self.config.max_concurrent {
                break;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(job.id) {
                let (stop, stopped) = watch::channel(false);
                slot.insert(stop);
                let limit = self
                    .config
                    .limit_for(&job.capability, task["timeout_seconds"].as_u64());
                actix_web::rt::spawn(self.clone().work_on(job, limit, stopped));
            }
        }
    }

    async fn work_on(self: Rc<Self>, job: Job, limit: Duration, stopped: watch::Receiver<bool>) {
        let id = job.id;
        self.execute(job, limit, stopped).await;
        self.running.borrow_mut().remove(&id);
        self.cancelled.borrow_mut().remove(&id);
        self.wake.notify_one();
    }

    /// The hub cancelled `task` (or took it away): stop its process if it runs here.
    fn cancel(&self, task: i64) {
        if let Some(stop) = self.running.borrow().get(&task) {
            self.cancelled.borrow_mut().insert(task);
            let _ = stop.send(true);
        }
    }

    async fn execute(&self, job: Job, limit: Duration, stopped: watch::Receiver<bool>) {
        let path = format!("/api/tasks/{}", job.id);
        // The hub may be down for a moment: the task is ours until it says otherwise.
        let start = json!({ "status": "running" });
        if let Err(error) = self
            .hub
            .call_until_answered(Method::PUT, &path, Some(&start), || !self.stopping.get())
            .await
        {
            tracing::warn!(task.id = job.id, %error, "could not start the task");
            return;
        }
        tracing::info!(task.id = job.id, "running");
        let claude = matches!(self.config.executor, Executor::Claude { .. });
        for attempt in 1..=self.config.tries {
            let (chunks, mut pending) = mpsc::unbounded_channel::<String>();
            let reader = RefCell::new(UsageReader::new(claude));
            let streamer = async {
                while let Some(chunk) = pending.recv().await {
                    let piece = reader.borrow_mut().feed(&chunk);
                    // Usage without text to show (Claude's result line) goes as a progress report.
                    let (method, to, body) = match (piece.text.is_empty(), piece.usage) {
                        (true, None) => continue,
                        (true, Some(usage)) => (
                            Method::PUT,
                            path.clone(),
                            with_usage(json!({ "status": "running" }), usage),
                        ),
                        (false, usage) => {
                            let body = json!({ "chunk": piece.text });
                            (
                                Method::POST,
                                format!("{path}/stream"),
                                usage.map_or(body.clone(), |u| with_usage(body, u)),
                            )
                        }
                    };
                    match self.hub.call(method, &to, Some(&body)).await {
                        Ok(_) => {}
                        // The task moved on (cancelled, or no longer ours): stop working on it.
                        Err(CallError::Refused(404 | 409, why)) => {
                            tracing::warn!(task.id = job.id, %why, "the hub refused a chunk: stopping the task");
                            self.cancel(job.id);
                        }
                        Err(error) => {
                            tracing::warn!(task.id = job.id, %error, "a stream chunk was not accepted")
                        }
                    }
                }
            };
            let run = self
                .config
                .executor
                .run(&job, limit, chunks, stopped.clone());
            // Every chunk is posted before the result is reported.
            let (result, ()) = tokio::join!(run, streamer);
            let reader = reader.into_inner();
            let spent = reader.totals();
            match result.ending {
                Ending::Succeeded => {
                    let answer = reader.answer(result.stdout);
                    let body = HubClient::report_body("done", Some(&answer), None);
                    return self.report(&path, with_usage(body, spent)).await;
                }
                Ending::Stopped if self.cancelled.borrow().contains(&job.id) => {
                    // The hub ended the task: a report now would be refused as stale.
                    tracing::info!(
                        task.id = job.id,
                        "cancelled by the hub: its processes were stopped"
                    );
                    return;
                }
                Ending::Stopped => {
                    let body = HubClient::report_body("queued", None, Some("worker_shutdown"));
                    return self.report(&path, body).await;
                }
                ending => {
                    // A command that cannot start will not start on a second try either.
                    let retry = !matches!(ending, Ending::CannotStart(_));
                    let why = match ending {
                        Ending::TimedOut => format!("timed out after {} s", limit.as_secs()),
                        Ending::Failed(Some(code)) => format!("exit code {code}"),
                        Ending::CannotStart(why) => why,
                        _ => "killed by a signal".to_string(),
                    };
                    tracing::warn!(task.id = job.id, attempt, %why, "the run failed");
                    if retry && attempt < self.config.tries {
                        actix_web::rt::time::sleep(self.config.retry_backoff * attempt).await;
                        continue;
                    }
                    let tries = if attempt == 1 {
                        "1 try".to_string()
                    } else {
                        format!("{attempt} tries")
                    };
                    let reason = match result.stderr_tail.trim() {
                        "" => format!("{why} after {tries}"),
                        stderr => format!("{why} after {tries}: {stderr}"),
                    };
                    let body =
                        HubClient::report_body("failed", Some(&result.stdout), Some(&reason));
                    self.report(&path, with_usage(body, spent)).await;
                    self.escalate(&job, &reason).await;
                }
            }
        }
    }

    /// Reports a result, waiting for the hub as long as it takes; a refusal (the task was
    /// taken away meanwhile) is logged, not retried.
    async fn report(&self, path: &str, body: Value) {
        match self
            .hub
            .call_until_answered(Method::PUT, path, Some(&body), || true)
            .await
        {
            Ok(_) => tracing::info!(path, status = %body["status"], "reported"),
            Err(error) => {
                tracing::warn!(path, %error, "the result was refused (the task moved on); dropping it")
            }
        }
    }

    async fn escalate(&self, job: &Job, reason: &str) {
        let escalation =
            json!({ "task_id": job.id, "agent_id": self.config.name, "reason": reason });
        if let Err(error) = self
            .hub
            .call(Method::POST, "/api/escalations", Some(&escalation))
            .await
        {
            tracing::warn!(task.id = job.id, %error, "could not escalate");
        }
        let content = format!(
            "Task {} ({}) failed after {} tries and was escalated: {reason}",
            job.id, job.title, self.config.tries
        );
        let message = json!({ "sender": self.config.name, "sender_type": "agent", "channel": "general", "content": content });
        if let Err(error) = self
            .hub
            .call(Method::POST, "/api/messages", Some(&message))
            .await
        {
            tracing::warn!(task.id = job.id, %error, "could not post to the general channel");
        }
    }

    /// Takes no new work, lets running tasks finish within the grace period, then kills
    /// the rest (their runs hand the tasks back).
    async fn shut_down(&self) {
        self.stopping.set(true);
        tracing::info!(
            running = self.running.borrow().len(),
            "stopping: no new work; waiting for running tasks"
        );
        let deadline = tokio::time::Instant::now() + self.config.grace;
        while !self.running.borrow().is_empty() && tokio::time::Instant::now() < deadline {
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
        if !self.running.borrow().is_empty() {
            tracing::info!("grace period over: stopping the remaining tasks and handing them back");
            for stop in self.running.borrow().values() {
                let _ = stop.send(true);
            }
            while !self.running.borrow().is_empty() {
                actix_web::rt::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.hand_back_unstarted().await;
        tracing::info!("stopped");
    }

    /// The tasks the hub assigned to us that are not running yet, newest first; `None`
    /// (logged) when the hub cannot be asked.
    async fn assigned_tasks(&self) -> Option<Vec<Value>> {
        let path = format!(
            "/api/tasks?status=assigned&assigned_to={}&limit=100",
            self.config.name
        );
        match self.hub.call(Method::GET, &path, None).await {
            Ok(list) => Some(list["tasks"].as_array().cloned().unwrap_or_default()),
            Err(error) => {
                tracing::warn!(%error, "cannot list the tasks assigned to this worker");
                None
            }
        }
    }

    /// Hands back the tasks the hub assigned to us that we never started (assigned while
    /// we were stopping), so another agent gets them now rather than when our heartbeat
    /// lease runs out. One try each: a hub that cannot be reached requeues them later.
    async fn hand_back_unstarted(&self) {
        let Some(tasks) = self.assigned_tasks().await else {
            return;
        };
        for id in tasks.iter().filter_map(|t| t["id"].as_i64()) {
            let body = HubClient::report_body("queued", None, Some("worker_shutdown"));
            match self
                .hub
                .call(Method::PUT, &format!("/api/tasks/{id}"), Some(&body))
                .await
            {
                Ok(_) => tracing::info!(task.id = id, "handed back a task it never started"),
                Err(error) => tracing::warn!(task.id = id, %error, "could not hand a task back"),
            }
        }
    }
}

/// The task a `task_updated` event's data says was cancelled, if it does.
/// `body` with the usage totals of a run added.
fn with_usage(mut body: Value, usage: Value) -> Value {
    if let (Value::Object(body), Value::Object(usage)) = (&mut body, usage) {
        body.extend(usage);
    }
    body
}

fn cancelled_task(data: &str) -> Option<i64> {
    let task: Value = serde_json::from_str(data).ok()?;
    (task["status"] == "cancelled")
        .then(|| task["id"].as_i64())
        .flatten()
}

/// Why an inbox pull gave no answer.
#[derive(Debug)]
enum PullError {
    /// Another consumer holds the lease: this process must stop.
    Fenced(anyhow::Error),
    Failed(CallError),
}

impl std::fmt::Display for PullError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fenced(why) => write!(f, "{why}"),
            Self::Failed(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for PullError {}

fn job_from(task: &Value, config: &WorkerConfig) -> Option<Job> {
    Some(Job {
        hub: config.hub.clone(),
        token: config.token.clone(),
        id: task["id"].as_i64()?,
        title: task["title"].as_str()?.to_string(),
        capability: task["required_capability"]
            .as_str()
            .unwrap_or("research")
            .to_string(),
        prompt: task["prompt"].as_str()?.to_string(),
    })
}

/// The worker's command line, checked.
pub fn check(config: &WorkerConfig) -> anyhow::Result<()> {
    if config.token.is_empty() {
        bail!("a token is needed: --token, M3SHDUP_AGENT_TOKEN or M3SHDUP_TOKEN");
    }
    if config.max_concurrent == 0 {
        bail!("--max-concurrent must be at least 1");
    }
    url_like(&config.hub).context("--hub must be an http:// or https:// URL")
}

fn url_like(hub: &str) -> anyhow::Result<()> {
    if hub.starts_with("http://") || hub.starts_with("https://") {
        Ok(())
    } else {
        bail!("not a URL: {hub}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_lists_split_on_spaces_or_commas() {
        assert_eq!(
            split_list("research code_write,git ,, docker"),
            vec!["research", "code_write", "git", "docker"]
        );
        assert!(split_list("").is_empty());
    }
}
