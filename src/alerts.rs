//! Push alerts to an ntfy server: agent down, daily cost cap reached, escalation opened.
//! Raising an alert never waits: it goes on a bounded queue that one background task
//! drains, each send with a timeout and a few retries. A failing or slow ntfy server is
//! logged and otherwise ignored. Nothing is sent until an operator names a server and a
//! topic, and an alert carries ids, names and categories: free text a worker wrote goes
//! along only when `alerts_include_detail` says so.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::settings::Settings;

/// Alerts waiting to be sent before new ones are dropped.
const QUEUE: usize = 256;
const TRIES: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Alert {
    /// Written by the hub from ids and names.
    pub title: String,
    /// Written by the hub from ids and names.
    pub message: String,
    /// Free text from a worker or a person (an escalation's reason): sent only when
    /// `alerts_include_detail` is set.
    pub detail: Option<String>,
    /// ntfy priority, 1 (min) to 5 (max).
    pub priority: u8,
    pub tags: &'static str,
}

/// Where alerts are raised; cheap to clone.
#[derive(Clone)]
pub struct Alerts {
    queue: Option<mpsc::Sender<Alert>>,
    include_detail: bool,
}

impl Alerts {
    /// Starts the sender on the current actix system, or a silent handle when disabled.
    pub fn start(settings: &Settings) -> Self {
        let include_detail = settings.alerts_include_detail;
        let unset = settings.ntfy_url.trim().is_empty() || settings.ntfy_topic.trim().is_empty();
        if !settings.alerts_enabled || unset {
            if settings.alerts_enabled {
                tracing::info!(
                    "alerts are off: set ntfy_url and ntfy_topic (M3SHDUP_NTFY_URL, M3SHDUP_NTFY_TOPIC) to push them to your ntfy server"
                );
            }
            return Self {
                queue: None,
                include_detail,
            };
        }
        let (queue, pending) = mpsc::channel(QUEUE);
        let endpoint = format!(
            "{}/{}",
            settings.ntfy_url.trim_end_matches('/'),
            settings.ntfy_topic
        );
        tracing::info!(server = %settings.ntfy_url, "alerts go to ntfy");
        actix_web::rt::spawn(send_all(endpoint, pending));
        Self {
            queue: Some(queue),
            include_detail,
        }
    }

    /// Alerts waiting for the sender (0 when alerts are off).
    pub fn backlog(&self) -> usize {
        self.queue
            .as_ref()
            .map_or(0, |queue| queue.max_capacity() - queue.capacity())
    }

    pub fn raise(&self, mut alert: Alert) {
        let Some(queue) = &self.queue else { return };
        match alert.detail.take() {
            Some(detail) if self.include_detail => {
                alert.message = format!("{}\n\n{detail}", alert.message);
            }
            _ => {}
        }
        if queue.try_send(alert).is_err() {
            tracing::warn!("alert queue full or closed; an alert was dropped");
        }
    }
}

async fn send_all(endpoint: String, mut pending: mpsc::Receiver<Alert>) {
    let client = awc::Client::builder().timeout(TIMEOUT).finish();
    while let Some(alert) = pending.recv().await {
        for attempt in 1..=TRIES {
            let sent = client
                .post(&endpoint)
                .insert_header(("Title", alert.title.as_str()))
                .insert_header(("Priority", alert.priority.to_string()))
                .insert_header(("Tags", alert.tags))
                .send_body(alert.message.clone())
                .await;
            match sent {
                Ok(response) if response.status().is_success() => break,
                outcome => {
                    let why = outcome
                        .map(|r| r.status().to_string())
                        .unwrap_or_else(|e| e.to_string());
                    tracing::warn!(alert.title = %alert.title, attempt, error = %why, "could not send an alert");
                    actix_web::rt::time::sleep(Duration::from_millis(500 * u64::from(attempt)))
                        .await;
                }
            }
        }
    }
}
