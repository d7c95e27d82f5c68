//! Any bytes as a datagram: to the gossip message decoder, and to a secure layer with a fixed
//! identity and keyring, as if from several sources (IPv4 and IPv6), as they are and with their
//! mac1 recomputed under the cluster key (so that they get past admission), and again to a layer
//! under load (cookies required) and to one that requires certificates from a CA. Never a panic,
//! never a payload delivered (a fresh layer has no session), and never more bytes answered than
//! received. The layers are fresh copies of templates built once (`gossipd_fuzz::layer_in`).
#![no_main]

use gossip_core::message::Message;
use gossip_core::secure::SecureLayer;
use gossipd_fuzz::{Mode, addr, layer_in, now0, reseal, sources};
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
    let mut b = layer_in(2, Mode::default());
    for src in sources() {
        deliver(&mut b, src, data);
    }
    deliver(&mut b, addr(5), &sealed);
    let mut loaded = layer_in(2, Mode { under_load: true, ca: false });
    deliver(&mut loaded, addr(1), data);
    deliver(&mut loaded, addr(5), &sealed);
    let mut certified = layer_in(2, Mode { under_load: false, ca: true });
    deliver(&mut certified, addr(5), &sealed);
});
