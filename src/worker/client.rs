//! The worker's view of the hub: one method per call it makes, each answering whether the
//! hub accepted, refused (a 4xx: retrying cannot help), or could not be reached. The
//! operator commands (`src/cli/`) use the same client through [`HubClient::send`].
//!
//! The hub may be several processes on one PostgreSQL database, any of which answers: the
//! client is given all their addresses and, when one cannot be connected to, sends the
//! same request to the next (a request that never connected was never received).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use awc::http::{Method, StatusCode};
use awc::Client;
use serde_json::{json, Value};

/// Why a call did not succeed.
#[derive(Debug)]
pub enum CallError {
    /// The hub answered 4xx: this request will never succeed as it is (a stale holder,
    /// a task it no longer knows). Not retried.
    Refused(u16, String),
    /// No answer, or a 5xx: worth retrying later.
    Unreachable(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(status, body) => write!(f, "refused with {status}: {body}"),
            Self::Unreachable(why) => write!(f, "hub unreachable: {why}"),
        }
    }
}

/// The hub's answer to one request, whatever its status.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub text: String,
}

#[derive(Clone)]
pub struct HubClient {
    /// The hub's addresses, never empty.
    bases: Arc<Vec<String>>,
    /// The address that answered last: tried first.
    current: Arc<AtomicUsize>,
    token: String,
    client: Client,
    /// The consumer lease this worker pulls its inbox under (seed 002): every request
    /// carries it, so the hub refuses this worker's writes once another consumer took over.
    consumer: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl HubClient {
    /// `hubs`: one address, or several separated by commas or spaces.
    pub fn new(hubs: &str, token: &str) -> Self {
        let client = Client::builder().timeout(Duration::from_secs(30)).finish();
        let mut bases: Vec<String> = super::split_list(hubs)
            .iter()
            .map(|base| base.trim_end_matches('/').to_string())
            .collect();
        if bases.is_empty() {
            bases.push(String::new());
        }
        Self {
            bases: Arc::new(bases),
            current: Arc::default(),
            token: token.to_string(),
            client,
            consumer: Default::default(),
        }
    }

    /// The address that answered last.
    fn base(&self) -> &str {
        &self.bases[self.current.load(Ordering::Relaxed) % self.bases.len()]
    }

    /// Sends one request and returns whatever the hub answered, or why nothing came back.
    /// The worker classifies answers with [`Self::call`]; the operator commands read the
    /// hub's `error` message from any status.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let first = self.current.load(Ordering::Relaxed);
        let mut tried = 0;
        let mut response = loop {
            let index = (first + tried) % self.bases.len();
            let mut request = self
                .client
                .request(method.clone(), format!("{}{path}", self.bases[index]))
                .insert_header(("Authorization", format!("Bearer {}", self.token)));
            if let Some(consumer) = self.consumer() {
                request = request.insert_header(("X-Consumer-Id", consumer));
            }
            let sent = match body {
                Some(body) => request.send_body(body.to_string()).await,
                None => request.send().await,
            };
            tried += 1;
            match sent {
                Ok(response) => {
                    self.current.store(index, Ordering::Relaxed);
                    break response;
                }
                Err(awc::error::SendRequestError::Connect(error)) if tried < self.bases.len() => {
                    tracing::warn!(hub = %self.bases[index], %error, "cannot connect; trying the hub's next address");
                }
                Err(error) => return Err(error.to_string()),
            }
        };
        let bytes = response
            .body()
            .limit(64 * 1024 * 1024)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Answer {
            status: response.status(),
            text: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        let Answer { status, text } = self
            .send(method, path, body)
            .await
            .map_err(CallError::Unreachable)?;
        if status.is_success() {
            Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
        } else if status.is_client_error() {
            Err(CallError::Refused(status.as_u16(), text))
        } else {
            Err(CallError::Unreachable(format!("{status}: {text}")))
        }
    }

    /// Calls until the hub answers (success or refusal), waiting longer after each failure
    /// (capped), for as long as `keep_trying` says.
    pub async fn call_until_answered(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        keep_trying: impl Fn() -> bool,
    ) -> Result<Value, CallError> {
        let mut wait = Duration::from_millis(250);
        loop {
            match self.call(method.clone(), path, body).await {
                Err(CallError::Unreachable(why)) if keep_trying() => {
                    tracing::warn!(path, error = %why, retry_in_ms = wait.as_millis() as u64, "hub unreachable; retrying");
                    actix_web::rt::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
                answer => return answer,
            }
        }
    }

    /// The consumer lease requests carry, if any.
    pub fn consumer(&self) -> Option<String> {
        self.consumer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Carries `consumer` from now on (the id the hub's inbox pull answered).
    pub fn hold_lease(&self, consumer: &str) {
        *self.consumer.lock().unwrap_or_else(|e| e.into_inner()) = Some(consumer.to_string());
    }

    /// Tries the hub's next address first from now on (the last one could not be reached).
    pub fn move_on(&self) {
        self.current.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stream_url(&self) -> String {
        format!("{}/api/stream?token={}", self.base(), self.token)
    }

    pub fn raw(&self) -> &Client {
        &self.client
    }

    pub fn report_body(status: &str, output: Option<&str>, reason: Option<&str>) -> Value {
        json!({ "status": status, "output": output, "reason": reason })
    }
}
