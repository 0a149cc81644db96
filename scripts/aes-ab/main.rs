//! See run.sh: `base` is the old commit's dash-core, `head` this checkout's.

use dash_core::{Block, Domain, FixedKeyHash, Tweak};
use dash_core_base as base;
use std::hint::black_box;
use std::time::Instant;

mod base_fixture {
    use dash_core_base as dc;
    include!("fixture.rs");
}
mod head_fixture {
    use dash_core as dc;
    include!("fixture.rs");
}

/// Times each of `fs` (which does `units` units per call) against the
/// reference, round by round.
fn measure(name: &str, units: usize, fs: &mut [(&str, &mut dyn FnMut())]) {
    let h = FixedKeyHash::new();
    let mut refb = blocks(1024);
    let mut reference = || h.permute_in_flight(1, black_box(&mut refb[..]));
    let calibrate = |f: &mut dyn FnMut()| {
        let mut n = 1u64;
        loop {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            if t.elapsed().as_nanos() > 30_000 {
                return n;
            }
            n *= 2;
        }
    };
    let riters = calibrate(&mut reference);
    let iters: Vec<u64> = fs.iter_mut().map(|(_, f)| calibrate(*f)).collect();
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let mut samples = vec![Vec::new(); fs.len()];
    let mut ratios = vec![Vec::new(); fs.len()];
    let mut refs = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..riters {
            reference();
        }
        let r = t.elapsed().as_nanos() as f64 / riters as f64 / 1024.0;
        refs.push(r);
        for (k, (_, f)) in fs.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..iters[k] {
                f();
            }
            let x = t.elapsed().as_nanos() as f64 / iters[k] as f64 / units as f64;
            samples[k].push(x);
            ratios[k].push(x / r);
        }
    }
    let sort = |v: &mut Vec<f64>| v.sort_by(|a, b| a.total_cmp(b));
    sort(&mut refs);
    for (k, (label, _)) in fs.iter().enumerate() {
        let (s, q) = (&mut samples[k], &mut ratios[k]);
        sort(s);
        sort(q);
        println!(
            "{name:<22} {label:<8} fastest {:8.2} median {:8.2} ns | ratio to reference p10 {:7.3} median {:7.3} (reference fastest {:.2} ns/block)",
            s[0],
            s[s.len() / 2],
            q[q.len() / 10],
            q[q.len() / 2],
            refs[0]
        );
    }
}

fn blocks(n: usize) -> Vec<Block> {
    (0..n as u128).map(|i| Block(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))).collect()
}

fn base_blocks(n: usize) -> Vec<base::Block> {
    blocks(n).iter().map(|b| base::Block(b.0)).collect()
}

fn main() {
    let h = FixedKeyHash::new();
    let b = base::FixedKeyHash::new();
    println!("AES backend: {} blocks per pass", h.par_blocks());
    let filter: Vec<String> = std::env::args().skip(1).collect();
    let want = |s: &str| filter.is_empty() || filter.iter().any(|f| s.contains(f.as_str()));
    for n in [1usize, 8, 17, 64, 1024] {
        let name = format!("permute/{n}");
        if want(&name) {
            let (mut x, mut y) = (base_blocks(n), blocks(n));
            let (mut f1, mut f2, mut f4) = (blocks(n), blocks(n), blocks(n));
            measure(&name, n, &mut [
                ("base", &mut || b.permute(black_box(&mut x[..]))),
                ("head", &mut || h.permute(black_box(&mut y[..]))),
                ("flight1", &mut || h.permute_in_flight(1, black_box(&mut f1[..]))),
                ("flight2", &mut || h.permute_in_flight(2, black_box(&mut f2[..]))),
                ("flight4", &mut || h.permute_in_flight(4, black_box(&mut f4[..]))),
            ]);
        }
    }
    for n in [8usize, 17, 64, 1024] {
        let name = format!("hash_batch/{n}");
        if want(&name) {
            let tw: Vec<Tweak> = (0..n as u64).map(|g| Tweak::new(Domain::Projection, g, 0)).collect();
            let btw: Vec<base::Tweak> = tw.iter().map(|t| base::Tweak(t.0)).collect();
            let (mut x, mut y) = (base_blocks(n), blocks(n));
            measure(&name, n, &mut [
                ("base", &mut || b.hash_batch(&btw, black_box(&mut x[..])).unwrap()),
                ("head", &mut || h.hash_batch(&tw, black_box(&mut y[..])).unwrap()),
            ]);
        }
    }
    for n in [17usize, 97, 1024] {
        let name = format!("same_tweak/{n}");
        if want(&name) {
            let t = Tweak::new(Domain::Projection, 5, 0);
            let (mut x, mut y) = (base_blocks(n), blocks(n));
            measure(&name, n, &mut [
                ("base", &mut || b.hash_batch_same_tweak(base::Tweak(t.0), black_box(&mut x[..]))),
                ("head", &mut || h.hash_batch_same_tweak(t, black_box(&mut y[..]))),
            ]);
        }
    }
    if want("hash_one") {
        let t = Tweak::new(Domain::Projection, 5, 0);
        measure("hash_one", 1, &mut [
            ("base", &mut || {
                black_box(b.hash(base::Tweak(t.0), black_box(base::Block(42))));
            }),
            ("head", &mut || {
                black_box(h.hash(t, black_box(Block(42))));
            }),
        ]);
    }
    for p in [17u16, 97] {
        let name = format!("proj{p}");
        if !want(&name) {
            continue;
        }
        let (mut x, mut y) = (base_fixture::Fixture::new(p), head_fixture::Fixture::new(p));
        assert_eq!(x.rows(), y.rows(), "garbled material differs between base and head");
        let g = head_fixture::GATES;
        measure(&format!("proj{p}_garble_batch"), g, &mut [("base", &mut || x.garble_batch()), ("head", &mut || y.garble_batch())]);
        measure(&format!("proj{p}_eval_batch"), g, &mut [("base", &mut || x.eval_batch()), ("head", &mut || y.eval_batch())]);
        measure(&format!("proj{p}_garble_one"), 1, &mut [("base", &mut || x.garble_one()), ("head", &mut || y.garble_one())]);
        measure(&format!("proj{p}_eval_one"), 1, &mut [("base", &mut || x.eval_one()), ("head", &mut || y.eval_one())]);
    }
}
