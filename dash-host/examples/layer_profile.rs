//! Evaluates one non-linear layer many times, for profilers (perf,
//! callgrind): the engine's per-element overhead around the gadget shows up
//! here and not in `dashgc bench`.
//!
//! `cargo run --release -p dash-host --example layer_profile -- [relu|rescale|maxpool] [REPS]`

use dash_core::CrtBase;
use dash_host::engine::{self, Plan};
use dash_host::network::{IntLayer, IntNetwork, Rounding};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("relu", String::as_str);
    let reps: usize = args.get(2).map_or(Ok(50), |s| s.parse())?;
    let (shape, layer) = match which {
        "relu" => (vec![1024], IntLayer::Relu),
        "rescale" => (vec![1024], IntLayer::Rescale { divisor: 35, rounding: Rounding::Floor }),
        "maxpool" => (vec![16, 12, 12], IntLayer::MaxPool { kernel: [2, 2], stride: [2, 2] }),
        other => anyhow::bail!("unknown layer {other}: relu, rescale or maxpool"),
    };
    let net = IntNetwork::new(shape, vec![layer], CrtBase::first(8)?)?;
    let plan = Plan::new(&net)?;
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let n: usize = net.input_shape.iter().product();
    let x: Vec<i64> = (0..n).map(|_| (rng.next_u64() % 2001) as i64 - 1000).collect();
    let mut material = Vec::new();
    let session = engine::garble(&plan, &mut rng, &mut material)?;
    let (labels, _awaiting) = session.encode_input(&x)?;
    let start = Instant::now();
    for _ in 0..reps {
        let out = engine::evaluate(&plan, material.as_slice(), &labels)?;
        std::hint::black_box(out);
    }
    let per = start.elapsed().as_secs_f64() / reps as f64;
    println!("{which}: {:.3} ms per layer, {:.2} µs per element", per * 1e3, per * 1e6 / n as f64);
    Ok(())
}
