//! Reads of other datacenters through the LAN (docs/ARCHITECTURE.md, "Several datacenters"):
//! an agent outside the WAN pool sends them, as [`OP_RELAY`] queries, to a live LAN member that
//! is in it (its `app/wan` record says so), which forwards the inner read through its WAN pool
//! and answers with what came back (empty: no path). Each relaying member gets
//! [`RELAY_ATTEMPT`]; a second one is tried when the first does not answer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gossip_core::{Liveness, NodeId, NodeStatus, Value};

use super::{Command, Driver};
use crate::wan::{Forward, OP_RELAY, Pending, RELAY_ATTEMPT};

/// The application record a LAN member in the WAN pool writes (its WAN address).
pub const WAN_RECORD: &str = "wan";

/// Relayed reads this agent serves per second, at most.
const MAX_RELAYED_PER_SEC: u32 = 2000;

/// The relay's state in the driver.
#[derive(Debug, Default)]
pub(super) struct Relays {
    /// Reads sent to a relaying member (the body is the relay's: [`relay_body`]).
    pending: HashMap<u64, Pending>,
    next_id: u64,
    window: Option<(Instant, u32)>,
}

impl Relays {
    /// When the earliest pending relay times out.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.sent + RELAY_ATTEMPT).min()
    }
}

fn relay_body(dc: &str, inner: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(inner.len() + dc.len() + 2);
    b.push(OP_RELAY);
    b.push(dc.len() as u8);
    b.extend_from_slice(dc.as_bytes());
    b.extend_from_slice(inner);
    b
}

/// `[3][u8 len][dc][inner]` → (dc, inner).
fn parse_relay(body: &[u8]) -> Option<(String, Vec<u8>)> {
    let (&op, rest) = body.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    if op != OP_RELAY || len == 0 || rest.len() < len {
        return None;
    }
    let dc = crate::wan::valid_dc(std::str::from_utf8(&rest[..len]).ok()?)?;
    Some((dc, rest[len..].to_vec()))
}

impl Driver {
    /// Live LAN members in the WAN pool, not yet tried, by node id.
    fn relay_members(&self, tried: &[NodeId]) -> Vec<NodeId> {
        let key = format!("{}{WAN_RECORD}", gossip_core::APP_PREFIX);
        let me = self.gossip.local().id;
        let mut out: Vec<NodeId> = self
            .gossip
            .nodes()
            .filter(|n| n.info.id != me && !tried.contains(&n.info.id) && n.status() == NodeStatus::Alive)
            .filter(|n| self.gossip.liveness(&n.info.id) == Liveness::Alive)
            .filter(|n| n.entries.get(key.as_str()).is_some_and(|e| matches!(e.value, Value::App(_))))
            .map(|n| n.info.id)
            .collect();
        out.sort();
        out
    }

    /// A read from the API or DNS to relay.
    pub(super) fn relay_start(&mut self, now: Instant, f: Forward) {
        if self.relays.pending.len() >= crate::wan::MAX_PENDING || f.dc.len() > 63 {
            let _ = f.reply.send(Err(crate::wan::no_path(&f.dc)));
            return;
        }
        self.relays.next_id += 1;
        let id = self.relays.next_id;
        let body = relay_body(&f.dc, &f.body);
        self.relay_attempt(now, id, Pending::new(Some(f.reply), f.dc, body, now));
    }

    fn relay_attempt(&mut self, now: Instant, id: u64, mut r: Pending) {
        while r.tried.len() < 2 {
            let Some(member) = self.relay_members(&r.tried).into_iter().next() else { break };
            r.tried.push(member);
            if self.gossip.send_query(now, &member, id, &r.body).is_ok() {
                r.member = member;
                r.sent = now;
                r.parts.clear();
                self.relays.pending.insert(id, r);
                return;
            }
        }
        let why = if r.tried.is_empty() {
            "no live LAN member is in a WAN pool (start one with --wan-bind, or this one)"
        } else {
            "the LAN members in a WAN pool did not answer in time"
        };
        tracing::debug!(dc = %r.dc, tried = r.tried.len(), why, "a relayed read failed");
        if let Some(reply) = r.reply {
            let _ = reply.send(Err(format!("{}: {why}", crate::wan::no_path(&r.dc))));
        }
    }

    /// Moves relays that timed out to the next member.
    pub(super) fn relay_expire(&mut self, now: Instant) {
        let late: Vec<u64> =
            self.relays.pending.iter().filter(|(_, r)| now >= r.sent + RELAY_ATTEMPT).map(|(id, _)| *id).collect();
        for id in late {
            if let Some(r) = self.relays.pending.remove(&id) {
                self.relay_attempt(now, id, r);
            }
        }
    }

    /// A part of a relay's answer.
    pub(super) fn relay_answer(&mut self, from: NodeId, id: u64, part: u8, parts: u8, body: Vec<u8>) {
        let Some(r) = self.relays.pending.get_mut(&id) else { return };
        if r.member != from || !crate::wan::add_part(&mut r.parts, part, parts, body) {
            return;
        }
        let Some(r) = self.relays.pending.remove(&id) else { return };
        let answer: Vec<u8> = r.parts.into_iter().flatten().flatten().collect();
        if let Some(reply) = r.reply {
            let _ = reply.send(if answer.is_empty() { Err(crate::wan::no_path(&r.dc)) } else { Ok(answer) });
        }
    }

    /// A LAN member asks this agent to relay a read through its WAN pool.
    pub(super) fn relay_serve(&mut self, now: Instant, from: NodeId, id: u64, body: Vec<u8>) {
        let (start, count) = self.relays.window.get_or_insert((now, 0));
        if now >= *start + Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        *count += 1;
        let over = *count > MAX_RELAYED_PER_SEC;
        let (Some(wan), Some((dc, inner)), false) = (self.wan.clone(), parse_relay(&body), over) else {
            // Not in the WAN pool (any more), malformed, or over the rate: no path.
            if let Err(e) = self.gossip.send_answer(now, &from, id, &[]) {
                tracing::debug!(node = %from, error = %e, "relay refusal not sent");
            }
            return;
        };
        if inner == [crate::wan::OP_DATACENTERS] {
            let dcs = wan.view.load().datacenters(&wan.datacenter);
            if let Err(e) = self.gossip.send_answer(now, &from, id, &crate::wan::encode_datacenters(&dcs)) {
                tracing::debug!(node = %from, error = %e, "datacenters not sent");
            }
            return;
        }
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let answer = wan.forward(&dc, inner).await.unwrap_or_default();
            let _ = tx.send(Command::AppAnswer { to: from, id, body: answer }).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_bodies_round_trip_and_bad_ones_do_not_parse() {
        let b = relay_body("dc2", b"\x01\x00query");
        assert_eq!(parse_relay(&b), Some(("dc2".into(), b"\x01\x00query".to_vec())));
        assert_eq!(parse_relay(&[OP_RELAY, 5, b'd', b'c']), None, "a length beyond the bytes");
        assert_eq!(parse_relay(&[OP_RELAY, 0]), None, "no datacenter");
        assert_eq!(parse_relay(&relay_body("d.c", b"")), None, "not a label");
        assert_eq!(parse_relay(&[1, 3, b'd', b'c', b'2']), None, "another operation");
        assert_eq!(parse_relay(&relay_body("DC2", b"x")), Some(("dc2".into(), b"x".to_vec())), "any case");
        use crate::wan::valid_dc;
        assert_eq!(valid_dc("Eu-West-1"), Some("eu-west-1".into()));
        for bad in ["", "a\"b", "a b", "d.c", &"x".repeat(64), "dc\u{e9}"] {
            assert_eq!(valid_dc(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn datacenter_orders_round_trip_and_bad_lines_are_skipped() {
        use crate::wan::{Datacenter, decode_datacenters, encode_datacenters};
        let dcs = vec![
            Datacenter { name: "dc1".into(), rtt: Some(Duration::ZERO), reachable: 1 },
            Datacenter { name: "dc2".into(), rtt: Some(Duration::from_micros(1500)), reachable: 2 },
            Datacenter { name: "dc3".into(), rtt: None, reachable: 0 },
        ];
        assert_eq!(decode_datacenters(&encode_datacenters(&dcs)), dcs);
        let hostile = b"dc2 x 1\nd.c 5 1\n 5 1\ndc4 5\ndc5 5 1 extra\n\xff\xfe 1 1\nok 7 3\n";
        let got = decode_datacenters(hostile);
        assert_eq!(got, vec![Datacenter { name: "ok".into(), rtt: Some(Duration::from_micros(7)), reachable: 3 }]);
        let many = "d 1 1\n".repeat(5000);
        assert_eq!(decode_datacenters(many.as_bytes()).len(), 1024, "bounded");
    }
}
