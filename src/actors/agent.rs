//! AgentActor: one per registered agent. Owns the agent's profile and liveness: a
//! heartbeat keeps it online; a check on a timer marks it offline after
//! `heartbeat_timeout` of silence and tells the Dispatcher, which requeues its tasks.
//! Heartbeats touch memory only; the database is written on registration and on
//! online/offline transitions.
//!
//! Handles: [`Register`], [`Heartbeat`], [`GetAgent`], [`UpdateAgent`], [`Wake`],
//! [`RemoveAgent`].

use std::time::{Duration, Instant};

use actix::prelude::*;
use diesel::prelude::*;
use serde_json::{json, Value};

use super::dispatcher::{AgentAvailable, AgentGone, AgentHeartbeat, AgentHold, Dispatcher};
use super::registry::{ChildStopped, Registry, StandingChanged};
use super::Core;
use crate::alerts::Alert;
use crate::crypto::Vault;
use crate::db::inbox::NewMessage;
use crate::db::models::{AgentRow, MessageRow, NewAgentRow, NewAuditRow};
use crate::db::schema::agents;
use crate::domain::agent::{OperatorStatus, Profile, Standing};
use crate::domain::event::{Audience, HubEvent};
use crate::domain::now_iso;
use crate::domain::onboarding::AgentState;
use crate::error::HubError;
use crate::views::{message_view, open_or_unreadable, AgentView};

/// The agent's state as a snapshot; the Registry adds the load from the Dispatcher. The
/// soul and session key are plaintext here and sealed in the database.
#[derive(Debug, Clone)]
pub struct AgentSnapshot {
    /// The stable numeric id (0 until the first write numbers a new agent).
    pub id: i32,
    pub agent_id: String,
    pub name: String,
    pub machine: Option<String>,
    pub profile: Profile,
    pub online: bool,
    pub role: Option<String>,
    /// A JSON object.
    pub config: Value,
    pub soul: Option<String>,
    pub session_key: Option<String>,
    pub operator_status: Option<OperatorStatus>,
    /// The owner's lifecycle state (seed 002).
    pub state: AgentState,
    pub last_activity: Option<String>,
    pub last_heartbeat: Option<String>,
    pub registered_at: String,
    pub updated_at: String,
}

impl AgentSnapshot {
    pub fn from_row(row: AgentRow, vault: &Vault) -> Self {
        let open = |sealed: Option<String>| sealed.map(|s| open_or_unreadable(vault, &s));
        Self {
            id: row.id,
            profile: Profile {
                capabilities: serde_json::from_str(&row.capabilities).unwrap_or_default(),
                excluded: serde_json::from_str(&row.excluded).unwrap_or_default(),
                max_concurrent: row.max_concurrent,
            },
            online: row.status != "offline",
            agent_id: row.agent_id,
            name: row.name,
            machine: row.machine,
            role: row.role,
            config: serde_json::from_str(&row.config).unwrap_or_else(|_| json!({})),
            soul: open(row.soul_content),
            session_key: open(row.session_key),
            operator_status: row
                .operator_status
                .as_deref()
                .and_then(OperatorStatus::parse),
            state: AgentState::parse(&row.state).unwrap_or_default(),
            last_activity: row.last_activity,
            last_heartbeat: row.last_heartbeat,
            registered_at: row.registered_at,
            updated_at: row.updated_at,
        }
    }

    /// Whether the hub has ever heard from the agent itself (an operator-made agent has not
    /// until its first heartbeat, registration or call).
    pub fn contacted(&self) -> bool {
        self.last_heartbeat.is_some()
    }

    pub fn standing(&self) -> Standing {
        Standing {
            operator_status: self.operator_status,
            contacted: self.contacted(),
            online: self.online,
            max_concurrent: self.profile.max_concurrent,
        }
    }

    /// On hold by an operator, or in a state that gets no work: no new work.
    pub fn held(&self) -> bool {
        self.operator_status.is_some_and(OperatorStatus::holds) || !self.state.gets_work()
    }

    /// The agent as responses show it, with `load` tasks held.
    pub fn view(self, load: usize) -> AgentView {
        let s = self;
        let (status, presence) = s.standing().shown(load);
        AgentView {
            status,
            presence,
            load,
            id: s.id,
            agent_id: s.agent_id,
            name: s.name,
            machine: s.machine,
            capabilities: s.profile.capabilities,
            excluded: s.profile.excluded,
            max_concurrent: s.profile.max_concurrent,
            role: s.role,
            state: s.state.as_str(),
            config: s.config,
            soul_content: s.soul,
            session_key: s.session_key,
            last_activity: s.last_activity,
            last_seen: s.last_heartbeat.clone(),
            last_heartbeat: s.last_heartbeat,
            created_at: s.registered_at.clone(),
            registered_at: s.registered_at,
            updated_at: s.updated_at,
            task_stats: None,
        }
    }
}

pub struct AgentActor {
    state: AgentSnapshot,
    registered: bool,
    last_seen: Instant,
    timeout: Duration,
    core: Core,
    dispatcher: Addr<Dispatcher>,
    registry: Addr<Registry>,
    /// The standing the Registry was last told of (`None` until registered).
    reported: Option<Standing>,
}

impl AgentActor {
    /// An actor for a stored agent. One stored as online is presumed alive for one more
    /// timeout after a restart, so a hub restart does not requeue healthy agents' work.
    pub fn restored(
        row: AgentRow,
        core: Core,
        dispatcher: Addr<Dispatcher>,
        registry: Addr<Registry>,
    ) -> Self {
        let state = AgentSnapshot::from_row(row, &core.vault);
        Self::new(state, true, core, dispatcher, registry)
    }

    /// An actor for an agent registering for the first time; it stops if that fails.
    pub fn unregistered(
        agent_id: String,
        core: Core,
        dispatcher: Addr<Dispatcher>,
        registry: Addr<Registry>,
    ) -> Self {
        let now = now_iso();
        let state = AgentSnapshot {
            id: 0,
            agent_id,
            name: String::new(),
            machine: None,
            profile: Profile {
                capabilities: vec![],
                excluded: vec![],
                max_concurrent: 1,
            },
            online: false,
            role: None,
            config: json!({}),
            soul: None,
            session_key: None,
            operator_status: None,
            state: AgentState::Active,
            last_activity: None,
            last_heartbeat: None,
            registered_at: now.clone(),
            updated_at: now,
        };
        Self::new(state, false, core, dispatcher, registry)
    }

    fn new(
        state: AgentSnapshot,
        registered: bool,
        core: Core,
        dispatcher: Addr<Dispatcher>,
        registry: Addr<Registry>,
    ) -> Self {
        let timeout = Duration::from_secs(core.settings.heartbeat_timeout);
        // The Registry records a stored agent's standing as it starts the actor.
        let reported = registered.then(|| state.standing());
        Self {
            reported,
            state,
            registered,
            last_seen: Instant::now(),
            timeout,
            core,
            dispatcher,
            registry,
        }
    }

    /// Tells the Registry when what the agent's shown status is made of has changed.
    fn report_standing(&mut self) {
        let standing = self.registered.then(|| self.state.standing());
        if standing == self.reported {
            return;
        }
        if let Some(standing) = standing {
            self.registry.do_send(StandingChanged {
                agent_id: self.state.agent_id.clone(),
                standing,
            });
        }
        self.reported = standing;
    }

    pub fn snapshot(&self) -> AgentSnapshot {
        self.state.clone()
    }

    fn audience(&self) -> Audience {
        Audience::Agent {
            agent_id: self.state.agent_id.clone(),
        }
    }

    fn status_event(&self, status: &str) -> HubEvent {
        HubEvent::new(
            "agent_status",
            json!({ "agent_id": self.state.agent_id, "name": self.state.name, "status": status, "at": now_iso() }),
            self.audience(),
        )
    }

    fn available(&self) -> AgentAvailable {
        AgentAvailable {
            agent_id: self.state.agent_id.clone(),
            profile: self.state.profile.clone(),
            held: self.state.held(),
        }
    }

    /// What changed about the agent, for dashboards (never its soul or session key).
    fn updated_event(&self) -> HubEvent {
        let s = &self.state;
        HubEvent::new(
            "agent_updated",
            json!({
                "id": s.id,
                "agent_id": s.agent_id,
                "name": s.name,
                "role": s.role,
                "operator_status": s.operator_status.map(OperatorStatus::as_str),
                "last_activity": s.last_activity,
                "updated_at": s.updated_at,
            }),
            self.audience(),
        )
    }

    /// Persists an online/offline transition (not every heartbeat).
    fn persist_status(&self, ctx: &mut Context<Self>, online: bool) {
        let db = self.core.db.clone();
        let id = self.state.agent_id.clone();
        let heartbeat = self.state.last_heartbeat.clone();
        let status = if online { "online" } else { "offline" };
        ctx.spawn(
            async move {
                let written = db
                    .write(move |conn| {
                        diesel::update(agents::table.filter(agents::agent_id.eq(&id)))
                            .set((
                                agents::status.eq(status),
                                agents::last_heartbeat.eq(heartbeat),
                                agents::updated_at.eq(now_iso()),
                            ))
                            .execute(conn)?;
                        NewAuditRow::new(
                            "hub",
                            &format!("agent.{status}"),
                            format!("agent:{id}"),
                            None,
                        )
                        .append(conn)?;
                        Ok(())
                    })
                    .await;
                if let Err(error) = written {
                    tracing::warn!(%error, "could not persist an agent status change");
                }
            }
            .into_actor(self),
        );
    }

    fn check_liveness(&mut self, ctx: &mut Context<Self>) {
        if !self.state.online || self.last_seen.elapsed() < self.timeout {
            return;
        }
        tracing::info!(agent.id = %self.state.agent_id, "agent missed its heartbeat deadline; now offline");
        self.state.online = false;
        self.report_standing();
        self.persist_status(ctx, false);
        self.core.publish(self.status_event("offline"));
        self.core.alerts.raise(Alert {
            title: format!("Agent {} is down", self.state.agent_id),
            message: format!(
                "No heartbeat from {} for {} s; its tasks went back to the queue.",
                self.state.agent_id,
                self.timeout.as_secs()
            ),
            detail: None,
            priority: 4,
            tags: "warning",
        });
        self.dispatcher.do_send(AgentGone {
            agent_id: self.state.agent_id.clone(),
            removed: false,
        });
    }
}

impl Actor for AgentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Check often enough that an agent goes offline within a quarter timeout of its deadline.
        let every = (self.timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        ctx.run_interval(every, Self::check_liveness);
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.registry
            .do_send(ChildStopped::Agent(self.state.agent_id.clone()));
        Running::Stop
    }
}

/// The body of `POST /api/agents/{agent_id}/register`, validated.
#[derive(Debug, Clone)]
pub struct Registration {
    pub name: String,
    pub machine: Option<String>,
    pub profile: Profile,
}

/// Sent (through the Registry) by the register handler: store the profile, come online.
#[derive(Message)]
#[rtype(result = "Result<AgentSnapshot, HubError>")]
pub struct Register {
    pub registration: Registration,
    pub by: String,
}

impl Handler<Register> for AgentActor {
    type Result = AtomicResponse<Self, Result<AgentSnapshot, HubError>>;

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        let now = now_iso();
        let reg = msg.registration;
        let row = NewAgentRow {
            agent_id: self.state.agent_id.clone(),
            name: reg.name.clone(),
            machine: reg.machine.clone(),
            capabilities: json!(reg.profile.capabilities).to_string(),
            excluded: json!(reg.profile.excluded).to_string(),
            max_concurrent: reg.profile.max_concurrent,
            status: "online".into(),
            role: None,
            soul_content: None,
            config: "{}".into(),
            last_heartbeat: Some(now.clone()),
            registered_at: now,
            updated_at: now_iso(),
            session_key: None,
            operator_status: None,
            last_activity: None,
        };
        let db = self.core.db.clone();
        let by = msg.by;
        let write = async move {
            db.write(move |conn| {
                // What an operator set (role, config, soul, hold) survives a registration.
                let stored: AgentRow =
                    crate::on_each_backend!(conn, |inner| diesel::insert_into(agents::table)
                        .values(&row)
                        .on_conflict(agents::agent_id)
                        .do_update()
                        .set((
                            agents::name.eq(&row.name),
                            agents::machine.eq(&row.machine),
                            agents::capabilities.eq(&row.capabilities),
                            agents::excluded.eq(&row.excluded),
                            agents::max_concurrent.eq(row.max_concurrent),
                            agents::status.eq("online"),
                            agents::last_heartbeat.eq(&row.last_heartbeat),
                            agents::updated_at.eq(&row.updated_at),
                        ))
                        .returning(crate::db::columns_of::<AgentRow>())
                        .get_result(inner))?;
                let target = format!("agent:{}", row.agent_id);
                NewAuditRow::new(&by, "agent.register", target, None).append(conn)?;
                Ok(stored)
            })
            .await
        };
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
            move |written, this, ctx| {
                let stored = match written {
                    Ok(stored) => stored,
                    Err(error) => {
                        if !this.registered {
                            ctx.stop();
                        }
                        return Err(error);
                    }
                };
                this.registered = true;
                this.state = AgentSnapshot::from_row(stored, &this.core.vault);
                this.last_seen = Instant::now();
                this.report_standing();
                let event = HubEvent::new(
                    "agent_registered",
                    json!({
                        "id": this.state.id,
                        "agent_id": this.state.agent_id,
                        "name": this.state.name,
                        "machine": this.state.machine,
                        "capabilities": this.state.profile.capabilities,
                        "excluded": this.state.profile.excluded,
                        "max_concurrent": this.state.profile.max_concurrent,
                        "status": "online",
                    }),
                    this.audience(),
                );
                this.core.publish(event);
                this.dispatcher.do_send(this.available());
                Ok(this.snapshot())
            },
        )))
    }
}

/// Sent by the heartbeat handler: the agent is alive. Touches memory only.
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub struct Heartbeat;

impl Handler<Heartbeat> for AgentActor {
    type Result = Result<(), HubError>;

    fn handle(&mut self, _: Heartbeat, ctx: &mut Context<Self>) -> Self::Result {
        if !self.registered {
            return Err(HubError::not_found(format!(
                "agent {} is not registered",
                self.state.agent_id
            )));
        }
        self.last_seen = Instant::now();
        self.state.last_heartbeat = Some(now_iso());
        if self.state.online {
            self.dispatcher.do_send(AgentHeartbeat {
                agent_id: self.state.agent_id.clone(),
            });
        } else {
            self.state.online = true;
            self.persist_status(ctx, true);
            self.core.publish(self.status_event("online"));
            self.dispatcher.do_send(self.available());
        }
        self.report_standing();
        Ok(())
    }
}

/// Sent by the Registry when listing agents.
#[derive(Message)]
#[rtype(result = "Option<AgentSnapshot>")]
pub struct GetAgent;

impl Handler<GetAgent> for AgentActor {
    type Result = Option<AgentSnapshot>;

    fn handle(&mut self, _: GetAgent, _: &mut Context<Self>) -> Self::Result {
        self.registered.then(|| self.snapshot())
    }
}

/// What an operator changes about an agent (seed 004); `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AgentChange {
    pub role: Option<String>,
    pub capabilities: Option<Vec<String>>,
    pub operator_status: Option<OperatorStatus>,
    pub state: Option<AgentState>,
    pub config: Option<Value>,
    pub session_key: Option<String>,
    pub soul: Option<String>,
    pub last_activity: Option<String>,
}

impl AgentChange {
    pub fn is_empty(&self) -> bool {
        self.role.is_none()
            && self.capabilities.is_none()
            && self.operator_status.is_none()
            && self.state.is_none()
            && self.config.is_none()
            && self.session_key.is_none()
            && self.soul.is_none()
            && self.last_activity.is_none()
    }
}

/// The columns an [`AgentChange`] or a wake writes (`None` skips a column).
#[derive(AsChangeset)]
#[diesel(table_name = agents)]
struct AgentColumns {
    role: Option<String>,
    capabilities: Option<String>,
    operator_status: Option<Option<String>>,
    state: Option<&'static str>,
    config: Option<String>,
    session_key: Option<String>,
    soul_content: Option<String>,
    last_activity: Option<String>,
    updated_at: String,
}

/// Sent by the seed 004 update handlers.
#[derive(Message)]
#[rtype(result = "Result<AgentSnapshot, HubError>")]
pub struct UpdateAgent {
    pub change: AgentChange,
    pub by: String,
    /// The audit action (`agent.update`, `agent.soul`).
    pub audit: &'static str,
}

impl Handler<UpdateAgent> for AgentActor {
    type Result = AtomicResponse<Self, Result<AgentSnapshot, HubError>>;

    fn handle(&mut self, msg: UpdateAgent, _: &mut Context<Self>) -> Self::Result {
        let change = msg.change;
        let vault = self.core.vault.clone();
        let columns = AgentColumns {
            role: change.role.clone(),
            capabilities: change.capabilities.as_ref().map(|c| json!(c).to_string()),
            operator_status: change.operator_status.map(|s| Some(s.as_str().to_string())),
            state: change.state.map(AgentState::as_str),
            config: change.config.as_ref().map(Value::to_string),
            session_key: change.session_key.as_deref().map(|k| vault.seal(k)),
            soul_content: change.soul.as_deref().map(|s| vault.seal(s)),
            last_activity: change.last_activity.clone(),
            updated_at: now_iso(),
        };
        let fields: Vec<&str> = [
            change.role.as_ref().map(|_| "role"),
            change.capabilities.as_ref().map(|_| "capabilities"),
            change.operator_status.map(|_| "status"),
            change.state.map(|_| "state"),
            change.config.as_ref().map(|_| "config"),
            change.session_key.as_ref().map(|_| "session_key"),
            change.soul.as_ref().map(|_| "soul_content"),
            change.last_activity.as_ref().map(|_| "last_activity"),
        ]
        .into_iter()
        .flatten()
        .collect();
        // Which fields changed, never the secrets themselves.
        let detail = json!({
            "fields": fields,
            "status": change.operator_status.map(OperatorStatus::as_str),
            "state": change.state.map(AgentState::as_str),
        });
        let updated_at = columns.updated_at.clone();
        let write = self.write_agent(columns, msg.by, msg.audit, detail, None);
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
            move |written, this, _| {
                written?;
                let was_held = this.state.held();
                let s = &mut this.state;
                s.role = change.role.or(s.role.take());
                s.operator_status = change.operator_status.or(s.operator_status);
                s.state = change.state.unwrap_or(s.state);
                s.config = change.config.unwrap_or_else(|| s.config.take());
                s.session_key = change.session_key.or(s.session_key.take());
                s.soul = change.soul.or(s.soul.take());
                s.last_activity = change.last_activity.or(s.last_activity.take());
                s.updated_at = updated_at;
                let rerouted = change.capabilities.is_some();
                if let Some(capabilities) = change.capabilities {
                    s.profile.capabilities = capabilities;
                }
                this.report_standing();
                if rerouted && this.state.online {
                    // The Dispatcher routes by the new capabilities from now on.
                    this.dispatcher.do_send(this.available());
                } else {
                    this.hold_changed(was_held);
                }
                this.core.publish(this.updated_event());
                Ok(this.snapshot())
            },
        )))
    }
}

impl AgentActor {
    /// Writes `columns` of this agent with an audit row (and a message to it, if any) in one
    /// transaction.
    fn write_agent(
        &self,
        columns: AgentColumns,
        by: String,
        audit: &'static str,
        detail: Value,
        message: Option<NewMessage>,
    ) -> impl std::future::Future<Output = Result<Option<MessageRow>, HubError>> {
        let db = self.core.db.clone();
        let vault = self.core.vault.clone();
        let id = self.state.agent_id.clone();
        async move {
            db.write(move |conn| {
                let changed = diesel::update(agents::table.filter(agents::agent_id.eq(&id)))
                    .set(&columns)
                    .execute(conn)?;
                if changed == 0 {
                    return Err(HubError::not_found(format!("no agent {id:?}")));
                }
                let sent = message.map(|m| m.insert(conn, &vault)).transpose()?;
                NewAuditRow::new(&by, audit, format!("agent:{id}"), Some(detail)).append(conn)?;
                Ok(sent)
            })
            .await
        }
    }

    /// Tells the Dispatcher when an operator's hold began or ended.
    fn hold_changed(&self, was_held: bool) {
        let held = self.state.held();
        if held != was_held {
            self.dispatcher.do_send(AgentHold {
                agent_id: self.state.agent_id.clone(),
                held,
            });
        }
    }
}

/// Sent by the wake handler: lift an operator's hold and leave a wake notice in the inbox.
#[derive(Message)]
#[rtype(result = "Result<AgentSnapshot, HubError>")]
pub struct Wake {
    pub reason: String,
    pub by: String,
}

impl Handler<Wake> for AgentActor {
    type Result = AtomicResponse<Self, Result<AgentSnapshot, HubError>>;

    fn handle(&mut self, msg: Wake, _: &mut Context<Self>) -> Self::Result {
        let columns = AgentColumns {
            role: None,
            capabilities: None,
            operator_status: Some(None),
            state: None,
            config: None,
            session_key: None,
            soul_content: None,
            last_activity: None,
            updated_at: now_iso(),
        };
        let notice = NewMessage {
            sender: msg.by.clone(),
            sender_type: "user".into(),
            recipient: Some(self.state.agent_id.clone()),
            channel: "direct".into(),
            content: msg.reason.clone(),
            message_type: Some("wake".into()),
        };
        // The reason travels sealed in the notice; the audit row only says one was sent.
        let detail = json!({ "notice": "wake" });
        let updated_at = columns.updated_at.clone();
        let write = self.write_agent(columns, msg.by, "agent.wake", detail, Some(notice));
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
            move |written, this, _| {
                let notice = written?;
                let was_held = this.state.held();
                this.state.operator_status = None;
                this.state.updated_at = updated_at;
                this.report_standing();
                this.hold_changed(was_held);
                if let Some(notice) = notice {
                    let view = message_view(&notice, &this.core.vault);
                    let audience = Audience::Inbox {
                        agent_id: this.state.agent_id.clone(),
                    };
                    this.core
                        .publish(HubEvent::new("agent_wake", view, audience));
                }
                this.core.publish(this.updated_event());
                Ok(this.snapshot())
            },
        )))
    }
}

/// Sent by the delete handler: forget the agent; its tasks go back to the queue. Answers
/// the hash of the runtime credential revoked with it, if it joined by onboarding.
#[derive(Message)]
#[rtype(result = "Result<Option<String>, HubError>")]
pub struct RemoveAgent {
    pub by: String,
}

impl Handler<RemoveAgent> for AgentActor {
    type Result = AtomicResponse<Self, Result<Option<String>, HubError>>;

    fn handle(&mut self, msg: RemoveAgent, _: &mut Context<Self>) -> Self::Result {
        let db = self.core.db.clone();
        let id = self.state.agent_id.clone();
        let write = async move {
            db.write(move |conn| {
                diesel::delete(agents::table.filter(agents::agent_id.eq(&id))).execute(conn)?;
                crate::db::inbox::clear(conn, &id)?;
                // A new agent of that name starts with no lease and no credentials.
                crate::db::consumers::clear(conn, &id)?;
                let revoked = crate::db::onboarding::forget(conn, &id, &msg.by)?;
                NewAuditRow::new(&msg.by, "agent.delete", format!("agent:{id}"), None)
                    .append(conn)?;
                Ok(revoked)
            })
            .await
        };
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
            |written, this, ctx| {
                let revoked = written?;
                this.core.publish(this.status_event("removed"));
                this.dispatcher.do_send(AgentGone {
                    agent_id: this.state.agent_id.clone(),
                    removed: true,
                });
                ctx.stop();
                Ok(revoked)
            },
        )))
    }
}
