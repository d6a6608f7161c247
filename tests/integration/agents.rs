use std::time::Duration;

use serde_json::json;

use crate::support::{keep_alive, TestHub, MASTER, SOON};

#[actix_web::test]
async fn an_agent_token_registers_and_heartbeats_only_its_own_id() {
    let hub = TestHub::spawn().await;
    let rex = hub.token("rex", "worker").await;
    let body = json!({ "name": "rex", "machine": "rex-mac-mini", "max_concurrent": 2, "capabilities": ["research", "git"], "excluded": ["deploy"] });
    let reply = hub
        .post("/api/agents/rex/register", &rex, body.clone())
        .await
        .expect(200);
    assert_eq!(reply["status"], "online");
    assert_eq!(reply["capabilities"], json!(["research", "git"]));
    hub.post("/api/agents/ada/register", &rex, body)
        .await
        .expect(403);
    hub.post("/api/agents/rex/heartbeat", &rex, json!({}))
        .await
        .expect(200);
    hub.post("/api/agents/ada/heartbeat", &rex, json!({}))
        .await
        .expect(403);
    hub.post("/api/agents/ghost/heartbeat", MASTER, json!({}))
        .await
        .expect(404);

    let list = hub.get("/api/agents", &rex).await.expect(200);
    assert_eq!(list["total"], 1);
    assert_eq!(list["agents"][0]["agent_id"], "rex");
    assert_eq!(list["agents"][0]["machine"], "rex-mac-mini");
    assert_eq!(list["agents"][0]["excluded"], json!(["deploy"]));
}

#[actix_web::test]
async fn registration_requires_a_name() {
    let hub = TestHub::spawn().await;
    let reply = hub
        .post(
            "/api/agents/rex/register",
            MASTER,
            json!({ "capabilities": ["x"] }),
        )
        .await;
    assert_eq!(reply.expect(400)["error"], "name is required");
}

#[actix_web::test]
async fn deleting_an_agent_needs_the_permission_and_requeues_its_work() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let task = hub.task(json!({ "title": "t", "prompt": "p" })).await;
    assert_eq!(task["assigned_to"], "rex");
    hub.delete("/api/agents/rex", &rex).await.expect(403);
    hub.delete("/api/agents/rex", MASTER).await.expect(200);
    hub.delete("/api/agents/rex", MASTER).await.expect(404);
    let id = task["id"].as_i64().unwrap();
    let back = hub
        .eventually(SOON, || async {
            hub.task_status(id).await["status"] == "queued"
        })
        .await;
    assert!(back, "the removed agent's task went back to the queue");
    let list = hub.get("/api/agents", MASTER).await.expect(200);
    assert_eq!(list["total"], 0);
}

#[actix_web::test]
async fn a_silent_agent_goes_offline_and_its_tasks_go_to_another_agent() {
    let hub = TestHub::spawn_with(|s| s.heartbeat_timeout = 1).await;
    let rex = hub.agent("rex", &["research"], 1).await;
    // rex stays online through the setup; it falls silent when these stop.
    let rex_alive = keep_alive(&hub, "rex", &rex);
    let mut stream = hub.stream(MASTER).await;
    let task = hub.task(json!({ "title": "t", "prompt": "p" })).await;
    assert_eq!(task["assigned_to"], "rex");
    drop(rex_alive);

    let offline = stream
        .next_named("agent_status", Duration::from_secs(4))
        .await
        .expect("agent_status event");
    assert_eq!(offline.data["agent_id"], "rex");
    assert_eq!(offline.data["status"], "offline");
    let id = task["id"].as_i64().unwrap();
    // The requeue is committed just after the offline event is published.
    let requeued = hub
        .eventually(SOON, || async {
            hub.task_status(id).await["status"] == "queued"
        })
        .await;
    assert!(requeued, "the offline agent's task went back to the queue");
    assert_eq!(hub.task_status(id).await["reason"], "agent_offline");

    let health = hub.get("/api/health", MASTER).await.expect(200);
    assert_eq!(health["agents"]["rex"], "offline");

    // A new capable agent picks it up at once; the attempt count grows.
    let ada = hub.agent("ada", &["research"], 1).await;
    let _ada_alive = keep_alive(&hub, "ada", &ada);
    let reassigned = hub
        .eventually(SOON, || async {
            hub.task_status(id).await["assigned_to"] == "ada"
        })
        .await;
    assert!(reassigned);
    assert_eq!(hub.task_status(id).await["attempts"], 2);
}

#[actix_web::test]
async fn a_heartbeat_brings_an_offline_agent_back() {
    let hub = TestHub::spawn_with(|s| s.heartbeat_timeout = 1).await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let offline = hub
        .eventually(Duration::from_secs(4), || async {
            hub.get("/api/health", MASTER).await.body["agents"]["rex"] == "offline"
        })
        .await;
    assert!(offline);
    let task = hub.task(json!({ "title": "t", "prompt": "p" })).await;
    assert_eq!(task["status"], "queued");
    hub.post("/api/agents/rex/heartbeat", &rex, json!({}))
        .await
        .expect(200);
    // Online again; kept so while the test looks.
    let _alive = keep_alive(&hub, "rex", &rex);
    let id = task["id"].as_i64().unwrap();
    assert!(
        hub.eventually(SOON, || async {
            hub.task_status(id).await["status"] == "assigned"
        })
        .await
    );
}

/// Health, the overview and the analytics summary count agents by status from what the
/// Registry keeps, not by asking each agent; after every kind of change they agree with
/// the agents list, which asks each agent.
#[actix_web::test]
async fn every_status_count_agrees_with_the_agent_list_after_each_change() {
    let hub = TestHub::spawn_with(|s| s.heartbeat_timeout = 1).await;
    let agrees = || async {
        let listed = hub.get("/api/agents?limit=100", MASTER).await.expect(200);
        let mut shown = std::collections::BTreeMap::new();
        let mut counts = std::collections::BTreeMap::<String, i64>::new();
        for agent in listed["agents"].as_array().expect("agents") {
            let status = agent["status"].as_str().expect("status").to_string();
            shown.insert(
                agent["agent_id"].as_str().unwrap().to_string(),
                json!(status),
            );
            *counts.entry(status).or_default() += 1;
        }
        let health = hub.get("/api/health", MASTER).await.expect(200);
        let summary = hub
            .get("/api/admin/analytics/summary", MASTER)
            .await
            .expect(200);
        let overview = hub.get("/api/overview", MASTER).await.expect(200);
        let overview_counts: std::collections::BTreeMap<String, i64> =
            serde_json::from_value(overview["agents"]["by_status"].clone()).unwrap();
        health["agents"] == json!(shown)
            && summary["agents"]["by_status"] == json!(counts)
            && summary["agents"]["total"] == json!(shown.len())
            && overview_counts
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect::<Vec<_>>()
                == counts.clone().into_iter().collect::<Vec<_>>()
    };
    let settled = || async { hub.eventually(SOON, agrees).await };

    // Registered and alive; one of them busy with the only task it can hold.
    let rex = hub.agent("rex", &["research"], 1).await;
    let _rex_alive = keep_alive(&hub, "rex", &rex);
    let ada = hub.agent("ada", &["writing"], 2).await;
    let _ada_alive = keep_alive(&hub, "ada", &ada);
    assert!(settled().await, "two online agents");
    hub.task(json!({ "title": "t", "prompt": "p", "required_capability": "research" }))
        .await;
    let rex_busy = hub
        .eventually(SOON, || async {
            hub.get("/api/health", MASTER).await.body["agents"]["rex"] == "busy"
        })
        .await;
    assert!(rex_busy, "rex holds its one task");
    assert!(settled().await, "a busy agent");

    // Made by an operator, never heard from; then held; then woken.
    hub.post(
        "/api/agents",
        MASTER,
        json!({ "name": "scribe", "role": "writer" }),
    )
    .await
    .expect(201);
    assert!(settled().await, "an agent never contacted");
    hub.put(
        "/api/agents",
        MASTER,
        json!({ "name": "ada", "status": "idle" }),
    )
    .await
    .expect(200);
    assert_eq!(
        hub.get("/api/health", MASTER).await.body["agents"]["ada"],
        "idle"
    );
    assert!(settled().await, "an agent on hold");
    hub.post("/api/agents/ada/wake", MASTER, json!({}))
        .await
        .expect(200);
    assert_eq!(
        hub.get("/api/health", MASTER).await.body["agents"]["ada"],
        "online"
    );
    assert!(settled().await, "a woken agent");

    // Silent past its timeout, back with a heartbeat, then removed.
    let bo = hub.agent("bo", &["research"], 1).await;
    let offline = hub
        .eventually(Duration::from_secs(4), || async {
            hub.get("/api/health", MASTER).await.body["agents"]["bo"] == "offline"
        })
        .await;
    assert!(offline, "bo missed its heartbeats");
    assert!(settled().await, "an agent gone offline");
    hub.post("/api/agents/bo/heartbeat", &bo, json!({}))
        .await
        .expect(200);
    assert_eq!(
        hub.get("/api/health", MASTER).await.body["agents"]["bo"],
        "online"
    );
    hub.delete("/api/agents/bo", MASTER).await.expect(200);
    let gone = hub
        .eventually(SOON, || async {
            hub.get("/api/health", MASTER).await.body["agents"]
                .get("bo")
                .is_none()
        })
        .await;
    assert!(gone, "a removed agent is no longer counted");
    assert!(settled().await, "after a removal");
}
