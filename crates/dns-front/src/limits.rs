//! Limits that keep one source from taking the DNS server away from everyone else.
//!
//! * **TCP slots** ([`TcpLimits`], [`TcpSlots`]): at most `max_connections` connections at
//!   once and at most `per_source` from one source (an IPv4 address, an IPv6 /64); a
//!   connection past either limit is closed on accept. A connection is closed after
//!   `idle_timeout` without a complete query, and after `busy_idle_timeout` once more than
//!   half the slots are taken (as unbound shortens its TCP timeout under load).
//! * **Response rate limiting** ([`Rrl`], as BIND's and Knot's RRL): UDP responses to one
//!   (source prefix, question name, question type) are limited to `rate` per second (burst:
//!   one second's worth), source prefixes being IPv4 /24 and IPv6 /56. Past the rate every
//!   `slip`-th response is sent as a bare truncated answer (the header and the question, TC
//!   set: no larger than the query, so the client retries over TCP, where a spoofed source
//!   cannot follow), the others are dropped. Loopback sources are never limited: they cannot
//!   be spoofed from off the host. The table is bounded ([`RRL_MAX_ENTRIES`]); when it is full
//!   of live entries, new keys share one bucket.
//!
//! Time is a parameter: the caller passes `now`.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// TCP connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one source (IPv4 address, IPv6 /64).
    pub per_source: usize,
    /// A connection that sends no complete query for this long is closed.
    pub idle_timeout: Duration,
    /// The idle timeout once more than half of `max_connections` are open.
    pub busy_idle_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: 256,
            per_source: 16,
            idle_timeout: Duration::from_secs(5),
            busy_idle_timeout: Duration::from_millis(500),
        }
    }
}

/// The source a TCP limit counts against: the IPv4 address, or the IPv6 /64.
fn tcp_source(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) >> 64) | (1 << 127),
    }
}

/// Open TCP connections, in total and by source.
#[derive(Debug)]
pub struct TcpSlots {
    limits: TcpLimits,
    total: AtomicUsize,
    by_source: Mutex<HashMap<u128, usize>>,
}

/// One taken slot, given back when dropped.
#[derive(Debug)]
pub struct TcpSlot {
    slots: Arc<TcpSlots>,
    source: u128,
}

impl TcpSlots {
    /// No connection open yet.
    pub fn new(limits: TcpLimits) -> Arc<Self> {
        Arc::new(TcpSlots { limits, total: AtomicUsize::new(0), by_source: Mutex::new(HashMap::new()) })
    }

    /// A slot for a new connection from `ip`, or `None` when the server or that source is at
    /// its limit.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<TcpSlot> {
        let source = tcp_source(ip);
        let mut by_source = self.by_source.lock().unwrap_or_else(|p| p.into_inner());
        if self.total.load(Ordering::Relaxed) >= self.limits.max_connections {
            return None;
        }
        let n = by_source.entry(source).or_insert(0);
        if *n >= self.limits.per_source {
            return None;
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(TcpSlot { slots: Arc::clone(self), source })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl TcpSlot {
    /// The idle timeout that applies now (shorter once more than half the slots are taken).
    pub fn idle_timeout(&self) -> Duration {
        let l = &self.slots.limits;
        if self.slots.open() > l.max_connections / 2 { l.busy_idle_timeout } else { l.idle_timeout }
    }
}

impl Drop for TcpSlot {
    fn drop(&mut self) {
        let mut by_source = self.slots.by_source.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                by_source.remove(&self.source);
            }
        }
        self.slots.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Response rate limiting settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrlConfig {
    /// Responses per second to one (source prefix, name, type); 0 disables the limit.
    pub rate: u32,
    /// Every `slip`-th limited response is sent truncated (0: drop them all; 1: truncate all).
    pub slip: u32,
    /// Loopback sources are not limited (they cannot be spoofed from off the host).
    pub exempt_loopback: bool,
}

impl Default for RrlConfig {
    fn default() -> Self {
        RrlConfig { rate: 20, slip: 2, exempt_loopback: true }
    }
}

/// Most (source prefix, name, type) entries the rate limiter keeps.
pub const RRL_MAX_ENTRIES: usize = 65_536;

/// What to do with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Send,
    /// Send a bare truncated answer instead ([`truncated_reply`]).
    Slip,
    /// Send nothing.
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    limited: u64,
}

/// The response rate limiter (one per UDP loop; not shared).
#[derive(Debug)]
pub struct Rrl {
    cfg: RrlConfig,
    hasher: std::collections::hash_map::RandomState,
    buckets: HashMap<u64, Bucket>,
    overflow: Option<Bucket>,
}

impl Rrl {
    /// An empty limiter.
    pub fn new(cfg: RrlConfig) -> Self {
        Rrl { cfg, hasher: Default::default(), buckets: HashMap::new(), overflow: None }
    }

    /// The verdict for a response to `qname` (wire form, any case) of type `qtype` sent to
    /// `src` at `now`.
    pub fn check(&mut self, now: Instant, src: IpAddr, qname: &[u8], qtype: u16) -> Verdict {
        if self.cfg.rate == 0 || (self.cfg.exempt_loopback && src.to_canonical().is_loopback()) {
            return Verdict::Send;
        }
        let mut h = self.hasher.build_hasher();
        match src.to_canonical() {
            IpAddr::V4(v4) => h.write_u32(u32::from(v4) & 0xFFFF_FF00),
            IpAddr::V6(v6) => h.write_u128(u128::from(v6) & !((1u128 << 72) - 1)),
        }
        for b in qname {
            h.write_u8(b.to_ascii_lowercase());
        }
        h.write_u16(qtype);
        let key = h.finish();
        let rate = f64::from(self.cfg.rate);
        let fresh = Bucket { tokens: rate, last: now, limited: 0 };
        if !self.buckets.contains_key(&key) && self.buckets.len() >= RRL_MAX_ENTRIES {
            // Entries idle for a second are full again: the same as absent.
            self.buckets.retain(|_, b| now.saturating_duration_since(b.last) < Duration::from_secs(1));
        }
        let bucket = if self.buckets.len() < RRL_MAX_ENTRIES || self.buckets.contains_key(&key) {
            self.buckets.entry(key).or_insert(fresh)
        } else {
            self.overflow.get_or_insert(fresh)
        };
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Verdict::Send;
        }
        bucket.limited += 1;
        let slip = u64::from(self.cfg.slip);
        if slip > 0 && bucket.limited % slip == 0 { Verdict::Slip } else { Verdict::Drop }
    }
}

/// A bare truncated answer to `query`: its header with QR, AA and TC set, no records, and its
/// question; `None` when the one question does not read. Never longer than the query.
pub fn truncated_reply(query: &[u8]) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    let question = query.get(crate::wire::question_span(query)?)?;
    let mut out = Vec::with_capacity(12 + question.len());
    out.extend_from_slice(&header[..2]);
    // QR, opcode kept, AA, TC, RD kept; RA clear, rcode NOERROR.
    out.push(0x80 | (header[2] & 0x79) | 0x04 | 0x02);
    out.push(0);
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(question);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_slots_limit_each_source_and_the_total() {
        let limits = TcpLimits { max_connections: 4, per_source: 2, ..Default::default() };
        let slots = TcpSlots::new(limits);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = slots.take(a).unwrap();
        let _a2 = slots.take(a).unwrap();
        assert!(slots.take(a).is_none(), "one source holds at most per_source");
        let b1 = slots.take(b).unwrap();
        assert_eq!(b1.idle_timeout(), limits.busy_idle_timeout, "3 of 4 open: busy");
        drop(a1);
        assert!(slots.take(a).is_some());
        // IPv6: one /64 is one source.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let slots = TcpSlots::new(limits);
        let _x = slots.take(v6("2001:db8::1")).unwrap();
        let _y = slots.take(v6("2001:db8::2")).unwrap();
        assert!(slots.take(v6("2001:db8::3")).is_none());
        assert!(slots.take(v6("2001:db8:0:1::1")).is_some());
    }

    #[test]
    fn rrl_limits_per_prefix_and_name_then_slips() {
        let mut rrl = Rrl::new(RrlConfig { rate: 5, slip: 2, exempt_loopback: true });
        let t = Instant::now();
        let victim: IpAddr = "192.0.2.7".parse().unwrap();
        let name = b"\x03web\x07service\x06gossip\x00";
        let verdicts: Vec<Verdict> = (0..11).map(|_| rrl.check(t, victim, name, 33)).collect();
        assert_eq!(verdicts[..5], [Verdict::Send; 5]);
        assert_eq!(
            verdicts[5..],
            [Verdict::Drop, Verdict::Slip, Verdict::Drop, Verdict::Slip, Verdict::Drop, Verdict::Slip]
        );
        // The same /24, another case of the name: the same bucket.
        let neighbour: IpAddr = "192.0.2.200".parse().unwrap();
        assert_ne!(rrl.check(t, neighbour, b"\x03WEB\x07service\x06gossip\x00", 33), Verdict::Send);
        // Another name, another prefix, or later: fresh.
        assert_eq!(rrl.check(t, victim, b"\x03api\x07service\x06gossip\x00", 33), Verdict::Send);
        assert_eq!(rrl.check(t, "198.51.100.1".parse().unwrap(), name, 33), Verdict::Send);
        assert_eq!(rrl.check(t + Duration::from_secs(1), victim, name, 33), Verdict::Send);
        // Loopback is never limited; rate 0 disables.
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!((0..100).all(|_| rrl.check(t, lo, name, 33) == Verdict::Send));
        let mut off = Rrl::new(RrlConfig { rate: 0, slip: 2, exempt_loopback: true });
        assert!((0..100).all(|_| off.check(t, victim, name, 33) == Verdict::Send));
    }

    #[test]
    fn the_truncated_reply_is_no_larger_than_the_query() {
        // A query with an OPT record: the reply keeps only the header and the question.
        let mut q = vec![0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        q.extend_from_slice(b"\x03web\x07service\x06gossip\x00\x00\x21\x00\x01");
        q.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        let r = truncated_reply(&q).unwrap();
        assert!(r.len() < q.len());
        assert_eq!(&r[..2], &[0xAB, 0xCD]);
        assert_eq!(r[2] & 0x82, 0x82, "QR and TC");
        assert_eq!(r[2] & 0x01, 0x01, "RD echoed");
        assert_eq!(&r[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert!(truncated_reply(&q[..20]).is_none());
    }
}
