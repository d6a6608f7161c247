//! The MESS exchange (seed 003) under `/api/v1/exchanges/{exchange_id}/…`, and its admin
//! routes under `/api/admin/exchanges`.
//!
//! Underneath it is the core: an executor is an agent (with a `mess_{exchange}_…` key in
//! the token table, good under its exchange's paths only), a request is a task pinned to
//! its exchange so that the Dispatcher never assigns it (executors pull and claim it),
//! and each change is one task change that also writes its thread message and its event
//! for the JSON Lines log. Intent, context and responses are sealed at rest.

use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::extract::{Json, Query};
use crate::actors::dispatcher::SubmitTask;
use crate::actors::registry::CreateAgent;
use crate::actors::task::ExchangeUpdate;
use crate::crypto::provenance::fingerprint;
use crate::crypto::tokens::{hash_token, random_hex};
use crate::db::exchange::{
    self, EventRow, ExchangeRow, ExecutorRow, MessageRow, RequestRow, ThreadRow,
};
use crate::db::models::{NewAgentRow, NewAuditRow, NewTaskRow, TokenRow};
use crate::db::schema::{exchange_executors, exchanges, tokens};
use crate::domain::access::Principal;
use crate::domain::exchange::{
    agent_id, check_exchange_id, check_executor_id, executor_id, new_ref, permission, pin,
    status_of, Preferences, Priority, Update,
};
use crate::domain::task::TaskStatus;
use crate::domain::{now_iso, Blank};
use crate::error::HubError;
use crate::startup::Hub;

/// Who calls an exchange: one of its executors, or an admin of the hub.
enum Party {
    Executor {
        executor_id: String,
        agent_id: String,
    },
    Admin(String),
}

impl Party {
    fn of(caller: &Principal, exchange_id: &str) -> Result<Self, HubError> {
        match caller.exchange_key() {
            Some(own) if own == exchange_id => {
                let agent = caller.label();
                Ok(Self::Executor {
                    executor_id: executor_id(exchange_id, &agent).to_string(),
                    agent_id: agent,
                })
            }
            Some(_) => Err(HubError::forbidden("This key belongs to another exchange")),
            None if caller.is_admin() => Ok(Self::Admin(caller.label())),
            None => Err(HubError::forbidden(
                "Only the exchange's executors (a mess_ key) or an admin may use it",
            )),
        }
    }

    /// The name threads and audit rows give the caller.
    fn name(&self) -> &str {
        match self {
            Self::Executor { executor_id, .. } => executor_id,
            Self::Admin(label) => label,
        }
    }

    fn agent(&self) -> Option<String> {
        match self {
            Self::Executor { agent_id, .. } => Some(agent_id.clone()),
            Self::Admin(_) => None,
        }
    }
}

/// How often an executor's `last_seen` is written at most: a busy executor's calls cost
/// one write a second, not one each.
const SEEN_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The exchange, or 404; notes the executor's call as its `last_seen` (to the second).
async fn enter(
    hub: &Hub,
    caller: &Principal,
    exchange_id: &str,
) -> Result<(ExchangeRow, Party), HubError> {
    let party = Party::of(caller, exchange_id)?;
    let id = exchange_id.to_string();
    let found = crate::db::read(&hub.reads, move |conn| Ok(exchange::exchange(conn, &id)?)).await?;
    let row = found.ok_or_else(|| HubError::not_found("Exchange not found"))?;
    if let Some(agent) = party.agent() {
        let now = std::time::Instant::now();
        let due = {
            let mut seen = hub.exchange_seen.lock().unwrap_or_else(|e| e.into_inner());
            let due = seen
                .get(&agent)
                .is_none_or(|at| now.duration_since(*at) >= SEEN_EVERY);
            if due {
                seen.insert(agent.clone(), now);
            }
            due
        };
        if due {
            let at = now_iso();
            hub.core
                .db
                .write(move |conn| Ok(exchange::seen(conn, &agent, &at)?))
                .await?;
        }
    }
    Ok((row, party))
}

/// A new event for the log; its content only when the operator logs content.
fn event(
    hub: &Hub,
    exchange_id: &str,
    thread_ref: Option<&str>,
    kind: &str,
    data: Value,
    content: Option<Value>,
) -> EventRow {
    let at = now_iso();
    let mut meta =
        json!({ "exchange_id": exchange_id, "thread_ref": thread_ref, "type": kind, "ts": at });
    if let (Value::Object(meta), Value::Object(data)) = (&mut meta, data) {
        meta.extend(data);
    }
    let content = content
        .filter(|_| hub.core.settings.exchange_log_content)
        .map(|c| hub.core.vault.seal(&c.to_string()));
    EventRow {
        id: 0,
        uuid: uuid::Uuid::new_v4().to_string(),
        exchange_id: exchange_id.to_string(),
        thread_ref: thread_ref.map(String::from),
        event_type: kind.to_string(),
        at,
        data: meta.to_string(),
        content,
        logged_at: None,
    }
}

/// After a commit that wrote events: the log writer has work.
fn after_commit(hub: &Hub) {
    hub.exchange_log.notify_one();
}

// ---- admin ----------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
pub struct ExchangeBody {
    #[schema(required = true, value_type = String, pattern = "^[a-z0-9_-]{1,32}$")]
    exchange_id: Option<String>,
    /// Whether anyone may register an executor (`POST …/register` needs no key).
    open_registration: Option<bool>,
}

#[utoipa::path(post, path = "/api/admin/exchanges", tag = "exchange", request_body = ExchangeBody,
    responses((status = 201, description = "Create an exchange (admin:agents)", body = Object),
        (status = 400, description = "A bad exchange id", body = super::openapi::ErrorBody)))]
pub async fn create_exchange(
    hub: web::Data<Hub>,
    caller: Caller,
    body: Json<ExchangeBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:agents")?;
    let id = body.0.exchange_id.unwrap_or_default();
    check_exchange_id(&id)?;
    let now = now_iso();
    let row = ExchangeRow {
        exchange_id: id,
        open_registration: body.0.open_registration.unwrap_or(false),
        created_by: caller.0.label(),
        created_at: now.clone(),
        updated_at: now,
    };
    let stored = row.clone();
    hub.core
        .db
        .write(move |conn| {
            let added =
                crate::on_each_backend!(conn, |inner| diesel::insert_into(exchanges::table)
                    .values(&stored)
                    .on_conflict_do_nothing()
                    .execute(inner))?;
            if added == 0 {
                return Err(HubError::conflict(format!(
                    "exchange {} already exists",
                    stored.exchange_id
                )));
            }
            let detail = json!({ "open_registration": stored.open_registration });
            NewAuditRow::new(
                &stored.created_by,
                "exchange.create",
                format!("exchange:{}", stored.exchange_id),
                Some(detail),
            )
            .append(conn)?;
            Ok(())
        })
        .await?;
    Ok(HttpResponse::Created().json(row))
}

#[utoipa::path(get, path = "/api/admin/exchanges", tag = "exchange",
    responses((status = 200, description = "Every exchange (admin:agents)", body = Object)))]
pub async fn list_exchanges(hub: web::Data<Hub>, caller: Caller) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:agents")?;
    let rows = crate::db::read(&hub.reads, |conn| Ok(exchange::all_exchanges(conn)?)).await?;
    Ok(HttpResponse::Ok().json(json!({ "exchanges": rows })))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ExchangeChange {
    #[schema(value_type = Option<bool>)]
    open_registration: Option<bool>,
}

#[utoipa::path(patch, path = "/api/admin/exchanges/{exchange_id}", tag = "exchange",
    params(("exchange_id" = String, Path, description = "The exchange")), request_body = ExchangeChange,
    responses((status = 200, description = "Open or close an exchange's registration (admin:agents)", body = Object),
        (status = 404, description = "No such exchange", body = super::openapi::ErrorBody)))]
pub async fn update_exchange(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    body: Json<ExchangeChange>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:agents")?;
    let (id, by) = (path.into_inner(), caller.0.label());
    let open = body.0.open_registration;
    let row = hub
        .core
        .db
        .write(move |conn| {
            let mut row = exchange::exchange(conn, &id)?
                .ok_or_else(|| HubError::not_found("Exchange not found"))?;
            if let Some(open) = open {
                row.open_registration = open;
                row.updated_at = now_iso();
                diesel::update(exchanges::table.find(&id))
                    .set((
                        exchanges::open_registration.eq(open),
                        exchanges::updated_at.eq(&row.updated_at),
                    ))
                    .execute(conn)?;
                NewAuditRow::new(
                    &by,
                    "exchange.update",
                    format!("exchange:{id}"),
                    Some(json!({ "open_registration": open })),
                )
                .append(conn)?;
            }
            Ok(row)
        })
        .await?;
    Ok(HttpResponse::Ok().json(row))
}

#[utoipa::path(delete, path = "/api/admin/exchanges/{exchange_id}", tag = "exchange",
    params(("exchange_id" = String, Path, description = "The exchange")),
    responses((status = 200, description = "Delete an exchange and revoke its executors' keys (admin:agents)", body = Object),
        (status = 404, description = "No such exchange", body = super::openapi::ErrorBody)))]
pub async fn delete_exchange(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:agents")?;
    let (id, by) = (path.into_inner(), caller.0.label());
    let revoked = hub
        .core
        .db
        .write(move |conn| {
            exchange::exchange(conn, &id)?
                .ok_or_else(|| HubError::not_found("Exchange not found"))?;
            let agents: Vec<String> = exchange_executors::table
                .filter(exchange_executors::exchange_id.eq(&id))
                .select(exchange_executors::agent_id)
                .load(conn)?;
            let now = now_iso();
            let keys: Vec<String> = tokens::table
                .filter(tokens::agent_id.eq_any(&agents))
                .filter(tokens::revoked_at.is_null())
                .select(tokens::hash)
                .load(conn)?;
            diesel::update(tokens::table.filter(tokens::hash.eq_any(&keys)))
                .set((tokens::revoked_at.eq(&now), tokens::revoked_by.eq(&by)))
                .execute(conn)?;
            diesel::delete(exchanges::table.find(&id)).execute(conn)?;
            NewAuditRow::new(
                &by,
                "exchange.delete",
                format!("exchange:{id}"),
                Some(json!({ "executors": agents.len() })),
            )
            .append(conn)?;
            Ok(keys)
        })
        .await?;
    for key in &revoked {
        hub.credentials.revoke(key);
    }
    Ok(HttpResponse::Ok().json(json!({ "deleted": true, "keys_revoked": revoked.len() })))
}

// ---- executors -------------------------------------------------------------------------

/// A registration: the executor's id and its profile.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ExecutorBody {
    #[schema(required = true, value_type = String, pattern = "^[A-Za-z0-9_-]{1,31}$")]
    executor_id: Option<String>,
    #[serde(flatten)]
    profile: ExecutorProfile,
}

/// What an executor says of itself; a change of it names the executor in its path.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ExecutorProfile {
    display_name: Option<String>,
    #[schema(value_type = Option<Vec<String>>)]
    capabilities: Option<Vec<String>>,
    /// Channels: `{"type": "ntfy", "topic", "server"}`, `{"type": "slack" | "google_chat",
    /// "webhook_url"}`, `{"type": "webhook", "url"}`.
    #[schema(value_type = Option<Vec<Object>>)]
    notifications: Option<Vec<Value>>,
    /// `{"min_priority", "quiet_hours": {"enabled", "start", "end", "timezone"}}`.
    #[schema(value_type = Option<Object>)]
    preferences: Option<Value>,
}

/// An executor as the exchange shows it (never its key or its notification URLs).
fn executor_view(row: &ExecutorRow) -> Value {
    let capabilities: Value = serde_json::from_str(&row.capabilities).unwrap_or(json!([]));
    json!({
        "id": row.executor_id,
        "display_name": row.display_name,
        "capabilities": capabilities,
        "last_seen": row.last_seen,
        "created_at": row.created_at,
    })
}

/// The profile the log keeps of an executor.
fn profile(row: &ExecutorRow) -> Value {
    let mut view = executor_view(row);
    view["executor_id"] = json!(row.executor_id);
    view["preferences"] = serde_json::from_str(&row.preferences).unwrap_or(json!({}));
    view
}

fn checked_notifications(list: &[Value]) -> Result<String, HubError> {
    for channel in list {
        crate::exchange_notify::Channel::parse(channel)?;
    }
    Ok(Value::Array(list.to_vec()).to_string())
}

fn checked_capabilities(list: &[String]) -> Result<String, HubError> {
    if list.len() > 100
        || list
            .iter()
            .any(|c| c.trim_blank().is_empty() || c.len() > 100)
    {
        return Err(HubError::bad_request(
            "capabilities must be at most 100 names of 1 to 100 characters",
        ));
    }
    Ok(json!(list).to_string())
}

#[utoipa::path(post, path = "/api/v1/exchanges/{exchange_id}/register", tag = "exchange", security(()),
    params(("exchange_id" = String, Path, description = "The exchange")), request_body = ExecutorBody,
    responses((status = 201, description = "Register an executor on an open exchange (no key); its key is shown once", body = Object),
        (status = 400, description = "A missing or bad field", body = super::openapi::ErrorBody),
        (status = 403, description = "The exchange's registration is closed", body = super::openapi::ErrorBody),
        (status = 404, description = "No such exchange", body = super::openapi::ErrorBody),
        (status = 409, description = "The executor is already registered", body = super::openapi::ErrorBody)))]
pub async fn register(
    hub: web::Data<Hub>,
    path: web::Path<String>,
    body: Json<ExecutorBody>,
) -> Result<HttpResponse, HubError> {
    let exchange_id = path.into_inner();
    let body = body.0;
    let executor_id = body
        .executor_id
        .clone()
        .ok_or_else(|| HubError::bad_request("executor_id is required"))?;
    check_executor_id(&executor_id)?;
    let id = exchange_id.clone();
    let found = crate::db::read(&hub.reads, move |conn| Ok(exchange::exchange(conn, &id)?)).await?;
    let exchange_row = found.ok_or_else(|| HubError::not_found("Exchange not found"))?;
    if !exchange_row.open_registration {
        return Err(HubError::forbidden(format!(
            "Registration on exchange {exchange_id} is closed; an admin opens it with PATCH /api/admin/exchanges/{exchange_id}"
        )));
    }
    let capabilities = checked_capabilities(&body.profile.capabilities.unwrap_or_default())?;
    let notifications = checked_notifications(&body.profile.notifications.unwrap_or_default())?;
    let preferences = body.profile.preferences.unwrap_or(json!({}));
    Preferences::parse(&preferences)?;
    let agent = agent_id(&exchange_id, &executor_id);
    let key = format!("mess_{exchange_id}_{}", random_hex(24));
    let now = now_iso();
    let executor = ExecutorRow {
        exchange_id: exchange_id.clone(),
        executor_id: executor_id.clone(),
        agent_id: agent.clone(),
        display_name: body
            .profile
            .display_name
            .filter(|n| !n.trim_blank().is_empty())
            .unwrap_or_else(|| executor_id.clone()),
        capabilities,
        notifications: hub.core.vault.seal(&notifications),
        preferences: preferences.to_string(),
        last_seen: None,
        created_at: now.clone(),
        updated_at: now.clone(),
    };
    let permissions = vec![permission(&exchange_id)];
    let token = TokenRow {
        hash: hash_token(&key),
        agent_id: agent.clone(),
        name: format!("MESS key of {executor_id}"),
        role: None,
        permissions: json!(permissions).to_string(),
        created_at: now.clone(),
        created_by: format!("exchange:{exchange_id}"),
        revoked_at: None,
        revoked_by: None,
    };
    let logged = event(
        &hub,
        &exchange_id,
        None,
        "executor_registered",
        json!({ "executor_id": executor_id, "profile": profile(&executor) }),
        None,
    );
    let (stored, grant) = (executor.clone(), token.clone());
    let taken = format!("Executor {executor_id} is already registered");
    let config = json!({ "exchange": exchange_id }).to_string();
    let row = NewAgentRow::offline(
        agent.clone(),
        executor.display_name.clone(),
        Some("executor".into()),
        config,
    );
    let created = hub
        .registry
        .send(CreateAgent {
            row,
            by: format!("exchange:{exchange_id}"),
            detail: json!({ "exchange": exchange_id, "executor": executor_id }),
            also: Some(Box::new(move |conn| {
                diesel::insert_into(exchange_executors::table)
                    .values(&stored)
                    .execute(conn)?;
                diesel::insert_into(tokens::table)
                    .values(&grant)
                    .execute(conn)?;
                exchange::record(conn, None, &logged)
            })),
        })
        .await?;
    created.map_err(|error| match error {
        HubError::Conflict(_) => HubError::conflict(taken),
        other => other,
    })?;
    hub.credentials.grant(token.hash.clone(), token.grant());
    after_commit(&hub);
    Ok(HttpResponse::Created().json(json!({
        "executor_id": executor_id,
        "api_key": key,
        "message": "Save this API key - it cannot be retrieved again.",
    })))
}

#[utoipa::path(get, path = "/api/v1/exchanges/{exchange_id}/executors", tag = "exchange",
    params(("exchange_id" = String, Path, description = "The exchange")),
    responses((status = 200, description = "The exchange's executors (its key, or an admin)", body = Object),
        (status = 403, description = "Another exchange's key", body = super::openapi::ErrorBody),
        (status = 404, description = "No such exchange", body = super::openapi::ErrorBody)))]
pub async fn list_executors(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    let (row, _) = enter(&hub, &caller.0, &path).await?;
    let rows = crate::db::read(&hub.reads, move |conn| {
        Ok(exchange::executors(conn, &row.exchange_id)?)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .json(json!({ "executors": rows.iter().map(executor_view).collect::<Vec<_>>() })))
}

#[utoipa::path(patch, path = "/api/v1/exchanges/{exchange_id}/executors/{executor_id}", tag = "exchange",
    params(("exchange_id" = String, Path, description = "The exchange"), ("executor_id" = String, Path, description = "The executor")),
    request_body = ExecutorProfile,
    responses((status = 200, description = "Change one's own executor profile", body = Object),
        (status = 403, description = "Another executor's profile", body = super::openapi::ErrorBody),
        (status = 404, description = "No such exchange or executor", body = super::openapi::ErrorBody)))]
pub async fn update_executor(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: Json<ExecutorProfile>,
) -> Result<HttpResponse, HubError> {
    let (exchange_id, executor_id) = path.into_inner();
    let (_, party) = enter(&hub, &caller.0, &exchange_id).await?;
    if matches!(&party, Party::Executor { executor_id: own, .. } if *own != executor_id) {
        return Err(HubError::forbidden("Can only update your own profile"));
    }
    let body = body.0;
    let capabilities = body
        .capabilities
        .as_deref()
        .map(checked_capabilities)
        .transpose()?;
    let notifications = body
        .notifications
        .as_deref()
        .map(checked_notifications)
        .transpose()?;
    if let Some(preferences) = &body.preferences {
        Preferences::parse(preferences)?;
    }
    let display_name = body.display_name.filter(|n| !n.trim_blank().is_empty());
    let sealed = notifications.map(|n| hub.core.vault.seal(&n));
    let log_hub = hub.clone();
    let (by, ex) = (party.name().to_string(), exchange_id.clone());
    let row = hub
        .core
        .db
        .write(move |conn| {
            let mut row = exchange::executor(conn, &ex, &executor_id)?
                .ok_or_else(|| HubError::not_found("Executor not found"))?;
            if let Some(name) = display_name {
                row.display_name = name;
            }
            if let Some(capabilities) = capabilities {
                row.capabilities = capabilities;
            }
            if let Some(sealed) = sealed {
                row.notifications = sealed;
            }
            if let Some(preferences) = body.preferences {
                row.preferences = preferences.to_string();
            }
            row.updated_at = now_iso();
            diesel::update(exchange_executors::table.find((&ex, &executor_id)))
                .set((
                    exchange_executors::display_name.eq(&row.display_name),
                    exchange_executors::capabilities.eq(&row.capabilities),
                    exchange_executors::notifications.eq(&row.notifications),
                    exchange_executors::preferences.eq(&row.preferences),
                    exchange_executors::updated_at.eq(&row.updated_at),
                ))
                .execute(conn)?;
            NewAuditRow::new(
                &by,
                "exchange.executor_update",
                format!("agent:{}", row.agent_id),
                None,
            )
            .append(conn)?;
            let logged = event(
                &log_hub,
                &ex,
                None,
                "executor_updated",
                json!({ "executor_id": executor_id, "profile": profile(&row) }),
                None,
            );
            exchange::record(conn, None, &logged)?;
            Ok(row)
        })
        .await?;
    after_commit(&hub);
    Ok(HttpResponse::Ok().json(json!({ "executor": executor_view(&row) })))
}

// ---- requests --------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestBody {
    /// What is asked, in words.
    #[schema(required = true, value_type = String, min_length = 1, pattern = r"\S")]
    intent: Option<String>,
    /// Anything that helps (strings or objects).
    #[schema(schema_with = super::openapi::any_json)]
    context: Option<Value>,
    #[schema(value_type = Option<String>, pattern = "^(low|normal|high|urgent)$")]
    priority: Option<String>,
    /// What kind of answer helps (`text`, `image`, …).
    #[schema(schema_with = super::openapi::any_json)]
    response_hint: Option<Value>,
}

/// A thread as the exchange lists it.
fn thread_view(hub: &Hub, row: &ThreadRow) -> Value {
    let status = row
        .status
        .parse::<TaskStatus>()
        .map(status_of)
        .unwrap_or("pending");
    let executor = row
        .assigned_to
        .as_deref()
        .map(|agent| executor_id(&row.request.exchange_id, agent));
    json!({
        "ref": row.request.ref_,
        "status": status,
        "intent": crate::views::open_or_unreadable(&hub.core.vault, &row.prompt),
        "requestor_id": row.request.requestor_id,
        "executor_id": executor,
        "priority": row.request.priority,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}

/// The task a request becomes: pinned to its exchange, its intent sealed as the prompt.
fn request_task(
    hub: &Hub,
    exchange_id: &str,
    ref_: &str,
    intent: &str,
    priority: Priority,
    requestor: &str,
) -> NewTaskRow {
    let (priority, urgency) = priority.task();
    let prompt = hub.core.vault.seal(intent);
    let title = format!("MESS request {ref_}");
    NewTaskRow {
        assign_to: Some(pin(exchange_id)),
        priority,
        urgency: urgency.into(),
        ..NewTaskRow::queued(title, prompt, "mess".into(), requestor.into(), "mess")
    }
}

#[utoipa::path(post, path = "/api/v1/exchanges/{exchange_id}/requests", tag = "exchange",
    params(("exchange_id" = String, Path, description = "The exchange")), request_body = RequestBody,
    responses((status = 201, description = "Ask the exchange for something: answers the new ref", body = Object),
        (status = 400, description = "No intent, or a bad priority", body = super::openapi::ErrorBody),
        (status = 403, description = "Another exchange's key", body = super::openapi::ErrorBody),
        (status = 404, description = "No such exchange", body = super::openapi::ErrorBody)))]
pub async fn create_request(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    body: Json<RequestBody>,
) -> Result<HttpResponse, HubError> {
    let (row, party) = enter(&hub, &caller.0, &path).await?;
    let body = body.0;
    let intent = body
        .intent
        .filter(|i| !i.trim_blank().is_empty())
        .ok_or_else(|| HubError::bad_request("intent is required"))?;
    if intent.len() > hub.core.settings.max_prompt_bytes {
        return Err(HubError::bad_request(format!(
            "intent exceeds {} bytes",
            hub.core.settings.max_prompt_bytes
        )));
    }
    let priority = Priority::parse(body.priority.as_deref().unwrap_or("normal"))?;
    let exchange_id = row.exchange_id;
    let requestor = party.name().to_string();
    let mut request = json!({ "intent": intent });
    for (name, value) in [
        ("context", body.context),
        ("response_hint", body.response_hint),
    ] {
        if let Some(value) = value {
            request[name] = value;
        }
    }
    request["priority"] = json!(priority.as_str());
    let mess = json!([{ "request": request }]);
    // A ref is four random characters a day: on the rare clash, draw again.
    for _ in 0..5 {
        let ref_ = new_ref(chrono::Utc::now());
        let task = request_task(
            &hub,
            &exchange_id,
            &ref_,
            &intent,
            priority,
            &party.agent().unwrap_or_else(|| requestor.clone()),
        );
        let message_body = hub.core.vault.seal(&mess.to_string());
        let logged = event(
            &hub,
            &exchange_id,
            Some(&ref_),
            "request_created",
            json!({ "status": "pending", "requestor_id": requestor, "priority": priority.as_str() }),
            Some(mess.clone()),
        );
        let (ex, who, r) = (exchange_id.clone(), requestor.clone(), ref_.clone());
        let submitted = hub
            .dispatcher
            .send(SubmitTask {
                task,
                depends_on: vec![],
                actor: requestor.clone(),
                delivery: None,
                crossings: vec![],
                by_master: caller.0.is_master(),
                also: Some(Box::new(move |conn, task| {
                    let request = RequestRow {
                        task_id: task.id,
                        exchange_id: ex,
                        ref_: r,
                        requestor_id: who.clone(),
                        priority: priority.as_str().into(),
                    };
                    diesel::insert_into(crate::db::schema::exchange_requests::table)
                        .values(&request)
                        .execute(conn)?;
                    let message = MessageRow {
                        id: 0,
                        task_id: task.id,
                        from_id: who,
                        mess: message_body,
                        created_at: task.created_at.clone(),
                    };
                    exchange::record(conn, Some(&message), &logged)
                })),
            })
            .await?;
        match submitted {
            Ok(_) => {
                after_commit(&hub);
                hub.exchange_notifier
                    .announce(&exchange_id, &ref_, priority, "created");
                return Ok(
                    HttpResponse::Created().json(json!({ "ref": ref_, "status": "pending" }))
                );
            }
            Err(HubError::Conflict(_)) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(HubError::Unavailable(
        "could not draw a free request ref; try again".into(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ThreadQuery {
    /// `pending`, `claimed`, `completed`, `failed` or `cancelled` (empty: all).
    #[param(pattern = "^(pending|claimed|completed|failed|cancelled)?$")]
    status: Option<String>,
    /// How many, newest first (capped by the hub).
    #[param(minimum = 1)]
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/exchanges/{exchange_id}/requests", tag = "exchange",
    params(("exchange_id" = String, Path, description = "The exchange"), ThreadQuery),
    responses((status = 200, description = "The exchange's requests, newest first", body = Object),
        (status = 400, description = "An unknown status", body = super::openapi::ErrorBody),
        (status = 403, description = "Another exchange's key", body = super::openapi::ErrorBody),
        (status = 404, description = "No such exchange", body = super::openapi::ErrorBody)))]
pub async fn list_requests(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    query: Query<ThreadQuery>,
) -> Result<HttpResponse, HubError> {
    let (row, _) = enter(&hub, &caller.0, &path).await?;
    let statuses: Option<Vec<&'static str>> =
        match query.0.status.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some("pending") => Some(vec!["queued"]),
            Some("claimed") => Some(vec!["assigned", "running"]),
            Some("completed") => Some(vec!["done"]),
            Some("failed") => Some(vec!["failed"]),
            Some("cancelled") => Some(vec!["cancelled"]),
            Some(other) => {
                return Err(HubError::bad_request(format!(
                    "status {other:?} must be pending, claimed, completed, failed or cancelled"
                )))
            }
        };
    let limit = super::page_limit(query.0.limit, 100, hub.core.settings.max_list_limit)?;
    let rows = crate::db::read(&hub.reads, move |conn| {
        Ok(exchange::list_threads(
            conn,
            &row.exchange_id,
            statuses,
            limit,
        )?)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .json(json!({ "threads": rows.iter().map(|r| thread_view(&hub, r)).collect::<Vec<_>>() })))
}

async fn find_thread(hub: &Hub, exchange_id: &str, ref_: &str) -> Result<ThreadRow, HubError> {
    let (ex, r) = (exchange_id.to_string(), ref_.to_string());
    crate::db::read(&hub.reads, move |conn| Ok(exchange::thread(conn, &ex, &r)?))
        .await?
        .ok_or_else(|| HubError::not_found("Thread not found"))
}

#[utoipa::path(get, path = "/api/v1/exchanges/{exchange_id}/requests/{ref}", tag = "exchange",
    params(("exchange_id" = String, Path, description = "The exchange"), ("ref" = String, Path, description = "The request's ref")),
    responses((status = 200, description = "A request with its messages", body = Object),
        (status = 403, description = "Another exchange's key", body = super::openapi::ErrorBody),
        (status = 404, description = "No such exchange or thread", body = super::openapi::ErrorBody)))]
pub async fn get_request(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, HubError> {
    let (exchange_id, ref_) = path.into_inner();
    enter(&hub, &caller.0, &exchange_id).await?;
    let thread = find_thread(&hub, &exchange_id, &ref_).await?;
    let id = thread.request.task_id;
    let messages =
        crate::db::read(&hub.reads, move |conn| Ok(exchange::messages(conn, id)?)).await?;
    let mut view = thread_view(&hub, &thread);
    view["messages"] = messages
        .iter()
        .map(|m| {
            let mess = hub
                .core
                .vault
                .open(&m.mess)
                .and_then(|o| serde_json::from_str(&o.plaintext).ok())
                .unwrap_or(json!([]));
            json!({ "from": m.from_id, "ts": m.created_at, "mess": mess })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "thread": view })))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestChange {
    #[schema(required = true, value_type = String, pattern = "^(claimed|completed|failed|cancelled)$")]
    status: Option<String>,
    /// With `completed`: the MESS response, e.g. `[{"response": {"content": [...]}}]`.
    #[schema(value_type = Option<Vec<Object>>)]
    mess: Option<Vec<Value>>,
}

/// The largest data URI anywhere in `value`, in bytes.
fn largest_data_uri(value: &Value) -> usize {
    match value {
        Value::String(s) if s.starts_with("data:") => s.len(),
        Value::Array(items) => items.iter().map(largest_data_uri).max().unwrap_or(0),
        Value::Object(map) => map.values().map(largest_data_uri).max().unwrap_or(0),
        _ => 0,
    }
}

#[utoipa::path(patch, path = "/api/v1/exchanges/{exchange_id}/requests/{ref}", tag = "exchange",
    params(("exchange_id" = String, Path, description = "The exchange"), ("ref" = String, Path, description = "The request's ref")),
    request_body = RequestChange,
    responses((status = 200, description = "Claim (compare-and-set), complete, fail or cancel a request", body = Object),
        (status = 400, description = "A missing or unknown status", body = super::openapi::ErrorBody),
        (status = 403, description = "Not the claimer, not the requestor, or another exchange's key", body = super::openapi::ErrorBody),
        (status = 404, description = "No such exchange or thread", body = super::openapi::ErrorBody),
        (status = 409, description = "Already claimed, or finished", body = super::openapi::ErrorBody),
        (status = 413, description = "An image past exchange_max_image_bytes", body = super::openapi::ErrorBody)))]
pub async fn update_request(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: Json<RequestChange>,
) -> Result<HttpResponse, HubError> {
    let (exchange_id, ref_) = path.into_inner();
    let (_, party) = enter(&hub, &caller.0, &exchange_id).await?;
    let body = body.0;
    let update = Update::parse(
        body.status
            .as_deref()
            .ok_or_else(|| HubError::bad_request("status is required"))?,
    )?;
    let response: Vec<Value> = body.mess.unwrap_or_default();
    let most = hub.core.settings.exchange_max_image_bytes;
    if response.iter().map(largest_data_uri).max().unwrap_or(0) > most {
        return Err(HubError::PayloadTooLarge(format!(
            "an image exceeds {most} bytes (exchange_max_image_bytes)"
        )));
    }
    let thread = find_thread(&hub, &exchange_id, &ref_).await?;
    let task = super::tasks::task_actor(&hub, thread.request.task_id)
        .await?
        .ok_or_else(|| {
            HubError::conflict(format!(
                "Request is already {}",
                thread
                    .status
                    .parse::<TaskStatus>()
                    .map(status_of)
                    .unwrap_or("finished")
            ))
        })?;
    let mut mess = vec![json!({ "status": { "re": ref_, "code": update.code() } })];
    mess.extend(response.iter().cloned());
    let output = (update == Update::Complete || update == Update::Fail) && !response.is_empty();
    let output = output.then(|| {
        let text = Value::Array(response.clone()).to_string();
        (hub.core.vault.seal(&text), fingerprint(&text))
    });
    let priority = Priority::parse(&thread.request.priority).unwrap_or(Priority::Normal);
    let kind = format!("request_{}", update.code());
    let logged = event(
        &hub,
        &exchange_id,
        Some(&ref_),
        &kind,
        json!({ "status": update.code(), "executor_id": party.agent().map(|_| party.name().to_string()), "requestor_id": thread.request.requestor_id, "priority": priority.as_str() }),
        Some(Value::Array(mess.clone())),
    );
    let message = MessageRow {
        id: 0,
        task_id: thread.request.task_id,
        from_id: party.name().to_string(),
        mess: hub.core.vault.seal(&Value::Array(mess).to_string()),
        created_at: now_iso(),
    };
    let may_cancel =
        matches!(&party, Party::Admin(_)) || party.name() == thread.request.requestor_id;
    task.send(ExchangeUpdate {
        exchange_id: exchange_id.clone(),
        update,
        agent_id: party.agent(),
        by: party.name().to_string(),
        may_cancel,
        output,
        message: Some(message),
        event: logged,
    })
    .await??;
    after_commit(&hub);
    hub.exchange_notifier
        .announce(&exchange_id, &ref_, priority, update.code());
    Ok(HttpResponse::Ok().json(json!({ "ref": ref_, "status": update.code() })))
}
