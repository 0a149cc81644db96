//! AES block rate: `FixedKeyHash::permute` (raw fixed-key AES) on batches,
//! and the tweakable hash built on it, for reference.
//!
//! `cargo bench -p dash-core --bench aes`

mod common;

use common::Figure;
use criterion::{BenchmarkId, Criterion, Throughput};
use dash_core::{Block, Domain, FixedKeyHash, Tweak};
use std::hint::black_box;

const BATCHES: [usize; 4] = [1, 8, 64, 1024];

fn blocks(n: usize) -> Vec<Block> {
    (0..n as u128).map(|i| Block(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))).collect()
}

fn bench(c: &mut Criterion) {
    let hash = FixedKeyHash::new();
    let mut group = c.benchmark_group("aes_permute");
    for n in BATCHES {
        let mut b = blocks(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter(|| hash.permute(black_box(&mut b[..])))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("tccr_hash_batch");
    for n in [8usize, 1024] {
        let mut b = blocks(n);
        let tweaks: Vec<Tweak> = (0..n as u64).map(|g| Tweak::new(Domain::Projection, g, 0)).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter(|| hash.hash_batch(&tweaks, black_box(&mut b[..])).unwrap())
        });
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();

    let hash = FixedKeyHash::new();
    let mut figures = Vec::new();
    for n in BATCHES {
        let mut b = blocks(n);
        let h = hash.clone();
        figures
            .push(Figure::new(format!("aes_permute/{n}"), "block", n as u64, move || h.permute(black_box(&mut b[..]))));
    }
    for n in [8usize, 1024] {
        let mut b = blocks(n);
        let tweaks: Vec<Tweak> = (0..n as u64).map(|g| Tweak::new(Domain::Projection, g, 0)).collect();
        let h = hash.clone();
        figures.push(Figure::new(format!("tccr_hash_batch/{n}"), "hash", n as u64, move || {
            h.hash_batch(&tweaks, black_box(&mut b[..])).unwrap()
        }));
    }
    common::print_ratios("aes", figures);
}
