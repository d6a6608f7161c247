//! `GET /api/stream`: the live event stream. Each connection is an SseSubscriber actor
//! started by the Registry; this handler only turns its queue into the response.

use std::time::Duration;

use actix_web::{web, HttpRequest, Responder};
use actix_web_lab::sse::Sse;

use super::auth::StreamCaller;
use crate::actors::registry::StartSubscriber;
use crate::error::HubError;
use crate::startup::Hub;

pub async fn get_stream(
    hub: web::Data<Hub>,
    caller: StreamCaller,
    req: HttpRequest,
) -> Result<impl Responder, HubError> {
    let principal = caller.0;
    if !["tasks:read", "agents:read", "messages:read"]
        .iter()
        .any(|p| principal.can(p))
    {
        return Err(HubError::forbidden("this token may read no events"));
    }
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let receiver = hub
        .registry
        .send(StartSubscriber {
            principal,
            last_event_id,
        })
        .await?;
    Ok(Sse::from_infallible_receiver(receiver).with_retry_duration(Duration::from_secs(3)))
}
