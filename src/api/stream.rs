//! `GET /api/stream`: the live event stream. Each connection is an SseSubscriber actor
//! started by the Registry; this handler only turns its queue into the response.

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::ConnectionType;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, Responder};
use actix_web_lab::sse::Sse;

use super::auth::StreamCaller;
use crate::actors::registry::StartSubscriber;
use crate::actors::sse::Frames;
use crate::error::HubError;
use crate::startup::Hub;

#[utoipa::path(
    get,
    path = "/api/stream",
    tag = "events",
    security(("bearer" = []), ("api_key" = []), ("cookie" = []), ("query_token" = [])),
    responses(
        (status = 200, description = "The live event stream (Server-Sent Events)", content_type = "text/event-stream"),
        (status = 503, description = "Every event stream the hub holds is open (`sse_max_subscribers`); retry shortly", body = super::openapi::ErrorBody),
    )
)]
pub async fn get_stream(
    hub: web::Data<Hub>,
    caller: StreamCaller,
    req: HttpRequest,
) -> Result<impl Responder, HubError> {
    let principal = caller.0;
    // Owners who hold only admin:agents watch the preregistrations meant for them.
    if !["tasks:read", "agents:read", "messages:read", "admin:agents"]
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
            arbiter: actix::Arbiter::try_current(),
        })
        .await??;
    Ok(Sse::from_infallible_stream(Frames(receiver))
        .with_retry_duration(Duration::from_secs(3))
        .respond_to(&req)
        .map_body(|head, events| {
            // Once a stream ends, its connection closes rather than idling in keep-alive:
            // a stopping hub then has no idle connection to wait for or cut.
            head.set_connection_type(ConnectionType::Close);
            EndsWithRetry {
                events: Some(events),
            }
        }))
}

/// How long a client waits before reconnecting to a stream the hub ended itself.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// An event stream that, when the hub ends it (at shutdown, or when it cuts off a reader
/// that fell behind), sends one last `retry:` frame telling the client when to reconnect;
/// an EventSource then does so by itself, resuming with `Last-Event-ID`.
struct EndsWithRetry<B> {
    /// `None` once the events have ended and the frame was sent.
    events: Option<B>,
}

impl<B: MessageBody + Unpin> MessageBody for EndsWithRetry<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let Some(events) = this.events.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(events).poll_next(cx)) {
            Some(frame) => Poll::Ready(Some(frame)),
            None => {
                this.events = None;
                let retry = format!("retry: {}\n\n", RECONNECT_AFTER.as_millis());
                Poll::Ready(Some(Ok(Bytes::from(retry))))
            }
        }
    }
}
