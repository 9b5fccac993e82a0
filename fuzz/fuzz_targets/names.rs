//! Names from requests: base names, service ids, namespaces, types,
//! container ids. Never a panic; nothing accepted can climb out of a path.
#![no_main]
use election_core::names::{BaseName, ContainerId, ElectionKey, Namespace, ServiceId, ServiceType};
use libfuzzer_sys::fuzz_target;

fn path_safe(s: &str) {
    assert!(
        !s.contains('/') && !s.contains('\0') && s != ".." && s != ".",
        "{s:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(b) = BaseName::parse(s) {
        path_safe(b.as_str());
        let key = ElectionKey::compute(&b, &ServiceType::new("meta2").expect("type"));
        assert!(key.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        let _ = b.container_id();
    }
    if let Ok(k) = ElectionKey::parse(s) {
        assert_eq!(k.as_str(), s);
    }
    if let Ok(id) = ServiceId::new(s) {
        assert!(!id.as_str().is_empty() && id.as_str().len() <= 255);
    }
    if let Ok(ns) = Namespace::new(s) {
        path_safe(ns.as_str());
    }
    if let Ok(t) = ServiceType::new(s) {
        path_safe(t.as_str());
        let _ = t.hash_layout();
    }
    if let Ok(c) = ContainerId::parse(s) {
        path_safe(c.as_str());
        let _ = c.meta2_base();
    }
    // Any account and reference hash to a well-formed container id.
    let mid = s.len() / 2;
    if s.is_char_boundary(mid) {
        let (a, r) = s.split_at(mid);
        let cid = ContainerId::compute(a, r);
        assert!(ContainerId::parse(cid.as_str()).is_ok(), "{a:?} {r:?}");
    }
});
