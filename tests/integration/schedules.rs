//! Scheduled templates: dispatched on time, once per occurrence, across restarts and hub
//! processes; paused, stopped by the kill switch, and showing their next runs.

use std::time::Duration;

use awc::http::Method;
use diesel::prelude::*;
use serde_json::{json, Value};

use crate::support::process::{serve, HubProcess};
use crate::support::{send_json, TestHub, MASTER};

const EVERY_SECOND: &str = "* * * * * *";

async fn occurrences(hub: &TestHub, template: i64) -> Vec<Value> {
    let list = hub
        .get(
            &format!("/api/templates/{template}/occurrences?limit=500"),
            MASTER,
        )
        .await
        .expect(200);
    list["occurrences"].as_array().cloned().unwrap_or_default()
}

fn outcomes(list: &[Value], outcome: &str) -> usize {
    list.iter().filter(|o| o["outcome"] == outcome).count()
}

/// (occurrences, tasks made from `template`) straight from a hub's database: every
/// dispatched occurrence names its own task, and no task is made twice.
fn recorded(database: &str, template: i64) -> (Vec<(String, String, Option<i32>)>, i64) {
    use m3shd::db::schema::{schedule_occurrences as o, tasks};
    let mut conn = crate::support::open_database(database);
    let template = template as i32;
    let list = o::table
        .filter(o::template_id.eq(template))
        .select((o::occurrence_at, o::outcome, o::task_id))
        .order(o::occurrence_at)
        .load(&mut conn)
        .unwrap();
    let made: i64 = tasks::table
        .filter(tasks::template_id.eq(template))
        .count()
        .get_result(&mut conn)
        .unwrap();
    (list, made)
}

#[actix_web::test]
async fn a_scheduled_template_runs_each_occurrence_once_pauses_and_obeys_the_kill_switch() {
    let hub = TestHub::spawn().await;
    let schedule = json!({ "cron": EVERY_SECOND, "time_zone": "Europe/Paris" });
    let template = hub
        .post(
            "/api/templates",
            MASTER,
            json!({ "name": "tick", "title": "Tick", "prompt": "tick", "required_capability": "nobody_has", "schedule": schedule }),
        )
        .await
        .expect(201);
    let id = template["id"].as_i64().unwrap();
    let next: Vec<String> =
        serde_json::from_value(template["schedule"]["next_runs"].clone()).unwrap();
    assert_eq!(next.len(), 5, "{template}");
    let gaps: Vec<i64> = next
        .windows(2)
        .map(|w| {
            let (a, b): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
                (w[0].parse().unwrap(), w[1].parse().unwrap());
            (b - a).num_milliseconds()
        })
        .collect();
    assert!(gaps.iter().all(|g| *g == 1000), "{next:?}");

    actix_web::rt::time::sleep(Duration::from_millis(3500)).await;
    let ran = occurrences(&hub, id).await;
    assert!(outcomes(&ran, "dispatched") >= 2, "{ran:?}");
    // Each occurrence made one task of the template, as its creator's.
    let task = hub.task_status(ran[0]["task_id"].as_i64().unwrap()).await;
    assert_eq!(task["title"], "Tick");
    assert_eq!(task["created_by"], "master");
    let mut tasks: Vec<i64> = ran.iter().filter_map(|o| o["task_id"].as_i64()).collect();
    tasks.dedup();
    assert_eq!(tasks.len(), outcomes(&ran, "dispatched"));

    // Paused: nothing runs and no next runs are shown.
    let paused = hub
        .put(
            &format!("/api/templates/{id}/schedule"),
            MASTER,
            json!({ "cron": EVERY_SECOND, "paused": true }),
        )
        .await
        .expect(200);
    assert_eq!(paused["schedule"]["paused"], true);
    assert_eq!(paused["schedule"]["next_runs"], json!([]));
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let before = occurrences(&hub, id).await;
    actix_web::rt::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        occurrences(&hub, id).await.len(),
        before.len(),
        "a paused schedule ran"
    );

    // The kill switch stops it too: its occurrences are recorded as skipped.
    hub.post(
        "/api/admin/kill-switch",
        MASTER,
        json!({ "reason": "maintenance" }),
    )
    .await
    .expect(200);
    hub.put(
        &format!("/api/templates/{id}/schedule"),
        MASTER,
        json!({ "cron": EVERY_SECOND }),
    )
    .await
    .expect(200);
    actix_web::rt::time::sleep(Duration::from_millis(2500)).await;
    let list = occurrences(&hub, id).await;
    let skipped: Vec<&Value> = list.iter().filter(|o| o["outcome"] == "skipped").collect();
    assert!(!skipped.is_empty(), "{list:?}");
    assert!(
        skipped[0]["detail"]
            .as_str()
            .unwrap()
            .contains("kill switch"),
        "{skipped:?}"
    );
    assert_eq!(
        outcomes(&list, "dispatched"),
        outcomes(&before, "dispatched"),
        "nothing was dispatched under the kill switch"
    );

    // Unscheduled: the template stays, and nothing more runs.
    hub.delete("/api/admin/kill-switch", MASTER)
        .await
        .expect(200);
    let removed = hub
        .delete(&format!("/api/templates/{id}/schedule"), MASTER)
        .await
        .expect(200);
    assert_eq!(removed["schedule"], Value::Null);
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let settled = occurrences(&hub, id).await.len();
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(occurrences(&hub, id).await.len(), settled);
    assert_eq!(
        hub.delete(&format!("/api/templates/{id}/schedule"), MASTER)
            .await
            .status,
        404
    );
}

#[actix_web::test]
async fn a_bad_schedule_is_refused_naming_what_is_wrong() {
    let hub = TestHub::spawn().await;
    let cases = [
        (json!({ "cron": "every tuesday" }), "every tuesday"),
        (
            json!({ "cron": "0 9 * * *", "time_zone": "Mars/Olympus" }),
            "Mars/Olympus",
        ),
        (json!({ "time_zone": "UTC" }), "schedule.cron is required"),
        (json!({ "cron": "0 0 30 2 *" }), "never"),
    ];
    for (schedule, named) in cases {
        let refused = hub
            .post(
                "/api/templates",
                MASTER,
                json!({ "title": "t", "prompt": "p", "schedule": schedule }),
            )
            .await;
        assert_eq!(refused.status, 400, "{schedule}");
        assert!(
            refused.body["error"].as_str().unwrap().contains(named),
            "{}",
            refused.body
        );
    }
    let listed = hub.get("/api/templates", MASTER).await.expect(200);
    assert_eq!(listed["total"], 0, "nothing half-made");
}

async fn call(hub: &HubProcess, method: Method, path: &str, body: Value) -> Value {
    let auth = format!("Bearer {TOKEN}");
    let headers = [("Authorization", auth.as_str())];
    let (reply, _) = send_json(
        &hub.base,
        method,
        path,
        &headers,
        Some(body),
        Duration::from_secs(10),
    )
    .await;
    reply.body
}

const TOKEN: &str = "schedules-master";

#[actix_web::test]
async fn occurrences_missed_by_a_killed_hub_are_skipped_or_caught_up_never_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let log = dir.path().join("hub.log");
    let mut hub = serve(TOKEN, &db, &log, &[]).await;
    let mut ids = vec![];
    for catch_up in [false, true] {
        let schedule = json!({ "cron": EVERY_SECOND, "catch_up": catch_up });
        let made = call(&hub, Method::POST, "/api/templates", json!({ "title": "t", "prompt": "p", "required_capability": "nobody_has", "schedule": schedule })).await;
        ids.push(made["id"].as_i64().unwrap());
    }
    actix_web::rt::time::sleep(Duration::from_millis(2500)).await;
    hub.child.kill().unwrap();
    hub.child.wait().unwrap();
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    let hub = serve(TOKEN, &db, &log, &[]).await;
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    drop(hub);
    for (id, catch_up) in ids.into_iter().zip([false, true]) {
        let (list, made) = recorded(&crate::support::database_url_at(&db), id);
        let dispatched = list
            .iter()
            .filter(|(_, outcome, _)| outcome == "dispatched")
            .count();
        let skipped = list
            .iter()
            .filter(|(_, outcome, _)| outcome == "skipped")
            .count();
        assert_eq!(
            made as usize, dispatched,
            "one task per dispatched occurrence: {list:?}"
        );
        let mut tasks: Vec<i32> = list.iter().filter_map(|(_, _, t)| *t).collect();
        tasks.sort();
        tasks.dedup();
        assert_eq!(tasks.len(), dispatched, "{list:?}");
        if catch_up {
            assert_eq!(skipped, 0, "caught up: {list:?}");
            assert!(
                dispatched >= 6,
                "the seconds it was down were dispatched too: {list:?}"
            );
        } else {
            assert!(
                skipped >= 2,
                "the seconds it was down were skipped: {list:?}"
            );
            assert!(dispatched >= 2, "{list:?}");
        }
        // No second went by twice, none was lost between the first and the last.
        let times: Vec<chrono::DateTime<chrono::Utc>> =
            list.iter().map(|(at, _, _)| at.parse().unwrap()).collect();
        let span = (*times.last().unwrap() - times[0]).num_seconds() as usize;
        assert_eq!(span + 1, times.len(), "every second once: {list:?}");
    }
}

#[actix_web::test]
async fn two_hub_processes_on_one_database_dispatch_each_occurrence_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let log = dir.path().join("hub.log");
    // On a SQLite file, in both runs of the suite: on PostgreSQL a second process does not
    // start (guards::a_second_hub_on_one_postgresql_database_refuses_to_start…).
    let file = [("M3SHDUP_DATABASE_URL", db.to_str().unwrap())];
    let first = serve(TOKEN, &db, &log, &file).await;
    let schedule = json!({ "cron": EVERY_SECOND });
    let made = call(&first, Method::POST, "/api/templates", json!({ "title": "t", "prompt": "p", "required_capability": "nobody_has", "schedule": schedule })).await;
    let id = made["id"].as_i64().unwrap();
    // The second process reads the schedule at its start.
    let second = serve(TOKEN, &db, &log, &file).await;
    actix_web::rt::time::sleep(Duration::from_secs(4)).await;
    drop(second);
    drop(first);
    let (list, made) = recorded(file[0].1, id);
    let dispatched = list
        .iter()
        .filter(|(_, outcome, _)| outcome == "dispatched")
        .count();
    assert!(dispatched >= 4, "{list:?}");
    assert_eq!(
        made as usize, dispatched,
        "no occurrence was dispatched twice: {list:?}"
    );
}
