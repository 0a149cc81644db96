//! The garbler's side: [`garble`] streams the material of one inference
//! and returns a [`GarblerSession`], which encodes exactly one input and
//! then waits for exactly one answer ([`AwaitingAnswer`]).
//!
//! # Single use
//!
//! A session holds one key set. Encoding two inputs under it would hand the
//! evaluator two labels of every input wire, and their difference is `Δ_p`
//! for every prime: every later label of the circuit would open. So
//! [`GarblerSession::encode_input`] consumes the session, and decoding
//! consumes what encoding returned. A second encode does not compile:
//!
//! ```compile_fail
//! fn twice(session: dash_host::engine::GarblerSession) {
//!     let first = session.encode_input(&[1]);
//!     let second = session.encode_input(&[2]); // use of a moved value
//! }
//! ```
//!
//! Keys, input and output zero labels and every scratch copy of them are
//! zeroised when dropped, on error paths too.

use super::EngineKeys;
use super::driver::{self, GarbleRun, OneDigits, Party, run_gadget, run_network, runs_mut};
use super::error::{EngineError, EngineResult};
use super::plan::{Gadget, Plan};
use crate::format;
use crate::offload::OffloadHandle;
use crate::tensor::CrtTensor;
use dash_core::{Block, Bundle, CrtBase, FixedKeyHash, GarblerKeys, Label, ZeroLabel};
use rand_core::CryptoRng;
use std::io::Write;
use zeroize::{Zeroize, Zeroizing};

/// What the garbler keeps after garbling: the keys, the input zero labels
/// (to encode the input) and the output zero labels (to decode). Secret;
/// everything is zeroised on drop. Encodes one input, once.
pub struct GarblerSession {
    keys: Box<EngineKeys>,
    base: CrtBase,
    input_zero: CrtTensor,
    output_zero: CrtTensor,
    /// The inputs the plan accepts (a planned circuit's proof covers only
    /// these; `None`: the base's whole range).
    input_range: Option<(i128, i128)>,
    /// Rows written.
    pub rows: u64,
}

impl core::fmt::Debug for GarblerSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GarblerSession(rows={}, <secrets redacted>)", self.rows)
    }
}

/// The garbler after encoding: it decodes and verifies exactly one answer.
pub struct AwaitingAnswer {
    keys: Box<EngineKeys>,
    base: CrtBase,
    output_zero: CrtTensor,
}

impl core::fmt::Debug for AwaitingAnswer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "AwaitingAnswer(outputs={}, <secrets redacted>)", self.output_zero.len())
    }
}

/// An input [`GarblerSession::encode_input`] refused, with the session
/// handed back untouched (nothing was encoded, so it may encode another).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct EncodeError {
    /// Why the input was refused.
    #[source]
    pub error: EngineError,
    /// The session, unused.
    pub session: Box<GarblerSession>,
}

struct GarblerParty<'a, W: Write> {
    hash: &'a FixedKeyHash,
    keys: &'a EngineKeys,
    ones: OneDigits,
    base_ones: Zeroizing<Vec<Vec<u16>>>,
    out: &'a mut W,
    rows: u64,
}

impl<W: Write> Party for GarblerParty<'_, W> {
    fn base_ones(&self) -> &[Vec<u16>] {
        &self.base_ones
    }

    fn linear_device(&self) -> Option<&OffloadHandle> {
        // The garbler stays on the CPU: its labels are secret (docs/GPU.md).
        None
    }

    fn nonlinear(&mut self, plan: &Plan, i: usize, gadget: &Gadget, x: &CrtTensor) -> EngineResult<CrtTensor> {
        let data = &plan.data;
        let cost = &data.costs[i];
        let c = cost.rows_per_element as usize;
        if cost.rows > 0 {
            format::write_layer_tag(self.out, i as u32, cost.rows)?;
        }
        let elements = cost.elements as usize;
        let mut y = CrtTensor::zeros(&data.net.base, &data.shapes[i + 1]);
        let chunk = driver::cpu_chunk(cost.rows_per_element);
        let mut rows = vec![Block::ZERO; chunk.min(elements) * c];
        for first in (0..elements).step_by(chunk) {
            let count = chunk.min(elements - first);
            let rows = &mut rows[..count * c];
            let (hash, keys, ones) = (self.hash, self.keys, &self.ones);
            let runs = runs_mut(first, count, c, rows, |rows| GarbleRun { hash, keys, ones, rows });
            run_gadget(plan, i, gadget, x, runs, &mut y)?;
            format::write_rows(self.out, rows)?;
        }
        self.rows += cost.rows;
        Ok(y)
    }
}

/// Garbles the planned network with fresh keys, streaming the material to
/// `out`. Returns what the garbler needs for the online phase.
pub fn garble<W: Write, R: CryptoRng + ?Sized>(plan: &Plan, rng: &mut R, out: &mut W) -> EngineResult<GarblerSession> {
    let data = &plan.data;
    let base = data.net.base.clone();
    let keys: Box<EngineKeys> = Box::new(GarblerKeys::generate(rng, &data.moduli)?);
    let hash = FixedKeyHash::new();
    let ones_packed: Vec<(u16, Block)> =
        keys.one_labels().labels().iter().map(|l| (l.modulus().value(), l.to_block())).collect();
    plan.header(ones_packed).write(out)?;

    // The garbler's constant-one zero labels O_p (secret: cleared on drop,
    // on the error paths too).
    let ones = OneDigits::of_keys(&hash, &keys, &data.moduli)?;
    let base_ones: Zeroizing<Vec<Vec<u16>>> =
        Zeroizing::new(base.moduli().iter().map(|&m| Ok(ones.get(m)?.to_vec())).collect::<EngineResult<_>>()?);

    // Fresh input zero labels.
    let mut input_zero = CrtTensor::zeros(&base, plan.input_shape());
    for t in input_zero.residues_mut() {
        let m = t.modulus();
        for e in 0..t.len() {
            let z = keys.input(m, rng)?;
            t.label_digits_mut(e).copy_from_slice(z.as_label().digits());
        }
    }

    let mut party = GarblerParty { hash: &hash, keys: &keys, ones, base_ones, out, rows: 0 };
    let output_zero = run_network(plan, &mut party, input_zero.clone())?;
    let rows = party.rows;
    drop(party);
    format::write_trailer(out)?;
    Ok(GarblerSession { keys, base, input_zero, output_zero, input_range: plan.input_range(), rows })
}

impl GarblerSession {
    /// The CRT base.
    pub fn base(&self) -> &CrtBase {
        &self.base
    }

    /// The evaluator's input labels for `input` (one label per residue of
    /// each element), and the state that decodes the answer. Values must lie
    /// in the base's signed range; a refused input hands the session back.
    pub fn encode_input(self, input: &[i64]) -> Result<(CrtTensor, AwaitingAnswer), EncodeError> {
        if input.len() != self.input_zero.len() {
            let error = EngineError::Input(format!(
                "input has {} values, the network takes {}",
                input.len(),
                self.input_zero.len()
            ));
            return Err(EncodeError { error, session: Box::new(self) });
        }
        if let Some((lo, hi)) = self.input_range
            && let Some((e, &v)) = input.iter().enumerate().find(|(_, v)| !(lo..=hi).contains(&(**v as i128)))
        {
            let error = EngineError::Input(format!(
                "input {e} = {v} is outside the range [{lo}, {hi}] the planned circuit is proven for"
            ));
            return Err(EncodeError { error, session: Box::new(self) });
        }
        let mut residues = Vec::with_capacity(input.len());
        for (e, &v) in input.iter().enumerate() {
            match self.base.encode(v as i128) {
                Ok(r) => residues.push(r),
                Err(_) => {
                    let error = EngineError::Input(format!("input {e} = {v} is outside the base's range"));
                    return Err(EncodeError { error, session: Box::new(self) });
                }
            }
        }
        // From here nothing is refused: the input is in range.
        let mut out = CrtTensor::zeros(&self.base, self.input_zero.shape());
        for (e, r) in residues.iter_mut().enumerate() {
            for ((zt, ot), &x) in self.input_zero.residues().iter().zip(out.residues_mut()).zip(r.iter()) {
                let label = Label::from_digits(zt.modulus(), zt.label_digits(e)).map(ZeroLabel::new);
                match label.and_then(|zero| self.keys.encode(&zero, x)) {
                    Ok(l) => ot.label_digits_mut(e).copy_from_slice(l.digits()),
                    Err(source) => {
                        let error = EngineError::Core { layer: None, source };
                        return Err(EncodeError { error, session: Box::new(self) });
                    }
                }
            }
            r[..].zeroize();
        }
        let GarblerSession { keys, base, output_zero, .. } = self;
        Ok((out, AwaitingAnswer { keys, base, output_zero }))
    }
}

impl AwaitingAnswer {
    /// The CRT base.
    pub fn base(&self) -> &CrtBase {
        &self.base
    }

    /// Decodes and verifies the evaluator's output labels (packed,
    /// element-major as [`CrtTensor::to_blocks`]). Any label that is not
    /// exactly a valid label of its wire fails the whole output with
    /// [`EngineError::Authenticity`]; either way the keys are gone after.
    pub fn decode_output(self, returned: &[Block]) -> EngineResult<Vec<i64>> {
        let k = self.base.len();
        if returned.len() != self.output_zero.len() * k {
            return Err(EngineError::Input(format!(
                "expected {} output labels, got {}",
                self.output_zero.len() * k,
                returned.len()
            )));
        }
        let mut out = Vec::with_capacity(self.output_zero.len());
        let mut failed = false;
        for (e, r) in returned.chunks(k).enumerate() {
            let zero = Bundle::from_wires(
                self.output_zero
                    .residues()
                    .iter()
                    .map(|t| Label::from_digits(t.modulus(), t.label_digits(e)).map(ZeroLabel::new))
                    .collect::<Result<Vec<_>, _>>()?,
            )?;
            match self.keys.decode_bundle(&self.base, &zero, r) {
                Ok(v) => out.push(v as i64),
                Err(_) => {
                    failed = true;
                    out.push(0);
                }
            }
        }
        if failed {
            out.zeroize();
            return Err(EngineError::Authenticity);
        }
        Ok(out)
    }
}
