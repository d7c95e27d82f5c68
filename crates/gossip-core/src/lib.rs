//! The gossipd protocol as a pure state machine.
//!
//! No sockets, no clock, no OS randomness: the caller feeds datagrams and the current time to a
//! [`Gossip`], drains the datagrams it wants sent, and calls it back at
//! [`Gossip::poll_timeout`]. Randomness comes from [`Config::rng_seed`]. The daemon and the
//! simulator run exactly this code. `docs/PROTOCOL.md` describes the algorithm and the bytes.
#![deny(missing_docs)]

pub mod cert;
pub mod chunk;
pub mod gossip;
pub mod message;
pub mod peers;
pub mod proof;
pub mod reconcile;
pub mod rng;
pub mod secure;
pub mod session;
pub mod state;
pub mod types;
pub mod version;
pub mod wire;

pub use gossip::{
    CommandError, Config, Event, Gossip, Liveness, MAX_ENTRY, Stats, Transmit, check_instance, services_of,
};
pub use message::NodeStatus;
pub use state::NodeState;
pub use types::{Health, NodeId, NodeInfo, ServiceInstance};
