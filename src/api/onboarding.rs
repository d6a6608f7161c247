//! Agent onboarding (seed 002): an owner issues a one-time registration token (`mrt_…`);
//! the new agent preregisters with it and polls while the owner approves or denies it by
//! its verification code; the agent then finalizes, which creates it and hands out its
//! runtime credential (`mrm_rt_…`, an agent token that works on every endpoint) and its
//! recovery credential (`mrm_rr_…`), once. Owners rotate credentials and set agent states.
//! Field names are the document's camelCase.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::agents::{capability_list, named_agent};
use super::auth::Caller;
use super::client;
use super::extract::{text, Json};
use crate::actors::agent::{AgentChange, UpdateAgent};
use crate::actors::registry::CreateAgent;
use crate::crypto::tokens::{
    hash_token, new_secret, new_verification_code, random_hex, REGISTRATION_TOKEN_PREFIX,
};
use crate::db::onboarding::{
    self as store, NewPreregistration, NewRegistrationToken, PreregistrationKey,
    PreregistrationRow, RegistrationTokenRow,
};
use crate::domain::access::role_permissions;
use crate::domain::agent::check_new_agent_id;
use crate::domain::event::{Audience, HubEvent};
use crate::domain::onboarding::{bind_hash, normalized_code, AgentState, RUNTIME_TYPES};
use crate::domain::{iso, now_iso};
use crate::error::HubError;
use crate::startup::Hub;

/// The permission that manages onboarding: registration tokens, approvals, credentials
/// and agent states.
pub const ADMIN_AGENTS: &str = "admin:agents";
const MAX_BIND_SECRET_CHARS: usize = 512;

fn minutes(n: u64) -> chrono::Duration {
    chrono::Duration::minutes(n as i64)
}

// ---- registration tokens -------------------------------------------------------------

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RegistrationTokenBody {
    /// A label for the owners' list.
    #[schema(value_type = Option<String>, max_length = 128)]
    name: Option<String>,
    /// The role preset the new agent's runtime credential gets (default `worker`).
    #[schema(schema_with = super::openapi::optional_role)]
    role: Option<String>,
    /// Capabilities the new agent starts with (default: the skills it asks for).
    #[schema(schema_with = super::openapi::capability_list)]
    capabilities: Option<Vec<String>>,
}

fn registration_token_view(row: &RegistrationTokenRow) -> Value {
    json!({
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "capabilities": serde_json::from_str::<Value>(&row.capabilities).unwrap_or(Value::Null),
        "status": row.status(&now_iso()),
        "createdBy": row.created_by,
        "createdAt": row.created_at,
        "expiresAt": row.expires_at,
        "usedAt": row.used_at,
        "revokedAt": row.revoked_at,
    })
}

#[utoipa::path(
    post,
    path = "/api/admin/registration-tokens",
    tag = "onboarding",
    request_body = RegistrationTokenBody,
    responses((status = 201, description = "Issue a one-time registration token (`mrt_…`, shown once; admin:agents)", body = Object))
)]
pub async fn issue_registration_token(
    hub: web::Data<Hub>,
    caller: Caller,
    body: Json<RegistrationTokenBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require(ADMIN_AGENTS)?;
    let body = body.0;
    let role = body.role.unwrap_or_else(|| "worker".into());
    let permissions = role_permissions(&role).ok_or_else(|| super::tokens::unknown_role(&role))?;
    // Nobody hands a new agent more than they hold.
    caller.0.require_all(&permissions)?;
    let capabilities = capability_list("capabilities", body.capabilities.unwrap_or_default())?;
    let raw = new_secret(REGISTRATION_TOKEN_PREFIX);
    let now = chrono::Utc::now();
    let new = NewRegistrationToken {
        hash: hash_token(&raw),
        name: optional_text("name", body.name, 128)?,
        role,
        capabilities: json!(capabilities).to_string(),
        created_by: caller.0.label(),
        created_at: iso(now),
        expires_at: iso(now + minutes(hub.core.settings.registration_token_minutes)),
    };
    let row = hub
        .core
        .db
        .write(move |conn| Ok(store::issue_registration_token(conn, &new)?))
        .await?;
    let mut view = registration_token_view(&row);
    view["registrationToken"] = json!(raw);
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(
    get,
    path = "/api/admin/registration-tokens",
    tag = "onboarding",
    responses((status = 200, description = "Registration tokens, newest first, with their status (admin:agents)", body = Object))
)]
pub async fn list_registration_tokens(
    hub: web::Data<Hub>,
    caller: Caller,
) -> Result<HttpResponse, HubError> {
    caller.0.require(ADMIN_AGENTS)?;
    let rows = crate::db::read(&hub.reads, |conn| Ok(store::registration_tokens(conn)?)).await?;
    let list: Vec<Value> = rows.iter().map(registration_token_view).collect();
    Ok(HttpResponse::Ok().json(json!({ "registrationTokens": list })))
}

#[utoipa::path(
    delete,
    path = "/api/admin/registration-tokens/{id}",
    tag = "onboarding",
    params(("id" = i32, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoke an unused registration token (admin:agents)"),
        (status = 404, description = "No such token", body = super::openapi::ErrorBody),
        (status = 409, description = "Already used or revoked", body = super::openapi::ErrorBody),
    )
)]
pub async fn revoke_registration_token(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require(ADMIN_AGENTS)?;
    let id: i32 = path
        .parse()
        .map_err(|_| HubError::not_found(format!("no registration token {path:?}")))?;
    let by = caller.0.label();
    hub.core
        .db
        .write(move |conn| store::revoke_registration_token(conn, id, &by))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- preregistration, approval, poll ---------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreregistrationBody {
    /// The one-time `mrt_…` token from the owner.
    #[schema(required = true, value_type = String, min_length = 1)]
    registration_token: Option<String>,
    /// The new agent's handle (its agent_id): letters, digits, `-`, `_`, `.`.
    #[schema(required = true, value_type = String, pattern = r"^[A-Za-z0-9._-]*[A-Za-z._-][A-Za-z0-9._-]*$", max_length = 64)]
    requested_name: Option<String>,
    #[schema(value_type = Option<String>, max_length = 64)]
    requested_category: Option<String>,
    #[schema(required = true, value_type = String, pattern = "^(CLI|DAEMON|SDK|MCP)$")]
    requested_runtime_type: Option<String>,
    /// The agent's skills: a JSON array of strings, or a string holding one.
    #[schema(schema_with = skills_json)]
    requested_skills_json: Option<Value>,
    /// Any opaque string the agent keeps and sends again on finalize.
    #[serde(alias = "requestedPublicKeyFingerprint", alias = "proofOfPossession")]
    #[schema(required = true, value_type = String, min_length = 1, max_length = 512)]
    bind_secret: Option<String>,
}

/// `requestedSkillsJson` in the OpenAPI document: a list of skills, or a string holding
/// one as JSON (which a schema cannot check), or null.
fn skills_json() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(super::openapi::capability_list())
        .item(ObjectBuilder::new().schema_type(Type::String))
        .into()
}

/// The skills of a preregistration: an array of strings, or a string holding one.
fn skills_of(value: Option<Value>) -> Result<Vec<String>, HubError> {
    let wrong = || {
        HubError::bad_request(
            "requestedSkillsJson must be a JSON array of strings (or a string holding one)",
        )
    };
    let value = match value {
        None | Some(Value::Null) => return Ok(vec![]),
        Some(Value::String(text)) => serde_json::from_str(&text).map_err(|_| wrong())?,
        Some(other) => other,
    };
    let list: Vec<String> = serde_json::from_value(value).map_err(|_| wrong())?;
    capability_list("requestedSkillsJson", list)
}

/// An optional label: blank is the same as absent.
fn optional_text(
    field: &str,
    value: Option<String>,
    max: usize,
) -> Result<Option<String>, HubError> {
    text(field, value.filter(|v| !v.trim().is_empty()), max, false)
}

/// A code or credential as sent: only its absence is a 400; any other value is looked up
/// (by its hash), and one that names nothing is that lookup's 404 or 401.
fn presented(field: &str, value: Option<String>) -> Result<String, HubError> {
    value.ok_or_else(|| HubError::bad_request(format!("{field} is required")))
}

fn required(field: &str, value: Option<String>, max: usize) -> Result<String, HubError> {
    text(field, value, max, false)?
        .ok_or_else(|| HubError::bad_request(format!("{field} is required")))
}

/// A preregistration as owners see it (never its codes: only their hashes are stored).
fn preregistration_view(row: &PreregistrationRow) -> Value {
    json!({
        "id": row.id,
        "requestedName": row.requested_name,
        "requestedCategory": row.requested_category,
        "requestedRuntimeType": row.requested_runtime_type,
        "requestedSkills": serde_json::from_str::<Value>(&row.requested_skills).unwrap_or(Value::Null),
        "status": row.shown_status(&now_iso()),
        "createdAt": row.created_at,
        "expiresAt": row.expires_at,
        "decidedAt": row.decided_at,
        "decidedBy": row.decided_by,
        "agentId": row.agent_id,
    })
}

fn owners() -> Audience {
    Audience::Holders(ADMIN_AGENTS)
}

#[utoipa::path(
    post,
    path = "/api/v1/agent-preregistrations",
    tag = "onboarding",
    request_body = PreregistrationBody,
    security(()),
    responses(
        (status = 201, description = "Start a bootstrap with a registration token: answers verification_code, device_code and verification_uri, once", body = Object),
        (status = 401, description = "The registration token is unknown, used, revoked or expired (the message says which)", body = super::openapi::ErrorBody),
        (status = 409, description = "The name is taken", body = super::openapi::ErrorBody),
    )
)]
pub async fn preregister(
    hub: web::Data<Hub>,
    req: HttpRequest,
    body: Json<PreregistrationBody>,
) -> Result<HttpResponse, HubError> {
    let body = body.0;
    let token = required("registrationToken", body.registration_token, 256)?;
    let name = required("requestedName", body.requested_name, 64)?;
    check_new_agent_id(&name).map_err(HubError::bad_request)?;
    let runtime_type = required("requestedRuntimeType", body.requested_runtime_type, 16)?;
    if !RUNTIME_TYPES.contains(&runtime_type.as_str()) {
        return Err(HubError::bad_request(format!(
            "requestedRuntimeType must be one of {}",
            RUNTIME_TYPES.join(", ")
        )));
    }
    let category = optional_text("requestedCategory", body.requested_category, 64)?;
    let skills = skills_of(body.requested_skills_json)?;
    let bind = body
        .bind_secret
        .filter(|s| !s.is_empty() && s.chars().count() <= MAX_BIND_SECRET_CHARS)
        .ok_or_else(|| HubError::bad_request("bindSecret is required (1 to 512 characters)"))?;
    if hub.directory.agent(&name).is_some() {
        return Err(HubError::conflict(format!(
            "agent name {name:?} already exists"
        )));
    }
    let settings = &hub.core.settings;
    let verification_code = new_verification_code();
    let device_code = random_hex(16);
    let new = NewPreregistration {
        verification_hash: hash_token(&normalized_code(&verification_code)),
        device_hash: hash_token(&device_code),
        bind_hash: bind_hash(&bind),
        requested_name: name,
        requested_category: category,
        requested_runtime_type: runtime_type,
        requested_skills: json!(skills).to_string(),
        poll_interval: settings.device_poll_seconds as i32,
    };
    let lives = minutes(settings.preregistration_minutes);
    let expires_at = iso(chrono::Utc::now() + lives);
    let token_hash = hash_token(&token);
    let row = hub
        .core
        .db
        .write(move |conn| store::preregister(conn, &token_hash, new, expires_at))
        .await?;
    hub.core.publish(HubEvent::new(
        "preregistration_pending",
        preregistration_view(&row),
        owners(),
    ));
    let uri = format!(
        "{}/approve/{verification_code}",
        client::public_base(&req, settings)
    );
    Ok(HttpResponse::Created().json(json!({
        "verification_code": verification_code,
        "device_code": device_code,
        "verification_uri": uri,
        "expires_in": lives.num_seconds(),
        "interval": row.poll_interval,
        "preregistrationId": row.id,
    })))
}

#[utoipa::path(
    get,
    path = "/api/v1/agent-preregistrations",
    tag = "onboarding",
    responses((status = 200, description = "Every pending preregistration (oldest first), then the 100 newest others (admin:agents)", body = Object))
)]
pub async fn list_preregistrations(
    hub: web::Data<Hub>,
    caller: Caller,
) -> Result<HttpResponse, HubError> {
    caller.0.require(ADMIN_AGENTS)?;
    let rows = crate::db::read(&hub.reads, |conn| Ok(store::preregistrations(conn)?)).await?;
    let list: Vec<Value> = rows.iter().map(preregistration_view).collect();
    Ok(HttpResponse::Ok().json(json!({ "preregistrations": list })))
}

/// A preregistration named in a path: its verification code, or its id from the list.
fn preregistration_key(path: &str) -> PreregistrationKey {
    match path.parse::<i32>() {
        Ok(id) => PreregistrationKey::Id(id),
        Err(_) => PreregistrationKey::VerificationHash(hash_token(&normalized_code(path))),
    }
}

async fn decide(
    hub: &Hub,
    caller: &Caller,
    path: &str,
    approve: bool,
) -> Result<HttpResponse, HubError> {
    caller.0.require(ADMIN_AGENTS)?;
    let key = preregistration_key(path);
    let by = caller.0.label();
    let ttl = minutes(hub.core.settings.preregistration_minutes);
    let (row, changed) = hub
        .core
        .db
        .write(move |conn| store::decide(conn, &key, approve, &by, ttl))
        .await?;
    let view = preregistration_view(&row);
    if changed {
        hub.core.publish(HubEvent::new(
            "preregistration_decided",
            view.clone(),
            owners(),
        ));
    }
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(
    post,
    path = "/api/v1/agent-preregistrations/{verification_code}/approve",
    tag = "onboarding",
    params(("verification_code" = String, Path, description = "The verification code (or the preregistration's id)")),
    responses(
        (status = 200, description = "Approve (admin:agents); approving again answers the settled state", body = Object),
        (status = 404, description = "No such preregistration", body = super::openapi::ErrorBody),
        (status = 409, description = "Already denied, finalized or expired", body = super::openapi::ErrorBody),
    )
)]
pub async fn approve(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    decide(&hub, &caller, &path, true).await
}

#[utoipa::path(
    post,
    path = "/api/v1/agent-preregistrations/{verification_code}/deny",
    tag = "onboarding",
    params(("verification_code" = String, Path, description = "The verification code (or the preregistration's id)")),
    responses(
        (status = 200, description = "Deny (admin:agents); denying again answers the settled state", body = Object),
        (status = 404, description = "No such preregistration", body = super::openapi::ErrorBody),
        (status = 409, description = "Already approved, finalized or expired", body = super::openapi::ErrorBody),
    )
)]
pub async fn deny(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    decide(&hub, &caller, &path, false).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PollBody {
    #[schema(required = true, value_type = String, min_length = 1)]
    device_code: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/agent-preregistrations/poll",
    tag = "onboarding",
    security(()),
    request_body = PollBody,
    responses(
        (status = 200, description = "status: pending, approved, denied or expired; interval: seconds to wait before the next poll", body = Object),
        (status = 404, description = "Unknown device code", body = super::openapi::ErrorBody),
        (status = 429, description = "slow_down: polled faster than the interval, which grew by 5 s", body = Object),
    )
)]
pub async fn poll(hub: web::Data<Hub>, body: Json<PollBody>) -> Result<HttpResponse, HubError> {
    let device = presented("deviceCode", body.0.device_code)?;
    let device_hash = hash_token(&device);
    let polled = hub
        .core
        .db
        .write(move |conn| store::poll(conn, &device_hash))
        .await?;
    let row = &polled.row;
    let answer = json!({
        "status": row.shown_status(&now_iso()),
        "interval": row.poll_interval,
        "expiresAt": row.expires_at,
        "agentId": row.agent_id,
    });
    if polled.slow_down {
        let mut answer = answer;
        answer["error"] = json!("slow_down");
        return Ok(HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", row.poll_interval.to_string()))
            .json(answer));
    }
    Ok(HttpResponse::Ok().json(answer))
}

// ---- finalize, recovery, rotation ------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FinalizeBody {
    #[schema(required = true, value_type = String, min_length = 1)]
    verification_code: Option<String>,
    #[schema(required = true, value_type = String, min_length = 1)]
    device_code: Option<String>,
    #[serde(alias = "requestedPublicKeyFingerprint", alias = "proofOfPossession")]
    #[schema(required = true, value_type = String, min_length = 1)]
    bind_secret: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/agent-auth/finalize-activation",
    tag = "onboarding",
    security(()),
    request_body = FinalizeBody,
    responses(
        (status = 201, description = "Create the approved agent: agentId, runtimeCredential (mrm_rt_…) and runtimeRecoveryCredential (mrm_rr_…), shown once", body = Object),
        (status = 400, description = "Already finalized (the message names the agent and runtime-recover)", body = super::openapi::ErrorBody),
        (status = 401, description = "bindSecret does not match", body = super::openapi::ErrorBody),
        (status = 403, description = "The owner denied it", body = super::openapi::ErrorBody),
        (status = 404, description = "The codes name no preregistration", body = super::openapi::ErrorBody),
        (status = 409, description = "Not approved yet, expired, or the name was taken meanwhile", body = super::openapi::ErrorBody),
    )
)]
pub async fn finalize(
    hub: web::Data<Hub>,
    body: Json<FinalizeBody>,
) -> Result<HttpResponse, HubError> {
    let body = body.0;
    let verification = presented("verificationCode", body.verification_code)?;
    let device = presented("deviceCode", body.device_code)?;
    let bind = body
        .bind_secret
        .filter(|s| !s.is_empty())
        .ok_or_else(|| HubError::bad_request("bindSecret is required"))?;
    let (verification_hash, device_hash) = (
        hash_token(&normalized_code(&verification)),
        hash_token(&device),
    );
    let (row, token) = crate::db::read(&hub.reads, move |conn| {
        let row = store::finalizing(conn, &verification_hash, &device_hash)?;
        let token = store::registration_token(conn, row.registration_token_id)?;
        Ok((row, token))
    })
    .await?;
    // Checked again inside the write, which a second finalize may race.
    store::check_finalizable(&row, &bind)?;
    let prepared = store::prepare_activation(&row, &token, bind);
    let runtime_row = prepared.activation.runtime.clone();
    let agent_id = prepared.agent.agent_id.clone();
    let activation = prepared.activation;
    hub.registry
        .send(CreateAgent {
            row: prepared.agent,
            by: format!("preregistration:{}", row.id),
            detail: json!({ "onboarding": row.id }),
            also: Some(Box::new(move |conn| store::activate(conn, activation))),
        })
        .await??;
    hub.credentials
        .grant(runtime_row.hash.clone(), runtime_row.grant());
    // Owners' lists learn that the request became an agent.
    let mut view = preregistration_view(&row);
    view["agentId"] = json!(agent_id);
    hub.core
        .publish(HubEvent::new("preregistration_decided", view, owners()));
    Ok(HttpResponse::Created().json(json!({
        "agentId": agent_id,
        "runtimeCredential": prepared.runtime,
        "runtimeRecoveryCredential": prepared.recovery,
        "credentialVersion": 1,
        "role": token.role,
    })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoverBody {
    #[schema(required = true, value_type = String, min_length = 1)]
    agent_id: Option<String>,
    #[schema(required = true, value_type = String, min_length = 1)]
    recovery_credential: Option<String>,
}

/// Stores a rotation and applies it to the credential index: the old runtime credential
/// stops working on the very next request.
async fn rotate(
    hub: &Hub,
    agent_id: String,
    by: String,
    recovery: Option<String>,
) -> Result<HttpResponse, HubError> {
    let rotated = hub
        .core
        .db
        .write(move |conn| store::rotate_runtime(conn, &agent_id, &by, recovery.as_deref()))
        .await?;
    hub.credentials.revoke(&rotated.revoked);
    hub.credentials
        .grant(rotated.row.hash.clone(), rotated.row.grant());
    Ok(HttpResponse::Ok().json(json!({
        "runtimeCredential": rotated.raw,
        "credentialVersion": rotated.version,
    })))
}

#[utoipa::path(
    post,
    path = "/api/v1/agent-auth/runtime-recover",
    tag = "onboarding",
    security(()),
    request_body = RecoverBody,
    responses(
        (status = 200, description = "A fresh runtimeCredential and its credentialVersion; the old one stops working", body = Object),
        (status = 401, description = "Wrong agentId or recoveryCredential", body = super::openapi::ErrorBody),
        (status = 403, description = "The agent is banned", body = super::openapi::ErrorBody),
        (status = 429, description = "Too many failed attempts for this agent from this address", body = super::openapi::ErrorBody),
    )
)]
pub async fn recover(
    hub: web::Data<Hub>,
    req: HttpRequest,
    body: Json<RecoverBody>,
) -> Result<HttpResponse, HubError> {
    let body = body.0;
    let agent_id = presented("agentId", body.agent_id)?;
    let recovery = presented("recoveryCredential", body.recovery_credential)?;
    let address = client::address(&req, &hub.core.settings);
    let attempt = hub
        .login_throttle
        .begin(&format!("recover:{agent_id}"), &address)
        .map_err(|wait| {
            HubError::Throttled(
                format!(
                    "too many failed recoveries of this agent from this address; try again in {} s",
                    wait.as_secs().max(1)
                ),
                wait.as_secs().max(1),
            )
        })?;
    if hub.credentials.refusing_state(&agent_id) == Some(AgentState::Banned) {
        return Err(HubError::forbidden(format!("agent {agent_id} is BANNED")));
    }
    let answer = rotate(&hub, agent_id.clone(), agent_id, Some(recovery)).await?;
    hub.login_throttle.succeeded(attempt);
    Ok(answer)
}

#[utoipa::path(
    post,
    path = "/api/v1/agents/{id}/rotate-credential",
    tag = "onboarding",
    params(("id" = String, Path, description = "The agent's numeric id or its agent_id")),
    responses(
        (status = 200, description = "A new runtime credential for an onboarded agent, shown once; the old one stops working (admin:agents)", body = Object),
        (status = 404, description = "No such agent, or one that did not join by onboarding", body = super::openapi::ErrorBody),
    )
)]
pub async fn rotate_credential(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require(ADMIN_AGENTS)?;
    let (agent_id, _) = named_agent(&hub, &path)?;
    rotate(&hub, agent_id, caller.0.label(), None).await
}

// ---- agent states ----------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentStateBody {
    /// ACTIVE, PAUSED (no new work), SUSPENDED or BANNED (credentials refused).
    #[schema(required = true, value_type = String, pattern = "^(ACTIVE|PAUSED|SUSPENDED|BANNED)$")]
    status: Option<String>,
}

#[utoipa::path(
    patch,
    path = "/api/v1/agents/{id}",
    tag = "onboarding",
    params(("id" = String, Path, description = "The agent's numeric id or its agent_id")),
    request_body = AgentStateBody,
    responses(
        (status = 200, description = "Set an agent's state (admin:agents)", body = Object),
        (status = 404, description = "No such agent", body = super::openapi::ErrorBody),
    )
)]
pub async fn set_agent_state(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    body: Json<AgentStateBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require(ADMIN_AGENTS)?;
    let state = body
        .0
        .status
        .as_deref()
        .and_then(AgentState::parse)
        .ok_or_else(|| HubError::bad_request(format!("status must be {}", AgentState::NAMES)))?;
    let (agent_id, addr) = named_agent(&hub, &path)?;
    let change = AgentChange {
        state: Some(state),
        ..AgentChange::default()
    };
    let snapshot = addr
        .send(UpdateAgent {
            change,
            by: caller.0.label(),
            audit: "agent.state",
        })
        .await??;
    hub.credentials.set_state(&agent_id, state);
    Ok(HttpResponse::Ok().json(json!({
        "agentId": agent_id,
        "id": snapshot.id,
        "status": state.as_str(),
    })))
}
