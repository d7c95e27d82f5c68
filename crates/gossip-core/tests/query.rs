//! Application queries and answers (wire version 6, docs/PROTOCOL.md 3.9): carried between
//! members whose sessions speak 6, refused before sending to one that does not, bounded in
//! size, and never a reason to ban (a version 5 peer is simply never sent one).

mod common;

use std::time::Duration;

use common::Net;
use gossip_core::message::{MAX_ANSWER_PARTS, MAX_APP_BODY, Message, transcode};
use gossip_core::version::{QUERY_MIN, VersionRange};
use gossip_core::{AppError, Event, NodeId};

fn speaks_queries() -> VersionRange {
    VersionRange::supported(5, QUERY_MIN).expect("this build speaks 5..=6")
}

fn queries(net: &Net, at: usize) -> Vec<(NodeId, u64, Vec<u8>)> {
    net.events
        .iter()
        .filter(|(i, ..)| *i == at)
        .filter_map(|(_, e, _)| match e {
            Event::Query { from, id, body } => Some((*from, *id, body.clone())),
            _ => None,
        })
        .collect()
}

fn answer_parts(net: &Net, at: usize, id: u64) -> Vec<(u8, u8, Vec<u8>)> {
    let mut parts: Vec<(u8, u8, Vec<u8>)> = net
        .events
        .iter()
        .filter(|(i, ..)| *i == at)
        .filter_map(|(_, e, _)| match e {
            Event::Answer { id: got, part, parts, body, .. } if *got == id => Some((*part, *parts, body.clone())),
            _ => None,
        })
        .collect();
    parts.sort();
    parts
}

fn no_bans(net: &Net) {
    let bans: Vec<String> = net
        .events
        .iter()
        .filter_map(|(i, e, _)| match e {
            Event::Banned { reason, .. } => Some(format!("node {i}: {reason}")),
            _ => None,
        })
        .collect();
    assert!(bans.is_empty(), "bans: {bans:?}");
}

#[test]
fn a_query_and_its_answer_in_several_parts_cross_a_version_6_session() {
    let mut net = Net::cold_with(3, 31, 0.0, |_, s| s.versions = speaks_queries());
    net.run_for(Duration::from_secs(20));
    assert!(net.converged());
    let (a, b) = (net.nodes[0].local().id, net.nodes[1].local().id);
    let now = net.now;
    net.nodes[0].send_query(now, &b, 7, b"web.service.dc2.gossip?").expect("query sent");
    net.flush(0);
    net.run_for(Duration::from_millis(50));
    assert_eq!(queries(&net, 1), vec![(a, 7, b"web.service.dc2.gossip?".to_vec())]);

    // An answer of 2.5 parts arrives as three numbered parts that join back to it.
    let body: Vec<u8> = (0..MAX_APP_BODY * 5 / 2).map(|i| (i % 251) as u8).collect();
    let now = net.now;
    net.nodes[1].send_answer(now, &a, 7, &body).expect("answer sent");
    net.flush(1);
    net.run_for(Duration::from_millis(50));
    let parts = answer_parts(&net, 0, 7);
    assert_eq!(parts.iter().map(|(p, n, _)| (*p, *n)).collect::<Vec<_>>(), vec![(0, 3), (1, 3), (2, 3)]);
    assert_eq!(parts.into_iter().flat_map(|(_, _, b)| b).collect::<Vec<u8>>(), body);

    // An empty answer is one empty part.
    let now = net.now;
    net.nodes[1].send_answer(now, &a, 8, &[]).expect("empty answer sent");
    net.flush(1);
    net.run_for(Duration::from_millis(50));
    assert_eq!(answer_parts(&net, 0, 8), vec![(0, 1, Vec::new())]);
    assert_eq!(net.nodes[0].stats().queries_sent, 1);
    assert_eq!(net.nodes[1].stats().queries_received, 1);
    assert_eq!(net.nodes[1].stats().answers_sent, 2);
    no_bans(&net);
}

#[test]
fn a_member_that_speaks_only_5_is_never_sent_a_query() {
    // Nodes 0 and 1 speak 5..=6 (sessions between them at 6), node 2 only 5.
    let only_5 = VersionRange::supported(5, 5).expect("5");
    let mut net = Net::cold_with(3, 32, 0.0, |i, s| s.versions = if i < 2 { speaks_queries() } else { only_5 });
    net.run_for(Duration::from_secs(20));
    assert!(net.converged());
    let (old, new) = (net.nodes[2].local().id, net.nodes[1].local().id);
    let now = net.now;
    let refused = net.nodes[0].send_query(now, &old, 1, b"q");
    assert!(matches!(refused, Err(AppError::TooOld { min: 6, .. })), "{refused:?}");
    net.nodes[0].send_query(now, &new, 2, b"q").expect("a 5..=6 member takes queries");
    net.flush(0);
    net.run_for(Duration::from_millis(50));
    assert_eq!(queries(&net, 1).len(), 1);
    assert!(queries(&net, 2).is_empty());
    no_bans(&net);
}

#[test]
fn sizes_and_destinations_are_checked_before_anything_is_sent() {
    let mut net = Net::cold_with(2, 33, 0.0, |_, s| s.versions = speaks_queries());
    net.run_for(Duration::from_secs(20));
    let (me, peer) = (net.nodes[0].local().id, net.nodes[1].local().id);
    let now = net.now;
    let g = &mut net.nodes[0];
    assert!(matches!(g.send_query(now, &peer, 1, &vec![0; MAX_APP_BODY + 1]), Err(AppError::TooLarge { .. })));
    let too_big = vec![0; MAX_APP_BODY * usize::from(MAX_ANSWER_PARTS) + 1];
    assert!(matches!(g.send_answer(now, &peer, 1, &too_big), Err(AppError::TooLarge { .. })));
    assert_eq!(g.send_query(now, &me, 1, b"q"), Err(AppError::NotLive(me)), "not to itself");
    let stranger = NodeId([9; 16]);
    assert_eq!(g.send_query(now, &stranger, 1, b"q"), Err(AppError::NotLive(stranger)));
    assert!(g.poll_transmit().is_none(), "nothing was sent");
}

#[test]
fn queries_do_not_exist_at_version_5() {
    let q = Message::Query { sender: NodeId([1; 16]), id: 3, body: b"abc".to_vec() };
    let bytes = q.encode_for(6);
    assert_eq!(Message::decode_for(6, &bytes), Ok(q.clone()));
    assert!(Message::decode_for(5, &bytes).is_err(), "kind 9 at version 5");
    assert_eq!(transcode(&bytes, 6, 5), None, "a query queued for a session that turned out 5 is dropped");
    let a = Message::Answer { sender: NodeId([1; 16]), id: 3, part: 1, parts: 2, body: vec![7; 10] };
    assert_eq!(Message::decode_for(6, &a.encode_for(6)), Ok(a));
    for (part, parts) in [(0u8, 0u8), (2, 2), (0, MAX_ANSWER_PARTS + 1)] {
        let bad = Message::Answer { sender: NodeId([1; 16]), id: 3, part, parts, body: vec![] }.encode_for(6);
        assert!(Message::decode_for(6, &bad).is_err(), "part {part} of {parts}");
    }
    // A length beyond what the datagram holds is refused, not allocated.
    let mut lying = Message::Query { sender: NodeId([1; 16]), id: 3, body: vec![] }.encode_for(6);
    lying.pop();
    lying.extend_from_slice(&[0xff, 0x07]); // varint 1023 with no bytes behind it
    assert!(Message::decode_for(6, &lying).is_err());
}

#[test]
fn application_records_replicate_and_their_deletion_too() {
    use gossip_core::Value;
    use gossip_core::message::{APP_PREFIX, MAX_APP_RECORD};
    let mut net = Net::cold(3, 34, 0.0);
    net.run_for(Duration::from_secs(20));
    let owner = net.nodes[0].local().id;
    let now = net.now;
    let g = &mut net.nodes[0];
    assert!(g.put_app_record(now, "query/1", Some(vec![0; MAX_APP_RECORD + 1])).is_err(), "too large");
    assert!(g.put_app_record(now, "", Some(b"x".to_vec())).is_err(), "no name");
    assert!(!g.put_app_record(now, "query/9", None).expect("deleting nothing"), "nothing to delete");
    g.put_app_record(now, "query/1", Some(br#"{"Name":"web"}"#.to_vec())).expect("written");
    net.flush(0);
    net.run_for(Duration::from_secs(5));
    let key = format!("{APP_PREFIX}query/1");
    let held = |net: &Net, i: usize| {
        net.nodes[i].node(&owner).and_then(|n| n.entries.get(key.as_str())).map(|e| e.value.clone())
    };
    assert_eq!(held(&net, 2), Some(Value::App(br#"{"Name":"web"}"#.to_vec())));
    let now = net.now;
    assert!(net.nodes[0].put_app_record(now, "query/1", None).expect("deleted"));
    net.flush(0);
    net.run_for(Duration::from_secs(5));
    assert_eq!(held(&net, 2), Some(Value::Tombstone));
    no_bans(&net);
}
