//! Prime moduli and constant-time digit arithmetic.
//!
//! A [`Modulus`] can only be built from a prime (see `docs/SECURITY.md`:
//! with a composite modulus `m = a*b`, the multiple `a*Δ` has digits in a
//! small subgroup and an evaluator can brute-force a second label). Each
//! modulus carries the precomputed constants that make reduction
//! division-free, so no digit operation has a secret-dependent timing.

use crate::error::Error;

/// Digits in a label of modulus 2; the most any label has.
pub const MAX_DIGITS: usize = 128;
/// The largest modulus a wire may have: the largest prime below 2^12 whose
/// labels still hold 120 bits (3181^11 > 2^120; the primes 3187..4093 only
/// fit 10 digits, under 120 bits).
pub const MAX_MODULUS: u16 = 3181;
/// Bound on the input modulus of a projection gate (the garbler keeps one
/// table of this many entries on its stack while garbling a gate).
pub const MAX_PROJECTION_INPUT: u16 = 1024;

/// A prime modulus of a wire, with its label geometry and reduction
/// constants. Cheap to copy; compare with `==` (which compares the prime:
/// everything else is derived from it).
#[derive(Clone, Copy)]
pub struct Modulus {
    p: u16,
    digits: u8,
    /// Digits per packing chunk: the largest `c` with `p^c < 2^63`.
    chunk_digits: u8,
    /// `p^chunk_digits`.
    chunk_pow: u64,
    /// Left shift that sets the top bit of `chunk_pow`, and the reciprocal
    /// `floor((2^128 - 1) / (chunk_pow << shift)) - 2^64` for dividing by it.
    chunk_shift: u8,
    chunk_recip: u64,
    /// The top (most significant) chunk: its digit count, `p^top_len`, and
    /// the normalising shift and reciprocal for dividing by it.
    top_len: u8,
    top_pow: u64,
    top_shift: u8,
    top_recip: u64,
    /// Number of chunks (at most 3).
    chunk_count: u8,
    /// Barrett constant `floor(2^32 / p)` for reducing products `< 2^24`.
    barrett: u32,
    /// Barrett constant `floor(2^16 / p)` for 16-bit lanes (`p <= 251`).
    barrett16: u16,
    /// Multiplier and shift dividing any `u64` by `p` without a `div`
    /// instruction (the branch-free round-up method).
    div_magic: u64,
    div_shift: u8,
}

/// The largest modulus whose digit products `a*b + c` fit 16 bits, so digit
/// arithmetic runs in 16-bit vector lanes.
pub const MAX_SHORT_MODULUS: u16 = 251;

impl PartialEq for Modulus {
    #[inline]
    fn eq(&self, other: &Modulus) -> bool {
        self.p == other.p
    }
}

impl Eq for Modulus {}

impl core::hash::Hash for Modulus {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.p.hash(state);
    }
}

impl core::fmt::Debug for Modulus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Modulus({})", self.p)
    }
}

/// Whether `n` is prime (trial division; moduli are public).
pub const fn is_prime(n: u16) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u32;
    while d * d <= n as u32 {
        if (n as u32).is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

impl Modulus {
    /// The binary modulus.
    pub const TWO: Modulus = Modulus::known(2);

    /// A modulus the code names as a constant: evaluated at compile time
    /// only (in `const` items), where a non-prime fails the build rather
    /// than a run.
    pub(crate) const fn known(p: u16) -> Modulus {
        match Modulus::new(p) {
            Ok(m) => m,
            Err(_) => panic!("a constant modulus must be a supported prime"),
        }
    }

    /// The prime `p` as a modulus.
    ///
    /// Fails with [`Error::NotPrime`] for a composite (or 0, 1), and with
    /// [`Error::UnsupportedModulus`] above [`MAX_MODULUS`] or where a label
    /// would hold fewer than 120 bits (a few primes in 370..4093).
    ///
    /// ```
    /// use dash_core::{Modulus, Error};
    /// let m = Modulus::new(17)?;
    /// assert_eq!(m.digits(), 31);
    /// assert_eq!(Modulus::new(86), Err(Error::NotPrime(86)));
    /// # Ok::<(), Error>(())
    /// ```
    pub const fn new(p: u16) -> Result<Modulus, Error> {
        if p > MAX_MODULUS {
            return Err(Error::UnsupportedModulus(p));
        }
        if !is_prime(p) {
            return Err(Error::NotPrime(p));
        }
        // digits: the largest n with p^n <= 2^128, i.e. p^n - 1 <= u128::MAX.
        let mut digits = 0u8;
        let mut pow: u128 = 1; // p^digits, while it fits
        let mut saturated = false;
        loop {
            match pow.checked_mul(p as u128) {
                Some(next) => {
                    pow = next;
                    digits += 1;
                }
                None => {
                    // p^(digits+1) > 2^128 - 1; it may still equal 2^128 (p = 2).
                    if p == 2 {
                        digits += 1;
                        saturated = true;
                    }
                    break;
                }
            }
        }
        // Entropy: p^digits >= 2^120.
        if !saturated && pow < (1u128 << 120) {
            return Err(Error::UnsupportedModulus(p));
        }
        let mut chunk_digits = 0u8;
        let mut chunk_pow: u64 = 1;
        while chunk_pow < (1u64 << 63) / p as u64 {
            chunk_pow *= p as u64;
            chunk_digits += 1;
        }
        let chunk_count = (digits as usize).div_ceil(chunk_digits as usize) as u8;
        let top_len = digits - (chunk_count - 1) * chunk_digits;
        let mut top_pow: u64 = 1;
        let mut i = 0;
        while i < top_len {
            top_pow *= p as u64;
            i += 1;
        }
        let chunk_shift = chunk_pow.leading_zeros() as u8;
        let top_shift = top_pow.leading_zeros() as u8;
        Ok(Modulus {
            p,
            digits,
            chunk_digits,
            chunk_pow,
            chunk_shift,
            chunk_recip: reciprocal(chunk_pow << chunk_shift),
            top_len,
            top_pow,
            top_shift,
            top_recip: reciprocal(top_pow << top_shift),
            chunk_count,
            barrett: ((1u64 << 32) / p as u64) as u32,
            barrett16: ((1u32 << 16) / p as u32) as u16,
            div_magic: div_magic(p as u64).0,
            div_shift: div_magic(p as u64).1,
        })
    }

    /// The prime itself.
    #[inline]
    pub const fn value(self) -> u16 {
        self.p
    }

    /// Digits in a label: `floor(128 / log2 p)`.
    #[inline]
    pub const fn digits(self) -> usize {
        self.digits as usize
    }

    /// Bits of entropy of a uniformly random label, `digits * log2 p`,
    /// rounded down (at least 120 for every supported modulus).
    pub fn entropy_bits(self) -> u32 {
        // floor(digits * log2 p) without floats: the bit length of p^digits - 1.
        128 - self.max_packed().leading_zeros()
    }

    pub(crate) const fn chunk_digits(self) -> usize {
        self.chunk_digits as usize
    }

    pub(crate) const fn chunk_pow(self) -> u64 {
        self.chunk_pow
    }

    /// `(v / p^c, v mod p^c)` for the chunk size `c`, by the
    /// Möller–Granlund reciprocal method (two 2-by-1 word divisions, no
    /// `div` instruction). For public data: it branches on the remainder.
    #[inline(always)]
    pub(crate) fn div_rem_chunk(self, v: u128) -> (u128, u64) {
        let s = self.chunk_shift as u32;
        let d = self.chunk_pow << s;
        let shifted = v << s;
        let u2 = (v >> (128 - s)) as u64;
        let (q_hi, r) = div_2by1(u2, (shifted >> 64) as u64, d, self.chunk_recip);
        let (q_lo, r) = div_2by1(r, shifted as u64, d, self.chunk_recip);
        (((q_hi as u128) << 64) | q_lo as u128, r >> s)
    }

    /// [`Modulus::div_rem_chunk`] for `v < 2^64·p^c`, where the quotient
    /// fits one word: one 2-by-1 division instead of two. Every quotient
    /// after the first in [`Modulus::unpack`] qualifies: it is below
    /// `p^(n-c)`, and `p^(n-2c) < 2^64` as a label spans at most three
    /// chunks.
    #[inline(always)]
    fn div_rem_chunk_narrow(self, v: u128) -> (u128, u64) {
        debug_assert!(v >> 64 < self.chunk_pow as u128);
        let s = self.chunk_shift as u32;
        let d = self.chunk_pow << s;
        let shifted = v << s;
        let (q, r) = div_2by1((shifted >> 64) as u64, shifted as u64, d, self.chunk_recip);
        (q as u128, r >> s)
    }

    /// Writes the `len` base-p digits of `g < P = p^len` into `out` (least
    /// significant first), `P < 2^63` normalised by `shift` with reciprocal
    /// `recip`.
    ///
    /// A fraction `F` (units of 2^-64) that exceeds `g/P` by more than 0 and
    /// less than `2^64/P` units gives every digit exactly, most significant
    /// first: each multiplication `F·p` carries out the next digit in its
    /// high word and leaves the next fraction in its low word, and the
    /// excess, times at most `P`, never reaches a digit boundary. As
    /// `P < 2^63`, any excess in `(0, 2]` qualifies. With `g' = g·2^shift`,
    /// `D = P·2^shift` and `recip = floor((2^128 - 1)/D) - 2^64`, the estimate
    /// `g' + floor(g'·recip / 2^64)` is `floor(g·2^64/P)` or one less (the
    /// reciprocal `2^64 + recip` falls short of `2^128/D` by less than
    /// `1 + 1/D`, which costs less than `(g' + g'/D)/2^64 < 1` as `g' < D`),
    /// so adding 2 gives an excess in `(0, 2]`: one multiplication, no
    /// division and no correction step. The `fraction_digits_*` tests check
    /// it on every modulus at the edges where it could fail.
    #[inline(always)]
    fn fraction_digits(self, g: u64, shift: u8, recip: u64, out: &mut [u16]) {
        let p = self.p as u128;
        let mut f = self.wide_fraction(g, shift, recip);
        for d in out.iter_mut().rev() {
            let t = f as u128 * p;
            *d = (t >> 64) as u16;
            f = t as u64;
        }
    }

    /// The fraction `F` of `g/P` (see [`Modulus::fraction_digits`]).
    #[inline(always)]
    fn wide_fraction(self, g: u64, shift: u8, recip: u64) -> u64 {
        let scaled = g << shift;
        scaled.wrapping_add(((scaled as u128 * recip as u128) >> 64) as u64).wrapping_add(2)
    }

    /// The digits of the packed value `v` into `out` (the `n` live digits),
    /// or `InvalidLabelEncoding` if `v >= p^n`. For public data.
    pub(crate) fn unpack(self, v: u128, out: &mut [u16]) -> Result<(), crate::Error> {
        let c = self.chunk_digits as usize;
        let chunks = self.chunk_count as usize;
        let mut rest = v;
        for j in 0..chunks - 1 {
            let (q, g) = if j == 0 { self.div_rem_chunk(rest) } else { self.div_rem_chunk_narrow(rest) };
            rest = q;
            self.fraction_digits(g, self.chunk_shift, self.chunk_recip, &mut out[j * c..(j + 1) * c]);
        }
        self.top_digits(rest, &mut out[(chunks - 1) * c..])
    }

    /// The top chunk's digits from what is left after the full chunks
    /// (`out` starts at the top chunk), or `InvalidLabelEncoding` if `rest`
    /// does not fit it: the value is a label iff it does.
    #[inline(always)]
    fn top_digits(self, rest: u128, out: &mut [u16]) -> Result<(), crate::Error> {
        if rest >= self.top_pow as u128 {
            return Err(crate::Error::InvalidLabelEncoding);
        }
        match out.get_mut(..self.top_len as usize) {
            // A one-digit top chunk is its digit (rest < p): no division.
            Some([d]) => *d = rest as u16,
            Some(digits) => self.fraction_digits(rest as u64, self.top_shift, self.top_recip, digits),
            None => return Err(crate::Error::InvalidLabelEncoding),
        }
        Ok(())
    }

    /// [`Modulus::unpack`] of two values, their steps interleaved. An
    /// unpacking is mostly a chain of dependent multiplications per chunk,
    /// so one alone leaves the multiplier idle most of the time: here both
    /// values' divisions come first, then their four full chunks' chains
    /// run side by side. Each value gets its own result (the other is
    /// unpacked anyway); a failed value's digits are left partly written,
    /// for the caller to clear.
    pub(crate) fn unpack_pair(self, v: [u128; 2], a: &mut [u16], b: &mut [u16]) -> [Result<(), crate::Error>; 2] {
        let c = self.chunk_digits as usize;
        // Three chunks (every modulus above 2 but a few wide ones): the four
        // full chunks' digit chains run side by side.
        if self.chunk_count != 3 || a.len() < 2 * c || b.len() < 2 * c {
            return [self.unpack(v[0], a), self.unpack(v[1], b)];
        }
        let ((a0, a_rest), (b0, b_rest)) = (a.split_at_mut(c), b.split_at_mut(c));
        let ((a1, a_top), (b1, b_top)) = (a_rest.split_at_mut(c), b_rest.split_at_mut(c));
        let ((qa, ga0), (qb, gb0)) = (self.div_rem_chunk(v[0]), self.div_rem_chunk(v[1]));
        let ((ra, ga1), (rb, gb1)) = (self.div_rem_chunk_narrow(qa), self.div_rem_chunk_narrow(qb));
        self.fraction_digits_quad([ga0, ga1, gb0, gb1], [a0, a1, b0, b1]);
        [self.top_digits(ra, a_top), self.top_digits(rb, b_top)]
    }

    /// [`Modulus::fraction_digits`] of four full chunks, their steps
    /// interleaved: four independent multiplication chains keep the
    /// multiplier busy where one would leave it waiting.
    #[inline(always)]
    fn fraction_digits_quad(self, g: [u64; 4], out: [&mut [u16]; 4]) {
        let p = self.p as u128;
        let mut f = g.map(|g| self.wide_fraction(g, self.chunk_shift, self.chunk_recip));
        let [o0, o1, o2, o3] = out;
        let digits = o0.iter_mut().rev().zip(o1.iter_mut().rev()).zip(o2.iter_mut().rev().zip(o3.iter_mut().rev()));
        for ((d0, d1), (d2, d3)) in digits {
            for (d, f) in [d0, d1, d2, d3].into_iter().zip(f.iter_mut()) {
                let t = *f as u128 * p;
                *d = (t >> 64) as u16;
                *f = t as u64;
            }
        }
    }

    /// The largest packed value of a label, `p^digits - 1`.
    pub(crate) const fn max_packed(self) -> u128 {
        let mut pow: u128 = 1;
        let mut i = 0;
        while i < self.digits {
            pow = pow.wrapping_mul(self.p as u128);
            i += 1;
        }
        pow.wrapping_sub(1)
    }

    /// `x mod p` for `x < 2^24`, without division or branches.
    #[inline(always)]
    pub const fn reduce(self, x: u32) -> u16 {
        let q = ((x as u64 * self.barrett as u64) >> 32) as u32;
        let r = x - q * self.p as u32; // in [0, 2p)
        reduce_once(r, self.p as u32) as u16
    }

    /// `x mod p` for `x < 2^16` and `p <= MAX_SHORT_MODULUS`, in 16-bit
    /// arithmetic (vectorises to 16-bit lanes).
    #[inline(always)]
    pub(crate) const fn reduce16(self, x: u16) -> u16 {
        let q = ((x as u32 * self.barrett16 as u32) >> 16) as u16;
        reduce_once16(x.wrapping_sub(q.wrapping_mul(self.p)), self.p)
    }

    /// Largest modulus for which [`Modulus::reduce16_exact`] is exact.
    #[cfg(target_pointer_width = "64")]
    pub(crate) const MAX_EXACT16: u16 = 41;

    /// `x mod p` for `x < p^2 + p` (a digit product plus a digit) and
    /// `p <= MAX_EXACT16`, with no correction step: the rounded-up
    /// reciprocal `M = floor(2^16/p) + 1` overshoots `2^16/p` by
    /// `e = (M p - 2^16)/p`, so `floor(x M / 2^16)` is the true quotient as
    /// long as `x e / 2^16 < 1/p`, i.e. `x (M p - 2^16) < 2^16`; for every
    /// prime up to 41 and `x < p^2 + p` it holds (41: `1722·23 < 2^16`; the
    /// test `exact_reduction_below_p_squared` checks every `x`).
    #[cfg(target_pointer_width = "64")]
    #[inline(always)]
    pub(crate) const fn reduce16_exact(self, x: u16) -> u16 {
        // barrett16 + 1 fits 16 bits for p >= 3, so this is one 16-bit
        // high multiplication (`pmulhuw` in vector lanes).
        let q = ((x as u32 * self.barrett16.wrapping_add(1) as u32) >> 16) as u16;
        x.wrapping_sub(q.wrapping_mul(self.p))
    }

    /// `(n / p, n mod p)` for any `u64`, by multiplication (constant-time).
    #[inline(always)]
    pub const fn div_rem_u64(self, n: u64) -> (u64, u16) {
        let q = ((self.div_magic as u128 * n as u128) >> 64) as u64;
        let t = ((n - q) >> 1) + q;
        let quotient = t >> self.div_shift;
        (quotient, (n - quotient * self.p as u64) as u16)
    }

    /// `(a + b) mod p` for reduced `a`, `b`.
    #[inline(always)]
    pub const fn add(self, a: u16, b: u16) -> u16 {
        reduce_once(a as u32 + b as u32, self.p as u32) as u16
    }

    /// `(a - b) mod p` for reduced `a`, `b`.
    #[inline(always)]
    pub const fn sub(self, a: u16, b: u16) -> u16 {
        reduce_once(a as u32 + self.p as u32 - b as u32, self.p as u32) as u16
    }

    /// `-a mod p` for reduced `a`.
    #[inline(always)]
    pub const fn neg(self, a: u16) -> u16 {
        self.sub(0, a)
    }

    /// `(a * b) mod p` for reduced `a`, `b`.
    #[inline(always)]
    pub const fn mul(self, a: u16, b: u16) -> u16 {
        self.reduce(a as u32 * b as u32)
    }

    /// `(a * b + c) mod p` for reduced `a`, `b`, `c`.
    #[inline(always)]
    pub const fn mul_add(self, a: u16, b: u16, c: u16) -> u16 {
        self.reduce(a as u32 * b as u32 + c as u32)
    }

    /// The multiplicative inverse of `a` mod p (`None` for 0). Public values
    /// only: it loops a data-dependent number of times.
    pub fn inverse(self, a: u16) -> Option<u16> {
        let a = a % self.p;
        if a == 0 {
            return None;
        }
        // Fermat: a^(p-2).
        let mut result = 1u16;
        let mut base = a;
        let mut e = self.p as u32 - 2;
        while e > 0 {
            if e & 1 == 1 {
                result = self.mul(result, base);
            }
            base = self.mul(base, base);
            e >>= 1;
        }
        Some(result)
    }
}

/// `floor((2^128 - 1) / d) - 2^64` for a normalised `d` (top bit set).
const fn reciprocal(d: u64) -> u64 {
    (u128::MAX / d as u128 - (1u128 << 64)) as u64
}

/// Divides the two-word `(u1, u0)` (with `u1 < d`) by the normalised `d`
/// (top bit set) given `recip = floor((2^128 - 1) / d) - 2^64`.
#[inline(always)]
const fn div_2by1(u1: u64, u0: u64, d: u64, recip: u64) -> (u64, u64) {
    let q = (recip as u128) * (u1 as u128) + (((u1 as u128) << 64) | u0 as u128);
    let mut q1 = ((q >> 64) as u64).wrapping_add(1);
    let q0 = q as u64;
    let mut r = u0.wrapping_sub(q1.wrapping_mul(d));
    if r > q0 {
        q1 = q1.wrapping_sub(1);
        r = r.wrapping_add(d);
    }
    if r >= d {
        q1 += 1;
        r -= d;
    }
    (q1, r)
}

/// The multiplier and shift for dividing `u64`s by `d >= 2`: the quotient
/// is `(((n - h) >> 1) + h) >> shift` with `h = mulhi(n, magic)`.
const fn div_magic(d: u64) -> (u64, u8) {
    let floor_log2 = 63 - d.leading_zeros();
    if d.is_power_of_two() {
        return (0, (floor_log2 - 1) as u8);
    }
    let numerator: u128 = 1u128 << (64 + floor_log2);
    let proposed = (numerator / d as u128) as u64;
    let rem = (numerator % d as u128) as u64;
    let mut m = proposed.wrapping_add(proposed);
    let twice_rem = rem.wrapping_add(rem);
    if twice_rem >= d || twice_rem < rem {
        m = m.wrapping_add(1);
    }
    (m.wrapping_add(1), floor_log2 as u8)
}

/// `r mod p` for `r < 2p < 2^15`: the unsigned minimum of `r` and `r - p`
/// (below `r` exactly when it does not wrap). In 16-bit vector lanes that
/// is a saturating subtraction and a subtraction (`psubusw`, `psubw`), three
/// instructions where the masked form `r - p + (p & sign)` becomes a
/// five-instruction select on SSE2; in scalar code a compare and a
/// conditional move. Either way no branch: `docs/SECURITY.md` §9 says how
/// the constant-time check holds the compiler to that.
#[inline(always)]
pub(crate) const fn reduce_once16(r: u16, p: u16) -> u16 {
    let t = r.wrapping_sub(p);
    if t < r { t } else { r }
}

/// `r mod p` for `r < 2p`, by a mask rather than a branch.
#[inline(always)]
pub(crate) const fn reduce_once(r: u32, p: u32) -> u32 {
    let t = r.wrapping_sub(p);
    // t's top bit is set iff r < p; then add p back.
    let mask = 0u32.wrapping_sub(t >> 31);
    t.wrapping_add(p & mask)
}

/// The first `k` primes, as a convenience for CRT bases.
pub const SMALL_PRIMES: [u16; 16] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes_accepted_composites_rejected() {
        for n in 0u16..=600 {
            let r = Modulus::new(n);
            if is_prime(n) && n <= 256 {
                let m = r.expect("every prime up to 256 is supported");
                assert_eq!(m.value(), n);
            } else if is_prime(n) {
                assert!(r.is_ok() || r == Err(Error::UnsupportedModulus(n)));
            } else {
                assert_eq!(r, Err(Error::NotPrime(n)));
            }
        }
        assert_eq!(Modulus::new(4099), Err(Error::UnsupportedModulus(4099)));
        assert_eq!(Modulus::new(4093), Err(Error::UnsupportedModulus(4093)));
        assert_eq!(Modulus::new(373), Err(Error::UnsupportedModulus(373)));
        assert_eq!(Modulus::new(86), Err(Error::NotPrime(86)));
    }

    // Miri perturbs f64 `log2` by a few ULPs on purpose, so `128 / log2(2)`
    // floors to 127 there; the digit counts are checked natively.
    #[cfg_attr(miri, ignore = "Miri's deliberately imprecise f64 log2")]
    #[test]
    fn digits_and_entropy() {
        let expect = [(2u16, 128usize), (3, 80), (5, 55), (7, 45), (11, 37), (13, 34), (17, 31), (251, 16)];
        for (p, n) in expect {
            assert_eq!(Modulus::new(p).unwrap().digits(), n, "p = {p}");
        }
        for p in 2..=MAX_MODULUS {
            if let Ok(m) = Modulus::new(p) {
                assert!(m.entropy_bits() >= 120, "p = {p}");
                // p^digits <= 2^128 < p^(digits+1)
                let lp = (p as f64).log2();
                assert_eq!(m.digits(), (128.0 / lp).floor() as usize, "p = {p}");
            }
        }
    }

    #[test]
    fn arithmetic_matches_naive_exhaustively_for_small_primes() {
        for p in [2u16, 3, 5, 7, 11, 13, 17, 31] {
            let m = Modulus::new(p).unwrap();
            for a in 0..p {
                assert_eq!(m.neg(a), (p - a) % p);
                for b in 0..p {
                    assert_eq!(m.add(a, b), (a + b) % p);
                    assert_eq!(m.sub(a, b), (a + p - b) % p);
                    assert_eq!(m.mul(a, b) as u32, (a as u32 * b as u32) % p as u32);
                }
            }
        }
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn barrett_reduce_is_exact_on_its_whole_domain_edges() {
        for p in [2u16, 3, 251, 919, 3181] {
            let m = Modulus::new(p).unwrap();
            for x in (0u32..1 << 24).step_by(997).chain((1 << 24) - 5000..1 << 24) {
                assert_eq!(m.reduce(x) as u32, x % p as u32);
            }
        }
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn division_by_multiplication_is_exact() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for p in (2..=MAX_MODULUS).filter(|&p| is_prime(p)) {
            let Ok(m) = Modulus::new(p) else { continue };
            for n in [0u64, 1, p as u64 - 1, p as u64, u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1] {
                assert_eq!(m.div_rem_u64(n), (n / p as u64, (n % p as u64) as u16), "p {p} n {n}");
            }
            for _ in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                for n in [x, x >> 20, x >> 40] {
                    assert_eq!(m.div_rem_u64(n), (n / p as u64, (n % p as u64) as u16), "p {p} n {n}");
                }
            }
        }
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn reduce16_exhaustive_for_short_moduli() {
        for p in (2..=MAX_SHORT_MODULUS).filter(|&p| is_prime(p)) {
            let m = Modulus::new(p).unwrap();
            for x in 0..=u16::MAX {
                assert_eq!(m.reduce16(x), x % p);
            }
        }
    }

    /// Chunk values at the edges of every digit boundary: `k·p^j` and its
    /// neighbours, for every supported modulus and both chunk kinds.
    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn fraction_digits_exact_at_every_boundary() {
        for p in (3..=MAX_MODULUS).filter(|&p| is_prime(p)) {
            let Ok(m) = Modulus::new(p) else { continue };
            let kinds = [
                (m.chunk_digits as usize, m.chunk_pow, m.chunk_shift, m.chunk_recip),
                (m.top_len as usize, m.top_pow, m.top_shift, m.top_recip),
            ];
            for (len, pow, shift, recip) in kinds {
                let mut edges = [0u64; 512];
                let mut count = 0;
                let mut pj = 1u64;
                for _ in 0..len {
                    for k in [1u64, p as u64 - 1] {
                        let base = (k * pj) % pow;
                        for v in [base, base.wrapping_sub(1) % pow, (base + 1) % pow, pow - 1 - base] {
                            if count < edges.len() {
                                edges[count] = v;
                                count += 1;
                            }
                        }
                    }
                    pj = pj.saturating_mul(p as u64).min(pow);
                }
                for &g in &edges[..count] {
                    let mut got = [0u16; 64];
                    m.fraction_digits(g, shift, recip, &mut got[..len]);
                    let mut x = g;
                    for (i, &d) in got[..len].iter().enumerate() {
                        assert_eq!(d as u64, x % p as u64, "p {p} g {g} digit {i}");
                        x /= p as u64;
                    }
                }
            }
        }
    }

    /// `unpack_pair` must agree with two `unpack`s (digits and verdicts) on
    /// values built from chunk-boundary remainders, with valid and invalid
    /// top parts in either position.
    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn unpack_pair_equals_unpack_one_by_one() {
        for p in (3..=MAX_MODULUS).filter(|&p| is_prime(p)) {
            let Ok(m) = Modulus::new(p) else { continue };
            let (pow, n) = (m.chunk_pow as u128, m.digits());
            let edges = [0, 1, pow / 2, pow - 2, pow - 1, pow / p as u128, pow / p as u128 - 1];
            let top_pow = m.top_pow as u128;
            let tops = [0, 1, top_pow - 1, top_pow, top_pow + 1];
            let mut values = [0u128; 7 * 7 * 5];
            let mut count = 0;
            for &g0 in &edges {
                for &g1 in &edges {
                    for &t in &tops {
                        let v = match m.chunk_count {
                            3 => t.checked_mul(pow).and_then(|x| (x + g1).checked_mul(pow)).map(|x| x + g0),
                            _ => t.checked_mul(pow).map(|x| x + g0),
                        };
                        if let Some(v) = v {
                            values[count] = v;
                            count += 1;
                        }
                    }
                }
            }
            let values = &values[..count];
            for (i, &x) in values.iter().enumerate() {
                let y = values[(i * 7 + 3) % count];
                let (mut a, mut b) = ([0u16; 128], [0u16; 128]);
                let got = m.unpack_pair([x, y], &mut a[..n], &mut b[..n]);
                for (v, (out, r)) in [x, y].into_iter().zip([a, b].iter().zip(got)) {
                    let mut want = [0u16; 128];
                    let expect = m.unpack(v, &mut want[..n]);
                    assert_eq!(r, expect, "p {p} v {v}");
                    if expect.is_ok() {
                        assert_eq!(out[..n], want[..n], "p {p} v {v}");
                    }
                }
            }
        }
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn exact_reduction_below_p_squared() {
        for p in (3..=Modulus::MAX_EXACT16).filter(|&p| is_prime(p)) {
            let m = Modulus::new(p).unwrap();
            for x in 0..p * p + p {
                assert_eq!(m.reduce16_exact(x), x % p, "p {p} x {x}");
            }
        }
        // The bound is tight: 43 needs the correction step somewhere.
        let m = Modulus::new(43).unwrap();
        assert!((0..43 * 43 + 43).any(|x| m.reduce16_exact(x) != x % 43));
    }

    #[test]
    fn inverses() {
        for p in [2u16, 3, 17, 251, 3181] {
            let m = Modulus::new(p).unwrap();
            assert_eq!(m.inverse(0), None);
            for a in 1..p.min(300) {
                assert_eq!(m.mul(a, m.inverse(a).unwrap()), 1);
            }
        }
    }
}
