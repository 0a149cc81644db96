//! In-circuit scaling of CRT values: division by a product of base primes
//! with a real base extension, and Dash's exact halving.
//!
//! Fixed-point products grow by the scale factor; after each linear layer
//! the value has to be divided back. Two gadgets do this here:
//!
//! * [`Rescale`]: `x -> round(x / d)` for any divisor `d` that is a product
//!   of distinct primes of the base (`2`, `35 = 5·7`, `30 = 2·3·5`, …), with
//!   floor, ceiling or nearest rounding ([`Rounding`]), exact for every
//!   `x` in the base's signed range. The output is on the same base.
//! * [`Halving`]: Dash's `x -> ceil(x / 2)`, which recovers the lost mod-2
//!   residue with an exact sign gadget instead of a base extension; and
//!   [`Halving::apply_repeated`] for `ceil(x / 2^j)`.
//!
//! ## Algorithm of [`Rescale`]
//!
//! Let the base be `P` (product `Q`), the divisor primes `D ⊂ P` (product
//! `d`), the remaining primes `R = P \ D` (product `Q_R = Q/d`), the
//! rounding offset `c` (0 floor, `floor(d/2)` nearest, `d - 1` ceiling) and
//! `m = min_value = -floor(Q/2)`. The gadget returns
//! `floor((x + c)/d)` for every `x in [m, m + Q)`:
//!
//! 1. **Shift.** `u = x - m` lies in `[0, Q)` (free: add a constant).
//! 2. **Remainder.** `r = u mod d` in mixed radix from the residues of `u`
//!    modulo the primes of `D` ([`MixedRadix`], one projection per pair of
//!    divisor primes).
//! 3. **Exact division in `R`.** For each `p in R`,
//!    `v mod p = (u - r)·d^{-1} mod p`, where `r mod p` is the sum of the
//!    digits of `r` projected into `p` (the factor `-W_i·d^{-1}` is folded
//!    into each table). `v = floor(u/d)` lies in `[0, Q_R)`, so its residues
//!    in `R` determine it.
//! 4. **Base extension.** A [`MixedRadix`] conversion of `v` over `R`
//!    (ascending primes), projected into each prime of `D`, restores the
//!    dropped residues: the same code as [`super::basechange::BaseExtension`].
//! 5. **Rounding correction.** With `z = (m + c) mod d`,
//!    `floor((x + c)/d) = v + [r >= d - z] + floor((m + c)/d)` (the bracket
//!    only when `z != 0`). The constant is free. The bit `[r >= d - z]` is
//!    free to *compute* when `d - z` is a multiple of the weight of the top
//!    mixed-radix digit (then it is a function of that digit alone, and the
//!    gadget picks a digit order that makes it so); otherwise a small
//!    comparison of the digits against the threshold runs on wires of
//!    modulus 5. Either way the bit is projected into every residue.
//!
//! Step 5 cannot be folded into step 3: `floor((x + c)/d)` takes `Q_R + 1`
//! distinct values over the signed range when `z != 0`, one too many for
//! the residues of `R` alone.
//!
//! ## Rounding, per operation
//!
//! | operation | rounding | exact on |
//! |---|---|---|
//! | [`Rescale`] with [`Rounding::Floor`] | `floor(x/d)` | whole signed range |
//! | [`Rescale`] with [`Rounding::Ceil`] | `ceil(x/d)` | whole signed range |
//! | [`Rescale`] with [`Rounding::Nearest`] | `floor(x/d + 1/2)`: nearest, ties (even `d` only) up | whole signed range |
//! | [`Halving`] | `ceil(x/2)` (Dash) | whole signed range |
//! | [`Halving::apply_repeated`] (`j` times) | `ceil(x/2^j)` (nested ceilings compose exactly) | whole signed range |
//!
//! Each has an `i128` reference ([`Rescale::reference`],
//! [`Halving::reference`], [`Halving::reference_repeated`]) that rounds
//! identically; the tests compare the gadgets with them exhaustively.
//!
//! ## Costs (ciphertexts, first `k` primes, from [`Rescale::cost`])
//!
//! At `k = 7`: floor `÷21` 176, floor `÷35` 178, ceiling `÷2` 132 (floor
//! `÷2` 138); [`Halving`] 340. Dash: 772 per halving, 3860 for its ÷32. The full table, produced
//! by `cargo run -p dash-core --example rescale_costs`, is in
//! `docs/RESCALE.md`.

use crate::backend::Backend;
use crate::crt::{Bundle, CrtBase, MAX_CRT_PRIMES};
use crate::error::Error;
use crate::gadgets::basechange::{
    MixedRadix, ModulusList, Wires, ascending, check_bundle, measure, mod_signed, mod_small,
};
use crate::gadgets::sign::{Accuracy, SignGadget};
use crate::modulus::Modulus;

/// How [`Rescale`] rounds the quotient `x / d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Rounding {
    /// `floor(x/d)`, towards minus infinity. The cheapest for every divisor
    /// on the first `k` primes.
    Floor,
    /// `floor(x/d + 1/2)`: to the nearest integer; a tie (possible only for
    /// even `d`) goes up, towards plus infinity.
    Nearest,
    /// `ceil(x/d)`, towards plus infinity.
    Ceil,
}

impl Rounding {
    /// The offset `c` with `round(x/d) = floor((x + c)/d)`.
    pub fn offset(self, d: u64) -> i128 {
        match self {
            Rounding::Floor => 0,
            Rounding::Nearest => (d / 2) as i128,
            Rounding::Ceil => d as i128 - 1,
        }
    }

    /// Plaintext reference: `x / d` rounded this way (`d >= 1`).
    pub fn divide(self, x: i128, d: u64) -> i128 {
        (x + self.offset(d)).div_euclid(d as i128)
    }
}

/// How step 5 (the rounding correction `[r >= T]`) is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Correction {
    /// `T = 0`: nothing to add.
    None,
    /// `T` is a multiple of the top digit's weight: the bit is
    /// `[top digit >= tau]`.
    Top { tau: u16 },
    /// A comparison of digits `start..` against `tau` (digits of `T`),
    /// accumulated on wires of modulus 5.
    Chain { start: usize, tau: [u16; MAX_CRT_PRIMES] },
}

/// The modulus of the comparison chain (holds 0..=4).
const CHAIN_MODULUS: u16 = 5;
/// [`CHAIN_MODULUS`] as a modulus, built at compile time.
const CHAIN: Modulus = Modulus::known(CHAIN_MODULUS);

/// Division by a product of distinct base primes, exact for every value of
/// the base's signed range, with a chosen [`Rounding`]. See the
/// [module documentation](self) for the algorithm and rounding.
///
/// ```
/// use dash_core::{CrtBase, CostCounter, Plaintext, PlainWire, Bundle};
/// use dash_core::gadgets::rescale::{Rescale, Rounding};
/// let base = CrtBase::first(7)?;                        // Q = 510510
/// let div = Rescale::new(&base, 35, Rounding::Floor)?;
/// assert_eq!(div.cost(), 178);                           // ciphertexts
/// let x = Bundle::from_wires(base.moduli().iter().zip(base.encode(-1000)?).map(|(m, r)| PlainWire::new(r, *m)))?;
/// let y = div.apply(&mut Plaintext, &x)?;
/// let r: heapless::Vec<u16, 16> = y.wires().iter().map(|w| w.value()).collect();
/// assert_eq!(base.decode(&r)?, -29);                     // floor(-1000/35)
/// assert_eq!(div.reference(-1000), -29);
/// # Ok::<(), dash_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Rescale {
    base: CrtBase,
    divisor: u64,
    rounding: Rounding,
    /// Base indices of the divisor primes, in digit order of `rem_plan`.
    div_idx: Wires<usize>,
    /// Base indices of the remaining primes, ascending (order of `ext_plan`).
    rem_idx: Wires<usize>,
    rem_plan: MixedRadix,
    ext_plan: MixedRadix,
    /// `-min_value = floor(Q/2)`.
    half: u128,
    /// `floor((min_value + c)/d)`, added to every residue at the end.
    low: i128,
    correction: Correction,
    /// Per remaining prime (in `rem_idx` order): `d^{-1} mod p`.
    d_inv: [u16; MAX_CRT_PRIMES],
    /// Per remaining prime: `-W_j·d^{-1} mod p` for each remainder digit `j`.
    r_coef: [[u16; MAX_CRT_PRIMES]; MAX_CRT_PRIMES],
    cost: u64,
    moduli: ModulusList,
}

impl Rescale {
    /// Division of values on `base` by `divisor`, which must be a product of
    /// distinct primes of `base`, neither 1 nor all of them.
    ///
    /// Every divisor prime (and, for the base extension, every other prime)
    /// must be at most [`crate::MAX_PROJECTION_INPUT`]. The digit order of
    /// the remainder is chosen to minimise [`Rescale::cost`].
    pub fn new(base: &CrtBase, divisor: u64, rounding: Rounding) -> Result<Rescale, Error> {
        let mut rest = divisor;
        let mut div = Wires::new();
        for (i, m) in base.moduli().iter().enumerate() {
            let p = m.value() as u64;
            if rest.is_multiple_of(p) {
                rest /= p;
                let _ = div.push(i);
            }
        }
        if rest != 1 || div.is_empty() || div.len() == base.len() {
            return Err(Error::InvalidParameter);
        }
        let div = ascending(base, div.into_iter());
        // Try each divisor prime as the most significant digit (the others
        // ascending) and keep the cheapest circuit.
        let mut best: Option<Rescale> = None;
        for top in 0..div.len() {
            let mut order: Wires<usize> = div.iter().copied().filter(|&i| i != div[top]).collect();
            let _ = order.push(div[top]);
            let candidate = Rescale::with_order(base, divisor, rounding, &order)?;
            if best.as_ref().is_none_or(|b| candidate.cost < b.cost) {
                best = Some(candidate);
            }
        }
        let best = best.ok_or(Error::InvalidParameter)?;
        log_info!("rescale gadget: /{=u64} {} ciphertexts={=u64}", divisor, rounding, best.cost);
        Ok(best)
    }

    fn with_order(base: &CrtBase, divisor: u64, rounding: Rounding, order: &[usize]) -> Result<Rescale, Error> {
        let div_idx: Wires<usize> = order.iter().copied().collect();
        let rem_idx = ascending(base, (0..base.len()).filter(|i| !order.contains(i)));
        let moduli_of = |idx: &[usize]| -> Wires<Modulus> { idx.iter().map(|&i| base.moduli()[i]).collect() };
        let rem_plan = MixedRadix::new(&moduli_of(&div_idx))?;
        let ext_plan = MixedRadix::new(&moduli_of(&rem_idx))?;
        let d = divisor as i128;
        let shifted_min = base.min_value() + rounding.offset(divisor);
        let z = shifted_min.rem_euclid(d);
        let correction = if z == 0 {
            Correction::None
        } else {
            let threshold = (d - z) as u128;
            let tau = rem_plan.digits_of(threshold);
            let top = div_idx.len() - 1;
            let start = tau[..=top].iter().position(|&t| t != 0).unwrap_or(top);
            if start == top { Correction::Top { tau: tau[top] } } else { Correction::Chain { start, tau } }
        };
        let mut d_inv = [0u16; MAX_CRT_PRIMES];
        let mut r_coef = [[0u16; MAX_CRT_PRIMES]; MAX_CRT_PRIMES];
        for (pos, &i) in rem_idx.iter().enumerate() {
            let p = base.moduli()[i];
            d_inv[pos] = p.inverse(mod_small(divisor as u128, p)).ok_or(Error::InvalidParameter)?;
            for (j, c) in r_coef[pos].iter_mut().enumerate().take(div_idx.len()) {
                *c = p.neg(p.mul(mod_small(rem_plan.weight(j), p), d_inv[pos]));
            }
        }
        let mut r = Rescale {
            base: base.clone(),
            divisor,
            rounding,
            div_idx,
            rem_idx,
            rem_plan,
            ext_plan,
            half: base.product() / 2,
            low: shifted_min.div_euclid(d),
            correction,
            d_inv,
            r_coef,
            cost: 0,
            moduli: ModulusList::new(),
        };
        let (cost, moduli) = measure(base, |cc, x| r.apply(cc, x))?;
        r.cost = cost;
        r.moduli = moduli;
        Ok(r)
    }

    /// The divisor `d`.
    pub fn divisor(&self) -> u64 {
        self.divisor
    }

    /// The rounding.
    pub fn rounding(&self) -> Rounding {
        self.rounding
    }

    /// The base (input and output).
    pub fn base(&self) -> &CrtBase {
        &self.base
    }

    /// The primes of the divisor, in the digit order used (the last one is
    /// the most significant digit of the remainder).
    pub fn divisor_primes(&self) -> impl Iterator<Item = u16> + '_ {
        self.div_idx.iter().map(|&i| self.base.moduli()[i].value())
    }

    /// Ciphertexts (16-byte rows) per application, as counted by
    /// [`crate::CostCounter`].
    pub fn cost(&self) -> u64 {
        self.cost
    }

    /// Every modulus any wire of the gadget uses, inputs included (all
    /// prime): generate the garbler's keys for all of them.
    pub fn moduli(&self) -> &[Modulus] {
        &self.moduli
    }

    /// Plaintext reference: `x / d` rounded per [`Rescale::rounding`], for
    /// `x` in the base's signed range (where the gadget is exact).
    pub fn reference(&self, x: i128) -> i128 {
        self.rounding.divide(x, self.divisor)
    }

    /// The rescaled value, on the same base.
    pub fn apply<B: Backend>(&self, b: &mut B, x: &Bundle<B::Wire>) -> Result<Bundle<B::Wire>, Error> {
        check_bundle(b, &self.base, x)?;
        log_debug!("rescale: /{=u64} {} ciphertexts={=u64}", self.divisor, self.rounding, self.cost);
        let moduli = self.base.moduli();
        let xs = x.wires();
        // Steps 1-2: the digits of r = u mod d.
        let mut u_div = Wires::new();
        for &i in &self.div_idx {
            let _ = u_div.push(b.add_constant(&xs[i], mod_small(self.half, moduli[i]))?);
        }
        let r_digits = self.rem_plan.digits(b, &u_div)?;
        // Step 3: v = (u - r)/d modulo each remaining prime.
        let mut v = Wires::new();
        for (pos, &i) in self.rem_idx.iter().enumerate() {
            let p = moduli[i];
            let (d_inv, coef) = (self.d_inv[pos], &self.r_coef[pos]);
            let scaled = b.cmul(&xs[i], d_inv)?;
            let scaled = b.add_constant(&scaled, p.mul(mod_small(self.half, p), d_inv))?;
            let minus_r = self.rem_plan.project(b, &r_digits, p, |j, t| p.mul(p.reduce(t as u32), coef[j]))?;
            let _ = v.push(b.add(&scaled, &minus_r)?);
        }
        // Step 4: base extension of v into the divisor primes.
        let v_digits = self.ext_plan.digits(b, &v)?;
        let mut out: Wires<Option<B::Wire>> = (0..moduli.len()).map(|_| None).collect();
        for (pos, &i) in self.rem_idx.iter().enumerate() {
            out[i] = Some(v[pos].clone());
        }
        for &i in &self.div_idx {
            out[i] = Some(self.ext_plan.value_into(b, &v_digits, moduli[i])?);
        }
        // Step 5: rounding correction and the constant.
        let top = self.div_idx.len() - 1;
        let chain = match self.correction {
            Correction::Chain { start, tau } => Some(self.compare_chain(b, &r_digits, start, &tau)?),
            _ => None,
        };
        let mut result = Wires::new();
        for (i, (w, &p)) in out.into_iter().zip(moduli).enumerate() {
            let mut w = w.ok_or(Error::InvalidParameter)?;
            let bit = match (self.correction, &chain) {
                (Correction::Top { tau }, _) => {
                    if i == self.div_idx[top] && p.value() == 2 {
                        // [d >= 1] is d itself on a wire of modulus 2.
                        Some(r_digits[top].clone())
                    } else {
                        Some(b.project(&r_digits[top], p, move |t| (t >= tau) as u16)?)
                    }
                }
                (Correction::Chain { .. }, Some(s)) => Some(b.project(s, p, |t| (t >= 2) as u16)?),
                _ => None,
            };
            if let Some(bit) = bit {
                w = b.add(&w, &bit)?;
            }
            let _ = result.push(b.add_constant(&w, mod_signed(self.low, p))?);
        }
        Bundle::from_wires(result)
    }

    /// `[r >= T]` from the digits of `r` when the low digits of `T` are not
    /// all zero. Digits below `start` are zero in `T` and do not matter.
    /// Returns a wire `s` of modulus 5 with `[r >= T] = [s >= 2]`: per digit
    /// from `start` up, `s = code(d_j) + [lower part >= T's lower part]`
    /// where `code` is 0 below, 1 equal, 3 above the threshold digit.
    fn compare_chain<B: Backend>(
        &self,
        b: &mut B,
        digits: &[B::Wire],
        start: usize,
        tau: &[u16; MAX_CRT_PRIMES],
    ) -> Result<B::Wire, Error> {
        let five = CHAIN;
        let t0 = tau[start];
        let mut acc = b.project(&digits[start], five, move |t| (t >= t0) as u16)?;
        for (j, digit) in digits.iter().enumerate().skip(start + 1) {
            let tj = tau[j];
            let code = b.project(digit, five, move |t| match t.cmp(&tj) {
                core::cmp::Ordering::Less => 0,
                core::cmp::Ordering::Equal => 1,
                core::cmp::Ordering::Greater => 3,
            })?;
            let s = b.add(&code, &acc)?;
            acc = if j + 1 < digits.len() { b.project(&s, five, |t| (t >= 2) as u16)? } else { s };
        }
        Ok(acc)
    }
}

/// Dash's exact halving, `x -> ceil(x/2)`, with parity recovery by an exact
/// sign (the anchor this crate compares [`Rescale`] with).
///
/// For a base containing 2 (so `Q/2` is odd), with `R` the other primes
/// (product `Q_R = Q/2`):
///
/// 1. `u = x + Q/2` lies in `[0, Q)`; `r = u mod 2` is the residue of 2.
/// 2. Projecting `r` into every prime of `R` (1 ciphertext each) gives
///    `v = (u - r)/2 = floor(u/2) in [0, Q_R)` modulo each prime of `R`.
/// 3. `v mod 2` is lost. With `h = v·2^{-1} mod Q_R` (free), `v = 2h` if
///    `h < Q_R/2` and `v = 2h - Q_R` otherwise; `Q_R` is odd, so `v` is odd
///    exactly when `h`, read as a signed value on `R`, is negative. An exact
///    [`SignGadget`] on the base `R` returns that bit, which *is* `v mod 2`.
/// 4. `floor((x + Q/2)/2) = ceil(x/2) + floor(Q/4)`, so subtracting
///    `floor(Q/4)` (free) gives `ceil(x/2)`.
///
/// **Rounding**: `ceil(x/2)`, exact for every `x` in the signed range (the
/// sign must be exact: an approximate one would move the result by `Q/4`).
/// [`Halving::apply_repeated`] returns `ceil(x/2^j)` exactly, since nested
/// ceilings of divisions by positive integers compose.
///
/// **Cost**: `(k - 1)` plus one exact sign on `k - 1` primes. For the
/// first 7 primes that is 6 + the sign on `{3, 5, …, 17}`; see
/// [`Halving::cost`] and `docs/RESCALE.md`. [`Rescale`] with divisor 2 does
/// the same division with a base extension instead, and is cheaper.
#[derive(Clone, Debug)]
pub struct Halving {
    base: CrtBase,
    /// Index of 2 in the base.
    two: usize,
    sign: SignGadget,
    /// `2^{-1}` modulo each prime of `rest`.
    inv2: [u16; MAX_CRT_PRIMES],
    half: u128,
    low: i128,
    cost: u64,
    moduli: ModulusList,
}

impl Halving {
    /// Halving on `base`, which must contain 2 and at least one other
    /// prime ([`Error::InvalidParameter`] otherwise).
    pub fn new(base: &CrtBase) -> Result<Halving, Error> {
        let two = base.moduli().iter().position(|m| m.value() == 2).ok_or(Error::InvalidParameter)?;
        if base.len() < 2 {
            return Err(Error::InvalidParameter);
        }
        let rest_primes: Wires<u16> = base.moduli().iter().filter(|m| m.value() != 2).map(|m| m.value()).collect();
        let rest = CrtBase::new(&rest_primes)?;
        let sign = SignGadget::new(&rest, Accuracy::Exact)?;
        let mut inv2 = [0u16; MAX_CRT_PRIMES];
        for (j, p) in rest.moduli().iter().enumerate() {
            inv2[j] = p.inverse(2).ok_or(Error::InvalidParameter)?;
        }
        let min = base.min_value();
        if (min + 1).rem_euclid(2) != 0 {
            // Q/2 is odd whenever 2 is a base prime; anything else is a bug.
            return Err(Error::InvalidParameter);
        }
        let mut h = Halving {
            base: base.clone(),
            two,
            sign,
            inv2,
            half: base.product() / 2,
            low: (min + 1).div_euclid(2),
            cost: 0,
            moduli: ModulusList::new(),
        };
        let (cost, moduli) = measure(base, |cc, x| h.apply(cc, x))?;
        h.cost = cost;
        h.moduli = moduli;
        Ok(h)
    }

    /// The base (input and output).
    pub fn base(&self) -> &CrtBase {
        &self.base
    }

    /// Ciphertexts per halving.
    pub fn cost(&self) -> u64 {
        self.cost
    }

    /// Ciphertexts of the exact sign on the base without 2 (part of
    /// [`Halving::cost`]).
    pub fn sign_cost(&self) -> u64 {
        self.sign.sign_ciphertexts()
    }

    /// Every modulus any wire uses, inputs included (all prime).
    pub fn moduli(&self) -> &[Modulus] {
        &self.moduli
    }

    /// Plaintext reference: `ceil(x/2)`.
    pub fn reference(&self, x: i128) -> i128 {
        Rounding::Ceil.divide(x, 2)
    }

    /// Plaintext reference of `j` halvings: `ceil(x/2^j)`.
    pub fn reference_repeated(&self, x: i128, j: u32) -> i128 {
        match 1i128.checked_shl(j) {
            Some(d) if d > 0 => (x + d - 1).div_euclid(d),
            // 2^j exceeds every representable |x| (below 2^125).
            _ => (x > 0) as i128,
        }
    }

    /// `ceil(x/2)` on the same base.
    pub fn apply<B: Backend>(&self, b: &mut B, x: &Bundle<B::Wire>) -> Result<Bundle<B::Wire>, Error> {
        check_bundle(b, &self.base, x)?;
        let moduli = self.base.moduli();
        let xs = x.wires();
        let half2 = mod_small(self.half, moduli[self.two]);
        let r = b.add_constant(&xs[self.two], half2)?;
        let mut v = Wires::new();
        let mut h = Wires::new();
        let others = xs.iter().zip(moduli).enumerate().filter(|&(i, _)| i != self.two);
        for (j, (_, (w, &p))) in others.enumerate() {
            let inv2 = self.inv2[j];
            let u = b.add_constant(w, mod_small(self.half, p))?;
            let u = b.cmul(&u, inv2)?;
            let minus_r = b.project(&r, p, move |t| p.neg(p.mul(t, inv2)))?;
            let vp = b.add(&u, &minus_r)?;
            let _ = h.push(b.cmul(&vp, inv2)?);
            let _ = v.push(vp);
        }
        // h = v / 2 mod Q_R: its sign on R is the parity of v.
        let h = Bundle::from_wires(h)?;
        let parity = self.sign.sign_bit(b, &h)?;
        let mut out = Wires::new();
        let mut rest = v.into_iter();
        for (i, &p) in moduli.iter().enumerate() {
            let w = if i == self.two { parity.clone() } else { rest.next().ok_or(Error::LengthMismatch)? };
            let _ = out.push(b.add_constant(&w, mod_signed(self.low, p))?);
        }
        Bundle::from_wires(out)
    }

    /// `ceil(x/2^j)`: `j` halvings in a row (`j` times [`Halving::cost`]).
    pub fn apply_repeated<B: Backend>(&self, b: &mut B, x: &Bundle<B::Wire>, j: u32) -> Result<Bundle<B::Wire>, Error> {
        let mut y = x.clone();
        for _ in 0..j {
            y = self.apply(b, &y)?;
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Plaintext;
    use crate::gadgets::basechange::tests::{plain_bundle, plain_value};
    use crate::modulus::is_prime;

    /// Squarefree products of the first `k` primes in `lo..=hi`.
    pub(crate) fn divisors(k: usize, lo: u64, hi: u64) -> impl Iterator<Item = u64> {
        let primes = &crate::modulus::SMALL_PRIMES[..k];
        (1u32..(1 << k) - 1)
            .map(move |mask| (0..k).filter(|i| mask >> i & 1 == 1).map(|i| primes[i] as u64).product::<u64>())
            .filter(move |d| (lo..=hi).contains(d))
    }

    fn check_exhaustive(base: &CrtBase, r: &Rescale) {
        for x in base.min_value()..=base.max_value() {
            let y = r.apply(&mut Plaintext, &plain_bundle(base, x)).unwrap();
            assert_eq!(plain_value(base, &y), r.reference(x), "d {} {:?} x {x}", r.divisor(), r.rounding());
        }
    }

    const ROUNDINGS: [Rounding; 3] = [Rounding::Floor, Rounding::Nearest, Rounding::Ceil];

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn exhaustive_every_divisor_and_rounding_k_up_to_4() {
        for k in 2..=4 {
            let base = CrtBase::first(k).unwrap();
            for d in divisors(k, 2, u64::MAX) {
                for rounding in ROUNDINGS {
                    check_exhaustive(&base, &Rescale::new(&base, d, rounding).unwrap());
                }
            }
        }
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn exhaustive_k5_and_k6_selected_divisors() {
        let base = CrtBase::first(5).unwrap();
        for d in [2, 3, 6, 35, 30, 77, 105, 1155] {
            for rounding in ROUNDINGS {
                check_exhaustive(&base, &Rescale::new(&base, d, rounding).unwrap());
            }
        }
        let base = CrtBase::first(6).unwrap();
        for (d, rounding) in [(2, Rounding::Ceil), (35, Rounding::Floor)] {
            check_exhaustive(&base, &Rescale::new(&base, d, rounding).unwrap());
        }
    }

    /// Every divisor and rounding for k = 5, 6; every divisor up to 64 at
    /// k = 7. Run with
    /// `cargo test -p dash-core --release --lib -- --ignored rescale::tests::exhaustive`.
    #[test]
    #[ignore]
    fn exhaustive_k5_k6_all_and_k7_small_divisors() {
        for (k, hi) in [(5, u64::MAX), (6, u64::MAX), (7, 64)] {
            let base = CrtBase::first(k).unwrap();
            for d in divisors(k, 2, hi) {
                for rounding in ROUNDINGS {
                    check_exhaustive(&base, &Rescale::new(&base, d, rounding).unwrap());
                }
            }
        }
    }

    fn check_all_divisors(primes: &[u16], masks: impl Iterator<Item = u32>) {
        let base = CrtBase::new(primes).unwrap();
        for mask in masks {
            let d: u64 = (0..primes.len()).filter(|i| mask >> i & 1 == 1).map(|i| primes[i] as u64).product();
            for rounding in ROUNDINGS {
                check_exhaustive(&base, &Rescale::new(&base, d, rounding).unwrap());
            }
        }
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn non_standard_bases() {
        // Odd Q (no 2), primes out of order, larger primes.
        for primes in [&[3u16, 5, 7][..], &[13, 17], &[2, 31, 3], &[7, 2, 5]] {
            check_all_divisors(primes, 1u32..(1 << primes.len()) - 1);
        }
        // 2·5, 3·7, 2·3·11, 5·7·3 on {11, 2, 7, 5, 3}.
        check_all_divisors(&[11, 2, 7, 5, 3], [0b01010, 0b10100, 0b10011, 0b11100].into_iter());
    }

    /// All divisors of some non-standard bases.
    /// `cargo test -p dash-core --release --lib -- --ignored rescale::tests::non_standard`
    #[test]
    #[ignore]
    fn non_standard_bases_all_divisors() {
        for primes in [&[3u16, 5, 7, 11][..], &[11, 2, 7, 5, 3], &[13, 17, 19], &[3, 7, 13, 2, 19]] {
            check_all_divisors(primes, 1u32..(1 << primes.len()) - 1);
        }
    }

    #[test]
    fn rejects_bad_divisors() {
        let base = CrtBase::first(4).unwrap();
        for d in [0, 1, 4, 9, 11, 210, 22, 2 * 2 * 3] {
            assert_eq!(Rescale::new(&base, d, Rounding::Floor).unwrap_err(), Error::InvalidParameter, "d {d}");
        }
        let r = Rescale::new(&base, 6, Rounding::Floor).unwrap();
        let other = plain_bundle(&CrtBase::first(3).unwrap(), 0);
        assert_eq!(r.apply(&mut Plaintext, &other).unwrap_err(), Error::LengthMismatch);
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn costs_at_k7_and_moduli_prime() {
        let base = CrtBase::first(7).unwrap();
        let floor35 = Rescale::new(&base, 35, Rounding::Floor).unwrap();
        assert_eq!(floor35.cost(), 178);
        let mut cheapest = u64::MAX;
        for d in divisors(7, 16, 64) {
            let r = Rescale::new(&base, d, Rounding::Floor).unwrap();
            cheapest = cheapest.min(r.cost());
            assert!(r.moduli().iter().all(|m| is_prime(m.value())));
        }
        assert!(cheapest <= 250);
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn halving_exhaustive_k_up_to_5_and_repeated() {
        for k in 2..=5 {
            let base = CrtBase::first(k).unwrap();
            let h = Halving::new(&base).unwrap();
            for x in base.min_value()..=base.max_value() {
                let y = h.apply(&mut Plaintext, &plain_bundle(&base, x)).unwrap();
                assert_eq!(plain_value(&base, &y), h.reference(x), "k {k} x {x}");
            }
        }
        let base = CrtBase::first(4).unwrap();
        let h = Halving::new(&base).unwrap();
        for x in base.min_value()..=base.max_value() {
            for j in 0..=4 {
                let y = h.apply_repeated(&mut Plaintext, &plain_bundle(&base, x), j).unwrap();
                assert_eq!(plain_value(&base, &y), h.reference_repeated(x, j), "x {x} j {j}");
            }
        }
        assert_eq!(Halving::new(&CrtBase::new(&[3, 5]).unwrap()).unwrap_err(), Error::InvalidParameter);
        assert_eq!(Halving::new(&CrtBase::new(&[2]).unwrap()).unwrap_err(), Error::InvalidParameter);
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn halving_exhaustive_k6_and_unordered_base() {
        let base = CrtBase::first(6).unwrap();
        let h = Halving::new(&base).unwrap();
        for x in base.min_value()..=base.max_value() {
            let y = h.apply(&mut Plaintext, &plain_bundle(&base, x)).unwrap();
            assert_eq!(plain_value(&base, &y), h.reference(x), "x {x}");
        }
        let base = CrtBase::new(&[7, 3, 2, 5]).unwrap();
        let h = Halving::new(&base).unwrap();
        for x in base.min_value()..=base.max_value() {
            let y = h.apply(&mut Plaintext, &plain_bundle(&base, x)).unwrap();
            assert_eq!(plain_value(&base, &y), h.reference(x), "x {x}");
        }
    }

    /// `cargo test -p dash-core --release --lib -- --ignored rescale::tests::halving`
    #[test]
    #[ignore]
    fn halving_exhaustive_k7() {
        let base = CrtBase::first(7).unwrap();
        let h = Halving::new(&base).unwrap();
        for x in base.min_value()..=base.max_value() {
            let y = h.apply(&mut Plaintext, &plain_bundle(&base, x)).unwrap();
            assert_eq!(plain_value(&base, &y), h.reference(x), "x {x}");
        }
    }
}
