//! `/v1/health/...`: instances with their checks. A local service shows its real checks; of a
//! remote instance the aggregate status travels by gossip, shown as one `service:<id>` check,
//! whose `Output` is the owner's check note (why it is not passing, bounded) when it has one. Every node has Consul's `serfHealth` check, passing while the node is alive (only
//! alive nodes' instances are in the catalog).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use gossip_core::Health;
use serde_json::{Value, json};

use super::catalog::weights;
use super::{Api, Params, blocking, datacenter, json_with_index, status_code, uuid};
use crate::driver::{CheckView, LocalChecks};
use crate::view::{Catalog, CatalogInstance};

/// Consul's `HealthCheck` shape.
pub(super) fn check_json(node: &str, c: &CheckView) -> Value {
    json!({
        "Node": node, "CheckID": c.id, "Name": c.name, "Status": crate::checks::status_str(c.status),
        "Notes": c.notes, "Output": c.output, "ServiceID": c.service_id, "ServiceName": c.service_name,
        "Type": "", "Definition": {}, "CreateIndex": 0, "ModifyIndex": 0,
    })
}

fn serf_health(node: &str) -> Value {
    json!({
        "Node": node, "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing",
        "Notes": "", "Output": "Agent alive and reachable", "ServiceID": "", "ServiceName": "",
        "Type": "", "Definition": {}, "CreateIndex": 0, "ModifyIndex": 0,
    })
}

/// The service checks of one instance (without `serfHealth`).
fn service_checks(i: &CatalogInstance, local: &LocalChecks) -> Vec<Value> {
    let real: Vec<Value> = if i.node.id == local.node_id {
        local.of_service(&i.service.id).map(|c| check_json(&i.node.name, c)).collect()
    } else {
        Vec::new()
    };
    if !real.is_empty() {
        return real;
    }
    vec![json!({
        "Node": &*i.node.name, "CheckID": format!("service:{}", i.service.id),
        "Name": format!("Service '{}' health", i.service.name),
        "Status": crate::checks::status_str(i.service.health),
        "Notes": "", "Output": i.note.as_deref().unwrap_or(""), "ServiceID": i.service.id, "ServiceName": i.service.name,
        "Type": "", "Definition": {}, "CreateIndex": 0, "ModifyIndex": 0,
    })]
}

/// `GET /v1/health/service/:name` (`?passing`, `?tag=` repeatable).
pub async fn service(State(api): State<Arc<Api>>, Path(name): Path<String>, q: Params) -> Response {
    let c = match blocking(&api, &q).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    // Consul: `passing` present (any value but "false"/"0") keeps passing instances only.
    let passing_only = q.has("passing") && !matches!(q.get("passing"), Some("false" | "0"));
    let local = api.handle.checks.load_full();
    let tags: Vec<String> = q.all("tag").map(str::to_owned).collect();
    let out = entries(&c, &local, &name, &tags, passing_only);
    json_with_index(&c, Value::Array(out))
}

/// Consul's health entries of service `name`: instances with every tag of `tags`, passing only
/// if `passing_only`.
pub(super) fn entries(c: &Catalog, local: &LocalChecks, name: &str, tags: &[String], passing_only: bool) -> Vec<Value> {
    let list = super::catalog::instances_named(c, name);
    list.into_iter()
        .filter(|i| tags.iter().all(|t| i.service.tags.iter().any(|x| x == t)))
        .filter(|i| !passing_only || i.service.health == Health::Passing)
        .map(|i| {
            let mut checks = vec![serf_health(&i.node.name)];
            checks.extend(service_checks(i, local));
            json!({
                "Node": {
                    "ID": uuid(&i.node.id), "Node": &*i.node.name, "Address": i.node.addr.to_string(),
                    "Datacenter": datacenter(), "TaggedAddresses": null, "Meta": *i.node.meta,
                },
                "Service": {
                    "ID": i.service.id, "Service": i.service.name, "Tags": i.service.tags,
                    "Address": i.service.address.map(|a| a.to_string()).unwrap_or_default(),
                    "Port": i.service.port, "Meta": i.service.meta.to_map(), "Weights": weights(i),
                    "EnableTagOverride": false, "Datacenter": datacenter(),
                },
                "Checks": checks,
            })
        })
        .collect()
}

/// `GET /v1/health/checks/:name`: the checks of every instance of a service.
pub async fn checks(State(api): State<Arc<Api>>, Path(name): Path<String>, q: Params) -> Response {
    let c = match blocking(&api, &q).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let local = api.handle.checks.load_full();
    let list = super::catalog::instances_named(&c, &name);
    let out: Vec<Value> = list.into_iter().flat_map(|i| service_checks(i, &local)).collect();
    json_with_index(&c, Value::Array(out))
}

/// `GET /v1/health/node/:node`: `serfHealth` and the checks of the node's services; an empty
/// list for a node that is not alive or unknown.
pub async fn node(State(api): State<Arc<Api>>, Path(name): Path<String>, q: Params) -> Response {
    let c = match blocking(&api, &q).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(m) = c.members.iter().find(|m| m.name == name && status_code(m) == 1) else {
        return json_with_index(&c, json!([]));
    };
    let local = api.handle.checks.load_full();
    let mut out = vec![serf_health(&m.name)];
    out.extend(c.instances().filter(|i| i.node.id == m.id).flat_map(|i| service_checks(i, &local)));
    json_with_index(&c, Value::Array(out))
}

/// `GET /v1/health/state/:state` (`any`, `passing`, `warning`, `critical`): every check in that
/// state, `serfHealth` of each alive node included (always passing). 400 for another state.
pub async fn state(State(api): State<Arc<Api>>, Path(wanted): Path<String>, q: Params) -> Response {
    if !["any", "passing", "warning", "critical"].contains(&wanted.as_str()) {
        return super::text(
            axum::http::StatusCode::BAD_REQUEST,
            format!("Invalid check state {wanted:?}: use any, passing, warning or critical"),
        );
    }
    let c = match blocking(&api, &q).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let local = api.handle.checks.load_full();
    let alive = c.members.iter().filter(|m| status_code(m) == 1).map(|m| serf_health(&m.name));
    let services = c.instances().flat_map(|i| service_checks(i, &local));
    let out: Vec<Value> =
        alive.chain(services).filter(|ch| wanted == "any" || ch["Status"].as_str() == Some(wanted.as_str())).collect();
    json_with_index(&c, Value::Array(out))
}
