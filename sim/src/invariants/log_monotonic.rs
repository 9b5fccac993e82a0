//! (4) Transition-log sequence numbers only grow, within an election and
//! across the steps of one process incarnation. An election forgotten by idle
//! expiry and created again is a new one (its log starts over).

use super::violation;
use crate::world::World;
use crate::Violation;

pub fn check(w: &mut World) -> Result<(), Violation> {
    let touched: Vec<(usize, usize)> = w.touched.iter().copied().collect();
    for (s, b) in touched {
        let inc = w.svcs[s].inc;
        let Some(e) = w.elec(s, b) else {
            continue;
        };
        let seqs: Vec<u64> = e.fsm.log().iter().map(|l| l.seq).collect();
        // Newest first: strictly decreasing.
        if seqs.windows(2).any(|p| p[0] <= p[1]) {
            return Err(violation(
                w,
                "log sequence monotonic",
                format!("svc{s} base{b}: log sequence numbers out of order: {seqs:?}"),
            ));
        }
        if let Some(&newest) = seqs.first() {
            let uid = e.uid();
            let last = w
                .log_seen
                .insert((s, inc, b), (uid, newest))
                .filter(|(u, _)| *u == uid)
                .map(|(_, l)| l);
            if last.is_some_and(|l| l > newest) {
                return Err(violation(
                    w,
                    "log sequence monotonic",
                    format!("svc{s} base{b}: newest entry went from {last:?} back to {newest}"),
                ));
            }
        }
    }
    Ok(())
}
