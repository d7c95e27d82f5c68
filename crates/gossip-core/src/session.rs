//! Datagram size budget shared by the gossip layer and the secure session layer.
//!
//! Every datagram starts with a one-byte packet type that also carries the protocol version
//! (see [`crate::secure::packet`]). The core hands the secure layer whole message payloads of at
//! most [`MAX_PAYLOAD`] bytes, leaving [`MAX_OVERHEAD`] bytes for headers and authentication
//! tags, so that no datagram ever exceeds [`MAX_DATAGRAM`]. There is no plaintext framing.

/// Largest datagram sent or accepted, in bytes: no IP fragmentation on any common path.
pub const MAX_DATAGRAM: usize = 1200;
/// Bytes reserved for the session layer's header and tag.
pub const MAX_OVERHEAD: usize = 64;
/// Largest message payload.
pub const MAX_PAYLOAD: usize = MAX_DATAGRAM - MAX_OVERHEAD;
