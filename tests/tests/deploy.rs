//! What deploy/ ships. The Kubernetes manifests (deploy/kubernetes):
//! rendered as `kubectl
//! apply -k` would and validated against Kubernetes' schemas offline
//! (tools/k8s-render.py, kubernetes-validate), then inspected: the ports,
//! names and paths the StatefulSet, Services and autopilot use agree with
//! the config they mount, the Secrets tools/k8s-secrets.sh writes hold the
//! files the configs name, the security settings are the hardened ones,
//! and a real nornd started from the ConfigMap's config (addresses and
//! paths moved to the test's) answers the probes' paths without the
//! bearer token and `/metrics` with it. The systemd unit
//! (deploy/systemd): `systemd-analyze verify` finds nothing wrong with it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use norn_tests::cluster::{bin_dir, repository};
use norn_tests::http::curl;
use serde_json::Value;

/// The Kubernetes version the manifests are validated for.
const KUBERNETES_VERSION: &str = "1.31";

fn run(command: &mut Command) -> String {
    let output = command.output().expect("runs");
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The rendered objects, by kind and name.
struct Manifests {
    objects: BTreeMap<(String, String), Value>,
}

impl Manifests {
    fn get(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .get(&(kind.to_string(), name.to_string()))
            .unwrap_or_else(|| panic!("no {kind}/{name} among {:?}", self.objects.keys()))
    }
}

/// The container port named `name`: its number and protocol.
fn port(container: &Value, name: &str) -> (u64, String) {
    let port = container["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no port {name} in {container}"));
    (
        port["containerPort"].as_u64().expect("a number"),
        port["protocol"].as_str().unwrap_or("TCP").to_string(),
    )
}

/// The mount path of the volume named `name`.
fn mount(container: &Value, name: &str) -> String {
    container["volumeMounts"]
        .as_array()
        .and_then(|mounts| mounts.iter().find(|m| m["name"] == name))
        .and_then(|m| m["mountPath"].as_str())
        .unwrap_or_else(|| panic!("no mount of {name} in {container}"))
        .to_string()
}

/// The keys of the Secret named `name` in the rendered Secrets.
fn secret_keys(manifests: &Manifests, name: &str) -> Vec<String> {
    let secret = manifests.get("Secret", name);
    let mut keys = Vec::new();
    for field in ["data", "stringData"] {
        if let Some(data) = secret[field].as_object() {
            keys.extend(data.keys().cloned());
        }
    }
    keys
}

/// Every path of `paths` is a file right in `dir` (a Secret's mount) that
/// the Secret `secret`, holding `files`, holds.
fn assert_files_in<'a>(
    paths: impl IntoIterator<Item = &'a PathBuf>,
    dir: &Path,
    files: &[String],
    secret: &str,
) {
    for path in paths {
        assert_eq!(path.parent(), Some(dir), "{}", path.display());
        let file = path
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .to_string();
        assert!(files.contains(&file), "{secret} holds no {file}");
    }
}

/// The hardened settings every container runs with: a non-root user (the
/// image's), no privilege escalation, no capabilities, a read-only root.
fn assert_hardened(pod: &Value, container: &Value) {
    let what = container["name"].clone();
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
    assert_eq!(pod["securityContext"]["runAsUser"], 10001, "{what}");
    assert_eq!(pod["securityContext"]["fsGroup"], 10001, "{what}");
    assert_eq!(pod["automountServiceAccountToken"], false, "{what}");
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false, "{what}");
    assert_eq!(security["readOnlyRootFilesystem"], true, "{what}");
    assert_eq!(
        security["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "{what}"
    );
}

/// A nornd process, killed by its pid and reaped on drop.
struct Nornd(Child);

impl Drop for Nornd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Replaces `from` by `to` in `text`, which must hold it.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the config has no {from:?}");
    text.replace(from, to)
}

#[test]
fn the_kubernetes_manifests_validate_and_agree_with_the_config_and_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("secrets");
    run(Command::new(repository().join("tools/k8s-secrets.sh"))
        .arg(&out)
        .arg("3")
        .env("NORN_BIN", bin_dir().join("norn")));
    let rendered = run(Command::new("python3")
        .current_dir(repository())
        .arg("tools/k8s-render.py")
        .args(["--validate", KUBERNETES_VERSION, "--also"])
        .arg(out.join("secrets.yaml")));
    let objects: Vec<Value> = serde_json::from_str(&rendered).expect("JSON");
    let manifests = Manifests {
        objects: objects
            .into_iter()
            .map(|o| {
                let key = (
                    o["kind"].as_str().expect("kind").to_string(),
                    o["metadata"]["name"].as_str().expect("name").to_string(),
                );
                (key, o)
            })
            .collect(),
    };

    let statefulset = manifests.get("StatefulSet", "norn");
    let spec = &statefulset["spec"];
    let pod = &spec["template"]["spec"];
    let nornd = &pod["containers"][0];
    let pod_labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(spec["podManagementPolicy"], "Parallel");
    assert_eq!(
        spec["persistentVolumeClaimRetentionPolicy"]["whenScaled"],
        "Retain"
    );
    assert_hardened(pod, nornd);
    let zones = pod["topologySpreadConstraints"]
        .as_array()
        .expect("topology spread");
    assert!(zones
        .iter()
        .any(|c| c["topologyKey"] == "topology.kubernetes.io/zone"));

    // The config every pod mounts, filled as pod norn-0's environment fills it.
    let configmap = manifests.get("ConfigMap", "norn-config");
    let text = configmap["data"]["nornd.toml"]
        .as_str()
        .expect("nornd.toml");
    let env = |name: &str| match name {
        "POD_NAME" => Some("norn-0".to_string()),
        "POD_NAMESPACE" => Some("norn".to_string()),
        "NORN_HTTP_TOKEN" => Some("probe-token-0123456789".to_string()),
        _ => None,
    };
    let config = norn_node::config::parse_expanded(text, env).expect("the ConfigMap's nornd.toml");
    let env_names: Vec<&str> = nornd["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    for name in ["POD_NAME", "POD_NAMESPACE", "NORN_ZONE", "NORN_HTTP_TOKEN"] {
        assert!(env_names.contains(&name), "{name} is not set in the pod");
    }
    config
        .validate()
        .expect("the ConfigMap's nornd.toml is valid");
    assert!(config.cluster.auto_join, "nodes join by themselves");

    let (quic, quic_protocol) = port(nornd, "quic");
    let (http, http_protocol) = port(nornd, "http");
    assert_eq!(
        (quic, quic_protocol.as_str()),
        (u64::from(config.node.listen.port()), "UDP")
    );
    assert_eq!(
        (http, http_protocol.as_str()),
        (u64::from(config.http.listen.port()), "TCP")
    );
    let headless = spec["serviceName"].as_str().expect("serviceName");
    assert_eq!(
        config.node.advertise.as_deref(),
        Some(format!("norn-0.{headless}.norn.svc:{quic}").as_str()),
        "a pod advertises its stable name under the headless Service"
    );
    assert_eq!(config.node.seed_names, vec![format!("{headless}:{quic}")]);
    assert!(
        config.node.data_dir.starts_with(mount(nornd, "data")),
        "the data directory is on the volume"
    );
    assert_ne!(
        Path::new(&mount(nornd, "data")),
        config.node.data_dir,
        "nornd makes its data directory private (0700), which it cannot do to a volume's root under fsGroup"
    );
    assert!(spec["volumeClaimTemplates"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["metadata"]["name"] == "data")));
    let tls_dir = PathBuf::from(mount(nornd, "tls"));
    let tls_secret = pod["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "tls"))
        .expect("the tls volume");
    assert_eq!(tls_secret["secret"]["defaultMode"], 0o440);
    let node_files = secret_keys(
        &manifests,
        tls_secret["secret"]["secretName"].as_str().expect("name"),
    );
    assert_files_in(
        [&config.tls.ca_cert, &config.tls.cert, &config.tls.key],
        &tls_dir,
        &node_files,
        "norn-tls",
    );

    let peers = &manifests.get("Service", headless)["spec"];
    assert_eq!(peers["clusterIP"], "None");
    assert_eq!(
        peers["publishNotReadyAddresses"], true,
        "peers find each other before they are ready"
    );
    let client = &manifests.get("Service", "norn")["spec"];
    for service in [peers, client] {
        for (key, value) in service["selector"].as_object().expect("selector") {
            assert_eq!(&pod_labels[key], value, "the Services select the pods");
        }
        for p in service["ports"].as_array().expect("ports") {
            let target = p["targetPort"].as_str().expect("a named target port");
            assert_eq!(
                port(nornd, target).1,
                p["protocol"].as_str().unwrap_or("TCP")
            );
        }
    }
    let pdb = &manifests.get("PodDisruptionBudget", "norn")["spec"];
    assert_eq!(pdb["maxUnavailable"], 1);
    for (key, value) in pdb["selector"]["matchLabels"]
        .as_object()
        .expect("selector")
    {
        assert_eq!(&pod_labels[key], value, "the PDB covers the pods");
    }
    let token = nornd["env"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["name"] == "NORN_HTTP_TOKEN"))
        .map(|e| &e["valueFrom"]["secretKeyRef"])
        .expect("the token's source");
    assert!(
        secret_keys(&manifests, token["name"].as_str().expect("name"))
            .contains(&token["key"].as_str().expect("key").to_string())
    );

    // The autopilot: the admin certificate where its client config looks.
    let autopilot = manifests.get("Deployment", "norn-autopilot");
    let autopilot_pod = &autopilot["spec"]["template"]["spec"];
    let container = &autopilot_pod["containers"][0];
    assert_hardened(autopilot_pod, container);
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let min_nodes = args
        .iter()
        .position(|a| *a == "--min-nodes")
        .map(|i| args[i + 1].parse::<u64>().expect("a number"))
        .expect("--min-nodes");
    assert_eq!(
        Some(min_nodes),
        spec["replicas"].as_u64(),
        "the first ring waits for every first pod"
    );
    let client_path = dir.path().join("client.toml");
    std::fs::write(
        &client_path,
        configmap["data"]["client.toml"]
            .as_str()
            .expect("client.toml"),
    )
    .expect("client.toml");
    let client_options = norn_client::ClientOptions::from_config_file(&client_path)
        .expect("the autopilot's client config");
    assert_eq!(client_options.seeds, vec![format!("{headless}:{quic}")]);
    let admin_dir = PathBuf::from(mount(container, "admin"));
    let admin_files = secret_keys(&manifests, "norn-admin");
    let admin_tls = &client_options.tls;
    assert_files_in(
        [&admin_tls.ca_cert, &admin_tls.cert, &admin_tls.key],
        &admin_dir,
        &admin_files,
        "norn-admin",
    );

    // A ServiceMonitor-ready /metrics: the client Service's port, with the token.
    let monitor =
        std::fs::read_to_string(repository().join("deploy/kubernetes/servicemonitor.yaml"))
            .expect("servicemonitor.yaml");
    assert!(monitor.contains("port: http") && monitor.contains("path: /metrics"));
    assert!(client["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .any(|p| p["name"] == "http"));

    // The probes' paths on a real node started from this config.
    let data_dir = dir.path().join("data");
    let tls = out.join("tls");
    let mut text = replaced(
        text,
        "listen = \"0.0.0.0:7000\"",
        "listen = \"127.0.0.1:0\"",
    );
    text = replaced(
        &text,
        "listen = \"0.0.0.0:8080\"",
        "listen = \"127.0.0.1:0\"",
    );
    text = replaced(
        &text,
        "data_dir = \"/data/norn\"",
        &format!("data_dir = \"{}\"", data_dir.display()),
    );
    text = replaced(
        &text,
        &format!("\"{}/", tls_dir.display()),
        &format!("\"{}/", tls.display()),
    );
    let config_path = dir.path().join("nornd.toml");
    std::fs::write(&config_path, text).expect("config");
    let log = std::fs::File::create(dir.path().join("nornd.log")).expect("log");
    let _node = Nornd(
        Command::new(bin_dir().join("nornd"))
            .arg("--config")
            .arg(&config_path)
            .env("POD_NAME", "norn-0")
            .env("POD_NAMESPACE", "norn")
            .env("NORN_HTTP_TOKEN", "probe-token-0123456789")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nornd starts"),
    );
    let address_file = data_dir.join(norn_node::node::HTTP_ADDRESS_FILE);
    let deadline = Instant::now() + Duration::from_secs(30);
    let http_address = loop {
        if let Ok(text) = std::fs::read_to_string(&address_file) {
            if !text.trim().is_empty() {
                break text.trim().to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "nornd wrote no HTTP address: {}",
            std::fs::read_to_string(dir.path().join("nornd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let probe = |kind: &str| {
        let path = nornd[kind]["httpGet"]["path"].as_str().expect("a path");
        assert_eq!(nornd[kind]["httpGet"]["port"], "http");
        curl(&[&format!("http://{http_address}{path}")])
    };
    let (live, _, body) = probe("livenessProbe");
    assert_eq!(live, 200, "{body}");
    let (ready, _, body) = probe("readinessProbe");
    assert_eq!(ready, 503, "a node without a ring is not ready: {body}");
    assert!(body.contains("holds no ring yet"), "{body}");
    let metrics = format!("http://{http_address}/metrics");
    assert_eq!(curl(&[&metrics]).0, 401, "/metrics wants the token");
    let (status, _, body) = curl(&[
        "-H",
        "Authorization: Bearer probe-token-0123456789",
        &metrics,
    ]);
    assert_eq!(status, 200);
    assert!(body.contains("norn_ring_version"), "{body}");
}

#[test]
fn the_systemd_unit_verifies() {
    let found = Command::new("sh")
        .args(["-c", "command -v systemd-analyze"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = std::fs::read_to_string(repository().join("deploy/systemd/nornd.service"))
        .expect("the unit");
    // verify checks that ExecStart's binary exists: point it at the one built.
    let unit = replaced(
        &unit,
        "/usr/local/bin/nornd",
        &bin_dir().join("nornd").display().to_string(),
    );
    let path = dir.path().join("nornd.service");
    std::fs::write(&path, unit).expect("unit");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}
