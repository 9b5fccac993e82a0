//! The data of an election node, written by anyone: never a panic, and a
//! usable master is always one of the peers, never ourselves.
#![no_main]
use election_core::names::ServiceId;
use election_core::peer::master_from_node;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let me = ServiceId::new("127.0.0.1:6000").expect("id");
    let peers = [
        ServiceId::new("127.0.0.1:6001").expect("id"),
        ServiceId::new("127.0.0.1:6002").expect("id"),
    ];
    if let Ok(m) = master_from_node(data, &me, Some(&peers)) {
        assert!(peers.contains(&m) && m != me, "{data:?}");
    }
    let _ = master_from_node(data, &me, None);
});
