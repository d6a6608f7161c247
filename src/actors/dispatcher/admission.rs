//! Admitting new work: single tasks (`SubmitTask`) and pipelines (`SubmitPipeline`).
//! Both refuse while the kill switch is engaged, write everything in one transaction (the
//! rows, their dependencies, audit rows and the first provenance links), start the live
//! actors through the Registry, and only then publish and dispatch.

use crate::db::DbConnection;
use actix::prelude::*;
use diesel::prelude::*;
use serde_json::json;

use super::{Dispatcher, PlainWait};
use crate::actors::registry::{BootPipeline, StartPipeline, StartTask};
use crate::actors::task::LiveTask;
use crate::crypto::provenance::Notary;
use crate::db::models::{DependencyRow, NewAuditRow, NewTaskRow, PipelineRow, TaskRow};
use crate::db::provenance::{self, Entry};
use crate::db::schema::{pipelines, task_dependencies, tasks};
use crate::domain::event::HubEvent;
use crate::domain::now_iso;
use crate::domain::task::TaskStatus;
use crate::error::HubError;
use crate::views::task_event;

impl Dispatcher {
    /// New work is refused while the kill switch is engaged or the day's cost cap is
    /// reached; the cap does not bind the master token (so one worker's reports can
    /// never lock the operator out).
    fn admit(&mut self, by_master: bool) -> Result<(), HubError> {
        if self.kill_switch.active {
            return Err(HubError::KillSwitch);
        }
        if !by_master && self.budget.cost_cap_reached() {
            return Err(HubError::TooManyRequests("daily cost cap reached".into()));
        }
        Ok(())
    }

    /// Counts a committed new task, and its assignment or failure if it was created so.
    fn count_created(&self, task: &LiveTask) {
        let metrics = &self.core.metrics;
        let capability = task.required_capability.as_str();
        metrics.task_created(capability);
        match task.status {
            TaskStatus::Assigned => metrics.task_assigned(capability),
            status if status.is_terminal() => metrics.task_finished(capability, status),
            _ => {}
        }
    }
}

/// Asks whether new work would be admitted now, before doing anything that cannot be
/// undone for it (relaying it to a peer).
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub struct CheckAdmission {
    pub by_master: bool,
}

impl Handler<CheckAdmission> for Dispatcher {
    type Result = Result<(), HubError>;

    fn handle(&mut self, msg: CheckAdmission, _: &mut Context<Self>) -> Self::Result {
        self.admit(msg.by_master)
    }
}

/// Inserts one task with its audit row and its first provenance link(s).
fn insert_task(
    conn: &mut DbConnection,
    notary: &Notary,
    row: NewTaskRow,
    actor: &str,
) -> Result<TaskRow, HubError> {
    let task = row.insert(conn)?;
    let detail = json!({
        "title": task.title,
        "required_capability": task.required_capability,
        "created_by": task.created_by,
        "pipeline_id": task.pipeline_id,
    });
    NewAuditRow::new(
        actor,
        "task.create",
        format!("task:{}", task.id),
        Some(detail.clone()),
    )
    .append(conn)?;
    let created = Entry {
        action: "created",
        actor,
        detail,
    };
    let assigned = task.assigned_to.as_ref().map(|agent| Entry {
        action: "assigned",
        actor: "dispatcher",
        detail: json!({ "assigned_to": agent }),
    });
    provenance::begin(
        conn,
        notary,
        task.id,
        std::iter::once(created).chain(assigned),
    )?;
    // A task handed to an agent as it is made lands in that agent's inbox.
    if let Some(holder) = task.assigned_to.as_deref() {
        crate::db::inbox::deliver(
            conn,
            holder,
            crate::db::inbox::InboxKind::Task,
            None,
            Some(task.id),
        )?;
    }
    Ok(task)
}

/// Remembers a webhook delivery; the same key again is a 409 naming the first task.
fn record_delivery(
    conn: &mut DbConnection,
    webhook: &str,
    key: &str,
    task_id: i32,
) -> Result<(), HubError> {
    use crate::db::schema::webhook_deliveries as deliveries;
    let existing: Option<Option<i32>> = deliveries::table
        .find((webhook, key))
        .select(deliveries::task_id)
        .get_result(conn)
        .optional()?;
    if let Some(first) = existing {
        let first = first.map_or_else(|| "an earlier task".to_string(), |id| format!("task {id}"));
        return Err(HubError::conflict(format!(
            "delivery {key:?} was already received ({first})"
        )));
    }
    diesel::insert_into(deliveries::table)
        .values((
            deliveries::webhook_name.eq(webhook),
            deliveries::delivery_key.eq(key),
            deliveries::task_id.eq(task_id),
            deliveries::created_at.eq(now_iso()),
        ))
        .execute(conn)?;
    Ok(())
}

fn record_crossing(
    conn: &mut DbConnection,
    crossing: &Crossing,
    task_id: i32,
) -> Result<(), HubError> {
    use crate::db::schema::relays;
    let (direction, peer, peer_task_id) = match crossing {
        Crossing::Outbound { peer, peer_task_id } => ("outbound", peer, Some(*peer_task_id)),
        Crossing::Inbound { peer } => ("inbound", peer, None),
    };
    diesel::insert_into(relays::table)
        .values((
            relays::task_id.eq(task_id),
            relays::direction.eq(direction),
            relays::peer.eq(peer),
            relays::peer_task_id.eq(peer_task_id),
            relays::created_at.eq(now_iso()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Stores dependency edges (nothing to do, and no statement, for a task without any).
fn insert_edges(conn: &mut DbConnection, edges: &[DependencyRow]) -> QueryResult<()> {
    // One row at a time: a multi-row insert is not built for both backends at once.
    for edge in edges {
        diesel::insert_into(task_dependencies::table)
            .values(edge)
            .execute(conn)?;
    }
    Ok(())
}

/// The status of each task in `ids`; a missing one is a 404 naming it.
fn dependency_statuses(
    conn: &mut DbConnection,
    ids: &[i32],
) -> Result<Vec<(i32, TaskStatus)>, HubError> {
    // Most tasks have no dependencies: no query for them on the create path.
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let found: Vec<(i32, String)> = tasks::table
        .filter(tasks::id.eq_any(ids))
        .select((tasks::id, tasks::status))
        .load(conn)?;
    ids.iter()
        .map(|id| {
            let (_, status) = found
                .iter()
                .find(|(f, _)| f == id)
                .ok_or_else(|| HubError::not_found(format!("depends_on names no task {id}")))?;
            Ok((*id, status.parse()?))
        })
        .collect()
}

/// Sent by the create handlers: admit a new task, choose its agent (unless it waits for
/// dependencies), insert it already assigned when one is free, start its TaskActor.
#[derive(Message)]
#[rtype(result = "Result<TaskRow, HubError>")]
pub struct SubmitTask {
    pub task: NewTaskRow,
    /// Ids of tasks that must be `done` first.
    pub depends_on: Vec<i32>,
    pub actor: String,
    /// (webhook name, delivery key): recorded with the task, so a redelivery is a 409.
    pub delivery: Option<(String, String)>,
    /// Where the task crossed to or from federation peers (came from one, went on to
    /// another, or both): recorded with it.
    pub crossings: Vec<Crossing>,
    /// Asked for by the master token (not held to the cost cap).
    pub by_master: bool,
    /// More to write in the task's transaction (its idempotency key and answer).
    pub also: Option<AfterTask>,
}

/// A write that joins a task's creation, given the new row.
pub type AfterTask = Box<dyn FnOnce(&mut DbConnection, &TaskRow) -> Result<(), HubError> + Send>;

/// A write that joins a pipeline's creation, given its row and its members'.
pub type AfterPipeline =
    Box<dyn FnOnce(&mut DbConnection, &PipelineRow, &[TaskRow]) -> Result<(), HubError> + Send>;

/// A task crossing between hubs.
#[derive(Debug, Clone)]
pub enum Crossing {
    /// Relayed to `peer`, which runs it as its task `peer_task_id`.
    Outbound { peer: String, peer_task_id: i32 },
    /// Relayed here by `peer`, to which the result goes back.
    Inbound { peer: String },
}

impl Handler<SubmitTask> for Dispatcher {
    type Result = ResponseActFuture<Self, Result<TaskRow, HubError>>;

    fn handle(&mut self, msg: SubmitTask, _: &mut Context<Self>) -> Self::Result {
        if let Err(refused) = self.admit(msg.by_master) {
            return Box::pin(actix::fut::ready(Err(refused)));
        }
        let mut row = msg.task;
        let depends_on = msg.depends_on;
        let delivery = msg.delivery;
        let crossings = msg.crossings;
        let also = msg.also;
        let agent = if depends_on.is_empty() {
            self.pick_agent(&row.required_capability, row.assign_to.as_deref(), None)
        } else {
            None
        };
        if let Some(agent_id) = &agent {
            self.roster.update(agent_id, |slot| slot.pending += 1);
            self.roster.note_assignment(agent_id);
            row.status = TaskStatus::Assigned.as_str().into();
            row.assigned_to = Some(agent_id.clone());
            row.assigned_at = Some(row.created_at.clone());
            row.attempts = 1;
        }
        let core = self.core.clone();
        let registry = self.registry.clone();
        let actor = msg.actor;
        let work = async move {
            let (row, wait) = core
                .db
                .write(move |conn| {
                    let statuses = dependency_statuses(conn, &depends_on)?;
                    // A dependency that has already failed fails the new task at once.
                    let mut row = row;
                    if statuses
                        .iter()
                        .any(|(_, s)| s.is_terminal() && *s != TaskStatus::Done)
                    {
                        row.status = TaskStatus::Failed.as_str().into();
                        row.reason = Some("dependency_failed".into());
                        row.completed_at = Some(row.created_at.clone());
                    }
                    let task = insert_task(conn, &core.notary, row, &actor)?;
                    if let Some(also) = also {
                        also(conn, &task)?;
                    }
                    if let Some((webhook, key)) = &delivery {
                        record_delivery(conn, webhook, key, task.id)?;
                    }
                    for crossing in &crossings {
                        record_crossing(conn, crossing, task.id)?;
                    }
                    let edges: Vec<DependencyRow> = depends_on
                        .iter()
                        .map(|&dep| DependencyRow {
                            task_id: task.id,
                            depends_on_id: dep,
                        })
                        .collect();
                    insert_edges(conn, &edges)?;
                    let wait = PlainWait::from_dependencies(task.id, &statuses)
                        .filter(|_| task.status != TaskStatus::Failed.as_str());
                    Ok((task, wait))
                })
                .await?;
            if row.status != TaskStatus::Failed.as_str() {
                registry
                    .send(StartTask {
                        row: row.clone(),
                        blocked: wait.is_some(),
                    })
                    .await??;
            }
            Ok::<_, HubError>((row, wait))
        };
        Box::pin(work.into_actor(self).map(move |created, this, ctx| {
            if let Some(agent_id) = &agent {
                this.roster.update(agent_id, |slot| slot.pending -= 1);
            }
            let (row, wait) = match created {
                Ok(created) => created,
                Err(error) => {
                    if let Some(agent_id) = &agent {
                        this.fill(agent_id, ctx);
                    }
                    return Err(error);
                }
            };
            let live = LiveTask::from_row(&row)?;
            this.count_created(&live);
            if let Some(agent_id) = &agent {
                this.hold(row.id, agent_id);
                this.core.publish(HubEvent::new(
                    "task_assigned",
                    task_event(&row),
                    live.audience(),
                ));
                return Ok(row);
            }
            if live.status.is_terminal() {
                this.core.publish(HubEvent::new(
                    "task_updated",
                    task_event(&row),
                    live.audience(),
                ));
                this.finished.record(row.id, false);
                return Ok(row);
            }
            this.core.publish(HubEvent::new(
                "task_queued",
                task_event(&row),
                live.audience(),
            ));
            match wait {
                Some(wait) => this.wait(wait),
                None => this.offer(live.ready(), ctx),
            }
            Ok(row)
        }))
    }
}

/// Sent by `POST /api/pipelines`: up to 50 tasks, all or none, `depends_on[i]` holding
/// indexes of earlier members (already checked by `domain::graph::check_pipeline`).
#[derive(Message)]
#[rtype(result = "Result<(PipelineRow, Vec<TaskRow>), HubError>")]
pub struct SubmitPipeline {
    pub name: Option<String>,
    pub created_by: String,
    pub tasks: Vec<NewTaskRow>,
    pub depends_on: Vec<Vec<i64>>,
    pub actor: String,
    /// Asked for by the master token (not held to the cost cap).
    pub by_master: bool,
    /// More to write in the pipeline's transaction (its idempotency key and answer).
    pub also: Option<AfterPipeline>,
}

impl Handler<SubmitPipeline> for Dispatcher {
    type Result = ResponseActFuture<Self, Result<(PipelineRow, Vec<TaskRow>), HubError>>;

    fn handle(&mut self, msg: SubmitPipeline, _: &mut Context<Self>) -> Self::Result {
        if let Err(refused) = self.admit(msg.by_master) {
            return Box::pin(actix::fut::ready(Err(refused)));
        }
        let core = self.core.clone();
        let registry = self.registry.clone();
        let work = async move {
            let (pipeline, rows, edges) = core
                .db
                .write(move |conn| {
                    let pipeline: PipelineRow = diesel::insert_into(pipelines::table)
                        .values((
                            pipelines::name.eq(&msg.name),
                            pipelines::created_by.eq(&msg.created_by),
                            pipelines::status.eq("running"),
                            pipelines::created_at.eq(now_iso()),
                        ))
                        .returning(crate::db::columns_of::<PipelineRow>())
                        .get_result(conn)?;
                    let mut rows = Vec::with_capacity(msg.tasks.len());
                    for (index, mut task) in msg.tasks.into_iter().enumerate() {
                        task.pipeline_id = Some(pipeline.id);
                        task.pipeline_index = Some(index as i32);
                        rows.push(insert_task(conn, &core.notary, task, &msg.actor)?);
                    }
                    let mut edges = Vec::new();
                    for (index, deps) in msg.depends_on.iter().enumerate() {
                        for &dep in deps {
                            edges.push(DependencyRow {
                                task_id: rows[index].id,
                                depends_on_id: rows[dep as usize].id,
                            });
                        }
                    }
                    insert_edges(conn, &edges)?;
                    let detail = json!({ "tasks": rows.len(), "name": pipeline.name });
                    NewAuditRow::new(
                        &msg.actor,
                        "pipeline.create",
                        format!("pipeline:{}", pipeline.id),
                        Some(detail),
                    )
                    .append(conn)?;
                    if let Some(also) = msg.also {
                        also(conn, &pipeline, &rows)?;
                    }
                    let edges: Vec<(i32, i32)> =
                        edges.iter().map(|e| (e.task_id, e.depends_on_id)).collect();
                    Ok((pipeline, rows, edges))
                })
                .await?;
            let members = rows.iter().map(|r| (r.id, TaskStatus::Queued)).collect();
            let boot = BootPipeline {
                row: pipeline.clone(),
                members,
                edges: edges.clone(),
            };
            registry
                .send(StartPipeline {
                    pipeline: boot,
                    rows: rows.clone(),
                })
                .await??;
            Ok::<_, HubError>((pipeline, rows, edges))
        };
        Box::pin(work.into_actor(self).map(|created, this, ctx| {
            let (pipeline, rows, edges) = created?;
            for row in &rows {
                let live = LiveTask::from_row(row)?;
                this.count_created(&live);
                this.core.publish(HubEvent::new(
                    "task_queued",
                    task_event(row),
                    live.audience(),
                ));
                if !edges.iter().any(|(task, _)| *task == row.id) {
                    this.offer(live.ready(), ctx);
                }
            }
            Ok((pipeline, rows))
        }))
    }
}
