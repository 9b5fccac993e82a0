//! (7) A published version is never older than an acknowledged write: a
//! master that tells its peers its final version (a farewell, which lets its
//! successor lead without a GETVERS round) holds every write acknowledged for
//! the base so far.
//!
//! Checked for each farewell published in the step by a master whose node
//! still exists, owned by its live session. One whose node is already gone
//! (a master cut off that has not heard yet) may lack writes of its
//! successor: its peers must not act on its word, which `master_has_acked`
//! checks when they take the role.

use super::violation;
use crate::world::World;
use crate::Violation;

pub fn check(w: &World) -> Result<(), Violation> {
    for (m, b, epoch, writes) in &w.farewells {
        let x = &w.svcs[*m];
        let path = w.layout.election_node(&w.stype, &w.keys[*b], *epoch);
        let holds_node = w.zk.is_live(x.client.session)
            && w.zk.get(&path).is_some_and(|n| n.owner == x.client.session);
        if !holds_node || x.replicas[*b].creation != w.creation[*b] {
            continue;
        }
        if let Some(a) = w
            .acked
            .iter()
            .find(|a| a.base == *b && w.current(a) && !writes.contains(&a.wid))
        {
            return Err(violation(
                w,
                "a published version holds every acknowledged write",
                format!(
                    "base{b}: svc{m} left node {epoch} telling a version without write {} acknowledged by svc{} (epoch {}) at {} ms\n{}",
                    a.wid,
                    a.master,
                    a.epoch,
                    a.at / crate::world::MS,
                    w.describe(*b)
                ),
            ));
        }
    }
    Ok(())
}
