//! Dispatcher: the one place that decides which agent runs which task. It keeps the ready
//! queue and every agent's slots, and reacts to messages: a task submitted or ready again,
//! an agent available (registered, back online, heartbeat), a slot released, an agent gone.
//! Being one actor, it never hands the same task out twice; nothing polls.
//!
//! It also holds the kill switch, because admitting new work is its decision.
//!
//! Plain tasks with `depends_on` wait here until their dependencies are done (pipeline
//! members wait in their PipelineActor instead).
//!
//! Handles: [`SubmitTask`], [`SubmitPipeline`], [`TaskReady`], [`TaskReleased`], [`TaskFinished`],
//! [`AgentAvailable`], [`AgentHold`], [`AgentHeartbeat`], [`AgentGone`], [`GetLoads`], [`Restore`],
//! [`SetKillSwitch`], [`GetKillSwitch`], [`QueueDepths`].

mod admission;
mod budget;
pub mod queue;
pub mod roster;

use std::collections::{HashMap, VecDeque};

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use admission::{
    AfterPipeline, AfterTask, CheckAdmission, Crossing, SubmitPipeline, SubmitTask,
};
use budget::Budget;
pub use budget::{BudgetView, Forgiven, BUDGET_RESET_KEY};
pub use queue::Ready;
use queue::ReadyQueue;
use roster::Roster;

use super::registry::{Directory, Registry, Wake};
use super::task::{Assign, FailDependency, LiveTask, Release, Requeue};
use super::Core;
use crate::alerts::Alert;
use crate::db::models::NewAuditRow;
use crate::db::queries::put_setting;
use crate::domain::agent::Profile;
use crate::domain::event::{Audience, HubEvent};
use crate::domain::graph::Waiting;
use crate::domain::now_iso;
use crate::domain::reputation::{Outcome, Stats};
use crate::domain::task::TaskStatus;
use crate::error::HubError;

/// The settings row holding the kill switch.
pub const KILL_SWITCH_KEY: &str = "kill_switch";

/// The kill switch: while active no new work is admitted and queued work waits.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KillSwitch {
    pub active: bool,
    pub reason: Option<String>,
    pub by: Option<String>,
    pub at: Option<String>,
}

pub struct Dispatcher {
    core: Core,
    registry: Addr<Registry>,
    directory: Directory,
    queue: ReadyQueue,
    roster: Roster,
    /// Task id → the agent whose slot it occupies.
    held: HashMap<i32, String>,
    kill_switch: KillSwitch,
    /// Plain tasks waiting for their `depends_on`.
    waits: Waiting,
    finished: FinishedLog,
    budget: Budget,
}

/// A plain task that must wait: the dependencies not yet finished, or the first one that
/// failed (then the task fails at once).
#[derive(Debug, Clone)]
pub struct PlainWait {
    pub task_id: i32,
    pub unmet: Vec<i32>,
    pub failed_dependency: Option<i32>,
}

impl PlainWait {
    /// `None` when every dependency is already done.
    pub fn from_dependencies(task_id: i32, dependencies: &[(i32, TaskStatus)]) -> Option<Self> {
        let failed_dependency = dependencies
            .iter()
            .find(|(_, s)| s.is_terminal() && *s != TaskStatus::Done)
            .map(|(d, _)| *d);
        let unmet: Vec<i32> = dependencies
            .iter()
            .filter(|(_, s)| !s.is_terminal())
            .map(|(d, _)| *d)
            .collect();
        (failed_dependency.is_some() || !unmet.is_empty()).then_some(Self {
            task_id,
            unmet,
            failed_dependency,
        })
    }
}

/// Outcomes of recently finished tasks, so a wait registered just after its dependency
/// finished (the window between a create's commit and its registration here) is not lost.
#[derive(Debug, Default)]
struct FinishedLog {
    outcomes: HashMap<i32, bool>,
    order: VecDeque<i32>,
}

impl FinishedLog {
    const KEEP: usize = 65_536;

    fn record(&mut self, task_id: i32, done: bool) {
        if self.outcomes.insert(task_id, done).is_none() {
            self.order.push_back(task_id);
        }
        while self.order.len() > Self::KEEP {
            if let Some(old) = self.order.pop_front() {
                self.outcomes.remove(&old);
            }
        }
    }

    fn outcome(&self, task_id: i32) -> Option<bool> {
        self.outcomes.get(&task_id).copied()
    }
}

impl Dispatcher {
    pub fn new(core: Core, registry: Addr<Registry>, directory: Directory) -> Self {
        let exploration = core.settings.reputation_exploration;
        let budget = Budget::new(
            core.settings.daily_cost_cap,
            core.settings.agent_daily_token_cap,
        );
        Self {
            core,
            registry,
            directory,
            queue: ReadyQueue::default(),
            roster: Roster::new(exploration),
            held: HashMap::new(),
            kill_switch: KillSwitch::default(),
            waits: Waiting::default(),
            finished: FinishedLog::default(),
            budget,
        }
    }

    /// Makes `wait.task_id` wait for its dependencies (or release or fail it at once).
    fn wait(&mut self, wait: PlainWait) {
        if let Some(dependency) = wait.failed_dependency {
            return self.fail_waiter(wait.task_id, dependency);
        }
        let mut unmet = Vec::with_capacity(wait.unmet.len());
        for dep in wait.unmet {
            match self.finished.outcome(dep) {
                Some(true) => {}
                Some(false) => return self.fail_waiter(wait.task_id, dep),
                None => unmet.push(dep),
            }
        }
        if unmet.is_empty() {
            self.release_waiter(wait.task_id);
        } else {
            self.waits.wait(wait.task_id, unmet);
        }
    }

    fn release_waiter(&self, task_id: i32) {
        if let Some(task) = self.directory.task(task_id) {
            task.do_send(Release);
        }
    }

    fn fail_waiter(&self, task_id: i32, dependency: i32) {
        if let Some(task) = self.directory.task(task_id) {
            task.do_send(FailDependency { dependency });
        }
    }

    /// The agent that should take a task now (see [`choice::choose`]); none while the
    /// kill switch is engaged.
    fn pick_agent(
        &self,
        capability: &str,
        pin: Option<&str>,
        avoid: Option<&str>,
    ) -> Option<String> {
        if self.kill_switch.active {
            return None;
        }
        self.roster.choose(capability, pin, avoid).map(String::from)
    }

    fn hold(&mut self, task_id: i32, agent_id: &str) {
        self.roster.update(agent_id, |slot| {
            slot.holding.insert(task_id);
        });
        self.held.insert(task_id, agent_id.to_string());
    }

    fn release(&mut self, task_id: i32) -> Option<String> {
        let agent_id = self.held.remove(&task_id)?;
        self.roster.update(&agent_id, |slot| {
            slot.holding.remove(&task_id);
        });
        Some(agent_id)
    }

    /// Hands a queued task to an agent: reserve the slot, then ask the TaskActor to
    /// commit the assignment; if that fails the slot is freed again.
    /// A task asleep in the queue is woken first (its actor started from its row).
    fn assign(&mut self, task_id: i32, agent_id: String, ctx: &mut Context<Self>) {
        self.hold(task_id, &agent_id);
        self.roster.note_assignment(&agent_id);
        let (awake, registry) = (self.directory.task(task_id), self.registry.clone());
        let assign = Assign {
            agent_id: agent_id.clone(),
        };
        let request = async move {
            let task = match awake {
                Some(task) => task,
                None => registry
                    .send(Wake(task_id))
                    .await??
                    .ok_or_else(|| HubError::conflict("the task is no longer live"))?,
            };
            task.send(assign).await?
        };
        ctx.spawn(request.into_actor(self).map(move |outcome, this, ctx| {
            if outcome.is_err() {
                this.release(task_id);
                this.fill(&agent_id, ctx);
            }
        }));
    }

    /// Gives `agent_id` queued work until it is full or nothing fits.
    fn fill(&mut self, agent_id: &str, ctx: &mut Context<Self>) {
        while !self.kill_switch.active {
            let Some(slot) = self.roster.slot(agent_id).filter(|s| s.has_room()) else {
                return;
            };
            let Some(task_id) = self.queue.best_for(agent_id, &slot.profile) else {
                return;
            };
            self.queue.remove(task_id);
            self.assign(task_id, agent_id.to_string(), ctx);
        }
    }

    fn fill_everyone(&mut self, ctx: &mut Context<Self>) {
        let agents = self.roster.ids();
        for agent_id in agents {
            self.fill(&agent_id, ctx);
        }
    }

    /// A task is ready: give it to an agent now, or queue it.
    fn offer(&mut self, ready: Ready, ctx: &mut Context<Self>) {
        match self.pick_agent(
            &ready.capability,
            ready.pin.as_deref(),
            ready.avoid.as_deref(),
        ) {
            Some(agent_id) => self.assign(ready.task_id, agent_id, ctx),
            None => self.queue.push(ready),
        }
    }

    /// Requeues every task `agent_id` holds (it went offline or was removed).
    fn requeue_held(&mut self, agent_id: &str, reason: &'static str) {
        let Some(slot) = self.roster.slot(agent_id) else {
            return;
        };
        for task_id in slot.holding.iter().copied() {
            if let Some(task) = self.directory.task(task_id) {
                task.do_send(Requeue {
                    agent_id: agent_id.to_string(),
                    reason,
                });
            }
        }
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Every task submission passes through here; a small mailbox would refuse bursts.
        ctx.set_mailbox_capacity(1 << 20);
        // At UTC midnight the budgets reset and resting agents get work again.
        ctx.run_interval(std::time::Duration::from_secs(30), |this, ctx| {
            // A follower's Dispatcher holds no agents, and says nothing: the leader does.
            if this.budget.roll() && !this.core.db.follows() {
                this.core.alerts.raise(Alert {
                    title: "Daily budgets reset".into(),
                    message: "A new UTC day: the cost cap and agents' token caps start again."
                        .into(),
                    detail: None,
                    priority: 2,
                    tags: "calendar",
                });
                for agent_id in this.roster.ids() {
                    this.roster.update(&agent_id, |slot| slot.resting = false);
                }
                this.fill_everyone(ctx);
            }
        });
    }
}

/// Sent by a TaskActor that is queued again (handed back or requeued).
#[derive(Message)]
#[rtype(result = "()")]
pub struct TaskReady(pub Ready);

impl Handler<TaskReady> for Dispatcher {
    type Result = ();

    fn handle(&mut self, TaskReady(ready): TaskReady, ctx: &mut Context<Self>) {
        self.offer(ready, ctx);
    }
}

/// Sent by a TaskActor that no longer occupies its holder's slot.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TaskReleased {
    pub task_id: i32,
    /// The holder whose slot it leaves; a slot of anyone else is never touched.
    pub agent_id: String,
}

impl Handler<TaskReleased> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: TaskReleased, ctx: &mut Context<Self>) {
        if self.held.get(&msg.task_id) == Some(&msg.agent_id) {
            self.release(msg.task_id);
            self.fill(&msg.agent_id, ctx);
        }
    }
}

/// Sent by a TaskActor that reached a terminal state (`done` tells whether it succeeded).
#[derive(Message)]
#[rtype(result = "()")]
pub struct TaskFinished {
    pub task_id: i32,
    pub done: bool,
    /// The agent whose reputation this outcome counts for (the last holder), if any.
    pub credited: Option<(String, String, Outcome)>,
}

impl Handler<TaskFinished> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: TaskFinished, ctx: &mut Context<Self>) {
        self.queue.remove(msg.task_id);
        self.waits.forget(msg.task_id);
        self.finished.record(msg.task_id, msg.done);
        if let Some((agent_id, capability, outcome)) = &msg.credited {
            self.roster.record(agent_id, capability, *outcome);
        }
        let released = self.waits.finished(msg.task_id, msg.done);
        for task in released.ready {
            self.release_waiter(task);
        }
        for task in released.failed {
            self.fail_waiter(task, msg.task_id);
        }
        if let Some(agent_id) = self.release(msg.task_id) {
            self.fill(&agent_id, ctx);
        }
    }
}

/// Sent by a TaskActor after a report that added cost or tokens committed.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct UsageAdded {
    pub agent_id: String,
    pub cost_usd: f64,
    /// (in, out)
    pub tokens: (i32, i32),
}

/// A task's reported totals: cost, tokens in, tokens out.
pub type UsageTotals = (Option<f64>, Option<i32>, Option<i32>);

impl UsageAdded {
    /// What a report added, from the task's totals before and after it.
    pub fn between(agent_id: String, before: UsageTotals, after: UsageTotals) -> Self {
        let cost_usd = (after.0.unwrap_or(0.0) - before.0.unwrap_or(0.0)).max(0.0);
        let tokens_in = (after.1.unwrap_or(0) - before.1.unwrap_or(0)).max(0);
        let tokens_out = (after.2.unwrap_or(0) - before.2.unwrap_or(0)).max(0);
        Self {
            agent_id,
            cost_usd,
            tokens: (tokens_in, tokens_out),
        }
    }
}

impl Handler<UsageAdded> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: UsageAdded, _: &mut Context<Self>) {
        let tokens = i64::from(msg.tokens.0) + i64::from(msg.tokens.1);
        let capped_before = self.budget.cost_cap_reached();
        let rested = self.budget.add(&msg.agent_id, msg.cost_usd, tokens);
        if !capped_before && self.budget.cost_cap_reached() {
            self.core.alerts.raise(Alert {
                title: "Daily cost cap reached".into(),
                message: format!(
                    "Reported cost reached the daily cap of {:.2} USD; new work is refused until UTC midnight.",
                    self.core.settings.daily_cost_cap
                ),
                detail: None,
                priority: 5,
                tags: "money_with_wings",
            });
        }
        if let Some(agent_id) = rested {
            tracing::info!(agent.id = %agent_id, "agent reached its daily token cap; no more tasks for it today");
            self.core.alerts.raise(Alert {
                title: format!("Agent {agent_id} reached its daily token cap"),
                message: format!("{agent_id} gets no more tasks until UTC midnight."),
                detail: None,
                priority: 3,
                tags: "hourglass",
            });
            self.roster.update(&agent_id, |slot| slot.resting = true);
        }
    }
}

/// Sent by the verify handler after its commit: an operator vouched for an agent's work.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TaskVerified {
    pub agent_id: String,
    pub capability: String,
}

impl Handler<TaskVerified> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: TaskVerified, _: &mut Context<Self>) {
        self.roster
            .record(&msg.agent_id, &msg.capability, Outcome::Verified);
    }
}

/// Sent by an AgentActor that registered or came back online (also the shape of an agent
/// in [`Restore`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentAvailable {
    pub agent_id: String,
    pub profile: Profile,
    /// On hold by an operator: known, but given no new work.
    pub held: bool,
}

impl Dispatcher {
    fn enroll(&mut self, agent: AgentAvailable, online: bool) {
        self.roster.upsert(&agent.agent_id, agent.profile, online);
        self.roster
            .update(&agent.agent_id, |slot| slot.held = agent.held);
    }
}

impl Handler<AgentAvailable> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: AgentAvailable, ctx: &mut Context<Self>) {
        let agent_id = msg.agent_id.clone();
        self.enroll(msg, true);
        self.queue.forgive(&agent_id);
        self.fill(&agent_id, ctx);
    }
}

/// Sent by an AgentActor when an operator puts it on hold or wakes it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentHold {
    pub agent_id: String,
    pub held: bool,
}

impl Handler<AgentHold> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: AgentHold, ctx: &mut Context<Self>) {
        self.roster
            .update(&msg.agent_id, |slot| slot.held = msg.held);
        if !msg.held {
            self.fill(&msg.agent_id, ctx);
        }
    }
}

/// Sent by an online AgentActor on every heartbeat.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentHeartbeat {
    pub agent_id: String,
}

impl Handler<AgentHeartbeat> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: AgentHeartbeat, ctx: &mut Context<Self>) {
        if !self.queue.is_empty() {
            self.fill(&msg.agent_id, ctx);
        }
    }
}

/// Sent by an AgentActor that went offline (`removed: false`) or was deleted.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentGone {
    pub agent_id: String,
    pub removed: bool,
}

impl Handler<AgentGone> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: AgentGone, _: &mut Context<Self>) {
        let reason = if msg.removed {
            "agent_removed"
        } else {
            "agent_offline"
        };
        self.roster
            .update(&msg.agent_id, |slot| slot.online = false);
        self.requeue_held(&msg.agent_id, reason);
        if msg.removed {
            self.roster.remove(&msg.agent_id);
        }
    }
}

/// Asked before relaying: does any registered agent (online or not) serve `capability`?
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Serves {
    pub capability: String,
}

impl Handler<Serves> for Dispatcher {
    type Result = bool;

    fn handle(&mut self, msg: Serves, _: &mut Context<Self>) -> bool {
        self.roster.serves(&msg.capability)
    }
}

/// Asked by a task that waited past its schedule timeout: why nobody took it.
#[derive(Message)]
#[rtype(result = "String")]
pub struct WhyUnclaimed {
    pub capability: String,
    pub pin: Option<String>,
}

impl Handler<WhyUnclaimed> for Dispatcher {
    type Result = String;

    fn handle(&mut self, msg: WhyUnclaimed, _: &mut Context<Self>) -> String {
        if self.kill_switch.active {
            return "the kill switch is engaged".into();
        }
        self.roster
            .why_unclaimed(&msg.capability, msg.pin.as_deref())
    }
}

/// Sent by the Registry when listing agents: agent id → tasks it holds.
#[derive(Message)]
#[rtype(result = "HashMap<String, usize>")]
pub struct GetLoads;

impl Handler<GetLoads> for Dispatcher {
    type Result = MessageResult<GetLoads>;

    fn handle(&mut self, _: GetLoads, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.roster.loads())
    }
}

/// Sent by `GET /metrics`: tasks waiting in the ready queue, per capability.
#[derive(Message)]
#[rtype(result = "Vec<(String, usize)>")]
pub struct QueueDepths;

impl Handler<QueueDepths> for Dispatcher {
    type Result = MessageResult<QueueDepths>;

    fn handle(&mut self, _: QueueDepths, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.queue.depths())
    }
}

/// Sent once by the Registry at boot, after it has started every live actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Restore {
    /// Every stored agent, and whether it is presumed online.
    pub agents: Vec<(AgentAvailable, bool)>,
    /// Tasks with an actor.
    pub tasks: Vec<LiveTask>,
    /// Queued tasks that sleep (no actor): their queue entries.
    pub asleep: Vec<Ready>,
    /// Plain tasks still waiting for dependencies.
    pub waits: Vec<PlainWait>,
    /// (agent, capability, counters).
    pub reputation: Vec<(String, String, Stats)>,
    /// Today's usage so far: (agent, cost, tokens).
    pub usage: Vec<(String, f64, i64)>,
    /// The last stored budget reset (ignored unless it was today).
    pub forgiven: Forgiven,
    pub kill_switch: KillSwitch,
}

impl Handler<Restore> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: Restore, ctx: &mut Context<Self>) {
        self.kill_switch = msg.kill_switch;
        for (agent, online) in msg.agents {
            self.enroll(agent, online);
        }
        for (agent_id, capability, stats) in &msg.reputation {
            self.roster.set_stats(agent_id, capability, *stats);
        }
        for (agent_id, cost, tokens) in &msg.usage {
            self.budget.add(agent_id, *cost, *tokens);
        }
        self.budget.restore(msg.forgiven);
        for agent_id in self.budget.resting() {
            self.roster.update(&agent_id, |slot| slot.resting = true);
        }
        let mut orphans: Vec<String> = Vec::new();
        for task in msg.tasks {
            match (task.status.holds_slot(), task.assigned_to.clone()) {
                (true, Some(agent_id)) => {
                    if self.roster.slot(&agent_id).is_none() {
                        // Held by an agent that no longer exists: known only to be requeued.
                        let nobody = Profile {
                            capabilities: vec![],
                            excluded: vec![],
                            max_concurrent: 1,
                        };
                        self.roster.upsert(&agent_id, nobody, false);
                    }
                    if !self.roster.slot(&agent_id).is_some_and(|s| s.online) {
                        orphans.push(agent_id.clone());
                    }
                    self.hold(task.id, &agent_id);
                }
                _ if task.blocked => {}
                _ => self.queue.push(task.ready()),
            }
        }
        for ready in msg.asleep {
            self.queue.push(ready);
        }
        for wait in msg.waits {
            self.wait(wait);
        }
        // Work held by agents that are gone or offline goes back to the queue.
        orphans.sort();
        orphans.dedup();
        for agent_id in orphans {
            self.requeue_held(&agent_id, "agent_offline");
        }
        self.fill_everyone(ctx);
    }
}

/// Sent by the kill-switch handlers.
#[derive(Message)]
#[rtype(result = "Result<KillSwitch, HubError>")]
pub struct SetKillSwitch {
    pub active: bool,
    pub reason: Option<String>,
    pub by: String,
}

impl Handler<SetKillSwitch> for Dispatcher {
    type Result = AtomicResponse<Self, Result<KillSwitch, HubError>>;

    fn handle(&mut self, msg: SetKillSwitch, _: &mut Context<Self>) -> Self::Result {
        let state = KillSwitch {
            active: msg.active,
            reason: msg.reason,
            by: Some(msg.by.clone()),
            at: Some(now_iso()),
        };
        let stored = state.clone();
        let db = self.core.db.clone();
        let write = async move {
            db.write(move |conn| {
                put_setting(conn, KILL_SWITCH_KEY, &json!(stored), &msg.by)?;
                let action = if stored.active {
                    "kill_switch.engage"
                } else {
                    "kill_switch.clear"
                };
                NewAuditRow::new(
                    &msg.by,
                    action,
                    Some("kill_switch".to_string()),
                    Some(json!({ "reason": stored.reason })),
                )
                .append(conn)?;
                Ok(())
            })
            .await
        };
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
            move |written, this, ctx| {
                written?;
                this.kill_switch = state.clone();
                this.core.publish(HubEvent::new(
                    "kill_switch",
                    json!(state),
                    Audience::Everyone,
                ));
                if !state.active {
                    this.fill_everyone(ctx);
                }
                Ok(state)
            },
        )))
    }
}

/// Sent by `GET /api/admin/budget`.
#[derive(Message)]
#[rtype(result = "BudgetView")]
pub struct GetBudget;

impl Handler<GetBudget> for Dispatcher {
    type Result = MessageResult<GetBudget>;

    fn handle(&mut self, _: GetBudget, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.budget.view())
    }
}

/// Sent by `POST /api/admin/budget/reset`: today's reported cost stops counting against
/// the cap (stored and audited; reports still add up in analytics).
#[derive(Message)]
#[rtype(result = "Result<BudgetView, HubError>")]
pub struct ResetBudget {
    pub by: String,
}

impl Handler<ResetBudget> for Dispatcher {
    type Result = AtomicResponse<Self, Result<BudgetView, HubError>>;

    fn handle(&mut self, msg: ResetBudget, _: &mut Context<Self>) -> Self::Result {
        let before = self.budget.view();
        let forgiven = self.budget.reset();
        let db = self.core.db.clone();
        let stored = forgiven.clone();
        let write = async move {
            db.write(move |conn| {
                put_setting(conn, BUDGET_RESET_KEY, &json!(stored), &msg.by)?;
                let detail = json!({ "day": stored.day, "counted_usd_before": before.counted_usd });
                NewAuditRow::new(
                    &msg.by,
                    "budget.reset",
                    Some("budget".to_string()),
                    Some(detail),
                )
                .append(conn)?;
                Ok(())
            })
            .await
        };
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
            move |written, this, ctx| {
                if let Err(error) = written {
                    // Not stored: count the day's cost again as before.
                    this.budget.restore(Forgiven {
                        day: forgiven.day,
                        cost_usd: before.forgiven_usd,
                    });
                    return Err(error);
                }
                this.fill_everyone(ctx);
                Ok(this.budget.view())
            },
        )))
    }
}

/// Sent by `GET /api/admin/kill-switch`.
#[derive(Message)]
#[rtype(result = "KillSwitch")]
pub struct GetKillSwitch;

impl Handler<GetKillSwitch> for Dispatcher {
    type Result = MessageResult<GetKillSwitch>;

    fn handle(&mut self, _: GetKillSwitch, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.kill_switch.clone())
    }
}
