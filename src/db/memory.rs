//! Agent memory as stored: values sealed with the Vault, words indexed through the blind
//! index (`memory_index`, an FTS5 table kept in step inside the same transaction).

use crate::db::DbConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};

use super::schema::memories;
use crate::crypto::blind::BlindIndex;
use crate::crypto::Vault;
use crate::domain::now_iso;

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = memories, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct MemoryRow {
    pub id: i32,
    pub agent_id: String,
    pub key: String,
    /// Fernet token; open it with the Vault.
    pub value: String,
    pub source_task_id: Option<i32>,
    pub created_at: String,
    pub updated_at: String,
    /// The value is JSON text (written through seed 004's memory object).
    pub structured: bool,
}

/// One entry to store: a plain-text value, or JSON text (`structured`).
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub structured: bool,
    pub source_task_id: Option<i32>,
}

/// Stores or overwrites `agent_id`'s entry `key`, and re-indexes it.
pub fn upsert(
    conn: &mut DbConnection,
    vault: &Vault,
    blind: &BlindIndex,
    agent_id: &str,
    entry: Entry,
) -> QueryResult<MemoryRow> {
    let Entry {
        key,
        value,
        structured,
        source_task_id,
    } = entry;
    let now = now_iso();
    let sealed = vault.seal(value);
    let row: MemoryRow =
        crate::on_each_backend!(conn, |inner| diesel::insert_into(memories::table)
            .values((
                memories::agent_id.eq(agent_id),
                memories::key.eq(key),
                memories::value.eq(&sealed),
                memories::source_task_id.eq(source_task_id),
                memories::created_at.eq(&now),
                memories::updated_at.eq(&now),
                memories::structured.eq(structured),
            ))
            .on_conflict((memories::agent_id, memories::key))
            .do_update()
            .set((
                memories::value.eq(&sealed),
                memories::source_task_id.eq(source_task_id),
                memories::updated_at.eq(&now),
                memories::structured.eq(structured),
            ))
            .returning(crate::db::columns_of::<MemoryRow>())
            .get_result(inner))?;
    unindex(conn, row.id)?;
    crate::db::sql_query(
        conn,
        "INSERT INTO memory_index (rowid, tokens) VALUES (?, ?)",
    )
    .bind::<Integer, _>(row.id)
    .bind::<Text, _>(blind.document(agent_id, key, value))
    .execute(conn)?;
    Ok(row)
}

/// Deletes every entry of `agent_id` (before its memory object is replaced whole).
pub fn clear(conn: &mut DbConnection, agent_id: &str) -> QueryResult<usize> {
    let ids: Vec<i32> = diesel::delete(memories::table.filter(memories::agent_id.eq(agent_id)))
        .returning(memories::id)
        .get_results(conn)?;
    for id in &ids {
        unindex(conn, *id)?;
    }
    Ok(ids.len())
}

/// Deletes `agent_id`'s entry `key`; false when there was none.
pub fn delete(conn: &mut DbConnection, agent_id: &str, key: &str) -> QueryResult<bool> {
    let id: Option<i32> = diesel::delete(
        memories::table
            .filter(memories::agent_id.eq(agent_id))
            .filter(memories::key.eq(key)),
    )
    .returning(memories::id)
    .get_result(conn)
    .optional()?;
    match id {
        Some(id) => unindex(conn, id).map(|_| true),
        None => Ok(false),
    }
}

fn unindex(conn: &mut DbConnection, id: i32) -> QueryResult<usize> {
    crate::db::sql_query(conn, "DELETE FROM memory_index WHERE rowid = ?")
        .bind::<Integer, _>(id)
        .execute(conn)
}

pub fn get(conn: &mut DbConnection, agent_id: &str, key: &str) -> QueryResult<Option<MemoryRow>> {
    memories::table
        .filter(memories::agent_id.eq(agent_id))
        .filter(memories::key.eq(key))
        .select(MemoryRow::as_select())
        .get_result(conn)
        .optional()
}

/// An agent's entries, most recently updated first.
pub fn list(
    conn: &mut DbConnection,
    agent_id: &str,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<MemoryRow>> {
    memories::table
        .filter(memories::agent_id.eq(agent_id))
        .select(MemoryRow::as_select())
        .order((memories::updated_at.desc(), memories::id.desc()))
        .limit(limit)
        .offset(offset)
        .load(conn)
}

/// Entries matching a blind-index expression (`a AND (b OR c)`), best first: FTS5's
/// BM25 on SQLite, `ts_rank` over the tokens' `tsvector` on PostgreSQL.
pub fn search(
    conn: &mut DbConnection,
    expression: &str,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<MemoryRow>> {
    const COLUMNS: &str = "m.id, m.agent_id, m.key, m.value, m.source_task_id, m.created_at, m.updated_at, m.structured";
    let (sql, expression) = match conn {
        DbConnection::Sqlite(_) => (
            format!(
                "SELECT {COLUMNS} FROM memory_index JOIN memories m ON m.id = memory_index.rowid \
                 WHERE memory_index MATCH ? ORDER BY bm25(memory_index) LIMIT ? OFFSET ?"
            ),
            expression.to_string(),
        ),
        // The tokens are letters and hex digits: only the operators differ.
        DbConnection::Postgres(_) => (
            format!(
                "SELECT {COLUMNS} FROM memory_index i JOIN memories m ON m.id = i.rowid, \
                 to_tsquery('simple', ?) q WHERE i.document @@ q \
                 ORDER BY ts_rank(i.document, q) DESC, m.id LIMIT ? OFFSET ?"
            ),
            expression.replace(" AND ", " & ").replace(" OR ", " | "),
        ),
    };
    crate::db::sql_query(conn, &sql)
        .bind::<Text, _>(expression)
        .bind::<BigInt, _>(limit)
        .bind::<BigInt, _>(offset)
        .load(conn)
}
