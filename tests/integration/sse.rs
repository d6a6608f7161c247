use std::time::Duration;

use serde_json::json;

use crate::support::{TestHub, MASTER, SOON};

#[actix_web::test]
async fn the_stream_carries_task_and_agent_events_with_increasing_ids() {
    let hub = TestHub::spawn().await;
    let mut stream = hub.stream(MASTER).await;
    let task = hub
        .task(json!({ "title": "t", "prompt": "top secret prompt" }))
        .await;
    let queued = stream
        .next_named("task_queued", SOON)
        .await
        .expect("task_queued");
    assert_eq!(queued.data["id"], task["id"]);
    assert!(
        queued.data.get("prompt").is_none(),
        "prompts never travel in events"
    );

    let rex = hub.agent("rex", &["research"], 1).await;
    let registered = stream
        .next_named("agent_registered", SOON)
        .await
        .expect("agent_registered");
    assert_eq!(registered.data["agent_id"], "rex");
    let assigned = stream
        .next_named("task_assigned", SOON)
        .await
        .expect("task_assigned");
    assert_eq!(assigned.data["assigned_to"], "rex");
    assert!(assigned.id > queued.id && registered.id > queued.id);

    let id = task["id"].as_i64().unwrap();
    hub.put(
        &format!("/api/tasks/{id}"),
        &rex,
        json!({ "status": "running" }),
    )
    .await
    .expect(200);
    hub.post(
        &format!("/api/tasks/{id}/stream"),
        &rex,
        json!({ "chunk": "line one" }),
    )
    .await
    .expect(201);
    let updated = stream
        .next_named("task_updated", SOON)
        .await
        .expect("task_updated");
    assert_eq!(updated.data["status"], "running");
    let chunk = stream
        .next_named("task_stream", SOON)
        .await
        .expect("task_stream");
    assert_eq!(chunk.data["chunk"], "line one");
    assert_eq!(chunk.data["task_id"], id);
    for event in [&queued, &registered, &assigned, &updated, &chunk] {
        assert!(event.id.is_some(), "every event has an id: {event:?}");
        assert!(!event.data.to_string().contains("top secret prompt"));
    }
}

#[actix_web::test]
async fn an_agent_token_receives_only_events_about_what_it_may_see() {
    let hub = TestHub::spawn().await;
    let _rex = hub.agent("rex", &["research"], 1).await;
    let ada = hub.agent("ada", &["git"], 1).await;
    let mut ada_stream = hub.stream(&ada).await;
    let theirs = hub.task(json!({ "title": "for rex", "prompt": "p" })).await;
    let mine = hub
        .task(json!({ "title": "for ada", "prompt": "p", "required_capability": "git" }))
        .await;
    let event = ada_stream
        .next_named("task_assigned", SOON)
        .await
        .expect("ada's own assignment");
    assert_eq!(
        event.data["id"], mine["id"],
        "the first task event ada sees is her own, not rex's {}",
        theirs["id"]
    );
}

#[actix_web::test]
async fn subscribers_are_counted_and_removed_when_they_disconnect() {
    let hub = TestHub::spawn_with(|s| s.sse_keepalive_seconds = 1).await;
    assert_eq!(hub.subscribers().await, 0);
    let first = hub.stream(MASTER).await;
    let mut second = hub.stream(MASTER).await;
    assert!(
        hub.eventually(SOON, || async { hub.subscribers().await == 2 })
            .await
    );
    let keepalive = second.next_named("keepalive", Duration::from_secs(3)).await;
    let keepalive = keepalive.expect("a keepalive event arrives on schedule");
    assert!(
        keepalive.id.is_some(),
        "keepalives carry an id like every event"
    );
    drop(first);
    drop(second);
    let gone = hub
        .eventually(Duration::from_secs(5), || async {
            hub.subscribers().await == 0
        })
        .await;
    assert!(gone, "disconnected subscribers are removed");
}

#[actix_web::test]
async fn a_client_resumes_after_its_last_event_id() {
    let hub = TestHub::spawn().await;
    let mut stream = hub.stream(MASTER).await;
    hub.task(json!({ "title": "one", "prompt": "p" })).await;
    let first = stream.next_named("task_queued", SOON).await.expect("first");
    drop(stream);
    hub.task(json!({ "title": "two", "prompt": "p" })).await;
    let mut resumed = hub
        .stream_with(&format!("/api/stream?token={MASTER}"), first.id)
        .await;
    let missed = resumed
        .next_named("task_queued", SOON)
        .await
        .expect("the missed event is replayed");
    assert_eq!(missed.data["title"], "two");
    assert!(missed.id > first.id);
}

#[actix_web::test]
async fn a_subscriber_that_stops_reading_is_cut_off_and_others_carry_on() {
    use std::io::Write;
    let hub = TestHub::spawn_with(|s| {
        s.sse_queue_capacity = 8;
        s.max_body_bytes = 1 << 20;
    })
    .await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let id = hub.task(json!({ "title": "t", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    // A raw connection that subscribes and then never reads a byte.
    let addr = hub.base.trim_start_matches("http://").to_string();
    let mut stalled = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stalled,
        "GET /api/stream?token={MASTER} HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    )
    .unwrap();
    assert!(
        hub.eventually(SOON, || async { hub.subscribers().await == 1 })
            .await
    );

    // Far more than the socket buffers can hold: the subscriber's queue must overflow.
    let chunk = "y".repeat(512 * 1024);
    let mut cut_off = false;
    for _ in 0..64 {
        hub.post(
            &format!("/api/tasks/{id}/stream"),
            &rex,
            json!({ "chunk": chunk }),
        )
        .await
        .expect(201);
        if hub.subscribers().await == 0 {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "the stalled subscriber was disconnected");
    let scraped = crate::metrics::metrics(&hub).await;
    let counted = crate::metrics::sample(&scraped, "m3shd_sse_subscribers_cut_off_total");
    assert_eq!(counted, Some(1.0), "the metrics count it: {scraped}");
    let mut fresh = hub.stream(MASTER).await;
    hub.task(json!({ "title": "after", "prompt": "p" })).await;
    assert!(
        fresh.next_named("task_queued", SOON).await.is_some(),
        "everyone else still gets events"
    );
    drop(stalled);
}

#[actix_web::test]
async fn the_stream_requires_credentials() {
    let hub = TestHub::spawn().await;
    let reply = hub
        .raw(awc::http::Method::GET, "/api/stream", None, None)
        .await;
    assert_eq!(reply.status, 401);
    let reply = hub
        .raw(
            awc::http::Method::GET,
            "/api/stream?token=wrong",
            None,
            None,
        )
        .await;
    assert_eq!(reply.status, 401);
}

#[actix_web::test]
async fn a_stream_beyond_the_limit_is_refused_until_one_closes() {
    let hub = TestHub::spawn_with(|s| {
        s.sse_max_subscribers = 2;
        // A closed connection is noticed when the hub next writes to it: a comment a second.
        s.sse_comment_seconds = 1;
    })
    .await;
    let first = hub.stream(MASTER).await;
    let _second = hub.stream(MASTER).await;
    assert!(
        hub.eventually(SOON, || async { hub.subscribers().await == 2 })
            .await
    );
    let refused = hub.get("/api/stream", MASTER).await.expect(503);
    assert_eq!(refused["code"], "unavailable");
    assert!(
        refused["error"].as_str().unwrap().contains("at most 2"),
        "{refused}"
    );
    let text = crate::metrics::metrics(&hub).await;
    assert_eq!(
        crate::metrics::sample(&text, "m3shd_sse_subscribers_limit"),
        Some(2.0),
        "the hub says how many streams it holds"
    );

    drop(first);
    let one_left = hub
        .eventually(Duration::from_secs(5), || async {
            hub.subscribers().await == 1
        })
        .await;
    assert!(one_left, "{} streams open", hub.subscribers().await);
    let mut third = hub.stream(MASTER).await;
    hub.task(json!({ "title": "after", "prompt": "p" })).await;
    assert!(
        third.next_named("task_queued", SOON).await.is_some(),
        "a stream opened once another closed carries events"
    );
}
