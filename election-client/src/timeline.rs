//! One base's merged transition logs as a picture, for `openio election
//! history --svg/--html` and the services' dashboard page. One swimlane per peer, coloured by the class of the
//! state it was in (master, slave, pending, failed, none); the time axis is
//! in ms from the first transition; every transition is a mark whose
//! tooltip (`<title>`) names it. Written by hand: a few element kinds, and
//! every piece of text goes through [`esc`].

use crate::Row;
use std::fmt::Write;

/// A log entry `<ms>:<PRE>:<EVENT>:<POST>`, split.
pub fn split_entry(s: &str) -> Option<(i64, &str, &str, &str)> {
    let parts: Vec<&str> = s.splitn(4, ':').collect();
    let [ms, pre, event, post] = parts[..] else {
        return None;
    };
    Some((ms.parse().ok()?, pre, event, post))
}

/// Each peer's lane from the rows of a `debug` fan-out, its log oldest
/// first (a peer that did not answer gets an empty lane saying why).
pub fn lanes(rows: &[Row]) -> Vec<Lane> {
    rows.iter()
        .map(|r| {
            let marks = r.answer["body"]["log"]
                .as_array()
                .map(|log| {
                    log.iter()
                        .rev()
                        .filter_map(|e| e.as_str().and_then(split_entry))
                        .map(|(ms, pre, event, post)| Mark {
                            ms,
                            pre: pre.into(),
                            event: event.into(),
                            post: post.into(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Lane {
                peer: r.id.clone(),
                marks,
                missing: (!r.answered()).then(|| r.message.clone()),
            }
        })
        .collect()
}

/// One transition of one peer's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub ms: i64,
    pub pre: String,
    pub event: String,
    pub post: String,
}

/// A peer's lane: its id, its transitions oldest first, or why it has none.
#[derive(Debug, Clone)]
pub struct Lane {
    pub peer: String,
    pub marks: Vec<Mark>,
    pub missing: Option<String>,
}

/// The colour class of a state.
pub fn class(state: &str) -> &'static str {
    match state {
        "MASTER" => "master",
        "SLAVE" => "slave",
        "FAILED" => "failed",
        "NONE" => "none",
        _ => "pending",
    }
}

const CLASSES: [(&str, &str); 5] = [
    ("master", "#2e7d32"),
    ("slave", "#1565c0"),
    ("pending", "#f9a825"),
    ("failed", "#c62828"),
    ("none", "#9e9e9e"),
];

const LEFT: f64 = 170.0;
const WIDTH: f64 = 900.0;
const LANE: f64 = 34.0;
const TOP: f64 = 40.0;

/// XML text and attribute escaping.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A round step for about 8 ticks over `span` ms.
fn tick_step(span: f64) -> f64 {
    let raw = (span / 8.0).max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// The picture, as a standalone SVG document. `title` heads it.
pub fn svg(title: &str, lanes: &[Lane]) -> String {
    let t0 = lanes
        .iter()
        .flat_map(|l| l.marks.iter().map(|m| m.ms))
        .min()
        .unwrap_or(0);
    let t1 = lanes
        .iter()
        .flat_map(|l| l.marks.iter().map(|m| m.ms))
        .max()
        .unwrap_or(t0);
    // Room after the last transition, so that the last state shows.
    let span = ((t1 - t0) as f64 * 1.05).max(1.0);
    let x = |ms: i64| LEFT + (ms - t0) as f64 / span * WIDTH;
    let height = TOP + LANE * lanes.len() as f64 + 60.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" viewBox="0 0 {w} {height}" font-family="sans-serif" font-size="12">"#,
        w = LEFT + WIDTH + 20.0
    );
    s.push_str("<style>");
    for (class, colour) in CLASSES {
        let _ = write!(s, ".{class}{{fill:{colour}}}");
    }
    s.push_str(".mark{fill:#fff;stroke:#000;stroke-width:1}.axis{stroke:#555}</style>");
    let _ = write!(
        s,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#,
        esc(title)
    );
    for (i, lane) in lanes.iter().enumerate() {
        let y = TOP + LANE * i as f64;
        let _ = write!(
            s,
            r#"<g class="lane" data-peer="{p}"><text x="10" y="{ty}">{p}</text>"#,
            p = esc(&lane.peer),
            ty = y + LANE / 2.0 + 4.0
        );
        if let Some(why) = &lane.missing {
            let _ = write!(
                s,
                r##"<text x="{LEFT}" y="{ty}" fill="#c62828">no history: {}</text>"##,
                esc(why),
                ty = y + LANE / 2.0 + 4.0
            );
        }
        for (j, m) in lane.marks.iter().enumerate() {
            let end = lane.marks.get(j + 1).map_or(t0 + span as i64, |n| n.ms);
            let (a, b) = (x(m.ms), x(end));
            let _ = write!(
                s,
                r#"<rect class="state {c}" x="{a:.2}" y="{y0:.2}" width="{w:.2}" height="{h:.2}"><title>{st} from +{from} ms</title></rect>"#,
                c = class(&m.post),
                y0 = y + 6.0,
                w = (b - a).max(0.5),
                h = LANE - 12.0,
                st = esc(&m.post),
                from = m.ms - t0,
            );
        }
        for m in &lane.marks {
            let _ = write!(
                s,
                r#"<circle class="mark" cx="{cx:.2}" cy="{cy:.2}" r="4"><title>+{rel} ms: {pre}, {ev} -&gt; {post}</title></circle>"#,
                cx = x(m.ms),
                cy = y + LANE / 2.0,
                rel = m.ms - t0,
                pre = esc(&m.pre),
                ev = esc(&m.event),
                post = esc(&m.post),
            );
        }
        s.push_str("</g>");
    }
    let axis_y = TOP + LANE * lanes.len() as f64 + 8.0;
    let _ = write!(
        s,
        r#"<g class="time-axis"><line class="axis" x1="{LEFT}" y1="{axis_y}" x2="{x2}" y2="{axis_y}"/>"#,
        x2 = LEFT + WIDTH
    );
    let step = tick_step(span);
    let mut t = 0.0;
    while t <= span {
        let tx = LEFT + t / span * WIDTH;
        let _ = write!(
            s,
            r#"<line class="axis" x1="{tx:.2}" y1="{axis_y}" x2="{tx:.2}" y2="{y2}"/><text x="{tx:.2}" y="{ty}" text-anchor="middle">{t} ms</text>"#,
            y2 = axis_y + 5.0,
            ty = axis_y + 18.0,
        );
        t += step;
    }
    s.push_str("</g><g class=\"legend\">");
    for (i, (class, _)) in CLASSES.iter().enumerate() {
        let lx = LEFT + 110.0 * i as f64;
        let ly = axis_y + 30.0;
        let _ = write!(
            s,
            r#"<rect class="{class}" x="{lx}" y="{ly}" width="12" height="12"/><text x="{tx}" y="{ty}">{class}</text>"#,
            tx = lx + 16.0,
            ty = ly + 10.0,
        );
    }
    s.push_str("</g></svg>\n");
    s
}

/// The same picture in a page, with the merged table under it.
pub fn html(title: &str, lanes: &[Lane], table: &[[String; 3]]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}</style></head><body><h1>{t}</h1>\n",
        t = esc(title)
    );
    s.push_str(&svg(title, lanes));
    s.push_str(
        "<table><thead><tr><th>Time</th><th>Id</th><th>Transition</th></tr></thead><tbody>\n",
    );
    for [time, id, transition] in table {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(time),
            esc(id),
            esc(transition)
        );
    }
    s.push_str("</tbody></table></body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(ms: i64, pre: &str, event: &str, post: &str) -> Mark {
        Mark {
            ms,
            pre: pre.into(),
            event: event.into(),
            post: post.into(),
        }
    }

    fn lanes() -> Vec<Lane> {
        vec![
            Lane {
                peer: "127.0.0.1:6001".into(),
                marks: vec![
                    mark(1_000, "NONE", "NONE", "PEERING"),
                    mark(1_002, "PEERING", "GETPEERS_DONE", "CREATING"),
                    mark(1_005, "LISTING", "LIST_OK", "CHECKING_SLAVES"),
                    mark(1_009, "CHECKING_SLAVES", "GETVERS_OK", "MASTER"),
                ],
                missing: None,
            },
            Lane {
                peer: "127.0.0.1:6002".into(),
                marks: vec![
                    mark(1_001, "NONE", "NONE", "PEERING"),
                    mark(1_011, "CHECKING_MASTER", "GETVERS_OK", "SLAVE"),
                ],
                missing: None,
            },
            Lane {
                peer: "<odd & \"peer\">".into(),
                marks: vec![],
                missing: Some("connection refused <&>".into()),
            },
        ]
    }

    #[test]
    fn one_lane_per_peer_one_mark_per_transition_and_well_formed() {
        let doc = svg("meta2 FVE0 <&>", &lanes());
        let xml = roxmltree::Document::parse(&doc).expect("well-formed SVG");
        let lanes_found: Vec<_> = xml
            .descendants()
            .filter(|n| n.attribute("class") == Some("lane"))
            .collect();
        assert_eq!(lanes_found.len(), 3);
        assert_eq!(
            lanes_found[2].attribute("data-peer"),
            Some("<odd & \"peer\">")
        );
        let marks: Vec<_> = xml
            .descendants()
            .filter(|n| n.attribute("class") == Some("mark"))
            .collect();
        assert_eq!(marks.len(), 6);
        let tip = marks[3]
            .children()
            .find(|c| c.has_tag_name("title"))
            .and_then(|t| t.text());
        assert_eq!(tip, Some("+9 ms: CHECKING_SLAVES, GETVERS_OK -> MASTER"));
        // Coloured by class: the master's last state, the slave's.
        let classes: Vec<&str> = xml
            .descendants()
            .filter_map(|n| n.attribute("class"))
            .filter(|c| c.starts_with("state "))
            .collect();
        assert_eq!(classes.len(), 6);
        assert_eq!(classes[3], "state master");
        assert_eq!(classes[5], "state slave");
        assert!(classes[0] == "state pending" && classes.contains(&"state pending"));
    }

    #[test]
    fn a_page_holds_the_picture_and_the_table() {
        let table = vec![[
            "2026-12-01 08:00:00.000".to_string(),
            "127.0.0.1:6001".to_string(),
            "NONE, NONE -> PEERING".to_string(),
        ]];
        let page = html("meta2 FVE0", &lanes(), &table);
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(page.contains("<td>NONE, NONE -&gt; PEERING</td>"));
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(12.0), 2.0);
        assert_eq!(tick_step(100.0), 20.0);
        assert_eq!(tick_step(7_000.0), 1_000.0);
        assert_eq!(tick_step(0.0), 1.0);
    }
}
