//! On a follower (several hub processes on one PostgreSQL database), every request but
//! the few a follower answers itself goes to the leader, and the leader's answer comes
//! back as it is: a client may talk to any process. Reads of the hub's state are
//! forwarded too: much of it lives only in the leader's actors (who is online, the
//! queues, the counters), and a token issued a moment ago is known to the leader first.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use crate::error::HubError;
use crate::startup::Hub;

/// Marks a forwarded request, so that a process which no longer leads does not pass it on
/// again (a loop while the leadership changes hands).
const FORWARDED_BY: &str = "x-m3shd-forwarded-by";

/// How long a forwarded request may take: as long as the longest long-poll and more.
const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

thread_local! {
    /// One client per HTTP worker thread (awc's is not `Send`), so that forwarded requests
    /// reuse their connections to the leader rather than open one each.
    static LEADER_CLIENT: awc::Client = awc::Client::builder()
        .disable_redirects()
        .timeout(FORWARD_TIMEOUT)
        .finish();
}

/// What a follower answers itself: its own health and version, event streams (the
/// leader's events, relayed), and what is built into the binary (the dashboard's files,
/// the API document and its reference page), which every process holds alike.
fn answered_here(path: &str) -> bool {
    matches!(
        path,
        "/" | "/api/health" | "/api/version" | "/api/stream" | "/api/openapi.json" | "/api/docs"
    ) || ["/ui/", "/api/docs/", "/approve/"]
        .iter()
        .any(|built_in| path.starts_with(built_in))
}

pub async fn forward_to_leader(
    hub: web::Data<Hub>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if hub.cluster.leads() || answered_here(req.path()) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let (http, payload) = req.into_parts();
    let answer = if http.headers().contains_key(FORWARDED_BY) {
        Err(HubError::Unavailable(
            "the leadership is changing hands; retry shortly".into(),
        ))
    } else {
        forward(&hub, &http, payload).await
    };
    let response = answer.unwrap_or_else(|error| actix_web::ResponseError::error_response(&error));
    Ok(ServiceResponse::new(http, response))
}

async fn forward(
    hub: &Hub,
    req: &actix_web::HttpRequest,
    payload: actix_web::dev::Payload,
) -> Result<HttpResponse, HubError> {
    // Read whole (bodies are small: `max_body_bytes`) so that it can go to a new leader
    // if the old one no longer answers.
    let body = read_body(payload, hub.core.settings.max_body_bytes).await?;
    let leader = hub
        .cluster
        .leader(&hub.reads, false)
        .await
        .ok_or_else(no_leader)?;
    let answer = match send(hub, &leader, req, body.clone()).await {
        Ok(answer) => answer,
        // Never reached the leader: ask the database again who leads, and try there.
        Err(awc::error::SendRequestError::Connect(refused)) => {
            match hub.cluster.leader(&hub.reads, true).await {
                Some(now) if now != leader => send(hub, &now, req, body)
                    .await
                    .map_err(|error| unreachable(&now, error))?,
                _ => return Err(unreachable(&leader, refused)),
            }
        }
        Err(error) => return Err(unreachable(&leader, error)),
    };
    if answer.status() == actix_web::http::StatusCode::SERVICE_UNAVAILABLE {
        // It may no longer lead: ask the database again before the next request.
        hub.cluster.leader(&hub.reads, true).await;
    }
    let mut response = HttpResponse::build(answer.status());
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            response.append_header((name.clone(), value.clone()));
        }
    }
    Ok(response.streaming(answer))
}

/// The request body, refused past `limit` bytes as the leader would refuse it.
async fn read_body(
    mut payload: actix_web::dev::Payload,
    limit: usize,
) -> Result<web::Bytes, HubError> {
    use futures_util::StreamExt as _;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| HubError::BadRequest(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(HubError::PayloadTooLarge(format!(
                "the body is larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Sends `req` with `body` to the leader at `leader`.
async fn send(
    hub: &Hub,
    leader: &str,
    req: &actix_web::HttpRequest,
    body: web::Bytes,
) -> Result<
    awc::ClientResponse<
        impl futures_util::Stream<Item = Result<web::Bytes, awc::error::PayloadError>>,
    >,
    awc::error::SendRequestError,
> {
    let path = req
        .uri()
        .path_and_query()
        .map_or(req.path(), |p| p.as_str());
    let mut outgoing = LEADER_CLIENT
        .with(awc::Client::clone)
        .request_from(format!("{leader}{path}"), req.head())
        .no_decompress()
        .insert_header((FORWARDED_BY, hub.cluster.address.as_str()));
    // This hop's own: awc sets them for its connection to the leader.
    let own: Vec<HeaderName> = outgoing
        .headers()
        .keys()
        .filter(|name| hop_by_hop(name))
        .cloned()
        .collect();
    for name in own {
        outgoing.headers_mut().remove(name);
    }
    // The leader believes these only from a trusted proxy (`trusted_proxies`).
    let earlier = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let client_address = req.peer_addr().map(|a| a.ip().to_string());
    let forwarded_for: Vec<&str> = earlier
        .into_iter()
        .chain(client_address.as_deref())
        .collect();
    if !forwarded_for.is_empty() {
        outgoing = outgoing.insert_header(("x-forwarded-for", forwarded_for.join(", ")));
    }
    if let Some(host) = req.headers().get(header::HOST) {
        outgoing = outgoing.insert_header(("x-forwarded-host", host.clone()));
    }
    outgoing.send_body(body).await
}

fn unreachable(leader: &str, error: impl std::fmt::Display) -> HubError {
    tracing::warn!(%error, %leader, "cannot forward a request to the leader");
    no_leader()
}

fn no_leader() -> HubError {
    HubError::Unavailable(
        "no hub process leads the database at the moment (a failover takes a few seconds); retry shortly"
            .into(),
    )
}

/// Headers that describe one connection, not the message: each hop sets its own.
fn hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::CONTENT_LENGTH,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}
