//! Projection gates `Z_p → Z_p` (table `x ↦ x² + 1`) at p = 3, 17, 97, 251:
//! garbling and evaluation of a single gate, and of 1024 independent gates
//! (each with its own input label and tweak, rows streamed from one buffer),
//! reported per gate; the batched figures both as a loop of single-gate
//! calls (`proj_garble_batch1024`, `proj_eval_batch1024`) and through the
//! batch API: `projection::garble_batch` (`proj_garble_batch_api1024`),
//! which reduces and lays out the table once and writes the output labels
//! in place, and `projection::evaluate_batch` (`proj_eval_batch_api1024`),
//! which hashes up to 8 gates per AES pipeline pass.
//!
//! `cargo bench -p dash-core --bench projection`

mod common;

use common::Figure;
use criterion::{BenchmarkId, Criterion, Throughput};
use dash_core::projection;
use dash_core::{Block, Delta, Domain, FixedKeyHash, Label, Modulus, SliceSink, SliceSource, Tweak, ZeroLabel};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::hint::black_box;

const PRIMES: [u16; 4] = [3, 17, 97, 251];
/// Independent gates in the batched figures.
const GATES: usize = 1024;

fn table(x: u16) -> u16 {
    x * x + 1
}

/// `GATES` garbled gates of one modulus, and the evaluator's input labels.
struct Fixture {
    m: Modulus,
    delta: Delta,
    hash: FixedKeyHash,
    inputs: Vec<ZeroLabel>,
    labels: Vec<Label>,
    tweaks: Vec<Tweak>,
    rows: Vec<Block>,
    scratch: Vec<Block>,
    outputs: Vec<Label>,
    zero_outputs: Vec<ZeroLabel>,
}

impl Fixture {
    fn new(p: u16) -> Fixture {
        let mut rng = ChaCha20Rng::seed_from_u64(p as u64);
        let m = Modulus::new(p).unwrap();
        let delta = Delta::random(m, &mut rng);
        let hash = FixedKeyHash::new();
        let inputs: Vec<ZeroLabel> = (0..GATES).map(|_| ZeroLabel::random(m, &mut rng)).collect();
        let labels = inputs.iter().map(|z| z.encode((rng.next_u32() % p as u32) as u16, &delta).unwrap()).collect();
        let tweaks = (0..GATES as u64).map(|g| Tweak::new(Domain::Projection, g, 0)).collect();
        let rows = vec![Block::ZERO; GATES * (p as usize - 1)];
        let scratch = rows.clone();
        let outputs = vec![Label::zero(m); GATES];
        let zero_outputs = (0..GATES).map(|_| ZeroLabel::new(Label::zero(m))).collect();
        let mut f = Fixture { m, delta, hash, inputs, labels, tweaks, rows, scratch, outputs, zero_outputs };
        let mut sink = SliceSink::new(&mut f.rows);
        for (z, t) in f.inputs.iter().zip(&f.tweaks) {
            projection::garble(&f.hash, *t, z, &f.delta, &f.delta, table, &mut sink).unwrap();
        }
        f
    }

    fn rows_per_gate(&self) -> usize {
        self.m.value() as usize - 1
    }

    fn garble_one(&mut self) {
        let n = self.rows_per_gate();
        let mut sink = SliceSink::new(&mut self.scratch[..n]);
        let out =
            projection::garble(&self.hash, self.tweaks[0], &self.inputs[0], &self.delta, &self.delta, table, &mut sink);
        black_box(out.unwrap());
    }

    fn eval_one(&self) {
        let n = self.rows_per_gate();
        let mut src = SliceSource::new(&self.rows[..n]);
        black_box(
            projection::evaluate(&self.hash, self.tweaks[0], black_box(&self.labels[0]), self.m, &mut src).unwrap(),
        );
    }

    fn garble_all(&mut self) {
        let mut sink = SliceSink::new(&mut self.scratch);
        for (z, t) in self.inputs.iter().zip(&self.tweaks) {
            black_box(projection::garble(&self.hash, *t, z, &self.delta, &self.delta, table, &mut sink).unwrap());
        }
    }

    fn garble_batch_api(&mut self) {
        let mut sink = SliceSink::new(&mut self.scratch);
        let (h, d) = (&self.hash, &self.delta);
        projection::garble_batch(h, &self.tweaks, &self.inputs, d, d, table, &mut sink, &mut self.zero_outputs)
            .unwrap();
        black_box(&self.zero_outputs);
    }

    fn eval_batch_api(&mut self) {
        let mut src = SliceSource::new(&self.rows);
        projection::evaluate_batch(&self.hash, &self.tweaks, &self.labels, self.m, &mut src, &mut self.outputs)
            .unwrap();
        black_box(&self.outputs);
    }

    fn eval_all(&self) {
        let mut src = SliceSource::new(&self.rows);
        for (l, t) in self.labels.iter().zip(&self.tweaks) {
            black_box(projection::evaluate(&self.hash, *t, black_box(l), self.m, &mut src).unwrap());
        }
    }
}

/// A criterion group: its name, whether an iteration runs `GATES` gates,
/// and what one iteration does.
type Group = (&'static str, bool, fn(&mut Fixture));

fn main() {
    let mut fixtures: Vec<Fixture> = PRIMES.iter().map(|&p| Fixture::new(p)).collect();
    let mut c = Criterion::default().configure_from_args();

    let groups: [Group; 6] = [
        ("proj_garble", false, |f| f.garble_one()),
        ("proj_eval", false, |f| f.eval_one()),
        ("proj_garble_batch1024", true, |f| f.garble_all()),
        ("proj_garble_batch_api1024", true, |f| f.garble_batch_api()),
        ("proj_eval_batch1024", true, |f| f.eval_all()),
        ("proj_eval_batch_api1024", true, |f| f.eval_batch_api()),
    ];
    for (name, batched, op) in groups {
        let mut group = c.benchmark_group(name);
        if batched {
            group.throughput(Throughput::Elements(GATES as u64));
            group.sample_size(20);
        }
        for f in fixtures.iter_mut() {
            group.bench_function(BenchmarkId::from_parameter(f.m.value()), |b| b.iter(|| op(f)));
        }
        group.finish();
    }
    c.final_summary();

    let mut figures = Vec::new();
    drop(fixtures);
    // Each paired figure owns its fixture (the closures live side by side).
    for p in PRIMES {
        let mut g1 = Fixture::new(p);
        figures.push(Figure::new(format!("proj_garble/{p}"), "gate", 1, move || g1.garble_one()));
        let e1 = Fixture::new(p);
        figures.push(Figure::new(format!("proj_eval/{p}"), "gate", 1, move || e1.eval_one()));
        let mut gb = Fixture::new(p);
        figures.push(Figure::new(format!("proj_garble_batch1024/{p}"), "gate", GATES as u64, move || gb.garble_all()));
        let mut ga = Fixture::new(p);
        figures.push(Figure::new(format!("proj_garble_batch_api1024/{p}"), "gate", GATES as u64, move || {
            ga.garble_batch_api()
        }));
        let eb = Fixture::new(p);
        figures.push(Figure::new(format!("proj_eval_batch1024/{p}"), "gate", GATES as u64, move || eb.eval_all()));
        let mut ea = Fixture::new(p);
        figures.push(Figure::new(format!("proj_eval_batch_api1024/{p}"), "gate", GATES as u64, move || {
            ea.eval_batch_api()
        }));
    }
    common::print_ratios("projection", figures);
}
