//! The wire protocol's frame and message decoders on arbitrary bytes: no
//! panic, no allocation beyond a frame type's maximum, and every message
//! that decodes re-encodes to exactly the bytes it came from.

#![no_main]

use dash_host::protocol::wire::{self, Message, MessageKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As a stream of frames.
    if let Ok(messages) = wire::decode_stream(data) {
        let mut again = Vec::new();
        for m in &messages {
            wire::write_message(&mut again, m).expect("a decoded message re-encodes");
        }
        assert_eq!(again.as_slice(), data, "re-encoding changed the bytes");
    }
    // As one payload of every kind.
    for kind in MessageKind::ALL {
        if let Ok(m) = Message::decode(kind, data) {
            assert_eq!(m.kind(), kind);
            assert_eq!(m.encode().expect("re-encodes"), data);
        }
    }
});
