//! The kill switch, the day's cost budget and the audit log (API.md).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::extract::{parse_json, Query};
use super::{page_limit, page_offset};
use crate::actors::dispatcher::{GetBudget, GetKillSwitch, ResetBudget, SetKillSwitch};
use crate::db::queries::{self, AuditFilter};
use crate::error::HubError;
use crate::startup::Hub;

pub async fn get_kill_switch(
    hub: web::Data<Hub>,
    caller: Caller,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:kill_switch")?;
    Ok(HttpResponse::Ok().json(hub.dispatcher.send(GetKillSwitch).await?))
}

#[derive(Debug, Default, Deserialize)]
pub struct KillSwitchBody {
    active: Option<bool>,
    reason: Option<String>,
}

/// Engages (or, with `"active": false`, clears) the switch. The body may be empty.
pub async fn set_kill_switch(
    hub: web::Data<Hub>,
    caller: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:kill_switch")?;
    let body: KillSwitchBody = if body.iter().all(u8::is_ascii_whitespace) {
        KillSwitchBody::default()
    } else {
        parse_json(&body)?
    };
    let message = SetKillSwitch {
        active: body.active.unwrap_or(true),
        reason: body.reason,
        by: caller.0.label(),
    };
    Ok(HttpResponse::Ok().json(hub.dispatcher.send(message).await??))
}

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
pub async fn get_budget(hub: web::Data<Hub>, caller: Caller) -> Result<HttpResponse, HubError> {
    caller.0.require_master()?;
    Ok(HttpResponse::Ok().json(hub.dispatcher.send(GetBudget).await?))
}

/// Stops today's reported cost so far from counting against the cap (master only).
pub async fn reset_budget(hub: web::Data<Hub>, caller: Caller) -> Result<HttpResponse, HubError> {
    caller.0.require_master()?;
    let by = caller.0.label();
    Ok(HttpResponse::Ok().json(hub.dispatcher.send(ResetBudget { by }).await??))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    limit: Option<i64>,
    offset: Option<i64>,
    actor: Option<String>,
    action: Option<String>,
}

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
