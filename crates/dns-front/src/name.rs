//! Query-name parsing: what a name means relative to the served domain.
//!
//! Contract: [`parse`] is total. Any string (any bytes a client can put in a question, in
//! presentation form) maps to exactly one [`Query`] and it never panics. Matching is ASCII
//! case-insensitive and a trailing dot is optional.
//!
//! The forms understood, with `D` the configured domain (which may have several labels):
//!
//! | name                         | meaning                                              |
//! |------------------------------|------------------------------------------------------|
//! | `D`                          | [`Query::Apex`]                                      |
//! | `ns.D`                       | [`Query::NameServer`] (the NS target of the apex)    |
//! | `NAME.service.D`             | [`Query::Service`] without tag                       |
//! | `TAG.NAME.service.D`         | [`Query::Service`] with tag                          |
//! | `_NAME._tcp.service.D`       | RFC 2782 form; `_tcp` / `_udp` mean "no tag filter"  |
//! | `_NAME._TAG.service.D`       | RFC 2782 form with tag filter `TAG`                  |
//! | `NODE.node.D`                | [`Query::Node`]                                      |
//! | `HEX.addr.D`                 | [`Query::Addr`]: 8 (IPv4) or 32 (IPv6) hex digits    |
//! | `service.D`, `node.D`, `addr.D`, `_X.service.D` | [`Query::EmptyNonTerminal`]       |
//! | anything else under `D`      | [`Query::Unknown`] (NXDOMAIN)                        |
//! | anything not under `D`       | [`Query::NotOurs`] (REFUSED)                         |
//!
//! Empty non-terminals (names that only exist because names below them exist) are reported
//! separately so the resolver can answer NODATA rather than NXDOMAIN: per RFC 8020 a resolver
//! may treat an NXDOMAIN for `service.D` as proof that nothing below it exists.
//!
//! Labels are split on unescaped dots; a backslash escape (`\.`, `\065`) is kept verbatim in its
//! label, so such labels never match a catalog name but also never split a label in two.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The meaning of a query name relative to the configured domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// The domain itself (`D.`): SOA and NS live here.
    Apex,
    /// `ns.D.`, the target of the apex NS record.
    NameServer,
    /// A name that exists only as the parent of other names (`service.D.`, `node.D.`,
    /// `addr.D.`, `_X.service.D.`).
    EmptyNonTerminal,
    /// A service lookup.
    Service {
        /// Lower-cased service name.
        name: String,
        /// Lower-cased tag filter, if any.
        tag: Option<String>,
    },
    /// A node lookup (`NODE.node.D.`).
    Node {
        /// Lower-cased node name.
        name: String,
    },
    /// An address encoded in hex (`c0a80001.addr.D.`), used as an SRV target when a service
    /// instance's address differs from its node's address.
    Addr(IpAddr),
    /// Inside the domain but of no known form: NXDOMAIN.
    Unknown,
    /// Outside the domain: REFUSED.
    NotOurs,
}

/// Splits a presentation-format name into lower-cased labels.
///
/// A single trailing dot is ignored; `""` and `"."` give no labels. Empty labels (as in
/// `a..b`) are kept as empty strings so that callers can reject them.
pub fn labels(name: &str) -> Vec<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push('\\');
                if let Some(next) = chars.next() {
                    cur.push(next.to_ascii_lowercase());
                }
            }
            '.' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c.to_ascii_lowercase()),
        }
    }
    out.push(cur);
    out
}

/// Parses `name` relative to `domain` (both case-insensitive, trailing dots optional).
pub fn parse(name: &str, domain: &str) -> Query {
    let labels = labels(name);
    let domain = self::labels(domain);
    let Some(split) = labels.len().checked_sub(domain.len()) else {
        return Query::NotOurs;
    };
    let (rest, suffix) = labels.split_at(split);
    if suffix != domain.as_slice() {
        return Query::NotOurs;
    }
    if rest.iter().any(String::is_empty) {
        return Query::Unknown;
    }
    match rest {
        [] => Query::Apex,
        [ns] if ns == "ns" => Query::NameServer,
        [kind] if matches!(kind.as_str(), "service" | "node" | "addr") => Query::EmptyNonTerminal,
        [name, kind] if kind == "service" => {
            if name.starts_with('_') {
                Query::EmptyNonTerminal
            } else {
                Query::Service { name: name.clone(), tag: None }
            }
        }
        [first, second, kind] if kind == "service" => service_with_tag(first, second),
        [name, kind] if kind == "node" => Query::Node { name: name.clone() },
        [hex, kind] if kind == "addr" => decode_addr(hex).map_or(Query::Unknown, Query::Addr),
        _ => Query::Unknown,
    }
}

/// `TAG.NAME.service` or the RFC 2782 `_NAME._PROTO` / `_NAME._TAG` forms.
fn service_with_tag(first: &str, second: &str) -> Query {
    match (first.strip_prefix('_'), second.strip_prefix('_')) {
        (Some(name), Some(proto_or_tag)) => {
            if name.is_empty() || proto_or_tag.is_empty() {
                return Query::Unknown;
            }
            let tag = match proto_or_tag {
                "tcp" | "udp" => None,
                tag => Some(tag.to_owned()),
            };
            Query::Service { name: name.to_owned(), tag }
        }
        _ => Query::Service { name: second.to_owned(), tag: Some(first.to_owned()) },
    }
}

/// Hex-encodes an address as used in `HEX.addr.D` (Consul's encoding: 8 or 32 hex digits).
pub fn encode_addr(ip: IpAddr) -> String {
    let octets: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    octets.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes the label of a `HEX.addr.D` name; `None` unless it is 8 or 32 hex digits.
pub fn decode_addr(hex: &str) -> Option<IpAddr> {
    if !hex.is_ascii() {
        return None;
    }
    let mut bytes = Vec::with_capacity(16);
    for pair in hex.as_bytes().chunks(2) {
        let digits = std::str::from_utf8(pair).ok()?;
        if digits.len() != 2 {
            return None;
        }
        bytes.push(u8::from_str_radix(digits, 16).ok()?);
    }
    if let Ok(v4) = <[u8; 4]>::try_from(bytes.as_slice()) {
        return Some(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    <[u8; 16]>::try_from(bytes.as_slice()).ok().map(|v6| IpAddr::V6(Ipv6Addr::from(v6)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, tag: Option<&str>) -> Query {
        Query::Service { name: name.into(), tag: tag.map(Into::into) }
    }

    #[test]
    fn service_forms() {
        assert_eq!(parse("web.service.gossip.", "gossip"), svc("web", None));
        assert_eq!(parse("web.service.gossip", "gossip"), svc("web", None));
        assert_eq!(parse("WeB.SERVICE.Gossip.", "gossip"), svc("web", None));
        assert_eq!(parse("v1.web.service.gossip", "gossip"), svc("web", Some("v1")));
        assert_eq!(parse("_web._tcp.service.gossip", "gossip"), svc("web", None));
        assert_eq!(parse("_web._UDP.service.gossip", "gossip"), svc("web", None));
        assert_eq!(parse("_web._v1.service.gossip", "gossip"), svc("web", Some("v1")));
        assert_eq!(parse("_._tcp.service.gossip", "gossip"), Query::Unknown);
    }

    #[test]
    fn other_forms() {
        assert_eq!(parse("gossip.", "gossip"), Query::Apex);
        assert_eq!(parse("GOSSIP", "gossip"), Query::Apex);
        assert_eq!(parse("ns.gossip", "gossip"), Query::NameServer);
        assert_eq!(parse("n1.node.gossip", "gossip"), Query::Node { name: "n1".into() });
        assert_eq!(parse("service.gossip", "gossip"), Query::EmptyNonTerminal);
        assert_eq!(parse("_tcp.service.gossip", "gossip"), Query::EmptyNonTerminal);
        assert_eq!(parse("node.gossip", "gossip"), Query::EmptyNonTerminal);
        assert_eq!(parse("a.b.c.service.gossip", "gossip"), Query::Unknown);
        assert_eq!(parse("x.node2.gossip", "gossip"), Query::Unknown);
        assert_eq!(parse("a..service.gossip", "gossip"), Query::Unknown);
        assert_eq!(parse("example.com.", "gossip"), Query::NotOurs);
        assert_eq!(parse(".", "gossip"), Query::NotOurs);
        assert_eq!(parse("", "gossip"), Query::NotOurs);
        assert_eq!(parse("web.service.notgossip", "gossip"), Query::NotOurs);
    }

    #[test]
    fn multi_label_domain() {
        let d = "consul.example";
        assert_eq!(parse("web.service.consul.example.", d), svc("web", None));
        assert_eq!(parse("consul.example.", d), Query::Apex);
        assert_eq!(parse("example.", d), Query::NotOurs);
        assert_eq!(parse("web.service.consul.other.", d), Query::NotOurs);
    }

    #[test]
    fn escapes_never_split_labels() {
        assert_eq!(labels("a\\.b.c."), vec!["a\\.b".to_string(), "c".to_string()]);
        assert_eq!(parse("we\\.b.service.gossip", "gossip"), svc("we\\.b", None));
        assert_eq!(labels("trailing\\"), vec!["trailing\\".to_string()]);
    }

    #[test]
    fn addr_round_trip() {
        for ip in ["192.168.0.1", "::1", "fd00::1:2"] {
            let ip: IpAddr = ip.parse().expect("test address");
            assert_eq!(decode_addr(&encode_addr(ip)), Some(ip));
            let name = format!("{}.addr.gossip.", encode_addr(ip));
            assert_eq!(parse(&name, "gossip"), Query::Addr(ip));
        }
        assert_eq!(encode_addr("192.168.0.1".parse().expect("test address")), "c0a80001");
        assert_eq!(decode_addr("c0a8000"), None);
        assert_eq!(decode_addr("zza80001"), None);
        assert_eq!(decode_addr("c0a8é01"), None);
        assert_eq!(parse("c0a800.addr.gossip", "gossip"), Query::Unknown);
    }
}
