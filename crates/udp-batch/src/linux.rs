//! `recvmmsg(2)` and `sendmmsg(2)`: the only unsafe code of the workspace.
//!
//! Each state owns three arrays of the same length: the `mmsghdr`s the kernel reads, one
//! `iovec` per header and one socket address per header. Before every call the headers are
//! rewritten to point at this call's arrays and buffers (pointers are never kept from one call
//! to the next), the system call runs, and the results are read back by value. Nothing here
//! allocates after `new`.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::ptr;

use libc::{c_int, c_uint, c_void, iovec, mmsghdr, sa_family_t, sockaddr_in, sockaddr_in6, socklen_t};

/// Room for an IPv4 or IPv6 socket address, as the kernel writes or reads it.
#[repr(C)]
#[derive(Clone, Copy)]
union RawAddr {
    v4: sockaddr_in,
    v6: sockaddr_in6,
}

const RAW_ADDR_LEN: socklen_t = size_of::<RawAddr>() as socklen_t;

impl RawAddr {
    /// All zero bytes, every byte initialized (the larger variant is written).
    fn zeroed() -> Self {
        RawAddr {
            v6: sockaddr_in6 {
                sin6_family: 0,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: [0; 16] },
                sin6_scope_id: 0,
            },
        }
    }

    /// Writes `addr` in C form and returns its length. Only the variant's own bytes change.
    fn set(&mut self, addr: SocketAddr) -> socklen_t {
        match addr {
            SocketAddr::V4(a) => {
                self.v4 = sockaddr_in {
                    sin_family: libc::AF_INET as sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                    sin_zero: [0; 8],
                };
                size_of::<sockaddr_in>() as socklen_t
            }
            SocketAddr::V6(a) => {
                self.v6 = sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                    sin6_scope_id: a.scope_id(),
                };
                size_of::<sockaddr_in6>() as socklen_t
            }
        }
    }

    /// The address the kernel wrote (`len` bytes of it), if it is IPv4 or IPv6.
    fn get(&self, len: socklen_t) -> Option<SocketAddr> {
        let len = usize::try_from(len).ok()?;
        // SAFETY: every byte of a `RawAddr` is initialized (`zeroed` writes the larger
        // variant, later writes come from the kernel or `set`), and both variants are C
        // structs of integers, for which any bytes are a valid value; so reading either
        // variant is sound. The family is the first field of both (C's `sockaddr` layout).
        let family = c_int::from(unsafe { self.v4.sin_family });
        match family {
            libc::AF_INET if len >= size_of::<sockaddr_in>() => {
                // SAFETY: as above.
                let a = unsafe { self.v4 };
                let ip = Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 if len >= size_of::<sockaddr_in6>() => {
                // SAFETY: as above.
                let a = unsafe { self.v6 };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(a.sin6_port), a.sin6_flowinfo, a.sin6_scope_id)))
            }
            _ => None,
        }
    }
}

/// A header with null pointers and zero lengths (rewritten before every use).
fn empty_header() -> mmsghdr {
    // SAFETY: `mmsghdr` is a C struct of integers and raw pointers (and, on some C libraries,
    // private padding integers), for which all-zero bytes are a valid value: null pointers
    // and zero lengths.
    unsafe { std::mem::zeroed() }
}

fn empty_iovec() -> iovec {
    iovec { iov_base: ptr::null_mut(), iov_len: 0 }
}

/// Points header `i` at `iovs[i]` and `names[i]` (bases taken once, after the last write to
/// either array, so that the pointers stay valid until the system call). `msg_namelen` is the
/// caller's to set.
fn link(hdrs: &mut [mmsghdr], iovs: *mut iovec, names: *mut RawAddr) {
    for (i, hdr) in hdrs.iter_mut().enumerate() {
        hdr.msg_hdr.msg_name = names.wrapping_add(i).cast::<c_void>();
        hdr.msg_hdr.msg_iov = iovs.wrapping_add(i);
        hdr.msg_hdr.msg_iovlen = 1;
        hdr.msg_hdr.msg_control = ptr::null_mut();
        hdr.msg_hdr.msg_controllen = 0;
        hdr.msg_hdr.msg_flags = 0;
        hdr.msg_len = 0;
    }
}

/// The arrays of one `recvmmsg` call.
pub(crate) struct RecvState {
    hdrs: Box<[mmsghdr]>,
    iovs: Box<[iovec]>,
    names: Box<[RawAddr]>,
}

impl RecvState {
    pub(crate) fn new(capacity: usize) -> Self {
        RecvState {
            hdrs: (0..capacity).map(|_| empty_header()).collect(),
            iovs: (0..capacity).map(|_| empty_iovec()).collect(),
            names: (0..capacity).map(|_| RawAddr::zeroed()).collect(),
        }
    }

    /// One `recvmmsg(MSG_WAITFORONE)` into `slot`-byte slots of `bufs`; fills `lens` and
    /// `sources` for each datagram received and returns their number.
    pub(crate) fn recv(
        &mut self,
        socket: &UdpSocket,
        bufs: &mut [u8],
        slot: usize,
        lens: &mut [usize],
        sources: &mut [Option<SocketAddr>],
    ) -> io::Result<usize> {
        let n = self.hdrs.len().min(lens.len()).min(sources.len()).min(bufs.len() / slot.max(1));
        let n_c = c_uint::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let base = bufs.as_mut_ptr();
        for (i, iov) in self.iovs.iter_mut().take(n).enumerate() {
            // In bounds: i < n <= bufs.len() / slot, so slot i ends within `bufs`.
            *iov = iovec { iov_base: base.wrapping_add(i * slot).cast::<c_void>(), iov_len: slot };
        }
        let hdrs = &mut self.hdrs[..n];
        link(hdrs, self.iovs.as_mut_ptr(), self.names.as_mut_ptr());
        for hdr in hdrs.iter_mut() {
            hdr.msg_hdr.msg_namelen = RAW_ADDR_LEN;
        }
        // SAFETY: `hdrs` holds `n` initialized headers. Header i points at `self.iovs[i]` and
        // `self.names[i]` (RAW_ADDR_LEN bytes, the length it declares); `self.iovs[i]` points
        // at slot i of `bufs`, `slot` bytes that lie within `bufs` (i < bufs.len() / slot).
        // All of it is borrowed mutably for this whole call and not touched by anything else
        // meanwhile; the kernel writes at most the declared lengths and at most `n` headers.
        // A null timeout is "none" (the socket's SO_RCVTIMEO still bounds the first wait).
        let got = unsafe {
            libc::recvmmsg(socket.as_raw_fd(), hdrs.as_mut_ptr(), n_c, libc::MSG_WAITFORONE as _, ptr::null_mut())
        };
        let got = usize::try_from(got).map_err(|_| io::Error::last_os_error())?.min(n);
        for i in 0..got {
            let hdr = &self.hdrs[i];
            lens[i] = usize::try_from(hdr.msg_len).unwrap_or(0).min(slot);
            sources[i] = self.names[i].get(hdr.msg_hdr.msg_namelen);
        }
        Ok(got)
    }
}

/// The arrays of one `sendmmsg` call.
pub(crate) struct SendState {
    hdrs: Box<[mmsghdr]>,
    iovs: Box<[iovec]>,
    names: Box<[RawAddr]>,
}

impl SendState {
    pub(crate) fn new(capacity: usize) -> Self {
        SendState {
            hdrs: (0..capacity).map(|_| empty_header()).collect(),
            iovs: (0..capacity).map(|_| empty_iovec()).collect(),
            names: (0..capacity).map(|_| RawAddr::zeroed()).collect(),
        }
    }

    /// Sends `datagrams` in chunks of the capacity, one `sendmmsg` per chunk when nothing
    /// fails; a datagram the kernel refuses is reported and skipped.
    pub(crate) fn send<'a>(
        &mut self,
        socket: &UdpSocket,
        mut datagrams: impl Iterator<Item = (&'a [u8], SocketAddr)>,
        on_error: &mut impl FnMut(usize, io::Error),
    ) -> usize {
        let (mut sent, mut index) = (0, 0);
        loop {
            let mut n = 0;
            for ((iov, name), hdr) in self.iovs.iter_mut().zip(self.names.iter_mut()).zip(self.hdrs.iter_mut()) {
                let Some((bytes, dst)) = datagrams.next() else { break };
                // The kernel only reads through a send iovec: the `*mut` is C's signature.
                *iov = iovec { iov_base: bytes.as_ptr().cast_mut().cast::<c_void>(), iov_len: bytes.len() };
                hdr.msg_hdr.msg_namelen = name.set(dst);
                n += 1;
            }
            if n == 0 {
                return sent;
            }
            let hdrs = &mut self.hdrs[..n];
            link(hdrs, self.iovs.as_mut_ptr(), self.names.as_mut_ptr());
            let mut at = 0;
            while at < n {
                let rest = &mut hdrs[at..];
                let len = c_uint::try_from(rest.len()).unwrap_or(c_uint::MAX);
                // SAFETY: `rest` holds initialized headers; header i points at `self.iovs[i]`
                // and `self.names[i]` (its declared length, written by `RawAddr::set`), and
                // each iovec at a datagram borrowed for 'a, which outlives this call; the
                // kernel only reads them, and reads at most `len` headers, writing only their
                // `msg_len`.
                let rc = unsafe { libc::sendmmsg(socket.as_raw_fd(), rest.as_mut_ptr(), len, 0) };
                match usize::try_from(rc) {
                    Ok(k) if k > 0 => {
                        sent += k;
                        at += k;
                    }
                    Ok(_) => {
                        on_error(index + at, io::Error::from(io::ErrorKind::WriteZero));
                        at += 1;
                    }
                    Err(_) => {
                        // The first datagram of `rest` failed: skip it, send the others.
                        on_error(index + at, io::Error::last_os_error());
                        at += 1;
                    }
                }
            }
            index += n;
        }
    }
}
