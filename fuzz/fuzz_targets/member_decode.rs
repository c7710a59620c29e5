//! Arbitrary bytes as the gossip records a node decodes: members, staged
//! changes and whole gossip messages. No input may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use norn_membership::{GossipMessage, Member, StagedChange};
use norn_proto::codec;

fuzz_target!(|data: &[u8]| {
    let _ = codec::decode::<Member>(data);
    let _ = codec::decode::<StagedChange>(data);
    let _ = codec::decode::<GossipMessage>(data);
});
