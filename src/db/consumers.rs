//! Consumer leases (seed 002): the one process allowed to act for an agent that pulls its
//! inbox. A pull without a consumer id opens a new lease, fencing the old one; each write
//! the agent makes checks the lease inside its own transaction, so on the single writer a
//! lease change and a write can never interleave.

use crate::db::DbConnection;
use chrono::Utc;
use diesel::prelude::*;

use super::schema::consumer_leases;
use crate::crypto::tokens::random_hex;
use crate::domain::onboarding::{fence, ConsumerFence};
use crate::domain::{iso, now_iso};
use crate::error::HubError;

/// The agent's lease as (consumer id, still live).
fn lease_of(conn: &mut DbConnection, agent_id: &str) -> QueryResult<Option<(String, bool)>> {
    let now = now_iso();
    let row: Option<(String, String)> = consumer_leases::table
        .find(agent_id)
        .select((consumer_leases::consumer_id, consumer_leases::expires_at))
        .first(conn)
        .optional()?;
    Ok(row.map(|(consumer, expires_at)| (consumer, expires_at > now)))
}

/// The fence of one write: 409 `stale consumer` unless it carries the live lease's id (or
/// carries none while no lease is live). A write that is not an agent's own (`None`:
/// people, the master) is not fenced.
pub fn check(conn: &mut DbConnection, write: Option<&ConsumerFence>) -> Result<(), HubError> {
    let Some(write) = write else {
        return Ok(());
    };
    fenced(conn, &write.agent_id, write.consumer_id.as_deref())
}

/// The domain's fence rule against `agent_id`'s lease as stored.
fn fenced(
    conn: &mut DbConnection,
    agent_id: &str,
    presented: Option<&str>,
) -> Result<(), HubError> {
    let lease = lease_of(conn, agent_id)?;
    fence(
        lease.as_ref().map(|(id, live)| (id.as_str(), *live)),
        presented,
    )
}

/// A pull's lease: renews the live lease it names (409 `stale consumer` for any other id)
/// or, without one, opens a new lease that fences every earlier one. It lives `lives` from
/// now. Answers the consumer id.
pub fn pull_lease(
    conn: &mut DbConnection,
    agent_id: &str,
    presented: Option<&str>,
    lives: chrono::Duration,
) -> Result<String, HubError> {
    let now = Utc::now();
    let expires_at = iso(now + lives);
    if let Some(sent) = presented {
        fenced(conn, agent_id, Some(sent))?;
        diesel::update(consumer_leases::table.find(agent_id))
            .set(consumer_leases::expires_at.eq(&expires_at))
            .execute(conn)?;
        return Ok(sent.to_string());
    }
    let consumer = format!("mc_{}", random_hex(16));
    let lease = (
        consumer_leases::consumer_id.eq(&consumer),
        consumer_leases::opened_at.eq(iso(now)),
        consumer_leases::expires_at.eq(&expires_at),
    );
    crate::on_each_backend!(conn, |inner| diesel::insert_into(consumer_leases::table)
        .values((consumer_leases::agent_id.eq(agent_id), lease.clone()))
        .on_conflict(consumer_leases::agent_id)
        .do_update()
        .set(lease)
        .execute(inner))?;
    Ok(consumer)
}

/// Forgets an agent's lease (the agent was deleted).
pub fn clear(conn: &mut DbConnection, agent_id: &str) -> QueryResult<usize> {
    diesel::delete(consumer_leases::table.find(agent_id)).execute(conn)
}
