//! The garbler's secrets: the global offset `Δ_p` of each modulus and the
//! zero labels of wires.

use crate::label::Label;
use crate::modulus::Modulus;
use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The secret global offset of one modulus: a random label with colour 1.
///
/// A wire carrying `x` has label `W_0 + x·Δ`. Whoever learns `Δ` can forge
/// every label of that modulus, so `Delta` is zeroised on drop, never
/// printed, and never leaves the garbler.
pub struct Delta(Label);

impl Delta {
    /// Draws a fresh offset. Digit 0 (the colour) is 1 so that
    /// `colour(W_0 + x·Δ) = colour(W_0) + x`.
    pub fn random<R: CryptoRng + ?Sized>(modulus: Modulus, rng: &mut R) -> Delta {
        let mut label = Label::random(modulus, rng);
        label.set_colour(1);
        Delta(label)
    }

    /// The modulus this offset belongs to.
    pub fn modulus(&self) -> Modulus {
        self.0.modulus()
    }

    /// The offset as a label, for the garbler's own arithmetic.
    pub fn as_label(&self) -> &Label {
        &self.0
    }
}

impl Drop for Delta {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for Delta {}

impl core::fmt::Debug for Delta {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Delta(p={}, <redacted>)", self.modulus().value())
    }
}

/// The garbler's view of a wire: its zero label `W_0`. Zeroised on drop and
/// never printed; `W_0 + x·Δ` is what the evaluator may see for one `x`.
#[derive(Clone)]
pub struct ZeroLabel(Label);

impl ZeroLabel {
    /// Wraps a label computed by the garbler.
    pub fn new(label: Label) -> ZeroLabel {
        ZeroLabel(label)
    }

    /// A fresh uniformly random zero label (for an input wire).
    pub fn random<R: CryptoRng + ?Sized>(modulus: Modulus, rng: &mut R) -> ZeroLabel {
        ZeroLabel(Label::random(modulus, rng))
    }

    /// The wire's modulus.
    pub fn modulus(&self) -> Modulus {
        self.0.modulus()
    }

    /// The zero label itself.
    pub fn as_label(&self) -> &Label {
        &self.0
    }

    /// The zero label, for in-place arithmetic by the garbler.
    pub(crate) fn as_label_mut(&mut self) -> &mut Label {
        &mut self.0
    }

    /// The label that encodes `value` on this wire: `W_0 + value·Δ`. This is
    /// what the garbler sends the evaluator for an input.
    pub fn encode(&self, value: u16, delta: &Delta) -> Result<Label, crate::Error> {
        if delta.modulus() != self.modulus() {
            return Err(crate::Error::ModulusMismatch { left: self.modulus().value(), right: delta.modulus().value() });
        }
        let mut out = self.0.clone();
        out.add_scaled_unchecked(delta.as_label(), value);
        Ok(out)
    }

    /// The wire's label of colour 0, `W_0 - colour(W_0)·Δ`: where the
    /// garbler starts walking a wire's labels in colour order (row order).
    /// `delta` must be this wire's offset. Constant-time in the colour.
    pub(crate) fn colour_zero_key(&self, delta: &Delta) -> Label {
        let m = self.modulus();
        let mut key = self.0.clone();
        key.add_scaled_unchecked(delta.as_label(), m.neg(self.0.colour()));
        key
    }
}

impl Drop for ZeroLabel {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for ZeroLabel {}

impl core::fmt::Debug for ZeroLabel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ZeroLabel(p={}, <redacted>)", self.modulus().value())
    }
}
