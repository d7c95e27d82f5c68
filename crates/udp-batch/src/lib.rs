//! Batched UDP receive and send on a blocking [`std::net::UdpSocket`].
//!
//! Contract:
//!
//! * [`RecvBatch::recv`] blocks (within the socket's read timeout, as `recv_from` does) until
//!   one datagram is queued, then takes every other datagram already queued, up to the batch's
//!   capacity, without waiting for more. On Linux that is one `recvmmsg(MSG_WAITFORONE)` call;
//!   elsewhere it is one `recv_from`, so a batch holds one datagram.
//! * Each datagram lands in a slot of fixed size chosen at [`RecvBatch::new`]; a longer one is
//!   cut to the slot, as `recv_from` cuts it. A datagram whose source address is not IPv4 or
//!   IPv6 (which a UDP socket of those families never reports) is reported without one.
//! * [`SendBatch::send`] sends each `(bytes, destination)` pair as one datagram, in order, in
//!   as few calls as it can: one `sendmmsg` on Linux when nothing fails, one `send_to` per
//!   datagram elsewhere. A datagram that the kernel refuses is skipped (its error is handed to
//!   the caller) and the rest are still sent.
//! * All memory is allocated at construction, bounded by capacity times slot size; neither
//!   call allocates.
//!
//! All unsafe code of the workspace is in the private `linux` module: two system calls on
//! arrays this crate owns, and the conversions between `std`'s socket addresses and the C
//! ones. Everything public is safe.

use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};

#[cfg(target_os = "linux")]
mod linux;

/// Most datagrams one call takes or sends (Linux's `UIO_MAXIOV`); larger capacities are cut.
pub const MAX_BATCH: usize = 1024;

/// A set of receive slots, filled by one call to [`RecvBatch::recv`].
pub struct RecvBatch {
    /// `capacity * slot` bytes: slot `i` is `bufs[i * slot..][..slot]`.
    bufs: Box<[u8]>,
    slot: usize,
    /// Per slot: bytes received and the source (valid for the first `len` slots).
    lens: Box<[usize]>,
    sources: Box<[Option<SocketAddr>]>,
    len: usize,
    #[cfg(target_os = "linux")]
    sys: linux::RecvState,
}

impl RecvBatch {
    /// A batch of `capacity` slots (1 to [`MAX_BATCH`]) of `slot` bytes each (at least 1).
    pub fn new(capacity: usize, slot: usize) -> Self {
        let (capacity, slot) = (capacity.clamp(1, MAX_BATCH), slot.max(1));
        RecvBatch {
            bufs: vec![0u8; capacity * slot].into_boxed_slice(),
            slot,
            lens: vec![0; capacity].into_boxed_slice(),
            sources: vec![None; capacity].into_boxed_slice(),
            len: 0,
            #[cfg(target_os = "linux")]
            sys: linux::RecvState::new(capacity),
        }
    }

    /// How many datagrams one call can take.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Receives at least one datagram (see the module contract) and returns how many; the
    /// previous batch is forgotten. Errors are the socket's, as `recv_from` reports them
    /// (`WouldBlock` or `TimedOut` when the read timeout passes with nothing queued).
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.len = 0;
        #[cfg(target_os = "linux")]
        let n = self.sys.recv(socket, &mut self.bufs, self.slot, &mut self.lens, &mut self.sources)?;
        #[cfg(not(target_os = "linux"))]
        let n = {
            let (len, src) = socket.recv_from(&mut self.bufs[..self.slot])?;
            self.lens[0] = len;
            self.sources[0] = Some(src);
            1
        };
        self.len = n.min(self.capacity());
        Ok(self.len)
    }

    /// Datagrams of the last [`RecvBatch::recv`].
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the last receive brought nothing (before the first one, or after an error).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Datagram `i` of the last receive: its bytes (cut to the slot size) and its source, if
    /// the kernel gave one of a known family. `None` past [`RecvBatch::len`].
    pub fn get(&self, i: usize) -> Option<(&[u8], Option<SocketAddr>)> {
        if i >= self.len {
            return None;
        }
        let len = self.lens.get(i).copied()?.min(self.slot);
        let bytes = self.bufs.get(i * self.slot..i * self.slot + len)?;
        Some((bytes, self.sources.get(i).copied().flatten()))
    }
}

impl fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBatch")
            .field("capacity", &self.capacity())
            .field("slot", &self.slot)
            .field("len", &self.len)
            .finish()
    }
}

/// Scratch space to send up to `capacity` datagrams per system call.
pub struct SendBatch {
    #[cfg(target_os = "linux")]
    sys: linux::SendState,
    capacity: usize,
}

impl SendBatch {
    /// Room for `capacity` datagrams per call (1 to [`MAX_BATCH`]); longer batches take more
    /// calls.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_BATCH);
        SendBatch {
            #[cfg(target_os = "linux")]
            sys: linux::SendState::new(capacity),
            capacity,
        }
    }

    /// Sends every datagram of `datagrams`, in order. A datagram the kernel refuses is
    /// skipped after `on_error(index, error)` (its index in `datagrams`); the others are
    /// still sent. Returns how many were handed to the kernel.
    pub fn send<'a>(
        &mut self,
        socket: &UdpSocket,
        datagrams: impl IntoIterator<Item = (&'a [u8], SocketAddr)>,
        mut on_error: impl FnMut(usize, io::Error),
    ) -> usize {
        #[cfg(target_os = "linux")]
        {
            self.sys.send(socket, datagrams.into_iter(), &mut on_error)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let mut sent = 0;
            for (i, (bytes, dst)) in datagrams.into_iter().enumerate() {
                match socket.send_to(bytes, dst) {
                    Ok(_) => sent += 1,
                    Err(error) => on_error(i, error),
                }
            }
            sent
        }
    }
}

impl fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendBatch").field("capacity", &self.capacity).finish()
    }
}

#[cfg(test)]
mod tests;
