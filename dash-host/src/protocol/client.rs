//! The garbler as a TCP client: garbles circuits ahead of time, streams
//! them to the server, then runs one round per inference and verifies
//! every output label.
//!
//! The client is fail-closed: after any error (a label that does not
//! verify, an answer for another circuit, a malformed frame, a timeout)
//! the connection is unusable and every later call fails. A circuit's keys
//! are dropped (and zeroised) after its one query, whatever the outcome,
//! so a circuit is never queried twice.

use super::auth::Token;
use super::tls::{ClientTls, TlsClientStream};
use super::transport::Transport;
use super::wire::{CircuitId, MAX_CHUNK_BYTES, Message};
use super::{Conn, ProtocolError, check_agreement, hello_for, material_bytes, output_labels};
use crate::engine::{self, EngineError, GarblerSession, Plan};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

/// Timeouts and credentials of a client.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Connecting (TLS handshake included), and every frame but the answer.
    pub frame_timeout: Duration,
    /// Waiting for an answer (the server evaluates in between).
    pub answer_timeout: Duration,
    /// TLS settings; `None`: plain TCP (`--insecure-plaintext`).
    pub tls: Option<ClientTls>,
    /// A bearer token, sent before the hello.
    pub token: Option<Token>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            frame_timeout: Duration::from_secs(60),
            answer_timeout: Duration::from_secs(600),
            tls: None,
            token: None,
        }
    }
}

/// One verified inference.
#[derive(Clone, Debug, PartialEq)]
pub struct Inference {
    /// The circuit used (and spent).
    pub circuit: CircuitId,
    /// The decoded, verified output values.
    pub output: Vec<i64>,
    /// Bytes of the query and answer frames.
    pub online_bytes: u64,
    /// Seconds from encoding the input to the verified output (one round).
    pub online_seconds: f64,
}

/// Totals over a client's life.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientStats {
    /// Circuits garbled and sent.
    pub circuits: u64,
    /// Bytes of offline frames (material) sent.
    pub offline_bytes: u64,
    /// Seconds spent garbling and sending material.
    pub offline_seconds: f64,
    /// Inferences completed and verified.
    pub inferences: u64,
    /// Bytes of online frames (queries and answers).
    pub online_bytes: u64,
    /// Seconds of online rounds.
    pub online_seconds: f64,
}

/// A circuit garbled and sent, waiting for its one query. Its
/// [`GarblerSession`] zeroises the keys on drop.
struct Prepared {
    id: CircuitId,
    session: GarblerSession,
}

/// Cuts the material stream into chunk frames as the garbler writes it,
/// so the client holds at most one chunk.
struct ChunkWriter<'c> {
    conn: &'c mut Conn,
    buf: Vec<u8>,
    written: u64,
    frame_bytes: u64,
}

impl ChunkWriter<'_> {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Message::MaterialChunk(std::mem::take(&mut self.buf));
        let n = self.conn.write(&chunk).map_err(std::io::Error::other)?;
        self.frame_bytes += n as u64;
        if let Message::MaterialChunk(mut b) = chunk {
            b.clear();
            self.buf = b;
        }
        Ok(())
    }
}

impl Write for ChunkWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = MAX_CHUNK_BYTES - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() == MAX_CHUNK_BYTES {
            self.send()?;
        }
        Ok(n)
    }

    /// Chunks are full-size except the last: a flush sends nothing (the
    /// last chunk goes out when the garbler is done).
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A connection to a server, agreed on one model.
pub struct Client {
    conn: Conn,
    plan: Plan,
    config: ClientConfig,
    rng: ChaCha20Rng,
    queue: VecDeque<Prepared>,
    max_pending: usize,
    failed: bool,
    /// Totals so far.
    pub stats: ClientStats,
}

impl Client {
    /// Connects to `addr` and agrees on the model of `plan` (protocol
    /// version, material format, model hash, CRT base). Keys and circuit
    /// ids come from `rng`.
    pub fn connect(
        addr: impl ToSocketAddrs,
        plan: &Plan,
        config: ClientConfig,
        rng: ChaCha20Rng,
    ) -> Result<Self, ProtocolError> {
        let addrs: Vec<_> =
            addr.to_socket_addrs().map_err(|e| ProtocolError::io("resolving the server address", e))?.collect();
        let mut last =
            ProtocolError::Io { context: "resolving the server address", source: std::io::Error::other("no address") };
        for a in addrs {
            let deadline = Instant::now() + config.frame_timeout;
            let stream = match TcpStream::connect_timeout(&a, config.frame_timeout) {
                Ok(s) => s,
                Err(e) => {
                    last = ProtocolError::io("connecting to the server", e);
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            return match &config.tls {
                Some(tls) => {
                    let t = TlsClientStream::connect(tls, stream, deadline)?;
                    Client::over(t, plan, config, rng)
                }
                None => Client::over(stream, plan, config, rng),
            };
        }
        Err(last)
    }

    /// [`Client::connect`] over an already connected transport (TLS, if
    /// any, already set up: `config.tls` is not used).
    pub fn over(
        transport: impl Transport + 'static,
        plan: &Plan,
        config: ClientConfig,
        rng: ChaCha20Rng,
    ) -> Result<Self, ProtocolError> {
        let mut conn = Conn::new(transport, config.frame_timeout)?;
        let ours = hello_for(plan);
        if let Some(token) = &config.token {
            conn.write(&Message::Auth(token.clone()))?;
        }
        conn.write(&Message::Hello(ours.clone()))?;
        conn.flush()?;
        let max_pending = match conn.read_within(config.frame_timeout)? {
            Message::Welcome { hello, max_pending } => {
                check_agreement(&ours, &hello)?;
                if max_pending == 0 {
                    return Err(ProtocolError::malformed(
                        super::wire::MessageKind::Welcome,
                        "the server accepts no circuits",
                    ));
                }
                max_pending as usize
            }
            Message::Error(s) => return Err(ProtocolError::remote(&s)),
            other => return Err(ProtocolError::Unexpected { expected: "welcome", got: other.kind() }),
        };
        Ok(Client {
            conn,
            plan: plan.clone(),
            config,
            rng,
            queue: VecDeque::new(),
            max_pending,
            failed: false,
            stats: ClientStats::default(),
        })
    }

    /// Most circuits the server holds for this connection.
    pub fn max_pending(&self) -> usize {
        self.max_pending
    }

    /// Circuits sent and not yet queried.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn guard(&self) -> Result<(), ProtocolError> {
        if self.failed {
            Err(ProtocolError::Local(
                "this connection failed earlier and is closed (fail-closed); connect again".into(),
            ))
        } else {
            Ok(())
        }
    }

    /// After a failed write the server has usually said why and closed:
    /// read its error frame if there is one.
    fn explain(&mut self, e: ProtocolError) -> ProtocolError {
        if let ProtocolError::Io { .. } = e
            && let Ok(Message::Error(s)) = self.conn.read_within(Duration::from_secs(1))
        {
            return ProtocolError::remote(&s);
        }
        e
    }

    fn fail<T>(&mut self, e: ProtocolError) -> Result<T, ProtocolError> {
        self.failed = true;
        self.conn.shutdown();
        Err(e)
    }

    /// Garbles one circuit under fresh keys and a fresh random id, and
    /// streams its material to the server (offline phase).
    pub fn prepare(&mut self) -> Result<(), ProtocolError> {
        self.guard()?;
        if self.queue.len() >= self.max_pending {
            return Err(ProtocolError::Limit(format!("the server holds at most {} circuits", self.max_pending)));
        }
        let t = Instant::now();
        let r = self.send_circuit();
        match r {
            Ok(p) => {
                self.queue.push_back(p);
                self.stats.circuits += 1;
                self.stats.offline_seconds += t.elapsed().as_secs_f64();
                Ok(())
            }
            Err(e) => {
                let e = self.explain(e);
                self.fail(e)
            }
        }
    }

    fn send_circuit(&mut self) -> Result<Prepared, ProtocolError> {
        let mut id: CircuitId = [0; 16];
        self.rng.fill_bytes(&mut id);
        let bytes = material_bytes(&self.plan);
        self.stats.offline_bytes += self.conn.write(&Message::MaterialBegin { id, bytes })? as u64;
        let mut w =
            ChunkWriter { conn: &mut self.conn, buf: Vec::with_capacity(MAX_CHUNK_BYTES), written: 0, frame_bytes: 0 };
        let garbled = engine::garble(&self.plan, &mut self.rng, &mut w);
        let session = match garbled {
            Ok(s) => s,
            Err(e) => {
                // A socket failure surfaces through the writer; report it as such.
                return Err(match e {
                    crate::engine::EngineError::Io { source, .. } => {
                        ProtocolError::Io { context: "streaming garbled material", source }
                    }
                    source => ProtocolError::Engine { context: "garbling", source },
                });
            }
        };
        w.send().map_err(|e| ProtocolError::io("streaming garbled material", e))?;
        if w.written != bytes {
            return Err(ProtocolError::Local(format!(
                "garbler wrote {} bytes of material, the plan says {bytes}",
                w.written
            )));
        }
        self.stats.offline_bytes += w.frame_bytes;
        self.stats.offline_bytes += self.conn.write(&Message::MaterialEnd { id })? as u64;
        self.conn.flush()?;
        Ok(Prepared { id, session })
    }

    /// Sends one circuit that another thread garbles, piece by piece from
    /// `pieces`, and queues it.
    fn prepare_from(&mut self, pieces: &Receiver<Piece>) -> Result<(), ProtocolError> {
        self.guard()?;
        let t = Instant::now();
        let r = self.forward(pieces);
        match r {
            Ok(p) => {
                self.queue.push_back(p);
                self.stats.circuits += 1;
                self.stats.offline_seconds += t.elapsed().as_secs_f64();
                Ok(())
            }
            Err(e) => {
                let e = self.explain(e);
                self.fail(e)
            }
        }
    }

    fn forward(&mut self, pieces: &Receiver<Piece>) -> Result<Prepared, ProtocolError> {
        let lost = || ProtocolError::Local("the garbling thread stopped".into());
        let Ok(Piece::Begin(id)) = pieces.recv() else { return Err(lost()) };
        let bytes = material_bytes(&self.plan);
        self.stats.offline_bytes += self.conn.write(&Message::MaterialBegin { id, bytes })? as u64;
        let mut sent = 0u64;
        loop {
            match pieces.recv().map_err(|_| lost())? {
                Piece::Chunk(c) => {
                    sent += c.len() as u64;
                    self.stats.offline_bytes += self.conn.write(&Message::MaterialChunk(c))? as u64;
                }
                Piece::End(session) => {
                    if sent != bytes {
                        return Err(ProtocolError::Local(format!(
                            "garbler wrote {sent} bytes of material, the plan says {bytes}"
                        )));
                    }
                    self.stats.offline_bytes += self.conn.write(&Message::MaterialEnd { id })? as u64;
                    self.conn.flush()?;
                    return Ok(Prepared { id, session: *session });
                }
                Piece::Failed(source) => return Err(ProtocolError::Engine { context: "garbling", source }),
                Piece::Begin(_) => return Err(lost()),
            }
        }
    }

    /// One private inference: takes the oldest prepared circuit (garbling
    /// one first if none is queued), sends the input labels, reads the
    /// output labels, and decodes and verifies every one.
    pub fn infer(&mut self, input: &[i64]) -> Result<Inference, ProtocolError> {
        self.guard()?;
        if self.queue.is_empty() {
            self.prepare()?;
        }
        let Some(prepared) = self.queue.pop_front() else {
            return self.fail(ProtocolError::Local("no circuit prepared".into()));
        };
        // `prepared` is dropped at the end of this call whatever happens:
        // its keys never serve a second query.
        match self.round(prepared, input) {
            Ok(inf) => {
                self.stats.inferences += 1;
                self.stats.online_bytes += inf.online_bytes;
                self.stats.online_seconds += inf.online_seconds;
                Ok(inf)
            }
            Err(e) => {
                let e = self.explain(e);
                self.fail(e)
            }
        }
    }

    fn round(&mut self, prepared: Prepared, input: &[i64]) -> Result<Inference, ProtocolError> {
        let t = Instant::now();
        let (labels, awaiting) = prepared
            .session
            .encode_input(input)
            .map_err(|e| ProtocolError::Engine { context: "encoding the input", source: e.error })?;
        let mut sent = self.conn.write(&Message::Query { id: prepared.id, labels: labels.to_blocks() })? as u64;
        drop(labels);
        self.conn.flush()?;
        // Nothing longer than this model's answer (or an error message) is read.
        let limit = (super::wire::CIRCUIT_ID_BYTES + output_labels(&self.plan) * 16).max(super::wire::MAX_ERROR_BYTES);
        let answer = self.conn.read_limited(self.config.answer_timeout, limit)?;
        let (id, returned) = match answer {
            Message::Answer { id, labels } => (id, labels),
            Message::Error(s) => return Err(ProtocolError::remote(&s)),
            other => return Err(ProtocolError::Unexpected { expected: "answer", got: other.kind() }),
        };
        sent += (super::wire::FRAME_HEADER_BYTES + super::wire::CIRCUIT_ID_BYTES + returned.len() * 16) as u64;
        if id != prepared.id {
            return Err(ProtocolError::WrongCircuit { expected: prepared.id, got: id });
        }
        let want = output_labels(&self.plan);
        if returned.len() != want {
            return Err(ProtocolError::WrongSize {
                what: "output labels",
                expected: want as u64,
                got: returned.len() as u64,
            });
        }
        let output = awaiting.decode_output(&returned).map_err(|e| match e {
            EngineError::Authenticity => ProtocolError::Verification(e),
            source => ProtocolError::Engine { context: "decoding the answer", source },
        })?;
        Ok(Inference { circuit: prepared.id, output, online_bytes: sent, online_seconds: t.elapsed().as_secs_f64() })
    }

    /// Tells the server we are done and closes.
    pub fn close(mut self) -> Result<ClientStats, ProtocolError> {
        if !self.failed {
            self.conn.write(&Message::Bye)?;
            self.conn.flush()?;
        }
        self.conn.shutdown();
        Ok(self.stats.clone())
    }
}

/// What the garbling thread of [`run_batch`] hands to the sending thread.
enum Piece {
    Begin(CircuitId),
    Chunk(Vec<u8>),
    End(Box<GarblerSession>),
    Failed(EngineError),
}

/// Chunks written by the garbler, handed on through a bounded channel.
struct PieceWriter<'a> {
    tx: &'a SyncSender<Piece>,
    buf: Vec<u8>,
}

impl PieceWriter<'_> {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(MAX_CHUNK_BYTES));
        self.tx.send(Piece::Chunk(chunk)).map_err(|_| std::io::Error::other("the sending side stopped"))
    }
}

impl Write for PieceWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = (MAX_CHUNK_BYTES - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == MAX_CHUNK_BYTES {
            self.send()?;
        }
        Ok(n)
    }

    /// See [`ChunkWriter`]'s: the last chunk is sent when garbling ends.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Chunks the garbling thread may run ahead of the socket (memory bound
/// of the client: this many MiB plus one circuit's keys per queued circuit).
pub const GARBLE_AHEAD_CHUNKS: usize = 8;

/// Results of [`run_batch`].
#[derive(Clone, Debug, PartialEq)]
pub struct BatchResult {
    /// Per input, in order.
    pub inferences: Vec<Inference>,
    /// Totals.
    pub stats: ClientStats,
    /// Circuits queued ahead.
    pub queue: usize,
}

/// Batch mode: keeps up to `queue` circuits garbled and at the server
/// ahead of the queries, so that each input costs one online round. A
/// second thread garbles the next circuits while the rounds run (at most
/// [`GARBLE_AHEAD_CHUNKS`] chunks ahead of the socket); after input `i` is
/// answered, the material of input `i + queue` is sent. `each` sees every
/// verified inference as it completes.
///
/// With `overlap` false, the next circuit is garbled on this thread
/// between rounds instead: slower overall, but the online rounds do not
/// share the cores with garbling (what to use to measure online latency on
/// a machine with few cores).
pub fn run_batch(
    client: &mut Client,
    inputs: &[Vec<i64>],
    queue: usize,
    overlap: bool,
    mut each: impl FnMut(usize, &Inference),
) -> Result<BatchResult, ProtocolError> {
    client.guard()?;
    if !overlap {
        return run_batch_serial(client, inputs, queue, each);
    }
    let depth = queue.clamp(1, client.max_pending());
    let to_garble = inputs.len().saturating_sub(client.queued());
    let mut garbler_rng = ChaCha20Rng::from_rng(&mut client.rng);
    let plan = client.plan.clone();
    let (tx, rx) = sync_channel::<Piece>(GARBLE_AHEAD_CHUNKS);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for _ in 0..to_garble {
                let mut id: CircuitId = [0; 16];
                garbler_rng.fill_bytes(&mut id);
                if tx.send(Piece::Begin(id)).is_err() {
                    return;
                }
                let mut w = PieceWriter { tx: &tx, buf: Vec::with_capacity(MAX_CHUNK_BYTES) };
                let piece = match engine::garble(&plan, &mut garbler_rng, &mut w).and_then(|s| {
                    w.send().map_err(|source| engine::EngineError::Io { what: "sending garbled material", source })?;
                    Ok(s)
                }) {
                    Ok(session) => Piece::End(Box::new(session)),
                    Err(e) => Piece::Failed(e),
                };
                let failed = matches!(piece, Piece::Failed(_));
                if tx.send(piece).is_err() || failed {
                    return;
                }
            }
        });
        // Dropping `rx` on every exit path (including errors) stops the
        // garbling thread at its next send.
        let rx = rx;
        let mut inferences = Vec::with_capacity(inputs.len());
        let mut garbled = 0;
        while client.queued() < depth.min(inputs.len()) && garbled < to_garble {
            client.prepare_from(&rx)?;
            garbled += 1;
        }
        for (i, x) in inputs.iter().enumerate() {
            let inf = client.infer(x)?;
            each(i, &inf);
            inferences.push(inf);
            if garbled < to_garble && client.queued() < depth {
                client.prepare_from(&rx)?;
                garbled += 1;
            }
        }
        Ok(BatchResult { inferences, stats: client.stats.clone(), queue: depth })
    })
}

fn run_batch_serial(
    client: &mut Client,
    inputs: &[Vec<i64>],
    queue: usize,
    mut each: impl FnMut(usize, &Inference),
) -> Result<BatchResult, ProtocolError> {
    let depth = queue.clamp(1, client.max_pending());
    let mut inferences = Vec::with_capacity(inputs.len());
    while client.queued() < depth.min(inputs.len()) {
        client.prepare()?;
    }
    for (i, x) in inputs.iter().enumerate() {
        let inf = client.infer(x)?;
        each(i, &inf);
        inferences.push(inf);
        if inputs.len() - i - 1 > client.queued() && client.queued() < depth {
            client.prepare()?;
        }
    }
    Ok(BatchResult { inferences, stats: client.stats.clone(), queue: depth })
}
