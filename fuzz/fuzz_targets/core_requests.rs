//! Structure-aware: the input is a sequence of frames, each decoded as a
//! request (as the transport would) and fed to a real node core over
//! memory storage, from a caller the first byte of the frame's request id
//! picks (a member, a stranger node, a data or admin client, HTTP). No
//! request may panic the core, and every request gets exactly one reply.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use norn_core::{CallId, Caller, Core, CoreConfig, Effect, NodeIdentity, Trust};
use norn_proto::{ClientRole, FrameDecoder, Request};
use norn_ring::NodeId;
use norn_storage::{Store, StoreOptions};
use norn_trust::{Authority, RecordSigner};

fn caller(pick: u64) -> Caller {
    match pick % 5 {
        0 => Caller::Node(NodeId(1)),
        1 => Caller::Node(NodeId(0xbad)),
        2 => Caller::Client { name: "fuzz".into(), role: ClientRole::Data },
        3 => Caller::Client { name: "fuzz".into(), role: ClientRole::Admin },
        _ => Caller::Http,
    }
}

/// A cluster CA for the node to judge rings and records by, and the
/// node's own key, made once.
fn trust() -> Trust {
    static TRUST: OnceLock<Trust> = OnceLock::new();
    TRUST
        .get_or_init(|| {
            let ca = norn_net::certs::new_ca("fuzz").expect("a CA");
            let node = norn_net::certs::issue_node(&ca, "n1", NodeId(1)).expect("a node");
            Trust {
                authority: Authority::from_pem(&ca.cert_pem).expect("the CA"),
                own_key: Arc::new(
                    RecordSigner::from_pem(&node.cert_pem, &node.key_pem).expect("the key"),
                ),
            }
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let storage = Arc::new(Store::in_memory(StoreOptions::default()).expect("memory store"));
    let me = NodeIdentity {
        id: NodeId(1),
        name: "n1".into(),
        address: "127.0.0.1:1".into(),
        zone: "z".into(),
        weight: 1,
        incarnation: 1,
    };
    let Ok(mut core) = Core::new(CoreConfig::for_test(), trust(), me, Vec::new(), storage, 7, 0) else {
        return;
    };
    let decoder = FrameDecoder::new(1 << 20);
    let (mut rest, mut now, mut calls) = (data, 0u64, 0u64);
    while let Ok(Some((frame, used))) = decoder.decode(rest) {
        rest = &rest[used..];
        let Ok(request) = frame.decode::<Request>() else { continue };
        now += 10;
        calls += 1;
        core.on_request(now, CallId(calls), caller(frame.request_id), request);
        let replies = core
            .take_effects()
            .into_iter()
            .filter(|e| matches!(e, Effect::Reply { call, .. } if *call == CallId(calls)))
            .count();
        assert!(replies <= 1, "one reply per request");
    }
});
