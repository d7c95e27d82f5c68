//! The UDP loop: one OS thread of its own, blocking on the socket, answering queries in batches.
//!
//! Contract:
//!
//! * One receive ([`udp_batch::RecvBatch`]: `recvmmsg` on Linux) takes every query queued on
//!   the socket, up to [`UDP_BATCH`], waiting only for the first; each is answered in arrival
//!   order exactly as a query alone would be (rate limit, answer cache, full path, forwarding,
//!   stats); then one send ([`udp_batch::SendBatch`]: `sendmmsg`) hands every answer of the
//!   batch to the kernel, in the same order. Off Linux a batch is one query (`recv_from`,
//!   `send_to`).
//! * A batch reads the catalog snapshot once: every query of a batch is answered from the
//!   snapshot current when the batch arrived.
//! * The latency histogram gets, for each answer, the time from the batch's arrival to the
//!   send of the batch returning: a query waits for the queries before it in its batch, and
//!   that wait is counted. RRL slips (bare truncated replies) and forwarded queries are not
//!   timed, as before.
//! * Memory is fixed at start: [`UDP_BATCH`] receive slots of [`UDP_RECV_BUFFER`] bytes and
//!   one answer buffer per slot (each at most one UDP answer, at most `MAX_UDP_PAYLOAD` bytes
//!   once the client's EDNS size is clamped, or the hickory-encoded error of a query that
//!   does not read).
//! * A datagram without a source we can answer (port 0, or a family the kernel should never
//!   report) is dropped; an error sending one answer is logged at debug level when it is not
//!   transient, and the other answers of the batch still go.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use hickory_server::net::xfer::Protocol;
use tracing::debug;
use udp_batch::{RecvBatch, SendBatch};

use super::relay::Relay;
use super::{Handler, MAX_UDP_PAYLOAD, Reply, UDP_POLL, UDP_RECV_BUFFER, transient};
use crate::cache::{AnswerCache, CacheLimits, Outcome};
use crate::limits::{Rrl, Verdict, truncated_reply};
use crate::order::Rng;
use crate::resolve::QType;
use crate::snapshot::Snapshot;
use crate::wire::parse_query;

/// Most queries taken by one receive and answered by one send.
pub(super) const UDP_BATCH: usize = 32;

/// Serves UDP until `stop` is set (seen within [`UDP_POLL`]): `None` then, or the first
/// socket error that is not transient.
pub(super) fn serve_udp(
    socket: &std::net::UdpSocket,
    handler: &Arc<Handler>,
    limits: CacheLimits,
    rrl: Option<Rrl>,
    relay: Option<Relay>,
    stop: &AtomicBool,
) -> Option<io::Error> {
    if let Err(error) = socket.set_read_timeout(Some(UDP_POLL)) {
        return Some(error);
    }
    let mut batch = RecvBatch::new(UDP_BATCH, UDP_RECV_BUFFER);
    let mut sender = SendBatch::new(UDP_BATCH);
    let mut outs: Vec<Vec<u8>> =
        (0..batch.capacity()).map(|_| Vec::with_capacity(usize::from(MAX_UDP_PAYLOAD))).collect();
    // The answers of the current batch: slot in `outs`, destination, whether timed.
    let mut replies: Vec<(usize, SocketAddr, bool)> = Vec::with_capacity(batch.capacity());
    let mut path = UdpPath {
        handler,
        limits,
        cache: AnswerCache::new(limits),
        picks: Rng::new(handler.seed.rotate_left(17) ^ 0x6A09_E667_F3BC_C908),
        rrl,
        relay,
    };
    while !stop.load(Ordering::Relaxed) {
        let n = match batch.recv(socket) {
            Ok(n) => n,
            Err(error) if transient(&error) || error.kind() == io::ErrorKind::TimedOut => continue,
            Err(error) => return Some(error),
        };
        let start = Instant::now();
        let snapshot = handler.snapshot.load_full();
        replies.clear();
        for (i, out) in outs.iter_mut().enumerate().take(n) {
            let Some((query, Some(src))) = batch.get(i) else { continue };
            if src.port() == 0 {
                continue; // nowhere to answer
            }
            match path.answer(query, src, start, &snapshot, out) {
                Answered::Timed => replies.push((i, src, true)),
                Answered::Untimed => replies.push((i, src, false)),
                Answered::Nothing => {}
            }
        }
        if replies.is_empty() {
            continue;
        }
        let datagrams = replies.iter().filter_map(|&(i, dst, _)| Some((outs.get(i)?.as_slice(), dst)));
        sender.send(socket, datagrams, |k, error| {
            if !transient(&error) {
                let dst = replies.get(k).map(|r| r.1);
                debug!(%error, ?dst, "failed to send DNS response");
            }
        });
        let elapsed = start.elapsed();
        for _ in replies.iter().filter(|r| r.2) {
            handler.stats.record_latency(elapsed);
        }
    }
    None
}

/// What became of one query of a batch.
enum Answered {
    /// Its answer is in its buffer; count its latency.
    Timed,
    /// Its answer (an RRL slip) is in its buffer; not timed.
    Untimed,
    /// Nothing to send from this thread (dropped, not answerable, or forwarded).
    Nothing,
}

/// The per-thread state of the UDP path.
struct UdpPath<'a> {
    handler: &'a Arc<Handler>,
    limits: CacheLimits,
    cache: AnswerCache,
    picks: Rng,
    rrl: Option<Rrl>,
    relay: Option<Relay>,
}

impl UdpPath<'_> {
    /// Answers one query into `out`. The common query shape ([`parse_query`]) is answered
    /// from the cache; everything else, and every miss, takes the full path
    /// ([`Handler::reply`]); a query for the upstreams is handed to the relay.
    fn answer(
        &mut self,
        query: &[u8],
        src: SocketAddr,
        now: Instant,
        snapshot: &Arc<Snapshot>,
        out: &mut Vec<u8>,
    ) -> Answered {
        let handler = self.handler;
        if let Some(rrl) = self.rrl.as_mut() {
            match rrl_verdict(rrl, now, src, query) {
                Verdict::Send => {}
                Verdict::Drop => {
                    handler.stats.record_rrl(false);
                    return Answered::Nothing;
                }
                Verdict::Slip => {
                    handler.stats.record_rrl(true);
                    return match truncated_reply(query) {
                        Some(reply) => {
                            *out = reply;
                            Answered::Untimed
                        }
                        None => Answered::Nothing,
                    };
                }
            }
        }
        let fast = parse_query(query).filter(|_| self.limits.entries > 0);
        let mut forward = false;
        let mut remote = None;
        let mut prepared = None;
        let sent = match fast {
            Some(q) => {
                let full = |canonical: &[u8]| match handler.reply(canonical, src, Protocol::Udp, snapshot) {
                    Reply::Send(bytes) => Some(bytes),
                    Reply::Forward => {
                        forward = true;
                        None
                    }
                    Reply::Remote(dc) => {
                        remote = Some(dc);
                        None
                    }
                    Reply::Prepared(name) => {
                        prepared = Some(name);
                        None
                    }
                    Reply::Nothing => None,
                };
                match self.cache.answer(query, &q, snapshot, self.picks.next_u64(), out, full) {
                    Outcome::Hit { rcode, truncated } => {
                        handler.stats.record_qtype(QType::from_u16(q.qtype));
                        handler.stats.record(rcode);
                        if truncated {
                            handler.stats.record_truncated();
                        }
                        true
                    }
                    Outcome::Miss => true,
                    Outcome::NoAnswer => false,
                }
            }
            None => match handler.reply(query, src, Protocol::Udp, snapshot) {
                Reply::Send(answer) => {
                    *out = answer;
                    true
                }
                Reply::Forward => {
                    forward = true;
                    false
                }
                Reply::Remote(dc) => {
                    remote = Some(dc);
                    false
                }
                Reply::Prepared(name) => {
                    prepared = Some(name);
                    false
                }
                Reply::Nothing => false,
            },
        };
        if let (Some(dc), Some(relay)) = (remote, self.relay.as_ref()) {
            relay.remote(handler, dc, query, src);
            return Answered::Nothing;
        }
        if let (Some(name), Some(relay)) = (prepared, self.relay.as_ref()) {
            relay.prepared(handler, name, query, src);
            return Answered::Nothing;
        }
        if forward && let (Some(relay), Some(forwarder)) = (self.relay.as_ref(), handler.forward.as_ref()) {
            relay.forward(forwarder, handler, query, src, now);
            return Answered::Nothing;
        }
        if sent { Answered::Timed } else { Answered::Nothing }
    }
}

/// The rate limiter's verdict on the answer to `query` (a query whose question does not read
/// is keyed by its source alone).
fn rrl_verdict(rrl: &mut Rrl, now: Instant, src: SocketAddr, query: &[u8]) -> Verdict {
    let mut at = crate::wire::QNAME_OFFSET;
    while let Some(&len) = query.get(at) {
        at += 1 + usize::from(len);
        if len == 0 || len > 63 {
            break;
        }
    }
    let name = query.get(crate::wire::QNAME_OFFSET..at.min(query.len())).unwrap_or_default();
    let qtype = query.get(at..at + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    rrl.check(now, src.ip(), name, qtype)
}
