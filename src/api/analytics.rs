//! Analytics (seed 000 section 08), for the master token or `admin:analytics`: task volume
//! and completion per day, cost per day and model, per-agent outcomes, the distribution of
//! reported confidence, and a summary. Aggregated from the database on each call.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;

use super::auth::Caller;
use super::extract::Query;
use crate::actors::dispatcher::GetKillSwitch;
use crate::actors::registry::ListAgents;
use crate::db::schema::tasks;
use crate::db::{overview, usage};
use crate::error::HubError;
use crate::startup::Hub;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Window {
    /// Days back from today, today included.
    #[param(minimum = 1, maximum = 366)]
    days: Option<i64>,
}

/// The first day (YYYY-MM-DD) of a window of `days` ending today.
fn first_day(window: &Window) -> Result<String, HubError> {
    let days = window.days.unwrap_or(14);
    if !(1..=366).contains(&days) {
        return Err(HubError::bad_request("days must be between 1 and 366"));
    }
    Ok((chrono::Utc::now() - chrono::Duration::days(days - 1))
        .format("%Y-%m-%d")
        .to_string())
}

fn ratio(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Tasks created per day, and how many of them are done or failed.
#[utoipa::path(
    get,
    path = "/api/admin/analytics/tasks",
    tag = "analytics",
    params(Window),
    responses((status = 200, description = "Task analytics (admin:analytics)", body = Object))
)]
pub async fn task_analytics(
    hub: web::Data<Hub>,
    caller: Caller,
    window: Query<Window>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:analytics")?;
    let since = first_day(&window.0)?;
    let rows: Vec<(String, String)> = crate::db::read(&hub.reads, move |conn| {
        Ok(tasks::table
            .filter(tasks::created_at.ge(since))
            .select((tasks::created_at, tasks::status))
            .load(conn)?)
    })
    .await?;
    let mut days: BTreeMap<String, [i64; 3]> = BTreeMap::new();
    for (created, status) in rows {
        let day = days.entry(created.chars().take(10).collect()).or_default();
        day[0] += 1;
        match status.as_str() {
            "done" => day[1] += 1,
            "failed" => day[2] += 1,
            _ => {}
        }
    }
    let per_day: Vec<Value> = days
        .into_iter()
        .map(|(day, [created, done, failed])| json!({ "day": day, "created": created, "done": done, "failed": failed, "completion_rate": ratio(done, created) }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "days": per_day })))
}

/// Reported cost and tokens per day and model.
#[utoipa::path(
    get,
    path = "/api/admin/analytics/costs",
    tag = "analytics",
    params(Window),
    responses((status = 200, description = "Cost analytics (admin:analytics)", body = Object))
)]
pub async fn cost_analytics(
    hub: web::Data<Hub>,
    caller: Caller,
    window: Query<Window>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:analytics")?;
    let since = first_day(&window.0)?;
    let rows = crate::db::read(&hub.reads, move |conn| Ok(usage::since(conn, &since)?)).await?;
    let mut per: BTreeMap<(String, String), (f64, i64, i64)> = BTreeMap::new();
    for row in rows {
        let entry = per.entry((row.day, row.model)).or_default();
        entry.0 += row.cost_usd;
        entry.1 += i64::from(row.tokens_in);
        entry.2 += i64::from(row.tokens_out);
    }
    let total: f64 = per.values().map(|v| v.0).sum();
    let list: Vec<Value> = per
        .into_iter()
        .map(|((day, model), (cost, tin, tout))| json!({ "day": day, "model": model, "cost_usd": cost, "tokens_in": tin, "tokens_out": tout }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "total_usd": total, "costs": list })))
}

/// Per agent: tasks held to the end, done, failed, success rate, cost.
#[utoipa::path(
    get,
    path = "/api/admin/analytics/agents",
    tag = "analytics",
    responses((status = 200, description = "Agent analytics (admin:analytics)", body = Object))
)]
pub async fn agent_analytics(
    hub: web::Data<Hub>,
    caller: Caller,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:analytics")?;
    let rows: Vec<(Option<String>, String, Option<f64>)> = crate::db::read(&hub.reads, |conn| {
        Ok(tasks::table
            .filter(tasks::assigned_to.is_not_null())
            .select((tasks::assigned_to, tasks::status, tasks::cost_usd))
            .load(conn)?)
    })
    .await?;
    let mut per: BTreeMap<String, (i64, i64, i64, f64)> = BTreeMap::new();
    for (agent, status, cost) in rows {
        let entry = per.entry(agent.unwrap_or_default()).or_default();
        entry.0 += 1;
        entry.1 += i64::from(status == "done");
        entry.2 += i64::from(status == "failed");
        entry.3 += cost.unwrap_or(0.0);
    }
    let list: Vec<Value> = per
        .into_iter()
        .map(|(agent, (tasks, done, failed, cost))| {
            json!({ "agent_id": agent, "tasks": tasks, "done": done, "failed": failed, "success_rate": ratio(done, done + failed), "cost_usd": cost })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "agents": list })))
}

/// How confident workers said they were, in tenths.
#[utoipa::path(
    get,
    path = "/api/admin/analytics/metacognition",
    tag = "analytics",
    responses((status = 200, description = "Confidence against outcome (admin:analytics)", body = Object))
)]
pub async fn metacognition(hub: web::Data<Hub>, caller: Caller) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:analytics")?;
    let rows: Vec<(f64, String)> = crate::db::read(&hub.reads, |conn| {
        Ok(tasks::table
            .filter(tasks::confidence.is_not_null())
            .select((tasks::confidence.assume_not_null(), tasks::status))
            .load(conn)?)
    })
    .await?;
    let mut buckets = [0i64; 10];
    for (confidence, _) in &rows {
        buckets[((confidence * 10.0).floor() as usize).min(9)] += 1;
    }
    let mean =
        (!rows.is_empty()).then(|| rows.iter().map(|(c, _)| c).sum::<f64>() / rows.len() as f64);
    let done: Vec<f64> = rows
        .iter()
        .filter(|(_, s)| s == "done")
        .map(|(c, _)| *c)
        .collect();
    let failed: Vec<f64> = rows
        .iter()
        .filter(|(_, s)| s == "failed")
        .map(|(c, _)| *c)
        .collect();
    let average = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let distribution: Vec<Value> = buckets
        .iter()
        .enumerate()
        .map(|(i, n)| json!({ "from": i as f64 / 10.0, "to": (i + 1) as f64 / 10.0, "count": n }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "count": rows.len(),
        "mean": mean,
        "mean_when_done": average(&done),
        "mean_when_failed": average(&failed),
        "distribution": distribution,
    })))
}

/// The state of the hub at a glance.
#[utoipa::path(
    get,
    path = "/api/admin/analytics/summary",
    tag = "analytics",
    responses((status = 200, description = "Summary (admin:analytics)", body = Object))
)]
pub async fn summary(hub: web::Data<Hub>, caller: Caller) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:analytics")?;
    let (by_status, open_escalations, spent) = crate::db::read(&hub.reads, |conn| {
        Ok((
            overview::tasks_by_status(conn)?,
            overview::open_escalations(conn)?,
            usage::spent(conn, &usage::today())?,
        ))
    })
    .await?;
    let agents = hub.registry.send(ListAgents::all()).await??.agents;
    let mut agent_states: BTreeMap<&str, i64> = BTreeMap::new();
    for agent in &agents {
        *agent_states.entry(agent.status).or_default() += 1;
    }
    let kill_switch = hub.dispatcher.send(GetKillSwitch).await?;
    let cap = hub.core.settings.daily_cost_cap;
    Ok(HttpResponse::Ok().json(json!({
        "tasks": { "total": by_status.values().sum::<i64>(), "by_status": by_status },
        "agents": { "total": agents.len(), "by_status": agent_states },
        "cost_today_usd": spent,
        "daily_cost_cap_usd": cap,
        "cost_cap_reached": spent >= cap,
        "open_escalations": open_escalations,
        "kill_switch": kill_switch.active,
    })))
}
