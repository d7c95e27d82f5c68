//! Failure detection on a real lossy network: five real agents inside a network namespace of
//! this test's own, whose loopback drops 10% of UDP datagrams (iptables `statistic` rule in
//! INPUT; a loopback datagram crosses INPUT once, so 10% per datagram, 19% per round trip).
//! No agent may ever declare a healthy agent dead; one killed with SIGKILL must be declared
//! dead by all the others.
//!
//! Needs root, `ip` (iproute2) and `iptables`. Under `CI=true` a missing one fails the test
//! (`.ci/run` installs them); elsewhere the test says it skipped.

use std::process::Command;
use std::time::{Duration, Instant};

use integration::agent::{Agent, Options};
use integration::{peers, wait_for};

const AGENTS: usize = 5;
const SOAK: Duration = Duration::from_secs(60);
const LOSS_RULE: [&str; 13] =
    ["INPUT", "-i", "lo", "-p", "udp", "-m", "statistic", "--mode", "random", "--probability", "0.1", "-j", "DROP"];

fn skip_or_fail(why: &str) -> Option<Netns> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}: required under CI=true (.ci/run runs as root and installs iproute2 and iptables)");
    }
    eprintln!("SKIPPED: {why}");
    None
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// A network namespace of this test's own, deleted on drop (panics included). Agents started
/// in it must be dropped first (declare them after the guard).
struct Netns {
    name: String,
    ip: std::path::PathBuf,
    iptables: std::path::PathBuf,
}

impl Netns {
    /// Creates the namespace, brings its loopback up and installs the loss rule.
    fn with_udp_loss() -> Option<Netns> {
        let ip = peers::find("ip");
        let iptables = peers::find("iptables");
        let (Some(ip), Some(iptables)) = (ip, iptables) else {
            return skip_or_fail("`ip` (iproute2) or `iptables` is not installed");
        };
        if !is_root() {
            return skip_or_fail("network namespaces and iptables need root");
        }
        let name = format!("gossipd-it-loss-{}", std::process::id());
        let ok = Command::new(&ip).args(["netns", "add", &name]).status().is_ok_and(|s| s.success());
        if !ok {
            return skip_or_fail(&format!("`ip netns add {name}` failed (no CAP_SYS_ADMIN?)"));
        }
        let ns = Netns { name, ip, iptables };
        assert!(ns.run(&["ip", "link", "set", "lo", "up"]).status.success(), "lo up");
        let rule = ns.run_iptables(&[&["-A"], &LOSS_RULE[..]].concat());
        if !rule.status.success() {
            let err = String::from_utf8_lossy(&rule.stderr).into_owned();
            drop(ns);
            return skip_or_fail(&format!("iptables cannot add the statistic rule: {err}"));
        }
        Some(ns)
    }

    /// The command prefix that runs a program inside the namespace.
    fn wrapper(&self) -> Vec<String> {
        vec![self.ip.display().to_string(), "netns".into(), "exec".into(), self.name.clone()]
    }

    fn run(&self, cmd: &[&str]) -> std::process::Output {
        Command::new(&self.ip).args(["netns", "exec", &self.name]).args(cmd).output().expect("ip netns exec")
    }

    fn run_iptables(&self, args: &[&str]) -> std::process::Output {
        let ipt = self.iptables.display().to_string();
        self.run(&[&[ipt.as_str(), "-w"], args].concat())
    }

    /// Datagrams the loss rule has dropped so far.
    fn dropped(&self) -> u64 {
        let out = self.run_iptables(&["-L", "INPUT", "-v", "-x", "-n"]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find(|l| l.contains("DROP") && l.contains("statistic"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace takes its loopback and its iptables rules with it.
        let _ = Command::new(&self.ip).args(["netns", "del", &self.name]).status();
    }
}

/// `agent`'s view of member `name`: its status code (1 alive, 3 left, 4 failed), if listed.
fn status_of(agent: &Agent, name: &str) -> Option<u64> {
    let members = agent.get("/v1/agent/members").ok()?;
    members.as_array()?.iter().find(|m| m["Name"] == name).and_then(|m| m["Status"].as_u64())
}

/// Names of members agent `a` lists as failed.
fn failed_members(a: &Agent) -> Vec<String> {
    let members = a.get("/v1/agent/members").unwrap_or_default();
    members
        .as_array()
        .map(|ms| {
            ms.iter().filter(|m| m["Status"] == 4).filter_map(|m| m["Name"].as_str().map(str::to_owned)).collect()
        })
        .unwrap_or_default()
}

#[test]
fn ten_percent_udp_loss_kills_no_healthy_agent_and_a_killed_one_is_declared_dead_by_all() {
    let Some(ns) = Netns::with_udp_loss() else { return };
    let root = tempfile::tempdir().unwrap();
    let mut agents: Vec<Agent> = Vec::new();
    for i in 0..AGENTS {
        let seeds = agents.first().map(|a| vec![a.gossip]).unwrap_or_default();
        let opts = Options { name: format!("n{i}"), seeds, wrapper: ns.wrapper(), ..Default::default() };
        agents.push(Agent::start(root.path(), opts));
    }
    let names: Vec<String> = (0..AGENTS).map(|i| format!("n{i}")).collect();
    wait_for("every agent to see all five alive, at 10% loss", Duration::from_secs(90), || {
        agents.iter().all(|a| a.alive_members() == names).then_some(())
    });

    // The soak: every agent's view once a second, and the agents' own death counters after.
    let start = Instant::now();
    let mut polls = 0;
    while start.elapsed() < SOAK {
        for (i, a) in agents.iter().enumerate() {
            let failed = failed_members(a);
            assert!(
                failed.is_empty(),
                "n{i} declared {failed:?} dead at 10% loss ({:?} into the soak)",
                start.elapsed()
            );
            polls += 1;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let dropped = ns.dropped();
    assert!(dropped > 0, "the loss rule dropped nothing: the test did not test loss");
    let mut raised = 0;
    for (i, a) in agents.iter().enumerate() {
        assert_eq!(a.metric("Gossip", "Deaths"), 0, "n{i} counted a death at 10% loss:\n{}", a.log());
        assert!(!a.log().contains("member failed"), "n{i} logged a death at 10% loss:\n{}", a.log());
        raised += a.metric("Gossip", "SuspicionsRaised");
    }
    println!(
        "{AGENTS} agents, {:?} at 10% UDP loss ({dropped} datagrams dropped): {raised} suspicions raised, \
         0 deaths ({polls} member-list polls)",
        start.elapsed()
    );

    // A real death, still at 10% loss: every survivor declares it.
    agents[AGENTS - 1].kill();
    let victim = &names[AGENTS - 1];
    wait_for("every survivor to declare the killed agent failed", Duration::from_secs(60), || {
        agents[..AGENTS - 1].iter().all(|a| status_of(a, victim) == Some(4)).then_some(())
    });
    for (i, a) in agents[..AGENTS - 1].iter().enumerate() {
        assert_eq!(a.metric("Gossip", "Deaths"), 1, "n{i} should count exactly the one death");
        let mut alive = a.alive_members();
        alive.sort();
        assert_eq!(alive, names[..AGENTS - 1], "n{i}");
    }
    drop(agents);
    drop(ns);
}
