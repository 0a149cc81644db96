//! Gadgets on one element, single thread: exact ReLU, exact sign bit, max of
//! two values (k = 7, 8), and rescaling by 33 (about 2^5, floor) at k = 7
//! and by 35 at k = 8; garbling and evaluation timed separately, with the
//! paired ratio to the AES block rate printed after the criterion run.
//!
//! `cargo bench -p dash-core --bench gadgets`

mod common;

use common::Figure;
use criterion::{BenchmarkId, Criterion};
use dash_core::gadgets::compare;
use dash_core::gadgets::rescale::{Rescale, Rounding};
use dash_core::gadgets::sign::{Accuracy, SignGadget};
use dash_core::{
    Block, Bundle, CostCounter, CrtBase, Error, Evaluator, FixedKeyHash, Garbler, GarblerKeys, Label, Modulus,
    OneLabels, SliceSink, SliceSource, ZeroLabel,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::hint::black_box;

#[derive(Clone, Copy)]
enum Op {
    Relu,
    Sign,
    Max2,
    Rescale(u64),
}

impl Op {
    fn name(self) -> String {
        match self {
            Op::Relu => "relu".into(),
            Op::Sign => "sign".into(),
            Op::Max2 => "max2".into(),
            Op::Rescale(d) => format!("rescale{d}"),
        }
    }
}

struct Gadgets {
    sign: SignGadget,
    rescale: Option<Rescale>,
}

impl Gadgets {
    fn run<B: dash_core::Backend>(&self, op: Op, b: &mut B, x: &[Bundle<B::Wire>]) -> Result<(), Error> {
        match op {
            Op::Relu => self.sign.relu(b, &x[0]).map(drop),
            Op::Sign => self.sign.sign_bit(b, &x[0]).map(drop),
            Op::Max2 => compare::max2(&self.sign, b, &x[0], &x[1]).map(drop),
            Op::Rescale(_) => self.rescale.as_ref().ok_or(Error::InvalidParameter)?.apply(b, &x[0]).map(drop),
        }
    }
}

struct Fixture {
    op: Op,
    gadgets: Gadgets,
    hash: FixedKeyHash,
    keys: GarblerKeys<64>,
    ones: OneLabels<64>,
    zeros: Vec<Bundle<ZeroLabel>>,
    labels: Vec<Bundle<Label>>,
    rows: Vec<Block>,
    scratch: Vec<Block>,
}

impl Fixture {
    fn new(k: usize, op: Op) -> Fixture {
        let mut rng = ChaCha20Rng::seed_from_u64(k as u64);
        let base = CrtBase::first(k).unwrap();
        let sign = SignGadget::new(&base, Accuracy::Exact).unwrap();
        let rescale = match op {
            Op::Rescale(d) => Some(Rescale::new(&base, d, Rounding::Floor).unwrap()),
            _ => None,
        };
        let gadgets = Gadgets { sign, rescale };
        let inputs = if matches!(op, Op::Max2) { 2 } else { 1 };
        let mut cost = CostCounter::new();
        let bundles: Vec<Bundle<Modulus>> =
            (0..inputs).map(|_| Bundle::from_wires(base.moduli().iter().map(|&m| cost.input(m))).unwrap()).collect();
        gadgets.run(op, &mut cost, &bundles).unwrap();
        let moduli: Vec<Modulus> = cost.moduli().unwrap().iter().map(|&p| Modulus::new(p).unwrap()).collect();
        let keys: GarblerKeys<64> = GarblerKeys::generate(&mut rng, &moduli).unwrap();
        let ones = keys.one_labels();
        let hash = FixedKeyHash::new();
        let zeros: Vec<_> = (0..inputs).map(|_| keys.input_bundle(&base, &mut rng).unwrap()).collect();
        let labels: Vec<_> = zeros
            .iter()
            .enumerate()
            .map(|(i, z)| keys.encode_bundle(&base, z, 1000 * i as i128 - 77).unwrap())
            .collect();
        let mut rows = vec![Block::ZERO; cost.ciphertexts as usize];
        let mut g = Garbler::new(&hash, &keys, SliceSink::new(&mut rows));
        gadgets.run(op, &mut g, &zeros).unwrap();
        let scratch = rows.clone();
        Fixture { op, gadgets, hash, keys, ones, zeros, labels, rows, scratch }
    }

    fn garble(&mut self) {
        let mut g = Garbler::new(&self.hash, &self.keys, SliceSink::new(&mut self.scratch));
        self.gadgets.run(self.op, &mut g, black_box(&self.zeros)).unwrap();
    }

    fn eval(&self) {
        let mut e = Evaluator::new(&self.hash, &self.ones, SliceSource::new(&self.rows));
        self.gadgets.run(self.op, &mut e, black_box(&self.labels)).unwrap();
    }
}

const CASES: [(usize, Op); 8] = [
    (7, Op::Relu),
    (8, Op::Relu),
    (7, Op::Sign),
    (8, Op::Sign),
    (7, Op::Max2),
    (8, Op::Max2),
    (7, Op::Rescale(33)),
    (8, Op::Rescale(35)),
];

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("gadget_garble");
    group.sample_size(20);
    for (k, op) in CASES {
        let mut f = Fixture::new(k, op);
        group.bench_function(BenchmarkId::new(op.name(), k), |b| b.iter(|| f.garble()));
    }
    group.finish();
    let mut group = c.benchmark_group("gadget_eval");
    group.sample_size(20);
    for (k, op) in CASES {
        let f = Fixture::new(k, op);
        group.bench_function(BenchmarkId::new(op.name(), k), |b| b.iter(|| f.eval()));
    }
    group.finish();
    c.final_summary();

    let mut figures = Vec::new();
    for (k, op) in CASES {
        let mut g = Fixture::new(k, op);
        figures.push(Figure::new(format!("gadget_garble/{}/{k}", op.name()), "elem", 1, move || g.garble()));
        let e = Fixture::new(k, op);
        figures.push(Figure::new(format!("gadget_eval/{}/{k}", op.name()), "elem", 1, move || e.eval()));
    }
    common::print_ratios("gadgets", figures);
}
