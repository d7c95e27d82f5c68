//! The door check every HTTP request passes before its handler (docs/SECURITY.md, "The
//! agent's own host"), in this order:
//!
//! 1. **Host** (DNS rebinding): the `Host` header must be an IP literal, `localhost`, or a name
//!    in `--http-allowed-hosts` (any port). A page on `rebind.evil.example` whose name was
//!    re-pointed at 127.0.0.1 sends `Host: rebind.evil.example`: refused, 403.
//! 2. **Origin** (cross-site requests): a request carrying `Origin` must come from the agent's
//!    own origin, `http://<Host header>`; `Sec-Fetch-Site: cross-site|same-site` is refused
//!    too. Browsers send `Origin` with every cross-origin request but a plain GET navigation.
//! 3. **Content type**: a write (`PUT`, `POST`, `DELETE`, ...) with `Content-Type: text/plain`
//!    or `multipart/form-data` is refused with 415. Those are the types an HTML form or a
//!    `no-cors` fetch may send across sites without a CORS preflight; no Consul client sends
//!    them (curl's `-d` sends `application/x-www-form-urlencoded`, which stays accepted for
//!    compatibility: such a request from a page carries an `Origin` and is refused by 2).
//! 4. **Token**: `/v1/operator/...`, `/v1/agent/leave`, `/v1/agent/force-leave/...` and
//!    `/v1/agent/monitor` (the live log) always need the operator token; writes need a write token
//!    when `--http-require-token` is `write` or `read`; reads need a read token when it is
//!    `read`. A token that is presented but unknown is refused even where none is needed, as
//!    Consul's "ACL not found".

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::cli::RequireToken;
use crate::tokens::{Power, Tokens};

/// What the door checks against.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The configured tokens.
    pub tokens: Tokens,
    /// Which requests need a token besides the operator endpoints.
    pub require: RequireToken,
    /// Host names accepted besides IP literals and `localhost` (lower case, no trailing dot).
    pub allowed_hosts: Vec<String>,
}

impl Guard {
    /// Whether this request may reach its handler; the refusal's status and message if not.
    pub fn admit(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
        let host = header(headers, "host");
        if let Some(host) = host {
            let name = host_name(host);
            if !self.host_allowed(&name) {
                return Err((
                    StatusCode::FORBIDDEN,
                    format!(
                        "Host {host:?} is not allowed: this agent answers for IP addresses, localhost and the names \
                         in --http-allowed-hosts (DNS rebinding protection)"
                    ),
                ));
            }
        }
        if let Some(origin) = header(headers, "origin") {
            let own = host.map(|h| format!("http://{h}"));
            if own.as_deref().is_none_or(|own| !own.eq_ignore_ascii_case(origin)) {
                return Err((
                    StatusCode::FORBIDDEN,
                    format!(
                        "cross-origin request refused: Origin {origin:?} is not this agent's own ({})",
                        own.as_deref().unwrap_or("no Host header")
                    ),
                ));
            }
        }
        let site = header(headers, "sec-fetch-site").unwrap_or_default();
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            return Err((StatusCode::FORBIDDEN, format!("cross-site request refused (Sec-Fetch-Site: {site})")));
        }
        let write = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if let Some(ct) = header(headers, "content-type").filter(|_| write) {
            let mime = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            if mime == "text/plain" || mime == "multipart/form-data" {
                return Err((
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "Content-Type {mime} is refused for {method}: send application/json or no Content-Type \
                         (a web page may send {mime} across sites without asking)"
                    ),
                ));
            }
        }
        let path = uri.path();
        // Leaving stops the agent: as strong as any operator action. The live log names
        // peers, files and check outputs: the operator's, as the agent's own log file is.
        let needed = if path == "/v1/operator"
            || path.starts_with("/v1/operator/")
            || path == "/v1/agent/leave"
            || path == "/v1/agent/monitor"
            || path.starts_with("/v1/agent/force-leave/")
        {
            Some(Power::Operator)
        } else if write {
            (self.require >= RequireToken::Write).then_some(Power::Write)
        } else {
            (self.require >= RequireToken::Read).then_some(Power::Read)
        };
        match (presented_token(uri, headers), needed) {
            (Some(token), needed) => match (self.tokens.power_of(&token), needed) {
                (None, _) => Err((StatusCode::FORBIDDEN, "ACL not found: the token is not known to this agent".into())),
                (Some(have), Some(need)) if have < need => Err(denied(need)),
                _ => Ok(()),
            },
            (None, Some(need)) => Err(denied(need)),
            (None, None) => Ok(()),
        }
    }

    fn host_allowed(&self, name: &str) -> bool {
        name.parse::<std::net::IpAddr>().is_ok() || name == "localhost" || self.allowed_hosts.iter().any(|h| h == name)
    }
}

fn denied(need: Power) -> (StatusCode, String) {
    let hint = match need {
        Power::Operator => "the operator token is DATA_DIR/operator.token",
        _ => "see --http-require-token",
    };
    (
        StatusCode::FORBIDDEN,
        format!(
            "Permission denied: token lacks {} (send it as X-Consul-Token, Authorization: Bearer or ?token=; {hint})",
            need.name()
        ),
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    // A header that is not text cannot match anything: treat it as a foreign value.
    headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"))
}

/// The host part of a Host header: without the port and the brackets of an IPv6 literal,
/// lower case, without a trailing dot.
fn host_name(host: &str) -> String {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    let name = name.to_ascii_lowercase();
    name.strip_suffix('.').map(str::to_string).unwrap_or(name)
}

/// `X-Consul-Token`, else `Authorization: Bearer`, else `?token=`.
fn presented_token(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    if let Some(t) = header(headers, "x-consul-token").filter(|t| !t.is_empty()) {
        return Some(t.trim().to_string());
    }
    if let Some(auth) = header(headers, "authorization") {
        let mut parts = auth.trim().splitn(2, ' ');
        if parts.next().is_some_and(|s| s.eq_ignore_ascii_case("bearer")) {
            return parts.next().map(|t| t.trim().to_string());
        }
    }
    let q = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?;
    q.0.into_iter().rev().find(|(k, v)| k == "token" && !v.is_empty()).map(|(_, v)| v)
}

/// The middleware: [`Guard::admit`] or the refusal.
pub async fn check(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    match guard.admit(req.method(), req.uri(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err((status, msg)) => {
            tracing::debug!(method = %req.method(), path = %req.uri().path(), %status, reason = %msg, "HTTP request refused");
            (status, msg).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OP: &str = "operator-token-0123456789";
    const WR: &str = "write-token-0123456789";

    fn guard(require: RequireToken) -> Guard {
        let mut tokens = Tokens::default();
        tokens.add(OP, Power::Operator);
        tokens.add(WR, Power::Write);
        Guard { tokens, require, allowed_hosts: vec!["agent.internal".into()] }
    }

    fn admit(g: &Guard, method: Method, uri: &str, headers: &[(&str, &str)]) -> Result<(), (StatusCode, String)> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        g.admit(&method, &uri.parse().unwrap(), &h)
    }

    #[test]
    fn hosts_are_ips_localhost_or_allowed() {
        let g = guard(RequireToken::None);
        for ok in [
            "127.0.0.1:8500",
            "127.0.0.1",
            "[::1]:8500",
            "localhost:8500",
            "LOCALHOST",
            "agent.internal:1",
            "agent.internal.",
        ] {
            assert!(admit(&g, Method::GET, "/v1/agent/members", &[("host", ok)]).is_ok(), "{ok}");
        }
        for bad in
            ["rebind.evil.example", "rebind.evil.example:8500", "localhost.evil.example", "127.0.0.1.nip.io:8500"]
        {
            let e = admit(&g, Method::GET, "/v1/agent/members", &[("host", bad)]).unwrap_err();
            assert!(e.0 == StatusCode::FORBIDDEN && e.1.contains("--http-allowed-hosts"), "{bad}: {e:?}");
        }
    }

    #[test]
    fn foreign_origins_and_cross_site_fetches_are_refused() {
        let g = guard(RequireToken::None);
        let h = ("host", "127.0.0.1:8500");
        assert!(
            admit(&g, Method::PUT, "/v1/agent/service/register", &[h, ("origin", "http://127.0.0.1:8500")]).is_ok()
        );
        for origin in ["http://evil.example", "null", "http://127.0.0.1:8501", "https://127.0.0.1:8500"] {
            let e = admit(&g, Method::PUT, "/v1/agent/service/register", &[h, ("origin", origin)]).unwrap_err();
            assert_eq!(e.0, StatusCode::FORBIDDEN, "{origin}");
        }
        assert!(admit(&g, Method::GET, "/v1/agent/members", &[h, ("sec-fetch-site", "cross-site")]).is_err());
        assert!(admit(&g, Method::GET, "/ui", &[h, ("sec-fetch-site", "none")]).is_ok());
    }

    #[test]
    fn simple_content_types_are_refused_for_writes() {
        let g = guard(RequireToken::None);
        let h = ("host", "127.0.0.1:8500");
        let e =
            admit(&g, Method::PUT, "/v1/agent/service/register", &[h, ("content-type", "text/plain;charset=UTF-8")])
                .unwrap_err();
        assert_eq!(e.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(
            admit(&g, Method::PUT, "/v1/agent/service/register", &[h, ("content-type", "multipart/form-data; b=x")])
                .is_err()
        );
        for ok in ["application/json", "application/x-www-form-urlencoded"] {
            assert!(admit(&g, Method::PUT, "/v1/agent/service/register", &[h, ("content-type", ok)]).is_ok(), "{ok}");
        }
        assert!(admit(&g, Method::PUT, "/v1/agent/service/register", &[h]).is_ok());
    }

    #[test]
    fn tokens_give_powers() {
        let g = guard(RequireToken::None);
        let e = admit(&g, Method::GET, "/v1/operator/keyring", &[]).unwrap_err();
        assert!(e.0 == StatusCode::FORBIDDEN && e.1.starts_with("Permission denied: token lacks operator"), "{e:?}");
        assert!(admit(&g, Method::GET, "/v1/operator/keyring", &[("x-consul-token", WR)]).is_err());
        assert!(admit(&g, Method::GET, "/v1/operator/keyring", &[("x-consul-token", OP)]).is_ok());
        assert!(admit(&g, Method::POST, "/v1/operator/keyring", &[("authorization", &format!("Bearer {OP}"))]).is_ok());
        assert!(admit(&g, Method::DELETE, &format!("/v1/operator/keyring?token={OP}"), &[]).is_ok());
        assert!(admit(&g, Method::GET, "/v1/agent/members", &[]).is_ok());
        assert!(admit(&g, Method::PUT, "/v1/agent/service/register", &[]).is_ok());
        for path in ["/v1/agent/monitor", "/v1/agent/monitor?loglevel=debug"] {
            assert!(admit(&g, Method::GET, path, &[("x-consul-token", WR)]).is_err(), "{path}");
            assert!(admit(&g, Method::GET, path, &[("x-consul-token", OP)]).is_ok(), "{path}");
        }
        let e = admit(&g, Method::GET, "/v1/agent/members", &[("x-consul-token", "nope-nope-nope-nope")]).unwrap_err();
        assert!(e.1.starts_with("ACL not found"), "{e:?}");

        let g = guard(RequireToken::Write);
        assert!(admit(&g, Method::GET, "/v1/agent/members", &[]).is_ok());
        let e = admit(&g, Method::PUT, "/v1/agent/service/register", &[]).unwrap_err();
        assert!(e.1.starts_with("Permission denied: token lacks write"), "{e:?}");
        assert!(admit(&g, Method::PUT, "/v1/agent/service/register", &[("x-consul-token", WR)]).is_ok());

        let g = guard(RequireToken::Read);
        assert!(admit(&g, Method::GET, "/v1/agent/members", &[]).is_err());
        assert!(admit(&g, Method::GET, "/v1/agent/members", &[("x-consul-token", WR)]).is_ok());
    }
}
