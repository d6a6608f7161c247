//! Pipelines (dependency graphs created atomically), plain `depends_on`, templates,
//! handoff, verification with the provenance chain, and escalations.

use std::time::Duration;

use serde_json::{json, Value};

use awc::http::Method;

use crate::support::{send_json, Event, Sse, TestHub, MASTER, SOON};

/// The ids of a created pipeline's tasks, in pipeline order.
fn member_ids(created: &Value) -> Vec<i64> {
    created["tasks"]
        .as_array()
        .expect("tasks in the pipeline response")
        .iter()
        .map(|t| t["id"].as_i64().expect("task id"))
        .collect()
}

/// Reports `status` (with an output for `done`) as `token`.
async fn report(hub: &TestHub, token: &str, id: i64, status: &str) -> Value {
    let body = if status == "done" {
        json!({ "status": status, "output": format!("output of {id}") })
    } else {
        json!({ "status": status })
    };
    hub.put(&format!("/api/tasks/{id}"), token, body)
        .await
        .expect(200)
}

/// Waits until the task has `status` (and, when given, `reason`).
async fn reaches(hub: &TestHub, id: i64, status: &str, reason: Option<&str>) -> bool {
    hub.eventually(SOON, || async {
        let task = hub.task_status(id).await;
        task["status"] == status && reason.is_none_or(|r| task["reason"] == r)
    })
    .await
}

async fn pipeline(hub: &TestHub, id: i64) -> Value {
    hub.get(&format!("/api/pipelines/{id}"), MASTER)
        .await
        .expect(200)
}

async fn pipeline_reaches(hub: &TestHub, id: i64, status: &str) -> bool {
    hub.eventually(SOON, || async {
        pipeline(hub, id).await["status"] == status
    })
    .await
}

/// Reads events until one named `name` concerns task `id`; every event read is kept.
async fn until_task_event(
    stream: &mut Sse,
    seen: &mut Vec<Event>,
    name: &str,
    id: i64,
) -> Option<Event> {
    let deadline = std::time::Instant::now() + SOON;
    loop {
        let left = deadline.checked_duration_since(std::time::Instant::now())?;
        let event = stream.next(left).await?;
        seen.push(event.clone());
        if event.name == name && event.data["task_id"] == id {
            return Some(event);
        }
    }
}

/// Position in `seen` of the first event named `name` for task `id` with `status`.
fn position(seen: &[Event], name: &str, id: i64, status: &str) -> Option<usize> {
    seen.iter()
        .position(|e| e.name == name && e.data["task_id"] == id && e.data["status"] == status)
}

#[actix_web::test]
async fn a_diamond_runs_the_join_only_after_both_branches_are_done() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 4).await;
    let mut stream = hub.stream(MASTER).await;
    let body = json!({ "name": "diamond", "tasks": [
        { "title": "fetch", "prompt": "p" },
        { "title": "left", "prompt": "p", "depends_on": 0 },
        { "title": "right", "prompt": "p", "depends_on": [0] },
        { "title": "join", "prompt": "p", "depends_on": [1, 2] },
    ]});
    let created = hub.post("/api/pipelines", MASTER, body).await.expect(201);
    assert_eq!(created["name"], "diamond");
    assert_eq!(created["count"], 4);
    let ids = member_ids(&created);
    assert_eq!(created["tasks"][0]["depends_on"], json!([]));
    assert_eq!(created["tasks"][1]["depends_on"], json!([ids[0]]));
    assert_eq!(created["tasks"][2]["depends_on"], json!([ids[0]]));
    assert_eq!(created["tasks"][3]["depends_on"], json!([ids[1], ids[2]]));
    let pipeline_id = created["pipeline_id"].as_i64().unwrap();
    for task in created["tasks"].as_array().unwrap() {
        assert_eq!(task["pipeline_id"], pipeline_id);
    }

    let mut seen = Vec::new();
    let first = until_task_event(&mut stream, &mut seen, "task_assigned", ids[0])
        .await
        .expect("the root is dispatched at once");
    assert_eq!(first.data["assigned_to"], "rex");
    for &id in &ids[1..] {
        let task = hub.task_status(id).await;
        assert_eq!(task["status"], "queued", "{task}");
        assert!(task["assigned_to"].is_null(), "rex is free, but {id} waits");
    }

    report(&hub, &rex, ids[0], "done").await;
    until_task_event(&mut stream, &mut seen, "task_assigned", ids[1])
        .await
        .expect("left released");
    assert!(
        reaches(&hub, ids[2], "assigned", None).await,
        "right released"
    );
    assert_eq!(hub.task_status(ids[3]).await["status"], "queued");

    report(&hub, &rex, ids[1], "done").await;
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let join = hub.task_status(ids[3]).await;
    assert_eq!(
        join["status"], "queued",
        "one branch is still running: {join}"
    );
    assert!(join["assigned_to"].is_null());

    report(&hub, &rex, ids[2], "done").await;
    let assigned = until_task_event(&mut stream, &mut seen, "task_assigned", ids[3])
        .await
        .expect("the join is dispatched once both branches are done");
    assert_eq!(assigned.data["assigned_to"], "rex");
    let join_at = seen.len() - 1;
    for &branch in &ids[1..3] {
        let done_at = position(&seen, "task_updated", branch, "done")
            .unwrap_or_else(|| panic!("no done event for {branch}"));
        assert!(
            done_at < join_at,
            "the join was assigned before branch {branch} was done"
        );
    }
    assert_eq!(pipeline(&hub, pipeline_id).await["status"], "running");

    report(&hub, &rex, ids[3], "done").await;
    assert!(pipeline_reaches(&hub, pipeline_id, "done").await);
    let view = pipeline(&hub, pipeline_id).await;
    assert!(view["completed_at"].is_string());
    assert_eq!(view["count"], 4);
    assert_eq!(view["tasks"][3]["depends_on"], json!([ids[1], ids[2]]));
    for (index, task) in view["tasks"].as_array().unwrap().iter().enumerate() {
        assert_eq!(task["index"], index);
        assert_eq!(task["status"], "done");
        assert_eq!(task["attempts"], 1);
        assert_eq!(task["assigned_to"], "rex");
    }
}

#[actix_web::test]
async fn a_failure_cascades_through_two_levels_and_fails_the_pipeline() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 4).await;
    let body = json!({ "tasks": [
        { "title": "root", "prompt": "p" },
        { "title": "child", "prompt": "p", "depends_on": 0 },
        { "title": "grandchild", "prompt": "p", "depends_on": 1 },
        { "title": "sibling", "prompt": "p" },
        { "title": "after sibling", "prompt": "p", "depends_on": 3 },
    ]});
    let created = hub.post("/api/pipelines", MASTER, body).await.expect(201);
    let ids = member_ids(&created);
    let pipeline_id = created["pipeline_id"].as_i64().unwrap();
    assert!(reaches(&hub, ids[0], "assigned", None).await);
    assert!(reaches(&hub, ids[3], "assigned", None).await);

    hub.put(
        &format!("/api/tasks/{}", ids[0]),
        &rex,
        json!({ "status": "failed", "reason": "boom" }),
    )
    .await
    .expect(200);
    assert!(reaches(&hub, ids[1], "failed", Some("dependency_failed")).await);
    assert!(
        reaches(&hub, ids[2], "failed", Some("dependency_failed")).await,
        "the cascade reaches the second level"
    );
    assert_eq!(hub.task_status(ids[0]).await["reason"], "boom");
    for &id in &ids[1..3] {
        let task = hub.task_status(id).await;
        assert!(task["assigned_to"].is_null(), "never dispatched: {task}");
        assert_eq!(task["attempts"], 0);
        assert!(task["completed_at"].is_string());
    }
    // The independent branch is untouched and the pipeline is still running.
    assert_eq!(hub.task_status(ids[3]).await["status"], "assigned");
    assert_eq!(hub.task_status(ids[4]).await["status"], "queued");
    assert_eq!(pipeline(&hub, pipeline_id).await["status"], "running");

    report(&hub, &rex, ids[3], "done").await;
    assert!(reaches(&hub, ids[4], "assigned", None).await);
    report(&hub, &rex, ids[4], "done").await;
    assert!(
        pipeline_reaches(&hub, pipeline_id, "failed").await,
        "every member finished, some not done"
    );
    let view = pipeline(&hub, pipeline_id).await;
    let statuses: Vec<&str> = view["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["failed", "failed", "failed", "done", "done"]);
    assert_eq!(view["tasks"][2]["reason"], "dependency_failed");
    assert!(view["completed_at"].is_string());
}

#[actix_web::test]
async fn bad_references_and_oversized_pipelines_are_refused_and_name_the_task() {
    let hub = TestHub::spawn().await;
    let task = |deps: Value| json!({ "title": "t", "prompt": "p", "depends_on": deps });
    let cases = [
        (
            json!([task(json!(null)), task(json!(2)), task(json!(null))]),
            "tasks[1] depends on 2, which is a later task (a forward reference)",
        ),
        (
            json!([task(json!(null)), task(json!([0, 1]))]),
            "tasks[1] depends on 1, which is itself",
        ),
        (
            json!([task(json!(null)), task(json!(null)), task(json!([7]))]),
            "tasks[2] depends on 7, which is an index outside the pipeline",
        ),
        (
            json!([task(json!(-1))]),
            "tasks[0] depends on -1, which is an index outside the pipeline",
        ),
        (
            json!([task(json!(null)), task(json!("0"))]),
            "tasks[1].depends_on must be a 32-bit integer or a list of 32-bit integers",
        ),
        (json!([]), "a pipeline needs at least one task"),
    ];
    for (tasks, message) in cases {
        let reply = hub
            .post("/api/pipelines", MASTER, json!({ "tasks": tasks }))
            .await;
        assert_eq!(reply.expect(400)["error"], message);
    }
    let missing = hub
        .post("/api/pipelines", MASTER, json!({ "name": "x" }))
        .await;
    assert_eq!(missing.expect(400)["error"], "tasks is required");

    let many = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| {
                let deps = if i == 0 { json!(null) } else { json!(i - 1) };
                json!({ "title": format!("step {i}"), "prompt": "p", "depends_on": deps })
            })
            .collect()
    };
    let too_many = hub
        .post("/api/pipelines", MASTER, json!({ "tasks": many(51) }))
        .await;
    assert_eq!(
        too_many.expect(400)["error"],
        "a pipeline holds at most 50 tasks, not 51"
    );
    assert_eq!(hub.get("/api/tasks", MASTER).await.expect(200)["count"], 0);
    assert_eq!(
        hub.get("/api/pipelines", MASTER).await.expect(200)["count"],
        0
    );

    // Exactly 50 is allowed.
    let fifty = hub
        .post("/api/pipelines", MASTER, json!({ "tasks": many(50) }))
        .await
        .expect(201);
    assert_eq!(fifty["count"], 50);
    let listed = hub.get("/api/tasks?limit=100", MASTER).await.expect(200);
    assert_eq!(listed["count"], 50);
}

#[actix_web::test]
async fn one_invalid_member_creates_nothing() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 4).await;
    let cases = [
        (
            json!([
                { "title": "a", "prompt": "p" },
                { "title": "b", "prompt": "p", "depends_on": 0 },
                { "title": "c", "prompt": "  ", "depends_on": 1 },
            ]),
            "tasks[2]: prompt is required",
        ),
        (
            json!([
                { "title": "a", "prompt": "p" },
                { "title": "b", "prompt": "p", "model": "gpt-9" },
            ]),
            "tasks[1]: unknown model \"gpt-9\" (expected auto, haiku, sonnet or opus)",
        ),
        (
            json!([
                { "title": "a", "prompt": "p", "timeout_seconds": 0 },
                { "title": "b", "prompt": "p" },
            ]),
            "tasks[0]: timeout_seconds must be positive",
        ),
        (
            json!([
                { "title": "a", "prompt": "p" },
                { "title": "", "prompt": "p" },
            ]),
            "tasks[1]: title is required",
        ),
    ];
    for (tasks, message) in cases {
        let reply = hub
            .post(
                "/api/pipelines",
                MASTER,
                json!({ "name": "broken", "tasks": tasks }),
            )
            .await;
        assert_eq!(reply.expect(400)["error"], message);
    }
    assert_eq!(hub.get("/api/tasks", MASTER).await.expect(200)["count"], 0);
    assert_eq!(hub.get("/api/tasks", &rex).await.expect(200)["count"], 0);
    let pipelines = hub.get("/api/pipelines", MASTER).await.expect(200);
    assert_eq!(pipelines["count"], 0);
    assert_eq!(pipelines["pipelines"], json!([]));
    let audit = hub
        .get("/api/admin/audit?action=task.create", MASTER)
        .await
        .expect(200);
    assert_eq!(audit["count"], 0, "no task was ever inserted");
    let agents = hub.get("/api/agents", MASTER).await.expect(200);
    assert_eq!(agents["agents"][0]["load"], 0);
}

#[actix_web::test]
async fn pipelines_are_listed_and_read_only_by_their_creator() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 2).await;
    let cmd = hub.token("cmd", "commander").await;
    let other = hub.token("other", "commander").await;
    let body = json!({ "name": "mine", "created_by": "someone-else", "tasks": [
        { "title": "one", "prompt": "p" },
        { "title": "two", "prompt": "p", "depends_on": 0 },
    ]});
    let created = hub.post("/api/pipelines", &cmd, body).await.expect(201);
    let id = created["pipeline_id"].as_i64().unwrap();
    let ids = member_ids(&created);
    assert_eq!(created["tasks"][0]["created_by"], "cmd");
    let master_made = hub
        .post(
            "/api/pipelines",
            MASTER,
            json!({ "name": "ops", "created_by": "ops-bot", "tasks": [{ "title": "x", "prompt": "p", "required_capability": "nobody" }] }),
        )
        .await
        .expect(201);
    let master_id = master_made["pipeline_id"].as_i64().unwrap();

    let path = format!("/api/pipelines/{id}");
    let own = hub.get(&path, &cmd).await.expect(200);
    assert_eq!(
        own["created_by"], "cmd",
        "a token cannot name another creator"
    );
    assert_eq!(own["name"], "mine");
    assert_eq!(own["status"], "running");
    hub.get(&path, &other).await.expect(404);
    hub.get(&path, &rex).await.expect(404);
    hub.get(&format!("/api/pipelines/{master_id}"), &cmd)
        .await
        .expect(404);
    let mine = hub.get("/api/pipelines", &cmd).await.expect(200);
    assert_eq!(mine["count"], 1);
    assert_eq!(mine["pipelines"][0]["id"], id);
    assert_eq!(
        hub.get("/api/pipelines", &other).await.expect(200)["count"],
        0
    );
    let all = hub.get("/api/pipelines", MASTER).await.expect(200);
    assert_eq!(all["count"], 2);
    assert_eq!(all["pipelines"][0]["id"], master_id, "newest first");
    assert_eq!(all["pipelines"][0]["created_by"], "ops-bot");
    hub.get("/api/pipelines/999", MASTER).await.expect(404);
    hub.get("/api/pipelines/abc", MASTER).await.expect(404);
    hub.post(
        "/api/pipelines",
        &rex,
        json!({ "tasks": [{ "title": "t", "prompt": "p" }] }),
    )
    .await
    .expect(403);

    assert!(reaches(&hub, ids[0], "assigned", None).await);
    report(&hub, &rex, ids[0], "done").await;
    assert!(reaches(&hub, ids[1], "assigned", None).await);
    report(&hub, &rex, ids[1], "done").await;
    let finished = hub
        .eventually(SOON, || async {
            hub.get(&path, &cmd).await.expect(200)["status"] == "done"
        })
        .await;
    assert!(finished, "the pipeline is done when all members are done");
    let view = hub.get(&path, &cmd).await.expect(200);
    assert_eq!(view["tasks"][1]["depends_on"], json!([ids[0]]));
    assert_eq!(view["tasks"][1]["title"], "two");
    assert_eq!(
        pipeline(&hub, master_id).await["status"],
        "running",
        "the other pipeline still waits for a capable agent"
    );
}

#[actix_web::test]
async fn a_plain_task_waits_for_its_dependencies_and_fails_with_them() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 4).await;
    let first = hub.task(json!({ "title": "first", "prompt": "p" })).await;
    let second = hub.task(json!({ "title": "second", "prompt": "p" })).await;
    let first_id = first["id"].as_i64().unwrap();
    let second_id = second["id"].as_i64().unwrap();
    assert_eq!(first["assigned_to"], "rex");

    let waiting = hub
        .task(json!({ "title": "after", "prompt": "p", "depends_on": [first_id, second_id] }))
        .await;
    let waiting_id = waiting["id"].as_i64().unwrap();
    assert_eq!(waiting["status"], "queued");
    assert_eq!(waiting["depends_on"], json!([first_id, second_id]));
    let deps = hub
        .get(&format!("/api/tasks/{waiting_id}/deps"), MASTER)
        .await
        .expect(200);
    assert_eq!(deps["count"], 2);
    assert_eq!(deps["dependencies"][0]["id"], first_id);

    report(&hub, &rex, first_id, "done").await;
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let still = hub.task_status(waiting_id).await;
    assert_eq!(
        still["status"], "queued",
        "one dependency is not done: {still}"
    );
    assert!(still["assigned_to"].is_null(), "rex has room but it waits");
    report(&hub, &rex, second_id, "done").await;
    let released = hub
        .eventually(SOON, || async {
            hub.task_status(waiting_id).await["assigned_to"] == "rex"
        })
        .await;
    assert!(released, "released when both dependencies are done");

    // A dependency that already failed fails the new task at once.
    let broken = hub.task(json!({ "title": "broken", "prompt": "p" })).await;
    let broken_id = broken["id"].as_i64().unwrap();
    report(&hub, &rex, broken_id, "failed").await;
    let doomed = hub
        .task(json!({ "title": "doomed", "prompt": "p", "depends_on": broken_id }))
        .await;
    let doomed_id = doomed["id"].as_i64().unwrap();
    assert!(reaches(&hub, doomed_id, "failed", Some("dependency_failed")).await);
    assert!(hub.task_status(doomed_id).await["assigned_to"].is_null());

    // A dependency that is cancelled later fails its waiting dependents, recursively.
    let parked = hub
        .task(json!({ "title": "parked", "prompt": "p", "required_capability": "nobody" }))
        .await;
    let parked_id = parked["id"].as_i64().unwrap();
    let child = hub
        .task(json!({ "title": "child", "prompt": "p", "depends_on": parked_id }))
        .await;
    let child_id = child["id"].as_i64().unwrap();
    let grandchild = hub
        .task(json!({ "title": "grandchild", "prompt": "p", "depends_on": [child_id] }))
        .await;
    let grandchild_id = grandchild["id"].as_i64().unwrap();
    hub.put(
        &format!("/api/tasks/{parked_id}"),
        MASTER,
        json!({ "status": "cancelled" }),
    )
    .await
    .expect(200);
    assert!(reaches(&hub, child_id, "failed", Some("dependency_failed")).await);
    assert!(reaches(&hub, grandchild_id, "failed", Some("dependency_failed")).await);

    // Unknown and invisible dependencies are 404, and nothing is created.
    let before = hub.get("/api/tasks?limit=100", MASTER).await.expect(200)["count"].clone();
    hub.post(
        "/api/tasks",
        MASTER,
        json!({ "title": "t", "prompt": "p", "depends_on": [first_id, 999_999] }),
    )
    .await
    .expect(404);
    let cmd = hub.token("cmd", "commander").await;
    hub.post(
        "/api/tasks",
        &cmd,
        json!({ "title": "t", "prompt": "p", "depends_on": first_id }),
    )
    .await
    .expect(404);
    hub.post(
        "/api/tasks",
        MASTER,
        json!({ "title": "t", "prompt": "p", "depends_on": "one" }),
    )
    .await
    .expect(400);
    let after = hub.get("/api/tasks?limit=100", MASTER).await.expect(200)["count"].clone();
    assert_eq!(before, after);
}

#[actix_web::test]
async fn templates_are_managed_by_admins_and_dispatched_with_overrides() {
    let hub = TestHub::spawn().await;
    let gitter = hub.agent("gitter", &["git"], 4).await;
    let body = json!({ "name": "nightly", "title": "Pull", "prompt": "git pull --rebase", "required_capability": "git", "priority": 3, "urgency": "high" });
    hub.post("/api/templates", &gitter, body.clone())
        .await
        .expect(403);
    let bad = hub
        .post(
            "/api/templates",
            MASTER,
            json!({ "name": "empty", "title": "t" }),
        )
        .await;
    assert_eq!(bad.expect(400)["error"], "prompt is required");

    let template = hub.post("/api/templates", MASTER, body).await.expect(201);
    let id = template["id"].as_i64().expect("template id");
    assert_eq!(template["name"], "nightly");
    assert_eq!(template["prompt"], "git pull --rebase");
    assert_eq!(template["required_capability"], "git");
    assert_eq!(template["priority"], 3);
    assert_eq!(template["created_by"], "master");
    let listed = hub.get("/api/templates", &gitter).await.expect(200);
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["templates"][0]["id"], id);
    let path = format!("/api/templates/{id}");
    assert_eq!(hub.get(&path, MASTER).await.expect(200)["title"], "Pull");

    // A worker may read templates but not dispatch or delete them.
    hub.post(&format!("{path}/dispatch"), &gitter, json!({}))
        .await
        .expect(403);
    hub.delete(&path, &gitter).await.expect(403);

    let plain = hub
        .raw(
            awc::http::Method::POST,
            &format!("{path}/dispatch"),
            Some(MASTER),
            None,
        )
        .await
        .expect(201);
    assert_eq!(plain["title"], "Pull");
    assert_eq!(plain["prompt"], "git pull --rebase");
    assert_eq!(plain["priority"], 3);
    assert_eq!(plain["urgency"], "high");
    assert_eq!(plain["assigned_to"], "gitter");

    let commander = hub.token("cmd", "commander").await;
    let overridden = hub
        .post(
            &format!("{path}/dispatch"),
            &commander,
            json!({ "title": "Pull (hotfix)", "priority": 9 }),
        )
        .await
        .expect(201);
    assert_eq!(overridden["title"], "Pull (hotfix)");
    assert_eq!(overridden["priority"], 9);
    assert_eq!(
        overridden["prompt"], "git pull --rebase",
        "fields not overridden come from the template"
    );
    assert_eq!(overridden["required_capability"], "git");
    assert_eq!(overridden["created_by"], "cmd");
    hub.post(
        &format!("{path}/dispatch"),
        MASTER,
        json!({ "model": "gpt-9" }),
    )
    .await
    .expect(400);
    assert_eq!(
        hub.get("/api/tasks", MASTER).await.expect(200)["count"],
        2,
        "the refused dispatch created nothing"
    );

    let deleted = hub.delete(&path, MASTER).await.expect(200);
    assert_eq!(deleted["deleted"], id);
    hub.get(&path, MASTER).await.expect(404);
    hub.delete(&path, MASTER).await.expect(404);
    hub.post(&format!("{path}/dispatch"), MASTER, json!({}))
        .await
        .expect(404);
    assert_eq!(
        hub.get("/api/templates", MASTER).await.expect(200)["count"],
        0
    );
    let audit = hub
        .get("/api/admin/audit?action=template.create", MASTER)
        .await
        .expect(200);
    assert_eq!(audit["count"], 1);
}

#[actix_web::test]
async fn the_kill_switch_stops_template_dispatch_and_pipelines() {
    let hub = TestHub::spawn().await;
    let template = hub
        .post(
            "/api/templates",
            MASTER,
            json!({ "name": "n", "title": "t", "prompt": "p" }),
        )
        .await
        .expect(201);
    let dispatch = format!("/api/templates/{}/dispatch", template["id"]);
    let pipeline_body = json!({ "tasks": [{ "title": "t", "prompt": "p" }] });
    hub.post(
        "/api/admin/kill-switch",
        MASTER,
        json!({ "reason": "drill" }),
    )
    .await
    .expect(200);
    let refused = hub.post(&dispatch, MASTER, json!({})).await.expect(503);
    assert_eq!(refused["error"], "kill switch engaged");
    hub.post("/api/pipelines", MASTER, pipeline_body.clone())
        .await
        .expect(503);
    assert_eq!(hub.get("/api/tasks", MASTER).await.expect(200)["count"], 0);
    assert_eq!(
        hub.get("/api/pipelines", MASTER).await.expect(200)["count"],
        0
    );

    hub.delete("/api/admin/kill-switch", MASTER)
        .await
        .expect(200);
    hub.post(&dispatch, MASTER, json!({})).await.expect(201);
    hub.post("/api/pipelines", MASTER, pipeline_body)
        .await
        .expect(201);
}

#[actix_web::test]
async fn a_handoff_pins_the_task_to_the_new_agent() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let op = hub.token("op", "operator").await;
    let task = hub
        .post("/api/tasks", &op, json!({ "title": "t", "prompt": "p" }))
        .await
        .expect(201);
    let id = task["id"].as_i64().unwrap();
    assert_eq!(task["assigned_to"], "rex");
    let ada = hub.agent("ada", &["git"], 1).await;
    let busy = hub
        .task(json!({ "title": "busy", "prompt": "p", "required_capability": "git" }))
        .await;
    assert_eq!(busy["assigned_to"], "ada");
    let handoff = format!("/api/tasks/{id}/handoff");

    hub.post(&handoff, &rex, json!({ "to": "ghost" }))
        .await
        .expect(404);
    hub.post(&handoff, &rex, json!({})).await.expect(400);
    hub.post(&handoff, &rex, json!({ "to": "rex" }))
        .await
        .expect(409);
    let stale = hub.post(&handoff, &op, json!({ "to": "ada" })).await;
    assert_eq!(
        stale.expect(409)["error"],
        "stale holder",
        "the creator does not hold the task"
    );
    assert_eq!(hub.task_status(id).await["assigned_to"], "rex");

    let moved = hub
        .post(
            &handoff,
            &rex,
            json!({ "to": "ada", "reason": "needs a gpu" }),
        )
        .await
        .expect(200);
    assert_eq!(moved["status"], "queued");
    assert_eq!(moved["reason"], "handed_off");
    assert_eq!(moved["assign_to"], "ada");
    assert!(moved["assigned_to"].is_null());
    // Ada is full: the task waits for her, even though rex is free again.
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let waiting = hub.task_status(id).await;
    assert_eq!(waiting["status"], "queued", "{waiting}");
    hub.get(&format!("/api/tasks/{id}"), &rex).await.expect(404);
    hub.put(
        &format!("/api/tasks/{id}"),
        &rex,
        json!({ "status": "running" }),
    )
    .await
    .expect(404);

    report(&hub, &ada, busy["id"].as_i64().unwrap(), "done").await;
    let arrived = hub
        .eventually(SOON, || async {
            hub.task_status(id).await["assigned_to"] == "ada"
        })
        .await;
    assert!(arrived, "dispatched to ada once she has room");
    let running = report(&hub, &ada, id, "running").await;
    assert_eq!(running["status"], "running");
    let chain = hub
        .get(&format!("/api/tasks/{id}/provenance"), MASTER)
        .await
        .expect(200);
    let handed = chain["chain"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["action"] == "handed_off")
        .expect("a handed_off link");
    assert_eq!(handed["actor"], "rex");
    assert_eq!(handed["detail"]["from"], "rex");
    assert_eq!(handed["detail"]["to"], "ada");
    assert_eq!(handed["detail"]["handoff_reason"], "needs a gpu");
}

#[actix_web::test]
async fn a_handoff_frees_the_old_holders_slot_and_fills_the_new_ones() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let ada = hub.agent("ada", &["research"], 1).await;
    let first = hub.task(json!({ "title": "first", "prompt": "p" })).await;
    let first_id = first["id"].as_i64().unwrap();
    let (from, from_token, to) = match first["assigned_to"].as_str() {
        Some("rex") => ("rex", rex, "ada"),
        Some("ada") => ("ada", ada, "rex"),
        other => panic!("first task not assigned: {other:?}"),
    };
    hub.post(
        &format!("/api/tasks/{first_id}/handoff"),
        &from_token,
        json!({ "to": to }),
    )
    .await
    .expect(200);
    let moved = hub
        .eventually(SOON, || async {
            hub.task_status(first_id).await["assigned_to"] == to
        })
        .await;
    assert!(moved, "handed to {to}, who has room");

    // The old holder holds nothing now and the new one is full: new work goes to the old one.
    let agents = hub.get("/api/agents", MASTER).await.expect(200);
    let load = |id: &str| {
        agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent_id"] == id)
            .map(|a| a["load"].clone())
            .unwrap()
    };
    assert_eq!(
        (load(from), load(to)),
        (json!(0), json!(1)),
        "loads after the handoff: {agents}"
    );
    let second = hub.task(json!({ "title": "second", "prompt": "p" })).await;
    assert_eq!(
        second["assigned_to"], from,
        "{from} handed its only task off, so it has the free slot"
    );
}

#[actix_web::test]
async fn verification_and_the_provenance_chain() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 2).await;
    let id = hub.task(json!({ "title": "t", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/tasks/{id}");
    hub.post(&format!("{path}/verify"), MASTER, json!({}))
        .await
        .expect(409);
    report(&hub, &rex, id, "running").await;
    hub.post(&format!("{path}/stream"), &rex, json!({ "chunk": "half" }))
        .await
        .expect(201);
    hub.put(
        &path,
        &rex,
        json!({ "status": "done", "output": "the answer" }),
    )
    .await
    .expect(200);

    hub.post(&format!("{path}/verify"), &rex, json!({}))
        .await
        .expect(403);
    hub.get(&format!("{path}/provenance"), &rex)
        .await
        .expect(403);
    hub.post("/api/tasks/999999/verify", MASTER, json!({}))
        .await
        .expect(404);
    hub.get("/api/tasks/999999/provenance", MASTER)
        .await
        .expect(404);
    let verified = hub
        .post(&format!("{path}/verify"), MASTER, json!({}))
        .await
        .expect(200);
    assert_eq!(verified["verified"], true);
    assert_eq!(hub.task_status(id).await["verified"], true);
    let audit = hub
        .get("/api/admin/audit?action=task.verify", MASTER)
        .await
        .expect(200);
    assert_eq!(audit["entries"][0]["target"], format!("task:{id}"));

    let proof = hub
        .get(&format!("{path}/provenance"), MASTER)
        .await
        .expect(200);
    assert_eq!(proof["task_id"], id);
    assert_eq!(proof["valid"], true, "{proof}");
    assert!(proof["broken"].is_null());
    let chain = proof["chain"].as_array().unwrap();
    assert_eq!(proof["count"], chain.len());
    let actions: Vec<&str> = chain
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["created", "assigned", "running", "stream", "done", "verified"]
    );
    let actors: Vec<&str> = chain.iter().map(|l| l["actor"].as_str().unwrap()).collect();
    assert_eq!(
        actors,
        ["master", "dispatcher", "rex", "rex", "rex", "master"]
    );
    assert_eq!(chain[0]["prev_hash"], "0".repeat(64));
    for (seq, link) in chain.iter().enumerate() {
        assert_eq!(link["seq"], seq);
        let hash = link["hash"].as_str().unwrap();
        assert!(!hash.is_empty());
        assert!(link["created_at"].is_string());
        if seq > 0 {
            assert_eq!(link["prev_hash"], chain[seq - 1]["hash"], "link {seq}");
            assert_ne!(link["hash"], chain[seq - 1]["hash"]);
        }
    }
    let expected = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"the answer"))
    };
    assert_eq!(chain[4]["detail"]["output_sha256"], expected);
    assert_eq!(chain[3]["detail"]["bytes"], 4);
    let serialized = proof.to_string();
    assert!(
        !serialized.contains("the answer") && !serialized.contains("half\""),
        "the chain records fingerprints, not content"
    );
}

#[actix_web::test]
async fn a_tampered_link_breaks_the_chain_at_that_link() {
    use diesel::RunQueryDsl;
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 2).await;
    let id = hub.task(json!({ "title": "t", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    report(&hub, &rex, id, "running").await;
    report(&hub, &rex, id, "done").await;
    let path = format!("/api/tasks/{id}/provenance");
    assert_eq!(hub.get(&path, MASTER).await.expect(200)["valid"], true);

    let mut conn = hub.open_db();
    let changed = diesel::sql_query(format!(
        "UPDATE provenance SET detail = '{{}}' WHERE task_id = {id} AND seq = 1"
    ))
    .execute(&mut conn)
    .unwrap();
    assert_eq!(changed, 1);
    let proof = hub.get(&path, MASTER).await.expect(200);
    assert_eq!(proof["valid"], false, "{proof}");
    assert_eq!(proof["broken"]["seq"], 1);
    assert!(proof["broken"]["reason"].is_string());
    assert_eq!(proof["count"], 4, "the chain is still shown");

    // Re-linking a later link to hide the change is caught too.
    let id2 = hub.task(json!({ "title": "t2", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    report(&hub, &rex, id2, "running").await;
    diesel::sql_query(format!(
        "UPDATE provenance SET actor = 'ada' WHERE task_id = {id2} AND seq = 2"
    ))
    .execute(&mut conn)
    .unwrap();
    let proof = hub
        .get(&format!("/api/tasks/{id2}/provenance"), MASTER)
        .await
        .expect(200);
    assert_eq!(proof["valid"], false);
    assert_eq!(proof["broken"]["seq"], 2);
    diesel::sql_query(format!(
        "DELETE FROM provenance WHERE task_id = {id2} AND seq = 1"
    ))
    .execute(&mut conn)
    .unwrap();
    let proof = hub
        .get(&format!("/api/tasks/{id2}/provenance"), MASTER)
        .await
        .expect(200);
    assert_eq!(proof["valid"], false);
    assert_eq!(proof["broken"]["seq"], 2, "the link after the gap");
}

#[actix_web::test]
async fn a_swapped_output_is_detected() {
    use diesel::RunQueryDsl;
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 2).await;
    let mut ids = Vec::new();
    for output in ["genuine answer", "forged answer"] {
        let id = hub.task(json!({ "title": "t", "prompt": "p" })).await["id"]
            .as_i64()
            .unwrap();
        hub.put(
            &format!("/api/tasks/{id}"),
            &rex,
            json!({ "status": "done", "output": output }),
        )
        .await
        .expect(200);
        ids.push(id);
    }
    let path = format!("/api/tasks/{}/provenance", ids[0]);
    let before = hub.get(&path, MASTER).await.expect(200);
    assert_eq!(before["valid"], true);
    let done_seq = before["chain"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["action"] == "done")
        .expect("a done link")["seq"]
        .clone();

    let mut conn = hub.open_db();
    diesel::sql_query(format!(
        "UPDATE tasks SET output = (SELECT output FROM tasks WHERE id = {}) WHERE id = {}",
        ids[1], ids[0]
    ))
    .execute(&mut conn)
    .unwrap();
    assert_eq!(
        hub.task_status(ids[0]).await["output"],
        "forged answer",
        "the ciphertext itself opens fine"
    );
    let after = hub.get(&path, MASTER).await.expect(200);
    assert_eq!(after["valid"], false, "{after}");
    assert_eq!(after["broken"]["seq"], done_seq);
    let other = hub
        .get(&format!("/api/tasks/{}/provenance", ids[1]), MASTER)
        .await
        .expect(200);
    assert_eq!(other["valid"], true);

    // Erasing the output is no better.
    diesel::sql_query(format!(
        "UPDATE tasks SET output = NULL WHERE id = {}",
        ids[1]
    ))
    .execute(&mut conn)
    .unwrap();
    let erased = hub
        .get(&format!("/api/tasks/{}/provenance", ids[1]), MASTER)
        .await
        .expect(200);
    assert_eq!(erased["valid"], false);
}

#[actix_web::test]
async fn escalations_are_opened_listed_and_resolved_once() {
    let hub = TestHub::spawn().await;
    let rex = hub.agent("rex", &["research"], 1).await;
    let viewer = hub.token("vic", "viewer").await;
    let op = hub.token("op", "operator").await;
    let mobile = hub.token("mo", "mobile").await;
    // op makes the task rex holds: both see its escalations; the viewer, neither.
    let mut stream = hub.stream(&op).await;
    let task = hub
        .post("/api/tasks", &op, json!({ "title": "t", "prompt": "p" }))
        .await
        .expect(201);
    let task_id = task["id"].as_i64().unwrap();
    let hidden = hub
        .task(json!({ "title": "h", "prompt": "p", "required_capability": "nobody" }))
        .await;

    let missing = hub
        .post("/api/escalations", &rex, json!({ "task_id": task_id }))
        .await;
    assert_eq!(missing.expect(400)["error"], "reason is required");
    hub.post(
        "/api/escalations",
        &rex,
        json!({ "task_id": 999_999, "reason": "r" }),
    )
    .await
    .expect(404);
    hub.post(
        "/api/escalations",
        &rex,
        json!({ "task_id": hidden["id"], "reason": "r" }),
    )
    .await
    .expect(404);
    hub.post("/api/escalations", &mobile, json!({ "reason": "r" }))
        .await
        .expect(403);

    let opened = hub
        .post(
            "/api/escalations",
            &rex,
            json!({ "task_id": task_id, "agent_id": "someone", "reason": "the prompt is ambiguous" }),
        )
        .await
        .expect(201);
    let id = opened["id"].as_i64().unwrap();
    assert_eq!(opened["status"], "open");
    assert_eq!(opened["task_id"], task_id);
    assert_eq!(opened["agent_id"], "rex", "a token escalates as itself");
    assert_eq!(opened["reason"], "the prompt is ambiguous");
    let event = stream
        .next_named("escalation_opened", SOON)
        .await
        .expect("escalation_opened");
    assert_eq!(event.data["id"], id);
    let by_master = hub
        .post(
            "/api/escalations",
            MASTER,
            json!({ "agent_id": "ada", "reason": "check ada" }),
        )
        .await
        .expect(201);
    assert_eq!(by_master["agent_id"], "ada");
    assert!(by_master["task_id"].is_null());

    hub.get("/api/escalations", &rex).await.expect(403);
    let open = hub
        .get("/api/escalations?status=open", MASTER)
        .await
        .expect(200);
    assert_eq!(open["count"], 2);
    let mine = hub
        .get("/api/escalations?status=open", &op)
        .await
        .expect(200);
    assert_eq!(
        mine["count"], 1,
        "op sees only its task's escalation: {mine}"
    );
    assert_eq!(mine["escalations"][0]["id"], id);
    let none = hub
        .get("/api/escalations?status=open", &viewer)
        .await
        .expect(200);
    assert_eq!(none["count"], 0, "the viewer sees no task it holds or made");
    hub.get("/api/escalations?status=closed", &viewer)
        .await
        .expect(400);

    let resolve = format!("/api/escalations/{id}/resolve");
    hub.post(&resolve, &viewer, json!({})).await.expect(403);
    let resolved = hub
        .post(&resolve, &op, json!({ "resolution": "clarified" }))
        .await
        .expect(200);
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["resolved_by"], "op");
    assert_eq!(resolved["resolution"], "clarified");
    assert!(resolved["resolved_at"].is_string());
    let event = stream
        .next_named("escalation_resolved", SOON)
        .await
        .expect("escalation_resolved");
    assert_eq!(event.data["id"], id);
    assert_eq!(event.data["status"], "resolved");
    hub.post(&resolve, MASTER, json!({})).await.expect(409);
    hub.post("/api/escalations/999/resolve", MASTER, json!({}))
        .await
        .expect(404);

    let still_open = hub
        .get("/api/escalations?status=open", MASTER)
        .await
        .expect(200);
    assert_eq!(still_open["count"], 1);
    assert_eq!(still_open["escalations"][0]["id"], by_master["id"]);
    let done = hub
        .get("/api/escalations?status=resolved", &op)
        .await
        .expect(200);
    assert_eq!(done["count"], 1);
    assert_eq!(done["escalations"][0]["id"], id);

    for (action, count) in [("escalation.open", 2), ("escalation.resolve", 1)] {
        let audit = hub
            .get(&format!("/api/admin/audit?action={action}"), MASTER)
            .await
            .expect(200);
        assert_eq!(audit["count"], count, "{action}");
    }
    let audit = hub
        .get("/api/admin/audit?action=escalation.resolve", MASTER)
        .await
        .expect(200);
    assert_eq!(audit["entries"][0]["target"], format!("escalation:{id}"));
    assert_eq!(audit["entries"][0]["actor"], "op");
}

#[actix_web::test]
async fn cancelling_a_pipeline_cancels_every_unfinished_member_and_tells_the_holder() {
    let hub = TestHub::spawn().await;
    let token = hub.token("p-holder", "worker").await;
    let body = json!({ "name": "p-holder", "capabilities": ["research"], "max_concurrent": 2 });
    hub.post("/api/agents/p-holder/register", &token, body)
        .await
        .expect(200);
    let created = hub
        .post(
            "/api/pipelines",
            MASTER,
            json!({ "name": "to cancel", "tasks": [
                { "title": "first", "prompt": "a" },
                { "title": "second", "prompt": "b", "depends_on": 0 },
                { "title": "third", "prompt": "c", "depends_on": 1 },
            ] }),
        )
        .await
        .expect(201);
    let pipeline_id = created["pipeline_id"].as_i64().unwrap();
    let ids = member_ids(&created);
    assert!(reaches(&hub, ids[0], "assigned", None).await);
    report(&hub, &token, ids[0], "running").await;

    let answer = hub
        .post(
            &format!("/api/pipelines/{pipeline_id}/cancel"),
            MASTER,
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(answer["cancelled"], json!(ids), "{answer}");
    for id in &ids {
        // Cancelled, not failed by a cancelled dependency on the way.
        assert!(
            reaches(&hub, *id, "cancelled", None).await,
            "{}",
            hub.task_status(*id).await
        );
    }
    assert!(pipeline_reaches(&hub, pipeline_id, "cancelled").await);
    // The holder of the running member finds the cancel in its inbox, after the assignment.
    let bearer = format!("Bearer {token}");
    let mut consumer = String::new();
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let mut headers = vec![("Authorization", bearer.as_str())];
        if !consumer.is_empty() {
            headers.push(("X-Consumer-Id", consumer.as_str()));
        }
        let (pulled, _) = send_json(
            &hub.base,
            Method::POST,
            "/api/v1/runtime/inbox/next",
            &headers,
            Some(json!({})),
            SOON,
        )
        .await;
        let item = pulled.expect(200);
        consumer = item["consumerId"].as_str().unwrap().to_string();
        kinds.push(item["item"]["type"].clone());
        let ack = format!("/api/v1/runtime/inbox/{}/ack", item["item"]["id"]);
        let headers = [
            ("Authorization", bearer.as_str()),
            ("X-Consumer-Id", consumer.as_str()),
        ];
        send_json(&hub.base, Method::POST, &ack, &headers, None, SOON)
            .await
            .0
            .expect(200);
    }
    assert_eq!(kinds, vec![json!("task_assigned"), json!("task_cancelled")]);
    // A finished pipeline is not cancelled again.
    hub.post(
        &format!("/api/pipelines/{pipeline_id}/cancel"),
        MASTER,
        json!({}),
    )
    .await
    .expect(409);
}
