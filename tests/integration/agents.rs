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
