//! CRT addition of two bundles over the first 8 primes (free: no
//! ciphertext), on the garbler's zero labels and on the evaluator's labels.
//!
//! `cargo bench -p dash-core --bench crt`

mod common;

use common::Figure;
use criterion::Criterion;
use dash_core::{
    Bundle, CrtBase, Evaluator, Garbler, GarblerKeys, Label, OneLabels, SliceSink, SliceSource, ZeroLabel,
};
use dash_core::{FixedKeyHash, crt};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::hint::black_box;

struct Fixture {
    hash: FixedKeyHash,
    keys: GarblerKeys,
    ones: OneLabels,
    zeros: (Bundle<ZeroLabel>, Bundle<ZeroLabel>),
    labels: (Bundle<Label>, Bundle<Label>),
}

fn fixture() -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let base = CrtBase::first(8).unwrap();
    let keys: GarblerKeys = GarblerKeys::generate(&mut rng, base.moduli()).unwrap();
    let x0 = keys.input_bundle(&base, &mut rng).unwrap();
    let y0 = keys.input_bundle(&base, &mut rng).unwrap();
    let x = keys.encode_bundle(&base, &x0, 123_456).unwrap();
    let y = keys.encode_bundle(&base, &y0, -98_765).unwrap();
    let ones = keys.one_labels();
    Fixture { hash: FixedKeyHash::new(), keys, ones, zeros: (x0, y0), labels: (x, y) }
}

fn main() {
    let f = fixture();
    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = c.benchmark_group("crt_add8");
        let mut g = Garbler::new(&f.hash, &f.keys, SliceSink::new(&mut []));
        group.bench_function("garble", |b| {
            b.iter(|| crt::add(&mut g, black_box(&f.zeros.0), black_box(&f.zeros.1)).unwrap())
        });
        let mut e = Evaluator::new(&f.hash, &f.ones, SliceSource::new(&[]));
        group.bench_function("eval", |b| {
            b.iter(|| crt::add(&mut e, black_box(&f.labels.0), black_box(&f.labels.1)).unwrap())
        });
        group.finish();
    }
    c.final_summary();

    let mut g = Garbler::new(&f.hash, &f.keys, SliceSink::new(&mut []));
    let mut e = Evaluator::new(&f.hash, &f.ones, SliceSource::new(&[]));
    let figures = vec![
        Figure::new("crt_add8/garble", "add", 1, || {
            black_box(crt::add(&mut g, black_box(&f.zeros.0), black_box(&f.zeros.1)).unwrap());
        }),
        Figure::new("crt_add8/eval", "add", 1, || {
            black_box(crt::add(&mut e, black_box(&f.labels.0), black_box(&f.labels.1)).unwrap());
        }),
    ];
    common::print_ratios("crt", figures);
}
