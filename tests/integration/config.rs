//! Configuration that explains itself, through the real binary: a bad value stops `serve`
//! before it touches anything, naming the key, where it was set and what it accepts;
//! `m3shd config` prints what a start would use, secrets only as set or unset.

use std::process::Command;

use crate::support::process::{m3shd, run_to_end};

/// `m3shd serve` on a database in `dir` that must never be created.
fn serve_in(dir: &std::path::Path) -> Command {
    let mut command = m3shd();
    command
        .arg("serve")
        .env("M3SHDUP_BIND", "127.0.0.1:0")
        .env("M3SHDUP_DATABASE_URL", dir.join("data").join("hub.db"))
        .env("M3SHDUP_TOKEN", "config-test-token");
    command
}

#[actix_web::test]
async fn bad_variables_stop_serve_naming_each_key_and_what_it_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = serve_in(dir.path());
    command
        .env("M3SHDUP_HEARTBEAT_TIMEOUT", "-5")
        .env("M3SHDUP_ALERTS_ENABLED", "maybe")
        .env("M3SHDUP_SQLITE_SYNCHRONOUS", "fast");
    let ended = run_to_end(command).await;
    assert!(!ended.ok);
    assert!(!ended.stdout.contains("listening"), "{}", ended.stdout);
    for expected in [
        "heartbeat_timeout = -5 (from M3SHDUP_HEARTBEAT_TIMEOUT): expected a whole number of seconds, at least 1",
        r#"alerts_enabled = "maybe" (from M3SHDUP_ALERTS_ENABLED): expected true or false"#,
        r#"sqlite_synchronous = "fast" (from M3SHDUP_SQLITE_SYNCHRONOUS): expected one of OFF, NORMAL, FULL, EXTRA"#,
    ] {
        assert!(ended.stderr.contains(expected), "{expected:?} not in:\n{}", ended.stderr);
    }
    assert!(!dir.path().join("data").exists(), "nothing is created");
}

#[actix_web::test]
async fn misspelt_names_in_the_environment_or_a_file_are_refused_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hub.toml");
    std::fs::write(&file, "sse_keepalive = 5\nwrite_batch_max = 0\n").unwrap();
    let mut command = serve_in(dir.path());
    command
        .env("M3SHDUP_HEARTBEAT_TIMOUT", "30")
        .env("M3SHDUP_CONFIG", &file);
    let ended = run_to_end(command).await;
    assert!(!ended.ok);
    let origin = format!("M3SHDUP_CONFIG file {}", file.display());
    for expected in [
        r#"unknown setting "M3SHDUP_HEARTBEAT_TIMOUT" in the environment; did you mean "M3SHDUP_HEARTBEAT_TIMEOUT"?"#.to_string(),
        format!(r#"unknown setting "sse_keepalive" in the {origin}; did you mean "sse_keepalive_seconds"?"#),
        format!("write_batch_max = 0 (from {origin}): expected a whole number of writes, at least 1"),
    ] {
        assert!(ended.stderr.contains(&expected), "{expected:?} not in:\n{}", ended.stderr);
    }
}

#[actix_web::test]
async fn a_bind_flag_that_does_not_parse_stops_serve() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = serve_in(dir.path());
    command.args(["--bind", "localhost"]);
    let ended = run_to_end(command).await;
    assert!(!ended.ok);
    assert!(
        ended
            .stderr
            .contains(r#"bind = "localhost": expected host:port"#),
        "{}",
        ended.stderr
    );
}

#[actix_web::test]
async fn config_prints_the_effective_settings_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hub.toml");
    std::fs::write(&file, "[capability_timeouts]\ngit = 60\n").unwrap();
    let mut command = m3shd();
    command
        .arg("config")
        .env("M3SHDUP_CONFIG", &file)
        .env("M3SHDUP_HEARTBEAT_TIMEOUT", "33")
        .env("M3SHDUP_TOKEN", "hunter2-master-token")
        .env("M3SHDUP_LEGACY_ENCRYPT_KEY", "hunter2-legacy-key");
    let ended = run_to_end(command).await;
    assert!(ended.ok, "{}", ended.stderr);
    let out = &ended.stdout;
    assert!(out.contains("heartbeat_timeout = 33\n"), "{out}");
    assert!(
        out.contains("\ngit = 60\n") && out.contains("\nresearch = 1800\n"),
        "{out}"
    );
    assert!(out.contains("#   M3SHDUP_TOKEN: set\n"), "{out}");
    assert!(out.contains("#   M3SHDUP_ENCRYPT_KEY: unset\n"), "{out}");
    assert!(
        out.contains("#   M3SHDUP_LEGACY_ENCRYPT_KEY: set\n"),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");
    // What it prints is a configuration file the hub accepts.
    std::fs::write(&file, out).unwrap();
    let mut command = m3shd();
    command.arg("config").env("M3SHDUP_CONFIG", &file);
    let again = run_to_end(command).await;
    assert!(again.ok, "{}", again.stderr);
    assert!(again.stdout.contains("heartbeat_timeout = 33\n"));
}
