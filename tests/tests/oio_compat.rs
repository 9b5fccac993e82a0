//! Contract tests of the OpenIO proxy routes: each request is sent exactly
//! as the real Python `openio` CLI sends it (reference/oio-proxy-compat.md:
//! POST, no Content-Type, Python's JSON spacing, `x-oio-timeout` in
//! microseconds, `x-oio-req-id`), and every field the CLI reads is checked,
//! with the traps: the exact `application/json` content type, never an HTTP
//! 3xx, `body` always present, 201/204 without a body.

use serde_json::Value;
use std::time::Duration;
use system_tests::{base_of, Cluster, ServiceOpts};
use zookeeper_client as zk;

/// `openio election status meta2 FVE0`, as the real CLI sends it.
const STATUS: &str = "admin/status?type=meta2&acct=myaccount&ref=FVE0";

const CID: &str = "697ECB056A5F9339B36C3B0A020B5AB17B4B0160FBEBEA203315EA1FC1B61605";

/// What the Python client gets: the HTTP status, the JSON body (parsed only
/// when the content type is exactly `application/json`, as the client does)
/// and the raw bytes.
#[derive(Debug)]
struct Reply {
    http: u16,
    json: Option<Value>,
    raw: String,
    headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// The line the CLI prints on stderr for an error reply.
    fn cli_error_line(&self) -> String {
        let j = self.json.as_ref().expect("error replies are JSON");
        format!(
            "{} (HTTP {}) (STATUS {})",
            j["message"].as_str().expect("message"),
            self.http,
            j["status"]
        )
    }
}

/// Sends `POST http://<service>/v3.0/OPENIO/<path>` like the real client.
async fn oio(c: &Cluster, service: &str, path: &str, body: Option<&str>, timeout_s: f64) -> Reply {
    oio_headers(c, service, path, body, timeout_s, &[]).await
}

async fn oio_headers(
    c: &Cluster,
    service: &str,
    path: &str,
    body: Option<&str>,
    timeout_s: f64,
    extra: &[(&str, &str)],
) -> Reply {
    let mut req = c
        .http
        .post(format!("http://{service}/v3.0/OPENIO/{path}"))
        .header("Accept-Encoding", "identity")
        .header("User-Agent", "python-urllib3/1.26.20")
        .header(
            "x-oio-timeout",
            ((timeout_s * 990_000.0) as u64).to_string(),
        )
        .header(
            "x-oio-req-id",
            format!("CLI-contract-{}", path.replace(['/', '?', '&', '='], "-")),
        )
        .timeout(Duration::from_secs_f64(timeout_s + 5.0));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    // Bodies are pre-serialised strings: no Content-Type header at all.
    req = req.body(body.unwrap_or("").to_string());
    let resp = req.send().await.expect("the service answers");
    let http = resp.status().as_u16();
    let headers = resp.headers().clone();
    let raw = resp.text().await.expect("body");
    let ct = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap_or(""));
    let json = if ct == Some("application/json") {
        Some(serde_json::from_str(&raw).expect("decodable JSON"))
    } else {
        None
    };
    assert!(
        !(300..400).contains(&http),
        "never an HTTP redirect: {http} {raw}"
    );
    Reply {
        http,
        json,
        raw,
        headers,
    }
}

/// Checks the shape every election command reads, and returns
/// `(peer, status, message)` sorted by peer.
fn peer_rows(r: &Reply) -> Vec<(String, i64, String)> {
    assert_eq!(r.http, 200, "{r:?}");
    let obj = r
        .json
        .as_ref()
        .expect("application/json")
        .as_object()
        .expect("an object keyed by peer");
    let mut rows: Vec<(String, i64, String)> = obj
        .iter()
        .map(|(peer, v)| {
            assert!(
                v.get("body").is_some(),
                "{peer}: `body` is always present: {v}"
            );
            (
                peer.clone(),
                v["status"]["status"]
                    .as_i64()
                    .expect("status.status is an int"),
                v["status"]["message"]
                    .as_str()
                    .expect("status.message is a string")
                    .to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The rows of our Rust CLI for the same command.
async fn rust_cli_rows(c: &Cluster, args: &[&str]) -> Vec<(String, i64, String)> {
    let mut all = vec!["-a", "myaccount"];
    all.extend_from_slice(args);
    let run = c.openio(&all).await;
    run.table()
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().expect("status"), r[2].clone()))
        .collect()
}

fn the_master(rows: &[(String, i64, String)]) -> String {
    let masters: Vec<&String> = rows.iter().filter(|r| r.1 == 200).map(|r| &r.0).collect();
    assert_eq!(masters.len(), 1, "one master: {rows:?}");
    for r in rows.iter().filter(|r| r.1 != 200) {
        assert_eq!(
            (r.1, &r.2),
            (303, masters[0]),
            "slaves name the master: {rows:?}"
        );
    }
    masters[0].clone()
}

/// `openio election ping|status|debug|leave|sync|check` against the proxy
/// routes of any service, compared with our Rust CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_commands_through_the_proxy_routes() {
    let c = Cluster::start(3, ServiceOpts::default());
    let mut ids = c.ids();
    ids.sort();
    let proxy = ids[0].as_str();

    // `openio container create FVE0`: 201 once, 204 after, no body.
    let body = r#"{"properties": {}, "system": {}}"#;
    let path = "container/create?acct=myaccount&ref=FVE0";
    let extra = [("x-oio-action-mode", "autocreate")];
    let r = oio_headers(&c, proxy, path, Some(body), 30.0, &extra).await;
    assert_eq!((r.http, r.raw.as_str()), (201, ""), "{r:?}");
    let r = oio_headers(&c, ids[1].as_str(), path, Some(body), 30.0, &extra).await;
    assert_eq!((r.http, r.raw.as_str()), (204, ""), "{r:?}");

    // ping: 200 OK per peer, body "".
    let r = oio(
        &c,
        proxy,
        "admin/ping?type=meta2&acct=myaccount&ref=FVE0",
        None,
        30.0,
    )
    .await;
    let rows = peer_rows(&r);
    assert_eq!(rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(), ids);
    assert!(
        rows.iter().all(|r| (r.1, r.2.as_str()) == (200, "OK")),
        "{rows:?}"
    );
    for v in r
        .json
        .as_ref()
        .expect("json")
        .as_object()
        .expect("obj")
        .values()
    {
        assert_eq!(v["body"], "", "ping bodies are empty strings");
    }

    // status: one 200 OK, two 303 <master>; the same table as our CLI.
    c.wait_converged(&base_of("myaccount", "FVE0"), Duration::from_secs(10))
        .await
        .expect("converged");
    let r = oio(&c, proxy, STATUS, None, 30.0).await;
    let rows = peer_rows(&r);
    let master = the_master(&rows);
    assert_eq!(
        rows,
        rust_cli_rows(&c, &["election", "status", "meta2", "FVE0"]).await
    );
    // The request id reached the proxy's log.
    assert!(
        c.service(proxy)
            .log_text()
            .contains("CLI-contract-admin-status"),
        "x-oio-req-id in the proxy's log"
    );
    // Through another service, with --cid, and with --service-id (no lookup).
    let r = oio(
        &c,
        ids[2].as_str(),
        &format!("admin/status?type=meta2&cid={CID}"),
        None,
        30.0,
    )
    .await;
    assert_eq!(peer_rows(&r), rows);
    let two = format!(
        "{}%2C{}",
        ids[1].replace(':', "%3A"),
        ids[2].replace(':', "%3A")
    );
    let r = oio(
        &c,
        proxy,
        &format!("admin/status?type=meta2&acct=myaccount&ref=FVE0&service_id={two}"),
        None,
        30.0,
    )
    .await;
    let subset = peer_rows(&r);
    assert_eq!(subset.len(), 2, "{subset:?}");
    assert!(subset.iter().all(|r| r.0 != ids[0]));

    // debug: the body of every peer, with what `--human` and `check` read.
    let r = oio(
        &c,
        proxy,
        "admin/debug?type=meta2&acct=myaccount&ref=FVE0",
        None,
        30.0,
    )
    .await;
    assert!(peer_rows(&r).iter().all(|r| r.1 == 200));
    let debug = r.json.clone().expect("json");
    let mut zk_servers = Vec::new();
    let mut zk_path = String::new();
    for (peer, v) in debug.as_object().expect("obj") {
        let b = &v["body"];
        assert_eq!(b["local"]["url"], peer.as_str());
        assert_eq!(b["base"]["name"], format!("{CID}.1"));
        assert_eq!(b["base"]["type"], "meta2");
        let zk = b["base"]["zk"].as_str().expect("base.zk");
        assert!(
            zk.starts_with("/hc/ns/OPENIO/el/meta2/D9/EA/D9EAF7894DB54D52"),
            "{zk}"
        );
        zk_path = zk.to_string();
        let server = b["base"]["zk_server"].as_str().expect("base.zk_server");
        assert!(
            !server.contains('/'),
            "a plain host:port list, no chroot: {server}"
        );
        zk_servers.push(server.to_string());
        for k in [
            "refcount",
            "pipefrom",
            "getvers",
            "seconds_since_last_access",
            "seconds_since_last_status",
        ] {
            assert!(b["#"][k].is_u64(), "#.{k} in {b}");
        }
        // `--human`: `<ms>:<PRE>:<EVENT>:<POST>`, the first field a float.
        let log = b["log"].as_array().expect("log");
        assert!(!log.is_empty());
        for e in log {
            let parts: Vec<&str> = e.as_str().expect("string").splitn(4, ':').collect();
            assert_eq!(parts.len(), 4, "{e}");
            let ms: f64 = parts[0].parse().expect("epoch ms");
            assert!(ms > 1.6e12, "{e}");
        }
    }
    // `election check`: the nodes' data are the keys of the debug reply,
    // the first node is the master's.
    let client = zk::Client::connect(&zk_servers.join(","))
        .await
        .expect("zk");
    let (parent, prefix) = zk_path.rsplit_once('/').expect("parent/prefix");
    let mut nodes: Vec<String> = client
        .list_children(parent)
        .await
        .expect("children")
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    nodes.sort();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    let mut owners = Vec::new();
    for n in &nodes {
        let (data, _) = client
            .get_data(&format!("{parent}/{n}"))
            .await
            .expect("data");
        let owner = String::from_utf8(data).expect("utf-8");
        assert!(
            debug.get(&owner).is_some(),
            "node {n} owned by {owner}, a key of the reply"
        );
        owners.push(owner);
    }
    assert_eq!(owners[0], master, "first node = master");
    let run = c
        .openio(&["-a", "myaccount", "election", "check", "meta2", "FVE0"])
        .await;
    assert_eq!(run.code, 0, "{run:?}");

    // sync: 301 `not SLAVE` on the master, 200 OK on the slaves, `body` present.
    let r = oio(
        &c,
        proxy,
        "admin/sync?type=meta2&acct=myaccount&ref=FVE0&check_type=-1",
        None,
        30.0,
    )
    .await;
    for (peer, status, message) in peer_rows(&r) {
        if peer == master {
            assert_eq!((status, message.as_str()), (301, "not SLAVE"));
        } else {
            assert_eq!((status, message.as_str()), (200, "OK"));
        }
    }

    // leave (with bypass_service_down): 200 OK everywhere, then a new election.
    let r = oio(
        &c,
        proxy,
        "admin/leave?type=meta2&acct=myaccount&ref=FVE0&bypass_service_down=true",
        None,
        30.0,
    )
    .await;
    assert!(peer_rows(&r)
        .iter()
        .all(|r| (r.1, r.2.as_str()) == (200, "OK")));
    c.wait_converged(&base_of("myaccount", "FVE0"), Duration::from_secs(10))
        .await
        .expect("re-elected after leave");
    let r = oio(&c, proxy, STATUS, None, 30.0).await;
    the_master(&peer_rows(&r));

    // Errors, as the proxy words them.
    let cases = [
        (
            "admin/status?acct=myaccount&ref=FVE0",
            400,
            "400",
            "No service type",
        ),
        (
            "admin/status?type=meta2",
            400,
            "400",
            "Missing value for account",
        ),
        (
            "admin/status?type=meta2&acct=myaccount&ref=NOPE",
            404,
            "431",
            "No service located",
        ),
        (
            "admin/nothing?type=meta2&acct=myaccount&ref=FVE0",
            404,
            "404",
            "No handler found",
        ),
        (
            "admin/sync?type=meta2&acct=myaccount&ref=FVE0&check_type=7",
            400,
            "400",
            "check_type",
        ),
        (
            "admin/status?type=meta2&acct=myaccount&ref=FVE0&service_id=127.0.0.1%3A22",
            400,
            "400",
            "Invalid parameter: service_id \"127.0.0.1:22\" is not a peer",
        ),
    ];
    for (path, http, code, message) in cases {
        let r = oio(&c, proxy, path, None, 30.0).await;
        let j = r
            .json
            .clone()
            .unwrap_or_else(|| panic!("{path}: JSON error: {r:?}"));
        assert_eq!(
            (r.http, j["status"].to_string()),
            (http, code.to_string()),
            "{path}: {r:?}"
        );
        assert!(
            j["message"].as_str().expect("message").starts_with(message),
            "{path}: {j}"
        );
    }
    let r = c
        .http
        .post(format!(
            "http://{proxy}/v3.0/OTHERNS/admin/status?type=meta2&acct=a&ref=b"
        ))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.headers()["content-type"], "application/json");
}

/// `openio container create|set|show|delete` (and `create A B`): writes sent
/// to a slave are forwarded to the master; the CLI never sees a redirect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_commands_through_the_proxy_routes() {
    let c = Cluster::start(3, ServiceOpts::default());
    let ids = c.ids();
    let base = base_of("myaccount", "FVE0");
    let created = r#"{"properties": {"color": "blue"}, "system": {"sys.m2.policy.version": "3"}}"#;
    let r = oio(
        &c,
        &ids[0],
        "container/create?acct=myaccount&ref=FVE0",
        Some(created),
        30.0,
    )
    .await;
    assert_eq!((r.http, r.raw.as_str()), (201, ""), "{r:?}");
    let master = c
        .wait_converged(&base, Duration::from_secs(10))
        .await
        .expect("converged");
    let slave = ids.iter().find(|i| **i != master).expect("a slave").clone();

    // `container set FVE0 --property a=1 --status frozen --max-versions -1`, sent to a slave.
    let set = r#"{"properties": {"a": "1"}, "system": {"sys.m2.policy.version": "-1", "sys.status": "4294967295"}}"#;
    let r = oio(
        &c,
        &slave,
        "container/set_properties?acct=myaccount&ref=FVE0",
        Some(set),
        30.0,
    )
    .await;
    assert_eq!((r.http, r.raw.as_str()), (204, ""), "{r:?}");

    // `container show FVE0` through each service: what `show` needs.
    for id in &ids {
        // The read is served by a replica, and a slave may lag the master by
        // the writes in flight (the creation's write was acknowledged by a
        // majority): ask until it has it, for a bounded time.
        let started = std::time::Instant::now();
        let j = loop {
            let r = oio_headers(
                &c,
                id,
                "container/get_properties?urgent=1&acct=myaccount&ref=FVE0",
                Some("[]"),
                30.0,
                &[("x-oio-admin", "1")],
            )
            .await;
            assert_eq!(r.http, 200, "{r:?}");
            let j = r.json.expect("application/json");
            if j["properties"]["color"] == "blue" {
                break j;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the creation's write never reached the replica that answers: {j}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let sys = j["system"].as_object().expect("system");
        assert!(
            sys.values().all(Value::is_string),
            "every value a string: {j}"
        );
        assert_eq!(sys["sys.account"], "myaccount");
        assert_eq!(sys["sys.user.name"], "FVE0");
        assert_eq!(sys["sys.name"], format!("{CID}.1"));
        let ctime_us: i64 = sys["sys.m2.ctime"]
            .as_str()
            .expect("string")
            .parse()
            .expect("µs");
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_micros() as i64;
        assert!(
            (now_us - 600_000_000..=now_us).contains(&ctime_us),
            "microseconds: {ctime_us}"
        );
        assert!(!sys.contains_key("sys.m2.sharding.root"));
    }
    let r = oio(
        &c,
        &master,
        "container/get_properties?acct=myaccount&ref=FVE0",
        Some("[]"),
        30.0,
    )
    .await;
    let j = r.json.expect("json");
    assert_eq!(
        j["properties"],
        serde_json::json!({"a": "1", "color": "blue"})
    );
    assert_eq!(j["system"]["sys.status"], "4294967295");
    assert_eq!(j["system"]["sys.m2.policy.version"], "-1");
    // Our CLI shows the same user properties.
    let run = c
        .openio(&["-a", "myaccount", "container", "show", "FVE0"])
        .await;
    let table = run.table();
    for (k, v) in [("meta.a", "1"), ("meta.color", "blue")] {
        assert!(
            table.iter().any(|r| r[0] == k && r[1] == v),
            "{k}={v} in {run:?}"
        );
    }

    // Refused writes.
    let r = oio(
        &c,
        &slave,
        "container/set_properties?acct=myaccount&ref=FVE0",
        Some(r#"{"properties": {}, "system": {}}"#),
        30.0,
    )
    .await;
    assert_eq!(
        r.cli_error_line(),
        "No properties found in JSON object (HTTP 400) (STATUS 400)"
    );
    let r = oio(
        &c,
        &slave,
        "container/set_properties?acct=myaccount&ref=FVE0",
        Some(r#"{"properties": {}, "system": {"sys.name": "x"}}"#),
        30.0,
    )
    .await;
    assert_eq!(r.http, 400, "identity keys are not writable: {r:?}");
    let r = oio(
        &c,
        &slave,
        "container/set_properties?acct=myaccount&ref=FVE0",
        Some("{oops"),
        30.0,
    )
    .await;
    assert_eq!(r.http, 400, "{r:?}");

    // `container create A B`.
    let many = r#"{"containers": [{"name": "A", "properties": {}, "system": {}}, {"name": "B", "properties": {}, "system": {}}]}"#;
    let r = oio(
        &c,
        &ids[1],
        "container/create_many?acct=myaccount",
        Some(many),
        30.0,
    )
    .await;
    assert_eq!(r.http, 200, "{r:?}");
    let items = r.json.expect("json")["containers"].clone();
    assert_eq!(
        items,
        serde_json::json!([{"name": "A", "status": 201, "message": "ok"}, {"name": "B", "status": 201, "message": "ok"}])
    );

    // `container delete FVE0`, then it is gone.
    let r = oio(
        &c,
        &slave,
        "container/destroy?acct=myaccount&ref=FVE0",
        None,
        30.0,
    )
    .await;
    assert_eq!((r.http, r.raw.as_str()), (204, ""), "{r:?}");
    for path in [
        "container/destroy?acct=myaccount&ref=FVE0",
        "container/get_properties?acct=myaccount&ref=FVE0",
        "container/set_properties?acct=myaccount&ref=FVE0",
    ] {
        let r = oio(&c, &ids[2], path, Some(set), 30.0).await;
        assert_eq!(
            r.http, 404,
            "{path}: the CLI prints `Container 'FVE0' does not exist.`: {r:?}"
        );
        assert_eq!(r.json.expect("json")["status"], 431);
    }
}

/// One service killed: `election status` through a survivor shows the
/// refused row; with the election failing, `container set` gets the 503
/// `Election failed [...]` the CLI prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_peer_and_a_failed_election_through_the_proxy() {
    let opts = ServiceOpts {
        extra: vec!["--getvers-timeout-ms".into(), "300".into()],
        ..ServiceOpts::default()
    };
    let mut c = Cluster::start(3, opts);
    let all = c.ids();
    let r = oio(
        &c,
        &all[0],
        "container/create?acct=myaccount&ref=FVE0",
        None,
        30.0,
    )
    .await;
    assert_eq!(r.http, 201, "{r:?}");
    let base = base_of("myaccount", "FVE0");
    // The proxy asked is the master; the two slaves die one after the other.
    let master = c
        .wait_converged(&base, Duration::from_secs(10))
        .await
        .expect("converged");
    let slaves: Vec<String> = all.into_iter().filter(|i| *i != master).collect();
    let ids = [master.clone(), slaves[0].clone(), slaves[1].clone()];

    c.service_mut(&ids[2]).kill9();
    let r = oio(&c, &ids[0], STATUS, None, 10.0).await;
    let rows = peer_rows(&r);
    let dead = rows
        .iter()
        .find(|r| r.0 == ids[2])
        .expect("the dead peer has its row");
    assert_eq!(dead.1, 2, "{rows:?}");
    assert!(dead.2.contains("Connection refused"), "{rows:?}");
    let alive: Vec<_> = rows.iter().filter(|r| r.0 != ids[2]).cloned().collect();
    the_master(&alive);
    let ours = rust_cli_rows(&c, &["-t", "10", "election", "status", "meta2", "FVE0"]).await;
    let codes = |rows: &[(String, i64, String)]| {
        rows.iter().map(|r| (r.0.clone(), r.1)).collect::<Vec<_>>()
    };
    assert_eq!(
        codes(&rows),
        codes(&ours),
        "same peers and codes as our CLI"
    );

    // Two peers of three gone, and the master (if it was ours) steps down:
    // no majority to check versions with, the election fails.
    c.service_mut(&ids[1]).kill9();
    let leave = format!(
        "admin/leave?type=meta2&acct=myaccount&ref=FVE0&bypass_service_down=true&service_id={}",
        ids[0].replace(':', "%3A")
    );
    let r = oio(&c, &ids[0], &leave, None, 5.0).await;
    assert_eq!(peer_rows(&r).len(), 1);
    let set = r#"{"properties": {"a": "1"}, "system": {}}"#;
    let r = oio(
        &c,
        &ids[0],
        "container/set_properties?acct=myaccount&ref=FVE0",
        Some(set),
        2.0,
    )
    .await;
    assert_eq!(r.http, 503, "{r:?}");
    assert_eq!(
        r.headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or("")),
        Some("1")
    );
    let line = r.cli_error_line();
    assert!(
        line.starts_with(&format!("Election failed [{CID}.1][meta2]"))
            && line.ends_with("(HTTP 503) (STATUS 503)"),
        "{line}"
    );
}

/// `GET http://<service><path>` as the real client sends it to the account
/// service (`X-No-Cache: 1`); status and JSON (exact content type only).
async fn account_get(c: &Cluster, service: &str, path: &str) -> (u16, Option<Value>) {
    let resp = c
        .http
        .get(format!("http://{service}{path}"))
        .header("Accept-Encoding", "identity")
        .header("User-Agent", "python-urllib3/1.26.20")
        .header("X-No-Cache", "1")
        .send()
        .await
        .expect("the service answers");
    let http = resp.status().as_u16();
    let json =
        resp.headers().get("content-type").map(|v| v.as_bytes()) == Some(b"application/json");
    let raw = resp.text().await.expect("body");
    (
        http,
        json.then(|| serde_json::from_str(&raw).expect("decodable JSON")),
    )
}

fn names(listing: &Value) -> Vec<String> {
    listing["listing"]
        .as_array()
        .expect("listing")
        .iter()
        .map(|row| {
            let row = row.as_array().expect("a row is a list");
            assert_eq!(
                row.len(),
                5,
                "[name, objects, bytes, is_prefix, mtime]: {row:?}"
            );
            assert_eq!(row[3], 0, "not a prefix");
            assert!(row[4].as_f64().expect("mtime in float seconds") > 1.6e9);
            row[0].as_str().expect("name").to_string()
        })
        .collect()
}

/// `openio container list`: the account service is found through
/// `lb/choose` (or named by `account=` in sds.conf: any service), and
/// lists the account's containers from the directory's index, paged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_list_through_the_account_routes() {
    let c = Cluster::start(3, ServiceOpts::default());
    let ids = c.ids();
    for (acct, reference) in [
        ("myaccount", "zeta"),
        ("myaccount", "FVE0"),
        ("myaccount", "b-2"),
        ("myaccount", "FVE1"),
        ("other", "FVE0"),
    ] {
        let r = oio(
            &c,
            &ids[0],
            &format!("container/create?acct={acct}&ref={reference}"),
            Some(r#"{"properties": {}, "system": {}}"#),
            30.0,
        )
        .await;
        assert_eq!(r.http, 201, "{r:?}");
    }
    // The load balancer names an account service: the one asked.
    let resp = c
        .http
        .get(format!(
            "http://{}/v3.0/OPENIO/lb/choose?type=account&size=1",
            ids[1]
        ))
        .send()
        .await
        .expect("lb");
    assert_eq!(resp.status().as_u16(), 200);
    let chosen: Value = resp.json().await.expect("json");
    assert_eq!(chosen[0]["addr"], ids[1].as_str(), "{chosen}");

    let (http, all) = account_get(&c, &ids[2], "/v1.0/account/containers?id=myaccount").await;
    assert_eq!(http, 200);
    let all = all.expect("application/json");
    assert_eq!(names(&all), ["FVE0", "FVE1", "b-2", "zeta"], "{all}");
    assert_eq!(
        (all["containers"].as_u64(), all["truncated"].as_bool()),
        (Some(4), Some(false))
    );
    let (_, page) = account_get(&c, &ids[0], "/v1.0/account/containers?id=myaccount&limit=2").await;
    let page = page.expect("json");
    assert_eq!(names(&page), ["FVE0", "FVE1"]);
    assert_eq!(
        (page["truncated"].as_bool(), page["next_marker"].as_str()),
        (Some(true), Some("FVE1"))
    );
    let (_, next) = account_get(
        &c,
        &ids[0],
        "/v1.0/account/containers?id=myaccount&limit=2&marker=FVE1",
    )
    .await;
    assert_eq!(names(&next.expect("json")), ["b-2", "zeta"]);
    let (_, pre) = account_get(
        &c,
        &ids[0],
        "/v1.0/account/containers?id=myaccount&prefix=FVE",
    )
    .await;
    assert_eq!(names(&pre.expect("json")), ["FVE0", "FVE1"]);
    let (_, end) = account_get(
        &c,
        &ids[0],
        "/v1.0/account/containers?id=myaccount&end_marker=b",
    )
    .await;
    assert_eq!(names(&end.expect("json")), ["FVE0", "FVE1"]);
    let (_, other) = account_get(&c, &ids[0], "/v1.0/account/containers?id=other").await;
    assert_eq!(names(&other.expect("json")), ["FVE0"]);

    let (http, body) = account_get(&c, &ids[0], "/v1.0/account/containers?id=nobody").await;
    assert_eq!(http, 404);
    let message = body.expect("json")["message"]
        .as_str()
        .expect("message")
        .to_string();
    assert!(message.contains("Account not found"), "{message}");
    let (http, _) = account_get(&c, &ids[0], "/v1.0/account/containers").await;
    assert_eq!(http, 400);
    let (http, _) = account_get(&c, &ids[0], "/v1.0/account/containers?id=myaccount&limit=x").await;
    assert_eq!(http, 400);
}
