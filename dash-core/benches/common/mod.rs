//! Shared by the criterion benches: the AES-relative ("ratio to AES block")
//! measurement printed after each criterion run, and fixtures.
//!
//! # Why a separate paired measurement
//!
//! Criterion reports absolute times, measured one benchmark after another;
//! on a shared, loaded machine the AES reference and the figure being
//! compared may be measured minutes apart under different load. The ratio
//! is therefore measured on its own, *paired*: for each figure the bench
//! binary alternates short batches of (a) `FixedKeyHash::permute` on 1024
//! blocks and (b) the operation, [`ROUNDS`] times, swapping which goes first
//! every round. Each round gives one ratio `op time / AES block time` from
//! two batches taken milliseconds apart under the same load; the printed
//! ratio is the median over the rounds, and the printed absolute times are
//! the medians of the same batches. This adds about 0.1 s per figure.
//!
//! Ratio lines are printed only in benchmark mode (`cargo bench`), not when
//! criterion runs in test or list mode; set `DASH_BENCH_RATIOS=0` to skip
//! them.

#![allow(dead_code)] // each bench binary uses a subset

use dash_core::{Block, FixedKeyHash};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Rounds of the paired measurement (odd, so the median is one round).
pub const ROUNDS: usize = 21;
/// Blocks per AES reference call.
pub const AES_BATCH: usize = 1024;
/// Target length of one timed batch.
const BATCH_TIME: Duration = Duration::from_millis(2);

/// Whether this run should print ratio lines (criterion benchmark mode).
pub fn ratios_wanted() -> bool {
    if std::env::var("DASH_BENCH_RATIOS").is_ok_and(|v| v == "0") {
        return false;
    }
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--bench") && !has("--test") && !has("--list") && !args.iter().any(|a| a.starts_with("--profile-time"))
}

/// Iterations of `f` that take about [`BATCH_TIME`].
fn calibrate(f: &mut dyn FnMut()) -> u64 {
    let mut iters = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        let el = t.elapsed();
        if el >= BATCH_TIME / 4 || iters >= 1 << 30 {
            let per = el.as_secs_f64() / iters as f64;
            return ((BATCH_TIME.as_secs_f64() / per.max(1e-12)) as u64).max(1);
        }
        iters *= 4;
    }
}

fn time_batch(f: &mut dyn FnMut(), iters: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_secs_f64() * 1e9 / iters as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The AES block reference and the paired measurements against it.
pub struct AesRef {
    hash: FixedKeyHash,
    blocks: Vec<Block>,
}

/// One paired figure: medians over [`ROUNDS`].
pub struct Paired {
    /// Nanoseconds per unit of the operation.
    pub ns: f64,
    /// Nanoseconds per AES block in the same rounds.
    pub aes_ns: f64,
    /// Median of the per-round ratios (op per unit / AES block).
    pub ratio: f64,
}

impl Default for AesRef {
    fn default() -> Self {
        Self::new()
    }
}

impl AesRef {
    /// A reference over [`AES_BATCH`] distinct blocks.
    pub fn new() -> AesRef {
        AesRef {
            hash: FixedKeyHash::new(),
            blocks: (0..AES_BATCH as u128).map(|i| Block(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))).collect(),
        }
    }

    /// Measures `op` (which does `units` units of work per call) paired with
    /// the AES reference.
    pub fn paired(&mut self, units: u64, mut op: impl FnMut()) -> Paired {
        let hash = &self.hash;
        let blocks = &mut self.blocks;
        let mut aes = || {
            hash.permute(black_box(&mut blocks[..]));
        };
        let aes_iters = calibrate(&mut aes);
        let op_iters = calibrate(&mut op);
        let (mut ops, mut refs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (a, o) = if round % 2 == 0 {
                let a = time_batch(&mut aes, aes_iters);
                (a, time_batch(&mut op, op_iters))
            } else {
                let o = time_batch(&mut op, op_iters);
                (time_batch(&mut aes, aes_iters), o)
            };
            let a = a / AES_BATCH as f64;
            let o = o / units as f64;
            refs.push(a);
            ops.push(o);
            ratios.push(o / a);
        }
        Paired { ns: median(&mut ops), aes_ns: median(&mut refs), ratio: median(&mut ratios) }
    }
}

/// One figure to compare with AES: `op` does `units` `unit`s of work per call.
pub struct Figure<'a> {
    name: String,
    unit: &'static str,
    units: u64,
    op: Box<dyn FnMut() + 'a>,
}

impl<'a> Figure<'a> {
    /// A named figure.
    pub fn new(name: impl Into<String>, unit: &'static str, units: u64, op: impl FnMut() + 'a) -> Figure<'a> {
        Figure { name: name.into(), unit, units, op: Box::new(op) }
    }
}

/// Prints the ratio lines for `figures`.
pub fn print_ratios(title: &str, figures: Vec<Figure<'_>>) {
    if !ratios_wanted() {
        return;
    }
    let mut reference = AesRef::new();
    println!();
    println!("ratio to AES block ({title}; paired medians over {ROUNDS} rounds, see benches/common/mod.rs)");
    for Figure { name, unit, units, op } in figures {
        let p = reference.paired(units, op);
        println!(
            "ratio to AES block: {name:<32} {:>10.1} ns/{unit:<6} = {:>8.2} AES blocks   (AES {:.2} ns/block)",
            p.ns, p.ratio, p.aes_ns
        );
    }
}
