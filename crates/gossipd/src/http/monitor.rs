//! `GET /v1/agent/monitor?loglevel=LEVEL`: the agent's log lines, live, as Consul's endpoint
//! streams them (`gossipd monitor`). Plain text, one line per log event, from the moment of the
//! request; `loglevel` is Consul's `trace`, `debug`, `info` (the default), `warn` or `err`,
//! independent of the agent's `--log-level`. Needs the operator token (the [`guard`]): logs
//! name peers, addresses, files and check outputs. The stream ends (a complete chunked
//! response) when the agent stops; a reader slower than the log gets a line saying how many
//! lines it missed instead of them (see [`crate::logstream`] for the bounds).
//!
//! [`guard`]: super::guard

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Params, text};
use crate::logstream::{self, AttachError};

/// `GET /v1/agent/monitor`.
pub async fn monitor(q: Params) -> Response {
    if q.has("logjson") {
        return text(StatusCode::BAD_REQUEST, "logjson is not supported by gossipd: lines are text (see docs/API.md)");
    }
    let level = match q.get("loglevel") {
        None | Some("") => tracing::Level::INFO,
        Some(s) => match logstream::parse_level(s) {
            Some(l) => l,
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("Unknown log level {s:?}: use trace, debug, info, warn or err"),
                );
            }
        },
    };
    let monitor = match logstream::attach(level) {
        Ok(m) => m,
        Err(e @ AttachError::Full) => return text(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
        Err(e) => return text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    // Attached first: this line is the stream's first, so a reader knows it is live.
    tracing::info!(%level, "monitor attached: streaming log lines");
    let lines = futures_util::stream::unfold(monitor, |m| async move {
        m.next().await.map(|line| (Ok::<_, Infallible>(Bytes::from(line)), m))
    });
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
        Body::from_stream(lines),
    )
        .into_response()
}
