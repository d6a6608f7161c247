//! Idempotency keys as stored: one row per (caller and route, key), written in the
//! transaction of the create it answers, so a crash never leaves a task without its key
//! nor a key without its task. Two concurrent creates with one key meet at the primary
//! key: the second one's transaction fails and rolls back, and it answers the first's.

use crate::db::DbConnection;
use diesel::prelude::*;

use super::schema::idempotency_keys;
use crate::domain::now_iso;
use crate::error::HubError;

/// A create that carries a key: who sent it where, the key, and its request's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub scope: String,
    pub key: String,
    pub request_hash: String,
}

/// The answer recorded for a key.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = idempotency_keys, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct Recorded {
    pub request_hash: String,
    pub status: i32,
    /// Sealed JSON.
    pub response: String,
}

/// The answer recorded for `claim` since `since` (an older one is forgotten).
pub fn lookup(
    conn: &mut DbConnection,
    claim: &Claim,
    since: &str,
) -> QueryResult<Option<Recorded>> {
    idempotency_keys::table
        .find((&claim.scope, &claim.key))
        .filter(idempotency_keys::created_at.ge(since))
        .select(Recorded::as_select())
        .first(conn)
        .optional()
}

/// Records the answer of `claim`'s create, inside its transaction: one insert. A record
/// of the key older than `since` is replaced; a live one is a conflict (the create rolls
/// back and its caller reads the recorded answer).
pub fn record(
    conn: &mut DbConnection,
    claim: &Claim,
    status: u16,
    sealed_response: String,
    since: &str,
) -> Result<(), HubError> {
    let row = (
        idempotency_keys::scope.eq(&claim.scope),
        idempotency_keys::key.eq(&claim.key),
        idempotency_keys::request_hash.eq(&claim.request_hash),
        idempotency_keys::status.eq(i32::from(status)),
        idempotency_keys::response.eq(sealed_response),
        idempotency_keys::created_at.eq(now_iso()),
    );
    // ON CONFLICT rather than a caught unique violation: on PostgreSQL a failed statement
    // spoils the rest of its transaction.
    let recorded =
        crate::on_each_backend!(conn, |inner| diesel::insert_into(idempotency_keys::table)
            .values(row.clone())
            .on_conflict_do_nothing()
            .execute(inner))?;
    if recorded == 1 {
        return Ok(());
    }
    // The key was used before: past its retention (and not swept yet) it is free again.
    let expired = diesel::delete(
        idempotency_keys::table
            .find((&claim.scope, &claim.key))
            .filter(idempotency_keys::created_at.lt(since)),
    )
    .execute(conn)?;
    if expired == 0 {
        return Err(HubError::conflict(format!(
            "Idempotency-Key {:?} is in use",
            claim.key
        )));
    }
    diesel::insert_into(idempotency_keys::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Forgets at most `batch` records older than `since`; how many it forgot.
pub fn forget_expired(conn: &mut DbConnection, since: &str, batch: i64) -> QueryResult<usize> {
    let oldest = idempotency_keys::table
        .filter(idempotency_keys::created_at.lt(since))
        .select(idempotency_keys::key)
        .limit(batch);
    // (scope, key) is the key; a key names at most a few scopes, so a batch can run over
    // its size by those few and nothing else.
    let keys: Vec<String> = oldest.load(conn)?;
    diesel::delete(
        idempotency_keys::table
            .filter(idempotency_keys::created_at.lt(since))
            .filter(idempotency_keys::key.eq_any(keys)),
    )
    .execute(conn)
}
