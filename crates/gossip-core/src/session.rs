//! The session layer seam: what wraps every message into a datagram.
//!
//! Every datagram starts with a one-byte packet type that also carries the protocol version.
//! Today the only type is [`TYPE_PLAIN_V1`], a bare frame around one message; the secure
//! session layer (Noise, see `docs/SECURITY.md`) adds its own types and replaces this framing.
//! The core only ever hands whole message payloads of at most [`MAX_PAYLOAD`] bytes to this
//! layer, leaving [`MAX_OVERHEAD`] bytes for headers and authentication tags, so that no
//! datagram ever exceeds [`MAX_DATAGRAM`].

use std::net::SocketAddr;

/// Largest datagram sent or accepted, in bytes: no IP fragmentation on any common path.
pub const MAX_DATAGRAM: usize = 1200;
/// Bytes reserved for the session layer's header and tag.
pub const MAX_OVERHEAD: usize = 64;
/// Largest message payload.
pub const MAX_PAYLOAD: usize = MAX_DATAGRAM - MAX_OVERHEAD;
/// Packet type: protocol 1, unencrypted frame (one message follows).
pub const TYPE_PLAIN_V1: u8 = 0x01;

/// Why a datagram was not accepted by the session layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Empty datagram.
    #[error("empty datagram")]
    Empty,
    /// Over [`MAX_DATAGRAM`].
    #[error("datagram of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// Unknown packet type (another protocol version, or noise).
    #[error("unknown packet type {0:#04x}")]
    UnknownType(u8),
}

/// The session layer. Today it frames; it will hold per-peer Noise sessions.
#[derive(Debug, Default)]
pub struct Session {}

impl Session {
    /// A new session layer.
    pub fn new() -> Self {
        Session {}
    }

    /// Wraps a message payload for `peer`, appending the datagram to `out`.
    pub fn seal(&mut self, _peer: SocketAddr, payload: &[u8], out: &mut Vec<u8>) {
        debug_assert!(payload.len() <= MAX_PAYLOAD);
        out.reserve(payload.len() + 1);
        out.push(TYPE_PLAIN_V1);
        out.extend_from_slice(payload);
    }

    /// Unwraps a datagram from `peer`, returning the message payload.
    pub fn open<'a>(&mut self, _peer: SocketAddr, datagram: &'a [u8]) -> Result<&'a [u8], SessionError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(SessionError::TooLarge(datagram.len()));
        }
        match datagram.split_first() {
            None => Err(SessionError::Empty),
            Some((&TYPE_PLAIN_V1, rest)) => Ok(rest),
            Some((&t, _)) => Err(SessionError::UnknownType(t)),
        }
    }
}
