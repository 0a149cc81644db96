//! Constant-time check of the host's linear kernels (the ctgrind
//! technique; CI runs it under valgrind memcheck next to `tools/ct-check`).
//!
//! On the garbler's side every digit a linear layer reads is secret: the
//! input zero labels and the one-wire zero labels `O_p`. This marks all of
//! them undefined and runs, through the engine's own kernels, a dense layer
//! long enough for the accumulator's intermediate reductions (p = 3181), a
//! padded convolution, a residual add, sum pooling, a strided convolution
//! with uneven padding, a flatten and a reshape, on a base of small primes
//! and one large prime. Memcheck reports any branch or memory index that
//! depends on a marked digit; weights, shapes and moduli stay public.
//!
//! `valgrind --error-exitcode=1 -q target/release/examples/ct_kernels`
//! must exit 0. With `--plant`, a branch on one digit of the sum-pooling
//! kernel's output is taken after the kernels: memcheck must report it
//! (exit 1), which shows the marks reach the kernels' outputs, so a branch
//! inside a kernel on the same digits would be reported too.

use dash_core::CrtBase;
use dash_host::engine::{self, Plan};
use dash_host::network::{IntLayer, IntNetwork, Padding};
use dash_host::tensor::CrtTensor;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

fn weights(rng: &mut ChaCha20Rng, n: usize) -> Vec<i64> {
    (0..n).map(|_| (rng.next_u64() % 255) as i64 - 127).collect()
}

/// Random reduced digits for every label of `shape`, marked secret.
fn secret_labels(rng: &mut ChaCha20Rng, base: &CrtBase, shape: &[usize]) -> CrtTensor {
    let mut x = CrtTensor::zeros(base, shape);
    for t in x.residues_mut() {
        let p = t.modulus().value() as u64;
        for d in t.digits_mut() {
            *d = (rng.next_u64() % p) as u16;
        }
        ctgrind::secret(t.digits());
    }
    x
}

/// Runs every layer of `net` (all linear) on secret labels through the
/// engine's kernels; returns the activations, input first.
fn run(net: IntNetwork, rng: &mut ChaCha20Rng) -> Vec<CrtTensor> {
    let plan = Plan::new(net).expect("a valid linear network");
    let base = plan.network().base.clone();
    let ones: Vec<Vec<u16>> = base
        .moduli()
        .iter()
        .map(|m| {
            let one: Vec<u16> = (0..m.digits()).map(|_| (rng.next_u64() % m.value() as u64) as u16).collect();
            ctgrind::secret(one.as_slice());
            one
        })
        .collect();
    let mut acts: Vec<Option<CrtTensor>> = vec![Some(secret_labels(rng, &base, plan.input_shape()))];
    for i in 0..plan.network().layers.len() {
        let x = acts[i].clone().expect("every activation is kept");
        let y = engine::ct_hook_linear_layer(&plan, i, x, &acts, &ones).expect("shapes fit");
        acts.push(Some(y));
    }
    acts.into_iter().map(|a| a.expect("kept")).collect()
}

fn main() {
    let plant = std::env::args().any(|a| a == "--plant");
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let base = CrtBase::new(&[2, 3, 5, 7, 11, 13, 3181]).expect("distinct primes");

    // 1000 terms per output: past the u32 accumulator's limit for p = 3181.
    let dense = IntNetwork::new(
        vec![1000],
        vec![IntLayer::Dense {
            inputs: 1000,
            outputs: 3,
            weights: weights(&mut rng, 3000),
            bias: weights(&mut rng, 3),
        }],
        base.clone(),
    )
    .expect("dense network");
    let dense_acts = run(dense, &mut rng);

    let conv = |rng: &mut ChaCha20Rng, ic: usize, oc: usize, stride: usize, padding: Padding| IntLayer::Conv2d {
        in_channels: ic,
        out_channels: oc,
        kernel: [3, 3],
        stride: [stride, stride],
        padding,
        weights: weights(rng, oc * ic * 9),
        bias: weights(rng, oc),
    };
    let uneven = Padding { top: 0, left: 1, bottom: 1, right: 0 };
    let layers = vec![
        conv(&mut rng, 2, 2, 1, Padding::uniform(1)),
        IntLayer::ResidualAdd { from: 0 },
        IntLayer::SumPool { kernel: [2, 2], stride: [2, 2] },
        conv(&mut rng, 2, 3, 2, uneven),
        IntLayer::Flatten,
        IntLayer::Reshape { shape: vec![3, 1, 4] },
    ];
    let cnn = IntNetwork::new(vec![2, 8, 8], layers, base).expect("convolutional network");
    let cnn_acts = run(cnn, &mut rng);

    if plant {
        // The sum pooling's output (activation 3): a branch on a secret digit.
        let digit = cnn_acts[3].residues()[0].digits()[0];
        if std::hint::black_box(digit) == 1 {
            println!("planted branch taken");
        }
    }
    let elements: usize = dense_acts.iter().chain(&cnn_acts).map(|a| a.len()).sum();
    println!("linear kernels ran on secret labels ({elements} elements in all)");
}
