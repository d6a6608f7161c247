//! Analytics (seed 000 section 08), for the master token or `admin:analytics`: task volume
//! and completion per day, cost per day and model, per-agent outcomes, the distribution of
//! reported confidence, and a summary. Read from counts the database keeps as tasks
//! change (`db::analytics`), so no call scans the task table.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;

use super::auth::Caller;
use super::extract::Query;
use crate::actors::dispatcher::GetKillSwitch;
use crate::actors::registry::AgentStatuses;
use crate::db::{analytics, overview, usage};
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
    let days = crate::db::read(&hub.reads, move |conn| {
        Ok(analytics::days_since(conn, &since)?)
    })
    .await?;
    let per_day: Vec<Value> = days
        .into_iter()
        .map(|day| {
            let (created, done) = (i64::from(day.created), i64::from(day.done));
            json!({ "day": day.day, "created": created, "done": done, "failed": day.failed, "completion_rate": ratio(done, created) })
        })
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
    let rows = crate::db::read(&hub.reads, |conn| Ok(analytics::agents(conn)?)).await?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|agent| {
            let (done, failed) = (i64::from(agent.done), i64::from(agent.failed));
            json!({ "agent_id": agent.agent_id, "tasks": agent.total, "done": done, "failed": failed, "success_rate": ratio(done, done + failed), "cost_usd": agent.cost_usd })
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
    let rows = crate::db::read(&hub.reads, |conn| Ok(analytics::confidence(conn)?)).await?;
    let mut buckets = [0i64; 10];
    // (tasks, sum of confidence): all, done, failed.
    let (mut all, mut done, mut failed) = ((0i64, 0.0), (0i64, 0.0), (0i64, 0.0));
    for row in &rows {
        buckets[usize::try_from(row.bucket).unwrap_or(0).min(9)] += i64::from(row.tasks);
        let add = |into: &mut (i64, f64)| {
            into.0 += i64::from(row.tasks);
            into.1 += row.total;
        };
        add(&mut all);
        match row.status.as_str() {
            "done" => add(&mut done),
            "failed" => add(&mut failed),
            _ => {}
        }
    }
    let average = |(tasks, total): (i64, f64)| (tasks > 0).then(|| total / tasks as f64);
    let distribution: Vec<Value> = buckets
        .iter()
        .enumerate()
        .map(|(i, n)| json!({ "from": i as f64 / 10.0, "to": (i + 1) as f64 / 10.0, "count": n }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "count": all.0,
        "mean": average(all),
        "mean_when_done": average(done),
        "mean_when_failed": average(failed),
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
    let agents = hub.registry.send(AgentStatuses).await??;
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
