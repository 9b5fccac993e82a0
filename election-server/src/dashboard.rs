//! `GET /`: a page for a browser, rendered here, read-only, and
//! self-contained (no script, no style sheet or font from anywhere): the
//! service, its ZooKeeper session, its elections by state, read-only and
//! stop-writes banners, the elections that are not final with their
//! reasons, and a form that shows one base's status table (asked of all
//! its peers, as the CLI does) and its timeline. It refreshes itself every
//! few seconds. Leave, sync and balance stay in the CLI, behind the shared
//! secret.

use crate::service::Service;
use axum::extract::{Query, State};
use axum::response::Html;
use election_client::timeline::{esc, lanes, svg};
use election_client::Target;
use election_core::names::{BaseName, ContainerId};
use election_core::State as ElectionState;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

/// Seconds between two refreshes of the page.
const REFRESH_S: u32 = 5;
/// Unsettled elections listed (the count says how many more).
const LISTED: usize = 100;
/// Budget of the lookup's fan-out to the base's peers.
const LOOKUP_BUDGET: Duration = Duration::from_secs(3);

#[derive(Debug, Default, serde::Deserialize)]
pub struct Lookup {
    #[serde(default)]
    acct: String,
    #[serde(default, rename = "ref")]
    reference: String,
    #[serde(default)]
    cid: String,
}

pub async fn page(State(svc): State<Arc<Service>>, Query(q): Query<Lookup>) -> Html<String> {
    let mut s = String::with_capacity(16 * 1024);
    head(&svc, &mut s);
    banners(&svc, &mut s);
    counts(&svc, &mut s);
    unsettled(&svc, &mut s);
    lookup(&svc, &q, &mut s).await;
    let _ = writeln!(
        s,
        "<footer>This page refreshes every {REFRESH_S} s and changes nothing. \
         To act (leave, sync, balance, clear-readonly): the <code>openio</code> CLI, \
         with the services' shared secret.</footer></body></html>"
    );
    Html(s)
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.2em;color:#222}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.2em 0 .4em}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}.banner{padding:.6em 1em;margin:.6em 0;font-weight:bold;color:#fff}\
.readonly{background:#c62828}.stopwrites{background:#ef6c00}.ok{color:#2e7d32}.bad{color:#c62828}\
.meta{color:#555}code{background:#f3f3f3;padding:0 .2em}footer{margin-top:2em;color:#777;font-size:.9em}\
input{margin:0 .6em 0 .2em}";

fn head(svc: &Service, s: &mut String) {
    let view = svc.zk.view();
    let up = svc.uptime().as_secs();
    let link = view.link.as_str();
    let class = if link == "CONNECTED" { "ok" } else { "bad" };
    let _ = write!(
        s,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\
         <title>{id} · election-server</title><style>{STYLE}</style></head><body>\
         <h1>election-server <span id=\"service-id\">{id}</span></h1>\
         <p class=\"meta\">type <b>{stype}</b> · namespace <b>{ns}</b> · up {h}h{m:02}m{sec:02}s · \
         ZooKeeper <span id=\"zk-state\" class=\"{class}\">{link}</span>, session \
         <code id=\"zk-session\">0x{sid:x}</code> (timeout {to} ms)</p>\n",
        id = esc(svc.me.as_str()),
        stype = esc(svc.stype.as_str()),
        ns = esc(svc.layout.namespace().as_str()),
        h = up / 3600,
        m = up / 60 % 60,
        sec = up % 60,
        sid = view.session_id,
        to = view.negotiated_timeout.as_millis(),
    );
}

fn banners(svc: &Service, s: &mut String) {
    let ro = svc.readonly();
    if !ro.is_empty() {
        let bases: Vec<String> = ro.iter().take(10).map(|d| esc(d.base.as_str())).collect();
        let _ = writeln!(
            s,
            "<div id=\"readonly\" class=\"banner readonly\">Emergency read-only mode: \
             {n} base(s) diverged ({list}{more}). Writes are refused until the replicas \
             agree and <code>openio admin clear-readonly {id}</code> is run.</div>",
            n = ro.len(),
            list = bases.join(", "),
            more = if ro.len() > 10 { ", …" } else { "" },
            id = esc(svc.me.as_str()),
        );
    }
    if let Some(why) = svc.guard.stopped() {
        let _ = writeln!(
            s,
            "<div id=\"stop-writes\" class=\"banner stopwrites\">Stop-writes: {}. \
             This service takes no write and leads no base until it is resolved.</div>",
            esc(&why)
        );
    }
}

fn counts(svc: &Service, s: &mut String) {
    let counts = svc.counts();
    s.push_str("<h2>Elections by state</h2><table id=\"counts\"><tr>");
    for k in counts.keys() {
        let _ = write!(s, "<th>{k}</th>");
    }
    s.push_str("</tr><tr>");
    for (k, v) in &counts {
        let _ = write!(s, "<td id=\"count-{k}\">{v}</td>");
    }
    s.push_str("</tr></table>\n");
}

fn unsettled(svc: &Service, s: &mut String) {
    let now = svc.now();
    // Page by page, as `/v1/elections`: the engine's lock is held for one
    // page of elections at a time, never across all of them.
    const PAGE: usize = 4096;
    let mut total = 0usize;
    let mut rows: Vec<(String, ElectionState, u64, String)> = Vec::new();
    let mut from = Some(0usize);
    while let Some(start) = from.take() {
        svc.with_elections_from(start, |all| {
            for (n, (i, e)) in all.enumerate() {
                if n == PAGE {
                    from = Some(i);
                    break;
                }
                let st = e.fsm.state();
                if st.is_final() || st == ElectionState::None {
                    continue;
                }
                total += 1;
                if rows.len() < LISTED {
                    rows.push((
                        e.base.to_string(),
                        st,
                        now.mono_ms.saturating_sub(e.fsm.entered_mono()),
                        e.fsm.reason(now),
                    ));
                }
            }
        });
    }
    let _ = write!(s, "<h2>Elections not final ({total})</h2>");
    if rows.is_empty() {
        s.push_str("<p id=\"unsettled-none\">None: every election is MASTER, SLAVE or idle.</p>\n");
        return;
    }
    s.push_str(
        "<table id=\"unsettled\"><tr><th>Base</th><th>State</th><th>For</th><th>Reason</th></tr>\n",
    );
    for (base, st, ms, reason) in &rows {
        let class = if *st == ElectionState::Failed {
            " class=\"bad\""
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "<tr><td><a href=\"/?cid={cid}\">{b}</a></td><td{class}>{st}</td><td>{:.1} s</td><td>{r}</td></tr>",
            *ms as f64 / 1e3,
            cid = esc(base.split('.').next().unwrap_or_default()),
            b = esc(base),
            r = esc(reason),
        );
    }
    s.push_str("</table>\n");
    if total > rows.len() {
        let _ = writeln!(s, "<p>… and {} more.</p>", total - rows.len());
    }
}

async fn lookup(svc: &Arc<Service>, q: &Lookup, s: &mut String) {
    let _ = writeln!(
        s,
        "<h2>Look up a base</h2><form id=\"lookup\" method=\"get\" action=\"/\">\
         <label>Account<input name=\"acct\" value=\"{a}\"></label>\
         <label>Reference<input name=\"ref\" value=\"{r}\"></label> or \
         <label>CID<input name=\"cid\" size=\"66\" value=\"{c}\"></label>\
         <button type=\"submit\">Show</button></form>",
        a = esc(&q.acct),
        r = esc(&q.reference),
        c = esc(&q.cid),
    );
    let base = match (q.cid.trim(), q.acct.trim(), q.reference.trim()) {
        ("", "", "") => return,
        ("", a, r) if !a.is_empty() && !r.is_empty() => ContainerId::compute(a, r).meta2_base(),
        ("", _, _) => {
            s.push_str("<p id=\"lookup-error\" class=\"bad\">Give both an account and a reference, or a CID.</p>\n");
            return;
        }
        (cid, _, _) => match ContainerId::parse(cid) {
            Ok(c) => c.meta2_base(),
            Err(e) => {
                let _ = writeln!(
                    s,
                    "<p id=\"lookup-error\" class=\"bad\">Not a CID ({}): 64 hexadecimal digits expected.</p>",
                    esc(&e.to_string())
                );
                return;
            }
        },
    };
    show_base(svc, &base, s).await;
}

async fn show_base(svc: &Arc<Service>, base: &BaseName, s: &mut String) {
    let _ = write!(s, "<h3 id=\"base\">{}</h3>", esc(base.as_str()));
    let entry = match svc.directory.lookup(&svc.stype, base).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            let _ = writeln!(
                s,
                "<p id=\"lookup-error\" class=\"bad\">No {} base {} in the directory: check the account and reference.</p>",
                esc(svc.stype.as_str()),
                esc(base.as_str())
            );
            return;
        }
        Err(e) => {
            let _ = writeln!(
                s,
                "<p id=\"lookup-error\" class=\"bad\">The directory cannot be read: {}</p>",
                esc(&e.to_string())
            );
            return;
        }
    };
    if !entry.account.is_empty() {
        let _ = writeln!(
            s,
            "<p class=\"meta\">container <b>{}/{}</b></p>",
            esc(&entry.account),
            esc(&entry.reference)
        );
    }
    let target = Target {
        http: svc.rpc.http(),
        peers: &entry.peers,
        base,
        stype: &svc.stype,
        timeout: LOOKUP_BUDGET,
        request_id: None,
    };
    let (status, debug) = futures::join!(
        election_client::fan_out(&target, "status"),
        election_client::fan_out(&target, "debug")
    );
    s.push_str("<table id=\"status\"><tr><th>Id</th><th>Status</th><th>Message</th></tr>\n");
    for r in &status {
        let class = if r.status == 200 || r.status == 303 {
            "ok"
        } else {
            "bad"
        };
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td class=\"{class}\">{}</td><td>{}</td></tr>",
            esc(&r.id),
            r.status,
            esc(&r.message)
        );
    }
    s.push_str("</table>\n<figure id=\"timeline\">");
    s.push_str(&svg(&format!("{base} ({})", svc.stype), &lanes(&debug)));
    s.push_str("</figure>\n");
}
