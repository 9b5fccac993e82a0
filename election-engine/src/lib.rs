//! The election engine: every decision one service makes about its
//! elections, with no I/O. The server runs it through a thin tokio shell
//! (election-server's `service.rs`), and the deterministic simulation runs
//! the very same code over its model of ZooKeeper and of the network.
//!
//! ```text
//!            Input                                 Effect
//!  clients ─ Poke/Leave/SyncReq/UseReceived ─┐  ┌─ Zk{id, op}          → ZooKeeper session
//!  session ─ SessionConnected/Lost/Restored ─┤  ├─ ResolvePeers{id}    → directory
//!  results ─ Zk/Peers/Getvers/Synced{id} ────┼──┼─ Getvers{id}, Use    → peers
//!  reads   ─ Creation (replica vs directory) ┤  ├─ SetAside            → storage
//!  watches ─ WatchFired{watch} ──────────────┤  ├─ Sync{id}/AbortSync  → storage + master
//!  writes  ─ Write/Replicate/DumpReq{req} ───┤  ├─ Store{id}           → storage (one per base)
//!  peers   ─ GetversReq{req} ────────────────┤  ├─ Replicate{id}, Resync → slaves
//!  peers   ─ CandidateVersions/MasterLeft ───┤  ├─ Farewell            → peers
//!  results ─ Stored/Replicated{id} ──────────┤  ├─ WriteDone/ReplicateDone/GetversServed{req} → callers
//!  timers  ─ Tick at next_wakeup() ──────────┘  └─ Observe, Log        → metrics, people
//! ```
//!
//! # A write, seen from the master
//! `Write{req}` (the shell found the election final) → checks (read-only,
//! MASTER with a live session, stop-writes, the fence) → queued in the
//! base's `BaseOps`; with no batch in flight → `Store{Begin{ops}}` →
//! `Stored{Begun{prev, next}}` → `Replicate` to each slave → at a majority
//! `Store{Commit}` → `Stored{Committed}` → `WriteDone{Ok}` for every write of
//! the batch, `Resync` to a slave that missed it, and the next batch takes
//! every write that queued meanwhile. A copy (`DumpReq`) or a candidate's
//! GETVERS arriving mid-batch waits for the batch to be decided.
//!
//! Inside, each election is the pure state machine of `election_core`
//! ([`election_core::Election`]); the engine keeps them in a slab indexed by
//! election key, with one ordered timer set for all of them, and drives each
//! one: it turns the machine's `Action`s into effects and their results back
//! into `Event`s (the listing rule, the reuse of a lower node read while
//! LISTING, the ownership check of our own node, GETVERS outcomes and the
//! rookie rule, session losses, idle expiry, stop-writes, exit).
//!
//! # The shell's contract
//! 1. Feed inputs one at a time with a non-decreasing `now`, then take the
//!    effects with [`Engine::drain`] and start them in emission order.
//! 2. Submit ZooKeeper ops to the session in emission order, before the next
//!    input is handled: the engine relies on a session's FIFO (a DELETE
//!    before the CREATE behind it, a LIST right behind an EXISTS).
//! 3. Answer every effect that carries an id with exactly one input with the
//!    same id; report a watch's firing at most once. Late or unknown ids are
//!    ignored, so a shell may answer after the election moved on.
//! 4. Call `handle(now, Input::Tick)` at [`Engine::next_wakeup`].
//!
//! # A cold election, seen from one service
//! `Poke{X}` creates the slot and feeds `NONE`; the machine asks for peers →
//! `ResolvePeers` → `Peers` → `Use` to each peer and `Zk CreateSeq` →
//! `Created{seq}` → `Zk Exists{watch}` and `Zk List` (pipelined) → the
//! listing finds our node lowest → `Getvers` to each peer → enough answers
//! are `OK` that the others cannot change the verdict (with 3 peers, the
//! first) → MASTER, `Use{master}` to the peers, `Observe(Transition)`.
//! A follower's listing finds a lower node, reads it with `Zk Get{watch}`,
//! reuses that read to learn its master, asks the master `Getvers{master_seq}`
//! and settles as SLAVE.
//!
//! # A container deleted and created again (issue 14, H3)
//! Each directory read names the base's creation (`Membership`), and a
//! read made while we hold a replica also reports the replica's
//! (`Creation`): one of another creation is set aside (`SetAside`) and its
//! election rejoins, to copy the current base. Our GETVERS carries the
//! creation we read; a peer whose read names another refuses it
//! (`GetversRefusal::OtherCreation`) and reads the directory again, and we
//! read it again when we retry. A replica's version also names its
//! creation, so two creations compare as diverged meanwhile.
//!
//! # Answers that are not waited for (issue 15)
//! A candidate's GETVERS carries its version; the peer it asked, once it
//! answered, feeds `CandidateVersions`. If the two agree and that peer then
//! finds the candidate's node lowest, it neither waits for its read of that
//! node (the read still sets the watch, and a read that does not confirm
//! the owner makes it list again) nor for its GETVERS to the candidate
//! (still sent: an answer showing the master ahead, because it wrote in
//! between, makes it copy at once): it settles as SLAVE as soon as its
//! listing answers. A master leaving with no
//! batch in flight sends `Farewell` (its final version); a slave holding the
//! same version (`MasterLeft`) that is next, with no newer candidate heard
//! since, leads without waiting for its GETVERS round. The safety argument
//! of each sits beside `Vouch` in `engine.rs`; the simulation checks that a
//! published version holds every acknowledged write.

mod engine;
pub mod io;

pub use engine::{jitter_seed, Engine, EngineConfig, Mutations, Slot, MAX_QUEUED_WRITES};
pub use io::{
    Divergence, Effect, GetversRefusal, Id, Input, LogEvent, Membership, NotOwner, Observation,
    RemoteVersion, ReplicateFailure, ReqId, SessionTag, StoreFailure, StoreOk, StoreOp, WatchId,
    WriteRefusal, Written, ZkFailure, ZkOk, ZkOp,
};
