//! A minimal, strictly bounded reader of the common DNS query shape, for the UDP fast path.
//!
//! Contract: [`parse_query`] is total: for any bytes it returns either a [`WireQuery`] or
//! `None`, never panics, reads nothing past the slice and loops at most once per byte. It
//! accepts only the plain query that stub resolvers and recursors send, and returns `None` for
//! everything else (the caller then takes the full, hickory-backed path, which answers the odd
//! cases — FORMERR, NOTIMP, BADVERS, EDNS options — exactly as before):
//!
//! * header: QR = 0, opcode QUERY, TC = 0, QDCOUNT = 1, ANCOUNT = NSCOUNT = 0, ARCOUNT ≤ 1;
//! * one question: uncompressed labels of 1..=63 bytes, at most 255 bytes of name on the wire;
//! * the additional record, if any, is an OPT record (root owner, type 41) with extended
//!   rcode 0, version 0 and no options;
//! * nothing after that.
//!
//! No hickory types here: the fast path never sees them.

/// The fields of an accepted query that its answer depends on, plus what a cached answer must
/// copy from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireQuery {
    /// The query ID, echoed.
    pub id: u16,
    /// Wire length of the question name, root label included; the name is at offset 12.
    pub name_len: usize,
    /// Question type.
    pub qtype: u16,
    /// Question class.
    pub qclass: u16,
    /// The EDNS UDP payload size the client advertised, if the query carried an OPT record.
    pub edns_payload: Option<u16>,
}

/// Largest UDP payload we advertise or fill (the DNS flag day 2020 value, which avoids IP
/// fragmentation on common paths).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

impl WireQuery {
    /// The payload size an answer to this query is built for: `None` without EDNS, else the
    /// client's size clamped to `512..=MAX_UDP_PAYLOAD`. Part of the cache key.
    pub fn edns_class(&self) -> Option<u16> {
        self.edns_payload.map(|p| p.clamp(512, MAX_UDP_PAYLOAD))
    }
}

/// Offset of the question name in a DNS message (right after the 12-byte header).
pub const QNAME_OFFSET: usize = 12;

/// OPT record type (RFC 6891).
const TYPE_OPT: u16 = 41;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Reads `msg` if it is the plain query shape described in the module documentation.
pub fn parse_query(msg: &[u8]) -> Option<WireQuery> {
    let header = msg.get(..QNAME_OFFSET)?;
    // QR (0x80), opcode (0x78) and TC (0x02) must be zero; AA and RD are free.
    if header[2] & 0xFA != 0 {
        return None;
    }
    let counts = [u16_at(header, 4)?, u16_at(header, 6)?, u16_at(header, 8)?, u16_at(header, 10)?];
    if counts[0] != 1 || counts[1] != 0 || counts[2] != 0 || counts[3] > 1 {
        return None;
    }
    let mut at = QNAME_OFFSET;
    loop {
        let len = usize::from(*msg.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // compression pointer or reserved label type
        }
        at += len;
        if at - QNAME_OFFSET > 255 {
            return None;
        }
    }
    let name_len = at - QNAME_OFFSET;
    if name_len > 255 {
        return None;
    }
    let qtype = u16_at(msg, at)?;
    let qclass = u16_at(msg, at + 2)?;
    at += 4;
    let edns_payload = if counts[3] == 1 {
        // Root owner, type OPT, class = payload, TTL = ext-rcode, version, flags; RDLENGTH 0.
        let opt = msg.get(at..at + 11)?;
        if opt[0] != 0 || u16_at(opt, 1)? != TYPE_OPT || opt[5] != 0 || opt[6] != 0 || u16_at(opt, 9)? != 0 {
            return None;
        }
        at += 11;
        Some(u16_at(opt, 3)?)
    } else {
        None
    };
    if at != msg.len() {
        return None;
    }
    Some(WireQuery { id: u16_at(header, 0)?, name_len, qtype, qclass, edns_payload })
}

/// Offsets in `answer` (an encoded response to a question whose wire name is `qname`) where
/// that name is written out in full as a record's owner: the places, besides the question,
/// that carry the question's letter case (hickory writes the first owner name in full and
/// points later ones at it). `None` if `answer` does not walk as a well-formed message with
/// that one question.
pub fn owner_positions(answer: &[u8], qname: &[u8]) -> Option<Vec<u16>> {
    let header = answer.get(..QNAME_OFFSET)?;
    if u16_at(header, 4)? != 1 || !answer.get(QNAME_OFFSET..QNAME_OFFSET + qname.len())?.eq_ignore_ascii_case(qname) {
        return None;
    }
    let records = usize::from(u16_at(header, 6)?) + usize::from(u16_at(header, 8)?) + usize::from(u16_at(header, 10)?);
    let mut at = QNAME_OFFSET + qname.len() + 4;
    let mut found = Vec::new();
    for _ in 0..records {
        if answer.get(at..at + qname.len()).is_some_and(|n| n.eq_ignore_ascii_case(qname)) {
            found.push(u16::try_from(at).ok()?);
        }
        at = skip_name(answer, at)?;
        let rdlen = usize::from(u16_at(answer, at + 8)?);
        at += 10 + rdlen;
    }
    (at == answer.len()).then_some(found)
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            1..=63 => at += 1 + usize::from(len),
            0xC0..=0xFF => return msg.get(at + 1).map(|_| at + 2),
            _ => return None,
        }
    }
}

/// Writes into `out` the answer `template` made for `query`: same bytes, but with the ID, the
/// RD and CD flags and the question name's exact bytes (its letter case: resolvers using
/// 0x20 randomization check the echo) taken from `query`, in the question and at each of
/// `owners` (from [`owner_positions`]).
///
/// Where the bytes at a position are not the question name up to case, they are left alone.
pub fn patch_into(template: &[u8], owners: &[u16], query: &[u8], q: &WireQuery, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(template);
    if out.len() < QNAME_OFFSET || query.len() < QNAME_OFFSET {
        return;
    }
    out[..2].copy_from_slice(&q.id.to_be_bytes());
    out[2] = (out[2] & !0x01) | (query[2] & 0x01); // RD
    out[3] = (out[3] & !0x10) | (query[3] & 0x10); // CD
    let Some(src) = query.get(QNAME_OFFSET..QNAME_OFFSET + q.name_len) else { return };
    let positions = std::iter::once(QNAME_OFFSET).chain(owners.iter().map(|&p| usize::from(p)));
    for at in positions {
        if let Some(dst) = out.get_mut(at..at + src.len())
            && dst.eq_ignore_ascii_case(src)
        {
            dst.copy_from_slice(src);
        }
    }
}

/// A query as a stub resolver sends it (RD set, one question of class IN, an OPT record with
/// `edns` as payload size and the DO bit as given, no options), for the crate's tests.
/// The bytes of the (single) question of `query`, from its name to its class; `None` unless
/// the header reads, there is exactly one question and its name is uncompressed.
pub fn question_span(query: &[u8]) -> Option<std::ops::Range<usize>> {
    let header = query.get(..12)?;
    if header[4..6] != [0, 1] {
        return None;
    }
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 || at + len > query.len() {
            return None;
        }
        at += len;
    }
    (at + 4 <= query.len()).then_some(12..at + 4)
}

#[cfg(test)]
pub(crate) fn test_query(id: u16, name: &str, qtype: u16, edns: Option<u16>, dnssec_ok: bool) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    if let Some(size) = edns {
        m.extend_from_slice(&[0, 0, 41]);
        m.extend_from_slice(&size.to_be_bytes());
        m.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        test_query(0xABCD, name, qtype, edns, true) // DO set: it must not matter
    }

    #[test]
    fn reads_plain_queries() {
        let q = parse_query(&query("web.service.gossip.", 33, Some(1232))).expect("accepted");
        assert_eq!(q, WireQuery { id: 0xABCD, name_len: 20, qtype: 33, qclass: 1, edns_payload: Some(1232) });
        let q = parse_query(&query("WeB.gossip", 1, None)).expect("accepted");
        assert_eq!((q.name_len, q.edns_payload), (12, None));
        assert_eq!(parse_query(&query(".", 6, None)).map(|q| q.name_len), Some(1), "root name");
    }

    #[test]
    fn refuses_everything_unusual() {
        let ok = query("web.service.gossip", 1, Some(4096));
        let mut bad = Vec::new();
        for (at, value) in [(2, 0x81), (2, 0x09), (2, 0x03), (5, 2), (7, 1), (9, 1), (11, 2)] {
            let mut m = ok.clone();
            m[at] = value;
            bad.push(m);
        }
        let mut trailing = ok.clone();
        trailing.push(0);
        bad.push(trailing);
        let opt = ok.len() - 11;
        for (at, value) in [(0, 1), (2, 40), (5, 1), (6, 1), (10, 1)] {
            let mut m = ok.clone();
            m[opt + at] = value;
            bad.push(m);
        }
        let mut pointer = query("web.gossip", 1, None);
        pointer[12] = 0xC0;
        bad.push(pointer);
        bad.push(query(&["a"; 130].join("."), 1, None)); // 261 bytes of name
        for m in &bad {
            assert_eq!(parse_query(m), None, "{m:?}");
        }
        for cut in 0..ok.len() {
            assert_eq!(parse_query(&ok[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn patch_copies_id_flags_and_case() {
        let template = query("web.service.gossip", 1, None);
        let mut client = query("WeB.SeRvIcE.gossip", 1, None);
        client[0] = 0x12;
        client[2] = 0x00; // RD clear
        client[3] = 0x10; // CD set
        let q = parse_query(&client).expect("accepted");
        let mut out = Vec::new();
        patch_into(&template, &[], &client, &q, &mut out);
        assert_eq!(&out[..2], &[0x12, 0xCD]);
        assert_eq!((out[2] & 1, out[3] & 0x10), (0, 0x10));
        assert_eq!(&out[12..12 + q.name_len], &client[12..12 + q.name_len]);
        assert_eq!(out.len(), template.len());
    }

    #[test]
    fn total_on_arbitrary_bytes() {
        let mut r = crate::order::Rng::new(5);
        for _ in 0..20_000 {
            let len = r.below(64) as usize;
            let m: Vec<u8> = (0..len).map(|_| r.next_u64() as u8).collect();
            if let Some(q) = parse_query(&m) {
                assert!(QNAME_OFFSET + q.name_len + 4 <= m.len());
            }
        }
    }
}
