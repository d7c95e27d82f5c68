//! Failure detection and self-preservation in virtual time: a killed node is removed everywhere,
//! 10% loss produces no false death, a node that comes back is alive again, and a mass
//! disappearance engages self-preservation instead of evicting the cluster.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use gossip_core::secure::SecureConfig;
use gossip_core::secure::keys::{ClusterKey, Identity, Keyring};
use gossip_core::{Config, Event, Gossip, Liveness, rng::Rng};

const WALL: u64 = 1_790_000_000_000_000_000;

type InFlight = Reverse<(Instant, u64, usize, SocketAddr, Vec<u8>)>;

struct Net {
    now: Instant,
    nodes: Vec<Gossip>,
    by_addr: BTreeMap<SocketAddr, usize>,
    inflight: BinaryHeap<InFlight>,
    seq: u64,
    loss: f64,
    rng: Rng,
    down: Vec<bool>,
    failed_events: Vec<(usize, gossip_core::NodeId, Instant)>,
    preservation: Vec<(usize, bool)>,
    duplicates: Vec<(usize, String, gossip_core::NodeId, gossip_core::NodeId)>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(127, 2, (i / 250) as u8, (i % 250 + 1) as u8), 7946))
}

impl Net {
    fn new(n: usize, seed: u64, loss: f64) -> Net {
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        let mut rng = Rng::from_seed(seed);
        let mut nodes: Vec<Gossip> = Vec::new();
        let mut by_addr = BTreeMap::new();
        for i in 0..n {
            let cfg = Config { seeds: vec![addr(0)], rng_seed: rng.fork(), ..Config::default() };
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(seed * 10_000 + i as u64).to_be_bytes());
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&rng.fork().to_be_bytes());
            let sec = SecureConfig::new(Identity::from_secret(id), Keyring::new(ClusterKey::new([1; 32])), WALL, s);
            nodes.push(Gossip::new(cfg, sec, format!("n{i}"), addr(i), 1, start));
            by_addr.insert(addr(i), i);
        }
        // Start converged: every node learns every other's signed state.
        let (first, rest) = nodes.split_at_mut(1);
        for g in rest.iter() {
            first[0].learn_owner_from(g);
        }
        for g in rest.iter_mut() {
            g.warm_start_from(&first[0]);
        }
        Net {
            now: start,
            nodes,
            by_addr,
            inflight: BinaryHeap::new(),
            seq: 0,
            loss,
            rng,
            down: vec![false; n],
            failed_events: vec![],
            preservation: vec![],
            duplicates: vec![],
        }
    }

    fn flush(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].poll_transmit() {
            if self.rng.unit() < self.loss {
                continue;
            }
            if let Some(&dst) = self.by_addr.get(&t.dst) {
                self.seq += 1;
                self.inflight.push(Reverse((self.now + Duration::from_millis(1), self.seq, dst, addr(i), t.payload)));
            }
        }
        while let Some(e) = self.nodes[i].poll_event() {
            match e {
                Event::MemberFailed(id) => self.failed_events.push((i, id, self.now)),
                Event::SelfPreservation { engaged, .. } => self.preservation.push((i, engaged)),
                Event::DuplicateName { name, holder, newcomer } => self.duplicates.push((i, name, holder, newcomer)),
                _ => {}
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let deadline = self.now + d;
        loop {
            let next_timer = (0..self.nodes.len())
                .filter(|&i| !self.down[i])
                .filter_map(|i| self.nodes[i].poll_timeout().map(|t| (t, i)))
                .min();
            let next_packet = self.inflight.peek().map(|Reverse((t, ..))| *t);
            let t = match (next_timer, next_packet) {
                (Some((a, _)), Some(b)) => a.min(b),
                (Some((a, _)), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            if t > deadline {
                break;
            }
            self.now = self.now.max(t);
            if next_packet == Some(t) {
                let Reverse((_, _, dst, from, bytes)) = self.inflight.pop().unwrap();
                if !self.down[dst] {
                    self.nodes[dst].handle_datagram(self.now, from, &bytes);
                    self.flush(dst);
                }
            } else if let Some((_, i)) = next_timer {
                self.nodes[i].handle_timeout(self.now);
                self.flush(i);
            }
        }
        self.now = deadline;
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| !self.down[i])
    }
}

#[test]
fn a_killed_node_is_declared_dead_by_every_other_node() {
    let mut net = Net::new(30, 1, 0.0);
    net.run_for(Duration::from_secs(10));
    let victim = 7;
    let victim_id = net.nodes[victim].local().id;
    net.down[victim] = true;
    let killed_at = net.now;
    net.run_for(Duration::from_secs(30));
    let mut times = Vec::new();
    for i in net.live() {
        assert_eq!(net.nodes[i].liveness(&victim_id), Liveness::Dead, "node {i} still counts the victim");
        let t = net.failed_events.iter().find(|(n, id, _)| *n == i && *id == victim_id).unwrap().2;
        times.push((t - killed_at).as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!("removal after kill (N=30): median {:.2} s, all {:.2} s", times[times.len() / 2], times[times.len() - 1]);
    assert!(*times.last().unwrap() < 15.0);
}

#[test]
fn ten_percent_loss_causes_no_false_death() {
    let mut net = Net::new(30, 2, 0.10);
    net.run_for(Duration::from_secs(300));
    assert!(net.failed_events.is_empty(), "false deaths: {:?}", net.failed_events.len());
    for i in 0..30 {
        assert_eq!(net.nodes[i].live_peers(), 29, "node {i}");
    }
}

#[test]
fn a_node_that_comes_back_is_alive_again_everywhere() {
    let mut net = Net::new(12, 3, 0.0);
    net.run_for(Duration::from_secs(5));
    let id = net.nodes[4].local().id;
    net.down[4] = true;
    net.run_for(Duration::from_secs(20));
    assert!(net.live().all(|i| net.nodes[i].liveness(&id) == Liveness::Dead));
    net.down[4] = false;
    net.run_for(Duration::from_secs(60));
    for i in 0..12 {
        if i != 4 {
            assert_eq!(net.nodes[i].liveness(&id), Liveness::Alive, "node {i} still thinks 4 is dead");
            assert_eq!(net.nodes[i].live_peers(), 11);
        }
    }
}

#[test]
fn self_preservation_engages_when_most_peers_vanish_and_releases_when_they_return() {
    let mut net = Net::new(10, 4, 0.0);
    net.run_for(Duration::from_secs(5));
    // 6 of 10 vanish at once (the survivors' own network looks broken).
    for i in 4..10 {
        net.down[i] = true;
    }
    net.run_for(Duration::from_secs(30));
    for i in 0..4 {
        assert!(net.nodes[i].self_preservation(), "node {i} should have engaged self-preservation");
        let dead = (4..10).filter(|&j| net.nodes[i].liveness(&net.nodes[j].local().id) == Liveness::Dead).count();
        assert!(dead < 6, "node {i} evicted all {dead} vanished peers");
    }
    for i in 4..10 {
        net.down[i] = false;
    }
    net.run_for(Duration::from_secs(60));
    for i in 0..10 {
        assert!(!net.nodes[i].self_preservation(), "node {i} should have released self-preservation");
        assert_eq!(net.nodes[i].live_peers(), 9, "node {i}");
    }
    assert!(net.preservation.iter().any(|(_, e)| *e) && net.preservation.iter().any(|(_, e)| !*e));
}

fn with_grace(n: usize, seed: u64, grace: Duration) -> Net {
    let mut net = Net::new(n, seed, 0.0);
    // Rebuild with a short GC grace (the default is a day).
    let mut rng = Rng::from_seed(seed + 1000);
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let mut nodes: Vec<Gossip> = Vec::new();
    for i in 0..n {
        let cfg = Config { seeds: vec![addr(0)], rng_seed: rng.fork(), gc_grace: grace, ..Config::default() };
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&(seed * 10_000 + i as u64).to_be_bytes());
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&rng.fork().to_be_bytes());
        let sec = SecureConfig::new(Identity::from_secret(id), Keyring::new(ClusterKey::new([1; 32])), WALL, s);
        nodes.push(Gossip::new(cfg, sec, format!("n{i}"), addr(i), 1, start));
    }
    let (first, rest) = nodes.split_at_mut(1);
    for g in rest.iter() {
        first[0].learn_owner_from(g);
    }
    for g in rest.iter_mut() {
        g.warm_start_from(&first[0]);
    }
    net.nodes = nodes;
    net.now = start;
    net
}

fn knows(net: &Net, i: usize, service: &str) -> bool {
    net.nodes[i].nodes().any(|n| gossip_core::services_of(n).any(|s| s.name == service))
}

fn svc(name: &str) -> gossip_core::ServiceInstance {
    gossip_core::ServiceInstance { id: name.into(), name: name.into(), port: 1, ..Default::default() }
}

#[test]
fn a_left_node_is_collected_everywhere_and_never_resurrected() {
    let mut net = with_grace(10, 5, Duration::from_secs(20));
    net.run_for(Duration::from_secs(5));
    let gone = net.nodes[3].local().id;
    let now = net.now;
    net.nodes[3].leave(now);
    net.flush(3);
    net.down[3] = true;
    net.run_for(Duration::from_secs(30));
    for i in net.live().collect::<Vec<_>>() {
        assert!(net.nodes[i].node(&gone).is_none(), "node {i} still holds the left node after the grace");
    }
    net.run_for(Duration::from_secs(60));
    for i in net.live().collect::<Vec<_>>() {
        assert!(net.nodes[i].node(&gone).is_none(), "node {i} resurrected the collected node");
    }
}

#[test]
fn a_deleted_entry_never_comes_back_after_gc_even_to_a_node_that_missed_it() {
    let mut net = with_grace(8, 6, Duration::from_secs(30));
    net.run_for(Duration::from_secs(5));
    let now = net.now;
    net.nodes[2].register(now, svc("doomed")).unwrap();
    net.nodes[2].register(now, svc("kept")).unwrap();
    net.flush(2);
    net.run_for(Duration::from_secs(5));
    assert!((0..8).all(|i| knows(&net, i, "doomed")));
    // Node 5 is cut off for longer than the grace period and misses the deletion.
    net.down[5] = true;
    let now = net.now;
    assert!(net.nodes[2].deregister(now, "doomed").unwrap());
    net.flush(2);
    let generation = net.nodes[2].local().generation;
    net.run_for(Duration::from_secs(60));
    assert!(net.nodes[2].local().generation > generation, "the owner re-incarnated to collect its tombstone");
    let owner = net.nodes[2].node(&net.nodes[2].local().id).unwrap();
    assert!(!owner.entries.values().any(|e| matches!(e.value, gossip_core::message::Value::Tombstone)));
    // Node 5 returns holding the deleted entry: a full resync, not a resurrection.
    assert!(knows(&net, 5, "doomed"));
    net.down[5] = false;
    net.run_for(Duration::from_secs(60));
    for i in 0..8 {
        assert!(!knows(&net, i, "doomed"), "node {i} holds the deleted entry");
        assert!(knows(&net, i, "kept"), "node {i} lost a live entry");
        assert_eq!(net.nodes[i].live_peers(), 7, "node {i}");
    }
}

#[test]
fn a_duplicate_name_with_another_identity_is_refused_and_reported() {
    let mut net = Net::new(6, 7, 0.0);
    net.run_for(Duration::from_secs(3));
    let holder = net.nodes[2].local().id;
    // An impostor (another identity) starts with node 2's name and joins through node 0.
    let now = net.now;
    let cfg = Config { seeds: vec![addr(0)], rng_seed: 5, ..Config::default() };
    let sec =
        SecureConfig::new(Identity::from_secret([200; 32]), Keyring::new(ClusterKey::new([1; 32])), WALL, [9; 32]);
    net.nodes.push(Gossip::new(cfg, sec, "n2".into(), addr(6), 1, now));
    net.by_addr.insert(addr(6), 6);
    net.down.push(false);
    net.run_for(Duration::from_secs(10));
    let impostor = net.nodes[6].local().id;
    for i in 0..6 {
        assert!(net.nodes[i].node(&impostor).is_none(), "node {i} applied the impostor");
    }
    // The seed refused it and said so; the impostor learned that its name is taken.
    assert!(net.duplicates.iter().any(|(i, name, h, n)| *i == 0 && name == "n2" && *h == holder && *n == impostor));
    assert!(net.duplicates.iter().any(|(i, name, _, _)| *i == 6 && name == "n2"));
    // Once the holder has left, the name is free again.
    let now = net.now;
    net.nodes[2].leave(now);
    net.flush(2);
    net.down[2] = true;
    net.run_for(Duration::from_secs(10));
    assert!(net.nodes[0].node(&impostor).is_some(), "the name is free once its holder left");
}
