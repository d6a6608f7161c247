//! The HTTP surface: the whole route table in one place. Handlers extract, authorise,
//! validate, send one message (or run one read) and map the reply.

mod admin;
mod agents;
mod analytics;
mod approvals;
pub mod auth;
pub mod client;
mod delivery;
mod demo;
mod escalations;
mod exchange;
pub mod extract;
mod federation;
pub mod forward;
mod health;
mod idempotency;
mod inbox;
mod managed_agents;
mod memory;
mod messages;
pub mod metrics;
mod onboarding;
pub mod openapi;
mod overview;
mod pipelines;
mod provenance;
mod reputation;
mod runtime;
mod stream;
mod task_body;
mod tasks;
mod templates;
mod tokens;
mod users;
mod webhooks;

use actix_web::{web, HttpRequest};

use crate::error::HubError;
use crate::startup::Hub;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // Where Prometheus looks by default, outside /api (and before its scope, so the route
    // table's readers see no prefix on it).
    cfg.route("/metrics", web::get().to(metrics::get_metrics));
    // The operator dashboard: its page and its embedded assets.
    cfg.route("/", web::get().to(crate::dashboard::page));
    cfg.route("/ui/{file}", web::get().to(crate::dashboard::asset));
    // Seed 002's verification_uri: the dashboard's approval page for one preregistration.
    cfg.route(
        "/approve/{verification_code}",
        web::get().to(crate::dashboard::approve_link),
    );
    cfg.service(
        web::scope("/api")
            // The hottest routes first: actix tries a scope's routes in order, matching
            // each path in turn (~60 of them before a create otherwise). None of these
            // matches a method and path that another route serves, so order is free.
            .route("/tasks", web::post().to(tasks::create_task))
            .route("/tasks/{id}", web::put().to(tasks::update_task))
            .route(
                "/agents/{agent_id}/heartbeat",
                web::post().to(agents::heartbeat_agent),
            )
            .route("/v1/runtime/inbox/next", web::get().to(runtime::next_item))
            .route("/health", web::get().to(health::get_health))
            .route("/version", web::get().to(health::get_version))
            .route("/system/status", web::get().to(health::get_system_status))
            .route("/overview", web::get().to(overview::get_overview))
            .route("/me", web::get().to(overview::get_me))
            .route("/openapi.json", web::get().to(openapi::openapi_json))
            .route("/docs", web::get().to(openapi::docs_index))
            .route("/docs/{file}", web::get().to(openapi::docs_asset))
            .route("/stream", web::get().to(stream::get_stream))
            .route("/agents", web::get().to(agents::list_agents))
            .route("/agents", web::post().to(managed_agents::create_agent))
            .route(
                "/agents",
                web::put().to(managed_agents::update_agent_by_name),
            )
            // Before /agents/{id}: these names are reserved, never agent ids.
            .route("/agents/comms", web::get().to(inbox::list_comms))
            .route("/agents/message", web::post().to(inbox::send_agent_message))
            .route("/agents/sync", web::post().to(managed_agents::sync_agents))
            .route("/agents/{id}", web::get().to(managed_agents::get_agent))
            .route("/agents/{id}", web::put().to(managed_agents::update_agent))
            .route("/agents/{id}", web::delete().to(agents::delete_agent))
            .route("/agents/{id}/soul", web::get().to(managed_agents::get_soul))
            .route("/agents/{id}/soul", web::put().to(managed_agents::put_soul))
            .route(
                "/agents/{id}/wake",
                web::post().to(managed_agents::wake_agent),
            )
            .route(
                "/agents/{agent_id}/register",
                web::post().to(agents::register_agent),
            )
            .route(
                "/agents/{agent_id}/heartbeat",
                web::get().to(inbox::pending_work),
            )
            .route(
                "/agents/{agent_id}/memory",
                web::post().to(memory::store_memory),
            )
            .route(
                "/agents/{agent_id}/memory",
                web::get().to(memory::list_memory),
            )
            .route(
                "/agents/{agent_id}/memory",
                web::put().to(memory::replace_memory),
            )
            .route(
                "/agents/{agent_id}/memory/{key}",
                web::get().to(memory::get_memory),
            )
            .route(
                "/agents/{agent_id}/memory/{key}",
                web::delete().to(memory::delete_memory),
            )
            .route(
                "/agents/{agent_id}/reputation",
                web::get().to(reputation::get_reputation),
            )
            .route(
                "/admin/reputation/leaderboard",
                web::get().to(reputation::get_leaderboard),
            )
            .route("/admin/webhooks", web::post().to(webhooks::create_webhook))
            .route("/admin/webhooks", web::get().to(webhooks::list_webhooks))
            .route(
                "/admin/webhooks/{name}",
                web::delete().to(webhooks::delete_webhook),
            )
            .route(
                "/webhooks/{name}",
                web::post().to(webhooks::trigger_webhook),
            )
            .route(
                "/webhooks/{name}/github",
                web::post().to(webhooks::trigger_github),
            )
            .route("/login", web::post().to(users::login))
            .route("/logout", web::post().to(users::logout))
            .route("/admin/users", web::post().to(users::create_user))
            .route("/admin/users", web::get().to(users::list_users))
            .route("/admin/users/{id}", web::put().to(users::update_user))
            .route("/admin/users/{id}", web::delete().to(users::delete_user))
            .route(
                "/admin/analytics/tasks",
                web::get().to(analytics::task_analytics),
            )
            .route(
                "/admin/analytics/costs",
                web::get().to(analytics::cost_analytics),
            )
            .route(
                "/admin/analytics/agents",
                web::get().to(analytics::agent_analytics),
            )
            .route(
                "/admin/analytics/metacognition",
                web::get().to(analytics::metacognition),
            )
            .route(
                "/admin/analytics/summary",
                web::get().to(analytics::summary),
            )
            .route("/demo/agents", web::get().to(demo::demo_agents_list))
            .route("/demo/tasks", web::get().to(demo::demo_tasks_list))
            .route("/demo/health", web::get().to(demo::demo_health))
            .route("/admin/peers", web::post().to(federation::create_peer))
            .route("/admin/peers", web::get().to(federation::list_peers))
            .route(
                "/admin/peers/{name}",
                web::delete().to(federation::delete_peer),
            )
            .route(
                "/admin/peers/{name}/ping",
                web::post().to(federation::ping_peer),
            )
            .route(
                "/federation/status",
                web::get().to(federation::federation_status),
            )
            .route("/federation/tasks", web::post().to(federation::accept_task))
            .route(
                "/federation/results",
                web::post().to(federation::accept_result),
            )
            .route("/messages", web::post().to(messages::send_message))
            .route("/messages", web::get().to(messages::list_messages))
            .route("/tasks", web::get().to(tasks::list_tasks))
            .route("/tasks/{id}", web::get().to(tasks::get_task))
            .route("/tasks/{id}/deps", web::get().to(tasks::get_task_deps))
            .route("/tasks/{id}/stream", web::post().to(tasks::stream_task))
            .route("/tasks/{id}/stream", web::get().to(tasks::list_task_stream))
            .route("/tasks/{id}/handoff", web::post().to(tasks::handoff_task))
            .route(
                "/tasks/{id}/approvals",
                web::post().to(approvals::request_approval),
            )
            .route("/approvals", web::get().to(approvals::list_approvals))
            .route("/approvals/{id}", web::get().to(approvals::get_approval))
            .route(
                "/approvals/{id}",
                web::post().to(approvals::decide_approval),
            )
            .route(
                "/tasks/{id}/verify",
                web::post().to(provenance::verify_task),
            )
            .route(
                "/tasks/{id}/provenance",
                web::get().to(provenance::get_provenance),
            )
            .route("/pipelines", web::post().to(pipelines::create_pipeline))
            .route("/pipelines", web::get().to(pipelines::list_pipelines))
            .route("/pipelines/{id}", web::get().to(pipelines::get_pipeline))
            .route(
                "/pipelines/{id}/cancel",
                web::post().to(pipelines::cancel_pipeline),
            )
            .route("/templates", web::post().to(templates::create_template))
            .route("/templates", web::get().to(templates::list_templates))
            .route("/templates/{id}", web::get().to(templates::get_template))
            .route(
                "/templates/{id}",
                web::delete().to(templates::delete_template),
            )
            .route(
                "/templates/{id}/dispatch",
                web::post().to(templates::dispatch_template),
            )
            .route(
                "/templates/{id}/schedule",
                web::put().to(templates::set_schedule),
            )
            .route(
                "/templates/{id}/schedule",
                web::delete().to(templates::remove_schedule),
            )
            .route(
                "/templates/{id}/occurrences",
                web::get().to(templates::list_occurrences),
            )
            .route(
                "/escalations",
                web::post().to(escalations::create_escalation),
            )
            .route("/escalations", web::get().to(escalations::list_escalations))
            .route(
                "/escalations/{id}/resolve",
                web::post().to(escalations::resolve_escalation),
            )
            .route("/admin/tokens", web::post().to(tokens::issue_token))
            .route("/admin/tokens", web::get().to(tokens::list_tokens))
            .route(
                "/admin/tokens/{hash}/permissions",
                web::put().to(tokens::update_token_permissions),
            )
            .route(
                "/admin/tokens/{hash}",
                web::delete().to(tokens::revoke_token),
            )
            .route("/admin/roles", web::get().to(tokens::list_roles))
            .route("/admin/kill-switch", web::get().to(admin::get_kill_switch))
            .route("/admin/kill-switch", web::post().to(admin::set_kill_switch))
            .route(
                "/admin/kill-switch",
                web::delete().to(admin::clear_kill_switch),
            )
            .route("/admin/budget", web::get().to(admin::get_budget))
            .route("/admin/budget/reset", web::post().to(admin::reset_budget))
            .route("/admin/audit", web::get().to(admin::list_audit))
            .route("/admin/audit/export", web::get().to(admin::export_audit))
            .route(
                "/admin/registration-tokens",
                web::post().to(onboarding::issue_registration_token),
            )
            .route(
                "/admin/registration-tokens",
                web::get().to(onboarding::list_registration_tokens),
            )
            .route(
                "/admin/registration-tokens/{id}",
                web::delete().to(onboarding::revoke_registration_token),
            )
            .route(
                "/admin/exchanges",
                web::post().to(exchange::create_exchange),
            )
            .route("/admin/exchanges", web::get().to(exchange::list_exchanges))
            .route(
                "/admin/exchanges/{exchange_id}",
                web::patch().to(exchange::update_exchange),
            )
            .route(
                "/admin/exchanges/{exchange_id}",
                web::delete().to(exchange::delete_exchange),
            )
            .route(
                "/v1/exchanges/{exchange_id}/register",
                web::post().to(exchange::register),
            )
            .route(
                "/v1/exchanges/{exchange_id}/requests",
                web::post().to(exchange::create_request),
            )
            .route(
                "/v1/exchanges/{exchange_id}/requests",
                web::get().to(exchange::list_requests),
            )
            .route(
                "/v1/exchanges/{exchange_id}/requests/{ref}",
                web::get().to(exchange::get_request),
            )
            .route(
                "/v1/exchanges/{exchange_id}/requests/{ref}",
                web::patch().to(exchange::update_request),
            )
            .route(
                "/v1/exchanges/{exchange_id}/executors",
                web::get().to(exchange::list_executors),
            )
            .route(
                "/v1/exchanges/{exchange_id}/executors/{executor_id}",
                web::patch().to(exchange::update_executor),
            )
            .route(
                "/v1/agent-preregistrations",
                web::post().to(onboarding::preregister),
            )
            .route(
                "/v1/agent-preregistrations",
                web::get().to(onboarding::list_preregistrations),
            )
            // Before /{verification_code}/…: `poll` is never a code.
            .route(
                "/v1/agent-preregistrations/poll",
                web::post().to(onboarding::poll),
            )
            .route(
                "/v1/agent-preregistrations/{verification_code}/approve",
                web::post().to(onboarding::approve),
            )
            .route(
                "/v1/agent-preregistrations/{verification_code}/deny",
                web::post().to(onboarding::deny),
            )
            .route(
                "/v1/agent-auth/finalize-activation",
                web::post().to(onboarding::finalize),
            )
            .route(
                "/v1/agent-auth/runtime-recover",
                web::post().to(onboarding::recover),
            )
            .route(
                "/v1/agents/{id}",
                web::patch().to(onboarding::set_agent_state),
            )
            .route(
                "/v1/agents/{id}/rotate-credential",
                web::post().to(onboarding::rotate_credential),
            )
            .route("/v1/runtime/me", web::get().to(runtime::get_me))
            .route("/v1/runtime/me", web::patch().to(runtime::patch_me))
            .route(
                "/v1/runtime/inbox/{item_id}/ack",
                web::post().to(runtime::ack_item),
            )
            .route(
                "/v1/runtime/inbox/next",
                web::post().to(runtime::next_item_post),
            ),
    )
    .default_service(web::to(not_found));
}

/// No route matched: a 405 naming the methods the path has (the OpenAPI document lists
/// every route), else a 404.
async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, HubError> {
    let allowed = openapi::methods_of(req.path());
    if allowed.is_empty() {
        return Err(HubError::not_found(format!(
            "no route for {} {}",
            req.method(),
            req.path()
        )));
    }
    Err(HubError::MethodNotAllowed {
        method: req.method().to_string(),
        allowed: allowed.join(", "),
    })
}

/// Deletes one row with its audit row in one transaction; a 404 saying `missing` when
/// `delete` removed nothing.
pub async fn delete_audited<F>(
    hub: &Hub,
    actor: String,
    action: &'static str,
    target: String,
    missing: String,
    delete: F,
) -> Result<(), HubError>
where
    F: FnOnce(&mut crate::db::DbConnection) -> diesel::QueryResult<usize> + Send + 'static,
{
    hub.core
        .db
        .write(move |conn| {
            if delete(conn)? == 0 {
                return Err(HubError::not_found(missing));
            }
            crate::db::models::NewAuditRow::new(&actor, action, target, None).append(conn)?;
            Ok(())
        })
        .await
}

/// Page size from a `limit` parameter: default when absent, never above `max`.
pub fn page_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, HubError> {
    match limit {
        None => Ok(default.min(max)),
        Some(n) if n < 1 => Err(HubError::bad_request("limit must be at least 1")),
        Some(n) => Ok(n.min(max)),
    }
}

pub fn page_offset(offset: Option<i64>) -> Result<i64, HubError> {
    match offset {
        Some(n) if n < 0 => Err(HubError::bad_request("offset must not be negative")),
        other => Ok(other.unwrap_or(0)),
    }
}
