//! Read-only views of the gossip table, brought up to date when it changes and swapped in
//! atomically: the DNS snapshot and the catalog the HTTP API answers from. Readers never lock.
//!
//! A rebuild costs what changed, not the catalog ([`Views`]): instances are shared (`Arc`)
//! between rebuilds, lists are kept per service name, and of each owner only the entries put
//! since the last rebuild are read ([`gossip_core::NodeState::changed_since`]). Members and
//! nodes are listed again each time (one line per member).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use dns_front::snapshot::InstanceList;
use gossip_core::NOTE_PREFIX;
use gossip_core::{Gossip, Health, NodeId, NodeState, NodeStatus, ServiceInstance, Value};

/// One member as the API shows it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Node id.
    pub id: NodeId,
    /// Identity public key.
    pub identity: [u8; 32],
    /// Node name.
    pub name: String,
    /// Gossip address.
    pub addr: std::net::SocketAddr,
    /// Generation (incarnation).
    pub generation: u64,
    /// Alive or left (as the node itself says).
    pub status: NodeStatus,
    /// Alive, suspect or dead (as this agent's failure detector sees it).
    pub liveness: gossip_core::Liveness,
    /// Why this agent banned the node, if it did.
    pub banned: Option<String>,
    /// Why the cluster excluded the node (a majority of members accuse it), if it did.
    pub excluded: Option<String>,
    /// The wire versions the node speaks (its signed `@proto` entry; `None` if it has not
    /// said).
    pub versions: Option<gossip_core::version::VersionRange>,
    /// The version this agent and the node speak: the highest both speak (this agent's
    /// highest for itself); `None` when unknown or there is none.
    pub vsn: Option<u8>,
    /// The node's metadata (`--node-meta`).
    pub meta: std::sync::Arc<BTreeMap<String, String>>,
}

/// The node that owns instances, as they show it: one per node, shared by its instances.
#[derive(Debug)]
pub struct Owner {
    /// Its name (the DNS answers read it through the instances).
    pub name: Arc<str>,
    /// Its id.
    pub id: NodeId,
    /// Its address (its gossip IP).
    pub addr: IpAddr,
    /// Its metadata.
    pub meta: Arc<BTreeMap<String, String>>,
}

/// One service instance with its node.
#[derive(Debug, Clone)]
pub struct CatalogInstance {
    /// The owning node.
    pub node: Arc<Owner>,
    /// The instance as registered (shared with the gossip table's entry).
    pub service: Arc<gossip_core::ServiceInstance>,
    /// Why it is not passing: the owner's check note (a bounded summary of the failing check's
    /// output), if it published one.
    pub note: Option<Arc<str>>,
}

/// The catalog at one index.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Raised at each rebuild (Consul's `X-Consul-Index`).
    pub index: u64,
    /// Every known node by name.
    pub members: Vec<Member>,
    /// Instances of live nodes, by service name (exact case as registered), sorted by node then
    /// id. Persistent: shared with the previous catalog where unchanged.
    pub services: imbl::OrdMap<String, InstanceSet>,
    /// True while self-preservation holds deaths back.
    pub self_preservation: bool,
    /// The prepared queries of live members, with the name of the member holding each, by
    /// query name then holder.
    pub queries: Arc<Vec<(String, crate::query::PreparedQuery)>>,
}

impl Catalog {
    /// Every instance, by service name then node and id.
    pub fn instances(&self) -> impl Iterator<Item = &CatalogInstance> {
        self.services.values().flat_map(|l| l.iter())
    }
}

/// The prepared queries `n` holds (its `app/query/` records), added to `out`; sorted by name then
/// holder at the end of a rebuild.
fn collect_queries(n: &NodeState, out: &mut Vec<(String, crate::query::PreparedQuery)>) {
    let prefix = format!("{}{}", gossip_core::APP_PREFIX, crate::query::RECORD_PREFIX);
    for (_, e) in n
        .entries
        .range::<str, _>((std::ops::Bound::Included(prefix.as_str()), std::ops::Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(&prefix))
    {
        if let Value::App(b) = &e.value
            && let Some(q) = crate::query::PreparedQuery::decode(b)
        {
            out.push((n.info.name.clone(), q));
        }
    }
}

/// An instance ordered by node name, then id, then owner (then, between two instances an owner
/// published under one id, which a hostile owner could, by address: stable while it is held).
#[derive(Debug, Clone)]
struct Ordered(Arc<CatalogInstance>);

impl Ordered {
    fn key(&self) -> (&str, &str, NodeId, usize) {
        (&*self.0.node.name, &self.0.service.id, self.0.node.id, Arc::as_ptr(&self.0) as usize)
    }
}

impl PartialEq for Ordered {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Ordered {}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// The instances of one service name, by node then id: a persistent set, so that changing one
/// instance of a large service costs O(log n) and copying the catalog O(1).
#[derive(Debug, Clone, Default)]
pub struct InstanceSet(imbl::OrdSet<Ordered>);

impl InstanceSet {
    /// The instances, by node then id.
    pub fn iter(&self) -> impl Iterator<Item = &CatalogInstance> {
        self.0.iter().map(|o| &*o.0)
    }

    /// Number of instances.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What was published of one owner.
#[derive(Debug)]
struct Published {
    generation: u64,
    /// [`NodeState::epoch`] of the state published.
    epoch: u64,
    alive: bool,
    addr: SocketAddr,
    /// Name, id, IP and metadata, as its instances show them.
    owner: Arc<Owner>,
    /// Its instances, by entry key.
    instances: HashMap<Arc<str>, Arc<CatalogInstance>>,
}

/// The views as last built, kept so that the next rebuild costs what changed.
#[derive(Debug, Default)]
pub struct Views {
    owners: HashMap<NodeId, Published>,
    services: imbl::OrdMap<String, InstanceSet>,
    /// The DNS snapshot's lists: for each lower-cased name, the catalog's sets of the names
    /// that lower-case to it (shared with the catalog, so DNS holds no copy of an instance).
    dns: imbl::HashMap<String, Arc<dyn InstanceList>>,
    /// The names held that lower-case to each lower-cased one.
    cases: HashMap<String, std::collections::BTreeSet<String>>,
}

impl dns_front::snapshot::DnsInstance for CatalogInstance {
    fn address(&self) -> IpAddr {
        self.service.address.unwrap_or(self.node.addr)
    }
    fn port(&self) -> u16 {
        self.service.port
    }
    fn weight(&self) -> u16 {
        match self.service.health {
            Health::Warning => self.service.weight_warning,
            _ => self.service.weight_passing,
        }
    }
    fn health(&self) -> dns_front::snapshot::Health {
        match self.service.health {
            Health::Passing => dns_front::snapshot::Health::Passing,
            Health::Warning => dns_front::snapshot::Health::Warning,
            Health::Critical => dns_front::snapshot::Health::Critical,
        }
    }
    fn node(&self) -> &str {
        &self.node.name
    }
    fn id(&self) -> &str {
        &self.service.id
    }
    fn has_tag(&self, tag: &str) -> bool {
        self.service.tags.iter().any(|t| t.eq_ignore_ascii_case(tag))
    }
}

/// What DNS answers for one lower-cased name: the catalog's sets (persistent, so holding them
/// here copies nothing) of the names that lower-case to it, usually one.
#[derive(Debug)]
struct DnsList(Vec<InstanceSet>);

impl InstanceList for DnsList {
    fn instances(&self) -> Box<dyn Iterator<Item = &dyn dns_front::snapshot::DnsInstance> + '_> {
        Box::new(self.0.iter().flat_map(|set| set.iter().map(|i| i as &dyn dns_front::snapshot::DnsInstance)))
    }
}

/// Instances that left the views and joined them in one rebuild, in order.
#[derive(Default)]
struct Changes {
    removed: Vec<Arc<CatalogInstance>>,
    added: Vec<Arc<CatalogInstance>>,
}

impl Changes {
    fn remove(&mut self, old: Arc<CatalogInstance>) {
        self.removed.push(old);
    }

    fn add(&mut self, new: Arc<CatalogInstance>) {
        self.added.push(new);
    }
}

fn instance(n: &NodeState, owner: &Arc<Owner>, s: &Arc<ServiceInstance>) -> Arc<CatalogInstance> {
    let note = match n.entries.get(format!("{NOTE_PREFIX}{}", s.id).as_str()).map(|e| &e.value) {
        Some(Value::CheckNote { output, .. }) if s.health != Health::Passing => Some(Arc::from(&**output)),
        _ => None,
    };
    Arc::new(CatalogInstance { node: owner.clone(), service: s.clone(), note })
}

impl Views {
    /// Brings the views up to date with the table and returns the API catalog and the DNS
    /// snapshot at `index`.
    pub fn build(
        &mut self,
        g: &Gossip,
        index: u64,
        now: std::time::Instant,
    ) -> (Catalog, dns_front::snapshot::Snapshot) {
        let bans = g.bans(now);
        let mut members = Vec::new();
        let mut dns_nodes = Vec::new();
        let mut changes = Changes::default();
        let mut present = std::collections::HashSet::new();
        let mut queries = Vec::new();
        for n in g.nodes() {
            let status = n.status();
            let liveness = g.liveness(&n.info.id);
            let meta = Arc::new(n.node_meta().cloned().unwrap_or_default());
            members.push(Member {
                meta: meta.clone(),
                liveness,
                identity: n.info.identity.0,
                id: n.info.id,
                name: n.info.name.clone(),
                addr: n.info.addr,
                generation: n.info.generation,
                status,
                banned: bans.iter().find(|(i, _)| *i == n.info.identity).map(|(_, b)| b.reason.clone()),
                excluded: g.exclusions().find(|(id, _)| **id == n.info.id).map(|(_, r)| r.clone()),
                versions: g.versions_of(&n.info.id),
                vsn: g.versions_of(&n.info.id).and_then(|theirs| g.versions().negotiate(&theirs)),
            });
            // Suspects are still served (they may only be slow); dead, excluded and left nodes
            // are not.
            let alive = status == NodeStatus::Alive && liveness.serves();
            if alive {
                collect_queries(n, &mut queries);
            }
            dns_nodes.push(dns_front::snapshot::Node {
                name: n.info.name.clone(),
                address: n.info.addr.ip(),
                alive,
                meta: meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            });
            present.insert(n.info.id);
            self.owner(n, alive, meta, &mut changes);
        }
        let gone: Vec<NodeId> = self.owners.keys().filter(|id| !present.contains(*id)).copied().collect();
        for id in gone {
            if let Some(p) = self.owners.remove(&id) {
                for (_, old) in p.instances {
                    changes.remove(old);
                }
            }
        }
        self.apply(changes);
        members.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        let snapshot = dns_front::snapshot::Snapshot::from_parts(index, self.dns.clone(), dns_nodes);
        queries.sort_by(|a: &(String, crate::query::PreparedQuery), b| (&a.1.name, &a.0).cmp(&(&b.1.name, &b.0)));
        let catalog = Catalog {
            index,
            members,
            services: self.services.clone(),
            self_preservation: g.self_preservation(),
            queries: Arc::new(queries),
        };
        (catalog, snapshot)
    }

    /// Records what changed of one owner: the entries put since its last rebuild, or all of
    /// it when anything its instances carry (generation, liveness, name, address, metadata)
    /// changed or the state no longer knows what was put.
    fn owner(&mut self, node: &NodeState, alive: bool, meta: Arc<BTreeMap<String, String>>, changes: &mut Changes) {
        let n = node.served();
        let same = |p: &Published| {
            p.generation == n.info.generation
                && p.alive == alive
                && *p.owner.name == *n.info.name
                && p.addr == n.info.addr
                && *p.owner.meta == *meta
        };
        if let Some(p) = self.owners.get_mut(&n.info.id).filter(|p| same(p)) {
            if let Some(keys) = n.changed_since(p.epoch) {
                // A changed check note changes its service's instance: each instance key once.
                let keys: std::collections::BTreeSet<std::borrow::Cow<'_, str>> = keys
                    .into_iter()
                    .map(|k| match k.strip_prefix(NOTE_PREFIX) {
                        Some(id) => std::borrow::Cow::Owned(format!("svc/{id}")),
                        None => std::borrow::Cow::Borrowed(k),
                    })
                    .collect();
                for k in &keys {
                    if let Some(old) = p.instances.remove(&**k) {
                        changes.remove(old);
                    }
                    if let (true, Some((key, Value::Service(s)))) =
                        (alive, n.entries.get_key_value(&**k).map(|(key, e)| (key, &e.value)))
                    {
                        let new = instance(n, &p.owner, s);
                        p.instances.insert(key.clone(), new.clone());
                        changes.add(new);
                    }
                }
                p.epoch = n.epoch();
                return;
            }
        }
        if let Some(p) = self.owners.remove(&n.info.id) {
            for (_, old) in p.instances {
                changes.remove(old);
            }
        }
        let mut instances = HashMap::new();
        let owner = Arc::new(Owner { name: n.info.name.as_str().into(), id: n.info.id, addr: n.info.addr.ip(), meta });
        if alive {
            for e in n.entries.values() {
                if let Value::Service(s) = &e.value {
                    let new = instance(n, &owner, s);
                    instances.insert(e.key.clone(), new.clone());
                    changes.add(new);
                }
            }
        }
        let p =
            Published { generation: n.info.generation, epoch: n.epoch(), alive, addr: n.info.addr, owner, instances };
        self.owners.insert(n.info.id, p);
    }

    /// Takes the instances removed out of their sets and puts those added in: O(log n) each;
    /// then the DNS list of each name touched is made again from the catalog's sets (O(1) per
    /// set: they are shared).
    fn apply(&mut self, changes: Changes) {
        let mut touched = std::collections::BTreeSet::new();
        for old in changes.removed {
            let name = &old.service.name;
            if let Some(set) = self.services.get_mut(name) {
                set.0.remove(&Ordered(old.clone()));
                if set.is_empty() {
                    self.services.remove(name);
                    let lc = name.to_ascii_lowercase();
                    if let Some(c) = self.cases.get_mut(&lc) {
                        c.remove(name);
                        if c.is_empty() {
                            self.cases.remove(&lc);
                        }
                    }
                }
            }
            touched.insert(name.to_ascii_lowercase());
        }
        for new in changes.added {
            let lc = new.service.name.to_ascii_lowercase();
            self.cases.entry(lc.clone()).or_default().insert(new.service.name.clone());
            self.services.entry(new.service.name.clone()).or_default().0.insert(Ordered(new));
            touched.insert(lc);
        }
        for lc in touched {
            let sets: Vec<InstanceSet> =
                self.cases.get(&lc).into_iter().flatten().filter_map(|name| self.services.get(name).cloned()).collect();
            if sets.is_empty() {
                self.dns.remove(&lc);
            } else {
                self.dns.insert(lc, Arc::new(DnsList(sets)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gossip_core::secure::SecureConfig;
    use gossip_core::secure::keys::{ClusterKey, Identity, Keyring};
    use gossip_core::{Config, Gossip};
    use std::time::{Duration, Instant};

    fn node(i: u8, seeds: Vec<SocketAddr>, now: Instant) -> Gossip {
        let addr = SocketAddr::from(([127, 0, 0, i], 7000));
        let secure = SecureConfig::new(
            Identity::from_secret([i; 32]),
            Keyring::new(ClusterKey::new([9; 32])),
            1_800_000_000_000_000_000,
            [i; 32],
        );
        let cfg = Config { seeds, rng_seed: u64::from(i), ..Config::default() };
        Gossip::new(cfg, secure, format!("n{i}"), addr, 1, now)
    }

    /// Delivers every datagram between the nodes and fires their timers, for `d` of virtual time.
    fn run(nodes: &mut [Gossip], now: &mut Instant, d: Duration) {
        let end = *now + d;
        while *now < end {
            for _ in 0..50 {
                let mut sent = Vec::new();
                for (k, g) in nodes.iter_mut().enumerate() {
                    while let Some(t) = g.poll_transmit() {
                        sent.push((k, t));
                    }
                }
                if sent.is_empty() {
                    break;
                }
                for (k, t) in sent {
                    let from = nodes[k].local().addr;
                    if let Some(g) = nodes.iter_mut().find(|g| g.local().addr == t.dst) {
                        g.handle_datagram(*now, from, &t.payload);
                    }
                }
            }
            *now += Duration::from_millis(20);
            for g in nodes.iter_mut() {
                if g.poll_timeout().is_some_and(|t| t <= *now) {
                    g.handle_timeout(*now);
                }
            }
        }
    }

    fn svc(id: usize, name: &str, port: u16) -> ServiceInstance {
        ServiceInstance {
            id: format!("i-{id}"),
            name: name.into(),
            port,
            weight_passing: 1,
            weight_warning: 1,
            ..Default::default()
        }
    }

    /// Lists by name, as text.
    type Lists = Vec<(String, Vec<String>)>;

    /// The catalog and snapshot as comparable plain data.
    fn plain(c: &Catalog, s: &dns_front::snapshot::Snapshot) -> (Lists, Lists) {
        let cat = c
            .services
            .iter()
            .map(|(k, l)| {
                (k.clone(), l.iter().map(|i| format!("{}/{}:{}", i.node.name, i.service.id, i.service.port)).collect())
            })
            .collect();
        let mut dns: Lists = s
            .services
            .iter()
            .map(|(k, l)| {
                let mut v: Vec<String> =
                    l.instances().map(|i| format!("{}/{}:{}/{:?}", i.node(), i.id(), i.port(), i.health())).collect();
                v.sort();
                (k.clone(), v)
            })
            .collect();
        dns.sort();
        (cat, dns)
    }

    /// Views kept up to date between rebuilds (registrations, replacements and deregistrations
    /// on a large local owner and a small remote one, a name in two cases, node metadata, a
    /// node leaving) always equal views built from nothing.
    #[test]
    fn incremental_views_equal_views_built_from_nothing() {
        let start = Instant::now();
        let mut now = start;
        let a = node(1, vec![], now);
        let b = node(2, vec![a.local().addr], now);
        let mut nodes = vec![a, b];
        run(&mut nodes, &mut now, Duration::from_secs(3));
        let mut views = Views::default();
        let mut index = 0;
        let mut check = |nodes: &[Gossip], now: Instant, what: &str| {
            index += 1;
            let (c, s) = views.build(&nodes[1], index, now);
            let (c0, s0) = Views::default().build(&nodes[1], index, now);
            assert_eq!(plain(&c, &s), plain(&c0, &s0), "{what}");
            assert_eq!(c.instances().count(), c0.instances().count(), "{what}");
            // DNS holds no instance of its own: every one it answers is the catalog's (#16
            // item 2: a twin per instance was 30% of a replica's bytes per entry).
            let held: std::collections::HashSet<*const ()> =
                c.instances().map(|i| i as *const CatalogInstance as *const ()).collect();
            let dns: Vec<*const ()> = s
                .services
                .values()
                .flat_map(|l| l.instances())
                .map(|i| i as *const dyn dns_front::snapshot::DnsInstance as *const ())
                .collect();
            assert_eq!(dns.len(), held.len(), "{what}");
            assert!(
                dns.iter().all(|p| held.contains(p)),
                "DNS answers from copies of the catalog's instances ({what})"
            );
        };
        check(&nodes, now, "joined");
        for round in 0..6 {
            // Node 0 grows past the size where its state keeps a log of changes.
            for i in 0..60 {
                let id = round * 60 + i;
                let name = if id % 7 == 0 { "Web" } else { ["web", "api", "db"][id % 3] };
                nodes[0].register(now, svc(id, name, 80)).unwrap();
            }
            // Node 1 (the viewer itself) owns a few.
            nodes[1].register(now, svc(1000 + round, "web", 81)).unwrap();
            run(&mut nodes, &mut now, Duration::from_secs(2));
            check(&nodes, now, &format!("round {round}: registered"));
            let held = nodes[1].node(&nodes[0].local().id).map_or(0, |n| n.services);
            let gone = (3..round.saturating_sub(1) * 60).step_by(13).count();
            assert_eq!(held, (round + 1) * 60 - gone, "round {round}: not replicated");
            // Replace some (another port, another name), deregister others.
            for i in (0..round * 60).step_by(11) {
                nodes[0].register(now, svc(i, "cache", 90)).unwrap();
            }
            for i in (3..round * 60).step_by(13) {
                let _ = nodes[0].deregister(now, &format!("i-{i}"));
            }
            run(&mut nodes, &mut now, Duration::from_secs(2));
            check(&nodes, now, &format!("round {round}: replaced and deregistered"));
        }
        let meta = BTreeMap::from([("rack".to_string(), "r1".to_string())]);
        nodes[0].set_node_meta(now, meta).unwrap();
        run(&mut nodes, &mut now, Duration::from_secs(2));
        check(&nodes, now, "node metadata");
        nodes[0].leave(now);
        run(&mut nodes, &mut now, Duration::from_secs(3));
        check(&nodes, now, "left");
    }
}
