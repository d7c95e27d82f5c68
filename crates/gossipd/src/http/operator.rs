//! `/v1/operator/keyring`: list, install, use and remove cluster keys (Consul's shape and verbs).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Api, DATACENTER, ask, change, text};
use crate::driver::Command;

/// `GET /v1/operator/keyring`: Consul's shape. Counts are this agent's view only (it does not
/// poll the others): each installed key counts 1.
pub async fn keyring_list(State(api): State<Arc<Api>>) -> Response {
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
    match change(api, |tx| Command::ChangeKeyring(op(key), tx)).await {
        Ok(Ok(_)) => StatusCode::OK.into_response(),
        Ok(Err(e @ crate::driver::KeyringError::Persist(_))) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Ok(Err(e)) => text(StatusCode::BAD_REQUEST, e.to_string()),
        Err(r) => r,
    }
}

pub async fn keyring_install(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    keyring_change(&api, &body, crate::driver::KeyringOp::Install).await
}

pub async fn keyring_use(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    keyring_change(&api, &body, crate::driver::KeyringOp::Use).await
}

pub async fn keyring_remove(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    keyring_change(&api, &body, crate::driver::KeyringOp::Remove).await
}

/// `PUT /v1/operator/revocation` (`{"Revocation": "-----BEGIN GOSSIPD REVOCATION-----..."}`):
/// installs a CA-signed revocation here; it spreads to every agent.
pub async fn revocation_add(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    struct RevBody {
        #[serde(rename = "Revocation")]
        revocation: String,
    }
    let revs = match serde_json::from_slice::<RevBody>(&body) {
        Ok(b) => match crate::ca::revocations_from_pem(&b.revocation) {
            Ok(r) if !r.is_empty() => r,
            Ok(_) => return text(StatusCode::BAD_REQUEST, "Revocation: no -----BEGIN GOSSIPD REVOCATION----- block"),
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("Revocation: {e:#}")),
        },
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("want {{\"Revocation\": \"...\"}}: {e}")),
    };
    for r in revs {
        match change(&api, |tx| Command::AddRevocation(r, tx)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return text(StatusCode::FORBIDDEN, e),
            Err(resp) => return resp,
        }
    }
    StatusCode::OK.into_response()
}

/// `GET /v1/operator/revocations`: the revocations in force here.
pub async fn revocations_list(State(api): State<Arc<Api>>) -> Response {
    match ask(&api, Command::Revocations).await {
        Ok(revs) => {
            let list: Vec<Value> = revs
                .iter()
                .map(|r| {
                    json!({
                        "NodeID": r.identity.node_id().to_hex(),
                        "Identity": crate::keys::encode_key(&r.identity.0),
                        "Issuer": crate::keys::encode_key(&r.issuer.0),
                        "NotAfter": r.not_after,
                    })
                })
                .collect();
            axum::Json(Value::Array(list)).into_response()
        }
        Err(r) => r,
    }
}
