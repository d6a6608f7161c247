//! Several hub processes on one PostgreSQL database (issue 16): one leads, the others
//! forward every request to it and relay its events, and when the leader is killed one
//! of them takes over.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::http::Method;
use serde_json::{json, Value};

use crate::support::process::{serve, HubProcess};
use crate::support::{Sse, MASTER};

/// One HTTP exchange with a hub process (as `token`; none if empty): the status and the
/// JSON body, or `None` when the process does not answer.
async fn call(
    base: &str,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let mut request = awc::Client::new()
        .request(method, format!("{base}{path}"))
        .timeout(Duration::from_secs(30));
    if !token.is_empty() {
        request = request.bearer_auth(token);
    }
    let mut response = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    }
    .ok()?;
    let body = response.body().limit(1 << 24).await.ok()?;
    Some((
        response.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    ))
}

async fn health(base: &str) -> Value {
    match call(base, Method::GET, "/api/health", MASTER, None).await {
        Some((200, health)) => health,
        other => panic!("{base} gave no health: {other:?}"),
    }
}

/// Creates a task titled `title` through `base`: its id, or `None` unless answered 201.
async fn create(base: &str, title: &str) -> Option<i64> {
    let body = json!({ "title": title, "prompt": "p" });
    match call(base, Method::POST, "/api/tasks", MASTER, Some(body)).await {
        Some((201, task)) => task["id"].as_i64(),
        _ => None,
    }
}

/// A token for a new worker agent `name`, issued through `base`.
async fn agent_token(base: &str, name: &str) -> String {
    let body = json!({ "agent_id": name, "name": name, "role": "worker" });
    let (status, made) = call(base, Method::POST, "/api/admin/tokens", MASTER, Some(body))
        .await
        .unwrap();
    assert_eq!(status, 201, "{made}");
    made["token"].as_str().unwrap().to_string()
}

/// The hub on `file`, with `env`: three processes sharing the database on PostgreSQL, the
/// one process a SQLite file allows otherwise.
async fn processes_on(
    file: &std::path::Path,
    log: &std::path::Path,
    env: &[(&str, &str)],
) -> Vec<HubProcess> {
    let count = if crate::support::postgres_server().is_some() {
        3
    } else {
        1
    };
    let mut processes = Vec::new();
    for _ in 0..count {
        processes.push(serve(MASTER, file, log, env).await);
    }
    processes
}

/// Every event a stream delivers, collected in the background.
type Seen = Rc<RefCell<Vec<(u64, String, Value)>>>;

async fn watch(base: &str) -> Seen {
    let url = format!("{base}/api/stream?token={MASTER}");
    let mut stream = Sse::open(&awc::Client::new(), &url, &[]).await;
    let seen: Seen = Rc::default();
    let into = seen.clone();
    actix_web::rt::spawn(async move {
        while let Some(event) = stream.next(Duration::from_secs(3600)).await {
            into.borrow_mut()
                .push((event.id.unwrap_or(0), event.name, event.data));
        }
    });
    seen
}

/// What the load of one round recorded.
#[derive(Default)]
struct Load {
    /// Tasks whose create was answered 201.
    acknowledged: BTreeSet<i64>,
    /// (agent, task) for every task an agent found assigned to it.
    handed: BTreeSet<(String, i64)>,
}

/// Creates tasks through the processes in turn until `until`.
async fn write(bases: Rc<Vec<String>>, load: Rc<RefCell<Load>>, until: Instant, writer: usize) {
    let mut turn = writer;
    while Instant::now() < until {
        turn += 1;
        let base = &bases[turn % bases.len()];
        match create(base, &format!("w{writer}-{turn}")).await {
            Some(id) => {
                load.borrow_mut().acknowledged.insert(id);
            }
            None => actix_web::rt::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Works as agent `agent` through the processes in turn until `until`: takes what is
/// assigned to it and finishes it.
async fn work(
    bases: Rc<Vec<String>>,
    load: Rc<RefCell<Load>>,
    until: Instant,
    agent: String,
    token: String,
) {
    let mut turn = 0;
    while Instant::now() < until {
        turn += 1;
        let base = &bases[turn % bases.len()];
        let assigned = call(
            base,
            Method::GET,
            "/api/tasks?status=assigned&limit=50",
            &token,
            None,
        )
        .await;
        let Some((200, assigned)) = assigned else {
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        for task in assigned["tasks"].as_array().cloned().unwrap_or_default() {
            let id = task["id"].as_i64().unwrap();
            load.borrow_mut().handed.insert((agent.clone(), id));
            let path = format!("/api/tasks/{id}");
            call(
                base,
                Method::PUT,
                &path,
                &token,
                Some(json!({ "status": "running" })),
            )
            .await;
            call(
                base,
                Method::PUT,
                &path,
                &token,
                Some(json!({ "status": "done", "output": "ok" })),
            )
            .await;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn processes_on_one_database_follow_the_leader_and_the_next_takes_over_when_it_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (file, log) = (dir.path().join("hub.db"), dir.path().join("hub.log"));
    // Every event stays in the table, so that what the streams saw can be checked in full.
    let env = [("M3SHDUP_EVENT_RING_SIZE", "1000000")];
    if crate::support::postgres_server().is_none() {
        // One process on a SQLite file leads it, with no epoch to fence.
        let alone = serve(MASTER, &file, &log, &env).await;
        let health = health(&alone.base).await;
        assert_eq!(
            (health["role"].clone(), health["epoch"].clone()),
            (json!("leader"), Value::Null)
        );
        return;
    }
    let mut processes: Vec<HubProcess> = Vec::new();
    for _ in 0..3 {
        processes.push(serve(MASTER, &file, &log, &env).await);
    }
    let first = health(&processes[0].base).await;
    assert_eq!(first["role"], "leader", "{first}");
    for follower in &processes[1..] {
        let health = health(&follower.base).await;
        assert_eq!(health["role"], "follower", "{health}");
        assert_eq!(health["leader"], processes[0].base.as_str(), "{health}");
    }
    // Agents made and registered through followers, as through the leader.
    let mut agents = Vec::new();
    for (name, via) in [("ada", 1), ("rex", 2)] {
        let token = agent_token(&processes[via].base, name).await;
        let body = json!({ "name": name, "capabilities": ["research"], "max_concurrent": 4 });
        let register = format!("/api/agents/{name}/register");
        let (status, _) = call(
            &processes[via].base,
            Method::POST,
            &register,
            &token,
            Some(body),
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        agents.push((name.to_string(), token));
    }
    // A stream on each process; those on processes never killed must see every event.
    // Processes are told apart by their address (a restarted one gets a new port).
    // Each with the number of takeovers before it opened.
    let mut streams: Vec<(Seen, String, usize)> = Vec::new();
    for process in &processes {
        streams.push((watch(&process.base).await, process.base.clone(), 0));
    }
    let mut killed: BTreeSet<String> = BTreeSet::new();
    let load = Rc::new(RefCell::new(Load::default()));
    let mut failovers = Vec::new();
    for _ in 0..3 {
        let bases = Rc::new(processes.iter().map(|p| p.base.clone()).collect::<Vec<_>>());
        let until = Instant::now() + Duration::from_secs(3);
        let mut running = Vec::new();
        for writer in 0..3 {
            running.push(actix_web::rt::spawn(write(
                bases.clone(),
                load.clone(),
                until,
                writer,
            )));
        }
        for (agent, token) in &agents {
            running.push(actix_web::rt::spawn(work(
                bases.clone(),
                load.clone(),
                until,
                agent.clone(),
                token.clone(),
            )));
        }
        actix_web::rt::time::sleep(Duration::from_secs(1)).await;
        let mut leader = None;
        for (index, process) in processes.iter().enumerate() {
            if health(&process.base).await["role"] == "leader" {
                leader = Some(index);
            }
        }
        let leader = leader.expect("one process leads");
        processes[leader].child.kill().unwrap();
        processes[leader].child.wait().unwrap();
        killed.insert(processes[leader].base.clone());
        let killed_at = Instant::now();
        // Served again when a create through a surviving process succeeds.
        let survivor = processes[(leader + 1) % processes.len()].base.clone();
        loop {
            if let Some(id) = create(&survivor, "after the kill").await {
                load.borrow_mut().acknowledged.insert(id);
                break;
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(30),
                "nobody took over"
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        failovers.push(killed_at.elapsed());
        for task in running {
            task.await.unwrap();
        }
        // The killed process comes back, as a follower.
        processes[leader] = serve(MASTER, &file, &log, &env).await;
        assert_eq!(health(&processes[leader].base).await["role"], "follower");
        let base = processes[leader].base.clone();
        streams.push((watch(&base).await, base, failovers.len()));
    }
    for failover in &failovers {
        assert!(
            *failover < Duration::from_secs(5),
            "failovers took {failovers:?}"
        );
    }

    let any = processes[0].base.clone();
    // Every writer and worker has ended: the load is whole.
    let load = Rc::try_unwrap(load)
        .ok()
        .expect("no task holds the load")
        .into_inner();
    assert!(
        load.acknowledged.len() > 30,
        "only {} creates went through",
        load.acknowledged.len()
    );
    for id in &load.acknowledged {
        let (status, _) = call(&any, Method::GET, &format!("/api/tasks/{id}"), MASTER, None)
            .await
            .unwrap();
        assert_eq!(status, 200, "acknowledged task {id} is gone");
    }
    let ada: BTreeSet<i64> = load
        .handed
        .iter()
        .filter(|(a, _)| a == "ada")
        .map(|(_, id)| *id)
        .collect();
    let rex: BTreeSet<i64> = load
        .handed
        .iter()
        .filter(|(a, _)| a == "rex")
        .map(|(_, id)| *id)
        .collect();
    assert!(!ada.is_empty() && !rex.is_empty(), "both agents worked");
    assert!(
        ada.is_disjoint(&rex),
        "tasks handed to both agents: {:?}",
        ada.intersection(&rex).collect::<Vec<_>>()
    );

    // Every stream on a surviving process saw every stored event since it opened, in
    // order (the last, opened after the last takeover, sees this one).
    assert!(create(&any, "last").await.is_some());
    actix_web::rt::time::sleep(Duration::from_secs(1)).await;
    let stored: Vec<u64> = {
        let mut conn = crate::support::open_database(&crate::support::database_url_at(&file));
        m3shd::db::leadership::after(&mut conn, 0, i64::MAX)
            .unwrap()
            .into_iter()
            .map(|event| event.id as u64)
            .collect()
    };
    let survivors: Vec<_> = streams
        .iter()
        .filter(|(_, base, _)| !killed.contains(base))
        .collect();
    assert_eq!(survivors.len(), 3, "a stream on every live process");
    for (seen, _, takeovers_before) in survivors {
        let seen = seen.borrow();
        let ids: Vec<u64> = seen
            .iter()
            .filter(|(_, name, _)| name != "keepalive" && name != "resync")
            .map(|(id, _, _)| *id)
            .collect();
        let since = ids.first().copied().expect("the stream saw events");
        let expected: Vec<u64> = stored.iter().copied().filter(|id| *id >= since).collect();
        assert_eq!(
            ids, expected,
            "a surviving stream missed or reordered events"
        );
        let announced = seen.iter().filter(|(_, name, _)| name == "leader").count();
        assert_eq!(
            announced,
            3 - takeovers_before,
            "each takeover is announced"
        );
    }
}

#[actix_web::test]
async fn sign_in_throttles_count_failures_through_every_process_and_migrate_runs_beside_them() {
    let dir = tempfile::tempdir().unwrap();
    let (file, log) = (dir.path().join("hub.db"), dir.path().join("hub.log"));
    let env = [
        ("M3SHDUP_LOGIN_FAILURES_ALLOWED", "3"),
        ("M3SHDUP_LOGIN_FAILURE_DELAY_MS", "0"),
    ];
    let processes = processes_on(&file, &log, &env).await;
    let base = |turn: usize| processes[turn % processes.len()].base.clone();
    let body = json!({ "username": "vera", "password": "correct horse", "role": "viewer" });
    let (status, _) = call(
        &base(1),
        Method::POST,
        "/api/admin/users",
        MASTER,
        Some(body),
    )
    .await
    .unwrap();
    assert_eq!(status, 201);
    let login = |turn: usize, password: &'static str| {
        let at = base(turn);
        async move {
            let body = json!({ "username": "vera", "password": password });
            call(&at, Method::POST, "/api/login", "", Some(body))
                .await
                .unwrap()
                .0
        }
    };
    // Three failures, each through another process: the leader counts them all.
    for turn in 0..3 {
        assert_eq!(login(turn, "wrong password").await, 401);
    }
    assert_eq!(
        login(1, "correct horse").await,
        429,
        "throttled through any process"
    );

    // `m3shd migrate` beside live processes: nothing left to apply, and they go on.
    let mut migrate = crate::support::process::m3shd();
    migrate
        .arg("migrate")
        .envs(crate::support::database_env(&file));
    let output = actix_web::rt::task::spawn_blocking(move || migrate.output().unwrap())
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains("(0 migrations applied now)"), "{said}");
    for process in &processes {
        assert_eq!(health(&process.base).await["status"], "ok");
    }
}

#[actix_web::test]
async fn a_worker_that_knows_every_process_works_on_when_the_leader_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (file, log) = (dir.path().join("hub.db"), dir.path().join("hub.log"));
    let mut processes = processes_on(&file, &log, &[]).await;
    let token = agent_token(&processes[0].base, "w1").await;
    let hubs: Vec<String> = processes.iter().map(|p| p.base.clone()).collect();
    let mut worker =
        crate::support::process::worker_command(&hubs.join(","), &token, "w1", "echo done by w1")
            .spawn()
            .expect("the worker starts");
    let done = |id: i64| {
        let hubs = hubs.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                for base in &hubs {
                    let path = format!("/api/tasks/{id}");
                    if let Some((200, task)) = call(base, Method::GET, &path, MASTER, None).await {
                        if task["status"] == "done" {
                            return true;
                        }
                    }
                }
                actix_web::rt::time::sleep(Duration::from_millis(100)).await;
            }
            false
        }
    };
    let first = create(&hubs[0], "t").await.expect("created");
    assert!(done(first).await, "the worker finished the first task");
    if processes.len() > 1 {
        // The leader (the first process) dies; the worker's next address answers.
        processes[0].child.kill().unwrap();
        processes[0].child.wait().unwrap();
        let mut second = None;
        for _ in 0..100 {
            second = create(&hubs[1], "t").await;
            if second.is_some() {
                break;
            }
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
        let second = second.expect("a process took over");
        assert!(
            done(second).await,
            "the worker finished a task of the new leader"
        );
    }
    let _ = worker.kill();
    let _ = worker.wait();
}

/// The sessions holding an advisory lock on the hub's database: `what` of each is
/// selected (`pid` counts them, `pg_terminate_backend(pid)` ends them, as a network cut or
/// a proxy would).
fn lock_sessions(file: &std::path::Path, what: &str) -> usize {
    use diesel::RunQueryDsl;
    let mut conn = crate::support::open_database(&crate::support::database_url_at(file));
    diesel::sql_query(format!(
        "SELECT {what} FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ))
    .execute(&mut conn)
    .unwrap()
}

fn cut_the_lock_connection(file: &std::path::Path) -> bool {
    lock_sessions(file, "pg_terminate_backend(pid)") == 1
}

#[actix_web::test]
async fn a_leader_whose_lock_connection_is_cut_takes_it_again_or_hands_over() {
    let dir = tempfile::tempdir().unwrap();
    let (file, log) = (dir.path().join("hub.db"), dir.path().join("hub.log"));
    let first = serve(MASTER, &file, &log, &[]).await;
    if crate::support::postgres_server().is_none() {
        // SQLite holds no lock to lose: the one process leads.
        assert_eq!(health(&first.base).await["role"], "leader");
        return;
    }
    let epoch = health(&first.base).await["epoch"].clone();
    // Alone: nobody led meanwhile, so it takes the lock again under the same epoch.
    assert!(cut_the_lock_connection(&file), "the leader holds the lock");
    actix_web::rt::time::sleep(Duration::from_millis(2500)).await;
    let again = health(&first.base).await;
    assert_eq!(
        (&again["role"], &again["epoch"]),
        (&json!("leader"), &epoch),
        "{again}"
    );
    assert_eq!(lock_sessions(&file, "pid"), 1, "the lock is held again");
    assert!(create(&first.base, "t").await.is_some());

    // With a follower: whichever gets the lock leads, the other follows, and a create
    // through either is served.
    let second = serve(MASTER, &file, &log, &[]).await;
    assert!(cut_the_lock_connection(&file), "the leader holds the lock");
    actix_web::rt::time::sleep(Duration::from_millis(2500)).await;
    let roles = [
        health(&first.base).await["role"].clone(),
        health(&second.base).await["role"].clone(),
    ];
    assert!(
        roles == [json!("leader"), json!("follower")]
            || roles == [json!("follower"), json!("leader")],
        "{roles:?}"
    );
    for process in [&first, &second] {
        let made = create(&process.base, "t").await;
        assert!(made.is_some(), "through {}", process.base);
    }
}
