//! Layers and whole networks on label tensors: garbling and evaluation, on
//! 1 and 2 threads, with the AES block rate measured in the same run (each
//! figure is also printed as a ratio to it, since the machine is shared).
//!
//! Layers (k = 8, the SecureML base): dense 784→128 (linear: no
//! ciphertexts, the multiply-add rate on labels), conv 5×5 16→16 on 12×12
//! (linear), exact ReLU on 1024 values, max pooling 2×2 on 16×12×12,
//! rescale by 35 on 1024 values. Networks (random weights, the shapes of
//! `background.md` §4): SecureML MLP, DeepSecure CNN, MiniONN-MNIST.
//!
//! `cargo bench -p dash-host --bench layers` (add `-- relu` to filter).

use criterion::{BenchmarkId, Criterion};
use dash_core::{Block, CrtBase, FixedKeyHash};
use dash_host::engine::{self, Plan};
use dash_host::network::{IntLayer, IntNetwork, Padding, Rounding};
use dash_host::tensor::CrtTensor;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::Instant;

fn ints(r: &mut ChaCha20Rng, n: usize, w: i64) -> Vec<i64> {
    (0..n).map(|_| (r.next_u64() % (2 * w as u64 + 1)) as i64 - w).collect()
}

fn dense(r: &mut ChaCha20Rng, inputs: usize, outputs: usize) -> IntLayer {
    IntLayer::Dense { inputs, outputs, weights: ints(r, inputs * outputs, 7), bias: ints(r, outputs, 7) }
}

fn conv(r: &mut ChaCha20Rng, ic: usize, oc: usize, k: usize, s: usize) -> IntLayer {
    IntLayer::Conv2d {
        in_channels: ic,
        out_channels: oc,
        kernel: [k, k],
        stride: [s, s],
        padding: Padding::uniform(0),
        weights: ints(r, oc * ic * k * k, 7),
        bias: ints(r, oc, 7),
    }
}

const RESCALE: IntLayer = IntLayer::Rescale { divisor: 35, rounding: Rounding::Floor };

/// One benchmark case: a network, its plan inputs, and what a unit is.
struct Case {
    name: &'static str,
    net: IntNetwork,
    /// Multiply-adds (for linear layers: the figure per multiply-add is
    /// printed too).
    macs: u64,
}

fn cases() -> Vec<Case> {
    let mut r = ChaCha20Rng::seed_from_u64(1);
    let base = || CrtBase::first(8).expect("base");
    let net = |shape: &[usize], layers: Vec<IntLayer>| IntNetwork::new(shape.to_vec(), layers, base()).expect("net");
    vec![
        Case { name: "layer_dense784x128", net: net(&[784], vec![dense(&mut r, 784, 128)]), macs: 784 * 128 },
        Case {
            name: "layer_conv5x5_16x16_12x12",
            net: net(&[16, 12, 12], vec![conv(&mut r, 16, 16, 5, 1)]),
            macs: 16 * 16 * 25 * 8 * 8,
        },
        Case { name: "layer_relu1024", net: net(&[1024], vec![IntLayer::Relu]), macs: 0 },
        Case {
            name: "layer_maxpool2x2_16x12x12",
            net: net(&[16, 12, 12], vec![IntLayer::MaxPool { kernel: [2, 2], stride: [2, 2] }]),
            macs: 0,
        },
        Case { name: "layer_rescale35_1024", net: net(&[1024], vec![RESCALE]), macs: 0 },
        Case {
            name: "net_secureml_mlp",
            net: net(
                &[784],
                vec![
                    dense(&mut r, 784, 128),
                    IntLayer::Relu,
                    RESCALE,
                    dense(&mut r, 128, 128),
                    IntLayer::Relu,
                    RESCALE,
                    dense(&mut r, 128, 10),
                ],
            ),
            macs: 784 * 128 + 128 * 128 + 1280,
        },
        Case {
            name: "net_deepsecure_cnn",
            net: net(
                &[1, 28, 28],
                vec![
                    conv(&mut r, 1, 5, 4, 2),
                    IntLayer::Relu,
                    RESCALE,
                    IntLayer::Flatten,
                    dense(&mut r, 845, 100),
                    IntLayer::Relu,
                    RESCALE,
                    dense(&mut r, 100, 10),
                ],
            ),
            macs: 845 * 16 + 845 * 100 + 1000,
        },
        Case {
            name: "net_minionn_mnist",
            net: net(
                &[1, 28, 28],
                vec![
                    conv(&mut r, 1, 16, 5, 1),
                    IntLayer::Relu,
                    RESCALE,
                    IntLayer::MaxPool { kernel: [2, 2], stride: [2, 2] },
                    conv(&mut r, 16, 16, 5, 1),
                    IntLayer::Relu,
                    RESCALE,
                    IntLayer::MaxPool { kernel: [2, 2], stride: [2, 2] },
                    IntLayer::Flatten,
                    dense(&mut r, 256, 100),
                    IntLayer::Relu,
                    RESCALE,
                    dense(&mut r, 100, 10),
                ],
            ),
            macs: 16 * 25 * 576 + 16 * 16 * 25 * 64 + 25600 + 1000,
        },
    ]
}

/// A garbled instance of a case: material, input labels.
struct Garbled {
    material: Vec<u8>,
    labels: CrtTensor,
}

fn garble(plan: &Plan, rng: &mut ChaCha20Rng) -> Garbled {
    let n: usize = plan.input_shape().iter().product();
    let x = ints(rng, n, 100);
    let mut material = Vec::with_capacity(plan.material_bytes() as usize + 4096);
    let g = engine::garble(plan, rng, &mut material).expect("garble");
    let (labels, _awaiting) = g.encode_input(&x).expect("encode");
    Garbled { material, labels }
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool")
}

/// AES blocks per nanosecond on one core (fixed-key permutation of a
/// 1024-block buffer), for the ratios.
fn aes_ns_per_block() -> f64 {
    let hash = FixedKeyHash::new();
    let mut blocks = vec![Block(7); 1024];
    let start = Instant::now();
    let mut rounds = 0u64;
    while start.elapsed().as_millis() < 200 {
        hash.permute(&mut blocks);
        rounds += 1;
    }
    black_box(&blocks);
    start.elapsed().as_nanos() as f64 / (rounds * 1024) as f64
}

/// Mean seconds of `f` over a few runs (for the ratio table printed after
/// criterion's own report).
fn mean_secs(mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut n = 0;
    while n < 3 || start.elapsed().as_secs_f64() < 0.5 {
        f();
        n += 1;
    }
    start.elapsed().as_secs_f64() / n as f64
}

fn main() {
    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let cases = cases();
    let plans: Vec<Plan> = cases.iter().map(|case| Plan::new(&case.net).expect("plan")).collect();
    for threads in [1usize, 2] {
        let pool = pool(threads);
        let mut group = c.benchmark_group(format!("garble_{threads}t"));
        for (case, plan) in cases.iter().zip(&plans) {
            let mut rng = ChaCha20Rng::seed_from_u64(2);
            group.bench_function(BenchmarkId::from_parameter(case.name), |b| {
                b.iter(|| pool.install(|| black_box(garble(plan, &mut rng))))
            });
        }
        group.finish();
        let mut group = c.benchmark_group(format!("evaluate_{threads}t"));
        for (case, plan) in cases.iter().zip(&plans) {
            let g = garble(plan, &mut ChaCha20Rng::seed_from_u64(3));
            group.bench_function(BenchmarkId::from_parameter(case.name), |b| {
                b.iter(|| {
                    pool.install(|| black_box(engine::evaluate(plan, g.material.as_slice(), &g.labels).expect("eval")))
                })
            });
        }
        group.finish();
    }
    c.final_summary();

    // The same figures as ratios to the AES block rate, measured alongside.
    // Criterion's filter: the positional arguments, not the values of its
    // options (`--measurement-time 2` must not filter on "2").
    const WITH_VALUE: [&str; 16] = [
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--profile-time",
        "--significance-level",
        "--noise-threshold",
        "--confidence-level",
        "--nresamples",
        "--output-format",
        "--color",
        "--plotting-backend",
        "--format",
    ];
    let mut filter: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if WITH_VALUE.contains(&a.as_str()) {
            args.next();
        } else if !a.starts_with('-') {
            filter.push(a);
        }
    }
    println!("\nlayers and networks, mean time and ratio to one AES block (measured in this run)");
    println!(
        "{:<28} {:>3} {:>12} {:>12} {:>10} {:>12} {:>12}",
        "case", "thr", "garble", "evaluate", "rows", "eval/AES", "ns/MAC"
    );
    for threads in [1usize, 2] {
        let pool = pool(threads);
        for (case, plan) in cases.iter().zip(&plans) {
            if !filter.is_empty() && !filter.iter().any(|f| case.name.contains(f.as_str())) {
                continue;
            }
            let aes = aes_ns_per_block();
            let mut rng = ChaCha20Rng::seed_from_u64(4);
            let tg = mean_secs(|| pool.install(|| drop(black_box(garble(plan, &mut rng)))));
            let g = garble(plan, &mut rng);
            let te = mean_secs(|| {
                pool.install(|| {
                    drop(black_box(engine::evaluate(plan, g.material.as_slice(), &g.labels).expect("eval")))
                })
            });
            let per_mac = if plan.total_rows() == 0 && case.macs > 0 {
                format!("{:.1}", te * 1e9 / case.macs as f64)
            } else {
                "-".into()
            };
            println!(
                "{:<28} {:>3} {:>10.3}ms {:>10.3}ms {:>10} {:>12.0} {:>12}",
                case.name,
                threads,
                tg * 1e3,
                te * 1e3,
                plan.total_rows(),
                te * 1e9 / aes,
                per_mac
            );
        }
    }
}
