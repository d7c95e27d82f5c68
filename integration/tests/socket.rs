//! The gossip socket's receive buffer: a real agent asks for 4 MiB (the kernel's default, about
//! 90 full datagrams, overflowed in a start-up storm), and the kernel's own report of the socket
//! (`ss -m`) shows it got it. Needs `ss` (iproute2, installed by .ci/run) and, beyond
//! `net.core.rmem_max`, CAP_NET_ADMIN (CI runs as root); otherwise the agent logs the sysctl fix,
//! which the test checks instead.

use std::process::Command;

use integration::agent::{Agent, Options};

#[test]
fn the_gossip_socket_gets_a_large_receive_buffer_or_says_how_to_allow_it() {
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let out = Command::new("ss")
        .args(["-uamnH", "sport", "=", &format!(":{}", a.gossip.port())])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    // skmem:(r0,rb8388608,...): rb is the receive buffer, doubled by the kernel.
    let rb: u64 = text
        .split("rb")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no receive buffer in `ss -m` for the gossip port:\n{text}"));
    if rb >= 4 << 20 {
        return;
    }
    let log = a.log();
    assert!(
        log.contains("receive buffer is small") && log.contains("net.core.rmem_max"),
        "receive buffer {rb} B, and no warning saying how to raise it:\n{log}"
    );
}
