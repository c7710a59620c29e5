//! The process's open-file limit: every HTTP connection is a descriptor,
//! and RocksDB keeps its files open.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors a node needs besides its HTTP connections: RocksDB's files,
/// the QUIC socket, logs and headroom.
const DESCRIPTORS_BESIDES_HTTP: u64 = 1024;

/// Raises the soft open-file limit to the hard one, and warns when even
/// that leaves less than `http_connections` plus what the node needs
/// besides. Returns the soft limit now in force (`None`: unlimited).
pub fn raise_open_file_limit(http_connections: usize) -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    let current = match setrlimit(Resource::Nofile, raised) {
        Ok(()) => limit.maximum,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            limit.current
        }
    };
    let needed = http_connections as u64 + DESCRIPTORS_BESIDES_HTTP;
    match current {
        Some(open_files) if open_files < needed => tracing::warn!(
            open_files,
            needed,
            "the open-file limit is below what http.max_connections and storage need: raise it (ulimit -n, LimitNOFILE=)"
        ),
        _ => tracing::info!(open_files = ?current, "open-file limit"),
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
        let before = getrlimit(Resource::Nofile);
        let lowered = Rlimit {
            current: Some(before.maximum.unwrap_or(4096).min(4096) / 2),
            maximum: before.maximum,
        };
        setrlimit(Resource::Nofile, lowered).expect("lowering the soft limit");
        let now = raise_open_file_limit(512);
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(now, limit.current);
        assert_eq!(limit.current, limit.maximum);
    }
}
