//! Real `nornd` processes on loopback.
//!
//! Each node listens on a port the kernel picked (its first start binds
//! port 0; its config is then rewritten to that port, so that restarts keep
//! it). Processes are stopped by pid when the cluster is dropped, and the
//! logs of every node are printed if the test is failing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use norn_net::certs::{self, Issued};
use norn_net::tls::TlsMaterial;
use norn_net::{Endpoint, EndpointLimits, TlsFiles};
use norn_proto::{ClientRole, MemberInfo, Request, Response};
use norn_ring::{NodeId, Ring};
use norn_trust::RingSigner;

/// The repository's root (the tests' package is its `tests/` directory).
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf()
}

/// Where the binaries under test are: `$NORN_BIN_DIR`, else the cargo target
/// directory this test binary (in `target/<profile>/deps`) or tool binary
/// (in `target/<profile>`) runs from. `make test` builds them first.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NORN_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("binary path");
    let dir = exe.parent().expect("target/<profile>");
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().expect("target/<profile>").to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

/// One node of a test cluster.
#[derive(Debug)]
pub struct TestNode {
    pub name: String,
    pub id: NodeId,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub address: Option<SocketAddr>,
    /// Bearer token of the node's HTTP API, if it requires one.
    pub http_token: Option<String>,
    /// TOML appended to the generated config (see [`TestCluster::configure`]).
    pub extra_config: String,
    /// The node's certificate and key as issued.
    pub issued: Issued,
    child: Option<Child>,
}

/// A cluster of real nodes in a temporary directory.
#[derive(Debug)]
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub ca: Issued,
    pub nodes: Vec<TestNode>,
    /// `ring.partition_bits` of every node's config (default 6).
    partition_bits: u8,
    admin: Arc<Endpoint>,
    /// The admin certificate's key, signing the rings the cluster commits.
    signer: Arc<RingSigner>,
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

impl TestCluster {
    /// Makes a CA, `count` node certificates and configs, and an admin
    /// client. Nodes are not started.
    pub fn new(count: usize) -> TestCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = certs::new_ca("test").expect("CA");
        certs::write_pem(&dir.path().join("ca.pem"), &ca.cert_pem, false).expect("ca.pem");
        let admin =
            certs::issue_client(&ca, "admin", ClientRole::Admin).expect("admin certificate");
        let files = write_pair(dir.path(), "admin", &admin);
        let signer = Arc::new(
            RingSigner::from_pem(&admin.cert_pem, &admin.key_pem).expect("admin ring signer"),
        );
        let admin = Arc::new(
            Endpoint::client(
                &TlsMaterial::load(&files).expect("admin TLS"),
                EndpointLimits::default(),
            )
            .expect("admin endpoint"),
        );
        let mut cluster = TestCluster {
            dir,
            ca,
            nodes: Vec::new(),
            partition_bits: 6,
            admin,
            signer,
        };
        for _ in 0..count {
            cluster.add_node();
        }
        cluster
    }

    /// Adds a node (not started) whose seed is node 0, once it has an address.
    pub fn add_node(&mut self) -> usize {
        let index = self.nodes.len();
        let name = format!("n{}", index + 1);
        let id = NodeId(0x1000 + index as u64);
        let issued = certs::issue_node(&self.ca, &name, id).expect("node certificate");
        write_pair(self.dir.path(), &name, &issued);
        let node = TestNode {
            issued,
            config: self.dir.path().join(format!("{name}.toml")),
            data_dir: self.dir.path().join(&name),
            log: self.dir.path().join(format!("{name}.log")),
            name,
            id,
            address: None,
            http_token: None,
            extra_config: String::new(),
            child: None,
        };
        self.nodes.push(node);
        self.write_config(index, "127.0.0.1:0".parse().expect("addr"));
        index
    }

    /// Appends TOML sections to node `index`'s config (from its next start);
    /// they replace the harness's `[anti_entropy]` default (off).
    pub fn configure(&mut self, index: usize, toml: &str) {
        self.nodes[index].extra_config = toml.to_string();
        let listen = self.nodes[index]
            .address
            .unwrap_or_else(|| "127.0.0.1:0".parse().expect("addr"));
        self.write_config(index, listen);
    }

    /// Sets `ring.partition_bits` of every node (from its next start; only
    /// before the ring is formed).
    pub fn set_partition_bits(&mut self, bits: u8) {
        self.partition_bits = bits;
        for index in 0..self.nodes.len() {
            let listen = self.nodes[index]
                .address
                .unwrap_or_else(|| "127.0.0.1:0".parse().expect("addr"));
            self.write_config(index, listen);
        }
    }

    /// Requires `token` on node `index`'s HTTP API (from its next start).
    pub fn set_http_token(&mut self, index: usize, token: &str) {
        self.nodes[index].http_token = Some(token.to_string());
        let listen = self.nodes[index]
            .address
            .unwrap_or_else(|| "127.0.0.1:0".parse().expect("addr"));
        self.write_config(index, listen);
    }

    fn write_config(&self, index: usize, listen: SocketAddr) {
        let node = &self.nodes[index];
        let seeds = match self.nodes.first().and_then(|n| n.address) {
            Some(seed) if index > 0 => format!("\"{seed}\""),
            _ => String::new(),
        };
        let zone = index % 3;
        let name = &node.name;
        write(
            &node.config,
            &format!(
                r#"
[node]
name = "{name}"
zone = "zone-{zone}"
listen = "{listen}"
seeds = [{seeds}]
data_dir = "{name}"

[tls]
ca_cert = "ca.pem"
cert = "{name}.pem"
key = "{name}.key"

[ring]
partition_bits = {bits}
{http}
{extra}"#,
                bits = self.partition_bits,
                http = node.http_token.as_ref().map_or(String::new(), |t| format!(
                    "\n[http]\nbearer_token = \"{t}\"\n"
                )),
                extra = if node.extra_config.contains("[anti_entropy]") {
                    node.extra_config.clone()
                } else {
                    format!("{}\n[anti_entropy]\nenabled = false\n", node.extra_config)
                },
            ),
        );
    }

    /// Starts node `index` and waits for its address; on its first start
    /// pins its config to the port it got.
    pub fn start(&mut self, index: usize) -> SocketAddr {
        let address_file = self.nodes[index].data_dir.join("address");
        let _ = std::fs::remove_file(&address_file);
        let _ = std::fs::remove_file(self.nodes[index].data_dir.join("http_address"));
        if self.nodes[index].address.is_none() {
            self.write_config(index, "127.0.0.1:0".parse().expect("addr"));
        }
        let node = &mut self.nodes[index];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("log file");
        let child = Command::new(bin_dir().join("nornd"))
            .arg("--config")
            .arg(&node.config)
            .env("RUST_LOG", "info,quinn=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} (run `cargo build --bins` first): {e}",
                    bin_dir().join("nornd").display()
                )
            });
        node.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let address = loop {
            if let Ok(text) = std::fs::read_to_string(&address_file) {
                if let Ok(address) = text.trim().parse::<SocketAddr>() {
                    break address;
                }
            }
            if let Some(status) = node
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{} exited with {status} at start:\n{}",
                    node.name,
                    tail(&node.log)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not write its address",
                node.name
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let first_start = node.address.is_none();
        node.address = Some(address);
        if first_start {
            self.write_config(index, address);
        }
        address
    }

    /// Kills node `index` with SIGKILL and reaps it.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGHUP to node `index` (by its pid): it reloads its
    /// certificates.
    pub fn hangup(&self, index: usize) {
        let child = self.nodes[index].child.as_ref().expect("node is running");
        signal(child, "-HUP");
    }

    /// Sends SIGTERM to node `index` and waits (up to 10 s) for it to exit.
    pub fn terminate(&mut self, index: usize) -> std::process::ExitStatus {
        let mut child = self.nodes[index].child.take().expect("node is running");
        signal(&child, "-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not stop within 10 s of SIGTERM",
                    self.nodes[index].name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `nornd` for node `index` to completion (for start-up failures).
    pub fn run_to_exit(&self, index: usize) -> std::process::Output {
        Command::new(bin_dir().join("nornd"))
            .arg("--config")
            .arg(&self.nodes[index].config)
            .stdin(Stdio::null())
            .output()
            .expect("run nornd")
    }

    /// The HTTP API address node `index` wrote at start (it binds HTTP
    /// after QUIC, so this waits up to 10 s for the file).
    pub fn http_address(&self, index: usize) -> SocketAddr {
        let file = self.nodes[index].data_dir.join("http_address");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match std::fs::read_to_string(&file) {
                Ok(text) if text.ends_with('\n') => {
                    return text.trim().parse().expect("an address")
                }
                Err(e) if Instant::now() > deadline => panic!("{}: {e}", file.display()),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// The value of metric `name` (unlabelled) on node `index`'s
    /// `/metrics`.
    pub fn metric(&self, index: usize, name: &str) -> f64 {
        let url = format!("http://{}/metrics", self.http_address(index));
        let (status, _, body) = crate::http::curl(&[&url]);
        assert_eq!(status, 200, "metrics of node {index}");
        let prefix = format!("{name} ");
        body.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the metrics of node {index}: {body}"))
    }

    pub fn address(&self, index: usize) -> SocketAddr {
        self.nodes[index].address.expect("node was started")
    }

    /// Sends `request` to node `index` as the admin client, redialing once
    /// if the pooled connection belonged to a previous process of the node.
    pub async fn call(
        &self,
        index: usize,
        request: Request,
    ) -> Result<Response, norn_net::NetError> {
        self.admin
            .call_idempotent(self.address(index), &request, Duration::from_secs(5))
            .await
    }

    /// Commits on node `index` as `norn admin commit` does: asks it for the
    /// ring its staged changes make, signs it as the admin, hands it back.
    /// The reply to the commit (or to a refused proposal).
    pub async fn commit(&self, index: usize) -> Result<Response, norn_net::NetError> {
        self.commit_revoking(index, Vec::new()).await
    }

    /// [`TestCluster::commit`], adding `revoke` to the ring's revoked
    /// certificates.
    pub async fn commit_revoking(
        &self,
        index: usize,
        revoke: Vec<norn_ring::CertificateFingerprint>,
    ) -> Result<Response, norn_net::NetError> {
        let current = self.ring(index).await;
        let propose = Request::AdminPropose {
            revoke: revoke.clone(),
        };
        match self.call(index, propose).await? {
            Response::Proposed(ring) => {
                let Response::Plan(plan) = self.call(index, Request::AdminPlan).await? else {
                    panic!("node {index} has no plan");
                };
                norn_client::session::check_proposal(
                    current.as_ref(),
                    &plan.staged,
                    &revoke,
                    &ring,
                )
                .unwrap_or_else(|refused| panic!("node {index} proposed {refused}"));
                let ring = self.sign(&ring);
                self.call(index, Request::AdminCommit { ring }).await
            }
            other => Ok(other),
        }
    }

    /// `ring` signed by the cluster's admin.
    pub fn sign(&self, ring: &Ring) -> Ring {
        self.signer.sign_now(ring).expect("the admin signs")
    }

    pub async fn members(&self, index: usize) -> Vec<MemberInfo> {
        match self.call(index, Request::AdminMembers).await {
            Ok(Response::Members(members)) => members,
            _ => Vec::new(),
        }
    }

    pub async fn ring(&self, index: usize) -> Option<Ring> {
        match self.call(index, Request::AdminRing).await {
            Ok(Response::Ring(ring)) => ring.map(|ring| *ring),
            _ => None,
        }
    }

    /// Whether node `index` sees node `other` up.
    pub async fn sees_up(&self, index: usize, other: usize) -> bool {
        let id = self.nodes[other].id;
        self.members(index)
            .await
            .iter()
            .any(|m| m.member.id == id && m.up)
    }

    /// Starts nodes `0..count`, stages their joins, commits on node 0, and
    /// waits until every node holds the ring and sees every other up.
    pub async fn form(&mut self, count: usize) -> Ring {
        for index in 0..count {
            self.start(index);
        }
        let seed = self.address(0).to_string();
        for index in 0..count {
            let staged = self
                .call(index, Request::AdminJoin { seed: seed.clone() })
                .await;
            assert!(
                matches!(staged, Ok(Response::Staged(_))),
                "join of node {index}: {staged:?}"
            );
        }
        wait_until("every join reaches node 0", Duration::from_secs(30), || async {
            matches!(self.call(0, Request::AdminPlan).await, Ok(Response::Plan(p)) if p.staged.len() == count)
        })
        .await;
        let committed = self.commit(0).await;
        assert!(
            matches!(committed, Ok(Response::Committed { version: 1 })),
            "commit: {committed:?}"
        );
        let ring = self
            .ring(0)
            .await
            .expect("node 0 holds the ring it committed");
        self.wait_converged(0..count, &ring).await;
        ring
    }

    /// Waits until every node of `indexes` holds `ring` and sees the others up.
    pub async fn wait_converged(&self, indexes: std::ops::Range<usize>, ring: &Ring) {
        wait_until(
            "every node holds the ring and sees every other up",
            Duration::from_secs(30),
            || async {
                for index in indexes.clone() {
                    if self.ring(index).await.as_ref() != Some(ring) {
                        return false;
                    }
                    for other in indexes.clone() {
                        if !self.sees_up(index, other).await {
                            return false;
                        }
                    }
                }
                true
            },
        )
        .await;
    }

    /// A quorum write (or delete, `value: None`) through node `index`.
    pub async fn put(
        &self,
        index: usize,
        key: &str,
        value: Option<&[u8]>,
        context: Option<norn_clock::Context>,
        options: norn_proto::QuorumOptions,
    ) -> Response {
        let request = Request::Put {
            bucket: b"test".to_vec(),
            key: key.as_bytes().to_vec(),
            value: value.map(<[u8]>::to_vec),
            context,
            options,
            timeout_ms: Some(3_000),
            forwarded: false,
        };
        self.admin
            .call(self.address(index), &request, Duration::from_secs(10))
            .await
            .expect("put answered")
    }

    /// A quorum read through node `index`.
    pub async fn get(
        &self,
        index: usize,
        key: &str,
        options: norn_proto::QuorumOptions,
    ) -> Response {
        let request = Request::Get {
            bucket: b"test".to_vec(),
            key: key.as_bytes().to_vec(),
            options,
            timeout_ms: Some(3_000),
        };
        self.admin
            .call_idempotent(self.address(index), &request, Duration::from_secs(10))
            .await
            .expect("get answered")
    }

    /// Node `index`'s local copy of a key. Retries a few times, since the
    /// first call after a restart may meet the previous process's connection.
    pub async fn replica(&self, index: usize, key: &str) -> Option<norn_clock::Object> {
        let request = Request::ReplicaGet {
            bucket: b"test".to_vec(),
            key: key.as_bytes().to_vec(),
        };
        let mut last = None;
        for _ in 0..10 {
            match self
                .admin
                .call(self.address(index), &request, Duration::from_secs(2))
                .await
            {
                Ok(Response::Replica { object }) => return object,
                other => last = Some(other),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("replica read of node {index}: {last:?}")
    }

    /// The index of the node with id `id`.
    pub fn index_of(&self, id: NodeId) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .expect("a node of this cluster")
    }

    /// Pending hints on node `index`, summed over targets.
    pub async fn pending_hints(&self, index: usize) -> u64 {
        match self.call(index, Request::AdminHints).await {
            Ok(Response::Hints(queues)) => queues.iter().map(|(_, hints, _)| hints).sum(),
            other => panic!("hints of node {index}: {other:?}"),
        }
    }

    /// Runs the `norn` CLI in the cluster's directory as the admin; its
    /// standard output, or a panic with its standard error.
    pub fn norn(&self, args: &[&str]) -> String {
        let output = self.norn_output(args);
        assert!(
            output.status.success(),
            "norn {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs the `norn` CLI in the cluster's directory as the admin; what it
    /// printed and its exit status.
    pub fn norn_output(&self, args: &[&str]) -> std::process::Output {
        self.norn_command(args).output().expect("norn runs")
    }

    /// Starts the `norn` CLI as the admin in the background (its output
    /// goes to `log` in the cluster's directory); it is stopped by pid
    /// when the returned guard drops.
    pub fn spawn_norn(&self, args: &[&str], log: &str) -> Background {
        let log = std::fs::File::create(self.dir.path().join(log)).expect("log file");
        let stderr = log.try_clone().expect("log file");
        let child = self
            .norn_command(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .expect("norn starts");
        Background { child }
    }

    fn norn_command(&self, args: &[&str]) -> Command {
        let config = self.write_client_config();
        let mut command = Command::new(bin_dir().join("norn"));
        command
            .current_dir(self.dir.path())
            .arg("--config")
            .arg(&config)
            .args(args);
        command
    }

    /// Writes a client config for the admin certificate listing every
    /// started node, as `make cluster` does; returns its path.
    pub fn write_client_config(&self) -> PathBuf {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| n.address)
            .map(|a| format!("\"{a}\""))
            .collect();
        let path = self.dir.path().join("client.toml");
        write(
            &path,
            &format!(
                "nodes = [{}]\n[tls]\nca_cert = \"ca.pem\"\ncert = \"admin.pem\"\nkey = \"admin.key\"\n",
                nodes.join(", ")
            ),
        );
        path
    }

    /// Sends `request` to node `index` from `endpoint` (a certificate of
    /// the test's choosing), panicking if the node does not answer.
    pub async fn ask_as(&self, endpoint: &Endpoint, index: usize, request: &Request) -> Response {
        endpoint
            .call(self.address(index), request, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("node {index} did not answer: {e}"))
    }

    /// Sends an admin or replica request to node `index` and returns the
    /// reply, panicking if it does not answer.
    pub async fn ask(&self, index: usize, request: Request) -> Response {
        self.call(index, request)
            .await
            .unwrap_or_else(|e| panic!("node {index} did not answer: {e}"))
    }

    /// Runs a repair on node `index` (all its partitions, or `partition`)
    /// and waits until it is done; returns its final progress.
    pub async fn repair(
        &self,
        index: usize,
        partition: Option<norn_ring::Partition>,
    ) -> norn_proto::RepairProgress {
        let started = self.ask(index, Request::AdminRepair { partition }).await;
        assert!(
            matches!(started, Response::Repair(_)),
            "repair: {started:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match self.ask(index, Request::AdminRepairProgress).await {
                Response::Repair(progress) if !progress.running => return progress,
                Response::Repair(_) => {}
                other => panic!("repair progress: {other:?}"),
            }
            assert!(
                Instant::now() < deadline,
                "repair on node {index} did not finish in 120 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes `value` to every key of `keys` (bucket `test`) through node
    /// `index`, 32 at a time; panics on any failed write.
    pub async fn put_keys(
        &self,
        index: usize,
        keys: &[String],
        value: &[u8],
        options: norn_proto::QuorumOptions,
    ) {
        let requests = keys.iter().map(|key| Request::Put {
            bucket: b"test".to_vec(),
            key: key.as_bytes().to_vec(),
            value: Some(value.to_vec()),
            context: None,
            options,
            timeout_ms: Some(5_000),
            forwarded: false,
        });
        for (key, response) in keys.iter().zip(self.call_all(index, requests).await) {
            assert!(
                matches!(response, Response::Written(_)),
                "write of {key}: {response:?}"
            );
        }
    }

    /// Quorum reads of every key of `keys` through node `index`, 32 at a time.
    pub async fn get_keys(
        &self,
        index: usize,
        keys: &[String],
        options: norn_proto::QuorumOptions,
    ) -> Vec<Response> {
        let requests = keys.iter().map(|key| Request::Get {
            bucket: b"test".to_vec(),
            key: key.as_bytes().to_vec(),
            options,
            timeout_ms: Some(5_000),
        });
        self.call_all(index, requests).await
    }

    /// Sends every request to node `index`, 32 in flight; replies in order.
    async fn call_all(
        &self,
        index: usize,
        requests: impl Iterator<Item = Request>,
    ) -> Vec<Response> {
        let address = self.address(index);
        let mut tasks = tokio::task::JoinSet::new();
        let mut replies = Vec::new();
        for (i, request) in requests.enumerate() {
            if tasks.len() >= 32 {
                replies.push(tasks.join_next().await.expect("a task").expect("joined"));
            }
            let admin = self.admin.clone();
            tasks.spawn(async move {
                let reply = admin
                    .call(address, &request, Duration::from_secs(10))
                    .await
                    .unwrap_or_else(|e| panic!("request {i}: {e}"));
                (i, reply)
            });
        }
        while let Some(done) = tasks.join_next().await {
            replies.push(done.expect("joined"));
        }
        replies.sort_by_key(|(i, _)| *i);
        replies.into_iter().map(|(_, reply)| reply).collect()
    }

    /// Node `index`'s digest of its local copy of each key (bucket `test`;
    /// `None`: absent or unreadable).
    pub async fn digests(&self, index: usize, keys: &[String]) -> Vec<Option<u64>> {
        let mut digests = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(1000) {
            let request = Request::KeyDigests {
                keys: chunk
                    .iter()
                    .map(|key| norn_proto::KeyRef {
                        bucket: b"test".to_vec(),
                        key: key.as_bytes().to_vec(),
                    })
                    .collect(),
                admission: None,
            };
            match self.ask(index, request).await {
                Response::KeyDigests(found) => digests.extend(found),
                other => panic!("digests of node {index}: {other:?}"),
            }
        }
        digests
    }

    /// A client endpoint with a new client certificate `name` in `role`.
    pub fn endpoint_as_client(&self, name: &str, role: ClientRole) -> Endpoint {
        let issued = certs::issue_client(&self.ca, name, role).expect("client certificate");
        let files = write_pair(self.dir.path(), name, &issued);
        Endpoint::client(
            &TlsMaterial::load(&files).expect("client TLS"),
            EndpointLimits::default(),
        )
        .expect("client endpoint")
    }

    /// A client endpoint presenting `issued` (written as `name`.pem/.key).
    pub fn endpoint_with(&self, issued: &Issued, name: &str) -> Endpoint {
        let files = write_pair(self.dir.path(), name, issued);
        Endpoint::client(
            &TlsMaterial::load(&files).expect("client TLS"),
            EndpointLimits::default(),
        )
        .expect("client endpoint")
    }

    /// Replaces node `index`'s certificate and key files with `issued`
    /// (a running node takes them on [`TestCluster::hangup`]).
    pub fn replace_certificate(&mut self, index: usize, issued: &Issued) {
        let name = &self.nodes[index].name;
        for file in [format!("{name}.pem"), format!("{name}.key")] {
            let path = self.dir.path().join(file);
            std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        write_pair(self.dir.path(), name, issued);
        self.nodes[index].issued = issued.clone();
    }

    /// A client endpoint holding node `index`'s own certificate, to send
    /// what only nodes may send (replica writes, reaps) as that node would.
    pub fn endpoint_as_node(&self, index: usize) -> Endpoint {
        let name = &self.nodes[index].name;
        let files = TlsFiles {
            ca_cert: self.dir.path().join("ca.pem"),
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}.key")),
        };
        Endpoint::client(
            &TlsMaterial::load(&files).expect("node TLS"),
            EndpointLimits::default(),
        )
        .expect("node client endpoint")
    }

    /// Starts node `index`, which joins through node 0: stages its join,
    /// commits it on node 0 and waits until nodes `0..=index` hold the new
    /// ring and see each other up. Returns that ring.
    pub async fn join(&mut self, index: usize) -> Ring {
        self.start(index);
        let seed = self.address(0).to_string();
        let staged = self.ask(index, Request::AdminJoin { seed }).await;
        assert!(matches!(staged, Response::Staged(_)), "join: {staged:?}");
        wait_until("the join reaches node 0", Duration::from_secs(30), || async {
            matches!(self.ask(0, Request::AdminPlan).await, Response::Plan(p) if p.staged.len() == 1)
        })
        .await;
        let committed = self.commit(0).await.expect("node 0 answers");
        assert!(
            matches!(committed, Response::Committed { .. }),
            "commit: {committed:?}"
        );
        let ring = self.ring(0).await.expect("the committed ring");
        self.wait_converged(0..index + 1, &ring).await;
        ring
    }

    /// Stages a change of node `node` on node `via`, commits it there, and
    /// waits until every node of `members` holds the new ring.
    pub async fn change_ring(
        &self,
        via: usize,
        node: usize,
        kind: norn_membership::ChangeKind,
        members: &[usize],
    ) -> Ring {
        let version = self.ring(via).await.map_or(0, |r| r.version());
        let staged = self
            .ask(
                via,
                Request::AdminStage {
                    node: self.nodes[node].name.clone(),
                    kind,
                },
            )
            .await;
        assert!(matches!(staged, Response::Staged(_)), "stage: {staged:?}");
        let committed = self
            .commit(via)
            .await
            .unwrap_or_else(|e| panic!("node {via} did not answer: {e}"));
        assert!(
            matches!(committed, Response::Committed { version: v } if v == version + 1),
            "commit: {committed:?}"
        );
        let ring = self.ring(via).await.expect("the committed ring");
        wait_until(
            "every member holds the new ring",
            Duration::from_secs(30),
            || async {
                for &index in members {
                    if self.ring(index).await.as_ref() != Some(&ring) {
                        return false;
                    }
                }
                true
            },
        )
        .await;
        ring
    }

    /// The log of node `index` so far.
    pub fn log(&self, index: usize) -> String {
        std::fs::read_to_string(&self.nodes[index].log).unwrap_or_default()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!("---- log of {} ----\n{}", node.name, tail(&node.log));
            }
        }
    }
}

/// A process a test started in the background; killed by its pid and
/// reaped when this drops.
#[derive(Debug)]
pub struct Background {
    child: Child,
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies the directory tree at `from` to `to` (which must not exist), as
/// an operator's backup of a stopped node's data directory would.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
        }
    }
}

/// Sends `signal` (`-HUP`, `-TERM`) to `child` by its pid.
fn signal(child: &Child, signal: &str) {
    let sent = Command::new("kill")
        .arg(signal)
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(sent.success(), "kill {signal} {}", child.id());
}

pub(crate) fn write_pair(dir: &Path, name: &str, issued: &Issued) -> TlsFiles {
    let files = TlsFiles {
        ca_cert: dir.join("ca.pem"),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    certs::write_pem(&files.cert, &issued.cert_pem, false).expect("certificate");
    certs::write_pem(&files.key, &issued.key_pem, true).expect("key");
    files
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Polls `condition` every 100 ms until it holds; panics after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if condition().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
