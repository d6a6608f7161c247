//! Running one attempt of a task: the command (Claude, or any shell command with the
//! prompt on standard input), its standard output streamed in chunks as it arrives, a
//! time limit, and a kill of the whole process group when time is up or the worker stops.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

/// What runs a task.
#[derive(Debug, Clone)]
pub enum Executor {
    /// `claude --print <prompt> --output-format stream-json --verbose`, with agent mode
    /// also `--dangerously-skip-permissions`.
    Claude { agent_mode: bool },
    /// `sh -c <command>`, the prompt on standard input.
    Shell(String),
}

/// The task an attempt works on.
#[derive(Debug, Clone)]
pub struct Job {
    /// Where the worker's hub is and its token: an `--exec` script may call the hub as the
    /// worker (`m3shd approve`).
    pub hub: String,
    pub token: String,
    pub id: i64,
    pub title: String,
    pub capability: String,
    pub prompt: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    Succeeded,
    /// Exit code, or `None` when a signal ended it.
    Failed(Option<i32>),
    TimedOut,
    /// The worker is shutting down and killed it.
    Stopped,
    /// The command could not be started at all (not installed, not executable): trying
    /// again would not help.
    CannotStart(String),
}

#[derive(Debug)]
pub struct Attempt {
    pub ending: Ending,
    pub stdout: String,
    /// The last part of standard error, for the failure report.
    pub stderr_tail: String,
}

/// How much of standard error a failure report keeps.
const STDERR_TAIL: usize = 4000;

impl Executor {
    /// The program this executor runs.
    fn program(&self) -> &'static str {
        match self {
            Self::Claude { .. } => "claude",
            Self::Shell(_) => "sh",
        }
    }

    /// Whether the program can be found, before the worker offers to take any work.
    pub fn check(&self) -> Result<(), String> {
        match which::which(self.program()) {
            Ok(_) => Ok(()),
            Err(_) if matches!(self, Self::Claude { .. }) => {
                Err("the `claude` command is not on PATH: install Claude Code \
                 (npm install -g @anthropic-ai/claude-code), or give the worker a command to run \
                 with --exec"
                    .into())
            }
            Err(_) => Err(format!("`{}` is not on PATH", self.program())),
        }
    }

    fn command(&self, job: &Job) -> Command {
        let mut command = match self {
            Self::Claude { agent_mode } => {
                // JSON lines, so the worker can report the usage and cost as they grow.
                let mut c = Command::new("claude");
                c.arg("--print").arg(&job.prompt).args([
                    "--output-format",
                    "stream-json",
                    "--verbose",
                ]);
                if *agent_mode {
                    c.arg("--dangerously-skip-permissions");
                }
                c
            }
            Self::Shell(line) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(line);
                c
            }
        };
        command
            .env("M3SHD_HUB", &job.hub)
            .env("M3SHD_TOKEN", &job.token)
            .env("M3SHD_TASK_ID", job.id.to_string())
            .env("M3SHD_TASK_TITLE", &job.title)
            .env("M3SHD_CAPABILITY", &job.capability)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout kills everything it started.
            .process_group(0)
            .kill_on_drop(true);
        command
    }

    /// Runs one attempt. Every piece of standard output is sent on `chunks` as it arrives;
    /// `stop` turning true kills the attempt.
    pub async fn run(
        &self,
        job: &Job,
        limit: Duration,
        chunks: mpsc::UnboundedSender<String>,
        mut stop: watch::Receiver<bool>,
    ) -> Attempt {
        let mut child = match self.command(job).spawn() {
            Ok(child) => child,
            Err(error) => {
                return Attempt {
                    ending: Ending::CannotStart(format!(
                        "cannot start {}: {error}",
                        self.program()
                    )),
                    stdout: String::new(),
                    stderr_tail: String::new(),
                }
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            if matches!(self, Self::Shell(_)) {
                let _ = stdin.write_all(job.prompt.as_bytes()).await;
            }
            drop(stdin);
        }
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Attempt {
                ending: Ending::CannotStart(format!(
                    "{} started without output pipes",
                    self.program()
                )),
                stdout: String::new(),
                stderr_tail: String::new(),
            };
        };
        let group = child.id().map(|pid| pid as i32);
        let output = async {
            let (out, err) = tokio::join!(read_streaming(stdout, &chunks), read_tail(stderr));
            let status = child.wait().await;
            (out, err, status)
        };
        tokio::pin!(output);
        let interrupted = tokio::select! {
            (stdout, stderr_tail, status) = &mut output => {
                let ending = match status {
                    Ok(s) if s.success() => Ending::Succeeded,
                    Ok(s) => Ending::Failed(s.code()),
                    Err(_) => Ending::Failed(None),
                };
                return Attempt { ending, stdout, stderr_tail };
            }
            _ = tokio::time::sleep(limit) => Ending::TimedOut,
            _ = stop.wait_for(|stopping| *stopping) => Ending::Stopped,
        };
        // SIGTERM to the whole group first; what still runs after the grace is killed.
        let (stdout, stderr_tail, _) = match group {
            Some(group) => {
                signal_group(group, libc::SIGTERM);
                match tokio::time::timeout(TERM_GRACE, &mut output).await {
                    Ok(ended) => ended,
                    Err(_) => {
                        signal_group(group, libc::SIGKILL);
                        output.await
                    }
                }
            }
            None => output.await,
        };
        Attempt {
            ending: interrupted,
            stdout,
            stderr_tail,
        }
    }
}

/// How long a stopped attempt's processes get between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);

fn signal_group(group: i32, signal: libc::c_int) {
    // SAFETY: killpg only sends a signal; the group is the child's own (process_group(0)).
    unsafe {
        libc::killpg(group, signal);
    }
}

/// Reads everything, passing each piece on as it arrives.
async fn read_streaming(
    mut from: impl AsyncRead + Unpin,
    chunks: &mpsc::UnboundedSender<String>,
) -> String {
    let mut all = Vec::new();
    let mut buffer = [0u8; 8192];
    let mut pending = Vec::new();
    while let Ok(n) = from.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buffer[..n]);
        pending.extend_from_slice(&buffer[..n]);
        // Send only whole UTF-8 characters; keep a split one for the next read.
        let valid = match std::str::from_utf8(&pending) {
            Ok(_) => pending.len(),
            Err(e) => e.valid_up_to(),
        };
        if valid > 0 {
            let _ = chunks.send(String::from_utf8_lossy(&pending[..valid]).into_owned());
            pending.drain(..valid);
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

async fn read_tail(mut from: impl AsyncRead + Unpin) -> String {
    let mut all = Vec::new();
    let _ = from.read_to_end(&mut all).await;
    let text = String::from_utf8_lossy(&all);
    let skip = text.chars().count().saturating_sub(STDERR_TAIL);
    text.chars().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(prompt: &str) -> Job {
        Job {
            hub: "http://127.0.0.1:9".into(),
            token: "t".into(),
            id: 7,
            title: "t".into(),
            capability: "research".into(),
            prompt: prompt.into(),
        }
    }

    async fn attempt(line: &str, limit: Duration) -> (Attempt, Vec<String>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (_stop_tx, stop) = watch::channel(false);
        let attempt = Executor::Shell(line.into())
            .run(&job("the prompt"), limit, tx, stop)
            .await;
        let mut chunks = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            chunks.push(chunk);
        }
        (attempt, chunks)
    }

    #[actix_web::test]
    async fn the_prompt_arrives_on_stdin_with_the_task_in_the_environment() {
        let (a, chunks) = attempt(
            "cat; echo \" $M3SHD_TASK_ID $M3SHD_CAPABILITY\"",
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(a.ending, Ending::Succeeded);
        assert_eq!(a.stdout, "the prompt 7 research\n");
        assert_eq!(chunks.concat(), a.stdout);
    }

    #[actix_web::test]
    async fn failures_keep_the_exit_code_and_stderr() {
        let (a, _) = attempt("echo boom >&2; exit 3", Duration::from_secs(10)).await;
        assert_eq!(a.ending, Ending::Failed(Some(3)));
        assert_eq!(a.stderr_tail, "boom\n");
    }

    #[actix_web::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let started = std::time::Instant::now();
        let (a, _) = attempt("sleep 30 & sleep 30; wait", Duration::from_millis(300)).await;
        assert_eq!(a.ending, Ending::TimedOut);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the attempt did not wait for its children"
        );
    }
}
