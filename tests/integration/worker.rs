//! End to end: the real `m3shd worker` binary against a real hub, running shell commands.

use std::process::Child;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::process::{terminate, wait_exit, worker_command};
use crate::support::{TestHub, MASTER, SOON};

/// A worker process, killed when dropped.
struct Worker {
    child: Child,
}

impl Worker {
    /// Starts `m3shd worker` for `name` (a worker token is issued for it) running `exec`.
    async fn start(hub: &TestHub, name: &str, exec: &str, extra: &[&str]) -> Self {
        let token = hub.token(name, "worker").await;
        let child = worker_command(&hub.base, &token, name, exec)
            .args(extra)
            .spawn()
            .expect("the worker starts");
        let worker = Self { child };
        let online = hub
            .eventually(Duration::from_secs(10), || async {
                hub.get("/api/health", MASTER).await.body["agents"][name] == "online"
            })
            .await;
        assert!(online, "worker {name} registered");
        worker
    }

    fn terminate(&self) {
        terminate(&self.child);
    }

    /// Waits for the process to exit, without blocking the hub that shares this thread.
    async fn wait_exit(&mut self, within: Duration) -> bool {
        wait_exit(&mut self.child, within).await
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a process still runs (a zombie waiting for its parent to reap it does not).
fn alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: `pid (comm) S ...`.
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                != Some('Z')
        }
        Err(_) => false,
    }
}

async fn finished(hub: &TestHub, id: i64, within: Duration) -> Value {
    hub.eventually(within, || async {
        let status = hub.task_status(id).await["status"].clone();
        status == "done" || status == "failed"
    })
    .await;
    hub.task_status(id).await
}

#[actix_web::test]
async fn a_three_step_pipeline_runs_to_done_with_outputs_passed_down() {
    let hub = TestHub::spawn().await;
    let _worker = Worker::start(&hub, "w1", "cat; echo; echo \"ran $M3SHD_TASK_ID\"", &[]).await;
    let body = json!({ "tasks": [
        { "title": "fetch", "prompt": "alpha" },
        { "title": "analyse", "prompt": "beta", "depends_on": 0 },
        { "title": "report", "prompt": "gamma", "depends_on": 1 },
    ]});
    let pipeline = hub.post("/api/pipelines", MASTER, body).await.expect(201);
    let ids: Vec<i64> = pipeline["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    let last = finished(&hub, ids[2], Duration::from_secs(15)).await;
    assert_eq!(last["status"], "done", "{last}");
    let output = last["output"].as_str().unwrap();
    assert!(output.starts_with("gamma"), "{output}");
    assert!(
        output.contains(&format!("[INPUT from task {}: analyse]", ids[1])),
        "{output}"
    );
    assert!(
        output.contains("beta") && output.contains("alpha"),
        "upstream outputs reach the last step: {output}"
    );
    assert!(output.contains(&format!("ran {}", ids[2])));
    for id in &ids {
        assert_eq!(hub.task_status(*id).await["status"], "done");
    }
    let state = hub
        .get(
            &format!("/api/pipelines/{}", pipeline["pipeline_id"]),
            MASTER,
        )
        .await
        .expect(200);
    assert_eq!(state["status"], "done");
}

#[actix_web::test]
async fn output_streams_as_task_stream_events_before_done() {
    let hub = TestHub::spawn().await;
    let _worker = Worker::start(&hub, "w1", "echo one; sleep 0.3; echo two", &[]).await;
    let mut stream = hub.stream(MASTER).await;
    let id = hub.task(json!({ "title": "t", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    let mut chunks = Vec::new();
    let mut done = false;
    while let Some(event) = stream.next(Duration::from_secs(10)).await {
        if event.data["task_id"] != id && event.data["id"] != id {
            continue;
        }
        match event.name.as_str() {
            "task_stream" => chunks.push(event.data["chunk"].as_str().unwrap().to_string()),
            "task_updated" if event.data["status"] == "done" => {
                done = true;
                break;
            }
            _ => {}
        }
    }
    assert!(done, "the task finished");
    assert_eq!(
        chunks.concat(),
        "one\ntwo\n",
        "every chunk arrived before done: {chunks:?}"
    );
    assert!(
        chunks.len() >= 2,
        "output arrived as it was written, not all at the end: {chunks:?}"
    );
}

#[actix_web::test]
async fn a_command_that_always_fails_ends_failed_after_three_tries_with_an_escalation() {
    let hub = TestHub::spawn().await;
    let marker = hub.dir.path().join("tries");
    let exec = format!("echo x >> {}; echo broken >&2; exit 4", marker.display());
    let _worker = Worker::start(&hub, "w1", &exec, &[]).await;
    let id = hub.task(json!({ "title": "doomed", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    let task = finished(&hub, id, Duration::from_secs(15)).await;
    assert_eq!(task["status"], "failed", "{task}");
    let reason = task["reason"].as_str().unwrap();
    assert!(
        reason.contains("exit code 4") && reason.contains("3 tries") && reason.contains("broken"),
        "{reason}"
    );
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().lines().count(),
        3,
        "the command ran exactly three times"
    );
    // The worker escalates and posts to the channel after it has reported the failure.
    let escalated = hub
        .eventually(SOON, || async {
            let escalations = hub.get("/api/escalations", MASTER).await.expect(200);
            escalations["escalations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["task_id"] == id && e["agent_id"] == "w1")
        })
        .await;
    assert!(escalated, "the failure was escalated");
    let posted = hub
        .eventually(SOON, || async {
            let messages = hub
                .get("/api/messages?channel=general", MASTER)
                .await
                .expect(200);
            messages["messages"][0]["content"]
                .as_str()
                .is_some_and(|c| c.contains(&format!("Task {id}")))
        })
        .await;
    assert!(posted, "the failure was posted to the general channel");
}

#[actix_web::test]
async fn a_command_past_its_time_limit_is_killed_with_everything_it_started() {
    let hub = TestHub::spawn().await;
    let pids = hub.dir.path().join("pids");
    let exec = format!(
        "echo $$ >> {p}; sleep 60 & echo $! >> {p}; wait",
        p = pids.display()
    );
    let _worker = Worker::start(&hub, "w1", &exec, &["--claude-timeout", "1"]).await;
    let id = hub.task(json!({ "title": "slow", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    let task = finished(&hub, id, Duration::from_secs(20)).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert!(
        task["reason"].as_str().unwrap().contains("timed out"),
        "{task}"
    );
    let started: Vec<String> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        started.len(),
        6,
        "three tries, each a shell and a sleep: {started:?}"
    );
    for pid in started {
        // SIGKILL is delivered at once, but the kernel tears a process down asynchronously.
        let gone = hub
            .eventually(Duration::from_secs(2), || async { !alive(&pid) })
            .await;
        assert!(gone, "process {pid} outlived its task");
    }
}

#[actix_web::test]
async fn sigterm_hands_a_long_task_back_and_another_worker_finishes_it() {
    let hub = TestHub::spawn().await;
    let mut slow = Worker::start(&hub, "slow", "sleep 60; echo late", &["--grace", "0"]).await;
    let id = hub.task(json!({ "title": "long", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    let running = hub
        .eventually(Duration::from_secs(10), || async {
            hub.task_status(id).await["status"] == "running"
        })
        .await;
    assert!(running, "the first worker started the task");
    slow.terminate();
    assert!(
        slow.wait_exit(Duration::from_secs(10)).await,
        "the worker exits after SIGTERM"
    );
    let back = hub.task_status(id).await;
    assert_eq!(
        (back["status"].as_str(), back["reason"].as_str()),
        (Some("queued"), Some("worker_shutdown")),
        "{back}"
    );
    let _fast = Worker::start(&hub, "fast", "echo finished", &[]).await;
    let task = finished(&hub, id, Duration::from_secs(15)).await;
    assert_eq!(task["status"], "done");
    assert_eq!(task["assigned_to"], "fast");
    assert_eq!(task["output"], "finished\n");
    assert_eq!(task["attempts"], 2);
}

#[actix_web::test]
async fn a_worker_never_runs_more_than_max_concurrent_tasks() {
    let hub = TestHub::spawn().await;
    let running_now = hub.dir.path().join("running");
    let peak = hub.dir.path().join("peak");
    // Each run records how many runs are alive at once (a file per run, counted).
    let exec = format!(
        "mkdir -p {r}; touch {r}/$M3SHD_TASK_ID; ls {r} | wc -l >> {k}; sleep 0.4; rm {r}/$M3SHD_TASK_ID; echo ok",
        r = running_now.display(),
        k = peak.display()
    );
    let _worker = Worker::start(&hub, "w1", &exec, &["--max-concurrent", "2"]).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            hub.task(json!({ "title": format!("t{i}"), "prompt": "p" }))
                .await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    for id in &ids {
        assert_eq!(
            finished(&hub, *id, Duration::from_secs(20)).await["status"],
            "done"
        );
    }
    let counts: Vec<usize> = std::fs::read_to_string(&peak)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 6);
    assert!(
        counts.iter().all(|&c| c <= 2),
        "at most two at once: {counts:?}"
    );
    assert!(counts.contains(&2), "two did run side by side: {counts:?}");
}

/// `m3shd worker` for `name` running Claude (no `--exec`), with `path` as its PATH.
fn claude_worker(
    hub: &TestHub,
    token: &str,
    name: &str,
    path: &std::path::Path,
) -> std::process::Command {
    let mut command = crate::support::process::quick_worker(&hub.base, token, name);
    command.env("PATH", path);
    command
}

#[actix_web::test]
async fn without_claude_and_without_exec_the_worker_stops_and_says_what_to_install() {
    let hub = TestHub::spawn().await;
    let token = hub.token("bare", "worker").await;
    let empty = tempfile::tempdir().unwrap();
    let mut command = claude_worker(&hub, &token, "bare", empty.path());
    let output = actix_web::rt::task::spawn_blocking(move || command.output().expect("it runs"))
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains("`claude` command is not on PATH") && said.contains("--exec"),
        "{said}"
    );
    // It never offered to take work.
    assert_eq!(hub.get("/api/agents", MASTER).await.expect(200)["total"], 0);
}

#[actix_web::test]
async fn a_command_that_cannot_start_fails_its_task_once_with_the_real_cause() {
    use std::os::unix::fs::PermissionsExt;

    let hub = TestHub::spawn().await;
    let token = hub.token("vanishing", "worker").await;
    // A `claude` that passes the start-up check, then is uninstalled before any task comes.
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("claude");
    std::fs::write(&fake, "#!/bin/sh\necho never\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = claude_worker(&hub, &token, "vanishing", bin.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the worker starts");
    let online = hub
        .eventually(Duration::from_secs(10), || async {
            hub.get("/api/health", MASTER).await.body["agents"]["vanishing"] == "online"
        })
        .await;
    assert!(online, "the worker registered");
    std::fs::remove_file(&fake).unwrap();
    let id = hub.task(json!({ "title": "t", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    let failed = hub
        .eventually(Duration::from_secs(10), || async {
            hub.task_status(id).await["status"] == "failed"
        })
        .await;
    let task = hub.task_status(id).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(failed, "{task}");
    let reason = task["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("cannot start claude") && reason.contains("after 1 try"),
        "{reason}"
    );
}

#[actix_web::test]
async fn an_assignment_on_the_event_stream_starts_the_task_without_waiting_for_a_poll() {
    let hub = TestHub::spawn().await;
    // Polls a minute apart: only the stream can start the task within seconds.
    let token = hub.token("listener", "worker").await;
    let mut command = crate::support::process::m3shd();
    command
        .args([
            "worker", "--hub", &hub.base, "--token", &token, "--name", "listener",
        ])
        .args([
            "--exec",
            "cat",
            "--heartbeat-interval",
            "1",
            "--poll-interval",
            "60",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _worker = Worker {
        child: command.spawn().expect("the worker starts"),
    };
    let online = hub
        .eventually(Duration::from_secs(10), || async {
            hub.get("/api/health", MASTER).await.body["agents"]["listener"] == "online"
        })
        .await;
    assert!(online, "the worker registered");
    // Let the stream's opening look for work pass first.
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    let id = hub
        .task(json!({ "title": "t", "prompt": "heard on the stream" }))
        .await["id"]
        .as_i64()
        .unwrap();
    let done = hub
        .eventually(Duration::from_secs(5), || async {
            hub.task_status(id).await["status"] == "done"
        })
        .await;
    assert!(done, "{}", hub.task_status(id).await);
    assert_eq!(hub.task_status(id).await["output"], "heard on the stream");
}

#[actix_web::test]
async fn an_inbox_worker_pulls_its_work_and_a_second_one_fences_the_first_out() {
    // Long-polls end after a second here, so a fenced worker learns of it quickly.
    let hub = TestHub::spawn_with(|s| s.inbox_wait_max_seconds = 1).await;
    let token = hub.token("puller", "worker").await;
    // Polls and heartbeats a minute apart: only the inbox pulls can start the tasks.
    let start = || {
        let mut command = crate::support::process::m3shd();
        command
            .args([
                "worker", "--hub", &hub.base, "--token", &token, "--name", "puller",
            ])
            .args(["--exec", "cat", "--inbox"])
            .args(["--poll-interval", "60", "--heartbeat-interval", "60"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        Worker {
            child: command.spawn().expect("the worker starts"),
        }
    };
    let mut first = start();
    let online = hub
        .eventually(Duration::from_secs(10), || async {
            hub.get("/api/health", MASTER).await.body["agents"]["puller"] == "online"
        })
        .await;
    assert!(online, "the worker registered");
    let task = |prompt: &'static str| {
        let hub = &hub;
        async move {
            hub.task(json!({ "title": "pulled", "prompt": prompt }))
                .await["id"]
                .as_i64()
                .expect("task id")
        }
    };
    let id = task("pulled from the inbox").await;
    let done = finished(&hub, id, Duration::from_secs(5)).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["output"], "pulled from the inbox");

    // A second process with the same credential opens a new lease: the first is fenced
    // out on its next pull and stops rather than taking the lease back.
    let _second = start();
    assert!(
        first.wait_exit(Duration::from_secs(10)).await,
        "the fenced worker stopped"
    );
    let id = task("pulled by the second worker").await;
    let done = finished(&hub, id, Duration::from_secs(5)).await;
    assert_eq!(done["output"], "pulled by the second worker", "{done}");
}

#[actix_web::test]
async fn cancelling_a_running_task_stops_its_whole_process_tree_at_once() {
    let hub = TestHub::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // "long" starts a child that would run for 1,000 s and waits for it; anything else ends.
    let script = format!(
        "read -r p; if [ \"$p\" = long ]; then sleep 1000 & echo $! >> {f}; echo $$ >> {f}; wait; else echo \"done $p\"; fi",
        f = pids.display()
    );
    let _worker = Worker::start(&hub, "canceller", &script, &[]).await;
    let id = hub.task(json!({ "title": "long", "prompt": "long" })).await["id"]
        .as_i64()
        .unwrap();
    let started = hub
        .eventually(Duration::from_secs(10), || async {
            hub.task_status(id).await["status"] == "running"
                && std::fs::read_to_string(&pids).is_ok_and(|p| p.lines().count() == 2)
        })
        .await;
    assert!(started, "{}", hub.task_status(id).await);
    let pids: Vec<String> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert!(
        pids.iter().all(|p| alive(p)),
        "both processes run: {pids:?}"
    );

    hub.put(
        &format!("/api/tasks/{id}"),
        MASTER,
        json!({ "status": "cancelled" }),
    )
    .await
    .expect(200);
    let stopped = hub
        .eventually(Duration::from_secs(4), || async {
            pids.iter().all(|p| !alive(p))
        })
        .await;
    assert!(stopped, "the shell and its child were stopped: {pids:?}");
    assert_eq!(hub.task_status(id).await["status"], "cancelled");

    // The worker goes on taking work.
    let next = hub.task(json!({ "title": "next", "prompt": "next" })).await["id"]
        .as_i64()
        .unwrap();
    let done = finished(&hub, next, Duration::from_secs(10)).await;
    assert_eq!(done["output"], "done next\n", "{done}");
}

#[actix_web::test]
async fn the_worker_reports_usage_as_it_goes_and_a_run_past_its_budget_is_stopped() {
    let hub = TestHub::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // Claude's JSON lines: a turn's tokens, then (for "long") a wait that only a kill ends;
    // otherwise the final result with the run's totals and cost.
    let turn = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"thinking"}],"usage":{"input_tokens":100,"output_tokens":50}}}"#;
    let result = r#"{"type":"result","result":"the answer","total_cost_usd":0.02,"usage":{"input_tokens":120,"output_tokens":60}}"#;
    let script = format!(
        "read -r p; echo '{turn}'; if [ \"$p\" = long ]; then sleep 1000 & echo $! >> {f}; echo $$ >> {f}; wait; else echo '{result}'; fi",
        f = pids.display()
    );
    let _worker = Worker::start(&hub, "spender", &script, &[]).await;

    let thrifty = hub
        .task(json!({ "title": "thrifty", "prompt": "short", "max_cost_usd": 1.0 }))
        .await["id"]
        .as_i64()
        .unwrap();
    let done = finished(&hub, thrifty, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["cost_usd"], 0.02, "{done}");
    assert_eq!(done["tokens_in"], 120);
    assert_eq!(done["tokens_out"], 60);

    let id = hub
        .task(json!({ "title": "long", "prompt": "long", "max_tokens": 100 }))
        .await["id"]
        .as_i64()
        .unwrap();
    let stopped = hub
        .eventually(Duration::from_secs(10), || async {
            hub.task_status(id).await["status"] == "cancelled"
                && std::fs::read_to_string(&pids)
                    .is_ok_and(|p| p.lines().count() == 2 && p.lines().all(|pid| !alive(pid)))
        })
        .await;
    let task = hub.task_status(id).await;
    assert!(stopped, "cancelled and its processes gone: {task}");
    assert_eq!(task["reason"], "budget_exceeded");
    assert_eq!(
        task["tokens_in"], 100,
        "the usage came with the first chunk"
    );
}

#[actix_web::test]
async fn a_worker_given_several_hub_addresses_works_through_the_one_that_answers() {
    let hub = TestHub::spawn().await;
    // An address nothing listens on, first: as a hub process that was just killed.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_at = format!("http://{}", gone.local_addr().unwrap());
    drop(gone);
    let token = hub.token("w1", "worker").await;
    let hubs = format!("{gone_at},{}", hub.base);
    let _worker = Worker {
        child: worker_command(&hubs, &token, "w1", "echo done by w1")
            .spawn()
            .expect("the worker starts"),
    };
    let id = hub.task(json!({ "title": "t", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    let task = finished(&hub, id, Duration::from_secs(20)).await;
    assert_eq!(task["status"], "done", "{task}");
    assert_eq!(task["output"].as_str().map(str::trim), Some("done by w1"));
}
