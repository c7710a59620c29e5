//! Why a node cannot start or serve.

/// Start-up and service errors of a node. Each says what to fix; none
/// leaves anything half-written (identity and ring writes are single
/// fsynced records).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("config {path}: {reason}")]
    Config { path: String, reason: String },
    #[error(transparent)]
    Net(#[from] norn_net::NetError),
    #[error(transparent)]
    Storage(#[from] norn_storage::StorageError),
    #[error(transparent)]
    Core(#[from] norn_core::CoreError),
    #[error(transparent)]
    Trust(#[from] norn_trust::TrustError),
    #[error("certificate names {found}, not a node: issue one with `norn certs node NAME`")]
    NotANodeCertificate { found: String },
    #[error("the node certificate {path} expired {days_ago} days ago: issue a new one (norn certs node)")]
    CertificateExpired { path: String, days_ago: u64 },
    #[error("data directory {dir} belongs to node {stored}, but the certificate names node {certificate}")]
    WrongDataDirectory {
        dir: String,
        stored: String,
        certificate: String,
    },
    #[error("stored {what} is unreadable: {reason}")]
    Meta { what: &'static str, reason: String },
    #[error("I/O error on {path}: {reason}")]
    Io { path: String, reason: String },
}
