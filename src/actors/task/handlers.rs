//! The messages a TaskActor handles.

use actix::prelude::*;
use diesel::prelude::*;
use serde_json::json;

use super::{refuse, stale_holder, Change, Reply, TaskActor, HANDED_BACK};
use crate::actors::dispatcher::TaskReady;
use crate::crypto::provenance::fingerprint;
use crate::db::models::{NewAuditRow, NewChunkRow, TaskChange, TaskRow};
use crate::db::schema::task_stream_chunks;
use crate::db::{consumers, provenance};
use crate::domain::access::Principal;
use crate::domain::event::HubEvent;
use crate::domain::onboarding::ConsumerFence;
use crate::domain::remember::Extracted;
use crate::domain::task::TaskStatus;
use crate::domain::{iso, now_iso};
use crate::error::HubError;

impl TaskActor {
    /// When the current holder's lease runs out unless heartbeats renew it.
    fn lease_end(&self) -> Option<String> {
        let lease = chrono::Duration::seconds(self.core.settings.heartbeat_timeout as i64);
        Some(iso(chrono::Utc::now() + lease))
    }
}

/// Sent by the Dispatcher, which has reserved a slot of `agent_id` for this task.
/// Fails (and the Dispatcher frees the slot) if the task is no longer queued: assignment
/// is a conditional update, so no task is ever assigned twice.
#[derive(Message)]
#[rtype(result = "Result<TaskRow, HubError>")]
pub struct Assign {
    pub agent_id: String,
}

impl Handler<Assign> for TaskActor {
    type Result = Reply<TaskRow>;

    fn handle(&mut self, msg: Assign, _: &mut Context<Self>) -> Self::Result {
        if self.task.status != TaskStatus::Queued || self.task.blocked {
            return refuse(HubError::conflict(format!(
                "task {} is not ready to assign",
                self.task.id
            )));
        }
        let columns = TaskChange {
            status: Some(TaskStatus::Assigned.as_str().into()),
            assigned_to: Some(Some(msg.agent_id)),
            reason: Some(None),
            attempts: Some(self.task.attempts + 1),
            assigned_at: Some(Some(now_iso())),
            lease_expires_at: Some(self.lease_end()),
            ..TaskChange::default()
        };
        let change = Change {
            columns,
            actor: "dispatcher".into(),
            audit: "task.assign",
            link: "assigned",
            detail: json!({}),
            escalate: None,
            remember: None,
            returned_by_holder: false,
            fence: None,
            also: None,
        };
        AtomicResponse::new(self.apply(change))
    }
}

/// A worker's or operator's report (`PUT /api/tasks/{id}`), validated by the handler.
#[derive(Debug, Clone, Default)]
pub struct ReportBody {
    pub status: Option<TaskStatus>,
    /// Sealed output, and the SHA-256 of its plaintext for the provenance chain.
    pub output: Option<(String, String)>,
    pub reason: Option<String>,
    pub cost_usd: Option<f64>,
    pub tokens_in: Option<i32>,
    pub tokens_out: Option<i32>,
    pub confidence: Option<f64>,
    pub model: Option<String>,
    /// `[REMEMBER]` entries of the output, read when the task finishes.
    pub remember: Extracted,
}

/// Sent by the update handler.
#[derive(Message)]
#[rtype(result = "Result<TaskRow, HubError>")]
pub struct Report {
    pub principal: Principal,
    pub body: ReportBody,
    pub fence: Option<ConsumerFence>,
}

impl Handler<Report> for TaskActor {
    type Result = Reply<TaskRow>;

    fn handle(&mut self, msg: Report, _: &mut Context<Self>) -> Self::Result {
        let current = self.task.status;
        let body = msg.body;
        let next = body.status.unwrap_or(current);
        // Besides the holder, the creator may cancel, and so may people overseeing the
        // mesh (an operator on the dashboard).
        let cancelling = next == TaskStatus::Cancelled
            && (msg.principal.agent_id() == Some(self.task.created_by.as_str())
                || msg.principal.confined_to().is_none());
        if !self.task.held_by(&msg.principal) && !cancelling {
            return refuse(stale_holder());
        }
        if let Err(error) = current.check_report(next) {
            return refuse(error);
        }
        let now = now_iso();
        let (output, output_sha256) = body.output.map_or((None, None), |(sealed, sha)| {
            (Some(Some(sealed)), Some(sha))
        });
        let mut columns = TaskChange {
            status: Some(next.as_str().into()),
            output,
            reason: body.reason.map(Some),
            cost_usd: body.cost_usd.map(Some),
            tokens_in: body.tokens_in.map(Some),
            tokens_out: body.tokens_out.map(Some),
            confidence: body.confidence.map(Some),
            model: body.model,
            lease_expires_at: Some(if next.holds_slot() {
                self.lease_end()
            } else {
                None
            }),
            ..TaskChange::default()
        };
        if next == TaskStatus::Running && current != TaskStatus::Running {
            columns.started_at = Some(Some(now.clone()));
        }
        if next.is_terminal() {
            columns.completed_at = Some(Some(now));
        }
        if next == TaskStatus::Queued {
            columns.assigned_to = Some(None);
            columns.reason = Some(Some(
                columns
                    .reason
                    .flatten()
                    .unwrap_or_else(|| HANDED_BACK.into()),
            ));
        }
        let link = if next == current {
            "progress"
        } else {
            next.as_str()
        };
        let detail = json!({ "output_sha256": output_sha256 });
        // What a finished task asks to remember goes to the agent that ran it.
        let remember = match (&self.task.assigned_to, next) {
            (Some(holder), TaskStatus::Done | TaskStatus::Failed) if !body.remember.is_empty() => {
                Some((holder.clone(), body.remember))
            }
            _ => None,
        };
        let change = Change {
            columns,
            actor: msg.principal.label(),
            audit: "task.update",
            link,
            detail,
            escalate: None,
            remember,
            returned_by_holder: next == TaskStatus::Queued,
            fence: msg.fence,
            also: None,
        };
        AtomicResponse::new(self.apply(change))
    }
}

/// `POST /api/tasks/{id}/handoff`: the holder (or the master token) passes the task to
/// another agent; it is pinned to that agent and dispatched when the agent has room.
#[derive(Message)]
#[rtype(result = "Result<TaskRow, HubError>")]
pub struct Handoff {
    pub principal: Principal,
    pub to: String,
    pub reason: Option<String>,
    pub fence: Option<ConsumerFence>,
}

impl Handler<Handoff> for TaskActor {
    type Result = Reply<TaskRow>;

    fn handle(&mut self, msg: Handoff, _: &mut Context<Self>) -> Self::Result {
        // The holder hands off its own task; people overseeing the mesh move any.
        if !self.task.held_by(&msg.principal) && msg.principal.confined_to().is_some() {
            return refuse(stale_holder());
        }
        if self.task.assigned_to.as_deref() == Some(msg.to.as_str()) {
            return refuse(HubError::conflict(format!(
                "task {} is already held by {}",
                self.task.id, msg.to
            )));
        }
        let movable = self.task.status.holds_slot()
            || (self.task.status == TaskStatus::Queued && !self.task.blocked);
        if !movable {
            return refuse(HubError::conflict(format!(
                "a {} task cannot be handed off",
                self.task.status
            )));
        }
        let columns = TaskChange {
            status: Some(TaskStatus::Queued.as_str().into()),
            assigned_to: Some(None),
            assign_to: Some(Some(msg.to.clone())),
            reason: Some(Some("handed_off".into())),
            lease_expires_at: Some(None),
            ..TaskChange::default()
        };
        let detail =
            json!({ "from": self.task.assigned_to, "to": msg.to, "handoff_reason": msg.reason });
        let change = Change {
            columns,
            actor: msg.principal.label(),
            audit: "task.handoff",
            link: "handed_off",
            detail,
            escalate: None,
            remember: None,
            returned_by_holder: false,
            fence: msg.fence,
            also: None,
        };
        AtomicResponse::new(self.apply(change))
    }
}

/// Sent by the Dispatcher when the holder went offline or was removed.
#[derive(Message)]
#[rtype(result = "Result<TaskRow, HubError>")]
pub struct Requeue {
    pub agent_id: String,
    pub reason: &'static str,
}

impl Handler<Requeue> for TaskActor {
    type Result = Reply<TaskRow>;

    fn handle(&mut self, msg: Requeue, _: &mut Context<Self>) -> Self::Result {
        if !self.task.status.holds_slot()
            || self.task.assigned_to.as_deref() != Some(msg.agent_id.as_str())
        {
            return refuse(stale_holder());
        }
        // A holder waiting for a person's decision keeps the task (and its lease) until the
        // decision; the requeue happens then.
        if let Some(pending) = &self.approval {
            let refusal = HubError::conflict(format!(
                "task {} waits for approval {}",
                self.task.id, pending.id
            ));
            self.requeue_after_decision = Some(msg.reason);
            return refuse(refusal);
        }
        AtomicResponse::new(self.lose_holder(msg.reason))
    }
}

/// Sent by the pipeline (or the Dispatcher) when every dependency is done.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release;

impl Handler<Release> for TaskActor {
    type Result = ();

    fn handle(&mut self, _: Release, ctx: &mut Context<Self>) {
        if self.task.blocked && self.task.status == TaskStatus::Queued {
            self.task.blocked = false;
            self.dispatcher.do_send(TaskReady(self.task.ready()));
            self.arm_unclaimed_deadline(ctx);
        }
    }
}

/// Sent by the pipeline (or the Dispatcher) when a dependency failed or was cancelled.
#[derive(Message)]
#[rtype(result = "Result<TaskRow, HubError>")]
pub struct FailDependency {
    pub dependency: i32,
}

impl Handler<FailDependency> for TaskActor {
    type Result = Reply<TaskRow>;

    fn handle(&mut self, msg: FailDependency, _: &mut Context<Self>) -> Self::Result {
        if self.task.status != TaskStatus::Queued {
            return refuse(HubError::conflict(format!(
                "task {} is already {}",
                self.task.id, self.task.status
            )));
        }
        let columns = TaskChange {
            status: Some(TaskStatus::Failed.as_str().into()),
            reason: Some(Some("dependency_failed".into())),
            completed_at: Some(Some(now_iso())),
            ..TaskChange::default()
        };
        let detail = json!({ "dependency": msg.dependency });
        let change = Change {
            columns,
            actor: "hub".into(),
            audit: "task.dependency_failed",
            link: "failed",
            detail,
            escalate: None,
            remember: None,
            returned_by_holder: false,
            fence: None,
            also: None,
        };
        AtomicResponse::new(self.apply(change))
    }
}

/// The running totals a holder reports with a chunk: the task's cost and tokens so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cost_usd: Option<f64>,
    pub tokens_in: Option<i32>,
    pub tokens_out: Option<i32>,
}

impl Usage {
    fn reported(&self) -> bool {
        self.cost_usd.is_some() || self.tokens_in.is_some() || self.tokens_out.is_some()
    }
}

/// A live output chunk from the holder (`POST /api/tasks/{id}/stream`), with the usage
/// so far if the holder reports it.
#[derive(Message)]
#[rtype(result = "Result<i32, HubError>")]
pub struct AppendChunk {
    pub principal: Principal,
    pub chunk: String,
    pub usage: Usage,
    pub fence: Option<ConsumerFence>,
}

impl Handler<AppendChunk> for TaskActor {
    type Result = Reply<i32>;

    fn handle(&mut self, msg: AppendChunk, _: &mut Context<Self>) -> Self::Result {
        if !self.task.held_by(&msg.principal) {
            return refuse(stale_holder());
        }
        if !self.task.status.holds_slot() {
            return refuse(HubError::conflict(format!(
                "task {} is {}; only assigned or running tasks stream",
                self.task.id, self.task.status
            )));
        }
        let row = NewChunkRow {
            task_id: self.task.id,
            seq: self.next_chunk_seq,
            chunk: self.core.vault.seal(&msg.chunk),
            agent_id: msg.principal.agent_id().unwrap_or("master").to_string(),
            created_at: now_iso(),
        };
        let actor = msg.principal.label();
        let (usage, fence, reporter) = (msg.usage, msg.fence.clone(), actor.clone());
        let core = self.core.clone();
        let write = async move {
            core.db
                .write(move |conn| {
                    consumers::check(conn, msg.fence.as_ref())?;
                    diesel::insert_into(task_stream_chunks::table).values(&row).execute(conn)?;
                    let detail = json!({ "seq": row.seq, "bytes": msg.chunk.len(), "sha256": fingerprint(&msg.chunk) });
                    NewAuditRow::new(&actor, "task.stream", format!("task:{}", row.task_id), Some(detail.clone())).append(conn)?;
                    provenance::append(conn, &core.notary, row.task_id, "stream", &actor, detail)?;
                    Ok((row.seq, row.agent_id, msg.chunk))
                })
                .await
        };
        AtomicResponse::new(Box::pin(write.into_actor(self).then(
            move |written, this, ctx| -> ResponseActFuture<Self, Result<i32, HubError>> {
                let (seq, agent_id, chunk) = match written {
                    Ok(written) => written,
                    Err(error) => return Box::pin(actix::fut::ready(Err(error))),
                };
                this.next_chunk_seq = seq + 1;
                let data = json!({ "task_id": this.task.id, "seq": seq, "agent_id": agent_id, "chunk": chunk });
                this.core.publish(HubEvent::new("task_stream", data, this.task.audience()));
                if this.task.status == TaskStatus::Running {
                    this.arm_progress_deadline(ctx);
                }
                if !usage.reported() {
                    return Box::pin(actix::fut::ready(Ok(seq)));
                }
                // The totals are the task's: written as a report's are (the day's usage,
                // the budgets), after the chunk they came with.
                let change = Change {
                    columns: TaskChange {
                        cost_usd: usage.cost_usd.map(Some),
                        tokens_in: usage.tokens_in.map(Some),
                        tokens_out: usage.tokens_out.map(Some),
                        ..TaskChange::default()
                    },
                    actor: reporter,
                    audit: "task.usage",
                    link: "usage",
                    detail: json!({ "seq": seq }),
                    escalate: None,
                    remember: None,
                    returned_by_holder: false,
                    fence,
                    also: None,
                };
                Box::pin(this.apply(change).map(move |row, _, _| row.map(|_| seq)))
            },
        )))
    }
}

/// A peer hub that ran this (relayed) task reports its outcome.
#[derive(Message)]
#[rtype(result = "Result<TaskRow, HubError>")]
pub struct CompleteRemotely {
    pub peer: String,
    /// `done` or `failed`.
    pub status: TaskStatus,
    /// Sealed output and the SHA-256 of its plaintext.
    pub output: Option<(String, String)>,
    pub reason: Option<String>,
}

impl Handler<CompleteRemotely> for TaskActor {
    type Result = Reply<TaskRow>;

    fn handle(&mut self, msg: CompleteRemotely, _: &mut Context<Self>) -> Self::Result {
        let relayed_to = format!("peer:{}", msg.peer);
        if self.task.status != TaskStatus::Queued
            || self.task.assign_to.as_deref() != Some(relayed_to.as_str())
        {
            return refuse(stale_holder());
        }
        if !msg.status.is_terminal() || msg.status == TaskStatus::Cancelled {
            return refuse(HubError::bad_request("status must be done or failed"));
        }
        let (output, output_sha256) = msg.output.map_or((None, None), |(sealed, sha)| {
            (Some(Some(sealed)), Some(sha))
        });
        let columns = TaskChange {
            status: Some(msg.status.as_str().into()),
            output,
            reason: msg.reason.map(Some),
            completed_at: Some(Some(now_iso())),
            ..TaskChange::default()
        };
        let detail = json!({ "peer": msg.peer, "output_sha256": output_sha256 });
        let change = Change {
            columns,
            actor: relayed_to,
            audit: "task.remote_result",
            link: msg.status.as_str(),
            detail,
            escalate: None,
            remember: None,
            returned_by_holder: false,
            fence: None,
            also: None,
        };
        AtomicResponse::new(self.apply(change))
    }
}
