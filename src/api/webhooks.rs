//! Webhooks (seed 000 sections 07 and 14): operators create them (the secret is shown
//! once, stored sealed); external systems call them with the secret (custom JSON or Uptime
//! Kuma) or a GitHub signature, and each call becomes a task.

use actix_web::{web, HttpRequest, HttpResponse};
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::auth::Caller;
use super::extract::{optional_json, parse_json, Json};
use super::task_body::TaskBody;
use crate::actors::dispatcher::SubmitTask;
use crate::crypto::tokens::{digests_match, github_signature_matches, random_hex, token_digest};
use crate::db::models::NewAuditRow;
use crate::db::schema::{templates, webhooks};
use crate::domain::access::Principal;
use crate::domain::agent::valid_agent_id;
use crate::domain::now_iso;
use crate::domain::webhook::{github, uptime_kuma, GithubEvent, Request};
use crate::domain::Blank;
use crate::error::HubError;
use crate::startup::Hub;
use crate::views::TaskView;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhooks, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct WebhookRow {
    pub name: String,
    /// Fernet token; open it with the Vault.
    pub secret: String,
    pub template_id: Option<i32>,
    pub target_agent: Option<String>,
    pub required_capability: String,
    pub priority: i32,
    pub created_by: String,
    pub created_at: String,
}

fn webhook_view(row: &WebhookRow) -> Value {
    json!({
        "name": row.name,
        "url": format!("/api/webhooks/{}", row.name),
        "template_id": row.template_id,
        "target_agent": row.target_agent,
        "required_capability": row.required_capability,
        "priority": row.priority,
        "created_by": row.created_by,
        "created_at": row.created_at,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateWebhookBody {
    #[schema(required = true, value_type = String, pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    name: Option<String>,
    #[schema(value_type = Option<i32>)]
    template_id: Option<i32>,
    #[schema(value_type = Option<String>, pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    target_agent: Option<String>,
    #[schema(value_type = Option<String>, min_length = 1, max_length = 64, pattern = r"\S")]
    required_capability: Option<String>,
    #[schema(value_type = Option<i32>)]
    priority: Option<i32>,
}

#[utoipa::path(
    post,
    path = "/api/admin/webhooks",
    tag = "webhooks",
    request_body = CreateWebhookBody,
    responses((status = 201, description = "Create a webhook; its secret is shown once (master)", body = Object))
)]
pub async fn create_webhook(
    hub: web::Data<Hub>,
    caller: Caller,
    body: Json<CreateWebhookBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require_master()?;
    let body = body.0;
    let name = body
        .name
        .filter(|n| valid_agent_id(n))
        .ok_or_else(|| HubError::bad_request("name is required (letters, digits, - _ .)"))?;
    if body
        .target_agent
        .as_deref()
        .is_some_and(|a| !valid_agent_id(a))
    {
        return Err(HubError::bad_request(
            "target_agent is not a valid agent id",
        ));
    }
    let capability = body
        .required_capability
        .unwrap_or_else(|| "research".into());
    if capability.trim_blank().is_empty() || capability.chars().count() > 64 {
        return Err(HubError::bad_request(
            "required_capability must be 1 to 64 characters",
        ));
    }
    let secret = random_hex(24);
    let row = WebhookRow {
        name,
        secret: hub.core.vault.seal(&secret),
        template_id: body.template_id,
        target_agent: body.target_agent,
        required_capability: capability,
        priority: body.priority.unwrap_or(0),
        created_by: caller.0.label(),
        created_at: now_iso(),
    };
    let stored = row.clone();
    hub.core
        .db
        .write(move |conn| {
            if let Some(id) = stored.template_id {
                templates::table
                    .find(id)
                    .select(templates::id)
                    .get_result::<i32>(conn)
                    .optional()?
                    .ok_or_else(|| {
                        HubError::not_found(format!("template_id {id} names no template"))
                    })?;
            }
            diesel::insert_into(webhooks::table)
                .values(&stored)
                .execute(conn)
                .map_err(|e| match HubError::from(e) {
                    HubError::Conflict(_) => HubError::conflict(format!(
                        "a webhook named {:?} already exists",
                        stored.name
                    )),
                    other => other,
                })?;
            NewAuditRow::new(
                &stored.created_by,
                "webhook.create",
                format!("webhook:{}", stored.name),
                None,
            )
            .append(conn)?;
            Ok(())
        })
        .await?;
    let mut view = webhook_view(&row);
    view["secret"] = json!(secret);
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(
    get,
    path = "/api/admin/webhooks",
    tag = "webhooks",
    responses((status = 200, description = "Webhooks (master)", body = Object))
)]
pub async fn list_webhooks(hub: web::Data<Hub>, caller: Caller) -> Result<HttpResponse, HubError> {
    caller.0.require_master()?;
    let rows = crate::db::read(&hub.reads, |conn| {
        Ok(webhooks::table
            .select(WebhookRow::as_select())
            .order(webhooks::name)
            .load(conn)?)
    })
    .await?;
    let list: Vec<Value> = rows.iter().map(webhook_view).collect();
    Ok(HttpResponse::Ok().json(json!({ "count": list.len(), "webhooks": list })))
}

#[utoipa::path(
    delete,
    path = "/api/admin/webhooks/{name}",
    tag = "webhooks",
    params(("name" = String, Path, description = "The name")),
    responses((status = 200, description = "Delete a webhook (master)", body = Object))
)]
pub async fn delete_webhook(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require_master()?;
    let name = path.into_inner();
    let (target, missing, key) = (
        format!("webhook:{name}"),
        format!("no webhook {name:?}"),
        name.clone(),
    );
    super::delete_audited(
        &hub,
        caller.0.label(),
        "webhook.delete",
        target,
        missing,
        move |conn| diesel::delete(webhooks::table.find(&key)).execute(conn),
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "deleted": name })))
}

/// The webhook named `name`; unknown names are 404.
async fn find_webhook(hub: &Hub, name: &str) -> Result<WebhookRow, HubError> {
    let lookup = name.to_string();
    let row = crate::db::read(&hub.reads, move |conn| {
        Ok(webhooks::table
            .find(&lookup)
            .select(WebhookRow::as_select())
            .get_result(conn)
            .optional()?)
    })
    .await?
    .ok_or_else(|| HubError::not_found(format!("no webhook {name:?}")))?;
    Ok(row)
}

/// Counts an authenticated call against the webhook's per-minute budget (calls with a
/// wrong secret are not counted, so strangers cannot use a webhook's budget up).
fn admit(hub: &Hub, webhook: &WebhookRow) -> Result<(), HubError> {
    hub.webhook_limiter.admit(&webhook.name).map_err(|seconds| {
        HubError::Throttled(
            format!("webhook {:?} is over its rate limit", webhook.name),
            seconds,
        )
    })
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Creates the task a webhook call asks for: the bound template (if any), overridden by
/// the call's title and prompt, routed as the webhook says.
async fn submit(
    hub: &Hub,
    webhook: &WebhookRow,
    request: TaskBody,
    delivery: Option<&str>,
) -> Result<HttpResponse, HubError> {
    // A deleted template unbinds itself (ON DELETE SET NULL), so one bound here exists.
    let template = match webhook.template_id {
        Some(id) => Some(super::templates::find_template(hub, id).await?),
        None => None,
    };
    let base = template.as_ref().map(|t| {
        (
            t.title.clone(),
            hub.core.vault.open(&t.prompt).map(|o| o.plaintext),
        )
    });
    let body = TaskBody {
        title: request.title.or_else(|| base.as_ref().map(|b| b.0.clone())),
        prompt: request.prompt.or_else(|| base.and_then(|b| b.1)),
        required_capability: Some(webhook.required_capability.clone()),
        assign_to: webhook.target_agent.clone(),
        priority: Some(webhook.priority),
        ..request
    };
    // The webhook acts with the master's authority over its own routing, as its creator set it.
    let mut task = body.into_row(&Principal::Master, hub, "webhook")?;
    task.created_by = format!("webhook:{}", webhook.name);
    task.template_id = webhook.template_id;
    let delivery = delivery.map(|key| (webhook.name.clone(), key.to_string()));
    let message = SubmitTask {
        task,
        depends_on: vec![],
        actor: format!("webhook:{}", webhook.name),
        delivery,
        crossings: vec![],
        by_master: false,
        also: None,
    };
    let row = hub.dispatcher.send(message).await??;
    Ok(HttpResponse::Created().json(TaskView::new(row, &hub.core.vault, vec![], false)))
}

/// `POST /api/webhooks/{name}`: the secret in `X-Webhook-Secret` or `?secret=`; the body is
/// JSON whatever its Content-Type (`title`, `prompt`), or an Uptime Kuma notification.
#[utoipa::path(
    post,
    path = "/api/webhooks/{name}",
    tag = "webhooks",
    security(("webhook_secret" = []), ()),
    params(("name" = String, Path, description = "The name")),
    request_body(content = Object, description = "The delivery as sent"),
    responses((status = 201, description = "Trigger a webhook: a custom body or an Uptime Kuma notification", body = crate::views::TaskView))
)]
pub async fn trigger_webhook(
    hub: web::Data<Hub>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, HubError> {
    let webhook = find_webhook(&hub, &path).await?;
    let query =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok();
    let given = header(&req, "x-webhook-secret")
        .map(String::from)
        .or_else(|| query.and_then(|q| q.get("secret").cloned()));
    let expected = hub
        .core
        .vault
        .open(&webhook.secret)
        .map(|o| o.plaintext)
        .ok_or_else(|| HubError::internal("webhook secret unreadable"))?;
    let authentic =
        given.is_some_and(|g| digests_match(&token_digest(&g), &token_digest(&expected)));
    if !authentic {
        return Err(HubError::Unauthorized);
    }
    admit(&hub, &webhook)?;
    let value: Value = optional_json::<Option<Value>>(&body)?.unwrap_or_else(|| json!({}));
    let request = match uptime_kuma(&value) {
        Some(Request { title, prompt }) => TaskBody {
            title: Some(title),
            prompt: Some(prompt),
            ..TaskBody::default()
        },
        None => serde_json::from_value(value)
            .map_err(|e| HubError::bad_request(format!("invalid body: {e}")))?,
    };
    submit(&hub, &webhook, request, header(&req, "idempotency-key")).await
}

/// `POST /api/webhooks/{name}/github`: `X-Hub-Signature-256` over the raw body.
#[utoipa::path(
    post,
    path = "/api/webhooks/{name}/github",
    tag = "webhooks",
    security(()),
    params(("name" = String, Path, description = "The name")),
    request_body(content = Object, description = "The delivery as sent"),
    responses((status = 201, description = "A GitHub delivery, checked with X-Hub-Signature-256", body = crate::views::TaskView))
)]
pub async fn trigger_github(
    hub: web::Data<Hub>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, HubError> {
    let webhook = find_webhook(&hub, &path).await?;
    let secret = hub
        .core
        .vault
        .open(&webhook.secret)
        .map(|o| o.plaintext)
        .ok_or_else(|| HubError::internal("webhook secret unreadable"))?;
    let signed = header(&req, "x-hub-signature-256")
        .is_some_and(|sig| github_signature_matches(&secret, &body, sig));
    if !signed {
        return Err(HubError::Unauthorized);
    }
    admit(&hub, &webhook)?;
    let value: Value = parse_json(&body)?;
    match github(header(&req, "x-github-event").unwrap_or(""), &value) {
        GithubEvent::Ping => Ok(HttpResponse::Ok().json(json!({ "ok": true, "pong": true }))),
        GithubEvent::Ignored(why) => {
            Ok(HttpResponse::Accepted().json(json!({ "ignored": true, "reason": why })))
        }
        GithubEvent::Task(Request { title, prompt }) => {
            let request = TaskBody {
                title: Some(title),
                prompt: Some(prompt),
                ..TaskBody::default()
            };
            submit(&hub, &webhook, request, header(&req, "x-github-delivery")).await
        }
    }
}
