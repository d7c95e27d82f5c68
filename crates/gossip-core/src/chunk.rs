//! Splitting messages so that every datagram fits the payload budget.

use crate::message::{self, Delta, Entry, HEAD_LEN, Head, Message, Range, Want};
use crate::types::{NodeId, NodeInfo};

/// Splits one owner's entries `(from, to]` into deltas of at most `budget` encoded bytes each.
/// Each chunk covers a contiguous version range, so a receiver can apply them in order. An
/// entry too large for any datagram is skipped (registration refuses such entries up front).
///
/// The owner's certificate rides only in the first chunk of a delta from version 0 (the one a
/// replica that does not know the owner applies first); every other chunk carries its digest.
/// When the first entry does not fit beside the certificate, the certificate gets a chunk of
/// its own.
///
/// `head`, the owner's signed head at `to` if the sender holds it, rides in the last chunk only
/// (the one that ends at `to`): a receiver takes it once it holds every entry up to `to`. When
/// it does not fit beside the last chunk's entries it gets a chunk of its own, `(to, to]`.
pub fn split_delta(
    info: &NodeInfo,
    from: u64,
    to: u64,
    entries: &[&Entry],
    ttl: u8,
    budget: usize,
    head: Option<&Head>,
) -> Vec<Delta> {
    let mut out = Vec::new();
    let stripped = NodeInfo { cert: None, ..info.clone() };
    let empty = Delta { ttl, node: stripped, from_version: from, to_version: to, entries: Vec::new(), head: None };
    let overhead = message::delta_overhead(&empty);
    let mut cur = empty.clone();
    let mut size = overhead;
    if from == 0 && info.cert.is_some() {
        cur.node = info.clone();
        size = message::delta_overhead(&cur);
    }
    for e in entries {
        let len = message::entry_len(e);
        if overhead + len > budget {
            continue;
        }
        if size + len > budget {
            let last = cur.entries.last().map_or(cur.from_version, |x| x.version);
            cur.to_version = last;
            let next_from = last;
            out.push(std::mem::replace(&mut cur, Delta { from_version: next_from, ..empty.clone() }));
            size = overhead;
        }
        cur.entries.push((*e).clone());
        size += len;
    }
    cur.to_version = to;
    if let Some(h) = head {
        if size + HEAD_LEN > budget {
            out.push(cur);
            cur = Delta { from_version: to, ..empty.clone() };
        }
        cur.head = Some(*h);
    }
    out.push(cur);
    out
}

/// Packs "ask again" notices into as few `More` messages as fit `budget` bytes each.
pub fn pack_more(sender: NodeId, owners: Vec<Want>, budget: usize) -> Vec<Message> {
    pack_wants(sender, owners, budget)
        .into_iter()
        .map(|m| match m {
            Message::Request { sender, wants } => Message::More { sender, owners: wants },
            other => other,
        })
        .collect()
}

/// Packs ranges into as few `Reconcile` messages as fit `budget` bytes each. An empty list
/// still yields one (empty) message when `initial_reply` is set: the acknowledgement.
pub fn pack_ranges(sender: NodeId, ranges: Vec<Range>, budget: usize) -> Vec<Message> {
    let header = 1 + 16 + 1 + 2;
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut size = header;
    for r in ranges {
        let len = message::range_len(&r);
        if size + len > budget && !cur.is_empty() {
            out.push(Message::Reconcile { sender, initial: false, ranges: std::mem::take(&mut cur) });
            size = header;
        }
        size += len;
        cur.push(r);
    }
    if !cur.is_empty() {
        out.push(Message::Reconcile { sender, initial: false, ranges: cur });
    }
    out
}

/// Packs wants into `Request` messages of at most `budget` bytes.
pub fn pack_wants(sender: NodeId, wants: Vec<Want>, budget: usize) -> Vec<Message> {
    let header = 1 + 16 + 2;
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut size = header;
    for w in wants {
        let len = message::want_len(&w);
        if size + len > budget && !cur.is_empty() {
            out.push(Message::Request { sender, wants: std::mem::take(&mut cur) });
            size = header;
        }
        size += len;
        cur.push(w);
    }
    if !cur.is_empty() {
        out.push(Message::Request { sender, wants: cur });
    }
    out
}
