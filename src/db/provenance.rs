//! Provenance links as stored: appended inside the transaction of the change they record,
//! read back for `GET /api/tasks/{id}/provenance`, and checked link by link.

use crate::db::DbConnection;
use diesel::prelude::*;
use serde::Serialize;
use serde_json::Value;

use super::schema::provenance;
use crate::crypto::provenance::{LinkBody, Notary, GENESIS};
use crate::domain::now_iso;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize)]
// Without defaults the insert's SQL never varies, so its prepared statement is reused.
#[diesel(table_name = provenance, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
#[diesel(treat_none_as_default_value = false)]
pub struct Link {
    #[diesel(skip_insertion)]
    #[serde(skip)]
    pub id: i32,
    pub task_id: i32,
    pub seq: i32,
    pub action: String,
    pub actor: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
    pub created_at: String,
}

impl Link {
    fn body(&self) -> LinkBody<'_> {
        LinkBody {
            task_id: self.task_id,
            seq: self.seq,
            action: &self.action,
            actor: &self.actor,
            detail: &self.detail,
            created_at: &self.created_at,
            prev_hash: &self.prev_hash,
        }
    }
}

/// One link to write: what happened, who did it, and the facts it vouches for.
pub struct Entry<'a> {
    pub action: &'a str,
    pub actor: &'a str,
    pub detail: Value,
}

/// Appends the next link of `task_id`'s chain (call inside the change's transaction).
pub fn append(
    conn: &mut DbConnection,
    notary: &Notary,
    task_id: i32,
    action: &str,
    actor: &str,
    detail: Value,
) -> QueryResult<()> {
    let last: Option<(i32, String)> = provenance::table
        .filter(provenance::task_id.eq(task_id))
        .order(provenance::seq.desc())
        .select((provenance::seq, provenance::hash))
        .first(conn)
        .optional()?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (0, GENESIS.to_string()),
    };
    write_links(
        conn,
        notary,
        task_id,
        seq,
        prev_hash,
        [Entry {
            action,
            actor,
            detail,
        }],
    )
}

/// Writes the first links of a new task's chain (no lookup: there is nothing before them).
pub fn begin<'a>(
    conn: &mut DbConnection,
    notary: &Notary,
    task_id: i32,
    entries: impl IntoIterator<Item = Entry<'a>>,
) -> QueryResult<()> {
    write_links(conn, notary, task_id, 0, GENESIS.to_string(), entries)
}

fn write_links<'a>(
    conn: &mut DbConnection,
    notary: &Notary,
    task_id: i32,
    first_seq: i32,
    mut prev_hash: String,
    entries: impl IntoIterator<Item = Entry<'a>>,
) -> QueryResult<()> {
    let created_at = now_iso();
    for (offset, entry) in entries.into_iter().enumerate() {
        let mut link = Link {
            id: 0,
            task_id,
            seq: first_seq + offset as i32,
            action: entry.action.to_string(),
            actor: entry.actor.to_string(),
            detail: entry.detail.to_string(),
            prev_hash,
            hash: String::new(),
            created_at: created_at.clone(),
        };
        link.hash = notary.sign(&link.body());
        // One row at a time: the single-row insert is one prepared statement, reused.
        crate::on_each_backend!(conn, |inner| diesel::insert_into(provenance::table)
            .values(&link)
            .execute(inner))?;
        prev_hash = link.hash;
    }
    Ok(())
}

pub fn chain(conn: &mut DbConnection, task_id: i32) -> QueryResult<Vec<Link>> {
    provenance::table
        .filter(provenance::task_id.eq(task_id))
        .order(provenance::seq)
        .select(Link::as_select())
        .load(conn)
}

/// The first link that does not hold, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    pub seq: i32,
    pub reason: &'static str,
}

/// Checks a chain from its first link: sequence, linkage and every signature.
pub fn check(notary: &Notary, links: &[Link]) -> Result<(), Broken> {
    let mut prev = GENESIS;
    for (expected_seq, link) in links.iter().enumerate() {
        let broken = |reason| {
            Err(Broken {
                seq: link.seq,
                reason,
            })
        };
        if link.seq != expected_seq as i32 {
            return broken("a link is missing or out of order");
        }
        if link.prev_hash != prev {
            return broken("the link does not follow the previous one");
        }
        if !notary.verify(&link.body(), &link.hash) {
            return broken("the link's signature does not match its content");
        }
        prev = &link.hash;
    }
    Ok(())
}
