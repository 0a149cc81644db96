//! Instruction-count profile of projection gates, for callgrind (machine
//! load does not change instruction counts):
//!
//! `valgrind --tool=callgrind target/release/examples/proj_profile garble 17`
//! (`garble` | `batch` | `eval` | `setup`, then the prime; or `relu-garble` |
//! `relu-eval` | `relu-setup` for 256 exact ReLUs at k = 7). Subtract the `setup` total
//! and divide by the 4096 gates. `garble` calls `projection::garble` per
//! gate, `batch` garbles the same gates with one `projection::garble_batch`.
//! An optional third argument repeats the garbling that many times, for a
//! sampling profiler (`perf record -F 20000 ... garble 17 200`).

use dash_core::projection;
use dash_core::{Block, Delta, Domain, FixedKeyHash, Label, Modulus, SliceSink, SliceSource, Tweak, ZeroLabel};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::hint::black_box;

const GATES: usize = 4096;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("eval");
    if let Some(relu_mode) = mode.strip_prefix("relu-") {
        return relu(relu_mode);
    }
    let p: u16 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(17);
    let rounds: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let m = Modulus::new(p).expect("prime");
    let delta = Delta::random(m, &mut rng);
    let hash = FixedKeyHash::new();
    let inputs: Vec<ZeroLabel> = (0..GATES).map(|_| ZeroLabel::random(m, &mut rng)).collect();
    let labels: Vec<Label> =
        inputs.iter().map(|z| z.encode((rng.next_u32() % p as u32) as u16, &delta).expect("encode")).collect();
    let tweaks: Vec<Tweak> = (0..GATES as u64).map(|g| Tweak::new(Domain::Projection, g, 0)).collect();
    let mut rows = vec![Block::ZERO; GATES * (p as usize - 1)];
    let table = |x: u16| x * x + 1;
    let mut outs = vec![Label::zero(m); GATES];
    match mode {
        "garble" | "eval" => {
            for _ in 0..rounds {
                let mut sink = SliceSink::new(&mut rows);
                for (z, t) in inputs.iter().zip(&tweaks) {
                    black_box(projection::garble(&hash, *t, z, &delta, &delta, table, &mut sink).expect("garble"));
                }
            }
        }
        "batch" => {
            let mut zeros: Vec<ZeroLabel> = (0..GATES).map(|_| ZeroLabel::new(Label::zero(m))).collect();
            for _ in 0..rounds {
                let mut sink = SliceSink::new(&mut rows);
                projection::garble_batch(&hash, &tweaks, &inputs, &delta, &delta, table, &mut sink, &mut zeros)
                    .expect("garble");
                black_box(&zeros);
            }
        }
        _ => {}
    }
    if mode == "eval" {
        let mut src = SliceSource::new(&rows);
        projection::evaluate_batch(&hash, &tweaks, &labels, m, &mut src, &mut outs).expect("eval");
        black_box(&outs);
    }
}

/// 256 exact ReLUs at k = 7: garbled (`garble`), garbled then evaluated
/// (`eval`), or neither (`setup`).
fn relu(mode: &str) {
    use dash_core::gadgets::sign::{Accuracy, SignGadget};
    use dash_core::{Bundle, CostCounter, CrtBase, Evaluator, Garbler, GarblerKeys};
    const N: usize = 256;
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let base = CrtBase::first(7).expect("base");
    let sign = SignGadget::new(&base, Accuracy::Exact).expect("gadget");
    let mut cost = CostCounter::new();
    let x = Bundle::from_wires(base.moduli().iter().map(|&m| cost.input(m))).expect("bundle");
    sign.relu(&mut cost, &x).expect("cost");
    let moduli: Vec<Modulus> = cost.moduli().expect("moduli").iter().map(|&p| Modulus::new(p).expect("p")).collect();
    let keys: GarblerKeys<64> = GarblerKeys::generate(&mut rng, &moduli).expect("keys");
    let ones = keys.one_labels();
    let hash = FixedKeyHash::new();
    let zero = keys.input_bundle(&base, &mut rng).expect("input");
    let label = keys.encode_bundle(&base, &zero, -77).expect("encode");
    let per = cost.ciphertexts as usize;
    let mut rows = vec![Block::ZERO; per * N];
    if mode == "setup" {
        return;
    }
    for chunk in rows.chunks_mut(per) {
        let mut g = Garbler::new(&hash, &keys, SliceSink::new(chunk));
        black_box(sign.relu(&mut g, black_box(&zero)).expect("garble"));
    }
    if mode == "eval" {
        for chunk in rows.chunks(per) {
            let mut e = Evaluator::new(&hash, &ones, SliceSource::new(chunk));
            black_box(sign.relu(&mut e, black_box(&label)).expect("eval"));
        }
    }
}
