//! Verification and the provenance chain of a task (master token only).

use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;

use super::auth::Caller;
use super::extract::Query;
use super::tasks::{task_id, task_reply};
use crate::actors::dispatcher::TaskVerified;
use crate::crypto::provenance::fingerprint;
use crate::db::models::{NewAuditRow, TaskRow};
use crate::db::provenance::{self, Broken, Link};
use crate::db::reputation;
use crate::db::{queries, schema::tasks};
use crate::domain::event::{Audience, HubEvent};
use crate::domain::now_iso;
use crate::domain::reputation::Outcome;
use crate::error::HubError;
use crate::startup::Hub;
use crate::views::task_event;

/// Marks a done task verified, recorded in its chain and the audit log.
#[utoipa::path(
    post,
    path = "/api/tasks/{id}/verify",
    tag = "tasks",
    params(("id" = i64, Path, description = "The numeric id")),
    responses((status = 200, description = "Vouch for a task's result (master)", body = Object))
)]
pub async fn verify_task(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require_master()?;
    let id = task_id(&path)?;
    let core = hub.core.clone();
    let actor = caller.0.label();
    let row = hub
        .core
        .db
        .write(move |conn| {
            let row: TaskRow =
                diesel::update(tasks::table.find(id).filter(tasks::status.eq("done")))
                    .set((tasks::verified.eq(true), tasks::updated_at.eq(now_iso())))
                    .get_result(conn)
                    .optional()?
                    .ok_or_else(|| match queries::task(conn, id) {
                        Ok(Some(task)) => HubError::conflict(format!(
                            "task {id} is {}; only done tasks are verified",
                            task.status
                        )),
                        _ => HubError::not_found(format!("no task {id}")),
                    })?;
            NewAuditRow::new(&actor, "task.verify", format!("task:{id}"), None).append(conn)?;
            if let Some(holder) = &row.assigned_to {
                reputation::record(conn, holder, &row.required_capability, Outcome::Verified)?;
            }
            provenance::append(conn, &core.notary, id, "verified", &actor, json!({}))?;
            Ok(row)
        })
        .await?;
    let audience = Audience::Task {
        assigned_to: row.assigned_to.clone(),
        created_by: row.created_by.clone(),
    };
    hub.core
        .publish(HubEvent::new("task_updated", task_event(&row), audience));
    if let Some(agent_id) = row.assigned_to.clone() {
        let capability = row.required_capability.clone();
        hub.dispatcher.do_send(TaskVerified {
            agent_id,
            capability,
        });
    }
    task_reply(&hub, row).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProvenanceQuery {
    /// List only the latest `last` links (the verdict still covers the whole chain).
    #[param(minimum = 1)]
    last: Option<i64>,
}

/// The chain, and whether it (and the task's current output) still holds.
#[utoipa::path(
    get,
    path = "/api/tasks/{id}/provenance",
    tag = "tasks",
    params(("id" = i64, Path, description = "The numeric id"), ProvenanceQuery),
    responses((status = 200, description = "A task's provenance chain (master)", body = Object))
)]
pub async fn get_provenance(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    query: Query<ProvenanceQuery>,
) -> Result<HttpResponse, HubError> {
    if query.0.last.is_some_and(|last| last < 1) {
        return Err(HubError::bad_request("last must be at least 1"));
    }
    caller.0.require_master()?;
    let id = task_id(&path)?;
    let (task, links) = crate::db::read(&hub.reads, move |conn| {
        Ok((queries::task(conn, id)?, provenance::chain(conn, id)?))
    })
    .await?;
    let task = task.ok_or_else(|| HubError::not_found(format!("no task {id}")))?;
    let broken = provenance::check(&hub.core.notary, &links)
        .err()
        .or_else(|| output_mismatch(&hub, &task, &links));
    if let Some(broken) = &broken {
        tracing::warn!(
            task.id = id,
            link.seq = broken.seq,
            "provenance check failed"
        );
    }
    let shown = query.0.last.map_or(links.len(), |last| {
        usize::try_from(last).map_or(links.len(), |last| last.min(links.len()))
    });
    let listed = links.len() - shown;
    let chain: Vec<Value> = links[listed..]
        .iter()
        .map(|l| {
            json!({
                "seq": l.seq,
                "action": l.action,
                "actor": l.actor,
                "detail": serde_json::from_str::<Value>(&l.detail).unwrap_or(Value::Null),
                "prev_hash": l.prev_hash,
                "hash": l.hash,
                "created_at": l.created_at,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "task_id": id,
        "valid": broken.is_none(),
        "broken": broken,
        "count": links.len(),
        "chain": chain,
    })))
}

/// The stored output must still be the one the chain fingerprinted last.
fn output_mismatch(hub: &Hub, task: &TaskRow, links: &[Link]) -> Option<Broken> {
    let (seq, expected) = links.iter().rev().find_map(|l| {
        let detail: Value = serde_json::from_str(&l.detail).ok()?;
        Some((l.seq, detail.get("output_sha256")?.as_str()?.to_string()))
    })?;
    let current = task
        .output
        .as_deref()
        .and_then(|sealed| hub.core.vault.open(sealed))
        .map(|o| fingerprint(&o.plaintext));
    (current.as_deref() != Some(expected.as_str())).then_some(Broken {
        seq,
        reason: "the task's output is not the one this link recorded",
    })
}
