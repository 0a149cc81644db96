//! The garbler: its keys (one offset and one constant-one wire per modulus)
//! and the [`Backend`] that garbles gadgets into a material sink.

use crate::backend::Backend;
use crate::block::Block;
use crate::delta::{Delta, ZeroLabel};
use crate::error::Error;
use crate::hash::{Domain, FixedKeyHash, Tweak};
use crate::label::Label;
use crate::material::MaterialSink;
use crate::modulus::{MAX_PROJECTION_INPUT, Modulus};
use crate::projection;
use rand_core::CryptoRng;
use subtle::{Choice, ConstantTimeEq, CtOption};
use zeroize::Zeroize;

/// Default capacity of a key set: distinct moduli per circuit.
pub const DEFAULT_MAX_MODULI: usize = 32;

struct KeyEntry {
    delta: Delta,
    one: ZeroLabel,
}

/// The garbler's secrets for one circuit: for each modulus the offset `Δ_p`
/// and the zero label `O_p` of the wire that carries the constant 1.
///
/// One `GarblerKeys` per circuit (per inference): offsets are never reused.
/// Everything is zeroised on drop. `N` bounds the number of moduli (no
/// allocation); the default is [`DEFAULT_MAX_MODULI`].
pub struct GarblerKeys<const N: usize = DEFAULT_MAX_MODULI> {
    entries: heapless::Vec<KeyEntry, N>,
}

impl<const N: usize> core::fmt::Debug for GarblerKeys<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("GarblerKeys(")?;
        for e in &self.entries {
            write!(f, "{} ", e.delta.modulus().value())?;
        }
        f.write_str("<redacted>)")
    }
}

impl<const N: usize> GarblerKeys<N> {
    /// Fresh offsets and one-wires for every modulus in `moduli` (repeats are
    /// ignored). Fails with [`Error::TooManyModuli`] beyond `N`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R, moduli: &[Modulus]) -> Result<Self, Error> {
        let mut keys = GarblerKeys { entries: heapless::Vec::new() };
        for &m in moduli {
            if keys.entries.iter().any(|e| e.delta.modulus() == m) {
                continue;
            }
            let entry = KeyEntry { delta: Delta::random(m, rng), one: ZeroLabel::random(m, rng) };
            keys.entries.push(entry).map_err(|_| Error::TooManyModuli)?;
        }
        log_info!("garbler keys: {=usize} moduli", keys.entries.len());
        Ok(keys)
    }

    fn entry(&self, m: Modulus) -> Result<&KeyEntry, Error> {
        self.entries.iter().find(|e| e.delta.modulus() == m).ok_or(Error::MissingDelta(m.value()))
    }

    /// The offset of modulus `m`.
    pub fn delta(&self, m: Modulus) -> Result<&Delta, Error> {
        Ok(&self.entry(m)?.delta)
    }

    /// The moduli this key set covers.
    pub fn moduli(&self) -> impl Iterator<Item = Modulus> + '_ {
        self.entries.iter().map(|e| e.delta.modulus())
    }

    /// The evaluator's one-labels `O_p + Δ_p`: the only label of the
    /// constant-one wire it ever holds. Part of the offline material.
    pub fn one_labels(&self) -> OneLabels<N> {
        let mut ones = OneLabels { labels: heapless::Vec::new() };
        for e in &self.entries {
            let mut l = e.one.as_label().clone();
            l.add_assign_unchecked(e.delta.as_label());
            // Capacity is the same N, so this cannot fail.
            let _ = ones.labels.push(l);
        }
        ones
    }

    /// A fresh random zero label for an input wire of modulus `m`.
    pub fn input<R: CryptoRng + ?Sized>(&self, m: Modulus, rng: &mut R) -> Result<ZeroLabel, Error> {
        self.entry(m)?;
        Ok(ZeroLabel::random(m, rng))
    }

    /// The label the evaluator receives for `value` on the input wire `zero`.
    pub fn encode(&self, zero: &ZeroLabel, value: u16) -> Result<Label, Error> {
        zero.encode(value, self.delta(zero.modulus())?)
    }

    /// Decodes and **verifies** a label returned by the evaluator for the
    /// output wire `zero`: the value `x` such that `returned` is exactly the
    /// packing of `zero + x·Δ`. Anything else (a forged, corrupted, or
    /// foreign label) is [`Error::AuthenticityCheckFailed`].
    ///
    /// The value is read off the colour; the comparison with the one
    /// expected label is constant-time, and no step branches on the zero
    /// label or the offset.
    pub fn decode(&self, zero: &ZeroLabel, returned: Block) -> Result<u16, Error> {
        Option::from(self.decode_ct(zero, returned)?).ok_or_else(|| {
            log_warn!("decode: output label of {} failed the authenticity check", zero.modulus());
            Error::AuthenticityCheckFailed
        })
    }

    /// [`GarblerKeys::decode`] without the final branch: the candidate value
    /// and, as a `subtle::Choice`, whether the label is authentic. For
    /// callers that must keep even the verdict's timing data-independent
    /// (and for the constant-time check, which declassifies the verdict
    /// explicitly). `Err` only for a modulus without keys.
    pub fn decode_ct(&self, zero: &ZeroLabel, returned: Block) -> Result<CtOption<u16>, Error> {
        let m = zero.modulus();
        let delta = self.delta(m)?;
        // The returned label is public (the evaluator sent it).
        let Ok(label) = Label::from_block(m, returned) else {
            return Ok(CtOption::new(0, Choice::from(0)));
        };
        let x = m.sub(label.colour(), zero.as_label().colour());
        let expected = zero.encode(x, delta)?;
        Ok(CtOption::new(x, expected.to_block().ct_eq(&returned)))
    }
}

/// The evaluator's labels of the constant-one wires, one per modulus.
#[derive(Clone, Debug)]
pub struct OneLabels<const N: usize = DEFAULT_MAX_MODULI> {
    labels: heapless::Vec<Label, N>,
}

impl<const N: usize> Default for OneLabels<N> {
    fn default() -> Self {
        OneLabels { labels: heapless::Vec::new() }
    }
}

impl<const N: usize> OneLabels<N> {
    /// The one-label of modulus `m`.
    pub fn get(&self, m: Modulus) -> Result<&Label, Error> {
        self.labels.iter().find(|l| l.modulus() == m).ok_or(Error::MissingDelta(m.value()))
    }

    /// All one-labels, in the garbler's modulus order.
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// Adds a received one-label (e.g. when decoding offline material).
    /// Rejects a second label for the same modulus.
    pub fn push(&mut self, label: Label) -> Result<(), Error> {
        if self.labels.iter().any(|l| l.modulus() == label.modulus()) {
            return Err(Error::InvalidParameter);
        }
        self.labels.push(label).map_err(|_| Error::TooManyModuli)
    }
}

/// Allocates gate identifiers; shared by garbler and evaluator so that both
/// number gates identically.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GateCounter(u64);

impl GateCounter {
    /// Starts numbering at `first`.
    pub const fn starting_at(first: u64) -> Self {
        GateCounter(first)
    }

    /// The next identifier to be handed out.
    pub const fn peek(&self) -> u64 {
        self.0
    }

    /// Hands out one identifier.
    pub fn next_id(&mut self) -> Result<u64, Error> {
        let id = self.0;
        self.0 = id.checked_add(1).ok_or(Error::GateIdsExhausted)?;
        Ok(id)
    }
}

/// The garbling backend: wires are [`ZeroLabel`]s; every gate's rows go to
/// the sink `S` in gate order.
pub struct Garbler<'k, S: MaterialSink, const N: usize = DEFAULT_MAX_MODULI> {
    hash: &'k FixedKeyHash,
    keys: &'k GarblerKeys<N>,
    gates: GateCounter,
    sink: S,
}

impl<'k, S: MaterialSink, const N: usize> Garbler<'k, S, N> {
    /// A garbler numbering gates from 0.
    pub fn new(hash: &'k FixedKeyHash, keys: &'k GarblerKeys<N>, sink: S) -> Self {
        Self::with_gates(hash, keys, GateCounter::default(), sink)
    }

    /// A garbler numbering gates from `gates` (to garble disjoint parts of
    /// one circuit in parallel, give each part its own identifier range).
    pub fn with_gates(hash: &'k FixedKeyHash, keys: &'k GarblerKeys<N>, gates: GateCounter, sink: S) -> Self {
        Garbler { hash, keys, gates, sink }
    }

    /// The keys being garbled under.
    pub fn keys(&self) -> &GarblerKeys<N> {
        self.keys
    }

    /// The gate counter (the next identifier).
    pub fn gates(&self) -> GateCounter {
        self.gates
    }

    /// The sink, for inspection.
    pub fn sink(&mut self) -> &mut S {
        &mut self.sink
    }

    /// Gives back the sink.
    pub fn into_sink(self) -> S {
        self.sink
    }
}

impl<S: MaterialSink, const N: usize> Backend for Garbler<'_, S, N> {
    type Wire = ZeroLabel;

    fn modulus_of(&self, wire: &ZeroLabel) -> Modulus {
        wire.modulus()
    }

    fn constant(&mut self, value: u16, modulus: Modulus) -> Result<ZeroLabel, Error> {
        // The constant c is c times the one-wire: zero label c·O_p.
        let one = &self.keys.entry(modulus)?.one;
        Ok(ZeroLabel::new(one.as_label().cmul(value)))
    }

    fn add(&mut self, a: &ZeroLabel, b: &ZeroLabel) -> Result<ZeroLabel, Error> {
        Ok(ZeroLabel::new(a.as_label().add(b.as_label())?))
    }

    fn sub(&mut self, a: &ZeroLabel, b: &ZeroLabel) -> Result<ZeroLabel, Error> {
        Ok(ZeroLabel::new(a.as_label().sub(b.as_label())?))
    }

    fn neg(&mut self, a: &ZeroLabel) -> Result<ZeroLabel, Error> {
        Ok(ZeroLabel::new(a.as_label().neg()))
    }

    fn add_assign(&mut self, a: &mut ZeroLabel, b: &ZeroLabel) -> Result<(), Error> {
        crate::backend::same_modulus(a.modulus(), b.modulus())?;
        a.as_label_mut().add_assign_unchecked(b.as_label());
        Ok(())
    }

    fn add_constant(&mut self, a: &ZeroLabel, c: u16) -> Result<ZeroLabel, Error> {
        // The zero label of a + c is A + c·O_p (constant-time in c).
        let one = &self.keys.entry(a.modulus())?.one;
        let mut out = a.as_label().clone();
        out.add_scaled_unchecked(one.as_label(), c);
        Ok(ZeroLabel::new(out))
    }

    fn cmul(&mut self, a: &ZeroLabel, c: u16) -> Result<ZeroLabel, Error> {
        Ok(ZeroLabel::new(a.as_label().cmul(c)))
    }

    fn project(&mut self, a: &ZeroLabel, out: Modulus, table: impl Fn(u16) -> u16) -> Result<ZeroLabel, Error> {
        let delta_in = self.keys.delta(a.modulus())?;
        let delta_out = self.keys.delta(out)?;
        let gate = self.gates.next_id()?;
        let tweak = Tweak::new(Domain::Projection, gate, 0);
        projection::garble(self.hash, tweak, a, delta_in, delta_out, table, &mut self.sink)
    }

    fn project_many(
        &mut self,
        a: &ZeroLabel,
        outs: &[Modulus],
        table: impl Fn(usize, u16) -> u16,
        mut each: impl FnMut(&mut Self, usize, &ZeroLabel) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let m = a.modulus().value() as usize;
        if m > projection::SHARED_KEYS_MAX_INPUT || outs.len() < 2 {
            return crate::backend::project_each(self, a, outs, table, each);
        }
        // The wire's labels are packed and half-hashed once for all the
        // projections (the tweak enters only the second AES call).
        let mut first = [Block::ZERO; projection::SHARED_KEYS_MAX_INPUT];
        projection::key_first_halves(self.hash, a, self.keys.delta(a.modulus())?, &mut first[..m]);
        // Every output goes through one buffer, lent to `each`.
        let mut result = ZeroLabel::new(Label::zero(Modulus::TWO));
        let mut status = Ok(());
        for (j, &out) in outs.iter().enumerate() {
            status = self.keys.delta(out).and_then(|delta_out| {
                let tweak = Tweak::new(Domain::Projection, self.gates.next_id()?, 0);
                let (hash, sink) = (self.hash, &mut self.sink);
                let table = |x| table(j, x);
                projection::garble_with_first_halves(hash, tweak, &first[..m], a, delta_out, table, sink, &mut result)
            });
            status = status.and_then(|()| each(self, j, &result));
            if status.is_err() {
                break;
            }
        }
        first[..].zeroize();
        status
    }

    fn mul_bit(&mut self, x: &ZeroLabel, bit: &ZeroLabel) -> Result<ZeroLabel, Error> {
        let delta_x = self.keys.delta(x.modulus())?;
        let delta_b = self.keys.delta(bit.modulus())?;
        let gate = self.gates.next_id()?;
        let mut z = ZeroLabel::new(Label::zero(x.modulus()));
        garble_mul_bit(self.hash, gate, x, bit, delta_x, delta_b, &mut self.sink, &mut z)?;
        Ok(z)
    }
}

/// The garbler's multiply-by-bit gate `x·b mod p` (gate identifier `gate`,
/// `p + 1` rows to `sink`, the output zero label to `z`): the one schedule
/// that [`Garbler`] and the lane garbler ([`crate::lanes`]) share.
///
/// Two projections of the bit (tweak subs 0 and 1) give `B'` carrying
/// `b mod p` and `T` carrying `-colour(X_0)·b`; the `p - 1` rows keyed by `X`
/// (sub 2) decrypt to `R_0 - γ·B'_0`. The evaluator adds `γ·B' + T` and
/// obtains `R_0 + T_0 + (γ - colour(X_0))·b·Δ = Z_0 + x·b·Δ`. The second
/// table is secret; projection garbling is constant-time in table values.
#[allow(clippy::too_many_arguments)]
pub(crate) fn garble_mul_bit<S: MaterialSink + ?Sized>(
    hash: &FixedKeyHash,
    gate: u64,
    x: &ZeroLabel,
    bit: &ZeroLabel,
    delta_x: &Delta,
    delta_b: &Delta,
    sink: &mut S,
    z: &mut ZeroLabel,
) -> Result<(), Error> {
    garble_mul_bit_in(hash, gate, x, bit, delta_x, delta_b, sink, z, &mut MulBitScratch::new())
}

/// The temporaries of [`garble_mul_bit`], reusable across the gates of a
/// batch (secret; cleared on drop).
pub(crate) struct MulBitScratch {
    b_lift: ZeroLabel,
    t: ZeroLabel,
    buffer: projection::RowBuffer,
}

impl MulBitScratch {
    pub(crate) fn new() -> MulBitScratch {
        MulBitScratch {
            b_lift: ZeroLabel::new(Label::zero(Modulus::TWO)),
            t: ZeroLabel::new(Label::zero(Modulus::TWO)),
            buffer: projection::RowBuffer::new(),
        }
    }
}

/// [`garble_mul_bit`] with its temporaries in `scratch`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn garble_mul_bit_in<S: MaterialSink + ?Sized>(
    hash: &FixedKeyHash,
    gate: u64,
    x: &ZeroLabel,
    bit: &ZeroLabel,
    delta_x: &Delta,
    delta_b: &Delta,
    sink: &mut S,
    z: &mut ZeroLabel,
    scratch: &mut MulBitScratch,
) -> Result<(), Error> {
    let p = x.modulus();
    if bit.modulus().value() != 2 {
        return Err(Error::NotABit(bit.modulus().value()));
    }
    if p.value() > MAX_PROJECTION_INPUT {
        return Err(Error::ProjectionInputTooLarge(p.value()));
    }
    if delta_x.modulus() != p || delta_b.modulus() != bit.modulus() {
        return Err(Error::ModulusMismatch { left: p.value(), right: delta_x.modulus().value() });
    }
    let colour_x = x.as_label().colour();
    let MulBitScratch { b_lift, t, buffer } = scratch;
    if b_lift.modulus() != p {
        *b_lift = ZeroLabel::new(Label::zero(p));
        *t = ZeroLabel::new(Label::zero(p));
    }
    let tweak = |sub| Tweak::new(Domain::MulBit, gate, sub);
    projection::garble_into_in(hash, tweak(0), bit, delta_b, delta_x, |b| b, sink, b_lift, buffer)?;
    let minus_cx = p.neg(colour_x);
    let table = |b| p.mul(minus_cx, b);
    projection::garble_into_in(hash, tweak(1), bit, delta_b, delta_x, table, sink, t, buffer)?;
    let status = projection::garble_rows(
        hash,
        tweak(2),
        projection::Keys::Walk(x, delta_x),
        b_lift.as_label(),
        |c| p.neg(p.reduce(c as u32)),
        sink,
        z.as_label_mut(),
        buffer,
    );
    if status.is_err() {
        z.as_label_mut().zeroize();
        return status;
    }
    z.as_label_mut().add_assign_unchecked(t.as_label());
    Ok(())
}
