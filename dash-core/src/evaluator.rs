//! The evaluator: the [`Backend`] that evaluates gadgets on the labels it
//! holds, reading rows from a material source.

use crate::backend::Backend;
use crate::block::Block;
use crate::error::Error;
use crate::garbler::{DEFAULT_MAX_MODULI, GateCounter, OneLabels};
use crate::hash::{Domain, FixedKeyHash, Tweak};
use crate::label::Label;
use crate::material::MaterialSource;
use crate::modulus::{MAX_PROJECTION_INPUT, Modulus};
use crate::projection;

/// The evaluating backend: wires are [`Label`]s (one per wire, never two).
pub struct Evaluator<'k, S: MaterialSource, const N: usize = DEFAULT_MAX_MODULI> {
    hash: &'k FixedKeyHash,
    ones: &'k OneLabels<N>,
    gates: GateCounter,
    source: S,
}

impl<'k, S: MaterialSource, const N: usize> Evaluator<'k, S, N> {
    /// An evaluator numbering gates from 0.
    pub fn new(hash: &'k FixedKeyHash, ones: &'k OneLabels<N>, source: S) -> Self {
        Self::with_gates(hash, ones, GateCounter::default(), source)
    }

    /// An evaluator numbering gates from `gates` (must match the garbler's).
    pub fn with_gates(hash: &'k FixedKeyHash, ones: &'k OneLabels<N>, gates: GateCounter, source: S) -> Self {
        Evaluator { hash, ones, gates, source }
    }

    /// The gate counter (the next identifier).
    pub fn gates(&self) -> GateCounter {
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
}

impl<S: MaterialSource, const N: usize> Backend for Evaluator<'_, S, N> {
    type Wire = Label;

    fn modulus_of(&self, wire: &Label) -> Modulus {
        wire.modulus()
    }

    fn constant(&mut self, value: u16, modulus: Modulus) -> Result<Label, Error> {
        Ok(self.ones.get(modulus)?.cmul(value))
    }

    fn add(&mut self, a: &Label, b: &Label) -> Result<Label, Error> {
        a.add(b)
    }

    fn sub(&mut self, a: &Label, b: &Label) -> Result<Label, Error> {
        a.sub(b)
    }

    fn neg(&mut self, a: &Label) -> Result<Label, Error> {
        Ok(a.neg())
    }

    fn add_assign(&mut self, a: &mut Label, b: &Label) -> Result<(), Error> {
        crate::backend::same_modulus(a.modulus(), b.modulus())?;
        a.add_assign_unchecked(b);
        Ok(())
    }

    fn add_constant(&mut self, a: &Label, c: u16) -> Result<Label, Error> {
        // a + c·(the one-label): one copy, no temporary constant label.
        let one = self.ones.get(a.modulus())?;
        let mut out = a.clone();
        out.add_scaled_unchecked(one, c);
        Ok(out)
    }

    fn cmul(&mut self, a: &Label, c: u16) -> Result<Label, Error> {
        Ok(a.cmul(c))
    }

    fn project(&mut self, a: &Label, out: Modulus, _table: impl Fn(u16) -> u16) -> Result<Label, Error> {
        let gate = self.gates.next_id()?;
        let mut result = Label::zero(out);
        let tweak = Tweak::new(Domain::Projection, gate, 0);
        projection::evaluate_rows_into(self.hash, tweak, a, out, &mut self.source, &mut result)?;
        Ok(result)
    }

    fn project_many(
        &mut self,
        a: &Label,
        outs: &[Modulus],
        _table: impl Fn(usize, u16) -> u16,
        mut each: impl FnMut(&mut Self, usize, &Label) -> Result<(), Error>,
    ) -> Result<(), Error> {
        // The tweak-independent half of the input's hash, once for all;
        // every output is opened into one buffer.
        let mut first = [a.to_block()];
        self.hash.permute(&mut first);
        let mut h = [Block::ZERO];
        let mut result = Label::zero(Modulus::TWO);
        for (j, &out) in outs.iter().enumerate() {
            let tweak = Tweak::new(Domain::Projection, self.gates.next_id()?, 0);
            self.hash.finish_same_tweak(tweak, &first, &mut h);
            projection::open_row(h[0], a, out, &mut self.source, &mut result)?;
            each(self, j, &result)?;
        }
        Ok(())
    }

    fn mul_bit(&mut self, x: &Label, bit: &Label) -> Result<Label, Error> {
        let gate = self.gates.next_id()?;
        let mut z = Label::zero(x.modulus());
        evaluate_mul_bit(self.hash, gate, x, bit, &mut self.source, &mut z)?;
        Ok(z)
    }
}

/// The evaluator's half of the multiply-by-bit gate (see
/// `garbler::garble_mul_bit`): opens the lifted bit `B'` (sub 0), the
/// correction `T` (sub 1) and the row keyed by `X` (sub 2), in the order the
/// garbler wrote their `1 + 1 + (p - 1)` rows, and sets
/// `z = R + colour(X)·B' + T`.
pub(crate) fn evaluate_mul_bit<S: MaterialSource + ?Sized>(
    hash: &FixedKeyHash,
    gate: u64,
    x: &Label,
    bit: &Label,
    source: &mut S,
    z: &mut Label,
) -> Result<(), Error> {
    let p = x.modulus();
    if bit.modulus().value() != 2 {
        return Err(Error::NotABit(bit.modulus().value()));
    }
    if p.value() > MAX_PROJECTION_INPUT {
        return Err(Error::ProjectionInputTooLarge(p.value()));
    }
    let (mut b_lift, mut t) = (Label::zero(p), Label::zero(p));
    let tweak = |sub| Tweak::new(Domain::MulBit, gate, sub);
    projection::evaluate_rows_into(hash, tweak(0), bit, p, source, &mut b_lift)?;
    projection::evaluate_rows_into(hash, tweak(1), bit, p, source, &mut t)?;
    projection::evaluate_rows_into(hash, tweak(2), x, p, source, z)?;
    z.add_scaled_unchecked(&b_lift, x.colour());
    z.add_assign_unchecked(&t);
    Ok(())
}
