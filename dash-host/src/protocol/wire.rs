//! Frames and messages of the client–server protocol, version 1.
//!
//! A frame is a type byte, a little-endian `u32` payload length, and the
//! payload. Every type has a maximum payload length ([`MessageKind::max_len`]),
//! checked before anything is allocated; a frame of an unknown type, one
//! longer than its type allows, or one whose payload does not parse exactly
//! (no trailing bytes) is a [`ProtocolError`]. `docs/PROTOCOL.md` has the
//! byte layout of every message and the order they may come in.

use super::ProtocolError;
use super::auth::{MAX_TOKEN_BYTES, Token};
use dash_core::Block;
use std::io::{self, Read, Write};
use zeroize::Zeroize;

/// First bytes of both hello messages.
pub const WIRE_MAGIC: [u8; 8] = *b"DASHWIRE";
/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Bytes of a frame header: type byte and `u32` length.
pub const FRAME_HEADER_BYTES: usize = 5;
/// Bytes of a circuit identifier.
pub const CIRCUIT_ID_BYTES: usize = 16;
/// Most bytes of garbled material one chunk frame carries.
pub const MAX_CHUNK_BYTES: usize = 1 << 20;
/// Most labels one query or answer carries (16 MiB of labels).
pub const MAX_LABELS: usize = 1 << 20;
/// Most bytes of an error message.
pub const MAX_ERROR_BYTES: usize = 1024;
/// Most CRT primes a hello lists.
pub const MAX_HELLO_PRIMES: usize = 16;
/// Bytes of one label on the wire.
pub const LABEL_BYTES: usize = Block::BYTES;

/// A circuit identifier: 128 random bits chosen by the client, one per
/// garbled circuit, never reused.
pub type CircuitId = [u8; CIRCUIT_ID_BYTES];

/// The type of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// Client → server, before the hello: a bearer token (servers with a
    /// token file require it).
    Auth,
    /// Client → server: who I am and which model I garble.
    Hello,
    /// Server → client: which model I evaluate, how many circuits I queue.
    Welcome,
    /// Client → server: the material of a new circuit follows.
    MaterialBegin,
    /// Client → server: a piece of the current circuit's material.
    MaterialChunk,
    /// Client → server: the current circuit's material is complete.
    MaterialEnd,
    /// Client → server (online): circuit id and input labels.
    Query,
    /// Server → client (online): circuit id and output labels.
    Answer,
    /// Either way: a description of why the sender gives up; the connection closes.
    Error,
    /// Client → server: no more queries; the connection closes.
    Bye,
}

impl MessageKind {
    /// Every kind, in type-byte order.
    pub const ALL: [MessageKind; 10] = [
        MessageKind::Auth,
        MessageKind::Hello,
        MessageKind::Welcome,
        MessageKind::MaterialBegin,
        MessageKind::MaterialChunk,
        MessageKind::MaterialEnd,
        MessageKind::Query,
        MessageKind::Answer,
        MessageKind::Error,
        MessageKind::Bye,
    ];

    /// The type byte.
    pub const fn byte(self) -> u8 {
        match self {
            MessageKind::Auth => 0x03,
            MessageKind::Hello => 0x01,
            MessageKind::Welcome => 0x02,
            MessageKind::MaterialBegin => 0x10,
            MessageKind::MaterialChunk => 0x11,
            MessageKind::MaterialEnd => 0x12,
            MessageKind::Query => 0x20,
            MessageKind::Answer => 0x21,
            MessageKind::Error => 0x30,
            MessageKind::Bye => 0x31,
        }
    }

    /// The kind of a type byte.
    pub fn from_byte(b: u8) -> Result<MessageKind, ProtocolError> {
        MessageKind::ALL.into_iter().find(|k| k.byte() == b).ok_or(ProtocolError::UnknownType(b))
    }

    /// Longest payload a frame of this kind may have.
    pub const fn max_len(self) -> usize {
        match self {
            MessageKind::Auth => MAX_TOKEN_BYTES,
            MessageKind::Hello => HELLO_FIXED_BYTES + 2 * MAX_HELLO_PRIMES,
            MessageKind::Welcome => HELLO_FIXED_BYTES + 2 * MAX_HELLO_PRIMES + 4,
            MessageKind::MaterialBegin => CIRCUIT_ID_BYTES + 8,
            MessageKind::MaterialChunk => MAX_CHUNK_BYTES,
            MessageKind::MaterialEnd => CIRCUIT_ID_BYTES,
            MessageKind::Query | MessageKind::Answer => CIRCUIT_ID_BYTES + MAX_LABELS * LABEL_BYTES,
            MessageKind::Error => MAX_ERROR_BYTES,
            MessageKind::Bye => 0,
        }
    }

    /// A short name, for messages.
    pub const fn name(self) -> &'static str {
        match self {
            MessageKind::Auth => "auth",
            MessageKind::Hello => "hello",
            MessageKind::Welcome => "welcome",
            MessageKind::MaterialBegin => "material-begin",
            MessageKind::MaterialChunk => "material-chunk",
            MessageKind::MaterialEnd => "material-end",
            MessageKind::Query => "query",
            MessageKind::Answer => "answer",
            MessageKind::Error => "error",
            MessageKind::Bye => "bye",
        }
    }
}

impl core::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Magic, protocol version, material format version, model hash, prime count.
const HELLO_FIXED_BYTES: usize = 8 + 2 + 4 + 32 + 1;

/// What both sides state before anything else: they go on only if every
/// field is equal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version ([`PROTOCOL_VERSION`]).
    pub protocol_version: u16,
    /// Version of the garbled-material format ([`crate::format::VERSION`]).
    pub material_version: u32,
    /// Hash of the quantised integer network ([`crate::network::IntNetwork::hash`]).
    pub model_hash: [u8; 32],
    /// The CRT primes, in base order.
    pub primes: Vec<u16>,
}

/// One decoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// See [`MessageKind::Auth`]. The token is zeroised on drop and not printed.
    Auth(Token),
    /// See [`MessageKind::Hello`].
    Hello(Hello),
    /// See [`MessageKind::Welcome`].
    Welcome {
        /// The server's side of the agreement.
        hello: Hello,
        /// Most circuits the server holds for this connection at once.
        max_pending: u32,
    },
    /// See [`MessageKind::MaterialBegin`].
    MaterialBegin {
        /// The new circuit.
        id: CircuitId,
        /// Bytes of material that follow in chunks.
        bytes: u64,
    },
    /// See [`MessageKind::MaterialChunk`].
    MaterialChunk(Vec<u8>),
    /// See [`MessageKind::MaterialEnd`].
    MaterialEnd {
        /// The circuit whose material is complete.
        id: CircuitId,
    },
    /// See [`MessageKind::Query`].
    Query {
        /// The circuit to evaluate.
        id: CircuitId,
        /// One label per input value and residue, element-major.
        labels: Vec<Block>,
    },
    /// See [`MessageKind::Answer`].
    Answer {
        /// The circuit evaluated.
        id: CircuitId,
        /// One label per output value and residue, element-major.
        labels: Vec<Block>,
    },
    /// See [`MessageKind::Error`].
    Error(String),
    /// See [`MessageKind::Bye`].
    Bye,
}

/// A little cursor over a payload that never reads past the end.
struct Cursor<'a> {
    bytes: &'a [u8],
    kind: MessageKind,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.bytes.len() < n {
            return Err(ProtocolError::malformed(self.kind, "payload too short"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn finish(&self) -> Result<(), ProtocolError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::malformed(self.kind, "trailing bytes after the message"))
        }
    }
}

fn decode_hello(c: &mut Cursor<'_>) -> Result<Hello, ProtocolError> {
    if c.array::<8>()? != WIRE_MAGIC {
        return Err(ProtocolError::BadMagic);
    }
    let protocol_version = u16::from_le_bytes(c.array()?);
    let material_version = u32::from_le_bytes(c.array()?);
    let model_hash = c.array::<32>()?;
    let k = c.array::<1>()?[0] as usize;
    if !(1..=MAX_HELLO_PRIMES).contains(&k) {
        return Err(ProtocolError::malformed(c.kind, format!("{k} CRT primes listed (1 to {MAX_HELLO_PRIMES})")));
    }
    let primes = (0..k).map(|_| Ok(u16::from_le_bytes(c.array()?))).collect::<Result<Vec<_>, ProtocolError>>()?;
    Ok(Hello { protocol_version, material_version, model_hash, primes })
}

fn encode_hello(h: &Hello, out: &mut Vec<u8>) {
    out.extend_from_slice(&WIRE_MAGIC);
    out.extend_from_slice(&h.protocol_version.to_le_bytes());
    out.extend_from_slice(&h.material_version.to_le_bytes());
    out.extend_from_slice(&h.model_hash);
    out.push(h.primes.len() as u8);
    for p in &h.primes {
        out.extend_from_slice(&p.to_le_bytes());
    }
}

fn decode_labels(c: &mut Cursor<'_>) -> Result<(CircuitId, Vec<Block>), ProtocolError> {
    let id = c.array::<CIRCUIT_ID_BYTES>()?;
    let rest = c.take(c.bytes.len())?;
    if rest.len() % LABEL_BYTES != 0 {
        return Err(ProtocolError::malformed(c.kind, "labels are not a whole number of 16-byte blocks"));
    }
    let labels = rest
        .chunks_exact(LABEL_BYTES)
        .map(|b| {
            let mut a = [0u8; LABEL_BYTES];
            a.copy_from_slice(b);
            Block(u128::from_le_bytes(a))
        })
        .collect();
    Ok((id, labels))
}

fn encode_labels(id: &CircuitId, labels: &[Block], out: &mut Vec<u8>) {
    out.extend_from_slice(id);
    for l in labels {
        out.extend_from_slice(&l.0.to_le_bytes());
    }
}

impl Message {
    /// The kind of this message.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Auth(_) => MessageKind::Auth,
            Message::Hello(_) => MessageKind::Hello,
            Message::Welcome { .. } => MessageKind::Welcome,
            Message::MaterialBegin { .. } => MessageKind::MaterialBegin,
            Message::MaterialChunk(_) => MessageKind::MaterialChunk,
            Message::MaterialEnd { .. } => MessageKind::MaterialEnd,
            Message::Query { .. } => MessageKind::Query,
            Message::Answer { .. } => MessageKind::Answer,
            Message::Error(_) => MessageKind::Error,
            Message::Bye => MessageKind::Bye,
        }
    }

    /// Parses the payload of a frame of type `kind`: exactly, no trailing
    /// bytes, every count within its limit.
    pub fn decode(kind: MessageKind, payload: &[u8]) -> Result<Message, ProtocolError> {
        if payload.len() > kind.max_len() {
            return Err(ProtocolError::Oversized { kind, len: payload.len() as u64, max: kind.max_len() as u64 });
        }
        let mut c = Cursor { bytes: payload, kind };
        let m = match kind {
            MessageKind::Auth => {
                if payload.is_empty() {
                    return Err(ProtocolError::malformed(kind, "empty token"));
                }
                c.bytes = &[];
                Message::Auth(Token::new_exact(payload))
            }
            MessageKind::Hello => Message::Hello(decode_hello(&mut c)?),
            MessageKind::Welcome => {
                let hello = decode_hello(&mut c)?;
                let max_pending = u32::from_le_bytes(c.array()?);
                Message::Welcome { hello, max_pending }
            }
            MessageKind::MaterialBegin => {
                let id = c.array()?;
                let bytes = u64::from_le_bytes(c.array()?);
                Message::MaterialBegin { id, bytes }
            }
            MessageKind::MaterialChunk => {
                if payload.is_empty() {
                    return Err(ProtocolError::malformed(kind, "empty chunk"));
                }
                c.bytes = &[];
                Message::MaterialChunk(payload.to_vec())
            }
            MessageKind::MaterialEnd => Message::MaterialEnd { id: c.array()? },
            MessageKind::Query => {
                let (id, labels) = decode_labels(&mut c)?;
                Message::Query { id, labels }
            }
            MessageKind::Answer => {
                let (id, labels) = decode_labels(&mut c)?;
                Message::Answer { id, labels }
            }
            MessageKind::Error => {
                c.bytes = &[];
                let text = std::str::from_utf8(payload)
                    .map_err(|_| ProtocolError::malformed(kind, "error message is not UTF-8"))?;
                Message::Error(text.to_string())
            }
            MessageKind::Bye => Message::Bye,
        };
        c.finish()?;
        Ok(m)
    }

    /// The payload of this message (what [`Message::decode`] reads back).
    /// Fails if the message breaks its kind's limits.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::new();
        match self {
            Message::Auth(t) => out.extend_from_slice(t.bytes()),
            Message::Hello(h) => encode_hello(h, &mut out),
            Message::Welcome { hello, max_pending } => {
                encode_hello(hello, &mut out);
                out.extend_from_slice(&max_pending.to_le_bytes());
            }
            Message::MaterialBegin { id, bytes } => {
                out.extend_from_slice(id);
                out.extend_from_slice(&bytes.to_le_bytes());
            }
            Message::MaterialChunk(bytes) => out.extend_from_slice(bytes),
            Message::MaterialEnd { id } => out.extend_from_slice(id),
            Message::Query { id, labels } | Message::Answer { id, labels } => encode_labels(id, labels, &mut out),
            Message::Error(text) => {
                // Cut long messages at a character boundary rather than refuse them.
                let mut end = text.len().min(MAX_ERROR_BYTES);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                out.extend_from_slice(&text.as_bytes()[..end]);
            }
            Message::Bye => {}
        }
        let kind = self.kind();
        if let Message::Hello(h) | Message::Welcome { hello: h, .. } = self
            && !(1..=MAX_HELLO_PRIMES).contains(&h.primes.len())
        {
            return Err(ProtocolError::malformed(kind, "hello must list 1 to 16 primes"));
        }
        if out.len() > kind.max_len() {
            return Err(ProtocolError::Oversized { kind, len: out.len() as u64, max: kind.max_len() as u64 });
        }
        Ok(out)
    }

    /// The whole frame (header and payload).
    pub fn to_frame(&self) -> Result<Vec<u8>, ProtocolError> {
        let payload = self.encode()?;
        let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
        frame.push(self.kind().byte());
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&payload);
        Ok(frame)
    }
}

/// A frame header: the kind and the announced payload length, checked
/// against the kind's maximum.
pub fn parse_frame_header(header: [u8; FRAME_HEADER_BYTES]) -> Result<(MessageKind, usize), ProtocolError> {
    let kind = MessageKind::from_byte(header[0])?;
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as u64;
    if len > kind.max_len() as u64 {
        return Err(ProtocolError::Oversized { kind, len, max: kind.max_len() as u64 });
    }
    Ok((kind, len as usize))
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` if the stream ended before
/// the first byte (a clean close), an error if it ends in the middle.
fn fill<R: Read>(r: &mut R, buf: &mut [u8], what: &'static str) -> Result<bool, ProtocolError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(ProtocolError::Truncated { context: what }),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProtocolError::io(what, e)),
        }
    }
    Ok(true)
}

/// Reads and decodes one frame. A stream that ends cleanly before the
/// frame is [`ProtocolError::Closed`]; one that ends inside it is
/// [`ProtocolError::Truncated`]. Nothing larger than the kind's maximum is
/// ever allocated.
pub fn read_message<R: Read>(r: &mut R) -> Result<Message, ProtocolError> {
    read_message_limited(r, usize::MAX)
}

/// [`read_message`], refusing any payload longer than `limit` as well
/// (the reader knows the exact size it expects, e.g. an answer's).
pub fn read_message_limited<R: Read>(r: &mut R, limit: usize) -> Result<Message, ProtocolError> {
    read_message_by(r, &|_| Ok(limit))
}

/// Payload bytes read into a buffer before it grows: a frame's buffer
/// grows with the bytes that actually arrive, not with the length its
/// header announces.
const READ_STEP: usize = 64 << 10;

/// [`read_message`] with a limit per kind: `limit(kind)` is the longest
/// payload accepted for `kind` at this point of the session, or the error
/// to give for a kind that may not come now (refused on its header, before
/// any payload is read).
pub fn read_message_by<R: Read>(
    r: &mut R,
    limit: &dyn Fn(MessageKind) -> Result<usize, ProtocolError>,
) -> Result<Message, ProtocolError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    if !fill(r, &mut header, "a frame header")? {
        return Err(ProtocolError::Closed);
    }
    let (kind, len) = parse_frame_header(header)?;
    let max = limit(kind)?;
    if len > max {
        return Err(ProtocolError::Oversized { kind, len: len as u64, max: max as u64 });
    }
    let mut payload = Vec::with_capacity(len.min(READ_STEP));
    while payload.len() < len {
        let have = payload.len();
        let step = (len - have).min(READ_STEP.max(have));
        payload.resize(have + step, 0);
        match fill(r, &mut payload[have..], "a frame payload") {
            Ok(true) => {}
            Ok(false) => {
                payload.zeroize();
                return Err(ProtocolError::Truncated { context: "a frame payload" });
            }
            Err(e) => {
                payload.zeroize();
                return Err(e);
            }
        }
    }
    let m = Message::decode(kind, &payload);
    if kind == MessageKind::Auth {
        payload.zeroize();
    }
    m
}

/// Encodes and writes one frame.
pub fn write_message<W: Write>(w: &mut W, m: &Message) -> Result<usize, ProtocolError> {
    let mut frame = m.to_frame()?;
    let r = w.write_all(&frame).map_err(|e| ProtocolError::io("writing a frame", e));
    let n = frame.len();
    if m.kind() == MessageKind::Auth {
        frame.zeroize();
    }
    r.map(|()| n)
}

/// Decodes every frame of `bytes` in turn (what the fuzz target drives):
/// the messages, or the first error.
pub fn decode_stream(mut bytes: &[u8]) -> Result<Vec<Message>, ProtocolError> {
    let mut out = Vec::new();
    loop {
        match read_message(&mut bytes) {
            Ok(m) => out.push(m),
            Err(ProtocolError::Closed) => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        let hello = Hello { protocol_version: 1, material_version: 1, model_hash: [9; 32], primes: vec![2, 3, 5] };
        vec![
            Message::Auth(Token::new(b"0123456789abcdef")),
            Message::Hello(hello.clone()),
            Message::Welcome { hello, max_pending: 4 },
            Message::MaterialBegin { id: [1; 16], bytes: 1234 },
            Message::MaterialChunk(vec![7; 100]),
            Message::MaterialEnd { id: [1; 16] },
            Message::Query { id: [2; 16], labels: vec![Block(5), Block(u128::MAX)] },
            Message::Answer { id: [3; 16], labels: vec![Block(6)] },
            Message::Error("no such circuit".into()),
            Message::Bye,
        ]
    }

    #[test]
    fn every_message_roundtrips_and_every_cut_is_an_error() {
        for m in samples() {
            let frame = m.to_frame().unwrap();
            assert_eq!(read_message(&mut frame.as_slice()).unwrap(), m);
            assert!(matches!(read_message(&mut &frame[..0]), Err(ProtocolError::Closed)));
            for cut in 1..frame.len() {
                let e = read_message(&mut &frame[..cut]).unwrap_err();
                assert!(matches!(e, ProtocolError::Truncated { .. }), "{m:?} cut at {cut}: {e}");
            }
            // A byte more in the payload (length adjusted) is refused.
            let mut long = frame.clone();
            long.push(0);
            let len = (frame.len() - FRAME_HEADER_BYTES + 1) as u32;
            long[1..5].copy_from_slice(&len.to_le_bytes());
            if ![MessageKind::MaterialChunk, MessageKind::Error, MessageKind::Auth].contains(&m.kind()) {
                assert!(read_message(&mut long.as_slice()).is_err(), "{m:?} with a trailing byte");
            }
        }
    }

    #[test]
    fn oversized_unknown_and_bad_magic_are_refused_before_allocation() {
        for kind in MessageKind::ALL {
            let mut h = [kind.byte(), 0, 0, 0, 0];
            h[1..].copy_from_slice(&(kind.max_len() as u32 + 1).to_le_bytes());
            assert!(matches!(parse_frame_header(h), Err(ProtocolError::Oversized { .. })));
        }
        let mut h = [0x20, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(read_message(&mut &h[..]), Err(ProtocolError::Oversized { .. })));
        h[0] = 0x77;
        assert!(matches!(read_message(&mut &h[..]), Err(ProtocolError::UnknownType(0x77))));
        let mut frame = samples()[1].to_frame().unwrap();
        frame[FRAME_HEADER_BYTES] ^= 1;
        assert!(matches!(read_message(&mut frame.as_slice()), Err(ProtocolError::BadMagic)));
        // A reader's own, tighter limit.
        let q = samples()[6].to_frame().unwrap();
        let exact = q.len() - FRAME_HEADER_BYTES;
        assert!(matches!(read_message_limited(&mut q.as_slice(), exact - 1), Err(ProtocolError::Oversized { .. })));
        assert_eq!(read_message_limited(&mut q.as_slice(), exact).unwrap(), samples()[6]);
        // Labels that are not whole blocks.
        let mut q = samples()[6].to_frame().unwrap();
        q.pop();
        let len = (q.len() - FRAME_HEADER_BYTES) as u32;
        q[1..5].copy_from_slice(&len.to_le_bytes());
        assert!(matches!(read_message(&mut q.as_slice()), Err(ProtocolError::Malformed { .. })));
    }

    #[test]
    fn a_stream_of_frames_decodes_in_order() {
        let mut bytes = Vec::new();
        for m in samples() {
            write_message(&mut bytes, &m).unwrap();
        }
        assert_eq!(decode_stream(&bytes).unwrap(), samples());
        assert!(decode_stream(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn per_kind_limits_refuse_on_the_header_and_buffers_grow_with_the_bytes() {
        // A kind that may not come now is refused on its header: the
        // payload is never read.
        let q = samples()[6].to_frame().unwrap();
        let only_hello = |k: MessageKind| {
            if k == MessageKind::Hello {
                Ok(MessageKind::Hello.max_len())
            } else {
                Err(ProtocolError::Unexpected { expected: "hello", got: k })
            }
        };
        let mut r = q.as_slice();
        assert!(matches!(read_message_by(&mut r, &only_hello), Err(ProtocolError::Unexpected { .. })));
        assert_eq!(r.len(), q.len() - FRAME_HEADER_BYTES);
        // A frame announcing 16 MiB that sends 100 bytes: the reader asks
        // for at most one step at a time.
        struct Counting<'a>(&'a [u8], usize);
        impl Read for Counting<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.1 = self.1.max(buf.len());
                self.0.read(buf)
            }
        }
        let mut f = vec![MessageKind::Query.byte()];
        f.extend_from_slice(&(MessageKind::Query.max_len() as u32).to_le_bytes());
        f.extend_from_slice(&[0u8; 100]);
        let mut c = Counting(&f, 0);
        assert!(matches!(read_message(&mut c), Err(ProtocolError::Truncated { .. })));
        assert!(c.1 <= READ_STEP, "a read of {} bytes", c.1);
        assert!(format!("{:?}", samples()[0]).contains("redacted"));
    }
}
