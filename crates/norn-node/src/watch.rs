//! What a node watches outside itself while it runs: the DNS names its
//! seeds come from (`node.seed_names`), and its certificate files, loaded
//! again when they change (as a mounted Kubernetes Secret does when it is
//! rotated) as they are on SIGHUP.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::node::Node;

/// How often the certificate files are read for a change.
pub const CERTIFICATE_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Every address `names` resolve to, less `own` (this node's addresses),
/// sorted; names that do not resolve are logged and skipped.
async fn resolve_all(names: &[String], own: &BTreeSet<SocketAddr>) -> Vec<String> {
    let mut found = BTreeSet::new();
    for name in names {
        match tokio::net::lookup_host(name.as_str()).await {
            Ok(addresses) => found.extend(addresses.filter(|a| !own.contains(a))),
            Err(e) => tracing::warn!(name, error = %e, "seed name does not resolve"),
        }
    }
    found.into_iter().map(|a| a.to_string()).collect()
}

/// This node's own addresses, as far as seed records could name them: the
/// bound address and whatever the advertised address resolves to.
async fn own_addresses(node: &Node) -> BTreeSet<SocketAddr> {
    let mut own = BTreeSet::new();
    if let Ok(bound) = node.local_addr() {
        own.insert(bound);
    }
    if let Some(advertised) = &node.config().node.advertise {
        if let Ok(addresses) = tokio::net::lookup_host(advertised.as_str()).await {
            own.extend(addresses);
        }
    }
    own
}

/// Resolves `node.seed_names` now and every `node.seed_refresh_ms`, and
/// hands the core what they resolve to; runs until aborted.
pub async fn discover_seeds(node: Arc<Node>) {
    let names = node.config().node.seed_names.clone();
    let every = Duration::from_millis(node.config().node.seed_refresh_ms);
    let mut last = None;
    loop {
        let own = own_addresses(&node).await;
        let seeds = resolve_all(&names, &own).await;
        if last.as_ref() != Some(&seeds) {
            tracing::info!(seeds = ?seeds, "seeds from DNS");
            node.set_discovered_seeds(seeds.clone()).await;
            last = Some(seeds);
        }
        tokio::time::sleep(every).await;
    }
}

/// The contents of the certificate files, to tell a change.
fn certificate_files(node: &Node) -> Vec<Option<Vec<u8>>> {
    let tls = &node.config().tls;
    [&tls.ca_cert, &tls.cert, &tls.key]
        .iter()
        .map(|path| std::fs::read(path).ok())
        .collect()
}

/// Loads the certificates again whenever their files change, checked
/// every [`CERTIFICATE_CHECK_INTERVAL`]; a reload that fails keeps the
/// old ones (and is tried again on the next change). Runs until aborted.
pub async fn watch_certificates(node: Arc<Node>) {
    let mut loaded = certificate_files(&node);
    loop {
        tokio::time::sleep(CERTIFICATE_CHECK_INTERVAL).await;
        let now = certificate_files(&node);
        if now == loaded {
            continue;
        }
        loaded = now;
        match node.reload_certificates().await {
            Ok(()) => tracing::info!("certificate files changed: reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "certificate files changed but were not reloaded; the old ones stay")
            }
        }
    }
}
