//! Who may change the ring, and who may change a member's record.
//!
//! A node adopts a ring only if it carries a [`RingProof`]: the signature,
//! over the ring's whole content, of an admin client certificate that
//! chains to the cluster CA and that neither the ring nor the node's
//! current ring revokes. Any peer may relay a signed ring (rings spread by
//! gossip, and a node that joined late, lost its data or was restored from
//! a backup must still learn the newest one from whoever holds it), but no
//! node certificate can make one: a node's key proves only that it is a
//! node.
//!
//! A member's record (address, incarnation, state...) carries the member's
//! own signature ([`RecordProof`]), so a relay can carry a change of it to
//! nodes the member cannot reach, but cannot make one.
//!
//! Rings carry the revoked certificates (by SHA-256 of their DER), so a
//! revocation is committed like any ring change and reaches every node as
//! fast as a ring does.
//!
//! Signatures are checked against the certificate's validity at the time
//! they were made (`signed_at`), so a ring or a record outlives the
//! certificate that signed it; revocation is what withdraws one.

use std::collections::BTreeSet;

use norn_membership::{Member, RecordProof};
use norn_proto::ClientRole;
use norn_ring::{
    CertificateFingerprint, NodeId, Ring, RingProof, PROOF_CERTIFICATE_BYTES_MAX,
    PROOF_SIGNATURE_BYTES_MAX,
};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer, UnixTime};

/// What a ring signature covers besides the ring: a fixed tag, so that it
/// is never valid as any other message, and the signing time.
const RING_TAG: &[u8] = b"norn ring proof v1\0";
/// The same for a member record's signature.
const RECORD_TAG: &[u8] = b"norn member record v1\0";
/// How far a signature's time may be ahead of this node's clock.
pub const CLOCK_SKEW_SECS: u64 = 600;
/// How much older than the ring it replaces a ring's signature may be
/// (admins' clocks differ); an older one is refused, so a key whose
/// certificate has expired cannot sign a successor by backdating it past
/// the last commit.
pub const RING_SIGNED_AT_SLACK_SECS: u64 = 3600;

/// Why a ring or a record was refused, or a signer could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("it carries no signature")]
    Unsigned,
    #[error("its signer does not chain to the cluster CA: {reason}")]
    Untrusted { reason: String },
    #[error("a ring's signer is not an admin client certificate")]
    NotAdmin,
    #[error("a record's signer is not the certificate of the node it describes")]
    NotTheNode,
    #[error("its signer's certificate is revoked")]
    Revoked,
    #[error("its signature does not match its content")]
    BadSignature,
    #[error("it was signed at {signed_at}, outside the time accepted ({reason})")]
    SignedAt {
        signed_at: u64,
        reason: &'static str,
    },
    #[error("cannot sign: {reason}")]
    Signer { reason: String },
}

/// The SHA-256 digest of a certificate's DER encoding.
pub fn fingerprint(certificate_der: &[u8]) -> CertificateFingerprint {
    let digest = ring::digest::digest(&ring::digest::SHA256, certificate_der);
    let mut fingerprint = [0; 32];
    fingerprint.copy_from_slice(digest.as_ref());
    fingerprint
}

/// A fingerprint as 64 lowercase hex digits.
pub fn fingerprint_hex(fingerprint: &CertificateFingerprint) -> String {
    fingerprint.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits (either case) back into a fingerprint.
pub fn parse_fingerprint(hex: &str) -> Option<CertificateFingerprint> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut fingerprint = [0; 32];
    for (i, byte) in fingerprint.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(fingerprint)
}

/// The fingerprint of the first certificate in a PEM file's text.
pub fn fingerprint_of_pem(pem: &str) -> Option<CertificateFingerprint> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    Some(fingerprint(der.as_ref()))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn signed_message(tag: &[u8], signed_at: u64, content: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(tag.len() + 8 + content.len());
    message.extend_from_slice(tag);
    message.extend_from_slice(&signed_at.to_be_bytes());
    message.extend_from_slice(content);
    message
}

fn signer_error(reason: impl std::fmt::Display) -> TrustError {
    TrustError::Signer {
        reason: reason.to_string(),
    }
}

/// A certificate (DER) and its ECDSA P-256 key.
struct KeyPair {
    certificate: Vec<u8>,
    key: EcdsaKeyPair,
    random: SystemRandom,
}

impl KeyPair {
    /// From a certificate and its PKCS#8 key, both PEM, as `norn certs`
    /// writes them.
    fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<KeyPair, TrustError> {
        let certificate = CertificateDer::from_pem_slice(certificate_pem.as_bytes())
            .map_err(|e| signer_error(format!("certificate: {e}")))?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| signer_error(format!("key: {e}")))?;
        let random = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            key.secret_pkcs8_der(),
            &random,
        )
        .map_err(|e| signer_error(format!("key is not ECDSA P-256: {e}")))?;
        Ok(KeyPair {
            certificate: certificate.as_ref().to_vec(),
            key,
            random,
        })
    }

    fn sign(&self, tag: &[u8], signed_at: u64, content: &[u8]) -> Result<Vec<u8>, TrustError> {
        let signature = self
            .key
            .sign(&self.random, &signed_message(tag, signed_at, content))
            .map_err(|e| signer_error(format!("signing failed: {e}")))?;
        Ok(signature.as_ref().to_vec())
    }
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field(
                "certificate",
                &fingerprint_hex(&fingerprint(&self.certificate)),
            )
            .finish_non_exhaustive()
    }
}

/// An admin's key, to sign the rings it commits.
#[derive(Debug)]
pub struct RingSigner(KeyPair);

impl RingSigner {
    /// A signer from an admin certificate and its key, both PEM, as `norn
    /// certs client NAME --role admin` writes them.
    pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<RingSigner, TrustError> {
        let pair = KeyPair::from_pem(certificate_pem, key_pem)?;
        if admin_name(&pair.certificate).is_none() {
            return Err(TrustError::NotAdmin);
        }
        Ok(RingSigner(pair))
    }

    /// `ring` carrying this admin's signature, made at `signed_at` (seconds
    /// since the Unix epoch).
    pub fn sign(&self, ring: &Ring, signed_at: u64) -> Result<Ring, TrustError> {
        let signature = self.0.sign(RING_TAG, signed_at, &ring.signed_content())?;
        Ok(ring.with_proof(RingProof {
            signer: self.0.certificate.clone(),
            signed_at,
            signature,
        }))
    }

    /// [`RingSigner::sign`] at the current time.
    pub fn sign_now(&self, ring: &Ring) -> Result<Ring, TrustError> {
        self.sign(ring, now_secs())
    }
}

/// A node's key, to sign its own member record.
#[derive(Debug)]
pub struct RecordSigner {
    pair: KeyPair,
    node: NodeId,
}

impl RecordSigner {
    /// A signer from a node certificate and its key, both PEM, as `norn
    /// certs node` writes them.
    pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<RecordSigner, TrustError> {
        let pair = KeyPair::from_pem(certificate_pem, key_pem)?;
        let node = node_id(&pair.certificate).ok_or(TrustError::NotTheNode)?;
        Ok(RecordSigner { pair, node })
    }

    /// The node the certificate names.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The proof of `member` (this node's own record) as it is now, made
    /// at `signed_at` (seconds since the Unix epoch).
    pub fn sign(&self, member: &Member, signed_at: u64) -> Result<RecordProof, TrustError> {
        if member.id != self.node {
            return Err(TrustError::NotTheNode);
        }
        let signature = self
            .pair
            .sign(RECORD_TAG, signed_at, &member.signed_content())?;
        Ok(RecordProof {
            certificate: self.pair.certificate.clone(),
            signed_at,
            signature,
        })
    }

    /// [`RecordSigner::sign`] at the current time.
    pub fn sign_now(&self, member: &Member) -> Result<RecordProof, TrustError> {
        self.sign(member, now_secs())
    }
}

/// The norn URIs a certificate's subject alternative names hold.
fn identity_uris(certificate_der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(certificate_der) else {
        return Vec::new();
    };
    let Ok(Some(sans)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    sans.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect()
}

/// The admin name an admin client certificate names, if it is one.
fn admin_name(certificate_der: &[u8]) -> Option<String> {
    identity_uris(certificate_der).iter().find_map(|uri| {
        match norn_proto::role::client_from_uri(uri)? {
            (ClientRole::Admin, name) => Some(name.to_string()),
            (ClientRole::Data, _) => None,
        }
    })
}

/// The node a node certificate names, if it is one.
fn node_id(certificate_der: &[u8]) -> Option<NodeId> {
    identity_uris(certificate_der)
        .iter()
        .find_map(|uri| norn_proto::role::node_from_uri(uri))
}

/// The cluster CA, as a judge of signed rings and member records.
#[derive(Debug, Clone)]
pub struct Authority {
    ca: CertificateDer<'static>,
}

impl Authority {
    /// An authority trusting the CA certificate `ca_der` (DER).
    pub fn new(ca_der: Vec<u8>) -> Result<Authority, TrustError> {
        let ca = CertificateDer::from(ca_der);
        webpki::anchor_from_trusted_cert(&ca).map_err(|e| TrustError::Untrusted {
            reason: format!("the CA certificate: {e}"),
        })?;
        Ok(Authority { ca })
    }

    /// An authority trusting the CA certificate in PEM text.
    pub fn from_pem(ca_pem: &str) -> Result<Authority, TrustError> {
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| {
            TrustError::Untrusted {
                reason: format!("the CA certificate: {e}"),
            }
        })?;
        Authority::new(ca.as_ref().to_vec())
    }

    /// Checks that `signature` over `message` was made by `certificate`,
    /// which chains to the CA, was valid at `signed_at` and is not in
    /// either revoked list.
    fn check_signature(
        &self,
        certificate: &[u8],
        signed_at: u64,
        message: &[u8],
        signature: &[u8],
        revoked: &[&BTreeSet<CertificateFingerprint>],
    ) -> Result<(), TrustError> {
        if certificate.len() > PROOF_CERTIFICATE_BYTES_MAX
            || signature.len() > PROOF_SIGNATURE_BYTES_MAX
        {
            return Err(TrustError::Untrusted {
                reason: "proof too large".into(),
            });
        }
        if signed_at > now_secs().saturating_add(CLOCK_SKEW_SECS) {
            return Err(TrustError::SignedAt {
                signed_at,
                reason: "in the future",
            });
        }
        let signer_fingerprint = fingerprint(certificate);
        if revoked.iter().any(|set| set.contains(&signer_fingerprint)) {
            return Err(TrustError::Revoked);
        }
        let untrusted = |e: webpki::Error| TrustError::Untrusted {
            reason: e.to_string(),
        };
        let anchor = webpki::anchor_from_trusted_cert(&self.ca).map_err(untrusted)?;
        let signer_der = CertificateDer::from(certificate);
        let signer = webpki::EndEntityCert::try_from(&signer_der).map_err(untrusted)?;
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(signed_at));
        signer
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &[anchor],
                &[],
                at,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map_err(untrusted)?;
        // What the signers make: ECDSA P-256 with SHA-256.
        signer
            .verify_signature(webpki::ring::ECDSA_P256_SHA256, message, signature)
            .map_err(|_| TrustError::BadSignature)
    }

    /// Whether `ring` was signed by an admin whose certificate was valid
    /// when it signed and that neither `ring` nor `revoked` (the receiving
    /// node's current ring's list) revokes; on success, the admin's name.
    pub fn check(
        &self,
        ring: &Ring,
        revoked: &BTreeSet<CertificateFingerprint>,
    ) -> Result<String, TrustError> {
        let proof = ring.proof().ok_or(TrustError::Unsigned)?;
        let message = signed_message(RING_TAG, proof.signed_at, &ring.signed_content());
        self.check_signature(
            &proof.signer,
            proof.signed_at,
            &message,
            &proof.signature,
            &[revoked, ring.revoked()],
        )?;
        admin_name(&proof.signer).ok_or(TrustError::NotAdmin)
    }

    /// [`Authority::check`] for a ring that is to replace `current`: also
    /// refused when signed more than [`RING_SIGNED_AT_SLACK_SECS`] before
    /// it, or revoked by it.
    pub fn check_successor(
        &self,
        ring: &Ring,
        current: Option<&Ring>,
    ) -> Result<String, TrustError> {
        let none = BTreeSet::new();
        let revoked = current.map_or(&none, Ring::revoked);
        let floor = current
            .and_then(Ring::proof)
            .map_or(0, |p| p.signed_at.saturating_sub(RING_SIGNED_AT_SLACK_SECS));
        if let Some(proof) = ring.proof() {
            if proof.signed_at < floor {
                return Err(TrustError::SignedAt {
                    signed_at: proof.signed_at,
                    reason: "long before the ring it would replace",
                });
            }
        }
        self.check(ring, revoked)
    }

    /// [`Authority::check_successor`] for a ring an admin hands a node to
    /// commit: also refused when signed more than [`CLOCK_SKEW_SECS`] ago
    /// (an admin commits a ring it signed just now).
    pub fn check_commit(&self, ring: &Ring, current: Option<&Ring>) -> Result<String, TrustError> {
        let admin = self.check_successor(ring, current)?;
        let signed_at = ring.proof().map_or(0, |p| p.signed_at);
        if signed_at.saturating_add(CLOCK_SKEW_SECS) < now_secs() {
            return Err(TrustError::SignedAt {
                signed_at,
                reason: "more than 10 minutes ago, for a commit",
            });
        }
        Ok(admin)
    }

    /// Whether `member` carries its own node's signature over its identity,
    /// by a certificate valid when it signed and not in `revoked`.
    pub fn check_record(
        &self,
        member: &Member,
        revoked: &BTreeSet<CertificateFingerprint>,
    ) -> Result<(), TrustError> {
        let proof = member.proof.as_deref().ok_or(TrustError::Unsigned)?;
        if node_id(&proof.certificate) != Some(member.id) {
            return Err(TrustError::NotTheNode);
        }
        let message = signed_message(RECORD_TAG, proof.signed_at, &member.signed_content());
        self.check_signature(
            &proof.certificate,
            proof.signed_at,
            &message,
            &proof.signature,
            &[revoked],
        )
    }
}
