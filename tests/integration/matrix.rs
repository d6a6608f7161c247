//! The route × caller matrix: one table row per route of `src/api/mod.rs` saying which rule
//! guards it, and one hub on which every row is called by every kind of caller (nobody, a
//! token never issued, each role preset, a token with no permissions, the master token, a
//! federation peer, a peer token misused as a bearer token, and, where the row concerns
//! another agent's objects, another agent's token). The expected status of each call
//! follows from the row's rule and the caller alone (API.md, "Everywhere"):
//!
//! * 401: no credential, or one the hub never issued (routes that need none excepted);
//! * 403: an authenticated caller without the permission;
//! * 404, never 403: another agent's task, memory, pipeline or template;
//! * the row's own success status for everyone allowed, on a request built to succeed.
//!
//! `every_route_is_in_the_matrix` keeps the table and the route table in step.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use awc::http::Method;
use hmac::{Hmac, Mac};
use m3shd::domain::access::{role_permissions, ROLE_NAMES};
use m3shd::federation::TOKEN_HEADER;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::routes::route_table;
use crate::support::{TestHub, MASTER, SOON};

/// A well-formed agent token that was never issued.
const WRONG_TOKEN: &str = "m3shd_ag_0123456789abcdef0123456789abcdef";
/// The shared token of the peer registered at setup.
const PEER_TOKEN: &str = "matrix-peer-shared-token";
/// The agent that owns "another agent's" objects.
const ALPHA: &str = "mx-alpha";
/// The agent other tokens are bound to: never the owner of anything the rows use.
const OTHER: &str = "mx-other";
/// Where tasks created by the rows themselves are pinned (and hand-offs go).
const BETA: &str = "mx-beta";
const LOGIN_USER: &str = "matrix-login";
const LOGIN_PASSWORD: &str = "matrix-login-password";

/// What guards a route.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// No credential needed. A credential the hub never issued may be refused (401) or
    /// ignored; either is accepted.
    Anonymous,
    /// Any valid credential.
    Authenticated,
    /// Any valid credential, or a federation peer's shared token in the peer header.
    AuthenticatedOrPeer,
    /// A valid credential holding this permission (the master token holds all).
    Permission(&'static str),
    /// A valid credential holding at least one of these permissions.
    AnyPermission(&'static [&'static str]),
    /// The master token only.
    Master,
    /// The master token, or a token holding every permission of the admin preset.
    Admin,
    /// A federation peer: its shared token in the peer header. Hub credentials (even the
    /// master token) are no credential here.
    PeerToken,
    /// The webhook's own secret (`X-Webhook-Secret`) or GitHub signature; hub credentials
    /// (even the master token) are no credential here.
    WebhookSecret,
    /// An agent's own credential (a token bound to its agent that holds
    /// `agents:register`): seed 002's runtime API. The master token has no agent (403).
    OwnAgent,
}

/// Whether the row acts on an object that belongs to one agent.
#[derive(Debug, Clone, Copy)]
enum Vis {
    /// Not another agent's object.
    Open,
    /// Another agent's object: a token of another agent holding this preset gets 404,
    /// never 403 (the object does not exist for it).
    Hidden(&'static str),
    /// Like `Hidden`, but an Admin caller reaches other callers' objects too (the admin
    /// preset is given someone else's object on such a row).
    HiddenButAdmin(&'static str),
    /// Acting as another agent (register, heartbeat): a token of another agent holding
    /// this preset gets 403.
    SelfOnly(&'static str),
    /// About one agent but readable by every caller the rule admits: a token of another
    /// agent holding this preset succeeds (reputation: "any valid token" in seed 000).
    Public(&'static str),
}

impl Vis {
    fn other_preset(self) -> Option<&'static str> {
        match self {
            Vis::Open => None,
            Vis::Hidden(p) | Vis::HiddenButAdmin(p) | Vis::SelfOnly(p) | Vis::Public(p) => Some(p),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum TaskState {
    Assigned,
    Running,
    Done,
}

/// How the path parameters (and body placeholders) of a row are filled, fresh for every
/// call, so that what one permitted caller changes or deletes no other call needs. The
/// "owner" is the caller's own agent, or `ALPHA` for callers without one (and for the
/// other agent, whose point is that the object is not its own).
#[derive(Debug, Clone, Copy)]
enum Fill {
    /// A fixed path.
    Nothing,
    /// `{file}`: an asset of the API reference page.
    DocsAsset,
    /// `{file}`: a file of the operator dashboard.
    DashboardAsset,
    /// `{agent_id}`: the owner's agent (registered at setup).
    Agent,
    /// `{id}`: the owner's agent by its numeric id.
    AgentNumber,
    /// `{id}`: a freshly registered agent nobody else uses.
    FreshAgent,
    /// `{agent_id}`, `{key}`: a fresh entry in the owner's memory.
    Memory,
    /// `{id}`: a fresh task (created by master) assigned to the owner, in this state.
    Task(TaskState),
    /// `{id}`: a fresh pipeline created for the owner.
    Pipeline,
    /// `{id}`: a fresh template, made by the owner if it may make one, else by master.
    Template,
    /// `{id}`: a fresh open escalation.
    Escalation,
    /// `{id}`: a fresh viewer account.
    User,
    /// `{id}`: a fresh pending approval of a running task the owner holds.
    Approval,
    /// `{name}`: a fresh webhook (its secret goes to the webhook caller).
    Webhook,
    /// `{name}`: a fresh peer.
    Peer,
    /// `{hash}`: a freshly issued token.
    Token,
    /// `{username}`, `{password}`: the account made at setup.
    Login,
    /// `{id}`, `{token}`: a fresh registration token (seed 002).
    RegistrationToken,
    /// `{verification_code}`, `{device_code}`: a fresh pending preregistration.
    Preregistration,
    /// The same, approved by master.
    ApprovedPreregistration,
    /// `{id}`, `{agent_id}`, `{recovery}`: a freshly onboarded agent and its recovery
    /// credential.
    Onboarded,
    /// `{item_id}`: an inbox item id nobody has.
    MissingItem,
    /// `{exchange_id}`: a fresh MESS exchange, open to registration (seed 003).
    Exchange,
    /// `{exchange_id}`, `{executor_id}`, `{ref}`: a fresh exchange with one executor and
    /// one pending request of it.
    ExchangeRequest,
}

/// A check of an allowed caller's body beyond its status.
#[derive(Debug, Clone, Copy)]
enum Check {
    None,
    /// The agent status map only for callers holding `agents:read`.
    HealthAgents,
    /// The peer list only for Admin callers.
    PeersOnlyForAdmin,
    /// Escalations of tasks the caller cannot see are left out.
    EscalationsOfVisibleTasks,
}

/// One route: how it is guarded, how the test builds a request an allowed caller
/// succeeds with, and the status that success is.
#[derive(Debug, Clone, Copy)]
struct Row {
    method: &'static str,
    path: &'static str,
    rule: Rule,
    ok: u16,
    vis: Vis,
    fill: Fill,
    /// JSON with `{n}` (a unique number) and the fill's `{param}`s; `None` sends no body.
    body: Option<&'static str>,
    check: Check,
}

const fn row(method: &'static str, path: &'static str, rule: Rule, ok: u16) -> Row {
    Row {
        method,
        path,
        rule,
        ok,
        vis: Vis::Open,
        fill: Fill::Nothing,
        body: None,
        check: Check::None,
    }
}

impl Row {
    const fn fill(mut self, fill: Fill) -> Self {
        self.fill = fill;
        self
    }
    const fn body(mut self, body: &'static str) -> Self {
        self.body = Some(body);
        self
    }
    const fn vis(mut self, vis: Vis) -> Self {
        self.vis = vis;
        self
    }
    const fn check(mut self, check: Check) -> Self {
        self.check = check;
        self
    }
    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

use Fill::{
    Agent, AgentNumber, Escalation, FreshAgent, Login, Memory, Pipeline, Template, Token, User,
};
use Rule::{
    Anonymous, AnyPermission, Authenticated, AuthenticatedOrPeer, PeerToken, Permission as Perm,
    WebhookSecret,
};
use TaskState::{Assigned, Done, Running};
use Vis::{Hidden, HiddenButAdmin, Public, SelfOnly};

const GET: &str = "GET";
const POST: &str = "POST";
const PUT: &str = "PUT";
const DELETE: &str = "DELETE";
const PATCH: &str = "PATCH";

const READS_EVENTS: &[&str] = &["tasks:read", "agents:read", "messages:read", "admin:agents"];
const READS_TEMPLATES: &[&str] = &["tasks:read", "admin:templates"];
const READS_OVERVIEW: &[&str] = &["tasks:read", "agents:read"];

/// Every route, in the order of `src/api/mod.rs`.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    row(GET,    "/metrics",                                Perm("metrics:read"),      200),
    row(GET,    "/",                                       Anonymous,                 200),
    row(GET,    "/ui/{file}",                              Anonymous,                 200).fill(Fill::DashboardAsset),
    row(GET,    "/approve/{verification_code}",            Anonymous,                 303).fill(Fill::Preregistration),
    row(GET,    "/api/health",                             Anonymous,                 200).check(Check::HealthAgents),
    row(GET,    "/api/version",                            Anonymous,                 200),
    row(GET,    "/api/system/status",                      Anonymous,                 200),
    row(GET,    "/api/overview",                           AnyPermission(READS_OVERVIEW), 200),
    row(GET,    "/api/me",                                 Anonymous,                 200),
    row(GET,    "/api/openapi.json",                       Anonymous,                 200),
    row(GET,    "/api/docs",                               Anonymous,                 200),
    row(GET,    "/api/docs/{file}",                        Anonymous,                 200).fill(Fill::DocsAsset),
    row(GET,    "/api/stream",                             AnyPermission(READS_EVENTS), 200),
    row(GET,    "/api/agents",                             Perm("agents:read"),       200),
    row(POST,   "/api/agents",                             Perm("agents:manage"),     201)
        .body(r#"{"name": "mx-made-{n}", "role": "qa", "config": {"model": "m"}}"#),
    row(PUT,    "/api/agents",                             Perm("agents:manage"),     200).fill(Agent)
        .body(r#"{"name": "{agent_id}", "last_activity": "matrix {n}"}"#),
    row(GET,    "/api/agents/comms",                       Perm("messages:read"),     200),
    row(POST,   "/api/agents/message",                     Perm("messages:write"),    201).fill(Agent)
        .body(r#"{"from": "{agent_id}", "to": "mx-beta", "content": "hello {n}", "type": "request"}"#),
    row(POST,   "/api/agents/sync",                        Perm("agents:manage"),     200),
    row(GET,    "/api/agents/{id}",                        Perm("agents:read"),       200).fill(AgentNumber).vis(Public("worker")),
    row(PUT,    "/api/agents/{id}",                        Perm("agents:manage"),     200).fill(AgentNumber)
        .body(r#"{"last_activity": "matrix {n}"}"#),
    row(DELETE, "/api/agents/{id}",                        Perm("agents:delete"),     200).fill(FreshAgent),
    row(GET,    "/api/agents/{id}/soul",                   Perm("agents:read"),       200).fill(AgentNumber).vis(Hidden("worker")),
    row(PUT,    "/api/agents/{id}/soul",                   Perm("agents:manage"),     200).fill(AgentNumber)
        .body(r#"{"soul_content": "steady {n}"}"#),
    row(POST,   "/api/agents/{id}/wake",                   Perm("agents:manage"),     200).fill(AgentNumber),
    row(POST,   "/api/agents/{agent_id}/register",         Perm("agents:register"),   200).fill(Agent).vis(SelfOnly("worker"))
        .body(r#"{"name": "{agent_id}", "capabilities": ["research"], "max_concurrent": 256}"#),
    row(POST,   "/api/agents/{agent_id}/heartbeat",        Perm("agents:register"),   200).fill(Agent).vis(SelfOnly("worker")),
    row(GET,    "/api/agents/{agent_id}/heartbeat",        Perm("agents:read"),       200).fill(Agent).vis(Hidden("worker")),
    row(POST,   "/api/agents/{agent_id}/memory",           Perm("memory:write"),      201).fill(Agent).vis(Hidden("worker"))
        .body(r#"{"key": "note-{n}", "value": "the build needs --locked"}"#),
    row(GET,    "/api/agents/{agent_id}/memory",           Perm("memory:read"),       200).fill(Agent).vis(Hidden("worker")),
    row(PUT,    "/api/agents/{agent_id}/memory",           Perm("memory:write"),      200).fill(Agent).vis(Hidden("worker"))
        .body(r#"{"memory": {"plan-{n}": "ship it", "steps": [1, 2]}}"#),
    row(GET,    "/api/agents/{agent_id}/memory/{key}",     Perm("memory:read"),       200).fill(Memory).vis(Hidden("worker")),
    row(DELETE, "/api/agents/{agent_id}/memory/{key}",     Perm("memory:write"),      200).fill(Memory).vis(Hidden("worker")),
    row(GET,    "/api/agents/{agent_id}/reputation",       Authenticated,             200).fill(Agent).vis(Public("worker")),
    row(GET,    "/api/admin/reputation/leaderboard",       Rule::Master,              200),
    row(POST,   "/api/admin/webhooks",                     Rule::Master,              201).body(r#"{"name": "wh-new-{n}"}"#),
    row(GET,    "/api/admin/webhooks",                     Rule::Master,              200),
    row(DELETE, "/api/admin/webhooks/{name}",              Rule::Master,              200).fill(Fill::Webhook),
    row(POST,   "/api/webhooks/{name}",                    WebhookSecret,             201).fill(Fill::Webhook)
        .body(r#"{"title": "Disk almost full", "prompt": "free some space"}"#),
    row(POST,   "/api/webhooks/{name}/github",             WebhookSecret,             200).fill(Fill::Webhook)
        .body(r#"{"zen": "Keep it logically awesome.", "hook_id": 1}"#),
    row(POST,   "/api/login",                              Anonymous,                 200).fill(Login)
        .body(r#"{"username": "{username}", "password": "{password}"}"#),
    row(POST,   "/api/logout",                             Anonymous,                 204),
    row(POST,   "/api/admin/users",                        Perm("admin:users"),       201)
        .body(r#"{"username": "user-{n}", "password": "a long enough password", "role": "viewer"}"#),
    row(GET,    "/api/admin/users",                        Perm("admin:users"),       200),
    row(PUT,    "/api/admin/users/{id}",                   Perm("admin:users"),       200).fill(User).body(r#"{"enabled": true}"#),
    row(DELETE, "/api/admin/users/{id}",                   Perm("admin:users"),       200).fill(User),
    row(GET,    "/api/admin/analytics/tasks",              Perm("admin:analytics"),   200),
    row(GET,    "/api/admin/analytics/costs",              Perm("admin:analytics"),   200),
    row(GET,    "/api/admin/analytics/agents",             Perm("admin:analytics"),   200),
    row(GET,    "/api/admin/analytics/metacognition",      Perm("admin:analytics"),   200),
    row(GET,    "/api/admin/analytics/summary",            Perm("admin:analytics"),   200),
    row(GET,    "/api/demo/agents",                        Anonymous,                 200),
    row(GET,    "/api/demo/tasks",                         Anonymous,                 200),
    row(GET,    "/api/demo/health",                        Anonymous,                 200),
    row(POST,   "/api/admin/peers",                        Rule::Master,              201)
        .body(r#"{"name": "peer-new-{n}", "url": "http://127.0.0.1:9", "token": "peer-token-{n}"}"#),
    row(GET,    "/api/admin/peers",                        Rule::Master,              200),
    row(DELETE, "/api/admin/peers/{name}",                 Rule::Master,              200).fill(Fill::Peer),
    row(POST,   "/api/admin/peers/{name}/ping",            Rule::Master,              200).fill(Fill::Peer),
    row(GET,    "/api/federation/status",                  AuthenticatedOrPeer,       200).check(Check::PeersOnlyForAdmin),
    row(POST,   "/api/federation/tasks",                   PeerToken,                 201)
        .body(r#"{"title": "Relayed", "prompt": "from a peer", "hop_count": 1}"#),
    // No relay exists to report on: an allowed peer gets the body's 400 (task_id missing).
    row(POST,   "/api/federation/results",                 PeerToken,                 400).body(r#"{"status": "done"}"#),
    row(POST,   "/api/messages",                           Perm("messages:write"),    201)
        .body(r#"{"content": "hello from the matrix", "channel": "matrix"}"#),
    row(GET,    "/api/messages",                           Perm("messages:read"),     200),
    row(POST,   "/api/tasks",                              Perm("tasks:create"),      201)
        .body(r#"{"title": "Matrix {n}", "prompt": "check one cell", "assign_to": "mx-beta"}"#),
    row(GET,    "/api/tasks",                              Perm("tasks:read"),        200),
    row(GET,    "/api/tasks/{id}",                         Perm("tasks:read"),        200).fill(Fill::Task(Assigned)).vis(Hidden("worker")),
    row(PUT,    "/api/tasks/{id}",                         Perm("tasks:update"),      200).fill(Fill::Task(Assigned)).vis(Hidden("worker"))
        .body(r#"{"status": "running"}"#),
    row(GET,    "/api/tasks/{id}/deps",                    Perm("tasks:read"),        200).fill(Fill::Task(Assigned)).vis(Hidden("worker")),
    row(POST,   "/api/tasks/{id}/stream",                  Perm("tasks:execute"),     201).fill(Fill::Task(Assigned)).vis(Hidden("worker"))
        .body(r#"{"chunk": "partial output"}"#),
    row(GET,    "/api/tasks/{id}/stream",                  Perm("tasks:read"),        200).fill(Fill::Task(Assigned)).vis(Hidden("worker")),
    row(POST,   "/api/tasks/{id}/handoff",                 Perm("tasks:update"),      200).fill(Fill::Task(Assigned)).vis(Hidden("worker"))
        .body(r#"{"to": "mx-beta", "reason": "busy"}"#),
    row(POST,   "/api/tasks/{id}/approvals",               Perm("tasks:execute"),     201).fill(Fill::Task(Running)).vis(Hidden("worker"))
        .body(r#"{"tool": "deploy", "input": "kubectl apply", "reason": "ship it"}"#),
    row(GET,    "/api/approvals",                          Perm("tasks:read"),        200),
    row(GET,    "/api/approvals/{id}",                     Perm("tasks:read"),        200).fill(Fill::Approval).vis(Hidden("worker")),
    row(POST,   "/api/approvals/{id}",                     Perm("approvals:decide"),  200).fill(Fill::Approval).vis(Hidden("operator"))
        .body(r#"{"decision": "allow", "note": "looks fine"}"#),
    row(POST,   "/api/tasks/{id}/verify",                  Rule::Master,              200).fill(Fill::Task(Done)),
    row(GET,    "/api/tasks/{id}/provenance",              Rule::Master,              200).fill(Fill::Task(Done)),
    row(POST,   "/api/pipelines",                          Perm("pipelines:create"),  201)
        .body(r#"{"name": "pipe-{n}", "tasks": [{"title": "one", "prompt": "first", "assign_to": "mx-beta"}]}"#),
    row(GET,    "/api/pipelines",                          Perm("tasks:read"),        200),
    row(GET,    "/api/pipelines/{id}",                     Perm("tasks:read"),        200).fill(Pipeline).vis(Hidden("worker")),
    row(POST,   "/api/pipelines/{id}/cancel",              Perm("tasks:update"),      200).fill(Pipeline).vis(Hidden("worker")),
    row(POST,   "/api/templates",                          Perm("admin:templates"),   201)
        .body(r#"{"name": "tpl-{n}", "title": "From a template", "prompt": "do it", "assign_to": "mx-beta"}"#),
    row(GET,    "/api/templates",                          AnyPermission(READS_TEMPLATES), 200),
    row(GET,    "/api/templates/{id}",                     AnyPermission(READS_TEMPLATES), 200).fill(Template),
    row(DELETE, "/api/templates/{id}",                     Perm("admin:templates"),   200).fill(Template).vis(HiddenButAdmin("operator")),
    row(POST,   "/api/templates/{id}/dispatch",            Perm("tasks:create"),      201).fill(Template),
    row(POST,   "/api/admin/exchanges",                    Perm("admin:agents"),      201)
        .body(r#"{"exchange_id": "made-{n}", "open_registration": true}"#),
    row(GET,    "/api/admin/exchanges",                    Perm("admin:agents"),      200),
    row(PATCH,  "/api/admin/exchanges/{exchange_id}",      Perm("admin:agents"),      200).fill(Fill::Exchange)
        .body(r#"{"open_registration": false}"#),
    row(DELETE, "/api/admin/exchanges/{exchange_id}",      Perm("admin:agents"),      200).fill(Fill::Exchange),
    row(POST,   "/api/v1/exchanges/{exchange_id}/register", Anonymous,                201).fill(Fill::Exchange)
        .body(r#"{"executor_id": "joined-{n}", "capabilities": ["photo:capture"]}"#),
    row(GET,    "/api/v1/exchanges/{exchange_id}/requests", Rule::Admin,              200).fill(Fill::Exchange),
    row(POST,   "/api/v1/exchanges/{exchange_id}/requests", Rule::Admin,              201).fill(Fill::Exchange)
        .body(r#"{"intent": "check the door {n}"}"#),
    row(GET,    "/api/v1/exchanges/{exchange_id}/requests/{ref}", Rule::Admin,        200).fill(Fill::ExchangeRequest),
    row(PATCH,  "/api/v1/exchanges/{exchange_id}/requests/{ref}", Rule::Admin,        200).fill(Fill::ExchangeRequest)
        .body(r#"{"status": "cancelled"}"#),
    row(GET,    "/api/v1/exchanges/{exchange_id}/executors", Rule::Admin,             200).fill(Fill::Exchange),
    row(PATCH,  "/api/v1/exchanges/{exchange_id}/executors/{executor_id}", Rule::Admin, 200).fill(Fill::ExchangeRequest)
        .body(r#"{"display_name": "renamed {n}"}"#),
    row(PUT,    "/api/templates/{id}/schedule",            Perm("admin:templates"),   200).fill(Template).vis(HiddenButAdmin("operator"))
        .body(r#"{"cron": "30 8 * * 1-5", "time_zone": "Europe/Paris", "paused": true}"#),
    row(DELETE, "/api/templates/{id}/schedule",            Perm("admin:templates"),   200).fill(Template).vis(HiddenButAdmin("operator")),
    row(GET,    "/api/templates/{id}/occurrences",         AnyPermission(READS_TEMPLATES), 200).fill(Template),
    row(POST,   "/api/escalations",                        Perm("escalations:create"), 201).fill(Fill::Task(Assigned)).vis(Hidden("worker"))
        .body(r#"{"task_id": {id}, "reason": "stuck on a flaky test"}"#),
    row(GET,    "/api/escalations",                        Perm("escalations:read"),  200).check(Check::EscalationsOfVisibleTasks),
    row(POST,   "/api/escalations/{id}/resolve",           Perm("escalations:resolve"), 200).fill(Escalation).vis(Hidden("operator"))
        .body(r#"{"resolution": "fixed"}"#),
    row(POST,   "/api/admin/tokens",                       Rule::Master,              201).body(r#"{"agent_id": "mx-spare", "role": "viewer"}"#),
    row(GET,    "/api/admin/tokens",                       Rule::Master,              200),
    row(PUT,    "/api/admin/tokens/{hash}/permissions",    Rule::Master,              200).fill(Token).body(r#"{"role": "viewer"}"#),
    row(DELETE, "/api/admin/tokens/{hash}",                Rule::Master,              200).fill(Token),
    row(GET,    "/api/admin/roles",                        Rule::Master,              200),
    row(GET,    "/api/admin/kill-switch",                  Perm("admin:kill_switch"), 200),
    // `"active": false` clears the switch, so an allowed call stops no other row's work.
    row(POST,   "/api/admin/kill-switch",                  Perm("admin:kill_switch"), 200).body(r#"{"active": false, "reason": "matrix"}"#),
    row(DELETE, "/api/admin/kill-switch",                  Perm("admin:kill_switch"), 200),
    row(GET,    "/api/admin/audit",                        Perm("admin:audit"),       200),
    row(GET,    "/api/admin/audit/export",                 Perm("admin:audit"),       200),
    row(GET,    "/api/admin/budget",                       Rule::Master,              200),
    row(POST,   "/api/admin/budget/reset",                 Rule::Master,              200),
    row(POST,   "/api/admin/registration-tokens",          Perm("admin:agents"),      201).body(r#"{"name": "laptop {n}"}"#),
    row(GET,    "/api/admin/registration-tokens",          Perm("admin:agents"),      200),
    row(DELETE, "/api/admin/registration-tokens/{id}",     Perm("admin:agents"),      204).fill(Fill::RegistrationToken),
    row(POST,   "/api/v1/agent-preregistrations",          Anonymous,                 201).fill(Fill::RegistrationToken)
        .body(r#"{"registrationToken": "{token}", "requestedName": "mx-joiner-{n}", "requestedRuntimeType": "CLI", "bindSecret": "matrix-bind"}"#),
    row(GET,    "/api/v1/agent-preregistrations",          Perm("admin:agents"),      200),
    row(POST,   "/api/v1/agent-preregistrations/poll",     Anonymous,                 200).fill(Fill::Preregistration)
        .body(r#"{"deviceCode": "{device_code}"}"#),
    row(POST,   "/api/v1/agent-preregistrations/{verification_code}/approve", Perm("admin:agents"), 200).fill(Fill::Preregistration),
    row(POST,   "/api/v1/agent-preregistrations/{verification_code}/deny",    Perm("admin:agents"), 200).fill(Fill::Preregistration),
    row(POST,   "/api/v1/agent-auth/finalize-activation",  Anonymous,                 201).fill(Fill::ApprovedPreregistration)
        .body(r#"{"verificationCode": "{verification_code}", "deviceCode": "{device_code}", "bindSecret": "matrix-bind"}"#),
    row(POST,   "/api/v1/agent-auth/runtime-recover",      Anonymous,                 200).fill(Fill::Onboarded)
        .body(r#"{"agentId": "{agent_id}", "recoveryCredential": "{recovery}"}"#),
    row(PATCH,  "/api/v1/agents/{id}",                     Perm("admin:agents"),      200).fill(FreshAgent).body(r#"{"status": "PAUSED"}"#),
    row(POST,   "/api/v1/agents/{id}/rotate-credential",   Perm("admin:agents"),      200).fill(Fill::Onboarded),
    // The matrix's agents joined with seed 000 tokens, not by onboarding: an agent's own
    // credential reaches the handler, which has no runtime profile for it (404).
    row(GET,    "/api/v1/runtime/me",                      Rule::OwnAgent,            404),
    row(PATCH,  "/api/v1/runtime/me",                      Rule::OwnAgent,            404).body(r#"{"description": "matrix {n}"}"#),
    // No such item in any inbox: an allowed caller passes the (absent) lease and gets 404.
    row(POST,   "/api/v1/runtime/inbox/{item_id}/ack",     Rule::OwnAgent,            404).fill(Fill::MissingItem),
    // Last: a pull opens a consumer lease, which fences the agent's later writes.
    row(GET,    "/api/v1/runtime/inbox/next",              Rule::OwnAgent,            200),
    row(POST,   "/api/v1/runtime/inbox/next",              Rule::OwnAgent,            200),
];

#[test]
fn every_route_is_in_the_matrix() {
    let (routes, unreadable) = route_table();
    assert!(
        unreadable.is_empty(),
        "routes in src/api/mod.rs the matrix cannot read: {unreadable:#?}"
    );
    assert!(
        routes.len() > 50,
        "the route table parsed to only {routes:?}"
    );
    let in_source: BTreeSet<(String, String)> = routes.iter().cloned().collect();
    let mut in_table = BTreeSet::new();
    let mut duplicates = Vec::new();
    for row in TABLE {
        if !in_table.insert((row.method.to_string(), row.path.to_string())) {
            duplicates.push(row.name());
        }
    }
    let missing: Vec<String> = in_source
        .difference(&in_table)
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    let stale: Vec<String> = in_table
        .difference(&in_source)
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty() && duplicates.is_empty(),
        "the matrix and src/api/mod.rs disagree.\n\
         routes missing from the matrix: {missing:#?}\n\
         matrix rows with no such route: {stale:#?}\n\
         rows listed twice: {duplicates:#?}"
    );
}

/// The kinds of caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// No credential at all.
    Nobody,
    /// A well-formed token the hub never issued.
    WrongToken,
    /// An issued token with a role preset, bound to its own agent.
    Preset,
    /// An issued token with an empty permission list.
    NoPermissions,
    /// The master token.
    Master,
    /// A federation peer: its shared token in the peer header, no bearer token.
    Peer,
    /// The peer's shared token sent as a bearer token: not a hub credential.
    PeerAsBearer,
    /// Another agent's token (visibility rows only): the object is `ALPHA`'s.
    OtherAgent,
    /// The holder of the webhook's secret (webhook rows only), no bearer token.
    Webhook,
}

#[derive(Debug, Clone)]
struct Caller {
    label: String,
    who: Who,
    token: Option<String>,
    agent: Option<String>,
    /// The token's permissions; empty for callers without a token, unused for master.
    permissions: BTreeSet<String>,
}

impl Caller {
    fn plain(label: &str, who: Who, token: Option<&str>) -> Self {
        Self {
            label: label.into(),
            who,
            token: token.map(String::from),
            agent: None,
            permissions: BTreeSet::new(),
        }
    }

    /// An authenticated hub credential (a token or the master token).
    fn authenticated(&self) -> bool {
        matches!(
            self.who,
            Who::Preset | Who::NoPermissions | Who::Master | Who::OtherAgent
        )
    }

    fn can(&self, permission: &str) -> bool {
        match self.who {
            Who::Master => true,
            _ if self.authenticated() => self.permissions.contains(permission),
            _ => false,
        }
    }

    fn is_admin(&self) -> bool {
        self.who == Who::Master
            || (self.authenticated()
                && role_permissions("admin")
                    .expect("the admin preset")
                    .iter()
                    .all(|p| self.can(p)))
    }

    /// Whether an authenticated caller passes `rule` (before any visibility question).
    fn passes(&self, rule: Rule) -> bool {
        match rule {
            Rule::Anonymous | Rule::Authenticated | Rule::AuthenticatedOrPeer => true,
            Rule::Permission(p) => self.can(p),
            Rule::AnyPermission(list) => list.iter().any(|p| self.can(p)),
            Rule::Master => self.who == Who::Master,
            Rule::Admin => self.is_admin(),
            Rule::PeerToken | Rule::WebhookSecret => false,
            Rule::OwnAgent => self.who != Who::Master && self.can("agents:register"),
        }
    }
}

/// What a call must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// The row's success status.
    Allowed,
    /// This refusal.
    Refused(u16),
    /// An Anonymous route called with a credential the hub never issued: the credential
    /// may be refused (401) or ignored (the row's success status).
    AllowedOr401,
}

impl Want {
    fn admits(self, status: u16, ok: u16) -> bool {
        match self {
            Want::Allowed => status == ok,
            Want::Refused(refusal) => status == refusal,
            Want::AllowedOr401 => status == ok || status == 401,
        }
    }

    fn describe(self, ok: u16) -> String {
        match self {
            Want::Allowed => ok.to_string(),
            Want::Refused(refusal) => refusal.to_string(),
            Want::AllowedOr401 => format!("{ok} or 401"),
        }
    }
}

fn want(row: &Row, caller: &Caller) -> Want {
    match (row.rule, caller.who) {
        (Rule::Anonymous, Who::WrongToken | Who::PeerAsBearer) => return Want::AllowedOr401,
        (Rule::Anonymous, _) => return Want::Allowed,
        (Rule::PeerToken, Who::Peer) | (Rule::WebhookSecret, Who::Webhook) => return Want::Allowed,
        (Rule::PeerToken | Rule::WebhookSecret, _) => return Want::Refused(401),
        (Rule::AuthenticatedOrPeer, Who::Peer) => return Want::Allowed,
        _ if !caller.authenticated() => return Want::Refused(401),
        _ => {}
    }
    if !caller.passes(row.rule) {
        return Want::Refused(403);
    }
    match (row.vis, caller.who) {
        (Vis::Hidden(_) | Vis::HiddenButAdmin(_), Who::OtherAgent) => Want::Refused(404),
        (Vis::SelfOnly(_), Who::OtherAgent) => Want::Refused(403),
        _ => Want::Allowed,
    }
}

/// The checks of a body beyond its status, for an allowed caller.
fn check_body(
    check: Check,
    caller: &Caller,
    body: &Value,
    hidden_escalation: i64,
) -> Result<(), String> {
    match check {
        Check::None => Ok(()),
        Check::HealthAgents => {
            let may = caller.can("agents:read");
            let shown = body.get("agents").is_some();
            match (may, shown) {
                (true, false) => {
                    Err("the agent map is missing for a caller with agents:read".into())
                }
                (false, true) => {
                    Err("the agent map is shown to a caller without agents:read".into())
                }
                _ => Ok(()),
            }
        }
        Check::PeersOnlyForAdmin => {
            let listed = body
                .get("peers")
                .and_then(Value::as_array)
                .is_some_and(|p| !p.is_empty());
            match (caller.passes(Rule::Admin), listed) {
                (true, false) => Err("an Admin caller does not see the peer list".into()),
                (false, true) => Err("the peer list is shown to a caller who is not Admin".into()),
                _ => Ok(()),
            }
        }
        Check::EscalationsOfVisibleTasks => {
            let listed = body["escalations"]
                .as_array()
                .ok_or("no escalations list")?
                .iter()
                .any(|e| e["id"].as_i64() == Some(hidden_escalation));
            match (caller.who == Who::Master, listed) {
                (true, false) => Err(format!("master does not see escalation {hidden_escalation}")),
                (false, true) => Err(format!(
                    "escalation {hidden_escalation} (on {ALPHA}'s task) is shown to a caller who cannot see the task"
                )),
                _ => Ok(()),
            }
        }
    }
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A request filled in for one call.
struct Filled {
    params: BTreeMap<&'static str, String>,
    /// The webhook's secret, for the webhook caller.
    secret: Option<String>,
}

impl Filled {
    fn apply(&self, template: &str, n: u64) -> String {
        let mut text = template.replace("{n}", &n.to_string());
        for (name, value) in &self.params {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text
    }
}

/// The hub, its fixtures and the callers.
struct Matrix {
    hub: TestHub,
    client: awc::Client,
    serial: Cell<u64>,
    /// An escalation on a task of `ALPHA`'s, which only master may see listed.
    hidden_escalation: i64,
}

impl Matrix {
    fn next(&self) -> u64 {
        let n = self.serial.get() + 1;
        self.serial.set(n);
        n
    }

    async fn issue(&self, agent: &str, body: Value) -> (String, BTreeSet<String>) {
        let mut body = body;
        body["agent_id"] = json!(agent);
        let issued = self
            .hub
            .post("/api/admin/tokens", MASTER, body)
            .await
            .expect(201);
        let permissions = issued["permissions"]
            .as_array()
            .expect("permissions in the issue reply")
            .iter()
            .map(|p| p.as_str().expect("a permission").to_string())
            .collect();
        (
            issued["token"].as_str().expect("token").to_string(),
            permissions,
        )
    }

    /// A fresh registration token: (id, raw token).
    async fn registration_token(&self) -> (String, String) {
        let made = self
            .hub
            .post("/api/admin/registration-tokens", MASTER, json!({}))
            .await
            .expect(201);
        let token = made["registrationToken"]
            .as_str()
            .expect("registrationToken");
        (made["id"].to_string(), token.to_string())
    }

    /// A fresh pending preregistration: (verification code, device code).
    async fn preregistration(&self, n: u64) -> (String, String) {
        let (_, token) = self.registration_token().await;
        let body = json!({
            "registrationToken": token,
            "requestedName": format!("mx-joining-{n}"),
            "requestedRuntimeType": "DAEMON",
            "bindSecret": "matrix-bind",
        });
        let made = self
            .hub
            .post("/api/v1/agent-preregistrations", MASTER, body)
            .await
            .expect(201);
        let code = |field: &str| made[field].as_str().expect(field).to_string();
        (code("verification_code"), code("device_code"))
    }

    async fn register(&self, agent: &str) {
        let body = json!({ "name": agent, "capabilities": ["research"], "max_concurrent": 256 });
        self.hub
            .post(&format!("/api/agents/{agent}/register"), MASTER, body)
            .await
            .expect(200);
    }

    async fn token_caller(&self, label: &str, who: Who, agent: &str, body: Value) -> Caller {
        let (token, permissions) = self.issue(agent, body).await;
        Caller {
            label: label.into(),
            who,
            token: Some(token),
            agent: Some(agent.into()),
            permissions,
        }
    }

    /// A fresh task created by master and assigned to `agent`.
    async fn task_for(&self, agent: &str, state: TaskState) -> i64 {
        let n = self.next();
        let created = self
            .hub
            .task(json!({ "title": format!("matrix task {n}"), "prompt": "hold this", "assign_to": agent }))
            .await;
        let id = created["id"].as_i64().expect("task id");
        let assigned = self
            .hub
            .eventually(SOON, || async {
                self.hub.task_status(id).await["assigned_to"] == agent
            })
            .await;
        assert!(assigned, "fixture task {id} was never assigned to {agent}");
        let path = format!("/api/tasks/{id}");
        if let TaskState::Running | TaskState::Done = state {
            self.hub
                .put(&path, MASTER, json!({ "status": "running" }))
                .await
                .expect(200);
        }
        if let TaskState::Done = state {
            self.hub
                .put(
                    &path,
                    MASTER,
                    json!({ "status": "done", "output": "finished" }),
                )
                .await
                .expect(200);
        }
        id
    }

    /// The parameters of one call of `row` by `caller`, with fresh objects where needed.
    async fn fill(&self, row: &Row, caller: &Caller) -> Filled {
        // Whose object the call is about: the caller's own, unless it has no agent, is the
        // other agent (the point of which is a foreign object), or is an Admin on a row
        // where Admin reaches others' objects.
        let own = match (caller.who, row.vis) {
            (Who::Preset, Vis::HiddenButAdmin(_)) if caller.is_admin() => None,
            (Who::Preset | Who::NoPermissions, _) => Some(caller),
            _ => None,
        };
        let owner = own
            .and_then(|c| c.agent.clone())
            .unwrap_or_else(|| ALPHA.into());
        let mut params = BTreeMap::new();
        let mut secret = None;
        let n = self.next();
        match row.fill {
            Fill::Nothing => {}
            Fill::DocsAsset => {
                params.insert("file", "docs.js".to_string());
            }
            Fill::DashboardAsset => {
                params.insert("file", "app.js".to_string());
            }
            Fill::Agent => {
                params.insert("agent_id", owner);
            }
            Fill::AgentNumber => {
                let shown = self
                    .hub
                    .get(&format!("/api/agents/{owner}"), MASTER)
                    .await
                    .expect(200);
                params.insert("id", shown["agent"]["id"].to_string());
            }
            Fill::FreshAgent => {
                let agent = format!("mx-gone-{n}");
                self.register(&agent).await;
                params.insert("id", agent);
            }
            Fill::Memory => {
                let key = format!("fact-{n}");
                let body = json!({ "key": key, "value": "remembered" });
                self.hub
                    .post(&format!("/api/agents/{owner}/memory"), MASTER, body)
                    .await
                    .expect(201);
                params.insert("agent_id", owner);
                params.insert("key", key);
            }
            Fill::Task(state) => {
                params.insert("id", self.task_for(&owner, state).await.to_string());
            }
            Fill::Approval => {
                let task = self.task_for(&owner, TaskState::Running).await;
                let body = json!({ "tool": "deploy", "reason": format!("check {n}") });
                let made = self
                    .hub
                    .post(&format!("/api/tasks/{task}/approvals"), MASTER, body)
                    .await
                    .expect(201);
                params.insert("id", made["id"].to_string());
            }
            Fill::Pipeline => {
                let body = json!({
                    "name": format!("owned-{n}"),
                    "created_by": owner,
                    "tasks": [{ "title": "step", "prompt": "one step", "assign_to": BETA }],
                });
                let made = self
                    .hub
                    .post("/api/pipelines", MASTER, body)
                    .await
                    .expect(201);
                params.insert("id", made["pipeline_id"].to_string());
            }
            Fill::Template => {
                let maker = own
                    .filter(|c| c.can("admin:templates"))
                    .and_then(|c| c.token.clone())
                    .unwrap_or_else(|| MASTER.into());
                // Scheduled but paused: its schedule can be changed or removed, and never fires.
                let schedule = json!({ "cron": "0 9 * * *", "paused": true });
                let body = json!({ "name": format!("tpl-fixture-{n}"), "title": "Templated", "prompt": "from a template", "assign_to": BETA, "schedule": schedule });
                let made = self
                    .hub
                    .post("/api/templates", &maker, body)
                    .await
                    .expect(201);
                params.insert("id", made["id"].to_string());
            }
            Fill::Escalation => {
                // Names the caller's agent, so the caller (and no other agent) sees it.
                let body = json!({ "agent_id": owner, "reason": format!("look at this ({n})") });
                let made = self
                    .hub
                    .post("/api/escalations", MASTER, body)
                    .await
                    .expect(201);
                params.insert("id", made["id"].to_string());
            }
            Fill::User => {
                let body = json!({ "username": format!("fixture-user-{n}"), "password": "a long enough password", "role": "viewer" });
                let made = self
                    .hub
                    .post("/api/admin/users", MASTER, body)
                    .await
                    .expect(201);
                params.insert("id", made["id"].to_string());
            }
            Fill::Webhook => {
                let name = format!("wh-{n}");
                let made = self
                    .hub
                    .post("/api/admin/webhooks", MASTER, json!({ "name": name }))
                    .await
                    .expect(201);
                secret = Some(made["secret"].as_str().expect("secret").to_string());
                params.insert("name", name);
            }
            Fill::Exchange | Fill::ExchangeRequest => {
                let exchange = format!("mx-{n}");
                let body = json!({ "exchange_id": exchange, "open_registration": true });
                self.hub
                    .post("/api/admin/exchanges", MASTER, body)
                    .await
                    .expect(201);
                if matches!(row.fill, Fill::ExchangeRequest) {
                    let executor = format!("ex-{n}");
                    let path = format!("/v1/exchanges/{exchange}");
                    let registered = self
                        .hub
                        .post(
                            &format!("/api{path}/register"),
                            "",
                            json!({ "executor_id": executor }),
                        )
                        .await
                        .expect(201);
                    let key = registered["api_key"].as_str().unwrap().to_string();
                    let made = self
                        .hub
                        .post(
                            &format!("/api{path}/requests"),
                            &key,
                            json!({ "intent": format!("look at {n}") }),
                        )
                        .await
                        .expect(201);
                    params.insert("ref", made["ref"].as_str().unwrap().to_string());
                    params.insert("executor_id", executor);
                }
                params.insert("exchange_id", exchange);
            }
            Fill::Peer => {
                let name = format!("peer-{n}");
                let body = json!({ "name": name, "url": "http://127.0.0.1:9", "token": format!("peer-fixture-{n}") });
                self.hub
                    .post("/api/admin/peers", MASTER, body)
                    .await
                    .expect(201);
                params.insert("name", name);
            }
            Fill::Token => {
                let body = json!({ "agent_id": "mx-spare", "role": "viewer" });
                let made = self
                    .hub
                    .post("/api/admin/tokens", MASTER, body)
                    .await
                    .expect(201);
                params.insert("hash", made["hash"].as_str().expect("hash").to_string());
            }
            Fill::Login => {
                params.insert("username", LOGIN_USER.into());
                params.insert("password", LOGIN_PASSWORD.into());
            }
            Fill::RegistrationToken => {
                let (id, token) = self.registration_token().await;
                params.insert("id", id);
                params.insert("token", token);
            }
            Fill::Preregistration | Fill::ApprovedPreregistration => {
                let (verification, device) = self.preregistration(n).await;
                if let Fill::ApprovedPreregistration = row.fill {
                    let path = format!("/api/v1/agent-preregistrations/{verification}/approve");
                    self.hub.post(&path, MASTER, json!({})).await.expect(200);
                }
                params.insert("verification_code", verification);
                params.insert("device_code", device);
            }
            Fill::Onboarded => {
                let (verification, device) = self.preregistration(n).await;
                let path = format!("/api/v1/agent-preregistrations/{verification}/approve");
                self.hub.post(&path, MASTER, json!({})).await.expect(200);
                let body = json!({ "verificationCode": verification, "deviceCode": device, "bindSecret": "matrix-bind" });
                let made = self
                    .hub
                    .post("/api/v1/agent-auth/finalize-activation", MASTER, body)
                    .await
                    .expect(201);
                let agent = made["agentId"].as_str().expect("agentId").to_string();
                params.insert("id", agent.clone());
                params.insert("agent_id", agent);
                let recovery = made["runtimeRecoveryCredential"]
                    .as_str()
                    .expect("recovery");
                params.insert("recovery", recovery.to_string());
            }
            Fill::MissingItem => {
                params.insert("item_id", "999999999".into());
            }
        }
        Filled { params, secret }
    }

    /// Sends one request as `caller`; an event stream's body is not read.
    async fn send(
        &self,
        method: &str,
        path: &str,
        caller: &Caller,
        body: Option<&str>,
        secret: Option<&str>,
    ) -> (u16, Value) {
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.hub.base));
        match caller.who {
            Who::Peer => request = request.insert_header((TOKEN_HEADER, PEER_TOKEN)),
            Who::PeerAsBearer => {
                request = request.insert_header(("Authorization", format!("Bearer {PEER_TOKEN}")))
            }
            Who::Webhook => {
                let secret = secret.expect("a webhook row fills a secret");
                request = if path.ends_with("/github") {
                    let signature = sign(secret, body.unwrap_or("").as_bytes());
                    request
                        .insert_header(("X-Hub-Signature-256", signature))
                        .insert_header(("X-GitHub-Event", "ping"))
                } else {
                    request.insert_header(("X-Webhook-Secret", secret))
                };
            }
            _ => {
                if let Some(token) = &caller.token {
                    request = request.insert_header(("Authorization", format!("Bearer {token}")));
                }
            }
        }
        let mut response = match body {
            Some(body) => request.send_body(body.to_string()).await,
            None => request.send().await,
        }
        .unwrap_or_else(|e| panic!("{path} did not answer: {e}"));
        let status = response.status().as_u16();
        let stream = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if stream {
            return (status, Value::Null);
        }
        let bytes = response.body().limit(16 * 1024 * 1024).await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

fn agents_file_in(dir: &std::path::Path) -> String {
    let path = dir.join("agents.toml");
    std::fs::write(
        &path,
        "[[agents]]\nname = \"mx-synced\"\nrole = \"qa\"\ncapabilities = [\"research\"]\n",
    )
    .expect("the agents file is written");
    path.to_string_lossy().into_owned()
}

/// The hub with its fixtures, the callers every row gets, the other agent's tokens by
/// preset, and the webhook caller.
async fn setup() -> (Matrix, Vec<Caller>, BTreeMap<&'static str, Caller>, Caller) {
    let hub = TestHub::spawn_with(|s| {
        s.demo_enabled = true;
        s.agents_file = agents_file_in(&s.data_dir());
        // Nothing goes offline (or loses its tasks) while the matrix runs.
        s.heartbeat_timeout = 3600;
    })
    .await;
    let matrix = Matrix {
        hub,
        client: awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .disable_redirects()
            .finish(),
        serial: Cell::new(0),
        hidden_escalation: 0,
    };
    let mut callers = vec![
        Caller::plain("no credential", Who::Nobody, None),
        Caller::plain("wrong token", Who::WrongToken, Some(WRONG_TOKEN)),
    ];
    for preset in ROLE_NAMES {
        let agent = format!("mx-{preset}");
        callers.push(
            matrix
                .token_caller(preset, Who::Preset, &agent, json!({ "role": preset }))
                .await,
        );
    }
    callers.push(
        matrix
            .token_caller(
                "no permissions",
                Who::NoPermissions,
                "mx-empty",
                json!({ "permissions": [] }),
            )
            .await,
    );
    callers.push(Caller::plain("master", Who::Master, Some(MASTER)));
    callers.push(Caller::plain("peer", Who::Peer, None));
    callers.push(Caller::plain(
        "peer token as bearer",
        Who::PeerAsBearer,
        None,
    ));

    let mut others = BTreeMap::new();
    for row in TABLE {
        if let Some(preset) = row.vis.other_preset() {
            if !others.contains_key(preset) {
                let label = format!("other agent's {preset}");
                let caller = matrix
                    .token_caller(&label, Who::OtherAgent, OTHER, json!({ "role": preset }))
                    .await;
                others.insert(preset, caller);
            }
        }
    }
    let webhook = Caller::plain("webhook secret", Who::Webhook, None);

    let agents = callers
        .iter()
        .filter_map(|c| c.agent.clone())
        .chain([ALPHA, BETA, OTHER].map(String::from));
    for agent in agents {
        matrix.register(&agent).await;
    }
    let peer = json!({ "name": "matrix-peer", "url": "http://127.0.0.1:9", "token": PEER_TOKEN });
    matrix
        .hub
        .post("/api/admin/peers", MASTER, peer)
        .await
        .expect(201);
    let user = json!({ "username": LOGIN_USER, "password": LOGIN_PASSWORD, "role": "viewer" });
    matrix
        .hub
        .post("/api/admin/users", MASTER, user)
        .await
        .expect(201);
    let task = matrix.task_for(ALPHA, TaskState::Assigned).await;
    let escalation = json!({ "task_id": task, "agent_id": ALPHA, "reason": "alpha is stuck" });
    let escalation = matrix
        .hub
        .post("/api/escalations", MASTER, escalation)
        .await
        .expect(201);
    let matrix = Matrix {
        hidden_escalation: escalation["id"].as_i64().expect("escalation id"),
        ..matrix
    };
    (matrix, callers, others, webhook)
}

#[actix_web::test]
async fn every_route_answers_every_caller_as_its_row_says() {
    let (matrix, callers, others, webhook) = setup().await;
    let mut failures = Vec::new();
    let mut checked = 0usize;
    for row in TABLE {
        let mut row_callers: Vec<&Caller> = callers.iter().collect();
        if let Some(preset) = row.vis.other_preset() {
            row_callers.push(&others[preset]);
        }
        if let Rule::WebhookSecret = row.rule {
            row_callers.push(&webhook);
        }
        for caller in row_callers {
            let filled = matrix.fill(row, caller).await;
            let n = matrix.next();
            let path = filled.apply(row.path, n);
            let body = row.body.map(|b| filled.apply(b, n));
            let (status, reply) = matrix
                .send(
                    row.method,
                    &path,
                    caller,
                    body.as_deref(),
                    filled.secret.as_deref(),
                )
                .await;
            checked += 1;
            let expected = want(row, caller);
            let (name, who) = (row.name(), &caller.label);
            if !expected.admits(status, row.ok) {
                let wanted = expected.describe(row.ok);
                failures.push(format!(
                    "{name} as {who}: got {status}, want {wanted} ({path}; {reply})"
                ));
            } else if status == row.ok && !matches!(expected, Want::Refused(_)) {
                if let Err(why) = check_body(row.check, caller, &reply, matrix.hidden_escalation) {
                    failures.push(format!("{name} as {who}: {why} ({reply})"));
                }
            }
        }
    }
    eprintln!(
        "route matrix: {} routes, {checked} (route, caller) calls checked",
        TABLE.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} calls over {} routes broke the matrix:\n{}",
        failures.len(),
        TABLE.len(),
        failures.join("\n")
    );
}
