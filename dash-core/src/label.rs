//! Labels: vectors of digits mod a prime, the values that travel on wires.
//!
//! A label of modulus `p` has `n = floor(128 / log2 p)` digits (see
//! [`Modulus::digits`]); digit 0 is the *colour* used for point-and-permute.
//! The digits are stored in a fixed array of [`MAX_DIGITS`] so that no label
//! needs an allocation; digits past `n` are kept at zero, and every
//! arithmetic loop runs over the whole fixed array so its trip count never
//! depends on anything but the type.

use crate::block::Block;
use crate::error::Error;
use crate::modulus::{MAX_DIGITS, MAX_SHORT_MODULUS, Modulus, reduce_once16};
use rand_core::CryptoRng;
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroize;

/// A label: `n` digits in `Z_p`. Arithmetic is digit-wise and constant-time.
///
/// Invariant: the digits past `n` are zero (so zeroising and comparing the
/// live digits covers everything).
#[derive(Clone)]
pub struct Label {
    modulus: Modulus,
    digits: [u16; MAX_DIGITS],
}

impl Label {
    /// The all-zero label of a modulus.
    pub const fn zero(modulus: Modulus) -> Label {
        Label { modulus, digits: [0; MAX_DIGITS] }
    }

    /// A label from its `modulus.digits()` digits, each reduced mod p.
    pub fn from_digits(modulus: Modulus, digits: &[u16]) -> Result<Label, Error> {
        if digits.len() != modulus.digits() || digits.iter().any(|&d| d >= modulus.value()) {
            return Err(Error::InvalidDigits);
        }
        let mut label = Label::zero(modulus);
        label.digits[..digits.len()].copy_from_slice(digits);
        Ok(label)
    }

    /// A uniformly random label (each digit from 64 random bits, bias below
    /// `p / 2^64` per digit).
    pub fn random<R: CryptoRng + ?Sized>(modulus: Modulus, rng: &mut R) -> Label {
        let mut label = Label::zero(modulus);
        let p = modulus.value() as u128;
        for d in label.digits[..modulus.digits()].iter_mut() {
            *d = ((rng.next_u64() as u128 * p) >> 64) as u16;
        }
        label
    }

    /// The modulus of every digit.
    #[inline]
    pub fn modulus(&self) -> Modulus {
        self.modulus
    }

    /// The `modulus.digits()` digits.
    #[inline]
    pub fn digits(&self) -> &[u16] {
        &self.digits[..self.modulus.digits()]
    }

    /// Digit 0: the point-and-permute colour.
    #[inline]
    pub fn colour(&self) -> u16 {
        self.digits[0]
    }

    pub(crate) fn set_colour(&mut self, colour: u16) {
        self.digits[0] = colour;
    }

    fn check(&self, other: &Label) -> Result<(), Error> {
        if self.modulus == other.modulus {
            Ok(())
        } else {
            Err(Error::ModulusMismatch { left: self.modulus.value(), right: other.modulus.value() })
        }
    }

    /// `self + other`, digit-wise.
    pub fn add(&self, other: &Label) -> Result<Label, Error> {
        self.check(other)?;
        let mut out = self.clone();
        out.add_assign_unchecked(other);
        Ok(out)
    }

    /// `self - other`, digit-wise.
    pub fn sub(&self, other: &Label) -> Result<Label, Error> {
        self.check(other)?;
        let mut out = self.clone();
        out.sub_assign_unchecked(other);
        Ok(out)
    }

    /// `-self`, digit-wise.
    pub fn neg(&self) -> Label {
        let mut out = Label::zero(self.modulus);
        out.sub_assign_unchecked(self);
        out
    }

    /// `c * self` for a constant `c` (reduced mod p first). Constant-time in
    /// both the label and `c`, so the garbler may use it with secret `c`.
    pub fn cmul(&self, c: u16) -> Label {
        let m = self.modulus;
        let c = m.reduce(c as u32);
        let mut out = Label::zero(m);
        zip3(m, &mut out.digits, &self.digits, &self.digits, |d, _| m.mul(d, c));
        out
    }

    /// `self += other` where the moduli are known to agree.
    ///
    /// The digit loops below run over a prefix of the digits of one of three
    /// fixed lengths (32, 64 or 128 digits, the smallest that covers the
    /// modulus's `n`: a choice made on the public modulus only), so every loop
    /// has a constant trip count and compiles to straight vector code. The
    /// padding digits are zero in every operand and stay zero (`0 + 0`,
    /// `0 - 0`, `0·c + 0` all reduce to 0), so the invariant holds. Every
    /// reduction is a mask, never a branch.
    #[inline]
    pub(crate) fn add_assign_unchecked(&mut self, other: &Label) {
        let p = self.modulus.value();
        if p == 2 {
            // Binary digits: addition is XOR (128 lanes, the longest labels).
            zip2(self.modulus, &mut self.digits, &other.digits, |a, b| a ^ b);
        } else {
            zip2(self.modulus, &mut self.digits, &other.digits, |a, b| reduce_once16(a + b, p));
        }
    }

    /// `self -= other` where the moduli are known to agree.
    #[inline]
    pub(crate) fn sub_assign_unchecked(&mut self, other: &Label) {
        let p = self.modulus.value();
        zip2(self.modulus, &mut self.digits, &other.digits, |a, b| reduce_once16(a + p - b, p));
    }

    /// `self += c * other` where the moduli are known to agree; constant-time
    /// in `c` (the garbler multiplies by secret table entries).
    #[inline]
    pub(crate) fn add_scaled_unchecked(&mut self, other: &Label, c: u16) {
        let m = self.modulus;
        let c = m.reduce(c as u32);
        if m.value() == 2 {
            let mask = 0u16.wrapping_sub(c);
            zip2(m, &mut self.digits, &other.digits, |a, b| a ^ (b & mask));
        } else if m.value() <= MAX_SHORT_MODULUS {
            // a*c + b < 251*250 + 250 < 2^16: 16-bit lanes throughout.
            zip2(m, &mut self.digits, &other.digits, |a, b| m.reduce16(b * c + a));
        } else {
            zip2(m, &mut self.digits, &other.digits, |a, b| m.mul_add(b, c, a));
        }
    }

    /// `self = base + c * other` (all three of one modulus, known to agree);
    /// constant-time in `c`.
    #[inline]
    pub(crate) fn set_scaled_sum(&mut self, base: &Label, other: &Label, c: u16) {
        let m = self.modulus;
        let c = m.reduce(c as u32);
        if m.value() == 2 {
            // Binary digits: c·o + b is b XOR (o AND c), with c a mask.
            let mask = 0u16.wrapping_sub(c);
            zip3(m, &mut self.digits, &base.digits, &other.digits, |b, o| b ^ (o & mask));
        } else if m.value() <= MAX_SHORT_MODULUS {
            zip3(m, &mut self.digits, &base.digits, &other.digits, |b, o| m.reduce16(o * c + b));
        } else {
            zip3(m, &mut self.digits, &base.digits, &other.digits, |b, o| m.mul_add(o, c, b));
        }
    }

    /// The label packed injectively into 128 bits: `sum_i d_i p^i`.
    ///
    /// Constant-time: the loop bounds depend only on the modulus, and the
    /// packing is multiply-add only.
    pub fn to_block(&self) -> Block {
        let m = self.modulus;
        if let Some(v) = pack_fast(&self.digits, m.value(), &oct_powers(m.value())) {
            return Block(v);
        }
        let p = m.value() as u64;
        let c = m.chunk_digits();
        let n = m.digits();
        let d = &self.digits;
        // Up to three chunks of at most `c` digits (each packs below 2^64),
        // combined in u128 (exact: the total is below 2^128). The chunk
        // boundaries depend only on the modulus.
        let g0 = horner(&d[..c.min(n)], p) as u128;
        if n <= c {
            return Block(g0);
        }
        let chunk_pow = m.chunk_pow() as u128;
        let mid_end = (2 * c).min(n);
        let g1 = horner(&d[c..mid_end], p) as u128;
        let high = if mid_end < n { horner(&d[mid_end..n], p) as u128 * chunk_pow + g1 } else { g1 };
        Block(high.wrapping_mul(chunk_pow).wrapping_add(g0))
    }

    /// [`Label::to_block`] with the packing constants of `p` precomputed,
    /// for loops that pack many labels of one modulus (the rows of a gate):
    /// inlined there, so the constants stay in registers. Wide moduli take a
    /// dot product per chunk instead of a Horner chain (independent
    /// multiplications, so it runs at the multiplier's throughput).
    #[inline(always)]
    pub(crate) fn to_block_with(&self, powers: &Powers) -> Block {
        let m = self.modulus;
        debug_assert!(powers.modulus == m);
        if let Some(v) = pack_fast(&self.digits, m.value(), &powers.oct) {
            return Block(v);
        }
        // Here p > MAX_SHORT_MODULUS: chunks of at most MAX_WIDE_CHUNK digits.
        let c = m.chunk_digits().min(MAX_WIDE_CHUNK);
        let n = m.digits();
        // The two low chunks in one pass (two independent accumulators; the
        // digits past `n` are zero, so a short label just adds zeros), then
        // the top chunk.
        let (low, high) = self.digits.split_at(c);
        let (mut g0, mut g1) = (0u64, 0u64);
        for ((&a, &b), &w) in low.iter().zip(&high[..c]).zip(&powers.pow[..c]) {
            g0 = g0.wrapping_add(a as u64 * w);
            g1 = g1.wrapping_add(b as u64 * w);
        }
        let mut g2 = 0u64;
        if n > 2 * c {
            for (&a, &w) in self.digits[2 * c..n].iter().zip(&powers.pow) {
                g2 = g2.wrapping_add(a as u64 * w);
            }
        }
        let chunk_pow = m.chunk_pow() as u128;
        let high = g2 as u128 * chunk_pow + g1 as u128;
        Block(high.wrapping_mul(chunk_pow).wrapping_add(g0 as u128))
    }

    /// The label whose packing is `block` (the inverse of [`Label::to_block`]).
    ///
    /// Fails with [`Error::InvalidLabelEncoding`] if the block packs no label.
    /// Not constant-time: use it on values the evaluator holds (ciphertext
    /// rows it decrypted, labels it returns), never on garbler secrets.
    pub fn from_block(modulus: Modulus, block: Block) -> Result<Label, Error> {
        let mut label = Label::zero(modulus);
        label.set_from_block(modulus, block)?;
        Ok(label)
    }

    /// Digits from a hash output, constant-time (multiplications only).
    ///
    /// The high 64 bits, read as a fraction of 2^64, give the first
    /// `ceil(n/2)` digits (each step multiplies by `p` and carries out the next
    /// digit); the low 64 bits give the rest the same way. The two chains are
    /// independent, so they run side by side. A uniform hash gives a label
    /// with at least 118 bits of min-entropy for every supported modulus
    /// (`docs/SECURITY.md` §5 has the figures).
    pub fn from_hash(modulus: Modulus, block: Block) -> Label {
        let mut label = Label::zero(modulus);
        label.set_from_hash(modulus, block);
        label
    }

    /// [`Label::from_hash`] into existing storage (no copy of the label).
    #[inline]
    pub fn set_from_hash(&mut self, modulus: Modulus, block: Block) {
        self.reset(modulus);
        if modulus.value() == 2 {
            // The fraction chains below, for p = 2, read each half's bits
            // from the top down: digit i < 64 is bit 63 - i of the high
            // half, digit 64 + i bit 63 - i of the low half.
            let hi = ((block.0 >> 64) as u64).reverse_bits() as u128;
            let lo = (block.0 as u64).reverse_bits() as u128;
            unpack_bits(hi | lo << 64, &mut self.digits);
            return;
        }
        let p = modulus.value() as u128;
        let n = modulus.digits();
        let (first, second) = self.digits[..n].split_at_mut(n.div_ceil(2));
        let mut hi = (block.0 >> 64) as u64;
        let mut lo = block.0 as u64;
        for (a, b) in first.iter_mut().zip(second.iter_mut()) {
            let t = hi as u128 * p;
            *a = (t >> 64) as u16;
            hi = t as u64;
            let u = lo as u128 * p;
            *b = (u >> 64) as u16;
            lo = u as u64;
        }
        if first.len() > second.len() {
            first[first.len() - 1] = ((hi as u128 * p) >> 64) as u16;
        }
    }

    /// [`Label::from_block`] into existing storage (no copy of the label).
    #[inline]
    pub fn set_from_block(&mut self, modulus: Modulus, block: Block) -> Result<(), Error> {
        self.reset(modulus);
        if modulus.value() == 2 {
            // Every 128-bit value packs a binary label.
            unpack_bits(block.0, &mut self.digits);
            return Ok(());
        }
        let n = modulus.digits();
        if let Err(e) = modulus.unpack(block.0, &mut self.digits[..n]) {
            // Leave no half-written label behind.
            self.digits[..n].fill(0);
            return Err(e);
        }
        Ok(())
    }

    /// [`Label::set_from_block`] into two labels at once (`blocks[0]` into
    /// `self`, `blocks[1]` into `other`), their unpackings interleaved for
    /// speed. Either failure leaves that label zeroed; the first is returned.
    pub(crate) fn set_from_block_pair(
        &mut self,
        other: &mut Label,
        modulus: Modulus,
        blocks: [Block; 2],
    ) -> Result<(), Error> {
        if modulus.value() == 2 {
            self.set_from_block(modulus, blocks[0])?;
            return other.set_from_block(modulus, blocks[1]);
        }
        self.reset(modulus);
        other.reset(modulus);
        let n = modulus.digits();
        let results = modulus.unpack_pair(blocks.map(|b| b.0), &mut self.digits[..n], &mut other.digits[..n]);
        let mut status = Ok(());
        for (label, r) in [self, other].into_iter().zip(results) {
            if let Err(e) = r {
                label.digits[..n].fill(0);
                status = status.and(Err(e));
            }
        }
        status
    }

    /// Overwrites the label with `digits` (its modulus's `n` digits),
    /// without checking them: for callers that hold digits of labels they
    /// built themselves (lane buffers). Constant-time in the digits; a digit
    /// at or above `p` gives a wrong label, never a panic.
    #[inline]
    pub(crate) fn load_digits_unchecked(&mut self, modulus: Modulus, digits: &[u16]) {
        self.reset(modulus);
        let n = modulus.digits().min(digits.len());
        self.digits[..n].copy_from_slice(&digits[..n]);
    }

    /// Makes this storage hold a label of `modulus`, clearing stale digits
    /// only when the modulus changes (the live digits are overwritten).
    #[inline]
    fn reset(&mut self, modulus: Modulus) {
        if self.modulus != modulus {
            self.digits = [0; MAX_DIGITS];
            self.modulus = modulus;
        }
    }
}

/// `a[i] = f(a[i], b[i])` over the shortest of 32, 64 or 128 digits that
/// covers the modulus's live digits (see [`Label::add_assign_unchecked`]).
#[inline(always)]
fn zip2(m: Modulus, a: &mut [u16; MAX_DIGITS], b: &[u16; MAX_DIGITS], f: impl Fn(u16, u16) -> u16) {
    #[inline(always)]
    fn run<const N: usize>(a: &mut [u16; MAX_DIGITS], b: &[u16; MAX_DIGITS], f: impl Fn(u16, u16) -> u16) {
        if let (Some(a), Some(b)) = (a.first_chunk_mut::<N>(), b.first_chunk::<N>()) {
            for (a, &b) in a.iter_mut().zip(b) {
                *a = f(*a, b);
            }
        }
    }
    match m.digits() {
        0..=32 => run::<32>(a, b, f),
        33..=64 => run::<64>(a, b, f),
        _ => run::<MAX_DIGITS>(a, b, f),
    }
}

/// `out[i] = f(b[i], c[i])`, over the same prefix as [`zip2`].
#[inline(always)]
fn zip3(
    m: Modulus,
    out: &mut [u16; MAX_DIGITS],
    b: &[u16; MAX_DIGITS],
    c: &[u16; MAX_DIGITS],
    f: impl Fn(u16, u16) -> u16,
) {
    #[inline(always)]
    fn run<const N: usize>(
        out: &mut [u16; MAX_DIGITS],
        b: &[u16; MAX_DIGITS],
        c: &[u16; MAX_DIGITS],
        f: impl Fn(u16, u16) -> u16,
    ) {
        if let (Some(out), Some(b), Some(c)) = (out.first_chunk_mut::<N>(), b.first_chunk::<N>(), c.first_chunk::<N>())
        {
            for (o, (&b, &c)) in out.iter_mut().zip(b.iter().zip(c)) {
                *o = f(b, c);
            }
        }
    }
    match m.digits() {
        0..=32 => run::<32>(out, b, c, f),
        33..=64 => run::<64>(out, b, c, f),
        _ => run::<MAX_DIGITS>(out, b, c, f),
    }
}

/// Digits of a [`ShortDigits`] value.
#[cfg(target_pointer_width = "64")]
pub(crate) const SHORT_DIGITS: usize = 32;

/// The digits of a label of a short modulus with at most 32 digits (every
/// prime from 17 to [`MAX_SHORT_MODULUS`]), held by value: the garbler's
/// row loops keep their labels in these (64 bytes, four vector registers)
/// rather than in 312-byte [`Label`]s. Digits past the modulus's are zero.
#[cfg(target_pointer_width = "64")]
pub(crate) type ShortDigits = [u16; SHORT_DIGITS];

#[cfg(target_pointer_width = "64")]
impl Label {
    /// The digits as [`ShortDigits`], if the modulus is short enough.
    #[inline(always)]
    pub(crate) fn short_digits(&self) -> Option<ShortDigits> {
        let m = self.modulus;
        let short = self.digits.first_chunk::<SHORT_DIGITS>()?;
        (m.digits() <= SHORT_DIGITS && m.value() <= MAX_SHORT_MODULUS).then_some(*short)
    }
}

/// `a += b` digit-wise mod `p` on [`ShortDigits`] (as
/// [`Label::add_assign_unchecked`]: a mask, never a branch).
#[cfg(target_pointer_width = "64")]
#[inline(always)]
pub(crate) fn short_add(a: &mut ShortDigits, b: &ShortDigits, p: u16) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x = reduce_once16(*x + y, p);
    }
}

/// `base + c·other` digit-wise mod `m` on [`ShortDigits`], `c < m`
/// (as [`Label::set_scaled_sum`]; constant-time in `c`); `EXACT` reduces
/// without a correction step, for `m <= Modulus::MAX_EXACT16` only.
#[cfg(target_pointer_width = "64")]
#[inline(always)]
pub(crate) fn short_scaled_sum<const EXACT: bool>(
    base: &ShortDigits,
    other: &ShortDigits,
    c: u16,
    m: Modulus,
) -> ShortDigits {
    let mut out = [0; SHORT_DIGITS];
    for ((o, &b), &x) in out.iter_mut().zip(base).zip(other) {
        // EXACT (the caller's choice, by the public modulus) only for
        // p <= Modulus::MAX_EXACT16.
        *o = if EXACT { m.reduce16_exact(x * c + b) } else { m.reduce16(x * c + b) };
    }
    out
}

/// The packing of [`ShortDigits`] of modulus `p` (as [`Label::to_block`]),
/// given `oct = oct_powers(p)`.
#[cfg(target_pointer_width = "64")]
#[inline(always)]
pub(crate) fn short_pack(digits: &ShortDigits, p: u16, oct: &OctPowers) -> Block {
    // Short digits exist only for p <= MAX_SHORT_MODULUS, which pack_fast
    // always packs.
    Block(pack_fast(digits, p, oct).unwrap_or(0))
}

/// Most digits in a packing chunk of a modulus above [`MAX_SHORT_MODULUS`]
/// (`floor(64 / log2 p)` is 7 for 257).
const MAX_WIDE_CHUNK: usize = 8;

/// The powers `p^0 .. p^(c-1)` of a modulus, `c` its chunk size: what
/// [`Label::to_block_with`] multiplies digits by. Only moduli above
/// [`MAX_SHORT_MODULUS`] pack by powers (the others by bits or quads), so
/// only they compute them; for the rest this is free.
pub(crate) struct Powers {
    modulus: Modulus,
    pow: [u64; MAX_WIDE_CHUNK],
    /// [`oct_powers`] of the modulus.
    oct: OctPowers,
}

/// `p^8` and `p^16` (wrapping): what the SSE2 packing multiplies its groups
/// of eight digits by (exact for the moduli it packs, `p <= 181`).
#[derive(Clone, Copy)]
#[cfg_attr(not(all(target_arch = "x86_64", target_feature = "sse2")), allow(dead_code))]
pub(crate) struct OctPowers {
    p8: u64,
    p16: u128,
}

#[inline(always)]
pub(crate) const fn oct_powers(p: u16) -> OctPowers {
    let p8 = (p as u64).wrapping_pow(8);
    OctPowers { p8, p16: p8 as u128 * p8 as u128 }
}

impl Powers {
    pub(crate) fn new(modulus: Modulus) -> Powers {
        let mut pow = [0u64; MAX_WIDE_CHUNK];
        if modulus.value() > MAX_SHORT_MODULUS {
            let mut v = 1u64;
            for w in pow.iter_mut().take(modulus.chunk_digits()) {
                *w = v;
                v = v.wrapping_mul(modulus.value() as u64);
            }
        }
        Powers { modulus, pow, oct: oct_powers(modulus.value()) }
    }

    /// The modulus these are the powers of.
    pub(crate) fn modulus(&self) -> Modulus {
        self.modulus
    }
}

/// Moves bit 0 of each 16-bit lane of `w` (lanes holding 0 or 1) to bits
/// 48..52: the partial products of the multiplication sit at distinct
/// positions, so nothing carries into the four wanted bits.
const GATHER4: u64 = (1 << 48) | (1 << 33) | (1 << 18) | (1 << 3);
/// Spreads bits 0..4 to bit 0 of four 16-bit lanes (again carry-free: the
/// sixteen partial products land on distinct bits).
const SCATTER4: u64 = 1 | (1 << 15) | (1 << 30) | (1 << 45);

/// The packing of a binary label, `sum_i d_i 2^i`: a bit gather, sixteen
/// digits per multiplication. The four 4-lane words of a group are merged
/// as `w0 | w1 << 4 | w2 << 8 | w3 << 12`, so digit `4t + j` sits at bit
/// `16j + 4t`; times [`GATHER4`] it lands on bit `48 + 4t + j`. Every partial
/// product of that multiplication has its own bit position (no carries),
/// and the ones outside bits 48..64 are shifted or wrapped away.
/// Constant-time (multiplications, shifts and ORs only).
#[inline]
fn pack_bits<const N: usize>(digits: &[u16; N]) -> u128 {
    let mut v = 0u128;
    for (g, group) in digits.as_chunks::<16>().0.iter().enumerate() {
        let mut x = 0u64;
        for (t, q) in group.as_chunks::<4>().0.iter().enumerate() {
            let w = q[0] as u64 | (q[1] as u64) << 16 | (q[2] as u64) << 32 | (q[3] as u64) << 48;
            x |= w << (4 * t);
        }
        v |= ((x.wrapping_mul(GATHER4) >> 48) as u128) << (16 * g);
    }
    v
}

/// The packing `sum_i d_i p^i` for `3 <= p <= 255`, a quad
/// `d0 + d1 p + d2 p^2 + d3 p^3 < 2^32` at a time from one 64-bit word of four
/// 16-bit lanes, without a carry between lanes:
///
/// - `p <= 15`: the word times `p^3 + p^2·2^16 + p·2^32 + 2^48` holds the quad
///   in its top lane; every lower lane of the product stays below `p^4 <= 2^16`;
/// - `p <= 255`: the word times `p + 2^16` holds the pairs `d0 + d1 p` and
///   `d2 + d3 p` in lanes 1 and 3 (every lane below `p^2 < 2^16`), and the
///   quad is `pair0 + pair1·p^2`.
///
/// The `NQ` quads that hold the live digits are combined by Horner in up to
/// three independent 64-bit chunks of at most `H` quads (`Q^H < 2^64` for
/// `Q = p^4`; the caller picks `H` so that three chunks cover the digits),
/// then in 128 bits. Only the live quads are computed: a top chunk that
/// would hold nothing but padding costs nothing. Multiplications, shifts
/// and masks only: constant-time.
#[inline(always)]
fn pack_quads<const SMALL: bool, const H: usize, const NQ: usize, const N: usize>(digits: &[u16; N], p: u16) -> u128 {
    let p = p as u64;
    let q = p * p * p * p;
    let mut chunk_pow = 1u64;
    for _ in 0..H {
        chunk_pow = chunk_pow.wrapping_mul(q);
    }
    let spread = if SMALL { (p * p * p) | ((p * p) << 16) | (p << 32) | (1 << 48) } else { p | (1 << 16) };
    let p2 = p * p;
    let quads = digits.as_chunks::<4>().0;
    let quad = |j: usize| match quads.get(j) {
        Some(d) => {
            let w = d[0] as u64 | (d[1] as u64) << 16 | (d[2] as u64) << 32 | (d[3] as u64) << 48;
            let r = w.wrapping_mul(spread);
            if SMALL { r >> 48 } else { ((r >> 16) & 0xffff) + (r >> 48) * p2 }
        }
        None => 0,
    };
    let mut acc = [0u64; 3];
    for i in (0..H).rev() {
        for (k, a) in acc.iter_mut().enumerate() {
            // Constant bounds: the compiler drops the quads past NQ.
            if k * H + i < NQ {
                *a = *a * q + quad(k * H + i);
            }
        }
    }
    let chunk_pow = chunk_pow as u128;
    let low = acc[1] as u128 * chunk_pow + acc[0] as u128;
    if NQ <= 2 * H {
        return low;
    }
    (acc[2] as u128 * chunk_pow + acc[1] as u128).wrapping_mul(chunk_pow).wrapping_add(acc[0] as u128)
}

/// Packs with the fastest exact method for the modulus: bits for p = 2,
/// SSE2 lanes for 17..181 on x86-64, quads up to 251, `None` above (the
/// caller's chunked dot product). `digits` holds at least the live digits
/// (`N` is 128 for a `Label`, 32 for `ShortDigits`).
#[inline]
fn pack_fast<const N: usize>(digits: &[u16; N], p: u16, oct: &OctPowers) -> Option<u128> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if (sse2::MIN_MODULUS..=sse2::MAX_MODULUS).contains(&p) {
        return Some(sse2::pack_octs(digits, p, oct));
    }
    let _ = oct;
    pack_short_portable(digits, p)
}

/// [`pack_fast`] without vector instructions: what targets without SSE2 run
/// (and what the tests hold the SSE2 path to).
#[inline(always)]
fn pack_short_portable<const N: usize>(digits: &[u16; N], p: u16) -> Option<u128> {
    // H = the most quads below 2^64 (three chunks of H quads then cover the
    // `floor(128 / log2 p)` digits): p^40 for 3, p^24 for 5, p^20 for 7,
    // p^16 for 11 and 13, p^12 up to 37, p^8 up to 251. NQ = the quads that
    // hold the live digits, `ceil(digits / 4)` (checked for every modulus
    // by the `quad_counts_cover_the_digits` test).
    Some(match p {
        2 => pack_bits(digits),
        3 => pack_quads::<true, 10, 20, N>(digits, p),
        5 => pack_quads::<true, 6, 14, N>(digits, p),
        7 => pack_quads::<true, 5, 12, N>(digits, p),
        11 => pack_quads::<true, 4, 10, N>(digits, p),
        13 => pack_quads::<true, 4, 9, N>(digits, p),
        17 | 19 => pack_quads::<false, 3, 8, N>(digits, p),
        23..=31 => pack_quads::<false, 3, 7, N>(digits, p),
        37 => pack_quads::<false, 3, 6, N>(digits, p),
        41..=67 => pack_quads::<false, 2, 6, N>(digits, p),
        71..=181 => pack_quads::<false, 2, 5, N>(digits, p),
        191..=MAX_SHORT_MODULUS => pack_quads::<false, 2, 4, N>(digits, p),
        _ => return None,
    })
}

/// The packing in SSE2 registers (baseline on x86-64) for the moduli whose
/// labels have at most 32 digits and whose digit pairs fit 15 bits, through
/// `safe_arch`'s safe wrappers (this crate has no `unsafe`).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    use super::OctPowers;
    use safe_arch::{
        add_i64_m128i, bitand_m128i, get_i64_from_m128i_s, m128i, mul_i16_horizontal_add_m128i,
        mul_widen_u32_odd_m128i, pack_i32_to_i16_m128i, set_splat_i32_m128i, set_splat_i64_m128i, shr_imm_u64_m128i,
        unpack_high_i64_m128i,
    };

    /// 17 has 31 digits, the first prime with at most 32.
    pub(super) const MIN_MODULUS: u16 = 17;
    /// `p^2 < 2^15`: a pair `d0 + d1 p` is a positive `i16`.
    pub(super) const MAX_MODULUS: u16 = 181;

    /// `sum_i d_i p^i` over the first 32 digits, in four steps that each
    /// halve the number of terms: pairs `d0 + d1 p` and quads
    /// `pair0 + pair1 p^2` by `pmaddwd` (16-bit products summed into 32-bit
    /// lanes; every pair is below `p^2 < 2^15`, so the saturating repack of
    /// pairs to 16 bits is exact), octs `quad0 + quad1 p^4 < p^8 < 2^64` by
    /// `pmuludq`, then the four octs in 128-bit scalar arithmetic (wrapping;
    /// exact because the sum is below `2^128`). Multiplications, adds and
    /// shuffles only: constant-time.
    #[inline(always)]
    pub(super) fn pack_octs<const N: usize>(digits: &[u16; N], p: u16, oct: &OctPowers) -> u128 {
        let p = p as u64;
        const { assert!(N >= 32) };
        // The first 32 digits as four 8-lane groups (a plain load, or no
        // move at all where the digits already sit in registers).
        let groups: [[u16; 8]; 4] = match digits.as_chunks::<8>().0.first_chunk::<4>() {
            Some(g) => *g,
            None => [[0; 8]; 4],
        };
        let lane = |i: usize| m128i::from(groups[i / 8]);
        let by_p = set_splat_i32_m128i(((p as i32) << 16) | 1);
        let by_p2 = set_splat_i32_m128i(((p * p) as i32) << 16 | 1);
        let pairs = |i: usize| mul_i16_horizontal_add_m128i(lane(i), by_p);
        let q0 = mul_i16_horizontal_add_m128i(pack_i32_to_i16_m128i(pairs(0), pairs(8)), by_p2);
        let q1 = mul_i16_horizontal_add_m128i(pack_i32_to_i16_m128i(pairs(16), pairs(24)), by_p2);
        // p^4 < 2^31 in every 32-bit lane: pmuludq reads the even ones.
        let by_p4 = set_splat_i32_m128i((p * p * p * p) as i32);
        let low32 = set_splat_i64_m128i(0xffff_ffff);
        let octs = |q: m128i| {
            add_i64_m128i(bitand_m128i(q, low32), mul_widen_u32_odd_m128i(shr_imm_u64_m128i::<32>(q), by_p4))
        };
        let (o01, o23) = (octs(q0), octs(q1));
        let o = [o01, unpack_high_i64_m128i(o01, o01), o23, unpack_high_i64_m128i(o23, o23)]
            .map(|v| get_i64_from_m128i_s(v) as u64);
        // digits 0..16 in 128 bits; digits 16..n (n <= 31, so fewer than 16
        // of them: below p^15 < 2^64 for p >= 17) in one word.
        let low = o[1] as u128 * oct.p8 as u128 + o[0] as u128;
        let high = o[3].wrapping_mul(oct.p8).wrapping_add(o[2]);
        low.wrapping_add((high as u128).wrapping_mul(oct.p16))
    }
}

/// The quad count [`pack_fast`] uses for a short modulus (tests only).
#[cfg(test)]
fn pack_fast_quads(p: u16) -> usize {
    match p {
        3 => 20,
        5 => 14,
        7 => 12,
        11 => 10,
        13 => 9,
        17 | 19 => 8,
        23..=31 => 7,
        37 => 6,
        41..=67 => 6,
        71..=181 => 5,
        _ => 4,
    }
}

/// The digits of a binary label from its packing (bit `i` is digit `i`).
#[inline]
fn unpack_bits(v: u128, digits: &mut [u16; MAX_DIGITS]) {
    for (i, q) in digits.as_chunks_mut::<4>().0.iter_mut().enumerate() {
        let s = ((v >> (4 * i)) as u64 & 0xf).wrapping_mul(SCATTER4);
        for (j, d) in q.iter_mut().enumerate() {
            *d = (s >> (16 * j)) as u16 & 1;
        }
    }
}

/// `sum_i digits[i] p^i` for a chunk whose value is below 2^64. Horner four
/// digits at a time (p^4 < 2^48): the dependency chain is a quarter as long
/// and the inner products are independent.
#[inline(always)]
fn horner(digits: &[u16], p: u64) -> u64 {
    let (p2, p3) = (p * p, p * p * p);
    let p4 = p2 * p2;
    let mut g: u64 = 0;
    let mut i = digits.len();
    while i >= 4 {
        i -= 4;
        let q: &[u16; 4] = match digits[i..].first_chunk() {
            Some(q) => q,
            None => break,
        };
        let inner = q[3] as u64 * p3 + q[2] as u64 * p2 + q[1] as u64 * p + q[0] as u64;
        g = g * p4 + inner;
    }
    while i > 0 {
        i -= 1;
        g = g * p + digits[i] as u64;
    }
    g
}

impl ConstantTimeEq for Label {
    fn ct_eq(&self, other: &Label) -> Choice {
        let same_modulus = Choice::from((self.modulus == other.modulus) as u8);
        let n = self.modulus.digits();
        let mut acc = 0u16;
        for (a, b) in self.digits[..n].iter().zip(other.digits[..n].iter()) {
            acc |= a ^ b;
        }
        same_modulus & acc.ct_eq(&0)
    }
}

impl Zeroize for Label {
    /// Clears the live digits; the ones past `n` are zero by the type's
    /// invariant (every constructor and operation writes only `[..n]`, and
    /// a change of modulus clears the whole array).
    fn zeroize(&mut self) {
        let n = self.modulus.digits();
        self.digits[..n].zeroize();
    }
}

/// Evaluator-side labels print their modulus and packing; garbler secrets are
/// wrapped in types that print nothing.
impl core::fmt::Debug for Label {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Label(p={}, {:032x})", self.modulus.value(), self.to_block().0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    fn primes() -> impl Iterator<Item = Modulus> {
        (2..=crate::MAX_MODULUS).filter_map(|p| Modulus::new(p).ok())
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn pack_roundtrips_and_is_bounded_for_every_modulus() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for m in primes() {
            for _ in 0..20 {
                let l = Label::random(m, &mut rng);
                let b = l.to_block();
                assert!(b.0 <= m.max_packed());
                let back = Label::from_block(m, b).unwrap();
                assert!(bool::from(back.ct_eq(&l)), "p = {}", m.value());
            }
            // the largest label packs to the largest value
            let top = Label::from_digits(m, &[m.value() - 1; MAX_DIGITS][..m.digits()]).unwrap();
            assert_eq!(top.to_block().0, m.max_packed());
            if m.max_packed() != u128::MAX {
                assert_eq!(Label::from_block(m, Block(m.max_packed() + 1)).unwrap_err(), Error::InvalidLabelEncoding);
            }
        }
    }

    #[test]
    fn quad_counts_cover_the_digits() {
        for m in primes().filter(|m| (3..=MAX_SHORT_MODULUS).contains(&m.value())) {
            assert_eq!(pack_fast_quads(m.value()), m.digits().div_ceil(4), "p = {}", m.value());
        }
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn unpack_inverts_pack_on_random_and_edge_integers() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        for m in primes() {
            let max = m.max_packed();
            let mut values = [0u128, 1, max, max - 1, max / 2, (m.chunk_pow() as u128) - 1, m.chunk_pow() as u128];
            for v in values.iter_mut().skip(5) {
                *v = (*v).min(max);
            }
            for v in values.into_iter().chain((0..200).map(|_| {
                let r = (rng.next_u64() as u128) << 64 | rng.next_u64() as u128;
                if max == u128::MAX { r } else { r % (max + 1) }
            })) {
                let l = Label::from_block(m, Block(v)).unwrap();
                assert!(l.digits().iter().all(|&d| d < m.value()));
                assert_eq!(l.to_block().0, v, "p = {}", m.value());
            }
        }
    }

    /// The SSE2 packing (where the target has it) equals the portable one,
    /// on random labels and on the all-zero and all-`p - 1` labels.
    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn vector_packing_equals_portable_packing() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        for m in primes().filter(|m| (3..=MAX_SHORT_MODULUS).contains(&m.value())) {
            let p = m.value();
            let top = Label::from_digits(m, &[p - 1; MAX_DIGITS][..m.digits()]).unwrap();
            for l in [Label::zero(m), top].into_iter().chain((0..50).map(|_| Label::random(m, &mut rng))) {
                let portable = pack_short_portable(&l.digits, p);
                assert_eq!(pack_fast(&l.digits, p, &oct_powers(p)), portable, "p = {p}");
                assert_eq!(Some(l.to_block_with(&Powers::new(m)).0), portable, "p = {p}");
            }
        }
    }

    /// Decoding two blocks at once equals decoding them one by one, errors
    /// included (a failed label is left zeroed, the other decoded).
    #[test]
    fn block_pair_decodes_like_one_by_one() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        // Under Miri, one modulus of each packing kind (bits, quads, SSE2,
        // wide).
        for m in primes().filter(|m| !cfg!(miri) || [2, 3, 17, 251, 3181].contains(&m.value())) {
            let max = m.max_packed();
            let any = Block((rng.next_u64() as u128) << 64 | rng.next_u64() as u128);
            let label = Label::random(m, &mut rng).to_block();
            let blocks = [label, any, Block(max), Block(max.wrapping_add(1)), Block(u128::MAX), Block(0)];
            for &x in &blocks {
                for &y in &blocks {
                    let (mut a, mut b) = (Label::random(m, &mut rng), Label::zero(m));
                    let got = a.set_from_block_pair(&mut b, m, [x, y]);
                    let (ea, eb) = (Label::from_block(m, x), Label::from_block(m, y));
                    assert_eq!(got, ea.as_ref().and(eb.as_ref()).map(|_| ()).map_err(|e| *e), "p = {}", m.value());
                    for (label, expect) in [(&a, ea), (&b, eb)] {
                        match expect {
                            Ok(l) => assert_eq!(label.digits(), l.digits()),
                            Err(_) => assert!(label.digits().iter().all(|&d| d == 0)),
                        }
                    }
                }
            }
        }
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn pack_with_powers_equals_pack() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        for m in primes() {
            let powers = Powers::new(m);
            for _ in 0..10 {
                let l = Label::random(m, &mut rng);
                assert_eq!(l.to_block_with(&powers), l.to_block(), "p = {}", m.value());
            }
        }
    }

    #[test]
    fn pack_is_the_integer_sum_of_digits() {
        let m = Modulus::new(17).unwrap();
        let mut digits = [0u16; 31];
        digits[0] = 5;
        digits[1] = 3;
        digits[30] = 1;
        let l = Label::from_digits(m, &digits).unwrap();
        assert_eq!(l.to_block().0, 5 + 3 * 17 + 17u128.pow(30));
    }

    /// The definition of `from_hash` as two fraction chains, digit by
    /// digit, for comparison with the optimised paths (the binary one above all).
    fn from_hash_reference(m: Modulus, block: Block) -> [u16; MAX_DIGITS] {
        let p = m.value() as u128;
        let n = m.digits();
        let first = n.div_ceil(2);
        let (mut hi, mut lo) = ((block.0 >> 64) as u64, block.0 as u64);
        let mut digits = [0u16; MAX_DIGITS];
        for d in digits[..first].iter_mut() {
            let t = hi as u128 * p;
            *d = (t >> 64) as u16;
            hi = t as u64;
        }
        for d in digits[first..n].iter_mut() {
            let u = lo as u128 * p;
            *d = (u >> 64) as u16;
            lo = u as u64;
        }
        digits
    }

    #[test]
    #[cfg_attr(miri, ignore = "too slow under Miri")]
    fn from_hash_matches_its_definition_for_every_modulus() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        for m in primes() {
            for h in [0u128, u128::MAX, 1, 1 << 127, 0x8000_0000_0000_0000] {
                assert_eq!(Label::from_hash(m, Block(h)).digits(), &from_hash_reference(m, Block(h))[..m.digits()]);
            }
            for _ in 0..20 {
                let h = Block((rng.next_u64() as u128) << 64 | rng.next_u64() as u128);
                assert_eq!(
                    Label::from_hash(m, h).digits(),
                    &from_hash_reference(m, h)[..m.digits()],
                    "p = {}",
                    m.value()
                );
            }
        }
    }

    #[test]
    fn binary_labels_pack_to_their_bits() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let m = Modulus::new(2).unwrap();
        for _ in 0..100 {
            let v = (rng.next_u64() as u128) << 64 | rng.next_u64() as u128;
            let bits: [u16; 128] = core::array::from_fn(|i| (v >> i) as u16 & 1);
            let l = Label::from_digits(m, &bits).unwrap();
            assert_eq!(l.to_block().0, v);
            assert_eq!(l.to_block_with(&Powers::new(m)).0, v);
            assert_eq!(Label::from_block(m, Block(v)).unwrap().digits(), &bits[..]);
        }
    }

    /// `from_hash` gives the digits of one fraction chain per 64-bit half,
    /// high half first (a reference written out step by step: garbler and
    /// evaluator builds must agree on it).
    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn from_hash_equals_the_single_chain_reference() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        for m in primes().filter(|m| m.value() > 2) {
            let (p, n) = (m.value() as u128, m.digits());
            for _ in 0..8 {
                let block = Block(((rng.next_u64() as u128) << 64) | rng.next_u64() as u128);
                let mut want = [0u16; MAX_DIGITS];
                let h = n.div_ceil(2);
                for (half, range) in [((block.0 >> 64) as u64, 0..h), (block.0 as u64, h..n)] {
                    let mut f = half;
                    for d in want[range].iter_mut() {
                        let t = f as u128 * p;
                        *d = (t >> 64) as u16;
                        f = t as u64;
                    }
                }
                assert_eq!(Label::from_hash(m, block).digits(), &want[..n], "p = {}", m.value());
            }
        }
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn from_hash_digits_are_reduced_and_spread() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for m in primes() {
            let mut seen_nonzero_last = false;
            for _ in 0..50 {
                let h = Block((rng.next_u64() as u128) << 64 | rng.next_u64() as u128);
                let l = Label::from_hash(m, h);
                assert!(l.digits().iter().all(|&d| d < m.value()));
                seen_nonzero_last |= l.digits()[m.digits() - 1] != 0;
            }
            assert!(seen_nonzero_last || m.value() == 2, "last digit never set for p = {}", m.value());
        }
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn arithmetic_is_digitwise() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        for p in [2u16, 3, 17, 97, 251, 3181] {
            let m = Modulus::new(p).unwrap();
            let a = Label::random(m, &mut rng);
            let b = Label::random(m, &mut rng);
            let s = a.add(&b).unwrap();
            let d = a.sub(&b).unwrap();
            let n = a.neg();
            let c = a.cmul(p.wrapping_sub(1).max(1) + 7);
            for i in 0..m.digits() {
                let (x, y) = (a.digits()[i] as u32, b.digits()[i] as u32);
                assert_eq!(s.digits()[i] as u32, (x + y) % p as u32);
                assert_eq!(d.digits()[i] as u32, (x + p as u32 - y) % p as u32);
                assert_eq!(n.digits()[i] as u32, (p as u32 - x) % p as u32);
                assert_eq!(c.digits()[i] as u32, x * ((p.wrapping_sub(1).max(1) + 7) as u32 % p as u32) % p as u32);
            }
            assert!(bool::from(s.sub(&b).unwrap().ct_eq(&a)));
        }
        let a = Label::zero(Modulus::new(3).unwrap());
        let b = Label::zero(Modulus::new(5).unwrap());
        assert_eq!(a.add(&b).unwrap_err(), Error::ModulusMismatch { left: 3, right: 5 });
    }

    #[test]
    fn from_digits_rejects_bad_input() {
        let m = Modulus::new(5).unwrap();
        assert_eq!(Label::from_digits(m, &[0; 3]).unwrap_err(), Error::InvalidDigits);
        let mut d = [0u16; 55];
        d[7] = 5;
        assert_eq!(Label::from_digits(m, &d).unwrap_err(), Error::InvalidDigits);
    }
}
