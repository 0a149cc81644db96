//! Changing the set of primes a CRT value is held in.
//!
//! * [`MixedRadix`]: the one mixed-radix conversion of this crate. It turns
//!   the residues of a value `y in [0, Q)` into mixed-radix digits
//!   `y = d_0 + q_0·(d_1 + q_1·(d_2 + …))`, each digit a wire of its own
//!   prime, and projects the digits into any other prime modulus. Both
//!   [`BaseExtension`] and the rescaling gadgets of
//!   [`super::rescale`] are built on it.
//! * [`BaseExtension`]: residues of the same integer modulo new primes
//!   (a *real* base extension: exact, no approximation, every intermediate
//!   modulus prime).
//! * [`BaseShrink`]: drop residues (free).
//!
//! ## Rounding and exactness
//!
//! Nothing here rounds. [`BaseExtension`] is exact for every input in the
//! signed range of its source base; [`BaseShrink`] is exact when the value
//! fits the signed range of the smaller base and otherwise returns the value
//! reduced into that range (see [`BaseShrink::reference`]).
//!
//! ## Cost
//!
//! A mixed-radix conversion over primes `q_0 < q_1 < … < q_{m-1}` that is
//! projected into `n` new primes costs
//! `sum_i (q_i - 1)·(m - 1 - i + n)` ciphertexts: digit `i` is projected
//! once into every later prime of the conversion and once into every target.
//! Ascending order minimises this sum, and is the order used here.

use crate::backend::{Backend, CostCounter};
use crate::crt::{Bundle, CrtBase, MAX_CRT_PRIMES};
use crate::error::Error;
use crate::modulus::{MAX_PROJECTION_INPUT, Modulus};

/// Wires of one mixed-radix conversion (or of one residue list), at most
/// [`MAX_CRT_PRIMES`].
pub type Wires<W> = heapless::Vec<W, MAX_CRT_PRIMES>;

/// The most distinct moduli a gadget of this module (or of
/// [`super::rescale`]) reports from `moduli()`.
pub const MAX_GADGET_MODULI: usize = 32;

/// List of moduli a gadget uses.
pub type ModulusList = heapless::Vec<Modulus, MAX_GADGET_MODULI>;

/// `w mod p` for a public `w`.
pub(crate) fn mod_small(w: u128, p: Modulus) -> u16 {
    (w % p.value() as u128) as u16
}

/// `v mod p` for a public signed `v`.
pub(crate) fn mod_signed(v: i128, p: Modulus) -> u16 {
    v.rem_euclid(p.value() as i128) as u16
}

/// `v` reduced into the signed range `[min_value, max_value]` of `base`.
pub fn wrap_signed(base: &CrtBase, v: i128) -> i128 {
    let q = base.product() as i128;
    (v - base.min_value()).rem_euclid(q) + base.min_value()
}

/// Checks that `x` has one wire per prime of `base`, each of that prime.
pub(crate) fn check_bundle<B: Backend>(b: &B, base: &CrtBase, x: &Bundle<B::Wire>) -> Result<(), Error> {
    if x.len() != base.len() {
        return Err(Error::LengthMismatch);
    }
    for (w, m) in x.wires().iter().zip(base.moduli()) {
        let have = b.modulus_of(w);
        if have != *m {
            return Err(Error::ModulusMismatch { left: have.value(), right: m.value() });
        }
    }
    Ok(())
}

/// Runs a gadget on the [`CostCounter`] with one input wire per prime of
/// `base`, returning its ciphertext count and every modulus it used.
pub(crate) fn measure(
    base: &CrtBase,
    run: impl FnOnce(&mut CostCounter, &Bundle<Modulus>) -> Result<Bundle<Modulus>, Error>,
) -> Result<(u64, ModulusList), Error> {
    let mut cc = CostCounter::new();
    let mut wires = Wires::new();
    for m in base.moduli() {
        wires.push(cc.input(*m)).map_err(|_| Error::InvalidCrtBase)?;
    }
    let x = Bundle::from_wires(wires)?;
    run(&mut cc, &x)?;
    let mut list = ModulusList::new();
    for &p in cc.moduli()? {
        list.push(Modulus::new(p)?).map_err(|_| Error::TooManyModuli)?;
    }
    Ok((cc.ciphertexts, list))
}

/// A mixed-radix conversion over distinct primes `q_0, …, q_{m-1}` (least
/// significant digit first).
///
/// For `y in [0, q_0·…·q_{m-1})` given by its residues `y mod q_i`, the
/// digits are the unique `d_i in [0, q_i)` with
/// `y = sum_i d_i·W_i`, `W_i = q_0·…·q_{i-1}`. Digit `i` is computed modulo
/// `q_i` from `y mod q_i` and projections of the earlier digits into `q_i`
/// (Garner's algorithm, one projection per pair `j < i`):
/// `d_i = (y - sum_{j<i} d_j·W_j)·W_i^{-1} mod q_i`. Every wire involved has
/// one of the primes `q_i` (or a target prime) as its modulus: no composite
/// modulus appears anywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MixedRadix {
    moduli: Wires<Modulus>,
    /// `W_i`, the weight of digit `i`.
    weights: [u128; MAX_CRT_PRIMES],
    /// `W_i^{-1} mod q_i`.
    inverses: [u16; MAX_CRT_PRIMES],
    /// `lift[i][j] = -W_j·W_i^{-1} mod q_i` for `j < i`.
    lift: [[u16; MAX_CRT_PRIMES]; MAX_CRT_PRIMES],
}

impl MixedRadix {
    /// A conversion over these distinct primes, in this digit order (least
    /// significant first). Each must be at most [`MAX_PROJECTION_INPUT`]
    /// (digits are projection inputs) and their product below `2^126`.
    pub fn new(moduli: &[Modulus]) -> Result<MixedRadix, Error> {
        if moduli.is_empty() || moduli.len() > MAX_CRT_PRIMES {
            return Err(Error::InvalidCrtBase);
        }
        let mut list = Wires::new();
        let mut weights = [0u128; MAX_CRT_PRIMES];
        let mut inverses = [0u16; MAX_CRT_PRIMES];
        let mut w: u128 = 1;
        for (i, &q) in moduli.iter().enumerate() {
            if moduli[..i].contains(&q) {
                return Err(Error::InvalidCrtBase);
            }
            if q.value() > MAX_PROJECTION_INPUT {
                return Err(Error::ProjectionInputTooLarge(q.value()));
            }
            weights[i] = w;
            inverses[i] = q.inverse(mod_small(w, q)).ok_or(Error::InvalidCrtBase)?;
            w = w.checked_mul(q.value() as u128).filter(|&v| v < 1 << 126).ok_or(Error::InvalidCrtBase)?;
            list.push(q).map_err(|_| Error::InvalidCrtBase)?;
        }
        let mut lift = [[0u16; MAX_CRT_PRIMES]; MAX_CRT_PRIMES];
        for (i, &q) in moduli.iter().enumerate() {
            for j in 0..i {
                lift[i][j] = q.neg(q.mul(mod_small(weights[j], q), inverses[i]));
            }
        }
        Ok(MixedRadix { moduli: list, weights, inverses, lift })
    }

    /// The primes, in digit order.
    pub fn moduli(&self) -> &[Modulus] {
        &self.moduli
    }

    /// The weight `W_i = q_0·…·q_{i-1}` of digit `i` (`W_0 = 1`).
    pub fn weight(&self, i: usize) -> u128 {
        self.weights[i]
    }

    /// The product of all the primes (the range of the conversion).
    pub fn range(&self) -> u128 {
        let last = self.moduli.len() - 1;
        self.weights[last] * self.moduli[last].value() as u128
    }

    /// The digits of `y mod range()` (plaintext reference, least significant
    /// first; unused entries are 0).
    pub fn digits_of(&self, y: u128) -> [u16; MAX_CRT_PRIMES] {
        let mut out = [0u16; MAX_CRT_PRIMES];
        let mut rest = y % self.range();
        for (o, q) in out.iter_mut().zip(&self.moduli) {
            *o = (rest % q.value() as u128) as u16;
            rest /= q.value() as u128;
        }
        out
    }

    /// The digit wires of `y`, from its residues `y mod q_i` (in digit
    /// order). Costs `sum_i (q_i - 1)·(m - 1 - i)` ciphertexts.
    pub fn digits<B: Backend>(&self, b: &mut B, residues: &[B::Wire]) -> Result<Wires<B::Wire>, Error> {
        if residues.len() != self.moduli.len() {
            return Err(Error::LengthMismatch);
        }
        let mut digits: Wires<B::Wire> = Wires::new();
        for (i, (&q, y)) in self.moduli.iter().zip(residues).enumerate() {
            let have = b.modulus_of(y);
            if have != q {
                return Err(Error::ModulusMismatch { left: have.value(), right: q.value() });
            }
            let inv = self.inverses[i];
            let mut acc = b.cmul(y, inv)?;
            for j in 0..i {
                // Subtract d_j·W_j·W_i^{-1} (mod q_i), read off a projection.
                let coef = self.lift[i][j];
                let t = b.project(&digits[j], q, move |v| q.mul(q.reduce(v as u32), coef))?;
                acc = b.add(&acc, &t)?;
            }
            digits.push(acc).map_err(|_| Error::InvalidCrtBase)?;
        }
        Ok(digits)
    }

    /// `sum_i table(i, d_i) mod out`: every digit projected once into `out`
    /// (`sum_i (q_i - 1)` ciphertexts).
    pub fn project<B: Backend>(
        &self,
        b: &mut B,
        digits: &[B::Wire],
        out: Modulus,
        table: impl Fn(usize, u16) -> u16,
    ) -> Result<B::Wire, Error> {
        if digits.len() != self.moduli.len() {
            return Err(Error::LengthMismatch);
        }
        let mut acc: Option<B::Wire> = None;
        for (i, d) in digits.iter().enumerate() {
            let t = b.project(d, out, |v| table(i, v))?;
            acc = Some(match acc {
                None => t,
                Some(a) => b.add(&a, &t)?,
            });
        }
        acc.ok_or(Error::LengthMismatch)
    }

    /// `y mod out` from the digits of `y` (exact: `y = sum_i d_i·W_i` as
    /// integers).
    pub fn value_into<B: Backend>(&self, b: &mut B, digits: &[B::Wire], out: Modulus) -> Result<B::Wire, Error> {
        let mut w = [0u16; MAX_CRT_PRIMES];
        for (wi, &weight) in w.iter_mut().zip(&self.weights[..self.moduli.len()]) {
            *wi = mod_small(weight, out);
        }
        self.project(b, digits, out, |i, v| out.mul(out.reduce(v as u32), w[i]))
    }
}

/// Residues of the same integer in another CRT base: a real base extension.
///
/// Primes of `to` that are also in `from` are copied (free); each new prime
/// gets `x mod p` from a [`MixedRadix`] conversion of `x + floor(Q_from/2)`
/// over all of `from` (ascending order), projected into `p`, minus
/// `floor(Q_from/2)` (free).
///
/// **Exactness**: for every `x` in `[from.min_value(), from.max_value()]` the
/// output holds the residues of `x` itself, so it decodes in `to` to `x`
/// whenever `x` fits `to`'s signed range (always when `to ⊇ from`), and to
/// `x` reduced into that range otherwise ([`BaseExtension::reference`]).
/// No rounding.
///
/// **Cost**: with `from = {q_0 < … < q_{m-1}}` and `n` new primes,
/// `sum_i (q_i - 1)·(m - 1 - i + n)`; zero when there is no new prime.
/// Extending the first 6 primes to the first 7 costs 82 ciphertexts, the
/// first 7 to the first 8 costs 153.
///
/// ```
/// use dash_core::{CrtBase, Plaintext, PlainWire, Bundle};
/// use dash_core::gadgets::basechange::BaseExtension;
/// let (small, big) = (CrtBase::first(4)?, CrtBase::first(7)?);
/// let ext = BaseExtension::new(&small, &big)?;
/// let x = Bundle::from_wires(small.moduli().iter().zip(small.encode(-77)?).map(|(m, r)| PlainWire::new(r, *m)))?;
/// let y = ext.apply(&mut Plaintext, &x)?;
/// let r: heapless::Vec<u16, 16> = y.wires().iter().map(|w| w.value()).collect();
/// assert_eq!(big.decode(&r)?, -77);
/// # Ok::<(), dash_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct BaseExtension {
    from: CrtBase,
    to: CrtBase,
    /// Conversion over `from` in ascending order; `None` if `to ⊆ from`.
    plan: Option<MixedRadix>,
    /// `from` index of each digit of `plan`.
    order: Wires<usize>,
    /// For each prime of `to`, its index in `from` if shared.
    sources: Wires<Option<usize>>,
    half: u128,
    cost: u64,
    moduli: ModulusList,
}

/// Indices of `base`'s primes sorted by prime, ascending.
pub(crate) fn ascending(base: &CrtBase, indices: impl Iterator<Item = usize>) -> Wires<usize> {
    let mut v: Wires<usize> = indices.collect();
    v.sort_unstable_by_key(|&i| base.moduli()[i].value());
    v
}

impl BaseExtension {
    /// A base change from `from` to `to` (any two bases; usually
    /// `to ⊇ from`). Fails if a prime of `from` exceeds
    /// [`MAX_PROJECTION_INPUT`] while `to` has a new prime.
    pub fn new(from: &CrtBase, to: &CrtBase) -> Result<BaseExtension, Error> {
        let sources: Wires<Option<usize>> =
            to.moduli().iter().map(|m| from.moduli().iter().position(|f| f == m)).collect();
        let order = ascending(from, 0..from.len());
        let plan = if sources.iter().any(Option::is_none) {
            let moduli: Wires<Modulus> = order.iter().map(|&i| from.moduli()[i]).collect();
            Some(MixedRadix::new(&moduli)?)
        } else {
            None
        };
        let mut ext = BaseExtension {
            from: from.clone(),
            to: to.clone(),
            plan,
            order,
            sources,
            half: from.product() / 2,
            cost: 0,
            moduli: ModulusList::new(),
        };
        let (cost, moduli) = measure(from, |cc, x| ext.apply(cc, x))?;
        ext.cost = cost;
        ext.moduli = moduli;
        Ok(ext)
    }

    /// The source base.
    pub fn from_base(&self) -> &CrtBase {
        &self.from
    }

    /// The target base.
    pub fn to_base(&self) -> &CrtBase {
        &self.to
    }

    /// Ciphertexts per application.
    pub fn cost(&self) -> u64 {
        self.cost
    }

    /// Every modulus a wire of this gadget uses (inputs included): generate
    /// keys for all of them.
    pub fn moduli(&self) -> &[Modulus] {
        &self.moduli
    }

    /// The bundle on `to` holding the residues of the value `x` holds on
    /// `from`.
    pub fn apply<B: Backend>(&self, b: &mut B, x: &Bundle<B::Wire>) -> Result<Bundle<B::Wire>, Error> {
        check_bundle(b, &self.from, x)?;
        let digits = match &self.plan {
            Some(plan) => {
                let mut shifted = Wires::new();
                for &i in &self.order {
                    let q = self.from.moduli()[i];
                    let _ = shifted.push(b.add_constant(&x.wires()[i], mod_small(self.half, q))?);
                }
                Some(plan.digits(b, &shifted)?)
            }
            None => None,
        };
        let mut out = Wires::new();
        for (m, src) in self.to.moduli().iter().zip(&self.sources) {
            let w = match (src, &self.plan, &digits) {
                (Some(i), _, _) => x.wires()[*i].clone(),
                (None, Some(plan), Some(d)) => {
                    let y = plan.value_into(b, d, *m)?;
                    b.add_constant(&y, m.neg(mod_small(self.half, *m)))?
                }
                _ => return Err(Error::InvalidParameter),
            };
            let _ = out.push(w);
        }
        Bundle::from_wires(out)
    }

    /// Plaintext reference: the value the output decodes to in `to` for an
    /// input `x` in `from`'s signed range: `x` itself, reduced into `to`'s
    /// signed range (a no-op when `to ⊇ from`).
    pub fn reference(&self, x: i128) -> i128 {
        wrap_signed(&self.to, x)
    }
}

/// Dropping residues: the bundle on a sub-base `to ⊆ from` (free).
///
/// **Exactness**: the output decodes to `x` when `x` lies in `to`'s signed
/// range `[to.min_value(), to.max_value()]`; otherwise to `x` reduced into
/// that range ([`BaseShrink::reference`]), as any CRT value that overflows.
/// No rounding, no ciphertext.
#[derive(Clone, Debug)]
pub struct BaseShrink {
    from: CrtBase,
    to: CrtBase,
    sources: Wires<usize>,
}

impl BaseShrink {
    /// Fails with [`Error::InvalidParameter`] unless every prime of `to` is
    /// in `from`.
    pub fn new(from: &CrtBase, to: &CrtBase) -> Result<BaseShrink, Error> {
        let mut sources = Wires::new();
        for m in to.moduli() {
            let i = from.moduli().iter().position(|f| f == m).ok_or(Error::InvalidParameter)?;
            let _ = sources.push(i);
        }
        Ok(BaseShrink { from: from.clone(), to: to.clone(), sources })
    }

    /// Ciphertexts per application: always 0.
    pub fn cost(&self) -> u64 {
        0
    }

    /// The moduli involved (those of `from`).
    pub fn moduli(&self) -> &[Modulus] {
        self.from.moduli()
    }

    /// The wires of `x` for the primes of `to`, in `to`'s order.
    pub fn apply<B: Backend>(&self, b: &mut B, x: &Bundle<B::Wire>) -> Result<Bundle<B::Wire>, Error> {
        check_bundle(b, &self.from, x)?;
        Bundle::from_wires(self.sources.iter().map(|&i| x.wires()[i].clone()))
    }

    /// Plaintext reference: `x` reduced into `to`'s signed range.
    pub fn reference(&self, x: i128) -> i128 {
        wrap_signed(&self.to, x)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{PlainWire, Plaintext};

    pub(crate) fn plain_bundle(base: &CrtBase, v: i128) -> Bundle<PlainWire> {
        let r = base.encode(v).unwrap();
        Bundle::from_wires(base.moduli().iter().zip(r).map(|(m, r)| PlainWire::new(r, *m))).unwrap()
    }

    pub(crate) fn plain_value(base: &CrtBase, x: &Bundle<PlainWire>) -> i128 {
        let r: heapless::Vec<u16, MAX_CRT_PRIMES> = x.wires().iter().map(|w| w.value()).collect();
        base.decode(&r).unwrap()
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn mixed_radix_digits_match_reference() {
        let moduli: Wires<Modulus> = [5u16, 2, 13, 3].iter().map(|&p| Modulus::new(p).unwrap()).collect();
        let plan = MixedRadix::new(&moduli).unwrap();
        assert_eq!(plan.range(), 390);
        for y in 0..390u128 {
            let residues: Wires<PlainWire> =
                moduli.iter().map(|m| PlainWire::new((y % m.value() as u128) as u16, *m)).collect();
            let d = plan.digits(&mut Plaintext, &residues).unwrap();
            let want = plan.digits_of(y);
            let back: u128 = (0..4).map(|i| want[i] as u128 * plan.weight(i)).sum();
            assert_eq!(back, y);
            for i in 0..4 {
                assert_eq!(d[i].value(), want[i], "y {y} digit {i}");
            }
            for t in [7u16, 11, 17] {
                let t = Modulus::new(t).unwrap();
                let v = plan.value_into(&mut Plaintext, &d, t).unwrap();
                assert_eq!(v.value() as u128, y % t.value() as u128);
            }
        }
        assert!(MixedRadix::new(&[]).is_err());
        let twice = [moduli[0], moduli[0]];
        assert_eq!(MixedRadix::new(&twice).unwrap_err(), Error::InvalidCrtBase);
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn extension_exhaustive_small_bases() {
        for (kf, kt) in [(1, 3), (2, 4), (3, 5), (4, 6), (5, 7), (3, 3)] {
            let (from, to) = (CrtBase::first(kf).unwrap(), CrtBase::first(kt).unwrap());
            let ext = BaseExtension::new(&from, &to).unwrap();
            for x in from.min_value()..=from.max_value() {
                let y = ext.apply(&mut Plaintext, &plain_bundle(&from, x)).unwrap();
                assert_eq!(plain_value(&to, &y), ext.reference(x), "{kf}->{kt} x {x}");
                assert_eq!(ext.reference(x), x);
            }
        }
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn general_change_and_shrink() {
        // {2,3,5,7,11} -> {11,13,3,17}: a mix of copying and extending.
        let from = CrtBase::first(5).unwrap();
        let to = CrtBase::new(&[11, 13, 3, 17]).unwrap();
        let ext = BaseExtension::new(&from, &to).unwrap();
        let shrink = BaseShrink::new(&from, &CrtBase::new(&[7, 2, 11]).unwrap()).unwrap();
        let small = CrtBase::new(&[7, 2, 11]).unwrap();
        for x in from.min_value()..=from.max_value() {
            let y = ext.apply(&mut Plaintext, &plain_bundle(&from, x)).unwrap();
            assert_eq!(plain_value(&to, &y), x);
            let s = shrink.apply(&mut Plaintext, &plain_bundle(&from, x)).unwrap();
            assert_eq!(plain_value(&small, &s), shrink.reference(x));
            if (small.min_value()..=small.max_value()).contains(&x) {
                assert_eq!(shrink.reference(x), x);
            }
        }
        assert_eq!(BaseShrink::new(&small, &from).unwrap_err(), Error::InvalidParameter);
        assert_eq!(shrink.cost(), 0);
    }

    #[test]
    fn extension_costs_and_prime_moduli() {
        let cost = |a, b| BaseExtension::new(&CrtBase::first(a).unwrap(), &CrtBase::first(b).unwrap()).unwrap();
        assert_eq!(cost(6, 7).cost(), 82);
        assert_eq!(cost(7, 8).cost(), 133);
        assert_eq!(cost(7, 7).cost(), 0);
        for m in cost(7, 9).moduli() {
            assert!(crate::modulus::is_prime(m.value()));
        }
    }

    #[test]
    fn rejects_wrong_bundles() {
        let (from, to) = (CrtBase::first(3).unwrap(), CrtBase::first(4).unwrap());
        let ext = BaseExtension::new(&from, &to).unwrap();
        let wrong = plain_bundle(&to, 1);
        assert_eq!(ext.apply(&mut Plaintext, &wrong).unwrap_err(), Error::LengthMismatch);
        let swapped = plain_bundle(&CrtBase::new(&[3, 2, 5]).unwrap(), 1);
        assert!(matches!(ext.apply(&mut Plaintext, &swapped), Err(Error::ModulusMismatch { .. })));
    }
}
