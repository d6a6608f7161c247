//! Prometheus metrics, served in the text exposition format at `GET /metrics`.
//!
//! Each hub keeps its own [`prometheus::Registry`] inside a [`Metrics`] handle that travels
//! in `Core`, so actors record through a value they were given (nothing upward, nothing
//! global) and several hubs in one process (the integration tests) never mix their counts.
//! With `metrics_access = "off"` the handle is empty and every recording method returns
//! at once.
//!
//! Counters and histograms are recorded where things happen (after the commit they
//! describe); gauges of state the actors own (queue depth, agents, subscribers, outbox
//! backlogs) are read from them at scrape time and passed to [`Metrics::render`], so they
//! cost the hot path nothing and never drift.
//!
//! Label values are bounded: routes are templates, methods outside the standard ones are
//! `other`, and capabilities beyond `metrics_max_label_values` distinct ones fold into
//! `other`. Task ids and agent names are never labels.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use serde::{Deserialize, Serialize};

use crate::domain::access::Principal;
use crate::domain::agent::AgentStatus;
use crate::domain::task::TaskStatus;
use crate::error::HubError;
use crate::settings::Settings;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;
/// The permission that reads `/metrics` under `metrics_access = "token"`.
pub const READ_PERMISSION: &str = "metrics:read";
/// The label value standing for every value past the cap (or outside a known set).
const OTHER: &str = "other";
/// The route label of a request no route matched.
const UNMATCHED: &str = "unmatched";
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// Who may read `GET /metrics` (`metrics_access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum MetricsAccess {
    /// A credential holding `metrics:read` (the admin preset, or a dedicated scrape token).
    Token,
    /// Anyone who can reach the port: for a scraper on a private network.
    Open,
    /// No endpoint (404) and nothing recorded.
    Off,
}

impl MetricsAccess {
    pub const NAMES: [&'static str; 3] = ["token", "open", "off"];

    /// Whether `caller` may read the metrics: 404 when they are off (as for any unknown
    /// path), else 401 without a credential and 403 without the permission.
    pub fn admit(self, caller: Option<&Principal>) -> Result<(), HubError> {
        match self {
            Self::Off => Err(HubError::not_found("no route for GET /metrics")),
            Self::Open => Ok(()),
            Self::Token => caller
                .ok_or(HubError::Unauthorized)?
                .require(READ_PERMISSION),
        }
    }
}

impl TryFrom<String> for MetricsAccess {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        match value.to_ascii_lowercase().as_str() {
            "token" => Ok(Self::Token),
            "open" => Ok(Self::Open),
            "off" => Ok(Self::Off),
            _ => Err(format!(
                "metrics_access must be one of {}, not {value:?}",
                Self::NAMES.join(", ")
            )),
        }
    }
}

impl From<MetricsAccess> for &'static str {
    fn from(access: MetricsAccess) -> Self {
        match access {
            MetricsAccess::Token => "token",
            MetricsAccess::Open => "open",
            MetricsAccess::Off => "off",
        }
    }
}

/// The state read from the actors at scrape time.
#[derive(Debug, Default)]
pub struct Observed {
    /// Tasks waiting in the Dispatcher's ready queue, per capability.
    pub queued: Vec<(String, usize)>,
    /// The status of every registered agent.
    pub agents: Vec<AgentStatus>,
    pub sse_subscribers: usize,
    /// Alerts waiting for the ntfy sender.
    pub alerts_queued: usize,
    /// Tool-call approvals waiting for a person.
    pub approvals_pending: i64,
    /// Agents with an inbox pull waiting (long-polling).
    pub inbox_waiting: usize,
}

/// A hub's metrics; cheap to clone. Empty (recording nothing) when metrics are off.
#[derive(Clone, Default)]
pub struct Metrics(Option<Arc<Recorder>>);

struct Recorder {
    registry: Registry,
    capabilities: LabelFold,
    http_requests: IntCounterVec,
    http_seconds: HistogramVec,
    tasks_created: IntCounterVec,
    tasks_assigned: IntCounterVec,
    tasks_finished: IntCounterVec,
    tasks_queued: IntGaugeVec,
    agents: IntGaugeVec,
    sse_subscribers: IntGauge,
    sse_limit: IntGauge,
    sse_cut_off: IntCounter,
    tasks_archived: IntCounter,
    commit_writes: Histogram,
    commit_seconds: Histogram,
    alerts_queued: IntGauge,
    approvals_pending: IntGauge,
    inbox_waiting: IntGauge,
    federation_pending: IntGauge,
    /// One scrape at a time: a render resets and refills the sampled gauges.
    rendering: Mutex<()>,
}

impl Metrics {
    /// The handle the settings ask for: empty when `metrics_access = "off"`.
    pub fn new(settings: &Settings) -> Self {
        if settings.metrics_access == MetricsAccess::Off {
            return Self(None);
        }
        let recorder = Recorder::new(settings.metrics_max_label_values)
            .expect("the metric definitions are valid and registered once");
        Self(Some(Arc::new(recorder)))
    }

    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// One answered HTTP request. `route` is the matched route template (`None`: no route
    /// matched), never the raw path.
    pub fn http_request(&self, route: Option<&str>, method: &str, status: &str, took: Duration) {
        let Some(r) = &self.0 else { return };
        let route = route.unwrap_or(UNMATCHED);
        let method = METHODS
            .iter()
            .find(|m| **m == method)
            .copied()
            .unwrap_or(OTHER);
        r.http_requests
            .with_label_values(&[route, method, status])
            .inc();
        r.http_seconds
            .with_label_values(&[route, method])
            .observe(took.as_secs_f64());
    }

    /// A task committed as created.
    pub fn task_created(&self, capability: &str) {
        if let Some(r) = &self.0 {
            r.tasks_created
                .with_label_values(&[r.capabilities.fold(capability)])
                .inc();
        }
    }

    /// A task's assignment committed.
    pub fn task_assigned(&self, capability: &str) {
        if let Some(r) = &self.0 {
            r.tasks_assigned
                .with_label_values(&[r.capabilities.fold(capability)])
                .inc();
        }
    }

    /// A task's terminal status committed.
    pub fn task_finished(&self, capability: &str, status: TaskStatus) {
        if let Some(r) = &self.0 {
            r.tasks_finished
                .with_label_values(&[r.capabilities.fold(capability), status.as_str()])
                .inc();
        }
    }

    /// An SSE subscriber was disconnected for falling behind.
    pub fn sse_cut_off(&self) {
        if let Some(r) = &self.0 {
            r.sse_cut_off.inc();
        }
    }

    /// Retention archived and deleted `tasks` finished tasks.
    pub fn tasks_archived(&self, tasks: usize) {
        if let Some(r) = &self.0 {
            r.tasks_archived.inc_by(tasks as u64);
        }
    }

    /// The most event streams the hub holds at once (set at start).
    pub fn sse_subscriber_limit(&self, limit: usize) {
        if let Some(r) = &self.0 {
            r.sse_limit.set(i64::try_from(limit).unwrap_or(i64::MAX));
        }
    }

    /// One group commit of `writes` writes that took `took`.
    pub fn group_commit(&self, writes: usize, took: Duration) {
        if let Some(r) = &self.0 {
            r.commit_writes.observe(writes as f64);
            r.commit_seconds.observe(took.as_secs_f64());
        }
    }

    /// A finished relayed task's result joined the federation outbox.
    pub fn federation_result_queued(&self) {
        if let Some(r) = &self.0 {
            r.federation_pending.inc();
        }
    }

    /// A result left the federation outbox (reported, or given up after its retries).
    pub fn federation_result_sent(&self) {
        if let Some(r) = &self.0 {
            r.federation_pending.dec();
        }
    }

    /// Everything in the text exposition format, with the gauges set from `observed`.
    pub fn render(&self, observed: Observed) -> Result<String, HubError> {
        let Some(r) = &self.0 else {
            return Ok(String::new());
        };
        let _one_at_a_time = r.rendering.lock().unwrap_or_else(|e| e.into_inner());
        // Every capability seen so far reads 0 when none of its tasks waits, rather than
        // vanishing from the series.
        let mut queued: BTreeMap<String, i64> = r
            .capabilities
            .seen()
            .into_iter()
            .map(|capability| (capability, 0))
            .collect();
        for (capability, depth) in &observed.queued {
            *queued
                .entry(r.capabilities.fold(capability).to_string())
                .or_default() += *depth as i64;
        }
        r.tasks_queued.reset();
        for (capability, depth) in &queued {
            r.tasks_queued.with_label_values(&[capability]).set(*depth);
        }
        for status in [AgentStatus::Online, AgentStatus::Busy, AgentStatus::Offline] {
            let count = observed.agents.iter().filter(|s| **s == status).count();
            r.agents
                .with_label_values(&[status.as_str()])
                .set(count as i64);
        }
        r.sse_subscribers.set(observed.sse_subscribers as i64);
        r.alerts_queued.set(observed.alerts_queued as i64);
        r.approvals_pending.set(observed.approvals_pending);
        r.inbox_waiting.set(observed.inbox_waiting as i64);
        TextEncoder::new()
            .encode_to_string(&r.registry.gather())
            .map_err(|e| HubError::internal(format!("cannot encode the metrics: {e}")))
    }
}

impl Recorder {
    fn new(max_label_values: usize) -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("m3shd".into()), None)?;
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        // 0.25 ms to ~4 s: a durable create takes about a millisecond under load.
        let seconds = exponential_buckets(0.000_25, 2.0, 15)?;
        let http_seconds = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from receiving a request to its response headers, by route template and method.",
            )
            .buckets(seconds.clone()),
            &["route", "method"],
        )?;
        registry.register(Box::new(http_seconds.clone()))?;
        let plain_counter = |name: &str, help: &str| {
            let metric = IntCounter::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        Ok(Self {
            capabilities: LabelFold::new(max_label_values),
            http_requests: counter(
                "http_requests_total",
                "HTTP requests answered, by route template, method and status.",
                &["route", "method", "status"],
            )?,
            http_seconds,
            tasks_created: counter(
                "tasks_created_total",
                "Tasks created (committed), by required capability.",
                &["capability"],
            )?,
            tasks_assigned: counter(
                "tasks_assigned_total",
                "Task assignments committed, by required capability (a requeued task counts again).",
                &["capability"],
            )?,
            tasks_finished: counter(
                "tasks_finished_total",
                "Tasks that reached a terminal status, by required capability and status.",
                &["capability", "status"],
            )?,
            tasks_queued: gauge_vec(
                "tasks_queued",
                "Tasks waiting in the Dispatcher's ready queue for an agent, by required capability.",
                &["capability"],
            )?,
            agents: gauge_vec(
                "agents",
                "Registered agents by status (online, busy: every slot taken, offline).",
                &["status"],
            )?,
            sse_subscribers: gauge("sse_subscribers", "Open SSE event streams.")?,
            sse_limit: gauge(
                "sse_subscribers_limit",
                "The most SSE event streams the hub holds at once (sse_max_subscribers, else what the open-file limit leaves).",
            )?,
            sse_cut_off: plain_counter(
                "sse_subscribers_cut_off_total",
                "SSE subscribers disconnected because they fell sse_queue_capacity events behind.",
            )?,
            tasks_archived: plain_counter(
                "tasks_archived_total",
                "Finished tasks archived and deleted by retention (retention_days).",
            )?,
            commit_writes: histogram(
                "db_commit_writes",
                "Writes committed together in one group commit.",
                exponential_buckets(1.0, 2.0, 11)?,
            )?,
            commit_seconds: histogram(
                "db_commit_duration_seconds",
                "Time the single writer took to run and commit one group of writes.",
                seconds,
            )?,
            alerts_queued: gauge(
                "alerts_queued",
                "Alerts waiting to be sent to ntfy.",
            )?,
            approvals_pending: gauge(
                "approvals_pending",
                "Tool-call approvals waiting for a person's decision.",
            )?,
            inbox_waiting: gauge(
                "inbox_agents_waiting",
                "Agents with an inbox pull waiting for an item (seed 002's long-poll).",
            )?,
            federation_pending: gauge(
                "federation_results_pending",
                "Results of relayed tasks waiting to be reported to their peer.",
            )?,
            rendering: Mutex::new(()),
            registry,
        })
    }
}

/// Admits the first `max` distinct values of a label as themselves; later ones read
/// `other`, so no client can grow the series without bound.
struct LabelFold {
    max: usize,
    seen: RwLock<HashSet<String>>,
}

impl LabelFold {
    fn new(max: usize) -> Self {
        Self {
            max,
            seen: RwLock::default(),
        }
    }

    fn fold<'a>(&self, value: &'a str) -> &'a str {
        // A poisoned lock only means a panic mid-insert; the set is still usable.
        if self
            .seen
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(value)
        {
            return value;
        }
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        if seen.contains(value) || seen.len() < self.max {
            seen.insert(value.to_string());
            value
        } else {
            OTHER
        }
    }

    fn seen(&self) -> Vec<String> {
        let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
        seen.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(max_label_values: usize) -> Metrics {
        let mut settings = Settings::defaults().unwrap();
        settings.metrics_max_label_values = max_label_values;
        Metrics::new(&settings)
    }

    #[test]
    fn capabilities_past_the_cap_fold_into_other() {
        let m = metrics(2);
        for capability in ["a", "b", "c", "d", "a"] {
            m.task_created(capability);
        }
        let text = m.render(Observed::default()).unwrap();
        assert!(text.contains("m3shd_tasks_created_total{capability=\"a\"} 2"));
        assert!(text.contains("m3shd_tasks_created_total{capability=\"b\"} 1"));
        assert!(text.contains("m3shd_tasks_created_total{capability=\"other\"} 2"));
        assert!(!text.contains("capability=\"c\""));
    }

    #[test]
    fn unknown_methods_and_unmatched_paths_are_bounded() {
        let m = metrics(10);
        m.http_request(None, "BREW", "404", Duration::from_millis(1));
        let text = m.render(Observed::default()).unwrap();
        assert!(text.contains(
            "m3shd_http_requests_total{method=\"other\",route=\"unmatched\",status=\"404\"} 1"
        ));
    }

    #[test]
    fn sampled_gauges_keep_seen_capabilities_at_zero() {
        let m = metrics(10);
        m.task_created("research");
        let observed = Observed {
            queued: vec![("git".into(), 3)],
            agents: vec![AgentStatus::Busy, AgentStatus::Offline, AgentStatus::Busy],
            ..Observed::default()
        };
        let text = m.render(observed).unwrap();
        assert!(text.contains("m3shd_tasks_queued{capability=\"git\"} 3"));
        assert!(text.contains("m3shd_tasks_queued{capability=\"research\"} 0"));
        assert!(text.contains("m3shd_agents{status=\"busy\"} 2"));
        assert!(text.contains("m3shd_agents{status=\"online\"} 0"));
    }

    #[test]
    fn off_records_nothing_and_the_access_rule_answers_as_documented() {
        let mut settings = Settings::defaults().unwrap();
        settings.metrics_access = MetricsAccess::Off;
        let m = Metrics::new(&settings);
        m.task_created("research");
        assert!(!m.enabled());
        assert_eq!(m.render(Observed::default()).unwrap(), "");
        let viewer = crate::domain::access::test_token("v", &["tasks:read"]);
        let scraper = crate::domain::access::test_token("s", &[READ_PERMISSION]);
        let status = |access: MetricsAccess, caller: Option<&Principal>| {
            access.admit(caller).err().map(|e| e.code())
        };
        assert_eq!(
            status(MetricsAccess::Off, Some(&scraper)),
            Some("not_found")
        );
        assert_eq!(status(MetricsAccess::Open, None), None);
        assert_eq!(status(MetricsAccess::Token, None), Some("unauthorized"));
        assert_eq!(
            status(MetricsAccess::Token, Some(&viewer)),
            Some("forbidden")
        );
        assert_eq!(status(MetricsAccess::Token, Some(&scraper)), None);
        assert_eq!(
            MetricsAccess::try_from("OPEN".to_string()),
            Ok(MetricsAccess::Open)
        );
        assert!(MetricsAccess::try_from("public".to_string()).is_err());
    }
}
