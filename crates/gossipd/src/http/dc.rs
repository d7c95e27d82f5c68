//! Reads of other datacenters: a catalog or health `GET` with `?dc=` naming another datacenter
//! is forwarded through the WAN pool ([`crate::wan`]) to an agent of that datacenter, which
//! answers it as it would a local client (its own guard and tokens; the caller's token is
//! passed along); its status, body and `X-Consul-Index` come back as they are. A blocking read
//! (`index`, `wait`) is asked again and again, each time held there at most half a second and
//! answered without a body while its index has not moved, until it moves or the wait is over. A datacenter with no reachable WAN member, or none that answers within the
//! WAN pool's bound (about 2 s), answers 500 "No path to datacenter", as Consul.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Api, datacenter, text};

/// The `dc` a read names, when it is another datacenter than this one.
fn other_dc(query: Option<&str>) -> Option<String> {
    let dc = query?.split('&').filter_map(|kv| kv.strip_prefix("dc=")).next_back()?;
    (!dc.is_empty() && !dc.eq_ignore_ascii_case(datacenter())).then(|| dc.to_ascii_lowercase())
}

/// A blocking read's `index` and how long to wait (Consul's default 5 min, at most 10).
fn blocking_params(query: &str) -> Result<Option<(u64, Duration)>, String> {
    let get = |k: &str| query.split('&').filter_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')).next_back();
    let Some(index) = get("index") else { return Ok(None) };
    let index = index.parse::<u64>().map_err(|_| format!("Invalid index {index:?}: must be an unsigned integer"))?;
    let wait = match get("wait") {
        None => Duration::from_secs(300),
        Some(w) => super::parse_wait(w).ok_or(format!("Invalid wait {w:?}: use e.g. 10s, 5m"))?,
    };
    Ok(Some((index, wait.min(Duration::from_secs(600)))))
}

/// The query string without `dc`, `index` and `wait`.
fn forwarded_query(query: &str) -> String {
    query
        .split('&')
        .filter(|kv| {
            let key = kv.split('=').next().unwrap_or("");
            !matches!(key, "dc" | "index" | "wait") && !kv.is_empty()
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Whether `path` is a read that may be forwarded.
fn forwardable(method: &Method, path: &str) -> bool {
    method == Method::GET && crate::wan::forwardable_path(path)
}

/// The middleware: forwards reads of other datacenters, passes everything else on.
pub async fn forward(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let Some(dc) = other_dc(req.uri().query()).filter(|_| forwardable(req.method(), req.uri().path())) else {
        return next.run(req).await;
    };
    let Some(wan) = api.wan.as_ref() else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, crate::wan::no_path(&dc));
    };
    if !wan.knows(&dc) {
        return text(StatusCode::INTERNAL_SERVER_ERROR, crate::wan::no_path(&dc));
    }
    let query = forwarded_query(req.uri().query().unwrap_or(""));
    let path = if query.is_empty() { req.uri().path().to_string() } else { format!("{}?{query}", req.uri().path()) };
    let token = req
        .headers()
        .get("x-consul-token")
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.headers().get("authorization").and_then(|v| v.to_str().ok()?.strip_prefix("Bearer ")))
        .map(str::to_string);
    let blocking = match blocking_params(req.uri().query().unwrap_or("")) {
        Ok(b) => b,
        Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
    };
    // A blocking read asks again, each time held there briefly, until the index moves (any
    // change: another agent of that datacenter has another index) or the wait is over; an
    // unchanged answer carries no body. At the end, one plain read answers the client.
    let answer = match blocking {
        None => wan.http_get(&dc, &path, token.as_deref()).await,
        Some((index, wait)) => {
            let deadline = tokio::time::Instant::now() + wait;
            let sep = if path.contains('?') { '&' } else { '?' };
            let held = format!("{path}{sep}index={index}&wait={}ms", crate::wan::BLOCK_SLICE.as_millis());
            loop {
                if tokio::time::Instant::now() >= deadline {
                    break wan.http_get(&dc, &path, token.as_deref()).await;
                }
                let asked = tokio::time::Instant::now();
                match wan.http_get(&dc, &held, token.as_deref()).await {
                    // Spaced even if the other side answers at once: never a hot loop.
                    Ok((crate::wan::UNCHANGED, _, _)) => {
                        tokio::time::sleep_until((asked + crate::wan::BLOCK_SLICE / 2).min(deadline)).await;
                    }
                    other => break other,
                }
            }
        }
    };
    match answer {
        Ok((status, index, body)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut resp = (status, body).into_response();
            let h = resp.headers_mut();
            h.insert("content-type", HeaderValue::from_static("application/json"));
            h.insert("X-Consul-Index", HeaderValue::from(index));
            h.insert("X-Consul-KnownLeader", HeaderValue::from_static("true"));
            h.insert("X-Gossipd-Datacenter", HeaderValue::from_str(&dc).unwrap_or(HeaderValue::from_static("")));
            resp
        }
        Err(msg) => {
            tracing::warn!(%dc, reason = %msg, "a read of another datacenter failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, crate::wan::no_path(&dc))
        }
    }
}

/// `GET /v1/catalog/datacenters`: this datacenter first, then every datacenter the WAN pool
/// knows, nearest first (by measured round trip; unmeasured ones last, by name).
pub async fn datacenters(State(api): State<Arc<Api>>) -> Response {
    let names: Vec<String> = match api.wan.as_ref() {
        Some(wan) => wan.datacenters().await.into_iter().map(|d| d.name).collect(),
        None => vec![datacenter().to_string()],
    };
    axum::Json(json!(names)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dc_parameter_and_what_is_forwarded() {
        assert_eq!(other_dc(Some("dc=dc2")), Some("dc2".into()));
        assert_eq!(other_dc(Some("passing&dc=DC2&tag=a")), Some("dc2".into()));
        assert_eq!(other_dc(Some("dc=gossip")), None, "the local datacenter");
        assert_eq!(other_dc(Some("dc=")), None);
        assert_eq!(other_dc(Some("xdc=dc2")), None);
        assert_eq!(other_dc(None), None);
        assert_eq!(forwarded_query("dc=dc2&passing&index=5&wait=10s&tag=a"), "passing&tag=a");
        assert!(forwardable(&Method::GET, "/v1/health/service/web"));
        assert!(forwardable(&Method::GET, "/v1/catalog/nodes"));
        assert!(!forwardable(&Method::GET, "/v1/catalog/datacenters"));
        assert!(!forwardable(&Method::PUT, "/v1/catalog/register"));
        assert!(!forwardable(&Method::GET, "/v1/agent/services"));
    }
}
