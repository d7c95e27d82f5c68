//! `/v1/agent/...`: this agent's services, checks and members, and itself.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gossip_core::Health;
use serde_json::{Value, json};

use super::{Api, Params, ask, change, datacenter, local_member, member_json, text, uuid};
use crate::driver::{Command, RegisterError, TtlUpdate};
use crate::service_def;
use gossip_core::CommandError;

/// `PUT /v1/agent/service/register`.
pub async fn register(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let def = match service_def::parse_register_body(&body) {
        Ok(d) => d,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("Invalid service definition: {e}")),
    };
    if !api.script_checks {
        if let Some(check) = crate::checks::first_exec(&def) {
            return text(
                StatusCode::FORBIDDEN,
                format!(
                    "Scripts are disabled on this agent: check {check:?} has Args (an exec check); \
                     start the agent with --enable-script-checks to accept them from the API"
                ),
            );
        }
    }
    match change(&api, |tx| Command::Register(def, tx)).await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        // What this node's certificate does not allow is a permission, not a syntax, error.
        Ok(Err(e @ RegisterError::Core(CommandError::NotGranted { .. } | CommandError::Quota { .. }))) => {
            text(StatusCode::FORBIDDEN, format!("Permission denied: {e}"))
        }
        Ok(Err(e @ RegisterError::Persist(_))) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Ok(Err(e)) => text(StatusCode::BAD_REQUEST, format!("Invalid service definition: {e}")),
        Err(r) => r,
    }
}

/// `PUT /v1/agent/service/deregister/:id`.
pub async fn deregister(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    match change(&api, |tx| Command::Deregister(id.clone(), tx)).await {
        Ok(Ok(true)) => StatusCode::OK.into_response(),
        Ok(Ok(false)) => text(StatusCode::NOT_FOUND, format!("Unknown service ID {id:?}")),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(r) => r,
    }
}

/// Consul's `AgentService` shape, with the datacenter.
fn agent_service(def: &service_def::ServiceDef) -> Value {
    let mut v = def.to_agent_service();
    v["Datacenter"] = Value::String(datacenter().into());
    v
}

/// `GET /v1/agent/services`: this agent's services by id.
pub async fn services(State(api): State<Arc<Api>>, q: Params) -> Response {
    if let Err((status, msg)) = super::check_read_params(&q) {
        return text(status, msg);
    }
    match ask(&api, Command::LocalServices).await {
        Ok(defs) => {
            let map: serde_json::Map<String, Value> = defs.iter().map(|d| (d.id.clone(), agent_service(d))).collect();
            axum::Json(Value::Object(map)).into_response()
        }
        Err(r) => r,
    }
}

/// `GET /v1/agent/service/:id`: one of this agent's services; 404 if unknown.
pub async fn service(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    match ask(&api, Command::LocalServices).await {
        Ok(defs) => match defs.iter().find(|d| d.id == id) {
            Some(d) => axum::Json(agent_service(d)).into_response(),
            None => text(StatusCode::NOT_FOUND, format!("unknown service ID: {id}")),
        },
        Err(r) => r,
    }
}

/// `GET /v1/agent/members`: every known member, Serf's shape.
pub async fn members(State(api): State<Arc<Api>>, q: Params) -> Response {
    if q.has("wan") && !matches!(q.get("wan"), Some("0" | "false")) {
        return wan_members(&api);
    }
    let c = api.handle.catalog.load_full();
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(
        "X-Gossipd-Self-Preservation",
        axum::http::HeaderValue::from_static(if c.self_preservation { "true" } else { "false" }),
    );
    (headers, axum::Json(Value::Array(c.members.iter().map(member_json).collect()))).into_response()
}

/// `GET /v1/agent/members?wan=1`: the WAN pool's members, named `NODE.DC` as Consul's WAN
/// members; 400 without a WAN pool.
fn wan_members(api: &Api) -> Response {
    let Some(wan) = api.wan.as_ref().filter(|w| !w.relayed) else {
        return text(
            StatusCode::BAD_REQUEST,
            "this agent is in no WAN pool (start it with --wan-bind); it reaches other datacenters through a LAN member that is",
        );
    };
    let view = wan.view.load();
    let list: Vec<Value> = view
        .members
        .iter()
        .map(|m| {
            let status = match (m.status, m.liveness) {
                (gossip_core::NodeStatus::Left, _) => 3,
                (_, gossip_core::Liveness::Dead | gossip_core::Liveness::Excluded) => 4,
                _ => 1,
            };
            let mut tags =
                json!({ "dc": m.dc, "id": uuid(&m.id), "role": "wan", "vsn": "6", "vsn_min": "6", "vsn_max": "6" });
            if m.liveness == gossip_core::Liveness::Suspect {
                tags["suspect"] = Value::String("true".into());
            }
            if let Some(rtt) = m.rtt {
                tags["rtt_ms"] = Value::String(format!("{:.1}", rtt.as_secs_f64() * 1000.0));
            }
            json!({ "Name": format!("{}.{}", m.name, m.dc), "Addr": m.addr.ip().to_string(), "Port": m.addr.port(),
                "Status": status, "Tags": tags })
        })
        .collect();
    axum::Json(Value::Array(list)).into_response()
}

/// `PUT /v1/agent/leave`: a graceful leave, then the agent exits (Consul's endpoint). The
/// answer (200, empty) comes first; the leave is announced as the agent stops.
pub async fn leave(State(api): State<Arc<Api>>) -> Response {
    match &api.leave {
        Some(n) => {
            tracing::info!("leave requested through the API");
            n.notify_one();
            StatusCode::OK.into_response()
        }
        None => text(StatusCode::NOT_IMPLEMENTED, "this agent cannot be stopped through the API"),
    }
}

/// `PUT /v1/agent/join/:address`: joins through that gossip address (`HOST:PORT`; a bare host
/// takes port 7946), as `consul join`.
pub async fn join(State(api): State<Arc<Api>>, Path(address): Path<String>) -> Response {
    let addr = address
        .parse::<std::net::SocketAddr>()
        .or_else(|_| address.parse::<std::net::IpAddr>().map(|ip| std::net::SocketAddr::new(ip, 7946)));
    let Ok(addr) = addr else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("Invalid address {address:?}: want IP:PORT (or IP for port 7946)"),
        );
    };
    match change(&api, |tx| Command::Join(addr, tx)).await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(r) => r,
    }
}

/// `PUT /v1/agent/force-leave/:node`: removes the node from every agent now (a failed one
/// otherwise stays listed as failed for `--failed-grace`), as `consul force-leave -prune`.
/// Needs the operator token when tokens are on. 404 for an unknown node.
pub async fn force_leave(State(api): State<Arc<Api>>, Path(node): Path<String>) -> Response {
    match change(&api, |tx| Command::ForceLeave(node.clone(), tx)).await {
        Ok(Ok(true)) => StatusCode::OK.into_response(),
        Ok(Ok(false)) => text(StatusCode::NOT_FOUND, format!("Unknown node {node:?}")),
        Ok(Err(e)) => text(StatusCode::BAD_REQUEST, e),
        Err(r) => r,
    }
}

/// `GET /v1/agent/self`: the part of Consul's answer that describes this agent (`Config`,
/// `Member`, `Meta`, `Stats`); no `DebugConfig`, `Coord` is null.
pub async fn agent_self(State(api): State<Arc<Api>>) -> Response {
    let problems = match ask(&api, Command::Problems).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let problems: Vec<Value> = problems.iter().map(|(t, text)| json!({ "Time": t, "Problem": text })).collect();
    let c = api.handle.catalog.load_full();
    let local = api.handle.checks.load_full();
    let member = local_member(&c, &local);
    let alive = c.members.iter().filter(|m| super::status_code(m) == 1).count();
    axum::Json(json!({
        "Config": {
            "Datacenter": datacenter(),
            "PrimaryDatacenter": datacenter(),
            "NodeName": local.node,
            "NodeID": uuid(&local.node_id),
            "Server": false,
            "Revision": "",
            "Version": env!("CARGO_PKG_VERSION"),
        },
        "Member": member.map(member_json),
        "Meta": member.map(|m| (*m.meta).clone()).unwrap_or_default(),
        "Coord": null,
        "Stats": {
            "agent": { "gossipd": "true" },
            "serf_lan": {
                "members": c.members.len().to_string(),
                "alive_members": alive.to_string(),
                "self_preservation": c.self_preservation.to_string(),
            },
            "catalog": { "index": c.index.to_string(), "services": c.services.len().to_string() },
        },
        "Problems": problems,
    }))
    .into_response()
}

/// `GET /v1/agent/checks`: this agent's checks by id.
pub async fn checks(State(api): State<Arc<Api>>, q: Params) -> Response {
    if let Err((status, msg)) = super::check_read_params(&q) {
        return text(status, msg);
    }
    let local = api.handle.checks.load_full();
    let map: serde_json::Map<String, Value> =
        local.checks.iter().map(|(id, c)| (id.clone(), super::health::check_json(&local.node, c))).collect();
    axum::Json(Value::Object(map)).into_response()
}

/// `PUT /v1/agent/check/{pass,warn,fail}/:id` (`?note=` becomes the check's output).
pub async fn check_verb(State(api): State<Arc<Api>>, Path((verb, id)): Path<(String, String)>, q: Params) -> Response {
    let status = match verb.as_str() {
        "pass" => Health::Passing,
        "warn" => Health::Warning,
        "fail" => Health::Critical,
        _ => return text(StatusCode::NOT_FOUND, format!("no such check verb {verb:?}: use pass, warn or fail")),
    };
    let note = q.get("note").unwrap_or_default().to_string();
    let check_id = id.clone();
    match change(&api, |reply| Command::UpdateTtl { check_id, status, note, reply }).await {
        Ok(TtlUpdate::Updated) => StatusCode::OK.into_response(),
        Ok(TtlUpdate::Unknown) => text(StatusCode::NOT_FOUND, format!("Unknown check ID {id:?}")),
        Ok(TtlUpdate::NotTtl) => text(StatusCode::BAD_REQUEST, format!("CheckID {id:?} does not have associated TTL")),
        Err(r) => r,
    }
}
