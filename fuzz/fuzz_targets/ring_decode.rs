//! Arbitrary bytes as a ring, as a gossip message carries one: no input
//! may panic, and a ring that decodes holds its bounds (members, lists).
#![no_main]

use libfuzzer_sys::fuzz_target;
use norn_proto::codec;
use norn_ring::{Partition, Ring, MEMBERS_MAX, PREFERENCE_LIST_MAX};

fuzz_target!(|data: &[u8]| {
    if let Ok(ring) = codec::decode::<Ring>(data) {
        assert!(ring.members().len() <= MEMBERS_MAX);
        let last = Partition((ring.partition_count() - 1) as u16);
        let list = ring.preference_list(last, 3);
        assert!(list.all().len() <= 2 * PREFERENCE_LIST_MAX);
    }
});
