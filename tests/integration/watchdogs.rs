//! The watchdogs of issue 17: work nobody claims is escalated once with the reason (and
//! failed if the task asks), a holder that heartbeats without progress is escalated as
//! stuck (and by config loses the task), and a task past its own budget is cancelled.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{keep_alive, TestHub, MASTER};

/// The open escalations of task `id`.
async fn escalations_of(hub: &TestHub, id: i64) -> Vec<Value> {
    let all = hub.get("/api/escalations", MASTER).await.expect(200);
    let list = all["escalations"].as_array().cloned().unwrap_or_default();
    list.into_iter()
        .filter(|e| e["task_id"] == json!(id))
        .collect()
}

async fn eventually_escalated(hub: &TestHub, id: i64, within: Duration) -> Vec<Value> {
    hub.eventually(within, || async {
        !escalations_of(hub, id).await.is_empty()
    })
    .await;
    escalations_of(hub, id).await
}

/// Waits for task `id` to reach `status`; the task as it then is.
async fn reaches(hub: &TestHub, id: i64, status: &str) -> Value {
    let reached = hub
        .eventually(Duration::from_secs(5), || async {
            hub.task_status(id).await["status"] == status
        })
        .await;
    let task = hub.task_status(id).await;
    assert!(reached, "task {id} is not {status}: {task}");
    task
}

/// The holder starts task `id`.
async fn start(hub: &TestHub, id: i64, holder: &str) {
    hub.put(
        &format!("/api/tasks/{id}"),
        holder,
        json!({ "status": "running" }),
    )
    .await
    .expect(200);
}

#[actix_web::test]
async fn unclaimed_work_is_escalated_once_with_the_reason_nobody_took_it() {
    let hub = TestHub::spawn_with(|s| {
        s.schedule_timeouts.insert("translate".into(), 1);
    })
    .await;
    // Nobody serves the capability; the task's own limit.
    let orphan = hub
        .task(json!({ "title": "orphan", "prompt": "p", "required_capability": "nobody_has", "schedule_timeout_seconds": 1 }))
        .await;
    assert_eq!(orphan["schedule_timeout_seconds"], 1);
    let orphan = orphan["id"].as_i64().unwrap();
    // Every agent with the capability is busy; the capability's limit from the settings.
    let rex = hub.agent("rex", &["translate"], 1).await;
    let _alive = keep_alive(&hub, "rex", &rex);
    let first = hub
        .task(json!({ "title": "first", "prompt": "p", "required_capability": "translate" }))
        .await["id"]
        .as_i64()
        .unwrap();
    let waiting = hub
        .task(json!({ "title": "waiting", "prompt": "p", "required_capability": "translate" }))
        .await["id"]
        .as_i64()
        .unwrap();
    // No limit at all: never escalated.
    let patient = hub
        .task(json!({ "title": "patient", "prompt": "p", "required_capability": "nobody_has" }))
        .await["id"]
        .as_i64()
        .unwrap();

    let found = eventually_escalated(&hub, orphan, Duration::from_secs(5)).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let reason = found[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("no agent has the capability nobody_has"),
        "{reason}"
    );
    let task = hub.task_status(orphan).await;
    assert_eq!(task["status"], "queued", "escalating does not fail it");
    assert_eq!(task["reason"], "schedule_timeout");

    let found = eventually_escalated(&hub, waiting, Duration::from_secs(5)).await;
    let reason = found[0]["reason"].as_str().unwrap();
    assert!(reason.contains("(1 busy)"), "{reason}");
    assert!(escalations_of(&hub, first).await.is_empty(), "rex took it");

    // Once per wait: more time passing raises nothing new.
    actix_web::rt::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(escalations_of(&hub, orphan).await.len(), 1);
    assert_eq!(escalations_of(&hub, waiting).await.len(), 1);
    assert!(escalations_of(&hub, patient).await.is_empty());

    // The waiting task still runs once rex is free.
    hub.put(
        &format!("/api/tasks/{first}"),
        &rex,
        json!({ "status": "done" }),
    )
    .await
    .expect(200);
    let taken = hub
        .eventually(Duration::from_secs(5), || async {
            hub.task_status(waiting).await["assigned_to"] == "rex"
        })
        .await;
    assert!(taken, "{}", hub.task_status(waiting).await);
}

#[actix_web::test]
async fn a_task_may_ask_to_fail_when_unclaimed_and_the_kill_switch_is_named() {
    let hub = TestHub::spawn().await;
    let id = hub
        .task(json!({ "title": "t", "prompt": "p", "schedule_timeout_seconds": 1, "fail_on_schedule_timeout": true }))
        .await["id"]
        .as_i64()
        .unwrap();
    // Engaged after the task was admitted: it waits, and the kill switch is the reason.
    hub.post(
        "/api/admin/kill-switch",
        MASTER,
        json!({ "reason": "maintenance" }),
    )
    .await
    .expect(200);
    let task = reaches(&hub, id, "failed").await;
    assert_eq!(task["reason"], "schedule_timeout");
    let found = escalations_of(&hub, id).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]["reason"]
            .as_str()
            .unwrap()
            .contains("the kill switch is engaged"),
        "{found:?}"
    );
    // Bad limits are refused with the field's name.
    for (field, value) in [
        ("schedule_timeout_seconds", json!(0)),
        ("progress_timeout_seconds", json!(-5)),
        ("max_tokens", json!(0)),
        ("max_cost_usd", json!(0)),
    ] {
        let mut body = json!({ "title": "t", "prompt": "p" });
        body[field] = value;
        let refused = hub.post("/api/tasks", MASTER, body).await;
        assert_eq!(refused.status, 400, "{field}");
        assert!(
            refused.body["error"].as_str().unwrap().contains(field),
            "{}",
            refused.body
        );
    }
}

#[actix_web::test]
async fn a_holder_that_heartbeats_without_progress_is_escalated_as_stuck_once() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let _alive = keep_alive(&hub, "rex", &rex);
    let id = hub
        .task(json!({ "title": "t", "prompt": "p", "progress_timeout_seconds": 2 }))
        .await["id"]
        .as_i64()
        .unwrap();
    start(&hub, id, &rex).await;
    // Chunks every half second are progress: nothing is raised for 3 s.
    for n in 0..6 {
        hub.post(
            &format!("/api/tasks/{id}/stream"),
            &rex,
            json!({ "chunk": format!("step {n}\n") }),
        )
        .await
        .expect(201);
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(escalations_of(&hub, id).await.is_empty());
    // Then silence, while heartbeats go on.
    let found = eventually_escalated(&hub, id, Duration::from_secs(5)).await;
    assert_eq!(found.len(), 1);
    let reason = found[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("stuck") && reason.contains("rex"),
        "{reason}"
    );
    let task = hub.task_status(id).await;
    assert_eq!(task["status"], "running", "escalated, not taken away");
    assert_eq!(task["assigned_to"], "rex");
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(escalations_of(&hub, id).await.len(), 1, "once per attempt");
    // The holder can still finish it.
    hub.put(
        &format!("/api/tasks/{id}"),
        &rex,
        json!({ "status": "done", "output": "late" }),
    )
    .await
    .expect(200);
}

#[actix_web::test]
async fn with_requeue_stuck_tasks_a_stuck_task_goes_to_another_agent() {
    let hub = TestHub::spawn_with(|s| {
        s.requeue_stuck_tasks = true;
        s.progress_timeouts.insert("research".into(), 1);
    })
    .await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let _rex_alive = keep_alive(&hub, "rex", &rex);
    let id = hub.task(json!({ "title": "t", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    start(&hub, id, &rex).await;
    let max = hub.agent("max", &["research"], 1).await;
    let _max_alive = keep_alive(&hub, "max", &max);
    let moved = hub
        .eventually(Duration::from_secs(5), || async {
            hub.task_status(id).await["assigned_to"] == "max"
        })
        .await;
    let task = hub.task_status(id).await;
    assert!(moved, "{task}");
    assert_eq!(task["attempts"], 2);
    assert_eq!(escalations_of(&hub, id).await.len(), 1);
    // rex's late report is refused: the task is no longer its own to see.
    let stale = hub
        .put(
            &format!("/api/tasks/{id}"),
            &rex,
            json!({ "status": "done" }),
        )
        .await;
    assert_eq!(stale.status, 404, "{}", stale.body);
}

#[actix_web::test]
async fn a_task_past_its_budget_is_cancelled_and_what_it_spent_is_counted() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 2).await;
    let _alive = keep_alive(&hub, "rex", &rex);
    let mut events = hub.stream(&rex).await;
    let costly = hub
        .task(json!({ "title": "costly", "prompt": "p", "max_cost_usd": 0.5 }))
        .await;
    assert_eq!(costly["max_cost_usd"], 0.5);
    let costly = costly["id"].as_i64().unwrap();
    let wordy = hub
        .task(json!({ "title": "wordy", "prompt": "p", "max_tokens": 1000 }))
        .await["id"]
        .as_i64()
        .unwrap();
    for id in [costly, wordy] {
        start(&hub, id, &rex).await;
    }
    // Usage rides on stream chunks: under the budget nothing happens.
    let path = format!("/api/tasks/{costly}/stream");
    hub.post(&path, &rex, json!({ "chunk": "a", "cost_usd": 0.3 }))
        .await
        .expect(201);
    assert_eq!(hub.task_status(costly).await["status"], "running");
    assert_eq!(hub.task_status(costly).await["cost_usd"], 0.3);
    hub.post(&path, &rex, json!({ "chunk": "b", "cost_usd": 0.6 }))
        .await
        .expect(201);
    let task = reaches(&hub, costly, "cancelled").await;
    assert_eq!(task["reason"], "budget_exceeded");
    // The holder hears of it at once, as with any cancel.
    let mut heard = false;
    while let Some(event) = events
        .next_named("task_updated", Duration::from_secs(5))
        .await
    {
        if event.data["task_id"] == json!(costly) && event.data["status"] == "cancelled" {
            heard = true;
            break;
        }
    }
    assert!(heard, "rex was told on the stream");
    // Later reports from it are refused.
    let late = hub
        .post(&path, &rex, json!({ "chunk": "c", "cost_usd": 0.7 }))
        .await;
    assert_eq!(late.status, 409, "{}", late.body);

    // Tokens on a report count too (in and out together).
    hub.put(
        &format!("/api/tasks/{wordy}"),
        &rex,
        json!({ "status": "running", "tokens_in": 600, "tokens_out": 500 }),
    )
    .await
    .expect(200);
    reaches(&hub, wordy, "cancelled").await;
    let found = escalations_of(&hub, wordy).await;
    assert!(
        found[0]["reason"]
            .as_str()
            .unwrap()
            .contains("max_tokens 1000"),
        "{found:?}"
    );

    // What was spent is in the day's analytics.
    let costs = hub
        .get("/api/admin/analytics/costs", MASTER)
        .await
        .expect(200);
    assert!(
        (costs["total_usd"].as_f64().unwrap() - 0.6).abs() < 1e-9,
        "{costs}"
    );
    let tokens: i64 = costs["costs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tokens_in"].as_i64().unwrap() + c["tokens_out"].as_i64().unwrap())
        .sum();
    assert_eq!(tokens, 1100);
}
