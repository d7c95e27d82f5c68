//! Application queries (wire version 6 and later; docs/PROTOCOL.md 3.9): opaque request bytes
//! sent to one member over its session and answered by the receiver's application in up to
//! [`MAX_ANSWER_PARTS`] parts. The gossip layer only carries them: it checks sizes and that
//! the peer's session speaks version 6, and hands what arrives to the application as
//! [`Event::Query`] and [`Event::Answer`]. gossipd forwards DNS and HTTP reads to another
//! datacenter this way, over the WAN pool.

use std::time::Instant;

use super::{Event, Gossip};
use crate::message::{MAX_ANSWER_PARTS, MAX_APP_BODY, Message};
use crate::types::NodeId;

/// Why a query or answer was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// The destination is not a known, live member.
    #[error("{0} is not a live member")]
    NotLive(NodeId),
    /// The destination advertises no wire version that carries queries.
    #[error("{node} speaks wire versions {versions}, and queries need {min} or later")]
    TooOld {
        /// The member.
        node: NodeId,
        /// What it advertises.
        versions: String,
        /// The lowest version with queries.
        min: u8,
    },
    /// The body does not fit.
    #[error("{size} bytes do not fit a query or answer (at most {max})")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
}

impl Gossip {
    fn app_destination(&self, to: &NodeId) -> Result<(), AppError> {
        if *to == self.local.id || !self.peers.contains(to) {
            return Err(AppError::NotLive(*to));
        }
        match self.versions_of(to) {
            Some(r) if r.max() >= crate::version::QUERY_MIN => Ok(()),
            r => Err(AppError::TooOld {
                node: *to,
                versions: r.map_or_else(|| "unknown".into(), |r| r.to_string()),
                min: crate::version::QUERY_MIN,
            }),
        }
    }

    /// Sends the query `body` (at most [`MAX_APP_BODY`] bytes) to the live member `to`; its
    /// answer comes back as [`Event::Answer`] parts with the same `id`. Nothing is retried:
    /// the caller owns the deadline. A session at version 5 (the peer negotiated below 6 after
    /// all) drops the query silently, counted in the secure layer's transcoding drops.
    pub fn send_query(&mut self, now: Instant, to: &NodeId, id: u64, body: &[u8]) -> Result<(), AppError> {
        if body.len() > MAX_APP_BODY {
            return Err(AppError::TooLarge { size: body.len(), max: MAX_APP_BODY });
        }
        self.app_destination(to)?;
        self.last_now = self.last_now.max(now);
        self.stats.queries_sent += 1;
        let msg = Message::Query { sender: self.local.id, id, body: body.to_vec() };
        self.send_to_node(now, to, &msg);
        Ok(())
    }

    /// Sends `body` to `to` as the answer to its query `id`, in parts of at most
    /// [`MAX_APP_BODY`] bytes (an empty body is one empty part); at most
    /// [`MAX_ANSWER_PARTS`] parts.
    pub fn send_answer(&mut self, now: Instant, to: &NodeId, id: u64, body: &[u8]) -> Result<(), AppError> {
        let max = MAX_APP_BODY * usize::from(MAX_ANSWER_PARTS);
        if body.len() > max {
            return Err(AppError::TooLarge { size: body.len(), max });
        }
        self.app_destination(to)?;
        self.last_now = self.last_now.max(now);
        let chunks: Vec<&[u8]> = if body.is_empty() { vec![&[][..]] } else { body.chunks(MAX_APP_BODY).collect() };
        let parts = chunks.len() as u8;
        for (part, chunk) in chunks.into_iter().enumerate() {
            let msg = Message::Answer { sender: self.local.id, id, part: part as u8, parts, body: chunk.to_vec() };
            self.send_to_node(now, to, &msg);
        }
        self.stats.answers_sent += 1;
        Ok(())
    }

    /// A query or answer part arrived from `from` (authenticated): handed to the application
    /// if `from` is a member this node knows (anything else is dropped and counted).
    pub(super) fn on_app(&mut self, from: NodeId, msg: Message) {
        if self.table.get(&from).is_none() || from == self.local.id {
            self.stats.dropped_app += 1;
            return;
        }
        match msg {
            Message::Query { id, body, .. } => {
                self.stats.queries_received += 1;
                self.events.push_back(Event::Query { from, id, body });
            }
            Message::Answer { id, part, parts, body, .. } => {
                self.events.push_back(Event::Answer { from, id, part, parts, body })
            }
            _ => {}
        }
    }
}
