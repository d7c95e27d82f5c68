//! Query counters and the query latency histogram, shared between the server and whoever
//! exports metrics.
//!
//! Contract: counting is lock-free (relaxed atomics) and never fails; [`DnsStats::counts`]
//! reads a consistent-enough copy for export (counters are independent, not a snapshot: a
//! histogram read while queries run may have a `count` one or two off its buckets' total).
//!
//! The latency histogram has fixed buckets ([`LATENCY_BUCKETS`], upper bounds in seconds, as
//! Prometheus wants them); each observation increments one bucket, the count and the sum (in
//! nanoseconds, so that it stays an integer).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::QType;

/// Upper bounds (seconds, inclusive) of the latency histogram's buckets; one more bucket,
/// `+Inf`, takes the rest. From 25 µs (a cached answer) to 100 ms (a stalled writer).
pub const LATENCY_BUCKETS: [f64; 12] =
    [0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1];

/// Query types the server counts separately (everything else is `other`).
pub const COUNTED_QTYPES: [&str; 9] = ["a", "aaaa", "srv", "soa", "ns", "any", "ptr", "txt", "other"];

fn qtype_index(q: QType) -> usize {
    match q {
        QType::A => 0,
        QType::Aaaa => 1,
        QType::Srv => 2,
        QType::Soa => 3,
        QType::Ns => 4,
        QType::Any => 5,
        QType::Ptr => 6,
        QType::Txt => 7,
        QType::Other(_) => 8,
    }
}

/// Response codes the server counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CountedRcode {
    /// NOERROR (including NODATA).
    NoError,
    /// NXDOMAIN.
    NxDomain,
    /// REFUSED (outside the domain, or a class other than IN).
    Refused,
    /// FORMERR (not exactly one question, undecodable request).
    FormErr,
    /// SERVFAIL (a record could not be encoded).
    ServFail,
    /// NOTIMP (an opcode other than QUERY).
    NotImp,
    /// BADVERS (EDNS version above 0).
    BadVers,
}

/// Lock-free counters of answered queries.
#[derive(Debug, Default)]
pub struct DnsStats {
    by_rcode: [AtomicU64; 7],
    by_qtype: [AtomicU64; COUNTED_QTYPES.len()],
    truncated: AtomicU64,
    rrl_dropped: AtomicU64,
    rrl_slipped: AtomicU64,
    tcp_refused: AtomicU64,
    forwarded: AtomicU64,
    forward_failed: AtomicU64,
    remote: AtomicU64,
    remote_failed: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_nanos: AtomicU64,
    latency_count: AtomicU64,
}

/// A plain copy of the latency histogram, for export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative): `buckets[i]` counts latencies above
    /// `LATENCY_BUCKETS[i - 1]` and at most `LATENCY_BUCKETS[i]`; the last one, the rest.
    pub buckets: [u64; LATENCY_BUCKETS.len() + 1],
    /// Sum of all observations, in nanoseconds.
    pub sum_nanos: u64,
    /// Number of observations.
    pub count: u64,
}

impl LatencyHistogram {
    /// Cumulative counts paired with their upper bound (`None` for `+Inf`), as Prometheus
    /// exports `_bucket{le=...}`.
    pub fn cumulative(&self) -> Vec<(Option<f64>, u64)> {
        let mut total = 0;
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, n)| {
                total += n;
                (LATENCY_BUCKETS.get(i).copied(), total)
            })
            .collect()
    }
}

/// A plain copy of [`DnsStats`], for export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsCounts {
    /// Responses with NOERROR (including NODATA).
    pub noerror: u64,
    /// Responses with NXDOMAIN.
    pub nxdomain: u64,
    /// Responses with REFUSED.
    pub refused: u64,
    /// Responses with FORMERR.
    pub formerr: u64,
    /// Responses with SERVFAIL.
    pub servfail: u64,
    /// Responses with NOTIMP.
    pub notimp: u64,
    /// Responses with BADVERS.
    pub badvers: u64,
    /// UDP responses sent with the TC bit (client should retry over TCP).
    pub truncated: u64,
    /// UDP responses not sent because of response rate limiting.
    pub rrl_dropped: u64,
    /// UDP responses sent as bare truncated answers because of response rate limiting.
    pub rrl_slipped: u64,
    /// TCP connections closed on accept (total or per-source limit).
    pub tcp_refused: u64,
    /// Queries relayed to an upstream resolver (`--recursor`) and answered by one.
    pub forwarded: u64,
    /// Queries to relay that no upstream answered, or that found no free forwarding slot:
    /// each was answered SERVFAIL.
    pub forward_failed: u64,
    /// Queries for another datacenter answered by an agent there (through the WAN pool).
    pub remote: u64,
    /// Queries for another datacenter that could not be reached (or found no free slot):
    /// each was answered SERVFAIL.
    pub remote_failed: u64,
    /// Queries with exactly one question, by its type, in the order of [`COUNTED_QTYPES`].
    pub by_qtype: [u64; COUNTED_QTYPES.len()],
    /// Time to handle each query, from the request to the response handed to the socket.
    pub latency: LatencyHistogram,
}

impl DnsStats {
    /// Counts one response with `rcode`.
    pub fn record(&self, rcode: CountedRcode) {
        if let Some(counter) = self.by_rcode.get(rcode as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one response dropped (`slipped` false) or slipped by response rate limiting.
    pub fn record_rrl(&self, slipped: bool) {
        let c = if slipped { &self.rrl_slipped } else { &self.rrl_dropped };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one TCP connection refused at accept.
    pub fn record_tcp_refused(&self) {
        self.tcp_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one query relayed upstream: answered (`ok`) or failed (SERVFAIL sent).
    pub fn record_forwarded(&self, ok: bool) {
        let c = if ok { &self.forwarded } else { &self.forward_failed };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one query relayed to another datacenter: answered there (`ok`) or not.
    pub fn record_remote(&self, ok: bool) {
        let c = if ok { &self.remote } else { &self.remote_failed };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one truncated (TC) UDP response.
    pub fn record_truncated(&self) {
        self.truncated.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one query of type `qtype`.
    pub fn record_qtype(&self, qtype: QType) {
        if let Some(counter) = self.by_qtype.get(qtype_index(qtype)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records how long one query took to handle.
    pub fn record_latency(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS.iter().position(|le| secs <= *le).unwrap_or(LATENCY_BUCKETS.len());
        if let Some(counter) = self.latency.get(bucket) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads all counters.
    pub fn counts(&self) -> DnsCounts {
        let get = |r: CountedRcode| self.by_rcode.get(r as usize).map_or(0, |c| c.load(Ordering::Relaxed));
        DnsCounts {
            noerror: get(CountedRcode::NoError),
            nxdomain: get(CountedRcode::NxDomain),
            refused: get(CountedRcode::Refused),
            formerr: get(CountedRcode::FormErr),
            servfail: get(CountedRcode::ServFail),
            notimp: get(CountedRcode::NotImp),
            badvers: get(CountedRcode::BadVers),
            truncated: self.truncated.load(Ordering::Relaxed),
            rrl_dropped: self.rrl_dropped.load(Ordering::Relaxed),
            rrl_slipped: self.rrl_slipped.load(Ordering::Relaxed),
            tcp_refused: self.tcp_refused.load(Ordering::Relaxed),
            forwarded: self.forwarded.load(Ordering::Relaxed),
            forward_failed: self.forward_failed.load(Ordering::Relaxed),
            remote: self.remote.load(Ordering::Relaxed),
            remote_failed: self.remote_failed.load(Ordering::Relaxed),
            by_qtype: std::array::from_fn(|i| self.by_qtype[i].load(Ordering::Relaxed)),
            latency: LatencyHistogram {
                buckets: std::array::from_fn(|i| self.latency[i].load(Ordering::Relaxed)),
                sum_nanos: self.latency_sum_nanos.load(Ordering::Relaxed),
                count: self.latency_count.load(Ordering::Relaxed),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_rcode_separately() {
        let s = DnsStats::default();
        s.record(CountedRcode::NoError);
        s.record(CountedRcode::NoError);
        s.record(CountedRcode::BadVers);
        s.record_truncated();
        let c = s.counts();
        assert_eq!((c.noerror, c.badvers, c.truncated, c.nxdomain), (2, 1, 1, 0));
    }

    #[test]
    fn counts_query_types() {
        let s = DnsStats::default();
        for q in [QType::A, QType::Srv, QType::Srv, QType::Txt, QType::Other(99), QType::Any, QType::Ptr] {
            s.record_qtype(q);
        }
        assert_eq!(s.counts().by_qtype, [1, 0, 2, 0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn latency_lands_in_the_first_bucket_that_holds_it() {
        let s = DnsStats::default();
        s.record_latency(Duration::from_micros(10)); // <= 25 µs
        s.record_latency(Duration::from_micros(25)); // bounds are inclusive
        s.record_latency(Duration::from_micros(700)); // <= 1 ms
        s.record_latency(Duration::from_secs(3)); // +Inf
        let h = s.counts().latency;
        assert_eq!(h.count, 4);
        assert_eq!(h.sum_nanos, 10_000 + 25_000 + 700_000 + 3_000_000_000);
        assert_eq!(h.buckets[0], 2);
        assert_eq!(h.buckets[5], 1);
        assert_eq!(h.buckets[LATENCY_BUCKETS.len()], 1);
        let cum = h.cumulative();
        assert_eq!(cum.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(cum[0], (Some(0.000_025), 2));
        assert_eq!(cum[5], (Some(0.001), 3));
        assert_eq!(cum[LATENCY_BUCKETS.len()], (None, 4), "+Inf holds every observation");
        assert!(cum.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative counts never fall");
    }
}
