//! A garbler for small RAM: zero labels held in a constant-time bit-field
//! packing.
//!
//! The garbler's [`crate::Garbler`] keeps every wire as an unpacked
//! [`ZeroLabel`] (312 bytes), and a gadget holds dozens of wires at once:
//! garbling an exact sign on a Cortex-M4 peaks above 40 KiB of stack for the
//! gadget alone. [`CompactGarbler`] is the same garbling backend (the same
//! gates, tweaks, rows and output zero labels, in the same order) with wires
//! stored as [`CtPacked`] — each digit in `ceil(log2 p)` bits, 28 bytes —
//! unpacked into short-lived labels only inside each primitive.
//!
//! Unlike the evaluator's [`crate::compact::PackedLabel`] (the injective
//! 128-bit packing, whose unpacking divides and is not constant-time),
//! this packing is shifts and masks at positions that depend only on the
//! modulus: zero labels are secrets, and packing or unpacking them takes
//! the same time whatever their digits.

use crate::backend::Backend;
use crate::block::Block;
use crate::delta::ZeroLabel;
use crate::error::Error;
use crate::garbler::{Garbler, GarblerKeys, GateCounter};
use crate::hash::{Domain, FixedKeyHash, Tweak};
use crate::label::Label;
use crate::material::MaterialSink;
use crate::modulus::{MAX_DIGITS, Modulus};
use crate::projection;
use zeroize::Zeroize;

/// Words of a [`CtPacked`]: `digits · ceil(log2 p)` is at most 165 bits for
/// every supported prime (p = 5: 55 digits of 3 bits).
pub const CT_WORDS: usize = 6;

/// A label packed digit by digit, `ceil(log2 p)` bits each, little-endian
/// in 32-bit words, with its prime. Packing and unpacking are constant-time
/// (shifts and masks at positions that depend only on the modulus). Cleared
/// on drop: it holds garbler secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct CtPacked {
    words: [u32; CT_WORDS],
    prime: u16,
}

impl core::fmt::Debug for CtPacked {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "CtPacked(mod {}, <redacted>)", self.prime)
    }
}

impl Drop for CtPacked {
    fn drop(&mut self) {
        self.words.zeroize();
    }
}

fn bits(p: u16) -> usize {
    (16 - (p - 1).leading_zeros()) as usize
}

impl CtPacked {
    /// The empty packing (modulus 2, all digits zero): a placeholder.
    pub const EMPTY: CtPacked = CtPacked { words: [0; CT_WORDS], prime: 2 };

    /// Packs `label`. Fails with [`Error::UnsupportedModulus`] if its digits
    /// do not fit (no supported prime does that).
    pub fn pack(label: &Label) -> Result<CtPacked, Error> {
        let m = label.modulus();
        let b = bits(m.value());
        if m.digits() * b > 32 * CT_WORDS {
            return Err(Error::UnsupportedModulus(m.value()));
        }
        let mut words = [0u32; CT_WORDS];
        for (i, &d) in label.digits().iter().enumerate() {
            let (w, s) = (i * b / 32, i * b % 32);
            words[w] |= (d as u32) << s;
            if s + b > 32 {
                words[w + 1] |= (d as u32) >> (32 - s);
            }
        }
        Ok(CtPacked { words, prime: m.value() })
    }

    /// The wire's prime.
    pub fn prime(&self) -> u16 {
        self.prime
    }

    /// Unpacks into `out` (a label of modulus `m`, the packing's). Fails
    /// with [`Error::ModulusMismatch`] for another modulus and
    /// [`Error::InvalidDigits`] if a digit is not reduced (a packing not
    /// made by [`CtPacked::pack`]).
    pub fn unpack(&self, m: Modulus) -> Result<Label, Error> {
        if m.value() != self.prime {
            return Err(Error::ModulusMismatch { left: self.prime, right: m.value() });
        }
        let b = bits(m.value());
        let mask = (1u32 << b) - 1;
        let mut digits = [0u16; MAX_DIGITS];
        let n = m.digits();
        for (i, d) in digits[..n].iter_mut().enumerate() {
            let (w, s) = (i * b / 32, i * b % 32);
            let mut v = self.words[w] >> s;
            if s + b > 32 {
                v |= self.words[w + 1] << (32 - s);
            }
            *d = (v & mask) as u16;
        }
        let label = Label::from_digits(m, &digits[..n]);
        digits.zeroize();
        label
    }
}

/// The garbling backend over [`CtPacked`] wires: same gates, tweaks, rows
/// and output zero labels as [`Garbler`], with wires of 28 bytes.
pub struct CompactGarbler<'k, S: MaterialSink, const N: usize> {
    hash: &'k FixedKeyHash,
    keys: &'k GarblerKeys<N>,
    gates: GateCounter,
    sink: S,
}

impl<'k, S: MaterialSink, const N: usize> CompactGarbler<'k, S, N> {
    /// A garbler numbering gates from `gates` (as `Garbler::with_gates`).
    pub fn with_gates(hash: &'k FixedKeyHash, keys: &'k GarblerKeys<N>, gates: GateCounter, sink: S) -> Self {
        CompactGarbler { hash, keys, gates, sink }
    }

    /// The gate counter (the next identifier).
    pub fn gates(&self) -> GateCounter {
        self.gates
    }

    /// Gives back the sink.
    pub fn into_sink(self) -> S {
        self.sink
    }

    /// A wire from a zero label.
    pub fn input(&self, zero: &ZeroLabel) -> Result<CtPacked, Error> {
        self.modulus(zero.modulus().value())?;
        CtPacked::pack(zero.as_label())
    }

    /// The zero label of a wire (to decode an output).
    pub fn zero_label(&self, w: &CtPacked) -> Result<ZeroLabel, Error> {
        self.unpack(w)
    }

    fn modulus(&self, prime: u16) -> Result<Modulus, Error> {
        self.keys.moduli().find(|m| m.value() == prime).ok_or(Error::MissingDelta(prime))
    }

    fn unpack(&self, w: &CtPacked) -> Result<ZeroLabel, Error> {
        Ok(ZeroLabel::new(w.unpack(self.modulus(w.prime)?)?))
    }

    /// `f` on the unpacked operands with an unpacked garbler over the same
    /// keys, gate counter and sink; the result packed. Never inlined: the
    /// unpacked labels live only in this frame.
    #[inline(never)]
    fn with<F>(&mut self, a: &CtPacked, b: Option<&CtPacked>, f: F) -> Result<CtPacked, Error>
    where
        F: FnOnce(&mut Garbler<'k, &mut S, N>, &ZeroLabel, Option<&ZeroLabel>) -> Result<ZeroLabel, Error>,
    {
        let x = self.unpack(a)?;
        let y = b.map(|b| self.unpack(b)).transpose()?;
        let mut g = Garbler::with_gates(self.hash, self.keys, self.gates, &mut self.sink);
        let z = f(&mut g, &x, y.as_ref());
        self.gates = g.gates();
        CtPacked::pack(z?.as_label())
    }
}

impl<S: MaterialSink, const N: usize> Backend for CompactGarbler<'_, S, N> {
    type Wire = CtPacked;

    fn modulus_of(&self, wire: &CtPacked) -> Modulus {
        // Every wire's prime has keys (a wire is made from a zero label of
        // a keyed modulus or by a primitive of one); otherwise 2, which then
        // surfaces as a modulus mismatch, not a panic.
        self.modulus(wire.prime).unwrap_or(Modulus::TWO)
    }

    #[inline(never)]
    fn constant(&mut self, value: u16, modulus: Modulus) -> Result<CtPacked, Error> {
        let mut g = Garbler::with_gates(self.hash, self.keys, self.gates, &mut self.sink);
        CtPacked::pack(g.constant(value, modulus)?.as_label())
    }

    fn add(&mut self, a: &CtPacked, b: &CtPacked) -> Result<CtPacked, Error> {
        self.with(a, Some(b), |g, x, y| g.add(x, y.ok_or(Error::InvalidParameter)?))
    }

    fn sub(&mut self, a: &CtPacked, b: &CtPacked) -> Result<CtPacked, Error> {
        self.with(a, Some(b), |g, x, y| g.sub(x, y.ok_or(Error::InvalidParameter)?))
    }

    fn neg(&mut self, a: &CtPacked) -> Result<CtPacked, Error> {
        self.with(a, None, |g, x, _| g.neg(x))
    }

    fn cmul(&mut self, a: &CtPacked, c: u16) -> Result<CtPacked, Error> {
        self.with(a, None, |g, x, _| g.cmul(x, c))
    }

    fn add_constant(&mut self, a: &CtPacked, c: u16) -> Result<CtPacked, Error> {
        self.with(a, None, |g, x, _| g.add_constant(x, c))
    }

    fn project(&mut self, a: &CtPacked, out: Modulus, table: impl Fn(u16) -> u16) -> Result<CtPacked, Error> {
        self.with(a, None, |g, x, _| g.project(x, out, table))
    }

    /// As `Garbler::project_many`: the wire's keys are packed and
    /// half-hashed once for all the projections, and `each` runs after each
    /// projection (so rows stay in the garbler's order even if `each`
    /// garbles).
    #[inline(never)]
    fn project_many(
        &mut self,
        a: &CtPacked,
        outs: &[Modulus],
        table: impl Fn(usize, u16) -> u16,
        mut each: impl FnMut(&mut Self, usize, &CtPacked) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let za = self.unpack(a)?;
        let m = za.modulus().value() as usize;
        if m > projection::SHARED_KEYS_MAX_INPUT || outs.len() < 2 {
            drop(za);
            return crate::backend::project_each(self, a, outs, table, each);
        }
        let mut first = [Block::ZERO; projection::SHARED_KEYS_MAX_INPUT];
        projection::key_first_halves(self.hash, &za, self.keys.delta(za.modulus())?, &mut first[..m]);
        let mut result = ZeroLabel::new(Label::zero(Modulus::TWO));
        let mut status = Ok(());
        for (j, &out) in outs.iter().enumerate() {
            status = self.keys.delta(out).and_then(|delta_out| {
                let tweak = Tweak::new(Domain::Projection, self.gates.next_id()?, 0);
                let (hash, sink) = (self.hash, &mut self.sink);
                let table = |x| table(j, x);
                projection::garble_with_first_halves(hash, tweak, &first[..m], &za, delta_out, table, sink, &mut result)
            });
            status = status.and_then(|()| each(self, j, &CtPacked::pack(result.as_label())?));
            if status.is_err() {
                break;
            }
        }
        first[..].zeroize();
        status
    }

    fn mul_bit(&mut self, x: &CtPacked, bit: &CtPacked) -> Result<CtPacked, Error> {
        self.with(x, Some(bit), |g, x, b| g.mul_bit(x, b.ok_or(Error::InvalidParameter)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gadgets::sign::{Accuracy, SignGadget};
    use crate::{Bundle, CrtBase, SliceSink};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn packing_round_trips_for_every_modulus() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        // Under Miri, the primes up to 60 (the circuits' moduli).
        let top = if cfg!(miri) { 60 } else { crate::MAX_MODULUS };
        for p in 2..=top {
            let Ok(m) = Modulus::new(p) else { continue };
            for _ in 0..4 {
                let l = Label::random(m, &mut rng);
                let c = CtPacked::pack(&l).unwrap();
                assert_eq!(c.unpack(m).unwrap().digits(), l.digits(), "p = {p}");
            }
            if p > 2 {
                // All-ones digits are not reduced for an odd prime.
                let bad = CtPacked { words: [u32::MAX; CT_WORDS], prime: p };
                assert!(bad.unpack(m).is_err(), "p = {p}");
            }
        }
        let m5 = Modulus::new(5).unwrap();
        let c = CtPacked::pack(&Label::zero(m5)).unwrap();
        assert!(matches!(c.unpack(Modulus::new(7).unwrap()), Err(Error::ModulusMismatch { .. })));
    }

    /// Same rows and same output zero labels as the unpacked garbler, for the
    /// sign activation and ReLU, from a gate offset.
    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn same_rows_and_outputs_as_the_garbler() {
        for k in [3, 5, 7] {
            let mut rng = ChaCha20Rng::seed_from_u64(40 + k as u64);
            let base = CrtBase::first(k).unwrap();
            let g = SignGadget::new(&base, Accuracy::Exact).unwrap();
            let keys: GarblerKeys<16> = GarblerKeys::generate(&mut rng, &g.moduli()).unwrap();
            let hash = FixedKeyHash::new();
            let x = keys.input_bundle(&base, &mut rng).unwrap();
            for relu in [false, true] {
                let rows = (if relu { g.relu_ciphertexts() } else { g.activation_ciphertexts() }) as usize;
                let (mut a, mut b) = ([Block::ZERO; 512], [Block::ZERO; 512]);
                let (a, b) = (&mut a[..rows], &mut b[..rows]);
                let start = GateCounter::starting_at(1000);
                let mut plain = Garbler::with_gates(&hash, &keys, start, SliceSink::new(a));
                let y = if relu { g.relu(&mut plain, &x) } else { g.sign_activation(&mut plain, &x) }.unwrap();
                let mut compact = CompactGarbler::with_gates(&hash, &keys, start, SliceSink::new(b));
                let cx = Bundle::from_wires(x.wires().iter().map(|z| compact.input(z).unwrap())).unwrap();
                let cy = if relu { g.relu(&mut compact, &cx) } else { g.sign_activation(&mut compact, &cx) }.unwrap();
                assert_eq!(compact.gates(), plain.gates(), "k = {k}");
                for (w, z) in cy.wires().iter().zip(y.wires()) {
                    assert_eq!(compact.zero_label(w).unwrap().as_label().digits(), z.as_label().digits(), "k = {k}");
                }
                assert!(a == b, "k = {k}, relu = {relu}: rows differ");
            }
        }
    }
}
