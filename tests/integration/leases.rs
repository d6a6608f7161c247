//! Leases and fencing: heartbeats are the lease on a task, a lost holder's task goes back
//! to the queue (or fails after the last attempt, with an escalation), running time limits
//! requeue, and a holder that lost its task is refused as a stale holder.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{keep_alive, Sse, TestHub, MASTER, SOON};

/// Long enough for a missed heartbeat (timeout 1 s, checked every 250 ms) to take effect.
const LEASE: Duration = Duration::from_secs(5);

/// An agent whose token may also create tasks (so it keeps seeing the tasks it created
/// after it loses them, and a late report is answered "stale holder" rather than 404).
async fn creator_agent(hub: &TestHub, agent_id: &str, capabilities: &[&str], max: i32) -> String {
    let permissions = [
        "tasks:read",
        "tasks:create",
        "tasks:update",
        "tasks:execute",
        "agents:register",
    ];
    let issued = hub
        .post(
            "/api/admin/tokens",
            MASTER,
            json!({ "agent_id": agent_id, "name": agent_id, "permissions": permissions }),
        )
        .await
        .expect(201);
    let token = issued["token"].as_str().unwrap().to_string();
    let body = json!({ "name": agent_id, "capabilities": capabilities, "max_concurrent": max });
    hub.post(&format!("/api/agents/{agent_id}/register"), &token, body)
        .await
        .expect(200);
    token
}

/// The next event named `name` about task `id` (others are skipped).
async fn next_for(stream: &mut Sse, name: &str, id: i64, within: Duration) -> Option<Value> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let event = stream.next_named(name, left).await?;
        if event.data["task_id"] == id {
            return Some(event.data);
        }
    }
}

async fn reaches(hub: &TestHub, id: i64, within: Duration, check: impl Fn(&Value) -> bool) -> bool {
    let check = &check;
    hub.eventually(within, || async move { check(&hub.task_status(id).await) })
        .await
}

async fn agent_load(hub: &TestHub, agent_id: &str) -> Value {
    let agents = hub.get("/api/agents", MASTER).await.expect(200);
    agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == agent_id)
        .map(|a| a["load"].clone())
        .unwrap_or(Value::Null)
}

fn actions(proof: &Value) -> Vec<String> {
    proof["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap().to_string())
        .collect()
}

#[actix_web::test]
async fn a_lost_lease_requeues_the_task_to_another_agent_as_attempt_two() {
    let hub = TestHub::spawn_with(|s| s.heartbeat_timeout = 1).await;
    let rex = hub.agent("rex", &["research"], 1).await;
    // rex stays online through the setup; its lease runs out once these stop.
    let rex_alive = keep_alive(&hub, "rex", &rex);
    let mut rex_events = hub.stream(&rex).await;
    let mut events = hub.stream(MASTER).await;
    let task = hub.task(json!({ "title": "t", "prompt": "p" })).await;
    let id = task["id"].as_i64().unwrap();
    assert_eq!(task["assigned_to"], "rex");
    assert_eq!(task["attempts"], 1);
    hub.put(
        &format!("/api/tasks/{id}"),
        &rex,
        json!({ "status": "running" }),
    )
    .await
    .expect(200);
    let ada = hub.agent("ada", &["research"], 1).await;
    let _alive = keep_alive(&hub, "ada", &ada);
    drop(rex_alive);

    let requeued = next_for(&mut events, "task_queued", id, LEASE)
        .await
        .expect("the task is requeued when rex's lease runs out");
    assert_eq!(requeued["reason"], "agent_offline");
    assert!(requeued["assigned_to"].is_null());
    let reassigned = next_for(&mut events, "task_assigned", id, SOON)
        .await
        .expect("and dispatched again");
    assert_eq!(reassigned["assigned_to"], "ada");
    assert_eq!(reassigned["attempts"], 2);
    let now = hub.task_status(id).await;
    assert_eq!(now["status"], "assigned");
    assert_eq!(now["assigned_to"], "ada");
    assert_eq!(now["attempts"], 2);

    // The old holder is told it lost the task, and can no longer see it.
    let mut lost = Value::Null;
    while lost["status"] != "queued" {
        lost = next_for(&mut rex_events, "task_updated", id, SOON)
            .await
            .expect("rex hears that it lost the task");
    }
    assert_eq!(lost["reason"], "agent_offline");
    hub.put(
        &format!("/api/tasks/{id}"),
        &rex,
        json!({ "status": "done" }),
    )
    .await
    .expect(404);
    assert_eq!(hub.get("/api/tasks", &rex).await.expect(200)["count"], 0);

    let proof = hub
        .get(&format!("/api/tasks/{id}/provenance"), MASTER)
        .await
        .expect(200);
    assert_eq!(proof["valid"], true);
    assert_eq!(
        actions(&proof),
        ["created", "assigned", "running", "requeued", "assigned"]
    );
    let link = &proof["chain"][3];
    assert_eq!(link["actor"], "hub");
    assert_eq!(link["detail"]["lost_because"], "agent_offline");
    assert_eq!(link["detail"]["attempts"], 1);
    assert_eq!(proof["chain"][4]["detail"]["assigned_to"], "ada");
}

#[actix_web::test]
async fn the_old_holder_is_refused_as_stale_after_the_requeue() {
    let hub = TestHub::spawn_with(|s| s.heartbeat_timeout = 1).await;
    let rex = creator_agent(&hub, "rex", &["research"], 1).await;
    let rex_alive = keep_alive(&hub, "rex", &rex);
    let task = hub
        .post("/api/tasks", &rex, json!({ "title": "t", "prompt": "p" }))
        .await
        .expect(201);
    let id = task["id"].as_i64().unwrap();
    assert_eq!(task["assigned_to"], "rex");
    let path = format!("/api/tasks/{id}");
    hub.put(&path, &rex, json!({ "status": "running" }))
        .await
        .expect(200);
    hub.post(&format!("{path}/stream"), &rex, json!({ "chunk": "early" }))
        .await
        .expect(201);
    let ada = hub.agent("ada", &["research"], 1).await;
    let _alive = keep_alive(&hub, "ada", &ada);
    drop(rex_alive);
    assert!(
        reaches(&hub, id, LEASE, |t| t["assigned_to"] == "ada").await,
        "the task moved to ada"
    );

    let late = [
        hub.put(&path, &rex, json!({ "status": "done", "output": "late" }))
            .await,
        hub.put(&path, &rex, json!({ "status": "running" })).await,
        hub.put(&path, &rex, json!({ "status": "queued" })).await,
        hub.post(&format!("{path}/stream"), &rex, json!({ "chunk": "late" }))
            .await,
        hub.post(&format!("{path}/handoff"), &rex, json!({ "to": "rex" }))
            .await,
    ];
    for reply in late {
        assert_eq!(reply.expect(409)["error"], "stale holder");
    }
    // Coming back online does not make rex the holder again.
    hub.post("/api/agents/rex/heartbeat", &rex, json!({}))
        .await
        .expect(200);
    let again = hub
        .put(&path, &rex, json!({ "status": "done", "output": "late" }))
        .await;
    assert_eq!(again.expect(409)["error"], "stale holder");

    let unchanged = hub.task_status(id).await;
    assert_eq!(unchanged["status"], "assigned");
    assert_eq!(unchanged["assigned_to"], "ada");
    assert!(unchanged["output"].is_null(), "{unchanged}");
    assert_eq!(unchanged["attempts"], 2);
    let proof = hub
        .get(&format!("{path}/provenance"), MASTER)
        .await
        .expect(200);
    let streams = actions(&proof).iter().filter(|a| *a == "stream").count();
    assert_eq!(streams, 1, "the late chunk was not recorded");
    assert_eq!(actions(&proof).last().unwrap(), "assigned");

    // The new holder works normally.
    hub.put(&path, &ada, json!({ "status": "running" }))
        .await
        .expect(200);
    let chunk = hub
        .post(&format!("{path}/stream"), &ada, json!({ "chunk": "real" }))
        .await
        .expect(201);
    assert_eq!(chunk["seq"], 1);
    let done = hub
        .put(&path, &ada, json!({ "status": "done", "output": "real" }))
        .await
        .expect(200);
    assert_eq!(done["output"], "real");
}

#[actix_web::test]
async fn losing_the_last_attempt_fails_the_task_escalates_and_fails_its_dependents() {
    let hub = TestHub::spawn_with(|s| {
        s.heartbeat_timeout = 1;
        s.max_attempts = 2;
    })
    .await;
    let mut events = hub.stream(MASTER).await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let rex_alive = keep_alive(&hub, "rex", &rex);
    let body = json!({ "tasks": [
        { "title": "a", "prompt": "p" },
        { "title": "b", "prompt": "p", "depends_on": 0 },
        { "title": "c", "prompt": "p", "depends_on": 1 },
    ]});
    let created = hub.post("/api/pipelines", MASTER, body).await.expect(201);
    let pipeline_id = created["pipeline_id"].as_i64().unwrap();
    let ids: Vec<i64> = created["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert!(reaches(&hub, ids[0], SOON, |t| t["assigned_to"] == "rex").await);
    drop(rex_alive);

    // Attempt 1 lost: back to the queue (no other agent yet).
    assert!(
        reaches(&hub, ids[0], LEASE, |t| t["status"] == "queued"
            && t["reason"] == "agent_offline")
        .await
    );
    assert_eq!(hub.task_status(ids[0]).await["attempts"], 1);
    assert!(
        hub.get("/api/escalations", MASTER).await.expect(200)["count"] == 0,
        "no escalation while attempts remain"
    );

    // Attempt 2 lost too: that was the last one.
    let ada = hub.agent("ada", &["research"], 1).await;
    let ada_alive = keep_alive(&hub, "ada", &ada);
    assert!(
        reaches(&hub, ids[0], SOON, |t| t["assigned_to"] == "ada"
            && t["attempts"] == 2)
        .await
    );
    drop(ada_alive);
    assert!(
        reaches(&hub, ids[0], LEASE, |t| t["status"] == "failed").await,
        "the task fails when the holder of its last attempt is lost"
    );
    let failed = hub.task_status(ids[0]).await;
    assert_eq!(failed["reason"], "attempts_exhausted");
    assert!(failed["assigned_to"].is_null());
    assert!(failed["completed_at"].is_string());
    assert_eq!(failed["attempts"], 2);

    let opened = events
        .next_named("escalation_opened", SOON)
        .await
        .expect("escalation_opened");
    assert_eq!(opened.data["task_id"], ids[0]);
    assert_eq!(opened.data["agent_id"], "ada");
    assert_eq!(opened.data["status"], "open");
    let reason = opened.data["reason"].as_str().unwrap();
    assert!(
        reason.contains("after 2 attempts") && reason.contains("agent_offline"),
        "{reason}"
    );
    let open = hub
        .get("/api/escalations?status=open", MASTER)
        .await
        .expect(200);
    assert_eq!(open["count"], 1);
    assert_eq!(open["escalations"][0]["task_id"], ids[0]);
    assert_eq!(open["escalations"][0]["created_by"], "hub");
    let audit = hub
        .get("/api/admin/audit?action=escalation.open", MASTER)
        .await
        .expect(200);
    assert_eq!(audit["count"], 1);

    for &id in &ids[1..] {
        assert!(
            reaches(&hub, id, SOON, |t| t["status"] == "failed"
                && t["reason"] == "dependency_failed")
            .await,
            "dependent {id} fails"
        );
    }
    let finished = hub
        .eventually(SOON, || async {
            hub.get(&format!("/api/pipelines/{pipeline_id}"), MASTER)
                .await
                .expect(200)["status"]
                == "failed"
        })
        .await;
    assert!(finished, "the pipeline is failed");
    let proof = hub
        .get(&format!("/api/tasks/{}/provenance", ids[0]), MASTER)
        .await
        .expect(200);
    assert_eq!(proof["valid"], true);
    let last = proof["chain"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "failed");
    assert_eq!(last["detail"]["lost_because"], "agent_offline");
}

#[actix_web::test]
async fn with_the_default_limit_the_third_lost_holder_fails_the_task() {
    let hub = TestHub::spawn_with(|s| s.heartbeat_timeout = 1).await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let rex_alive = keep_alive(&hub, "rex", &rex);
    let task = hub.task(json!({ "title": "t", "prompt": "p" })).await;
    assert_eq!(task["assigned_to"], "rex");
    drop(rex_alive);
    let id = task["id"].as_i64().unwrap();
    for attempt in 1..=2 {
        assert!(
            reaches(&hub, id, LEASE, |t| t["status"] == "queued"
                && t["attempts"] == attempt)
            .await,
            "attempt {attempt} lost"
        );
        // rex comes back and gets the task again (the only agent: a new attempt is rex's,
        // which it may lose again before this looks, so only the count is checked).
        hub.post("/api/agents/rex/heartbeat", &rex, json!({}))
            .await
            .expect(200);
        assert!(
            reaches(&hub, id, SOON, |t| t["attempts"] == attempt + 1).await,
            "attempt {} dispatched",
            attempt + 1
        );
    }
    assert!(reaches(&hub, id, LEASE, |t| t["status"] == "failed").await);
    let failed = hub.task_status(id).await;
    assert_eq!(failed["reason"], "attempts_exhausted");
    assert_eq!(failed["attempts"], 3);
    let open = hub
        .get("/api/escalations?status=open", MASTER)
        .await
        .expect(200);
    assert_eq!(open["count"], 1);
    assert_eq!(
        open["escalations"][0]["reason"],
        format!("task {id} failed after 3 attempts (last: agent_offline)")
    );
    // rex returns once more: nothing is dispatched, the task stays failed.
    hub.post("/api/agents/rex/heartbeat", &rex, json!({}))
        .await
        .expect(200);
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(hub.task_status(id).await["status"], "failed");
    assert_eq!(agent_load(&hub, "rex").await, 0);
}

#[actix_web::test]
async fn a_running_task_past_its_timeout_is_requeued_then_fails_on_its_last_attempt() {
    let hub = TestHub::spawn_with(|s| s.max_attempts = 2).await;
    let rex = hub.agent("rex", &["research"], 3).await;
    let mut events = hub.stream(MASTER).await;
    let slow = hub
        .task(json!({ "title": "slow", "prompt": "p", "timeout_seconds": 1 }))
        .await;
    let id = slow["id"].as_i64().unwrap();
    let idle = hub
        .task(json!({ "title": "idle", "prompt": "p", "timeout_seconds": 1 }))
        .await;
    let idle_id = idle["id"].as_i64().unwrap();
    let quick = hub
        .task(json!({ "title": "quick", "prompt": "p", "timeout_seconds": 1 }))
        .await;
    let quick_id = quick["id"].as_i64().unwrap();
    let path = format!("/api/tasks/{id}");

    let started = Instant::now();
    hub.put(&path, &rex, json!({ "status": "running" }))
        .await
        .expect(200);
    hub.put(
        &format!("/api/tasks/{quick_id}"),
        &rex,
        json!({ "status": "running" }),
    )
    .await
    .expect(200);
    hub.put(
        &format!("/api/tasks/{quick_id}"),
        &rex,
        json!({ "status": "done", "output": "fast" }),
    )
    .await
    .expect(200);

    let requeued = next_for(&mut events, "task_queued", id, Duration::from_secs(4))
        .await
        .expect("the running task is requeued after its time limit");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "requeued after {:?}, before its 1 s limit",
        started.elapsed()
    );
    assert_eq!(requeued["reason"], "timeout");
    let again = next_for(&mut events, "task_assigned", id, SOON)
        .await
        .expect("dispatched again");
    assert_eq!(again["attempts"], 2);
    assert_eq!(again["assigned_to"], "rex");

    // Only running counts: the idle task is still assigned; the quick one stays done.
    let idle_now = hub.task_status(idle_id).await;
    assert_eq!(idle_now["status"], "assigned", "{idle_now}");
    assert_eq!(idle_now["attempts"], 1);
    assert_eq!(hub.task_status(quick_id).await["status"], "done");

    hub.put(&path, &rex, json!({ "status": "running" }))
        .await
        .expect(200);
    assert!(
        reaches(&hub, id, Duration::from_secs(4), |t| t["status"]
            == "failed")
        .await,
        "the second timeout is the last attempt"
    );
    let failed = hub.task_status(id).await;
    assert_eq!(failed["reason"], "attempts_exhausted");
    let opened = events
        .next_named("escalation_opened", SOON)
        .await
        .expect("escalation_opened");
    assert_eq!(opened.data["task_id"], id);
    assert_eq!(
        opened.data["reason"],
        format!("task {id} failed after 2 attempts (last: timeout)")
    );
    // A result after the task failed is refused and changes nothing.
    hub.put(
        &path,
        &rex,
        json!({ "status": "done", "output": "too late" }),
    )
    .await
    .expect(404);
    assert!(hub.task_status(id).await["output"].is_null());
    assert_eq!(hub.task_status(quick_id).await["status"], "done");
    let open = hub
        .get("/api/escalations?status=open", MASTER)
        .await
        .expect(200);
    assert_eq!(open["count"], 1, "only the timed-out task escalated");
    let idle_now = hub.task_status(idle_id).await;
    assert_eq!(
        (idle_now["status"].as_str(), idle_now["attempts"].as_i64()),
        (Some("assigned"), Some(1)),
        "an assigned task that never runs is not timed out"
    );
}

#[actix_web::test]
async fn heartbeats_keep_the_lease() {
    let hub = TestHub::spawn_with(|s| s.heartbeat_timeout = 1).await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let _alive = keep_alive(&hub, "rex", &rex);
    let mut events = hub.stream(MASTER).await;
    let id = hub.task(json!({ "title": "t", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    hub.put(
        &format!("/api/tasks/{id}"),
        &rex,
        json!({ "status": "running" }),
    )
    .await
    .expect(200);
    assert!(
        next_for(&mut events, "task_queued", id, Duration::from_millis(2500))
            .await
            .is_none(),
        "a heartbeating holder keeps its task"
    );
    let task = hub.task_status(id).await;
    assert_eq!(task["status"], "running");
    assert_eq!(task["assigned_to"], "rex");
    assert_eq!(task["attempts"], 1);
    let health = hub.get("/api/health", MASTER).await.expect(200);
    assert_ne!(health["agents"]["rex"], "offline");
}

#[actix_web::test]
async fn a_task_handed_back_goes_to_another_agent_and_frees_the_slot() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let mut events = hub.stream(MASTER).await;
    let first = hub.task(json!({ "title": "first", "prompt": "p" })).await;
    let id = first["id"].as_i64().unwrap();
    assert_eq!(first["assigned_to"], "rex");
    let ada = hub.agent("ada", &["research"], 1).await;

    let back = hub
        .put(
            &format!("/api/tasks/{id}"),
            &rex,
            json!({ "status": "queued" }),
        )
        .await
        .expect(200);
    assert_eq!(back["status"], "queued");
    assert_eq!(back["reason"], "handed_back");
    assert!(back["assigned_to"].is_null());
    let queued = next_for(&mut events, "task_queued", id, SOON)
        .await
        .expect("task_queued");
    assert_eq!(queued["reason"], "handed_back");
    let moved = next_for(&mut events, "task_assigned", id, SOON)
        .await
        .expect("dispatched to the free agent");
    assert_eq!(moved["assigned_to"], "ada");
    assert_eq!(moved["attempts"], 2);
    hub.put(
        &format!("/api/tasks/{id}"),
        &rex,
        json!({ "status": "done" }),
    )
    .await
    .expect(404);

    assert_eq!(agent_load(&hub, "rex").await, 0, "rex handed its task back");
    assert_eq!(agent_load(&hub, "ada").await, 1);
    let second = hub.task(json!({ "title": "second", "prompt": "p" })).await;
    assert_eq!(second["assigned_to"], "rex", "rex is the one with room");

    // Ada hands back with her own reason. She has room, but a holder that hands a task
    // back is asked again only if nobody else can: it waits for rex's slot.
    let back = hub
        .put(
            &format!("/api/tasks/{id}"),
            &ada,
            json!({ "status": "queued", "reason": "out of memory" }),
        )
        .await
        .expect(200);
    assert_eq!(back["reason"], "out of memory");
    assert_eq!(agent_load(&hub, "ada").await, 0);
    assert_eq!(hub.task_status(id).await["status"], "queued");
    let second_id = second["id"].as_i64().unwrap();
    hub.put(
        &format!("/api/tasks/{second_id}"),
        &rex,
        json!({ "status": "done" }),
    )
    .await
    .expect(200);
    assert!(
        reaches(&hub, id, SOON, |t| t["assigned_to"] == "rex"
            && t["attempts"] == 3)
        .await
    );
}

#[actix_web::test]
async fn a_requeued_task_counts_against_its_new_holders_capacity() {
    let hub = TestHub::spawn_with(|s| s.heartbeat_timeout = 1).await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let rex_alive = keep_alive(&hub, "rex", &rex);
    let first = hub.task(json!({ "title": "first", "prompt": "p" })).await;
    let id = first["id"].as_i64().unwrap();
    assert_eq!(first["assigned_to"], "rex");
    let ada = hub.agent("ada", &["research"], 1).await;
    let _alive = keep_alive(&hub, "ada", &ada);
    drop(rex_alive);
    assert!(
        reaches(&hub, id, LEASE, |t| t["assigned_to"] == "ada").await,
        "the task moved to ada"
    );

    let second = hub.task(json!({ "title": "second", "prompt": "p" })).await;
    assert_eq!(
        second["status"], "queued",
        "ada (max_concurrent 1) is full and rex is offline: {second}"
    );
    assert!(second["assigned_to"].is_null());
    assert_eq!(agent_load(&hub, "ada").await, 1, "ada holds one task");
    hub.put(
        &format!("/api/tasks/{id}"),
        &ada,
        json!({ "status": "done", "output": "ok" }),
    )
    .await
    .expect(200);
    let second_id = second["id"].as_i64().unwrap();
    assert!(reaches(&hub, second_id, SOON, |t| t["assigned_to"] == "ada").await);
}
