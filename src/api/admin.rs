//! The kill switch, the day's cost budget and the audit log (API.md).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::auth::{Caller, StreamCaller};
use super::extract::{optional_json, Query};
use super::{page_limit, page_offset};
use crate::actors::dispatcher::{GetBudget, GetKillSwitch, ResetBudget, SetKillSwitch};
use crate::db::models::AuditRow;
use crate::db::queries::{self, AuditFilter};
use crate::domain::parse_time;
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
        since: None,
        until: None,
        limit: page_limit(query.limit, 50, 500)?,
        offset: page_offset(query.offset)?,
    };
    let rows = crate::db::read(&hub.reads, move |conn| Ok(queries::audit(conn, &filter)?)).await?;
    let entries: Vec<_> = rows.iter().map(AuditRow::entry).collect();
    Ok(HttpResponse::Ok().json(json!({ "count": entries.len(), "entries": entries })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditExportQuery {
    actor: Option<String>,
    action: Option<String>,
    /// Entries at or after this time (ISO 8601).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Entries before this time (ISO 8601).
    #[param(format = DateTime)]
    until: Option<String>,
}

fn timestamp(field: &str, value: Option<String>) -> Result<Option<String>, HubError> {
    value
        .map(|text| {
            parse_time(&text).ok_or_else(|| {
                HubError::bad_request(format!(
                    "{field} must be an ISO 8601 time such as 2026-04-20T18:00:00Z"
                ))
            })
        })
        .transpose()
}

/// The whole audit log (or the entries of one actor, action or time span) as JSON Lines,
/// oldest first, each with its place in the hash chain (`prev_hash`, `hash`), read a
/// thousand entries at a time while the response streams. `m3shd audit verify FILE` checks
/// an unfiltered export offline.
#[utoipa::path(
    get,
    path = "/api/admin/audit/export",
    tag = "administration",
    params(AuditExportQuery),
    responses((status = 200, description = "The audit log as JSON Lines, oldest first, with the hash chain (admin:audit; `?token=` accepted, for a download link)", content_type = "application/jsonl"))
)]
pub async fn export_audit(
    hub: web::Data<Hub>,
    caller: StreamCaller,
    query: Query<AuditExportQuery>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:audit")?;
    let query = query.0;
    let filter = AuditFilter {
        actor: query.actor,
        action: query.action,
        since: timestamp("since", query.since)?,
        until: timestamp("until", query.until)?,
        limit: crate::db::audit::STEP,
        offset: 0,
    };
    let pages = futures_util::stream::try_unfold(Some(0), move |after| {
        let (hub, filter) = (hub.clone(), filter.clone());
        async move {
            let Some(after) = after else {
                return Ok(None);
            };
            let rows = crate::db::read(&hub.reads, move |conn| {
                Ok(queries::audit_after(conn, &filter, after)?)
            })
            .await?;
            let Some(last) = rows.last().map(|r| r.id) else {
                return Ok(None);
            };
            let mut lines = Vec::new();
            for row in &rows {
                serde_json::to_writer(&mut lines, &row.entry())
                    .map_err(|e| HubError::internal(e.to_string()))?;
                lines.push(b'\n');
            }
            let next = (rows.len() as i64 == crate::db::audit::STEP).then_some(last);
            Ok::<_, HubError>(Some((web::Bytes::from(lines), next)))
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/jsonl")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            "attachment; filename=\"m3shd-audit.jsonl\"",
        ))
        .streaming(pages))
}
