//! The message bus (seed 000 section 06): channel chat between agents, people and the hub.

use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::extract::{Json, Query};
use super::page_limit;
use crate::db::inbox::NewMessage;
use crate::db::models::{MessageRow, NewAuditRow};
use crate::db::schema::messages;
use crate::domain::access::Principal;
use crate::domain::event::{Audience, HubEvent};
use crate::domain::Blank;
use crate::error::HubError;
use crate::startup::Hub;
use crate::views::message_view;

const MAX_CONTENT_CHARS: usize = 8000;
const SENDER_TYPES: &[&str] = &["agent", "user", "system"];

#[derive(Debug, Deserialize, ToSchema)]
pub struct MessageBody {
    #[schema(value_type = Option<String>)]
    sender: Option<String>,
    #[schema(value_type = Option<String>, pattern = "^(agent|user|system)$")]
    sender_type: Option<String>,
    #[schema(required = true, value_type = String, min_length = 1, max_length = 8000, pattern = r"\S")]
    content: Option<String>,
    #[schema(value_type = Option<String>, pattern = r"^[A-Za-z0-9._#-]{1,64}$")]
    channel: Option<String>,
}

fn valid_channel(channel: &str) -> bool {
    (1..=64).contains(&channel.len())
        && channel
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '#'))
}

#[utoipa::path(
    post,
    path = "/api/messages",
    tag = "messages",
    request_body = MessageBody,
    responses((status = 201, description = "Send a message (messages:write)", body = Object))
)]
pub async fn send_message(
    hub: web::Data<Hub>,
    caller: Caller,
    body: Json<MessageBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("messages:write")?;
    let body = body.0;
    let content = body
        .content
        .filter(|c| !c.trim_blank().is_empty())
        .ok_or_else(|| HubError::bad_request("content is required"))?;
    if content.chars().count() > MAX_CONTENT_CHARS {
        return Err(HubError::bad_request(format!(
            "content exceeds {MAX_CONTENT_CHARS} characters"
        )));
    }
    let sender_type = body.sender_type.unwrap_or_else(|| "agent".into());
    if !SENDER_TYPES.contains(&sender_type.as_str()) {
        return Err(HubError::bad_request(format!(
            "unknown sender_type {sender_type:?} (expected agent, user or system)"
        )));
    }
    let channel = body.channel.unwrap_or_else(|| "general".into());
    if !valid_channel(&channel) {
        return Err(HubError::bad_request(
            "channel must be 1 to 64 letters, digits, - _ . or #",
        ));
    }
    // A token speaks as its own agent; only the master token may name a sender.
    let sender = match &caller.0 {
        Principal::Master => body
            .sender
            .filter(|s| !s.trim_blank().is_empty())
            .unwrap_or_else(|| "master".into()),
        other => other.label(),
    };
    let actor = caller.0.label();
    let message = NewMessage {
        sender,
        sender_type,
        recipient: None,
        channel,
        content,
        message_type: None,
    };
    let vault = hub.core.vault.clone();
    let row = hub
        .core
        .db
        .write(move |conn| {
            let row = message.insert(conn, &vault)?;
            let detail = json!({ "channel": row.channel, "sender": row.sender });
            NewAuditRow::new(
                &actor,
                "message.send",
                format!("message:{}", row.id),
                Some(detail),
            )
            .append(conn)?;
            Ok(row)
        })
        .await?;
    let view = message_view(&row, &hub.core.vault);
    hub.core
        .publish(HubEvent::new("message", view.clone(), Audience::Messages));
    Ok(HttpResponse::Created().json(view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageQuery {
    channel: Option<String>,
    /// Page size (capped by the hub).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// Only messages older than this id (paging backwards through history).
    before: Option<i32>,
}

#[utoipa::path(
    get,
    path = "/api/messages",
    tag = "messages",
    params(MessageQuery),
    responses((status = 200, description = "Messages (messages:read)", body = Object))
)]
pub async fn list_messages(
    hub: web::Data<Hub>,
    caller: Caller,
    query: Query<MessageQuery>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("messages:read")?;
    let query = query.0;
    let limit = page_limit(query.limit, 50, 200)?;
    let rows = crate::db::read(&hub.reads, move |conn| {
        // Channel chat only: direct messages belong to their agents (GET /api/agents/comms).
        let mut q = messages::table
            .filter(messages::recipient.is_null())
            .select(MessageRow::as_select())
            .into_boxed();
        if let Some(channel) = query.channel {
            q = q.filter(messages::channel.eq(channel));
        }
        if let Some(before) = query.before {
            q = q.filter(messages::id.lt(before));
        }
        Ok(q.order(messages::id.desc()).limit(limit).load(conn)?)
    })
    .await?;
    let views: Vec<_> = rows
        .iter()
        .map(|row| message_view(row, &hub.core.vault))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "count": views.len(), "messages": views })))
}
