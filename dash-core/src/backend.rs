//! One gadget definition, several backends.
//!
//! A gadget is a generic function over [`Backend`]: it receives wires and
//! combines them with the few primitives below. The same code then runs
//!
//! * on plaintext integers ([`Plaintext`]): the reference every test and
//!   fuzz target checks the garbled result against,
//! * on the garbler ([`crate::Garbler`]): wires are zero labels, rows go to a
//!   sink,
//! * on the evaluator ([`crate::Evaluator`]): wires are labels, rows come
//!   from a source,
//! * on a cost counter ([`CostCounter`]): wires are moduli, and the counter
//!   adds up ciphertexts and records every modulus used.
//!
//! Garbler and evaluator assign gate identifiers in the same order, so a
//! gadget that runs the same sequence of primitives on both sides produces
//! matching tweaks without any coordination.

use crate::error::Error;
use crate::modulus::Modulus;

/// The primitives every gadget is written with.
///
/// `add`, `sub`, `neg`, `cmul` and `constant` are free (no ciphertext);
/// `project` costs `m - 1` ciphertexts for input modulus `m`; `mul_bit`
/// costs `p + 1` for a wire of modulus `p`.
pub trait Backend {
    /// What a wire is on this backend.
    type Wire: Clone;

    /// The modulus of a wire.
    fn modulus_of(&self, wire: &Self::Wire) -> Modulus;

    /// A wire carrying the public constant `value mod p` (free: the
    /// evaluator derives it from the garbler's one-label of `p`).
    fn constant(&mut self, value: u16, modulus: Modulus) -> Result<Self::Wire, Error>;

    /// `a + b mod p`.
    fn add(&mut self, a: &Self::Wire, b: &Self::Wire) -> Result<Self::Wire, Error>;

    /// `a - b mod p`.
    fn sub(&mut self, a: &Self::Wire, b: &Self::Wire) -> Result<Self::Wire, Error>;

    /// `-a mod p`.
    fn neg(&mut self, a: &Self::Wire) -> Result<Self::Wire, Error>;

    /// `c · a mod p` for a public constant `c`.
    fn cmul(&mut self, a: &Self::Wire, c: u16) -> Result<Self::Wire, Error>;

    /// `table(a) mod n`: a projection gate into modulus `out`. The table is
    /// public and evaluated at every input by the garbler.
    fn project(&mut self, a: &Self::Wire, out: Modulus, table: impl Fn(u16) -> u16) -> Result<Self::Wire, Error>;

    /// Several projections of one wire, in order: projection `j` maps `a`
    /// through `table(j, ·)` into modulus `outs[j]`, and its result goes to
    /// `each(self, j, result)` before projection `j + 1` starts.
    ///
    /// The same gates, identifiers and rows as calling
    /// [`Backend::project`] once per entry (this default does exactly
    /// that); the garbler and the evaluator override it to pack and
    /// half-hash the wire's labels once for all the projections (the
    /// tweak enters only the second AES call of the hash).
    fn project_many(
        &mut self,
        a: &Self::Wire,
        outs: &[Modulus],
        table: impl Fn(usize, u16) -> u16,
        each: impl FnMut(&mut Self, usize, &Self::Wire) -> Result<(), Error>,
    ) -> Result<(), Error>
    where
        Self: Sized,
    {
        project_each(self, a, outs, table, each)
    }

    /// `x · b mod p` where `b` is a wire of modulus 2 (a bit).
    fn mul_bit(&mut self, x: &Self::Wire, bit: &Self::Wire) -> Result<Self::Wire, Error>;

    /// `a + c mod p` for a public constant `c`.
    fn add_constant(&mut self, a: &Self::Wire, c: u16) -> Result<Self::Wire, Error> {
        let m = self.modulus_of(a);
        let k = self.constant(c, m)?;
        self.add(a, &k)
    }

    /// `a += b mod p`, in place. The same as [`Backend::add`]; backends whose
    /// wires are large override it to save the copy (gadgets sum many
    /// wires into one accumulator).
    fn add_assign(&mut self, a: &mut Self::Wire, b: &Self::Wire) -> Result<(), Error> {
        *a = self.add(a, b)?;
        Ok(())
    }
}

/// [`Backend::project_many`] as separate [`Backend::project`] calls: the
/// default, and the fallback of backends that override it.
pub(crate) fn project_each<B: Backend>(
    b: &mut B,
    a: &B::Wire,
    outs: &[Modulus],
    table: impl Fn(usize, u16) -> u16,
    mut each: impl FnMut(&mut B, usize, &B::Wire) -> Result<(), Error>,
) -> Result<(), Error> {
    for (j, &out) in outs.iter().enumerate() {
        let w = b.project(a, out, |x| table(j, x))?;
        each(b, j, &w)?;
    }
    Ok(())
}

pub(crate) fn same_modulus(a: Modulus, b: Modulus) -> Result<Modulus, Error> {
    if a == b { Ok(a) } else { Err(Error::ModulusMismatch { left: a.value(), right: b.value() }) }
}

/// A plaintext wire: a value and its modulus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlainWire {
    value: u16,
    modulus: Modulus,
}

impl PlainWire {
    /// `value mod p` as a wire.
    pub fn new(value: u16, modulus: Modulus) -> PlainWire {
        PlainWire { value: modulus.reduce(value as u32), modulus }
    }

    /// The value, in `0..p`.
    pub fn value(&self) -> u16 {
        self.value
    }

    /// The modulus.
    pub fn modulus(&self) -> Modulus {
        self.modulus
    }
}

/// The plaintext reference backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plaintext;

impl Backend for Plaintext {
    type Wire = PlainWire;

    fn modulus_of(&self, wire: &PlainWire) -> Modulus {
        wire.modulus
    }

    fn constant(&mut self, value: u16, modulus: Modulus) -> Result<PlainWire, Error> {
        Ok(PlainWire::new(value, modulus))
    }

    fn add(&mut self, a: &PlainWire, b: &PlainWire) -> Result<PlainWire, Error> {
        let m = same_modulus(a.modulus, b.modulus)?;
        Ok(PlainWire { value: m.add(a.value, b.value), modulus: m })
    }

    fn sub(&mut self, a: &PlainWire, b: &PlainWire) -> Result<PlainWire, Error> {
        let m = same_modulus(a.modulus, b.modulus)?;
        Ok(PlainWire { value: m.sub(a.value, b.value), modulus: m })
    }

    fn neg(&mut self, a: &PlainWire) -> Result<PlainWire, Error> {
        Ok(PlainWire { value: a.modulus.neg(a.value), modulus: a.modulus })
    }

    fn cmul(&mut self, a: &PlainWire, c: u16) -> Result<PlainWire, Error> {
        let m = a.modulus;
        Ok(PlainWire { value: m.mul(a.value, m.reduce(c as u32)), modulus: m })
    }

    fn project(&mut self, a: &PlainWire, out: Modulus, table: impl Fn(u16) -> u16) -> Result<PlainWire, Error> {
        if a.modulus.value() > crate::MAX_PROJECTION_INPUT {
            return Err(Error::ProjectionInputTooLarge(a.modulus.value()));
        }
        Ok(PlainWire::new(table(a.value), out))
    }

    fn mul_bit(&mut self, x: &PlainWire, bit: &PlainWire) -> Result<PlainWire, Error> {
        if bit.modulus.value() != 2 {
            return Err(Error::NotABit(bit.modulus.value()));
        }
        if x.modulus.value() > crate::MAX_PROJECTION_INPUT {
            return Err(Error::ProjectionInputTooLarge(x.modulus.value()));
        }
        Ok(PlainWire { value: x.modulus.mul(x.value, bit.value), modulus: x.modulus })
    }
}

/// Most distinct moduli a [`CostCounter`] records.
pub const MAX_COUNTED_MODULI: usize = 64;

/// The cost-counting backend: wires are their moduli; primitives add up
/// ciphertexts and record every modulus that any wire uses.
#[derive(Clone, Debug, Default)]
pub struct CostCounter {
    /// Ciphertexts (16-byte rows) the garbler would emit.
    pub ciphertexts: u64,
    /// Projection gates (each `mul_bit` counts two, plus one row gate).
    pub projections: u64,
    /// Multiply-by-bit gates.
    pub mul_bits: u64,
    /// Gate identifiers the garbler and evaluator would consume (one per
    /// `project`, one per `mul_bit`): what a caller reserves per gadget call
    /// when it garbles many calls in parallel with `GateCounter::starting_at`.
    pub gates: u64,
    moduli: heapless::Vec<u16, MAX_COUNTED_MODULI>,
    overflowed: bool,
}

impl CostCounter {
    /// A counter at zero.
    pub fn new() -> CostCounter {
        CostCounter::default()
    }

    /// Bytes of garbled material: 16 per ciphertext.
    pub fn bytes(&self) -> u64 {
        self.ciphertexts * 16
    }

    /// Every modulus used, in first-use order. `Err(TooManyModuli)` if more
    /// than [`MAX_COUNTED_MODULI`] were seen (the list is then incomplete).
    pub fn moduli(&self) -> Result<&[u16], Error> {
        if self.overflowed { Err(Error::TooManyModuli) } else { Ok(&self.moduli) }
    }

    fn record(&mut self, m: Modulus) {
        if !self.moduli.contains(&m.value()) && self.moduli.push(m.value()).is_err() {
            self.overflowed = true;
        }
    }

    /// A wire of modulus `m` entering the circuit (an input).
    pub fn input(&mut self, m: Modulus) -> Modulus {
        self.record(m);
        m
    }
}

impl Backend for CostCounter {
    type Wire = Modulus;

    fn modulus_of(&self, wire: &Modulus) -> Modulus {
        *wire
    }

    fn constant(&mut self, _value: u16, modulus: Modulus) -> Result<Modulus, Error> {
        self.record(modulus);
        Ok(modulus)
    }

    fn add(&mut self, a: &Modulus, b: &Modulus) -> Result<Modulus, Error> {
        same_modulus(*a, *b)
    }

    fn sub(&mut self, a: &Modulus, b: &Modulus) -> Result<Modulus, Error> {
        same_modulus(*a, *b)
    }

    fn neg(&mut self, a: &Modulus) -> Result<Modulus, Error> {
        Ok(*a)
    }

    fn cmul(&mut self, a: &Modulus, _c: u16) -> Result<Modulus, Error> {
        Ok(*a)
    }

    fn project(&mut self, a: &Modulus, out: Modulus, _table: impl Fn(u16) -> u16) -> Result<Modulus, Error> {
        if a.value() > crate::MAX_PROJECTION_INPUT {
            return Err(Error::ProjectionInputTooLarge(a.value()));
        }
        self.record(*a);
        self.record(out);
        self.ciphertexts += a.value() as u64 - 1;
        self.projections += 1;
        self.gates += 1;
        Ok(out)
    }

    fn mul_bit(&mut self, x: &Modulus, bit: &Modulus) -> Result<Modulus, Error> {
        if bit.value() != 2 {
            return Err(Error::NotABit(bit.value()));
        }
        if x.value() > crate::MAX_PROJECTION_INPUT {
            return Err(Error::ProjectionInputTooLarge(x.value()));
        }
        self.record(*x);
        self.record(*bit);
        self.ciphertexts += x.value() as u64 + 1;
        self.projections += 2;
        self.mul_bits += 1;
        self.gates += 1;
        Ok(*x)
    }
}
