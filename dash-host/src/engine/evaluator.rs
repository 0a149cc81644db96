//! The evaluator's side: [`EvaluatorSession`] checks the material's header
//! against its own plan of the model, then evaluates layer by layer,
//! reading each non-linear layer's rows chunk by chunk, on all cores or on
//! an offload device.

use super::EngineOnes;
use super::driver::{self, EvaluateRun, Party, run_gadget, run_network, runs};
use super::error::{EngineError, EngineResult};
use super::plan::{Gadget, Plan};
use crate::format::{self, Header};
use crate::offload::{DeviceRun, OffloadHandle};
use crate::tensor::CrtTensor;
use dash_core::{Block, FixedKeyHash, Label};
use std::io::Read;
use std::sync::Mutex;

/// The evaluator's side of one inference: the validated header (one-labels)
/// and the material stream, positioned at the first layer.
pub struct EvaluatorSession<R: Read> {
    plan: Plan,
    reader: R,
    ones: Box<EngineOnes>,
}

struct EvaluatorParty<'a, R: Read> {
    hash: FixedKeyHash,
    ones: &'a EngineOnes,
    base_ones: Vec<Vec<u16>>,
    reader: &'a mut R,
    offload: Option<&'a OffloadHandle>,
    offload_chunk_rows: usize,
}

impl<R: Read> Party for EvaluatorParty<'_, R> {
    fn base_ones(&self) -> &[Vec<u16>] {
        &self.base_ones
    }

    fn linear_device(&self) -> Option<&OffloadHandle> {
        self.offload
    }

    fn nonlinear(&mut self, plan: &Plan, i: usize, gadget: &Gadget, x: &CrtTensor) -> EngineResult<CrtTensor> {
        let data = &plan.data;
        let cost = &data.costs[i];
        let c = cost.rows_per_element as usize;
        if cost.rows > 0 {
            format::read_layer_tag(self.reader, i as u32, cost.rows)?;
        }
        let elements = cost.elements as usize;
        let mut y = CrtTensor::zeros(&data.net.base, &data.shapes[i + 1]);
        // A device wants wide batches: each of the gadget's projections is
        // one launch over the chunk's elements.
        let chunk = match self.offload {
            Some(_) => driver::elements_per_chunk(cost.rows_per_element, self.offload_chunk_rows),
            None => driver::cpu_chunk(cost.rows_per_element),
        };
        let mut rows = vec![Block::ZERO; chunk.min(elements) * c];
        for first in (0..elements).step_by(chunk) {
            let count = chunk.min(elements - first);
            let rows = &mut rows[..count * c];
            format::read_rows(self.reader, rows)?;
            let rows = &*rows;
            match self.offload {
                Some(device) => {
                    let failure = Mutex::new(None);
                    let run = driver::Run { first, count, ops: DeviceRun::new(device, self.ones, rows, &failure) };
                    let status = run_gadget(plan, i, gadget, x, vec![run], &mut y);
                    // A device failure is an error of the device, not of the material.
                    if let Some(d) = failure.into_inner().ok().flatten() {
                        return Err(EngineError::Device(format!("on {}: {d}", device.name())));
                    }
                    status?;
                }
                None => {
                    let (hash, ones) = (&self.hash, self.ones);
                    let runs = runs(first, count, c, rows, |rows| EvaluateRun { hash, ones, rows });
                    run_gadget(plan, i, gadget, x, runs, &mut y)?;
                }
            }
        }
        Ok(y)
    }
}

impl<R: Read> EvaluatorSession<R> {
    /// Reads the header from `reader` and checks it against the plan: model
    /// hash, CRT base, one-labels for exactly the planned moduli, and the
    /// size of every layer.
    pub fn start(plan: &Plan, mut reader: R) -> EngineResult<Self> {
        let data = &plan.data;
        let h = Header::read(&mut reader)?;
        let bad = |detail: String| Err(EngineError::material(detail));
        if h.model_hash != data.hash {
            return bad("the material was garbled for another model (model hash differs)".into());
        }
        let primes: Vec<u16> = data.net.base.moduli().iter().map(|m| m.value()).collect();
        if h.primes != primes {
            return bad(format!("the material uses CRT base {:?}, the model {:?}", h.primes, primes));
        }
        if h.layer_rows.len() != data.costs.len() {
            return bad(format!("the material has {} layers, the model {}", h.layer_rows.len(), data.costs.len()));
        }
        for (i, (got, c)) in h.layer_rows.iter().zip(&data.costs).enumerate() {
            if *got != c.rows {
                return bad(format!("layer {i}: the material has {got} rows, the model needs {}", c.rows));
            }
        }
        if h.ones.len() != data.moduli.len() {
            return bad(format!("the material has {} one-labels, the model needs {}", h.ones.len(), data.moduli.len()));
        }
        let mut ones = Box::new(EngineOnes::default());
        for (&(m, b), want) in h.ones.iter().zip(&data.moduli) {
            if m != want.value() {
                return bad(format!("one-label for modulus {m} where {} was expected", want.value()));
            }
            let l = Label::from_block(*want, b)
                .map_err(|_| EngineError::material(format!("one-label of modulus {m} is malformed")))?;
            ones.push(l)?;
        }
        Ok(EvaluatorSession { plan: plan.clone(), reader, ones })
    }

    /// Evaluates the network on the input labels, reading each layer's
    /// material as it goes. Returns the output labels.
    pub fn evaluate(mut self, input: &CrtTensor) -> EngineResult<CrtTensor> {
        let plan = &self.plan;
        let data = &plan.data;
        if input.base() != &data.net.base {
            return Err(EngineError::Input("input labels on another base".into()));
        }
        if input.shape() != plan.input_shape() {
            return Err(EngineError::Input(format!(
                "input labels of shape {:?}, the model takes {:?}",
                input.shape(),
                plan.input_shape()
            )));
        }
        let base_ones: Vec<Vec<u16>> = data
            .net
            .base
            .moduli()
            .iter()
            .map(|&m| Ok(self.ones.get(m)?.digits().to_vec()))
            .collect::<EngineResult<_>>()?;
        let mut party = EvaluatorParty {
            hash: FixedKeyHash::new(),
            ones: &self.ones,
            base_ones,
            reader: &mut self.reader,
            offload: plan.offload.as_ref(),
            offload_chunk_rows: plan.offload_chunk_rows,
        };
        let out = run_network(plan, &mut party, input.clone())?;
        format::read_trailer(&mut self.reader)?;
        Ok(out)
    }
}

/// Reads the header from `material`, then evaluates on `input`.
pub fn evaluate<R: Read>(plan: &Plan, material: R, input: &CrtTensor) -> EngineResult<CrtTensor> {
    EvaluatorSession::start(plan, material)?.evaluate(input)
}
