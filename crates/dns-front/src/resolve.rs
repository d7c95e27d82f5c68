//! The pure resolver: one question plus one snapshot gives one answer.
//!
//! Contract: [`resolve`] does no IO, takes no lock, reads no clock and never panics; its only
//! randomness is the `rng_seed` argument, so for a given snapshot, config and seed the answer
//! is fully determined. It knows nothing about wire formats: the hickory adapter in
//! [`crate::server`] translates [`Answer`] into a DNS message (and handles truncation).
//!
//! Semantics (modelled on Consul DNS):
//!
//! * A service name *exists* iff it has at least one answerable instance (passing, or also
//!   warning when `only_passing` is false) matching the tag filter. A service whose instances
//!   are all unhealthy is NXDOMAIN, as in Consul (hashicorp/consul#1142, fixed by #1143); with
//!   the default `negative_ttl` of 0 a recovered service is visible immediately.
//! * A node name exists iff the node is in the snapshot and alive. `HEX.addr.D` always exists.
//! * Name exists but has no record of the asked type (AAAA of a v4-only service, TXT, SRV of a
//!   node, ...) → NOERROR, empty answer, SOA in authority (NODATA). Empty non-terminals
//!   (`service.D`, `node.D`, ...) are NODATA too (RFC 8020).
//! * Name does not exist → NXDOMAIN, SOA in authority. Outside the domain → REFUSED, no records,
//!   not authoritative. Everything else is authoritative.
//! * A/AAAA: distinct addresses of the answerable instances of that family, shuffled.
//!   ANY on a service, node, `ns` or addr name means A + AAAA. ANY at the apex gives SOA + NS.
//! * SRV: one record per answerable instance, priority 1, weight = instance weight, ordered by
//!   RFC 2782 weighted selection. Target is `NODE.node.D.` when the instance's address is its
//!   (alive) node's address, otherwise `HEX.addr.D.` (Consul's own form) so that a target name
//!   never stands for two addresses. The additional section holds the A/AAAA of each distinct
//!   target, whose address is the instance address.
//! * Apex: SOA (mname `ns.D.`, rname `hostmaster.D.`, serial = snapshot index truncated to u32,
//!   refresh 3600, retry 600, expire 86400, minimum = `negative_ttl`, record TTL =
//!   `negative_ttl`) and NS `ns.D.`, whose A record `127.0.0.1` goes in the additional section:
//!   the agent serves DNS on loopback, next to its clients.
//! * Datacenter: `NAME.service.DC.D`, `NODE.node.DC.D` (and the tag and RFC 2782 forms) with
//!   `DC = cfg.datacenter` answer as without the label, except that SRV targets of node form
//!   carry the label too (`NODE.node.DC.D.`, as Consul), so that a client that reached this
//!   datacenter through another one's agent resolves them here as well. Another label there is
//!   NXDOMAIN to the resolver; the server relays such names to that datacenter first when it
//!   has a WAN pool ([`crate::server::Remote`]).
//! * Reverse names (`4.3.2.1.in-addr.arpa.`, `...ip6.arpa.`, complete only): if alive nodes
//!   have that address, PTR `NODE.node.D.` for each (sorted); otherwise, if answerable
//!   instances have it, PTR `NAME.service.D.` for each distinct service (sorted), as Consul.
//!   ANY means PTR there; other types are NODATA with no SOA. An address we do not know is
//!   NXDOMAIN, not authoritative and with no SOA (the agent is no authority for the reverse
//!   zones: it only knows some of their names). Partial reverse names are not ours (REFUSED).
//! * TXT on a node name: its metadata, one `key=value` string each (NODATA without), as Consul.
//! * Positive records (A, AAAA, SRV, PTR, NS and additional) carry `cfg.ttl`.

use std::net::{IpAddr, Ipv4Addr};

pub use crate::records::{Answer, QType, Question, Rcode, Record};

use crate::name::{self, Query};
use crate::order::{self, Rng};
use crate::snapshot::{DnsInstance, Health, ResolverConfig, Snapshot};

#[cfg(test)]
mod tests;

/// Address answered for `ns.<domain>` (the apex NS target).
pub const NS_ADDRESS: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Resolves `q` against `snap`. See the module documentation for the semantics.
pub fn resolve(q: &Question, snap: &Snapshot, cfg: &ResolverConfig, rng_seed: u64) -> Answer {
    let dc_label = name::has_datacenter_label(q.name(), &cfg.domain, &cfg.datacenter);
    let ctx = Ctx { q, snap, cfg, apex: apex_name(&cfg.domain), dc_label };
    let mut rng = Rng::new(rng_seed);
    match name::parse_in(q.name(), &cfg.domain, &cfg.datacenter) {
        Query::NotOurs => Answer::empty(Rcode::Refused, false),
        Query::Unknown => ctx.negative(Rcode::NxDomain),
        Query::EmptyNonTerminal => ctx.negative(Rcode::NoError),
        Query::Apex => ctx.apex(),
        Query::NameServer => ctx.addresses(&[IpAddr::V4(NS_ADDRESS)], &mut rng),
        Query::Addr(ip) => ctx.addresses(&[ip], &mut rng),
        Query::Node { name } => match snap.nodes.get(&name) {
            Some(node) if node.alive && q.qtype == QType::Txt => ctx.node_meta(node),
            Some(node) if node.alive => ctx.addresses(&[node.address], &mut rng),
            _ => ctx.negative(Rcode::NxDomain),
        },
        Query::Service { name, tag } => ctx.service(&name, tag.as_deref(), &mut rng),
        // The server resolves a prepared query against a snapshot of its results alone, whose
        // instances carry the query's name (without a hook, against an empty one: NXDOMAIN).
        Query::Prepared { name } => ctx.service(&name, None, &mut rng),
        Query::Reverse(ip) => ctx.reverse(ip),
    }
}

/// `domain.` (or `.` for an empty domain), lower-cased.
fn apex_name(domain: &str) -> String {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    if d.is_empty() { ".".to_owned() } else { format!("{d}.") }
}

/// Whether the resolver answers with this instance under `cfg`.
pub fn is_answerable(inst: &dyn DnsInstance, cfg: &ResolverConfig) -> bool {
    match inst.health() {
        Health::Passing => true,
        Health::Warning => !cfg.only_passing,
        Health::Critical => false,
    }
}

/// Everything one resolution needs, to keep signatures short.
struct Ctx<'a> {
    q: &'a Question,
    snap: &'a Snapshot,
    cfg: &'a ResolverConfig,
    apex: String,
    /// The question named the datacenter (`NAME.service.DC.D`): node targets name it too.
    dc_label: bool,
}

impl Ctx<'_> {
    /// `label.<apex>`, handling the root apex.
    fn sub(&self, label: &str) -> String {
        if self.apex == "." { format!("{label}.") } else { format!("{label}.{}", self.apex) }
    }

    fn soa(&self, name: String) -> Record {
        Record::Soa {
            name,
            mname: self.sub("ns"),
            rname: self.sub("hostmaster"),
            serial: self.snap.index as u32,
            refresh: 3600,
            retry: 600,
            expire: 86400,
            minimum: self.cfg.negative_ttl,
            ttl: self.cfg.negative_ttl,
        }
    }

    fn ns(&self) -> (Record, Record) {
        let target = self.sub("ns");
        let glue = Record::A { name: target.clone(), addr: NS_ADDRESS, ttl: self.cfg.ttl };
        (Record::Ns { name: self.q.name().to_owned(), target, ttl: self.cfg.ttl }, glue)
    }

    /// NXDOMAIN or NODATA: no answer, the SOA in authority.
    fn negative(&self, rcode: Rcode) -> Answer {
        let mut a = Answer::empty(rcode, true);
        a.authority.push(self.soa(self.apex.clone()));
        a
    }

    fn positive(&self, answers: Vec<Record>, additional: Vec<Record>) -> Answer {
        if answers.is_empty() {
            return self.negative(Rcode::NoError);
        }
        Answer { rcode: Rcode::NoError, authoritative: true, answers, authority: vec![], additional }
    }

    fn apex(&self) -> Answer {
        let soa = || self.soa(self.q.name().to_owned());
        match self.q.qtype {
            QType::Soa => self.positive(vec![soa()], vec![]),
            QType::Ns => {
                let (ns, glue) = self.ns();
                self.positive(vec![ns], vec![glue])
            }
            QType::Any => {
                let (ns, glue) = self.ns();
                self.positive(vec![soa(), ns], vec![glue])
            }
            _ => self.negative(Rcode::NoError),
        }
    }

    /// A/AAAA/ANY answer owned by the question name from a set of addresses (deduplicated
    /// and shuffled); any other type is NODATA.
    fn addresses(&self, addrs: &[IpAddr], rng: &mut Rng) -> Answer {
        let (want_v4, want_v6) = match self.q.qtype {
            QType::A => (true, false),
            QType::Aaaa => (false, true),
            QType::Any => (true, true),
            _ => return self.negative(Rcode::NoError),
        };
        let mut addrs: Vec<IpAddr> =
            addrs.iter().copied().filter(|ip| if ip.is_ipv4() { want_v4 } else { want_v6 }).collect();
        addrs.sort_unstable();
        addrs.dedup();
        order::shuffle(&mut addrs, rng);
        let answers = addrs.into_iter().map(|ip| self.addr_record(self.q.name(), ip)).collect();
        self.positive(answers, vec![])
    }

    /// TXT of a node name: one `key=value` string per metadata pair (cut to 255 bytes at a
    /// character boundary, as a character-string holds no more); NODATA without metadata.
    fn node_meta(&self, node: &crate::snapshot::Node) -> Answer {
        let answers = node
            .meta
            .iter()
            .map(|(k, v)| {
                let mut text = format!("{k}={v}");
                if text.len() > 255 {
                    let mut end = 255;
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text.truncate(end);
                }
                Record::Txt { name: self.q.name().to_owned(), text, ttl: self.cfg.ttl }
            })
            .collect();
        self.positive(answers, vec![])
    }

    fn addr_record(&self, name: &str, ip: IpAddr) -> Record {
        let (name, ttl) = (name.to_owned(), self.cfg.ttl);
        match ip {
            IpAddr::V4(addr) => Record::A { name, addr, ttl },
            IpAddr::V6(addr) => Record::Aaaa { name, addr, ttl },
        }
    }

    fn service(&self, name: &str, tag: Option<&str>, rng: &mut Rng) -> Answer {
        let instances: Vec<&dyn DnsInstance> = self
            .snap
            .services
            .get(name)
            .into_iter()
            .flat_map(|l| l.instances())
            .filter(|i| is_answerable(*i, self.cfg))
            .filter(|i| tag.is_none_or(|t| i.has_tag(t)))
            .collect();
        if instances.is_empty() {
            return self.negative(Rcode::NxDomain);
        }
        if self.q.qtype != QType::Srv {
            let addrs: Vec<IpAddr> = instances.iter().map(|i| i.address()).collect();
            return self.addresses(&addrs, rng);
        }
        let weighted = instances.into_iter().map(|i| (i.weight(), i)).collect();
        let mut answers = Vec::new();
        let mut additional: Vec<Record> = Vec::new();
        // One glue record per distinct (target, address), in answer order; a set keeps this
        // linear (a `contains` scan made large services quadratic).
        let mut glued: std::collections::HashSet<(String, IpAddr)> = std::collections::HashSet::new();
        for inst in order::rfc2782_order(weighted, rng) {
            let target = self.srv_target(inst);
            if glued.insert((target.clone(), inst.address())) {
                additional.push(self.addr_record(&target, inst.address()));
            }
            answers.push(Record::Srv {
                name: self.q.name().to_owned(),
                priority: 1,
                weight: inst.weight(),
                port: inst.port(),
                target,
                ttl: self.cfg.ttl,
            });
        }
        self.positive(answers, additional)
    }

    /// PTR for a reverse name: the alive nodes with that address, else the services of the
    /// answerable instances with it. See the module documentation.
    fn reverse(&self, ip: IpAddr) -> Answer {
        let mut targets: Vec<String> = self
            .snap
            .nodes
            .iter()
            .filter(|(key, n)| n.alive && n.address == ip && is_plain_label(key))
            .map(|(key, _)| self.sub(&format!("{key}.node")))
            .collect();
        if targets.is_empty() {
            targets = self
                .snap
                .services
                .iter()
                .filter(|(key, list)| {
                    is_plain_label(key) && list.instances().any(|i| i.address() == ip && is_answerable(i, self.cfg))
                })
                .map(|(key, _)| self.sub(&format!("{key}.service")))
                .collect();
        }
        if targets.is_empty() {
            return Answer::empty(Rcode::NxDomain, false);
        }
        if !matches!(self.q.qtype, QType::Ptr | QType::Any) {
            return Answer::empty(Rcode::NoError, true);
        }
        targets.sort_unstable();
        let (name, ttl) = (self.q.name(), self.cfg.ttl);
        let answers = targets.into_iter().map(|target| Record::Ptr { name: name.to_owned(), target, ttl }).collect();
        Answer { rcode: Rcode::NoError, authoritative: true, answers, authority: vec![], additional: vec![] }
    }

    /// `NODE.node.D.` if that name resolves to exactly the instance address, else
    /// `HEX.addr.D.`.
    fn srv_target(&self, inst: &dyn DnsInstance) -> String {
        let node = inst.node().to_ascii_lowercase();
        match self.snap.nodes.get(&node) {
            Some(n) if n.alive && n.address == inst.address() && is_plain_label(&node) => match self.dc_label {
                true => self.sub(&format!("{node}.node.{}", self.cfg.datacenter)),
                false => self.sub(&format!("{node}.node")),
            },
            _ => self.sub(&format!("{}.addr", name::encode_addr(inst.address()))),
        }
    }
}

/// Whether `s` can be written as one DNS label without escaping (so that `s.node.D` parses
/// back to the node): 1 to 63 of `[A-Za-z0-9_-]`, not starting with `-`.
fn is_plain_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && !s.starts_with('-')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
