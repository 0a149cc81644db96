//! The evaluator as a TCP server: a thread per connection (at most
//! [`ServerConfig::max_connections`]), each connection's circuits its own.
//!
//! A connection that misbehaves (malformed, oversized, out-of-order or
//! slow frames, a wrong model, a reused circuit) gets an `Error` frame
//! saying why, is closed, and costs the other connections nothing: every
//! read ends by a deadline, every size is checked before allocation, and
//! garbled material is held only up to a per-connection count and a
//! server-wide byte budget.

use super::wire::{CircuitId, Message, MessageKind};
use super::{Conn, ProtocolError, check_agreement, hello_for, input_labels, material_bytes};
use crate::engine::{self, Plan};
use crate::tensor::CrtTensor;
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Limits of a server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Connections served at once; more are told the server is busy.
    pub max_connections: usize,
    /// Circuits one connection may hold (complete, not yet evaluated).
    pub max_pending: usize,
    /// Bytes of garbled material held over all connections.
    pub max_spool_bytes: u64,
    /// Time a whole frame may take to arrive, and the longest silence
    /// between frames.
    pub frame_timeout: Duration,
    /// Most circuits one connection may ever send (bounds the set of used
    /// circuit ids kept to refuse reuse).
    pub max_circuits_per_connection: usize,
    /// Log connections and errors on standard error.
    pub log: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 16,
            max_pending: 16,
            max_spool_bytes: 4 << 30,
            frame_timeout: Duration::from_secs(60),
            max_circuits_per_connection: 1 << 20,
            log: true,
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

/// One circuit's material and its share of the spool.
struct Circuit<'s> {
    material: Vec<u8>,
    _reserved: Reservation<'s>,
}

/// Counts a live connection; uncounts it however the connection ends.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
        let spool = Spool { used: AtomicU64::new(0), cap: config.max_spool_bytes };
        let active = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            loop {
                let stream = match self.listener.accept() {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // Out of descriptors and the like: wait, do not spin.
                        if config.log {
                            eprintln!("dashgc serve: accept failed: {e}");
                        }
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                if active.fetch_add(1, Ordering::AcqRel) >= config.max_connections {
                    let _slot = Slot(&active);
                    refuse(stream, config, "server busy: too many connections, try again later");
                    continue;
                }
                let slot = Slot(&active);
                let spool = &spool;
                let spawned = std::thread::Builder::new().name("dashgc-conn".into()).spawn_scoped(scope, move || {
                    let _slot = slot;
                    serve_connection(stream, plan, config, spool);
                });
                if let Err(e) = spawned
                    && config.log
                {
                    eprintln!("dashgc serve: cannot start a connection thread: {e}");
                }
            }
        })
    }
}

fn refuse(stream: TcpStream, config: &ServerConfig, why: &str) {
    if let Ok(mut conn) = Conn::new(stream, Duration::from_secs(1)) {
        let _ = conn.write(&Message::Error(why.into()));
        conn.linger_close();
    }
    if config.log {
        eprintln!("dashgc serve: refused a connection: {why}");
    }
}

/// Serves one connection to its end; never panics on anything the peer sends.
fn serve_connection(stream: TcpStream, plan: &Plan, config: &ServerConfig, spool: &Spool) {
    let mut conn = match Conn::new(stream, config.frame_timeout) {
        Ok(c) => c,
        Err(e) => {
            if config.log {
                eprintln!("dashgc serve: {e}");
            }
            return;
        }
    };
    let peer = conn.peer();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session(&mut conn, plan, config, spool)));
    match result {
        Ok(Ok(served)) => {
            if config.log {
                eprintln!("dashgc serve: {peer}: done, {served} inferences");
            }
        }
        Ok(Err(e)) => {
            if config.log {
                eprintln!("dashgc serve: {peer}: {e}");
            }
            // Tell the peer why, unless it is gone or is itself the one
            // who gave up.
            if !matches!(e, ProtocolError::Closed | ProtocolError::Remote(_) | ProtocolError::Io { .. }) {
                let _ = conn.write(&Message::Error(e.to_string()));
                conn.linger_close();
            }
        }
        Err(_) => {
            if config.log {
                eprintln!("dashgc serve: {peer}: internal error (panic) while serving; connection dropped");
            }
            let _ = conn.write(&Message::Error("internal server error".into()));
            conn.linger_close();
        }
    }
    conn.shutdown();
}

/// The protocol on one connection; the number of inferences served.
fn session(conn: &mut Conn, plan: &Plan, config: &ServerConfig, spool: &Spool) -> Result<u64, ProtocolError> {
    let ours = hello_for(plan);
    match conn.read_within(config.frame_timeout)? {
        Message::Hello(theirs) => check_agreement(&ours, &theirs)?,
        Message::Error(s) => return Err(ProtocolError::Remote(s)),
        other => return Err(ProtocolError::Unexpected { expected: "hello", got: other.kind() }),
    }
    let max_pending = config.max_pending.clamp(1, u32::MAX as usize);
    conn.write(&Message::Welcome { hello: ours, max_pending: max_pending as u32 })?;

    let expected = material_bytes(plan);
    let n_inputs = input_labels(plan);
    let mut seen: HashSet<CircuitId> = HashSet::new();
    let mut ready: HashMap<CircuitId, Circuit<'_>> = HashMap::new();
    let mut current: Option<(CircuitId, Circuit<'_>)> = None;
    let mut served = 0u64;
    loop {
        let m = match conn.read_within(config.frame_timeout) {
            Ok(m) => m,
            // A clean close between frames ends the session normally.
            Err(ProtocolError::Closed) if current.is_none() => return Ok(served),
            Err(e) => return Err(e),
        };
        match m {
            Message::MaterialBegin { id, bytes } => {
                if current.is_some() {
                    return Err(ProtocolError::Unexpected {
                        expected: "material-chunk or material-end",
                        got: m.kind(),
                    });
                }
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
                let reserved = spool
                    .reserve(expected)
                    .ok_or_else(|| ProtocolError::Limit("the server holds too much garbled material".into()))?;
                let material = Vec::with_capacity(expected as usize);
                current = Some((id, Circuit { material, _reserved: reserved }));
            }
            Message::MaterialChunk(bytes) => {
                let Some((_, c)) = current.as_mut() else {
                    return Err(ProtocolError::Unexpected {
                        expected: "material-begin or query",
                        got: MessageKind::MaterialChunk,
                    });
                };
                let total = c.material.len() as u64 + bytes.len() as u64;
                if total > expected {
                    return Err(ProtocolError::WrongSize { what: "garbled material", expected, got: total });
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
            }
            Message::Query { id, labels } => {
                if current.is_some() {
                    return Err(ProtocolError::Unexpected {
                        expected: "material-chunk or material-end",
                        got: MessageKind::Query,
                    });
                }
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
                let input = CrtTensor::from_blocks(&plan.network().base, plan.input_shape(), &labels)
                    .map_err(|e| ProtocolError::malformed(MessageKind::Query, format!("{e:#}")))?;
                let out = engine::evaluate(plan, circuit.material.as_slice(), &input)
                    .map_err(|e| ProtocolError::Engine(format!("evaluating circuit: {e:#}")))?;
                // The circuit (and its spool share) is gone before the answer leaves.
                drop(circuit);
                conn.write(&Message::Answer { id, labels: out.to_blocks() })?;
                served += 1;
            }
            Message::Bye if current.is_none() => return Ok(served),
            Message::Error(s) => return Err(ProtocolError::Remote(s)),
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
