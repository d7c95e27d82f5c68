//! Prometheus text exposition (format 0.0.4), written by hand: `GET /metrics` and
//! `GET /v1/agent/metrics?format=prometheus`. Every metric is prefixed `gossipd_`.

use std::fmt::Write;

use gossip_core::secure::SecureStats;
use gossip_core::{Liveness, NodeStatus, Stats};

use crate::view::Catalog;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything one scrape reports.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Gossip counters.
    pub gossip: &'a Stats,
    /// Secure-layer counters.
    pub secure: &'a SecureStats,
    /// The current catalog.
    pub catalog: &'a Catalog,
    /// DNS response counters, when the DNS server is running.
    pub dns: Option<dns_front::DnsCounts>,
    /// The WAN pool, when this agent is in one.
    pub wan: Option<&'a crate::wan::WanHandle>,
}

/// A member's state as the metrics name it (the same split as the API's status codes, with
/// suspects apart).
fn member_state(status: NodeStatus, liveness: Liveness) -> &'static str {
    match (status, liveness) {
        (NodeStatus::Left, _) => "left",
        (NodeStatus::Alive, Liveness::Dead) => "failed",
        (NodeStatus::Alive, Liveness::Suspect) => "suspect",
        (NodeStatus::Alive, Liveness::Alive) => "alive",
        (NodeStatus::Alive, Liveness::Excluded) => "excluded",
    }
}

struct Writer {
    out: String,
}

impl Writer {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP gossipd_{name} {help}");
        let _ = writeln!(self.out, "# TYPE gossipd_{name} {kind}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.header(name, kind, help);
        let _ = writeln!(self.out, "gossipd_{name} {value}");
    }

    fn labelled(&mut self, name: &str, kind: &str, help: &str, label: &str, values: &[(&str, u64)]) {
        self.header(name, kind, help);
        for (l, v) in values {
            // Label values here are fixed identifiers: nothing to escape.
            let _ = writeln!(self.out, "gossipd_{name}{{{label}=\"{l}\"}} {v}");
        }
    }

    /// One sample per label value, with the value escaped as the exposition format says.
    fn by_label(&mut self, name: &str, kind: &str, help: &str, label: &str, values: &[(String, f64)]) {
        self.header(name, kind, help);
        for (l, v) in values {
            let l = l.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let _ = writeln!(self.out, "gossipd_{name}{{{label}=\"{l}\"}} {v}");
        }
    }

    /// A Prometheus histogram: cumulative `_bucket{le=...}` (ending with `+Inf`), `_sum` in
    /// seconds and `_count`.
    fn histogram(&mut self, name: &str, help: &str, h: &dns_front::LatencyHistogram) {
        self.header(name, "histogram", help);
        for (le, n) in h.cumulative() {
            let le = le.map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(self.out, "gossipd_{name}_bucket{{le=\"{le}\"}} {n}");
        }
        let _ = writeln!(self.out, "gossipd_{name}_sum {}", h.sum_nanos as f64 / 1e9);
        let _ = writeln!(self.out, "gossipd_{name}_count {}", h.count);
    }
}

/// Renders one scrape.
pub fn render(i: &Inputs<'_>) -> String {
    let mut w = Writer { out: String::with_capacity(4096) };
    let c = i.catalog;

    let mut states = [("alive", 0u64), ("suspect", 0), ("failed", 0), ("left", 0)];
    for m in &c.members {
        let s = member_state(m.status, m.liveness);
        if let Some(e) = states.iter_mut().find(|(n, _)| *n == s) {
            e.1 += 1;
        }
    }
    w.labelled("members", "gauge", "Known cluster members by state, as this agent sees them.", "state", &states);
    w.one("catalog_services", "gauge", "Distinct service names in the catalog.", c.services.len() as u64);
    let instances: usize = c.services.values().map(|l| l.len()).sum();
    w.one("catalog_instances", "gauge", "Service instances in the catalog (live nodes only).", instances as u64);
    w.one("catalog_index", "gauge", "Catalog index (raised at each rebuild).", c.index);
    w.one(
        "self_preservation",
        "gauge",
        "1 while self-preservation holds failure declarations back, else 0.",
        u64::from(c.self_preservation),
    );

    let g = i.gossip;
    w.one(
        "local_health",
        "gauge",
        "Lifeguard's local health score: 0 healthy; higher while this agent's own probes go unanswered \
         (it is likely slow itself), stretching its probe and suspicion deadlines by 1 + score.",
        g.local_health,
    );
    let counters: [(&str, &str, u64); 31] = [
        ("gossip_rounds_total", "Anti-entropy rounds started.", g.rounds),
        ("gossip_datagrams_in_total", "Gossip datagrams received.", g.datagrams_in),
        ("gossip_datagrams_out_total", "Gossip datagrams sent.", g.datagrams_out),
        ("gossip_bytes_in_total", "Gossip bytes received.", g.bytes_in),
        ("gossip_bytes_out_total", "Gossip bytes sent.", g.bytes_out),
        ("gossip_deltas_applied_total", "Records applied from peers.", g.deltas_applied),
        ("gossip_rumors_forwarded_total", "Rumors forwarded to peers.", g.rumors_forwarded),
        ("gossip_rumor_retransmits_total", "Rumor retransmissions on rumor ticks.", g.rumor_retransmits),
        ("gossip_dropped_decode_total", "Datagrams dropped: undecodable.", g.dropped_decode),
        (
            "gossip_unknown_entries_total",
            "Records of a kind this build does not know (a newer agent's), kept and relayed as signed.",
            g.unknown_entries,
        ),
        ("gossip_dropped_malformed_total", "Datagrams dropped: malformed content.", g.dropped_malformed),
        ("gossip_forged_records_total", "Records dropped: bad owner signature.", g.forged_records),
        ("gossip_equivocations_total", "Owners caught signing two records under one version.", g.equivocations),
        ("gossip_accusations_written_total", "Accusations this agent wrote.", g.accusations_written),
        ("gossip_dropped_excluded_total", "Messages dropped: sender excluded by the cluster.", g.dropped_excluded),
        (
            "gossip_incomplete_states_total",
            "Owner copies found incomplete: they do not verify against the owner's signed head (a relay withheld records).",
            g.incomplete_states,
        ),
        (
            "gossip_incomplete_pulls_total",
            "Pulls of an owner's whole state from another peer to repair an incomplete copy.",
            g.incomplete_pulls,
        ),
        (
            "member_suspicions_raised_total",
            "Suspicions this agent raised: a partner missed its direct and indirect probes.",
            g.suspicions_raised,
        ),
        ("member_suspicions_total", "Times this agent marked a node suspect (own probes or rumor).", g.suspicions),
        ("local_health_raised_total", "Times the local health score rose.", g.local_health_raised),
        (
            "pauses_total",
            "Times this agent was not run for over 100 ms past a deadline (CPU starved, stopped, suspended); its probe and suspicion clocks moved on by the pause.",
            g.pauses,
        ),
        ("member_deaths_total", "Times this agent declared a node dead.", g.deaths),
        ("member_refutations_total", "Suspicions of this agent that it refuted.", g.refutations),
        (
            "member_suspicions_confirmed_total",
            "Suspicions heard of that this agent's own probe of the suspect confirmed.",
            g.suspicions_confirmed,
        ),
        (
            "member_deaths_learned_total",
            "Deaths this agent learned from another member's failure record (catalog sync).",
            g.deaths_learned,
        ),
        ("member_failure_records_written_total", "Failure records this agent wrote.", g.failure_records_written),
        (
            "member_failure_records_contradicted_total",
            "Failure records about a node this agent had just heard from (not adopted; the node was told).",
            g.failure_records_contradicted,
        ),
        (
            "member_failure_records_probed_total",
            "Failure records of a known member that arrived while this agent's timers ran late: probed before adopting.",
            g.failure_records_probed,
        ),
        (
            "member_failure_records_refuted_total",
            "Failure records about this agent that it refuted.",
            g.failure_records_refuted,
        ),
        (
            "member_deaths_held_total",
            "Ripe suspicions the death-rate budget held back (self-preservation).",
            g.deaths_held,
        ),
        (
            "member_suspicions_beyond_held_total",
            "Suspicions or failure records naming a state beyond the one held (ignored).",
            g.suspicions_beyond_held,
        ),
    ];
    for (name, help, v) in counters {
        w.one(name, "counter", help, v);
    }

    let s = i.secure;
    let counters: [(&str, &str, u64); 15] = [
        (
            "secure_cert_refusals_total",
            "Handshakes refused for a missing, invalid, expired or revoked certificate.",
            s.cert_refusals,
        ),
        ("secure_handshakes_initiated_total", "Noise handshakes initiated.", s.handshakes_initiated),
        (
            "secure_version_refusals_total",
            "Handshakes refused: the peer speaks no wire protocol version this agent speaks.",
            s.version_refusals,
        ),
        (
            "secure_version_mismatch_drops_total",
            "Queued payloads dropped: encoded at another wire version than their session's.",
            s.version_mismatch_drops,
        ),
        ("secure_handshakes_completed_total", "Noise handshakes completed.", s.handshakes_completed),
        (
            "secure_dropped_unauthenticated_total",
            "Datagrams dropped: not authenticated by the cluster key.",
            s.dropped_unauthenticated,
        ),
        ("secure_decrypt_failures_total", "Datagrams that failed to decrypt.", s.decrypt_failures),
        ("secure_replays_total", "Replayed datagrams dropped.", s.replays),
        ("secure_rate_limited_total", "Handshakes refused by the rate limit.", s.rate_limited),
        ("secure_cookies_sent_total", "Cookie challenges sent under load.", s.cookies_sent),
        ("secure_cookie_resends_total", "Initiations resent at once with a cookie's mac2.", s.cookie_resends),
        ("secure_banned_drops_total", "Datagrams dropped from banned peers.", s.banned_drops),
        ("secure_bans_total", "Peers banned.", s.bans),
        ("secure_key_rotations_total", "Static key rotations.", s.rotations),
        ("secure_pin_mismatches_total", "Seeds that failed to prove their pinned identity.", s.pin_mismatches),
    ];
    for (name, help, v) in counters {
        w.one(name, "counter", help, v);
    }
    w.one(
        "secure_max_clock_offset_seconds",
        "gauge",
        "Largest clock offset seen in a peer's handshake (absolute seconds).",
        s.max_clock_offset_secs,
    );
    w.one(
        "refused_deltas_total",
        "counter",
        "Members' deltas refused for their certificate, grants, quota or keyring role.",
        i.gossip.refused_deltas,
    );

    if let Some(d) = i.dns {
        w.labelled(
            "dns_responses_total",
            "counter",
            "DNS responses sent, by response code.",
            "rcode",
            &[
                ("noerror", d.noerror),
                ("nxdomain", d.nxdomain),
                ("refused", d.refused),
                ("formerr", d.formerr),
                ("servfail", d.servfail),
                ("notimp", d.notimp),
                ("badvers", d.badvers),
            ],
        );
        w.one("dns_truncated_total", "counter", "UDP DNS responses sent truncated (TC bit).", d.truncated);
        w.one(
            "dns_rrl_dropped_total",
            "counter",
            "UDP DNS responses dropped by response rate limiting.",
            d.rrl_dropped,
        );
        w.one(
            "dns_rrl_slipped_total",
            "counter",
            "UDP DNS responses sent as bare truncated answers by response rate limiting.",
            d.rrl_slipped,
        );
        w.one(
            "dns_tcp_refused_total",
            "counter",
            "DNS TCP connections closed at accept (connection limits).",
            d.tcp_refused,
        );
        w.one(
            "dns_forwarded_total",
            "counter",
            "DNS queries relayed to an upstream resolver (--recursor) and answered by one.",
            d.forwarded,
        );
        w.one(
            "dns_forward_failures_total",
            "counter",
            "DNS queries to relay that no upstream answered (or with no free slot): SERVFAIL.",
            d.forward_failed,
        );
        w.one(
            "dns_remote_total",
            "counter",
            "DNS queries for another datacenter or a prepared query answered through the WAN pool.",
            d.remote,
        );
        w.one(
            "dns_remote_failures_total",
            "counter",
            "DNS queries for another datacenter that found no path to it: SERVFAIL.",
            d.remote_failed,
        );
        let by_type: Vec<(&str, u64)> =
            dns_front::COUNTED_QTYPES.iter().copied().zip(d.by_qtype.iter().copied()).collect();
        w.labelled("dns_queries_total", "counter", "DNS queries with one question, by type.", "type", &by_type);
        w.histogram(
            "dns_query_duration_seconds",
            "Time to handle a DNS query, from the request to the response handed to the socket.",
            &d.latency,
        );
    }
    if let Some(wan) = i.wan {
        wan_metrics(&mut w, wan);
    }
    w.out
}

/// The WAN pool's families: its gossip traffic, forwarded reads, and one sample per datacenter.
fn wan_metrics(w: &mut Writer, wan: &crate::wan::WanHandle) {
    use std::sync::atomic::Ordering::Relaxed;
    let g = wan.gossip_stats.load_full();
    let counters: [(&str, &str, u64); 8] = [
        ("wan_datagrams_in_total", "WAN pool datagrams received.", g.datagrams_in),
        ("wan_datagrams_out_total", "WAN pool datagrams sent.", g.datagrams_out),
        ("wan_bytes_in_total", "WAN pool bytes received.", g.bytes_in),
        ("wan_bytes_out_total", "WAN pool bytes sent.", g.bytes_out),
        (
            "wan_forwarded_total",
            "Reads of other datacenters forwarded and answered.",
            wan.stats.forwarded.load(Relaxed),
        ),
        (
            "wan_no_path_total",
            "Reads of other datacenters with no reachable member, or no answer in time (500 / SERVFAIL).",
            wan.stats.no_path.load(Relaxed),
        ),
        ("wan_served_total", "Reads from other datacenters served here.", wan.stats.served.load(Relaxed)),
        (
            "wan_served_dropped_total",
            "Reads from other datacenters dropped: over the rate bound, or malformed.",
            wan.stats.dropped.load(Relaxed),
        ),
    ];
    for (name, help, v) in counters {
        w.one(name, "counter", help, v);
    }
    let view = wan.view.load();
    let dcs = view.datacenters(&wan.datacenter);
    let counts = wan.stats.by_datacenter();
    let per = |f: &dyn Fn(&crate::wan::Datacenter) -> Option<f64>| -> Vec<(String, f64)> {
        dcs.iter().filter_map(|d| f(d).map(|v| (d.name.clone(), v))).collect()
    };
    let members = per(&|d| Some(view.members.iter().filter(|m| m.dc == d.name).count() as f64));
    w.by_label("wan_members", "gauge", "WAN pool members by datacenter.", "datacenter", &members);
    let reachable = per(&|d| Some(d.reachable as f64));
    w.by_label(
        "wan_reachable_members",
        "gauge",
        "WAN members this agent can forward reads to, by datacenter (this one counts itself).",
        "datacenter",
        &reachable,
    );
    let rtt = per(&|d| d.rtt.map(|r| r.as_secs_f64()));
    w.by_label(
        "wan_rtt_seconds",
        "gauge",
        "Least smoothed round trip to a reachable WAN member, by datacenter (measured ones only).",
        "datacenter",
        &rtt,
    );
    let fwd = per(&|d| counts.get(&d.name).map(|c| c.forwarded as f64));
    w.by_label(
        "wan_datacenter_forwarded_total",
        "counter",
        "Reads forwarded to a datacenter and answered.",
        "datacenter",
        &fwd,
    );
    let lost = per(&|d| counts.get(&d.name).map(|c| c.no_path as f64));
    w.by_label(
        "wan_datacenter_no_path_total",
        "counter",
        "Reads of a datacenter that found no path to it.",
        "datacenter",
        &lost,
    );
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::view::Member;

    fn member(name: &str, status: NodeStatus, liveness: Liveness) -> Member {
        Member {
            id: gossip_core::NodeId([name.len() as u8; 16]),
            identity: [0; 32],
            name: name.into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            generation: 1,
            status,
            liveness,
            banned: None,
            excluded: None,
            versions: None,
            vsn: None,
            meta: Default::default(),
        }
    }

    /// A parser-ish check of the exposition format; returns the samples by series.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        let mut helped = BTreeSet::new();
        let mut typed = BTreeMap::new();
        let mut samples = BTreeMap::new();
        assert!(text.ends_with('\n'), "ends with a newline");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                assert!(!help.is_empty());
                assert!(helped.insert(name.to_string()), "HELP twice for {name}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "{line}");
                assert!(typed.insert(name.to_string(), kind.to_string()).is_none(), "TYPE twice for {name}");
                continue;
            }
            assert!(!line.starts_with('#'), "stray comment {line:?}");
            let (series, value) = line.rsplit_once(' ').expect("name value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let name = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels {line:?}"));
                    for pair in labels.split(',') {
                        let (k, v) = pair.split_once('=').expect("label=value");
                        assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line:?}");
                        assert!(v.len() >= 2 && v.starts_with('"') && v.ends_with('"'), "{line:?}");
                    }
                    name
                }
                None => series,
            };
            assert!(name.starts_with("gossipd_"), "{line:?}");
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line:?}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|sfx| name.strip_suffix(sfx).filter(|f| typed.get(*f).is_some_and(|k| k == "histogram")))
                .unwrap_or(name);
            assert!(typed.contains_key(family) && helped.contains(family), "{name} sampled before HELP/TYPE");
            let name = family;
            if typed[name] == "counter" {
                assert!(name.ends_with("_total"), "counter {name} should end in _total");
            }
            assert!(samples.insert(series.to_string(), value).is_none(), "{series} twice");
        }
        assert_eq!(helped, typed.keys().cloned().collect::<BTreeSet<_>>(), "every metric has HELP and TYPE");
        samples
    }

    #[test]
    fn wan_families_are_per_datacenter_and_labels_are_escaped() {
        use crate::wan::{WanHandle, WanMember, WanView};
        let (wan, _rx) = WanHandle::relay("dc1".into());
        let m = |n: u8, dc: &str, rtt: Option<u64>, local: bool| WanMember {
            id: gossip_core::NodeId([n; 16]),
            name: format!("n{n}"),
            dc: dc.into(),
            addr: ([127, 0, 0, n], 8302).into(),
            status: NodeStatus::Alive,
            liveness: Liveness::Alive,
            rtt: rtt.map(std::time::Duration::from_millis),
            local,
        };
        // A datacenter name the pool would never admit (valid_dc), to prove the escaping.
        let odd = "o\"d\\d";
        wan.view.store(std::sync::Arc::new(WanView {
            members: vec![
                m(1, "dc1", None, true),
                m(2, "dc2", Some(4), false),
                m(3, "dc2", Some(2), false),
                m(4, odd, None, false),
            ],
        }));
        wan.stats.count("dc2", true);
        wan.stats.count("dc2", true);
        wan.stats.count("dc2", false);
        let catalog = Catalog::default();
        let (gossip, secure) = (Stats::default(), SecureStats::default());
        let text = render(&Inputs { gossip: &gossip, secure: &secure, catalog: &catalog, dns: None, wan: Some(&wan) });
        let s = parse(&text);
        assert_eq!(s["gossipd_wan_members{datacenter=\"dc2\"}"], 2.0);
        assert_eq!(s["gossipd_wan_members{datacenter=\"dc1\"}"], 1.0);
        assert_eq!(s["gossipd_wan_reachable_members{datacenter=\"dc2\"}"], 2.0);
        assert_eq!(s["gossipd_wan_rtt_seconds{datacenter=\"dc2\"}"], 0.002, "the least round trip");
        assert_eq!(s["gossipd_wan_datacenter_forwarded_total{datacenter=\"dc2\"}"], 2.0);
        assert_eq!(s["gossipd_wan_datacenter_no_path_total{datacenter=\"dc2\"}"], 1.0);
        assert_eq!(s["gossipd_wan_forwarded_total"], 2.0);
        assert_eq!(s["gossipd_wan_no_path_total"], 1.0);
        assert_eq!(s["gossipd_wan_members{datacenter=\"o\\\"d\\\\d\"}"], 1.0, "escaped:\n{text}");
        assert_eq!(s["gossipd_wan_rtt_seconds{datacenter=\"dc1\"}"], 0.0, "this datacenter");
        assert!(!s.keys().any(|k| k.starts_with("gossipd_wan_rtt_seconds{datacenter=\"o")), "unmeasured: no sample");
    }

    #[test]
    fn renders_valid_exposition() {
        let catalog = Catalog {
            index: 7,
            members: vec![
                member("a", NodeStatus::Alive, Liveness::Alive),
                member("bb", NodeStatus::Alive, Liveness::Alive),
                member("ccc", NodeStatus::Alive, Liveness::Suspect),
                member("dddd", NodeStatus::Alive, Liveness::Dead),
                member("eeeee", NodeStatus::Left, Liveness::Alive),
            ],
            services: Default::default(),
            self_preservation: true,
            queries: Default::default(),
        };
        let gossip = Stats { datagrams_in: 12, bytes_out: 3400, ..Default::default() };
        let secure = SecureStats { handshakes_completed: 2, ..Default::default() };
        let stats = dns_front::DnsStats::default();
        for us in [10, 40, 40, 900, 200_000] {
            stats.record_latency(std::time::Duration::from_micros(us));
        }
        stats.record_qtype(dns_front::QType::Srv);
        let dns = dns_front::DnsCounts { noerror: 5, nxdomain: 1, ..stats.counts() };
        let text = render(&Inputs { gossip: &gossip, secure: &secure, catalog: &catalog, dns: Some(dns), wan: None });
        let s = parse(&text);
        assert_eq!(s["gossipd_members{state=\"alive\"}"], 2.0);
        assert_eq!(s["gossipd_members{state=\"suspect\"}"], 1.0);
        assert_eq!(s["gossipd_members{state=\"failed\"}"], 1.0);
        assert_eq!(s["gossipd_members{state=\"left\"}"], 1.0);
        assert_eq!(s["gossipd_self_preservation"], 1.0);
        assert_eq!(s["gossipd_catalog_services"], 0.0);
        assert_eq!(s["gossipd_gossip_datagrams_in_total"], 12.0);
        assert_eq!(s["gossipd_gossip_bytes_out_total"], 3400.0);
        assert_eq!(s["gossipd_secure_handshakes_completed_total"], 2.0);
        assert_eq!(s["gossipd_dns_responses_total{rcode=\"noerror\"}"], 5.0);
        assert_eq!(s["gossipd_dns_responses_total{rcode=\"nxdomain\"}"], 1.0);
        assert_eq!(s["gossipd_dns_queries_total{type=\"srv\"}"], 1.0);
        assert_eq!(s["gossipd_dns_queries_total{type=\"a\"}"], 0.0);
        let bucket = |le: &str| s[&format!("gossipd_dns_query_duration_seconds_bucket{{le=\"{le}\"}}")];
        assert_eq!(bucket("0.000025"), 1.0);
        assert_eq!(bucket("0.00005"), 3.0);
        assert_eq!(bucket("0.001"), 4.0);
        assert_eq!(bucket("0.1"), 4.0);
        assert_eq!(bucket("+Inf"), 5.0);
        assert_eq!(s["gossipd_dns_query_duration_seconds_count"], 5.0);
        assert!((s["gossipd_dns_query_duration_seconds_sum"] - 0.20099).abs() < 1e-9);

        assert!(!s.keys().any(|k| k.starts_with("gossipd_wan_")), "no WAN pool, no WAN families");

        // Without DNS the DNS families are absent, and the rest still parses.
        let text = render(&Inputs { gossip: &gossip, secure: &secure, catalog: &catalog, dns: None, wan: None });
        let s = parse(&text);
        assert!(!s.keys().any(|k| k.starts_with("gossipd_dns_")));
    }
}
