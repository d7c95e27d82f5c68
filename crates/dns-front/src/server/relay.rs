//! Forwarding glue of the server: the UDP thread's hand-over of a query to a tokio task, and
//! the counting of a relayed reply ([`crate::forward`] does the relaying itself).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::{Handler, MAX_UDP_PAYLOAD, Protocol, Reply, Snapshot};
use crate::forward::{Forwarder, servfail};
use crate::limits::truncated_reply;
use crate::stats::CountedRcode;

/// What the UDP thread needs to hand a query to the forwarder: the runtime its tasks run on
/// and a clone of the socket to answer from.
pub(super) struct Relay {
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) socket: Arc<std::net::UdpSocket>,
}

impl Relay {
    /// Forwards `query` on a task of its own when a permit is free, else answers SERVFAIL at
    /// once; either way the thread goes back to its socket without waiting.
    pub(super) fn forward(
        &self,
        forwarder: &Arc<Forwarder>,
        handler: &Arc<Handler>,
        query: &[u8],
        src: SocketAddr,
        start: Instant,
    ) {
        let Some(permit) = forwarder.try_permit() else {
            handler.stats.record_forwarded(false);
            if let Some(reply) = servfail(query) {
                handler.stats.record(CountedRcode::ServFail);
                let _ = self.socket.send_to(&reply, src);
                handler.stats.record_latency(start.elapsed());
            }
            return;
        };
        let (forwarder, handler, socket) = (Arc::clone(forwarder), Arc::clone(handler), Arc::clone(&self.socket));
        let query = query.to_vec();
        self.runtime.spawn(async move {
            let _permit = permit;
            // Not in the latency histogram: that time is the upstream's, not ours.
            let Some(mut reply) = handler.relayed(&forwarder, &query, false).await else { return };
            // Our UDP answers never pass MAX_UDP_PAYLOAD, forwarded or not (the amplification
            // bound of docs/SECURITY.md): a larger reply becomes a bare truncated one, and the
            // client retries over TCP.
            if reply.len() > usize::from(MAX_UDP_PAYLOAD) {
                let Some(bare) = truncated_reply(&query) else { return };
                handler.stats.record_truncated();
                reply = bare;
            }
            let _ = socket.send_to(&reply, src);
        });
    }
}

impl Relay {
    /// Hands `query` for datacenter `dc` to the remote hook on a task of its own when a permit
    /// is free, else answers SERVFAIL at once.
    pub(super) fn remote(&self, handler: &Arc<Handler>, dc: String, query: &[u8], src: SocketAddr) {
        let Some(slot) = handler.remote.as_ref() else { return };
        let Ok(permit) = Arc::clone(&slot.permits).try_acquire_owned() else {
            if let Some(reply) = handler.count_remote(None, query) {
                let _ = self.socket.send_to(&reply, src);
            }
            return;
        };
        let (hook, handler, socket) = (Arc::clone(&slot.hook), Arc::clone(handler), Arc::clone(&self.socket));
        let query = query.to_vec();
        self.runtime.spawn(async move {
            let _permit = permit;
            let reply = hook.query(dc, query.clone(), false).await;
            let Some(mut reply) = handler.count_remote(reply, &query) else { return };
            if reply.len() > usize::from(MAX_UDP_PAYLOAD) {
                let Some(bare) = truncated_reply(&query) else { return };
                handler.stats.record_truncated();
                reply = bare;
            }
            let _ = socket.send_to(&reply, src);
        });
    }
}

impl Relay {
    /// Executes the prepared query `name` through the hook on a task of its own (a permit as
    /// for relays), then answers from its results.
    pub(super) fn prepared(&self, handler: &Arc<Handler>, name: String, query: &[u8], src: SocketAddr) {
        let Some(slot) = handler.remote.as_ref() else { return };
        let Ok(permit) = Arc::clone(&slot.permits).try_acquire_owned() else {
            if let Some(reply) = handler.count_remote(None, query) {
                let _ = self.socket.send_to(&reply, src);
            }
            return;
        };
        let (handler, socket) = (Arc::clone(handler), Arc::clone(&self.socket));
        let query = query.to_vec();
        self.runtime.spawn(async move {
            let _permit = permit;
            let Some(reply) = handler.prepared(name, &query, src, Protocol::Udp).await else { return };
            let _ = socket.send_to(&reply, src);
        });
    }
}

impl Handler {
    /// Executes the prepared query `name` through the hook and answers `query` from its
    /// results: NXDOMAIN for a query that does not exist, SERVFAIL if the hook gives up.
    pub(super) async fn prepared(
        &self,
        name: String,
        query: &[u8],
        src: SocketAddr,
        protocol: Protocol,
    ) -> Option<Vec<u8>> {
        let slot = self.remote.as_ref()?;
        let (instances, nodes) = slot.hook.prepared(name).await.unwrap_or_default();
        let snapshot = Snapshot::build(0, instances, nodes);
        match self.reply_with(query, src, protocol, &snapshot, false) {
            Reply::Send(bytes) => Some(bytes),
            _ => self.count_remote(None, query),
        }
    }

    /// Counts the outcome of a relay to another datacenter: its reply, or SERVFAIL when it
    /// could not be reached (`None` only when the question does not read).
    pub(super) fn count_remote(&self, reply: Option<Vec<u8>>, query: &[u8]) -> Option<Vec<u8>> {
        self.stats.record_remote(reply.is_some());
        let reply = reply.filter(|r| r.len() >= 12).or_else(|| servfail(query))?;
        self.stats.record(rcode_of(&reply));
        Some(reply)
    }

    /// Relays `query` and counts the outcome: the upstream's reply, or SERVFAIL when every
    /// upstream failed (`None` only when the question does not read).
    pub(super) async fn relayed(&self, forwarder: &Forwarder, query: &[u8], tcp_client: bool) -> Option<Vec<u8>> {
        let reply = forwarder.forward(query, tcp_client).await;
        self.stats.record_forwarded(reply.is_some());
        let reply = reply.or_else(|| servfail(query))?;
        self.stats.record(rcode_of(&reply));
        Some(reply)
    }
}

/// The counted response code of a reply of at least 12 bytes.
fn rcode_of(reply: &[u8]) -> CountedRcode {
    match reply[3] & 0x0F {
        0 => CountedRcode::NoError,
        3 => CountedRcode::NxDomain,
        5 => CountedRcode::Refused,
        1 => CountedRcode::FormErr,
        4 => CountedRcode::NotImp,
        _ => CountedRcode::ServFail,
    }
}
