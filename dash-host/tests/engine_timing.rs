//! Quick timings of the engine (not a timed test: ignored by default).
//!
//! `cargo test --release -p dash-host --test engine_timing -- --ignored --nocapture`
//! (`RAYON_NUM_THREADS` picks the thread count).

use dash_core::CrtBase;
use dash_host::engine::{self, Plan};
use dash_host::network::{IntLayer, IntNetwork, Padding};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::time::Instant;

fn ints(r: &mut ChaCha20Rng, n: usize, m: i64) -> Vec<i64> {
    (0..n).map(|_| (r.next_u64() % (2 * m as u64 + 1)) as i64 - m).collect()
}

fn dense(r: &mut ChaCha20Rng, inputs: usize, outputs: usize) -> IntLayer {
    IntLayer::Dense { inputs, outputs, weights: ints(r, inputs * outputs, 20), bias: ints(r, outputs, 20) }
}

/// Best of `reps` (garble ms, online ms = encode + evaluate + decode), checked.
fn time(name: &str, net: &IntNetwork, reps: usize) -> (f64, f64) {
    let plan = Plan::new(net).unwrap();
    let mut r = ChaCha20Rng::seed_from_u64(1);
    let x = ints(&mut r, net.input_shape.iter().product(), 50);
    let want = net.eval_plain(&x).unwrap();
    let (mut best_g, mut best_o) = (f64::MAX, f64::MAX);
    let mut material = Vec::with_capacity(plan.material_bytes() as usize + 4096);
    for _ in 0..reps {
        material.clear();
        let t = Instant::now();
        let g = engine::garble(&plan, &mut r, &mut material).unwrap();
        let tg = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let (labels, awaiting) = g.encode_input(&x).unwrap();
        let out = engine::evaluate(&plan, material.as_slice(), &labels).unwrap();
        let got = awaiting.decode_output(&out.to_blocks()).unwrap();
        let to = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(got, want);
        best_g = best_g.min(tg);
        best_o = best_o.min(to);
    }
    println!(
        "{name}: garble {best_g:.2} ms, online {best_o:.2} ms, material {:.2} MB, threads {}",
        plan.material_bytes() as f64 / 1e6,
        rayon::current_num_threads()
    );
    (best_g, best_o)
}

#[test]
#[ignore]
fn timings() {
    let mut r = ChaCha20Rng::seed_from_u64(7);
    // Linear layer on labels: dense 1024×1024, first 8 primes.
    let base8 = CrtBase::first(8).unwrap();
    let lin = IntNetwork::new(vec![1024], vec![dense(&mut r, 1024, 1024)], base8.clone()).unwrap();
    let (g, o) = time("dense 1024x1024 k=8", &lin, 5);
    let macs = 1024.0 * 1024.0;
    println!("  per multiply-add across 8 residues: garbler {:.2} ns, online {:.2} ns", g * 1e6 / macs, o * 1e6 / macs);

    // SecureML MLP 784-128-128-10, exact ReLU, first 8 primes.
    let mlp = IntNetwork::new(
        vec![784],
        vec![dense(&mut r, 784, 128), IntLayer::Relu, dense(&mut r, 128, 128), IntLayer::Relu, dense(&mut r, 128, 10)],
        base8.clone(),
    )
    .unwrap();
    time("SecureML MLP k=8 exact ReLU", &mlp, 5);

    // DeepSecure CNN: conv 4x4 stride 2 (5 ch) - ReLU - FC 845→100 - ReLU - FC10, k = 9.
    let base9 = CrtBase::first(9).unwrap();
    let ds = IntNetwork::new(
        vec![1, 28, 28],
        vec![
            IntLayer::Conv2d {
                in_channels: 1,
                out_channels: 5,
                kernel: [4, 4],
                stride: [2, 2],
                padding: Padding::valid(),
                weights: ints(&mut r, 80, 20),
                bias: ints(&mut r, 5, 20),
            },
            IntLayer::Relu,
            IntLayer::Flatten,
            dense(&mut r, 845, 100),
            IntLayer::Relu,
            dense(&mut r, 100, 10),
        ],
        base9,
    )
    .unwrap();
    time("DeepSecure CNN k=9 exact ReLU", &ds, 3);

    // A linear-only convolution stack, to time the convolution kernel:
    // 16→16 channels, 3x3, 16x16, same padding, first 8 primes.
    let cv = IntNetwork::new(
        vec![16, 16, 16],
        vec![IntLayer::Conv2d {
            in_channels: 16,
            out_channels: 16,
            kernel: [3, 3],
            stride: [1, 1],
            padding: Padding::uniform(1),
            weights: ints(&mut r, 16 * 16 * 9, 20),
            bias: ints(&mut r, 16, 20),
        }],
        base8,
    )
    .unwrap();
    let (g, o) = time("conv 16->16 3x3 16x16 k=8", &cv, 5);
    let macs = (16 * 16 * 9 * 16 * 16) as f64;
    println!("  per multiply-add across 8 residues: garbler {:.2} ns, online {:.2} ns", g * 1e6 / macs, o * 1e6 / macs);
}
