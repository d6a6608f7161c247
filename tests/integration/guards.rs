//! Promises that guard the hub and its workers: the generated master token's file mode,
//! the daily cost cap on every way work comes in, federation hop counts and loops, and the
//! worker's shutdown grace, backoff and polling fallback (the real binaries).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use awc::http::Method;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::process::{m3shd, serve, terminate, wait_exit, worker_command, HubProcess};
use crate::support::{TestHub, MASTER, SOON};

const SHARED: &str = "shared-secret";
/// The token of a second peer, for tests that need to tell two apart.
const ORIGIN: &str = "origin-shared-secret";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// An HTTP call with no bearer token and the given headers; status and JSON body.
async fn send(
    base: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let mut request = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
        .request(method, format!("{base}{path}"));
    for (name, value) in headers {
        request = request.insert_header((*name, *value));
    }
    let mut response = request.send_body(body.to_vec()).await.expect("answered");
    let bytes = response.body().await.unwrap();
    (
        response.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A call from a federation peer: the shared token in `X-Federation-Token`.
async fn as_peer(hub: &TestHub, body: Value) -> (u16, Value) {
    as_peer_with(hub, SHARED, body).await
}

/// A relayed task from the peer whose shared token is `token`.
async fn as_peer_with(hub: &TestHub, token: &str, body: Value) -> (u16, Value) {
    send(
        &hub.base,
        Method::POST,
        "/api/federation/tasks",
        &[("X-Federation-Token", token)],
        body.to_string().as_bytes(),
    )
    .await
}

async fn add_peer(hub: &TestHub, name: &str, url: &str) {
    add_peer_with(hub, name, url, SHARED).await
}

/// Registers a peer with its own shared token (a hub knows its peers apart by token).
async fn add_peer_with(hub: &TestHub, name: &str, url: &str, token: &str) {
    let body = json!({ "name": name, "url": url, "token": token });
    hub.post("/api/admin/peers", MASTER, body).await.expect(201);
}

/// (id, hop_count, assign_to) of every task in a hub's database, fewest hops first.
fn hops(hub: &TestHub) -> Vec<(i32, i32, Option<String>)> {
    use diesel::prelude::*;
    use m3shd::db::schema::tasks;
    let mut conn = hub.open_db();
    tasks::table
        .select((tasks::id, tasks::hop_count, tasks::assign_to))
        .order((tasks::hop_count, tasks::id))
        .load(&mut conn)
        .unwrap()
}

fn task_count(hub: &TestHub) -> usize {
    hops(hub).len()
}

/// A stand-in federation peer: records each relayed task (its token header and body) and
/// accepts it as its task 1, 2, ...
struct FakePeer {
    url: String,
    received: Arc<Mutex<Vec<(String, Value)>>>,
}

fn fake_peer() -> FakePeer {
    let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let next = Arc::new(AtomicI64::new(1));
    let store = received.clone();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        let store = store.clone();
        let next = next.clone();
        App::new().route(
            "/api/federation/tasks",
            web::post().to(move |req: HttpRequest, body: web::Bytes| {
                let store = store.clone();
                let next = next.clone();
                async move {
                    let token = req
                        .headers()
                        .get("X-Federation-Token")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    store.lock().unwrap().push((token, body));
                    let id = next.fetch_add(1, Ordering::SeqCst);
                    HttpResponse::Created().json(json!({ "id": id, "status": "queued" }))
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    FakePeer { url, received }
}

/// Where a TCP relay sends its connections: nowhere (accepted and closed at once, each one
/// counted) or to a hub.
#[derive(Default)]
struct RelayState {
    upstream: Option<SocketAddr>,
    refused: Vec<Instant>,
    live: Vec<TcpStream>,
}

/// A port that is held for the whole test and is either dead (every connection is closed
/// as soon as it is accepted) or forwards to a hub. A worker pointed at it sees its hub
/// disappear and come back on the same address, with no port ever released.
struct TcpRelay {
    url: String,
    state: Arc<Mutex<RelayState>>,
}

impl TcpRelay {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state: Arc<Mutex<RelayState>> = Arc::default();
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let upstream = shared.lock().unwrap().upstream;
                let Some(upstream) = upstream else {
                    shared.lock().unwrap().refused.push(Instant::now());
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                {
                    let mut state = shared.lock().unwrap();
                    state.live.push(client.try_clone().unwrap());
                    state.live.push(server.try_clone().unwrap());
                }
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Self { url, state }
    }

    fn forward_to(&self, hub: &TestHub) {
        let addr = hub.base.trim_start_matches("http://").parse().unwrap();
        self.state.lock().unwrap().upstream = Some(addr);
    }

    /// The hub is gone: new connections are closed and open ones are cut.
    fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        state.upstream = None;
        for stream in state.live.drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn refused(&self) -> Vec<Instant> {
        self.state.lock().unwrap().refused.clone()
    }
}

/// Copies one direction of a relayed connection until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

/// A reverse proxy in front of a hub that answers every `/api/stream` with 503 (as a proxy
/// that does not pass event streams would) and passes everything else on. Counts the
/// refused streams.
fn proxy_without_streams(hub: &TestHub) -> (String, Arc<AtomicI64>) {
    let refused = Arc::new(AtomicI64::new(0));
    let counter = refused.clone();
    let upstream = hub.base.clone();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        let counter = counter.clone();
        let upstream = upstream.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let counter = counter.clone();
            let upstream = upstream.clone();
            async move {
                if req.path().starts_with("/api/stream") {
                    counter.fetch_add(1, Ordering::SeqCst);
                    return HttpResponse::ServiceUnavailable().finish();
                }
                let target = format!("{upstream}{}", req.uri());
                let mut forwarded = awc::Client::new().request(req.method().clone(), target);
                if let Some(auth) = req.headers().get("Authorization") {
                    forwarded = forwarded.insert_header(("Authorization", auth.clone()));
                }
                match forwarded.send_body(body).await {
                    Ok(mut answer) => {
                        let bytes = answer.body().limit(64 * 1024 * 1024).await.unwrap();
                        HttpResponse::build(answer.status())
                            .content_type("application/json")
                            .body(bytes)
                    }
                    Err(_) => HttpResponse::BadGateway().finish(),
                }
            }
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    (url, refused)
}

async fn status_of(hub: &TestHub, id: i64) -> String {
    hub.task_status(id).await["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

async fn online(hub: &TestHub, name: &str, within: Duration) -> bool {
    hub.eventually(within, || async {
        hub.get("/api/health", MASTER).await.body["agents"][name] == "online"
    })
    .await
}

fn running(child: &mut std::process::Child) -> bool {
    matches!(child.try_wait(), Ok(None))
}

/// A worker process, killed when dropped.
struct Worker(std::process::Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------
// 1. The generated master token
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_second_hub_on_one_postgresql_database_follows_the_first_and_forwards_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let (file, log) = (dir.path().join("hub.db"), dir.path().join("hub.log"));
    let first = serve(MASTER, &file, &log, &[]).await;
    let second = serve(MASTER, &file, &log, &[]).await;
    let client = awc::Client::new();
    let health = |base: String| {
        let client = client.clone();
        async move {
            let mut answer = client
                .get(format!("{base}/api/health"))
                .bearer_auth(MASTER)
                .send()
                .await
                .expect("the hub answers");
            answer.json::<Value>().await.unwrap()
        }
    };
    let (one, two) = (
        health(first.base.clone()).await,
        health(second.base.clone()).await,
    );
    if crate::support::postgres_server().is_none() {
        // Several processes may share a SQLite file, each on its own (schedules fire once
        // all the same: schedules::two_hub_processes_on_one_database_dispatch_each_occurrence_once).
        assert_eq!(
            (&one["role"], &two["role"]),
            (&json!("leader"), &json!("leader"))
        );
        assert_eq!((&one["epoch"], &two["epoch"]), (&Value::Null, &Value::Null));
        return;
    }
    assert_eq!(one["role"], "leader", "{one}");
    assert!(one["epoch"].as_i64().unwrap() >= 1, "{one}");
    assert_eq!(two["role"], "follower", "{two}");
    assert_eq!(two["epoch"], Value::Null, "{two}");
    assert_eq!(two["leader"], first.base.as_str(), "{two}");
    // A write through the follower is the leader's, answered as the leader answered it.
    let mut made = client
        .post(format!("{}/api/tasks", second.base))
        .bearer_auth(MASTER)
        .send_json(&json!({ "title": "via the follower", "prompt": "p" }))
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let id = made.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let mut read = client
        .get(format!("{}/api/tasks/{id}", first.base))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(
        read.json::<Value>().await.unwrap()["title"],
        "via the follower"
    );
    // So are its refusals.
    let refused = client
        .post(format!("{}/api/tasks", second.base))
        .bearer_auth("not a token")
        .send_json(&json!({ "title": "t", "prompt": "p" }))
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}

#[actix_web::test]
async fn a_hub_whose_leadership_was_taken_commits_nothing_more() {
    use diesel::prelude::*;
    use m3shd::db::schema::tasks;
    let hub = TestHub::spawn().await;
    hub.task(json!({ "title": "before", "prompt": "p" })).await;
    // What a hub process taking the database over does first: move the epoch on.
    hub.execute_sql("UPDATE leadership SET epoch = epoch + 1");
    let after = hub
        .post(
            "/api/tasks",
            MASTER,
            json!({ "title": "after", "prompt": "p" }),
        )
        .await;
    let titles = || -> Vec<String> {
        tasks::table
            .select(tasks::title)
            .order(tasks::id)
            .load(&mut hub.open_db())
            .unwrap()
    };
    if crate::support::postgres_server().is_none() {
        // SQLite has no leaders: the table is there only to keep both schemas one.
        after.expect(201);
        assert_eq!(titles(), ["before", "after"]);
        return;
    }
    let refused = after.expect(503);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("no longer leads"),
        "{refused}"
    );
    assert_eq!(
        titles(),
        ["before"],
        "nothing of the refused create was committed"
    );
    // It steps down: a follower now, forwarding to whoever leads (nobody, here).
    let health = hub.get("/api/health", MASTER).await.expect(200);
    assert_eq!(
        (&health["role"], &health["epoch"]),
        (&json!("follower"), &Value::Null),
        "{health}"
    );
    let forwarded = hub
        .post(
            "/api/tasks",
            MASTER,
            json!({ "title": "later", "prompt": "p" }),
        )
        .await
        .expect(503);
    assert!(
        forwarded["error"]
            .as_str()
            .unwrap()
            .contains("no hub process leads"),
        "{forwarded}"
    );
    // What is built into the binary it still serves itself, leader or none.
    for path in ["/", "/ui/app.js", "/api/docs", "/api/openapi.json"] {
        let served = hub.raw(Method::GET, path, None, None).await;
        assert_eq!(served.status, 200, "{path}: {}", served.body);
    }
    let document = hub
        .raw(Method::GET, "/api/openapi.json", None, None)
        .await
        .body;
    assert!(document["paths"]["/api/tasks"].is_object(), "{document}");
}

#[actix_web::test]
async fn a_first_start_without_a_token_keeps_the_generated_one_in_a_0600_file() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut command = m3shd();
        command
            .arg("serve")
            .current_dir(dir.path())
            .env("M3SHDUP_ALERTS_ENABLED", "false")
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::null());
        // With no umask at all, only the mode the hub asks for protects the file.
        // SAFETY: umask is async-signal-safe and touches only the child.
        unsafe {
            command.pre_exec(|| {
                libc::umask(0);
                Ok(())
            });
        }
        HubProcess::start(command)
    };
    let mut hub = start().await;
    let printed = hub.stdout.lock().unwrap().clone();
    let token = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("export M3SHDUP_TOKEN="))
        .unwrap_or_else(|| panic!("the token is printed at first start: {printed}"))
        .to_string();
    assert!(token.len() >= 32, "a long random token: {token:?}");

    let file = dir.path().join("data").join("master.token");
    let mode = std::fs::metadata(&file)
        .expect("data/master.token exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {:o}", mode & 0o777);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    assert!(dir.path().join("data").join("m3shd.db").exists());

    let auth = format!("Bearer {token}");
    let (status, _) = send(
        &hub.base,
        Method::GET,
        "/api/tasks",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 200, "the printed token is the master token");
    let (status, _) = send(
        &hub.base,
        Method::GET,
        "/api/tasks",
        &[("Authorization", "Bearer not-the-token")],
        b"",
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        hub.stop(Duration::from_secs(15)).await,
        "SIGTERM stops the hub"
    );

    // The next start uses the same token and neither prints nor rewrites it.
    let hub = start().await;
    let printed = hub.stdout.lock().unwrap().clone();
    assert!(
        !printed.contains(&token),
        "a later start does not print the token again: {printed}"
    );
    let (status, _) = send(
        &hub.base,
        Method::GET,
        "/api/tasks",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 200, "the kept token still works after a restart");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

// ---------------------------------------------------------------------------------------
// 2. The daily cost cap on webhooks and federation
// ---------------------------------------------------------------------------------------

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Spends `cost` on the hub through agent rex (who must hold the task it reports on).
async fn spend(hub: &TestHub, rex: &str, cost: f64) {
    let id = hub
        .task(json!({ "title": "spend", "prompt": "p", "assign_to": "rex" }))
        .await["id"]
        .as_i64()
        .unwrap();
    assert!(
        hub.eventually(SOON, || async {
            hub.task_status(id).await["assigned_to"] == "rex"
        })
        .await
    );
    hub.put(
        &format!("/api/tasks/{id}"),
        rex,
        json!({ "status": "done", "cost_usd": cost }),
    )
    .await
    .expect(200);
}

#[actix_web::test]
async fn past_the_daily_cost_cap_webhooks_and_federation_peers_create_nothing() {
    let hub = TestHub::spawn_with(|s| s.daily_cost_cap = 1.0).await;
    let rex = hub.agent("rex", &["research"], 4).await;
    let secret = hub
        .post("/api/admin/webhooks", MASTER, json!({ "name": "alarm" }))
        .await
        .expect(201)["secret"]
        .as_str()
        .unwrap()
        .to_string();
    add_peer(&hub, "hub-b", "http://127.0.0.1:9").await;
    let custom = br#"{"title": "Disk full", "prompt": "Free some space on db-1"}"#;
    let hook = [("X-Webhook-Secret", secret.as_str())];
    let github = br#"{"action": "opened", "issue": {"number": 7, "title": "Crash on start", "html_url": "https://example.test/i/7"}, "repository": {"full_name": "acme/app"}}"#;
    let signature = sign(&secret, github);
    let relayed = json!({ "title": "From a peer", "prompt": "p", "hop_count": 1 });

    // Under the cap, each way in creates a task.
    let (status, body) = send(
        &hub.base,
        Method::POST,
        "/api/webhooks/alarm",
        &hook,
        custom,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        &hub.base,
        Method::POST,
        "/api/webhooks/alarm/github",
        &[
            ("X-GitHub-Event", "issues"),
            ("X-Hub-Signature-256", &signature),
            ("X-GitHub-Delivery", "before"),
        ],
        github,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = as_peer(&hub, relayed.clone()).await;
    assert_eq!(status, 201, "{body}");
    let before = task_count(&hub);

    spend(&hub, &rex, 1.25).await;
    let summary = hub
        .get("/api/admin/analytics/summary", MASTER)
        .await
        .expect(200);
    assert_eq!(summary["cost_cap_reached"], true, "{summary}");
    let after_spending = task_count(&hub);
    assert_eq!(after_spending, before + 1);

    let (status, body) = send(
        &hub.base,
        Method::POST,
        "/api/webhooks/alarm",
        &hook,
        custom,
    )
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (429, json!("daily cost cap reached")),
        "a webhook past the cap"
    );
    let (status, body) = send(
        &hub.base,
        Method::POST,
        "/api/webhooks/alarm/github",
        &[
            ("X-GitHub-Event", "issues"),
            ("X-Hub-Signature-256", &signature),
            ("X-GitHub-Delivery", "after"),
        ],
        github,
    )
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (429, json!("daily cost cap reached")),
        "a GitHub delivery past the cap"
    );
    let (status, body) = as_peer(&hub, relayed).await;
    assert_eq!(
        (status, body["error"].clone()),
        (429, json!("daily cost cap reached")),
        "a peer's task past the cap"
    );
    assert_eq!(
        task_count(&hub),
        after_spending,
        "nothing was created past the cap"
    );
}

#[actix_web::test]
async fn a_capped_hub_relays_nothing_to_its_peers() {
    let peer = fake_peer();
    let hub = TestHub::spawn_with(|s| {
        s.daily_cost_cap = 1.0;
        s.federation_relay = true;
    })
    .await;
    let rex = hub.agent("rex", &["research"], 2).await;
    add_peer(&hub, "remote", &peer.url).await;
    spend(&hub, &rex, 1.5).await;
    let commander = hub.token("cmd", "commander").await;
    let refused = hub
        .post(
            "/api/tasks",
            &commander,
            json!({ "title": "Render", "prompt": "p", "required_capability": "gpu" }),
        )
        .await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    let (status, body) = as_peer(
        &hub,
        json!({ "title": "t", "prompt": "p", "required_capability": "gpu", "hop_count": 1 }),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        peer.received.lock().unwrap().len(),
        0,
        "work refused here was not handed to a peer either"
    );
}

// ---------------------------------------------------------------------------------------
// 3. Federation: hop counts and loops
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_relayed_task_carries_one_more_hop_and_stops_being_relayed_at_the_limit() {
    let peer = fake_peer();
    let hub = TestHub::spawn_with(|s| s.federation_relay = true).await;
    add_peer(&hub, "remote", &peer.url).await;
    // The peer that relays tasks here; nothing is ever relayed straight back to it.
    let origin = fake_peer();
    // Named after "remote", so a task of this hub's own goes to "remote" first.
    add_peer_with(&hub, "upstream", &origin.url, ORIGIN).await;
    let _rex = hub.agent("rex", &["research"], 1).await;

    // Created here (hop 0): relayed with hop 1, the shared token, and the task itself.
    let created = hub
        .task(json!({ "title": "Render", "prompt": "render it", "required_capability": "gpu" }))
        .await;
    assert_eq!(created["assign_to"], "peer:remote");
    {
        let received = peer.received.lock().unwrap();
        assert_eq!(received.len(), 1, "{received:?}");
        let (token, body) = &received[0];
        assert_eq!(token, SHARED);
        assert_eq!(body["hop_count"], 1, "{body}");
        assert_eq!(body["prompt"], "render it");
        assert_eq!(body["required_capability"], "gpu");
    }

    // Relayed here with hop 2: relayed on with hop 3.
    let (status, body) = as_peer_with(
        &hub,
        ORIGIN,
        json!({ "title": "t2", "prompt": "p", "required_capability": "gpu", "hop_count": 2 }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["assign_to"], "peer:remote");
    {
        let received = peer.received.lock().unwrap();
        assert_eq!(received.len(), 2);
        assert_eq!(received[1].1["hop_count"], 3, "{:?}", received[1]);
    }

    // Relayed here with hop 3 (the limit): kept here, not relayed a fourth time.
    let (status, body) = as_peer_with(
        &hub,
        ORIGIN,
        json!({ "title": "t3", "prompt": "p", "required_capability": "gpu", "hop_count": 3 }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["assign_to"].is_null(), "{body}");
    assert_eq!(body["status"], "queued");
    assert_eq!(peer.received.lock().unwrap().len(), 2);
    assert!(
        origin.received.lock().unwrap().is_empty(),
        "never sent back"
    );
    let (status, body) = as_peer_with(
        &hub,
        ORIGIN,
        json!({ "title": "t4", "prompt": "p", "required_capability": "gpu", "hop_count": 4 }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        hops(&hub).iter().map(|(_, h, _)| *h).collect::<Vec<_>>(),
        vec![0, 2, 3],
        "each task keeps the hop count it arrived with"
    );
}

#[actix_web::test]
async fn a_relay_loop_between_hubs_ends_at_the_hop_limit() {
    let a = TestHub::spawn_with(|s| s.federation_relay = true).await;
    let b = TestHub::spawn_with(|s| s.federation_relay = true).await;
    let c = TestHub::spawn_with(|s| s.federation_relay = true).await;
    // Each pair shares its own token; a hub never relays a task straight back to the hub
    // it came from, so a loop needs three: A → B → C → A.
    add_peer_with(&a, "hub-b", &b.base, "ab-secret").await;
    add_peer_with(&b, "hub-a", &a.base, "ab-secret").await;
    add_peer_with(&b, "hub-c", &c.base, "bc-secret").await;
    add_peer_with(&c, "hub-b", &b.base, "bc-secret").await;
    add_peer_with(&c, "hub-a", &a.base, "ca-secret").await;
    add_peer_with(&a, "hub-c", &c.base, "ca-secret").await;
    // No hub has a gpu agent, so each passes the task on until the hop limit (3).
    let started = Instant::now();
    let created = a
        .task(json!({ "title": "Render", "prompt": "p", "required_capability": "gpu" }))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the loop ended by itself"
    );
    assert_eq!(created["assign_to"], "peer:hub-b");
    let on_a = hops(&a);
    let on_b = hops(&b);
    let on_c = hops(&c);
    let counts =
        |on: &[(i32, i32, Option<String>)]| on.iter().map(|(_, h, _)| *h).collect::<Vec<_>>();
    assert_eq!(
        counts(&on_a),
        vec![0, 3],
        "A holds the original and the copy back from C"
    );
    assert_eq!(counts(&on_b), vec![1], "{on_b:?}");
    assert_eq!(counts(&on_c), vec![2], "{on_c:?}");
    // Every copy but the last is pinned to the next hub (never the one it came from).
    assert_eq!(on_b[0].2.as_deref(), Some("peer:hub-c"));
    assert_eq!(on_c[0].2.as_deref(), Some("peer:hub-a"));
    assert_eq!(on_a[1].2, None, "the copy at the hop limit is not relayed");
    let last = a.task_status(i64::from(on_a[1].0)).await;
    assert_eq!(
        (last["status"].as_str(), last["created_by"].as_str()),
        (Some("queued"), Some("peer:hub-c"))
    );
}

#[actix_web::test]
async fn a_result_travels_back_over_every_hop() {
    let a = TestHub::spawn_with(|s| s.federation_relay = true).await;
    let b = TestHub::spawn_with(|s| s.federation_relay = true).await;
    let c = TestHub::spawn().await;
    add_peer_with(&a, "hub-b", &b.base, "a-b").await;
    add_peer_with(&b, "hub-a", &a.base, "a-b").await;
    // B tries its peers by name: "gpu-farm" (C) before "hub-a" (where the task came from).
    add_peer_with(&b, "gpu-farm", &c.base, "b-c").await;
    add_peer_with(&c, "hub-b", &b.base, "b-c").await;
    let gpu = c.agent("gpu", &["gpu"], 1).await;
    let created = a
        .task(json!({ "title": "Render", "prompt": "p", "required_capability": "gpu" }))
        .await;
    assert_eq!(created["assign_to"], "peer:hub-b");
    let on_c = hops(&c);
    assert_eq!(on_c.len(), 1, "the task reached C: {on_c:?}");
    assert_eq!(on_c[0].1, 2);
    c.put(
        &format!("/api/tasks/{}", on_c[0].0),
        &gpu,
        json!({ "status": "done", "output": "rendered" }),
    )
    .await
    .expect(200);
    let b_id = i64::from(hops(&b)[0].0);
    assert!(
        b.eventually(Duration::from_secs(5), || async {
            status_of(&b, b_id).await == "done"
        })
        .await,
        "C reported to B"
    );
    let id = created["id"].as_i64().unwrap();
    let back = a
        .eventually(Duration::from_secs(10), || async {
            status_of(&a, id).await == "done"
        })
        .await;
    assert!(
        back,
        "B passed the result on to A: {}",
        a.task_status(id).await
    );
    assert_eq!(a.task_status(id).await["output"], "rendered");
}

// ---------------------------------------------------------------------------------------
// 4. The worker: grace on SIGTERM, backoff, polling
// ---------------------------------------------------------------------------------------

/// A worker whose runs leave `<dir>/started-<id>` and then take `seconds`.
async fn slow_worker(hub: &TestHub, name: &str, seconds: f64, extra: &[&str]) -> Worker {
    let token = hub.token(name, "worker").await;
    let exec = format!(
        "touch {}/started-$M3SHD_TASK_ID; sleep {seconds}; echo finished",
        hub.dir.path().display()
    );
    let child = worker_command(&hub.base, &token, name, &exec)
        .args(extra)
        .spawn()
        .expect("the worker starts");
    let worker = Worker(child);
    assert!(
        online(hub, name, Duration::from_secs(10)).await,
        "{name} registered"
    );
    worker
}

/// Worker `w1` running a task of `seconds`, just sent SIGTERM: the worker, the task id and
/// when the signal went.
async fn stopped_while_running(
    hub: &TestHub,
    seconds: f64,
    extra: &[&str],
) -> (Worker, i64, Instant) {
    let worker = slow_worker(hub, "w1", seconds, extra).await;
    let id = hub.task(json!({ "title": "first", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    assert!(
        hub.eventually(Duration::from_secs(10), || async {
            status_of(hub, id).await == "running"
        })
        .await
    );
    let signalled = Instant::now();
    terminate(&worker.0);
    (worker, id, signalled)
}

#[actix_web::test]
async fn on_sigterm_a_task_that_finishes_within_the_grace_period_is_reported_done() {
    let hub = TestHub::spawn().await;
    let (mut worker, first, signalled) =
        stopped_while_running(&hub, 2.0, &["--grace", "20", "--max-concurrent", "2"]).await;
    // While it stops, the worker takes no new work: a task assigned to it now never runs
    // there and is handed back.
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let second = hub.task(json!({ "title": "second", "prompt": "p" })).await;
    let second_id = second["id"].as_i64().unwrap();
    assert_eq!(second["assigned_to"], "w1", "the hub still offers it work");
    assert!(
        wait_exit(&mut worker.0, Duration::from_secs(20)).await,
        "the worker exits once its task is done"
    );
    let done = hub.task_status(first).await;
    assert_eq!(
        (
            done["status"].as_str(),
            done["output"].as_str(),
            done["attempts"].as_i64()
        ),
        (Some("done"), Some("finished\n"), Some(1)),
        "the running task finished and was reported: {done}"
    );
    assert!(
        signalled.elapsed() >= Duration::from_millis(1500),
        "the worker waited for its task ({:?})",
        signalled.elapsed()
    );
    assert!(
        !hub.dir.path().join(format!("started-{second_id}")).exists(),
        "no new work was started after SIGTERM"
    );
    let second = hub.task_status(second_id).await;
    assert_eq!(
        (second["status"].as_str(), second["reason"].as_str()),
        (Some("queued"), Some("worker_shutdown")),
        "work assigned during the stop is handed back: {second}"
    );
}

#[actix_web::test]
async fn on_sigterm_a_task_that_outlives_the_grace_period_is_handed_back_when_it_ends() {
    let hub = TestHub::spawn().await;
    let (mut worker, id, signalled) = stopped_while_running(&hub, 60.0, &["--grace", "3"]).await;
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    assert!(running(&mut worker.0), "the worker waits out its grace");
    assert_eq!(
        status_of(&hub, id).await,
        "running",
        "the task keeps running within the grace period"
    );
    assert!(
        wait_exit(&mut worker.0, Duration::from_secs(20)).await,
        "the worker exits after the grace period"
    );
    assert!(
        signalled.elapsed() >= Duration::from_secs(3),
        "exited after {:?}, before its 3 s grace",
        signalled.elapsed()
    );
    let back = hub.task_status(id).await;
    assert_eq!(
        (back["status"].as_str(), back["reason"].as_str()),
        (Some("queued"), Some("worker_shutdown")),
        "{back}"
    );
}

#[actix_web::test]
async fn a_worker_keeps_retrying_an_unreachable_hub_with_growing_waits() {
    let hub = TestHub::spawn().await;
    let relay = TcpRelay::start();
    let token = hub.token("w1", "worker").await;
    let mut worker = Worker(
        worker_command(&relay.url, &token, "w1", "echo ok")
            .spawn()
            .expect("the worker starts"),
    );
    // The hub is unreachable: every connection is closed as soon as it is accepted.
    actix_web::rt::time::sleep(Duration::from_secs(6)).await;
    assert!(running(&mut worker.0), "the worker keeps running");
    let tries = relay.refused();
    let gaps: Vec<Duration> = tries.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        (3..=10).contains(&tries.len()),
        "it keeps trying without spinning: {} tries in 6 s, gaps {gaps:?}",
        tries.len()
    );
    let (first, last) = (gaps[0], *gaps.last().unwrap());
    assert!(
        last >= first * 2 && last >= Duration::from_millis(900),
        "the wait grows: {gaps:?}"
    );

    // The hub comes back on the same address: the worker registers and works.
    relay.forward_to(&hub);
    assert!(
        online(&hub, "w1", Duration::from_secs(40)).await,
        "registered once the hub answered"
    );
    let id = hub.task(json!({ "title": "t", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    assert!(
        hub.eventually(Duration::from_secs(15), || async {
            status_of(&hub, id).await == "done"
        })
        .await,
        "the worker ran a task after the hub came back"
    );

    // The hub goes away again (open connections cut too), and comes back.
    relay.cut();
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    assert!(
        running(&mut worker.0),
        "losing the hub does not stop the worker"
    );
    relay.forward_to(&hub);
    let id = hub.task(json!({ "title": "t2", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    assert!(
        hub.eventually(Duration::from_secs(40), || async {
            status_of(&hub, id).await == "done"
        })
        .await,
        "the worker picked up work again: {}",
        hub.task_status(id).await
    );
}

#[actix_web::test]
async fn without_the_event_stream_a_worker_finds_its_work_by_polling() {
    let hub = TestHub::spawn().await;
    let (url, refused_streams) = proxy_without_streams(&hub);
    let token = hub.token("w1", "worker").await;
    let _worker = Worker(
        worker_command(&url, &token, "w1", "echo polled")
            .spawn()
            .expect("the worker starts"),
    );
    assert!(online(&hub, "w1", Duration::from_secs(10)).await);
    let id = hub.task(json!({ "title": "t", "prompt": "p" })).await["id"]
        .as_i64()
        .unwrap();
    assert!(
        hub.eventually(Duration::from_secs(15), || async {
            status_of(&hub, id).await == "done"
        })
        .await,
        "the task was found and run: {}",
        hub.task_status(id).await
    );
    assert_eq!(hub.task_status(id).await["output"], "polled\n");
    assert!(
        refused_streams.load(Ordering::SeqCst) >= 1,
        "the worker did ask for the event stream and was refused"
    );
    assert_eq!(hub.subscribers().await, 0, "no stream reached the hub");
}
