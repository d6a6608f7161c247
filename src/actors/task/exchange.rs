//! A MESS request's changes (seed 003), on the task underneath it: a claim is a
//! compare-and-set from pending (the task is pinned to its exchange, so only a claim ever
//! assigns it), only the claimer completes or fails it, and only its requestor (or an
//! admin) cancels it. Each change writes its thread message and its log event in the
//! task's own transaction.

use actix::prelude::*;
use serde_json::json;

use super::{refuse, Change, Reply, TaskActor};
use crate::db::exchange::{self, EventRow, MessageRow};
use crate::db::models::{TaskChange, TaskRow};
use crate::domain::exchange::{pin, status_of, Update};
use crate::domain::now_iso;
use crate::domain::task::TaskStatus;
use crate::error::HubError;

/// Sent by `PATCH /api/v1/exchanges/{id}/requests/{ref}`.
#[derive(Message)]
#[rtype(result = "Result<TaskRow, HubError>")]
pub struct ExchangeUpdate {
    pub exchange_id: String,
    pub update: Update,
    /// The executor's agent, when an executor asks.
    pub agent_id: Option<String>,
    /// Who asks, as the audit and the thread name them.
    pub by: String,
    /// The requestor, or an admin: may cancel.
    pub may_cancel: bool,
    /// The response content (sealed) and its SHA-256, on completion.
    pub output: Option<(String, String)>,
    /// The thread message and the log event this change writes.
    pub message: Option<MessageRow>,
    pub event: EventRow,
}

impl Handler<ExchangeUpdate> for TaskActor {
    type Result = Reply<TaskRow>;

    fn handle(&mut self, msg: ExchangeUpdate, _: &mut Context<Self>) -> Self::Result {
        let task = &self.task;
        if task.assign_to.as_deref() != Some(pin(&msg.exchange_id).as_str()) {
            return refuse(HubError::not_found("Thread not found"));
        }
        let current = status_of(task.status);
        let claimer = task.assigned_to.is_some() && task.assigned_to == msg.agent_id;
        let now = now_iso();
        let mut columns = TaskChange::default();
        match msg.update {
            Update::Claim if task.status != TaskStatus::Queued => {
                return refuse(HubError::conflict(format!("Request is already {current}")));
            }
            Update::Claim => {
                let Some(agent) = msg.agent_id.clone() else {
                    return refuse(HubError::forbidden("Only an executor may claim a request"));
                };
                columns.status = Some(TaskStatus::Assigned.as_str().into());
                columns.assigned_to = Some(Some(agent));
                columns.attempts = Some(task.attempts + 1);
                columns.assigned_at = Some(Some(now));
                columns.reason = Some(None);
            }
            Update::Complete | Update::Fail if !task.status.holds_slot() => {
                return refuse(HubError::conflict(format!(
                    "Request is {current}; only a claimed request is {}",
                    msg.update.code()
                )));
            }
            Update::Complete | Update::Fail if !claimer => {
                return refuse(HubError::forbidden(
                    "Only the executor that claimed the request may finish it",
                ));
            }
            Update::Complete | Update::Fail => {
                let status = if msg.update == Update::Complete {
                    TaskStatus::Done
                } else {
                    TaskStatus::Failed
                };
                columns.status = Some(status.as_str().into());
                columns.output = msg.output.as_ref().map(|(sealed, _)| Some(sealed.clone()));
                columns.completed_at = Some(Some(now));
            }
            Update::Cancel if !msg.may_cancel => {
                return refuse(HubError::forbidden(
                    "Only the requestor may cancel a request",
                ));
            }
            Update::Cancel if task.status.is_terminal() => {
                return refuse(HubError::conflict(format!("Request is already {current}")));
            }
            Update::Cancel => {
                columns.status = Some(TaskStatus::Cancelled.as_str().into());
                columns.completed_at = Some(Some(now));
            }
        }
        let (message, event) = (msg.message, msg.event);
        let change = Change {
            columns,
            actor: msg.by,
            audit: "exchange.update",
            link: msg.update.code(),
            detail: json!({ "exchange": msg.exchange_id, "output_sha256": msg.output.map(|(_, sha)| sha) }),
            escalate: None,
            remember: None,
            returned_by_holder: false,
            fence: None,
            also: Some(Box::new(move |conn| {
                exchange::record(conn, message.as_ref(), &event)
            })),
        };
        AtomicResponse::new(self.apply(change))
    }
}
