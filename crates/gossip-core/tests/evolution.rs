//! Rolling upgrades (docs/PROTOCOL.md sections 2, 3.2 and 5.2): agents of two builds in one
//! cluster. The "newer build" is a node configured to speak the synthetic wire version 8 of the
//! `testing` feature (version 4's format followed by one byte, so that a message encoded at the
//! wrong version does not decode and would ban its sender) and writing an entry of a kind this
//! build does not know (value tag 200).

mod common;

use std::time::Duration;

use common::{Net, addr};
use gossip_core::message::{Delta, Entry, Message, PROTO_KEY, Value, decode_value};
use gossip_core::secure::keys::Identity;
use gossip_core::version::VersionRange;
use gossip_core::wire::{Reader, Writer};
use gossip_core::{Config, Event, Gossip, NodeInfo};

const NEW_KIND: u8 = 200;

fn v56() -> VersionRange {
    VersionRange::supported(5, 8).expect("the testing feature speaks 5..=8")
}

fn bans(net: &Net) -> Vec<String> {
    net.events
        .iter()
        .filter_map(|(i, e, _)| match e {
            Event::Banned { reason, .. } => Some(format!("node {i}: {reason}")),
            _ => None,
        })
        .collect()
}

#[test]
fn two_builds_converge_in_one_cluster_with_no_bans() {
    // Nodes 0-2 run an older build (5..=5), nodes 3 and 4 a newer one (5..=8); node 4 writes
    // an entry of a kind only the newer build knows.
    let old = VersionRange::supported(5, 5).expect("5");
    let mut net = Net::cold_with(5, 12, 0.0, |i, s| s.versions = if i >= 3 { v56() } else { old });
    let body = b"a record of a kind protocol 5 does not know".to_vec();
    let start = net.now;
    net.nodes[4].write_unchecked(start, "x/new", Value::Unknown { tag: NEW_KIND, bytes: body.clone() });
    net.flush(4);
    net.run_for(Duration::from_secs(30));
    assert!(bans(&net).is_empty(), "bans: {:?}", bans(&net));
    assert!(net.converged(), "the two builds did not converge");

    // Each pair speaks the highest version both speak.
    let now = net.now;
    assert_eq!(net.nodes[3].secure().session_version(now, addr(4)), Some(8), "5..=8 with 5..=8");
    assert_eq!(net.nodes[4].secure().session_version(now, addr(3)), Some(8));
    assert_eq!(net.nodes[0].secure().session_version(now, addr(4)), Some(5), "5..=5 with 5..=8");
    assert_eq!(net.nodes[4].secure().session_version(now, addr(0)), Some(5));
    // Every member advertises its range in its signed `@proto` entry.
    let new_id = net.nodes[4].local().id;
    assert_eq!(net.nodes[1].versions_of(&new_id), Some(v56()));
    assert_eq!(net.nodes[4].versions_of(&net.nodes[1].local().id), Some(old));

    // The old build kept the new kind as the owner's bytes, and counted it.
    let held = |g: &Gossip| g.node(&new_id).and_then(|n| n.entries.get("x/new")).cloned();
    for i in 0..3 {
        let e = held(&net.nodes[i]).unwrap_or_else(|| panic!("node {i} dropped the new kind"));
        assert_eq!(e.value, Value::Unknown { tag: NEW_KIND, bytes: body.clone() });
        assert!(net.nodes[i].stats().unknown_entries > 0, "node {i} did not count it");
    }

    // The newer build leaves; a newcomer of this build joins through node 0 and learns the
    // new kind from the old build only, signature intact.
    net.down[3] = true;
    net.down[4] = true;
    let cfg = Config { seeds: vec![addr(0)], rng_seed: 99, ..Config::default() };
    let sec = net.secure_now(net.identity_seed(5), 5);
    let g = Gossip::new(cfg, sec, "node-5".into(), addr(5), 1, net.now);
    let newcomer = net.add(g);
    net.flush(newcomer);
    net.run_for(Duration::from_secs(20));
    assert!(bans(&net).is_empty(), "bans: {:?}", bans(&net));
    let e = held(&net.nodes[newcomer]).expect("the newcomer never got the new kind");
    assert_eq!(e.value, Value::Unknown { tag: NEW_KIND, bytes: body });
    let owner = net.nodes[newcomer].node(&new_id).expect("owner held").info.clone();
    assert!(e.verify(&owner), "the relayed bytes no longer verify");
    let live: Vec<usize> = net.live();
    let fp = net.nodes[live[0]].root_fingerprint();
    assert!(live.iter().all(|&i| net.nodes[i].root_fingerprint() == fp), "not converged after relay");
}

#[test]
fn peers_with_no_common_version_refuse_each_other_loudly() {
    // Node 2 speaks only the synthetic version 8; nodes 0 and 1 only 5..=7.
    let six = VersionRange::supported(8, 8).expect("testing speaks 8");
    let mut net = Net::cold_with(3, 13, 0.0, |i, s| {
        if i == 2 {
            s.versions = six;
        }
    });
    net.run_for(Duration::from_secs(20));
    assert!(bans(&net).is_empty(), "a version mismatch is no reason to ban: {:?}", bans(&net));
    assert_eq!(net.nodes[2].live_peers(), 0, "no session without a common version");
    assert!(net.nodes[0].node(&net.nodes[2].local().id).is_none());
    // Both sides say so, naming the peer and both ranges.
    let refused = |i: usize| {
        net.events.iter().any(|(j, e, _)| {
            *j == i
                && matches!(e, Event::VersionRefused { ours, theirs, .. }
                    if (*ours, *theirs) == (if i == 2 { six } else { VersionRange::DEFAULT }, if i == 2 { VersionRange::DEFAULT } else { six }))
        })
    };
    assert!(refused(0), "the seed did not report the refusal");
    assert!(refused(2), "the newcomer did not report the refusal");
    assert!(net.nodes[0].secure_stats().version_refusals > 0);
    // Nodes 0 and 1 are unaffected.
    assert_eq!(net.nodes[0].live_peers(), 1);
}

fn signed_delta(owner: &Identity, entries: Vec<Entry>) -> Delta {
    let node = NodeInfo::signed(owner, "owner".into(), addr(1), 7);
    let to = entries.last().map_or(0, |e| e.version);
    Delta { ttl: 0, node, from_version: 0, to_version: to, entries, head: None }
}

#[test]
fn an_unknown_kind_round_trips_exactly_and_verifies_after_relay() {
    let owner = Identity::from_secret([9; 32]);
    // The owner (a newer build) encodes a value of kind 200 and signs its digest; the bytes on
    // the wire are `tag ‖ varint len ‖ body`.
    let body: Vec<u8> = (0..=255u8).cycle().take(300).collect();
    let e = Entry::signed(&owner, 7, "x/new", 1, Value::Unknown { tag: NEW_KIND, bytes: body.clone() });
    let mut raw = vec![NEW_KIND, 0xac, 0x02]; // 300 as LEB128
    raw.extend_from_slice(&body);
    assert_eq!(e.value_digest(), gossip_core::proof::value_digest(&raw), "digest over the exact bytes");

    // A relay of this build decodes it, holds it, and encodes it again byte for byte.
    let msg = Message::Delta { sender: owner.node_id(), delta: signed_delta(&owner, vec![e.clone()]) };
    let bytes = msg.encode();
    let Message::Delta { delta, .. } = Message::decode(&bytes).expect("an unknown kind decodes") else {
        panic!("not a delta")
    };
    assert_eq!(delta.entries[0], e);
    assert!(delta.entries[0].verify(&delta.node), "signature verifies at the relay");
    let relayed = Message::Delta { sender: owner.node_id(), delta: delta.clone() }.encode();
    assert_eq!(relayed, bytes, "relayed bytes differ from the owner's");
    let Message::Delta { delta: again, .. } = Message::decode(&relayed).unwrap() else { panic!() };
    assert!(again.entries[0].verify(&again.node), "signature verifies after relay");

    // Framing: a body shorter or longer than its length, a non-shortest length, or a known kind
    // with bytes left over is an error; a known kind inside its length decodes.
    let decode = |b: &[u8]| {
        let mut r = Reader::new(b);
        decode_value(&mut r).and_then(|v| r.finish().map(|_| v))
    };
    assert!(decode(&[NEW_KIND, 3, 1, 2]).is_err(), "truncated body");
    assert!(decode(&[NEW_KIND, 1, 1, 2]).is_err(), "bytes beyond the body");
    assert!(decode(&[NEW_KIND, 0x81, 0x00, 1]).is_err(), "non-shortest length");
    assert!(decode(&[1, 2, 0, 0]).is_err(), "status with a trailing byte");
    assert_eq!(decode(&[1, 1, 1]).unwrap(), Value::Status(gossip_core::NodeStatus::Left));
    assert_eq!(decode(&[NEW_KIND, 0]).unwrap(), Value::Unknown { tag: NEW_KIND, bytes: Vec::new() });
    // A huge claimed length allocates nothing: it is refused for the bytes that are missing.
    let mut w = Writer::new();
    w.u8(NEW_KIND);
    w.varint(u64::MAX);
    assert!(decode(&w.buf).is_err());
}

#[test]
fn the_proto_entry_advertises_the_range() {
    let net = Net::cold_with(1, 14, 0.0, |_, s| s.versions = v56());
    let g = &net.nodes[0];
    assert_eq!(g.versions(), v56());
    let e = g.node(&g.local().id).and_then(|n| n.entries.get(PROTO_KEY)).expect("@proto written at start");
    assert_eq!(e.value, Value::Proto(v56()));
}

#[test]
fn a_rolling_upgrade_from_protocol_6_mixes_both_fingerprint_rules() {
    // Nodes 0-2 stand for the build before protocol 7: this code limited to 5..=6, which at 6
    // fingerprints over concatenated item hashes as that build does (the rule is pinned by
    // known answers in records.rs). Nodes 3-5 speak 5..=7: additive fingerprints among
    // themselves, the old rule with nodes 0-2.
    let before = VersionRange::supported(5, 6).expect("5..=6");
    let mut net = Net::cold_with(6, 13, 0.0, |i, s| s.versions = if i >= 3 { VersionRange::DEFAULT } else { before });
    net.run_for(Duration::from_secs(20));
    let now = net.now;
    assert_eq!(net.nodes[3].secure().session_version(now, addr(4)), Some(7), "new with new");
    assert_eq!(net.nodes[0].secure().session_version(now, addr(4)), Some(6), "old with new");
    // Changes on either build reach everyone, through exchanges of both kinds.
    let t = net.now;
    net.nodes[1].write_unchecked(t, "x/old", Value::Unknown { tag: NEW_KIND, bytes: b"from the old build".to_vec() });
    net.nodes[5].write_unchecked(t, "x/new", Value::Unknown { tag: NEW_KIND, bytes: b"from the new build".to_vec() });
    net.flush(1);
    net.flush(5);
    net.run_for(Duration::from_secs(30));
    assert!(bans(&net).is_empty(), "bans: {:?}", bans(&net));
    assert!(net.converged(), "the two builds did not converge");
    // Idle, the two rules agree within each session: every exchange is one fingerprint each
    // way (a node fingerprinting by the other rule would split every range down to items).
    let before_idle: Vec<u64> = (0..6).map(|i| net.nodes[i].stats().bytes_out).collect();
    net.run_for(Duration::from_secs(10));
    let idle: Vec<u64> = (0..6).map(|i| (net.nodes[i].stats().bytes_out - before_idle[i]) / 10).collect();
    println!("idle bytes per node per second: {idle:?}");
    assert!(idle.iter().all(|&b| b < 400), "an idle exchange did more than compare one fingerprint: {idle:?} B/s");
    for (owner, key) in [(1, "x/old"), (5, "x/new")] {
        let id = net.nodes[owner].local().id;
        for i in 0..6 {
            assert!(
                net.nodes[i].node(&id).is_some_and(|n| n.entries.contains_key(key)),
                "node {i} lacks {key} of node {owner}"
            );
        }
    }
}
