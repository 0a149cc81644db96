//! AES block rate: `FixedKeyHash::permute` (raw fixed-key AES) on batches,
//! the same permutation with 1, 2 or 4 backend passes in flight, and the
//! `aes` crate's own `encrypt_blocks` (whole batch, and 8-block calls as
//! `permute` made them before it ran whole batches in one backend call);
//! then the tweakable hash built on it.
//!
//! `cargo bench -p dash-core --bench aes`

mod common;

use aes::Aes128;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use common::Figure;
use criterion::{BenchmarkId, Criterion, Throughput};
use dash_core::{Block, Domain, FixedKeyHash, Tweak};
use std::hint::black_box;

const BATCHES: [usize; 4] = [1, 8, 64, 1024];

fn blocks(n: usize) -> Vec<Block> {
    (0..n as u128).map(|i| Block(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))).collect()
}

fn aes_blocks(n: usize) -> Vec<aes::Block> {
    blocks(n).iter().map(|b| b.to_bytes().into()).collect()
}

/// The `aes` crate's API directly: `encrypt_blocks` on `chunk` blocks at a
/// time (each call picks the backend again).
fn crate_blocks(aes: &Aes128, blocks: &mut [aes::Block], chunk: usize) {
    for c in blocks.chunks_mut(chunk) {
        aes.encrypt_blocks(c);
    }
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

    let mut group = c.benchmark_group("aes_in_flight");
    let mut b = blocks(1024);
    group.throughput(Throughput::Elements(1024));
    for g in [1usize, 2, 4] {
        group.bench_with_input(BenchmarkId::from_parameter(g), &g, |bench, &g| {
            bench.iter(|| hash.permute_in_flight(g, black_box(&mut b[..])))
        });
    }
    group.finish();

    let aes = Aes128::new(&(*b"dash-core/tccr/1").into());
    let mut group = c.benchmark_group("aes_crate_encrypt_blocks");
    let mut b = aes_blocks(1024);
    group.throughput(Throughput::Elements(1024));
    for chunk in [8usize, 1024] {
        group.bench_with_input(BenchmarkId::new("1024_in_calls_of", chunk), &chunk, |bench, &chunk| {
            bench.iter(|| crate_blocks(&aes, black_box(&mut b[..]), chunk))
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

    // 17: the keys of one p = 17 projection gate.
    let mut group = c.benchmark_group("tccr_hash_same_tweak");
    let t = Tweak::new(Domain::Projection, 7, 0);
    for n in [17usize, 1024] {
        let mut b = blocks(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter(|| hash.hash_batch_same_tweak(t, black_box(&mut b[..])))
        });
    }
    group.finish();

    c.bench_function("tccr_hash_one", |bench| bench.iter(|| hash.hash(t, black_box(Block(42)))));
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
    for g in [1usize, 2, 4] {
        let mut b = blocks(1024);
        let h = hash.clone();
        figures.push(Figure::new(format!("aes_in_flight/{g}"), "block", 1024, move || {
            h.permute_in_flight(g, black_box(&mut b[..]))
        }));
    }
    for chunk in [8usize, 1024] {
        let mut b = aes_blocks(1024);
        let aes = Aes128::new(&(*b"dash-core/tccr/1").into());
        figures.push(Figure::new(format!("aes_crate_encrypt_blocks/{chunk}"), "block", 1024, move || {
            crate_blocks(&aes, black_box(&mut b[..]), chunk)
        }));
    }
    for n in [8usize, 1024] {
        let mut b = blocks(n);
        let tweaks: Vec<Tweak> = (0..n as u64).map(|g| Tweak::new(Domain::Projection, g, 0)).collect();
        let h = hash.clone();
        figures.push(Figure::new(format!("tccr_hash_batch/{n}"), "hash", n as u64, move || {
            h.hash_batch(&tweaks, black_box(&mut b[..])).unwrap()
        }));
    }
    let t = Tweak::new(Domain::Projection, 7, 0);
    for n in [17usize, 1024] {
        let mut b = blocks(n);
        let h = hash.clone();
        figures.push(Figure::new(format!("tccr_hash_same_tweak/{n}"), "hash", n as u64, move || {
            h.hash_batch_same_tweak(t, black_box(&mut b[..]))
        }));
    }
    let h = hash.clone();
    figures.push(Figure::new("tccr_hash_one", "hash", 1, move || {
        black_box(h.hash(t, black_box(Block(42))));
    }));
    common::print_ratios("aes", figures);
}
