//! The evaluator as a TCP server: a thread per connection (at most
//! [`ServerConfig::max_connections`]), each connection's circuits its own.
//!
//! A connection that misbehaves (malformed, oversized, out-of-order or
//! slow frames, a wrong model, a reused circuit, no or a wrong credential)
//! gets an `Error` frame saying why, is closed, and costs the other
//! connections nothing: every read ends by a deadline, every frame kind is
//! read with its exact maximum at that point of the session, each circuit
//! has a time budget and each connection an idle budget, garbled material
//! is held only up to a per-connection count, per-client limits and a
//! server-wide byte budget, and refusals (server full, TLS handshakes) run
//! off the accept loop. Events are logged with `tracing`; counters are in
//! [`Metrics`].

use super::auth::{CircuitHold, ClientLimits, ClientRegistry, TokenStore};
use super::metrics::{Metrics, error_kind};
use super::tls::TlsServerStream;
use super::transport::Transport;
use super::wire::{self, CircuitId, Hello, MAX_CHUNK_BYTES, Message, MessageKind};
use super::{Conn, ProtocolError, check_agreement, hello_for, input_labels, material_bytes};
use crate::engine::{self, Plan};
use crate::tensor::CrtTensor;
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// Limits and credentials of a server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Connections served at once; more are told the server is busy.
    pub max_connections: usize,
    /// Circuits one connection may hold (complete, not yet evaluated).
    pub max_pending: usize,
    /// Bytes of garbled material held over all connections.
    pub max_spool_bytes: u64,
    /// Time a whole frame may take to arrive (and the TLS handshake, and
    /// authentication and agreement together).
    pub frame_timeout: Duration,
    /// Idle budget: outside a circuit's upload, the next message must have
    /// arrived this long after the last progress (agreement, a circuit
    /// received, an answer sent).
    pub idle_timeout: Duration,
    /// Time budget of one circuit's upload, from its `MaterialBegin` to its
    /// `MaterialEnd`.
    pub circuit_timeout: Duration,
    /// Most circuits one connection may ever send (bounds the set of used
    /// circuit ids kept to refuse reuse).
    pub max_circuits_per_connection: usize,
    /// TLS settings ([`super::tls::server_config`]); `None`: plain TCP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Bearer tokens; when set, every client must send one of them first.
    pub tokens: Option<Arc<TokenStore>>,
    /// Limits per client, over all its connections.
    pub client_limits: ClientLimits,
    /// Refusals (busy) running at once, each on a short-lived thread;
    /// beyond, a connection is closed without a word.
    pub max_refusals_at_once: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 16,
            max_pending: 16,
            max_spool_bytes: 4 << 30,
            frame_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            circuit_timeout: Duration::from_secs(300),
            max_circuits_per_connection: 1 << 20,
            tls: None,
            tokens: None,
            client_limits: ClientLimits::default(),
            max_refusals_at_once: 32,
        }
    }
}

/// Bytes of material held over all connections, with a cap.
struct Spool {
    used: AtomicU64,
    cap: u64,
}

/// Bytes reserved in the [`Spool`], given back on drop.
struct Reservation<'s> {
    spool: &'s Spool,
    bytes: u64,
}

impl Spool {
    fn reserve(&self, bytes: u64) -> Option<Reservation<'_>> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_add(bytes).filter(|&t| t <= self.cap))
            .ok()
            .map(|_| Reservation { spool: self, bytes })
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.spool.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// One circuit's material, its share of the spool, and its client's hold.
struct Circuit<'s> {
    material: Vec<u8>,
    started: Instant,
    _reserved: Reservation<'s>,
    _held: CircuitHold<'s>,
}

/// Counts a live connection; uncounts it however the connection ends.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a server shares between its connections: the model, the limits,
/// the spool, the per-client registry and the counters. Connections of any
/// [`Transport`] are served by [`Service::handle`].
pub struct Service<'a> {
    plan: &'a Plan,
    config: ServerConfig,
    spool: Spool,
    clients: ClientRegistry,
    metrics: Arc<Metrics>,
    ours: Hello,
    expected: u64,
    n_inputs: usize,
}

/// Text sent when the server is full.
pub const BUSY: &str = "server busy: too many connections, try again later";

impl<'a> Service<'a> {
    /// A service of `plan`'s model with `config`.
    pub fn new(plan: &'a Plan, config: ServerConfig) -> Service<'a> {
        let metrics = Arc::new(Metrics::default());
        metrics.capacity.store(config.max_connections, Ordering::Release);
        Service {
            plan,
            spool: Spool { used: AtomicU64::new(0), cap: config.max_spool_bytes },
            clients: ClientRegistry::new(config.client_limits.clone()),
            metrics,
            ours: hello_for(plan),
            expected: material_bytes(plan),
            n_inputs: input_labels(plan),
            config,
        }
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The limits.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Serves one accepted TCP connection: the TLS handshake first (if
    /// configured, with a deadline), then the protocol.
    pub fn handle_tcp(&self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let peer = Transport::peer(&stream);
        match &self.config.tls {
            None => self.handle(Box::new(stream)),
            Some(tls) => {
                match TlsServerStream::accept(tls.clone(), stream, Instant::now() + self.config.frame_timeout) {
                    Ok(t) => self.handle(Box::new(t)),
                    Err(e) => {
                        self.metrics.error(&e);
                        warn!(peer = %peer, kind = error_kind(&e), error = %e, "refused: TLS handshake failed");
                    }
                }
            }
        }
    }

    /// Tells a connection the server is busy (TLS handshake first, if
    /// configured; everything within about 1.5 s) and closes it.
    pub fn refuse_tcp(&self, stream: TcpStream, why: &str) {
        let peer = Transport::peer(&stream);
        let deadline = Instant::now() + Duration::from_secs(1);
        let transport: Box<dyn Transport> = match &self.config.tls {
            None => Box::new(stream),
            Some(tls) => match TlsServerStream::accept(tls.clone(), stream, deadline) {
                Ok(t) => Box::new(t),
                Err(_) => return,
            },
        };
        if let Ok(mut conn) = Conn::boxed(transport, Duration::from_secs(1)) {
            let _ = conn.write(&Message::Error(why.into()));
            conn.linger_close();
        }
        info!(peer = %peer, reason = why, "refused a connection");
    }

    /// Serves one connection to its end; never panics on anything the peer sends.
    pub fn handle(&self, transport: Box<dyn Transport>) {
        self.metrics.active.fetch_add(1, Ordering::AcqRel);
        let _active = Slot(&self.metrics.active);
        let mut conn = match Conn::boxed(transport, self.config.frame_timeout) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot configure a connection");
                return;
            }
        };
        let peer = conn.peer();
        // Until the client has authenticated and agreed.
        let mut who = String::from("-");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.session(&mut conn, &mut who)));
        match result {
            Ok(Ok(served)) => info!(peer = %peer, client = %who, served, "connection done"),
            Ok(Err(e)) => {
                self.metrics.error(&e);
                let kind = error_kind(&e);
                match &e {
                    ProtocolError::Auth(_) | ProtocolError::Limit(_) => {
                        warn!(peer = %peer, client = %who, kind, error = %e, "refused")
                    }
                    ProtocolError::Closed | ProtocolError::Remote(_) => {
                        info!(peer = %peer, client = %who, kind, error = %e, "connection ended by the peer")
                    }
                    _ => warn!(peer = %peer, client = %who, kind, error = %e, "connection ended with an error"),
                }
                // Tell the peer why, unless it is gone or is itself the one
                // who gave up.
                if !matches!(e, ProtocolError::Closed | ProtocolError::Remote(_) | ProtocolError::Io { .. }) {
                    let _ = conn.write(&Message::Error(e.to_string()));
                    conn.linger_close();
                }
            }
            Err(_) => {
                self.metrics.error_kind("engine");
                error!(peer = %peer, client = %who, "internal error (panic) while serving; connection dropped");
                let _ = conn.write(&Message::Error("internal server error".into()));
                conn.linger_close();
            }
        }
        self.count_bytes(&mut conn);
        conn.shutdown();
    }

    fn count_bytes(&self, conn: &mut Conn) {
        let (i, o) = conn.take_counts();
        self.metrics.bytes_in.fetch_add(i, Ordering::Relaxed);
        self.metrics.bytes_out.fetch_add(o, Ordering::Relaxed);
    }

    /// Authentication and agreement: who the client is.
    fn agree(&self, conn: &mut Conn) -> Result<String, ProtocolError> {
        let by = Instant::now() + self.config.frame_timeout;
        let tokens = self.config.tokens.as_deref();
        let first = if tokens.is_some() { "auth" } else { "hello" };
        let limit = |allowed: &[MessageKind], expected: &'static str| {
            let allowed = allowed.to_vec();
            move |k: MessageKind| {
                if allowed.contains(&k) { Ok(k.max_len()) } else { Err(ProtocolError::Unexpected { expected, got: k }) }
            }
        };
        let mut who = None;
        let mut m = conn.read_by(by, &limit(&[MessageKind::Auth, MessageKind::Hello, MessageKind::Error], first))?;
        if let Message::Auth(token) = &m {
            match tokens {
                Some(store) => match store.check(token.bytes()) {
                    Some(name) => who = Some(format!("token:{name}")),
                    None => return Err(ProtocolError::Auth("unknown bearer token".into())),
                },
                None => debug!("a bearer token was sent to a server without tokens; ignored"),
            }
            m = conn.read_by(by, &limit(&[MessageKind::Hello, MessageKind::Error], "hello"))?;
        }
        match m {
            Message::Hello(theirs) => {
                if who.is_none() && tokens.is_some() {
                    return Err(ProtocolError::Auth(
                        "this server requires a bearer token, sent before the hello (query --token-file)".into(),
                    ));
                }
                check_agreement(&self.ours, &theirs)?;
            }
            Message::Error(s) => return Err(ProtocolError::remote(&s)),
            other => return Err(ProtocolError::Unexpected { expected: "hello", got: other.kind() }),
        }
        Ok(who
            .or_else(|| conn.peer_identity().map(|f| format!("cert:{}", &f[..16.min(f.len())])))
            .unwrap_or_else(|| format!("ip:{}", conn.peer_ip())))
    }

    /// The protocol on one connection; the number of inferences served.
    fn session(&self, conn: &mut Conn, who_out: &mut String) -> Result<u64, ProtocolError> {
        let config = &self.config;
        let who = self.agree(conn)?;
        who_out.clone_from(&who);
        let _connection = self.clients.connect(&who).map_err(ProtocolError::Limit)?;
        let max_pending = config.max_pending.clamp(1, u32::MAX as usize);
        conn.write(&Message::Welcome { hello: self.ours.clone(), max_pending: max_pending as u32 })?;
        conn.flush()?;
        self.metrics.agreed.fetch_add(1, Ordering::Relaxed);
        info!(peer = %conn.peer(), client = %who, "agreed on the model");

        let expected = self.expected;
        let n_inputs = self.n_inputs;
        let query_len = wire::CIRCUIT_ID_BYTES + n_inputs * wire::LABEL_BYTES;
        let mut seen: HashSet<CircuitId> = HashSet::new();
        let mut ready: HashMap<CircuitId, Circuit<'_>> = HashMap::new();
        let mut current: Option<(CircuitId, Circuit<'_>)> = None;
        let mut served = 0u64;
        let mut last_progress = Instant::now();
        loop {
            self.count_bytes(conn);
            let now = Instant::now();
            let (budget, budget_what) = match &current {
                Some((_, c)) => (
                    c.started + config.circuit_timeout,
                    "the rest of the circuit's material (the circuit's time budget ran out)",
                ),
                None => {
                    (last_progress + config.idle_timeout, "the next message (the connection's idle budget ran out)")
                }
            };
            let deadline = budget.min(now + config.frame_timeout);
            // The one chunk size accepted next: full-size except the last.
            let chunk = current.as_ref().map(|(_, c)| (expected - c.material.len() as u64).min(MAX_CHUNK_BYTES as u64));
            let limit = |k: MessageKind| match (k, chunk) {
                (MessageKind::MaterialChunk, Some(0)) => Err(ProtocolError::Unexpected {
                    expected: "material-end (the circuit's material is complete)",
                    got: k,
                }),
                (MessageKind::MaterialChunk, Some(n)) => Ok(n as usize),
                (MessageKind::MaterialEnd, Some(_)) => Ok(wire::CIRCUIT_ID_BYTES),
                (MessageKind::MaterialBegin, None) => Ok(MessageKind::MaterialBegin.max_len()),
                (MessageKind::Query, None) => Ok(query_len),
                (MessageKind::Bye, None) => Ok(0),
                (MessageKind::Error, _) => Ok(wire::MAX_ERROR_BYTES),
                (k, c) => Err(ProtocolError::Unexpected {
                    expected: if c.is_some() {
                        "material-chunk or material-end"
                    } else {
                        "material-begin, query or bye"
                    },
                    got: k,
                }),
            };
            let m = match conn.read_by(deadline, &limit) {
                Ok(m) => m,
                // A clean close between frames ends the session normally.
                Err(ProtocolError::Closed) if current.is_none() => return Ok(served),
                Err(ProtocolError::Timeout { .. }) if deadline == budget => {
                    return Err(ProtocolError::Timeout { context: budget_what });
                }
                Err(e) => return Err(e),
            };
            match m {
                Message::MaterialBegin { id, bytes } => {
                    if !seen.insert(id) {
                        return Err(ProtocolError::CircuitReused(id));
                    }
                    if bytes != expected {
                        return Err(ProtocolError::WrongSize { what: "garbled material", expected, got: bytes });
                    }
                    if ready.len() >= max_pending {
                        return Err(ProtocolError::Limit(format!(
                            "more than {max_pending} circuits sent ahead on one connection"
                        )));
                    }
                    if seen.len() > config.max_circuits_per_connection {
                        return Err(ProtocolError::Limit("too many circuits on one connection".into()));
                    }
                    let held = self.clients.start_circuit(&who, expected).map_err(ProtocolError::Limit)?;
                    let reserved = self
                        .spool
                        .reserve(expected)
                        .ok_or_else(|| ProtocolError::Limit("the server holds too much garbled material".into()))?;
                    let material = Vec::with_capacity(expected as usize);
                    current = Some((id, Circuit { material, started: now, _reserved: reserved, _held: held }));
                }
                Message::MaterialChunk(bytes) => {
                    let (Some((_, c)), Some(want)) = (current.as_mut(), chunk) else {
                        return Err(ProtocolError::Unexpected {
                            expected: "material-begin or query",
                            got: MessageKind::MaterialChunk,
                        });
                    };
                    if bytes.len() as u64 != want {
                        return Err(ProtocolError::WrongSize {
                            what: "material chunk (chunks are full-size, 1 MiB, except the last)",
                            expected: want,
                            got: bytes.len() as u64,
                        });
                    }
                    c.material.extend_from_slice(&bytes);
                }
                Message::MaterialEnd { id } => {
                    let Some((cur, c)) = current.take() else {
                        return Err(ProtocolError::Unexpected { expected: "material-begin or query", got: m.kind() });
                    };
                    if cur != id {
                        return Err(ProtocolError::WrongCircuit { expected: cur, got: id });
                    }
                    if c.material.len() as u64 != expected {
                        return Err(ProtocolError::WrongSize {
                            what: "garbled material",
                            expected,
                            got: c.material.len() as u64,
                        });
                    }
                    ready.insert(id, c);
                    self.metrics.circuits.fetch_add(1, Ordering::Relaxed);
                    last_progress = Instant::now();
                }
                Message::Query { id, labels } => {
                    let Some(circuit) = ready.remove(&id) else {
                        return Err(if seen.contains(&id) {
                            ProtocolError::CircuitReused(id)
                        } else {
                            ProtocolError::UnknownCircuit(id)
                        });
                    };
                    if labels.len() != n_inputs {
                        return Err(ProtocolError::WrongSize {
                            what: "input labels",
                            expected: n_inputs as u64,
                            got: labels.len() as u64,
                        });
                    }
                    let input = CrtTensor::from_blocks(&self.plan.network().base, self.plan.input_shape(), &labels)
                        .map_err(|e| ProtocolError::malformed(MessageKind::Query, format!("{e:#}")))?;
                    let t = Instant::now();
                    let out = engine::evaluate(self.plan, circuit.material.as_slice(), &input)
                        .map_err(|source| ProtocolError::Engine { context: "evaluating the circuit", source })?;
                    self.metrics.evaluation(t.elapsed().as_secs_f64());
                    // The circuit (and its spool share) is gone before the answer leaves.
                    drop(circuit);
                    conn.write(&Message::Answer { id, labels: out.to_blocks() })?;
                    conn.flush()?;
                    self.metrics.answers.fetch_add(1, Ordering::Relaxed);
                    served += 1;
                    last_progress = Instant::now();
                }
                Message::Bye if current.is_none() => return Ok(served),
                Message::Error(s) => return Err(ProtocolError::remote(&s)),
                other => {
                    return Err(ProtocolError::Unexpected {
                        expected: if current.is_some() {
                            "material-chunk or material-end"
                        } else {
                            "material-begin, query or bye"
                        },
                        got: other.kind(),
                    });
                }
            }
        }
    }
}

/// A bound, not yet serving, server.
pub struct Server {
    listener: TcpListener,
}

impl Server {
    /// Binds to `addr` (port 0 picks a free port; see [`Server::local_addr`]).
    pub fn bind(addr: impl ToSocketAddrs) -> std::io::Result<Server> {
        Ok(Server { listener: TcpListener::bind(addr)? })
    }

    /// The address bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `plan`'s model forever: a thread per connection.
    pub fn serve(self, plan: &Plan, config: &ServerConfig) -> ! {
        self.run(&Service::new(plan, config.clone()))
    }

    /// Serves `service` forever. The accept loop only accepts and hands
    /// over: connections go to threads of their own (at most
    /// `max_connections`), refusals to short-lived threads (at most
    /// `max_refusals_at_once`; beyond, the connection is just closed).
    pub fn run(self, service: &Service<'_>) -> ! {
        let config = service.config();
        let metrics = service.metrics();
        let active = AtomicUsize::new(0);
        let refusing = AtomicUsize::new(0);
        metrics.accepting.store(true, Ordering::Release);
        std::thread::scope(|scope| {
            loop {
                let stream = match self.listener.accept() {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // Out of descriptors and the like: wait, do not spin.
                        warn!(error = %e, "accept failed");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                metrics.connections.fetch_add(1, Ordering::Relaxed);
                if active.fetch_add(1, Ordering::AcqRel) >= config.max_connections {
                    active.fetch_sub(1, Ordering::AcqRel);
                    metrics.refused_busy.fetch_add(1, Ordering::Relaxed);
                    metrics.error_kind("limit");
                    if refusing.fetch_add(1, Ordering::AcqRel) >= config.max_refusals_at_once {
                        refusing.fetch_sub(1, Ordering::AcqRel);
                        warn!(peer = %Transport::peer(&stream), "server full and too many refusals running: closed");
                        continue;
                    }
                    let refusing = Slot(&refusing);
                    let spawned =
                        std::thread::Builder::new().name("dashgc-refuse".into()).spawn_scoped(scope, move || {
                            let _refusing = refusing;
                            service.refuse_tcp(stream, BUSY);
                        });
                    if let Err(e) = spawned {
                        warn!(error = %e, "cannot start a refusal thread");
                    }
                    continue;
                }
                let slot = Slot(&active);
                let spawned = std::thread::Builder::new().name("dashgc-conn".into()).spawn_scoped(scope, move || {
                    let _slot = slot;
                    service.handle_tcp(stream);
                });
                if let Err(e) = spawned {
                    warn!(error = %e, "cannot start a connection thread");
                }
            }
        })
    }
}
