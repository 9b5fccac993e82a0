//! Names of things and how they hash: container ids, base names, election
//! keys, and the ZooKeeper paths derived from them (OpenIO-compatible).

use sha2::{Digest, Sha256};
use std::fmt;

/// Why a user-supplied name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("service type {0:?} is invalid: use 1 to 32 characters among a-z, 0-9, '_' and '-' (e.g. meta2)")]
    ServiceType(String),
    #[error("base name {0:?} is invalid: expected <64 hex CID>.<seq> for meta2, or 1 to 128 printable characters without '/', '@' or spaces")]
    BaseName(String),
    #[error("container id {0:?} is invalid: expected 64 hexadecimal characters")]
    ContainerId(String),
    #[error("service id {0:?} is invalid: expected host:port (1 to 255 printable characters, no '/' or spaces)")]
    ServiceId(String),
    #[error(
        "namespace {0:?} is invalid: use 1 to 64 characters among A-Z, a-z, 0-9, '_', '-' and '.'"
    )]
    Namespace(String),
    #[error("election key {0:?} is invalid: expected 64 uppercase hexadecimal characters")]
    ElectionKey(String),
}

fn upper_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

fn sha256_upper_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    upper_hex(&h.finalize())
}

fn is_printable_token(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_graphic() && c != '/')
}

/// A service identity, as registered and written into election nodes: `host:port`
/// unless the operator configured another id.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ServiceId(std::sync::Arc<str>);

impl ServiceId {
    /// A service id is shared, not copied, when cloned: every election of
    /// a service holds its peers' ids.
    pub fn new(id: impl Into<String>) -> Result<Self, NameError> {
        let id = id.into();
        if id.is_empty() || id.len() > 255 || !is_printable_token(&id) {
            return Err(NameError::ServiceId(id));
        }
        Ok(Self(id.into()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A namespace name (`OPENIO` by default).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Namespace(String);

impl Namespace {
    pub fn new(ns: impl Into<String>) -> Result<Self, NameError> {
        let ns = ns.into();
        let ok = !ns.is_empty()
            && ns.len() <= 64
            && ns
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && ns != "."
            && ns != "..";
        if ok {
            Ok(Self(ns))
        } else {
            Err(NameError::Namespace(ns))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A service type such as `meta2`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ServiceType(String);

impl ServiceType {
    pub fn new(t: impl Into<String>) -> Result<Self, NameError> {
        let t = t.into();
        let ok = !t.is_empty()
            && t.len() <= 32
            && t.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if ok {
            Ok(Self(t))
        } else {
            Err(NameError::ServiceType(t))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Depth and width of the hashed election directories for this type
    /// (reference §2.2): meta0 flat, meta1 one level of 3, everything else
    /// (meta2 and custom types) two levels of 2.
    pub fn hash_layout(&self) -> (usize, usize) {
        match self.0.as_str() {
            "meta0" => (0, 0),
            "meta1" => (1, 3),
            _ => (2, 2),
        }
    }
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A container id: uppercase hex SHA-256 of `account + NUL + reference`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ContainerId(String);

impl ContainerId {
    pub fn compute(account: &str, reference: &str) -> Self {
        Self(sha256_upper_hex(&[
            account.as_bytes(),
            b"\0",
            reference.as_bytes(),
        ]))
    }
    /// Accepts 64 hex digits in either case; stores them uppercase.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(Self(s.to_ascii_uppercase()))
        } else {
            Err(NameError::ContainerId(s.to_string()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The meta2 base holding this container: `<CID>.1`.
    pub fn meta2_base(&self) -> BaseName {
        BaseName(format!("{}.1", self.0).into())
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a replicated base (`<CID>.1` for meta2). Held as a boxed
/// `str` (16 bytes, not a `String`'s 24: every election holds one), and
/// deserialized through `parse`: a peer's or a client's body cannot bring in
/// a name that `parse` refuses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct BaseName(Box<str>);

impl<'de> serde::Deserialize<'de> for BaseName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        BaseName::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl BaseName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        // "." and ".." would name a directory entry's own or parent node
        // in ZooKeeper (found by the `names` fuzz target).
        let ok = !s.is_empty()
            && s.len() <= 128
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_graphic() && c != '/' && c != '@');
        if ok {
            Ok(Self(s.into()))
        } else {
            Err(NameError::BaseName(s.to_string()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The container id, when the base is a meta2 base `<CID>.<seq>`.
    pub fn container_id(&self) -> Option<ContainerId> {
        let (cid, seq) = self.0.split_once('.')?;
        if seq.is_empty() || !seq.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        ContainerId::parse(cid).ok()
    }
}

impl fmt::Display for BaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The election key: uppercase hex SHA-256 of `<base>@<type>`. Held
/// inline, not on the heap: every election keeps one (issue 13's 2 KiB).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ElectionKey([u8; 64]);

impl ElectionKey {
    pub fn compute(base: &BaseName, stype: &ServiceType) -> Self {
        let mut h = Sha256::new();
        for part in [base.as_str().as_bytes(), b"@", stype.as_str().as_bytes()] {
            h.update(part);
        }
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        let mut hex = [0u8; 64];
        for (i, b) in h.finalize().iter().enumerate() {
            hex[2 * i] = DIGITS[usize::from(b >> 4)];
            hex[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        Self(hex)
    }
    /// A key as written by `as_str`: 64 uppercase hex digits.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let bytes = s.as_bytes();
        let ok = bytes.len() == 64 && bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'));
        if !ok {
            return Err(NameError::ElectionKey(s.to_string()));
        }
        let mut hex = [0u8; 64];
        hex.copy_from_slice(bytes);
        Ok(Self(hex))
    }
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored (`compute`, `parse`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
    /// The first 128 bits of the digest: unique in practice (a collision
    /// among a billion keys has a chance of about 2^-68), so tables of many
    /// bases can be keyed by it instead of by a copy of each name.
    pub fn digest_prefix(&self) -> u128 {
        u128::from_str_radix(&self.as_str()[..32], 16).unwrap_or(0)
    }
    /// A small number derived from the key, stable across runs: used to
    /// spread jitter deterministically (the core has no randomness).
    pub fn spread(&self) -> u64 {
        u64::from_str_radix(&self.as_str()[..12], 16).unwrap_or(0)
    }
}

impl fmt::Display for ElectionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ElectionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ElectionKey({:?})", self.as_str())
    }
}

impl serde::Serialize for ElectionKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ElectionKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A ZooKeeper sequence number, as appended to an election node name.
pub type Seq = i64;

/// Where things live in ZooKeeper for one namespace.
#[derive(Debug, Clone)]
pub struct ZkLayout {
    ns: Namespace,
}

impl ZkLayout {
    pub fn new(ns: Namespace) -> Self {
        Self { ns }
    }
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }
    /// `/hc/ns/<NS>`
    pub fn ns_root(&self) -> String {
        format!("/hc/ns/{}", self.ns)
    }
    /// `/hc/ns/<NS>/el/<type>`
    pub fn election_root(&self, stype: &ServiceType) -> String {
        format!("/hc/ns/{}/el/{}", self.ns, stype)
    }
    /// The group directory holding the nodes of `key` (hashed per type).
    pub fn election_dir(&self, stype: &ServiceType, key: &ElectionKey) -> String {
        let (depth, width) = stype.hash_layout();
        let mut dir = self.election_root(stype);
        let k = key.as_str();
        for level in 0..depth {
            dir.push('/');
            dir.push_str(&k[level * width..(level + 1) * width]);
        }
        dir
    }
    /// `<dir>/<KEY>`: the prefix of every node of this election (the debug `zk` field).
    pub fn election_prefix(&self, stype: &ServiceType, key: &ElectionKey) -> String {
        format!("{}/{}", self.election_dir(stype, key), key)
    }
    /// The full path of one election node.
    pub fn election_node(&self, stype: &ServiceType, key: &ElectionKey, seq: Seq) -> String {
        format!("{}-{}", self.election_prefix(stype, key), format_seq(seq))
    }
    /// `/hc/ns/<NS>/srv/<type>`: ephemeral registrations of live services.
    pub fn services_dir(&self, stype: &ServiceType) -> String {
        format!("/hc/ns/{}/srv/{}", self.ns, stype)
    }
    /// `/hc/ns/<NS>/acct/<type>/<hex(account)>[/<hex(reference)>]`: the
    /// per-account index of containers (`container list`); hex keeps any
    /// name a valid node name. [`index_name`] decodes a child's name.
    pub fn account_index(
        &self,
        stype: &ServiceType,
        account: &str,
        reference: Option<&str>,
    ) -> String {
        let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        let mut p = format!("/hc/ns/{}/acct/{stype}/{}", self.ns, hex(account));
        if let Some(r) = reference {
            p.push('/');
            p.push_str(&hex(r));
        }
        p
    }
    /// The persistent directory entry recording the peers of a base.
    pub fn directory_node(&self, stype: &ServiceType, base: &BaseName) -> String {
        let key = ElectionKey::compute(base, stype);
        let k = key.as_str();
        format!(
            "/hc/ns/{}/dir/{}/{}/{}/{}",
            self.ns,
            stype,
            &k[0..2],
            &k[2..4],
            base
        )
    }
}

/// A child's name in the account index ([`ZkLayout::account_index`]),
/// decoded (`None`: not one of its names).
pub fn index_name(name: &str) -> Option<String> {
    if !name.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..name.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(name.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// As ZooKeeper writes it, Java's `%010d`: zero-padded to 10 characters, the
/// sign of a negative sequence (after the 32-bit counter wraps) included.
pub fn format_seq(seq: Seq) -> String {
    if seq < 0 {
        format!("-{:09}", seq.unsigned_abs())
    } else {
        format!("{seq:010}")
    }
}

/// Orders `seq` relative to `reference` across the 32-bit wrap of
/// ZooKeeper's sequence counter (serial-number arithmetic): negative when
/// `seq` was created before `reference`. Valid while the live nodes of one
/// election span less than 2^31 creations, which they always do.
pub fn seq_offset(seq: Seq, reference: Seq) -> i64 {
    i64::from((seq as i32).wrapping_sub(reference as i32))
}

/// Was `a` created after `b` (wrap-aware)?
pub fn seq_after(a: Seq, b: Seq) -> bool {
    seq_offset(a, b) > 0
}

/// The later of two sequences (wrap-aware).
pub fn seq_latest(a: Seq, b: Seq) -> Seq {
    if seq_after(a, b) {
        a
    } else {
        b
    }
}

/// Parses a child name `<KEY>-<seq>` of an election directory. Returns `None`
/// for anything else (garbage children never stall an election).
pub fn parse_node_name(name: &str) -> Option<(&str, Seq)> {
    if name.len() < 66 || !name.is_char_boundary(64) {
        return None;
    }
    let (key, rest) = name.split_at(64);
    if !key
        .chars()
        .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        || !key.chars().all(|c| c.is_ascii_hexdigit())
    {
        return None;
    }
    let digits = rest.strip_prefix('-')?;
    let (neg, digits) = match digits.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, digits),
    };
    let min = if neg { 9 } else { 10 };
    if digits.len() < min || digits.len() > 19 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v: i64 = digits.parse().ok()?;
    Some((key, if neg { -v } else { v }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn account_index_names_round_trip() {
        let layout = ZkLayout::new(Namespace::new("NS").expect("ns"));
        let t = ServiceType::new("meta2").expect("type");
        for s in ["FVE0", "a/b c", "é"] {
            let path = layout.account_index(&t, "acct", Some(s));
            let name = path.rsplit('/').next().expect("a name");
            assert_eq!(super::index_name(name).as_deref(), Some(s));
        }
        assert_eq!(
            layout.account_index(&t, "a", None),
            "/hc/ns/NS/acct/meta2/61"
        );
        assert_eq!(super::index_name("zz"), None);
        assert_eq!(super::index_name("abc"), None);
    }

    use super::*;

    #[test]
    fn seed_container_vectors() {
        let cid = ContainerId::compute("myaccount", "FVE0");
        assert_eq!(
            cid.as_str(),
            "697ECB056A5F9339B36C3B0A020B5AB17B4B0160FBEBEA203315EA1FC1B61605"
        );
        let base = cid.meta2_base();
        assert_eq!(
            base.as_str(),
            "697ECB056A5F9339B36C3B0A020B5AB17B4B0160FBEBEA203315EA1FC1B61605.1"
        );
        let key = ElectionKey::compute(&base, &ServiceType::new("meta2").expect("valid"));
        assert_eq!(
            key.as_str(),
            "D9EAF7894DB54D52FDA5A0CCC26FF3E3EE2731FEDD9944B06298A22C6BE5FCD5"
        );
        assert_eq!(base.container_id(), Some(cid));
    }

    #[test]
    fn reference_key_vectors() {
        let cases = [
            (
                format!("{}.1", "0".repeat(64)),
                "meta2",
                "D2573EFC8E2686B6D6CCC47D5324B6037CF1DC3696E92CD25FDD5D792FBD4A68",
            ),
            (
                "0000".to_string(),
                "meta1",
                "B1420F694D17FD630151A6F2DAE37DB09F79C62A901821985D875ED71E7C5A82",
            ),
            (
                "OPENIO".to_string(),
                "meta0",
                "1F57FC3651B6ACFEFDB3CA5103CFC2CB86AD3A4CDE01E47275F63DE76B293868",
            ),
        ];
        for (base, t, want) in cases {
            let key = ElectionKey::compute(
                &BaseName::parse(&base).expect("valid"),
                &ServiceType::new(t).expect("valid"),
            );
            assert_eq!(key.as_str(), want, "{base}@{t}");
            assert_eq!(ElectionKey::parse(want), Ok(key.clone()));
            let json = serde_json::to_string(&key).expect("serialize");
            assert_eq!(json, format!("\"{want}\""));
            assert_eq!(serde_json::from_str::<ElectionKey>(&json).ok(), Some(key));
        }
        for bad in [
            "",
            "d2573efc8e2686b6d6ccc47d5324b6037cf1dc3696e92cd25fdd5d792fbd4a68",
            "D2573EFC",
            "G".repeat(64).as_str(),
        ] {
            assert!(ElectionKey::parse(bad).is_err(), "{bad:?}");
            assert!(serde_json::from_str::<ElectionKey>(&format!("\"{bad}\"")).is_err());
        }
    }

    #[test]
    fn paths_per_type() {
        let layout = ZkLayout::new(Namespace::new("OPENIO").expect("valid"));
        let base = BaseName::parse(&format!("{}.1", "0".repeat(64))).expect("valid");
        let m2 = ServiceType::new("meta2").expect("valid");
        let key = ElectionKey::compute(&base, &m2);
        assert_eq!(
            layout.election_dir(&m2, &key),
            "/hc/ns/OPENIO/el/meta2/D2/57"
        );
        assert_eq!(
            layout.election_node(&m2, &key, 42),
            format!("/hc/ns/OPENIO/el/meta2/D2/57/{key}-0000000042")
        );
        let m1 = ServiceType::new("meta1").expect("valid");
        let k1 = ElectionKey::compute(&BaseName::parse("0000").expect("valid"), &m1);
        assert_eq!(layout.election_dir(&m1, &k1), "/hc/ns/OPENIO/el/meta1/B14");
        let m0 = ServiceType::new("meta0").expect("valid");
        let k0 = ElectionKey::compute(&BaseName::parse("OPENIO").expect("valid"), &m0);
        assert_eq!(layout.election_dir(&m0, &k0), "/hc/ns/OPENIO/el/meta0");
    }

    #[test]
    fn node_names() {
        let key = "D2573EFC8E2686B6D6CCC47D5324B6037CF1DC3696E92CD25FDD5D792FBD4A68";
        assert_eq!(
            parse_node_name(&format!("{key}-0000000042")),
            Some((key, 42))
        );
        // ZooKeeper's names after the counter wraps (Java's %010d).
        assert_eq!(
            parse_node_name(&format!("{key}--000000007")),
            Some((key, -7))
        );
        assert_eq!(
            parse_node_name(&format!("{key}--2147483648")),
            Some((key, -2_147_483_648))
        );
        assert_eq!(format_seq(-7), "-000000007");
        assert_eq!(format_seq(-2_147_483_648), "-2147483648");
        assert_eq!(format_seq(i64::from(i32::MAX)), "2147483647");
        // Order across the wrap.
        assert!(seq_after(i64::from(i32::MIN), i64::from(i32::MAX)));
        assert!(seq_after(-2_147_483_640, 2_147_483_600));
        assert!(!seq_after(5, 7) && seq_after(7, 5));
        assert_eq!(seq_latest(-2_147_483_648, 2_147_483_647), -2_147_483_648);
        assert_eq!(seq_offset(2_147_483_647, -2_147_483_648), -1);
        for bad in [
            "",
            "garbage",
            &format!("{key}-42"),
            &format!("{key}_0000000042"),
            &format!("{}-0000000042", key.to_lowercase()),
            &format!("{key}-00000000x2"),
            "é".repeat(40).as_str(),
        ] {
            assert_eq!(parse_node_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_reject_bad_input() {
        assert!(ServiceType::new("Meta2").is_err());
        assert!(ServiceType::new("../x").is_err());
        assert!(BaseName::parse("a/b").is_err());
        assert!(BaseName::parse("").is_err());
        assert!(BaseName::parse("..").is_err() && BaseName::parse(".").is_err());
        assert!(ContainerId::parse("xyz").is_err());
        assert!(ServiceId::new("a b").is_err());
        assert!(Namespace::new("..").is_err());
        assert_eq!(
            ContainerId::parse(&"a".repeat(64)).expect("valid").as_str(),
            "A".repeat(64)
        );
    }
}
