//! DNS front end of gossipd: answers `*.service.<domain>`, `*.node.<domain>` and the apex from
//! an immutable catalog [`Snapshot`], Consul-style.
//!
//! The crate is split so that the protocol logic never sees a socket or a hickory type:
//!
//! * [`name`] parses a query name relative to the configured domain into a [`name::Query`];
//! * [`mod@resolve`] turns a [`Question`] plus a [`Snapshot`] into an [`Answer`] (plain data, pure,
//!   deterministic for a given seed); its module documentation is the DNS contract;
//! * [`records`] holds those plain question/answer types;
//! * [`order`] holds the seeded shuffle and RFC 2782 weighted ordering;
//! * [`server`] is the only file that knows hickory: it reads the current snapshot from an
//!   [`arc_swap::ArcSwap`] (no lock on the query path), calls the resolver, handles EDNS and
//!   truncation (with hickory decoding the query and encoding the answer), and serves UDP and
//!   TCP on sockets the caller bound;
//! * [`wire`] reads the common query shape straight from the datagram and [`cache`] keeps the
//!   encoded answers of the current snapshot, so that a repeated UDP question costs a lookup
//!   and a copy, not a resolution and an encoding;
//! * [`limits`] bounds what one source can take: TCP slots per source, idle timeouts, and
//!   response rate limiting (RRL) for UDP.
#![deny(missing_docs)]

pub mod cache;
pub mod forward;
pub mod limits;
pub mod name;
pub mod order;
pub mod records;
pub mod resolve;
pub mod server;
pub mod snapshot;
pub mod stats;
pub mod wire;

pub use resolve::{Answer, QType, Question, Rcode, Record, resolve};
pub use server::{DnsServer, MAX_UDP_PAYLOAD};
pub use snapshot::{Health, Instance, Node, ResolverConfig, Snapshot};
pub use stats::{COUNTED_QTYPES, CountedRcode, DnsCounts, DnsStats, LATENCY_BUCKETS, LatencyHistogram};

/// Errors of the DNS front end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// A serving task (UDP or TCP) stopped on its own, before shutdown was requested: the
    /// socket is unusable. Nothing is served any more; the caller should rebind or exit.
    #[error("dns server stopped unexpectedly: {0}")]
    Serve(String),
}
