//! The watchdogs of a live task: ready work that nobody claims, a holder that keeps
//! heartbeating but shows no progress, and a task that spends past its own budget. Each
//! acts through the task's own [`Change`], so its escalation, audit row and provenance
//! link are written in one transaction with the task's new state.

use std::time::Duration;

use actix::prelude::*;
use serde_json::json;

use super::{Change, TaskActor, BUDGET_EXCEEDED, SCHEDULE_TIMEOUT};
use crate::actors::dispatcher::WhyUnclaimed;
use crate::db::models::TaskChange;
use crate::domain::now_iso;
use crate::domain::task::TaskStatus;
use crate::settings::Watchdog;

impl TaskActor {
    /// Arms or disarms the watchdogs after a change from `previous` (`None`: the actor
    /// has just started).
    pub(super) fn watch(&mut self, previous: Option<TaskStatus>, ctx: &mut Context<Self>) {
        let now = self.task.status;
        if now != TaskStatus::Queued {
            cancel(&mut self.unclaimed_deadline, ctx);
        } else if previous != Some(TaskStatus::Queued) {
            self.arm_unclaimed_deadline(ctx);
        }
        if now == TaskStatus::Running {
            self.arm_progress_deadline(ctx);
        } else {
            cancel(&mut self.progress_deadline, ctx);
        }
        if now.holds_slot() && self.task.overspent().is_some() {
            ctx.notify(Overspent);
        }
    }

    /// Starts counting how long the task waits unclaimed, unless it is blocked, relayed
    /// to a peer, already escalated for this wait, or has no schedule timeout.
    pub(super) fn arm_unclaimed_deadline(&mut self, ctx: &mut Context<Self>) {
        cancel(&mut self.unclaimed_deadline, ctx);
        let relayed = self
            .task
            .assign_to
            .as_deref()
            .is_some_and(|pin| pin.starts_with("peer:"));
        let escalated = self.task.reason.as_deref() == Some(SCHEDULE_TIMEOUT);
        if self.task.blocked || relayed || escalated {
            return;
        }
        let Some(limit) = self.core.settings.watchdog_timeout(
            Watchdog::Unclaimed,
            &self.task.required_capability,
            self.task.schedule_timeout_seconds,
        ) else {
            return;
        };
        self.unclaimed_deadline = Some(ctx.run_later(limit, move |this, ctx| {
            this.unclaimed_deadline = None;
            if this.task.status == TaskStatus::Queued && !this.task.blocked {
                this.escalate_unclaimed(limit, ctx);
            }
        }));
    }

    /// Asks the Dispatcher why nobody took the task, then escalates once with that reason
    /// (and fails the task if it asked for that).
    fn escalate_unclaimed(&mut self, waited: Duration, ctx: &mut Context<Self>) {
        let ask = self.dispatcher.send(WhyUnclaimed {
            capability: self.task.required_capability.clone(),
            pin: self.task.assign_to.clone(),
        });
        let escalate =
            ask.into_actor(self)
                .then(move |why, this, _| -> ResponseActFuture<Self, ()> {
                    // Claimed while the Dispatcher answered: nothing to say.
                    if this.task.status != TaskStatus::Queued || this.task.blocked {
                        return Box::pin(actix::fut::ready(()));
                    }
                    let why = why.unwrap_or_else(|_| "the dispatcher is not running".into());
                    let (id, seconds) = (this.task.id, waited.as_secs());
                    let fail = this.task.fail_on_schedule_timeout;
                    let mut columns = TaskChange {
                        reason: Some(Some(SCHEDULE_TIMEOUT.into())),
                        ..TaskChange::default()
                    };
                    if fail {
                        columns.status = Some(TaskStatus::Failed.as_str().into());
                        columns.completed_at = Some(Some(now_iso()));
                    }
                    let change = Change {
                        columns,
                        actor: "hub".into(),
                        audit: "task.schedule_timeout",
                        link: if fail { "failed" } else { SCHEDULE_TIMEOUT },
                        detail: json!({ "waited_seconds": seconds, "why": why }),
                        escalate: Some(format!("task {id} waited {seconds} s unclaimed: {why}")),
                        remember: None,
                        returned_by_holder: false,
                        fence: None,
                        also: None,
                    };
                    Box::pin(this.apply(change).map(|outcome, _, _| log_failure(outcome)))
                });
        ctx.wait(escalate);
    }

    /// (Re)starts counting the holder's silence: every stream chunk and report restarts it.
    pub(super) fn arm_progress_deadline(&mut self, ctx: &mut Context<Self>) {
        cancel(&mut self.progress_deadline, ctx);
        let Some(limit) = self.core.settings.watchdog_timeout(
            Watchdog::Silent,
            &self.task.required_capability,
            self.task.progress_timeout_seconds,
        ) else {
            return;
        };
        let attempt = self.task.attempts;
        self.progress_deadline = Some(ctx.run_later(limit, move |this, ctx| {
            this.progress_deadline = None;
            if this.task.status != TaskStatus::Running || this.task.attempts != attempt {
                return;
            }
            // Waiting for a person's decision is not being stuck.
            if this.approval.is_some() {
                return this.arm_progress_deadline(ctx);
            }
            if this.stuck_attempt == Some(attempt) {
                return;
            }
            this.stuck_attempt = Some(attempt);
            this.escalate_stuck(limit, ctx);
        }));
    }

    /// Escalates a silent running task as stuck; by config it also goes to another agent.
    fn escalate_stuck(&mut self, silent: Duration, ctx: &mut Context<Self>) {
        let holder = self.task.assigned_to.clone().unwrap_or_default();
        let seconds = silent.as_secs();
        let reason = format!(
            "task {} is stuck: {holder} sent no stream chunk or report for {seconds} s",
            self.task.id
        );
        let escalation = if self.core.settings.requeue_stuck_tasks {
            self.take_from_holder("stuck", Some(reason))
        } else {
            self.apply(Change {
                columns: TaskChange::default(),
                actor: "hub".into(),
                audit: "task.stuck",
                link: "stuck",
                detail: json!({ "silent_seconds": seconds }),
                escalate: Some(reason),
                remember: None,
                returned_by_holder: false,
                fence: None,
                also: None,
            })
        };
        ctx.wait(escalation.map(|outcome, _, _| log_failure(outcome)));
    }
}

/// Sent by the task to itself when a change or chunk put it past its budget.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Overspent;

impl Handler<Overspent> for TaskActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Overspent, _: &mut Context<Self>) -> Self::Result {
        let overspent = self
            .task
            .overspent()
            .filter(|_| self.task.status.holds_slot());
        let Some(spent) = overspent else {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        };
        let columns = TaskChange {
            status: Some(TaskStatus::Cancelled.as_str().into()),
            reason: Some(Some(BUDGET_EXCEEDED.into())),
            completed_at: Some(Some(now_iso())),
            lease_expires_at: Some(None),
            ..TaskChange::default()
        };
        let change = Change {
            columns,
            actor: "hub".into(),
            audit: "task.budget_exceeded",
            link: "cancelled",
            detail: json!({ "spent": spent }),
            escalate: Some(format!("task {} cancelled: {spent}", self.task.id)),
            remember: None,
            returned_by_holder: false,
            fence: None,
            also: None,
        };
        AtomicResponse::new(Box::pin(
            self.apply(change).map(|outcome, _, _| log_failure(outcome)),
        ))
    }
}

fn cancel(deadline: &mut Option<SpawnHandle>, ctx: &mut Context<TaskActor>) {
    if let Some(handle) = deadline.take() {
        ctx.cancel_future(handle);
    }
}

/// A watchdog's change that could not be written (the task moved on meanwhile, or the
/// database refused): the next change re-arms it.
fn log_failure<T>(outcome: Result<T, crate::error::HubError>) {
    if let Err(error) = outcome {
        tracing::warn!(%error, "a task watchdog's change was not written");
    }
}
