//! People: user accounts (admin:users), password login into an HttpOnly session cookie
//! that every endpoint accepts per the user's role, and logout. Passwords are hashed with
//! Argon2id, a bounded number at a time; a wrong one is answered after a deliberate
//! delay, and repeated failures per (user name, client address) slow that pair down.

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::auth::{Caller, SESSION_COOKIE};
use super::client;
use super::extract::Json;
use crate::crypto::tokens::{hash_token, random_hex};
use crate::db::models::{NewAuditRow, UserRow};
use crate::db::schema::{sessions, users};
use crate::domain::access::{role_permissions, Principal, ROLE_NAMES};
use crate::domain::credentials::Session;
use crate::domain::Blank;
use crate::domain::{iso, now_iso};
use crate::error::HubError;
use crate::startup::Hub;

const MIN_PASSWORD_CHARS: usize = 8;

fn user_view(row: &UserRow) -> Value {
    json!({
        "id": row.id,
        "username": row.username,
        "role": row.role,
        "enabled": row.enabled,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}

/// The permissions of a role the caller names; 400 for an unknown role.
fn check_role(role: &str) -> Result<Vec<String>, HubError> {
    role_permissions(role).ok_or_else(|| {
        HubError::bad_request(format!(
            "unknown role {role:?} (expected one of {})",
            ROLE_NAMES.join(", ")
        ))
    })
}

/// A caller manages only accounts whose role grants nothing the caller lacks, so
/// `admin:users` alone can neither mint an admin nor take one over.
fn check_manages(caller: &Principal, row: &UserRow) -> Result<(), HubError> {
    caller.require_all(&role_permissions(&row.role).unwrap_or_default())
}

/// The account row of `id`, for a change inside the writer's transaction.
fn user_row(conn: &mut crate::db::DbConnection, id: i32) -> Result<UserRow, HubError> {
    users::table
        .find(id)
        .select(UserRow::as_select())
        .get_result(conn)
        .optional()?
        .ok_or_else(|| HubError::not_found(format!("no user {id}")))
}

/// Runs one Argon2 computation off the async workers, at most
/// `password_hash_concurrency` at a time: each takes ~19 MiB, so a burst of sign-ins
/// waits its turn briefly and is then told to come back, instead of exhausting memory.
async fn with_hashing_slot<T: Send + 'static>(
    hub: &Hub,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HubError> {
    let permit = tokio::time::timeout(HASHING_WAIT, hub.password_hashing.acquire())
        .await
        .map_err(|_| HubError::Throttled("too many sign-ins at once; try again shortly".into(), 1))?
        .map_err(|_| HubError::Unavailable("the hub is shutting down".into()))?;
    let result = web::block(work).await;
    drop(permit);
    Ok(result?)
}

/// How long a sign-in waits for a hashing slot before its 429.
const HASHING_WAIT: Duration = Duration::from_secs(5);

/// Hashes a new password (Argon2id).
async fn hash_password(hub: &Hub, password: String) -> Result<String, HubError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(HubError::bad_request(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    with_hashing_slot(hub, move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HubError::internal(format!("argon2: {e}")))
    })
    .await?
}

/// A hash no password matches, verified in place of a missing or disabled account's so
/// that an unknown name costs the same time as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(random_hex(32).as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateUserBody {
    #[schema(required = true, value_type = String, min_length = 1, max_length = 64, pattern = r"\S")]
    username: Option<String>,
    #[schema(required = true, value_type = String, min_length = 8)]
    password: Option<String>,
    #[schema(schema_with = super::openapi::optional_role)]
    role: Option<String>,
    #[schema(value_type = Option<bool>)]
    enabled: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/api/admin/users",
    tag = "people",
    request_body = CreateUserBody,
    responses((status = 201, description = "Create a user (admin:users)", body = Object))
)]
pub async fn create_user(
    hub: web::Data<Hub>,
    caller: Caller,
    body: Json<CreateUserBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:users")?;
    let body = body.0;
    let username = body
        .username
        .map(|u| u.trim_blank().to_string())
        .filter(|u| (1..=MAX_USERNAME_CHARS).contains(&u.chars().count()))
        .ok_or_else(|| HubError::bad_request("username is required (1 to 64 characters)"))?;
    let role = body.role.unwrap_or_else(|| "viewer".into());
    caller.0.require_all(&check_role(&role)?)?;
    let password_hash = hash_password(
        &hub,
        body.password
            .ok_or_else(|| HubError::bad_request("password is required"))?,
    )
    .await?;
    let actor = caller.0.label();
    let row = hub
        .core
        .db
        .write(move |conn| {
            let now = now_iso();
            let row: UserRow = diesel::insert_into(users::table)
                .values((
                    users::username.eq(&username),
                    users::password_hash.eq(&password_hash),
                    users::role.eq(&role),
                    users::enabled.eq(body.enabled.unwrap_or(true)),
                    users::created_at.eq(&now),
                    users::updated_at.eq(&now),
                ))
                .returning(crate::db::columns_of::<UserRow>())
                .get_result(conn)
                .map_err(|e| match HubError::from(e) {
                    HubError::Conflict(_) => {
                        HubError::conflict(format!("a user named {username:?} already exists"))
                    }
                    other => other,
                })?;
            NewAuditRow::new(
                &actor,
                "user.create",
                format!("user:{}", row.id),
                Some(json!({ "username": row.username, "role": row.role })),
            )
            .append(conn)?;
            Ok(row)
        })
        .await?;
    Ok(HttpResponse::Created().json(user_view(&row)))
}

#[utoipa::path(
    get,
    path = "/api/admin/users",
    tag = "people",
    responses((status = 200, description = "Users (admin:users)", body = Object))
)]
pub async fn list_users(hub: web::Data<Hub>, caller: Caller) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:users")?;
    let rows = crate::db::read(&hub.reads, |conn| {
        Ok(users::table
            .select(UserRow::as_select())
            .order(users::id)
            .load(conn)?)
    })
    .await?;
    let list: Vec<Value> = rows.iter().map(user_view).collect();
    Ok(HttpResponse::Ok().json(json!({ "count": list.len(), "users": list })))
}

fn user_id(raw: &str) -> Result<i32, HubError> {
    raw.parse()
        .map_err(|_| HubError::not_found(format!("no user {raw:?}")))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateUserBody {
    #[schema(schema_with = super::openapi::optional_role)]
    role: Option<String>,
    #[schema(value_type = Option<String>, min_length = 8)]
    password: Option<String>,
    #[schema(value_type = Option<bool>)]
    enabled: Option<bool>,
}

/// Changes role, password or enabled; any change signs the user out everywhere.
#[utoipa::path(
    put,
    path = "/api/admin/users/{id}",
    tag = "people",
    params(("id" = i64, Path, description = "The numeric id")),
    request_body = UpdateUserBody,
    responses((status = 200, description = "Change a user (admin:users)", body = Object))
)]
pub async fn update_user(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    body: Json<UpdateUserBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:users")?;
    let id = user_id(&path)?;
    let body = body.0;
    if let Some(role) = &body.role {
        caller.0.require_all(&check_role(role)?)?;
    }
    let password_hash = match body.password {
        Some(password) => Some(hash_password(&hub, password).await?),
        None => None,
    };
    let actor = caller.0.label();
    let principal = caller.0;
    let row = hub
        .core
        .db
        .write(move |conn| {
            let current = user_row(conn, id)?;
            check_manages(&principal, &current)?;
            let own = principal.label() == UserRow::label_of(&current.username);
            if own && body.role.as_ref().is_some_and(|r| *r != current.role) {
                return Err(HubError::forbidden("nobody may change their own role"));
            }
            let row: UserRow = diesel::update(users::table.find(id))
                .set((
                    body.role.as_ref().map(|r| users::role.eq(r.clone())),
                    password_hash.map(|h| users::password_hash.eq(h)),
                    body.enabled.map(|e| users::enabled.eq(e)),
                    users::updated_at.eq(now_iso()),
                ))
                .returning(crate::db::columns_of::<UserRow>())
                .get_result(conn)?;
            diesel::delete(sessions::table.filter(sessions::user_id.eq(id))).execute(conn)?;
            let detail = json!({ "role": row.role, "enabled": row.enabled });
            NewAuditRow::new(&actor, "user.update", format!("user:{id}"), Some(detail))
                .append(conn)?;
            Ok(row)
        })
        .await?;
    hub.credentials.close_user_sessions(id);
    Ok(HttpResponse::Ok().json(user_view(&row)))
}

#[utoipa::path(
    delete,
    path = "/api/admin/users/{id}",
    tag = "people",
    params(("id" = i64, Path, description = "The numeric id")),
    responses((status = 200, description = "Delete a user (admin:users)", body = Object))
)]
pub async fn delete_user(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:users")?;
    let id = user_id(&path)?;
    let actor = caller.0.label();
    let principal = caller.0;
    hub.core
        .db
        .write(move |conn| {
            check_manages(&principal, &user_row(conn, id)?)?;
            diesel::delete(sessions::table.filter(sessions::user_id.eq(id))).execute(conn)?;
            diesel::delete(users::table.find(id)).execute(conn)?;
            NewAuditRow::new(&actor, "user.delete", format!("user:{id}"), None).append(conn)?;
            Ok(())
        })
        .await?;
    hub.credentials.close_user_sessions(id);
    Ok(HttpResponse::Ok().json(json!({ "deleted": id })))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginBody {
    #[schema(value_type = Option<String>, max_length = 64)]
    username: Option<String>,
    #[schema(value_type = Option<String>)]
    password: Option<String>,
}

/// Longest user name (characters) an account or a sign-in may have; a sign-in checks it
/// before anything else is done with the name.
const MAX_USERNAME_CHARS: usize = 64;

#[utoipa::path(
    post,
    path = "/api/login",
    tag = "people",
    security(()),
    request_body = LoginBody,
    responses((status = 200, description = "Sign in: sets the session cookie", body = Object))
)]
pub async fn login(
    hub: web::Data<Hub>,
    req: HttpRequest,
    body: Json<LoginBody>,
) -> Result<HttpResponse, HubError> {
    let body = body.0;
    let username = body.username.unwrap_or_default();
    let password = body.password.unwrap_or_default();
    if username.chars().nth(MAX_USERNAME_CHARS).is_some() {
        return Err(HubError::bad_request(format!(
            "username is at most {MAX_USERNAME_CHARS} characters"
        )));
    }
    let settings = &hub.core.settings;
    let address = client::address(&req, settings);
    let attempt = hub
        .login_throttle
        .begin(&username, &address)
        .map_err(|wait| {
            HubError::Throttled(
                format!(
                    "too many failed sign-ins for this name from this address; try again in {} s",
                    wait.as_secs().max(1)
                ),
                wait.as_secs().max(1),
            )
        })?;
    let lookup = username.clone();
    let user = crate::db::read(&hub.reads, move |conn| {
        Ok(users::table
            .filter(users::username.eq(&lookup))
            .select(UserRow::as_select())
            .get_result(conn)
            .optional()?)
    })
    .await?
    .filter(|u| u.enabled);
    // Unknown, disabled and wrong all cost one verification and the same delay, so
    // neither timing nor text tells which.
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let matches = with_hashing_slot(&hub, move || {
        let stored = stored.as_deref().unwrap_or_else(|| decoy_hash());
        PasswordHash::new(stored).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
    })
    .await?;
    let Some(user) = user.filter(|_| matches) else {
        actix_web::rt::time::sleep(Duration::from_millis(settings.login_failure_delay_ms)).await;
        return Err(HubError::Unauthorized);
    };
    hub.login_throttle.succeeded(attempt);
    // Two sessions: the browser's HttpOnly cookie, and a bearer token for scripts (seed
    // 001), so the page's script never holds what the cookie protects.
    let cookie_value = random_hex(32);
    let bearer_value = random_hex(32);
    let hashes = [hash_token(&cookie_value), hash_token(&bearer_value)];
    let expires_at =
        chrono::Utc::now() + chrono::Duration::hours(hub.core.settings.session_hours as i64);
    let (stored, user_id) = (hashes.clone(), user.id);
    hub.core
        .db
        .write(move |conn| {
            let now = now_iso();
            for hash in &stored {
                diesel::insert_into(sessions::table)
                    .values((
                        sessions::hash.eq(hash),
                        sessions::user_id.eq(user_id),
                        sessions::created_at.eq(&now),
                        sessions::expires_at.eq(iso(expires_at)),
                    ))
                    .execute(conn)?;
            }
            NewAuditRow::new(
                &format!("user:{user_id}"),
                "user.login",
                format!("user:{user_id}"),
                None,
            )
            .append(conn)?;
            Ok(())
        })
        .await?;
    for hash in hashes {
        hub.credentials.open_session(
            hash,
            Session {
                user_id: user.id,
                grant: user.grant(),
                expires_at,
            },
        );
    }
    let cookie = Cookie::build(SESSION_COOKIE, cookie_value)
        .path("/")
        .http_only(true)
        .secure(client::over_tls(&req, &hub.core.settings))
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::hours(
            hub.core.settings.session_hours as i64,
        ))
        .finish();
    let mut view = user_view(&user);
    view["expires_at"] = json!(iso(expires_at));
    view["token"] = json!(bearer_value);
    view["expires_at_ms"] = json!(expires_at.timestamp_millis());
    Ok(HttpResponse::Ok().cookie(cookie).json(view))
}

/// Ends the sessions this request presents (the cookie, and a login's bearer token sent as
/// `Authorization` or `x-api-key`), if any, and clears the cookie. 204 either way. The
/// cookie and the bearer of one login are separate sessions: each ends when it is presented
/// here or when the user's sessions are ended (disabled, password changed).
#[utoipa::path(
    post,
    path = "/api/logout",
    tag = "people",
    security(()),
    responses((status = 204, description = "Sign out: ends the cookie's session and a login bearer token's"))
)]
pub async fn logout(hub: web::Data<Hub>, req: HttpRequest) -> Result<HttpResponse, HubError> {
    // Whatever session this request presents: a bearer or x-api-key from a login, and the
    // cookie under either name.
    let bearer = super::auth::presented(&req, false);
    let cookie = super::auth::session_cookie(&req);
    let hashes: Vec<String> = cookie
        .into_iter()
        .chain(bearer)
        .map(|raw| hash_token(&raw))
        .collect();
    if !hashes.is_empty() {
        for hash in &hashes {
            hub.credentials.close_session(hash);
        }
        hub.core
            .db
            .write(move |conn| {
                // Only sessions: an agent token sent here is not revoked.
                diesel::delete(sessions::table.filter(sessions::hash.eq_any(&hashes)))
                    .execute(conn)?;
                Ok(())
            })
            .await?;
    }
    let mut expired = Cookie::build(SESSION_COOKIE, "")
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish();
    expired.make_removal();
    Ok(HttpResponse::NoContent().cookie(expired).finish())
}
