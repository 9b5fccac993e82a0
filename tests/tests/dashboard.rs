//! The dashboard page every service serves at `GET /` (issue 17), as a
//! user sees it: loaded by real headless Chromium (Debian's `chromium`,
//! which scripts/test.sh installs; under `CI=true` a missing browser is a
//! failure, not a skip). The dumped DOM holds the live cluster's rows, the
//! lookup form returns a base's table and timeline, banners show, and a
//! screenshot is a non-blank PNG of the window's size.
//!
//! `DASHBOARD_SCREENSHOT=docs/dashboard.png` also keeps the screenshot
//! (the one the README shows).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use system_tests::{Cluster, ServiceOpts, TempDir};

const T: Duration = Duration::from_secs(30);
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 1100;

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|b| {
            std::env::var_os("PATH")
                .map(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join(b))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .find(|p| p.is_file())
}

/// Headless Chromium on `url` with `args` (its own profile, no sandbox:
/// the tests run as root in a container); its stdout.
fn browse(browser: &Path, profile: &Path, args: &[&str], url: &str) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dom(browser: &Path, profile: &Path, url: &str) -> String {
    browse(browser, profile, &["--dump-dom"], url)
}

/// The text of the element whose id is `id` (first tag only, enough for
/// the spans and cells the page marks).
fn by_id<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {dom}"));
    let rest = &dom[at..];
    let open = rest.find('>').expect("tag end") + 1;
    let close = rest[open..].find('<').expect("text end");
    &rest[open..open + close]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_cluster_as_a_browser_renders_it() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is missing: install Debian's package (apt-get install chromium); scripts/test.sh does"
        );
        eprintln!("SKIPPED: chromium is missing (apt-get install chromium)");
        return;
    };
    let opts = ServiceOpts {
        extra: vec!["--enable-fault-switches".into()],
        ..ServiceOpts::default()
    };
    let c = Cluster::start(3, opts);
    let ids = c.ids();
    let base = c.create_container("acct", "dash").await;
    let master = c.wait_converged(&base, T).await.expect("converged");
    let profile = TempDir::new("chromium");

    // The service page: id, session, counts, nothing unsettled.
    let page = dom(&browser, profile.path(), &format!("http://{}/", ids[0]));
    assert_eq!(by_id(&page, "service-id"), ids[0]);
    assert_eq!(by_id(&page, "zk-state"), "CONNECTED");
    assert!(by_id(&page, "zk-session").starts_with("0x"), "{page}");
    let role = |p: &str, k: &str| {
        by_id(p, &format!("count-{k}"))
            .parse::<u64>()
            .expect("count")
    };
    assert_eq!(role(&page, "master") + role(&page, "slave"), 1, "{page}");
    assert!(page.contains("id=\"unsettled-none\""), "{page}");
    assert!(!page.contains("id=\"readonly\"") && !page.contains("id=\"stop-writes\""));
    assert!(page.contains("http-equiv=\"refresh\""), "refreshes itself");
    assert!(!page.contains("<script"), "no script");

    // The lookup form, as a user submits it: the status of every peer, and
    // the timeline with one lane per peer.
    let url = format!("http://{}/?acct=acct&ref=dash&cid=", ids[1]);
    let found = dom(&browser, profile.path(), &url);
    assert_eq!(by_id(&found, "base"), base);
    let table = &found[found.find("id=\"status\"").expect("status table")..];
    let table = &table[..table.find("</table>").expect("table end")];
    for id in &ids {
        let row = format!("<td>{id}</td>");
        assert!(table.contains(&row), "{id} missing: {table}");
    }
    assert_eq!(table.matches(">200<").count(), 1, "{table}");
    assert_eq!(table.matches(">303<").count(), 2, "{table}");
    assert_eq!(
        table.matches(&format!("<td>{master}</td>")).count(),
        3,
        "the master's row, and the two slaves naming it: {table}"
    );
    let figure = &found[found.find("id=\"timeline\"").expect("timeline")..];
    assert!(figure.contains("<svg"), "{figure}");
    assert_eq!(figure.matches("class=\"lane\"").count(), 3, "{figure}");
    let bad = dom(
        &browser,
        profile.path(),
        &format!("http://{}/?cid=XYZ", ids[1]),
    );
    assert!(
        by_id(&bad, "lookup-error").starts_with("Not a CID"),
        "{bad}"
    );

    // A banner: stop-writes on the master.
    c.fault(&master, "low_disk", true).await;
    let started = Instant::now();
    loop {
        let page = dom(&browser, profile.path(), &format!("http://{master}/"));
        if page.contains("id=\"stop-writes\"") {
            break;
        }
        assert!(started.elapsed() < T, "no stop-writes banner: {page}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    c.fault(&master, "low_disk", false).await;

    // A screenshot of the lookup page: a PNG of the window's size, not blank.
    let shot_dir = TempDir::new("screenshot");
    let shot = shot_dir.path().join("dashboard.png");
    browse(
        &browser,
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            &format!("--window-size={WIDTH},{HEIGHT}"),
        ],
        &url,
    );
    let png = std::fs::read(&shot).expect("the screenshot");
    let (w, h, colours, inked) = png_facts(&png);
    assert_eq!((w, h), (WIDTH, HEIGHT), "screenshot size");
    assert!(colours >= 8, "{colours} colours: blank");
    assert!(inked > 0.01, "{:.3} of the pixels not white: blank", inked);
    if let Ok(keep) = std::env::var("DASHBOARD_SCREENSHOT") {
        std::fs::copy(&shot, &keep).expect("keep the screenshot");
    }
}

/// Width, height, distinct colours and the share of non-white pixels.
fn png_facts(bytes: &[u8]) -> (u32, u32, usize, f64) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let px = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let mut colours = std::collections::HashSet::new();
    let mut inked = 0usize;
    for p in pixels.chunks(px) {
        colours.insert(p[..px.min(3)].to_vec());
        if p[..px.min(3)].iter().any(|v| *v < 240) {
            inked += 1;
        }
    }
    let n = (info.width * info.height) as f64;
    (info.width, info.height, colours.len(), inked as f64 / n)
}
