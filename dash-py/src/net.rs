//! `dashgc.Server` and `dashgc.Client`: the evaluator and the garbler over
//! the project's protocol (`dash_host::protocol`, `docs/PROTOCOL.md`), plain
//! TCP.

use crate::errors::{ProtocolError, no_panic, protocol_error, protocol_error_at};
use crate::model::{Loaded, Model};
use crate::progress::Progress;
use dash_host::protocol::client::{self, ClientConfig};
use dash_host::protocol::metrics::Metrics;
use dash_host::protocol::server::{BUSY, ServerConfig, Service};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the accept loop looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

fn seconds(what: &str, s: f64) -> PyResult<Duration> {
    if s.is_finite() && s > 0.0 && s < 1e9 {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(PyValueError::new_err(format!("{what} must be a positive number of seconds, not {s}")))
    }
}

/// Open connections, so that stopping the server can end them at once
/// instead of waiting for their clients or the idle timeout.
#[derive(Default)]
struct Open {
    next: usize,
    streams: Vec<(usize, TcpStream)>,
}

/// The accept loop: one thread per connection (at most `max_connections`;
/// beyond, the peer is told the server is busy), until `stop` is set.
fn serve(listener: TcpListener, service: &Service<'_>, stop: &AtomicBool, max_connections: usize) {
    let open = Mutex::new(Open::default());
    let active = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        while !stop.load(Ordering::Acquire) {
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(ACCEPT_POLL);
                    continue;
                }
                Err(_) => {
                    // Out of descriptors and the like: wait, do not spin.
                    std::thread::sleep(ACCEPT_POLL * 5);
                    continue;
                }
            };
            // The listener polls; the connection itself blocks with the
            // protocol's own timeouts.
            if stream.set_nonblocking(false).is_err() {
                continue;
            }
            let metrics = service.metrics();
            metrics.connections.fetch_add(1, Ordering::Relaxed);
            if active.load(Ordering::Acquire) >= max_connections {
                metrics.refused_busy.fetch_add(1, Ordering::Relaxed);
                service.refuse_tcp(stream, BUSY);
                continue;
            }
            let id = match (stream.try_clone(), open.lock()) {
                (Ok(clone), Ok(mut o)) => {
                    o.next += 1;
                    let id = o.next;
                    o.streams.push((id, clone));
                    id
                }
                _ => 0,
            };
            active.fetch_add(1, Ordering::AcqRel);
            let (open, active) = (&open, &active);
            let spawned = std::thread::Builder::new().name("dashgc-py-conn".into()).spawn_scoped(scope, move || {
                service.handle_tcp(stream);
                if let Ok(mut o) = open.lock() {
                    o.streams.retain(|(i, _)| *i != id);
                }
                active.fetch_sub(1, Ordering::AcqRel);
            });
            if spawned.is_err() {
                active.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if let Ok(o) = open.lock() {
            for (_, s) in &o.streams {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    });
}

/// The evaluator: serves `model` over the project's protocol in a
/// background thread (one more per connection), plain TCP, from the moment
/// it is made until `close()` (or the end of a `with` block). Port 0 picks
/// a free port; `.address` is the address bound ("host:port"). `timeout`
/// is how long a connection may stay silent. It evaluates whatever circuits
/// clients garble; only the client learns the outputs.
///
/// Use it on loopback or a trusted network: this server has no TLS and
/// no client authentication (`dashgc serve` has both).
#[pyclass(module = "dashgc")]
pub struct Server {
    address: String,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

impl Server {
    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (model, listen="127.0.0.1:0", *, max_connections=16, timeout=60.0))]
    fn new(py: Python<'_>, model: &Model, listen: &str, max_connections: usize, timeout: f64) -> PyResult<Server> {
        let timeout = seconds("timeout", timeout)?;
        if max_connections == 0 {
            return Err(PyValueError::new_err("max_connections must be at least 1"));
        }
        let listener = py.detach(|| TcpListener::bind(listen))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?.to_string();
        let loaded: Arc<Loaded> = model.inner.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::sync_channel(1);
        let config =
            ServerConfig { max_connections, frame_timeout: timeout, idle_timeout: timeout, ..ServerConfig::default() };
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new().name("dashgc-py-server".into()).spawn(move || {
            let service = Service::new(&loaded.plan, config);
            let _ = tx.send(service.metrics().clone());
            // A panic here would only end this thread: the server stops
            // answering, and the Python side sees connection errors.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                serve(listener, &service, &thread_stop, max_connections)
            }));
        })?;
        let metrics =
            py.detach(move || rx.recv()).map_err(|_| ProtocolError::new_err("the server thread did not start"))?;
        Ok(Server { address, stop, thread: Mutex::new(Some(thread)), metrics })
    }

    /// The address bound, "host:port": what a Client connects to.
    #[getter]
    fn address(&self) -> String {
        self.address.clone()
    }

    /// Whether the server is still serving.
    #[getter]
    fn serving(&self) -> bool {
        !self.stop.load(Ordering::Acquire)
    }

    /// Counters since the start (dict): `connections` accepted, `circuits`
    /// received, `answers` sent, `active` connections.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = &self.metrics;
        let d = PyDict::new(py);
        d.set_item("connections", m.connections.load(Ordering::Relaxed))?;
        d.set_item("circuits", m.circuits.load(Ordering::Relaxed))?;
        d.set_item("answers", m.answers.load(Ordering::Relaxed))?;
        d.set_item("active", m.active.load(Ordering::Relaxed))?;
        Ok(d)
    }

    /// Stops accepting, ends open connections and waits for the server
    /// thread. Idempotent.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.stop());
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        format!("<dashgc.Server on {}{}>", self.address, if self.serving() { "" } else { " (closed)" })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The garbler: connects to a Server (or `dashgc serve --insecure-plaintext`)
/// at `address` ("host:port") and agrees on `model` (protocol, model hash,
/// CRT base). Garbling happens here; the server only ever sees garbled
/// material and input labels. `queue` circuits are garbled and sent ahead,
/// so each image costs one online round.
///
/// Raises ProtocolError if the connection or the agreement fails.
#[pyclass(module = "dashgc")]
pub struct Client {
    inner: Mutex<Option<client::Client>>,
    model: Arc<Loaded>,
    address: String,
    queue: usize,
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (address, model, *, timeout=60.0, queue=4))]
    fn new(py: Python<'_>, address: &str, model: &Model, timeout: f64, queue: usize) -> PyResult<Client> {
        let timeout = seconds("timeout", timeout)?;
        if queue == 0 {
            return Err(PyValueError::new_err("queue must be at least 1"));
        }
        let loaded = model.inner.clone();
        let config = ClientConfig { frame_timeout: timeout, answer_timeout: timeout * 10, tls: None, token: None };
        let client = py.detach(|| {
            no_panic("connecting", || {
                let rng = dash_host::rng::os_seeded().map_err(|e| crate::errors::Error::new_err(format!("{e:#}")))?;
                client::Client::connect(address, &loaded.plan, config, rng)
                    .map_err(|e| protocol_error_at(&e, Some(&format!("connecting to {address}"))))
            })
        })?;
        Ok(Client { inner: Mutex::new(Some(client)), model: loaded, address: address.to_string(), queue })
    }

    /// Private inference of `images` through the server: for each image a
    /// fresh circuit (garbled here, under fresh keys, and streamed ahead),
    /// one online round, and every returned output label decoded and
    /// verified.
    ///
    /// `images` and `progress` as for `dashgc.infer`. Returns an
    /// InferenceResult; its `timings` has `offline` (garbling and
    /// streaming material), `online` (the rounds) and `total` seconds.
    /// Raises AuthenticityError if an answer fails verification (forged or
    /// corrupted), ProtocolError for other failures; after either, this
    /// client is closed (fail-closed): make a new one.
    #[pyo3(signature = (images, *, progress=None))]
    fn infer<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
        progress: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<crate::model::InferenceResult> {
        let batch = self.model.batch(py, images)?;
        let progress = Progress::new(progress, batch.inputs.len())?;
        let start = Instant::now();
        let mut callback_error: Option<PyErr> = None;
        let (outputs, stats) = py.detach(|| {
            no_panic("running private inference through the server", || {
                let mut guard = self.inner.lock().map_err(|_| ProtocolError::new_err("the client is unusable"))?;
                let client = guard.as_mut().ok_or_else(|| ProtocolError::new_err("the client is closed"))?;
                let before = client.stats.clone();
                let result = client::run_batch(client, &batch.inputs, self.queue, true, |i, _| {
                    if callback_error.is_none()
                        && let Err(e) = Python::attach(|py| progress.report(py, i + 1))
                    {
                        callback_error = Some(e);
                    }
                });
                match result {
                    Ok(r) => {
                        let s = &r.stats;
                        let delta = (
                            s.offline_seconds - before.offline_seconds,
                            s.online_seconds - before.online_seconds,
                            s.offline_bytes - before.offline_bytes,
                            s.online_bytes - before.online_bytes,
                        );
                        Ok((r.inferences.into_iter().map(|inf| inf.output).collect::<Vec<_>>(), delta))
                    }
                    Err(e) => {
                        // The connection is closed after any failure (the
                        // engine's client fails closed): drop it.
                        *guard = None;
                        Err(protocol_error(&e))
                    }
                }
            })
        })?;
        if let Some(e) = callback_error {
            return Err(e);
        }
        let (offline_s, online_s, offline_b, online_b) = stats;
        let timings = PyDict::new(py);
        timings.set_item("offline", offline_s)?;
        timings.set_item("online", online_s)?;
        timings.set_item("total", start.elapsed().as_secs_f64())?;
        let bytes = PyDict::new(py);
        bytes.set_item("material", offline_b)?;
        bytes.set_item("online", online_b)?;
        self.model.result(py, &outputs, timings, bytes)
    }

    /// The server's address.
    #[getter]
    fn address(&self) -> String {
        self.address.clone()
    }

    /// Says goodbye to the server and closes the connection. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        // Waiting for the lock without the GIL: another thread's `infer`
        // may hold the lock and need the GIL for its progress callback.
        py.detach(|| match self.inner.lock().ok().and_then(|mut c| c.take()) {
            Some(c) => c.close().map(|_| ()),
            None => Ok(()),
        })
        .map_err(|e| protocol_error(&e))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        // try_lock: a repr must not wait for a running `infer` (with the GIL held).
        let state = match self.inner.try_lock() {
            Ok(c) if c.is_some() => "",
            Ok(_) => " (closed)",
            Err(_) => " (busy)",
        };
        format!("<dashgc.Client to {}{state}>", self.address)
    }
}
