//! PipelineActor: one per live pipeline. Holds the dependency graph of its members; when a
//! member finishes it releases the members whose dependencies are now all done, and fails
//! (with reason `dependency_failed`) those that depended on a member that did not finish
//! `done`, which cascades as they fail in turn. When every member is finished it records
//! the pipeline's outcome and stops.
//!
//! Handles: [`MemberFinished`], [`CancelPipeline`].

use std::collections::HashMap;

use actix::prelude::*;
use diesel::prelude::*;
use serde_json::json;

use super::registry::{ChildStopped, Directory, Registry};
use super::task::{FailDependency, Release, Report, ReportBody};
use super::Core;
use crate::db::models::NewAuditRow;
use crate::db::schema::pipelines;
use crate::domain::access::Principal;
use crate::domain::event::{Audience, HubEvent};
use crate::domain::graph::Waiting;
use crate::domain::now_iso;
use crate::domain::task::TaskStatus;
use crate::error::HubError;

pub struct PipelineActor {
    id: i32,
    created_by: String,
    members: HashMap<i32, TaskStatus>,
    waiting: Waiting,
    /// Members whose dependency had already failed when this actor was built (after a
    /// restart in the middle of a cascade): failed as soon as it starts.
    doomed: Vec<(i32, i32)>,
    core: Core,
    directory: Directory,
    registry: Addr<Registry>,
}

impl PipelineActor {
    /// `members`: every task of the pipeline with its status; `edges`: (task, dependency).
    pub fn new(
        id: i32,
        created_by: String,
        members: Vec<(i32, TaskStatus)>,
        edges: &[(i32, i32)],
        core: Core,
        directory: Directory,
        registry: Addr<Registry>,
    ) -> Self {
        let members: HashMap<i32, TaskStatus> = members.into_iter().collect();
        let mut waiting = Waiting::default();
        let mut doomed = Vec::new();
        for (&task, _) in members.iter().filter(|(_, s)| **s == TaskStatus::Queued) {
            let deps = edges.iter().filter(|(t, _)| *t == task).map(|(_, d)| *d);
            let mut unmet = Vec::new();
            for dep in deps {
                match members.get(&dep) {
                    Some(TaskStatus::Done) => {}
                    Some(status) if status.is_terminal() => doomed.push((task, dep)),
                    _ => unmet.push(dep),
                }
            }
            waiting.wait(task, unmet);
        }
        Self {
            id,
            created_by,
            members,
            waiting,
            doomed,
            core,
            directory,
            registry,
        }
    }

    fn fail(&self, task: i32, dependency: i32) {
        if let Some(actor) = self.directory.task(task) {
            actor.do_send(FailDependency { dependency });
        }
    }

    /// Records the outcome once every member is finished, then stops.
    fn finish_if_complete(&mut self, ctx: &mut Context<Self>) {
        if !self.members.values().all(|s| s.is_terminal()) {
            return;
        }
        let status = if self.members.values().all(|s| *s == TaskStatus::Done) {
            "done"
        } else if self.members.values().any(|s| *s == TaskStatus::Cancelled)
            && !self.members.values().any(|s| *s == TaskStatus::Failed)
        {
            // Cancelled on purpose (as a whole, or members one by one), nothing failed.
            "cancelled"
        } else {
            "failed"
        };
        let id = self.id;
        let db = self.core.db.clone();
        let write = async move {
            db.write(move |conn| {
                diesel::update(pipelines::table.find(id))
                    .set((
                        pipelines::status.eq(status),
                        pipelines::completed_at.eq(now_iso()),
                    ))
                    .execute(conn)?;
                NewAuditRow::new(
                    "hub",
                    "pipeline.finish",
                    format!("pipeline:{id}"),
                    Some(json!({ "status": status })),
                )
                .append(conn)?;
                Ok(())
            })
            .await
        };
        ctx.wait(write.into_actor(self).map(move |written, this, ctx| match written {
            Ok(()) => {
                let data = json!({ "pipeline_id": this.id, "status": status });
                let audience = Audience::Task { assigned_to: None, created_by: this.created_by.clone() };
                this.core.publish(HubEvent::new("pipeline_finished", data, audience));
                ctx.stop();
            }
            Err(error) => tracing::warn!(pipeline.id = this.id, %error, "could not record the pipeline's outcome"),
        }));
    }
}

impl Actor for PipelineActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for (task, dependency) in std::mem::take(&mut self.doomed) {
            self.fail(task, dependency);
        }
        self.finish_if_complete(ctx);
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.registry.do_send(ChildStopped::Pipeline(self.id));
        Running::Stop
    }
}

/// Sent by a member's TaskActor when it reaches a terminal state.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MemberFinished {
    pub task_id: i32,
    pub status: TaskStatus,
}

impl Handler<MemberFinished> for PipelineActor {
    type Result = ();

    fn handle(&mut self, msg: MemberFinished, ctx: &mut Context<Self>) {
        self.members.insert(msg.task_id, msg.status);
        self.waiting.forget(msg.task_id);
        let released = self
            .waiting
            .finished(msg.task_id, msg.status == TaskStatus::Done);
        for task in released.ready {
            if let Some(actor) = self.directory.task(task) {
                actor.do_send(Release);
            }
        }
        for task in released.failed {
            self.fail(task, msg.task_id);
        }
        self.finish_if_complete(ctx);
    }
}

/// Sent by `POST /api/pipelines/{id}/cancel`: cancel every unfinished member as
/// `principal` (whose right to cancel each task its TaskActor checks). Answers the ids
/// cancelled, in pipeline order.
#[derive(Message)]
#[rtype(result = "Result<Vec<i32>, HubError>")]
pub struct CancelPipeline {
    pub principal: Principal,
}

impl Handler<CancelPipeline> for PipelineActor {
    type Result = ResponseActFuture<Self, Result<Vec<i32>, HubError>>;

    fn handle(&mut self, msg: CancelPipeline, _: &mut Context<Self>) -> Self::Result {
        // Dependents first, so none is failed by a cancelled dependency on the way: a
        // member depends only on earlier ones, which were inserted (numbered) before it.
        let mut unfinished: Vec<i32> = self
            .members
            .iter()
            .filter(|(_, status)| !status.is_terminal())
            .map(|(id, _)| *id)
            .collect();
        unfinished.sort_unstable_by(|a, b| b.cmp(a));
        let actors: Vec<_> = unfinished
            .into_iter()
            .filter_map(|id| Some((id, self.directory.task(id)?)))
            .collect();
        // Not atomic: each member's end (MemberFinished) is handled while this waits.
        let cancel = async move {
            let mut cancelled = Vec::with_capacity(actors.len());
            for (id, task) in actors {
                let body = ReportBody {
                    status: Some(TaskStatus::Cancelled),
                    reason: Some("pipeline_cancelled".into()),
                    ..ReportBody::default()
                };
                task.send(Report {
                    principal: msg.principal.clone(),
                    body,
                    fence: None,
                })
                .await??;
                cancelled.push(id);
            }
            cancelled.reverse();
            Ok(cancelled)
        };
        Box::pin(cancel.into_actor(self))
    }
}
