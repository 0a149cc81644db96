//! The engine against the plaintext integer network: every layer kind on
//! random tensors, small random networks, reduced benchmark networks, and
//! malformed or tampered material.

use dash_core::{Block, CrtBase};
use dash_host::engine::{self, Plan};
use dash_host::network::{IntLayer, IntNetwork, Padding, Rounding};
use dash_host::tensor::CrtTensor;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn ints(r: &mut ChaCha20Rng, n: usize, lo: i64, hi: i64) -> Vec<i64> {
    (0..n).map(|_| lo + (r.next_u64() % (hi - lo + 1) as u64) as i64).collect()
}

/// Garbles to memory, evaluates from it, decodes, and checks against the
/// plaintext twin on `trials` random inputs (values in `±range`).
fn check(net: &IntNetwork, trials: usize, range: i64, seed: u64) {
    let plan = Plan::new(net).expect("plan");
    let mut r = rng(seed);
    let n_in: usize = net.input_shape.iter().product();
    for t in 0..trials {
        let x = ints(&mut r, n_in, -range, range);
        let want = net.eval_plain(&x).expect("plain");
        let mut material = Vec::new();
        let g = engine::garble(&plan, &mut r, &mut material).expect("garble");
        assert_eq!(g.rows, plan.total_rows());
        let (labels, awaiting) = g.encode_input(&x).unwrap();
        let out = engine::evaluate(&plan, material.as_slice(), &labels).expect("evaluate");
        let got = awaiting.decode_output(&out.to_blocks()).expect("decode");
        assert_eq!(got, want, "trial {t}, input {x:?}");
    }
}

fn net(base: usize, shape: &[usize], layers: Vec<IntLayer>) -> IntNetwork {
    IntNetwork::new(shape.to_vec(), layers, CrtBase::first(base).unwrap()).unwrap()
}

fn dense(r: &mut ChaCha20Rng, inputs: usize, outputs: usize, w: i64) -> IntLayer {
    IntLayer::Dense {
        inputs,
        outputs,
        weights: ints(r, inputs * outputs, -w, w),
        bias: ints(r, outputs, -w * 4, w * 4),
    }
}

fn conv(r: &mut ChaCha20Rng, ic: usize, oc: usize, k: [usize; 2], s: [usize; 2], p: Padding, w: i64) -> IntLayer {
    IntLayer::Conv2d {
        in_channels: ic,
        out_channels: oc,
        kernel: k,
        stride: s,
        padding: p,
        weights: ints(r, oc * ic * k[0] * k[1], -w, w),
        bias: ints(r, oc, -w, w),
    }
}

#[test]
fn linear_layers_of_several_shapes() {
    let mut r = rng(1);
    // Dense, wrapping around Q freely (k = 5, Q = 2310).
    check(&net(5, &[7], vec![dense(&mut r, 7, 5, 400)]), 3, 1000, 10);
    // Large primes take the u32 accumulation path of the dense kernel.
    let big =
        IntNetwork::new(vec![40], vec![dense(&mut r, 40, 6, 1000)], CrtBase::new(&[2, 3, 97, 101]).unwrap()).unwrap();
    check(&big, 2, 20000, 11);
    // Convolutions: strides, asymmetric padding, several channels.
    for (i, (k, s, p)) in [
        ([3, 3], [1, 1], Padding::valid()),
        ([3, 2], [2, 1], Padding { top: 1, left: 0, bottom: 2, right: 1 }),
        ([4, 4], [2, 2], Padding::same([7, 6], [4, 4], [2, 2])),
        ([1, 1], [3, 3], Padding::uniform(1)),
    ]
    .into_iter()
    .enumerate()
    {
        let layers = vec![conv(&mut r, 2, 3, k, s, p, 50)];
        check(&net(6, &[2, 7, 6], layers), 2, 500, 20 + i as u64);
    }
    // Convolutions on large primes (131 to 263: the u32 path of the dot
    // product) next to small ones (u16 lanes).
    let wide = IntNetwork::new(
        vec![3, 6, 5],
        vec![conv(&mut r, 3, 6, [3, 2], [1, 2], Padding { top: 1, left: 2, bottom: 0, right: 1 }, 300)],
        CrtBase::new(&[2, 3, 131, 251, 257, 263]).unwrap(),
    )
    .unwrap();
    check(&wide, 2, 20000, 30);
    // Sum pooling, flatten, reshape, residual add (with the input and a layer output).
    let layers = vec![
        IntLayer::SumPool { kernel: [2, 3], stride: [2, 1] },
        IntLayer::Flatten,
        dense(&mut r, 2 * 3 * 4, 24, 9),
        IntLayer::ResidualAdd { from: 2 },
        IntLayer::Reshape { shape: vec![2, 3, 4] },
        IntLayer::SumPool { kernel: [3, 4], stride: [1, 1] },
    ];
    check(&net(6, &[2, 6, 6], layers), 2, 300, 30);
}

#[test]
fn nonlinear_layers() {
    let mut r = rng(2);
    check(&net(5, &[3, 4, 5], vec![IntLayer::Relu]), 2, 1155, 40);
    check(&net(5, &[20], vec![IntLayer::Sign]), 2, 1155, 41);
    // A 1×1 window with a stride > 1 picks elements without comparing any:
    // it once took the element-wise path and read the wrong elements (found
    // by the network fuzz target).
    for (k, s) in
        [([2, 2], [2, 2]), ([3, 2], [1, 2]), ([3, 3], [2, 2]), ([1, 1], [1, 1]), ([1, 1], [3, 3]), ([1, 1], [1, 2])]
    {
        check(&net(5, &[2, 5, 6], vec![IntLayer::MaxPool { kernel: k, stride: s }]), 1, 1155, 42);
    }
    for (d, rounding) in [(2, Rounding::Floor), (35, Rounding::Nearest), (15, Rounding::Ceil), (11, Rounding::Floor)] {
        check(&net(5, &[13], vec![IntLayer::Rescale { divisor: d, rounding }]), 2, 1155, 43);
    }
    // A mix with max pooling over wrapped differences (the circuit's semantics).
    let layers = vec![
        conv(&mut r, 1, 2, [3, 3], [1, 1], Padding::uniform(1), 200),
        IntLayer::MaxPool { kernel: [2, 2], stride: [2, 2] },
    ];
    check(&net(5, &[1, 4, 4], layers), 2, 1000, 44);
}

#[test]
fn small_random_networks() {
    let mut r = rng(3);
    for seed in 0..3u64 {
        let layers = vec![
            conv(&mut r, 1, 2, [3, 3], [1, 1], Padding::same([6, 6], [3, 3], [1, 1]), 3),
            IntLayer::Relu,
            IntLayer::Rescale { divisor: 5, rounding: Rounding::Nearest },
            IntLayer::ResidualAdd { from: 0 },
            IntLayer::MaxPool { kernel: [2, 2], stride: [2, 2] },
            IntLayer::Flatten,
            dense(&mut r, 18, 6, 4),
            IntLayer::Sign,
            dense(&mut r, 6, 3, 5),
        ];
        // Residual from 0 has 1 channel, conv output 2: use 1 output channel.
        let mut layers = layers;
        layers[0] = conv(&mut r, 1, 1, [3, 3], [1, 1], Padding::same([6, 6], [3, 3], [1, 1]), 3);
        layers[6] = dense(&mut r, 9, 6, 4);
        check(&net(6, &[1, 6, 6], layers), 1, 200, 50 + seed);
    }
}

/// Reduced versions of the background's benchmark networks, random weights.
#[test]
fn benchmark_networks_reduced() {
    let mut r = rng(4);
    // SecureML-like MLP: 64-16-16-10, ReLU, rescales.
    let mlp = vec![
        dense(&mut r, 64, 16, 7),
        IntLayer::Rescale { divisor: 7, rounding: Rounding::Nearest },
        IntLayer::Relu,
        dense(&mut r, 16, 16, 7),
        IntLayer::Rescale { divisor: 7, rounding: Rounding::Nearest },
        IntLayer::Relu,
        dense(&mut r, 16, 10, 7),
    ];
    check(&net(6, &[64], mlp), 1, 100, 60);
    // DeepSecure-like CNN: conv 4x4 stride 2 (3 ch) - ReLU - FC - ReLU - FC.
    let ds = vec![
        conv(&mut r, 1, 3, [4, 4], [2, 2], Padding::same([8, 8], [4, 4], [2, 2]), 5),
        IntLayer::Relu,
        IntLayer::Flatten,
        dense(&mut r, 48, 12, 5),
        IntLayer::Rescale { divisor: 35, rounding: Rounding::Floor },
        IntLayer::Relu,
        dense(&mut r, 12, 10, 5),
    ];
    check(&net(6, &[1, 8, 8], ds), 1, 50, 61);
    // MiniONN-MNIST-like: conv - pool - relu - conv - pool - relu - FC - relu - FC.
    let mo = vec![
        conv(&mut r, 1, 2, [3, 3], [1, 1], Padding::valid(), 4),
        IntLayer::MaxPool { kernel: [2, 2], stride: [2, 2] },
        IntLayer::Relu,
        conv(&mut r, 2, 2, [2, 2], [1, 1], Padding::valid(), 4),
        IntLayer::MaxPool { kernel: [2, 2], stride: [1, 1] },
        IntLayer::Relu,
        IntLayer::Flatten,
        dense(&mut r, 8, 6, 4),
        IntLayer::Relu,
        dense(&mut r, 6, 4, 4),
    ];
    check(&net(6, &[1, 10, 10], mo), 1, 30, 62);
    // FHE-DiNN-like: dense - sign - dense.
    let dinn = vec![dense(&mut r, 49, 12, 3), IntLayer::Sign, dense(&mut r, 12, 10, 3)];
    check(&net(5, &[49], dinn), 2, 20, 63);
}

fn small_net() -> IntNetwork {
    let mut r = rng(5);
    net(5, &[6], vec![dense(&mut r, 6, 4, 5), IntLayer::Relu, dense(&mut r, 4, 3, 5), IntLayer::Sign])
}

#[test]
fn malformed_material_is_an_error() {
    let n = small_net();
    let plan = Plan::new(&n).unwrap();
    let mut r = rng(6);
    let mut material = Vec::new();
    let g = engine::garble(&plan, &mut r, &mut material).unwrap();
    let x = vec![1, -2, 3, 0, 5, -6];
    let (labels, _awaiting) = g.encode_input(&x).unwrap();
    assert!(engine::evaluate(&plan, material.as_slice(), &labels).is_ok());
    // Every truncation (sampled) fails cleanly.
    let step = (material.len() / 200).max(1);
    for cut in (0..material.len()).step_by(step) {
        assert!(engine::evaluate(&plan, &material[..cut], &labels).is_err(), "cut at {cut}");
    }
    // Extra bytes inside the stream (before the trailer) fail.
    let mut long = material.clone();
    long.splice(material.len() - 8..material.len() - 8, [0u8; 16]);
    assert!(engine::evaluate(&plan, long.as_slice(), &labels).is_err());
    // Any header byte changed: magic, version, hash, primes, counts.
    for pos in [0, 8, 12, 44, 45, 47, 49] {
        let mut bad = material.clone();
        bad[pos] ^= 0x5a;
        assert!(engine::evaluate(&plan, bad.as_slice(), &labels).is_err(), "header byte {pos}");
    }
    // A huge announced layer count is refused before any allocation.
    let mut garbage = b"DASHGCM\0".to_vec();
    garbage.extend_from_slice(&1u32.to_le_bytes());
    garbage.extend_from_slice(&[0xff; 64]);
    assert!(engine::evaluate(&plan, garbage.as_slice(), &labels).is_err());
    // Material of another model.
    let other = {
        let mut r = rng(7);
        net(5, &[6], vec![dense(&mut r, 6, 4, 5), IntLayer::Relu, dense(&mut r, 4, 3, 5), IntLayer::Sign])
    };
    let other_plan = Plan::new(&other).unwrap();
    let err = engine::evaluate(&other_plan, material.as_slice(), &labels).unwrap_err();
    assert!(matches!(err, engine::EngineError::Material { .. }), "{err}");
    assert!(err.to_string().contains("model hash"), "{err}");
    // Random garbage never panics.
    let mut r = rng(8);
    for len in [0usize, 3, 60, 500] {
        let junk: Vec<u8> = (0..len).map(|_| r.next_u32() as u8).collect();
        assert!(engine::evaluate(&plan, junk.as_slice(), &labels).is_err());
    }
}

/// One inference of `n` on `x` garbled from `seed`: material, input labels
/// and the decoding state. The same seed gives the same keys and material,
/// so a test can run one inference as often as it has answers to check
/// (each decoding consumes its state).
fn inference(plan: &Plan, seed: u64, x: &[i64]) -> (Vec<u8>, CrtTensor, engine::AwaitingAnswer) {
    let mut material = Vec::new();
    let g = engine::garble(plan, &mut rng(seed), &mut material).unwrap();
    let (labels, awaiting) = g.encode_input(x).unwrap();
    (material, labels, awaiting)
}

#[test]
fn tampered_output_and_material_are_rejected() {
    let n = small_net();
    let plan = Plan::new(&n).unwrap();
    let x = vec![4, -2, 3, 1, 5, -6];
    let (material, labels, awaiting) = inference(&plan, 9, &x);
    let out = engine::evaluate(&plan, material.as_slice(), &labels).unwrap();
    let blocks = out.to_blocks();
    assert_eq!(awaiting.decode_output(&blocks).unwrap(), n.eval_plain(&x).unwrap());
    let decode = |answer: &[Block]| inference(&plan, 9, &x).2.decode_output(answer);
    // A changed output label, a swapped pair, a wrong count: all rejected.
    let mut bad = blocks.clone();
    bad[1] = Block(bad[1].0 ^ 1);
    assert!(matches!(decode(&bad), Err(engine::EngineError::Authenticity)));
    let mut bad = blocks.clone();
    bad.swap(0, plan.network().base.len());
    assert!(bad == blocks || matches!(decode(&bad), Err(engine::EngineError::Authenticity)));
    assert!(matches!(decode(&blocks[1..]), Err(engine::EngineError::Input(_))));
    // Flipping a bit in a row of the last layer yields labels that fail verification
    // (or a row that does not decrypt to a label at all).
    let tag_end = material.len() - 8 - plan.costs().last().unwrap().rows as usize * 16;
    for off in [0usize, 16 * 3 + 5] {
        let mut bad = material.clone();
        bad[tag_end + off] ^= 0x10;
        match engine::evaluate(&plan, bad.as_slice(), &labels) {
            Err(e) => assert!(matches!(e, engine::EngineError::Material { .. }), "{e}"),
            Ok(o) => {
                let res = decode(&o.to_blocks());
                // Only rows the evaluator did not open leave the output unchanged.
                assert!(
                    matches!(res, Err(engine::EngineError::Authenticity)) || res.unwrap() == n.eval_plain(&x).unwrap()
                );
            }
        }
    }
}

#[test]
fn a_refused_input_hands_the_session_back() {
    let n = small_net();
    let plan = Plan::new(&n).unwrap();
    let g = engine::garble(&plan, &mut rng(12), &mut Vec::new()).unwrap();
    // Too short, then out of the base's range: refused, session returned.
    let e = g.encode_input(&[1, 2]).unwrap_err();
    assert!(matches!(e.error, engine::EngineError::Input(_)), "{}", e.error);
    let huge = n.base.max_value() as i64 + 1;
    let e = e.session.encode_input(&[huge, 0, 0, 0, 0, 0]).unwrap_err();
    assert!(matches!(e.error, engine::EngineError::Input(_)), "{}", e.error);
    // The returned session still encodes a valid input, once.
    let (labels, _awaiting) = e.session.encode_input(&[1, 2, 3, 4, 5, 6]).unwrap();
    assert_eq!(labels.shape(), &[6]);
}

#[test]
fn garbling_is_parallel_deterministic_given_the_rng() {
    let n = small_net();
    let plan = Plan::new(&n).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    engine::garble(&plan, &mut rng(11), &mut a).unwrap();
    engine::garble(&plan, &mut rng(11), &mut b).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len() as u64, plan.material_bytes() + (a.len() as u64 - plan.material_bytes()));
    let labels = CrtTensor::zeros(&n.base, &[6]);
    // Labels of the wrong shape are refused.
    let bad = CrtTensor::zeros(&n.base, &[5]);
    assert!(engine::evaluate(&plan, a.as_slice(), &bad).is_err());
    let _ = labels;
}
