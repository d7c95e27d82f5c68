//! Any bytes as a datagram: to the gossip message decoder, and to a secure layer with a fixed
//! identity and keyring, as if from several sources (IPv4 and IPv6), as they are and with their
//! mac1 recomputed under the cluster key (so that they get past admission), and again to a layer
//! under load (cookies required). Never a panic, never a payload delivered (a fresh layer has no
//! session), and never more bytes answered than received.
#![no_main]

use gossip_core::message::Message;
use gossip_core::secure::SecureLayer;
use gossipd_fuzz::{addr, config, layer, now0, reseal, sources};
use libfuzzer_sys::fuzz_target;

fn deliver(layer: &mut SecureLayer, src: std::net::SocketAddr, bytes: &[u8]) {
    let mut out = Vec::new();
    let got = layer.recv(now0(), src, bytes, &mut out);
    assert!(got.is_none(), "a single datagram delivered a payload");
    let sent: usize = out.iter().map(|o| o.bytes.len()).sum();
    assert!(sent <= bytes.len(), "{sent} bytes answered to {}", bytes.len());
    assert!(out.iter().all(|o| o.dst == src), "answered someone else than the source");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        assert_eq!(Message::decode(&m.encode()).as_ref(), Ok(&m), "decode(encode(m)) != m");
    }
    let mut sealed = data.to_vec();
    reseal(&mut sealed);
    let now = now0();
    let mut b = layer(2, now);
    for src in sources() {
        deliver(&mut b, src, data);
    }
    deliver(&mut b, addr(5), &sealed);
    let mut cfg = config(2);
    cfg.load_threshold = 0;
    let mut loaded = SecureLayer::new(cfg, now);
    deliver(&mut loaded, addr(1), data);
    deliver(&mut loaded, addr(5), &sealed);
});
