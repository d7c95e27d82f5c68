//! The HTTP API: Consul's agent, catalog and health paths and JSON field names, so that tools
//! that speak Consul can read and register. Reads come from the swapped-in [`Catalog`]; writes
//! go to the driver as commands. GETs support Consul blocking queries (`?index=&wait=`): the
//! answer is held until the catalog index passes `index` or `wait` runs out (default 5 min,
//! at most 10 min); every GET carries `X-Consul-Index`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::driver::{CheckView, Command, Handle, TtlUpdate};
use crate::service_def;
use crate::view::{Catalog, CatalogInstance, Member};
use gossip_core::{Health, NodeId, NodeStatus};

/// Consul's default datacenter name, reported for the local cluster.
pub const DATACENTER: &str = "gossip";

/// Shared state of the API handlers.
#[derive(Debug, Clone)]
pub struct Api {
    /// The driver.
    pub handle: Handle,
    /// The DNS server's response counters (`None`: not exported).
    pub dns_stats: Option<Arc<dns_front::DnsStats>>,
}

/// The API's routes.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/v1/agent/service/register", put(register))
        .route("/v1/agent/service/deregister/{id}", put(deregister))
        .route("/v1/agent/services", get(agent_services))
        .route("/v1/agent/members", get(members))
        .route("/v1/agent/checks", get(agent_checks))
        .route("/v1/agent/check/{verb}/{id}", put(check_verb))
        .route("/v1/catalog/services", get(catalog_services))
        .route("/v1/catalog/service/{name}", get(catalog_service))
        .route("/v1/catalog/nodes", get(catalog_nodes))
        .route("/v1/health/service/{name}", get(health_service))
        .route("/v1/agent/metrics", get(metrics))
        .route("/metrics", get(prometheus))
        .route("/v1/operator/keyring", get(keyring_list).post(keyring_install).put(keyring_use).delete(keyring_remove))
        .with_state(Arc::new(api))
}

/// Consul formats node ids as UUIDs.
fn uuid(id: &NodeId) -> String {
    let h = id.to_hex();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, msg.into()).into_response()
}

async fn ask<T>(api: &Api, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Response> {
    let (tx, rx) = oneshot::channel();
    if api.handle.commands.send(make(tx)).await.is_err() {
        return Err(text(StatusCode::SERVICE_UNAVAILABLE, "agent is shutting down"));
    }
    rx.await.map_err(|_| text(StatusCode::SERVICE_UNAVAILABLE, "agent is shutting down"))
}

async fn register(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let def = match service_def::parse_register_body(&body) {
        Ok(d) => d,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("Invalid service definition: {e}")),
    };
    match ask(&api, |tx| Command::Register(def, tx)).await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => text(StatusCode::BAD_REQUEST, format!("Invalid service definition: {e}")),
        Err(r) => r,
    }
}

async fn deregister(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    match ask(&api, |tx| Command::Deregister(id.clone(), tx)).await {
        Ok(Ok(true)) => StatusCode::OK.into_response(),
        Ok(Ok(false)) => text(StatusCode::NOT_FOUND, format!("Unknown service ID {id:?}")),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(r) => r,
    }
}

/// Parses a Consul duration (`10s`, `5m`, `250ms`, `1h`; a bare number is seconds).
pub fn parse_wait(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((s, "s"), |i| s.split_at(i));
    let v: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Holds a blocking query until the index passes the one asked for, then returns the catalog.
async fn blocking(api: &Api, q: &HashMap<String, String>) -> Result<Arc<Catalog>, Response> {
    let Some(index) = q.get("index") else { return Ok(api.handle.catalog.load_full()) };
    let Ok(index) = index.parse::<u64>() else {
        return Err(text(StatusCode::BAD_REQUEST, format!("Invalid index {index:?}: must be an unsigned integer")));
    };
    let wait = match q.get("wait") {
        None => Duration::from_secs(300),
        Some(w) => match parse_wait(w) {
            Some(d) => d.min(Duration::from_secs(600)),
            None => return Err(text(StatusCode::BAD_REQUEST, format!("Invalid wait {w:?}: use e.g. 10s, 5m"))),
        },
    };
    let mut rx = api.handle.index.clone();
    let _ = tokio::time::timeout(wait, rx.wait_for(|i| *i > index)).await;
    Ok(api.handle.catalog.load_full())
}

fn json_with_index(catalog: &Catalog, body: Value) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("X-Consul-Index", HeaderValue::from(catalog.index));
    headers.insert("X-Consul-KnownLeader", HeaderValue::from_static("true"));
    (headers, axum::Json(body)).into_response()
}

async fn agent_services(State(api): State<Arc<Api>>) -> Response {
    match ask(&api, Command::LocalServices).await {
        Ok(defs) => {
            let map: serde_json::Map<String, Value> =
                defs.iter().map(|d| (d.id.clone(), d.to_agent_service())).collect();
            axum::Json(Value::Object(map)).into_response()
        }
        Err(r) => r,
    }
}

/// Serf/Consul member status codes: 1 alive (suspects too, as Serf), 3 left, 4 failed.
fn status_code(m: &Member) -> u8 {
    match (m.status, m.liveness) {
        (NodeStatus::Left, _) => 3,
        (NodeStatus::Alive, gossip_core::Liveness::Dead) => 4,
        (NodeStatus::Alive, _) => 1,
    }
}

fn member_json(m: &Member) -> Value {
    let mut tags = json!({
        "id": uuid(&m.id), "generation": m.generation.to_string(), "dc": DATACENTER,
        "identity": crate::keys::encode_key(&m.identity),
    });
    if let Some(reason) = &m.banned {
        tags["banned"] = Value::String(reason.clone());
    }
    if m.liveness == gossip_core::Liveness::Suspect {
        tags["suspect"] = Value::String("true".into());
    }
    json!({
        "Name": m.name,
        "Addr": m.addr.ip().to_string(),
        "Port": m.addr.port(),
        "Tags": tags,
        "Status": status_code(m),
        "ProtocolMin": 1, "ProtocolMax": 1, "ProtocolCur": 1,
        "DelegateMin": 0, "DelegateMax": 0, "DelegateCur": 0,
    })
}

async fn members(State(api): State<Arc<Api>>) -> Response {
    let c = api.handle.catalog.load_full();
    let mut headers = HeaderMap::new();
    headers.insert(
        "X-Gossipd-Self-Preservation",
        HeaderValue::from_static(if c.self_preservation { "true" } else { "false" }),
    );
    (headers, axum::Json(Value::Array(c.members.iter().map(member_json).collect()))).into_response()
}

async fn catalog_services(State(api): State<Arc<Api>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let c = match blocking(&api, &q).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let map: BTreeMap<&str, BTreeSet<&str>> = c
        .services
        .iter()
        .map(|(name, list)| {
            (name.as_str(), list.iter().flat_map(|i| i.service.tags.iter().map(String::as_str)).collect())
        })
        .collect();
    json_with_index(&c, json!(map))
}

fn filter_tag<'a>(
    list: &'a [CatalogInstance],
    q: &HashMap<String, String>,
) -> impl Iterator<Item = &'a CatalogInstance> {
    let tag = q.get("tag").cloned();
    list.iter().filter(move |i| tag.as_ref().is_none_or(|t| i.service.tags.iter().any(|x| x == t)))
}

fn weights(i: &CatalogInstance) -> Value {
    json!({ "Passing": i.service.weight_passing, "Warning": i.service.weight_warning })
}

async fn catalog_service(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let c = match blocking(&api, &q).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let list = c.services.get(&name).map(Vec::as_slice).unwrap_or(&[]);
    let out: Vec<Value> = filter_tag(list, &q)
        .map(|i| {
            json!({
                "ID": uuid(&i.node_id),
                "Node": i.node,
                "Address": i.node_addr.to_string(),
                "Datacenter": DATACENTER,
                "TaggedAddresses": null,
                "NodeMeta": {},
                "ServiceKind": "",
                "ServiceID": i.service.id,
                "ServiceName": i.service.name,
                "ServiceTags": i.service.tags,
                "ServiceAddress": i.service.address.map(|a| a.to_string()).unwrap_or_default(),
                "ServiceMeta": i.service.meta,
                "ServicePort": i.service.port,
                "ServiceWeights": weights(i),
                "ServiceEnableTagOverride": false,
                "CreateIndex": c.index,
                "ModifyIndex": c.index,
            })
        })
        .collect();
    json_with_index(&c, Value::Array(out))
}

async fn catalog_nodes(State(api): State<Arc<Api>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let c = match blocking(&api, &q).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let out: Vec<Value> = c
        .members
        .iter()
        .filter(|m| status_code(m) == 1)
        .map(|m| {
            json!({
                "ID": uuid(&m.id), "Node": m.name, "Address": m.addr.ip().to_string(),
                "Datacenter": DATACENTER, "TaggedAddresses": null, "Meta": {},
            })
        })
        .collect();
    json_with_index(&c, Value::Array(out))
}

fn health_str(h: Health) -> &'static str {
    crate::checks::status_str(h)
}

/// Consul's `HealthCheck` shape.
fn check_json(node: &str, c: &CheckView) -> Value {
    json!({
        "Node": node, "CheckID": c.id, "Name": c.name, "Status": health_str(c.status),
        "Notes": c.notes, "Output": c.output, "ServiceID": c.service_id, "ServiceName": c.service_name,
    })
}

/// `GET /v1/agent/checks`: this agent's checks by id.
async fn agent_checks(State(api): State<Arc<Api>>) -> Response {
    let local = api.handle.checks.load_full();
    let map: serde_json::Map<String, Value> =
        local.checks.iter().map(|(id, c)| (id.clone(), check_json(&local.node, c))).collect();
    axum::Json(Value::Object(map)).into_response()
}

async fn check_update(api: &Api, check_id: String, status: Health, q: &HashMap<String, String>) -> Response {
    let note = q.get("note").cloned().unwrap_or_default();
    let id = check_id.clone();
    match ask(api, |reply| Command::UpdateTtl { check_id, status, note, reply }).await {
        Ok(TtlUpdate::Updated) => StatusCode::OK.into_response(),
        Ok(TtlUpdate::Unknown) => text(StatusCode::NOT_FOUND, format!("Unknown check ID {id:?}")),
        Ok(TtlUpdate::NotTtl) => text(StatusCode::BAD_REQUEST, format!("CheckID {id:?} does not have associated TTL")),
        Err(r) => r,
    }
}

/// `PUT /v1/agent/check/{pass,warn,fail}/:id`.
async fn check_verb(
    State(api): State<Arc<Api>>,
    Path((verb, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let health = match verb.as_str() {
        "pass" => Health::Passing,
        "warn" => Health::Warning,
        "fail" => Health::Critical,
        _ => return text(StatusCode::NOT_FOUND, format!("no such check verb {verb:?}: use pass, warn or fail")),
    };
    check_update(&api, id, health, &q).await
}

/// The checks of one instance: the node's, then the service's. Local services show their real
/// checks; of a remote instance only the aggregate travels, shown as the `service:<id>` check.
fn instance_checks(i: &CatalogInstance, local: &crate::driver::LocalChecks) -> Vec<Value> {
    let mut out = vec![json!({
        "Node": i.node, "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing",
        "Notes": "", "Output": "Agent alive and reachable", "ServiceID": "", "ServiceName": "",
    })];
    let real: Vec<Value> = if i.node_id == local.node_id {
        local.of_service(&i.service.id).map(|c| check_json(&i.node, c)).collect()
    } else {
        Vec::new()
    };
    if real.is_empty() {
        out.push(json!({
            "Node": i.node, "CheckID": format!("service:{}", i.service.id),
            "Name": format!("Service '{}' health", i.service.name), "Status": health_str(i.service.health),
            "Notes": "", "Output": "", "ServiceID": i.service.id, "ServiceName": i.service.name,
        }));
    } else {
        out.extend(real);
    }
    out
}

async fn health_service(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let c = match blocking(&api, &q).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let passing_only = q.contains_key("passing");
    let local = api.handle.checks.load_full();
    let list = c.services.get(&name).map(Vec::as_slice).unwrap_or(&[]);
    let out: Vec<Value> = filter_tag(list, &q)
        .filter(|i| !passing_only || i.service.health == Health::Passing)
        .map(|i| {
            json!({
                "Node": { "ID": uuid(&i.node_id), "Node": i.node, "Address": i.node_addr.to_string(), "Datacenter": DATACENTER },
                "Service": {
                    "ID": i.service.id, "Service": i.service.name, "Tags": i.service.tags,
                    "Address": i.service.address.map(|a| a.to_string()).unwrap_or_default(),
                    "Port": i.service.port, "Meta": i.service.meta, "Weights": weights(i),
                },
                "Checks": instance_checks(i, &local),
            })
        })
        .collect();
    json_with_index(&c, Value::Array(out))
}

/// `GET /v1/operator/keyring`: Consul's shape. Counts are this agent's view only (it does not
/// poll the others): each installed key counts 1.
async fn keyring_list(State(api): State<Arc<Api>>) -> Response {
    match ask(&api, Command::Keyring).await {
        Ok((_, keys)) => {
            let encoded: Vec<String> = keys.iter().map(crate::keys::encode_key).collect();
            let all: serde_json::Map<String, Value> = encoded.iter().map(|k| (k.clone(), json!(1))).collect();
            let primary: serde_json::Map<String, Value> =
                encoded.iter().take(1).map(|k| (k.clone(), json!(1))).collect();
            axum::Json(json!([{
                "WAN": false, "Datacenter": DATACENTER, "Segment": "", "Partition": "",
                "Keys": all, "PrimaryKeys": primary, "NumNodes": 1,
            }]))
            .into_response()
        }
        Err(r) => r,
    }
}

async fn keyring_change(api: &Api, body: &[u8], op: fn([u8; 32]) -> crate::driver::KeyringOp) -> Response {
    #[derive(serde::Deserialize)]
    struct KeyBody {
        #[serde(rename = "Key")]
        key: String,
    }
    let key = match serde_json::from_slice::<KeyBody>(body) {
        Ok(b) => match crate::keys::decode_key(&b.key) {
            Ok(k) => k,
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("Key: {e}")),
        },
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("want {{\"Key\": \"base64\"}}: {e}")),
    };
    match ask(api, |tx| Command::ChangeKeyring(op(key), tx)).await {
        Ok(Ok(_)) => StatusCode::OK.into_response(),
        Ok(Err(e)) => text(StatusCode::BAD_REQUEST, e),
        Err(r) => r,
    }
}

async fn keyring_install(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    keyring_change(&api, &body, crate::driver::KeyringOp::Install).await
}

async fn keyring_use(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    keyring_change(&api, &body, crate::driver::KeyringOp::Use).await
}

async fn keyring_remove(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    keyring_change(&api, &body, crate::driver::KeyringOp::Remove).await
}

/// `GET /metrics`: the Prometheus text exposition.
async fn prometheus(State(api): State<Arc<Api>>) -> Response {
    let (s, sec) = &*api.handle.stats.load_full();
    let c = api.handle.catalog.load_full();
    let dns = api.dns_stats.as_ref().map(|d| d.counts());
    let body = crate::metrics::render(&crate::metrics::Inputs { gossip: s, secure: sec, catalog: &c, dns });
    ([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
}

/// Gossip counters as JSON; `?format=prometheus` answers the Prometheus text instead.
async fn metrics(State(api): State<Arc<Api>>, Query(q): Query<HashMap<String, String>>) -> Response {
    match q.get("format").map(String::as_str) {
        None | Some("json") => {}
        Some("prometheus") => return prometheus(State(api)).await,
        Some(other) => {
            return text(StatusCode::BAD_REQUEST, format!("Invalid format {other:?}: use prometheus or json"));
        }
    }
    let (s, sec) = &*api.handle.stats.load_full();
    let c = api.handle.catalog.load_full();
    let instances: usize = c.services.values().map(Vec::len).sum();
    axum::Json(json!({
        "Gossip": {
            "DatagramsIn": s.datagrams_in, "DatagramsOut": s.datagrams_out,
            "BytesIn": s.bytes_in, "BytesOut": s.bytes_out,
            "DroppedDecode": s.dropped_decode,
            "DroppedMalformed": s.dropped_malformed, "Rounds": s.rounds,
            "DeltasApplied": s.deltas_applied, "RumorsForwarded": s.rumors_forwarded,
            "RumorRetransmits": s.rumor_retransmits,
            "ForgedRecords": s.forged_records,
        },
        "Secure": {
            "HandshakesInitiated": sec.handshakes_initiated, "HandshakesCompleted": sec.handshakes_completed,
            "DroppedUnauthenticated": sec.dropped_unauthenticated, "DecryptFailures": sec.decrypt_failures,
            "Replays": sec.replays, "RateLimited": sec.rate_limited, "CookiesSent": sec.cookies_sent,
            "BannedDrops": sec.banned_drops, "Bans": sec.bans, "KeyRotations": sec.rotations,
            "PinMismatches": sec.pin_mismatches,
        },
        "Catalog": {
            "Index": c.index,
            "Members": c.members.len(),
            "AliveMembers": c.members.iter().filter(|m| status_code(m) == 1).count(),
            "SuspectMembers": c.members.iter().filter(|m| m.liveness == gossip_core::Liveness::Suspect).count(),
            "FailedMembers": c.members.iter().filter(|m| status_code(m) == 4).count(),
            "SelfPreservation": c.self_preservation,
            "Services": c.services.len(),
            "Instances": instances,
        },
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_parse() {
        assert_eq!(parse_wait("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_wait("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_wait("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_wait("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_wait("abc"), None);
        assert_eq!(parse_wait("5y"), None);
    }

    #[test]
    fn uuids_look_like_consul() {
        let id = NodeId([0xab; 16]);
        assert_eq!(uuid(&id), "abababab-abab-abab-abab-abababababab");
    }
}
