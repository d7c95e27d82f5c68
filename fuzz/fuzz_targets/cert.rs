//! Certificates and revocations from untrusted bytes (handshakes, deltas, files). Decoding any
//! bytes never panics and never accepts trailing bytes; a decoded certificate re-encodes to
//! exactly its input; checking it against a trust policy never panics, and a certificate that
//! passes was signed by the trusted CA over exactly these bytes: a CA-signed certificate with
//! fuzzer-chosen fields, then one byte changed, is never accepted.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use gossip_core::cert::{CertRequest, Certificate, Revocation, Trust};
use gossip_core::secure::keys::Identity;
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_790_000_000;

#[derive(Debug, Arbitrary)]
struct Input {
    raw: Vec<u8>,
    name: String,
    services: Vec<String>,
    roles: u8,
    max_entries: u32,
    not_before: u64,
    not_after: u64,
    flip_at: u16,
    flip: u8,
    at: u64,
}

fn ca() -> &'static (Identity, Trust) {
    static CA: OnceLock<(Identity, Trust)> = OnceLock::new();
    CA.get_or_init(|| {
        let key = Identity::from_secret([3; 32]);
        let cert = Certificate::new_ca(&key, "fuzz-ca", 0, u64::MAX / 2).expect("a CA certificate");
        let trust = Trust::new(vec![cert]).expect("trust");
        (key, trust)
    })
}

fn subject() -> &'static Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    ID.get_or_init(|| Identity::from_secret([4; 32]))
}

fuzz_target!(|input: Input| {
    let (key, trust) = ca();
    // Any bytes.
    if let Ok(c) = Certificate::decode(&input.raw) {
        assert_eq!(c.encoded(), &input.raw[..]);
        assert_eq!(Certificate::decode(c.encoded()).as_ref(), Ok(&c));
        if trust.check(&c, input.at).is_ok() {
            assert!(c.signature_ok() && c.issuer == key.public());
        }
        let _ = c.grants(&input.name);
    }
    if let Ok(rev) = Revocation::from_bytes(&input.raw) {
        let _ = trust.check_revocation(&rev);
    }
    // A real certificate with chosen fields, then one byte changed.
    let req = CertRequest {
        name: input.name,
        identity: subject().public(),
        services: input.services,
        roles: input.roles,
        max_entries: input.max_entries,
        not_before: input.not_before,
        not_after: input.not_after,
    };
    let Ok(c) = Certificate::sign(key, &req) else { return };
    let good = Certificate::decode(c.encoded()).expect("a signed certificate decodes");
    assert_eq!(good, c);
    if c.not_before > u64::MAX / 2 {
        return;
    }
    let at = NOW.clamp(c.not_before, c.not_after.min(u64::MAX / 2));
    assert!(trust.check(&good, at).is_ok(), "a valid certificate is refused");
    let mut bytes = c.encoded().to_vec();
    let i = usize::from(input.flip_at) % bytes.len();
    let flip = input.flip.max(1);
    bytes[i] ^= flip;
    if let Ok(bad) = Certificate::decode(&bytes) {
        assert!(trust.check(&bad, at).is_err(), "a certificate with byte {i} changed was accepted");
    }
});
