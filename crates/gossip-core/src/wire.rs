//! Byte-level codec primitives for untrusted input.
//!
//! [`Reader`] never panics and never allocates more than the bytes it was given can justify:
//! every length is checked against what remains before anything is reserved. Integers are
//! LEB128 varints (unsigned) or fixed-width big-endian where noted in `docs/PROTOCOL.md`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::types::NodeId;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("truncated input")]
    Truncated,
    /// A varint was longer than 10 bytes or overflowed 64 bits.
    #[error("malformed varint")]
    BadVarint,
    /// A string was not UTF-8.
    #[error("invalid UTF-8")]
    BadUtf8,
    /// A tag byte had no meaning.
    #[error("unknown {what} tag {tag}")]
    BadTag {
        /// Which field.
        what: &'static str,
        /// The value seen.
        tag: u8,
    },
    /// A value was out of its allowed range.
    #[error("{0} out of range")]
    OutOfRange(&'static str),
    /// Bytes were left after the message.
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

/// A cursor over untrusted bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() { Ok(()) } else { Err(DecodeError::Trailing(self.buf.len())) }
    }

    /// Takes `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    /// Big-endian u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Big-endian u64.
    pub fn u64_fixed(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// LEB128 varint.
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            let part = u64::from(b & 0x7f);
            if i == 9 && b > 1 {
                return Err(DecodeError::BadVarint);
            }
            value |= part << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::BadVarint)
    }

    /// A count of items, each at least `min_item_len` bytes: rejected if the remaining input
    /// cannot possibly hold that many, so a caller may reserve `count` slots safely.
    pub fn count(&mut self, min_item_len: usize) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        let max = self.buf.len() / min_item_len.max(1);
        if n > max as u64 {
            return Err(DecodeError::Truncated);
        }
        Ok(n as usize)
    }

    /// A varint-length-prefixed UTF-8 string of at most `max` bytes.
    pub fn string(&mut self, max: usize) -> Result<String, DecodeError> {
        let len = self.varint()?;
        if len > max as u64 {
            return Err(DecodeError::OutOfRange("string length"));
        }
        let b = self.bytes(len as usize)?;
        std::str::from_utf8(b).map(str::to_owned).map_err(|_| DecodeError::BadUtf8)
    }

    /// A 16-byte node id.
    pub fn node_id(&mut self) -> Result<NodeId, DecodeError> {
        let mut id = [0u8; 16];
        id.copy_from_slice(self.bytes(16)?);
        Ok(NodeId(id))
    }

    /// An optional IP address: tag 0 none, 4 IPv4 (4 bytes), 6 IPv6 (16 bytes).
    pub fn opt_ip(&mut self) -> Result<Option<IpAddr>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            4 => {
                let b = self.bytes(4)?;
                Ok(Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))))
            }
            6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(self.bytes(16)?);
                Ok(Some(IpAddr::V6(Ipv6Addr::from(a))))
            }
            tag => Err(DecodeError::BadTag { what: "address", tag }),
        }
    }

    /// A socket address: an IP (tag 4 or 6) then a big-endian port.
    pub fn socket_addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let ip = self.opt_ip()?.ok_or(DecodeError::BadTag { what: "address", tag: 0 })?;
        Ok(SocketAddr::new(ip, self.u16()?))
    }
}

/// Appends encoded values to a `Vec<u8>`.
#[derive(Debug, Default)]
pub struct Writer {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer { buf: Vec::with_capacity(256) }
    }

    /// Bytes written.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Big-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Big-endian u64.
    pub fn u64_fixed(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// LEB128 varint.
    pub fn varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(b);
                return;
            }
            self.buf.push(b | 0x80);
        }
    }

    /// Raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Length-prefixed string.
    pub fn string(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// A node id.
    pub fn node_id(&mut self, id: &NodeId) {
        self.buf.extend_from_slice(&id.0);
    }

    /// An optional IP address (see [`Reader::opt_ip`]).
    pub fn opt_ip(&mut self, ip: Option<IpAddr>) {
        match ip {
            None => self.u8(0),
            Some(IpAddr::V4(a)) => {
                self.u8(4);
                self.bytes(&a.octets());
            }
            Some(IpAddr::V6(a)) => {
                self.u8(6);
                self.bytes(&a.octets());
            }
        }
    }

    /// A socket address.
    pub fn socket_addr(&mut self, a: SocketAddr) {
        self.opt_ip(Some(a.ip()));
        self.u16(a.port());
    }
}

/// Encoded length of a varint.
pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trip(v: u64) {
            let mut w = Writer::new();
            w.varint(v);
            prop_assert_eq!(w.len(), varint_len(v));
            let mut r = Reader::new(&w.buf);
            prop_assert_eq!(r.varint().unwrap(), v);
            prop_assert!(r.finish().is_ok());
        }

        #[test]
        fn reader_never_panics(bytes: Vec<u8>) {
            let mut r = Reader::new(&bytes);
            let _ = r.varint();
            let _ = r.string(100);
            let _ = r.count(3);
            let _ = r.opt_ip();
            let _ = r.socket_addr();
        }
    }

    #[test]
    fn overlong_varint_rejected() {
        assert_eq!(Reader::new(&[0xff; 11]).varint(), Err(DecodeError::BadVarint));
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).varint(),
            Err(DecodeError::BadVarint)
        );
    }

    #[test]
    fn count_is_bounded_by_input() {
        let mut w = Writer::new();
        w.varint(1_000_000);
        w.bytes(&[0; 10]);
        assert_eq!(Reader::new(&w.buf).count(2), Err(DecodeError::Truncated));
    }
}
