//! CRT bundles: integers in `[-Q/2, Q/2)` as one wire per prime residue.
//!
//! Linear arithmetic on bundles is free (residue-wise on the backend).
//! Encoding and decoding live on the garbler's side
//! ([`crate::GarblerKeys::encode`], [`crate::GarblerKeys::decode`]) and here
//! for whole bundles; decoding verifies every residue's label and fails
//! closed.

use crate::backend::Backend;
use crate::block::Block;
use crate::delta::ZeroLabel;
use crate::error::Error;
use crate::garbler::GarblerKeys;
use crate::label::Label;
use crate::modulus::Modulus;
use rand_core::CryptoRng;

/// The most primes a CRT base may have.
pub const MAX_CRT_PRIMES: usize = 12;

/// Residues of one value, one per prime of a base.
pub type Residues = heapless::Vec<u16, MAX_CRT_PRIMES>;

/// A CRT base: distinct primes `p_1..p_k` and their product `Q < 2^126`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrtBase {
    moduli: heapless::Vec<Modulus, MAX_CRT_PRIMES>,
    product: u128,
}

impl CrtBase {
    /// A base of the given distinct primes (in the given order).
    pub fn new(primes: &[u16]) -> Result<CrtBase, Error> {
        if primes.is_empty() || primes.len() > MAX_CRT_PRIMES {
            return Err(Error::InvalidCrtBase);
        }
        let mut moduli = heapless::Vec::new();
        let mut product: u128 = 1;
        for (i, &p) in primes.iter().enumerate() {
            if primes[..i].contains(&p) {
                return Err(Error::InvalidCrtBase);
            }
            let m = Modulus::new(p)?;
            product = product.checked_mul(p as u128).filter(|&q| q < 1 << 126).ok_or(Error::InvalidCrtBase)?;
            moduli.push(m).map_err(|_| Error::InvalidCrtBase)?;
        }
        Ok(CrtBase { moduli, product })
    }

    /// The first `k` primes (2, 3, 5, …): the usual base.
    pub fn first(k: usize) -> Result<CrtBase, Error> {
        let primes = crate::modulus::SMALL_PRIMES.get(..k).ok_or(Error::InvalidCrtBase)?;
        CrtBase::new(primes)
    }

    /// The moduli, in order.
    pub fn moduli(&self) -> &[Modulus] {
        &self.moduli
    }

    /// Number of primes `k`.
    pub fn len(&self) -> usize {
        self.moduli.len()
    }

    /// Always false: a base has at least one prime.
    pub fn is_empty(&self) -> bool {
        self.moduli.is_empty()
    }

    /// `Q`, the product of the primes.
    pub fn product(&self) -> u128 {
        self.product
    }

    /// The smallest representable value, `-floor(Q/2)`.
    pub fn min_value(&self) -> i128 {
        -((self.product / 2) as i128)
    }

    /// The largest representable value, `ceil(Q/2) - 1`.
    pub fn max_value(&self) -> i128 {
        (self.product - self.product / 2) as i128 - 1
    }

    /// The residues of `value` (in `[min_value, max_value]`).
    ///
    /// The garbler encodes its private inputs with this, so the residues are
    /// computed without a division or a branch on the value: `value -
    /// min_value` (in `0..Q`, below 2^127) is split into 64-bit halves, each
    /// reduced by multiplication ([`Modulus::div_rem_u64`]), and recombined
    /// with the public constants `2^64 mod p` and `min_value mod p`. The
    /// range test is arithmetic too; the one branch is on its verdict, which
    /// the error reveals anyway.
    pub fn encode(&self, value: i128) -> Result<Residues, Error> {
        let shifted = value.wrapping_sub(self.min_value()) as u128;
        // In range iff 0 <= shifted < Q (Q < 2^127, so a negative `value -
        // min_value` wraps to >= 2^127 and fails too): the sign of
        // `shifted - Q` in 129-bit arithmetic, taken from the borrow.
        let (_, borrow) = shifted.overflowing_sub(self.product);
        let (hi, lo) = ((shifted >> 64) as u64, shifted as u64);
        let residues = self
            .moduli
            .iter()
            .map(|m| {
                let p = m.value();
                // Public per-modulus constants (from Q and p only).
                let two64 = ((1u128 << 64) % p as u128) as u16;
                let min_r = self.min_value().rem_euclid(p as i128) as u16;
                let (_, rh) = m.div_rem_u64(hi);
                let (_, rl) = m.div_rem_u64(lo);
                m.add(m.add(m.mul(rh, two64), rl), min_r)
            })
            .collect();
        if borrow { Ok(residues) } else { Err(Error::ValueOutOfRange) }
    }

    /// Residues of an element of `Z_Q` given as `0..Q` (no sign).
    pub fn encode_unsigned(&self, value: u128) -> Result<Residues, Error> {
        if value >= self.product {
            return Err(Error::ValueOutOfRange);
        }
        Ok(self.moduli.iter().map(|m| (value % m.value() as u128) as u16).collect())
    }

    /// The element of `Z_Q` (as `0..Q`) with these residues (Garner's
    /// mixed-radix reconstruction; no intermediate exceeds `Q`).
    pub fn decode_unsigned(&self, residues: &[u16]) -> Result<u128, Error> {
        if residues.len() != self.len() {
            return Err(Error::LengthMismatch);
        }
        let mut value: u128 = 0;
        let mut weight: u128 = 1;
        for (m, &r) in self.moduli.iter().zip(residues) {
            if r >= m.value() {
                return Err(Error::InvalidDigits);
            }
            let current = (value % m.value() as u128) as u16;
            let w = (weight % m.value() as u128) as u16;
            let w_inv = m.inverse(w).ok_or(Error::InvalidCrtBase)?;
            let digit = m.mul(m.sub(r, current), w_inv);
            value += digit as u128 * weight;
            weight *= m.value() as u128;
        }
        Ok(value)
    }

    /// The signed value in `[min_value, max_value]` with these residues.
    pub fn decode(&self, residues: &[u16]) -> Result<i128, Error> {
        let v = self.decode_unsigned(residues)?;
        Ok(if v > self.max_value() as u128 { v as i128 - self.product as i128 } else { v as i128 })
    }
}

/// A CRT value on some backend: one wire per prime of its base.
#[derive(Clone, Debug)]
pub struct Bundle<W> {
    wires: heapless::Vec<W, MAX_CRT_PRIMES>,
}

impl<W> Bundle<W> {
    /// A bundle from its wires (at most [`MAX_CRT_PRIMES`]).
    pub fn from_wires(wires: impl IntoIterator<Item = W>) -> Result<Bundle<W>, Error> {
        let mut v = heapless::Vec::new();
        for w in wires {
            v.push(w).map_err(|_| Error::InvalidCrtBase)?;
        }
        Ok(Bundle { wires: v })
    }

    /// A bundle with no wires yet, for gadgets that build their output
    /// wire by wire in place (no staging vector to copy).
    pub(crate) fn empty() -> Bundle<W> {
        Bundle { wires: heapless::Vec::new() }
    }

    /// Appends the next residue's wire.
    pub(crate) fn push(&mut self, w: W) -> Result<(), Error> {
        self.wires.push(w).map_err(|_| Error::InvalidCrtBase)
    }

    /// The wires, in base order.
    pub fn wires(&self) -> &[W] {
        &self.wires
    }

    /// Number of residues.
    pub fn len(&self) -> usize {
        self.wires.len()
    }

    /// Whether there are no wires.
    pub fn is_empty(&self) -> bool {
        self.wires.is_empty()
    }
}

fn zip_map<B: Backend>(
    b: &mut B,
    x: &Bundle<B::Wire>,
    y: &Bundle<B::Wire>,
    f: impl Fn(&mut B, &B::Wire, &B::Wire) -> Result<B::Wire, Error>,
) -> Result<Bundle<B::Wire>, Error> {
    if x.len() != y.len() {
        return Err(Error::LengthMismatch);
    }
    let mut out = heapless::Vec::new();
    for (a, c) in x.wires.iter().zip(y.wires.iter()) {
        let _ = out.push(f(b, a, c)?);
    }
    Ok(Bundle { wires: out })
}

/// `x + y` (free).
pub fn add<B: Backend>(b: &mut B, x: &Bundle<B::Wire>, y: &Bundle<B::Wire>) -> Result<Bundle<B::Wire>, Error> {
    zip_map(b, x, y, |b, p, q| b.add(p, q))
}

/// `x - y` (free).
pub fn sub<B: Backend>(b: &mut B, x: &Bundle<B::Wire>, y: &Bundle<B::Wire>) -> Result<Bundle<B::Wire>, Error> {
    zip_map(b, x, y, |b, p, q| b.sub(p, q))
}

/// `-x` (free).
pub fn neg<B: Backend>(b: &mut B, x: &Bundle<B::Wire>) -> Result<Bundle<B::Wire>, Error> {
    let mut out = heapless::Vec::new();
    for w in x.wires() {
        let _ = out.push(b.neg(w)?);
    }
    Ok(Bundle { wires: out })
}

/// `c · x` for a public signed constant `c` (free).
pub fn cmul<B: Backend>(b: &mut B, x: &Bundle<B::Wire>, c: i64) -> Result<Bundle<B::Wire>, Error> {
    let mut out = heapless::Vec::new();
    for w in x.wires() {
        let p = b.modulus_of(w).value() as i64;
        let _ = out.push(b.cmul(w, c.rem_euclid(p) as u16)?);
    }
    Ok(Bundle { wires: out })
}

/// `x + c` for a public signed constant `c` (free: uses the one-wires).
pub fn add_constant<B: Backend>(b: &mut B, x: &Bundle<B::Wire>, c: i128) -> Result<Bundle<B::Wire>, Error> {
    let mut out = heapless::Vec::new();
    for w in x.wires() {
        let p = b.modulus_of(w).value() as i128;
        let _ = out.push(b.add_constant(w, c.rem_euclid(p) as u16)?);
    }
    Ok(Bundle { wires: out })
}

/// A bundle of constants on any backend.
pub fn constant<B: Backend>(b: &mut B, base: &CrtBase, value: i128) -> Result<Bundle<B::Wire>, Error> {
    let residues = base.encode(value)?;
    let mut out = heapless::Vec::new();
    for (m, r) in base.moduli().iter().zip(residues) {
        let _ = out.push(b.constant(r, *m)?);
    }
    Ok(Bundle { wires: out })
}

impl<const N: usize> GarblerKeys<N> {
    /// Fresh zero labels for an input bundle on `base`.
    pub fn input_bundle<R: CryptoRng + ?Sized>(&self, base: &CrtBase, rng: &mut R) -> Result<Bundle<ZeroLabel>, Error> {
        let mut out = heapless::Vec::new();
        for m in base.moduli() {
            let _ = out.push(self.input(*m, rng)?);
        }
        Ok(Bundle { wires: out })
    }

    /// The evaluator's labels for `value` on the input bundle `zero`.
    pub fn encode_bundle(&self, base: &CrtBase, zero: &Bundle<ZeroLabel>, value: i128) -> Result<Bundle<Label>, Error> {
        if zero.len() != base.len() {
            return Err(Error::LengthMismatch);
        }
        let residues = base.encode(value)?;
        let mut out = heapless::Vec::new();
        for (z, r) in zero.wires().iter().zip(residues) {
            let _ = out.push(self.encode(z, r)?);
        }
        Ok(Bundle { wires: out })
    }

    /// Decodes and verifies the evaluator's returned labels (packed) for the
    /// output bundle `zero`: every residue must pass
    /// [`GarblerKeys::decode`], else [`Error::AuthenticityCheckFailed`].
    pub fn decode_bundle(&self, base: &CrtBase, zero: &Bundle<ZeroLabel>, returned: &[Block]) -> Result<i128, Error> {
        if zero.len() != base.len() || returned.len() != base.len() {
            return Err(Error::LengthMismatch);
        }
        let mut residues = Residues::new();
        let mut failed = false;
        for (z, r) in zero.wires().iter().zip(returned) {
            // Check every residue before reporting, so the time taken does
            // not say which one failed.
            match self.decode(z, *r) {
                Ok(v) => {
                    let _ = residues.push(v);
                }
                Err(_) => {
                    failed = true;
                    let _ = residues.push(0);
                }
            }
        }
        if failed {
            return Err(Error::AuthenticityCheckFailed);
        }
        base.decode(&residues)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    #[test]
    fn division_free_encoding_equals_remainders() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        for k in 1..=MAX_CRT_PRIMES {
            let base = CrtBase::first(k).unwrap();
            let (lo, hi) = (base.min_value(), base.max_value());
            let mut values = [lo, lo + 1, -1, 0, 1, hi - 1, hi].to_vec();
            values.extend(
                (0..200).map(|_| lo + (rng.next_u64() as u128 * rng.next_u64() as u128 % base.product()) as i128),
            );
            for v in values.into_iter().filter(|v| (lo..=hi).contains(v)) {
                let want: Residues = base.moduli().iter().map(|m| v.rem_euclid(m.value() as i128) as u16).collect();
                assert_eq!(base.encode(v).unwrap(), want, "k {k} v {v}");
            }
            for v in [lo - 1, hi + 1, i128::MIN, i128::MAX, i128::MIN + 1, i128::MAX - 1] {
                assert_eq!(base.encode(v), Err(Error::ValueOutOfRange), "k {k} v {v}");
            }
        }
    }

    #[test]
    fn encode_decode_roundtrip_and_range() {
        for k in 1..=MAX_CRT_PRIMES {
            let base = CrtBase::first(k).unwrap();
            let q = base.product();
            assert_eq!(base.max_value() - base.min_value() + 1, q as i128);
            for v in [base.min_value(), base.max_value(), 0, -1, 1]
                .into_iter()
                .filter(|v| (base.min_value()..=base.max_value()).contains(v))
            {
                assert_eq!(base.decode(&base.encode(v).unwrap()).unwrap(), v);
            }
            assert_eq!(base.encode(base.max_value() + 1), Err(Error::ValueOutOfRange));
            assert_eq!(base.encode(base.min_value() - 1), Err(Error::ValueOutOfRange));
        }
        assert_eq!(CrtBase::new(&[3, 3]), Err(Error::InvalidCrtBase));
        assert_eq!(CrtBase::new(&[4, 3]), Err(Error::NotPrime(4)));
        assert_eq!(CrtBase::new(&[]), Err(Error::InvalidCrtBase));
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn arithmetic_matches_i128_mod_q() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let mut pt = crate::Plaintext;
        for k in 1..=10 {
            let base = CrtBase::first(k).unwrap();
            let q = base.product() as i128;
            for _ in 0..200 {
                let a = (rng.next_u64() as i128).rem_euclid(q) + base.min_value();
                let b = (rng.next_u64() as i128).rem_euclid(q) + base.min_value();
                let c = (rng.next_u32() as i64) - (1 << 31);
                let wrap = |v: i128| (v - base.min_value()).rem_euclid(q) + base.min_value();
                let bundle = |v: i128| {
                    let r = base.encode(v).unwrap();
                    Bundle::from_wires(base.moduli().iter().zip(r).map(|(m, r)| crate::PlainWire::new(r, *m))).unwrap()
                };
                let value = |x: &Bundle<crate::PlainWire>| {
                    let r: Residues = x.wires().iter().map(|w| w.value()).collect();
                    base.decode(&r).unwrap()
                };
                let (x, y) = (bundle(a), bundle(b));
                assert_eq!(value(&add(&mut pt, &x, &y).unwrap()), wrap(a + b));
                assert_eq!(value(&sub(&mut pt, &x, &y).unwrap()), wrap(a - b));
                assert_eq!(value(&neg(&mut pt, &x).unwrap()), wrap(-a));
                assert_eq!(value(&cmul(&mut pt, &x, c).unwrap()), wrap(a * c as i128));
                assert_eq!(value(&add_constant(&mut pt, &x, b).unwrap()), wrap(a + b));
            }
        }
    }
}
