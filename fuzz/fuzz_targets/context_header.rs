//! Arbitrary text as an `X-Norn-Context` header (and arbitrary bytes as a
//! stored object): no input may panic, and what decodes is a valid clock
//! (every counter in range, so a write over it cannot overflow).
#![no_main]

use libfuzzer_sys::fuzz_target;
use norn_clock::{ActorId, Object, Sibling, MAX_COUNTER};
use norn_proto::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(context) = codec::context_from_hex(text) {
            assert!(context.pairs().iter().all(|(_, c)| (1..=MAX_COUNTER).contains(c)));
            let written = Object::new().update(&context, ActorId::new(1, 1), Sibling::Value(vec![]));
            assert!(written.values().next().is_some());
        }
    }
    if let Ok(object) = codec::decode::<Object>(data) {
        let _ = object.update(&object.context(), ActorId::new(1, 1), Sibling::Tombstone);
    }
});
