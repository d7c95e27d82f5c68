//! `GET /metrics` and `GET /v1/agent/metrics`: the Prometheus exposition ([`crate::metrics`]) and
//! the same counters as JSON.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Api, Params, status_code, text};

/// `GET /metrics`: the Prometheus text exposition.
pub async fn prometheus(State(api): State<Arc<Api>>) -> Response {
    let (s, sec) = &*api.handle.stats.load_full();
    let c = api.handle.catalog.load_full();
    let dns = api.dns_stats.as_ref().map(|d| d.counts());
    let wan = api.wan.as_ref().filter(|w| !w.relayed);
    let body = crate::metrics::render(&crate::metrics::Inputs { gossip: s, secure: sec, catalog: &c, dns, wan });
    ([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
}

/// Gossip counters as JSON; `?format=prometheus` answers the Prometheus text instead.
pub async fn metrics(State(api): State<Arc<Api>>, q: Params) -> Response {
    match q.get("format") {
        None | Some("json") => {}
        Some("prometheus") => return prometheus(State(api)).await,
        Some(other) => {
            return text(StatusCode::BAD_REQUEST, format!("Invalid format {other:?}: use prometheus or json"));
        }
    }
    let (s, sec) = &*api.handle.stats.load_full();
    let c = api.handle.catalog.load_full();
    let instances: usize = c.services.values().map(|l| l.len()).sum();
    let dns = api.dns_stats.as_ref().map(|d| {
        let d = d.counts();
        let by_type: serde_json::Map<String, Value> =
            dns_front::COUNTED_QTYPES.iter().zip(d.by_qtype).map(|(t, n)| (t.to_ascii_uppercase(), json!(n))).collect();
        json!({
            "Responses": {
                "NOERROR": d.noerror, "NXDOMAIN": d.nxdomain, "REFUSED": d.refused, "FORMERR": d.formerr,
                "SERVFAIL": d.servfail, "NOTIMP": d.notimp, "BADVERS": d.badvers,
            },
            "Queries": by_type,
            "Truncated": d.truncated,
            "RrlDropped": d.rrl_dropped,
            "RrlSlipped": d.rrl_slipped,
            "TcpRefused": d.tcp_refused,
            "Forwarded": d.forwarded,
            "ForwardFailures": d.forward_failed,
            "Remote": d.remote,
            "RemoteFailures": d.remote_failed,
            "LatencyCount": d.latency.count,
            "LatencySumSeconds": d.latency.sum_nanos as f64 / 1e9,
        })
    });
    let wan = api.wan.as_ref().filter(|w| !w.relayed).map(|w| {
        use std::sync::atomic::Ordering::Relaxed;
        let g = w.gossip_stats.load_full();
        let view = w.view.load();
        let counts = w.stats.by_datacenter();
        let dcs: Vec<Value> = view
            .datacenters(&w.datacenter)
            .into_iter()
            .map(|d| {
                let members = view.members.iter().filter(|m| m.dc == d.name).count();
                let c = counts.get(&d.name).copied().unwrap_or_default();
                json!({ "Name": d.name, "Members": members, "Reachable": d.reachable,
                    "RttMs": d.rtt.map(|r| r.as_secs_f64() * 1000.0),
                    "Forwarded": c.forwarded, "NoPath": c.no_path })
            })
            .collect();
        json!({
            "Datacenter": w.datacenter, "Datacenters": dcs, "Members": view.members.len(),
            "Forwarded": w.stats.forwarded.load(Relaxed), "NoPath": w.stats.no_path.load(Relaxed),
            "Served": w.stats.served.load(Relaxed), "ServedDropped": w.stats.dropped.load(Relaxed),
            "DatagramsIn": g.datagrams_in, "DatagramsOut": g.datagrams_out,
            "BytesIn": g.bytes_in, "BytesOut": g.bytes_out,
        })
    });
    // (Its own literal: one json! of every counter exceeds the macro recursion limit.)
    let gossip = json!({
        "DatagramsIn": s.datagrams_in, "DatagramsOut": s.datagrams_out,
        "BytesIn": s.bytes_in, "BytesOut": s.bytes_out,
        "DroppedDecode": s.dropped_decode, "UnknownEntries": s.unknown_entries,
        "DroppedMalformed": s.dropped_malformed, "Rounds": s.rounds,
        "DeltasApplied": s.deltas_applied, "RumorsForwarded": s.rumors_forwarded,
        "RumorRetransmits": s.rumor_retransmits,
        "ReorderedApplied": s.reordered_applied, "ReorderPulls": s.reorder_pulls,
        "ForgedRecords": s.forged_records, "Equivocations": s.equivocations,
        "AccusationsWritten": s.accusations_written, "DroppedExcluded": s.dropped_excluded,
        "IncompleteStates": s.incomplete_states, "IncompletePulls": s.incomplete_pulls,
        "SuspicionsRaised": s.suspicions_raised, "Suspicions": s.suspicions,
        "Deaths": s.deaths, "Refutations": s.refutations,
        "LocalHealth": s.local_health, "LocalHealthRaised": s.local_health_raised,
        "Pauses": s.pauses, "PauseMaxMs": s.pause_max_ms,
        "FailureRecordsProbed": s.failure_records_probed,
        "SentByKind": {
            "Reconcile": s.sent_by_kind[1], "Delta": s.sent_by_kind[2], "Request": s.sent_by_kind[3],
            "Ping": s.sent_by_kind[4], "Ack": s.sent_by_kind[5], "PingReq": s.sent_by_kind[6],
            "Suspect": s.sent_by_kind[7], "More": s.sent_by_kind[8], "Query": s.sent_by_kind[9],
            "Answer": s.sent_by_kind[10],
        },
    });
    axum::Json(json!({
        "DNS": dns,
        "WAN": wan,
        "Gossip": gossip,
        "Secure": {
            "HandshakesInitiated": sec.handshakes_initiated, "HandshakesCompleted": sec.handshakes_completed,
            "DroppedUnauthenticated": sec.dropped_unauthenticated, "DecryptFailures": sec.decrypt_failures,
            "Replays": sec.replays, "RateLimited": sec.rate_limited, "CookiesSent": sec.cookies_sent,
            "CookieResends": sec.cookie_resends,
            "BannedDrops": sec.banned_drops, "Bans": sec.bans, "KeyRotations": sec.rotations,
            "PinMismatches": sec.pin_mismatches, "VersionRefusals": sec.version_refusals,
        },
        "Catalog": {
            "Index": c.index,
            "Members": c.members.len(),
            "AliveMembers": c.members.iter().filter(|m| status_code(m) == 1).count(),
            "SuspectMembers": c.members.iter().filter(|m| m.liveness == gossip_core::Liveness::Suspect).count(),
            "FailedMembers": c.members.iter().filter(|m| status_code(m) == 4).count(),
            "ExcludedMembers": c.members.iter().filter(|m| m.excluded.is_some()).count(),
            "SelfPreservation": c.self_preservation,
            "Services": c.services.len(),
            "Instances": instances,
        },
    }))
    .into_response()
}
