//! Peer addresses that are names (`host:port`, as a StatefulSet pod
//! advertises), resolved once and kept: a send must not wait on DNS, which
//! can take seconds (a resolver retrying an unanswered AAAA query), and a
//! node whose every gossip waited on it would be taken for down.
//!
//! A name is resolved on its first use; after [`FRESH_FOR`] the address
//! kept is still used while it is resolved again in the background, so a
//! peer that moved is found within one refresh. A failed refresh keeps the
//! old address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use norn_net::Endpoint;

/// How long a resolved address is used before it is resolved again.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(10);

/// The longest a first resolution may take before the send waiting on it
/// fails.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest a background refresh may take. No send waits on it, so it
/// may wait out a slow resolver (podman's reloads on every container
/// start): held to the send's 2 s, refreshes that kept failing would leave
/// a peer that restarted on a new address sent to at its old one.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(15);

/// Resolved names, shared by every send.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolver {
    kept: Arc<Mutex<HashMap<String, (SocketAddr, Instant)>>>,
}

impl Resolver {
    /// The address of `address`: itself when it is `ip:port`, else the
    /// address its name resolved to (resolving it now only the first time).
    pub(crate) async fn resolve(&self, address: &str) -> Result<SocketAddr, String> {
        if let Ok(addr) = address.parse::<SocketAddr>() {
            return Ok(addr);
        }
        let kept = {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            match kept.get_mut(address) {
                Some((addr, resolved_at)) => {
                    let stale = resolved_at.elapsed() >= FRESH_FOR;
                    if stale {
                        // One refresh at a time: the next is due later.
                        *resolved_at = Instant::now();
                    }
                    Some((*addr, stale))
                }
                None => None,
            }
        };
        match kept {
            Some((addr, stale)) => {
                if stale {
                    let (resolver, name) = (self.clone(), address.to_string());
                    tokio::spawn(async move {
                        let _ = resolver.resolve_now(&name, REFRESH_TIMEOUT).await;
                    });
                }
                Ok(addr)
            }
            None => self.resolve_now(address, RESOLVE_TIMEOUT).await,
        }
    }

    async fn resolve_now(&self, name: &str, within: Duration) -> Result<SocketAddr, String> {
        let addr = tokio::time::timeout(within, Endpoint::resolve(name))
            .await
            .map_err(|_| format!("resolving {name} took over {within:?}"))?
            .map_err(|e| e.to_string())?;
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), (addr, Instant::now()));
        Ok(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_is_kept_and_an_ip_is_itself() {
        let resolver = Resolver::default();
        let ip = resolver.resolve("10.1.2.3:7000").await.expect("an ip");
        assert_eq!(ip, "10.1.2.3:7000".parse().expect("addr"));
        let first = resolver.resolve("localhost:7000").await.expect("localhost");
        assert_eq!(first.port(), 7000);
        assert!(resolver
            .kept
            .lock()
            .expect("lock")
            .contains_key("localhost:7000"));
        assert_eq!(resolver.resolve("localhost:7000").await, Ok(first));
        assert!(resolver.resolve("no-such-host.invalid:7000").await.is_err());
    }
}
