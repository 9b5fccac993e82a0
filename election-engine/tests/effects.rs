//! Exact-effect tests of the engine, in openraft's style: build an engine,
//! feed it inputs at explicit instants, drain the effects and compare them,
//! ids included, with what the shell must do; then check the resulting state.
//!
//! Ids come from one counter per engine, which also numbers the slots and
//! the watches: on a fresh engine the first election takes 1, its
//! `ResolvePeers` 2, and so on. A watch id is its slot index (high 32 bits)
//! and a value drawn from that counter (low 32 bits) just before the id of
//! the op that sets it, so on slot 0 the watch of op `n` is `n - 1`.

use election_core::names::{
    format_seq, seq_latest, BaseName, ContainerId, ElectionKey, Namespace, Seq, ServiceId,
    ServiceType, ZkLayout,
};
use election_core::peer::master_from_node;
use election_core::peer::Refusal;
use election_core::version::{Incarnation, ReplicaVersion, TableVersion, Vector, WriteOp};
use election_core::{Config, MasterBadReason, Now, State};
use election_engine::{
    Effect, Engine, EngineConfig, GetversRefusal, Id, Input, LogEvent, Membership, NotOwner,
    Observation, RemoteVersion, ReplicateFailure, ReqId, SessionTag, StoreFailure, StoreOk,
    StoreOp, WatchId, WriteRefusal, Written, ZkFailure, ZkOk, ZkOp,
};
use std::sync::Arc;

const ME: &str = "127.0.0.1:6001";
const B: &str = "127.0.0.1:6002";
const C: &str = "127.0.0.1:6003";
/// An idle NONE election is forgotten after this long.
const EXPIRE_NONE: u64 = 60_000;
const WALL0: u64 = 1_760_000_000_000;
const S1: SessionTag = SessionTag { epoch: 1, id: 0x51 };
const S2: SessionTag = SessionTag { epoch: 2, id: 0x52 };
/// `Config::default().pending_timeout_ms`.
const PENDING_TIMEOUT: u64 = 12_000;

// ----- the fixture -----

struct Fx {
    e: Engine,
    me: ServiceId,
    b: ServiceId,
    c: ServiceId,
    stype: ServiceType,
    layout: ZkLayout,
}

impl Fx {
    fn new() -> Self {
        Self::with(|_| {})
    }

    /// `new`, with `change` made to the engine's configuration.
    fn with(change: impl FnOnce(&mut EngineConfig)) -> Self {
        let me = sid(ME);
        let stype = ServiceType::new("meta2").expect("service type");
        let layout = ZkLayout::new(Namespace::new("NS").expect("namespace"));
        let mut cfg = EngineConfig {
            election: Config::default(),
            expire_none_ms: EXPIRE_NONE,
            ..Default::default()
        };
        change(&mut cfg);
        Self {
            e: Engine::new(cfg, me.clone(), stype.clone(), layout.clone()),
            me,
            b: sid(B),
            c: sid(C),
            stype,
            layout,
        }
    }

    /// Feeds one input at `t` (monotonic ms) and drains the effects.
    fn on(&mut self, t: u64, input: Input) -> Vec<Effect> {
        self.e.handle(now(t), input);
        drain(&mut self.e)
    }

    fn key(&self, base: &BaseName) -> ElectionKey {
        ElectionKey::compute(base, &self.stype)
    }

    fn dir(&self, base: &BaseName) -> String {
        self.layout.election_dir(&self.stype, &self.key(base))
    }

    /// The full path of node `seq` of the election of `base`.
    fn path(&self, base: &BaseName, seq: Seq) -> String {
        self.layout.election_node(&self.stype, &self.key(base), seq)
    }

    /// The child name of node `seq`, as a LIST of the group returns it.
    fn child(&self, base: &BaseName, seq: Seq) -> String {
        format!("{}-{}", self.key(base), format_seq(seq))
    }

    fn create_op(&self, base: &BaseName) -> ZkOp {
        ZkOp::CreateSeq {
            prefix: format!(
                "{}-",
                self.layout.election_prefix(&self.stype, &self.key(base))
            ),
            data: ME.as_bytes().to_vec(),
            dir: self.dir(base),
        }
    }

    fn state(&self, base: &BaseName) -> State {
        self.e.view(base).expect("election exists").fsm.state()
    }

    fn all_peers(&self) -> Vec<ServiceId> {
        vec![self.me.clone(), self.b.clone(), self.c.clone()]
    }

    /// The USEs to B and C; `master`: the sequence of our node when we
    /// announce our mastership.
    fn uses(&self, base: &BaseName, master: Option<Seq>) -> Vec<Effect> {
        [&self.b, &self.c]
            .into_iter()
            .map(|to| Effect::Use {
                to: to.clone(),
                base: base.clone(),
                master,
            })
            .collect()
    }
}

fn sid(s: &str) -> ServiceId {
    ServiceId::new(s).expect("service id")
}

fn now(t: u64) -> Now {
    Now {
        mono_ms: t,
        wall_ms: WALL0 + t,
    }
}

fn drain(e: &mut Engine) -> Vec<Effect> {
    e.drain().collect()
}

fn base_a() -> BaseName {
    ContainerId::compute("acct", "ref").meta2_base()
}

fn base_b() -> BaseName {
    ContainerId::compute("acct", "other").meta2_base()
}

fn base_c() -> BaseName {
    ContainerId::compute("acct", "third").meta2_base()
}

/// The watch id the engine draws for slot `slot` with counter value `id`.
fn watch(slot: u64, id: Id) -> WatchId {
    (slot << 32) | id
}

fn version(n: i64) -> ReplicaVersion {
    ReplicaVersion::Known {
        tables: [(
            "main".to_string(),
            TableVersion {
                version: n,
                when: 1_000 + n,
                writer: 0,
            },
        )]
        .into_iter()
        .collect(),
    }
}

// ----- inputs -----

fn poke(base: &BaseName) -> Input {
    Input::Poke {
        base: base.clone(),
        touch: true,
    }
}

fn zk(id: Id, result: Result<ZkOk, ZkFailure>) -> Input {
    Input::Zk {
        id,
        session: Some(S1),
        result,
    }
}

fn zk_in(id: Id, session: SessionTag, result: Result<ZkOk, ZkFailure>) -> Input {
    Input::Zk {
        id,
        session: Some(session),
        result,
    }
}

/// The creation of the base every directory read names in these tests.
const CREATION: Incarnation = Incarnation {
    id: 7,
    ctime_ms: 1_700_000_000_000,
};

fn peers_ok(id: Id, all: Vec<ServiceId>) -> Input {
    Input::Peers {
        id,
        result: Ok(Some(Membership {
            peers: all,
            incarnation: CREATION,
            replica: None,
        })),
    }
}

/// Both sides at the same version.
fn getvers_equal(id: Id) -> Input {
    Input::Getvers {
        id,
        remote: Ok(RemoteVersion::Version(version(3))),
        local: Ok(version(3)),
    }
}

// ----- effects -----

fn tr(base: &BaseName, pre: State, event: &'static str, post: State) -> Effect {
    Effect::Observe(Observation::Transition {
        base: base.clone(),
        pre,
        event,
        post,
    })
}

fn resolve(id: Id, base: &BaseName) -> Effect {
    Effect::ResolvePeers {
        id,
        base: base.clone(),
        decache: false,
    }
}

/// A directory read that bypasses the caches (our node disappeared).
fn reread(id: Id, base: &BaseName) -> Effect {
    Effect::ResolvePeers {
        id,
        base: base.clone(),
        decache: true,
    }
}

fn getvers_candidate(id: Id, to: &ServiceId, base: &BaseName, seq: Seq) -> Effect {
    Effect::Getvers {
        id,
        to: to.clone(),
        base: base.clone(),
        master_seq: None,
        candidate_seq: Some(seq),
        incarnation: Some(CREATION),
    }
}

fn getvers_master(id: Id, to: &ServiceId, base: &BaseName, master_seq: Seq) -> Effect {
    Effect::Getvers {
        id,
        to: to.clone(),
        base: base.clone(),
        master_seq: Some(master_seq),
        candidate_seq: None,
        incarnation: Some(CREATION),
    }
}

/// A master leaving node `epoch` tells both its peers its version is final.
fn farewell(fx: &Fx, base: &BaseName, epoch: Seq) -> Effect {
    Effect::Farewell {
        to: vec![fx.b.clone(), fx.c.clone()],
        base: base.clone(),
        epoch,
    }
}

fn zk_effect(id: Id, op: ZkOp) -> Effect {
    Effect::Zk { id, op }
}

// ----- scenarios shared by several tests (checked in detail by the first two) -----

/// On a fresh engine, starts the election of `base` at t=1000 in session S1
/// and brings it to LISTING with our node `seq` (owner S1, known from
/// create's Stat). Ids: ResolvePeers 2, CreateSeq 3, the List pipelined
/// right behind it 4, still unanswered. No watch is set on our node: only a
/// candidate sets one, beside its GETVERS round.
fn to_listing(fx: &mut Fx, base: &BaseName, seq: Seq) {
    assert!(fx.on(1_000, Input::SessionConnected(S1)).is_empty());
    assert_eq!(
        fx.on(1_000, poke(base)),
        vec![
            resolve(2, base),
            tr(base, State::None, "NONE", State::Peering)
        ]
    );
    let peers = fx.all_peers();
    let fx_effects = fx.on(1_010, peers_ok(2, peers));
    assert_eq!(fx_effects.len(), 5, "{fx_effects:?}");
    assert_eq!(
        fx_effects[2..4],
        [
            zk_effect(3, fx.create_op(base)),
            zk_effect(4, ZkOp::List { dir: fx.dir(base) }),
        ]
    );
    assert_eq!(
        fx.on(1_020, zk(3, Ok(ZkOk::Created { seq, owner: S1.id }))),
        vec![tr(base, State::Creating, "CREATE_OK", State::Listing)]
    );
}

/// On a fresh engine, makes `base` a candidate with node 17, alone in its
/// group: CHECKING_SLAVES at t=1040, its EXISTS (op 6, watch 5) and GETVERS
/// (7, 8) unanswered.
fn to_candidate(fx: &mut Fx, base: &BaseName) {
    to_listing(fx, base, 17);
    let listing = vec![fx.child(base, 17)];
    fx.on(1_040, zk(4, Ok(ZkOk::Children(listing))));
    assert_eq!(fx.state(base), State::CheckingSlaves);
}

/// On a fresh engine, elects `base` MASTER with node 17 (ids 2..=8: our
/// self watch is 5, its Exists 6, answered at t=1045, the GETVERS 7 and 8);
/// ends at t=1060.
fn elect_master(fx: &mut Fx, base: &BaseName) {
    to_listing(fx, base, 17);
    let listing = vec![fx.child(base, 17)];
    let effects = fx.on(1_040, zk(4, Ok(ZkOk::Children(listing))));
    assert_eq!(effects.len(), 4, "{effects:?}");
    assert!(fx.on(1_045, zk(6, Ok(ZkOk::Stat(Some(S1.id))))).is_empty());
    fx.on(1_050, getvers_equal(7));
    fx.on(1_060, getvers_equal(8));
    assert_eq!(fx.state(base), State::Master);
}

/// On a fresh engine, makes `base` SLAVE of B, whose node 12 is below ours
/// (17). Ids: the Get of node 12 is 6 with watch 5 (kept as the master
/// watch), Getvers 7; no watch on our own node; ends at t=1060.
fn follow_b(fx: &mut Fx, base: &BaseName) {
    to_listing(fx, base, 17);
    let listing = vec![fx.child(base, 12), fx.child(base, 17)];
    fx.on(1_040, zk(4, Ok(ZkOk::Children(listing))));
    fx.on(1_050, zk(6, Ok(ZkOk::Data(B.as_bytes().to_vec()))));
    fx.on(1_060, getvers_equal(7));
    assert_eq!(fx.state(base), State::Slave);
}

/// On a fresh engine, makes `base` a candidate (node 17, its self watch
/// set: Exists 6 answered at t=1045) whose second peer is ahead of it:
/// returns the effects of that answer (GETVERS id 8), the Delete of its
/// node (id 9) among them; ends at t=1060 in LEAVING.
fn step_aside(fx: &mut Fx, base: &BaseName) -> Vec<Effect> {
    to_listing(fx, base, 17);
    let listing = vec![fx.child(base, 17)];
    fx.on(1_040, zk(4, Ok(ZkOk::Children(listing))));
    fx.on(1_045, zk(6, Ok(ZkOk::Stat(Some(S1.id)))));
    // The peer ahead answers first: the candidate then waits for every
    // answer (an equal one first would elect it at once, 2 of 3).
    fx.on(
        1_050,
        Input::Getvers {
            id: 8,
            remote: Ok(RemoteVersion::Version(version(5))),
            local: Ok(version(3)),
        },
    );
    fx.on(1_060, getvers_equal(7))
}

// ----- 1. the cold election of a master -----

#[test]
fn cold_election_as_master() {
    let mut fx = Fx::new();
    let a = base_a();
    let dir = fx.dir(&a);
    assert!(dir.starts_with("/hc/ns/NS/el/meta2/"), "{dir}");

    assert_eq!(fx.on(1_000, Input::SessionConnected(S1)), vec![]);
    // Slot 1, then its first op: ids share one counter.
    assert_eq!(
        fx.on(1_000, poke(&a)),
        vec![resolve(2, &a), tr(&a, State::None, "NONE", State::Peering)]
    );
    assert_eq!(fx.state(&a), State::Peering);
    assert_eq!(fx.e.next_wakeup(), Some(1_000 + PENDING_TIMEOUT));

    // The directory answers with ourselves among the peers: we are filtered out.
    let mut expected = fx.uses(&a, None);
    expected.extend([
        zk_effect(
            3,
            ZkOp::CreateSeq {
                prefix: format!("{dir}/{}-", fx.key(&a)),
                data: ME.as_bytes().to_vec(),
                dir: dir.clone(),
            },
        ),
        // The LIST of the group pipelined right behind the create (a
        // session's requests are processed in order, so it sees our node).
        zk_effect(4, ZkOp::List { dir: dir.clone() }),
        tr(&a, State::Peering, "GETPEERS_DONE", State::Creating),
    ]);
    let peers = fx.all_peers();
    assert_eq!(fx.on(1_010, peers_ok(2, peers)), expected);
    let slot = fx.e.view(&a).expect("election");
    assert_eq!(
        slot.fsm.peers(),
        Some(&[fx.b.clone(), fx.c.clone()][..]),
        "peers without ourselves"
    );
    assert_eq!(slot.bound_epoch, 1, "bound to the session at create");

    // Our node 17, owned by the current session: straight to LISTING, which
    // adopts the LIST already in flight: no new op, no watch on our node.
    assert_eq!(
        fx.on(
            1_020,
            zk(
                3,
                Ok(ZkOk::Created {
                    seq: 17,
                    owner: S1.id
                })
            )
        ),
        vec![tr(&a, State::Creating, "CREATE_OK", State::Listing)]
    );
    assert_eq!(fx.e.view(&a).expect("election").fsm.local_id(), Some(17));

    // Nothing below our node, whose owner create's Stat confirmed: candidate.
    // EXISTS+watch on our node (watch 5, op 6) beside the GETVERS round.
    let listing = vec![fx.child(&a, 17)];
    assert_eq!(
        fx.on(1_040, zk(4, Ok(ZkOk::Children(listing)))),
        vec![
            zk_effect(
                6,
                ZkOp::Exists {
                    path: format!("{dir}/{}-0000000017", fx.key(&a)),
                    watch: Some(watch(0, 5)),
                }
            ),
            getvers_candidate(7, &fx.b, &a, 17),
            getvers_candidate(8, &fx.c, &a, 17),
            tr(&a, State::Listing, "LIST_OK", State::CheckingSlaves),
        ]
    );

    // The watch is set: recorded silently, the slaves are still checked.
    assert_eq!(fx.on(1_045, zk(6, Ok(ZkOk::Stat(Some(S1.id))))), vec![]);
    assert_eq!(fx.state(&a), State::CheckingSlaves);

    // One peer at our version: with us, 2 of 3. The slowest peer's answer
    // cannot change the verdict, so it is not waited for.
    let mut expected = fx.uses(&a, Some(17));
    expected.extend([
        Effect::Observe(Observation::Getvers("OK")),
        tr(&a, State::CheckingSlaves, "GETVERS_OK", State::Master),
        Effect::Observe(Observation::TimeToFinal { ms: 50 }),
    ]);
    assert_eq!(fx.on(1_050, getvers_equal(7)), expected);
    // It comes later, and is only counted.
    assert_eq!(
        fx.on(1_060, getvers_equal(8)),
        vec![Effect::Observe(Observation::Getvers("OK"))]
    );

    let fsm = &fx.e.view(&a).expect("election").fsm;
    assert_eq!(fsm.state(), State::Master);
    assert_eq!(fsm.local_id(), Some(17));
    assert_eq!(fsm.master_id(), Some(17));
    assert_eq!(fsm.master(), None);
    assert_eq!(fx.e.members(), 1);
    // A master is due again when it would expire idle.
    assert_eq!(
        fx.e.next_wakeup(),
        Some(1_000 + Config::default().expire_master_ms)
    );
}

/// The slaves agree before the watch on our node answers: MASTER at once
/// (the EXISTS was asked for; its answer arms the watch silently). A failed
/// EXISTS during the round is sent again by WATCHING, which leads once it
/// is set; one that fails after MASTER makes the master step down.
#[test]
fn a_candidate_leads_once_its_watch_is_asked_for() {
    let mut fx = Fx::new();
    let a = base_a();
    to_candidate(&mut fx, &a);
    let mut expected = fx.uses(&a, Some(17));
    expected.extend([
        Effect::Observe(Observation::Getvers("OK")),
        tr(&a, State::CheckingSlaves, "GETVERS_OK", State::Master),
        Effect::Observe(Observation::TimeToFinal { ms: 50 }),
    ]);
    assert_eq!(fx.on(1_050, getvers_equal(7)), expected);
    assert_eq!(fx.on(1_070, zk(6, Ok(ZkOk::Stat(Some(S1.id))))), vec![]);
    assert_eq!(fx.state(&a), State::Master);
    // That watch is the master's self watch: its node deleted by someone
    // else, the election starts again from the directory.
    let expected = vec![
        reread(9, &a),
        tr(&a, State::Master, "LEFT_SELF", State::Peering),
    ];
    assert_eq!(
        fx.on(
            5_000,
            Input::WatchFired {
                watch: watch(0, 5),
                deleted: true,
            },
        ),
        expected
    );

    // MASTER, then the EXISTS fails: the master steps down (its node
    // deleted), and will come back.
    let mut fx = Fx::new();
    to_candidate(&mut fx, &a);
    fx.on(1_050, getvers_equal(7));
    fx.on(1_060, getvers_equal(8));
    assert_eq!(fx.state(&a), State::Master);
    let effects = fx.on(1_070, zk(6, Err(ZkFailure::Failed("no response".into()))));
    assert!(
        effects.contains(&tr(&a, State::Master, "EXISTS_KO", State::Leaving)),
        "{effects:?}"
    );
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::Zk {
                op: ZkOp::Delete { .. },
                ..
            }
        )),
        "{effects:?}"
    );

    // The EXISTS fails during the round: recorded silently; WATCHING sets
    // the watch again (watch 9, op 10), and leads once it is set.
    let mut fx = Fx::new();
    to_candidate(&mut fx, &a);
    assert_eq!(
        fx.on(
            1_045,
            zk(6, Err(ZkFailure::Failed("connection loss".into())))
        ),
        vec![]
    );
    assert_eq!(fx.state(&a), State::CheckingSlaves);
    assert_eq!(
        fx.on(1_050, getvers_equal(7)),
        vec![
            zk_effect(
                10,
                ZkOp::Exists {
                    path: fx.path(&a, 17),
                    watch: Some(watch(0, 9))
                }
            ),
            Effect::Observe(Observation::Getvers("OK")),
            tr(&a, State::CheckingSlaves, "GETVERS_OK", State::Watching),
        ]
    );
    let mut expected = fx.uses(&a, Some(17));
    expected.extend([
        tr(&a, State::Watching, "EXISTS_OK", State::Master),
        Effect::Observe(Observation::TimeToFinal { ms: 70 }),
    ]);
    assert_eq!(fx.on(1_070, zk(10, Ok(ZkOk::Stat(Some(S1.id))))), expected);
}

// ----- 2. the follower path -----

#[test]
fn follower_reuses_the_lower_node_read() {
    let mut fx = Fx::new();
    let a = base_a();
    to_listing(&mut fx, &a, 17);

    // B's node 12 is below ours: read it with a watch.
    let listing = vec![fx.child(&a, 17), fx.child(&a, 12)];
    assert_eq!(
        fx.on(1_040, zk(4, Ok(ZkOk::Children(listing)))),
        vec![zk_effect(
            6,
            ZkOp::Get {
                path: fx.path(&a, 12),
                watch: watch(0, 5),
            }
        )]
    );
    assert_eq!(fx.state(&a), State::Listing);

    // ASKING reuses that read: no second Get of node 12, straight to GETVERS
    // naming the master's node. No watch on our own node: a follower sets
    // none.
    assert_eq!(
        fx.on(1_050, zk(6, Ok(ZkOk::Data(B.as_bytes().to_vec())))),
        vec![
            tr(&a, State::Listing, "LIST_OK", State::Asking),
            getvers_master(7, &fx.b, &a, 12),
            tr(&a, State::Asking, "MASTER_OK", State::CheckingMaster),
        ]
    );

    assert_eq!(
        fx.on(1_060, getvers_equal(7)),
        vec![
            Effect::Observe(Observation::Getvers("OK")),
            tr(&a, State::CheckingMaster, "GETVERS_OK", State::Slave),
            Effect::Observe(Observation::TimeToFinal { ms: 60 }),
        ]
    );
    let fsm = &fx.e.view(&a).expect("election").fsm;
    assert_eq!(fsm.state(), State::Slave);
    assert_eq!(fsm.master(), Some(&fx.b));
    assert_eq!(fsm.master_id(), Some(12));
    assert_eq!(fsm.local_id(), Some(17));
}

/// B asks our version as a candidate with node 12, and tells its own:
/// `theirs` (ours is version 3). Returns the effects of both inputs.
fn b_asks_as_candidate(fx: &mut Fx, base: &BaseName, t: u64, theirs: i64) -> Vec<Effect> {
    let mut out = fx.on(
        t,
        Input::GetversReq {
            req: 900,
            base: base.clone(),
            master_seq: None,
            candidate_seq: Some(12),
            incarnation: Some(CREATION),
        },
    );
    out.extend(fx.on(
        t,
        Input::CandidateVersions {
            base: base.clone(),
            from: sid(B),
            seq: 12,
            theirs: version(theirs),
            ours: version(3),
        },
    ));
    out
}

/// Our node 17 listed below B's 12, B having asked as a candidate with
/// version `theirs` (ours is 3) at 1,030 ms: the listing at 1,040 ms.
fn listed_below_b(fx: &mut Fx, base: &BaseName, theirs: i64) {
    to_listing(fx, base, 17);
    b_asks_as_candidate(fx, base, 1_030, theirs);
    let listing = vec![fx.child(base, 17), fx.child(base, 12)];
    fx.on(1_040, zk(4, Ok(ZkOk::Children(listing))));
}

#[test]
fn a_follower_takes_its_candidates_getvers_for_its_own() {
    let mut fx = Fx::new();
    let a = base_a();
    to_listing(&mut fx, &a, 17);
    assert_eq!(
        b_asks_as_candidate(&mut fx, &a, 1_030, 3),
        vec![Effect::GetversServed {
            req: 900,
            base: a.clone(),
            result: Ok(())
        }]
    );
    // Node 12 is lowest, and B said it is its own with a version equal to
    // ours: no wait for the read of node 12 (it still sets the watch), nor
    // for the GETVERS to B (still asked, for a write B made since): SLAVE
    // at once.
    let listing = vec![fx.child(&a, 17), fx.child(&a, 12)];
    assert_eq!(
        fx.on(1_040, zk(4, Ok(ZkOk::Children(listing)))),
        vec![
            zk_effect(
                6,
                ZkOp::Get {
                    path: fx.path(&a, 12),
                    watch: watch(0, 5),
                }
            ),
            tr(&a, State::Listing, "LIST_OK", State::Asking),
            Effect::Observe(Observation::GetversSkipped),
            getvers_master(7, &fx.b, &a, 12),
            tr(&a, State::Asking, "MASTER_OK", State::CheckingMaster),
            Effect::Observe(Observation::Getvers("OK")),
            tr(&a, State::CheckingMaster, "GETVERS_OK", State::Slave),
            Effect::Observe(Observation::TimeToFinal { ms: 40 }),
        ]
    );
    let fsm = &fx.e.view(&a).expect("election").fsm;
    assert_eq!((fsm.master(), fsm.master_id()), (Some(&fx.b), Some(12)));
    // B's answer agrees: nothing to do.
    assert_eq!(fx.on(1_045, getvers_equal(7)), vec![]);
    // The read confirms it: nothing more. Its watch is the master watch.
    assert_eq!(
        fx.on(1_050, zk(6, Ok(ZkOk::Data(B.as_bytes().to_vec())))),
        vec![]
    );
    let fired = Input::WatchFired {
        watch: watch(0, 5),
        deleted: true,
    };
    let effects = fx.on(1_060, fired);
    assert!(
        effects.contains(&tr(&a, State::Slave, "LEFT_MASTER", State::Listing)),
        "{effects:?}"
    );
}

#[test]
fn a_candidates_getvers_that_disagrees_or_names_another_node_is_asked_again() {
    // B is ahead of us: we ask it ourselves (and will copy from it).
    let mut fx = Fx::new();
    let a = base_a();
    listed_below_b(&mut fx, &a, 4);
    let effects = fx.on(1_050, zk(6, Ok(ZkOk::Data(B.as_bytes().to_vec()))));
    assert!(
        effects.contains(&getvers_master(7, &fx.b, &a, 12)),
        "{effects:?}"
    );
    assert_eq!(fx.state(&a), State::CheckingMaster);

    // B wrote after its word and before we followed: its answer to the
    // GETVERS we did not wait for shows it ahead, and we copy from it.
    let mut fx = Fx::new();
    listed_below_b(&mut fx, &a, 3);
    assert_eq!(fx.state(&a), State::Slave);
    let ahead = Input::Getvers {
        id: 7,
        remote: Ok(RemoteVersion::Version(version(4))),
        local: Ok(version(3)),
    };
    let effects = fx.on(1_050, ahead);
    assert!(
        effects.iter().any(|e| matches!(e, Effect::Sync { .. })),
        "{effects:?}"
    );
    assert_eq!(fx.state(&a), State::Syncing);

    // B agreed, but the read of node 12 finds C's name (or nothing): we
    // followed B on its word, and list again.
    for found in [
        Ok(ZkOk::Data(C.as_bytes().to_vec())),
        Err(ZkFailure::NoNode),
    ] {
        let mut fx = Fx::new();
        listed_below_b(&mut fx, &a, 3);
        assert_eq!(fx.state(&a), State::Slave);
        let effects = fx.on(1_050, zk(6, found));
        assert_eq!(
            effects[1..],
            [
                zk_effect(8, ZkOp::List { dir: fx.dir(&a) }),
                tr(&a, State::Slave, "LEFT_MASTER", State::Listing),
            ],
            "{effects:?}"
        );
        assert!(
            matches!(
                effects[0],
                Effect::Log(LogEvent::ClaimUnconfirmed { seq: 12, .. })
            ),
            "{effects:?}"
        );
    }

    // B agreed while we were SLAVE: by the time we follow again we may
    // have applied writes since, so it is not kept.
    let mut fx = Fx::new();
    follow_b(&mut fx, &a);
    b_asks_as_candidate(&mut fx, &a, 1_070, 3);
    fx.on(
        1_080,
        Input::WatchFired {
            watch: watch(0, 5),
            deleted: true,
        },
    );
    let listing = vec![fx.child(&a, 12), fx.child(&a, 17)];
    fx.on(1_090, zk(8, Ok(ZkOk::Children(listing))));
    let effects = fx.on(1_095, zk(10, Ok(ZkOk::Data(B.as_bytes().to_vec()))));
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::Getvers {
                master_seq: Some(12),
                ..
            }
        )),
        "{effects:?}"
    );
}

/// SLAVE of B (node 12; ours 17), B's farewell arrives with version
/// `theirs` (ours is 3), then B's node goes and the listing shows ours alone:
/// returns the effects of that listing (CHECKING_SLAVES entered).
fn b_leaves_with_farewell(
    fx: &mut Fx,
    base: &BaseName,
    theirs: i64,
    between: Option<Input>,
) -> Vec<Effect> {
    follow_b(fx, base);
    let left = Input::MasterLeft {
        base: base.clone(),
        from: sid(B),
        epoch: 12,
        theirs: version(theirs),
        ours: version(3),
    };
    assert!(fx.on(2_000, left).is_empty());
    if let Some(input) = between {
        fx.on(2_005, input);
    }
    let fired = Input::WatchFired {
        watch: watch(0, 5),
        deleted: true,
    };
    fx.on(2_010, fired);
    let listing = vec![fx.child(base, 17)];
    let list_id = 8;
    fx.on(2_020, zk(list_id, Ok(ZkOk::Children(listing))))
}

#[test]
fn a_successor_leads_on_its_masters_farewell_without_waiting_for_answers() {
    let mut fx = Fx::new();
    let a = base_a();
    let effects = b_leaves_with_farewell(&mut fx, &a, 3, None);
    // It still asks both peers (the question fences older masters and
    // vouches for it), but takes the farewell for their answers.
    let asked: Vec<Id> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Getvers {
                id,
                candidate_seq: Some(17),
                ..
            } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(asked.len(), 2, "{effects:?}");
    let taken = effects
        .iter()
        .filter(|e| **e == Effect::Observe(Observation::FarewellTaken))
        .count();
    assert_eq!(taken, 2, "{effects:?}");
    // MASTER at once: its watch on our node is asked for (as for any
    // candidate, a failure of it would make it step down).
    assert_eq!(fx.state(&a), State::Master, "{effects:#?}");
    let exists = zk_id(&effects, |op| matches!(op, ZkOp::Exists { .. })).expect("our watch");
    fx.on(2_030, zk(exists, Ok(ZkOk::Stat(Some(S1.id)))));
    assert_eq!(fx.state(&a), State::Master);
    // The peers' answers, when they come, change nothing.
    for id in asked {
        assert!(fx.on(2_040, getvers_equal(id)).is_empty());
    }
    assert_eq!(fx.state(&a), State::Master);
}

#[test]
fn a_farewell_is_not_taken_when_versions_differ_or_a_newer_candidate_asked() {
    let waits =
        |effects: &[Effect]| !effects.contains(&Effect::Observe(Observation::FarewellTaken));
    // B's final version is ahead of ours: the round is waited for.
    let (mut fx, a) = (Fx::new(), base_a());
    let effects = b_leaves_with_farewell(&mut fx, &a, 4, None);
    assert!(waits(&effects), "{effects:?}");
    assert_eq!(fx.state(&a), State::CheckingSlaves);

    // C asked as a candidate with node 15 after B's farewell: C may have
    // led and written since, so the farewell is void.
    let (mut fx, a) = (Fx::new(), base_a());
    let asked = Input::GetversReq {
        req: 901,
        base: a.clone(),
        master_seq: None,
        candidate_seq: Some(15),
        incarnation: Some(CREATION),
    };
    let effects = b_leaves_with_farewell(&mut fx, &a, 3, Some(asked));
    assert!(waits(&effects), "{effects:?}");
    assert_eq!(fx.state(&a), State::CheckingSlaves);
}

#[test]
fn a_master_with_a_batch_in_flight_says_no_farewell() {
    let mut fx = Fx::new();
    let a = base_a();
    elect_master(&mut fx, &a);
    fx.on(
        1_100,
        Input::Write {
            req: 50,
            base: a.clone(),
            ops: set("k"),
        },
    );
    let effects = fx.on(1_110, Input::Leave { base: a.clone() });
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Farewell { .. })),
        "{effects:?}"
    );
}

#[test]
fn master_watch_fires_and_the_follower_takes_over() {
    let mut fx = Fx::new();
    let a = base_a();
    follow_b(&mut fx, &a);

    // The watch set by LISTING's read (6) is the master watch.
    assert_eq!(
        fx.on(
            2_000,
            Input::WatchFired {
                watch: watch(0, 5),
                deleted: true
            }
        ),
        vec![
            zk_effect(8, ZkOp::List { dir: fx.dir(&a) }),
            tr(&a, State::Slave, "LEFT_MASTER", State::Listing),
        ]
    );

    // Only our node is left: we are the candidate (owner known from create).
    // As a follower we had no watch on our node: the candidate sets it now.
    let listing = vec![fx.child(&a, 17)];
    assert_eq!(
        fx.on(2_010, zk(8, Ok(ZkOk::Children(listing)))),
        vec![
            zk_effect(
                10,
                ZkOp::Exists {
                    path: fx.path(&a, 17),
                    watch: Some(watch(0, 9))
                }
            ),
            getvers_candidate(11, &fx.b, &a, 17),
            getvers_candidate(12, &fx.c, &a, 17),
            tr(&a, State::Listing, "LIST_OK", State::CheckingSlaves),
        ]
    );
    assert_eq!(fx.on(2_015, zk(10, Ok(ZkOk::Stat(Some(S1.id))))), vec![]);
    // No time-to-final (we never went back to NONE), but a failover: the
    // settled master changed from B to us. One answer at our version is
    // enough: with us, 2 of 3.
    let mut expected = fx.uses(&a, Some(17));
    expected.extend([
        Effect::Observe(Observation::Getvers("OK")),
        tr(&a, State::CheckingSlaves, "GETVERS_OK", State::Master),
        Effect::Observe(Observation::Failover),
    ]);
    assert_eq!(fx.on(2_020, getvers_equal(11)), expected);
    assert_eq!(
        fx.on(2_030, getvers_equal(12)),
        vec![Effect::Observe(Observation::Getvers("OK"))]
    );
    assert_eq!(fx.state(&a), State::Master);
}

// ----- 3. garbage and vanished lower nodes -----

#[test]
fn garbage_and_vanished_lower_nodes_are_skipped() {
    let mut fx = Fx::new();
    let a = base_a();
    to_listing(&mut fx, &a, 17);

    let other_key = fx.child(&base_b(), 1);
    let listing = vec![
        "garbage".to_string(),
        fx.child(&a, 20),
        fx.child(&a, 11),
        other_key,
        fx.child(&a, 17),
        fx.child(&a, 8),
        fx.child(&a, 5),
        fx.child(&a, 3),
    ];
    // Lower nodes are read from the lowest up; unparsable children, nodes of
    // other elections and higher nodes are never read.
    assert_eq!(
        fx.on(1_040, zk(4, Ok(ZkOk::Children(listing)))),
        vec![zk_effect(
            6,
            ZkOp::Get {
                path: fx.path(&a, 3),
                watch: 5
            }
        )]
    );

    // Not a service id: logged and skipped, the next lower node is read.
    let not_an_id = master_from_node(b"not an id", &fx.me, Some(&[fx.b.clone(), fx.c.clone()]))
        .expect_err("not a service id");
    assert!(matches!(not_an_id, MasterBadReason::Invalid(_)));
    assert_eq!(
        fx.on(1_050, zk(6, Ok(ZkOk::Data(b"not an id".to_vec())))),
        vec![
            Effect::Log(LogEvent::IgnoredNode {
                base: a.clone(),
                path: fx.path(&a, 3),
                why: format!("{not_an_id:?}"),
            }),
            zk_effect(
                8,
                ZkOp::Get {
                    path: fx.path(&a, 5),
                    watch: 7
                }
            ),
        ]
    );

    // A service that is not a peer of the base: skipped too.
    let stranger = sid("10.0.0.9:6001");
    assert_eq!(
        fx.on(1_060, zk(8, Ok(ZkOk::Data(b"10.0.0.9:6001".to_vec())))),
        vec![
            Effect::Log(LogEvent::IgnoredNode {
                base: a.clone(),
                path: fx.path(&a, 5),
                why: format!("{:?}", MasterBadReason::UnknownPeer(stranger)),
            }),
            zk_effect(
                10,
                ZkOp::Get {
                    path: fx.path(&a, 8),
                    watch: 9
                }
            ),
        ]
    );

    // Gone since the LIST: skipped silently.
    assert_eq!(
        fx.on(1_070, zk(10, Err(ZkFailure::NoNode))),
        vec![zk_effect(
            12,
            ZkOp::Get {
                path: fx.path(&a, 11),
                watch: 11
            }
        )]
    );
    assert_eq!(fx.state(&a), State::Listing);

    // C's node 11 is the lowest valid one: follow C, reusing the read.
    assert_eq!(
        fx.on(1_080, zk(12, Ok(ZkOk::Data(C.as_bytes().to_vec())))),
        vec![
            tr(&a, State::Listing, "LIST_OK", State::Asking),
            getvers_master(13, &fx.c, &a, 11),
            tr(&a, State::Asking, "MASTER_OK", State::CheckingMaster),
        ]
    );
    let fsm = &fx.e.view(&a).expect("election").fsm;
    assert_eq!(fsm.master(), Some(&fx.c));
    assert_eq!(fsm.master_id(), Some(11));
}

#[test]
fn only_garbage_below_us_makes_us_candidate() {
    let mut fx = Fx::new();
    let a = base_a();
    to_listing(&mut fx, &a, 17);
    let listing = vec![fx.child(&a, 17), fx.child(&a, 9)];
    assert_eq!(
        fx.on(1_040, zk(4, Ok(ZkOk::Children(listing)))),
        vec![zk_effect(
            6,
            ZkOp::Get {
                path: fx.path(&a, 9),
                watch: 5
            }
        )]
    );
    // An empty node: skipped, nothing else is below ours: candidate, with
    // the watch on our node (watch 7, op 8) beside the GETVERS round.
    let why =
        master_from_node(b"", &fx.me, Some(&[fx.b.clone(), fx.c.clone()])).expect_err("empty node");
    assert_eq!(
        fx.on(1_050, zk(6, Ok(ZkOk::Data(Vec::new())))),
        vec![
            Effect::Log(LogEvent::IgnoredNode {
                base: a.clone(),
                path: fx.path(&a, 9),
                why: format!("{why:?}"),
            }),
            zk_effect(
                8,
                ZkOp::Exists {
                    path: fx.path(&a, 17),
                    watch: Some(watch(0, 7))
                }
            ),
            getvers_candidate(9, &fx.b, &a, 17),
            getvers_candidate(10, &fx.c, &a, 17),
            tr(&a, State::Listing, "LIST_OK", State::CheckingSlaves),
        ]
    );
}

#[test]
fn a_failed_lower_read_fails_the_listing() {
    let mut fx = Fx::new();
    let a = base_a();
    to_listing(&mut fx, &a, 17);
    let listing = vec![fx.child(&a, 17), fx.child(&a, 9)];
    fx.on(1_040, zk(4, Ok(ZkOk::Children(listing))));
    // Not a "no node": the listing fails and we delete our node.
    assert_eq!(
        fx.on(
            1_050,
            zk(6, Err(ZkFailure::Failed("connection loss".into())))
        ),
        vec![
            zk_effect(
                7,
                ZkOp::Delete {
                    path: fx.path(&a, 17)
                }
            ),
            tr(&a, State::Listing, "LIST_KO", State::LeavingFailing),
        ]
    );
    assert_eq!(
        fx.e.view(&a).expect("election").fsm.last_error(),
        Some("listing failed: connection loss")
    );
}

#[test]
fn a_rogue_lower_node_of_ours_is_deleted_before_listing_again() {
    let mut fx = Fx::new();
    let a = base_a();
    to_listing(&mut fx, &a, 17);
    let listing = vec![fx.child(&a, 17), fx.child(&a, 9)];
    fx.on(1_040, zk(4, Ok(ZkOk::Children(listing))));
    // Node 9 carries our own id: a leftover of ours. DELETE, then the new
    // LIST right behind it (the session's FIFO makes the LIST see it gone).
    assert_eq!(
        fx.on(1_050, zk(6, Ok(ZkOk::Data(ME.as_bytes().to_vec())))),
        vec![
            tr(&a, State::Listing, "LIST_OK", State::Asking),
            zk_effect(
                7,
                ZkOp::Delete {
                    path: fx.path(&a, 9)
                }
            ),
            zk_effect(8, ZkOp::List { dir: fx.dir(&a) }),
            tr(&a, State::Asking, "MASTER_BAD", State::Listing),
        ]
    );
    assert_eq!(
        fx.on(1_060, zk(7, Ok(ZkOk::Deleted))),
        vec![Effect::Log(LogEvent::LeftoverDeleted {
            base: a.clone(),
            seq: 9
        })]
    );
    let listing = vec![fx.child(&a, 17)];
    assert_eq!(
        fx.on(1_070, zk(8, Ok(ZkOk::Children(listing)))),
        vec![
            zk_effect(
                10,
                ZkOp::Exists {
                    path: fx.path(&a, 17),
                    watch: Some(watch(0, 9))
                }
            ),
            getvers_candidate(11, &fx.b, &a, 17),
            getvers_candidate(12, &fx.c, &a, 17),
            tr(&a, State::Listing, "LIST_OK", State::CheckingSlaves),
        ]
    );
}

#[test]
fn a_listing_answered_before_the_create_is_kept_for_listing() {
    let mut fx = Fx::new();
    let a = base_a();
    fx.on(1_000, Input::SessionConnected(S1));
    fx.on(1_000, poke(&a));
    let peers = fx.all_peers();
    fx.on(1_010, peers_ok(2, peers));
    // The LIST answers first: kept, nothing happens yet.
    let listing = vec![fx.child(&a, 17)];
    assert_eq!(fx.on(1_020, zk(4, Ok(ZkOk::Children(listing)))), vec![]);
    assert_eq!(fx.state(&a), State::Creating);
    // The create then: LISTING uses the kept listing at once.
    assert_eq!(
        fx.on(
            1_030,
            zk(
                3,
                Ok(ZkOk::Created {
                    seq: 17,
                    owner: S1.id,
                }),
            ),
        ),
        vec![
            tr(&a, State::Creating, "CREATE_OK", State::Listing),
            zk_effect(
                6,
                ZkOp::Exists {
                    path: fx.path(&a, 17),
                    watch: Some(watch(0, 5))
                }
            ),
            getvers_candidate(7, &fx.b, &a, 17),
            getvers_candidate(8, &fx.c, &a, 17),
            tr(&a, State::Listing, "LIST_OK", State::CheckingSlaves),
        ]
    );
}

// ----- 4. the ownership check of our own node -----

#[test]
fn owner_mismatch_resets_the_election() {
    let mut fx = Fx::new();
    let a = base_a();
    fx.on(1_000, Input::SessionConnected(S1));
    fx.on(1_000, poke(&a));
    let peers = fx.all_peers();
    fx.on(1_010, peers_ok(2, peers));
    // Create's Stat names another session as the node's owner.
    let other = 0x99;
    fx.on(
        1_020,
        zk(
            3,
            Ok(ZkOk::Created {
                seq: 17,
                owner: other,
            }),
        ),
    );
    assert_eq!(fx.state(&a), State::Listing);

    // Our node is the lowest, but not known to be ours: ask its owner.
    let listing = vec![fx.child(&a, 17)];
    assert_eq!(
        fx.on(1_040, zk(4, Ok(ZkOk::Children(listing)))),
        vec![zk_effect(
            5,
            ZkOp::Exists {
                path: fx.path(&a, 17),
                watch: None
            }
        )]
    );
    assert_eq!(fx.state(&a), State::Listing);

    // Another session owns it: never lead on it, reset as on a lost session.
    assert_eq!(
        fx.on(1_050, zk(5, Ok(ZkOk::Stat(Some(other))))),
        vec![tr(&a, State::Listing, "DISCONNECTED", State::None)]
    );
    let fsm = &fx.e.view(&a).expect("election").fsm;
    assert_eq!(fsm.state(), State::None);
    assert_eq!(fsm.local_id(), None);
    assert_eq!(fsm.last_error(), Some("ZooKeeper session lost"));

    // The next start deletes that node before creating a new one.
    assert_eq!(
        fx.on(3_000, poke(&a)),
        vec![resolve(6, &a), tr(&a, State::None, "NONE", State::Peering)]
    );
    let peers = fx.all_peers();
    let mut expected = vec![zk_effect(
        7,
        ZkOp::Delete {
            path: fx.path(&a, 17),
        },
    )];
    expected.extend(fx.uses(&a, None));
    expected.extend([
        zk_effect(8, fx.create_op(&a)),
        zk_effect(9, ZkOp::List { dir: fx.dir(&a) }),
        tr(&a, State::Peering, "GETPEERS_DONE", State::Creating),
    ]);
    assert_eq!(fx.on(3_010, peers_ok(6, peers)), expected);
    assert_eq!(
        fx.on(3_020, zk(7, Ok(ZkOk::Deleted))),
        vec![Effect::Log(LogEvent::LeftoverDeleted {
            base: a.clone(),
            seq: 17
        })]
    );
}

#[test]
fn owner_unknown_at_create_is_checked_then_leads() {
    let mut fx = Fx::new();
    let a = base_a();
    fx.on(1_000, Input::SessionConnected(S1));
    fx.on(1_000, poke(&a));
    let peers = fx.all_peers();
    fx.on(1_010, peers_ok(2, peers));
    // No owner in create's Stat (0): unknown.
    fx.on(1_020, zk(3, Ok(ZkOk::Created { seq: 17, owner: 0 })));
    assert_eq!(fx.state(&a), State::Listing);
    let listing = vec![fx.child(&a, 17)];
    assert_eq!(
        fx.on(1_040, zk(4, Ok(ZkOk::Children(listing)))),
        vec![zk_effect(
            5,
            ZkOp::Exists {
                path: fx.path(&a, 17),
                watch: None
            }
        )]
    );
    // Ours: candidate, which watches its node (watch 6, op 7).
    assert_eq!(
        fx.on(1_050, zk(5, Ok(ZkOk::Stat(Some(S1.id))))),
        vec![
            zk_effect(
                7,
                ZkOp::Exists {
                    path: fx.path(&a, 17),
                    watch: Some(watch(0, 6))
                }
            ),
            getvers_candidate(8, &fx.b, &a, 17),
            getvers_candidate(9, &fx.c, &a, 17),
            tr(&a, State::Listing, "LIST_OK", State::CheckingSlaves),
        ]
    );
}

#[test]
fn owner_check_finding_no_node_fails_the_listing() {
    let mut fx = Fx::new();
    let a = base_a();
    fx.on(1_000, Input::SessionConnected(S1));
    fx.on(1_000, poke(&a));
    let peers = fx.all_peers();
    fx.on(1_010, peers_ok(2, peers));
    fx.on(1_020, zk(3, Ok(ZkOk::Created { seq: 17, owner: 0 })));
    let listing = vec![fx.child(&a, 17)];
    fx.on(1_040, zk(4, Ok(ZkOk::Children(listing))));
    assert_eq!(
        fx.on(1_050, zk(5, Ok(ZkOk::Stat(None)))),
        vec![
            zk_effect(
                6,
                ZkOp::Delete {
                    path: fx.path(&a, 17)
                }
            ),
            tr(&a, State::Listing, "LIST_KO", State::LeavingFailing),
        ]
    );
    assert_eq!(
        fx.e.view(&a).expect("election").fsm.last_error(),
        Some("listing failed: our node vanished")
    );
}

#[test]
fn a_listing_from_a_newer_session_asks_the_owner() {
    let mut fx = Fx::new();
    let a = base_a();
    to_listing(&mut fx, &a, 17);
    // The listing ran in a new session (S1 expired meanwhile): our node's
    // owner, S1, is not the current session.
    let listing = vec![fx.child(&a, 17)];
    assert_eq!(
        fx.on(1_040, zk_in(4, S2, Ok(ZkOk::Children(listing)))),
        vec![zk_effect(
            5,
            ZkOp::Exists {
                path: fx.path(&a, 17),
                watch: None
            }
        )]
    );
    assert_eq!(
        fx.on(1_050, zk_in(5, S2, Ok(ZkOk::Stat(Some(S1.id))))),
        vec![tr(&a, State::Listing, "DISCONNECTED", State::None)]
    );
}

// ----- 5. watches -----

#[test]
fn self_watch_deleted_restarts_the_master() {
    let mut fx = Fx::new();
    let a = base_a();
    elect_master(&mut fx, &a);

    // Our node is gone, deleted by someone else: the core restarts at once,
    // and reads the directory again rather than trust the peers it knew.
    let expected = vec![
        reread(9, &a),
        tr(&a, State::Master, "LEFT_SELF", State::Peering),
    ];
    assert_eq!(
        fx.on(
            5_000,
            Input::WatchFired {
                watch: watch(0, 5),
                deleted: true
            }
        ),
        expected
    );
    let fsm = &fx.e.view(&a).expect("election").fsm;
    assert_eq!(fsm.state(), State::Peering);
    assert_eq!(fsm.local_id(), None);
    // The next membership's generation starts at CREATING.
    assert_eq!(fsm.generation(), 1);
    assert_eq!(fsm.last_error(), Some("our node disappeared"));

    // The same watch again, an unknown one, one naming a slot that does not
    // exist: ignored.
    for w in [watch(0, 5), watch(0, 999), watch(5, 5)] {
        assert_eq!(
            fx.on(
                5_010,
                Input::WatchFired {
                    watch: w,
                    deleted: true
                }
            ),
            vec![],
            "watch {w:#x}"
        );
    }
    assert_eq!(fx.state(&a), State::Peering);
}

#[test]
fn a_self_watch_firing_without_deletion_changes_nothing() {
    let mut fx = Fx::new();
    let a = base_a();
    elect_master(&mut fx, &a);
    assert_eq!(
        fx.on(
            2_000,
            Input::WatchFired {
                watch: watch(0, 5),
                deleted: false
            }
        ),
        vec![]
    );
    assert_eq!(fx.state(&a), State::Master);
}

#[test]
fn exists_finding_no_node_restarts_the_creation() {
    let mut fx = Fx::new();
    let a = base_a();
    to_candidate(&mut fx, &a);
    assert_eq!(fx.state(&a), State::CheckingSlaves);
    // The slaves agree before the watch on our node answers: MASTER.
    fx.on(1_050, getvers_equal(7));
    fx.on(1_060, getvers_equal(8));
    assert_eq!(fx.state(&a), State::Master);
    // Our node had vanished before the EXISTS was processed: its answer
    // says so. Someone deleted it (an operator, a deletion of the base):
    // the election starts again from the directory, not from the peers it
    // knew (issue 14, H3).
    assert_eq!(
        fx.on(1_070, zk(6, Ok(ZkOk::Stat(None)))),
        vec![
            reread(9, &a),
            tr(&a, State::Master, "LEFT_SELF", State::Peering),
        ]
    );
    // The watch EXISTS left on the old node was never armed: its firing
    // changes nothing.
    assert_eq!(
        fx.on(
            1_080,
            Input::WatchFired {
                watch: watch(0, 5),
                deleted: true
            }
        ),
        vec![]
    );
    assert_eq!(fx.state(&a), State::Peering);
}

/// The same, the EXISTS answering while the slaves are still checked: its
/// answer is recorded silently, and the end of the round restarts the
/// creation instead of leading.
#[test]
fn exists_finding_no_node_during_the_round_restarts_the_creation() {
    let mut fx = Fx::new();
    let a = base_a();
    to_candidate(&mut fx, &a);
    assert_eq!(fx.on(1_045, zk(6, Ok(ZkOk::Stat(None)))), vec![]);
    assert_eq!(fx.state(&a), State::CheckingSlaves);
    assert_eq!(
        fx.on(1_050, getvers_equal(7)),
        vec![Effect::Observe(Observation::Getvers("OK"))]
    );
    assert_eq!(
        fx.on(1_060, getvers_equal(8)),
        vec![
            reread(9, &a),
            Effect::Observe(Observation::Getvers("OK")),
            tr(&a, State::CheckingSlaves, "GETVERS_OK", State::Peering),
        ]
    );
    let fsm = &fx.e.view(&a).expect("election").fsm;
    assert_eq!(fsm.state(), State::Peering);
    assert_eq!(fsm.local_id(), None);
}

// ----- 6. session loss and restoration -----

#[test]
fn session_lost_resets_only_elections_bound_to_its_epoch() {
    let mut fx = Fx::new();
    let (a, b) = (base_a(), base_b());
    elect_master(&mut fx, &a);
    assert_eq!(fx.e.view(&a).expect("a").bound_epoch, 1);

    // A new session; B's node is created in it.
    assert_eq!(fx.on(2_000, Input::SessionConnected(S2)), vec![]);
    assert_eq!(
        fx.on(2_000, poke(&b)),
        vec![resolve(10, &b), tr(&b, State::None, "NONE", State::Peering)]
    );
    let peers = fx.all_peers();
    let mut expected = fx.uses(&b, None);
    expected.extend([
        zk_effect(11, fx.create_op(&b)),
        zk_effect(12, ZkOp::List { dir: fx.dir(&b) }),
        tr(&b, State::Peering, "GETPEERS_DONE", State::Creating),
    ]);
    assert_eq!(fx.on(2_010, peers_ok(10, peers)), expected);
    assert_eq!(
        fx.on(
            2_020,
            zk_in(
                11,
                S2,
                Ok(ZkOk::Created {
                    seq: 30,
                    owner: S2.id
                })
            )
        ),
        vec![tr(&b, State::Creating, "CREATE_OK", State::Listing)]
    );
    assert_eq!(fx.e.view(&b).expect("b").bound_epoch, 2);

    // S1 is lost: only A (bound to it) is reset.
    assert_eq!(
        fx.on(3_000, Input::SessionLost { epoch: 1 }),
        vec![tr(&a, State::Master, "DISCONNECTED", State::None)]
    );
    assert_eq!(fx.state(&a), State::None);
    assert_eq!(fx.state(&b), State::Listing);
    // A second notice of the same loss changes nothing.
    assert_eq!(fx.on(3_100, Input::SessionLost { epoch: 1 }), vec![]);

    // A session is usable again: A rejoins, from PEERING (its peers were
    // forgotten with its membership); B is left alone.
    assert_eq!(
        fx.on(4_000, Input::SessionRestored),
        vec![resolve(13, &a), tr(&a, State::None, "NONE", State::Peering)]
    );
    assert_eq!(fx.state(&b), State::Listing);
    // Only once.
    assert_eq!(fx.on(4_100, Input::SessionRestored), vec![]);

    // A's node of the lost session is deleted before the new create, which
    // is bound to the current session.
    let peers = fx.all_peers();
    let mut expected = vec![zk_effect(
        14,
        ZkOp::Delete {
            path: fx.path(&a, 17),
        },
    )];
    expected.extend(fx.uses(&a, None));
    expected.extend([
        zk_effect(15, fx.create_op(&a)),
        zk_effect(16, ZkOp::List { dir: fx.dir(&a) }),
        tr(&a, State::Peering, "GETPEERS_DONE", State::Creating),
    ]);
    assert_eq!(fx.on(4_010, peers_ok(13, peers)), expected);
    assert_eq!(fx.e.view(&a).expect("a").bound_epoch, 2);
}

#[test]
fn a_session_lost_result_resets_the_election() {
    let mut fx = Fx::new();
    let a = base_a();
    to_listing(&mut fx, &a, 17);
    assert_eq!(
        fx.on(
            1_040,
            zk(4, Err(ZkFailure::SessionLost("session expired".into())))
        ),
        vec![tr(&a, State::Listing, "DISCONNECTED", State::None)]
    );
}

// ----- 7. idle expiry -----

#[test]
fn idle_none_election_expires_at_next_wakeup() {
    let mut fx = Fx::new();
    let (a, b) = (base_a(), base_b());
    assert_eq!(
        fx.on(1_000, poke(&a)),
        vec![resolve(2, &a), tr(&a, State::None, "NONE", State::Peering)]
    );
    assert_eq!(
        fx.on(1_000, poke(&b)),
        vec![resolve(4, &b), tr(&b, State::None, "NONE", State::Peering)]
    );
    // Both leave while PEERING: back to NONE at once.
    assert_eq!(
        fx.on(1_100, Input::Leave { base: a.clone() }),
        vec![tr(&a, State::Peering, "LEAVE_REQ", State::None)]
    );
    assert_eq!(
        fx.on(1_100, Input::Leave { base: b.clone() }),
        vec![tr(&b, State::Peering, "LEAVE_REQ", State::None)]
    );
    assert_eq!(fx.e.next_wakeup(), Some(1_100 + EXPIRE_NONE));

    // B is wanted again before it expires.
    assert_eq!(
        fx.on(55_000, poke(&b)),
        vec![resolve(5, &b), tr(&b, State::None, "NONE", State::Peering)]
    );
    assert_eq!(fx.e.next_wakeup(), Some(1_100 + EXPIRE_NONE));

    // Not yet.
    assert_eq!(fx.on(1_099 + EXPIRE_NONE, Input::Tick), vec![]);
    assert!(fx.e.view(&a).is_some());

    // At the wake-up: A is forgotten, silently; B is not.
    let at = fx.e.next_wakeup().expect("a timer");
    assert_eq!(fx.on(at, Input::Tick), vec![]);
    assert!(fx.e.view(&a).is_none());
    assert_eq!(fx.state(&b), State::Peering);
    assert_eq!(fx.e.elections().count(), 1);
    assert_eq!(fx.e.next_wakeup(), Some(55_000 + PENDING_TIMEOUT));

    // A poke brings A back as a new election (a new slot id).
    assert_eq!(
        fx.on(62_000, poke(&a)),
        vec![resolve(7, &a), tr(&a, State::None, "NONE", State::Peering)]
    );
}

#[test]
fn leave_does_not_create_an_election() {
    let mut fx = Fx::new();
    let a = base_a();
    assert_eq!(fx.on(1_000, Input::Leave { base: a.clone() }), vec![]);
    assert_eq!(
        fx.on(1_000, Input::LeaveAndRejoin { base: a.clone() }),
        vec![]
    );
    assert!(fx.e.view(&a).is_none());
    assert_eq!(fx.e.next_wakeup(), None);
}

#[test]
fn a_pending_state_times_out_then_fails_then_goes_idle() {
    let mut fx = Fx::new();
    let a = base_a();
    // Started by a peer (no client touched it): not wanted.
    fx.on(
        1_000,
        Input::Poke {
            base: a.clone(),
            touch: false,
        },
    );
    let deadline = 1_000 + PENDING_TIMEOUT;
    assert_eq!(fx.e.next_wakeup(), Some(deadline));
    // The core logs the expiry as TIMEOUT; the observed event is the poke.
    assert_eq!(
        fx.on(deadline, Input::Tick),
        vec![tr(&a, State::Peering, "NONE", State::Failed)]
    );
    // The late answer of the abandoned resolution: nothing.
    let peers = fx.all_peers();
    assert_eq!(fx.on(deadline + 1, peers_ok(2, peers)), vec![]);
    assert_eq!(fx.state(&a), State::Failed);

    // FAILED's back-off ends; nobody asked again: NONE.
    let wake = fx.e.next_wakeup().expect("back-off");
    assert!(wake > deadline && wake <= deadline + 250, "{wake}");
    assert_eq!(fx.on(wake - 1, Input::Tick), vec![]);
    assert_eq!(
        fx.on(wake, Input::Tick),
        vec![tr(&a, State::Failed, "NONE", State::None)]
    );
    assert_eq!(fx.e.next_wakeup(), Some(wake + EXPIRE_NONE));
    assert_eq!(fx.on(wake + EXPIRE_NONE, Input::Tick), vec![]);
    assert!(fx.e.view(&a).is_none());
}

/// An election a client asked for keeps trying after it failed, with no
/// further request, with a growing back-off (issue 14's lost elections).
#[test]
fn a_wanted_election_retries_without_a_request() {
    let mut fx = Fx::new();
    let a = base_a();
    fx.on(1_000, poke(&a));
    let deadline = 1_000 + PENDING_TIMEOUT;
    fx.on(deadline, Input::Tick);
    assert_eq!(fx.state(&a), State::Failed);
    let wake = fx.e.next_wakeup().expect("back-off");
    fx.on(wake, Input::Tick);
    assert_eq!(fx.state(&a), State::None);
    assert!(fx.e.view(&a).is_some_and(|s| s.want));
    let retry = fx.e.next_wakeup().expect("a retry");
    assert!(
        retry < wake + EXPIRE_NONE,
        "retries before it expires: {retry}"
    );
    assert_eq!(fx.on(retry - 1, Input::Tick), vec![]);
    let effects = fx.on(retry, Input::Tick);
    assert!(
        matches!(effects.first(), Some(Effect::ResolvePeers { .. })),
        "{effects:?}"
    );
    assert_eq!(fx.state(&a), State::Peering);
    // A leave asked by an operator ends the want: no more retries.
    fx.on(retry + 1, Input::Leave { base: a.clone() });
    assert!(fx.e.view(&a).is_none_or(|s| !s.want));
}

/// The grace period of a disconnection is the engine's: a reconnection
/// within it changes nothing; past it, the elections bound to the session
/// are reset, once; connected again to the same session, they rejoin.
#[test]
fn a_disconnection_past_the_grace_resets_and_the_reconnection_rejoins() {
    let mut fx = Fx::new();
    let a = base_a();
    elect_master(&mut fx, &a);
    let grace = EngineConfig::default().grace_ms;
    assert_eq!(fx.on(2_000, Input::Disconnected { epoch: 1 }), vec![]);
    assert_eq!(fx.e.next_wakeup(), Some(2_000 + grace));
    assert_eq!(fx.on(3_000, Input::Reconnected { epoch: 1 }), vec![]);
    assert_eq!(fx.on(2_000 + grace, Input::Tick), vec![]);
    assert_eq!(fx.state(&a), State::Master);

    let lost = 10_000 + grace;
    fx.on(10_000, Input::Disconnected { epoch: 1 });
    assert_eq!(fx.on(lost - 1, Input::Tick), vec![]);
    assert_eq!(
        fx.on(lost, Input::Tick),
        vec![
            Effect::Log(LogEvent::GraceSpent {
                epoch: 1,
                grace_ms: grace
            }),
            tr(&a, State::Master, "DISCONNECTED", State::None),
        ]
    );
    // Another notice of the same disconnection changes nothing.
    assert_eq!(fx.on(lost + 1, Input::Disconnected { epoch: 1 }), vec![]);
    assert_eq!(fx.on(lost + 2 * grace, Input::Tick), vec![]);
    // The same session is back: A rejoins, once.
    let effects = fx.on(lost + 2 * grace, Input::Reconnected { epoch: 1 });
    assert!(
        matches!(effects.first(), Some(Effect::ResolvePeers { .. })),
        "{effects:?}"
    );
    assert_eq!(fx.state(&a), State::Peering);
    assert_eq!(
        fx.on(lost + 2 * grace, Input::Reconnected { epoch: 1 }),
        vec![]
    );
}

/// Without a session, a wanted election's retry waits for the session to
/// come back instead of failing in a loop (a ZooKeeper outage must not turn
/// every wanted election into a retry every few seconds).
#[test]
fn retries_wait_for_the_session() {
    let mut fx = Fx::new();
    let a = base_a();
    fx.on(1_000, Input::SessionConnected(S1));
    fx.on(1_000, poke(&a));
    fx.on(1_000 + PENDING_TIMEOUT, Input::Tick);
    let wake = fx.e.next_wakeup().expect("back-off");
    fx.on(wake, Input::Tick);
    assert_eq!(fx.state(&a), State::None);
    let retry = fx.e.next_wakeup().expect("a retry");
    fx.on(retry - 1, Input::SessionLost { epoch: 1 });
    assert_eq!(fx.on(retry, Input::Tick), vec![]);
    assert_eq!(fx.state(&a), State::None);
    // Still wanted, so not forgotten by idle expiry while it waits.
    assert_eq!(fx.on(retry + EXPIRE_NONE, Input::Tick), vec![]);
    assert!(fx.e.view(&a).is_some_and(|s| s.want));
    fx.on(retry + EXPIRE_NONE + 1, Input::SessionConnected(S2));
    let effects = fx.on(retry + EXPIRE_NONE + 1, Input::SessionRestored);
    assert!(
        matches!(effects.first(), Some(Effect::ResolvePeers { .. })),
        "{effects:?}"
    );
    assert_eq!(fx.state(&a), State::Peering);
}

/// At most `max_in_flight` elections run between NONE and a final state;
/// the others wait in NONE with no deadline running, clients' first.
#[test]
fn admission_bounds_elections_in_flight() {
    let cfg = EngineConfig {
        expire_none_ms: EXPIRE_NONE,
        max_in_flight: 1,
        ..Default::default()
    };
    let mut e = Engine::new(
        cfg,
        ServiceId::new(ME).expect("id"),
        ServiceType::new("meta2").expect("type"),
        ZkLayout::new(Namespace::new("NS").expect("ns")),
    );
    let (a, b) = (base_a(), base_b());
    let peer_poke = |base: &BaseName| Input::Poke {
        base: base.clone(),
        touch: false,
    };
    e.handle(now(1_000), peer_poke(&a));
    e.handle(now(1_000), peer_poke(&b));
    let _ = e.drain().count();
    assert_eq!(e.view(&a).map(|s| s.fsm.state()), Some(State::Peering));
    assert_eq!(e.view(&b).map(|s| s.fsm.state()), Some(State::None));
    assert!(e.view(&b).is_some_and(|s| s.queued));
    assert_eq!((e.in_flight(), e.queued()), (1, 1));
    // A's deadline runs, B's does not: when A fails, B is admitted.
    assert_eq!(e.next_wakeup(), Some(1_000 + PENDING_TIMEOUT));
    e.handle(now(1_000 + PENDING_TIMEOUT), Input::Tick);
    let _ = e.drain().count();
    assert_eq!(e.view(&a).map(|s| s.fsm.state()), Some(State::Failed));
    assert_eq!(e.view(&b).map(|s| s.fsm.state()), Some(State::Peering));
    assert_eq!((e.in_flight(), e.queued()), (1, 0));
}

/// A candidate that steps aside for a newer replica rejoins through
/// admission, behind the elections already queued: restarting at once, it
/// kept the only slot while the newer replica's service waited for ours
/// (sim seed 23959).
#[test]
fn a_rejoin_queues_behind_waiting_elections() {
    let mut fx = Fx::with(|cfg| cfg.max_in_flight = 1);
    let (a, b) = (base_a(), base_b());
    step_aside(&mut fx, &a);
    assert_eq!(fx.state(&a), State::Leaving);
    assert!(fx.on(1_065, poke(&b)).is_empty(), "B waits: A is in flight");
    assert_eq!(
        fx.on(1_070, zk(9, Ok(ZkOk::Deleted))),
        vec![
            tr(&a, State::Leaving, "LEAVE_OK", State::None),
            // Id 10 went to B's slot.
            resolve(11, &b),
            tr(&b, State::None, "NONE", State::Peering)
        ]
    );
    assert_eq!(fx.state(&a), State::None);
    assert!(fx.e.view(&a).is_some_and(|s| s.queued));
    assert_eq!((fx.e.in_flight(), fx.e.queued()), (1, 1));
}

/// An operator's leave during a ZooKeeper outage cannot delete our node:
/// the election stays out, and the node, which the peers follow as their
/// master's, is deleted once ZooKeeper answers again, with back-off, even
/// after the election was forgotten (sim seed 12749).
#[test]
fn a_node_left_behind_by_a_failed_leave_is_deleted_later() {
    let mut fx = Fx::new();
    let a = base_a();
    elect_master(&mut fx, &a);
    let lost = || Err(ZkFailure::Failed("connection loss".into()));
    let del = |id| {
        zk_effect(
            id,
            ZkOp::Delete {
                path: fx.path(&a, 17),
            },
        )
    };
    let (d9, d10, d11, d12, d13) = (del(9), del(10), del(11), del(12), del(13));
    let leave = fx.on(2_000, Input::Leave { base: a.clone() });
    assert_eq!(leave[..2], [farewell(&fx, &a, 17), d9], "{leave:?}");
    let ko = fx.on(2_010, zk(9, lost()));
    assert_eq!(ko[0], d10, "deleted again from LEAVING_FAILING: {ko:?}");
    fx.on(2_020, zk(10, lost()));
    assert_eq!(fx.state(&a), State::Failed);

    // The back-off ends: no rejoin (the operator asked to leave), but the
    // node goes.
    let wake = fx.e.next_wakeup().expect("FAILED wakes");
    assert_eq!(
        fx.on(wake, Input::Tick),
        vec![d11, tr(&a, State::Failed, "NONE", State::None)]
    );
    // Still no ZooKeeper: retried after 250 ms, then 500 ms.
    assert!(fx.on(wake + 1, zk(11, lost())).is_empty());
    assert_eq!(fx.e.next_wakeup(), Some(wake + 1 + 250));
    assert_eq!(fx.on(wake + 251, Input::Tick), vec![d12]);
    assert!(fx.on(wake + 252, zk(12, lost())).is_empty());
    assert_eq!(fx.e.next_wakeup(), Some(wake + 252 + 500));
    // The election itself is forgotten meanwhile; the node is not.
    fx.e.forget(&a);
    assert_eq!(fx.on(wake + 752, Input::Tick), vec![d13]);
    assert_eq!(
        fx.on(wake + 760, zk(13, Ok(ZkOk::Deleted))),
        vec![Effect::Log(LogEvent::LeftoverDeleted {
            base: a.clone(),
            seq: 17
        })]
    );
    assert_eq!(fx.e.next_wakeup(), None);
}

/// A new session means the one holding a leftover node expired, and the
/// node with it: no more deletes.
#[test]
fn a_leftover_of_an_expired_session_is_not_deleted() {
    let mut fx = Fx::new();
    let a = base_a();
    elect_master(&mut fx, &a);
    let lost = || Err(ZkFailure::Failed("connection loss".into()));
    fx.on(2_000, Input::Leave { base: a.clone() });
    fx.on(2_010, zk(9, lost()));
    fx.on(2_020, zk(10, lost()));
    let wake = fx.e.next_wakeup().expect("FAILED wakes");
    fx.on(wake, Input::Tick);
    fx.on(wake + 1, zk(11, lost()));
    fx.on(
        wake + 2,
        Input::SessionConnected(SessionTag {
            epoch: S1.epoch + 1,
            id: 99,
        }),
    );
    assert!(fx.on(wake + 251, Input::Tick).is_empty());
    // What remains is the idle election's expiry.
    assert!(fx.e.next_wakeup() > Some(wake + 10_000));
}

// ----- 8. serving GETVERS, and the fence -----

#[test]
fn serve_getvers_checks_ownership() {
    let mut fx = Fx::new();
    let (a, x) = (base_a(), base_b());
    elect_master(&mut fx, &a);

    assert_eq!(fx.e.serve_getvers(now(2_000), &a, Some(17)), Ok(()));
    assert_eq!(fx.e.serve_getvers(now(2_000), &a, None), Ok(()));
    assert_eq!(
        fx.e.serve_getvers(now(2_000), &a, Some(16)),
        Err(NotOwner {
            seq: 16,
            owned: Some(17),
            state: State::Master
        })
    );
    // Serving pokes a settled master: nothing to do.
    assert_eq!(drain(&mut fx.e), vec![]);

    // A GETVERS for a base we have no election of starts ours (DB_VERS).
    assert_eq!(
        fx.e.serve_getvers(now(2_000), &x, Some(5)),
        Err(NotOwner {
            seq: 5,
            owned: None,
            state: State::Peering
        })
    );
    assert_eq!(
        drain(&mut fx.e),
        vec![resolve(10, &x), tr(&x, State::None, "NONE", State::Peering)]
    );
}

#[test]
fn serve_getvers_while_exiting_starts_nothing() {
    let mut fx = Fx::new();
    let x = base_a();
    assert_eq!(fx.on(1_000, Input::ExitFast), vec![]);
    assert_eq!(
        fx.e.serve_getvers(now(1_000), &x, Some(5)),
        Err(NotOwner {
            seq: 5,
            owned: None,
            state: State::None
        })
    );
    assert_eq!(fx.e.serve_getvers(now(1_000), &x, None), Ok(()));
    assert_eq!(drain(&mut fx.e), vec![]);
    assert!(fx.e.view(&x).is_none());
}

#[test]
fn the_fence_keeps_the_latest_seq_across_the_wrap() {
    let mut fx = Fx::new();
    let (a, y) = (base_a(), base_b());
    elect_master(&mut fx, &a);
    assert_eq!(fx.e.fence(&a), None);

    // Raising the fence of an absent base creates it, idle.
    fx.e.raise_fence(now(2_000), &y, 100);
    assert_eq!(fx.e.fence(&y), Some(100));
    assert_eq!(fx.state(&y), State::None);
    assert_eq!(drain(&mut fx.e), vec![]);

    let max = Seq::from(i32::MAX);
    let min = Seq::from(i32::MIN);
    for (raise, fence) in [
        (50, 100),          // older: kept
        (max, max),         // newer
        (min, min),         // the counter wrapped: i32::MIN follows i32::MAX
        (max - 1_000, min), // from before the wrap: older
        (min + 3, min + 3), // after the wrap: newer
    ] {
        let before = fx.e.fence(&y).expect("fence");
        fx.e.raise_fence(now(2_000), &y, raise);
        assert_eq!(fx.e.fence(&y), Some(fence), "raise {raise}");
        assert_eq!(fence, seq_latest(before, raise));
    }
    assert_eq!(fx.e.fence(&a), None, "per base");

    // An idle election forgets its fence with itself.
    let at = 2_000 + EXPIRE_NONE;
    assert_eq!(fx.on(at, Input::Tick), vec![]);
    assert!(fx.e.view(&y).is_none());
    assert_eq!(fx.e.fence(&y), None);
}

// ----- 9. resynchronisation -----

#[test]
fn sync_is_aborted_when_leaving_syncing_and_its_late_answer_ignored() {
    let mut fx = Fx::new();
    let a = base_a();
    follow_b(&mut fx, &a);

    assert_eq!(
        fx.on(2_000, Input::SyncReq { base: a.clone() }),
        vec![
            Effect::Sync {
                id: 8,
                base: a.clone(),
                master: fx.b.clone()
            },
            tr(&a, State::Slave, "SYNC_REQ", State::Syncing),
        ]
    );
    assert_eq!(
        fx.e.next_wakeup(),
        Some(2_000 + Config::default().sync_timeout_ms)
    );

    // The master's node is gone: stop waiting for its copy.
    assert_eq!(
        fx.on(
            2_100,
            Input::WatchFired {
                watch: watch(0, 5),
                deleted: true
            }
        ),
        vec![
            zk_effect(9, ZkOp::List { dir: fx.dir(&a) }),
            Effect::AbortSync {
                id: 8,
                base: a.clone()
            },
            tr(&a, State::Syncing, "LEFT_MASTER", State::Listing),
        ]
    );
    // The copy's answer comes anyway: ignored.
    assert_eq!(
        fx.on(
            2_200,
            Input::Synced {
                id: 8,
                result: Ok(()),
                floor: 0,
            }
        ),
        vec![]
    );
    assert_eq!(fx.state(&a), State::Listing);
}

#[test]
fn a_completed_sync_returns_to_slave() {
    let mut fx = Fx::new();
    let a = base_a();
    follow_b(&mut fx, &a);
    fx.on(2_000, Input::SyncReq { base: a.clone() });
    assert_eq!(
        fx.on(
            2_500,
            Input::Synced {
                id: 8,
                result: Ok(()),
                floor: 0,
            }
        ),
        vec![
            Effect::Observe(Observation::Resynced),
            Effect::Log(LogEvent::Restored {
                base: a.clone(),
                master: fx.b.clone()
            }),
            tr(&a, State::Syncing, "SYNC_OK", State::Slave),
        ]
    );
    // Answered once: a duplicate is ignored.
    assert_eq!(
        fx.on(
            2_600,
            Input::Synced {
                id: 8,
                result: Ok(()),
                floor: 0,
            }
        ),
        vec![]
    );
    assert_eq!(fx.state(&a), State::Slave);
}

#[test]
fn a_getvers_old_makes_the_follower_sync() {
    let mut fx = Fx::new();
    let a = base_a();
    to_listing(&mut fx, &a, 17);
    let listing = vec![fx.child(&a, 12), fx.child(&a, 17)];
    fx.on(1_040, zk(4, Ok(ZkOk::Children(listing))));
    fx.on(1_050, zk(6, Ok(ZkOk::Data(B.as_bytes().to_vec()))));
    // We are behind our master: copy its base.
    assert_eq!(
        fx.on(
            1_060,
            Input::Getvers {
                id: 7,
                remote: Ok(RemoteVersion::Version(version(4))),
                local: Ok(version(3)),
            }
        ),
        vec![
            Effect::Sync {
                id: 8,
                base: a.clone(),
                master: fx.b.clone()
            },
            Effect::Observe(Observation::Getvers("OLD")),
            tr(&a, State::CheckingMaster, "GETVERS_OLD", State::Syncing),
        ]
    );
}

// ----- 10. late and unknown results -----

#[test]
fn unknown_ids_are_ignored() {
    let mut fx = Fx::new();
    let a = base_a();
    let peers = fx.all_peers();
    for input in [
        zk(42, Ok(ZkOk::Created { seq: 1, owner: 1 })),
        zk(42, Err(ZkFailure::SessionLost("expired".into()))),
        peers_ok(42, peers),
        getvers_equal(42),
        Input::Synced {
            id: 42,
            result: Ok(()),
            floor: 0,
        },
        Input::WatchFired {
            watch: 42,
            deleted: true,
        },
    ] {
        assert_eq!(fx.on(1_000, input), vec![]);
    }
    assert_eq!(fx.e.elections().count(), 0);

    // With an election running, an id of the wrong kind is ignored too:
    // 2 is its ResolvePeers, not a ZooKeeper op.
    fx.on(1_000, poke(&a));
    assert_eq!(fx.on(1_010, zk(2, Ok(ZkOk::Deleted))), vec![]);
    assert_eq!(fx.on(1_010, zk(3, Ok(ZkOk::Deleted))), vec![]);
    assert_eq!(fx.state(&a), State::Peering);
}

#[test]
fn results_for_a_removed_election_are_ignored() {
    let mut fx = Fx::new();
    let (a, b) = (base_a(), base_b());
    fx.on(1_000, Input::SessionConnected(S1));
    // Started by a peer: not wanted, so it may expire.
    fx.on(
        1_000,
        Input::Poke {
            base: a.clone(),
            touch: false,
        },
    );
    let peers = fx.all_peers();
    fx.on(1_010, peers_ok(2, peers));
    assert_eq!(fx.state(&a), State::Creating);
    // The session is lost with the create in flight: A resets, then expires
    // before the session is restored.
    assert_eq!(
        fx.on(1_020, Input::SessionLost { epoch: 1 }),
        vec![tr(&a, State::Creating, "DISCONNECTED", State::None)]
    );
    assert_eq!(fx.on(1_020 + EXPIRE_NONE, Input::Tick), vec![]);
    assert!(fx.e.view(&a).is_none());

    // B takes A's slot.
    assert_eq!(
        fx.on(62_000, poke(&b)),
        vec![resolve(6, &b), tr(&b, State::None, "NONE", State::Peering)]
    );

    // A's late answers reach neither A nor B.
    assert_eq!(
        fx.on(
            62_010,
            zk(
                3,
                Ok(ZkOk::Created {
                    seq: 17,
                    owner: S1.id
                })
            )
        ),
        vec![]
    );
    let listing = vec![fx.child(&a, 17)];
    assert_eq!(fx.on(62_010, zk(4, Ok(ZkOk::Children(listing)))), vec![]);
    let peers = fx.all_peers();
    assert_eq!(fx.on(62_010, peers_ok(2, peers)), vec![]);
    assert!(fx.e.view(&a).is_none());
    assert_eq!(fx.state(&b), State::Peering);
    // The session came back meanwhile: nothing to rejoin.
    assert_eq!(fx.on(62_020, Input::SessionRestored), vec![]);

    // B's own answer still works.
    let peers = fx.all_peers();
    let mut expected = fx.uses(&b, None);
    expected.extend([
        zk_effect(7, fx.create_op(&b)),
        zk_effect(8, ZkOp::List { dir: fx.dir(&b) }),
        tr(&b, State::Peering, "GETPEERS_DONE", State::Creating),
    ]);
    assert_eq!(fx.on(62_030, peers_ok(6, peers)), expected);
}

#[test]
fn a_late_create_is_deleted_at_once() {
    let mut fx = Fx::new();
    let a = base_a();
    fx.on(1_000, Input::SessionConnected(S1));
    fx.on(1_000, poke(&a));
    let peers = fx.all_peers();
    fx.on(1_010, peers_ok(2, peers));
    // CREATING times out, the election fails.
    assert_eq!(
        fx.on(1_010 + PENDING_TIMEOUT, Input::Tick),
        vec![tr(&a, State::Creating, "NONE", State::Failed)]
    );
    // The create succeeds after all: its node is deleted, never followed.
    assert_eq!(
        fx.on(
            13_100,
            zk(
                3,
                Ok(ZkOk::Created {
                    seq: 17,
                    owner: S1.id
                })
            )
        ),
        vec![zk_effect(
            5,
            ZkOp::Delete {
                path: fx.path(&a, 17)
            }
        )]
    );
    // The LIST pipelined behind it answers late too: nothing.
    let listing = vec![fx.child(&a, 17)];
    assert_eq!(fx.on(13_150, zk(4, Ok(ZkOk::Children(listing)))), vec![]);
    assert_eq!(
        fx.on(13_200, zk(5, Ok(ZkOk::Deleted))),
        vec![Effect::Log(LogEvent::LeftoverDeleted {
            base: a.clone(),
            seq: 17
        })]
    );
    assert_eq!(fx.state(&a), State::Failed);
}

// ----- 11. stop-writes, double masters, exit -----

#[test]
fn stop_writes_hands_mastership_over() {
    let mut fx = Fx::new();
    let a = base_a();
    elect_master(&mut fx, &a);

    assert_eq!(
        fx.on(5_000, Input::StopWrites(true)),
        vec![
            Effect::Log(LogEvent::StopWrites { masters: 1 }),
            farewell(&fx, &a, 17),
            zk_effect(
                9,
                ZkOp::Delete {
                    path: fx.path(&a, 17)
                }
            ),
            tr(&a, State::Master, "LEAVE_REQ", State::Leaving),
        ]
    );
    assert!(!fx.e.allows_master());
    assert_eq!(fx.state(&a), State::Leaving);

    // Node deleted: back at once as a new member, peers resolved afresh.
    assert_eq!(
        fx.on(5_010, zk(9, Ok(ZkOk::Deleted))),
        vec![
            tr(&a, State::Leaving, "LEAVE_OK", State::None),
            resolve(10, &a),
            tr(&a, State::None, "NONE", State::Peering)
        ]
    );
    let peers = fx.all_peers();
    let mut expected = fx.uses(&a, None);
    expected.extend([
        zk_effect(11, fx.create_op(&a)),
        zk_effect(12, ZkOp::List { dir: fx.dir(&a) }),
        tr(&a, State::Peering, "GETPEERS_DONE", State::Creating),
    ]);
    assert_eq!(fx.on(5_020, peers_ok(10, peers)), expected);
    assert_eq!(
        fx.on(
            5_030,
            zk(
                11,
                Ok(ZkOk::Created {
                    seq: 40,
                    owner: S1.id,
                }),
            ),
        ),
        vec![tr(&a, State::Creating, "CREATE_OK", State::Listing)]
    );
    // Lowest again, but mastership is refused: step aside.
    let listing = vec![fx.child(&a, 40)];
    assert_eq!(
        fx.on(5_050, zk(12, Ok(ZkOk::Children(listing)))),
        vec![
            zk_effect(
                13,
                ZkOp::Delete {
                    path: fx.path(&a, 40)
                }
            ),
            tr(&a, State::Listing, "LIST_OK", State::LeavingFailing),
        ]
    );

    // Leaving stop-writes: allowed again, nothing to hand over.
    assert_eq!(fx.on(6_000, Input::StopWrites(false)), vec![]);
    assert!(fx.e.allows_master());
}

#[test]
fn stop_writes_reaches_elections_created_after_it() {
    let mut fx = Fx::new();
    let a = base_a();
    assert_eq!(
        fx.on(900, Input::StopWrites(true)),
        vec![Effect::Log(LogEvent::StopWrites { masters: 0 })]
    );
    to_listing(&mut fx, &a, 17);
    // Our node is the lowest, but this service may not lead.
    let listing = vec![fx.child(&a, 17)];
    assert_eq!(
        fx.on(1_040, zk(4, Ok(ZkOk::Children(listing)))),
        vec![
            zk_effect(
                5,
                ZkOp::Delete {
                    path: fx.path(&a, 17)
                }
            ),
            tr(&a, State::Listing, "LIST_OK", State::LeavingFailing),
        ]
    );
}

#[test]
fn a_peer_claiming_our_mastership_makes_us_leave_and_rejoin() {
    let mut fx = Fx::new();
    let a = base_a();
    elect_master(&mut fx, &a);
    // Issue 14, Hm1: a late announcement from B's older mastership (node
    // 12, below our 17) is logged and ignored. Before epochs were carried,
    // any claim made the current master leave.
    assert_eq!(
        fx.on(
            1_990,
            Input::UseReceived {
                base: a.clone(),
                from: fx.b.clone(),
                master: Some(12)
            }
        ),
        vec![Effect::Log(LogEvent::StaleMasterClaim {
            base: a.clone(),
            from: fx.b.clone(),
            epoch: 12,
            ours: 17
        })]
    );
    assert_eq!(fx.state(&a), State::Master);
    // A claim from a newer node: ours must be gone, we leave and rejoin.
    assert_eq!(
        fx.on(
            2_000,
            Input::UseReceived {
                base: a.clone(),
                from: fx.b.clone(),
                master: Some(20)
            }
        ),
        vec![
            Effect::Log(LogEvent::DoubleMaster {
                base: a.clone(),
                from: fx.b.clone()
            }),
            zk_effect(
                9,
                ZkOp::Delete {
                    path: fx.path(&a, 17)
                }
            ),
            tr(&a, State::Master, "LEAVE_REQ", State::Leaving),
        ]
    );
    assert_eq!(
        fx.on(2_010, zk(9, Ok(ZkOk::Deleted))),
        vec![
            tr(&a, State::Leaving, "LEAVE_OK", State::None),
            resolve(10, &a),
            tr(&a, State::None, "NONE", State::Peering)
        ]
    );
    // An ordinary USE to a settled master: nothing.
    let mut fx = Fx::new();
    elect_master(&mut fx, &a);
    assert_eq!(
        fx.on(
            2_000,
            Input::UseReceived {
                base: a.clone(),
                from: fx.b.clone(),
                master: None
            }
        ),
        vec![]
    );
}

#[test]
fn exit_leaves_every_election_and_starts_none() {
    let mut fx = Fx::new();
    let (a, c) = (base_a(), base_c());
    elect_master(&mut fx, &a);
    assert_eq!(
        fx.on(3_000, Input::Exit),
        vec![
            farewell(&fx, &a, 17),
            zk_effect(
                9,
                ZkOp::Delete {
                    path: fx.path(&a, 17)
                }
            ),
            tr(&a, State::Master, "LEAVE_REQ", State::Leaving),
        ]
    );
    assert!(fx.e.is_exiting());
    // Left for good: no rejoin.
    assert_eq!(
        fx.on(3_010, zk(9, Ok(ZkOk::Deleted))),
        vec![tr(&a, State::Leaving, "LEAVE_OK", State::None)]
    );
    assert_eq!(fx.e.members(), 0);
    // New elections are refused.
    assert_eq!(fx.on(3_020, poke(&c)), vec![]);
    assert_eq!(fx.state(&c), State::None);
    assert_eq!(fx.on(3_020, poke(&a)), vec![]);
    assert_eq!(fx.state(&a), State::None);
}

// ----- GETVERS outcomes -----

/// The last answer of a candidate's round, a KO, leaves it without a
/// quorum: it backs off.
fn last_ko_backs_off(a: &BaseName) -> Vec<Effect> {
    vec![
        Effect::Observe(Observation::Getvers("KO")),
        tr(
            a,
            State::CheckingSlaves,
            "GETVERS_KO",
            State::DelayedCheckingSlaves,
        ),
    ]
}

/// A candidate (node 17) in DELAYED_CHECKING_SLAVES: nothing before its
/// back-off ends, then its GETVERS round again (ids 9 and 10). Returns when.
fn asks_again_after_back_off(fx: &mut Fx, a: &BaseName) -> u64 {
    let wake = fx.e.next_wakeup().expect("back-off");
    assert_eq!(fx.on(wake - 1, Input::Tick), vec![]);
    assert_eq!(
        fx.on(wake, Input::Tick),
        vec![
            getvers_candidate(9, &fx.b, a, 17),
            getvers_candidate(10, &fx.c, a, 17),
            tr(
                a,
                State::DelayedCheckingSlaves,
                "NONE",
                State::CheckingSlaves
            ),
        ]
    );
    wake
}

#[test]
fn rookie_unknown_versions_delay_the_candidacy() {
    let mut fx = Fx::new();
    let a = base_a();
    to_candidate(&mut fx, &a);
    assert!(fx.on(1_045, zk(6, Ok(ZkOk::Stat(Some(S1.id))))).is_empty());

    let loading = |id| Input::Getvers {
        id,
        remote: Ok(RemoteVersion::Version(ReplicaVersion::Unknown {
            reason: "loading".into(),
        })),
        local: Ok(version(3)),
    };
    let why = |peer: &str| format!("{peer}: version unknown (remote base: loading)");
    assert_eq!(
        fx.on(1_050, loading(7)),
        vec![
            Effect::Log(LogEvent::Rookie {
                base: a.clone(),
                why: why(B)
            }),
            Effect::Observe(Observation::Getvers("KO")),
        ]
    );
    // No quorum (2 errors out of a group of 3): retry after a back-off.
    let mut expected = vec![Effect::Log(LogEvent::Rookie {
        base: a.clone(),
        why: why(C),
    })];
    expected.extend(last_ko_backs_off(&a));
    assert_eq!(fx.on(1_060, loading(8)), expected);
    let wake = asks_again_after_back_off(&mut fx, &a);
    assert!((1_110..=1_160).contains(&wake), "{wake}");
    // A refusal is a KO without the rookie warning.
    assert_eq!(
        fx.on(
            wake + 10,
            Input::Getvers {
                id: 9,
                remote: Ok(RemoteVersion::Refused("busy".into())),
                local: Ok(version(3)),
            }
        ),
        vec![Effect::Observe(Observation::Getvers("KO"))]
    );
    // One error out of three is a quorum: MASTER.
    let mut expected = fx.uses(&a, Some(17));
    expected.extend([
        Effect::Observe(Observation::Getvers("OK")),
        tr(&a, State::CheckingSlaves, "GETVERS_OK", State::Master),
        Effect::Observe(Observation::TimeToFinal {
            ms: wake + 20 - 1_000,
        }),
    ]);
    assert_eq!(fx.on(wake + 20, getvers_equal(10)), expected);
}

/// A candidate without a copy (its old one set aside, say) leads only once
/// every peer has answered that it holds none either: with one peer
/// without a copy and the third silent, it retries, where the two once led
/// with nothing to serve while the third held the only copy (issue 14, H3,
/// in a system test). When the third answers without a copy too, it leads
/// (a base only registered in the directory still gets a master).
#[test]
fn a_candidate_without_a_copy_waits_for_every_peer() {
    let mut fx = Fx::new();
    let a = base_a();
    to_candidate(&mut fx, &a);
    fx.on(1_045, zk(6, Ok(ZkOk::Stat(Some(S1.id)))));
    let no_copy = |id| Input::Getvers {
        id,
        remote: Ok(RemoteVersion::Version(ReplicaVersion::Missing)),
        local: Ok(ReplicaVersion::Missing),
    };
    assert_eq!(
        fx.on(1_050, no_copy(7)),
        vec![Effect::Observe(Observation::Getvers("OK"))]
    );
    let silent = Input::Getvers {
        id: 8,
        remote: Err("timeout".into()),
        local: Ok(ReplicaVersion::Missing),
    };
    assert_eq!(fx.on(1_060, silent), last_ko_backs_off(&a));
    let why = fx.e.view(&a).expect("election").fsm.last_error();
    assert!(
        why.is_some_and(|w| w.contains("holds no copy") && w.contains(C)),
        "{why:?}"
    );
    let wake = asks_again_after_back_off(&mut fx, &a);
    fx.on(wake + 10, no_copy(9));
    fx.on(wake + 20, no_copy(10));
    assert_eq!(fx.state(&a), State::Master);
}

#[test]
fn a_peer_ahead_makes_the_candidate_step_aside_and_rejoin() {
    let mut fx = Fx::new();
    let a = base_a();
    assert_eq!(
        step_aside(&mut fx, &a),
        vec![
            zk_effect(
                9,
                ZkOp::Delete {
                    path: fx.path(&a, 17)
                }
            ),
            Effect::Observe(Observation::Getvers("OK")),
            tr(&a, State::CheckingSlaves, "GETVERS_OK", State::Leaving),
        ]
    );
    // Node deleted: back at once, as a new member.
    assert_eq!(
        fx.on(1_070, zk(9, Ok(ZkOk::Deleted))),
        vec![
            tr(&a, State::Leaving, "LEAVE_OK", State::None),
            resolve(10, &a),
            tr(&a, State::None, "NONE", State::Peering)
        ]
    );
}

#[test]
fn peers_not_managed_or_failed_are_logged_and_fail() {
    let mut fx = Fx::new();
    let (a, b) = (base_a(), base_b());
    fx.on(1_000, poke(&a));
    fx.on(1_000, poke(&b));
    assert_eq!(
        fx.on(
            1_010,
            Input::Peers {
                id: 2,
                result: Ok(None)
            }
        ),
        vec![
            Effect::Log(LogEvent::NotManaged { base: a.clone() }),
            tr(&a, State::Peering, "GETPEERS_DONE", State::Failed),
        ]
    );
    assert_eq!(
        fx.on(
            1_010,
            Input::Peers {
                id: 4,
                result: Err("directory down".into())
            }
        ),
        vec![
            Effect::Log(LogEvent::PeersFailed {
                base: b.clone(),
                error: "directory down".into()
            }),
            tr(&b, State::Peering, "GETPEERS_DONE", State::Failed),
        ]
    );
}

/// A retry pending when the election was started by other means (a peer's
/// USE) is dropped: once the directory says "not managed", nothing restarts
/// the election by itself.
#[test]
fn a_not_managed_base_is_not_retried() {
    let mut fx = Fx::new();
    let a = base_a();
    fx.on(1_000, poke(&a));
    fx.on(1_000 + PENDING_TIMEOUT, Input::Tick);
    let wake = fx.e.next_wakeup().expect("back-off");
    fx.on(wake, Input::Tick);
    assert_eq!(fx.state(&a), State::None);
    let retry = fx.e.next_wakeup().expect("a retry");
    // A peer's USE starts it before the retry is due.
    let effects = fx.on(
        retry - 10,
        Input::UseReceived {
            base: a.clone(),
            from: fx.b.clone(),
            master: None,
        },
    );
    let id = match effects.first() {
        Some(Effect::ResolvePeers { id, .. }) => *id,
        other => panic!("{other:?}"),
    };
    fx.on(
        retry - 5,
        Input::Peers {
            id,
            result: Ok(None),
        },
    );
    assert!(fx.e.view(&a).is_some_and(|s| !s.want));
    // FAILED's back-off, then NONE: no retry from then on, not even the one
    // that was pending when the USE started it.
    let at = fx.e.next_wakeup().expect("FAILED's back-off");
    assert_eq!(
        fx.on(at, Input::Tick),
        vec![tr(&a, State::Failed, "NONE", State::None)]
    );
    let at = fx.e.next_wakeup().expect("idle expiry");
    assert_eq!(fx.on(at, Input::Tick), vec![]);
    assert!(fx.e.view(&a).is_none(), "forgotten by idle expiry");
}

#[test]
fn stop_writes_reaches_a_candidacy_in_progress() {
    let mut fx = Fx::new();
    let a = base_a();
    to_candidate(&mut fx, &a);
    assert!(fx.on(1_042, zk(6, Ok(ZkOk::Stat(Some(S1.id))))).is_empty());
    assert_eq!(fx.state(&a), State::CheckingSlaves);

    let mut effects = fx.on(1_045, Input::StopWrites(true));
    assert!(!fx.e.allows_master());
    assert!(
        matches!(
            effects.first(),
            Some(Effect::Log(LogEvent::StopWrites { .. }))
        ),
        "{effects:?}"
    );
    effects.extend(fx.on(1_050, getvers_equal(7)));
    effects.extend(fx.on(1_060, getvers_equal(8)));
    // Whether the engine hands the candidacy over at once or the core refuses
    // the promotion, this service must not lead: it deletes its node instead.
    assert!(
        !effects.iter().any(|e| matches!(
            e,
            Effect::Use {
                master: Some(_),
                ..
            }
        )),
        "{effects:?}"
    );
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::Zk { op: ZkOp::Delete { path }, .. } if *path == fx.path(&a, 17)
        )),
        "{effects:?}"
    );
    assert!(
        matches!(fx.state(&a), State::Leaving | State::LeavingFailing),
        "{}",
        fx.state(&a)
    );
}

// ----- the write path -----

fn vector(n: i64) -> Vector {
    [(
        "main.properties".to_string(),
        TableVersion {
            version: n,
            when: 2_000 + n,
            writer: 0,
        },
    )]
    .into_iter()
    .collect()
}

fn set(key: &str) -> Vec<WriteOp> {
    vec![WriteOp::Set {
        key: key.into(),
        value: "v".into(),
    }]
}

fn write(req: ReqId, base: &BaseName, key: &str) -> Input {
    Input::Write {
        req,
        base: base.clone(),
        ops: set(key),
    }
}

fn stored(id: Id, result: Result<StoreOk, StoreFailure>) -> Input {
    Input::Stored { id, result }
}

fn begun(id: Id, n: i64) -> Input {
    stored(
        id,
        Ok(StoreOk::Begun {
            prev: vector(n),
            next: vector(n + 1),
        }),
    )
}

fn replicated(id: Id, result: Result<(), ReplicateFailure>) -> Input {
    Input::Replicated { id, result }
}

fn store(id: Id, base: &BaseName, op: StoreOp) -> Effect {
    Effect::Store {
        id,
        base: base.clone(),
        op,
    }
}

fn begin(id: Id, base: &BaseName, keys: &[&str]) -> Effect {
    begin_behind(id, base, keys, 0)
}

/// A Begin with `behind` batches of the base in flight before it.
fn begin_behind(id: Id, base: &BaseName, keys: &[&str], behind: usize) -> Effect {
    let ops: Vec<WriteOp> = keys.iter().flat_map(|k| set(k)).collect();
    // The writer: our node's sequence (17, see `elect_master`), then the id.
    let writer = (17 << 32) | id;
    store(
        id,
        base,
        StoreOp::Begin {
            ops: ops.into(),
            writer,
            behind,
        },
    )
}

fn replicate(id: Id, to: &ServiceId, base: &BaseName, n: i64, keys: &[&str]) -> Effect {
    let ops: Vec<WriteOp> = keys.iter().flat_map(|k| set(k)).collect();
    Effect::Replicate {
        id,
        to: to.clone(),
        base: base.clone(),
        epoch: 17,
        prev: vector(n),
        next: vector(n + 1),
        ops: ops.into(),
    }
}

fn done(req: ReqId, base: &BaseName, result: Result<Written, WriteRefusal>) -> Effect {
    Effect::WriteDone {
        req,
        base: base.clone(),
        result,
    }
}

fn written(n: i64) -> Result<Written, WriteRefusal> {
    Ok(Written {
        next: vector(n),
        epoch: 17,
    })
}

/// Master of `a` (node 17), write `req` begun at version 5 and sent to B
/// (id 10) and C (id 11). Its Begin was id 9.
fn write_in_flight(fx: &mut Fx, a: &BaseName, req: ReqId) {
    elect_master(fx, a);
    assert_eq!(fx.on(2_000, write(req, a, "k")), vec![begin(9, a, &["k"])]);
    assert_eq!(
        fx.on(2_001, begun(9, 5)),
        vec![
            replicate(10, &fx.b.clone(), a, 5, &["k"]),
            replicate(11, &fx.c.clone(), a, 5, &["k"]),
        ]
    );
}

#[test]
fn a_write_commits_at_a_majority_and_a_slave_that_missed_it_resyncs() {
    let mut fx = Fx::new();
    let a = base_a();
    write_in_flight(&mut fx, &a, 100);
    // B applied it: with ourselves, 2 of 3. Commit; C is still out.
    assert_eq!(
        fx.on(2_002, replicated(10, Ok(()))),
        vec![store(12, &a, StoreOp::Commit)]
    );
    // C answers while the commit runs: it is behind.
    assert!(fx
        .on(
            2_003,
            replicated(11, Err(ReplicateFailure::Refused(Refusal::Behind)))
        )
        .is_empty());
    assert_eq!(
        fx.on(2_004, stored(12, Ok(StoreOk::Committed))),
        vec![
            Effect::Resync {
                to: fx.c.clone(),
                base: a.clone()
            },
            Effect::Observe(Observation::Committed { writes: 1 }),
            done(100, &a, written(6)),
        ]
    );
    assert!(fx.e.readonly().is_empty());
}

#[test]
fn a_late_answer_to_a_committed_write_resyncs_only_a_slave_without_it() {
    let mut fx = Fx::new();
    let a = base_a();
    write_in_flight(&mut fx, &a, 100);
    fx.on(2_002, replicated(10, Ok(())));
    let effects = fx.on(2_004, stored(12, Ok(StoreOk::Committed)));
    assert_eq!(effects.last(), Some(&done(100, &a, written(6))));
    // C's answer comes after the decision: no answer at all (it may or may
    // not hold the write) makes it copy the base again...
    assert_eq!(
        fx.on(
            3_001,
            replicated(11, Err(ReplicateFailure::Unknown("timeout".into())))
        ),
        vec![Effect::Resync {
            to: fx.c.clone(),
            base: a.clone()
        }]
    );
    // ...and a second answer for the same call is ignored.
    assert!(fx.on(3_002, replicated(11, Ok(()))).is_empty());
}

#[test]
fn writes_that_queue_during_a_batch_form_the_next_one() {
    let mut fx = Fx::new();
    let a = base_a();
    write_in_flight(&mut fx, &a, 100);
    assert!(fx.on(2_002, write(101, &a, "x")).is_empty());
    assert!(fx.on(2_002, write(102, &a, "y")).is_empty());
    fx.on(2_003, replicated(10, Ok(())));
    assert_eq!(
        fx.on(2_004, stored(12, Ok(StoreOk::Committed))),
        vec![
            Effect::Observe(Observation::Committed { writes: 1 }),
            done(100, &a, written(6)),
            begin(13, &a, &["x", "y"]),
        ]
    );
    assert_eq!(
        fx.on(2_005, begun(13, 6)),
        vec![
            replicate(14, &fx.b.clone(), &a, 6, &["x", "y"]),
            replicate(15, &fx.c.clone(), &a, 6, &["x", "y"]),
        ]
    );
    fx.on(2_006, replicated(15, Ok(())));
    assert_eq!(
        fx.on(2_007, stored(16, Ok(StoreOk::Committed))),
        vec![
            Effect::Observe(Observation::Committed { writes: 2 }),
            done(101, &a, written(7)),
            done(102, &a, written(7)),
        ]
    );
}

/// A pipeline window of `window` and batches of at most 2 writes.
fn pipelined(window: usize) -> Fx {
    Fx::with(|c| {
        c.pipeline_window = window;
        c.max_batch_writes = 2;
    })
}

/// `write_in_flight`, then writes 101 and 102: once they fill a batch,
/// it joins the window (Begin id 12, from version 6), sent to B (13) and
/// C (14) before the first has its majority.
fn two_batches_in_flight(fx: &mut Fx, a: &BaseName) {
    write_in_flight(fx, a, 100);
    // One write waiting goes in the next batch, as with no window: a
    // batch of its own would cost a transaction and a round of calls.
    assert!(fx.on(2_002, write(101, a, "x")).is_empty());
    assert_eq!(
        fx.on(2_002, write(102, a, "y")),
        vec![
            begin_behind(12, a, &["x", "y"], 1),
            Effect::Observe(Observation::Pipelined { ahead: 1 }),
        ]
    );
    assert_eq!(
        fx.on(2_003, begun(12, 6)),
        vec![
            replicate(13, &fx.b.clone(), a, 6, &["x", "y"]),
            replicate(14, &fx.c.clone(), a, 6, &["x", "y"]),
        ]
    );
}

#[test]
fn pipelined_batches_are_sent_at_once_and_commit_together() {
    let mut fx = pipelined(2);
    let a = base_a();
    two_batches_in_flight(&mut fx, &a);
    // The window is full: more writes wait.
    assert!(fx.on(2_004, write(103, &a, "z")).is_empty());
    assert!(fx.on(2_004, write(104, &a, "w")).is_empty());
    // The first batch has its majority, the second not yet: one COMMIT
    // ends their transaction, so the first waits for the second.
    assert!(fx.on(2_005, replicated(10, Ok(()))).is_empty());
    assert_eq!(
        fx.on(2_006, replicated(13, Ok(()))),
        vec![store(15, &a, StoreOp::Commit)]
    );
    assert_eq!(
        fx.on(2_007, stored(15, Ok(StoreOk::Committed))),
        vec![
            Effect::Observe(Observation::Committed { writes: 1 }),
            done(100, &a, written(6)),
            Effect::Observe(Observation::Committed { writes: 2 }),
            done(101, &a, written(7)),
            done(102, &a, written(7)),
            begin(16, &a, &["z", "w"]),
        ]
    );
    // C's late answers are read as answers to committed batches.
    assert!(fx.on(2_008, replicated(11, Ok(()))).is_empty());
    assert_eq!(
        fx.on(
            2_009,
            replicated(14, Err(ReplicateFailure::Refused(Refusal::Behind)))
        ),
        vec![Effect::Resync {
            to: fx.c.clone(),
            base: a.clone()
        }]
    );
}

#[test]
fn a_pipelined_batch_without_a_majority_is_undone_alone() {
    let mut fx = pipelined(2);
    let a = base_a();
    two_batches_in_flight(&mut fx, &a);
    fx.on(2_004, replicated(10, Ok(())));
    // Both slaves refuse the second batch: rolled back to the savepoint
    // before it. The first stays open, and commits once that is done.
    let refused = || Err(ReplicateFailure::Refused(Refusal::NotSettled));
    assert!(fx.on(2_005, replicated(13, refused())).is_empty());
    assert_eq!(
        fx.on(2_006, replicated(14, refused())),
        vec![store(15, &a, StoreOp::RollbackTo { keep: 1 })]
    );
    let effects = fx.on(2_007, stored(15, Ok(StoreOk::RolledBack)));
    assert!(
        matches!(
            &effects[..],
            [
                Effect::WriteDone {
                    req: 101,
                    result: Err(WriteRefusal::NoQuorum { acked: 1, .. }),
                    ..
                },
                Effect::WriteDone {
                    req: 102,
                    result: Err(WriteRefusal::NoQuorum { acked: 1, .. }),
                    ..
                },
                Effect::Store {
                    id: 16,
                    op: StoreOp::Commit,
                    ..
                }
            ]
        ),
        "{effects:?}"
    );
    assert_eq!(
        fx.on(2_008, stored(16, Ok(StoreOk::Committed))),
        vec![
            Effect::Observe(Observation::Committed { writes: 1 }),
            done(100, &a, written(6)),
        ]
    );
    assert!(fx.e.readonly().is_empty());
}

#[test]
fn a_failed_first_batch_rolls_back_the_window() {
    let mut fx = pipelined(2);
    let a = base_a();
    two_batches_in_flight(&mut fx, &a);
    // The second batch has its majority, but it follows the first, which
    // both slaves refused: the whole transaction goes.
    fx.on(2_004, replicated(13, Ok(())));
    let refused = || Err(ReplicateFailure::Refused(Refusal::NotSettled));
    assert!(fx.on(2_005, replicated(10, refused())).is_empty());
    assert_eq!(
        fx.on(2_006, replicated(11, refused())),
        vec![store(15, &a, StoreOp::Rollback)]
    );
    let effects = fx.on(2_007, stored(15, Ok(StoreOk::RolledBack)));
    let refused: Vec<ReqId> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::WriteDone {
                req,
                result: Err(WriteRefusal::NoQuorum { .. }),
                ..
            } => Some(*req),
            _ => None,
        })
        .collect();
    assert_eq!(refused, vec![100, 101, 102], "{effects:?}");
    assert_eq!(effects.len(), 3, "{effects:?}");
    // Every slave answered the first batch: none holds it.
    assert!(fx.e.readonly().is_empty());
}

#[test]
fn a_candidates_getvers_stops_the_window_from_growing() {
    let mut fx = pipelined(3);
    let a = base_a();
    two_batches_in_flight(&mut fx, &a);
    // A candidate asks our version: it waits for the window to end, and no
    // batch joins the window meanwhile (it would wait for that one too).
    assert!(fx
        .on(
            2_004,
            Input::GetversReq {
                req: 900,
                base: a.clone(),
                master_seq: None,
                candidate_seq: Some(18),
                incarnation: Some(CREATION),
            }
        )
        .is_empty());
    assert!(fx.on(2_005, write(103, &a, "z")).is_empty());
    assert!(fx.on(2_005, write(104, &a, "w")).is_empty());
    fx.on(2_006, replicated(10, Ok(())));
    assert_eq!(
        fx.on(2_007, replicated(13, Ok(()))),
        vec![store(15, &a, StoreOp::Commit)]
    );
    let effects = fx.on(2_008, stored(15, Ok(StoreOk::Committed)));
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::GetversServed {
                req: 900,
                result: Ok(()),
                ..
            }
        )),
        "{effects:?}"
    );
    // Fenced: the write that waited is refused, our node being older.
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::WriteDone {
                req: 103,
                result: Err(WriteRefusal::Superseded { .. }),
                ..
            }
        )),
        "{effects:?}"
    );
}

#[test]
fn no_majority_rolls_back_and_an_unanswered_slave_means_read_only() {
    let mut fx = Fx::new();
    let a = base_a();
    write_in_flight(&mut fx, &a, 100);
    // B refused before applying: a majority is still possible.
    assert!(fx
        .on(
            2_002,
            replicated(10, Err(ReplicateFailure::Refused(Refusal::NotSettled)))
        )
        .is_empty());
    // C did not answer: it may hold the write we now roll back.
    let effects = fx.on(
        3_001,
        replicated(11, Err(ReplicateFailure::Unknown("timeout".into()))),
    );
    assert_eq!(effects[0], store(12, &a, StoreOp::Rollback));
    assert!(
        matches!(&effects[1], Effect::Log(LogEvent::ReadOnly { base, .. }) if *base == a),
        "{effects:?}"
    );
    assert_eq!(effects.len(), 2, "{effects:?}");
    let effects = fx.on(3_002, stored(12, Ok(StoreOk::RolledBack)));
    assert!(
        matches!(
            &effects[..],
            [Effect::WriteDone {
                req: 100,
                result: Err(WriteRefusal::NoQuorum {
                    acked: 1,
                    group: 3,
                    needed: 2,
                    ..
                }),
                ..
            }]
        ),
        "{effects:?}"
    );
    assert_eq!(fx.e.readonly().len(), 1);
    // Read-only: every write is refused, on any base...
    assert_eq!(
        fx.on(3_003, write(101, &a, "x")),
        vec![done(101, &a, Err(WriteRefusal::ReadOnly))]
    );
    // ...until the operator clears it.
    fx.on(
        3_004,
        Input::ClearReadOnly {
            bases: vec![a.clone()],
        },
    );
    assert_eq!(
        fx.on(3_005, write(102, &a, "x")),
        vec![begin(13, &a, &["x"])]
    );
}

#[test]
fn a_refusal_that_deposes_the_master_makes_it_leave() {
    let mut fx = Fx::new();
    let a = base_a();
    write_in_flight(&mut fx, &a, 100);
    fx.on(
        2_002,
        replicated(10, Err(ReplicateFailure::Refused(Refusal::NotFollowing))),
    );
    let effects = fx.on(
        2_003,
        replicated(11, Err(ReplicateFailure::Unreachable("refused".into()))),
    );
    assert_eq!(effects[0], store(12, &a, StoreOp::Rollback));
    assert!(
        matches!(&effects[1], Effect::Log(LogEvent::Deposed { base, .. }) if *base == a),
        "{effects:?}"
    );
    // Every slave answered (one refused, one was unreachable), so none can
    // hold the write: no read-only mode.
    assert!(fx.e.readonly().is_empty());
    assert_ne!(fx.state(&a), State::Master);
    assert!(matches!(
        &fx.on(2_004, stored(12, Ok(StoreOk::RolledBack)))[..],
        [Effect::WriteDone {
            req: 100,
            result: Err(WriteRefusal::NoQuorum { .. }),
            ..
        }]
    ));
}

/// Elected when no replica held a copy, a master whose copy never came
/// (the replicas were created since, but not its own) steps down at its
/// first write: it leaves its node, so a replica with a copy leads.
#[test]
fn a_master_without_a_copy_steps_down_at_its_first_write() {
    let mut fx = Fx::new();
    let a = base_a();
    elect_master(&mut fx, &a);
    assert_eq!(
        fx.on(2_000, write(100, &a, "k")),
        vec![begin(9, &a, &["k"])]
    );
    let effects = fx.on(2_001, stored(9, Err(StoreFailure::Missing)));
    assert!(
        matches!(&effects[0], Effect::WriteDone { req: 100, result: Err(WriteRefusal::Failed(why)), .. } if why.contains("no local copy")),
        "{effects:?}"
    );
    assert!(
        effects.iter().any(
            |e| matches!(e, Effect::Log(LogEvent::Deposed { why, .. }) if why.contains("no copy"))
        ),
        "{effects:?}"
    );
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::Zk {
                op: ZkOp::Delete { .. },
                ..
            }
        )),
        "it leaves its node: {effects:?}"
    );
    assert_ne!(fx.state(&a), State::Master);
}

#[test]
fn a_failed_commit_means_read_only() {
    let mut fx = Fx::new();
    let a = base_a();
    write_in_flight(&mut fx, &a, 100);
    fx.on(2_002, replicated(10, Ok(())));
    let effects = fx.on(
        2_003,
        stored(12, Err(StoreFailure::Failed("disk full".into()))),
    );
    assert!(
        matches!(&effects[0], Effect::Log(LogEvent::ReadOnly { detail, .. }) if detail.contains("disk full")),
        "{effects:?}"
    );
    assert_eq!(effects[1], done(100, &a, Err(WriteRefusal::ReadOnly)));
    // The late answer of C names a write that did not commit: no resync.
    assert!(fx.on(2_004, replicated(11, Ok(()))).is_empty());
}

#[test]
fn a_candidates_getvers_waits_for_the_batch_then_fences_the_master() {
    let mut fx = Fx::new();
    let a = base_a();
    write_in_flight(&mut fx, &a, 100);
    // C, a candidate with node 20, asks our version mid-write: it waits.
    let getvers = Input::GetversReq {
        req: 200,
        base: a.clone(),
        master_seq: None,
        candidate_seq: Some(20),
        incarnation: Some(CREATION),
    };
    assert!(fx.on(2_002, getvers).is_empty());
    // A copy asked meanwhile waits too.
    assert!(fx
        .on(
            2_002,
            Input::DumpReq {
                req: 201,
                base: a.clone()
            }
        )
        .is_empty());
    fx.on(2_003, replicated(10, Ok(())));
    let effects = fx.on(2_004, stored(12, Ok(StoreOk::Committed)));
    assert_eq!(
        effects,
        vec![
            Effect::Observe(Observation::Committed { writes: 1 }),
            done(100, &a, written(6)),
            Effect::GetversServed {
                req: 200,
                base: a.clone(),
                result: Ok(())
            },
            store(
                13,
                &a,
                StoreOp::Dump {
                    req: 201,
                    floor: (17 << 32) | 14
                }
            ),
        ]
    );
    assert_eq!(fx.e.fence(&a), Some(20));
    // The copy is done; our next write finds us superseded: we leave.
    fx.on(2_005, stored(13, Ok(StoreOk::Dumped)));
    let effects = fx.on(2_006, write(101, &a, "x"));
    assert!(
        matches!(&effects[0], Effect::Log(LogEvent::Deposed { .. })),
        "{effects:?}"
    );
    assert_eq!(
        effects.last(),
        Some(&done(
            101,
            &a,
            Err(WriteRefusal::Superseded {
                epoch: 17,
                fence: 20
            })
        ))
    );
    assert_ne!(fx.state(&a), State::Master);
}

/// Whether `effects` start a replicated write's store op.
fn applies(effects: &[Effect]) -> bool {
    effects.iter().any(|e| {
        matches!(
            e,
            Effect::Store {
                op: StoreOp::Apply { .. },
                ..
            }
        )
    })
}

/// B's write of key `k` from version `n` to `n + 1`, under `epoch`.
fn from_b_at(a: &BaseName, req: ReqId, n: i64, epoch: Seq) -> Input {
    Input::Replicate {
        req,
        from: sid(B),
        base: a.clone(),
        epoch,
        prev: vector(n),
        next: vector(n + 1),
        ops: Arc::from(set("k")),
    }
}

/// Our store applying that write.
fn apply_at(a: &BaseName, id: Id, n: i64) -> Effect {
    store(
        id,
        a,
        StoreOp::Apply {
            prev: vector(n),
            next: vector(n + 1),
            ops: Arc::from(set("k")),
        },
    )
}

#[test]
fn a_slave_applies_in_order_and_resyncs_when_behind() {
    let mut fx = Fx::new();
    let a = base_a();
    follow_b(&mut fx, &a);
    let from_b = |req: ReqId, n: i64, epoch: Seq| from_b_at(&a, req, n, epoch);
    let apply = |id: Id, n: i64| apply_at(&a, id, n);
    assert_eq!(fx.on(2_000, from_b(300, 5, 12)), vec![apply(8, 5)]);
    // The next one waits for the first: a slave applies in order.
    assert!(fx.on(2_001, from_b(301, 7, 12)).is_empty());
    assert_eq!(
        fx.on(2_002, stored(8, Ok(StoreOk::Applied))),
        vec![
            Effect::ReplicateDone {
                req: 300,
                result: Ok(())
            },
            apply(9, 7),
        ]
    );
    // It does not follow our version: it waits a moment for the write it
    // follows (the calls may have overtaken each other)...
    assert_eq!(
        fx.on(
            2_003,
            stored(9, Err(StoreFailure::OutOfOrder("at 6".into())))
        ),
        vec![Effect::Observe(Observation::Overtaken)]
    );
    assert_eq!(fx.e.next_wakeup(), Some(2_001 + 100));
    assert!(fx.on(2_100, Input::Tick).is_empty());
    // ...which never comes: refuse it, and copy the master's.
    let effects = fx.on(2_101, Input::Tick);
    assert!(
        effects.iter().any(|e| matches!(e, Effect::Sync { .. })),
        "{effects:?}"
    );
    assert_eq!(
        effects.last(),
        Some(&Effect::ReplicateDone {
            req: 301,
            result: Err(Refusal::Behind)
        })
    );
    assert_eq!(fx.state(&a), State::Syncing);
}

#[test]
fn a_slave_refuses_other_masters_and_fenced_epochs() {
    let mut fx = Fx::new();
    let a = base_a();
    follow_b(&mut fx, &a);
    let from = |req: ReqId, who: &str, epoch: Seq| Input::Replicate {
        req,
        from: sid(who),
        base: a.clone(),
        epoch,
        prev: vector(5),
        next: vector(6),
        ops: Arc::from(set("k")),
    };
    let refused = |req: ReqId, r: Refusal| Effect::ReplicateDone {
        req,
        result: Err(r),
    };
    assert_eq!(
        fx.on(2_000, from(300, C, 12)),
        vec![refused(300, Refusal::NotFollowing)]
    );
    assert_eq!(
        fx.on(2_001, from(301, B, 11)),
        vec![refused(301, Refusal::NotFollowing)]
    );
    // We vouch for C's candidacy (node 20): B's epoch 12 is fenced.
    let getvers = Input::GetversReq {
        req: 302,
        base: a.clone(),
        master_seq: None,
        candidate_seq: Some(20),
        incarnation: Some(CREATION),
    };
    assert_eq!(
        fx.on(2_002, getvers),
        vec![Effect::GetversServed {
            req: 302,
            base: a.clone(),
            result: Ok(())
        }]
    );
    assert_eq!(
        fx.on(2_003, from(303, B, 12)),
        vec![
            Effect::Observe(Observation::WriteFenced),
            refused(303, Refusal::Fenced)
        ]
    );
    // A slave gives no copy.
    assert_eq!(
        fx.on(
            2_004,
            Input::DumpReq {
                req: 304,
                base: a.clone()
            }
        ),
        vec![Effect::DumpRefused {
            req: 304,
            state: State::Slave,
            session_live: true
        }]
    );
}

#[test]
fn a_slave_redirects_writes_and_a_full_queue_refuses_them() {
    let mut fx = Fx::new();
    let a = base_a();
    follow_b(&mut fx, &a);
    assert_eq!(
        fx.on(2_000, write(100, &a, "k")),
        vec![done(100, &a, Err(WriteRefusal::Redirect(sid(B))))]
    );
    let mut fx = Fx::new();
    write_in_flight(&mut fx, &a, 100);
    for req in 0..election_engine::MAX_QUEUED_WRITES as u64 {
        assert!(fx.on(2_002, write(1_000 + req, &a, "q")).is_empty());
    }
    assert_eq!(
        fx.on(2_003, write(99, &a, "q")),
        vec![done(
            99,
            &a,
            Err(WriteRefusal::Overloaded {
                queued: election_engine::MAX_QUEUED_WRITES
            })
        )]
    );
}

/// Back-pressure over the whole service: beyond `max_queued_writes` waiting
/// writes (whatever their base), a clear refusal; a batch that takes them
/// frees room.
#[test]
fn writes_waiting_over_the_service_are_bounded() {
    let mut fx = Fx::with(|cfg| cfg.max_queued_writes = 2);
    let a = base_a();
    write_in_flight(&mut fx, &a, 100);
    assert!(fx.on(2_002, write(101, &a, "x")).is_empty());
    assert!(fx.on(2_002, write(102, &a, "y")).is_empty());
    assert_eq!(
        fx.on(2_002, write(103, &a, "z")),
        vec![done(
            103,
            &a,
            Err(WriteRefusal::ServiceOverloaded { queued: 2 })
        )]
    );
    fx.on(2_003, replicated(10, Ok(())));
    assert_eq!(
        fx.on(2_004, stored(12, Ok(StoreOk::Committed))),
        vec![
            Effect::Observe(Observation::Committed { writes: 1 }),
            done(100, &a, written(6)),
            begin(13, &a, &["x", "y"]),
        ]
    );
    // x and y left the queue for the batch: room again.
    assert!(fx.on(2_005, write(104, &a, "w")).is_empty());
}

/// `Config::default().expire_slave_ms`: an idle slave leaves after this long.
const EXPIRE_SLAVE: u64 = 210 * 60_000;

/// Issue 14, H6: a slave of a base that is only written (never read here)
/// must not expire. Replicated writes are accesses.
#[test]
fn replicated_writes_keep_a_slave_from_expiring() {
    let mut fx = Fx::new();
    let a = base_a();
    follow_b(&mut fx, &a);
    let from_b = |req: ReqId, n: i64| from_b_at(&a, req, n, 12);
    // A write every hour; the id of each Apply is the next from the counter.
    for (id, hour) in (8..).zip(1..=4u64) {
        let t = 1_060 + hour * 3_600_000;
        fx.on(t, from_b(300 + hour, hour as i64));
        assert_eq!(
            fx.on(t + 1, stored(id, Ok(StoreOk::Applied))),
            vec![Effect::ReplicateDone {
                req: 300 + hour,
                result: Ok(())
            }]
        );
        assert_eq!(fx.on(t + 2, Input::Tick), vec![]);
    }
    // 4 hours after it settled (past `expire_slave`, 3.5 hours), and 1
    // after the last write: still a slave.
    assert_eq!(fx.on(1_060 + 4 * 3_600_000 + 10, Input::Tick), vec![]);
    assert_eq!(fx.state(&a), State::Slave);
    // Without writes it expires, counted from the last one.
    let last = 1_060 + 4 * 3_600_000 + 1;
    fx.on(last + EXPIRE_SLAVE, Input::Tick);
    assert_eq!(fx.state(&a), State::Leaving);
}

/// Issue 14, H6: a write that reaches a slave leaving by idle expiry is not
/// applied (it is no longer a slave): it waits, and the election comes back
/// once it has left, with no client request.
#[test]
fn a_write_reaching_an_expiring_slave_makes_it_rejoin() {
    let mut fx = Fx::new();
    let a = base_a();
    follow_b(&mut fx, &a);
    let t = 1_060 + EXPIRE_SLAVE;
    let effects = fx.on(t, Input::Tick);
    assert_eq!(fx.state(&a), State::Leaving, "{effects:?}");
    let delete = delete_id(&effects);
    let write = Input::Replicate {
        req: 300,
        from: sid(B),
        base: a.clone(),
        epoch: 12,
        prev: vector(5),
        next: vector(6),
        ops: Arc::from(set("k")),
    };
    let answered = |effects: &[Effect]| {
        effects
            .iter()
            .any(|e| matches!(e, Effect::ReplicateDone { req: 300, .. }))
    };
    let effects = fx.on(t + 1, write);
    assert!(!answered(&effects), "{effects:?}");
    // Once the node is gone, it starts again: a new candidacy, which the
    // write waits for.
    let effects = fx.on(t + 2, zk(delete, Ok(ZkOk::Deleted)));
    let mut later = fx.on(t + 3, Input::Tick);
    later.extend(effects);
    assert_ne!(fx.state(&a), State::None, "{later:?}");
    assert!(!answered(&later), "{later:?}");
}

/// Batch n+1 overtakes batch n on its way to the slower slave: it waits for
/// n, and both are applied in order; no copy of the base is fetched.
#[test]
fn a_write_that_overtook_the_one_it_follows_waits_for_it() {
    let mut fx = Fx::new();
    let a = base_a();
    follow_b(&mut fx, &a);
    let from_b = |req: ReqId, n: i64| from_b_at(&a, req, n, 12);
    let apply = |id: Id, n: i64| apply_at(&a, id, n);
    let ok = |req: ReqId| Effect::ReplicateDone {
        req,
        result: Ok(()),
    };
    // 6 -> 7 comes first: our copy is at 5.
    assert_eq!(fx.on(2_000, from_b(301, 6)), vec![apply(8, 6)]);
    assert_eq!(
        fx.on(
            2_001,
            stored(8, Err(StoreFailure::OutOfOrder("at 5".into())))
        ),
        vec![Effect::Observe(Observation::Overtaken)]
    );
    // 5 -> 6 comes: applied, then 6 -> 7 tried again and applied.
    assert_eq!(fx.on(2_002, from_b(300, 5)), vec![apply(9, 5)]);
    assert_eq!(
        fx.on(2_003, stored(9, Ok(StoreOk::Applied))),
        vec![ok(300), apply(10, 6)]
    );
    assert_eq!(
        fx.on(2_004, stored(10, Ok(StoreOk::Applied))),
        vec![ok(301)]
    );
    assert_eq!(fx.state(&a), State::Slave);
    // Nothing is left waiting: the wait's deadline finds nothing to refuse.
    assert!(fx.on(2_200, Input::Tick).is_empty());

    // With the wait turned off (0), it is refused at once, as before.
    let mut fx = Fx::with(|c| c.gap_wait_ms = 0);
    follow_b(&mut fx, &a);
    assert_eq!(fx.on(2_000, from_b(301, 6)), vec![apply(8, 6)]);
    let effects = fx.on(
        2_001,
        stored(8, Err(StoreFailure::OutOfOrder("at 5".into()))),
    );
    assert_eq!(
        effects.last(),
        Some(&Effect::ReplicateDone {
            req: 301,
            result: Err(Refusal::Behind)
        })
    );
}

/// A new master's first write reaches a member still finding its master:
/// it waits until that member settles as its slave, then is applied; one
/// that waited too long is refused (its master has given up on it).
#[test]
fn a_replicated_write_waits_for_the_election_to_settle() {
    let write = |a: &BaseName, req: ReqId| from_b_at(a, req, 5, 12);
    let settle = |fx: &mut Fx, a: &BaseName, t: u64| {
        let listing = vec![fx.child(a, 12), fx.child(a, 17)];
        fx.on(t, zk(4, Ok(ZkOk::Children(listing))));
        fx.on(t, zk(6, Ok(ZkOk::Data(B.as_bytes().to_vec()))));
        fx.on(t, getvers_equal(7))
    };
    let (mut fx, a) = (Fx::new(), base_a());
    to_listing(&mut fx, &a, 17);
    assert!(fx.on(1_030, write(&a, 300)).is_empty());
    let effects = settle(&mut fx, &a, 1_040);
    assert_eq!(fx.state(&a), State::Slave);
    assert!(applies(&effects), "{effects:?}");

    // Still under way when its wait is over: refused then, with no
    // transition (its master must not be left without an answer).
    let (mut fx, a) = (Fx::new(), base_a());
    to_listing(&mut fx, &a, 17);
    assert!(fx.on(1_030, write(&a, 302)).is_empty());
    assert!(fx.e.next_wakeup().is_some_and(|t| t <= 1_530));
    assert!(fx.on(1_529, Input::Tick).is_empty());
    assert_eq!(
        fx.on(1_530, Input::Tick),
        vec![Effect::ReplicateDone {
            req: 302,
            result: Err(Refusal::NotSettled)
        }]
    );
    assert_eq!(fx.state(&a), State::Listing);

    let (mut fx, a) = (Fx::new(), base_a());
    to_listing(&mut fx, &a, 17);
    assert!(fx.on(1_030, write(&a, 301)).is_empty());
    let effects = settle(&mut fx, &a, 1_030 + 501);
    assert!(
        effects.contains(&Effect::ReplicateDone {
            req: 301,
            result: Err(Refusal::NotSettled)
        }),
        "{effects:?}"
    );
}

/// A member that finds it must copy its new master's base refuses that
/// master's writes at once until the copy arrives: the master makes the
/// copy wait for its batch in flight, so a held write would only hold both
/// until its wait ran out (the crash-mid-write test's emergency read-only
/// mode). After, a write waits for the install as before.
#[test]
fn a_member_waiting_for_a_copy_refuses_writes_at_once() {
    let write = |a: &BaseName, req: ReqId| from_b_at(a, req, 5, 12);
    let restoring = |req: ReqId| Effect::ReplicateDone {
        req,
        result: Err(Refusal::Restoring),
    };
    let (mut fx, a) = (Fx::new(), base_a());
    to_listing(&mut fx, &a, 17);
    // Held while the election is under way...
    assert!(fx.on(1_030, write(&a, 300)).is_empty());
    let listing = vec![fx.child(&a, 12), fx.child(&a, 17)];
    fx.on(1_040, zk(4, Ok(ZkOk::Children(listing))));
    fx.on(1_050, zk(6, Ok(ZkOk::Data(B.as_bytes().to_vec()))));
    // ...refused as soon as we are found behind our master...
    let effects = fx.on(
        1_060,
        Input::Getvers {
            id: 7,
            remote: Ok(RemoteVersion::Version(version(4))),
            local: Ok(version(3)),
        },
    );
    assert_eq!(fx.state(&a), State::Syncing);
    assert!(effects.contains(&restoring(300)), "{effects:?}");
    // ...and a write that comes while the copy is on its way too.
    assert_eq!(fx.on(1_070, write(&a, 301)), vec![restoring(301)]);
    assert_eq!(fx.state(&a), State::Syncing);
    // Once the copy has arrived, a write (of a batch begun after the copy)
    // waits for its install, and is applied then.
    assert!(fx.on(1_080, Input::SyncFetched { id: 8 }).is_empty());
    assert!(fx.on(1_081, write(&a, 302)).is_empty());
    let effects = fx.on(
        1_090,
        Input::Synced {
            id: 8,
            result: Ok(()),
            floor: 0,
        },
    );
    assert_eq!(fx.state(&a), State::Slave);
    assert!(applies(&effects), "{effects:?}");
}

/// Our version 3, and a peer's version 3 holding another write (another
/// writer): diverged.
fn getvers_diverged(id: Id) -> Input {
    let mut other = version(3);
    if let ReplicaVersion::Known { tables } = &mut other {
        for tv in tables.values_mut() {
            tv.writer = 99;
        }
    }
    Input::Getvers {
        id,
        remote: Ok(RemoteVersion::Version(other)),
        local: Ok(version(3)),
    }
}

/// The id of the first ZooKeeper op among `effects` that `is` picks.
fn zk_id(effects: &[Effect], is: impl Fn(&ZkOp) -> bool) -> Option<Id> {
    effects.iter().find_map(|e| match e {
        Effect::Zk { id, op } if is(op) => Some(*id),
        _ => None,
    })
}

/// The id of the `Delete` of a node among `effects`.
fn delete_id(effects: &[Effect]) -> Id {
    zk_id(effects, |op| matches!(op, ZkOp::Delete { .. }))
        .unwrap_or_else(|| panic!("a node is deleted: {effects:?}"))
}

/// On a fresh engine, makes `base` a candidate (node 17, its self watch set:
/// Exists 6 answered) whose GETVERS to B found a diverged copy (id 7); C's
/// answer (id 8) is pending.
fn candidate_with_b_diverged(fx: &mut Fx, base: &BaseName) {
    to_listing(fx, base, 17);
    fx.on(1_040, zk(4, Ok(ZkOk::Children(vec![fx.child(base, 17)]))));
    fx.on(1_045, zk(6, Ok(ZkOk::Stat(Some(S1.id)))));
    fx.on(1_050, getvers_diverged(7));
}

/// Issue 14, H8: a candidate whose copy a majority holds (here C) leads
/// despite a diverged peer (B), which re-copies from it. Before, any
/// diverged peer made the candidate step aside, and every candidate did
/// the same in turn.
#[test]
fn a_candidate_held_by_a_majority_leads_past_a_diverged_peer() {
    let mut fx = Fx::new();
    let a = base_a();
    candidate_with_b_diverged(&mut fx, &a);
    fx.on(1_060, getvers_equal(8));
    assert_eq!(fx.state(&a), State::Master);
}

/// Issue 14, H8: diverged, and no majority holds our copy (C does not
/// answer): no automatic winner. The election fails with a reason that
/// names the diverged peer and the runbook, and retries only after a
/// back-off, instead of stepping aside and rejoining at once.
#[test]
fn diverged_without_a_majority_fails_with_a_reason_and_backs_off() {
    let mut fx = Fx::new();
    let a = base_a();
    candidate_with_b_diverged(&mut fx, &a);
    let effects = fx.on(
        1_060,
        Input::Getvers {
            id: 8,
            remote: Ok(RemoteVersion::Refused("busy".into())),
            local: Ok(version(3)),
        },
    );
    assert_eq!(fx.state(&a), State::LeavingFailing, "{effects:?}");
    let delete = delete_id(&effects);
    fx.on(1_070, zk(delete, Ok(ZkOk::Deleted)));
    assert_eq!(fx.state(&a), State::Failed);
    let why =
        fx.e.view(&a)
            .and_then(|s| s.fsm.last_error().map(str::to_string))
            .expect("a reason");
    assert!(
        why.contains("replicas diverged") && why.contains(B) && why.contains("OPERATIONS.md"),
        "{why}"
    );
    // No new candidacy at once: the next one waits for the back-off
    // (`retry_failed_ms`, 250 ms, jittered down to half at most).
    let restarted = |effects: &[Effect]| {
        effects.iter().any(|e| {
            matches!(
                e,
                Effect::Observe(Observation::Transition {
                    pre: State::None,
                    post: State::Peering,
                    ..
                })
            )
        })
    };
    let mut t = 1_070;
    loop {
        t = fx.e.next_wakeup().expect("a retry is planned").max(t);
        if restarted(&fx.on(t, Input::Tick)) {
            break;
        }
        assert!(t < 60_000, "never retried");
    }
    assert!(t >= 1_070 + 125, "retried at {t}");
}

/// A copy carries its master's batch floor: a REPLICATE of a batch decided
/// before the copy (here one the master rolled back, arriving late at a
/// slave it then resynced) is refused as stale, not applied on top of the
/// copy; later batches apply. Found by the simulation (seed 10489).
#[test]
fn a_copy_refuses_batches_decided_before_it() {
    let mut fx = Fx::new();
    let a = base_a();
    follow_b(&mut fx, &a);
    fx.on(2_000, Input::SyncReq { base: a.clone() });
    let floor = (12u64 << 32) | 50;
    fx.on(
        2_100,
        Input::Synced {
            id: 8,
            result: Ok(()),
            floor,
        },
    );
    assert_eq!(fx.state(&a), State::Slave);
    let batch = |req: ReqId, id: u64| {
        let mut next = vector(6);
        for v in next.values_mut() {
            v.writer = (12 << 32) | id;
        }
        Input::Replicate {
            req,
            from: sid(B),
            base: a.clone(),
            epoch: 12,
            prev: vector(5),
            next,
            ops: Arc::from(set("k")),
        }
    };
    assert_eq!(
        fx.on(2_200, batch(300, 49)),
        vec![Effect::ReplicateDone {
            req: 300,
            result: Err(Refusal::Stale)
        }]
    );
    let effects = fx.on(2_201, batch(301, 50));
    assert!(
        matches!(
            effects[..],
            [Effect::Store {
                op: StoreOp::Apply { .. },
                ..
            }]
        ),
        "{effects:?}"
    );
}

// ----- a container deleted and created again (issue 14, H3) -----

/// Another creation of base A than `CREATION`.
const RECREATED: Incarnation = Incarnation {
    id: 8,
    ctime_ms: 1_700_000_100_000,
};

/// A route's directory read naming `RECREATED`, our replica being `replica`.
fn creation_read(base: &BaseName, replica: Incarnation) -> Input {
    Input::Creation {
        base: base.clone(),
        directory: RECREATED,
        replica,
    }
}

/// Our replica of the first creation, moved away.
fn set_aside_first(base: &BaseName) -> Effect {
    Effect::SetAside {
        base: base.clone(),
        found: CREATION,
        current: RECREATED,
    }
}

/// The directory's answer `id` naming `RECREATED`, with our replica's.
fn recreated_read(fx: &Fx, id: Id, replica: Option<Incarnation>) -> Input {
    Input::Peers {
        id,
        result: Ok(Some(Membership {
            peers: fx.all_peers(),
            incarnation: RECREATED,
            replica,
        })),
    }
}

#[test]
fn a_replica_of_another_creation_is_set_aside_and_its_election_rejoins() {
    let mut fx = Fx::new();
    let a = base_a();
    elect_master(&mut fx, &a);
    // A route's directory read names the new creation; our replica (and our
    // mastership) belong to the old one.
    let effects = fx.on(2_000, creation_read(&a, CREATION));
    assert_eq!(effects.first(), Some(&set_aside_first(&a)), "{effects:?}");
    assert!(
        effects.contains(&tr(&a, State::Master, "LEAVE_REQ", State::Leaving)),
        "the old creation's master steps down: {effects:?}"
    );
    // The same creation on both sides: nothing to do.
    let effects = fx.on(2_010, creation_read(&a, RECREATED));
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::SetAside { .. })),
        "{effects:?}"
    );
}

#[test]
fn an_election_whose_directory_read_finds_an_old_replica_sets_it_aside() {
    let mut fx = Fx::new();
    let a = base_a();
    assert!(fx.on(1_000, Input::SessionConnected(S1)).is_empty());
    fx.on(1_000, poke(&a));
    let read = recreated_read(&fx, 2, Some(CREATION));
    let effects = fx.on(1_010, read);
    assert_eq!(effects.first(), Some(&set_aside_first(&a)), "{effects:?}");
    assert_eq!(
        effects[1..],
        [
            tr(&a, State::Peering, "LEAVE_REQ", State::None),
            resolve(3, &a),
            tr(&a, State::None, "NONE", State::Peering),
        ],
        "the election starts again, to copy the current base"
    );
    // The first read's answer is spent; the second finds the replica gone
    // and the election goes on.
    let read = recreated_read(&fx, 3, None);
    let effects = fx.on(1_020, read);
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::Zk {
                op: ZkOp::CreateSeq { .. },
                ..
            }
        )),
        "{effects:?}"
    );
    assert!(!effects.iter().any(|e| matches!(e, Effect::SetAside { .. })));
}

#[test]
fn a_getvers_naming_another_creation_is_refused_and_the_directory_read_again() {
    let mut fx = Fx::new();
    let a = base_a();
    elect_master(&mut fx, &a);
    let ask = |req, incarnation| Input::GetversReq {
        req,
        base: a.clone(),
        master_seq: Some(17),
        candidate_seq: None,
        incarnation,
    };
    let effects = fx.on(2_000, ask(950, Some(RECREATED)));
    let recheck = match effects.as_slice() {
        [Effect::ResolvePeers {
            id,
            base,
            decache: true,
        }, Effect::GetversServed {
            req: 950,
            result: Err(GetversRefusal::OtherCreation { ours: CREATION }),
            ..
        }] if *base == a => *id,
        other => panic!("{other:?}"),
    };
    assert_eq!(fx.state(&a), State::Master, "a refusal deposes nobody");
    // An asker of our creation, or one that names none, is served.
    for (req, incarnation) in [(951, Some(CREATION)), (952, None)] {
        assert_eq!(
            fx.on(2_001, ask(req, incarnation)),
            vec![Effect::GetversServed {
                req,
                base: a.clone(),
                result: Ok(())
            }]
        );
    }
    // Our directory read names the new creation: from now on we agree with
    // the asker (our replica, if old, is compared in the same read).
    let read = recreated_read(&fx, recheck, Some(RECREATED));
    assert_eq!(fx.on(2_010, read), vec![]);
    assert_eq!(
        fx.on(2_020, ask(953, Some(RECREATED))),
        vec![Effect::GetversServed {
            req: 953,
            base: a.clone(),
            result: Ok(())
        }]
    );
}
