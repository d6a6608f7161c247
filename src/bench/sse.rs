//! `m3shd bench --suite sse`: the live event stream at scale. For each count of
//! subscribers, a hub child process on a fresh database, then:
//!
//! * that many connections read `GET /api/stream` at once (plain HTTP/1.1 over loopback,
//!   each on its own task of this process);
//! * tasks are created one after another; each one's `task_queued` event is timed from the
//!   create being sent to its arrival at the last subscriber (the next create waits for
//!   that), and an event that misses any subscriber is counted as lost;
//! * the hub's resident memory with the subscribers connected, less before, per subscriber.
//!
//! The load generator shares the machine with the hub: with 10,000 subscribers the time
//! includes this process reading 10,000 sockets.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{percentile, HubChild, CHILD_TOKEN};

pub struct SsePlan {
    pub subscribers: Vec<usize>,
    pub events: usize,
}

/// Streams opened at once before waiting for them to connect: well inside the listener's
/// accept backlog.
const WAVE: usize = 500;

pub fn run(dir: &std::path::Path, plan: SsePlan) -> anyhow::Result<()> {
    ensure!(
        plan.events > 0 && plan.subscribers.iter().all(|&n| n > 0),
        "--samples and every count in --subscribers must be positive"
    );
    // This process holds one descriptor per subscriber too.
    crate::startup::raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    for (round, &subscribers) in plan.subscribers.iter().enumerate() {
        let hub = HubChild::start(&dir.join(format!("bench-sse-{round}.db")), &[])?;
        measure(&runtime, &hub, subscribers, plan.events)?;
    }
    Ok(())
}

/// When each event reached how many subscribers, the last of them in nanoseconds since
/// `epoch`.
struct Arrivals {
    epoch: Instant,
    reached: Vec<AtomicUsize>,
    last_ns: Vec<AtomicU64>,
    connected: AtomicUsize,
    failure: Mutex<Option<String>>,
}

impl Arrivals {
    fn new(events: usize) -> Self {
        Self {
            epoch: Instant::now(),
            reached: (0..events).map(|_| AtomicUsize::new(0)).collect(),
            last_ns: (0..events).map(|_| AtomicU64::new(0)).collect(),
            connected: AtomicUsize::new(0),
            failure: Mutex::new(None),
        }
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn arrived(&self, event: usize, at_ns: u64) {
        if let (Some(reached), Some(last)) = (self.reached.get(event), self.last_ns.get(event)) {
            last.fetch_max(at_ns, Ordering::Relaxed);
            reached.fetch_add(1, Ordering::Release);
        }
    }

    fn failed(&self, why: String) {
        self.failure.lock().unwrap().get_or_insert(why);
    }

    fn check(&self) -> anyhow::Result<()> {
        match self.failure.lock().unwrap().as_ref() {
            Some(why) => anyhow::bail!("a subscriber failed: {why}"),
            None => Ok(()),
        }
    }

    /// Waits until `done` holds, up to `limit`, then answers whether it does.
    fn wait_for(&self, limit: Duration, done: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while !done() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        done()
    }
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    hub: &HubChild,
    subscribers: usize,
    events: usize,
) -> anyhow::Result<()> {
    let addr = hub.base.trim_start_matches("http://").to_string();
    std::thread::sleep(Duration::from_millis(500));
    let before = hub.rss_kib()?;
    let arrivals = Arc::new(Arrivals::new(events));
    let mut opened = 0;
    while opened < subscribers {
        let wave = WAVE.min(subscribers - opened);
        for _ in 0..wave {
            runtime.spawn(subscribe(addr.clone(), arrivals.clone()));
        }
        opened += wave;
        let all = arrivals.wait_for(Duration::from_secs(60), || {
            arrivals.connected.load(Ordering::Acquire) >= opened
                || arrivals.failure.lock().unwrap().is_some()
        });
        arrivals.check()?;
        ensure!(all, "only {opened} of the streams opened within a minute");
    }
    std::thread::sleep(Duration::from_secs(1));
    let during = hub.rss_kib()?;

    let (mut latencies, mut creates, mut lost) = (Vec::new(), Vec::new(), 0);
    let cpu = (hub.cpu_seconds()?, super::cpu_seconds("self")?);
    for event in 0..events {
        let sent = arrivals.now_ns();
        create_task(&addr, event)?;
        creates.push((arrivals.now_ns() - sent) as f64 / 1e3);
        let reached = &arrivals.reached[event];
        let everyone = arrivals.wait_for(Duration::from_secs(10), || {
            reached.load(Ordering::Acquire) >= subscribers
        });
        arrivals.check()?;
        lost += subscribers - reached.load(Ordering::Acquire).min(subscribers);
        if everyone {
            latencies.push((arrivals.last_ns[event].load(Ordering::Relaxed) - sent) as f64 / 1e3);
        }
    }
    let per_event = |before: f64, after: f64| (after - before) * 1e3 / events as f64;
    let hub_cpu = per_event(cpu.0, hub.cpu_seconds()?);
    let own_cpu = per_event(cpu.1, super::cpu_seconds("self")?);
    latencies.sort_by(f64::total_cmp);
    creates.sort_by(f64::total_cmp);
    println!(
        "{subscribers} subscribers: publish → last subscriber p50 {:.2} ms, p99 {:.2} ms over {} events \
         ({} reached everyone, {lost} deliveries lost); the create's own answer p50 {:.2} ms; \
         hub RSS {before} KiB before, {during} KiB with them connected: {:.1} KiB per subscriber; \
         CPU per event: hub {hub_cpu:.1} ms, this load generator {own_cpu:.1} ms",
        percentile(&latencies, 50.0) / 1e3,
        percentile(&latencies, 99.0) / 1e3,
        events,
        latencies.len(),
        percentile(&creates, 50.0) / 1e3,
        during.saturating_sub(before) as f64 / subscribers as f64,
    );
    Ok(())
}

/// One subscriber: opens the stream and counts `task_queued` events as they arrive, the
/// nth being the nth task created.
async fn subscribe(addr: String, arrivals: Arc<Arrivals>) {
    if let Err(why) = read_stream(&addr, &arrivals).await {
        arrivals.failed(format!("{why:#}"));
    }
}

async fn read_stream(addr: &str, arrivals: &Arrivals) -> anyhow::Result<()> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "GET /api/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {CHILD_TOKEN}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let (mut buffer, mut line) = (vec![0u8; 16 * 1024], Vec::new());
    let mut seen = 0;
    loop {
        let read = stream.read(&mut buffer).await?;
        ensure!(read > 0, "the hub ended the stream");
        let at = arrivals.now_ns();
        // Each event is one chunk of the response, so no line is split by chunk framing.
        // `line` holds the start of a line the last read cut off.
        let mut pieces = buffer[..read].split(|&b| b == b'\n').peekable();
        while let Some(piece) = pieces.next() {
            if pieces.peek().is_none() {
                line.extend_from_slice(piece);
                break;
            }
            let whole = if line.is_empty() {
                piece
            } else {
                line.extend_from_slice(piece);
                &line[..]
            };
            match whole {
                b"event: task_queued" => {
                    arrivals.arrived(seen, at);
                    seen += 1;
                }
                b": connected" => {
                    arrivals.connected.fetch_add(1, Ordering::Release);
                }
                refused
                    if refused.starts_with(b"HTTP/1.1 ")
                        && !refused.starts_with(b"HTTP/1.1 200") =>
                {
                    anyhow::bail!("{}", String::from_utf8_lossy(refused).trim());
                }
                _ => {}
            }
            line.clear();
        }
    }
}

/// `POST /api/tasks` on a connection of its own, waiting for the 201.
fn create_task(addr: &str, event: usize) -> anyhow::Result<()> {
    let body =
        serde_json::json!({ "title": format!("sse bench {event}"), "prompt": "p" }).to_string();
    let mut connection = std::net::TcpStream::connect(addr)?;
    write!(
        connection,
        "POST /api/tasks HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {CHILD_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    connection
        .read_to_string(&mut answer)
        .context("reading the create's answer")?;
    ensure!(
        answer.starts_with("HTTP/1.1 201"),
        "the create answered {}",
        answer.lines().next().unwrap_or("nothing")
    );
    Ok(())
}
