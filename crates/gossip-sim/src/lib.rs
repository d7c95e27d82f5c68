//! A deterministic discrete-event simulator of gossipd clusters.
//!
//! Thousands of real [`gossip_core::Gossip`] state machines run in one process on a virtual
//! clock. Every datagram they emit crosses an in-memory network model ([`net`]) as encoded
//! bytes — per-link latency, jitter, loss, partitions — and is handed to its destination's
//! `handle_datagram` when due; timers fire at each node's `poll_timeout`. Nothing is sent on a
//! real network and no clock is read except once, for the origin of virtual time.
//!
//! # Determinism
//!
//! One master seed ([`SimConfig::seed`], from `SIM_SEED` or `--seed`) determines everything:
//! node ids, every node's `rng_seed` ([`derive_seed`]), the network's random choices, and so
//! the whole run. Events are ordered by `(virtual time, sequence number)`; only ordered
//! containers are iterated. A failing run prints `SIM_SEED=<seed>`
//! ([`scenario::SimError`], and [`Sim`]'s `Drop` during a panic), so
//! `SIM_SEED=<seed> cargo test -p gossip-sim <test>` replays it exactly.
//!
//! # Layout
//!
//! - [`sim`]: the event loop, local commands, kill/restart, convergence checks.
//! - [`cluster`]: configuration and construction of a cluster, cold (joining through seeds)
//!   or warm (converged from the start, sharing owner states copy-on-write).
//! - [`net`]: the network model.
//! - [`watch`]: follows one change until every live node holds it.
//! - [`scenario`]: scenarios as data (a list of [`scenario::Step`]s) and their runner.
//! - [`scenarios`]: the canned scenarios of the test suite and `gossip-sim scenario`.
//! - [`scale`]: the convergence / cost measurements behind `gossip-sim scale`.
#![deny(missing_docs)]

pub mod cluster;
pub mod net;
pub mod scale;
pub mod scenario;
pub mod scenarios;
pub mod sim;
pub mod watch;

pub use cluster::{SimConfig, Start};
pub use net::NetConfig;
pub use scenario::{Scenario, SimError, Step, Who};
pub use sim::Sim;

use gossip_core::ServiceInstance;

/// Name of the environment variable holding the master seed.
pub const SEED_ENV: &str = "SIM_SEED";

/// The master seed: `SIM_SEED` (decimal, or hex with `0x`) if set and valid, else `default`.
pub fn seed_from_env(default: u64) -> u64 {
    std::env::var(SEED_ENV).ok().and_then(|s| parse_seed(&s)).unwrap_or(default)
}

/// Parses a seed written in decimal or as `0x`-prefixed hex.
pub fn parse_seed(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Domains of [`derive_seed`]: each consumer of randomness draws from its own stream.
pub mod domain {
    /// Node ids.
    pub const NODE_ID: u64 = 1;
    /// A node's `rng_seed` (per node index and generation).
    pub const NODE_RNG: u64 = 2;
    /// The network's random choices (loss, jitter).
    pub const NET: u64 = 3;
    /// Fixed per-link latency.
    pub const LINK: u64 = 4;
    /// Trial seeds of the scale measurements.
    pub const TRIAL: u64 = 5;
    /// A node's secure-layer DRBG seed (per node index and generation).
    pub const SECURE_RNG: u64 = 6;
    /// The cluster key.
    pub const CLUSTER_KEY: u64 = 7;
}

/// SplitMix64's finalizer: a bijective 64-bit mixer.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed derived from the master seed for one consumer (`domain`, then two indices). It
/// depends on nothing else, so adding a node or an event never shifts another node's stream.
pub fn derive_seed(master: u64, domain: u64, a: u64, b: u64) -> u64 {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
    let x = mix64(master.wrapping_add(GOLDEN.wrapping_mul(domain)));
    let x = mix64(x ^ a.wrapping_mul(GOLDEN).wrapping_add(1));
    mix64(x ^ b.wrapping_mul(GOLDEN).wrapping_add(2))
}

/// A plain passing service instance with one port (weights 1), for scenarios and tests.
pub fn service(id: &str, name: &str, port: u16) -> ServiceInstance {
    ServiceInstance {
        id: id.to_owned(),
        name: name.to_owned(),
        port,
        weight_passing: 1,
        weight_warning: 1,
        ..ServiceInstance::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_and_derive() {
        assert_eq!(parse_seed("42"), Some(42));
        assert_eq!(parse_seed("0x2a"), Some(42));
        assert_eq!(parse_seed("nope"), None);
        assert_eq!(derive_seed(1, domain::NODE_RNG, 3, 1), derive_seed(1, domain::NODE_RNG, 3, 1));
        assert_ne!(derive_seed(1, domain::NODE_RNG, 3, 1), derive_seed(1, domain::NODE_RNG, 3, 2));
        assert_ne!(derive_seed(1, domain::NODE_RNG, 3, 1), derive_seed(2, domain::NODE_RNG, 3, 1));
        assert_ne!(derive_seed(1, domain::NODE_ID, 0, 0), derive_seed(1, domain::NET, 0, 0));
    }
}
