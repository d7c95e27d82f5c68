//! Clocks that differ: agents 30 minutes apart join at once, and each side reports the other's
//! offset (both learn it from a handshake: the IK initiation carries the initiator's clock, the
//! IK response the responder's).

mod common;

use std::time::Duration;

use common::{Net, addr, secure};
use gossip_core::{Config, Event, Gossip};

#[test]
fn agents_thirty_minutes_apart_join_and_both_report_the_skew() {
    let mut net = Net::cold(0, 21, 0.0);
    let cfg = |i: usize| Config { seeds: vec![addr(0)], rng_seed: 100 + i as u64, ..Config::default() };
    let a = net.add(Gossip::new(cfg(0), secure(8000, 8100), "node-0".into(), addr(0), 1, net.start));
    let mut behind = secure(8001, 8101);
    behind.wall_clock_at_start -= 30 * 60 * 1_000_000_000;
    let b = net.add(Gossip::new(cfg(1), behind, "node-1".into(), addr(1), 1, net.start));
    // Long enough for a rekey (120 s): each side then initiates IK at least once.
    net.run_for(Duration::from_secs(300));
    assert!(net.converged());
    assert_eq!(net.nodes[a].nodes().count(), 2);
    let skew_seen = |i: usize, sign: i64| {
        net.events.iter().any(|(n, e, _)| {
            *n == i
                && matches!(e, Event::ClockSkew { offset_secs, .. } if offset_secs.signum() == sign
                && offset_secs.abs() >= 1790 && offset_secs.abs() <= 1810)
        })
    };
    assert!(skew_seen(a, -1), "node 0 did not report node 1 as 30 minutes behind");
    assert!(skew_seen(b, 1), "node 1 did not report node 0 as 30 minutes ahead");
    assert!(net.nodes[a].secure_stats().max_clock_offset_secs >= 1790);
}

#[test]
fn a_clock_beyond_the_tolerance_is_refused_and_said() {
    let mut net = Net::cold(0, 22, 0.0);
    let cfg = |i: usize| Config { seeds: vec![addr(0)], rng_seed: 200 + i as u64, ..Config::default() };
    let a = net.add(Gossip::new(cfg(0), secure(8010, 8110), "node-0".into(), addr(0), 1, net.start));
    let mut far = secure(8011, 8111);
    far.wall_clock_at_start += 3 * 3600 * 1_000_000_000;
    let f = net.add(Gossip::new(cfg(1), far, "node-1".into(), addr(1), 1, net.start));
    net.run_for(Duration::from_secs(20));
    assert_eq!(net.nodes[f].nodes().count(), 1, "a node three hours ahead joined");
    // The seed tells why: the newcomer's key binding starts three hours in its future.
    let said = net.events.iter().any(|(n, e, _)| {
        *n == a
            && matches!(e, Event::ClockSkew { offset_secs, tolerated, .. }
            if (10_700..=10_900).contains(offset_secs) && *tolerated == 3600)
    });
    assert!(said, "the seed did not report the newcomer's clock");
}
