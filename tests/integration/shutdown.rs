//! The real binary stops gracefully on SIGTERM: in the middle of a load of creates it
//! exits 0 within its grace period, every create it acknowledged is in the database, no
//! request is cut off (each one gets its answer, or its connection is refused once the
//! port has closed), and an open event stream receives a `retry:` frame and ends. And the
//! writer's part of the stop: closing it commits and answers everything queued before.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::rt::net::TcpStream;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::process::{m3shd, terminate, wait_exit, HubProcess};
use crate::support::TestHub;

const TOKEN: &str = "shutdown-master";
/// The hub's `shutdown_grace_seconds` in this test.
const GRACE: Duration = Duration::from_secs(5);
/// Clients creating tasks at once, each over keep-alive connections like a worker's.
const CLIENTS: usize = 16;
/// Creates acknowledged before the SIGTERM, so that it lands mid-load.
const BEFORE_SIGTERM: usize = 300;

#[actix_web::test]
async fn sigterm_mid_load_loses_nothing_acknowledged_and_cuts_off_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let log = dir.path().join("hub.log");
    let mut hub = start(&db, &log).await;
    let stream = actix_web::rt::spawn(read_stream(hub.base.clone()));
    let load = Load::start(hub.base.trim_start_matches("http://"));
    load.until_created(BEFORE_SIGTERM).await;

    let at_signal = load.tally().created.len();
    let signalled = Instant::now();
    terminate(&hub.child);
    let exited = wait_exit(&mut hub.child, GRACE).await;
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        exited,
        "m3shd still runs {:?} after SIGTERM; log:\n{}",
        signalled.elapsed(),
        log_text()
    );
    let status = hub.child.try_wait().unwrap().expect("exited");
    assert!(
        status.success(),
        "m3shd exited with {status}; log:\n{}",
        log_text()
    );

    let tally = load.finish().await;
    assert!(tally.cut.is_empty(), "requests cut off: {:?}", tally.cut);
    assert_eq!(tally.refused, CLIENTS, "every client ends refused");
    assert!(tally.other.is_empty(), "answers not 201: {:?}", tally.other);
    assert!(
        tally.created.len() > at_signal,
        "requests in flight at the SIGTERM were answered too"
    );
    let stored = stored_task_ids(&db);
    let lost: Vec<_> = tally
        .created
        .iter()
        .filter(|id| !stored.contains(id))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");

    let events = actix_web::rt::time::timeout(Duration::from_secs(1), stream)
        .await
        .expect("the event stream ended with the hub")
        .unwrap()
        .unwrap_or_else(|e| panic!("the event stream broke: {e}"));
    assert!(events.contains("event: task_queued"), "the stream was live");
    assert!(
        events.trim_end().ends_with("retry: 1000"),
        "the stream's last frame tells the client when to reconnect: {:?}",
        events.lines().rev().take(3).collect::<Vec<_>>()
    );
}

#[actix_web::test]
async fn closing_the_writer_commits_and_answers_every_write_queued_before() {
    use futures_util::future::{join, join_all};
    use m3shd::db::queries::put_setting;
    const WRITES: usize = 200;
    let hub = TestHub::spawn().await;
    let db = &hub.hub.core.db;
    let writes = (0..WRITES).map(|i| {
        db.write(move |conn| Ok(put_setting(conn, &format!("drain.{i}"), &i.into(), "test")?))
    });
    // Polled in this order: every write joins the queue before the close is asked for.
    let (answers, stored_when_closed) = join(join_all(writes), async {
        db.close().await.expect("the writer closes");
        stored_drain_settings(&mut hub.open_db())
    })
    .await;
    assert_eq!(
        stored_when_closed, WRITES,
        "close returned before a write committed"
    );
    assert!(
        answers.iter().all(Result::is_ok),
        "every queued write was answered"
    );
    let refused = db.write(|_| Ok(())).await;
    assert!(
        matches!(refused, Err(m3shd::error::HubError::Unavailable(_))),
        "a write after the close is refused: {refused:?}"
    );
}

/// `m3shd serve` on `db` with this test's grace, logging to `log`.
async fn start(db: &Path, log: &Path) -> HubProcess {
    let mut command = m3shd();
    command
        .arg("serve")
        .env("M3SHDUP_TOKEN", TOKEN)
        .envs(crate::support::database_env(db))
        .env(
            "M3SHDUP_SHUTDOWN_GRACE_SECONDS",
            GRACE.as_secs().to_string(),
        )
        .env("M3SHDUP_ALERTS_ENABLED", "false")
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(log).unwrap());
    HubProcess::start(command).await
}

/// How the load's requests ended, as their clients saw them.
#[derive(Default)]
struct Tally {
    /// Ids of the tasks answered 201.
    created: Vec<i32>,
    /// Any other complete answer.
    other: Vec<u16>,
    /// Connections refused: the hub had closed its port. Fine.
    refused: usize,
    /// Requests reset or closed before a complete answer. Never fine.
    cut: Vec<String>,
}

/// `CLIENTS` clients creating tasks until their connection is refused.
struct Load {
    tally: Rc<RefCell<Tally>>,
    clients: Vec<actix_web::rt::task::JoinHandle<()>>,
}

impl Load {
    fn start(address: &str) -> Self {
        let tally = Rc::new(RefCell::new(Tally::default()));
        let clients = (0..CLIENTS)
            .map(|client| {
                let (address, tally) = (address.to_string(), tally.clone());
                actix_web::rt::spawn(create_until_refused(address, client, tally))
            })
            .collect();
        Self { tally, clients }
    }

    fn tally(&self) -> std::cell::Ref<'_, Tally> {
        self.tally.borrow()
    }

    async fn until_created(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.tally().created.len() < count {
            assert!(Instant::now() < deadline, "the load never got going");
            actix_web::rt::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits for every client to end.
    async fn finish(self) -> Tally {
        for client in self.clients {
            client.await.unwrap();
        }
        self.tally.take()
    }
}

/// Creates tasks one after another over keep-alive connections, reconnecting when the hub
/// answers `Connection: close`, until a connection is refused or a request is cut off.
async fn create_until_refused(address: String, client: usize, tally: Rc<RefCell<Tally>>) {
    let mut connection: Option<TcpStream> = None;
    for n in 0.. {
        let conn = match connection.take() {
            Some(conn) => conn,
            None => match TcpStream::connect(&address).await {
                Ok(conn) => conn,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    tally.borrow_mut().refused += 1;
                    return;
                }
                Err(e) => {
                    tally.borrow_mut().cut.push(format!("connect: {e}"));
                    return;
                }
            },
        };
        let body = format!(r#"{{"title": "load {client}.{n}", "prompt": "p"}}"#);
        let request = format!(
            "POST /api/tasks HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        match exchange(conn, request.as_bytes()).await {
            Ok((201, body, kept)) => {
                let task: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let id = task["id"].as_i64().expect("a created task has an id");
                tally.borrow_mut().created.push(id as i32);
                connection = kept;
            }
            Ok((status, _, kept)) => {
                tally.borrow_mut().other.push(status);
                connection = kept;
            }
            Err(e) => {
                tally.borrow_mut().cut.push(e);
                return;
            }
        }
    }
}

/// Sends one request and reads its whole answer: status, body, and the connection back
/// unless the hub said `Connection: close`.
async fn exchange(
    mut conn: TcpStream,
    request: &[u8],
) -> Result<(u16, Vec<u8>, Option<TcpStream>), String> {
    conn.write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut received = Vec::new();
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        read_more(&mut conn, &mut received).await?;
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))?;
    let length: usize = header("content-length:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no content-length in {head:?}"))?;
    while received.len() < head_end + length {
        read_more(&mut conn, &mut received).await?;
    }
    let close = header("connection:").is_some_and(|v| v == "close");
    let body = received[head_end..head_end + length].to_vec();
    Ok((status, body, (!close).then_some(conn)))
}

/// Reads what has arrived; the connection closing here means the answer was cut off.
async fn read_more(conn: &mut TcpStream, into: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    match conn.read(&mut chunk).await {
        Ok(0) => Err(format!("closed after {} bytes of the answer", into.len())),
        Ok(n) => {
            into.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(format!(
            "read after {} bytes of the answer: {e}",
            into.len()
        )),
    }
}

/// Follows `GET /api/stream` until the hub ends it; everything it carried, or how it broke.
async fn read_stream(base: String) -> Result<String, String> {
    let mut response = awc::Client::new()
        .get(format!("{base}/api/stream?token={TOKEN}"))
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .map_err(|e| format!("open: {e}"))?;
    let mut text = String::new();
    while let Some(chunk) = response.next().await {
        let chunk = chunk.map_err(|e| format!("after {} bytes: {e}", text.len()))?;
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    Ok(text)
}

/// The ids of every task in the database file of a stopped hub.
fn stored_task_ids(db: &Path) -> std::collections::HashSet<i32> {
    use diesel::prelude::*;
    use m3shd::db::schema::tasks;
    tasks::table
        .select(tasks::id)
        .load::<i32>(&mut open(db))
        .expect("the tasks read")
        .into_iter()
        .collect()
}

/// How many settings the writer test stored, in the database `conn` opens.
fn stored_drain_settings(conn: &mut m3shd::db::DbConnection) -> usize {
    use diesel::prelude::*;
    use m3shd::db::schema::settings;
    let count: i64 = settings::table
        .filter(settings::key.like("drain.%"))
        .count()
        .get_result(conn)
        .expect("the settings read");
    count as usize
}

/// A connection of our own to the database at `db` (see `support::database_url_at`).
fn open(db: &Path) -> m3shd::db::DbConnection {
    crate::support::open_database(&crate::support::database_url_at(db))
}
