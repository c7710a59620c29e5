//! `make cluster` itself (tools/cluster.sh with the debug binaries, in a
//! temporary directory): it forms a ring through the CLI's signed commit,
//! and a node restarted from the config it wrote comes back on the same
//! QUIC and HTTP addresses, so the addresses it printed stay good.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use norn_tests::cluster::repository;
use norn_tests::http::curl;

fn script(name: &str, dir: &Path) -> Output {
    Command::new(repository().join("tools").join(name))
        .env("CLUSTER_DIR", dir)
        .env("NODES", "2")
        .env("PROFILE", "debug")
        .env("BUILD", "0")
        .output()
        .expect("the script runs")
}

/// Stops the cluster by its pids (tools/cluster-stop.sh) however the test
/// ends, and reaps the node the test restarted itself.
struct Running<'a> {
    dir: &'a Path,
    restarted: Option<std::process::Child>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let _ = script("cluster-stop.sh", self.dir);
        if let Some(mut child) = self.restarted.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn make_cluster_forms_a_ring_and_a_restarted_node_keeps_its_addresses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = dir.path().join("cluster");
    let started = script("cluster.sh", &cluster);
    let mut running = Running {
        dir: &cluster,
        restarted: None,
    };
    assert!(
        started.status.success(),
        "{}{}",
        String::from_utf8_lossy(&started.stdout),
        String::from_utf8_lossy(&started.stderr)
    );
    let members = Command::new(norn_tests::cluster::bin_dir().join("norn"))
        .env("NORN_CONFIG", cluster.join("client.toml"))
        .args(["admin", "members"])
        .output()
        .expect("norn runs");
    let listed = String::from_utf8_lossy(&members.stdout);
    assert!(
        members.status.success() && listed.contains("n2"),
        "{listed}"
    );

    let (quic, http) = (
        read(&cluster.join("n2/address")),
        read(&cluster.join("n2/http_address")),
    );
    let pids = read(&cluster.join("pids"));
    let pid: u32 = pids
        .lines()
        .nth(1)
        .expect("n2's pid")
        .parse()
        .expect("a pid");
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "n2 did not stop");
    std::fs::remove_file(cluster.join("n2/http_address")).expect("remove");
    let log = std::fs::File::create(cluster.join("n2.restart.log")).expect("log");
    let restarted = Command::new(norn_tests::cluster::bin_dir().join("nornd"))
        .current_dir(&cluster)
        .args(["--config", "n2.toml"])
        .stderr(log)
        .spawn()
        .expect("nornd restarts");
    // cluster-stop.sh stops it with the others.
    std::fs::write(
        cluster.join("pids"),
        format!("{pids}\n{}\n", restarted.id()),
    )
    .expect("pids");
    running.restarted = Some(restarted);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cluster.join("n2/http_address").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(read(&cluster.join("n2/address")), quic);
    assert_eq!(read(&cluster.join("n2/http_address")), http);
    let (status, _, _) = curl(&[&format!("http://{http}/health")]);
    assert_eq!(status, 200);
}
