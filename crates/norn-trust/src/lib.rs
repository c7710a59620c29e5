//! Who may change the ring.
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
//! The same rings carry the revoked certificates (by SHA-256 of their DER),
//! so a revocation is committed like any ring change and reaches every node
//! as fast as a ring does.

use std::collections::BTreeSet;

use norn_proto::ClientRole;
use norn_ring::{CertificateFingerprint, Ring, RingProof};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer, UnixTime};

/// What a signature covers besides the ring: a fixed tag, so that a ring
/// signature is never valid as any other message, and the signing time.
const PROOF_TAG: &[u8] = b"norn ring proof v1\0";

/// Why a ring was refused, or a signer could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("the ring carries no admin signature")]
    Unsigned,
    #[error("the ring's signer does not chain to the cluster CA: {reason}")]
    Untrusted { reason: String },
    #[error("the ring's signer is not an admin client certificate")]
    NotAdmin,
    #[error("the ring's signer certificate is revoked")]
    Revoked,
    #[error("the ring's signature does not match its content")]
    BadSignature,
    #[error("cannot sign rings: {reason}")]
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

fn signed_message(ring: &Ring, signed_at: u64) -> Vec<u8> {
    let content = ring.signed_content();
    let mut message = Vec::with_capacity(PROOF_TAG.len() + 8 + content.len());
    message.extend_from_slice(PROOF_TAG);
    message.extend_from_slice(&signed_at.to_be_bytes());
    message.extend_from_slice(&content);
    message
}

/// An admin's key, to sign the rings it commits.
pub struct RingSigner {
    certificate: Vec<u8>,
    key: EcdsaKeyPair,
    random: SystemRandom,
}

impl std::fmt::Debug for RingSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingSigner")
            .field(
                "certificate",
                &fingerprint_hex(&fingerprint(&self.certificate)),
            )
            .finish_non_exhaustive()
    }
}

fn signer_error(reason: impl std::fmt::Display) -> TrustError {
    TrustError::Signer {
        reason: reason.to_string(),
    }
}

impl RingSigner {
    /// A signer from an admin certificate and its ECDSA P-256 key (PKCS#8),
    /// both PEM, as `norn certs client NAME --role admin` writes them.
    pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<RingSigner, TrustError> {
        let certificate = CertificateDer::from_pem_slice(certificate_pem.as_bytes())
            .map_err(|e| signer_error(format!("certificate: {e}")))?;
        if admin_name(certificate.as_ref()).is_none() {
            return Err(TrustError::NotAdmin);
        }
        let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| signer_error(format!("key: {e}")))?;
        let random = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            key.secret_pkcs8_der(),
            &random,
        )
        .map_err(|e| signer_error(format!("key is not ECDSA P-256: {e}")))?;
        Ok(RingSigner {
            certificate: certificate.as_ref().to_vec(),
            key,
            random,
        })
    }

    /// `ring` carrying this admin's signature, made at `signed_at` (seconds
    /// since the Unix epoch).
    pub fn sign(&self, ring: &Ring, signed_at: u64) -> Result<Ring, TrustError> {
        let signature = self
            .key
            .sign(&self.random, &signed_message(ring, signed_at))
            .map_err(|e| signer_error(format!("signing failed: {e}")))?;
        Ok(ring.with_proof(RingProof {
            signer: self.certificate.clone(),
            signed_at,
            signature: signature.as_ref().to_vec(),
        }))
    }

    /// [`RingSigner::sign`] at the current time.
    pub fn sign_now(&self, ring: &Ring) -> Result<Ring, TrustError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.sign(ring, now)
    }
}

/// The admin name an admin client certificate's URI SAN names, if it is one.
fn admin_name(certificate_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(certificate_der).ok()?;
    let sans = cert.subject_alternative_name().ok()??;
    sans.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => {
            match norn_proto::role::client_from_uri(uri)? {
                (ClientRole::Admin, name) => Some(name.to_string()),
                (ClientRole::Data, _) => None,
            }
        }
        _ => None,
    })
}

/// The cluster CA, as a judge of ring proofs.
#[derive(Debug, Clone)]
pub struct RingAuthority {
    ca: CertificateDer<'static>,
}

impl RingAuthority {
    /// An authority trusting the CA certificate `ca_der` (DER).
    pub fn new(ca_der: Vec<u8>) -> Result<RingAuthority, TrustError> {
        let ca = CertificateDer::from(ca_der);
        webpki::anchor_from_trusted_cert(&ca).map_err(|e| TrustError::Untrusted {
            reason: format!("the CA certificate: {e}"),
        })?;
        Ok(RingAuthority { ca })
    }

    /// An authority trusting the CA certificate in PEM text.
    pub fn from_pem(ca_pem: &str) -> Result<RingAuthority, TrustError> {
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| {
            TrustError::Untrusted {
                reason: format!("the CA certificate: {e}"),
            }
        })?;
        RingAuthority::new(ca.as_ref().to_vec())
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
        let signer_fingerprint = fingerprint(&proof.signer);
        if revoked.contains(&signer_fingerprint) || ring.revoked().contains(&signer_fingerprint) {
            return Err(TrustError::Revoked);
        }
        let anchor =
            webpki::anchor_from_trusted_cert(&self.ca).map_err(|e| TrustError::Untrusted {
                reason: e.to_string(),
            })?;
        let signer_der = CertificateDer::from(proof.signer.as_slice());
        let signer =
            webpki::EndEntityCert::try_from(&signer_der).map_err(|e| TrustError::Untrusted {
                reason: e.to_string(),
            })?;
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(proof.signed_at));
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
            .map_err(|e| TrustError::Untrusted {
                reason: e.to_string(),
            })?;
        let name = admin_name(&proof.signer).ok_or(TrustError::NotAdmin)?;
        let message = signed_message(ring, proof.signed_at);
        let verified = webpki::ALL_VERIFICATION_ALGS.iter().any(|alg| {
            signer
                .verify_signature(*alg, &message, &proof.signature)
                .is_ok()
        });
        if !verified {
            return Err(TrustError::BadSignature);
        }
        Ok(name)
    }
}
