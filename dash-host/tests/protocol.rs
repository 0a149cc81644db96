//! The client–server protocol in one process, on loopback, with a small
//! network: honest runs against the plaintext network, a malicious-server
//! suite (every forged, misrouted, replayed, garbled, truncated or
//! oversized answer is rejected by the client), and fault tests (bad and
//! slow clients get an error or a timeout, never a panic or a hang, and
//! the server keeps serving others).

use dash_core::{Block, CrtBase};
use dash_host::engine::{self, Plan};
use dash_host::network::{IntLayer, IntNetwork};
use dash_host::protocol::client::{Client, ClientConfig, run_batch};
use dash_host::protocol::server::{Server, ServerConfig};
use dash_host::protocol::wire::{self, CircuitId, Message, MessageKind};
use dash_host::protocol::{self, Conn, ProtocolError};
use dash_host::tensor::CrtTensor;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

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
    ClientConfig { frame_timeout: Duration::from_secs(10), answer_timeout: Duration::from_secs(10) }
}

/// A real server on 127.0.0.1:0 in a thread of its own (it lives until the
/// test process ends).
fn start_server(config: ServerConfig) -> SocketAddr {
    let server = Server::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    std::thread::spawn(move || server.serve(plan(), &config));
    addr
}

fn strict() -> ServerConfig {
    ServerConfig { frame_timeout: Duration::from_millis(800), max_pending: 3, log: false, ..ServerConfig::default() }
}

/// The honest server must still answer correctly.
fn honest_round_trip(addr: SocketAddr, seed: u64) {
    let mut client = Client::connect(addr, plan(), quick(), rng(seed)).expect("connect");
    let x = ints(&mut rng(seed + 1), 6, -5, 5);
    let got = client.infer(&x).expect("an honest round");
    assert_eq!(got.output, net().eval_plain(&x).unwrap());
    client.close().unwrap();
}

#[test]
fn honest_server_batch_equals_plaintext_and_online_bytes_are_fixed() {
    let addr = start_server(ServerConfig { log: false, ..ServerConfig::default() });
    let mut client = Client::connect(addr, plan(), quick(), rng(7)).unwrap();
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
fn fake_server(listener: TcpListener, cheat: Cheat, cheat_on: usize) {
    let (stream, _) = listener.accept().unwrap();
    let mut conn = Conn::new(stream, Duration::from_secs(10)).unwrap();
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
    // Conn only writes whole messages; reach the socket through a second handle.
    conn.raw_stream().write_all(bytes)
}

/// One trial: a client runs `cheat_on + 1` inferences against a fake
/// server; the last must fail (and the ones before must succeed).
fn trial(cheat: Cheat, cheat_on: usize, seed: u64) -> ProtocolError {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let c = cheat.clone();
    let server = std::thread::spawn(move || fake_server(listener, c, cheat_on));
    let config = ClientConfig { frame_timeout: Duration::from_secs(10), answer_timeout: Duration::from_millis(1500) };
    let mut client = Client::connect(addr, plan(), config, rng(seed)).unwrap();
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
    for (i, &(label, bit)) in cases.iter().enumerate() {
        let e = trial(Cheat::FlipBit { label, bit }, 0, 1000 + i as u64);
        assert!(matches!(e, ProtocolError::Verification(_)), "label {label} bit {bit}: {e}");
        trials += 1;
    }
    assert_eq!(trials, cases.len());
}

#[test]
fn labels_of_other_wires_and_other_inferences_are_rejected() {
    let labels = protocol::output_labels(plan());
    let k = net().base.len();
    for to in 0..labels {
        // Same residue of another element, and another residue of the same element.
        let same_residue = (to + k) % labels;
        let other_residue = to - to % k + (to + 1) % k;
        for from in [same_residue, other_residue] {
            let e = trial(Cheat::OtherWire { from, to }, 0, 5000 + (to * 2 + from) as u64);
            assert!(matches!(e, ProtocolError::Verification(_)), "label {from} for {to}: {e}");
        }
    }
    for s in 0..5 {
        let e = trial(Cheat::OtherInference, 1, 6000 + s);
        assert!(matches!(e, ProtocolError::Verification(_)), "{e}");
    }
}

#[test]
fn replayed_misrouted_malformed_and_missing_answers_are_rejected() {
    for s in 0..3 {
        let e = trial(Cheat::Replay, 1 + s as usize, 7000 + s);
        assert!(matches!(e, ProtocolError::WrongCircuit { .. }), "replay: {e}");
        let e = trial(Cheat::OtherId, 0, 7100 + s);
        assert!(matches!(e, ProtocolError::WrongCircuit { .. }), "other id: {e}");
    }
    for s in 0..20 {
        let e = trial(Cheat::Garbage(s), 0, 7200 + s);
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
        let e = trial(Cheat::Truncated(n), 0, 7300 + n as u64);
        assert!(matches!(e, ProtocolError::Truncated { .. } | ProtocolError::Closed), "truncated at {n}: {e}");
    }
    let e = trial(Cheat::Oversized, 0, 7400);
    assert!(matches!(e, ProtocolError::Oversized { .. }), "{e}");
    let e = trial(Cheat::Short, 0, 7401);
    assert!(matches!(e, ProtocolError::WrongSize { .. }), "{e}");
    // Refused by size: before reading when the answer is longer than an
    // error frame may be, after reading otherwise (this small model).
    let e = trial(Cheat::Long, 0, 7404);
    assert!(matches!(e, ProtocolError::Oversized { .. } | ProtocolError::WrongSize { .. }), "{e}");
    let e = trial(Cheat::WrongKind, 0, 7402);
    assert!(matches!(e, ProtocolError::Unexpected { .. }), "{e}");
    let e = trial(Cheat::Silent, 0, 7403);
    assert!(matches!(e, ProtocolError::Timeout { .. }), "{e}");
}

#[test]
fn a_server_with_another_model_is_refused_before_anything_else() {
    let other = small_net(99);
    let other_plan = Plan::new(&other).unwrap();
    let addr = start_server(ServerConfig { log: false, ..ServerConfig::default() });
    let e = Client::connect(addr, &other_plan, quick(), rng(1)).err().expect("must refuse");
    assert!(e.to_string().contains("model hash"), "{e}");
    honest_round_trip(addr, 2);
}

// ---------------------------------------------------------------------------
// Bad clients against the real server.

/// Reads until the server closes; the error it sent, if any. Panics if the
/// server neither answers nor closes within 10 s (it must, by its timeout).
fn server_verdict(stream: &mut TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut bytes = Vec::new();
    match stream.read_to_end(&mut bytes) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close the connection: {e}"),
    }
    let messages = wire::decode_stream(&bytes).ok()?;
    messages.into_iter().find_map(|m| if let Message::Error(s) = m { Some(s) } else { None })
}

fn connect_raw(addr: SocketAddr, hello: bool) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    if hello {
        s.write_all(&Message::Hello(protocol::hello_for(plan())).to_frame().unwrap()).unwrap();
        let mut c = Conn::new(s.try_clone().unwrap(), Duration::from_secs(5)).unwrap();
        assert!(matches!(c.read_within(Duration::from_secs(10)).unwrap(), Message::Welcome { .. }));
    }
    s
}

fn garbled_circuit(seed: u64) -> (Vec<u8>, engine::GarblerSession) {
    let mut material = Vec::new();
    let session = engine::garble(plan(), &mut rng(seed), &mut material).unwrap();
    (material, session)
}

fn send(s: &mut TcpStream, m: &Message) {
    s.write_all(&m.to_frame().unwrap()).unwrap();
}

fn send_circuit(s: &mut TcpStream, id: CircuitId, material: &[u8]) {
    send(s, &Message::MaterialBegin { id, bytes: material.len() as u64 });
    for c in material.chunks(100) {
        send(s, &Message::MaterialChunk(c.to_vec()));
    }
    send(s, &Message::MaterialEnd { id });
}

#[test]
fn malformed_truncated_oversized_and_out_of_order_clients_get_an_error_and_others_are_served() {
    let addr = start_server(strict());
    let expect = |mut s: TcpStream, what: &str| {
        let v = server_verdict(&mut s);
        assert!(v.as_deref().is_some_and(|t| t.contains(what)), "expected an error with {what:?}, got {v:?}");
    };

    // Oversized length prefix, before and after the hello.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&[MessageKind::Hello.byte(), 0xff, 0xff, 0xff, 0xff]).unwrap();
    expect(s, "at most");
    let mut s = connect_raw(addr, true);
    s.write_all(&[MessageKind::MaterialChunk.byte(), 0xff, 0xff, 0xff, 0x7f]).unwrap();
    expect(s, "at most");
    // Garbage, an unknown frame type, bad magic.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    expect(s, "unknown frame type");
    let mut s = TcpStream::connect(addr).unwrap();
    let mut hello = Message::Hello(protocol::hello_for(plan())).to_frame().unwrap();
    hello[5] ^= 0xff;
    s.write_all(&hello).unwrap();
    expect(s, "magic");
    // Anything but a hello first.
    let mut s = TcpStream::connect(addr).unwrap();
    send(&mut s, &Message::Query { id: [1; 16], labels: vec![] });
    expect(s, "expected hello");
    // A truncated frame (the client half-closes in the middle).
    let mut s = connect_raw(addr, true);
    s.write_all(&[MessageKind::MaterialBegin.byte(), 24, 0, 0, 0, 1, 2, 3]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    expect(s, "ended in the middle");
    // Out of order: chunk without begin, query for an unknown circuit, end for another circuit.
    let mut s = connect_raw(addr, true);
    send(&mut s, &Message::MaterialChunk(vec![0; 10]));
    expect(s, "expected material-begin");
    let mut s = connect_raw(addr, true);
    send(&mut s, &Message::Query { id: [9; 16], labels: vec![Block(0); protocol::input_labels(plan())] });
    expect(s, "no circuit");
    let (material, _) = garbled_circuit(1);
    let mut s = connect_raw(addr, true);
    send(&mut s, &Message::MaterialBegin { id: [1; 16], bytes: material.len() as u64 });
    send(&mut s, &Message::MaterialChunk(material.clone()));
    send(&mut s, &Message::MaterialEnd { id: [2; 16] });
    expect(s, "where circuit");
    // Wrong material size, announced or sent.
    let mut s = connect_raw(addr, true);
    send(&mut s, &Message::MaterialBegin { id: [1; 16], bytes: material.len() as u64 + 1 });
    expect(s, "garbled material");
    let mut s = connect_raw(addr, true);
    send(&mut s, &Message::MaterialBegin { id: [1; 16], bytes: material.len() as u64 });
    send(&mut s, &Message::MaterialChunk(material.clone()));
    send(&mut s, &Message::MaterialChunk(vec![0]));
    expect(s, "garbled material");
    // Too many circuits ahead (the server holds 3).
    let mut s = connect_raw(addr, true);
    for i in 0..4u8 {
        send_circuit(&mut s, [i; 16], &material);
    }
    expect(s, "circuits sent ahead");
    // The same id twice.
    let mut s = connect_raw(addr, true);
    send_circuit(&mut s, [5; 16], &material);
    send_circuit(&mut s, [5; 16], &material);
    expect(s, "used before");
    // Input labels of the wrong count, or not labels of their modulus.
    let mut s = connect_raw(addr, true);
    send_circuit(&mut s, [6; 16], &material);
    send(&mut s, &Message::Query { id: [6; 16], labels: vec![Block(0); 3] });
    expect(s, "input labels");
    let mut s = connect_raw(addr, true);
    send_circuit(&mut s, [6; 16], &material);
    send(&mut s, &Message::Query { id: [6; 16], labels: vec![Block(u128::MAX); protocol::input_labels(plan())] });
    expect(s, "malformed query");

    honest_round_trip(addr, 11);
}

#[test]
fn a_circuit_is_evaluated_once_and_a_second_query_is_refused() {
    let addr = start_server(strict());
    let (material, session) = garbled_circuit(2);
    let mut s = connect_raw(addr, true);
    send_circuit(&mut s, [7; 16], &material);
    let x = [1, -2, 3, 0, 4, -5];
    let (input, awaiting) = session.encode_input(&x).unwrap();
    let q = Message::Query { id: [7; 16], labels: input.to_blocks() };
    send(&mut s, &q);
    let mut c = Conn::new(s.try_clone().unwrap(), Duration::from_secs(5)).unwrap();
    let Message::Answer { id, labels } = c.read_within(Duration::from_secs(10)).unwrap() else { panic!("no answer") };
    assert_eq!(id, [7; 16]);
    assert_eq!(awaiting.decode_output(&labels).unwrap(), net().eval_plain(&x).unwrap());
    send(&mut s, &q);
    let v = server_verdict(&mut s);
    assert!(v.as_deref().is_some_and(|t| t.contains("used before")), "{v:?}");
    honest_round_trip(addr, 12);
}

#[test]
fn killed_slow_and_idle_clients_do_not_stop_the_server() {
    let addr = start_server(strict());
    let (material, _) = garbled_circuit(3);
    // Killed mid-stream: half the material, then the socket is dropped.
    for cut in [0, 1, 17, material.len() / 2] {
        let mut s = connect_raw(addr, true);
        send(&mut s, &Message::MaterialBegin { id: [3; 16], bytes: material.len() as u64 });
        let f = Message::MaterialChunk(material.clone()).to_frame().unwrap();
        s.write_all(&f[..cut + 5]).unwrap();
        drop(s);
    }
    // Slowloris: a hello one byte every 300 ms is cut off by the 800 ms frame deadline.
    let hello = Message::Hello(protocol::hello_for(plan())).to_frame().unwrap();
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        for b in &hello {
            // Stop once the server has answered or closed: writing on
            // would only reset the connection.
            s.set_nonblocking(true).unwrap();
            let closed = !matches!(s.peek(&mut [0u8; 1]), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock);
            s.set_nonblocking(false).unwrap();
            if closed || s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        s
    });
    // Idle: connects and says nothing.
    let mut idle = TcpStream::connect(addr).unwrap();
    // Meanwhile the server serves others.
    honest_round_trip(addr, 13);
    let v = server_verdict(&mut idle);
    assert!(v.as_deref().is_some_and(|t| t.contains("timed out")), "idle: {v:?}");
    let mut s = slow.join().unwrap();
    let v = server_verdict(&mut s);
    assert!(v.as_deref().is_some_and(|t| t.contains("timed out")), "slowloris: {v:?}");
    honest_round_trip(addr, 14);
}

#[test]
fn connections_beyond_the_cap_are_told_the_server_is_busy() {
    let addr = start_server(ServerConfig { max_connections: 2, ..strict() });
    let a = connect_raw(addr, true);
    let b = connect_raw(addr, true);
    let mut c = TcpStream::connect(addr).unwrap();
    let v = server_verdict(&mut c);
    assert!(v.as_deref().is_some_and(|t| t.contains("busy")), "{v:?}");
    drop((a, b));
    // Their slots free up as their threads see the close.
    let mut ok = false;
    for i in 0..50 {
        let Ok(mut client) = Client::connect(addr, plan(), quick(), rng(100 + i)) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let x = [0, 1, 2, 3, 4, 5];
        assert_eq!(client.infer(&x).unwrap().output, net().eval_plain(&x).unwrap());
        ok = true;
        break;
    }
    assert!(ok, "the server never freed the slots of closed connections");
}
