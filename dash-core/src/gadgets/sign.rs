//! Sign of a CRT value, sign activation and ReLU, prime moduli only.
//!
//! # The method
//!
//! For `x` in `Z_Q` with residues `x_i = x mod p_i`,
//! `x/Q ≡ Σ_i r_i/p_i (mod 1)` where `r_i = a_i·x_i mod p_i` and
//! `a_i = (Q/p_i)^{-1} mod p_i`. Pick an even integer `M` (the *scale*) and
//! let every residue contribute the integer
//!
//! ```text
//! T_i(x_i) = floor(M · r_i / p_i)          in [0, M).
//! ```
//!
//! When `p_i` divides `M` the term is exact; at most one residue (the
//! *floored* one) may have `p_i ∤ M`, and then `Σ_i T_i mod M` is
//! `floor(M·x/Q)` exactly, because the single floor loses less than one unit.
//! As `M` is even, `floor(M·x/Q) ≥ M/2 ⇔ x ≥ Q/2 ⇔ x < 0` (signed): the sign
//! is the top digit of `Σ_i T_i mod M` in any mixed radix whose most
//! significant radix is even.
//!
//! The sum is computed position by position in a mixed radix
//! `M = m_0·m_1·…·m_{L-1}` (least significant first):
//!
//! * residue `i` contributes at position `l` the digit
//!   `floor(T_i / (m_0…m_{l-1})) mod m_l`, obtained by **one projection
//!   straight into the position's sum modulus** `n_l`, a prime larger than
//!   any reachable sum (digit sum plus carry in) at that position;
//!   residues whose digit is always 0 there are skipped, and a digit that is
//!   an affine function of `x_i` when `n_l = p_i` is computed for free;
//! * a position's sum is projected to its carry `floor(s/m_l)` (into the
//!   next position's sum modulus) only where a carry can occur *and* can
//!   still reach the top; other positions are not computed at all;
//! * the top radix is 2 (the sum of the top digits and the carry is taken
//!   mod 2 — the sign bit itself, no final projection), or `2·g`, and then
//!   the top sum is projected once to `floor(s/g) mod 2`.
//!
//! Every wire modulus (inputs, sums, 2) is prime; the radices `m_l` are
//! only table parameters and may be composite. The largest reachable sum at
//! each position is computed exactly at construction (the residues are
//! independent, so it is the sum over residues of the largest
//! `T_i mod (m_0…m_l)`), which is what makes the result exact for every
//! input, not just likely.
//!
//! # Choosing the parameters
//!
//! [`SignGadget::new`] searches the digit order: which base prime is
//! floored (none, or the largest odd one), how the odd primes of `M` are
//! grouped and ordered into radices, and whether the top radix is 2 or
//! `2·g`. It starts from the shapes the exhaustive search in
//! `examples/sign_search.rs` found best (largest prime at the bottom, where
//! its digit never carries; small primes low; 3 merged into the top radix 6)
//! and improves them by local moves (swap two primes, split or join two
//! neighbouring radices, merge or split the top) under the exact cost
//! model. For the first `k` primes, `k = 5..=9`, it reaches the optimum of
//! the exhaustive search over all orders, groupings and floored residues
//! (`examples/sign_search.rs`); construction takes about 1 ms (k = 7) to
//! 11 ms (k = 10) in a release build. The search is
//! deterministic, so garbler and evaluator construct identical gadgets.
//! [`SignGadget::with_radices`] takes an explicit radix list instead.
//!
//! Costs for the first `k` primes (row-reduced ciphertexts, as counted by
//! [`crate::CostCounter`]; `docs/SIGN.md` has the parameters):
//!
//! | k | sign / nonneg bit | ReLU | sign activation |
//! |---|---|---|---|
//! | 5 | 105 | 138 | 109 |
//! | 6 | 199 | 246 | 204 |
//! | 7 | 341 | 406 | 347 |
//! | 8 | 531 | 616 | 538 |
//! | 9 | 787 | 896 | 795 |
//! | 10 | 1143 | 1282 | 1152 |
//!
//! (fancy-garbling: exact ReLU 701 / 1134 at k = 7 / 8, exact sign 637 at
//! k = 7; Dash: ReLU 839 / 1327, all with composite moduli.)
//!
//! # Approximate variants
//!
//! [`Accuracy::Approximate`] drops the lowest computed positions: the sum
//! then starts at position `D` with no carry in, i.e. every term is
//! truncated to a multiple of `m_0…m_{D-1}`. The computed value is
//! `floor(M·x/Q) - e` with `0 <= e <= E`, where `E` is the largest possible
//! total truncation, so the result can only be wrong for
//!
//! * signed `x` in `[0, W)`: reported negative (ReLU returns 0 instead of
//!   `x`, an error below `W`), and
//! * signed `x` in `[-floor(Q/2), -floor(Q/2) + W)`: reported non-negative,
//!
//! with `W = ceil(E·Q/M)` given by [`SignGadget::error_window`]. Everything
//! else is exact. The measured error rates (exhaustive over `Z_Q`) are in
//! `docs/SIGN.md`. Approximate results must not feed [`super::rescale`]'s
//! parity recovery, which needs the exact sign.

use crate::backend::Backend;
use crate::crt::{Bundle, CrtBase, MAX_CRT_PRIMES};
use crate::error::Error;
use crate::modulus::{MAX_PROJECTION_INPUT, Modulus};

/// Most mixed-radix positions a sign gadget has (one per odd base prime
/// plus the top radix).
pub const MAX_POSITIONS: usize = MAX_CRT_PRIMES + 1;

/// Most distinct moduli a sign gadget's circuits use: the base primes, 2,
/// and one sum modulus per position.
pub const MAX_SIGN_MODULI: usize = MAX_CRT_PRIMES + MAX_POSITIONS + 1;

/// How exact the sign must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Accuracy {
    /// Correct for every element of `Z_Q`.
    #[default]
    Exact,
    /// Drops the `dropped` lowest positions that the exact gadget computes
    /// (their carries are taken as 0). Cheaper; wrong only inside the
    /// windows described in the module documentation
    /// ([`SignGadget::error_window`]).
    Approximate {
        /// How many of the lowest computed positions to drop.
        dropped: u8,
    },
}

/// Public description of one mixed-radix position of a [`SignGadget`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PositionInfo {
    /// The radix `m_l` (a table parameter; may be composite).
    pub radix: u128,
    /// The prime modulus the position's sum is held in, or `None` where
    /// the position is not computed (no carry can leave it, or it was
    /// dropped). For the top position this is 2 when the top radix is 2.
    pub sum_modulus: Option<u16>,
    /// Base indices (bit `i` = residue `i`) that contribute a digit here
    /// (only for computed positions and the top).
    pub contributors: u32,
    /// Subset of `contributors` whose digit is computed for free (affine in
    /// the residue and `p_i` equal to the sum modulus).
    pub free: u32,
}

#[derive(Clone, Copy, Debug)]
struct Position {
    radix: u128,
    /// `H_l mod (p_i·m_l)` per residue, `H_l = M / (m_0…m_{l-1})`: the
    /// digit of residue `i` for `r` is `((h·r) mod (p_i·m_l)) / p_i`.
    h: [u32; MAX_CRT_PRIMES],
    sum_modulus: Option<Modulus>,
    contributors: u32,
    free: u32,
    /// `ceil(2^30 / radix)` when the position is computed (its radix is a
    /// projection input, at most 1024): [`digit`] divides by multiplying.
    /// A `u32`, which fits in the struct's padding.
    radix_recip: u32,
}

impl Position {
    const EMPTY: Position =
        Position { radix: 0, h: [0; MAX_CRT_PRIMES], sum_modulus: None, contributors: 0, free: 0, radix_recip: 0 };
}

/// An exact (or approximate) sign gadget for one CRT base: the public
/// parameters, computed once, shared by garbler and evaluator.
///
/// ```
/// use dash_core::gadgets::sign::{Accuracy, SignGadget};
/// use dash_core::{crt, CostCounter, CrtBase, Plaintext, PlainWire, Bundle};
/// let base = CrtBase::first(7)?;
/// let gadget = SignGadget::new(&base, Accuracy::Exact)?;
/// let mut pt = Plaintext;
/// let x = crt::constant(&mut pt, &base, -5)?;
/// assert_eq!(gadget.sign_bit(&mut pt, &x)?.value(), 1);
/// let r = gadget.relu(&mut pt, &x)?;
/// let residues: heapless::Vec<u16, 16> = r.wires().iter().map(|w| w.value()).collect();
/// assert_eq!(base.decode(&residues)?, 0);
/// // Costs, counted by the cost backend.
/// let mut cc = CostCounter::new();
/// let inputs = Bundle::from_wires(base.moduli().iter().map(|m| cc.input(*m)))?;
/// gadget.relu(&mut cc, &inputs)?;
/// assert_eq!(cc.ciphertexts, gadget.relu_ciphertexts());
/// # Ok::<(), dash_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SignGadget {
    base: CrtBase,
    accuracy: Accuracy,
    scale: u128,
    floored: Option<usize>,
    /// `a_i = (Q/p_i)^{-1} mod p_i`.
    inverses: [u16; MAX_CRT_PRIMES],
    positions: heapless::Vec<Position, MAX_POSITIONS>,
    sign_cost: u64,
    error_window: u128,
}

/// `floor(scale · r / p)` without overflow (`scale < 2^127`, `r < p`).
fn term(scale: u128, p: u16, r: u16) -> u128 {
    let (p, r) = (p as u128, r as u128);
    (scale / p) * r + (scale % p) * r / p
}

/// The smallest supported prime modulus above `smax` that a projection may
/// take as input.
fn sum_modulus_above(smax: u128) -> Result<Modulus, Error> {
    let mut n = smax.checked_add(1).ok_or(Error::InvalidParameter)?;
    while n <= MAX_PROJECTION_INPUT as u128 {
        if let Ok(m) = Modulus::new(n as u16) {
            return Ok(m);
        }
        n += 1;
    }
    Err(Error::InvalidParameter)
}

impl SignGadget {
    /// The gadget for `base` with a searched digit order (see the module
    /// documentation). Fails with [`Error::InvalidParameter`] if no digit
    /// order keeps every sum modulus within
    /// [`crate::MAX_PROJECTION_INPUT`] (bases of large primes), or if an
    /// approximation drops so much that its error window would exceed
    /// `Q/2`.
    pub fn new(base: &CrtBase, accuracy: Accuracy) -> Result<SignGadget, Error> {
        let radices = SignGadget::search_radices(base)?;
        SignGadget::with_radices(base, accuracy, &radices)
    }

    /// The digit order [`SignGadget::new`] chooses for `base`, without
    /// building the gadget: `new` is this followed by
    /// [`SignGadget::with_radices`]. A device with little RAM runs the two
    /// steps in separate call frames, so the search's scratch and the
    /// gadget are never on the stack together (`firmware/`).
    ///
    /// ```
    /// use dash_core::gadgets::sign::{Accuracy, SignGadget};
    /// use dash_core::CrtBase;
    /// let base = CrtBase::first(5)?;
    /// let radices = SignGadget::search_radices(&base)?;
    /// let two_steps = SignGadget::with_radices(&base, Accuracy::Exact, &radices)?;
    /// let one_step = SignGadget::new(&base, Accuracy::Exact)?;
    /// assert_eq!(two_steps.radices(), one_step.radices());
    /// assert_eq!(two_steps.relu_ciphertexts(), one_step.relu_ciphertexts());
    /// # Ok::<(), dash_core::Error>(())
    /// ```
    pub fn search_radices(base: &CrtBase) -> Result<heapless::Vec<u128, MAX_POSITIONS>, Error> {
        search(base)
    }

    /// The gadget for `base` with the mixed radix `radices` (least
    /// significant first). Requirements, else [`Error::InvalidParameter`]:
    /// every radix at least 2, the top radix even, the product `M` even and
    /// below `2^127`, at most one base prime not dividing `M` (that residue
    /// is floored), and every computed position's radix, digit table and sum
    /// within [`crate::MAX_PROJECTION_INPUT`].
    pub fn with_radices(base: &CrtBase, accuracy: Accuracy, radices: &[u128]) -> Result<SignGadget, Error> {
        let dropped = match accuracy {
            Accuracy::Exact => 0,
            Accuracy::Approximate { dropped } => dropped as usize,
        };
        build(base, radices, dropped).map(|mut g| {
            g.accuracy = accuracy;
            g
        })
    }

    /// The CRT base.
    pub fn base(&self) -> &CrtBase {
        &self.base
    }

    /// The accuracy it was built for.
    pub fn accuracy(&self) -> Accuracy {
        self.accuracy
    }

    /// The scale `M`, the product of the radices.
    pub fn scale(&self) -> u128 {
        self.scale
    }

    /// The prime of the floored residue (the one base prime not dividing
    /// `M`), if any.
    pub fn floored_prime(&self) -> Option<u16> {
        self.floored.map(|i| self.base.moduli()[i].value())
    }

    /// The radices, least significant first.
    pub fn radices(&self) -> heapless::Vec<u128, MAX_POSITIONS> {
        self.positions.iter().map(|p| p.radix).collect()
    }

    /// The positions, least significant first.
    pub fn positions(&self) -> impl Iterator<Item = PositionInfo> + '_ {
        self.positions.iter().map(|p| PositionInfo {
            radix: p.radix,
            sum_modulus: p.sum_modulus.map(|m| m.value()),
            contributors: p.contributors,
            free: p.free,
        })
    }

    /// Every modulus the gadget's circuits use: the base primes, 2 and the
    /// sum moduli. Pass them (with any others of the circuit) to
    /// [`crate::GarblerKeys::generate`].
    pub fn moduli(&self) -> heapless::Vec<Modulus, MAX_SIGN_MODULI> {
        let mut out: heapless::Vec<Modulus, MAX_SIGN_MODULI> = heapless::Vec::new();
        let two = Modulus::new(2).ok();
        let all =
            self.base.moduli().iter().copied().chain(two).chain(self.positions.iter().filter_map(|p| p.sum_modulus));
        for m in all {
            if !out.contains(&m) {
                // Capacity covers every base prime, 2 and every position.
                let _ = out.push(m);
            }
        }
        out
    }

    /// Ciphertexts of [`SignGadget::sign_bit`] (and of
    /// [`SignGadget::nonneg_bit`]).
    pub fn sign_ciphertexts(&self) -> u64 {
        self.sign_cost
    }

    /// Ciphertexts of [`SignGadget::relu`]: the bit plus `p_i + 1` per
    /// residue.
    pub fn relu_ciphertexts(&self) -> u64 {
        self.sign_cost + self.base.moduli().iter().map(|m| m.value() as u64 + 1).sum::<u64>()
    }

    /// Ciphertexts of [`SignGadget::sign_activation`]: the bit plus one per
    /// odd residue (the residue mod 2 of ±1 is the constant 1).
    pub fn activation_ciphertexts(&self) -> u64 {
        self.sign_cost + self.base.moduli().iter().filter(|m| m.value() != 2).count() as u64
    }

    /// 0 for an exact gadget; otherwise `W`: results can be wrong only for
    /// signed inputs in `[0, W)` and in `[-floor(Q/2), -floor(Q/2) + W)`.
    pub fn error_window(&self) -> u128 {
        self.error_window
    }

    fn check<B: Backend>(&self, b: &B, x: &Bundle<B::Wire>) -> Result<(), Error> {
        if x.len() != self.base.len() {
            return Err(Error::LengthMismatch);
        }
        for (w, m) in x.wires().iter().zip(self.base.moduli()) {
            let got = b.modulus_of(w);
            if got != *m {
                return Err(Error::ModulusMismatch { left: got.value(), right: m.value() });
            }
        }
        Ok(())
    }

    /// The digit residue `i` contributes at `pos` for residue value `j`.
    fn digit(&self, i: usize, pos: &Position, j: u16) -> u16 {
        digit(self.base.moduli()[i], self.inverses[i], pos.h[i], pos.radix as u64, pos.radix_recip, j)
    }

    /// The bit `[x < 0]` (`negative`) or `[x >= 0]`.
    ///
    /// The digits come one residue at a time, every position's digit of a
    /// residue before the next residue's: consecutive projections of one
    /// wire let the garbler and the evaluator hash that wire's labels once
    /// for all of them. The carry chain then runs up the positions.
    fn bit<B: Backend>(&self, b: &mut B, x: &Bundle<B::Wire>, negative: bool) -> Result<B::Wire, Error> {
        self.check(b, x)?;
        let two = Modulus::TWO;
        let flip = u16::from(!negative);
        let top = self.positions.len() - 1;
        let mut sums: [Option<B::Wire>; MAX_POSITIONS] = core::array::from_fn(|_| None);
        for (i, w) in x.wires().iter().enumerate() {
            // The positions this residue's digit is projected to, in order.
            let mut targets: heapless::Vec<usize, MAX_POSITIONS> = heapless::Vec::new();
            let mut outs: heapless::Vec<Modulus, MAX_POSITIONS> = heapless::Vec::new();
            for (l, (pos, sum)) in self.positions.iter().zip(sums.iter_mut()).enumerate() {
                let Some(n) = pos.sum_modulus else { continue };
                if pos.contributors >> i & 1 == 0 {
                    continue;
                }
                if pos.free >> i & 1 == 1 {
                    // d(j) = c·j + d(0) mod p, and n = p.
                    let d0 = self.digit(i, pos, 0);
                    let c = n.sub(self.digit(i, pos, 1), d0);
                    let t = b.cmul(w, c)?;
                    let d = if d0 == 0 { t } else { b.add_constant(&t, d0)? };
                    accumulate(b, sum, d)?;
                } else {
                    targets.push(l).map_err(|_| Error::InvalidParameter)?;
                    outs.push(n).map_err(|_| Error::InvalidParameter)?;
                }
            }
            let table = |j: usize, r: u16| {
                let pos = &self.positions[targets[j]];
                outs[j].reduce(self.digit(i, pos, r) as u32)
            };
            b.project_many(w, &outs, table, |b, j, d| accumulate_ref(b, &mut sums[targets[j]], d))?;
        }
        let mut carry: Option<B::Wire> = None;
        for (l, (pos, sum)) in self.positions.iter().zip(sums.iter_mut()).enumerate() {
            if pos.sum_modulus.is_none() {
                carry = None;
                continue;
            }
            let mut acc = sum.take();
            if let Some(c) = carry.take() {
                accumulate(b, &mut acc, c)?;
            }
            if l == top {
                return if pos.radix == 2 {
                    match acc {
                        None => b.constant(flip, two),
                        Some(a) if flip == 1 => b.add_constant(&a, 1),
                        Some(a) => Ok(a),
                    }
                } else {
                    let half = (pos.radix / 2) as u16;
                    match acc {
                        None => b.constant(flip, two),
                        Some(a) => b.project(&a, two, |s| ((s / half) & 1) ^ flip),
                    }
                };
            }
            let acc = acc.ok_or(Error::InvalidParameter)?;
            let next = self.positions[l + 1].sum_modulus.ok_or(Error::InvalidParameter)?;
            let m = pos.radix as u16;
            carry = Some(b.project(&acc, next, |s| next.reduce((s / m) as u32))?);
        }
        Err(Error::InvalidParameter)
    }

    /// The sign bit, a wire of modulus 2: 1 iff `x < 0`, i.e. iff `x`, as an
    /// element `0..Q` of `Z_Q`, is at least `Q - floor(Q/2)` (values are in
    /// `[-floor(Q/2), ceil(Q/2))` as in [`CrtBase::encode`]). Costs
    /// [`SignGadget::sign_ciphertexts`].
    pub fn sign_bit<B: Backend>(&self, b: &mut B, x: &Bundle<B::Wire>) -> Result<B::Wire, Error> {
        self.bit(b, x, true)
    }

    /// The bit `[x >= 0]`, a wire of modulus 2, at the same cost as
    /// [`SignGadget::sign_bit`] (the negation is a free constant addition
    /// or folded into the last projection).
    pub fn nonneg_bit<B: Backend>(&self, b: &mut B, x: &Bundle<B::Wire>) -> Result<B::Wire, Error> {
        self.bit(b, x, false)
    }

    /// The sign activation: the bundle of `+1` if `x >= 0` and `-1` if
    /// `x < 0`. Costs [`SignGadget::activation_ciphertexts`]. The result is
    /// a residue mod `Q` like every bundle: on a base with `Q = 2`, `+1` and
    /// `-1` are the same residue, so callers that need the two apart use a
    /// base with `Q >= 3` (dash-host's networks require it).
    pub fn sign_activation<B: Backend>(&self, b: &mut B, x: &Bundle<B::Wire>) -> Result<Bundle<B::Wire>, Error> {
        let bit = self.sign_bit(b, x)?;
        self.lift_sign(b, &bit)
    }

    /// `+1` / `-1` in every residue for a sign bit 0 / 1 (one ciphertext
    /// per odd residue).
    pub fn lift_sign<B: Backend>(&self, b: &mut B, sign: &B::Wire) -> Result<Bundle<B::Wire>, Error> {
        if b.modulus_of(sign).value() != 2 {
            return Err(Error::NotABit(b.modulus_of(sign).value()));
        }
        let mut out = Bundle::empty();
        for m in self.base.moduli() {
            let p = m.value();
            out.push(if p == 2 {
                b.constant(1, *m)?
            } else {
                b.project(sign, *m, |s| if s == 0 { 1 } else { p - 1 })?
            })?;
        }
        Ok(out)
    }

    /// `ReLU(x) = max(x, 0)`: every residue times the bit `[x >= 0]`.
    /// Costs [`SignGadget::relu_ciphertexts`].
    pub fn relu<B: Backend>(&self, b: &mut B, x: &Bundle<B::Wire>) -> Result<Bundle<B::Wire>, Error> {
        log_info!("relu: k={=usize} ciphertexts={=u64}", self.base.len(), self.relu_ciphertexts());
        let bit = self.nonneg_bit(b, x)?;
        let out = self.mul_bit(b, x, &bit);
        log_debug!("relu: done");
        out
    }

    /// `x · bit` for a bundle `x` on this gadget's base and a wire of
    /// modulus 2 (`p_i + 1` ciphertexts per residue).
    pub fn mul_bit<B: Backend>(&self, b: &mut B, x: &Bundle<B::Wire>, bit: &B::Wire) -> Result<Bundle<B::Wire>, Error> {
        self.check(b, x)?;
        let mut out = Bundle::empty();
        for w in x.wires() {
            out.push(b.mul_bit(w, bit)?)?;
        }
        Ok(out)
    }
}

/// `sum += d`, or `sum = d` for the first term.
fn accumulate<B: Backend>(b: &mut B, sum: &mut Option<B::Wire>, d: B::Wire) -> Result<(), Error> {
    match sum.as_mut() {
        Some(a) => b.add_assign(a, &d),
        None => {
            *sum = Some(d);
            Ok(())
        }
    }
}

/// [`accumulate`] for a lent term: copied only if it is the first.
fn accumulate_ref<B: Backend>(b: &mut B, sum: &mut Option<B::Wire>, d: &B::Wire) -> Result<(), Error> {
    match sum.as_mut() {
        Some(a) => b.add_assign(a, d),
        None => {
            *sum = Some(d.clone());
            Ok(())
        }
    }
}

/// `floor(H·r/p) mod m` for `r = a·j mod p`, given `h = H mod (p·m)`
/// (`(h·r mod p·m) / p` is `floor(h·r / p) mod m`). The garbler evaluates
/// this for every table entry, so every reduction is by multiplication:
/// mod `p` with the modulus's constants, mod `m` with `m_recip =
/// ceil(2^30 / m)`. That quotient is exact because `q < p·m <= 2^20` (both
/// at most [`MAX_PROJECTION_INPUT`], which `build` checks): the reciprocal's
/// error adds less than `q/2^30 < 2^-10 <= 1/m` to `q/m`, whose fractional
/// part is at most `1 - 1/m`.
fn digit(p: Modulus, a: u16, h: u32, m: u64, m_recip: u32, j: u16) -> u16 {
    let r = p.mul(a, p.reduce(j as u32));
    let (q, _) = p.div_rem_u64(h as u64 * r as u64);
    debug_assert!(q < 1 << 20 && m <= MAX_PROJECTION_INPUT as u64);
    let quotient = (q * m_recip as u64) >> 30;
    (q - quotient * m) as u16
}

/// `ceil(2^30 / m)` for a radix `2 <= m <= MAX_PROJECTION_INPUT` (see [`digit`]).
fn radix_recip(m: u64) -> u32 {
    (1u64 << 30).div_ceil(m) as u32
}

/// Builds the gadget's public parameters for a radix list.
fn build(base: &CrtBase, radices: &[u128], dropped: usize) -> Result<SignGadget, Error> {
    let len = radices.len();
    if len == 0 || len > MAX_POSITIONS || radices.iter().any(|&m| m < 2) || !radices[len - 1].is_multiple_of(2) {
        return Err(Error::InvalidParameter);
    }
    let mut scale: u128 = 1;
    for &m in radices {
        scale = scale.checked_mul(m).filter(|&s| s < 1 << 127).ok_or(Error::InvalidParameter)?;
    }
    let moduli = base.moduli();
    let mut floored = None;
    for (i, m) in moduli.iter().enumerate() {
        if !scale.is_multiple_of(m.value() as u128) {
            if floored.is_some() {
                return Err(Error::InvalidParameter);
            }
            floored = Some(i);
        }
    }
    let q = base.product();
    let mut inverses = [0u16; MAX_CRT_PRIMES];
    for (i, m) in moduli.iter().enumerate() {
        let c = ((q / m.value() as u128) % m.value() as u128) as u16;
        inverses[i] = m.inverse(c).ok_or(Error::InvalidCrtBase)?;
    }
    // weights[l] = m_0…m_{l-1}.
    let mut weights = [1u128; MAX_POSITIONS + 1];
    for (l, &m) in radices.iter().enumerate() {
        weights[l + 1] = weights[l] * m;
    }
    // max over r of (T_i(r) mod hi) - (T_i(r) mod lo), summed over residues.
    let window_max = |lo: u128, hi: u128| -> Result<u128, Error> {
        let mut total: u128 = 0;
        for m in moduli {
            let p = m.value();
            let mut best = 0u128;
            for r in 0..p {
                let t = term(scale, p, r);
                best = best.max(t % hi - t % lo);
            }
            total = total.checked_add(best).ok_or(Error::InvalidParameter)?;
        }
        Ok(total)
    };
    let top = len - 1;
    // Which positions are computed, with carries counted from position `from`.
    let computed_from = |from: usize| -> Result<[bool; MAX_POSITIONS], Error> {
        let mut computed = [false; MAX_POSITIONS];
        for l in (from..top).rev() {
            let smax = window_max(weights[from], weights[l + 1])? / weights[l];
            computed[l] = smax >= radices[l] && (l + 1 == top || computed[l + 1]);
        }
        Ok(computed)
    };
    let exact = computed_from(0)?;
    // The lowest position whose carry is kept: 0 when exact; above the
    // dropped ones otherwise (computed positions are contiguous up to the
    // top).
    let from = if dropped == 0 { 0 } else { (0..top).filter(|&l| exact[l]).nth(dropped).unwrap_or(top) };
    let computed = if dropped == 0 { exact } else { computed_from(from)? };
    let mut positions: heapless::Vec<Position, MAX_POSITIONS> = heapless::Vec::new();
    let mut cost: u64 = 0;
    for l in 0..len {
        let radix = radices[l];
        let mut pos = Position { radix, ..Position::EMPTY };
        if l == top || computed[l] {
            let n = if l == top && radix == 2 {
                Modulus::new(2)?
            } else {
                let smax = window_max(weights[from.min(l)], weights[l + 1])? / weights[l];
                sum_modulus_above(smax)?
            };
            if radix > MAX_PROJECTION_INPUT as u128 {
                return Err(Error::InvalidParameter);
            }
            let recip = radix_recip(radix as u64);
            pos.radix_recip = recip;
            let high = scale / weights[l];
            for (i, m) in moduli.iter().enumerate() {
                let p = m.value();
                if p > MAX_PROJECTION_INPUT {
                    return Err(Error::ProjectionInputTooLarge(p));
                }
                let h = (high % (p as u128 * radix)) as u32;
                pos.h[i] = h;
                let d = |j: u16| digit(*m, inverses[i], h, radix as u64, recip, j);
                if (0..p).all(|j| d(j) == 0) {
                    continue;
                }
                pos.contributors |= 1 << i;
                let affine = n.value() == p && {
                    let c = n.sub(d(1), d(0));
                    (0..p).all(|j| d(j) == n.add(n.mul(c, j), d(0)))
                };
                if affine {
                    pos.free |= 1 << i;
                } else {
                    cost += p as u64 - 1;
                }
            }
            if l != top || radix != 2 {
                cost += n.value() as u64 - 1;
            }
            pos.sum_modulus = Some(n);
        }
        let _ = positions.push(pos);
    }
    let error_window = if from == 0 {
        0
    } else {
        let e = window_max(1, weights[from])?;
        if e > scale / 2 {
            return Err(Error::InvalidParameter);
        }
        // ceil(e·Q/M)
        let num = e.checked_mul(q).ok_or(Error::InvalidParameter)?;
        num.div_ceil(scale)
    };
    Ok(SignGadget {
        base: base.clone(),
        accuracy: Accuracy::Exact,
        scale,
        floored,
        inverses,
        positions,
        sign_cost: cost,
        error_window,
    })
}

/// A digit order under search: odd primes of `M` in order, where the radix
/// groups end, and whether the last group is merged into the top radix.
#[derive(Clone, Copy)]
struct Order {
    primes: [u16; MAX_CRT_PRIMES],
    count: usize,
    /// Bit `t`: a radix ends after `primes[t]` (the last always does).
    ends: u32,
    merge_top: bool,
}

impl Order {
    fn radices(&self) -> heapless::Vec<u128, MAX_POSITIONS> {
        let mut out: heapless::Vec<u128, MAX_POSITIONS> = heapless::Vec::new();
        let mut cur: u128 = 1;
        for t in 0..self.count {
            cur *= self.primes[t] as u128;
            if t + 1 == self.count || self.ends >> t & 1 == 1 {
                let _ = out.push(cur);
                cur = 1;
            }
        }
        match out.last_mut() {
            Some(last) if self.merge_top => *last *= 2,
            _ => {
                let _ = out.push(2);
            }
        }
        out
    }

    fn cost(&self, base: &CrtBase) -> u64 {
        build(base, &self.radices(), 0).map(|g| g.sign_cost).unwrap_or(u64::MAX)
    }
}

/// Local search over digit orders (deterministic).
fn search(base: &CrtBase) -> Result<heapless::Vec<u128, MAX_POSITIONS>, Error> {
    let mut odd = [0u16; MAX_CRT_PRIMES];
    let mut n_odd = 0;
    for m in base.moduli() {
        if m.value() != 2 {
            odd[n_odd] = m.value();
            n_odd += 1;
        }
    }
    odd[..n_odd].sort_unstable();
    let mut best: Option<(u64, Order)> = None;
    // Floored: none, or the largest odd prime.
    let floor_choices: &[bool] = if n_odd > 0 { &[false, true] } else { &[false] };
    for &floor_largest in floor_choices {
        let count = if floor_largest { n_odd - 1 } else { n_odd };
        // Seeds: largest prime lowest, then ascending; with and without the
        // smallest merged into the top radix.
        let mut primes = [0u16; MAX_CRT_PRIMES];
        if count > 0 {
            primes[0] = odd[count - 1];
            primes[1..count].copy_from_slice(&odd[..count - 1]);
        }
        let all_ends = if count == 0 { 0 } else { (1u32 << count) - 1 };
        let plain = Order { primes, count, ends: all_ends, merge_top: false };
        let mut merged = plain;
        if count > 1 {
            // move the smallest (at index 1) to the end
            merged.primes[1..count].rotate_left(1);
        }
        merged.merge_top = count > 0;
        for seed in [plain, merged] {
            let (cost, order) = climb(base, seed);
            if cost != u64::MAX && best.is_none_or(|(c, _)| cost < c) {
                best = Some((cost, order));
            }
        }
    }
    best.map(|(_, o)| o.radices()).ok_or(Error::InvalidParameter)
}

/// Hill climbing from `start`: swaps, radix splits/joins, top merge.
fn climb(base: &CrtBase, start: Order) -> (u64, Order) {
    let mut cur = start;
    let mut cost = cur.cost(base);
    loop {
        let mut improved = false;
        let n = cur.count;
        let mut try_order = |cand: Order, cur: &mut Order, cost: &mut u64| {
            let c = cand.cost(base);
            if c < *cost {
                *cost = c;
                *cur = cand;
                improved = true;
            }
        };
        for i in 0..n {
            for j in i + 1..n {
                let mut cand = cur;
                cand.primes.swap(i, j);
                try_order(cand, &mut cur, &mut cost);
            }
        }
        for t in 0..n.saturating_sub(1) {
            let mut cand = cur;
            cand.ends ^= 1 << t;
            try_order(cand, &mut cur, &mut cost);
        }
        if n > 0 {
            let mut cand = cur;
            cand.merge_top = !cand.merge_top;
            try_order(cand, &mut cur, &mut cost);
        }
        if !improved {
            return (cost, cur);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{CostCounter, PlainWire, Plaintext};

    fn plain_bundle(base: &CrtBase, v: u128) -> Bundle<PlainWire> {
        let r = base.encode_unsigned(v).unwrap();
        Bundle::from_wires(base.moduli().iter().zip(r).map(|(m, r)| PlainWire::new(r, *m))).unwrap()
    }

    fn value(base: &CrtBase, x: &Bundle<PlainWire>) -> i128 {
        let r: heapless::Vec<u16, MAX_CRT_PRIMES> = x.wires().iter().map(|w| w.value()).collect();
        base.decode(&r).unwrap()
    }

    fn exhaustive(base: &CrtBase, g: &SignGadget) {
        let q = base.product();
        let mut pt = Plaintext;
        for v in 0..q {
            let x = plain_bundle(base, v);
            let signed = base.decode(&base.encode_unsigned(v).unwrap()).unwrap();
            let neg = u16::from(signed < 0);
            assert_eq!(g.sign_bit(&mut pt, &x).unwrap().value(), neg, "base {:?} x {signed}", base.moduli());
            assert_eq!(g.nonneg_bit(&mut pt, &x).unwrap().value(), 1 - neg);
            assert_eq!(value(base, &g.relu(&mut pt, &x).unwrap()), signed.max(0));
            // ±1 modulo Q (for Q = 2, +1 and -1 coincide).
            let act = value(base, &g.sign_activation(&mut pt, &x).unwrap());
            assert_eq!((act - if neg == 1 { -1 } else { 1 }).rem_euclid(q as i128), 0);
        }
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn exact_exhaustive_first_primes_up_to_6() {
        for k in 1..=6 {
            let base = CrtBase::first(k).unwrap();
            let g = SignGadget::new(&base, Accuracy::Exact).unwrap();
            exhaustive(&base, &g);
        }
    }

    /// `cargo test -p dash-core --release --lib -- --ignored exhaustive_k7_k8`
    #[test]
    #[ignore = "exhaustive over 10^7 values: run in release"]
    fn exact_exhaustive_k7_k8() {
        for k in [7, 8] {
            let base = CrtBase::first(k).unwrap();
            let g = SignGadget::new(&base, Accuracy::Exact).unwrap();
            let q = base.product();
            let neg_from = q - q / 2;
            let mut pt = Plaintext;
            for v in 0..q {
                let x = plain_bundle(&base, v);
                assert_eq!(g.sign_bit(&mut pt, &x).unwrap().value(), u16::from(v >= neg_from), "k {k} x {v}");
            }
        }
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn exact_exhaustive_other_bases() {
        for primes in [
            &[3u16][..],
            &[5],
            &[7],
            &[3, 5],
            &[5, 3, 2],
            &[3, 7, 11],
            &[13, 2, 7, 3],
            &[5, 7, 11, 13],
            &[3, 5, 7, 11, 13],
            &[11, 13, 17, 19],
            &[2, 31, 37],
            &[101, 103],
        ] {
            let base = CrtBase::new(primes).unwrap();
            let g = SignGadget::new(&base, Accuracy::Exact).unwrap();
            exhaustive(&base, &g);
        }
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn explicit_radices_with_a_floored_residue_are_exact() {
        // The sketch's order for k = 6: M = 2·3·5·7·11, 13 floored.
        let base = CrtBase::first(6).unwrap();
        let g = SignGadget::with_radices(&base, Accuracy::Exact, &[3, 5, 7, 11, 2]).unwrap();
        assert_eq!(g.floored_prime(), Some(13));
        exhaustive(&base, &g);
        let g = SignGadget::with_radices(&base, Accuracy::Exact, &[35, 11, 3, 2]).unwrap();
        exhaustive(&base, &g);
        // Two residues missing from M: rejected; odd top radix: rejected.
        assert_eq!(
            SignGadget::with_radices(&base, Accuracy::Exact, &[3, 5, 7, 2]).unwrap_err(),
            Error::InvalidParameter
        );
        assert_eq!(
            SignGadget::with_radices(&base, Accuracy::Exact, &[2, 3, 5, 7, 11]).unwrap_err(),
            Error::InvalidParameter
        );
        assert_eq!(SignGadget::with_radices(&base, Accuracy::Exact, &[]).unwrap_err(), Error::InvalidParameter);
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn cost_counter_matches_prediction_and_targets() {
        let expect = [(5, 105, 138), (6, 199, 246), (7, 341, 406), (8, 531, 616), (9, 787, 896), (10, 1143, 1282)];
        for k in 1..=10 {
            let base = CrtBase::first(k).unwrap();
            let g = SignGadget::new(&base, Accuracy::Exact).unwrap();
            let mut cc = CostCounter::new();
            let x = Bundle::from_wires(base.moduli().iter().map(|m| cc.input(*m))).unwrap();
            g.sign_bit(&mut cc, &x).unwrap();
            assert_eq!(cc.ciphertexts, g.sign_ciphertexts(), "k {k}");
            let mut cr = CostCounter::new();
            g.relu(&mut cr, &x).unwrap();
            assert_eq!(cr.ciphertexts, g.relu_ciphertexts(), "k {k}");
            let mut ca = CostCounter::new();
            g.sign_activation(&mut ca, &x).unwrap();
            assert_eq!(ca.ciphertexts, g.activation_ciphertexts(), "k {k}");
            for m in cr.moduli().unwrap() {
                assert!(crate::modulus::is_prime(*m));
                assert!(g.moduli().iter().any(|g| g.value() == *m));
            }
            if let Some(&(_, s, r)) = expect.iter().find(|e| e.0 == k) {
                assert_eq!((g.sign_ciphertexts(), g.relu_ciphertexts()), (s, r), "k {k}");
            }
        }
    }

    /// The multiply-shift quotient in `digit` equals the true one for every
    /// radix a projection can take and every `q < 2^20`, checked at both
    /// sides of every multiple of the radix (where an inexact reciprocal
    /// would show first) and at the top of the range.
    #[cfg_attr(miri, ignore = "about 10^7 cases: too slow under Miri")]
    #[test]
    fn radix_reciprocal_is_exact() {
        for m in 2..=MAX_PROJECTION_INPUT as u64 {
            let recip = radix_recip(m);
            let check = |q: u64| assert_eq!((q * recip as u64) >> 30, q / m, "q = {q}, m = {m}");
            let mut k = 0;
            while k * m < 1 << 20 {
                check(k * m);
                if k > 0 {
                    check(k * m - 1);
                }
                k += 1;
            }
            check((1 << 20) - 1);
        }
    }

    #[test]
    fn wrong_bundles_are_rejected() {
        let base = CrtBase::first(4).unwrap();
        let g = SignGadget::new(&base, Accuracy::Exact).unwrap();
        let mut pt = Plaintext;
        let short = Bundle::from_wires(plain_bundle(&base, 3).wires()[..3].iter().copied()).unwrap();
        assert_eq!(g.sign_bit(&mut pt, &short).unwrap_err(), Error::LengthMismatch);
        let other = CrtBase::new(&[2, 3, 5, 11]).unwrap();
        assert!(matches!(g.relu(&mut pt, &plain_bundle(&other, 3)), Err(Error::ModulusMismatch { .. })));
        let w = PlainWire::new(1, Modulus::new(3).unwrap());
        assert_eq!(g.lift_sign(&mut pt, &w).unwrap_err(), Error::NotABit(3));
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn approximate_errs_only_inside_its_window() {
        for k in 3..=6 {
            let base = CrtBase::first(k).unwrap();
            let exact = SignGadget::new(&base, Accuracy::Exact).unwrap();
            for dropped in 1..=3u8 {
                let Ok(g) = SignGadget::with_radices(&base, Accuracy::Approximate { dropped }, &exact.radices()) else {
                    continue;
                };
                assert!(g.sign_ciphertexts() <= exact.sign_ciphertexts());
                let w = g.error_window() as i128;
                let mut pt = Plaintext;
                for v in 0..base.product() {
                    let x = plain_bundle(&base, v);
                    let signed = base.decode(&base.encode_unsigned(v).unwrap()).unwrap();
                    let got = g.sign_bit(&mut pt, &x).unwrap().value();
                    if got != u16::from(signed < 0) {
                        assert!(
                            (0..w).contains(&signed) || (base.min_value()..base.min_value() + w).contains(&signed),
                            "k {k} dropped {dropped} x {signed} window {w}"
                        );
                    }
                }
            }
        }
    }
}
