//! Administration: the kill switch (who may use it, what it stops, what it lets finish,
//! its event and audit trail) and the audit log (what is recorded, the filters, and what
//! it must never hold).

use std::collections::BTreeSet;

use awc::http::Method;
use serde_json::{json, Value};

use crate::support::{TestHub, MASTER, SOON};

fn entries(reply: &Value) -> &Vec<Value> {
    reply["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no entries in {reply}"))
}

/// The load the hub reports for one agent (ask after a write: it reflects every dispatch
/// decision taken before the reply).
async fn load_of(hub: &TestHub, agent_id: &str) -> Value {
    let list = hub.get("/api/agents", MASTER).await.expect(200);
    let agent = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == agent_id)
        .cloned();
    agent.unwrap_or_else(|| panic!("{agent_id} not listed in {list}"))["load"].clone()
}

#[actix_web::test]
async fn the_kill_switch_needs_its_permission() {
    let hub = TestHub::spawn().await;
    let state = hub.get("/api/admin/kill-switch", MASTER).await.expect(200);
    assert_eq!(state["active"], false);

    for role in ["worker", "mobile", "commander", "viewer", "operator"] {
        let token = hub.token(&format!("as-{role}"), role).await;
        hub.get("/api/admin/kill-switch", &token).await.expect(403);
        let reply = hub
            .post("/api/admin/kill-switch", &token, json!({ "active": true }))
            .await;
        assert_eq!(reply.expect(403)["code"], "forbidden", "{role}");
        hub.delete("/api/admin/kill-switch", &token)
            .await
            .expect(403);
    }
    hub.raw(Method::POST, "/api/admin/kill-switch", None, None)
        .await
        .expect(401);
    assert_eq!(
        hub.get("/api/admin/kill-switch", MASTER).await.expect(200)["active"],
        false,
        "refused calls changed nothing"
    );
    hub.post("/api/tasks", MASTER, json!({ "title": "t", "prompt": "p" }))
        .await
        .expect(201);

    // The admin role and a custom list naming admin:kill_switch may use it.
    let boss = hub.token("boss", "admin").await;
    let engaged = hub
        .post(
            "/api/admin/kill-switch",
            &boss,
            json!({ "reason": "drill" }),
        )
        .await
        .expect(200);
    assert_eq!(engaged["active"], true);
    assert_eq!(engaged["by"], "boss");
    let custom =
        json!({ "agent_id": "pager", "name": "pager", "permissions": ["admin:kill_switch"] });
    let pager = hub
        .post("/api/admin/tokens", MASTER, custom)
        .await
        .expect(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        hub.get("/api/admin/kill-switch", &pager).await.expect(200)["active"],
        true
    );
    let cleared = hub
        .delete("/api/admin/kill-switch", &pager)
        .await
        .expect(200);
    assert_eq!(cleared["active"], false);
    assert_eq!(cleared["by"], "pager");
}

#[actix_web::test]
async fn an_engaged_kill_switch_refuses_new_tasks_with_503_until_cleared() {
    let hub = TestHub::spawn().await;
    let cmd = hub.token("cmd", "commander").await;
    let engaged = hub
        .post(
            "/api/admin/kill-switch",
            MASTER,
            json!({ "active": true, "reason": "runaway costs" }),
        )
        .await
        .expect(200);
    assert_eq!(engaged["active"], true);
    assert_eq!(engaged["reason"], "runaway costs");
    assert_eq!(engaged["by"], "master");
    assert!(
        engaged["at"].as_str().is_some_and(|at| at.ends_with('Z')),
        "{engaged}"
    );

    let state = hub.get("/api/admin/kill-switch", MASTER).await.expect(200);
    assert_eq!(state["active"], true);
    assert_eq!(state["reason"], "runaway costs");
    assert_eq!(
        hub.get("/api/health", MASTER).await.expect(200)["kill_switch"],
        true
    );

    let task = json!({ "title": "t", "prompt": "p" });
    let refused = hub
        .post("/api/tasks", MASTER, task.clone())
        .await
        .expect(503);
    assert_eq!(refused["error"], "kill switch engaged");
    assert_eq!(refused["code"], "kill_switch");
    hub.post("/api/tasks", &cmd, task.clone()).await.expect(503);
    assert_eq!(
        hub.get("/api/tasks", MASTER).await.expect(200)["count"],
        0,
        "no task was stored"
    );
    // Reading still works.
    hub.get("/api/tasks", &cmd).await.expect(200);

    let cleared = hub
        .delete("/api/admin/kill-switch", MASTER)
        .await
        .expect(200);
    assert_eq!(cleared["active"], false);
    assert_eq!(
        hub.get("/api/admin/kill-switch", MASTER).await.expect(200)["active"],
        false
    );
    assert_eq!(
        hub.get("/api/health", MASTER).await.expect(200)["kill_switch"],
        false
    );
    let created = hub.post("/api/tasks", &cmd, task).await.expect(201);
    assert_eq!(created["created_by"], "cmd");
}

#[actix_web::test]
async fn an_empty_post_engages_and_active_false_clears() {
    let hub = TestHub::spawn().await;
    let engaged = hub
        .raw(Method::POST, "/api/admin/kill-switch", Some(MASTER), None)
        .await
        .expect(200);
    assert_eq!(engaged["active"], true);
    hub.post("/api/tasks", MASTER, json!({ "title": "t", "prompt": "p" }))
        .await
        .expect(503);

    let cleared = hub
        .post("/api/admin/kill-switch", MASTER, json!({ "active": false }))
        .await
        .expect(200);
    assert_eq!(cleared["active"], false);
    hub.post("/api/tasks", MASTER, json!({ "title": "t", "prompt": "p" }))
        .await
        .expect(201);

    // A reason alone engages; a bad body is a 400 that changes nothing.
    let engaged = hub
        .post(
            "/api/admin/kill-switch",
            MASTER,
            json!({ "reason": "deploy" }),
        )
        .await
        .expect(200);
    assert_eq!(engaged["active"], true);
    let reply = hub
        .post("/api/admin/kill-switch", MASTER, json!({ "active": "no" }))
        .await;
    assert!(reply.expect(400)["error"]
        .as_str()
        .unwrap()
        .contains("active"));
    let reply = hub
        .raw(
            Method::POST,
            "/api/admin/kill-switch",
            Some(MASTER),
            Some(b"{oops".to_vec()),
        )
        .await;
    assert_eq!(reply.expect(400)["code"], "bad_request");
    assert_eq!(
        hub.get("/api/admin/kill-switch", MASTER).await.expect(200)["active"],
        true
    );
}

#[actix_web::test]
async fn queued_work_waits_while_engaged_and_is_dispatched_after_clearing() {
    let hub = TestHub::spawn().await;
    let rex = hub.token("rex", "worker").await;
    let task = hub.task(json!({ "title": "t", "prompt": "p" })).await;
    assert_eq!(task["status"], "queued", "no agent yet");
    let id = task["id"].as_i64().unwrap();
    let mut stream = hub.stream(&rex).await;

    hub.post(
        "/api/admin/kill-switch",
        MASTER,
        json!({ "reason": "freeze" }),
    )
    .await
    .expect(200);
    let event = stream
        .next_named("kill_switch", SOON)
        .await
        .expect("kill_switch event on engaging");
    assert_eq!(event.data["active"], true);
    assert_eq!(event.data["reason"], "freeze");

    // A capable agent arrives and heartbeats: the task must not be handed out.
    let register = json!({ "name": "rex", "capabilities": ["research"], "max_concurrent": 1 });
    hub.post("/api/agents/rex/register", &rex, register)
        .await
        .expect(200);
    hub.post("/api/agents/rex/heartbeat", &rex, json!({}))
        .await
        .expect(200);
    assert_eq!(load_of(&hub, "rex").await, 0);
    let held = hub.task_status(id).await;
    assert_eq!(held["status"], "queued", "{held}");
    assert!(held["assigned_to"].is_null(), "{held}");

    hub.delete("/api/admin/kill-switch", MASTER)
        .await
        .expect(200);
    let event = stream
        .next_named("kill_switch", SOON)
        .await
        .expect("kill_switch event on clearing");
    assert_eq!(event.data["active"], false);
    let assigned = hub
        .eventually(SOON, || async {
            hub.task_status(id).await["assigned_to"] == "rex"
        })
        .await;
    assert!(
        assigned,
        "the queued task is dispatched once the switch is cleared: {}",
        hub.task_status(id).await
    );
    assert_eq!(hub.task_status(id).await["status"], "assigned");
}

#[actix_web::test]
async fn holders_finish_their_work_while_engaged_but_freed_slots_stay_empty() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let first = hub.task(json!({ "title": "first", "prompt": "p" })).await;
    let second = hub.task(json!({ "title": "second", "prompt": "p" })).await;
    assert_eq!(first["assigned_to"], "rex");
    assert_eq!(second["status"], "queued", "rex is full");
    let (first, second) = (
        first["id"].as_i64().unwrap(),
        second["id"].as_i64().unwrap(),
    );
    hub.put(
        &format!("/api/tasks/{first}"),
        &rex,
        json!({ "status": "running" }),
    )
    .await
    .expect(200);

    hub.post("/api/admin/kill-switch", MASTER, json!({}))
        .await
        .expect(200);
    let chunk = json!({ "chunk": "half way" });
    hub.post(&format!("/api/tasks/{first}/stream"), &rex, chunk)
        .await
        .expect(201);
    let done = hub
        .put(
            &format!("/api/tasks/{first}"),
            &rex,
            json!({ "status": "done", "output": "finished" }),
        )
        .await
        .expect(200);
    assert_eq!(done["status"], "done");
    assert_eq!(hub.task_status(first).await["output"], "finished");

    // Rex has room now, but nothing new is handed out while the switch is engaged.
    assert_eq!(load_of(&hub, "rex").await, 0);
    assert_eq!(hub.task_status(second).await["status"], "queued");

    hub.delete("/api/admin/kill-switch", MASTER)
        .await
        .expect(200);
    let assigned = hub
        .eventually(SOON, || async {
            hub.task_status(second).await["assigned_to"] == "rex"
        })
        .await;
    assert!(assigned, "{}", hub.task_status(second).await);
}

#[actix_web::test]
async fn the_kill_switch_is_announced_and_audited() {
    let hub = TestHub::spawn().await;
    let viewer = hub.token("watcher", "viewer").await;
    let boss = hub.token("boss", "admin").await;
    let mut stream = hub.stream(&viewer).await;

    hub.post(
        "/api/admin/kill-switch",
        &boss,
        json!({ "active": true, "reason": "incident 7" }),
    )
    .await
    .expect(200);
    let on = stream
        .next_named("kill_switch", SOON)
        .await
        .expect("kill_switch event reaches every subscriber");
    assert_eq!(on.data["active"], true);
    assert_eq!(on.data["by"], "boss");
    hub.post(
        "/api/admin/kill-switch",
        MASTER,
        json!({ "active": false, "reason": "resolved" }),
    )
    .await
    .expect(200);
    let off = stream
        .next_named("kill_switch", SOON)
        .await
        .expect("kill_switch event on clearing");
    assert_eq!(off.data["active"], false);
    assert_eq!(off.data["by"], "master");

    let engage = hub
        .get("/api/admin/audit?action=kill_switch.engage", MASTER)
        .await
        .expect(200);
    assert_eq!(engage["count"], 1, "{engage}");
    let row = &entries(&engage)[0];
    assert_eq!(row["actor"], "boss");
    assert_eq!(row["target"], "kill_switch");
    assert_eq!(row["detail"]["reason"], "incident 7");
    let clear = hub
        .get("/api/admin/audit?action=kill_switch.clear", MASTER)
        .await
        .expect(200);
    assert_eq!(clear["count"], 1, "{clear}");
    assert_eq!(entries(&clear)[0]["actor"], "master");
    assert!(
        entries(&clear)[0]["id"].as_i64() > row["id"].as_i64(),
        "clear comes after engage"
    );
}

#[actix_web::test]
async fn the_audit_log_records_who_did_what_newest_first() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let cmd = hub.token("cmd", "commander").await;
    let held = hub.task(json!({ "title": "held", "prompt": "p" })).await;
    let held_id = held["id"].as_i64().unwrap();
    assert_eq!(held["assigned_to"], "rex");
    let waiting = hub
        .post(
            "/api/tasks",
            &cmd,
            json!({ "title": "waiting", "prompt": "p" }),
        )
        .await
        .expect(201);
    let waiting_id = waiting["id"].as_i64().unwrap();
    assert_eq!(waiting["status"], "queued");
    hub.put(
        &format!("/api/tasks/{held_id}"),
        &rex,
        json!({ "status": "running" }),
    )
    .await
    .expect(200);
    hub.post(
        &format!("/api/tasks/{held_id}/stream"),
        &rex,
        json!({ "chunk": "c" }),
    )
    .await
    .expect(201);
    hub.put(
        &format!("/api/tasks/{held_id}"),
        &rex,
        json!({ "status": "done", "output": "o" }),
    )
    .await
    .expect(200);
    // The freed slot takes the waiting task: the dispatcher assigns it.
    let dispatched = hub
        .eventually(SOON, || async {
            hub.task_status(waiting_id).await["assigned_to"] == "rex"
        })
        .await;
    assert!(dispatched);
    let prefix = hub.get("/api/admin/tokens", MASTER).await.expect(200)["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["agent_id"] == "cmd")
        .unwrap()["hash_prefix"]
        .as_str()
        .unwrap()
        .to_string();
    hub.put(
        &format!("/api/admin/tokens/{prefix}/permissions"),
        MASTER,
        json!({ "role": "viewer" }),
    )
    .await
    .expect(200);
    hub.delete(&format!("/api/admin/tokens/{prefix}"), MASTER)
        .await
        .expect(200);
    hub.delete("/api/agents/rex", MASTER).await.expect(200);

    let log = hub
        .get("/api/admin/audit?limit=500", MASTER)
        .await
        .expect(200);
    let rows = entries(&log);
    assert_eq!(log["count"].as_u64(), Some(rows.len() as u64));
    let ids: Vec<i64> = rows
        .iter()
        .map(|r| r["id"].as_i64().expect("numeric id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert!(
        rows.iter()
            .all(|r| r["at"].as_str().is_some_and(|at| at.ends_with('Z'))),
        "{log}"
    );

    let has = |actor: &str, action: &str, target: &str| {
        rows.iter()
            .any(|r| r["actor"] == actor && r["action"] == action && r["target"] == target)
    };
    let expected = [
        ("master", "token.issue", "agent:rex".to_string()),
        ("master", "token.issue", "agent:cmd".to_string()),
        ("rex", "agent.register", "agent:rex".to_string()),
        ("master", "task.create", format!("task:{held_id}")),
        ("cmd", "task.create", format!("task:{waiting_id}")),
        ("rex", "task.update", format!("task:{held_id}")),
        ("rex", "task.stream", format!("task:{held_id}")),
        ("dispatcher", "task.assign", format!("task:{waiting_id}")),
        ("master", "token.permissions", "agent:cmd".to_string()),
        ("master", "token.revoke", "agent:cmd".to_string()),
        ("master", "agent.delete", "agent:rex".to_string()),
    ];
    let missing: Vec<_> = expected
        .iter()
        .filter(|(a, act, t)| !has(a, act, t))
        .collect();
    assert!(
        missing.is_empty(),
        "missing audit rows {missing:?} in {log}"
    );
    // Two reports by rex on the held task: running, then done.
    let updates = rows
        .iter()
        .filter(|r| r["action"] == "task.update" && r["target"] == format!("task:{held_id}"))
        .count();
    assert_eq!(updates, 2);
}

#[actix_web::test]
async fn audit_filters_select_by_actor_and_action_and_pages_are_bounded() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 3).await;
    let _ada = hub.agent("ada", &["other"], 1).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let task = hub
            .task(json!({ "title": format!("t{n}"), "prompt": "p", "assign_to": "rex" }))
            .await;
        ids.push(task["id"].as_i64().unwrap());
    }
    for id in &ids {
        hub.put(
            &format!("/api/tasks/{id}"),
            &rex,
            json!({ "status": "running" }),
        )
        .await
        .expect(200);
    }

    let by_rex = hub
        .get("/api/admin/audit?actor=rex", MASTER)
        .await
        .expect(200);
    let actions: BTreeSet<&str> = entries(&by_rex)
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert!(
        entries(&by_rex).iter().all(|r| r["actor"] == "rex"),
        "{by_rex}"
    );
    assert_eq!(actions, BTreeSet::from(["agent.register", "task.update"]));
    assert_eq!(by_rex["count"], 4);

    let creates = hub
        .get("/api/admin/audit?action=task.create", MASTER)
        .await
        .expect(200);
    assert_eq!(creates["count"], 3);
    let targets: Vec<String> = entries(&creates)
        .iter()
        .map(|r| r["target"].as_str().unwrap().to_string())
        .collect();
    let newest_first: Vec<String> = ids.iter().rev().map(|id| format!("task:{id}")).collect();
    assert_eq!(targets, newest_first);
    assert!(entries(&creates).iter().all(|r| r["actor"] == "master"));

    let both = hub
        .get("/api/admin/audit?actor=rex&action=task.update", MASTER)
        .await
        .expect(200);
    assert_eq!(both["count"], 3);
    let none = hub
        .get("/api/admin/audit?actor=ada&action=task.update", MASTER)
        .await
        .expect(200);
    assert_eq!(none["count"], 0);
    assert_eq!(none["entries"], json!([]));
    let unknown = hub
        .get("/api/admin/audit?action=no.such.action", MASTER)
        .await
        .expect(200);
    assert_eq!(unknown["count"], 0);

    // Paging: limit and offset over the same newest-first order.
    let all = hub.get("/api/admin/audit", MASTER).await.expect(200);
    let one = hub
        .get("/api/admin/audit?limit=1", MASTER)
        .await
        .expect(200);
    assert_eq!(one["count"], 1);
    assert_eq!(entries(&one)[0]["id"], entries(&all)[0]["id"]);
    let page = hub
        .get("/api/admin/audit?limit=2&offset=1", MASTER)
        .await
        .expect(200);
    let page_ids: Vec<&Value> = entries(&page).iter().map(|r| &r["id"]).collect();
    let expected_ids: Vec<&Value> = entries(&all)[1..3].iter().map(|r| &r["id"]).collect();
    assert_eq!(page_ids, expected_ids);
    for bad in ["limit=0", "limit=-3", "limit=abc", "offset=-1"] {
        let reply = hub.get(&format!("/api/admin/audit?{bad}"), MASTER).await;
        assert_eq!(reply.expect(400)["code"], "bad_request", "{bad}");
    }
}

#[actix_web::test]
async fn the_audit_log_needs_its_permission_and_never_holds_secrets() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let prompt = "PROMPT-7f3a: the launch codes are 0000";
    let task = hub
        .task(json!({ "title": "secret work", "prompt": prompt }))
        .await;
    let path = format!("/api/tasks/{}", task["id"]);
    hub.put(&path, &rex, json!({ "status": "running" }))
        .await
        .expect(200);
    let chunk = "CHUNK-91be partial answer";
    hub.post(&format!("{path}/stream"), &rex, json!({ "chunk": chunk }))
        .await
        .expect(201);
    let output = "OUTPUT-c0de the answer is 42";
    hub.put(&path, &rex, json!({ "status": "done", "output": output }))
        .await
        .expect(200);

    for role in ["worker", "mobile", "commander", "viewer", "operator"] {
        let token = hub.token(&format!("as-{role}"), role).await;
        hub.get("/api/admin/audit", &token).await.expect(403);
    }
    hub.raw(Method::GET, "/api/admin/audit", None, None)
        .await
        .expect(401);
    let boss = hub.token("boss", "admin").await;
    let log = hub
        .get("/api/admin/audit?limit=500", &boss)
        .await
        .expect(200);
    assert!(log["count"].as_u64().unwrap() >= 8, "{log}");

    let text = log.to_string();
    for secret in [
        prompt,
        "PROMPT-7f3a",
        chunk,
        "CHUNK-91be",
        output,
        "OUTPUT-c0de",
        rex.as_str(),
        boss.as_str(),
        MASTER,
    ] {
        assert!(
            !text.contains(secret),
            "the audit log holds {secret:?}: {text}"
        );
    }
    // What it does hold: the task's title and where it went.
    let create = entries(&log)
        .iter()
        .find(|r| r["action"] == "task.create")
        .expect("task.create row");
    assert_eq!(create["target"], format!("task:{}", task["id"]));
}
