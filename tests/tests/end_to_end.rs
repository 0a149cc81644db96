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

#[test]
fn garble_to_file_evaluate_elsewhere_verify() {
    let net = small_cnn();
    let plan = Plan::new(&net).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let path = std::env::temp_dir().join(format!("dash-e2e-{}.bin", std::process::id()));
    let session = {
        let mut file = std::fs::File::create(&path).unwrap();
        engine::garble(&plan, &mut rng, &mut file).unwrap()
    };
    let x: Vec<i64> = (0..36).map(|i| (i * 7 % 19) - 9).collect();
    let want = net.eval_plain(&x).unwrap();
    let labels = session.encode_input(&x).unwrap();
    // The server: its own thread, reading the material from the file.
    let server_path = path.clone();
    let returned: Vec<Block> = std::thread::scope(|s| {
        s.spawn(|| {
            let reader = BufReader::new(std::fs::File::open(&server_path).unwrap());
            engine::evaluate(&plan, reader, &labels).unwrap().to_blocks()
        })
        .join()
        .unwrap()
    });
    assert_eq!(session.decode_output(&returned).unwrap(), want);
    // Any flipped bit of the response is caught.
    let mut forged = returned.clone();
    forged[0].0 ^= 1 << 77;
    assert!(session.decode_output(&forged).is_err());
    std::fs::remove_file(&path).ok();
}

#[test]
fn material_and_labels_of_another_inference_are_rejected() {
    let net = small_cnn();
    let plan = Plan::new(&net).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let (mut m1, mut m2) = (Vec::new(), Vec::new());
    let s1 = engine::garble(&plan, &mut rng, &mut m1).unwrap();
    let s2 = engine::garble(&plan, &mut rng, &mut m2).unwrap();
    let x = vec![3i64; 36];
    // Honest run of inference 2, replayed to the client of inference 1.
    let out2 = engine::evaluate(&plan, m2.as_slice(), &s2.encode_input(&x).unwrap()).unwrap().to_blocks();
    assert!(s1.decode_output(&out2).is_err(), "a response of another inference must not verify");
    // Inference 1's labels evaluated on inference 2's material: no valid output.
    // (The evaluator may also fail outright to decrypt; that is fine too.)
    if let Ok(out) = engine::evaluate(&plan, m2.as_slice(), &s1.encode_input(&x).unwrap()) {
        assert!(s1.decode_output(&out.to_blocks()).is_err() && s2.decode_output(&out.to_blocks()).is_err());
    }
}
