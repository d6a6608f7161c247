//! Token administration (master only) and the role presets (seed 000 sections 08, 12).
//! Raw tokens are returned once, by the issuing call; only SHA-256 hashes are stored,
//! and listings show a short prefix of the hash that the other calls accept.

use crate::db::DbConnection;
use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::auth::Caller;
use super::extract::Json;
use crate::crypto::tokens::{hash_token, new_agent_token};
use crate::db::models::{NewAuditRow, TokenRow};
use crate::db::queries;
use crate::db::schema::tokens;
use crate::domain::access::{role_permissions, validate_permissions, ROLE_NAMES};
use crate::domain::agent::valid_agent_id;
use crate::domain::now_iso;
use crate::error::HubError;
use crate::startup::Hub;

/// Hex characters of a hash shown in listings.
const HASH_PREFIX_CHARS: usize = 12;
/// Fewest hex characters accepted to name a token.
const MIN_HASH_PREFIX: usize = 8;

#[derive(Debug, Deserialize, ToSchema)]
pub struct IssueBody {
    #[schema(required = true, value_type = String, pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    agent_id: Option<String>,
    #[schema(value_type = Option<String>)]
    name: Option<String>,
    #[schema(schema_with = super::openapi::optional_role)]
    role: Option<String>,
    #[schema(schema_with = super::openapi::permission_list)]
    permissions: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
/// At least one of `role` and `permissions` (the document says so: see api::openapi).
pub struct PermissionsBody {
    #[schema(schema_with = super::openapi::role)]
    role: Option<String>,
    #[schema(schema_with = super::openapi::required_permission_list)]
    permissions: Option<Vec<String>>,
}

pub(super) fn unknown_role(role: &str) -> HubError {
    HubError::bad_request(format!(
        "unknown role {role:?} (expected one of {})",
        ROLE_NAMES.join(", ")
    ))
}

/// Resolves `role` / `permissions` into (role, list). A custom list wins over a role.
fn resolve(
    role: Option<String>,
    permissions: Option<Vec<String>>,
    default_role: Option<&str>,
) -> Result<(Option<String>, Vec<String>), HubError> {
    if let Some(role) = &role {
        role_permissions(role).ok_or_else(|| unknown_role(role))?;
    }
    if let Some(list) = permissions {
        return Ok((None, validate_permissions(&list)?));
    }
    let role = role
        .or(default_role.map(String::from))
        .ok_or_else(|| HubError::bad_request("give a role or a permissions list"))?;
    let list = role_permissions(&role).ok_or_else(|| unknown_role(&role))?;
    Ok((Some(role), list))
}

fn token_view(row: &TokenRow) -> Value {
    json!({
        "hash_prefix": &row.hash[..HASH_PREFIX_CHARS.min(row.hash.len())],
        "agent_id": row.agent_id,
        "name": row.name,
        "role": row.role,
        "permissions": serde_json::from_str::<Value>(&row.permissions).unwrap_or(Value::Null),
        "created_at": row.created_at,
        "created_by": row.created_by,
    })
}

/// The one active token whose hash starts with `prefix` (inside the caller's transaction).
fn find_token(conn: &mut DbConnection, prefix: &str) -> Result<TokenRow, HubError> {
    let prefix = prefix.to_ascii_lowercase();
    if prefix.len() < MIN_HASH_PREFIX || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(HubError::not_found(format!("no token {prefix:?}")));
    }
    let mut found: Vec<TokenRow> = tokens::table
        .filter(tokens::hash.like(format!("{prefix}%")))
        .filter(tokens::revoked_at.is_null())
        .select(TokenRow::as_select())
        .limit(2)
        .load(conn)?;
    match found.len() {
        0 => Err(HubError::not_found(format!("no token {prefix:?}"))),
        1 => Ok(found.remove(0)),
        _ => Err(HubError::conflict(format!(
            "{prefix:?} names more than one token; give more of the hash"
        ))),
    }
}

#[utoipa::path(
    post,
    path = "/api/admin/tokens",
    tag = "tokens",
    request_body = IssueBody,
    responses((status = 201, description = "Issue a token; shown once (master)", body = Object))
)]
pub async fn issue_token(
    hub: web::Data<Hub>,
    caller: Caller,
    body: Json<IssueBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require_master()?;
    let body = body.0;
    let agent_id = body
        .agent_id
        .filter(|a| valid_agent_id(a))
        .ok_or_else(|| HubError::bad_request("agent_id is required (letters, digits, - _ .)"))?;
    let (role, permissions) = resolve(body.role, body.permissions, Some("worker"))?;
    let raw = new_agent_token();
    let row = TokenRow {
        hash: hash_token(&raw),
        name: body.name.unwrap_or_else(|| agent_id.clone()),
        agent_id,
        role,
        permissions: json!(permissions).to_string(),
        created_at: now_iso(),
        created_by: caller.0.label(),
        revoked_at: None,
        revoked_by: None,
    };
    let stored = row.clone();
    hub.core
        .db
        .write(move |conn| {
            diesel::insert_into(tokens::table)
                .values(&stored)
                .execute(conn)?;
            let detail = json!({ "role": stored.role, "permissions": permissions });
            NewAuditRow::new(
                &stored.created_by,
                "token.issue",
                format!("agent:{}", stored.agent_id),
                Some(detail),
            )
            .append(conn)?;
            Ok(())
        })
        .await?;
    hub.credentials.grant(row.hash.clone(), row.grant());
    let mut view = token_view(&row);
    view["token"] = json!(raw);
    view["hash"] = json!(row.hash);
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(
    get,
    path = "/api/admin/tokens",
    tag = "tokens",
    responses((status = 200, description = "Tokens (master)", body = Object))
)]
pub async fn list_tokens(hub: web::Data<Hub>, caller: Caller) -> Result<HttpResponse, HubError> {
    caller.0.require_master()?;
    let rows = crate::db::read(&hub.reads, |conn| Ok(queries::active_tokens(conn)?)).await?;
    let list: Vec<Value> = rows.iter().map(token_view).collect();
    Ok(HttpResponse::Ok().json(json!({ "count": list.len(), "tokens": list })))
}

/// A change to a stored token; `None` leaves a column as it is.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = tokens)]
struct TokenChange {
    role: Option<Option<String>>,
    permissions: Option<String>,
    revoked_at: Option<String>,
    revoked_by: Option<String>,
}

/// Applies `change` to the active token named by `prefix`, with its audit row, in one
/// transaction; returns the changed row.
async fn change_token(
    hub: &Hub,
    prefix: String,
    actor: String,
    action: &'static str,
    change: TokenChange,
    detail: Option<Value>,
) -> Result<TokenRow, HubError> {
    hub.core
        .db
        .write(move |conn| {
            let found = find_token(conn, &prefix)?;
            let row: TokenRow = diesel::update(tokens::table.find(&found.hash))
                .set(&change)
                .returning(crate::db::columns_of::<TokenRow>())
                .get_result(conn)?;
            let target = format!("agent:{}", row.agent_id);
            NewAuditRow::new(&actor, action, target, detail).append(conn)?;
            Ok(row)
        })
        .await
}

#[utoipa::path(
    put,
    path = "/api/admin/tokens/{hash}/permissions",
    tag = "tokens",
    params(("hash" = String, Path, description = "The token hash or a prefix of at least 12 hex characters")),
    request_body = PermissionsBody,
    responses((status = 200, description = "Change a token's permissions (master)", body = Object))
)]
pub async fn update_token_permissions(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    body: Json<PermissionsBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require_master()?;
    let (role, permissions) = resolve(body.0.role, body.0.permissions, None)?;
    let detail = json!({ "role": role, "permissions": permissions });
    let change = TokenChange {
        role: Some(role),
        permissions: Some(json!(permissions).to_string()),
        ..TokenChange::default()
    };
    let row = change_token(
        &hub,
        path.into_inner(),
        caller.0.label(),
        "token.permissions",
        change,
        Some(detail),
    )
    .await?;
    hub.credentials.grant(row.hash.clone(), row.grant());
    Ok(HttpResponse::Ok().json(token_view(&row)))
}

#[utoipa::path(
    delete,
    path = "/api/admin/tokens/{hash}",
    tag = "tokens",
    params(("hash" = String, Path, description = "The token hash or a prefix of at least 12 hex characters")),
    responses((status = 200, description = "Revoke a token (master)", body = Object))
)]
pub async fn revoke_token(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require_master()?;
    let change = TokenChange {
        revoked_at: Some(now_iso()),
        revoked_by: Some(caller.0.label()),
        ..TokenChange::default()
    };
    let row = change_token(
        &hub,
        path.into_inner(),
        caller.0.label(),
        "token.revoke",
        change,
        None,
    )
    .await?;
    hub.credentials.revoke(&row.hash);
    let mut view = token_view(&row);
    view["revoked"] = json!(true);
    view["revoked_at"] = json!(row.revoked_at);
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(
    get,
    path = "/api/admin/roles",
    tag = "tokens",
    responses((status = 200, description = "Role presets (master)", body = Object))
)]
pub async fn list_roles(caller: Caller) -> Result<HttpResponse, HubError> {
    caller.0.require_master()?;
    let roles: serde_json::Map<String, Value> = ROLE_NAMES
        .iter()
        .map(|r| (r.to_string(), json!(role_permissions(r))))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "roles": roles })))
}
