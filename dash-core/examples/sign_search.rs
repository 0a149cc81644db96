//! Derives and checks the parameters of the prime-only sign gadget.
//!
//! For the first k primes this program
//!
//! 1. prints the digit order that `SignGadget::new` chooses (radices, the
//!    floored residue, every position's prime sum modulus and contributing
//!    residues) and the ciphertext counts of sign, ReLU, sign activation and
//!    max2, counted by the `CostCounter` backend;
//! 2. for k = 5..=9 searches exhaustively over every digit order of the same
//!    family (every choice of floored residue or none, every ordered grouping
//!    of the odd primes of `M` into radices, top radix 2 or 2·g) and reports
//!    the optimum next to the chosen one;
//! 3. checks exactness by running the gadget itself on the `Plaintext`
//!    backend: on every element of `Z_Q` for k = 5..=8 and on 10^6 random
//!    values plus every value within ±10^4 of 0 and ±Q/2 for k = 9, 10;
//! 4. measures the error rate of the approximate variants exhaustively
//!    (k = 5..=8) and checks that every error lies in the documented window.
//!
//! ```text
//! cargo run -p dash-core --release --example sign_search             # k = 1..=10
//! cargo run -p dash-core --release --example sign_search -- --k10    # adds the k = 10 exhaustive search (minutes)
//! ```

use dash_core::gadgets::compare;
use dash_core::gadgets::sign::{Accuracy, SignGadget};
use dash_core::{Bundle, CostCounter, CrtBase, Modulus, PlainWire, Plaintext};
use std::time::Instant;

/// A circuit on two input bundles, run on the cost counter.
type CostCase<'a> = &'a dyn Fn(&mut CostCounter, &Bundle<Modulus>, &Bundle<Modulus>);

fn counted(g: &SignGadget) -> (u64, u64, u64, u64) {
    let base = g.base();
    let run = |f: CostCase| {
        let mut cc = CostCounter::new();
        let x = Bundle::from_wires(base.moduli().iter().map(|m| cc.input(*m))).unwrap();
        let y = Bundle::from_wires(base.moduli().iter().map(|m| cc.input(*m))).unwrap();
        f(&mut cc, &x, &y);
        for m in cc.moduli().unwrap() {
            assert!(Modulus::new(*m).is_ok(), "non-prime modulus {m}");
        }
        cc.ciphertexts
    };
    let sign = run(&|cc, x, _| {
        g.sign_bit(cc, x).unwrap();
    });
    let relu = run(&|cc, x, _| {
        g.relu(cc, x).unwrap();
    });
    let act = run(&|cc, x, _| {
        g.sign_activation(cc, x).unwrap();
    });
    let max = run(&|cc, x, y| {
        compare::max2(g, cc, x, y).unwrap();
    });
    assert_eq!(sign, g.sign_ciphertexts());
    assert_eq!(relu, g.relu_ciphertexts());
    assert_eq!(act, g.activation_ciphertexts());
    (sign, relu, act, max)
}

fn describe(g: &SignGadget) -> String {
    let primes: Vec<u16> = g.base().moduli().iter().map(|m| m.value()).collect();
    let mut s = format!(
        "radices (least significant first) {:?}, M = {}, floored {}\n",
        g.radices().as_slice(),
        g.scale(),
        g.floored_prime().map_or("none".to_string(), |p| p.to_string())
    );
    for (l, p) in g.positions().enumerate() {
        let who: Vec<u16> = (0..primes.len()).filter(|i| p.contributors >> i & 1 == 1).map(|i| primes[i]).collect();
        let free: Vec<u16> = (0..primes.len()).filter(|i| p.free >> i & 1 == 1).map(|i| primes[i]).collect();
        match p.sum_modulus {
            None => s += &format!("    position {l}: radix {:>4}  not computed\n", p.radix),
            Some(n) => {
                s += &format!("    position {l}: radix {:>4}  sum mod {n:>4}  digits from {who:?}", p.radix);
                if !free.is_empty() {
                    s += &format!(" (free: {free:?})");
                }
                s += "\n";
            }
        }
    }
    s
}

/// Every ordered set partition of `items` (as lists of groups).
fn ordered_partitions(items: &[u16], out: &mut Vec<Vec<u128>>, prefix: &mut Vec<u128>) {
    if items.is_empty() {
        out.push(prefix.clone());
        return;
    }
    let n = items.len();
    for mask in 1u32..1 << n {
        let group: u128 = (0..n).filter(|i| mask >> i & 1 == 1).map(|i| items[i] as u128).product();
        let rest: Vec<u16> = (0..n).filter(|i| mask >> i & 1 == 0).map(|i| items[i]).collect();
        prefix.push(group);
        ordered_partitions(&rest, out, prefix);
        prefix.pop();
    }
}

/// The cheapest exact sign over every digit order of the family.
fn exhaustive_search(base: &CrtBase) -> (u64, Vec<u128>, usize) {
    let odd: Vec<u16> = base.moduli().iter().map(|m| m.value()).filter(|&p| p != 2).collect();
    let mut best: Option<(u64, Vec<u128>)> = None;
    let mut tried = 0;
    let floors: Vec<Option<u16>> = std::iter::once(None).chain(odd.iter().map(|&p| Some(p))).collect();
    for f in floors {
        let factors: Vec<u16> = odd.iter().copied().filter(|&p| Some(p) != f).collect();
        let mut parts = Vec::new();
        ordered_partitions(&factors, &mut parts, &mut Vec::new());
        for part in parts {
            for merge in [false, true] {
                let mut radices = part.clone();
                if merge {
                    match radices.last_mut() {
                        Some(last) => *last *= 2,
                        None => continue,
                    }
                } else {
                    radices.push(2);
                }
                tried += 1;
                if let Ok(g) = SignGadget::with_radices(base, Accuracy::Exact, &radices)
                    && best.as_ref().is_none_or(|(c, _)| g.sign_ciphertexts() < *c)
                {
                    best = Some((g.sign_ciphertexts(), radices));
                }
            }
        }
    }
    let (c, r) = best.expect("some order is feasible");
    (c, r, tried)
}

/// Runs `g` on the plaintext backend at every unsigned `x` yielded, checking
/// the sign bit against the reference (with `full`, also the non-negative
/// bit and ReLU, residue by residue); returns the
/// number of sign errors and those outside `[0, W)`, `[-Q/2, -Q/2 + W)`.
fn check(g: &SignGadget, xs: impl Iterator<Item = u128>, full: bool) -> (u64, u64, u64) {
    let base = g.base();
    let q = base.product();
    let neg_from = q - q / 2;
    let w = g.error_window();
    let moduli: Vec<Modulus> = base.moduli().to_vec();
    let mut pt = Plaintext;
    let (mut n, mut wrong, mut outside) = (0u64, 0u64, 0u64);
    for x in xs {
        n += 1;
        let wires =
            Bundle::from_wires(moduli.iter().map(|m| PlainWire::new((x % m.value() as u128) as u16, *m))).unwrap();
        let negative = x >= neg_from;
        let s = g.sign_bit(&mut pt, &wires).unwrap().value();
        if full {
            let nn = g.nonneg_bit(&mut pt, &wires).unwrap().value();
            assert_eq!(s + nn, 1);
            let relu = g.relu(&mut pt, &wires).unwrap();
            for (r, inp) in relu.wires().iter().zip(wires.wires()) {
                assert_eq!(r.value(), if nn == 1 { inp.value() } else { 0 });
            }
        }
        if (s == 1) != negative {
            wrong += 1;
            let in_window = x < w || (x >= neg_from && x < neg_from + w);
            if !in_window {
                outside += 1;
            }
        }
    }
    (n, wrong, outside)
}

/// SplitMix64, for sampling without dependencies.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn main() {
    let k10 = std::env::args().any(|a| a == "--k10");
    println!("# Prime-only sign gadget: parameters, costs, exactness\n");
    println!("## Chosen parameters (SignGadget::new, first k primes)\n");
    let mut rows = Vec::new();
    for k in 1..=10 {
        let base = CrtBase::first(k).unwrap();
        let t = Instant::now();
        let g = SignGadget::new(&base, Accuracy::Exact).unwrap();
        let built = t.elapsed();
        let (sign, relu, act, max) = counted(&g);
        println!("k = {k}, Q = {} (search took {:.1} ms)", base.product(), built.as_secs_f64() * 1e3);
        print!("{}", describe(&g));
        println!("    ciphertexts: sign {sign}, ReLU {relu}, sign activation {act}, max2 {max}\n");
        rows.push((k, sign, relu, act, max));
    }
    println!("| k | sign | ReLU | sign act. | max2 |");
    println!("|---|---|---|---|---|");
    for (k, s, r, a, m) in &rows {
        println!("| {k} | {s} | {r} | {a} | {m} |");
    }

    println!("\n## Exhaustive search over digit orders\n");
    for k in 5..=(if k10 { 10 } else { 9 }) {
        let base = CrtBase::first(k).unwrap();
        let t = Instant::now();
        let (cost, radices, tried) = exhaustive_search(&base);
        let g = SignGadget::new(&base, Accuracy::Exact).unwrap();
        println!(
            "k = {k}: {tried} orders in {:.1} s; optimum {cost} ciphertexts with radices {radices:?}; SignGadget::new: {} with {:?}{}",
            t.elapsed().as_secs_f64(),
            g.sign_ciphertexts(),
            g.radices().as_slice(),
            if g.sign_ciphertexts() == cost { " (optimal)" } else { " (NOT optimal)" }
        );
    }

    // The order sketched in background.md §6 for k = 7 (17 floored), for
    // comparison, checked exhaustively too.
    let base7 = CrtBase::first(7).unwrap();
    let sketch = SignGadget::with_radices(&base7, Accuracy::Exact, &[3, 5, 13, 7, 11, 2]).unwrap();
    let (_, wrong, _) = check(&sketch, 0..base7.product(), true);
    assert_eq!(wrong, 0);
    println!(
        "\nbackground.md §6 order for k = 7, radices [3, 5, 13, 7, 11, 2], floored {:?}: sign {} ciphertexts, ReLU {} (exact over all of Z_Q)",
        sketch.floored_prime(),
        sketch.sign_ciphertexts(),
        sketch.relu_ciphertexts()
    );

    println!("\n## Exactness (gadget on the Plaintext backend)\n");
    for k in 5..=10 {
        let base = CrtBase::first(k).unwrap();
        let q = base.product();
        let g = SignGadget::new(&base, Accuracy::Exact).unwrap();
        let t = Instant::now();
        let (n, wrong, _) = if k <= 8 {
            check(&g, 0..q, true)
        } else {
            let mut s = 0x5eed_u64 + k as u64;
            let random = (0..1_000_000).map(move |_| (splitmix(&mut s) as u128) % q);
            let r = 10_000u128;
            let half = q - q / 2;
            let windows = (0..r).chain(q - r..q).chain(half - r..half + r);
            check(&g, random.chain(windows), true)
        };
        assert_eq!(wrong, 0, "exact sign wrong at k = {k}");
        println!(
            "k = {k}: {} {n} values, 0 wrong ({:.1} s)",
            if k <= 8 { "all of Z_Q:" } else { "sampled" },
            t.elapsed().as_secs_f64()
        );
    }

    println!("\n## Approximate variants (exhaustive over Z_Q)\n");
    println!("| k | dropped | sign ct | ReLU ct | window W | W/Q | wrong | error rate | outside window |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for k in 5..=8 {
        let base = CrtBase::first(k).unwrap();
        let q = base.product();
        let exact = SignGadget::new(&base, Accuracy::Exact).unwrap();
        println!("| {k} | 0 | {} | {} | 0 | 0 | 0 | 0 | 0 |", exact.sign_ciphertexts(), exact.relu_ciphertexts());
        for dropped in 1..=3u8 {
            let Ok(g) = SignGadget::with_radices(&base, Accuracy::Approximate { dropped }, &exact.radices()) else {
                continue;
            };
            let (n, wrong, outside) = check(&g, 0..q, false);
            assert_eq!(outside, 0, "approximate error outside its window");
            println!(
                "| {k} | {dropped} | {} | {} | {} | {:.2e} | {wrong} | {:.2e} | {outside} |",
                g.sign_ciphertexts(),
                g.relu_ciphertexts(),
                g.error_window(),
                g.error_window() as f64 / q as f64,
                wrong as f64 / n as f64
            );
        }
    }
}
