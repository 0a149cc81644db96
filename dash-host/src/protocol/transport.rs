//! The byte streams the protocol runs over: a [`Transport`] reads and
//! writes with timeouts (the frame layer, [`super::Conn`], turns them into
//! deadlines) and shuts down. Three kinds: plain TCP (`--insecure-plaintext`
//! and tests), TLS over TCP ([`super::tls`]), and an in-memory pipe
//! ([`mem_pair`]) on which the protocol's tests run without sockets.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A byte stream between client and server.
pub trait Transport: Read + Write + Send {
    /// Reads after this fail with [`io::ErrorKind::TimedOut`] (or
    /// `WouldBlock`) when no byte came within `timeout` (`None`: wait).
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// The same for writes that cannot proceed.
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// Stops sending (the peer reads the end of the stream), keeps reading.
    fn shutdown_write(&mut self);
    /// Closes both directions.
    fn shutdown(&mut self);
    /// The peer's address, for logs.
    fn peer(&self) -> String;
    /// What the transport proved about the peer (a client certificate's
    /// fingerprint), if anything.
    fn peer_identity(&self) -> Option<String> {
        None
    }
    /// The peer's IP address (per-client limits of unauthenticated peers).
    fn peer_ip(&self) -> String {
        self.peer()
    }
}

impl Transport for TcpStream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout.map(|t| t.max(Duration::from_millis(1))))
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout.map(|t| t.max(Duration::from_millis(1))))
    }

    fn shutdown_write(&mut self) {
        let _ = TcpStream::shutdown(self, Shutdown::Write);
    }

    fn shutdown(&mut self) {
        let _ = TcpStream::shutdown(self, Shutdown::Both);
    }

    fn peer(&self) -> String {
        self.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "unknown peer".into())
    }

    fn peer_ip(&self) -> String {
        self.peer_addr().map(|a| a.ip().to_string()).unwrap_or_else(|_| "unknown".into())
    }
}

/// Bytes one direction of an in-memory pipe buffers before writes wait.
pub const MEM_PIPE_BYTES: usize = 4 << 20;

#[derive(Default)]
struct PipeState {
    bytes: VecDeque<u8>,
    /// The writer stopped sending.
    write_closed: bool,
    /// The reader went away: writes fail.
    read_closed: bool,
}

/// One direction of an in-memory pipe.
#[derive(Default)]
struct Pipe {
    state: Mutex<PipeState>,
    changed: Condvar,
    /// Bytes taken out by the reader, in all.
    consumed: AtomicUsize,
    /// Largest buffer a read was called with (what the reader had allocated).
    largest_read: AtomicUsize,
}

impl Pipe {
    fn lock(&self) -> std::sync::MutexGuard<'_, PipeState> {
        // A poisoned pipe is still a consistent byte queue.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One end of an in-memory byte stream (see [`mem_pair`]).
pub struct MemTransport {
    inbound: Arc<Pipe>,
    outbound: Arc<Pipe>,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    name: String,
}

/// Two connected in-memory ends: what one writes the other reads, with
/// timeouts and back-pressure like a socket's.
pub fn mem_pair() -> (MemTransport, MemTransport) {
    let a = Arc::new(Pipe::default());
    let b = Arc::new(Pipe::default());
    let end = |inbound: &Arc<Pipe>, outbound: &Arc<Pipe>, name: &str| MemTransport {
        inbound: inbound.clone(),
        outbound: outbound.clone(),
        read_timeout: None,
        write_timeout: None,
        name: name.into(),
    };
    (end(&a, &b, "memory:client"), end(&b, &a, "memory:server"))
}

impl MemTransport {
    /// Bytes written by this end that the other end has read.
    pub fn peer_consumed(&self) -> usize {
        self.outbound.consumed.load(Ordering::Acquire)
    }

    /// The largest buffer the other end passed to one read.
    pub fn peer_largest_read(&self) -> usize {
        self.outbound.largest_read.load(Ordering::Acquire)
    }

    fn wait<'a>(
        pipe: &'a Pipe,
        guard: std::sync::MutexGuard<'a, PipeState>,
        deadline: Option<Instant>,
    ) -> io::Result<std::sync::MutexGuard<'a, PipeState>> {
        match deadline {
            None => Ok(pipe.changed.wait(guard).unwrap_or_else(|p| p.into_inner())),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "in-memory pipe timed out"));
                }
                Ok(pipe.changed.wait_timeout(guard, left).unwrap_or_else(|p| p.into_inner()).0)
            }
        }
    }
}

impl Read for MemTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inbound.largest_read.fetch_max(buf.len(), Ordering::AcqRel);
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = self.read_timeout.map(|t| Instant::now() + t);
        let pipe = &*self.inbound;
        let mut s = pipe.lock();
        loop {
            if !s.bytes.is_empty() {
                let n = buf.len().min(s.bytes.len());
                for (dst, src) in buf.iter_mut().zip(s.bytes.drain(..n)) {
                    *dst = src;
                }
                pipe.consumed.fetch_add(n, Ordering::AcqRel);
                pipe.changed.notify_all();
                return Ok(n);
            }
            if s.write_closed {
                return Ok(0);
            }
            if s.read_closed {
                return Err(io::Error::new(io::ErrorKind::NotConnected, "in-memory pipe shut down"));
            }
            s = MemTransport::wait(pipe, s, deadline)?;
        }
    }
}

impl Write for MemTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = self.write_timeout.map(|t| Instant::now() + t);
        let pipe = &*self.outbound;
        let mut s = pipe.lock();
        loop {
            if s.read_closed || s.write_closed {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "in-memory pipe closed"));
            }
            let room = MEM_PIPE_BYTES.saturating_sub(s.bytes.len());
            if room > 0 {
                let n = room.min(buf.len());
                s.bytes.extend(&buf[..n]);
                pipe.changed.notify_all();
                return Ok(n);
            }
            s = MemTransport::wait(pipe, s, deadline)?;
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for MemTransport {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.read_timeout = timeout;
        Ok(())
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.write_timeout = timeout;
        Ok(())
    }

    fn shutdown_write(&mut self) {
        self.outbound.lock().write_closed = true;
        self.outbound.changed.notify_all();
    }

    fn shutdown(&mut self) {
        self.shutdown_write();
        let mut s = self.inbound.lock();
        s.read_closed = true;
        s.bytes.clear();
        drop(s);
        self.inbound.changed.notify_all();
    }

    fn peer(&self) -> String {
        self.name.clone()
    }
}

impl Drop for MemTransport {
    fn drop(&mut self) {
        Transport::shutdown(self);
    }
}

/// Text from a peer made safe to log or print: control characters
/// (terminal escapes, line breaks, C1 controls) and bidirectional-text
/// overrides are written as `\u{…}` escapes, and the text is cut at 1,024
/// characters.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(1024));
    for (i, c) in text.chars().enumerate() {
        if i == 1024 {
            out.push('…');
            break;
        }
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_escapes_controls_and_bidi_and_keeps_text() {
        assert_eq!(sanitize("model hash mismatch: ab12"), "model hash mismatch: ab12");
        let s = sanitize("\x1b[2J\x1b]0;owned\x07line\nnext\r\u{202e}txt.exe\u{9b}");
        assert!(!s.chars().any(|c| c.is_control()), "{s:?}");
        assert!(!s.contains('\u{202e}'));
        assert!(s.contains("\\u{1b}[2J") && s.contains("line\\u{a}next"), "{s}");
        assert_eq!(sanitize(&"é".repeat(5000)).chars().count(), 1025);
    }

    #[test]
    fn mem_pipe_reads_writes_times_out_and_closes() {
        let (mut a, mut b) = mem_pair();
        a.write_all(b"hello").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(b.read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(a.peer_consumed(), 5);
        assert_eq!(a.peer_largest_read(), 8);
        Transport::set_read_timeout(&mut b, Some(Duration::from_millis(30))).unwrap();
        let t = Instant::now();
        assert_eq!(b.read(&mut buf).unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(25));
        a.shutdown_write();
        assert_eq!(b.read(&mut buf).unwrap(), 0);
        drop(b);
        assert!(a.write(b"x").is_err());
    }
}
