//! The gadget cost table behind `dashgc costs`.
//!
//! Every count comes from running the gadget on dash-core's cost-counting
//! backend ([`CostCounter`]), the same generic code that garbles and
//! evaluates; nothing here is a formula. Approximate sign gadgets report an
//! error rate measured by running the plaintext backend over every input in
//! the window where they may err (outside it they are exact, as their tests
//! check exhaustively).

use dash_core::gadgets::compare;
use dash_core::gadgets::rescale::{Rescale, Rounding};
use dash_core::gadgets::sign::{Accuracy, SignGadget};
use dash_core::{Bundle, CostCounter, CrtBase, Error, PlainWire, Plaintext};
use serde::Serialize;

/// One gadget configuration and what it costs.
#[derive(Clone, Debug, Serialize)]
pub struct CostRecord {
    /// `"sign"`, `"relu"`, `"sign_activation"`, `"max2"` or `"rescale"`.
    pub gadget: String,
    /// Number of CRT primes (the first `k` primes).
    pub k: usize,
    /// `"exact"`, or the measured fraction of `Z_Q` computed correctly.
    pub accuracy: serde_json::Value,
    /// Ciphertexts (16-byte rows) per element.
    pub ciphertexts: u64,
    /// Bytes of garbled material per element.
    pub bytes: u64,
    /// Every modulus any wire of the gadget uses (all prime).
    pub moduli: Vec<u16>,
    /// For rescaling: the integer divided by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub divisor: Option<u64>,
    /// For rescaling: how the quotient is rounded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rounding: Option<&'static str>,
}

fn count(
    base: &CrtBase,
    inputs: usize,
    f: impl FnOnce(&mut CostCounter, &[Bundle<dash_core::Modulus>]) -> Result<(), Error>,
) -> Result<CostCounter, Error> {
    let mut c = CostCounter::new();
    let bundles: Vec<_> =
        (0..inputs).map(|_| Bundle::from_wires(base.moduli().iter().map(|&m| c.input(m)))).collect::<Result<_, _>>()?;
    f(&mut c, &bundles)?;
    Ok(c)
}

fn record(gadget: &str, k: usize, accuracy: serde_json::Value, c: &CostCounter) -> Result<CostRecord, Error> {
    let mut moduli = c.moduli()?.to_vec();
    moduli.sort_unstable();
    Ok(CostRecord {
        gadget: gadget.to_string(),
        k,
        accuracy,
        ciphertexts: c.ciphertexts,
        bytes: c.bytes(),
        moduli,
        divisor: None,
        rounding: None,
    })
}

fn plain_bundle(base: &CrtBase, v: i128) -> Result<Bundle<PlainWire>, Error> {
    let r = base.encode(v)?;
    Bundle::from_wires(base.moduli().iter().zip(r).map(|(m, r)| PlainWire::new(r, *m)))
}

/// The measured fraction of `Z_Q` on which an approximate sign bit is right:
/// every input of the error window is run on the plaintext backend.
pub fn measured_sign_accuracy(g: &SignGadget) -> Result<f64, Error> {
    let base = g.base();
    let w = g.error_window() as i128;
    let q = base.product() as f64;
    let mut wrong = 0u64;
    let lo = base.min_value();
    for v in (0..w).chain(lo..lo + w) {
        let v = v.clamp(base.min_value(), base.max_value());
        let bit = g.sign_bit(&mut Plaintext, &plain_bundle(base, v)?)?.value();
        if bit != (v < 0) as u16 {
            wrong += 1;
        }
    }
    Ok(1.0 - wrong as f64 / q)
}

/// Divisors offered in the table for base `k`: every product of distinct
/// base primes up to 256.
fn divisors(base: &CrtBase) -> Vec<u64> {
    let primes: Vec<u64> = base.moduli().iter().map(|m| m.value() as u64).collect();
    let mut out = Vec::new();
    for mask in 1u32..(1 << primes.len()) {
        let d: u64 = primes.iter().enumerate().filter(|(i, _)| mask >> i & 1 == 1).map(|(_, p)| p).product();
        if d <= 256 && mask.count_ones() < primes.len() as u32 {
            out.push(d);
        }
    }
    out.sort_unstable();
    out
}

/// The whole table: sign, ReLU, sign activation and max for `k` in `ks`
/// (exact, and approximate variants dropping 1 and 2 positions), and
/// rescaling by every product of base primes up to 256 with each rounding.
pub fn cost_table(ks: &[usize]) -> Result<Vec<CostRecord>, Error> {
    let mut out = Vec::new();
    for &k in ks {
        let base = CrtBase::first(k)?;
        for accuracy in [Accuracy::Exact, Accuracy::Approximate { dropped: 1 }, Accuracy::Approximate { dropped: 2 }] {
            let g = match SignGadget::new(&base, accuracy) {
                Ok(g) => g,
                Err(_) => continue, // not every k has that many positions to drop
            };
            let acc = match accuracy {
                Accuracy::Exact => serde_json::Value::from("exact"),
                Accuracy::Approximate { .. } if k <= 8 => serde_json::Value::from(measured_sign_accuracy(&g)?),
                Accuracy::Approximate { .. } => continue,
            };
            let c = count(&base, 1, |c, x| g.sign_bit(c, &x[0]).map(drop))?;
            out.push(record("sign", k, acc.clone(), &c)?);
            let c = count(&base, 1, |c, x| g.relu(c, &x[0]).map(drop))?;
            out.push(record("relu", k, acc.clone(), &c)?);
            let c = count(&base, 1, |c, x| g.sign_activation(c, &x[0]).map(drop))?;
            out.push(record("sign_activation", k, acc.clone(), &c)?);
            let c = count(&base, 2, |c, x| compare::max2(&g, c, &x[0], &x[1]).map(drop))?;
            out.push(record("max2", k, acc, &c)?);
        }
        for d in divisors(&base) {
            for (rounding, name) in
                [(Rounding::Floor, "floor"), (Rounding::Nearest, "nearest"), (Rounding::Ceil, "ceil")]
            {
                let Ok(r) = Rescale::new(&base, d, rounding) else { continue };
                let c = count(&base, 1, |c, x| r.apply(c, &x[0]).map(drop))?;
                let mut rec = record("rescale", k, "exact".into(), &c)?;
                rec.divisor = Some(d);
                rec.rounding = Some(name);
                out.push(rec);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_modulus_in_every_record_is_prime_and_counts_are_positive() {
        let table = cost_table(&[5, 6, 7]).unwrap();
        assert!(table.iter().any(|r| r.gadget == "relu" && r.k == 7));
        assert!(table.iter().any(|r| r.gadget == "rescale" && r.divisor == Some(35)));
        for r in &table {
            assert!(r.moduli.iter().all(|&m| dash_core::modulus::is_prime(m)), "{r:?}");
            assert!(r.ciphertexts > 0 && r.bytes == 16 * r.ciphertexts, "{r:?}");
        }
    }

    #[test]
    fn cost_counter_matches_rows_written_for_relu() {
        // The counter's figure is what the garbler really emits.
        use dash_core::{FixedKeyHash, Garbler, GarblerKeys};
        let base = CrtBase::first(6).unwrap();
        let g = SignGadget::new(&base, Accuracy::Exact).unwrap();
        let mut rng = crate::rng::os_seeded().unwrap();
        let keys: GarblerKeys<48> = GarblerKeys::generate(&mut rng, &g.moduli()).unwrap();
        let hash = FixedKeyHash::new();
        let x = keys.input_bundle(&base, &mut rng).unwrap();
        let mut garbler = Garbler::new(&hash, &keys, crate::material::VecSink::new());
        g.relu(&mut garbler, &x).unwrap();
        let rows = garbler.into_sink().len() as u64;
        let rec = cost_table(&[6]).unwrap().into_iter().find(|r| r.gadget == "relu" && r.accuracy == "exact").unwrap();
        assert_eq!(rec.ciphertexts, rows);
    }
}
