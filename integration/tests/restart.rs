//! Restarts and leaves with real agents: a restarted agent (SIGTERM, as a service manager
//! restarts it, or SIGKILL and start) never leaves a peer's answers, not even partly; `gossipd
//! leave` leaves at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use integration::agent::{Agent, binary};
use integration::{dns, wait_for};

const WAIT: Duration = Duration::from_secs(20);
const INSTANCES: usize = 300;

/// Registers `INSTANCES` instances of `web` and one `api` on `b`, and waits until `a` answers
/// them all.
fn register_many(a: &Agent, b: &Agent) {
    for i in 0..INSTANCES {
        let body =
            format!(r#"{{"ID":"web-{i}","Name":"web","Port":{},"Meta":{{"pad":"{}"}}}}"#, 10_000 + i, "x".repeat(64));
        let (status, text) = b.put("/v1/agent/service/register", &body);
        assert_eq!(status, 200, "{text}");
    }
    let (status, text) = b.put("/v1/agent/service/register", r#"{"ID":"api-1","Name":"api","Port":9000}"#);
    assert_eq!(status, 200, "{text}");
    wait_for("every instance on alpha", WAIT, || (web_count(a) == INSTANCES).then_some(()));
}

fn web_count(a: &Agent) -> usize {
    a.get("/v1/catalog/service/web").ok().and_then(|v| v.as_array().map(Vec::len)).unwrap_or(0)
}

/// Polls `a` (HTTP catalog and DNS) until `stop`; returns the fewest `web` instances seen, the
/// number of polls, and how many DNS answers for `api` were not NOERROR with one record.
fn watch(a: &Agent, stop: &AtomicBool) -> (usize, usize, usize) {
    let (mut fewest, mut polls, mut dns_misses) = (usize::MAX, 0, 0);
    while !stop.load(Ordering::SeqCst) {
        fewest = fewest.min(web_count(a));
        match dns::udp(a.dns, "api.service.gossip.", RecordType::SRV) {
            Some(r) if r.rcode == ResponseCode::NoError && r.srv.len() == 1 => {}
            _ => dns_misses += 1,
        }
        polls += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    (fewest, polls, dns_misses)
}

fn restart_is_seamless(graceful: bool) {
    restart_is_seamless_with(graceful, false);
}

/// `owner_is_first`: the restarted agent is alpha, the seedless first node (its peers found it,
/// it found nobody: at restart it has only its peer snapshot to reach them).
fn restart_is_seamless_with(graceful: bool, owner_is_first: bool) {
    let root = tempfile::tempdir().unwrap();
    let (a0, b0, _c) = Agent::three(root.path());
    let (a, mut b) = if owner_is_first { (b0, a0) } else { (a0, b0) };
    register_many(&a, &b);
    let a = Arc::new(a);
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (a, stop) = (a.clone(), stop.clone());
        std::thread::spawn(move || watch(&a, &stop))
    };
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    if graceful {
        b.restart_gracefully();
    } else {
        b.restart();
    }
    let restarted = t.elapsed();
    // Until the new generation has reached alpha, and a little more.
    let owner = if owner_is_first { "alpha" } else { "bravo" };
    wait_for("the owner's new generation on the watcher", WAIT, || {
        a.get("/v1/agent/members")
            .ok()
            .and_then(|v| v.as_array()?.iter().find(|m| m["Name"] == owner && m["Status"] == 1).map(|_| ()))
    });
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    let (fewest, polls, dns_misses) = watcher.join().unwrap();
    println!(
        "restart ({}) took {:.2} s: alpha answered at least {fewest} of {INSTANCES} web instances over {polls} polls, \
         {dns_misses} DNS misses for api",
        if graceful { "SIGTERM" } else { "SIGKILL" },
        restarted.as_secs_f64()
    );
    assert_eq!(fewest, INSTANCES, "alpha's answer shrank during bravo's restart");
    assert_eq!(dns_misses, 0, "alpha's DNS lost api during bravo's restart");
    assert_eq!(web_count(&a), INSTANCES);
}

#[test]
fn a_restart_by_sigterm_never_leaves_a_peers_answers() {
    restart_is_seamless(true);
}

#[test]
fn a_restart_of_the_seedless_first_node_never_leaves_a_peers_answers() {
    // Without the peer snapshot its peers kept talking to the old process's sessions, which the
    // new one drops, and declared it failed before those sessions timed out.
    restart_is_seamless_with(true, true);
}

#[test]
fn a_restart_after_sigkill_never_shrinks_a_peers_answers() {
    restart_is_seamless(false);
}

#[test]
fn gossipd_leave_leaves_at_once_and_stops_the_agent() {
    let root = tempfile::tempdir().unwrap();
    let (a, mut b, c) = Agent::three(root.path());
    let (status, body) = b.put("/v1/agent/service/register", r#"{"Name":"cache","Port":6379}"#);
    assert_eq!(status, 200, "{body}");
    wait_for("cache on charlie", WAIT, || {
        dns::udp(c.dns, "cache.service.gossip.", RecordType::SRV).filter(|r| r.srv.len() == 1)
    });
    // Without the operator token the leave is refused.
    let out = std::process::Command::new(binary())
        .args(["leave", "--http", &b.http.to_string(), "--token", "not-a-token"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a leave with a bad token was accepted");
    let out = std::process::Command::new(binary())
        .args(["leave", "--http", &b.http.to_string(), "--data-dir"])
        .arg(&b.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "gossipd leave: {}", String::from_utf8_lossy(&out.stderr));
    let status = b.wait_exit();
    assert!(status.success(), "the agent should exit 0 after leaving, got {status}");
    for x in [&a, &c] {
        wait_for("cache to leave after bravo's leave", Duration::from_secs(3), || {
            dns::udp(x.dns, "cache.service.gossip.", RecordType::SRV).filter(|r| r.rcode == ResponseCode::NXDomain)
        });
        wait_for("bravo to be shown as left", Duration::from_secs(3), || {
            (x.alive_members() == vec!["alpha", "charlie"]).then_some(())
        });
    }
}
