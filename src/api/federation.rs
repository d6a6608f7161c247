//! Federation endpoints (seed 000 sections 08 and 14): peers (master), status, and the
//! calls peers make to each other with their shared token: relayed tasks and their results.

use actix_web::{web, HttpRequest, HttpResponse};
use awc::http::Method;
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::auth::{Caller, MaybeCaller};
use super::extract::{parse_json, Json, Keyed};
use super::idempotency::{settle, Idempotent};
use super::task_body::TaskBody;
use crate::actors::dispatcher::{CheckAdmission, Crossing, Serves, SubmitTask};
use crate::actors::task::CompleteRemotely;
use crate::crypto::provenance::fingerprint;
use crate::db::models::{NewAuditRow, NewTaskRow};
use crate::db::schema::{peers, relays};
use crate::domain::access::Principal;
use crate::domain::agent::valid_agent_id;
use crate::domain::now_iso;
use crate::domain::task::TaskStatus;
use crate::error::HubError;
use crate::federation::{
    all_peers, authenticate, call_peer, results_waiting, PeerRow, TOKEN_HEADER,
};
use crate::startup::Hub;

fn peer_view(row: &PeerRow) -> Value {
    json!({
        "name": row.name,
        "url": row.url,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "last_seen_at": row.last_seen_at,
        "last_latency_ms": row.last_latency_ms,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PeerBody {
    #[schema(required = true, value_type = String, pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    name: Option<String>,
    #[schema(required = true, value_type = String, pattern = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")]
    url: Option<String>,
    #[schema(required = true, value_type = String, min_length = 1)]
    token: Option<String>,
}

/// The peer URLs the hub accepts (the document's pattern for `url` says the same):
/// `http(s)://host[:port][/path]`, the host of letters, digits, `.` and `-`.
fn valid_peer_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    let path_ok = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '/' | '-'));
    host_ok && port_ok && path_ok
}

#[utoipa::path(
    post,
    path = "/api/admin/peers",
    tag = "federation",
    request_body = PeerBody,
    responses((status = 201, description = "Register a federation peer (master)", body = Object))
)]
pub async fn create_peer(
    hub: web::Data<Hub>,
    caller: Caller,
    body: Json<PeerBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require_master()?;
    let body = body.0;
    let name = body
        .name
        .filter(|n| valid_agent_id(n))
        .ok_or_else(|| HubError::bad_request("name is required (letters, digits, - _ .)"))?;
    let url = body.url.filter(|u| valid_peer_url(u)).ok_or_else(|| {
        HubError::bad_request(
            "url must be http(s)://host[:port][/path] (letters, digits, . - in the host)",
        )
    })?;
    let token = body
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| HubError::bad_request("token is required"))?;
    let row = PeerRow {
        name,
        url: url.trim_end_matches('/').to_string(),
        token: hub.core.vault.seal(&token),
        created_by: caller.0.label(),
        created_at: now_iso(),
        last_seen_at: None,
        last_latency_ms: None,
    };
    let stored = row.clone();
    hub.core
        .db
        .write(move |conn| {
            diesel::insert_into(peers::table)
                .values(&stored)
                .execute(conn)
                .map_err(|e| match HubError::from(e) {
                    HubError::Conflict(_) => {
                        HubError::conflict(format!("a peer named {:?} already exists", stored.name))
                    }
                    other => other,
                })?;
            NewAuditRow::new(
                &stored.created_by,
                "peer.create",
                format!("peer:{}", stored.name),
                Some(json!({ "url": stored.url })),
            )
            .append(conn)?;
            Ok(())
        })
        .await?;
    Ok(HttpResponse::Created().json(peer_view(&row)))
}

#[utoipa::path(
    get,
    path = "/api/admin/peers",
    tag = "federation",
    responses((status = 200, description = "Federation peers (master)", body = Object))
)]
pub async fn list_peers(hub: web::Data<Hub>, caller: Caller) -> Result<HttpResponse, HubError> {
    caller.0.require_master()?;
    let rows = crate::db::read(&hub.reads, |conn| Ok(all_peers(conn)?)).await?;
    let list: Vec<Value> = rows.iter().map(peer_view).collect();
    Ok(HttpResponse::Ok().json(json!({ "count": list.len(), "peers": list })))
}

#[utoipa::path(
    delete,
    path = "/api/admin/peers/{name}",
    tag = "federation",
    params(("name" = String, Path, description = "The name")),
    responses((status = 200, description = "Remove a peer (master)", body = Object))
)]
pub async fn delete_peer(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require_master()?;
    let name = path.into_inner();
    let (target, missing, key) = (
        format!("peer:{name}"),
        format!("no peer {name:?}"),
        name.clone(),
    );
    super::delete_audited(
        &hub,
        caller.0.label(),
        "peer.delete",
        target,
        missing,
        move |conn| diesel::delete(peers::table.find(&key)).execute(conn),
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "deleted": name })))
}

async fn find_peer(hub: &Hub, name: &str) -> Result<PeerRow, HubError> {
    let lookup = name.to_string();
    crate::db::read(&hub.reads, move |conn| {
        Ok(peers::table
            .find(&lookup)
            .select(PeerRow::as_select())
            .get_result(conn)
            .optional()?)
    })
    .await?
    .ok_or_else(|| HubError::not_found(format!("no peer {name:?}")))
}

/// Calls the peer's status endpoint with the shared token; reports reachability and latency.
#[utoipa::path(
    post,
    path = "/api/admin/peers/{name}/ping",
    tag = "federation",
    params(("name" = String, Path, description = "The name")),
    responses((status = 200, description = "Ping a peer (master)", body = Object))
)]
pub async fn ping_peer(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require_master()?;
    let peer = find_peer(&hub, &path).await?;
    let started = std::time::Instant::now();
    let answer = call_peer(
        &peer,
        &hub.core.vault,
        Method::GET,
        "/api/federation/status",
        None,
        None,
    )
    .await;
    let latency_ms = started.elapsed().as_millis() as i64;
    if answer.is_ok() {
        let name = peer.name.clone();
        hub.core
            .db
            .write(move |conn| {
                diesel::update(peers::table.find(&name))
                    .set((
                        peers::last_seen_at.eq(now_iso()),
                        peers::last_latency_ms.eq(latency_ms as i32),
                    ))
                    .execute(conn)?;
                Ok(())
            })
            .await?;
    }
    Ok(HttpResponse::Ok().json(match answer {
        Ok(status) => json!({ "peer": peer.name, "reachable": true, "latency_ms": latency_ms, "status": status }),
        Err(why) => json!({ "peer": peer.name, "reachable": false, "latency_ms": latency_ms, "error": why.to_string() }),
    }))
}

fn token_of(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
}

/// Federation health: for a peer (its token) or any caller of this hub. Everyone learns
/// whether federation and relay are on; only admins see the peers and their addresses.
#[utoipa::path(
    get,
    path = "/api/federation/status",
    tag = "federation",
    security(("bearer" = []), ("api_key" = []), ("cookie" = []), ("federation_token" = [])),
    responses((status = 200, description = "Federation status", body = Object))
)]
pub async fn federation_status(
    hub: web::Data<Hub>,
    req: HttpRequest,
    caller: MaybeCaller,
) -> Result<HttpResponse, HubError> {
    let admin = match caller.0 {
        Some(principal) => principal.is_admin(),
        None => {
            authenticate(&hub.reads, &hub.core.vault, token_of(&req)).await?;
            false
        }
    };
    let (rows, waiting) = crate::db::read(&hub.reads, |conn| {
        Ok((all_peers(conn)?, results_waiting(conn)?))
    })
    .await?;
    let settings = &hub.core.settings;
    let mut status = json!({
        "status": "ok",
        "federation": !rows.is_empty(),
        "relay": settings.federation_relay,
    });
    if admin {
        status["max_hops"] = json!(settings.federation_max_hops);
        let peers = rows.iter().map(|row| {
            let mut view = peer_view(row);
            // Results of tasks it relayed here, still in the outbox (it did not take them yet).
            view["results_waiting"] = json!(waiting.get(&row.name).copied().unwrap_or(0));
            view
        });
        status["peers"] = json!(peers.collect::<Vec<_>>());
    }
    Ok(HttpResponse::Ok().json(status))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RelayedTask {
    hop_count: Option<i32>,
    #[serde(flatten)]
    task: TaskBody,
}

/// A task relayed by a peer: accepted with its token, within the hop limit, under the
/// kill switch and cost cap like any new work, and dispatched (or relayed on) from here.
#[utoipa::path(
    post,
    path = "/api/federation/tasks",
    tag = "federation",
    security(("federation_token" = [])),
    request_body = RelayedTask,
    params(("Idempotency-Key" = Option<String>, Header, description = "A relaying hub's key: a retried relay reaches the one task it made", max_length = 255, pattern = r"^[\x20-\x7E]*$")),
    responses(
        (status = 201, description = "A task relayed by a peer", body = crate::views::TaskView),
        (status = 422, description = "The Idempotency-Key was already used with a different body", body = super::openapi::ErrorBody),
    )
)]
pub async fn accept_task(
    hub: web::Data<Hub>,
    req: HttpRequest,
    keyed: Keyed,
) -> Result<HttpResponse, HubError> {
    let peer = authenticate(&hub.reads, &hub.core.vault, token_of(&req)).await?;
    let from = format!("peer:{}", peer.name);
    let idempotent = Idempotent::of(&hub, &from, "POST /api/federation/tasks", keyed.key);
    let answer = async {
        let body: RelayedTask = parse_json(&keyed.body)?;
        let hops = body.hop_count.unwrap_or(1).max(1);
        let max = hub.core.settings.federation_max_hops;
        if hops > max {
            return Err(HubError::bad_request(format!(
                "the task has crossed {hops} hubs; the limit is {max}"
            )));
        }
        let mut task = body.task.into_row(&Principal::Master, &hub, "federation")?;
        // A peer asks for work; it does not command this hub's agents (a pin is dropped) or
        // jump its queue.
        task.assign_to = None;
        task.priority = task.priority.min(hub.core.settings.federation_max_priority);
        task.created_by = from.clone();
        task.hop_count = hops;
        // Run here or relayed on (never straight back); either way the result goes back to
        // `peer`, so both crossings are recorded.
        let relay_key = idempotent.as_ref().map(Idempotent::relay_key);
        let onward = relay_if_unserved(
            &hub,
            &mut task,
            false,
            Some(&peer.name),
            relay_key.as_deref(),
        )
        .await?;
        let inbound = Crossing::Inbound {
            peer: peer.name.clone(),
        };
        let message = SubmitTask {
            task,
            depends_on: vec![],
            actor: from,
            delivery: None,
            crossings: std::iter::once(inbound).chain(onward).collect(),
            by_master: false,
            also: None,
        };
        super::tasks::submit(&hub, message, idempotent.as_ref()).await
    }
    .await;
    settle(&hub, idempotent.as_ref(), answer).await
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RemoteResult {
    #[schema(required = true, value_type = i32)]
    task_id: Option<i32>,
    #[schema(schema_with = super::openapi::task_status, required = true)]
    status: Option<String>,
    output: Option<String>,
    reason: Option<String>,
}

/// A peer reports the outcome of a task this hub relayed to it.
#[utoipa::path(
    post,
    path = "/api/federation/results",
    tag = "federation",
    security(("federation_token" = [])),
    request_body = RemoteResult,
    responses((status = 200, description = "A peer reports a relayed task's result", body = Object))
)]
pub async fn accept_result(
    hub: web::Data<Hub>,
    req: HttpRequest,
    body: Json<RemoteResult>,
) -> Result<HttpResponse, HubError> {
    let peer = authenticate(&hub.reads, &hub.core.vault, token_of(&req)).await?;
    let body = body.0;
    let remote_id = body
        .task_id
        .ok_or_else(|| HubError::bad_request("task_id is required"))?;
    let status: TaskStatus = body.status.as_deref().unwrap_or("").parse()?;
    let name = peer.name.clone();
    let local: Option<i32> = crate::db::read(&hub.reads, move |conn| {
        Ok(relays::table
            .filter(relays::direction.eq("outbound"))
            .filter(relays::peer.eq(&name))
            .filter(relays::peer_task_id.eq(remote_id))
            .select(relays::task_id)
            .get_result(conn)
            .optional()?)
    })
    .await?;
    let local = local.ok_or_else(|| {
        HubError::not_found(format!(
            "no task was relayed to {} as its task {remote_id}",
            peer.name
        ))
    })?;
    let task = super::tasks::task_actor(&hub, local)
        .await?
        .ok_or_else(|| HubError::conflict(format!("task {local} is already finished")))?;
    let output = body
        .output
        .as_deref()
        .map(|o| (hub.core.vault.seal(o), fingerprint(o)));
    let row = task
        .send(CompleteRemotely {
            peer: peer.name,
            status,
            output,
            reason: body.reason,
        })
        .await??;
    Ok(HttpResponse::Ok().json(json!({ "ok": true, "task_id": row.id, "status": row.status })))
}

/// Relays a new task to a peer (other than `from`, the one it came from) when relaying is
/// on, no agent here serves its capability and it has hops left, but only if this hub
/// would admit it (kill switch, cost cap) in the first place. On success the task is
/// pinned to the peer (so it never runs here) and the crossing is recorded with it.
/// `key`, from the create's own idempotency key, makes the peer's create idempotent too:
/// a retried (or concurrent) keyed create reaches the peer's one task.
pub(super) async fn relay_if_unserved(
    hub: &Hub,
    task: &mut NewTaskRow,
    by_master: bool,
    from: Option<&str>,
    key: Option<&str>,
) -> Result<Option<Crossing>, HubError> {
    let settings = &hub.core.settings;
    if !settings.federation_relay || task.hop_count >= settings.federation_max_hops {
        return Ok(None);
    }
    if hub
        .dispatcher
        .send(Serves {
            capability: task.required_capability.clone(),
        })
        .await?
    {
        return Ok(None);
    }
    hub.dispatcher.send(CheckAdmission { by_master }).await??;
    let prompt = hub
        .core
        .vault
        .open(&task.prompt)
        .map(|o| o.plaintext)
        .unwrap_or_default();
    let body = json!({
        "title": task.title,
        "prompt": prompt,
        "required_capability": task.required_capability,
        "priority": task.priority,
        "urgency": task.urgency,
        "model": task.model,
        "hop_count": task.hop_count + 1,
    });
    let peers = crate::db::read(&hub.reads, |conn| Ok(all_peers(conn)?)).await?;
    for peer in peers.into_iter().filter(|p| Some(p.name.as_str()) != from) {
        match call_peer(
            &peer,
            &hub.core.vault,
            awc::http::Method::POST,
            "/api/federation/tasks",
            Some(&body),
            key,
        )
        .await
        {
            Ok(remote) => {
                let Some(peer_task_id) =
                    remote["id"].as_i64().and_then(|id| i32::try_from(id).ok())
                else {
                    continue;
                };
                tracing::info!(peer = %peer.name, peer_task.id = peer_task_id, "relayed a task no local agent serves");
                task.assign_to = Some(format!("peer:{}", peer.name));
                return Ok(Some(Crossing::Outbound {
                    peer: peer.name,
                    peer_task_id,
                }));
            }
            Err(why) => {
                tracing::warn!(peer = %peer.name, error = %why, "a peer refused a relayed task")
            }
        }
    }
    Ok(None)
}
