//! The HTTP API: Consul's agent, catalog, health and status paths and JSON field names, so that
//! tools that speak Consul can read and register (docs/API.md lists every endpoint and how it
//! differs from Consul). Reads come from the swapped-in [`Catalog`]; writes go to the driver as
//! commands. Catalog and health GETs support Consul blocking queries (`?index=&wait=`): the
//! answer is held until the catalog index passes `index` or `wait` runs out (default 5 min, at
//! most 10 min); they carry `X-Consul-Index`.
//!
//! Query parameters every catalog and health read accepts: `dc` (this agent's
//! [`datacenter`], or another one, forwarded through the WAN pool by [`dc`]; one with no path
//! answers 500 "No path to datacenter", as Consul), `near`, `stale`, `consistent`, `cached` (accepted and ignored: every read is this
//! agent's converged view). `filter` and `node-meta` are refused with 400 rather than ignored,
//! since ignoring them would answer more than was asked for.
//!
//! One file per API area: [`agent`], [`catalog`], [`health`], [`status`], [`operator`],
//! [`metrics`], [`monitor`] (the live log); [`guard`] checks every request first (Host, Origin, content type, token) and
//! [`serve`] is the connection loop with its limits and timeouts.

mod agent;
mod catalog;
mod dc;
pub mod guard;
mod health;
mod metrics;
mod monitor;
mod operator;
pub mod query;
pub mod serve;
mod status;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::driver::{Command, Handle, LocalChecks};
use crate::view::{Catalog, Member};
use gossip_core::{NodeId, NodeStatus};

/// The datacenter name when `--datacenter` is not given (gossipd's single name before
/// datacenters existed, so nothing changes for one cluster).
pub const DEFAULT_DATACENTER: &str = "gossip";

static DATACENTER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets this agent's datacenter name, once, at start (`--datacenter`).
pub fn set_datacenter(name: &str) {
    let _ = DATACENTER.set(name.to_ascii_lowercase());
}

/// This agent's datacenter name (lower case): what every answer reports as `Datacenter`.
pub fn datacenter() -> &'static str {
    DATACENTER.get().map_or(DEFAULT_DATACENTER, String::as_str)
}

/// Shared state of the API handlers.
#[derive(Debug, Clone)]
pub struct Api {
    /// The driver.
    pub handle: Handle,
    /// The DNS server's response counters (`None`: not exported).
    pub dns_stats: Option<Arc<dns_front::DnsStats>>,
    /// The DNS domain (`gossip`), shown by the status page.
    pub domain: String,
    /// Exec checks are accepted from the API (`--enable-script-checks`).
    pub script_checks: bool,
    /// Notified by `PUT /v1/agent/leave` (`None`: leaving through the API is not offered).
    pub leave: Option<Arc<tokio::sync::Notify>>,
    /// The WAN pool (`None`: no `--wan-bind`; other datacenters have no path).
    pub wan: Option<crate::wan::WanHandle>,
}

/// The API's routes, each behind the [`guard`].
pub fn router(api: Api, guard: guard::Guard) -> Router {
    let api = Arc::new(api);
    Router::new()
        .route("/v1/agent/self", get(agent::agent_self))
        .route("/v1/agent/leave", put(agent::leave))
        .route("/v1/agent/join/{address}", put(agent::join))
        .route("/v1/agent/force-leave/{node}", put(agent::force_leave))
        .route("/v1/agent/service/register", put(agent::register))
        .route("/v1/agent/service/deregister/{id}", put(agent::deregister))
        .route("/v1/agent/service/{id}", get(agent::service))
        .route("/v1/agent/services", get(agent::services))
        .route("/v1/agent/members", get(agent::members))
        .route("/v1/agent/checks", get(agent::checks))
        .route("/v1/agent/check/{verb}/{id}", put(agent::check_verb))
        .route("/v1/agent/metrics", get(metrics::metrics))
        .route("/v1/agent/monitor", get(monitor::monitor))
        .route("/v1/catalog/datacenters", get(dc::datacenters))
        .route("/v1/catalog/services", get(catalog::services))
        .route("/v1/catalog/service/{name}", get(catalog::service))
        .route("/v1/catalog/nodes", get(catalog::nodes))
        .route("/v1/catalog/node/{node}", get(catalog::node))
        .route("/v1/health/service/{name}", get(health::service))
        .route("/v1/health/checks/{name}", get(health::checks))
        .route("/v1/health/node/{node}", get(health::node))
        .route("/v1/health/state/{state}", get(health::state))
        .route("/v1/query", get(query::list).post(query::create))
        .route("/v1/query/{id}", get(query::one).put(query::update).delete(query::delete))
        .route("/v1/query/{id}/execute", get(query::execute))
        .route("/v1/status/leader", get(status::leader))
        .route("/v1/status/peers", get(status::peers))
        .route("/metrics", get(metrics::prometheus))
        .route("/ui", get(crate::ui::page))
        .route("/ui/", get(crate::ui::page))
        .route("/v1/operator/revocation", put(operator::revocation_add))
        .route("/v1/operator/revocations", get(operator::revocations_list))
        .route(
            "/v1/operator/keyring",
            get(operator::keyring_list)
                .post(operator::keyring_install)
                .put(operator::keyring_use)
                .delete(operator::keyring_remove),
        )
        .with_state(api.clone())
        .layer(axum::middleware::from_fn_with_state(api, dc::forward))
        .layer(axum::middleware::from_fn_with_state(Arc::new(guard), guard::check))
}

/// The query string as (name, value) pairs in order: Consul repeats some parameters (`tag`).
#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The last value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Whether `name` is present (with or without a value: `?passing` counts).
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|e| text(StatusCode::BAD_REQUEST, format!("Invalid query string: {e}")))
    }
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

/// [`ask`] for a change: also waits until the change is in the published views, so that the
/// client's next read on this agent sees it (read-your-writes).
async fn change<T>(api: &Api, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Response> {
    let out = ask(api, make).await?;
    ask(api, Command::Sync).await?;
    Ok(out)
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

/// The parameters every catalog and health read shares: `dc` must name this cluster;
/// `filter` and `node-meta` are refused (see the module documentation).
fn check_read_params(q: &Params) -> Result<(), (StatusCode, String)> {
    if let Some(dc) = q.get("dc").filter(|dc| !dc.is_empty() && !dc.eq_ignore_ascii_case(datacenter())) {
        return Err((StatusCode::INTERNAL_SERVER_ERROR, format!("No path to datacenter {dc:?}")));
    }
    for unsupported in ["filter", "node-meta"] {
        if q.has(unsupported) {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("{unsupported} is not supported by gossipd (see docs/API.md)"),
            ));
        }
    }
    Ok(())
}

/// Checks the shared read parameters, then holds a blocking query until the index passes the
/// one asked for, and returns the catalog.
async fn blocking(api: &Api, q: &Params) -> Result<Arc<Catalog>, Response> {
    check_read_params(q).map_err(|(status, msg)| text(status, msg))?;
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
    headers.insert("X-Consul-LastContact", HeaderValue::from_static("0"));
    (headers, axum::Json(body)).into_response()
}

/// Serf/Consul member status codes: 1 alive (suspects too, as Serf), 3 left, 4 failed.
fn status_code(m: &Member) -> u8 {
    match (m.status, m.liveness) {
        (NodeStatus::Left, _) => 3,
        (NodeStatus::Alive, gossip_core::Liveness::Dead | gossip_core::Liveness::Excluded) => 4,
        (NodeStatus::Alive, _) => 1,
    }
}

/// This agent's own member entry.
fn local_member<'a>(c: &'a Catalog, local: &LocalChecks) -> Option<&'a Member> {
    c.members.iter().find(|m| m.id == local.node_id)
}

fn member_json(m: &Member) -> Value {
    let mut tags = json!({
        "id": uuid(&m.id), "generation": m.generation.to_string(), "dc": datacenter(),
        "identity": crate::keys::encode_key(&m.identity),
    });
    if let Some(reason) = &m.banned {
        tags["banned"] = Value::String(reason.clone());
    }
    if let Some(reason) = &m.excluded {
        tags["excluded"] = Value::String(reason.clone());
    }
    if m.liveness == gossip_core::Liveness::Suspect {
        tags["suspect"] = Value::String("true".into());
    }
    // Consul's names: the wire protocol range the member speaks, and the version spoken with it.
    if let Some(r) = &m.versions {
        tags["vsn_min"] = Value::String(r.min().to_string());
        tags["vsn_max"] = Value::String(r.max().to_string());
    }
    if let Some(v) = m.vsn {
        tags["vsn"] = Value::String(v.to_string());
    }
    json!({
        "Name": m.name,
        "Addr": m.addr.ip().to_string(),
        "Port": m.addr.port(),
        "Tags": tags,
        "Status": status_code(m),
        "ProtocolMin": m.versions.map_or(0, |r| r.min()), "ProtocolMax": m.versions.map_or(0, |r| r.max()),
        "ProtocolCur": m.vsn.unwrap_or(0),
        "DelegateMin": 0, "DelegateMax": 0, "DelegateCur": 0,
    })
}

/// Consul's catalog `Node` shape.
fn node_json(m: &Member) -> Value {
    json!({
        "ID": uuid(&m.id), "Node": m.name, "Address": m.addr.ip().to_string(),
        "Datacenter": datacenter(), "TaggedAddresses": null, "Meta": *m.meta,
        "CreateIndex": 0, "ModifyIndex": 0,
    })
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

    #[test]
    fn read_params() {
        let p = |q: &[(&str, &str)]| Params(q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        assert!(check_read_params(&p(&[("dc", "gossip"), ("near", "_agent"), ("stale", "")])).is_ok());
        assert!(check_read_params(&p(&[("dc", "GOSSIP")])).is_ok());
        assert_eq!(check_read_params(&p(&[("dc", "dc1")])).unwrap_err().0, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(check_read_params(&p(&[("filter", "x")])).unwrap_err().0, StatusCode::BAD_REQUEST);
        let q = p(&[("tag", "a"), ("passing", ""), ("tag", "b")]);
        assert_eq!(q.all("tag").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(q.get("tag"), Some("b"));
        assert!(q.has("passing") && !q.has("near"));
    }
}
