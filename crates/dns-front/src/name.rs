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
//! | `NAME.query.D`               | [`Query::Prepared`] (a prepared query)               |
//! | `HEX.addr.D`                 | [`Query::Addr`]: 8 (IPv4) or 32 (IPv6) hex digits    |
//! | `NAME.service.DC.D`, `NODE.node.DC.D`, ... | the same as without `DC` (the datacenter)  |
//! | `service.D`, `node.D`, `addr.D`, `_X.service.D`, `DC.D` | [`Query::EmptyNonTerminal`] |
//! | anything else under `D`      | [`Query::Unknown`] (NXDOMAIN)                        |
//! | `a.b.c.d.in-addr.arpa`, 32 nibbles `.ip6.arpa` | [`Query::Reverse`] (PTR), any domain |
//! | anything not under `D`       | [`Query::NotOurs`] (REFUSED)                         |
//!
//! The datacenter label is accepted only by [`parse_in`] (the resolver passes its configured
//! datacenter); another label in that place is [`Query::Unknown`], as any unknown name.
//! Reverse names are recognised only when complete (4 decimal octets, or 32 hex nibbles):
//! partial ones (`10.in-addr.arpa`) are not ours.
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
    /// A prepared query (`NAME.query.D.`): executed by the agent (its service, tags and
    /// failover), answered as a service.
    Prepared {
        /// Lower-cased query name.
        name: String,
    },
    /// A node lookup (`NODE.node.D.`).
    Node {
        /// Lower-cased node name.
        name: String,
    },
    /// An address encoded in hex (`c0a80001.addr.D.`), used as an SRV target when a service
    /// instance's address differs from its node's address.
    Addr(IpAddr),
    /// A complete reverse-mapping name (`4.3.2.1.in-addr.arpa.`, or 32 nibbles under
    /// `ip6.arpa.`): the address it stands for.
    Reverse(IpAddr),
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

/// Parses `name` relative to `domain` (both case-insensitive, trailing dots optional), with
/// no datacenter label.
pub fn parse(name: &str, domain: &str) -> Query {
    parse_in(name, domain, "")
}

/// Parses `name` relative to `domain`, accepting the datacenter label `datacenter` (ignored
/// when empty) after `service` and `node`.
pub fn parse_in(name: &str, domain: &str, datacenter: &str) -> Query {
    let labels = labels(name);
    let domain = self::labels(domain);
    let Some(split) = labels.len().checked_sub(domain.len()) else {
        return reverse(&labels).map_or(Query::NotOurs, Query::Reverse);
    };
    let (rest, suffix) = labels.split_at(split);
    if suffix != domain.as_slice() {
        return reverse(&labels).map_or(Query::NotOurs, Query::Reverse);
    }
    if rest.iter().any(String::is_empty) {
        return Query::Unknown;
    }
    let dc = datacenter.to_ascii_lowercase();
    let mut rest = rest;
    if !dc.is_empty() {
        match rest {
            [only] if *only == dc => return Query::EmptyNonTerminal,
            [.., kind, last] if *last == dc && matches!(kind.as_str(), "service" | "node" | "query") => {
                rest = &rest[..rest.len() - 1];
            }
            _ => {}
        }
    }
    match rest {
        [] => Query::Apex,
        [ns] if ns == "ns" => Query::NameServer,
        [kind] if matches!(kind.as_str(), "service" | "node" | "addr" | "query") => Query::EmptyNonTerminal,
        [name, kind] if kind == "service" => {
            if name.starts_with('_') {
                Query::EmptyNonTerminal
            } else {
                Query::Service { name: name.clone(), tag: None }
            }
        }
        [first, second, kind] if kind == "service" => service_with_tag(first, second),
        [name, kind] if kind == "node" => Query::Node { name: name.clone() },
        [name, kind] if kind == "query" => Query::Prepared { name: name.clone() },
        [hex, kind] if kind == "addr" => decode_addr(hex).map_or(Query::Unknown, Query::Addr),
        _ => Query::Unknown,
    }
}

/// The datacenter a name addresses when it is not `local`: `NAME.service.DC.D`,
/// `TAG.NAME.service.DC.D`, `_NAME._TAG.service.DC.D` and `NODE.node.DC.D` with `DC` a plain
/// label other than `local` give `Some(DC)` (lower-cased); every other name,
/// the local datacenter's among them, gives `None`. The DNS server relays such names to that
/// datacenter ([`crate::server::Remote`]) instead of resolving them here.
pub fn remote_datacenter(name: &str, domain: &str, local: &str) -> Option<String> {
    let labels = labels(name);
    let domain = self::labels(domain);
    let split = labels.len().checked_sub(domain.len())?;
    let (rest, suffix) = labels.split_at(split);
    if suffix != domain.as_slice() || rest.iter().any(String::is_empty) {
        return None;
    }
    match rest {
        [_, .., kind, dc] if matches!(kind.as_str(), "service" | "node") => {
            let plain = dc.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            (plain && !dc.eq_ignore_ascii_case(local) && rest.len() <= 4).then(|| dc.clone())
        }
        _ => None,
    }
}

/// Whether `name` carries the datacenter label `datacenter` (`NAME.service.DC.D`, ...): its
/// answers then name SRV targets with the label too, so that a client that asked another
/// datacenter through ours resolves the targets there as well.
pub fn has_datacenter_label(name: &str, domain: &str, datacenter: &str) -> bool {
    let labels = labels(name);
    let domain = self::labels(domain);
    let Some(split) = labels.len().checked_sub(domain.len()) else { return false };
    let (rest, suffix) = labels.split_at(split);
    suffix == domain.as_slice()
        && !datacenter.is_empty()
        && matches!(rest, [_, .., kind, dc] if matches!(kind.as_str(), "service" | "node")
            && dc.eq_ignore_ascii_case(datacenter))
}

/// The address of a complete reverse name: four decimal octets under `in-addr.arpa`, or 32
/// single hex nibbles under `ip6.arpa`, least significant first.
fn reverse(labels: &[String]) -> Option<IpAddr> {
    match labels {
        [d, c, b, a, in_addr, arpa] if in_addr == "in-addr" && arpa == "arpa" => {
            let octet = |s: &String| {
                let canonical =
                    s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
                if canonical { s.parse::<u8>().ok() } else { None }
            };
            Some(IpAddr::V4(Ipv4Addr::new(octet(a)?, octet(b)?, octet(c)?, octet(d)?)))
        }
        [nibbles @ .., ip6, arpa] if ip6 == "ip6" && arpa == "arpa" && nibbles.len() == 32 => {
            let mut bytes = [0u8; 16];
            for (i, n) in nibbles.iter().rev().enumerate() {
                let [digit] = n.as_bytes() else { return None };
                let value = char::from(*digit).to_digit(16)? as u8;
                bytes[i / 2] |= if i % 2 == 0 { value << 4 } else { value };
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// The reverse-mapping name of `ip` (`4.3.2.1.in-addr.arpa.`, or 32 nibbles `.ip6.arpa.`).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(73);
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0x0F, byte >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
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
    fn names_of_other_datacenters() {
        let r = |n: &str| remote_datacenter(n, "gossip", "dc1");
        assert_eq!(r("web.service.dc2.gossip."), Some("dc2".into()));
        assert_eq!(r("Primary.WEB.service.DC2.gossip"), Some("dc2".into()));
        assert_eq!(r("_web._tcp.service.dc2.gossip"), Some("dc2".into()));
        assert_eq!(r("n1.node.dc3.gossip"), Some("dc3".into()));
        assert_eq!(r("backup.query.dc2.gossip"), None, "prepared queries of other datacenters: not relayed");
        for local in ["web.service.dc1.gossip", "web.service.DC1.gossip", "web.service.gossip", "service.dc2.gossip"] {
            assert_eq!(r(local), None, "{local}");
        }
        for odd in ["dc2.gossip", "web.service.dc2.example", "a.b.c.web.service.dc2.gossip", r"web.service.d\.c.gossip"]
        {
            assert_eq!(r(odd), None, "{odd}");
        }
        assert!(has_datacenter_label("web.service.dc1.gossip", "gossip", "dc1"));
        assert!(!has_datacenter_label("web.service.gossip", "gossip", "dc1"));
        assert!(!has_datacenter_label("web.service.dc2.gossip", "gossip", "dc1"));
    }

    #[test]
    fn datacenter_label() {
        let p = |n: &str| parse_in(n, "gossip", "gossip");
        assert_eq!(p("web.service.gossip.gossip"), svc("web", None));
        assert_eq!(p("v1.web.service.gossip.gossip"), svc("web", Some("v1")));
        assert_eq!(p("_web._tcp.service.GOSSIP.gossip"), svc("web", None));
        assert_eq!(p("n1.node.gossip.gossip"), Query::Node { name: "n1".into() });
        assert_eq!(p("web.service.gossip"), svc("web", None));
        assert_eq!(p("gossip.gossip"), Query::EmptyNonTerminal);
        assert_eq!(p("service.gossip.gossip"), Query::EmptyNonTerminal);
        assert_eq!(p("web.service.dc2.gossip"), Query::Unknown);
        assert_eq!(p("n1.node.dc2.gossip"), Query::Unknown);
        assert_eq!(p("x.addr.gossip.gossip"), Query::Unknown);
        // Without a configured datacenter the label is not accepted.
        assert_eq!(parse("web.service.gossip.gossip", "gossip"), Query::Unknown);
        assert_eq!(parse_in("web.service.dc1.consul", "consul", "DC1"), svc("web", None));
    }

    #[test]
    fn reverse_names() {
        assert_eq!(parse("1.0.0.10.in-addr.arpa.", "gossip"), Query::Reverse(ip("10.0.0.1")));
        assert_eq!(parse("1.0.0.10.IN-ADDR.ARPA", "gossip"), Query::Reverse(ip("10.0.0.1")));
        for partial in ["0.10.in-addr.arpa", "in-addr.arpa", "256.0.0.10.in-addr.arpa", "01.0.0.10.in-addr.arpa"] {
            assert_eq!(parse(partial, "gossip"), Query::NotOurs, "{partial}");
        }
        assert_eq!(parse("x.1.0.0.10.in-addr.arpa", "gossip"), Query::NotOurs);
        for addr in ["fd00::1", "::1", "2001:db8::ff:1"] {
            let name = reverse_name(ip(addr));
            assert_eq!(parse(&name, "gossip"), Query::Reverse(ip(addr)), "{name}");
        }
        assert_eq!(reverse_name(ip("10.0.0.1")), "1.0.0.10.in-addr.arpa.");
        let short = reverse_name(ip("fd00::1")).replacen("1.", "", 1);
        assert_eq!(parse(&short, "gossip"), Query::NotOurs);
        let wide = reverse_name(ip("fd00::1")).replacen("1.", "10.", 1);
        assert_eq!(parse(&wide, "gossip"), Query::NotOurs);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
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
