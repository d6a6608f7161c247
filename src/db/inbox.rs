//! Messages and the per-agent inbox. A message is one row (channel chat, or direct when it
//! has a recipient); whatever is addressed to one agent (a direct message, a wake notice, a
//! task it now holds) is also an inbox item, written in the same transaction, which the
//! agent's polls read and its own reads acknowledge.

use std::cell::{Cell, RefCell};

use crate::db::DbConnection;
use diesel::prelude::*;

use super::models::MessageRow;
use super::schema::{inbox_items, messages};
use crate::crypto::Vault;
use crate::domain::now_iso;

/// What an inbox item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxKind {
    /// A direct message.
    Message,
    /// A task the agent now holds.
    Task,
    /// An operator's wake notice (a message of type `wake`).
    Wake,
    /// A decision on an approval the agent asked for (its task).
    Approval,
    /// A task the agent held was cancelled: stop working on it.
    Cancel,
}

impl InboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Task => "task",
            Self::Wake => "wake",
            Self::Approval => "approval",
            Self::Cancel => "cancel",
        }
    }
}

/// A message to store; its content is sealed on insert.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub sender: String,
    pub sender_type: String,
    /// Set for a direct message, which also lands in the recipient's inbox.
    pub recipient: Option<String>,
    pub channel: String,
    pub content: String,
    pub message_type: Option<String>,
}

impl NewMessage {
    /// Stores the message (and, for a direct one, its inbox item).
    pub fn insert(self, conn: &mut DbConnection, vault: &Vault) -> QueryResult<MessageRow> {
        let row: MessageRow = diesel::insert_into(messages::table)
            .values((
                messages::sender.eq(&self.sender),
                messages::sender_type.eq(&self.sender_type),
                messages::recipient.eq(&self.recipient),
                messages::channel.eq(&self.channel),
                messages::content.eq(vault.seal(&self.content)),
                messages::created_at.eq(now_iso()),
                messages::message_type.eq(&self.message_type),
                messages::sealed.eq(true),
            ))
            .returning(crate::db::columns_of::<MessageRow>())
            .get_result(conn)?;
        if let Some(recipient) = &self.recipient {
            let kind = match self.message_type.as_deref() {
                Some("wake") => InboxKind::Wake,
                _ => InboxKind::Message,
            };
            deliver(conn, recipient, kind, Some(row.id), None)?;
        }
        Ok(row)
    }
}

thread_local! {
    /// Agents whose inbox the writes of the current group commit added to: the writer
    /// thread wakes their long-polling pulls once the commit is durable.
    static RUNG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// Set on the writer thread, the only one whose deliveries anyone is told about.
    static COLLECTS: Cell<bool> = const { Cell::new(false) };
}

/// Called by the writer thread when it starts: it collects the agents to wake.
pub fn collect_rings() {
    COLLECTS.with(|c| c.set(true));
}

/// How many agents to wake are collected so far (a write that fails drops its own).
pub fn rung_mark() -> usize {
    RUNG.with(|r| r.borrow().len())
}

/// Drops the agents collected since `mark` (their write was rolled back).
pub fn unring_since(mark: usize) {
    RUNG.with(|r| r.borrow_mut().truncate(mark));
}

/// The agents collected in this group commit, leaving none.
pub fn take_rung() -> Vec<String> {
    RUNG.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

/// Puts an item in `agent_id`'s inbox; its pulls wake once the transaction commits.
pub fn deliver(
    conn: &mut DbConnection,
    agent_id: &str,
    kind: InboxKind,
    message_id: Option<i32>,
    task_id: Option<i32>,
) -> QueryResult<i32> {
    diesel::insert_into(inbox_items::table)
        .values((
            inbox_items::agent_id.eq(agent_id),
            inbox_items::kind.eq(kind.as_str()),
            inbox_items::message_id.eq(message_id),
            inbox_items::task_id.eq(task_id),
            inbox_items::created_at.eq(now_iso()),
        ))
        .returning(inbox_items::id)
        .get_result(conn)
        .inspect(|_| {
            if COLLECTS.with(Cell::get) {
                RUNG.with(|r| r.borrow_mut().push(agent_id.to_string()));
            }
        })
}

/// An inbox item as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = inbox_items, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct InboxItemRow {
    pub id: i32,
    pub agent_id: String,
    pub kind: String,
    pub message_id: Option<i32>,
    pub task_id: Option<i32>,
    pub body: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub deliveries: i32,
    pub acked_at: Option<String>,
}

/// Hands over the oldest item of `agent_id`'s inbox not yet acknowledged (with its
/// message, for a message or wake notice), counting the delivery. It stays in the inbox
/// until acknowledged, so a pull after a crash gets it again.
pub fn next_item(
    conn: &mut DbConnection,
    agent_id: &str,
) -> QueryResult<Option<(InboxItemRow, Option<MessageRow>)>> {
    let found: Option<i32> = inbox_items::table
        .filter(inbox_items::agent_id.eq(agent_id))
        .filter(inbox_items::acked_at.is_null())
        .order(inbox_items::id.asc())
        .select(inbox_items::id)
        .first(conn)
        .optional()?;
    let Some(id) = found else {
        return Ok(None);
    };
    let item: InboxItemRow = diesel::update(inbox_items::table.find(id))
        .set((
            inbox_items::delivered_at.eq(now_iso()),
            inbox_items::deliveries.eq(inbox_items::deliveries + 1),
        ))
        .returning(crate::db::columns_of::<InboxItemRow>())
        .get_result(conn)?;
    let message = match item.message_id {
        Some(message_id) => messages::table
            .find(message_id)
            .select(MessageRow::as_select())
            .first(conn)
            .optional()?,
        None => None,
    };
    Ok(Some((item, message)))
}

/// Acknowledges one item of `agent_id`'s inbox (again, harmlessly, if it already was);
/// `None` when the agent has no such item.
pub fn acknowledge_item(
    conn: &mut DbConnection,
    agent_id: &str,
    item_id: i32,
) -> QueryResult<Option<InboxItemRow>> {
    diesel::update(
        inbox_items::table
            .filter(inbox_items::id.eq(item_id))
            .filter(inbox_items::agent_id.eq(agent_id))
            .filter(inbox_items::acked_at.is_null()),
    )
    .set(inbox_items::acked_at.eq(now_iso()))
    .execute(conn)?;
    inbox_items::table
        .filter(inbox_items::id.eq(item_id))
        .filter(inbox_items::agent_id.eq(agent_id))
        .select(InboxItemRow::as_select())
        .first(conn)
        .optional()
}

/// The messages (direct ones and wake notices) in `agent_id`'s inbox it has not yet
/// acknowledged, oldest first, with their inbox item ids.
pub fn unread_messages(
    conn: &mut DbConnection,
    agent_id: &str,
    limit: i64,
) -> QueryResult<Vec<(i32, MessageRow)>> {
    inbox_items::table
        .inner_join(messages::table)
        .filter(inbox_items::agent_id.eq(agent_id))
        .filter(inbox_items::kind.eq_any([InboxKind::Message.as_str(), InboxKind::Wake.as_str()]))
        .filter(inbox_items::acked_at.is_null())
        .order(inbox_items::id.asc())
        .limit(limit)
        .select((inbox_items::id, MessageRow::as_select()))
        .load(conn)
}

/// Marks inbox items as handed over and acknowledged by their agent.
pub fn acknowledge(conn: &mut DbConnection, agent_id: &str, items: &[i32]) -> QueryResult<usize> {
    let now = now_iso();
    diesel::update(
        inbox_items::table
            .filter(inbox_items::agent_id.eq(agent_id))
            .filter(inbox_items::id.eq_any(items))
            .filter(inbox_items::acked_at.is_null()),
    )
    .set((
        inbox_items::delivered_at.eq(&now),
        inbox_items::deliveries.eq(inbox_items::deliveries + 1),
        inbox_items::acked_at.eq(&now),
    ))
    .execute(conn)
}

/// Forgets an agent's inbox (it was deleted: a new agent of that name starts empty).
pub fn clear(conn: &mut DbConnection, agent_id: &str) -> QueryResult<usize> {
    diesel::delete(inbox_items::table.filter(inbox_items::agent_id.eq(agent_id))).execute(conn)
}

/// Direct messages to or from `agent` (all of them without one), newest first.
pub fn direct_messages(
    conn: &mut DbConnection,
    agent: Option<String>,
    limit: i64,
) -> QueryResult<Vec<MessageRow>> {
    let mut query = messages::table
        .filter(messages::recipient.is_not_null())
        .select(MessageRow::as_select())
        .into_boxed();
    if let Some(agent) = agent {
        query = query.filter(
            messages::recipient
                .eq(agent.clone())
                .or(messages::sender.eq(agent)),
        );
    }
    query.order(messages::id.desc()).limit(limit).load(conn)
}

/// Seals the content of messages stored before messages were sealed. Run at start.
pub fn seal_plain_messages(conn: &mut DbConnection, vault: &Vault) -> QueryResult<usize> {
    let plain: Vec<(i32, String)> = messages::table
        .filter(messages::sealed.eq(false))
        .select((messages::id, messages::content))
        .load(conn)?;
    conn.transaction(|conn| {
        for (id, content) in &plain {
            diesel::update(messages::table.find(id))
                .set((
                    messages::content.eq(vault.seal(content)),
                    messages::sealed.eq(true),
                ))
                .execute(conn)?;
        }
        Ok(plain.len())
    })
}
