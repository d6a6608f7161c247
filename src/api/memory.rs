//! Agent memory (seed 000 section 05): store, list and search, read and delete entries;
//! and seed 004's memory object (`{"memory": {key: value}}`), read beside the list and
//! replaced whole, over the same sealed entries. A worker's token reaches only its own
//! agent's memory.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::agents::{agent_id_of, limit_changes};
use super::auth::Caller;
use super::extract::{Json, Query};
use super::{page_limit, page_offset};
use crate::db::memory::{self, MemoryRow};
use crate::db::models::NewAuditRow;
use crate::domain::access::Principal;
use crate::domain::remember::{MAX_KEY_CHARS, MAX_VALUE_CHARS};
use crate::domain::Blank;
use crate::error::HubError;
use crate::startup::Hub;

/// The agent_id the path names. 403 unless the caller holds `permission`; 404 unless it
/// may see this agent's private side (another agent's memory is as invisible as its tasks).
fn authorise(
    hub: &Hub,
    principal: &Principal,
    path: &str,
    permission: &str,
) -> Result<String, HubError> {
    principal.require(permission)?;
    let agent_id = agent_id_of(hub, path)?;
    if !principal.sees_agent(&agent_id) {
        return Err(HubError::not_found(format!("no agent {path:?}")));
    }
    Ok(agent_id)
}

/// Most entries the memory object holds (seed 004's form; the list form pages).
const MAX_OBJECT_ENTRIES: i64 = 1000;

/// Entries as seed 004's memory object: key → value, JSON values as they were written.
fn memory_object(rows: &[MemoryRow], hub: &Hub) -> serde_json::Map<String, Value> {
    rows.iter()
        .map(|row| {
            let text = crate::views::open_or_unreadable(&hub.core.vault, &row.value);
            let value = if row.structured {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            } else {
                Value::String(text)
            };
            (row.key.clone(), value)
        })
        .collect()
}

pub fn memory_view(row: &MemoryRow, hub: &Hub) -> Value {
    json!({
        "agent_id": row.agent_id,
        "key": row.key,
        "value": hub.core.vault.open(&row.value).map(|o| o.plaintext),
        "source_task_id": row.source_task_id,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MemoryBody {
    #[schema(required = true, value_type = String, min_length = 1, max_length = 120, pattern = r"\S")]
    key: Option<String>,
    #[schema(required = true, value_type = String, max_length = 4000)]
    value: Option<String>,
    #[schema(value_type = Option<i32>)]
    source_task_id: Option<i32>,
}

#[utoipa::path(
    post,
    path = "/api/agents/{agent_id}/memory",
    tag = "memory",
    params(("agent_id" = String, Path, description = "The agent id")),
    request_body = MemoryBody,
    responses((status = 201, description = "Store a memory entry (memory:write)", body = Object))
)]
pub async fn store_memory(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    body: Json<MemoryBody>,
) -> Result<HttpResponse, HubError> {
    let agent_id = authorise(&hub, &caller.0, &path.into_inner(), "memory:write")?;
    let body = body.0;
    let key = body
        .key
        .map(|k| k.trim_blank().to_string())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| HubError::bad_request("key is required"))?;
    if key.chars().count() > MAX_KEY_CHARS {
        return Err(HubError::bad_request(format!(
            "key exceeds {MAX_KEY_CHARS} characters"
        )));
    }
    let value = body
        .value
        .ok_or_else(|| HubError::bad_request("value is required"))?;
    if value.chars().count() > MAX_VALUE_CHARS {
        return Err(HubError::bad_request(format!(
            "value exceeds {MAX_VALUE_CHARS} characters"
        )));
    }
    let core = hub.core.clone();
    let actor = caller.0.label();
    let row = hub
        .core
        .db
        .write(move |conn| {
            let entry = memory::Entry {
                key: &key,
                value: &value,
                structured: false,
                source_task_id: body.source_task_id,
            };
            let row = memory::upsert(conn, &core.vault, &core.blind, &agent_id, entry)?;
            let detail = json!({ "key": key, "source_task_id": body.source_task_id });
            NewAuditRow::new(
                &actor,
                "memory.write",
                format!("agent:{agent_id}"),
                Some(detail),
            )
            .append(conn)?;
            Ok(row)
        })
        .await?;
    Ok(HttpResponse::Created().json(memory_view(&row, &hub)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MemoryQuery {
    q: Option<String>,
    /// Page size (capped by the hub).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// Items to skip.
    #[param(minimum = 0)]
    offset: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/agents/{agent_id}/memory",
    tag = "memory",
    params(("agent_id" = String, Path, description = "The agent id"), MemoryQuery),
    responses((status = 200, description = "List or search memory (memory:read)", body = Object))
)]
pub async fn list_memory(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    query: Query<MemoryQuery>,
) -> Result<HttpResponse, HubError> {
    let agent_id = authorise(&hub, &caller.0, &path.into_inner(), "memory:read")?;
    let query = query.0;
    let limit = page_limit(query.limit, 50, 200)?;
    let offset = page_offset(query.offset)?;
    let search = query
        .q
        .as_deref()
        .map(|q| hub.core.blind.query(&agent_id, q, true));
    // One read: the whole memory (the object form, newest first, one past its cap) and
    // the page asked for, which is a slice of it unless it is a search or reaches past it.
    let (rows, whole) = crate::db::read(&hub.reads, move |conn| {
        let whole = memory::list(conn, &agent_id, MAX_OBJECT_ENTRIES + 1, 0)?;
        let page = match search {
            None if offset.saturating_add(limit) <= MAX_OBJECT_ENTRIES => whole
                .iter()
                .skip(offset as usize)
                .take(limit as usize)
                .cloned()
                .collect(),
            None => memory::list(conn, &agent_id, limit, offset)?,
            // A query with no word in it matches nothing.
            Some(None) => vec![],
            Some(Some(expression)) => memory::search(conn, &expression, limit, offset)?,
        };
        Ok((page, whole))
    })
    .await?;
    let list: Vec<Value> = rows.iter().map(|r| memory_view(r, &hub)).collect();
    let truncated = whole.len() > MAX_OBJECT_ENTRIES as usize;
    let object = memory_object(&whole[..whole.len().min(MAX_OBJECT_ENTRIES as usize)], &hub);
    Ok(HttpResponse::Ok().json(json!({
        "count": list.len(),
        "memories": list,
        "memory": object,
        "memory_truncated": truncated,
    })))
}

#[utoipa::path(
    get,
    path = "/api/agents/{agent_id}/memory/{key}",
    tag = "memory",
    params(("agent_id" = String, Path, description = "The agent id"), ("key" = String, Path, description = "The memory key")),
    responses((status = 200, description = "One memory entry (memory:read)", body = Object))
)]
pub async fn get_memory(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, HubError> {
    let (agent_id, key) = path.into_inner();
    let agent_id = authorise(&hub, &caller.0, &agent_id, "memory:read")?;
    let lookup = key.clone();
    let row = crate::db::read(&hub.reads, move |conn| {
        Ok(memory::get(conn, &agent_id, &lookup)?)
    })
    .await?
    .ok_or_else(|| HubError::not_found(format!("no memory {key:?}")))?;
    Ok(HttpResponse::Ok().json(memory_view(&row, &hub)))
}

#[utoipa::path(
    delete,
    path = "/api/agents/{agent_id}/memory/{key}",
    tag = "memory",
    params(("agent_id" = String, Path, description = "The agent id"), ("key" = String, Path, description = "The memory key")),
    responses((status = 200, description = "Delete a memory entry (memory:write)", body = Object))
)]
pub async fn delete_memory(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, HubError> {
    let (agent_id, key) = path.into_inner();
    let agent_id = authorise(&hub, &caller.0, &agent_id, "memory:write")?;
    let actor = caller.0.label();
    let deleted_key = key.clone();
    hub.core
        .db
        .write(move |conn| {
            if !memory::delete(conn, &agent_id, &key)? {
                return Err(HubError::not_found(format!("no memory {key:?}")));
            }
            NewAuditRow::new(
                &actor,
                "memory.delete",
                format!("agent:{agent_id}"),
                Some(json!({ "key": key })),
            )
            .append(conn)?;
            Ok(())
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "deleted": deleted_key })))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MemoryObjectBody {
    /// Every entry, key → value; replaces the agent's whole memory.
    #[schema(required = true, schema_with = super::openapi::memory_object)]
    memory: Option<Value>,
}

/// A memory object's entries, checked: keys of 1 to 120 characters, values (as text) of at
/// most 4000, at most [`MAX_OBJECT_ENTRIES`] of them.
fn object_entries(memory: Option<Value>) -> Result<Vec<(String, String, bool)>, HubError> {
    let Some(Value::Object(map)) = memory else {
        return Err(HubError::bad_request(
            "memory is required and must be an object",
        ));
    };
    if map.len() > MAX_OBJECT_ENTRIES as usize {
        return Err(HubError::bad_request(format!(
            "memory may hold at most {MAX_OBJECT_ENTRIES} entries"
        )));
    }
    map.into_iter()
        .map(|(key, value)| {
            if key.trim_blank().is_empty() || key.chars().count() > MAX_KEY_CHARS {
                return Err(HubError::bad_request(format!(
                    "memory keys must be 1 to {MAX_KEY_CHARS} characters, not {key:?}"
                )));
            }
            let (text, structured) = match value {
                Value::String(text) => (text, false),
                other => (other.to_string(), true),
            };
            if text.chars().count() > MAX_VALUE_CHARS {
                return Err(HubError::bad_request(format!(
                    "memory value of {key:?} exceeds {MAX_VALUE_CHARS} characters"
                )));
            }
            Ok((key, text, structured))
        })
        .collect()
}

#[utoipa::path(
    put,
    path = "/api/agents/{agent_id}/memory",
    tag = "memory",
    params(("agent_id" = String, Path, description = "The agent's numeric id or its agent_id")),
    request_body = MemoryObjectBody,
    responses((status = 200, description = "Replace the agent's whole memory with this object (memory:write; seed 004)", body = Object))
)]
pub async fn replace_memory(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    body: Json<MemoryObjectBody>,
) -> Result<HttpResponse, HubError> {
    let agent_id = authorise(&hub, &caller.0, &path.into_inner(), "memory:write")?;
    let entries = object_entries(body.0.memory)?;
    limit_changes(&hub, &caller.0)?;
    let core = hub.core.clone();
    let actor = caller.0.label();
    let rows = hub
        .core
        .db
        .write(move |conn| {
            let removed = memory::clear(conn, &agent_id)?;
            let mut rows = Vec::with_capacity(entries.len());
            for (key, value, structured) in &entries {
                let entry = memory::Entry {
                    key,
                    value,
                    structured: *structured,
                    source_task_id: None,
                };
                rows.push(memory::upsert(
                    conn,
                    &core.vault,
                    &core.blind,
                    &agent_id,
                    entry,
                )?);
            }
            let detail = json!({ "keys": entries.len(), "replaced": removed });
            NewAuditRow::new(
                &actor,
                "memory.replace",
                format!("agent:{agent_id}"),
                Some(detail),
            )
            .append(conn)?;
            Ok(rows)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "success": true, "memory": memory_object(&rows, &hub) })))
}
