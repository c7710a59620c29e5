//! The simulated admin: a real cluster CA and admin certificate (one per
//! process), so that simulated nodes check ring proofs with the very code
//! nornd runs, and every ring the simulator commits is signed as `norn
//! admin commit` signs it.

use std::sync::OnceLock;

use norn_net::certs;
use norn_proto::ClientRole;
use norn_ring::Ring;
use norn_trust::{RingAuthority, RingSigner};

/// The CA the simulated nodes trust and the admin key that signs rings.
#[derive(Debug)]
pub(crate) struct SimTrust {
    pub(crate) authority: RingAuthority,
    signer: RingSigner,
    /// The one signing time of the process, within the admin
    /// certificate's validity (signatures carry no other wall-clock time
    /// into the run).
    signed_at: u64,
}

impl SimTrust {
    /// `ring` signed by the simulated admin.
    pub(crate) fn sign(&self, ring: &Ring) -> Ring {
        self.signer
            .sign(ring, self.signed_at)
            .expect("the simulated admin signs")
    }
}

/// The process's simulated CA and admin, made on first use.
pub(crate) fn trust() -> &'static SimTrust {
    static TRUST: OnceLock<SimTrust> = OnceLock::new();
    TRUST.get_or_init(|| {
        let ca = certs::new_ca("norn-sim").expect("a CA");
        let admin = certs::issue_client(&ca, "sim-admin", ClientRole::Admin).expect("an admin");
        let signed_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs();
        SimTrust {
            authority: RingAuthority::from_pem(&ca.cert_pem).expect("the CA"),
            signer: RingSigner::from_pem(&admin.cert_pem, &admin.key_pem).expect("the admin"),
            signed_at,
        }
    })
}
