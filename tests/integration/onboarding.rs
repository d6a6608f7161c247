//! Agent onboarding and the pull inbox (seed 002): a one-time registration token, the
//! device-code preregistration an owner approves or denies, finalize handing out the
//! runtime and recovery credentials, recovery and rotation, the agent states, the inbox
//! pulled and acknowledged under a consumer lease that fences every write, and an item
//! delivered again after the hub is killed between the pull and the ack.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use awc::http::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::process::serve;
use crate::support::{send_json, Reply, TestHub, MASTER, SOON};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const BIND: &str = "any-opaque-string";
const PULL: &str = "/api/v1/runtime/inbox/next";

/// A reply and its `Retry-After` header.
struct Answer {
    reply: Reply,
    retry_after: Option<String>,
}

/// One request to `base` with these headers and an optional JSON body (30 s allowed: long
/// enough for any long-poll the tests make), and its `Retry-After`.
async fn send_full(
    base: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let (reply, headers) =
        send_json(base, method, path, headers, body, Duration::from_secs(30)).await;
    let retry_after = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Answer { reply, retry_after }
}

/// One request to `base`, with an optional bearer token, `X-Consumer-Id` and JSON body.
async fn send(
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    consumer: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let bearer = token.map(|token| format!("Bearer {token}"));
    let headers: Vec<(&str, &str)> = [
        bearer.as_deref().map(|b| ("Authorization", b)),
        consumer.map(|c| ("X-Consumer-Id", c)),
    ]
    .into_iter()
    .flatten()
    .collect();
    send_full(base, method, path, &headers, body).await.reply
}

/// An anonymous POST (the bootstrap calls carry no credential), with its `Retry-After`.
async fn anon_full(hub: &TestHub, path: &str, body: Value) -> Answer {
    send_full(&hub.base, Method::POST, path, &[], Some(body)).await
}

async fn anon(hub: &TestHub, path: &str, body: Value) -> Reply {
    anon_full(hub, path, body).await.reply
}

/// `POST /api/admin/registration-tokens` as the master; the raw `mrt_…` token and the
/// answer.
async fn registration_token(hub: &TestHub, body: Value) -> (String, Value) {
    let issued = hub
        .post("/api/admin/registration-tokens", MASTER, body)
        .await
        .expect(201);
    let raw = issued["registrationToken"]
        .as_str()
        .expect("registrationToken in the answer")
        .to_string();
    (raw, issued)
}

/// The entry with this id in the owners' list at `path` (an array under `key`).
async fn listed(hub: &TestHub, path: &str, key: &str, id: &Value) -> Value {
    let list = hub.get(path, MASTER).await.expect(200);
    list[key]
        .as_array()
        .expect("a list")
        .iter()
        .find(|entry| &entry["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{key} {id} is not listed: {list}"))
}

/// The registration token with this id as the owners' list shows it.
async fn listed_token(hub: &TestHub, id: &Value) -> Value {
    listed(
        hub,
        "/api/admin/registration-tokens",
        "registrationTokens",
        id,
    )
    .await
}

async fn preregister(hub: &TestHub, token: &str, name: &str, bind: &str) -> Reply {
    anon(
        hub,
        "/api/v1/agent-preregistrations",
        json!({
            "registrationToken": token,
            "requestedName": name,
            "requestedCategory": "research",
            "requestedRuntimeType": "CLI",
            "requestedSkillsJson": "[\"research\", \"rust\"]",
            "bindSecret": bind,
        }),
    )
    .await
}

fn codes(prereg: &Value) -> (String, String) {
    (
        prereg["verification_code"]
            .as_str()
            .expect("verification_code")
            .to_string(),
        prereg["device_code"]
            .as_str()
            .expect("device_code")
            .to_string(),
    )
}

async fn poll(hub: &TestHub, device: &str) -> Answer {
    let body = json!({ "deviceCode": device });
    anon_full(hub, "/api/v1/agent-preregistrations/poll", body).await
}

async fn decide(hub: &TestHub, code: &str, decision: &str, token: &str) -> Reply {
    hub.post(
        &format!("/api/v1/agent-preregistrations/{code}/{decision}"),
        token,
        json!({}),
    )
    .await
}

async fn finalize(hub: &TestHub, prereg: &Value, bind: &str) -> Reply {
    let (code, device) = codes(prereg);
    anon(
        hub,
        "/api/v1/agent-auth/finalize-activation",
        json!({ "verificationCode": code, "deviceCode": device, "bindSecret": bind }),
    )
    .await
}

async fn recover(hub: &TestHub, agent_id: &str, recovery: &str) -> Answer {
    let body = json!({ "agentId": agent_id, "recoveryCredential": recovery });
    anon_full(hub, "/api/v1/agent-auth/runtime-recover", body).await
}

/// An agent that joined by onboarding, with both of its credentials.
struct Onboarded {
    id: String,
    runtime: String,
    recovery: String,
}

/// The four manual calls (the owner's approval in between): a new agent `name`.
async fn onboard(hub: &TestHub, name: &str) -> Onboarded {
    let (token, _) = registration_token(hub, json!({})).await;
    let prereg = preregister(hub, &token, name, BIND).await.expect(201);
    let (code, _) = codes(&prereg);
    decide(hub, &code, "approve", MASTER).await.expect(200);
    let done = finalize(hub, &prereg, BIND).await.expect(201);
    Onboarded {
        id: done["agentId"].as_str().expect("agentId").to_string(),
        runtime: done["runtimeCredential"]
            .as_str()
            .expect("runtimeCredential")
            .to_string(),
        recovery: done["runtimeRecoveryCredential"]
            .as_str()
            .expect("runtimeRecoveryCredential")
            .to_string(),
    }
}

/// `onboard`, then a heartbeat with the runtime credential so the agent is online.
async fn online(hub: &TestHub, name: &str) -> Onboarded {
    let agent = onboard(hub, name).await;
    hub.post(
        &format!("/api/agents/{}/heartbeat", agent.id),
        &agent.runtime,
        json!({}),
    )
    .await
    .expect(200);
    agent
}

async fn pull(hub: &TestHub, token: &str, consumer: Option<&str>, body: Value) -> Reply {
    pull_at(&hub.base, token, consumer, body).await
}

/// A pull from the hub at `base` (a `TestHub`'s or a child process's).
async fn pull_at(base: &str, token: &str, consumer: Option<&str>, body: Value) -> Reply {
    send(base, Method::POST, PULL, Some(token), consumer, Some(body)).await
}

async fn ack(hub: &TestHub, token: &str, consumer: Option<&str>, item: &Value) -> Reply {
    ack_at(&hub.base, token, consumer, item).await
}

async fn ack_at(base: &str, token: &str, consumer: Option<&str>, item: &Value) -> Reply {
    send(
        base,
        Method::POST,
        &format!("/api/v1/runtime/inbox/{item}/ack"),
        Some(token),
        consumer,
        Some(json!({})),
    )
    .await
}

/// `PUT /api/tasks/{id}` as `token` under `consumer`.
async fn report(hub: &TestHub, token: &str, consumer: Option<&str>, id: i64, body: Value) -> Reply {
    send(
        &hub.base,
        Method::PUT,
        &format!("/api/tasks/{id}"),
        Some(token),
        consumer,
        Some(body),
    )
    .await
}

/// `POST /api/tasks/{id}/stream` as `token` under `consumer`.
async fn chunk(hub: &TestHub, token: &str, consumer: Option<&str>, id: i64, text: &str) -> Reply {
    send(
        &hub.base,
        Method::POST,
        &format!("/api/tasks/{id}/stream"),
        Some(token),
        consumer,
        Some(json!({ "chunk": text })),
    )
    .await
}

async fn stored_chunks(hub: &TestHub, id: i64) -> Vec<String> {
    let stream = hub
        .get(&format!("/api/tasks/{id}/stream?limit=2000"), MASTER)
        .await
        .expect(200);
    stream["chunks"]
        .as_array()
        .expect("chunks")
        .iter()
        .map(|c| c["chunk"].as_str().expect("chunk text").to_string())
        .collect()
}

/// A task created by the master and pinned to `agent`.
async fn pinned_task(hub: &TestHub, agent: &str) -> Value {
    hub.task(json!({ "title": "pinned", "prompt": "p", "assign_to": agent }))
        .await
}

fn assert_stale(reply: Reply) {
    let body = reply.expect(409);
    assert_eq!(body["error"], "stale consumer", "{body}");
}

fn error_of(body: &Value) -> String {
    body["error"].as_str().unwrap_or_default().to_string()
}

// ---------------------------------------------------------------------------------------
// 1. The seed's manual flow
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn the_four_manual_calls_onboard_an_agent_whose_credential_works_everywhere() {
    let hub = TestHub::spawn_with(|s| s.device_poll_seconds = 1).await;

    // The owner issues a registration token: shown once, listed without it.
    let (token, issued) = registration_token(
        &hub,
        json!({ "name": "for ada", "capabilities": ["research"] }),
    )
    .await;
    assert!(token.starts_with("mrt_"), "{token}");
    assert_eq!(issued["status"], "active");
    assert_eq!(issued["role"], "worker");
    let list = hub
        .get("/api/admin/registration-tokens", MASTER)
        .await
        .expect(200);
    assert!(
        !list.to_string().contains(&token),
        "the raw token is shown once only: {list}"
    );
    let entry = listed_token(&hub, &issued["id"]).await;
    assert_eq!(entry["status"], "active");
    assert_eq!(entry["name"], "for ada");
    assert!(entry.get("registrationToken").is_none(), "{entry}");

    // 1. Preregister.
    let prereg = preregister(&hub, &token, "ada", BIND).await.expect(201);
    let (code, device) = codes(&prereg);
    let uri = prereg["verification_uri"]
        .as_str()
        .expect("verification_uri");
    assert!(
        uri.ends_with(&format!("/approve/{code}")),
        "verification_uri {uri} ends with /approve/{code}"
    );
    assert!(uri.starts_with(&hub.base), "{uri} is on {}", hub.base);
    assert_eq!(prereg["interval"], 1);
    // The page the owner opens exists.
    let page = hub
        .raw(Method::GET, &uri[hub.base.len()..], None, None)
        .await;
    assert_eq!(page.status, 200, "GET {uri}");
    // The registration token is spent.
    let entry = listed_token(&hub, &issued["id"]).await;
    assert_eq!(entry["status"], "used", "{entry}");
    assert!(entry["usedAt"].is_string(), "{entry}");

    // 3. Poll: pending until the owner approves.
    let polled = poll(&hub, &device).await.reply.expect(200);
    assert_eq!(polled["status"], "pending", "{polled}");

    // 2. The owner approves.
    let approved = decide(&hub, &code, "approve", MASTER).await.expect(200);
    assert_eq!(approved["status"], "approved", "{approved}");
    assert_eq!(approved["requestedName"], "ada");

    actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
    let polled = poll(&hub, &device).await.reply.expect(200);
    assert_eq!(polled["status"], "approved", "{polled}");

    // 4. Finalize: both credentials, once.
    let done = finalize(&hub, &prereg, BIND).await.expect(201);
    assert_eq!(done["agentId"], "ada");
    let runtime = done["runtimeCredential"].as_str().unwrap().to_string();
    let recovery = done["runtimeRecoveryCredential"].as_str().unwrap();
    assert!(runtime.starts_with("mrm_rt_"), "{runtime}");
    assert!(recovery.starts_with("mrm_rr_"), "{recovery}");
    assert_eq!(done["credentialVersion"], 1);

    // The runtime credential acts as ada, a worker, on the seed 000 endpoints.
    hub.post("/api/agents/ada/heartbeat", &runtime, json!({}))
        .await
        .expect(200);
    hub.get("/api/tasks", &runtime).await.expect(200);
    let agents = hub.get("/api/agents", MASTER).await.expect(200);
    let ada = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == "ada")
        .unwrap_or_else(|| panic!("ada is listed: {agents}"));
    assert_eq!(ada["status"], "online", "{ada}");
    assert_eq!(
        ada["capabilities"],
        json!(["research"]),
        "the token's capabilities"
    );
    let task = pinned_task(&hub, "ada").await;
    assert_eq!(task["assigned_to"], "ada", "{task}");
    let id = task["id"].as_i64().unwrap();
    hub.put(
        &format!("/api/tasks/{id}"),
        &runtime,
        json!({ "status": "running" }),
    )
    .await
    .expect(200);
    hub.put(
        &format!("/api/tasks/{id}"),
        &runtime,
        json!({ "status": "done", "output": "finished" }),
    )
    .await
    .expect(200);
    assert_eq!(hub.task_status(id).await["status"], "done");
    // A worker, not an owner.
    hub.post(
        "/api/admin/tokens",
        &runtime,
        json!({ "agent_id": "eve", "role": "worker" }),
    )
    .await
    .expect(403);
    hub.get("/api/admin/registration-tokens", &runtime)
        .await
        .expect(403);

    // Its runtime profile.
    let me = hub.get("/api/v1/runtime/me", &runtime).await.expect(200);
    assert_eq!(me["agentId"], "ada");
    assert_eq!(me["runtimeType"], "CLI");
    assert_eq!(me["category"], "research");
    assert_eq!(me["skills"], json!(["research", "rust"]));
    assert_eq!(me["credentialVersion"], 1);
    assert_eq!(me["status"], "ACTIVE");

    // A second finalize: 400 naming the agent and runtime-recover; the credential is
    // untouched.
    let again = finalize(&hub, &prereg, BIND).await.expect(400);
    let message = error_of(&again);
    assert!(message.contains("ada"), "{message}");
    assert!(message.contains("runtime-recover"), "{message}");
    hub.get("/api/tasks", &runtime).await.expect(200);
}

#[actix_web::test]
async fn polling_faster_than_the_interval_is_told_to_slow_down() {
    let hub = TestHub::spawn().await;
    let (token, _) = registration_token(&hub, json!({})).await;
    let prereg = preregister(&hub, &token, "quick", BIND).await.expect(201);
    assert_eq!(prereg["interval"], 5);
    let (_, device) = codes(&prereg);
    poll(&hub, &device).await.reply.expect(200);
    let fast = poll(&hub, &device).await;
    assert_eq!(fast.retry_after.as_deref(), Some("10"));
    let body = fast.reply.expect(429);
    assert_eq!(body["error"], "slow_down", "{body}");
    assert_eq!(body["status"], "pending", "{body}");
    assert_eq!(body["interval"], 10, "the interval grew by 5 s: {body}");
    // Still too fast for the grown interval.
    let body = poll(&hub, &device).await.reply.expect(429);
    assert_eq!(body["interval"], 15, "{body}");
    // An unknown device code is no preregistration.
    poll(&hub, "not-a-device-code").await.reply.expect(404);
}

// ---------------------------------------------------------------------------------------
// 2. Failures
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn used_unknown_and_revoked_registration_tokens_are_refused_by_name() {
    let hub = TestHub::spawn().await;
    let (token, _) = registration_token(&hub, json!({})).await;
    preregister(&hub, &token, "first", BIND).await.expect(201);
    let replay = preregister(&hub, &token, "second", BIND).await.expect(401);
    assert!(error_of(&replay).contains("used"), "{replay}");

    let unknown = preregister(&hub, "mrt_nothing-like-it", "third", BIND)
        .await
        .expect(401);
    assert!(error_of(&unknown).contains("unknown"), "{unknown}");

    let (token, issued) = registration_token(&hub, json!({})).await;
    let id = &issued["id"];
    hub.delete(&format!("/api/admin/registration-tokens/{id}"), MASTER)
        .await
        .expect(204);
    assert_eq!(listed_token(&hub, id).await["status"], "revoked");
    let revoked = preregister(&hub, &token, "fourth", BIND).await.expect(401);
    assert!(error_of(&revoked).contains("revoked"), "{revoked}");
    // Revoking it again, or revoking a used one, is a conflict; an unknown one, 404.
    hub.delete(&format!("/api/admin/registration-tokens/{id}"), MASTER)
        .await
        .expect(409);
    hub.delete("/api/admin/registration-tokens/999999", MASTER)
        .await
        .expect(404);

    // None of them started a preregistration.
    let list = hub
        .get("/api/v1/agent-preregistrations", MASTER)
        .await
        .expect(200);
    let names: Vec<&str> = list["preregistrations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["requestedName"].as_str())
        .collect();
    assert_eq!(names, vec!["first"], "{list}");
}

#[actix_web::test]
async fn a_refused_preregistration_does_not_spend_the_token() {
    let hub = TestHub::spawn().await;
    hub.agent("rex", &["research"], 1).await;
    let (token, issued) = registration_token(&hub, json!({})).await;
    let taken = preregister(&hub, &token, "rex", BIND).await.expect(409);
    assert!(error_of(&taken).contains("rex"), "{taken}");
    let mut body = json!({
        "registrationToken": token,
        "requestedName": "ada",
        "requestedRuntimeType": "TOASTER",
        "bindSecret": BIND,
    });
    anon(&hub, "/api/v1/agent-preregistrations", body.clone())
        .await
        .expect(400);
    body["requestedRuntimeType"] = json!("DAEMON");
    body["bindSecret"] = json!("");
    anon(&hub, "/api/v1/agent-preregistrations", body.clone())
        .await
        .expect(400);
    assert_eq!(listed_token(&hub, &issued["id"]).await["status"], "active");
    preregister(&hub, &token, "ada", BIND).await.expect(201);
    // A name a pending request holds is taken too.
    let (other, _) = registration_token(&hub, json!({})).await;
    preregister(&hub, &other, "ada", BIND).await.expect(409);
}

#[actix_web::test]
async fn only_owners_issue_tokens_and_decide() {
    let hub = TestHub::spawn().await;
    let worker = hub.token("rex", "worker").await;
    hub.post("/api/admin/registration-tokens", &worker, json!({}))
        .await
        .expect(403);
    let (token, _) = registration_token(&hub, json!({})).await;
    let prereg = preregister(&hub, &token, "ada", BIND).await.expect(201);
    let (code, device) = codes(&prereg);
    decide(&hub, &code, "approve", &worker).await.expect(403);
    decide(&hub, &code, "deny", &worker).await.expect(403);
    hub.get("/api/v1/agent-preregistrations", &worker)
        .await
        .expect(403);
    // Still pending: the worker changed nothing, and it cannot be finalized yet.
    assert_eq!(
        poll(&hub, &device).await.reply.expect(200)["status"],
        "pending"
    );
    let early = finalize(&hub, &prereg, BIND).await.expect(409);
    assert!(error_of(&early).contains("not approved"), "{early}");
}

#[actix_web::test]
async fn a_denied_preregistration_cannot_be_finalized_or_approved() {
    let hub = TestHub::spawn().await;
    let (token, _) = registration_token(&hub, json!({})).await;
    let prereg = preregister(&hub, &token, "mallory", BIND).await.expect(201);
    let (code, device) = codes(&prereg);

    let denied = decide(&hub, &code, "deny", MASTER).await.expect(200);
    assert_eq!(denied["status"], "denied");
    // Denying again answers the settled state.
    let again = decide(&hub, &code, "deny", MASTER).await.expect(200);
    assert_eq!(again["status"], "denied");

    let polled = poll(&hub, &device).await.reply.expect(200);
    assert_eq!(polled["status"], "denied", "{polled}");
    finalize(&hub, &prereg, BIND).await.expect(403);
    let late = decide(&hub, &code, "approve", MASTER).await.expect(409);
    assert!(error_of(&late).contains("denied"), "{late}");
    // No agent was made, and the name is free for another request.
    hub.get("/api/agents/mallory", MASTER).await.expect(404);
    let (token, _) = registration_token(&hub, json!({})).await;
    preregister(&hub, &token, "mallory", BIND).await.expect(201);
}

/// Puts the row `id` of `table` (`registration_tokens` or `agent_preregistrations`) past
/// its `expires_at`, straight in the hub's database: the hub reads these rows on every
/// request, so no test waits out the minutes the settings allow at the least.
fn expire(hub: &TestHub, table: &str, id: &Value) {
    let changed = hub.execute_sql(&format!(
        "UPDATE {table} SET expires_at = '2000-01-01T00:00:00.000Z' WHERE id = {id}"
    ));
    assert_eq!(changed, 1, "no row {id} in {table}");
}

/// The preregistration with this id as the owners' list shows it.
async fn listed_preregistration(hub: &TestHub, id: &Value) -> Value {
    listed(
        hub,
        "/api/v1/agent-preregistrations",
        "preregistrations",
        id,
    )
    .await
}

#[actix_web::test]
async fn an_expired_registration_token_is_refused_by_name_and_listed_expired() {
    let hub = TestHub::spawn().await;
    let (token, issued) = registration_token(&hub, json!({})).await;
    assert_eq!(listed_token(&hub, &issued["id"]).await["status"], "active");
    expire(&hub, "registration_tokens", &issued["id"]);

    assert_eq!(listed_token(&hub, &issued["id"]).await["status"], "expired");
    let refused = preregister(&hub, &token, "ada", BIND).await.expect(401);
    assert!(error_of(&refused).contains("expired"), "{refused}");
    // Refused, it started nothing and was not spent.
    let list = hub
        .get("/api/v1/agent-preregistrations", MASTER)
        .await
        .expect(200);
    assert_eq!(list["preregistrations"], json!([]), "{list}");
    let entry = listed_token(&hub, &issued["id"]).await;
    assert_eq!(entry["status"], "expired", "{entry}");
    assert!(entry["usedAt"].is_null(), "{entry}");
    // A fresh token still works for the same name.
    let (fresh, _) = registration_token(&hub, json!({})).await;
    preregister(&hub, &fresh, "ada", BIND).await.expect(201);
}

/// A preregistration for `ada` (approved first if `approve`) put past its time; it polls
/// and is listed as `expired`. The preregistration's answer and its verification code.
async fn expired_preregistration(hub: &TestHub, approve: bool) -> (Value, String) {
    let (token, _) = registration_token(hub, json!({})).await;
    let prereg = preregister(hub, &token, "ada", BIND).await.expect(201);
    let (code, device) = codes(&prereg);
    if approve {
        decide(hub, &code, "approve", MASTER).await.expect(200);
    }
    let id = &prereg["preregistrationId"];
    expire(hub, "agent_preregistrations", id);
    let polled = poll(hub, &device).await.reply.expect(200);
    assert_eq!(polled["status"], "expired", "{polled}");
    assert_eq!(listed_preregistration(hub, id).await["status"], "expired");
    (prereg, code)
}

/// A 409 whose message says the preregistration expired.
fn assert_expired(reply: Reply) {
    let body = reply.expect(409);
    assert!(error_of(&body).contains("expired"), "{body}");
}

#[actix_web::test]
async fn a_pending_preregistration_past_its_time_polls_expired_and_goes_no_further() {
    let hub = TestHub::spawn().await;
    let (prereg, code) = expired_preregistration(&hub, false).await;
    assert_expired(decide(&hub, &code, "approve", MASTER).await);
    assert_expired(decide(&hub, &code, "deny", MASTER).await);
    assert_expired(finalize(&hub, &prereg, BIND).await);
    // No agent was made, and the name is free for a new request.
    hub.get("/api/agents/ada", MASTER).await.expect(404);
    let (token, _) = registration_token(&hub, json!({})).await;
    preregister(&hub, &token, "ada", BIND).await.expect(201);
}

#[actix_web::test]
async fn an_approved_preregistration_past_its_time_cannot_be_finalized() {
    let hub = TestHub::spawn().await;
    let (prereg, code) = expired_preregistration(&hub, true).await;
    assert_expired(finalize(&hub, &prereg, BIND).await);
    // Approving it again renews nothing.
    assert_expired(decide(&hub, &code, "approve", MASTER).await);
    assert_expired(finalize(&hub, &prereg, BIND).await);
    hub.get("/api/agents/ada", MASTER).await.expect(404);
}

#[actix_web::test]
async fn the_bind_secret_must_match_and_its_sha256_stands_for_it() {
    let hub = TestHub::spawn().await;
    let (token, _) = registration_token(&hub, json!({})).await;
    let prereg = preregister(&hub, &token, "ada", BIND).await.expect(201);
    let (code, _) = codes(&prereg);
    decide(&hub, &code, "approve", MASTER).await.expect(200);
    let wrong = finalize(&hub, &prereg, "another-string").await.expect(401);
    assert!(error_of(&wrong).contains("bindSecret"), "{wrong}");
    // The wrong attempt spent nothing: the right secret still finalizes.
    let done = finalize(&hub, &prereg, BIND).await.expect(201);
    assert_eq!(done["agentId"], "ada");

    // Registered as sha256(secret), finalized with the secret itself.
    let secret = "kept-locally-by-bob";
    let digest = hex::encode(Sha256::digest(secret.as_bytes()));
    let (token, _) = registration_token(&hub, json!({})).await;
    let prereg = preregister(&hub, &token, "bob", &digest).await.expect(201);
    let (code, _) = codes(&prereg);
    decide(&hub, &code, "approve", MASTER).await.expect(200);
    finalize(&hub, &prereg, "kept-locally-by-someone-else")
        .await
        .expect(401);
    let done = finalize(&hub, &prereg, secret).await.expect(201);
    assert_eq!(done["agentId"], "bob");
    hub.get("/api/tasks", done["runtimeCredential"].as_str().unwrap())
        .await
        .expect(200);
}

#[actix_web::test]
async fn owners_see_pending_preregistrations_listed_and_live() {
    let hub = TestHub::spawn().await;
    let mut stream = hub.stream(MASTER).await;
    let (token, _) = registration_token(&hub, json!({})).await;
    let prereg = preregister(&hub, &token, "ada", BIND).await.expect(201);
    let (code, device) = codes(&prereg);

    let event = stream
        .next_named("preregistration_pending", SOON)
        .await
        .expect("a preregistration_pending event reaches the master's stream");
    assert_eq!(event.data["requestedName"], "ada", "{:?}", event.data);
    assert_eq!(event.data["requestedRuntimeType"], "CLI");
    assert_eq!(event.data["status"], "pending");
    let text = event.data.to_string();
    assert!(
        !text.contains(&device) && !text.contains(&code),
        "no codes in the event: {text}"
    );

    let list = hub
        .get("/api/v1/agent-preregistrations", MASTER)
        .await
        .expect(200);
    let first = &list["preregistrations"][0];
    assert_eq!(first["requestedName"], "ada", "{list}");
    assert_eq!(first["status"], "pending");
    assert_eq!(first["requestedSkills"], json!(["research", "rust"]));
    assert!(
        !list.to_string().contains(&device),
        "no device code in the list: {list}"
    );

    // Approving by the id from the list works like approving by the code.
    let approved = decide(&hub, &first["id"].to_string(), "approve", MASTER)
        .await
        .expect(200);
    assert_eq!(approved["status"], "approved");
    let event = stream
        .next_named("preregistration_decided", SOON)
        .await
        .expect("the decision is announced");
    assert_eq!(event.data["status"], "approved");
    // Approving again answers the settled state.
    decide(&hub, &code, "approve", MASTER).await.expect(200);
}

// ---------------------------------------------------------------------------------------
// 3. Recovery and rotation
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn the_recovery_credential_replaces_the_runtime_credential_at_once() {
    let hub = TestHub::spawn().await;
    let ada = online(&hub, "ada").await;

    let recovered = recover(&hub, &ada.id, &ada.recovery)
        .await
        .reply
        .expect(200);
    let fresh = recovered["runtimeCredential"].as_str().unwrap().to_string();
    assert!(fresh.starts_with("mrm_rt_"), "{fresh}");
    assert_ne!(fresh, ada.runtime);
    assert_eq!(recovered["credentialVersion"], 2);
    // The old one stops on the very next request; the new one works.
    hub.get("/api/tasks", &ada.runtime).await.expect(401);
    hub.get("/api/tasks", &fresh).await.expect(200);
    let me = hub.get("/api/v1/runtime/me", &fresh).await.expect(200);
    assert_eq!(me["credentialVersion"], 2);

    // The recovery credential stays good for the next loss.
    let again = recover(&hub, &ada.id, &ada.recovery)
        .await
        .reply
        .expect(200);
    assert_eq!(again["credentialVersion"], 3);
    hub.get("/api/tasks", &fresh).await.expect(401);
    hub.get("/api/tasks", again["runtimeCredential"].as_str().unwrap())
        .await
        .expect(200);
}

#[actix_web::test]
async fn wrong_recovery_credentials_are_refused_then_throttled() {
    let hub = TestHub::spawn_with(|s| {
        s.login_failures_allowed = 3;
        s.login_slowdown_seconds = 2;
    })
    .await;
    let ada = onboard(&hub, "ada").await;
    // An unknown agent is the same 401 as a wrong credential.
    recover(&hub, "nobody", &ada.recovery)
        .await
        .reply
        .expect(401);
    for _ in 0..3 {
        recover(&hub, &ada.id, "mrm_rr_wrong")
            .await
            .reply
            .expect(401);
    }
    let throttled = recover(&hub, &ada.id, "mrm_rr_wrong").await;
    assert!(throttled.retry_after.is_some(), "Retry-After on a 429");
    throttled.reply.expect(429);
    // While throttled even the right credential waits; the runtime credential still works.
    recover(&hub, &ada.id, &ada.recovery)
        .await
        .reply
        .expect(429);
    hub.get("/api/tasks", &ada.runtime).await.expect(200);
    // After the wait the right one goes through.
    actix_web::rt::time::sleep(Duration::from_millis(2300)).await;
    let recovered = recover(&hub, &ada.id, &ada.recovery)
        .await
        .reply
        .expect(200);
    assert_eq!(recovered["credentialVersion"], 2);
}

#[actix_web::test]
async fn an_owner_rotates_an_onboarded_agents_credential() {
    let hub = TestHub::spawn().await;
    let ada = online(&hub, "ada").await;
    let rotated = hub
        .post("/api/v1/agents/ada/rotate-credential", MASTER, json!({}))
        .await
        .expect(200);
    let fresh = rotated["runtimeCredential"].as_str().unwrap().to_string();
    assert!(fresh.starts_with("mrm_rt_"), "{fresh}");
    assert_eq!(rotated["credentialVersion"], 2);
    hub.get("/api/tasks", &ada.runtime).await.expect(401);
    hub.get("/api/tasks", &fresh).await.expect(200);
    // Still the same agent: its work follows it.
    let task = pinned_task(&hub, "ada").await;
    assert_eq!(task["assigned_to"], "ada");
    report(
        &hub,
        &fresh,
        None,
        task["id"].as_i64().unwrap(),
        json!({ "status": "running" }),
    )
    .await
    .expect(200);

    // Only owners rotate, and only agents that joined by onboarding.
    hub.post("/api/v1/agents/ada/rotate-credential", &fresh, json!({}))
        .await
        .expect(403);
    hub.agent("rex", &["research"], 1).await;
    hub.post("/api/v1/agents/rex/rotate-credential", MASTER, json!({}))
        .await
        .expect(404);
    hub.post("/api/v1/agents/ghost/rotate-credential", MASTER, json!({}))
        .await
        .expect(404);
}

// ---------------------------------------------------------------------------------------
// 4. States
// ---------------------------------------------------------------------------------------

async fn set_state(hub: &TestHub, agent: &str, state: &str) {
    let set = hub
        .call(
            Method::PATCH,
            &format!("/api/v1/agents/{agent}"),
            MASTER,
            Some(json!({ "status": state })),
        )
        .await
        .expect(200);
    assert_eq!(set["status"], state);
}

async fn patch_me(hub: &TestHub, token: &str, body: Value) -> Reply {
    hub.call(Method::PATCH, "/api/v1/runtime/me", token, Some(body))
        .await
}

#[actix_web::test]
async fn a_paused_agent_gets_no_new_work_until_active_again() {
    let hub = TestHub::spawn().await;
    let ada = online(&hub, "ada").await;
    set_state(&hub, "ada", "PAUSED").await;
    // Its credential still works while paused.
    hub.post("/api/agents/ada/heartbeat", &ada.runtime, json!({}))
        .await
        .expect(200);
    let task = pinned_task(&hub, "ada").await;
    let id = task["id"].as_i64().unwrap();
    assert_eq!(task["status"], "queued", "{task}");
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    let now = hub.task_status(id).await;
    assert_eq!(now["status"], "queued", "{now}");
    assert!(now["assigned_to"].is_null(), "{now}");
    assert_eq!(
        hub.get("/api/v1/runtime/me", &ada.runtime)
            .await
            .expect(200)["status"],
        "PAUSED"
    );

    set_state(&hub, "ada", "ACTIVE").await;
    assert!(
        hub.eventually(SOON, || async {
            hub.task_status(id).await["assigned_to"] == "ada"
        })
        .await,
        "the pinned task goes to ada once it is active: {}",
        hub.task_status(id).await
    );
    // Assigned by the dispatcher now, it lands in ada's inbox.
    let pulled = pull(&hub, &ada.runtime, None, json!({})).await.expect(200);
    assert_eq!(pulled["item"]["type"], "task_assigned", "{pulled}");
    assert_eq!(pulled["item"]["taskId"], id);
}

#[actix_web::test]
async fn a_paused_agent_still_describes_itself() {
    let hub = TestHub::spawn().await;
    let ada = online(&hub, "ada").await;
    set_state(&hub, "ada", "PAUSED").await;
    let changed = patch_me(
        &hub,
        &ada.runtime,
        json!({ "description": "back after the upgrade", "skills": ["rust"] }),
    )
    .await
    .expect(200);
    assert_eq!(
        changed["description"], "back after the upgrade",
        "{changed}"
    );
    let me = hub
        .get("/api/v1/runtime/me", &ada.runtime)
        .await
        .expect(200);
    assert_eq!(me["description"], "back after the upgrade", "{me}");
    assert_eq!(me["skills"], json!(["rust"]), "{me}");
    // Its state stays the owner's to change.
    let refused = patch_me(&hub, &ada.runtime, json!({ "status": "ACTIVE" }))
        .await
        .expect(403);
    assert!(error_of(&refused).contains("status"), "{refused}");
    let me = hub
        .get("/api/v1/runtime/me", &ada.runtime)
        .await
        .expect(200);
    assert_eq!(me["status"], "PAUSED", "{me}");
}

#[actix_web::test]
async fn suspended_agents_may_only_describe_themselves_and_banned_ones_nothing() {
    let hub = TestHub::spawn().await;
    let ada = online(&hub, "ada").await;

    set_state(&hub, "ada", "SUSPENDED").await;
    let refused = hub.get("/api/tasks", &ada.runtime).await.expect(403);
    assert!(error_of(&refused).contains("SUSPENDED"), "{refused}");
    pull(&hub, &ada.runtime, None, json!({})).await.expect(403);
    let described = patch_me(&hub, &ada.runtime, json!({ "description": "on hold" }))
        .await
        .expect(200);
    assert_eq!(described["description"], "on hold");
    set_state(&hub, "ada", "ACTIVE").await;
    hub.get("/api/tasks", &ada.runtime).await.expect(200);

    set_state(&hub, "ada", "BANNED").await;
    hub.get("/api/tasks", &ada.runtime).await.expect(403);
    patch_me(&hub, &ada.runtime, json!({ "description": "let me in" }))
        .await
        .expect(403);
    hub.get("/api/v1/runtime/me", &ada.runtime)
        .await
        .expect(403);
    // Recovery does not get a banned agent back in.
    recover(&hub, &ada.id, &ada.recovery)
        .await
        .reply
        .expect(403);
    // The owner still sees it.
    hub.get("/api/agents/ada", MASTER).await.expect(200);

    // Not a state.
    hub.call(
        Method::PATCH,
        "/api/v1/agents/ada",
        MASTER,
        Some(json!({ "status": "paused" })),
    )
    .await
    .expect(400);
    hub.call(
        Method::PATCH,
        "/api/v1/agents/ghost",
        MASTER,
        Some(json!({ "status": "PAUSED" })),
    )
    .await
    .expect(404);
}

#[actix_web::test]
async fn an_agent_describes_itself_but_owner_fields_are_refused_by_name() {
    let hub = TestHub::spawn().await;
    let ada = onboard(&hub, "ada").await;
    let changed = patch_me(
        &hub,
        &ada.runtime,
        json!({ "description": "Now also handles Rust code review.", "displayName": "Ada" }),
    )
    .await
    .expect(200);
    assert_eq!(changed["description"], "Now also handles Rust code review.");
    let me = hub
        .get("/api/v1/runtime/me", &ada.runtime)
        .await
        .expect(200);
    assert_eq!(me["description"], "Now also handles Rust code review.");
    assert_eq!(me["displayName"], "Ada");

    for field in ["status", "category", "visibility", "role"] {
        let body = patch_me(&hub, &ada.runtime, json!({ field: "ACTIVE" }))
            .await
            .expect(403);
        assert!(error_of(&body).contains(field), "{field}: {body}");
    }
    // Nothing changed by the refused calls.
    let me = hub
        .get("/api/v1/runtime/me", &ada.runtime)
        .await
        .expect(200);
    assert_eq!(me["category"], "research");
    assert_eq!(me["status"], "ACTIVE");
    assert_eq!(me["description"], "Now also handles Rust code review.");

    // The runtime API is an agent's own: the master has no profile to pull or patch.
    hub.get("/api/v1/runtime/me", MASTER).await.expect(403);
    pull(&hub, MASTER, None, json!({})).await.expect(403);
}

// ---------------------------------------------------------------------------------------
// 5. The inbox
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn items_come_again_until_acknowledged() {
    let hub = TestHub::spawn().await;
    let ada = onboard(&hub, "ada").await;
    let status = |agents: Value| {
        agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent_id"] == "ada")
            .map(|a| a["status"].clone())
    };
    assert_eq!(
        status(hub.get("/api/agents", MASTER).await.expect(200)),
        Some(json!("offline"))
    );

    // An empty inbox answers at once, and the pull counts as contact.
    let empty = pull(&hub, &ada.runtime, None, json!({})).await.expect(200);
    assert!(empty["item"].is_null(), "{empty}");
    let consumer = empty["consumerId"].as_str().unwrap().to_string();
    assert!(
        hub.eventually(SOON, || async {
            status(hub.get("/api/agents", MASTER).await.expect(200)) == Some(json!("online"))
        })
        .await,
        "a pull makes the agent online"
    );

    let task = pinned_task(&hub, "ada").await;
    assert_eq!(task["assigned_to"], "ada", "{task}");
    let first = pull(&hub, &ada.runtime, Some(&consumer), json!({}))
        .await
        .expect(200);
    assert_eq!(first["consumerId"], consumer.as_str());
    let item = &first["item"];
    assert_eq!(item["type"], "task_assigned", "{first}");
    assert_eq!(item["taskId"], task["id"]);
    assert_eq!(item["deliveries"], 1);
    // The same item until it is acknowledged (GET works too).
    let again = send(
        &hub.base,
        Method::GET,
        PULL,
        Some(&ada.runtime),
        Some(&consumer),
        None,
    )
    .await
    .expect(200);
    assert_eq!(again["item"]["id"], item["id"]);
    assert_eq!(again["item"]["deliveries"], 2);
    // The trigger points at the detail, which the agent may read.
    let detail = again["item"]["detailPath"].as_str().unwrap();
    hub.get(detail, &ada.runtime).await.expect(200);

    let acked = ack(&hub, &ada.runtime, Some(&consumer), &item["id"])
        .await
        .expect(200);
    assert_eq!(acked["acked"], true);
    let after = pull(&hub, &ada.runtime, Some(&consumer), json!({}))
        .await
        .expect(200);
    assert!(after["item"].is_null(), "{after}");
    // Acknowledging again is harmless; an unknown item is not this agent's.
    ack(&hub, &ada.runtime, Some(&consumer), &item["id"])
        .await
        .expect(200);
    ack(&hub, &ada.runtime, Some(&consumer), &json!(999_999))
        .await
        .expect(404);

    // A direct message.
    hub.post(
        "/api/agents/message",
        MASTER,
        json!({ "from": "task-manager", "to": "ada", "content": "Please review PR #123", "type": "request" }),
    )
    .await
    .expect(201);
    let message = pull(&hub, &ada.runtime, Some(&consumer), json!({}))
        .await
        .expect(200);
    let item = &message["item"];
    assert_eq!(item["type"], "message_received", "{message}");
    assert_eq!(item["message"]["content"], "Please review PR #123");
    assert_eq!(item["message"]["from"], "task-manager");
    ack(&hub, &ada.runtime, Some(&consumer), &item["id"])
        .await
        .expect(200);
    let empty = pull(&hub, &ada.runtime, Some(&consumer), json!({}))
        .await
        .expect(200);
    assert!(empty["item"].is_null(), "{empty}");
}

#[actix_web::test]
async fn one_agent_cannot_acknowledge_anothers_items() {
    let hub = TestHub::spawn().await;
    let ada = online(&hub, "ada").await;
    let bob = online(&hub, "bob").await;
    pinned_task(&hub, "ada").await;
    let pulled = pull(&hub, &ada.runtime, None, json!({})).await.expect(200);
    let item = pulled["item"]["id"].clone();
    assert!(item.is_i64(), "{pulled}");
    let bobs = pull(&hub, &bob.runtime, None, json!({})).await.expect(200);
    assert!(bobs["item"].is_null(), "bob's inbox is his own: {bobs}");
    let bob_consumer = bobs["consumerId"].as_str().unwrap();
    ack(&hub, &bob.runtime, Some(bob_consumer), &item)
        .await
        .expect(404);
    // Still in ada's inbox.
    let again = pull(&hub, &ada.runtime, pulled["consumerId"].as_str(), json!({}))
        .await
        .expect(200);
    assert_eq!(again["item"]["id"], item);
}

/// A pull under `consumer` that waits up to 5 s, spawned, and still waiting 400 ms later;
/// joined, its reply and when that came.
async fn waiting_pull(
    hub: &TestHub,
    token: &str,
    consumer: &str,
) -> actix_web::rt::task::JoinHandle<(Reply, Instant)> {
    let (base, token, lease) = (hub.base.clone(), token.to_string(), consumer.to_string());
    let waiting = actix_web::rt::spawn(async move {
        let reply = pull_at(&base, &token, Some(&lease), json!({ "wait": 5 })).await;
        (reply, Instant::now())
    });
    actix_web::rt::time::sleep(Duration::from_millis(400)).await;
    assert!(!waiting.is_finished(), "the pull is waiting");
    waiting
}

#[actix_web::test]
async fn a_waiting_pull_returns_as_soon_as_work_is_assigned() {
    let hub = TestHub::spawn().await;
    let ada = online(&hub, "ada").await;

    // With nothing to hand over, a long-poll waits its time, then answers item null.
    let started = Instant::now();
    let empty = pull(&hub, &ada.runtime, None, json!({ "wait": 1 }))
        .await
        .expect(200);
    assert!(empty["item"].is_null(), "{empty}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the pull waited: {:?}",
        started.elapsed()
    );
    let consumer = empty["consumerId"].as_str().unwrap().to_string();

    let waiting = waiting_pull(&hub, &ada.runtime, &consumer).await;
    let assigned_at = Instant::now();
    let task = pinned_task(&hub, "ada").await;
    assert_eq!(task["assigned_to"], "ada", "{task}");
    let (reply, returned_at) = waiting.await.expect("the pull finishes");
    let body = reply.expect(200);
    assert_eq!(body["item"]["type"], "task_assigned", "{body}");
    assert_eq!(body["item"]["taskId"], task["id"]);
    assert_eq!(body["consumerId"], consumer.as_str());
    let took = returned_at.duration_since(assigned_at);
    assert!(
        took < Duration::from_secs(3),
        "the waiting pull returned {took:?} after the task was made"
    );
    let item = body["item"]["id"].clone();
    ack(&hub, &ada.runtime, Some(&consumer), &item)
        .await
        .expect(200);

    // A direct message wakes a waiting pull just the same.
    let waiting = waiting_pull(&hub, &ada.runtime, &consumer).await;
    let sent_at = Instant::now();
    hub.post(
        "/api/agents/message",
        MASTER,
        json!({ "from": "boss", "to": "ada", "content": "wake up" }),
    )
    .await
    .expect(201);
    let (reply, returned_at) = waiting.await.expect("the pull finishes");
    let body = reply.expect(200);
    assert_eq!(body["item"]["type"], "message_received", "{body}");
    assert_eq!(body["item"]["message"]["content"], "wake up");
    let took = returned_at.duration_since(sent_at);
    assert!(
        took < Duration::from_secs(3),
        "the waiting pull returned {took:?} after the message was sent"
    );
}

// ---------------------------------------------------------------------------------------
// 6. The consumer fence
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_new_lease_fences_every_write_of_the_old_consumer() {
    let hub = TestHub::spawn().await;
    let ada = online(&hub, "ada").await;
    hub.agent("rex", &["research"], 1).await;
    let task = pinned_task(&hub, "ada").await;
    let id = task["id"].as_i64().unwrap();

    let first = pull(&hub, &ada.runtime, None, json!({})).await.expect(200);
    let old = first["consumerId"].as_str().unwrap().to_string();
    assert!(old.starts_with("mc_"), "{old}");
    let item = first["item"]["id"].clone();
    let second = pull(&hub, &ada.runtime, None, json!({})).await.expect(200);
    let new = second["consumerId"].as_str().unwrap().to_string();
    assert_ne!(old, new, "a pull without X-Consumer-Id opens a new lease");
    assert_eq!(second["item"]["id"], item);

    // Everything the old consumer tries is refused and changes nothing.
    assert_stale(ack(&hub, &ada.runtime, Some(&old), &item).await);
    assert_stale(
        report(
            &hub,
            &ada.runtime,
            Some(&old),
            id,
            json!({ "status": "running" }),
        )
        .await,
    );
    assert_stale(chunk(&hub, &ada.runtime, Some(&old), id, "zombie").await);
    assert_stale(
        send(
            &hub.base,
            Method::POST,
            &format!("/api/tasks/{id}/handoff"),
            Some(&ada.runtime),
            Some(&old),
            Some(json!({ "to": "rex" })),
        )
        .await,
    );
    assert_stale(pull(&hub, &ada.runtime, Some(&old), json!({})).await);
    assert_stale(patch_me_as(&hub, &ada.runtime, Some(&old)).await);
    // A write without the header while a lease is live is refused too.
    let bare = report(&hub, &ada.runtime, None, id, json!({ "status": "running" }))
        .await
        .expect(409);
    assert!(error_of(&bare).contains("consumer"), "{bare}");
    chunk(&hub, &ada.runtime, None, id, "no header")
        .await
        .expect(409);
    let now = hub.task_status(id).await;
    assert_eq!(now["status"], "assigned", "{now}");
    assert_eq!(now["assigned_to"], "ada", "{now}");
    assert!(stored_chunks(&hub, id).await.is_empty());
    let still = pull(&hub, &ada.runtime, Some(&new), json!({}))
        .await
        .expect(200);
    assert_eq!(still["item"]["id"], item, "the item was not acknowledged");

    // The holder of the live lease writes.
    report(
        &hub,
        &ada.runtime,
        Some(&new),
        id,
        json!({ "status": "running" }),
    )
    .await
    .expect(200);
    chunk(&hub, &ada.runtime, Some(&new), id, "working")
        .await
        .expect(201);
    patch_me_as(&hub, &ada.runtime, Some(&new))
        .await
        .expect(200);
    ack(&hub, &ada.runtime, Some(&new), &item).await.expect(200);
    assert_eq!(hub.task_status(id).await["status"], "running");
    assert_eq!(stored_chunks(&hub, id).await, vec!["working".to_string()]);
    // People act beside the agent's consumer: the master needs no lease.
    hub.put(
        &format!("/api/tasks/{id}"),
        MASTER,
        json!({ "status": "cancelled", "reason": "enough" }),
    )
    .await
    .expect(200);
}

async fn patch_me_as(hub: &TestHub, token: &str, consumer: Option<&str>) -> Reply {
    send(
        &hub.base,
        Method::PATCH,
        "/api/v1/runtime/me",
        Some(token),
        consumer,
        Some(json!({ "description": "described" })),
    )
    .await
}

#[actix_web::test]
async fn a_lease_nobody_renews_expires() {
    let hub = TestHub::spawn_with(|s| s.consumer_lease_seconds = 2).await;
    let ada = online(&hub, "ada").await;
    let task = pinned_task(&hub, "ada").await;
    let id = task["id"].as_i64().unwrap();
    let pulled = pull(&hub, &ada.runtime, None, json!({})).await.expect(200);
    let consumer = pulled["consumerId"].as_str().unwrap().to_string();
    report(&hub, &ada.runtime, None, id, json!({ "status": "running" }))
        .await
        .expect(409);

    actix_web::rt::time::sleep(Duration::from_millis(2300)).await;
    // The expired lease no longer fences writes without one, and its id is no good.
    assert_stale(chunk(&hub, &ada.runtime, Some(&consumer), id, "late").await);
    assert_stale(pull(&hub, &ada.runtime, Some(&consumer), json!({})).await);
    report(&hub, &ada.runtime, None, id, json!({ "status": "running" }))
        .await
        .expect(200);
    // A fresh pull opens a new lease, which fences again.
    let fresh = pull(&hub, &ada.runtime, None, json!({})).await.expect(200);
    assert_ne!(fresh["consumerId"], consumer.as_str());
    chunk(&hub, &ada.runtime, None, id, "bare")
        .await
        .expect(409);
}

/// What one racing consumer saw.
#[derive(Default)]
struct Seen {
    /// Every lease it opened.
    leases: Vec<String>,
    /// (item, status) of each ack.
    acks: Vec<(i64, u16)>,
    /// (chunk text, status) of each chunk.
    chunks: Vec<(String, u16)>,
    /// Status of each renewal pull.
    renewals: Vec<u16>,
    /// Bodies of every 409.
    conflicts: Vec<Value>,
}

/// One of two processes holding the same credential: each round it takes the lease over,
/// renews it, acknowledges the item it pulled and streams three chunks to `task`, all
/// under its lease.
async fn racing_consumer(base: String, token: String, task: i64, name: &'static str) -> Seen {
    let mut seen = Seen::default();
    for round in 0..150 {
        let taken = send(
            &base,
            Method::POST,
            PULL,
            Some(&token),
            None,
            Some(json!({})),
        )
        .await
        .expect(200);
        let lease = taken["consumerId"].as_str().unwrap().to_string();
        seen.leases.push(lease.clone());
        let Some(item) = taken["item"]["id"].as_i64() else {
            break;
        };
        let renewed = send(
            &base,
            Method::POST,
            PULL,
            Some(&token),
            Some(&lease),
            Some(json!({})),
        )
        .await;
        seen.renewals.push(renewed.status.as_u16());
        if renewed.status == 409 {
            seen.conflicts.push(renewed.body);
        }
        let acked = send(
            &base,
            Method::POST,
            &format!("/api/v1/runtime/inbox/{item}/ack"),
            Some(&token),
            Some(&lease),
            Some(json!({})),
        )
        .await;
        seen.acks.push((item, acked.status.as_u16()));
        if acked.status == 409 {
            seen.conflicts.push(acked.body);
        }
        for n in 0..3 {
            let text = format!("{name}:{round}:{n}:{lease}");
            let sent = send(
                &base,
                Method::POST,
                &format!("/api/tasks/{task}/stream"),
                Some(&token),
                Some(&lease),
                Some(json!({ "chunk": text })),
            )
            .await;
            seen.chunks.push((text, sent.status.as_u16()));
            if sent.status == 409 {
                seen.conflicts.push(sent.body);
            }
        }
    }
    seen
}

#[actix_web::test]
async fn two_consumers_racing_never_both_succeed_on_the_same_item() {
    let hub = TestHub::spawn().await;
    let ada = online(&hub, "ada").await;
    let task = pinned_task(&hub, "ada").await;
    let id = task["id"].as_i64().unwrap();
    report(&hub, &ada.runtime, None, id, json!({ "status": "running" }))
        .await
        .expect(200);
    const MESSAGES: usize = 20;
    for n in 0..MESSAGES {
        hub.post(
            "/api/agents/message",
            MASTER,
            json!({ "from": "boss", "to": "ada", "content": format!("job {n}") }),
        )
        .await
        .expect(201);
    }

    let (a, b) = futures_util::future::join(
        racing_consumer(hub.base.clone(), ada.runtime.clone(), id, "a"),
        racing_consumer(hub.base.clone(), ada.runtime.clone(), id, "b"),
    )
    .await;

    // Every refusal is the fence's.
    for conflict in a.conflicts.iter().chain(&b.conflicts) {
        assert_eq!(conflict["error"], "stale consumer", "{conflict}");
    }
    for (_, status) in a.acks.iter().chain(&b.acks) {
        assert!(matches!(status, 200 | 409), "ack answered {status}");
    }
    for (_, status) in a.chunks.iter().chain(&b.chunks) {
        assert!(matches!(status, 201 | 409), "chunk answered {status}");
    }
    let conflicts = a.conflicts.len() + b.conflicts.len();
    assert!(conflicts > 0, "the consumers never fenced each other");

    // Each lease is new.
    let leases: Vec<&String> = a.leases.iter().chain(&b.leases).collect();
    let distinct: HashSet<&&String> = leases.iter().collect();
    assert_eq!(distinct.len(), leases.len(), "a lease id came twice");

    // At most one acknowledgement of an item succeeded.
    let mut acked: HashMap<i64, usize> = HashMap::new();
    for (item, status) in a.acks.iter().chain(&b.acks) {
        if *status == 200 {
            *acked.entry(*item).or_default() += 1;
        }
    }
    for (item, times) in &acked {
        assert_eq!(
            *times, 1,
            "item {item} was acknowledged by {times} consumers"
        );
    }

    // The chunks stored are exactly those answered 201, and each lease's successful writes
    // are one unbroken run: once the lease moved on, no write under it got in again.
    let stored = stored_chunks(&hub, id).await;
    let succeeded: HashSet<String> = a
        .chunks
        .iter()
        .chain(&b.chunks)
        .filter(|(_, status)| *status == 201)
        .map(|(text, _)| text.clone())
        .collect();
    let stored_set: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), stored_set.len());
    assert_eq!(stored_set, succeeded, "stored chunks are the accepted ones");
    assert!(!stored.is_empty(), "some consumer wrote");
    let lease_of = |text: &String| text.rsplit(':').next().unwrap().to_string();
    let mut runs: Vec<String> = Vec::new();
    for text in &stored {
        let lease = lease_of(text);
        if runs.last() != Some(&lease) {
            assert!(
                !runs.contains(&lease),
                "lease {lease} wrote again after another lease had written: {stored:?}"
            );
            runs.push(lease);
        }
    }

    // Nothing was lost: a fresh consumer drains the rest, and every item was acknowledged
    // exactly once overall.
    let drain = pull(&hub, &ada.runtime, None, json!({})).await.expect(200);
    let lease = drain["consumerId"].as_str().unwrap().to_string();
    let mut item = drain["item"].clone();
    while let Some(next) = item["id"].as_i64() {
        let answered = ack(&hub, &ada.runtime, Some(&lease), &json!(next))
            .await
            .expect(200);
        assert_eq!(answered["acked"], true);
        assert!(
            acked.insert(next, 1).is_none(),
            "item {next} came again after it was acknowledged"
        );
        item = pull(&hub, &ada.runtime, Some(&lease), json!({}))
            .await
            .expect(200)["item"]
            .clone();
    }
    assert_eq!(
        acked.len(),
        MESSAGES + 1,
        "the task and every message, once each"
    );
}

// ---------------------------------------------------------------------------------------
// 7. Redelivery after a crash
// ---------------------------------------------------------------------------------------

const CRASH_TOKEN: &str = "onboarding-crash-master";

/// A request as the master of the hub at `base`.
async fn as_master(base: &str, method: Method, path: &str, body: Option<Value>) -> Reply {
    send(base, method, path, Some(CRASH_TOKEN), None, body).await
}

/// Issues a worker token for `name` on the hub at `base` and registers the agent with
/// `capability`; the token.
async fn registered(base: &str, name: &str, capability: &str) -> String {
    let issued = as_master(
        base,
        Method::POST,
        "/api/admin/tokens",
        Some(json!({ "agent_id": name, "role": "worker" })),
    )
    .await
    .expect(201);
    let token = issued["token"].as_str().unwrap().to_string();
    send(
        base,
        Method::POST,
        &format!("/api/agents/{name}/register"),
        Some(&token),
        None,
        Some(json!({ "name": name, "capabilities": [capability], "max_concurrent": 1 })),
    )
    .await
    .expect(200);
    token
}

#[actix_web::test]
async fn an_item_pulled_but_not_acknowledged_comes_again_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let log = dir.path().join("hub.log");
    let mut hub = serve(CRASH_TOKEN, &db, &log, &[]).await;

    let rex = registered(&hub.base, "rex", "research").await;
    let task = as_master(
        &hub.base,
        Method::POST,
        "/api/tasks",
        Some(json!({ "title": "t", "prompt": "p", "assign_to": "rex" })),
    )
    .await
    .expect(201);
    assert_eq!(task["assigned_to"], "rex", "{task}");
    // Another agent its owner bans.
    let eve = registered(&hub.base, "eve", "other").await;
    as_master(
        &hub.base,
        Method::PATCH,
        "/api/v1/agents/eve",
        Some(json!({ "status": "BANNED" })),
    )
    .await
    .expect(200);
    send(&hub.base, Method::GET, "/api/tasks", Some(&eve), None, None)
        .await
        .expect(403);

    let pulled = pull_at(&hub.base, &rex, None, json!({})).await.expect(200);
    let consumer = pulled["consumerId"].as_str().unwrap().to_string();
    let item = pulled["item"].clone();
    assert_eq!(item["type"], "task_assigned", "{pulled}");
    assert_eq!(item["taskId"], task["id"]);
    assert_eq!(item["deliveries"], 1);

    // The hub dies between the pull and the ack.
    hub.child.kill().expect("SIGKILL");
    hub.child.wait().unwrap();
    drop(hub);

    let hub = serve(CRASH_TOKEN, &db, &log, &[]).await;
    let again = pull_at(&hub.base, &rex, Some(&consumer), json!({}))
        .await
        .expect(200);
    assert_eq!(again["consumerId"], consumer.as_str(), "the lease survived");
    assert_eq!(
        again["item"]["id"], item["id"],
        "the same item again: {again}"
    );
    assert_eq!(again["item"]["deliveries"], 2);
    ack_at(&hub.base, &rex, Some(&consumer), &item["id"])
        .await
        .expect(200);
    let empty = pull_at(&hub.base, &rex, Some(&consumer), json!({}))
        .await
        .expect(200);
    assert!(empty["item"].is_null(), "{empty}");
    // The ban outlived the crash.
    send(&hub.base, Method::GET, "/api/tasks", Some(&eve), None, None)
        .await
        .expect(403);
}

// ---------------------------------------------------------------------------------------
// Deleted agents and the seed 004 poll
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_deleted_onboarded_agents_name_can_join_again() {
    let hub = TestHub::spawn().await;
    online(&hub, "ada").await;
    hub.delete("/api/agents/ada", MASTER).await.expect(200);

    // A new agent takes the free name through the whole bootstrap.
    let (token, _) = registration_token(&hub, json!({})).await;
    let prereg = preregister(&hub, &token, "ada", BIND).await.expect(201);
    let (code, _) = codes(&prereg);
    decide(&hub, &code, "approve", MASTER).await.expect(200);
    let done = finalize(&hub, &prereg, BIND).await.expect(201);
    let fresh = done["runtimeCredential"].as_str().unwrap();
    hub.get("/api/tasks", fresh).await.expect(200);
    let me = hub.get("/api/v1/runtime/me", fresh).await.expect(200);
    assert_eq!(me["credentialVersion"], 1, "a new identity: {me}");
}

#[actix_web::test]
async fn a_deleted_onboarded_agent_cannot_be_recovered() {
    let hub = TestHub::spawn().await;
    let old = online(&hub, "ada").await;
    hub.delete("/api/agents/ada", MASTER).await.expect(200);
    // The owner removed it: its recovery credential mints nothing any more (else it
    // could register itself again with the fresh credential).
    recover(&hub, "ada", &old.recovery).await.reply.expect(401);
    let list = hub.get("/api/agents", MASTER).await.expect(200);
    assert_eq!(list["total"], 0, "{list}");
}

#[actix_web::test]
async fn the_seed_004_poll_does_not_consume_items_behind_the_lease() {
    let hub = TestHub::spawn().await;
    let ada = online(&hub, "ada").await;
    let stale = pull(&hub, &ada.runtime, None, json!({})).await.expect(200)["consumerId"]
        .as_str()
        .unwrap()
        .to_string();
    let live = pull(&hub, &ada.runtime, None, json!({})).await.expect(200)["consumerId"]
        .as_str()
        .unwrap()
        .to_string();
    hub.post(
        "/api/agents/message",
        MASTER,
        json!({ "from": "boss", "to": "ada", "content": "for the live consumer" }),
    )
    .await
    .expect(201);
    // The fenced process reads the seed 004 pending-work poll (which marks the messages
    // it shows as read) with its stale lease, and with none.
    for consumer in [Some(stale.as_str()), None] {
        send(
            &hub.base,
            Method::GET,
            "/api/agents/ada/heartbeat",
            Some(&ada.runtime),
            consumer,
            None,
        )
        .await;
    }
    // The live consumer still gets the message: the fenced one changed nothing.
    let next = pull(&hub, &ada.runtime, Some(&live), json!({}))
        .await
        .expect(200);
    assert_eq!(
        next["item"]["type"], "message_received",
        "the item was consumed behind the lease: {next}"
    );
    assert_eq!(next["item"]["message"]["content"], "for the live consumer");
}
