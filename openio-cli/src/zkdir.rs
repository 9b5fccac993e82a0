//! The CLI's read-only (and `check --clean`) access to ZooKeeper: the
//! directory entry of a base and the nodes of its election.

use election_core::names::{
    parse_node_name, BaseName, ElectionKey, Namespace, Seq, ServiceId, ServiceType, ZkLayout,
};
use serde_json::Value;
use std::time::Duration;
use zookeeper_client as zk;

/// Reads per multi-read request in bulk reads: a directory entry is a
/// few hundred bytes, so a reply stays far below ZooKeeper's 1 MB.
pub const BULK_OPS: usize = 256;
/// Bulk multi-reads in flight at once on the one session.
pub const BULK_IN_FLIGHT: usize = 8;

pub struct Zk {
    client: zk::Client,
    hosts: String,
    timeout: Duration,
    layout: ZkLayout,
}

/// One child of the election's group directory that carries the base's key.
#[derive(Debug, Clone)]
pub struct ElectionNode {
    pub name: String,
    pub path: String,
    /// None when the name does not parse as `<KEY>-<seq>`.
    pub seq: Option<Seq>,
    /// The owner written in the node (lossy UTF-8, truncated).
    pub owner: String,
    pub version: i32,
}

impl Zk {
    pub async fn connect(hosts: &str, ns: &Namespace, timeout: Duration) -> anyhow::Result<Zk> {
        let connect = zk::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .with_connection_timeout(timeout.min(Duration::from_secs(5)))
            .connect(hosts);
        let client = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "ZooKeeper {hosts} did not answer within {timeout:?}: check --zookeeper (or OIO_ZOOKEEPER) and that ZooKeeper runs"
                )
            })?
            .map_err(|e| {
                anyhow::anyhow!("cannot reach ZooKeeper {hosts}: {e} (check --zookeeper)")
            })?;
        Ok(Zk {
            client,
            hosts: hosts.to_string(),
            timeout,
            layout: ZkLayout::new(ns.clone()),
        })
    }

    async fn bounded<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, zk::Error>>,
    ) -> anyhow::Result<Result<T, zk::Error>> {
        tokio::time::timeout(self.timeout, f).await.map_err(|_| {
            anyhow::anyhow!(
                "ZooKeeper {} did not answer {what} within {:?}",
                self.hosts,
                self.timeout
            )
        })
    }

    /// The peers recorded for a base, or a clear error when there is none.
    pub async fn peers(
        &self,
        stype: &ServiceType,
        base: &BaseName,
    ) -> anyhow::Result<Vec<ServiceId>> {
        let entry = self.entry(stype, base).await?;
        let path = self.layout.directory_node(stype, base);
        let peers = entry["peers"]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("directory node {path} has no peers"))?
            .iter()
            .filter_map(|p| p.as_str().and_then(|s| ServiceId::new(s).ok()))
            .collect();
        Ok(peers)
    }

    /// Live services of a type (their registrations), sorted.
    pub async fn live_services(&self, stype: &ServiceType) -> anyhow::Result<Vec<ServiceId>> {
        let dir = self.layout.services_dir(stype);
        let mut out: Vec<ServiceId> = match self
            .bounded("a listing", self.client.list_children(&dir))
            .await?
        {
            Ok(c) => c
                .into_iter()
                .filter_map(|n| ServiceId::new(n).ok())
                .collect(),
            Err(zk::Error::NoNode) => Vec::new(),
            Err(e) => anyhow::bail!("listing {dir}: {e}"),
        };
        out.sort();
        Ok(out)
    }

    /// The references of an account's containers (the per-account index).
    pub async fn references(
        &self,
        stype: &ServiceType,
        account: &str,
    ) -> anyhow::Result<Vec<String>> {
        let dir = self.layout.account_index(stype, account, None);
        let names = match self
            .bounded("a listing", self.client.list_children(&dir))
            .await?
        {
            Ok(c) => c,
            Err(zk::Error::NoNode) => Vec::new(),
            Err(e) => anyhow::bail!("listing {dir}: {e}"),
        };
        let mut out: Vec<String> = names
            .iter()
            .filter_map(|n| election_core::names::index_name(n))
            .collect();
        out.sort();
        Ok(out)
    }

    /// The directory entry of a base.
    pub async fn entry(&self, stype: &ServiceType, base: &BaseName) -> anyhow::Result<Value> {
        let path = self.layout.directory_node(stype, base);
        let data = match self.bounded("a directory read", self.client.get_data(&path)).await? {
            Err(zk::Error::NoNode) => anyhow::bail!(
                "no {stype} base {base} in namespace {} (directory node {path} missing): check the account and reference, or pass --service-id",
                self.layout.namespace()
            ),
            Err(e) => anyhow::bail!("reading {path}: {e}"),
            Ok((data, _)) => data,
        };
        serde_json::from_slice(&data)
            .map_err(|e| anyhow::anyhow!("directory node {path} is corrupt: {e}"))
    }

    /// Every child of the election's directory that starts with its key,
    /// sorted by sequence (unparsable names last).
    pub async fn election_nodes(
        &self,
        stype: &ServiceType,
        base: &BaseName,
    ) -> anyhow::Result<Vec<ElectionNode>> {
        let key = ElectionKey::compute(base, stype);
        let dir = self.layout.election_dir(stype, &key);
        let children = match self
            .bounded("a listing", self.client.list_children(&dir))
            .await?
        {
            Ok(c) => c,
            Err(zk::Error::NoNode) => Vec::new(),
            Err(e) => anyhow::bail!("listing {dir}: {e}"),
        };
        let mut out = Vec::new();
        for name in children.into_iter().filter(|c| c.starts_with(key.as_str())) {
            let path = format!("{dir}/{name}");
            let seq = parse_node_name(&name)
                .filter(|(k, _)| *k == key.as_str())
                .map(|(_, s)| s);
            match self
                .bounded("a node read", self.client.get_data(&path))
                .await?
            {
                Ok((data, stat)) => {
                    let mut owner =
                        String::from_utf8_lossy(&data[..data.len().min(256)]).into_owned();
                    if data.len() > 256 {
                        owner.push_str(&format!("… ({} bytes)", data.len()));
                    }
                    out.push(ElectionNode {
                        name,
                        path,
                        seq,
                        owner,
                        version: stat.version,
                    });
                }
                Err(zk::Error::NoNode) => continue,
                Err(e) => anyhow::bail!("reading {path}: {e}"),
            }
        }
        // Creation order, across the 32-bit wrap of ZooKeeper's counter:
        // offsets from any live node order them all.
        let reference = out.iter().find_map(|n| n.seq).unwrap_or(0);
        out.sort_by_key(|n| {
            (
                n.seq.is_none(),
                n.seq
                    .map_or(0, |s| election_core::names::seq_offset(s, reference)),
                n.name.clone(),
            )
        });
        Ok(out)
    }

    /// Deletes a node if it still is the one inspected (same data version).
    pub async fn delete(&self, node: &ElectionNode) -> anyhow::Result<()> {
        match self
            .bounded(
                "a delete",
                self.client.delete(&node.path, Some(node.version)),
            )
            .await?
        {
            Ok(()) => Ok(()),
            Err(e) => anyhow::bail!("{e}"),
        }
    }

    /// The children of every path (`None`: no such node), read with
    /// multi-reads: [`BULK_OPS`] paths per request, [`BULK_IN_FLIGHT`]
    /// requests at once. `done` counts the paths answered.
    pub async fn bulk_children(
        &self,
        paths: &[String],
        done: &(dyn Fn(usize) + Sync),
    ) -> anyhow::Result<Vec<Option<Vec<String>>>> {
        let got = self.bulk(paths, true, done).await?;
        Ok(got
            .into_iter()
            .map(|r| match r {
                Some(zk::MultiReadResult::Children { children }) => Some(children),
                _ => None,
            })
            .collect())
    }

    /// The data of every path (`None`: no such node), as [`Zk::bulk_children`].
    pub async fn bulk_data(
        &self,
        paths: &[String],
        done: &(dyn Fn(usize) + Sync),
    ) -> anyhow::Result<Vec<Option<Vec<u8>>>> {
        let got = self.bulk(paths, false, done).await?;
        Ok(got
            .into_iter()
            .map(|r| match r {
                Some(zk::MultiReadResult::Data { data, .. }) => Some(data),
                _ => None,
            })
            .collect())
    }

    async fn bulk(
        &self,
        paths: &[String],
        children: bool,
        done: &(dyn Fn(usize) + Sync),
    ) -> anyhow::Result<Vec<Option<zk::MultiReadResult>>> {
        use futures::StreamExt;
        let chunks: Vec<Vec<Option<zk::MultiReadResult>>> =
            futures::stream::iter(paths.chunks(BULK_OPS))
                .map(|chunk| async move {
                    let got = self.multi_read(chunk, children).await;
                    done(chunk.len());
                    got
                })
                .buffered(BULK_IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<anyhow::Result<_>>()?;
        Ok(chunks.into_iter().flatten().collect())
    }

    /// One multi-read; a request refused as a whole (a reply too large,
    /// say) is split in two and tried again.
    fn multi_read<'a>(
        &'a self,
        paths: &'a [String],
        children: bool,
    ) -> futures::future::BoxFuture<'a, anyhow::Result<Vec<Option<zk::MultiReadResult>>>> {
        Box::pin(async move {
            let mut multi = self.client.new_multi_reader();
            for p in paths {
                if children {
                    multi.add_get_children(p)?;
                } else {
                    multi.add_get_data(p)?;
                }
            }
            match self.bounded("a multi-read", multi.commit()).await? {
                Ok(results) if results.len() == paths.len() => results
                    .into_iter()
                    .zip(paths)
                    .map(|(r, p)| match r {
                        zk::MultiReadResult::Error {
                            err: zk::Error::NoNode,
                        } => Ok(None),
                        zk::MultiReadResult::Error { err } => anyhow::bail!("reading {p}: {err}"),
                        r => Ok(Some(r)),
                    })
                    .collect(),
                Ok(results) => anyhow::bail!(
                    "ZooKeeper answered {} reads for {} asked",
                    results.len(),
                    paths.len()
                ),
                Err(e) if paths.len() == 1 => anyhow::bail!("reading {}: {e}", paths[0]),
                Err(zk::Error::ConnectionLoss | zk::Error::SessionExpired) => {
                    anyhow::bail!("ZooKeeper {}: connection lost", self.hosts)
                }
                Err(_) => {
                    let (a, b) = paths.split_at(paths.len() / 2);
                    let mut out = self.multi_read(a, children).await?;
                    out.extend(self.multi_read(b, children).await?);
                    Ok(out)
                }
            }
        })
    }

    /// Every node `levels` below `root` (the leaves of a hashed tree),
    /// listed level by level in bulk.
    pub async fn tree_leaves(
        &self,
        root: &str,
        levels: usize,
        done: &(dyn Fn(usize) + Sync),
    ) -> anyhow::Result<Vec<String>> {
        let mut level = vec![root.to_string()];
        for _ in 0..levels {
            let children = self.bulk_children(&level, done).await?;
            level = level
                .iter()
                .zip(children)
                .flat_map(|(dir, c)| {
                    let mut c = c.unwrap_or_default();
                    c.sort();
                    c.into_iter().map(move |name| format!("{dir}/{name}"))
                })
                .collect();
        }
        Ok(level)
    }

    pub fn layout(&self) -> &ZkLayout {
        &self.layout
    }

    /// Closes the session so that nothing lingers.
    pub async fn close(self) {
        let mut states = self.client.state_watcher();
        drop(self.client);
        let _ = tokio::time::timeout(Duration::from_millis(500), states.changed()).await;
    }
}
