//! The real `m3shd` binary as a child process: a clean environment, a hub that binds port 0
//! and says which port it got, and a clean stop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// How long a starting hub may take to say where it listens (a debug build on a busy
/// machine runs its migrations first).
const START: Duration = Duration::from_secs(60);

/// `m3shd` with none of the caller's `M3SHDUP_*` variables: a test sets what it needs.
pub fn m3shd() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_m3shd"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("M3SHDUP_") {
            command.env_remove(name);
        }
    }
    command
}

/// Starts `m3shd serve` with master token `token` on the database `db` (the file, or the
/// PostgreSQL database standing for it when the suite runs there) (alerts off, on a
/// port it picks itself, `RUST_LOG=info` appended to `log`), `env` set over these, and
/// waits until it answers. Dropping it is a SIGKILL.
pub async fn serve(
    token: &str,
    db: &std::path::Path,
    log: &std::path::Path,
    env: &[(&str, &str)],
) -> HubProcess {
    let mut command = m3shd();
    command
        .arg("serve")
        .env("M3SHDUP_TOKEN", token)
        .envs(super::database_env(db))
        .env("M3SHDUP_ALERTS_ENABLED", "false")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        );
    HubProcess::answering(command).await
}

/// A running `m3shd serve`, killed (SIGKILL) when dropped unless stopped first.
pub struct HubProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, as the hub printed it.
    pub base: String,
    /// Everything the hub printed on standard output so far.
    pub stdout: Arc<Mutex<String>>,
}

impl HubProcess {
    /// Starts `command` (an `m3shd serve`, with `M3SHDUP_BIND=127.0.0.1:0` unless told
    /// otherwise) and waits for its `m3shd listening on URL` line. Standard output is
    /// captured; standard error is left as the caller set it.
    pub async fn start(mut command: Command) -> Self {
        let has_bind = command
            .get_envs()
            .any(|(name, value)| name == "M3SHDUP_BIND" && value.is_some());
        if !has_bind {
            command.env("M3SHDUP_BIND", "127.0.0.1:0");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("the m3shd binary starts");
        let stdout = Arc::new(Mutex::new(String::new()));
        let (found, listening) = mpsc::channel();
        let reader = BufReader::new(child.stdout.take().expect("piped stdout"));
        let seen = stdout.clone();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("m3shd listening on ") {
                    let _ = found.send(url.trim().to_string());
                }
                let mut seen = seen.lock().unwrap();
                seen.push_str(&line);
                seen.push('\n');
            }
        });
        // Polled, not blocked on: an in-process hub may share this thread.
        let deadline = std::time::Instant::now() + START;
        while std::time::Instant::now() < deadline {
            match listening.try_recv() {
                Ok(base) => {
                    return Self {
                        child,
                        base,
                        stdout,
                    }
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {
                    actix_web::rt::time::sleep(Duration::from_millis(20)).await
                }
            }
        }
        let _ = child.kill();
        let status = child.wait();
        panic!(
            "m3shd did not say where it listens ({status:?}); it printed: {}",
            stdout.lock().unwrap()
        );
    }

    /// [`HubProcess::start`], then waits until the hub answers `GET /api/health`.
    pub async fn answering(command: Command) -> Self {
        let process = Self::start(command).await;
        let client = awc::Client::new();
        for _ in 0..400 {
            if client
                .get(format!("{}/api/health", process.base))
                .send()
                .await
                .is_ok()
            {
                return process;
            }
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("m3shd did not answer at {}", process.base);
    }

    /// The port the hub bound.
    pub fn port(&self) -> u16 {
        self.base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the listening line")
    }

    /// SIGTERM, then waits (without blocking the caller's runtime) until the process has
    /// exited; SIGKILL if it takes longer than `within`. True if it stopped by itself.
    pub async fn stop(&mut self, within: Duration) -> bool {
        terminate(&self.child);
        let clean = wait_exit(&mut self.child, within).await;
        if !clean {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        clean
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to a child process.
pub fn terminate(child: &Child) {
    // SAFETY: sends a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
}

/// Waits for a child to exit without blocking the runtime (a hub may share this thread).
pub async fn wait_exit(child: &mut Child, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    matches!(child.try_wait(), Ok(Some(_)))
}

/// `m3shd audit verify ARGS`: (succeeded, what it printed on either stream).
pub async fn audit_verify(args: &[&str]) -> (bool, String) {
    let mut command: Command = m3shd();
    command
        .args(["audit", "verify"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = actix_web::rt::task::spawn_blocking(move || command.output().expect("m3shd runs"))
        .await
        .expect("the command ran");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `m3shd worker` for `name` against `hub` running `exec`, with the quick intervals the
/// tests use (heartbeats and polls every second, 50 ms before a failed run is retried)
/// and no output. Arguments added after these win.
pub fn worker_command(hub: &str, token: &str, name: &str, exec: &str) -> Command {
    let mut command = quick_worker(hub, token, name);
    command
        .args(["--exec", exec])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// `m3shd worker` for `name` against `hub` with the tests' quick intervals, running Claude
/// unless told otherwise.
pub fn quick_worker(hub: &str, token: &str, name: &str) -> Command {
    let mut command = m3shd();
    command
        .args(["worker", "--hub", hub, "--token", token, "--name", name])
        .args([
            "--capabilities",
            "research",
            "--heartbeat-interval",
            "1",
            "--poll-interval",
            "1",
        ])
        .args(["--retry-backoff-ms", "50"])
        .env("RUST_LOG", "warn");
    command
}

/// What a finished run printed.
pub struct Ended {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` to its end (killed, and the test failed, after 30 s: a `serve` that
/// was meant to refuse its settings but started instead).
pub async fn run_to_end(mut command: Command) -> Ended {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    command
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .stdin(Stdio::null());
    let mut child = command.spawn().expect("m3shd starts");
    let ended = wait_exit(&mut child, Duration::from_secs(30)).await;
    if !ended {
        let _ = child.kill();
    }
    let stdout = std::fs::read_to_string(out).unwrap();
    assert!(ended, "m3shd did not stop; it printed: {stdout}");
    Ended {
        ok: child.wait().unwrap().success(),
        stdout,
        stderr: std::fs::read_to_string(err).unwrap(),
    }
}
