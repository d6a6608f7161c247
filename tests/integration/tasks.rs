use serde_json::json;

use crate::support::{TestHub, MASTER, SOON};

#[actix_web::test]
async fn the_seed_quick_start_creates_an_assigned_task() {
    let hub = TestHub::spawn().await;
    let _rex = hub
        .agent("rex", &["research", "code_write", "git"], 2)
        .await;
    let task = hub.task(json!({ "title": "Summarize README", "prompt": "Summarize ~/project/README.md in 3 bullets." })).await;
    assert!(task["id"].as_i64().is_some());
    assert_eq!(task["status"], "assigned");
    assert_eq!(task["assigned_to"], "rex");
    assert_eq!(
        task["prompt"],
        "Summarize ~/project/README.md in 3 bullets."
    );
    assert_eq!(task["required_capability"], "research");
    assert_eq!(task["urgency"], "normal");
    assert_eq!(task["model"], "auto");
}

#[actix_web::test]
async fn dispatch_matches_capability_and_respects_exclusions_and_slots() {
    let hub = TestHub::spawn().await;
    let _rex = hub.token("rex", "worker").await;
    let body = json!({ "name": "rex", "capabilities": ["research", "deploy"], "excluded": ["deploy"], "max_concurrent": 1 });
    hub.post("/api/agents/rex/register", MASTER, body)
        .await
        .expect(200);

    let deploy = hub
        .task(json!({ "title": "d", "prompt": "p", "required_capability": "deploy" }))
        .await;
    assert_eq!(
        deploy["status"], "queued",
        "an excluded capability is never routed"
    );
    let first = hub.task(json!({ "title": "a", "prompt": "p" })).await;
    assert_eq!(first["assigned_to"], "rex");
    let second = hub.task(json!({ "title": "b", "prompt": "p" })).await;
    assert_eq!(second["status"], "queued", "max_concurrent 1 is full");

    // Finishing the first frees the slot and the second is dispatched at once.
    hub.put(
        &format!("/api/tasks/{}", first["id"]),
        MASTER,
        json!({ "status": "done", "output": "ok" }),
    )
    .await
    .expect(200);
    let id = second["id"].as_i64().unwrap();
    assert!(
        hub.eventually(SOON, || async {
            hub.task_status(id).await["assigned_to"] == "rex"
        })
        .await
    );
    assert_eq!(
        hub.task_status(deploy["id"].as_i64().unwrap()).await["status"],
        "queued"
    );
}

#[actix_web::test]
async fn a_queued_task_goes_to_the_first_capable_agent_that_registers() {
    let hub = TestHub::spawn().await;
    let task = hub
        .task(json!({ "title": "g", "prompt": "p", "required_capability": "git" }))
        .await;
    assert_eq!(task["status"], "queued");
    assert!(task["assigned_to"].is_null());
    let _other = hub.agent("other", &["research"], 4).await;
    let _gitter = hub.agent("gitter", &["git"], 1).await;
    let id = task["id"].as_i64().unwrap();
    assert!(
        hub.eventually(SOON, || async {
            hub.task_status(id).await["assigned_to"] == "gitter"
        })
        .await
    );
}

#[actix_web::test]
async fn the_queue_orders_priority_then_urgency_then_deadline_then_age() {
    let hub = TestHub::spawn().await;
    let mut ids = Vec::new();
    for body in [
        json!({ "title": "old", "prompt": "p" }),
        json!({ "title": "late deadline", "prompt": "p", "deadline": "2030-01-01T00:00:00Z" }),
        json!({ "title": "early deadline", "prompt": "p", "deadline": "2029-01-01T00:00:00Z" }),
        json!({ "title": "critical", "prompt": "p", "urgency": "critical" }),
        json!({ "title": "high priority", "prompt": "p", "priority": 5, "urgency": "low" }),
    ] {
        ids.push(hub.task(body).await["id"].as_i64().unwrap());
    }
    let rex = hub.agent("rex", &["research"], 1).await;
    let mut order = Vec::new();
    for _ in 0..ids.len() {
        let mut assigned = None;
        for _ in 0..100 {
            let list = hub
                .get("/api/tasks?status=assigned", &rex)
                .await
                .expect(200);
            assigned = list["tasks"][0]["id"].as_i64();
            if assigned.is_some() {
                break;
            }
            actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let id = assigned.expect("one task assigned");
        order.push(id);
        hub.put(
            &format!("/api/tasks/{id}"),
            &rex,
            json!({ "status": "done", "output": "x" }),
        )
        .await
        .expect(200);
    }
    assert_eq!(order, vec![ids[4], ids[3], ids[2], ids[1], ids[0]]);
}

#[actix_web::test]
async fn assign_to_pins_a_task_to_one_agent() {
    let hub = TestHub::spawn().await;
    let _rex = hub.agent("rex", &["research"], 4).await;
    let task = hub
        .task(json!({ "title": "t", "prompt": "p", "assign_to": "ada" }))
        .await;
    assert_eq!(
        task["status"], "queued",
        "rex is free but the task is pinned to ada"
    );
    let _ada = hub.agent("ada", &["research"], 1).await;
    let id = task["id"].as_i64().unwrap();
    assert!(
        hub.eventually(SOON, || async {
            hub.task_status(id).await["assigned_to"] == "ada"
        })
        .await
    );
}

#[actix_web::test]
async fn workers_report_through_the_state_machine() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let id = hub.task(json!({ "title": "t", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/tasks/{id}");
    let running = hub
        .put(&path, &rex, json!({ "status": "running" }))
        .await
        .expect(200);
    assert!(running["started_at"].is_string());
    let chunk = hub
        .post(
            &format!("{path}/stream"),
            &rex,
            json!({ "chunk": "half way" }),
        )
        .await
        .expect(201);
    assert_eq!(chunk["seq"], 0);
    let done = hub.put(&path, &rex, json!({ "status": "done", "output": "the answer", "cost_usd": 0.01, "confidence": 0.9 })).await.expect(200);
    assert_eq!(done["status"], "done");
    assert_eq!(done["output"], "the answer");
    assert!(done["completed_at"].is_string());
    let again = hub.put(&path, &rex, json!({ "status": "running" })).await;
    assert_eq!(again.status, 409, "a done task cannot run again");
    hub.post(&format!("{path}/stream"), &rex, json!({ "chunk": "late" }))
        .await
        .expect(409);
    hub.put(&path, &rex, json!({ "status": "sleeping" }))
        .await
        .expect(400);
}

#[actix_web::test]
async fn only_the_holder_reports_and_others_cannot_even_see_the_task() {
    let hub = TestHub::spawn().await;
    let _rex = hub.agent("rex", &["research"], 1).await;
    let ada = hub.agent("ada", &["git"], 1).await;
    let id = hub
        .task(json!({ "title": "t", "prompt": "secret plan" }))
        .await["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/tasks/{id}");
    hub.get(&path, &ada).await.expect(404);
    hub.put(&path, &ada, json!({ "status": "done" }))
        .await
        .expect(404);
    hub.post(&format!("{path}/stream"), &ada, json!({ "chunk": "x" }))
        .await
        .expect(404);
    hub.get(&format!("{path}/deps"), &ada).await.expect(404);
    let list = hub.get("/api/tasks", &ada).await.expect(200);
    assert_eq!(list["count"], 0);
    hub.get("/api/tasks/999999", MASTER).await.expect(404);
}

#[actix_web::test]
async fn handing_a_task_back_requeues_it_and_cancelling_stops_it() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let first = hub.task(json!({ "title": "a", "prompt": "p" })).await;
    let second = hub.task(json!({ "title": "b", "prompt": "p" })).await;
    assert_eq!(second["status"], "queued");
    let second_id = second["id"].as_i64().unwrap();
    hub.put(
        &format!("/api/tasks/{second_id}"),
        MASTER,
        json!({ "status": "cancelled" }),
    )
    .await
    .expect(200);
    let back = hub
        .put(
            &format!("/api/tasks/{}", first["id"]),
            &rex,
            json!({ "status": "queued" }),
        )
        .await
        .expect(200);
    assert_eq!(back["reason"], "handed_back");
    // Handed back, it waits for another agent rather than going straight back to rex...
    let id = first["id"].as_i64().unwrap();
    let load = hub.get("/api/agents", MASTER).await.expect(200)["agents"][0]["load"].clone();
    assert_eq!(load, 0, "rex's slot is free");
    assert_eq!(hub.task_status(id).await["status"], "queued");
    let _ada = hub.agent("ada", &["research"], 1).await;
    assert!(
        hub.eventually(SOON, || async {
            hub.task_status(id).await["assigned_to"] == "ada"
        })
        .await
    );
    // ...while new work still goes to rex.
    let second_round = hub.task(json!({ "title": "c", "prompt": "p" })).await;
    assert_eq!(second_round["assigned_to"], "rex");
    assert_eq!(hub.task_status(second_id).await["status"], "cancelled");
}

#[actix_web::test]
async fn lists_filter_limit_and_compact() {
    let hub = TestHub::spawn().await;
    let long = "x".repeat(1000);
    for i in 0..25 {
        hub.task(json!({ "title": format!("t{i}"), "prompt": long }))
            .await;
    }
    let page = hub.get("/api/tasks", MASTER).await.expect(200);
    assert_eq!(page["count"], 20, "default limit is 20");
    assert_eq!(page["tasks"][0]["title"], "t24", "newest first");
    let compact = hub
        .get("/api/tasks?limit=3&compact=true", MASTER)
        .await
        .expect(200);
    assert_eq!(compact["count"], 3);
    assert_eq!(compact["tasks"][0]["prompt"].as_str().unwrap().len(), 200);
    let none = hub.get("/api/tasks?status=done", MASTER).await.expect(200);
    assert_eq!(none["count"], 0);
    let queued = hub
        .get("/api/tasks?status=queued&limit=100", MASTER)
        .await
        .expect(200);
    assert_eq!(queued["count"], 25);
    let deps = hub
        .get(
            &format!("/api/tasks/{}/deps", page["tasks"][0]["id"]),
            MASTER,
        )
        .await
        .expect(200);
    assert_eq!(deps["count"], 0);
}

// A queued task with nothing to watch waits without an actor (issue 15): it is still
// counted, changed, handed out in order, and restored after a restart.
#[actix_web::test]
async fn a_backlog_sleeps_in_the_queue_yet_every_task_is_counted_changed_and_dispatched() {
    let first_run = TestHub::spawn().await;
    let hub = &first_run;
    let ids: Vec<i64> = futures_util::future::join_all((0..20).map(|n| {
        hub.task(json!({ "title": format!("t{n}"), "prompt": "p", "required_capability": "gpu" }))
    }))
    .await
    .iter()
    .map(|t| t["id"].as_i64().unwrap())
    .collect();
    async fn live(hub: &TestHub) -> serde_json::Value {
        hub.get("/api/health", MASTER).await.expect(200)["live_tasks"].clone()
    }
    assert_eq!(live(hub).await, 20, "sleeping tasks are live tasks");
    // A change wakes the task it names.
    let cancelled = hub
        .put(
            &format!("/api/tasks/{}", ids[3]),
            MASTER,
            json!({ "status": "cancelled" }),
        )
        .await
        .expect(200);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(live(hub).await, 19);

    // A restart, as a process restart would find the database.
    let dir = tempfile::tempdir().unwrap();
    first_run.snapshot_into(dir.path());
    let settings = crate::support::test_settings(dir.path());
    let hub = &TestHub::start(dir, settings, "test-encryption-key", None).await;
    assert_eq!(live(hub).await, 19, "the backlog is restored asleep");
    let rex = hub.agent("rex", &["gpu"], 1).await;
    let first = ids[0];
    assert!(
        hub.eventually(SOON, || async {
            hub.task_status(first).await["assigned_to"] == "rex"
        })
        .await,
        "the oldest sleeping task is woken and assigned"
    );
    let path = format!("/api/tasks/{first}");
    hub.put(&path, &rex, json!({ "status": "running" }))
        .await
        .expect(200);
    hub.put(&path, &rex, json!({ "status": "done", "output": "ok" }))
        .await
        .expect(200);
    let second = ids[1];
    assert!(
        hub.eventually(SOON, || async {
            hub.task_status(second).await["assigned_to"] == "rex"
        })
        .await,
        "the next one follows in queue order"
    );
}

#[actix_web::test]
async fn a_create_answers_the_task_exactly_as_it_is_stored() {
    // The answer is built from the row the hub inserted, not read back: every column the
    // insert leaves to its default must still read the same afterwards.
    let hub = TestHub::spawn().await;
    let _rex = hub.agent("rex", &["research"], 1).await;
    let full = json!({
        "title": "every field", "prompt": "p", "required_capability": "research",
        "priority": 3, "urgency": "high", "deadline": "2030-01-01T00:00:00Z",
        "schedule_timeout_seconds": 600, "fail_on_schedule_timeout": true,
        "progress_timeout_seconds": 120, "max_cost_usd": 2.5, "max_tokens": 4000,
    });
    let assigned = hub.task(full.clone()).await;
    assert_eq!(assigned["status"], "assigned");
    let mut pinned = full;
    pinned["assign_to"] = json!("nobody-yet");
    let queued = hub.task(pinned).await;
    assert_eq!(queued["status"], "queued");
    for answered in [assigned, queued] {
        let stored = hub.task_status(answered["id"].as_i64().unwrap()).await;
        assert_eq!(
            answered, stored,
            "the create's answer and a later read differ"
        );
    }
}
