//! The message bus: posting to channels, who a message is from, reading history back
//! newest first, the `message` event, and what is refused.

use std::time::Duration;

use awc::http::Method;
use serde_json::{json, Value};

use crate::support::{TestHub, MASTER, SOON};

fn contents(list: &Value) -> Vec<String> {
    list["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("expected messages, got {list}"))
        .iter()
        .map(|m| m["content"].as_str().expect("content").to_string())
        .collect()
}

#[actix_web::test]
async fn messages_are_posted_and_read_back_newest_first_by_channel() {
    let hub = TestHub::spawn().await;
    let rex = hub.token("rex", "worker").await;
    let viewer = hub.token("watcher", "viewer").await;

    let first = hub
        .post(
            "/api/messages",
            &rex,
            json!({ "content": "build is green", "sender": "mallory", "channel": "ops" }),
        )
        .await
        .expect(201);
    assert!(first["id"].as_i64().is_some());
    assert_eq!(
        first["sender"], "rex",
        "a token always speaks as its own agent"
    );
    assert_eq!(first["sender_type"], "agent");
    assert_eq!(first["channel"], "ops");
    assert_eq!(first["content"], "build is green");
    assert!(first["created_at"].is_string());

    let general = hub
        .post("/api/messages", &rex, json!({ "content": "hello all" }))
        .await
        .expect(201);
    assert_eq!(general["channel"], "general");
    let named = hub
        .post(
            "/api/messages",
            MASTER,
            json!({ "content": "deploy at 5", "sender": "deploy-bot", "sender_type": "system", "channel": "ops" }),
        )
        .await
        .expect(201);
    assert_eq!(
        named["sender"], "deploy-bot",
        "the master token may name a sender"
    );
    assert_eq!(named["sender_type"], "system");
    let user = hub
        .post(
            "/api/messages",
            MASTER,
            json!({ "content": "from the console", "sender_type": "user" }),
        )
        .await
        .expect(201);
    assert_eq!(user["sender"], "master");
    assert_eq!(user["sender_type"], "user");

    let all = hub.get("/api/messages", &viewer).await.expect(200);
    assert_eq!(all["count"], 4);
    assert_eq!(
        contents(&all),
        [
            "from the console",
            "deploy at 5",
            "hello all",
            "build is green"
        ]
    );
    let ops = hub
        .get("/api/messages?channel=ops", &viewer)
        .await
        .expect(200);
    assert_eq!(contents(&ops), ["deploy at 5", "build is green"]);
    assert_eq!(ops["messages"][1], first, "history returns what was posted");
    let none = hub
        .get("/api/messages?channel=nobody-here", &viewer)
        .await
        .expect(200);
    assert_eq!(none["count"], 0);

    let audit = hub
        .get("/api/admin/audit?action=message.send", MASTER)
        .await
        .expect(200);
    assert_eq!(audit["count"], 4);
    let actors: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors.iter().filter(|a| **a == "rex").count(), 2);
    assert_eq!(actors.iter().filter(|a| **a == "master").count(), 2);
}

#[actix_web::test]
async fn history_pages_backwards_with_limit_and_before() {
    let hub = TestHub::spawn().await;
    let rex = hub.token("rex", "worker").await;
    let mut ids = Vec::new();
    for i in 0..55 {
        let sent = hub
            .post(
                "/api/messages",
                &rex,
                json!({ "content": format!("m{i}"), "channel": "flood" }),
            )
            .await
            .expect(201);
        ids.push(sent["id"].as_i64().unwrap());
    }
    let page = hub.get("/api/messages", &rex).await.expect(200);
    assert_eq!(page["count"], 50, "the default page is 50");
    assert_eq!(page["messages"][0]["content"], "m54");
    assert_eq!(page["messages"][49]["content"], "m5");

    let two = hub.get("/api/messages?limit=2", &rex).await.expect(200);
    assert_eq!(contents(&two), ["m54", "m53"]);
    let older = hub
        .get(&format!("/api/messages?limit=3&before={}", ids[53]), &rex)
        .await
        .expect(200);
    assert_eq!(contents(&older), ["m52", "m51", "m50"]);
    let oldest = hub
        .get(&format!("/api/messages?before={}", ids[2]), &rex)
        .await
        .expect(200);
    assert_eq!(contents(&oldest), ["m1", "m0"]);

    // Walking back page by page sees every message exactly once.
    let mut seen = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let path = match before {
            Some(id) => format!("/api/messages?channel=flood&limit=20&before={id}"),
            None => "/api/messages?channel=flood&limit=20".to_string(),
        };
        let page = hub.get(&path, &rex).await.expect(200);
        let batch = page["messages"].as_array().unwrap().clone();
        if batch.is_empty() {
            break;
        }
        before = batch.last().unwrap()["id"].as_i64();
        seen.extend(batch.iter().map(|m| m["id"].as_i64().unwrap()));
        assert!(seen.len() <= ids.len(), "paging does not end");
    }
    seen.reverse();
    assert_eq!(seen, ids);

    let capped = hub.get("/api/messages?limit=1000", &rex).await.expect(200);
    assert_eq!(capped["count"], 55);
    for bad in ["limit=0", "limit=-1", "limit=x", "before=abc"] {
        let reply = hub.get(&format!("/api/messages?{bad}"), &rex).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
    }
}

#[actix_web::test]
async fn bad_messages_and_missing_permissions_are_refused() {
    let hub = TestHub::spawn().await;
    let rex = hub.token("rex", "worker").await;
    for body in [
        json!({}),
        json!({ "channel": "ops" }),
        json!({ "content": "" }),
        json!({ "content": "   " }),
        json!({ "content": "x".repeat(8001) }),
        json!({ "content": "hi", "sender_type": "robot" }),
        json!({ "content": "hi", "sender_type": "AGENT" }),
        json!({ "content": 5 }),
    ] {
        let reply = hub.post("/api/messages", &rex, body.clone()).await;
        assert_eq!(reply.status, 400, "{body} was accepted: {}", reply.body);
    }
    hub.raw(
        Method::POST,
        "/api/messages",
        Some(&rex),
        Some(b"{\"content\":".to_vec()),
    )
    .await
    .expect(400);
    // Exactly 8000 characters is allowed.
    let longest = "é".repeat(8000);
    let sent = hub
        .post("/api/messages", &rex, json!({ "content": longest }))
        .await
        .expect(201);
    assert_eq!(sent["content"], longest.as_str());

    let viewer = hub.token("watcher", "viewer").await;
    hub.post("/api/messages", &viewer, json!({ "content": "may I?" }))
        .await
        .expect(403);
    let quiet = hub
        .post(
            "/api/admin/tokens",
            MASTER,
            json!({ "agent_id": "quiet", "permissions": ["tasks:read", "tasks:create"] }),
        )
        .await
        .expect(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    hub.get("/api/messages", &quiet).await.expect(403);
    hub.post("/api/messages", &quiet, json!({ "content": "hi" }))
        .await
        .expect(403);
    hub.raw(Method::GET, "/api/messages", None, None)
        .await
        .expect(401);
    hub.raw(
        Method::POST,
        "/api/messages",
        None,
        Some(json!({ "content": "anon" }).to_string().into_bytes()),
    )
    .await
    .expect(401);

    let list = hub.get("/api/messages", MASTER).await.expect(200);
    assert_eq!(
        list["count"], 1,
        "only the valid message was stored: {list}"
    );
}

#[actix_web::test]
async fn a_message_event_reaches_only_readers_of_messages() {
    let hub = TestHub::spawn().await;
    let rex = hub.token("rex", "worker").await;
    let viewer = hub.token("watcher", "viewer").await;
    let quiet = hub
        .post(
            "/api/admin/tokens",
            MASTER,
            json!({ "agent_id": "quiet", "permissions": ["tasks:read", "tasks:create"] }),
        )
        .await
        .expect(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut watching = hub.stream(&viewer).await;
    let mut deaf = hub.stream(&quiet).await;

    let sent = hub
        .post(
            "/api/messages",
            &rex,
            json!({ "content": "standup in 5", "channel": "team" }),
        )
        .await
        .expect(201);
    let event = watching
        .next_named("message", SOON)
        .await
        .expect("a message event");
    assert_eq!(event.data["id"], sent["id"]);
    assert_eq!(event.data["content"], "standup in 5");
    assert_eq!(event.data["sender"], "rex");
    assert_eq!(event.data["channel"], "team");
    assert!(event.id.is_some());

    // The token without messages:read gets its next event (its own task) and no message.
    let task = hub
        .post(
            "/api/tasks",
            &quiet,
            json!({ "title": "mine", "prompt": "p" }),
        )
        .await
        .expect(201);
    let mut next = None;
    while let Some(event) = deaf.next(Duration::from_secs(2)).await {
        if event.name != "keepalive" {
            next = Some(event);
            break;
        }
    }
    let next = next.expect("the task event reaches its creator");
    assert_eq!(
        next.name, "task_queued",
        "the first event after the message: {next:?}"
    );
    assert_eq!(next.data["id"], task["id"]);
}
