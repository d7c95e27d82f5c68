//! Query counters, shared between the server and whoever exports metrics.
//!
//! Contract: counting is lock-free (relaxed atomics) and never fails; [`DnsStats::counts`]
//! reads a consistent-enough copy for export (counters are independent, not a snapshot).

use std::sync::atomic::{AtomicU64, Ordering};

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
    truncated: AtomicU64,
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
}

impl DnsStats {
    /// Counts one response with `rcode`.
    pub fn record(&self, rcode: CountedRcode) {
        if let Some(counter) = self.by_rcode.get(rcode as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one truncated (TC) UDP response.
    pub fn record_truncated(&self) {
        self.truncated.fetch_add(1, Ordering::Relaxed);
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
}
