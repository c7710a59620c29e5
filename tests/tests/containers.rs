//! norn in containers (`make image`, `make cluster-containers`): five nodes
//! from the image, on a podman network of their own, each with its own
//! volume and DNS name, find each other through DNS, stage their own joins
//! and are committed into one ring by the autopilot container; a node
//! killed with `podman kill` and started again on its volume loses no
//! acknowledged write; a node scaled down by leave-then-remove leaves
//! every key on its three primaries. Every request goes through the norn
//! CLI in a client container on the network.
//!
//! Skipped, saying why, where podman is missing and cannot be installed
//! (not root). Everything the test makes (containers, volumes, network,
//! image) is named after its process and removed when it ends, even when
//! it fails, unless NORN_KEEP_CONTAINERS is set (for a look at the nodes'
//! logs; NODE_LOG sets their RUST_LOG).

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use norn_tests::cluster::repository;

/// A containerized cluster made by tools/cluster-containers.sh, removed
/// on drop.
struct Containers {
    prefix: String,
    image: String,
}

impl Containers {
    fn script(&self, args: &[&str]) -> Output {
        Command::new(repository().join("tools/cluster-containers.sh"))
            .args(args)
            .env("PREFIX", &self.prefix)
            .env("NORN_IMAGE", &self.image)
            .env("PROFILE", "debug")
            .env("NODES", "5")
            .output()
            .expect("tools/cluster-containers.sh runs")
    }

    /// The CLI's standard output, tried up to three times a second apart
    /// (a client's retry: a request can fail while a node is briefly
    /// suspected on this shared machine; a lost write fails every time),
    /// or a panic with what it printed.
    fn norn(&self, args: &[&str]) -> String {
        let mut all = vec!["norn"];
        all.extend_from_slice(args);
        let mut output = self.script(&all);
        for _ in 1..3 {
            if output.status.success() {
                break;
            }
            eprintln!(
                "norn {args:?} failed, trying again: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_secs(1));
            output = self.script(&all);
        }
        assert!(
            output.status.success(),
            "norn {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Whether node `observer` sees node `name` up; `None` when it did not
    /// answer.
    fn sees_up(&self, observer: &str, name: &str) -> Option<bool> {
        let members = self.script(&["norn", "--node", observer, "admin", "members", "--json"]);
        let members = serde_json::from_slice::<serde_json::Value>(&members.stdout).ok()?;
        let members = members.as_array()?;
        Some(
            members
                .iter()
                .any(|m| m["member"]["name"] == name && m["up"] == true),
        )
    }

    /// Runs a script command that must succeed (kill, start, leave);
    /// prints what it printed.
    fn must(&self, args: &[&str]) {
        let output = self.script(args);
        assert!(
            output.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        eprint!("{}", String::from_utf8_lossy(&output.stdout));
    }

    /// Polls `condition` until it holds; after `within` fails with `what`
    /// and what `last_seen` says was seen last.
    fn wait_until(
        &self,
        what: &str,
        within: Duration,
        mut condition: impl FnMut() -> bool,
        last_seen: impl Fn() -> String,
    ) {
        let deadline = Instant::now() + within;
        while !condition() {
            assert!(
                Instant::now() < deadline,
                "timed out: {what}; last seen: {}",
                last_seen()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        if std::env::var_os("NORN_KEEP_CONTAINERS").is_some() {
            eprintln!(
                "NORN_KEEP_CONTAINERS: kept {}-*; remove them with PREFIX={} tools/cluster-containers.sh down",
                self.prefix, self.prefix
            );
            return;
        }
        let _ = self.script(&["down"]);
        let _ = Command::new("podman")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

/// Whether podman runs here, or can be installed (as root).
fn podman_available() -> bool {
    let found = Command::new("sh")
        .args(["-c", "command -v podman"])
        .output()
        .is_ok_and(|o| o.status.success());
    found
        || Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout == b"0\n")
}

/// The JSON a CLI command printed.
fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn five_containers_join_by_dns_survive_a_kill_and_scale_down_keeping_n() {
    if !podman_available() {
        eprintln!("skipped: podman is missing and cannot be installed without root");
        return;
    }
    let containers = Containers {
        prefix: format!("norn-test-{}", std::process::id()),
        image: format!("localhost/norn:test-{}", std::process::id()),
    };
    let up = containers.script(&["up"]);
    assert!(
        up.status.success(),
        "cluster-containers up: {}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    let ring = json(&containers.norn(&["admin", "ring", "--json"]));
    assert_eq!(ring["nodes"].as_array().map(Vec::len), Some(5), "{ring}");

    let put = |key: &str| {
        containers.norn(&[
            "put",
            "-w",
            "2",
            "containers",
            key,
            &format!("value of {key}"),
        ]);
    };
    let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    for key in &keys[..15] {
        put(key);
    }
    containers.must(&["kill", "3"]);
    containers.wait_until(
        "n1 sees n3 down",
        Duration::from_secs(60),
        || containers.sees_up("n1:7000", "n3") == Some(false),
        String::new,
    );
    for key in &keys[15..] {
        put(key);
    }
    containers.must(&["start", "3"]);
    containers.wait_until(
        "n1 sees n3 up again",
        Duration::from_secs(60),
        || containers.sees_up("n1:7000", "n3") == Some(true),
        String::new,
    );
    for key in &keys {
        // A write tried again after a failed attempt may have added a
        // sibling of the same value.
        let value = containers.norn(&["get", "-r", "2", "containers", key]);
        assert!(
            value.lines().any(|line| line == format!("value of {key}")),
            "{key}: {value}"
        );
    }

    // Scale down by n5. First every key is made whole on its primaries
    // (a W=2 write leaves a third copy to arrive later, and one that timed
    // out on this loaded machine waits for anti-entropy): hints delivered,
    // a repair run, every key on its three primaries. Then n5 leaves with
    // --wait and its container and volume are removed, and every key must
    // still be on its three primaries: the leave lost no copy.
    let last_status = std::cell::RefCell::new(String::new());
    containers.wait_until(
        "every hint is delivered and every fallback copy handed off",
        Duration::from_secs(180),
        || {
            let status = containers.script(&["norn", "admin", "status", "--json"]);
            *last_status.borrow_mut() = format!(
                "{}{}",
                String::from_utf8_lossy(&status.stdout),
                String::from_utf8_lossy(&status.stderr)
            );
            serde_json::from_slice::<serde_json::Value>(&status.stdout).is_ok_and(|rows| {
                rows.as_array().is_some_and(|rows| {
                    rows.len() == 5
                        && rows.iter().all(|r| {
                            r["status"]["hints_pending"] == 0
                                && r["status"]["handoffs_pending"] == 0
                        })
                })
            })
        },
        || last_status.borrow().clone(),
    );
    containers.norn(&["admin", "repair"]);
    let mut replicas = vec!["admin", "replicas", "containers", "--json"];
    replicas.extend(keys.iter().map(String::as_str));
    let all_complete = |when: &str| {
        let mut args = vec!["norn"];
        args.extend_from_slice(&replicas);
        let output = containers.script(&args);
        let text = String::from_utf8_lossy(&output.stdout);
        let placed: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "{when}: norn admin replicas: {e}: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        let placed = placed.as_array().expect("one report per key");
        assert_eq!(placed.len(), keys.len(), "{when}");
        for report in placed {
            assert_eq!(report["complete"], true, "{when}: {report}");
        }
    };
    all_complete("before the leave");
    containers.must(&["leave", "5"]);
    let ring = json(&containers.norn(&["admin", "ring", "--json"]));
    assert_eq!(ring["nodes"].as_array().map(Vec::len), Some(4), "{ring}");
    all_complete("after the leave");
}
