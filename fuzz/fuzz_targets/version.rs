//! Version vectors as peers send them (JSON): never a panic, and the
//! comparison is consistent from both sides.
#![no_main]
use election_core::version::{compare, ReplicaVersion, VersionDiff};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mid = data.len() / 2;
    let (a, b) = data.split_at(mid);
    let (Ok(a), Ok(b)) = (
        serde_json::from_slice::<ReplicaVersion>(a),
        serde_json::from_slice::<ReplicaVersion>(b),
    ) else {
        let _ = serde_json::from_slice::<ReplicaVersion>(data);
        return;
    };
    let (ab, ba) = (compare(&a, &b), compare(&b, &a));
    match (&ab, &ba) {
        (VersionDiff::Equal, VersionDiff::Equal)
        | (VersionDiff::LocalAhead, VersionDiff::LocalBehind)
        | (VersionDiff::LocalBehind, VersionDiff::LocalAhead)
        | (VersionDiff::Diverged, VersionDiff::Diverged)
        | (VersionDiff::Unknown(_), VersionDiff::Unknown(_)) => {}
        _ => panic!("{a:?} vs {b:?}: {ab:?} but {ba:?}"),
    }
    if !matches!(a, ReplicaVersion::Unknown { .. }) {
        assert_eq!(compare(&a, &a), VersionDiff::Equal, "{a:?}");
    }
});
