//! The status page at `/ui`: one self-contained HTML page (inline CSS and JavaScript, no build
//! step, no external assets) that polls the agent's own API (`/v1/agent/members`,
//! `/v1/catalog/services`, `/v1/health/service/:name`) and shows members, services, instances
//! and health. The page builds its DOM with `textContent` only: service names, ids and tags are
//! user input and never reach the HTML parser. A Content-Security-Policy forbids every origin
//! but the agent itself, so the page cannot load or send anything elsewhere.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::http::Api;

/// The page; `{{NODE}}` and `{{DOMAIN}}` are replaced by this agent's node name and DNS domain,
/// HTML-escaped.
const PAGE: &str = include_str!("ui.html");

/// The policy the page runs under: its own inline script and style, requests to this agent only.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Escapes text for an HTML attribute value or element content.
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page with this agent's node name and domain filled in.
fn render(node: &str, domain: &str) -> String {
    PAGE.replace("{{NODE}}", &escape_html(node)).replace("{{DOMAIN}}", &escape_html(domain))
}

/// `GET /ui`: the status page.
pub async fn page(State(api): State<Arc<Api>>) -> Response {
    let node = api.handle.checks.load_full().node.clone();
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        render(&node, &api.domain),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_name_is_escaped() {
        let html = render("<a\"b'&>", "gossip");
        assert!(html.contains("&lt;a&quot;b&#39;&amp;&gt;"));
        assert!(!html.contains("<a\"b'&>"));
        assert!(!html.contains("{{NODE}}") && !html.contains("{{DOMAIN}}"));
    }

    #[test]
    fn page_is_self_contained() {
        // No external assets: nothing is loaded from another origin, and the script never
        // hands data to the HTML parser.
        for banned in
            ["http://", "https://", "src=\"//", "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"]
        {
            assert!(!PAGE.contains(banned), "ui.html contains {banned:?}");
        }
    }
}
