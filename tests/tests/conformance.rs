//! The ZooKeeper model of the simulation against a real ZooKeeper: every
//! conformance scenario of `election_sim::conformance` must produce the same
//! trace on both.

use election_sim::conformance::{scenarios, Coordinator, ModelCoordinator};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use system_tests::Zk;
use zookeeper_client as zk;

struct Real {
    rt: tokio::runtime::Runtime,
    hosts: String,
    clients: Vec<zk::Client>,
    events: Vec<Arc<Mutex<Vec<String>>>>,
}

fn err(e: zk::Error) -> String {
    match e {
        zk::Error::NoNode => "NoNode".into(),
        zk::Error::NodeExists => "NodeExists".into(),
        zk::Error::NotEmpty => "NotEmpty".into(),
        zk::Error::SessionExpired => "SessionExpired".into(),
        other => format!("{other}"),
    }
}

fn acl(mode: zk::CreateMode) -> zk::CreateOptions<'static> {
    mode.with_acls(zk::Acls::anyone_all())
}

impl Coordinator for Real {
    fn open(&mut self) -> usize {
        let hosts = self.hosts.clone();
        let client = self
            .rt
            .block_on(
                zk::Client::connector()
                    .with_session_timeout(Duration::from_secs(4))
                    .connect(&hosts),
            )
            .expect("connect to the test ZooKeeper");
        self.clients.push(client);
        self.events.push(Arc::default());
        self.clients.len() - 1
    }

    fn expire(&mut self, h: usize) {
        // Closing ends the session at once, with expiry's effects.
        let other = self.clients[(h + 1) % self.clients.len()].clone();
        let c = std::mem::replace(&mut self.clients[h], other);
        self.rt.block_on(async move {
            let mut states = c.state_watcher();
            drop(c);
            let _ = tokio::time::timeout(Duration::from_secs(2), states.changed()).await;
        });
    }

    fn mkdir(&mut self, h: usize, path: &str) -> Result<(), String> {
        let c = &self.clients[h];
        self.rt
            .block_on(c.create(path, b"", &acl(zk::CreateMode::Persistent)))
            .map(|_| ())
            .map_err(err)
    }

    fn create_seq(&mut self, h: usize, prefix: &str, data: &[u8]) -> Result<String, String> {
        let c = &self.clients[h];
        let (_, seq) = self
            .rt
            .block_on(c.create(prefix, data, &acl(zk::CreateMode::EphemeralSequential)))
            .map_err(err)?;
        let last = prefix.rsplit('/').next().unwrap_or(prefix);
        Ok(format!("{last}{:010}", seq.into_i64()))
    }

    fn create(&mut self, h: usize, path: &str, data: &[u8]) -> Result<(), String> {
        let c = &self.clients[h];
        self.rt
            .block_on(c.create(path, data, &acl(zk::CreateMode::Ephemeral)))
            .map(|_| ())
            .map_err(err)
    }

    fn delete(&mut self, h: usize, path: &str) -> Result<(), String> {
        self.rt
            .block_on(self.clients[h].delete(path, None))
            .map_err(err)
    }

    fn children(&mut self, h: usize, dir: &str) -> Result<Vec<String>, String> {
        let mut c = self
            .rt
            .block_on(self.clients[h].list_children(dir))
            .map_err(err)?;
        c.sort();
        Ok(c)
    }

    fn get(&mut self, h: usize, path: &str) -> Result<Option<(Vec<u8>, bool)>, String> {
        let c = &self.clients[h];
        match self.rt.block_on(c.get_data(path)) {
            Ok((data, stat)) => Ok(Some((data, stat.ephemeral_owner == c.session_id().0))),
            Err(zk::Error::NoNode) => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    fn watch(&mut self, h: usize, path: &str) -> Result<bool, String> {
        let c = self.clients[h].clone();
        let (stat, watcher) = self
            .rt
            .block_on(c.check_and_watch_stat(path))
            .map_err(err)?;
        let sink = self.events[h].clone();
        let path = path.to_string();
        self.rt.spawn(async move {
            let ev = watcher.changed().await;
            let what = match ev.event_type {
                zk::EventType::NodeDeleted => "deleted",
                zk::EventType::NodeCreated => "created",
                _ => return,
            };
            if let Ok(mut s) = sink.lock() {
                s.push(format!("{what} {path}"));
            }
        });
        Ok(stat.is_some())
    }

    fn events(&mut self, h: usize) -> Vec<String> {
        self.rt
            .block_on(async { tokio::time::sleep(Duration::from_millis(300)).await });
        let mut e = self.events[h]
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        e.sort();
        e
    }
}

#[test]
fn the_model_matches_a_real_zookeeper() {
    let server = Zk::start(100);
    let mut failures = Vec::new();
    for (i, (name, scenario)) in scenarios().into_iter().enumerate() {
        let root = format!("/conformance{i}");
        let mut real = Real {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            hosts: server.connect_string(),
            clients: Vec::new(),
            events: Vec::new(),
        };
        let setup = real.open();
        real.mkdir(setup, &root)
            .expect("create the scenario's root");
        let want = scenario(&mut ModelCoordinator::new(&root), &root);
        let got = scenario(&mut real, &root);
        if want != got {
            failures.push(format!("{name}:\n  model: {want:?}\n  real:  {got:?}"));
        } else {
            eprintln!("{name}: {} steps agree", want.len());
        }
        drop(real);
    }
    assert!(
        failures.is_empty(),
        "the model differs from ZooKeeper:\n{}",
        failures.join("\n")
    );
}
