//! Feeds arbitrary bytes to the frame decoder and the message codec: no
//! input may panic, and decoding must stay within the frame's limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use norn_proto::{FrameDecoder, Request, Response};

fuzz_target!(|data: &[u8]| {
    let decoder = FrameDecoder::new(1 << 20);
    let mut rest = data;
    while let Ok(Some((frame, used))) = decoder.decode(rest) {
        let _ = frame.decode::<Request>();
        let _ = frame.decode::<Response>();
        rest = &rest[used..];
    }
});
