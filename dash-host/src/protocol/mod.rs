//! The client–server protocol: the data owner (client) garbles, a server
//! evaluates, one online round per inference.
//!
//! * [`wire`]: versioned, length-prefixed frames and their messages.
//! * [`server`]: the evaluator as a server (`dashgc serve`).
//! * [`client`]: the garbler as a client (`dashgc query`).
//! * [`transport`]: the byte streams both run over (TCP, in memory) and
//!   [`sanitize`] for peer text; [`tls`]: TLS 1.3 with rustls.
//! * [`auth`]: bearer tokens and per-client limits; [`metrics`]: counters,
//!   `/metrics`, `/healthz`, `/readyz`.
//! * [`input`]: query images from raw bytes, PGM or PNG files.
//!
//! # The sequence
//!
//! 0. **Authentication.** A TLS client certificate, and/or an `Auth` frame
//!    with a bearer token before the hello, when the server requires them.
//! 1. **Agreement.** The client sends [`wire::Hello`] (protocol version,
//!    material format version, model hash, CRT primes); the server answers
//!    with its own in a `Welcome`, or an `Error` if anything differs. The
//!    client checks the `Welcome` the same way. Nothing else is accepted
//!    before.
//! 2. **Offline.** For each inference the client garbles a fresh circuit
//!    under fresh keys and a fresh random 128-bit circuit id, and streams
//!    the material in chunk frames (`MaterialBegin`, `MaterialChunk`…,
//!    `MaterialEnd`). The server knows from its own plan of the model how
//!    many bytes a circuit has and refuses any other size; it holds at most
//!    `max_pending` circuits per connection and a server-wide byte budget.
//! 3. **Online.** One `Query` (circuit id, input labels) and one `Answer`
//!    (circuit id, output labels). The server evaluates a circuit once and
//!    deletes it; a second query for the same id is refused. The client
//!    decodes and verifies every output label and fails closed.
//!
//! The garbler's secrets (keys, Δ, zero labels) never leave the client:
//! the server sees the material (with the evaluator's one-labels) and one
//! label per input wire, as in the single-process engine.

pub mod auth;
pub mod client;
pub mod input;
pub mod metrics;
pub mod server;
pub mod tls;
pub mod transport;
pub mod wire;

use crate::engine::{EngineError, Plan};
use std::io::{self, Read};
use std::time::{Duration, Instant};
pub use transport::{Transport, sanitize};
use wire::{CircuitId, Hello, MessageKind};

/// Everything that can go wrong between client and server.
#[derive(Debug)]
pub enum ProtocolError {
    /// The socket failed.
    Io {
        /// What was being done.
        context: &'static str,
        /// The error of the operating system.
        source: io::Error,
    },
    /// The peer sent nothing (or too little) within the time allowed.
    Timeout {
        /// What was being waited for.
        context: &'static str,
    },
    /// The peer closed the connection between frames.
    Closed,
    /// The stream ended inside a frame.
    Truncated {
        /// What was being read.
        context: &'static str,
    },
    /// A frame type this build does not know.
    UnknownType(u8),
    /// A frame longer than its type allows.
    Oversized {
        /// The frame's type.
        kind: MessageKind,
        /// The announced length.
        len: u64,
        /// The largest accepted.
        max: u64,
    },
    /// A frame whose payload does not parse.
    Malformed {
        /// The frame's type.
        kind: MessageKind,
        /// What is wrong with it.
        reason: String,
    },
    /// A message that may not come at this point of the sequence.
    Unexpected {
        /// What was expected.
        expected: &'static str,
        /// What came.
        got: MessageKind,
    },
    /// A hello without the protocol's magic bytes.
    BadMagic,
    /// The two sides do not agree on protocol, material format, model or
    /// CRT base.
    Mismatch {
        /// Which field differs.
        what: &'static str,
        /// Our value.
        ours: String,
        /// The peer's value.
        theirs: String,
    },
    /// A query or material end for a circuit this connection does not hold.
    UnknownCircuit(CircuitId),
    /// A circuit id used before on this connection (material sent twice, or
    /// a second evaluation).
    CircuitReused(CircuitId),
    /// A message for another circuit than the one expected (an answer
    /// replayed or misrouted, a material end for another circuit).
    WrongCircuit {
        /// The circuit queried.
        expected: CircuitId,
        /// The circuit the answer names.
        got: CircuitId,
    },
    /// A message of the right kind with the wrong size for this model.
    WrongSize {
        /// What.
        what: &'static str,
        /// The size this model needs.
        expected: u64,
        /// The size received.
        got: u64,
    },
    /// A server limit was reached (connections, pending circuits, memory,
    /// a per-client limit).
    Limit(String),
    /// The client did not authenticate (no token, an unknown token).
    Auth(String),
    /// TLS failed: a certificate was refused, or the TLS settings are wrong.
    Tls(String),
    /// The peer gave up and said why (the text is sanitised: see
    /// [`ProtocolError::remote`]).
    Remote(String),
    /// Output labels that are not valid labels of their wires: the server
    /// cheated or the answer was corrupted. Nothing is decoded. The source
    /// is the engine's [`EngineError::Authenticity`].
    Verification(EngineError),
    /// Garbling, encoding or evaluation failed locally; the engine's error
    /// is the source.
    Engine {
        /// What this side was doing.
        context: &'static str,
        /// The engine's error.
        source: EngineError,
    },
    /// This side cannot go on for a reason of its own (a connection that
    /// failed earlier, a garbling thread that stopped, a size mismatch
    /// between the garbler and the plan).
    Local(String),
}

impl ProtocolError {
    /// A [`ProtocolError::Malformed`].
    pub fn malformed(kind: MessageKind, reason: impl Into<String>) -> ProtocolError {
        ProtocolError::Malformed { kind, reason: reason.into() }
    }

    /// The peer's error text, sanitised ([`sanitize`]): it may be logged
    /// or printed on a terminal.
    pub fn remote(text: &str) -> ProtocolError {
        ProtocolError::Remote(sanitize(text))
    }

    /// Whether another connection may succeed where this one failed: the
    /// connection broke, timed out, or the server was busy. Never for an
    /// answer that failed verification, a refused certificate or token,
    /// or a model mismatch.
    pub fn is_retriable(&self) -> bool {
        match self {
            ProtocolError::Io { .. }
            | ProtocolError::Timeout { .. }
            | ProtocolError::Closed
            | ProtocolError::Truncated { .. } => true,
            ProtocolError::Remote(s) => s.contains("server busy") || s.contains("timed out"),
            _ => false,
        }
    }

    /// An I/O error, with timeouts as [`ProtocolError::Timeout`] and an
    /// unexpected end as [`ProtocolError::Truncated`].
    pub fn io(context: &'static str, source: io::Error) -> ProtocolError {
        // rustls reports a TLS failure (an alert received, a bad record) as
        // InvalidData with its own error inside: that is not retriable.
        if source.kind() == io::ErrorKind::InvalidData && source.get_ref().is_some_and(|e| e.is::<rustls::Error>()) {
            return ProtocolError::Tls(format!("{source} (at {context})"));
        }
        match source.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ProtocolError::Timeout { context },
            io::ErrorKind::UnexpectedEof => ProtocolError::Truncated { context },
            _ => ProtocolError::Io { context, source },
        }
    }

    /// Whether the peer is to blame (it sent something wrong), as opposed
    /// to a local failure.
    pub fn is_peer_fault(&self) -> bool {
        !matches!(
            self,
            ProtocolError::Io { .. }
                | ProtocolError::Engine { .. }
                | ProtocolError::Local(_)
                | ProtocolError::Limit(_)
                | ProtocolError::Tls(_)
        )
    }
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl core::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProtocolError::Io { context, source } => write!(f, "network error while {context}: {source}"),
            ProtocolError::Timeout { context } => write!(f, "timed out waiting for {context}"),
            ProtocolError::Closed => write!(f, "the peer closed the connection"),
            ProtocolError::Truncated { context } => write!(f, "the connection ended in the middle of {context}"),
            ProtocolError::UnknownType(b) => write!(f, "unknown frame type 0x{b:02x}"),
            ProtocolError::Oversized { kind, len, max } => {
                write!(f, "{kind} frame of {len} bytes, at most {max} accepted")
            }
            ProtocolError::Malformed { kind, reason } => write!(f, "malformed {kind} frame: {reason}"),
            ProtocolError::Unexpected { expected, got } => write!(f, "expected {expected}, got a {got} frame"),
            ProtocolError::BadMagic => write!(f, "the peer does not speak the Dash protocol (bad magic)"),
            ProtocolError::Mismatch { what, ours, theirs } => {
                write!(f, "{what} mismatch: ours is {ours}, the peer's is {theirs}")
            }
            ProtocolError::UnknownCircuit(id) => write!(f, "no circuit {} on this connection", hex(id)),
            ProtocolError::CircuitReused(id) => {
                write!(f, "circuit {} was used before (circuits are evaluated once)", hex(id))
            }
            ProtocolError::WrongCircuit { expected, got } => write!(
                f,
                "the message names circuit {} where circuit {} was expected (replayed or misrouted)",
                hex(got),
                hex(expected)
            ),
            ProtocolError::WrongSize { what, expected, got } => {
                write!(f, "{what}: {got} received, this model needs {expected}")
            }
            ProtocolError::Limit(s) => write!(f, "server limit: {s}"),
            ProtocolError::Auth(s) => write!(f, "authentication failed: {s}"),
            ProtocolError::Tls(s) => write!(f, "TLS: {s}"),
            ProtocolError::Remote(s) => write!(f, "the peer reported an error: {}", sanitize(s)),
            ProtocolError::Verification(_) => {
                write!(f, "output verification failed: an output label is not a valid label of its wire")
            }
            ProtocolError::Engine { context, source } => write!(f, "{context}: {source}"),
            ProtocolError::Local(s) => write!(f, "{s}"),
        }
    }
}

impl std::error::Error for ProtocolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProtocolError::Io { source, .. } => Some(source),
            ProtocolError::Engine { source, .. } | ProtocolError::Verification(source) => Some(source),
            _ => None,
        }
    }
}

/// What this side states in its hello for `plan`.
pub fn hello_for(plan: &Plan) -> Hello {
    Hello {
        protocol_version: wire::PROTOCOL_VERSION,
        material_version: crate::format::VERSION,
        model_hash: plan.model_hash(),
        primes: plan.network().base.moduli().iter().map(|m| m.value()).collect(),
    }
}

/// Checks the peer's hello against ours, field by field.
pub fn check_agreement(ours: &Hello, theirs: &Hello) -> Result<(), ProtocolError> {
    let mismatch = |what, o: String, t: String| Err(ProtocolError::Mismatch { what, ours: o, theirs: t });
    if ours.protocol_version != theirs.protocol_version {
        return mismatch("protocol version", ours.protocol_version.to_string(), theirs.protocol_version.to_string());
    }
    if ours.material_version != theirs.material_version {
        return mismatch(
            "material format version",
            ours.material_version.to_string(),
            theirs.material_version.to_string(),
        );
    }
    if ours.model_hash != theirs.model_hash {
        return mismatch("model hash", hex(&ours.model_hash), hex(&theirs.model_hash));
    }
    if ours.primes != theirs.primes {
        return mismatch("CRT base", format!("{:?}", ours.primes), format!("{:?}", theirs.primes));
    }
    Ok(())
}

/// Exact size in bytes of one circuit's material stream for `plan`, as
/// [`crate::engine::garble`] writes it (header, layer tags, rows, trailer).
/// Both sides compute it from their own plan; the server refuses any other.
pub fn material_bytes(plan: &Plan) -> u64 {
    let k = plan.network().base.len() as u64;
    let header = 8 + 4 + 32 + 1 + 2 * k + 2 + 18 * plan.moduli().len() as u64 + 4 + 8 * plan.costs().len() as u64;
    let tags = 16 * plan.costs().iter().filter(|c| c.rows > 0).count() as u64;
    header + tags + plan.material_bytes() + 8
}

/// Labels in one query (input values × residues).
pub fn input_labels(plan: &Plan) -> usize {
    plan.input_shape().iter().product::<usize>() * plan.network().base.len()
}

/// Labels in one answer (output values × residues).
pub fn output_labels(plan: &Plan) -> usize {
    plan.output_shape().iter().product::<usize>() * plan.network().base.len()
}

/// Bytes on the wire of one online round (query and answer frames,
/// headers and circuit ids included). Independent of the network's depth:
/// only its input and output sizes count.
pub fn online_bytes(plan: &Plan) -> u64 {
    let frame = |labels: usize| (wire::FRAME_HEADER_BYTES + wire::CIRCUIT_ID_BYTES + labels * wire::LABEL_BYTES) as u64;
    frame(input_labels(plan)) + frame(output_labels(plan))
}

/// A [`Transport`] whose reads all end by a deadline, so that a peer that
/// trickles bytes (slowloris) cannot hold a frame open past it; counts the
/// protocol bytes each way.
pub struct Conn {
    io: Box<dyn Transport>,
    deadline: Option<Instant>,
    bytes_in: u64,
    bytes_out: u64,
}

impl Conn {
    /// Wraps a connected transport; writes time out after `write_timeout`.
    pub fn new(io: impl Transport + 'static, write_timeout: Duration) -> Result<Conn, ProtocolError> {
        Conn::boxed(Box::new(io), write_timeout)
    }

    /// [`Conn::new`] for a boxed transport.
    pub fn boxed(mut io: Box<dyn Transport>, write_timeout: Duration) -> Result<Conn, ProtocolError> {
        io.set_write_timeout(Some(write_timeout)).map_err(|e| ProtocolError::io("configuring the connection", e))?;
        Ok(Conn { io, deadline: None, bytes_in: 0, bytes_out: 0 })
    }

    /// Reads one message, which must have arrived in full within `within`.
    pub fn read_within(&mut self, within: Duration) -> Result<wire::Message, ProtocolError> {
        self.read_limited(within, usize::MAX)
    }

    /// [`Conn::read_within`], refusing payloads longer than `limit`.
    pub fn read_limited(&mut self, within: Duration, limit: usize) -> Result<wire::Message, ProtocolError> {
        self.read_by(Instant::now() + within, &|_| Ok(limit))
    }

    /// Reads one message that must have arrived in full by `deadline`, with
    /// a limit per kind ([`wire::read_message_by`]).
    pub fn read_by(
        &mut self,
        deadline: Instant,
        limit: &dyn Fn(MessageKind) -> Result<usize, ProtocolError>,
    ) -> Result<wire::Message, ProtocolError> {
        self.deadline = Some(deadline);
        let r = wire::read_message_by(self, limit);
        self.deadline = None;
        r
    }

    /// Writes one message; the bytes written.
    pub fn write(&mut self, m: &wire::Message) -> Result<usize, ProtocolError> {
        let n = wire::write_message(&mut self.io, m)?;
        self.bytes_out += n as u64;
        Ok(n)
    }

    /// Flushes buffered writes.
    pub fn flush(&mut self) -> Result<(), ProtocolError> {
        self.io.flush().map_err(|e| ProtocolError::io("flushing", e))
    }

    /// The peer's address, for logs.
    pub fn peer(&self) -> String {
        self.io.peer()
    }

    /// What the transport proved about the peer (a client certificate).
    pub fn peer_identity(&self) -> Option<String> {
        self.io.peer_identity()
    }

    /// The peer's IP address.
    pub fn peer_ip(&self) -> String {
        self.io.peer_ip()
    }

    /// Protocol bytes received and sent since the last call.
    pub fn take_counts(&mut self) -> (u64, u64) {
        (std::mem::take(&mut self.bytes_in), std::mem::take(&mut self.bytes_out))
    }

    /// Shuts both directions down.
    pub fn shutdown(&mut self) {
        self.io.shutdown();
    }

    /// Closes after an error frame: stops sending, then reads and drops
    /// what the peer still sends for a moment (at most 1 MiB, 250 ms), so
    /// that closing with unread data does not reset the connection and
    /// destroy the error frame before the peer reads it.
    pub fn linger_close(&mut self) {
        let _ = self.io.flush();
        self.io.shutdown_write();
        // What is drained is dropped unread: it does not count as received.
        let counted = self.bytes_in;
        self.deadline = Some(Instant::now() + Duration::from_millis(250));
        let mut buf = [0u8; 16 << 10];
        let mut left = 1usize << 20;
        while left > 0 {
            match self.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
        self.deadline = None;
        self.bytes_in = counted;
        self.shutdown();
    }

    /// The transport itself, to write bytes outside the frame layer (tests
    /// that play a misbehaving peer).
    pub fn raw_stream(&mut self) -> &mut dyn Transport {
        &mut *self.io
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(d) = self.deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
            }
            self.io.set_read_timeout(Some(left))?;
        }
        let n = self.io.read(buf)?;
        self.bytes_in += n as u64;
        Ok(n)
    }
}
