//! `/v1/operator/keyring`: list, install, use and remove cluster keys (Consul's shape and verbs).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Api, ask, change, datacenter, text};
use crate::driver::Command;

/// `GET /v1/operator/keyring`: Consul's shape. `NumNodes` counts the live members; each key
/// counts the members that report the keyring in force here (its stamp), so a member that did
/// not take the last change shows as a smaller count.
pub async fn keyring_list(State(api): State<Arc<Api>>) -> Response {
    let (stamp, members) = match ask(&api, Command::KeyringStamps).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let current = members.iter().filter(|(_, s)| *s == Some(stamp)).count();
    let lagging: Vec<&String> = members.iter().filter(|(_, s)| *s != Some(stamp)).map(|(n, _)| n).collect();
    match ask(&api, Command::Keyring).await {
        Ok((_, keys)) => {
            let encoded: Vec<String> = keys.iter().map(crate::keys::encode_key).collect();
            let all: serde_json::Map<String, Value> = encoded.iter().map(|k| (k.clone(), json!(current))).collect();
            let primary: serde_json::Map<String, Value> =
                encoded.iter().take(1).map(|k| (k.clone(), json!(current))).collect();
            axum::Json(json!([{
                "WAN": false, "Datacenter": datacenter(), "Segment": "", "Partition": "",
                "Keys": all, "PrimaryKeys": primary, "NumNodes": members.len(),
                "Stamp": stamp, "NotInForceOn": lagging,
            }]))
            .into_response()
        }
        Err(r) => r,
    }
}

/// After a keyring change took effect here: waits (up to 10 s) until every live member reports
/// the new keyring in force. Returns the members that did not, with the stamp they report.
async fn confirm_everywhere(api: &Api) -> Result<Vec<String>, Response> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (stamp, members) = ask(api, Command::KeyringStamps).await?;
        let lagging: Vec<String> = members
            .iter()
            .filter(|(_, s)| *s != Some(stamp))
            .map(|(n, s)| match s {
                Some(s) => format!("{n} (stamp {s})"),
                None => format!("{n} (no stamp)"),
            })
            .collect();
        if lagging.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(lagging);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
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
        Ok(Ok(_)) => match confirm_everywhere(api).await {
            Ok(lagging) if lagging.is_empty() => StatusCode::OK.into_response(),
            // In force here and spreading, but not everywhere: an error, naming where not.
            Ok(lagging) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "the keyring change is in force on this agent but not on {} after 10 s: {} \
                     (check their clocks and logs; `gossipd keys list` shows where it is not in force)",
                    lagging.len(),
                    lagging.join(", ")
                ),
            ),
            Err(r) => r,
        },
        Ok(Err(e @ crate::driver::KeyringError::Persist(_))) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Ok(Err(e @ crate::driver::KeyringError::Forbidden(_))) => text(StatusCode::FORBIDDEN, e.to_string()),
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
