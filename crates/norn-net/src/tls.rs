//! TLS material and identities: mutual TLS 1.3 against the cluster CA.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use norn_ring::{CertificateFingerprint, NodeId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

pub use norn_proto::ClientRole;

use crate::certs::parse_identity_uri;
use crate::error::NetError;

/// The one application protocol norn speaks.
pub const ALPN: &[u8] = b"norn/1";

/// Where a node's or client's PEM files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Who is at the other end of a verified connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    Node(NodeId),
    Client { name: String, role: ClientRole },
}

impl std::fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerIdentity::Node(id) => write!(f, "node {id}"),
            PeerIdentity::Client { name, role } => write!(f, "{role} client {name}"),
        }
    }
}

/// Certificates refused at every handshake, by fingerprint: shared by an
/// endpoint's verifiers, replaced whole when the ring's list changes.
#[derive(Debug, Clone, Default)]
pub struct Revoked {
    set: Arc<RwLock<HashSet<CertificateFingerprint>>>,
    /// Revoked certificates whose refusal was logged (a revoked peer
    /// retries every gossip round: one line each, not one per attempt).
    logged: Arc<std::sync::Mutex<HashSet<CertificateFingerprint>>>,
}

/// Distinct revoked certificates whose refusal is logged.
const REVOKED_REFUSALS_LOGGED: usize = 4096;

impl Revoked {
    /// Whether the certificate `der` is revoked; logs the first refusal of
    /// each, with the identity it names.
    fn refuses(&self, der: &CertificateDer<'_>) -> bool {
        let fingerprint = norn_trust::fingerprint(der.as_ref());
        if !self.covers_fingerprint(&fingerprint) {
            return false;
        }
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.len() < REVOKED_REFUSALS_LOGGED && logged.insert(fingerprint) {
            let identity = identity_from_certificate(der)
                .map_or_else(|| "no norn identity".to_string(), |i| i.to_string());
            tracing::warn!(%identity, fingerprint = %norn_trust::fingerprint_hex(&fingerprint), "refused a revoked certificate at the handshake");
        }
        true
    }

    pub fn covers_fingerprint(&self, fingerprint: &CertificateFingerprint) -> bool {
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        set.contains(fingerprint)
    }

    /// Makes `certificates` the revoked set.
    pub fn replace(&self, certificates: &BTreeSet<CertificateFingerprint>) {
        let mut set = self.set.write().unwrap_or_else(|p| p.into_inner());
        *set = certificates.iter().copied().collect();
    }
}

fn revoked_error() -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
}

/// The CA's client verification, refusing revoked certificates first.
#[derive(Debug)]
struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: Revoked,
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.revoked.refuses(end_entity) {
            return Err(revoked_error());
        }
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The CA's server verification, refusing revoked certificates first.
#[derive(Debug)]
struct ServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    revoked: Revoked,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.revoked.refuses(end_entity) {
            return Err(revoked_error());
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Loaded certificates and key. Anonymous material (no certificate of its
/// own) can only connect, and nodes refuse it: it exists so that tests and
/// probes can show that refusal.
#[derive(Debug)]
pub struct TlsMaterial {
    ca: CertificateDer<'static>,
    own: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> NetError {
    NetError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn tls_error(reason: impl std::fmt::Display) -> NetError {
    NetError::Tls {
        reason: reason.to_string(),
    }
}

/// Whether a private key file of `mode`, owned by `owner`, is private
/// enough: no access for others, nor for the group, except reading when
/// root owns the file (PostgreSQL's rule: a key root owns and shares with
/// the service's group, such as a Kubernetes Secret mounted with an
/// `fsGroup`, mode 0440).
pub fn private_key_mode_ok(mode: u32, owner: u32) -> bool {
    mode & 0o077 == 0 || (owner == 0 && mode & 0o037 == 0)
}

/// Refuses a private key that others can read (see
/// [`private_key_mode_ok`]).
pub fn check_private_key_mode(path: &Path) -> Result<(), NetError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let metadata = std::fs::metadata(path).map_err(|e| file_error(path, e))?;
    let mode = metadata.permissions().mode();
    if !private_key_mode_ok(mode, metadata.uid()) {
        return Err(NetError::KeyPermissions {
            path: path.display().to_string(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

impl TlsMaterial {
    /// Loads the files; refuses a private key that others can read.
    pub fn load(files: &TlsFiles) -> Result<TlsMaterial, NetError> {
        check_private_key_mode(&files.key)?;
        let ca = CertificateDer::from_pem_file(&files.ca_cert)
            .map_err(|e| file_error(&files.ca_cert, e))?;
        let chain = CertificateDer::pem_file_iter(&files.cert)
            .map_err(|e| file_error(&files.cert, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error(&files.cert, e))?;
        if chain.is_empty() {
            return Err(file_error(&files.cert, "no certificate in file"));
        }
        let key =
            PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_error(&files.key, e))?;
        Ok(TlsMaterial {
            ca,
            own: Some((chain, key)),
        })
    }

    /// Material that trusts the CA at `ca_cert` but presents no certificate.
    pub fn anonymous(ca_cert: &Path) -> Result<TlsMaterial, NetError> {
        let ca = CertificateDer::from_pem_file(ca_cert).map_err(|e| file_error(ca_cert, e))?;
        Ok(TlsMaterial { ca, own: None })
    }

    fn own(&self) -> Result<&(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), NetError> {
        self.own
            .as_ref()
            .ok_or_else(|| tls_error("no certificate of its own"))
    }

    /// A secret that stays the same across restarts of its holder (derived
    /// from its private key), to key QUIC stateless resets: a restarted node
    /// can then reset the connections its previous process held, and peers
    /// redial at once instead of waiting out an idle timeout.
    pub fn reset_secret(&self) -> Option<[u8; 32]> {
        let (_, key) = self.own.as_ref()?;
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(b"norn stateless reset key v1");
        context.update(key.secret_der());
        context.finish().as_ref().try_into().ok()
    }

    /// The identity this material's own certificate names.
    pub fn own_identity(&self) -> Result<PeerIdentity, NetError> {
        let (chain, _) = self.own()?;
        identity_from_certificate(&chain[0])
            .ok_or_else(|| tls_error("own certificate names no norn identity"))
    }

    /// The CA certificate this material trusts (DER).
    pub fn ca_der(&self) -> &[u8] {
        self.ca.as_ref()
    }

    /// When this material's own certificate stops being valid.
    pub fn own_not_after(&self) -> Result<std::time::SystemTime, NetError> {
        let (chain, _) = self.own()?;
        not_after(&chain[0]).map_err(|e| tls_error(format!("own certificate: {e}")))
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, NetError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).map_err(tls_error)?;
        Ok(Arc::new(roots))
    }

    /// TLS for accepting: a client certificate chaining to the CA, and not
    /// `revoked`, is required.
    pub fn server_crypto(&self, revoked: &Revoked) -> Result<rustls::ServerConfig, NetError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone())
            .build()
            .map_err(tls_error)?;
        let verifier = Arc::new(ClientVerifier {
            inner,
            revoked: revoked.clone(),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.own()?.0.clone(), self.own()?.1.clone_key())
            .map_err(tls_error)?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        // Every handshake checks the peer's certificate (a resumed session
        // would skip it, and with it the revoked list).
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(config)
    }

    /// TLS for connecting: the server must chain to the CA, present the
    /// node server name and not be `revoked`; this side presents its own
    /// certificate.
    pub fn client_crypto(&self, revoked: &Revoked) -> Result<rustls::ClientConfig, NetError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = WebPkiServerVerifier::builder_with_provider(self.roots()?, provider.clone())
            .build()
            .map_err(tls_error)?;
        let verifier = Arc::new(ServerVerifier {
            inner,
            revoked: revoked.clone(),
        });
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &self.own {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(tls_error)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN.to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        Ok(config)
    }
}

/// When a certificate stops being valid.
fn not_after(der: &CertificateDer<'_>) -> Result<std::time::SystemTime, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    let seconds = cert.validity().not_after.timestamp();
    let since_epoch = std::time::Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    Ok(std::time::UNIX_EPOCH + since_epoch)
}

/// When the certificate the peer of an established connection presented
/// stops being valid.
pub fn peer_not_after(connection: &quinn::Connection) -> Result<std::time::SystemTime, NetError> {
    let addr = connection.remote_address();
    let certs = connection
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or_else(|| NetError::PeerIdentity {
            addr,
            reason: "no certificate".into(),
        })?;
    let leaf = certs.first().ok_or_else(|| NetError::PeerIdentity {
        addr,
        reason: "empty certificate chain".into(),
    })?;
    not_after(leaf).map_err(|reason| NetError::PeerIdentity { addr, reason })
}

/// The identity a certificate names in its URI SAN, if any.
pub fn identity_from_certificate(der: &CertificateDer<'_>) -> Option<PeerIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let sans = cert.subject_alternative_name().ok()??;
    sans.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => parse_identity_uri(uri),
        _ => None,
    })
}

/// The verified identity of the peer of an established connection.
pub fn peer_identity(connection: &quinn::Connection) -> Result<PeerIdentity, NetError> {
    peer_certificate(connection).map(|(identity, _)| identity)
}

/// The verified identity of the peer of an established connection, and
/// the fingerprint of the certificate that names it.
pub fn peer_certificate(
    connection: &quinn::Connection,
) -> Result<(PeerIdentity, CertificateFingerprint), NetError> {
    let addr = connection.remote_address();
    let refused = |reason: &str| NetError::PeerIdentity {
        addr,
        reason: reason.to_string(),
    };
    let certs = connection
        .peer_identity()
        .ok_or_else(|| refused("no certificate"))?
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| refused("unexpected certificate type"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| refused("empty certificate chain"))?;
    let identity = identity_from_certificate(leaf)
        .ok_or_else(|| refused("certificate names no norn identity"))?;
    Ok((identity, norn_trust::fingerprint(leaf.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::private_key_mode_ok;

    #[test]
    fn a_key_is_private_to_its_owner_or_shared_read_only_with_roots_group() {
        assert!(private_key_mode_ok(0o100600, 10001));
        assert!(private_key_mode_ok(0o100400, 0));
        assert!(private_key_mode_ok(0o100440, 0));
        assert!(private_key_mode_ok(0o100640, 0));
        assert!(
            !private_key_mode_ok(0o100640, 10001),
            "group of a non-root owner"
        );
        assert!(!private_key_mode_ok(0o100660, 0), "group may write");
        assert!(!private_key_mode_ok(0o100644, 0), "others may read");
        assert!(!private_key_mode_ok(0o100604, 10001));
    }
}
