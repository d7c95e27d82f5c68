//! The gossipd protocol as a pure state machine.
//!
//! No sockets, no clock, no OS randomness: the caller feeds datagrams and the current time to a
//! [`Gossip`], drains the datagrams it wants sent, and calls it back at
//! [`Gossip::poll_timeout`]. Randomness comes from [`Config::rng_seed`]. The daemon and the
//! simulator run exactly this code. `docs/PROTOCOL.md` describes the algorithm and the bytes.
#![deny(missing_docs)]

/// Modules internal to the core: private, and public only under the `testing` feature (the
/// core's own tests, the fuzz targets). The driver and the simulator use the root re-exports and
/// the public modules below, as quinn's driver uses `quinn-proto`'s: events, small views, no
/// tables or secrets.
macro_rules! internal {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(feature = "testing")]
        pub mod $name;
        #[cfg(not(feature = "testing"))]
        pub(crate) mod $name;
    )*};
}

internal!(chunk, gossip, message, peers, proof, reconcile, session, state, sums, wire);

pub mod cert;
pub mod rng;
pub mod secure;
pub mod types;
pub mod version;

pub use gossip::{
    AppError, CommandError, Config, Event, Gossip, Liveness, MAX_ENTRY, Stats, Transmit, check_instance, services_of,
};
pub use message::{
    APP_PREFIX, Head, MAX_ANSWER_PARTS, MAX_APP_BODY, MAX_APP_RECORD, MAX_NOTE, NOTE_PREFIX, NodeStatus, Value,
    entry_len,
};
pub use session::{MAX_DATAGRAM, MAX_PAYLOAD};
pub use state::{Commitment, NodeState};
pub use types::{Health, Meta, NodeId, NodeInfo, ServiceInstance};
pub use wire::DecodeError;
