//! Push alerts reach an ntfy server (a receiver started by the test) and never slow a request.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{keep_alive, receiver, TestHub, MASTER};

#[actix_web::test]
async fn agent_down_escalations_and_the_cost_cap_are_pushed_to_ntfy() {
    let (url, received) = receiver();
    let hub = TestHub::spawn_with(|s| {
        s.alerts_enabled = true;
        s.ntfy_url = url.clone();
        s.ntfy_topic = "hub-alerts".into();
        s.heartbeat_timeout = 1;
        s.daily_cost_cap = 0.5;
    })
    .await;
    let rex = hub.agent("rex", &["research"], 1).await;
    // rex holds its task until it reports; only then does it fall silent (and go down).
    let rex_alive = keep_alive(&hub, "rex", &rex);
    let id = hub.task(json!({ "title": "t", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    hub.put(
        &format!("/api/tasks/{id}"),
        &rex,
        json!({ "status": "done", "cost_usd": 0.6 }),
    )
    .await
    .expect(200);
    drop(rex_alive);
    hub.post(
        "/api/escalations",
        MASTER,
        json!({ "task_id": id, "reason": "needs a human" }),
    )
    .await
    .expect(201);
    let titles = || {
        received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, title, _)| title.clone())
            .collect::<Vec<_>>()
    };
    let all_arrived = hub
        .eventually(Duration::from_secs(6), || async {
            let titles = titles();
            [
                "Agent rex is down",
                "Daily cost cap reached",
                &format!("Escalation opened on task {id}"),
            ]
            .iter()
            .all(|wanted| titles.iter().any(|t| t == wanted))
        })
        .await;
    assert!(all_arrived, "got {:?}", titles());
    let received = received.lock().unwrap();
    assert!(received.iter().all(|(path, _, _)| path == "/hub-alerts"));
    // The worker-written reason stays in the hub unless alerts_include_detail is set.
    assert!(
        received
            .iter()
            .all(|(_, _, body)| !body.contains("needs a human")),
        "{received:?}"
    );
}

#[actix_web::test]
async fn escalation_reasons_go_out_only_when_detail_is_asked_for() {
    let (url, received) = receiver();
    let hub = TestHub::spawn_with(|s| {
        s.alerts_enabled = true;
        s.ntfy_url = url.clone();
        s.ntfy_topic = "hub-alerts".into();
        s.alerts_include_detail = true;
    })
    .await;
    hub.post(
        "/api/escalations",
        MASTER,
        json!({ "reason": "door is open" }),
    )
    .await
    .expect(201);
    let arrived = hub
        .eventually(Duration::from_secs(6), || async {
            received
                .lock()
                .unwrap()
                .iter()
                .any(|(_, _, body)| body.contains("door is open"))
        })
        .await;
    assert!(arrived, "got {:?}", received.lock().unwrap());
}

#[actix_web::test]
async fn a_hanging_ntfy_server_never_slows_a_request() {
    // Accepts connections (the kernel does) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let hub = TestHub::spawn_with(|s| {
        s.alerts_enabled = true;
        s.ntfy_url = url;
        s.ntfy_topic = "hub-alerts".into();
    })
    .await;
    let started = Instant::now();
    for i in 0..5 {
        hub.post(
            "/api/escalations",
            MASTER,
            json!({ "reason": format!("r{i}") }),
        )
        .await
        .expect(201);
    }
    // Each alert would wait 5 s per try for this server; the requests do not.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    drop(silent);
}
