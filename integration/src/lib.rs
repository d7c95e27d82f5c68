//! Harness for the end-to-end tests: starts real `gossipd` processes on loopback with
//! ephemeral ports, talks to their HTTP API with a real HTTP client and to their DNS servers
//! with real DNS messages over UDP and TCP, and finds real peers (`dig`, `dnsmasq`, `unbound`, `chromium`); some tests run an agent
//! inside a network namespace of their own ([`netns`]).
//!
//! The `gossipd` binary is taken from `$GOSSIPD_BIN`, else from the target directory these
//! tests were built into (`cargo build -p gossipd` first; `scripts/test` does); the mixed-build
//! test's "newer build" from `$GOSSIPD_NEXT_BIN`, else `gossipd-next` beside it
//! ([`agent::next_binary`], which `scripts/test` builds with the `testing` feature).
#![deny(missing_docs)]

pub mod agent;
pub mod browser;
pub mod dns;
pub mod netns;
pub mod peers;

use std::time::{Duration, Instant};

/// Polls `f` every 50 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
