//! `/v1/catalog/...`: the cluster's services and nodes, as this agent's converged view has them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Api, Params, blocking, datacenter, json_with_index, node_json, status_code, uuid};
use crate::view::{Catalog, CatalogInstance};

/// `GET /v1/catalog/services`: service names with the union of their instances' tags.
pub async fn services(State(api): State<Arc<Api>>, q: Params) -> Response {
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

/// The instances of the service `name`, matched ignoring ASCII case (as DNS matches it).
pub(super) fn instances_named<'a>(c: &'a Catalog, name: &str) -> Vec<&'a CatalogInstance> {
    c.services.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).flat_map(|(_, v)| v.iter()).collect()
}

/// The instances that carry every `tag` asked for (Consul: repeated `tag` parameters AND).
pub(super) fn filter_tags<'a>(list: Vec<&'a CatalogInstance>, q: &Params) -> impl Iterator<Item = &'a CatalogInstance> {
    let tags: Vec<String> = q.all("tag").map(str::to_owned).collect();
    list.into_iter().filter(move |i| tags.iter().all(|t| i.service.tags.iter().any(|x| x == t)))
}

pub(super) fn weights(i: &CatalogInstance) -> Value {
    json!({ "Passing": i.service.weight_passing, "Warning": i.service.weight_warning })
}

/// `GET /v1/catalog/service/:name` (`?tag=` repeatable).
pub async fn service(State(api): State<Arc<Api>>, Path(name): Path<String>, q: Params) -> Response {
    let c = match blocking(&api, &q).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let list = instances_named(&c, &name);
    let out: Vec<Value> = filter_tags(list, &q)
        .map(|i| {
            json!({
                "ID": uuid(&i.node.id),
                "Node": &*i.node.name,
                "Address": i.node.addr.to_string(),
                "Datacenter": datacenter(),
                "TaggedAddresses": null,
                "NodeMeta": *i.node.meta,
                "ServiceKind": "",
                "ServiceID": i.service.id,
                "ServiceName": i.service.name,
                "ServiceTags": i.service.tags,
                "ServiceAddress": i.service.address.map(|a| a.to_string()).unwrap_or_default(),
                "ServiceMeta": i.service.meta.to_map(),
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

/// `GET /v1/catalog/nodes`: the alive members.
pub async fn nodes(State(api): State<Arc<Api>>, q: Params) -> Response {
    let c = match blocking(&api, &q).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let out: Vec<Value> = c.members.iter().filter(|m| status_code(m) == 1).map(node_json).collect();
    json_with_index(&c, Value::Array(out))
}

/// `GET /v1/catalog/node/:node`: the node and its services by id; `null` (200) for a node that
/// is not alive or unknown, as Consul answers.
pub async fn node(State(api): State<Arc<Api>>, Path(name): Path<String>, q: Params) -> Response {
    let c = match blocking(&api, &q).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(m) = c.members.iter().find(|m| m.name == name && status_code(m) == 1) else {
        return json_with_index(&c, Value::Null);
    };
    let services: serde_json::Map<String, Value> = c
        .instances()
        .filter(|i| i.node.id == m.id)
        .map(|i| {
            let v = json!({
                "ID": i.service.id, "Service": i.service.name, "Tags": i.service.tags,
                "Address": i.service.address.map(|a| a.to_string()).unwrap_or_default(),
                "Meta": i.service.meta.to_map(), "Port": i.service.port, "Weights": weights(i),
                "EnableTagOverride": false, "Datacenter": datacenter(),
                "CreateIndex": c.index, "ModifyIndex": c.index,
            });
            (i.service.id.clone(), v)
        })
        .collect();
    json_with_index(&c, json!({ "Node": node_json(m), "Services": services }))
}
