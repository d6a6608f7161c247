//! Two real hubs on loopback: peers, a relayed task, its result reported back, hop limits.

use awc::http::Method;
use serde_json::{json, Value};

use crate::support::{two_hubs, TestHub, MASTER, PEER_TOKEN as SHARED, SOON};

/// A call from one hub to another, the way peers call: the shared token in a header.
async fn as_peer(hub: &TestHub, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let request = awc::Client::new()
        .request(
            if body.is_some() {
                Method::POST
            } else {
                Method::GET
            },
            format!("{}{path}", hub.base),
        )
        .insert_header(("X-Federation-Token", token));
    let mut response = match body {
        Some(body) => request.send_body(body.to_string()).await,
        None => request.send().await,
    }
    .unwrap();
    let bytes = response.body().await.unwrap();
    (
        response.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[actix_web::test]
async fn a_task_no_local_agent_serves_runs_on_the_peer_and_its_result_comes_back() {
    let (a, b) = two_hubs().await;
    let gpu = b.agent("gpu", &["gpu"], 1).await;
    let _local = a.agent("rex", &["research"], 1).await;
    let created = a.task(json!({ "title": "Render", "prompt": "render the scene", "required_capability": "gpu" })).await;
    assert_eq!(
        created["assign_to"], "peer:hub-b",
        "pinned to the peer, never run here"
    );
    assert_eq!(created["status"], "queued");

    let remote = b.get("/api/tasks", MASTER).await.expect(200)["tasks"][0].clone();
    assert_eq!(remote["created_by"], "peer:hub-a");
    assert_eq!(remote["prompt"], "render the scene");
    assert_eq!(remote["assigned_to"], "gpu");
    let remote_id = remote["id"].as_i64().unwrap();
    b.put(
        &format!("/api/tasks/{remote_id}"),
        &gpu,
        json!({ "status": "done", "output": "rendered" }),
    )
    .await
    .expect(200);

    let id = created["id"].as_i64().unwrap();
    let back = a
        .eventually(SOON, || async {
            a.task_status(id).await["status"] == "done"
        })
        .await;
    assert!(
        back,
        "the peer reported the result: {}",
        a.task_status(id).await
    );
    assert_eq!(a.task_status(id).await["output"], "rendered");
    // A capability some agent here has is never relayed.
    let local = a.task(json!({ "title": "t", "prompt": "p" })).await;
    assert_eq!(local["assigned_to"], "rex");
}

#[actix_web::test]
async fn peers_need_the_shared_token_and_relays_respect_hops_the_kill_switch_and_ping() {
    let (a, b) = two_hubs().await;
    let task = json!({ "title": "t", "prompt": "p", "hop_count": 1 });
    assert_eq!(
        as_peer(&b, "/api/federation/tasks", "wrong", Some(task.clone()))
            .await
            .0,
        401
    );
    let (status, looped) = as_peer(
        &b,
        "/api/federation/tasks",
        SHARED,
        Some(json!({ "title": "t", "prompt": "p", "hop_count": 4 })),
    )
    .await;
    assert_eq!(status, 400, "a fourth hop is refused: {looped}");
    assert_eq!(
        as_peer(&b, "/api/federation/tasks", SHARED, Some(task.clone()))
            .await
            .0,
        201
    );
    b.post("/api/admin/kill-switch", MASTER, json!({}))
        .await
        .expect(200);
    let (status, refused) = as_peer(&b, "/api/federation/tasks", SHARED, Some(task)).await;
    assert_eq!(
        (status, refused["error"].clone()),
        (503, json!("kill switch engaged"))
    );

    let (status, health) = as_peer(&b, "/api/federation/status", SHARED, None).await;
    assert_eq!((status, health["status"].clone()), (200, json!("ok")));
    assert_eq!(
        b.raw(Method::GET, "/api/federation/status", None, None)
            .await
            .status,
        401
    );

    let ping = a
        .post("/api/admin/peers/hub-b/ping", MASTER, json!({}))
        .await
        .expect(200);
    assert_eq!(ping["reachable"], true, "{ping}");
    assert!(ping["latency_ms"].as_i64().is_some());
    let peers = a.get("/api/admin/peers", MASTER).await.expect(200);
    assert!(peers["peers"][0]["last_seen_at"].is_string());
    assert!(
        !peers.to_string().contains(SHARED),
        "the shared token is never listed"
    );
    a.post(
        "/api/admin/peers",
        MASTER,
        json!({ "name": "hub-b", "url": b.base, "token": SHARED }),
    )
    .await
    .expect(409);
    a.post("/api/admin/peers/ghost/ping", MASTER, json!({}))
        .await
        .expect(404);
    let worker = a.token("w", "worker").await;
    a.get("/api/admin/peers", &worker).await.expect(403);
    a.delete("/api/admin/peers/hub-b", MASTER).await.expect(200);
    a.delete("/api/admin/peers/hub-b", MASTER).await.expect(404);
}
