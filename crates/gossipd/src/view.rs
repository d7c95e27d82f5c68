//! Read-only views of the gossip table, rebuilt when it changes and swapped in atomically:
//! the DNS snapshot and the catalog the HTTP API answers from. Readers never lock.

use std::collections::BTreeMap;
use std::net::IpAddr;

use gossip_core::{Gossip, Health, NodeId, NodeStatus, services_of};

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

/// One service instance with its node.
#[derive(Debug, Clone)]
pub struct CatalogInstance {
    /// Owning node's name.
    pub node: String,
    /// Owning node's id.
    pub node_id: NodeId,
    /// Owning node's address (its gossip IP).
    pub node_addr: IpAddr,
    /// Owning node's metadata.
    pub node_meta: std::sync::Arc<BTreeMap<String, String>>,
    /// The instance as registered.
    pub service: gossip_core::ServiceInstance,
}

/// The catalog at one index.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Raised at each rebuild (Consul's `X-Consul-Index`).
    pub index: u64,
    /// Every known node by name.
    pub members: Vec<Member>,
    /// Instances of live nodes, by service name (exact case as registered), sorted by node then id.
    pub services: BTreeMap<String, Vec<CatalogInstance>>,
    /// True while self-preservation holds deaths back.
    pub self_preservation: bool,
}

/// Builds the API catalog and the DNS snapshot from the table.
pub fn build(g: &Gossip, index: u64, now: std::time::Instant) -> (Catalog, dns_front::snapshot::Snapshot) {
    let bans = g.bans(now);
    let mut members = Vec::new();
    let mut services: BTreeMap<String, Vec<CatalogInstance>> = BTreeMap::new();
    let mut dns_instances = Vec::new();
    let mut dns_nodes = Vec::new();
    for n in g.nodes() {
        let status = n.status();
        let liveness = g.liveness(&n.info.id);
        let meta = std::sync::Arc::new(n.node_meta().cloned().unwrap_or_default());
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
        // Suspects are still served (they may only be slow); dead, excluded and left nodes are not.
        let alive = status == NodeStatus::Alive && liveness.serves();
        dns_nodes.push(dns_front::snapshot::Node {
            name: n.info.name.clone(),
            address: n.info.addr.ip(),
            alive,
            meta: meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        });
        if !alive {
            continue;
        }
        for s in services_of(n) {
            let address = s.address.unwrap_or(n.info.addr.ip());
            dns_instances.push(dns_front::snapshot::Instance {
                service: s.name.clone(),
                id: s.id.clone(),
                node: n.info.name.clone(),
                address,
                port: s.port,
                tags: s.tags.clone(),
                weight: match s.health {
                    Health::Warning => s.weight_warning,
                    _ => s.weight_passing,
                },
                health: match s.health {
                    Health::Passing => dns_front::snapshot::Health::Passing,
                    Health::Warning => dns_front::snapshot::Health::Warning,
                    Health::Critical => dns_front::snapshot::Health::Critical,
                },
            });
            services.entry(s.name.clone()).or_default().push(CatalogInstance {
                node: n.info.name.clone(),
                node_id: n.info.id,
                node_addr: n.info.addr.ip(),
                node_meta: meta.clone(),
                service: s.clone(),
            });
        }
    }
    members.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    for list in services.values_mut() {
        list.sort_by(|a, b| a.node.cmp(&b.node).then(a.service.id.cmp(&b.service.id)));
    }
    let snapshot = dns_front::snapshot::Snapshot::build(index, dns_instances, dns_nodes);
    (Catalog { index, members, services, self_preservation: g.self_preservation() }, snapshot)
}
