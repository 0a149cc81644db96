//! Ciphertext counts of the rescaling and base-change gadgets, as counted by
//! `CostCounter` (row-reduced projections, 16 bytes per ciphertext).
//!
//! `cargo run -p dash-core --release --example rescale_costs`
//!
//! Prints the tables of `docs/RESCALE.md`.

use dash_core::CrtBase;
use dash_core::gadgets::basechange::BaseExtension;
use dash_core::gadgets::rescale::{Halving, Rescale, Rounding};
use dash_core::modulus::SMALL_PRIMES;

/// Squarefree products of the first `k` primes in `lo..=hi`, ascending.
fn divisors(k: usize, lo: u64, hi: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (1u32..(1 << k) - 1)
        .map(|mask| (0..k).filter(|i| mask >> i & 1 == 1).map(|i| SMALL_PRIMES[i] as u64).product::<u64>())
        .filter(|d| (lo..=hi).contains(d))
        .collect();
    v.sort_unstable();
    v
}

fn factors(r: &Rescale) -> String {
    r.divisor_primes().map(|p| p.to_string()).collect::<Vec<_>>().join("·")
}

fn main() -> Result<(), dash_core::Error> {
    let roundings = [Rounding::Floor, Rounding::Nearest, Rounding::Ceil];

    println!("## Rescale: x -> round(x/d), output on the same base\n");
    for k in 6..=9 {
        let base = CrtBase::first(k)?;
        println!("### k = {k} (Q = {})\n", base.product());
        println!("| d | primes (digit order, top last) | floor ct | floor bytes | nearest ct | ceil ct |");
        println!("|---|---|---|---|---|---|");
        let mut extra: Vec<u64> = vec![77, 143, 105, 1155];
        extra.retain(|d| divisors(k, *d, *d).contains(d));
        let mut cheapest: Option<(u64, u64)> = None;
        for d in divisors(k, 2, 64).into_iter().chain(extra) {
            let r: Vec<Rescale> = roundings.iter().map(|&ro| Rescale::new(&base, d, ro)).collect::<Result<_, _>>()?;
            println!(
                "| {d} | {} | {} | {} | {} | {} |",
                factors(&r[0]),
                r[0].cost(),
                r[0].cost() * 16,
                r[1].cost(),
                r[2].cost()
            );
            if (16..=64).contains(&d) && cheapest.is_none_or(|(_, c)| r[0].cost() < c) {
                cheapest = Some((d, r[0].cost()));
            }
        }
        if let Some((d, c)) = cheapest {
            let ties: Vec<String> = divisors(k, 16, 64)
                .into_iter()
                .filter(|&e| Rescale::new(&base, e, Rounding::Floor).map(|r| r.cost()) == Ok(c))
                .map(|e| e.to_string())
                .collect();
            println!(
                "\ncheapest floor divisor in 16..=64 at k = {k}: {} ({c} ciphertexts; first {d})\n",
                ties.join(", ")
            );
        }
    }

    println!("## Division by 32 and by 2: Dash's halving against Rescale\n");
    println!(
        "| k | Halving ÷2 (sign part) | Halving ×5 = ÷32 | Rescale ÷2 ceil | ×5 | Rescale ÷30 floor | Rescale ÷35 floor |"
    );
    println!("|---|---|---|---|---|---|---|");
    for k in 6..=9 {
        let base = CrtBase::first(k)?;
        let h = Halving::new(&base)?;
        let r2 = Rescale::new(&base, 2, Rounding::Ceil)?;
        let r30 = Rescale::new(&base, 30, Rounding::Floor)?;
        let r35 = Rescale::new(&base, 35, Rounding::Floor)?;
        println!(
            "| {k} | {} ({}) | {} | {} | {} | {} | {} |",
            h.cost(),
            h.sign_cost(),
            5 * h.cost(),
            r2.cost(),
            5 * r2.cost(),
            r30.cost(),
            r35.cost()
        );
    }
    println!("\nDash (C++ release, composite moduli, no row reduction): 772 per ÷2 at k = 7, 3860 for ÷32.\n");

    println!("## Base extension (first k primes -> first k' primes)\n");
    println!("| from k | to k' | ciphertexts | bytes |");
    println!("|---|---|---|---|");
    for (a, b) in [(5, 6), (6, 7), (6, 8), (7, 8), (7, 9), (8, 9)] {
        let e = BaseExtension::new(&CrtBase::first(a)?, &CrtBase::first(b)?)?;
        println!("| {a} | {b} | {} | {} |", e.cost(), 16 * e.cost());
    }
    Ok(())
}
