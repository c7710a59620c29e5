//! Real faults for real nodes: 3 to 5 `nornd` processes, each in its own
//! network namespace on a bridge (in a namespace of its own), and a client
//! host running the set-add workload (`norn-setadd`) through norn-client.
//! Faults are nftables rules on the bridge (a host cut off, one link cut
//! one way, a 2/3 split) and kill -9 with restart. Needs root.
//!
//! Everything is created per run under a unique prefix and removed when
//! the [`FaultCluster`] is dropped, however the run ends: processes are
//! killed by pid first, then the namespaces are deleted.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use norn_net::certs;
use norn_proto::ClientRole;
use norn_ring::NodeId;

use crate::cluster::{bin_dir, write_pair};

/// Whether this process may create network namespaces.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// What a scenario observed.
#[derive(Debug, Clone, Default)]
pub struct ScenarioReport {
    pub name: String,
    pub acknowledged: usize,
    pub lost: usize,
    pub never_read: usize,
    pub most_siblings: usize,
    /// From healing until every key's replicas were equal (repair included).
    pub converge: Option<Duration>,
}

/// A cluster of nodes in namespaces, with its client host.
#[derive(Debug)]
pub struct FaultCluster {
    prefix: String,
    nodes: usize,
    dir: tempfile::TempDir,
    children: Vec<Option<Child>>,
    namespaces: Vec<String>,
}

impl FaultCluster {
    fn switch(&self) -> String {
        format!("{}w", self.prefix)
    }

    fn host(&self, index: usize) -> String {
        format!("{}h{index}", self.prefix)
    }

    /// Host `index`'s address: 1..=nodes are nodes, 0 is the client.
    fn ip(index: usize) -> String {
        if index == 0 {
            "10.99.0.100".into()
        } else {
            format!("10.99.0.{index}")
        }
    }

    fn node_address(index: usize) -> SocketAddr {
        format!("{}:7000", Self::ip(index))
            .parse()
            .expect("address")
    }

    /// Creates the namespaces, certificates and configs of `nodes` nodes
    /// (hosts 1..=nodes) and a client host (0), and starts and forms the
    /// cluster.
    pub fn start(nodes: usize) -> Result<FaultCluster, String> {
        for binary in ["nornd", "norn", "norn-setadd"] {
            if !bin_dir().join(binary).exists() {
                return Err(format!(
                    "{} is missing: run `cargo build --workspace --bins` first",
                    bin_dir().join(binary).display()
                ));
            }
        }
        let prefix = format!("nf{}", std::process::id() % 100_000);
        let mut cluster = FaultCluster {
            prefix,
            nodes,
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
            children: (0..=nodes).map(|_| None).collect(),
            namespaces: Vec::new(),
        };
        cluster.create_network()?;
        cluster.write_files()?;
        for index in 1..=nodes {
            cluster.start_node(index)?;
        }
        cluster.form()?;
        Ok(cluster)
    }

    fn create_network(&mut self) -> Result<(), String> {
        let switch = self.switch();
        run(Command::new("ip").args(["netns", "add", &switch]))?;
        self.namespaces.push(switch.clone());
        run(Command::new("ip").args(["-n", &switch, "link", "set", "lo", "up"]))?;
        run(Command::new("ip").args(["-n", &switch, "link", "add", "br0", "type", "bridge"]))?;
        run(Command::new("ip").args(["-n", &switch, "link", "set", "br0", "up"]))?;
        for index in 0..=self.nodes {
            let host = self.host(index);
            let port = format!("{}p{index}", self.prefix);
            run(Command::new("ip").args(["netns", "add", &host]))?;
            self.namespaces.push(host.clone());
            run(Command::new("ip").args(["-n", &host, "link", "set", "lo", "up"]))?;
            run(Command::new("ip").args([
                "link", "add", &port, "netns", &switch, "type", "veth", "peer", "name", "eth0",
                "netns", &host,
            ]))?;
            run(Command::new("ip").args(["-n", &switch, "link", "set", &port, "master", "br0"]))?;
            run(Command::new("ip").args(["-n", &switch, "link", "set", &port, "up"]))?;
            let address = format!("{}/24", Self::ip(index));
            run(Command::new("ip").args(["-n", &host, "addr", "add", &address, "dev", "eth0"]))?;
            run(Command::new("ip").args(["-n", &host, "link", "set", "eth0", "up"]))?;
        }
        Ok(())
    }

    fn write_files(&self) -> Result<(), String> {
        let dir = self.dir.path();
        let ca = certs::new_ca("faults").map_err(|e| e.to_string())?;
        certs::write_pem(&dir.join("ca.pem"), &ca.cert_pem, false).map_err(|e| e.to_string())?;
        let admin =
            certs::issue_client(&ca, "admin", ClientRole::Admin).map_err(|e| e.to_string())?;
        write_pair(dir, "admin", &admin);
        for index in 1..=self.nodes {
            let name = format!("n{index}");
            let issued = certs::issue_node(&ca, &name, NodeId(0x2000 + index as u64))
                .map_err(|e| e.to_string())?;
            write_pair(dir, &name, &issued);
            let config = format!(
                "[node]\nname = \"{name}\"\nzone = \"zone-{zone}\"\nlisten = \"{listen}\"\nseeds = [\"{seed}\"]\ndata_dir = \"{name}\"\n\n[tls]\nca_cert = \"ca.pem\"\ncert = \"{name}.pem\"\nkey = \"{name}.key\"\n\n[ring]\npartition_bits = 6\n\n[data]\nrequest_timeout_ms = 1000\n\n[limits]\npeer_request_timeout_ms = 500\n\n[anti_entropy]\ninterval_ms = 200\n",
                zone = index % 3,
                listen = Self::node_address(index),
                seed = Self::node_address(1),
            );
            std::fs::write(dir.join(format!("{name}.toml")), config).map_err(|e| e.to_string())?;
        }
        let nodes: Vec<String> = (1..=self.nodes)
            .map(|i| format!("\"{}\"", Self::node_address(i)))
            .collect();
        std::fs::write(
            dir.join("client.toml"),
            format!(
                "nodes = [{}]\n[tls]\nca_cert = \"ca.pem\"\ncert = \"admin.pem\"\nkey = \"admin.key\"\n",
                nodes.join(", ")
            ),
        )
        .map_err(|e| e.to_string())
    }

    fn in_host(&self, index: usize, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.host(index)])
            .arg(program)
            .current_dir(self.dir.path());
        command
    }

    /// Starts node `index` (kept data, next incarnation after a kill).
    pub fn start_node(&mut self, index: usize) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("n{index}.log")))
            .map_err(|e| e.to_string())?;
        let child = self
            .in_host(index, &bin_dir().join("nornd"))
            .arg("--config")
            .arg(format!("n{index}.toml"))
            .env("RUST_LOG", "info,quinn=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting node {index}: {e}"))?;
        self.children[index] = Some(child);
        Ok(())
    }

    /// kill -9 of node `index`.
    pub fn kill_node(&mut self, index: usize) {
        if let Some(mut child) = self.children[index].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `norn` on the client host; returns its stdout.
    pub fn norn(&self, args: &[&str]) -> Result<String, String> {
        let output = self
            .in_host(0, &bin_dir().join("norn"))
            .arg("--config")
            .arg("client.toml")
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "norn {args:?}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    fn wait(
        &self,
        what: &str,
        timeout: Duration,
        mut ok: impl FnMut() -> bool,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if ok() {
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!("timed out after {timeout:?} waiting until {what}"))
    }

    fn all_up(&self) -> bool {
        (1..=self.nodes).all(|i| {
            let address = Self::node_address(i).to_string();
            self.norn(&["--node", &address, "admin", "members", "--json"])
                .is_ok_and(|out| out.matches("\"up\": true").count() == self.nodes)
        })
    }

    fn form(&self) -> Result<(), String> {
        self.wait("every node answers", Duration::from_secs(30), || {
            (1..=self.nodes).all(|i| {
                let address = Self::node_address(i).to_string();
                self.norn(&["--node", &address, "admin", "members"]).is_ok()
            })
        })?;
        let seed = Self::node_address(1).to_string();
        for index in 1..=self.nodes {
            let address = Self::node_address(index).to_string();
            self.norn(&["--node", &address, "admin", "join", &seed])?;
        }
        self.wait(
            "every join is staged on node 1",
            Duration::from_secs(30),
            || {
                self.norn(&["--node", &seed, "admin", "plan", "--json"])
                    .is_ok_and(|out| out.matches("\"kind\": \"Join\"").count() == self.nodes)
            },
        )?;
        self.norn(&["--node", &seed, "admin", "commit"])?;
        self.wait(
            "every node sees every other up",
            Duration::from_secs(30),
            || self.all_up(),
        )?;
        Ok(())
    }

    /// Replaces the fault rules on the bridge with `rules` (nft statements
    /// in the bridge forward chain); no rules heals every link.
    fn set_rules(&self, rules: &[String]) -> Result<(), String> {
        let switch = self.switch();
        let _ = run(Command::new("ip").args([
            "netns", "exec", &switch, "nft", "delete", "table", "bridge", "faults",
        ]));
        if rules.is_empty() {
            return Ok(());
        }
        let mut script = String::from(
            "add table bridge faults\nadd chain bridge faults forward { type filter hook forward priority 0; policy accept; }\n",
        );
        for rule in rules {
            script.push_str(&format!("add rule bridge faults forward {rule}\n"));
        }
        let file = self.dir.path().join("faults.nft");
        std::fs::write(&file, script).map_err(|e| e.to_string())?;
        run(Command::new("ip")
            .args(["netns", "exec", &switch, "nft", "-f"])
            .arg(&file))
    }

    fn port(&self, index: usize) -> String {
        format!("{}p{index}", self.prefix)
    }

    /// Cuts node `index` off from every other host (the client included).
    pub fn isolate(&self, index: usize) -> Result<(), String> {
        let port = self.port(index);
        self.set_rules(&[
            format!("iifname \"{port}\" drop"),
            format!("oifname \"{port}\" drop"),
        ])
    }

    /// Cuts the link from node `from` to node `to`, one way only.
    pub fn cut_one_way(&self, from: usize, to: usize) -> Result<(), String> {
        self.set_rules(&[format!(
            "iifname \"{}\" oifname \"{}\" ether type ip drop",
            self.port(from),
            self.port(to)
        )])
    }

    /// Splits the nodes into `side` and the rest; the client reaches both.
    pub fn split(&self, side: &BTreeSet<usize>) -> Result<(), String> {
        let mut rules = Vec::new();
        for a in 1..=self.nodes {
            for b in 1..=self.nodes {
                if side.contains(&a) && !side.contains(&b) {
                    for (x, y) in [(a, b), (b, a)] {
                        rules.push(format!(
                            "iifname \"{}\" oifname \"{}\" drop",
                            self.port(x),
                            self.port(y)
                        ));
                    }
                }
            }
        }
        self.set_rules(&rules)
    }

    pub fn heal(&self) -> Result<(), String> {
        self.set_rules(&[])
    }

    /// Starts the workload on the client host for `seconds`.
    pub fn start_workload(&self, seconds: u64) -> Result<Child, String> {
        self.in_host(0, &bin_dir().join("norn-setadd"))
            .args(["run", "client.toml", &seconds.to_string(), "history.json"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the workload: {e}"))
    }

    fn final_state(&self) -> Result<serde_json::Value, String> {
        let status = self
            .in_host(0, &bin_dir().join("norn-setadd"))
            .args(["final", "client.toml", "final.json"])
            .output()
            .map_err(|e| e.to_string())?;
        if !status.status.success() {
            return Err(String::from_utf8_lossy(&status.stderr).into_owned());
        }
        let text = std::fs::read_to_string(self.dir.path().join("final.json"))
            .map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }

    fn converged(state: &serde_json::Value) -> bool {
        state
            .as_object()
            .is_some_and(|keys| keys.values().all(|k| k["replicas_equal"] == true))
    }

    /// After the faults: heals, restarts every stopped node, repairs, waits
    /// until every key's replicas are equal, and classifies every
    /// acknowledged element of the history.
    pub fn finish(&mut self, name: &str, workload: Child) -> Result<ScenarioReport, String> {
        let mut workload = workload;
        let _ = workload.wait();
        self.heal()?;
        for index in 1..=self.nodes {
            if self.children[index].is_none() {
                self.start_node(index)?;
            }
        }
        let healed = Instant::now();
        self.wait(
            "every node sees every other up after healing",
            Duration::from_secs(60),
            || self.all_up(),
        )?;
        let mut state = serde_json::Value::Null;
        self.wait(
            "every key's replicas are equal",
            Duration::from_secs(120),
            || {
                let _ = self.norn(&["admin", "repair"]);
                match self.final_state() {
                    Ok(found) => {
                        state = found;
                        Self::converged(&state)
                    }
                    Err(_) => false,
                }
            },
        )?;
        let converge = healed.elapsed();
        let history: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(self.dir.path().join("history.json"))
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let mut report = ScenarioReport {
            name: name.to_string(),
            converge: Some(converge),
            most_siblings: history["most_siblings"].as_u64().unwrap_or(0) as usize,
            ..ScenarioReport::default()
        };
        for entry in history["elements"].as_array().into_iter().flatten() {
            let (element, key, acknowledged) = (&entry[0], &entry[1], entry[2] == true);
            if !acknowledged {
                continue;
            }
            report.acknowledged += 1;
            let key = key.as_str().unwrap_or_default();
            match state[key]["elements"].as_array() {
                Some(found) if found.contains(element) => {}
                Some(_) => report.lost += 1,
                None => report.never_read += 1,
            }
            if let Some(siblings) = state[key]["siblings"].as_u64() {
                report.most_siblings = report.most_siblings.max(siblings as usize);
            }
        }
        Ok(report)
    }

    /// The log of node `index`.
    pub fn log(&self, index: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("n{index}.log"))).unwrap_or_default()
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for FaultCluster {
    fn drop(&mut self) {
        for index in 0..self.children.len() {
            self.kill_node(index);
        }
        for namespace in self.namespaces.iter().rev() {
            let _ = run(Command::new("ip").args(["netns", "del", namespace]));
        }
    }
}

/// The scenarios of the fault tests and `make faults`, in order.
pub const SCENARIOS: [&str; 4] = ["isolate-one", "one-way-link", "split-2-3", "kill-9-restart"];

/// Runs one scenario on a fresh 5-node cluster: `seconds` of workload
/// with the fault applied from the second second for half the run.
pub fn run_scenario(name: &str, seconds: u64) -> Result<ScenarioReport, String> {
    let mut cluster = FaultCluster::start(5)?;
    let workload = cluster.start_workload(seconds)?;
    std::thread::sleep(Duration::from_secs(2));
    let fault_for = Duration::from_secs(seconds / 2);
    match name {
        "isolate-one" => cluster.isolate(3)?,
        "one-way-link" => cluster.cut_one_way(1, 2)?,
        "split-2-3" => cluster.split(&BTreeSet::from([1, 2]))?,
        "kill-9-restart" => cluster.kill_node(2),
        other => return Err(format!("no scenario {other}")),
    }
    std::thread::sleep(fault_for / 2);
    if name == "kill-9-restart" {
        cluster.start_node(2)?;
        cluster.kill_node(4);
    }
    std::thread::sleep(fault_for / 2);
    let outcome = cluster.finish(name, workload);
    if outcome.is_err() {
        for index in 1..=5 {
            let log = cluster.log(index);
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            eprintln!(
                "---- n{index} ----\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    outcome
}
