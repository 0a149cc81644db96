//! Projection gates `φ: Z_m → Z_n` with row reduction, and the row
//! machinery they share with the multiply-by-bit gate.
//!
//! **Garbling.** For an input wire with zero label `A` (colour `a`) the
//! garbler walks the `m` input labels in *colour* order, `K_c = A + (c - a)·Δ_m`,
//! so that row `c` is the row the evaluator opens when its label has colour
//! `c`. Row 0 is implicit: the output zero label is chosen so that the
//! evaluator's row-0 output is `from_hash(H(t, K_0))`. Rows `1..m` are
//! `pack(out_c) ⊕ H(t, K_c)`: a one-time pad over the injective 128-bit
//! packing, so each ciphertext is 16 bytes and statistically hides its row.
//!
//! **Constant time.** The colour `a` is secret (it would tell the evaluator's
//! value from its colour). Walking in colour order makes the row position
//! public, so the only secret-indexed step is reading `φ(c - a)`; the table is
//! rotated by `a` with a constant-time barrel shifter (one conditional
//! rotation per bit of `a`) before the walk. `φ`'s values are only ever
//! multiplied into `Δ_n`, never used as indices or branch conditions, so the
//! table itself may be secret (the multiply-by-bit gate uses that).

use crate::block::Block;
use crate::delta::{Delta, ZeroLabel};
use crate::error::Error;
use crate::hash::{FixedKeyHash, HASH_LANES, Tweak};
use crate::label::{Label, Powers};
#[cfg(target_pointer_width = "64")]
use crate::label::{SHORT_DIGITS, ShortDigits, oct_powers, short_add, short_pack, short_scaled_sum};
use crate::material::{MaterialSink, MaterialSource};
use crate::modulus::{MAX_PROJECTION_INPUT, Modulus};
use crate::rotate::{DoubledTable, rotate_constant_time, rotate_doubled};
use zeroize::Zeroize;

/// Ciphertexts a projection with input modulus `m` costs: `m - 1`.
pub const fn projection_rows(input: Modulus) -> usize {
    input.value() as usize - 1
}

/// Rows a garbler handles per batch: a CRT prime's gate (m <= 32) in one,
/// so its hashes run through AES together.
const ROW_BATCH: usize = 32;

/// The buffer [`garble_rows`] hashes and builds rows in (512 bytes). It
/// holds secrets (key hashes) between uses and is zeroised on drop: a batch
/// of gates reuses one, so it is neither filled nor cleared per gate.
pub(crate) struct RowBuffer([Block; ROW_BATCH]);

impl RowBuffer {
    pub(crate) const fn new() -> RowBuffer {
        RowBuffer([Block::ZERO; ROW_BATCH])
    }
}

impl Drop for RowBuffer {
    fn drop(&mut self) {
        self.0[..].zeroize();
    }
}

/// Where the row keys' hashes come from.
pub(crate) enum Keys<'a> {
    /// Walk the labels of the wire with this zero label and offset in colour
    /// order from the colour-0 label (`K_{c+1} = K_c + Δ`), packing and
    /// hashing each.
    Walk(&'a ZeroLabel, &'a Delta),
    /// `π(pack(K_c))` for every colour `c`, already computed
    /// ([`key_first_halves`]): only the tweaked half of the hash is left.
    FirstHalf(&'a [Block]),
}

/// The keys of [`garble_rows`]'s general path: the current label of the
/// walk and the wire's offset, or the first hash halves. A stack local of
/// one call (no allocation to box the label into).
#[allow(clippy::large_enum_variant)]
enum KeyWalk<'a> {
    Label(Label, &'a Delta),
    Hashed(&'a [Block]),
}

/// Garbles the rows keyed by the `m` labels of a wire (`keys`, in colour
/// order): row `c` encrypts `R_0 + scale(c)·offset` under `K_c`, where
/// `R_0 = from_hash(H(t, K_0))` is the implicit row 0 (its output needs no
/// ciphertext). `scale` is called with public `c >= 1` only, must return a
/// value reduced mod the output modulus, and may return secret values (it
/// is only ever multiplied into `offset`). Writes `R_0` to
/// `r0` (zeroised on error); the output modulus is `offset`'s.
///
/// Labels are 312-byte values, so everything here works in the caller's
/// storage rather than moving labels in and out; on 64-bit targets, short
/// moduli (both sides at most 32 digits) go through `garble_rows_short`,
/// which keeps its labels in registers. Hashes and rows go through
/// `buffer`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn garble_rows<S: MaterialSink + ?Sized, F: Fn(usize) -> u16>(
    hash: &FixedKeyHash,
    tweak: Tweak,
    keys: Keys<'_>,
    offset: &Label,
    scale: F,
    sink: &mut S,
    r0: &mut Label,
    buffer: &mut RowBuffer,
) -> Result<(), Error> {
    let out_modulus = offset.modulus();
    // The register path wants vector registers to keep its digit arrays in:
    // 64-bit targets. On 32-bit microcontrollers it would only spill (and
    // cost the Cortex-M4 garbler 34 KB of flash and 10 KB of stack).
    #[cfg(target_pointer_width = "64")]
    if let Keys::Walk(input, delta_in) = keys {
        let (a, d) = (input.as_label(), delta_in.as_label());
        if let (Some(mut k), Some(mut d), Some(mut o)) = (a.short_digits(), d.short_digits(), offset.short_digits()) {
            // The colour-0 key, A - colour(A)·Δ (constant-time in the colour).
            let m_in = a.modulus();
            k = short_scaled_sum::<false>(&k, &d, m_in.neg(a.colour()), m_in);
            // Small output moduli reduce the row outputs without a
            // correction step (public choice).
            let (keys, offsets, rows) = ((&mut k, &d, m_in), (&o, out_modulus), (sink, r0, buffer));
            let status = if out_modulus.value() <= Modulus::MAX_EXACT16 {
                garble_rows_short::<S, F, true>(hash, tweak, keys, offsets, scale, rows)
            } else {
                garble_rows_short::<S, F, false>(hash, tweak, keys, offsets, scale, rows)
            };
            // Slices clear in bulk (an array's `zeroize` writes digit by digit).
            k[..].zeroize();
            d[..].zeroize();
            o[..].zeroize();
            return status;
        }
    }
    // The walked key starts at colour 0 (a first-half cache packed its own).
    let (mut keys, m) = match keys {
        Keys::Walk(input, delta) => {
            (KeyWalk::Label(input.colour_zero_key(delta), delta), input.modulus().value() as usize)
        }
        Keys::FirstHalf(first) => (KeyWalk::Hashed(first), first.len()),
    };
    let key_powers = Powers::new(match &keys {
        KeyWalk::Label(key, _) => key.modulus(),
        KeyWalk::Hashed(_) => Modulus::TWO,
    });
    let out_powers = Powers::new(out_modulus);
    let hashes = &mut buffer.0;
    let mut rows = [Block::ZERO; ROW_BATCH];
    let mut out = Label::zero(out_modulus);
    let mut c = 0;
    let mut status = Ok(());
    while c < m && status.is_ok() {
        let len = ROW_BATCH.min(m - c);
        match &mut keys {
            KeyWalk::Label(key, delta_in) => {
                for h in hashes[..len].iter_mut() {
                    *h = key.to_block_with(&key_powers);
                    key.add_assign_unchecked(delta_in.as_label());
                }
                hash.hash_batch_same_tweak(tweak, &mut hashes[..len]);
            }
            KeyWalk::Hashed(first) => hash.finish_same_tweak(tweak, &first[c..c + len], &mut hashes[..len]),
        }
        let mut written = 0;
        for (i, h) in hashes[..len].iter().enumerate() {
            let row = c + i;
            if row == 0 {
                r0.set_from_hash(out_modulus, *h);
            } else {
                out.set_scaled_sum(r0, offset, scale(row));
                rows[written] = out.to_block_with(&out_powers) ^ *h;
                written += 1;
            }
        }
        status = sink.put_rows(&rows[..written]);
        c += len;
    }
    // Clear the secrets on every path, the error path included.
    if let KeyWalk::Label(key, _) = &mut keys {
        key.zeroize();
    }
    out.zeroize();
    if status.is_err() {
        r0.zeroize();
    }
    status
}

/// [`garble_rows`] for walked keys where the key, its offset and the row
/// offset all have [`ShortDigits`]: the same rows, computed on digit arrays
/// that stay in vector registers (key walk, row outputs and packing without
/// a trip through memory), and each batch's rows written over its hashes.
/// The caller zeroises the arrays it passed (the row buffer on drop).
#[cfg(target_pointer_width = "64")]
fn garble_rows_short<S: MaterialSink + ?Sized, F: Fn(usize) -> u16, const EXACT: bool>(
    hash: &FixedKeyHash,
    tweak: Tweak,
    (key, delta_in, key_modulus): (&mut ShortDigits, &ShortDigits, Modulus),
    (offset, out_modulus): (&ShortDigits, Modulus),
    scale: F,
    (sink, r0, RowBuffer(blocks)): (&mut S, &mut Label, &mut RowBuffer),
) -> Result<(), Error> {
    let m = key_modulus.value() as usize;
    let (pk, po) = (key_modulus.value(), out_modulus.value());
    let (key_oct, out_oct) = (oct_powers(pk), oct_powers(po));
    let mut base: ShortDigits = [0; SHORT_DIGITS];
    let mut out: ShortDigits = [0; SHORT_DIGITS];
    let mut c = 0;
    let mut status = Ok(());
    while c < m && status.is_ok() {
        let len = ROW_BATCH.min(m - c);
        for b in blocks[..len].iter_mut() {
            *b = short_pack(key, pk, &key_oct);
            short_add(key, delta_in, pk);
        }
        hash.hash_batch_same_tweak(tweak, &mut blocks[..len]);
        // Row i's ciphertext goes to blocks[written], written <= i: every
        // hash is read before its slot is overwritten.
        let mut written = 0;
        for i in 0..len {
            let h = blocks[i];
            if c + i == 0 {
                r0.set_from_hash(out_modulus, h);
                base = r0.short_digits().unwrap_or(base);
                continue;
            }
            // Scales are reduced (see `garble_rows`).
            let y = scale(c + i);
            debug_assert!(y < po);
            out = short_scaled_sum::<EXACT>(&base, offset, y, out_modulus);
            blocks[written] = short_pack(&out, po, &out_oct) ^ h;
            written += 1;
        }
        status = sink.put_rows(&blocks[..written]);
        c += len;
    }
    base[..].zeroize();
    out[..].zeroize();
    if status.is_err() {
        r0.zeroize();
    }
    status
}

/// Most labels a wire may have for the garbler to share its keys' first
/// hash halves between projections (16 bytes of stack each).
pub(crate) const SHARED_KEYS_MAX_INPUT: usize = 64;

/// `first[c] = π(pack(K_c))` for every colour `c` of the wire with zero label
/// `input` (`m <= first.len()` labels, offset `delta_in`): the half of
/// `H(t, K_c) = π(π(K_c) ⊕ t) ⊕ π(K_c)` that does not depend on the tweak,
/// which every projection of the wire shares.
pub(crate) fn key_first_halves(hash: &FixedKeyHash, input: &ZeroLabel, delta_in: &Delta, first: &mut [Block]) {
    let m_in = input.modulus();
    let m = (m_in.value() as usize).min(first.len());
    let mut key = input.colour_zero_key(delta_in);
    let powers = Powers::new(m_in);
    for f in first[..m].iter_mut() {
        *f = key.to_block_with(&powers);
        key.add_assign_unchecked(delta_in.as_label());
    }
    key.zeroize();
    hash.permute(&mut first[..m]);
}

/// The evaluator's side of [`garble_rows`]: consumes the `m - 1` rows and
/// decrypts the one its label's colour selects.
pub(crate) fn evaluate_rows<S: MaterialSource + ?Sized>(
    hash: &FixedKeyHash,
    tweak: Tweak,
    key: &Label,
    out_modulus: Modulus,
    source: &mut S,
) -> Result<Label, Error> {
    let mut out = Label::zero(out_modulus);
    evaluate_rows_into(hash, tweak, key, out_modulus, source, &mut out)?;
    Ok(out)
}

/// [`evaluate_rows`] into `out` (labels are 312-byte values: the
/// evaluator's hot paths write in place rather than return them).
pub(crate) fn evaluate_rows_into<S: MaterialSource + ?Sized>(
    hash: &FixedKeyHash,
    tweak: Tweak,
    key: &Label,
    out_modulus: Modulus,
    source: &mut S,
    out: &mut Label,
) -> Result<(), Error> {
    open_row(hash.hash(tweak, key.to_block()), key, out_modulus, source, out)
}

/// Consumes a gate's `m - 1` rows and writes to `out` the output of the row
/// that `key`'s colour selects, given the key's hash `h` (row 0 is implicit:
/// its output is `from_hash(h)`).
pub(crate) fn open_row<S: MaterialSource + ?Sized>(
    h: Block,
    key: &Label,
    out_modulus: Modulus,
    source: &mut S,
    out: &mut Label,
) -> Result<(), Error> {
    let m = key.modulus().value() as usize;
    if m > MAX_PROJECTION_INPUT as usize {
        return Err(Error::ProjectionInputTooLarge(m as u16));
    }
    let rows = source.next_rows(m - 1)?;
    match key.colour() {
        0 => out.set_from_hash(out_modulus, h),
        c => out.set_from_block(out_modulus, rows[c as usize - 1] ^ h)?,
    }
    Ok(())
}

/// Garbles a projection gate `φ: Z_m → Z_n` on the input wire with zero
/// label `input` and writes its `m - 1` rows to `sink`. Returns the output
/// wire's zero label.
///
/// `table(x)` is reduced mod n. Moduli must match the offsets, and `m` must
/// not exceed [`MAX_PROJECTION_INPUT`].
///
/// ```
/// use dash_core::{projection, Block, Delta, FixedKeyHash, Modulus, SliceSink, SliceSource, Tweak, Domain, ZeroLabel};
/// # use rand_core::SeedableRng;
/// # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
/// let (m5, m7) = (Modulus::new(5)?, Modulus::new(7)?);
/// let (d5, d7) = (Delta::random(m5, &mut rng), Delta::random(m7, &mut rng));
/// let hash = FixedKeyHash::new();
/// let tweak = Tweak::new(Domain::Projection, 0, 0);
/// let input = ZeroLabel::random(m5, &mut rng);
/// let square = |x: u16| x * x; // reduced mod 7 by the gate
/// let mut rows = [Block::ZERO; 4];
/// let out = projection::garble(&hash, tweak, &input, &d5, &d7, square, &mut SliceSink::new(&mut rows))?;
/// // The evaluator holds the label of x = 3 and learns the label of 9 mod 7 = 2.
/// let got = projection::evaluate(&hash, tweak, &input.encode(3, &d5)?, m7, &mut SliceSource::new(&rows))?;
/// assert_eq!(got.to_block(), out.encode(2, &d7)?.to_block());
/// # Ok::<(), dash_core::Error>(())
/// ```
pub fn garble<S: MaterialSink + ?Sized>(
    hash: &FixedKeyHash,
    tweak: Tweak,
    input: &ZeroLabel,
    delta_in: &Delta,
    delta_out: &Delta,
    table: impl Fn(u16) -> u16,
    sink: &mut S,
) -> Result<ZeroLabel, Error> {
    let mut out = ZeroLabel::new(Label::zero(delta_out.modulus()));
    garble_into(hash, tweak, input, delta_in, delta_out, table, sink, &mut out)?;
    Ok(out)
}

/// Garbles many independent projection gates of one table at once (a
/// layer's gates): gate `i` has input zero label `inputs[i]` and tweak
/// `tweaks[i]`; all share the table `φ: Z_m → Z_n` and the offsets. Rows go
/// to `sink` in gate order, gate `i`'s output zero label to `outputs[i]`:
/// the same rows and labels as calling [`garble`] once per gate, and what
/// [`evaluate_batch`] evaluates.
///
/// Faster per gate than [`garble`]: the table is reduced once for the
/// batch, and the output labels are written in place rather than returned
/// (a label is a 312-byte value). On any error every output is zeroised
/// and the rows already written must be discarded.
///
/// ```
/// use dash_core::{projection, Block, Delta, FixedKeyHash, Modulus, SliceSink, SliceSource, Tweak, Domain, ZeroLabel};
/// # use rand_core::SeedableRng;
/// # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
/// let m17 = Modulus::new(17)?;
/// let delta = Delta::random(m17, &mut rng);
/// let hash = FixedKeyHash::new();
/// let inputs: Vec<ZeroLabel> = (0..3).map(|_| ZeroLabel::random(m17, &mut rng)).collect();
/// let tweaks: Vec<Tweak> = (0..3).map(|g| Tweak::new(Domain::Projection, g, 0)).collect();
/// let double = |x: u16| 2 * x; // reduced mod 17 by the gates
/// let mut rows = [Block::ZERO; 3 * 16];
/// let mut outputs: Vec<ZeroLabel> = (0..3).map(|_| ZeroLabel::new(dash_core::Label::zero(m17))).collect();
/// projection::garble_batch(&hash, &tweaks, &inputs, &delta, &delta, double, &mut SliceSink::new(&mut rows), &mut outputs)?;
/// // The evaluator holds the labels of 5, 9 and 16 and learns those of 10, 1 and 15.
/// let labels = [inputs[0].encode(5, &delta)?, inputs[1].encode(9, &delta)?, inputs[2].encode(16, &delta)?];
/// let mut got = [dash_core::Label::zero(m17), dash_core::Label::zero(m17), dash_core::Label::zero(m17)];
/// projection::evaluate_batch(&hash, &tweaks, &labels, m17, &mut SliceSource::new(&rows), &mut got)?;
/// for ((g, out), want) in got.iter().zip(&outputs).zip([10, 1, 15]) {
///     assert_eq!(g.to_block(), out.encode(want, &delta)?.to_block());
/// }
/// # Ok::<(), dash_core::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn garble_batch<S: MaterialSink + ?Sized>(
    hash: &FixedKeyHash,
    tweaks: &[Tweak],
    inputs: &[ZeroLabel],
    delta_in: &Delta,
    delta_out: &Delta,
    table: impl Fn(u16) -> u16,
    sink: &mut S,
    outputs: &mut [ZeroLabel],
) -> Result<(), Error> {
    if tweaks.len() != inputs.len() || outputs.len() != inputs.len() {
        return Err(Error::LengthMismatch);
    }
    let m_in = delta_in.modulus();
    if m_in.value() > MAX_PROJECTION_INPUT {
        return Err(Error::ProjectionInputTooLarge(m_in.value()));
    }
    let n = delta_out.modulus();
    let m = m_in.value() as usize;
    let mut reduced_storage = [0u16; MAX_PROJECTION_INPUT as usize];
    for (x, t) in reduced_storage[..m].iter_mut().enumerate() {
        *t = n.reduce(table(x as u16) as u32);
    }
    let reduced = &reduced_storage[..m];
    // Short tables (every CRT prime's) are laid out for rotation once.
    let doubled = DoubledTable::new(reduced);
    let mut buffer = RowBuffer::new();
    let mut status = Ok(());
    for ((tweak, input), out) in tweaks.iter().zip(inputs).zip(outputs.iter_mut()) {
        // Each input's modulus is checked by `garble_gate` (public).
        let table = match &doubled {
            Some(d) => GateTable::Doubled(d),
            None => GateTable::Reduced(reduced),
        };
        status =
            garble_gate::<S, fn(u16) -> u16>(hash, *tweak, input, delta_in, delta_out, table, sink, out, &mut buffer);
        if status.is_err() {
            break;
        }
    }
    drop(buffer);
    // The table may be secret (see the module documentation).
    reduced_storage[..m].zeroize();
    if status.is_err() {
        for out in outputs.iter_mut() {
            out.as_label_mut().zeroize();
        }
    }
    status
}

/// [`garble`] into `out` (the output zero label; zeroised on error).
#[allow(clippy::too_many_arguments)]
pub(crate) fn garble_into<S: MaterialSink + ?Sized>(
    hash: &FixedKeyHash,
    tweak: Tweak,
    input: &ZeroLabel,
    delta_in: &Delta,
    delta_out: &Delta,
    table: impl Fn(u16) -> u16,
    sink: &mut S,
    out: &mut ZeroLabel,
) -> Result<(), Error> {
    let table = GateTable::Function(table);
    garble_gate(hash, tweak, input, delta_in, delta_out, table, sink, out, &mut RowBuffer::new())
}

/// [`garble_into`] hashing and building rows in `buffer`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn garble_into_in<S: MaterialSink + ?Sized>(
    hash: &FixedKeyHash,
    tweak: Tweak,
    input: &ZeroLabel,
    delta_in: &Delta,
    delta_out: &Delta,
    table: impl Fn(u16) -> u16,
    sink: &mut S,
    out: &mut ZeroLabel,
    buffer: &mut RowBuffer,
) -> Result<(), Error> {
    garble_gate(hash, tweak, input, delta_in, delta_out, GateTable::Function(table), sink, out, buffer)
}

/// How [`garble_table`] gets a gate's table `φ`.
pub(crate) enum GateTable<'a, F> {
    /// As a function, whose values it reduces.
    Function(F),
    /// Reduced once for a whole batch (`m > 32`).
    Reduced(&'a [u16]),
    /// Reduced and laid out twice, once for a whole batch (`m <= 32`).
    Doubled(&'a DoubledTable),
}

/// [`garble_into`] with the table as [`GateTable`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn garble_gate<S: MaterialSink + ?Sized, F: Fn(u16) -> u16>(
    hash: &FixedKeyHash,
    tweak: Tweak,
    input: &ZeroLabel,
    delta_in: &Delta,
    delta_out: &Delta,
    table: GateTable<'_, F>,
    sink: &mut S,
    out: &mut ZeroLabel,
    buffer: &mut RowBuffer,
) -> Result<(), Error> {
    let m_in = input.modulus();
    if delta_in.modulus() != m_in {
        return Err(Error::ModulusMismatch { left: m_in.value(), right: delta_in.modulus().value() });
    }
    if m_in.value() > MAX_PROJECTION_INPUT {
        return Err(Error::ProjectionInputTooLarge(m_in.value()));
    }
    let keys = Keys::Walk(input, delta_in);
    let out = out.as_label_mut();
    // Small tables (the common case: CRT primes, carries) use small stack
    // buffers; the choice depends only on the public modulus.
    if m_in.value() <= 64 {
        garble_table::<64, S, F>(hash, tweak, keys, input, delta_out, table, sink, out, buffer)
    } else {
        garble_table::<{ MAX_PROJECTION_INPUT as usize }, S, F>(
            hash, tweak, keys, input, delta_out, table, sink, out, buffer,
        )
    }
}

/// [`garble`] for a wire whose keys' first hash halves `first` came from
/// [`key_first_halves`], into `out` (the output zero label): the same rows
/// and output.
#[allow(clippy::too_many_arguments)]
pub(crate) fn garble_with_first_halves<S: MaterialSink + ?Sized>(
    hash: &FixedKeyHash,
    tweak: Tweak,
    first: &[Block],
    input: &ZeroLabel,
    delta_out: &Delta,
    table: impl Fn(u16) -> u16,
    sink: &mut S,
    out: &mut ZeroLabel,
) -> Result<(), Error> {
    if first.len() != input.modulus().value() as usize || first.len() > SHARED_KEYS_MAX_INPUT {
        return Err(Error::LengthMismatch);
    }
    garble_with_first_halves_in(hash, tweak, first, input, delta_out, table, sink, out, &mut RowBuffer::new())
}

/// [`garble_with_first_halves`] hashing and building rows in `buffer`
/// (reused across the gates of a batch).
#[allow(clippy::too_many_arguments)]
pub(crate) fn garble_with_first_halves_in<S: MaterialSink + ?Sized>(
    hash: &FixedKeyHash,
    tweak: Tweak,
    first: &[Block],
    input: &ZeroLabel,
    delta_out: &Delta,
    table: impl Fn(u16) -> u16,
    sink: &mut S,
    out: &mut ZeroLabel,
    buffer: &mut RowBuffer,
) -> Result<(), Error> {
    if first.len() != input.modulus().value() as usize || first.len() > SHARED_KEYS_MAX_INPUT {
        return Err(Error::LengthMismatch);
    }
    let keys = Keys::FirstHalf(first);
    let (table, out) = (GateTable::Function(table), out.as_label_mut());
    garble_table::<SHARED_KEYS_MAX_INPUT, S, _>(hash, tweak, keys, input, delta_out, table, sink, out, buffer)
}

/// The table half of a projection: rotates `φ` by the input's colour and
/// garbles the rows keyed by `keys`; the output zero label goes to `out`
/// (zeroised on error).
#[allow(clippy::too_many_arguments)]
fn garble_table<const CAP: usize, S: MaterialSink + ?Sized, F: Fn(u16) -> u16>(
    hash: &FixedKeyHash,
    tweak: Tweak,
    keys: Keys<'_>,
    input: &ZeroLabel,
    delta_out: &Delta,
    table: GateTable<'_, F>,
    sink: &mut S,
    out: &mut Label,
    buffer: &mut RowBuffer,
) -> Result<(), Error> {
    let n = delta_out.modulus();
    let m = input.modulus().value() as usize;
    let mut rotated = [0u16; CAP];
    let mut scratch = [0u16; CAP];
    let colour = input.as_label().colour();
    let filled = match table {
        GateTable::Doubled(doubled) => {
            rotate_doubled(doubled, colour, &mut rotated[..m]);
            false
        }
        GateTable::Function(f) => {
            for (x, t) in rotated[..m].iter_mut().enumerate() {
                *t = n.reduce(f(x as u16) as u32);
            }
            true
        }
        GateTable::Reduced(reduced) => {
            for (t, &v) in rotated[..m].iter_mut().zip(reduced) {
                *t = v;
            }
            true
        }
    };
    if filled {
        rotate_constant_time(&mut rotated[..m], &mut scratch[..m], colour);
        scratch[..m].zeroize();
    }
    // rotated[c] = φ(c - a): the output for the label of colour c.
    let first = rotated[0];
    let scale = |c| n.sub(rotated[c], first);
    let status = garble_rows(hash, tweak, keys, delta_out.as_label(), scale, sink, out, buffer);
    rotated[..m].zeroize();
    status?;
    // C = R_0 - φ(-a)·Δ_n, so that row c holds C + φ(c - a)·Δ_n.
    out.add_scaled_unchecked(delta_out.as_label(), n.neg(first));
    Ok(())
}

/// Evaluates a projection gate: reads its `m - 1` rows from `source` and
/// returns the output label for the input label `input`.
///
/// Fails with [`Error::SourceExhausted`] if the rows are missing and with
/// [`Error::InvalidLabelEncoding`] if the selected row does not decrypt to a
/// label (tampered material).
pub fn evaluate<S: MaterialSource + ?Sized>(
    hash: &FixedKeyHash,
    tweak: Tweak,
    input: &Label,
    out_modulus: Modulus,
    source: &mut S,
) -> Result<Label, Error> {
    // `open_row` refuses inputs above MAX_PROJECTION_INPUT.
    evaluate_rows(hash, tweak, input, out_modulus, source)
}

/// Evaluates many independent projection gates at once: gate `i` has input
/// `inputs[i]`, tweak `tweaks[i]`, and output modulus `out_modulus`; their
/// rows follow each other in `source` in gate order (as the garbler wrote
/// them). Outputs go to `outputs[i]`.
///
/// The same result as calling [`evaluate`] once per gate, but the hashes of
/// up to [`HASH_LANES`] gates run through AES together, which is where
/// evaluation speed comes from (for a layer's independent gates, say; the
/// host engine evaluates its layers element by element instead, each element
/// on its own core).
pub fn evaluate_batch<S: MaterialSource + ?Sized>(
    hash: &FixedKeyHash,
    tweaks: &[Tweak],
    inputs: &[Label],
    out_modulus: Modulus,
    source: &mut S,
    outputs: &mut [Label],
) -> Result<(), Error> {
    if tweaks.len() != inputs.len() || outputs.len() != inputs.len() {
        return Err(Error::LengthMismatch);
    }
    let mut blocks = [Block::ZERO; HASH_LANES];
    // The packing constants of the inputs' modulus (recomputed only where
    // it changes: a layer's gates normally share one).
    let mut powers = Powers::new(inputs.first().map_or(Modulus::TWO, |l| l.modulus()));
    for ((tw, ins), outs) in
        tweaks.chunks(HASH_LANES).zip(inputs.chunks(HASH_LANES)).zip(outputs.chunks_mut(HASH_LANES))
    {
        let mut total = 0usize;
        for (b, input) in blocks.iter_mut().zip(ins) {
            if input.modulus().value() > MAX_PROJECTION_INPUT {
                return Err(Error::ProjectionInputTooLarge(input.modulus().value()));
            }
            if powers.modulus() != input.modulus() {
                powers = Powers::new(input.modulus());
            }
            *b = input.to_block_with(&powers);
            total += input.modulus().value() as usize - 1;
        }
        hash.hash_batch(tw, &mut blocks[..ins.len()])?;
        let rows = source.next_rows(total)?;
        // Colour 0 decodes the hash; every other colour unpacks its row,
        // two gates at a time (see `Label::set_from_block_pair`).
        let mut pending = [(0usize, Block::ZERO); HASH_LANES];
        let mut waiting = 0;
        let mut offset = 0;
        for (i, ((h, input), out)) in blocks.iter().zip(ins).zip(outs.iter_mut()).enumerate() {
            let m = input.modulus().value() as usize;
            match input.colour() {
                0 => out.set_from_hash(out_modulus, *h),
                c => {
                    pending[waiting] = (i, rows[offset + c as usize - 1] ^ *h);
                    waiting += 1;
                }
            }
            offset += m - 1;
        }
        let mut pairs = pending[..waiting].chunks_exact(2);
        for pair in &mut pairs {
            let ((i, x), (j, y)) = (pair[0], pair[1]);
            // i < j: pending is in gate order.
            let (left, right) = outs.split_at_mut(j);
            left[i].set_from_block_pair(&mut right[0], out_modulus, [x, y])?;
        }
        if let [(i, x)] = *pairs.remainder() {
            outs[i].set_from_block(out_modulus, x)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Domain;
    use crate::material::{SliceSink, SliceSource};
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    fn roundtrip(rng: &mut ChaCha20Rng, p_in: u16, p_out: u16, exhaustive: bool) {
        let (mi, mo) = (Modulus::new(p_in).unwrap(), Modulus::new(p_out).unwrap());
        let (di, dout) = (Delta::random(mi, rng), Delta::random(mo, rng));
        let hash = FixedKeyHash::new();
        let table: [u16; 1024] = core::array::from_fn(|_| (rng.next_u32() % p_out as u32) as u16);
        let phi = |x: u16| table[x as usize];
        let tweak = Tweak::new(Domain::Projection, rng.next_u64(), 0);
        let input = ZeroLabel::random(mi, rng);
        let mut rows = [Block::ZERO; 1024];
        let mut sink = SliceSink::new(&mut rows);
        let out = garble(&hash, tweak, &input, &di, &dout, phi, &mut sink).unwrap();
        assert_eq!(sink.len(), p_in as usize - 1);
        let xs: &mut dyn Iterator<Item = u16> =
            if exhaustive { &mut (0..p_in) } else { &mut (0..8).map(|_| (rng.next_u32() % p_in as u32) as u16) };
        for x in xs {
            let label = input.encode(x, &di).unwrap();
            let mut src = SliceSource::new(&rows[..p_in as usize - 1]);
            let got = evaluate(&hash, tweak, &label, mo, &mut src).unwrap();
            let want = out.encode(phi(x), &dout).unwrap();
            assert_eq!(got.to_block(), want.to_block(), "p_in {p_in} p_out {p_out} x {x}");
        }
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn exhaustive_for_primes_up_to_31() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let small: [u16; 11] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31];
        for &p in &small {
            for &q in &small {
                roundtrip(&mut rng, p, q, true);
            }
        }
    }

    /// The walked keys of short moduli take the register path
    /// (`garble_rows_short`), pre-hashed keys the general one: both must write
    /// the same rows and the same output label, bit for bit.
    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn register_path_equals_general_path() {
        let mut rng = ChaCha20Rng::seed_from_u64(14);
        let hash = FixedKeyHash::new();
        // Input moduli up to SHARED_KEYS_MAX_INPUT (the first-halves cache's bound).
        for (p_in, p_out) in [(17u16, 17u16), (19, 181), (61, 23), (59, 191), (31, 251), (17, 13), (13, 17), (47, 3181)]
        {
            let (mi, mo) = (Modulus::new(p_in).unwrap(), Modulus::new(p_out).unwrap());
            let (di, dout) = (Delta::random(mi, &mut rng), Delta::random(mo, &mut rng));
            let table: [u16; 256] = core::array::from_fn(|_| rng.next_u32() as u16);
            let phi = |x: u16| table[x as usize];
            let tweak = Tweak::new(Domain::Projection, rng.next_u64(), 0);
            let input = ZeroLabel::random(mi, &mut rng);
            let (mut walked, mut hashed) = ([Block::ZERO; 256], [Block::ZERO; 256]);
            let a = garble(&hash, tweak, &input, &di, &dout, phi, &mut SliceSink::new(&mut walked)).unwrap();
            let mut first = [Block::ZERO; SHARED_KEYS_MAX_INPUT];
            key_first_halves(&hash, &input, &di, &mut first);
            let mut b = ZeroLabel::new(Label::zero(mo));
            let m = p_in as usize;
            let mut sink = SliceSink::new(&mut hashed);
            garble_with_first_halves(&hash, tweak, &first[..m], &input, &dout, phi, &mut sink, &mut b).unwrap();
            assert_eq!(walked[..m - 1], hashed[..m - 1], "p_in {p_in} p_out {p_out}");
            assert_eq!(a.as_label().to_block(), b.as_label().to_block(), "p_in {p_in} p_out {p_out}");
        }
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn random_inputs_for_every_prime_up_to_251() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        for p in (2..=251u16).filter(|&p| crate::modulus::is_prime(p)) {
            let q = [2u16, 17, 251, 3181][(p % 4) as usize];
            roundtrip(&mut rng, p, q, p <= 31);
        }
        roundtrip(&mut rng, 919, 3, false);
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn batch_evaluation_equals_gate_by_gate() {
        let mut rng = ChaCha20Rng::seed_from_u64(15);
        let hash = FixedKeyHash::new();
        let mo = Modulus::new(13).unwrap();
        let dout = Delta::random(mo, &mut rng);
        let mut rows = [Block::ZERO; 512];
        let mut sink = SliceSink::new(&mut rows);
        let mut tweaks = [Tweak(0); 19];
        let mut inputs: [Label; 19] = core::array::from_fn(|_| Label::zero(mo));
        let mut expected: [Label; 19] = core::array::from_fn(|_| Label::zero(mo));
        for i in 0..19 {
            let mi = Modulus::new([2u16, 3, 5, 7, 11, 13, 17, 19][i % 8]).unwrap();
            let di = Delta::random(mi, &mut rng);
            let z = ZeroLabel::random(mi, &mut rng);
            tweaks[i] = Tweak::new(Domain::Projection, i as u64, 0);
            let out = garble(&hash, tweaks[i], &z, &di, &dout, |x| x * 7 + i as u16, &mut sink).unwrap();
            let x = (rng.next_u32() % mi.value() as u32) as u16;
            inputs[i] = z.encode(x, &di).unwrap();
            expected[i] = out.encode(x * 7 + i as u16, &dout).unwrap();
        }
        let used = sink.len();
        let mut outputs: [Label; 19] = core::array::from_fn(|_| Label::zero(mo));
        let mut src = SliceSource::new(&rows[..used]);
        evaluate_batch(&hash, &tweaks, &inputs, mo, &mut src, &mut outputs).unwrap();
        assert_eq!(src.remaining(), 0);
        for i in 0..19 {
            assert_eq!(outputs[i].to_block(), expected[i].to_block(), "gate {i}");
        }
        let mut short = SliceSource::new(&rows[..used - 1]);
        assert_eq!(evaluate_batch(&hash, &tweaks, &inputs, mo, &mut short, &mut outputs), Err(Error::SourceExhausted));
        assert_eq!(
            evaluate_batch(&hash, &tweaks[..3], &inputs, mo, &mut SliceSource::new(&rows), &mut outputs),
            Err(Error::LengthMismatch)
        );
    }

    /// A batch writes the same rows and output labels as one `garble` call
    /// per gate, bit for bit: short tables (the doubled table rotated in
    /// registers) and long ones, every kind of input modulus, and batches
    /// whose rows span several of `garble_rows`' groups.
    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn batch_garbling_equals_gate_by_gate() {
        let mut rng = ChaCha20Rng::seed_from_u64(16);
        let hash = FixedKeyHash::new();
        for (p_in, p_out, gates) in [
            (17u16, 17u16, 9usize),
            (2, 3, 5),
            (3, 2, 4),
            (31, 251, 6),
            (29, 7, 1),
            (37, 17, 3),
            (251, 13, 2),
            (127, 3181, 2),
        ] {
            let (mi, mo) = (Modulus::new(p_in).unwrap(), Modulus::new(p_out).unwrap());
            let (di, dout) = (Delta::random(mi, &mut rng), Delta::random(mo, &mut rng));
            let table: [u16; 256] = core::array::from_fn(|_| rng.next_u32() as u16);
            let phi = |x: u16| table[x as usize];
            let inputs: [ZeroLabel; 9] = core::array::from_fn(|_| ZeroLabel::random(mi, &mut rng));
            let tweaks: [Tweak; 9] = core::array::from_fn(|_| Tweak::new(Domain::Projection, rng.next_u64(), 1));
            let (mut single, mut batch) = ([Block::ZERO; 9 * 250], [Block::ZERO; 9 * 250]);
            let mut sink = SliceSink::new(&mut single);
            let expected: [ZeroLabel; 9] =
                core::array::from_fn(|i| garble(&hash, tweaks[i], &inputs[i], &di, &dout, phi, &mut sink).unwrap());
            let mut outputs: [ZeroLabel; 9] = core::array::from_fn(|_| ZeroLabel::new(Label::zero(mo)));
            let mut sink = SliceSink::new(&mut batch);
            let (t, i, o) = (&tweaks[..gates], &inputs[..gates], &mut outputs[..gates]);
            garble_batch(&hash, t, i, &di, &dout, phi, &mut sink, o).unwrap();
            let rows = gates * (p_in as usize - 1);
            assert_eq!(sink.len(), rows);
            assert_eq!(single[..rows], batch[..rows], "p_in {p_in} p_out {p_out}");
            for g in 0..gates {
                assert_eq!(outputs[g].as_label().to_block(), expected[g].as_label().to_block(), "p_in {p_in} gate {g}");
            }
            // And the evaluator opens them: every gate at a random input.
            let labels: [Label; 9] =
                core::array::from_fn(|g| inputs[g].encode(((g * 7 + 3) % p_in as usize) as u16, &di).unwrap());
            let mut got: [Label; 9] = core::array::from_fn(|_| Label::zero(mo));
            let mut src = SliceSource::new(&batch[..rows]);
            evaluate_batch(&hash, &tweaks[..gates], &labels[..gates], mo, &mut src, &mut got[..gates]).unwrap();
            for g in 0..gates {
                let x = ((g * 7 + 3) % p_in as usize) as u16;
                let want = outputs[g].encode(mo.reduce(phi(x) as u32), &dout).unwrap();
                assert_eq!(got[g].to_block(), want.to_block(), "p_in {p_in} gate {g}");
            }
        }
    }

    /// A batch that fails part-way (a full sink, a mismatched input, bad
    /// lengths) reports it and leaves no output label behind.
    #[test]
    fn failed_batches_clear_every_output() {
        let mut rng = ChaCha20Rng::seed_from_u64(17);
        let hash = FixedKeyHash::new();
        let m = Modulus::new(17).unwrap();
        let d = Delta::random(m, &mut rng);
        let mut inputs: [ZeroLabel; 3] = core::array::from_fn(|_| ZeroLabel::random(m, &mut rng));
        let tweaks: [Tweak; 3] = core::array::from_fn(|i| Tweak::new(Domain::Projection, i as u64, 0));
        let mut outputs: [ZeroLabel; 3] = core::array::from_fn(|_| ZeroLabel::new(Label::zero(m)));
        let cleared = |outputs: &[ZeroLabel]| outputs.iter().all(|o| o.as_label().digits().iter().all(|&d| d == 0));
        // Room for two gates' rows only.
        let mut rows = [Block::ZERO; 2 * 16];
        let status = garble_batch(&hash, &tweaks, &inputs, &d, &d, |x| x, &mut SliceSink::new(&mut rows), &mut outputs);
        assert_eq!(status, Err(Error::SinkFull));
        assert!(cleared(&outputs));
        let mut big = [Block::ZERO; 3 * 16];
        garble_batch(&hash, &tweaks, &inputs, &d, &d, |x| x, &mut SliceSink::new(&mut big), &mut outputs).unwrap();
        assert!(!cleared(&outputs));
        inputs[2] = ZeroLabel::random(Modulus::new(19).unwrap(), &mut rng);
        let status = garble_batch(&hash, &tweaks, &inputs, &d, &d, |x| x, &mut SliceSink::new(&mut big), &mut outputs);
        assert!(matches!(status, Err(Error::ModulusMismatch { .. })));
        assert!(cleared(&outputs));
        let mut sink = crate::material::CountingSink::default();
        let status = garble_batch(&hash, &tweaks[..2], &inputs, &d, &d, |x| x, &mut sink, &mut outputs);
        assert_eq!(status, Err(Error::LengthMismatch));
        let status = garble_batch(&hash, &tweaks, &inputs, &d, &d, |x| x, &mut sink, &mut outputs[..1]);
        assert_eq!(status, Err(Error::LengthMismatch));
        let big_m = Modulus::new(1031).unwrap();
        let big_d = Delta::random(big_m, &mut rng);
        let status = garble_batch(&hash, &[], &[], &big_d, &d, |x| x, &mut sink, &mut []);
        assert_eq!(status, Err(Error::ProjectionInputTooLarge(1031)));
        assert_eq!(sink.rows, 0);
    }

    #[test]
    fn rejects_oversized_inputs_and_mismatched_offsets() {
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let hash = FixedKeyHash::new();
        let m = Modulus::new(1031).unwrap();
        let d = Delta::random(m, &mut rng);
        let z = ZeroLabel::random(m, &mut rng);
        let t = Tweak::new(Domain::Projection, 0, 0);
        let mut sink = crate::material::CountingSink::default();
        assert_eq!(garble(&hash, t, &z, &d, &d, |x| x, &mut sink).unwrap_err(), Error::ProjectionInputTooLarge(1031));
        let m3 = Modulus::new(3).unwrap();
        let d3 = Delta::random(m3, &mut rng);
        assert!(matches!(garble(&hash, t, &z, &d3, &d3, |x| x, &mut sink), Err(Error::ModulusMismatch { .. })));
        let mut src = SliceSource::new(&[]);
        let l = Label::zero(m3);
        assert_eq!(evaluate(&hash, t, &l, m3, &mut src).unwrap_err(), Error::SourceExhausted);
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn tampered_rows_never_yield_a_wrong_valid_label() {
        let mut rng = ChaCha20Rng::seed_from_u64(14);
        let (mi, mo) = (Modulus::new(5).unwrap(), Modulus::new(7).unwrap());
        let (di, dout) = (Delta::random(mi, &mut rng), Delta::random(mo, &mut rng));
        let hash = FixedKeyHash::new();
        let tweak = Tweak::new(Domain::Projection, 9, 0);
        let input = ZeroLabel::random(mi, &mut rng);
        let mut rows = [Block::ZERO; 4];
        let out = garble(&hash, tweak, &input, &di, &dout, |x| x + 1, &mut SliceSink::new(&mut rows)).unwrap();
        for row in 0..4 {
            for bit in 0..128 {
                let mut bad = rows;
                bad[row].0 ^= 1 << bit;
                for x in 0..5u16 {
                    let label = input.encode(x, &di).unwrap();
                    match evaluate(&hash, tweak, &label, mo, &mut SliceSource::new(&bad)) {
                        Err(e) => assert_eq!(e, Error::InvalidLabelEncoding),
                        Ok(got) => {
                            // Either the row was not the one opened (correct
                            // result), or the result is no valid label at all.
                            let valid: Option<u16> =
                                (0..7).find(|&y| out.encode(y, &dout).unwrap().to_block() == got.to_block());
                            assert!(valid.is_none() || valid == Some((x + 1) % 7));
                            if label.colour() as usize == row + 1 {
                                assert!(valid.is_none());
                            }
                        }
                    }
                }
            }
        }
    }
}
