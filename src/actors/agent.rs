//! AgentActor: one per registered agent. Owns the agent's profile and liveness: a
//! heartbeat keeps it online; a check on a timer marks it offline after
//! `heartbeat_timeout` of silence and tells the Dispatcher, which requeues its tasks.
//! Heartbeats touch memory only; the database is written on registration and on
//! online/offline transitions.
//!
//! Handles: [`Register`], [`Heartbeat`], [`GetAgent`], [`RemoveAgent`].

use std::time::{Duration, Instant};

use actix::prelude::*;
use diesel::prelude::*;
use serde_json::json;

use super::dispatcher::{AgentAvailable, AgentGone, AgentHeartbeat, Dispatcher};
use super::registry::{ChildStopped, Registry};
use super::Core;
use crate::alerts::Alert;
use crate::db::models::{AgentRow, NewAuditRow};
use crate::db::schema::agents;
use crate::domain::agent::Profile;
use crate::domain::event::{Audience, HubEvent};
use crate::domain::now_iso;
use crate::error::HubError;

/// The agent's state as a snapshot; the Registry adds the load from the Dispatcher.
#[derive(Debug, Clone)]
pub struct AgentSnapshot {
    pub agent_id: String,
    pub name: String,
    pub machine: Option<String>,
    pub profile: Profile,
    pub online: bool,
    pub role: Option<String>,
    pub last_heartbeat: Option<String>,
    pub registered_at: String,
}

pub struct AgentActor {
    state: AgentSnapshot,
    registered: bool,
    last_seen: Instant,
    timeout: Duration,
    core: Core,
    dispatcher: Addr<Dispatcher>,
    registry: Addr<Registry>,
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
        let state = AgentSnapshot {
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
            last_heartbeat: row.last_heartbeat,
            registered_at: row.registered_at,
        };
        let timeout = Duration::from_secs(core.settings.heartbeat_timeout);
        Self {
            state,
            registered: true,
            last_seen: Instant::now(),
            timeout,
            core,
            dispatcher,
            registry,
        }
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
            last_heartbeat: None,
            registered_at: now,
        };
        let timeout = Duration::from_secs(core.settings.heartbeat_timeout);
        Self {
            state,
            registered: false,
            last_seen: Instant::now(),
            timeout,
            core,
            dispatcher,
            registry,
        }
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
        }
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
                        diesel::update(agents::table.find(&id))
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
        let row = AgentRow {
            agent_id: self.state.agent_id.clone(),
            name: reg.name.clone(),
            machine: reg.machine.clone(),
            capabilities: json!(reg.profile.capabilities).to_string(),
            excluded: json!(reg.profile.excluded).to_string(),
            max_concurrent: reg.profile.max_concurrent,
            status: "online".into(),
            role: self.state.role.clone(),
            soul_content: None,
            config: "{}".into(),
            fcm_token: None,
            last_heartbeat: Some(now.clone()),
            registered_at: self.state.registered_at.clone(),
            updated_at: now.clone(),
        };
        let db = self.core.db.clone();
        let by = msg.by;
        let write = async move {
            db.write(move |conn| {
                diesel::insert_into(agents::table)
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
                    .execute(conn)?;
                let target = format!("agent:{}", row.agent_id);
                NewAuditRow::new(&by, "agent.register", target, None).append(conn)?;
                Ok(())
            })
            .await
        };
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
            move |written, this, ctx| {
                if let Err(error) = written {
                    if !this.registered {
                        ctx.stop();
                    }
                    return Err(error);
                }
                this.registered = true;
                this.state.name = reg.name;
                this.state.machine = reg.machine;
                this.state.profile = reg.profile;
                this.state.online = true;
                this.state.last_heartbeat = Some(now);
                this.last_seen = Instant::now();
                let event = HubEvent::new(
                    "agent_registered",
                    json!({
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

/// Sent by the delete handler: forget the agent; its tasks go back to the queue.
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub struct RemoveAgent {
    pub by: String,
}

impl Handler<RemoveAgent> for AgentActor {
    type Result = AtomicResponse<Self, Result<(), HubError>>;

    fn handle(&mut self, msg: RemoveAgent, _: &mut Context<Self>) -> Self::Result {
        let db = self.core.db.clone();
        let id = self.state.agent_id.clone();
        let write = async move {
            db.write(move |conn| {
                diesel::delete(agents::table.find(&id)).execute(conn)?;
                NewAuditRow::new(&msg.by, "agent.delete", format!("agent:{id}"), None)
                    .append(conn)?;
                Ok(())
            })
            .await
        };
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
            |written, this, ctx| {
                written?;
                this.core.publish(this.status_event("removed"));
                this.dispatcher.do_send(AgentGone {
                    agent_id: this.state.agent_id.clone(),
                    removed: true,
                });
                ctx.stop();
                Ok(())
            },
        )))
    }
}
