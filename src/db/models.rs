//! Rows as they are stored, and the insert forms the writer uses.

use crate::db::DbConnection;
use diesel::prelude::*;

use super::schema::{
    agents, audit_log, settings, task_dependencies, task_stream_chunks, tasks, tokens,
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tasks, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct TaskRow {
    pub id: i32,
    pub title: String,
    /// Fernet token; open it with the Vault.
    pub prompt: String,
    pub required_capability: String,
    pub assign_to: Option<String>,
    pub assigned_to: Option<String>,
    pub status: String,
    pub reason: Option<String>,
    pub priority: i32,
    pub urgency: String,
    pub deadline: Option<String>,
    pub model: String,
    pub created_by: String,
    /// Fernet token; open it with the Vault.
    pub output: Option<String>,
    pub pipeline_id: Option<i32>,
    pub pipeline_index: Option<i32>,
    pub template_id: Option<i32>,
    pub source: String,
    pub hop_count: i32,
    pub attempts: i32,
    pub lease_expires_at: Option<String>,
    pub timeout_seconds: Option<i32>,
    pub verified: bool,
    pub cost_usd: Option<f64>,
    pub tokens_in: Option<i32>,
    pub tokens_out: Option<i32>,
    pub confidence: Option<f64>,
    pub created_at: String,
    pub updated_at: String,
    pub assigned_at: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub schedule_timeout_seconds: Option<i32>,
    pub fail_on_schedule_timeout: bool,
    pub progress_timeout_seconds: Option<i32>,
    pub max_cost_usd: Option<f64>,
    pub max_tokens: Option<i32>,
}

/// `None` is inserted as NULL (each such column defaults to NULL anyway), so the insert's SQL
/// never varies and Diesel reuses one prepared statement instead of building it per task.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = tasks, treat_none_as_default_value = false)]
pub struct NewTaskRow {
    pub title: String,
    pub prompt: String,
    pub required_capability: String,
    pub assign_to: Option<String>,
    pub assigned_to: Option<String>,
    pub status: String,
    pub reason: Option<String>,
    pub priority: i32,
    pub urgency: String,
    pub deadline: Option<String>,
    pub model: String,
    pub created_by: String,
    pub pipeline_id: Option<i32>,
    pub pipeline_index: Option<i32>,
    pub template_id: Option<i32>,
    pub source: String,
    pub hop_count: i32,
    pub timeout_seconds: Option<i32>,
    pub attempts: i32,
    pub created_at: String,
    pub updated_at: String,
    pub assigned_at: Option<String>,
    pub completed_at: Option<String>,
    #[diesel(embed)]
    pub limits: TaskLimits,
}

impl NewTaskRow {
    /// A queued task made by the hub itself (a schedule's occurrence, a MESS request):
    /// `prompt` already sealed, normal urgency, no limits; callers set what differs.
    pub fn queued(
        title: String,
        prompt: String,
        capability: String,
        created_by: String,
        source: &str,
    ) -> Self {
        let now = crate::domain::now_iso();
        Self {
            title,
            prompt,
            required_capability: capability,
            assign_to: None,
            assigned_to: None,
            status: "queued".into(),
            reason: None,
            priority: 0,
            urgency: "normal".into(),
            deadline: None,
            model: "auto".into(),
            created_by,
            pipeline_id: None,
            pipeline_index: None,
            template_id: None,
            source: source.into(),
            hop_count: 0,
            timeout_seconds: None,
            attempts: 0,
            created_at: now.clone(),
            updated_at: now,
            assigned_at: None,
            completed_at: None,
            limits: TaskLimits::default(),
        }
    }

    /// Inserts the task and returns it as stored. On SQLite without `RETURNING`, which
    /// gathers the returned row in a temporary table first and was a tenth of the writer's
    /// work per create: the new id comes from `last_insert_rowid()`, and every column the
    /// insert does not write holds its default.
    pub fn insert(self, conn: &mut DbConnection) -> QueryResult<TaskRow> {
        use crate::db::schema::tasks;
        diesel::define_sql_function!(fn last_insert_rowid() -> diesel::sql_types::BigInt);
        let broken = |why: &str| {
            let why = Box::new(why.to_string());
            diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::Unknown, why)
        };
        let id = match conn {
            DbConnection::Sqlite(sqlite) => {
                let written = diesel::insert_into(tasks::table)
                    .values(&self)
                    .execute(sqlite)?;
                // last_insert_rowid() names this task only if the insert wrote it.
                if written != 1 {
                    return Err(broken("the task insert wrote no row"));
                }
                let id: i64 = diesel::select(last_insert_rowid()).get_result(sqlite)?;
                i32::try_from(id).map_err(|_| broken("the new task's id is out of range"))?
            }
            DbConnection::Postgres(pg) => diesel::insert_into(tasks::table)
                .values(&self)
                .returning(tasks::id)
                .get_result(pg)?,
        };
        Ok(self.stored_as(id))
    }

    fn stored_as(self, id: i32) -> TaskRow {
        let TaskLimits {
            schedule_timeout_seconds,
            fail_on_schedule_timeout,
            progress_timeout_seconds,
            max_cost_usd,
            max_tokens,
        } = self.limits;
        TaskRow {
            id,
            title: self.title,
            prompt: self.prompt,
            required_capability: self.required_capability,
            assign_to: self.assign_to,
            assigned_to: self.assigned_to,
            status: self.status,
            reason: self.reason,
            priority: self.priority,
            urgency: self.urgency,
            deadline: self.deadline,
            model: self.model,
            created_by: self.created_by,
            output: None,
            pipeline_id: self.pipeline_id,
            pipeline_index: self.pipeline_index,
            template_id: self.template_id,
            source: self.source,
            hop_count: self.hop_count,
            attempts: self.attempts,
            lease_expires_at: None,
            timeout_seconds: self.timeout_seconds,
            verified: false,
            cost_usd: None,
            tokens_in: None,
            tokens_out: None,
            confidence: None,
            created_at: self.created_at,
            updated_at: self.updated_at,
            assigned_at: self.assigned_at,
            started_at: None,
            completed_at: self.completed_at,
            schedule_timeout_seconds,
            fail_on_schedule_timeout,
            progress_timeout_seconds,
            max_cost_usd,
            max_tokens,
        }
    }
}

/// What a task may wait, go without progress, and spend (each off when `None`).
#[derive(Debug, Clone, Default, Insertable)]
#[diesel(table_name = tasks, treat_none_as_default_value = false)]
pub struct TaskLimits {
    pub schedule_timeout_seconds: Option<i32>,
    pub fail_on_schedule_timeout: bool,
    pub progress_timeout_seconds: Option<i32>,
    pub max_cost_usd: Option<f64>,
    pub max_tokens: Option<i32>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = task_dependencies)]
pub struct DependencyRow {
    pub task_id: i32,
    pub depends_on_id: i32,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = task_stream_chunks, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct NewChunkRow {
    pub task_id: i32,
    pub seq: i32,
    pub chunk: String,
    pub agent_id: String,
    pub created_at: String,
}

/// An agent as stored. `soul_content` and `session_key` are sealed; `status` is the
/// liveness last persisted and `operator_status` what an operator set (seed 004).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = agents, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct AgentRow {
    pub id: i32,
    pub agent_id: String,
    pub name: String,
    pub machine: Option<String>,
    /// JSON array.
    pub capabilities: String,
    /// JSON array.
    pub excluded: String,
    pub max_concurrent: i32,
    pub status: String,
    pub role: Option<String>,
    pub soul_content: Option<String>,
    /// JSON object.
    pub config: String,
    pub fcm_token: Option<String>,
    pub last_heartbeat: Option<String>,
    pub registered_at: String,
    pub updated_at: String,
    pub session_key: Option<String>,
    pub operator_status: Option<String>,
    pub last_activity: Option<String>,
    /// ACTIVE, PAUSED, SUSPENDED or BANNED (seed 002).
    pub state: String,
}

/// A new agent row (the database numbers it).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = agents, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct NewAgentRow {
    pub agent_id: String,
    pub name: String,
    pub machine: Option<String>,
    pub capabilities: String,
    pub excluded: String,
    pub max_concurrent: i32,
    pub status: String,
    pub role: Option<String>,
    pub soul_content: Option<String>,
    pub config: String,
    pub last_heartbeat: Option<String>,
    pub registered_at: String,
    pub updated_at: String,
    pub session_key: Option<String>,
    pub operator_status: Option<String>,
    pub last_activity: Option<String>,
}

impl NewAgentRow {
    /// An agent not heard from yet (offline, one slot), as onboarding and exchanges make
    /// them; callers set what differs.
    pub fn offline(agent_id: String, name: String, role: Option<String>, config: String) -> Self {
        let now = crate::domain::now_iso();
        Self {
            agent_id,
            name,
            machine: None,
            capabilities: "[]".into(),
            excluded: "[]".into(),
            max_concurrent: 1,
            status: "offline".into(),
            role,
            soul_content: None,
            config,
            last_heartbeat: None,
            registered_at: now.clone(),
            updated_at: now,
            session_key: None,
            operator_status: None,
            last_activity: None,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = tokens, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct TokenRow {
    pub hash: String,
    pub agent_id: String,
    pub name: String,
    pub role: Option<String>,
    /// JSON array.
    pub permissions: String,
    pub created_at: String,
    pub created_by: String,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
}

impl TokenRow {
    /// What this token may do, for the credential index.
    pub fn grant(&self) -> crate::domain::credentials::Grant {
        let permissions: Vec<String> = serde_json::from_str(&self.permissions).unwrap_or_default();
        crate::domain::credentials::Grant {
            agent_id: self.agent_id.clone(),
            permissions: std::sync::Arc::new(permissions.into_iter().collect()),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct AuditRow {
    pub id: i32,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<String>,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

impl AuditRow {
    /// The entry as exported and as the chain check reads it.
    pub fn entry(&self) -> crate::domain::audit::AuditEntry {
        crate::domain::audit::AuditEntry {
            id: i64::from(self.id),
            at: self.at.clone(),
            actor: self.actor.clone(),
            action: self.action.clone(),
            target: self.target.clone(),
            detail: self
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok()),
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
        }
    }
}

/// An audit entry to append. `detail` must never hold a secret or a prompt.
#[derive(Debug, Clone)]
pub struct NewAuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<serde_json::Value>,
}

impl NewAuditRow {
    /// An audit entry stamped now. `detail` must never hold a secret or a prompt.
    pub fn new(
        actor: &str,
        action: &str,
        target: impl Into<Option<String>>,
        detail: Option<serde_json::Value>,
    ) -> Self {
        Self {
            at: crate::domain::now_iso(),
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.into(),
            detail,
        }
    }

    /// Appends this entry, chained to the last one, inside the caller's transaction (the
    /// single writer makes "the last one" unambiguous).
    pub fn append(self, conn: &mut DbConnection) -> QueryResult<()> {
        let last = super::audit::tip(conn)?;
        let id = last.as_ref().map_or(1, |(id, _)| id + 1);
        let prev = last
            .and_then(|(_, hash)| hash)
            .unwrap_or_else(|| crate::domain::audit::GENESIS.to_string());
        let hash = crate::domain::audit::link_hash(
            &prev,
            i64::from(id),
            &self.at,
            &self.actor,
            &self.action,
            self.target.as_deref(),
            self.detail.as_ref(),
        );
        let row = (
            audit_log::id.eq(id),
            audit_log::at.eq(self.at),
            audit_log::actor.eq(self.actor),
            audit_log::action.eq(self.action),
            audit_log::target.eq(self.target),
            audit_log::detail.eq(self.detail.map(|d| d.to_string())),
            audit_log::prev_hash.eq(prev),
            audit_log::hash.eq(&hash),
        );
        // On the backend's own connection, where the prepared statement is reused.
        crate::on_each_backend!(conn, |inner| diesel::insert_into(audit_log::table)
            .values(row)
            .execute(inner))?;
        super::audit::advance_tip(id, hash);
        Ok(())
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = settings, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct SettingRow {
    pub key: String,
    pub value: String,
    pub updated_by: String,
    pub updated_at: String,
}

/// A change to a task row; `None` leaves a column as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = tasks)]
pub struct TaskChange {
    pub status: Option<String>,
    pub assigned_to: Option<Option<String>>,
    pub reason: Option<Option<String>>,
    pub output: Option<Option<String>>,
    pub attempts: Option<i32>,
    /// The model the worker reports it used.
    pub model: Option<String>,
    pub assign_to: Option<Option<String>>,
    pub lease_expires_at: Option<Option<String>>,
    pub cost_usd: Option<Option<f64>>,
    pub tokens_in: Option<Option<i32>>,
    pub tokens_out: Option<Option<i32>>,
    pub confidence: Option<Option<f64>>,
    pub updated_at: Option<String>,
    pub assigned_at: Option<Option<String>>,
    pub started_at: Option<Option<String>>,
    pub completed_at: Option<Option<String>>,
}

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = super::schema::escalations, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct EscalationRow {
    pub id: i32,
    pub task_id: Option<i32>,
    pub agent_id: Option<String>,
    pub reason: String,
    pub status: String,
    pub created_by: String,
    pub created_at: String,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<String>,
    pub resolution: Option<String>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = super::schema::escalations)]
pub struct NewEscalationRow {
    pub task_id: Option<i32>,
    pub agent_id: Option<String>,
    pub reason: String,
    pub status: String,
    pub created_by: String,
    pub created_at: String,
}

impl NewEscalationRow {
    pub fn open(
        task_id: Option<i32>,
        agent_id: Option<String>,
        reason: String,
        created_by: &str,
    ) -> Self {
        Self {
            task_id,
            agent_id,
            reason,
            status: "open".into(),
            created_by: created_by.into(),
            created_at: crate::domain::now_iso(),
        }
    }

    /// Inserts the escalation and its audit row inside the caller's transaction.
    pub fn insert(self, conn: &mut DbConnection) -> QueryResult<EscalationRow> {
        let row: EscalationRow = diesel::insert_into(super::schema::escalations::table)
            .values(&self)
            .returning(crate::db::columns_of::<EscalationRow>())
            .get_result(conn)?;
        let detail = serde_json::json!({ "task_id": row.task_id, "agent_id": row.agent_id, "reason": row.reason });
        NewAuditRow::new(
            &self.created_by,
            "escalation.open",
            format!("escalation:{}", row.id),
            Some(detail),
        )
        .append(conn)?;
        Ok(row)
    }
}

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = super::schema::pipelines, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct PipelineRow {
    pub id: i32,
    pub name: Option<String>,
    pub created_by: String,
    pub status: String,
    pub created_at: String,
    pub completed_at: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = super::schema::templates, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct TemplateRow {
    pub id: i32,
    pub name: String,
    pub title: String,
    /// Fernet token; open it with the Vault.
    pub prompt: String,
    pub required_capability: String,
    pub assign_to: Option<String>,
    pub priority: i32,
    pub urgency: String,
    pub model: String,
    pub created_by: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = super::schema::templates)]
pub struct NewTemplateRow {
    pub name: String,
    pub title: String,
    pub prompt: String,
    pub required_capability: String,
    pub assign_to: Option<String>,
    pub priority: i32,
    pub urgency: String,
    pub model: String,
    pub created_by: String,
    pub created_at: String,
}

/// A message as stored: `content` is sealed unless `sealed` is false (a row written before
/// messages were sealed, which the hub seals at start).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = super::schema::messages, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct MessageRow {
    pub id: i32,
    pub sender: String,
    pub sender_type: String,
    pub recipient: Option<String>,
    pub channel: String,
    pub content: String,
    pub created_at: String,
    pub message_type: Option<String>,
    pub sealed: bool,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = super::schema::users, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct UserRow {
    pub id: i32,
    pub username: String,
    /// Argon2 PHC string; never leaves the hub.
    pub password_hash: String,
    pub role: String,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl UserRow {
    /// What a session of this user may do: its role's permissions, as `user:<name>`.
    /// The name a signed-in user acts under (audit rows, `created_by`).
    pub fn label_of(username: &str) -> String {
        format!("user:{username}")
    }

    pub fn grant(&self) -> crate::domain::credentials::Grant {
        let permissions = crate::domain::access::role_permissions(&self.role).unwrap_or_default();
        crate::domain::credentials::Grant {
            agent_id: Self::label_of(&self.username),
            permissions: std::sync::Arc::new(permissions.into_iter().collect()),
        }
    }
}
