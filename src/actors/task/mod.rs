//! TaskActor: one per live task (assigned or running, and queued unless it sleeps: see
//! [`LiveTask::may_sleep`]). Owns the task's state
//! machine. Every change is checked here, written as a conditional update (the row must
//! still be in the state this actor believes) together with its audit row and its
//! provenance link, and only after the commit does the actor update itself, publish the
//! event and tell the Dispatcher (and its pipeline). On a terminal state it stops; the row
//! stays in the database.
//!
//! The hub, not the worker, keeps work from being lost or run twice: only the holder may
//! report (others get "stale holder"), a holder lost to a missed heartbeat or a running
//! timeout puts the task back in the queue, and after `max_attempts` assignments the task
//! fails with an escalation.
//!
//! Handles (see `handlers.rs`): [`Assign`], [`Report`], [`AppendChunk`], [`Handoff`],
//! [`Requeue`], [`Release`], [`FailDependency`].

mod approvals;
mod exchange;
mod handlers;
mod watchdogs;

use actix::prelude::*;
use diesel::prelude::*;
use serde_json::{json, Value};

pub use approvals::{DecideApproval, RequestApproval};
pub use exchange::ExchangeUpdate;
pub use handlers::{
    AppendChunk, Assign, CompleteRemotely, FailDependency, Handoff, Release, Report, ReportBody,
    Requeue, Usage,
};

use super::dispatcher::{
    Dispatcher, Ready, TaskFinished, TaskReady, TaskReleased, UsageAdded, UsageTotals,
};
use super::pipeline::MemberFinished;
use super::registry::{AlsoWrite, ChildStopped, Directory, Registry};
use super::Core;
use crate::alerts::Alert;
use crate::db::approvals as approvals_db;
use crate::db::inbox::{self, InboxKind};
use crate::db::models::{EscalationRow, NewAuditRow, NewEscalationRow, TaskChange, TaskRow};
use crate::db::schema::tasks;
use crate::db::{consumers, memory, provenance, reputation, usage};
use crate::domain::access::{EscalationScope, Principal};
use crate::domain::event::{Audience, HubEvent};
use crate::domain::now_iso;
use crate::domain::onboarding::ConsumerFence;
use crate::domain::remember::Extracted;
use crate::domain::reputation::Outcome;
use crate::domain::task::{QueueKey, TaskStatus, Urgency};
use crate::error::HubError;
use crate::settings::{Settings, Watchdog};
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
    pub pipeline_id: Option<i32>,
    pub timeout_seconds: Option<i32>,
    pub reason: Option<String>,
    pub schedule_timeout_seconds: Option<i32>,
    pub fail_on_schedule_timeout: bool,
    pub progress_timeout_seconds: Option<i32>,
    /// The budget: (cost so far, its cap) and (tokens so far, their cap).
    pub cost: (f64, Option<f64>),
    pub tokens: (i64, Option<i32>),
    /// Queued but waiting for dependencies: not offered to the Dispatcher yet.
    pub blocked: bool,
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
            pipeline_id: row.pipeline_id,
            timeout_seconds: row.timeout_seconds,
            reason: row.reason.clone(),
            schedule_timeout_seconds: row.schedule_timeout_seconds,
            fail_on_schedule_timeout: row.fail_on_schedule_timeout,
            progress_timeout_seconds: row.progress_timeout_seconds,
            cost: (row.cost_usd.unwrap_or(0.0), row.max_cost_usd),
            tokens: (
                i64::from(row.tokens_in.unwrap_or(0)) + i64::from(row.tokens_out.unwrap_or(0)),
                row.max_tokens,
            ),
            blocked: false,
        })
    }

    /// What the task spent past its own budget, in words, if it did.
    pub fn overspent(&self) -> Option<String> {
        match (self.cost, self.tokens) {
            ((spent, Some(cap)), _) if spent > cap => {
                Some(format!("cost ${spent} passed max_cost_usd ${cap}"))
            }
            (_, (spent, Some(cap))) if spent > i64::from(cap) => {
                Some(format!("{spent} tokens passed max_tokens {cap}"))
            }
            _ => None,
        }
    }

    /// The Dispatcher's view of this task while it waits in the queue.
    /// Whether the task can wait without an actor: queued and ready, outside a pipeline,
    /// with no unclaimed-task watchdog. The Dispatcher's queue entry stands for it until
    /// it is assigned or changed (then the Registry wakes it from its row), so a backlog
    /// of a million costs a million small entries, not a million actors.
    pub fn may_sleep(&self, settings: &Settings) -> bool {
        self.status == TaskStatus::Queued
            && !self.blocked
            && self.pipeline_id.is_none()
            && settings
                .watchdog_timeout(
                    Watchdog::Unclaimed,
                    &self.required_capability,
                    self.schedule_timeout_seconds,
                )
                .is_none()
    }

    pub fn ready(&self) -> Ready {
        Ready {
            task_id: self.id,
            capability: self.required_capability.clone(),
            pin: self.assign_to.clone(),
            avoid: None,
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
    fn held_by(&self, principal: &Principal) -> bool {
        principal.is_master()
            || (self.assigned_to.is_some() && principal.agent_id() == self.assigned_to.as_deref())
    }
}

/// The reason of a task its holder put back in the queue.
pub const HANDED_BACK: &str = "handed_back";
/// The reason of a task that waited unclaimed past its schedule timeout.
pub const SCHEDULE_TIMEOUT: &str = "schedule_timeout";
/// The reason of a task cancelled for passing its own budget.
pub const BUDGET_EXCEEDED: &str = "budget_exceeded";

/// The refusal a writer gets when it no longer holds (or never held) the task.
fn stale_holder() -> HubError {
    HubError::conflict("stale holder")
}

/// One change of a task: the column changes, who made it, and how it is recorded.
struct Change {
    columns: TaskChange,
    actor: String,
    /// The audit action (`task.update`, …).
    audit: &'static str,
    /// The provenance link's action (`running`, `handed_off`, …).
    link: &'static str,
    /// Extra facts for the audit row and the link (never a prompt or an output).
    detail: Value,
    /// Opens an escalation with this reason in the same transaction.
    escalate: Option<String>,
    /// `[REMEMBER]` entries to store in the holder's memory, in the same transaction.
    remember: Option<(String, Extracted)>,
    /// The holder itself put the task back: offer it to someone else first.
    returned_by_holder: bool,
    /// The consumer lease the writing agent must still hold (checked in the transaction).
    fence: Option<ConsumerFence>,
    /// More to write in the same transaction (a MESS thread message and its event).
    also: Option<AlsoWrite>,
}

pub struct TaskActor {
    task: LiveTask,
    next_chunk_seq: i32,
    running_deadline: Option<SpawnHandle>,
    /// Fires when a ready task waited unclaimed past its schedule timeout.
    unclaimed_deadline: Option<SpawnHandle>,
    /// Fires when a running task went without progress past its progress timeout.
    progress_deadline: Option<SpawnHandle>,
    /// The attempt already escalated as stuck (once per attempt).
    stuck_attempt: Option<i32>,
    /// The approval the holder waits for, if any.
    approval: Option<approvals::Pending>,
    /// When a pending approval restored at start times out.
    restored_approval_expiry: Option<String>,
    /// The holder was lost while it waited for a decision: requeue once it is made.
    requeue_after_decision: Option<&'static str>,
    core: Core,
    dispatcher: Addr<Dispatcher>,
    registry: Addr<Registry>,
    directory: Directory,
}

impl TaskActor {
    pub fn new(
        task: LiveTask,
        next_chunk_seq: i32,
        core: Core,
        dispatcher: Addr<Dispatcher>,
        registry: Addr<Registry>,
        directory: Directory,
    ) -> Self {
        Self {
            task,
            next_chunk_seq,
            running_deadline: None,
            unclaimed_deadline: None,
            progress_deadline: None,
            stuck_attempt: None,
            approval: None,
            restored_approval_expiry: None,
            requeue_after_decision: None,
            core,
            dispatcher,
            registry,
            directory,
        }
    }

    /// Writes `change` if the row is still in the state this actor knows, then (after the
    /// commit) applies it here, publishes the events and tells the Dispatcher.
    fn apply(&mut self, change: Change) -> ResponseActFuture<Self, Result<TaskRow, HubError>> {
        let id = self.task.id;
        let expected = self.task.status.as_str();
        let agent = self.task.assigned_to.clone();
        let core = self.core.clone();
        let pending = self.approval.as_ref().map(|p| p.id);
        let Change {
            mut columns,
            actor,
            audit,
            link,
            detail,
            escalate,
            remember,
            returned_by_holder,
            fence,
            also,
        } = change;
        columns.updated_at = Some(now_iso());
        let db = core.db.clone();
        let write = async move {
            db.write(move |conn| {
                    consumers::check(conn, fence.as_ref())?;
                    let reports_usage = columns.cost_usd.is_some() || columns.tokens_in.is_some() || columns.tokens_out.is_some();
                    let before = if reports_usage { Some(usage_of(conn, id)?) } else { None };
                    let row = diesel::update(tasks::table.filter(tasks::id.eq(id)).filter(tasks::status.eq(expected)))
                        .set(&columns)
                        .get_result::<TaskRow>(conn)
                        .optional()?
                        .ok_or_else(|| HubError::conflict(format!("task {id} changed meanwhile; retry")))?;
                    let mut facts = json!({ "status": row.status, "assigned_to": row.assigned_to, "reason": row.reason });
                    merge(&mut facts, detail);
                    NewAuditRow::new(&actor, audit, format!("task:{id}"), Some(facts.clone())).append(conn)?;
                    provenance::append(conn, &core.notary, id, link, &actor, facts)?;
                    let outcome = match row.status.as_str() {
                        "done" => Some(Outcome::Done),
                        "failed" => Some(Outcome::Failed),
                        _ => None,
                    };
                    if let (Some(holder), Some(outcome)) = (&agent, outcome) {
                        reputation::record(conn, holder, &row.required_capability, outcome)?;
                    }
                    // A task newly in an agent's hands lands in its inbox; so does the cancel
                    // of one it held, so its process is stopped even without the stream.
                    if let Some(holder) = row.assigned_to.as_deref().filter(|h| row.status == "assigned" && agent.as_deref() != Some(*h)) {
                        inbox::deliver(conn, holder, InboxKind::Task, None, Some(id))?;
                    }
                    if let Some(holder) = agent.as_deref().filter(|_| row.status == "cancelled") {
                        inbox::deliver(conn, holder, InboxKind::Cancel, None, Some(id))?;
                    }
                    if let Some((holder, extracted)) = remember {
                        remember_output(conn, &core, id, &holder, extracted)?;
                    }
                    if let Some(also) = also {
                        also(conn)?;
                    }
                    let escalation = match escalate {
                        Some(reason) => Some(NewEscalationRow::open(Some(id), agent.clone(), reason, "hub").insert(conn)?),
                        None => None,
                    };
                    // Reports carry the task's running totals; the budget counts what they add.
                    let usage = match before {
                        Some(before) => {
                            let reporter = agent.clone().unwrap_or_else(|| actor.clone());
                            let added = UsageAdded::between(reporter, before, (row.cost_usd, row.tokens_in, row.tokens_out));
                            usage::record(conn, &usage::today(), &added.agent_id, &row.model, added.cost_usd, added.tokens)?;
                            Some(added)
                        }
                        None => None,
                    };
                    // A task that leaves its holder (or ends) no longer waits for a decision.
                    let left = row.status != "running" || row.assigned_to != agent;
                    let denied = match pending.filter(|_| left) {
                        Some(approval) => {
                            let decision = approvals_db::Decision { id: approval, task_id: id, holder: agent.as_deref(), allowed: false, by: "hub", note: Some(approvals::TASK_ENDED) };
                            approvals_db::settle(conn, decision)?
                        }
                        None => None,
                    };
                    Ok((row, escalation, usage, denied))
                })
                .await
        };
        Box::pin(write.into_actor(self).map(move |written, this, ctx| {
            let (row, escalation, usage, denied) = written?;
            // A requeue put off for a decision is moot once the task left that holder.
            if row.assigned_to != this.task.assigned_to || row.status != "running" {
                this.requeue_after_decision = None;
            }
            if let Some(denied) = denied {
                if let Some(timer) = this.approval.take().and_then(|p| p.timer) {
                    ctx.cancel_future(timer);
                }
                this.announce_decision(&denied);
            }
            if let Some(usage) = usage {
                this.dispatcher.do_send(usage);
            }
            this.committed(&row, returned_by_holder, ctx)?;
            if let Some(escalation) = escalation {
                let scope = escalation_scope(&escalation, Some(&row));
                announce_escalation(&this.core, &escalation, scope);
            }
            Ok(row)
        }))
    }

    fn committed(
        &mut self,
        row: &TaskRow,
        returned_by_holder: bool,
        ctx: &mut Context<Self>,
    ) -> Result<(), HubError> {
        let previous = self.task.status;
        let previous_holder = self.task.assigned_to.clone();
        let blocked = self.task.blocked;
        self.task = LiveTask {
            blocked,
            ..LiveTask::from_row(row)?
        };
        let now = self.task.status;
        let name = match (previous, now) {
            (TaskStatus::Queued, TaskStatus::Assigned) => {
                self.core
                    .metrics
                    .task_assigned(&self.task.required_capability);
                "task_assigned"
            }
            _ => "task_updated",
        };
        // The update also reaches the old holder, so a worker learns it lost the task.
        let audience = Audience::Task {
            assigned_to: previous_holder.clone().or(row.assigned_to.clone()),
            created_by: row.created_by.clone(),
        };
        self.core
            .publish(HubEvent::new(name, task_event(row), audience));
        if now == TaskStatus::Running && previous != TaskStatus::Running {
            self.arm_running_deadline(ctx);
        } else if now != TaskStatus::Running {
            if let Some(handle) = self.running_deadline.take() {
                ctx.cancel_future(handle);
            }
        }
        // Free the old holder's slot before the task is offered again: the Dispatcher may
        // hand it to a new holder at once.
        if previous.holds_slot() && !now.holds_slot() {
            if let Some(agent_id) = previous_holder.clone() {
                self.dispatcher.do_send(TaskReleased {
                    task_id: self.task.id,
                    agent_id,
                });
            }
        }
        if now == TaskStatus::Queued && previous != TaskStatus::Queued {
            self.core.publish(HubEvent::new(
                "task_queued",
                task_event(row),
                self.task.audience(),
            ));
            let mut ready = self.task.ready();
            // A holder that handed the task back is asked again only if nobody else can.
            if returned_by_holder {
                ready.avoid = previous_holder.clone();
            }
            self.dispatcher.do_send(TaskReady(ready));
        }
        self.watch(Some(previous), ctx);
        if now.is_terminal() {
            self.core
                .metrics
                .task_finished(&self.task.required_capability, now);
            if row.source == "federation" && self.core.finished_tasks.send(self.task.id).is_ok() {
                self.core.metrics.federation_result_queued();
            }
            let done = now == TaskStatus::Done;
            let credited = previous_holder.clone().and_then(|agent| {
                let outcome = match now {
                    TaskStatus::Done => Outcome::Done,
                    TaskStatus::Failed => Outcome::Failed,
                    _ => return None,
                };
                Some((agent, self.task.required_capability.clone(), outcome))
            });
            self.dispatcher.do_send(TaskFinished {
                task_id: self.task.id,
                done,
                credited,
            });
            if let Some(pipeline) = self
                .task
                .pipeline_id
                .and_then(|p| self.directory.pipeline(p))
            {
                pipeline.do_send(MemberFinished {
                    task_id: self.task.id,
                    status: now,
                });
            }
            ctx.stop();
        }
        Ok(())
    }

    /// A running task that outlives its time limit loses its holder.
    fn arm_running_deadline(&mut self, ctx: &mut Context<Self>) {
        let limit = self
            .core
            .settings
            .task_timeout(&self.task.required_capability, self.task.timeout_seconds);
        self.arm_deadline_after(limit, ctx);
    }

    fn arm_deadline_after(&mut self, limit: std::time::Duration, ctx: &mut Context<Self>) {
        let attempt = self.task.attempts;
        self.running_deadline = Some(ctx.run_later(limit, move |this, ctx| {
            this.running_deadline = None;
            // Waiting for a person's decision is not running over time.
            if this.approval.is_some() {
                return;
            }
            if this.task.status == TaskStatus::Running && this.task.attempts == attempt {
                tracing::info!(task.id = this.task.id, "task ran past its time limit");
                // `wait`: no other message is handled until the requeue is committed.
                ctx.wait(this.lose_holder("timeout").map(|_, _, _| ()));
            }
        }));
    }

    /// The holder is gone (offline, removed, timed out): back to the queue, or, after the
    /// last allowed attempt, failed with an escalation.
    fn lose_holder(
        &mut self,
        reason: &'static str,
    ) -> ResponseActFuture<Self, Result<TaskRow, HubError>> {
        self.take_from_holder(reason, None)
    }

    /// As [`Self::lose_holder`]; with `stuck` (an escalation's reason) the task is also
    /// escalated and offered to another agent first.
    fn take_from_holder(
        &mut self,
        reason: &'static str,
        stuck: Option<String>,
    ) -> ResponseActFuture<Self, Result<TaskRow, HubError>> {
        let exhausted = self.task.attempts >= self.core.settings.max_attempts;
        let (status, final_reason, link) = if exhausted {
            (TaskStatus::Failed, "attempts_exhausted", "failed")
        } else {
            (TaskStatus::Queued, reason, "requeued")
        };
        let mut columns = TaskChange {
            status: Some(status.as_str().into()),
            assigned_to: Some(None),
            reason: Some(Some(final_reason.into())),
            lease_expires_at: Some(None),
            ..TaskChange::default()
        };
        if exhausted {
            columns.completed_at = Some(Some(now_iso()));
        }
        let returned_by_holder = stuck.is_some();
        let escalate = if exhausted {
            Some(format!(
                "task {} failed after {} attempts (last: {reason})",
                self.task.id, self.task.attempts
            ))
        } else {
            stuck
        };
        self.apply(Change {
            columns,
            actor: "hub".into(),
            audit: "task.requeue",
            link,
            detail: json!({ "lost_because": reason, "attempts": self.task.attempts }),
            escalate,
            remember: None,
            returned_by_holder,
            fence: None,
            also: None,
        })
    }
}

impl TaskActor {
    /// A task restored at start while its holder waited for approval `id`.
    pub fn waiting_for(mut self, id: i32, expires_at: String) -> Self {
        self.approval = Some(approvals::Pending::restored(id));
        self.restored_approval_expiry = Some(expires_at);
        self
    }
}

impl Actor for TaskActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Restored while running: the time limit counts from now (the hub was down).
        if self.task.status == TaskStatus::Running {
            self.arm_running_deadline(ctx);
        }
        // Restored: waiting and silence count from now, as the time limit does.
        self.watch(None, ctx);
        if let Some(expires_at) = self.restored_approval_expiry.take() {
            self.resume_approval(&expires_at, ctx);
        }
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.registry.do_send(ChildStopped::Task(self.task.id));
        Running::Stop
    }
}

/// Who may see `escalation`, given its task (if it has one).
pub fn escalation_scope(escalation: &EscalationRow, task: Option<&TaskRow>) -> EscalationScope {
    EscalationScope {
        task: task.map(|t| (t.assigned_to.clone(), t.created_by.clone())),
        agent_id: escalation.agent_id.clone(),
        opened_by: escalation.created_by.clone(),
    }
}

/// Publishes an opened escalation (after its commit).
pub fn announce_escalation(core: &Core, escalation: &EscalationRow, scope: EscalationScope) {
    core.publish(HubEvent::new(
        "escalation_opened",
        json!(escalation),
        Audience::Escalation(scope),
    ));
    let task = escalation
        .task_id
        .map_or_else(String::new, |id| format!(" on task {id}"));
    let agent = escalation
        .agent_id
        .as_deref()
        .map_or_else(String::new, |a| format!(" for agent {a}"));
    core.alerts.raise(Alert {
        title: format!("Escalation opened{task}"),
        message: format!(
            "Escalation {}{task}{agent}, opened by {}. Read its reason in the hub.",
            escalation.id, escalation.created_by
        ),
        detail: Some(escalation.reason.clone()),
        priority: 4,
        tags: "rotating_light",
    });
}

/// The cost and tokens a task has reported so far.
fn usage_of(conn: &mut crate::db::DbConnection, id: i32) -> Result<UsageTotals, HubError> {
    Ok(tasks::table
        .find(id)
        .select((tasks::cost_usd, tasks::tokens_in, tasks::tokens_out))
        .get_result(conn)?)
}

/// Stores the `[REMEMBER]` entries of a finished task in its holder's memory, auditing
/// each one, and each refused key, by name only.
fn remember_output(
    conn: &mut crate::db::DbConnection,
    core: &Core,
    task_id: i32,
    holder: &str,
    extracted: Extracted,
) -> Result<(), HubError> {
    let target = format!("agent:{holder}");
    for (key, value) in extracted.accepted {
        let entry = memory::Entry {
            key: &key,
            value: &value,
            structured: false,
            source_task_id: Some(task_id),
        };
        memory::upsert(conn, &core.vault, &core.blind, holder, entry)?;
        NewAuditRow::new(
            "hub",
            "memory.extract",
            target.clone(),
            Some(json!({ "key": key, "task_id": task_id })),
        )
        .append(conn)?;
    }
    for key in extracted.refused {
        NewAuditRow::new(
            "hub",
            "memory.refused",
            target.clone(),
            Some(json!({ "key": key, "task_id": task_id })),
        )
        .append(conn)?;
    }
    Ok(())
}

fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(into), Value::Object(extra)) = (into, extra) {
        into.extend(extra);
    }
}

/// The reply of a handler that writes: the actor handles nothing else until it is done.
type Reply<T> = AtomicResponse<TaskActor, Result<T, HubError>>;

fn refuse<T: 'static>(error: HubError) -> Reply<T> {
    AtomicResponse::new(Box::pin(actix::fut::ready(Err(error))))
}
