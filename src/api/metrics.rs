//! `GET /metrics`: the hub's Prometheus metrics (`crate::metrics`), and the middleware that
//! counts and times every request under its route template.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use super::auth::Caller;
use crate::actors::dispatcher::QueueDepths;
use crate::actors::registry::{AgentStatuses, CountSubscribers};
use crate::error::HubError;
use crate::metrics::{Observed, CONTENT_TYPE};
use crate::startup::Hub;

/// The hub's metrics in the Prometheus text format. Who may read them is `metrics_access`:
/// "token" (a credential holding metrics:read), "open" (anyone), or "off" (404).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics in the Prometheus text exposition format (version 0.0.4)", content_type = "text/plain")))]
pub async fn get_metrics(
    hub: web::Data<Hub>,
    // A missing or unknown credential is the same 401 here, and no 401 at all when the
    // metrics are open or off.
    caller: Option<Caller>,
) -> Result<HttpResponse, HubError> {
    let caller = caller.map(|c| c.0);
    hub.core.settings.metrics_access.admit(caller.as_ref())?;
    let agents = hub.registry.send(AgentStatuses).await??;
    let observed = Observed {
        queued: hub.dispatcher.send(QueueDepths).await?,
        agents: agents.iter().map(|a| a.presence).collect(),
        sse_subscribers: hub.registry.send(CountSubscribers).await?,
        alerts_queued: hub.core.alerts.backlog(),
        approvals_pending: crate::db::read(&hub.reads, |conn| {
            Ok(crate::db::approvals::count_pending(conn)?)
        })
        .await?,
        inbox_waiting: hub.core.bell.listened(),
    };
    Ok(HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(hub.core.metrics.render(observed)?))
}

/// Counts and times every request under the route template that matched it (read after
/// routing, so `/api/tasks/7` counts as `/api/tasks/{id}`; none matched: `unmatched`).
/// Wrapped around the App only while metrics are on.
pub async fn record_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let metrics = req
        .app_data::<web::Data<Hub>>()
        .map(|hub| hub.core.metrics.clone());
    let answered = next.call(req).await;
    if let Some(metrics) = metrics {
        match &answered {
            Ok(response) => metrics.http_request(
                response.request().match_pattern().as_deref(),
                method.as_str(),
                response.status().as_str(),
                started.elapsed(),
            ),
            // Handlers' and extractors' errors arrive as responses; an error here comes
            // from the server itself and no longer carries its request.
            Err(error) => metrics.http_request(
                None,
                method.as_str(),
                error.as_response_error().status_code().as_str(),
                started.elapsed(),
            ),
        }
    }
    answered
}
