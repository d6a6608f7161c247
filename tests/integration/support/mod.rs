//! Test support: a real hub on a free loopback port with its own temporary SQLite file
//! (or, when the suite runs against PostgreSQL, its own database on that server), an HTTP
//! client with one helper per common call, and an SSE reader.

#![allow(dead_code)]

use std::time::Duration;

use actix_web::web;
use awc::http::{header::HeaderMap, Method, StatusCode};
use futures_util::StreamExt;
use m3shd::settings::{Secret, Secrets, Settings};
use m3shd::startup::{Application, Hub};
use serde_json::{json, Value};

pub mod process;
pub mod routes;

pub const MASTER: &str = "test-master-token";

/// A connection to the database at `url`, waiting up to 10 s for a writer's lock.
pub fn open_database(url: &str) -> m3shd::db::DbConnection {
    use diesel::RunQueryDsl;
    use m3shd::db::DbConnection;
    let mut conn = m3shd::db::connect(m3shd::settings::Database::of(url))
        .unwrap_or_else(|e| panic!("the database {url} opens: {e}"));
    if let DbConnection::Sqlite(sqlite) = &mut conn {
        diesel::sql_query("PRAGMA busy_timeout = 10000")
            .execute(sqlite)
            .unwrap();
    }
    conn
}

/// Every file the hub keeps at rest for a test in `dir`: each file in `dir` (SQLite's
/// database, WAL and shared memory, logs) and, against PostgreSQL, the files of the hub's
/// database in the server's data directory, after a checkpoint has written every
/// committed change there.
///
/// Runs off the test's thread: a checkpoint can take a while on a busy server, and the
/// hub serves from this thread meanwhile.
pub async fn files_at_rest(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut folders = vec![dir.to_path_buf()];
    let named = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(POSTGRES_URL));
    for name in named.collect::<Vec<_>>() {
        let url = std::fs::read_to_string(name).unwrap();
        let database = actix_web::rt::task::spawn_blocking(move || postgres_database_files(&url));
        folders.push(database.await.expect("the checkpoint ran"));
    }
    folders
        .iter()
        .flat_map(|folder| std::fs::read_dir(folder).unwrap())
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect()
}

/// The bytes of [`files_at_rest`], as text.
pub async fn bytes_at_rest(dir: &std::path::Path) -> String {
    let mut bytes = Vec::new();
    for file in files_at_rest(dir).await {
        bytes.extend(std::fs::read(file).unwrap());
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The folder of the database at `url` in the test server's data directory, once a
/// checkpoint has flushed every committed change to it.
fn postgres_database_files(url: &str) -> std::path::PathBuf {
    use diesel::sql_types::Integer;
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Oid {
        #[diesel(sql_type = Integer)]
        oid: i32,
    }
    let data = std::env::var("M3SHD_TEST_POSTGRES_DATA")
        .expect("M3SHD_TEST_POSTGRES_DATA names the server's data directory (.ci/with-postgres)");
    let mut conn = open_database(url);
    diesel::sql_query("CHECKPOINT").execute(&mut conn).unwrap();
    let oid: Oid = diesel::sql_query(
        "SELECT oid::integer AS oid FROM pg_database WHERE datname = current_database()",
    )
    .get_result(&mut conn)
    .unwrap();
    std::path::Path::new(&data)
        .join("base")
        .join(oid.oid.to_string())
}

/// A running hub for one test.
pub struct TestHub {
    pub base: String,
    pub hub: web::Data<Hub>,
    pub dir: tempfile::TempDir,
    client: awc::Client,
}

/// A response: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        self.body
    }
}

/// The PostgreSQL server the suite runs against (`.ci/with-postgres` sets it), if any.
pub fn postgres_server() -> Option<String> {
    std::env::var("M3SHD_TEST_POSTGRES")
        .ok()
        .filter(|url| !url.is_empty())
}

/// What a test's database file is called on PostgreSQL: `<file>.postgres-url` holds the
/// URL of the database that stands for it.
const POSTGRES_URL: &str = ".postgres-url";

fn postgres_url_file(file: &std::path::Path) -> std::path::PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(POSTGRES_URL);
    name.into()
}

/// The database of a test hub kept in `dir` (its `hub.db`).
pub fn database_url(dir: &std::path::Path) -> String {
    database_url_at(&dir.join("hub.db"))
}

/// The database a test keeps at `file`: that SQLite file, or, against PostgreSQL, a
/// database of its own on that server, made on first use and named in
/// `<file>.postgres-url`, so a hub restarted on `file` finds its data again.
pub fn database_url_at(file: &std::path::Path) -> String {
    let Some(server) = postgres_server() else {
        return file.to_string_lossy().into_owned();
    };
    let named = postgres_url_file(file);
    if let Ok(url) = std::fs::read_to_string(&named) {
        return url;
    }
    use diesel::RunQueryDsl;
    let name = format!("m3shd_{}", uuid::Uuid::new_v4().simple());
    let mut admin = server_admin(&server);
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .expect("a database of the test's own");
    let url = format!("{server}/{name}");
    std::fs::write(&named, &url).expect("the database's name is kept");
    url
}

/// The variables that put a hub process on the database a test keeps at `file` (see
/// [`database_url_at`]), with its other files (event log, archives) beside it.
pub fn database_env(file: &std::path::Path) -> [(&'static str, String); 2] {
    let folder = file.parent().expect("a file in a folder");
    [
        ("M3SHDUP_DATABASE_URL", database_url_at(file)),
        ("M3SHDUP_DATA_DIR", folder.to_string_lossy().into_owned()),
    ]
}

/// A connection to the test server's maintenance database, to make databases on it.
fn server_admin(server: &str) -> diesel::PgConnection {
    use diesel::Connection;
    diesel::PgConnection::establish(&format!("{server}/postgres"))
        .expect("the test PostgreSQL server answers")
}

/// A new database on the test server with the one at `url` as its template. A template
/// must have no other sessions, so the running hub's are cut (it reconnects afterwards)
/// and held off while the copy is made.
fn copy_postgres_database(url: &str) -> String {
    use diesel::RunQueryDsl;
    let (server, name) = url.rsplit_once('/').expect("a database URL");
    let copy = format!("m3shd_{}", uuid::Uuid::new_v4().simple());
    let mut admin = server_admin(server);
    for statement in [
        format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
        format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"),
        format!("CREATE DATABASE {copy} TEMPLATE {name}"),
        format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
    ] {
        diesel::sql_query(&statement)
            .execute(&mut admin)
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    format!("{server}/{copy}")
}

/// The migrations of the backend a test hub runs on, as files.
pub fn migrations_dir() -> String {
    let backend = if postgres_server().is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    format!("{}/migrations/{backend}", env!("CARGO_MANIFEST_DIR"))
}

pub fn test_settings(dir: &std::path::Path) -> Settings {
    let mut settings = Settings::defaults().expect("defaults parse");
    settings.bind = "127.0.0.1:0".into();
    settings.database_url = database_url(dir);
    // The hub's other files (event log, archives, agents file) stay in the test's folder
    // whatever the database.
    settings.data_dir = dir.to_string_lossy().into_owned();
    settings.http_workers = 1;
    settings.sqlite_synchronous = "NORMAL".into();
    // Tests that check alerts point them at their own receiver.
    settings.alerts_enabled = false;
    settings
}

impl TestHub {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = test_settings(dir.path());
        configure(&mut settings);
        Self::start(dir, settings, "test-encryption-key", None).await
    }

    /// A hub on an existing directory (its database) with the given encryption keys.
    pub async fn start(
        dir: tempfile::TempDir,
        settings: Settings,
        key: &str,
        legacy: Option<&str>,
    ) -> Self {
        // `RUST_LOG=m3shd=debug cargo test … -- --nocapture` shows what the hub logs.
        if std::env::var_os("RUST_LOG").is_some() {
            m3shd::telemetry::init("warn");
        }
        let secrets = Secrets {
            master_token: Secret::new(MASTER),
            encrypt_key: Some(Secret::new(key)),
            legacy_encrypt_key: legacy.map(Secret::new),
        };
        let app = Application::build(settings, secrets)
            .await
            .expect("hub starts");
        let base = format!("http://127.0.0.1:{}", app.port());
        let hub = app.hub();
        actix_web::rt::spawn(app.run_until_stopped());
        // An idle connection is reused for 2 s only: the hub closes one idle for its
        // keep-alive of 5 s, and a test may pause that long (a PostgreSQL checkpoint).
        let client = awc::Client::builder()
            .connector(awc::Connector::new().conn_keep_alive(Duration::from_secs(2)))
            .timeout(Duration::from_secs(10))
            .finish();
        Self {
            base,
            hub,
            dir,
            client,
        }
    }

    pub fn db_path(&self) -> std::path::PathBuf {
        self.dir.path().join("hub.db")
    }

    /// A connection of the test's own to this (running) hub's database, waiting up to 10 s
    /// for the hub's writer when it holds the lock.
    pub fn open_db(&self) -> m3shd::db::DbConnection {
        open_database(&database_url(self.dir.path()))
    }

    /// Runs one SQL statement on this hub's database straight, on a connection closed
    /// after it (the hub sees the change on its next read of those rows); how many rows it
    /// changed.
    pub fn execute_sql(&self, statement: &str) -> usize {
        use diesel::RunQueryDsl;
        diesel::sql_query(statement)
            .execute(&mut self.open_db())
            .unwrap_or_else(|e| panic!("{statement}: {e}"))
    }

    /// A consistent copy of this (running) hub's database, never made by copying files a
    /// live writer may be changing; its URL. On SQLite the file `to`, written by SQLite
    /// itself (`VACUUM INTO`); on PostgreSQL a new database with this one as template.
    pub fn copy_database(&self, to: &std::path::Path) -> String {
        let url = database_url(self.dir.path());
        if postgres_server().is_some() {
            return copy_postgres_database(&url);
        }
        let target = to.to_str().unwrap().replace('\'', "''");
        let _ = self.execute_sql(&format!("VACUUM INTO '{target}'"));
        to.to_string_lossy().into_owned()
    }

    /// A copy of this (running) hub's database as the database of a hub started in `dir`.
    pub fn snapshot_into(&self, dir: &std::path::Path) {
        let url = self.copy_database(&dir.join("hub.db"));
        if postgres_server().is_some() {
            let named = postgres_url_file(&dir.join("hub.db"));
            std::fs::write(named, url).expect("the copy's name is kept");
        }
    }

    /// Sends a request with an optional bearer token and an optional raw body.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            request = request.insert_header(("Authorization", format!("Bearer {token}")));
        }
        let mut response = match body {
            Some(bytes) => request.send_body(bytes).await,
            None => request.send().await,
        }
        .expect("request reaches the hub");
        let bytes = response.body().limit(16 * 1024 * 1024).await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status: response.status(),
            body,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Reply {
        self.raw(
            method,
            path,
            Some(token),
            body.map(|b| b.to_string().into_bytes()),
        )
        .await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, token, None).await
    }

    /// Issues a token for `agent_id` with a role preset; returns the raw token.
    pub async fn token(&self, agent_id: &str, role: &str) -> String {
        let body = self
            .post(
                "/api/admin/tokens",
                MASTER,
                json!({ "agent_id": agent_id, "name": agent_id, "role": role }),
            )
            .await
            .expect(201);
        body["token"]
            .as_str()
            .expect("token in response")
            .to_string()
    }

    /// Issues a worker token and registers the agent with these capabilities.
    pub async fn agent(
        &self,
        agent_id: &str,
        capabilities: &[&str],
        max_concurrent: i32,
    ) -> String {
        let token = self.token(agent_id, "worker").await;
        let body = json!({ "name": agent_id, "capabilities": capabilities, "max_concurrent": max_concurrent });
        self.post(&format!("/api/agents/{agent_id}/register"), &token, body)
            .await
            .expect(200);
        token
    }

    /// Creates a task as the master token; returns the created task.
    pub async fn task(&self, body: Value) -> Value {
        self.post("/api/tasks", MASTER, body).await.expect(201)
    }

    pub async fn task_status(&self, id: i64) -> Value {
        self.get(&format!("/api/tasks/{id}"), MASTER)
            .await
            .expect(200)
    }

    /// Opens `GET /api/stream` with `?token=`.
    pub async fn stream(&self, token: &str) -> Sse {
        self.stream_with(&format!("/api/stream?token={token}"), None)
            .await
    }

    pub async fn stream_with(&self, path: &str, last_event_id: Option<u64>) -> Sse {
        let resume: Vec<(&str, String)> = last_event_id
            .map(|id| ("Last-Event-ID", id.to_string()))
            .into_iter()
            .collect();
        self.stream_with_headers(path, &resume).await
    }

    /// Opens an event stream sending these extra headers (`Last-Event-ID`, a session
    /// `Cookie`, …).
    pub async fn stream_with_headers(&self, path: &str, headers: &[(&str, String)]) -> Sse {
        Sse::open(&self.client, &format!("{}{}", self.base, path), headers).await
    }

    /// Polls `check` every 20 ms until it holds or `within` passes.
    pub async fn eventually<F, Fut>(&self, within: Duration, mut check: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if check().await {
                return true;
            }
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    pub async fn subscribers(&self) -> u64 {
        self.get("/api/health", MASTER).await.expect(200)["subscribers"]
            .as_u64()
            .unwrap_or(u64::MAX)
    }
}

/// The token two test hubs share as peers.
pub const PEER_TOKEN: &str = "shared-secret";

/// Two hubs that know each other as peers (A calls B `hub-b`, B calls A `hub-a`): A relays
/// what no agent of its own serves, B relays nothing.
pub async fn two_hubs() -> (TestHub, TestHub) {
    let a = TestHub::spawn_with(|s| s.federation_relay = true).await;
    let b = TestHub::spawn().await;
    for (hub, name, peer) in [(&a, "hub-b", &b), (&b, "hub-a", &a)] {
        let body = json!({ "name": name, "url": peer.base, "token": PEER_TOKEN });
        hub.post("/api/admin/peers", MASTER, body).await.expect(201);
    }
    (a, b)
}

/// One request to `base` + `path` with these headers and, if there is one, a JSON body
/// (sent with `Content-Type: application/json`), on a client that waits at most
/// `timeout`: the reply and the response's headers.
pub async fn send_json(
    base: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
    timeout: Duration,
) -> (Reply, HeaderMap) {
    let mut headers = headers.to_vec();
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let body = body.map(|body| body.to_string().into_bytes());
    send_bytes(base, method, path, &headers, body, timeout)
        .await
        .expect("the hub answers")
}

/// One request to `base` + `path` with these headers and, if there is one, exactly these
/// body bytes, on a client that waits at most `timeout`: the reply and the response's
/// headers, or what went wrong when no whole answer came back (the hub was down, or died
/// while answering).
pub async fn send_bytes(
    base: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<(Reply, HeaderMap), String> {
    let mut request = awc::Client::builder()
        .timeout(timeout)
        .finish()
        .request(method, format!("{base}{path}"));
    for &header in headers {
        request = request.insert_header(header);
    }
    let mut response = match body {
        Some(bytes) => request.send_body(bytes).await,
        None => request.send().await,
    }
    .map_err(|e| format!("no answer: {e}"))?;
    let bytes = response
        .body()
        .limit(16 * 1024 * 1024)
        .await
        .map_err(|e| format!("the body broke off: {e}"))?;
    let reply = Reply {
        status: response.status(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    Ok((reply, response.headers().clone()))
}

/// Heartbeats for one agent every 200 ms until dropped: holds an agent online while a
/// test sets up, so a short `heartbeat_timeout` starts counting only when the test drops it.
pub struct Heartbeats(actix_web::rt::task::JoinHandle<()>);

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub fn keep_alive(hub: &TestHub, agent_id: &str, token: &str) -> Heartbeats {
    let url = format!("{}/api/agents/{agent_id}/heartbeat", hub.base);
    let auth = format!("Bearer {token}");
    Heartbeats(actix_web::rt::spawn(async move {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(2))
            .finish();
        loop {
            let _ = client
                .post(&url)
                .insert_header(("Authorization", auth.as_str()))
                .send_json(&json!({}))
                .await;
            actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        }
    }))
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub id: Option<u64>,
    pub data: Value,
}

/// An open event stream.
pub struct Sse {
    response:
        Box<dyn futures_util::Stream<Item = Result<web::Bytes, awc::error::PayloadError>> + Unpin>,
    buffer: String,
}

impl Sse {
    /// Opens the event stream at `url` with these extra headers.
    pub async fn open(client: &awc::Client, url: &str, headers: &[(&str, String)]) -> Self {
        let mut request = client.get(url).timeout(Duration::from_secs(3600));
        for (name, value) in headers {
            request = request.insert_header((*name, value.as_str()));
        }
        let response = request.send().await.expect("stream opens");
        assert_eq!(response.status(), 200, "stream refused");
        Sse {
            response: Box::new(response),
            buffer: String::new(),
        }
    }

    /// The next event, or `None` if none arrives within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(event) = self.parse_one() {
                return Some(event);
            }
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let chunk = actix_web::rt::time::timeout(left, self.response.next())
                .await
                .ok()??
                .ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event named `name` (others are skipped).
    pub async fn next_named(&mut self, name: &str, within: Duration) -> Option<Event> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let event = self.next(left).await?;
            if event.name == name {
                return Some(event);
            }
        }
    }

    fn parse_one(&mut self) -> Option<Event> {
        let end = self.buffer.find("\n\n")?;
        let block: String = self.buffer.drain(..end + 2).collect();
        let mut event = Event {
            name: "message".into(),
            id: None,
            data: Value::Null,
        };
        let mut has_data = false;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event.name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("id:") {
                event.id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("data:") {
                event.data =
                    serde_json::from_str(v.trim()).unwrap_or(Value::String(v.trim().into()));
                has_data = true;
            }
        }
        if has_data {
            Some(event)
        } else {
            self.parse_one()
        }
    }
}

/// Two seconds: long enough for anything the hub does on loopback.
pub const SOON: Duration = Duration::from_secs(2);

/// What a [`receiver`] was sent: (path, `Title` header, body).
pub type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>;

/// A stand-in for ntfy, Slack or a webhook on a free loopback port: records every call;
/// a call to `/hang` is answered only after a minute (a receiver that hangs).
pub fn receiver() -> (String, Received) {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
    let received: Received = Default::default();
    let store = received.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        let store = store.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let store = store.clone();
            async move {
                if req.path() == "/hang" {
                    actix_web::rt::time::sleep(Duration::from_secs(60)).await;
                }
                let title = req
                    .headers()
                    .get("Title")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let body = String::from_utf8_lossy(&body).into_owned();
                store
                    .lock()
                    .unwrap()
                    .push((req.path().to_string(), title, body));
                HttpResponse::Ok().finish()
            }
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    (url, received)
}
