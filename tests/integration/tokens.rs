//! Tokens and access control: issuing, listing, changing and revoking agent tokens, the role
//! presets, the ways a credential may be presented, and the rule that a token sees only
//! the tasks it holds or made (anything else is a 404, never a 403).

use std::collections::BTreeSet;

use awc::http::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::{bytes_at_rest, TestHub, MASTER};

const WORKER: &[&str] = &[
    "tasks:read",
    "tasks:execute",
    "tasks:update",
    "messages:read",
    "messages:write",
    "agents:read",
    "agents:register",
    "memory:read",
    "memory:write",
    "escalations:create",
];
const COMMANDER: &[&str] = &[
    "tasks:read",
    "tasks:create",
    "messages:read",
    "messages:write",
    "agents:read",
    "escalations:read",
    "admin:templates",
    "pipelines:create",
];

fn set_of(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("expected a list, got {list}"))
        .iter()
        .map(|p| p.as_str().expect("permission strings").to_string())
        .collect()
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|p| p.to_string()).collect()
}

/// Issues a token with an explicit permission list; returns the issuing reply.
async fn issue_with(hub: &TestHub, agent_id: &str, permissions: &[&str]) -> Value {
    let body = json!({ "agent_id": agent_id, "name": agent_id, "permissions": permissions });
    hub.post("/api/admin/tokens", MASTER, body)
        .await
        .expect(201)
}

/// The status of a request sent with one extra header and no Authorization; the body is
/// not read (so an event stream that opens does not hold the test).
async fn status_with_header(hub: &TestHub, path: &str, header: Option<(&str, &str)>) -> u16 {
    let mut request = awc::Client::new().get(format!("{}{}", hub.base, path));
    if let Some(header) = header {
        request = request.insert_header(header);
    }
    let response = request.send().await.expect("request reaches the hub");
    response.status().as_u16()
}

#[actix_web::test]
async fn an_issued_token_is_shown_once_and_stored_only_as_its_hash() {
    let hub = TestHub::spawn().await;
    let issued = hub
        .post(
            "/api/admin/tokens",
            MASTER,
            json!({ "agent_id": "rex", "name": "Rex laptop", "role": "worker" }),
        )
        .await
        .expect(201);

    let raw = issued["token"].as_str().expect("raw token in the reply");
    let hex_part = raw
        .strip_prefix("m3shd_ag_")
        .unwrap_or_else(|| panic!("token {raw} lacks the m3shd_ag_ prefix"));
    assert_eq!(hex_part.len(), 32, "{raw}");
    assert!(hex_part.chars().all(|c| c.is_ascii_hexdigit()), "{raw}");
    let hash = hex::encode(Sha256::digest(raw.as_bytes()));
    assert_eq!(
        issued["hash"],
        hash.as_str(),
        "the hash is the SHA-256 hex of the raw token"
    );
    assert_eq!(issued["hash_prefix"], &hash[..12]);
    assert_eq!(issued["agent_id"], "rex");
    assert_eq!(issued["name"], "Rex laptop");
    assert_eq!(issued["role"], "worker");
    assert_eq!(set_of(&issued["permissions"]), set(WORKER));
    assert_eq!(issued["created_by"], "master");
    assert!(
        issued["created_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z')),
        "{issued}"
    );

    // The token works at once.
    hub.get("/api/tasks", raw).await.expect(200);

    // Listings show the prefix, never the secret nor the full hash.
    let list = hub.get("/api/admin/tokens", MASTER).await.expect(200);
    assert_eq!(list["count"], 1);
    let entry = &list["tokens"][0];
    assert_eq!(entry["hash_prefix"], &hash[..12]);
    assert_eq!(entry["agent_id"], "rex");
    assert_eq!(entry["role"], "worker");
    assert!(
        entry.get("token").is_none() && entry.get("hash").is_none(),
        "{entry}"
    );
    let listed = list.to_string();
    assert!(!listed.contains(raw) && !listed.contains(&hash), "{listed}");

    // The database holds the hash, never the raw token.
    let stored = bytes_at_rest(hub.dir.path()).await;
    assert!(stored.contains(&hash), "the hash is stored");
    assert!(
        !stored.contains(hex_part),
        "the raw token must not be stored"
    );

    // A second token for another agent is different and listed too.
    let other = hub.token("ada", "viewer").await;
    assert_ne!(other, raw);
    assert_eq!(
        hub.get("/api/admin/tokens", MASTER).await.expect(200)["count"],
        2
    );
}

#[actix_web::test]
async fn only_the_master_token_administers_tokens() {
    let hub = TestHub::spawn().await;
    let admin = hub.token("boss", "admin").await;
    let worker = hub.token("rex", "worker").await;
    let prefix = hub.get("/api/admin/tokens", MASTER).await.expect(200)["tokens"][0]["hash_prefix"]
        .as_str()
        .unwrap()
        .to_string();

    for token in [&admin, &worker] {
        let issue = json!({ "agent_id": "evil", "name": "evil", "role": "admin" });
        let reply = hub.post("/api/admin/tokens", token, issue).await;
        assert_eq!(reply.expect(403)["code"], "forbidden");
        hub.get("/api/admin/tokens", token).await.expect(403);
        hub.get("/api/admin/roles", token).await.expect(403);
        let path = format!("/api/admin/tokens/{prefix}/permissions");
        hub.put(&path, token, json!({ "role": "admin" }))
            .await
            .expect(403);
        hub.delete(&format!("/api/admin/tokens/{prefix}"), token)
            .await
            .expect(403);
    }
    // Without credentials it is a 401, not a 403.
    hub.raw(Method::GET, "/api/admin/tokens", None, None)
        .await
        .expect(401);

    // Nothing changed: still two tokens, none for "evil", the worker still a worker.
    let list = hub.get("/api/admin/tokens", MASTER).await.expect(200);
    assert_eq!(list["count"], 2, "{list}");
    assert!(list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["agent_id"] != "evil"));
    hub.get("/api/agents", &worker).await.expect(200);
}

#[actix_web::test]
async fn the_roles_endpoint_lists_the_seed_presets_and_issuing_applies_them() {
    let hub = TestHub::spawn().await;
    let roles = hub.get("/api/admin/roles", MASTER).await.expect(200)["roles"].clone();
    let names: BTreeSet<&str> = roles
        .as_object()
        .expect("roles object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "worker",
            "mobile",
            "commander",
            "admin",
            "viewer",
            "operator"
        ])
    );

    assert_eq!(set_of(&roles["worker"]), set(WORKER));
    let mut mobile = set(WORKER);
    mobile.remove("escalations:create");
    assert_eq!(set_of(&roles["mobile"]), mobile);
    assert_eq!(set_of(&roles["commander"]), set(COMMANDER));

    // admin holds every permission any preset names, plus the admin-only ones.
    let admin = set_of(&roles["admin"]);
    for role in ["worker", "mobile", "commander", "viewer", "operator"] {
        let missing: Vec<_> = set_of(&roles[role]).difference(&admin).cloned().collect();
        assert!(missing.is_empty(), "admin lacks {missing:?} of {role}");
    }
    for p in [
        "admin:audit",
        "admin:kill_switch",
        "admin:users",
        "tasks:delete",
        "agents:delete",
        "escalations:resolve",
    ] {
        assert!(admin.contains(p), "admin lacks {p}");
    }
    // viewer reads, operator manages tasks; neither administers.
    let viewer = set_of(&roles["viewer"]);
    assert!(
        viewer.contains("tasks:read")
            && !viewer.contains("tasks:create")
            && !viewer.contains("tasks:update")
    );
    let operator = set_of(&roles["operator"]);
    assert!(operator.contains("tasks:create") && operator.contains("tasks:update"));
    assert!(!operator.contains("admin:kill_switch") && !operator.contains("admin:audit"));

    // Issuing with a role grants exactly that role's list.
    for role in [
        "worker",
        "mobile",
        "commander",
        "admin",
        "viewer",
        "operator",
    ] {
        let body = json!({ "agent_id": format!("a-{role}"), "name": role, "role": role });
        let issued = hub
            .post("/api/admin/tokens", MASTER, body)
            .await
            .expect(201);
        assert_eq!(issued["role"], role);
        assert_eq!(
            set_of(&issued["permissions"]),
            set_of(&roles[role]),
            "role {role}"
        );
    }
}

#[actix_web::test]
async fn unknown_roles_and_permissions_are_refused() {
    let hub = TestHub::spawn().await;
    let cases = [
        json!({ "agent_id": "rex", "name": "rex", "role": "root" }),
        json!({ "agent_id": "rex", "name": "rex", "permissions": ["tasks:read", "tasks:fly"] }),
        json!({ "name": "rex", "role": "worker" }),
        json!({ "agent_id": "bad id!", "name": "rex", "role": "worker" }),
    ];
    for body in cases {
        let reply = hub.post("/api/admin/tokens", MASTER, body.clone()).await;
        let error = reply.expect(400);
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body} -> {error}"
        );
    }
    let reply = hub
        .post(
            "/api/admin/tokens",
            MASTER,
            json!({ "agent_id": "rex", "role": "root" }),
        )
        .await;
    assert!(reply.expect(400)["error"]
        .as_str()
        .unwrap()
        .contains("root"));
    let reply = hub
        .post(
            "/api/admin/tokens",
            MASTER,
            json!({ "agent_id": "rex", "permissions": ["tasks:fly"] }),
        )
        .await;
    assert!(reply.expect(400)["error"]
        .as_str()
        .unwrap()
        .contains("tasks:fly"));
    assert_eq!(
        hub.get("/api/admin/tokens", MASTER).await.expect(200)["count"],
        0,
        "no token was created"
    );

    // The same checks guard changes; a refused change leaves the token as it was.
    let rex = hub.token("rex", "worker").await;
    let prefix = hub.get("/api/admin/tokens", MASTER).await.expect(200)["tokens"][0]["hash_prefix"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/admin/tokens/{prefix}/permissions");
    hub.put(&path, MASTER, json!({ "role": "root" }))
        .await
        .expect(400);
    hub.put(&path, MASTER, json!({ "permissions": ["agents:fly"] }))
        .await
        .expect(400);
    hub.put(&path, MASTER, json!({})).await.expect(400);
    hub.get("/api/agents", &rex).await.expect(200);
    let list = hub.get("/api/admin/tokens", MASTER).await.expect(200);
    assert_eq!(set_of(&list["tokens"][0]["permissions"]), set(WORKER));
}

#[actix_web::test]
async fn a_token_with_no_permissions_has_no_access() {
    let hub = TestHub::spawn().await;
    let issued = issue_with(&hub, "ghost", &[]).await;
    assert_eq!(issued["permissions"], json!([]));
    let ghost = issued["token"].as_str().unwrap().to_string();

    hub.get("/api/tasks", &ghost).await.expect(403);
    hub.get("/api/agents", &ghost).await.expect(403);
    let task = json!({ "title": "t", "prompt": "p" });
    hub.post("/api/tasks", &ghost, task).await.expect(403);
    let register = json!({ "name": "ghost", "capabilities": ["research"] });
    hub.post("/api/agents/ghost/register", &ghost, register.clone())
        .await
        .expect(403);
    // Registered by the master, the agent still cannot be kept alive by this token.
    hub.post("/api/agents/ghost/register", MASTER, register)
        .await
        .expect(200);
    hub.post("/api/agents/ghost/heartbeat", &ghost, json!({}))
        .await
        .expect(403);
    assert_eq!(
        status_with_header(&hub, &format!("/api/stream?token={ghost}"), None).await,
        403
    );
    let bearer = format!("Bearer {ghost}");
    assert_eq!(
        status_with_header(
            &hub,
            "/api/stream",
            Some(("Authorization", bearer.as_str()))
        )
        .await,
        403
    );
}

#[actix_web::test]
async fn custom_permission_lists_grant_exactly_what_they_name() {
    let hub = TestHub::spawn().await;
    let issued = issue_with(&hub, "reader", &["tasks:read", "tasks:read"]).await;
    assert_eq!(
        issued["permissions"],
        json!(["tasks:read"]),
        "duplicates collapse"
    );
    assert!(
        issued["role"].is_null(),
        "a custom list has no role: {issued}"
    );
    let reader = issued["token"].as_str().unwrap().to_string();
    hub.get("/api/tasks", &reader).await.expect(200);
    hub.get("/api/agents", &reader).await.expect(403);
    hub.post(
        "/api/tasks",
        &reader,
        json!({ "title": "t", "prompt": "p" }),
    )
    .await
    .expect(403);
    hub.get("/api/admin/audit", &reader).await.expect(403);

    let auditor = issue_with(&hub, "auditor", &["admin:audit"]).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    hub.get("/api/admin/audit", &auditor).await.expect(200);
    hub.get("/api/admin/kill-switch", &auditor)
        .await
        .expect(403);
    hub.get("/api/tasks", &auditor).await.expect(403);
}

#[actix_web::test]
async fn each_role_preset_opens_exactly_its_endpoints() {
    let hub = TestHub::spawn().await;
    // Expected statuses per role: list tasks, create task, list agents, read audit, read
    // kill switch, delete an (unknown) agent, list tokens, open the stream.
    let table: &[(&str, [u16; 8])] = &[
        ("worker", [200, 403, 200, 403, 403, 403, 403, 200]),
        ("mobile", [200, 403, 200, 403, 403, 403, 403, 200]),
        ("commander", [200, 201, 200, 403, 403, 403, 403, 200]),
        ("admin", [200, 201, 200, 200, 200, 404, 403, 200]),
        ("viewer", [200, 403, 200, 403, 403, 403, 403, 200]),
        // Seed 004's operator deletes agents (an unknown one is a 404).
        ("operator", [200, 201, 200, 403, 403, 404, 403, 200]),
    ];
    let mut wrong = Vec::new();
    for (role, expected) in table {
        let id = format!("as-{role}");
        let token = hub.token(&id, role).await;
        let task = json!({ "title": "t", "prompt": "p", "required_capability": "nobody" });
        let bearer = format!("Bearer {token}");
        let got = [
            hub.get("/api/tasks", &token).await.status.as_u16(),
            hub.post("/api/tasks", &token, task).await.status.as_u16(),
            hub.get("/api/agents", &token).await.status.as_u16(),
            hub.get("/api/admin/audit", &token).await.status.as_u16(),
            hub.get("/api/admin/kill-switch", &token)
                .await
                .status
                .as_u16(),
            hub.delete("/api/agents/nobody-here", &token)
                .await
                .status
                .as_u16(),
            hub.get("/api/admin/tokens", &token).await.status.as_u16(),
            status_with_header(
                &hub,
                "/api/stream",
                Some(("Authorization", bearer.as_str())),
            )
            .await,
        ];
        let names = [
            "GET tasks",
            "POST tasks",
            "GET agents",
            "GET audit",
            "GET kill-switch",
            "DELETE agent",
            "GET tokens",
            "GET stream",
        ];
        for ((name, want), got) in names.iter().zip(expected).zip(got) {
            if *want != got {
                wrong.push(format!("{role}: {name} answered {got}, expected {want}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "role presets misapplied:\n{}",
        wrong.join("\n")
    );
}

#[actix_web::test]
async fn registering_as_an_agent_needs_the_agents_register_permission() {
    let hub = TestHub::spawn().await;
    // Roles with agents:register may register (and then heartbeat) their own agent id.
    for role in ["worker", "mobile", "operator", "admin"] {
        let id = format!("as-{role}");
        let token = hub.token(&id, role).await;
        let body = json!({ "name": id, "capabilities": ["research"] });
        hub.post(&format!("/api/agents/{id}/register"), &token, body)
            .await
            .expect(200);
        hub.post(&format!("/api/agents/{id}/heartbeat"), &token, json!({}))
            .await
            .expect(200);
    }
    // Roles without it may not make themselves a dispatch target.
    let mut registered = Vec::new();
    for role in ["commander", "viewer"] {
        let id = format!("as-{role}");
        let token = hub.token(&id, role).await;
        let body = json!({ "name": id, "capabilities": ["research"] });
        let reply = hub
            .post(&format!("/api/agents/{id}/register"), &token, body)
            .await;
        if reply.status.as_u16() != 403 {
            registered.push(format!("{role} -> {} {}", reply.status, reply.body));
        }
    }
    assert!(
        registered.is_empty(),
        "tokens without agents:register registered an agent:\n{}",
        registered.join("\n")
    );
    let listed = hub.get("/api/agents", MASTER).await.expect(200);
    assert_eq!(listed["total"], 4, "{listed}");
}

#[actix_web::test]
async fn permission_changes_apply_on_the_very_next_request() {
    let hub = TestHub::spawn().await;
    let issued = hub
        .post(
            "/api/admin/tokens",
            MASTER,
            json!({ "agent_id": "rex", "name": "rex", "role": "worker" }),
        )
        .await
        .expect(201);
    let rex = issued["token"].as_str().unwrap().to_string();
    let hash = issued["hash"].as_str().unwrap().to_string();
    hub.get("/api/agents", &rex).await.expect(200);

    // Narrow it, naming the token by the 12-character prefix the listing shows.
    let path = format!("/api/admin/tokens/{}/permissions", &hash[..12]);
    let changed = hub
        .put(&path, MASTER, json!({ "permissions": ["tasks:read"] }))
        .await
        .expect(200);
    assert_eq!(changed["permissions"], json!(["tasks:read"]));
    assert_eq!(changed["hash_prefix"], &hash[..12]);
    assert!(changed.get("token").is_none(), "{changed}");
    hub.get("/api/agents", &rex).await.expect(403);
    hub.get("/api/tasks", &rex).await.expect(200);

    // Widen it to a role, naming it by the shortest accepted prefix (8 hex characters).
    let path = format!("/api/admin/tokens/{}/permissions", &hash[..8]);
    let changed = hub
        .put(&path, MASTER, json!({ "role": "commander" }))
        .await
        .expect(200);
    assert_eq!(changed["role"], "commander");
    let created = hub
        .post("/api/tasks", &rex, json!({ "title": "t", "prompt": "p" }))
        .await
        .expect(201);
    assert_eq!(created["created_by"], "rex");

    // Strip it with the full hash: nothing is allowed any more.
    let path = format!("/api/admin/tokens/{hash}/permissions");
    hub.put(&path, MASTER, json!({ "permissions": [] }))
        .await
        .expect(200);
    hub.get("/api/tasks", &rex).await.expect(403);
    hub.post("/api/tasks", &rex, json!({ "title": "t", "prompt": "p" }))
        .await
        .expect(403);

    let listed = hub.get("/api/admin/tokens", MASTER).await.expect(200);
    assert_eq!(listed["tokens"][0]["permissions"], json!([]));

    // Too short a prefix, or one that names nothing, is a 404.
    let path = format!("/api/admin/tokens/{}/permissions", &hash[..7]);
    hub.put(&path, MASTER, json!({ "role": "worker" }))
        .await
        .expect(404);
    let unknown = if hash.starts_with('0') {
        "ffffffffffff"
    } else {
        "000000000000"
    };
    let path = format!("/api/admin/tokens/{unknown}/permissions");
    hub.put(&path, MASTER, json!({ "role": "worker" }))
        .await
        .expect(404);
}

#[actix_web::test]
async fn a_revoked_token_is_refused_on_the_very_next_request() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let ada = hub.token("ada", "worker").await;
    let list = hub.get("/api/admin/tokens", MASTER).await.expect(200);
    let prefix = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["agent_id"] == "rex")
        .expect("rex listed")["hash_prefix"]
        .as_str()
        .unwrap()
        .to_string();
    hub.get("/api/tasks", &rex).await.expect(200);

    let revoked = hub
        .delete(&format!("/api/admin/tokens/{prefix}"), MASTER)
        .await
        .expect(200);
    assert_eq!(revoked["revoked"], true);
    assert_eq!(revoked["agent_id"], "rex");

    let refused = hub.get("/api/tasks", &rex).await.expect(401);
    assert_eq!(refused["code"], "unauthorized");
    hub.post("/api/agents/rex/heartbeat", &rex, json!({}))
        .await
        .expect(401);
    let key_status =
        status_with_header(&hub, "/api/tasks", Some(("x-api-key", rex.as_str()))).await;
    assert_eq!(
        key_status, 401,
        "a revoked token is refused through x-api-key too"
    );
    assert_eq!(
        status_with_header(&hub, &format!("/api/stream?token={rex}"), None).await,
        401
    );

    // Other tokens are untouched; the revoked one leaves the listing; revoking again is a 404.
    hub.get("/api/tasks", &ada).await.expect(200);
    let list = hub.get("/api/admin/tokens", MASTER).await.expect(200);
    assert_eq!(list["count"], 1);
    assert_eq!(list["tokens"][0]["agent_id"], "ada");
    hub.delete(&format!("/api/admin/tokens/{prefix}"), MASTER)
        .await
        .expect(404);
    hub.delete("/api/admin/tokens/deadbeefdeadbeef", MASTER)
        .await
        .expect(404);
    hub.delete("/api/admin/tokens/not-a-hash", MASTER)
        .await
        .expect(404);

    // The audit log records the revocation by the master.
    let audit = hub
        .get("/api/admin/audit?action=token.revoke", MASTER)
        .await
        .expect(200);
    assert_eq!(audit["count"], 1);
    assert_eq!(audit["entries"][0]["actor"], "master");
    assert_eq!(audit["entries"][0]["target"], "agent:rex");
}

#[actix_web::test]
async fn credentials_come_from_bearer_or_x_api_key_and_query_tokens_only_on_the_stream() {
    let hub = TestHub::spawn().await;
    let rex = hub.token("rex", "worker").await;

    assert_eq!(
        status_with_header(&hub, "/api/tasks", Some(("x-api-key", rex.as_str()))).await,
        200
    );
    assert_eq!(
        status_with_header(&hub, "/api/admin/tokens", Some(("x-api-key", MASTER))).await,
        200
    );
    assert_eq!(
        status_with_header(&hub, "/api/admin/tokens", Some(("x-api-key", rex.as_str()))).await,
        403
    );
    let wrong = "m3shd_ag_00000000000000000000000000000000";
    assert_eq!(
        status_with_header(&hub, "/api/tasks", Some(("x-api-key", wrong))).await,
        401
    );

    // x-api-key works for writes too, and the token acts as its own agent.
    let mut response = awc::Client::new()
        .post(format!("{}/api/agents/rex/register", hub.base))
        .insert_header(("x-api-key", rex.as_str()))
        .send_json(&json!({ "name": "rex" }))
        .await
        .expect("request reaches the hub");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("json body");
    assert_eq!(body["agent_id"], "rex");

    // ?token= is for EventSource only.
    assert_eq!(
        status_with_header(&hub, &format!("/api/tasks?token={rex}"), None).await,
        401
    );
    assert_eq!(
        status_with_header(&hub, &format!("/api/agents?token={MASTER}"), None).await,
        401
    );
    assert_eq!(
        status_with_header(&hub, &format!("/api/stream?token={rex}"), None).await,
        200
    );
    assert_eq!(
        status_with_header(&hub, "/api/stream?token=nope", None).await,
        401
    );
    assert_eq!(status_with_header(&hub, "/api/stream", None).await, 401);
}

#[actix_web::test]
async fn a_token_sees_only_tasks_it_holds_or_made_and_others_are_404() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 2).await;
    let ada = hub.agent("ada", &["research"], 2).await;
    let cmd = hub.token("cmd", "commander").await;
    let for_rex = hub
        .task(json!({ "title": "rex's", "prompt": "p", "assign_to": "rex" }))
        .await;
    let for_ada = hub
        .task(json!({ "title": "ada's", "prompt": "p", "assign_to": "ada" }))
        .await;
    assert_eq!(for_rex["assigned_to"], "rex");
    assert_eq!(for_ada["assigned_to"], "ada");
    let mine = hub
        .post("/api/tasks", &cmd, json!({ "title": "cmd's", "prompt": "p", "required_capability": "paint", "created_by": "someone-else" }))
        .await
        .expect(201);
    assert_eq!(mine["created_by"], "cmd", "a token creates as itself");
    let (rex_id, ada_id, cmd_id) = (
        for_rex["id"].as_i64().unwrap(),
        for_ada["id"].as_i64().unwrap(),
        mine["id"].as_i64().unwrap(),
    );

    let ids = |list: &Value| -> Vec<i64> {
        list["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(
        ids(&hub.get("/api/tasks", &rex).await.expect(200)),
        vec![rex_id]
    );
    assert_eq!(
        ids(&hub.get("/api/tasks", &ada).await.expect(200)),
        vec![ada_id]
    );
    assert_eq!(
        ids(&hub.get("/api/tasks", &cmd).await.expect(200)),
        vec![cmd_id]
    );
    assert_eq!(
        ids(&hub
            .get("/api/tasks?assigned_to=ada", &rex)
            .await
            .expect(200)),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(&hub.get("/api/tasks", MASTER).await.expect(200)).len(),
        3
    );

    hub.get(&format!("/api/tasks/{rex_id}"), &rex)
        .await
        .expect(200);
    hub.get(&format!("/api/tasks/{rex_id}/deps"), &rex)
        .await
        .expect(200);
    hub.get(&format!("/api/tasks/{cmd_id}"), &cmd)
        .await
        .expect(200);
    // Someone else's task looks exactly like a task that does not exist.
    // (A commander lacks tasks:update altogether, so only the workers try to report.)
    let hidden = [
        (&rex, ada_id, true),
        (&rex, cmd_id, true),
        (&ada, rex_id, true),
        (&cmd, rex_id, false),
    ];
    for (token, id, may_update) in hidden {
        let reply = hub
            .get(&format!("/api/tasks/{id}"), token)
            .await
            .expect(404);
        assert_eq!(reply["code"], "not_found");
        hub.get(&format!("/api/tasks/{id}/deps"), token)
            .await
            .expect(404);
        if may_update {
            let reply = hub
                .put(
                    &format!("/api/tasks/{id}"),
                    token,
                    json!({ "status": "running" }),
                )
                .await;
            assert_eq!(reply.expect(404)["code"], "not_found");
        }
    }
    hub.get("/api/tasks/99999", &rex).await.expect(404);

    // Nothing changed on the hidden tasks.
    assert_eq!(hub.task_status(ada_id).await["status"], "assigned");
    assert_eq!(hub.task_status(rex_id).await["status"], "assigned");
}

#[actix_web::test]
async fn only_the_holder_or_the_master_reports_on_a_task() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 2).await;
    let op = hub.token("op", "operator").await;
    let task = hub
        .post(
            "/api/tasks",
            &op,
            json!({ "title": "t", "prompt": "p", "assign_to": "rex" }),
        )
        .await
        .expect(201);
    assert_eq!(task["assigned_to"], "rex");
    let id = task["id"].as_i64().unwrap();
    let path = format!("/api/tasks/{id}");

    // The creator sees the task but does not hold it: 409, not 404 and not 403.
    hub.get(&path, &op).await.expect(200);
    let refused = hub
        .put(&path, &op, json!({ "status": "done", "output": "forged" }))
        .await
        .expect(409);
    assert_eq!(refused["code"], "conflict");
    assert_eq!(hub.task_status(id).await["status"], "assigned");

    let running = hub
        .put(&path, &rex, json!({ "status": "running" }))
        .await
        .expect(200);
    assert_eq!(running["status"], "running");
    let done = hub
        .put(&path, &rex, json!({ "status": "done", "output": "42" }))
        .await
        .expect(200);
    assert_eq!(done["status"], "done");
    assert_eq!(done["output"], "42");
    // Done is final, for the holder and the master alike.
    hub.put(&path, &rex, json!({ "status": "running" }))
        .await
        .expect(409);
    hub.put(&path, MASTER, json!({ "status": "running" }))
        .await
        .expect(409);
    assert_eq!(hub.task_status(id).await["output"], "42");

    // The master may report on any task; a queued task cannot jump to done.
    let queued = hub
        .task(json!({ "title": "q", "prompt": "p", "required_capability": "paint" }))
        .await;
    let qpath = format!("/api/tasks/{}", queued["id"]);
    hub.put(&qpath, MASTER, json!({ "status": "done" }))
        .await
        .expect(409);
    let cancelled = hub
        .put(&qpath, MASTER, json!({ "status": "cancelled" }))
        .await
        .expect(200);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(
        hub.task_status(queued["id"].as_i64().unwrap()).await["status"],
        "cancelled"
    );
}
