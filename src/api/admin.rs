//! The kill switch, the day's cost budget and the audit log (API.md).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::extract::{optional_json, Query};
use super::{page_limit, page_offset};
use crate::actors::dispatcher::{GetBudget, GetKillSwitch, ResetBudget, SetKillSwitch};
use crate::db::queries::{self, AuditFilter};
use crate::error::HubError;
use crate::startup::Hub;

#[utoipa::path(
    get,
    path = "/api/admin/kill-switch",
    tag = "administration",
    responses((status = 200, description = "Kill switch state (admin:kill_switch)", body = Object))
)]
pub async fn get_kill_switch(
    hub: web::Data<Hub>,
    caller: Caller,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:kill_switch")?;
    Ok(HttpResponse::Ok().json(hub.dispatcher.send(GetKillSwitch).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct KillSwitchBody {
    #[schema(value_type = Option<bool>)]
    active: Option<bool>,
    #[schema(value_type = Option<String>)]
    reason: Option<String>,
}

/// Engages (or, with `"active": false`, clears) the switch. The body may be empty.
#[utoipa::path(
    post,
    path = "/api/admin/kill-switch",
    tag = "administration",
    request_body = Option<KillSwitchBody>,
    responses((status = 200, description = "Engage (or clear) the kill switch (admin:kill_switch)", body = Object))
)]
pub async fn set_kill_switch(
    hub: web::Data<Hub>,
    caller: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:kill_switch")?;
    let body: KillSwitchBody = optional_json(&body)?;
    let message = SetKillSwitch {
        active: body.active.unwrap_or(true),
        reason: body.reason,
        by: caller.0.label(),
    };
    Ok(HttpResponse::Ok().json(hub.dispatcher.send(message).await??))
}

#[utoipa::path(
    delete,
    path = "/api/admin/kill-switch",
    tag = "administration",
    responses((status = 200, description = "Clear the kill switch (admin:kill_switch)", body = Object))
)]
pub async fn clear_kill_switch(
    hub: web::Data<Hub>,
    caller: Caller,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:kill_switch")?;
    let message = SetKillSwitch {
        active: false,
        reason: None,
        by: caller.0.label(),
    };
    Ok(HttpResponse::Ok().json(hub.dispatcher.send(message).await??))
}

/// Today's reported cost against the daily cap (master only).
#[utoipa::path(
    get,
    path = "/api/admin/budget",
    tag = "administration",
    responses((status = 200, description = "Today's cost against the cap (master)", body = Object))
)]
pub async fn get_budget(hub: web::Data<Hub>, caller: Caller) -> Result<HttpResponse, HubError> {
    caller.0.require_master()?;
    Ok(HttpResponse::Ok().json(hub.dispatcher.send(GetBudget).await?))
}

/// Stops today's reported cost so far from counting against the cap (master only).
#[utoipa::path(
    post,
    path = "/api/admin/budget/reset",
    tag = "administration",
    responses((status = 200, description = "Stop today's cost from counting (master)", body = Object))
)]
pub async fn reset_budget(hub: web::Data<Hub>, caller: Caller) -> Result<HttpResponse, HubError> {
    caller.0.require_master()?;
    let by = caller.0.label();
    Ok(HttpResponse::Ok().json(hub.dispatcher.send(ResetBudget { by }).await??))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Page size (capped by the hub).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// Items to skip.
    #[param(minimum = 0)]
    offset: Option<i64>,
    actor: Option<String>,
    action: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/admin/audit",
    tag = "administration",
    params(AuditQuery),
    responses((status = 200, description = "The audit log (admin:audit)", body = Object))
)]
pub async fn list_audit(
    hub: web::Data<Hub>,
    caller: Caller,
    query: Query<AuditQuery>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:audit")?;
    let query = query.0;
    let filter = AuditFilter {
        actor: query.actor,
        action: query.action,
        limit: page_limit(query.limit, 50, 500)?,
        offset: page_offset(query.offset)?,
    };
    let rows = crate::db::read(&hub.reads, move |conn| Ok(queries::audit(conn, &filter)?)).await?;
    let entries: Vec<_> = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id,
                "at": r.at,
                "actor": r.actor,
                "action": r.action,
                "target": r.target,
                "detail": r.detail.and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok()),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "count": entries.len(), "entries": entries })))
}
