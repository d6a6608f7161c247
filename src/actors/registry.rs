//! Registry: the address book and supervisor of the live actors. It starts AgentActor,
//! TaskActor, PipelineActor and SseSubscriber children, hears from them when they stop, and at boot
//! rebuilds every live actor from the database so a restart loses nothing.
//!
//! The book itself is a [`Directory`] that only the Registry writes; handlers and the
//! Dispatcher read it to reach an actor without a round trip through this mailbox.
//!
//! Handles: [`Boot`], [`StartTask`], [`StartPipeline`], [`RegisterAgent`], [`StartSubscriber`],
//! [`CreateAgent`], [`ChildStopped`], [`CountSubscribers`], [`ListAgents`], [`StandingChanged`],
//! [`AgentStatuses`], [`DescribeAgent`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use actix::prelude::*;
use futures_util::future::join_all;
use tokio::sync::mpsc;

use super::agent::{AgentActor, AgentSnapshot, GetAgent, Register, Registration};
use super::dispatcher::{
    AgentAvailable, Dispatcher, Forgiven, GetLoads, KillSwitch, PlainWait, Ready, Restore,
};
use super::events::{Attach, Detach};
use super::pipeline::PipelineActor;
use super::sse::{Frame, SseSubscriber};
use super::task::{LiveTask, TaskActor};
use super::Core;
use crate::db::models::{AgentRow, NewAgentRow, NewAuditRow, PipelineRow, TaskRow};
use crate::db::reputation::ReputationRow;
use crate::db::ReadPool;
use crate::domain::access::Principal;
use crate::domain::agent::{AgentRef, AgentStatus, Standing};
use crate::domain::event::{Audience, HubEvent};
use crate::domain::task::TaskStatus;
use crate::error::HubError;
use crate::views::AgentView;

#[derive(Default)]
struct Book {
    agents: HashMap<String, Addr<AgentActor>>,
    /// Numeric agent id → agent_id.
    agent_ids: HashMap<i32, String>,
    /// What each registered agent's shown status is made of, kept current by its actor.
    standings: HashMap<String, Standing>,
    tasks: HashMap<i32, Addr<TaskActor>>,
    /// Live tasks asleep in the queue, without an actor.
    asleep: usize,
    pipelines: HashMap<i32, Addr<PipelineActor>>,
}

/// A read view of the Registry's address book.
#[derive(Clone, Default)]
pub struct Directory(Arc<RwLock<Book>>);

impl Directory {
    pub fn agent(&self, agent_id: &str) -> Option<Addr<AgentActor>> {
        self.read(|book| book.agents.get(agent_id).cloned())
    }

    /// The agent a path names, by numeric id or by agent_id, with its agent_id.
    pub fn agent_by(&self, name: &AgentRef) -> Option<(String, Addr<AgentActor>)> {
        self.read(|book| {
            let agent_id = match name {
                AgentRef::Id(id) => book.agent_ids.get(id)?,
                AgentRef::Handle(handle) => handle,
            };
            let addr = book.agents.get(agent_id)?.clone();
            Some((agent_id.clone(), addr))
        })
    }

    fn add_agent(&self, id: i32, agent_id: &str, addr: Addr<AgentActor>) {
        self.write(|book| {
            if id > 0 {
                book.agent_ids.insert(id, agent_id.to_string());
            }
            book.agents.insert(agent_id.to_string(), addr);
        });
    }

    fn set_standing(&self, agent_id: &str, standing: Standing) {
        self.write(|book| {
            if book.agents.contains_key(agent_id) {
                book.standings.insert(agent_id.to_string(), standing);
            }
        });
    }

    pub fn task(&self, task_id: i32) -> Option<Addr<TaskActor>> {
        self.read(|book| book.tasks.get(&task_id).cloned())
    }

    pub fn pipeline(&self, pipeline_id: i32) -> Option<Addr<PipelineActor>> {
        self.read(|book| book.pipelines.get(&pipeline_id).cloned())
    }

    /// How many tasks are live: with an actor, or asleep in the queue.
    pub fn live_tasks(&self) -> usize {
        self.read(|book| book.tasks.len() + book.asleep)
    }

    fn read<T>(&self, f: impl FnOnce(&Book) -> T) -> T {
        // A poisoned lock only means a writer panicked mid-insert; the map is still usable.
        f(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn write<T>(&self, f: impl FnOnce(&mut Book) -> T) -> T {
        f(&mut self.0.write().unwrap_or_else(|e| e.into_inner()))
    }
}

pub struct Registry {
    core: Core,
    dispatcher: Addr<Dispatcher>,
    directory: Directory,
    subscribers: HashMap<u64, Addr<SseSubscriber>>,
    next_subscriber: u64,
    /// Event streams open at once; one more is refused rather than let the hub run out
    /// of file descriptors for everything else.
    max_subscribers: usize,
    /// Reads the row of a sleeping task to wake it.
    reads: ReadPool,
}

impl Registry {
    pub fn new(
        core: Core,
        dispatcher: Addr<Dispatcher>,
        directory: Directory,
        max_subscribers: usize,
        reads: ReadPool,
    ) -> Self {
        Self {
            reads,
            core,
            dispatcher,
            directory,
            subscribers: HashMap::new(),
            next_subscriber: 1,
            max_subscribers,
        }
    }

    /// Starts the actor of a live task, unless it may sleep until it is woken.
    fn start_task(
        &mut self,
        task: LiveTask,
        next_chunk_seq: i32,
        pending_approval: Option<(i32, String)>,
        ctx: &mut Context<Self>,
    ) {
        if task.may_sleep(&self.core.settings) {
            self.directory.write(|book| book.asleep += 1);
            return;
        }
        self.start_task_actor(task, next_chunk_seq, pending_approval, ctx);
    }

    fn start_task_actor(
        &mut self,
        task: LiveTask,
        next_chunk_seq: i32,
        pending_approval: Option<(i32, String)>,
        ctx: &mut Context<Self>,
    ) {
        let id = task.id;
        let mut actor = TaskActor::new(
            task,
            next_chunk_seq,
            self.core.clone(),
            self.dispatcher.clone(),
            ctx.address(),
            self.directory.clone(),
        );
        if let Some((approval, expires_at)) = pending_approval {
            actor = actor.waiting_for(approval, expires_at);
        }
        let actor = actor.start();
        self.directory.write(|book| book.tasks.insert(id, actor));
    }

    fn start_pipeline(&mut self, pipeline: BootPipeline, ctx: &mut Context<Self>) {
        let id = pipeline.row.id;
        let actor = PipelineActor::new(
            id,
            pipeline.row.created_by,
            pipeline.members,
            &pipeline.edges,
            self.core.clone(),
            self.directory.clone(),
            ctx.address(),
        )
        .start();
        self.directory
            .write(|book| book.pipelines.insert(id, actor));
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1 << 20);
    }
}

/// A live task as read at boot: its row, its next stream chunk number and the status
/// of each task it depends on.
pub struct BootTask {
    pub row: TaskRow,
    pub next_chunk_seq: i32,
    /// The approval its holder waits for: (id, expires_at).
    pub pending_approval: Option<(i32, String)>,
    pub dependencies: Vec<(i32, TaskStatus)>,
}

/// A live pipeline: its row, every member with its status, and (task, dependency) edges.
pub struct BootPipeline {
    pub row: PipelineRow,
    pub members: Vec<(i32, TaskStatus)>,
    pub edges: Vec<(i32, i32)>,
}

/// Sent once at start-up with the live rows read from the database.
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub struct Boot {
    pub agents: Vec<AgentRow>,
    pub tasks: Vec<BootTask>,
    /// Queued tasks that sleep: only their entries for the Dispatcher's queue.
    pub asleep: Vec<Ready>,
    pub pipelines: Vec<BootPipeline>,
    pub reputation: Vec<ReputationRow>,
    /// Today's usage: (agent, cost, tokens).
    pub usage: Vec<(String, f64, i64)>,
    pub forgiven: Forgiven,
    pub kill_switch: KillSwitch,
}

impl Handler<Boot> for Registry {
    type Result = Result<(), HubError>;

    fn handle(&mut self, msg: Boot, ctx: &mut Context<Self>) -> Self::Result {
        let mut agents = Vec::with_capacity(msg.agents.len());
        for row in msg.agents {
            let agent = AgentActor::restored(
                row,
                self.core.clone(),
                self.dispatcher.clone(),
                ctx.address(),
            );
            let snapshot = agent.snapshot();
            let addr = agent.start();
            self.directory
                .add_agent(snapshot.id, &snapshot.agent_id, addr);
            self.directory
                .set_standing(&snapshot.agent_id, snapshot.standing());
            let held = snapshot.held();
            let available = AgentAvailable {
                agent_id: snapshot.agent_id,
                profile: snapshot.profile,
                held,
            };
            agents.push((available, snapshot.online));
        }
        let mut tasks = Vec::with_capacity(msg.tasks.len());
        let mut waits = Vec::new();
        for boot in msg.tasks {
            let mut task = LiveTask::from_row(&boot.row)?;
            let wait = PlainWait::from_dependencies(task.id, &boot.dependencies);
            task.blocked = task.status == TaskStatus::Queued && wait.is_some();
            if let (Some(wait), None) = (wait, task.pipeline_id) {
                waits.push(wait);
            }
            tasks.push(task.clone());
            self.start_task(task, boot.next_chunk_seq, boot.pending_approval, ctx);
        }
        let pipelines = msg.pipelines.len();
        for pipeline in msg.pipelines {
            self.start_pipeline(pipeline, ctx);
        }
        self.directory.write(|book| book.asleep += msg.asleep.len());
        tracing::info!(
            agents = agents.len(),
            tasks = tasks.len() + msg.asleep.len(),
            asleep = msg.asleep.len(),
            pipelines,
            "live state restored from the database"
        );
        let reputation = msg
            .reputation
            .iter()
            .map(|r| (r.agent_id.clone(), r.capability.clone(), r.stats()))
            .collect();
        self.dispatcher.do_send(Restore {
            reputation,
            usage: msg.usage,
            forgiven: msg.forgiven,
            agents,
            tasks,
            asleep: msg.asleep,
            waits,
            kill_switch: msg.kill_switch,
        });
        Ok(())
    }
}

/// Sent by the Dispatcher after a new pipeline's insert committed: start its members
/// (blocked where they have dependencies) and its PipelineActor.
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub struct StartPipeline {
    pub pipeline: BootPipeline,
    pub rows: Vec<TaskRow>,
}

impl Handler<StartPipeline> for Registry {
    type Result = Result<(), HubError>;

    fn handle(&mut self, msg: StartPipeline, ctx: &mut Context<Self>) -> Self::Result {
        for row in &msg.rows {
            let mut task = LiveTask::from_row(row)?;
            task.blocked = msg.pipeline.edges.iter().any(|(t, _)| *t == task.id);
            self.start_task(task, 0, None, ctx);
        }
        self.start_pipeline(msg.pipeline, ctx);
        Ok(())
    }
}

/// Sent by the Dispatcher after a new task's insert committed.
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub struct StartTask {
    pub row: TaskRow,
    /// Waiting for dependencies: not to be dispatched until released.
    pub blocked: bool,
}

impl Handler<StartTask> for Registry {
    type Result = Result<(), HubError>;

    fn handle(&mut self, msg: StartTask, ctx: &mut Context<Self>) -> Self::Result {
        let mut task = LiveTask::from_row(&msg.row)?;
        task.blocked = msg.blocked;
        self.start_task(task, 0, None, ctx);
        Ok(())
    }
}

/// Sent by whoever must talk to a task's actor: its address, the actor started from the
/// task's row first if the task was asleep in the queue. `None`: the task is not live.
/// Handled atomically, so a task is never woken twice.
#[derive(Message)]
#[rtype(result = "Result<Option<Addr<TaskActor>>, HubError>")]
pub struct Wake(pub i32);

impl Handler<Wake> for Registry {
    type Result = AtomicResponse<Self, Result<Option<Addr<TaskActor>>, HubError>>;

    fn handle(&mut self, Wake(id): Wake, _: &mut Context<Self>) -> Self::Result {
        if let Some(addr) = self.directory.task(id) {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(Some(addr)))));
        }
        let reads = self.reads.clone();
        let load = async move {
            crate::db::read(&reads, move |conn| {
                let Some(row) = crate::db::queries::task(conn, id)? else {
                    return Ok(None);
                };
                let next_chunk_seq = crate::db::queries::next_chunk_seq(conn, id)?;
                Ok(Some((row, next_chunk_seq)))
            })
            .await
        };
        AtomicResponse::new(Box::pin(load.into_actor(self).map(
            move |loaded, this, ctx| {
                let Some((row, next_chunk_seq)) = loaded? else {
                    return Ok(None);
                };
                let task = LiveTask::from_row(&row)?;
                if task.status.is_terminal() {
                    return Ok(None);
                }
                this.directory
                    .write(|book| book.asleep = book.asleep.saturating_sub(1));
                this.start_task_actor(task, next_chunk_seq, None, ctx);
                Ok(this.directory.task(id))
            },
        )))
    }
}

/// Sent by the register handler: start the agent's actor if it has none, then register.
#[derive(Message)]
#[rtype(result = "Result<AgentSnapshot, HubError>")]
pub struct RegisterAgent {
    pub agent_id: String,
    pub registration: Registration,
    pub by: String,
}

impl Handler<RegisterAgent> for Registry {
    type Result = ResponseFuture<Result<AgentSnapshot, HubError>>;

    fn handle(&mut self, msg: RegisterAgent, ctx: &mut Context<Self>) -> Self::Result {
        let addr = match self.directory.agent(&msg.agent_id) {
            Some(addr) => addr,
            None => {
                let actor = AgentActor::unregistered(
                    msg.agent_id.clone(),
                    self.core.clone(),
                    self.dispatcher.clone(),
                    ctx.address(),
                );
                let addr = actor.start();
                self.directory
                    .write(|book| book.agents.insert(msg.agent_id.clone(), addr.clone()));
                addr
            }
        };
        let directory = self.directory.clone();
        Box::pin(async move {
            let snapshot = addr
                .send(Register {
                    registration: msg.registration,
                    by: msg.by,
                })
                .await??;
            directory.add_agent(snapshot.id, &snapshot.agent_id, addr);
            Ok(snapshot)
        })
    }
}

/// Sent by `POST /api/agents` (seed 004): store a new agent an operator describes and start
/// its actor. It has not been heard from, so it is offline until it heartbeats, registers or
/// calls with its own token.
#[derive(Message)]
#[rtype(result = "Result<AgentSnapshot, HubError>")]
pub struct CreateAgent {
    pub row: NewAgentRow,
    pub by: String,
    /// What the audit row records besides the name.
    pub detail: serde_json::Value,
    /// More to write in the same transaction (an onboarding's credentials); its error
    /// undoes the agent too.
    pub also: Option<AlsoWrite>,
}

/// A write that joins an agent's creation.
pub type AlsoWrite = Box<dyn FnOnce(&mut crate::db::DbConnection) -> Result<(), HubError> + Send>;

impl Handler<CreateAgent> for Registry {
    // Atomic: no registration of the same name may slip in between the check and the
    // actor's start (agent creations are rare; the write is one short transaction).
    type Result = AtomicResponse<Self, Result<AgentSnapshot, HubError>>;

    fn handle(&mut self, msg: CreateAgent, _: &mut Context<Self>) -> Self::Result {
        let agent_id = msg.row.agent_id.clone();
        let taken = move || HubError::conflict(format!("agent name {agent_id:?} already exists"));
        if self.directory.agent(&msg.row.agent_id).is_some() {
            return AtomicResponse::new(Box::pin(fut::ready(Err(taken()))));
        }
        let db = self.core.db.clone();
        let write = async move {
            db.write(move |conn| {
                let stored = crate::db::agents::insert_agent(conn, &msg.row)?.ok_or_else(taken)?;
                let target = format!("agent:{}", stored.agent_id);
                NewAuditRow::new(&msg.by, "agent.create", target, Some(msg.detail)).append(conn)?;
                if let Some(also) = msg.also {
                    also(conn)?;
                }
                Ok(stored)
            })
            .await
        };
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
            |written, this, ctx| {
                let row = written?;
                let actor = AgentActor::restored(
                    row,
                    this.core.clone(),
                    this.dispatcher.clone(),
                    ctx.address(),
                );
                let snapshot = actor.snapshot();
                let addr = actor.start();
                this.directory
                    .add_agent(snapshot.id, &snapshot.agent_id, addr);
                this.directory
                    .set_standing(&snapshot.agent_id, snapshot.standing());
                // Not offered work yet: it is available once it heartbeats (or calls).
                let created = serde_json::json!({
                    "id": snapshot.id,
                    "agent_id": snapshot.agent_id,
                    "name": snapshot.name,
                    "role": snapshot.role,
                });
                let audience = Audience::Agent {
                    agent_id: snapshot.agent_id.clone(),
                };
                this.core
                    .publish(HubEvent::new("agent_created", created, audience));
                Ok(snapshot)
            },
        )))
    }
}

/// Sent by the stream handler: start a subscriber; the receiver feeds the HTTP response.
/// Refused while `max_subscribers` streams are open.
#[derive(Message)]
#[rtype(result = "Result<mpsc::Receiver<Frame>, HubError>")]
pub struct StartSubscriber {
    pub principal: Principal,
    pub last_event_id: Option<u64>,
    /// Where the connection is served: the subscriber runs there too, so that fanning an
    /// event out to many streams is spread over every HTTP worker's thread, and each
    /// event crosses threads once, on its way into the subscriber's mailbox.
    pub arbiter: Option<ArbiterHandle>,
}

impl Handler<StartSubscriber> for Registry {
    type Result = Result<mpsc::Receiver<Frame>, HubError>;

    fn handle(&mut self, msg: StartSubscriber, ctx: &mut Context<Self>) -> Self::Result {
        if self.subscribers.len() >= self.max_subscribers {
            return Err(HubError::Unavailable(format!(
                "the hub holds at most {} event streams and all are open; retry shortly",
                self.max_subscribers
            )));
        }
        let settings = &self.core.settings;
        let (queue, receiver) = mpsc::channel(settings.sse_queue_capacity.max(1));
        let id = self.next_subscriber;
        self.next_subscriber += 1;
        let subscriber = SseSubscriber::new(
            id,
            msg.principal,
            queue,
            settings.sse_queue_capacity,
            ctx.address(),
            self.core.metrics.clone(),
            std::time::Duration::from_secs(settings.sse_comment_seconds.max(1)),
        );
        let addr = match msg.arbiter {
            Some(arbiter) => SseSubscriber::start_in_arbiter(&arbiter, |_| subscriber),
            None => subscriber.start(),
        };
        self.subscribers.insert(id, addr.clone());
        self.core.events.do_send(Attach {
            subscriber_id: id,
            addr,
            last_event_id: msg.last_event_id,
        });
        Ok(receiver)
    }
}

/// Sent by a child from its `stopping()`.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum ChildStopped {
    Agent(String),
    Task(i32),
    Pipeline(i32),
    Subscriber(u64),
}

impl Handler<ChildStopped> for Registry {
    type Result = ();

    fn handle(&mut self, msg: ChildStopped, _: &mut Context<Self>) {
        match msg {
            ChildStopped::Agent(id) => {
                self.directory.write(|book| {
                    book.agents.remove(&id);
                    book.standings.remove(&id);
                    book.agent_ids.retain(|_, agent_id| *agent_id != id);
                });
            }
            ChildStopped::Task(id) => {
                self.directory.write(|book| book.tasks.remove(&id));
            }
            ChildStopped::Pipeline(id) => {
                self.directory.write(|book| book.pipelines.remove(&id));
            }
            ChildStopped::Subscriber(id) => {
                self.subscribers.remove(&id);
                self.core.events.do_send(Detach { subscriber_id: id });
            }
        }
    }
}

/// Sent by the health handler.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountSubscribers;

impl Handler<CountSubscribers> for Registry {
    type Result = usize;

    fn handle(&mut self, _: CountSubscribers, _: &mut Context<Self>) -> usize {
        self.subscribers.len()
    }
}

/// Sent by the agents list: registered agents with their load, by agent_id, filtered and
/// paged.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<AgentList, HubError>")]
pub struct ListAgents {
    pub status: Option<String>,
    pub role: Option<String>,
    pub offset: usize,
    pub limit: usize,
}

/// One page of agents and how many match in all.
#[derive(Debug)]
pub struct AgentList {
    pub total: usize,
    pub agents: Vec<AgentView>,
}

impl Handler<ListAgents> for Registry {
    type Result = ResponseFuture<Result<AgentList, HubError>>;

    fn handle(&mut self, msg: ListAgents, _: &mut Context<Self>) -> Self::Result {
        let mut agents: Vec<(String, Addr<AgentActor>)> = self.directory.read(|book| {
            book.agents
                .iter()
                .map(|(id, addr)| (id.clone(), addr.clone()))
                .collect()
        });
        agents.sort_by(|a, b| a.0.cmp(&b.0));
        // Without a filter the page is known before asking anyone: only its agents are asked.
        let unfiltered = msg.status.is_none() && msg.role.is_none();
        let total = agents.len();
        if unfiltered {
            agents = agents
                .into_iter()
                .skip(msg.offset)
                .take(msg.limit)
                .collect();
        }
        let dispatcher = self.dispatcher.clone();
        Box::pin(async move {
            let loads = dispatcher.send(GetLoads).await?;
            let snapshots = join_all(agents.iter().map(|(_, a)| a.send(GetAgent))).await;
            let views = snapshots
                .into_iter()
                .filter_map(|s| s.ok().flatten())
                .map(|s| {
                    let load = loads.get(&s.agent_id).copied().unwrap_or(0);
                    s.view(load)
                })
                .filter(|a| msg.status.as_deref().is_none_or(|s| a.status == s))
                .filter(|a| {
                    msg.role
                        .as_deref()
                        .is_none_or(|r| a.role.as_deref() == Some(r))
                });
            if unfiltered {
                return Ok(AgentList {
                    total,
                    agents: views.collect(),
                });
            }
            let matching: Vec<AgentView> = views.collect();
            Ok(AgentList {
                total: matching.len(),
                agents: matching
                    .into_iter()
                    .skip(msg.offset)
                    .take(msg.limit)
                    .collect(),
            })
        })
    }
}

/// Sent by an AgentActor when what its shown status is made of changes.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StandingChanged {
    pub agent_id: String,
    pub standing: Standing,
}

impl Handler<StandingChanged> for Registry {
    type Result = ();

    fn handle(&mut self, msg: StandingChanged, _: &mut Context<Self>) {
        self.directory.set_standing(&msg.agent_id, msg.standing);
    }
}

/// One registered agent's shown status and the presence under it.
#[derive(Debug)]
pub struct AgentStanding {
    pub agent_id: String,
    pub status: &'static str,
    pub presence: AgentStatus,
}

/// Sent by the health, overview, metrics and analytics handlers: every registered agent's
/// status, in no particular order, from the standings kept here and the Dispatcher's loads
/// (no agent actor is asked, so this stays cheap with thousands of agents).
#[derive(Message)]
#[rtype(result = "Result<Vec<AgentStanding>, HubError>")]
pub struct AgentStatuses;

impl Handler<AgentStatuses> for Registry {
    type Result = ResponseFuture<Result<Vec<AgentStanding>, HubError>>;

    fn handle(&mut self, _: AgentStatuses, _: &mut Context<Self>) -> Self::Result {
        let standings: Vec<(String, Standing)> = self.directory.read(|book| {
            book.standings
                .iter()
                .map(|(id, standing)| (id.clone(), *standing))
                .collect()
        });
        let dispatcher = self.dispatcher.clone();
        Box::pin(async move {
            let loads = dispatcher.send(GetLoads).await?;
            Ok(standings
                .into_iter()
                .map(|(agent_id, standing)| {
                    let load = loads.get(&agent_id).copied().unwrap_or(0);
                    let (status, presence) = standing.shown(load);
                    AgentStanding {
                        agent_id,
                        status,
                        presence,
                    }
                })
                .collect())
        })
    }
}

/// Sent by the handlers that show one agent: its view with its load; `None` once removed.
#[derive(Message)]
#[rtype(result = "Result<Option<AgentView>, HubError>")]
pub struct DescribeAgent(pub Addr<AgentActor>);

impl Handler<DescribeAgent> for Registry {
    type Result = ResponseFuture<Result<Option<AgentView>, HubError>>;

    fn handle(&mut self, msg: DescribeAgent, _: &mut Context<Self>) -> Self::Result {
        let dispatcher = self.dispatcher.clone();
        Box::pin(async move {
            let Some(snapshot) = msg.0.send(GetAgent).await? else {
                return Ok(None);
            };
            let loads = dispatcher.send(GetLoads).await?;
            let load = loads.get(&snapshot.agent_id).copied().unwrap_or(0);
            Ok(Some(snapshot.view(load)))
        })
    }
}
