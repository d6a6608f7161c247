//! Notifications to MESS executors (seed 003): when a request is created or changes, each
//! executor of its exchange whose preferences allow it is told through its channels —
//! ntfy, Slack, Google Chat or a plain webhook — from a bounded background queue, each
//! call with a timeout and a few tries, so a hanging or failing receiver never slows a
//! request.
//!
//! The URLs come from executors, so they are checked against server-side request
//! forgery after DNS resolution: loopback, private, link-local (cloud metadata included),
//! shared, unspecified and multicast addresses are refused unless the address is in
//! `exchange_notify_allow`. The check is the client's own resolver, so the addresses
//! checked are the ones connected to (a name that changes its answer in between gains
//! nothing); a URL naming an address outright is checked before the call.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::crypto::Vault;
use crate::db::{exchange, ReadPool};
use crate::domain::exchange::{Preferences, Priority};
use crate::error::HubError;

const QUEUE: usize = 4096;
const TIMEOUT: Duration = Duration::from_secs(5);
const TRIES: u32 = 3;

/// Where an executor is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    Ntfy { server: String, topic: String },
    Slack { url: String },
    GoogleChat { url: String },
    Webhook { url: String },
}

impl Channel {
    /// Reads one channel as an executor gives it, refusing what cannot be sent to.
    pub fn parse(value: &Value) -> Result<Self, HubError> {
        let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
        let url = |name: &str| -> Result<String, HubError> {
            let url = text(name).ok_or_else(|| {
                HubError::bad_request(format!("a notification of this type needs {name}"))
            })?;
            http_url(&url)?;
            Ok(url)
        };
        match value.get("type").and_then(Value::as_str) {
            Some("ntfy") => {
                let topic = text("topic")
                    .filter(|t| !t.is_empty() && t.len() <= 64 && !t.contains('/'))
                    .ok_or_else(|| {
                        HubError::bad_request("an ntfy notification needs a topic (no /)")
                    })?;
                let server = text("server").unwrap_or_else(|| "https://ntfy.sh".into());
                http_url(&server)?;
                Ok(Self::Ntfy { server, topic })
            }
            Some("slack") => Ok(Self::Slack {
                url: url("webhook_url")?,
            }),
            Some("google_chat") => Ok(Self::GoogleChat {
                url: url("webhook_url")?,
            }),
            Some("webhook") => Ok(Self::Webhook { url: url("url")? }),
            other => Err(HubError::bad_request(format!(
                "notification type {other:?} must be ntfy, slack, google_chat or webhook"
            ))),
        }
    }

    fn url(&self) -> String {
        match self {
            Self::Ntfy { server, topic } => format!("{}/{topic}", server.trim_end_matches('/')),
            Self::Slack { url } | Self::GoogleChat { url } | Self::Webhook { url } => url.clone(),
        }
    }
}

fn http_url(raw: &str) -> Result<url::Url, HubError> {
    let url =
        url::Url::parse(raw).map_err(|_| HubError::bad_request(format!("{raw:?} is not a URL")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(HubError::bad_request(format!(
            "{raw:?} must be an http(s) URL"
        )));
    }
    Ok(url)
}

/// Whether an address is one a notification must never reach (unless allowed).
pub fn forbidden_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_address(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// One message for one channel.
#[derive(Debug, Clone)]
pub struct Notification {
    pub channel: Channel,
    pub title: String,
    pub body: Value,
}

/// The queue's sending side (cheap to clone).
#[derive(Clone)]
pub struct Notifier {
    queue: mpsc::Sender<Notification>,
    reads: ReadPool,
    vault: Arc<Vault>,
}

impl Notifier {
    /// Starts the sender on the current actix system.
    pub fn start(reads: ReadPool, vault: Arc<Vault>, allowed: Vec<IpAddr>) -> Self {
        let (queue, mut waiting) = mpsc::channel::<Notification>(QUEUE);
        let allowed = Arc::new(allowed);
        actix_web::rt::spawn(async move {
            let resolver = actix_tls::connect::Resolver::custom(Guarded(allowed.clone()));
            let tcp = actix_tls::connect::Connector::new(resolver).service();
            let client = awc::Client::builder()
                .connector(awc::Connector::new().connector(tcp))
                .timeout(TIMEOUT)
                .finish();
            while let Some(notification) = waiting.recv().await {
                // Each on its own: one slow receiver holds up nobody else.
                let (client, allowed) = (client.clone(), allowed.clone());
                actix_web::rt::spawn(async move { deliver(&client, &allowed, notification).await });
            }
        });
        Self {
            queue,
            reads,
            vault,
        }
    }

    /// Tells the executors of `exchange_id` who want to hear of it that request `ref_`
    /// was `what` (created, claimed, completed, …). Returns at once.
    pub fn announce(&self, exchange_id: &str, ref_: &str, priority: Priority, what: &str) {
        let (this, exchange_id, ref_, what) = (
            self.clone(),
            exchange_id.to_string(),
            ref_.to_string(),
            what.to_string(),
        );
        actix_web::rt::spawn(async move {
            let id = exchange_id.clone();
            let executors =
                match crate::db::read(&this.reads, move |conn| Ok(exchange::executors(conn, &id)?))
                    .await
                {
                    Ok(rows) => rows,
                    Err(error) => {
                        return tracing::warn!(%error, "cannot read the executors to notify")
                    }
                };
            let now = chrono::Utc::now();
            let title = format!("MESS {exchange_id}: request {ref_} {what}");
            for executor in executors {
                let preferences: Value =
                    serde_json::from_str(&executor.preferences).unwrap_or(json!({}));
                if !Preferences::parse(&preferences)
                    .unwrap_or_default()
                    .wants(priority, now)
                {
                    continue;
                }
                let channels: Vec<Value> = this
                    .vault
                    .open(&executor.notifications)
                    .and_then(|o| serde_json::from_str(&o.plaintext).ok())
                    .unwrap_or_default();
                for channel in channels.iter().filter_map(|c| Channel::parse(c).ok()) {
                    let body = json!({ "exchange_id": exchange_id, "ref": ref_, "event": what, "priority": priority.as_str(), "executor_id": executor.executor_id });
                    let notification = Notification {
                        channel,
                        title: title.clone(),
                        body,
                    };
                    if this.queue.try_send(notification).is_err() {
                        tracing::warn!(exchange = %exchange_id, "the notification queue is full; a notification was dropped");
                    }
                }
            }
        });
    }
}

async fn deliver(client: &awc::Client, allowed: &[IpAddr], notification: Notification) {
    let url = notification.channel.url();
    if let Err(why) = guard(&url, allowed).await {
        return tracing::warn!(%why, "a notification was refused by the request-forgery guard");
    }
    for attempt in 1..=TRIES {
        let request = client.post(&url);
        let sent = match &notification.channel {
            Channel::Ntfy { .. } => {
                let text = format!(
                    "{} ({})",
                    notification.title,
                    notification.body["priority"].as_str().unwrap_or("normal")
                );
                request
                    .insert_header(("Title", notification.title.clone()))
                    .send_body(text)
                    .await
            }
            Channel::Slack { .. } | Channel::GoogleChat { .. } => {
                request
                    .send_json(&json!({ "text": notification.title }))
                    .await
            }
            Channel::Webhook { .. } => request.send_json(&notification.body).await,
        };
        match sent {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                tracing::warn!(status = %response.status(), attempt, "a notification receiver refused")
            }
            Err(error) => tracing::warn!(%error, attempt, "a notification receiver did not answer"),
        }
        actix_web::rt::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
    }
}

/// The notifier's resolver: a name is looked up and refused when any address it gives is
/// forbidden, at the moment of connecting.
struct Guarded(Arc<Vec<IpAddr>>);

impl actix_tls::connect::Resolve for Guarded {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> futures_util::future::LocalBoxFuture<
        'a,
        Result<Vec<std::net::SocketAddr>, Box<dyn std::error::Error>>,
    > {
        Box::pin(async move {
            let addresses: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host, port)).await?.collect();
            match addresses
                .iter()
                .find(|a| forbidden_address(a.ip()) && !self.0.contains(&a.ip()))
            {
                Some(bad) => Err(format!(
                    "{host} resolves to {}, a private or local address",
                    bad.ip()
                )
                .into()),
                None => Ok(addresses),
            }
        })
    }
}

/// Resolves the URL's host and refuses it if any address it names is forbidden.
async fn guard(url: &str, allowed: &[IpAddr]) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let host = parsed
        .host_str()
        .ok_or("no host")?
        .trim_matches(['[', ']'])
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addresses: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .map(|a| a.ip())
        .collect();
    match addresses
        .iter()
        .find(|ip| forbidden_address(**ip) && !allowed.contains(ip))
    {
        Some(ip) => Err(format!(
            "{host} resolves to {ip}, a private or local address"
        )),
        None if addresses.is_empty() => Err(format!("{host} resolves to nothing")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_private_and_metadata_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(forbidden_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111"] {
            assert!(!forbidden_address(ip.parse().unwrap()), "{ip}");
        }
    }

    #[actix_web::test]
    async fn the_clients_resolver_refuses_a_name_for_a_local_address_unless_allowed() {
        use actix_tls::connect::Resolve;
        let refused = Guarded(Arc::new(vec![])).lookup("localhost", 80).await;
        assert!(refused
            .unwrap_err()
            .to_string()
            .contains("private or local"));
        let local = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let allowed = Guarded(Arc::new(local))
            .lookup("localhost", 80)
            .await
            .unwrap();
        assert!(allowed.iter().all(|a| a.ip().is_loopback()), "{allowed:?}");
    }

    #[test]
    fn channels_need_their_fields_and_http_urls() {
        assert!(Channel::parse(&json!({"type": "ntfy", "topic": "mess-home"})).is_ok());
        assert!(Channel::parse(&json!({"type": "slack", "webhook_url": "ftp://x"})).is_err());
        assert!(Channel::parse(&json!({"type": "webhook"})).is_err());
        assert!(Channel::parse(&json!({"type": "pager"})).is_err());
    }
}
