//! Gates over *lanes*: the same gate of a gadget, once for each of many
//! independent gadget instances (a layer's elements), on labels stored as
//! plain digit rows.
//!
//! A host that runs one gadget on a chunk of `L` elements keeps each wire as
//! one buffer of `L · n` digits (lane `i`'s label is `digits[i·n .. (i+1)·n]`)
//! and calls these functions once per gate of the gadget: the table is
//! reduced and laid out once for all lanes, the hashes of several lanes go
//! through AES together, and labels move in and out as `n` digits, never as
//! 312-byte [`Label`] values. The results are those of the
//! per-instance [`crate::Garbler`] and [`crate::Evaluator`], bit for bit.
//!
//! # Where the rows are
//!
//! Element `i` of a chunk owns a contiguous run of `stride` rows (its
//! gadget's rows, in gate order), so lane `i`'s rows for one gate are
//! `rows[i·stride + offset ..][..count]` ([`LaneRows`]). The layout does not
//! depend on the chunk size: the host may cut a layer into chunks as it
//! likes, and the material is the same as gate-by-gate garbling writes.
//!
//! # Tweaks
//!
//! Each lane's gate gets its tweak from the caller (`tweak(i)`); the caller
//! must give distinct tweaks to distinct gates (the host uses
//! `first_gate + element·gates_per_element + local_gate`). Debug builds
//! check that the lanes of one call have distinct tweaks.
//!
//! # Constant time
//!
//! The garbling functions run the per-gate code of [`crate::projection`]
//! (constant-time in the zero labels, the offsets and the table) on each
//! lane; moving digits in and out is a copy whose length depends only on
//! the public modulus.

use crate::block::Block;
use crate::delta::{Delta, ZeroLabel};
use crate::error::Error;
use crate::evaluator::evaluate_mul_bit;
use crate::garbler::{MulBitScratch, garble_mul_bit_in};
#[cfg(debug_assertions)]
use crate::hash::Domain;
use crate::hash::{FixedKeyHash, HASH_LANES, Tweak};
use crate::label::{Label, Powers};
use crate::material::{SliceSink, SliceSource};
use crate::modulus::{MAX_PROJECTION_INPUT, Modulus};
use crate::projection::{self, GateTable, RowBuffer};
use crate::rotate::DoubledTable;
use zeroize::Zeroize;

/// Where each lane's rows of one gate lie in a chunk's row buffer: lane
/// `i`'s `count` rows start at `i·stride + offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneRows {
    /// Rows each element (lane) owns in the buffer.
    pub stride: usize,
    /// Where the gate's rows start within an element's rows.
    pub offset: usize,
}

impl LaneRows {
    /// Lane `lane`'s `count` rows as an index range, if it fits in `len` rows.
    #[inline]
    fn range(&self, lane: usize, count: usize, len: usize) -> Result<core::ops::Range<usize>, Error> {
        let start = lane.checked_mul(self.stride).and_then(|s| s.checked_add(self.offset));
        let end = start.and_then(|s| s.checked_add(count));
        match (start, end) {
            (Some(s), Some(e)) if e <= len && self.offset + count <= self.stride => Ok(s..e),
            _ => Err(Error::SourceExhausted),
        }
    }
}

/// The number of lanes in a digit buffer of modulus `m`.
fn lanes_of(digits: &[u16], m: Modulus) -> Result<usize, Error> {
    let n = m.digits();
    if !digits.len().is_multiple_of(n) {
        return Err(Error::LengthMismatch);
    }
    Ok(digits.len() / n)
}

#[cfg(debug_assertions)]
fn debug_check_distinct(lanes: usize, tweak: &impl Fn(usize) -> Tweak) {
    // Lanes of one call are consecutive elements: their tweaks increase.
    for i in 1..lanes.min(64) {
        debug_assert!(tweak(i) != tweak(i - 1), "lanes {} and {i} share a tweak", i - 1);
    }
}

/// Garbles one projection gate `φ: Z_m → Z_n` per lane: lane `i` has the
/// input zero label `inputs[i·n_m ..][..n_m]` (digits), tweak `tweak(i)`
/// and rows at `at` in `rows`; its output zero label goes to
/// `outputs[i·n_n ..][..n_n]`. The same rows and labels as
/// [`projection::garble`] once per lane.
///
/// The digits must be below `m` (labels the caller built from this crate's
/// labels); this is not checked, to stay constant-time. On error every
/// output digit is zeroised.
#[allow(clippy::too_many_arguments)]
pub fn garble_projection(
    hash: &FixedKeyHash,
    tweak: impl Fn(usize) -> Tweak,
    inputs: &[u16],
    delta_in: &Delta,
    delta_out: &Delta,
    table: impl Fn(u16) -> u16,
    rows: &mut [Block],
    at: LaneRows,
    outputs: &mut [u16],
) -> Result<(), Error> {
    let status = garble_projection_inner(hash, &tweak, inputs, delta_in, delta_out, table, rows, at, outputs);
    if status.is_err() {
        outputs.zeroize();
    }
    status
}

#[allow(clippy::too_many_arguments)]
fn garble_projection_inner(
    hash: &FixedKeyHash,
    tweak: &impl Fn(usize) -> Tweak,
    inputs: &[u16],
    delta_in: &Delta,
    delta_out: &Delta,
    table: impl Fn(u16) -> u16,
    rows: &mut [Block],
    at: LaneRows,
    outputs: &mut [u16],
) -> Result<(), Error> {
    let (m_in, m_out) = (delta_in.modulus(), delta_out.modulus());
    if m_in.value() > MAX_PROJECTION_INPUT {
        return Err(Error::ProjectionInputTooLarge(m_in.value()));
    }
    let lanes = lanes_of(inputs, m_in)?;
    if lanes_of(outputs, m_out)? != lanes {
        return Err(Error::LengthMismatch);
    }
    #[cfg(debug_assertions)]
    debug_check_distinct(lanes, tweak);
    let m = m_in.value() as usize;
    let (n_in, n_out) = (m_in.digits(), m_out.digits());
    let mut reduced_storage = [0u16; MAX_PROJECTION_INPUT as usize];
    for (x, t) in reduced_storage[..m].iter_mut().enumerate() {
        *t = m_out.reduce(table(x as u16) as u32);
    }
    let reduced = &reduced_storage[..m];
    let doubled = DoubledTable::new(reduced);
    let mut buffer = RowBuffer::new();
    let mut input = ZeroLabel::new(Label::zero(m_in));
    let mut out = ZeroLabel::new(Label::zero(m_out));
    let mut status = Ok(());
    for (i, (x, y)) in inputs.chunks_exact(n_in).zip(outputs.chunks_exact_mut(n_out)).enumerate() {
        let range = match at.range(i, m - 1, rows.len()) {
            Ok(r) => r,
            Err(_) => {
                status = Err(Error::SinkFull);
                break;
            }
        };
        input.as_label_mut().load_digits_unchecked(m_in, x);
        let table = match &doubled {
            Some(d) => GateTable::Doubled(d),
            None => GateTable::Reduced(reduced),
        };
        let mut sink = SliceSink::new(&mut rows[range]);
        status = projection::garble_gate::<_, fn(u16) -> u16>(
            hash,
            tweak(i),
            &input,
            delta_in,
            delta_out,
            table,
            &mut sink,
            &mut out,
            &mut buffer,
        );
        if status.is_err() {
            break;
        }
        y.copy_from_slice(&out.as_label().digits()[..n_out]);
    }
    reduced_storage[..m].zeroize();
    status
}

/// Garbles one multiply-by-bit gate `x·b mod p` per lane (gate identifier
/// `gate(i)` for lane `i`, `p + 1` rows at `at`): the same rows and labels
/// as [`crate::Garbler`]'s `mul_bit` once per lane. Inputs are digit
/// buffers of `x`'s modulus and of the bits (modulus 2). On error every
/// output digit is zeroised.
#[allow(clippy::too_many_arguments)]
pub fn garble_mul_bit_lanes(
    hash: &FixedKeyHash,
    gate: impl Fn(usize) -> u64,
    x: &[u16],
    bits: &[u16],
    delta_x: &Delta,
    delta_b: &Delta,
    rows: &mut [Block],
    at: LaneRows,
    outputs: &mut [u16],
) -> Result<(), Error> {
    let status = (|| {
        let p = delta_x.modulus();
        if delta_b.modulus() != Modulus::TWO {
            return Err(Error::NotABit(delta_b.modulus().value()));
        }
        let lanes = lanes_of(x, p)?;
        if lanes_of(bits, Modulus::TWO)? != lanes || lanes_of(outputs, p)? != lanes {
            return Err(Error::LengthMismatch);
        }
        #[cfg(debug_assertions)]
        debug_check_distinct(lanes, &|i| Tweak::new(Domain::MulBit, gate(i), 0));
        let (n, nb) = (p.digits(), Modulus::TWO.digits());
        let mut xl = ZeroLabel::new(Label::zero(p));
        let mut bl = ZeroLabel::new(Label::zero(Modulus::TWO));
        let mut z = ZeroLabel::new(Label::zero(p));
        let mut scratch = MulBitScratch::new();
        for (i, ((xd, bd), y)) in
            x.chunks_exact(n).zip(bits.chunks_exact(nb)).zip(outputs.chunks_exact_mut(n)).enumerate()
        {
            let range = at.range(i, p.value() as usize + 1, rows.len()).map_err(|_| Error::SinkFull)?;
            xl.as_label_mut().load_digits_unchecked(p, xd);
            bl.as_label_mut().load_digits_unchecked(Modulus::TWO, bd);
            let mut sink = SliceSink::new(&mut rows[range]);
            garble_mul_bit_in(hash, gate(i), &xl, &bl, delta_x, delta_b, &mut sink, &mut z, &mut scratch)?;
            y.copy_from_slice(&z.as_label().digits()[..n]);
        }
        Ok(())
    })();
    if status.is_err() {
        outputs.zeroize();
    }
    status
}

/// Evaluates one projection gate per lane: lane `i` holds the label
/// `inputs[i·n_m ..][..n_m]` of modulus `m_in`, tweak `tweak(i)`, rows at
/// `at`; its output label (modulus `m_out`) goes to `outputs[i·n_n ..]`.
/// The same labels as [`projection::evaluate`] once per lane; the hashes of
/// [`HASH_LANES`] lanes run through AES together.
///
/// Fails with [`Error::InvalidLabelEncoding`] if a selected row does not
/// decrypt to a label (tampered material), [`Error::InvalidDigits`] if an
/// input colour is not below `m_in`, and [`Error::SourceExhausted`] if
/// `rows` is too short.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_projection(
    hash: &FixedKeyHash,
    tweak: impl Fn(usize) -> Tweak,
    m_in: Modulus,
    inputs: &[u16],
    m_out: Modulus,
    rows: &[Block],
    at: LaneRows,
    outputs: &mut [u16],
) -> Result<(), Error> {
    evaluate_projection_many(hash, |i, _| tweak(i), m_in, inputs, &[m_out], rows, at, &mut [outputs])
}

/// Evaluates several projections of one wire per lane: projection `j` of
/// lane `i` has tweak `tweak(i, j)`, output modulus `outs[j]` and its rows
/// right after projection `j - 1`'s (the first at `at`), and writes
/// `outputs[j]`. The same labels as [`evaluate_projection`] once per
/// output, with the tweak-independent half of each lane's hash computed
/// once for all outputs (one AES call per lane and output instead of two).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_projection_many(
    hash: &FixedKeyHash,
    tweak: impl Fn(usize, usize) -> Tweak,
    m_in: Modulus,
    inputs: &[u16],
    outs: &[Modulus],
    rows: &[Block],
    at: LaneRows,
    outputs: &mut [&mut [u16]],
) -> Result<(), Error> {
    if m_in.value() > MAX_PROJECTION_INPUT {
        return Err(Error::ProjectionInputTooLarge(m_in.value()));
    }
    let lanes = lanes_of(inputs, m_in)?;
    if outputs.len() != outs.len() {
        return Err(Error::LengthMismatch);
    }
    for (o, &m) in outputs.iter().zip(outs) {
        if lanes_of(o, m)? != lanes {
            return Err(Error::LengthMismatch);
        }
    }
    #[cfg(debug_assertions)]
    for j in 0..outs.len() {
        debug_check_distinct(lanes, &|i| tweak(i, j));
    }
    let (m, n_in) = (m_in.value() as usize, m_in.digits());
    let powers = Powers::new(m_in);
    let mut key = Label::zero(m_in);
    let mut opener = Opener::new();
    let mut first = [Block::ZERO; HASH_LANES];
    let mut h = [Block::ZERO; HASH_LANES];
    for (group, ins) in inputs.chunks(HASH_LANES * n_in).enumerate() {
        let lane0 = group * HASH_LANES;
        let count = ins.len() / n_in;
        for (f, x) in first.iter_mut().zip(ins.chunks_exact(n_in)) {
            key.load_digits_unchecked(m_in, x);
            *f = key.to_block_with(&powers);
        }
        hash.permute(&mut first[..count]);
        for (j, (&m_out, out)) in outs.iter().zip(outputs.iter_mut()).enumerate() {
            // H(t, x) = π(π(x) ⊕ t) ⊕ π(x), the first half shared.
            for (i, (hv, f)) in h.iter_mut().zip(&first[..count]).enumerate() {
                *hv = Block(f.0 ^ tweak(lane0 + i, j).0);
            }
            hash.permute(&mut h[..count]);
            for (hv, f) in h.iter_mut().zip(&first[..count]) {
                hv.0 ^= f.0;
            }
            let n_out = m_out.digits();
            let outs_group = &mut out[lane0 * n_out..(lane0 + count) * n_out];
            let shifted = LaneRows { stride: at.stride, offset: at.offset + j * (m - 1) };
            opener.open(&h[..count], ins, m_in, m_out, rows, shifted, lane0, outs_group)?;
        }
    }
    Ok(())
}

/// Opens the rows of a group of lanes given their hashes: colour 0 decodes
/// the hash, other colours their row, two lanes at a time (interleaved
/// unpacking).
struct Opener {
    a: Label,
    b: Label,
}

impl Opener {
    fn new() -> Opener {
        Opener { a: Label::zero(Modulus::TWO), b: Label::zero(Modulus::TWO) }
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        hashes: &[Block],
        ins: &[u16],
        m_in: Modulus,
        m_out: Modulus,
        rows: &[Block],
        at: LaneRows,
        lane0: usize,
        outs: &mut [u16],
    ) -> Result<(), Error> {
        let (m, n_in, n_out) = (m_in.value() as usize, m_in.digits(), m_out.digits());
        let Opener { a, b } = self;
        let mut pending: Option<(usize, Block)> = None;
        for (j, (x, h)) in ins.chunks_exact(n_in).zip(hashes).enumerate() {
            let range = at.range(lane0 + j, m - 1, rows.len())?;
            let colour = x[0] as usize;
            if colour >= m {
                return Err(Error::InvalidDigits);
            }
            if colour == 0 {
                a.set_from_hash(m_out, *h);
                outs[j * n_out..(j + 1) * n_out].copy_from_slice(&a.digits()[..n_out]);
                continue;
            }
            let opened = rows[range.start + colour - 1] ^ *h;
            match pending.take() {
                None => pending = Some((j, opened)),
                Some((k, earlier)) => {
                    a.set_from_block_pair(b, m_out, [earlier, opened])?;
                    outs[k * n_out..(k + 1) * n_out].copy_from_slice(&a.digits()[..n_out]);
                    outs[j * n_out..(j + 1) * n_out].copy_from_slice(&b.digits()[..n_out]);
                }
            }
        }
        if let Some((k, opened)) = pending {
            a.set_from_block(m_out, opened)?;
            outs[k * n_out..(k + 1) * n_out].copy_from_slice(&a.digits()[..n_out]);
        }
        Ok(())
    }
}

/// Garbles several projections of one wire per lane: projection `j` of lane
/// `i` has tweak `tweak(i, j)`, table `table(j, ·)`, output offset
/// `deltas_out[j]` and its `m - 1` rows right after projection `j - 1`'s
/// (the first at `at`); its output zero label goes to `outputs[j]`. The
/// same rows and labels as [`garble_projection`] once per output, with the
/// keys' tweak-independent hash halves computed once per lane for all
/// outputs (as [`crate::Garbler`]'s `project_many`). On error every output
/// digit is zeroised.
#[allow(clippy::too_many_arguments)]
pub fn garble_projection_many(
    hash: &FixedKeyHash,
    tweak: impl Fn(usize, usize) -> Tweak,
    inputs: &[u16],
    delta_in: &Delta,
    deltas_out: &[&Delta],
    table: impl Fn(usize, u16) -> u16,
    rows: &mut [Block],
    at: LaneRows,
    outputs: &mut [&mut [u16]],
) -> Result<(), Error> {
    let status = garble_many_inner(hash, &tweak, inputs, delta_in, deltas_out, table, rows, at, outputs);
    if status.is_err() {
        for o in outputs.iter_mut() {
            o.zeroize();
        }
    }
    status
}

#[allow(clippy::too_many_arguments)]
fn garble_many_inner(
    hash: &FixedKeyHash,
    tweak: &impl Fn(usize, usize) -> Tweak,
    inputs: &[u16],
    delta_in: &Delta,
    deltas_out: &[&Delta],
    table: impl Fn(usize, u16) -> u16,
    rows: &mut [Block],
    at: LaneRows,
    outputs: &mut [&mut [u16]],
) -> Result<(), Error> {
    let m_in = delta_in.modulus();
    let m = m_in.value() as usize;
    if deltas_out.len() != outputs.len() {
        return Err(Error::LengthMismatch);
    }
    if m > projection::SHARED_KEYS_MAX_INPUT {
        // No shared halves for long tables: one batch per output.
        for (j, (d, out)) in deltas_out.iter().zip(outputs.iter_mut()).enumerate() {
            let shifted = LaneRows { stride: at.stride, offset: at.offset + j * (m - 1) };
            garble_projection_inner(hash, &|i| tweak(i, j), inputs, delta_in, d, |x| table(j, x), rows, shifted, out)?;
        }
        return Ok(());
    }
    let lanes = lanes_of(inputs, m_in)?;
    for (o, d) in outputs.iter().zip(deltas_out) {
        if lanes_of(o, d.modulus())? != lanes {
            return Err(Error::LengthMismatch);
        }
    }
    #[cfg(debug_assertions)]
    for j in 0..deltas_out.len() {
        debug_check_distinct(lanes, &|i| tweak(i, j));
    }
    let n_in = m_in.digits();
    let mut first = [Block::ZERO; projection::SHARED_KEYS_MAX_INPUT];
    let mut buffer = RowBuffer::new();
    let mut input = ZeroLabel::new(Label::zero(m_in));
    let mut out = ZeroLabel::new(Label::zero(Modulus::TWO));
    let mut status = Ok(());
    'lanes: for (i, x) in inputs.chunks_exact(n_in).enumerate() {
        input.as_label_mut().load_digits_unchecked(m_in, x);
        projection::key_first_halves(hash, &input, delta_in, &mut first[..m]);
        for (j, (d, o)) in deltas_out.iter().zip(outputs.iter_mut()).enumerate() {
            let shifted = LaneRows { stride: at.stride, offset: at.offset + j * (m - 1) };
            let range = match shifted.range(i, m - 1, rows.len()) {
                Ok(r) => r,
                Err(_) => {
                    status = Err(Error::SinkFull);
                    break 'lanes;
                }
            };
            let mut sink = SliceSink::new(&mut rows[range]);
            let phi = |v| table(j, v);
            let t = tweak(i, j);
            status = projection::garble_with_first_halves_in(
                hash,
                t,
                &first[..m],
                &input,
                d,
                phi,
                &mut sink,
                &mut out,
                &mut buffer,
            );
            if status.is_err() {
                break 'lanes;
            }
            let n_out = d.modulus().digits();
            o[i * n_out..(i + 1) * n_out].copy_from_slice(&out.as_label().digits()[..n_out]);
        }
    }
    first.zeroize();
    status
}

/// Evaluates one multiply-by-bit gate per lane (gate identifier `gate(i)`,
/// `p + 1` rows at `at`), as [`crate::Evaluator`]'s `mul_bit` once per lane.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_mul_bit_lanes(
    hash: &FixedKeyHash,
    gate: impl Fn(usize) -> u64,
    p: Modulus,
    x: &[u16],
    bits: &[u16],
    rows: &[Block],
    at: LaneRows,
    outputs: &mut [u16],
) -> Result<(), Error> {
    let lanes = lanes_of(x, p)?;
    if lanes_of(bits, Modulus::TWO)? != lanes || lanes_of(outputs, p)? != lanes {
        return Err(Error::LengthMismatch);
    }
    #[cfg(debug_assertions)]
    debug_check_distinct(lanes, &|i| Tweak::new(Domain::MulBit, gate(i), 0));
    let (n, nb) = (p.digits(), Modulus::TWO.digits());
    let (mut xl, mut bl, mut z) = (Label::zero(p), Label::zero(Modulus::TWO), Label::zero(p));
    for (i, ((xd, bd), y)) in x.chunks_exact(n).zip(bits.chunks_exact(nb)).zip(outputs.chunks_exact_mut(n)).enumerate()
    {
        let range = at.range(i, p.value() as usize + 1, rows.len())?;
        xl.load_digits_unchecked(p, xd);
        bl.load_digits_unchecked(Modulus::TWO, bd);
        evaluate_mul_bit(hash, gate(i), &xl, &bl, &mut SliceSource::new(&rows[range]), &mut z)?;
        y.copy_from_slice(&z.digits()[..n]);
    }
    Ok(())
}
