//! TLS material and identities: mutual TLS 1.3 against the cluster CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use norn_ring::NodeId;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

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

/// Refuses a private key that group or others can read.
pub fn check_private_key_mode(path: &Path) -> Result<(), NetError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| file_error(path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
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

    /// When this material's own certificate stops being valid.
    pub fn own_not_after(&self) -> Result<std::time::SystemTime, NetError> {
        let (chain, _) = self.own()?;
        let (_, cert) = x509_parser::parse_x509_certificate(chain[0].as_ref())
            .map_err(|e| tls_error(format!("own certificate: {e}")))?;
        let seconds = cert.validity().not_after.timestamp();
        let since_epoch = std::time::Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
        Ok(std::time::UNIX_EPOCH + since_epoch)
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, NetError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).map_err(tls_error)?;
        Ok(Arc::new(roots))
    }

    /// TLS for accepting: a client certificate chaining to the CA is required.
    pub fn server_crypto(&self) -> Result<rustls::ServerConfig, NetError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone())
            .build()
            .map_err(tls_error)?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.own()?.0.clone(), self.own()?.1.clone_key())
            .map_err(tls_error)?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// TLS for connecting: the server must chain to the CA and present the
    /// node server name; this side presents its own certificate.
    pub fn client_crypto(&self) -> Result<rustls::ClientConfig, NetError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .with_root_certificates(self.roots()?);
        let mut config = match &self.own {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(tls_error)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
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
    identity_from_certificate(leaf).ok_or_else(|| refused("certificate names no norn identity"))
}
