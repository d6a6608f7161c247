//! TaskActor: one per live task (queued, assigned or running). Owns the task's state
//! machine: every change is checked here, written as a conditional update (the row must
//! still be in the state this actor believes), and only after the commit does the actor
//! update itself, publish the event and tell the Dispatcher. On a terminal state it stops;
//! the row stays in the database.
//!
//! Handles: [`Assign`], [`Report`], [`AppendChunk`], [`Requeue`].

use actix::prelude::*;
use diesel::prelude::*;
use serde_json::json;

use super::dispatcher::{Dispatcher, Ready, TaskReady, TaskReleased, TaskWithdrawn};
use super::registry::{ChildStopped, Registry};
use super::Core;
use crate::db::models::{NewAuditRow, NewChunkRow, TaskChange, TaskRow};
use crate::db::schema::{task_stream_chunks, tasks};
use crate::domain::access::Principal;
use crate::domain::event::{Audience, HubEvent};
use crate::domain::now_iso;
use crate::domain::task::{QueueKey, TaskStatus, Urgency};
use crate::error::HubError;
use crate::views::task_event;

/// What the actor keeps of its task between messages.
#[derive(Debug, Clone)]
pub struct LiveTask {
    pub id: i32,
    pub status: TaskStatus,
    pub assigned_to: Option<String>,
    pub created_by: String,
    pub required_capability: String,
    pub assign_to: Option<String>,
    pub priority: i32,
    pub urgency: Urgency,
    pub deadline: Option<String>,
    pub attempts: i32,
}

impl LiveTask {
    pub fn from_row(row: &TaskRow) -> Result<Self, HubError> {
        Ok(Self {
            id: row.id,
            status: row.status.parse()?,
            assigned_to: row.assigned_to.clone(),
            created_by: row.created_by.clone(),
            required_capability: row.required_capability.clone(),
            assign_to: row.assign_to.clone(),
            priority: row.priority,
            urgency: row.urgency.parse().unwrap_or(Urgency::Normal),
            deadline: row.deadline.clone(),
            attempts: row.attempts,
        })
    }

    /// The Dispatcher's view of this task while it waits in the queue.
    pub fn ready(&self) -> Ready {
        Ready {
            task_id: self.id,
            capability: self.required_capability.clone(),
            pin: self.assign_to.clone(),
            key: QueueKey::new(
                self.id,
                self.priority,
                self.urgency,
                self.deadline.as_deref(),
            ),
        }
    }

    pub fn audience(&self) -> Audience {
        Audience::Task {
            assigned_to: self.assigned_to.clone(),
            created_by: self.created_by.clone(),
        }
    }

    /// Whether `principal` may report on this task: the master token or the holder.
    fn reported_by_holder(&self, principal: &Principal) -> bool {
        principal.is_master()
            || (self.assigned_to.is_some() && principal.agent_id() == self.assigned_to.as_deref())
    }
}

pub struct TaskActor {
    task: LiveTask,
    next_chunk_seq: i32,
    core: Core,
    dispatcher: Addr<Dispatcher>,
    registry: Addr<Registry>,
}

impl TaskActor {
    pub fn new(
        task: LiveTask,
        next_chunk_seq: i32,
        core: Core,
        dispatcher: Addr<Dispatcher>,
        registry: Addr<Registry>,
    ) -> Self {
        Self {
            task,
            next_chunk_seq,
            core,
            dispatcher,
            registry,
        }
    }

    /// Writes `change` if the row is still in the state this actor knows, then (after the
    /// commit) applies it here, publishes the events and tells the Dispatcher.
    fn apply(
        &mut self,
        mut change: TaskChange,
        actor: String,
        action: &'static str,
    ) -> AtomicResponse<Self, Result<TaskRow, HubError>> {
        let id = self.task.id;
        let expected = self.task.status.as_str();
        let db = self.core.db.clone();
        change.updated_at = Some(now_iso());
        let write = async move {
            db.write(move |conn| {
                let row = diesel::update(
                    tasks::table
                        .filter(tasks::id.eq(id))
                        .filter(tasks::status.eq(expected)),
                )
                .set(&change)
                .get_result::<TaskRow>(conn)
                .optional()?
                .ok_or_else(|| HubError::conflict(format!("task {id} changed meanwhile; retry")))?;
                let detail = json!({ "status": row.status, "assigned_to": row.assigned_to });
                NewAuditRow::new(&actor, action, format!("task:{id}"), Some(detail))
                    .append(conn)?;
                Ok(row)
            })
            .await
        };
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
            |written, this, ctx| {
                let row = written?;
                this.committed(&row, ctx)?;
                Ok(row)
            },
        )))
    }

    fn committed(&mut self, row: &TaskRow, ctx: &mut Context<Self>) -> Result<(), HubError> {
        let previous = self.task.status;
        let previous_holder = self.task.assigned_to.clone();
        self.task = LiveTask::from_row(row)?;
        let now = self.task.status;
        let name = match (previous, now) {
            (TaskStatus::Queued, TaskStatus::Assigned) => "task_assigned",
            _ => "task_updated",
        };
        // The update also reaches the old holder, so a worker learns it lost the task.
        let audience = Audience::Task {
            assigned_to: previous_holder.or(row.assigned_to.clone()),
            created_by: row.created_by.clone(),
        };
        self.core
            .publish(HubEvent::new(name, task_event(row), audience));
        if now == TaskStatus::Queued && previous != TaskStatus::Queued {
            self.core.publish(HubEvent::new(
                "task_queued",
                task_event(row),
                self.task.audience(),
            ));
            self.dispatcher.do_send(TaskReady(self.task.ready()));
        }
        if previous.holds_slot() && !now.holds_slot() {
            self.dispatcher.do_send(TaskReleased {
                task_id: self.task.id,
            });
        }
        if previous == TaskStatus::Queued && now == TaskStatus::Cancelled {
            self.dispatcher.do_send(TaskWithdrawn {
                task_id: self.task.id,
            });
        }
        if now.is_terminal() {
            ctx.stop();
        }
        Ok(())
    }
}

impl Actor for TaskActor {
    type Context = Context<Self>;

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.registry.do_send(ChildStopped::Task(self.task.id));
        Running::Stop
    }
}

/// Sent by the Dispatcher, which has reserved a slot of `agent_id` for this task.
/// Fails (and the Dispatcher frees the slot) if the task is no longer queued.
#[derive(Message)]
#[rtype(result = "Result<TaskRow, HubError>")]
pub struct Assign {
    pub agent_id: String,
}

impl Handler<Assign> for TaskActor {
    type Result = AtomicResponse<Self, Result<TaskRow, HubError>>;

    fn handle(&mut self, msg: Assign, _: &mut Context<Self>) -> Self::Result {
        if self.task.status != TaskStatus::Queued {
            return refuse(HubError::conflict(format!(
                "task {} is {}, not queued",
                self.task.id, self.task.status
            )));
        }
        let now = now_iso();
        let change = TaskChange {
            status: Some(TaskStatus::Assigned.as_str().into()),
            assigned_to: Some(Some(msg.agent_id)),
            reason: Some(None),
            attempts: Some(self.task.attempts + 1),
            assigned_at: Some(Some(now)),
            ..TaskChange::default()
        };
        self.apply(change, "dispatcher".into(), "task.assign")
    }
}

/// A worker's or operator's report (`PUT /api/tasks/{id}`), validated by the handler.
#[derive(Debug, Clone, Default)]
pub struct ReportBody {
    pub status: Option<TaskStatus>,
    /// Sealed output.
    pub output: Option<String>,
    pub reason: Option<String>,
    pub cost_usd: Option<f64>,
    pub tokens_in: Option<i32>,
    pub tokens_out: Option<i32>,
    pub confidence: Option<f64>,
}

/// Sent by the update handler.
#[derive(Message)]
#[rtype(result = "Result<TaskRow, HubError>")]
pub struct Report {
    pub principal: Principal,
    pub body: ReportBody,
}

impl Handler<Report> for TaskActor {
    type Result = AtomicResponse<Self, Result<TaskRow, HubError>>;

    fn handle(&mut self, msg: Report, _: &mut Context<Self>) -> Self::Result {
        let current = self.task.status;
        let body = msg.body;
        let next = body.status.unwrap_or(current);
        let cancelling = next == TaskStatus::Cancelled;
        let may_report = self.task.reported_by_holder(&msg.principal)
            || (cancelling && msg.principal.agent_id() == Some(self.task.created_by.as_str()));
        if !may_report {
            return refuse(HubError::conflict(format!(
                "task {} is not held by you",
                self.task.id
            )));
        }
        if let Err(error) = current.check_report(next) {
            return refuse(error);
        }
        let now = now_iso();
        let mut change = TaskChange {
            status: Some(next.as_str().into()),
            output: body.output.map(Some),
            reason: body.reason.map(Some),
            cost_usd: body.cost_usd.map(Some),
            tokens_in: body.tokens_in.map(Some),
            tokens_out: body.tokens_out.map(Some),
            confidence: body.confidence.map(Some),
            ..TaskChange::default()
        };
        if next == TaskStatus::Running && current != TaskStatus::Running {
            change.started_at = Some(Some(now.clone()));
        }
        if next.is_terminal() {
            change.completed_at = Some(Some(now));
        }
        if next == TaskStatus::Queued {
            change.assigned_to = Some(None);
            change.reason = Some(Some(
                change
                    .reason
                    .flatten()
                    .unwrap_or_else(|| "handed_back".into()),
            ));
        }
        self.apply(change, msg.principal.label(), "task.update")
    }
}

/// Sent by the Dispatcher when the holder went offline or was removed: back to the queue.
#[derive(Message)]
#[rtype(result = "Result<TaskRow, HubError>")]
pub struct Requeue {
    pub agent_id: String,
    pub reason: &'static str,
}

impl Handler<Requeue> for TaskActor {
    type Result = AtomicResponse<Self, Result<TaskRow, HubError>>;

    fn handle(&mut self, msg: Requeue, _: &mut Context<Self>) -> Self::Result {
        if !self.task.status.holds_slot()
            || self.task.assigned_to.as_deref() != Some(msg.agent_id.as_str())
        {
            return refuse(HubError::conflict(format!(
                "task {} is no longer held by {}",
                self.task.id, msg.agent_id
            )));
        }
        let change = TaskChange {
            status: Some(TaskStatus::Queued.as_str().into()),
            assigned_to: Some(None),
            reason: Some(Some(msg.reason.into())),
            ..TaskChange::default()
        };
        self.apply(change, "dispatcher".into(), "task.requeue")
    }
}

/// A live output chunk from the holder (`POST /api/tasks/{id}/stream`).
#[derive(Message)]
#[rtype(result = "Result<i32, HubError>")]
pub struct AppendChunk {
    pub principal: Principal,
    pub chunk: String,
}

impl Handler<AppendChunk> for TaskActor {
    type Result = AtomicResponse<Self, Result<i32, HubError>>;

    fn handle(&mut self, msg: AppendChunk, _: &mut Context<Self>) -> Self::Result {
        if !self.task.reported_by_holder(&msg.principal) {
            return refuse(HubError::conflict(format!(
                "task {} is not held by you",
                self.task.id
            )));
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
        let db = self.core.db.clone();
        let write = async move {
            db.write(move |conn| {
                diesel::insert_into(task_stream_chunks::table)
                    .values(&row)
                    .execute(conn)?;
                let detail = json!({ "seq": row.seq, "bytes": msg.chunk.len() });
                NewAuditRow::new(
                    &actor,
                    "task.stream",
                    format!("task:{}", row.task_id),
                    Some(detail),
                )
                .append(conn)?;
                Ok((row.seq, row.agent_id, msg.chunk))
            })
            .await
        };
        AtomicResponse::new(Box::pin(write.into_actor(self).map(|written, this, _| {
            let (seq, agent_id, chunk) = written?;
            this.next_chunk_seq = seq + 1;
            let data = json!({ "task_id": this.task.id, "seq": seq, "agent_id": agent_id, "chunk": chunk });
            this.core.publish(HubEvent::new("task_stream", data, this.task.audience()));
            Ok(seq)
        })))
    }
}

fn refuse<T: 'static>(error: HubError) -> AtomicResponse<TaskActor, Result<T, HubError>> {
    AtomicResponse::new(Box::pin(actix::fut::ready(Err(error))))
}
