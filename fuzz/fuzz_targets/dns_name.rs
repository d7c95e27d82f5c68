//! Any bytes (as lossy UTF-8) as a DNS query name. `parse` is total (never panics), and its
//! documented contract holds: matching is ASCII case-insensitive and a trailing dot is
//! optional.
#![no_main]

use dns_front::name::{labels, parse, parse_in};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let q = parse(&s, "gossip");
    let _ = labels(&s);
    let _ = parse(&s, "consul.example");
    let _ = parse("web.service.gossip", &s);
    let _ = parse_in(&s, "gossip", "gossip");
    let _ = parse_in("web.service.gossip.gossip", "gossip", &s);
    assert_eq!(parse(&s.to_ascii_uppercase(), "gossip"), q, "case changed the meaning of {s:?}");
    assert_eq!(parse(&s, "GoSsIp."), q, "the domain's case or trailing dot changed the meaning of {s:?}");
    if !s.ends_with('.') {
        assert_eq!(parse(&format!("{s}."), "gossip"), q, "a trailing dot changed the meaning of {s:?}");
    }
});
