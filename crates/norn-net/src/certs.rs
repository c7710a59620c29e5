//! The cluster CA and the certificates it signs.
//!
//! Every node certificate carries the DNS name [`NODE_SERVER_NAME`] (what
//! peers verify when they connect) and the URI `urn:norn:node:<id>`, which is
//! the node's identity: a node takes its id from its own certificate, and
//! peers take it from the certificate they verified. A client certificate
//! carries `urn:norn:client:<role>:<name>` instead, where the role is `data`
//! (reads and writes) or `admin` (also ring changes, repair, inspection);
//! a client certificate without a role names no identity and is refused.
//! Keys are ECDSA P-256.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use norn_ring::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::error::NetError;
use crate::tls::{ClientRole, PeerIdentity};

/// The server name every node certificate holds and every connection asks for.
pub const NODE_SERVER_NAME: &str = "node.norn";

/// Days a node or client certificate is valid unless asked otherwise.
pub const LEAF_VALIDITY_DAYS: u32 = 365;
/// Days a cluster CA is valid unless asked otherwise.
pub const CA_VALIDITY_DAYS: u32 = 3650;

/// When a certificate is valid: from `not_before` to `not_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From an hour ago (for clocks slightly behind) to `days` from now.
    pub fn days_from_now(days: u32) -> Validity {
        let now = SystemTime::now();
        Validity {
            not_before: now - Duration::from_secs(3600),
            not_after: now + Duration::from_secs(u64::from(days) * 86_400),
        }
    }

    fn apply(&self, params: &mut CertificateParams) -> Result<(), NetError> {
        params.not_before = offset(self.not_before)?;
        params.not_after = offset(self.not_after)?;
        Ok(())
    }
}

fn offset(at: SystemTime) -> Result<time::OffsetDateTime, NetError> {
    let seconds = match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).map_err(cert_error)?,
        Err(before) => -i64::try_from(before.duration().as_secs()).map_err(cert_error)?,
    };
    time::OffsetDateTime::from_unix_timestamp(seconds).map_err(cert_error)
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The URI SAN naming node `id`.
pub fn node_uri(id: NodeId) -> String {
    format!("{}{id}", norn_proto::role::NODE_URI_PREFIX)
}

/// The URI SAN naming client `name` in `role`.
pub fn client_uri(name: &str, role: ClientRole) -> String {
    format!("{}{role}:{name}", norn_proto::role::CLIENT_URI_PREFIX)
}

/// Parses a URI SAN back into what it names.
pub fn parse_identity_uri(uri: &str) -> Option<PeerIdentity> {
    if uri.starts_with(norn_proto::role::NODE_URI_PREFIX) {
        return norn_proto::role::node_from_uri(uri).map(PeerIdentity::Node);
    }
    let (role, name) = norn_proto::role::client_from_uri(uri)?;
    Some(PeerIdentity::Client {
        name: name.to_string(),
        role,
    })
}

fn cert_error(e: impl std::fmt::Display) -> NetError {
    NetError::Certificate {
        reason: e.to_string(),
    }
}

fn ia5(s: &str) -> Result<rcgen::Ia5String, NetError> {
    rcgen::Ia5String::try_from(s.to_string()).map_err(cert_error)
}

/// A new cluster CA named `cluster`, valid [`CA_VALIDITY_DAYS`].
pub fn new_ca(cluster: &str) -> Result<Issued, NetError> {
    new_ca_valid(cluster, Validity::days_from_now(CA_VALIDITY_DAYS))
}

/// A new cluster CA named `cluster`, valid as `validity` says.
pub fn new_ca_valid(cluster: &str, validity: Validity) -> Result<Issued, NetError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    validity.apply(&mut params)?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("norn cluster CA {cluster}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().map_err(cert_error)?;
    let cert = params.self_signed(&key).map_err(cert_error)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A node certificate for `name` with identity `id`, signed by `ca`, valid
/// [`LEAF_VALIDITY_DAYS`].
pub fn issue_node(ca: &Issued, name: &str, id: NodeId) -> Result<Issued, NetError> {
    issue_node_valid(ca, name, id, Validity::days_from_now(LEAF_VALIDITY_DAYS))
}

/// [`issue_node`], valid as `validity` says.
pub fn issue_node_valid(
    ca: &Issued,
    name: &str,
    id: NodeId,
    validity: Validity,
) -> Result<Issued, NetError> {
    let mut params =
        CertificateParams::new(vec![NODE_SERVER_NAME.to_string()]).map_err(cert_error)?;
    params
        .subject_alt_names
        .push(SanType::URI(ia5(&node_uri(id))?));
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    validity.apply(&mut params)?;
    sign(ca, params)
}

/// A client certificate for `name` in `role`, signed by `ca`, valid
/// [`LEAF_VALIDITY_DAYS`].
pub fn issue_client(ca: &Issued, name: &str, role: ClientRole) -> Result<Issued, NetError> {
    issue_client_valid(ca, name, role, Validity::days_from_now(LEAF_VALIDITY_DAYS))
}

/// [`issue_client`], valid as `validity` says.
pub fn issue_client_valid(
    ca: &Issued,
    name: &str,
    role: ClientRole,
    validity: Validity,
) -> Result<Issued, NetError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    params
        .subject_alt_names
        .push(SanType::URI(ia5(&client_uri(name, role))?));
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity.apply(&mut params)?;
    sign(ca, params)
}

fn sign(ca: &Issued, mut params: CertificateParams) -> Result<Issued, NetError> {
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(cert_error)?;
    let ca_cert = CertificateParams::from_ca_cert_pem(&ca.cert_pem)
        .map_err(cert_error)?
        .self_signed(&ca_key)
        .map_err(cert_error)?;
    let key = KeyPair::generate().map_err(cert_error)?;
    let cert = params
        .signed_by(&key, &ca_cert, &ca_key)
        .map_err(cert_error)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes a PEM file; private keys get mode 0600 from the start (never a
/// moment readable by others). Refuses to overwrite an existing file.
pub fn write_pem(path: &Path, contents: &str, private: bool) -> Result<(), NetError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file_error = |e: std::io::Error| NetError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut options = std::fs::OpenOptions::new();
    options
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 });
    let mut file = options.open(path).map_err(file_error)?;
    file.write_all(contents.as_bytes()).map_err(file_error)?;
    file.sync_all().map_err(file_error)
}
