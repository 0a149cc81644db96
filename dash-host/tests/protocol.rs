//! The client–server protocol in one process, with a small network, over
//! each transport (in memory, plain TCP on loopback, TLS on loopback):
//! honest runs against the plaintext network, a malicious-server suite
//! (every forged, misrouted, replayed, garbled, truncated or oversized
//! answer is rejected by the client), fault tests (bad and slow clients get
//! an error or a timeout, never a panic or a hang, and the server keeps
//! serving others), and the operator's side: TLS and client certificates,
//! bearer tokens, per-client limits, time and idle budgets, refusals off
//! the accept loop, sanitised logs, metrics, and 32 concurrent clients.

use dash_core::{Block, CrtBase};
use dash_host::engine::{self, EngineError, Plan};
use dash_host::network::{IntLayer, IntNetwork};
use dash_host::protocol::auth::{ClientLimits, Token, TokenStore, token_hash_hex};
use dash_host::protocol::client::{Client, ClientConfig, run_batch};
use dash_host::protocol::metrics::{self, Metrics};
use dash_host::protocol::server::{Server, ServerConfig, Service};
use dash_host::protocol::tls::{self, ClientTls, ServerTrust, TlsClientStream, TlsServerStream};
use dash_host::protocol::transport::{Transport, mem_pair};
use dash_host::protocol::wire::{self, CircuitId, Message, MessageKind};
use dash_host::protocol::{self, Conn, ProtocolError};
use dash_host::tensor::CrtTensor;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

fn ints(r: &mut ChaCha20Rng, n: usize, lo: i64, hi: i64) -> Vec<i64> {
    (0..n).map(|_| lo + (r.next_u64() % (hi - lo + 1) as u64) as i64).collect()
}

/// 6 → 4 → ReLU → 3 on five primes: a few hundred ciphertexts per circuit.
fn small_net(seed: u64) -> IntNetwork {
    let mut r = ChaCha20Rng::seed_from_u64(seed);
    let layers = vec![
        IntLayer::Dense { inputs: 6, outputs: 4, weights: ints(&mut r, 24, -2, 2), bias: ints(&mut r, 4, -4, 4) },
        IntLayer::Relu,
        IntLayer::Dense { inputs: 4, outputs: 3, weights: ints(&mut r, 12, -2, 2), bias: ints(&mut r, 3, -4, 4) },
    ];
    IntNetwork::new(vec![6], layers, CrtBase::first(5).unwrap()).unwrap()
}

fn net() -> &'static IntNetwork {
    static NET: OnceLock<IntNetwork> = OnceLock::new();
    NET.get_or_init(|| small_net(1))
}

fn plan() -> &'static Plan {
    static PLAN: OnceLock<Plan> = OnceLock::new();
    PLAN.get_or_init(|| Plan::new(net()).unwrap())
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn quick() -> ClientConfig {
    ClientConfig {
        frame_timeout: Duration::from_secs(10),
        answer_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Certificates (made here: no private key is committed) and transports.

struct Pki {
    /// CA of the server certificates.
    ca: CertificateDer<'static>,
    /// A server certificate for localhost and 127.0.0.1, and its key.
    server: (CertificateDer<'static>, Vec<u8>),
    /// A server certificate of another CA (a wrong server).
    rogue: (CertificateDer<'static>, Vec<u8>),
    /// CA of the client certificates.
    client_ca: CertificateDer<'static>,
    /// A client certificate, and its key.
    client: (CertificateDer<'static>, Vec<u8>),
    /// A client certificate of another CA.
    rogue_client: (CertificateDer<'static>, Vec<u8>),
}

fn make_ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

fn make_leaf(
    ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    names: &[&str],
    usage: rcgen::ExtendedKeyUsagePurpose,
) -> (CertificateDer<'static>, Vec<u8>) {
    let mut params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.der().clone(), key.serialize_der())
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let ca = make_ca("test server CA");
        let rogue_ca = make_ca("rogue CA");
        let client_ca = make_ca("test client CA");
        Pki {
            server: make_leaf(&ca, &["localhost", "127.0.0.1"], ServerAuth),
            rogue: make_leaf(&rogue_ca, &["localhost", "127.0.0.1"], ServerAuth),
            client: make_leaf(&client_ca, &["client-one"], ClientAuth),
            rogue_client: make_leaf(&rogue_ca, &["client-rogue"], ClientAuth),
            ca: ca.der().clone(),
            client_ca: client_ca.der().clone(),
        }
    })
}

fn key(der: &[u8]) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.to_vec()))
}

fn server_tls(mutual: bool) -> Arc<rustls::ServerConfig> {
    let p = pki();
    tls::server_config(vec![p.server.0.clone()], key(&p.server.1), mutual.then(|| vec![p.client_ca.clone()])).unwrap()
}

fn rogue_server_tls() -> Arc<rustls::ServerConfig> {
    let p = pki();
    tls::server_config(vec![p.rogue.0.clone()], key(&p.rogue.1), None).unwrap()
}

fn client_tls() -> ClientTls {
    ClientTls::new(ServerTrust::Ca(vec![pki().ca.clone()]), "127.0.0.1", None).unwrap()
}

fn client_tls_with_cert(cert: &(CertificateDer<'static>, Vec<u8>)) -> ClientTls {
    ClientTls::new(ServerTrust::Ca(vec![pki().ca.clone()]), "127.0.0.1", Some((vec![cert.0.clone()], key(&cert.1))))
        .unwrap()
}

/// The transports every suite runs over.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Mem,
    Tcp,
    Tls,
}

const MODES: [Mode; 3] = [Mode::Mem, Mode::Tcp, Mode::Tls];

/// A real server (its service lives until the test process ends), reached
/// over one transport.
#[derive(Clone)]
struct Target {
    addr: Option<SocketAddr>,
    tls: Option<ClientTls>,
    service: &'static Service<'static>,
}

impl Target {
    fn metrics(&self) -> &Metrics {
        self.service.metrics()
    }

    /// A client's config for this target.
    fn config(&self, base: ClientConfig) -> ClientConfig {
        ClientConfig { tls: base.tls.clone().or_else(|| self.tls.clone()), ..base }
    }

    fn client(&self, config: ClientConfig, seed: u64) -> Result<Client, ProtocolError> {
        let config = self.config(config);
        match self.addr {
            Some(addr) => Client::connect(addr, plan(), config, rng(seed)),
            None => {
                let (c, s) = mem_pair();
                let service = self.service;
                std::thread::spawn(move || service.handle(Box::new(s)));
                Client::over(c, plan(), config, rng(seed))
            }
        }
    }

    /// A raw connection, to play a misbehaving client; with a second
    /// handle on the socket (TCP and TLS) to see whether the server spoke
    /// or closed without reading.
    fn raw(&self) -> Raw {
        match (self.addr, &self.tls) {
            (Some(addr), None) => {
                let s = TcpStream::connect(addr).unwrap();
                Raw { probe: Some(s.try_clone().unwrap()), t: Box::new(s) }
            }
            (Some(addr), Some(tls)) => {
                let s = TcpStream::connect(addr).unwrap();
                let probe = s.try_clone().unwrap();
                let t = TlsClientStream::connect(tls, s, Instant::now() + Duration::from_secs(10)).unwrap();
                Raw { probe: Some(probe), t: Box::new(t) }
            }
            (None, _) => {
                let (c, s) = mem_pair();
                let service = self.service;
                std::thread::spawn(move || service.handle(Box::new(s)));
                Raw { probe: None, t: Box::new(c) }
            }
        }
    }
}

struct Raw {
    t: Box<dyn Transport>,
    probe: Option<TcpStream>,
}

impl Raw {
    /// Whether the server has sent something or closed.
    fn server_spoke(&self) -> bool {
        let Some(p) = &self.probe else { return false };
        p.set_nonblocking(true).unwrap();
        let spoke = !matches!(p.peek(&mut [0u8; 1]), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock);
        p.set_nonblocking(false).unwrap();
        spoke
    }
}

fn service(config: ServerConfig) -> &'static Service<'static> {
    Box::leak(Box::new(Service::new(plan(), config)))
}

/// A real server over `mode`: on 127.0.0.1:0 in a thread of its own (TCP
/// and TLS; TLS adds `server_tls(false)` unless the config has TLS), or in
/// memory.
fn start(mode: Mode, mut config: ServerConfig) -> Target {
    if mode == Mode::Tls && config.tls.is_none() {
        config.tls = Some(server_tls(false));
    }
    let tls = (mode == Mode::Tls).then(client_tls);
    let service = service(config);
    if mode == Mode::Mem {
        return Target { addr: None, tls, service };
    }
    let server = Server::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    std::thread::spawn(move || server.run(service));
    Target { addr: Some(addr), tls, service }
}

fn strict() -> ServerConfig {
    ServerConfig { frame_timeout: Duration::from_millis(800), max_pending: 3, ..ServerConfig::default() }
}

/// The honest server must still answer correctly.
fn honest_round_trip(target: &Target, seed: u64) {
    honest_round_trip_with(target, quick(), seed);
}

fn honest_round_trip_with(target: &Target, config: ClientConfig, seed: u64) {
    let mut client = target.client(config, seed).expect("connect");
    let x = ints(&mut rng(seed + 1), 6, -5, 5);
    let got = client.infer(&x).expect("an honest round");
    assert_eq!(got.output, net().eval_plain(&x).unwrap());
    client.close().unwrap();
}

#[test]
fn honest_server_batch_equals_plaintext_and_online_bytes_are_fixed() {
    for mode in MODES {
        honest_batch(mode);
    }
}

fn honest_batch(mode: Mode) {
    let target = start(mode, ServerConfig::default());
    let mut client = target.client(quick(), 7).unwrap();
    let mut r = rng(8);
    let inputs: Vec<Vec<i64>> = (0..12).map(|_| ints(&mut r, 6, -5, 5)).collect();
    let mut seen = Vec::new();
    let batch = run_batch(&mut client, &inputs, 4, true, |i, inf| seen.push((i, inf.circuit))).unwrap();
    assert_eq!(batch.queue, 4);
    for (x, inf) in inputs.iter().zip(&batch.inferences) {
        assert_eq!(inf.output, net().eval_plain(x).unwrap());
        assert_eq!(inf.online_bytes, protocol::online_bytes(plan()));
    }
    // One fresh circuit per inference.
    let mut ids: Vec<CircuitId> = batch.inferences.iter().map(|i| i.circuit).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), inputs.len());
    assert_eq!(seen.len(), inputs.len());
    assert_eq!(batch.stats.circuits, 12);
    assert_eq!(batch.stats.online_bytes, 12 * protocol::online_bytes(plan()));
    // The serial variant, on the same connection.
    let serial = run_batch(&mut client, &inputs[..5], 2, false, |_, _| {}).unwrap();
    assert_eq!(serial.queue, 2);
    for (x, inf) in inputs.iter().zip(&serial.inferences) {
        assert_eq!(inf.output, net().eval_plain(x).unwrap());
    }
    let stats = client.close().unwrap();
    assert_eq!(stats.circuits, 17);
    // The server counted them, and the bytes of both phases.
    let m = target.metrics();
    eventually(|| m.answers.load(Ordering::Relaxed) == 17);
    assert_eq!(m.circuits.load(Ordering::Relaxed), 17, "{mode:?}");
    assert!(m.bytes_in.load(Ordering::Relaxed) >= stats.offline_bytes, "{mode:?}");
    assert!(m.bytes_out.load(Ordering::Relaxed) >= 17 * (protocol::output_labels(plan()) as u64 * 16), "{mode:?}");
    // Online bytes: input and output labels only (6 in, 3 out, 5 residues).
    assert_eq!(protocol::online_bytes(plan()), 2 * (5 + 16) + (6 + 3) * 5 * 16);
}

#[test]
fn online_bytes_do_not_grow_with_depth() {
    let mut r = rng(3);
    let mut layers = Vec::new();
    let shallow = IntNetwork::new(
        vec![6],
        vec![IntLayer::Dense { inputs: 6, outputs: 3, weights: ints(&mut r, 18, -2, 2), bias: vec![0; 3] }],
        CrtBase::first(5).unwrap(),
    )
    .unwrap();
    for _ in 0..6 {
        layers.push(IntLayer::Dense { inputs: 6, outputs: 6, weights: ints(&mut r, 36, -1, 1), bias: vec![0; 6] });
        layers.push(IntLayer::Relu);
    }
    layers.push(IntLayer::Dense { inputs: 6, outputs: 3, weights: ints(&mut r, 18, -1, 1), bias: vec![0; 3] });
    let deep = IntNetwork::new(vec![6], layers, CrtBase::first(5).unwrap()).unwrap();
    let (ps, pd) = (Plan::new(&shallow).unwrap(), Plan::new(&deep).unwrap());
    assert_eq!(protocol::online_bytes(&ps), protocol::online_bytes(&pd));
    assert!(protocol::material_bytes(&pd) > protocol::material_bytes(&ps));
}

#[test]
fn material_size_formula_matches_the_garbler() {
    for seed in 0..3 {
        let n = small_net(seed);
        let p = Plan::new(&n).unwrap();
        let mut out = Vec::new();
        engine::garble(&p, &mut rng(seed), &mut out).unwrap();
        assert_eq!(out.len() as u64, protocol::material_bytes(&p));
    }
}

// ---------------------------------------------------------------------------
// Malicious servers.

/// What a fake server does with a query, given the honest answer labels
/// and the honest answers it gave before on this connection.
#[derive(Clone, Debug)]
enum Cheat {
    FlipBit {
        label: usize,
        bit: u32,
    },
    /// Label `from` in place of label `to` (another wire's label).
    OtherWire {
        from: usize,
        to: usize,
    },
    /// The previous inference's labels under this query's id.
    OtherInference,
    /// The previous answer, byte for byte.
    Replay,
    /// Random bytes instead of a frame.
    Garbage(u64),
    /// The first `n` bytes of the honest frame, then close.
    Truncated(usize),
    /// A frame header announcing more than any answer may hold.
    Oversized,
    /// One label too few.
    Short,
    /// One label too many (longer than this model's answer).
    Long,
    /// Another kind of frame.
    WrongKind,
    /// Never answer.
    Silent,
    /// Answer with another circuit id.
    OtherId,
}

/// Runs an honest evaluator with one cheat on the `cheat_on`-th query of
/// one connection.
fn fake_server(transport: Box<dyn Transport>, cheat: Cheat, cheat_on: usize) {
    let mut conn = Conn::boxed(transport, Duration::from_secs(10)).unwrap();
    let Message::Hello(_) = conn.read_within(Duration::from_secs(10)).unwrap() else { panic!("no hello") };
    conn.write(&Message::Welcome { hello: protocol::hello_for(plan()), max_pending: 8 }).unwrap();
    let mut material: std::collections::HashMap<CircuitId, Vec<u8>> = Default::default();
    let mut current: Option<(CircuitId, Vec<u8>)> = None;
    let mut answers: Vec<(CircuitId, Vec<Block>)> = Vec::new();
    let mut queries = 0;
    loop {
        let Ok(m) = conn.read_within(Duration::from_secs(10)) else { return };
        match m {
            Message::MaterialBegin { id, .. } => current = Some((id, Vec::new())),
            Message::MaterialChunk(b) => current.as_mut().unwrap().1.extend_from_slice(&b),
            Message::MaterialEnd { .. } => {
                let (id, m) = current.take().unwrap();
                material.insert(id, m);
            }
            Message::Query { id, labels } => {
                let input = CrtTensor::from_blocks(&net().base, plan().input_shape(), &labels).unwrap();
                let out = engine::evaluate(plan(), material.remove(&id).unwrap().as_slice(), &input).unwrap();
                let mut honest = out.to_blocks();
                let this = queries;
                queries += 1;
                if this != cheat_on {
                    conn.write(&Message::Answer { id, labels: honest.clone() }).unwrap();
                    answers.push((id, honest));
                    continue;
                }
                let frame = match &cheat {
                    Cheat::FlipBit { label, bit } => {
                        honest[*label].0 ^= 1u128 << bit;
                        Message::Answer { id, labels: honest }.to_frame().unwrap()
                    }
                    Cheat::OtherWire { from, to } => {
                        honest[*to] = honest[*from];
                        Message::Answer { id, labels: honest }.to_frame().unwrap()
                    }
                    Cheat::OtherInference => {
                        Message::Answer { id, labels: answers.last().unwrap().1.clone() }.to_frame().unwrap()
                    }
                    Cheat::Replay => {
                        let (old_id, old) = answers.last().unwrap().clone();
                        Message::Answer { id: old_id, labels: old }.to_frame().unwrap()
                    }
                    Cheat::Garbage(seed) => {
                        let mut g = vec![0u8; 64 + (*seed as usize % 500)];
                        rng(*seed).fill_bytes(&mut g);
                        g
                    }
                    Cheat::Truncated(n) => {
                        let f = Message::Answer { id, labels: honest }.to_frame().unwrap();
                        f[..*n.min(&(f.len() - 1))].to_vec()
                    }
                    Cheat::Oversized => vec![MessageKind::Answer.byte(), 0xff, 0xff, 0xff, 0xff],
                    Cheat::Short => {
                        honest.pop();
                        Message::Answer { id, labels: honest }.to_frame().unwrap()
                    }
                    Cheat::Long => {
                        honest.push(honest[0]);
                        Message::Answer { id, labels: honest }.to_frame().unwrap()
                    }
                    Cheat::WrongKind => Message::MaterialEnd { id }.to_frame().unwrap(),
                    Cheat::Silent => {
                        std::thread::sleep(Duration::from_secs(3));
                        return;
                    }
                    Cheat::OtherId => {
                        let mut other = id;
                        other[0] ^= 1;
                        Message::Answer { id: other, labels: honest }.to_frame().unwrap()
                    }
                };
                // Raw bytes, so that malformed frames go out as they are.
                let _ = conn_raw_write(&mut conn, &frame);
                conn.shutdown();
                return;
            }
            _ => return,
        }
    }
}

fn conn_raw_write(conn: &mut Conn, bytes: &[u8]) -> std::io::Result<()> {
    // Conn only writes whole messages; write on its transport directly.
    conn.raw_stream().write_all(bytes)?;
    conn.raw_stream().flush()
}

/// One trial over `mode`: a client runs `cheat_on + 1` inferences against
/// a fake server; the last must fail (and the ones before must succeed).
fn trial(mode: Mode, cheat: Cheat, cheat_on: usize, seed: u64) -> ProtocolError {
    let c = cheat.clone();
    let config = ClientConfig {
        frame_timeout: Duration::from_secs(10),
        answer_timeout: Duration::from_millis(1500),
        ..ClientConfig::default()
    };
    let (server, client) = match mode {
        Mode::Mem => {
            let (client_end, server_end) = mem_pair();
            let server = std::thread::spawn(move || fake_server(Box::new(server_end), c, cheat_on));
            (server, Client::over(client_end, plan(), config, rng(seed)))
        }
        Mode::Tcp | Mode::Tls => {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = std::thread::spawn(move || {
                let (stream, _) = listener.accept().unwrap();
                let t: Box<dyn Transport> = if mode == Mode::Tls {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    Box::new(TlsServerStream::accept(server_tls(false), stream, deadline).unwrap())
                } else {
                    Box::new(stream)
                };
                fake_server(t, c, cheat_on)
            });
            let config = ClientConfig { tls: (mode == Mode::Tls).then(client_tls), ..config };
            (server, Client::connect(addr, plan(), config, rng(seed)))
        }
    };
    let mut client = client.unwrap();
    let mut r = rng(seed ^ 0xabc);
    for i in 0..cheat_on {
        let x = ints(&mut r, 6, -5, 5);
        let got = client.infer(&x).unwrap_or_else(|e| panic!("honest query {i} before {cheat:?} failed: {e}"));
        assert_eq!(got.output, net().eval_plain(&x).unwrap());
    }
    let x = ints(&mut r, 6, -5, 5);
    let err = match client.infer(&x) {
        Ok(inf) => panic!("{cheat:?}: the client accepted a forged answer: {:?}", inf.output),
        Err(e) => e,
    };
    // Fail closed: the connection is not used again.
    assert!(client.infer(&x).is_err(), "{cheat:?}: the client went on after a failure");
    server.join().unwrap();
    err
}

#[test]
fn every_single_bit_flip_of_every_output_label_is_rejected() {
    let labels = protocol::output_labels(plan());
    let mut trials = 0;
    // Every bit of the first label; a spread of bits of every label.
    let mut cases: Vec<(usize, u32)> = (0..128).map(|b| (0, b)).collect();
    for l in 1..labels {
        for b in [0, 1, 7, 31, 63, 64, 100, 127, (l as u32 * 37) % 128] {
            cases.push((l, b));
        }
    }
    for mode in MODES {
        for (i, &(label, bit)) in cases.iter().enumerate() {
            let e = trial(mode, Cheat::FlipBit { label, bit }, 0, 1000 + i as u64);
            assert!(
                matches!(e, ProtocolError::Verification(EngineError::Authenticity)),
                "{mode:?} label {label} bit {bit}: {e}"
            );
            trials += 1;
        }
    }
    assert_eq!(trials, 3 * cases.len());
}

#[test]
fn labels_of_other_wires_and_other_inferences_are_rejected() {
    for mode in MODES {
        other_wires_and_inferences(mode);
    }
}

fn other_wires_and_inferences(mode: Mode) {
    let labels = protocol::output_labels(plan());
    let k = net().base.len();
    for to in 0..labels {
        // Same residue of another element, and another residue of the same element.
        let same_residue = (to + k) % labels;
        let other_residue = to - to % k + (to + 1) % k;
        for from in [same_residue, other_residue] {
            let e = trial(mode, Cheat::OtherWire { from, to }, 0, 5000 + (to * 2 + from) as u64);
            assert!(matches!(e, ProtocolError::Verification(EngineError::Authenticity)), "label {from} for {to}: {e}");
        }
    }
    for s in 0..5 {
        let e = trial(mode, Cheat::OtherInference, 1, 6000 + s);
        assert!(matches!(e, ProtocolError::Verification(EngineError::Authenticity)), "{e}");
        // Callers that only hold a `dyn Error` find the engine's error as its source.
        let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<EngineError>());
        assert!(matches!(source, Some(EngineError::Authenticity)), "{e}");
    }
}

#[test]
fn replayed_misrouted_malformed_and_missing_answers_are_rejected() {
    for mode in MODES {
        replayed_misrouted_malformed_missing(mode);
    }
}

fn replayed_misrouted_malformed_missing(mode: Mode) {
    for s in 0..3 {
        let e = trial(mode, Cheat::Replay, 1 + s as usize, 7000 + s);
        assert!(matches!(e, ProtocolError::WrongCircuit { .. }), "replay: {e}");
        let e = trial(mode, Cheat::OtherId, 0, 7100 + s);
        assert!(matches!(e, ProtocolError::WrongCircuit { .. }), "other id: {e}");
    }
    for s in 0..20 {
        let e = trial(mode, Cheat::Garbage(s), 0, 7200 + s);
        assert!(
            matches!(
                e,
                ProtocolError::UnknownType(_)
                    | ProtocolError::Oversized { .. }
                    | ProtocolError::Truncated { .. }
                    | ProtocolError::Malformed { .. }
                    | ProtocolError::Unexpected { .. }
                    | ProtocolError::Closed
            ),
            "garbage {s}: {e}"
        );
    }
    let frame_len = wire::FRAME_HEADER_BYTES + wire::CIRCUIT_ID_BYTES + protocol::output_labels(plan()) * 16;
    for n in [0, 1, 4, 5, 6, 20, 21, 22, frame_len / 2, frame_len - 1] {
        let e = trial(mode, Cheat::Truncated(n), 0, 7300 + n as u64);
        assert!(matches!(e, ProtocolError::Truncated { .. } | ProtocolError::Closed), "truncated at {n}: {e}");
    }
    let e = trial(mode, Cheat::Oversized, 0, 7400);
    assert!(matches!(e, ProtocolError::Oversized { .. }), "{e}");
    let e = trial(mode, Cheat::Short, 0, 7401);
    assert!(matches!(e, ProtocolError::WrongSize { .. }), "{e}");
    // Refused by size: before reading when the answer is longer than an
    // error frame may be, after reading otherwise (this small model).
    let e = trial(mode, Cheat::Long, 0, 7404);
    assert!(matches!(e, ProtocolError::Oversized { .. } | ProtocolError::WrongSize { .. }), "{e}");
    let e = trial(mode, Cheat::WrongKind, 0, 7402);
    assert!(matches!(e, ProtocolError::Unexpected { .. }), "{e}");
    let e = trial(mode, Cheat::Silent, 0, 7403);
    assert!(matches!(e, ProtocolError::Timeout { .. }), "{mode:?}: {e}");
}

#[test]
fn a_server_with_another_model_is_refused_before_anything_else() {
    let other = small_net(99);
    let other_plan = Plan::new(&other).unwrap();
    for mode in [Mode::Tcp, Mode::Tls] {
        let target = start(mode, ServerConfig::default());
        let e = Client::connect(target.addr.unwrap(), &other_plan, target.config(quick()), rng(1))
            .err()
            .expect("must refuse");
        assert!(e.to_string().contains("model hash"), "{e}");
        honest_round_trip(&target, 2);
    }
}

// ---------------------------------------------------------------------------
// Bad clients against the real server.

/// Reads until the server closes; the error it sent, if any. Panics if the
/// server neither answers nor closes within 10 s (it must, by its timeout).
fn server_verdict(raw: &mut Raw) -> Option<String> {
    verdict(&mut *raw.t)
}

fn verdict(t: &mut dyn Transport) -> Option<String> {
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match t.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => {
                panic!("the server did not close the connection: {e}")
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A reset, or TCP closed without TLS close_notify: what came before counts.
            Err(_) => break,
        }
    }
    let messages = wire::decode_stream(&bytes).ok()?;
    messages.into_iter().find_map(|m| if let Message::Error(s) = m { Some(s) } else { None })
}

fn expect_refusal(raw: &mut Raw, what: &str) {
    let v = server_verdict(raw);
    assert!(v.as_deref().is_some_and(|t| t.contains(what)), "expected an error with {what:?}, got {v:?}");
}

fn connect_raw(target: &Target, hello: bool) -> Raw {
    let mut raw = target.raw();
    if hello {
        send(&mut raw, &Message::Hello(protocol::hello_for(plan())));
        raw.t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let m = wire::read_message(&mut raw.t).unwrap();
        assert!(matches!(m, Message::Welcome { .. }), "{m:?}");
    }
    raw
}

fn garbled_circuit(seed: u64) -> (Vec<u8>, engine::GarblerSession) {
    let mut material = Vec::new();
    let session = engine::garble(plan(), &mut rng(seed), &mut material).unwrap();
    (material, session)
}

fn send(raw: &mut Raw, m: &Message) {
    send_bytes(raw, &m.to_frame().unwrap());
}

fn send_bytes(raw: &mut Raw, bytes: &[u8]) {
    raw.t.write_all(bytes).unwrap();
    raw.t.flush().unwrap();
}

fn send_circuit(raw: &mut Raw, id: CircuitId, material: &[u8]) {
    send(raw, &Message::MaterialBegin { id, bytes: material.len() as u64 });
    for c in material.chunks(wire::MAX_CHUNK_BYTES) {
        send(raw, &Message::MaterialChunk(c.to_vec()));
    }
    send(raw, &Message::MaterialEnd { id });
}

#[test]
fn malformed_truncated_oversized_and_out_of_order_clients_get_an_error_and_others_are_served() {
    for mode in MODES {
        malformed_clients(mode);
    }
}

fn malformed_clients(mode: Mode) {
    let target = start(mode, strict());
    let t = &target;

    // Oversized length prefix, before and after the hello.
    let mut s = t.raw();
    send_bytes(&mut s, &[MessageKind::Hello.byte(), 0xff, 0xff, 0xff, 0xff]);
    expect_refusal(&mut s, "at most");
    let mut s = connect_raw(t, true);
    send(&mut s, &Message::MaterialBegin { id: [1; 16], bytes: protocol::material_bytes(plan()) });
    send_bytes(&mut s, &[MessageKind::MaterialChunk.byte(), 0xff, 0xff, 0xff, 0x7f]);
    expect_refusal(&mut s, "at most");
    // Garbage, an unknown frame type, bad magic.
    let mut s = t.raw();
    send_bytes(&mut s, b"GET / HTTP/1.1\r\n\r\n");
    expect_refusal(&mut s, "unknown frame type");
    let mut s = t.raw();
    let mut hello = Message::Hello(protocol::hello_for(plan())).to_frame().unwrap();
    hello[5] ^= 0xff;
    send_bytes(&mut s, &hello);
    expect_refusal(&mut s, "magic");
    // Anything but a hello first.
    let mut s = t.raw();
    send(&mut s, &Message::Query { id: [1; 16], labels: vec![] });
    expect_refusal(&mut s, "expected hello");
    // A truncated frame (the client half-closes in the middle).
    let mut s = connect_raw(t, true);
    send_bytes(&mut s, &[MessageKind::MaterialBegin.byte(), 24, 0, 0, 0, 1, 2, 3]);
    s.t.shutdown_write();
    expect_refusal(&mut s, "ended in the middle");
    // Out of order: chunk without begin, query for an unknown circuit, end for another circuit.
    let mut s = connect_raw(t, true);
    send(&mut s, &Message::MaterialChunk(vec![0; 10]));
    expect_refusal(&mut s, "expected material-begin");
    let mut s = connect_raw(t, true);
    send(&mut s, &Message::Query { id: [9; 16], labels: vec![Block(0); protocol::input_labels(plan())] });
    expect_refusal(&mut s, "no circuit");
    let (material, _) = garbled_circuit(1);
    let mut s = connect_raw(t, true);
    send(&mut s, &Message::MaterialBegin { id: [1; 16], bytes: material.len() as u64 });
    send(&mut s, &Message::MaterialChunk(material.clone()));
    send(&mut s, &Message::MaterialEnd { id: [2; 16] });
    expect_refusal(&mut s, "where circuit");
    // Wrong material size, announced or sent.
    let mut s = connect_raw(t, true);
    send(&mut s, &Message::MaterialBegin { id: [1; 16], bytes: material.len() as u64 + 1 });
    expect_refusal(&mut s, "garbled material");
    let mut s = connect_raw(t, true);
    send(&mut s, &Message::MaterialBegin { id: [1; 16], bytes: material.len() as u64 });
    send(&mut s, &Message::MaterialChunk(material.clone()));
    send(&mut s, &Message::MaterialChunk(vec![0]));
    expect_refusal(&mut s, "expected material-end");
    // Chunks are full-size except the last: the 6-byte trickle is refused.
    let mut s = connect_raw(t, true);
    send(&mut s, &Message::MaterialBegin { id: [1; 16], bytes: material.len() as u64 });
    send(&mut s, &Message::MaterialChunk(material[..6].to_vec()));
    expect_refusal(&mut s, "full-size");
    // Too many circuits ahead (the server holds 3).
    let mut s = connect_raw(t, true);
    for i in 0..4u8 {
        send_circuit(&mut s, [i; 16], &material);
    }
    expect_refusal(&mut s, "circuits sent ahead");
    // The same id twice.
    let mut s = connect_raw(t, true);
    send_circuit(&mut s, [5; 16], &material);
    send_circuit(&mut s, [5; 16], &material);
    expect_refusal(&mut s, "used before");
    // Input labels of the wrong count, or not labels of their modulus.
    let mut s = connect_raw(t, true);
    send_circuit(&mut s, [6; 16], &material);
    send(&mut s, &Message::Query { id: [6; 16], labels: vec![Block(0); 3] });
    expect_refusal(&mut s, "input labels");
    let mut s = connect_raw(t, true);
    send_circuit(&mut s, [6; 16], &material);
    send(&mut s, &Message::Query { id: [6; 16], labels: vec![Block(u128::MAX); protocol::input_labels(plan())] });
    expect_refusal(&mut s, "malformed query");

    honest_round_trip(t, 11);
}

#[test]
fn a_circuit_is_evaluated_once_and_a_second_query_is_refused() {
    for mode in MODES {
        let target = start(mode, strict());
        let (material, session) = garbled_circuit(2);
        let mut s = connect_raw(&target, true);
        send_circuit(&mut s, [7; 16], &material);
        let x = [1, -2, 3, 0, 4, -5];
        let (input, awaiting) = session.encode_input(&x).unwrap();
        let q = Message::Query { id: [7; 16], labels: input.to_blocks() };
        send(&mut s, &q);
        s.t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let Message::Answer { id, labels } = wire::read_message(&mut s.t).unwrap() else { panic!("no answer") };
        assert_eq!(id, [7; 16]);
        assert_eq!(awaiting.decode_output(&labels).unwrap(), net().eval_plain(&x).unwrap());
        send(&mut s, &q);
        expect_refusal(&mut s, "used before");
        honest_round_trip(&target, 12);
    }
}

#[test]
fn killed_slow_and_idle_clients_do_not_stop_the_server() {
    for mode in MODES {
        killed_slow_idle(mode);
    }
}

fn killed_slow_idle(mode: Mode) {
    let target = start(mode, strict());
    let (material, _) = garbled_circuit(3);
    // Killed mid-stream: half the material, then the connection is dropped.
    for cut in [0, 1, 17, material.len() / 2] {
        let mut s = connect_raw(&target, true);
        send(&mut s, &Message::MaterialBegin { id: [3; 16], bytes: material.len() as u64 });
        let f = Message::MaterialChunk(material.clone()).to_frame().unwrap();
        send_bytes(&mut s, &f[..cut + 5]);
        drop(s);
    }
    // Slowloris: a hello one byte every 300 ms is cut off by the 800 ms frame deadline.
    let hello = Message::Hello(protocol::hello_for(plan())).to_frame().unwrap();
    let slow_target = target.clone();
    let slow = std::thread::spawn(move || {
        let mut s = slow_target.raw();
        for b in &hello {
            // Stop once the server has answered or closed: writing on
            // would only reset the connection.
            if s.server_spoke() || s.t.write_all(&[*b]).and_then(|()| s.t.flush()).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        s
    });
    // Idle: connects and says nothing.
    let mut idle = target.raw();
    // Meanwhile the server serves others.
    honest_round_trip(&target, 13);
    let v = server_verdict(&mut idle);
    assert!(v.as_deref().is_some_and(|t| t.contains("timed out")), "{mode:?} idle: {v:?}");
    let mut s = slow.join().unwrap();
    let v = server_verdict(&mut s);
    assert!(v.as_deref().is_some_and(|t| t.contains("timed out")), "{mode:?} slowloris: {v:?}");
    honest_round_trip(&target, 14);
}

#[test]
fn connections_beyond_the_cap_are_told_the_server_is_busy() {
    for mode in [Mode::Tcp, Mode::Tls] {
        let target = start(mode, ServerConfig { max_connections: 2, ..strict() });
        let a = connect_raw(&target, true);
        let b = connect_raw(&target, true);
        let mut c = target.raw();
        expect_refusal(&mut c, "busy");
        drop((a, b));
        // Their slots free up as their threads see the close.
        let mut ok = false;
        for i in 0..50 {
            let Ok(mut client) = target.client(quick(), 100 + i) else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let x = [0, 1, 2, 3, 4, 5];
            assert_eq!(client.infer(&x).unwrap().output, net().eval_plain(&x).unwrap());
            ok = true;
            break;
        }
        assert!(ok, "{mode:?}: the server never freed the slots of closed connections");
        assert!(target.metrics().refused_busy.load(Ordering::Relaxed) >= 1);
    }
}

// ---------------------------------------------------------------------------
// The operator's side: bounded reads, budgets, refusals, TLS, tokens,
// per-client limits, logs, metrics, load.

#[test]
fn an_oversized_first_frame_is_refused_on_its_header_without_a_large_allocation() {
    let target = start(Mode::Mem, strict());
    for (kind, len, what) in [
        // A query before the hello, announcing 16 MiB of labels.
        (MessageKind::Query, MessageKind::Query.max_len(), "expected hello"),
        // A hello one byte longer than any hello.
        (MessageKind::Hello, MessageKind::Hello.max_len() + 1, "at most"),
        // A chunk before the hello, announcing 1 MiB.
        (MessageKind::MaterialChunk, wire::MAX_CHUNK_BYTES, "expected hello"),
    ] {
        let (mut c, s) = mem_pair();
        let service = target.service;
        let server = std::thread::spawn(move || service.handle(Box::new(s)));
        let mut header = vec![kind.byte()];
        header.extend_from_slice(&(len as u32).to_le_bytes());
        c.write_all(&header).unwrap();
        let v = verdict(&mut c);
        assert!(v.as_deref().is_some_and(|t| t.contains(what)), "{kind}: expected {what:?}, got {v:?}");
        server.join().unwrap();
        // The server read the header, and never a buffer near the announced size.
        assert_eq!(c.peer_consumed(), wire::FRAME_HEADER_BYTES, "{kind}");
        assert!(c.peer_largest_read() <= 16 << 10, "{kind}: a read of {} bytes", c.peer_largest_read());
    }
}

#[test]
fn queries_are_read_with_the_models_exact_size() {
    let target = start(Mode::Mem, strict());
    let (material, _) = garbled_circuit(4);
    let mut s = connect_raw(&target, true);
    send_circuit(&mut s, [4; 16], &material);
    let exact = wire::CIRCUIT_ID_BYTES + protocol::input_labels(plan()) * 16;
    let mut header = vec![MessageKind::Query.byte()];
    header.extend_from_slice(&(exact as u32 + 16).to_le_bytes());
    send_bytes(&mut s, &header);
    expect_refusal(&mut s, &format!("at most {exact} accepted"));
}

/// Sends the hello, a material-begin, then the chunk's bytes one at a time
/// every `every`, until the server speaks or closes; the verdict and when
/// it came (from the material-begin).
fn trickle_material(target: &Target, every: Duration) -> (Option<String>, Duration) {
    let (material, _) = garbled_circuit(5);
    let mut s = connect_raw(target, true);
    send(&mut s, &Message::MaterialBegin { id: [5; 16], bytes: material.len() as u64 });
    let t = Instant::now();
    let frame = Message::MaterialChunk(material).to_frame().unwrap();
    for b in &frame {
        if s.server_spoke() || t.elapsed() > Duration::from_secs(8) {
            break;
        }
        if s.t.write_all(&[*b]).and_then(|()| s.t.flush()).is_err() {
            break;
        }
        std::thread::sleep(every);
    }
    (server_verdict(&mut s), t.elapsed())
}

#[test]
fn a_slow_trickle_peer_loses_its_slot_within_the_circuit_budget() {
    for mode in [Mode::Tcp, Mode::Tls] {
        // Frames may take 20 s, but a circuit only 1 s; one slot.
        let config = ServerConfig {
            max_connections: 1,
            frame_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(20),
            circuit_timeout: Duration::from_secs(1),
            ..ServerConfig::default()
        };
        let target = start(mode, config);
        let (v, took) = trickle_material(&target, Duration::from_millis(20));
        assert!(v.as_deref().is_some_and(|t| t.contains("time budget")), "{mode:?}: {v:?}");
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "{mode:?}: {took:?}");
        assert_eq!(target.metrics().errors("timeout"), 1);
        // The slot is free again.
        let mut served = false;
        for i in 0..30 {
            if let Ok(mut c) = target.client(quick(), 300 + i) {
                let x = [1, 1, 1, 1, 1, 1];
                assert_eq!(c.infer(&x).unwrap().output, net().eval_plain(&x).unwrap());
                served = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(served, "{mode:?}: the slot was not freed");
    }
}

#[test]
fn an_idle_connection_loses_its_slot_within_the_idle_budget() {
    for mode in MODES {
        let config = ServerConfig {
            frame_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_millis(700),
            ..ServerConfig::default()
        };
        let target = start(mode, config);
        let (material, _) = garbled_circuit(6);
        let mut s = connect_raw(&target, true);
        // Progress (a whole circuit) at 400 ms resets the idle clock ...
        std::thread::sleep(Duration::from_millis(400));
        send_circuit(&mut s, [6; 16], &material);
        let t = Instant::now();
        // ... then silence: cut off about 700 ms later, not after 20 s.
        let v = server_verdict(&mut s);
        assert!(v.as_deref().is_some_and(|t| t.contains("idle budget")), "{mode:?}: {v:?}");
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(550) && took < Duration::from_secs(3), "{mode:?}: {took:?}");
        assert_eq!(target.metrics().circuits.load(Ordering::Relaxed), 1);
    }
}

#[test]
fn busy_refusals_run_off_the_accept_loop() {
    let target = start(Mode::Tcp, ServerConfig { max_connections: 1, ..strict() });
    let _held = connect_raw(&target, true);
    // 24 connections at once, none of which reads or closes: each refusal
    // lingers 250 ms for the peer, so one after the other they would take
    // at least 6 s.
    let t = Instant::now();
    let peers: Vec<Raw> = (0..24).map(|_| target.raw()).collect();
    let readers: Vec<_> =
        peers.into_iter().map(|mut raw| std::thread::spawn(move || server_verdict(&mut raw))).collect();
    for r in readers {
        let v = r.join().unwrap();
        assert!(v.as_deref().is_some_and(|s| s.contains("busy")), "{v:?}");
    }
    let took = t.elapsed();
    assert!(took < Duration::from_secs(3), "24 refusals took {took:?}");
    assert_eq!(target.metrics().refused_busy.load(Ordering::Relaxed), 24);
}

#[test]
fn peer_text_is_sanitised_before_it_is_logged() {
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);
    impl Write for Log {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let target = start(Mode::Mem, strict());
    let (mut c, s) = mem_pair();
    let evil = "\x1b[2J\x1b[31mgotcha\n2026-01-01 INFO forged line\u{202e}";
    c.write_all(&Message::Hello(protocol::hello_for(plan())).to_frame().unwrap()).unwrap();
    c.write_all(&Message::Error(evil.into()).to_frame().unwrap()).unwrap();
    c.shutdown_write();
    // The connection is served on this thread, under the capturing subscriber.
    tracing::subscriber::with_default(subscriber, || target.service.handle(Box::new(s)));
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("gotcha"), "{text}");
    assert!(text.contains("\\u{1b}[31mgotcha\\u{a}2026"), "{text}");
    assert!(!text.contains('\x1b') && !text.contains('\u{202e}'), "{text:?}");
    assert!(!text.lines().any(|l| l.starts_with("2026-01-01")), "{text}");
    // The client side sanitises the server's text too.
    let e = ProtocolError::remote(evil);
    assert!(!e.to_string().contains('\x1b'));
}

#[test]
fn a_wrong_server_certificate_is_refused_before_any_material() {
    // The client trusts the test CA; the server shows a certificate of another CA.
    let rogue = start(Mode::Tcp, ServerConfig { tls: Some(rogue_server_tls()), ..ServerConfig::default() });
    let addr = rogue.addr.unwrap();
    let config = ClientConfig { tls: Some(client_tls()), ..quick() };
    let e = Client::connect(addr, plan(), config, rng(1)).err().expect("a rogue server must be refused");
    assert!(matches!(e, ProtocolError::Tls(_)), "{e}");
    assert!(e.to_string().contains("certificate"), "{e}");
    // A certificate for another name: refused too.
    let wrong_name = ClientTls::new(ServerTrust::Ca(vec![pki().ca.clone()]), "evaluator.example", None).unwrap();
    let good = start(Mode::Tls, ServerConfig::default());
    let e = Client::connect(good.addr.unwrap(), plan(), ClientConfig { tls: Some(wrong_name), ..quick() }, rng(2))
        .err()
        .expect("a certificate for another name must be refused");
    assert!(matches!(e, ProtocolError::Tls(_)), "{e}");
    // A pinned certificate: the right pin is accepted, another is refused.
    let pinned = ClientTls::new(ServerTrust::Pinned(pki().server.0.clone()), "any.name", None).unwrap();
    honest_round_trip_with(&good, ClientConfig { tls: Some(pinned.clone()), ..quick() }, 3);
    let e = Client::connect(addr, plan(), ClientConfig { tls: Some(pinned), ..quick() }, rng(4))
        .err()
        .expect("a certificate other than the pinned one must be refused");
    assert!(matches!(e, ProtocolError::Tls(_)), "{e}");
    // A plaintext client against a TLS server gets nowhere either.
    let e = Client::connect(good.addr.unwrap(), plan(), quick(), rng(5)).err().expect("plaintext to TLS");
    assert!(!e.to_string().is_empty());
    // The rogue server took in nothing; the good one agreed with, and took
    // the circuit of, the pinned client only.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(rogue.metrics().agreed.load(Ordering::Relaxed), 0);
    assert_eq!(rogue.metrics().bytes_in.load(Ordering::Relaxed), 0);
    assert_eq!(good.metrics().agreed.load(Ordering::Relaxed), 1);
    assert_eq!(good.metrics().circuits.load(Ordering::Relaxed), 1);
}

#[test]
fn client_certificates_are_required_and_checked_against_the_ca() {
    let target = start(Mode::Tls, ServerConfig { tls: Some(server_tls(true)), ..ServerConfig::default() });
    let addr = target.addr.unwrap();
    // No client certificate, or one of another CA: refused in the handshake.
    for (i, tls) in [client_tls(), client_tls_with_cert(&pki().rogue_client)].into_iter().enumerate() {
        let e = Client::connect(addr, plan(), ClientConfig { tls: Some(tls), ..quick() }, rng(i as u64))
            .err()
            .expect("a client without a valid certificate must be refused");
        // The server's alert, as a TLS error: not one to retry.
        assert!(matches!(e, ProtocolError::Tls(_)) && !e.is_retriable(), "{e:?}");
    }
    std::thread::sleep(Duration::from_millis(200));
    let m = target.metrics();
    assert_eq!(m.errors("tls"), 2);
    assert_eq!(m.agreed.load(Ordering::Relaxed), 0);
    assert_eq!(m.bytes_in.load(Ordering::Relaxed), 0, "the server read protocol bytes of an unauthenticated client");
    // A client with a certificate of the client CA is served.
    honest_round_trip_with(&target, ClientConfig { tls: Some(client_tls_with_cert(&pki().client)), ..quick() }, 9);
    eventually(|| m.answers.load(Ordering::Relaxed) == 1);
}

/// Waits (at most 3 s) for a counter the server updates after the client
/// has its answer; panics if it never holds.
fn eventually(cond: impl Fn() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(3), "a counter never reached its value");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const ALICE: &str = "alice-0123456789abcdef";
const BOB: &str = "bob-0123456789abcdef";

fn tokens() -> Arc<TokenStore> {
    let text = format!("alice {}\nbob {}\n", token_hash_hex(ALICE.as_bytes()), token_hash_hex(BOB.as_bytes()));
    Arc::new(TokenStore::parse(&text).unwrap())
}

fn with_token(token: &str) -> ClientConfig {
    ClientConfig { token: Some(Token::new(token.as_bytes())), ..quick() }
}

#[test]
fn a_missing_or_unknown_token_is_refused_before_any_material() {
    for mode in MODES {
        let target = start(mode, ServerConfig { tokens: Some(tokens()), ..ServerConfig::default() });
        let (material, _) = garbled_circuit(8);
        // No token: the hello, then a whole circuit right behind it.
        let mut s = target.raw();
        send(&mut s, &Message::Hello(protocol::hello_for(plan())));
        let _ =
            s.t.write_all(&Message::MaterialBegin { id: [8; 16], bytes: material.len() as u64 }.to_frame().unwrap());
        expect_refusal(&mut s, "requires a bearer token");
        // An unknown token (and the hash of a known one is not a token).
        for bad in ["mallory-0123456789abcdef", &token_hash_hex(ALICE.as_bytes())] {
            let mut s = target.raw();
            send(&mut s, &Message::Auth(Token::new(bad.as_bytes())));
            send(&mut s, &Message::Hello(protocol::hello_for(plan())));
            let _ = s
                .t
                .write_all(&Message::MaterialBegin { id: [8; 16], bytes: material.len() as u64 }.to_frame().unwrap());
            expect_refusal(&mut s, "unknown bearer token");
        }
        let e = target.client(quick(), 1).err().expect("no token");
        assert!(e.to_string().contains("authentication failed"), "{e}");
        let m = target.metrics();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(m.errors("auth"), 4, "{mode:?}");
        assert_eq!(m.agreed.load(Ordering::Relaxed), 0, "{mode:?}");
        // What the server read of each refused client: at most its auth and hello frames.
        let hello = Message::Hello(protocol::hello_for(plan())).to_frame().unwrap().len() as u64;
        let auth = (wire::FRAME_HEADER_BYTES + 64) as u64;
        assert!(m.bytes_in.load(Ordering::Relaxed) <= 4 * (hello + auth), "{mode:?}");
        // Known tokens are served.
        honest_round_trip_with(&target, with_token(ALICE), 2);
        honest_round_trip_with(&target, with_token(BOB), 3);
        eventually(|| m.answers.load(Ordering::Relaxed) == 2);
    }
}

#[test]
fn per_client_limits_hold_across_connections() {
    let (material, _) = garbled_circuit(9);
    let m_len = material.len() as u64;
    // Two circuits held at once, per client.
    let limits = ClientLimits { max_circuits: 2, ..ClientLimits::default() };
    let target = start(Mode::Mem, ServerConfig { tokens: Some(tokens()), client_limits: limits, ..strict() });
    let auth = |token: &str| {
        let mut s = target.raw();
        send(&mut s, &Message::Auth(Token::new(token.as_bytes())));
        send(&mut s, &Message::Hello(protocol::hello_for(plan())));
        s.t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert!(matches!(wire::read_message(&mut s.t).unwrap(), Message::Welcome { .. }));
        s
    };
    let mut a1 = auth(ALICE);
    send_circuit(&mut a1, [1; 16], &material);
    let mut a2 = auth(ALICE);
    send_circuit(&mut a2, [2; 16], &material);
    // A third, on either connection, is refused; bob is not affected.
    let mut a3 = auth(ALICE);
    send_circuit(&mut a3, [3; 16], &material);
    expect_refusal(&mut a3, "per-client limit: 2 circuits held at once");
    honest_round_trip_with(&target, with_token(BOB), 4);
    // Once alice's circuits are gone, she may send again.
    drop((a1, a2));
    std::thread::sleep(Duration::from_millis(200));
    honest_round_trip_with(&target, with_token(ALICE), 5);

    // Bytes held: room for one circuit and a half.
    let limits = ClientLimits { max_bytes: m_len * 3 / 2, ..ClientLimits::default() };
    let target = start(Mode::Mem, ServerConfig { tokens: Some(tokens()), client_limits: limits, ..strict() });
    let mut c = Client::over(
        {
            let (c, s) = mem_pair();
            let service = target.service;
            std::thread::spawn(move || service.handle(Box::new(s)));
            c
        },
        plan(),
        with_token(ALICE),
        rng(6),
    )
    .unwrap();
    c.prepare().unwrap();
    // The refusal comes back to the client when it next reads.
    let e = c.prepare().and_then(|()| c.infer(&[0; 6])).expect_err("a second circuit is over the byte limit");
    assert!(e.to_string().contains("bytes of material held"), "{e}");

    // Circuits per minute: three; the fourth is refused though none is held.
    let limits = ClientLimits { circuits_per_minute: 3, ..ClientLimits::default() };
    let target = start(Mode::Mem, ServerConfig { tokens: Some(tokens()), client_limits: limits, ..strict() });
    let mut c = target.client(with_token(ALICE), 7).unwrap();
    for i in 0..3 {
        let x = ints(&mut rng(70 + i), 6, -5, 5);
        assert_eq!(c.infer(&x).unwrap().output, net().eval_plain(&x).unwrap());
    }
    let e = c.infer(&[0; 6]).expect_err("a fourth circuit within the minute");
    assert!(e.to_string().contains("circuits per minute"), "{e}");
    honest_round_trip_with(&target, with_token(BOB), 8);
    assert_eq!(target.metrics().errors("limit"), 1);

    // Connections per client.
    let limits = ClientLimits { max_connections: 2, ..ClientLimits::default() };
    let target = start(Mode::Mem, ServerConfig { tokens: Some(tokens()), client_limits: limits, ..strict() });
    let _c1 = target.client(with_token(ALICE), 10).unwrap();
    let _c2 = target.client(with_token(ALICE), 11).unwrap();
    let e = target.client(with_token(ALICE), 12).err().expect("a third connection");
    assert!(e.to_string().contains("connections open at once"), "{e}");
    honest_round_trip_with(&target, with_token(BOB), 13);
}

#[test]
fn metrics_and_health_endpoints_answer_over_http() {
    let target = start(Mode::Tcp, ServerConfig::default());
    honest_round_trip(&target, 20);
    honest_round_trip(&target, 21);
    let mut bad = target.raw();
    send_bytes(&mut bad, b"GET / HTTP/1.0\r\n\r\n");
    expect_refusal(&mut bad, "unknown frame type");
    eventually(|| target.metrics().answers.load(Ordering::Relaxed) == 2);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let http = listener.local_addr().unwrap();
    let m = target.service.metrics().clone();
    std::thread::spawn(move || metrics::serve_http(listener, m));
    let get = |path: &str| {
        let mut s = TcpStream::connect(http).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let body = get("/metrics");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for line in [
        "dashgc_answers_total 2",
        "dashgc_circuits_received_total 2",
        "dashgc_agreements_total 2",
        "dashgc_errors_total{kind=\"frame\"} 1",
        "dashgc_evaluation_seconds_count 2",
        "dashgc_evaluation_seconds_bucket{le=\"+Inf\"} 2",
        "# TYPE dashgc_evaluation_seconds histogram",
    ] {
        assert!(body.lines().any(|l| l == line), "missing {line:?} in\n{body}");
    }
    let bytes_in: u64 =
        body.lines().find_map(|l| l.strip_prefix("dashgc_bytes_in_total ")).and_then(|v| v.parse().ok()).unwrap();
    assert!(bytes_in > 2 * protocol::material_bytes(plan()));
    assert!(get("/healthz").starts_with("HTTP/1.1 200"));
    assert!(get("/readyz").starts_with("HTTP/1.1 200"));
    assert!(get("/nothing").starts_with("HTTP/1.1 404"));
}

#[test]
fn thirty_two_concurrent_clients_against_one_server_are_all_verified() {
    // Over TLS, with tokens: the full production path. Bounded: 32 clients
    // x 4 inferences, a minute at most.
    let target = start(
        Mode::Tls,
        ServerConfig {
            max_connections: 32,
            tokens: Some(tokens()),
            client_limits: ClientLimits { max_connections: 16, ..ClientLimits::default() },
            ..ServerConfig::default()
        },
    );
    let t = Instant::now();
    let clients: Vec<_> = (0..32u64)
        .map(|i| {
            let target = target.clone();
            std::thread::spawn(move || {
                let mut c = target.client(with_token(if i % 2 == 0 { ALICE } else { BOB }), 500 + i).unwrap();
                let mut r = rng(600 + i);
                let inputs: Vec<Vec<i64>> = (0..4).map(|_| ints(&mut r, 6, -5, 5)).collect();
                let batch = run_batch(&mut c, &inputs, 2, true, |_, _| {}).unwrap();
                for (x, inf) in inputs.iter().zip(&batch.inferences) {
                    assert_eq!(inf.output, net().eval_plain(x).unwrap());
                }
                c.close().unwrap();
                batch.inferences.len()
            })
        })
        .collect();
    let done: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(done, 128);
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    let m = target.metrics();
    eventually(|| m.answers.load(Ordering::Relaxed) == 128);
    assert_eq!(m.refused_busy.load(Ordering::Relaxed), 0);
}
