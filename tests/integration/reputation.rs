//! Reputation: outcome counters per agent and capability, verifications, the leaderboard,
//! and routing that prefers agents that do well while still trying newcomers.

use awc::http::Method;
use serde_json::{json, Value};

use crate::support::{test_settings, TestHub, MASTER, SOON};

/// Waits until task `id` has a holder and returns it.
async fn holder_of(hub: &TestHub, id: i64) -> String {
    let assigned = hub
        .eventually(SOON, || async {
            hub.task_status(id).await["assigned_to"].is_string()
        })
        .await;
    assert!(assigned, "task {id} was never assigned");
    hub.task_status(id).await["assigned_to"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Creates a task pinned to `agent` and, once it holds it, reports it `status`.
async fn finish_pinned(
    hub: &TestHub,
    agent: &str,
    token: &str,
    capability: &str,
    status: &str,
) -> i64 {
    let id = hub
        .task(json!({ "title": "t", "prompt": "p", "required_capability": capability, "assign_to": agent }))
        .await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(holder_of(hub, id).await, agent);
    hub.put(
        &format!("/api/tasks/{id}"),
        token,
        json!({ "status": status, "output": "x" }),
    )
    .await
    .expect(200);
    id
}

/// The entry of `capability` in a reputation reply.
fn capability<'a>(reputation: &'a Value, name: &str) -> &'a Value {
    reputation["capabilities"]
        .as_array()
        .unwrap_or_else(|| panic!("expected capabilities, got {reputation}"))
        .iter()
        .find(|c| c["capability"] == name)
        .unwrap_or_else(|| panic!("no {name} in {reputation}"))
}

fn close(value: &Value, expected: f64) -> bool {
    value.as_f64().is_some_and(|v| (v - expected).abs() < 1e-9)
}

#[actix_web::test]
async fn finished_tasks_and_verifications_are_counted_per_capability() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research", "git"], 1).await;
    let viewer = hub.token("watcher", "viewer").await;
    let empty = hub
        .get("/api/agents/rex/reputation", &viewer)
        .await
        .expect(200);
    assert_eq!(empty, json!({ "agent_id": "rex", "capabilities": [] }));

    let done = finish_pinned(&hub, "rex", &rex, "research", "done").await;
    let failed = finish_pinned(&hub, "rex", &rex, "research", "failed").await;
    let git = finish_pinned(&hub, "rex", &rex, "git", "done").await;
    // A cancelled task is no outcome of the agent's.
    let cancelled = hub
        .task(json!({ "title": "t", "prompt": "p", "required_capability": "research" }))
        .await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(holder_of(&hub, cancelled).await, "rex");
    hub.put(
        &format!("/api/tasks/{cancelled}"),
        MASTER,
        json!({ "status": "cancelled" }),
    )
    .await
    .expect(200);

    // Verifying: master only, done tasks only.
    hub.post(&format!("/api/tasks/{git}/verify"), &rex, json!({}))
        .await
        .expect(403);
    hub.post(&format!("/api/tasks/{failed}/verify"), MASTER, json!({}))
        .await
        .expect(409);
    hub.post(&format!("/api/tasks/{git}/verify"), MASTER, json!({}))
        .await
        .expect(200);

    let reputation = hub
        .get("/api/agents/rex/reputation", &viewer)
        .await
        .expect(200);
    assert_eq!(reputation["agent_id"], "rex");
    assert_eq!(reputation["capabilities"].as_array().unwrap().len(), 2);
    let research = capability(&reputation, "research");
    assert_eq!(research["successes"], 1);
    assert_eq!(research["failures"], 1);
    assert_eq!(research["verifications"], 0);
    assert!(close(&research["mean"], 0.5), "{research}");
    // UCB1 with the default exploration 1.0: mean + sqrt(ln N / n), N = n = 2.
    let expected = 0.5 + (2f64.ln() / 2.0).sqrt();
    assert!(close(&research["score"], expected), "{research}");
    let git_stats = capability(&reputation, "git");
    assert_eq!(git_stats["successes"], 1);
    assert_eq!(git_stats["failures"], 0);
    assert_eq!(git_stats["verifications"], 1);
    assert!(
        close(&git_stats["mean"], 1.0),
        "the mean never exceeds 1: {git_stats}"
    );

    // A verification counts as half a success.
    hub.post(&format!("/api/tasks/{done}/verify"), MASTER, json!({}))
        .await
        .expect(200);
    let reputation = hub
        .get("/api/agents/rex/reputation", &rex)
        .await
        .expect(200);
    let research = capability(&reputation, "research");
    assert_eq!(research["verifications"], 1);
    assert_eq!(research["successes"], 1);
    assert!(close(&research["mean"], 0.75), "{research}");

    hub.get("/api/agents/ghost/reputation", &viewer)
        .await
        .expect(404);
    hub.raw(Method::GET, "/api/agents/rex/reputation", None, None)
        .await
        .expect(401);
}

#[actix_web::test]
async fn the_leaderboard_ranks_agents_by_success_rate_for_the_master_only() {
    let hub = TestHub::spawn().await;
    let ana = hub.agent("ana", &["research"], 1).await;
    let bob = hub.agent("bob", &["research", "git"], 1).await;
    let cy = hub.agent("cy", &["research"], 1).await;
    let _idle = hub.agent("idle", &["research"], 1).await;
    for status in ["failed", "failed"] {
        finish_pinned(&hub, "ana", &ana, "research", status).await;
    }
    finish_pinned(&hub, "bob", &bob, "research", "done").await;
    finish_pinned(&hub, "bob", &bob, "git", "failed").await;
    for _ in 0..3 {
        finish_pinned(&hub, "cy", &cy, "research", "done").await;
    }
    let verified = finish_pinned(&hub, "cy", &cy, "research", "done").await;
    hub.post(&format!("/api/tasks/{verified}/verify"), MASTER, json!({}))
        .await
        .expect(200);

    let board = hub
        .get("/api/admin/reputation/leaderboard", MASTER)
        .await
        .expect(200);
    assert_eq!(board["count"], 3, "only agents with finished work: {board}");
    assert_eq!(
        board["leaderboard"],
        json!([
            { "rank": 1, "agent_id": "cy", "successes": 4, "failures": 0, "verifications": 1, "success_rate": 1.0 },
            { "rank": 2, "agent_id": "bob", "successes": 1, "failures": 1, "verifications": 0, "success_rate": 0.5 },
            { "rank": 3, "agent_id": "ana", "successes": 0, "failures": 2, "verifications": 0, "success_rate": 0.0 },
        ])
    );

    let admin = hub.token("root", "admin").await;
    for token in [&ana, &admin, &hub.token("watcher", "viewer").await] {
        hub.get("/api/admin/reputation/leaderboard", token)
            .await
            .expect(403);
    }
    hub.raw(Method::GET, "/api/admin/reputation/leaderboard", None, None)
        .await
        .expect(401);
}

#[actix_web::test]
async fn routing_shifts_to_the_agent_that_succeeds() {
    let hub = TestHub::spawn_with(|s| s.reputation_exploration = 0.1).await;
    let good = hub.agent("good", &["research"], 1).await;
    let bad = hub.agent("bad", &["research"], 1).await;
    let mut holders = Vec::new();
    for i in 0..14 {
        let id = hub
            .task(json!({ "title": format!("t{i}"), "prompt": "p" }))
            .await["id"]
            .as_i64()
            .unwrap();
        let holder = holder_of(&hub, id).await;
        let (token, status) = match holder.as_str() {
            "good" => (&good, "done"),
            "bad" => (&bad, "failed"),
            other => panic!("unexpected holder {other}"),
        };
        hub.put(
            &format!("/api/tasks/{id}"),
            token,
            json!({ "status": status, "output": "x" }),
        )
        .await
        .expect(200);
        holders.push(holder);
    }
    assert!(
        holders[..4].iter().any(|h| h == "bad"),
        "a newcomer is tried before its record is known: {holders:?}"
    );
    let later = holders[4..].iter().filter(|h| *h == "good").count();
    assert!(
        later >= 8,
        "the agent that succeeds gets most later tasks: {holders:?}"
    );

    let good_stats = hub
        .get("/api/agents/good/reputation", &good)
        .await
        .expect(200);
    let bad_stats = hub
        .get("/api/agents/bad/reputation", &good)
        .await
        .expect(200);
    let (g, b) = (
        capability(&good_stats, "research"),
        capability(&bad_stats, "research"),
    );
    let to_good = holders.iter().filter(|h| *h == "good").count();
    assert_eq!(g["successes"], to_good);
    assert_eq!(g["failures"], 0);
    assert_eq!(b["failures"], holders.len() - to_good);
    assert_eq!(b["successes"], 0);
    assert!(
        g["score"].as_f64().unwrap() > b["score"].as_f64().unwrap(),
        "{g} vs {b}"
    );
}

#[actix_web::test]
async fn a_newcomer_is_tried_before_a_proven_agent() {
    let hub = TestHub::spawn().await;
    let abe = hub.agent("abe", &["research"], 2).await;
    for _ in 0..3 {
        finish_pinned(&hub, "abe", &abe, "research", "done").await;
    }
    // zoe is busier and was assigned more recently, so only her missing record can win.
    let _zoe = hub.agent("zoe", &["research"], 2).await;
    let pinned = hub
        .task(json!({ "title": "t", "prompt": "p", "assign_to": "zoe" }))
        .await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(holder_of(&hub, pinned).await, "zoe");
    let open = hub.task(json!({ "title": "t", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        holder_of(&hub, open).await,
        "zoe",
        "an agent with no history scores highest"
    );
    // zoe is now full: the next task goes to abe.
    let next = hub.task(json!({ "title": "t", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(holder_of(&hub, next).await, "abe");

    let zoe_stats = hub
        .get("/api/agents/zoe/reputation", &abe)
        .await
        .expect(200);
    assert_eq!(
        zoe_stats["capabilities"],
        json!([]),
        "tasks still held count for nothing yet"
    );
}

#[actix_web::test]
async fn counters_and_routing_survive_a_restart() {
    let hub = TestHub::spawn_with(|s| s.reputation_exploration = 0.1).await;
    let good = hub.agent("good", &["research"], 1).await;
    let bad = hub.agent("bad", &["research"], 1).await;
    for _ in 0..2 {
        finish_pinned(&hub, "bad", &bad, "research", "failed").await;
        finish_pinned(&hub, "good", &good, "research", "done").await;
    }
    let verified = finish_pinned(&hub, "good", &good, "research", "done").await;
    hub.post(&format!("/api/tasks/{verified}/verify"), MASTER, json!({}))
        .await
        .expect(200);
    let before_good = hub
        .get("/api/agents/good/reputation", MASTER)
        .await
        .expect(200);
    let before_bad = hub
        .get("/api/agents/bad/reputation", MASTER)
        .await
        .expect(200);
    let before_board = hub
        .get("/api/admin/reputation/leaderboard", MASTER)
        .await
        .expect(200);

    // The same database (a consistent snapshot: this hub still runs) in a fresh hub.
    let dir = tempfile::tempdir().unwrap();
    hub.snapshot_into(dir.path());
    let mut settings = test_settings(dir.path());
    settings.reputation_exploration = 0.1;
    let restarted = TestHub::start(dir, settings, "test-encryption-key", None).await;
    assert_eq!(
        restarted
            .get("/api/agents/good/reputation", MASTER)
            .await
            .expect(200),
        before_good
    );
    assert_eq!(
        restarted
            .get("/api/agents/bad/reputation", MASTER)
            .await
            .expect(200),
        before_bad
    );
    assert_eq!(
        restarted
            .get("/api/admin/reputation/leaderboard", MASTER)
            .await
            .expect(200),
        before_board
    );
    assert_eq!(capability(&before_good, "research")["successes"], 3);
    assert_eq!(capability(&before_good, "research")["verifications"], 1);
    assert_eq!(capability(&before_bad, "research")["failures"], 2);

    // The Dispatcher remembers too: with no record both would tie and "bad" would win the
    // tie (same load, never assigned in this process, first by name).
    for (agent, token) in [("bad", &bad), ("good", &good)] {
        let body = json!({ "name": agent, "capabilities": ["research"], "max_concurrent": 1 });
        restarted
            .post(&format!("/api/agents/{agent}/register"), token, body)
            .await
            .expect(200);
    }
    let id = restarted
        .task(json!({ "title": "after", "prompt": "p" }))
        .await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(holder_of(&restarted, id).await, "good");
}
