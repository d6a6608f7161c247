//! Seed 002's onboarding as stored: registration tokens, preregistrations (found by the
//! SHA-256 of their verification or device code, never by the codes), the credentials of
//! agents that joined this way, and credential rotation. Every function runs inside the
//! caller's transaction, so each check and the change it guards are one atomic step.

use crate::db::DbConnection;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::json;

use super::models::{NewAgentRow, NewAuditRow, TokenRow};
use super::schema::{agent_credentials, agent_preregistrations, registration_tokens, tokens};
use crate::crypto::tokens::{
    hash_token, new_secret, RECOVERY_CREDENTIAL_PREFIX, RUNTIME_CREDENTIAL_PREFIX,
};
use crate::domain::access::role_permissions;
use crate::domain::onboarding::{bind_matches, poll_pace, PreregistrationStatus};
use crate::domain::{iso, now_iso};
use crate::error::HubError;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = registration_tokens, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct RegistrationTokenRow {
    pub id: i32,
    pub hash: String,
    pub name: Option<String>,
    pub role: String,
    /// JSON array.
    pub capabilities: String,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: String,
    pub used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl RegistrationTokenRow {
    /// `active`, `used`, `revoked` or `expired`.
    pub fn status(&self, now: &str) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.used_at.is_some() {
            "used"
        } else if self.expires_at.as_str() <= now {
            "expired"
        } else {
            "active"
        }
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = registration_tokens)]
pub struct NewRegistrationToken {
    pub hash: String,
    pub name: Option<String>,
    pub role: String,
    pub capabilities: String,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = agent_preregistrations, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct PreregistrationRow {
    pub id: i32,
    pub verification_hash: String,
    pub device_hash: String,
    pub bind_hash: String,
    pub registration_token_id: i32,
    pub requested_name: String,
    pub requested_category: Option<String>,
    pub requested_runtime_type: String,
    /// JSON array.
    pub requested_skills: String,
    pub status: String,
    pub created_at: String,
    pub expires_at: String,
    pub decided_at: Option<String>,
    pub decided_by: Option<String>,
    pub agent_id: Option<String>,
    pub last_polled_at: Option<String>,
    pub poll_interval: i32,
}

impl PreregistrationRow {
    pub fn state(&self) -> PreregistrationStatus {
        PreregistrationStatus::parse(&self.status).unwrap_or(PreregistrationStatus::Denied)
    }

    pub fn expired(&self, now: &str) -> bool {
        self.expires_at.as_str() <= now
    }

    /// What a poll (and the owners' list) shows: `pending`, `approved`, `denied` or
    /// `expired`.
    pub fn shown_status(&self, now: &str) -> &'static str {
        self.state().polled(self.expired(now))
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = agent_preregistrations)]
pub struct NewPreregistration {
    pub verification_hash: String,
    pub device_hash: String,
    pub bind_hash: String,
    pub requested_name: String,
    pub requested_category: Option<String>,
    pub requested_runtime_type: String,
    pub requested_skills: String,
    pub poll_interval: i32,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = agent_credentials, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct AgentCredentialRow {
    pub agent_id: String,
    pub runtime_hash: String,
    pub recovery_hash: String,
    pub credential_version: i32,
    pub runtime_type: String,
    pub category: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    /// JSON array.
    pub skills: String,
    pub created_at: String,
    pub updated_at: String,
}

/// Stores a new registration token with its audit row.
pub fn issue_registration_token(
    conn: &mut DbConnection,
    new: &NewRegistrationToken,
) -> QueryResult<RegistrationTokenRow> {
    let row: RegistrationTokenRow = diesel::insert_into(registration_tokens::table)
        .values(new)
        .returning(crate::db::columns_of::<RegistrationTokenRow>())
        .get_result(conn)?;
    let detail = json!({ "role": row.role, "expires_at": row.expires_at });
    NewAuditRow::new(
        &row.created_by,
        "registration_token.issue",
        format!("registration:{}", row.id),
        Some(detail),
    )
    .append(conn)?;
    Ok(row)
}

/// The 200 newest registration tokens.
pub fn registration_tokens(conn: &mut DbConnection) -> QueryResult<Vec<RegistrationTokenRow>> {
    registration_tokens::table
        .select(RegistrationTokenRow::as_select())
        .order(registration_tokens::id.desc())
        .limit(200)
        .load(conn)
}

/// Revokes a registration token not yet used or revoked (404 unknown, 409 otherwise).
pub fn revoke_registration_token(
    conn: &mut DbConnection,
    id: i32,
    by: &str,
) -> Result<(), HubError> {
    let row = registration_token(conn, id)
        .optional()?
        .ok_or_else(|| HubError::not_found(format!("no registration token {id}")))?;
    let now = now_iso();
    if let status @ ("used" | "revoked") = row.status(&now) {
        return Err(HubError::conflict(format!(
            "registration token {id} is already {status}"
        )));
    }
    diesel::update(registration_tokens::table.find(id))
        .set(registration_tokens::revoked_at.eq(&now))
        .execute(conn)?;
    NewAuditRow::new(
        by,
        "registration_token.revoke",
        format!("registration:{id}"),
        None,
    )
    .append(conn)?;
    Ok(())
}

/// Every pending preregistration (oldest first), then the 100 newest others.
pub fn preregistrations(conn: &mut DbConnection) -> QueryResult<Vec<PreregistrationRow>> {
    use agent_preregistrations as p;
    let now = now_iso();
    let mut list: Vec<PreregistrationRow> = p::table
        .filter(p::status.eq(PreregistrationStatus::Pending.as_str()))
        .filter(p::expires_at.gt(&now))
        .select(PreregistrationRow::as_select())
        .order(p::id.asc())
        .load(conn)?;
    let others: Vec<PreregistrationRow> = p::table
        .filter(
            p::status
                .ne(PreregistrationStatus::Pending.as_str())
                .or(p::expires_at.le(&now)),
        )
        .select(PreregistrationRow::as_select())
        .order(p::id.desc())
        .limit(100)
        .load(conn)?;
    list.extend(others);
    Ok(list)
}

/// The seed 002 identity of an agent, if it joined by onboarding.
pub fn credentials_of(
    conn: &mut DbConnection,
    agent_id: &str,
) -> QueryResult<Option<AgentCredentialRow>> {
    agent_credentials::table
        .find(agent_id)
        .select(AgentCredentialRow::as_select())
        .first(conn)
        .optional()
}

/// What an agent changes of its own description; `None` leaves a field as it is.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = agent_credentials)]
pub struct Description {
    pub description: Option<Option<String>>,
    pub display_name: Option<Option<String>>,
    /// JSON array.
    pub skills: Option<String>,
    pub updated_at: Option<String>,
}

/// Applies an agent's change of its own description, with its audit row; `None` for an
/// agent that did not join by onboarding.
pub fn describe(
    conn: &mut DbConnection,
    agent_id: &str,
    change: Description,
) -> QueryResult<Option<AgentCredentialRow>> {
    let change = Description {
        updated_at: Some(now_iso()),
        ..change
    };
    let Some(row) = diesel::update(agent_credentials::table.find(agent_id))
        .set(&change)
        .returning(crate::db::columns_of::<AgentCredentialRow>())
        .get_result(conn)
        .optional()?
    else {
        return Ok(None);
    };
    NewAuditRow::new(
        agent_id,
        "agent.describe",
        format!("agent:{agent_id}"),
        None,
    )
    .append(conn)?;
    Ok(Some(row))
}

/// How a path names a preregistration: its verification code (hashed for the lookup) or,
/// from the owners' list, its numeric id. Codes are letters only, so the two never collide.
pub enum PreregistrationKey {
    Id(i32),
    VerificationHash(String),
}

pub fn find_preregistration(
    conn: &mut DbConnection,
    key: &PreregistrationKey,
) -> QueryResult<Option<PreregistrationRow>> {
    let query = agent_preregistrations::table
        .select(PreregistrationRow::as_select())
        .into_boxed();
    match key {
        PreregistrationKey::Id(id) => query.filter(agent_preregistrations::id.eq(id)),
        PreregistrationKey::VerificationHash(hash) => {
            query.filter(agent_preregistrations::verification_hash.eq(hash))
        }
    }
    .first(conn)
    .optional()
}

/// Uses the registration token whose hash is `token_hash` (401 naming why it cannot be
/// used) and stores the preregistration it admits, pending until `expires_at`.
pub fn preregister(
    conn: &mut DbConnection,
    token_hash: &str,
    new: NewPreregistration,
    expires_at: String,
) -> Result<PreregistrationRow, HubError> {
    let now = now_iso();
    let token: RegistrationTokenRow = registration_tokens::table
        .filter(registration_tokens::hash.eq(token_hash))
        .select(RegistrationTokenRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| HubError::unauthorized("unknown registration token"))?;
    match token.status(&now) {
        "active" => {}
        "used" => {
            return Err(HubError::unauthorized(
                "registration token already used: ask the owner for a new one",
            ))
        }
        "revoked" => return Err(HubError::unauthorized("registration token revoked")),
        _ => return Err(HubError::unauthorized("registration token expired")),
    }
    let name_taken = agent_preregistrations::table
        .filter(agent_preregistrations::requested_name.eq(&new.requested_name))
        .filter(agent_preregistrations::status.eq_any(["pending", "approved"]))
        .filter(agent_preregistrations::expires_at.gt(&now))
        .count()
        .get_result::<i64>(conn)?
        > 0;
    if name_taken {
        return Err(HubError::conflict(format!(
            "agent name {:?} is already requested by a pending preregistration",
            new.requested_name
        )));
    }
    diesel::update(registration_tokens::table.find(token.id))
        .set(registration_tokens::used_at.eq(&now))
        .execute(conn)?;
    let row: PreregistrationRow = diesel::insert_into(agent_preregistrations::table)
        .values((
            &new,
            agent_preregistrations::registration_token_id.eq(token.id),
            agent_preregistrations::status.eq(PreregistrationStatus::Pending.as_str()),
            agent_preregistrations::created_at.eq(&now),
            agent_preregistrations::expires_at.eq(expires_at),
        ))
        .returning(crate::db::columns_of::<PreregistrationRow>())
        .get_result(conn)?;
    let detail =
        json!({ "registration_token": token.id, "runtime_type": row.requested_runtime_type });
    NewAuditRow::new(
        &format!("registration:{}", token.id),
        "agent.preregister",
        format!("preregistration:{}", row.id),
        Some(detail),
    )
    .append(conn)?;
    Ok(row)
}

/// Approves or denies a pending preregistration; the first decision wins. Repeating the
/// decision it got answers the settled row (`false`: nothing changed); the other decision,
/// or any decision once it expired or was finalized, is a 409 naming its state. An
/// approval gives the device `ttl` from now to finalize.
pub fn decide(
    conn: &mut DbConnection,
    key: &PreregistrationKey,
    approve: bool,
    by: &str,
    ttl: chrono::Duration,
) -> Result<(PreregistrationRow, bool), HubError> {
    let now = Utc::now();
    let now_text = iso(now);
    let row = find_preregistration(conn, key)?
        .ok_or_else(|| HubError::not_found("no such preregistration"))?;
    let wanted = if approve {
        PreregistrationStatus::Approved
    } else {
        PreregistrationStatus::Denied
    };
    let shown = row.shown_status(&now_text);
    let expired = row.expired(&now_text);
    match (row.state(), approve) {
        (PreregistrationStatus::Pending, _) if !expired => {}
        // The decision it already got, and still stands by: answered as it is.
        (PreregistrationStatus::Approved, true) if !expired => return Ok((row, false)),
        (PreregistrationStatus::Activated, true) | (PreregistrationStatus::Denied, false) => {
            return Ok((row, false))
        }
        _ => {
            return Err(HubError::conflict(format!(
                "preregistration {} is already {shown}{}",
                row.id,
                row.decided_by
                    .as_deref()
                    .map(|by| format!(" (by {by})"))
                    .unwrap_or_default()
            )))
        }
    }
    let expires_at = if approve {
        iso(now + ttl)
    } else {
        row.expires_at.clone()
    };
    let row: PreregistrationRow = diesel::update(agent_preregistrations::table.find(row.id))
        .set((
            agent_preregistrations::status.eq(wanted.as_str()),
            agent_preregistrations::decided_at.eq(&now_text),
            agent_preregistrations::decided_by.eq(by),
            agent_preregistrations::expires_at.eq(expires_at),
        ))
        .returning(crate::db::columns_of::<PreregistrationRow>())
        .get_result(conn)?;
    let action = if approve {
        "agent.approve"
    } else {
        "agent.deny"
    };
    let detail = json!({ "requested_name": row.requested_name });
    NewAuditRow::new(
        by,
        action,
        format!("preregistration:{}", row.id),
        Some(detail),
    )
    .append(conn)?;
    Ok((row, true))
}

/// A device's poll: 404 for an unknown device code; else the row as it stands, and
/// whether the device polled faster than its interval (which then grows by five seconds).
pub fn poll(conn: &mut DbConnection, device_hash: &str) -> Result<Polled, HubError> {
    let now = Utc::now();
    let row: PreregistrationRow = agent_preregistrations::table
        .filter(agent_preregistrations::device_hash.eq(device_hash))
        .select(PreregistrationRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| HubError::not_found("unknown device code"))?;
    let last = row
        .last_polled_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let pace = poll_pace(last, now, row.poll_interval);
    let row = diesel::update(agent_preregistrations::table.find(row.id))
        .set((
            agent_preregistrations::last_polled_at.eq(iso(now)),
            agent_preregistrations::poll_interval.eq(pace.err().unwrap_or(row.poll_interval)),
        ))
        .returning(crate::db::columns_of::<PreregistrationRow>())
        .get_result(conn)?;
    Ok(Polled {
        row,
        slow_down: pace.is_err(),
    })
}

pub struct Polled {
    pub row: PreregistrationRow,
    pub slow_down: bool,
}

/// The preregistration a finalize names by both its codes (404 when they name none).
pub fn finalizing(
    conn: &mut DbConnection,
    verification_hash: &str,
    device_hash: &str,
) -> Result<PreregistrationRow, HubError> {
    agent_preregistrations::table
        .filter(agent_preregistrations::verification_hash.eq(verification_hash))
        .filter(agent_preregistrations::device_hash.eq(device_hash))
        .select(PreregistrationRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| {
            HubError::not_found("verificationCode and deviceCode name no preregistration")
        })
}

/// The registration token a preregistration used.
pub fn registration_token(conn: &mut DbConnection, id: i32) -> QueryResult<RegistrationTokenRow> {
    registration_tokens::table
        .find(id)
        .select(RegistrationTokenRow::as_select())
        .first(conn)
}

/// Whether `row` may be finalized now with `bind_secret`: approved, unexpired, not yet
/// finalized (a 400 naming the agent and the way to recover its credentials), and bound to
/// the secret given at preregistration.
pub fn check_finalizable(row: &PreregistrationRow, bind_secret: &str) -> Result<(), HubError> {
    let now = now_iso();
    match row.state() {
        PreregistrationStatus::Activated => {
            return Err(HubError::bad_request(format!(
                "this preregistration was already finalized as agent {}: its credentials are shown once; \
                 get a fresh runtime credential with POST /api/v1/agent-auth/runtime-recover",
                row.agent_id.as_deref().unwrap_or("?")
            )))
        }
        PreregistrationStatus::Denied => {
            return Err(HubError::forbidden("the owner denied this preregistration"))
        }
        _ if row.expired(&now) => {
            return Err(HubError::conflict(
                "this preregistration expired: register again with a new registration token",
            ))
        }
        PreregistrationStatus::Pending => {
            return Err(HubError::conflict(
                "not approved yet: poll POST /api/v1/agent-preregistrations/poll until status is approved",
            ))
        }
        PreregistrationStatus::Approved => {}
    }
    if !bind_matches(bind_secret, &row.bind_hash) {
        return Err(HubError::unauthorized(
            "bindSecret does not match the one given at preregistration",
        ));
    }
    Ok(())
}

/// What a finalize stores beside the new agent's row.
pub struct Activation {
    pub preregistration_id: i32,
    pub bind_secret: String,
    /// The runtime credential's `tokens` row.
    pub runtime: TokenRow,
    pub credentials: AgentCredentialRow,
}

/// A finalize made ready: the new agent's row, what its transaction also stores, and the
/// two credentials shown once.
pub struct Prepared {
    pub agent: NewAgentRow,
    pub activation: Activation,
    pub runtime: String,
    pub recovery: String,
}

/// Prepares the finalize of an approved `row`, admitted by `token`. The agent takes its
/// requested name as its agent_id, the token's capabilities (or, with none, the skills it
/// asked for) and the token's role for its runtime credential.
pub fn prepare_activation(
    row: &PreregistrationRow,
    token: &RegistrationTokenRow,
    bind_secret: String,
) -> Prepared {
    let granted: Vec<String> = serde_json::from_str(&token.capabilities).unwrap_or_default();
    let capabilities = if granted.is_empty() {
        serde_json::from_str(&row.requested_skills).unwrap_or_default()
    } else {
        granted
    };
    let permissions = role_permissions(&token.role).unwrap_or_default();
    let by = format!("preregistration:{}", row.id);
    let agent_id = row.requested_name.clone();
    let (runtime, runtime_row) = runtime_token(
        &agent_id,
        Some(token.role.clone()),
        json!(permissions).to_string(),
        &by,
    );
    let recovery = new_secret(RECOVERY_CREDENTIAL_PREFIX);
    let now = now_iso();
    let credentials = AgentCredentialRow {
        agent_id: agent_id.clone(),
        runtime_hash: runtime_row.hash.clone(),
        recovery_hash: hash_token(&recovery),
        credential_version: 1,
        runtime_type: row.requested_runtime_type.clone(),
        category: row.requested_category.clone(),
        display_name: None,
        description: None,
        skills: row.requested_skills.clone(),
        created_at: now.clone(),
        updated_at: now.clone(),
    };
    let config = json!({ "runtimeType": row.requested_runtime_type }).to_string();
    let agent = NewAgentRow {
        capabilities: json!(capabilities).to_string(),
        ..NewAgentRow::offline(
            agent_id.clone(),
            agent_id,
            row.requested_category.clone(),
            config,
        )
    };
    Prepared {
        agent,
        activation: Activation {
            preregistration_id: row.id,
            bind_secret,
            runtime: runtime_row,
            credentials,
        },
        runtime,
        recovery,
    }
}

/// A new runtime credential for `agent_id` and its `tokens` row.
fn runtime_token(
    agent_id: &str,
    role: Option<String>,
    permissions: String,
    by: &str,
) -> (String, TokenRow) {
    let raw = new_secret(RUNTIME_CREDENTIAL_PREFIX);
    let row = TokenRow {
        hash: hash_token(&raw),
        agent_id: agent_id.to_string(),
        name: "runtime credential".into(),
        role,
        permissions,
        created_at: now_iso(),
        created_by: by.to_string(),
        revoked_at: None,
        revoked_by: None,
    };
    (raw, row)
}

/// Revokes the token whose hash is `hash`, if it is still active.
fn revoke_token(conn: &mut DbConnection, hash: &str, by: &str) -> QueryResult<usize> {
    diesel::update(
        tokens::table
            .find(hash)
            .filter(tokens::revoked_at.is_null()),
    )
    .set((tokens::revoked_at.eq(now_iso()), tokens::revoked_by.eq(by)))
    .execute(conn)
}

/// Finalizes a preregistration inside the transaction that creates its agent: checks it
/// again (a second finalize racing this one finds it activated), then stores the runtime
/// credential and the agent's seed 002 identity.
pub fn activate(conn: &mut DbConnection, activation: Activation) -> Result<(), HubError> {
    let row = find_preregistration(conn, &PreregistrationKey::Id(activation.preregistration_id))?
        .ok_or_else(|| HubError::not_found("no such preregistration"))?;
    check_finalizable(&row, &activation.bind_secret)?;
    let agent_id = &activation.credentials.agent_id;
    diesel::update(agent_preregistrations::table.find(row.id))
        .set((
            agent_preregistrations::status.eq(PreregistrationStatus::Activated.as_str()),
            agent_preregistrations::agent_id.eq(agent_id),
        ))
        .execute(conn)?;
    diesel::insert_into(tokens::table)
        .values(&activation.runtime)
        .execute(conn)?;
    diesel::insert_into(agent_credentials::table)
        .values(&activation.credentials)
        .execute(conn)?;
    let detail = json!({ "preregistration": row.id, "role": activation.runtime.role });
    NewAuditRow::new(
        &format!("preregistration:{}", row.id),
        "agent.activate",
        format!("agent:{agent_id}"),
        Some(detail),
    )
    .append(conn)?;
    Ok(())
}

/// Forgets the seed 002 identity of a deleted agent: its recovery credential and profile,
/// and its runtime credential, revoked (answered, for the credential index).
pub fn forget(conn: &mut DbConnection, agent_id: &str, by: &str) -> QueryResult<Option<String>> {
    let runtime: Option<String> = diesel::delete(agent_credentials::table.find(agent_id))
        .returning(agent_credentials::runtime_hash)
        .get_result(conn)
        .optional()?;
    if let Some(hash) = &runtime {
        revoke_token(conn, hash, by)?;
    }
    Ok(runtime)
}

/// A new runtime credential, the old one revoked in the same transaction.
pub struct Rotated {
    pub raw: String,
    pub version: i32,
    pub revoked: String,
    pub row: TokenRow,
}

/// Rotates `agent_id`'s runtime credential. With `recovery`, the caller proves itself with
/// the recovery credential (401 on a mismatch, or for an agent that has none, alike);
/// without, an owner rotates it (404 for an agent that did not join by onboarding).
pub fn rotate_runtime(
    conn: &mut DbConnection,
    agent_id: &str,
    by: &str,
    recovery: Option<&str>,
) -> Result<Rotated, HubError> {
    let refused = || HubError::unauthorized("invalid agentId or recoveryCredential");
    let credentials = match (credentials_of(conn, agent_id)?, recovery) {
        (Some(found), Some(raw)) => {
            let sent = crate::crypto::tokens::token_digest(raw);
            let stored: [u8; 32] = hex::decode(&found.recovery_hash)
                .ok()
                .and_then(|d| d.try_into().ok())
                .ok_or_else(refused)?;
            if !crate::crypto::tokens::digests_match(&sent, &stored) {
                return Err(refused());
            }
            found
        }
        (Some(found), None) => found,
        (None, Some(_)) => return Err(refused()),
        (None, None) => {
            return Err(HubError::not_found(format!(
                "agent {agent_id} did not join by onboarding; issue it a token with POST /api/admin/tokens"
            )))
        }
    };
    let old: Option<TokenRow> = tokens::table
        .find(&credentials.runtime_hash)
        .select(TokenRow::as_select())
        .first(conn)
        .optional()?;
    revoke_token(conn, &credentials.runtime_hash, by)?;
    // The new credential holds what the old one held.
    let (role, permissions) = match old {
        Some(old) => (old.role, old.permissions),
        None => {
            let worker = role_permissions("worker").unwrap_or_default();
            (Some("worker".into()), json!(worker).to_string())
        }
    };
    let (raw, row) = runtime_token(agent_id, role, permissions, by);
    diesel::insert_into(tokens::table)
        .values(&row)
        .execute(conn)?;
    let version = credentials.credential_version + 1;
    diesel::update(agent_credentials::table.find(agent_id))
        .set((
            agent_credentials::runtime_hash.eq(&row.hash),
            agent_credentials::credential_version.eq(version),
            agent_credentials::updated_at.eq(now_iso()),
        ))
        .execute(conn)?;
    let detail = json!({ "credential_version": version, "recovered": recovery.is_some() });
    NewAuditRow::new(
        by,
        "agent.credential_rotate",
        format!("agent:{agent_id}"),
        Some(detail),
    )
    .append(conn)?;
    Ok(Rotated {
        raw,
        version,
        revoked: credentials.runtime_hash,
        row,
    })
}
