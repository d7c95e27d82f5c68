//! The immutable view of the catalog that DNS answers are computed from.
//!
//! The agent builds a new [`Snapshot`] whenever its gossip table changes and swaps it in
//! atomically; queries never take a lock. Everything here is plain data: the resolver does
//! not know where it came from.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Health of a service instance as the DNS front sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// Every check passes: always answered.
    Passing,
    /// At least one check warns: answered only when [`ResolverConfig::only_passing`] is false.
    Warning,
    /// At least one check is critical, or the owning node is dead or has left: never answered.
    Critical,
}

/// One service instance, as registered on its owner's agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Service name (`web`). Matched case-insensitively. Shared: the agent holds one copy per
    /// name, not one per instance.
    pub service: Arc<str>,
    /// Instance id, unique on its node (`web-1`).
    pub id: Arc<str>,
    /// Name of the node that owns the instance; the SRV target is `NODE.node.<domain>`. Shared
    /// by the node's instances.
    pub node: Arc<str>,
    /// Address clients should connect to.
    pub address: IpAddr,
    /// Port clients should connect to.
    pub port: u16,
    /// Tags; matched case-insensitively by `TAG.NAME.service.<domain>` and `_NAME._TAG...`.
    pub tags: Arc<[Arc<str>]>,
    /// SRV weight (Consul `Weights.Passing`), 0..=65535.
    pub weight: u16,
    /// Current health.
    pub health: Health,
}

/// What the resolver reads of one service instance. [`Instance`] is the plain one; an agent
/// can answer from its own catalog's instances instead, so that DNS holds no copy of them.
pub trait DnsInstance: Send + Sync {
    /// Address clients should connect to.
    fn address(&self) -> IpAddr;
    /// Port clients should connect to.
    fn port(&self) -> u16;
    /// SRV weight, 0..=65535.
    fn weight(&self) -> u16;
    /// Current health.
    fn health(&self) -> Health;
    /// Name of the node that owns the instance.
    fn node(&self) -> &str;
    /// Instance id, unique on its node.
    fn id(&self) -> &str;
    /// True if one of its tags equals `tag`, ignoring ASCII case.
    fn has_tag(&self, tag: &str) -> bool;
}

impl DnsInstance for Instance {
    fn address(&self) -> IpAddr {
        self.address
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn weight(&self) -> u16 {
        self.weight
    }
    fn health(&self) -> Health {
        self.health
    }
    fn node(&self) -> &str {
        &self.node
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t.eq_ignore_ascii_case(tag))
    }
}

/// The instances of one (lower-cased) service name, as the resolver reads them.
pub trait InstanceList: Send + Sync + std::fmt::Debug {
    /// Every instance, in a stable order.
    fn instances(&self) -> Box<dyn Iterator<Item = &dyn DnsInstance> + '_>;
}

/// The plain [`InstanceList`]: the instances of one name, in the order given to
/// [`Snapshot::build`]. (The agent lists its catalog's own sets instead.)
#[derive(Debug, Clone, Default)]
struct Instances(Vec<Instance>);

impl InstanceList for Instances {
    fn instances(&self) -> Box<dyn Iterator<Item = &dyn DnsInstance> + '_> {
        Box::new(self.0.iter().map(|i| i as &dyn DnsInstance))
    }
}

/// One agent node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Node name, matched case-insensitively by `NODE.node.<domain>`.
    pub name: String,
    /// The node's address (answered for `NODE.node.<domain>` A/AAAA queries).
    pub address: IpAddr,
    /// False once the node is dead or has left: it is then not answered.
    pub alive: bool,
    /// Node metadata, `key=value` (answered as TXT), in key order.
    pub meta: Vec<(String, String)>,
}

/// An immutable catalog snapshot.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Instances grouped by lower-cased service name (persistent: shared between snapshots
    /// where unchanged).
    pub services: imbl::HashMap<String, Arc<dyn InstanceList>>,
    /// Nodes by lower-cased node name.
    pub nodes: HashMap<String, Node>,
    /// Monotonic index of this snapshot (raised at each rebuild); used as the SOA serial.
    pub index: u64,
}

impl Snapshot {
    /// Builds a snapshot from flat lists, grouping and lower-casing names.
    pub fn build(index: u64, instances: Vec<Instance>, nodes: Vec<Node>) -> Self {
        let mut lists: HashMap<String, Instances> = HashMap::new();
        for inst in instances {
            lists.entry(inst.service.to_ascii_lowercase()).or_default().0.push(inst);
        }
        let services = lists.into_iter().map(|(k, v)| (k, Arc::new(v) as Arc<dyn InstanceList>)).collect();
        Self::from_parts(index, services, nodes)
    }

    /// A snapshot from lists already grouped by lower-cased service name.
    pub fn from_parts(index: u64, services: imbl::HashMap<String, Arc<dyn InstanceList>>, nodes: Vec<Node>) -> Self {
        let nodes = nodes.into_iter().map(|n| (n.name.to_ascii_lowercase(), n)).collect();
        Snapshot { services, nodes, index }
    }
}

/// Resolver options.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// The domain served, lower-case, without trailing dot (default `gossip`).
    pub domain: String,
    /// Answer only passing instances (default true); false admits warning ones too.
    pub only_passing: bool,
    /// TTL of positive answers, seconds (default 0, as Consul: answers are always fresh).
    pub ttl: u32,
    /// SOA minimum / negative-caching TTL, seconds (default 0: a recovered service is
    /// never hidden by a cached NXDOMAIN).
    pub negative_ttl: u32,
    /// The datacenter label accepted between `service`/`node` and the domain
    /// (`web.service.DC.D`), lower-case (default `gossip`, the name the HTTP API reports);
    /// empty accepts none.
    pub datacenter: String,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            domain: "gossip".into(),
            only_passing: true,
            ttl: 0,
            negative_ttl: 0,
            datacenter: "gossip".into(),
        }
    }
}
