//! `/v1/query`: Consul's prepared queries (see [`crate::query`] for where they live and how
//! they fail over). Create, list, read, update and delete, and `GET /v1/query/:id/execute` (by
//! ID or by name), which DNS `NAME.query.<domain>` runs too ([`Executor`]).

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Api, Params, change, datacenter, text};
use crate::driver::{Command, LocalChecks};
use crate::query::{PreparedQuery, QueryRequest, new_id};
use crate::view::Catalog;

/// What an execution found.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    /// The query's service.
    pub service: String,
    /// Where the instances are.
    pub datacenter: String,
    /// Datacenters tried after this one.
    pub failovers: usize,
    /// Consul's health entries (`Node`, `Service`, `Checks`).
    pub nodes: Vec<Value>,
}

/// Runs prepared queries: for the HTTP API and for the DNS server's hook.
#[derive(Debug, Clone)]
pub struct Executor {
    /// The catalog.
    pub catalog: Arc<ArcSwap<Catalog>>,
    /// The local checks (shown for local instances).
    pub checks: Arc<ArcSwap<LocalChecks>>,
    /// The WAN pool, for failover.
    pub wan: Option<crate::wan::WanHandle>,
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An entry none of whose checks is critical.
fn not_critical(entry: &Value) -> bool {
    entry["Checks"].as_array().is_none_or(|cs| cs.iter().all(|c| c["Status"] != "critical"))
}

impl Executor {
    /// The query named by `key` (its ID, else its name), with its holder.
    pub fn find(&self, key: &str) -> Option<PreparedQuery> {
        let c = self.catalog.load();
        let by_id = c.queries.iter().find(|(_, q)| q.id == key);
        by_id.or_else(|| c.queries.iter().find(|(_, q)| q.name.eq_ignore_ascii_case(key))).map(|(_, q)| q.clone())
    }

    /// Executes the query named by `key`; `None` if there is none.
    pub async fn execute(&self, key: &str) -> Option<Executed> {
        let q = self.find(key)?;
        let s = &q.service;
        let local = datacenter().to_string();
        let c = self.catalog.load_full();
        let checks = self.checks.load_full();
        let nodes: Vec<Value> = super::health::entries(&c, &checks, &s.service, &s.tags, s.only_passing)
            .into_iter()
            .filter(not_critical)
            .collect();
        if !nodes.is_empty() {
            return Some(Executed { service: s.service.clone(), datacenter: local, failovers: 0, nodes });
        }
        let Some(wan) = self.wan.as_ref() else {
            return Some(Executed { service: s.service.clone(), datacenter: local, failovers: 0, nodes });
        };
        let by_distance: Vec<String> = wan.datacenters().await.into_iter().map(|d| d.name).collect();
        let order = q.failover_order(&local, &by_distance);
        let mut path = format!("/v1/health/service/{}?", encode(&s.service));
        for t in &s.tags {
            path.push_str(&format!("tag={}&", encode(t)));
        }
        if s.only_passing {
            path.push_str("passing");
        }
        for (k, dc) in order.iter().enumerate() {
            match wan.http_get(dc, path.trim_end_matches(['&', '?']), None).await {
                Ok((200, _, body)) => {
                    let list: Vec<Value> = serde_json::from_slice::<Vec<Value>>(&body).unwrap_or_default();
                    let nodes: Vec<Value> = list.into_iter().filter(not_critical).collect();
                    if !nodes.is_empty() {
                        return Some(Executed {
                            service: s.service.clone(),
                            datacenter: dc.clone(),
                            failovers: k + 1,
                            nodes,
                        });
                    }
                }
                Ok((status, _, body)) => {
                    tracing::debug!(%dc, status, body = %String::from_utf8_lossy(&body), "failover datacenter refused the read")
                }
                Err(e) => tracing::debug!(%dc, error = %e, "failover datacenter not reached"),
            }
        }
        Some(Executed { service: s.service.clone(), datacenter: local, failovers: order.len(), nodes: Vec::new() })
    }
}

impl dns_front::server::Remote for Executor {
    fn query(
        &self,
        dc: String,
        query: Vec<u8>,
        tcp: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send>> {
        let wan = self.wan.clone();
        Box::pin(async move {
            match wan {
                Some(w) => w.dns(dc, query, tcp).await,
                None => None,
            }
        })
    }

    fn prepared(
        &self,
        name: String,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Option<(Vec<dns_front::Instance>, Vec<dns_front::Node>)>> + Send>,
    > {
        let ex = self.clone();
        Box::pin(async move {
            let found = ex.execute(&name).await?;
            let local = found.datacenter == datacenter();
            let mut nodes = Vec::new();
            let instances = found
                .nodes
                .iter()
                .filter_map(|e| {
                    let node = e["Node"]["Node"].as_str()?.to_string();
                    let node_addr: std::net::IpAddr = e["Node"]["Address"].as_str()?.parse().ok()?;
                    let address = e["Service"]["Address"].as_str().and_then(|a| a.parse().ok()).unwrap_or(node_addr);
                    if local {
                        nodes.push(dns_front::Node {
                            name: node.clone(),
                            address: node_addr,
                            alive: true,
                            meta: Vec::new(),
                        });
                    }
                    Some(dns_front::Instance {
                        service: name.as_str().into(),
                        id: e["Service"]["ID"].as_str().unwrap_or("").into(),
                        node: node.into(),
                        address,
                        port: e["Service"]["Port"].as_u64().and_then(|p| u16::try_from(p).ok())?,
                        tags: Vec::new().into(),
                        weight: e["Service"]["Weights"]["Passing"].as_u64().map_or(1, |w| w.clamp(1, 65535) as u16),
                        health: dns_front::Health::Passing,
                    })
                })
                .collect();
            Some((instances, nodes))
        })
    }
}

fn query_json(holder: &str, q: &PreparedQuery) -> Value {
    json!({ "ID": q.id, "Name": q.name, "Service": q.service, "Holder": holder, "Datacenter": datacenter() })
}

/// `GET /v1/query`: every prepared query of this datacenter.
pub async fn list(State(api): State<Arc<Api>>) -> Response {
    let c = api.handle.catalog.load_full();
    axum::Json(Value::Array(c.queries.iter().map(|(h, q)| query_json(h, q)).collect())).into_response()
}

/// `GET /v1/query/:id`: one, as a list of one (Consul's shape); 404 if unknown.
pub async fn one(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    let c = api.handle.catalog.load_full();
    match c.queries.iter().find(|(_, q)| q.id == id) {
        Some((h, q)) => axum::Json(json!([query_json(h, q)])).into_response(),
        None => text(StatusCode::NOT_FOUND, "Query not found"),
    }
}

fn parse_request(body: &Bytes) -> Result<QueryRequest, (StatusCode, String)> {
    serde_json::from_slice::<QueryRequest>(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("Failed to decode request body: {e}")))
}

/// Checks that no other query of the datacenter holds `name`.
fn name_free(api: &Api, name: &str, id: &str) -> Result<(), (StatusCode, String)> {
    let c = api.handle.catalog.load_full();
    match c.queries.iter().find(|(_, q)| q.name.eq_ignore_ascii_case(name) && q.id != id) {
        Some((h, q)) => Err((
            StatusCode::BAD_REQUEST,
            format!(
                "Name {name:?} is already in use by query {} (held by {h}): names are unique in a datacenter",
                q.id
            ),
        )),
        None => Ok(()),
    }
}

async fn store(api: &Api, q: PreparedQuery) -> Result<(), Response> {
    if let Err(e) = q.validate() {
        return Err(text(StatusCode::BAD_REQUEST, e));
    }
    name_free(api, &q.name, &q.id).map_err(|(s, m)| text(s, m))?;
    match change(api, |tx| Command::PutQuery(q, tx)).await? {
        Ok(()) => Ok(()),
        Err(e) => Err(text(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

/// `POST /v1/query`: creates one, held by this agent; answers `{"ID": ...}`.
pub async fn create(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err((s, m)) => return text(s, m),
    };
    let Ok(id) = new_id() else { return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot draw an ID") };
    let q = PreparedQuery { id: id.clone(), name: req.name, service: req.service };
    match store(&api, q).await {
        Ok(()) => axum::Json(json!({ "ID": id })).into_response(),
        Err(r) => r,
    }
}

/// Whether this agent holds query `id`: Ok(true) here, Ok(false) unknown, Err(holder) elsewhere.
fn holder(api: &Api, id: &str) -> Result<bool, String> {
    let c = api.handle.catalog.load_full();
    let me = api.handle.checks.load().node.clone();
    match c.queries.iter().find(|(_, q)| q.id == id) {
        Some((h, _)) if *h == me => Ok(true),
        Some((h, _)) => Err(h.clone()),
        None => Ok(false),
    }
}

/// `PUT /v1/query/:id`: replaces one this agent holds.
pub async fn update(State(api): State<Arc<Api>>, Path(id): Path<String>, body: Bytes) -> Response {
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err((s, m)) => return text(s, m),
    };
    match holder(&api, &id) {
        Ok(true) => {}
        Ok(false) => return text(StatusCode::NOT_FOUND, "Query not found"),
        Err(h) => return text(StatusCode::BAD_REQUEST, format!("query {id} is held by agent {h}: change it there")),
    }
    if req.id.as_deref().is_some_and(|x| !x.is_empty() && x != id) {
        return text(StatusCode::BAD_REQUEST, "ID in the body differs from the path's");
    }
    match store(&api, PreparedQuery { id, name: req.name, service: req.service }).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(r) => r,
    }
}

/// `DELETE /v1/query/:id`: deletes one this agent holds.
pub async fn delete(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    match holder(&api, &id) {
        Ok(true) => {}
        Ok(false) => return text(StatusCode::NOT_FOUND, "Query not found"),
        Err(h) => return text(StatusCode::BAD_REQUEST, format!("query {id} is held by agent {h}: delete it there")),
    }
    match change(&api, |tx| Command::DeleteQuery(id, tx)).await {
        Ok(Ok(_)) => StatusCode::OK.into_response(),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(r) => r,
    }
}

/// `GET /v1/query/:id/execute` (by ID or name).
pub async fn execute(State(api): State<Arc<Api>>, Path(key): Path<String>, q: Params) -> Response {
    if let Err((status, msg)) = super::check_read_params(&q) {
        return text(status, msg);
    }
    let ex = Executor { catalog: api.handle.catalog.clone(), checks: api.handle.checks.clone(), wan: api.wan.clone() };
    match ex.execute(&key).await {
        Some(e) => axum::Json(json!({
            "Service": e.service, "Nodes": e.nodes, "DNS": { "TTL": "" },
            "Datacenter": e.datacenter, "Failovers": e.failovers,
        }))
        .into_response(),
        None => text(StatusCode::NOT_FOUND, "Query not found"),
    }
}
