//! Election node names from ZooKeeper: never a panic, and whatever parses
//! formats back to a name that parses to the same key and sequence.
#![no_main]
use election_core::names::{format_seq, parse_node_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((key, seq)) = parse_node_name(name) {
        assert_eq!(key.len(), 64, "{name:?}");
        let again = format!("{key}-{}", format_seq(seq));
        assert_eq!(parse_node_name(&again), Some((key, seq)), "{name:?}");
    }
});
