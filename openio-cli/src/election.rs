//! `openio election ...`: tables built from the peers' answers, the
//! `--long` view with its verdict, the merged history, and `check`.

use crate::render::{pretty_json, Cell};
use crate::zkdir::ElectionNode;
use election_client::Row;
use election_core::names::{format_seq, ServiceId};
use serde_json::Value;

/// `Id | Status | Message` (+ `Body`).
pub fn basic_rows(
    rows: &[Row],
    with_body: bool,
    human: bool,
) -> (Vec<&'static str>, Vec<Vec<Cell>>) {
    let columns = if with_body {
        vec!["Id", "Status", "Message", "Body"]
    } else {
        vec!["Id", "Status", "Message"]
    };
    let cells = rows
        .iter()
        .map(|r| {
            let mut row = vec![
                Cell::Text(r.id.clone()),
                Cell::Num(r.status),
                Cell::Text(r.message.clone()),
            ];
            if with_body {
                let body = match r.answer.get("body") {
                    None | Some(Value::Null) => String::new(),
                    Some(b) if human => pretty_json(&humanize(b)),
                    Some(b) => pretty_json(b),
                };
                row.push(Cell::Text(body));
            }
            row
        })
        .collect();
    (columns, cells)
}

/// `status --long`: role, master, fencing epoch, base version, session, time
/// in state and the one-line reason of every peer.
pub fn long_rows(rows: &[Row]) -> (Vec<&'static str>, Vec<Vec<Cell>>) {
    let columns = vec![
        "Id",
        "Status",
        "Message",
        "Role",
        "Master",
        "Epoch",
        "Version",
        "ZK session",
        "Since",
        "Reason",
    ];
    let cells = rows
        .iter()
        .map(|r| {
            let a = &r.answer;
            let text = |v: &Value| v.as_str().map(String::from).unwrap_or_else(|| "-".into());
            let role = text(&a["state"]);
            let master = match (r.status, a["master"].as_str()) {
                (200, _) => "self".to_string(),
                (_, Some(m)) => m.to_string(),
                _ => "-".into(),
            };
            let epoch = a["epoch"]
                .as_i64()
                .map(format_seq)
                .unwrap_or_else(|| "-".into());
            let session = match (a["zk_session"].as_str(), a["zk_state"].as_str()) {
                (Some(s), Some(st)) => format!("{s} {st}"),
                _ => "-".into(),
            };
            let since = a["since_ms"]
                .as_u64()
                .map(human_duration)
                .unwrap_or_else(|| "-".into());
            vec![
                Cell::Text(r.id.clone()),
                Cell::Num(r.status),
                Cell::Text(r.message.clone()),
                Cell::Text(role),
                Cell::Text(master),
                Cell::Text(epoch),
                Cell::Text(version_summary(&a["version"])),
                Cell::Text(session),
                Cell::Text(since),
                Cell::Text(text(&a["reason"])),
            ]
        })
        .collect();
    (columns, cells)
}

fn human_duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// `admin=3 properties=7@12`, `missing` or `unknown (why)`. `@12`: the
/// last write was made by the master of epoch 12 (its node's sequence);
/// two copies at one version with different epochs diverged.
pub fn version_summary(v: &Value) -> String {
    match v["state"].as_str() {
        Some("known") => {
            let tables = v["tables"].as_object().cloned().unwrap_or_default();
            let parts: Vec<String> = tables
                .iter()
                .map(|(t, tv)| {
                    // The admin table's writer names the base's creation,
                    // not a master: not shown.
                    let writer = if t == "main.admin" {
                        0
                    } else {
                        tv["writer"].as_u64().unwrap_or(0)
                    };
                    let by = match writer >> 32 {
                        0 => String::new(),
                        epoch => format!("@{epoch}"),
                    };
                    format!(
                        "{}={}{by}",
                        t.trim_start_matches("main."),
                        tv["version"].as_i64().unwrap_or(-1)
                    )
                })
                .collect();
            parts.join(" ")
        }
        Some("missing") => "missing".into(),
        Some("unknown") => format!("unknown ({})", v["reason"].as_str().unwrap_or("?")),
        _ => "-".into(),
    }
}

/// One line that tells the operator what is wrong, if anything.
pub fn verdict(rows: &[Row], nodes: Option<&[ElectionNode]>, peers: &[ServiceId]) -> String {
    let masters: Vec<&str> = rows
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.id.as_str())
        .collect();
    let unreachable: Vec<&str> = rows
        .iter()
        .filter(|r| !r.answered())
        .map(|r| r.id.as_str())
        .collect();
    let unreachable_note = if unreachable.is_empty() {
        String::new()
    } else {
        format!("; unreachable: {}", unreachable.join(", "))
    };
    if masters.len() > 1 {
        return format!(
            "TWO PEERS CLAIM MASTER: {}{unreachable_note}",
            masters.join(" and ")
        );
    }
    let Some(master) = masters.first().copied() else {
        let failed: Vec<&str> = rows
            .iter()
            .filter(|r| r.status == 500)
            .map(|r| r.id.as_str())
            .collect();
        let mut why = Vec::new();
        if !failed.is_empty() {
            why.push(format!("election failed on {}", failed.join(", ")));
        }
        if !unreachable.is_empty() {
            why.push(format!("unreachable: {}", unreachable.join(", ")));
        }
        let others: Vec<String> = rows
            .iter()
            .filter(|r| r.answered() && r.status != 500)
            .map(|r| format!("{} answered {}", r.id, r.status))
            .collect();
        why.extend(others);
        return format!("NO MASTER: {}", why.join("; "));
    };
    if let Some(r) = rows.iter().find(|r| r.status == 303 && r.message != master) {
        return format!(
            "PEERS DISAGREE: {} follows {}, but {master} claims mastership{unreachable_note}",
            r.id, r.message
        );
    }
    if let Some(nodes) = nodes {
        if let Some(n) = nodes
            .iter()
            .find(|n| n.seq.is_some() && !peers.iter().any(|p| p.as_str() == n.owner))
        {
            return format!(
                "DIRECTORY AND ZOOKEEPER DISAGREE: node {} is owned by {:?}, not a peer of the base (see `openio election check`)",
                n.name, n.owner
            );
        }
        match nodes.iter().find(|n| n.seq.is_some()) {
            Some(lowest) if lowest.owner != master => {
                return format!(
                    "DIRECTORY AND ZOOKEEPER DISAGREE: the lowest node {} belongs to {}, but {master} claims mastership",
                    lowest.name, lowest.owner
                );
            }
            None => return format!("DIRECTORY AND ZOOKEEPER DISAGREE: {master} claims mastership but ZooKeeper holds no node"),
            _ => {}
        }
    }
    let slaves = rows.iter().filter(|r| r.status == 303).count();
    format!("OK: one master, {master}; {slaves} slave(s) follow it{unreachable_note}")
}

/// Rewrites `"<ms>:<PRE>:<EVENT>:<POST>"` log entries as local dates.
pub fn humanize(body: &Value) -> Value {
    let mut out = body.clone();
    if let Some(log) = out.get_mut("log").and_then(Value::as_array_mut) {
        for entry in log.iter_mut() {
            if let Some(s) = entry.as_str() {
                *entry = Value::String(human_entry(s));
            }
        }
    }
    out
}

use election_client::timeline::split_entry;

fn local_time(ms: i64) -> Option<String> {
    let t = chrono::DateTime::from_timestamp_millis(ms)?;
    Some(
        t.with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S%.3f")
            .to_string(),
    )
}

pub fn human_entry(s: &str) -> String {
    match split_entry(s).and_then(|(ms, pre, ev, post)| Some((local_time(ms)?, pre, ev, post))) {
        Some((t, pre, ev, post)) => format!("{t} {pre}, {ev} -> {post}"),
        None => s.to_string(),
    }
}

/// `history`: every peer's log merged into one timeline, oldest first.
pub fn history_rows(rows: &[Row]) -> (Vec<&'static str>, Vec<Vec<Cell>>) {
    let mut entries: Vec<(i64, usize, String, String)> = Vec::new();
    for r in rows {
        let log = r.answer["body"]["log"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // Logs are newest first: keep each peer's own order for equal times.
        for (i, e) in log.iter().rev().enumerate() {
            if let Some((ms, pre, ev, post)) = e.as_str().and_then(split_entry) {
                entries.push((ms, i, r.id.clone(), format!("{pre}, {ev} -> {post}")));
            }
        }
    }
    entries.sort_by(|a, b| (a.0, &a.2, a.1).cmp(&(b.0, &b.2, b.1)));
    let cells = entries
        .into_iter()
        .map(|(ms, _, id, t)| {
            vec![
                Cell::Text(local_time(ms).unwrap_or_else(|| ms.to_string())),
                Cell::Text(id),
                Cell::Text(t),
            ]
        })
        .collect();
    (vec!["Time", "Id", "Transition"], cells)
}

/// What `check` concluded about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeVerdict {
    pub status: String,
    /// Safe to delete with `--clean`.
    pub rogue: bool,
}

/// `check`: classifies the election's nodes. `current` maps a peer to the
/// node it reports as its own (from its debug answer), when it answered.
pub fn classify_nodes(
    nodes: &[ElectionNode],
    peers: &[ServiceId],
    current: &[(String, Option<i64>)],
) -> Vec<NodeVerdict> {
    let mut out = Vec::new();
    let mut master_seen = false;
    let mut anomaly_seen = false;
    for n in nodes {
        let is_peer = peers.iter().any(|p| p.as_str() == n.owner);
        let reported = current
            .iter()
            .find(|(id, _)| *id == n.owner)
            .map(|(_, seq)| *seq);
        let (status, rogue) = match (n.seq, is_peer, reported) {
            (None, _, _) => ("garbage name".to_string(), true),
            (Some(_), false, _) => ("rogue: owner is not a peer".to_string(), true),
            (Some(seq), true, Some(own)) if own != Some(seq) => (
                format!(
                    "rogue: {} reports {} as its node",
                    n.owner,
                    own.map(format_seq).unwrap_or_else(|| "none".into())
                ),
                true,
            ),
            (Some(_), true, _) => {
                let role = if master_seen { "slave" } else { "master" };
                master_seen = true;
                (
                    if anomaly_seen {
                        format!("should be {role}")
                    } else {
                        role.to_string()
                    },
                    false,
                )
            }
        };
        anomaly_seen |= rogue;
        out.push(NodeVerdict { status, rogue });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(id: &str, status: i64, message: &str, answer: Value) -> Row {
        Row {
            id: id.into(),
            status,
            message: message.into(),
            answer,
        }
    }

    fn node(seq: i64, owner: &str) -> ElectionNode {
        ElectionNode {
            name: format!("KEY-{}", format_seq(seq)),
            path: String::new(),
            seq: Some(seq),
            owner: owner.into(),
            version: 0,
        }
    }

    fn peers() -> Vec<ServiceId> {
        ["a:1", "b:1", "c:1"]
            .iter()
            .map(|p| ServiceId::new(*p).expect("id"))
            .collect()
    }

    #[test]
    fn verdicts() {
        let healthy = [
            row("a:1", 200, "OK", Value::Null),
            row("b:1", 303, "a:1", Value::Null),
            row("c:1", 303, "a:1", Value::Null),
        ];
        let nodes = [node(1, "a:1"), node(2, "b:1"), node(3, "c:1")];
        assert_eq!(
            verdict(&healthy, Some(&nodes), &peers()),
            "OK: one master, a:1; 2 slave(s) follow it"
        );
        let two = [
            row("a:1", 200, "OK", Value::Null),
            row("b:1", 200, "OK", Value::Null),
        ];
        assert!(verdict(&two, None, &peers()).starts_with("TWO PEERS CLAIM MASTER: a:1 and b:1"));
        let none = [
            row("a:1", 500, "Election failed", Value::Null),
            row("b:1", 2, "refused", Value::Null),
            row("c:1", 7, "Timeout", Value::Null),
        ];
        assert_eq!(
            verdict(&none, None, &peers()),
            "NO MASTER: election failed on a:1; unreachable: b:1, c:1"
        );
        let split = [
            row("a:1", 200, "OK", Value::Null),
            row("b:1", 303, "c:1", Value::Null),
        ];
        assert!(verdict(&split, None, &peers()).starts_with("PEERS DISAGREE: b:1 follows c:1"));
        let wrong_lowest = [node(1, "b:1"), node(2, "a:1")];
        assert!(verdict(&healthy, Some(&wrong_lowest), &peers())
            .contains("the lowest node KEY-0000000001 belongs to b:1"));
        let foreign = [node(0, "x:9"), node(1, "a:1")];
        assert!(
            verdict(&healthy, Some(&foreign), &peers()).contains("owned by \"x:9\", not a peer")
        );
    }

    #[test]
    fn check_classification() {
        let nodes = [
            node(0, "x:9"),
            node(1, "a:1"),
            node(2, "b:1"),
            node(3, "a:1"),
        ];
        let current = vec![("a:1".to_string(), Some(3)), ("b:1".to_string(), Some(2))];
        let v: Vec<String> = classify_nodes(&nodes, &peers(), &current)
            .into_iter()
            .map(|n| n.status)
            .collect();
        assert_eq!(
            v,
            vec![
                "rogue: owner is not a peer",
                "rogue: a:1 reports 0000000003 as its node",
                "should be master",
                "should be slave"
            ]
        );
        let clean = [node(1, "a:1"), node(2, "b:1")];
        let v: Vec<String> = classify_nodes(&clean, &peers(), &[])
            .into_iter()
            .map(|n| n.status)
            .collect();
        assert_eq!(v, vec!["master", "slave"]);
    }

    #[test]
    fn versions_name_the_epoch_of_their_last_writer() {
        let v = json!({"state": "known", "tables": {
            "main.admin": {"version": 1, "when": 5, "writer": 123_456_789_012u64},
            "main.properties": {"version": 7, "when": 9, "writer": (12u64 << 32) | 40}}});
        assert_eq!(version_summary(&v), "admin=1 properties=7@12");
    }

    #[test]
    fn long_view_and_history() {
        let answer = json!({"state": "SLAVE", "master": "a:1", "epoch": 4, "since_ms": 1500, "reason": "not master",
            "version": {"state": "known", "tables": {"main.admin": {"version": 1, "when": 0}, "main.properties": {"version": 7, "when": 0}}},
            "zk_session": "0x1", "zk_state": "CONNECTED"});
        let (cols, cells) = long_rows(&[row("b:1", 303, "a:1", answer)]);
        assert_eq!(cols.len(), cells[0].len());
        let texts: Vec<String> = cells[0]
            .iter()
            .map(|c| match c {
                Cell::Text(t) => t.clone(),
                Cell::Num(n) => n.to_string(),
            })
            .collect();
        assert_eq!(
            texts,
            [
                "b:1",
                "303",
                "a:1",
                "SLAVE",
                "a:1",
                "0000000004",
                "admin=1 properties=7",
                "0x1 CONNECTED",
                "1.5s",
                "not master"
            ]
        );
        let a = json!({"body": {"log": ["30:B:E:C", "10:A:E:B"]}});
        let b = json!({"body": {"log": ["20:X:E:Y"]}});
        let (_, cells) = history_rows(&[row("a:1", 200, "OK", a), row("b:1", 200, "OK", b)]);
        let order: Vec<String> = cells
            .iter()
            .map(|r| match (&r[1], &r[2]) {
                (Cell::Text(i), Cell::Text(t)) => format!("{i} {t}"),
                _ => String::new(),
            })
            .collect();
        assert_eq!(order, ["a:1 A, E -> B", "b:1 X, E -> Y", "a:1 B, E -> C"]);
        assert_eq!(human_duration(65_000), "1m05s");
    }

    #[test]
    fn human_log_entries() {
        let h = human_entry("1712345678901:LISTING:LIST_OK:ASKING");
        assert!(h.ends_with(".901 LISTING, LIST_OK -> ASKING"), "{h}");
        assert_eq!(
            h.len(),
            "2024-04-05 19:34:38.901 LISTING, LIST_OK -> ASKING".len()
        );
        assert_eq!(human_entry("garbage"), "garbage");
    }
}
