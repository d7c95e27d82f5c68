//! `GET /v1/status/leader` and `GET /v1/status/peers`.
//!
//! gossipd has no servers, no leader and no Raft peers: every agent answers reads for the whole
//! cluster and writes for itself. Tools poll these endpoints to learn whether the agent is
//! ready and whom it can reach, so each agent answers as its own leader (its gossip address)
//! and lists every alive member as a peer. The answers never block and never say "no leader".

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{Api, local_member, status_code};

/// `GET /v1/status/leader`: this agent's gossip address, `"IP:PORT"`.
pub async fn leader(State(api): State<Arc<Api>>) -> Response {
    let c = api.handle.catalog.load_full();
    let local = api.handle.checks.load_full();
    let addr = local_member(&c, &local).map(|m| m.addr.to_string()).unwrap_or_default();
    axum::Json(Value::String(addr)).into_response()
}

/// `GET /v1/status/peers`: the gossip addresses of every alive member, this agent included.
pub async fn peers(State(api): State<Arc<Api>>) -> Response {
    let c = api.handle.catalog.load_full();
    let peers: Vec<String> = c.members.iter().filter(|m| status_code(m) == 1).map(|m| m.addr.to_string()).collect();
    axum::Json(peers).into_response()
}
