//! Churn with real agents (issue #13): agents are replaced one after another, by SIGKILL,
//! SIGTERM (which stops an agent without leaving) and `gossipd leave`, each by a fresh agent
//! (new name, new data directory) joining through a random live one. Once the churn stops,
//! every live agent must agree with the truth within a generous bound: its alive members are
//! exactly the running agents, and the instances it answers (HTTP catalog and DNS) exactly
//! theirs. `scripts/bench-churn.py` measures the same at 20 agents and 60 replacements.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use integration::agent::{Agent, Options, binary};
use integration::{dns, wait_for};

const AGENTS: usize = 8;
const REPLACEMENTS: usize = 6;
/// Time between replacements (6 in about 20 s).
const EVERY: Duration = Duration::from_millis(3300);
/// How long after the last replacement every agent must agree.
const AGREEMENT: Duration = Duration::from_secs(20);

/// xorshift64*: victims and seeds are chosen at random, reproducibly (`CHURN_SEED` overrides).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

fn name(a: &Agent) -> String {
    a.opts.name.clone()
}

/// The port of agent number `n`'s instance: each agent's instance is told apart by it in DNS.
fn port(n: usize) -> u16 {
    10_000 + n as u16
}

fn register(a: &Agent, n: usize) {
    let body = format!(
        r#"{{"ID":"web-{}","Name":"web","Port":{},"Meta":{{"owner":"{}","pad":"churn-test-metadata"}}}}"#,
        name(a),
        port(n),
        name(a)
    );
    let (status, text) = a.put("/v1/agent/service/register", &body);
    assert_eq!(status, 200, "{text}");
}

/// What the cluster should look like: the running agents' names, their instances (node, id),
/// and their instances' ports.
#[derive(Debug, PartialEq)]
struct View {
    alive: BTreeSet<String>,
    instances: BTreeSet<(String, String)>,
    dns_ports: BTreeSet<u16>,
}

fn truth(live: &[(usize, Agent)]) -> View {
    View {
        alive: live.iter().map(|(_, a)| name(a)).collect(),
        instances: live.iter().map(|(_, a)| (name(a), format!("web-{}", name(a)))).collect(),
        dns_ports: live.iter().map(|(n, _)| port(*n)).collect(),
    }
}

fn view(a: &Agent) -> Option<View> {
    let alive = a.alive_members().into_iter().collect();
    let catalog = a.get("/v1/catalog/service/web").ok()?;
    let instances = catalog
        .as_array()?
        .iter()
        .map(|i| Some((i["Node"].as_str()?.to_string(), i["ServiceID"].as_str()?.to_string())))
        .collect::<Option<_>>()?;
    let reply = dns::tcp(a.dns, "web.service.gossip.", RecordType::SRV)?;
    let dns_ports = if reply.rcode == ResponseCode::NoError {
        reply.srv.iter().map(|(p, _)| *p).collect()
    } else {
        BTreeSet::new()
    };
    Some(View { alive, instances, dns_ports })
}

/// Polls every live agent until each one's view is `want`, or panics after `timeout` naming
/// each agent that still disagreed and how.
fn wait_agreement(what: &str, live: &[(usize, Agent)], timeout: Duration) {
    let want = truth(live);
    let mut last = String::new();
    let agreed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(what, timeout, || {
            last.clear();
            for (_, a) in live {
                match view(a) {
                    Some(v) if v == want => {}
                    Some(v) => last.push_str(&format!(
                        "\n  {}: alive {:?}, instances of {:?}, DNS ports {:?}",
                        name(a),
                        v.alive,
                        v.instances.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                        v.dns_ports
                    )),
                    None => last.push_str(&format!("\n  {}: no answer", name(a))),
                }
            }
            last.is_empty().then_some(())
        })
    }));
    if agreed.is_err() {
        panic!("{what}: after {timeout:?}, the truth is {want:?}; disagreeing:{last}");
    }
}

#[test]
fn every_agent_agrees_on_members_and_instances_after_churn_stops() {
    let root = tempfile::tempdir().unwrap();
    let seed = std::env::var("CHURN_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x13_c4_55);
    let mut rng = Rng(seed);
    eprintln!("CHURN_SEED={seed}");

    let first = Agent::start(root.path(), Options { name: "n0".into(), ..Default::default() });
    let mut live = vec![(0, first)];
    for n in 1..AGENTS {
        let seeds = vec![live[0].1.gossip];
        live.push((n, Agent::start(root.path(), Options { name: format!("n{n}"), seeds, ..Default::default() })));
    }
    for (n, a) in &live {
        register(a, *n);
    }
    wait_agreement("the first agents to agree", &live, Duration::from_secs(30));

    let start = Instant::now();
    for k in 0..REPLACEMENTS {
        // The newcomer's number: names are never reused.
        let next = AGENTS + k;
        if let Some(wait) = (EVERY * k as u32).checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        // Never the first agent: the others' seed.
        let (_, mut victim) = live.remove(1 + rng.below(live.len() - 1));
        // SIGKILL, SIGTERM, leave in turn, ending with a SIGKILL: its detection is part of the
        // agreement checked below.
        let how = (k + 3 - (REPLACEMENTS - 1) % 3) % 3;
        match how {
            0 => victim.kill(),
            1 => {
                let status = victim.terminate();
                assert!(status.success(), "SIGTERM should exit 0, got {status}");
            }
            _ => {
                let out = std::process::Command::new(binary())
                    .args(["leave", "--http", &victim.http.to_string(), "--data-dir"])
                    .arg(&victim.data_dir)
                    .output()
                    .expect("run gossipd leave");
                assert!(out.status.success(), "gossipd leave: {}", String::from_utf8_lossy(&out.stderr));
                let status = victim.wait_exit();
                assert!(status.success(), "the agent should exit 0 after leaving, got {status}");
            }
        }
        eprintln!("{:5.1} s: {} {}", start.elapsed().as_secs_f64(), ["killed", "stopped", "left:"][how], name(&victim));
        let via = live[rng.below(live.len())].1.gossip;
        let a = Agent::start(root.path(), Options { name: format!("n{next}"), seeds: vec![via], ..Default::default() });
        register(&a, next);
        live.push((next, a));
    }
    let stopped = Instant::now();
    wait_agreement("every agent to agree after the churn", &live, AGREEMENT);
    eprintln!(
        "{REPLACEMENTS} replacements in {:.1} s; every agent agreed {:.2} s after the last",
        (stopped - start).as_secs_f64(),
        stopped.elapsed().as_secs_f64()
    );
}
