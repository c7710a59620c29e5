//! The node's TOML configuration. Every field is documented with its bounds;
//! `nornd.example.toml` at the repository root is a commented example.
//! Relative paths are taken from the directory of the config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use norn_core::config::{
    AntiEntropySection, ClusterSection, DataSection, RingSection, TransfersSection,
};
use norn_core::CoreConfig;
use norn_membership::MembershipConfig;
use norn_merkle::TreeShape;
use norn_net::{EndpointLimits, TlsFiles};
use norn_storage::StoreOptions;
use serde::Deserialize;

use crate::error::NodeError;

/// A node's whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub tls: TlsSection,
    #[serde(default)]
    pub ring: RingSection,
    #[serde(default)]
    pub membership: MembershipConfig,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub data: DataSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub anti_entropy: AntiEntropySection,
    #[serde(default)]
    pub transfers: TransfersSection,
    #[serde(default)]
    pub cluster: ClusterSection,
}

/// The HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// TCP address of the HTTP API; port 0 picks a free port (written to
    /// `<data_dir>/http_address`). Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Required as `Authorization: Bearer <token>` on every route but the
    /// health probes (`/health`, `/health/live`, `/health/ready`);
    /// mandatory when `listen` is not a loopback address.
    pub bearer_token: Option<String>,
    /// A connection that has not sent a whole request head this long after
    /// it opened (or after its previous response) is closed. Default 5000.
    pub header_timeout_ms: u64,
    /// A request body not received whole this long after its head is
    /// answered 408 and its connection closed. Default 30000.
    pub body_timeout_ms: u64,
    /// Connections open at once; more are closed at accept. Default 512.
    pub max_connections: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            bearer_token: None,
            header_timeout_ms: 5_000,
            body_timeout_ms: 30_000,
            max_connections: 512,
        }
    }
}

/// Who and where the node is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Human name, 1..=64 bytes of `[A-Za-z0-9._-]`.
    pub name: String,
    /// Failure domain, 1..=64 bytes; preference lists spread over zones.
    #[serde(default = "default_zone")]
    pub zone: String,
    /// Relative capacity, 1..=65536.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// UDP address of the QUIC endpoint; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Address peers and clients use, if not the bound one: `ip:port` or
    /// `host:port` (a name, such as a StatefulSet pod's stable DNS name,
    /// that peers resolve and refresh every 10 s).
    #[serde(default)]
    pub advertise: Option<String>,
    /// Nodes to gossip with at start, `host:port`; at most 64.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// DNS names (`host:port`) whose every A and AAAA record is a seed, such
    /// as a headless Service; resolved at start and every
    /// `seed_refresh_ms`; at most 16.
    #[serde(default)]
    pub seed_names: Vec<String>,
    /// How often `seed_names` are resolved again, 1,000..=3,600,000 ms.
    #[serde(default = "default_seed_refresh_ms")]
    pub seed_refresh_ms: u64,
    /// Directory of the node's database and run files.
    pub data_dir: PathBuf,
    /// Worker threads of the node's runtime, 1..=1024; default: the
    /// machine's cores. Nodes that share a machine do better splitting its
    /// cores than each taking all of them.
    #[serde(default)]
    pub threads: Option<usize>,
}

/// Where the node's certificates are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The cluster CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// This node's certificate (PEM), from `norn certs node NAME`.
    pub cert: PathBuf,
    /// This node's private key (PEM); must not be readable by others.
    pub key: PathBuf,
}

/// The storage engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// fsync every write before acknowledging it (else: WAL without fsync).
    pub sync_every_write: bool,
    /// Most bytes of hints queued for one target, 1 MiB..=64 GiB.
    pub hint_bytes_max_per_target: u64,
    /// Hash tree children per node, a power of two in 2..=64.
    pub tree_fanout: u32,
    /// Hash tree levels below the root, 1..=4.
    pub tree_depth: u8,
    /// For tests only: keep writes that were not fsynced in the process
    /// (RocksDB's manual WAL flush), so that kill -9 loses them exactly as
    /// a power cut would. Slower, and unsafe against process crashes.
    pub emulate_power_loss_on_kill: bool,
    /// Bytes of RocksDB's block cache, 1 MiB..=1 TiB.
    pub block_cache_bytes: usize,
}

impl Default for StorageSection {
    fn default() -> Self {
        let shape = TreeShape::default();
        StorageSection {
            sync_every_write: false,
            hint_bytes_max_per_target: 256 << 20,
            emulate_power_loss_on_kill: false,
            block_cache_bytes: StoreOptions::default().block_cache_bytes,
            tree_fanout: shape.fanout,
            tree_depth: shape.depth,
        }
    }
}

/// Bounds on the wire.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Largest frame accepted, 64 KiB..=64 MiB.
    pub max_frame_bytes: usize,
    /// Requests in flight per connection, 1..=65536.
    pub max_in_flight_per_connection: usize,
    /// Timeout of a request to a peer, 10..=600,000 ms.
    pub peer_request_timeout_ms: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let limits = EndpointLimits::default();
        LimitsSection {
            max_frame_bytes: limits.max_frame_bytes,
            max_in_flight_per_connection: limits.max_in_flight_per_connection,
            peer_request_timeout_ms: 2_000,
        }
    }
}

fn default_zone() -> String {
    "default".to_string()
}

fn default_weight() -> u32 {
    1
}

fn default_seed_refresh_ms() -> u64 {
    30_000
}

/// Whether `address` is `host:port` with a port and a host of DNS name
/// characters (or an IP address, brackets for IPv6).
fn host_port_ok(address: &str) -> bool {
    if address.parse::<SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return false;
    };
    port.parse::<u16>().is_ok()
        && (1..=253).contains(&host.len())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
}

impl NodeConfig {
    /// Reads, parses and validates `path`, resolving relative paths against
    /// its directory.
    pub fn load(path: &Path) -> Result<NodeConfig, NodeError> {
        let invalid = |reason: String| NodeError::Config {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        let mut config = parse_expanded(&text, |name| std::env::var(name).ok()).map_err(invalid)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.node.data_dir,
            &mut config.tls.ca_cert,
            &mut config.tls.cert,
            &mut config.tls.key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    /// Checks every bound; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_node()?;
        self.core().validate().map_err(|e| e.to_string())?;
        self.validate_storage()?;
        self.validate_limits()?;
        self.validate_http()
    }

    /// What the node's core decides with: the `[ring]`, `[membership]`,
    /// `[data]`, `[anti_entropy]` and `[transfers]` sections and the bounds
    /// of `[limits]` and `[storage]` it depends on.
    pub fn core(&self) -> CoreConfig {
        CoreConfig {
            ring: self.ring,
            membership: self.membership,
            data: self.data.clone(),
            anti_entropy: self.anti_entropy.clone(),
            transfers: self.transfers.clone(),
            cluster: self.cluster,
            peer_request_timeout_ms: self.limits.peer_request_timeout_ms,
            max_frame_bytes: self.limits.max_frame_bytes,
            sync_every_write: self.storage.sync_every_write,
        }
    }

    /// The `[http]` section: off loopback, a bearer token is required.
    fn validate_http(&self) -> Result<(), String> {
        let token = self.http.bearer_token.as_deref();
        if token.is_some_and(|t| t.len() < 16 || !t.is_ascii() || t.contains(char::is_whitespace)) {
            return Err("http.bearer_token must be at least 16 printable ASCII characters".into());
        }
        if self.http.header_timeout_ms == 0 || self.http.body_timeout_ms == 0 {
            return Err("http.header_timeout_ms and http.body_timeout_ms must be positive".into());
        }
        if !(1..=65_536).contains(&self.http.max_connections) {
            return Err("http.max_connections must be 1..=65536".into());
        }
        if !self.http.listen.ip().is_loopback() && token.is_none() {
            return Err(format!(
                "http.listen {} is not loopback: set http.bearer_token",
                self.http.listen
            ));
        }
        Ok(())
    }

    /// The `[node]` section.
    fn validate_node(&self) -> Result<(), String> {
        let name_ok = |s: &str| {
            (1..=64).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if !name_ok(&self.node.name) {
            return Err(format!(
                "node.name {:?} must be 1..=64 of [A-Za-z0-9._-]",
                self.node.name
            ));
        }
        if !(1..=64).contains(&self.node.zone.len()) {
            return Err(format!(
                "node.zone {:?} must be 1..=64 bytes",
                self.node.zone
            ));
        }
        if !(1..=norn_ring::ring::WEIGHT_MAX).contains(&self.node.weight) {
            return Err(format!(
                "node.weight {} must be 1..=65536",
                self.node.weight
            ));
        }
        if self.node.seeds.len() > 64 {
            return Err("node.seeds holds more than 64 addresses".into());
        }
        if self.node.seed_names.len() > 16 {
            return Err("node.seed_names holds more than 16 names".into());
        }
        let addresses = self.node.advertise.iter().chain(&self.node.seed_names);
        if let Some(bad) = addresses.chain(&self.node.seeds).find(|a| !host_port_ok(a)) {
            return Err(format!("{bad:?} in [node] is not host:port"));
        }
        if !(1_000..=3_600_000).contains(&self.node.seed_refresh_ms) {
            return Err(format!(
                "node.seed_refresh_ms {} must be 1000..=3600000",
                self.node.seed_refresh_ms
            ));
        }
        if let Some(threads) = self.node.threads {
            if !(1..=1024).contains(&threads) {
                return Err(format!("node.threads {threads} must be 1..=1024"));
            }
        }
        Ok(())
    }

    /// The `[storage]` section.
    fn validate_storage(&self) -> Result<(), String> {
        let storage = &self.storage;
        if !((1 << 20)..=(64 << 30)).contains(&storage.hint_bytes_max_per_target) {
            return Err(format!(
                "storage.hint_bytes_max_per_target {} must be 1 MiB..=64 GiB",
                storage.hint_bytes_max_per_target
            ));
        }
        if !((1 << 20)..=(1 << 40)).contains(&storage.block_cache_bytes) {
            return Err(format!(
                "storage.block_cache_bytes {} must be 1 MiB..=1 TiB",
                storage.block_cache_bytes
            ));
        }
        TreeShape::new(storage.tree_fanout, storage.tree_depth)
            .map_err(|e| format!("storage: {e}"))?;
        Ok(())
    }

    /// The `[limits]` section (the frame and timeout bounds are the
    /// core's, checked by [`CoreConfig::validate`]).
    fn validate_limits(&self) -> Result<(), String> {
        let in_flight = self.limits.max_in_flight_per_connection;
        if !(1..=65_536).contains(&in_flight) {
            return Err(format!(
                "limits.max_in_flight_per_connection {in_flight} must be 1..=65536"
            ));
        }
        Ok(())
    }

    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            ca_cert: self.tls.ca_cert.clone(),
            cert: self.tls.cert.clone(),
            key: self.tls.key.clone(),
        }
    }

    pub fn endpoint_limits(&self) -> EndpointLimits {
        EndpointLimits {
            max_frame_bytes: self.limits.max_frame_bytes,
            max_in_flight_per_connection: self.limits.max_in_flight_per_connection,
            ..EndpointLimits::default()
        }
    }

    pub fn tree_shape(&self) -> TreeShape {
        TreeShape {
            fanout: self.storage.tree_fanout,
            depth: self.storage.tree_depth,
        }
    }
}

/// Parses `text` as a config whose string values (not its comments) may
/// name environment variables, as [`expand_env`] fills them.
pub fn parse_expanded(
    text: &str,
    lookup: impl Fn(&str) -> Option<String> + Copy,
) -> Result<NodeConfig, String> {
    fn expand_strings(
        value: &mut toml::Value,
        lookup: impl Fn(&str) -> Option<String> + Copy,
    ) -> Result<(), String> {
        match value {
            toml::Value::String(text) => *text = expand_env(text, lookup)?,
            toml::Value::Array(values) => {
                for value in values {
                    expand_strings(value, lookup)?;
                }
            }
            toml::Value::Table(table) => {
                for (_, value) in table.iter_mut() {
                    expand_strings(value, lookup)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    let mut value: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
    expand_strings(&mut value, lookup)?;
    value.try_into().map_err(|e: toml::de::Error| e.to_string())
}

/// Replaces every `${NAME}` in `text` with the variable `NAME` as `lookup`
/// finds it, or `${NAME:-default}` with `default` when it is unset or
/// empty; `$$` is one `$`. So one config serves every pod of a StatefulSet
/// (`name = "${POD_NAME}"`). An unset variable without a default, or an
/// unclosed `${`, is an error naming it.
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail.find('}').ok_or_else(|| {
                format!("unclosed ${{ in {:?}", &rest[at..rest.len().min(at + 40)])
            })?;
            let (name, default) = match tail[..end].split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (&tail[..end], None),
            };
            let name_ok =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !name_ok {
                return Err(format!("${{{}}} is not a variable name", &tail[..end]));
            }
            match (lookup(name).filter(|v| !v.is_empty()), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(format!("environment variable {name} is not set")),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfig, String> {
        let config = parse_expanded(text, |_| None)?;
        config.validate()?;
        Ok(config)
    }

    const MINIMAL: &str = r#"
        [node]
        name = "n1"
        listen = "127.0.0.1:0"
        data_dir = "data"
        [tls]
        ca_cert = "ca.pem"
        cert = "n1.pem"
        key = "n1.key"
    "#;

    #[test]
    fn a_minimal_config_takes_defaults() {
        let config = parse(MINIMAL).expect("valid");
        assert_eq!(config.ring.default_n, 3);
        assert_eq!(config.node.zone, "default");
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../../nornd.example.toml");
        parse(text).expect("the example parses and validates");
    }

    #[test]
    fn http_off_loopback_needs_a_token() {
        let open = format!("{MINIMAL}\n[http]\nlisten = \"0.0.0.0:8080\"");
        assert!(parse(&open).expect_err("refused").contains("bearer_token"));
        parse(&format!("{open}\nbearer_token = \"0123456789abcdef\"")).expect("token given");
    }

    #[test]
    fn unknown_fields_and_bad_bounds_are_refused() {
        assert!(parse(&format!("{MINIMAL}\n[storage]\nsync_evry_write = true")).is_err());
        let err =
            parse(&format!("{MINIMAL}\n[ring]\npartition_bits = 20")).expect_err("out of bounds");
        assert!(err.contains("ring.partition_bits"), "{err}");
        let err = parse(&format!("{MINIMAL}\n[storage]\nblock_cache_bytes = 1024"))
            .expect_err("cache too small");
        assert!(err.contains("storage.block_cache_bytes"), "{err}");
        let err = parse(&MINIMAL.replace("\"n1\"\n", "\"bad name!\"\n")).expect_err("bad name");
        assert!(err.contains("node.name"), "{err}");
    }

    #[test]
    fn environment_variables_fill_the_config() {
        let env = |name: &str| match name {
            "POD_NAME" => Some("norn-2".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            expand_env("name = \"${POD_NAME}\" zone = \"${ZONE:-default}\"", env).as_deref(),
            Ok("name = \"norn-2\" zone = \"default\"")
        );
        assert_eq!(
            expand_env("${EMPTY:-x} $$ a$b", env).as_deref(),
            Ok("x $ a$b")
        );
        let err = expand_env("cert = \"${MISSING}.pem\"", env).expect_err("unset");
        assert!(err.contains("MISSING"), "{err}");
        assert!(expand_env("${POD_NAME", env).is_err());
        assert!(expand_env("${é€ unclosed", env).is_err());
        // Only values are filled: a comment may name anything.
        let text = format!(
            "# see ${{ANYTHING}}\n{}",
            MINIMAL.replace("\"n1\"\n", "\"${POD_NAME}\"\n")
        );
        let config = parse_expanded(&text, env).expect("valid");
        assert_eq!(config.node.name, "norn-2");
        assert!(expand_env("${bad name}", env).is_err());
    }
}
