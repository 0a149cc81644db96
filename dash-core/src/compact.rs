//! An evaluator for small RAM: wires held as their 16-byte packing.
//!
//! A [`Label`] keeps its digits unpacked (fast arithmetic, but a few hundred
//! bytes whatever the modulus), and a gadget holds dozens of wires at once.
//! On a microcontroller with tens of KiB of RAM that is most of the budget.
//! [`CompactEvaluator`] is the same evaluating backend with wires stored as
//! [`PackedLabel`]s — the label's injective 128-bit packing plus its prime,
//! about 24 bytes — and unpacks them into short-lived [`Label`]s only inside
//! each primitive. The gadgets are unchanged (one definition, every backend),
//! and the result is the same label the unpacked [`crate::Evaluator`]
//! returns, so the garbler decodes and verifies it the same way.
//!
//! The price is CPU: every free operation unpacks its operands and packs the
//! result (a few hundred instructions per label on a Cortex-M4). Choose it
//! where RAM, not time, is the limit.
//!
//! Unpacking is not constant-time. That is fine here: every label this
//! backend touches is one the evaluator holds, and the evaluator learns
//! nothing from the timing of its own labels (`docs/SECURITY.md`, §3). The
//! garbler never uses this module.

use crate::backend::Backend;
use crate::block::Block;
use crate::error::Error;
use crate::garbler::OneLabels;
use crate::hash::{Domain, FixedKeyHash, Tweak};
use crate::label::Label;
use crate::material::MaterialSource;
use crate::modulus::{MAX_PROJECTION_INPUT, Modulus};
use crate::projection;

/// A label stored as its packing `sum_i d_i p^i` (see [`Label::to_block`])
/// and its prime: about 24 bytes instead of a [`Label`]'s few hundred.
///
/// Built only by a [`CompactEvaluator`] (from a checked label), so the
/// packing is always valid for its modulus.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PackedLabel {
    block: Block,
    prime: u16,
}

impl PackedLabel {
    /// The packed label: what the evaluator returns to the garbler.
    pub fn block(&self) -> Block {
        self.block
    }

    /// The wire's prime.
    pub fn prime(&self) -> u16 {
        self.prime
    }

    fn pack(label: &Label) -> PackedLabel {
        PackedLabel { block: label.to_block(), prime: label.modulus().value() }
    }
}

impl core::fmt::Debug for PackedLabel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The evaluator's own label, but keep it out of logs all the same.
        write!(f, "PackedLabel(mod {})", self.prime)
    }
}

/// The garbler's one-labels, packed: what a [`CompactEvaluator`] derives
/// public constants from (one per modulus, as [`OneLabels`]).
#[derive(Clone, Default)]
pub struct PackedOnes<const N: usize> {
    moduli: heapless::Vec<Modulus, N>,
    ones: heapless::Vec<Block, N>,
}

impl<const N: usize> PackedOnes<N> {
    /// No one-labels yet.
    pub fn new() -> Self {
        PackedOnes { moduli: heapless::Vec::new(), ones: heapless::Vec::new() }
    }

    /// Adds the received one-label of modulus `m`, given packed. Rejects a
    /// block that packs no label of `m` ([`Error::InvalidLabelEncoding`]), a
    /// second one-label for `m` ([`Error::InvalidParameter`]) and more than
    /// `N` moduli ([`Error::TooManyModuli`]).
    pub fn push(&mut self, m: Modulus, one: Block) -> Result<(), Error> {
        Label::from_block(m, one)?;
        if self.moduli.contains(&m) {
            return Err(Error::InvalidParameter);
        }
        self.moduli.push(m).map_err(|_| Error::TooManyModuli)?;
        // Same capacity as `moduli`, which just took one more.
        self.ones.push(one).map_err(|_| Error::TooManyModuli)
    }

    /// The packed one-labels of `ones`.
    pub fn from_labels<const M: usize>(ones: &OneLabels<M>) -> Result<Self, Error> {
        let mut packed = PackedOnes::new();
        for l in ones.labels() {
            packed.push(l.modulus(), l.to_block())?;
        }
        Ok(packed)
    }

    fn get(&self, m: Modulus) -> Result<Block, Error> {
        let i = self.moduli.iter().position(|x| *x == m).ok_or(Error::MissingDelta(m.value()))?;
        self.ones.get(i).copied().ok_or(Error::MissingDelta(m.value()))
    }
}

/// The evaluating backend over [`PackedLabel`]s: same rows, same tweaks,
/// same results as [`crate::Evaluator`], with wires a tenth of the size.
///
/// `N` bounds the one-labels and also the distinct moduli the circuit's
/// wires may use (the evaluator keeps one copy of each modulus's constants
/// and the wires refer to it by prime). A circuit with more fails with
/// [`Error::TooManyModuli`].
///
/// ```
/// use dash_core::compact::{CompactEvaluator, PackedOnes};
/// use dash_core::gadgets::sign::{Accuracy, SignGadget};
/// use dash_core::{Block, CrtBase, FixedKeyHash, Garbler, GarblerKeys, SliceSink, SliceSource};
/// # use rand_core::SeedableRng;
/// # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
/// let base = CrtBase::first(5)?;
/// let relu = SignGadget::new(&base, Accuracy::Exact)?;
/// let keys: GarblerKeys = GarblerKeys::generate(&mut rng, &relu.moduli())?;
/// let hash = FixedKeyHash::new();
/// let x0 = keys.input_bundle(&base, &mut rng)?;
/// let mut rows = vec![Block::ZERO; relu.relu_ciphertexts() as usize];
/// let y0 = relu.relu(&mut Garbler::new(&hash, &keys, SliceSink::new(&mut rows)), &x0)?;
///
/// let ones: PackedOnes<12> = PackedOnes::from_labels(&keys.one_labels())?;
/// let mut ev = CompactEvaluator::new(&hash, &ones, SliceSource::new(&rows));
/// let x = ev.input_bundle(&keys.encode_bundle(&base, &x0, -42)?)?;
/// let y = relu.relu(&mut ev, &x)?;
/// let returned: Vec<Block> = y.wires().iter().map(|w| w.block()).collect();
/// assert_eq!(keys.decode_bundle(&base, &y0, &returned)?, 0);
/// # Ok::<(), dash_core::Error>(())
/// ```
pub struct CompactEvaluator<'k, S: MaterialSource, const N: usize> {
    hash: &'k FixedKeyHash,
    ones: &'k PackedOnes<N>,
    /// Every modulus a wire of this evaluator has (the one-labels' first).
    moduli: heapless::Vec<Modulus, N>,
    gates: crate::GateCounter,
    source: S,
}

impl<'k, S: MaterialSource, const N: usize> CompactEvaluator<'k, S, N> {
    /// An evaluator numbering gates from 0.
    pub fn new(hash: &'k FixedKeyHash, ones: &'k PackedOnes<N>, source: S) -> Self {
        Self::with_gates(hash, ones, crate::GateCounter::default(), source)
    }

    /// An evaluator numbering gates from `gates` (must match the garbler's).
    pub fn with_gates(hash: &'k FixedKeyHash, ones: &'k PackedOnes<N>, gates: crate::GateCounter, source: S) -> Self {
        CompactEvaluator { hash, ones, moduli: ones.moduli.clone(), gates, source }
    }

    /// The gate counter (the next identifier).
    pub fn gates(&self) -> crate::GateCounter {
        self.gates
    }

    /// The source, for inspection.
    pub fn source(&mut self) -> &mut S {
        &mut self.source
    }

    /// Gives back the source.
    pub fn into_source(self) -> S {
        self.source
    }

    /// An input wire from the packed label the garbler sent for it. Fails
    /// with [`Error::InvalidLabelEncoding`] if `block` packs no label of `m`.
    pub fn input(&mut self, m: Modulus, block: Block) -> Result<PackedLabel, Error> {
        Label::from_block(m, block)?;
        self.know(m)?;
        Ok(PackedLabel { block, prime: m.value() })
    }

    /// An input wire from an unpacked label.
    pub fn input_label(&mut self, label: &Label) -> Result<PackedLabel, Error> {
        self.know(label.modulus())?;
        Ok(PackedLabel::pack(label))
    }

    /// An input bundle from unpacked labels (one per residue).
    pub fn input_bundle(&mut self, labels: &crate::Bundle<Label>) -> Result<crate::Bundle<PackedLabel>, Error> {
        let mut wires: heapless::Vec<PackedLabel, { crate::crt::MAX_CRT_PRIMES }> = heapless::Vec::new();
        for l in labels.wires() {
            wires.push(self.input_label(l)?).map_err(|_| Error::InvalidCrtBase)?;
        }
        crate::Bundle::from_wires(wires)
    }

    fn know(&mut self, m: Modulus) -> Result<(), Error> {
        if !self.moduli.contains(&m) {
            self.moduli.push(m).map_err(|_| Error::TooManyModuli)?;
        }
        Ok(())
    }

    fn modulus(&self, prime: u16) -> Result<Modulus, Error> {
        self.moduli.iter().copied().find(|m| m.value() == prime).ok_or(Error::MissingDelta(prime))
    }

    fn unpack(&self, w: &PackedLabel) -> Result<Label, Error> {
        Label::from_block(self.modulus(w.prime)?, w.block)
    }

    /// `f` on the unpacked operands (the first updated in place), packed
    /// again. Never inlined, so the unpacked labels live only in this frame,
    /// not in every gadget's.
    #[inline(never)]
    fn binary(
        &self,
        a: &PackedLabel,
        b: &PackedLabel,
        f: impl FnOnce(&mut Label, &Label),
    ) -> Result<PackedLabel, Error> {
        if a.prime != b.prime {
            return Err(Error::ModulusMismatch { left: a.prime, right: b.prime });
        }
        let mut x = self.unpack(a)?;
        f(&mut x, &self.unpack(b)?);
        Ok(PackedLabel::pack(&x))
    }

    /// A projection's rows decrypted with the unpacked `input`, packed.
    #[inline(never)]
    fn project_packed(&mut self, input: &PackedLabel, tweak: Tweak, out: Modulus) -> Result<PackedLabel, Error> {
        let input = self.unpack(input)?;
        Ok(PackedLabel::pack(&projection::evaluate(self.hash, tweak, &input, out, &mut self.source)?))
    }

    #[inline(never)]
    fn unary(&self, a: &PackedLabel, f: impl FnOnce(&Label) -> Label) -> Result<PackedLabel, Error> {
        Ok(PackedLabel::pack(&f(&self.unpack(a)?)))
    }
}

impl<S: MaterialSource, const N: usize> Backend for CompactEvaluator<'_, S, N> {
    type Wire = PackedLabel;

    fn modulus_of(&self, wire: &PackedLabel) -> Modulus {
        // Every wire was made by this evaluator, which registered its
        // modulus first; a wire from elsewhere gets its modulus rebuilt
        // (its prime came from a valid `Modulus`), and 2 only if even that
        // fails, which then surfaces as a modulus mismatch, not a panic.
        self.modulus(wire.prime).or_else(|_| Modulus::new(wire.prime)).unwrap_or(Modulus::TWO)
    }

    #[inline(never)]
    fn constant(&mut self, value: u16, modulus: Modulus) -> Result<PackedLabel, Error> {
        let one = Label::from_block(modulus, self.ones.get(modulus)?)?;
        Ok(PackedLabel::pack(&one.cmul(value)))
    }

    fn add(&mut self, a: &PackedLabel, b: &PackedLabel) -> Result<PackedLabel, Error> {
        self.binary(a, b, |x, y| x.add_assign_unchecked(y))
    }

    fn sub(&mut self, a: &PackedLabel, b: &PackedLabel) -> Result<PackedLabel, Error> {
        self.binary(a, b, |x, y| x.sub_assign_unchecked(y))
    }

    fn neg(&mut self, a: &PackedLabel) -> Result<PackedLabel, Error> {
        self.unary(a, |a| a.neg())
    }

    fn cmul(&mut self, a: &PackedLabel, c: u16) -> Result<PackedLabel, Error> {
        self.unary(a, |a| a.cmul(c))
    }

    #[inline(never)]
    fn project(&mut self, a: &PackedLabel, out: Modulus, _table: impl Fn(u16) -> u16) -> Result<PackedLabel, Error> {
        self.know(out)?;
        let gate = self.gates.next_id()?;
        self.project_packed(a, Tweak::new(Domain::Projection, gate, 0), out)
    }

    #[inline(never)]
    fn mul_bit(&mut self, x: &PackedLabel, bit: &PackedLabel) -> Result<PackedLabel, Error> {
        if bit.prime != 2 {
            return Err(Error::NotABit(bit.prime));
        }
        if x.prime > MAX_PROJECTION_INPUT {
            return Err(Error::ProjectionInputTooLarge(x.prime));
        }
        let (xl, bl) = (self.unpack(x)?, self.unpack(bit)?);
        let p = xl.modulus();
        let gate = self.gates.next_id()?;
        // The same three row groups, in the same order, as `Evaluator::mul_bit`.
        let b_lift = projection::evaluate(self.hash, Tweak::new(Domain::MulBit, gate, 0), &bl, p, &mut self.source)?;
        let t = projection::evaluate(self.hash, Tweak::new(Domain::MulBit, gate, 1), &bl, p, &mut self.source)?;
        let mut z =
            projection::evaluate_rows(self.hash, Tweak::new(Domain::MulBit, gate, 2), &xl, p, &mut self.source)?;
        z.add_scaled_unchecked(&b_lift, xl.colour());
        z.add_assign_unchecked(&t);
        Ok(PackedLabel::pack(&z))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GarblerKeys, SliceSource};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn rejects_bad_packings_and_foreign_moduli() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let m5 = Modulus::new(5).unwrap();
        let m7 = Modulus::new(7).unwrap();
        let keys: GarblerKeys<4> = GarblerKeys::generate(&mut rng, &[m5]).unwrap();
        let ones: PackedOnes<2> = PackedOnes::from_labels(&keys.one_labels()).unwrap();
        let mut again = ones.clone();
        assert_eq!(again.push(m5, ones.get(m5).unwrap()), Err(Error::InvalidParameter));
        // 5^55 > 2^127: the all-ones block packs no label of modulus 5.
        assert_eq!(again.push(m7, Block(u128::MAX)), Err(Error::InvalidLabelEncoding));
        let hash = FixedKeyHash::new();
        let mut ev = CompactEvaluator::new(&hash, &ones, SliceSource::new(&[]));
        assert_eq!(ev.input(m5, Block(u128::MAX)).map(|w| w.prime()), Err(Error::InvalidLabelEncoding));
        let a = ev.input(m5, Block(3)).unwrap();
        let b = ev.input(m7, Block(3)).unwrap();
        assert!(matches!(ev.add(&a, &b), Err(Error::ModulusMismatch { .. })));
        // No one-label of 7: a constant of modulus 7 is an error, not a guess.
        assert_eq!(ev.constant(1, m7), Err(Error::MissingDelta(7)));
        // A third modulus exceeds N = 2.
        assert_eq!(ev.input(Modulus::new(11).unwrap(), Block(1)), Err(Error::TooManyModuli));
        let mut sum = ev.add(&a, &a).unwrap();
        sum = ev.sub(&sum, &a).unwrap();
        assert_eq!(sum, a);
        assert_eq!(ev.modulus_of(&sum), m5);
    }
}
