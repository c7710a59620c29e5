//! The simulated admin: a real cluster CA and admin certificate (one per
//! process), so that simulated nodes check ring proofs with the very code
//! nornd runs, and every ring the simulator commits is signed as `norn
//! admin commit` signs it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use norn_core::Trust;
use norn_net::certs::{self, Issued};
use norn_proto::ClientRole;
use norn_ring::{NodeId, Ring};
use norn_trust::{Authority, RecordSigner, RingSigner};

/// The CA the simulated nodes trust and the admin key that signs rings.
#[derive(Debug)]
pub(crate) struct SimTrust {
    authority: Authority,
    ca: Issued,
    signer: RingSigner,
    /// Node keys, issued on first use.
    node_keys: Mutex<BTreeMap<NodeId, Arc<RecordSigner>>>,
}

impl SimTrust {
    /// What simulated node `id` trusts, and its key (a real node
    /// certificate for its id, the same across its restarts).
    pub(crate) fn for_node(&self, id: NodeId) -> Trust {
        let mut keys = self.node_keys.lock().unwrap_or_else(|p| p.into_inner());
        let own_key = keys
            .entry(id)
            .or_insert_with(|| {
                let name = format!("sim-{id}");
                let issued = certs::issue_node(&self.ca, &name, id).expect("a node certificate");
                Arc::new(
                    RecordSigner::from_pem(&issued.cert_pem, &issued.key_pem).expect("a node key"),
                )
            })
            .clone();
        Trust {
            authority: self.authority.clone(),
            own_key,
        }
    }

    /// `ring` signed by the simulated admin, now (nodes take a commit
    /// only when signed within minutes: the wall clock, not virtual time;
    /// it changes the signature's bytes, never what a run does).
    pub(crate) fn sign(&self, ring: &Ring) -> Ring {
        self.signer
            .sign_now(ring)
            .expect("the simulated admin signs")
    }
}

/// The process's simulated CA and admin, made on first use.
pub(crate) fn trust() -> &'static SimTrust {
    static TRUST: OnceLock<SimTrust> = OnceLock::new();
    TRUST.get_or_init(|| {
        let ca = certs::new_ca("norn-sim").expect("a CA");
        let admin = certs::issue_client(&ca, "sim-admin", ClientRole::Admin).expect("an admin");
        SimTrust {
            authority: Authority::from_pem(&ca.cert_pem).expect("the CA"),
            signer: RingSigner::from_pem(&admin.cert_pem, &admin.key_pem).expect("the admin"),
            ca,
            node_keys: Mutex::default(),
        }
    })
}
