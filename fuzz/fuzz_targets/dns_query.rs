//! Any bytes as a UDP DNS query for the fast path's reader, and as an "answer" for the cache's
//! walker and patcher. `parse_query` and `owner_positions` are total (never panic), what they
//! accept is well-formed, and patching never changes a message's length or reads past it.
#![no_main]

use dns_front::wire::{QNAME_OFFSET, owner_positions, parse_query, patch_into};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(q) = parse_query(data) {
        let end = QNAME_OFFSET + q.name_len;
        assert!((1..=255).contains(&q.name_len) && end + 4 <= data.len());
        assert_eq!(data[end - 1], 0, "the name ends with the root label");
        assert!(q.edns_class().is_none_or(|c| (512..=1232).contains(&c)));
        let qname = data[QNAME_OFFSET..end].to_ascii_lowercase();
        // The query itself, read as an answer, walks (at most its OPT record).
        assert!(owner_positions(data, &qname).is_some(), "an accepted query walks");
        let mut out = Vec::new();
        patch_into(data, &[], data, &q, &mut out);
        assert_eq!(out, data, "patching a query with itself changes nothing");
        // Arbitrary bytes as the "answer", with arbitrary positions.
        let positions: Vec<u16> = data.iter().map(|&b| u16::from(b)).collect();
        let _ = owner_positions(&data[1..], &qname);
        patch_into(&data[1..], &positions, data, &q, &mut out);
        assert_eq!(out.len(), data.len() - 1);
    } else if data.len() > 13 {
        let _ = owner_positions(data, &data[QNAME_OFFSET..QNAME_OFFSET + 2]);
    }
});
