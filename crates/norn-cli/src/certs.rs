//! `norn certs`: the cluster CA and the certificates it signs.

use std::path::Path;

use anyhow::Context;
use norn_net::certs::{self, Issued, Validity};
use norn_proto::ClientRole;
use norn_ring::NodeId;

fn read_ca(dir: &Path) -> anyhow::Result<Issued> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (run `norn certs init --dir {}` first)",
                path.display(),
                dir.display()
            )
        })
    };
    Ok(Issued {
        cert_pem: read("ca.pem")?,
        key_pem: read("ca.key")?,
    })
}

fn write_pair(dir: &Path, name: &str, issued: &Issued) -> anyhow::Result<()> {
    certs::write_pem(&dir.join(format!("{name}.pem")), &issued.cert_pem, false)?;
    certs::write_pem(&dir.join(format!("{name}.key")), &issued.key_pem, true)?;
    Ok(())
}

/// Names may hold `[A-Za-z0-9._-]`, 1..=64 bytes: they become file names.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    anyhow::ensure!(ok, "name {name:?} must be 1..=64 of [A-Za-z0-9._-]");
    anyhow::ensure!(name != "ca", "\"ca\" is the CA's own file name");
    Ok(())
}

/// `norn certs init --dir DIR`: a new cluster CA in `DIR/ca.pem` and
/// `DIR/ca.key` (mode 0600), valid `days`; DIR is created with mode 0700.
pub fn init(dir: &Path, cluster: &str, days: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    anyhow::ensure!(
        !dir.join("ca.pem").exists(),
        "{} already holds a CA",
        dir.display()
    );
    let validity = Validity::days_from_now(days);
    write_pair(dir, "ca", &certs::new_ca_valid(cluster, validity)?)?;
    println!(
        "cluster CA written to {}/ca.pem (key: ca.key, mode 0600)",
        dir.display()
    );
    Ok(())
}

/// `norn certs node NAME [--id ID]`: a node certificate for node `id`
/// (renewing an existing node's), else for a new random node id, valid
/// `days`.
pub fn node(dir: &Path, name: &str, id: Option<NodeId>, days: u32) -> anyhow::Result<NodeId> {
    check_name(name)?;
    let id = id.unwrap_or_else(|| NodeId(rand::random()));
    let validity = Validity::days_from_now(days);
    let issued = certs::issue_node_valid(&read_ca(dir)?, name, id, validity)?;
    write_pair(dir, name, &issued)?;
    println!(
        "node {name} (id {id}) written to {}/{name}.pem and {name}.key",
        dir.display()
    );
    Ok(id)
}

/// `norn certs client NAME --role ROLE`: a client certificate, valid
/// `days`.
pub fn client(dir: &Path, name: &str, role: ClientRole, days: u32) -> anyhow::Result<()> {
    check_name(name)?;
    let validity = Validity::days_from_now(days);
    let issued = certs::issue_client_valid(&read_ca(dir)?, name, role, validity)?;
    write_pair(dir, name, &issued)?;
    println!(
        "{role} client {name} written to {}/{name}.pem and {name}.key",
        dir.display()
    );
    Ok(())
}

/// `norn certs fingerprint CERT`: prints the certificate's SHA-256.
pub fn fingerprint(cert: &Path) -> anyhow::Result<()> {
    println!("{}", norn_trust::fingerprint_hex(&fingerprint_of(cert)?));
    Ok(())
}

/// The fingerprint of the certificate in the PEM file at `cert`.
pub fn fingerprint_of(cert: &Path) -> anyhow::Result<norn_ring::CertificateFingerprint> {
    let pem =
        std::fs::read_to_string(cert).with_context(|| format!("reading {}", cert.display()))?;
    norn_trust::fingerprint_of_pem(&pem)
        .with_context(|| format!("{} holds no PEM certificate", cert.display()))
}
