//! Counters of a server, in the Prometheus text format, and a small HTTP
//! endpoint (`--metrics ADDR`) serving them at `/metrics`, with a health
//! check at `/healthz` (200 while the server accepts connections) and
//! `/readyz` (200 while it has a free connection slot, 503 when full).

use super::ProtocolError;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Why a connection was refused or ended in error, as a metric label.
pub const ERROR_KINDS: [&str; 14] = [
    "timeout",
    "closed",
    "truncated",
    "frame",
    "order",
    "agreement",
    "circuit",
    "size",
    "limit",
    "auth",
    "tls",
    "remote",
    "io",
    "engine",
];

/// The label of an error in [`ERROR_KINDS`].
pub fn error_kind(e: &ProtocolError) -> &'static str {
    match e {
        ProtocolError::Timeout { .. } => "timeout",
        ProtocolError::Closed => "closed",
        ProtocolError::Truncated { .. } => "truncated",
        ProtocolError::UnknownType(_) | ProtocolError::Oversized { .. } | ProtocolError::Malformed { .. } => "frame",
        ProtocolError::Unexpected { .. } => "order",
        ProtocolError::BadMagic | ProtocolError::Mismatch { .. } => "agreement",
        ProtocolError::UnknownCircuit(_) | ProtocolError::CircuitReused(_) | ProtocolError::WrongCircuit { .. } => {
            "circuit"
        }
        ProtocolError::WrongSize { .. } => "size",
        ProtocolError::Limit(_) => "limit",
        ProtocolError::Auth(_) => "auth",
        ProtocolError::Tls(_) => "tls",
        ProtocolError::Remote(_) => "remote",
        ProtocolError::Io { .. } => "io",
        ProtocolError::Engine { .. } | ProtocolError::Local(_) | ProtocolError::Verification(_) => "engine",
    }
}

/// Upper bounds (seconds) of the evaluation-time histogram's buckets.
pub const EVAL_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A server's counters.
#[derive(Default)]
pub struct Metrics {
    /// Connections accepted (all, served or refused).
    pub connections: AtomicU64,
    /// Connections refused because the server was full.
    pub refused_busy: AtomicU64,
    /// Connections being served now.
    pub active: AtomicUsize,
    /// Connections that agreed on the model.
    pub agreed: AtomicU64,
    /// Circuits whose material arrived in full.
    pub circuits: AtomicU64,
    /// Answers sent.
    pub answers: AtomicU64,
    /// Protocol bytes received (after TLS).
    pub bytes_in: AtomicU64,
    /// Protocol bytes sent (before TLS).
    pub bytes_out: AtomicU64,
    errors: [AtomicU64; ERROR_KINDS.len()],
    eval_buckets: [AtomicU64; EVAL_BUCKETS.len()],
    eval_count: AtomicU64,
    eval_micros: AtomicU64,
    /// Whether the accept loop runs (the health check).
    pub accepting: AtomicBool,
    /// Connection slots (for `/readyz`).
    pub capacity: AtomicUsize,
}

impl Metrics {
    /// Counts one error.
    pub fn error(&self, e: &ProtocolError) {
        self.error_kind(error_kind(e));
    }

    /// Counts one error of a kind of [`ERROR_KINDS`].
    pub fn error_kind(&self, kind: &str) {
        if let Some(i) = ERROR_KINDS.iter().position(|k| *k == kind) {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Errors of a kind so far.
    pub fn errors(&self, kind: &str) -> u64 {
        ERROR_KINDS.iter().position(|k| *k == kind).map_or(0, |i| self.errors[i].load(Ordering::Relaxed))
    }

    /// Records one evaluation's time.
    pub fn evaluation(&self, seconds: f64) {
        for (b, &le) in self.eval_buckets.iter().zip(&EVAL_BUCKETS) {
            if seconds <= le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.eval_count.fetch_add(1, Ordering::Relaxed);
        self.eval_micros.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut s = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n");
        };
        counter("dashgc_connections_total", "Connections accepted.", load(&self.connections));
        counter(
            "dashgc_connections_refused_busy_total",
            "Connections refused: no free slot.",
            load(&self.refused_busy),
        );
        counter("dashgc_agreements_total", "Connections that agreed on the model.", load(&self.agreed));
        counter("dashgc_circuits_received_total", "Circuits whose material arrived in full.", load(&self.circuits));
        counter("dashgc_answers_total", "Answers sent.", load(&self.answers));
        counter("dashgc_bytes_in_total", "Protocol bytes received.", load(&self.bytes_in));
        counter("dashgc_bytes_out_total", "Protocol bytes sent.", load(&self.bytes_out));
        let _ = write!(
            s,
            "# HELP dashgc_connections_active Connections being served.\n# TYPE dashgc_connections_active gauge\ndashgc_connections_active {}\n",
            self.active.load(Ordering::Relaxed)
        );
        let _ = write!(
            s,
            "# HELP dashgc_errors_total Connections ended by an error, by kind.\n# TYPE dashgc_errors_total counter\n"
        );
        for (k, v) in ERROR_KINDS.iter().zip(&self.errors) {
            let _ = writeln!(s, "dashgc_errors_total{{kind=\"{k}\"}} {}", load(v));
        }
        let _ = write!(
            s,
            "# HELP dashgc_evaluation_seconds Time to evaluate one circuit.\n# TYPE dashgc_evaluation_seconds histogram\n"
        );
        for (b, le) in self.eval_buckets.iter().zip(&EVAL_BUCKETS) {
            let _ = writeln!(s, "dashgc_evaluation_seconds_bucket{{le=\"{le}\"}} {}", load(b));
        }
        let n = load(&self.eval_count);
        let _ = writeln!(s, "dashgc_evaluation_seconds_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(s, "dashgc_evaluation_seconds_sum {}", load(&self.eval_micros) as f64 / 1e6);
        let _ = writeln!(s, "dashgc_evaluation_seconds_count {n}");
        s
    }
}

/// Most requests of the endpoint served at once (each has a 2 s budget).
const MAX_HTTP_AT_ONCE: usize = 8;

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` forever, a
/// short-lived thread per request (at most 8 at once; more are closed).
pub fn serve_http(listener: TcpListener, metrics: Arc<Metrics>) {
    let busy = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if busy.fetch_add(1, Ordering::AcqRel) >= MAX_HTTP_AT_ONCE {
            busy.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let (m, b) = (metrics.clone(), busy.clone());
        let spawned = std::thread::Builder::new().name("dashgc-metrics".into()).spawn(move || {
            http_request(stream, &m);
            b.fetch_sub(1, Ordering::AcqRel);
        });
        if spawned.is_err() {
            busy.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Answers one HTTP/1.x request (request head at most 4 KiB, 2 s).
pub fn http_request(mut stream: TcpStream, metrics: &Metrics) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 4096 {
            break;
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body, ctype) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", metrics.render(), "text/plain; version=0.0.4"),
        ("GET" | "HEAD", "/healthz") => {
            if metrics.accepting.load(Ordering::Acquire) {
                ("200 OK", "ok\n".to_string(), "text/plain")
            } else {
                ("503 Service Unavailable", "not accepting\n".to_string(), "text/plain")
            }
        }
        ("GET" | "HEAD", "/readyz") => {
            let full = metrics.active.load(Ordering::Acquire) >= metrics.capacity.load(Ordering::Acquire);
            if metrics.accepting.load(Ordering::Acquire) && !full {
                ("200 OK", "ready\n".to_string(), "text/plain")
            } else {
                ("503 Service Unavailable", "full\n".to_string(), "text/plain")
            }
        }
        ("GET" | "HEAD", _) => ("404 Not Found", "not found\n".to_string(), "text/plain"),
        _ => ("405 Method Not Allowed", "GET only\n".to_string(), "text/plain"),
    };
    let body = if method == "HEAD" { "" } else { body.as_str() };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}
