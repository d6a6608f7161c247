//! Scheduler: dispatches templates that carry a schedule, on time, once per occurrence.
//!
//! It keeps each schedule's next occurrence in memory and one timer for the soonest; a
//! change through the API reloads that schedule. An occurrence becomes a task submitted
//! to the Dispatcher like any other, and is recorded in that task's own transaction: the
//! record's primary key means a restart or a second hub process sharing the database can
//! never dispatch it again. Occurrences missed while the hub was down are recorded as
//! skipped, or dispatched when the schedule asks for catch-up. A paused schedule fires
//! nothing; while the kill switch is engaged each occurrence is recorded as skipped.
//!
//! Being the hub's clock, it also sweeps expired idempotency keys now and then (a keyed
//! create only writes its own record, so that it stays cheap), and runs retention
//! every `retention_interval_seconds` when `retention_days` is set.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::dispatcher::{Dispatcher, SubmitTask};
use super::retention::{archive_old_tasks, Archived};
use super::Core;
use crate::db::idempotency;
use crate::db::models::{NewTaskRow, TemplateRow};
use crate::db::schedules::{self, OccurrenceRow, Scheduled};
use crate::db::ReadPool;
use crate::domain::iso;
use crate::domain::schedule::Schedule;
use crate::error::HubError;

/// The longest the timer sleeps, so a clock change is noticed within a minute.
const LONGEST_SLEEP: Duration = Duration::from_secs(60);
/// How often expired idempotency keys are swept, and how many one write forgets.
const SWEEP_EVERY: Duration = Duration::from_secs(300);
const SWEEP_BATCH: i64 = 10_000;

struct Entry {
    template: TemplateRow,
    schedule: Schedule,
    paused: bool,
    next: Option<DateTime<Utc>>,
}

pub struct Scheduler {
    core: Core,
    dispatcher: Addr<Dispatcher>,
    reads: ReadPool,
    entries: HashMap<i32, Entry>,
    timer: Option<SpawnHandle>,
    /// Whether a retention run is under way (a slow one is not started twice).
    archiving: bool,
    retention: RetentionView,
}

/// What retention has done since the hub started, for the overview.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RetentionView {
    /// Days a finished task is kept; null when retention is off (every task is kept).
    pub days: Option<u64>,
    pub last_run_at: Option<String>,
    /// Tasks the last run archived and deleted.
    pub last_archived: usize,
    pub archived_since_start: usize,
    /// Why the last run stopped, if it failed.
    pub last_error: Option<String>,
}

/// Sent by the overview: what retention has done since the hub started.
#[derive(Message)]
#[rtype(result = "RetentionView")]
pub struct GetRetention;

impl Handler<GetRetention> for Scheduler {
    type Result = MessageResult<GetRetention>;

    fn handle(&mut self, _: GetRetention, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.retention.clone())
    }
}

impl Scheduler {
    pub fn new(core: Core, dispatcher: Addr<Dispatcher>, reads: ReadPool) -> Self {
        let days = core.settings.retention_days;
        Self {
            core,
            dispatcher,
            reads,
            entries: HashMap::new(),
            timer: None,
            archiving: false,
            retention: RetentionView {
                days: (days > 0).then_some(days),
                ..RetentionView::default()
            },
        }
    }

    /// Takes a stored schedule in; at start (`missed`), first settles the occurrences that
    /// fell while the hub was down.
    fn adopt(&mut self, (row, template, last): Scheduled, missed: bool, ctx: &mut Context<Self>) {
        let schedule = match Schedule::parse(&row.cron, &row.time_zone) {
            Ok(schedule) => schedule,
            Err(error) => {
                tracing::warn!(template.id = template.id, %error, "a stored schedule no longer parses; it is not run");
                return;
            }
        };
        let now = Utc::now();
        if missed && !row.paused {
            let from = last.max(Some(row.since.clone())).unwrap_or_default();
            let from = from.parse::<DateTime<Utc>>().unwrap_or(now);
            let (times, older) = schedule.between(from, now);
            if row.catch_up {
                for at in times {
                    self.dispatch(&template, at, ctx);
                }
            } else if !times.is_empty() {
                self.skip(template.id, times, older, ctx);
            }
        }
        let entry = Entry {
            next: schedule.next_after(now),
            template,
            schedule,
            paused: row.paused,
        };
        self.entries.insert(entry.template.id, entry);
    }

    /// Records occurrences missed while the hub was down.
    fn skip(
        &self,
        template_id: i32,
        times: Vec<DateTime<Utc>>,
        older: u64,
        ctx: &mut Context<Self>,
    ) {
        let mut why = String::from("missed while the hub was down");
        if older > 0 {
            why.push_str(&format!(
                " ({older} earlier ones were not recorded one by one)"
            ));
        }
        let rows: Vec<OccurrenceRow> = times
            .into_iter()
            .map(|at| OccurrenceRow::skipped(template_id, iso(at), why.clone()))
            .collect();
        let db = self.core.db.clone();
        ctx.spawn(
            async move {
                let count = rows.len();
                match db.write(move |conn| schedules::record_skipped(conn, &rows)).await {
                    Ok(()) => tracing::info!(template.id = template_id, count, "skipped the occurrences missed while the hub was down"),
                    Err(error) => tracing::warn!(template.id = template_id, %error, "cannot record skipped occurrences"),
                }
            }
            .into_actor(self),
        );
    }

    /// Submits the task of one occurrence, recorded in the task's own transaction; a
    /// refusal (the kill switch, the cost cap) is recorded as a skip.
    fn dispatch(&self, template: &TemplateRow, at: DateTime<Utc>, ctx: &mut Context<Self>) {
        let (template_id, occurrence) = (template.id, iso(at));
        let recorded = occurrence.clone();
        let message = SubmitTask {
            task: scheduled_task(template),
            depends_on: vec![],
            actor: format!("schedule:{template_id}"),
            delivery: None,
            crossings: vec![],
            by_master: template.created_by == "master",
            also: Some(Box::new(move |conn, task| {
                schedules::record(
                    conn,
                    &OccurrenceRow::dispatched(template_id, recorded, task.id),
                )
            })),
        };
        let (dispatcher, db) = (self.dispatcher.clone(), self.core.db.clone());
        ctx.spawn(
            async move {
                let refusal = match dispatcher.send(message).await {
                    Ok(Ok(task)) => {
                        tracing::info!(template.id = template_id, task.id = task.id, %occurrence, "dispatched a scheduled occurrence");
                        return;
                    }
                    // Recorded already: another hub process sharing the database took it.
                    Ok(Err(HubError::Conflict(why))) => {
                        tracing::info!(template.id = template_id, %occurrence, %why, "the occurrence was dispatched elsewhere");
                        return;
                    }
                    Ok(Err(refusal)) => refusal.to_string(),
                    Err(error) => format!("the dispatcher did not answer: {error}"),
                };
                tracing::warn!(template.id = template_id, %occurrence, %refusal, "a scheduled occurrence was not dispatched");
                let skipped = [OccurrenceRow::skipped(template_id, occurrence, refusal)];
                if let Err(error) = db.write(move |conn| schedules::record_skipped(conn, &skipped)).await {
                    tracing::warn!(template.id = template_id, %error, "cannot record a skipped occurrence");
                }
            }
            .into_actor(self),
        );
    }

    /// Dispatches every occurrence now due, then sleeps until the next one.
    fn fire(&mut self, ctx: &mut Context<Self>) {
        let now = Utc::now();
        let mut due = Vec::new();
        for entry in self.entries.values_mut().filter(|e| !e.paused) {
            while let Some(at) = entry.next.filter(|at| *at <= now) {
                due.push((entry.template.clone(), at));
                entry.next = entry.schedule.next_after(at);
            }
        }
        for (template, at) in due {
            self.dispatch(&template, at, ctx);
        }
        self.arm(ctx);
    }

    fn arm(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        let soonest = self
            .entries
            .values()
            .filter(|e| !e.paused)
            .filter_map(|e| e.next)
            .min();
        let Some(soonest) = soonest else { return };
        let wait = (soonest - Utc::now())
            .to_std()
            .unwrap_or_default()
            .min(LONGEST_SLEEP);
        self.timer = Some(ctx.run_later(wait, |this, ctx| {
            this.timer = None;
            this.fire(ctx);
        }));
    }
}

/// The task an occurrence of `template` makes, as its creator's.
fn scheduled_task(template: &TemplateRow) -> NewTaskRow {
    NewTaskRow {
        assign_to: template.assign_to.clone(),
        priority: template.priority,
        urgency: template.urgency.clone(),
        model: template.model.clone(),
        template_id: Some(template.id),
        ..NewTaskRow::queued(
            template.title.clone(),
            template.prompt.clone(),
            template.required_capability.clone(),
            template.created_by.clone(),
            "schedule",
        )
    }
}

/// Forgets idempotency keys past their retention, a batch per write so that creates are
/// never held up behind one long delete.
async fn sweep_idempotency_keys(db: crate::actors::db_executor::DbExecutor, hours: u64) {
    let since = iso(Utc::now() - chrono::Duration::hours(hours as i64));
    loop {
        let since = since.clone();
        match db
            .write(move |conn| Ok(idempotency::forget_expired(conn, &since, SWEEP_BATCH)?))
            .await
        {
            Ok(forgot) if (forgot as i64) < SWEEP_BATCH => return,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot sweep expired idempotency keys");
                return;
            }
        }
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(SWEEP_EVERY, |this, ctx| {
            let (db, hours) = (
                this.core.db.clone(),
                this.core.settings.idempotency_retention_hours,
            );
            ctx.spawn(sweep_idempotency_keys(db, hours).into_actor(this));
        });
        if self.core.settings.retention_days > 0 {
            let every = Duration::from_secs(self.core.settings.retention_interval_seconds);
            ctx.run_interval(every, |this, ctx| {
                if this.archiving {
                    return;
                }
                this.archiving = true;
                let (core, reads) = (this.core.clone(), this.reads.clone());
                let run = async move {
                    let (db, settings, metrics) = (core.db, core.settings, core.metrics);
                    archive_old_tasks(db, reads, &settings, &metrics).await
                };
                ctx.spawn(run.into_actor(this).map(|outcome, this, _| {
                    this.archiving = false;
                    this.retention.last_run_at = Some(crate::domain::now_iso());
                    this.retention.last_error = None;
                    match outcome {
                        Ok(Archived { tasks, file }) => {
                            this.retention.last_archived = tasks;
                            this.retention.archived_since_start += tasks;
                            if tasks > 0 {
                                tracing::info!(tasks, file = ?file, "archived and deleted finished tasks");
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "retention stopped");
                            this.retention.last_error = Some(error.to_string());
                        }
                    }
                }));
            });
        }
        let reads = self.reads.clone();
        let load =
            async move { crate::db::read(&reads, |conn| Ok(schedules::every(conn, None)?)).await };
        ctx.wait(load.into_actor(self).map(|loaded, this, ctx| {
            match loaded {
                Ok(all) => {
                    for scheduled in all {
                        this.adopt(scheduled, true, ctx);
                    }
                }
                Err(error) => tracing::error!(%error, "cannot read the schedules; none will run"),
            }
            this.arm(ctx);
        }));
    }
}

/// Sent by the template handlers after a schedule's change committed: read it again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reload {
    pub template_id: i32,
}

impl Handler<Reload> for Scheduler {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Reload, _: &mut Context<Self>) -> Self::Result {
        let reads = self.reads.clone();
        let id = msg.template_id;
        let load = async move {
            crate::db::read(&reads, move |conn| Ok(schedules::scheduled(conn, id)?)).await
        };
        Box::pin(load.into_actor(self).map(move |loaded, this, ctx| {
            this.entries.remove(&id);
            match loaded {
                Ok(Some(scheduled)) => this.adopt(scheduled, false, ctx),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(template.id = id, %error, "cannot read a changed schedule")
                }
            }
            this.arm(ctx);
        }))
    }
}
