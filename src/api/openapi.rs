//! The OpenAPI 3.1 description of every route, generated from the handlers' own
//! annotations (utoipa): served at `GET /api/openapi.json` and rendered, from assets
//! embedded in the binary, at `/api/docs`. `tests/integration/openapi.rs` fails when a
//! route of `api::routes` is missing here or this names a route that does not exist.

use std::sync::OnceLock;

use actix_web::http::header::{self, ContentType};
use actix_web::{web, HttpResponse, ResponseError};
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{
    AnyOfBuilder, Array, ArrayBuilder, KnownFormat, Object, ObjectBuilder, OneOfBuilder, Schema,
    SchemaFormat, Type,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{
    admin, agents, analytics, approvals, demo, escalations, exchange, federation, health, inbox,
    managed_agents, memory, messages, metrics, onboarding, overview, pipelines, provenance,
    reputation, runtime, stream, tasks, templates, tokens, users, webhooks,
};
use crate::domain::access::{ALL_PERMISSIONS, ROLE_NAMES};
use crate::domain::graph::MAX_DEPENDENCIES;
use crate::domain::task::TaskStatus;
use crate::error::HubError;

/// Every error: a message a person can act on and a stable code.
#[derive(ToSchema)]
#[allow(dead_code)] // Described, never built: HubError renders this shape.
pub struct ErrorBody {
    /// What went wrong, naming the field or object.
    error: String,
    /// bad_request, unauthorized, forbidden, not_found, conflict, payload_too_large,
    /// unprocessable, too_many_requests, kill_switch, unavailable or internal.
    code: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "m3shd",
        description = "The Commander hub of a multi-agent AI mesh: the M3SHD Commander API (seed 000) and the surfaces built on it."
    ),
    paths(
        health::get_health,
        health::get_version,
        health::get_system_status,
        overview::get_overview,
        overview::get_me,
        crate::dashboard::page,
        crate::dashboard::asset,
        crate::dashboard::approve_link,
        stream::get_stream,
        agents::list_agents,
        agents::delete_agent,
        agents::register_agent,
        agents::heartbeat_agent,
        managed_agents::create_agent,
        managed_agents::update_agent_by_name,
        managed_agents::get_agent,
        managed_agents::update_agent,
        managed_agents::get_soul,
        managed_agents::put_soul,
        managed_agents::wake_agent,
        managed_agents::sync_agents,
        inbox::pending_work,
        inbox::send_agent_message,
        inbox::list_comms,
        approvals::request_approval,
        approvals::list_approvals,
        approvals::get_approval,
        approvals::decide_approval,
        memory::store_memory,
        memory::list_memory,
        memory::replace_memory,
        memory::get_memory,
        memory::delete_memory,
        reputation::get_reputation,
        reputation::get_leaderboard,
        webhooks::create_webhook,
        webhooks::list_webhooks,
        webhooks::delete_webhook,
        webhooks::trigger_webhook,
        webhooks::trigger_github,
        users::login,
        users::logout,
        users::create_user,
        users::list_users,
        users::update_user,
        users::delete_user,
        analytics::task_analytics,
        analytics::cost_analytics,
        analytics::agent_analytics,
        analytics::metacognition,
        analytics::summary,
        demo::demo_agents_list,
        demo::demo_tasks_list,
        demo::demo_health,
        federation::create_peer,
        federation::list_peers,
        federation::delete_peer,
        federation::ping_peer,
        federation::federation_status,
        federation::accept_task,
        federation::accept_result,
        messages::send_message,
        messages::list_messages,
        tasks::create_task,
        tasks::list_tasks,
        tasks::get_task,
        tasks::update_task,
        tasks::get_task_deps,
        tasks::stream_task,
        tasks::handoff_task,
        provenance::verify_task,
        provenance::get_provenance,
        pipelines::create_pipeline,
        pipelines::list_pipelines,
        pipelines::get_pipeline,
        pipelines::cancel_pipeline,
        templates::create_template,
        templates::list_templates,
        templates::get_template,
        templates::delete_template,
        templates::dispatch_template,
        templates::set_schedule,
        templates::remove_schedule,
        templates::list_occurrences,
        escalations::create_escalation,
        escalations::list_escalations,
        escalations::resolve_escalation,
        tokens::issue_token,
        tokens::list_tokens,
        tokens::update_token_permissions,
        tokens::revoke_token,
        tokens::list_roles,
        admin::get_kill_switch,
        admin::set_kill_switch,
        admin::clear_kill_switch,
        admin::get_budget,
        admin::reset_budget,
        admin::list_audit,
        admin::export_audit,
        tasks::list_task_stream,
        exchange::create_exchange,
        exchange::list_exchanges,
        exchange::update_exchange,
        exchange::delete_exchange,
        exchange::register,
        exchange::create_request,
        exchange::list_requests,
        exchange::get_request,
        exchange::update_request,
        exchange::list_executors,
        exchange::update_executor,
        onboarding::issue_registration_token,
        onboarding::list_registration_tokens,
        onboarding::revoke_registration_token,
        onboarding::preregister,
        onboarding::list_preregistrations,
        onboarding::poll,
        onboarding::approve,
        onboarding::deny,
        onboarding::finalize,
        onboarding::recover,
        onboarding::set_agent_state,
        onboarding::rotate_credential,
        runtime::get_me,
        runtime::patch_me,
        runtime::next_item,
        runtime::next_item_post,
        runtime::ack_item,
        openapi_json,
        docs_index,
        docs_asset,
        metrics::get_metrics,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Credentials, &Errors, &AtLeastOne, &Overrides),
    security(("bearer" = []), ("api_key" = []), ("cookie" = []))
)]
pub struct ApiDoc;

/// `PermissionsBody` needs a role or a permissions list: `minProperties: 1` (set here, as
/// utoipa's own attribute writes `maxProperties` instead).
struct AtLeastOne;

impl Modify for AtLeastOne {
    fn modify(&self, doc: &mut Document) {
        let schemas = &mut doc.components.get_or_insert_with(Default::default).schemas;
        if let Some(RefOr::T(Schema::Object(body))) = schemas.get_mut("PermissionsBody") {
            body.min_properties = Some(1);
        }
        // Seed 004's `PUT /api/agents` must change something: one of these fields at least.
        if let Some(RefOr::T(Schema::AllOf(body))) = schemas.get_mut("NamedUpdateBody") {
            // Present and not null: a null field changes nothing (the hub reads it as absent).
            let mut one_of_them = AnyOfBuilder::new();
            for (field, kind) in [
                ("role", Type::String),
                ("status", Type::String),
                ("last_activity", Type::String),
                ("config", Type::Object),
                ("gateway_config", Type::Object),
                ("session_key", Type::String),
                ("soul_content", Type::String),
                ("capabilities", Type::Array),
            ] {
                let set = ObjectBuilder::new().schema_type(kind);
                one_of_them =
                    one_of_them.item(ObjectBuilder::new().required(field).property(field, set));
            }
            body.items.push(one_of_them.into());
        }
    }
}

/// A template dispatch takes a task body whose every field is optional and may be null
/// (null or absent keeps the template's value): `TaskOverrides`, derived here from
/// `TaskBody` so the two never drift apart.
struct Overrides;

impl Modify for Overrides {
    fn modify(&self, doc: &mut Document) {
        let schemas = &mut doc.components.get_or_insert_with(Default::default).schemas;
        let Some(RefOr::T(Schema::Object(body))) = schemas.get("TaskBody") else {
            return;
        };
        let mut overrides = body.clone();
        overrides.required.clear();
        for property in overrides.properties.values_mut() {
            *property = RefOr::T(or_null(property.clone()));
        }
        overrides.description =
            Some("Fields that replace the template's; null or absent keeps it.".into());
        schemas.insert("TaskOverrides".into(), RefOr::T(Schema::Object(overrides)));
        let dispatch = doc
            .paths
            .paths
            .get_mut("/api/templates/{id}/dispatch")
            .and_then(|item| item.post.as_mut())
            .and_then(|op| op.request_body.as_mut());
        if let Some(body) = dispatch {
            for content in body.content.values_mut() {
                content.schema = Some(RefOr::T(or_null(RefOr::Ref(
                    utoipa::openapi::Ref::from_schema_name("TaskOverrides"),
                ))));
            }
        }
    }
}

/// The ways to present a credential (API.md, "Everywhere").
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        let schemes = [
            (
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            ),
            ("api_key", api_key_header("x-api-key")),
            (
                "cookie",
                SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                    super::auth::SESSION_COOKIE,
                ))),
            ),
            (
                "query_token",
                SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("token"))),
            ),
            (
                "federation_token",
                api_key_header(crate::federation::TOKEN_HEADER),
            ),
            ("webhook_secret", api_key_header("X-Webhook-Secret")),
        ];
        for (name, scheme) in schemes {
            components.add_security_scheme(name, scheme);
        }
    }
}

fn api_key_header(name: &str) -> SecurityScheme {
    SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(name)))
}

/// The error answers any operation may give (API.md, "Everywhere"), each with
/// [`ErrorBody`]; an operation's own annotation lists its successes.
struct Errors;

const ERRORS: &[(&str, &str)] = &[
    (
        "400",
        "Malformed JSON, a missing or invalid field (named), or a bad query.",
    ),
    ("401", "No credential, or one the hub does not know."),
    ("403", "The credential lacks the permission."),
    ("404", "No such object, or one the caller may not see."),
    (
        "409",
        "A conflict: a duplicate, an illegal transition, a stale holder.",
    ),
    ("413", "The body exceeds max_body_bytes."),
    ("429", "A rate limit or the daily cost cap."),
    (
        "503",
        "The kill switch is engaged, or the hub is busy or stopping.",
    ),
];

impl Modify for Errors {
    fn modify(&self, doc: &mut Document) {
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                add_errors(operation);
            }
        }
    }
}

fn add_errors(operation: &mut Operation) {
    for (status, description) in ERRORS {
        let error = ResponseBuilder::new()
            .description(*description)
            .content(
                "application/json",
                Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "ErrorBody",
                )))),
            )
            .build();
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert(RefOr::T(error));
    }
}

/// A list of capabilities: 1 to 64 characters each (not only spaces), at most 64; or
/// null (the default).
pub fn capability_list() -> Schema {
    or_null(capabilities())
}

fn capabilities() -> Array {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(64))
                .pattern(Some(r"\S")),
        )
        .max_items(Some(64))
        .build()
}

/// A role preset's name (`ROLE_NAMES`).
pub fn role() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ROLE_NAMES.iter().copied()))
        .build()
}

/// A role preset's name, or null.
pub fn optional_role() -> Schema {
    or_null(role())
}

/// A task status (`TaskStatus::ALL`).
pub fn task_status() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(TaskStatus::ALL.map(TaskStatus::as_str)))
        .build()
}

/// A task status, or null.
pub fn optional_task_status() -> Schema {
    or_null(task_status())
}

/// A list of permission names, each one the hub knows; or null (the default).
pub fn permission_list() -> Schema {
    or_null(permissions())
}

/// A list of permission names, each one the hub knows.
pub fn required_permission_list() -> Array {
    permissions()
}

fn permissions() -> Array {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(ALL_PERMISSIONS.iter().copied())),
        )
        .build()
}

/// `schema` or null (`anyOf`: a schema that already allows null must not make null match
/// twice, which `oneOf` would refuse).
fn or_null(schema: impl Into<RefOr<Schema>>) -> Schema {
    AnyOfBuilder::new()
        .item(schema)
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build()
        .into()
}

/// Seed 004's memory object: keys of 1 to 120 characters (not only spaces), at most 1,000
/// of them, any JSON value (text of at most 4,000 characters).
pub fn memory_object() -> Object {
    let key = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(120))
        .pattern(Some(r"\S"))
        .build();
    let value = AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(4000)),
        )
        .item(
            ObjectBuilder::new().schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::Number,
                Type::Boolean,
                Type::Null,
                Type::Array,
                Type::Object,
            ])),
        );
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(1000))
        .additional_properties(Some(Schema::from(value.build())))
        .build();
    object.property_names = Some(Box::new(Schema::Object(key)));
    object
}

/// `deadline`: an RFC 3339 time, or empty or null for none.
pub fn deadline() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(0)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build()
        .into()
}

/// Any JSON value at all (a MESS request's `context` and `response_hint` are free-form).
pub fn any_json() -> Schema {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .build()
        .into()
}

/// `depends_on`: one task id or a list of at most 50.
pub fn depends_on() -> Schema {
    let id = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
            .minimum(Some(i32::MIN))
            .maximum(Some(i32::MAX))
    };
    OneOfBuilder::new()
        .item(id())
        .item(
            ArrayBuilder::new()
                .items(id())
                .max_items(Some(MAX_DEPENDENCIES)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build()
        .into()
}

/// The methods the document lists for a concrete request path (empty: no such path).
pub fn methods_of(path: &str) -> Vec<&'static str> {
    static ROUTES: OnceLock<Vec<(Vec<String>, Vec<&'static str>)>> = OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        ApiDoc::openapi()
            .paths
            .paths
            .iter()
            .map(|(template, item)| {
                let methods = [
                    ("GET", item.get.is_some()),
                    ("PUT", item.put.is_some()),
                    ("POST", item.post.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("PATCH", item.patch.is_some()),
                ];
                let segments = template.split('/').map(String::from).collect();
                let allowed = methods.iter().filter(|m| m.1).map(|m| m.0).collect();
                (segments, allowed)
            })
            .collect()
    });
    let asked: Vec<&str> = path.split('/').collect();
    let fits = |segments: &Vec<String>| {
        segments.len() == asked.len()
            && segments
                .iter()
                .zip(&asked)
                .all(|(s, a)| s == a || (s.starts_with('{') && !a.is_empty()))
    };
    // A literal segment wins over a parameter, as in the route table (`/api/agents/comms`
    // is not `/api/agents/{id}`).
    let literals = |segments: &Vec<String>| segments.iter().filter(|s| !s.starts_with('{')).count();
    let best = routes
        .iter()
        .filter(|(segments, _)| fits(segments))
        .map(|(segments, _)| literals(segments))
        .max();
    let mut allowed: Vec<&'static str> = routes
        .iter()
        .filter(|(segments, _)| fits(segments) && Some(literals(segments)) == best)
        .flat_map(|(_, allowed)| allowed.iter().copied())
        .collect();
    allowed.sort_unstable();
    allowed.dedup();
    allowed
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

const INDEX: &str = include_str!("docs/index.html");
const SCRIPT: &str = include_str!("docs/docs.js");
const BUNDLE: &str = include_str!("docs/swagger-ui-bundle.js");
const STYLE: &str = include_str!("docs/swagger-ui.css");

/// The API reference page.
#[utoipa::path(get, path = "/api/docs", tag = "operations", security(()),
    responses((status = 200, description = "The API reference page", content_type = "text/html")))]
pub async fn docs_index() -> HttpResponse {
    asset(INDEX, ContentType::html())
}

/// The page's assets (embedded: nothing is fetched from elsewhere).
#[utoipa::path(get, path = "/api/docs/{file}", tag = "operations", security(()),
    params(("file" = String, Path, description = "docs.js, swagger-ui-bundle.js or swagger-ui.css")),
    responses((status = 200, description = "The asset", content_type = "text/javascript")))]
pub async fn docs_asset(file: web::Path<String>) -> HttpResponse {
    match file.as_str() {
        "docs.js" => asset(SCRIPT, content_type("text/javascript")),
        "swagger-ui-bundle.js" => asset(BUNDLE, content_type("text/javascript")),
        "swagger-ui.css" => asset(STYLE, content_type("text/css")),
        other => HubError::not_found(format!("no file {other:?}")).error_response(),
    }
}

/// An embedded asset, cacheable, under a policy that allows nothing from elsewhere.
fn asset(body: &'static str, kind: ContentType) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(kind)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .body(body)
}

fn content_type(mime: &str) -> ContentType {
    ContentType(mime.parse().expect("a valid MIME type"))
}
