//! Cross-crate: a small CNN garbled by `dash-host` on the data owner's side
//! into a file, evaluated from that file on another thread (the server),
//! and decoded and verified with `dash-core`'s keys; and the failure modes a
//! malicious server could try (material or labels of another inference).

use dash_core::{Block, CrtBase};
use dash_host::engine::{self, Plan};
use dash_host::network::{IntLayer, IntNetwork, Padding, Rounding};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::io::BufReader;

fn small_cnn() -> IntNetwork {
    let mut r = ChaCha20Rng::seed_from_u64(5);
    let mut w = |n: usize, b: i64| (0..n).map(|_| (r.next_u64() % (2 * b as u64 + 1)) as i64 - b).collect::<Vec<_>>();
    let layers = vec![
        IntLayer::Conv2d {
            in_channels: 1,
            out_channels: 2,
            kernel: [3, 3],
            stride: [1, 1],
            padding: Padding::valid(),
            weights: w(18, 3),
            bias: w(2, 5),
        },
        IntLayer::Relu,
        IntLayer::MaxPool { kernel: [2, 2], stride: [2, 2] },
        IntLayer::Flatten,
        IntLayer::Rescale { divisor: 5, rounding: Rounding::Nearest },
        IntLayer::Dense { inputs: 8, outputs: 3, weights: w(24, 4), bias: w(3, 4) },
    ];
    IntNetwork::new(vec![1, 6, 6], layers, CrtBase::first(6).unwrap()).unwrap()
}

/// Garbles to a file, evaluates in another thread reading the file, and
/// returns the evaluator's output labels and the garbler's decoding state.
fn garble_to_file_evaluate_elsewhere(plan: &Plan, seed: u64, x: &[i64]) -> (Vec<Block>, engine::AwaitingAnswer) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let path = std::env::temp_dir().join(format!("dash-e2e-{}-{seed}.bin", std::process::id()));
    let session = {
        let mut file = std::fs::File::create(&path).unwrap();
        engine::garble(plan, &mut rng, &mut file).unwrap()
    };
    let (labels, awaiting) = session.encode_input(x).unwrap();
    // The server: its own thread, reading the material from the file.
    let server_path = path.clone();
    let returned: Vec<Block> = std::thread::scope(|s| {
        s.spawn(|| {
            let reader = BufReader::new(std::fs::File::open(&server_path).unwrap());
            engine::evaluate(plan, reader, &labels).unwrap().to_blocks()
        })
        .join()
        .unwrap()
    });
    std::fs::remove_file(&path).ok();
    (returned, awaiting)
}

#[test]
fn garble_to_file_evaluate_elsewhere_verify() {
    let net = small_cnn();
    let plan = Plan::new(&net).unwrap();
    let x: Vec<i64> = (0..36).map(|i| (i * 7 % 19) - 9).collect();
    let want = net.eval_plain(&x).unwrap();
    let (returned, awaiting) = garble_to_file_evaluate_elsewhere(&plan, 9, &x);
    assert_eq!(awaiting.decode_output(&returned).unwrap(), want);
    // Any flipped bit of the response is caught (keys are single-use: a
    // second inference).
    let (mut forged, awaiting) = garble_to_file_evaluate_elsewhere(&plan, 19, &x);
    forged[0].0 ^= 1 << 77;
    assert!(matches!(awaiting.decode_output(&forged), Err(engine::EngineError::Authenticity)));
}

#[test]
fn material_and_labels_of_another_inference_are_rejected() {
    let net = small_cnn();
    let plan = Plan::new(&net).unwrap();
    let x = vec![3i64; 36];
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let garble = |rng: &mut ChaCha20Rng| {
        let mut m = Vec::new();
        let s = engine::garble(&plan, rng, &mut m).unwrap();
        let (labels, awaiting) = s.encode_input(&x).unwrap();
        (m, labels, awaiting)
    };
    // Honest run of inference 2, replayed to the client of inference 1.
    let (_m1, _l1, a1) = garble(&mut rng);
    let (m2, l2, _a2) = garble(&mut rng);
    let out2 = engine::evaluate(&plan, m2.as_slice(), &l2).unwrap().to_blocks();
    assert!(matches!(a1.decode_output(&out2), Err(engine::EngineError::Authenticity)));
    // Inference 1's labels evaluated on inference 2's material: no valid
    // output for either client. (The evaluator may also fail outright to
    // decrypt; that is fine too.)
    let (_m1, l1, a1) = garble(&mut rng);
    let (m2, _l2, a2) = garble(&mut rng);
    if let Ok(out) = engine::evaluate(&plan, m2.as_slice(), &l1) {
        assert!(a1.decode_output(&out.to_blocks()).is_err());
        assert!(a2.decode_output(&out.to_blocks()).is_err());
    }
}
