//! Tool-call approvals (seed 001): a running task's holder asks before a risky step, and
//! waits. While it waits the task keeps its holder, its slot and its lease (a missed
//! heartbeat does not requeue it, and its running time limit waits too); a person with
//! `approvals:decide` allows or denies it, or the hub denies it when its time is up. The
//! decision is written with its audit row and an inbox item for the holder in one
//! transaction, then published (`approval_decided`) and handed to long-polling readers.

use std::time::Duration;

use actix::prelude::*;
use serde_json::json;

use super::{refuse, stale_holder, Reply, TaskActor};
use crate::db::approvals::{self, ApprovalRow, NewApproval};
use crate::db::consumers;
use crate::db::models::NewAuditRow;
use crate::domain::access::Principal;
use crate::domain::event::HubEvent;
use crate::domain::onboarding::ConsumerFence;
use crate::domain::task::TaskStatus;
use crate::domain::{iso, now_iso};
use crate::error::HubError;
use crate::views::approval_event;

/// The approval a task waits for, and the timer that denies it.
#[derive(Debug)]
pub struct Pending {
    pub id: i32,
    pub(super) timer: Option<SpawnHandle>,
}

impl Pending {
    /// One restored at start, whose timer [`TaskActor::resume_approval`] sets.
    pub fn restored(id: i32) -> Self {
        Self { id, timer: None }
    }
}

/// What an approval's decision note says when the hub decided.
pub const TIMED_OUT: &str = "timeout";
pub const TASK_ENDED: &str = "task ended";

/// Sent by `POST /api/tasks/{id}/approvals`.
#[derive(Message)]
#[rtype(result = "Result<ApprovalRow, HubError>")]
pub struct RequestApproval {
    pub principal: Principal,
    pub tool: String,
    /// Sealed.
    pub input: Option<String>,
    pub reason: Option<String>,
    pub timeout: Duration,
    pub fence: Option<ConsumerFence>,
}

impl Handler<RequestApproval> for TaskActor {
    type Result = Reply<ApprovalRow>;

    fn handle(&mut self, msg: RequestApproval, _: &mut Context<Self>) -> Self::Result {
        if !self.task.held_by(&msg.principal) {
            return refuse(stale_holder());
        }
        if self.task.status != TaskStatus::Running {
            return refuse(HubError::conflict(format!(
                "task {} is {}; mark it running before asking for an approval",
                self.task.id, self.task.status
            )));
        }
        if let Some(pending) = &self.approval {
            return refuse(HubError::conflict(format!(
                "task {} already waits for approval {}",
                self.task.id, pending.id
            )));
        }
        let task_id = self.task.id;
        let expires = chrono::Utc::now()
            + chrono::Duration::from_std(msg.timeout).unwrap_or(chrono::Duration::MAX);
        let new = NewApproval {
            task_id,
            agent_id: msg.principal.agent_id().unwrap_or("master").to_string(),
            tool: msg.tool,
            input: msg.input,
            reason: msg.reason,
            status: "pending".into(),
            created_at: now_iso(),
            expires_at: iso(expires),
        };
        let actor = msg.principal.label();
        let fence = msg.fence;
        let db = self.core.db.clone();
        let write = async move {
            db.write(move |conn| {
                consumers::check(conn, fence.as_ref())?;
                let row = approvals::insert(conn, &new)?;
                let detail = json!({ "approval": row.id, "tool": row.tool });
                NewAuditRow::new(
                    &actor,
                    "approval.request",
                    format!("task:{task_id}"),
                    Some(detail),
                )
                .append(conn)?;
                Ok(row)
            })
            .await
        };
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
            move |written, this, ctx| {
                let row = written?;
                this.approval = Some(Pending {
                    id: row.id,
                    timer: None,
                });
                this.arm_approval_timer(row.id, msg.timeout, ctx);
                let event = approval_event(&row);
                this.core.publish(HubEvent::new(
                    "approval_requested",
                    event,
                    this.task.audience(),
                ));
                Ok(row)
            },
        )))
    }
}

/// Sent by `POST /api/approvals/{id}`.
#[derive(Message)]
#[rtype(result = "Result<ApprovalRow, HubError>")]
pub struct DecideApproval {
    pub id: i32,
    pub allowed: bool,
    pub by: String,
    pub note: Option<String>,
}

impl Handler<DecideApproval> for TaskActor {
    type Result = Reply<ApprovalRow>;

    fn handle(&mut self, msg: DecideApproval, _: &mut Context<Self>) -> Self::Result {
        if self.approval.as_ref().map(|p| p.id) != Some(msg.id) {
            return refuse(HubError::conflict(format!(
                "approval {} is not pending",
                msg.id
            )));
        }
        AtomicResponse::new(self.decide(msg))
    }
}

impl TaskActor {
    /// Writes the decision (if the approval is still pending), then tells everyone.
    fn decide(
        &mut self,
        msg: DecideApproval,
    ) -> ResponseActFuture<Self, Result<ApprovalRow, HubError>> {
        let task_id = self.task.id;
        let holder = self.task.assigned_to.clone();
        let db = self.core.db.clone();
        let write = async move {
            db.write(move |conn| {
                let decision = approvals::Decision {
                    id: msg.id,
                    task_id,
                    holder: holder.as_deref(),
                    allowed: msg.allowed,
                    by: &msg.by,
                    note: msg.note.as_deref(),
                };
                approvals::settle(conn, decision)?.ok_or_else(|| {
                    HubError::conflict(format!("approval {} was decided already", msg.id))
                })
            })
            .await
        };
        Box::pin(write.into_actor(self).map(|written, this, ctx| {
            let row = written?;
            if let Some(pending) = this.approval.take_if(|p| p.id == row.id) {
                if let Some(timer) = pending.timer {
                    ctx.cancel_future(timer);
                }
            }
            this.announce_decision(&row);
            if let Some(reason) = this.requeue_after_decision.take() {
                // The holder went away meanwhile: now its task goes back to the queue.
                ctx.wait(this.lose_holder(reason).map(|_, _, _| ()));
            } else if this.task.status == TaskStatus::Running && this.running_deadline.is_none() {
                // The running time limit may have come and gone while it waited.
                this.arm_running_deadline(ctx);
            }
            Ok(row)
        }))
    }

    pub(super) fn announce_decision(&self, row: &ApprovalRow) {
        let event = approval_event(row);
        self.core.publish(HubEvent::new(
            "approval_decided",
            event,
            self.task.audience(),
        ));
        let _ = self.core.decisions.send(row.id);
    }

    fn arm_approval_timer(&mut self, id: i32, after: Duration, ctx: &mut Context<Self>) {
        let timer = ctx.run_later(after, move |this, ctx| {
            if this.approval.as_ref().map(|p| p.id) != Some(id) {
                return;
            }
            let deny = DecideApproval {
                id,
                allowed: false,
                by: "hub".into(),
                note: Some(TIMED_OUT.into()),
            };
            // A denial that could not be written (a full write queue, a failed commit) is
            // tried again shortly: the holder must not wait forever.
            ctx.wait(this.decide(deny).map(move |written, this, ctx| {
                if written.is_err() && this.approval.as_ref().map(|p| p.id) == Some(id) {
                    this.arm_approval_timer(id, Duration::from_secs(1), ctx);
                }
            }));
        });
        if let Some(pending) = self.approval.as_mut() {
            pending.timer = Some(timer);
        }
    }

    /// A restored pending approval: denied when its time is up, or at once if it is.
    pub(super) fn resume_approval(&mut self, expires_at: &str, ctx: &mut Context<Self>) {
        let Some(id) = self.approval.as_ref().map(|p| p.id) else {
            return;
        };
        let left = chrono::DateTime::parse_from_rfc3339(expires_at)
            .map(|at| {
                (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                    .to_std()
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        self.arm_approval_timer(id, left, ctx);
    }
}
