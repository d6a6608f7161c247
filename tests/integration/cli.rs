//! The operator commands as a person or a script uses them: the real `m3shd` binary
//! against a real hub, asserting on what it prints, its exit code and its messages.

use std::io::Write;
use std::process::{Output, Stdio};

use serde_json::{json, Value};

use crate::support::process::m3shd;
use crate::support::{TestHub, MASTER};

/// What one run of the binary showed.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    /// The output, asserting the command succeeded.
    fn ok(self) -> Self {
        assert!(self.ok, "the command failed: {}", self.stderr);
        self
    }

    /// The error message, asserting the command failed and printed nothing on stdout.
    fn failed(self) -> String {
        assert!(!self.ok, "the command succeeded: {}", self.stdout);
        assert!(self.stdout.is_empty(), "stdout: {}", self.stdout);
        self.stderr
    }
}

/// `m3shd ARGS --hub HUB --token TOKEN`, with `stdin` as its standard input. Run off the
/// test's thread: the in-process hub answering it shares that thread.
async fn run_as(hub: &str, token: &str, args: &[&str], stdin: &str) -> Run {
    let mut command = m3shd();
    command
        .args(args)
        .args(["--hub", hub, "--token", token])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let stdin = stdin.to_string();
    let output: Output = actix_web::rt::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("m3shd starts");
        let mut input = child.stdin.take().expect("piped stdin");
        input.write_all(stdin.as_bytes()).expect("stdin written");
        drop(input);
        child.wait_with_output().expect("m3shd ends")
    })
    .await
    .expect("the command ran");
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `m3shd ARGS` as the master.
async fn run(hub: &TestHub, args: &[&str]) -> Run {
    run_as(&hub.base, MASTER, args, "").await
}

/// The value of `key` in a `key:  value` block.
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key:?} in:\n{text}"))
}

/// The row of a table whose first column is `first`.
fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| {
            l.split("  ")
                .filter(|c| !c.is_empty())
                .map(str::trim)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row {first:?} in:\n{table}"))
}

#[actix_web::test]
async fn agents_ls_shows_one_aligned_row_per_agent() {
    let hub = TestHub::spawn().await;
    hub.agent("rex", &["research", "git"], 2).await;
    hub.agent("pi-node-01", &["file_ops"], 1).await;

    let out = run(&hub, &["agents", "ls"]).await.ok().stdout;
    let header = out.lines().next().unwrap();
    assert!(header.starts_with("AGENT       STATUS"), "{out}");
    // Every column starts where its header does.
    let status_at = header.find("STATUS").unwrap();
    for line in out.lines().skip(1) {
        assert_eq!(&line[status_at..status_at + 6], "online", "{out}");
    }
    assert_eq!(
        row(&out, "rex")[..4],
        ["rex", "online", "0/2", "research, git"]
    );

    let json = run(&hub, &["agents", "ls", "--json", "--status", "online"])
        .await
        .ok()
        .json();
    assert_eq!(json["total"], 2);
    let ids: Vec<&str> = json["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["agent_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"rex") && ids.contains(&"pi-node-01"),
        "{json}"
    );

    let none = run(&hub, &["agents", "ls", "--status", "offline"])
        .await
        .ok();
    assert_eq!(
        none.stdout.lines().count(),
        1,
        "only the header: {}",
        none.stdout
    );
}

#[actix_web::test]
async fn tasks_are_created_listed_shown_and_cancelled() {
    let hub = TestHub::spawn().await;
    let created = run(
        &hub,
        &[
            "tasks",
            "create",
            "--title",
            "Summarize README",
            "--prompt",
            "Three bullets.",
            "--capability",
            "git",
            "--priority",
            "5",
            "--json",
        ],
    )
    .await
    .ok()
    .json();
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["required_capability"], "git");
    assert_eq!(created["priority"], 5);
    assert_eq!(created["status"], "queued");
    let id = id.to_string();

    // A prompt may come from standard input; the human view shows the task's fields.
    let piped = run_as(
        &hub.base,
        MASTER,
        &["tasks", "create", "--title", "From a pipe", "--prompt", "-"],
        "line one\nline two\n",
    )
    .await
    .ok()
    .stdout;
    assert_eq!(field(&piped, "title"), "From a pipe");
    assert!(
        piped.contains("\nprompt:\n  line one\n  line two\n"),
        "{piped}"
    );

    let listed = run(&hub, &["tasks", "ls"]).await.ok().stdout;
    assert!(
        listed.starts_with("ID  STATUS  PRIORITY  CAPABILITY"),
        "{listed}"
    );
    assert_eq!(
        row(&listed, &id),
        [
            id.as_str(),
            "queued",
            "5",
            "git",
            "-",
            "0",
            "Summarize README"
        ]
    );
    let only_cancelled = run(&hub, &["tasks", "ls", "--status", "cancelled"])
        .await
        .ok();
    assert_eq!(only_cancelled.stdout.lines().count(), 1);

    let shown = run(&hub, &["tasks", "show", &id]).await.ok().stdout;
    assert!(shown.starts_with("id:  "), "{shown}");
    assert_eq!(field(&shown, "id"), id);
    assert_eq!(field(&shown, "status"), "queued");
    assert_eq!(field(&shown, "capability"), "git");
    assert!(shown.contains("\nprompt:\n  Three bullets.\n"), "{shown}");

    let cancelled = run(&hub, &["tasks", "cancel", &id]).await.ok().stdout;
    assert_eq!(cancelled, format!("task {id} cancelled\n"));
    let json = run(&hub, &["tasks", "show", &id, "--json"])
        .await
        .ok()
        .json();
    assert_eq!(json["status"], "cancelled");

    let error = run(&hub, &["tasks", "show", "9999"]).await.failed();
    assert!(
        error.contains("no task") && error.contains("(HTTP 404)"),
        "{error}"
    );
    let error = run(&hub, &["tasks", "create", "--title", "x", "--prompt", " "])
        .await
        .failed();
    assert!(error.contains("prompt is required (HTTP 400)"), "{error}");
}

#[actix_web::test]
async fn the_kill_switch_is_engaged_reported_and_cleared() {
    let hub = TestHub::spawn().await;
    let on = run(&hub, &["kill-switch", "on", "--reason", "maintenance"])
        .await
        .ok()
        .stdout;
    assert!(on.starts_with("kill switch:  engaged\n"), "{on}");
    assert_eq!(field(&on, "reason"), "maintenance");
    assert_eq!(field(&on, "by"), "master");

    let status = run(&hub, &["kill-switch", "status", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(status["active"], true);
    assert_eq!(status["reason"], "maintenance");

    let refused = run(&hub, &["tasks", "create", "--title", "t", "--prompt", "p"])
        .await
        .failed();
    assert!(
        refused.contains("kill switch engaged (HTTP 503)"),
        "{refused}"
    );

    let off = run(&hub, &["kill-switch", "off"]).await.ok().stdout;
    assert!(off.starts_with("kill switch:  off\n"), "{off}");
    run(&hub, &["tasks", "create", "--title", "t", "--prompt", "p"])
        .await
        .ok();
}

#[actix_web::test]
async fn audit_export_writes_every_entry_once_as_json_lines() {
    use m3shd::db::models::NewAuditRow;
    let hub = TestHub::spawn().await;
    // More than two pages of the hub's 500.
    hub.hub
        .core
        .db
        .write(|conn| {
            for n in 0..1100 {
                NewAuditRow::new("test", "test.fill", format!("n:{n}"), None).append(conn)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    hub.token("rex", "worker").await;

    let out = run(&hub, &["audit", "export"]).await.ok().stdout;
    let ids: Vec<i64> = out
        .lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line).expect("one JSON object a line");
            entry["id"].as_i64().unwrap()
        })
        .collect();
    let newest = ids[0];
    assert!(ids.len() >= 1101, "{} entries", ids.len());
    // Every id from the newest down to the first, once each.
    assert_eq!(ids, (1..=newest).rev().collect::<Vec<_>>());

    let issued = run(&hub, &["audit", "export", "--action", "token.issue"])
        .await
        .ok()
        .stdout;
    let entry: Value = serde_json::from_str(issued.trim()).unwrap();
    assert_eq!(entry["action"], "token.issue");
    assert_eq!(entry["target"], "agent:rex");
}

#[actix_web::test]
async fn tokens_are_issued_listed_and_revoked() {
    let hub = TestHub::spawn().await;
    let issued = run(
        &hub,
        &["tokens", "issue", "--agent-id", "rex", "--role", "worker"],
    )
    .await
    .ok()
    .stdout;
    let token = field(&issued, "token");
    assert!(token.starts_with("m3shd_ag_"), "{issued}");
    assert!(issued.contains("shown only now"), "{issued}");

    let custom = run(
        &hub,
        &[
            "tokens",
            "issue",
            "--agent-id",
            "viewer-1",
            "--permissions",
            "tasks:read,agents:read",
            "--json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(custom["role"], Value::Null);
    assert_eq!(custom["permissions"], json!(["agents:read", "tasks:read"]));

    // The new token works, for what it may do.
    let tasks = run_as(&hub.base, token, &["tasks", "ls"], "").await.ok();
    assert!(tasks.stdout.starts_with("ID"), "{}", tasks.stdout);
    let error = run_as(&hub.base, token, &["tokens", "ls"], "")
        .await
        .failed();
    assert!(error.contains("(HTTP 403)"), "{error}");

    let listed = run(&hub, &["tokens", "ls"]).await.ok().stdout;
    let lines: Vec<&str> = listed.lines().collect();
    assert!(lines[0].starts_with("HASH PREFIX   AGENT"), "{listed}");
    let rex = lines
        .iter()
        .find(|l| l.contains(" rex "))
        .unwrap_or_else(|| panic!("{listed}"));
    let prefix = rex.split_whitespace().next().unwrap().to_string();
    assert_eq!(prefix.len(), 12);
    assert!(rex.contains(" worker "), "{rex}");
    let viewer = lines.iter().find(|l| l.contains("viewer-1")).unwrap();
    assert!(viewer.contains(" custom "), "{viewer}");

    let revoked = run(&hub, &["tokens", "revoke", &prefix]).await.ok().stdout;
    assert_eq!(revoked, format!("revoked token {prefix} of agent rex\n"));
    let error = run_as(&hub.base, token, &["tasks", "ls"], "")
        .await
        .failed();
    assert!(
        error.contains("missing or invalid credentials (HTTP 401)"),
        "{error}"
    );
    let listed = run(&hub, &["tokens", "ls", "--json"]).await.ok().json();
    assert_eq!(listed["count"], 1);

    let error = run(&hub, &["tokens", "revoke", &prefix]).await.failed();
    assert!(
        error.contains("no token") && error.contains("(HTTP 404)"),
        "{error}"
    );
    let error = run(&hub, &["tokens", "revoke", "../tasks"]).await.failed();
    assert!(error.contains("is not a token hash"), "{error}");
    let error = run(
        &hub,
        &["tokens", "issue", "--agent-id", "x", "--role", "boss"],
    )
    .await
    .failed();
    assert!(error.contains("unknown role \"boss\""), "{error}");
}

#[actix_web::test]
async fn failures_exit_non_zero_with_a_message_saying_why() {
    let hub = TestHub::spawn().await;
    let error = run_as(&hub.base, "wrong", &["agents", "ls"], "")
        .await
        .failed();
    assert!(
        error.contains("missing or invalid credentials (HTTP 401)"),
        "{error}"
    );

    // No token at all: said before anything is sent.
    let mut command = m3shd();
    command.args(["agents", "ls", "--hub", &hub.base]);
    let output = actix_web::rt::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("no token: pass --token or set M3SHDUP_TOKEN"),
        "{error}"
    );

    // Nothing listens on port 1.
    let error = run_as("http://127.0.0.1:1", MASTER, &["kill-switch", "status"], "")
        .await
        .failed();
    assert!(
        error.contains("cannot reach the hub at http://127.0.0.1:1"),
        "{error}"
    );
}
