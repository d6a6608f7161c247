//! People: user accounts (admin:users), password login into an HttpOnly session cookie
//! that every endpoint accepts per the user's role, and logout. Passwords are hashed with
//! Argon2id; a wrong one is answered after a deliberate delay, and repeated failures per
//! user name and per client address are refused with 429 for a while.

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

use super::extract::Json;
use crate::auth::{Caller, Session, SESSION_COOKIE};
use crate::crypto::tokens::{hash_token, random_hex};
use crate::db::models::{NewAuditRow, UserRow};
use crate::db::schema::{sessions, users};
use crate::domain::access::{role_permissions, ROLE_NAMES};
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

fn check_role(role: &str) -> Result<(), HubError> {
    role_permissions(role).map(drop).ok_or_else(|| {
        HubError::bad_request(format!(
            "unknown role {role:?} (expected one of {})",
            ROLE_NAMES.join(", ")
        ))
    })
}

/// Hashes a password off the async workers (Argon2 is deliberately slow).
async fn hash_password(password: String) -> Result<String, HubError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(HubError::bad_request(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    web::block(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HubError::internal(format!("argon2: {e}")))
    })
    .await?
}

#[derive(Debug, Deserialize)]
pub struct CreateUserBody {
    username: Option<String>,
    password: Option<String>,
    role: Option<String>,
    enabled: Option<bool>,
}

pub async fn create_user(
    hub: web::Data<Hub>,
    caller: Caller,
    body: Json<CreateUserBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:users")?;
    let body = body.0;
    let username = body
        .username
        .map(|u| u.trim().to_string())
        .filter(|u| (1..=64).contains(&u.len()))
        .ok_or_else(|| HubError::bad_request("username is required (1 to 64 characters)"))?;
    let role = body.role.unwrap_or_else(|| "viewer".into());
    check_role(&role)?;
    let password_hash = hash_password(
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
                .returning(UserRow::as_returning())
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

#[derive(Debug, Deserialize)]
pub struct UpdateUserBody {
    role: Option<String>,
    password: Option<String>,
    enabled: Option<bool>,
}

/// Changes role, password or enabled; any change signs the user out everywhere.
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
        check_role(role)?;
    }
    let password_hash = match body.password {
        Some(password) => Some(hash_password(password).await?),
        None => None,
    };
    let actor = caller.0.label();
    let row = hub
        .core
        .db
        .write(move |conn| {
            let row: UserRow = diesel::update(users::table.find(id))
                .set((
                    body.role.as_ref().map(|r| users::role.eq(r.clone())),
                    password_hash.map(|h| users::password_hash.eq(h)),
                    body.enabled.map(|e| users::enabled.eq(e)),
                    users::updated_at.eq(now_iso()),
                ))
                .returning(UserRow::as_returning())
                .get_result(conn)
                .optional()?
                .ok_or_else(|| HubError::not_found(format!("no user {id}")))?;
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

pub async fn delete_user(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:users")?;
    let id = user_id(&path)?;
    let actor = caller.0.label();
    hub.core
        .db
        .write(move |conn| {
            diesel::delete(sessions::table.filter(sessions::user_id.eq(id))).execute(conn)?;
            if diesel::delete(users::table.find(id)).execute(conn)? == 0 {
                return Err(HubError::not_found(format!("no user {id}")));
            }
            NewAuditRow::new(&actor, "user.delete", format!("user:{id}"), None).append(conn)?;
            Ok(())
        })
        .await?;
    hub.credentials.close_user_sessions(id);
    Ok(HttpResponse::Ok().json(json!({ "deleted": id })))
}

#[derive(Debug, Deserialize)]
pub struct LoginBody {
    username: Option<String>,
    password: Option<String>,
}

/// The same answer for an unknown user, a disabled one and a wrong password, after the
/// same delay, so neither timing nor text tells which.
async fn refuse_login(hub: &Hub, username: &str, address: &str) -> HubError {
    hub.login_failures.allow(&format!("user:{username}"));
    hub.login_failures.allow(&format!("addr:{address}"));
    actix_web::rt::time::sleep(Duration::from_millis(
        hub.core.settings.login_failure_delay_ms,
    ))
    .await;
    HubError::Unauthorized
}

pub async fn login(
    hub: web::Data<Hub>,
    req: HttpRequest,
    body: Json<LoginBody>,
) -> Result<HttpResponse, HubError> {
    let body = body.0;
    let username = body.username.unwrap_or_default();
    let password = body.password.unwrap_or_default();
    let address = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    if hub.login_failures.exhausted(&format!("user:{username}"))
        || hub.login_failures.exhausted(&format!("addr:{address}"))
    {
        return Err(HubError::TooManyRequests(
            "too many failed logins; try again in 15 minutes".into(),
        ));
    }
    let lookup = username.clone();
    let user = crate::db::read(&hub.reads, move |conn| {
        Ok(users::table
            .filter(users::username.eq(&lookup))
            .select(UserRow::as_select())
            .get_result(conn)
            .optional()?)
    })
    .await?;
    let Some(user) = user.filter(|u| u.enabled) else {
        return Err(refuse_login(&hub, &username, &address).await);
    };
    let stored = user.password_hash.clone();
    let matches = web::block(move || {
        PasswordHash::new(&stored).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
    })
    .await?;
    if !matches {
        return Err(refuse_login(&hub, &username, &address).await);
    }
    let cookie_value = random_hex(32);
    let hash = hash_token(&cookie_value);
    let expires_at =
        chrono::Utc::now() + chrono::Duration::hours(hub.core.settings.session_hours as i64);
    let (stored_hash, user_id) = (hash.clone(), user.id);
    hub.core
        .db
        .write(move |conn| {
            let now = now_iso();
            diesel::insert_into(sessions::table)
                .values((
                    sessions::hash.eq(&stored_hash),
                    sessions::user_id.eq(user_id),
                    sessions::created_at.eq(&now),
                    sessions::expires_at.eq(iso(expires_at)),
                ))
                .execute(conn)?;
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
    hub.credentials.open_session(
        hash,
        Session {
            user_id: user.id,
            grant: user.grant(),
            expires_at,
        },
    );
    let cookie = Cookie::build(SESSION_COOKIE, cookie_value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::hours(
            hub.core.settings.session_hours as i64,
        ))
        .finish();
    let mut view = user_view(&user);
    view["expires_at"] = json!(iso(expires_at));
    Ok(HttpResponse::Ok().cookie(cookie).json(view))
}

/// Ends the session of the cookie sent, if any, and clears the cookie.
pub async fn logout(hub: web::Data<Hub>, req: HttpRequest) -> Result<HttpResponse, HubError> {
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        let hash = hash_token(cookie.value());
        hub.credentials.close_session(&hash);
        hub.core
            .db
            .write(move |conn| {
                diesel::delete(sessions::table.find(&hash)).execute(conn)?;
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
    Ok(HttpResponse::Ok()
        .cookie(expired)
        .json(json!({ "ok": true })))
}
